//! A driver on a model, reset and ready: the fixture of the driver scenarios.

use smmu::arch::idr::Features;
use smmu::strtab::Layout;
use smmu::{Error, OwnedStreamTable, ResetPlan, Smmu, SmmuConfig};
use smmu_model::{ModelConfig, SharedModel, Transaction, TxnResult, Violation};

use crate::platform::{ModelHal, ModelPlatform, ModelRegs};
use crate::tables::ModelTables;

/// The driver type the scenarios run.
pub type ModelSmmu = Smmu<ModelRegs, ModelHal, OwnedStreamTable>;

/// A probed, fully reset driver on a model.
pub struct Rig {
    /// The platform (model, registers, HAL).
    pub platform: ModelPlatform,
    /// The driver.
    pub smmu: ModelSmmu,
}

impl core::fmt::Debug for Rig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rig")
            .field("smmu", &self.smmu)
            .finish_non_exhaustive()
    }
}

/// Builds the driver for a platform: probe, an owned stream table of the layout the
/// features call for (or `layout` if given), driver state. No register is written.
pub fn build(
    platform: &ModelPlatform,
    config: SmmuConfig,
    layout: Option<Layout>,
) -> Result<ModelSmmu, Error> {
    let regs = platform.regs();
    let hal = platform.hal();
    let features: Features = smmu::probe::probe(&regs)?;
    let strtab = match layout {
        None => OwnedStreamTable::for_smmu(&hal, &features, &config)?,
        Some(layout) => {
            let (_, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
            let abort = smmu::writer::make::ste_image(&smmu::writer::make::abort_ste());
            let coherent = config.coherent.unwrap_or(features.coherent);
            OwnedStreamTable::new(&hal, layout, log2, coherent, &abort)?
        }
    };
    Smmu::new(regs, hal, features, strtab, config)
}

impl Rig {
    /// A model from `cfg` (with `ram` bytes of host RAM) and a driver on it, fully reset.
    pub fn new(cfg: ModelConfig, config: SmmuConfig) -> Result<Self, Error> {
        Self::with_layout(cfg, config, None)
    }

    /// As [`Rig::new`] with a chosen stream-table layout.
    pub fn with_layout(
        cfg: ModelConfig,
        config: SmmuConfig,
        layout: Option<Layout>,
    ) -> Result<Self, Error> {
        let platform = ModelPlatform::new(cfg).map_err(|_| Error::Hal(smmu::HalError::NoMemory))?;
        Self::on(platform, config, layout)
    }

    /// A driver on an existing platform, fully reset.
    pub fn on(
        platform: ModelPlatform,
        config: SmmuConfig,
        layout: Option<Layout>,
    ) -> Result<Self, Error> {
        let mut smmu = build(&platform, config, layout)?;
        smmu.reset(&ResetPlan::FULL)?;
        Ok(Self { platform, smmu })
    }

    /// The model.
    pub fn model(&self) -> &SharedModel {
        self.platform.model()
    }

    /// A page-table allocator on the model's DMA pool.
    pub fn tables(&self) -> ModelTables {
        ModelTables(self.platform.hal())
    }

    /// A plain (unprotected, no ATS, no stall, no SSID) master on StreamID `sid`, attached to
    /// a new stage-1 domain: the setup most scenarios start from.
    pub fn stage1_master(
        &mut self,
        sid: u32,
    ) -> Result<(smmu::MasterId, smmu::Domain<ModelTables>), Error> {
        let dev = self.smmu.add_master(&smmu::MasterConfig {
            sids: &[sid],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })?;
        let tables = self.tables();
        let domain = self
            .smmu
            .new_domain(smmu::DomainStage::Stage1, false, tables)?;
        self.smmu.attach(dev, &domain)?;
        Ok((dev, domain))
    }

    /// One DMA transaction.
    pub fn dma(&self, txn: Transaction) -> TxnResult {
        self.model().with(|m| m.dma(txn))
    }

    /// The violation log.
    pub fn violations(&self) -> Vec<Violation> {
        self.model().with(|m| m.violations().to_vec())
    }

    /// Panics with the log if the model recorded any violation (SPEC M3: a driver test's log
    /// must stay empty).
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "the model logged violations: {v:#?}");
    }
}

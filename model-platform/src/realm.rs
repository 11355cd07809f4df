//! The platform of the Realm scenarios: an [`RmeModel`] with a Non-secure platform (the host
//! or crash kernel's [`ModelRegs`] and [`ModelHal`]) and a Realm platform (the Realm page and
//! a HAL allocating Realm-pool memory) over one RAM.
//!
//! ```
//! use smmu_model::ModelConfig;
//! use smmu_model_platform::realm::RealmPlatform;
//!
//! let p = RealmPlatform::new(ModelConfig::default()).unwrap();
//! assert_eq!(p.common_ids().idr[0], p.rme().ns().read32(0));
//! ```

use smmu::arch::idr::IdRegs;
use smmu::realm::RealmRegisterAccess;
use smmu_model::rme::{Pas, RmeModel};
use smmu_model::{MemError, ModelConfig, SharedModel};

use crate::platform::{ModelHal, ModelPlatform, ModelRegs};

/// RAM of a Realm platform: 32 MiB, the lower half the Non-secure pool, the upper the Realm one.
pub const REALM_PLATFORM_RAM: u64 = 32 << 20;

/// Realm-page register access on the model (offset 0 = Realm Page 0).
#[derive(Clone, Debug)]
pub struct RealmModelRegs(SharedModel);

impl RealmRegisterAccess for RealmModelRegs {
    fn read32(&self, offset: usize) -> u32 {
        self.0.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.0.write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.0.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.0.write64(offset, value);
    }
}

/// Both programming interfaces of one SMMU with RME DA, and their platforms.
#[derive(Clone, Debug)]
pub struct RealmPlatform {
    rme: RmeModel,
    ns: ModelPlatform,
    realm: ModelPlatform,
}

impl RealmPlatform {
    /// Builds the model from `cfg` (RAM base from it, [`REALM_PLATFORM_RAM`] of it). Root
    /// firmware's part is done: the Realm pool is assigned to the Realm PAS and granule
    /// protection checks are on.
    pub fn new(cfg: ModelConfig) -> Result<Self, MemError> {
        let base = cfg.ram_base;
        let rme = RmeModel::new(cfg, REALM_PLATFORM_RAM)?;
        let (pool, size) = rme.realm_pool();
        rme.gpt().assign(pool, size, Pas::Realm);
        rme.root_write32(
            smmu_model::rme::ROOT_CR0_OFFSET,
            smmu_model::rme::ROOT_CR0_GPCEN | smmu_model::rme::ROOT_CR0_ACCESSEN,
        );
        let ns = ModelPlatform::over(rme.ns().clone(), rme.ram().clone(), base);
        let realm = ModelPlatform::over(rme.realm().clone(), rme.ram().clone(), base);
        Ok(Self { rme, ns, realm })
    }

    /// The model.
    pub fn rme(&self) -> &RmeModel {
        &self.rme
    }

    /// The Non-secure platform (host and crash kernels).
    pub fn ns(&self) -> &ModelPlatform {
        &self.ns
    }

    /// The Non-secure register access.
    pub fn ns_regs(&self) -> ModelRegs {
        self.ns.regs()
    }

    /// The Non-secure HAL (Non-secure pool).
    pub fn ns_hal(&self) -> ModelHal {
        self.ns.hal()
    }

    /// The Realm page register access.
    pub fn realm_regs(&self) -> RealmModelRegs {
        RealmModelRegs(self.rme.realm().clone())
    }

    /// The Realm HAL (Realm pool).
    pub fn realm_hal(&self) -> ModelHal {
        self.realm.hal()
    }

    /// The SMMU's common ID registers, which the Realm PA space may read too (§6.2).
    pub fn common_ids(&self) -> IdRegs {
        smmu::probe::read_id_regs(&self.ns.regs())
    }
}

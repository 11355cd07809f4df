//! The crash scenario of SPEC §0 on the Grace-like model: an "old kernel" (this project's
//! driver) attaches a protected GPU (stage 1), an NVMe (stage 2) and a NIC (several StreamIDs
//! over two level-2 tables) and starts their DMA; the kernel crashes (`warm_restart`, the
//! masters keep going); the crash kernel brings the SMMU up with one [`Strategy`]; then each
//! device's driver probes, quiesces its device and attaches a new domain.
//!
//! Every transaction between the crash and the device's quiesce is classified against the
//! mapping the old kernel gave it: translated as the old kernel meant, aborted, faulted,
//! bypassed, or misdirected (it reached another physical address).

use smmu::{DomainStage, MasterConfig, MasterId, PhysRange, Smmu, SmmuConfig, StreamTable};
use smmu_kdump::{boot, AdoptOptions, AdoptPlatform, CrashStreamTable, Verdict};
use smmu_model::{Cause, MasterSpec, ModelConfig, Pattern, Profile, TxnResult};
use smmu_pagetable::{Iova, PhysAddr, Prot};

use crate::platform::{ModelHal, ModelPlatform, ModelRegs};
use crate::rig::Rig;
use crate::tables::ModelTables;

/// How the crash kernel brings the SMMU up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Full reset with `GBPA.ABORT` (today's upstream behaviour).
    Abort,
    /// Full reset with `GBPA` bypass, unattached streams bypassing.
    Bypass,
    /// Adoption of the live table (SPEC K1–K17).
    Adopt,
}

impl Strategy {
    /// The name `smmuctl` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Abort => "abort",
            Self::Bypass => "bypass",
            Self::Adopt => "adopt",
        }
    }
}

/// Transaction counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Transactions issued between the crash and the device's quiesce.
    pub transactions: u64,
    /// Translated to the physical address the old kernel's mapping gave.
    pub translated: u64,
    /// Aborted by configuration (GBPA abort, abort STE, bad or missing STE).
    pub aborted: u64,
    /// Passed through untranslated.
    pub bypassed: u64,
    /// Terminated by a translation-time fault (translation, permission, CD, walk).
    pub faulted: u64,
    /// Reached a physical address other than the one the old kernel's mapping gave.
    pub misdirected: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.transactions += o.transactions;
        self.translated += o.translated;
        self.aborted += o.aborted;
        self.bypassed += o.bypassed;
        self.faulted += o.faulted;
        self.misdirected += o.misdirected;
    }
}

/// One device's share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceReport {
    /// Its name.
    pub name: &'static str,
    /// Its StreamIDs.
    pub sids: Vec<u32>,
    /// What its DMA met.
    pub counts: Counts,
    /// Its STEs were still the crashed kernel's (deferred) when its driver probed.
    pub deferred_at_probe: bool,
    /// The new domain translates its DMA after the attach.
    pub reattached: bool,
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The strategy.
    pub strategy: Strategy,
    /// The seed.
    pub seed: u64,
    /// How the crash kernel's driver came up (adopted, or the reason for a full reset).
    pub verdict: String,
    /// Per device.
    pub devices: Vec<DeviceReport>,
    /// Sum over the devices.
    pub totals: Counts,
    /// Entries in the model's violation log.
    pub violations: usize,
    /// When each step and each transaction happened, for a timeline picture.
    pub timeline: Timeline,
}

/// What one transaction of a scenario device met, as [`Counts`] classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnClass {
    /// Translated to the physical address the old kernel's mapping gave.
    Translated,
    /// Translated, but to another physical address.
    Misdirected,
    /// Passed through untranslated, to the address the old kernel's mapping gave.
    Bypassed,
    /// Passed through untranslated to another physical address (counted as bypassed and as
    /// misdirected).
    BypassedMisdirected,
    /// Aborted by configuration.
    Aborted,
    /// Terminated by a translation-time fault.
    Faulted,
}

/// One transaction on the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMark {
    /// Its position in the model's transaction log.
    pub at: usize,
    /// Index of its device in [`Report::devices`].
    pub device: usize,
    /// It ran after the crash (in the crash kernel's epoch).
    pub after_crash: bool,
    /// What it met.
    pub class: TxnClass,
}

/// A device's steps in the crash kernel, as positions in the model's transaction log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSteps {
    /// Its driver probed (added the master).
    pub probe: usize,
    /// Its driver stopped its DMA.
    pub quiesce: usize,
    /// Its driver attached the new domain.
    pub reattach: usize,
}

/// The scenario in time. The clock is the model's transaction log: every DMA transaction the
/// SMMU saw, in order, so position N is "after N transactions". The old kernel attaches every
/// device before its DMA starts, at position 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The crash: the first transaction of the crash kernel's epoch.
    pub crash: usize,
    /// The crash kernel's SMMU bring-up (adoption or full reset) finished.
    pub bring_up: usize,
    /// Per device, in [`Report::devices`] order.
    pub devices: Vec<DeviceSteps>,
    /// Every transaction of the scenario's devices, old kernel's and crash kernel's.
    pub transactions: Vec<TxnMark>,
    /// Length of the log at the end of the run.
    pub end: usize,
}

/// A device of the scenario and the mapping the old kernel gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its name.
    pub name: &'static str,
    /// Its StreamIDs.
    pub sids: &'static [u32],
    /// A protected (confidential-computing) device.
    pub protected: bool,
    /// The stage of its domains.
    pub stage: DomainStage,
    /// First IOVA of its buffer.
    pub iova: u64,
    /// Buffer size in 4K pages.
    pub pages: u64,
    /// Physical address of its buffer.
    pub pa: u64,
    /// Its DMA master in the model.
    pub master: usize,
    /// The ASID (stage 1) or VMID (stage 2) of the old kernel's domain.
    pub old_id: u16,
}

/// How the old kernel ran the SMMU.
#[derive(Clone, Debug)]
pub struct OldKernel {
    /// The model's ID registers.
    pub profile: Profile,
    /// The seed.
    pub seed: u64,
    /// Its driver settings (E2H, …).
    pub config: SmmuConfig,
}

impl OldKernel {
    /// The Grace-like SMMU with this project's default driver settings.
    pub fn grace(seed: u64) -> Self {
        Self {
            profile: Profile::grace(),
            seed,
            config: SmmuConfig::default(),
        }
    }
}

/// A machine just after the old kernel crashed: its devices are still doing DMA.
#[derive(Debug)]
pub struct Crashed {
    /// The platform (the crash kernel uses the same model, registers and memory).
    pub platform: ModelPlatform,
    /// The devices.
    pub devices: Vec<Device>,
    /// The epoch of the crash kernel's outcomes.
    pub epoch: u32,
}

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);

/// The old kernel's life and crash: three devices attached and doing DMA, then
/// `warm_restart`. Errors are the driver's, as text.
pub fn crash(old_kernel: &OldKernel) -> Result<Crashed, String> {
    let cfg = ModelConfig {
        ram_size: 64 << 20,
        masters_per_step: 1,
        ..ModelConfig::hostile(old_kernel.profile.clone(), old_kernel.seed)
    };
    let probe = ModelPlatform::new(cfg).map_err(|e| e.to_string())?;
    let window = probe
        .model()
        .alloc_pages(64, 1 << 20)
        .map_err(|e| e.to_string())?;
    let platform = probe.with_shared_windows(vec![PhysRange {
        start: PhysAddr(window),
        size: 64 << 12,
    }]);
    let model = platform.model().clone();

    // ---- the old kernel
    let old = Rig::on(platform.clone(), old_kernel.config, None).map_err(|e| e.to_string())?;
    let mut devices = vec![
        Device {
            name: "gpu",
            sids: &[0x100],
            protected: true,
            stage: DomainStage::Stage1,
            iova: 0x1_0000_0000,
            pages: 64,
            pa: window,
            master: 0,
            old_id: 0,
        },
        Device {
            name: "nvme",
            sids: &[0x200],
            protected: false,
            stage: DomainStage::Stage2,
            iova: 0x8000_0000,
            pages: 32,
            pa: 0,
            master: 0,
            old_id: 0,
        },
        Device {
            name: "nic",
            sids: &[0x3fe, 0x3ff, 0x400, 0x401],
            protected: false,
            stage: DomainStage::Stage1,
            iova: 0x2000_0000,
            pages: 32,
            pa: 0,
            master: 0,
            old_id: 0,
        },
    ];
    for (i, d) in devices.iter_mut().enumerate() {
        if d.pa == 0 {
            d.pa = model
                .alloc_pages(d.pages, 1 << 16)
                .map_err(|e| e.to_string())?;
        }
        let m = old
            .smmu
            .add_master(&MasterConfig {
                sids: d.sids,
                protected: d.protected,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .map_err(|e| e.to_string())?;
        let domain = old
            .smmu
            .new_domain(d.stage, d.protected, old.tables())
            .map_err(|e| e.to_string())?;
        old.smmu
            .map(&domain, Iova(d.iova), PhysAddr(d.pa), d.pages << 12, RW)
            .map_err(|e| e.to_string())?;
        old.smmu.attach(m, &domain).map_err(|e| e.to_string())?;
        d.old_id = domain.id();
        // The old kernel never frees it: it crashes with the domain live.
        std::mem::forget(domain);
        d.master = model.with(|mm| {
            mm.add_master(MasterSpec {
                pattern: Pattern::Random {
                    sids: d.sids.to_vec(),
                    ssid: None,
                    iova_base: d.iova,
                    iova_len: d.pages << 12,
                    write_percent: 30 + 10 * i as u8,
                },
                data: false,
            })
        });
    }
    model.with(|m| m.run_masters(300));
    if !model.with(|m| m.violations().is_empty()) {
        return Err("the old kernel's phase logged violations".into());
    }

    // ---- the crash: memory, registers, caches and the masters all carry on
    std::mem::forget(old);
    model.with(smmu_model::Model::warm_restart);
    let epoch = model.with(|m| m.epoch());
    model.with(|m| m.run_masters(50));

    Ok(Crashed {
        platform,
        devices,
        epoch,
    })
}

/// Runs the scenario. Errors are the driver's, as text (a scenario that cannot run).
pub fn run(strategy: Strategy, seed: u64) -> Result<Report, String> {
    let Crashed {
        platform,
        devices,
        epoch,
    } = crash(&OldKernel::grace(seed))?;
    let model = platform.model().clone();
    let regs = platform.regs();
    let hal = platform.hal();
    let log_len = || model.with(|m| m.outcomes().len());
    let crash_at = model.with(|m| {
        m.outcomes()
            .iter()
            .position(|o| o.epoch == epoch)
            .unwrap_or(m.outcomes().len())
    });
    let (smmu, verdict) = crash_kernel(strategy, regs, hal)?;
    let bring_up = log_len();
    let mut steps = Vec::new();
    model.with(|m| m.run_masters(200));

    // ---- each driver probes, quiesces its device, attaches a new domain
    let mut reports = Vec::new();
    for d in &devices {
        let id = smmu
            .add_master(&MasterConfig {
                sids: d.sids,
                protected: d.protected,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .map_err(|e| e.to_string())?;
        let probe = log_len();
        let deferred_at_probe = smmu.is_deferred(id).map_err(|e| e.to_string())?;
        model.with(|m| m.run_masters(20));
        model
            .with(|m| m.set_master_running(d.master, false))
            .map_err(|e| format!("{e:?}"))?;
        let quiesce = log_len();
        let reattached = reattach(&smmu, &platform, id, d)?;
        steps.push(DeviceSteps {
            probe,
            quiesce,
            reattach: log_len(),
        });
        reports.push(DeviceReport {
            name: d.name,
            sids: d.sids.to_vec(),
            counts: Counts::default(),
            deferred_at_probe,
            reattached,
        });
    }

    // ---- classification
    let mut marks = Vec::new();
    for (at, o) in model
        .with(|m| m.outcomes().to_vec())
        .into_iter()
        .enumerate()
    {
        let Some(master) = o.master else {
            continue;
        };
        let Some(i) = devices.iter().position(|d| d.master == master) else {
            continue;
        };
        let (Some(d), Some(r)) = (devices.get(i), reports.get_mut(i)) else {
            continue;
        };
        let expected = d.pa + (o.txn.iova - d.iova);
        let class = match o.result {
            TxnResult::Translated { pa } if pa == expected => TxnClass::Translated,
            TxnResult::Translated { .. } => TxnClass::Misdirected,
            TxnResult::Bypass { pa } if pa == expected => TxnClass::Bypassed,
            TxnResult::Bypass { .. } => TxnClass::BypassedMisdirected,
            TxnResult::Abort { cause, .. } => match cause {
                Cause::GbpaAbort
                | Cause::SteAbort
                | Cause::BadSte
                | Cause::BadStreamId
                | Cause::SteFetch
                | Cause::StreamDisabled
                | Cause::BadSubstreamId => TxnClass::Aborted,
                _ => TxnClass::Faulted,
            },
        };
        marks.push(TxnMark {
            at,
            device: i,
            after_crash: o.epoch == epoch,
            class,
        });
        // The counts are of what met the DMA after the crash.
        if o.epoch != epoch {
            continue;
        }
        let c = &mut r.counts;
        c.transactions += 1;
        match class {
            TxnClass::Translated => c.translated += 1,
            TxnClass::Misdirected => c.misdirected += 1,
            TxnClass::Bypassed => c.bypassed += 1,
            TxnClass::BypassedMisdirected => {
                c.bypassed += 1;
                c.misdirected += 1;
            }
            TxnClass::Aborted => c.aborted += 1,
            TxnClass::Faulted => c.faulted += 1,
        }
    }
    let mut totals = Counts::default();
    for r in &reports {
        totals.add(&r.counts);
    }
    let violations = model.with(|m| m.violations().len());
    Ok(Report {
        strategy,
        seed,
        verdict,
        devices: reports,
        totals,
        violations,
        timeline: Timeline {
            crash: crash_at,
            bring_up,
            devices: steps,
            transactions: marks,
            end: log_len(),
        },
    })
}

type CrashSmmu = Smmu<ModelRegs, ModelHal, CrashStreamTable>;

fn crash_kernel(
    strategy: Strategy,
    regs: ModelRegs,
    hal: ModelHal,
) -> Result<(CrashSmmu, String), String> {
    let platform = AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    };
    match strategy {
        Strategy::Adopt => {
            let booted =
                boot(regs, hal, &platform, &AdoptOptions::default()).map_err(|e| e.to_string())?;
            let verdict = match booted.verdict {
                Verdict::Adopted { .. } => "adopted".to_string(),
                Verdict::FullReset(r) => format!("full-reset: {}", r.code()),
                Verdict::Abandoned(e) => format!("abandoned: {e}"),
            };
            Ok((booted.smmu, verdict))
        }
        Strategy::Abort | Strategy::Bypass => {
            let plan = if strategy == Strategy::Abort {
                smmu_kdump::RESET_ABORT
            } else {
                smmu_kdump::RESET_BYPASS
            };
            let smmu = smmu_kdump::full_reset(regs, hal, &plan, SmmuConfig::default())
                .map_err(|e| e.to_string())?;
            Ok((smmu, format!("full-reset: {} strategy", strategy.name())))
        }
    }
}

/// The device's new driver attaches a fresh domain mapping the same buffer, and checks that
/// one transaction per StreamID now translates through it.
fn reattach(
    smmu: &CrashSmmu,
    platform: &ModelPlatform,
    id: MasterId,
    d: &Device,
) -> Result<bool, String> {
    let tables = ModelTables(platform.hal());
    let domain = smmu
        .new_domain(d.stage, d.protected, tables)
        .map_err(|e| e.to_string())?;
    smmu.map(&domain, Iova(d.iova), PhysAddr(d.pa), d.pages << 12, RW)
        .map_err(|e| e.to_string())?;
    smmu.attach(id, &domain).map_err(|e| e.to_string())?;
    let ok = d.sids.iter().all(|&sid| {
        let r = platform
            .model()
            .with(|m| m.dma(smmu_model::Transaction::read(sid, d.iova + 0x1008)));
        r == TxnResult::Translated { pa: d.pa + 0x1008 }
            && !smmu.with_stream_table(|t| t.is_deferred(sid))
    });
    std::mem::forget(domain);
    Ok(ok)
}

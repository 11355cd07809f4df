//! Adopt or reset: the crash kernel's way to bring up an SMMU that may still be translating
//! (SPEC K1–K17). The decision and the table checks are [`check_adoption`](crate::check_adoption)'s; this module
//! turns a positive verdict into a running driver — the adopted table, the ID reservations,
//! the adopt-mode [`ResetPlan`] — and anything else into the full reset of SPEC D2, with the
//! reason.

use smmu::dma::DmaBuf;
use smmu::ids::{IdAllocator, IdError};
use smmu::reset::{OnFailure, ResetPlan, ResetStep};
use smmu::strtab::{Layout, Prepared, SteLocation, StreamTable};
use smmu::writer::{make, ENTRY_QWORDS};
use smmu::{Error, Hal, MapAttr, OwnedStreamTable, PhysAddr, RegisterAccess, Smmu, SmmuConfig};

use crate::scan::{Found, MemFault, OldMemory, ScanStats, ScratchSlot};
use crate::table::AdoptedStreamTable;
use crate::validate::{decide, validate_geometry, AdoptPlatform};
use crate::{scan, Refusal, RegisterSnapshot};
use smmu::__smmu_report as report;

/// The adopt-mode reset (SPEC K5–K10): no write to `GBPA`, `CR1`, `CR2`, `STRTAB_BASE` or
/// `STRTAB_BASE_CFG`; one `CR0` write that keeps `SMMUEN`, `ATSCHK` and every other
/// non-queue bit while the queues go off; latched global errors acknowledged and service
/// failure re-checked before the new command queue runs; `CR2.E2H` read back; a new command
/// queue enabled next to `SMMUEN`; `CFGI_ALL` and the TLB invalidations; only the global-error
/// interrupt, after every interrupt was disabled and its MSI configuration replaced by this
/// kernel's (first of all, so the crashed kernel's MSI target is never written again). A failure sets `GBPA.ABORT` before clearing `SMMUEN` (SPEC K16).
pub const ADOPT: ResetPlan = ResetPlan {
    steps: &[
        ResetStep::ConfigureInterrupts,
        ResetStep::QuiesceQueuesKeepingTranslation,
        ResetStep::AcknowledgeGlobalErrors,
        ResetStep::ReadBackE2h,
        ResetStep::ProgramCommandQueue,
        ResetStep::EnableCommandQueue,
        ResetStep::InvalidateAll,
        ResetStep::EnableGlobalErrorInterruptOnly,
    ],
    on_failure: OnFailure::AbortThenDisable,
};

/// The full reset a crash kernel falls back to, and the "abort" strategy: [`ResetPlan::FULL`].
pub const RESET_ABORT: ResetPlan = ResetPlan::FULL;

/// The full reset with `GBPA` left to bypass (the "bypass" strategy, which corrupts memory
/// when a device keeps doing DMA: it exists to be measured, SPEC §0).
pub const RESET_BYPASS: ResetPlan = ResetPlan {
    steps: &[
        ResetStep::GlobalBypassAllow,
        ResetStep::DisableAll,
        ResetStep::ConfigureInterrupts,
        ResetStep::ConfigureAttributes,
        ResetStep::ProgramStreamTable,
        ResetStep::ProgramCommandQueue,
        ResetStep::EnableCommandQueue,
        ResetStep::InvalidateAll,
        ResetStep::EnableEventQueue,
        ResetStep::EnableInterrupts,
        ResetStep::EnableTranslation,
    ],
    on_failure: OnFailure::Report,
};

/// The stream table of a crash kernel's driver: adopted, or its own after a full reset.
///
/// Both variants are fixed-capacity bookkeeping (no heap in this crate); the enum lives
/// inside the driver, which a kernel places in static or allocated memory anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum CrashStreamTable {
    /// The crashed kernel's table, adopted.
    Adopted(AdoptedStreamTable),
    /// A table this kernel allocated (full reset).
    Owned(OwnedStreamTable),
}

impl StreamTable for CrashStreamTable {
    fn log2_size(&self) -> u32 {
        match self {
            Self::Adopted(t) => t.log2_size(),
            Self::Owned(t) => t.log2_size(),
        }
    }

    fn base_registers(&self) -> Option<(u64, u32)> {
        match self {
            Self::Adopted(t) => t.base_registers(),
            Self::Owned(t) => t.base_registers(),
        }
    }

    fn prepare<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        sid: u32,
        fill: &[u64; ENTRY_QWORDS],
    ) -> Result<Prepared, Error> {
        match self {
            Self::Adopted(t) => t.prepare(hal, sid, fill),
            Self::Owned(t) => t.prepare(hal, sid, fill),
        }
    }

    fn locate(&self, sid: u32) -> Result<SteLocation<'_>, Error> {
        match self {
            Self::Adopted(t) => t.locate(sid),
            Self::Owned(t) => t.locate(sid),
        }
    }

    fn is_deferred(&self, sid: u32) -> bool {
        match self {
            Self::Adopted(t) => t.is_deferred(sid),
            Self::Owned(t) => t.is_deferred(sid),
        }
    }

    fn clear_deferred(&self, sid: u32) {
        match self {
            Self::Adopted(t) => t.clear_deferred(sid),
            Self::Owned(t) => t.clear_deferred(sid),
        }
    }

    fn is_inherited(&self, sid: u32) -> bool {
        match self {
            Self::Adopted(t) => t.is_inherited(sid),
            Self::Owned(t) => t.is_inherited(sid),
        }
    }

    unsafe fn release<H: Hal + ?Sized>(self, hal: &H) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match self {
                Self::Adopted(t) => t.release(hal),
                Self::Owned(t) => t.release(hal),
            }
        }
    }
}

/// The crashed kernel's memory through the HAL: each read maps the words it needs with the
/// platform's attribute, reads them (after invalidating, when the SMMU is not coherent, so a
/// line the SMMU wrote is not hidden) and unmaps them again: nothing stays mapped (SPEC K3).
pub struct HalMemory<'h, H: Hal + ?Sized> {
    /// The platform.
    pub hal: &'h H,
    /// The attribute of the mappings (SPEC K17).
    pub attr: MapAttr,
    /// Whether the SMMU is coherent.
    pub coherent: bool,
}

impl<H: Hal + ?Sized> OldMemory for HalMemory<'_, H> {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        if out.is_empty() {
            return Ok(());
        }
        let bytes = out.len().checked_mul(8).ok_or(MemFault)?;
        let buf = DmaBuf::map(self.hal, PhysAddr(pa), bytes, self.attr, self.coherent)
            .map_err(|_| MemFault)?;
        let mut result = Ok(());
        for (i, w) in out.iter_mut().enumerate() {
            if let Ok(v) = buf.read(self.hal, i) {
                *w = v;
            } else {
                result = Err(MemFault);
                break;
            }
        }
        // SAFETY: a CPU mapping made above for this read only.
        unsafe { buf.release(self.hal) };
        result
    }
}

/// How adoption maps the old tables and how the crash kernel's driver is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdoptOptions {
    /// The attribute of the crashed kernel's tables (SPEC K17).
    pub attr: MapAttr,
    /// Ask the platform whether the table ranges are RAM (SPEC K2's optional check).
    pub check_ram: bool,
    /// Driver settings, as [`AdoptOptions::crash_config`] adjusts them: a crash kernel never
    /// enables the event or PRI queue, adopted or not (SPEC K8), and the platform decides
    /// coherency (SPEC K17).
    pub config: SmmuConfig,
    /// The full reset to fall back to ([`RESET_ABORT`] unless a simulation asks otherwise).
    pub fallback: ResetPlan,
    /// SPEC K23: log2 of the crash kernel's command-queue entries, whatever `config` asks
    /// ([`CRASH_CMDQ_LOG2`] by default: 256 × 16 bytes, one 4 KiB page). The knob for a
    /// platform that wants more; a kernel that is not a crash kernel gets `config`'s.
    pub crash_cmdq_log2: u32,
}

/// SPEC K23: the crash kernel's command queue by default: 2^8 16-byte commands, one 4 KiB
/// page. A hardware-maximum queue (`IDR1.CMDQS` up to 2^19 entries, 8 MiB) would come out
/// of the few tens of MB a crash kernel has; Linux makes the same choice for kdump kernels.
pub const CRASH_CMDQ_LOG2: u32 = 8;

impl AdoptOptions {
    /// The driver settings of this kernel on `platform`, whichever way the SMMU comes up
    /// (adopted, or the full reset after a refusal or an abandoned adoption):
    /// - a crash kernel gets no event or PRI queue, so those queues and their interrupts
    ///   stay off for its whole life (SPEC K8); a kernel that is not a crash kernel gets
    ///   `config` as asked;
    /// - whether the SMMU is coherent is the platform's answer, not `IDR0.COHACC` (SPEC K17):
    ///   a platform that says non-coherent gets cache maintenance on every structure write;
    /// - a crash kernel's command queue is [`AdoptOptions::crash_cmdq_log2`] entries, one
    ///   page unless raised (SPEC K23).
    pub fn crash_config(&self, platform: &AdoptPlatform) -> SmmuConfig {
        let mut config = SmmuConfig {
            coherent: Some(platform.coherent),
            ..self.config
        };
        if platform.crash_kernel {
            config.evtq_log2 = None;
            config.priq_log2 = None;
            config.cmdq_log2 = self.crash_cmdq_log2;
        }
        config
    }
}

impl Default for AdoptOptions {
    fn default() -> Self {
        Self {
            attr: MapAttr::Cacheable,
            check_ram: true,
            config: SmmuConfig::default(),
            fallback: RESET_ABORT,
            crash_cmdq_log2: CRASH_CMDQ_LOG2,
        }
    }
}

/// What [`boot`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The live table was adopted; SMMUEN stayed 1 throughout.
    Adopted {
        /// What the scan visited.
        stats: ScanStats,
        /// ASIDs reserved.
        asids: u32,
        /// VMIDs reserved.
        vmids: u32,
    },
    /// Full reset, with the reason adoption was refused.
    FullReset(Refusal),
    /// Adoption started and failed part-way (the error); the SMMU was set to abort, then
    /// disabled (SPEC K16), then fully reset.
    Abandoned(Error),
}

/// A crash kernel's driver, up.
pub struct Booted<R: RegisterAccess, H: Hal> {
    /// The driver.
    pub smmu: Smmu<R, H, CrashStreamTable>,
    /// How it came up.
    pub verdict: Verdict,
}

impl<R: RegisterAccess, H: Hal> core::fmt::Debug for Booted<R, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Booted")
            .field("verdict", &self.verdict)
            .finish_non_exhaustive()
    }
}

fn reserve(asids: &mut IdAllocator, vmids: &mut IdAllocator, found: Found) -> Result<(), Refusal> {
    let r = match found {
        Found::Asid { sid, ssid, asid } => asids
            .reserve(asid)
            .map_err(|e| (e, Refusal::AsidConflict { sid, ssid, asid })),
        Found::Vmid { sid, vmid } => vmids
            .reserve(vmid)
            .map_err(|e| (e, Refusal::VmidConflict { sid, vmid })),
        // Deferred state is derived per chunk when a device is added.
        Found::Deferred { .. } => Ok(()),
    };
    match r {
        // Several STEs may share one CD table or VMID: reserved once is reserved.
        Ok(()) | Err((IdError::InUse(_), _)) => Ok(()),
        Err((_, refusal)) => Err(refusal),
    }
}

/// Runs `f` over `slots` scratch slots in zeroed pages from the HAL, freed afterwards: the
/// scan's bookkeeping (SPEC K15, K18, K19), sized before the walk from the registers.
fn with_scratch<H: Hal + ?Sized>(
    hal: &H,
    slots: usize,
    f: impl FnOnce(&mut [ScratchSlot]) -> Result<ScanStats, Refusal>,
) -> Result<ScanStats, Refusal> {
    let bytes = slots.saturating_mul(core::mem::size_of::<ScratchSlot>());
    let no_memory = Refusal::ScratchTooSmall {
        needed: slots as u64,
        given: 0,
    };
    let region = hal
        .dma_alloc(bytes.max(4096), 4096)
        .map_err(|_| no_memory)?;
    // The HAL aligns to 4096; a HAL that did not is refused rather than trusted.
    #[allow(clippy::cast_ptr_alignment)]
    let ptr = region.va.as_ptr().cast::<ScratchSlot>();
    if region.size < bytes || !ptr.is_aligned() {
        // SAFETY: just allocated, never used.
        unsafe { hal.dma_free(region) };
        return Err(no_memory);
    }
    // SAFETY: the HAL guarantees `va` is valid for reads and writes of `size` ≥ `bytes`
    // bytes, aligned to 4096 (≥ the slot's 8), zeroed (a valid `ScratchSlot`: two integers)
    // and ours alone until `dma_free`; the slice does not outlive this function.
    let scratch = unsafe { core::slice::from_raw_parts_mut(ptr, slots) };
    let result = f(scratch);
    // SAFETY: allocated above; the CPU is done with it and the SMMU never saw it.
    unsafe { hal.dma_free(region) };
    result
}

/// A full reset on a table of our own.
pub fn full_reset<R: RegisterAccess, H: Hal>(
    regs: R,
    hal: H,
    plan: &ResetPlan,
    config: SmmuConfig,
) -> Result<Smmu<R, H, CrashStreamTable>, Error> {
    let features = smmu::probe::probe(&regs)?;
    let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
    let coherent = config.coherent.unwrap_or(features.coherent);
    // With GBPA left to bypass, unattached StreamIDs bypass too (the "bypass" strategy);
    // otherwise they abort.
    let fill = if plan.contains(ResetStep::GlobalBypassAllow) {
        make::ste_image(&make::bypass_ste(make::EntryFeatures {
            attr_types_ovr: features.attr_types_ovr,
            ..Default::default()
        }))
    } else {
        make::ste_image(&make::abort_ste())
    };
    let table = OwnedStreamTable::new(&hal, layout, log2, coherent, &fill)?;
    let mut smmu = Smmu::new(regs, hal, features, CrashStreamTable::Owned(table), config)?;
    smmu.reset(plan)?;
    Ok(smmu)
}

/// Adopts the live SMMU if it can be adopted, else resets it (SPEC K1–K17).
///
/// `regs` and `hal` are cloned so that a refused or abandoned adoption can hand them to the
/// full reset; references (`&Mmio`, `&MyHal`) are the usual choice.
///
/// With the `log` feature the verdict is reported (target `smmu`): adopted with what was
/// reserved, or the full reset with the reason in plain words and its stable code.
pub fn boot<R: RegisterAccess + Clone, H: Hal + Clone>(
    regs: R,
    hal: H,
    platform: &AdoptPlatform,
    options: &AdoptOptions,
) -> Result<Booted<R, H>, Error> {
    let booted = adopt_or_reset(regs, hal, platform, options);
    match &booted {
        Ok(Booted {
            verdict: Verdict::Adopted { stats, asids, vmids },
            ..
        }) => report!(
            info,
            "crash kernel: adopted the live SMMU ({} valid STEs, {asids} ASIDs and {vmids} VMIDs reserved)",
            stats.stes_valid
        ),
        Ok(Booted {
            verdict: Verdict::FullReset(reason),
            ..
        }) => report!(
            warn,
            "crash kernel: full SMMU reset, the live table was not adopted: {reason} ({})",
            reason.code()
        ),
        Ok(Booted {
            verdict: Verdict::Abandoned(e),
            ..
        }) => report!(
            error,
            "crash kernel: adoption failed part-way ({e}); the SMMU was reset"
        ),
        Err(e) => report!(error, "crash kernel: SMMU bring-up failed: {e}"),
    }
    booted
}

/// [`boot`] without its report.
fn adopt_or_reset<R: RegisterAccess + Clone, H: Hal + Clone>(
    regs: R,
    hal: H,
    platform: &AdoptPlatform,
    options: &AdoptOptions,
) -> Result<Booted<R, H>, Error> {
    // One configuration for both paths: the full reset after a refusal is still the crash
    // kernel's (SPEC K8, K17).
    let config = options.crash_config(platform);
    match try_adopt(regs.clone(), hal.clone(), platform, options, config) {
        Ok(booted) => Ok(booted),
        Err((verdict, abandoned)) => {
            let smmu = full_reset(regs, hal, &options.fallback, config);
            if let Some(old) = abandoned {
                if smmu.is_ok() {
                    // SAFETY: the full reset wrote CR0 = 0 (acknowledged) before anything
                    // that touches memory, so the SMMU no longer uses the abandoned queue.
                    unsafe { old.release() };
                } else {
                    // The SMMU may still use it: leak rather than free.
                    core::mem::forget(old);
                }
            }
            Ok(Booted {
                smmu: smmu?,
                verdict,
            })
        }
    }
}

type Abandoned<R, H> = (Verdict, Option<Smmu<R, H, CrashStreamTable>>);

// The error carries the abandoned driver back by value (no heap to box it in).
#[allow(clippy::result_large_err)]
fn try_adopt<R: RegisterAccess, H: Hal>(
    regs: R,
    hal: H,
    platform: &AdoptPlatform,
    options: &AdoptOptions,
    config: SmmuConfig,
) -> Result<Booted<R, H>, Abandoned<R, H>> {
    let refuse = |r: Refusal| (Verdict::FullReset(r), None);
    let snap = RegisterSnapshot::read(&regs);
    decide(&snap, platform).map_err(refuse)?;
    let features =
        smmu::probe::check(&snap.ids).map_err(|e| (Verdict::Abandoned(e.into()), None))?;
    let is_ram = |pa: u64, size: u64| !options.check_ram || hal.is_ram(PhysAddr(pa), size);
    let geometry = validate_geometry(&snap, &features, &is_ram).map_err(refuse)?;
    // SPEC K17: the platform's answer (in `config`), never IDR0.COHACC, decides whether
    // writes to the adopted structures are cleaned.
    let coherent = config.coherent.unwrap_or(features.coherent);
    // SPEC K14: every ASID and VMID the old tables use, reserved before any domain exists.
    let mut asids = IdAllocator::new(if features.asid16 { 16 } else { 8 });
    let mut vmids = IdAllocator::new(if features.vmid16 { 16 } else { 8 });
    let memory = HalMemory {
        hal: &hal,
        attr: options.attr,
        coherent,
    };
    let stats = with_scratch(&hal, scan::scratch_slots(&geometry, &features), |scratch| {
        scan::scan(&geometry, &features, &memory, scratch, &mut |f| {
            reserve(&mut asids, &mut vmids, f)
        })
    })
    .map_err(refuse)?;
    let mut table =
        AdoptedStreamTable::new(&hal, geometry, options.attr, coherent).map_err(|_| {
            refuse(Refusal::MemoryUnreadable {
                pa: geometry.base(),
                len: geometry.table_bytes(),
            })
        })?;
    // SPEC K21: what is mapped later is checked against what the scan reserved.
    table.revalidate_against(features, &asids, &vmids);
    let mut smmu = Smmu::new(
        regs,
        hal,
        features,
        CrashStreamTable::Adopted(table),
        config,
    )
    .map_err(|e| (Verdict::Abandoned(e), None))?;
    *smmu.asids_mut() = asids;
    *smmu.vmids_mut() = vmids;
    if let Err(e) = smmu.reset(&ADOPT) {
        // The plan's failure action set GBPA.ABORT, then cleared SMMUEN (SPEC K16).
        return Err((Verdict::Abandoned(e), Some(smmu)));
    }
    let (asids, vmids) = (smmu.asids().in_use(), smmu.vmids().in_use());
    Ok(Booted {
        smmu,
        verdict: Verdict::Adopted {
            stats,
            asids,
            vmids,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: K8, K17
    #[test]
    fn the_crash_kernels_configuration_has_no_event_queue_and_the_platforms_coherency() {
        let options = AdoptOptions {
            config: SmmuConfig {
                evtq_log2: Some(8),
                priq_log2: Some(8),
                coherent: Some(true),
                ..SmmuConfig::default()
            },
            ..AdoptOptions::default()
        };
        let platform = AdoptPlatform {
            crash_kernel: true,
            coherent: false,
            cache_maintenance: true,
            expect_e2h: None,
        };
        let c = options.crash_config(&platform);
        assert_eq!((c.evtq_log2, c.priq_log2), (None, None));
        assert_eq!(c.coherent, Some(false), "the platform's answer wins");
        assert_eq!(c.budget, options.config.budget);
        // Not a crash kernel: the queues it asked for.
        let normal = AdoptPlatform {
            crash_kernel: false,
            coherent: true,
            ..platform
        };
        let c = options.crash_config(&normal);
        assert_eq!((c.evtq_log2, c.priq_log2), (Some(8), Some(8)));
        assert_eq!(c.coherent, Some(true));
    }

    // spec: K23 — the crash kernel's command queue is one page unless the knob raises it,
    // whatever the driver configuration asks; other kernels get what they ask.
    #[test]
    fn k23_the_crash_kernels_command_queue_is_one_page_by_default() {
        let big = AdoptOptions {
            config: SmmuConfig {
                cmdq_log2: 19,
                ..SmmuConfig::default()
            },
            ..AdoptOptions::default()
        };
        let crash = AdoptPlatform {
            crash_kernel: true,
            coherent: true,
            ..AdoptPlatform::default()
        };
        let c = big.crash_config(&crash);
        assert_eq!(c.cmdq_log2, CRASH_CMDQ_LOG2);
        assert_eq!(
            (1usize << c.cmdq_log2) * 16,
            4096,
            "one 4 KiB page of commands"
        );
        let raised = AdoptOptions {
            crash_cmdq_log2: 12,
            ..big
        };
        assert_eq!(raised.crash_config(&crash).cmdq_log2, 12);
        let normal = AdoptPlatform {
            crash_kernel: false,
            ..crash
        };
        assert_eq!(big.crash_config(&normal).cmdq_log2, 19);
    }

    // spec: K8
    #[test]
    fn every_plan_reprograms_the_interrupts_before_enabling_one() {
        for plan in [ADOPT, RESET_ABORT, RESET_BYPASS] {
            let at = |step| plan.steps.iter().position(|&s| s == step);
            let configure = at(ResetStep::ConfigureInterrupts).expect("configures interrupts");
            for enable in [
                ResetStep::EnableInterrupts,
                ResetStep::EnableGlobalErrorInterruptOnly,
            ] {
                if let Some(e) = at(enable) {
                    assert!(configure < e, "{plan:?}");
                }
            }
        }
        // The adoption plan does it first, before the crashed kernel's interrupt can fire
        // on anything this kernel does.
        assert_eq!(ADOPT.steps.first(), Some(&ResetStep::ConfigureInterrupts));
    }
}

//! Adopt or reset: the crash kernel's way to bring up an SMMU that may still be translating
//! (SPEC K1–K17). The decision and the table checks are the pipeline
//! [`check_adoption`](crate::check_adoption) runs, here run on the live SMMU with the driver's
//! own feature checks and the HAL (`CrashSteps`); this module turns a positive verdict into a
//! running driver — the adopted table, the ID reservations, the adopt-mode [`ResetPlan`] — and
//! anything else into the full reset of SPEC D2, with the reason.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use smmu::ids::{IdAllocator, IdError};
use smmu::reset::{OnFailure, ResetPlan, ResetStep};
use smmu::strtab::{Layout, Prepared, SteLocation, StreamTable};
use smmu::writer::{make, ENTRY_QWORDS};
use smmu::{Error, Hal, MapAttr, OwnedStreamTable, PhysAddr, RegisterAccess, Smmu, SmmuConfig};

/// [`HalMemory`] moved to [`crate::memory`], beside nothing it depends on, so that
/// `table` can use it without importing `adopt` (which imports `table`). This path is kept
/// for one release.
pub use crate::memory::HalMemory;
use crate::scan::{Found, ScanStats, ScratchSlot};
use crate::table::AdoptedStreamTable;
use crate::validate::{AdoptPlatform, Geometry};
use crate::{adoption_pipeline, scan, Adoption, AdoptionSteps, Refusal, RegisterSnapshot};
use smmu::__smmu_report as report;
use smmu::arch::idr::{Features, IdRegs};

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

/// The full reset that clears `SMMUEN` *before* its abort step: the fallback for an SMMU that
/// ignores `SMMU_GBPA`, such as QEMU 7.2's (it reads `GBPA` as 0, drops every write, and
/// bypasses whenever `SMMUEN` is 0).
///
/// [`RESET_ABORT`] ([`ResetPlan::FULL`]) sets `GBPA.ABORT` first and confirms it (§6.3.14,
/// SPEC D11) before it clears `SMMUEN`, so that no DMA bypasses while the table is replaced.
/// On a live SMMU that ignores `GBPA` the abort cannot be confirmed, and the driver will not
/// turn translated DMA into bypass on an unconfirmed abort (SPEC K16): the reset stops with
/// [`Error::AbortNotConfirmed`], translation still on, and a refused adoption leaves the
/// crash kernel without a driver. This plan disables first — what a kernel without adoption
/// does there (Linux writes `GBPA`, which such an SMMU ignores, then clears `CR0`) — then
/// runs the full reset; DMA in flight bypasses until `SMMUEN` is set again, the loss the
/// abort step exists to prevent and cannot prevent on this SMMU.
///
/// Use it only where the platform knows its SMMU ignores `GBPA`, and together with
/// [`GbpaPolicy::AcceptIgnoredWhileDisabled`](smmu::GbpaPolicy::AcceptIgnoredWhileDisabled)
/// in [`AdoptOptions::config`], which lets the abort step pass on a dropped write while
/// `SMMUEN` reads 0 (and reports it through [`Smmu::gbpa_ignored`]); on an SMMU whose `GBPA`
/// works, [`RESET_ABORT`] is strictly better. Its failure action is
/// [`OnFailure::AbortThenDisable`] like the default's.
///
/// ```
/// use smmu::{GbpaPolicy, SmmuConfig};
/// use smmu_kdump::{AdoptOptions, RESET_DISABLE_FIRST};
///
/// // A platform whose SMMU ignores GBPA (QEMU 7.2's `virt,iommu=smmuv3`).
/// let options = AdoptOptions {
///     fallback: RESET_DISABLE_FIRST,
///     config: SmmuConfig { gbpa: GbpaPolicy::AcceptIgnoredWhileDisabled, ..SmmuConfig::default() },
///     ..AdoptOptions::default()
/// };
/// # let _ = options;
/// ```
pub const RESET_DISABLE_FIRST: ResetPlan = ResetPlan {
    steps: &[
        ResetStep::DisableAll,
        ResetStep::GlobalBypassAbort,
        ResetStep::ConfigureInterrupts,
        ResetStep::ConfigureAttributes,
        ResetStep::ProgramStreamTable,
        ResetStep::ProgramCommandQueue,
        ResetStep::EnableCommandQueue,
        ResetStep::InvalidateAll,
        ResetStep::EnableEventQueue,
        ResetStep::EnablePriQueue,
        ResetStep::EnableInterrupts,
        ResetStep::EnableAtsCheck,
        ResetStep::EnableTranslation,
    ],
    on_failure: OnFailure::AbortThenDisable,
};

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
/// Both variants are fixed-capacity bookkeeping (no heap in this crate), tens of KiB: the
/// enum lives inside the driver, in the memory the kernel gave [`boot_in`], and is built
/// there ([`CrashStreamTable::adopted_in`], [`CrashStreamTable::owned_in`]), never on the
/// stack. `repr(u8)` gives it the layout those in-place constructors rely on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[repr(u8)]
pub enum CrashStreamTable {
    /// The crashed kernel's table, adopted.
    Adopted(AdoptedStreamTable) = 0,
    /// A table this kernel allocated (full reset).
    Owned(OwnedStreamTable) = 1,
}

/// One variant of a `repr(u8)` enum as the reference defines its layout (RFC 2195, "primitive
/// representation"): a `repr(C)` struct of the `u8` tag followed by the variant's fields.
#[repr(C)]
struct VariantLayout<T> {
    tag: u8,
    payload: MaybeUninit<T>,
}

impl CrashStreamTable {
    /// Splits `place` into the tag and the payload place of a variant whose payload is `T`;
    /// the caller writes the payload, then that variant's discriminant into the tag.
    ///
    /// # Safety
    /// `T` is the payload type of one of the enum's variants.
    unsafe fn variant_place<T>(place: &mut MaybeUninit<Self>) -> (*mut u8, &mut MaybeUninit<T>) {
        let p = place.as_mut_ptr().cast::<VariantLayout<T>>();
        // SAFETY: for a `repr(u8)` enum, a value of a variant with payload `T` is laid out as
        // `VariantLayout<T>` (`T` is a variant's payload: the caller), which fits in
        // and is aligned within `Self`; only raw places and a reference to a `MaybeUninit`
        // (valid for any bytes) are made.
        unsafe { (addr_of_mut!((*p).tag), &mut *addr_of_mut!((*p).payload)) }
    }

    /// Builds [`CrashStreamTable::Adopted`] in `place`: the crashed kernel's table mapped as
    /// [`AdoptedStreamTable::new_in`] does. On failure `place` is left uninitialised.
    pub fn adopted_in<'p, H: Hal + ?Sized>(
        place: &'p mut MaybeUninit<Self>,
        hal: &H,
        geometry: crate::Geometry,
        attr: MapAttr,
        coherent: bool,
        features: &smmu::arch::idr::Features,
    ) -> Result<&'p mut AdoptedStreamTable, Error> {
        // SAFETY: discriminant 0 is `Adopted(AdoptedStreamTable)`.
        let (tag, payload) = unsafe { Self::variant_place::<AdoptedStreamTable>(place) };
        let table = AdoptedStreamTable::new_in(
            payload,
            hal,
            geometry,
            attr,
            coherent,
            id_bits(features.asid16),
            id_bits(features.vmid16),
        )?;
        // SAFETY: `tag` is the enum's tag byte; with the payload initialised above, writing
        // the discriminant completes a valid `Adopted`.
        unsafe { tag.write(0) };
        Ok(table)
    }

    /// Builds [`CrashStreamTable::Owned`] in `place`, as [`OwnedStreamTable::new_in`] does.
    /// On failure `place` is left uninitialised.
    pub fn owned_in<'p, H: Hal + ?Sized>(
        place: &'p mut MaybeUninit<Self>,
        hal: &H,
        layout: Layout,
        log2: u32,
        coherent: bool,
        fill: &[u64; ENTRY_QWORDS],
    ) -> Result<&'p mut OwnedStreamTable, Error> {
        // SAFETY: discriminant 1 is `Owned(OwnedStreamTable)`.
        let (tag, payload) = unsafe { Self::variant_place::<OwnedStreamTable>(place) };
        let table = OwnedStreamTable::new_in(payload, hal, layout, log2, coherent, fill)?;
        // SAFETY: as in `adopted_in`, for discriminant 1.
        unsafe { tag.write(1) };
        Ok(table)
    }
}

/// Bits of an ASID or VMID: 16 when the SMMU has 16-bit IDs, else 8.
fn id_bits(sixteen: bool) -> u32 {
    if sixteen {
        16
    } else {
        8
    }
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

    unsafe fn release<H: Hal + ?Sized>(&mut self, hal: &H) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match self {
                Self::Adopted(t) => t.release(hal),
                Self::Owned(t) => t.release(hal),
            }
        }
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
    /// The full reset to fall back to after a refused or abandoned adoption (SPEC K4):
    /// [`RESET_ABORT`] by default, which stops with [`Error::AbortNotConfirmed`] rather than
    /// let translated DMA bypass on an SMMU that ignores `GBPA` (SPEC K16);
    /// [`RESET_DISABLE_FIRST`] on a platform known to have such an SMMU (QEMU 7.2), with
    /// [`GbpaPolicy::AcceptIgnoredWhileDisabled`](smmu::GbpaPolicy::AcceptIgnoredWhileDisabled)
    /// in `config`; [`RESET_BYPASS`] only to measure what bypass costs.
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

/// What [`boot_in`] did.
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

/// The driver of a crash kernel: the SMMU with an adopted table or one of its own.
pub type CrashDriver<R, H> = Smmu<R, H, CrashStreamTable>;

/// A crash kernel's driver, up, where [`boot_in`] built it.
pub struct BootedIn<'s, R: RegisterAccess, H: Hal> {
    /// The driver, in the caller's slot.
    pub smmu: &'s mut CrashDriver<R, H>,
    /// How it came up.
    pub verdict: Verdict,
}

impl<R: RegisterAccess, H: Hal> core::fmt::Debug for BootedIn<'_, R, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BootedIn")
            .field("verdict", &self.verdict)
            .finish_non_exhaustive()
    }
}

/// A crash kernel's driver, up, returned by value by [`boot`].
pub struct Booted<R: RegisterAccess, H: Hal> {
    /// The driver.
    pub smmu: CrashDriver<R, H>,
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

/// Reserves one tag the scan found in the scan's record (SPEC K14).
fn reserve(asids: &IdAllocator, vmids: &IdAllocator, found: Found) -> Result<(), Refusal> {
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

/// The full reset on a table of our own, with the driver built in `slot` (nothing of its
/// size passes through the stack). With `GBPA` left to bypass by the plan, unattached
/// StreamIDs bypass too (the "bypass" strategy); otherwise they abort.
///
/// On an error the slot must be treated as uninitialised. If the driver was built and its
/// reset failed, its buffers are not given back (the SMMU may still use them: leaked, as a
/// crash kernel must).
pub fn full_reset_in<'s, R: RegisterAccess, H: Hal>(
    slot: &'s mut MaybeUninit<CrashDriver<R, H>>,
    regs: R,
    hal: H,
    plan: &ResetPlan,
    config: SmmuConfig,
) -> Result<&'s mut CrashDriver<R, H>, Error> {
    let features = smmu::probe::probe(&regs)?;
    let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
    let coherent = config.coherent.unwrap_or(features.coherent);
    let fill = if plan.contains(ResetStep::GlobalBypassAllow) {
        make::ste_image(&make::bypass_ste(make::EntryFeatures {
            attr_types_ovr: features.attr_types_ovr,
            ..Default::default()
        }))
    } else {
        make::ste_image(&make::abort_ste())
    };
    let smmu = Smmu::new_in_with(slot, regs, hal, features, config, |hal, place| {
        CrashStreamTable::owned_in(place, hal, layout, log2, coherent, &fill).map(|_| ())
    })?;
    smmu.reset(plan)?;
    Ok(smmu)
}

/// [`full_reset_in`], returning the driver by value (through the stack: hosts and tests;
/// a crash kernel uses [`full_reset_in`]).
pub fn full_reset<R: RegisterAccess, H: Hal>(
    regs: R,
    hal: H,
    plan: &ResetPlan,
    config: SmmuConfig,
) -> Result<CrashDriver<R, H>, Error> {
    let mut slot = MaybeUninit::uninit();
    full_reset_in(&mut slot, regs, hal, plan, config)?;
    // SAFETY: `full_reset_in` returned `Ok`, so the slot holds the driver.
    Ok(unsafe { slot.assume_init() })
}

/// Adopts the live SMMU if it can be adopted, else resets it (SPEC K1–K17), building the
/// driver in `slot`: the crash kernel's bring-up.
///
/// Nothing of the driver's size passes through the stack: the driver, its stream table
/// (adopted or its own) and the ID allocators are written where they live, and the scan's
/// bookkeeping is in pages from the HAL. The stack it uses is part of its contract, because
/// a crash kernel's stack is small and the memory below it is the crashed kernel's (the dump
/// it exists to save): at most 16 KiB when optimised (opt-level 1 and up) and 48 KiB at
/// opt-level 0, checked by `kdump/tests/stack.rs` in every CI run (measured on x86-64:
/// 9.4 KiB in release, 33 KiB at opt-level 0; most of it is the scan's walk). The by-value
/// [`boot`] needs 110 KiB and 750 KiB.
///
/// `regs` and `hal` are cloned so that a refused or abandoned adoption can hand them to the
/// full reset; references (`&Mmio`, `&MyHal`) are the usual choice. An abandoned adoption's
/// driver is taken down in the slot by the fallback plan's steps up to and including
/// [`ResetStep::DisableAll`]; its buffers are given back if `CR0` then reads 0 and leaked
/// otherwise, and the full reset is built in the same slot.
///
/// With the `log` feature the verdict is reported (target `smmu`): adopted with what was
/// reserved, or the full reset with the reason in plain words and its stable code.
///
/// On an error the slot must be treated as uninitialised (see [`full_reset_in`]).
pub fn boot_in<'s, R: RegisterAccess + Clone, H: Hal + Clone>(
    slot: &'s mut MaybeUninit<CrashDriver<R, H>>,
    regs: R,
    hal: H,
    platform: &AdoptPlatform,
    options: &AdoptOptions,
) -> Result<BootedIn<'s, R, H>, Error> {
    let verdict = adopt_or_reset_in(slot, regs, hal, platform, options);
    match &verdict {
        Ok(Verdict::Adopted { stats, asids, vmids }) => report!(
            info,
            "crash kernel: adopted the live SMMU ({} valid STEs, {asids} ASIDs and {vmids} VMIDs reserved)",
            stats.stes_valid
        ),
        Ok(Verdict::FullReset(reason)) => report!(
            warn,
            "crash kernel: full SMMU reset, the live table was not adopted: {reason} ({})",
            reason.code()
        ),
        Ok(Verdict::Abandoned(e)) => report!(
            error,
            "crash kernel: adoption failed part-way ({e}); the SMMU was reset"
        ),
        Err(e) => report!(error, "crash kernel: SMMU bring-up failed: {e}"),
    }
    let verdict = verdict?;
    Ok(BootedIn {
        // SAFETY: `adopt_or_reset_in` returned `Ok`: the slot holds the running driver.
        smmu: unsafe { slot.assume_init_mut() },
        verdict,
    })
}

/// [`boot_in`], returning the driver by value: it passes through the stack (about 100 KiB),
/// which a host test or tool can afford and a crash kernel cannot.
pub fn boot<R: RegisterAccess + Clone, H: Hal + Clone>(
    regs: R,
    hal: H,
    platform: &AdoptPlatform,
    options: &AdoptOptions,
) -> Result<Booted<R, H>, Error> {
    let mut slot = MaybeUninit::uninit();
    let verdict = boot_in(&mut slot, regs, hal, platform, options)?.verdict;
    Ok(Booted {
        // SAFETY: `boot_in` returned `Ok`, so the slot holds the driver.
        smmu: unsafe { slot.assume_init() },
        verdict,
    })
}

/// How an adoption attempt ended, when it did not adopt.
enum NotAdopted {
    /// Refused before the driver was built: the slot is uninitialised.
    Refused(Verdict),
    /// The adopt-mode reset failed: the slot holds the abandoned driver.
    Abandoned(Error),
}

impl From<Error> for NotAdopted {
    fn from(e: Error) -> Self {
        // The driver could not be built (its queues): nothing to take down.
        Self::Refused(Verdict::Abandoned(e))
    }
}

/// [`boot_in`] without its report: on `Ok` the slot holds the driver.
fn adopt_or_reset_in<R: RegisterAccess + Clone, H: Hal + Clone>(
    slot: &mut MaybeUninit<CrashDriver<R, H>>,
    regs: R,
    hal: H,
    platform: &AdoptPlatform,
    options: &AdoptOptions,
) -> Result<Verdict, Error> {
    // One configuration for both paths: the full reset after a refusal is still the crash
    // kernel's (SPEC K8, K17).
    let config = options.crash_config(platform);
    let verdict = match try_adopt_in(slot, regs.clone(), hal.clone(), platform, options, config) {
        Ok(adopted) => return Ok(adopted),
        Err(NotAdopted::Refused(verdict)) => verdict,
        Err(NotAdopted::Abandoned(e)) => {
            take_down_abandoned(slot, &options.fallback);
            Verdict::Abandoned(e)
        }
    };
    full_reset_in(slot, regs, hal, &options.fallback, config)?;
    Ok(verdict)
}

/// Takes an abandoned adoption's driver down in its slot before the full reset is built
/// there: the fallback plan's steps through [`ResetStep::DisableAll`], then its buffers back
/// to the HAL if the SMMU reads as fully disabled (`CR0` and `CR0ACK` 0), else leaked (the
/// SMMU may still read the new command queue). The slot is uninitialised afterwards.
fn take_down_abandoned<R: RegisterAccess, H: Hal>(
    slot: &mut MaybeUninit<CrashDriver<R, H>>,
    fallback: &ResetPlan,
) {
    // SAFETY: the caller passes a slot holding the abandoned driver.
    let smmu = unsafe { slot.assume_init_mut() };
    let disabled = fallback
        .through(ResetStep::DisableAll)
        .is_some_and(|prefix| {
            smmu.reset(&prefix).is_ok()
                && smmu.regs().read32(smmu::arch::regs::offset::CR0) == 0
                && smmu.regs().read32(smmu::arch::regs::offset::CR0ACK) == 0
        });
    if disabled {
        // SAFETY: the slot holds the driver; CR0 and CR0ACK read 0, so the SMMU uses none
        // of its queues, and its table is the crashed kernel's (only a CPU mapping) or was
        // never programmed; no domain was attached. The slot is rebuilt by the caller.
        drop(unsafe { CrashDriver::release_in(slot) });
    }
    // Otherwise the slot's contents are simply overwritten: the buffers stay allocated.
}

impl From<Refusal> for NotAdopted {
    fn from(r: Refusal) -> Self {
        // A refusal of the pipeline leaves the slot uninitialised: the full reset follows
        // (SPEC K4).
        Self::Refused(Verdict::FullReset(r))
    }
}

/// The crash kernel's steps of the adoption pipeline ([`check_adoption`](crate::check_adoption)
/// runs the same one on a snapshot): the features must be those of an SMMU this driver can
/// run ([`smmu::probe::check`], as at any boot); RAM is what the HAL says, when the options
/// ask; and the scan reads the old tables through the HAL into the adopted table's own
/// allocators, as the stream table of the driver being built in `slot`.
struct CrashSteps<'s, 'o, R: RegisterAccess, H: Hal> {
    slot: &'s mut MaybeUninit<CrashDriver<R, H>>,
    regs: R,
    hal: H,
    options: &'o AdoptOptions,
    config: SmmuConfig,
}

impl<'s, R: RegisterAccess, H: Hal> AdoptionSteps for CrashSteps<'s, '_, R, H> {
    type Error = NotAdopted;
    /// The driver, built in its slot around the adopted table; not yet reset.
    type Scanned = &'s mut CrashDriver<R, H>;

    fn features(&self, ids: &IdRegs) -> Result<Features, NotAdopted> {
        // Not a refusal: the driver cannot run this SMMU at all (SPEC D1), adopted or reset.
        smmu::probe::check(ids).map_err(|e| NotAdopted::Refused(Verdict::Abandoned(e.into())))
    }

    fn is_ram(&self, pa: u64, size: u64) -> bool {
        !self.options.check_ram || self.hal.is_ram(PhysAddr(pa), size)
    }

    fn scan(
        self,
        geometry: &Geometry,
        features: &Features,
    ) -> Result<(ScanStats, Self::Scanned), NotAdopted> {
        let Self {
            slot,
            regs,
            hal,
            options,
            config,
        } = self;
        let (geometry, features) = (*geometry, *features);
        let refuse = |r: Refusal| NotAdopted::Refused(Verdict::FullReset(r));
        // SPEC K17: the platform's answer (in `config`), never IDR0.COHACC, decides whether
        // writes to the adopted structures are cleaned.
        let coherent = config.coherent.unwrap_or(features.coherent);
        let mut stats = ScanStats::default();
        // The table closure's refusal travels back by value (no heap to box it in).
        #[allow(clippy::result_large_err)]
        let smmu = Smmu::new_in_with(slot, regs, hal, features, config, |hal, place| {
            let table = CrashStreamTable::adopted_in(
                place,
                hal,
                geometry,
                options.attr,
                coherent,
                &features,
            )
            .map_err(|_| {
                refuse(Refusal::MemoryUnreadable {
                    pa: geometry.base(),
                    len: geometry.table_bytes(),
                })
            })?;
            let memory = HalMemory {
                hal,
                attr: options.attr,
                coherent,
            };
            // SPEC K14: every ASID and VMID the old tables use, recorded before any domain
            // exists.
            let (asids, vmids) = table.scan_record();
            let scanned = with_scratch(hal, scan::scratch_slots(&geometry, &features), |scratch| {
                scan::scan(&geometry, &features, &memory, scratch, &mut |f| {
                    reserve(asids, vmids, f)
                })
            });
            match scanned {
                Ok(s) => {
                    stats = s;
                    // SPEC K21: what is mapped later is checked against what the scan
                    // reserved.
                    table.arm_revalidation(features);
                    Ok(())
                }
                Err(r) => {
                    // SAFETY: only the crashed kernel's table is mapped (a CPU mapping), and
                    // the place is left uninitialised (this returns an error).
                    unsafe { table.release(hal) };
                    Err(refuse(r))
                }
            }
        })?;
        Ok((stats, smmu))
    }
}

/// Adoption (SPEC K1–K21) into `slot`. `Ok`: the slot holds the running driver.
// The verdict travels back by value (128 bytes, no heap to box it in).
#[allow(clippy::result_large_err)]
fn try_adopt_in<R: RegisterAccess, H: Hal>(
    slot: &mut MaybeUninit<CrashDriver<R, H>>,
    regs: R,
    hal: H,
    platform: &AdoptPlatform,
    options: &AdoptOptions,
    config: SmmuConfig,
) -> Result<Verdict, NotAdopted> {
    let snap = RegisterSnapshot::read(&regs);
    let steps = CrashSteps {
        slot: &mut *slot,
        regs,
        hal,
        options,
        config,
    };
    // decide → probe's checks → validate_geometry → the scan, which builds the driver in its
    // slot around the adopted table: `check_adoption`'s pipeline, run on the live SMMU.
    let (Adoption { stats, .. }, smmu) = adoption_pipeline(&snap, platform, steps)?;
    // The driver's allocators take over the scan's reservations (SPEC K14).
    let taken = smmu.with_stream_table(|table| match table {
        CrashStreamTable::Adopted(t) => {
            let (asids, vmids) = t.scan_record();
            smmu.asids()
                .reserve_from(asids)
                .and_then(|()| smmu.vmids().reserve_from(vmids))
        }
        CrashStreamTable::Owned(_) => Ok(()),
    });
    if let Err(e) = taken {
        // Cannot happen (fresh allocators of the same widths); were it to, the driver
        // exists but never touched a register: give it back and reset.
        // SAFETY: the slot holds the driver, which programmed nothing.
        drop(unsafe { CrashDriver::release_in(slot) });
        let _ = e;
        return Err(NotAdopted::Refused(Verdict::Abandoned(Error::IdsExhausted)));
    }
    if let Err(e) = smmu.reset(&ADOPT) {
        // The plan's failure action set GBPA.ABORT, then cleared SMMUEN (SPEC K16).
        return Err(NotAdopted::Abandoned(e));
    }
    Ok(Verdict::Adopted {
        stats,
        asids: smmu.asids().in_use(),
        vmids: smmu.vmids().in_use(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-place bring-up's own code (its `unsafe` places: the driver, the `repr(u8)`
    /// table variants, the release) on the model, in both ways it comes up: adopted, and
    /// refused then fully reset into the same kind of slot. Small enough for Miri.
    /// `CrashStreamTable::owned_in` writes a whole `Owned` variant in place (payload, then the
    /// `repr(u8)` tag): the value reads back as that variant, works as a stream table, and is
    /// released where it is. Small enough for Miri, which checks the in-place writes.
    // spec: K15
    #[test]
    fn crash_tables_are_built_in_their_place() {
        let image = crate::image::Image::new();
        let hal = crate::fuzzing::ImageHal::new(&image);
        let mut place = MaybeUninit::<CrashStreamTable>::uninit();
        let fill = make::ste_image(&make::abort_ste());
        CrashStreamTable::owned_in(&mut place, &hal, Layout::TwoLevel, 12, true, &fill)
            .expect("an owned table");
        // SAFETY: `owned_in` returned `Ok`, so it wrote the payload and the tag.
        let table = unsafe { place.assume_init_mut() };
        assert!(matches!(table, CrashStreamTable::Owned(_)));
        assert_eq!(table.log2_size(), 12);
        assert_eq!(
            table.prepare(&hal, 0x123, &fill),
            Ok(Prepared::NewLevel1Descriptor)
        );
        assert!(table.locate(0x123).is_ok());
        // SAFETY: no SMMU ever saw the table; it is not used again.
        unsafe { table.release(&hal) };
    }

    // spec: K1, K4, K15
    #[test]
    // The model under Miri takes many minutes; `crash_tables_are_built_in_their_place` runs
    // the table variants' unsafe places under Miri, and smmu's construct tests the driver's.
    #[cfg_attr(miri, ignore)]
    fn boot_in_builds_the_adopted_and_the_reset_driver_in_their_slot() {
        use smmu_model::{ModelConfig, Profile};
        use smmu_model_platform::rig::Rig;

        for crash_kernel in [true, false] {
            let cfg = ModelConfig {
                ram_size: 8 << 20,
                ..ModelConfig::hostile(Profile::qemu_virt(), 3)
            };
            let mut rig = Rig::new(cfg, SmmuConfig::default()).expect("the old kernel's SMMU");
            let (_, domain) = rig.stage1_master(8).expect("a master attached");
            core::mem::forget(domain);
            rig.model().with(smmu_model::Model::warm_restart);
            let platform = AdoptPlatform {
                crash_kernel,
                coherent: true,
                cache_maintenance: false,
                expect_e2h: None,
            };
            let mut slot = std::boxed::Box::new_uninit();
            let booted = boot_in(
                &mut slot,
                rig.platform.regs(),
                rig.platform.hal(),
                &platform,
                &AdoptOptions::default(),
            )
            .expect("the crash kernel comes up");
            match (crash_kernel, booted.verdict) {
                (true, Verdict::Adopted { asids, .. }) => assert_eq!(asids, 1),
                (false, Verdict::FullReset(r)) => assert_eq!(r.code(), "not-crash-kernel"),
                (_, v) => panic!("{v:?}"),
            }
            let id = booted
                .smmu
                .add_master(&smmu::MasterConfig::new(&[8]))
                .expect("the device's driver probes");
            booted.smmu.attach_blocked(id).expect("and blocks it");
            // The SMMU keeps using the slot's queue and table: the slot is leaked, as a crash
            // kernel's driver lives until the machine reboots.
            core::mem::forget(slot);
            assert!(rig.violations().is_empty(), "{:#?}", rig.violations());
        }
    }

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
        for plan in [ADOPT, RESET_ABORT, RESET_BYPASS, RESET_DISABLE_FIRST] {
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

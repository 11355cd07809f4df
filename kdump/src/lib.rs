//! Crash-kernel adoption of a live Arm SMMUv3: the validator (SPEC K1–K3, K13–K15).
//!
//! When a kernel panics, its devices may still be doing DMA through the SMMU. A crash (kdump)
//! kernel that resets the SMMU aborts that DMA (PCIe errors that can kill the crash kernel) or
//! lets it bypass translation (memory corruption). Writing `STRTAB_BASE` while `CR0.SMMUEN` = 1
//! is CONSTRAINED UNPREDICTABLE, so a crash kernel that keeps translating must instead *adopt*
//! the stream table that is live: keep `SMMUEN`, keep the crashed kernel's STEs until each
//! device is attached again, and never hand out an ASID or VMID the old tables still use.
//! Adoption is only safe when the live state makes sense; this crate decides whether it does.
//!
//! The pipeline is three pure steps over a register snapshot and read-only memory access:
//!
//! 1. [`decide`] (K1, K13, K17): a crash kernel, `SMMUEN` = 1, a coherent SMMU (or cache
//!    maintenance), no Service Failure Mode, `CR2.E2H` as the platform expects;
//! 2. [`validate_geometry`] (K2): `STRTAB_BASE_CFG` / `STRTAB_BASE` describe a table this
//!    driver can adopt: format, size, split, alignment, output address size, RAM;
//! 3. [`scan()`] (K3, K14, K15, K18–K21): every level-1 descriptor and every valid STE and CD,
//!    with the ASIDs and VMIDs to reserve and the StreamIDs whose attach is deferred reported
//!    to a sink; the structures disjoint, one configuration per tag, the work within budget.
//!    Its STEs are those of [`visit_stes`], the one walk of the stream table, which a tool
//!    looking at a dump (`smmuctl inspect`) can run too, going on past missing memory.
//!
//! Any [`Refusal`] means "do the full reset" (SPEC K4); its [`code`](Refusal::code) is stable.
//! [`check_adoption`] runs the three steps in order. Nothing here writes a register or the old
//! memory, allocates (the scan's bookkeeping lives in a scratch area the caller provides, of a
//! size fixed by the registers: [`scratch_slots`]), recurses, or panics on any input (SPEC B1).
//!
//! ```
//! use smmu_kdump::{
//!     check_adoption, AdoptPlatform, Found, MemFault, OldMemory, RegisterSnapshot,
//! };
//! use smmu::arch::idr::IdRegs;
//! use smmu::arch::ste::{SteConfig, Stage2Ste, Translation};
//!
//! /// The crashed kernel's memory: one page at 0x8000_0000.
//! struct Image([u64; 512]);
//! const BASE: u64 = 0x8000_0000;
//!
//! impl OldMemory for Image {
//!     fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
//!         let first = usize::try_from(pa.checked_sub(BASE).ok_or(MemFault)? / 8)
//!             .map_err(|_| MemFault)?;
//!         let words = self.0.get(first..first + out.len()).ok_or(MemFault)?;
//!         out.copy_from_slice(words);
//!         Ok(())
//!     }
//! }
//!
//! // A linear table of 4 STEs: SID 1 bypasses, SID 2 translates at stage 2 with VMID 5.
//! let mut image = Image([0; 512]);
//! let bypass = SteConfig::BYPASS.encode().to_words();
//! let mut s2 = SteConfig::ABORT;
//! s2.s2vmid = 5;
//! s2.translation = Translation::Stage2(Stage2Ste {
//!     t0sz: 24, sl0: 1, ir0: smmu::arch::Cacheability::WriteBackAllocate,
//!     or0: smmu::arch::Cacheability::WriteBackAllocate,
//!     sh0: smmu::arch::Shareability::Inner, tg: smmu::arch::Granule::Size4K,
//!     ps: smmu::arch::AddressSize::Bits48, aa64: true, endi: false, affd: true, ptw: false,
//!     hd: false, ha: false, stall: false, record: true, fwb: false, ttb: 0x9000_0000,
//! });
//! image.0[8..16].copy_from_slice(&bypass);
//! image.0[16..24].copy_from_slice(&s2.encode().to_words());
//!
//! let snap = RegisterSnapshot {
//!     // IDR0: S1P, S2P, AArch64 tables, COHACC. IDR1: SIDSIZE 16. IDR5: OAS 48 bits and
//!     // the 4KB granule the STE uses (K21: a granule IDR5 lacks is ILLEGAL).
//!     ids: IdRegs { idr: [0b1011 | 1 << 4, 16, 0, 0, 0, 0b101 | 1 << 4], iidr: 0, aidr: 0 },
//!     cr0: 0b1101,            // SMMUEN, EVENTQEN, CMDQEN
//!     strtab_base: BASE,
//!     strtab_base_cfg: 2,     // linear, LOG2SIZE 2
//!     ..RegisterSnapshot::default()
//! };
//! let platform = AdoptPlatform { crash_kernel: true, coherent: true, ..Default::default() };
//!
//! let mut found = heapless::Vec::<Found, 8>::new();
//! // Scratch for the scan's bookkeeping (SPEC K15): a kernel takes it from zeroed pages.
//! let mut scratch = vec![smmu_kdump::ScratchSlot::default(); smmu_kdump::MAX_SCRATCH_SLOTS];
//! let adoption = check_adoption(&snap, &platform, &smmu_kdump::any_ram, &image, &mut scratch, &mut |f| {
//!     found.push(f).map_err(|_| smmu_kdump::Refusal::VmidConflict { sid: 0, vmid: 0 })
//! })
//! .expect("adoptable");
//! assert_eq!(adoption.stats.stes_valid, 2);
//! assert_eq!(
//!     found.as_slice(),
//!     [
//!         Found::Deferred { sid: 1 },
//!         Found::Vmid { sid: 2, vmid: 5 },
//!         Found::Deferred { sid: 2 },
//!     ]
//! );
//!
//! // The same SMMU with SMMUEN clear is not adopted: full reset.
//! let off = RegisterSnapshot { cr0: 0, ..snap };
//! let refusal = check_adoption(&off, &platform, &smmu_kdump::any_ram, &image, &mut scratch, &mut |_| Ok(()))
//!     .unwrap_err();
//! assert_eq!(refusal.code(), "smmu-disabled");
//! ```
//!
//! # The crash path, end to end
//!
//! [`boot_in`] is the crash kernel's bring-up: it adopts the live SMMU when [`check_adoption`]'s
//! pipeline says it may (run on the live SMMU, with the driver's own feature checks: see
//! there), else falls back to [`AdoptOptions::fallback`] (SPEC K4), and builds the
//! driver in a slot the kernel gives it (a [`smmu::StaticSlot`] or a page — never the crash
//! kernel's small stack). Each device's driver then does what it would do at any boot:
//! `add_master`, `new_domain`, `map`, `attach`. Until it attaches, the device's StreamIDs keep
//! the crashed kernel's translations (deferred, SPEC K11), so its DMA in flight lands where
//! the old kernel meant. Here on the model, with an old kernel that is this driver:
//!
//! ```
//! use core::mem::MaybeUninit;
//! use smmu::{DomainOptions, Hal, MasterConfig, OwnedStreamTable, Prot, ResetPlan, Smmu, SmmuConfig};
//! use smmu_kdump::{boot_in, AdoptOptions, AdoptPlatform, CrashDriver, Verdict};
//! use smmu_model::{MasterSpec, ModelConfig, Pattern, Profile, Transaction};
//! use smmu_pagetable::Iova;
//! use smmu_model_platform::{tables::ModelTables, ModelHal, ModelPlatform, ModelRegs};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The old kernel: a NIC (StreamID 0x10) in a stage-1 domain, its ring mapped, DMA running.
//! let platform = ModelPlatform::new(ModelConfig::hostile(Profile::grace(), 7))?;
//! let (model, hal) = (platform.model().clone(), platform.hal());
//! let features = smmu::probe::probe(&platform.regs())?;
//! let strtab = OwnedStreamTable::for_smmu(&hal, &features, &SmmuConfig::default())?;
//! let mut old = Smmu::new(platform.regs(), hal.clone(), features, strtab, SmmuConfig::default())?;
//! old.reset(&ResetPlan::FULL)?;
//! let nic = old.add_master(&MasterConfig::new(&[0x10]))?;
//! let domain = old.new_domain_with(DomainOptions::stage1(), ModelTables(hal.clone()))?;
//! let ring = hal.dma_alloc(4096, 4096)?;
//! old.map(&domain, Iova(0x1000_0000), ring.pa, 4096, Prot::READ | Prot::WRITE)?;
//! old.attach(nic, &domain)?;
//! let pattern = Pattern::Random {
//!     sids: vec![0x10], ssid: None, iova_base: 0x1000_0000, iova_len: 4096, write_percent: 50,
//! };
//! let dma = model.with(|m| m.add_master(MasterSpec { pattern, data: false }));
//! model.with(|m| m.run_masters(50));
//!
//! // The crash: the old kernel is gone; the SMMU, its tables and the NIC's DMA carry on.
//! std::mem::forget((old, domain));
//! model.with(smmu_model::Model::warm_restart);
//!
//! // The crash kernel: the driver is built in its slot (a `StaticSlot` on a real one).
//! let mut slot: Box<MaybeUninit<CrashDriver<ModelRegs, ModelHal>>> = Box::new_uninit();
//! let this_kernel = AdoptPlatform { crash_kernel: true, coherent: true, ..Default::default() };
//! let booted = boot_in(&mut slot, platform.regs(), hal.clone(), &this_kernel, &AdoptOptions::default())?;
//! assert!(matches!(booted.verdict, Verdict::Adopted { .. }), "{:?}", booted.verdict);
//! let smmu = booted.smmu;
//! // The NIC's DMA still lands in its ring, through the crashed kernel's tables.
//! let read = Transaction::read(0x10, 0x1000_0008);
//! assert_eq!(model.with(|m| m.dma(read)).pa(), Some(ring.pa.0 + 8));
//!
//! // The NIC's driver probes (its STE stays the old kernel's), quiesces it, attaches anew.
//! let nic = smmu.add_master(&MasterConfig::new(&[0x10]))?;
//! assert!(smmu.is_deferred(nic)?);
//! model.with(|m| m.set_master_running(dma, false)).expect("the NIC stops");
//! let domain = smmu.new_domain_with(DomainOptions::stage1(), ModelTables(hal.clone()))?;
//! let buf = hal.dma_alloc(4096, 4096)?;
//! smmu.map(&domain, Iova(0x1000_0000), buf.pa, 4096, Prot::READ | Prot::WRITE)?;
//! smmu.attach(nic, &domain)?;
//! assert_eq!(model.with(|m| m.dma(read)).pa(), Some(buf.pa.0 + 8));
//! assert!(model.with(|m| m.violations().is_empty()));
//! # Ok(())
//! # }
//! ```
//!
//! A platform whose SMMU ignores `GBPA` (QEMU 7.2) sets [`AdoptOptions::fallback`] to
//! [`RESET_DISABLE_FIRST`]; see there.
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

// The fuzzing harness (host only) collects reads and reports with `std`.
#[cfg(any(test, feature = "fuzzing", feature = "image"))]
extern crate std;

pub mod adopt;
pub mod legal;
pub mod memory;
pub mod reason;
pub mod scan;
pub mod snapshot;
pub mod table;
pub mod validate;
pub mod walk;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

#[cfg(any(test, feature = "image"))]
pub mod image;

#[cfg(test)]
mod tests;

pub use adopt::{
    boot, boot_in, full_reset, full_reset_in, AdoptOptions, Booted, BootedIn, CrashDriver,
    CrashStreamTable, Verdict, ADOPT, CRASH_CMDQ_LOG2, RESET_ABORT, RESET_BYPASS,
    RESET_DISABLE_FIRST,
};
pub use memory::HalMemory;
pub use reason::{all_codes, Illegal, Refusal, Root, RootKind, Structure, StructureKind};
pub use scan::{
    scan, scratch_slots, Found, MemFault, OldMemory, Revalidation, ScanStats, ScratchSlot,
    CD_SCAN_BUDGET, MAX_CD_STRUCTURES, MAX_SCRATCH_SLOTS, READ_CHUNK_WORDS,
};
pub use snapshot::RegisterSnapshot;
pub use table::AdoptedStreamTable;
pub use validate::{
    any_ram, decide, ste_pa_in_l2, validate_geometry, validate_l1, validate_l1_at, AdoptPlatform,
    Format, Geometry,
};
pub use walk::{visit_stes, Gap, OnGap, SteEntry, SteVisitor, WalkStats};

use smmu::arch::idr::{Features, IdRegs};

/// What a successful [`check_adoption`] established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adoption {
    /// The ID registers, decoded.
    pub features: Features,
    /// The adopted stream table.
    pub geometry: Geometry,
    /// What the scan visited.
    pub stats: ScanStats,
}

/// The whole validation: [`decide`], then [`validate_geometry`] with `is_ram`, then [`scan()`]
/// with `scratch` (at least [`scratch_slots`] for this table; [`MAX_SCRATCH_SLOTS`] always
/// suffices) and `sink`. The first refusal is returned; on a refusal after the scan started
/// the caller releases whatever the sink reserved (SPEC K4).
///
/// This is the pipeline [`boot_in`] runs (one function, `adoption_pipeline`), with the
/// features decoded from the ID registers as they are ([`RegisterSnapshot::features`]).
/// `boot_in` takes them from [`smmu::probe::check`] instead, which also requires an SMMU this
/// driver can run (AArch64 tables, little-endian or mixed, a stage, a command queue of at
/// least the driver's minimum, a granule): where that fails there is nothing to adopt into and
/// `boot_in` cannot reset the SMMU either, whatever this function says of the tables.
pub fn check_adoption(
    snap: &RegisterSnapshot,
    platform: &AdoptPlatform,
    is_ram: &dyn Fn(u64, u64) -> bool,
    mem: &dyn OldMemory,
    scratch: &mut [ScratchSlot],
    sink: &mut dyn FnMut(Found) -> Result<(), Refusal>,
) -> Result<Adoption, Refusal> {
    let steps = Offline {
        is_ram,
        mem,
        scratch,
        sink,
    };
    adoption_pipeline(snap, platform, steps).map(|(adoption, ())| adoption)
}

/// What differs between the two runs of [`adoption_pipeline`]: [`check_adoption`]'s over a
/// snapshot and memory the caller gives, and [`boot_in`]'s over the live SMMU (`adopt`'s
/// `CrashSteps`). The order of the steps and every check are the pipeline's alone.
pub(crate) trait AdoptionSteps {
    /// What stops the pipeline: each step's refusal converts into it.
    type Error: From<Refusal>;
    /// What a successful scan leaves besides its statistics.
    type Scanned;

    /// The SMMU's features, from its ID registers.
    fn features(&self, ids: &IdRegs) -> Result<Features, Self::Error>;

    /// Whether `bytes` bytes from `base` are RAM (SPEC K2).
    fn is_ram(&self, base: u64, bytes: u64) -> bool;

    /// The last step: [`scan()`] of the table `geometry` describes, with what it reads
    /// through, its scratch area and the sink of what it finds.
    fn scan(
        self,
        geometry: &Geometry,
        features: &Features,
    ) -> Result<(ScanStats, Self::Scanned), Self::Error>;
}

/// SPEC K1–K3, K13–K21: [`decide`] → the features → [`validate_geometry`] → the scan, in this
/// order, each step only after the one before passed: the adoption pipeline, written once for
/// [`check_adoption`] and [`boot_in`]. The first error is returned.
pub(crate) fn adoption_pipeline<S: AdoptionSteps>(
    snap: &RegisterSnapshot,
    platform: &AdoptPlatform,
    steps: S,
) -> Result<(Adoption, S::Scanned), S::Error> {
    decide(snap, platform)?;
    let features = steps.features(&snap.ids)?;
    let geometry = validate_geometry(snap, &features, &|base, bytes| steps.is_ram(base, bytes))?;
    let (stats, scanned) = steps.scan(&geometry, &features)?;
    Ok((
        Adoption {
            features,
            geometry,
            stats,
        },
        scanned,
    ))
}

/// [`check_adoption`]'s steps: the features as the registers say, RAM as the caller's
/// callback says, the scan over the caller's memory, scratch and sink.
struct Offline<'x> {
    is_ram: &'x dyn Fn(u64, u64) -> bool,
    mem: &'x dyn OldMemory,
    scratch: &'x mut [ScratchSlot],
    sink: &'x mut dyn FnMut(Found) -> Result<(), Refusal>,
}

impl AdoptionSteps for Offline<'_> {
    type Error = Refusal;
    type Scanned = ();

    fn features(&self, ids: &IdRegs) -> Result<Features, Refusal> {
        // What `RegisterSnapshot::features` returns: decoded, whether or not the driver
        // could run this SMMU (see `check_adoption`).
        Ok(Features::decode(ids))
    }

    fn is_ram(&self, base: u64, bytes: u64) -> bool {
        (self.is_ram)(base, bytes)
    }

    fn scan(self, geometry: &Geometry, features: &Features) -> Result<(ScanStats, ()), Refusal> {
        scan(geometry, features, self.mem, self.scratch, self.sink).map(|stats| (stats, ()))
    }
}

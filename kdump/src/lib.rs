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
//! 3. [`scan()`] (K3, K14, K15): every level-1 descriptor and every valid STE and CD, with the
//!    ASIDs and VMIDs to reserve and the StreamIDs whose attach is deferred reported to a sink.
//!
//! Any [`Refusal`] means "do the full reset" (SPEC K4); its [`code`](Refusal::code) is stable.
//! [`check_adoption`] runs the three steps in order. Nothing here writes a register or memory,
//! allocates, recurses, or panics on any input (SPEC B1).
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
//!     // IDR0: S1P, S2P, AArch64 tables, COHACC. IDR1: SIDSIZE 16. IDR5: OAS 48 bits.
//!     ids: IdRegs { idr: [0b1011 | 1 << 4, 16, 0, 0, 0, 0b101], iidr: 0, aidr: 0 },
//!     cr0: 0b1101,            // SMMUEN, EVENTQEN, CMDQEN
//!     strtab_base: BASE,
//!     strtab_base_cfg: 2,     // linear, LOG2SIZE 2
//!     ..RegisterSnapshot::default()
//! };
//! let platform = AdoptPlatform { crash_kernel: true, coherent: true, ..Default::default() };
//!
//! let mut found = heapless::Vec::<Found, 8>::new();
//! let adoption = check_adoption(&snap, &platform, &smmu_kdump::any_ram, &image, &mut |f| {
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
//! let refusal = check_adoption(&off, &platform, &smmu_kdump::any_ram, &image, &mut |_| Ok(()))
//!     .unwrap_err();
//! assert_eq!(refusal.code(), "smmu-disabled");
//! ```
//!
//! # The crash kernel's bring-up: [`boot`]
//!
//! [`boot`] is what a crash kernel calls instead of the driver's full reset: it adopts the live
//! SMMU when the checks above pass and otherwise falls back to the full reset, saying why in
//! its [`Verdict`]. Both outcomes, on the SMMUv3 model (`smmu-model`, with the model platform
//! of `smmu-scenarios`; on hardware the same call takes [`smmu::Mmio`] and the kernel's `Hal`):
//!
//! ```
//! use smmu::{DomainStage, Hal, MasterConfig, SmmuConfig};
//! use smmu_kdump::{boot, AdoptOptions, AdoptPlatform, Verdict};
//! use smmu_model::{Model, ModelConfig, Profile, Transaction};
//! use smmu_pagetable::{Iova, Prot};
//! use smmu_scenarios::{rig::Rig, tables::ModelTables, ModelPlatform};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The old kernel: a NIC (StreamID 0x10) translated through a stage-1 domain.
//! let Rig { platform, mut smmu } =
//!     Rig::new(ModelConfig::hostile(Profile::grace(), 7), SmmuConfig::default())?;
//! let hal = platform.hal();
//! let nic = smmu.add_master(&MasterConfig {
//!     sids: &[0x10],
//!     protected: false,
//!     ats: false,
//!     stall: false,
//!     ssid_bits: 0,
//! })?;
//! let mut domain = smmu.new_domain(DomainStage::Stage1, false, ModelTables(hal.clone()))?;
//! let ring = hal.dma_alloc(4096, 4096)?;
//! smmu.map(&mut domain, Iova(0x1000_0000), ring.pa, 4096, Prot::READ | Prot::WRITE)?;
//! smmu.attach(nic, &domain)?;
//!
//! // It panics: nothing is torn down, the SMMU and the NIC's DMA carry on (a kexec).
//! std::mem::forget((smmu, domain));
//! platform.model().with(Model::warm_restart);
//!
//! // The crash kernel adopts the live table; the NIC's DMA still lands in its ring.
//! let crash = AdoptPlatform { crash_kernel: true, coherent: true, ..Default::default() };
//! let booted = boot(platform.regs(), hal, &crash, &AdoptOptions::default())?;
//! assert!(matches!(booted.verdict, Verdict::Adopted { asids: 1, .. }));
//! let dma = platform.model().with(|m| m.dma(Transaction::write(0x10, 0x1000_0040)));
//! assert_eq!(dma.pa(), Some(ring.pa.0 + 0x40));
//!
//! // An SMMU that was never enabled has nothing to adopt: the full reset, with the reason.
//! let fresh = ModelPlatform::new(ModelConfig::hostile(Profile::grace(), 7))?;
//! let booted = boot(fresh.regs(), fresh.hal(), &crash, &AdoptOptions::default())?;
//! let Verdict::FullReset(reason) = booted.verdict else { panic!("{:?}", booted.verdict) };
//! assert_eq!(reason.code(), "smmu-disabled");
//! # Ok(())
//! # }
//! ```
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
#[cfg(any(test, feature = "fuzzing"))]
extern crate std;

pub mod adopt;
pub mod reason;
pub mod scan;
pub mod snapshot;
pub mod table;
pub mod validate;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

#[cfg(test)]
mod tests;

pub use adopt::{
    boot, full_reset, AdoptOptions, Booted, CrashStreamTable, HalMemory, Verdict, ADOPT,
    RESET_ABORT, RESET_BYPASS,
};
pub use reason::{all_codes, Refusal};
pub use scan::{scan, Found, MemFault, OldMemory, ScanStats, READ_CHUNK_WORDS};
pub use snapshot::RegisterSnapshot;
pub use table::AdoptedStreamTable;
pub use validate::{
    any_ram, decide, ste_pa_in_l2, validate_geometry, validate_l1, validate_l1_at, AdoptPlatform,
    Format, Geometry,
};

use smmu::arch::idr::Features;

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
/// with `sink`. The first refusal is returned; on a refusal after the scan started the
/// caller releases whatever the sink reserved (SPEC K4).
pub fn check_adoption(
    snap: &RegisterSnapshot,
    platform: &AdoptPlatform,
    is_ram: &dyn Fn(u64, u64) -> bool,
    mem: &dyn OldMemory,
    sink: &mut dyn FnMut(Found) -> Result<(), Refusal>,
) -> Result<Adoption, Refusal> {
    decide(snap, platform)?;
    let features = snap.features();
    let geometry = validate_geometry(snap, &features, is_ram)?;
    let stats = scan(&geometry, &features, mem, sink)?;
    Ok(Adoption {
        features,
        geometry,
        stats,
    })
}

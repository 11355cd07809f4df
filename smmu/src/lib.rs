//! Arm SMMUv3 encodings and driver core.
//!
//! `no_std`, no `alloc`. The crate is organised in rooms:
//! - [`arch`]: the architected encodings — registers, ID registers, STE, CD, L1STD, L1CD,
//!   commands, event and PRI records — each with a typed builder and a validating decoder;
//! - [`access`]: the register-access trait and its volatile-MMIO implementation;
//! - [`hal`]: the platform services the driver needs (DMA memory, foreign mappings, cache
//!   maintenance, shared windows for protected DMA);
//! - the driver core: [`Smmu`] with [`probe`], [`reset`] plans, stream tables ([`strtab`]), CD
//!   tables ([`cdtab`]), the command queue ([`cmdq`]), event/PRI queues and GERROR ([`evtq`]),
//!   invalidation ([`inval`]), domains and the protected-DMA [`policy`].
//!
//! # Bringing the driver up
//!
//! A platform gives the driver its registers (a [`RegisterAccess`]; [`Mmio`] on hardware) and
//! a [`Hal`]; then: probe, a stream table, [`Smmu::new`], [`Smmu::reset`] with
//! [`ResetPlan::FULL`], a master per device, a domain, attach, map. Here the "hardware" is the
//! SMMUv3 model of the `smmu-model` crate and the platform is `smmu-scenarios`' model platform;
//! on a board the same calls run over [`Mmio`] and the kernel's own `Hal`.
//!
//! ```
//! use smmu::{DomainOptions, Hal, MasterConfig, OwnedStreamTable, Prot, ResetPlan, Smmu, SmmuConfig};
//! use smmu_model::{ModelConfig, Profile, Transaction};
//! use smmu_pagetable::Iova;
//! use smmu_model_platform::{rig::ModelSmmu, tables::ModelTables, ModelPlatform};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A Grace-like SMMU that acknowledges late and powers on with stale caches.
//! let platform = ModelPlatform::new(ModelConfig::hostile(Profile::grace(), 1))?;
//! let (regs, hal) = (platform.regs(), platform.hal());
//!
//! // Probe, then the stream table the features call for, every STE abort. (`Box` stands in
//! // for the `static` or the page a kernel keeps the driver in: see "Where `Smmu` lives".)
//! let features = smmu::probe::probe(&regs)?;
//! let config = SmmuConfig::default();
//! let mut slot: Box<core::mem::MaybeUninit<ModelSmmu>> = Box::new_uninit();
//! let smmu = Smmu::new_in_with(&mut slot, regs, hal.clone(), features, config, |hal, place| {
//!     OwnedStreamTable::for_smmu_in(place, hal, &features, &config).map(|_| ())
//! })?;
//! smmu.reset(&ResetPlan::FULL)?;
//!
//! // A NIC behind StreamID 0x10, a stage-1 domain, one page of its ring mapped at an IOVA.
//! let nic = smmu.add_master(&MasterConfig::new(&[0x10]))?;
//! let domain = smmu.new_domain_with(DomainOptions::stage1(), ModelTables(hal.clone()))?;
//! let ring = hal.dma_alloc(4096, 4096)?;
//! smmu.map(&domain, Iova(0x1000_0000), ring.pa, 4096, Prot::READ | Prot::WRITE)?;
//! smmu.attach(nic, &domain)?;
//!
//! // The NIC's DMA to the IOVA lands in the ring; anything else is stopped.
//! let model = platform.model();
//! let hit = model.with(|m| m.dma(Transaction::write(0x10, 0x1000_0040)));
//! let miss = model.with(|m| m.dma(Transaction::write(0x10, 0x2000_0000)));
//! assert_eq!(hit.pa(), Some(ring.pa.0 + 0x40));
//! assert_eq!(miss.pa(), None);
//! // Nothing the driver did was CONSTRAINED UNPREDICTABLE or illegal.
//! assert!(model.with(|m| m.violations().is_empty()));
//! # Ok(())
//! # }
//! ```
//!
//! # Porting
//!
//! **What a [`Hal`] must guarantee** (it is an `unsafe trait`; the full list is on the trait):
//! DMA memory that is zeroed, aligned, visible to the SMMU at the physical address it reports
//! and never handed out twice; foreign mappings ([`Hal::map_phys`], used by crash-kernel
//! adoption) with the attribute asked for; cache maintenance that really reaches the point of
//! coherency when the SMMU is not coherent; single-copy-atomic 64-bit stores in
//! [`Hal::store_entry_qword`]; and a [`Hal::relax`] that lets time pass, because every poll in
//! the driver is a bounded count of `relax` calls (so a `relax` that returns at once shortens
//! every timeout). On the model (`smmu_model_platform`), a HAL of your own must step the model in
//! `relax` or every poll times out (`Timeout(CmdSync)`): wrap it in
//! `smmu_model_platform::Stepping`.
//!
//! **What a [`TableAllocator`] must guarantee** (the memory of a domain's page tables; also an
//! `unsafe trait`, re-exported from `smmu-pagetable` with [`TableMem`] and [`Prot`]): tables
//! of the size asked for (a power of two from 4 KiB to 1 MiB), zeroed, aligned to their size
//! at both addresses, visible to the SMMU's walker at the physical address reported, and never
//! handed out twice; [`TableAllocator::phys_to_virt`] turning the physical address of any live
//! table back into its pointer, cheaply (it is on every walk); [`TableAllocator::free_table`]
//! taking each table exactly once; and, when [`TableAllocator::COHERENT`] is `false`, a
//! [`TableAllocator::sync`] that cleans to the point of coherency. The driver frees a table
//! only after the invalidation that retired it completed (SPEC P3): [`Smmu::unmap`] and
//! [`Smmu::flush`] release them, and a [`Domain`] dropped without [`Smmu::free_domain`] leaks
//! its tables rather than free them under the SMMU. A `Hal`'s `dma_alloc` with
//! `align = size` meets the allocation part; `smmu_model_platform::tables::ModelTables` is the
//! model's.
//!
//! **Locking.** The driver does its own: after [`Smmu::reset`] (which takes `&mut Smmu`,
//! like [`Smmu::release`]) every call takes `&self`, so `Smmu` is shared between CPUs as it is
//! (`Sync` when the register access, the HAL and the stream table are). Map, unmap and
//! command submission take no lock at all and hold none while a `CMD_SYNC` completes; ASIDs
//! and VMIDs are allocated lock-free; each master has a spin lock held across its attach or
//! detach (STE and CD writes with their `CMD_SYNC`s), so attaches of different masters run at
//! once; registering a master takes a registration lock and the stream table's write lock.
//! Lock order: registration, then a master, then the stream table. The [`Smmu`] type's
//! documentation has the details.
//!
//! **Interrupt context.** [`Smmu::handle_gerror`] touches only registers.
//! [`Smmu::handle_events`] and [`Smmu::handle_page_requests`] never wait for another CPU: one
//! CPU drains a queue, a CPU that finds it being drained (another CPU's interrupt, or an
//! interrupt on the draining CPU itself) returns at once and the drainer passes again for it.
//! All three may run in hard interrupt handlers on any CPU. Attach, detach and
//! `add_master` spin on their locks: not from an interrupt that may preempt one of them on
//! the same CPU. The page-table half of map and unmap never waits for another CPU (a pop from
//! the retired-table pool gives up after a bounded spin and asks the allocator). Anything that
//! submits commands (unmap's invalidation, attach, `flush`) must not run in an interrupt that
//! may have preempted a submission on the same CPU: the preempted CPU may be the one that
//! publishes the nested submission's slots, whose `CMD_SYNC` then waits until its poll budget
//! ends ([`Error::Timeout`]). Linux keeps local interrupts off across a submission for this
//! reason; a kernel does the same around these calls, or keeps them in process context.
//! Nothing in the driver sleeps or allocates except through the `Hal`.
//!
//! **Where `Smmu` lives.** The driver has no heap: its bookkeeping is fixed capacity
//! ([`MAX_MASTERS`] masters of up to [`MAX_SIDS_PER_MASTER`] StreamIDs, the stream table's
//! level-2 bookkeeping, two ID allocators), so `Smmu` is large: 53 376 bytes on a 64-bit
//! target with an [`OwnedStreamTable`] and reference-sized register access and HAL (43 904
//! bytes plus 296 per master slot; a unit test checks the figure, and `size_of` tells it for
//! the platform's own types). Build it where it lives with [`Smmu::new_in_with`] — in a
//! [`StaticSlot`], a page from the kernel's allocator or a `Hal` page — not on a small kernel
//! or firmware stack.
//!
//! **Capacities.** Cargo features raise them (the largest enabled wins; `no_std` unchanged):
//!
//! | feature | effect | `size_of::<Smmu>()` above |
//! |---|---|---|
//! | (none) | 32 masters, 8 StreamIDs each | 53 376 B |
//! | `masters-128` | [`MAX_MASTERS`] = 128 | 81 792 B |
//! | `masters-512` | [`MAX_MASTERS`] = 512 | 195 456 B |
//! | `sids-per-master-16` | [`MAX_SIDS_PER_MASTER`] = 16 | +32 B per master slot |
//! | `sids-per-master-32` | [`MAX_SIDS_PER_MASTER`] = 32 | +128 B per master slot |
//! | `cmdq-entries-16k` | [`cmdq::MAX_LOG2_ENTRIES`] = 14 | +3 840 B |
//!
//! **Unmapping in batches.** [`Smmu::unmap`] invalidates and waits for one `CMD_SYNC` per
//! call. [`Smmu::unmap_deferred`] gathers into an [`UnmapBatch`] instead, and [`Smmu::flush`]
//! issues the gathered invalidations with one `CMD_SYNC` and only then frees the retired
//! tables: Linux's `unmap` / `iotlb_sync` pair, for a driver that unmaps many buffers at once.
//!
//! # Encodings
//!
//! ```
//! use smmu::arch::ste::{SteConfig, Ste};
//!
//! // A bypass STE as it sits in memory, and back.
//! let ste: Ste = SteConfig::BYPASS.encode();
//! assert_eq!(ste.to_words()[0], 0x9); // V = 1, Config = 0b100
//! assert_eq!(ste.decode(), Ok(Some(SteConfig::BYPASS)));
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

// The `arbitrary` derive (tests and fuzzing, on the host) names `::std`; the `host` module
// (tests, benches and fuzz targets) is built on it.
#[cfg(any(test, feature = "arbitrary", feature = "host"))]
extern crate std;

pub mod access;
pub mod arch;
pub mod cdtab;
pub mod cmdq;
#[cfg(test)]
mod construct_tests;
pub mod dma;
pub mod domain;
mod driver;
mod error;
pub mod evtq;
pub mod hal;
#[cfg(any(test, feature = "host"))]
pub mod host;
pub mod ids;
pub mod inval;
pub mod nested;
pub mod policy;
pub mod poll;
pub mod probe;
pub mod realm;
#[doc(hidden)]
pub mod report;
pub mod reset;
pub mod slot;
pub mod strtab;
mod sync;
mod table_lock;
#[cfg(test)]
mod testutil;
mod two_level;
pub mod writer;

pub use access::{Mmio, RegisterAccess};
pub use domain::{Domain, DomainStage};
pub use driver::{
    Attachment, DomainOptions, GbpaPolicy, MasterConfig, MasterId, NestedDomain, Smmu, SmmuConfig,
    UnmapBatch, MAX_MASTERS, MAX_SIDS_PER_MASTER,
};
pub use error::{CommandFault, Error, ProbeError, WaitFor};
pub use hal::{DmaRegion, Hal, HalError, Iova, MapAttr, PhysAddr, PhysRange};
pub use reset::{OnFailure, ResetPlan, ResetStep};
pub use slot::StaticSlot;
// The page-table types a user of the driver names: `map`'s `Prot`, and the allocator a
// domain's tables come from (SPEC P1–P3 live in `smmu-pagetable`).
pub use smmu_pagetable::{Prot, TableAllocator, TableMem};
pub use strtab::{OwnedStreamTable, StreamTable};

//! VMSAv8-64 stage-1 and stage-2 I/O page tables for Arm SMMUv3, `no_std` and without `alloc`.
//!
//! * Formats (SPEC P1): stage 1 and stage 2; 4K, 16K and 64K granules; input sizes 32..=48 bits
//!   (52 with 64K), output sizes 32/36/40/42/44/48 (52 with 64K and FEAT_LPA: OA\[51:48\] in
//!   descriptor bits \[15:12\]); the start level follows from the sizes, and a stage-2 level-0
//!   start table of at most 16 entries becomes that many concatenated level-1 tables
//!   (DDI 0487 D8.2.2).
//! * [`PageTable::map`] uses the largest leaf each aligned piece allows; an overlap, or a failed
//!   table allocation, changes nothing (checked and allocated before the first write).
//!   [`PageTable::unmap`] returns the bytes unmapped, refuses to split a block, and records
//!   what must be invalidated in a [`Gather`]; emptied tables are handed to the page table's
//!   pool of retired tables by [`PageTable::release`] only after the caller's invalidation
//!   (SPEC P2, P3), reused by later maps, and freed by [`PageTable::reclaim`] or drop.
//! * Several CPUs: `map`, `unmap`, `iova_to_phys` and `walk` take `&self`, and CPUs may work
//!   on disjoint ranges of one table at once, with no lock or guard: plain loads to walk,
//!   plain stores for the leaves of the caller's own range. New tables are installed by
//!   compare-and-swap on their descriptor (with release ordering, which also orders their
//!   contents before the link for the walker), and unlinked by compare-and-swap. A table
//!   unlinked through `&self` is never freed while `&self` callers may exist (it waits in the
//!   pool), so overlapping concurrent calls, the caller's bug, are never undefined behaviour:
//!   they can only produce wrong translations within this domain, or strand a table (see
//!   [`PageTable`]). Checked by loom models (`RUSTFLAGS="--cfg loom" cargo test -p
//!   smmu-pagetable --lib --release loom`), threaded tests (`tests/concurrent.rs`, and the
//!   reclamation tests in the library, with a deliberately broken variant each; also under
//!   Miri).
//! * Descriptor bits come from one place, [`desc`], each constant citing DDI 0487 D8 (SPEC P4).
//!   Stage-1 tables assume [`desc::MAIR`].
//! * Memory comes only from the caller's [`TableAllocator`], which also cleans the cache for
//!   non-coherent walkers. No panics, no recursion deeper than the four lookup levels (P5).
//! * The values a driver programs into a CD or an STE come from
//!   [`PageTable::stage1_config`] / [`PageTable::stage2_config`].
//! * Not done: the contiguous hint (CONTIG is never set, so unmap never has to split or rewrite
//!   a contiguous run), hardware AF/dirty management (AF is preset, DBM never set), FEAT_LPA2 /
//!   52-bit with 4K/16K granules, and freeing tables that partial unmaps left empty (they are
//!   reused by later maps and retired when an unmap covers their span).
//!
//! # Example
//!
//! ```
//! use std::alloc::{alloc_zeroed, dealloc, Layout};
//! use std::ptr::NonNull;
//! use smmu_pagetable::*;
//!
//! /// Identity "physical" addresses: fine for a host-side example, not for hardware.
//! struct HostAlloc;
//!
//! // SAFETY: tables come zeroed and size-aligned from the global allocator, each one is freed
//! // once with its own layout, and `phys_to_virt` inverts `alloc_table`'s mapping.
//! unsafe impl TableAllocator for HostAlloc {
//!     fn alloc_table(&self, size: usize) -> Option<TableMem> {
//!         let layout = Layout::from_size_align(size, size).ok()?;
//!         // SAFETY: `layout` has a non-zero size.
//!         let va = NonNull::new(unsafe { alloc_zeroed(layout) }.cast::<u64>())?;
//!         Some(TableMem { pa: PhysAddr(va.as_ptr().expose_provenance() as u64), va })
//!     }
//!     unsafe fn free_table(&self, table: TableMem, size: usize) {
//!         // SAFETY: allocated above with this very layout.
//!         unsafe { dealloc(table.va.as_ptr().cast(), Layout::from_size_align_unchecked(size, size)) }
//!     }
//!     fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
//!         NonNull::new(std::ptr::with_exposed_provenance_mut(pa.0 as usize)).unwrap()
//!     }
//! }
//!
//! let cfg = Config { stage: Stage::Stage1, granule: Granule::Size4K, ias: 48, oas: 48 };
//! let pt = PageTable::new(cfg, HostAlloc)?;
//! let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
//!
//! // 2 MiB, suitably aligned: one level-2 block.
//! pt.map(Iova(0x4020_0000), PhysAddr(0x8_0000_0000), 0x20_0000, rw)?;
//! assert_eq!(pt.iova_to_phys(Iova(0x4020_1234)), Some(PhysAddr(0x8_0000_1234)));
//! // Overlaps are refused.
//! assert!(matches!(pt.map(Iova(0x4030_0000), PhysAddr(0), 0x1000, rw), Err(Error::AlreadyMapped { .. })));
//!
//! // Unmap, invalidate, then release.
//! let mut gather = Gather::new();
//! assert_eq!(pt.unmap(Iova(0x4020_0000), 0x20_0000, &mut gather)?, 0x20_0000);
//! for r in gather.ranges() {
//!     // driver: CMD_TLBI_NH_VA over r.iova..r.iova+r.size (TTL from r.level), then CMD_SYNC
//!     assert_eq!((r.iova, r.size, r.leaf, r.level), (Iova(0x4020_0000), 0x20_0000, true, Some(2)));
//! }
//! // SAFETY: no SMMU walks this table (in a driver: after the CMD_SYNC completed).
//! unsafe { pt.release(&mut gather)? };
//! // The retired tables (none here: a block needs no table) wait for later maps; through
//! // `&mut`, `reclaim` gives them back to the allocator.
//! let mut pt = pt;
//! assert_eq!(pt.reclaim(), 0);
//!
//! let cd = pt.stage1_config()?;
//! assert_eq!((cd.t0sz, cd.ips, cd.mair), (16, 5, desc::MAIR));
//! # Ok::<(), Error>(())
//! ```
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod addr;
mod alloc;
pub mod desc;
mod error;
mod format;
mod gather;
#[cfg(all(test, loom))]
mod loom_tests;
mod pool;
#[cfg(all(test, not(loom)))]
mod reclaim_tests;
mod scan;
mod sync;
mod table;

pub use addr::{Iova, PhysAddr};
pub use alloc::{TableAllocator, TableMem};
pub use error::Error;
pub use format::{
    pa_size_encoding, Cacheability, Config, Granule, Prot, Shareability, Stage, Stage1Config,
    Stage2Config, WalkAttrs,
};
pub use gather::{Gather, InvalRange, GATHER_RANGES};
pub use table::{PageTable, WalkEntry};

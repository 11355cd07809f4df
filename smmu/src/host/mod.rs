//! The host side of tests, benches and fuzz targets (feature `host`, which needs `std`; always
//! there for this crate's own unit tests): [`HostHal`], one strict [`Hal`] on the host heap,
//! and [`HalTables`], a [`TableAllocator`](crate::TableAllocator) over any [`Hal`].
//!
//! They live here, in the driver crate, rather than in a test-support crate that depends on it,
//! because this crate's own unit tests use them too: a unit-test build of `smmu` is a crate of
//! its own, whose `Hal` is not the `Hal` a crate depending on `smmu` implements.
//!
//! ```
//! use smmu::host::{HalTables, HostHal};
//! use smmu_pagetable::{Config, Granule, Iova, PageTable, PhysAddr, Prot, Stage};
//!
//! // Page tables on the strict host HAL (fake physical addresses from 0x8000_0000).
//! let tables = HalTables::<HostHal>::default();
//! let config = Config { stage: Stage::Stage2, granule: Granule::Size4K, ias: 32, oas: 32 };
//! let pt = PageTable::new(config, &tables).unwrap();
//! pt.map(Iova(0x1000), PhysAddr(0x9000), 0x1000, Prot::READ).unwrap();
//! assert!(tables.live() > 1 && tables.hal().live_allocations() == tables.live());
//! drop(pt);
//! // Every table went back, through `dma_free`, exactly once.
//! assert_eq!(tables.hal().leaks(), []);
//! ```
//!
//! [`Hal`]: crate::Hal

// A test double fails the test loudly: every broken promise it sees is a panic (or a recorded
// fault), and its own lookups `expect` what the caller's contract guarantees.
#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::missing_panics_doc
)]

mod hal;
mod tables;

use core::ptr::NonNull;

pub use hal::{HalFault, HostHal, FAKE_PA_BASE};
pub use tables::{HalTables, IdentityTables, ToVa};

/// A pointer kept in a record of what was handed out (a live allocation, mapping or table),
/// which sits behind a `Mutex` that several threads share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held<T>(NonNull<T>);

// SAFETY: a `Held` is a record: the host module only offsets it, to hand out a pointer under the
// `Hal` or `TableAllocator` contract, or frees the block it owns; sending the record to another
// thread is like sending the address.
unsafe impl<T> Send for Held<T> {}

impl<T> core::ops::Deref for Held<T> {
    type Target = NonNull<T>;

    fn deref(&self) -> &NonNull<T> {
        &self.0
    }
}

//! The tests' table allocators: page tables on the strict host HAL (`smmu::host`), whose fake
//! physical addresses start below 4 GiB, so that every output-address size takes them. Every
//! table is checked against a record: a leak shows in `live()` (and the HAL's `leaks()`), a
//! double or mismatched free panics, and so does a `phys_to_virt` or `sync` outside a live
//! table. Provenance-clean, so they run under Miri.
#![allow(dead_code, unreachable_pub)]

use smmu::host::{HalTables, HostHal};

/// The coherent allocator. `alloc.hal().set_alloc_budget(Some(n))` makes it fail after `n`
/// more tables.
pub type TestAlloc = HalTables<HostHal>;

/// The non-coherent allocator: every `sync` is recorded (`take_syncs`) and must lie inside a
/// live table.
pub type NcAlloc = HalTables<HostHal, false>;

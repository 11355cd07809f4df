//! [`HalTables`]: page-table memory from any [`Hal`].

use core::fmt;
use core::ptr::NonNull;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::vec::Vec;

use smmu_pagetable::{TableAllocator, TableMem};

use super::hal::HostHal;
use super::Held;
use crate::hal::{DmaRegion, Hal, PhysAddr};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test must not turn every later access into a second panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A platform's own physical-to-virtual lookup, for [`HalTables::with_translation`].
pub type ToVa<H> = fn(&H, PhysAddr) -> Option<NonNull<u8>>;

/// [`HalTables`] on an identity-mapped [`HostHal`] ([`HalTables::identity`]).
pub type IdentityTables<const COHERENT: bool = true> = HalTables<HostHal, COHERENT, true>;

/// One live table.
struct LiveTable {
    va: Held<u64>,
    /// The size the page table asked for.
    size: usize,
    /// The size of the region `dma_alloc` returned (it may round up), given back with it.
    region_size: usize,
}

#[derive(Default)]
struct TablesState {
    /// Live tables by physical address.
    live: BTreeMap<u64, LiveTable>,
    /// Tables allocated so far, including freed ones.
    total: usize,
    /// Every `sync` so far (non-coherent only), as (physical address, bytes).
    syncs: Vec<(PhysAddr, usize)>,
}

impl TablesState {
    /// The live table holding `[pa, pa + len)`: its base and record.
    fn holding(&self, pa: u64, len: usize) -> Option<(u64, &LiveTable)> {
        let (&base, t) = self.live.range(..=pa).next_back()?;
        let end = pa.checked_add(len as u64)?;
        (end <= base + t.size as u64).then_some((base, t))
    }
}

/// A [`TableAllocator`] over any [`Hal`]: each table is one `dma_alloc(size, size)` region and
/// goes back with `dma_free`, so the same allocator gives page tables on the strict host HAL
/// ([`HostHal`]), the model's HAL, or a board's.
///
/// It is strict in its own right: it records every live table and panics on the free of a
/// table it did not hand out (or freed already), a free with another size, a `phys_to_virt`
/// of an address in no live table, and (non-coherent) a `sync` outside one. [`HalTables::live`]
/// counts the live tables (a leak check).
///
/// `COHERENT` is [`TableAllocator::COHERENT`]: with `false`, every `sync` is recorded
/// ([`HalTables::take_syncs`]) and cleans through [`Hal::clean_dcache`].
///
/// The physical-to-virtual lookup is, by default, a search of its record under a lock, which
/// works for any HAL. Where that lock would change what is measured or tested (several CPUs
/// walking one table), give it the platform's own lookup: [`HalTables::with_translation`] (a
/// linear map), or, with `IDENTITY`, none at all: [`IdentityTables`] sits on an identity-mapped
/// [`HostHal`], where the address is the pointer (a bench of the walk then measures the walk:
/// even a run-time choice of lookup costs it measurably).
pub struct HalTables<H, const COHERENT: bool = true, const IDENTITY: bool = false> {
    hal: H,
    /// The platform's lookup, if any (the record otherwise; unused with `IDENTITY`).
    to_va: Option<ToVa<H>>,
    state: Mutex<TablesState>,
}

impl<H: Hal, const COHERENT: bool, const IDENTITY: bool> fmt::Debug
    for HalTables<H, COHERENT, IDENTITY>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HalTables")
            .field("coherent", &COHERENT)
            .field("identity", &IDENTITY)
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl<H: Hal + Default, const COHERENT: bool> Default for HalTables<H, COHERENT> {
    fn default() -> Self {
        Self::new(H::default())
    }
}

impl<const COHERENT: bool> Default for IdentityTables<COHERENT> {
    fn default() -> Self {
        Self::identity()
    }
}

impl<H: Hal, const COHERENT: bool> HalTables<H, COHERENT> {
    /// Tables from `hal`, found again through this allocator's record of them.
    pub fn new(hal: H) -> Self {
        Self::with_lookup(hal, None)
    }

    /// Tables from `hal`, found again with `to_va(hal, pa)` instead of the record (no lock on
    /// the walk's path).
    ///
    /// # Safety
    /// For the physical address of every byte of a table this allocator handed out and has
    /// not taken back, `to_va` returns the CPU pointer of that byte within the region
    /// `hal.dma_alloc` returned for the table, with that region's provenance.
    pub unsafe fn with_translation(hal: H, to_va: ToVa<H>) -> Self {
        Self::with_lookup(hal, Some(to_va))
    }
}

impl<const COHERENT: bool> IdentityTables<COHERENT> {
    /// Tables on a new identity-mapped [`HostHal`] ([`HostHal::identity`]): the walk turns a
    /// physical address back into a pointer itself, inline and without a lock, as a kernel's
    /// linear map does. For benches, and for tests of several CPUs on one table (where a lock
    /// on every walk step would order their accesses and hide the races they look for). Host
    /// addresses are large: an output-address size under about 48 bits cannot hold them.
    pub fn identity() -> Self {
        Self::with_lookup(HostHal::identity(), None)
    }
}

impl<H: Hal, const COHERENT: bool, const IDENTITY: bool> HalTables<H, COHERENT, IDENTITY> {
    fn with_lookup(hal: H, to_va: Option<ToVa<H>>) -> Self {
        Self {
            hal,
            to_va,
            state: Mutex::new(TablesState::default()),
        }
    }

    /// The HAL the tables come from.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// Tables handed out and not yet freed.
    pub fn live(&self) -> usize {
        lock(&self.state).live.len()
    }

    /// Tables handed out so far, including freed ones.
    pub fn total(&self) -> usize {
        lock(&self.state).total
    }

    /// The `sync` calls so far, as (physical address, bytes), oldest first; forgets them.
    pub fn take_syncs(&self) -> Vec<(PhysAddr, usize)> {
        core::mem::take(&mut lock(&self.state).syncs)
    }

    /// [`TableAllocator::phys_to_virt`] through the platform's lookup or the record.
    fn look_up(&self, pa: PhysAddr) -> NonNull<u64> {
        let va = if let Some(to_va) = self.to_va {
            to_va(&self.hal, pa).map(NonNull::cast)
        } else {
            let st = lock(&self.state);
            st.holding(pa.0, 1).map(|(base, table)| {
                // SAFETY: `pa` lies inside the table (`holding`), so the offset stays inside
                // the region the pointer came from.
                unsafe { table.va.cast::<u8>().add((pa.0 - base) as usize).cast() }
            })
        };
        va.unwrap_or_else(|| panic!("phys_to_virt of {:#x}, which is in no live table", pa.0))
    }
}

// SAFETY: `alloc_table` returns a `dma_alloc(size, size)` region (zeroed, `size` bytes valid,
// never handed out twice: the `Hal` contract), refused unless its `pa` and `va` are aligned to
// `size` and it is large enough. `phys_to_virt` returns, for an address inside a live table,
// the pointer `dma_alloc` gave for it offset within the table: from the record (keeping the
// region's provenance), from `to_va` (whose constructor's contract says the same), or, on an
// identity `HostHal` (`IDENTITY`: only `identity()` builds such a value), from the address
// itself (the block's own, its provenance exposed by `HostHal::identity`); it panics for an
// address the record or `to_va` does not know. `free_table` gives the exact region back once,
// after checking it against the record. With `COHERENT` false, `sync` cleans through `Hal::clean_dcache`.
unsafe impl<H: Hal, const COHERENT: bool, const IDENTITY: bool> TableAllocator
    for HalTables<H, COHERENT, IDENTITY>
{
    const COHERENT: bool = COHERENT;

    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        let region = self.hal.dma_alloc(size, size).ok()?;
        let aligned = region.pa.0.is_multiple_of(size as u64)
            && region.va.as_ptr().addr().is_multiple_of(size);
        if region.size < size || !aligned {
            // SAFETY: just handed out by `dma_alloc`, and never used.
            unsafe { self.hal.dma_free(region) };
            return None;
        }
        let va = region.va.cast::<u64>();
        let mut st = lock(&self.state);
        let table = LiveTable {
            va: Held(va),
            size,
            region_size: region.size,
        };
        let twice = st.live.insert(region.pa.0, table).is_some();
        assert!(!twice, "the HAL handed out {:#x} twice", region.pa.0);
        st.total += 1;
        Some(TableMem { pa: region.pa, va })
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        let pa = table.pa.0;
        let mut st = lock(&self.state);
        let Some(live) = st.live.remove(&pa) else {
            panic!("free of table {pa:#x}: not allocated here, or freed already");
        };
        assert!(
            *live.va == table.va,
            "free of table {pa:#x} with another va than it was handed out with"
        );
        assert!(
            size == live.size,
            "free of table {pa:#x} with {size} bytes; it was allocated with {}",
            live.size
        );
        drop(st);
        let region = DmaRegion {
            pa: table.pa,
            va: live.va.cast(),
            size: live.region_size,
        };
        // SAFETY: the region is exactly what `dma_alloc` returned for this table (the record),
        // it is freed once (removed from the record), and the caller guarantees nothing
        // accesses it again.
        unsafe { self.hal.dma_free(region) };
    }

    #[inline]
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        if IDENTITY {
            let va = core::ptr::with_exposed_provenance_mut(pa.0 as usize);
            // SAFETY: only called with the address of a live table (the trait's contract),
            // which on an identity `HostHal` is the address of a heap block: never 0.
            return unsafe { NonNull::new_unchecked(va) };
        }
        self.look_up(pa)
    }

    fn sync(&self, va: NonNull<u64>, len: usize) {
        let mut st = lock(&self.state);
        let addr = va.as_ptr().addr();
        let pa = st
            .live
            .iter()
            .find_map(|(&pa, t)| {
                let start = t.va.as_ptr().addr();
                (addr >= start && addr + len <= start + t.size).then(|| pa + (addr - start) as u64)
            })
            .unwrap_or_else(|| {
                panic!("sync of {len} bytes at {addr:#x}, outside every live table")
            });
        st.syncs.push((PhysAddr(pa), len));
        drop(st);
        self.hal.clean_dcache(va.cast(), len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HalFault;
    use smmu_pagetable::{Config, Gather, Granule, Iova, PageTable, Prot, Stage};

    fn config(oas: u32) -> Config {
        Config {
            stage: Stage::Stage1,
            granule: Granule::Size4K,
            ias: 39,
            oas,
        }
    }

    /// Maps three pages at 2 MiB + 0 on a table of `oas` bits on `tables`, checks a
    /// translation, unmaps them and releases what the unmap retired.
    fn map_translate_unmap<A: TableAllocator>(tables: A, oas: u32) {
        let pt = PageTable::new(config(oas), tables).unwrap();
        let pa = 0x4000_0000;
        pt.map(Iova(0x20_0000), PhysAddr(pa), 0x3000, Prot::READ)
            .unwrap();
        assert_eq!(
            pt.iova_to_phys(Iova(0x20_1008)),
            Some(PhysAddr(pa + 0x1008))
        );
        let mut gather = Gather::new();
        assert_eq!(pt.unmap(Iova(0x20_0000), 0x3000, &mut gather), Ok(0x3000));
        // SAFETY: no SMMU walks this table.
        unsafe { pt.release(&mut gather) }.unwrap();
    }

    #[test]
    fn a_page_table_on_the_host_hal_gives_every_table_back() {
        let tables = HalTables::<HostHal>::default();
        map_translate_unmap(&tables, 40);
        // The start table and one table per level below it, all given back.
        assert_eq!((tables.live(), tables.total()), (0, 3));
        assert!(tables.hal().leaks().is_empty() && tables.hal().faults().is_empty());
    }

    #[test]
    fn non_coherent_tables_record_and_clean_every_sync() {
        let tables = HalTables::<_, false>::new(HostHal::new().with_cache_maintenance(true));
        let pt = PageTable::new(config(40), &tables).unwrap();
        let _ = tables.take_syncs();
        pt.map(Iova(0x1000), PhysAddr(0x1000), 0x1000, Prot::READ)
            .unwrap();
        let syncs = tables.take_syncs();
        assert!(!syncs.is_empty());
        assert!(syncs
            .iter()
            .all(|&(pa, len)| pa.0 >= 0x8000_0000 && len >= 8));
        assert!(tables.hal().clean_count() >= syncs.len());
    }

    #[test]
    fn a_hal_address_the_page_table_cannot_hold_is_refused_and_given_back() {
        let tables = HalTables::<HostHal>::new(HostHal::new().with_pa_base(1 << 44));
        assert!(PageTable::new(config(40), &tables).is_err());
        assert_eq!((tables.live(), tables.total()), (0, 1));
        assert_eq!(tables.hal().leaks(), []);
    }

    #[test]
    fn identity_tables_walk_without_the_record() {
        let tables = IdentityTables::<true>::identity();
        map_translate_unmap(&tables, 48);
        assert_eq!((tables.live(), tables.total()), (0, 3));
        assert_eq!(tables.hal().leaks(), []);
    }

    #[test]
    #[should_panic(expected = "not allocated here, or freed already")]
    fn a_double_free_panics() {
        let tables = HalTables::<HostHal>::default();
        let t = tables.alloc_table(4096).unwrap();
        // SAFETY: the second free is the broken promise under test; it is refused.
        unsafe {
            tables.free_table(t, 4096);
            tables.free_table(t, 4096);
        }
    }

    #[test]
    #[should_panic(expected = "with 8192 bytes; it was allocated with 4096")]
    fn a_free_with_another_size_panics() {
        let tables = HalTables::<HostHal>::default();
        let t = tables.alloc_table(4096).unwrap();
        // SAFETY: the wrong size is the broken promise under test; it is refused.
        unsafe { tables.free_table(t, 8192) };
    }

    #[test]
    fn the_hal_sees_no_fault_from_the_tables() {
        let tables = HalTables::<_>::new(HostHal::new().recording_faults());
        let t = tables.alloc_table(16384).unwrap();
        assert_eq!(t.pa.0 % 16384, 0);
        // SAFETY: allocated above, freed once, unused.
        unsafe { tables.free_table(t, 16384) };
        assert_eq!(tables.hal().faults(), Vec::<HalFault>::new());
    }
}

//! Threaded tests of table reclamation (also under Miri): a table an unmap retires must not be
//! freed while a walker can still reach it, and the deliberately broken `release` (straight back
//! to the allocator) must be caught.
//!
//! The allocator never hands memory back during a test: a freed table is poisoned (every
//! descriptor [`POISON`], a valid page descriptor for [`POISON_PA`]) and remembered, and
//! `phys_to_virt` of a freed table panics. It can also park one thread inside `phys_to_virt` of
//! one table, between reading the descriptor that points to the table and reading the table:
//! exactly where a walker is when another CPU unlinks that table.
//!
//! That allocator stays here rather than being `smmu::host::HalTables` (which the integration
//! tests use): a unit-test build of this crate is not the `smmu_pagetable` that `smmu` links,
//! so its `TableAllocator` is another trait; and poisoning, keeping freed tables and parking a
//! walker are what these tests are about, not what a HAL does.

extern crate std;

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::{self, ThreadId};

use crate::{
    Config, Gather, Granule, Iova, PageTable, PhysAddr, Prot, Stage, TableAllocator, TableMem,
    WalkEntry,
};

const POISON: u64 = 0x0000_dead_beef_f000 | 1 << 10 | 0b11;
const POISON_PA: PhysAddr = PhysAddr(0x0000_dead_beef_f000);
const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;

#[derive(Default)]
struct PoisonAlloc {
    /// Live tables (PA -> size).
    live: Mutex<HashMap<u64, usize>>,
    /// Freed (poisoned) tables, given back to the host on drop.
    freed: Mutex<HashMap<u64, usize>>,
    /// Park this thread in `phys_to_virt` of this table, once.
    park: Mutex<Option<(ThreadId, u64)>>,
    parked: AtomicBool,
    go: AtomicBool,
}

impl PoisonAlloc {
    fn live(&self) -> usize {
        self.live.lock().unwrap().len()
    }
}

impl Drop for PoisonAlloc {
    fn drop(&mut self) {
        for (pa, size) in self.freed.get_mut().unwrap().drain() {
            let p = std::ptr::with_exposed_provenance_mut::<u8>(pa as usize);
            // SAFETY: allocated by `alloc_table` with this layout; the tests are over.
            unsafe { dealloc(p, Layout::from_size_align(size, size).unwrap()) };
        }
    }
}

// SAFETY: zeroed, size-aligned tables from the global allocator, identity "physical" addresses
// with exposed provenance; a freed table is never handed out again (it is poisoned and kept).
unsafe impl TableAllocator for PoisonAlloc {
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        let layout = Layout::from_size_align(size, size).ok()?;
        // SAFETY: non-zero size; aligned to `size` >= 4 KiB, so the cast is aligned.
        #[allow(clippy::cast_ptr_alignment)]
        let va = NonNull::new(unsafe { alloc_zeroed(layout) }.cast::<u64>())?;
        let pa = va.as_ptr().expose_provenance() as u64;
        self.live.lock().unwrap().insert(pa, size);
        Some(TableMem {
            pa: PhysAddr(pa),
            va,
        })
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        let was = self.live.lock().unwrap().remove(&table.pa.0);
        assert_eq!(was, Some(size), "freed table {:#x} not live", table.pa.0);
        // Poisoned with atomic stores: a walker may still be reading it (that is the bug the
        // tests look for, and it must show as a failed check, not as a data race).
        for i in 0..size / 8 {
            // SAFETY: in bounds of the allocation, which stays allocated (kept in `freed`).
            let d = unsafe { AtomicU64::from_ptr(table.va.as_ptr().add(i)) };
            d.store(POISON, Ordering::SeqCst);
        }
        self.freed.lock().unwrap().insert(table.pa.0, size);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        let park = *self.park.lock().unwrap();
        if park == Some((thread::current().id(), pa.0)) {
            *self.park.lock().unwrap() = None;
            self.parked.store(true, Ordering::SeqCst);
            while !self.go.load(Ordering::SeqCst) {
                thread::yield_now();
            }
        }
        assert!(
            !self.freed.lock().unwrap().contains_key(&pa.0),
            "a walker reached the freed table {:#x}",
            pa.0
        );
        NonNull::new(std::ptr::with_exposed_provenance_mut(pa.0 as usize)).unwrap()
    }
}

fn table(alloc: &PoisonAlloc) -> PageTable<&PoisonAlloc> {
    let cfg = Config {
        stage: Stage::Stage1,
        granule: Granule::Size4K,
        ias: 48,
        oas: 48,
    };
    PageTable::new(cfg, alloc).unwrap()
}

fn rw() -> Prot {
    Prot::READ | Prot::WRITE
}

/// The physical address of the leaf table that translates `iova`.
fn leaf_table_of(pt: &PageTable<&PoisonAlloc>, iova: u64) -> u64 {
    let mut found = None;
    pt.walk(|e| {
        if let WalkEntry::Table {
            iova: at,
            span,
            level: 3,
            table,
            ..
        } = *e
        {
            if (at.0..at.0 + span).contains(&iova) {
                found = Some(table.0);
            }
        }
    });
    found.unwrap()
}

/// A lookup overlapping an unmap (a caller bug) is parked on its way into the leaf table the
/// unmap retires; the unmap and `release` complete; then the lookup goes on. With the pool, the
/// table is still the page table's (zeroed): the lookup finds nothing. `broken`: the table went
/// back to the allocator, which the lookup must trip over.
fn parked_lookup_against_retire(broken: bool) {
    let alloc = PoisonAlloc::default();
    let mut pt = table(&alloc);
    let page = G1 + 5 * K4;
    pt.map(Iova(page), PhysAddr(0x8000_0000), K4, rw()).unwrap();
    let leaf = leaf_table_of(&pt, page);
    let seen = thread::scope(|s| {
        let reader = s.spawn(|| {
            *alloc.park.lock().unwrap() = Some((thread::current().id(), leaf));
            pt.iova_to_phys(Iova(page))
        });
        while !alloc.parked.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        let mut gather = Gather::new();
        assert_eq!(pt.unmap(Iova(G1), M2, &mut gather), Ok(K4));
        assert_eq!(gather.freed_tables(), 1);
        if broken {
            // SAFETY: no SMMU walks this table; the CPU-side walker is what is under test.
            unsafe { pt.release_to_allocator(&mut gather) };
        } else {
            // SAFETY: as above.
            unsafe { pt.release(&mut gather) }.unwrap();
        }
        alloc.go.store(true, Ordering::SeqCst);
        reader.join()
    });
    let seen = seen.unwrap_or_else(|_| panic!("the walker touched a freed table"));
    assert_ne!(seen, Some(POISON_PA), "the walker read a freed table");
    assert_eq!(seen, None);
    // The retired table waits in the pool; `reclaim` frees it.
    assert_eq!(pt.pooled_tables(), usize::from(!broken));
    assert_eq!(pt.reclaim(), usize::from(!broken));
    drop(pt);
    assert_eq!(alloc.live(), 0);
}

// spec: P3
#[test]
fn retired_table_outlives_a_parked_overlapping_lookup() {
    parked_lookup_against_retire(false);
}

/// The deliberately broken variant: it must fail.
// spec: P3
#[test]
#[should_panic(expected = "freed table")]
fn broken_release_frees_under_a_parked_walker() {
    parked_lookup_against_retire(true);
}

/// Free-running: one thread maps a page in a leaf table's span and unmaps the whole span
/// (retiring the table), releasing each time; another maps and unmaps pages elsewhere (taking
/// retired tables from the pool) while it looks up the first thread's page (a caller bug).
/// The lookups see the first thread's page, nothing, or a page of the second thread's through a
/// reused table, never a freed table; nothing is freed until `reclaim`, then nothing leaks.
// spec: P3
#[test]
fn retire_and_reuse_against_overlapping_lookups() {
    let alloc = PoisonAlloc::default();
    let mut pt = table(&alloc);
    let rounds = if cfg!(miri) { 20 } else { 5000 };
    let (mine, theirs) = (0x1_0000_0000, 0x2_0000_0000);
    thread::scope(|s| {
        let pt = &pt;
        s.spawn(move || {
            for r in 0..rounds {
                let iova = G1 + (r % 4) * K4;
                pt.map(Iova(iova), PhysAddr(mine + iova), K4, rw()).unwrap();
                let mut gather = Gather::new();
                assert_eq!(pt.unmap(Iova(G1), M2, &mut gather), Ok(K4));
                // SAFETY: no SMMU walks this table.
                unsafe { pt.release(&mut gather) }.unwrap();
            }
        });
        s.spawn(move || {
            for r in 0..rounds {
                let own = 2 * G1 + (r % 8) * M2 + (r % 4) * K4;
                pt.map(Iova(own), PhysAddr(theirs + own), K4, rw()).unwrap();
                for k in 0..4 {
                    let probe = G1 + k * K4;
                    match pt.iova_to_phys(Iova(probe)) {
                        None => {}
                        Some(PhysAddr(p)) => assert!(
                            p == mine + probe || (theirs..theirs + 4 * G1).contains(&p),
                            "{p:#x}"
                        ),
                    }
                }
                let mut gather = Gather::new();
                let span = own & !(M2 - 1);
                assert_eq!(pt.unmap(Iova(span), M2, &mut gather), Ok(K4));
                // SAFETY: no SMMU walks this table.
                unsafe { pt.release(&mut gather) }.unwrap();
            }
        });
    });
    assert!(alloc.freed.lock().unwrap().is_empty(), "freed under &self");
    let linked = {
        let mut n = 0;
        pt.walk(|e| n += usize::from(matches!(e, WalkEntry::Table { .. })));
        n
    };
    let pooled = pt.reclaim();
    assert_eq!(alloc.live(), linked, "{pooled} pooled");
    drop(pt);
    assert_eq!(alloc.live(), 0);
}

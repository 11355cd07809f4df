//! loom model checks of concurrent table installs and frees (`RUSTFLAGS="--cfg loom" cargo test
//! -p smmu-pagetable --lib --release loom`; bound the search with `LOOM_MAX_PREEMPTIONS`).
//!
//! Under loom every descriptor and pool head is a loom atomic, so the models explore the
//! interleavings of the very code that ships. Tables are small-IAS stage-1 tables (a 4-entry
//! start table at level 1), so that a model needs few tables.
//!
//! The test allocator never hands memory back during a model: a freed table is poisoned (every
//! descriptor set to [`POISON`], a valid page descriptor for a recognisable address) and
//! remembered, and `phys_to_virt` of a freed table panics. A walker that reaches a freed table,
//! or reads one, therefore fails the model ("freed table").
//!
//! Two models come with their deliberately broken variant, which must fail: the reclamation
//! (`release` straight to the allocator while an overlapping lookup is inside the table) and the
//! pool (a plain Treiber pop, which the ABA interleaving makes hand one table to two owners).
//! The install models catch a plain store instead of the compare-and-swap (a table linked twice,
//! one lost) and a relaxed link (a causality violation); the overlapping-unmaps model catches a
//! plain store in place of the unlinking compare-and-swap (a table retired twice, freed twice).
//!
//! That allocator stays here rather than being `smmu::host::HalTables` (which the integration
//! tests use): its tables are arrays of loom atomics, not memory a HAL hands out, and a
//! unit-test build of this crate is not the `smmu_pagetable` that `smmu` links.

extern crate std;

use std::alloc::{alloc, dealloc, Layout};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use crate::sync::Desc;
use crate::TableMem;
use crate::{Config, Gather, Granule, Iova, PageTable, PhysAddr, Prot, Stage, TableAllocator};

/// Tables built as arrays of loom atomics ([`crate::sync::slot`] indexes in `Desc` units),
/// aligned to the table size so that their host address serves as the physical address.
#[derive(Default)]
struct LoomAlloc {
    live: AtomicUsize,
    /// Freed (poisoned) tables and their sizes, given back to the host only by `purge`.
    freed: Mutex<HashMap<u64, usize>>,
}

/// What a freed table holds: a level-3 page descriptor (TYPE=0b11, AF) for this address.
const POISON: u64 = 0x0000_dead_beef_f000 | 1 << 10 | 0b11;
const POISON_PA: PhysAddr = PhysAddr(0x0000_dead_beef_f000);

impl LoomAlloc {
    fn leaked() -> &'static Self {
        std::boxed::Box::leak(std::boxed::Box::default())
    }

    /// Returns the freed tables to the host (at the end of a model, once nothing runs).
    fn purge(&self) {
        #[allow(clippy::unwrap_used)]
        let freed: Vec<(u64, usize)> = self.freed.lock().unwrap().drain().collect();
        for (pa, size) in freed {
            let p = core::ptr::with_exposed_provenance_mut::<Desc>(pa as usize);
            // SAFETY: built by `alloc_table` with this size, freed by the page table, and no
            // thread of the model runs any more.
            unsafe {
                for i in 0..size / 8 {
                    core::ptr::drop_in_place(p.add(i));
                }
                dealloc(p.cast(), layout(size));
            }
        }
    }
}

fn layout(size: usize) -> Layout {
    let entries = size / 8;
    #[allow(clippy::unwrap_used)]
    Layout::from_size_align(entries * core::mem::size_of::<Desc>(), size).unwrap()
}

// SAFETY: each table is a fresh, size-aligned array of zero descriptors, handed out once and
// freed once (the live count catches a leak); `phys_to_virt` inverts the address with the
// allocation's exposed provenance.
unsafe impl TableAllocator for LoomAlloc {
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        // SAFETY: non-zero size. The layout is aligned to `size` (>= 4 KiB), so the cast is.
        #[allow(clippy::cast_ptr_alignment)]
        let p = NonNull::new(unsafe { alloc(layout(size)) }.cast::<Desc>())?;
        for i in 0..size / 8 {
            // SAFETY: in bounds of the fresh allocation, written once before any read.
            unsafe { p.as_ptr().add(i).write(Desc::new(0)) };
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        let va = p.cast::<u64>();
        Some(TableMem {
            pa: PhysAddr(va.as_ptr().expose_provenance() as u64),
            va,
        })
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        let p = table.va.as_ptr().cast::<Desc>();
        // Poisoned, not handed back: a walker that still reads it sees POISON.
        for i in 0..size / 8 {
            // SAFETY: in bounds of a table built by `alloc_table` with this size.
            unsafe { (*p.add(i)).store(POISON, crate::sync::Ordering::SeqCst) };
        }
        #[allow(clippy::unwrap_used)]
        let fresh = self
            .freed
            .lock()
            .unwrap()
            .insert(table.pa.0, size)
            .is_none();
        assert!(fresh, "freed table {:#x} freed twice", table.pa.0);
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        #[allow(clippy::unwrap_used)]
        let freed = self.freed.lock().unwrap().contains_key(&pa.0);
        assert!(!freed, "a walker reached the freed table {:#x}", pa.0);
        #[allow(clippy::unwrap_used)]
        NonNull::new(core::ptr::with_exposed_provenance_mut(pa.0 as usize)).unwrap()
    }
}

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;

fn table(alloc: &'static LoomAlloc) -> PageTable<&'static LoomAlloc> {
    let cfg = Config {
        stage: Stage::Stage1,
        granule: Granule::Size4K,
        ias: 32,
        oas: 48,
    };
    #[allow(clippy::unwrap_used)]
    PageTable::new(cfg, alloc).unwrap()
}

fn rw() -> Prot {
    Prot::READ | Prot::WRITE
}

/// Runs `f(pt, t)` on two loom threads, `t` = 0 and 1, and returns what each returned.
fn on_two_threads<R: Send + 'static>(
    pt: &Arc<PageTable<&'static LoomAlloc>>,
    f: fn(&PageTable<&'static LoomAlloc>, u64) -> R,
) -> [Option<R>; 2] {
    let spawn = |t: u64| {
        let pt = pt.clone();
        loom::thread::spawn(move || f(&pt, t))
    };
    let (a, b) = (spawn(0), spawn(1));
    [a.join().ok(), b.join().ok()]
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    // Each descriptor access is a branch point, and a drop scans whole tables.
    b.max_branches = 100_000;
    b.check(f);
}

/// Ends a model: every table but the ones still linked is in the pool, `reclaim` (through
/// `&mut`) frees the pool, the drop the rest; nothing is left and nothing was freed twice.
fn finish(pt: Arc<PageTable<&'static LoomAlloc>>, alloc: &'static LoomAlloc, linked: usize) {
    #[allow(clippy::unwrap_used)]
    let mut pt = Arc::try_unwrap(pt).ok().unwrap();
    let pooled = pt.pooled_tables();
    assert_eq!(alloc.live.load(Ordering::Relaxed), linked + pooled);
    assert_eq!(pt.reclaim(), pooled);
    assert_eq!(alloc.live.load(Ordering::Relaxed), linked);
    drop(pt);
    assert_eq!(alloc.live.load(Ordering::Relaxed), 0);
    alloc.purge();
}

/// Two CPUs map a page each into the same missing leaf table (the fast path's chain install):
/// one chain wins, the other goes to the pool unseen, and both pages translate.
// spec: P2
#[test]
fn loom_two_fresh_chains_race_for_one_slot() {
    model(|| {
        let alloc = LoomAlloc::leaked();
        let pt = Arc::new(table(alloc));
        let results = on_two_threads(&pt, |pt, t| {
            let iova = M2 + t * K4;
            pt.map(Iova(iova), PhysAddr(0x10_0000 * (t + 1)), K4, rw())
        });
        assert_eq!(results, [Some(Ok(())), Some(Ok(()))]);
        assert_eq!(pt.iova_to_phys(Iova(M2)), Some(PhysAddr(0x10_0000)));
        assert_eq!(pt.iova_to_phys(Iova(M2 + K4)), Some(PhysAddr(0x20_0000)));
        // The losing chain (a level-2 and a leaf table), if any, waits in the pool.
        assert!(matches!(pt.pooled_tables(), 0 | 2));
        // Root, one level-2 and one leaf table.
        finish(pt, alloc, 3);
    });
}

/// Two CPUs map ranges over two leaf tables each (the general path), sharing the new level-2
/// table and one leaf table: each slot is linked once, the losers' tables go to the pool.
// spec: P2
#[test]
fn loom_general_path_installs_share_tables() {
    model(|| {
        let alloc = LoomAlloc::leaked();
        let pt = Arc::new(table(alloc));
        let results = on_two_threads(&pt, |pt, t| {
            // Thread 0: the last page below 2 MiB and the first above; thread 1: the last
            // below 4 MiB and the one after. Both need the level-2 table; they share the leaf
            // table at 2 MiB.
            let iova = (t + 1) * M2 - K4;
            pt.map(Iova(iova), PhysAddr(iova), 2 * K4, rw())
        });
        assert_eq!(results, [Some(Ok(())), Some(Ok(()))]);
        for t in 0..2u64 {
            let iova = (t + 1) * M2 - K4;
            assert_eq!(pt.iova_to_phys(Iova(iova)), Some(PhysAddr(iova)));
            assert_eq!(pt.iova_to_phys(Iova(iova + K4)), Some(PhysAddr(iova + K4)));
        }
        // Root, level 2, and leaf tables at 0, 2 MiB and 4 MiB.
        finish(pt, alloc, 5);
    });
}

/// An unmap that retires a leaf table runs against a lookup of a page in another leaf table
/// of the same level-2 table: the lookup is undisturbed, and the retired table goes to the pool
/// only on `release`.
// spec: P3
#[test]
fn loom_retiring_unmap_against_a_lookup() {
    model(|| {
        let alloc = LoomAlloc::leaked();
        let pt = Arc::new(table(alloc));
        // Leaf tables at 0 (one page, the lookup's) and at 2 MiB (one page; the unmap covers
        // the table's whole span, so it retires it).
        assert_eq!(pt.map(Iova(K4), PhysAddr(K4), K4, rw()), Ok(()));
        assert_eq!(pt.map(Iova(M2), PhysAddr(0x40_1000), K4, rw()), Ok(()));
        let reader = {
            let pt = pt.clone();
            loom::thread::spawn(move || pt.iova_to_phys(Iova(K4)))
        };
        let mut gather = Gather::new();
        assert_eq!(pt.unmap(Iova(M2), M2, &mut gather), Ok(K4));
        assert_eq!(gather.freed_tables(), 1);
        assert_eq!(reader.join().ok(), Some(Some(PhysAddr(K4))));
        assert_eq!(alloc.live.load(Ordering::Relaxed), 4);
        // SAFETY: no SMMU walks this table.
        assert_eq!(unsafe { pt.release(&mut gather) }, Ok(()));
        assert_eq!(pt.pooled_tables(), 1);
        assert_eq!(pt.iova_to_phys(Iova(M2)), None);
        finish(pt, alloc, 3);
    });
}

/// The reclamation: a lookup that overlaps an unmap (a caller bug, which safe code can commit)
/// may still be inside the leaf table the unmap retires when `release` runs. The table must not
/// be freed under it: `release` moves it into the pool, so the lookup reads memory the page
/// table still owns and returns the old translation or none. `broken` is the design without the
/// pool (the table goes back to the allocator at once), which the poisoning allocator catches.
fn retired_table_against_an_overlapping_lookup(broken: bool) {
    model(move || {
        let alloc = LoomAlloc::leaked();
        let pt = Arc::new(table(alloc));
        let page = M2 + 5 * K4;
        assert_eq!(pt.map(Iova(page), PhysAddr(0x40_1000), K4, rw()), Ok(()));
        let reader = {
            let pt = pt.clone();
            loom::thread::spawn(move || pt.iova_to_phys(Iova(page)))
        };
        let mut gather = Gather::new();
        assert_eq!(pt.unmap(Iova(M2), M2, &mut gather), Ok(K4));
        assert_eq!(gather.freed_tables(), 1);
        if broken {
            // SAFETY: no SMMU walks this table (the CPU-side walker is what is under test).
            unsafe { pt.release_to_allocator(&mut gather) };
        } else {
            // SAFETY: as above.
            assert_eq!(unsafe { pt.release(&mut gather) }, Ok(()));
        }
        let seen = reader
            .join()
            .unwrap_or_else(|_| panic!("the walker touched a freed table"));
        assert_ne!(seen, Some(POISON_PA), "the walker read a freed table");
        assert!(matches!(seen, None | Some(PhysAddr(0x40_1000))), "{seen:?}");
        // Root and level 2; the leaf table is in the pool (or, broken, freed).
        finish(pt, alloc, 2);
    });
}

// spec: P3
#[test]
fn loom_retired_table_outlives_an_overlapping_lookup() {
    retired_table_against_an_overlapping_lookup(false);
}

/// The deliberately broken variant: it must fail.
// spec: P3
#[test]
#[should_panic(expected = "freed table")]
fn loom_broken_release_frees_under_a_walker() {
    retired_table_against_an_overlapping_lookup(true);
}

/// The pool alone: a CPU pops while another pops twice and pushes its first table back, the
/// interleaving that breaks a plain lock-free stack (ABA: the stalled pop read the top and its
/// link, then swaps in a link to a table the other CPU owns). Every table must end up in
/// exactly one place: owned by one CPU, or in the pool. `broken` pops without the popping bit.
fn pool_under_pops_and_a_push(broken: bool) {
    use crate::pool::Pool;
    model(move || {
        let alloc = LoomAlloc::leaked();
        let pool = Arc::new(Pool::new());
        #[allow(clippy::unwrap_used)]
        let tables = [
            alloc.alloc_table(4096).unwrap(),
            alloc.alloc_table(4096).unwrap(),
        ];
        // SAFETY: fresh tables of `alloc`, handed to the pool (top: tables[0]).
        unsafe {
            pool.push(tables[1], 3);
            pool.push(tables[0], 3);
        }
        let pop = move |pool: &Pool| {
            if broken {
                pool.pop_without_claim(3, alloc)
            } else {
                pool.pop(3, alloc)
            }
        };
        let stalled = {
            let pool = pool.clone();
            loom::thread::spawn(move || pop(&pool))
        };
        let first = pop(&pool);
        let second = pop(&pool);
        if let Some(mem) = first {
            // SAFETY: popped above, so ours.
            unsafe { pool.push(mem, 3) };
        }
        let stalled = stalled.join().ok().flatten();
        #[allow(clippy::unwrap_used)]
        let mut pool = Arc::try_unwrap(pool).ok().unwrap();
        let mut places: Vec<u64> = [second, stalled].iter().flatten().map(|m| m.pa.0).collect();
        let mut rest = pool.drain(3, alloc);
        while let Some((mem, _)) = rest.pop(alloc) {
            places.push(mem.pa.0);
            // A cycle would never end: two tables can be in at most two places.
            assert!(places.len() <= 2, "a table is in two places: {places:x?}");
        }
        places.sort_unstable();
        let mut want: Vec<u64> = tables.iter().map(|m| m.pa.0).collect();
        want.sort_unstable();
        assert_eq!(places, want, "a table is in two places, or lost");
        for mem in tables {
            // SAFETY: each is in exactly one place (checked), and nothing runs any more.
            unsafe { alloc.free_table(mem, 4096) };
        }
        alloc.purge();
    });
}

// spec: P3
#[test]
fn loom_pool_pops_each_table_once() {
    pool_under_pops_and_a_push(false);
}

/// The deliberately broken variant (a plain Treiber stack): it must fail.
// spec: P3
#[test]
#[should_panic(expected = "two places")]
fn loom_broken_pool_pop_suffers_aba() {
    pool_under_pops_and_a_push(true);
}

/// Two unmaps of the same range (a caller bug) that covers a leaf table's span: both find the
/// table, exactly one unlinks and retires it (the compare-and-swap), so the pool gets it once.
/// With a plain store in place of the compare-and-swap, both retire it, and `reclaim` frees it
/// twice (the allocator's "freed twice").
// spec: P3
#[test]
fn loom_overlapping_unmaps_retire_a_table_once() {
    model(|| {
        let alloc = LoomAlloc::leaked();
        let pt = Arc::new(table(alloc));
        assert_eq!(pt.map(Iova(M2), PhysAddr(0x40_1000), K4, rw()), Ok(()));
        let results = on_two_threads(&pt, |pt, _| {
            let mut gather = Gather::new();
            let r = pt.unmap(Iova(M2), M2, &mut gather);
            let retired = gather.freed_tables();
            // SAFETY: no SMMU walks this table.
            let released = unsafe { pt.release(&mut gather) };
            (r, retired, released)
        });
        let retired: usize = results.iter().flatten().map(|r| r.1).sum();
        assert_eq!(retired, 1, "{results:?}");
        // Root and level 2 stay linked; the leaf table is in the pool once.
        assert_eq!(pt.pooled_tables(), 1);
        finish(pt, alloc, 2);
    });
}

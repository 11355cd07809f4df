//! loom model checks of concurrent table installs and frees (`RUSTFLAGS="--cfg loom" cargo test
//! -p smmu-pagetable --lib --release loom`; bound the search with `LOOM_MAX_PREEMPTIONS`).
//!
//! Under loom every descriptor is a loom atomic and the walk guard a loom lock, so the models
//! explore the interleavings of the very code that ships. Tables are small-IAS stage-1 tables
//! (a 4-entry start table at level 1), so that a model needs few tables.

extern crate std;

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::sync::Desc;
use crate::TableMem;
use crate::{Config, Gather, Granule, Iova, PageTable, PhysAddr, Prot, Stage, TableAllocator};

/// Tables built as arrays of loom atomics ([`crate::sync::slot`] indexes in `Desc` units),
/// aligned to the table size so that their host address serves as the physical address.
#[derive(Default)]
struct LoomAlloc {
    live: AtomicUsize,
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
        // SAFETY: non-zero size.
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
        // SAFETY: built by `alloc_table` with this size; nothing uses it any more (caller).
        unsafe {
            for i in 0..size / 8 {
                core::ptr::drop_in_place(p.add(i));
            }
            dealloc(p.cast(), layout(size));
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
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

/// Two CPUs map a page each into the same missing leaf table (the fast path's chain install):
/// one chain wins, the other is freed unseen, and both pages translate.
// spec: P2
#[test]
fn loom_two_fresh_chains_race_for_one_slot() {
    model(|| {
        let alloc: &'static LoomAlloc = std::boxed::Box::leak(std::boxed::Box::default());
        let pt = Arc::new(table(alloc));
        let results = on_two_threads(&pt, |pt, t| {
            let iova = M2 + t * K4;
            pt.map(Iova(iova), PhysAddr(0x10_0000 * (t + 1)), K4, rw())
        });
        assert_eq!(results, [Some(Ok(())), Some(Ok(()))]);
        assert_eq!(pt.iova_to_phys(Iova(M2)), Some(PhysAddr(0x10_0000)));
        assert_eq!(pt.iova_to_phys(Iova(M2 + K4)), Some(PhysAddr(0x20_0000)));
        // Root, one level-2 and one leaf table: the losing chain went back.
        assert_eq!(alloc.live.load(Ordering::Relaxed), 3);
        drop(pt);
        assert_eq!(alloc.live.load(Ordering::Relaxed), 0);
    });
}

/// Two CPUs map ranges over two leaf tables each (the general path), sharing the new level-2
/// table and one leaf table: each slot is linked once, the losers' tables go back to the pool.
// spec: P2
#[test]
fn loom_general_path_installs_share_tables() {
    model(|| {
        let alloc: &'static LoomAlloc = std::boxed::Box::leak(std::boxed::Box::default());
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
        assert_eq!(alloc.live.load(Ordering::Relaxed), 5);
        drop(pt);
        assert_eq!(alloc.live.load(Ordering::Relaxed), 0);
    });
}

/// An unmap that may retire a leaf table runs against a lookup of a page in another leaf table
/// of the same level-2 table: the lookup never reads a freed table (loom and the live count
/// would catch it), and the retired table is freed only by `release`.
// spec: P3
#[test]
fn loom_retiring_unmap_against_a_lookup() {
    model(|| {
        let alloc: &'static LoomAlloc = std::boxed::Box::leak(std::boxed::Box::default());
        let pt = Arc::new(table(alloc));
        // Leaf tables at 0 (one page, the lookup's) and at 2 MiB (a whole table's span worth of
        // pages would be 512 stores; one page at each end of a 2 MiB window suffices for the
        // retirement decision, which looks at the range size).
        assert_eq!(pt.map(Iova(K4), PhysAddr(K4), K4, rw()), Ok(()));
        assert_eq!(pt.map(Iova(M2), PhysAddr(0x40_1000), K4, rw()), Ok(()));
        let reader = {
            let pt = pt.clone();
            loom::thread::spawn(move || pt.iova_to_phys(Iova(K4)))
        };
        let mut gather = Gather::new();
        assert_eq!(pt.unmap(Iova(M2), M2, &mut gather), Ok(K4));
        let retired = gather.freed_tables();
        assert_eq!(reader.join().ok(), Some(Some(PhysAddr(K4))));
        // Retired only if the unmap found the tree to itself; either way nothing is lost.
        assert!(retired <= 1);
        assert_eq!(alloc.live.load(Ordering::Relaxed), 4);
        // SAFETY: no SMMU walks this table.
        assert_eq!(unsafe { pt.release(&mut gather) }, Ok(()));
        assert_eq!(alloc.live.load(Ordering::Relaxed), 4 - retired);
        assert_eq!(pt.iova_to_phys(Iova(M2)), None);
        drop(pt);
        assert_eq!(alloc.live.load(Ordering::Relaxed), 0);
    });
}

//! Several threads mapping, unmapping and looking up disjoint ranges of one page table at once,
//! each checked against its own reference map, with a leak and double-free check at the end.
//!
//! The ranges interleave so that the threads share every intermediate table and race to install
//! them: pages of one leaf table, blocks of one level-2 table, and multi-table ranges whose
//! unmaps retire tables (into the page table's pool, which later maps take from) while the
//! others walk. Runs under Miri too (fewer steps).

use std::collections::HashMap;

use smmu::host::IdentityTables;
use smmu_pagetable::{Config, Error, Gather, Granule, Iova, PageTable, PhysAddr, Prot, Stage};

/// Tables on the strict host HAL, identity-mapped: the walks turn table addresses into
/// pointers without a lock, so that no lock of the allocator orders the threads' accesses and
/// hides a race from Miri. Every live table is recorded: a leak or a double free fails the test.
type SyncAlloc = IdentityTables;

/// A 4K-granule table with a 48-bit output size on `alloc`.
fn table(alloc: &SyncAlloc, stage: Stage, ias: u32) -> PageTable<&SyncAlloc> {
    let cfg = Config {
        stage,
        granule: Granule::Size4K,
        ias,
        oas: 48,
    };
    PageTable::new(cfg, alloc).unwrap()
}

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;
const THREADS: u64 = if cfg!(miri) { 2 } else { 4 };
const STEPS: usize = if cfg!(miri) { 60 } else { 20_000 };
/// Pages of one shared leaf table (thread `t` owns the pages whose index is `t` mod THREADS).
const PAGE_BASE: u64 = G1;
const PAGES: u64 = 64;
/// 2 MiB slots of one shared level-2 table (same interleaving).
const BLOCK_BASE: u64 = 2 * G1;
const BLOCKS: u64 = 16;
/// Each thread's 8 MiB window in one shared level-2 table, starting 4 KiB into a leaf table so
/// that it maps as pages: three whole leaf tables, which its one-call unmap may retire, and
/// a leaf table at each end shared with the neighbouring window.
const WIDE_BASE: u64 = 3 * G1 + K4;
const WIDE: u64 = 4 * M2;

fn rw() -> Prot {
    Prot::READ | Prot::WRITE
}

/// Output address for `iova`, distinct per thread so that a crossed wire shows. In the wide
/// windows the output is a page off, so that IOVA and PA are never 2 MiB-congruent there: they
/// map as pages, through whole leaf tables that their unmaps retire and later maps reuse.
fn pa_for(t: u64, iova: u64) -> u64 {
    let skew = if (WIDE_BASE..WIDE_BASE + THREADS * WIDE).contains(&iova) {
        K4
    } else {
        0
    };
    ((t + 1) << 40) + iova + skew
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One thread's run, ending with everything it mapped unmapped again.
fn worker(pt: &PageTable<&SyncAlloc>, t: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    // iova -> size of what this thread has mapped.
    let mut mine: HashMap<u64, u64> = HashMap::new();
    let wide = WIDE_BASE + t * WIDE;
    for _ in 0..STEPS {
        let (iova, size) = match rng.next(8) {
            0..=3 => (
                PAGE_BASE + (rng.next(PAGES / THREADS) * THREADS + t) * K4,
                K4,
            ),
            4..=5 => (
                BLOCK_BASE + (rng.next(BLOCKS / THREADS) * THREADS + t) * M2,
                M2,
            ),
            _ => (wide, WIDE),
        };
        let mut gather = Gather::new();
        if mine.remove(&iova).is_some() {
            assert_eq!(pt.unmap(Iova(iova), size, &mut gather), Ok(size));
            assert_eq!(pt.iova_to_phys(Iova(iova)), None);
            // SAFETY: no SMMU walks this table.
            unsafe { pt.release(&mut gather) }.unwrap();
        } else {
            let pa = pa_for(t, iova);
            let prot = rw();
            match pt.map(Iova(iova), PhysAddr(pa), size, prot) {
                Ok(()) => {}
                Err(e @ Error::AlreadyMapped { .. }) => panic!("thread {t}: {e:?} at {iova:#x}"),
                Err(e) => panic!("thread {t}: {e:?}"),
            }
            mine.insert(iova, size);
        }
        // Everything this thread believes mapped still translates to its own addresses.
        for (&i, &s) in mine.iter().take(4) {
            let probe = i + s - K4 + 0x10;
            assert_eq!(
                pt.iova_to_phys(Iova(probe)),
                Some(PhysAddr(pa_for(t, probe))),
                "thread {t}: {i:#x}+{s:#x} lost"
            );
        }
    }
    for (iova, size) in mine {
        let mut gather = Gather::new();
        assert_eq!(pt.unmap(Iova(iova), size, &mut gather), Ok(size));
        // SAFETY: no SMMU walks this table.
        unsafe { pt.release(&mut gather) }.unwrap();
    }
}

// spec: P2, P3
#[test]
fn disjoint_ranges_from_several_threads_stay_exact_and_leak_nothing() {
    let alloc = SyncAlloc::identity();
    let mut pt = table(&alloc, Stage::Stage1, 48);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let pt = &pt;
                s.spawn(move || worker(pt, t))
            })
            .collect();
        // A walker alongside: the whole tree, while it changes, only ever shows leaves the
        // workers wrote. (A walk overlaps every range, so it may step into a table a worker
        // retires and another reuses, and report its leaves at the IOVAs the table had before:
        // the output addresses are checked, not the IOVAs.)
        let pt = &pt;
        s.spawn(move || {
            for _ in 0..if cfg!(miri) { 2 } else { 50 } {
                pt.walk(|e| {
                    if let smmu_pagetable::WalkEntry::Leaf { pa, .. } = *e {
                        let owner = (pa.0 >> 40).wrapping_sub(1);
                        assert!(owner < THREADS, "foreign output {pa:?}");
                    }
                });
            }
        });
        for w in workers {
            w.join().unwrap();
        }
    });
    // Everything is unmapped; what stays allocated is the root, the tables the unmaps left
    // linked (shared tables), and the pool of retired tables, which `reclaim` frees.
    let mut leaves = 0;
    let mut tables = 0;
    pt.walk(|e| match e {
        smmu_pagetable::WalkEntry::Leaf { .. } => leaves += 1,
        smmu_pagetable::WalkEntry::Table { .. } => tables += 1,
    });
    assert_eq!(leaves, 0);
    let pooled = pt.reclaim();
    assert!(pooled > 0, "the wide unmaps retired tables");
    assert_eq!(alloc.live(), tables);
    // Single-threaded now, an unmap of everything retires every table but the root.
    let mut gather = Gather::new();
    assert_eq!(pt.unmap(Iova(0), 1 << 39, &mut gather), Ok(0));
    assert_eq!(gather.freed_tables(), tables - 1);
    // SAFETY: no SMMU walks this table.
    unsafe { pt.release(&mut gather) }.unwrap();
    assert_eq!(pt.reclaim(), tables - 1);
    assert_eq!(alloc.live(), 1);
    drop(pt);
    assert_eq!(alloc.hal().leaks(), [], "tables leaked");
}

/// Threads that all map the *same* ranges (a caller bug) get `AlreadyMapped` or success, never
/// a crash, and the table afterwards still unmaps to empty without leaking a table.
// spec: P2
#[test]
fn overlapping_threads_neither_corrupt_nor_leak() {
    let alloc = SyncAlloc::identity();
    let pt = table(&alloc, Stage::Stage2, 40);
    let rounds = if cfg!(miri) { 3 } else { 300 };
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let pt = &pt;
            s.spawn(move || {
                for r in 0..rounds {
                    let base = G1 + (r % 4) * WIDE;
                    // Pages, a block, and a range over several leaf tables, all contended.
                    for (iova, size) in [(base, K4), (base + M2, M2), (base + 2 * M2, 2 * M2)] {
                        match pt.map(Iova(iova), PhysAddr(pa_for(t, iova)), size, rw()) {
                            Ok(()) | Err(Error::AlreadyMapped { .. }) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    let mut gather = Gather::new();
                    pt.unmap(Iova(base), WIDE, &mut gather).unwrap();
                    // SAFETY: no SMMU walks this table.
                    unsafe { pt.release(&mut gather) }.unwrap();
                }
            });
        }
    });
    // Outside the contended window nothing was ever written.
    let mut outside = 0;
    pt.walk(|e| {
        if let smmu_pagetable::WalkEntry::Leaf { iova, .. } = *e {
            if iova.0 < G1 || iova.0 >= G1 + 4 * WIDE {
                outside += 1;
            }
        }
    });
    assert_eq!(outside, 0);
    let mut gather = Gather::new();
    pt.unmap(Iova(0), 1 << 40, &mut gather).unwrap();
    // SAFETY: no SMMU walks this table.
    unsafe { pt.release(&mut gather) }.unwrap();
    assert_eq!(pt.iova_to_phys(Iova(G1)), None);
    drop(pt);
    assert_eq!(alloc.hal().leaks(), [], "tables leaked");
}

/// Fresh tables, raced for: in each round a new page table, and threads released at once that
/// all need the same missing tables, both through the single-leaf-table fast path (a page each
/// in one new leaf table) and through the general path (16 KiB each across a 2 MiB boundary:
/// the level-1 and level-2 tables are new for everyone, and each leaf table is shared with a
/// neighbour). Exactly one table may win each slot; every loser's table must go back to the
/// page table's pool (and from there to the allocator on `reclaim`), and every thread's mappings
/// must survive.
// spec: P2
#[test]
fn racing_installs_of_the_same_new_table_keep_one_and_free_the_rest() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rounds = if cfg!(miri) { 3 } else { 2000 };
    // Two: more spinning threads than this machine's cores only wait for the scheduler.
    let threads = 2;
    for round in 0..rounds {
        let alloc = SyncAlloc::identity();
        let mut pt = table(&alloc, Stage::Stage1, 48);
        // A spinning start line: a blocking barrier wakes threads microseconds apart, far
        // longer than a map takes.
        let ready = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..threads as u64 {
                let (pt, ready) = (&pt, &ready);
                s.spawn(move || {
                    let page = G1 + t * K4;
                    let cross = 2 * G1 + (t + 1) * M2 - 2 * K4;
                    ready.fetch_add(1, Ordering::AcqRel);
                    while ready.load(Ordering::Acquire) < threads {
                        std::hint::spin_loop();
                    }
                    let (first, second) = if round % 2 == 0 {
                        ((page, K4), (cross, 4 * K4))
                    } else {
                        ((cross, 4 * K4), (page, K4))
                    };
                    for (iova, size) in [first, second] {
                        pt.map(Iova(iova), PhysAddr(pa_for(t, iova)), size, rw())
                            .unwrap();
                    }
                    for probe in [page + 8, cross, cross + 3 * K4 + 8] {
                        assert_eq!(
                            pt.iova_to_phys(Iova(probe)),
                            Some(PhysAddr(pa_for(t, probe)))
                        );
                    }
                });
            }
        });
        // The tree holds exactly the tables the union needs: root, level 1, level 2 and one
        // leaf table at 1 GiB; at 2 GiB a level-2 table and the (threads + 1) leaf tables the
        // crossings share.
        let mut tables = 0;
        pt.walk(|e| {
            if matches!(e, smmu_pagetable::WalkEntry::Table { .. }) {
                tables += 1;
            }
        });
        assert_eq!(tables, 4 + 1 + threads + 1, "round {round}");
        // The losers' tables wait in the pool.
        pt.reclaim();
        assert_eq!(alloc.live(), tables, "round {round}: lost tables");
        drop(pt);
        assert_eq!(alloc.hal().leaks(), []);
    }
}

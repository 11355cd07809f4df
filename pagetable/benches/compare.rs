//! smmu-pagetable vs Google's aarch64-paging, side by side in one process, on the workloads of
//! issue 4: map 1×4K, 256×4K, 256×2M; unmap the same; iova_to_phys on a mapped page.
//!
//! Both use 4 KiB stage-2 tables with a 48-bit input range, identity "physical" addresses from
//! the global allocator (aarch64-paging's own `IdTranslation`, and the same scheme for us), no TLB
//! maintenance. Each measured batch maps (or unmaps) `n` disjoint ranges; the inverse operation
//! runs untimed between batches, so tables already exist — the steady state of a DMA domain.
//!
//! Run: `cargo bench -p smmu-pagetable --bench compare -- --warm-up-time 1 --measurement-time 2`.
//! Criterion groups run first; a summary table (median ns/op over many batches) follows.
#![allow(missing_docs, clippy::missing_panics_doc, unreachable_pub)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::idmap::IdTranslation;
use aarch64_paging::paging::{Constraints, MemoryRegion, RootTable, Stage2};
use criterion::{criterion_group, Criterion};
use smmu::host::IdentityTables;
use smmu_pagetable::{Config, Gather, Granule, Iova, PageTable, PhysAddr, Prot, Stage};

/// Identity-mapped tables (the scheme of aarch64-paging's `IdTranslation`) on the strict host
/// HAL: the walk turns a table address into its pointer inline, without a lock.
type HostAlloc = IdentityTables;

trait Subject {
    const NAME: &'static str;
    fn new() -> Self;
    fn map(&mut self, iova: u64, size: u64);
    fn unmap(&mut self, iova: u64, size: u64);
    fn lookup(&self, iova: u64) -> u64;
}

struct Ours {
    pt: PageTable<HostAlloc>,
    gather: Gather,
}

impl Subject for Ours {
    const NAME: &'static str = "smmu-pagetable";

    fn new() -> Self {
        let cfg = Config {
            stage: Stage::Stage2,
            granule: Granule::Size4K,
            ias: 48,
            oas: 48,
        };
        Self {
            pt: PageTable::new(cfg, HostAlloc::identity()).unwrap(),
            gather: Gather::new(),
        }
    }

    #[inline]
    fn map(&mut self, iova: u64, size: u64) {
        let prot = Prot::READ | Prot::WRITE | Prot::CACHE;
        self.pt.map(Iova(iova), PhysAddr(iova), size, prot).unwrap();
    }

    #[inline]
    fn unmap(&mut self, iova: u64, size: u64) {
        let n = self.pt.unmap(Iova(iova), size, &mut self.gather).unwrap();
        debug_assert_eq!(n, size);
        // A driver issues TLBIs for `gather.ranges()` and CMD_SYNC here, then releases (which
        // also empties the gather for reuse).
        // SAFETY: no SMMU walks this table.
        unsafe { self.pt.release(&mut self.gather) }.unwrap();
    }

    #[inline]
    fn lookup(&self, iova: u64) -> u64 {
        self.pt.iova_to_phys(Iova(iova)).unwrap().0
    }
}

struct Theirs {
    rt: RootTable<Stage2, IdTranslation<Stage2Attributes>>,
}

fn region(iova: u64, size: u64) -> MemoryRegion {
    MemoryRegion::new(iova as usize, (iova + size) as usize)
}

impl Subject for Theirs {
    const NAME: &'static str = "aarch64-paging";

    fn new() -> Self {
        Self {
            rt: RootTable::new(IdTranslation::new(), 0, Stage2),
        }
    }

    #[inline]
    fn map(&mut self, iova: u64, size: u64) {
        let flags = Stage2Attributes::VALID
            | Stage2Attributes::ACCESS_FLAG
            | Stage2Attributes::S2AP_ACCESS_RW
            | Stage2Attributes::SH_INNER
            | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
            | Stage2Attributes::MEMATTR_NORMAL_OUTER_WB;
        let c = Constraints::NO_CONTIGUOUS_HINT;
        self.rt
            .map_range(
                &region(iova, size),
                PhysicalAddress(iova as usize),
                flags,
                c,
            )
            .unwrap();
    }

    #[inline]
    fn unmap(&mut self, iova: u64, size: u64) {
        // aarch64-paging unmaps by writing descriptors without VALID.
        let c = Constraints::NO_CONTIGUOUS_HINT;
        self.rt
            .map_range(
                &region(iova, size),
                PhysicalAddress(0),
                Stage2Attributes::empty(),
                c,
            )
            .unwrap();
    }

    #[inline]
    fn lookup(&self, iova: u64) -> u64 {
        let mut pa = 0;
        self.rt
            .walk_range(&region(iova, 1), &mut |r: &MemoryRegion, d, _level| {
                if d.is_valid() {
                    pa = d.output_address().0 as u64 + (iova - r.start().0 as u64);
                }
                Ok(())
            })
            .unwrap();
        pa
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Map,
    Unmap,
    Lookup,
}

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    kind: Kind,
    /// Bytes per operation.
    size: u64,
    /// Operations per batch (disjoint, adjacent ranges from `BASE`).
    n: u64,
    /// Linux figures from issue 4 (ns/op, i7-12700), if any.
    linux: &'static str,
}

const BASE: u64 = 0x40_0000_0000;
const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;

const WORKLOADS: [Workload; 7] = [
    Workload {
        name: "map 1x4K",
        kind: Kind::Map,
        size: K4,
        n: 256,
        linux: "55-65",
    },
    Workload {
        name: "map 256x4K",
        kind: Kind::Map,
        size: 256 * K4,
        n: 16,
        linux: "360-390",
    },
    Workload {
        name: "map 256x2M",
        kind: Kind::Map,
        size: 256 * M2,
        n: 4,
        linux: "345-420",
    },
    Workload {
        name: "unmap 1x4K",
        kind: Kind::Unmap,
        size: K4,
        n: 256,
        linux: "68-77",
    },
    Workload {
        name: "unmap 256x4K",
        kind: Kind::Unmap,
        size: 256 * K4,
        n: 16,
        linux: "346-521",
    },
    Workload {
        name: "unmap 256x2M",
        kind: Kind::Unmap,
        size: 256 * M2,
        n: 4,
        linux: "-",
    },
    Workload {
        name: "iova_to_phys 4K",
        kind: Kind::Lookup,
        size: K4,
        n: 256,
        linux: "-",
    },
];

/// Runs one batch of `w` on `s`; returns the time of the measured part.
fn batch<S: Subject>(s: &mut S, w: &Workload) -> Duration {
    let at = |k: u64| BASE + k * w.size;
    match w.kind {
        Kind::Map => {
            let t = Instant::now();
            for k in 0..w.n {
                s.map(black_box(at(k)), w.size);
            }
            let d = t.elapsed();
            for k in 0..w.n {
                s.unmap(at(k), w.size);
            }
            d
        }
        Kind::Unmap => {
            for k in 0..w.n {
                s.map(at(k), w.size);
            }
            let t = Instant::now();
            for k in 0..w.n {
                s.unmap(black_box(at(k)), w.size);
            }
            t.elapsed()
        }
        Kind::Lookup => {
            let t = Instant::now();
            let mut acc = 0;
            for k in 0..w.n {
                acc ^= s.lookup(black_box(at(k) + 0x123));
            }
            black_box(acc);
            t.elapsed()
        }
    }
}

fn prepare<S: Subject>(w: &Workload) -> S {
    let mut s = S::new();
    // Build the tables once (steady state), and map the lookup targets.
    for k in 0..w.n {
        s.map(BASE + k * w.size, w.size);
    }
    if !matches!(w.kind, Kind::Lookup) {
        for k in 0..w.n {
            s.unmap(BASE + k * w.size, w.size);
        }
    }
    s
}

fn bench_subject<S: Subject>(c: &mut Criterion, w: &Workload) {
    let mut s: S = prepare(w);
    c.bench_function(&format!("{}/{}", w.name, S::NAME), |b| {
        b.iter_custom(|iters| {
            let batches = iters.div_ceil(w.n);
            let mut total = Duration::ZERO;
            for _ in 0..batches {
                total += batch(&mut s, w);
            }
            total.mul_f64(iters as f64 / (batches * w.n) as f64)
        });
    });
}

fn criterion_benches(c: &mut Criterion) {
    for w in &WORKLOADS {
        bench_subject::<Ours>(c, w);
        bench_subject::<Theirs>(c, w);
    }
}

criterion_group!(benches, criterion_benches);

/// Median ns/op of both subjects over batches run for about `budget`. Batches of the two
/// subjects alternate, so both see the same machine load (the sandbox is shared).
fn summary_ns(w: &Workload, budget: Duration) -> (f64, f64) {
    let mut ours: Ours = prepare(w);
    let mut theirs: Theirs = prepare(w);
    for _ in 0..20 {
        batch(&mut ours, w);
        batch(&mut theirs, w);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < budget || a.len() < 20 {
        a.push(batch(&mut ours, w).as_nanos() as f64 / w.n as f64);
        b.push(batch(&mut theirs, w).as_nanos() as f64 / w.n as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b))
}

fn summary() {
    let budget = Duration::from_millis(600);
    println!();
    println!("| workload | smmu-pagetable ns/op | aarch64-paging ns/op | ratio (them/us) | Linux ns/op (i7-12700) |");
    println!("|---|---:|---:|---:|---:|");
    for w in &WORKLOADS {
        let (ours, theirs) = summary_ns(w, budget);
        println!(
            "| {} | {:.1} | {:.1} | {:.1}x | {} |",
            w.name,
            ours,
            theirs,
            theirs / ours,
            w.linux
        );
    }
}

fn main() {
    // Sanity: both agree on a lookup.
    let w = WORKLOADS[6];
    let (o, t): (Ours, Theirs) = (prepare(&w), prepare(&w));
    assert_eq!(o.lookup(BASE + 0x1234), t.lookup(BASE + 0x1234));
    drop((o, t));

    let only_summary = std::env::args().any(|a| a == "--summary-only");
    if !only_summary {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    summary();
}

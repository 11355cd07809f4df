//! Many CPUs on one SMMU (issue 14): the global-lock design the driver had (kept in
//! `baseline.rs`) against the lock-free command queue, side by side in one run, on 1 and 2
//! threads (`THREADS` in the environment adds more, e.g. `THREADS=1,2,4`). For each thread
//! count above one, the lock-free design's throughput over its one-thread throughput, in rounds
//! that pair the two.
//!
//! Workloads, each per thread and per iteration:
//! - `cmdq`: one `CMD_TLBI_S2_IPA` + `CMD_SYNC` through the queue (two commands);
//! - `dma`: map one 4 KiB page, unmap it, one TLBI for the gathered range, `CMD_SYNC` — the
//!   life of a streaming DMA buffer. The baseline holds one lock around all of it (what a
//!   kernel had to do while the page table and queue took `&mut`); the new design shares the
//!   queue and one page table (one domain), each thread mapping in its own IOVA window of it,
//!   with no lock of the caller's.
//! - `map path`: map one 4 KiB page and unmap it, the invalidation deferred: every 64th
//!   operation a thread issues its gather's range TLBI and one `CMD_SYNC` and releases it
//!   (`Smmu::unmap_deferred` + `Smmu::flush`, Linux's `unmap` + `iotlb_sync` of a gather). The
//!   page-table path of many CPUs in one shared table, with the queue touched once per 64.
//! - `page table alone`: map one 4 KiB page and unmap it, no invalidation at all (nothing
//!   walks the bench's table, and such an unmap retires no table): the table's own scaling,
//!   apart from the queue's.
//! - `cmdq, 1 µs syncs`: as `cmdq`, against an SMMU that completes each batch a microsecond
//!   after its `CMDQ_PROD` write (about what a `CMD_SYNC` costs on hardware), observed by
//!   polling `CMDQ_CONS`: what the designs do with the wait, which the instant backend hides.
//!
//! The "SMMU" of `cmdq`, `dma` and `map path` is a register backend that consumes every
//! command the moment `CMDQ_PROD` moves and writes the MSI completion at once, so what is
//! measured is the CPU side alone.
//!
//! Run: `cargo bench -p smmu --bench concurrency -- --warm-up-time 1 --measurement-time 2`.
//! Criterion groups run first; the ratio table (median of several timed rounds) follows.
//! `PROFILE=lock` / `PROFILE=lock-free` runs one design's submission loop alone, for a
//! sampling profiler (one thread, or `THREADS=2`; `PROFILE_WORK=dma` or `map` for another
//! workload).
#![allow(missing_docs, clippy::missing_panics_doc, unreachable_pub)]

mod baseline;

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use smmu::arch::cmd::{opcode, Command, TlbiAddr, TlbiRange};
use smmu::arch::regs::offset;
use smmu::cmdq::{CommandQueue, SyncMode};
use smmu::host::{HostHal, IdentityTables};
use smmu::inval::{tlbi_commands, InvalCaps, TlbScope};
use smmu::poll::PollBudget;
use smmu::{PhysAddr, RegisterAccess};
use smmu_pagetable::{Config, Gather, Granule, Iova, PageTable, Prot, Stage};

/// Page tables on the strict host HAL, identity-mapped: the walk turns a table's physical
/// address into its pointer without a lock, as a kernel's linear map does.
type Tables = IdentityTables;

/// DMA memory from the strict host HAL with identity "physical" addresses (the SMMU below
/// fetches commands through them), and a kernel's relax.
fn host_hal() -> HostHal {
    HostHal::identity().with_relax(kernel_relax)
}

/// A kernel's relax: a few pause hints (Linux polls the command queue with `cpu_relax()`).
/// Every 32nd call of a thread also gives its core away: on an oversubscribed machine the CPU
/// it waits for may be descheduled, and the poll budget (a million relaxes) must outlast that.
/// Both designs wait through this.
fn kernel_relax() {
    thread_local!(static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    let n = CALLS.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    if n.is_multiple_of(32) {
        std::thread::yield_now();
    } else {
        for _ in 0..4 {
            std::hint::spin_loop();
        }
    }
}

/// An SMMU that consumes commands at once: a `CMDQ_PROD` write runs every new entry (MSI
/// completion for `CMD_SYNC`s) and moves `CMDQ_CONS` to it. With a `latency`, a `CMDQ_PROD`
/// write is only noted, and `CMDQ_CONS` reaches it once `latency` has passed (no MSI: the
/// queue polls `CMDQ_CONS`).
struct InstantSmmu {
    cons: AtomicU32,
    queue: Mutex<(u64, u32, u32)>,
    latency: Option<Duration>,
    delayed: Delayed,
}

/// The `CMDQ_PROD` writes of a delayed SMMU, newest last, read without a lock (every waiter
/// polls `CMDQ_CONS`, and a lock here would be the bottleneck measured). One writer at a time
/// (both designs serialise their `CMDQ_PROD` writes); a reader looks only at the newest
/// writes, so the ring is far larger than it can fall behind.
struct Delayed {
    epoch: Instant,
    writes: AtomicUsize,
    prod: Box<[AtomicU32]>,
    at_ns: Box<[AtomicU64]>,
}

const DELAYED_RING: usize = 4096;

impl Delayed {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            writes: AtomicUsize::new(0),
            prod: (0..DELAYED_RING).map(|_| AtomicU32::new(0)).collect(),
            at_ns: (0..DELAYED_RING).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn record(&self, prod: u32) {
        let i = self.writes.load(Ordering::Relaxed);
        self.prod[i % DELAYED_RING].store(prod, Ordering::Relaxed);
        self.at_ns[i % DELAYED_RING].store(self.now_ns(), Ordering::Relaxed);
        self.writes.store(i + 1, Ordering::Release);
    }

    /// The newest `CMDQ_PROD` written at least `latency` ago, if any.
    fn reached(&self, latency: Duration) -> Option<u32> {
        let n = self.writes.load(Ordering::Acquire);
        let due = self.now_ns().checked_sub(latency.as_nanos() as u64)?;
        (n.saturating_sub(DELAYED_RING)..n).rev().find_map(|i| {
            let slot = i % DELAYED_RING;
            (self.at_ns[slot].load(Ordering::Relaxed) <= due)
                .then(|| self.prod[slot].load(Ordering::Relaxed))
        })
    }
}

impl InstantSmmu {
    fn new(latency: Option<Duration>) -> Self {
        Self {
            cons: AtomicU32::new(0),
            queue: Mutex::new((0, 0, 0)),
            latency,
            delayed: Delayed::new(),
        }
    }

    fn sync_mode(&self) -> SyncMode {
        if self.latency.is_some() {
            SyncMode::Poll
        } else {
            SyncMode::Msi
        }
    }
}

impl RegisterAccess for InstantSmmu {
    fn read32(&self, off: usize) -> u32 {
        if off != offset::CMDQ_CONS {
            return 0;
        }
        match self.latency {
            Some(latency) => self.delayed.reached(latency).unwrap_or(0),
            None => self.cons.load(Ordering::Acquire),
        }
    }

    fn write32(&self, off: usize, value: u32) {
        if off != offset::CMDQ_PROD {
            return;
        }
        if self.latency.is_some() {
            self.delayed.record(value);
            return;
        }
        let mut q = self.queue.lock().unwrap();
        let (base, log2, ref mut cons) = *q;
        let span = 2u32 << log2;
        while *cons != value {
            let idx = u64::from(*cons & ((1 << log2) - 1));
            let entry = std::ptr::with_exposed_provenance_mut::<u64>((base + idx * 16) as usize);
            // SAFETY: the entry is inside the live queue (index below its size).
            let w0 = unsafe { entry.read_volatile() };
            if (w0 & 0xff) as u8 == opcode::CMD_SYNC && (w0 >> 12) & 3 == 1 {
                // SAFETY: as above; the MSI address is the entry itself.
                unsafe { entry.cast::<u32>().write_volatile(0) };
            }
            *cons = (*cons + 1) & (span - 1);
        }
        self.cons.store(*cons, Ordering::Release);
    }

    fn read64(&self, _: usize) -> u64 {
        0
    }

    fn write64(&self, off: usize, value: u64) {
        if off == offset::CMDQ_BASE {
            *self.queue.lock().unwrap() = (value & 0x00ff_ffff_ffff_ffe0, (value & 0x1f) as u32, 0);
        }
    }
}

fn table() -> PageTable<Tables> {
    let cfg = Config {
        stage: Stage::Stage2,
        granule: Granule::Size4K,
        ias: 48,
        oas: 48,
    };
    PageTable::new(cfg, Tables::identity()).unwrap()
}

fn tlbi(iova: u64) -> Command {
    Command::TlbiS2Ipa {
        vmid: 1,
        ipa: TlbiAddr {
            addr: iova,
            leaf: true,
            range: TlbiRange::SINGLE,
        },
    }
}

/// Maps one 4 KiB page at `iova` (to the same address) and unmaps it into `gather`.
fn map_and_unmap(pt: &PageTable<Tables>, gather: &mut Gather, iova: u64) {
    let prot = Prot::READ | Prot::WRITE | Prot::CACHE;
    pt.map(Iova(iova), PhysAddr(iova), 4096, prot).unwrap();
    let n = pt.unmap(Iova(iova), 4096, gather).unwrap();
    debug_assert_eq!(n, 4096);
}

/// One DMA buffer's life in one table: map, unmap, TLBI + sync through `submit`.
fn dma_once(pt: &PageTable<Tables>, gather: &mut Gather, iova: u64, submit: impl FnOnce(Command)) {
    map_and_unmap(pt, gather, iova);
    let r = gather.ranges()[0];
    submit(tlbi(r.iova.0));
    // SAFETY: the TLBI and its sync completed; no SMMU walks this table.
    unsafe { pt.release(gather) }.unwrap();
}

/// Operations per deferred flush in the `map path` workload.
const OPS_PER_FLUSH: u64 = 64;

/// One operation of the `map path` workload: map and unmap one page into the thread's
/// `gather`; every [`OPS_PER_FLUSH`]th operation, the gather's range TLBIs and one `CMD_SYNC`
/// through `submit`, then the release.
fn map_path_once(
    pt: &PageTable<Tables>,
    gather: &mut Gather,
    iova: u64,
    i: u64,
    submit: impl FnOnce(&[Command]),
) {
    map_and_unmap(pt, gather, iova);
    if i % OPS_PER_FLUSH == OPS_PER_FLUSH - 1 {
        let mut cmds = [tlbi(0); 16];
        let mut len = 0;
        let caps = InvalCaps {
            ril: true,
            ..InvalCaps::default()
        };
        tlbi_commands(
            gather.ranges(),
            TlbScope::Stage2 { vmid: 1 },
            &caps,
            &mut |cmd| -> Result<(), ()> {
                *cmds.get_mut(len).ok_or(())? = cmd;
                len += 1;
                Ok(())
            },
        )
        .unwrap();
        submit(&cmds[..len]);
        // SAFETY: the TLBIs and their sync completed; no SMMU walks this table.
        unsafe { pt.release(gather) }.unwrap();
    }
}

/// One operation of the `page table alone` workload: map one page and unmap it, with no
/// invalidation, so that the table's own scaling shows apart from the queue's.
fn table_once(pt: &PageTable<Tables>, gather: &mut Gather, iova: u64) {
    map_and_unmap(pt, gather, iova);
    // A 4 KiB unmap inside a table that stays retires no table, and no SMMU walks this one.
    debug_assert_eq!(gather.freed_tables(), 0);
    // SAFETY: nothing was retired, and nothing but this process reads the table.
    unsafe { pt.release(gather) }.unwrap();
}

/// The old design: one lock around the SMMU, the locked queue inside.
struct Locked {
    hal: HostHal,
    regs: InstantSmmu,
    q: baseline::CommandQueue,
    /// What a kernel had to wrap the whole SMMU in: every domain's tables and the queue.
    tables: spin::Mutex<Vec<PageTable<Tables>>>,
}

/// The new design: the lock-free queue, and one table (one domain) that every thread maps
/// and unmaps its own range of, with no lock of the caller's.
struct LockFree {
    hal: HostHal,
    regs: InstantSmmu,
    q: CommandQueue,
    table: PageTable<Tables>,
}

trait Design: Sync {
    const NAME: &'static str;
    fn new(threads: usize, work: Work) -> Self;
    fn cmdq_once(&self, t: usize, i: u64);
    /// `gather` is the calling thread's own (a kernel keeps it on the stack), in both
    /// designs.
    fn dma_once(&self, t: usize, i: u64, gather: &mut Gather);
    fn map_path_once(&self, t: usize, i: u64, gather: &mut Gather);
    fn table_once(&self, t: usize, i: u64, gather: &mut Gather);
}

fn iova_of(t: usize, i: u64) -> u64 {
    ((t as u64 + 1) << 32) | ((i % 512) << 12)
}

impl Design for Locked {
    const NAME: &'static str = "global lock";

    fn new(threads: usize, work: Work) -> Self {
        let hal = host_hal();
        let regs = InstantSmmu::new(work.latency());
        let mode = match regs.sync_mode() {
            SyncMode::Msi => baseline::SyncMode::Msi,
            _ => baseline::SyncMode::Poll,
        };
        let q = baseline::CommandQueue::new(&hal, 8, mode, true, PollBudget::DEFAULT).unwrap();
        q.program(&regs);
        let tables = spin::Mutex::new((0..threads).map(|_| table()).collect());
        Self {
            hal,
            regs,
            q,
            tables,
        }
    }

    fn cmdq_once(&self, t: usize, i: u64) {
        self.q
            .issue(&self.hal, &self.regs, &[tlbi(iova_of(t, i))], true)
            .unwrap();
    }

    fn dma_once(&self, t: usize, i: u64, gather: &mut Gather) {
        let all = self.tables.lock();
        dma_once(&all[t], gather, iova_of(t, i), |cmd| {
            self.q.issue(&self.hal, &self.regs, &[cmd], true).unwrap();
        });
    }

    fn map_path_once(&self, t: usize, i: u64, gather: &mut Gather) {
        let all = self.tables.lock();
        map_path_once(&all[t], gather, iova_of(t, i), i, |cmds| {
            self.q.issue(&self.hal, &self.regs, cmds, true).unwrap();
        });
    }

    fn table_once(&self, t: usize, i: u64, gather: &mut Gather) {
        let all = self.tables.lock();
        table_once(&all[t], gather, iova_of(t, i));
    }
}

impl Design for LockFree {
    const NAME: &'static str = "lock-free";

    fn new(threads: usize, work: Work) -> Self {
        let hal = host_hal();
        let regs = InstantSmmu::new(work.latency());
        let q = CommandQueue::new(&hal, 8, regs.sync_mode(), true, PollBudget::DEFAULT).unwrap();
        q.program(&regs);
        let _ = threads;
        Self {
            hal,
            regs,
            q,
            table: table(),
        }
    }

    fn cmdq_once(&self, t: usize, i: u64) {
        self.q
            .issue(&self.hal, &self.regs, &[tlbi(iova_of(t, i))], true)
            .unwrap();
    }

    fn dma_once(&self, t: usize, i: u64, gather: &mut Gather) {
        // The table is shared; each thread maps and unmaps its own range.
        dma_once(&self.table, gather, iova_of(t, i), |cmd| {
            self.q.issue(&self.hal, &self.regs, &[cmd], true).unwrap();
        });
    }

    fn map_path_once(&self, t: usize, i: u64, gather: &mut Gather) {
        map_path_once(&self.table, gather, iova_of(t, i), i, |cmds| {
            self.q.issue(&self.hal, &self.regs, cmds, true).unwrap();
        });
    }

    fn table_once(&self, t: usize, i: u64, gather: &mut Gather) {
        table_once(&self.table, gather, iova_of(t, i));
    }
}

#[derive(Clone, Copy)]
enum Work {
    Cmdq,
    Dma,
    MapPath,
    TableOnly,
    SlowSync,
}

impl Work {
    /// Every workload, in the table's order.
    const ALL: [Work; 5] = [
        Work::Cmdq,
        Work::Dma,
        Work::MapPath,
        Work::TableOnly,
        Work::SlowSync,
    ];

    fn name(self) -> &'static str {
        match self {
            Work::Cmdq => "cmdq (TLBI+sync)",
            Work::Dma => "dma (map+unmap+TLBI+sync)",
            Work::MapPath => "map path (1 sync per 64)",
            Work::TableOnly => "page table alone (no TLBI)",
            Work::SlowSync => "cmdq, 1 us syncs",
        }
    }

    /// Operations per thread in one round of the ratio table: enough for a round of at
    /// least ~10 ms on one thread. Shorter rounds (20 000 operations of the map path take
    /// under a millisecond) measure how long the second thread takes to leave the start
    /// barrier, a fixed cost that made two threads look no faster than one.
    fn iters(self) -> u64 {
        match self {
            Work::Cmdq | Work::Dma => 100_000,
            Work::MapPath | Work::TableOnly => 400_000,
            Work::SlowSync => 20_000,
        }
    }

    fn latency(self) -> Option<Duration> {
        match self {
            Work::SlowSync => Some(Duration::from_micros(1)),
            Work::Cmdq | Work::Dma | Work::MapPath | Work::TableOnly => None,
        }
    }
}

/// `iters` operations on each of `threads` threads started together (all spinning until the
/// last one is ready): from the first thread's start to the last one's end (each thread reads
/// the clock itself, so a descheduled main thread does not shorten the window).
fn run<D: Design>(d: &D, work: Work, threads: usize, iters: u64) -> Duration {
    let arrived = AtomicUsize::new(0);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let arrived = &arrived;
                s.spawn(move || {
                    let mut gather = Gather::new();
                    // A spinning barrier: a thread that slept in a futex would start as late
                    // as its vCPU takes to wake (up to milliseconds on this guest once the
                    // vCPU halted), and the round would measure that wake-up.
                    arrived.fetch_add(1, Ordering::AcqRel);
                    while arrived.load(Ordering::Acquire) < threads {
                        std::hint::spin_loop();
                    }
                    let start = Instant::now();
                    for i in 0..iters {
                        match work {
                            Work::Cmdq | Work::SlowSync => d.cmdq_once(t, black_box(i)),
                            Work::Dma => d.dma_once(t, black_box(i), &mut gather),
                            Work::MapPath => d.map_path_once(t, black_box(i), &mut gather),
                            Work::TableOnly => d.table_once(t, black_box(i), &mut gather),
                        }
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = spans.iter().map(|s| s.0).min().unwrap();
    let last = spans.iter().map(|s| s.1).max().unwrap();
    last - first
}

fn thread_counts() -> Vec<usize> {
    std::env::var("THREADS").ok().map_or_else(
        || vec![1, 2],
        |v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
    )
}

fn bench_design<D: Design>(c: &mut Criterion, work: Work) {
    let mut g = c.benchmark_group(format!("{} / {}", work.name(), D::NAME));
    for threads in thread_counts() {
        let d = D::new(threads, work);
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("{threads} threads"), |b| {
            b.iter_custom(|iters| run(&d, work, threads, iters));
        });
    }
    g.finish();
}

fn groups(c: &mut Criterion) {
    for work in Work::ALL {
        bench_design::<Locked>(c, work);
        bench_design::<LockFree>(c, work);
    }
}

criterion_group!(benches, groups);

/// Operations per second over all threads of each design, and their ratio: 9 rounds of
/// [`Work::iters`] operations per thread, the two designs taking turns round by round, so that both
/// see the same machine (on a shared host the two CPUs sometimes run side by side and
/// sometimes take turns, for seconds at a time). The medians of each design's rates, and the
/// median of the rounds' ratios.
fn paired(work: Work, threads: usize) -> (f64, f64, f64) {
    let iters = work.iters();
    let rate = |t: Duration| (threads as u64 * iters) as f64 / t.as_secs_f64();
    let lock = Locked::new(threads, work);
    let free = LockFree::new(threads, work);
    run(&lock, work, threads, iters / 10);
    run(&free, work, threads, iters / 10);
    let mut rounds: Vec<(f64, f64)> = (0..9)
        .map(|_| {
            let l = rate(run(&lock, work, threads, iters));
            (l, rate(run(&free, work, threads, iters)))
        })
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(rounds.iter().map(|(l, f)| f / l).collect());
    let free_rate = median(rounds.iter().map(|r| r.1).collect());
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    (rounds[rounds.len() / 2].0, free_rate, ratio)
}

/// The lock-free design's throughput on `threads` threads over its throughput on one: 9
/// rounds, each a one-thread run followed by a `threads` run of the same design, and the
/// median of the rounds' ratios. Dividing the table's two medians instead would compare runs
/// taken seconds apart, which a hypervisor changing how it runs the vCPUs in between skews;
/// pairing the runs round by round, as the designs are paired, cancels such drift.
fn scaling(work: Work, threads: usize) -> f64 {
    let iters = work.iters();
    let free = LockFree::new(threads, work);
    let rate = |n: usize, t: Duration| (n as u64 * iters) as f64 / t.as_secs_f64();
    run(&free, work, threads, iters / 10);
    let mut ratios: Vec<f64> = (0..9)
        .map(|_| {
            let one = rate(1, run(&free, work, 1, iters));
            rate(threads, run(&free, work, threads, iters)) / one
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn summary() {
    println!(
        "\nThroughput, all threads together (medians of 9 rounds of 20 000 to 400 000 ops per \
         thread, the designs taking turns; ratio: median of the rounds' ratios):"
    );
    println!(
        "{:<27} {:>7} {:>14} {:>14} {:>8}",
        "workload", "threads", "lock Mops/s", "lock-free", "ratio"
    );
    for work in Work::ALL {
        for threads in thread_counts() {
            let (lock, free, ratio) = paired(work, threads);
            println!(
                "{:<27} {:>7} {:>14.3} {:>14.3} {:>7.2}x",
                work.name(),
                threads,
                lock / 1e6,
                free / 1e6,
                ratio
            );
            if threads > 1 {
                let paired = scaling(work, threads);
                println!(
                    "{:<27} {:>7} lock-free vs 1 thread: {:.2}x (per thread {:.2}x)",
                    "",
                    threads,
                    paired,
                    paired / threads as f64
                );
            }
        }
    }
}

/// `PROFILE=lock` or `PROFILE=lock-free`: one thread submitting `CMD_TLBI_S2_IPA` +
/// `CMD_SYNC` to the instant SMMU for about five seconds and nothing else, so that a sampling
/// profiler (`perf record`) sees one design's submission path alone. Prints ns per operation.
/// `THREADS=2` profiles two threads at once; `PROFILE_WORK=dma` or `map` another workload.
fn profile(design: &str) {
    fn spin<D: Design>() {
        let threads = thread_counts().into_iter().max().unwrap_or(1);
        let work = match std::env::var("PROFILE_WORK").as_deref() {
            Ok("dma") => Work::Dma,
            Ok("map") => Work::MapPath,
            _ => Work::Cmdq,
        };
        let d = D::new(threads, work);
        let mut ops = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            run(&d, work, threads, 100_000);
            ops += 100_000 * threads as u64;
        }
        let ns = start.elapsed().as_nanos() as f64 / ops as f64;
        println!("{}: {ops} submissions, {ns:.1} ns each", D::NAME);
    }
    match design {
        "lock" => spin::<Locked>(),
        "lock-free" => spin::<LockFree>(),
        other => eprintln!("PROFILE={other}: expected `lock` or `lock-free`"),
    }
}

fn main() {
    if let Ok(design) = std::env::var("PROFILE") {
        profile(&design);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

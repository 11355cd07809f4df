//! Adoption cost (SPEC K15): `check_adoption` (decide + validate_geometry + scan) over 2-level
//! stream tables of 2^8, 2^12, 2^16, 2^20 and 2^24 StreamIDs (SPLIT 8) with 1, 64 and all
//! level-1 descriptors valid.
//!
//! The images are sparse (`support/image.rs`): every valid descriptor points at the same 16 KiB
//! level-2 table (16 stage-2 STEs with VMIDs, 16 stage-1 STEs through one shared 8-CD table
//! with 3 valid CDs, 16 abort, 16 bypass, 192 invalid), so a 2^24 table costs only its 512 KiB
//! level-1 array. The scan still reads each level-2 table once per valid descriptor.
//!
//! Run: `cargo bench -p smmu-kdump --bench adopt` (criterion groups, then a summary table:
//! median time per check, bytes read through `OldMemory`, number of reads and the largest
//! single read). `-- --summary-only` prints the table alone.
#![allow(missing_docs)]

#[path = "support/image.rs"]
mod image;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use image::{
    adopt, build, build_cd_budget, build_shared_big_cd_table, expected_bytes, l1_entries,
    scratch_bytes, snapshot, valid_counts, Reservations,
};

/// Every (LOG2SIZE, valid descriptors, label) measured.
fn cases() -> Vec<(u32, u64, String)> {
    image::LOG2SIZES
        .into_iter()
        .flat_map(|log2size| {
            valid_counts(log2size)
                .into_iter()
                .map(move |(valid, label)| (log2size, valid, label))
        })
        .collect()
}

/// Valid descriptors from which one check takes over a millisecond: few, flat samples.
const LARGE: u64 = 256;

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("check_adoption");
    for (log2size, valid, _) in cases() {
        let image = build(log2size, valid);
        let snap = snapshot(log2size);
        let mut sink = Reservations::new();
        if valid >= LARGE {
            group.sample_size(10).sampling_mode(SamplingMode::Flat);
        } else {
            group.sample_size(100).sampling_mode(SamplingMode::Auto);
        }
        group.throughput(Throughput::Bytes(expected_bytes(log2size, valid)));
        let label = if valid == l1_entries(log2size) {
            "all".to_string()
        } else {
            valid.to_string()
        };
        let id = BenchmarkId::new(format!("sids_2^{log2size}"), format!("valid_{label}"));
        group.bench_function(id, |b| {
            b.iter(|| adopt(black_box(&snap), black_box(&image), &mut sink).unwrap());
        });
    }
    group.finish();

    // SPEC K20: the CD-budget worst case (2 × 2^20 CDs, every one compared with the first
    // user of its ASID), the refusal past it, and the shared-table shape of issue 10.
    let mut group = c.benchmark_group("cd_budget");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, (snap, image), adopted) in [
        ("two_2^20_cd_tables", build_cd_budget(2), true),
        ("three_2^20_cd_tables_refused", build_cd_budget(3), false),
        (
            "2^16_stes_share_one_2^20_cd_table",
            build_shared_big_cd_table(),
            true,
        ),
    ] {
        let mut sink = Reservations::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = adopt(black_box(&snap), black_box(&image), &mut sink);
                assert_eq!(r.is_ok(), adopted, "{name}: {r:?}");
            });
        });
    }
    group.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.1} µs", ns / 1e3),
        ns => format!("{ns:.0} ns"),
    }
}

fn bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} B"),
    }
}

/// Median time per check over about `budget` (at least `min_runs` checks), with the read
/// counters of one check.
fn summary(budget: Duration, min_runs: usize) {
    println!();
    println!(
        "| StreamIDs | valid L1 | time/check (median) | bytes read | of which L1 table | reads | max read | STEs scanned | CDs scanned | structures | scratch |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (log2size, valid, label) in cases() {
        let image = build(log2size, valid);
        let snap = snapshot(log2size);
        let mut sink = Reservations::new();
        let stats = adopt(&snap, &image, &mut sink).unwrap().stats;
        let read = image.counters();
        assert_eq!(read.bytes, expected_bytes(log2size, valid));
        let mut ns = Vec::new();
        let start = Instant::now();
        while start.elapsed() < budget || ns.len() < min_runs {
            let t = Instant::now();
            black_box(adopt(black_box(&snap), black_box(&image), &mut sink).unwrap());
            ns.push(t.elapsed().as_nanos() as f64);
        }
        println!(
            "| 2^{log2size} | {label} | {} | {} | {} | {} | {} B | {} | {} | {} | {} |",
            time(median(&mut ns)),
            bytes(read.bytes),
            bytes(l1_entries(log2size) * 8),
            read.reads,
            read.max_read_bytes,
            stats.stes_scanned,
            stats.cds_scanned,
            stats.structures,
            bytes(scratch_bytes(&snap)),
        );
    }
    println!();
    println!("| CD-budget case (SPEC K20) | verdict | time/check (median) | bytes read | CDs scanned | tag compares | scratch |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, (snap, image)) in [
        ("2 STEs, own 2^20-CD tables (= budget)", build_cd_budget(2)),
        ("3 STEs, own 2^20-CD tables (over)", build_cd_budget(3)),
        (
            "2^16 STEs sharing one 2^20-CD table",
            build_shared_big_cd_table(),
        ),
    ] {
        let mut sink = Reservations::new();
        image.reset();
        let r = adopt(&snap, &image, &mut sink);
        let read = image.counters();
        let (verdict, cds, compares) = match &r {
            Ok(a) => (
                "adopted".to_string(),
                a.stats.cds_scanned,
                a.stats.tag_compares,
            ),
            Err(e) => (e.code().to_string(), 0, 0),
        };
        let mut ns = Vec::new();
        let start = Instant::now();
        while start.elapsed() < budget || ns.len() < min_runs.min(3) {
            let t = Instant::now();
            let _ = black_box(adopt(black_box(&snap), black_box(&image), &mut sink));
            ns.push(t.elapsed().as_nanos() as f64);
        }
        println!(
            "| {name} | {verdict} | {} | {} | {cds} | {compares} | {} |",
            time(median(&mut ns)),
            bytes(read.bytes),
            bytes(scratch_bytes(&snap)),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // `cargo test --benches` runs this with `--test`: every benchmark once, a one-run table.
    let test_mode = has("--test");
    if !has("--summary-only") {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        criterion_benches(&mut c);
        c.final_summary();
    }
    if test_mode {
        summary(Duration::ZERO, 1);
    } else {
        summary(Duration::from_millis(400), 5);
    }
}

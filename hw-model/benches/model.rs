//! Criterion benchmarks of the model's hot paths: a TLB hit, a full 4-level stage-1 walk, a full
//! nested walk, and a batch of 64 TLBI_NH_VA + CMD_SYNC; the walks and the batch also with RAM
//! backed by a `HostRam` arena (`*_host_ram`). Figures are recorded in BENCHMARKS.md.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use smmu_model::fields::{cd, cmd, pte, reg, ste};
use smmu_model::{CachePolicy, HostRam, Model, ModelConfig, Profile, Transaction};
use std::hint::black_box;
use std::time::{Duration, Instant};

const PT: u64 = pte::VALID | pte::TABLE | pte::AF | pte::NG | (3 << 8);
const S2F: u64 = pte::VALID | pte::TABLE | pte::AF | pte::AP1 | pte::AP2 | (3 << 8);

struct Setup {
    m: Model,
    cmdq: u64,
    prod: u32,
}

fn map(m: &mut Model, root: u64, va: u64, pa: u64, flags: u64, leaf_level: u32) {
    let mut table = root;
    for level in 0..leaf_level {
        let dpa = table + 8 * ((va >> (39 - 9 * level)) & 511);
        let d = m.read_u64(dpa).unwrap();
        table = if d & 1 == 0 {
            let t = m.alloc_pages(1, 4096).unwrap();
            m.write_u64(dpa, t | 3).unwrap();
            t
        } else {
            d & pte::OA_MASK
        };
    }
    let sh = 39 - 9 * leaf_level;
    let lf = if leaf_level == 3 { flags } else { flags & !2 };
    m.write_u64(table + 8 * ((va >> sh) & 511), pa | lf)
        .unwrap();
}

fn cmd_at(s: &mut Setup, w: [u64; 2]) {
    let idx = u64::from(s.prod & 255);
    s.m.write_u64(s.cmdq + 16 * idx, w[0]).unwrap();
    s.m.write_u64(s.cmdq + 16 * idx + 8, w[1]).unwrap();
    s.prod = (s.prod + 1) & 511;
}

/// SID 1: stage 1 (ASID 5) mapping 0x1000..; SID 2: nested (VMID 3) with the same S1 tables.
fn setup(cache: CachePolicy) -> Setup {
    setup_in(cache, None)
}

/// As `setup`, with RAM backed by a 64 MiB host arena.
fn setup_host(cache: CachePolicy) -> Setup {
    setup_in(cache, Some(HostRam::new(64 << 20).unwrap()))
}

fn setup_in(cache: CachePolicy, host_ram: Option<HostRam>) -> Setup {
    let mut m = Model::new(ModelConfig {
        profile: Profile::grace(),
        ack_latency: 0,
        cache,
        host_ram,
        ..ModelConfig::default()
    });
    let st = m.alloc_pages(4, 16384).unwrap();
    let cmdq = m.alloc_pages(1, 4096).unwrap();
    let s2 = m.alloc_pages(1, 4096).unwrap();
    for blk in 0..64u64 {
        let a = 0x4000_0000 + blk * 0x20_0000;
        map(&mut m, s2, a, a, S2F, 2);
    }
    let root = m.alloc_pages(1, 4096).unwrap();
    let cdpa = m.alloc_pages(1, 4096).unwrap();
    let mut c = [0u64; 8];
    cd::T0SZ.set(&mut c, 16);
    cd::EPD1.set(&mut c, 1);
    cd::V.set(&mut c, 1);
    cd::IPS.set(&mut c, 5);
    cd::AA64.set(&mut c, 1);
    cd::R.set(&mut c, 1);
    cd::ASID.set(&mut c, 5);
    cd::TTB0.set(&mut c, root >> 4);
    for (i, w) in c.iter().enumerate() {
        m.write_u64(cdpa + 8 * i as u64, *w).unwrap();
    }
    let data = m.alloc_pages(64, 4096).unwrap();
    for i in 0..64u64 {
        map(
            &mut m,
            root,
            0x7F00_0000_0000 + i * 4096,
            data + i * 4096,
            PT,
            3,
        );
    }
    let mut s1 = [0u64; 8];
    ste::V.set(&mut s1, 1);
    ste::CONFIG.set(&mut s1, ste::CONFIG_S1);
    ste::S1CTXPTR.set(&mut s1, cdpa >> 6);
    let mut n = s1;
    ste::CONFIG.set(&mut n, ste::CONFIG_NESTED);
    ste::S2VMID.set(&mut n, 3);
    ste::S2T0SZ.set(&mut n, 16);
    ste::S2SL0.set(&mut n, 2);
    ste::S2PS.set(&mut n, 5);
    ste::S2AA64.set(&mut n, 1);
    ste::S2R.set(&mut n, 1);
    ste::S2TTB.set(&mut n, s2 >> 4);
    for (sid, img) in [(1u64, s1), (2, n)] {
        for (i, w) in img.iter().enumerate() {
            m.write_u64(st + 64 * sid + 8 * i as u64, *w).unwrap();
        }
    }
    m.write64(reg::CMDQ_BASE, cmdq | 8);
    m.write32(reg::CMDQ_PROD, 0);
    m.write32(reg::CMDQ_CONS, 0);
    m.write32(reg::STRTAB_BASE_CFG, 8);
    m.write64(reg::STRTAB_BASE, st);
    m.write32(reg::CR0, reg::CR0_CMDQEN | reg::CR0_SMMUEN);
    assert_eq!(m.read32(reg::CR0ACK), reg::CR0_CMDQEN | reg::CR0_SMMUEN);
    Setup { m, cmdq, prod: 0 }
}

fn benches(c: &mut Criterion) {
    let va = 0x7F00_0000_0123u64;
    // TLB hit: config cache + TLB warm.
    let mut s = setup(CachePolicy::default());
    let t = Transaction::read(1, va);
    assert!(s.m.translate(&t).pa().is_some());
    c.bench_function("translate_tlb_hit", |b| {
        b.iter(|| black_box(s.m.translate(black_box(&t))));
    });

    // The same without the micro-TLB: config-cache lookups + TLB probe.
    let mut s = setup(CachePolicy {
        micro_tlb: false,
        ..CachePolicy::default()
    });
    assert!(s.m.translate(&t).pa().is_some());
    c.bench_function("translate_tlb_hit_no_micro_tlb", |b| {
        b.iter(|| black_box(s.m.translate(black_box(&t))));
    });

    // Full 4-level stage-1 walk: no TLB, no walk cache (config cache still on).
    let nocache = CachePolicy {
        tlb_capacity: 0,
        walk_cache: false,
        ..CachePolicy::default()
    };
    let tn = Transaction::read(2, va);
    for (suffix, mk) in [
        ("", setup as fn(CachePolicy) -> Setup),
        ("_host_ram", setup_host),
    ] {
        let mut s = mk(nocache.clone());
        assert!(s.m.translate(&t).pa().is_some());
        c.bench_function(&format!("translate_s1_4level_walk{suffix}"), |b| {
            b.iter(|| black_box(s.m.translate(black_box(&t))));
        });

        // Full nested walk: every S1 descriptor fetch and the output go through a stage-2 walk.
        let mut s = mk(nocache.clone());
        assert!(s.m.translate(&tn).pa().is_some());
        c.bench_function(&format!("translate_nested_walk{suffix}"), |b| {
            b.iter(|| black_box(s.m.translate(black_box(&tn))));
        });
    }

    // 64 x TLBI_NH_VA (each hitting a TLB entry) + CMD_SYNC, consumed on the PROD write.
    for (suffix, mk) in [
        ("", setup as fn(CachePolicy) -> Setup),
        ("_host_ram", setup_host),
    ] {
        let mut s = mk(CachePolicy::default());
        cmdq_batch(c, &mut s, suffix);
    }
}

fn cmdq_batch(c: &mut Criterion, s: &mut Setup, suffix: &str) {
    c.bench_function(&format!("cmdq_64_tlbi_nh_va_plus_sync{suffix}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for i in 0..64u64 {
                    let _ =
                        s.m.translate(&Transaction::read(1, 0x7F00_0000_0000 + i * 4096));
                }
                for i in 0..64u64 {
                    let mut w = [u64::from(cmd::TLBI_NH_VA), 0];
                    cmd::ASID.set(&mut w, 5);
                    cmd::LEAF.set(&mut w, 1);
                    cmd::ADDR.set(&mut w, (0x7F00_0000_0000 + i * 4096) >> 12);
                    cmd_at(s, w);
                }
                cmd_at(s, [u64::from(cmd::SYNC), 0]);
                let prod = s.prod;
                let start = Instant::now();
                s.m.write32(reg::CMDQ_PROD, prod);
                total += start.elapsed();
            }
            total
        });
    });
    assert_eq!(s.m.read32(reg::CMDQ_CONS), s.prod);
    assert!(s.m.violations().is_empty());
}

criterion_group!(model, benches);
criterion_main!(model);

//! Crash-kernel adoption rows X1–X9 of model-conformance.md §2.5: the old kernel programs the SMMU
//! and starts DMA, `warm_restart()` (a kexec) keeps everything, and the new kernel adopts.
mod common;
use common::*;
use smmu_model::fields::{reg, ste};
use smmu_model::{Cause, MasterSpec, ModelConfig, Pattern, Transaction, TxnResult, ViolationKind};

struct Old {
    r: Rig,
    pages: [u64; 2],
    roots: [u64; 2],
}

/// Old kernel: S1 streams 1 and 2 (ASIDs 5 and 6) mapping IOVA 0x1000 to one page each, and a
/// master per stream that keeps reading.
fn old_kernel(cfg: ModelConfig) -> Old {
    let mut r = Rig::new(cfg);
    r.enable();
    let mut pages = [0; 2];
    let mut roots = [0; 2];
    for (i, sid) in [1u32, 2].into_iter().enumerate() {
        let (_, root) = r.s1_stream(sid, 5 + i as u16);
        let p = r.m.alloc_pages(1, 4096).unwrap();
        r.map(root, 0x1000, p, PT_FLAGS);
        pages[i] = p;
        roots[i] = root;
        r.cfgi_ste(sid);
        r.m.add_master(MasterSpec::script(vec![
            Transaction::read(sid, 0x1000),
            Transaction::write(sid, 0x1008),
        ]));
    }
    r.m.run_masters(8);
    assert!(r
        .m
        .outcomes()
        .iter()
        .all(|o| matches!(o.result, TxnResult::Translated { .. })));
    r.m.warm_restart();
    Old { r, pages, roots }
}

fn after_restart(o: &Old) -> Vec<TxnResult> {
    o.r.m
        .outcomes()
        .iter()
        .filter(|x| x.epoch == 1)
        .map(|x| x.result)
        .collect()
}

#[test]
fn x1_in_flight_dma_keeps_translating_through_old_structures() {
    // spec: X1
    let mut o = old_kernel(ModelConfig {
        masters_per_step: 1,
        ..ModelConfig::default()
    });
    // New kernel probes: reads IDRs and CR0ACK, many accesses; masters keep running on step().
    for _ in 0..50 {
        o.r.m.read32(reg::IDR0);
        o.r.m.step();
    }
    let res = after_restart(&o);
    assert!(res.len() >= 50);
    for x in &res {
        let pa = x.pa().expect("no abort or bypass for adopted streams");
        assert!(o.pages.contains(&(pa & !0xFFF)));
    }
    // A kernel that drops SMMUEN by accident: the outcome log shows the policy change (bypass).
    o.r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    o.r.m.run_masters(2);
    assert!(o
        .r
        .m
        .outcomes()
        .iter()
        .rev()
        .take(2)
        .all(|x| matches!(x.result, TxnResult::Bypass { .. })));
}

#[test]
fn x2_no_base_or_control_writes_while_enabled() {
    // spec: X2
    let mut o = old_kernel(ModelConfig::default());
    let base = o.r.m.read64(reg::STRTAB_BASE);
    let new = o.r.m.alloc_pages(4, 16384).unwrap();
    o.r.m.write64(reg::STRTAB_BASE, new);
    o.r.m.write32(reg::STRTAB_BASE_CFG, 6);
    o.r.m.write32(reg::CR1, 0x555);
    o.r.m.write32(reg::CR2, 0);
    let v: Vec<_> =
        o.r.m
            .violations()
            .iter()
            .filter(|v| v.kind == ViolationKind::GuardedWrite)
            .map(|v| v.what)
            .collect();
    assert!(v.contains(&"STRTAB_BASE") && v.contains(&"STRTAB_BASE_CFG") && v.contains(&"CR2"));
    assert!(v.iter().any(|w| w.starts_with("CR1")));
    assert_eq!(o.r.m.read64(reg::STRTAB_BASE), base);
    o.r.m.run_masters(4);
    assert!(
        after_restart(&o).iter().all(|x| x.pa().is_some()),
        "old base still in use"
    );
}

#[test]
fn x3_queue_reinit_keeping_smmuen() {
    // spec: X3
    let mut o = old_kernel(ModelConfig {
        masters_per_step: 1,
        ack_latency: 3,
        ..ModelConfig::default()
    });
    let mut acks = Vec::new();
    o.r.m.write32(reg::CR0, reg::CR0_SMMUEN);
    loop {
        let a = o.r.m.read32(reg::CR0ACK);
        acks.push(a);
        o.r.m.step();
        if a == reg::CR0_SMMUEN {
            break;
        }
    }
    let q = o.r.m.alloc_pages(1, 4096).unwrap();
    o.r.cmdq = q;
    o.r.prod = 0;
    o.r.m.write64(reg::CMDQ_BASE, q | 8);
    o.r.m.write32(reg::CMDQ_PROD, 0);
    o.r.m.write32(reg::CMDQ_CONS, 0);
    o.r.m.write32(reg::CR0, reg::CR0_SMMUEN | reg::CR0_CMDQEN);
    loop {
        let a = o.r.m.read32(reg::CR0ACK);
        acks.push(a);
        o.r.m.step();
        if a == reg::CR0_SMMUEN | reg::CR0_CMDQEN {
            break;
        }
    }
    assert!(
        acks.iter().all(|a| a & reg::CR0_SMMUEN != 0),
        "no SMMUEN 1→0 edge"
    );
    assert!(acks.len() > 2, "acks took time");
    o.r.sync();
    assert!(o.r.m.violations().is_empty(), "{:?}", o.r.m.violations());
    assert!(after_restart(&o).iter().all(|x| x.pa().is_some()));
}

#[test]
fn x4_latched_gerror_blocks_new_queue_until_acked() {
    // spec: X4
    let mut o = old_kernel(ModelConfig::default());
    o.r.cmd(op(0x7F)); // the crashed kernel left an illegal command and an active CMDQ_ERR
    o.r.m.raise_gerror(reg::GERROR_SFM_ERR);
    o.r.m.warm_restart();
    assert_ne!(
        (o.r.m.read32(reg::GERROR) ^ o.r.m.read32(reg::GERRORN)) & reg::GERROR_SFM_ERR,
        0,
        "SFM_ERR survives: take the reset path"
    );
    // New queue, no ack: the CMD_SYNC never completes (bounded poll).
    o.r.set_cr0(reg::CR0_SMMUEN);
    let q = o.r.m.alloc_pages(1, 4096).unwrap();
    o.r.cmdq = q;
    o.r.prod = 0;
    o.r.m.write64(reg::CMDQ_BASE, q | 8);
    o.r.m.write32(reg::CMDQ_PROD, 0);
    o.r.m.write32(reg::CMDQ_CONS, 0);
    o.r.set_cr0(reg::CR0_SMMUEN | reg::CR0_CMDQEN);
    o.r.cmd(sync_none());
    for _ in 0..100 {
        o.r.m.step();
    }
    assert_eq!(
        o.r.m.read32(reg::CMDQ_CONS) & 0xFFFFF,
        0,
        "blocked by the latched CMDQ_ERR"
    );
    let g = o.r.m.read32(reg::GERROR);
    o.r.m.write32(reg::GERRORN, g);
    assert_eq!(o.r.m.read32(reg::CMDQ_CONS) & 0xFFFFF, 1);
}

#[test]
fn x5_hitless_replacement_under_running_dma() {
    // spec: X5
    let mut o = old_kernel(ModelConfig {
        masters_per_store: 1,
        ..ModelConfig::default()
    });
    // New CD for SID 1 with its own tables mapping 0x1000 to a new page.
    let newpage = o.r.m.alloc_pages(1, 4096).unwrap();
    let root = o.r.new_root();
    o.r.map(root, 0x1000, newpage, PT_FLAGS);
    let cd = o.r.m.alloc_pages(1, 4096).unwrap();
    o.r.write_struct(cd, cd_s1(9, root));
    o.r.m.take_outcomes();
    // Hitless: only S1ContextPtr (qword 0) changes: one 64-bit store, then CFGI + SYNC.
    let w = ste_s1(cd);
    o.r.m.write_u64(o.r.ste_pa(1), w[0]).unwrap();
    o.r.cfgi_ste(1);
    o.r.m.run_masters(4);
    // Break-before-make for SID 2: V = 0, CFGI+SYNC, rewrite, V = 1, CFGI+SYNC.
    let mut w2 = ste_s1(cd);
    ste::V.set(&mut w2, 0);
    o.r.m.write_u64(o.r.ste_pa(2), w2[0]).unwrap();
    o.r.cfgi_ste(2);
    o.r.write_ste(2, ste_s1(cd));
    o.r.cfgi_ste(2);
    o.r.m.run_masters(4);
    let mut seen_new = false;
    for x in o.r.m.outcomes() {
        match x.result {
            TxnResult::Translated { pa } => {
                let p = pa & !0xFFF;
                assert!(p == newpage || o.pages.contains(&p), "old or new");
                seen_new |= p == newpage;
            }
            TxnResult::Abort { cause, .. } => assert!(matches!(cause, Cause::BadSte)),
            TxnResult::Bypass { .. } => panic!("never a bypass"),
        }
    }
    assert!(seen_new);
    assert!(!o.r.viol(ViolationKind::TornStructure));
}

#[test]
fn x6_adopted_stes_stay_cached_until_cfgi() {
    // spec: X6
    let mut o = old_kernel(ModelConfig::default());
    o.r.write_ste(1, ste_abort());
    assert!(
        o.r.m.dma(Transaction::read(1, 0x1000)).pa().is_some(),
        "old config still used"
    );
    o.r.cfgi_ste(1);
    assert_eq!(
        o.r.m.dma(Transaction::read(1, 0x1000)),
        TxnResult::Abort {
            cause: Cause::SteAbort,
            event: None
        }
    );
}

#[test]
fn x7_event_queue_left_disabled_writes_nothing() {
    // spec: X7
    let mut o = old_kernel(ModelConfig::default());
    o.r.set_cr0(reg::CR0_SMMUEN | reg::CR0_CMDQEN);
    let mut before = vec![0u8; 8192];
    o.r.m.mem_read(o.r.evtq, &mut before).unwrap();
    let prod = o.r.m.read32(reg::EVTQ_PROD);
    // In-flight DMA to an unmapped IOVA faults.
    o.r.m
        .add_master(MasterSpec::script(vec![Transaction::read(1, 0x9000)]));
    o.r.m.run_masters(600);
    let mut after = vec![0u8; 8192];
    o.r.m.mem_read(o.r.evtq, &mut after).unwrap();
    assert_eq!(before, after, "old event queue memory unchanged");
    assert_eq!(o.r.m.read32(reg::EVTQ_PROD), prod, "OVFLG unchanged");
}

#[test]
fn x8_hostile_adopted_tables_never_crash() {
    // spec: X8
    let mut o = old_kernel(ModelConfig::default());
    let mut x = 0x1234_5678_9ABC_DEF0u64;
    for round in 0..64u32 {
        for i in 0..64u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            o.r.m.write_u64(o.r.strtab + 8 * i, x).unwrap();
        }
        o.r.cmd(cfgi_all());
        o.r.sync();
        for sid in 0..8 {
            let _ = o.r.m.dma(Transaction::read(sid, u64::from(round) << 12));
        }
    }
    // An L1STD pointing outside RAM (2-level adopted table): F_STE_FETCH, never a crash.
    smmu_model::fuzzing::run_fetch(&[0x0C, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
}

#[test]
fn x9_adopted_asids_stay_live_in_the_tlb() {
    // spec: X9
    let mut o = old_kernel(ModelConfig::default());
    // New kernel reuses ASID 5 for SID 3 with new tables, without TLBI.
    let newpage = o.r.m.alloc_pages(1, 4096).unwrap();
    let (_, root) = o.r.s1_stream(3, 5);
    o.r.map(root, 0x1000, newpage, PT_FLAGS);
    o.r.cfgi_ste(3);
    assert_eq!(
        o.r.dma_pa(Transaction::read(3, 0x1000)),
        Some(o.pages[0]),
        "stale translation of the adopted ASID"
    );
    o.r.cmd(tlbi_nh_asid(5));
    o.r.sync();
    assert_eq!(o.r.dma_pa(Transaction::read(3, 0x1000)), Some(newpage));
    let _ = o.roots;
    let _ = Pattern::Script(vec![]);
}

//! Memory (M5), masters (M4), PRI records, CERROR_ATC_INV_SYNC and the micro-TLB equivalence.
mod common;
use common::*;
use smmu_model::fields::{cmd, reg};
use smmu_model::{
    CachePolicy, MasterSpec, MemError, Model, ModelConfig, Pattern, Profile, Transaction, TxnResult,
};

#[test]
fn encrypted_region_reads_deterministic_garbage() {
    let mut m = Model::new(ModelConfig::default());
    let pa = m.alloc_pages(1, 4096).unwrap();
    m.mem_write(pa, &[0xAA; 64]).unwrap();
    m.mark_encrypted(pa, 4096, 0xC0FFEE);
    let (mut a, mut b, mut c) = ([0u8; 64], [0u8; 64], [0u8; 64]);
    m.mem_read_attr(pa, &mut a, false).unwrap();
    m.mem_read_attr(pa, &mut b, false).unwrap();
    m.mem_read_attr(pa, &mut c, true).unwrap();
    assert_eq!(a, b, "deterministic");
    assert_ne!(a, [0xAA; 64], "wrong attribute: garbage");
    assert_eq!(c, [0xAA; 64], "right attribute: plaintext");
    // The SMMU reads with its own attribute (plain by default): an STE in encrypted memory is
    // garbage to it.
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    r.write_ste(1, ste_bypass());
    let st = r.ste_pa(0);
    r.m.mark_encrypted(st, 64 * 256, 7);
    assert!(!matches!(
        r.m.dma(Transaction::read(1, 0)),
        TxnResult::Bypass { .. }
    ));
}

#[test]
fn memory_limits_and_allocation_are_typed() {
    let mut m = Model::new(ModelConfig {
        ram_size: 1 << 20,
        mem_limit: 8192,
        ..ModelConfig::default()
    });
    let base = m.config().ram_base;
    assert_eq!(
        m.mem_write(base - 8, &[1]),
        Err(MemError::NotRam { pa: base - 8 })
    );
    m.mem_write(base, &[1]).unwrap();
    m.mem_write(base + 4096, &[1]).unwrap();
    assert_eq!(
        m.mem_write(base + 8192, &[1]),
        Err(MemError::LimitExceeded { limit: 8192 })
    );
    let a = m.alloc_pages(1, 65536).unwrap();
    assert_eq!(a % 65536, 0);
    assert!(matches!(
        m.alloc_pages(1 << 20, 4096),
        Err(MemError::PoolExhausted { .. })
    ));
    assert_eq!(m.alloc_pages(0, 4096), Err(MemError::BadArgument));
    assert!(format!("{}", MemError::BadArgument).contains("bad"));
}

#[test]
fn random_masters_are_reproducible() {
    let run = || {
        let mut r = Rig::new(ModelConfig {
            seed: 9,
            ..ModelConfig::default()
        });
        r.enable();
        r.write_ste(1, ste_bypass());
        r.m.add_master(MasterSpec {
            pattern: Pattern::Random {
                sids: vec![1, 2],
                ssid: None,
                iova_base: 0x4800_0000,
                iova_len: 1 << 16,
                write_percent: 50,
            },
            data: true,
        });
        r.m.run_masters(100);
        r.m.take_outcomes()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), 100);
    assert_eq!(a, b);
    assert!(a.iter().any(|o| o.txn.write) && a.iter().any(|o| !o.txn.write));
}

#[test]
fn pri_page_requests_are_queued() {
    let mut m = Model::new(ModelConfig {
        profile: Profile::mmu600(),
        ack_latency: 0,
        ..ModelConfig::default()
    });
    let q = m.alloc_pages(1, 4096).unwrap();
    m.write64(reg::PRIQ_BASE, q | 4);
    m.write32(reg::PRIQ_PROD, 0);
    m.write32(reg::PRIQ_CONS, 0);
    m.write32(reg::IRQ_CTRL, reg::IRQ_PRIQ);
    m.write32(reg::CR0, reg::CR0_PRIQEN);
    assert!(m.page_request(5, Some(3), 0x1234_5000, true, true, 7));
    assert_eq!(m.read32(reg::PRIQ_PROD), 1);
    let w0 = m.read_u64(q).unwrap();
    assert_eq!(w0 & 0xFFFF_FFFF, 5);
    assert_eq!(m.read_u64(q + 8).unwrap() >> 12, 0x1234_5);
    assert_eq!(m.signals().priq_irq, 1);
    // Without PRI nothing is queued.
    let mut n = Model::new(ModelConfig::default());
    assert!(!n.page_request(5, None, 0, false, true, 0));
}

#[test]
fn atc_inv_sync_error_and_retry() {
    let mut r = Rig::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    r.init();
    r.m.inject_atc_inv_timeout(true);
    let p = r.prod;
    r.cmd(op(cmd::ATC_INV));
    r.cmd(sync_none());
    assert_eq!(cons_err(&mut r.m), cmd::CERROR_ATC_INV_SYNC);
    assert_eq!(
        r.m.read32(reg::CMDQ_CONS) & 0xFFFFF,
        p + 1,
        "CONS on the CMD_SYNC"
    );
    let g = r.m.read32(reg::GERROR);
    r.m.write32(reg::GERRORN, g);
    assert_eq!(r.m.read32(reg::CMDQ_CONS) & 0xFFFFF, p + 2, "retried");
}

#[test]
fn micro_tlb_never_changes_answers() {
    // The same driver sequence with and without the micro-TLB gives identical outcomes, including
    // stale translations kept until invalidation.
    let run = |micro: bool| {
        let cache = CachePolicy {
            micro_tlb: micro,
            ..CachePolicy::default()
        };
        let mut r = Rig::new(ModelConfig {
            cache,
            ..ModelConfig::default()
        });
        r.enable();
        let (cdpa, root) = r.s1_stream(1, 5);
        r.cfgi_ste(1);
        let pages: Vec<u64> = (0..4).map(|_| r.m.alloc_pages(1, 4096).unwrap()).collect();
        let mut x = 77u64;
        for step in 0..400u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let va = ((x >> 20) % 8) << 12;
            match (x >> 40) % 8 {
                0 => r.map(root, va, pages[((x >> 50) % 4) as usize], PT_FLAGS),
                1 => {
                    r.cmd(tlbi_nh_va(5, va, true));
                    r.sync();
                }
                2 => r.map(root, va, 0, 0),
                3 if step % 50 == 0 => {
                    r.write_struct(cdpa, cd_s1(5 + (step as u16 % 2), root));
                    r.cmd(cfgi_cd(1, 0));
                    r.sync();
                }
                _ => {
                    let t = if x & 1 == 0 {
                        Transaction::read(1, va)
                    } else {
                        Transaction::write(1, va)
                    };
                    r.m.dma(t);
                }
            }
        }
        r.m.take_outcomes()
    };
    assert_eq!(run(true), run(false));
}

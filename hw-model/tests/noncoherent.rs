//! A non-coherent SMMU (IDR0.COHACC = 0, SPEC K17) with the CPU-cache view
//! (`ModelConfig::cpu_cache`): the SMMU reads memory as the point of coherency holds it.
mod common;
use common::*;
use smmu_model::fields::{cmd, evt, reg};
use smmu_model::{ModelConfig, Profile, Transaction, TxnResult};

fn rig(cpu_cache: bool) -> Rig {
    let mut r = Rig::new(ModelConfig {
        profile: Profile::qemu_virt().with(0, reg::IDR0_COHACC, 0),
        cpu_cache,
        ..ModelConfig::default()
    });
    r.enable();
    r
}

fn event_id(r: TxnResult) -> u8 {
    match r {
        TxnResult::Abort { event: Some(e), .. } => e.id(),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn an_uncleaned_ste_is_not_seen_until_cleaned() {
    // spec: K17
    let mut r = rig(true);
    assert!(r.m.noncoherent());
    r.write_ste(1, ste_bypass()); // cleaned by the rig
    assert_eq!(
        r.m.dma(Transaction::read(1, 0x1000)),
        TxnResult::Bypass { pa: 0x1000 }
    );
    // A careless driver stores SID 2's STE and invalidates, but never cleans it.
    let pa = r.ste_pa(2);
    for (i, w) in ste_bypass().iter().enumerate() {
        r.m.write_u64(pa + 8 * i as u64, *w).unwrap();
    }
    r.cfgi_ste(2);
    assert_eq!(r.m.read_u64(pa).unwrap() & 1, 1, "the CPU sees its store");
    assert_eq!(
        event_id(r.m.dma(Transaction::read(2, 0x1000))),
        evt::C_BAD_STE
    );
    r.m.clean_dcache(pa, 64);
    r.cfgi_ste(2);
    assert_eq!(
        r.m.dma(Transaction::read(2, 0x1000)),
        TxnResult::Bypass { pa: 0x1000 }
    );
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
}

#[test]
fn an_uncleaned_pte_and_command_are_stale() {
    // spec: K17
    let mut r = rig(true);
    let (_, root) = r.s1_stream(1, 5);
    r.cfgi_ste(1);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x1000))), page);
    // The leaf of 0x2000 shares the level-3 table; stored, not cleaned: a Translation fault.
    let l3 = r.m.read_u64(root).unwrap() & smmu_model::fields::pte::OA_MASK;
    let l3 = r.m.read_u64(l3).unwrap() & smmu_model::fields::pte::OA_MASK;
    let l3 = r.m.read_u64(l3).unwrap() & smmu_model::fields::pte::OA_MASK;
    r.m.write_u64(l3 + 16, page | PT_FLAGS).unwrap();
    assert_eq!(
        event_id(r.m.dma(Transaction::read(1, 0x2000))),
        evt::F_TRANSLATION
    );
    r.m.clean_dcache(l3 + 16, 8);
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x2000))), page);
    // A command stored without a clean: the SMMU reads the stale (zero) slot: CERROR_ILL.
    let slot = r.cmdq + 16 * u64::from(r.prod & 0xFF);
    let w = tlbi_nh_asid(5);
    r.m.write_u64(slot, w[0]).unwrap();
    r.m.write_u64(slot + 8, w[1]).unwrap();
    r.prod += 1;
    r.m.write32(reg::CMDQ_PROD, r.prod);
    assert_eq!(cons_err(&mut r.m), cmd::CERROR_ILL);
}

#[test]
fn smmu_writes_reach_the_cpu_view_and_coherent_smmus_are_unchanged() {
    // spec: K17
    let mut r = rig(true);
    r.s1_stream(1, 5);
    // An event record the SMMU writes is what the CPU reads.
    assert_eq!(
        event_id(r.m.dma(Transaction::read(1, 0x5000))),
        evt::F_TRANSLATION
    );
    assert_eq!(
        r.m.read_u64(r.evtq).unwrap() & 0xFF,
        u64::from(evt::F_TRANSLATION)
    );
    // Without the CPU-cache view (or with COHACC = 1) the SMMU sees stores at once.
    for mut q in [rig(false), {
        let mut q = Rig::new(ModelConfig {
            cpu_cache: true,
            ..ModelConfig::default()
        });
        q.enable();
        q
    }] {
        assert!(!q.m.noncoherent());
        let pa = q.ste_pa(2);
        q.m.write_u64(pa, ste_bypass()[0]).unwrap();
        q.cfgi_ste(2);
        assert_eq!(
            q.m.dma(Transaction::read(2, 0x1000)),
            TxnResult::Bypass { pa: 0x1000 }
        );
    }
}

#[test]
fn cleans_of_any_range_are_bounded_and_never_panic() {
    // spec: B1
    let mut r = rig(true);
    let pa = r.ste_pa(3);
    r.m.write_u64(pa, ste_bypass()[0]).unwrap();
    for (a, len) in [
        (u64::MAX - 8, 100),
        (0, 0),
        (0x1234, u64::MAX),
        (u64::MAX, u64::MAX),
    ] {
        r.m.clean_dcache(a, len);
    }
    // The whole-memory clean above covered the STE.
    r.cfgi_ste(3);
    assert_eq!(
        r.m.dma(Transaction::read(3, 0x1000)),
        TxnResult::Bypass { pa: 0x1000 }
    );
}

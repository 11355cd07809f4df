//! Configuration-structure rows S1–S11 of model-conformance.md §2.3.
mod common;
use common::*;
use smmu_model::fields::{cd, evt, reg, ste};
use smmu_model::{Cause, ModelConfig, Profile, TornFetch, Transaction, TxnResult, ViolationKind};

fn cause(r: TxnResult) -> Cause {
    match r {
        TxnResult::Abort { cause, .. } => cause,
        other => panic!("expected an abort, got {other:?}"),
    }
}

fn event_id(r: TxnResult) -> Option<u8> {
    match r {
        TxnResult::Abort { event, .. } => event.map(|e| e.id()),
        _ => None,
    }
}

#[test]
fn s1_out_of_range_sid_respects_recinvsid() {
    // spec: S1
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let res = r.m.dma(Transaction::read(300, 0));
    assert_eq!(cause(res), Cause::BadStreamId);
    assert_eq!(event_id(res), Some(evt::C_BAD_STREAMID));
    // With RECINVSID = 0: abort, no event (QEMU always records).
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    r.m.write32(reg::CR2, 0);
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    let n = r.m.events().len();
    let res = r.m.dma(Transaction::read(300, 0));
    assert_eq!(
        res,
        TxnResult::Abort {
            cause: Cause::BadStreamId,
            event: None
        }
    );
    assert_eq!(r.m.events().len(), n);
}

fn two_level(span: u64, l2_ptr_extra: u64) -> (Rig, u64) {
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    let l2 = r.m.alloc_pages(4, 16384).unwrap();
    r.m.write32(reg::STRTAB_BASE_CFG, (1 << 16) | (8 << 6) | 16);
    r.m.write_u64(r.strtab, (l2 + l2_ptr_extra) | span).unwrap();
    for i in 0..256u64 {
        r.write_struct(l2 + 64 * i, ste_bypass());
    }
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    (r, l2)
}

#[test]
fn s2_span_checks_and_l2ptr_alignment() {
    // spec: S2
    // Span = SPLIT = 8: the L2 table holds 2^(8-1) = 128 STEs; SID 200 is out of span.
    let (mut r, _) = two_level(8, 0);
    assert!(matches!(
        r.m.dma(Transaction::read(100, 0)),
        TxnResult::Bypass { .. }
    ));
    let res = r.m.dma(Transaction::read(200, 0));
    assert_eq!(
        cause(res),
        Cause::BadStreamId,
        "QEMU: C_BAD_STE and off-by-one"
    );
    assert_eq!(event_id(res), Some(evt::C_BAD_STREAMID));
    // Span 0 and reserved Span 12 are invalid.
    for span in [0, 12] {
        let (mut r, _) = two_level(span, 0);
        assert_eq!(cause(r.m.dma(Transaction::read(1, 0))), Cause::BadStreamId);
    }
    // L2Ptr ignores its low 5 + (Span - 1) bits: a pointer 0x40 too high still finds STE 0.
    let (mut r, _) = two_level(9, 0x40);
    assert!(matches!(
        r.m.dma(Transaction::read(0, 0)),
        TxnResult::Bypass { .. }
    ));
}

#[test]
fn s3_ste_legality() {
    // spec: S3
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    // S2AA64 = 0 with stage 2: ILLEGAL → C_BAD_STE (QEMU hits an assertion).
    let s2ttb = r.new_root();
    let mut w = ste_bypass();
    ste::CONFIG.set(&mut w, ste::CONFIG_S2);
    add_s2(&mut w, 1, s2ttb);
    assert!(r.m.ste_is_legal(&w));
    ste::S2AA64.set(&mut w, 0);
    assert!(!r.m.ste_is_legal(&w));
    r.write_ste(3, w);
    assert_eq!(
        event_id(r.m.dma(Transaction::read(3, 0))),
        Some(evt::C_BAD_STE)
    );
    // S2HA with HTTU = 0: ILLEGAL (QEMU ignores it).
    let mut w2 = ste_bypass();
    ste::CONFIG.set(&mut w2, ste::CONFIG_S2);
    add_s2(&mut w2, 1, s2ttb);
    ste::S2HA.set(&mut w2, 1);
    assert!(!r.m.ste_is_legal(&w2));
    // S1CDMax ≠ 0 with SSIDSIZE = 0 is IGNORED, not ILLEGAL (QEMU is over-strict).
    let mut w3 = ste_s1(0x4000_0000);
    ste::S1CDMAX.set(&mut w3, 5);
    assert!(r.m.ste_is_legal(&w3));
    // Reserved Config 0b010 aborts silently.
    let mut w4 = ste_bypass();
    ste::CONFIG.set(&mut w4, 0b010);
    r.write_ste(4, w4);
    assert_eq!(
        r.m.dma(Transaction::read(4, 0)),
        TxnResult::Abort {
            cause: Cause::SteAbort,
            event: None
        }
    );
    // S1 on a profile without S1P: ILLEGAL.
    let m2 = smmu_model::Model::new(ModelConfig {
        profile: Profile::qemu_virt().with(0, reg::IDR0_S1P, 0),
        ..ModelConfig::default()
    });
    assert!(!m2.ste_is_legal(&ste_s1(0x4000_0000)));
}

#[test]
fn s4_cd_legality_and_ips_capping() {
    // spec: S4
    let r = Rig::new(ModelConfig::default());
    let mut w = cd_s1(1, 0x4000_0000);
    cd::IPS.set(&mut w, 6);
    assert_eq!(
        r.m.cd_geometry(&w),
        Some((48, 44)),
        "IPS 52 bits is legal and capped to the OAS (QEMU aborts)"
    );
    cd::IPS.set(&mut w, 7);
    assert!(r.m.cd_is_legal(&w));
    let mut a0 = cd_s1(1, 0x4000_0000);
    cd::A.set(&mut a0, 0);
    assert!(!r.m.cd_is_legal(&a0), "TERM_MODEL = 1 requires A = 1");
    let mut ha = cd_s1(1, 0x4000_0000);
    cd::HA.set(&mut ha, 1);
    assert!(!r.m.cd_is_legal(&ha));
    let mut tsz = cd_s1(1, 0x4000_0000);
    cd::T0SZ.set(&mut tsz, 40);
    assert!(!r.m.cd_is_legal(&tsz));
    let mut epd = tsz;
    cd::EPD0.set(&mut epd, 1);
    assert!(
        r.m.cd_is_legal(&epd),
        "a disabled region's fields are not checked"
    );
    // And end to end: an illegal CD gives C_BAD_CD.
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cdpa, a0);
    r.write_ste(2, ste_s1(cdpa));
    assert_eq!(
        event_id(r.m.dma(Transaction::read(2, 0))),
        Some(evt::C_BAD_CD)
    );
}

#[test]
fn s5_fetch_faults_are_not_cached() {
    // spec: S5
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    r.write_ste(5, ste_bypass());
    r.m.inject_fetch_fault(r.ste_pa(5), 64);
    let res = r.m.dma(Transaction::read(5, 0));
    assert_eq!(event_id(res), Some(evt::F_STE_FETCH));
    if let TxnResult::Abort { event: Some(e), .. } = res {
        assert_eq!(e.fetch_addr(), r.ste_pa(5));
    }
    r.m.clear_faults();
    assert!(
        matches!(r.m.dma(Transaction::read(5, 0)), TxnResult::Bypass { .. }),
        "retried without CFGI"
    );
    // Contrast: a fetch that *succeeds* with an invalid STE is cached (QEMU never caches it).
    r.write_ste(6, [0; 8]);
    assert_eq!(
        event_id(r.m.dma(Transaction::read(6, 0))),
        Some(evt::C_BAD_STE)
    );
    r.write_ste(6, ste_bypass());
    assert_eq!(
        event_id(r.m.dma(Transaction::read(6, 0))),
        Some(evt::C_BAD_STE)
    );
}

#[test]
fn s2_every_span_and_split() {
    // spec: S2
    for split in [6u32, 8, 10] {
        for span in 1u64..=11 {
            let mut r = Rig::new(ModelConfig::default());
            r.init();
            let l2 = r.m.alloc_pages(16, 65536).unwrap();
            r.m.write32(reg::STRTAB_BASE_CFG, (1 << 16) | (split << 6) | 16);
            // L1 entry 1 covers SIDs [2^split, 2^(split+1)).
            r.m.write_u64(r.strtab + 8, l2 | span).unwrap();
            let n = 1u64 << (span - 1);
            for i in 0..n.min(1 << split) {
                r.write_struct(l2 + 64 * i, ste_bypass());
            }
            r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
            let first = 1u32 << split;
            let valid_span = span <= u64::from(split) + 1;
            let last_in = first + (n.min(1 << split) as u32) - 1;
            let res = r.m.dma(Transaction::read(last_in, 0));
            if valid_span {
                assert!(
                    matches!(res, TxnResult::Bypass { .. }),
                    "split {split} span {span}"
                );
                if n < (1 << split) {
                    let out = r.m.dma(Transaction::read(last_in + 1, 0));
                    assert_eq!(cause(out), Cause::BadStreamId, "split {split} span {span}");
                }
            } else {
                assert_eq!(
                    cause(res),
                    Cause::BadStreamId,
                    "span {span} > split {split} + 1"
                );
            }
        }
    }
}

#[test]
fn s6_invalid_ste_is_cached_until_cfgi() {
    // spec: S6
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    assert_eq!(
        event_id(r.m.dma(Transaction::read(6, 0))),
        Some(evt::C_BAD_STE)
    );
    r.write_ste(6, ste_bypass());
    // QEMU never caches invalid STEs, so it would already bypass here.
    assert_eq!(
        event_id(r.m.dma(Transaction::read(6, 0))),
        Some(evt::C_BAD_STE)
    );
    assert_eq!(r.m.cached_ste(6).map(|w| w[0]), Some(0));
    // Survives SMMUEN and STRTAB_BASE changes too.
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    r.m.write64(reg::STRTAB_BASE, r.strtab);
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    assert_eq!(
        event_id(r.m.dma(Transaction::read(6, 0))),
        Some(evt::C_BAD_STE)
    );
    r.cfgi_ste(6);
    assert!(matches!(
        r.m.dma(Transaction::read(6, 0)),
        TxnResult::Bypass { .. }
    ));
}

#[test]
fn s7_never_follows_out_of_table_pointers() {
    // spec: S7
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    // Everything except the stream table aborts when read: an out-of-range SID must not read.
    r.m.inject_fetch_fault(r.strtab + 256 * 64, 1 << 29);
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    assert_eq!(
        cause(r.m.dma(Transaction::read(256, 0))),
        Cause::BadStreamId
    );
    assert_eq!(
        cause(r.m.dma(Transaction::read(70_000, 0))),
        Cause::BadStreamId
    );
    // An L1STD pointing outside RAM gives F_STE_FETCH, not a crash.
    let (mut r, _) = two_level(9, 0);
    r.cmd(cfgi_all());
    r.sync();
    r.m.write_u64(r.strtab, 0xFFFF_0000_0000 | 9).unwrap();
    r.cmd(cfgi_all());
    r.sync();
    assert_eq!(
        event_id(r.m.dma(Transaction::read(1, 0))),
        Some(evt::F_STE_FETCH)
    );
}

#[test]
fn s8_structure_fetched_between_stores() {
    // spec: S8
    let mut r = Rig::new(ModelConfig {
        torn_fetch: TornFetch::CheckAndCache,
        ..ModelConfig::default()
    });
    r.enable();
    let s2a = r.new_root();
    let mut old = ste_bypass();
    ste::CONFIG.set(&mut old, ste::CONFIG_S2);
    add_s2(&mut old, 1, s2a);
    r.write_ste(8, old);
    r.m.dma(Transaction::read(8, 0)); // live: fetched and tracked
    r.cfgi_ste(8); // not cached any more
                   // One 64-bit store into the live STE: the SMMU may fetch (and cache) the image right then.
    let mut w = old;
    ste::S2VMID.set(&mut w, 2);
    r.m.write_u64(r.ste_pa(8) + 16, w[2]).unwrap();
    assert_eq!(
        r.m.cached_ste(8),
        Some(w),
        "the intermediate image was fetched as 64-bit loads"
    );
}

#[test]
fn s9_torn_update_is_logged_hitless_is_not() {
    // spec: S9
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let (a, b) = (r.new_root(), r.new_root());
    let mut old = ste_bypass();
    ste::CONFIG.set(&mut old, ste::CONFIG_S2);
    add_s2(&mut old, 1, a);
    let mut new = old;
    add_s2(&mut new, 2, b);
    r.write_ste(9, old);
    r.m.dma(Transaction::read(9, 0));
    // Naive memcpy over the live STE: after the qword-2 store the image has VMID 2 with TTB a.
    let bytes: Vec<u8> = new.iter().flat_map(|x| x.to_le_bytes()).collect();
    r.m.mem_write(r.ste_pa(9), &bytes).unwrap();
    r.cfgi_ste(9);
    assert!(r.viol(ViolationKind::TornStructure), "QEMU has no tracking");
    // Break-before-make: V = 0, CFGI+SYNC, rest, CFGI+SYNC, V = 1, CFGI+SYNC: no violation.
    r.m.clear_violations();
    r.m.dma(Transaction::read(9, 0));
    r.m.write_u64(r.ste_pa(9), 0).unwrap();
    r.cfgi_ste(9);
    for i in 1..8 {
        r.m.write_u64(r.ste_pa(9) + 8 * i, old[i as usize]).unwrap();
    }
    r.cfgi_ste(9); // Linux syncs here too: a fetch may read the words in any order
    r.m.write_u64(r.ste_pa(9), old[0]).unwrap();
    r.cfgi_ste(9);
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
    // Hitless single-qword change (only S2TTB, qword 3): no violation either.
    r.m.dma(Transaction::read(9, 0));
    let mut w = old;
    ste::S2TTB.set(&mut w, b >> 4);
    r.m.write_u64(r.ste_pa(9) + 24, w[3]).unwrap();
    r.cfgi_ste(9);
    assert!(r.m.violations().is_empty());
}

#[test]
fn s10_cfgi_scopes() {
    // spec: S10
    let (mut r, l2) = two_level(9, 0);
    assert!(matches!(
        r.m.dma(Transaction::read(3, 0)),
        TxnResult::Bypass { .. }
    ));
    // Point the L1STD at a new L2 table whose STE 3 aborts; CFGI_STE with Leaf = 1 keeps the L1STD.
    let l2b = r.m.alloc_pages(4, 16384).unwrap();
    r.write_struct(l2b + 64 * 3, ste_abort());
    r.write_struct(l2b + 64 * 4, ste_abort());
    r.m.write_u64(r.strtab, l2b | 9).unwrap();
    r.cmd(cfgi_ste(3, true));
    r.sync();
    assert!(
        matches!(r.m.dma(Transaction::read(3, 0)), TxnResult::Bypass { .. }),
        "old L1STD still used"
    );
    assert_eq!(r.m.cached_l1std(0), Some(l2 | 9));
    r.cmd(cfgi_ste(3, false));
    r.sync();
    assert_eq!(cause(r.m.dma(Transaction::read(3, 0))), Cause::SteAbort);
    // CFGI_STE_RANGE aligns the range: Range 1 covers SIDs 4..7, not 3.
    let (mut r, l2) = two_level(9, 0);
    for sid in 3..9 {
        r.m.dma(Transaction::read(sid, 0));
    }
    let mut range = smmu_model::fields::cmd::RANGE.put(0, 1);
    range |= 0;
    let mut w = op(smmu_model::fields::cmd::CFGI_STE_RANGE);
    smmu_model::fields::cmd::SID.set(&mut w, 5);
    w[1] = range;
    r.cmd(w);
    r.sync();
    assert!(r.m.cached_ste(3).is_some() && r.m.cached_ste(8).is_some());
    assert!((4..8).all(|s| r.m.cached_ste(s).is_none()));
    let _ = l2;
}

#[test]
fn s10_cfgi_cd_by_sid_and_ssid() {
    // spec: S10
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let (cdpa, root) = r.s1_stream(1, 7);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    r.cfgi_ste(1);
    assert_eq!(r.dma_pa(Transaction::read(1, 0x1000)), Some(page));
    let mut w = cd_s1(7, root);
    cd::V.set(&mut w, 0);
    r.m.write_u64(cdpa, w[0]).unwrap();
    r.cmd(cfgi_cd(2, 0));
    r.sync();
    assert!(
        r.m.cached_cd(1, 0).is_some(),
        "CFGI_CD of another SID leaves it"
    );
    r.cmd(cfgi_cd(1, 0));
    r.sync();
    assert!(r.m.cached_cd(1, 0).is_none());
}

#[test]
fn s11_cfgi_does_not_touch_tlb() {
    // spec: S11
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let (cdpa, root) = r.s1_stream(1, 7);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    r.cfgi_ste(1);
    r.m.dma(Transaction::read(1, 0x1000));
    let n = r.m.tlb_len();
    assert_eq!(n, 1);
    // New ASID in the CD; CFGI_CD without TLBI.
    r.write_struct(cdpa, cd_s1(8, root));
    r.cmd(cfgi_cd(1, 0));
    r.sync();
    assert_eq!(r.m.tlb_len(), 1, "CFGI keeps TLB entries");
    r.m.dma(Transaction::read(1, 0x1000));
    assert_eq!(r.m.tlb_len(), 2, "the new ASID makes its own entry");
}

#[test]
fn s8_128bit_store_is_atomic_for_the_hook() {
    // spec: S8
    // Changing qwords 2 and 3 (VMID and TTB) of a live S2 STE: two 64-bit stores tear, one
    // 128-bit single-copy-atomic store does not.
    // With 64-bit fetch atomicity even the 128-bit store can be observed torn.
    for atomic128 in [true, false] {
        let mut r = Rig::new(ModelConfig {
            fetch_atomic_128: atomic128,
            ..ModelConfig::default()
        });
        r.enable();
        let (a, b) = (r.new_root(), r.new_root());
        let mut old = ste_bypass();
        ste::CONFIG.set(&mut old, ste::CONFIG_S2);
        add_s2(&mut old, 1, a);
        let mut new = old;
        add_s2(&mut new, 2, b);
        r.write_ste(9, old);
        r.m.dma(Transaction::read(9, 0));
        r.m.write_u128(r.ste_pa(9) + 16, new[2], new[3]).unwrap();
        r.cfgi_ste(9);
        assert_eq!(
            r.m.violations().is_empty(),
            atomic128,
            "{:?}",
            r.m.violations()
        );
    }
}

#[test]
fn s9_missing_sync_after_v0_is_a_torn_mixture() {
    // spec: S9
    // V = 0, then the new words, then V = 1, all without a CFGI+SYNC in between: every image
    // between stores is fine, but a fetch that read word 0 before the first store and word 2
    // after a later one sees the old V = 1 with the new VMID: torn.
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let (a, b) = (r.new_root(), r.new_root());
    let mut old = ste_bypass();
    ste::CONFIG.set(&mut old, ste::CONFIG_S2);
    add_s2(&mut old, 1, a);
    let mut new = old;
    add_s2(&mut new, 2, b);
    r.write_ste(9, old);
    r.m.dma(Transaction::read(9, 0));
    r.m.write_u64(r.ste_pa(9), 0).unwrap();
    r.m.write_u64(r.ste_pa(9) + 16, new[2]).unwrap();
    r.m.write_u64(r.ste_pa(9) + 24, new[3]).unwrap();
    r.m.write_u64(r.ste_pa(9), new[0]).unwrap();
    r.cfgi_ste(9);
    assert!(r.viol(ViolationKind::TornStructure));
    // The between-stores snapshot check alone would not see it.
    let mut r2 = Rig::new(ModelConfig {
        torn_mixes: false,
        ..ModelConfig::default()
    });
    r2.enable();
    r2.write_ste(9, old);
    r2.m.dma(Transaction::read(9, 0));
    r2.m.write_u64(r2.ste_pa(9), 0).unwrap();
    r2.m.write_u64(r2.ste_pa(9) + 16, new[2]).unwrap();
    r2.m.write_u64(r2.ste_pa(9) + 24, new[3]).unwrap();
    r2.m.write_u64(r2.ste_pa(9), new[0]).unwrap();
    r2.cfgi_ste(9);
    assert!(r2.m.violations().is_empty());
}

/// A Linux-style hitless STE writer (used-bits algorithm, CFGI+SYNC between steps), written
/// against the model's own used-bits rule.
fn hitless_write(r: &mut Rig, sid: u32, target: [u64; 8]) {
    let pa = r.ste_pa(sid);
    let read = |r: &mut Rig| -> [u64; 8] {
        let mut w = [0u64; 8];
        for (i, x) in w.iter_mut().enumerate() {
            *x = r.m.read_u64(pa + 8 * i as u64).unwrap();
        }
        w
    };
    let store = |r: &mut Rig, w: &[u64; 8], cur: &[u64; 8]| {
        for i in 0..8 {
            if w[i] != cur[i] {
                r.m.write_u64(pa + 8 * i as u64, w[i]).unwrap();
            }
        }
        r.cfgi_ste(sid);
    };
    let cur = read(r);
    let used_cur = smmu_model::ste_used_bits(&cur);
    let used_tgt = smmu_model::ste_used_bits(&target);
    // Step 1: bits the current configuration ignores take their target values.
    let mut step1 = cur;
    for i in 0..8 {
        step1[i] = (cur[i] & used_cur[i]) | (target[i] & !used_cur[i]);
    }
    store(r, &step1, &cur);
    let critical: Vec<usize> = (0..8)
        .filter(|&i| (step1[i] ^ target[i]) & (used_cur[i] | used_tgt[i]) != 0)
        .collect();
    if critical.len() <= 1 {
        let mut step2 = step1;
        for &i in &critical {
            step2[i] = target[i];
        }
        store(r, &step2, &step1);
        store(r, &target, &step2);
    } else {
        // Not hitless: break before make.
        let mut v0 = step1;
        ste::V.set(&mut v0, 0);
        store(r, &v0, &step1);
        let mut rest = target;
        rest[0] = v0[0];
        store(r, &rest, &v0);
        store(r, &target, &rest);
    }
}

#[test]
fn s9_linux_style_hitless_writer_logs_nothing_and_dma_sees_old_new_or_abort() {
    // spec: S9
    let mut r = Rig::new(ModelConfig {
        masters_per_store: 2,
        ..ModelConfig::default()
    });
    r.enable();
    let (_, root1) = r.s1_stream(1, 5);
    let cd1 = r.m.read_u64(r.ste_pa(1)).unwrap() & 0x00FF_FFFF_FFFF_FFC0;
    let (cd2, root2) = (r.m.alloc_pages(1, 4096).unwrap(), r.new_root());
    r.write_struct(cd2, cd_s1(6, root2));
    let (pa1, pa2, pa3) = (
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
    );
    r.map(root1, 0x1000, pa1, PT_FLAGS);
    r.map(root2, 0x1000, pa2, PT_FLAGS);
    let s2 = r.new_root();
    r.map(s2, 0x1000, pa3, S2_RW);
    r.cfgi_ste(1);
    r.m.add_master(smmu_model::MasterSpec::script(vec![Transaction::read(
        1, 0x1000,
    )]));
    let mut s2a = ste_bypass();
    ste::CONFIG.set(&mut s2a, ste::CONFIG_S2);
    add_s2(&mut s2a, 1, s2);
    let mut s2b = s2a;
    add_s2(&mut s2b, 2, s2);
    let sequence = [
        ste_s1(cd2),
        ste_bypass(),
        ste_s1(cd1),
        s2a,
        s2b,
        ste_abort(),
        ste_s1(cd2),
    ];
    for target in sequence {
        let before = r.m.read_u64(r.ste_pa(1)).unwrap();
        r.m.take_outcomes();
        hitless_write(&mut r, 1, target);
        assert!(
            r.m.violations().is_empty(),
            "{before:#x} -> {:#x}: {:?}",
            target[0],
            r.m.violations()
        );
        for o in r.m.outcomes() {
            match o.result {
                TxnResult::Translated { pa } => assert!([pa1, pa2, pa3].contains(&(pa & !0xFFF))),
                TxnResult::Bypass { pa } => assert_eq!(pa, 0x1000),
                TxnResult::Abort { cause, .. } => {
                    assert!(matches!(cause, Cause::BadSte | Cause::SteAbort));
                }
            }
        }
    }
}

const S2_RW: u64 = smmu_model::fields::pte::VALID
    | smmu_model::fields::pte::TABLE
    | smmu_model::fields::pte::AF
    | smmu_model::fields::pte::AP1
    | smmu_model::fields::pte::AP2;

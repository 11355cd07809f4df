//! PCIe ATS (§3.9.1): Translation Requests, Translated transactions under CR0.ATSCHK and
//! STE.EATS, the endpoints' ATCs and CMD_ATC_INV with its CMD_SYNC (issue 12).
mod common;
use common::*;
use smmu_model::fields::{cmd, evt, pte, reg, ste};
use smmu_model::{
    AtsCompletion, Cause, MasterSpec, ModelConfig, Profile, Transaction, TxnResult, ViolationKind,
};

const S2_FLAGS: u64 = pte::VALID | pte::TABLE | pte::AF | pte::AP1 | pte::AP2 | (3 << 8);

/// An MMU-600-like SMMU (IDR0.ATS) enabled with CR0.ATSCHK as given; SID 1 is a stage-1
/// stream with EATS as given, mapping 0x1000 → `page` (RW) and 0x2000 → `page` (RO).
fn rig(atschk: bool, eats: u64) -> (Rig, u64, u64) {
    let mut r = Rig::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    r.init();
    let chk = if atschk { reg::CR0_ATSCHK } else { 0 };
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN | chk);
    let (cdpa, root) = r.s1_stream(1, 5);
    let mut w = ste_s1(cdpa);
    ste::EATS.set(&mut w, eats);
    r.write_ste(1, w);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    r.map(root, 0x2000, page, PT_FLAGS | pte::AP2);
    (r, page, root)
}

fn events(r: &Rig) -> Vec<u8> {
    r.m.events().iter().map(|(e, _)| e.id()).collect()
}

fn atc_inv(sid: u32, ssid: Option<u32>, addr: u64, size: u64) -> [u64; 2] {
    let mut w = op(cmd::ATC_INV);
    cmd::SID.set(&mut w, u64::from(sid));
    if let Some(s) = ssid {
        cmd::SSV.set(&mut w, 1);
        cmd::SSID.set(&mut w, u64::from(s));
    }
    w[1] = (addr & !0xFFF) | size;
    w
}

#[test]
fn translation_requests_follow_eats_and_report_only_bad_requests() {
    // spec: §3.9.1.2, §5.2 EATS, §7.3.6
    let (mut r, page, _) = rig(true, 0b01);
    // The pages are privileged-only (AP[1] = 0): an unprivileged request is granted nothing.
    assert_eq!(
        r.m.ats_translate(&Transaction::write(1, 0x1234).unprivileged()),
        AtsCompletion::Success {
            pa: 0,
            read: false,
            write: false,
            exec: false
        }
    );
    let t = Transaction::write(1, 0x1234);
    assert_eq!(
        r.m.ats_translate(&t),
        AtsCompletion::Success {
            pa: page,
            read: true,
            write: true,
            exec: false
        }
    );
    // A read-only page grants read only; an unmapped one grants nothing. No fault is recorded.
    assert_eq!(
        r.m.ats_translate(&Transaction::write(1, 0x2000)),
        AtsCompletion::Success {
            pa: page,
            read: true,
            write: false,
            exec: false
        }
    );
    assert_eq!(
        r.m.ats_translate(&Transaction::read(1, 0x9000)),
        AtsCompletion::Success {
            pa: 0,
            read: false,
            write: false,
            exec: false
        }
    );
    assert!(events(&r).is_empty(), "{:?}", events(&r));
    // EATS = 0 and a bypass STE: UR with F_BAD_ATS_TREQ; an abort STE: UR, silently.
    let mut w = r.m.cached_ste(1).unwrap();
    ste::EATS.set(&mut w, 0);
    r.write_ste(2, w);
    r.write_ste(3, ste_bypass());
    r.write_ste(4, ste_abort());
    for sid in [2, 3] {
        assert_eq!(
            r.m.ats_translate(&Transaction::read(sid, 0x1000)),
            AtsCompletion::UnsupportedRequest
        );
    }
    assert_eq!(
        r.m.ats_translate(&Transaction::read(4, 0x1000)),
        AtsCompletion::UnsupportedRequest
    );
    assert_eq!(events(&r), vec![evt::F_BAD_ATS_TREQ; 2]);
    assert_eq!(r.m.events()[0].0.sid(), 2);
    // An ILLEGAL STE and a bad StreamID: CA, no C_BAD_STE / C_BAD_STREAMID record.
    let mut bad = ste_s1(0x4000_0000);
    ste::CONFIG.set(&mut bad, ste::CONFIG_S2); // S2 fields all zero: ILLEGAL
    r.write_ste(5, bad);
    assert_eq!(
        r.m.ats_translate(&Transaction::read(5, 0x1000)),
        AtsCompletion::CompleterAbort
    );
    assert_eq!(
        r.m.ats_translate(&Transaction::read(999, 0x1000)),
        AtsCompletion::CompleterAbort
    );
    assert_eq!(events(&r).len(), 2);
    // Without IDR0.ATS no request is answered.
    let mut q = Rig::new(ModelConfig::default());
    q.enable();
    q.write_ste(1, ste_bypass());
    assert_eq!(
        q.m.ats_translate(&Transaction::read(1, 0)),
        AtsCompletion::UnsupportedRequest
    );
}

#[test]
fn translated_transactions_pass_only_where_eats_allows_when_atschk_is_set() {
    // spec: §3.9.1.3, §6.3.9 ATSCHK, §7.3.8
    let secret = 0x4800_0000u64;
    for (atschk, eats, passes) in [
        (false, 0b00, true), // fast mode: no check at all
        (true, 0b00, false),
        (true, 0b01, true),
    ] {
        let (mut r, _, _) = rig(atschk, eats);
        let got = r.m.dma_translated(Transaction::write(1, secret));
        if passes {
            assert_eq!(
                got,
                TxnResult::Bypass { pa: secret },
                "ATSCHK {atschk} EATS {eats}"
            );
        } else {
            let TxnResult::Abort { cause, event } = got else {
                panic!("reached memory: {got:?}")
            };
            assert_eq!(cause, Cause::TranslForbidden);
            let e = event.unwrap();
            assert_eq!((e.id(), e.sid(), e.input_addr()), (0x07, 1, secret));
            assert!(!e.rnw());
        }
    }
    // With ATSCHK: a bypass STE forbids, an abort STE aborts silently.
    let (mut r, _, _) = rig(true, 0b01);
    r.write_ste(2, ste_bypass());
    r.write_ste(3, ste_abort());
    assert!(matches!(
        r.m.dma_translated(Transaction::read(2, secret)),
        TxnResult::Abort {
            cause: Cause::TranslForbidden,
            event: Some(_)
        }
    ));
    assert_eq!(
        r.m.dma_translated(Transaction::read(3, secret)),
        TxnResult::Abort {
            cause: Cause::SteAbort,
            event: None
        }
    );
    // SMMUEN = 0: forbidden whatever ATSCHK says.
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    assert!(matches!(
        r.m.dma_translated(Transaction::read(1, secret)),
        TxnResult::Abort {
            cause: Cause::TranslForbidden,
            ..
        }
    ));
}

#[test]
fn split_stage_translated_traffic_goes_through_stage2() {
    // spec: §5.2 EATS = 0b10, §13.6.3
    let mut r = Rig::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    r.init();
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN | reg::CR0_ATSCHK);
    let (s2, root) = (r.new_root(), r.new_root());
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cdpa, cd_s1(5, root));
    let page = r.m.alloc_pages(1, 4096).unwrap();
    let ipa = 0x10_0000_0000u64;
    r.map_g(s2, 12, 44, ipa, page, 3, S2_FLAGS);
    let mut w = ste_s1(cdpa);
    ste::CONFIG.set(&mut w, ste::CONFIG_NESTED);
    ste::EATS.set(&mut w, 0b10);
    add_s2(&mut w, 3, s2);
    r.write_ste(1, w);
    assert!(r.m.ste_is_legal(&w));
    assert_eq!(
        r.m.dma_translated(Transaction::write(1, ipa + 0x10)),
        TxnResult::Translated { pa: page + 0x10 }
    );
    // An IPA stage 2 does not map: a recorded stage-2 fault.
    let TxnResult::Abort { event, .. } = r.m.dma_translated(Transaction::read(1, 0x1000)) else {
        panic!("translated")
    };
    let e = event.unwrap();
    assert_eq!(e.id(), evt::F_TRANSLATION);
    assert!(e.s2());
}

#[test]
fn atc_entries_live_until_the_sync_after_atc_inv() {
    // spec: Q5 (§4.5.1: consumption does not complete an ATC invalidation; CMD_SYNC does)
    let (mut r, page, root) = rig(true, 0b01);
    assert_eq!(
        r.m.ats_dma(Transaction::write(1, 0x1008)),
        TxnResult::Translated { pa: page + 8 }
    );
    assert_eq!(
        r.m.ats_dma(Transaction::read(1, 0x1000).with_ssid(0)),
        TxnResult::Abort {
            cause: Cause::AtsDenied,
            event: None
        },
        "SSID 0 without substreams: C_BAD_SUBSTREAMID inside, CA to the endpoint"
    );
    assert_eq!(r.m.atc_entries().len(), 1);
    // Unmap and invalidate the SMMU's TLB: the endpoint's ATC still reaches the old page.
    r.map(root, 0x1000, 0, 0);
    r.cmd(tlbi_nh_va(5, 0x1000, true));
    r.sync();
    assert_eq!(
        r.m.ats_dma(Transaction::read(1, 0x1000)),
        TxnResult::Translated { pa: page }
    );
    // ATC_INV consumed, no sync yet: still in use, and reusing the page is reliance.
    r.cmd(atc_inv(1, None, 0x1000, 0));
    assert!(r.m.atc_entries()[0].invalidating);
    assert_eq!(
        r.m.ats_dma(Transaction::read(1, 0x1000)),
        TxnResult::Translated { pa: page }
    );
    r.m.write_u64(page, 0xDEAD).unwrap();
    assert!(r.viol(ViolationKind::RelianceBeforeSync));
    r.m.clear_violations();
    r.sync();
    assert!(r.m.atc_entries().is_empty());
    assert_eq!(
        r.m.ats_dma(Transaction::read(1, 0x1000)),
        TxnResult::Abort {
            cause: Cause::AtsDenied,
            event: None
        }
    );
    assert!(r.m.violations().is_empty());
}

#[test]
fn atc_inv_scope_and_a_failed_sync() {
    // spec: Q8 (§4.5.1: span, SSV; CERROR_ATC_INV_SYNC)
    let mut r = Rig::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    r.init();
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN | reg::CR0_ATSCHK);
    let root = r.new_root();
    let page = r.m.alloc_pages(1, 4096).unwrap();
    for i in 0..4u64 {
        r.map(root, 0x10_0000 + i * 4096, page, PT_FLAGS);
    }
    let table = r.m.alloc_pages(1, 4096).unwrap();
    for s in 0..4u64 {
        r.write_struct(table + 64 * s, cd_s1(5, root));
    }
    let mut w = ste_s1(table);
    ste::S1CDMAX.set(&mut w, 2);
    ste::S1DSS.set(&mut w, 0b10);
    ste::EATS.set(&mut w, 1);
    r.write_ste(1, w);
    for i in 0..4u64 {
        for ssid in [None, Some(1), Some(2)] {
            let mut t = Transaction::read(1, 0x10_0000 + i * 4096);
            t.ssid = ssid;
            assert!(matches!(r.m.ats_dma(t), TxnResult::Translated { .. }));
        }
    }
    assert_eq!(r.m.atc_entries().len(), 12);
    // PASID 1, two pages from 0x10_0000 (Size 1): two entries.
    r.cmd(atc_inv(1, Some(1), 0x10_1000, 1));
    r.sync();
    assert_eq!(r.m.atc_entries().len(), 10);
    // Without a PASID, every PASID's entries in the span go: page 2 of all three.
    r.cmd(atc_inv(1, None, 0x10_2000, 0));
    r.sync();
    assert_eq!(r.m.atc_entries().len(), 7);
    // A sync that fails with CERROR_ATC_INV_SYNC completes nothing.
    r.m.inject_atc_inv_timeout(true);
    r.cmd(atc_inv(1, None, 0, 52));
    r.cmd(sync_none());
    assert_eq!(cons_err(&mut r.m), cmd::CERROR_ATC_INV_SYNC);
    assert_eq!(r.m.atc_entries().len(), 7);
    let g = r.m.read32(reg::GERROR);
    r.m.write32(reg::GERRORN, g);
    r.wait_cons();
    assert!(r.m.atc_entries().is_empty(), "the retried sync completed");
}

#[test]
fn masters_can_be_ats_endpoints() {
    // spec: M4 (DMA masters), §3.9.1
    let (mut r, page, _) = rig(true, 0b01);
    let id = r.m.add_master(MasterSpec::script(vec![
        Transaction::write(1, 0x1010),
        Transaction::write(1, 0x2010), // read-only page: the endpoint does not write
    ]));
    r.m.set_master_ats(id, true).unwrap();
    r.m.run_masters(2);
    let got: Vec<TxnResult> = r.m.outcomes().iter().map(|o| o.result).collect();
    assert_eq!(
        got,
        vec![
            TxnResult::Translated { pa: page + 0x10 },
            TxnResult::Abort {
                cause: Cause::AtsDenied,
                event: None
            }
        ]
    );
    assert_eq!(
        r.m.atc_entries().len(),
        2,
        "both pages cached (one read-only)"
    );
    assert!(r.m.set_master_ats(9, true).is_err());
}

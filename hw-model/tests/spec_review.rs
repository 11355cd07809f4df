//! What a spec-by-spec review of the model found (issue 12): each test asserts the behaviour the
//! spec section it names requires, and failed before the fix.
mod common;
use common::*;
use smmu_model::fields::{cd, cmd, evt, pte, reg, ste};
use smmu_model::{Cause, Event, ModelConfig, Profile, Transaction, TxnResult};

const S2_FLAGS: u64 = pte::VALID | pte::TABLE | pte::AF | pte::AP1 | pte::AP2 | (3 << 8);

fn fault(r: TxnResult) -> (Cause, Option<Event>) {
    match r {
        TxnResult::Abort { cause, event } => (cause, event),
        other => panic!("expected an abort, got {other:?}"),
    }
}

fn event(r: TxnResult) -> Event {
    fault(r).1.expect("an event record")
}

fn rig(profile: Profile) -> Rig {
    let mut r = Rig::new(ModelConfig {
        profile,
        ..ModelConfig::default()
    });
    r.enable();
    r
}

/// The table descriptor at `index` of `table`, as a table address.
fn next(r: &Rig, table: u64, index: u64) -> u64 {
    r.m.read_u64(table + 8 * index).unwrap() & pte::OA_MASK
}

// ------------------------------------------------------------------ 1. walk cache, TTB0/TTB1

#[test]
fn walk_cache_keeps_ttb0_and_ttb1_apart() {
    // spec: T4 (§5.4 TTB1: two VA ranges; a walk-cache entry belongs to one of them)
    let mut r = rig(Profile::qemu_virt());
    let (root0, root1) = (r.new_root(), r.new_root());
    let mut c = cd_s1(5, root0);
    cd::EPD1.set(&mut c, 0);
    cd::T1SZ.set(&mut c, 16);
    cd::TG1.set(&mut c, 2); // 4 KiB
    cd::TTB1.set(&mut c, root1 >> 4);
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cdpa, c);
    r.write_ste(1, ste_s1(cdpa));
    let (a, b, fresh) = (
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
    );
    // Both addresses index entry 0 at levels 0..2 and entry 1 at level 3 of their own tree.
    let lo = 0x1000u64;
    let hi = 0xFFFF_0000_0000_1000u64;
    r.map(root0, lo, a, PT_FLAGS);
    r.map(root1, hi, b, PT_FLAGS);
    assert_eq!(translated(r.m.dma(Transaction::read(1, lo))), a);
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, hi))),
        b,
        "a TTB1 walk must not start from TTB0's cached tables"
    );
    assert!(r.m.walk_cache_len() >= 6, "both walks were cached");
    // Move TTB1's level-3 table and invalidate by VA, non-leaf: TTB1's walk entries go.
    let l2 = next(&r, next(&r, root1, 0), 0);
    let t3 = r.new_root();
    r.m.write_u64(t3 + 8, fresh | PT_FLAGS).unwrap();
    r.m.write_u64(l2, t3 | 3).unwrap();
    r.cmd(tlbi_nh_va(5, hi, false));
    r.sync();
    assert_eq!(translated(r.m.dma(Transaction::read(1, hi))), fresh);
    assert_eq!(translated(r.m.dma(Transaction::read(1, lo))), a);
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
}

// ------------------------------------------------------------------ 2. range TLBI legality

fn ranged_rig(profile: Profile) -> Rig {
    let mut r = rig(profile);
    let (_, root) = r.s1_stream(1, 5);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    for i in 0..16u64 {
        r.map(root, 0x10_0000 + i * 4096, page, PT_FLAGS);
        r.m.dma(Transaction::read(1, 0x10_0000 + i * 4096));
    }
    assert_eq!(r.m.tlb_len(), 16);
    r
}

fn ds_profile() -> Profile {
    Profile::qemu_virt().with(5, reg::IDR5_DS, 1)
}

/// Issues `w` and reports the CMDQ error it raised (0 = consumed).
fn issue(r: &mut Rig, w: [u64; 2]) -> u32 {
    r.cmd(w);
    let e = cons_err(&mut r.m);
    if e == 0 {
        r.sync();
    }
    e
}

#[test]
fn range_tlbi_reserved_encodings_are_illegal() {
    // spec: Q7 (§4.4.1.1)
    // TG != 0 with NUM = SCALE = TTL = 0 is Reserved: CERROR_ILL, for every range TLBI.
    for o in [cmd::TLBI_NH_VA, cmd::TLBI_NH_VAA, cmd::TLBI_S2_IPA] {
        let mut r = ranged_rig(Profile::qemu_virt());
        let e = issue(&mut r, tlbi_range(o, 5, 0x10_0000, 1, 0, 0, 0));
        assert_eq!(e, cmd::CERROR_ILL, "opcode {o:#x}");
        assert_ne!(r.m.read32(reg::GERROR) & reg::GERROR_CMDQ_ERR, 0);
        assert_eq!(r.m.tlb_len(), 16, "an illegal command invalidates nothing");
    }
    // The same single granule with a TTL hint is legal.
    let mut r = ranged_rig(Profile::qemu_virt());
    let e = issue(
        &mut r,
        tlbi_range(cmd::TLBI_NH_VA, 5, 0x10_0000, 1, 0, 0, 3),
    );
    assert_eq!(e, 0);
    assert_eq!(r.m.tlb_len(), 15);
    // TG = 16K with TTL = 0b01 is Reserved without IDR5.DS, legal with it.
    let mut r = ranged_rig(Profile::qemu_virt());
    assert_eq!(
        issue(&mut r, tlbi_range(cmd::TLBI_NH_VA, 5, 0, 2, 3, 0, 1)),
        cmd::CERROR_ILL
    );
    let mut r = ranged_rig(ds_profile());
    assert_eq!(
        issue(&mut r, tlbi_range(cmd::TLBI_NH_VA, 5, 0, 2, 3, 0, 1)),
        0
    );
    // Without RIL the range fields are RES0: TG is not looked at.
    let mut r = ranged_rig(Profile::mmu600());
    assert_eq!(
        issue(
            &mut r,
            tlbi_range(cmd::TLBI_NH_VA, 5, 0x10_0000, 1, 0, 0, 0)
        ),
        0
    );
    assert_eq!(r.m.tlb_len(), 15);
}

#[test]
fn range_tlbi_scale_width_and_no_overflow() {
    // spec: T5 (§4.4.1.1 SCALE)
    let left = |r: &Rig| -> Vec<u64> {
        r.m.tlb_snapshot()
            .iter()
            .map(|t| (t.va - 0x10_0000) / 4096)
            .collect()
    };
    // DS = 0: SCALE is bits [24:20]; bit 25 is RES0, so SCALE = 0b100001 means 2^1 granules.
    let mut r = ranged_rig(Profile::qemu_virt());
    assert_eq!(
        issue(
            &mut r,
            tlbi_range(cmd::TLBI_NH_VA, 5, 0x10_0000, 1, 0, 0b10_0001, 0)
        ),
        0
    );
    assert_eq!(left(&r), (2..16).collect::<Vec<_>>());
    // DS = 1: SCALE above 39 is treated as 39; (NUM + 1) << SCALE must not wrap to one page.
    for scale in [39u64, 59, 63] {
        let mut r = ranged_rig(ds_profile());
        assert_eq!(
            issue(
                &mut r,
                tlbi_range(cmd::TLBI_NH_VA, 5, 0x10_0000, 1, 31, scale, 0)
            ),
            0
        );
        assert_eq!(
            r.m.tlb_len(),
            0,
            "SCALE {scale} covers every entry above the base"
        );
    }
    // The largest DS = 0 range also reaches every entry.
    let mut r = ranged_rig(Profile::qemu_virt());
    issue(
        &mut r,
        tlbi_range(cmd::TLBI_NH_VA, 5, 0x10_0000, 1, 31, 31, 0),
    );
    assert_eq!(r.m.tlb_len(), 0);
}

// ------------------------------------------------------------------ 3. terminations

#[test]
fn substream_on_a_stage1_bypass_ste_is_c_bad_substreamid() {
    // spec: S3 (§5.2 S1ContextPtr, §3.9: Config = 0b1x0 with SSV = 1)
    let mut r = rig(Profile::mmu600());
    r.write_ste(1, ste_bypass());
    let mut w = ste_bypass();
    ste::CONFIG.set(&mut w, ste::CONFIG_S2);
    let s2 = r.new_root();
    add_s2(&mut w, 3, s2);
    r.write_ste(2, w);
    for sid in [1, 2] {
        let e = event(r.m.dma(Transaction::read(sid, 0x1000).with_ssid(3)));
        assert_eq!(e.id(), evt::C_BAD_SUBSTREAMID, "SID {sid}");
        assert_eq!(e.ssid(), Some(3));
    }
    assert_eq!(
        r.m.dma(Transaction::read(1, 0x1000)),
        TxnResult::Bypass { pa: 0x1000 }
    );
}

#[test]
fn ssid_zero_under_s1dss_substream0_is_stream_disabled() {
    // spec: T1 (§5.2 S1DSS = 0b10, §7.3.7)
    let mut r = rig(Profile::mmu600());
    let root = r.new_root();
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    let table = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(table, cd_s1(7, root));
    r.write_struct(table + 64, cd_s1(8, root));
    let mut w = ste_s1(table);
    ste::S1CDMAX.set(&mut w, 1);
    ste::S1DSS.set(&mut w, 0b10);
    r.write_ste(1, w);
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x1000))), page);
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, 0x1000).with_ssid(1))),
        page
    );
    let e = event(r.m.dma(Transaction::read(1, 0x1000).with_ssid(0)));
    assert_eq!(e.id(), evt::F_STREAM_DISABLED);
    assert_eq!(e.ssid(), Some(0));
}

#[test]
fn input_above_the_oas_through_bypass_aborts() {
    // spec: R15 (§3.4: bypass STE → F_ADDR_SIZE; SMMU disabled → abort without an event)
    let mut r = Rig::new(ModelConfig::default()); // OAS 44
    let above = 1u64 << 44;
    assert_eq!(
        r.m.dma(Transaction::read(1, above - 8)),
        TxnResult::Bypass { pa: above - 8 }
    );
    let (c, e) = fault(r.m.dma(Transaction::read(1, above)));
    assert_eq!(
        (c, e),
        (Cause::AddrSize, None),
        "GBPA bypass: abort, no event"
    );
    r.enable();
    r.write_ste(1, ste_bypass());
    let e = event(r.m.dma(Transaction::write(1, above)));
    assert_eq!(e.id(), evt::F_ADDR_SIZE);
    assert!(!e.s2());
    assert_eq!(e.class(), evt::CLASS_IN as u8);
    assert_eq!(e.input_addr(), above);
}

#[test]
fn stage1_bypassed_input_above_the_ias_is_a_stage1_addr_size_fault() {
    // spec: T1 (§3.4: checked against the IAS before stage 2; §7.3.14 S2 = 0, CLASS = IN)
    let mut r = rig(Profile::qemu_virt()); // IAS = OAS = 44
    let s2 = r.new_root();
    let mut w = ste_bypass();
    ste::CONFIG.set(&mut w, ste::CONFIG_S2);
    add_s2(&mut w, 3, s2);
    ste::S2T0SZ.set(&mut w, 25); // a 39-bit IPA space, starting at level 1
    ste::S2SL0.set(&mut w, 1);
    r.write_ste(1, w);
    let e = event(r.m.dma(Transaction::read(1, 1 << 44)));
    assert_eq!(e.id(), evt::F_ADDR_SIZE);
    assert!(!e.s2(), "stage 1 reports it");
    assert_eq!(e.class(), evt::CLASS_IN as u8);
    // Inside the IAS but outside stage 2's range: a stage-2 Translation fault.
    let e = event(r.m.dma(Transaction::read(1, 1 << 40)));
    assert_eq!(e.id(), evt::F_TRANSLATION);
    assert!(e.s2());
}

// ------------------------------------------------------------------ 4. latent legality gaps

#[test]
fn s2vmid_high_bits_without_vmid16_on_a_stage1_ste() {
    // spec: S3 (§5.2 S2VMID: used for NS-EL1 stage-1 tagging when S2P = 1)
    let vmid8 = Profile::qemu_virt().with(0, reg::IDR0_VMID16, 0);
    let m = smmu_model::Model::new(ModelConfig {
        profile: vmid8,
        ..ModelConfig::default()
    });
    let mut w = ste_s1(0x4000_0000);
    ste::S2VMID.set(&mut w, 0x100);
    assert!(!m.ste_is_legal(&w), "S2VMID[15:8] != 0 with 8-bit VMIDs");
    ste::S2VMID.set(&mut w, 0xFF);
    assert!(m.ste_is_legal(&w));
    // Without stage 2 the field is IGNORED.
    let s1only = Profile::qemu_virt()
        .with(0, reg::IDR0_VMID16, 0)
        .with(0, reg::IDR0_S2P, 0);
    let m = smmu_model::Model::new(ModelConfig {
        profile: s1only,
        ..ModelConfig::default()
    });
    ste::S2VMID.set(&mut w, 0x100);
    assert!(m.ste_is_legal(&w));
}

#[test]
fn vmsav8_64_formats_need_ttf_bit1() {
    // spec: S3, S4 (§5.2 S2AA64, §5.4 AA64)
    let aa32 = Profile::qemu_virt().with(0, reg::IDR0_TTF, 0b01);
    let m = smmu_model::Model::new(ModelConfig {
        profile: aa32,
        ..ModelConfig::default()
    });
    let mut w = ste_bypass();
    ste::CONFIG.set(&mut w, ste::CONFIG_S2);
    add_s2(&mut w, 1, 0x4000_0000);
    assert!(!m.ste_is_legal(&w));
    assert!(!m.cd_is_legal(&cd_s1(1, 0x4000_0000)));
    let m = smmu_model::Model::new(ModelConfig::default());
    assert!(m.ste_is_legal(&w));
    assert!(m.cd_is_legal(&cd_s1(1, 0x4000_0000)));
}

#[test]
fn small_tables_stop_at_47_for_64k() {
    // spec: S4 (§5.4 T0SZ with IDR3.STT: 48 for 4K/16K, 47 for 64K)
    let stt = Profile::qemu_virt().with(3, reg::IDR3_STT, 1);
    let m = smmu_model::Model::new(ModelConfig {
        profile: stt,
        ..ModelConfig::default()
    });
    let mut c = cd_s1(1, 0x4000_0000);
    for (tg, t0sz, legal) in [
        (0u64, 48u64, true),
        (2, 48, true),
        (1, 47, true),
        (1, 48, false),
    ] {
        cd::TG0.set(&mut c, tg);
        cd::T0SZ.set(&mut c, t0sz);
        assert_eq!(m.cd_is_legal(&c), legal, "TG0 {tg} T0SZ {t0sz}");
    }
}

#[test]
fn ssec_is_illegal_on_prefetch_resume_and_stall_term() {
    // spec: Q7 (§4.1.6: SSec = 1 on the Non-secure queue raises CERROR_ILL)
    for o in [
        cmd::PREFETCH_CFG,
        cmd::PREFETCH_ADDR,
        cmd::RESUME,
        cmd::STALL_TERM,
    ] {
        // MMU-600 has the stall model, so RESUME and STALL_TERM are otherwise legal.
        let mut r = rig(Profile::mmu600());
        assert_eq!(issue(&mut r, op(o)), 0, "opcode {o:#x} with SSec = 0");
        let mut w = op(o);
        cmd::SSEC.set(&mut w, 1);
        assert_eq!(
            issue(&mut r, w),
            cmd::CERROR_ILL,
            "opcode {o:#x} with SSec = 1"
        );
    }
}

// ------------------------------------------------------------------ 5. E2H

#[test]
fn e2h_decides_the_el2_streamworld() {
    // spec: S4 (§5.2 STRW with CR2.E2H; §5.4 EPD0/EPD1, TTB1 and ASID under NS-EL2)
    let mut r = rig(Profile::grace()); // HYP; Rig leaves CR2.E2H = 0
    let root = r.new_root();
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    // A CD written for NS-EL2: TTB1 fields RES0 (so TG1 = 0), EPD1 = 0, and EPD0 = 1, which
    // NS-EL2 ignores (its effective value is 0).
    let mut c = cd_s1(9, root);
    cd::EPD1.set(&mut c, 0);
    cd::EPD0.set(&mut c, 1);
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cdpa, c);
    let mut w = ste_s1(cdpa);
    ste::STRW.set(&mut w, 0b10);
    r.write_ste(1, w);
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x1000))), page);
    let snap = r.m.tlb_snapshot();
    assert_eq!(snap.len(), 1);
    assert!(snap[0].el2);
    assert_eq!(snap[0].asid, None, "NS-EL2 entries carry no ASID");
    // One VA range: an upper-range address is not translated through TTB1.
    let e = event(r.m.dma(Transaction::read(1, 0xFFFF_0000_0000_1000)));
    assert_eq!(e.id(), evt::F_TRANSLATION);

    // The same CD under NS-EL2-E2H: EPD0 = 1 and TTB1 enabled with TG1 = 0 is ILLEGAL.
    let mut r = Rig::new(ModelConfig {
        profile: Profile::grace(),
        ..ModelConfig::default()
    });
    r.init();
    r.m.write32(reg::CR2, reg::CR2_RECINVSID | reg::CR2_E2H);
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    let root = r.new_root();
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    let mut c2 = cd_s1(9, root);
    cd::EPD1.set(&mut c2, 0);
    cd::EPD0.set(&mut c2, 1);
    r.write_struct(cdpa, c2);
    let mut w = ste_s1(cdpa);
    ste::STRW.set(&mut w, 0b10);
    r.write_ste(1, w);
    let e = event(r.m.dma(Transaction::read(1, 0x1000)));
    assert_eq!(e.id(), evt::C_BAD_CD);
}

// ------------------------------------------------------------------ 6. record fields

#[test]
fn stage2_permission_fault_on_a_table_read_sets_ttrnw() {
    // spec: T1 (§7.3.16 TTRnW, CLASS = TT)
    let mut r = rig(Profile::qemu_virt());
    let (s2, root) = (r.new_root(), r.new_root());
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cdpa, cd_s1(5, root));
    // The CD is readable at stage 2 (identity); the stage-1 root table is write-only there.
    r.map_g(s2, 12, 44, cdpa, cdpa, 3, S2_FLAGS);
    r.map_g(s2, 12, 44, root, root, 3, S2_FLAGS & !pte::AP1);
    let mut w = ste_s1(cdpa);
    ste::CONFIG.set(&mut w, ste::CONFIG_NESTED);
    add_s2(&mut w, 3, s2);
    r.write_ste(1, w);
    let e = event(r.m.dma(Transaction::write(1, 0x1000)));
    assert_eq!(e.id(), evt::F_PERMISSION);
    assert!(e.s2());
    assert_eq!(e.class(), evt::CLASS_TT as u8);
    assert_eq!(evt::TTRNW.get(&e.raw), 1, "a descriptor read faulted");
    assert_eq!(e.ipa(), root, "IPA is the stage-1 descriptor's");
}

#[test]
fn ind_is_zero_for_writes() {
    // spec: T1 (§7.3.13: InD == 0 when RnW == 0)
    let mut r = rig(Profile::qemu_virt());
    r.s1_stream(1, 5);
    let t = Transaction {
        instruction: true,
        ..Transaction::write(1, 0x5000)
    };
    let e = event(r.m.dma(t));
    assert!(!e.rnw());
    assert_eq!(evt::IND.get(&e.raw), 0);
    let t = Transaction {
        instruction: true,
        ..Transaction::read(1, 0x5000)
    };
    assert_eq!(evt::IND.get(&event(r.m.dma(t)).raw), 1);
}

#[test]
fn only_priq_irq_cfg2_has_lo() {
    // spec: R17 (§6.3.23, §6.3.32: bit 31 RES0; §6.3.36 PRIQ_IRQ_CFG2.LO)
    let mut m = smmu_model::Model::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    for (off, want) in [
        (reg::GERROR_IRQ_CFG2, 0x35),
        (reg::EVTQ_IRQ_CFG2, 0x35),
        (reg::PRIQ_IRQ_CFG2, 0x8000_0035),
    ] {
        m.write32(off, 0x8000_0035);
        assert_eq!(m.read32(off), want, "offset {off:#x}");
    }
    assert!(m.violations().is_empty());
}

// ------------------------------------------------------------------ 7. caches and the EVTQ MSI

#[test]
fn l1cd_descriptors_are_cached_until_cfgi_cd_leaf0() {
    // spec: S10 (§4.3.3 CFGI_CD: Leaf = 0 also invalidates the L1CD; §5.3)
    let mut r = rig(Profile::mmu600());
    let (root_a, root_b) = (r.new_root(), r.new_root());
    let (a, b) = (
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
    );
    r.map(root_a, 0x1000, a, PT_FLAGS);
    r.map(root_b, 0x1000, b, PT_FLAGS);
    // 2-level CD table, 64 CDs per leaf (S1FMT = 1): SSID 70 is L1CD[1], CD 6 of its leaf.
    let l1 = r.m.alloc_pages(1, 4096).unwrap();
    let (leaf_a, leaf_b) = (
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
    );
    r.write_struct(leaf_a + 64 * 6, cd_s1(11, root_a));
    r.write_struct(leaf_b + 64 * 6, cd_s1(12, root_b));
    r.m.write_u64(l1 + 8, leaf_a | 1).unwrap();
    let mut w = ste_s1(l1);
    ste::S1FMT.set(&mut w, 1);
    ste::S1CDMAX.set(&mut w, 8);
    r.write_ste(1, w);
    let t = Transaction::read(1, 0x1000).with_ssid(70);
    assert_eq!(translated(r.m.dma(t)), a);
    assert_eq!(r.m.cached_l1cd(1, 70), Some(leaf_a | 1));
    // Repoint the L1CD; a leaf-only CFGI_CD refetches the CD through the cached L1CD.
    r.m.write_u64(l1 + 8, leaf_b | 1).unwrap();
    r.cmd(cfgi_cd(1, 70));
    r.sync();
    r.cmd(tlbi_nh_asid(11));
    r.sync();
    assert_eq!(translated(r.m.dma(t)), a, "stale L1CD still in use");
    let mut c = cfgi_cd(1, 70);
    cmd::LEAF.set(&mut c, 0);
    r.cmd(c);
    r.sync();
    assert_eq!(translated(r.m.dma(t)), b);
    assert_eq!(r.m.cached_l1cd(1, 70), Some(leaf_b | 1));
    // CFGI_STE drops the stream's L1CDs too (§4.3.1).
    r.cfgi_ste(1);
    assert_eq!(r.m.cached_l1cd(1, 70), None);
}

#[test]
fn reserved_split_behaves_as_6() {
    // spec: R13 (§6.3.25 SPLIT: other values are reserved and behave as 6)
    let mut r = Rig::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    r.init();
    let l1 = r.m.alloc_pages(1, 4096).unwrap();
    let l2 = r.m.alloc_pages(1, 4096).unwrap();
    // SID 64 is L1STD[1], STE 0 of its leaf when SPLIT is 6 (it would be L1STD[0] with 7).
    r.m.write_u64(l1 + 8, l2 | 7).unwrap();
    r.write_struct(l2, ste_bypass());
    r.m.write32(reg::STRTAB_BASE_CFG, (1 << 16) | (7 << 6) | 0xC); // FMT 2-level, SPLIT 7, LOG2SIZE 12
    r.m.write64(reg::STRTAB_BASE, l1);
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    assert_eq!(
        r.m.dma(Transaction::read(64, 0x1000)),
        TxnResult::Bypass { pa: 0x1000 }
    );
    assert_eq!(r.m.cached_l1std(1), Some(l2 | 7));
    assert_eq!(
        r.m.read32(reg::STRTAB_BASE_CFG) >> 6 & 0x1F,
        7,
        "reads back as written"
    );
}

#[test]
fn event_queue_msi_is_written_and_its_abort_is_reported() {
    // spec: Q15, R17 (§3.18: EVENTQ_IRQ_CFG0/1 MSI on empty → non-empty; §7.2 MSI_EVTQ_ABT_ERR)
    let mut r = rig(Profile::mmu600());
    let msi = r.m.alloc_pages(1, 4096).unwrap();
    r.m.write64(reg::EVTQ_IRQ_CFG0, msi + 0x40);
    r.m.write32(reg::EVTQ_IRQ_CFG1, 0xC0DE);
    r.m.write32(reg::IRQ_CTRL, reg::IRQ_EVTQ);
    r.poll(reg::IRQ_CTRLACK, reg::IRQ_EVTQ, reg::IRQ_EVTQ);
    r.s1_stream(1, 5);
    r.m.dma(Transaction::read(1, 0x5000)); // F_TRANSLATION
    r.m.dma(Transaction::read(1, 0x6000)); // queue not empty: no second MSI
    assert_eq!(r.m.signals().msi_writes, vec![(msi + 0x40, 0xC0DE)]);
    assert_eq!(r.m.read_u64(msi + 0x40).unwrap() & 0xFFFF_FFFF, 0xC0DE);
    // Drain, then make the MSI target abort: the next edge raises MSI_EVTQ_ABT_ERR.
    let prod = r.m.read32(reg::EVTQ_PROD);
    r.m.write32(reg::EVTQ_CONS, prod);
    r.m.inject_write_fault(msi, 4096);
    r.m.dma(Transaction::read(1, 0x7000));
    assert_ne!(
        r.m.read32(reg::GERROR) & reg::GERROR_MSI_EVTQ_ABT_ERR,
        0,
        "MSI write abort reported"
    );
    assert_eq!(r.m.signals().msi_writes.len(), 1);
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
}

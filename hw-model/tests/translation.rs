//! Translation and TLB rows T1–T9 of model-conformance.md §2.4.
mod common;
use common::*;
use smmu_model::fields::{cd, cmd, evt, pte, reg, ste};
use smmu_model::{
    CachePolicy, Cause, Event, Eviction, ModelConfig, PowerOn, Profile, Transaction, TxnResult,
};

const S2_FLAGS: u64 = pte::VALID | pte::TABLE | pte::AF | pte::AP1 | pte::AP2 | (3 << 8);
const RO: u64 = PT_FLAGS | pte::AP2;

fn fault(r: TxnResult) -> (Cause, Option<Event>) {
    match r {
        TxnResult::Abort { cause, event } => (cause, event),
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn s1_rig() -> (Rig, u64, u64) {
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let (cdpa, root) = r.s1_stream(1, 5);
    r.cfgi_ste(1);
    (r, cdpa, root)
}

#[test]
fn t1_stage1_4k_walk_and_faults() {
    // spec: T1
    let (mut r, _, root) = s1_rig();
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x7F12_3456_7000, page, PT_FLAGS);
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, 0x7F12_3456_7ABC))),
        page + 0xABC
    );
    // Translation fault (unmapped).
    let (c, e) = fault(r.m.dma(Transaction::read(1, 0x5000)));
    assert_eq!(c, Cause::Translation);
    let e = e.unwrap();
    assert_eq!(
        (e.id(), e.s2(), e.input_addr(), e.rnw()),
        (evt::F_TRANSLATION, false, 0x5000, true)
    );
    // Access flag fault.
    r.map(root, 0x6000, page, PT_FLAGS & !pte::AF);
    assert_eq!(
        fault(r.m.dma(Transaction::read(1, 0x6000))).0,
        Cause::Access
    );
    // Permission fault: write to a read-only page.
    r.map(root, 0x7000, page, RO);
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x7000))), page);
    assert_eq!(
        fault(r.m.dma(Transaction::write(1, 0x7000))).0,
        Cause::Permission
    );
    // Address size: output above IPS (44 bits).
    r.map(root, 0x8000, 1 << 44, PT_FLAGS);
    assert_eq!(
        fault(r.m.dma(Transaction::read(1, 0x8000))).0,
        Cause::AddrSize
    );
    // Address size on a *table* address (QEMU does not check).
    let d0 = root + 8 * ((0x0000_8000_0000_0000u64 >> 39) & 511);
    r.m.write_u64(d0, (1 << 44) | 3).unwrap();
    assert_eq!(
        fault(r.m.dma(Transaction::read(1, 0x0000_8000_0000_0000))).0,
        Cause::AddrSize
    );
    // Level-0 block with a 4K granule is invalid (QEMU accepts it).
    let d0b = root + 8 * ((0x0000_C000_0000_0000u64 >> 39) & 511);
    r.m.write_u64(d0b, page | pte::VALID | pte::AF).unwrap();
    assert_eq!(
        fault(r.m.dma(Transaction::read(1, 0x0000_C000_0000_0000))).0,
        Cause::Translation
    );
    // External abort on a table fetch.
    let va = 0x4000_0000_0000u64;
    r.map(root, va, page, PT_FLAGS);
    let l1 = r.m.read_u64(root + 8 * ((va >> 39) & 511)).unwrap() & pte::OA_MASK;
    r.m.inject_fetch_fault(l1, 4096);
    let (c, e) = fault(r.m.dma(Transaction::read(1, va)));
    assert_eq!(c, Cause::WalkEabt);
    assert_eq!(e.unwrap().fetch_addr(), l1 + 8 * ((va >> 30) & 511));
}

#[test]
fn t1_stage1_16k_and_64k_granules_with_blocks() {
    // spec: T1
    for (gran, tg0, tsz) in [(14u32, 2u64, 28u64), (16, 1, 22)] {
        let mut r = Rig::new(ModelConfig::default());
        r.enable();
        let root = r.new_root_g(gran);
        let cdpa = r.m.alloc_pages(1, 4096).unwrap();
        let mut w = cd_s1(9, root);
        cd::TG0.set(&mut w, tg0);
        cd::T0SZ.set(&mut w, tsz);
        r.write_struct(cdpa, w);
        r.write_ste(2, ste_s1(cdpa));
        let page = r.m.alloc_pages((1u64 << gran) / 4096, 1 << gran).unwrap();
        let ia = 64 - tsz as u32;
        r.map_g(root, gran, ia, 0x3 << gran, page, 3, PT_FLAGS);
        assert_eq!(
            translated(r.m.dma(Transaction::read(2, (0x3 << gran) + 0x18))),
            page + 0x18,
            "gran {gran}"
        );
        // A level-2 block (32 MiB for 16K, 512 MiB for 64K).
        let bshift = gran + (gran - 3);
        let blk_pa = 0x4000_0000u64 & !((1u64 << bshift) - 1);
        r.map_g(root, gran, ia, 1 << (bshift + 1), blk_pa, 2, PT_FLAGS);
        assert_eq!(
            translated(r.m.dma(Transaction::read(2, (1 << (bshift + 1)) + 0x1234))),
            blk_pa + 0x1234
        );
    }
}

#[test]
fn t1_stage2_16k_and_64k_granules() {
    // spec: T1
    for (gran, tg, t0sz) in [(14u32, 2u64, 28u64), (16, 1, 22)] {
        let mut r = Rig::new(ModelConfig::default());
        r.enable();
        let s2 = r.new_root_g(gran);
        let mut w = ste_bypass();
        ste::CONFIG.set(&mut w, ste::CONFIG_S2);
        add_s2(&mut w, 4, s2);
        ste::S2TG.set(&mut w, tg);
        ste::S2T0SZ.set(&mut w, t0sz);
        ste::S2SL0.set(&mut w, 1);
        assert!(r.m.ste_is_legal(&w), "gran {gran}");
        r.write_ste(3, w);
        let page = r.m.alloc_pages((1u64 << gran) / 4096, 1 << gran).unwrap();
        let ipa = 5u64 << gran;
        r.map_g(s2, gran, 64 - t0sz as u32, ipa, page, 3, S2_FLAGS);
        assert_eq!(
            translated(r.m.dma(Transaction::write(3, ipa + 0x40))),
            page + 0x40,
            "gran {gran}"
        );
        // Read-only at stage 2: a write faults with S2 = 1.
        r.map_g(
            s2,
            gran,
            64 - t0sz as u32,
            ipa * 2,
            page,
            3,
            S2_FLAGS & !pte::AP2,
        );
        let e = fault(r.m.dma(Transaction::write(3, ipa * 2))).1.unwrap();
        assert_eq!(
            (e.id(), e.s2(), e.ipa()),
            (evt::F_PERMISSION, true, ipa * 2)
        );
        // An IPA beyond S2T0SZ: stage-2 translation fault.
        let e = fault(r.m.dma(Transaction::read(3, 1 << (64 - t0sz))))
            .1
            .unwrap();
        assert_eq!((e.id(), e.s2()), (evt::F_TRANSLATION, true));
        // Start level inconsistent with T0SZ (SL0 = 2 for a small IPA): ILLEGAL.
        ste::S2SL0.set(&mut w, 2);
        ste::S2T0SZ.set(&mut w, 39);
        assert!(!r.m.ste_is_legal(&w));
    }
}

fn nested_rig(combined: bool) -> (Rig, u64, u64, u64) {
    let cache = CachePolicy {
        combined_tlb: combined,
        ..CachePolicy::default()
    };
    let mut r = Rig::new(ModelConfig {
        cache,
        ..ModelConfig::default()
    });
    r.enable();
    let s2 = r.new_root();
    for blk in 0..32u64 {
        let a = 0x4000_0000 + blk * 0x20_0000;
        r.map_g(s2, 12, 44, a, a, 2, S2_FLAGS);
    }
    let root = r.new_root();
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cdpa, cd_s1(5, root));
    let mut w = ste_s1(cdpa);
    ste::CONFIG.set(&mut w, ste::CONFIG_NESTED);
    add_s2(&mut w, 3, s2);
    r.write_ste(4, w);
    (r, s2, root, cdpa)
}

#[test]
fn t1_nested_walk_and_fault_classes() {
    // spec: T1
    let (mut r, s2, root, _) = nested_rig(true);
    let data = r.m.alloc_pages(1, 4096).unwrap();
    let ipa = 0x800_0000_0000u64;
    r.map(root, 0x1000, ipa, PT_FLAGS);
    r.map_g(s2, 12, 44, ipa, data, 3, S2_FLAGS);
    assert_eq!(
        translated(r.m.dma(Transaction::read(4, 0x1010))),
        data + 0x10
    );
    // Stage-2 fault on the output IPA: S2 = 1, CLASS = IN, IPA reported.
    r.map(root, 0x2000, ipa + 0x1000, PT_FLAGS);
    let e = fault(r.m.dma(Transaction::read(4, 0x2000))).1.unwrap();
    assert_eq!(
        (e.id(), e.s2(), e.class(), e.ipa()),
        (evt::F_TRANSLATION, true, 2, ipa + 0x1000)
    );
    // Stage-2 fault on a stage-1 table fetch: CLASS = TT.
    let cd2 = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cd2, cd_s1(6, 0x900_0000_0000));
    let mut w = ste_s1(cd2);
    ste::CONFIG.set(&mut w, ste::CONFIG_NESTED);
    add_s2(&mut w, 3, s2);
    r.write_ste(5, w);
    let e = fault(r.m.dma(Transaction::read(5, 0x1000))).1.unwrap();
    assert_eq!((e.s2(), e.class()), (true, 1));
    // Stage-2 fault on the CD fetch: CLASS = CD.
    let mut w = ste_s1(0xA00_0000_0000);
    ste::CONFIG.set(&mut w, ste::CONFIG_NESTED);
    add_s2(&mut w, 3, s2);
    r.write_ste(6, w);
    let e = fault(r.m.dma(Transaction::read(6, 0x1000))).1.unwrap();
    assert_eq!((e.s2(), e.class()), (true, 0));
    // Stage-2 only stream: the IOVA is an IPA.
    let mut w = ste_bypass();
    ste::CONFIG.set(&mut w, ste::CONFIG_S2);
    add_s2(&mut w, 3, s2);
    r.write_ste(7, w);
    assert_eq!(
        translated(r.m.dma(Transaction::write(7, ipa + 8))),
        data + 8
    );
}

#[test]
fn t2_tbi_per_region() {
    // spec: T2
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let (root0, root1) = (r.new_root(), r.new_root());
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    let mut w = cd_s1(5, root0);
    cd::EPD1.set(&mut w, 0);
    cd::T1SZ.set(&mut w, 16);
    cd::TG1.set(&mut w, 2);
    cd::TTB1.set(&mut w, root1 >> 4);
    cd::TBI1.set(&mut w, 1);
    r.write_struct(cdpa, w);
    r.write_ste(1, ste_s1(cdpa));
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root1, 0xFFFF_8000_0000_1000, page, PT_FLAGS);
    r.map(root0, 0x1000, page, PT_FLAGS);
    // Tagged TTB1 address: TBI1 = 1, so it translates (QEMU evaluates TBI0 here and faults).
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, 0x5AFF_8000_0000_1008))),
        page + 8
    );
    // Tagged TTB0 address with TBI0 = 0: translation fault.
    assert_eq!(
        fault(r.m.dma(Transaction::read(1, 0x5A00_0000_0000_1008))).0,
        Cause::Translation
    );
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x1008))), page + 8);
}

#[test]
fn t3_privilege_and_execute_permissions() {
    // spec: T3
    let (mut r, _, root) = s1_rig();
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS); // AP[1] = 0: privileged only
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x1000))), page);
    let (c, e) = fault(r.m.dma(Transaction::read(1, 0x1000).unprivileged()));
    assert_eq!(
        c,
        Cause::Permission,
        "QEMU treats every access as privileged"
    );
    assert!(!e.unwrap().pnu());
    r.map(root, 0x2000, page, PT_FLAGS | pte::AP1);
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, 0x2000).unprivileged())),
        page
    );
    r.map(root, 0x3000, page, PT_FLAGS | pte::PXN);
    let mut t = Transaction::read(1, 0x3000);
    t.instruction = true;
    assert_eq!(fault(r.m.dma(t)).0, Cause::Permission, "PXN");
}

#[test]
fn t4_walk_cache_survives_leaf_tlbi() {
    // spec: T4
    let (mut r, _, root) = s1_rig();
    let (old, new) = (
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
    );
    let va = 0x20_0000u64;
    r.map(root, va, old, PT_FLAGS);
    assert_eq!(translated(r.m.dma(Transaction::read(1, va))), old);
    // Replace the level-3 table (as after freeing it) by a new one mapping `new`.
    let l0 = r.m.read_u64(root).unwrap() & pte::OA_MASK;
    let l1 = r.m.read_u64(l0).unwrap() & pte::OA_MASK;
    let l2d = l1 + 8;
    let l3new = r.m.alloc_pages(1, 4096).unwrap();
    r.m.write_u64(l3new, new | PT_FLAGS).unwrap();
    r.m.write_u64(l2d, l3new | 3).unwrap();
    r.cmd(tlbi_nh_va(5, va, true));
    r.sync();
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, va))),
        old,
        "Leaf = 1 keeps the walk-cache entry: stale table used"
    );
    r.cmd(tlbi_nh_va(5, va, false));
    r.sync();
    assert_eq!(translated(r.m.dma(Transaction::read(1, va))), new);
}

fn ranged_rig() -> (Rig, u64) {
    let mut r = Rig::new(ModelConfig {
        profile: Profile::grace(),
        ..ModelConfig::default()
    });
    r.enable();
    let (_, root) = r.s1_stream(1, 5);
    r.cfgi_ste(1);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    for i in 0..16u64 {
        r.map(root, 0x10_0000 + i * 4096, page, PT_FLAGS);
        r.m.dma(Transaction::read(1, 0x10_0000 + i * 4096));
    }
    (r, page)
}

#[test]
fn t5_range_tlbi_removes_exactly_the_overlap() {
    // spec: T5
    for (num, scale, start) in [
        (0u64, 0u64, 3u64),
        (3, 0, 2),
        (1, 1, 4),
        (0, 2, 8),
        (31, 0, 0),
    ] {
        let (mut r, _) = ranged_rig();
        assert_eq!(r.m.tlb_len(), 16);
        // A one-granule range needs a TTL hint: NUM = SCALE = TTL = 0 with TG != 0 is
        // Reserved (§4.4.1.1, see spec_review::range_tlbi_reserved_encodings_are_illegal).
        let ttl = if num == 0 && scale == 0 { 3 } else { 0 };
        r.cmd(tlbi_range(
            cmd::TLBI_NH_VA,
            5,
            0x10_0000 + start * 4096,
            1,
            num,
            scale,
            ttl,
        ));
        r.sync();
        let n = (num + 1) << scale;
        let gone: Vec<u64> = (0..16).filter(|i| *i >= start && *i < start + n).collect();
        let left: Vec<u64> =
            r.m.tlb_snapshot()
                .iter()
                .map(|t| (t.va - 0x10_0000) / 4096)
                .collect();
        let expect: Vec<u64> = (0..16).filter(|i| !gone.contains(i)).collect();
        assert_eq!(left, expect, "NUM {num} SCALE {scale}");
    }
    // A TTL hint that does not match the entries' level leaves them (hostile but allowed).
    let (mut r, _) = ranged_rig();
    r.cmd(tlbi_range(cmd::TLBI_NH_VA, 5, 0x10_0000, 1, 15, 0, 2));
    r.sync();
    assert_eq!(r.m.tlb_len(), 16);
    // TLBI_NH_VAA ignores the ASID.
    r.cmd(tlbi_range(cmd::TLBI_NH_VAA, 77, 0x10_0000, 1, 15, 0, 3));
    r.sync();
    assert_eq!(r.m.tlb_len(), 0);
}

#[test]
fn t6_combined_entries_survive_s2_ipa() {
    // spec: T6
    for combined in [true, false] {
        let (mut r, s2, root, _) = nested_rig(combined);
        let (a, b) = (
            r.m.alloc_pages(1, 4096).unwrap(),
            r.m.alloc_pages(1, 4096).unwrap(),
        );
        let ipa = 0x800_0000_0000u64;
        r.map(root, 0x1000, ipa, PT_FLAGS);
        r.map_g(s2, 12, 44, ipa, a, 3, S2_FLAGS);
        assert_eq!(translated(r.m.dma(Transaction::read(4, 0x1000))), a);
        r.map_g(s2, 12, 44, ipa, b, 3, S2_FLAGS);
        let mut w = op(cmd::TLBI_S2_IPA);
        cmd::VMID.set(&mut w, 3);
        cmd::ADDR.set(&mut w, ipa >> 12);
        cmd::LEAF.set(&mut w, 1);
        r.cmd(w);
        r.sync();
        let got = translated(r.m.dma(Transaction::read(4, 0x1000)));
        assert_eq!(got, if combined { a } else { b }, "combined = {combined}");
        let mut w = op(cmd::TLBI_S12_VMALL);
        cmd::VMID.set(&mut w, 3);
        r.cmd(w);
        r.sync();
        assert_eq!(translated(r.m.dma(Transaction::read(4, 0x1000))), b);
    }
}

/// §4.4.2: `TLBI_NH_*` match the command's VMID. A nested entry is tagged with its STE's
/// S2VMID (3 here), so a stage-1 invalidation sent with VMID 0 — what a driver that treats a
/// nested domain as a stage-1 one sends — leaves it, and the same command with VMID 3 removes
/// it.
#[test]
fn t6_nested_entries_need_the_vmid_in_stage1_invalidations() {
    // spec: T6
    let (mut r, s2, root, _) = nested_rig(true);
    let data = r.m.alloc_pages(1, 4096).unwrap();
    let ipa = 0x800_0000_0000u64;
    r.map(root, 0x1000, ipa, PT_FLAGS);
    r.map_g(s2, 12, 44, ipa, data, 3, S2_FLAGS);
    assert_eq!(translated(r.m.dma(Transaction::read(4, 0x1000))), data);
    // The guest unmaps its stage-1 page.
    r.map(root, 0x1000, 0, 0);
    for vmid in [0u64, 3] {
        let mut w = tlbi_nh_va(5, 0x1000, true);
        cmd::VMID.set(&mut w, vmid);
        r.cmd(w);
        r.sync();
        let still = r.m.dma(Transaction::read(4, 0x1000)).pa().is_some();
        assert_eq!(still, vmid == 0, "after TLBI_NH_VA with VMID {vmid}");
    }
}

#[test]
fn t7_no_cache_fills_while_disabled() {
    // spec: T7
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    r.write_ste(1, ste_bypass());
    r.m.dma(Transaction::read(1, 0));
    assert!(r.m.cached_ste(1).is_none());
    assert_eq!(r.m.tlb_len(), 0);
    // Enabled: cached; disabled again: a CFGI still works.
    r.set_cr0(0b1101);
    r.m.dma(Transaction::read(1, 0));
    assert!(r.m.cached_ste(1).is_some());
    r.set_cr0(0b1100);
    r.cfgi_ste(1);
    assert!(
        r.m.cached_ste(1).is_none(),
        "maintenance works while SMMUEN = 0"
    );
}

#[test]
fn t8_seeded_power_on_caches_need_invalidation() {
    // spec: T8
    let cache = CachePolicy {
        power_on: PowerOn::Stale {
            sids: vec![1],
            asids: vec![5],
            iovas: vec![0x1000],
        },
        ..CachePolicy::default()
    };
    let mut r = Rig::new(ModelConfig {
        cache: cache.clone(),
        ..ModelConfig::default()
    });
    // A driver that enables without CFGI_ALL: the stale bypass STE is used.
    r.write_ste(1, ste_abort());
    r.m.write64(smmu_model::fields::reg::STRTAB_BASE, r.strtab);
    r.m.write32(smmu_model::fields::reg::STRTAB_BASE_CFG, 8);
    r.set_cr0(1);
    assert!(
        matches!(
            r.m.dma(Transaction::read(1, 0x1000)),
            TxnResult::Bypass { .. }
        ),
        "QEMU starts empty"
    );
    // The Rig's init does CFGI_ALL + TLBI_NSNH_ALL: correct.
    let mut r = Rig::new(ModelConfig {
        cache,
        ..ModelConfig::default()
    });
    r.enable();
    r.write_ste(1, ste_abort());
    assert_eq!(
        fault(r.m.dma(Transaction::read(1, 0x1000))).0,
        Cause::SteAbort
    );
    assert_eq!(r.m.tlb_len(), 0);
}

#[test]
fn t9_no_spontaneous_eviction_and_determinism() {
    // spec: T9
    let (mut r, _, root) = s1_rig();
    let (a, b) = (
        r.m.alloc_pages(1, 4096).unwrap(),
        r.m.alloc_pages(1, 4096).unwrap(),
    );
    for i in 0..300u64 {
        r.map(root, 0x100_0000 + i * 4096, a, PT_FLAGS);
        r.m.dma(Transaction::read(1, 0x100_0000 + i * 4096));
    }
    r.map(root, 0x100_0000, b, PT_FLAGS);
    // QEMU flushes its whole TLB at 256 entries and would now return `b`.
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, 0x100_0000))),
        a,
        "stale entry still there"
    );
    // Seeded-random eviction is reproducible.
    let run = || {
        let cache = CachePolicy {
            tlb_capacity: 8,
            eviction: Eviction::Random,
            ..CachePolicy::default()
        };
        let mut r = Rig::new(ModelConfig {
            cache,
            seed: 42,
            ..ModelConfig::default()
        });
        r.enable();
        let (_, root) = r.s1_stream(1, 5);
        r.cfgi_ste(1);
        let page = r.m.alloc_pages(1, 4096).unwrap();
        for i in 0..32u64 {
            r.map(root, i * 4096, page, PT_FLAGS);
            r.m.dma(Transaction::read(1, i * 4096));
        }
        r.m.tlb_snapshot()
    };
    let (x, y) = (run(), run());
    assert_eq!(x.len(), 8);
    assert_eq!(x, y);
}

#[test]
fn t1_substreams_two_level_cd_table_and_s1dss() {
    // spec: T1
    let mut r = Rig::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    r.enable();
    let root = r.new_root();
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    // L1 CD table (S1Fmt = 1: 4K leaves of 64 CDs), S1CDMax = 8.
    let l1 = r.m.alloc_pages(1, 4096).unwrap();
    let leaf0 = r.m.alloc_pages(1, 4096).unwrap();
    let leaf1 = r.m.alloc_pages(1, 4096).unwrap();
    r.m.write_u64(l1, leaf0 | 1).unwrap();
    r.m.write_u64(l1 + 8, leaf1 | 1).unwrap();
    r.write_struct(leaf0, cd_s1(10, root)); // SSID 0
    r.write_struct(leaf1 + 64 * 6, cd_s1(11, root)); // SSID 70
    let mut w = ste_s1(l1);
    ste::S1FMT.set(&mut w, 1);
    ste::S1CDMAX.set(&mut w, 8);
    ste::S1DSS.set(&mut w, 0b10); // no SSID: use CD 0
    r.write_ste(1, w);
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, 0x1000).with_ssid(70))),
        page
    );
    assert_eq!(translated(r.m.dma(Transaction::read(1, 0x1000))), page);
    assert!(r.m.cached_cd(1, 70).is_some());
    // SSID beyond 2^S1CDMax, and an invalid L1CD: C_BAD_SUBSTREAMID.
    let e = fault(r.m.dma(Transaction::read(1, 0x1000).with_ssid(256)))
        .1
        .unwrap();
    assert_eq!(e.id(), evt::C_BAD_SUBSTREAMID);
    let e = fault(r.m.dma(Transaction::read(1, 0x1000).with_ssid(200)))
        .1
        .unwrap();
    assert_eq!(e.id(), evt::C_BAD_SUBSTREAMID);
    // S1DSS = terminate: no SSID gives F_STREAM_DISABLED; bypass: untranslated.
    ste::S1DSS.set(&mut w, 0);
    r.write_ste(2, w);
    assert_eq!(
        fault(r.m.dma(Transaction::read(2, 0x1000))).0,
        Cause::StreamDisabled
    );
    ste::S1DSS.set(&mut w, 1);
    r.write_ste(3, w);
    assert_eq!(
        r.m.dma(Transaction::read(3, 0x1000)),
        TxnResult::Translated { pa: 0x1000 }
    );
}

#[test]
fn t4_el2_streamworld_tagging_and_asid_scopes() {
    // spec: T4
    let mut r = Rig::new(ModelConfig {
        profile: Profile::grace(),
        ..ModelConfig::default()
    });
    // NS-EL2-E2H (CR2.E2H = 1): entries are ASID-tagged (§5.4 ASID). Without E2H they are
    // not (spec_review::e2h_decides_the_el2_streamworld).
    r.init();
    r.m.write32(reg::CR2, reg::CR2_RECINVSID | reg::CR2_E2H);
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    let (cdpa, root) = r.s1_stream(1, 5);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x1000, page, PT_FLAGS);
    r.map(root, 0x2000, page, PT_FLAGS & !pte::NG); // a global entry
    let mut w = ste_s1(cdpa);
    ste::STRW.set(&mut w, 0b10);
    r.write_ste(2, w);
    r.m.dma(Transaction::read(2, 0x1000));
    r.m.dma(Transaction::read(2, 0x2000));
    r.m.dma(Transaction::read(1, 0x1000));
    let snap = r.m.tlb_snapshot();
    assert_eq!(snap.iter().filter(|t| t.el2).count(), 2);
    // NH (EL1) invalidation leaves EL2 entries; EL2 by ASID leaves the global one.
    r.cmd(op(cmd::TLBI_NH_ALL));
    r.sync();
    assert_eq!(r.m.tlb_len(), 2);
    let mut a = op(cmd::TLBI_EL2_ASID);
    cmd::ASID.set(&mut a, 5);
    r.cmd(a);
    r.sync();
    let snap = r.m.tlb_snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].asid, None, "global entries survive TLBI by ASID");
    r.cmd(op(cmd::TLBI_EL2_ALL));
    r.sync();
    assert_eq!(r.m.tlb_len(), 0);
    // Without HYP, STRW is IGNORED (StreamWorld NS-EL1): legal, and EL1-tagged.
    let q = smmu_model::Model::new(ModelConfig::default());
    assert!(q.ste_is_legal(&w));
    // With HYP, the reserved STRW values are ILLEGAL; with stage 2 enabled STRW is ignored.
    ste::STRW.set(&mut w, 0b01);
    assert!(!r.m.ste_is_legal(&w));
    ste::CONFIG.set(&mut w, ste::CONFIG_NESTED);
    add_s2(&mut w, 1, 0x4000_0000);
    assert!(r.m.ste_is_legal(&w));
}

#[test]
fn t3_stage2_permissions_without_a_tlb() {
    // spec: T3
    let cache = CachePolicy {
        tlb_capacity: 0,
        walk_cache: false,
        ..CachePolicy::default()
    };
    let mut r = Rig::new(ModelConfig {
        cache,
        ..ModelConfig::default()
    });
    r.enable();
    let s2 = r.new_root();
    for blk in 0..32u64 {
        let a = 0x4000_0000 + blk * 0x20_0000;
        r.map_g(s2, 12, 44, a, a, 2, S2_FLAGS);
    }
    let data = r.m.alloc_pages(1, 4096).unwrap();
    let ipa = 0x800_0000_0000u64;
    r.map_g(s2, 12, 44, ipa, data, 3, S2_FLAGS & !pte::AP2); // S2 read-only
    r.map_g(s2, 12, 44, ipa + 0x1000, data, 3, S2_FLAGS | pte::UXN); // S2 execute-never
    let root = r.new_root();
    let cdpa = r.m.alloc_pages(1, 4096).unwrap();
    r.write_struct(cdpa, cd_s1(5, root));
    r.map(root, 0x1000, ipa, PT_FLAGS);
    let mut w = ste_s1(cdpa);
    ste::CONFIG.set(&mut w, ste::CONFIG_NESTED);
    add_s2(&mut w, 3, s2);
    r.write_ste(4, w);
    assert_eq!(translated(r.m.dma(Transaction::read(4, 0x1000))), data);
    let e = fault(r.m.dma(Transaction::write(4, 0x1000))).1.unwrap();
    assert_eq!(
        (e.id(), e.s2(), e.class(), e.ipa()),
        (evt::F_PERMISSION, true, 2, ipa)
    );
    // Stage-2-only stream: S2 XN applies to instruction fetches.
    let mut w = ste_bypass();
    ste::CONFIG.set(&mut w, ste::CONFIG_S2);
    add_s2(&mut w, 3, s2);
    r.write_ste(5, w);
    let mut t = Transaction::read(5, ipa + 0x1000);
    assert_eq!(translated(r.m.dma(t)), data);
    t.instruction = true;
    let e = fault(r.m.dma(t)).1.unwrap();
    assert_eq!((e.id(), e.s2()), (evt::F_PERMISSION, true));
    assert_eq!(r.m.tlb_len(), 0);
}

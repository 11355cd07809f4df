//! The STE/CD transitions of the Linux KUnit suite (`arm-smmu-v3-test.c`), run through the
//! hitless writer (SPEC D4; `reference/linux-kunit-and-hitless.md` §1.2).
//!
//! Same fixture as the suite: an SMMU with STALLS and ATTR_TYPES_OVR (so bypassing entries
//! carry SHCFG = "use incoming"), a CD table at 0xF0F0F0F0F0F0 in the 2-level 64 KiB format,
//! stage-2 and stage-1 tables at 0xdaedbeefdeadbeef with a distinct value in every walk
//! control, ASIDs 778 and 1997, VMID 0 (the Linux fixture leaves it zero; with a non-zero VMID
//! S1 <-> S2 is not hitless, since a stage-1 STE with STRW = EL1 uses S2VMID too).
//!
//! Each transition asserts:
//! - the final entry equals the target bit for bit;
//! - hitless exactly where the table says: a sync never saw word 0 all zero (the suite's
//!   definition);
//! - the number of syncs is at most Linux's (`LINUX_SYNCS`), and equal to ours (`OURS`), so a
//!   change in either direction is noticed;
//! - every image the SMMU could fetch — after each store, and at each sync every word-by-word
//!   combination of the values a word held since the previous sync — behaves like the old or
//!   the new entry on the bits it uses (less update-safe bits), or has word 0 all zero.

use smmu::arch::cd::{CdConfig, Granule1, TableControls};
use smmu::arch::ste::{S1Dss, S1Fmt, SteConfig};
use smmu::arch::{AddressSize, Cacheability, Granule, Shareability};
use smmu::writer::check::CheckedSlot;
use smmu::writer::make::{self, CdTable, EntryFeatures, MasterCaps, S2Table};
use smmu::writer::{write_entry, CdRules, EntryRules, SteRules, WritePath};

const FEATURES: EntryFeatures = EntryFeatures {
    attr_types_ovr: true,
    stalls: true,
    e2h: false,
};

const PLAIN: MasterCaps = MasterCaps {
    ats: false,
    stall: false,
};
const ATS: MasterCaps = MasterCaps {
    ats: true,
    stall: false,
};
const STALL: MasterCaps = MasterCaps {
    ats: false,
    stall: true,
};

const CD_TABLE: u64 = 0xF0F0_F0F0_F0F0;
const FAKE_TTB: u64 = 0xdaed_beef_dead_beef;

fn cd_table(base: u64) -> CdTable {
    CdTable {
        base,
        fmt: S1Fmt::TwoLevel64K,
        cd_max: 8,
    }
}

/// Walk controls with a distinct value per field where the encodings allow it.
fn s2_table() -> S2Table {
    S2Table {
        ttb: FAKE_TTB,
        t0sz: 5,
        sl0: 1,
        ir0: Cacheability::WriteThrough,
        or0: Cacheability::WriteBackNoWriteAllocate,
        sh0: Shareability::Outer,
        tg: Granule::Size64K,
        ps: AddressSize::Bits44,
        fwb: false,
    }
}

fn abort() -> [u64; 8] {
    make::ste_image(&make::abort_ste())
}

fn bypass() -> [u64; 8] {
    make::ste_image(&make::bypass_ste(FEATURES))
}

fn cdtable_ste(dss: S1Dss, m: MasterCaps) -> [u64; 8] {
    make::ste_image(&make::cd_table_ste(FEATURES, m, cd_table(CD_TABLE), dss))
}

fn s2_ste(m: MasterCaps) -> [u64; 8] {
    make::ste_image(&make::s2_ste(FEATURES, m, s2_table(), 0))
}

/// The nested STE of the newest suite: S1DSS = bypass, ATS, MEV = 1, stage 2 as `s2_ste`.
fn nested_ste() -> [u64; 8] {
    let config = SteConfig {
        mev: true,
        ..make::nested_ste(
            FEATURES,
            ATS,
            cd_table(CD_TABLE),
            S1Dss::Bypass,
            s2_table(),
            0,
        )
    };
    make::ste_image(&config)
}

/// The stage-1 CD of a paging domain: TTB0 walks the fake table, TTB1 disabled.
fn s1_cd(asid: u16) -> [u64; 8] {
    let off = TableControls {
        tsz: 0,
        ir: Cacheability::NonCacheable,
        or: Cacheability::NonCacheable,
        sh: Shareability::NonShareable,
        epd: true,
        ttb: 0,
    };
    make::cd_image(&CdConfig {
        asid,
        tt0: TableControls {
            tsz: 25,
            ir: Cacheability::WriteBackAllocate,
            or: Cacheability::WriteThrough,
            sh: Shareability::Inner,
            epd: false,
            ttb: FAKE_TTB,
        },
        tg0: Granule::Size16K,
        tt1: off,
        tg1: Granule1::Size4K,
        ips: AddressSize::Bits40,
        endi: false,
        affd: false,
        wxn: false,
        uwxn: false,
        tbi0: false,
        tbi1: false,
        pan: false,
        aa64: true,
        hd: false,
        ha: false,
        stall: false,
        record: true,
        abort: true,
        aset: true,
        mair: FAKE_TTB,
        amair: 0,
        partid: 0,
        pmg: 0,
    })
}

/// A CD sharing a process address space (SVA): the fake `mm`'s pgd in TTB0, 48-bit VA.
fn sva_config() -> CdConfig {
    let off = TableControls {
        tsz: 0,
        ir: Cacheability::NonCacheable,
        or: Cacheability::NonCacheable,
        sh: Shareability::NonShareable,
        epd: true,
        ttb: 0,
    };
    CdConfig {
        asid: 1997,
        tt0: TableControls {
            tsz: 16,
            ir: Cacheability::WriteBackAllocate,
            or: Cacheability::WriteBackAllocate,
            sh: Shareability::Inner,
            epd: false,
            ttb: FAKE_TTB,
        },
        tg0: Granule::Size4K,
        tt1: off,
        tg1: Granule1::Size4K,
        ips: AddressSize::Bits48,
        endi: false,
        affd: false,
        wxn: false,
        uwxn: false,
        tbi0: false,
        tbi1: false,
        pan: false,
        aa64: true,
        hd: false,
        ha: false,
        stall: false,
        record: true,
        abort: true,
        aset: true,
        mair: 0x0044_04ff_0c04_0400,
        amair: 0,
        partid: 0,
        pmg: 0,
    }
}

fn sva_cd() -> [u64; 8] {
    make::cd_image(&sva_config())
}

/// The SVA CD after its `mm` is released: TTB0 walks disabled (EPD0 = 1, the TTB0 half
/// unused), stall and fault recording off, so stray DMA fails silently.
fn sva_released_cd() -> [u64; 8] {
    let c = sva_config();
    make::cd_image(&CdConfig {
        tt0: TableControls { epd: true, ..c.tt0 },
        stall: false,
        record: false,
        ..c
    })
}

const EMPTY_CD: [u64; 8] = [0; 8];

/// Runs one transition and checks everything listed in the module documentation.
fn transition<R: EntryRules<8>>(
    rules: &R,
    old: [u64; 8],
    new: [u64; 8],
    linux_syncs: u32,
    ours: u32,
    hitless: bool,
) {
    assert_ne!(old, new, "a transition changes something");
    let mut slot = CheckedSlot::new(rules, old, new);
    let report = write_entry(rules, &mut slot, &new).expect("infallible slot");
    assert_eq!(slot.image(), new, "final entry differs from the target");
    assert_eq!(
        slot.violation, None,
        "an intermediate image behaved like neither entry"
    );
    assert!(!slot.unsynced(), "stores left unsynced");
    assert!(!slot.rewritten, "a word was stored twice in one step");
    assert_eq!(
        slot.invalid_seen, !hitless,
        "hitless (never an all-zero word 0 at a sync) should be {hitless}"
    );
    assert!(
        slot.syncs <= linux_syncs,
        "{} syncs, Linux needs {linux_syncs}",
        slot.syncs
    );
    assert_eq!(slot.syncs, ours, "our sync count changed");
    assert_eq!(report.syncs, slot.syncs);
    assert_eq!(report.stores, slot.stores);
    // Only a transition with two critical words takes the breaking path; the CD "clear" cases
    // are hitless paths whose endpoint is itself invalid.
    let endpoint_invalid = old[0] == 0 || new[0] == 0;
    assert_eq!(
        report.path == WritePath::Breaking,
        !hitless && !endpoint_invalid
    );
}

fn ste(old: [u64; 8], new: [u64; 8], linux_syncs: u32, ours: u32, hitless: bool) {
    transition(&SteRules, old, new, linux_syncs, ours, hitless);
}

fn cd(old: [u64; 8], new: [u64; 8], linux_syncs: u32, ours: u32, hitless: bool) {
    transition(&CdRules::EL1, old, new, linux_syncs, ours, hitless);
}

// #1..#24 follow the table of §1.2. The two-way rows (#7, #17, #18, #21, #22) check both
// directions.

/// #1 `write_ste_test_bypass_to_abort`: switch Config, then clear SHCFG.
#[test]
fn t01_bypass_to_abort() {
    // spec: D4
    ste(bypass(), abort(), 2, 2, true);
}

/// #2 `write_ste_test_abort_to_bypass`: SHCFG first (abort ignores it), then Config.
#[test]
fn t02_abort_to_bypass() {
    // spec: D4
    ste(abort(), bypass(), 2, 2, true);
}

/// #3 `write_ste_test_cdtable_to_abort`.
#[test]
fn t03_cdtable_to_abort() {
    // spec: D4
    ste(cdtable_ste(S1Dss::Substream0, ATS), abort(), 2, 2, true);
}

/// #4 `write_ste_test_abort_to_cdtable`.
#[test]
fn t04_abort_to_cdtable() {
    // spec: D4
    ste(abort(), cdtable_ste(S1Dss::Substream0, ATS), 2, 2, true);
}

/// #5 `write_ste_test_cdtable_to_bypass`: SHCFG, Config, then the stage-1 leftovers.
#[test]
fn t05_cdtable_to_bypass() {
    // spec: D4
    ste(cdtable_ste(S1Dss::Substream0, ATS), bypass(), 3, 3, true);
}

/// #6 `write_ste_test_bypass_to_cdtable`.
#[test]
fn t06_bypass_to_cdtable() {
    // spec: D4
    ste(bypass(), cdtable_ste(S1Dss::Substream0, ATS), 3, 3, true);
}

/// #7 `write_ste_test_cdtable_s1dss_change`: word 1 alone is critical, both ways.
#[test]
fn t07_cdtable_s1dss_change() {
    // spec: D4
    let ssid0 = cdtable_ste(S1Dss::Substream0, ATS);
    let byp = cdtable_ste(S1Dss::Bypass, ATS);
    ste(ssid0, byp, 1, 1, true);
    ste(byp, ssid0, 1, 1, true);
}

/// #8 `write_ste_test_s1dssbypass_to_stebypass`.
#[test]
fn t08_s1dssbypass_to_stebypass() {
    // spec: D4
    ste(cdtable_ste(S1Dss::Bypass, ATS), bypass(), 2, 2, true);
}

/// #9 `write_ste_test_stebypass_to_s1dssbypass`.
#[test]
fn t09_stebypass_to_s1dssbypass() {
    // spec: D4
    ste(bypass(), cdtable_ste(S1Dss::Bypass, ATS), 2, 2, true);
}

/// #10 `write_ste_test_s2_to_abort`.
#[test]
fn t10_s2_to_abort() {
    // spec: D4
    ste(s2_ste(ATS), abort(), 2, 2, true);
}

/// #11 `write_ste_test_abort_to_s2`.
#[test]
fn t11_abort_to_s2() {
    // spec: D4
    ste(abort(), s2_ste(ATS), 2, 2, true);
}

/// #12 `write_ste_test_s2_to_bypass`.
#[test]
fn t12_s2_to_bypass() {
    // spec: D4
    ste(s2_ste(ATS), bypass(), 2, 2, true);
}

/// #13 `write_ste_test_bypass_to_s2`.
#[test]
fn t13_bypass_to_s2() {
    // spec: D4
    ste(bypass(), s2_ste(ATS), 2, 2, true);
}

/// #14 `write_ste_test_s1_to_s2`.
#[test]
fn t14_s1_to_s2() {
    // spec: D4
    ste(cdtable_ste(S1Dss::Substream0, ATS), s2_ste(ATS), 3, 3, true);
}

/// #15 `write_ste_test_s2_to_s1`.
#[test]
fn t15_s2_to_s1() {
    // spec: D4
    ste(s2_ste(ATS), cdtable_ste(S1Dss::Substream0, ATS), 3, 3, true);
}

/// #16 `write_ste_test_non_hitless`: the CD-table pointer (word 0) and S1DSS (word 1) both
/// change in used bits, so V = 0 → body → word 0.
#[test]
fn t16_non_hitless() {
    // spec: D4
    let old = cdtable_ste(S1Dss::Substream0, ATS);
    let new = make::ste_image(&make::cd_table_ste(
        FEATURES,
        ATS,
        cd_table(CD_TABLE + 0x2000),
        S1Dss::Bypass,
    ));
    ste(old, new, 3, 3, false);
}

/// #17 `write_cd_test_s1_clear`: an empty CD ↔ a stage-1 CD. Not hitless by the suite's
/// definition: one endpoint has word 0 all zero.
#[test]
fn t17_cd_s1_clear() {
    // spec: D4
    cd(EMPTY_CD, s1_cd(778), 2, 2, false);
    cd(s1_cd(778), EMPTY_CD, 2, 2, false);
}

/// #18 `write_cd_test_s1_change_asid`: one store of word 0.
#[test]
fn t18_cd_s1_change_asid() {
    // spec: D4
    cd(s1_cd(778), s1_cd(1997), 1, 1, true);
    cd(s1_cd(1997), s1_cd(778), 1, 1, true);
}

/// #19 `write_ste_test_s1_to_s2_stall`: stall-enabled master (S1STALLD clear, S2S set).
#[test]
fn t19_s1_to_s2_stall() {
    // spec: D4
    ste(
        cdtable_ste(S1Dss::Substream0, STALL),
        s2_ste(STALL),
        3,
        3,
        true,
    );
}

/// #20 `write_ste_test_s2_to_s1_stall`.
#[test]
fn t20_s2_to_s1_stall() {
    // spec: D4
    ste(
        s2_ste(STALL),
        cdtable_ste(S1Dss::Substream0, STALL),
        3,
        3,
        true,
    );
}

/// #21 `write_cd_test_sva_clear`: empty CD ↔ SVA CD.
#[test]
fn t21_cd_sva_clear() {
    // spec: D4
    cd(EMPTY_CD, sva_cd(), 2, 2, false);
    cd(sva_cd(), EMPTY_CD, 2, 2, false);
}

/// #22 `write_cd_test_sva_release`: EPD0 flips; TTB0 is filled before (or cleared after).
#[test]
fn t22_cd_sva_release() {
    // spec: D4
    cd(sva_cd(), sva_released_cd(), 2, 2, true);
    cd(sva_released_cd(), sva_cd(), 2, 2, true);
}

/// #23 `write_ste_test_nested_s1dssbypass_to_s1bypass`: nested (S1DSS = bypass, ATS, MEV)
/// → plain stage 2 without ATS. Config switches, then the stage-1 fields are cleared. EATS and
/// MEV are update-safe: Linux stores them in a step of their own before the switch ("an
/// additional sync to unset ignored bits"); here they ride with the clean-up, one sync fewer.
#[test]
fn t23_nested_s1dssbypass_to_s1bypass() {
    // spec: D4
    ste(nested_ste(), s2_ste(PLAIN), 3, 2, true);
}

/// #24 `write_ste_test_nested_s1bypass_to_s1dssbypass`: the reverse.
#[test]
fn t24_nested_s1bypass_to_s1dssbypass() {
    // spec: D4
    ste(s2_ste(PLAIN), nested_ste(), 2, 2, true);
}

/// A guest's nested STE (SPEC D13): its CD table at `cd`, the parent's stage 2 with VMID
/// `vmid`, no ATS (what `Smmu::attach_nested` writes for a plain master).
fn guest_nested(cd: u64, vmid: u16) -> [u64; 8] {
    make::ste_image(&make::nested_ste(
        FEATURES,
        PLAIN,
        cd_table(cd),
        S1Dss::Substream0,
        s2_table(),
        vmid,
    ))
}

// The nested rows (SPEC D13): not in Linux's suite, so `linux_syncs` is what Linux's
// used-bits algorithm does for them (the same algorithm: one qword changing where the
// hardware looks is hitless in at most 3 syncs, otherwise V = 0, body, word 0 in 3).

/// A master moves from blocked to a guest's nested domain, and back on detach.
#[test]
fn t25_abort_to_nested_and_back() {
    // spec: D4, D13
    ste(abort(), guest_nested(CD_TABLE, 7), 3, 2, true);
    ste(guest_nested(CD_TABLE, 7), abort(), 3, 2, true);
}

/// Bypass to nested: a bypass STE uses none of the stage-2 words, so they are written first
/// and Config switches in word 0 alone: hitless.
#[test]
fn t26_bypass_to_nested_and_back() {
    // spec: D4, D13
    ste(bypass(), guest_nested(CD_TABLE, 7), 3, 2, true);
    ste(guest_nested(CD_TABLE, 7), bypass(), 3, 2, true);
}

/// The host's own stage 1 to a guest's nested domain: the CD table and the stage 2 change.
#[test]
fn t27_s1_to_nested_and_back() {
    // spec: D4, D13
    ste(
        cdtable_ste(S1Dss::Substream0, PLAIN),
        guest_nested(CD_TABLE + 0x1_0000, 7),
        3,
        3,
        false,
    );
    ste(
        guest_nested(CD_TABLE + 0x1_0000, 7),
        cdtable_ste(S1Dss::Substream0, PLAIN),
        3,
        3,
        false,
    );
}

/// Stage 2 alone (a guest that asked for stage-1 bypass) to nested on the same parent: only
/// word 0 (Config, the CD table) changes where the hardware looks: hitless.
#[test]
fn t28_s2_to_nested_same_parent() {
    // spec: D4, D13
    let s2 = make::ste_image(&make::s2_ste(FEATURES, PLAIN, s2_table(), 7));
    ste(s2, guest_nested(CD_TABLE, 7), 2, 2, true);
    ste(guest_nested(CD_TABLE, 7), s2, 2, 2, true);
}

/// Nested to nested: the guest points at another CD table (one qword: hitless), or the
/// master moves to a nested domain on another parent (another VMID: word 2 and the CD table
/// in word 0 change, so V = 0 first).
#[test]
fn t29_nested_to_nested() {
    // spec: D4, D13
    ste(
        guest_nested(CD_TABLE, 7),
        guest_nested(CD_TABLE + 0x1_0000, 7),
        1,
        1,
        true,
    );
    ste(
        guest_nested(CD_TABLE, 7),
        guest_nested(CD_TABLE + 0x1_0000, 9),
        3,
        3,
        false,
    );
}

/// The builders set no bit their own used bits call unused (the Linux driver WARNs when a
/// `make_*` function and `get_used` disagree).
#[test]
fn fixtures_only_set_used_bits() {
    // spec: D4
    let stes = [
        abort(),
        bypass(),
        cdtable_ste(S1Dss::Substream0, ATS),
        cdtable_ste(S1Dss::Bypass, ATS),
        cdtable_ste(S1Dss::Substream0, STALL),
        s2_ste(ATS),
        s2_ste(STALL),
        s2_ste(PLAIN),
        nested_ste(),
    ];
    for s in stes {
        let used = smmu::writer::ste_used_bits(&s);
        assert!(s.iter().zip(used).all(|(w, u)| w & !u == 0), "{s:#x?}");
    }
    for c in [s1_cd(778), sva_cd(), sva_released_cd()] {
        let used = smmu::writer::cd_used_bits(&c);
        assert!(c.iter().zip(used).all(|(w, u)| w & !u == 0), "{c:#x?}");
    }
}

/// The fixture matches the Linux one where the sync counts depend on it.
#[test]
fn fixture_shape() {
    // spec: D4
    use smmu::arch::ste::fields::{EATS, MEV, S1STALLD, S2S, SHCFG};
    assert_eq!(
        SHCFG.get(&bypass()),
        1,
        "ATTR_TYPES_OVR: bypass uses incoming SHCFG"
    );
    assert_eq!(abort()[1], 0, "abort is V | Config only");
    assert_eq!(SHCFG.get(&cdtable_ste(S1Dss::Substream0, ATS)), 0);
    assert_eq!(SHCFG.get(&cdtable_ste(S1Dss::Bypass, ATS)), 1);
    assert_eq!(EATS.get(&s2_ste(ATS)), 1);
    assert!(S1STALLD.flag(&cdtable_ste(S1Dss::Substream0, ATS)));
    assert!(!S1STALLD.flag(&cdtable_ste(S1Dss::Substream0, STALL)));
    assert!(S2S.flag(&s2_ste(STALL)));
    let nested = nested_ste();
    assert!(MEV.flag(&nested) && EATS.get(&nested) == 1);
    assert_eq!(
        nested[2..],
        s2_ste(ATS)[2..],
        "words 2..7 as the stage-2 STE"
    );
}

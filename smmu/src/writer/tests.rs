//! Unit tests of the used bits, the plan and the writer; property tests over random pairs of
//! configurations. The 24 Linux transitions are in `smmu/tests/transitions.rs`.

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;

use super::check::CheckedSlot;
use super::make::{self, CdTable, EntryFeatures, MasterCaps};
use super::*;
use crate::arch::cd::{fields as cdf, CdConfig};
use crate::arch::ste::{fields as stef, Eats, S1Dss, S1Fmt, SteConfig};

// Under Miri, proptest's byte generation dominates: few cases, short inputs.
const CASES: u32 = if cfg!(miri) { 2 } else { 512 };
const ARB_BYTES: usize = if cfg!(miri) { 64 } else { 256 };

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb<T: for<'a> Arbitrary<'a> + core::fmt::Debug>() -> impl Strategy<Value = T> {
    proptest::collection::vec(any::<u8>(), ARB_BYTES).prop_filter_map("arbitrary", |bytes| {
        T::arbitrary(&mut Unstructured::new(&bytes)).ok()
    })
}

const OVR: EntryFeatures = EntryFeatures {
    attr_types_ovr: true,
    stalls: true,
    e2h: false,
};

fn table() -> CdTable {
    CdTable {
        base: 0xF0F0_F0F0_F0C0,
        fmt: S1Fmt::TwoLevel64K,
        cd_max: 8,
    }
}

fn word(f: crate::arch::Field) -> u64 {
    f.mask_in_word()
}

#[test]
fn invalid_ste_uses_only_v() {
    // spec: D4
    let mut w = [u64::MAX; 8];
    stef::V.set(&mut w, 0);
    assert_eq!(ste_used_bits(&w), [1, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn abort_and_reserved_configs_use_v_config_cont() {
    // spec: D4
    for config in [0b000, 0b001, 0b010, 0b011] {
        let mut w = [u64::MAX; 8];
        stef::CONFIG.set(&mut w, config);
        let used = ste_used_bits(&w);
        assert_eq!(
            used,
            [
                word(stef::V) | word(stef::CONFIG),
                word(stef::CONT),
                0,
                0,
                0,
                0,
                0,
                0
            ]
        );
    }
}

#[test]
fn shcfg_follows_s1dss_in_stage1() {
    // spec: D4
    let m = MasterCaps::default();
    let ssid0 = make::ste_image(&make::cd_table_ste(OVR, m, table(), S1Dss::Substream0));
    let byp = make::ste_image(&make::cd_table_ste(OVR, m, table(), S1Dss::Bypass));
    assert_eq!(ste_used_bits(&ssid0)[1] & word(stef::SHCFG), 0);
    assert_eq!(
        ste_used_bits(&byp)[1] & word(stef::SHCFG),
        word(stef::SHCFG)
    );
    // And the builder drops SHCFG where it is unused.
    assert_eq!(stef::SHCFG.get(&ssid0), 0);
    assert_eq!(stef::SHCFG.get(&byp), 1);
}

#[test]
fn bypass_does_not_use_eats_or_s2() {
    // spec: D4
    let byp = make::ste_image(&make::bypass_ste(OVR));
    let used = ste_used_bits(&byp);
    assert_eq!(used[1] & (word(stef::EATS) | word(stef::MEV)), 0);
    assert_eq!(used[1] & word(stef::SHCFG), word(stef::SHCFG));
    // No stage-2 field: neither the walk controls nor the table.
    assert_eq!(used[2] & (word(stef::VTCR) | word(stef::S2S)), 0);
    assert_eq!(used[3], 0);
}

#[test]
fn stage1_with_ats_uses_s2s() {
    // spec: D4
    let ats = MasterCaps {
        ats: true,
        stall: false,
    };
    let s1 = make::ste_image(&make::cd_table_ste(OVR, ats, table(), S1Dss::Substream0));
    assert_ne!(ste_used_bits(&s1)[2] & word(stef::S2S), 0);
    let s1 = make::ste_image(&make::cd_table_ste(
        OVR,
        MasterCaps::default(),
        table(),
        S1Dss::Substream0,
    ));
    assert_eq!(ste_used_bits(&s1)[2] & word(stef::S2S), 0);
}

#[test]
fn update_safe_eats_conditions() {
    // spec: D4
    let mut a = [0u64; 8];
    let mut b = [0u64; 8];
    stef::EATS.set(&mut b, Eats::Full.encode());
    let eats0 = 1u64 << stef::EATS.lo;
    assert_eq!(ste_update_safe(&a, &b)[1], word(stef::MEV) | eats0);
    stef::S2S.set(&mut a, 1);
    assert_eq!(ste_update_safe(&a, &b)[1], word(stef::MEV));
    stef::S2S.set(&mut a, 0);
    stef::EATS.set(&mut a, Eats::SplitStage.encode());
    assert_eq!(ste_update_safe(&a, &b)[1], word(stef::MEV));
    stef::EATS.set(&mut a, Eats::FullDpt.encode());
    assert_eq!(ste_update_safe(&b, &a)[1], word(stef::MEV));
}

#[test]
fn cd_epd_drops_its_half() {
    // spec: D4
    let mut w = [u64::MAX; 8];
    cdf::EPD1.set(&mut w, 0);
    let used = cd_used_bits(&w);
    let tt0 = [cdf::T0SZ, cdf::TG0, cdf::IR0, cdf::OR0, cdf::SH0]
        .iter()
        .fold(0, |m, f| m | word(*f));
    assert_eq!(used[0], !tt0);
    assert_eq!(used[1], !word(cdf::TTB0));
    assert_eq!(used[2..], [u64::MAX; 6]);
    assert_eq!(cd_used_bits_with(&w, false), [u64::MAX; 8]);
    cdf::V.set(&mut w, 0);
    assert_eq!(cd_used_bits(&w), [word(cdf::V), 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn plan_paths() {
    // spec: D4
    let byp = make::ste_image(&make::bypass_ste(OVR));
    let abort = make::ste_image(&make::abort_ste());
    assert_eq!(plan(&SteRules, &byp, &byp).path, WritePath::Unchanged);
    assert_eq!(
        plan(&SteRules, &byp, &abort).path,
        WritePath::Hitless { critical: 0 }
    );
    // Changing only bits the entry ignores.
    let mut junk = abort;
    stef::S2TTB.set(&mut junk, 0x1234);
    assert_eq!(plan(&SteRules, &abort, &junk).path, WritePath::Unused);
    // Two used words: CD pointer and S1DSS.
    let m = MasterCaps::default();
    let a = make::ste_image(&make::cd_table_ste(OVR, m, table(), S1Dss::Substream0));
    let other = CdTable {
        base: table().base + 0x2000,
        ..table()
    };
    let b = make::ste_image(&make::cd_table_ste(OVR, m, other, S1Dss::Bypass));
    assert_eq!(plan(&SteRules, &a, &b).path, WritePath::Breaking);
}

/// A slot whose n-th sync fails.
struct FailingSlot {
    image: [u64; 8],
    fail_at: u32,
    syncs: u32,
}

impl EntrySlot<8> for FailingSlot {
    type Error = &'static str;
    fn read(&self) -> [u64; 8] {
        self.image
    }
    fn write_qword(&mut self, index: usize, value: u64) {
        self.image[index] = value;
    }
    fn sync(&mut self) -> Result<(), Self::Error> {
        self.syncs += 1;
        if self.syncs == self.fail_at {
            Err("CMD_SYNC timeout")
        } else {
            Ok(())
        }
    }
}

#[test]
fn sync_failure_stops_the_sequence() {
    // spec: D4, D10
    let m = MasterCaps::default();
    let a = make::ste_image(&make::cd_table_ste(OVR, m, table(), S1Dss::Substream0));
    let other = CdTable {
        base: table().base + 0x2000,
        ..table()
    };
    let b = make::ste_image(&make::cd_table_ste(OVR, m, other, S1Dss::Bypass));
    let mut slot = FailingSlot {
        image: a,
        fail_at: 2,
        syncs: 0,
    };
    let err = write_entry(&SteRules, &mut slot, &b).unwrap_err();
    assert_eq!(err.path, WritePath::Breaking);
    assert_eq!(err.syncs, 1);
    assert_eq!(err.error, "CMD_SYNC timeout");
    // Word 0 still zero: the entry is invalid, the caller knows from `path`.
    assert_eq!(slot.image[0], 0);
    assert_eq!(slot.syncs, 2);
}

/// The number of syncs of the Linux sequence (§1.3 of the research note): the first hitless
/// step stores `unused_update` (update-safe bits included) whenever it differs from the entry.
fn linux_syncs<R: EntryRules<8>>(rules: &R, old: &[u64; 8], new: &[u64; 8]) -> u32 {
    let p = plan(rules, old, new);
    match p.path {
        WritePath::Unchanged => 0,
        WritePath::Unused => 1,
        WritePath::Breaking => 3,
        WritePath::Hitless { critical } => {
            let mut a = p.unused_update;
            a[critical] = old[critical];
            let mut b = a;
            b[critical] = new[critical];
            u32::from(a != *old) + 1 + u32::from(b != *new)
        }
    }
}

fn run<R: EntryRules<8>>(rules: &R, old: [u64; 8], new: [u64; 8]) -> (WriteReport, [u64; 8]) {
    let mut slot = CheckedSlot::new(rules, old, new);
    let report = write_entry(rules, &mut slot, &new).unwrap();
    assert_eq!(slot.image(), new, "final image");
    assert_eq!(slot.violation, None, "{old:#x?} -> {new:#x?}");
    assert!(!slot.rewritten && !slot.unsynced());
    assert_eq!(report.syncs, slot.syncs);
    assert_eq!(report.stores, slot.stores);
    // Linux's definition of "not hitless" (an all-zero word 0 at a sync) agrees with the path,
    // except when an endpoint itself has word 0 all zero.
    if old[0] != 0 && new[0] != 0 {
        assert_eq!(slot.invalid_seen, !report.path.is_hitless());
    }
    assert!(
        report.syncs <= linux_syncs(rules, &old, &new),
        "more syncs than the Linux sequence"
    );
    let max = match report.path {
        WritePath::Unchanged => 0,
        WritePath::Unused => 1,
        WritePath::Hitless { .. } | WritePath::Breaking => 3,
    };
    assert!(report.syncs <= max);
    (report, slot.image())
}

/// The canonical image of a random configuration (values wider than their field truncated).
fn valid_ste(c: SteConfig) -> [u64; 8] {
    make::ste_image(&c)
}

fn ste_pair() -> impl Strategy<Value = ([u64; 8], [u64; 8])> {
    (arb::<SteConfig>(), arb::<SteConfig>()).prop_map(|(a, b)| (valid_ste(a), valid_ste(b)))
}

proptest! {
    #![proptest_config(cfg())]

    /// spec: D4. Random pairs of STE configurations: every image the SMMU could fetch behaves
    /// like the old or the new entry, the final image is the target.
    #[test]
    fn ste_pairs_are_written_safely((a, b) in ste_pair()) {
        run(&SteRules, a, b);
    }

    /// spec: D4. Pairs that differ in a few fields only (the common case in a driver: one
    /// domain attribute changes), which exercise the hitless path more than random pairs do.
    #[test]
    fn ste_near_pairs_are_written_safely(a in arb::<SteConfig>(), b in arb::<SteConfig>(), pick in 0u8..8) {
        let mut c = a;
        match pick {
            0 => c.translation = b.translation,
            1 => c.eats = b.eats,
            2 => c.mev = b.mev,
            3 => c.attrs = b.attrs,
            4 => c.s2vmid = b.s2vmid,
            5 => c.strw = b.strw,
            6 => { c.eats = b.eats; c.mev = b.mev; }
            _ => c = b,
        }
        run(&SteRules, valid_ste(a), valid_ste(c));
    }

    /// spec: D4. Junk in the bits the current entry ignores (an adopted entry, an entry that a
    /// foreign driver wrote) does not break the guarantee.
    #[test]
    fn ste_from_junk_is_written_safely(a in arb::<SteConfig>(), junk in any::<[u64; 8]>(), b in arb::<SteConfig>()) {
        let mut old = a.encode().to_words();
        let used = ste_used_bits(&old);
        for ((o, j), u) in old.iter_mut().zip(junk).zip(used) {
            *o |= j & !u;
        }
        run(&SteRules, old, valid_ste(b));
    }

    /// spec: D4. CD pairs, including the empty (all-zero) CD at either end.
    #[test]
    fn cd_pairs_are_written_safely(a in arb::<CdConfig>(), b in arb::<CdConfig>(), empty in 0u8..4) {
        let old = if empty == 1 { [0; 8] } else { make::cd_image(&a) };
        let new = if empty == 2 { [0; 8] } else { make::cd_image(&b) };
        run(&CdRules::EL1, old, new);
        run(&CdRules::NO_EPD, a.encode().to_words(), b.encode().to_words());
    }

    /// spec: D4. The builders never set a bit their configuration does not use, and the image
    /// behaves exactly like the full encoding.
    #[test]
    fn images_only_carry_used_bits(c in arb::<SteConfig>(), d in arb::<CdConfig>()) {
        let full = c.encode().to_words();
        let img = make::ste_image(&c);
        let used = ste_used_bits(&img);
        prop_assert_eq!(used, ste_used_bits(&full));
        for i in 0..8 {
            prop_assert_eq!(img[i] & !used[i], 0);
        }
        prop_assert!(behaves_like(&SteRules, &img, &full) && behaves_like(&SteRules, &full, &img));
        let full = d.encode().to_words();
        let img = make::cd_image(&d);
        prop_assert!(behaves_like(&CdRules::EL1, &img, &full) && behaves_like(&CdRules::EL1, &full, &img));
    }
}

/// The checker itself: a writer that stores the whole target and syncs once is caught on a
/// transition that needs ordering (stage 1 to stage 2 rewrites three words).
#[test]
fn checker_catches_an_unordered_write() {
    // spec: D4
    let m = MasterCaps::default();
    let s1 = make::ste_image(&make::cd_table_ste(OVR, m, table(), S1Dss::Substream0));
    let s2 = make::ste_image(&make::s2_ste(
        OVR,
        m,
        make::S2Table {
            ttb: 0x8000_0000,
            t0sz: 24,
            sl0: 1,
            ir0: crate::arch::Cacheability::WriteBackAllocate,
            or0: crate::arch::Cacheability::WriteBackAllocate,
            sh0: crate::arch::Shareability::Inner,
            tg: crate::arch::Granule::Size4K,
            ps: crate::arch::AddressSize::Bits48,
            fwb: false,
        },
        1,
    ));
    let mut slot = CheckedSlot::new(&SteRules, s1, s2);
    for (i, w) in s2.iter().enumerate() {
        slot.write_qword(i, *w);
    }
    slot.sync().unwrap();
    assert!(slot.violation.is_some());
    // Word 0 first, then the rest, each synced: the intermediate is a stage-2 STE with the
    // stage-1 STE's (absent) walk controls.
    let mut slot = CheckedSlot::new(&SteRules, s1, s2);
    slot.write_qword(0, s2[0]);
    slot.sync().unwrap();
    assert!(slot.violation.is_some());
}

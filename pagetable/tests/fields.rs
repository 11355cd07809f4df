//! Descriptor constants against the `pte` section of `testdata/smmuv3-fields.json` (SPEC P4).
use serde_json::Value;
use smmu_pagetable::desc::{self, Field};
use smmu_pagetable::{pa_size_encoding, Config, Granule, PageTable, Stage};

mod common;

const FIELDS_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/smmuv3-fields.json"
));

/// The `pte` section. Only that object is parsed (the file is 150 KiB; parsing all of it takes
/// minutes under Miri); `pte_slice_is_the_pte_section` checks the shortcut against a full parse.
fn pte() -> Value {
    static PTE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    PTE.get_or_init(|| {
        // The top-level key is unique (`pte_slice_is_the_pte_section` proves the slice is the
        // section) and sits near the end of the file: search backwards, cheaply under Miri.
        let key = "\n \"pte\":";
        let at = FIELDS_JSON.rfind(key).unwrap() + key.len();
        let mut it = serde_json::Deserializer::from_str(&FIELDS_JSON[at..]).into_iter::<Value>();
        it.next().unwrap().unwrap()
    })
    .clone()
}

// spec: P4 (the reference the other tests read is the file's real pte section)
#[test]
#[cfg_attr(miri, ignore)] // a full parse of the 150 KiB file; no unsafe code involved
fn pte_slice_is_the_pte_section() {
    let v: Value = serde_json::from_str(FIELDS_JSON).unwrap();
    assert_eq!(v["pte"], pte());
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().unwrap();
    let s = s.split_whitespace().next().unwrap();
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

// spec: P4
#[test]
fn every_pte_field_matches_the_json() {
    let pte = pte();
    let ours: &[(&str, &str, Option<Field>)] = &[
        ("common", "VALID", Some(desc::VALID)),
        ("common", "TYPE", Some(desc::TYPE)),
        ("common", "NS", Some(desc::NS)),
        ("common", "SH", Some(desc::SH)),
        ("common", "AF", Some(desc::AF)),
        ("common", "ADDR", Some(desc::ADDR)),
        ("common", "DBM", Some(desc::DBM)),
        ("common", "CONTIG", Some(desc::CONTIG)),
        ("common", "XN", Some(desc::XN)),
        ("common", "UXN", Some(desc::UXN)),
        ("common", "PXN", Some(desc::PXN)),
        // Linux's software bit: no constant here (this crate keeps no state in descriptors).
        ("common", "SW_SYNC", None),
        ("common", "NSTABLE", Some(desc::NSTABLE)),
        ("stage1", "ATTRINDX", Some(desc::ATTRINDX)),
        ("stage1", "AP", Some(desc::AP)),
        ("stage1", "AP_UNPRIV", Some(desc::AP_UNPRIV)),
        ("stage1", "AP_RDONLY", Some(desc::AP_RDONLY)),
        ("stage1", "nG", Some(desc::NG)),
        ("stage2", "MEMATTR", Some(desc::MEMATTR)),
        ("stage2", "S2AP", Some(desc::S2AP)),
    ];
    let mut checked = 0;
    for &(section, name, field) in ours {
        let spec = pte["field_spec"][section][name].as_str().unwrap();
        let pos = &pte[section][name];
        let (hi, lo) = (
            pos[0].as_u64().unwrap() as u32,
            pos[1].as_u64().unwrap() as u32,
        );
        if spec == "not found" {
            // The JSON marks this field as absent from DDI 0487 D8: nothing to assert against.
            assert!(
                field.is_none(),
                "{name}: the spec does not define it, so neither do we"
            );
            println!(
                "{section}.{name} [{hi}:{lo}]: not found in the spec (software bit); not asserted"
            );
            continue;
        }
        let f = field.unwrap_or_else(|| panic!("{name} is in the spec but has no constant"));
        assert_eq!((f.hi, f.lo), (hi, lo), "{section}.{name} (spec {spec})");
        assert_eq!(f.mask().count_ones(), hi - lo + 1, "{name}");
        checked += 1;
    }
    // Every field of the JSON is covered by the table above.
    let listed: usize = ["common", "stage1", "stage2"]
        .iter()
        .map(|s| pte[s].as_object().unwrap().len())
        .sum();
    assert_eq!(ours.len(), listed);
    assert_eq!(checked, listed - 1);
}

// spec: P4
#[test]
fn values_match_the_json() {
    let pte = pte();
    let cv = &pte["common_values"];
    assert_eq!(cv["TYPE"]["BLOCK"], desc::TYPE_BLOCK);
    assert_eq!(cv["TYPE"]["TABLE"], desc::TYPE_TABLE);
    assert_eq!(cv["TYPE"]["PAGE"], desc::TYPE_PAGE);
    assert_eq!(cv["SH"]["NS"], desc::SH_NS);
    assert_eq!(cv["SH"]["OS"], desc::SH_OS);
    assert_eq!(cv["SH"]["IS"], desc::SH_IS);
    let s2 = &pte["stage2_values"];
    assert_eq!(s2["S2AP"]["READ"], desc::S2AP_READ);
    assert_eq!(s2["S2AP"]["WRITE"], desc::S2AP_WRITE);
    assert_eq!(hex(&s2["MEMATTR"]["OIWB"]), desc::MEMATTR_WB);
    assert_eq!(hex(&s2["MEMATTR"]["NC"]), desc::MEMATTR_NC);
    assert_eq!(hex(&s2["MEMATTR"]["DEV"]), desc::MEMATTR_DEVICE);
    // FWB_WB needs STE.S2FWB; this crate does not emit FWB encodings.
    println!("stage2_values.MEMATTR.FWB_WB: S2FWB encodings are not used; not asserted");

    // MAIR: the JSON gives index and attribute; the spec chapter D8 does not define them
    // ("values_spec.mair": "not found"), so this compares against Linux's layout only.
    let mair = &pte["mair"];
    for (name, idx) in [
        ("IDX_NC", desc::MAIR_IDX_NC),
        ("IDX_CACHE", desc::MAIR_IDX_CACHE),
        ("IDX_DEV", desc::MAIR_IDX_DEV),
        ("IDX_INC_OCACHE", desc::MAIR_IDX_INC_OCACHE),
    ] {
        assert_eq!(mair[name]["index"], idx, "{name}");
        let attr = hex(&mair[name]["attr"]);
        assert_eq!((desc::MAIR >> (8 * idx)) & 0xff, attr, "{name}");
    }

    // PS / IPS encodings.
    for (bits, enc) in pte["tcr_encodings"]["PS"].as_object().unwrap() {
        assert_eq!(
            pa_size_encoding(bits.parse().unwrap()),
            Some(enc.as_u64().unwrap() as u8),
            "PS {bits}"
        );
    }
    assert_eq!(pa_size_encoding(33), None);
}

// spec: P1, P4 — VTCR_SL0 rule ("~start_level & 3, with start_level+1 for 4K") and T0SZ = 64 - IAS.
#[test]
fn sl0_and_t0sz_follow_the_json_rule() {
    for granule in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
        for ias in [32, 36, 40, 42, 44, 48] {
            let pt = PageTable::new(
                Config {
                    stage: Stage::Stage2,
                    granule,
                    ias,
                    oas: 48,
                },
                common::TestAlloc::default(),
            )
            .unwrap();
            let c = pt.stage2_config().unwrap();
            let lvl = u32::from(c.start_level) + u32::from(granule == Granule::Size4K);
            assert_eq!(u32::from(c.sl0), !lvl & 3, "{granule} ias {ias}");
            assert_eq!(u32::from(c.t0sz), 64 - ias);
        }
    }
}

// spec: P4 — the 52-bit address rule ("PA[51:48] in PTE bits [15:12]" with 64K).
#[test]
fn lpa_field_matches_the_json_note() {
    let note = pte()["address_52bit"].as_str().unwrap().to_owned();
    assert!(
        note.contains("[15:12]") && note.contains("PA[51:48]"),
        "{note}"
    );
    assert_eq!((desc::ADDR_HI_LPA.hi, desc::ADDR_HI_LPA.lo), (15, 12));
}

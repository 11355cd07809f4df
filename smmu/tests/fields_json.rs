//! Every register offset, field position and opcode the crate defines, compared with the
//! vendored `smmuv3-fields.json` (checked by its authors against IHI 0070 G.b).
//!
//! The JSON marks each position with the spec section that confirms it, or "not found" when
//! the rendered specification only shows it in a figure (most command and fault-record
//! layouts). Those positions are compared with the JSON's Linux/QEMU value and reported as
//! such; a position whose status is "unconfirmed" is reported and not asserted.
//!
//! spec: D1

use serde_json::Value;
use smmu::arch::cmd::{self, fields as cf, opcode};
use smmu::arch::event::{self, event_id, fields as ef};
use smmu::arch::queue::{GlobalErrors, QueuePtr, OVERFLOW_FLAG};
use smmu::arch::regs::{self, RegWidth, RegisterInfo, REGISTERS};
use smmu::arch::{cd, l1std, pri, ste, Field};

fn json() -> Value {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/smmuv3-fields.json"
    ));
    serde_json::from_str(text).expect("vendored JSON parses")
}

fn hex(v: &Value) -> u64 {
    match v {
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex"),
        Value::Number(n) => n.as_u64().expect("integer"),
        other => panic!("not a number: {other}"),
    }
}

fn hi_lo(v: &Value) -> (u32, u32) {
    let a = v.as_array().expect("[hi, lo]");
    (a[0].as_u64().unwrap() as u32, a[1].as_u64().unwrap() as u32)
}

/// Collects what was checked and what could only be reported.
#[derive(Default)]
struct Report {
    asserted: usize,
    notes: Vec<String>,
}

impl Report {
    /// Compares a structure field with a JSON `{qword, bits}` entry.
    fn field(&mut self, what: &str, ours: &Field, entry: &Value) {
        let qword = entry["qword"].as_u64().expect("qword") as usize;
        let (hi, lo) = hi_lo(&entry["bits"]);
        let spec = entry["spec"].as_str().unwrap_or("");
        let status = entry["status"].as_str().unwrap_or("linux");
        if status == "unconfirmed" {
            self.notes
                .push(format!("{what}: unconfirmed in every source; not asserted"));
            return;
        }
        assert_eq!(
            (ours.qword, ours.hi, ours.lo),
            (qword, hi, lo),
            "{what}: crate has word {} [{}:{}], JSON word {qword} [{hi}:{lo}]",
            ours.qword,
            ours.hi,
            ours.lo
        );
        if let Some((ahi, alo)) = entry.get("abs_bits").map(hi_lo) {
            assert_eq!(ours.abs_bits(), (ahi, alo), "{what}: absolute bits");
        }
        if spec == "not found" {
            self.notes.push(format!(
                "{what}: position only in a spec figure; matches the JSON's {status} value"
            ));
        }
        self.asserted += 1;
    }

    fn finish(self, min_asserted: usize) {
        for n in &self.notes {
            eprintln!("note: {n}");
        }
        eprintln!(
            "{} positions asserted, {} reported",
            self.asserted,
            self.notes.len()
        );
        assert!(
            self.asserted >= min_asserted,
            "only {} positions asserted",
            self.asserted
        );
    }
}

#[test]
fn registers_match_json() {
    let j = json();
    let mut checked = 0;
    for (name, r) in j["registers"].as_object().unwrap() {
        if name == "IDREGS" {
            continue;
        }
        let ours = RegisterInfo::by_name(name).unwrap_or_else(|| panic!("register {name} missing"));
        // The crate names a register as the specification does; the JSON's other spelling
        // (Linux's EVTQ_…) is the register's alias, still accepted by by_name.
        let spec_name = r["spec_name"]
            .as_str()
            .and_then(|s| s.strip_prefix("SMMU_"))
            .unwrap_or(name);
        assert_eq!(ours.name, spec_name, "{name}: the specification's name");
        if spec_name != name {
            assert_eq!(ours.alias, Some(name.as_str()), "{name}: alias");
        }
        assert_eq!(ours.offset as u64, hex(&r["offset"]), "{name} offset");
        assert_eq!(
            u64::from(ours.page),
            r["page"].as_u64().unwrap(),
            "{name} page"
        );
        let width = if r["width"].as_u64() == Some(64) {
            RegWidth::W64
        } else {
            RegWidth::W32
        };
        assert_eq!(ours.width, width, "{name} width");
        let spec_names = r.get("field_spec_name");
        let fields = r["fields"].as_object().unwrap();
        assert_eq!(ours.fields.len(), fields.len(), "{name}: field count");
        for (key, bits) in fields {
            let spec_name = spec_names
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or(key);
            let f = ours
                .fields
                .iter()
                .find(|f| f.name == spec_name)
                .unwrap_or_else(|| panic!("{name}.{spec_name} missing"));
            let (hi, lo) = hi_lo(bits);
            assert_eq!((f.hi(), f.shift), (hi, lo), "{name}.{spec_name}");
            checked += 1;
        }
    }
    assert_eq!(
        REGISTERS.len(),
        j["registers"].as_object().unwrap().len() - 1
    );
    // Absolute offsets of the page-1 registers.
    let pages = &j["register_pages"];
    assert_eq!(regs::PAGE1_OFFSET as u64, hex(&pages["page1_base"]));
    for name in pages["page1_registers"].as_array().unwrap() {
        let r = RegisterInfo::by_name(name.as_str().unwrap()).unwrap();
        assert_eq!(r.page, 1);
        assert_eq!(r.absolute_offset(), regs::PAGE1_OFFSET + r.offset);
    }
    assert_eq!(regs::offset::EVTQ_PROD, 0x100a8);
    assert_eq!(regs::offset::PRIQ_CONS, 0x100cc);
    assert!(checked > 150, "{checked} register fields");
}

#[test]
fn queue_layout_and_gerror_match_json() {
    let j = json();
    let q = &j["queues"];
    for (key, bits) in q["Q_BASE"].as_object().unwrap() {
        let (hi, lo) = hi_lo(bits);
        let name = if key == "RA" { "RA" } else { key.as_str() };
        for reg in ["CMDQ_BASE", "EVTQ_BASE", "PRIQ_BASE"] {
            let name = if reg != "CMDQ_BASE" && name == "RA" {
                "WA"
            } else {
                name
            };
            let r = RegisterInfo::by_name(reg).unwrap();
            let f = r.fields.iter().find(|f| f.name == name).unwrap();
            assert_eq!((f.hi(), f.shift), (hi, lo), "{reg}.{name}");
        }
    }
    assert_eq!(OVERFLOW_FLAG, 1 << 31);
    let (hi, lo) = hi_lo(&q["prod_cons_layout"]["cmdq_cons_err"]);
    assert_eq!(
        QueuePtr::new(((1 << (hi - lo + 1)) - 1) << lo, 8).cmdq_error(),
        (1 << (hi - lo + 1)) - 1
    );
    let errs = &q["cmdq_errors"];
    use smmu::arch::queue::cmdq_error;
    assert_eq!(
        u64::from(cmdq_error::NONE),
        errs["CERROR_NONE"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(cmdq_error::ILL),
        errs["CERROR_ILL"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(cmdq_error::ABT),
        errs["CERROR_ABT"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(cmdq_error::ATC_INV_SYNC),
        errs["CERROR_ATC_INV_SYNC"].as_u64().unwrap()
    );
    // Entry sizes; the PRI record size is only in a figure.
    assert_eq!(
        smmu::arch::cmd::Cmd::SIZE as u64,
        q["entry_bytes"]["CMDQ"].as_u64().unwrap()
    );
    assert_eq!(
        event::EventRecord::SIZE as u64,
        q["entry_bytes"]["EVTQ"].as_u64().unwrap()
    );
    assert_eq!(
        pri::PriRecord::SIZE as u64,
        q["entry_bytes"]["PRIQ"].as_u64().unwrap()
    );
    eprintln!(
        "note: PRIQ entry size is a Linux fact (spec: {})",
        q["entry_bytes_spec"]["PRIQ"]
    );
    // Full and empty (§6.3.27).
    let p = |raw| QueuePtr::new(raw, 4);
    assert!(QueuePtr::is_empty(p(0x13), p(0x13)));
    assert!(QueuePtr::is_full(p(0x03), p(0x13)));
    assert!(!QueuePtr::is_full(p(0x04), p(0x13)));
    // GERROR bits.
    let g = &j["gerror"];
    for (name, bits) in g["bits"].as_object().unwrap() {
        let (hi, lo) = hi_lo(bits);
        assert_eq!(hi, lo);
        let flag = GlobalErrors::from_name(name).unwrap_or_else(|| panic!("GERROR.{name}"));
        assert_eq!(flag.bits(), 1 << lo, "GERROR.{name}");
    }
    // Every bit G.b defines (0x7fd; Linux's GERROR_ERR_MASK 0x1fd predates CMDQP_ERR and DPT_ERR).
    let defined = hex(&j["registers"]["GERROR"]["values"]["ERR_MASK_SPEC_G_B"]);
    assert_eq!(u64::from(GlobalErrors::all().bits()), defined);
}

#[test]
fn stream_table_entries_match_json() {
    let j = json();
    let mut rep = Report::default();
    let l1 = &j["strtab_l1"];
    assert_eq!(
        l1std::L1Std::SIZE as u64,
        l1["size_bytes"].as_u64().unwrap()
    );
    rep.field("L1STD.Span", &l1std::fields::SPAN, &l1["fields"]["SPAN"]);
    rep.field("L1STD.L2Ptr", &l1std::fields::L2PTR, &l1["fields"]["L2PTR"]);
    assert_eq!(
        u64::from(l1std::STRTAB_SPLIT),
        l1["constants"]["STRTAB_SPLIT"].as_u64().unwrap()
    );

    let s = &j["ste"];
    assert_eq!(ste::Ste::SIZE as u64, s["size_bytes"].as_u64().unwrap());
    for (key, entry) in s["fields"].as_object().unwrap() {
        let name = match entry.get("spec_name").and_then(Value::as_str) {
            Some("IMPLEMENTATION DEFINED") | None => key.as_str(),
            Some(n) => n,
        };
        let ours = if key == "VTCR" {
            ste::fields::VTCR
        } else {
            *ste::fields::FIELDS
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("STE.{name} missing"))
        };
        rep.field(&format!("STE.{name}"), &ours, entry);
    }
    let v = &s["values"];
    use ste::{Eats, S1Dss, S1Fmt, ShCfg, SteKind, Strw};
    for (k, kind) in [
        ("ABORT", SteKind::Abort),
        ("BYPASS", SteKind::Bypass),
        ("S1_TRANS", SteKind::Stage1),
        ("S2_TRANS", SteKind::Stage2),
        ("NESTED", SteKind::Nested),
    ] {
        assert_eq!(
            kind.encode(),
            v["CFG"][k].as_u64().unwrap(),
            "STE.Config {k}"
        );
    }
    for (k, x) in [
        ("LINEAR", S1Fmt::Linear),
        ("FOURK_L2", S1Fmt::TwoLevel4K),
        ("SIXTYFOURK_L2", S1Fmt::TwoLevel64K),
    ] {
        assert_eq!(x.encode(), v["S1FMT"][k].as_u64().unwrap());
    }
    for (k, x) in [
        ("TERMINATE", S1Dss::Terminate),
        ("BYPASS", S1Dss::Bypass),
        ("SSID0", S1Dss::Substream0),
    ] {
        assert_eq!(x.encode(), v["S1DSS"][k].as_u64().unwrap());
    }
    for (k, x) in [
        ("ABT", Eats::Abort),
        ("TRANS", Eats::Full),
        ("S1CHK", Eats::SplitStage),
        ("FULL_DPT", Eats::FullDpt),
    ] {
        assert_eq!(x.encode(), v["EATS"][k].as_u64().unwrap());
    }
    for (k, x) in [("NSEL1", Strw::El1), ("EL2", Strw::El2), ("EL3", Strw::El3)] {
        assert_eq!(x.encode(), v["STRW"][k].as_u64().unwrap());
    }
    for (k, x) in [
        ("NSH", ShCfg::NonShareable),
        ("INCOMING", ShCfg::Incoming),
        ("OSH", ShCfg::Outer),
        ("ISH", ShCfg::Inner),
    ] {
        assert_eq!(x.encode(), v["SHCFG"][k].as_u64().unwrap());
    }
    rep.finish(80);
}

#[test]
fn context_descriptors_match_json() {
    let j = json();
    let mut rep = Report::default();
    let c = &j["cd"];
    assert_eq!(cd::Cd::SIZE as u64, c["size_bytes"].as_u64().unwrap());
    for (key, entry) in c["fields"].as_object().unwrap() {
        let name = match entry.get("spec_name").and_then(Value::as_str) {
            Some("IMPLEMENTATION DEFINED") | None => key.as_str(),
            Some(n) => n,
        };
        let ours = cd::fields::FIELDS
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("CD.{name} missing"));
        rep.field(&format!("CD.{name}"), ours, entry);
    }
    let l1 = &c["l1_descriptor"];
    rep.field("L1CD.V", &cd::l1_fields::V, &l1["fields"]["V"]);
    rep.field("L1CD.L2Ptr", &cd::l1_fields::L2PTR, &l1["fields"]["L2PTR"]);
    use smmu::arch::{AddressSize, Granule, Shareability};
    let v = &c["values"];
    for (k, g) in [
        ("G4K", Granule::Size4K),
        ("G64K", Granule::Size64K),
        ("G16K", Granule::Size16K),
    ] {
        assert_eq!(g.encode(), v["TG0"][k].as_u64().unwrap());
    }
    for (k, g) in [
        ("G4K", cd::Granule1::Size4K),
        ("G64K", cd::Granule1::Size64K),
        ("G16K", cd::Granule1::Size16K),
    ] {
        assert_eq!(g.encode(), v["TG1"][k].as_u64().unwrap());
    }
    for (k, s) in [
        ("NSH", Shareability::NonShareable),
        ("OSH", Shareability::Outer),
        ("ISH", Shareability::Inner),
    ] {
        assert_eq!(s.encode(), v["SH0"][k].as_u64().unwrap());
    }
    for a in AddressSize::ALL {
        assert_eq!(a.encode(), v["IPS"][a.bits().to_string()].as_u64().unwrap());
    }
    rep.finish(60);
}

/// The crate's field for a JSON command field key.
fn command_field(command: &str, key: &str) -> Field {
    match (command, key) {
        (_, "OP") => cf::OPCODE,
        (_, "SSV") => cf::SSV,
        (_, "SID") => cf::STREAM_ID,
        (_, "SSID") => cf::SUBSTREAM_ID,
        (_, "LEAF") => cf::LEAF,
        (_, "RANGE") => cf::RANGE,
        (_, "VMID") => cf::VMID,
        (_, "ASID") => cf::ASID,
        (_, "NUM") => cf::NUM,
        (_, "SCALE") => cf::SCALE,
        (_, "TTL128") => cf::TTL128,
        (_, "TTL") => cf::TTL,
        (_, "TG") => cf::TG,
        (_, "ADDR") => cf::ADDRESS,
        (_, "IPA") => cf::IPA,
        ("PREFETCH_ADDR", "SIZE") => cf::PREFETCH_SIZE,
        ("ATC_INV", "SIZE") => cf::ATC_SIZE,
        (_, "GLOBAL") => cf::GLOBAL,
        (_, "GRPID") => cf::PRG_INDEX,
        ("PRI_RESP", "RESP") => cf::PRI_RESPONSE,
        ("RESUME", "RESP") => cf::RESUME_RESP,
        (_, "STAG") => cf::STAG,
        (_, "CS") => cf::CS,
        (_, "MSH") => cf::MSH,
        (_, "MSIATTR") => cf::MSI_ATTR,
        (_, "MSIDATA") => cf::MSI_DATA,
        (_, "MSIADDR") => cf::MSI_ADDRESS,
        _ => panic!("no crate field for {command}.{key}"),
    }
}

#[test]
fn commands_match_json() {
    let j = json();
    let c = &j["commands"];
    let mut rep = Report::default();
    assert_eq!(cmd::Cmd::SIZE as u64, c["entry_bytes"].as_u64().unwrap());
    rep.field("CMD.opcode", &cf::OPCODE, &c["common"]["OP"]);
    rep.field("CMD.SSV", &cf::SSV, &c["common"]["SSV"]);
    let mut opcodes = 0;
    for (name, op) in c["opcodes"].as_object().unwrap() {
        let op = hex(op) as u8;
        let spec_name = c[name]["spec_name"].as_str().unwrap_or(name);
        if name == "CFGI_ALL" {
            assert_eq!(opcode::CFGI_ALL, op);
            assert_eq!(cmd::Command::CfgiAll.name(), spec_name);
        } else {
            assert_eq!(cmd::opcode_name(op), Some(spec_name), "opcode {op:#x}");
        }
        opcodes += 1;
        let Some(fields) = c[name].get("fields").and_then(Value::as_object) else {
            continue;
        };
        for (key, entry) in fields {
            let ours = command_field(name, key);
            rep.field(&format!("{spec_name}.{key}"), &ours, entry);
            // The printer lists the field for this command.
            assert!(
                cmd::fields_of(op, name == "CFGI_ALL").contains(&ours),
                "{spec_name}: {key} not in its field list"
            );
        }
    }
    assert_eq!(opcodes, 35);
    // Reserved opcodes are refused; the IMPLEMENTATION DEFINED range is not named.
    for op in 0u8..=0xff {
        let known = c["opcodes"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| hex(v) as u8 == op);
        assert_eq!(cmd::opcode_name(op).is_some(), known, "opcode {op:#x}");
    }
    let v = &c["values"];
    use cmd::{PriResponse, ResumeAction, SyncSignal, TlbiGranule};
    assert_eq!(
        SyncSignal::None.encode(),
        v["CMD_SYNC_CS"]["NONE"].as_u64().unwrap()
    );
    assert_eq!(
        SyncSignal::Irq.encode(),
        v["CMD_SYNC_CS"]["IRQ"].as_u64().unwrap()
    );
    assert_eq!(
        SyncSignal::Sev.encode(),
        v["CMD_SYNC_CS"]["SEV"].as_u64().unwrap()
    );
    assert!(SyncSignal::decode(v["CMD_SYNC_CS"]["RESERVED_ILL"].as_u64().unwrap()).is_err());
    assert_eq!(
        ResumeAction::Terminate.encode(),
        v["RESUME_RESP"]["TERM"].as_u64().unwrap()
    );
    assert_eq!(
        ResumeAction::Retry.encode(),
        v["RESUME_RESP"]["RETRY"].as_u64().unwrap()
    );
    assert_eq!(
        ResumeAction::Abort.encode(),
        v["RESUME_RESP"]["ABORT"].as_u64().unwrap()
    );
    assert_eq!(
        PriResponse::Failure.encode(),
        v["PRI_RESP"]["DENY"].as_u64().unwrap()
    );
    assert_eq!(
        PriResponse::Invalid.encode(),
        v["PRI_RESP"]["FAIL"].as_u64().unwrap()
    );
    assert_eq!(
        PriResponse::Success.encode(),
        v["PRI_RESP"]["SUCC"].as_u64().unwrap()
    );
    assert_eq!(
        TlbiGranule::Size4K.encode(),
        v["TLBI_TG"]["G4K"].as_u64().unwrap()
    );
    assert_eq!(
        TlbiGranule::Size16K.encode(),
        v["TLBI_TG"]["G16K"].as_u64().unwrap()
    );
    assert_eq!(
        TlbiGranule::Size64K.encode(),
        v["TLBI_TG"]["G64K"].as_u64().unwrap()
    );
    assert_eq!(
        TlbiGranule::None.encode(),
        v["TLBI_TG"]["ANY"].as_u64().unwrap()
    );
    rep.finish(80);
}

/// The crate's field for a JSON event field key.
fn event_field(event: &str, key: &str) -> Field {
    match (event, key) {
        (_, "ID") => ef::EVENT_ID,
        (_, "SSV") => ef::SSV,
        (_, "SSID") => ef::SUBSTREAM_ID,
        (_, "SID") => ef::STREAM_ID,
        ("F_CFG_CONFLICT", "REASON") => ef::REASON32,
        (_, "REASON") => ef::REASON,
        (_, "GPCF") => ef::GPCF,
        (_, "STAG") => ef::STAG,
        (_, "STALL") => ef::STALL,
        (_, "PnU") => ef::PNU,
        (_, "InD") => ef::IND,
        (_, "RnW") => ef::RNW,
        (_, "S2") => ef::S2,
        (_, "CLASS") => ef::CLASS,
        (_, "TT_READ") => ef::TT_RNW,
        ("E_PAGE_REQUEST", "ADDR") => ef::PAGE_ADDR,
        (_, "ADDR") => ef::INPUT_ADDR,
        (_, "FETCH_ADDR") => ef::FETCH_ADDR,
        (_, "IPA") => ef::IPA,
        (_, "uX") => ef::UX,
        (_, "uW") => ef::UW,
        (_, "uR") => ef::UR,
        (_, "pX") => ef::PX,
        (_, "pW") => ef::PW,
        (_, "pR") => ef::PR,
        (_, "SPAN") => ef::SPAN,
        _ => panic!("no crate field for {event}.{key}"),
    }
}

#[test]
fn events_and_pri_records_match_json() {
    let j = json();
    let e = &j["events"];
    let mut rep = Report::default();
    assert_eq!(
        event::EventRecord::SIZE as u64,
        e["entry_bytes"].as_u64().unwrap()
    );
    for (name, ev) in e["ids"].as_object().unwrap() {
        let id_text = ev["id"].as_str().unwrap();
        if let Some((lo, hi)) = id_text.split_once('-') {
            assert_eq!(u64::from(event_id::IMPDEF_FIRST), hex(&Value::from(lo)));
            assert_eq!(u64::from(event_id::IMPDEF_LAST), hex(&Value::from(hi)));
            continue;
        }
        let id = hex(&ev["id"]) as u8;
        assert_eq!(event::event_name(id), Some(name.as_str()), "event {id:#x}");
        for (key, entry) in ev
            .get("fields")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let ours = event_field(name, key);
            rep.field(&format!("{name}.{key}"), &ours, entry);
            assert!(
                event::fields_of(id).contains(&ours),
                "{name}: {key} not in its field list"
            );
        }
    }
    for (key, entry) in e["record_fields"].as_object().unwrap() {
        rep.field(&format!("EVENT.{key}"), &event_field("", key), entry);
    }
    let v = &e["values"]["CLASS"];
    use event::FaultClass;
    assert_eq!(FaultClass::Cd.encode(), v["CD_FETCH"].as_u64().unwrap());
    assert_eq!(
        FaultClass::TableWalk.encode(),
        v["TT_FETCH"].as_u64().unwrap()
    );
    assert_eq!(
        FaultClass::Input.encode(),
        v["INPUT_ADDR"].as_u64().unwrap()
    );
    assert!(FaultClass::decode(v["RESERVED"].as_u64().unwrap()).is_err());

    let p = &j["priq"];
    assert_eq!(
        pri::PriRecord::SIZE as u64,
        p["entry_bytes"].as_u64().unwrap()
    );
    use pri::fields as pf;
    for (key, ours) in [
        ("SID", pf::STREAM_ID),
        ("SSID", pf::SUBSTREAM_ID),
        ("PERM_PRIV", pf::PRIV),
        ("PERM_EXEC", pf::EXEC),
        ("PERM_READ", pf::READ),
        ("PERM_WRITE", pf::WRITE),
        ("PRG_LAST", pf::LAST),
        ("SSID_V", pf::SSV),
        ("PRG_IDX", pf::PRG_INDEX),
        ("ADDR", pf::ADDRESS),
    ] {
        rep.field(&format!("PRI.{key}"), &ours, &p["fields"][key]);
    }
    rep.finish(70);
}

#[test]
fn msi_configuration_registers_match_json() {
    let j = json();
    let m = &j["msi_cfg"];
    for reg in ["GERROR_IRQ_CFG0", "EVTQ_IRQ_CFG0", "PRIQ_IRQ_CFG0"] {
        let r = RegisterInfo::by_name(reg).unwrap();
        let f = r.fields.iter().find(|f| f.name == "ADDR").unwrap();
        assert_eq!((f.hi(), f.shift), hi_lo(&m["CFG0"]["ADDR"]), "{reg}.ADDR");
    }
    for reg in ["GERROR_IRQ_CFG2", "EVTQ_IRQ_CFG2", "PRIQ_IRQ_CFG2"] {
        let r = RegisterInfo::by_name(reg).unwrap();
        let spec_names = &j["registers"][reg]["field_spec_name"];
        for (key, bits) in m["CFG2"].as_object().unwrap() {
            let name = spec_names.get(key).and_then(Value::as_str).unwrap_or(key);
            let f = r
                .fields
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{reg}.{name}"));
            assert_eq!((f.hi(), f.shift), hi_lo(bits), "{reg}.{key}");
        }
    }
}

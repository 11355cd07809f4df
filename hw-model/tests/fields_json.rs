//! Compares the model's own field constants (SPEC M6) with `testdata/smmuv3-fields.json`.
//! Positions the JSON marks as "not found" in the spec text (figures not rendered) or
//! "unconfirmed" are reported, not asserted.
use serde_json::Value;
use smmu_model::fields::{cd, cmd, evt, l1std, priq, reg, ste, Field};

fn json() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/smmuv3-fields.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).expect("fields JSON")).expect("valid JSON")
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().expect("hex string");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

struct Check {
    asserted: usize,
    unconfirmed: Vec<String>,
}

impl Check {
    /// `j` is a JSON field object {qword, bits:[hi,lo], spec?, status?}; `spec_override` is the
    /// parent's per-field spec (registers).
    fn field(&mut self, name: &str, j: &Value, f: Field, spec_override: Option<&Value>) {
        let bits = j["bits"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: bits"));
        let (hi, lo) = (bits[0].as_u64().unwrap(), bits[1].as_u64().unwrap());
        let qword = j.get("qword").and_then(Value::as_u64).unwrap_or(0);
        let spec = spec_override
            .or_else(|| j.get("spec"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let status = j.get("status").and_then(Value::as_str).unwrap_or("");
        let ours = (u64::from(f.qword), u64::from(f.hi), u64::from(f.lo));
        if spec == "not found" || status == "unconfirmed" {
            let agree = if ours == (qword, hi, lo) {
                "agrees"
            } else {
                "DIFFERS"
            };
            self.unconfirmed.push(format!(
                "{name}: position not confirmed in the spec text; JSON q{qword}[{hi}:{lo}], model q{}[{}:{}] ({agree})",
                f.qword, f.hi, f.lo
            ));
            return;
        }
        assert_eq!(ours, (qword, hi, lo), "{name} (spec {spec})");
        self.asserted += 1;
    }
}

#[test]
fn model_constants_match_fields_json() {
    let j = json();
    let mut c = Check {
        asserted: 0,
        unconfirmed: Vec::new(),
    };

    // Register offsets (page 1 registers at +0x10000).
    let regs: &[(&str, u64)] = &[
        ("IDR0", reg::IDR0),
        ("IDR1", reg::IDR1),
        ("IDR2", reg::IDR2),
        ("IDR3", reg::IDR3),
        ("IDR4", reg::IDR4),
        ("IDR5", reg::IDR5),
        ("IIDR", reg::IIDR),
        ("AIDR", reg::AIDR),
        ("CR0", reg::CR0),
        ("CR0ACK", reg::CR0ACK),
        ("CR1", reg::CR1),
        ("CR2", reg::CR2),
        ("STATUSR", reg::STATUSR),
        ("GBPA", reg::GBPA),
        ("AGBPA", reg::AGBPA),
        ("IRQ_CTRL", reg::IRQ_CTRL),
        ("IRQ_CTRLACK", reg::IRQ_CTRLACK),
        ("GERROR", reg::GERROR),
        ("GERRORN", reg::GERRORN),
        ("GERROR_IRQ_CFG0", reg::GERROR_IRQ_CFG0),
        ("GERROR_IRQ_CFG1", reg::GERROR_IRQ_CFG1),
        ("GERROR_IRQ_CFG2", reg::GERROR_IRQ_CFG2),
        ("STRTAB_BASE", reg::STRTAB_BASE),
        ("STRTAB_BASE_CFG", reg::STRTAB_BASE_CFG),
        ("CMDQ_BASE", reg::CMDQ_BASE),
        ("CMDQ_PROD", reg::CMDQ_PROD),
        ("CMDQ_CONS", reg::CMDQ_CONS),
        ("EVTQ_BASE", reg::EVTQ_BASE),
        ("EVTQ_PROD", reg::EVTQ_PROD),
        ("EVTQ_CONS", reg::EVTQ_CONS),
        ("EVTQ_IRQ_CFG0", reg::EVTQ_IRQ_CFG0),
        ("EVTQ_IRQ_CFG1", reg::EVTQ_IRQ_CFG1),
        ("EVTQ_IRQ_CFG2", reg::EVTQ_IRQ_CFG2),
        ("PRIQ_BASE", reg::PRIQ_BASE),
        ("PRIQ_PROD", reg::PRIQ_PROD),
        ("PRIQ_CONS", reg::PRIQ_CONS),
        ("PRIQ_IRQ_CFG0", reg::PRIQ_IRQ_CFG0),
        ("PRIQ_IRQ_CFG1", reg::PRIQ_IRQ_CFG1),
        ("PRIQ_IRQ_CFG2", reg::PRIQ_IRQ_CFG2),
        ("MPAMIDR", reg::MPAMIDR),
        ("IDREGS", reg::IDREGS),
    ];
    for (name, off) in regs {
        let r = &j["registers"][name];
        let page = r["page"].as_u64().unwrap_or(0);
        assert_eq!(
            hex(&r["offset"]) + page * reg::PAGE1,
            *off,
            "offset of {name}"
        );
        c.asserted += 1;
    }
    assert_eq!(hex(&j["register_pages"]["page1_base"]), reg::PAGE1);

    // Register fields the model decodes.
    let rf: &[(&str, &str, Field)] = &[
        ("IDR0", "S2P", reg::IDR0_S2P),
        ("IDR0", "S1P", reg::IDR0_S1P),
        ("IDR0", "TTF", reg::IDR0_TTF),
        ("IDR0", "COHACC", reg::IDR0_COHACC),
        ("IDR0", "BTM", reg::IDR0_BTM),
        ("IDR0", "HTTU", reg::IDR0_HTTU),
        ("IDR0", "DORMHINT", reg::IDR0_DORMHINT),
        ("IDR0", "HYP", reg::IDR0_HYP),
        ("IDR0", "ATS", reg::IDR0_ATS),
        ("IDR0", "NS1ATS", reg::IDR0_NS1ATS),
        ("IDR0", "ASID16", reg::IDR0_ASID16),
        ("IDR0", "MSI", reg::IDR0_MSI),
        ("IDR0", "SEV", reg::IDR0_SEV),
        ("IDR0", "ATOS", reg::IDR0_ATOS),
        ("IDR0", "PRI", reg::IDR0_PRI),
        ("IDR0", "VMW", reg::IDR0_VMW),
        ("IDR0", "VMID16", reg::IDR0_VMID16),
        ("IDR0", "CD2L", reg::IDR0_CD2L),
        ("IDR0", "TTENDIAN", reg::IDR0_TTENDIAN),
        ("IDR0", "STALL_MODEL", reg::IDR0_STALL_MODEL),
        ("IDR0", "TERM_MODEL", reg::IDR0_TERM_MODEL),
        ("IDR0", "ST_LVL", reg::IDR0_ST_LVL),
        ("IDR1", "SIDSIZE", reg::IDR1_SIDSIZE),
        ("IDR1", "SSIDSIZE", reg::IDR1_SSIDSIZE),
        ("IDR1", "PRIQS", reg::IDR1_PRIQS),
        ("IDR1", "EVTQS", reg::IDR1_EVTQS),
        ("IDR1", "CMDQS", reg::IDR1_CMDQS),
        ("IDR3", "HAD", reg::IDR3_HAD),
        ("IDR3", "MPAM", reg::IDR3_MPAM),
        ("IDR3", "STT", reg::IDR3_STT),
        ("IDR3", "RIL", reg::IDR3_RIL),
        ("IDR3", "BBM", reg::IDR3_BBM),
        ("IDR5", "OAS", reg::IDR5_OAS),
        ("IDR5", "GRAN4K", reg::IDR5_GRAN4K),
        ("IDR5", "DS", reg::IDR5_DS),
        ("IDR5", "GRAN16K", reg::IDR5_GRAN16K),
        ("IDR5", "GRAN64K", reg::IDR5_GRAN64K),
        ("IDR5", "VAX", reg::IDR5_VAX),
        ("GERROR_IRQ_CFG0", "ADDR", reg::IRQ_CFG0_ADDR),
        ("STRTAB_BASE", "ADDR", reg::STRTAB_BASE_ADDR),
        ("STRTAB_BASE", "RA", reg::STRTAB_BASE_RA),
        ("STRTAB_BASE_CFG", "LOG2SIZE", reg::STRTAB_CFG_LOG2SIZE),
        ("STRTAB_BASE_CFG", "SPLIT", reg::STRTAB_CFG_SPLIT),
        ("STRTAB_BASE_CFG", "FMT", reg::STRTAB_CFG_FMT),
        ("CMDQ_BASE", "LOG2SIZE", reg::Q_BASE_LOG2SIZE),
        ("CMDQ_BASE", "ADDR", reg::Q_BASE_ADDR),
        ("CMDQ_BASE", "RA", reg::Q_BASE_RA),
        ("CMDQ_CONS", "ERR", reg::CMDQ_CONS_ERR),
    ];
    for (r, name, f) in rf {
        let bits = &j["registers"][r]["fields"][name];
        let spec = j["registers"][r]
            .get("field_spec")
            .and_then(|s| s.get(name));
        let obj = serde_json::json!({ "qword": 0, "bits": bits, "spec": spec });
        c.field(&format!("{r}.{name}"), &obj, *f, None);
    }
    // Single-bit register masks.
    let bitmask: &[(&str, &str, u32)] = &[
        ("CR0", "SMMUEN", reg::CR0_SMMUEN),
        ("CR0", "PRIQEN", reg::CR0_PRIQEN),
        ("CR0", "EVTQEN", reg::CR0_EVTQEN),
        ("CR0", "CMDQEN", reg::CR0_CMDQEN),
        ("CR0", "ATSCHK", reg::CR0_ATSCHK),
        ("CR0", "VMW", reg::CR0_VMW),
        ("CR2", "E2H", reg::CR2_E2H),
        ("CR2", "RECINVSID", reg::CR2_RECINVSID),
        ("CR2", "PTM", reg::CR2_PTM),
        ("GBPA", "UPDATE", reg::GBPA_UPDATE),
        ("GBPA", "ABORT", reg::GBPA_ABORT),
        ("IRQ_CTRL", "GERROR_IRQEN", reg::IRQ_GERROR),
        ("IRQ_CTRL", "PRIQ_IRQEN", reg::IRQ_PRIQ),
        ("IRQ_CTRL", "EVTQ_IRQEN", reg::IRQ_EVTQ),
        ("GERROR", "CMDQ_ERR", reg::GERROR_CMDQ_ERR),
        ("GERROR", "EVTQ_ABT_ERR", reg::GERROR_EVTQ_ABT_ERR),
        ("GERROR", "PRIQ_ABT_ERR", reg::GERROR_PRIQ_ABT_ERR),
        ("GERROR", "MSI_CMDQ_ABT_ERR", reg::GERROR_MSI_CMDQ_ABT_ERR),
        ("GERROR", "MSI_EVTQ_ABT_ERR", reg::GERROR_MSI_EVTQ_ABT_ERR),
        ("GERROR", "MSI_PRIQ_ABT_ERR", reg::GERROR_MSI_PRIQ_ABT_ERR),
        (
            "GERROR",
            "MSI_GERROR_ABT_ERR",
            reg::GERROR_MSI_GERROR_ABT_ERR,
        ),
        ("GERROR", "SFM_ERR", reg::GERROR_SFM_ERR),
        ("STATUSR", "DORMANT", reg::STATUSR_DORMANT),
        ("EVTQ_PROD", "OVFLG", reg::Q_OVF),
        ("EVTQ_CONS", "OVACKFLG", reg::Q_OVF),
    ];
    for (r, name, m) in bitmask {
        let b = j["registers"][r]["fields"][name]
            .as_array()
            .unwrap_or_else(|| panic!("{r}.{name}"));
        let (hi, lo) = (b[0].as_u64().unwrap(), b[1].as_u64().unwrap());
        let want = (((1u64 << (hi - lo + 1)) - 1) << lo) as u32;
        assert_eq!(want, *m, "{r}.{name}");
        c.asserted += 1;
    }
    let cr1 = &j["registers"]["CR1"]["fields"];
    assert_eq!(cr1["QUEUE_SH"][0].as_u64(), Some(5));
    assert_eq!(cr1["TABLE_IC"][1].as_u64(), Some(6));
    assert_eq!(cr1["TABLE_SH"][0].as_u64(), Some(11));

    // Structures.
    let st: &[(&str, Field)] = &[
        ("V", ste::V),
        ("CFG", ste::CONFIG),
        ("S1FMT", ste::S1FMT),
        ("S1CTXPTR", ste::S1CTXPTR),
        ("S1CDMAX", ste::S1CDMAX),
        ("S1DSS", ste::S1DSS),
        ("S1CIR", ste::S1CIR),
        ("S1COR", ste::S1COR),
        ("S1CSH", ste::S1CSH),
        ("MEV", ste::MEV),
        ("S2FWB", ste::S2FWB),
        ("S1STALLD", ste::S1STALLD),
        ("EATS", ste::EATS),
        ("STRW", ste::STRW),
        ("MemAttr", ste::MEMATTR),
        ("SHCFG", ste::SHCFG),
        ("PRIVCFG", ste::PRIVCFG),
        ("INSTCFG", ste::INSTCFG),
        ("S2VMID", ste::S2VMID),
        ("VTCR.S2T0SZ", ste::S2T0SZ),
        ("VTCR.S2SL0", ste::S2SL0),
        ("VTCR.S2TG", ste::S2TG),
        ("VTCR.S2PS", ste::S2PS),
        ("S2AA64", ste::S2AA64),
        ("S2ENDI", ste::S2ENDI),
        ("S2AFFD", ste::S2AFFD),
        ("S2PTW", ste::S2PTW),
        ("S2HD", ste::S2HD),
        ("S2HA", ste::S2HA),
        ("S2S", ste::S2S),
        ("S2R", ste::S2R),
        ("S2TTB", ste::S2TTB),
    ];
    for (n, f) in st {
        c.field(&format!("STE.{n}"), &j["ste"]["fields"][n], *f, None);
    }
    let cdf: &[(&str, Field)] = &[
        ("T0SZ", cd::T0SZ),
        ("TG0", cd::TG0),
        ("EPD0", cd::EPD0),
        ("ENDI", cd::ENDI),
        ("T1SZ", cd::T1SZ),
        ("TG1", cd::TG1),
        ("EPD1", cd::EPD1),
        ("V", cd::V),
        ("IPS", cd::IPS),
        ("AFFD", cd::AFFD),
        ("WXN", cd::WXN),
        ("UWXN", cd::UWXN),
        ("TBI0", cd::TBI0),
        ("TBI1", cd::TBI1),
        ("PAN", cd::PAN),
        ("AA64", cd::AA64),
        ("HD", cd::HD),
        ("HA", cd::HA),
        ("S", cd::S),
        ("R", cd::R),
        ("A", cd::A),
        ("ASET", cd::ASET),
        ("ASID", cd::ASID),
        ("HAD0", cd::HAD0),
        ("TTB0", cd::TTB0),
        ("HAD1", cd::HAD1),
        ("TTB1", cd::TTB1),
        ("MAIR0", cd::MAIR0),
    ];
    for (n, f) in cdf {
        c.field(&format!("CD.{n}"), &j["cd"]["fields"][n], *f, None);
    }
    c.field(
        "L1CD.V",
        &j["cd"]["l1_descriptor"]["fields"]["V"],
        cd::L1CD_V,
        None,
    );
    c.field(
        "L1CD.L2PTR",
        &j["cd"]["l1_descriptor"]["fields"]["L2PTR"],
        cd::L1CD_L2PTR,
        None,
    );
    c.field(
        "L1STD.SPAN",
        &j["strtab_l1"]["fields"]["SPAN"],
        l1std::SPAN,
        None,
    );
    c.field(
        "L1STD.L2PTR",
        &j["strtab_l1"]["fields"]["L2PTR"],
        l1std::L2PTR,
        None,
    );

    // Commands: opcodes, then fields.
    let ops: &[(&str, u8)] = &[
        ("PREFETCH_CFG", cmd::PREFETCH_CFG),
        ("PREFETCH_ADDR", cmd::PREFETCH_ADDR),
        ("CFGI_STE", cmd::CFGI_STE),
        ("CFGI_STE_RANGE", cmd::CFGI_STE_RANGE),
        ("CFGI_ALL", cmd::CFGI_STE_RANGE),
        ("CFGI_CD", cmd::CFGI_CD),
        ("CFGI_CD_ALL", cmd::CFGI_CD_ALL),
        ("CFGI_VMS_PIDM", cmd::CFGI_VMS_PIDM),
        ("TLBI_NH_ALL", cmd::TLBI_NH_ALL),
        ("TLBI_NH_ASID", cmd::TLBI_NH_ASID),
        ("TLBI_NH_VA", cmd::TLBI_NH_VA),
        ("TLBI_NH_VAA", cmd::TLBI_NH_VAA),
        ("TLBI_EL3_ALL", cmd::TLBI_EL3_ALL),
        ("TLBI_EL3_VA", cmd::TLBI_EL3_VA),
        ("TLBI_EL2_ALL", cmd::TLBI_EL2_ALL),
        ("TLBI_EL2_ASID", cmd::TLBI_EL2_ASID),
        ("TLBI_EL2_VA", cmd::TLBI_EL2_VA),
        ("TLBI_EL2_VAA", cmd::TLBI_EL2_VAA),
        ("TLBI_S12_VMALL", cmd::TLBI_S12_VMALL),
        ("TLBI_S2_IPA", cmd::TLBI_S2_IPA),
        ("TLBI_NSNH_ALL", cmd::TLBI_NSNH_ALL),
        ("ATC_INV", cmd::ATC_INV),
        ("PRI_RESP", cmd::PRI_RESP),
        ("RESUME", cmd::RESUME),
        ("STALL_TERM", cmd::STALL_TERM),
        ("CMD_SYNC", cmd::SYNC),
    ];
    for (n, o) in ops {
        assert_eq!(
            hex(&j["commands"]["opcodes"][n]),
            u64::from(*o),
            "opcode {n}"
        );
        c.asserted += 1;
    }
    c.field("CMD.OP", &j["commands"]["common"]["OP"], cmd::OP, None);
    c.field("CMD.SSV", &j["commands"]["common"]["SSV"], cmd::SSV, None);
    let cf: &[(&str, &str, Field)] = &[
        ("CFGI_STE", "SID", cmd::SID),
        ("CFGI_STE", "LEAF", cmd::LEAF),
        ("CFGI_STE_RANGE", "RANGE", cmd::RANGE),
        ("CFGI_CD", "SSID", cmd::SSID),
        ("TLBI_NH_VA", "NUM", cmd::NUM),
        ("TLBI_NH_VA", "SCALE", cmd::SCALE),
        ("TLBI_NH_VA", "VMID", cmd::VMID),
        ("TLBI_NH_VA", "ASID", cmd::ASID),
        ("TLBI_NH_VA", "TTL", cmd::TTL),
        ("TLBI_NH_VA", "TG", cmd::TG),
        ("TLBI_NH_VA", "ADDR", cmd::ADDR),
        ("CMD_SYNC", "CS", cmd::SYNC_CS),
        ("CMD_SYNC", "MSH", cmd::SYNC_MSH),
        ("CMD_SYNC", "MSIATTR", cmd::SYNC_MSIATTR),
        ("CMD_SYNC", "MSIDATA", cmd::SYNC_MSIDATA),
        ("CMD_SYNC", "MSIADDR", cmd::SYNC_MSIADDR),
    ];
    for (o, n, f) in cf {
        c.field(
            &format!("{o}.{n}"),
            &j["commands"][o]["fields"][n],
            *f,
            None,
        );
    }
    c.unconfirmed.push(
        "CMD.SSEC: bit 10 is the model's reading of the command figures; the JSON has no entry"
            .into(),
    );
    let queues = &j["queues"]["cmdq_errors"];
    assert_eq!(
        queues["CERROR_ILL"].as_u64(),
        Some(u64::from(cmd::CERROR_ILL))
    );
    assert_eq!(
        queues["CERROR_ABT"].as_u64(),
        Some(u64::from(cmd::CERROR_ABT))
    );
    assert_eq!(
        queues["CERROR_ATC_INV_SYNC"].as_u64(),
        Some(u64::from(cmd::CERROR_ATC_INV_SYNC))
    );

    // Events.
    let ids: &[(&str, u8)] = &[
        ("F_UUT", evt::F_UUT),
        ("C_BAD_STREAMID", evt::C_BAD_STREAMID),
        ("F_STE_FETCH", evt::F_STE_FETCH),
        ("C_BAD_STE", evt::C_BAD_STE),
        ("F_STREAM_DISABLED", evt::F_STREAM_DISABLED),
        ("F_BAD_ATS_TREQ", evt::F_BAD_ATS_TREQ),
        ("F_TRANSL_FORBIDDEN", evt::F_TRANSL_FORBIDDEN),
        ("C_BAD_SUBSTREAMID", evt::C_BAD_SUBSTREAMID),
        ("F_CD_FETCH", evt::F_CD_FETCH),
        ("C_BAD_CD", evt::C_BAD_CD),
        ("F_WALK_EABT", evt::F_WALK_EABT),
        ("F_TRANSLATION", evt::F_TRANSLATION),
        ("F_ADDR_SIZE", evt::F_ADDR_SIZE),
        ("F_ACCESS", evt::F_ACCESS),
        ("F_PERMISSION", evt::F_PERMISSION),
    ];
    for (n, id) in ids {
        assert_eq!(
            hex(&j["events"]["ids"][n]["id"]),
            u64::from(*id),
            "event {n}"
        );
        c.asserted += 1;
    }
    let ef: &[(&str, Field)] = &[
        ("ID", evt::ID),
        ("SSV", evt::SSV),
        ("SSID", evt::SSID),
        ("SID", evt::SID),
        ("REASON", evt::REASON),
        ("STALL", evt::STALL),
        ("PnU", evt::PNU),
        ("InD", evt::IND),
        ("RnW", evt::RNW),
        ("S2", evt::S2),
        ("CLASS", evt::CLASS),
        ("TT_READ", evt::TTRNW),
        ("ADDR", evt::INPUT_ADDR),
        ("FETCH_ADDR", evt::FETCH_ADDR),
        ("IPA", evt::IPA),
    ];
    for (n, f) in ef {
        c.field(
            &format!("EVT.{n}"),
            &j["events"]["record_fields"][n],
            *f,
            None,
        );
    }
    let pf: &[(&str, Field)] = &[
        ("SID", priq::SID),
        ("SSID", priq::SSID),
        ("PERM_PRIV", priq::PRIV),
        ("PERM_EXEC", priq::EXEC),
        ("PERM_READ", priq::READ),
        ("PERM_WRITE", priq::WRITE),
        ("PRG_LAST", priq::LAST),
        ("SSID_V", priq::SSV),
        ("PRG_IDX", priq::PRG_IDX),
        ("ADDR", priq::ADDR),
    ];
    for (n, f) in pf {
        c.field(&format!("PRIQ.{n}"), &j["priq"]["fields"][n], *f, None);
    }
    assert_eq!(j["ste"]["size_bytes"].as_u64(), Some(64));
    assert_eq!(j["cd"]["size_bytes"].as_u64(), Some(64));
    assert_eq!(j["queues"]["entry_bytes"]["EVTQ"].as_u64(), Some(32));
    assert_eq!(j["queues"]["entry_bytes"]["CMDQ"].as_u64(), Some(16));

    for u in &c.unconfirmed {
        println!("unconfirmed: {u}");
    }
    assert!(
        c.unconfirmed.iter().all(|u| !u.contains("DIFFERS")),
        "{:#?}",
        c.unconfirmed
    );
    println!(
        "{} positions asserted, {} reported as unconfirmed",
        c.asserted,
        c.unconfirmed.len()
    );
    assert!(c.asserted > 150);
}

//! `smmuctl decode` as a person runs it.

mod common;
use common::*;

#[test]
fn bypass_ste_reports_v_config_and_kind() {
    let v = json(&[
        "decode", "ste", "0x9", "0", "0", "0", "0", "0", "0", "0", "--json",
    ]);
    assert_eq!(v["V"], 1);
    assert_eq!(v["Config"], 4);
    assert_eq!(v["kind"], "bypass");
    // Every key but "kind" is a spec field name with an integer value.
    for (k, val) in v.as_object().unwrap() {
        assert!(k == "kind" || val.is_u64(), "{k} = {val}");
    }
    assert!(
        v.get("S1ContextPtr").is_some() && v.get("S2VMID").is_some() && v.get("EATS").is_some()
    );
}

#[test]
fn abort_ste_and_human_output() {
    let v = json(&[
        "decode", "ste", "0x1", "0", "0", "0", "0", "0", "0", "0", "--json",
    ]);
    assert_eq!(v["kind"], "abort");
    let out = smmuctl(&["decode", "ste", "0x9", "0", "0", "0", "0", "0", "0", "0"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Config") && text.contains("= 0b100 (bypass)"),
        "{text}"
    );
}

#[test]
fn stage1_ste_built_by_the_crate_decodes_to_its_fields() {
    use smmu::arch::ste::{S1Dss, S1Fmt, Stage1Ste, SteConfig, Translation};
    use smmu::arch::{Cacheability, Shareability};
    let cfg = SteConfig {
        translation: Translation::Stage1(Stage1Ste {
            context_ptr: 0x8_1234_5640,
            fmt: S1Fmt::Linear,
            cd_max: 0,
            dss: S1Dss::Terminate,
            cir: Cacheability::WriteBackAllocate,
            cor: Cacheability::WriteBackAllocate,
            csh: Shareability::Inner,
            stall_disable: true,
        }),
        s2vmid: 5,
        ..SteConfig::ABORT
    };
    let words: Vec<String> = cfg
        .encode()
        .to_words()
        .iter()
        .map(|w| format!("{w:#x}"))
        .collect();
    let mut args = vec!["decode", "ste"];
    args.extend(words.iter().map(String::as_str));
    args.push("--json");
    let v = json(&args);
    assert_eq!(v["kind"], "s1-translate");
    assert_eq!(v["S1ContextPtr"], 0x8_1234_5640u64 >> 6);
    assert_eq!(v["S2VMID"], 5);
    assert_eq!(v["S1STALLD"], 1);
}

#[test]
fn commands_events_and_registers() {
    let v = json(&["decode", "cmd", "0x46", "0", "--json"]);
    assert_eq!(v["kind"], "CMD_SYNC");
    assert_eq!(v["opcode"], 0x46);
    let v = json(&["decode", "cmd", "0x4", "0x1f", "--json"]);
    assert_eq!(v["kind"], "CMD_CFGI_ALL");
    let v = json(&[
        "decode",
        "event",
        "0x500000010",
        "0",
        "0x1000",
        "0",
        "--json",
    ]);
    assert_eq!(v["kind"], "F_TRANSLATION");
    assert_eq!(v["StreamID"], 5);
    assert_eq!(v["InputAddr"], 0x1000);
    let v = json(&["decode", "reg", "CR0", "0xd", "--json"]);
    assert_eq!(v["SMMUEN"], 1);
    assert_eq!(v["CMDQEN"], 1);
    assert_eq!(v["EVENTQEN"], 1);
    assert_eq!(v["PRIQEN"], 0);
    let v = json(&["decode", "reg", "SMMU_STRTAB_BASE_CFG", "0x10210", "--json"]);
    assert_eq!(v["FMT"], 1);
    assert_eq!(v["SPLIT"], 8);
    assert_eq!(v["LOG2SIZE"], 16);
    let v = json(&["decode", "l1std", "0x80004009", "--json"]);
    assert_eq!(v["Span"], 9);
    assert_eq!(v["kind"], "valid");
}

#[test]
fn reserved_encodings_are_shown_with_the_error() {
    let v = json(&[
        "decode", "ste", "0x3", "0", "0", "0", "0", "0", "0", "0", "--json",
    ]);
    assert_eq!(v["kind"], "illegal");
    assert!(v["error"].as_str().unwrap().contains("Config"));
}

#[test]
fn malformed_calls_exit_2_with_one_line() {
    for args in [
        &["decode", "ste", "0x9", "0"][..],
        &["decode", "cmd", "0xzz", "0"],
        &["decode", "reg", "NOT_A_REGISTER", "1"],
        &["decode", "reg", "CR0"],
        &["decode", "reg", "CR0", "0x1_0000_0000"],
        &["decode", "nonsense", "1"],
    ] {
        let out = smmuctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!err.trim().is_empty(), "{args:?}: no message");
        assert!(out.stdout.is_empty(), "{args:?}: printed to stdout");
    }
}

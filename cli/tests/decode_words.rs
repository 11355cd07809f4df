//! `smmuctl decode` in the words a person reading a crash dump needs: the specification's
//! register names, what enumerated values mean, set reserved bits, and pointer fields printed as
//! the addresses they hold (issue 15).

mod common;
use common::*;

use serde_json::Value;

fn text(args: &[&str]) -> String {
    let out = smmuctl(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&text(&all)).expect("one JSON object")
}

/// The line of field `name` in a text decode.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

#[test]
fn registers_carry_the_specification_names_and_accept_the_old_spelling() {
    // IHI 0070 G.b §6.3.29-§6.3.32, §6.3.95, §6.3.96 spell the event queue EVENTQ.
    for (old, spec) in [
        ("EVTQ_BASE", "EVENTQ_BASE"),
        ("EVTQ_PROD", "EVENTQ_PROD"),
        ("EVTQ_CONS", "EVENTQ_CONS"),
        ("EVTQ_IRQ_CFG0", "EVENTQ_IRQ_CFG0"),
        ("EVTQ_IRQ_CFG1", "EVENTQ_IRQ_CFG1"),
        ("SMMU_EVTQ_IRQ_CFG2", "EVENTQ_IRQ_CFG2"),
    ] {
        for given in [old, spec, &format!("SMMU_{spec}")] {
            let t = text(&["decode", "reg", given, "0"]);
            let title = t.lines().next().unwrap();
            assert!(
                title.starts_with(&format!("SMMU_{spec} ")),
                "{given}: {title}"
            );
            assert!(!t.contains("EVTQ"), "{given}: old spelling printed:\n{t}");
            assert_eq!(json(&["decode", "reg", given, "0"])["kind"], spec);
        }
    }
}

#[test]
fn enumerated_register_values_are_said_in_words() {
    let t = text(&["decode", "reg", "IDR5", "0x75"]);
    assert!(line(&t, "OAS").ends_with("= 0b101 (48 bits)"), "{t}");
    assert!(line(&t, "GRAN4K").ends_with("= 0b1"), "{t}");

    // IDR0: ST_LEVEL 0b01, STALL_MODEL 0b01, TTENDIAN 0b10, TTF 0b10.
    let idr0 = (0b01 << 27) | (0b01 << 24) | (0b10 << 21) | (0b10 << 2);
    let t = text(&["decode", "reg", "IDR0", &format!("{idr0:#x}")]);
    assert!(
        line(&t, "ST_LEVEL").contains("(2-level Stream table supported"),
        "{t}"
    );
    assert!(
        line(&t, "STALL_MODEL").contains("(stall not supported"),
        "{t}"
    );
    assert!(
        line(&t, "TTENDIAN").contains("(little-endian tables only)"),
        "{t}"
    );
    assert!(line(&t, "TTF").contains("(VMSAv8-64 tables)"), "{t}");
    // The reserved TTENDIAN encoding 0b01 says so.
    let t = text(&["decode", "reg", "IDR0", &format!("{:#x}", 0b01 << 21)]);
    assert!(line(&t, "TTENDIAN").ends_with("(reserved)"), "{t}");

    // IDR1: CMDQS 19, EVENTQS 8, SIDSIZE 16.
    let idr1 = (19 << 21) | (8 << 16) | 16;
    let t = text(&["decode", "reg", "IDR1", &format!("{idr1:#x}")]);
    assert!(line(&t, "CMDQS").contains("(2^19 = 524288 entries"), "{t}");
    assert!(line(&t, "EVENTQS").contains("(2^8 = 256 entries"), "{t}");
    assert!(
        line(&t, "SIDSIZE").contains("(2^16 = 65536 StreamIDs)"),
        "{t}"
    );

    // CR1: tables inner shareable write-back, queues outer shareable write-through.
    let cr1 = (0b11 << 10) | (0b01 << 8) | (0b01 << 6) | (0b10 << 4) | (0b10 << 2) | 0b10;
    let t = text(&["decode", "reg", "CR1", &format!("{cr1:#x}")]);
    assert!(line(&t, "TABLE_SH").ends_with("(inner shareable)"), "{t}");
    assert!(
        line(&t, "TABLE_OC").ends_with("(write-back cacheable)"),
        "{t}"
    );
    assert!(line(&t, "QUEUE_SH").ends_with("(outer shareable)"), "{t}");
    assert!(
        line(&t, "QUEUE_IC").ends_with("(write-through cacheable)"),
        "{t}"
    );

    let t = text(&["decode", "reg", "STRTAB_BASE_CFG", "0x10210"]);
    assert!(line(&t, "FMT").ends_with("(2-level)"), "{t}");
    assert!(line(&t, "SPLIT").contains("16KB level-2 tables"), "{t}");
    assert!(
        line(&t, "LOG2SIZE").contains("(2^16 = 65536 StreamIDs)"),
        "{t}"
    );
    let t = text(&["decode", "reg", "CMDQ_BASE", "0x8"]);
    assert!(line(&t, "LOG2SIZE").contains("(2^8 = 256 entries)"), "{t}");
}

#[test]
fn set_reserved_register_bits_are_warned_about_in_text_and_json() {
    // CR0 bit 5 and bit 16 are RES0 (§6.3.9).
    let t = text(&["decode", "reg", "CR0", "0x10021"]);
    let warning = t
        .lines()
        .find(|l| l.trim_start().starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning:\n{t}"));
    assert!(
        warning.contains("[16], [5]") && warning.contains("RES0"),
        "{warning}"
    );
    let v = json(&["decode", "reg", "CR0", "0x10021"]);
    let w = v["warnings"].as_array().expect("warnings array");
    assert_eq!(w.len(), 1, "{v}");
    assert!(w[0].as_str().unwrap().contains("[16], [5]"), "{v}");
    assert_eq!(v["SMMUEN"], 1);

    // A 64-bit register: STRTAB_BASE bits [63], [61:56], [5:0] are RES0 (§6.3.24).
    let v = json(&["decode", "reg", "STRTAB_BASE", "0x8300_0000_8000_0001"]);
    let w = v["warnings"][0].as_str().expect("a warning");
    assert!(w.contains("[63], [57:56], [0]"), "{w}");

    // A clean value warns about nothing.
    let t = text(&["decode", "reg", "CR0", "0xd"]);
    assert!(!t.contains("warning"), "{t}");
    assert!(json(&["decode", "reg", "CR0", "0xd"])
        .get("warnings")
        .is_none());
}

/// Asserts that `field` prints as `address` in text and carries both forms in JSON.
fn assert_address(args: &[&str], field: &str, address: u64, raw: u64) {
    let t = text(args);
    let l = line(&t, field);
    assert!(
        l.ends_with(&format!("= {address:#x} (address)")),
        "{args:?}: {l}"
    );
    let v = json(args);
    assert_eq!(v[field], raw, "{args:?}: raw {field}");
    assert_eq!(
        v[format!("{field}_address")],
        address,
        "{args:?}: {field}_address"
    );
}

#[test]
fn pointer_fields_print_as_the_addresses_they_hold() {
    // STE: S1ContextPtr is PA[55:6] in word 0 bits [55:6] (§5.2); the example.
    let ste = [
        "decode",
        "ste",
        "0x4316500b",
        "0",
        "0",
        "0x8_0000_1000",
        "0",
        "0",
        "0",
        "0",
    ];
    assert_address(&ste, "S1ContextPtr", 0x4316_5000, 0x10c_5940);
    // S2TTB: word 3 bits [55:4].
    assert_address(&ste, "S2TTB", 0x8_0000_1000, 0x8000_0100);
    // Fields that are not addresses keep their value.
    assert!(line(&text(&ste), "Config").contains("= 0b101"));

    // L1STD L2Ptr [55:6], L1CD L2Ptr [55:12].
    assert_address(
        &["decode", "l1std", "0x80004009"],
        "L2Ptr",
        0x8000_4000,
        0x200_0100,
    );
    assert_address(
        &["decode", "l1cd", "0x90001001"],
        "L2Ptr",
        0x9000_1000,
        0x9_0001,
    );
    // CD TTB0 word 1 [55:4], TTB1 word 2 [55:4].
    let cd = [
        "decode",
        "cd",
        "0x80000000",
        "0x4000_1000",
        "0x5000_2000",
        "0",
        "0",
        "0",
        "0",
        "0",
    ];
    assert_address(&cd, "TTB0", 0x4000_1000, 0x400_0100);
    assert_address(&cd, "TTB1", 0x5000_2000, 0x500_0200);
    // CMD_SYNC MSIAddress: word 1 [55:2].
    assert_address(
        &["decode", "cmd", "0x1046", "0x0800_0044"],
        "MSIAddress",
        0x800_0044,
        0x200_0011,
    );
    // F_TRANSLATION: InputAddr word 2 [63:0], IPA word 3 [55:12].
    let ev = [
        "decode",
        "event",
        "0x500000010",
        "0",
        "0xffff_8000_1234_5678",
        "0x8000_2000",
    ];
    assert_address(
        &ev,
        "InputAddr",
        0xffff_8000_1234_5678,
        0xffff_8000_1234_5678,
    );
    assert_address(&ev, "IPA", 0x8000_2000, 0x8_0002);

    // Registers: STRTAB_BASE.ADDR [55:6], queue bases [55:5], IRQ_CFG0.ADDR [55:2].
    assert_address(
        &["decode", "reg", "STRTAB_BASE", "0x4000_0000_8000_0000"],
        "ADDR",
        0x8000_0000,
        0x200_0000,
    );
    assert_address(
        &["decode", "reg", "EVENTQ_BASE", "0x4000_0000_4316_500a"],
        "ADDR",
        0x4316_5000,
        0x4316_5000 >> 5,
    );
    assert_address(
        &["decode", "reg", "GERROR_IRQ_CFG0", "0x902_0044"],
        "ADDR",
        0x902_0044,
        0x902_0044 >> 2,
    );
}

//! One number syntax for every argument: `0x`, `0b`, `0o`, decimal, `_` between digits.

use std::process::Command;

use serde_json::Value;

fn decode_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_smmuctl"))
        .arg("decode")
        .args(args)
        .arg("--json")
        .output()
        .expect("smmuctl runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn a_word_means_the_same_number_in_every_base() {
    // An L1STD with Span 9 and its level-2 table at 0x8010_0000, written five ways.
    let words = [
        "0x80100009",
        "0x8010_0009",
        "2148532233",
        "0b1000_0000_0001_0000_0000_0000_0000_1001",
        "0o20004000011",
    ];
    let first = decode_json(&["l1std", words[0]]);
    assert_eq!(first["Span"], 9);
    for w in &words[1..] {
        assert_eq!(decode_json(&["l1std", w]), first, "{w}");
    }
    // Bare digits are decimal: "0b1001" is nine, not the hexadecimal 0xb1001.
    assert_eq!(decode_json(&["l1std", "0b1001"])["Span"], 9);
    assert_eq!(decode_json(&["l1std", "9"])["Span"], 9);
}

#[test]
fn a_number_that_is_not_one_says_why_in_one_line() {
    for (arg, says) in [
        ("1f", "write 0x"),
        ("0b12", "binary"),
        ("0x1_0000_0000_0000_0000", "64 bits"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_smmuctl"))
            .args(["decode", "l1std", arg])
            .output()
            .expect("smmuctl runs");
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{arg}: {err}");
    }
}

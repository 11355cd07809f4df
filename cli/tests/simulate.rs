//! `smmuctl simulate kdump` as a person runs it: the crash scenario on the model with each
//! crash-kernel strategy. (The 20-seed acceptance check runs in the `smmu-scenarios` tests.)

mod common;
use common::*;

use serde_json::Value;

const COUNTS: [&str; 6] = [
    "transactions",
    "translated",
    "aborted",
    "bypassed",
    "faulted",
    "misdirected",
];

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

/// The shape every strategy's report has: totals, violations, strategy, seed, verdict and
/// devices whose counts add up to the totals.
fn check_shape(v: &Value, strategy: &str, seed: u64) {
    assert_eq!(v["strategy"], strategy);
    assert_eq!(v["seed"], seed);
    assert!(v["verdict"].is_string(), "{v}");
    count(v, "violations");
    let devices = v["devices"].as_array().expect("devices");
    let names: Vec<&str> = devices
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpu", "nvme", "nic"]);
    for d in devices {
        assert!(d["sids"].as_array().is_some_and(|s| !s.is_empty()), "{d}");
    }
    for key in COUNTS {
        let sum: u64 = devices.iter().map(|d| count(d, key)).sum();
        assert_eq!(
            sum,
            count(v, key),
            "{key}: devices do not add up to the total"
        );
    }
    assert!(count(v, "transactions") > 0, "no DMA in flight: {v}");
}

// spec: K1, K11
#[test]
fn adopt_keeps_in_flight_dma_translated() {
    for seed in [1, 2, 3] {
        let s = seed.to_string();
        let v = json(&[
            "simulate",
            "kdump",
            "--strategy",
            "adopt",
            "--seed",
            &s,
            "--json",
        ]);
        check_shape(&v, "adopt", seed);
        for key in ["aborted", "bypassed", "misdirected", "violations"] {
            assert_eq!(count(&v, key), 0, "seed {seed}: {key} in {v}");
        }
        assert!(count(&v, "translated") > 0, "seed {seed}: {v}");
        for d in v["devices"].as_array().unwrap() {
            assert_eq!(d["deferred_at_probe"], true, "seed {seed}: {d}");
            assert_eq!(d["reattached"], true, "seed {seed}: {d}");
        }
    }
}

#[test]
fn adopt_is_the_default_strategy_and_seed_1_the_default_seed() {
    let v = json(&["simulate", "kdump", "--json"]);
    check_shape(&v, "adopt", 1);
}

#[test]
fn abort_strategy_aborts_in_flight_dma() {
    let v = json(&["simulate", "kdump", "--strategy", "abort", "--json"]);
    check_shape(&v, "abort", 1);
    assert!(count(&v, "aborted") > 0, "{v}");
}

#[test]
fn bypass_strategy_misdirects_in_flight_dma() {
    let v = json(&[
        "simulate",
        "kdump",
        "--strategy",
        "bypass",
        "--seed",
        "2",
        "--json",
    ]);
    check_shape(&v, "bypass", 2);
    assert!(count(&v, "misdirected") > 0, "{v}");
}

#[test]
fn text_output_is_a_table_with_totals_verdict_and_violations() {
    let out = smmuctl(&["simulate", "kdump", "--strategy", "abort"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text
        .lines()
        .find(|l| l.starts_with("device"))
        .unwrap_or_else(|| panic!("no header in\n{text}"));
    for column in [
        "device",
        "SIDs",
        "transactions",
        "translated",
        "aborted",
        "bypassed",
        "faulted",
        "misdirected",
        "deferred attach",
        "re-attached",
    ] {
        assert!(header.contains(column), "{column} missing from {header:?}");
    }
    for row in ["gpu ", "nvme ", "nic ", "total "] {
        assert!(
            text.lines().any(|l| l.starts_with(row)),
            "no {row:?} row in\n{text}"
        );
    }
    assert!(text.contains("0x3fe,0x3ff,0x400,0x401"), "{text}");
    assert!(text.contains("\nverdict: full reset"), "{text}");
    assert!(text.contains("\nviolations: "), "{text}");
}

#[test]
fn malformed_calls_exit_2() {
    for args in [
        &["simulate", "kdump", "--strategy", "reset"][..],
        &["simulate", "kdump", "--seed", "x"],
        &["simulate", "crash"],
    ] {
        let out = smmuctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: printed to stdout");
    }
}

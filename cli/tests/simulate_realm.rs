//! `smmuctl simulate realm`: the acceptance timeline of a TDISP GPU assigned to a Realm
//! as a table with a legend, as JSON, and as an SVG timeline.

use std::path::PathBuf;

use serde_json::Value;

mod common;
use common::smmuctl;

fn stdout(args: &[&str]) -> String {
    let out = smmuctl(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// (action, TDISP state, STE valid, DMA met, result starts with): the acceptance order (create, lock, measure, report, run, accept, revoke).
const EXPECTED: [(&str, &str, &str, &str, &str); 14] = [
    (
        "create the GPU's Realm stream",
        "CONFIG_UNLOCKED",
        "no",
        "",
        "created",
    ),
    (
        "Realm DMA on the GPU's StreamID",
        "CONFIG_UNLOCKED",
        "no",
        "aborted",
        "no valid STE",
    ),
    (
        "TDISP lock",
        "CONFIG_LOCKED",
        "no",
        "",
        "lock nonce recorded",
    ),
    (
        "get measurements",
        "CONFIG_LOCKED",
        "no",
        "",
        "measurement nonce recorded",
    ),
    (
        "get interface report",
        "CONFIG_LOCKED",
        "no",
        "",
        "report nonce recorded",
    ),
    ("TDISP start", "RUN", "no", "", "the device runs"),
    (
        "private DMA before accept",
        "RUN",
        "no",
        "aborted",
        "not accepted",
    ),
    (
        "get interface report again",
        "RUN",
        "no",
        "",
        "new report nonce recorded",
    ),
    (
        "accept with the earlier tuple",
        "RUN",
        "no",
        "",
        "refused: the report nonce is stale",
    ),
    (
        "accept with the current tuple",
        "RUN",
        "yes",
        "",
        "accepted",
    ),
    (
        "private DMA",
        "RUN",
        "yes",
        "translated",
        "written into the Realm's private page",
    ),
    (
        "host's Non-secure DMA aimed at the private page",
        "RUN",
        "yes",
        "granule-protection fault",
        "the page is Realm memory",
    ),
    ("revoke (DMA disable)", "RUN", "no", "", "revoked"),
    (
        "private DMA after revoke",
        "RUN",
        "no",
        "aborted",
        "no stale TLB or STE hit",
    ),
];

#[test]
fn json_rows_follow_the_acceptance_order() {
    for seed in [1u64, 9] {
        let seed_s = seed.to_string();
        let v: Value =
            serde_json::from_str(&stdout(&["simulate", "realm", "--json", "--seed", &seed_s]))
                .expect("one JSON object");
        assert_eq!(v["scenario"], "realm");
        assert_eq!(v["seed"], seed);
        assert_eq!(v["violations"], 0, "{v}");
        assert_eq!(v["granule_protection_faults"], 1, "{v}");
        let steps = v["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), EXPECTED.len(), "{v}");
        for (i, (s, (action, tdisp, valid, dma, result))) in steps.iter().zip(EXPECTED).enumerate()
        {
            assert_eq!(s["step"], i + 1);
            assert_eq!(s["action"], action, "{s}");
            assert_eq!(s["tdisp"], tdisp, "{s}");
            assert_eq!(s["ste_valid"], valid == "yes", "{s}");
            if dma.is_empty() {
                assert!(s["dma"].is_null(), "{s}");
            } else {
                assert_eq!(s["dma"], dma, "{s}");
            }
            assert!(s["result"].as_str().unwrap().starts_with(result), "{s}");
        }
    }
}

#[test]
fn text_is_a_table_of_steps_with_a_legend() {
    let text = stdout(&["simulate", "realm"]);
    assert!(
        text.starts_with("realm acceptance simulation: seed 1\n"),
        "{text}"
    );
    let header = text.lines().find(|l| l.starts_with("step")).expect(&text);
    for column in ["action", "TDISP state", "STE valid", "DMA met", "result"] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("step"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), EXPECTED.len(), "{text}");
    for (i, (row, (action, tdisp, valid, dma, result))) in rows.iter().zip(EXPECTED).enumerate() {
        let rest = row
            .trim_start()
            .strip_prefix(&format!("{}  ", i + 1))
            .unwrap_or_else(|| panic!("{row}"));
        assert!(rest.starts_with(action), "{row}");
        let words: Vec<&str> = rest[action.len()..]
            .split("  ")
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        let mut want = vec![tdisp, valid];
        if !dma.is_empty() {
            want.push(dma);
        }
        assert_eq!(&words[..want.len()], &want[..], "{row}");
        assert!(words[want.len()].starts_with(result), "{row}");
    }
    assert!(text.contains("\ngranule-protection faults: 1\n"), "{text}");
    assert!(text.contains("\nviolations: 0\n"), "{text}");
    let legend = text.split("What the columns mean:").nth(1).expect(&text);
    for column in [
        "TDISP state",
        "STE valid",
        "DMA met",
        "result",
        "violations",
    ] {
        assert!(
            legend.lines().any(|l| l.trim_start().starts_with(column)),
            "{column} not explained in\n{legend}"
        );
    }
}

#[test]
fn svg_draws_the_steps() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("timeline-realm.svg");
    let _ = std::fs::remove_file(&path);
    let out = stdout(&["simulate", "realm", "--svg", path.to_str().unwrap()]);
    assert!(out.contains("violations: 0"), "{out}");
    let svg = std::fs::read_to_string(&path).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let class = |n: &roxmltree::Node, c: &str| {
        n.attribute("class")
            .is_some_and(|a| a.split_whitespace().any(|w| w == c))
    };
    assert!(class(&doc.root_element(), "realm-timeline"));
    let steps: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && class(n, "step"))
        .collect();
    assert_eq!(steps.len(), EXPECTED.len());
    for (g, (action, _, valid, dma, _)) in steps.iter().zip(EXPECTED) {
        assert_eq!(g.attribute("data-action"), Some(action));
        let ste = g.children().find(|n| class(n, "ste")).expect("an STE mark");
        assert_eq!(class(&ste, "valid"), valid == "yes", "{action}");
        let txn = g.children().find(|n| class(n, "txn"));
        let want = match dma {
            "" => None,
            "translated" => Some("translated"),
            "aborted" => Some("aborted"),
            _ => Some("granule-protection"),
        };
        assert_eq!(
            txn.map(|t| want.is_some_and(|w| class(&t, w))),
            want.map(|_| true),
            "{action}"
        );
    }
}

//! `smmuctl simulate kdump` in plain words (a legend under the table, the verdict in the words
//! `smmuctl inspect` uses, rule codes only as references) and `--svg FILE`, the crash timeline
//! per device, read back as XML (issue 15).

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn stdout(args: &[&str]) -> String {
    let out = smmuctl(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Words like `K11` or `SPEC K2`: rule codes. They resolve in `docs/rules.md`, but what the
/// tool prints must stand on its own in plain words, so its output carries none (the help
/// text only as a trailing reference).
fn rule_codes(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            let mut c = w.chars();
            matches!(c.next(), Some('D' | 'P' | 'K' | 'M' | 'F' | 'B'))
                && w.len() > 1
                && c.all(|c| c.is_ascii_digit())
        })
        .map(String::from)
        .chain(text.contains("SPEC").then(|| "SPEC".to_string()))
        .collect()
}

#[test]
fn the_table_has_a_legend_in_plain_words() {
    for strategy in ["abort", "bypass", "adopt"] {
        let text = stdout(&["simulate", "kdump", "--strategy", strategy]);
        let legend = text
            .split("What the columns mean:")
            .nth(1)
            .unwrap_or_else(|| panic!("{strategy}: no legend in\n{text}"));
        let meaning = |column: &str| {
            legend
                .lines()
                .find(|l| l.trim_start().starts_with(column))
                .unwrap_or_else(|| panic!("{strategy}: {column} not explained in\n{legend}"))
                .to_string()
        };
        let m = meaning("misdirected");
        assert!(
            m.contains("physical address other than the one the old kernel mapped")
                && m.contains("memory corruption"),
            "{m}"
        );
        assert!(meaning("bypassed").contains("untranslated"));
        for column in [
            "transactions",
            "translated",
            "aborted",
            "faulted",
            "deferred attach",
            "re-attached",
            "violations",
        ] {
            meaning(column);
        }
        assert!(rule_codes(&text).is_empty(), "{strategy}: {text}");
    }
}

/// `simulate realm` speaks in words too: its table, JSON and help carry no rule codes.
#[test]
fn the_realm_timeline_has_no_rule_codes() {
    for args in [
        &["simulate", "realm"][..],
        &["simulate", "realm", "--json"],
        &["simulate", "realm", "--help"],
    ] {
        let text = stdout(args);
        assert!(rule_codes(&text).is_empty(), "{args:?}: {text}");
        // The Realm rules are A1–A6; they stay out of what the tool prints.
        assert!(
            !text
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w.len() == 2 && w.starts_with('A') && w[1..].parse::<u8>().is_ok()),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn the_verdict_speaks_like_inspect() {
    let text = stdout(&["simulate", "kdump", "--strategy", "adopt"]);
    let header = text.lines().find(|l| l.starts_with("device")).unwrap();
    assert!(header.contains("deferred attach"), "{header}");
    assert!(!header.contains("deferred at probe"), "{header}");
    let verdict = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("verdict: "))
            .unwrap()
            .to_string()
    };
    let v = verdict(&text);
    assert!(
        v.starts_with("verdict: adopt:") && v.contains("deferred"),
        "{v}"
    );
    let v = verdict(&stdout(&["simulate", "kdump", "--strategy", "abort"]));
    assert!(
        v.starts_with("verdict: full reset:") && v.contains("abort"),
        "{v}"
    );
    let v = verdict(&stdout(&["simulate", "kdump", "--strategy", "bypass"]));
    assert!(
        v.starts_with("verdict: full reset:") && v.contains("untranslated"),
        "{v}"
    );
    // The help text cites rules only as a trailing reference.
    let help = stdout(&["simulate", "kdump", "--help"]);
    assert!(!help.contains("SPEC"), "{help}");
    assert!(help.contains("(spec: K1–K17)"), "{help}");
}

fn svg_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("timeline-{name}.svg"))
}

fn has_class(n: &roxmltree::Node, class: &str) -> bool {
    n.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|w| w == class))
}

/// The x position of a group's line.
fn line_x(g: &roxmltree::Node) -> f64 {
    g.descendants()
        .find(|n| n.has_tag_name("line"))
        .and_then(|l| l.attribute("x1"))
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no line in {g:?}"))
}

/// Runs a strategy with `--svg` and `--json`, parses the picture, and checks it against the
/// JSON counts; returns the per-class mark counts after the crash, summed over the devices.
fn check_timeline(strategy: &str) -> [usize; 5] {
    let path = svg_path(strategy);
    let _ = std::fs::remove_file(&path);
    let json: Value = serde_json::from_str(&stdout(&[
        "simulate",
        "kdump",
        "--strategy",
        strategy,
        "--seed",
        "2",
        "--json",
        "--svg",
        path.to_str().unwrap(),
    ]))
    .unwrap();
    let text = std::fs::read_to_string(&path).expect("the SVG was written");
    let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert!(root.has_tag_name(("http://www.w3.org/2000/svg", "svg")));
    assert_eq!(root.attribute("data-strategy"), Some(strategy));

    let groups = |class: &str| -> Vec<roxmltree::Node> {
        doc.descendants()
            .filter(|n| n.has_tag_name("g") && has_class(n, class))
            .collect()
    };
    let crash = groups("crash");
    let bring_up = groups("bring-up");
    assert_eq!((crash.len(), bring_up.len()), (1, 1), "{strategy}");
    let (crash_x, up_x) = (line_x(&crash[0]), line_x(&bring_up[0]));
    assert!(crash_x <= up_x, "{strategy}: bring-up before the crash");

    // One row per device, in the report's order.
    let rows = groups("device");
    let devices = json["devices"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r.attribute("data-name").unwrap())
        .collect();
    let want: Vec<&str> = devices
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, want, "{strategy}");

    let mut totals = [0usize; 5];
    for (row, d) in rows.iter().zip(devices) {
        let marks: Vec<roxmltree::Node> = row
            .descendants()
            .filter(|n| n.has_tag_name("rect") && has_class(n, "txn"))
            .collect();
        let after: Vec<&roxmltree::Node> = marks
            .iter()
            .filter(|m| m.attribute("data-phase") == Some("crash-kernel"))
            .collect();
        // The old kernel's DMA, before the crash, all translated.
        let before = marks.len() - after.len();
        assert!(before > 0, "{strategy}: no DMA before the crash");
        assert!(marks
            .iter()
            .filter(|m| m.attribute("data-phase") == Some("old-kernel"))
            .all(|m| has_class(m, "translated")));
        // A mark per transaction after the crash, coloured as the table counts it.
        assert_eq!(
            after.len() as u64,
            d["transactions"].as_u64().unwrap(),
            "{strategy} {}",
            d["name"]
        );
        for (k, class) in [
            "translated",
            "aborted",
            "bypassed",
            "faulted",
            "misdirected",
        ]
        .iter()
        .enumerate()
        {
            let n = after.iter().filter(|m| has_class(m, class)).count();
            assert_eq!(
                n as u64,
                d[class].as_u64().unwrap(),
                "{strategy} {}: {class}",
                d["name"]
            );
            totals[k] += n;
        }
        // The device's steps, in order, after the crash kernel came up.
        let step = |class: &str| -> f64 {
            let s: Vec<roxmltree::Node> = row
                .descendants()
                .filter(|n| n.has_tag_name("g") && has_class(n, "step") && has_class(n, class))
                .collect();
            assert_eq!(s.len(), 1, "{strategy}: {class}");
            line_x(&s[0])
        };
        let (attach, probe, quiesce, reattach) = (
            step("attach"),
            step("probe"),
            step("quiesce"),
            step("reattach"),
        );
        assert!(
            attach < crash_x && up_x <= probe && probe <= quiesce && quiesce <= reattach,
            "{strategy}: steps out of order"
        );
    }
    // Every colour in the picture is explained in its legend.
    assert_eq!(groups("legend").len(), 1);
    render(&path);
    totals
}

/// Renders the SVG with `rsvg-convert` when it is installed: the picture must be one a real
/// SVG renderer accepts.
fn render(svg: &std::path::Path) {
    let png = svg.with_extension("png");
    match Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(svg)
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "rsvg-convert: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let bytes = std::fs::read(&png).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        }
        Err(e) => eprintln!("rsvg-convert not run ({e}); XML structure checked only"),
    }
}

#[test]
fn svg_timeline_shows_the_difference_between_the_strategies() {
    let [translated, aborted, bypassed, _, misdirected] = check_timeline("adopt");
    assert!(translated > 0 && aborted + bypassed + misdirected == 0);
    let [_, aborted, bypassed, _, misdirected] = check_timeline("abort");
    assert!(aborted > 0 && bypassed + misdirected == 0);
    let [_, _, bypassed, _, misdirected] = check_timeline("bypass");
    assert!(bypassed > 0 && misdirected > 0);
}

#[test]
fn an_unwritable_svg_path_is_an_error() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-dir/x.svg");
    let out = smmuctl(&["simulate", "kdump", "--svg", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write"));
}

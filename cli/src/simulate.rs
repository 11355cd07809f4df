//! `smmuctl simulate kdump`: the crash scenario of `smmu-scenarios` on the model, with one
//! crash-kernel strategy, and what each device's in-flight DMA met.

use std::fmt::Write as _;

use serde_json::{json, Value};
use smmu_scenarios::kdump_scenario::{self, Counts, Report, Strategy};

/// How the crash kernel brings the SMMU up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StrategyArg {
    /// Full reset with `GBPA.ABORT` (today's upstream behaviour).
    Abort,
    /// Full reset with `GBPA` bypass.
    Bypass,
    /// Adoption of the live stream table (SPEC K1–K17).
    Adopt,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Abort => Strategy::Abort,
            StrategyArg::Bypass => Strategy::Bypass,
            StrategyArg::Adopt => Strategy::Adopt,
        }
    }
}

/// Runs the scenario; `Err` is the scenario's own error text (exit status 1).
pub(crate) fn kdump(strategy: StrategyArg, seed: u64) -> Result<Report, String> {
    kdump_scenario::run(strategy.into(), seed)
}

fn sids(list: &[u32]) -> String {
    list.iter()
        .map(|s| format!("{s:#x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

const HEADER: [&str; 10] = [
    "device",
    "SIDs",
    "transactions",
    "translated",
    "aborted",
    "bypassed",
    "faulted",
    "misdirected",
    "deferred at probe",
    "reattached",
];

fn count_cells(c: &Counts) -> [String; 6] {
    [
        c.transactions,
        c.translated,
        c.aborted,
        c.bypassed,
        c.faulted,
        c.misdirected,
    ]
    .map(|n| n.to_string())
}

/// The table: one row per device, a totals row, then the verdict and the violation count.
pub(crate) fn to_text(r: &Report) -> String {
    let mut rows: Vec<[String; 10]> = Vec::new();
    rows.push(HEADER.map(String::from));
    let row = |name: &str, sids: String, c: &Counts, deferred: &str, reattached: &str| {
        let [t, tr, ab, by, fa, mi] = count_cells(c);
        [
            name.to_string(),
            sids,
            t,
            tr,
            ab,
            by,
            fa,
            mi,
            deferred.to_string(),
            reattached.to_string(),
        ]
    };
    for d in &r.devices {
        rows.push(row(
            d.name,
            sids(&d.sids),
            &d.counts,
            yes_no(d.deferred_at_probe),
            yes_no(d.reattached),
        ));
    }
    rows.push(row("total", String::new(), &r.totals, "", ""));

    let mut widths = [0usize; 10];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "kdump simulation: strategy {}, seed {}\n\n",
        r.strategy.name(),
        r.seed
    );
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // Names and SIDs to the left, numbers and yes/no to the right.
            if i < 2 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "{cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(out, "\nverdict: {}", r.verdict);
    let _ = writeln!(out, "violations: {}", r.violations);
    out
}

fn counts_json(map: &mut serde_json::Map<String, Value>, c: &Counts) {
    for (k, v) in [
        ("transactions", c.transactions),
        ("translated", c.translated),
        ("aborted", c.aborted),
        ("bypassed", c.bypassed),
        ("faulted", c.faulted),
        ("misdirected", c.misdirected),
    ] {
        map.insert(k.into(), Value::from(v));
    }
}

/// One JSON object: the strategy, seed, verdict, total counts and violations, and per device
/// its name, StreamIDs, counts, `deferred_at_probe` and `reattached`.
pub(crate) fn to_json(r: &Report) -> Value {
    let devices: Vec<Value> = r
        .devices
        .iter()
        .map(|d| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), Value::from(d.name));
            m.insert("sids".into(), json!(d.sids));
            counts_json(&mut m, &d.counts);
            m.insert("deferred_at_probe".into(), Value::from(d.deferred_at_probe));
            m.insert("reattached".into(), Value::from(d.reattached));
            Value::Object(m)
        })
        .collect();
    let mut m = serde_json::Map::new();
    m.insert("strategy".into(), Value::from(r.strategy.name()));
    m.insert("seed".into(), Value::from(r.seed));
    m.insert("verdict".into(), Value::from(r.verdict.clone()));
    counts_json(&mut m, &r.totals);
    m.insert("violations".into(), Value::from(r.violations));
    m.insert("devices".into(), Value::Array(devices));
    Value::Object(m)
}

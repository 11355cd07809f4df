//! `smmuctl simulate kdump`: the crash scenario of `smmu-scenarios` on the model, with one
//! crash-kernel strategy, and what each device's in-flight DMA met.

use std::fmt::Write as _;

pub(crate) mod realm;
mod timeline;

use serde_json::{json, Value};
use smmu_model_platform::kdump_scenario::{self, Counts, Report, Strategy};

/// How the crash kernel brings the SMMU up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StrategyArg {
    /// Full reset; streams without an attached domain abort (GBPA.ABORT, today's upstream
    /// behaviour).
    Abort,
    /// Full reset; streams without an attached domain bypass the SMMU untranslated.
    Bypass,
    /// Adopt the crashed kernel's live stream table; each device's attach is deferred until
    /// its driver has quiesced it (spec: K1–K17).
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

/// The crash timeline of a run as an SVG picture (`--svg FILE`).
pub(crate) fn to_svg(r: &Report) -> String {
    timeline::to_svg(r, &verdict_words(r))
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

pub(super) fn yes_no(b: bool) -> &'static str {
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
    "deferred attach",
    "re-attached",
];

/// What each column means, printed under the table.
const LEGEND: [(&str, &str); 9] = [
    (
        "transactions",
        "DMA the device issued after the crash, until its new driver stopped it",
    ),
    (
        "translated",
        "translated by the old kernel's mapping to the physical address it meant",
    ),
    (
        "aborted",
        "refused by the SMMU's configuration (global abort, an abort STE, no valid STE); \
         no memory touched",
    ),
    (
        "bypassed",
        "went through the SMMU untranslated: its I/O address used as a physical address",
    ),
    (
        "faulted",
        "stopped by a translation fault (no mapping, no permission, bad CD or table walk)",
    ),
    (
        "misdirected",
        "reached a physical address other than the one the old kernel mapped: memory \
         corruption",
    ),
    (
        "deferred attach",
        "when its driver probed, the device still used the crashed kernel's STE (adopt keeps \
         it until the driver has quiesced the device)",
    ),
    (
        "re-attached",
        "after its driver attached a new domain, the device's DMA translated through it",
    ),
    (
        "violations",
        "breaches of the SMMU architecture the model logged (0 means none)",
    ),
];

/// The verdict in the words `smmuctl inspect` uses: "adopt" or "full reset", then why.
fn verdict_words(r: &Report) -> String {
    match (r.strategy, r.verdict.as_str()) {
        (_, "adopted") => "adopt: the crash kernel kept the crashed kernel's stream table; \
                           each device's attach was deferred until its driver quiesced it"
            .to_string(),
        (Strategy::Abort, _) => "full reset: the devices' DMA aborts while the SMMU is reset \
                                 (global abort) and until each driver attaches a new domain"
            .to_string(),
        (Strategy::Bypass, _) => "full reset: while the SMMU is disabled for its reset the \
                                  devices' DMA bypasses it untranslated (global bypass), then \
                                  aborts until each driver attaches a new domain"
            .to_string(),
        // Adoption refused: the scenario's text ends with the reason code, a reference.
        (Strategy::Adopt, v) => match v.split_once(": ") {
            Some(("full-reset", code)) => format!(
                "full reset: the crash kernel could not adopt the stream table (reason: {code})"
            ),
            Some(("abandoned", why)) => format!("abandoned: {why}"),
            _ => v.to_string(),
        },
    }
}

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
    let _ = writeln!(out, "\nverdict: {}", verdict_words(r));
    let _ = writeln!(out, "violations: {}", r.violations);
    let _ = writeln!(out, "\nWhat the columns mean:");
    let pad = LEGEND.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (column, meaning) in LEGEND {
        let _ = writeln!(out, "  {column:pad$}  {meaning}");
    }
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

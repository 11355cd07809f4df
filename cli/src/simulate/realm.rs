//! `smmuctl simulate realm`: the acceptance timeline of a TDISP GPU assigned to a Realm, one
//! row per step, in the words of `simulate kdump` (a legend of the columns under the table),
//! as one JSON object (`--json`), or as an SVG timeline (`--svg FILE`) drawn with the kdump
//! picture's styles.

use std::fmt::Write as _;

use serde_json::{json, Value};
use smmu_model_platform::realm_scenario::{self, tdisp_words, DmaOutcome, Report, TdispState};

use super::timeline::{escape, CSS};
use super::yes_no;

/// Runs the scenario; `Err` is the scenario's own error text (exit status 1).
pub(crate) fn run(seed: u64) -> Result<Report, String> {
    realm_scenario::run(seed)
}

const HEADER: [&str; 6] = [
    "step",
    "action",
    "TDISP state",
    "STE valid",
    "DMA met",
    "result",
];

/// What each column means, printed under the table.
const LEGEND: [(&str, &str); 7] = [
    (
        "TDISP state",
        "the device interface's state after the step: CONFIG_UNLOCKED, CONFIG_LOCKED \
         (being attested), RUN (may issue private DMA), ERROR",
    ),
    (
        "STE valid",
        "whether the GPU's Realm stream table entry is valid: private DMA can translate only \
         while it is",
    ),
    (
        "DMA met",
        "what a write the step issued met: translated into the Realm's private page, \
         aborted by the SMMU (no memory touched), or a granule-protection fault (the memory \
         belongs to another world; no memory touched)",
    ),
    (
        "result",
        "what the Realm half of the driver or the device answered, in words",
    ),
    (
        "earlier tuple",
        "the lock, measurement and report nonces as they were before the last report; \
         accepting them would accept a device the guest has not seen as it is",
    ),
    (
        "granule-protection faults",
        "accesses the granule protection check stopped",
    ),
    (
        "violations",
        "breaches of the SMMU architecture the model logged (0 means none)",
    ),
];

fn dma_words(d: Option<DmaOutcome>) -> &'static str {
    d.map_or("", DmaOutcome::words)
}

/// The table: one row per step, then the fault and violation counts and the legend.
pub(crate) fn to_text(r: &Report) -> String {
    let mut rows: Vec<[String; 6]> = vec![HEADER.map(String::from)];
    for (i, s) in r.steps.iter().enumerate() {
        rows.push([
            (i + 1).to_string(),
            s.action.to_string(),
            tdisp_words(s.tdisp).to_string(),
            yes_no(s.ste_valid).to_string(),
            dma_words(s.dma).to_string(),
            s.result.clone(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("realm acceptance simulation: seed {}\n\n", r.seed);
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // The step number and yes/no to the right, words to the left.
            if i == 0 || i == 3 {
                let _ = write!(line, "{cell:>w$}");
            } else {
                let _ = write!(line, "{cell:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(out, "\ngranule-protection faults: {}", r.gpc_faults);
    let _ = writeln!(out, "violations: {}", r.violations);
    let _ = writeln!(out, "\nWhat the columns mean:");
    let pad = LEGEND.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (column, meaning) in LEGEND {
        let _ = writeln!(out, "  {column:pad$}  {meaning}");
    }
    out
}

/// One JSON object: the seed, `granule_protection_faults`, `violations`, and `steps`, each
/// with `step` (from 1), `action`, `tdisp`, `ste_valid`, `dma` (words, or null when the step
/// issued none) and `result`.
pub(crate) fn to_json(r: &Report) -> Value {
    let steps: Vec<Value> = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "step": i + 1,
                "action": s.action,
                "tdisp": tdisp_words(s.tdisp),
                "ste_valid": s.ste_valid,
                "dma": s.dma.map(DmaOutcome::words),
                "result": s.result,
            })
        })
        .collect();
    json!({
        "scenario": "realm",
        "seed": r.seed,
        "granule_protection_faults": r.gpc_faults,
        "violations": r.violations,
        "steps": steps,
    })
}

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 90.0;
const LANE_H: f64 = 26.0;
const LANE_GAP: f64 = 14.0;

const REALM_CSS: &str = "\
.txn.granule-protection { fill: #6a1b9a; }
.tdisp.config-unlocked { fill: #e0e0e0; }
.tdisp.config-locked { fill: #90caf9; }
.tdisp.run { fill: #a5d6a7; }
.tdisp.error { fill: #ef9a9a; }
.ste.valid { fill: #2e7d32; }
.ste.invalid { fill: #f4f4f4; stroke: #bbb; }
";

fn dma_class(d: DmaOutcome) -> &'static str {
    match d {
        DmaOutcome::Translated => "translated",
        DmaOutcome::Aborted | DmaOutcome::NotIssued => "aborted",
        DmaOutcome::GranuleProtectionFault => "granule-protection",
        DmaOutcome::Faulted => "faulted",
        DmaOutcome::Misdirected => "misdirected",
    }
}

fn tdisp_class(s: TdispState) -> &'static str {
    match s {
        TdispState::ConfigUnlocked => "config-unlocked",
        TdispState::ConfigLocked => "config-locked",
        TdispState::Run => "run",
        TdispState::Error => "error",
    }
}

/// The picture: three lanes (TDISP state, STE valid, DMA) over the steps, each step a
/// column numbered as in the table, the steps' actions listed under it.
pub(crate) fn to_svg(r: &Report) -> String {
    let n = r.steps.len().max(1);
    let plot = WIDTH - LEFT - RIGHT;
    let col = plot / n as f64;
    let x = |i: usize| LEFT + i as f64 * col;
    let lanes_bottom = TOP + 3.0 * (LANE_H + LANE_GAP);
    let key_top = lanes_bottom + 20.0;
    let legend_top = key_top + 18.0 * n as f64 + 10.0;
    let height = legend_top + 18.0 * 5.0 + 20.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" class="realm-timeline" data-seed="{}">"#,
        r.seed
    );
    let _ = writeln!(s, "<style>\n{CSS}{REALM_CSS}</style>");
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text class="title" x="10" y="24">Realm device assignment: acceptance timeline, seed {}</text>"#,
        r.seed
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="44">granule-protection faults: {}, violations: {}</text>"#,
        r.gpc_faults, r.violations
    );
    let _ = writeln!(
        s,
        r#"<text class="small" x="10" y="62">time runs to the right, one column per step (numbered as in the list below)</text>"#
    );
    for (i, _) in r.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text class="small" x="{:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
            x(i) + col / 2.0,
            TOP - 6.0,
            i + 1
        );
    }
    for (lane, label) in ["TDISP state", "STE valid", "DMA met"].iter().enumerate() {
        let y = TOP + lane as f64 * (LANE_H + LANE_GAP);
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.2}" font-weight="bold">{label}</text><rect class="lane" x="{LEFT}" y="{y:.2}" width="{plot:.2}" height="{LANE_H}"/>"#,
            y + 17.0
        );
    }
    for (i, st) in r.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<g class="step" data-step="{}" data-action="{}">"#,
            i + 1,
            escape(st.action)
        );
        let y0 = TOP;
        let _ = writeln!(
            s,
            r#"<rect class="tdisp {}" x="{:.2}" y="{y0:.2}" width="{col:.2}" height="{LANE_H}"><title>{}</title></rect>"#,
            tdisp_class(st.tdisp),
            x(i),
            tdisp_words(st.tdisp)
        );
        let y1 = TOP + LANE_H + LANE_GAP;
        let _ = writeln!(
            s,
            r#"<rect class="ste {}" x="{:.2}" y="{y1:.2}" width="{col:.2}" height="{LANE_H}"/>"#,
            if st.ste_valid { "valid" } else { "invalid" },
            x(i)
        );
        if let Some(d) = st.dma {
            let y2 = TOP + 2.0 * (LANE_H + LANE_GAP);
            let w = (col / 3.0).max(2.0);
            let _ = writeln!(
                s,
                r#"<rect class="txn {}" x="{:.2}" y="{:.2}" width="{w:.2}" height="{:.2}"><title>{}</title></rect>"#,
                dma_class(d),
                x(i) + (col - w) / 2.0,
                y2 + 2.0,
                LANE_H - 4.0,
                d.words()
            );
        }
        s.push_str("</g>\n");
    }
    // The list of steps: number, action, result.
    for (i, st) in r.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text class="small key" x="10" y="{:.2}">{}. {}: {}</text>"#,
            key_top + 18.0 * i as f64,
            i + 1,
            escape(st.action),
            escape(&st.result)
        );
    }
    let _ = writeln!(s, r#"<g class="legend">"#);
    for (i, (class, words)) in [
        (
            "tdisp run",
            "TDISP state RUN (lighter: unlocked; blue: locked)",
        ),
        ("ste valid", "the Realm STE is valid"),
        (
            "txn translated",
            "DMA translated into the Realm's private page",
        ),
        ("txn aborted", "DMA aborted (no memory touched)"),
        (
            "txn granule-protection",
            "DMA stopped by a granule-protection fault (no memory touched)",
        ),
    ]
    .iter()
    .enumerate()
    {
        let y = legend_top + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect class="{class}" x="10" y="{:.2}" width="12" height="12"/><text x="30" y="{y:.2}">{}</text>"#,
            y - 10.0,
            escape(words)
        );
    }
    s.push_str("</g>\n</svg>\n");
    s
}

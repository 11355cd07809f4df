//! `smmuctl simulate kdump --svg FILE`: the crash timeline per device as an SVG picture.
//!
//! One row per device; the x axis is the model's transaction log (every DMA transaction the
//! SMMU saw, in order). Each transaction is a thin mark coloured by what it met; lines mark
//! the crash and the end of the crash kernel's bring-up across all rows, and each device's
//! old-kernel attach, driver probe, quiesce and re-attach on its row. The SVG is written by
//! hand: elements carry classes (`device`, `txn translated`, `crash`, `step probe`, …) so a
//! program can read it back as well as a person can look at it.

use std::fmt::Write as _;

use smmu_model_platform::kdump_scenario::{Report, TxnClass};

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 205.0;
/// Room right of the plot for the last step label.
const RIGHT: f64 = 60.0;
const TOP: f64 = 110.0;
const ROW: f64 = 80.0;
const LANE_Y: f64 = 28.0;
const LANE_H: f64 = 26.0;

/// Each outcome: its SVG classes, its colour, and what it means (the legend).
fn style(class: TxnClass) -> (&'static str, &'static str) {
    match class {
        TxnClass::Translated => ("translated", "translated as the old kernel mapped it"),
        TxnClass::Aborted => ("aborted", "aborted (no memory touched)"),
        TxnClass::Bypassed => ("bypassed", "bypassed, untranslated"),
        TxnClass::Faulted => ("faulted", "faulted"),
        TxnClass::Misdirected => (
            "misdirected",
            "misdirected: reached memory the old kernel did not map (corruption)",
        ),
        TxnClass::BypassedMisdirected => (
            "bypassed misdirected",
            "bypassed and so misdirected (corruption)",
        ),
    }
}

pub(super) const CSS: &str = "\
text { font-family: sans-serif; font-size: 12px; fill: #222; }
.title { font-size: 16px; font-weight: bold; }
.small { font-size: 10px; }
.lane { fill: #f4f4f4; stroke: #bbb; }
.txn.translated { fill: #2e7d32; }
.txn.aborted { fill: #9e9e9e; }
.txn.faulted { fill: #1565c0; }
.txn.bypassed { fill: #f9a825; }
.txn.misdirected { fill: #c62828; }
.legend .txn.bypassed.misdirected { stroke: #f9a825; stroke-width: 2; }
.crash line { stroke: #c62828; stroke-width: 2; stroke-dasharray: 6 3; }
.bring-up line { stroke: #6a1b9a; stroke-width: 2; stroke-dasharray: 2 2; }
.bring-up-window { fill: #6a1b9a; fill-opacity: 0.08; }
.step line { stroke: #222; stroke-width: 1.5; }
";

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The picture of one run.
pub(crate) fn to_svg(r: &Report, verdict: &str) -> String {
    let t = &r.timeline;
    let plot = WIDTH - LEFT - RIGHT;
    let end = t.end.max(1) as f64;
    let x = |at: usize| LEFT + at as f64 * plot / end;
    let mark_w = (plot / end).max(1.0);
    let rows_bottom = TOP + ROW * r.devices.len() as f64;
    let legend_rows = 7.0;
    let height = rows_bottom + 30.0 + legend_rows * 18.0 + 20.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" class="kdump-timeline" data-strategy="{}">"#,
        r.strategy.name()
    );
    let _ = writeln!(s, "<style>\n{CSS}</style>");
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text class="title" x="10" y="24">kdump crash timeline: strategy {}, seed {}</text>"#,
        r.strategy.name(),
        r.seed
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="44">verdict: {}</text>"#,
        escape(verdict)
    );
    let _ = writeln!(
        s,
        r#"<text class="small" x="10" y="62">time runs to the right, counted in DMA transactions the SMMU saw ({} in all)</text>"#,
        t.end
    );

    // The crash kernel's bring-up window and the two global markers, across every row.
    let (cx, bx) = (x(t.crash), x(t.bring_up));
    let _ = writeln!(
        s,
        r#"<rect class="bring-up-window" x="{cx:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}"/>"#,
        y = TOP - 20.0,
        w = (bx - cx).max(0.0),
        h = rows_bottom - TOP + 20.0
    );
    for (class, at, label, anchor) in [
        ("crash", cx, "crash", "end"),
        ("bring-up", bx, "crash kernel's SMMU bring-up done", "start"),
    ] {
        let dx = if anchor == "end" { -4.0 } else { 4.0 };
        let _ = writeln!(
            s,
            r#"<g class="{class}"><line x1="{at:.2}" y1="{y1:.2}" x2="{at:.2}" y2="{rows_bottom:.2}"/><text x="{tx:.2}" y="{ty:.2}" text-anchor="{anchor}">{label}</text></g>"#,
            y1 = TOP - 20.0,
            tx = at + dx,
            ty = TOP - 8.0,
        );
    }

    for (i, (d, steps)) in r.devices.iter().zip(&t.devices).enumerate() {
        let top = TOP + ROW * i as f64;
        let lane = top + LANE_Y;
        let sids = d
            .sids
            .iter()
            .map(|s| format!("{s:#x}"))
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            s,
            r#"<g class="device" data-name="{}" data-sids="{sids}">"#,
            escape(d.name)
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.2}" font-weight="bold">{}</text><text class="small" x="10" y="{:.2}">StreamIDs {sids}</text>"#,
            lane + 11.0,
            escape(d.name),
            lane + 24.0
        );
        let _ = writeln!(
            s,
            r#"<rect class="lane" x="{LEFT}" y="{lane:.2}" width="{plot:.2}" height="{LANE_H}"/>"#
        );
        for m in t.transactions.iter().filter(|m| m.device == i) {
            let (class, _) = style(m.class);
            let phase = if m.after_crash {
                "crash-kernel"
            } else {
                "old-kernel"
            };
            // Corruption stands out: a misdirected mark reaches past the lane.
            let (y, h) = if class.ends_with("misdirected") {
                (lane - 3.0, LANE_H + 6.0)
            } else {
                (lane + 2.0, LANE_H - 4.0)
            };
            let _ = writeln!(
                s,
                r#"<rect class="txn {class}" data-phase="{phase}" x="{:.2}" y="{y:.2}" width="{mark_w:.2}" height="{h:.2}"/>"#,
                x(m.at),
            );
        }
        // Steps on the row: labels alternate above and below the lane so that the close
        // probe / quiesce / re-attach trio stays readable.
        for (class, at, label, above, anchor) in [
            ("attach", 0, "attach", true, "start"),
            ("probe", steps.probe, "probe", true, "end"),
            ("quiesce", steps.quiesce, "quiesce", false, "middle"),
            ("reattach", steps.reattach, "re-attach", true, "start"),
        ] {
            let at = x(at);
            let ty = if above {
                lane - 4.0
            } else {
                lane + LANE_H + 12.0
            };
            let _ = writeln!(
                s,
                r#"<g class="step {class}"><line x1="{at:.2}" y1="{:.2}" x2="{at:.2}" y2="{:.2}"/><text class="small" x="{at:.2}" y="{ty:.2}" text-anchor="{anchor}">{label}</text></g>"#,
                lane - 2.0,
                lane + LANE_H + 2.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text class="small" x="{LEFT}" y="{:.2}">after the crash: {} translated, {} aborted, {} bypassed, {} faulted, {} misdirected</text>"#,
            top + ROW - 4.0,
            d.counts.translated,
            d.counts.aborted,
            d.counts.bypassed,
            d.counts.faulted,
            d.counts.misdirected
        );
        s.push_str("</g>\n");
    }

    // The legend: what each colour and each line means.
    let mut y = rows_bottom + 30.0;
    let _ = writeln!(s, r#"<g class="legend">"#);
    for class in [
        TxnClass::Translated,
        TxnClass::Aborted,
        TxnClass::Bypassed,
        TxnClass::Faulted,
        TxnClass::Misdirected,
        TxnClass::BypassedMisdirected,
    ] {
        let (c, words) = style(class);
        let _ = writeln!(
            s,
            r#"<rect class="txn {c}" x="10" y="{:.2}" width="12" height="12"/><text x="30" y="{:.2}">{}</text>"#,
            y - 10.0,
            y,
            escape(words)
        );
        y += 18.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="10" y="{y:.2}">lines: attach (old kernel), crash, crash kernel's SMMU bring-up, then per device its new driver's probe, quiesce (DMA stopped) and re-attach</text>"#
    );
    s.push_str("</g>\n</svg>\n");
    s
}

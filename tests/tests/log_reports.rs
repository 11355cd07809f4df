//! The `log` feature: what a kernel log shows of a bring-up, a crash kernel's verdict, and
//! an event. One test function, because the logger is process-wide.

use std::sync::Mutex;

use smmu::SmmuConfig;
use smmu_kdump::{boot, AdoptOptions, AdoptPlatform};
use smmu_model::{ModelConfig, Profile, Transaction};
use smmu_model_platform::{rig::Rig, ModelPlatform};

/// Every record as `LEVEL target: message`.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn take() -> Vec<String> {
    std::mem::take(&mut *CAPTURE.0.lock().unwrap())
}

fn has(lines: &[String], prefix: &str, words: &[&str]) -> bool {
    lines
        .iter()
        .any(|l| l.starts_with(prefix) && words.iter().all(|w| l.contains(w)))
}

#[test]
fn bring_up_verdict_and_events_are_reported_under_the_smmu_target() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    // Bring-up: the probe summary and the reset's steps.
    let cfg = ModelConfig::hostile(Profile::grace(), 3);
    let rig = Rig::new(cfg.clone(), SmmuConfig::default()).unwrap();
    let lines = take();
    assert!(
        has(
            &lines,
            "INFO smmu: SMMUv3 found",
            &["stage 1 yes", "two-level"]
        ),
        "{lines:#?}"
    );
    assert!(
        has(&lines, "DEBUG smmu: SMMU reset", &["GlobalBypassAbort"]),
        "{lines:#?}"
    );

    // An event: DMA from a StreamID nobody attached aborts and is recorded (C_BAD_STE or
    // similar); draining the queue reports it.
    rig.dma(Transaction::read(0x123, 0x1000));
    let mut seen = 0;
    rig.smmu.handle_events(&mut |_| seen += 1).unwrap();
    let lines = take();
    assert!(seen > 0);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("WARN smmu: SMMU event"))
            .count(),
        seen,
        "{lines:#?}"
    );

    // A crash kernel on an SMMU that was never enabled: the full reset, with the reason in
    // words and its code.
    let fresh = ModelPlatform::new(cfg).unwrap();
    let crash = AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        ..Default::default()
    };
    boot(fresh.regs(), fresh.hal(), &crash, &AdoptOptions::default()).unwrap();
    let lines = take();
    assert!(
        has(
            &lines,
            "WARN smmu: crash kernel: full SMMU reset",
            &["(smmu-disabled)"]
        ),
        "{lines:#?}"
    );
}

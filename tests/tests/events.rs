//! Event queue and global errors on the model (SPEC D7).

use smmu::arch::event::Event;
use smmu::arch::queue::GlobalErrors;
use smmu::evtq::EventReport;
use smmu::SmmuConfig;
use smmu_model::fields::reg;
use smmu_model::{ModelConfig, Profile, Transaction};
use smmu_model_platform::rig::Rig;

fn rig(evtq_log2: u32) -> Rig {
    let cfg = ModelConfig {
        ram_size: 16 << 20,
        ..ModelConfig::hostile(Profile::mmu600(), 9)
    };
    Rig::new(
        cfg,
        SmmuConfig {
            evtq_log2: Some(evtq_log2),
            ..SmmuConfig::default()
        },
    )
    .unwrap()
}

fn drain(rig: &mut Rig) -> Vec<EventReport> {
    let mut out = Vec::new();
    while rig.smmu.handle_events(&mut |e| out.push(e)).unwrap() > 0 {}
    out
}

/// StreamIDs of C_BAD_STREAMID events in a report list.
fn bad_streamid_sids(reports: &[EventReport]) -> Vec<u32> {
    reports
        .iter()
        .filter_map(|r| match r {
            EventReport::Event(Event::BadStreamId(s)) => Some(s.sid),
            _ => None,
        })
        .collect()
}

// spec: D7
#[test]
fn events_arrive_typed_in_order_across_wraps() {
    let mut rig = rig(3); // 8 records
                          // On a 2-level table, a StreamID whose level-1 descriptor is invalid is out of range:
                          // C_BAD_STREAMID (§3.3.2).
    let mut seen = Vec::new();
    for round in 0..5u32 {
        for k in 0..6u32 {
            let sid = 0x1000 + round * 6 + k;
            assert!(rig.dma(Transaction::read(sid, 0)).pa().is_none());
        }
        seen.extend(bad_streamid_sids(&drain(&mut rig)));
    }
    let want: Vec<u32> = (0..30).map(|i| 0x1000 + i).collect();
    assert_eq!(seen, want);
    rig.assert_no_violations();
}

// spec: D7
#[test]
fn overflow_is_reported_once_and_acknowledged() {
    let mut rig = rig(2); // 4 records
    for sid in 0..10u32 {
        assert!(rig.dma(Transaction::read(0x2000 + sid, 0)).pa().is_none());
    }
    let reports = drain(&mut rig);
    let overflows = reports
        .iter()
        .filter(|r| matches!(r, EventReport::Overflow))
        .count();
    assert_eq!(overflows, 1, "{reports:?}");
    assert_eq!(bad_streamid_sids(&reports).len(), 4, "the queue held four");
    // Acknowledged: new events are recorded and no second overflow is reported.
    assert!(rig.dma(Transaction::read(0x3000, 0)).pa().is_none());
    let reports = drain(&mut rig);
    assert_eq!(bad_streamid_sids(&reports), [0x3000]);
    assert!(!reports.iter().any(|r| matches!(r, EventReport::Overflow)));
    rig.assert_no_violations();
}

// spec: D7
#[test]
fn global_errors_are_acknowledged_but_service_failure_stays() {
    let rig = rig(4);
    rig.model().with(|m| {
        m.raise_gerror(reg::GERROR_EVTQ_ABT_ERR | reg::GERROR_SFM_ERR);
    });
    let report = rig.smmu.handle_gerror();
    assert!(report.service_failure);
    assert!(report
        .active
        .contains(GlobalErrors::EVTQ_ABT_ERR | GlobalErrors::SFM_ERR));
    assert!(report.acknowledged.contains(GlobalErrors::EVTQ_ABT_ERR));
    assert!(!report.acknowledged.contains(GlobalErrors::SFM_ERR));
    let again = rig.smmu.handle_gerror();
    assert!(again.service_failure, "SFM is reported every time");
    assert!(!again.active.contains(GlobalErrors::EVTQ_ABT_ERR));
    // With SFM active every command fails fast with a typed error.
    let err = rig
        .smmu
        .cmdq()
        .sync(rig.smmu.hal(), rig.smmu.regs())
        .expect_err("service failure");
    assert_eq!(err, smmu::Error::ServiceFailure);
    rig.assert_no_violations();
}

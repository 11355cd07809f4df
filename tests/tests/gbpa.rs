//! GBPA read-back (SPEC D11) and the reset failure action (SPEC K16) on a model whose `GBPA`
//! is not implemented, as on QEMU 7.2 (reads 0, drops writes), next to a model that
//! implements it.
//!
//! Every test ends with an empty violation log.

use smmu::poll::PollBudget;
use smmu::{
    DomainStage, Error, GbpaPolicy, MasterConfig, OnFailure, ResetPlan, ResetStep, SmmuConfig,
};
use smmu_model::fields::reg;
use smmu_model::{ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::platform::ModelPlatform;
use smmu_model_platform::rig::{self, Rig};
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);
const SID: u32 = 0x8;
const IOVA: u64 = 0x10_0000;

/// QEMU 7.2 as the firmware met it (stage 1 only, `GBPA` not implemented), or the same SMMU
/// with a working `GBPA`.
fn model(gbpa_ignored: bool) -> ModelConfig {
    ModelConfig {
        ram_size: 32 << 20,
        gbpa_ignored,
        ..ModelConfig::hostile(Profile::qemu_7_2(), 11)
    }
}

fn accept_ignored() -> SmmuConfig {
    SmmuConfig {
        gbpa: GbpaPolicy::AcceptIgnoredWhileDisabled,
        ..SmmuConfig::default()
    }
}

/// A master on SID 8 attached to a stage-1 domain mapping one page at `IOVA`; returns the
/// page's physical address.
fn attach_one_page(rig: &mut Rig) -> u64 {
    let master = rig
        .smmu
        .add_master(&MasterConfig {
            sids: &[SID],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })
        .expect("add master");
    let domain = rig
        .smmu
        .new_domain(DomainStage::Stage1, false, rig.tables())
        .expect("domain");
    let pa = rig.model().alloc_pages(1, 1 << 12).expect("a page");
    rig.smmu
        .map(&domain, Iova(IOVA), PhysAddr(pa), 0x1000, RW)
        .expect("map");
    rig.smmu.attach(master, &domain).expect("attach");
    // The domain's tables stay live for the rest of the test.
    core::mem::forget(domain);
    pa
}

// spec: D11
#[test]
fn full_reset_fails_loudly_when_gbpa_ignores_the_abort() {
    let platform = ModelPlatform::new(model(true)).expect("model");
    let mut smmu = rig::build(&platform, SmmuConfig::default(), None).expect("probe");
    let err = smmu
        .reset(&ResetPlan::FULL)
        .expect_err("GBPA never took ABORT");
    assert_eq!(
        err,
        Error::GbpaNotTaken {
            wrote: reg::GBPA_ABORT,
            read: 0
        }
    );
    assert!(!smmu.gbpa_ignored());
    // Nothing after the GBPA step ran: the SMMU is as it was, disabled.
    assert_eq!(platform.model().read32(reg::CR0 as usize), 0);
    assert!(platform.model().with(|m| m.violations().is_empty()));
}

// spec: D11
#[test]
fn the_gbpa_step_alone_reports_what_it_read_back() {
    let platform = ModelPlatform::new(model(true)).expect("model");
    let mut smmu = rig::build(&platform, SmmuConfig::default(), None).expect("probe");
    let plan = ResetPlan {
        steps: &[ResetStep::GlobalBypassAbort],
        on_failure: OnFailure::Report,
    };
    assert_eq!(
        smmu.reset(&plan),
        Err(Error::GbpaNotTaken {
            wrote: reg::GBPA_ABORT,
            read: 0
        })
    );
    // Bypass is what the register says, and it reads back as such.
    let allow = ResetPlan {
        steps: &[ResetStep::GlobalBypassAllow],
        on_failure: OnFailure::Report,
    };
    assert_eq!(smmu.reset(&allow), Ok(()));
}

// spec: D11
#[test]
fn a_platform_that_accepts_ignored_gbpa_comes_up_and_is_told() {
    let mut rig = Rig::new(model(true), accept_ignored()).expect("reset accepted");
    assert!(
        rig.smmu.gbpa_ignored(),
        "the driver must say GBPA was ignored"
    );
    let cr0 = rig.model().read32(reg::CR0 as usize);
    assert_ne!(cr0 & reg::CR0_SMMUEN, 0);
    let pa = attach_one_page(&mut rig);
    assert_eq!(
        rig.dma(Transaction::read(SID, IOVA + 0x40)),
        TxnResult::Translated { pa: pa + 0x40 }
    );
    rig.assert_no_violations();

    // On an SMMU that implements GBPA the same policy changes nothing and reports nothing.
    let rig = Rig::new(model(false), accept_ignored()).expect("reset");
    assert!(!rig.smmu.gbpa_ignored());
    let gbpa = rig.model().read32(reg::GBPA as usize);
    assert_ne!(gbpa & reg::GBPA_ABORT, 0);
    rig.assert_no_violations();
}

// spec: D11
#[test]
fn accepting_ignored_gbpa_never_applies_to_an_enabled_smmu() {
    let mut rig = Rig::new(model(true), accept_ignored()).expect("reset accepted");
    let pa = attach_one_page(&mut rig);
    // A second full reset on the live SMMU: its abort step fails (clearing SMMUEN next
    // would open a bypass window) and translation stays on.
    let err = rig
        .smmu
        .reset(&ResetPlan::FULL)
        .expect_err("no abort on an enabled SMMU that ignores GBPA");
    assert!(
        matches!(
            err,
            Error::AbortNotConfirmed {
                step: ResetStep::GlobalBypassAbort,
                gbpa: 0
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        rig.dma(Transaction::write(SID, IOVA)),
        TxnResult::Translated { pa }
    );
    rig.assert_no_violations();
}

/// A plan that fails after adoption-like work started: `CR0ACK` never arrives within a
/// budget of one poll.
const QUIESCE: ResetPlan = ResetPlan {
    steps: &[ResetStep::QuiesceQueuesKeepingTranslation],
    on_failure: OnFailure::AbortThenDisable,
};

fn fail_quiesce(gbpa_ignored: bool) -> (Rig, u64, Error) {
    let cfg = SmmuConfig {
        budget: PollBudget(1),
        ..accept_ignored()
    };
    let mut rig = Rig::new(model(gbpa_ignored), accept_ignored()).expect("reset");
    let pa = attach_one_page(&mut rig);
    // A second driver instance with a budget of one poll on the same (live) SMMU, as a crash
    // kernel's is.
    let mut late = rig::build(&rig.platform, cfg, None).expect("probe");
    let err = late
        .reset(&QUIESCE)
        .expect_err("CR0ACK takes several accesses");
    (rig, pa, err)
}

// spec: K16
#[test]
fn failure_with_ignored_gbpa_leaves_smmuen_set() {
    let (rig, pa, err) = fail_quiesce(true);
    assert_eq!(
        err,
        Error::AbortNotConfirmed {
            step: ResetStep::QuiesceQueuesKeepingTranslation,
            gbpa: 0
        }
    );
    let cr0 = rig.model().read32(reg::CR0 as usize);
    assert_ne!(
        cr0 & reg::CR0_SMMUEN,
        0,
        "SMMUEN cleared without a confirmed abort"
    );
    // The attached master keeps its translation; nothing bypasses.
    assert_eq!(
        rig.dma(Transaction::read(SID, IOVA + 8)),
        TxnResult::Translated { pa: pa + 8 }
    );
    assert!(rig.dma(Transaction::read(0x99, 0x1000)).pa().is_none());
    rig.assert_no_violations();
}

// spec: K16
#[test]
fn failure_with_a_stuck_gbpa_update_leaves_smmuen_set() {
    // GBPA is implemented, but its Update does not clear within the budget: the abort is not
    // confirmed, so SMMUEN stays set and DMA stays translated.
    let (rig, pa, err) = fail_quiesce(false);
    assert!(
        matches!(
            err,
            Error::AbortNotConfirmed {
                step: ResetStep::QuiesceQueuesKeepingTranslation,
                ..
            }
        ),
        "{err:?}"
    );
    let cr0 = rig.model().read32(reg::CR0 as usize);
    assert_ne!(cr0 & reg::CR0_SMMUEN, 0);
    assert_eq!(
        rig.dma(Transaction::read(SID, IOVA)),
        TxnResult::Translated { pa }
    );
    rig.assert_no_violations();
}

/// A failure after the SMMU is live: service failure mode is found by the
/// global-error step, with the default budget.
fn fail_on_service_failure(gbpa_ignored: bool) -> (Rig, Error) {
    let rig = Rig::new(model(gbpa_ignored), accept_ignored()).expect("reset");
    rig.model().with(|m| m.raise_gerror(reg::GERROR_SFM_ERR));
    let mut late = rig::build(&rig.platform, accept_ignored(), None).expect("probe");
    let plan = ResetPlan {
        steps: &[ResetStep::AcknowledgeGlobalErrors],
        on_failure: OnFailure::AbortThenDisable,
    };
    let err = late.reset(&plan).expect_err("SFM_ERR is active");
    (rig, err)
}

// spec: K16
#[test]
fn failure_action_disables_only_after_a_confirmed_abort() {
    // The negative control: GBPA takes ABORT, so SMMUEN is cleared.
    let (rig, err) = fail_on_service_failure(false);
    assert_eq!(err, Error::ServiceFailure);
    let cr0 = rig.model().read32(reg::CR0 as usize);
    assert_eq!(cr0 & reg::CR0_SMMUEN, 0);
    let gbpa = rig.model().read32(reg::GBPA as usize);
    assert_ne!(gbpa & reg::GBPA_ABORT, 0);
    rig.assert_no_violations();

    // GBPA ignored: the same failure leaves SMMUEN set.
    let (rig, err) = fail_on_service_failure(true);
    assert_eq!(
        err,
        Error::AbortNotConfirmed {
            step: ResetStep::AcknowledgeGlobalErrors,
            gbpa: 0
        }
    );
    let cr0 = rig.model().read32(reg::CR0 as usize);
    assert_ne!(cr0 & reg::CR0_SMMUEN, 0);
    rig.assert_no_violations();
}

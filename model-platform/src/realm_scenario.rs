//! The acceptance timeline of a TDISP GPU assigned to a Realm, step by step, for
//! `smmuctl simulate realm`: the Realm half of the driver (playing RMM) creates the GPU's
//! Realm stream with V = 0, the device is locked, measured and reported, started, a stale
//! nonce tuple is refused, the current one accepted, private DMA translates, the host's
//! Non-secure stream is stopped by the granule protection check, and a revoke makes the next
//! private DMA abort (no stale TLB hit: the DMA before the revoke warmed the TLB).
//!
//! Each step records the device's TDISP state, whether the Realm STE is valid, what a DMA
//! issued at that step met, and what the API returned, in words.
//!
//! ```
//! use smmu_model_platform::realm_scenario::{run, DmaOutcome};
//!
//! let r = run(7).unwrap();
//! assert_eq!(r.violations, 0);
//! assert!(r.steps.iter().any(|s| s.dma == Some(DmaOutcome::Translated)));
//! ```

use smmu::realm::{
    AcceptError, NonceKind, NonceTuple, RealmConfig, RealmError, RealmSmmu, RealmStream,
    RevokeReason, TdispState as GateState,
};
pub use smmu_model::rme::TdispState;
use smmu_model::rme::{SecSid, TdispDevice, TdispDma};
use smmu_model::{Cause, ModelConfig, Transaction, TxnResult};

use crate::realm::{RealmModelRegs, RealmPlatform};
use crate::realm_oracle::{realm_s2, ORACLE_IPA, ORACLE_SID};
use crate::ModelHal;

/// What one DMA transaction met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DmaOutcome {
    /// Translated by the Realm's stage 2 to the private page it maps.
    Translated,
    /// Refused by the SMMU's configuration (no valid STE, abort); no memory touched.
    Aborted,
    /// Stopped by the granule protection check: the granule is not in the stream's PA space.
    GranuleProtectionFault,
    /// Terminated by a translation-time fault.
    Faulted,
    /// Reached memory other than the page the Realm mapped, or not reported as it landed.
    Misdirected,
    /// The device did not issue it (not in RUN).
    NotIssued,
}

impl DmaOutcome {
    /// The outcome in words.
    pub fn words(self) -> &'static str {
        match self {
            Self::Translated => "translated",
            Self::Aborted => "aborted",
            Self::GranuleProtectionFault => "granule-protection fault",
            Self::Faulted => "faulted",
            Self::Misdirected => "misdirected",
            Self::NotIssued => "not issued",
        }
    }
}

/// A TDISP state in the words of the TDISP specification.
pub fn tdisp_words(s: TdispState) -> &'static str {
    match s {
        TdispState::ConfigUnlocked => "CONFIG_UNLOCKED",
        TdispState::ConfigLocked => "CONFIG_LOCKED",
        TdispState::Run => "RUN",
        TdispState::Error => "ERROR",
    }
}

/// One step of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What happened, in words.
    pub action: &'static str,
    /// The device's TDISP state after the step.
    pub tdisp: TdispState,
    /// The GPU's Realm STE is valid (V = 1) after the step.
    pub ste_valid: bool,
    /// What the step's DMA met, if the step issued one.
    pub dma: Option<DmaOutcome>,
    /// What the API or the device answered, in words.
    pub result: String,
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Seed of the device's nonces.
    pub seed: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Granule protection faults the model counted.
    pub gpc_faults: u64,
    /// Entries in the model's violation log.
    pub violations: usize,
}

struct Run {
    p: RealmPlatform,
    smmu: RealmSmmu<RealmModelRegs, ModelHal>,
    dev: TdispDevice,
    stream: Option<RealmStream>,
    private_page: u64,
    steps: Vec<Step>,
}

fn refusal_words(e: AcceptError) -> String {
    let kind = |k: NonceKind| match k {
        NonceKind::Lock => "lock",
        NonceKind::Measurement => "measurement",
        NonceKind::Report => "report",
    };
    match e {
        AcceptError::NotRunning(s) => format!(
            "refused: the device is not running (it reports {})",
            tdisp_words(match s {
                GateState::ConfigUnlocked => TdispState::ConfigUnlocked,
                GateState::ConfigLocked => TdispState::ConfigLocked,
                GateState::Run => TdispState::Run,
                GateState::Error => TdispState::Error,
            })
        ),
        AcceptError::NotAttested(k) => format!("refused: no {} since the lock", kind(k)),
        AcceptError::WrongNonce(k) => format!("refused: the {} nonce is wrong", kind(k)),
        AcceptError::StaleNonce(k) => {
            format!("refused: the {} nonce is stale (refreshed since)", kind(k))
        }
        AcceptError::Replayed => "refused: this tuple was accepted once already".into(),
        AcceptError::AlreadyAccepted => "refused: already accepted".into(),
    }
}

impl Run {
    fn ste_valid(&self) -> bool {
        self.stream
            .as_ref()
            .and_then(|s| self.smmu.ste(s).ok())
            .is_some_and(|ste| ste[0] & 1 == 1)
    }

    /// A step that issued a DMA: its result says what the DMA met (`aborted` when it aborted
    /// as it should).
    fn push_dma(&mut self, action: &'static str, d: DmaOutcome, aborted: &str) {
        let words = match d {
            DmaOutcome::Translated => "written into the Realm's private page",
            DmaOutcome::Aborted => aborted,
            DmaOutcome::GranuleProtectionFault => {
                "the page is Realm memory: stopped whatever the host's tables say"
            }
            DmaOutcome::Faulted => "stopped by a translation fault",
            DmaOutcome::Misdirected => "reached memory the Realm did not map it to",
            DmaOutcome::NotIssued => "the device did not issue it",
        };
        self.push(action, Some(d), words.into());
    }

    fn push(&mut self, action: &'static str, dma: Option<DmaOutcome>, result: String) {
        let step = Step {
            action,
            tdisp: self.dev.state(),
            ste_valid: self.ste_valid(),
            dma,
            result,
        };
        self.steps.push(step);
    }

    /// Whether a device write at `offset` reached the private page (the model's data
    /// pattern: byte i of a write is the address's low byte plus i).
    fn landed(&self, offset: u64) -> bool {
        let mut b = [0u8; 2];
        self.p
            .rme()
            .ns()
            .mem_read(self.private_page + offset, &mut b)
            .is_ok()
            && b[1] == ((ORACLE_IPA + offset) as u8).wrapping_add(1)
    }

    fn classify(&self, r: TxnResult, offset: u64) -> DmaOutcome {
        match r {
            TxnResult::Translated { pa } if pa == self.private_page + offset => {
                if self.landed(offset) {
                    DmaOutcome::Translated
                } else {
                    DmaOutcome::Misdirected
                }
            }
            TxnResult::Abort {
                cause: Cause::GranuleProtection,
                ..
            } => DmaOutcome::GranuleProtectionFault,
            TxnResult::Abort { .. } if self.landed(offset) => DmaOutcome::Misdirected,
            TxnResult::Abort {
                cause:
                    Cause::GbpaAbort
                    | Cause::SteAbort
                    | Cause::BadSte
                    | Cause::BadStreamId
                    | Cause::SteFetch
                    | Cause::StreamDisabled
                    | Cause::BadSubstreamId,
                ..
            } => DmaOutcome::Aborted,
            TxnResult::Abort { .. } => DmaOutcome::Faulted,
            TxnResult::Translated { .. } | TxnResult::Bypass { .. } => DmaOutcome::Misdirected,
        }
    }

    /// A private write by the device at `offset` into the Realm's page.
    fn private_dma(&self, offset: u64) -> DmaOutcome {
        match self
            .dev
            .private_dma(self.p.rme(), Transaction::write(0, ORACLE_IPA + offset))
        {
            TdispDma::NotIssued(_) => DmaOutcome::NotIssued,
            TdispDma::Issued(r) => self.classify(r, offset),
        }
    }

    /// A Realm (T = 1) write on the GPU's StreamID sent at the SMMU whatever the device's
    /// state: what a device that ignored TDISP would meet.
    fn forced_realm_dma(&self, offset: u64) -> DmaOutcome {
        let r = self.p.rme().dma_data(
            SecSid::Realm,
            Transaction::write(ORACLE_SID, ORACLE_IPA + offset),
        );
        self.classify(r, offset)
    }

    fn record(&mut self, kind: NonceKind, nonce: Result<u64, TdispState>) -> Result<(), String> {
        let n = nonce.map_err(|s| format!("the device refused in {}", tdisp_words(s)))?;
        let s = self.stream.take().ok_or("no stream")?;
        let r = self.smmu.record(&s, kind, n);
        self.stream = Some(s);
        r.map_err(|e| format!("record: {e:?}"))
    }

    fn accept(&mut self, tuple: NonceTuple) -> Result<String, String> {
        let s = self.stream.take().ok_or("no stream")?;
        let r = self.smmu.accept(&s, tuple, GateState::Run);
        self.stream = Some(s);
        match r {
            Ok(()) => Ok("accepted: the STE is made valid".into()),
            Err(RealmError::Refused(e)) => Ok(refusal_words(e)),
            Err(RealmError::Smmu(e)) => Err(format!("accept: {e:?}")),
        }
    }
}

fn current(dev: &TdispDevice) -> NonceTuple {
    let n = dev.nonces();
    NonceTuple {
        lock: n.lock,
        measurement: n.measurement,
        report: n.report,
    }
}

/// Runs the timeline; `seed` seeds the device's nonces. `Err` only if the driver or the model
/// fails; what the steps met is in the report (a test decides whether it is right).
pub fn run(seed: u64) -> Result<Report, String> {
    let p = RealmPlatform::new(ModelConfig::default()).map_err(|e| format!("{e:?}"))?;
    let smmu = RealmSmmu::probe(
        p.realm_regs(),
        &p.common_ids(),
        p.realm_hal(),
        RealmConfig::default(),
    )
    .map_err(|e| format!("probe: {e:?}"))?;
    let (ctx, private_page) = realm_s2(&p, ORACLE_IPA)?;
    let mut r = Run {
        p,
        smmu,
        dev: TdispDevice::new(ORACLE_SID, seed),
        stream: None,
        private_page,
        steps: Vec::new(),
    };

    let s = r
        .smmu
        .create(ORACLE_SID, &ctx)
        .map_err(|e| format!("create: {e:?}"))?;
    r.stream = Some(s);
    r.push(
        "create the GPU's Realm stream",
        None,
        "created: stage 2 only, STE not valid".into(),
    );
    let d = r.forced_realm_dma(0x10);
    r.push_dma(
        "Realm DMA on the GPU's StreamID",
        d,
        "no valid STE: the SMMU aborts it",
    );

    let n = r.dev.lock();
    r.record(NonceKind::Lock, n)?;
    r.push("TDISP lock", None, "lock nonce recorded".into());
    let n = r.dev.get_measurement();
    r.record(NonceKind::Measurement, n)?;
    r.push(
        "get measurements",
        None,
        "measurement nonce recorded".into(),
    );
    let n = r.dev.get_report();
    r.record(NonceKind::Report, n)?;
    r.push("get interface report", None, "report nonce recorded".into());
    let attested = current(&r.dev);
    r.dev
        .start()
        .map_err(|s| format!("start in {}", tdisp_words(s)))?;
    r.push("TDISP start", None, "the device runs".into());
    let d = r.private_dma(0x20);
    r.push_dma(
        "private DMA before accept",
        d,
        "not accepted: the SMMU aborts it",
    );

    let n = r.dev.get_report();
    r.record(NonceKind::Report, n)?;
    r.push(
        "get interface report again",
        None,
        "new report nonce recorded".into(),
    );
    let words = r.accept(attested)?;
    r.push("accept with the earlier tuple", None, words);
    let words = r.accept(current(&r.dev))?;
    r.push("accept with the current tuple", None, words);
    let d = r.private_dma(0x80);
    r.push_dma("private DMA", d, "accepted, yet the SMMU aborts it");

    let gpc = r.p.rme().dma_data(
        SecSid::NonSecure,
        Transaction::write(ORACLE_SID, r.private_page + 0x500),
    );
    let d = r.classify(gpc, 0x500);
    r.push_dma(
        "host's Non-secure DMA aimed at the private page",
        d,
        "aborted by the host's configuration",
    );

    let s = r.stream.take().ok_or("no stream")?;
    r.smmu
        .revoke(&s, RevokeReason::DmaDisable)
        .map_err(|e| format!("revoke: {e:?}"))?;
    r.stream = Some(s);
    r.push(
        "revoke (DMA disable)",
        None,
        "revoked: STE not valid, invalidated and synchronised".into(),
    );
    let d = r.private_dma(0x200);
    r.push_dma(
        "private DMA after revoke",
        d,
        "no stale TLB or STE hit: the SMMU aborts it",
    );

    let gpc_faults = r.p.rme().gpt().faults();
    let violations = r.p.rme().violations().len();
    Ok(Report {
        seed,
        steps: r.steps,
        gpc_faults,
        violations,
    })
}

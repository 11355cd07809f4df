//! An independent state-machine oracle for the Realm acceptance API (SPEC A1–A4), and the
//! harness that drives the same operation sequence through the oracle and through a real
//! implementation ([`AcceptanceGate`] alone, or the whole [`RealmSmmu`] on the model), then
//! checks that they agree on every result and on V after every step.
//!
//! The oracle is written from the acceptance order (RMM's device-assignment flow) and SPEC A1–A4, not from the gate: it
//! keeps a log of what the Realm half was told (each recorded nonce with the lock epoch it
//! belongs to, each tuple that turned the stream on) and answers from that log:
//!
//! - a stream starts with V = 0 (A1); only `accept` sets V = 1 (A2);
//! - `accept` succeeds only when the device reports RUN, the tuple's lock, measurement and
//!   report nonces are the ones last recorded *since the current lock*, the stream is not
//!   already on, and the tuple never turned it on before (A2);
//! - a refusal must name a reason that is true (a value the step once had is stale, a value it
//!   never had is wrong; "wrong" is also allowed for a stale value, since the gate's memory
//!   of old nonces is bounded);
//! - an error, an unlock, a revoke and a destroy leave V = 0 (A4).
//!
//! The device side follows the TDISP states of the model's [`TdispDevice`]: LOCK only from
//! CONFIG_UNLOCKED (a new lock voids the other two nonces), GET_MEASUREMENTS and
//! GET_DEVICE_INTERFACE_REPORT in any state but CONFIG_UNLOCKED, START only from
//! CONFIG_LOCKED, STOP from anywhere, a fault sends a locked or running interface to ERROR.
//! The software playing RMM revokes on the device's error and on its unlock.
//!
//! ```
//! use smmu_model_platform::realm_oracle::{check, GateSubject, Op, TupleChoice};
//!
//! let ops = [Op::Create, Op::Lock, Op::Measure, Op::Report, Op::Run,
//!            Op::Accept(TupleChoice::Current), Op::Report, Op::Revoke,
//!            Op::Accept(TupleChoice::LastAccepted), Op::Destroy];
//! check(&ops, &mut GateSubject::new(7)).unwrap();
//! ```

use std::fmt::Write as _;
use std::string::String;
use std::vec::Vec;

use smmu::realm::{
    AcceptError, AcceptanceGate, NonceKind, NonceTuple, RealmConfig, RealmError, RealmS2Context,
    RealmSmmu, RealmStream, RevokeReason, TdispState,
};
use smmu::{Hal, PhysAddr};
use smmu_model::rme::{TdispDevice, TdispDma, TdispState as DevState};
use smmu_model::{ModelConfig, Transaction, TxnResult};

use crate::realm::{RealmModelRegs, RealmPlatform};
use crate::ModelHal;

/// Which value of one nonce an `accept` presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Pick {
    /// The device's current nonce of this kind (0 while void).
    Current,
    /// One the device issued for this kind before (the n-th, modulo how many; 0 if none).
    Issued(u8),
    /// Any value.
    Other(u64),
}

/// The nonce tuple an `accept` presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum TupleChoice {
    /// The device's current (lock, measurement, report).
    Current,
    /// The last tuple any accept succeeded with (the current one if none did).
    LastAccepted,
    /// Chosen nonce by nonce: lock, measurement, report.
    Mixed(Pick, Pick, Pick),
}

/// One operation of the acceptance flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// `create` the device's Realm stream.
    Create,
    /// TDISP LOCK_INTERFACE, recorded by the Realm half.
    Lock,
    /// SPDM GET_MEASUREMENTS, recorded.
    Measure,
    /// TDISP GET_DEVICE_INTERFACE_REPORT, recorded.
    Report,
    /// TDISP START_INTERFACE.
    Run,
    /// The device faults (→ ERROR); the Realm half revokes.
    Error,
    /// TDISP STOP_INTERFACE (→ CONFIG_UNLOCKED); the Realm half revokes.
    Unlock,
    /// `accept` with a tuple, the device's reported state as it is.
    Accept(TupleChoice),
    /// `revoke` (the guest's DMA disable).
    Revoke,
    /// `destroy` the stream.
    Destroy,
}

/// What an operation returned, as the harness compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// The device answered with a fresh nonce.
    Nonce(u64),
    /// The device refused the request in this state.
    DeviceRefused(TdispState),
    /// There is no stream to act on.
    NoStream,
    /// `create` while the stream exists.
    StreamExists,
    /// `accept` turned the stream on.
    Accepted,
    /// `accept` refused.
    Refused(AcceptError),
    /// The driver or the model failed (never expected).
    Failed(String),
}

/// What the oracle expects of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this outcome.
    Exactly(Outcome),
    /// Any fresh nonce.
    AnyNonce,
    /// A refusal naming one of these (all true) reasons.
    RefusedWithAnyOf(Vec<AcceptError>),
}

impl Expected {
    fn admits(&self, got: &Outcome) -> bool {
        match (self, got) {
            (Self::Exactly(e), g) => e == g,
            (Self::AnyNonce, Outcome::Nonce(_)) => true,
            (Self::RefusedWithAnyOf(reasons), Outcome::Refused(e)) => reasons.contains(e),
            _ => false,
        }
    }
}

const KINDS: [NonceKind; 3] = [NonceKind::Lock, NonceKind::Measurement, NonceKind::Report];

fn kind_index(kind: NonceKind) -> usize {
    match kind {
        NonceKind::Lock => 0,
        NonceKind::Measurement => 1,
        NonceKind::Report => 2,
    }
}

fn tuple_get(t: &NonceTuple, kind: NonceKind) -> u64 {
    match kind {
        NonceKind::Lock => t.lock,
        NonceKind::Measurement => t.measurement,
        NonceKind::Report => t.report,
    }
}

/// The Realm half's view of one stream, as the oracle keeps it.
#[derive(Clone, Debug, Default)]
struct StreamLog {
    /// Every nonce recorded: (kind, value, lock epoch it was recorded in).
    recorded: Vec<(NonceKind, u64, u64)>,
    /// Every tuple that turned the stream on.
    accepted: Vec<NonceTuple>,
    /// The STE's V.
    v: bool,
}

/// The oracle: TDISP state, the device's current nonces, the recorded attestation, V.
#[derive(Clone, Debug)]
pub struct Oracle {
    tdisp: TdispState,
    /// Locks so far: a recorded measurement or report counts only in the epoch of the last lock.
    epoch: u64,
    device: [Option<u64>; 3],
    issued: [Vec<u64>; 3],
    stream: Option<StreamLog>,
    last_accepted: Option<NonceTuple>,
}

impl Default for Oracle {
    fn default() -> Self {
        Self::new()
    }
}

impl Oracle {
    /// A device in CONFIG_UNLOCKED, no stream.
    pub fn new() -> Self {
        Self {
            tdisp: TdispState::ConfigUnlocked,
            epoch: 0,
            device: [None; 3],
            issued: [Vec::new(), Vec::new(), Vec::new()],
            stream: None,
            last_accepted: None,
        }
    }

    /// The device's TDISP state.
    pub fn tdisp(&self) -> TdispState {
        self.tdisp
    }

    /// The stream's V (false without a stream).
    pub fn v(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.v)
    }

    /// The concrete tuple `choice` names now.
    pub fn resolve(&self, choice: TupleChoice) -> NonceTuple {
        let current = NonceTuple {
            lock: self.device[0].unwrap_or(0),
            measurement: self.device[1].unwrap_or(0),
            report: self.device[2].unwrap_or(0),
        };
        let pick = |i: usize, p: Pick| match p {
            Pick::Current => self.device[i].unwrap_or(0),
            Pick::Issued(n) => {
                let issued = &self.issued[i];
                if issued.is_empty() {
                    0
                } else {
                    issued[usize::from(n) % issued.len()]
                }
            }
            Pick::Other(x) => x,
        };
        match choice {
            TupleChoice::Current => current,
            TupleChoice::LastAccepted => self.last_accepted.unwrap_or(current),
            TupleChoice::Mixed(l, m, r) => NonceTuple {
                lock: pick(0, l),
                measurement: pick(1, m),
                report: pick(2, r),
            },
        }
    }

    /// What `op` (with `tuple` for an accept) must return in the current state.
    pub fn expect(&self, op: Op, tuple: NonceTuple) -> Expected {
        use Outcome::{Accepted, DeviceRefused, Done, NoStream, StreamExists};
        let running_or_locked = self.tdisp != TdispState::ConfigUnlocked;
        match op {
            Op::Create if self.stream.is_some() => Expected::Exactly(StreamExists),
            Op::Create => Expected::Exactly(Done),
            Op::Lock if self.tdisp == TdispState::ConfigUnlocked => Expected::AnyNonce,
            Op::Measure | Op::Report if running_or_locked => Expected::AnyNonce,
            Op::Lock | Op::Measure | Op::Report => Expected::Exactly(DeviceRefused(self.tdisp)),
            Op::Run if self.tdisp == TdispState::ConfigLocked => Expected::Exactly(Done),
            Op::Run => Expected::Exactly(DeviceRefused(self.tdisp)),
            Op::Error | Op::Unlock => Expected::Exactly(Done),
            Op::Accept(_) | Op::Revoke | Op::Destroy if self.stream.is_none() => {
                Expected::Exactly(NoStream)
            }
            Op::Revoke | Op::Destroy => Expected::Exactly(Done),
            Op::Accept(_) => {
                let reasons = self.refusals(tuple);
                if reasons.is_empty() {
                    Expected::Exactly(Accepted)
                } else {
                    Expected::RefusedWithAnyOf(reasons)
                }
            }
        }
    }

    /// Every true reason to refuse `tuple` now (empty: accept must succeed).
    fn refusals(&self, t: NonceTuple) -> Vec<AcceptError> {
        let mut reasons = Vec::new();
        let Some(s) = &self.stream else {
            return reasons;
        };
        if s.v {
            reasons.push(AcceptError::AlreadyAccepted);
        }
        if self.tdisp != TdispState::Run {
            reasons.push(AcceptError::NotRunning(self.tdisp));
        }
        for kind in KINDS {
            let given = tuple_get(&t, kind);
            // The attestation of this epoch: the last value recorded for `kind` since the lock.
            let current = s
                .recorded
                .iter()
                .rev()
                .find(|(k, _, e)| *k == kind && *e == self.epoch)
                .map(|(_, v, _)| *v);
            match current {
                None => reasons.push(AcceptError::NotAttested(kind)),
                Some(c) if c == given => {}
                Some(_) => {
                    let once = s.recorded.iter().any(|(k, v, _)| *k == kind && *v == given);
                    if once {
                        reasons.push(AcceptError::StaleNonce(kind));
                    }
                    reasons.push(AcceptError::WrongNonce(kind));
                }
            }
        }
        if s.accepted.contains(&t) {
            reasons.push(AcceptError::Replayed);
        }
        reasons
    }

    /// Moves to the state after `op` returned `got` (which [`Oracle::expect`] admitted).
    fn advance(&mut self, op: Op, tuple: NonceTuple, got: &Outcome) -> Result<(), String> {
        match (op, got) {
            (Op::Create, Outcome::Done) => self.stream = Some(StreamLog::default()),
            (Op::Lock | Op::Measure | Op::Report, Outcome::Nonce(n)) => {
                if self.issued.iter().flatten().any(|x| x == n) {
                    return Err(format!("the device reissued nonce {n:#x}"));
                }
                let kind = match op {
                    Op::Lock => NonceKind::Lock,
                    Op::Measure => NonceKind::Measurement,
                    _ => NonceKind::Report,
                };
                if kind == NonceKind::Lock {
                    self.tdisp = TdispState::ConfigLocked;
                    self.epoch += 1;
                    self.device = [None; 3];
                }
                let i = kind_index(kind);
                self.device[i] = Some(*n);
                self.issued[i].push(*n);
                if let Some(s) = &mut self.stream {
                    s.recorded.push((kind, *n, self.epoch));
                }
            }
            (Op::Run, Outcome::Done) => self.tdisp = TdispState::Run,
            (Op::Error, _) => {
                if self.tdisp != TdispState::ConfigUnlocked {
                    self.tdisp = TdispState::Error;
                }
                self.revoke();
            }
            (Op::Unlock, _) => {
                self.tdisp = TdispState::ConfigUnlocked;
                self.device = [None; 3];
                self.revoke();
            }
            (Op::Accept(_), Outcome::Accepted) => {
                if let Some(s) = &mut self.stream {
                    s.v = true;
                    s.accepted.push(tuple);
                }
                self.last_accepted = Some(tuple);
            }
            (Op::Revoke, Outcome::Done) => self.revoke(),
            (Op::Destroy, Outcome::Done) => self.stream = None,
            _ => {}
        }
        Ok(())
    }

    fn revoke(&mut self) {
        if let Some(s) = &mut self.stream {
            s.v = false;
        }
    }
}

/// An implementation of the acceptance API the oracle is compared with.
pub trait Subject {
    /// Runs `op` (`tuple` is the accept's) and says what it returned.
    fn apply(&mut self, op: Op, tuple: NonceTuple) -> Outcome;
    /// The stream's V as the implementation shows it (false without a stream).
    fn v(&self) -> bool;
    /// The device's TDISP state.
    fn tdisp(&self) -> TdispState;
    /// Further checks after each step (`v` is the agreed V).
    fn after_step(&mut self, v: bool) -> Result<(), String> {
        let _ = v;
        Ok(())
    }
}

fn gate_state(s: DevState) -> TdispState {
    match s {
        DevState::ConfigUnlocked => TdispState::ConfigUnlocked,
        DevState::ConfigLocked => TdispState::ConfigLocked,
        DevState::Run => TdispState::Run,
        DevState::Error => TdispState::Error,
    }
}

/// The device's side of the attestation steps: what it answered, and the nonce to record.
fn device_step(dev: &mut TdispDevice, op: Op) -> Option<(Outcome, Option<(NonceKind, u64)>)> {
    let (r, kind) = match op {
        Op::Lock => (dev.lock(), NonceKind::Lock),
        Op::Measure => (dev.get_measurement(), NonceKind::Measurement),
        Op::Report => (dev.get_report(), NonceKind::Report),
        Op::Run => {
            return Some(match dev.start() {
                Ok(()) => (Outcome::Done, None),
                Err(s) => (Outcome::DeviceRefused(gate_state(s)), None),
            })
        }
        _ => return None,
    };
    Some(match r {
        Ok(n) => (Outcome::Nonce(n), Some((kind, n))),
        Err(s) => (Outcome::DeviceRefused(gate_state(s)), None),
    })
}

/// The [`AcceptanceGate`] alone, with the model's [`TdispDevice`] and the software around it
/// (record each nonce, revoke on error and unlock, forget the gate on destroy).
#[derive(Clone, Debug)]
pub struct GateSubject {
    dev: TdispDevice,
    gate: Option<AcceptanceGate>,
}

impl GateSubject {
    /// A device whose nonces come from `seed`, no stream.
    pub fn new(seed: u64) -> Self {
        Self {
            dev: TdispDevice::new(0x100, seed),
            gate: None,
        }
    }

    /// The gate, if the stream exists.
    pub fn gate_mut(&mut self) -> Option<&mut AcceptanceGate> {
        self.gate.as_mut()
    }
}

impl Subject for GateSubject {
    fn apply(&mut self, op: Op, tuple: NonceTuple) -> Outcome {
        if let Some((out, rec)) = device_step(&mut self.dev, op) {
            if let (Some((kind, n)), Some(g)) = (rec, &mut self.gate) {
                g.record(kind, n);
            }
            return out;
        }
        match op {
            Op::Create if self.gate.is_some() => Outcome::StreamExists,
            Op::Create => {
                self.gate = Some(AcceptanceGate::new());
                Outcome::Done
            }
            Op::Error | Op::Unlock => {
                if op == Op::Error {
                    self.dev.fault();
                } else {
                    self.dev.stop();
                }
                if let Some(g) = &mut self.gate {
                    g.revoke();
                }
                Outcome::Done
            }
            _ => {
                let reported = gate_state(self.dev.state());
                let Some(g) = &mut self.gate else {
                    return Outcome::NoStream;
                };
                match op {
                    Op::Accept(_) => match g.check(&tuple, reported) {
                        Ok(()) => {
                            g.consume(tuple);
                            Outcome::Accepted
                        }
                        Err(e) => Outcome::Refused(e),
                    },
                    Op::Revoke => {
                        g.revoke();
                        Outcome::Done
                    }
                    _ => {
                        g.revoke();
                        self.gate = None;
                        Outcome::Done
                    }
                }
            }
        }
    }

    fn v(&self) -> bool {
        self.gate.as_ref().is_some_and(AcceptanceGate::is_accepted)
    }

    fn tdisp(&self) -> TdispState {
        gate_state(self.dev.state())
    }
}

/// The StreamID of the device in [`RealmSubject`].
pub const ORACLE_SID: u32 = 0x120;
/// The IPA the device's private DMA targets in [`RealmSubject`].
pub const ORACLE_IPA: u64 = 0x4000_0000;
/// VTCR_EL2 of the Realm in [`RealmSubject`]: T0SZ 25, SL0 1 (level 1, 4K), WB, inner
/// shareable, TG0 4K, PS 40 bits.
pub const ORACLE_VTCR: u64 = 0x19 | 1 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | 2 << 16;

/// The Realm's stage-2 table (RMM's RTT) in the Realm pool, mapping `ipa` to one private
/// page: the context and the page's PA.
pub fn realm_s2(p: &RealmPlatform, ipa: u64) -> Result<(RealmS2Context, u64), String> {
    let hal = p.realm_hal();
    let page = || {
        hal.dma_alloc(4096, 4096)
            .map(|r| r.pa.0)
            .map_err(|e| format!("Realm page: {e:?}"))
    };
    let (l1, l2, l3, data) = (page()?, page()?, page()?, page()?);
    let m = p.rme().realm();
    let leaf = data | 3 | 1 << 10 | 3 << 8 | 3 << 6 | 0xF << 2;
    for (at, v) in [
        (l1 + 8 * ((ipa >> 30) & 0x1FF), l2 | 3),
        (l2 + 8 * ((ipa >> 21) & 0x1FF), l3 | 3),
        (l3 + 8 * ((ipa >> 12) & 0x1FF), leaf),
    ] {
        m.write_u64(at, v).map_err(|e| format!("RTT: {e:?}"))?;
    }
    let ctx = RealmS2Context {
        vmid: 9,
        s2ttb: PhysAddr(l1),
        vtcr_el2: ORACLE_VTCR,
        mecid: 3,
    };
    Ok((ctx, data))
}

/// The whole [`RealmSmmu`] on the model's Realm interface, with a [`TdispDevice`] that tries
/// a private DMA write after every step: issued only in RUN, translated exactly when V = 1,
/// and the model's violation log stays empty.
pub struct RealmSubject {
    p: RealmPlatform,
    smmu: RealmSmmu<RealmModelRegs, ModelHal>,
    dev: TdispDevice,
    ctx: RealmS2Context,
    stream: Option<RealmStream>,
    private_page: u64,
}

impl core::fmt::Debug for RealmSubject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RealmSubject")
            .field("dev", &self.dev)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl RealmSubject {
    /// A fresh platform and Realm interface, the Realm's stage 2 set up, no stream.
    pub fn new(seed: u64) -> Result<Self, String> {
        let p = RealmPlatform::new(ModelConfig::default()).map_err(|e| format!("{e:?}"))?;
        let smmu = RealmSmmu::probe(
            p.realm_regs(),
            &p.common_ids(),
            p.realm_hal(),
            RealmConfig::default(),
        )
        .map_err(|e| format!("probe: {e:?}"))?;
        let (ctx, private_page) = realm_s2(&p, ORACLE_IPA)?;
        Ok(Self {
            p,
            smmu,
            dev: TdispDevice::new(ORACLE_SID, seed),
            ctx,
            stream: None,
            private_page,
        })
    }

    /// The Realm half (tests make it deliberately wrong through it).
    pub fn smmu_mut(&mut self) -> &mut RealmSmmu<RealmModelRegs, ModelHal> {
        &mut self.smmu
    }

    fn revoke(&mut self, reason: RevokeReason) -> Outcome {
        match &self.stream {
            None => Outcome::NoStream,
            Some(s) => match self.smmu.revoke(s, reason) {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Failed(format!("revoke: {e:?}")),
            },
        }
    }
}

impl Subject for RealmSubject {
    fn apply(&mut self, op: Op, tuple: NonceTuple) -> Outcome {
        if let Some((out, rec)) = device_step(&mut self.dev, op) {
            if let (Some((kind, n)), Some(s)) = (rec, &self.stream) {
                if let Err(e) = self.smmu.record(s, kind, n) {
                    return Outcome::Failed(format!("record: {e:?}"));
                }
            }
            return out;
        }
        match op {
            Op::Create if self.stream.is_some() => Outcome::StreamExists,
            Op::Create => match self.smmu.create(ORACLE_SID, &self.ctx) {
                Ok(s) => {
                    self.stream = Some(s);
                    Outcome::Done
                }
                Err(e) => Outcome::Failed(format!("create: {e:?}")),
            },
            Op::Error => {
                self.dev.fault();
                match self.revoke(RevokeReason::DeviceError) {
                    Outcome::NoStream => Outcome::Done,
                    o => o,
                }
            }
            Op::Unlock => {
                self.dev.stop();
                match self.revoke(RevokeReason::Unlock) {
                    Outcome::NoStream => Outcome::Done,
                    o => o,
                }
            }
            Op::Revoke => self.revoke(RevokeReason::DmaDisable),
            Op::Accept(_) => {
                let Some(s) = &self.stream else {
                    return Outcome::NoStream;
                };
                match self.smmu.accept(s, tuple, gate_state(self.dev.state())) {
                    Ok(()) => Outcome::Accepted,
                    Err(RealmError::Refused(e)) => Outcome::Refused(e),
                    Err(RealmError::Smmu(e)) => Outcome::Failed(format!("accept: {e:?}")),
                }
            }
            _ => match self.stream.take() {
                None => Outcome::NoStream,
                Some(s) => match self.smmu.destroy(s) {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(format!("destroy: {e:?}")),
                },
            },
        }
    }

    fn v(&self) -> bool {
        self.stream
            .as_ref()
            .and_then(|s| self.smmu.ste(s).ok())
            .is_some_and(|w| w[0] & 1 == 1)
    }

    fn tdisp(&self) -> TdispState {
        gate_state(self.dev.state())
    }

    fn after_step(&mut self, v: bool) -> Result<(), String> {
        if let Some(s) = &self.stream {
            if self.smmu.is_accepted(s) != v {
                return Err(format!(
                    "the Realm half says accepted = {}, V = {v}",
                    self.smmu.is_accepted(s)
                ));
            }
        }
        let r = self
            .dev
            .private_dma(self.p.rme(), Transaction::write(0, ORACLE_IPA));
        let ok = match (self.dev.state(), r) {
            (DevState::Run, TdispDma::Issued(TxnResult::Translated { pa })) => {
                v && pa == self.private_page
            }
            (DevState::Run, TdispDma::Issued(TxnResult::Abort { .. })) => !v,
            (DevState::Run, TdispDma::Issued(_)) => false,
            (s, TdispDma::NotIssued(n)) => s != DevState::Run && s == n,
            (_, TdispDma::Issued(_)) => false,
        };
        if !ok {
            return Err(format!("private DMA with V = {v}: {r:?}"));
        }
        let violations = self.p.rme().violations();
        if !violations.is_empty() {
            return Err(format!("violations: {violations:?}"));
        }
        Ok(())
    }
}

/// Drives `ops` through the oracle and `subject`; the first disagreement, described.
pub fn check(ops: &[Op], subject: &mut dyn Subject) -> Result<(), String> {
    let mut oracle = Oracle::new();
    let mut trace = String::new();
    for (i, &op) in ops.iter().enumerate() {
        let tuple = match op {
            Op::Accept(choice) => oracle.resolve(choice),
            _ => NonceTuple::default(),
        };
        let expected = oracle.expect(op, tuple);
        let got = subject.apply(op, tuple);
        let _ = writeln!(trace, "  {i}: {op:?} -> {got:?}");
        let fail = |why: String| Err(format!("step {i} ({op:?}, {tuple:?}): {why}\n{trace}"));
        if !expected.admits(&got) {
            return fail(format!("expected {expected:?}, got {got:?}"));
        }
        if let Err(e) = oracle.advance(op, tuple, &got) {
            return fail(e);
        }
        if subject.v() != oracle.v() {
            return fail(format!(
                "V = {}, the oracle says {}",
                subject.v(),
                oracle.v()
            ));
        }
        if subject.tdisp() != oracle.tdisp() {
            return fail(format!(
                "TDISP {:?}, the oracle says {:?}",
                subject.tdisp(),
                oracle.tdisp()
            ));
        }
        if let Err(e) = subject.after_step(oracle.v()) {
            return fail(e);
        }
    }
    Ok(())
}

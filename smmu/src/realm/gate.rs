//! The acceptance gate of one Realm stream (SPEC A2): which nonce tuple and TDISP state may
//! turn its STE valid. Pure state, no hardware: [`RealmSmmu`](super::RealmSmmu) consults it
//! before the only V 0→1 store it makes.

/// The TDISP state of a device interface, as the device reports it
/// (GET_DEVICE_INTERFACE_STATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum TdispState {
    /// Configuration may change; the interface is not bound to a Realm.
    ConfigUnlocked,
    /// Configuration locked for attestation.
    ConfigLocked,
    /// Started: the interface may issue Realm (T = 1) requests.
    Run,
    /// A change or fault while locked.
    Error,
}

/// One of the three attestation steps that refresh a nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum NonceKind {
    /// TDISP LOCK_INTERFACE.
    Lock,
    /// SPDM GET_MEASUREMENTS.
    Measurement,
    /// TDISP GET_DEVICE_INTERFACE_REPORT.
    Report,
}

impl NonceKind {
    const ALL: [NonceKind; 3] = [NonceKind::Lock, NonceKind::Measurement, NonceKind::Report];

    fn index(self) -> usize {
        match self {
            Self::Lock => 0,
            Self::Measurement => 1,
            Self::Report => 2,
        }
    }
}

/// The (lock, measurement, report) nonces a guest verified and presents to `accept`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct NonceTuple {
    /// The lock nonce.
    pub lock: u64,
    /// The measurement nonce.
    pub measurement: u64,
    /// The report nonce.
    pub report: u64,
}

impl NonceTuple {
    fn get(&self, kind: NonceKind) -> u64 {
        match kind {
            NonceKind::Lock => self.lock,
            NonceKind::Measurement => self.measurement,
            NonceKind::Report => self.report,
        }
    }
}

/// Why `accept` refused (SPEC A2). Nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// The device does not report RUN.
    NotRunning(TdispState),
    /// A step of the attestation has not happened since the last lock.
    NotAttested(NonceKind),
    /// The nonce matches no value this step ever had.
    WrongNonce(NonceKind),
    /// The nonce was current once, but the step has been refreshed since.
    StaleNonce(NonceKind),
    /// This exact tuple already turned the stream on once; a new acceptance needs a refreshed
    /// attestation.
    Replayed,
    /// The stream is already accepted.
    AlreadyAccepted,
}

/// Superseded nonces remembered per step, to tell a stale tuple from a wrong one.
const HISTORY: usize = 4;
/// Tuples that turned the stream on, remembered to refuse their replay.
const CONSUMED: usize = 8;

/// The acceptance state of one Realm stream (SPEC A2).
///
/// ```
/// use smmu::realm::{AcceptError, AcceptanceGate, NonceKind, NonceTuple, TdispState};
///
/// let mut gate = AcceptanceGate::new();
/// gate.record(NonceKind::Lock, 1);
/// gate.record(NonceKind::Measurement, 2);
/// gate.record(NonceKind::Report, 3);
/// let tuple = NonceTuple { lock: 1, measurement: 2, report: 3 };
/// assert_eq!(gate.check(&tuple, TdispState::ConfigLocked), Err(AcceptError::NotRunning(TdispState::ConfigLocked)));
/// assert_eq!(gate.check(&tuple, TdispState::Run), Ok(()));
/// gate.record(NonceKind::Report, 4); // a report refresh
/// assert_eq!(gate.check(&tuple, TdispState::Run), Err(AcceptError::StaleNonce(NonceKind::Report)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptanceGate {
    current: [Option<u64>; 3],
    history: [[Option<u64>; HISTORY]; 3],
    consumed: [Option<NonceTuple>; CONSUMED],
    consumed_next: usize,
    accepted: bool,
}

impl AcceptanceGate {
    /// A stream just created: nothing attested, not accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a refreshed nonce of `kind`. A lock starts a new attestation: the measurement
    /// and report nonces of the previous one stop being current.
    pub fn record(&mut self, kind: NonceKind, nonce: u64) {
        let kinds: &[NonceKind] = if kind == NonceKind::Lock {
            &NonceKind::ALL
        } else {
            core::slice::from_ref(&kind)
        };
        for &k in kinds {
            let i = k.index();
            if let (Some(old), Some(history)) = (
                self.current.get(i).copied().flatten(),
                self.history.get_mut(i),
            ) {
                history.rotate_right(1);
                if let Some(first) = history.first_mut() {
                    *first = Some(old);
                }
            }
            if let Some(c) = self.current.get_mut(i) {
                *c = None;
            }
        }
        if let Some(c) = self.current.get_mut(kind.index()) {
            *c = Some(nonce);
        }
    }

    /// Whether `tuple` and `reported` may turn the stream on now.
    pub fn check(&self, tuple: &NonceTuple, reported: TdispState) -> Result<(), AcceptError> {
        if self.accepted {
            return Err(AcceptError::AlreadyAccepted);
        }
        if reported != TdispState::Run {
            return Err(AcceptError::NotRunning(reported));
        }
        for kind in NonceKind::ALL {
            let i = kind.index();
            let given = tuple.get(kind);
            match self.current.get(i).copied().flatten() {
                None => return Err(AcceptError::NotAttested(kind)),
                Some(c) if c == given => {}
                Some(_) => {
                    let stale = self
                        .history
                        .get(i)
                        .is_some_and(|h| h.contains(&Some(given)));
                    return Err(if stale {
                        AcceptError::StaleNonce(kind)
                    } else {
                        AcceptError::WrongNonce(kind)
                    });
                }
            }
        }
        if self.consumed.contains(&Some(*tuple)) {
            return Err(AcceptError::Replayed);
        }
        Ok(())
    }

    /// Records that `tuple` turned the stream on.
    pub fn consume(&mut self, tuple: NonceTuple) {
        if let Some(slot) = self.consumed.get_mut(self.consumed_next % CONSUMED) {
            *slot = Some(tuple);
        }
        self.consumed_next = self.consumed_next.wrapping_add(1);
        self.accepted = true;
    }

    /// Records that the stream was turned off.
    pub fn revoke(&mut self) {
        self.accepted = false;
    }

    /// Whether the stream is accepted.
    pub fn is_accepted(&self) -> bool {
        self.accepted
    }
}

//! The Realm accept/revoke API against an independent state-machine oracle (SPEC A1–A4, B2):
//! the bytes decode into an operation sequence (lock, measure, report, run, error, unlock,
//! accept with a chosen tuple, revoke, create, destroy) that runs through the oracle and
//! through the real `AcceptanceGate`, and, for short sequences, the whole `RealmSmmu` on the
//! model with a private DMA after each step; any disagreement on a result, on V or on a DMA
//! is a crash. The same comparison runs as a property test in `tests/tests/realm_oracle.rs`.
#![no_main]
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use smmu_model_platform::realm_oracle::{check, GateSubject, Op, RealmSubject};

/// Sequences at most this long also run on the whole Realm half (a model each).
const REALM_OPS: usize = 32;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(seed) = u64::arbitrary(&mut u) else {
        return;
    };
    let mut ops = Vec::new();
    while ops.len() < 256 {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    if let Err(e) = check(&ops, &mut GateSubject::new(seed)) {
        panic!("the gate disagrees with the oracle: {e}");
    }
    if ops.len() <= REALM_OPS {
        let mut realm = RealmSubject::new(seed).expect("the Realm platform");
        if let Err(e) = check(&ops, &mut realm) {
            panic!("the Realm half disagrees with the oracle: {e}");
        }
    }
});

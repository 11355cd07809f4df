//! The accept/revoke API against an independent state-machine oracle (SPEC A1–A4): random
//! operation sequences (lock, measure, report, run, error, unlock, accept with current, stale,
//! replayed or wrong tuples, revoke, create, destroy) run through the oracle
//! (`smmu_model_platform::realm_oracle`, written from the order and the rules, not from the
//! gate) and through the real [`AcceptanceGate`] and the whole Realm half on the model; they
//! must agree on every result, on V and, on the model, on what each private DMA did.
//! The same comparison is the fuzz target `realm_accept`.

use proptest::prelude::*;
use smmu::realm::{AcceptanceGate, Broken, NonceKind, NonceTuple};
use smmu_model_platform::realm_oracle::{
    check, GateSubject, Op, Outcome, Pick, RealmSubject, Subject, TupleChoice,
};

const GATE_CASES: u32 = if cfg!(miri) { 4 } else { 512 };
const REALM_CASES: u32 = if cfg!(miri) { 1 } else { 256 };

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => Just(Pick::Current),
        2 => any::<u8>().prop_map(Pick::Issued),
        1 => any::<u64>().prop_map(Pick::Other),
    ]
}

fn tuple() -> impl Strategy<Value = TupleChoice> {
    prop_oneof![
        4 => Just(TupleChoice::Current),
        1 => Just(TupleChoice::LastAccepted),
        2 => (pick(), pick(), pick()).prop_map(|(l, m, r)| TupleChoice::Mixed(l, m, r)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Create),
        3 => Just(Op::Lock),
        3 => Just(Op::Measure),
        3 => Just(Op::Report),
        3 => Just(Op::Run),
        1 => Just(Op::Error),
        1 => Just(Op::Unlock),
        5 => tuple().prop_map(Op::Accept),
        2 => Just(Op::Revoke),
        1 => Just(Op::Destroy),
    ]
}

/// Sequences start with a create most of the time, so that the stream exists for most steps.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (any::<bool>(), proptest::collection::vec(op(), 1..48)).prop_map(|(create, mut ops)| {
        if create {
            ops.insert(0, Op::Create);
        }
        ops
    })
}

/// The acceptance flow, step by step, then each way of getting it wrong.
const HAPPY: [Op; 6] = [
    Op::Create,
    Op::Lock,
    Op::Measure,
    Op::Report,
    Op::Run,
    Op::Accept(TupleChoice::Current),
];

// spec: A1, A2, A4
#[test]
fn oracle_agrees_on_the_flow_and_its_variations() {
    let mut flows: Vec<Vec<Op>> = vec![HAPPY.to_vec()];
    // A report refresh after acceptance: V stays, the old tuple is stale after a revoke.
    flows.push(
        [
            &HAPPY[..],
            &[
                Op::Report,
                Op::Revoke,
                Op::Accept(TupleChoice::LastAccepted),
                Op::Accept(TupleChoice::Current),
            ],
        ]
        .concat(),
    );
    // Replay after a revoke, and a re-lock making everything stale.
    flows.push(
        [
            &HAPPY[..],
            &[
                Op::Revoke,
                Op::Accept(TupleChoice::LastAccepted),
                Op::Unlock,
                Op::Lock,
                Op::Measure,
                Op::Report,
                Op::Run,
                Op::Accept(TupleChoice::LastAccepted),
                Op::Accept(TupleChoice::Current),
                Op::Error,
                Op::Accept(TupleChoice::Current),
                Op::Destroy,
                Op::Accept(TupleChoice::Current),
            ],
        ]
        .concat(),
    );
    // A stream created after the lock never saw it: not attested.
    flows.push(vec![
        Op::Lock,
        Op::Create,
        Op::Measure,
        Op::Report,
        Op::Run,
        Op::Accept(TupleChoice::Current),
    ]);
    for flow in flows {
        check(&flow, &mut GateSubject::new(1)).unwrap();
        check(&flow, &mut RealmSubject::new(1).unwrap()).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: GATE_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    // spec: A1, A2, A4
    #[test]
    fn gate_agrees_with_the_oracle(ops in ops(), seed in any::<u64>()) {
        if let Err(e) = check(&ops, &mut GateSubject::new(seed)) {
            prop_assert!(false, "{}", e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: REALM_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    // spec: A1, A2, A4
    #[test]
    fn realm_half_agrees_with_the_oracle(ops in ops(), seed in any::<u64>()) {
        let mut subject = RealmSubject::new(seed).unwrap();
        if let Err(e) = check(&ops, &mut subject) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// A gate that forgets to compare the report nonce (it takes the tuple's as recorded).
struct SkipsReport(GateSubject);

impl Subject for SkipsReport {
    fn apply(&mut self, op: Op, tuple: NonceTuple) -> Outcome {
        let reported = self.0.tdisp();
        match (op, self.0.gate_mut()) {
            (Op::Accept(_), Some(g)) => {
                let mut forgetful: AcceptanceGate = g.clone();
                forgetful.record(NonceKind::Report, tuple.report);
                match forgetful.check(&tuple, reported) {
                    Ok(()) => {
                        g.consume(tuple);
                        Outcome::Accepted
                    }
                    Err(e) => Outcome::Refused(e),
                }
            }
            _ => self.0.apply(op, tuple),
        }
    }
    fn v(&self) -> bool {
        self.0.v()
    }
    fn tdisp(&self) -> smmu::realm::TdispState {
        self.0.tdisp()
    }
}

/// A stale report nonce after a refresh: the sequence both broken variants must fail on.
fn stale_report() -> Vec<Op> {
    let mut ops = HAPPY[..5].to_vec();
    ops.extend([
        Op::Report,
        Op::Accept(TupleChoice::Mixed(
            Pick::Current,
            Pick::Current,
            Pick::Issued(0),
        )),
    ]);
    ops
}

// spec: A2
#[test]
fn oracle_catches_a_gate_that_skips_the_report_nonce() {
    let ops = stale_report();
    check(&ops, &mut GateSubject::new(3)).unwrap();
    let e = check(&ops, &mut SkipsReport(GateSubject::new(3))).unwrap_err();
    assert!(e.contains("step 6"), "{e}");
    assert!(e.contains("got Accepted"), "{e}");
}

// spec: A2
#[test]
fn oracle_catches_a_realm_half_that_skips_the_report_nonce() {
    let ops = stale_report();
    check(&ops, &mut RealmSubject::new(3).unwrap()).unwrap();
    let mut broken = RealmSubject::new(3).unwrap();
    broken
        .smmu_mut()
        .set_broken(Some(Broken::AcceptSkipsReportNonce));
    let e = check(&ops, &mut broken).unwrap_err();
    assert!(e.contains("step 6"), "{e}");
    assert!(e.contains("got Accepted"), "{e}");
}

// spec: A1
#[test]
fn oracle_catches_a_realm_half_valid_at_create() {
    let mut broken = RealmSubject::new(4).unwrap();
    broken.smmu_mut().set_broken(Some(Broken::ValidAtCreate));
    let e = check(&[Op::Create], &mut broken).unwrap_err();
    assert!(e.contains("V = true, the oracle says false"), "{e}");
}

// spec: A2
#[test]
#[cfg_attr(miri, ignore = "needs many cases")]
fn random_sequences_find_the_broken_report_check() {
    // Without being told the sequence: the property itself finds the fault.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: if cfg!(miri) { 16 } else { 2048 },
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let found = runner.run(&(ops(), any::<u64>()), |(ops, seed)| {
        match check(&ops, &mut SkipsReport(GateSubject::new(seed))) {
            Ok(()) => Ok(()),
            Err(e) => Err(TestCaseError::fail(e)),
        }
    });
    assert!(found.is_err(), "2048 random sequences missed the fault");
}

// spec: A4
#[test]
fn destroy_then_create_in_the_same_level2_range_reads_no_freed_memory() {
    // Found by the property above: the model's torn-fetch bookkeeping of the freed level-2
    // table's STE was re-read at the next CFGI_STE of the StreamID and logged as an SMMU read
    // of freed memory.
    let ops = [Op::Create, Op::Lock, Op::Run, Op::Destroy, Op::Create];
    check(&ops, &mut RealmSubject::new(0).unwrap()).unwrap();
}

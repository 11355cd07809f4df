//! SPEC B1/B2: arbitrary bytes as STEs, CDs, L1STDs, command streams and register writes never
//! panic the model and never make it touch memory outside what it was given. The fuzz targets in
//! `fuzz/fuzz_targets/model_*.rs` call the same entry points.
use proptest::prelude::*;
use smmu_model::fields::{evt, reg, ste};
use smmu_model::{fuzzing, Cause, Model, ModelConfig, Profile, Transaction, TxnResult};

fn cfg() -> ProptestConfig {
    // PROPTEST_CASES overrides the modest default (kept small so `cargo test` stays fast).
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn command_streams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let n = fuzzing::run_cmdq(&data);
        prop_assert!(n <= 256);
    }

    #[test]
    fn register_writes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        fuzzing::run_regs(&data);
    }

    #[test]
    fn structure_fetches_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let r = fuzzing::run_fetch(&data);
        prop_assert_eq!(r.len(), 4);
    }

    /// S3: random STE bytes either decode (legal) or give C_BAD_STE; never a crash.
    #[test]
    fn random_stes_decode_or_bad_ste(words in proptest::array::uniform8(any::<u64>()), sel in 0u8..3) {
        let profile = [Profile::qemu_virt(), Profile::mmu600(), Profile::grace()][sel as usize].clone();
        let mut m = Model::new(ModelConfig { profile, ack_latency: 0, ram_size: 1 << 24, mem_limit: 1 << 22, ..ModelConfig::default() });
        let st = 0x4000_0000u64;
        for (i, w) in words.iter().enumerate() {
            m.write_u64(st + 8 * i as u64, *w).unwrap();
        }
        m.write32(reg::STRTAB_BASE_CFG, 4);
        m.write64(reg::STRTAB_BASE, st);
        m.write32(reg::CR0, reg::CR0_SMMUEN);
        let legal = m.ste_is_legal(&words);
        let r = m.dma(Transaction::read(0, 0x1000));
        if legal {
            let bad = matches!(r, TxnResult::Abort { cause: Cause::BadSte, .. });
            prop_assert!(!bad, "legal STE gave C_BAD_STE");
        } else {
            let ok = matches!(r, TxnResult::Abort { cause: Cause::BadSte, event: Some(e) } if e.id() == evt::C_BAD_STE);
            prop_assert!(ok, "illegal STE must give C_BAD_STE, got {:?}", r);
        }
        if ste::V.get(&words) == 0 {
            prop_assert!(!legal);
        }
        prop_assert!(m.mem_backed() <= 1 << 22);
    }

    /// S4: random CD bytes never panic the decoder; a legal CD's IPS never exceeds the OAS.
    #[test]
    fn random_cds_decode(words in proptest::array::uniform8(any::<u64>())) {
        let m = Model::new(ModelConfig::default());
        if let Some((ia, ips)) = m.cd_geometry(&words) {
            prop_assert!(ips <= 44);
            prop_assert!(ia == 0 || (25..=48).contains(&ia));
        }
        let _ = m.cd_is_legal(&words);
    }

    /// Memory is bounded: writes beyond the limit are typed errors, reads outside RAM are typed
    /// errors, nothing else happens.
    #[test]
    fn memory_is_bounded(addrs in proptest::collection::vec(any::<u64>(), 1..64)) {
        let mut m = Model::new(ModelConfig { ram_size: 1 << 20, mem_limit: 1 << 14, ..ModelConfig::default() });
        for a in addrs {
            let mut b = [0u8; 16];
            let _ = m.mem_read(a, &mut b);
            let _ = m.mem_write(a, &b);
            let _ = m.write_u64(a, a);
        }
        prop_assert!(m.mem_backed() <= 1 << 14);
    }
}

/// The shared entry points do real work on well-formed input (so the property tests above are
/// not vacuous).
#[test]
fn fuzz_entry_points_exercise_the_model() {
    use smmu_model::fields::cmd;
    let mut data = vec![0u8; 48];
    data[0] = 0; // profile qemu-virt
                 // Command 0: CFGI_ALL (opcode 4, Range 31); command 1: TLBI_NSNH_ALL; command 2: CMD_SYNC.
    data[0] = cmd::CFGI_STE_RANGE;
    data[8] = 31;
    data[16] = cmd::TLBI_NSNH_ALL;
    data[32] = cmd::SYNC;
    assert_eq!(fuzzing::run_cmdq(&data), 3);
    // A bypass STE (V = 1, Config = 0b100) in a linear table: every transaction bypasses.
    let mut f = vec![0u8; 300];
    f[16] = 0x09;
    let r = fuzzing::run_fetch(&f);
    assert!(
        r.iter()
            .take(3)
            .all(|x| matches!(x, TxnResult::Bypass { .. })),
        "{r:?}"
    );
    // A write to an ID register is logged.
    assert!(fuzzing::run_regs(&[0, 0, 0, 1, 0, 0, 0]) >= 1);
}

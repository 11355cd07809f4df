//! The command queue on the model (SPEC D5): batching, completion modes, error recovery and
//! several producers at once.

use smmu::arch::cmd::{opcode, Command};
use smmu::arch::queue::cmdq_error;
use smmu::cmdq::{CommandBatch, SyncMode};
use smmu::{Error, SmmuConfig};
use smmu_model::fields::reg;
use smmu_model::{ModelConfig, Profile};
use smmu_model_platform::rig::Rig;

fn hostile(profile: Profile) -> ModelConfig {
    ModelConfig {
        ram_size: 16 << 20,
        ..ModelConfig::hostile(profile, 3)
    }
}

fn commands(rig: &Rig) -> u64 {
    rig.model().with(|m| m.signals().commands)
}

// spec: D5
#[test]
fn a_batch_of_any_size_costs_one_sync() {
    let rig = Rig::new(hostile(Profile::mmu600()), SmmuConfig::default()).unwrap();
    let before = rig.smmu.cmdq().stats();
    let mut batch = CommandBatch::new(rig.smmu.cmdq(), rig.smmu.hal(), rig.smmu.regs());
    for sid in 0..200 {
        batch.add(Command::CfgiSte { sid, leaf: true }).unwrap();
    }
    assert_eq!(batch.len(), 200);
    batch.submit().unwrap();
    let after = rig.smmu.cmdq().stats();
    assert_eq!(after.commands - before.commands, 201);
    assert_eq!(after.syncs - before.syncs, 1);
    // 64 + 64 + 64 without a sync, then 8 + the sync: four PROD writes.
    assert_eq!(after.publishes - before.publishes, 4);
    rig.assert_no_violations();
}

// spec: D5
#[test]
fn completion_by_msi_sev_or_polling() {
    let msi = Profile::mmu600();
    let sev = Profile::mmu600().with(0, reg::IDR0_MSI, 0);
    let poll = Profile::mmu600()
        .with(0, reg::IDR0_MSI, 0)
        .with(0, reg::IDR0_SEV, 0);
    for (profile, mode) in [
        (msi, SyncMode::Msi),
        (sev, SyncMode::Sev),
        (poll, SyncMode::Poll),
    ] {
        let rig = Rig::new(hostile(profile), SmmuConfig::default()).unwrap();
        assert_eq!(rig.smmu.cmdq().sync_mode(), mode);
        let (msi0, sev0) = rig
            .model()
            .with(|m| (m.signals().msi_writes.len(), m.signals().sev));
        rig.smmu
            .cmdq()
            .sync(rig.smmu.hal(), rig.smmu.regs())
            .unwrap();
        let (msi1, sev1) = rig
            .model()
            .with(|m| (m.signals().msi_writes.len(), m.signals().sev));
        match mode {
            SyncMode::Msi => assert_eq!(msi1 - msi0, 1, "one MSI write-back"),
            SyncMode::Sev => assert_eq!((msi1 - msi0, sev1 - sev0), (0, 1), "one SEV"),
            SyncMode::Poll => assert_eq!((msi1 - msi0, sev1 - sev0), (0, 0)),
        }
        rig.assert_no_violations();
    }
}

// spec: D5
#[test]
fn an_illegal_command_is_replaced_reported_and_the_queue_runs_on() {
    let rig = Rig::new(hostile(Profile::qemu_virt()), SmmuConfig::default()).unwrap();
    let q = rig.smmu.cmdq();
    let (hal, regs) = (rig.smmu.hal(), rig.smmu.regs());
    let before = commands(&rig);
    // CMD_TLBI_EL3_ALL is illegal on a Non-secure command queue (CERROR_ILL).
    let err = q
        .issue(
            hal,
            regs,
            &[Command::CfgiAll, Command::TlbiEl3All, Command::TlbiNsnhAll],
            true,
        )
        .expect_err("the SMMU rejects CMD_TLBI_EL3_ALL");
    let Error::CommandRejected(fault) = err else {
        panic!("expected CommandRejected, got {err:?}")
    };
    assert_eq!(fault.error, cmdq_error::ILL);
    assert_eq!(fault.words[0] & 0xff, u64::from(opcode::TLBI_EL3_ALL));
    // The commands after the rejected one ran; so does the next submission.
    assert!(commands(&rig) - before >= 4);
    q.issue(hal, regs, &[Command::CfgiAll], true).unwrap();
    assert_eq!(q.stats().illegal, 1);
    rig.assert_no_violations();
}

// spec: D5
#[test]
fn an_atc_invalidation_timeout_is_retried() {
    let rig = Rig::new(hostile(Profile::mmu600()), SmmuConfig::default()).unwrap();
    rig.model().with(|m| m.inject_atc_inv_timeout(true));
    let q = rig.smmu.cmdq();
    q.issue(
        rig.smmu.hal(),
        rig.smmu.regs(),
        &[Command::AtcInv {
            sid: 5,
            ssid: None,
            global: false,
            addr: 0,
            size: 52,
        }],
        true,
    )
    .unwrap();
    assert!(q.stats().retries >= 1);
    rig.assert_no_violations();
}

// spec: D5
#[test]
fn several_producers_never_interleave_or_lose_commands() {
    let rig = Rig::new(hostile(Profile::grace()), SmmuConfig::default()).unwrap();
    let before = rig.smmu.cmdq().stats();
    let m0 = commands(&rig);
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 50;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let smmu = &rig.smmu;
            s.spawn(move || {
                for r in 0..ROUNDS {
                    let mut batch = CommandBatch::new(smmu.cmdq(), smmu.hal(), smmu.regs());
                    for k in 0..=((t + r) % 70) {
                        batch
                            .add(Command::CfgiSte {
                                sid: t * 1000 + k,
                                leaf: true,
                            })
                            .unwrap();
                    }
                    batch.submit().unwrap();
                }
            });
        }
    });
    let after = rig.smmu.cmdq().stats();
    let issued: u64 = (0..THREADS)
        .flat_map(|t| (0..ROUNDS).map(move |r| u64::from(1 + (t + r) % 70) + 1))
        .sum();
    assert_eq!(after.commands - before.commands, issued);
    assert_eq!(after.syncs - before.syncs, u64::from(THREADS * ROUNDS));
    assert_eq!(
        commands(&rig) - m0,
        issued,
        "the model consumed every command"
    );
    rig.assert_no_violations();
}

//! `RESET_DISABLE_FIRST` (SPEC K16, D11; IHI 0070 G.b §6.3.14) on a QEMU-7.2-like model whose
//! `GBPA` is not implemented: after a refused adoption the default fallback stops with
//! `AbortNotConfirmed` (translation still on, no driver), and the disable-first plan with
//! `GbpaPolicy::AcceptIgnoredWhileDisabled` brings the crash kernel's driver up.

use core::mem::MaybeUninit;

use smmu::{Error, GbpaPolicy, MasterConfig, ResetStep, SmmuConfig};
use smmu_kdump::{
    boot_in, AdoptOptions, AdoptPlatform, CrashDriver, Refusal, Verdict, RESET_DISABLE_FIRST,
};
use smmu_model::fields::reg;
use smmu_model::{ModelConfig, Profile};
use smmu_model_platform::rig::Rig;
use smmu_model_platform::{ModelHal, ModelRegs};

fn accept_ignored() -> SmmuConfig {
    SmmuConfig {
        gbpa: GbpaPolicy::AcceptIgnoredWhileDisabled,
        ..SmmuConfig::default()
    }
}

/// An old kernel on QEMU 7.2 with a device attached; it crashes with the SMMU enabled.
fn crashed() -> Rig {
    let cfg = ModelConfig {
        ram_size: 32 << 20,
        gbpa_ignored: true,
        ..ModelConfig::hostile(Profile::qemu_7_2(), 13)
    };
    let mut rig = Rig::new(cfg, accept_ignored()).expect("old kernel");
    let (_, domain) = rig.stage1_master(0x8).expect("device");
    core::mem::forget(domain);
    rig.model().with(smmu_model::Model::warm_restart);
    rig
}

// spec: K4, K16, D11
#[test]
fn a_refused_adoption_on_a_gbpa_ignoring_smmu_needs_the_disable_first_fallback() {
    // The platform forgets it is a crash kernel: adoption is refused (SPEC K1) and the
    // fallback runs on the live SMMU.
    let platform = AdoptPlatform {
        crash_kernel: false,
        coherent: true,
        ..AdoptPlatform::default()
    };

    let rig = crashed();
    let mut slot: Box<MaybeUninit<CrashDriver<ModelRegs, ModelHal>>> = Box::new_uninit();
    let options = AdoptOptions {
        config: accept_ignored(),
        ..AdoptOptions::default()
    };
    let err = boot_in(
        &mut slot,
        rig.platform.regs(),
        rig.platform.hal(),
        &platform,
        &options,
    )
    .expect_err("the default fallback cannot confirm the abort");
    assert!(
        matches!(
            err,
            Error::AbortNotConfirmed {
                step: ResetStep::GlobalBypassAbort,
                ..
            }
        ),
        "{err:?}"
    );
    let cr0 = rig.model().read32(reg::CR0 as usize);
    assert_ne!(cr0 & reg::CR0_SMMUEN, 0, "translation stays on (SPEC K16)");

    let rig = crashed();
    let options = AdoptOptions {
        fallback: RESET_DISABLE_FIRST,
        config: accept_ignored(),
        ..AdoptOptions::default()
    };
    let booted = boot_in(
        &mut slot,
        rig.platform.regs(),
        rig.platform.hal(),
        &platform,
        &options,
    )
    .expect("the disable-first fallback comes up");
    assert_eq!(booted.verdict, Verdict::FullReset(Refusal::NotCrashKernel));
    let smmu = booted.smmu;
    assert!(smmu.gbpa_ignored(), "the window is reported");
    let cr0 = rig.model().read32(reg::CR0 as usize);
    assert_ne!(cr0 & reg::CR0_SMMUEN, 0);
    smmu.add_master(&MasterConfig::new(&[0x8]))
        .expect("a driver to attach devices to");
    rig.assert_no_violations();
}

//! ATS and protected DMA (SPEC D9, K9): a protected GPU that issues ATS Translated DMA, which
//! would bypass translation, is stopped because the driver sets CR0.ATSCHK and never sets
//! STE.EATS for it. Two deliberately broken driver variants (a reset plan that forgets
//! ATSCHK, a policy that lets a protected master use ATS) show the same DMA bypassing.

use smmu::policy::ProtectedPolicy;
use smmu::reset::{ResetPlan, ResetStep};
use smmu::{DomainStage, MasterConfig, PhysRange, SmmuConfig};
use smmu_model::fields::reg;
use smmu_model::{AtsCompletion, Cause, ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::platform::ModelPlatform;
use smmu_model_platform::rig::{build, Rig};
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);
const GPU_SID: u32 = 0x100;
const IOVA: u64 = 0x1_0000_0000;

/// A Grace-like SMMU (IDR0.ATS) sharing one 1 MiB window, reset with `plan`, and the GPU
/// attached to a protected stage-1 domain mapping the window at `IOVA`. Returns the rig, the
/// window and a private page outside it.
fn gpu_rig(plan: &ResetPlan, config: SmmuConfig, ats: bool) -> (Rig, PhysRange, u64) {
    let cfg = ModelConfig {
        ram_size: 32 << 20,
        ..ModelConfig::hostile(Profile::grace(), 31)
    };
    let probe = ModelPlatform::new(cfg).unwrap();
    let window_pa = probe.model().alloc_pages(256, 1 << 20).unwrap();
    let private = probe.model().alloc_pages(1, 4096).unwrap();
    let window = PhysRange {
        start: PhysAddr(window_pa),
        size: 1 << 20,
    };
    let platform = probe.with_shared_windows(vec![window]);
    let mut smmu = build(&platform, config, None).unwrap();
    smmu.reset(plan).unwrap();
    let rig = Rig { platform, smmu };
    let g = rig
        .smmu
        .add_master(&MasterConfig {
            sids: &[GPU_SID],
            protected: true,
            ats,
            stall: false,
            ssid_bits: 0,
        })
        .unwrap();
    let tables = rig.tables();
    let d = rig
        .smmu
        .new_domain(DomainStage::Stage1, true, tables)
        .unwrap();
    rig.smmu
        .map(&d, Iova(IOVA), window.start, 0x10_0000, RW)
        .unwrap();
    rig.smmu.attach(g, &d).unwrap();
    std::mem::forget(d);
    (rig, window, private)
}

/// The GPU's ATS Translated write to a private page: stopped (and reported) or not.
fn translated_dma_is_stopped(rig: &Rig, private: u64) -> bool {
    let r = rig
        .model()
        .with(|m| m.dma_translated(Transaction::write(GPU_SID, private)));
    match r {
        TxnResult::Abort {
            cause: Cause::TranslForbidden,
            event: Some(e),
        } => {
            assert_eq!((e.id(), e.sid(), e.input_addr()), (0x07, GPU_SID, private));
            true
        }
        TxnResult::Bypass { pa } => {
            assert_eq!(pa, private);
            false
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}

// spec: D9, K9
#[test]
fn a_protected_gpu_cannot_reach_private_memory_with_translated_dma() {
    let (rig, window, private) = gpu_rig(&ResetPlan::FULL, SmmuConfig::default(), false);
    let atschk = rig.model().with(|m| m.cr0ack()) & reg::CR0_ATSCHK;
    assert_ne!(atschk, 0, "the driver enables ATS checking");
    assert!(translated_dma_is_stopped(&rig, private));
    rig.model().with(|m| {
        // Its Translation Requests are refused (UR, F_BAD_ATS_TREQ), so its ATC stays empty
        // and an ATS access through it never reaches memory.
        let t = Transaction::read(GPU_SID, IOVA);
        assert_eq!(m.ats_translate(&t), AtsCompletion::UnsupportedRequest);
        assert_eq!(
            m.ats_dma(t),
            TxnResult::Abort {
                cause: Cause::AtsDenied,
                event: None
            }
        );
        assert!(m.atc_entries().is_empty());
        // Its untranslated DMA reaches the shared window through the domain.
        assert_eq!(
            m.dma(Transaction::write(GPU_SID, IOVA + 0x40)),
            TxnResult::Translated {
                pa: window.start.0 + 0x40
            }
        );
    });
    rig.assert_no_violations();
}

// spec: D9, K9 (negative control: the check above fails for a driver that forgets ATSCHK)
#[test]
fn without_atschk_the_same_translated_dma_bypasses() {
    const NO_ATSCHK: &[ResetStep] = &[
        ResetStep::GlobalBypassAbort,
        ResetStep::DisableAll,
        ResetStep::ConfigureAttributes,
        ResetStep::ProgramStreamTable,
        ResetStep::ProgramCommandQueue,
        ResetStep::EnableCommandQueue,
        ResetStep::InvalidateAll,
        ResetStep::EnableEventQueue,
        ResetStep::EnablePriQueue,
        ResetStep::EnableInterrupts,
        ResetStep::EnableTranslation,
    ];
    let broken = ResetPlan {
        steps: NO_ATSCHK,
        ..ResetPlan::FULL
    };
    let (rig, _, private) = gpu_rig(&broken, SmmuConfig::default(), false);
    assert_eq!(rig.model().with(|m| m.cr0ack()) & reg::CR0_ATSCHK, 0);
    assert!(
        !translated_dma_is_stopped(&rig, private),
        "fast mode lets Translated traffic through unchecked"
    );
    rig.assert_no_violations();
}

// spec: D9 (negative control: a policy that lets a protected master set EATS)
#[test]
fn with_eats_on_the_protected_gpu_translated_dma_bypasses() {
    let lax = SmmuConfig {
        policy: ProtectedPolicy { allow_ats: true },
        ..SmmuConfig::default()
    };
    let (rig, window, private) = gpu_rig(&ResetPlan::FULL, lax, true);
    assert_ne!(rig.model().with(|m| m.cr0ack()) & reg::CR0_ATSCHK, 0);
    assert!(
        !translated_dma_is_stopped(&rig, private),
        "EATS = Full ATS lets Translated traffic through even with ATSCHK"
    );
    // Its Translation Requests now succeed, and its ATC holds the window page.
    let got = rig
        .model()
        .with(|m| m.ats_dma(Transaction::write(GPU_SID, IOVA + 0x80)));
    assert_eq!(
        got,
        TxnResult::Translated {
            pa: window.start.0 + 0x80
        }
    );
    rig.assert_no_violations();
}

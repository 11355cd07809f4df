//! A protected master never keeps an adopted STE that bypasses translation (SPEC K22: the
//! protected-DMA rule D9 outranks the deferred-attach rule K12).
//!
//! The crashed kernel (or something that wrote its memory) left the GPU's StreamID with a
//! bypass STE. Adoption keeps every STE as it is, deferred until its device's driver attaches
//! (K11, K12); but the GPU is added as protected, and a protected master must never be able
//! to reach memory untranslated, so `add_master` replaces that STE with abort at once.

use smmu::arch::regs::offset;
use smmu::arch::ste::{fields as stef, SteConfig};
use smmu::{Attachment, MasterConfig};
use smmu_kdump::{boot, AdoptOptions, AdoptPlatform, Verdict};
use smmu_model::{SharedModel, Transaction, TxnResult};
use smmu_model_platform::kdump_scenario::{crash, OldKernel};

const PTR_55_6: u64 = 0x00ff_ffff_ffff_ffc0;

/// Address of `sid`'s STE in the Grace profile's 2-level table.
fn ste_pa(m: &SharedModel, sid: u32) -> u64 {
    let l1 = m.read64(offset::STRTAB_BASE) & PTR_55_6;
    let desc = m.read_u64(l1 + u64::from(sid >> 8) * 8).unwrap();
    (desc & PTR_55_6) + u64::from(sid & 0xff) * 64
}

/// The crash, with the GPU's STE replaced by bypass before the crash kernel boots, and the
/// crash kernel adopted; returns what `add_master` of the GPU did and what its DMA meets.
fn gpu_on_bypass(protected: bool) -> (Attachment, bool, TxnResult, usize) {
    let crashed = crash(&OldKernel::grace(3)).unwrap();
    let m = crashed.platform.model();
    let gpu = crashed
        .devices
        .iter()
        .find(|d| d.protected)
        .expect("the scenario's protected GPU");
    let sid = gpu.sids[0];
    // One 64-bit store of word 0 with `Config` = bypass (the fields of the stage-1
    // configuration it leaves behind are IGNORED in a bypass STE): the SMMU sees the old
    // entry or the new one, never a mix.
    let pa = ste_pa(m, sid);
    let mut word0 = [m.read_u64(pa).unwrap(), 0, 0, 0, 0, 0, 0, 0];
    let bypass = SteConfig::BYPASS.encode().to_words();
    stef::CONFIG.set(&mut word0, stef::CONFIG.get(&bypass));
    m.write_u64(pa, word0[0]).unwrap();
    let platform = AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    };
    let booted = boot(
        crashed.platform.regs(),
        crashed.platform.hal(),
        &platform,
        &AdoptOptions::default(),
    )
    .unwrap();
    assert!(
        matches!(booted.verdict, Verdict::Adopted { .. }),
        "{:?}",
        booted.verdict
    );
    let id = booted
        .smmu
        .add_master(&MasterConfig {
            sids: gpu.sids,
            protected,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })
        .unwrap();
    let attachment = booted.smmu.attachment(id).unwrap();
    let deferred = booted.smmu.is_deferred(id).unwrap();
    let dma = m.with(|m| m.dma(Transaction::read(sid, 0x1000)));
    let violations = m.with(|m| m.violations().len());
    std::mem::forget(booted);
    (attachment, deferred, dma, violations)
}

// spec: K22, D9
#[test]
fn a_protected_master_on_an_adopted_bypass_ste_gets_abort_at_once() {
    let (attachment, deferred, dma, violations) = gpu_on_bypass(true);
    assert_eq!(attachment, Attachment::Blocked);
    assert!(
        !deferred,
        "the bypass STE was replaced, so nothing is deferred"
    );
    assert!(
        matches!(dma, TxnResult::Abort { .. }),
        "the GPU's DMA must abort, not bypass: {dma:?}"
    );
    assert_eq!(violations, 0);
}

/// The same table with the GPU added as unprotected keeps the inherited bypass STE, deferred
/// (K12): the measurement above would see the bypass if `add_master` did not act on the
/// protected flag.
// spec: K12
#[test]
fn an_unprotected_master_keeps_its_adopted_bypass_ste_deferred() {
    let (attachment, deferred, dma, violations) = gpu_on_bypass(false);
    assert_eq!(attachment, Attachment::Initial);
    assert!(deferred);
    assert!(matches!(dma, TxnResult::Bypass { .. }), "{dma:?}");
    assert_eq!(violations, 0);
}

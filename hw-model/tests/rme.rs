//! SMMU for RME / RME DA in the model: the Root page, the Realm programming interface, the
//! Realm stream table selected by SEC_SID, Granule Protection Checks and the TDISP device.

use smmu_model::fields::{evt, reg, ste};
use smmu_model::rme::{
    self, Pas, RmeModel, SecSid, TdispDevice, TdispDma, TdispState, GPF_CODE_STE_FETCH,
    GPF_FAR_FAULT, GPF_REASON_TRANSACTION, GPF_REASON_TRANSLATION, O_REALM,
};
use smmu_model::{Cause, ModelConfig, Transaction, TxnResult};

fn rme() -> RmeModel {
    RmeModel::new(
        ModelConfig {
            ack_latency: 0,
            ..ModelConfig::default()
        },
        8 << 20,
    )
    .unwrap()
}

fn enable_gpc(m: &RmeModel) {
    m.root_write32(
        rme::ROOT_CR0_OFFSET,
        rme::ROOT_CR0_GPCEN | rme::ROOT_CR0_ACCESSEN,
    );
}

/// A linear stream table of 16 STEs at `base` on one interface's register page, SMMUEN on,
/// every STE a bypass STE (Config = 0b100) when `bypass`, otherwise V = 0.
fn linear_table(m: &smmu_model::SharedModel, base: u64, bypass: bool) {
    for sid in 0..16u64 {
        let mut w0 = 0u64;
        if bypass {
            w0 = ste::V.put(w0, 1);
            w0 = ste::CONFIG.put(w0, 0b100);
        }
        m.write_u64(base + sid * 64, w0).unwrap();
    }
    m.write64(reg::STRTAB_BASE as usize, base);
    m.write32(reg::STRTAB_BASE_CFG as usize, 4);
    m.write32(reg::CR2 as usize, reg::CR2_RECINVSID);
    m.write32(reg::CR0 as usize, reg::CR0_SMMUEN);
}

// spec: A6
/// §6.3.110: ROOT_IMPL and REALM_IMPL read 1, BA_REALM places Realm Page 0 at O_REALM.
#[test]
fn root_idr0_advertises_root_and_realm_interfaces() {
    let m = rme();
    let idr0 = m.root_read32(rme::ROOT_IDR0_OFFSET);
    assert_eq!(idr0 & rme::ROOT_IDR0_ROOT_IMPL, rme::ROOT_IDR0_ROOT_IMPL);
    assert_eq!(idr0 & rme::ROOT_IDR0_REALM_IMPL, rme::ROOT_IDR0_REALM_IMPL);
    let ba = u64::from(idr0 >> rme::ROOT_IDR0_BA_REALM_SHIFT);
    assert_eq!(ba & 1, 0, "BA_REALM[0] is always zero");
    assert_eq!(0x20000 + ba * 0x10000, O_REALM);
}

// spec: A6
/// §6.2.8 and §6.3.122–§6.3.133: the Realm page's registers at their offsets; R_CR0ACK
/// follows R_CR0; R_GBPA reads ABORT and is read-only; R_IDR1.RME_DA_IMPL is 1.
#[test]
fn realm_page_registers_at_spec_offsets() {
    let m = rme();
    let realm = |off: u64| O_REALM + off;
    assert_eq!(
        m.read32(Pas::Realm, realm(0x04)) >> 31,
        1,
        "R_IDR1.RME_DA_IMPL"
    );
    assert_eq!(m.read32(Pas::Realm, realm(0x0C)) >> 16 & 1, 1, "R_IDR3.MEC");
    assert_eq!(
        m.read32(Pas::Realm, realm(0x00)) & (1 << 10 | 1 << 16),
        0,
        "no ATS/PRI"
    );
    assert_eq!(
        m.read32(Pas::Realm, realm(0x18)),
        0,
        "there is no SMMU_R_IIDR"
    );
    assert_eq!(
        m.read32(Pas::Realm, realm(0x44)),
        reg::GBPA_ABORT,
        "R_GBPA.ABORT RES1"
    );
    // R_CR0 (0x20) and R_CR0ACK (0x24).
    m.write32(Pas::Realm, realm(0x20), reg::CR0_CMDQEN);
    assert_eq!(m.read32(Pas::Realm, realm(0x24)), reg::CR0_CMDQEN);
    // R_STRTAB_BASE_CFG (0x88), R_IRQ_CTRL (0x50) and its ACK (0x54), R_CR1 (0x28), R_CR2 (0x2C).
    m.write32(Pas::Realm, realm(0x88), 6);
    assert_eq!(m.read32(Pas::Realm, realm(0x88)), 6);
    m.write32(Pas::Realm, realm(0x50), reg::IRQ_GERROR);
    assert_eq!(m.read32(Pas::Realm, realm(0x54)), reg::IRQ_GERROR);
    m.write32(Pas::Realm, realm(0x2C), reg::CR2_RECINVSID);
    assert_eq!(m.read32(Pas::Realm, realm(0x2C)), reg::CR2_RECINVSID);
    // R_GERROR (0x60) / R_GERRORN (0x64): nothing active.
    assert_eq!(m.read32(Pas::Realm, realm(0x60)), 0);
    assert!(m.violations().is_empty(), "{:?}", m.violations());
    // A write to R_GBPA is a write to a read-only register.
    m.write32(Pas::Realm, realm(0x44), 1 << 31);
    assert_eq!(m.read32(Pas::Realm, realm(0x44)), reg::GBPA_ABORT);
    assert_eq!(m.violations().len(), 1);
}

// spec: A6
/// §6.2.7: Non-secure (and Secure) accesses to the Realm pages are RAZ/WI: the Non-secure
/// programming interface can neither read nor write Realm state.
#[test]
fn non_secure_accesses_to_realm_pages_are_raz_wi() {
    let m = rme();
    m.write32(Pas::Realm, O_REALM + 0x88, 6);
    m.write32(Pas::Realm, O_REALM + 0x20, reg::CR0_CMDQEN);
    for pas in [Pas::NonSecure, Pas::Secure] {
        assert_eq!(m.read32(pas, O_REALM + 0x88), 0);
        assert_eq!(m.read32(pas, O_REALM + 0x24), 0);
        m.write32(pas, O_REALM + 0x20, reg::CR0_SMMUEN);
        m.write32(pas, O_REALM + 0x80, 0xdead_0000);
    }
    // The same through the Non-secure interface's own bus, the path a host driver has.
    m.ns().write32((O_REALM + 0x20) as usize, reg::CR0_SMMUEN);
    assert_eq!(m.ns().read32((O_REALM + 0x24) as usize), 0);
    assert_eq!(m.read32(Pas::Realm, O_REALM + 0x24), reg::CR0_CMDQEN);
    assert_eq!(m.read32(Pas::Realm, O_REALM + 0x80), 0);
    assert_eq!(m.ns_realm_page_hits(), 10);
    assert!(m.violations().is_empty());
}

// spec: A6
/// §3.10.1: SEC_SID selects the stream table. The same StreamID is bypass in the Realm table
/// and V = 0 in the Non-secure one.
#[test]
fn sec_sid_selects_the_realm_stream_table() {
    let m = rme();
    linear_table(m.ns(), m.ns_pool().0, false);
    linear_table(m.realm(), m.realm_pool().0, true);
    let out = m.realm_pool().0 + 0x10_0000;
    assert_eq!(
        m.dma(SecSid::Realm, Transaction::read(3, out)),
        TxnResult::Bypass { pa: out }
    );
    assert!(matches!(
        m.dma(SecSid::NonSecure, Transaction::read(3, out)),
        TxnResult::Abort {
            cause: Cause::BadSte,
            ..
        }
    ));
    // The default SEC_SID is Non-secure.
    assert_eq!(SecSid::default(), SecSid::NonSecure);
    assert!(m.violations().is_empty());
}

// spec: A6
/// §3.25.1 and §3.25.5: a Non-secure stream in bypass cannot reach a Realm granule: the access
/// aborts, no event record is written, and SMMU_ROOT_GPF_FAR records REASON TRANSACTION with
/// FPAS Non-secure. A Realm stream reaches it. With GPCEN = 0 nothing is checked.
#[test]
fn gpc_stops_a_non_secure_stream_at_a_realm_granule() {
    let m = rme();
    linear_table(m.ns(), m.ns_pool().0, true);
    linear_table(m.realm(), m.realm_pool().0, true);
    let private = m.realm_pool().0 + 0x20_0000;
    // Root firmware gives the whole Realm pool (the Realm stream table included) to Realm.
    let (base, size) = m.realm_pool();
    m.gpt().assign(base, size, Pas::Realm);
    // Checks off: the assignment alone changes nothing.
    assert_eq!(
        m.dma(SecSid::NonSecure, Transaction::write(1, private)),
        TxnResult::Bypass { pa: private }
    );
    enable_gpc(&m);
    let r = m.dma_data(SecSid::NonSecure, Transaction::write(1, private + 0x40));
    assert_eq!(
        r,
        TxnResult::Abort {
            cause: Cause::GranuleProtection,
            event: None
        }
    );
    assert!(m.ns().with(|x| x.events().is_empty()), "no event record");
    let far = m.gpt().gpf_far();
    assert_eq!(far & GPF_FAR_FAULT, 1);
    assert_eq!(far >> 1 & 7, GPF_REASON_TRANSACTION);
    assert_eq!(far >> 62, Pas::NonSecure.fpas());
    assert_eq!(far & 0x00FF_FFFF_FFFF_F000, private);
    // The Realm stream's write lands.
    assert_eq!(
        m.dma_data(SecSid::Realm, Transaction::write(1, private + 0x40)),
        TxnResult::Bypass { pa: private + 0x40 }
    );
    let mut b = [0u8; 2];
    m.ns().mem_read(private + 0x40, &mut b).unwrap();
    assert_eq!(b, [0x40, 0x41]);
    // A Realm stream cannot reach a Non-secure granule in the Realm PAS either.
    assert!(matches!(
        m.dma(
            SecSid::Realm,
            Transaction::read(1, m.ns_pool().0 + 0x20_0000)
        ),
        TxnResult::Abort {
            cause: Cause::GranuleProtection,
            ..
        }
    ));
    assert_eq!(m.gpt().faults(), 2);
    assert!(m.violations().is_empty());
}

// spec: A6
/// §3.25.3, §3.25.4, §3.25.5: an SMMU-originated access (the Non-secure STE fetch) to a Realm
/// granule is an External abort: F_STE_FETCH with GPCF = 1; SMMU_ROOT_GPF_FAR records REASON
/// TRANSLATION, FAULTCODE GPF_STE_FETCH; the first fault stays until FAULT is cleared.
#[test]
fn gpc_on_an_smmu_originated_fetch_is_f_ste_fetch_with_gpcf() {
    let m = rme();
    // A hostile Non-secure stream table placed in a Realm granule.
    let table = m.realm_pool().0 + 0x10_0000;
    m.gpt().assign(table, 0x1000, Pas::Realm);
    enable_gpc(&m);
    linear_table(m.ns(), table, true);
    let evtq = m.ns_pool().0 + 0x8000;
    m.ns().write64(reg::EVTQ_BASE as usize, evtq | 5);
    m.ns()
        .write32(reg::CR0 as usize, reg::CR0_SMMUEN | reg::CR0_EVTQEN);
    let r = m.dma(SecSid::NonSecure, Transaction::read(2, 0x1234));
    let TxnResult::Abort {
        cause: Cause::SteFetch,
        event: Some(e),
    } = r
    else {
        panic!("{r:?}");
    };
    assert_eq!(evt::GPCF.get(&e.raw), 1);
    assert_eq!(e.raw[1] >> 16 & 1, 1, "GPCF is bit 80");
    let far = m.gpt().gpf_far();
    assert_eq!(far >> 1 & 7, GPF_REASON_TRANSLATION);
    assert_eq!(far >> 4 & 0xFF, GPF_CODE_STE_FETCH);
    // A second GPF does not overwrite the active one.
    let _ = m.dma(SecSid::NonSecure, Transaction::read(3, 0x1234));
    assert_eq!(m.gpt().gpf_far(), far);
    // Writing 1 to FAULT is ignored; writing 0 clears it.
    m.root_write64(rme::ROOT_GPF_FAR_OFFSET, 1);
    assert_eq!(m.gpt().gpf_far(), far);
    m.root_write64(rme::ROOT_GPF_FAR_OFFSET, 0);
    assert_eq!(m.gpt().gpf_far(), 0);
    assert!(m.violations().is_empty(), "{:?}", m.violations());
}

// spec: A2
/// The TDISP device model: Realm (T = 1) requests only in RUN; LOCK, GET_MEASUREMENTS and
/// GET_DEVICE_INTERFACE_REPORT each refresh their own nonce; STOP voids them all.
#[test]
fn tdisp_device_issues_realm_requests_only_in_run() {
    let m = rme();
    linear_table(m.realm(), m.realm_pool().0, true);
    let out = m.realm_pool().0 + 0x10_0000;
    let mut dev = TdispDevice::new(5, 1);
    let t = Transaction::write(0, out);
    assert_eq!(
        dev.private_dma(&m, t),
        TdispDma::NotIssued(TdispState::ConfigUnlocked)
    );
    assert!(
        dev.get_measurement().is_err(),
        "nothing to measure while unlocked"
    );
    let lock = dev.lock().unwrap();
    assert_eq!(
        dev.private_dma(&m, t),
        TdispDma::NotIssued(TdispState::ConfigLocked)
    );
    let meas = dev.get_measurement().unwrap();
    let report = dev.get_report().unwrap();
    assert_eq!(dev.nonces().lock, lock);
    assert!(lock != meas && meas != report && lock != report);
    let report2 = dev.get_report().unwrap();
    assert_ne!(report, report2, "a report refresh makes a new nonce");
    assert_eq!(dev.nonces().measurement, meas);
    dev.start().unwrap();
    assert_eq!(
        dev.private_dma(&m, t),
        TdispDma::Issued(TxnResult::Bypass { pa: out })
    );
    assert!(dev.lock().is_err(), "LOCK only from CONFIG_UNLOCKED");
    dev.fault();
    assert_eq!(
        dev.private_dma(&m, t),
        TdispDma::NotIssued(TdispState::Error)
    );
    dev.stop();
    assert_eq!(dev.nonces(), rme::TdispNonces::default());
    let relock = dev.lock().unwrap();
    assert_ne!(relock, lock);
    assert!(m.violations().is_empty());
}

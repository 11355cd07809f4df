//! Realm device assignment scenarios (SPEC A1–A6): a TDISP GPU, the Realm half of the driver
//! playing RMM, and a Non-secure host and crash kernel that must not matter. Each scenario
//! ends with an empty violation log, and each is run against a deliberately broken Realm half
//! to show it catches that fault.

use std::cell::Cell;
use std::rc::Rc;

use smmu::arch::event::Event;
use smmu::evtq::EventReport;
use smmu::realm::{
    AcceptError, Broken, NonceKind, NonceTuple, RealmConfig, RealmError, RealmS2Context, RealmSmmu,
    RealmStream, RevokeReason, TdispState as GateState,
};
use smmu::{Hal, PhysAddr};
use smmu_kdump::{AdoptOptions, AdoptPlatform};
use smmu_model::rme::{SecSid, TdispDevice, TdispDma};
use smmu_model::{Cause, ModelConfig, Transaction, TxnResult};
use smmu_model_platform::realm::{RealmModelRegs, RealmPlatform};
use smmu_model_platform::ModelHal;

const GPU_SID: u32 = 0x120;
const IPA: u64 = 0x4000_0000;
/// VTCR_EL2: T0SZ 25, SL0 1 (level 1 start, 4K), IRGN0/ORGN0 WB, SH0 inner, TG0 4K, PS 40 bits.
const VTCR: u64 = 0x19 | 1 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | 2 << 16;

type Realm = RealmSmmu<RealmModelRegs, ModelHal>;

struct World {
    p: RealmPlatform,
    smmu: Realm,
    dev: TdispDevice,
    stream: Option<RealmStream>,
    private_page: u64,
}

fn page(hal: &ModelHal) -> u64 {
    hal.dma_alloc(4096, 4096).unwrap().pa.0
}

/// The Realm's stage-2 table (RMM's RTT) mapping `IPA` to one private page.
fn realm_s2(p: &RealmPlatform) -> (RealmS2Context, u64) {
    let hal = p.realm_hal();
    let (l1, l2, l3, data) = (page(&hal), page(&hal), page(&hal), page(&hal));
    let m = p.rme().realm();
    m.write_u64(l1 + 8 * ((IPA >> 30) & 0x1FF), l2 | 3).unwrap();
    m.write_u64(l2 + 8 * ((IPA >> 21) & 0x1FF), l3 | 3).unwrap();
    let leaf = data | 3 | 1 << 10 | 3 << 8 | 3 << 6 | 0xF << 2;
    m.write_u64(l3 + 8 * ((IPA >> 12) & 0x1FF), leaf).unwrap();
    let ctx = RealmS2Context {
        vmid: 9,
        s2ttb: PhysAddr(l1),
        vtcr_el2: VTCR,
        mecid: 3,
    };
    (ctx, data)
}

fn world(broken: Option<Broken>) -> World {
    let p = RealmPlatform::new(ModelConfig::default()).unwrap();
    let mut smmu = RealmSmmu::probe(
        p.realm_regs(),
        &p.common_ids(),
        p.realm_hal(),
        RealmConfig::default(),
    )
    .unwrap();
    smmu.set_broken(broken);
    let (ctx, private_page) = realm_s2(&p);
    let stream = smmu.create(GPU_SID, &ctx).unwrap();
    World {
        p,
        smmu,
        dev: TdispDevice::new(GPU_SID, 7),
        stream: Some(stream),
        private_page,
    }
}

impl World {
    fn stream(&self) -> &RealmStream {
        self.stream.as_ref().unwrap()
    }

    /// LOCK, GET_MEASUREMENTS, GET_DEVICE_INTERFACE_REPORT, each recorded by the Realm half.
    fn attest(&mut self) -> NonceTuple {
        let lock = self.dev.lock().unwrap();
        let s = self.stream.take().unwrap();
        self.smmu.record(&s, NonceKind::Lock, lock).unwrap();
        let meas = self.dev.get_measurement().unwrap();
        self.smmu.record(&s, NonceKind::Measurement, meas).unwrap();
        let report = self.dev.get_report().unwrap();
        self.smmu.record(&s, NonceKind::Report, report).unwrap();
        self.stream = Some(s);
        NonceTuple {
            lock,
            measurement: meas,
            report,
        }
    }

    fn refresh_report(&mut self) {
        let report = self.dev.get_report().unwrap();
        let s = self.stream.take().unwrap();
        self.smmu.record(&s, NonceKind::Report, report).unwrap();
        self.stream = Some(s);
    }

    fn accept(&mut self, tuple: NonceTuple) -> Result<(), RealmError> {
        let s = self.stream.take().unwrap();
        let r = self.smmu.accept(&s, tuple, GateState::Run);
        self.stream = Some(s);
        r
    }

    fn private_write(&self, offset: u64) -> TdispDma {
        self.dev
            .private_dma(self.p.rme(), Transaction::write(0, IPA + offset))
    }

    /// Whether a device write at `offset` reached the private page (the model's data
    /// pattern: byte i of a write is the address's low byte plus i; byte 1 is never 0 here).
    fn landed(&self, offset: u64) -> bool {
        let mut b = [0u8; 2];
        self.p
            .rme()
            .ns()
            .mem_read(self.private_page + offset, &mut b)
            .unwrap();
        b[1] == ((IPA + offset) as u8).wrapping_add(1)
    }

    fn clean(&self) -> Result<(), String> {
        let v = self.p.rme().violations();
        if v.is_empty() {
            Ok(())
        } else {
            Err(format!("violations: {v:?}"))
        }
    }
}

fn aborted(r: TdispDma) -> bool {
    matches!(r, TdispDma::Issued(TxnResult::Abort { .. }))
}

// ----------------------------------------------------------------------------- scenarios

fn abort_before_accept(broken: Option<Broken>) -> Result<(), String> {
    let mut w = world(broken);
    if w.smmu.ste(w.stream()).unwrap()[0] & 1 != 0 {
        return Err("Realm STE valid before accept".into());
    }
    let _ = w.attest();
    w.dev.start().unwrap();
    // The device runs but nobody accepted it: every private DMA aborts.
    for off in [0x10u64, 0x20, 0x30] {
        if !aborted(w.private_write(off)) || w.landed(off) {
            return Err(format!(
                "private DMA at +{off:#x} went through before accept"
            ));
        }
    }
    w.clean()
}

fn nonce_tuples_refused(broken: Option<Broken>) -> Result<(), String> {
    let mut w = world(broken);
    let good = w.attest();
    w.dev.start().unwrap();
    let wrong = NonceTuple {
        lock: good.lock ^ 0xFFFF,
        ..good
    };
    if w.accept(wrong)
        != Err(RealmError::Refused(AcceptError::WrongNonce(
            NonceKind::Lock,
        )))
    {
        return Err("a wrong lock nonce was not refused".into());
    }
    // Not in RUN (the device reports LOCKED).
    let s = w.stream.take().unwrap();
    let r = w.smmu.accept(&s, good, GateState::ConfigLocked);
    w.stream = Some(s);
    if r != Err(RealmError::Refused(AcceptError::NotRunning(
        GateState::ConfigLocked,
    ))) {
        return Err(format!("accept outside RUN: {r:?}"));
    }
    // A report refresh makes the tuple stale.
    w.refresh_report();
    let r = w.accept(good);
    if r != Err(RealmError::Refused(AcceptError::StaleNonce(
        NonceKind::Report,
    ))) {
        return Err(format!("a stale report nonce was not refused: {r:?}"));
    }
    if !aborted(w.private_write(0x40)) {
        return Err("private DMA after refused accepts".into());
    }
    // The current tuple works once; after a revoke, its replay is refused.
    let current = NonceTuple {
        report: w.dev.nonces().report,
        ..good
    };
    w.accept(current).map_err(|e| format!("{e:?}"))?;
    let s = w.stream.take().unwrap();
    w.smmu.revoke(&s, RevokeReason::DmaDisable).unwrap();
    w.stream = Some(s);
    if w.accept(current) != Err(RealmError::Refused(AcceptError::Replayed)) {
        return Err("a replayed tuple was not refused".into());
    }
    w.clean()
}

fn accept_then_private_dma_lands(broken: Option<Broken>) -> Result<(), String> {
    let mut w = world(broken);
    let t = w.attest();
    w.dev.start().unwrap();
    w.accept(t).map_err(|e| format!("{e:?}"))?;
    let r = w.private_write(0x80);
    if r != TdispDma::Issued(TxnResult::Translated {
        pa: w.private_page + 0x80,
    }) || !w.landed(0x80)
    {
        return Err(format!("accepted private DMA did not land: {r:?}"));
    }
    w.clean()
}

fn revoke_then_abort(broken: Option<Broken>) -> Result<(), String> {
    let mut w = world(broken);
    let t = w.attest();
    w.dev.start().unwrap();
    w.accept(t).map_err(|e| format!("{e:?}"))?;
    // Warm the configuration cache and the TLB.
    for off in [0x100u64, 0x108] {
        let _ = w.private_write(off);
    }
    let s = w.stream.take().unwrap();
    w.smmu.revoke(&s, RevokeReason::Unlock).unwrap();
    w.stream = Some(s);
    let r = w.private_write(0x200);
    if !aborted(r) || w.landed(0x200) {
        return Err(format!("private DMA after revoke (stale cache hit): {r:?}"));
    }
    let s = w.stream.take().unwrap();
    w.smmu.destroy(s).unwrap();
    if w.smmu.level2_tables() != 0 {
        return Err("the level-2 table outlived its last stream".into());
    }
    w.clean()
}

fn ns_kdump_during_private_dma(broken: Option<Broken>) -> Result<(), String> {
    let mut w = world(broken);
    let t = w.attest();
    w.dev.start().unwrap();
    w.accept(t).map_err(|e| format!("{e:?}"))?;
    let mut lost = 0;
    let mut issued = 0;
    let mut dma = |w: &World, off: u64| {
        issued += 1;
        let r = w.private_write(off);
        if r != TdispDma::Issued(TxnResult::Translated {
            pa: w.private_page + off,
        }) || !w.landed(off)
        {
            lost += 1;
        }
    };
    dma(&w, 0x300);
    // The Non-secure kernel crashes; its crash kernel adopts or resets the Non-secure SMMU.
    let platform = AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    };
    let booted = smmu_kdump::boot(
        w.p.ns_regs(),
        w.p.ns_hal(),
        &platform,
        &AdoptOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    dma(&w, 0x340);
    drop(booted);
    // And a full reset of the Non-secure interface, GBPA abort.
    let reset = smmu_kdump::full_reset(
        w.p.ns_regs(),
        w.p.ns_hal(),
        &smmu_kdump::RESET_ABORT,
        smmu::SmmuConfig::default(),
    )
    .map_err(|e| e.to_string())?;
    dma(&w, 0x380);
    drop(reset);
    if lost != 0 || w.smmu.ste(w.stream()).unwrap()[0] & 1 != 1 {
        return Err(format!(
            "{lost} of {issued} Realm transactions lost or misdirected"
        ));
    }
    w.clean()
}

/// The GPU's Non-secure StreamID (its host-visible function, used by the host kernel).
const GPU_NS_SID: u32 = 0x20;

/// The accepted GPU's private DMA, one write per call, each into its own 8-byte slot of the
/// private page (cleared first, so that a landed write is this write): counts the
/// transactions issued and those that did not translate to their slot or did not land.
#[derive(Clone)]
struct RealmDma {
    rme: smmu_model::rme::RmeModel,
    dev: TdispDevice,
    private_page: u64,
    issued: Rc<Cell<u64>>,
    lost: Rc<Cell<u64>>,
}

impl RealmDma {
    fn issue(&self) {
        let n = self.issued.get();
        self.issued.set(n + 1);
        // Slots 0x800.. of the page; other scenarios' offsets stay below.
        let off = 0x800 + (n * 8) % 0x800;
        let pa = self.private_page + off;
        self.rme.ns().mem_write(pa, &[0; 8]).unwrap();
        let r = self
            .dev
            .private_dma(&self.rme, Transaction::write(0, IPA + off));
        let mut b = [0u8; 2];
        self.rme.ns().mem_read(pa, &mut b).unwrap();
        let landed = b[1] == ((IPA + off) as u8).wrapping_add(1);
        if r != TdispDma::Issued(TxnResult::Translated { pa }) || !landed {
            self.lost.set(self.lost.get() + 1);
        }
    }
}

/// The crash kernel's Non-secure register access: every register read and write it makes is
/// followed by one private DMA of the accepted GPU, so the Realm traffic interleaves with
/// each step of its bring-up (each CR0 and GBPA write, each queue-pointer write, each poll).
#[derive(Clone)]
struct Interleaved {
    regs: smmu_model_platform::ModelRegs,
    dma: RealmDma,
}

impl smmu::RegisterAccess for Interleaved {
    fn read32(&self, offset: usize) -> u32 {
        let v = self.regs.read32(offset);
        self.dma.issue();
        v
    }
    fn write32(&self, offset: usize, value: u32) {
        self.regs.write32(offset, value);
        self.dma.issue();
    }
    fn read64(&self, offset: usize) -> u64 {
        let v = self.regs.read64(offset);
        self.dma.issue();
        v
    }
    fn write64(&self, offset: usize, value: u64) {
        self.regs.write64(offset, value);
        self.dma.issue();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashKernel {
    Adopt,
    FullReset,
}

/// A host kernel runs the Non-secure SMMU (the GPU's Non-secure StreamID attached, blocked)
/// while the Realm's accepted GPU does private DMA; the host crashes and its crash kernel
/// adopts the live table or fully resets the SMMU, with one private DMA after each of its
/// register accesses. Every Realm transaction must land where the Realm mapped it.
///
/// `revoke_at_crash` is the harness's control: the Realm half revokes the GPU as the host
/// crashes, so its private DMA from then on aborts and must be counted as lost.
fn ns_kdump_interleaved(
    broken: Option<Broken>,
    how: CrashKernel,
    revoke_at_crash: bool,
) -> Result<(), String> {
    let mut w = world(broken);
    let t = w.attest();
    w.dev.start().unwrap();
    w.accept(t).map_err(|e| format!("{e:?}"))?;
    let dma = RealmDma {
        rme: w.p.rme().clone(),
        dev: w.dev.clone(),
        private_page: w.private_page,
        issued: Rc::default(),
        lost: Rc::default(),
    };
    // The host kernel.
    let (regs, hal) = (w.p.ns_regs(), w.p.ns_hal());
    let features = smmu::probe::probe(&regs).map_err(|e| format!("host probe: {e:?}"))?;
    let cfg = smmu::SmmuConfig::default();
    let strtab = smmu::OwnedStreamTable::for_smmu(&hal, &features, &cfg)
        .map_err(|e| format!("host table: {e:?}"))?;
    let mut host =
        smmu::Smmu::new(regs, hal, features, strtab, cfg).map_err(|e| format!("host: {e:?}"))?;
    host.reset(&smmu::ResetPlan::FULL)
        .map_err(|e| format!("host reset: {e:?}"))?;
    let gpu = host
        .add_master(&smmu::MasterConfig::new(&[GPU_NS_SID]))
        .map_err(|e| format!("host add_master: {e:?}"))?;
    host.attach_blocked(gpu)
        .map_err(|e| format!("host attach: {e:?}"))?;
    for _ in 0..4 {
        dma.issue();
    }
    // The crash: the host's driver is gone without a word, the SMMU and the masters go on.
    std::mem::forget(host);
    w.p.rme().ns().with(smmu_model::Model::warm_restart);
    if revoke_at_crash {
        let s = w.stream.take().unwrap();
        w.smmu.revoke(&s, RevokeReason::DmaDisable).unwrap();
        w.stream = Some(s);
    }
    for _ in 0..4 {
        dma.issue();
    }
    let regs = Interleaved {
        regs: w.p.ns_regs(),
        dma: dma.clone(),
    };
    let before = dma.issued.get();
    match how {
        CrashKernel::Adopt => {
            let platform = AdoptPlatform {
                crash_kernel: true,
                coherent: true,
                cache_maintenance: false,
                expect_e2h: None,
            };
            let booted = smmu_kdump::boot(regs, w.p.ns_hal(), &platform, &AdoptOptions::default())
                .map_err(|e| e.to_string())?;
            if !matches!(booted.verdict, smmu_kdump::Verdict::Adopted { .. }) {
                return Err(format!(
                    "the crash kernel did not adopt: {:?}",
                    booted.verdict
                ));
            }
            let id = booted
                .smmu
                .add_master(&smmu::MasterConfig::new(&[GPU_NS_SID]))
                .map_err(|e| format!("crash add_master: {e:?}"))?;
            booted
                .smmu
                .attach_blocked(id)
                .map_err(|e| format!("crash attach: {e:?}"))?;
            std::mem::forget(booted);
        }
        CrashKernel::FullReset => {
            let crash = smmu_kdump::full_reset(
                regs,
                w.p.ns_hal(),
                &smmu_kdump::RESET_ABORT,
                smmu::SmmuConfig::default(),
            )
            .map_err(|e| e.to_string())?;
            let id = crash
                .add_master(&smmu::MasterConfig::new(&[GPU_NS_SID]))
                .map_err(|e| format!("crash add_master: {e:?}"))?;
            crash
                .attach_blocked(id)
                .map_err(|e| format!("crash attach: {e:?}"))?;
            std::mem::forget(crash);
        }
    }
    let during = dma.issued.get() - before;
    for _ in 0..4 {
        dma.issue();
    }
    if during < 10 {
        return Err(format!(
            "only {during} Realm transactions interleaved with the crash kernel"
        ));
    }
    let (lost, issued) = (dma.lost.get(), dma.issued.get());
    if lost != 0 || w.smmu.ste(w.stream()).unwrap()[0] & 1 != 1 {
        return Err(format!(
            "{how:?}: {lost} of {issued} Realm transactions lost or misdirected"
        ));
    }
    w.clean()
}

fn hostile_ns_table_cannot_reach_realm(broken: Option<Broken>) -> Result<(), String> {
    let mut w = world(broken);
    let t = w.attest();
    w.dev.start().unwrap();
    w.accept(t).map_err(|e| format!("{e:?}"))?;
    // The host's Non-secure interface lets the GPU's Non-secure StreamID bypass (GBPA bypass
    // while SMMUEN = 0, the reset state) and aims it at the private page.
    let before = w.p.rme().gpt().faults();
    let r = w.p.rme().dma_data(
        SecSid::NonSecure,
        Transaction::write(GPU_SID, w.private_page + 0x500),
    );
    if r != (TxnResult::Abort {
        cause: Cause::GranuleProtection,
        event: None,
    }) || w.landed(0x500)
    {
        return Err(format!(
            "a Non-secure stream reached a Realm granule: {r:?}"
        ));
    }
    if w.p.rme().gpt().faults() != before + 1 {
        return Err("the GPC fault was not counted".into());
    }
    // The Non-secure register bus cannot reach the Realm STE's interface either.
    w.p.ns_regs();
    let hits = w.p.rme().ns_realm_page_hits();
    w.p.rme().ns().write32(smmu_model::rme::O_REALM as usize, 0);
    if w.p.rme().ns_realm_page_hits() != hits + 1 {
        return Err("the Non-secure bus reached the Realm page".into());
    }
    w.clean()
}

// ----------------------------------------------------------------------------- tests

// spec: A1
#[test]
fn scenario_abort_before_accept() {
    abort_before_accept(None).unwrap();
}

/// A Realm stream's faults are recorded on the Realm event queue, where only the Realm half
/// reads them: a private DMA before accept meets the STE that is not valid yet (`C_BAD_STE`).
// spec: A1
#[test]
fn realm_faults_are_reported_on_the_realm_event_queue() {
    let mut w = world(None);
    let _ = w.attest();
    w.dev.start().unwrap();
    assert!(aborted(w.private_write(0x10)));
    let mut events = Vec::new();
    let n = w.smmu.handle_events(&mut |e| events.push(e)).unwrap();
    assert!(n >= 1, "no event for the aborted Realm DMA");
    assert!(
        events.iter().all(|e| matches!(
            e,
            EventReport::Event(Event::BadSte(s)) if s.sid == GPU_SID
        )),
        "{events:?}"
    );
    // Drained: a second call finds nothing.
    assert_eq!(w.smmu.handle_events(&mut |_| {}).unwrap(), 0);
    w.clean().unwrap();
}

// spec: A2
#[test]
fn scenario_wrong_stale_and_replayed_tuples_refused() {
    nonce_tuples_refused(None).unwrap();
}

// spec: A2
// spec: A3
// spec: A5
#[test]
fn scenario_accept_then_private_dma_lands() {
    accept_then_private_dma_lands(None).unwrap();
}

// spec: A4
#[test]
fn scenario_revoke_then_abort_without_stale_tlb_hit() {
    revoke_then_abort(None).unwrap();
}

// spec: A1
// spec: A6
#[test]
fn scenario_ns_kdump_during_private_dma_loses_nothing() {
    ns_kdump_during_private_dma(None).unwrap();
}

// spec: A6
/// The crash kernel adopts the host's live table while the accepted GPU's private DMA runs,
/// one Realm transaction after each of its register accesses.
#[test]
fn scenario_ns_adopt_interleaved_with_private_dma_loses_nothing() {
    ns_kdump_interleaved(None, CrashKernel::Adopt, false).unwrap();
}

// spec: A6
/// The crash kernel fully resets the Non-secure SMMU while the accepted GPU's private DMA
/// runs, one Realm transaction after each of its register accesses.
#[test]
fn scenario_ns_full_reset_interleaved_with_private_dma_loses_nothing() {
    ns_kdump_interleaved(None, CrashKernel::FullReset, false).unwrap();
}

// spec: A6
/// The interleaved scenario's loss count is real: with the GPU revoked as the host crashes,
/// both crash kernels' runs report lost Realm transactions.
#[test]
fn interleaved_kdump_counts_lost_realm_dma() {
    for how in [CrashKernel::Adopt, CrashKernel::FullReset] {
        let e = ns_kdump_interleaved(None, how, true).unwrap_err();
        assert!(e.contains("lost or misdirected"), "{e}");
    }
}

// spec: A6
#[test]
fn scenario_hostile_ns_table_cannot_reach_realm() {
    hostile_ns_table_cannot_reach_realm(None).unwrap();
}

// spec: A1
/// A Realm half that writes V = 1 at create is caught: DMA goes through before acceptance.
#[test]
fn broken_valid_at_create_is_caught() {
    assert!(abort_before_accept(Some(Broken::ValidAtCreate)).is_err());
}

// spec: A4
/// A revoke that returns before CFGI_STE + CMD_SYNC is caught: the cached STE still translates.
#[test]
fn broken_revoke_without_sync_is_caught() {
    assert!(revoke_then_abort(Some(Broken::RevokeWithoutSync)).is_err());
}

// spec: A2
/// An accept that skips the report nonce is caught: a stale report is accepted.
#[test]
fn broken_accept_skipping_a_nonce_is_caught() {
    assert!(nonce_tuples_refused(Some(Broken::AcceptSkipsReportNonce)).is_err());
}

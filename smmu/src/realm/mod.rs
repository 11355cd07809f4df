//! The Realm half of the driver: the software that plays RMM's role programs the SMMU's Realm
//! programming interface (IHI 0070 G.b §2.7, §6.2.7–§6.2.9) and decides when a TDISP device
//! may DMA into a Realm's private memory (SPEC A1–A5).
//!
//! The order is the only order the API allows:
//!
//! 1. [`RealmSmmu::create`] writes the device's complete Realm STE (stage 2 only, stage 1
//!    bypass, S2VMID, VTCR fields, S2TTB and MECID from the Realm's [`RealmS2Context`]) with
//!    **V = 0**: every transaction of the stream aborts (A1, A5).
//! 2. [`RealmSmmu::record`] notes each nonce refresh (LOCK, GET_MEASUREMENTS,
//!    GET_DEVICE_INTERFACE_REPORT) as the attestation runs.
//! 3. [`RealmSmmu::accept`] is the only V 0→1: it needs the device in TDISP RUN and the
//!    current (lock, measurement, report) tuple, used once (A2). EATS stays 0: no ATS, no
//!    PRI, no DPT walks (A3).
//! 4. [`RealmSmmu::revoke`] sets V = 0, then `CMD_CFGI_STE`, then `CMD_SYNC`, and returns only
//!    after the sync completed (A4). [`RealmSmmu::destroy`] consumes the stream handle,
//!    revokes, and gives a level-2 table back only when its last stream left, after its
//!    descriptor was invalidated and synced.
//!
//! The Realm registers are reached only through [`RealmRegisterAccess`], a trait of its own:
//! the Non-secure [`Smmu`](crate::Smmu) takes a [`RegisterAccess`] and has no way to the
//! Realm pages (on hardware they are RAZ/WI to Non-secure accesses anyway, §6.2.7).
//!
//! The command queue, the DMA buffers and the stream table are the driver core's own
//! ([`CommandQueue`], [`DmaBuf`](crate::dma::DmaBuf), [`OwnedStreamTable`]), pointed at the
//! Realm page, whose registers sit at the Non-secure Page 0 offsets (§6.2.8).
//!
//! # Example
//!
//! ```
//! use smmu::realm::{NonceKind, NonceTuple, RealmConfig, RealmS2Context, RealmSmmu, TdispState};
//! use smmu::PhysAddr;
//! use smmu_model::{rme::{Pas, RmeModel}, ModelConfig};
//! use smmu_model_platform::realm::RealmPlatform;
//!
//! let p = RealmPlatform::new(ModelConfig::default()).unwrap();
//! let mut smmu = RealmSmmu::probe(p.realm_regs(), &p.common_ids(), p.realm_hal(), RealmConfig::default()).unwrap();
//! let ctx = RealmS2Context { vmid: 1, s2ttb: PhysAddr(p.rme().realm_pool().0), vtcr_el2: 0x8_0559, mecid: 7 };
//! let dev = smmu.create(0x100, &ctx).unwrap();
//! assert_eq!(smmu.ste(&dev).unwrap()[0] & 1, 0, "V = 0 until accepted");
//! smmu.record(&dev, NonceKind::Lock, 1).unwrap();
//! smmu.record(&dev, NonceKind::Measurement, 2).unwrap();
//! smmu.record(&dev, NonceKind::Report, 3).unwrap();
//! let tuple = NonceTuple { lock: 1, measurement: 2, report: 3 };
//! smmu.accept(&dev, tuple, TdispState::Run).unwrap();
//! assert_eq!(smmu.ste(&dev).unwrap()[0] & 1, 1);
//! smmu.destroy(dev).unwrap();
//! assert!(p.rme().violations().is_empty());
//! ```

mod gate;

pub use gate::{AcceptError, AcceptanceGate, NonceKind, NonceTuple, TdispState};

use heapless::Vec;

use crate::access::RegisterAccess;
use crate::arch::cmd::Command;
use crate::arch::idr::{Features, IdRegs};
use crate::arch::regs::offset;
use crate::arch::ste::fields as ste;
use crate::arch::Field;
use crate::cmdq::{CommandQueue, SyncMode};
use crate::error::{Error, WaitFor};
use crate::evtq::{EventReport, OutputQueue, QueueKind};
use crate::hal::{Hal, PhysAddr};
use crate::poll::{poll, PollBudget};
use crate::strtab::{Layout, OwnedStreamTable, StreamTable};
use crate::writer::ENTRY_QWORDS;

/// Register access to the SMMU's Realm Register Pages: offset 0 is Realm Page 0, `0x10000`
/// Realm Page 1 (§6.2.8, §6.2.9). Implemented by the platform code that maps them in the
/// Realm (or Root) PA space; the Non-secure driver never sees one.
pub trait RealmRegisterAccess {
    /// 32-bit read at `offset` from Realm Page 0.
    fn read32(&self, offset: usize) -> u32;
    /// 32-bit write.
    fn write32(&self, offset: usize, value: u32);
    /// 64-bit read.
    fn read64(&self, offset: usize) -> u64;
    /// 64-bit write.
    fn write64(&self, offset: usize, value: u64);
}

/// The Realm page as the driver core's command queue addresses it (same offsets as Page 0).
struct RealmPage<'a, R: RealmRegisterAccess + ?Sized>(&'a R);

impl<R: RealmRegisterAccess + ?Sized> RegisterAccess for RealmPage<'_, R> {
    fn read32(&self, offset: usize) -> u32 {
        self.0.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.0.write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.0.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.0.write64(offset, value);
    }
}

/// `SMMU_R_IDR0.ATS`, bit 10 (§6.3.122).
pub const R_IDR0_ATS: u32 = 1 << 10;
/// `SMMU_R_IDR0.PRI`, bit 16 (§6.3.122).
pub const R_IDR0_PRI: u32 = 1 << 16;
/// `SMMU_R_IDR1.RME_DA_IMPL`, bit 31 (§6.3.123).
pub const R_IDR1_RME_DA_IMPL: u32 = 1 << 31;
/// `SMMU_R_IDR3.MEC`, bit 16 (§6.3.125).
pub const R_IDR3_MEC: u32 = 1 << 16;
/// `SMMU_R_CR0.SMMUEN`, bit 0 (§6.3.128).
pub const R_CR0_SMMUEN: u32 = 1 << 0;
/// `SMMU_R_CR0.EVTQEN`, bit 2 (§6.3.128).
pub const R_CR0_EVTQEN: u32 = 1 << 2;
/// `SMMU_R_CR0.CMDQEN`, bit 3 (§6.3.128).
pub const R_CR0_CMDQEN: u32 = 1 << 3;
/// `SMMU_R_CR2.RECINVSID`, bit 1 (§6.3.131, as `SMMU_CR2`).
pub const R_CR2_RECINVSID: u32 = 1 << 1;
/// The STE's MECID, bits \[319:304\]: word 4, bits \[63:48\] (§5.2).
pub const STE_MECID: Field = Field::new("MECID", 4, 63, 48);
/// `Config` = stage 1 bypass, stage 2 translate (§5.2).
const CONFIG_S2_ONLY: u64 = 0b110;
/// `SHCFG` = use incoming shareability (§5.2).
const SHCFG_INCOMING: u64 = 0b01;
/// The VTCR_EL2 bits the STE's `VTCR` field (word 2, bits \[50:32\]) mirrors: T0SZ, SL0,
/// IRGN0, ORGN0, SH0, TG0, PS (§5.2 S2T0SZ..S2PS).
const VTCR_STE_BITS: u64 = 0x7_FFFF;

/// Realm streams one [`RealmSmmu`] serves.
pub const MAX_REALM_STREAMS: usize = 64;

/// The Realm's stage-2 context a device shares (SPEC A5): what RMM holds for the Realm,
/// never what the host proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealmS2Context {
    /// The Realm's VMID (STE.S2VMID).
    pub vmid: u16,
    /// The root of the Realm's stage-2 translation table (STE.S2TTB).
    pub s2ttb: PhysAddr,
    /// The Realm's VTCR_EL2: T0SZ, SL0, IRGN0, ORGN0, SH0, TG0, PS are copied into the STE.
    pub vtcr_el2: u64,
    /// The Realm's MECID (STE word 4, when `SMMU_R_IDR3.MEC` = 1).
    pub mecid: u16,
}

/// How [`RealmSmmu::probe`] sets the interface up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealmConfig {
    /// log2 of the command queue's entries (clamped to what the SMMU offers).
    pub cmdq_log2: u32,
    /// log2 of the Realm StreamID space the stream table covers (clamped to SIDSIZE).
    pub sid_bits: u8,
    /// log2 of the Realm event queue's entries (clamped to what the SMMU offers): the faults
    /// of Realm streams are reported here, never on the Non-secure event queue.
    pub evtq_log2: u32,
    /// Bound of every register and command-queue poll.
    pub budget: PollBudget,
}

impl Default for RealmConfig {
    fn default() -> Self {
        Self {
            cmdq_log2: 8,
            sid_bits: 16,
            evtq_log2: 8,
            budget: PollBudget::DEFAULT,
        }
    }
}

/// Why the Realm stream was turned off (all are revokes, SPEC A4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    /// The guest disabled DMA (RSI_VDEV_DMA_DISABLE).
    DmaDisable,
    /// The host unlocked or stopped the interface.
    Unlock,
    /// The device reported an error.
    DeviceError,
}

/// A broken Realm half, for tests that show the scenarios catch each fault. Only with the
/// `test-broken-realm` feature.
#[cfg(feature = "test-broken-realm")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// `create` writes V = 1.
    ValidAtCreate,
    /// `revoke` returns before its `CMD_CFGI_STE` + `CMD_SYNC` (it issues neither).
    RevokeWithoutSync,
    /// `accept` does not look at the report nonce.
    AcceptSkipsReportNonce,
}

/// A Realm stream created by [`RealmSmmu::create`]; only [`RealmSmmu::destroy`] ends it.
#[derive(Debug, PartialEq, Eq)]
pub struct RealmStream {
    sid: u32,
}

impl RealmStream {
    /// The Realm StreamID.
    pub fn sid(&self) -> u32 {
        self.sid
    }
}

#[derive(Debug)]
struct StreamState {
    sid: u32,
    gate: AcceptanceGate,
}

/// The Realm programming interface of one SMMU (module docs).
pub struct RealmSmmu<R: RealmRegisterAccess, H: Hal> {
    regs: R,
    hal: H,
    features: Features,
    budget: PollBudget,
    strtab: OwnedStreamTable,
    cmdq: CommandQueue,
    evtq: OutputQueue,
    streams: Vec<StreamState, MAX_REALM_STREAMS>,
    #[cfg(feature = "test-broken-realm")]
    broken: Option<Broken>,
}

impl<R: RealmRegisterAccess, H: Hal> core::fmt::Debug for RealmSmmu<R, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RealmSmmu")
            .field("strtab", &self.strtab)
            .field("cmdq", &self.cmdq)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl<R: RealmRegisterAccess, H: Hal> RealmSmmu<R, H> {
    /// Probes and resets the Realm interface. `common` are the SMMU's ID registers
    /// (`SMMU_IDR0..5`, readable from the Realm PA space, §6.2), which describe what both
    /// interfaces share (StreamID size, stage 2, table formats).
    ///
    /// The reset: `R_CR0` = 0 and its ACK, `R_CR1`, `R_CR2`, `R_STRTAB_BASE(_CFG)`, the
    /// command queue, `CMDQEN`, `CMD_CFGI_ALL` + `CMD_TLBI_NSNH_ALL` + `CMD_SYNC`, `SMMUEN`.
    /// Every poll is bounded.
    pub fn probe(regs: R, common: &IdRegs, hal: H, config: RealmConfig) -> Result<Self, Error> {
        if regs.read32(offset::IDR1) & R_IDR1_RME_DA_IMPL == 0 {
            return Err(Error::Unsupported(
                "Realm programming interface (R_IDR1.RME_DA_IMPL)",
            ));
        }
        let features = crate::probe::check(common).map_err(Error::Probe)?;
        if !features.stage2 {
            return Err(Error::Unsupported("stage 2 (IDR0.S2P)"));
        }
        let sid_bits = config.sid_bits.min(features.sid_bits);
        let (layout, log2) = Layout::choose(features.two_level_stream_table, sid_bits);
        let strtab = OwnedStreamTable::new(&hal, layout, log2, features.coherent, &[0; 8])?;
        let cmdq = CommandQueue::new(
            &hal,
            config.cmdq_log2.min(u32::from(features.cmdq_log2_max)),
            SyncMode::select(false, false, features.coherent),
            features.coherent,
            config.budget,
        )?;
        let evtq_log2 = config
            .evtq_log2
            .min(QueueKind::Event.max_log2_entries(&features));
        let evtq = OutputQueue::new(&hal, QueueKind::Event, evtq_log2, features.coherent)
            .map_err(Error::Queue)?;
        let mut smmu = Self {
            regs,
            hal,
            features,
            budget: config.budget,
            strtab,
            cmdq,
            evtq,
            streams: Vec::new(),
            #[cfg(feature = "test-broken-realm")]
            broken: None,
        };
        smmu.reset()?;
        Ok(smmu)
    }

    fn write_cr0(&self, value: u32) -> Result<(), Error> {
        self.regs.write32(offset::CR0, value);
        poll(&self.hal, self.budget, || {
            (self.regs.read32(offset::CR0ACK) == value).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::Cr0Ack))
    }

    fn reset(&mut self) -> Result<(), Error> {
        self.write_cr0(0)?;
        if self.features.coherent {
            // Queues and tables: inner and outer write-back, inner shareable (§6.3.130).
            self.regs
                .write32(offset::CR1, 3 << 10 | 1 << 8 | 1 << 6 | 3 << 4 | 1 << 2 | 1);
        }
        self.regs.write32(offset::CR2, R_CR2_RECINVSID);
        if let Some((base, cfg)) = self.strtab.base_registers() {
            self.regs.write64(offset::STRTAB_BASE, base);
            self.regs.write32(offset::STRTAB_BASE_CFG, cfg);
        }
        self.cmdq.program(&RealmPage(&self.regs));
        self.write_cr0(R_CR0_CMDQEN)?;
        self.issue(&[Command::CfgiAll, Command::TlbiNsnhAll])?;
        // The Realm event queue: Realm streams' faults are recorded in Realm memory only
        // (§6.2.8: the Realm page has its own R_EVTQ_*).
        self.evtq.program(&RealmPage(&self.regs));
        self.write_cr0(R_CR0_CMDQEN | R_CR0_EVTQEN)?;
        self.write_cr0(R_CR0_CMDQEN | R_CR0_EVTQEN | R_CR0_SMMUEN)
    }

    /// Drains the Realm event queue into `handler`: the faults of Realm streams (an STE
    /// that is not valid yet, a stage-2 fault in the Realm's tables, a granule protection
    /// fault on a walk). Returns the records consumed. Bounded like the Non-secure
    /// [`Smmu::handle_events`](crate::Smmu::handle_events).
    pub fn handle_events(&self, handler: &mut dyn FnMut(EventReport)) -> Result<u32, Error> {
        Ok(self
            .evtq
            .drain_events(&self.hal, &RealmPage(&self.regs), handler)
            .map_err(Error::Drain)?
            .consumed)
    }

    /// Issues `cmds` and a `CMD_SYNC`, returning once the sync completed.
    fn issue(&self, cmds: &[Command]) -> Result<(), Error> {
        self.cmdq
            .issue(&self.hal, &RealmPage(&self.regs), cmds, true)
    }

    #[cfg(feature = "test-broken-realm")]
    #[doc(hidden)]
    /// Makes this Realm half deliberately wrong (tests only).
    pub fn set_broken(&mut self, broken: Option<Broken>) {
        self.broken = broken;
    }

    /// Whether the test-only fault `which` (0 V at create, 1 revoke without sync, 2 accept
    /// without the report nonce) is on; always false without the feature.
    #[cfg(feature = "test-broken-realm")]
    fn is_broken(&self, which: u8) -> bool {
        let b = match which {
            0 => Broken::ValidAtCreate,
            1 => Broken::RevokeWithoutSync,
            _ => Broken::AcceptSkipsReportNonce,
        };
        self.broken == Some(b)
    }

    #[cfg(not(feature = "test-broken-realm"))]
    #[allow(clippy::unused_self)] // the same signature as the feature's version, which reads it
    fn is_broken(&self, which: u8) -> bool {
        let _ = which;
        false
    }

    /// The complete Realm STE for `ctx`, V = 0 (SPEC A1, A3, A5).
    pub fn realm_ste(ctx: &RealmS2Context) -> [u64; ENTRY_QWORDS] {
        let mut w = [0u64; ENTRY_QWORDS];
        ste::CONFIG.set(&mut w, CONFIG_S2_ONLY);
        // EATS stays 0: no ATS, so no PRI and no DPT walks (A3).
        ste::SHCFG.set(&mut w, SHCFG_INCOMING);
        ste::S2VMID.set(&mut w, u64::from(ctx.vmid));
        ste::VTCR.set(&mut w, ctx.vtcr_el2 & VTCR_STE_BITS);
        ste::S2AA64.set(&mut w, 1);
        ste::S2PTW.set(&mut w, 1);
        ste::S2R.set(&mut w, 1);
        ste::S2TTB.set(&mut w, ctx.s2ttb.0 >> 4);
        STE_MECID.set(&mut w, u64::from(ctx.mecid));
        w
    }

    fn position(&self, sid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.sid == sid)
    }

    fn state_mut(&mut self, stream: &RealmStream) -> Result<&mut StreamState, Error> {
        let i = self.position(stream.sid).ok_or(Error::NoSuchMaster)?;
        self.streams.get_mut(i).ok_or(Error::NoSuchMaster)
    }

    /// Step 1: writes `sid`'s complete Realm STE from the Realm's stage-2 context with V = 0,
    /// then `CMD_CFGI_STE` + `CMD_SYNC`. Every transaction of the stream aborts until
    /// [`RealmSmmu::accept`].
    pub fn create(&mut self, sid: u32, ctx: &RealmS2Context) -> Result<RealmStream, Error> {
        if self.position(sid).is_some() {
            return Err(Error::StreamIdInUse(sid));
        }
        if self.streams.is_full() {
            return Err(Error::CapacityExhausted);
        }
        let prepared = self.strtab.prepare(&self.hal, sid, &[0; 8])?;
        if prepared == crate::strtab::Prepared::NewLevel1Descriptor {
            self.issue(&[Command::CfgiSte { sid, leaf: false }])?;
        }
        let mut words = Self::realm_ste(ctx);
        if self.is_broken(0) {
            ste::V.set(&mut words, 1);
        }
        let loc = self.strtab.locate(sid)?;
        for (i, w) in words.iter().enumerate().skip(1) {
            loc.buf.store_live(&self.hal, loc.first_word + i, *w)?;
        }
        loc.buf.store_live(&self.hal, loc.first_word, words[0])?;
        self.issue(&[Command::CfgiSte { sid, leaf: true }])?;
        let _ = self.streams.push(StreamState {
            sid,
            gate: AcceptanceGate::new(),
        });
        Ok(RealmStream { sid })
    }

    /// Step 2: the attestation refreshed the `kind` nonce of `stream`'s device to `nonce`.
    pub fn record(
        &mut self,
        stream: &RealmStream,
        kind: NonceKind,
        nonce: u64,
    ) -> Result<(), Error> {
        self.state_mut(stream)?.gate.record(kind, nonce);
        Ok(())
    }

    /// Step 3: turns the stream on (V = 1, then `CMD_CFGI_STE` + `CMD_SYNC`) if the device
    /// reports RUN and `tuple` is the current, unused attestation (SPEC A2).
    pub fn accept(
        &mut self,
        stream: &RealmStream,
        tuple: NonceTuple,
        reported: TdispState,
    ) -> Result<(), RealmError> {
        let skip_report = self.is_broken(2);
        let state = self.state_mut(stream)?;
        if skip_report {
            // The broken variant: the report nonce is taken as given.
            let mut gate = state.gate.clone();
            gate.record(NonceKind::Report, tuple.report);
            gate.check(&tuple, reported)?;
        } else {
            state.gate.check(&tuple, reported)?;
        }
        let loc = self.strtab.locate(stream.sid)?;
        let mut words = loc.read(&self.hal)?;
        // A3: a Realm STE never carries EATS.
        if ste::EATS.get(&words) != 0 {
            return Err(RealmError::Smmu(Error::Unsupported("EATS on a Realm STE")));
        }
        ste::V.set(&mut words, 1);
        loc.buf.store_live(&self.hal, loc.first_word, words[0])?;
        self.issue(&[Command::CfgiSte {
            sid: stream.sid,
            leaf: true,
        }])?;
        self.state_mut(stream)?.gate.consume(tuple);
        Ok(())
    }

    /// Step 4: turns the stream off: V = 0, then `CMD_CFGI_STE`, then `CMD_SYNC`; returns once
    /// the sync completed, so no transaction uses the old STE afterwards (SPEC A4).
    pub fn revoke(&mut self, stream: &RealmStream, reason: RevokeReason) -> Result<(), Error> {
        let _ = reason;
        let loc = self.strtab.locate(stream.sid)?;
        let mut words = loc.read(&self.hal)?;
        ste::V.set(&mut words, 0);
        loc.buf.store_live(&self.hal, loc.first_word, words[0])?;
        if !self.is_broken(1) {
            self.issue(&[Command::CfgiSte {
                sid: stream.sid,
                leaf: true,
            }])?;
        }
        self.state_mut(stream)?.gate.revoke();
        Ok(())
    }

    /// Ends the stream: revokes it, and when it was the last stream of its level-2 table,
    /// invalidates that table's level-1 descriptor, syncs, and only then frees the table
    /// (SPEC A4).
    pub fn destroy(&mut self, stream: RealmStream) -> Result<(), Error> {
        self.revoke(&stream, RevokeReason::Unlock)?;
        let sid = stream.sid;
        if let Some(i) = self.position(sid) {
            self.streams.swap_remove(i);
        }
        let l1 = sid >> crate::arch::l1std::STRTAB_SPLIT;
        let shared = self
            .streams
            .iter()
            .any(|s| s.sid >> crate::arch::l1std::STRTAB_SPLIT == l1);
        if shared {
            return Ok(());
        }
        if let Some(table) = self.strtab.take_level2(&self.hal, sid)? {
            let synced = self.issue(&[Command::CfgiSte { sid, leaf: false }]);
            // Without the sync the SMMU may still walk it: on an error the table is leaked
            // (`DmaBuf` has no `Drop`) rather than freed.
            synced?;
            // SAFETY: the descriptor is invalid and a CFGI_STE + CMD_SYNC completed after
            // it: the SMMU neither holds nor can fetch the table any more.
            unsafe { table.release(&self.hal) };
        }
        Ok(())
    }

    /// The stream's STE as it is in memory.
    pub fn ste(&self, stream: &RealmStream) -> Result<[u64; ENTRY_QWORDS], Error> {
        self.strtab.locate(stream.sid)?.read(&self.hal)
    }

    /// Whether the stream is accepted.
    pub fn is_accepted(&self, stream: &RealmStream) -> bool {
        self.position(stream.sid)
            .and_then(|i| self.streams.get(i))
            .is_some_and(|s| s.gate.is_accepted())
    }

    /// Level-2 stream tables in use.
    pub fn level2_tables(&self) -> usize {
        self.strtab.l2_tables()
    }

    /// The command queue's counters.
    pub fn cmdq_stats(&self) -> crate::cmdq::CmdqStats {
        self.cmdq.stats()
    }
}

/// What [`RealmSmmu::accept`] can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealmError {
    /// The gate refused: nothing was written.
    Refused(AcceptError),
    /// The SMMU or the driver failed.
    Smmu(Error),
}

impl From<AcceptError> for RealmError {
    fn from(e: AcceptError) -> Self {
        Self::Refused(e)
    }
}

impl From<Error> for RealmError {
    fn from(e: Error) -> Self {
        Self::Smmu(e)
    }
}

impl From<crate::dma::OutOfBounds> for RealmError {
    fn from(e: crate::dma::OutOfBounds) -> Self {
        Self::Smmu(e.into())
    }
}

/// The Realm half on a fake register page (ACKs follow at once, the command queue consumes
/// each `PROD` write): the whole order through `destroy`, whose freeing of a level-2 table is
/// this module's one `unsafe` place, so that Miri checks it.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostHal;
    use crate::testutil::FakeRegs;

    struct Page<'a>(&'a FakeRegs);

    impl RealmRegisterAccess for Page<'_> {
        fn read32(&self, offset: usize) -> u32 {
            RegisterAccess::read32(self.0, offset)
        }
        fn write32(&self, offset: usize, value: u32) {
            RegisterAccess::write32(self.0, offset, value);
        }
        fn read64(&self, offset: usize) -> u64 {
            RegisterAccess::read64(self.0, offset)
        }
        fn write64(&self, offset: usize, value: u64) {
            RegisterAccess::write64(self.0, offset, value);
        }
    }

    // spec: A1, A2, A4
    #[test]
    fn create_accept_revoke_destroy_on_a_fake_realm_page() {
        let regs = FakeRegs::new();
        regs.on_write(|file, w| match w.offset {
            offset::CR0 => file.set32(offset::CR0ACK, w.value as u32),
            offset::CMDQ_PROD => file.set32(offset::CMDQ_CONS, w.value as u32),
            _ => {}
        });
        regs.set32(offset::IDR1, R_IDR1_RME_DA_IMPL);
        // QEMU 10's nested-capable SMMU: S1P and S2P, 2-level stream tables, SIDSIZE 16.
        let common = IdRegs {
            idr: [0x0D44_101B, 0x0273_0010, 0, 0x1414, 0, 0x74],
            iidr: 0,
            aidr: 1,
        };
        let hal = HostHal::new();
        let mut realm =
            RealmSmmu::probe(Page(&regs), &common, &hal, RealmConfig::default()).unwrap();
        let ctx = RealmS2Context {
            vmid: 9,
            s2ttb: PhysAddr(0x8000_0000),
            vtcr_el2: 0,
            mecid: 0,
        };
        let gpu = realm.create(0x120, &ctx).unwrap();
        let ste = |realm: &RealmSmmu<Page<'_>, &HostHal>| {
            realm.strtab.locate(0x120).unwrap().read(&hal).unwrap()
        };
        assert_eq!(ste::V.get(&ste(&realm)), 0, "created invalid (A1)");
        let tuple = NonceTuple {
            lock: 1,
            measurement: 2,
            report: 3,
        };
        for (kind, nonce) in [
            (NonceKind::Lock, 1),
            (NonceKind::Measurement, 2),
            (NonceKind::Report, 3),
        ] {
            realm.record(&gpu, kind, nonce).unwrap();
        }
        assert!(realm.accept(&gpu, tuple, TdispState::ConfigLocked).is_err());
        realm.accept(&gpu, tuple, TdispState::Run).unwrap();
        assert_eq!(ste::V.get(&ste(&realm)), 1, "valid once accepted (A2)");
        realm.revoke(&gpu, RevokeReason::DmaDisable).unwrap();
        assert_eq!(ste::V.get(&ste(&realm)), 0, "revoked (A4)");
        let live = hal.live_allocations();
        realm.destroy(gpu).unwrap();
        assert_eq!(
            hal.live_allocations(),
            live - 1,
            "the level-2 table of its last user is freed"
        );
    }
}

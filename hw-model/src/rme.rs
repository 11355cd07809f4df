//! SMMU for RME and RME DA (IHI 0070 G.b §2.6, §2.7): the Root control page, the Realm
//! programming interface, Granule Protection Checks (§3.25) and a TDISP device.
//!
//! An [`RmeModel`] joins two [`Model`]s over one [`HostRam`] arena: the Non-secure
//! programming interface (the model every existing test uses, unchanged) and the Realm
//! programming interface (Realm Page 0 and 1, §6.2.8–§6.2.9, with its own stream table,
//! queues and caches). Both see the same physical memory, and both consult one granule
//! protection table ([`Gpt`]) for every access they make or let through:
//!
//! * SMMU-originated accesses (structure fetches, table walks, queue reads and writes) are
//!   made in the interface's PA space (§6.2.7: Realm registers hold Realm physical addresses);
//!   a GPF there is an External abort (§3.25.3): `F_STE_FETCH`, `F_CD_FETCH`, `F_WALK_EABT`
//!   with `GPCF` = 1, or a `GERROR` abort for queues.
//! * Client-originated accesses are checked on their output address in the PA space of their
//!   `SEC_SID` (§3.10.1); a GPF terminates the access like an External abort and writes no
//!   event record (§3.25.1).
//! * The first GPF is recorded in `SMMU_ROOT_GPF_FAR` until software clears its FAULT bit
//!   (§3.25.5, §6.3.116).
//!
//! The granule protection table itself is held by the model, not fetched from memory: Root
//! firmware sets the PAS of each 4 KiB granule with [`Gpt::assign`] (the in-memory GPT format
//! of FEAT_RME is outside this model; `SMMU_ROOT_GPT_BASE(_CFG)` hold their values only).
//! Every granule starts Non-secure and GPCEN starts 0, so nothing changes for a test that
//! does not enable the checks.
//!
//! # Example
//!
//! ```
//! use smmu_model::rme::{self, Pas, RmeModel, SecSid};
//! use smmu_model::{Cause, ModelConfig, Transaction, TxnResult};
//!
//! let rme = RmeModel::new(ModelConfig::default(), 16 << 20).unwrap();
//! let private = rme.realm_pool().0;
//! rme.gpt().assign(private, 0x1000, Pas::Realm);
//! rme.root_write32(rme::ROOT_CR0_OFFSET, rme::ROOT_CR0_GPCEN | rme::ROOT_CR0_ACCESSEN);
//! // A Non-secure stream in GBPA bypass cannot reach the Realm granule (§3.25.1).
//! let r = rme.dma(SecSid::NonSecure, Transaction::write(1, private));
//! assert!(matches!(r, TxnResult::Abort { cause: Cause::GranuleProtection, event: None }));
//! assert_eq!(rme.gpt().faults(), 1);
//! ```

use crate::fields::reg;
use crate::host::HostRam;
use crate::mem::MemError;
use crate::model::{Model, ModelConfig};
use crate::shared::SharedModel;
use crate::txn::{Cause, Transaction, TxnResult};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A physical address space (§3.10, FEAT_RME), encoded as `SMMU_ROOT_GPF_FAR.FPAS`
/// (§6.3.116).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pas {
    /// Secure PA space (FPAS 0b00).
    Secure,
    /// Non-secure PA space (FPAS 0b01).
    NonSecure,
    /// Root PA space (FPAS 0b10).
    Root,
    /// Realm PA space (FPAS 0b11).
    Realm,
}

impl Pas {
    /// The `FPAS` encoding of §6.3.116.
    pub fn fpas(self) -> u64 {
        match self {
            Self::Secure => 0b00,
            Self::NonSecure => 0b01,
            Self::Root => 0b10,
            Self::Realm => 0b11,
        }
    }
}

/// The security state of a transaction's StreamID (§3.10.1). Secure streams are not modelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SecSid {
    /// Non-secure StreamID space, Non-secure stream table (the default of every transaction).
    #[default]
    NonSecure,
    /// Realm StreamID space, Realm stream table (PCIe TDISP requests with T = 1).
    Realm,
}

impl SecSid {
    /// The PA space the transaction's output address is in.
    pub fn pas(self) -> Pas {
        match self {
            Self::NonSecure => Pas::NonSecure,
            Self::Realm => Pas::Realm,
        }
    }
}

/// `SMMU_ROOT_IDR0` offset in the Root control page (§6.2.6).
pub const ROOT_IDR0_OFFSET: u64 = 0x0000;
/// `SMMU_ROOT_CR0` offset (§6.2.6).
pub const ROOT_CR0_OFFSET: u64 = 0x0020;
/// `SMMU_ROOT_CR0ACK` offset (§6.2.6).
pub const ROOT_CR0ACK_OFFSET: u64 = 0x0024;
/// `SMMU_ROOT_GPT_BASE` offset, 64-bit (§6.2.6).
pub const ROOT_GPT_BASE_OFFSET: u64 = 0x0028;
/// `SMMU_ROOT_GPT_BASE_CFG` offset, 64-bit (§6.2.6).
pub const ROOT_GPT_BASE_CFG_OFFSET: u64 = 0x0030;
/// `SMMU_ROOT_GPF_FAR` offset, 64-bit (§6.2.6).
pub const ROOT_GPF_FAR_OFFSET: u64 = 0x0038;
/// `SMMU_ROOT_GPT_CFG_FAR` offset, 64-bit (§6.2.6).
pub const ROOT_GPT_CFG_FAR_OFFSET: u64 = 0x0040;
/// `SMMU_ROOT_IDR0.ROOT_IMPL`, bit 0 (§6.3.110).
pub const ROOT_IDR0_ROOT_IMPL: u32 = 1 << 0;
/// `SMMU_ROOT_IDR0.BGPTM`, bit 1 (§6.3.110).
pub const ROOT_IDR0_BGPTM: u32 = 1 << 1;
/// `SMMU_ROOT_IDR0.REALM_IMPL`, bit 3 (§6.3.110).
pub const ROOT_IDR0_REALM_IMPL: u32 = 1 << 3;
/// `SMMU_ROOT_IDR0.BA_REALM`, bits \[31:22\] (§6.3.110).
pub const ROOT_IDR0_BA_REALM_SHIFT: u32 = 22;
/// `SMMU_ROOT_CR0.ACCESSEN`, bit 0 (§6.3.112).
pub const ROOT_CR0_ACCESSEN: u32 = 1 << 0;
/// `SMMU_ROOT_CR0.GPCEN`, bit 1 (§6.3.112).
pub const ROOT_CR0_GPCEN: u32 = 1 << 1;
/// `SMMU_ROOT_GPF_FAR.FAULT`, bit 0 (§6.3.116).
pub const GPF_FAR_FAULT: u64 = 1 << 0;
/// `SMMU_ROOT_GPF_FAR.REASON` TRANSLATION (§6.3.116).
pub const GPF_REASON_TRANSLATION: u64 = 0b001;
/// `SMMU_ROOT_GPF_FAR.REASON` GERROR (§6.3.116).
pub const GPF_REASON_GERROR: u64 = 0b010;
/// `SMMU_ROOT_GPF_FAR.REASON` TRANSACTION (§6.3.116).
pub const GPF_REASON_TRANSACTION: u64 = 0b011;
/// `FAULTCODE` GPF_STE_FETCH (REASON TRANSLATION, §6.3.116).
pub const GPF_CODE_STE_FETCH: u64 = 0x03;
/// `FAULTCODE` GPF_CD_FETCH.
pub const GPF_CODE_CD_FETCH: u64 = 0x09;
/// `FAULTCODE` GPF_WALK_EABT.
pub const GPF_CODE_WALK_EABT: u64 = 0x0B;
/// `FAULTCODE` OTHER_GPF (REASON GERROR).
pub const GPF_CODE_OTHER: u64 = 0x10;

/// `BA_REALM` of the model: Realm Page 0 at `0x20000 + 2 * 0x10000` = `0x40000` from Page 0
/// (§6.3.110: BA_REALM\[0\] is always zero, so the pair is 128 KiB aligned).
pub const BA_REALM: u32 = 2;
/// Offset of Realm Page 0 from Non-secure Page 0 (`O_REALM`, §6.3.110).
pub const O_REALM: u64 = 0x20000 + BA_REALM as u64 * 0x10000;
/// Size of the two Realm register pages (§6.2.7).
pub const REALM_PAGES_BYTES: u64 = 0x20000;

/// One granule protection fault, as the model saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpcFault {
    /// The physical address that failed the check.
    pub pa: u64,
    /// The PA space of the access.
    pub pas: Pas,
    /// The PA space the granule is assigned to.
    pub granule: Pas,
    /// Whether the SMMU made the access (structure fetch, walk, queue) rather than a client.
    pub smmu_originated: bool,
}

#[derive(Debug, Default)]
struct GptState {
    /// PAS per 4 KiB granule index; absent = Non-secure.
    granules: BTreeMap<u64, Pas>,
    /// `SMMU_ROOT_CR0` and its ACK (the model acknowledges at once).
    cr0: u32,
    gpt_base: u64,
    gpt_base_cfg: u64,
    gpf_far: u64,
    /// Every GPF, in order (bounded).
    log: Vec<GpcFault>,
    faults: u64,
    /// SMMU-originated GPFs not yet attributed to a FAR reason.
    unclaimed: Vec<(u64, Pas)>,
}

/// The granule protection table and the Root registers that control the checks, shared by
/// both programming interfaces of an [`RmeModel`].
#[derive(Clone, Debug, Default)]
pub struct Gpt(Arc<Mutex<GptState>>);

impl Gpt {
    fn lock(&self) -> MutexGuard<'_, GptState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Root firmware assigns `[pa, pa + len)` (whole granules) to `pas`.
    pub fn assign(&self, pa: u64, len: u64, pas: Pas) {
        let mut s = self.lock();
        let first = pa >> 12;
        let last = pa.saturating_add(len.max(1)).saturating_sub(1) >> 12;
        for g in first..=last {
            if pas == Pas::NonSecure {
                s.granules.remove(&g);
            } else {
                s.granules.insert(g, pas);
            }
        }
    }

    /// The PAS the granule holding `pa` is assigned to.
    pub fn pas_of(&self, pa: u64) -> Pas {
        self.lock()
            .granules
            .get(&(pa >> 12))
            .copied()
            .unwrap_or(Pas::NonSecure)
    }

    /// Whether checks are enabled (`SMMU_ROOT_CR0.GPCEN`, §3.25).
    pub fn enabled(&self) -> bool {
        self.lock().cr0 & ROOT_CR0_GPCEN != 0
    }

    /// Number of GPFs so far (client and SMMU-originated).
    pub fn faults(&self) -> u64 {
        self.lock().faults
    }

    /// The GPFs so far, oldest first (at most 4096 kept).
    pub fn fault_log(&self) -> Vec<GpcFault> {
        self.lock().log.clone()
    }

    /// `SMMU_ROOT_GPF_FAR` as Root software would read it.
    pub fn gpf_far(&self) -> u64 {
        self.lock().gpf_far
    }

    /// Checks an access of `len` bytes at `pa` in `pas` (§3.25: a granule assigned to a PAS
    /// admits only accesses in that PAS). Records a failure; returns the first failing address.
    pub(crate) fn check(
        &self,
        pa: u64,
        len: u64,
        pas: Pas,
        smmu_originated: bool,
    ) -> Result<(), u64> {
        let mut s = self.lock();
        if s.cr0 & ROOT_CR0_GPCEN == 0 {
            return Ok(());
        }
        let first = pa >> 12;
        let last = pa.saturating_add(len.max(1)).saturating_sub(1) >> 12;
        for g in first..=last {
            let granule = s.granules.get(&g).copied().unwrap_or(Pas::NonSecure);
            if granule != pas {
                let at = pa.max(g << 12);
                s.faults += 1;
                if s.log.len() < 4096 {
                    s.log.push(GpcFault {
                        pa: at,
                        pas,
                        granule,
                        smmu_originated,
                    });
                }
                if smmu_originated && s.unclaimed.len() < 64 {
                    s.unclaimed.push((at, pas));
                }
                return Err(at);
            }
        }
        Ok(())
    }

    /// Records a GPF in `SMMU_ROOT_GPF_FAR` unless one is active (§3.25.5).
    pub(crate) fn record_far(&self, pa: u64, pas: Pas, reason: u64, code: u64) {
        let mut s = self.lock();
        s.unclaimed.retain(|&(a, p)| !(a == pa && p == pas));
        if s.gpf_far & GPF_FAR_FAULT != 0 {
            return;
        }
        s.gpf_far = pas.fpas() << 62
            | (pa & 0x00FF_FFFF_FFFF_F000)
            | (code & 0xFF) << 4
            | (reason & 0x7) << 1
            | GPF_FAR_FAULT;
    }

    /// Whether the last check of `pa` by the SMMU failed (and was not yet attributed).
    pub(crate) fn unclaimed(&self, pa: u64) -> Option<Pas> {
        self.lock()
            .unclaimed
            .iter()
            .find(|&&(a, _)| a >> 12 == pa >> 12)
            .map(|&(_, p)| p)
    }

    /// Attributes every SMMU-originated GPF not attributed yet as REASON GERROR, OTHER_GPF.
    pub(crate) fn flush_unclaimed(&self) {
        let pending: Vec<(u64, Pas)> = core::mem::take(&mut self.lock().unclaimed);
        for (pa, pas) in pending {
            self.record_far(pa, pas, GPF_REASON_GERROR, GPF_CODE_OTHER);
        }
    }

    fn root_read(&self, off: u64) -> u64 {
        let s = self.lock();
        match off {
            ROOT_IDR0_OFFSET => u64::from(
                ROOT_IDR0_ROOT_IMPL
                    | ROOT_IDR0_BGPTM
                    | ROOT_IDR0_REALM_IMPL
                    | BA_REALM << ROOT_IDR0_BA_REALM_SHIFT,
            ),
            ROOT_CR0_OFFSET | ROOT_CR0ACK_OFFSET => u64::from(s.cr0),
            ROOT_GPT_BASE_OFFSET => s.gpt_base,
            ROOT_GPT_BASE_CFG_OFFSET => s.gpt_base_cfg,
            ROOT_GPF_FAR_OFFSET => s.gpf_far,
            _ => 0,
        }
    }

    fn root_write(&self, off: u64, v: u64) {
        let mut s = self.lock();
        match off {
            ROOT_CR0_OFFSET => s.cr0 = (v as u32) & (ROOT_CR0_GPCEN | ROOT_CR0_ACCESSEN),
            ROOT_GPT_BASE_OFFSET => s.gpt_base = v,
            ROOT_GPT_BASE_CFG_OFFSET => s.gpt_base_cfg = v,
            // Only FAULT is writable, and only to 0 (a write of 1 is ignored, §6.3.116).
            ROOT_GPF_FAR_OFFSET if v & GPF_FAR_FAULT == 0 => s.gpf_far = 0,
            _ => {}
        }
    }
}

/// What the model attaches to an interface's [`Model`] when it is part of an [`RmeModel`].
#[derive(Clone, Debug)]
pub(crate) struct RmePort {
    pub(crate) gpt: Gpt,
    /// The PA space of the interface's own accesses.
    pub(crate) pas: Pas,
    /// This is the Realm programming interface (its ID registers and R_GBPA differ).
    pub(crate) realm_interface: bool,
    /// Non-secure register accesses to the Realm pages (RAZ/WI, §6.2.7).
    pub(crate) realm_page_hits: u64,
}

impl Model {
    /// The client-output check (§3.25.1): a GPF on the output address terminates the access
    /// like an External abort, with no event record; FAR REASON TRANSACTION.
    pub(crate) fn gpc_output(&mut self, t: &Transaction, r: TxnResult) -> TxnResult {
        let Some(p) = &self.rme else {
            return r;
        };
        let Some(pa) = r.pa() else {
            return r;
        };
        let len = u64::from(t.size).clamp(1, 4096 - (pa & 0xFFF));
        match p.gpt.check(pa, len, p.pas, false) {
            Ok(()) => r,
            Err(at) => {
                p.gpt.record_far(at, p.pas, GPF_REASON_TRANSACTION, 0);
                TxnResult::Abort {
                    cause: Cause::GranuleProtection,
                    event: None,
                }
            }
        }
    }

    /// An SMMU-originated access at `fetch` failed its GPC: attributes it (REASON TRANSLATION
    /// with `code`) and tells the event builder to set GPCF (§3.25.3).
    pub(crate) fn gpc_fetch_fault(&self, fetch: u64, code: u64) -> bool {
        let Some(p) = &self.rme else {
            return false;
        };
        match p.gpt.unclaimed(fetch) {
            Some(pas) => {
                p.gpt.record_far(fetch, pas, GPF_REASON_TRANSLATION, code);
                true
            }
            None => false,
        }
    }

    /// `Some(true)` for an access to the Realm pages through this (Non-secure) interface's
    /// register bus, which is RAZ/WI (§6.2.7); counts it.
    pub(crate) fn realm_page_access(&mut self, offset: u64) -> bool {
        match &mut self.rme {
            Some(p)
                if !p.realm_interface
                    && (O_REALM..O_REALM + REALM_PAGES_BYTES).contains(&offset) =>
            {
                p.realm_page_hits += 1;
                true
            }
            _ => false,
        }
    }

    /// The Realm interface's own ID registers (§6.3.122–§6.3.126) and R_GBPA (§6.3.133).
    pub(crate) fn realm_id_reg(&self, off: u64) -> Option<u32> {
        self.rme.as_ref().filter(|p| p.realm_interface)?;
        let idr0 = self.prof.idr[0];
        Some(match off {
            // R_IDR0: ECMDQ, STALL_MODEL, PRI, MSI, ATS at the SMMU_IDR0 positions.
            // R_IDR0 (§6.3.122): STALL_MODEL and MSI from the SMMU; ATS and PRI are not
            // offered to the Realm (acceptance never enables them, SPEC A3).
            reg::IDR0 => idr0 & ((0b11 << 24) | (1 << 13)),
            // R_IDR1.RME_DA_IMPL, bit 31.
            0x04 => 1 << 31,
            0x08 | 0x10 => 0,
            // R_IDR3.MEC, bit 16 (DPT, bit 15, not implemented).
            0x0C => 1 << 16,
            // There is no SMMU_R_IIDR (§6.2.8).
            0x18 => 0,
            _ => return None,
        })
    }

    /// Whether this model is the Realm programming interface.
    pub(crate) fn is_realm_interface(&self) -> bool {
        self.rme.as_ref().is_some_and(|p| p.realm_interface)
    }

    fn attach_rme(&mut self, port: RmePort) {
        self.mem.gpc = Some((port.gpt.clone(), port.pas));
        if port.realm_interface {
            // R_GBPA.ABORT is RES1 and the register is RO (§6.3.133).
            self.gbpa = reg::GBPA_ABORT;
        }
        self.rme = Some(port);
    }
}

/// Where the [`RmeModel`]'s two DMA pools are: the Non-secure one first, the Realm one above.
const POOL_SPLIT: u64 = 2;

/// An SMMU with RME and RME DA: a Non-secure and a Realm programming interface over one RAM,
/// a Root control page, and a granule protection table (module docs).
#[derive(Clone, Debug)]
pub struct RmeModel {
    ns: SharedModel,
    realm: SharedModel,
    gpt: Gpt,
    ram: HostRam,
    ns_pool: (u64, u64),
    realm_pool: (u64, u64),
}

impl RmeModel {
    /// Builds both interfaces from `cfg` over a fresh arena of `ram_bytes` at `cfg.ram_base`.
    /// The lower half of RAM is the Non-secure interface's DMA pool, the upper half the Realm
    /// interface's (Root firmware still has to assign the Realm half to the Realm PAS).
    pub fn new(cfg: ModelConfig, ram_bytes: u64) -> Result<Self, MemError> {
        let ram = HostRam::new(ram_bytes)?;
        Ok(Self::with_ram(cfg, ram))
    }

    /// As [`RmeModel::new`] over an existing arena.
    pub fn with_ram(mut cfg: ModelConfig, ram: HostRam) -> Self {
        let half = (ram.len_bytes() / POOL_SPLIT) & !0xFFF;
        let ns_pool = (cfg.ram_base, half);
        let realm_pool = (cfg.ram_base + half, ram.len_bytes() - half);
        cfg.host_ram = Some(ram.clone());
        let gpt = Gpt::default();
        let mut ns = Model::new(ModelConfig {
            dma_pool: Some(ns_pool),
            ..cfg.clone()
        });
        ns.attach_rme(RmePort {
            gpt: gpt.clone(),
            pas: Pas::NonSecure,
            realm_interface: false,
            realm_page_hits: 0,
        });
        let mut realm = Model::new(ModelConfig {
            dma_pool: Some(realm_pool),
            seed: cfg.seed ^ 0x5EA1_3,
            ..cfg
        });
        realm.attach_rme(RmePort {
            gpt: gpt.clone(),
            pas: Pas::Realm,
            realm_interface: true,
            realm_page_hits: 0,
        });
        Self {
            ns: SharedModel::new(ns),
            realm: SharedModel::new(realm),
            gpt,
            ram,
            ns_pool,
            realm_pool,
        }
    }

    /// The Non-secure programming interface (Page 0 at 0, Page 1 at `0x10000`).
    pub fn ns(&self) -> &SharedModel {
        &self.ns
    }

    /// The Realm programming interface (Realm Page 0 at 0, Realm Page 1 at `0x10000`, i.e.
    /// offsets from `O_REALM`).
    pub fn realm(&self) -> &SharedModel {
        &self.realm
    }

    /// The granule protection table and its Root registers.
    pub fn gpt(&self) -> &Gpt {
        &self.gpt
    }

    /// The arena backing RAM.
    pub fn ram(&self) -> &HostRam {
        &self.ram
    }

    /// The Non-secure DMA pool `(base, size)`.
    pub fn ns_pool(&self) -> (u64, u64) {
        self.ns_pool
    }

    /// The Realm DMA pool `(base, size)`.
    pub fn realm_pool(&self) -> (u64, u64) {
        self.realm_pool
    }

    /// A 32-bit read of the Root control page (Root PA space only, §6.2.6).
    pub fn root_read32(&self, offset: u64) -> u32 {
        let v = self.gpt.root_read(offset & !7);
        (if offset & 4 == 0 { v } else { v >> 32 }) as u32
    }

    /// A 32-bit write of the Root control page.
    pub fn root_write32(&self, offset: u64, value: u32) {
        self.gpt.root_write(offset, u64::from(value));
    }

    /// A 64-bit read of the Root control page.
    pub fn root_read64(&self, offset: u64) -> u64 {
        self.gpt.root_read(offset)
    }

    /// A 64-bit write of the Root control page.
    pub fn root_write64(&self, offset: u64, value: u64) {
        self.gpt.root_write(offset, value);
    }

    /// A 32-bit read of the SMMU register frame by an access in `pas` (§6.2.7): the Realm pages
    /// answer Realm and Root accesses only, and are RAZ/WI to any other; Page 0/1 answer all.
    pub fn read32(&self, pas: Pas, offset: u64) -> u32 {
        match Self::realm_offset(offset) {
            Some(o) if matches!(pas, Pas::Realm | Pas::Root) => self.realm.read32(o as usize),
            Some(_) => self.ns.read32(offset as usize),
            None => self.ns.read32(offset as usize),
        }
    }

    /// A 32-bit write of the SMMU register frame by an access in `pas` (see [`Self::read32`]).
    pub fn write32(&self, pas: Pas, offset: u64, value: u32) {
        match Self::realm_offset(offset) {
            Some(o) if matches!(pas, Pas::Realm | Pas::Root) => {
                self.realm.write32(o as usize, value);
            }
            _ => self.ns.write32(offset as usize, value),
        }
    }

    fn realm_offset(offset: u64) -> Option<u64> {
        (O_REALM..O_REALM + REALM_PAGES_BYTES)
            .contains(&offset)
            .then(|| offset - O_REALM)
    }

    /// Non-secure register accesses that hit the Realm pages (each RAZ/WI).
    pub fn ns_realm_page_hits(&self) -> u64 {
        self.ns
            .with(|m| m.rme.as_ref().map_or(0, |p| p.realm_page_hits))
    }

    /// One client transaction with its `SEC_SID`: Non-secure streams use the Non-secure stream
    /// table, Realm streams the Realm one (§3.10.1); the output address is checked in the
    /// stream's PA space (§3.25.1). Records the outcome in that interface's log.
    pub fn dma(&self, sec_sid: SecSid, t: Transaction) -> TxnResult {
        let r = match sec_sid {
            SecSid::NonSecure => self.ns.with(|m| m.dma(t)),
            SecSid::Realm => self.realm.with(|m| m.dma(t)),
        };
        self.gpt.flush_unclaimed();
        r
    }

    /// As [`RmeModel::dma`], moving the data: a write stores bytes derived from the address,
    /// a read loads them.
    pub fn dma_data(&self, sec_sid: SecSid, t: Transaction) -> TxnResult {
        let model = match sec_sid {
            SecSid::NonSecure => &self.ns,
            SecSid::Realm => &self.realm,
        };
        let r = model.with(|m| {
            let r = m.dma_access(&t, true);
            m.log_freed_reads();
            r
        });
        self.gpt.flush_unclaimed();
        r
    }

    /// Violations of both interfaces.
    pub fn violations(&self) -> Vec<crate::Violation> {
        let mut v = self.ns.with(|m| m.violations().to_vec());
        v.extend(self.realm.with(|m| m.violations().to_vec()));
        v
    }
}

/// The TDISP states of a device interface (PCIe TDISP; §2.7 and the RME DA flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdispState {
    /// Configuration may change; no Realm (T = 1) requests.
    ConfigUnlocked,
    /// Configuration locked, being attested; no Realm requests yet.
    ConfigLocked,
    /// Accepted by the TVM and started: Realm requests allowed.
    Run,
    /// A configuration change or fault while locked: no Realm requests until unlocked.
    Error,
}

/// The nonces a TDISP device interface's attestation is bound to: each LOCK,
/// GET_MEASUREMENT and GET_INTERFACE_REPORT refreshes its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TdispNonces {
    /// Refreshed by LOCK_INTERFACE.
    pub lock: u64,
    /// Refreshed by GET_MEASUREMENTS.
    pub measurement: u64,
    /// Refreshed by GET_DEVICE_INTERFACE_REPORT.
    pub report: u64,
}

/// What a TDISP device did with a private (Realm) DMA request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdispDma {
    /// Not in RUN: the interface issues no T = 1 request.
    NotIssued(TdispState),
    /// Issued with SEC_SID Realm; the SMMU's answer.
    Issued(TxnResult),
}

/// A PCIe device interface speaking TDISP: it issues Realm-state (T = 1) requests only in RUN.
#[derive(Clone, Debug)]
pub struct TdispDevice {
    sid: u32,
    state: TdispState,
    nonces: TdispNonces,
    next_nonce: u64,
}

impl TdispDevice {
    /// A device interface with StreamID `sid` in CONFIG_UNLOCKED; `seed` makes its nonces.
    pub fn new(sid: u32, seed: u64) -> Self {
        Self {
            sid,
            state: TdispState::ConfigUnlocked,
            nonces: TdispNonces::default(),
            next_nonce: crate::util::splitmix64(seed) | 1,
        }
    }

    fn fresh(&mut self) -> u64 {
        self.next_nonce = crate::util::splitmix64(self.next_nonce) | 1;
        self.next_nonce
    }

    /// The StreamID.
    pub fn sid(&self) -> u32 {
        self.sid
    }

    /// The current TDISP state (what GET_DEVICE_INTERFACE_STATE reports).
    pub fn state(&self) -> TdispState {
        self.state
    }

    /// The current nonces.
    pub fn nonces(&self) -> TdispNonces {
        self.nonces
    }

    /// LOCK_INTERFACE: CONFIG_UNLOCKED → CONFIG_LOCKED with a fresh lock nonce; the other two
    /// are void until measured and reported again. Refused (no change) in any other state.
    pub fn lock(&mut self) -> Result<u64, TdispState> {
        if self.state != TdispState::ConfigUnlocked {
            return Err(self.state);
        }
        self.state = TdispState::ConfigLocked;
        self.nonces = TdispNonces {
            lock: self.fresh(),
            measurement: 0,
            report: 0,
        };
        Ok(self.nonces.lock)
    }

    /// GET_MEASUREMENTS: a fresh measurement nonce (any state but CONFIG_UNLOCKED).
    pub fn get_measurement(&mut self) -> Result<u64, TdispState> {
        if self.state == TdispState::ConfigUnlocked {
            return Err(self.state);
        }
        self.nonces.measurement = self.fresh();
        Ok(self.nonces.measurement)
    }

    /// GET_DEVICE_INTERFACE_REPORT: a fresh report nonce (any state but CONFIG_UNLOCKED).
    pub fn get_report(&mut self) -> Result<u64, TdispState> {
        if self.state == TdispState::ConfigUnlocked {
            return Err(self.state);
        }
        self.nonces.report = self.fresh();
        Ok(self.nonces.report)
    }

    /// START_INTERFACE: CONFIG_LOCKED → RUN.
    pub fn start(&mut self) -> Result<(), TdispState> {
        if self.state != TdispState::ConfigLocked {
            return Err(self.state);
        }
        self.state = TdispState::Run;
        Ok(())
    }

    /// STOP_INTERFACE: any state → CONFIG_UNLOCKED; every nonce is void.
    pub fn stop(&mut self) {
        self.state = TdispState::ConfigUnlocked;
        self.nonces = TdispNonces::default();
    }

    /// A configuration change while locked or running: → ERROR.
    pub fn fault(&mut self) {
        if self.state != TdispState::ConfigUnlocked {
            self.state = TdispState::Error;
        }
    }

    /// A private DMA request: issued as a Realm (T = 1) transaction only in RUN.
    pub fn private_dma(&self, smmu: &RmeModel, mut t: Transaction) -> TdispDma {
        if self.state != TdispState::Run {
            return TdispDma::NotIssued(self.state);
        }
        t.sid = self.sid;
        TdispDma::Issued(smmu.dma_data(SecSid::Realm, t))
    }
}

//! The model's state and its top-level API: configuration, time and acknowledgements, the
//! violation log, event and PRI queue writes, CPU memory access, masters and restart. The
//! register file is in `regs`, command execution in `cmdq`, translation in `xlate`.

use crate::cache::Caches;
use crate::cache::{Atc, Micro, Tracked};
use crate::cache::{CachePolicy, PowerOn};
use crate::fields::{reg, Field};
use crate::host::HostRam;
use crate::master::{Master, MasterSpec, Outcome};
use crate::mem::{MemError, Memory, Region, PAGE};
use crate::profile::Profile;
use crate::txn::Event;
use crate::util::Rng;
use std::collections::BTreeMap;
use std::fmt;

/// When commands are consumed (SPEC M2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdMode {
    /// Inside the register write that makes work available (CMDQ_PROD, CR0 ack, GERRORN ack).
    Sync,
    /// Only on [`Model::step`], at most `per_step` commands per step: CONS lags PROD.
    Step {
        /// Commands consumed per `step()`.
        per_step: u32,
    },
}

/// Which CONSTRAINED UNPREDICTABLE option the model applies after logging a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CuPolicy {
    /// The SMMUv3.2+ choice where the spec names one: the write is ignored (default).
    Ignore,
    /// The permissive choice QEMU makes: the register takes the value.
    Accept,
}

/// The fetch-between-stores hook (S8, S9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornFetch {
    /// No checking.
    Off,
    /// Every 64-bit store into a live STE/CD is followed by a fetch of the image; an image that
    /// behaves like neither the old nor the new entry is logged as [`ViolationKind::TornStructure`].
    Check,
    /// As `Check`, and the fetched image is also inserted into the config cache when the entry is
    /// not cached (a real SMMU may do that at any time, §3.21.3).
    CheckAndCache,
}

/// Everything a model instance is built from. `ModelConfig::default()` is a strict QEMU-virt-like
/// SMMU with ack latency 2 and synchronous command consumption.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// ID registers.
    pub profile: Profile,
    /// Seed for every random choice (jitter, eviction, random masters, stale contents).
    pub seed: u64,
    /// Register accesses (or `step()` calls) before CR0ACK, IRQ_CTRLACK and GBPA.Update reflect a
    /// write (R5, R14, R16). 0 = immediate.
    pub ack_latency: u32,
    /// Extra random latency per field, `0..=ack_jitter`.
    pub ack_jitter: u32,
    /// Command consumption mode.
    pub cmd_mode: CmdMode,
    /// Cache behaviour.
    pub cache: CachePolicy,
    /// Base of RAM.
    pub ram_base: u64,
    /// Size of RAM (address space given to the model; backed lazily).
    pub ram_size: u64,
    /// Maximum bytes of RAM actually backed (writes beyond give [`MemError::LimitExceeded`]).
    /// Does not apply to a [`host_ram`](Self::host_ram) arena.
    pub mem_limit: u64,
    /// Back RAM with a host arena instead of the sparse page map: RAM is then
    /// `[ram_base, ram_base + host_ram.len_bytes())` (`ram_size` is replaced by the arena's
    /// length in [`Model::config`]), fully backed, and shared with whoever holds a clone of
    /// the handle, so a driver can write DMA memory through raw pointers. Default `None`.
    pub host_ram: Option<HostRam>,
    /// Region `alloc_pages` hands out, `(base, size)`; `None` = all of RAM.
    pub dma_pool: Option<(u64, u64)>,
    /// CU option applied after a logged violation.
    pub cu_policy: CuPolicy,
    /// Page-0 aliases of EVENTQ/PRIQ PROD/CONS (R3). Default false: RAZ/WI plus a violation.
    pub page0_alias: bool,
    /// A CMDQ_CONS write with CMDQEN = 0 takes the ERR field (Q12). Default false.
    pub cons_err_write: bool,
    /// The torn-fetch hook.
    pub torn_fetch: TornFetch,
    /// Check every mixture of the values each 64-bit word of a live STE/CD took between two
    /// covering CFGIs (the SMMU may read the words in any order, §3.21.3), not only the images
    /// between stores. Default true.
    pub torn_mixes: bool,
    /// The SMMU's structure fetches are 128-bit single-copy atomic (LSE2-like) instead of 64-bit
    /// (S8). Default false.
    pub fetch_atomic_128: bool,
    /// The memory attribute the SMMU's own accesses use; reads of an encrypted region with the
    /// other attribute return garbage (M5). Default false (plain).
    pub smmu_encrypted_attr: bool,
    /// DMA-master transactions run by each `step()`.
    pub masters_per_step: u32,
    /// DMA-master transactions run after each driver 64-bit store (`write_u64`).
    pub masters_per_store: u32,
    /// Maximum violations kept (older ones are counted, not stored).
    pub max_violations: usize,
    /// `GBPA` is not implemented, as in QEMU 7.2's SMMUv3: it reads as 0 and writes are
    /// dropped (no handshake, no violation); while `SMMUEN` is 0 transactions bypass with the
    /// reset attributes. Default false.
    pub gbpa_ignored: bool,
    /// Keep the CPU's view of memory apart from the point of coherency for a non-coherent
    /// SMMU (SPEC K17): when set and the profile's IDR0.COHACC is 0, the SMMU's reads of
    /// memory [`Model::alloc_pages`] handed out (structures, queues, tables, DMA) see it as the
    /// last [`Model::clean_dcache`] of each 64-byte line left it, so a CPU store the driver
    /// did not clean is invisible. SMMU and device writes reach both views. Default false.
    pub cpu_cache: bool,
}

impl ModelConfig {
    /// The setting driver tests should prefer (model-conformance.md §2.0): acks take 3–6
    /// accesses, commands are consumed 4 per `step()`, and the caches power on holding stale
    /// bypass STEs for SIDs 0..64 and bogus TLB entries for ASIDs 0..16 at a few IOVAs, so a
    /// driver that skips CFGI_ALL / TLBI_NSNH_ALL before enabling, forgets to poll an ack or
    /// relies on synchronous consumption fails visibly.
    pub fn hostile(profile: Profile, seed: u64) -> Self {
        Self {
            profile,
            seed,
            ack_latency: 3,
            ack_jitter: 3,
            cmd_mode: CmdMode::Step { per_step: 4 },
            cache: CachePolicy {
                power_on: PowerOn::Stale {
                    sids: (0..64).collect(),
                    asids: (0..16).collect(),
                    iovas: vec![0, 0x1000, 0x10_0000, 0x1_0000_0000],
                },
                ..CachePolicy::default()
            },
            ..Self::default()
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            profile: Profile::qemu_virt(),
            seed: 0x5EED,
            ack_latency: 2,
            ack_jitter: 0,
            cmd_mode: CmdMode::Sync,
            cache: CachePolicy::default(),
            ram_base: 0x4000_0000,
            ram_size: 1 << 30,
            mem_limit: 256 << 20,
            host_ram: None,
            dma_pool: None,
            cu_policy: CuPolicy::Ignore,
            page0_alias: false,
            cons_err_write: false,
            torn_fetch: TornFetch::Check,
            torn_mixes: true,
            fetch_atomic_128: false,
            smmu_encrypted_attr: false,
            masters_per_step: 0,
            masters_per_store: 0,
            max_violations: 4096,
            gbpa_ignored: false,
            cpu_cache: false,
        }
    }
}

/// What software did wrong (SPEC M3; the VIOL rows of model-conformance.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationKind {
    /// R1: access of a size or alignment the spec does not guarantee.
    BadAccess,
    /// R2: write to a read-only register (ID registers, ACKs, GERROR, STATUSR).
    ReadOnlyWrite,
    /// R3: access to a page-0 alias of a page-1 register with the alias disabled.
    Page0Alias,
    /// R6: a CR0 / IRQ_CTRL field changed again before its Update completed.
    ChangeBeforeAck,
    /// R7, R8, R9, R17, X2: write to a register (field) that is read-only while its enable or ack is 1.
    GuardedWrite,
    /// R10: queue BASE written after its PROD/CONS in one initialisation.
    QueueInitOrder,
    /// R11 (lint): queue or stream-table base not aligned as the hardware will align it.
    MisalignedBase,
    /// R14: GBPA written without Update = 1.
    GbpaWithoutUpdate,
    /// R14: GBPA written while a previous Update is still 1.
    GbpaWhileUpdate,
    /// R18: GERRORN toggles a bit whose error is not active.
    GerrornInactiveToggle,
    /// Q2: PROD/CONS pair inconsistent (more entries than the queue holds).
    QueueInconsistent,
    /// Q3: CMDQ_PROD moved backwards while no CMDQ_ERR is active.
    CmdqProdBackwards,
    /// Q5: memory released by an invalidation was written before a CMD_SYNC completed.
    RelianceBeforeSync,
    /// Q17: EVENTQ_CONS / PRIQ_CONS moved inconsistently.
    QueueConsBad,
    /// S9 / X5: a fetched STE/CD image behaves like neither the old nor the new entry.
    TornStructure,
    /// M3: the SMMU read memory the platform had freed (a stream table, CD table, queue or
    /// translation table given back while still in use): `offset` is the address read.
    /// Whatever the allocator puts there next becomes live configuration or translation.
    FreedMemoryRead,
}

/// One entry of the violation log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What kind of violation.
    pub kind: ViolationKind,
    /// Register or structure name.
    pub what: &'static str,
    /// Register offset, or structure physical address.
    pub offset: u64,
    /// Old value (register value, or first differing 64-bit word of the old image).
    pub old: u64,
    /// New / attempted value.
    pub new: u64,
    /// CR0 at the time.
    pub cr0: u32,
    /// CR0ACK at the time.
    pub cr0ack: u32,
    /// Model time (register accesses plus steps).
    pub time: u64,
}

/// What happened to a generated event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Written to the event queue.
    Written,
    /// Dropped: EVENTQEN (ack) = 0 (Q16).
    DroppedDisabled,
    /// Dropped: queue full; overflow flagged if OVFLG == OVACKFLG (Q14).
    Overflow,
    /// Dropped: EVENTQ_ABT_ERR active (Q13).
    AbortActive,
    /// The write aborted: EVENTQ_ABT_ERR raised (Q13).
    WriteAbort,
}

/// Counters of signals the model produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signals {
    /// EVTQ interrupt edges (empty → non-empty with EVENTQ_IRQEN ack, Q15).
    pub evtq_irq: u64,
    /// PRIQ interrupt edges.
    pub priq_irq: u64,
    /// GERROR interrupt edges.
    pub gerror_irq: u64,
    /// CMD_SYNC wired-interrupt pulses (CS = SIG_IRQ without MSI).
    pub sync_irq: u64,
    /// SEV events (CS = SIG_SEV with IDR0.SEV).
    pub sev: u64,
    /// MSI writes performed: (address, data).
    pub msi_writes: Vec<(u64, u32)>,
    /// CMD_SYNCs completed.
    pub syncs: u64,
    /// Commands consumed.
    pub commands: u64,
    /// ATC_INV commands consumed: (SID, SSID if SSV, address, size).
    pub atc_inv: Vec<(u32, Option<u32>, u64, u8)>,
    /// PRI_RESP commands consumed: (SID, PRGIndex).
    pub pri_resp: Vec<(u32, u32)>,
}

/// A model error for API misuse (register access never fails; see the violation log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelError {
    /// Physical memory error.
    Mem(MemError),
    /// No such DMA master.
    NoSuchMaster(usize),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mem(e) => write!(f, "memory: {e}"),
            Self::NoSuchMaster(i) => write!(f, "no DMA master {i}"),
        }
    }
}

impl std::error::Error for ModelError {}

impl From<MemError> for ModelError {
    fn from(e: MemError) -> Self {
        Self::Mem(e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckReg {
    Cr0,
    IrqCtrl,
    Gbpa,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub(crate) reg: AckReg,
    pub(crate) mask: u32,
    pub(crate) value: u32,
    pub(crate) due: u64,
}

/// A circular queue's registers (§3.5, §6.3.26–§6.3.29).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Queue {
    pub(crate) base: u64,
    pub(crate) prod: u32,
    pub(crate) cons: u32,
    pub(crate) max_log2: u32,
    pub(crate) entry: u64,
    /// PROD or CONS written since the last BASE write / enable (R10).
    pub(crate) idx_written: bool,
    /// Pair found inconsistent (Q2): nothing consumed until fixed.
    pub(crate) inconsistent: bool,
}

impl Queue {
    pub(crate) fn log2(&self) -> u32 {
        (reg::Q_BASE_LOG2SIZE.of(self.base) as u32).min(self.max_log2)
    }
    pub(crate) fn base_addr(&self) -> u64 {
        let a = reg::Q_BASE_ADDR.of(self.base) << 5;
        let bytes = (self.entry << self.log2()).max(32);
        a & !(bytes - 1)
    }
    pub(crate) fn wm(&self) -> u32 {
        (2u32 << self.log2()) - 1
    }
    pub(crate) fn idx(&self, v: u32) -> u32 {
        v & ((1u32 << self.log2()) - 1)
    }
    pub(crate) fn count(&self, p: u32, c: u32) -> u32 {
        (p & self.wm()).wrapping_sub(c & self.wm()) & self.wm()
    }
    pub(crate) fn consistent(&self, p: u32, c: u32) -> bool {
        self.count(p, c) <= (1u32 << self.log2())
    }
    pub(crate) fn empty(&self) -> bool {
        self.count(self.prod, self.cons) == 0
    }
    pub(crate) fn full(&self) -> bool {
        self.count(self.prod, self.cons) == (1u32 << self.log2())
    }
    pub(crate) fn inc(&self, v: u32) -> u32 {
        (v & !self.wm()) | ((v & self.wm()).wrapping_add(1) & self.wm())
    }
    pub(crate) fn slot(&self, v: u32) -> u64 {
        self.base_addr() + u64::from(self.idx(v)) * self.entry
    }
}

/// The strict SMMUv3 model. See the crate documentation for how a driver test wires it.
#[derive(Debug)]
pub struct Model {
    pub(crate) cfg: ModelConfig,
    pub(crate) prof: Profile,
    pub(crate) mem: Memory,
    pub(crate) rng: Rng,
    pub(crate) time: u64,
    pub(crate) cr0: u32,
    pub(crate) cr0ack: u32,
    pub(crate) cr1: u32,
    pub(crate) cr2: u32,
    pub(crate) gbpa: u32,
    pub(crate) irq_ctrl: u32,
    pub(crate) irq_ctrlack: u32,
    pub(crate) gerror: u32,
    pub(crate) gerrorn: u32,
    /// IRQ_CFG0/1/2 of GERROR, EVENTQ, PRIQ.
    pub(crate) irq_cfg: [[u64; 3]; 3],
    pub(crate) strtab_base: u64,
    pub(crate) strtab_cfg: u32,
    pub(crate) cmdq: Queue,
    pub(crate) evtq: Queue,
    pub(crate) priq: Queue,
    pub(crate) pending: Vec<Pending>,
    pub(crate) violations: Vec<Violation>,
    /// SMMU reads of freed memory seen by `fetch64` (which reads through `&self`), moved to
    /// the violation log at the end of the operation that made them.
    pub(crate) freed_reads: core::cell::RefCell<Vec<u64>>,
    pub(crate) violations_dropped: u64,
    pub(crate) caches: Caches,
    pub(crate) signals: Signals,
    pub(crate) events: Vec<(Event, Delivery)>,
    pub(crate) tracked: BTreeMap<u64, Tracked>,
    pub(crate) unsynced: crate::util::PageSet,
    pub(crate) inject_atc_timeout: bool,
    pub(crate) atc_timeout_pending: bool,
    pub(crate) masters: Vec<Master>,
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) next_master: usize,
    pub(crate) epoch: u32,
    pub(crate) pool_next: u64,
    pub(crate) pool_end: u64,
    pub(crate) in_hook: bool,
    pub(crate) micro: Vec<Micro>,
    /// The current translation used only cached state (eligible for the micro-TLB).
    pub(crate) pure: bool,
    pub(crate) last_perm: u16,
    /// The ATCs of the ATS endpoints (outside the SMMU: a reset does not clear them).
    pub(crate) atc: Atc,
    /// Event records are not generated (ATS Translation Requests, §7.3.6; Translated
    /// transactions' configuration errors without REC_CFG_ATS, §3.9.1.3).
    pub(crate) quiet: bool,
    /// Set when the model is one programming interface of an [`crate::rme::RmeModel`].
    pub(crate) rme: Option<crate::rme::RmePort>,
}

impl Model {
    /// Builds a model in its reset state.
    pub fn new(mut cfg: ModelConfig) -> Self {
        let prof = cfg.profile.clone();
        let mem = match &cfg.host_ram {
            Some(h) => {
                let mem = Memory::with_host(cfg.ram_base, h.clone());
                cfg.ram_size = h.len_bytes().min(u64::MAX - cfg.ram_base);
                mem
            }
            None => Memory::new(&[(cfg.ram_base, cfg.ram_size)], cfg.mem_limit),
        };
        let mut mem = mem;
        if cfg.cpu_cache && prof.idr0(reg::IDR0_COHACC) == 0 {
            mem.poc = Some(crate::util::FastMap::default());
        }
        let (pool_base, pool_size) = cfg.dma_pool.unwrap_or((cfg.ram_base, cfg.ram_size));
        let q = |log2: u64, entry: u64| Queue {
            max_log2: (log2 as u32).min(19),
            entry,
            ..Queue::default()
        };
        let cmdq = q(prof.idr1(reg::IDR1_CMDQS), 16);
        let evtq = q(prof.idr1(reg::IDR1_EVTQS), 32);
        let priq = q(prof.idr1(reg::IDR1_PRIQS), 16);
        let caches = Caches::new(&cfg.cache);
        let mut m = Self {
            rng: Rng::new(cfg.seed),
            prof,
            mem,
            time: 0,
            cr0: 0,
            cr0ack: 0,
            cr1: 0,
            cr2: 0,
            gbpa: 0x1000,
            irq_ctrl: 0,
            irq_ctrlack: 0,
            gerror: 0,
            gerrorn: 0,
            irq_cfg: [[0; 3]; 3],
            strtab_base: 0,
            strtab_cfg: 0,
            cmdq,
            evtq,
            priq,
            pending: Vec::new(),
            violations: Vec::new(),
            violations_dropped: 0,
            freed_reads: core::cell::RefCell::new(Vec::new()),
            caches,
            signals: Signals::default(),
            events: Vec::new(),
            tracked: BTreeMap::new(),
            unsynced: crate::util::PageSet::default(),
            inject_atc_timeout: false,
            atc_timeout_pending: false,
            masters: Vec::new(),
            outcomes: Vec::new(),
            next_master: 0,
            epoch: 0,
            pool_next: pool_base,
            pool_end: pool_base.saturating_add(pool_size),
            in_hook: false,
            micro: vec![Micro::default(); 64],
            pure: false,
            last_perm: 0,
            atc: Atc::default(),
            quiet: false,
            rme: None,
            cfg,
        };
        m.seed_power_on();
        m
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The ID profile.
    pub fn profile(&self) -> &Profile {
        &self.prof
    }

    /// Model time: register accesses plus `step()` calls.
    pub fn time(&self) -> u64 {
        self.time
    }

    // ---------------------------------------------------------------- time and acks

    pub(crate) fn tick(&mut self) {
        self.time += 1;
        if !self.pending.is_empty() {
            self.apply_due();
        }
    }

    pub(crate) fn latency(&mut self) -> u64 {
        u64::from(self.cfg.ack_latency) + self.rng.below(u64::from(self.cfg.ack_jitter) + 1)
    }

    pub(crate) fn apply_due(&mut self) {
        let now = self.time;
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].due <= now {
                let p = self.pending.remove(i);
                self.apply_pending(p);
            } else {
                i += 1;
            }
        }
    }

    fn apply_pending(&mut self, p: Pending) {
        match p.reg {
            AckReg::Cr0 => {
                let old = self.cr0ack;
                self.cr0ack = (old & !p.mask) | (p.value & p.mask);
                self.on_cr0ack(old);
            }
            AckReg::IrqCtrl => {
                self.irq_ctrlack = (self.irq_ctrlack & !p.mask) | (p.value & p.mask);
            }
            AckReg::Gbpa => {
                self.gbpa = p.value;
            }
        }
    }

    fn on_cr0ack(&mut self, old: u32) {
        let new = self.cr0ack;
        let rising = new & !old;
        if rising & reg::CR0_CMDQEN != 0 {
            self.cmdq.idx_written = false;
            self.check_consistent(0);
            self.kick_cmdq();
        }
        if rising & reg::CR0_EVTQEN != 0 {
            self.evtq.idx_written = false;
        }
        if rising & reg::CR0_PRIQEN != 0 {
            self.priq.idx_written = false;
        }
    }

    /// Consumes commands now if the mode is synchronous.
    pub(crate) fn kick_cmdq(&mut self) {
        if self.cfg.cmd_mode == CmdMode::Sync {
            self.process_cmdq(usize::MAX);
        }
    }

    /// Advances time by one unit: acks may complete, commands are consumed in `Step` mode, and
    /// `masters_per_step` DMA transactions run.
    pub fn step(&mut self) {
        self.tick();
        if let CmdMode::Step { per_step } = self.cfg.cmd_mode {
            self.process_cmdq(per_step.max(1) as usize);
        }
        if self.cfg.masters_per_step > 0 {
            self.run_masters(self.cfg.masters_per_step);
        }
        self.log_freed_reads();
    }

    /// Steps until no acknowledgement is pending and (in `Step` mode) the command queue is idle,
    /// at most `max` steps. Returns the steps taken.
    pub fn settle(&mut self, max: u32) -> u32 {
        for i in 0..max {
            let idle_q = !self.cmdq_can_run();
            if self.pending.is_empty() && idle_q {
                return i;
            }
            self.step();
        }
        max
    }

    // ---------------------------------------------------------------- violations

    pub(crate) fn violate(
        &mut self,
        kind: ViolationKind,
        what: &'static str,
        offset: u64,
        old: u64,
        new: u64,
    ) {
        if self.violations.len() >= self.cfg.max_violations {
            self.violations_dropped += 1;
            return;
        }
        self.violations.push(Violation {
            kind,
            what,
            offset,
            old,
            new,
            cr0: self.cr0,
            cr0ack: self.cr0ack,
            time: self.time,
        });
    }

    /// Records that the platform freed `[pa, pa + len)`: from now on an SMMU read of it (a
    /// structure fetch or a table walk) is a [`ViolationKind::FreedMemoryRead`]. The model's
    /// page pool never hands a page out twice, so a freed range stays freed.
    ///
    /// The torn-fetch bookkeeping of structures in the range ends with it: it is the model's
    /// own record, not an SMMU fetch, and re-reading it at the next CFGI of the same StreamID
    /// (a level-2 table freed, another allocated for the same StreamIDs) would log a read the
    /// SMMU never made. A real fetch from the range is still caught by `fetch64`.
    pub fn mark_freed(&mut self, pa: u64, len: u64) {
        self.mem.mark_freed(pa, len);
        let end = pa.saturating_add(len);
        self.tracked
            .retain(|&at, _| at.saturating_add(64) <= pa || at >= end);
    }

    /// Moves the freed-memory reads `fetch64` saw into the violation log.
    pub(crate) fn log_freed_reads(&mut self) {
        let reads = core::mem::take(self.freed_reads.get_mut());
        for pa in reads {
            self.violate(
                ViolationKind::FreedMemoryRead,
                "SMMU read of memory the platform freed",
                pa,
                0,
                0,
            );
        }
    }

    /// The violation log (SPEC M3). Driver tests assert it is empty.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Clears the violation log.
    pub fn clear_violations(&mut self) {
        self.violations.clear();
        self.violations_dropped = 0;
    }

    /// Whether a violation of `kind` was logged.
    pub fn has_violation(&self, kind: ViolationKind) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }

    // ---------------------------------------------------------------- events

    pub(crate) fn emit_event(&mut self, e: Event) -> Delivery {
        if self.quiet {
            return Delivery::DroppedDisabled;
        }
        let d = self.write_evtq(e);
        if self.events.len() < 1 << 16 {
            self.events.push((e, d));
        }
        d
    }

    fn write_evtq(&mut self, e: Event) -> Delivery {
        if self.cr0ack & reg::CR0_EVTQEN == 0 {
            return Delivery::DroppedDisabled;
        }
        if self.gerror_active(reg::GERROR_EVTQ_ABT_ERR) {
            return Delivery::AbortActive;
        }
        let q = self.evtq;
        if q.full() || !q.consistent(q.prod, q.cons) {
            if (q.prod ^ q.cons) & reg::Q_OVF == 0 {
                self.evtq.prod ^= reg::Q_OVF;
            }
            return Delivery::Overflow;
        }
        let mut bytes = [0u8; 32];
        for (i, w) in e.raw.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        let addr = q.slot(q.prod);
        if self.mem.dev_write(addr, &bytes).is_err() {
            self.activate_gerror(reg::GERROR_EVTQ_ABT_ERR);
            return Delivery::WriteAbort;
        }
        let was_empty = q.empty();
        self.evtq.prod = q.inc(q.prod);
        if was_empty && self.irq_ctrlack & reg::IRQ_EVTQ != 0 {
            self.signals.evtq_irq += 1;
            self.msi(1, reg::GERROR_MSI_EVTQ_ABT_ERR);
        }
        Delivery::Written
    }

    fn msi(&mut self, i: usize, abt: u32) {
        let addr = self.irq_cfg[i][0] & reg::IRQ_CFG0_ADDR.mask();
        if self.prof.msi() && addr != 0 {
            let data = self.irq_cfg[i][1] as u32;
            if self.mem.dev_write(addr, &data.to_le_bytes()).is_ok() {
                self.signals.msi_writes.push((addr, data));
            } else {
                self.activate_gerror(abt);
            }
        }
    }

    /// Issues a PRI page request (ATS Page Request) from a device; it is written to the PRI queue
    /// if the profile has PRI and PRIQEN is acknowledged. Returns whether it was written.
    pub fn page_request(
        &mut self,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        write: bool,
        last: bool,
        prg_index: u32,
    ) -> bool {
        use crate::fields::priq;
        if !self.prof.pri()
            || self.cr0ack & reg::CR0_PRIQEN == 0
            || self.gerror_active(reg::GERROR_PRIQ_ABT_ERR)
        {
            return false;
        }
        let q = self.priq;
        if q.full() || !q.consistent(q.prod, q.cons) {
            if (q.prod ^ q.cons) & reg::Q_OVF == 0 {
                self.priq.prod ^= reg::Q_OVF;
            }
            return false;
        }
        let mut w = [0u64; 2];
        priq::SID.set(&mut w, u64::from(sid));
        if let Some(s) = ssid {
            priq::SSID.set(&mut w, u64::from(s));
            priq::SSV.set(&mut w, 1);
        }
        priq::READ.set(&mut w, u64::from(!write));
        priq::WRITE.set(&mut w, u64::from(write));
        priq::LAST.set(&mut w, u64::from(last));
        priq::PRG_IDX.set(&mut w, u64::from(prg_index));
        priq::ADDR.set(&mut w, addr >> 12);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&w[0].to_le_bytes());
        b[8..].copy_from_slice(&w[1].to_le_bytes());
        if self.mem.dev_write(q.slot(q.prod), &b).is_err() {
            self.activate_gerror(reg::GERROR_PRIQ_ABT_ERR);
            return false;
        }
        let was_empty = q.empty();
        self.priq.prod = q.inc(q.prod);
        if was_empty && self.irq_ctrlack & reg::IRQ_PRIQ != 0 {
            self.signals.priq_irq += 1;
            self.msi(2, reg::GERROR_MSI_PRIQ_ABT_ERR);
        }
        true
    }

    /// Every event the model generated, with what happened to it.
    pub fn events(&self) -> &[(Event, Delivery)] {
        &self.events
    }

    /// Signal counters (interrupt edges, SEV, MSI writes, syncs).
    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    // ---------------------------------------------------------------- memory

    /// Reads physical memory as the CPU sees it (plain attribute).
    pub fn mem_read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(pa, buf)
    }

    /// Reads physical memory with an explicit attribute: reading an encrypted region with
    /// `encrypted = false` returns the deterministic garbage stream (M5).
    pub fn mem_read_attr(&self, pa: u64, buf: &mut [u8], encrypted: bool) -> Result<(), MemError> {
        self.mem.read(pa, buf)?;
        self.mem.apply_garbage(pa, buf, encrypted);
        Ok(())
    }

    /// Reads a little-endian u64 (CPU view).
    pub fn read_u64(&self, pa: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.mem.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes physical memory as the CPU. The bytes are stored as a sequence of 64-bit stores in
    /// ascending order, each of which fires the torn-fetch hook (a memcpy is not atomic).
    pub fn mem_write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        if !self.mem.is_ram(pa, data.len() as u64) {
            return Err(MemError::NotRam { pa });
        }
        let mut off = 0usize;
        while off < data.len() {
            let a = pa + off as u64;
            let n = (8 - (a & 7) as usize).min(data.len() - off);
            self.mem.write(a, &data[off..off + n])?;
            self.after_store(a);
            off += n;
        }
        Ok(())
    }

    /// One 64-bit CPU store (single-copy atomic). This is the path on which the torn-fetch hook
    /// fires: a driver's memory interface should route every 64-bit store of STEs/CDs here.
    pub fn write_u64(&mut self, pa: u64, value: u64) -> Result<(), MemError> {
        self.mem.write(pa, &value.to_le_bytes())?;
        self.after_store(pa);
        Ok(())
    }

    /// One 128-bit single-copy-atomic CPU store (an LSE2 `STP`): both halves land before the
    /// torn-fetch hook fires, so the SMMU can never observe one without the other.
    pub fn write_u128(&mut self, pa: u64, lo: u64, hi: u64) -> Result<(), MemError> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&lo.to_le_bytes());
        b[8..].copy_from_slice(&hi.to_le_bytes());
        self.mem.write(pa, &b)?;
        self.after_store(pa);
        Ok(())
    }

    fn after_store(&mut self, pa: u64) {
        if self.in_hook {
            return;
        }
        self.in_hook = true;
        if !self.unsynced.is_empty() {
            if let Some(what) = self.unsynced.get(&(pa & !(PAGE - 1))).copied() {
                self.violate(ViolationKind::RelianceBeforeSync, what, pa, 0, 0);
            }
        }
        if self.cfg.torn_fetch != TornFetch::Off {
            self.torn_hook(pa);
        }
        if self.cfg.masters_per_store > 0 {
            self.run_masters(self.cfg.masters_per_store);
        }
        self.in_hook = false;
    }

    /// Allocates `n` zeroed 4 KiB pages from the DMA pool, aligned to `align` bytes (a power of
    /// two, at least 4096). Returns the physical address (the model's "virtual" address is the
    /// same: use `mem_read`/`mem_write`/`write_u64` on it). The pool never reuses memory; pages
    /// in a [`ModelConfig::host_ram`] arena are zeroed when handed out, sparse pages read as
    /// zero until something writes them.
    pub fn alloc_pages(&mut self, n: u64, align: u64) -> Result<u64, MemError> {
        let align = align.max(PAGE);
        if n == 0 || !align.is_power_of_two() {
            return Err(MemError::BadArgument);
        }
        let bytes = n.checked_mul(PAGE).ok_or(MemError::BadArgument)?;
        let start = self
            .pool_next
            .checked_add(align - 1)
            .ok_or(MemError::BadArgument)?
            & !(align - 1);
        let end = start.checked_add(bytes).ok_or(MemError::BadArgument)?;
        if end > self.pool_end {
            return Err(MemError::PoolExhausted { bytes });
        }
        self.pool_next = end;
        self.mem.zero_host(start, bytes);
        self.mem.poc_track(start, bytes);
        Ok(start)
    }

    /// Where the DMA pool's next allocation starts at the earliest.
    pub fn dma_pool_next(&self) -> u64 {
        self.pool_next
    }

    /// Whether the SMMU reads memory as the point of coherency holds it (non-coherent SMMU
    /// with [`ModelConfig::cpu_cache`]).
    pub fn noncoherent(&self) -> bool {
        self.mem.poc.is_some()
    }

    /// The CPU cleans `[pa, pa + len)` to the point of coherency (DC CVAC over the range):
    /// a non-coherent SMMU now sees the CPU's stores there. The torn-fetch check looks at
    /// the live structures the clean touched. No effect on a coherent SMMU.
    pub fn clean_dcache(&mut self, pa: u64, len: u64) {
        if self.mem.poc.is_none() {
            return;
        }
        self.mem.poc_clean(pa, len);
        if self.cfg.torn_fetch != TornFetch::Off && !self.in_hook {
            self.in_hook = true;
            let lo = pa & !63;
            let hi = pa.saturating_add(len);
            let bases: Vec<u64> = self.tracked.range(lo..hi).map(|(k, _)| *k).collect();
            for b in bases {
                self.torn_hook(b);
            }
            self.in_hook = false;
        }
    }

    /// Marks `[pa, pa+len)` encrypted with `key` (M5).
    pub fn mark_encrypted(&mut self, pa: u64, len: u64, key: u64) {
        self.mem.encrypted.push(Region {
            start: pa,
            end: pa.saturating_add(len),
            key,
        });
    }

    /// Makes SMMU/device reads of `[pa, pa+len)` abort (fetch-fault injection).
    pub fn inject_fetch_fault(&mut self, pa: u64, len: u64) {
        self.mem.fetch_faults.push(Region {
            start: pa,
            end: pa.saturating_add(len),
            key: 0,
        });
    }

    /// Makes SMMU/device writes to `[pa, pa+len)` abort (event/PRI queue, MSI).
    pub fn inject_write_fault(&mut self, pa: u64, len: u64) {
        self.mem.write_faults.push(Region {
            start: pa,
            end: pa.saturating_add(len),
            key: 0,
        });
    }

    /// Removes every injected fault.
    pub fn clear_faults(&mut self) {
        self.mem.fetch_faults.clear();
        self.mem.write_faults.clear();
    }

    /// Makes the next CMD_SYNC that follows an ATC_INV fail with CERROR_ATC_INV_SYNC.
    pub fn inject_atc_inv_timeout(&mut self, on: bool) {
        self.inject_atc_timeout = on;
    }

    /// Bytes of RAM currently backed (a [`ModelConfig::host_ram`] arena counts whole).
    pub fn mem_backed(&self) -> u64 {
        self.mem.bytes_backed()
    }

    // ---------------------------------------------------------------- masters and restart

    /// Adds a DMA master; returns its index.
    pub fn add_master(&mut self, spec: MasterSpec) -> usize {
        let seed = self.rng.next_u64();
        self.masters.push(Master::new(spec, seed));
        self.masters.len() - 1
    }

    /// Stops or restarts a master.
    pub fn set_master_running(&mut self, id: usize, running: bool) -> Result<(), ModelError> {
        let m = self
            .masters
            .get_mut(id)
            .ok_or(ModelError::NoSuchMaster(id))?;
        m.running = running;
        Ok(())
    }

    /// Makes a master an ATS endpoint (or an ordinary one again): its transactions then go
    /// through its ATC, Translation Requests and Translated transactions
    /// ([`Model::ats_dma`]).
    pub fn set_master_ats(&mut self, id: usize, ats: bool) -> Result<(), ModelError> {
        let m = self
            .masters
            .get_mut(id)
            .ok_or(ModelError::NoSuchMaster(id))?;
        m.ats = ats;
        Ok(())
    }

    /// Runs `n` transactions, round-robin over the running masters. Each outcome is recorded.
    pub fn run_masters(&mut self, n: u32) {
        let running: Vec<usize> = (0..self.masters.len())
            .filter(|&i| self.masters[i].running)
            .collect();
        if running.is_empty() {
            return;
        }
        for _ in 0..n {
            let id = running[self.next_master % running.len()];
            self.next_master = self.next_master.wrapping_add(1);
            let txn = self.masters[id].next_txn();
            let data = self.masters[id].spec.data;
            let result = if self.masters[id].ats {
                let r = self.ats_access(&txn);
                self.move_data(&txn, r, data);
                r
            } else {
                self.dma_access(&txn, data)
            };
            if self.outcomes.len() < 1 << 20 {
                self.outcomes.push(Outcome {
                    master: Some(id),
                    epoch: self.epoch,
                    txn,
                    result,
                });
            }
        }
    }

    /// Every recorded transaction outcome (masters and [`Model::dma`]).
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// Takes and clears the outcome log.
    pub fn take_outcomes(&mut self) -> Vec<Outcome> {
        std::mem::take(&mut self.outcomes)
    }

    /// A kexec: nothing is reset. Registers, pending acks, caches, queues, GERROR, memory and the
    /// masters are all kept; masters keep running. Later outcomes carry the next epoch number.
    pub fn warm_restart(&mut self) {
        self.epoch += 1;
    }

    /// The number of warm restarts so far (the epoch of new outcomes).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// A cold reset of the SMMU: registers to reset values; caches to their power-on contents
    /// (empty or seeded stale). Memory and masters are kept.
    pub fn reset(&mut self) {
        self.cr0 = 0;
        self.cr0ack = 0;
        self.cr1 = 0;
        self.cr2 = 0;
        self.gbpa = 0x1000;
        self.irq_ctrl = 0;
        self.irq_ctrlack = 0;
        self.gerror = 0;
        self.gerrorn = 0;
        self.irq_cfg = [[0; 3]; 3];
        self.strtab_base = 0;
        self.strtab_cfg = 0;
        for q in [&mut self.cmdq, &mut self.evtq, &mut self.priq] {
            q.base = 0;
            q.prod = 0;
            q.cons = 0;
            q.idx_written = false;
            q.inconsistent = false;
        }
        self.pending.clear();
        self.caches = Caches::new(&self.cfg.cache);
        self.micro.iter_mut().for_each(|e| e.valid = false);
        self.tracked.clear();
        self.unsynced.clear();
        self.seed_power_on();
    }

    pub(crate) fn strtab_addr(&self) -> u64 {
        let addr = reg::STRTAB_BASE_ADDR.of(self.strtab_base) << 6;
        let (linear, log2, split) = self.strtab_geometry();
        let bytes = if linear {
            64u64 << log2
        } else {
            8u64 << log2.saturating_sub(split)
        };
        addr & !(bytes.max(64) - 1)
    }

    /// (linear, effective LOG2SIZE, effective SPLIT) per §6.3.25 (R13).
    pub(crate) fn strtab_geometry(&self) -> (bool, u32, u32) {
        let c = u64::from(self.strtab_cfg);
        let fmt = reg::STRTAB_CFG_FMT.of(c);
        let linear = fmt != 1 || !self.prof.two_level_st();
        let log2 =
            (reg::STRTAB_CFG_LOG2SIZE.of(c) as u32).min(self.prof.idr1(reg::IDR1_SIDSIZE) as u32);
        let split = match reg::STRTAB_CFG_SPLIT.of(c) {
            s @ (6 | 8 | 10) => s as u32,
            _ => 6,
        };
        (linear, log2, split)
    }

    /// Raw register snapshot helpers for tests.
    pub fn cr0ack(&self) -> u32 {
        self.cr0ack
    }

    /// Whether the field `f` of a 32-bit value is set (a convenience for tests).
    pub fn field(v: u64, f: Field) -> u64 {
        f.of(v)
    }
}

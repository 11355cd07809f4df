//! The driver core: [`Smmu`] owns the registers, the queues, the stream table, the ID
//! allocators and the per-master state (SPEC D1–D10).

use core::mem::{ManuallyDrop, MaybeUninit};
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use heapless::Vec;
use smmu_pagetable::{Gather, Iova, PageTable, PhysAddr, Prot, TableAllocator};
use spin::{Mutex, MutexGuard};
use tock_registers::LocalRegisterCopy;

use crate::access::RegisterAccess;
use crate::arch::cmd::Command;
use crate::arch::idr::{Features, StallModel};
use crate::arch::queue::GlobalErrors;
use crate::arch::regs::{offset, CR0, CR1, CR2, GBPA, IRQ_CTRL};
use crate::arch::ste::S1Dss;
use crate::cdtab::{CdPrepared, CdTable};
use crate::cmdq::{CommandBatch, CommandQueue, SyncMode};
use crate::dma::DmaBuf;
use crate::domain::{stage1_cd, stage2_table, table_config, Domain, DomainStage};
use crate::error::{Error, WaitFor};
use crate::evtq::{self, EventReport, GerrorReport, OutputQueue, PriReport, QueueKind};
use crate::hal::Hal;
use crate::ids::IdAllocator;
use crate::inval::{atc_commands, tlbi_commands, InvalCaps, TlbScope};
use crate::policy::{self, ProtectedPolicy, Rewrite, RewriteTarget};
use crate::poll::{poll, PollBudget};
use crate::report::report;
use crate::reset::{OnFailure, ResetPlan, ResetStep};
use crate::strtab::{Prepared, StreamTable};
use crate::table_lock::TableLock;
use crate::writer::make::{self, EntryFeatures, MasterCaps};
use crate::writer::{write_entry, CdRules, EntrySlot, SteRules, WriteReport, ENTRY_QWORDS};

/// Masters one SMMU instance tracks (a fixed bound: the driver has no heap). 32, or 128
/// with the Cargo feature `masters-128`, or 512 with `masters-512` (the largest enabled
/// wins, so features unify across a dependency graph as Cargo expects). Each master slot
/// adds to the size of [`Smmu`]; more than 512 would not fit a [`MasterId`] comfortably
/// and would make the driver larger than a kernel wants in one static.
pub const MAX_MASTERS: usize = if cfg!(feature = "masters-512") {
    512
} else if cfg!(feature = "masters-128") {
    128
} else {
    32
};
/// StreamIDs per master (a PCIe function behind aliasing bridges, a platform device with
/// several IDs): 8, or 16 with the Cargo feature `sids-per-master-16`, or 32 with
/// `sids-per-master-32` (the largest enabled wins). An attach keeps one STE image per
/// StreamID on the stack (64 bytes each) to undo a failed update (SPEC D12).
pub const MAX_SIDS_PER_MASTER: usize = if cfg!(feature = "sids-per-master-32") {
    32
} else if cfg!(feature = "sids-per-master-16") {
    16
} else {
    8
};

// A master's handle is its slot index in a `u16`.
const _: () = assert!(MAX_MASTERS <= u16::MAX as usize);

mod unmap_batch;
pub use unmap_batch::UnmapBatch;

static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(1);

/// Driver settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuConfig {
    /// Bound of every poll.
    pub budget: PollBudget,
    /// Use `CR2.E2H` (stage-1 domains in the EL2-E2H StreamWorld) when the SMMU has EL2.
    pub e2h: bool,
    /// Rules for protected masters (SPEC D9).
    pub policy: ProtectedPolicy,
    /// Without range invalidation: per-page TLBIs allowed before one ASID/VMID-wide TLBI.
    pub max_invalidation_ops: u32,
    /// log2 of the event-queue size asked for (clamped to `IDR1.EVENTQS`); `None`: no event
    /// queue.
    pub evtq_log2: Option<u32>,
    /// log2 of the PRI-queue size asked for (clamped to `IDR1.PRIQS`; only with `IDR0.PRI`);
    /// `None`: no PRI queue.
    pub priq_log2: Option<u32>,
    /// log2 of the command-queue size asked for (clamped to the driver's and the SMMU's
    /// limits).
    pub cmdq_log2: u32,
    /// The SMMU snoops CPU caches for its structures. `None`: as `IDR0.COHACC` says.
    pub coherent: Option<bool>,
    /// What a reset accepts from an SMMU whose `GBPA` does not take the value written (SPEC
    /// D11). Default [`GbpaPolicy::Strict`].
    pub gbpa: GbpaPolicy,
}

/// What [`Smmu::reset`] accepts when `SMMU_GBPA` does not read back as written (SPEC D11).
///
/// `GBPA.ABORT` decides what happens to incoming transactions while `CR0.SMMUEN` is 0
/// (§6.3.14): a reset that cannot confirm it leaves a window in which DMA bypasses. Some
/// SMMUs ignore the register: QEMU 7.2's SMMUv3 reads `GBPA` as 0 and drops every write,
/// and bypasses whenever `SMMUEN` is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GbpaPolicy {
    /// Every `GBPA` update must read back as written; otherwise the step fails with
    /// [`Error::GbpaNotTaken`].
    #[default]
    Strict,
    /// The platform knows its SMMU ignores `GBPA`. The reset's abort step
    /// ([`ResetStep::GlobalBypassAbort`]) is accepted when the write was dropped (the
    /// read-back equals the value before it) *and* `SMMUEN` reads 0 — the SMMU was
    /// bypassing already, so the reset opens no new window — and
    /// [`Smmu::gbpa_ignored`] then reports it. With `SMMUEN` set the step still fails (the
    /// reset's next step would turn translated DMA into bypass), and the failure action of a
    /// plan never clears `SMMUEN` on an unconfirmed abort (SPEC K16).
    AcceptIgnoredWhileDisabled,
}

impl Default for SmmuConfig {
    fn default() -> Self {
        Self {
            budget: PollBudget::DEFAULT,
            e2h: false,
            policy: ProtectedPolicy::default(),
            max_invalidation_ops: crate::inval::DEFAULT_MAX_OPS,
            evtq_log2: Some(8),
            priq_log2: None,
            cmdq_log2: 8,
            coherent: None,
            gbpa: GbpaPolicy::Strict,
        }
    }
}

/// A master (device) as [`Smmu::add_master`] describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterConfig<'a> {
    /// Its StreamIDs.
    pub sids: &'a [u32],
    /// A confidential-computing device whose DMA must stay in the shared windows (SPEC D9).
    pub protected: bool,
    /// ATS is enabled at the endpoint (paging domains then set `EATS`).
    pub ats: bool,
    /// The master may be stalled on faults.
    pub stall: bool,
    /// SubstreamID bits it uses (0: none, only SubstreamID 0).
    pub ssid_bits: u8,
}

impl<'a> MasterConfig<'a> {
    /// A plain master with these StreamIDs: not protected, no ATS, no stalls, no
    /// SubstreamIDs. The chainable setters add what a device has; the fields stay public, so
    /// a struct literal describes the same thing.
    ///
    /// ```
    /// use smmu::MasterConfig;
    ///
    /// let gpu = MasterConfig::new(&[0x20, 0x21]).protected().ats().ssid_bits(8);
    /// assert_eq!(
    ///     gpu,
    ///     MasterConfig { sids: &[0x20, 0x21], protected: true, ats: true, stall: false, ssid_bits: 8 }
    /// );
    /// ```
    pub const fn new(sids: &'a [u32]) -> Self {
        Self {
            sids,
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        }
    }

    /// A confidential-computing device: its DMA stays in the shared windows (SPEC D9).
    #[must_use]
    pub const fn protected(self) -> Self {
        Self {
            protected: true,
            ..self
        }
    }

    /// ATS is enabled at the endpoint (paging domains set `STE.EATS`; refused when the SMMU
    /// has no ATS).
    #[must_use]
    pub const fn ats(self) -> Self {
        Self { ats: true, ..self }
    }

    /// The master may be stalled on faults (used when the SMMU supports stalls).
    #[must_use]
    pub const fn stall(self) -> Self {
        Self {
            stall: true,
            ..self
        }
    }

    /// The master uses `bits` SubstreamID bits (its CD table gets 2^`bits` entries; refused
    /// beyond `IDR1.SSIDSIZE`).
    #[must_use]
    pub const fn ssid_bits(self, bits: u8) -> Self {
        Self {
            ssid_bits: bits,
            ..self
        }
    }
}

/// How [`Smmu::new_domain_with`] makes a paging domain: named where
/// [`Smmu::new_domain`] takes a positional `bool`.
///
/// ```
/// use smmu::{DomainOptions, DomainStage};
///
/// let bounce = DomainOptions::stage1().protected();
/// assert_eq!((bounce.stage, bounce.protected), (DomainStage::Stage1, true));
/// assert!(!DomainOptions::stage2().protected);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DomainOptions {
    /// Stage 1 (a CD with an ASID) or stage 2 (a VMID in the STE).
    pub stage: DomainStage,
    /// Only memory inside the platform's shared windows may be mapped (SPEC D9): the domain
    /// for a protected master.
    pub protected: bool,
}

impl DomainOptions {
    /// A domain of `stage`, not protected.
    pub const fn new(stage: DomainStage) -> Self {
        Self {
            stage,
            protected: false,
        }
    }

    /// A stage-1 domain, not protected.
    pub const fn stage1() -> Self {
        Self::new(DomainStage::Stage1)
    }

    /// A stage-2 domain, not protected.
    pub const fn stage2() -> Self {
        Self::new(DomainStage::Stage2)
    }

    /// Limits the domain's mappings to the platform's shared windows (SPEC D9).
    #[must_use]
    pub const fn protected(self) -> Self {
        Self {
            protected: true,
            ..self
        }
    }
}

/// A master's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MasterId(u16);

/// What a master is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Nothing yet: its STEs are as the table had them (abort for a table the driver
    /// built, the crashed kernel's for an adopted one).
    Initial,
    /// Blocked: every STE aborts.
    Blocked,
    /// Identity: every STE bypasses.
    Identity,
    /// A paging domain.
    Paging {
        /// The domain's token.
        token: u32,
        /// Its stage.
        stage: DomainStage,
        /// Its ASID or VMID.
        id: u16,
    },
    /// An attach failed part-way and putting the previous STEs (and CD) back failed too,
    /// typically because the command queue stopped completing: each STE holds the previous
    /// configuration or the new one, and which is not known. Every domain either may use
    /// stays referenced (it cannot be freed) until an attach completes; a deferred STE stays
    /// deferred (SPEC K11, D12).
    Indeterminate,
}

impl Attachment {
    /// The token of the paging domain, if this is one.
    fn token(self) -> Option<u32> {
        match self {
            Attachment::Paging { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// Domains a master's structures may still use besides the one it is attached to: a bound
/// because the driver has no heap. Each attach that fails beyond repair adds at most two; an
/// attach that would need more room is refused before it changes anything, and
/// [`Smmu::attach_blocked`] (which adds none) always remains.
const MAX_LINGERING: usize = 4;

/// What an attach writes (see [`Smmu::commit`]).
struct AttachTarget {
    /// The STE every StreamID of the master gets.
    ste: [u64; ENTRY_QWORDS],
    /// CD 0 of the master's CD table, for an STE that points at the table (stage 1).
    cd0: Option<[u64; ENTRY_QWORDS]>,
    /// What the master is attached to once it completed.
    now: Attachment,
}

struct Master {
    sids: Vec<u32, MAX_SIDS_PER_MASTER>,
    protected: bool,
    ats: bool,
    stall: bool,
    ssid_bits: u8,
    cd: Option<CdTable>,
    attached: Attachment,
    /// Tokens of domains other than `attached`'s that an STE, CD 0 or the ATC of this master
    /// may still use: left by an attach that could not be undone, or whose clean-up (CD 0,
    /// ATC invalidation) failed after every STE had switched. Emptied by the next attach
    /// that completes. [`Smmu::free_domain`] refuses all of them.
    lingering: Vec<u32, MAX_LINGERING>,
}

impl Master {
    /// Whether any of this master's STEs, its CD 0 or its ATC may still use domain `token`.
    fn refers_to(&self, token: u32) -> bool {
        self.attached.token() == Some(token) || self.lingering.contains(&token)
    }
}

/// Whether the STE `words` lets any transaction through untranslated: `Config` = bypass, or
/// stage 1 only with `S1DSS` = bypass for transactions without a SubstreamID (SPEC K22). An
/// STE that does not decode is not bypass (the SMMU aborts with `C_BAD_STE`).
fn lets_traffic_bypass(words: &[u64; ENTRY_QWORDS]) -> bool {
    use crate::arch::ste::{Ste, Translation};
    match Ste::from_words(*words).decode() {
        Ok(Some(cfg)) => match cfg.translation {
            Translation::Bypass => true,
            Translation::Stage1(s1) => s1.dss == S1Dss::Bypass,
            _ => false,
        },
        _ => false,
    }
}

/// An Arm SMMUv3 and everything the driver keeps for it.
///
/// # Many CPUs (SPEC D12)
///
/// `Smmu` has no `unsafe impl Send`/`Sync`: it is `Send` when `R`, `H` and `S` are `Send`, and
/// `Sync` when `R` and `H` are `Sync` and `S` is `Send + Sync` (the command queue, the event
/// queues and the ID allocators are `Sync` themselves). Everything but [`Smmu::reset`] and
/// [`Smmu::release`] takes `&self`, and what runs at once is:
///
/// - [`Smmu::map`], [`Smmu::unmap`]: any number of CPUs, in one domain too (disjoint
///   ranges), and command submission through [`Smmu::cmdq`]: no lock at all, none held while
///   a `CMD_SYNC` completes. An unmap reads the masters only when a master uses ATS.
/// - [`Smmu::handle_events`], [`Smmu::handle_page_requests`], [`Smmu::handle_gerror`]: from
///   interrupt context on any CPU, never waiting for another (see
///   [`OutputQueue::drain_events`]).
/// - [`Smmu::new_domain`], [`Smmu::free_domain`]: lock-free ASID/VMID allocation.
/// - Attach and detach: each master has its own lock, held for the whole hitless update of
///   its STEs and CD (with its `CMD_SYNC`s), so two CPUs attach two masters at once, and two
///   attaches of one master follow each other. Not from interrupt context: an interrupt on a
///   CPU inside an attach that attached the same master would wait for itself.
/// - [`Smmu::add_master`]: one at a time (a registration lock), and it waits for the
///   attaches in flight while it prepares the stream table (a reader-writer lock over the
///   table: attaches read it, preparing a StreamID writes it).
///
/// Lock order, never reversed: registration, then one master, then the stream table.
pub struct Smmu<R: RegisterAccess, H: Hal, S: StreamTable> {
    regs: R,
    hal: H,
    features: Features,
    config: SmmuConfig,
    coherent: bool,
    instance: usize,
    cmdq: CommandQueue,
    evtq: Option<OutputQueue>,
    priq: Option<OutputQueue>,
    strtab: TableLock<S>,
    asids: IdAllocator,
    vmids: IdAllocator,
    masters: [Mutex<Option<Master>>; MAX_MASTERS],
    /// Held by [`Smmu::add_master`] from the StreamID ownership check to the slot's fill.
    registration: Mutex<()>,
    /// Masters registered with ATS: an unmap looks for masters to invalidate the ATC of
    /// only when there is one.
    ats_masters: AtomicUsize,
    next_token: AtomicU32,
    cr0: u32,
    e2h: bool,
    entry_features: EntryFeatures,
    gbpa_ignored: bool,
}

impl<R: RegisterAccess, H: Hal, S: StreamTable> core::fmt::Debug for Smmu<R, H, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Smmu")
            .field("instance", &self.instance)
            .field("cmdq", &self.cmdq)
            .field("cr0", &self.cr0)
            .finish_non_exhaustive()
    }
}

/// An STE or CD in DMA memory as the entry writer sees it: stores go through the HAL's
/// live-store hook, each sync is the matching CFGI plus a `CMD_SYNC`.
struct LiveEntry<'a, R: RegisterAccess, H: Hal> {
    buf: &'a DmaBuf,
    first: usize,
    hal: &'a H,
    regs: &'a R,
    cmdq: &'a CommandQueue,
    invalidate: Invalidate<'a>,
    failed: Option<Error>,
}

#[derive(Clone, Copy)]
enum Invalidate<'a> {
    Ste(u32),
    Cd { sids: &'a [u32], ssid: u32 },
}

impl<R: RegisterAccess, H: Hal> EntrySlot<ENTRY_QWORDS> for LiveEntry<'_, R, H> {
    type Error = Error;

    fn read(&self) -> [u64; ENTRY_QWORDS] {
        let mut w = [0u64; ENTRY_QWORDS];
        for (i, v) in w.iter_mut().enumerate() {
            // The location was bounds-checked when it was made; an error reads as 0.
            *v = self.buf.read(self.hal, self.first + i).unwrap_or(0);
        }
        w
    }

    fn write_qword(&mut self, index: usize, value: u64) {
        if let Err(e) = self.buf.store_live(self.hal, self.first + index, value) {
            self.failed.get_or_insert(e.into());
        }
    }

    fn sync(&mut self) -> Result<(), Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut batch = CommandBatch::new(self.cmdq, self.hal, self.regs);
        match self.invalidate {
            // Leaf = 0 also drops a cached level-1 descriptor (§4.3.1): a level-2 table
            // published by an earlier call whose own CFGI failed is seen all the same.
            Invalidate::Ste(sid) => batch.add(Command::CfgiSte { sid, leaf: false })?,
            Invalidate::Cd { sids, ssid } => {
                for &sid in sids {
                    // Leaf = 0 also drops a cached level-1 CD descriptor (§4.3.3), so a
                    // leaf published by an earlier attempt whose own CFGI failed is seen.
                    batch.add(Command::CfgiCd {
                        sid,
                        ssid,
                        leaf: false,
                    })?;
                }
            }
        }
        batch.submit()
    }
}

impl<R: RegisterAccess, H: Hal, S: StreamTable> Smmu<R, H, S> {
    /// Builds the driver state for a probed SMMU: allocates the command queue and, as
    /// configured, the event and PRI queues. Touches no register; [`Smmu::reset`] does.
    ///
    /// On failure everything allocated, `strtab` included, is given back.
    ///
    /// `Smmu` is large (see [`Smmu::new_in_with`]) and this returns it by value, through the
    /// stack: a host with a large stack may use it; firmware and kernels, and every crash
    /// kernel, build the driver where it lives with [`Smmu::new_in_with`].
    pub fn new(
        regs: R,
        hal: H,
        features: Features,
        strtab: S,
        config: SmmuConfig,
    ) -> Result<Self, Error> {
        let mut slot = MaybeUninit::uninit();
        Self::new_in(&mut slot, regs, hal, features, strtab, config)?;
        // SAFETY: `new_in` returned `Ok`, so it initialised every field of `slot`.
        Ok(unsafe { slot.assume_init() })
    }

    /// As [`Smmu::new_in_with`], for a stream table the caller already built: `strtab` is
    /// moved into the slot once (so it passes through the stack once; an
    /// [`OwnedStreamTable`](crate::OwnedStreamTable) is about 10 KiB). On failure it is given
    /// back to the HAL like everything else.
    pub fn new_in(
        slot: &mut MaybeUninit<Self>,
        regs: R,
        hal: H,
        features: Features,
        strtab: S,
        config: SmmuConfig,
    ) -> Result<&mut Self, Error> {
        Self::new_in_with(slot, regs, hal, features, config, |_, place| {
            place.write(strtab);
            Ok::<(), Error>(())
        })
    }

    /// Builds the driver directly in caller-provided memory (a `static` — see
    /// [`StaticSlot`](crate::StaticSlot) —, a HAL page, a `Box<MaybeUninit<_>>`), with the stream
    /// table built in place too by `strtab`: nothing of the size of `Smmu` or of its table
    /// passes through the stack. This is how a crash kernel brings the driver up
    /// (`smmu_kdump::boot_in`): its stack is small, and the memory below it is the crashed
    /// kernel's.
    ///
    /// `strtab` runs first, with the HAL and the table's place: it either initialises the
    /// place and returns `Ok`, or gives back whatever it took, leaves the place alone and
    /// returns its error, which this returns. Then the queues are allocated; if that fails,
    /// the table is released ([`StreamTable::release`]) and the error returned. On failure
    /// the slot is left uninitialised; on success it holds the driver and the returned
    /// reference is it. The slot is a `MaybeUninit`, so dropping it does not drop the driver
    /// (which owns no `Drop` resource: buffers go back through [`Smmu::release_in`]).
    ///
    /// The size of `Smmu` is dominated by two ASID/VMID bitmaps (16 KiB each), the master
    /// table and the stream table's own directory: 53 376 bytes with an
    /// [`OwnedStreamTable`](crate::OwnedStreamTable) on a 64-bit target at the default
    /// capacities (checked by a unit test; `size_of` tells the exact figure for a given `S`);
    /// none of it is ever on the stack here.
    pub fn new_in_with<E: From<Error>>(
        slot: &mut MaybeUninit<Self>,
        regs: R,
        hal: H,
        features: Features,
        config: SmmuConfig,
        strtab: impl FnOnce(&H, &mut MaybeUninit<S>) -> Result<(), E>,
    ) -> Result<&mut Self, E> {
        let p = slot.as_mut_ptr();
        // SAFETY: `p` comes from `&mut MaybeUninit<Self>`, so it is valid for writes and
        // aligned; the lock is written and the table's place returned, uninitialised.
        let place = unsafe { TableLock::init_lock_at(addr_of_mut!((*p).strtab)) };
        // SAFETY: `place` points into `*slot`, which this function borrows exclusively; no
        // other reference to that field exists while this one lives.
        strtab(&hal, unsafe { &mut *place })?;
        // From here on the table is initialised and is given back on every failure.
        let release_table = |hal: &H| {
            // SAFETY: the table was initialised by `strtab` above, no register points at it
            // (this function writes none), and the slot is left uninitialised afterwards.
            unsafe { (*place).assume_init_mut().release(hal) }
        };
        let coherent = config.coherent.unwrap_or(features.coherent);
        let mode = SyncMode::select(features.msi, features.sev, coherent);
        let cmdq_log2 = config.cmdq_log2.min(u32::from(features.cmdq_log2_max));
        let cmdq = match CommandQueue::new(&hal, cmdq_log2, mode, coherent, config.budget) {
            Ok(q) => q,
            Err(e) => {
                release_table(&hal);
                return Err(e.into());
            }
        };
        let mut out = [None, None];
        let wanted = [
            (QueueKind::Event, config.evtq_log2),
            (QueueKind::Pri, config.priq_log2.filter(|_| features.pri)),
        ];
        for (queue, (kind, log2)) in out.iter_mut().zip(wanted) {
            let Some(log2) = log2 else { continue };
            let log2 = log2.min(kind.max_log2_entries(&features));
            match OutputQueue::new(&hal, kind, log2, coherent) {
                Ok(q) => *queue = Some(q),
                Err(e) => {
                    // SAFETY: none of these is known to the SMMU yet.
                    unsafe {
                        for q in out.into_iter().flatten() {
                            q.release(&hal);
                        }
                        cmdq.release(&hal);
                    }
                    release_table(&hal);
                    return Err(Error::Queue(e).into());
                }
            }
        }
        let [evtq, priq] = out;
        let e2h = config.e2h && features.hyp;
        let entry_features = EntryFeatures {
            attr_types_ovr: features.attr_types_ovr,
            stalls: features.stall_model == StallModel::Stall,
            e2h,
        };
        let asid_bits = if features.asid16 { 16 } else { 8 };
        let vmid_bits = if features.vmid16 { 16 } else { 8 };
        // SAFETY: `p` is valid for writes and aligned (above). Every field but `strtab`
        // (initialised above) is written exactly once through a raw place (no reference to
        // uninitialised memory is made), the large ones in place.
        unsafe {
            addr_of_mut!((*p).regs).write(regs);
            addr_of_mut!((*p).hal).write(hal);
            addr_of_mut!((*p).features).write(features);
            addr_of_mut!((*p).config).write(config);
            addr_of_mut!((*p).coherent).write(coherent);
            addr_of_mut!((*p).instance).write(NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed));
            addr_of_mut!((*p).cmdq).write(cmdq);
            addr_of_mut!((*p).evtq).write(evtq);
            addr_of_mut!((*p).priq).write(priq);
            IdAllocator::init_at(addr_of_mut!((*p).asids), asid_bits);
            IdAllocator::init_at(addr_of_mut!((*p).vmids), vmid_bits);
            let masters = addr_of_mut!((*p).masters).cast::<Mutex<Option<Master>>>();
            for i in 0..MAX_MASTERS {
                masters.add(i).write(Mutex::new(None));
            }
            addr_of_mut!((*p).registration).write(Mutex::new(()));
            addr_of_mut!((*p).ats_masters).write(AtomicUsize::new(0));
            addr_of_mut!((*p).next_token).write(AtomicU32::new(1));
            addr_of_mut!((*p).cr0).write(0);
            addr_of_mut!((*p).e2h).write(e2h);
            addr_of_mut!((*p).entry_features).write(entry_features);
            addr_of_mut!((*p).gbpa_ignored).write(false);
        }
        // SAFETY: every field was initialised above (`fields_initialised_by_new_in` fails to
        // compile when a field is added and not listed there, and so here).
        Ok(unsafe { slot.assume_init_mut() })
    }

    /// Never called: an exhaustive pattern over `Self`, so that adding a field without
    /// initialising it in [`Smmu::new_in`] is a compile error here. Keep the two lists equal.
    #[allow(dead_code)]
    fn fields_initialised_by_new_in(self) {
        let Self {
            regs: _,
            hal: _,
            features: _,
            config: _,
            coherent: _,
            instance: _,
            cmdq: _,
            evtq: _,
            priq: _,
            strtab: _,
            asids: _,
            vmids: _,
            masters: _,
            registration: _,
            ats_masters: _,
            next_token: _,
            cr0: _,
            e2h: _,
            entry_features: _,
            gbpa_ignored: _,
        } = self;
    }

    /// The probed features.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The register interface.
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// The platform HAL.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// The command queue (for statistics, or to issue commands directly).
    pub fn cmdq(&self) -> &CommandQueue {
        &self.cmdq
    }

    /// Runs `f` on the stream table, under its read lock (an [`Smmu::add_master`] waits
    /// until `f` returns).
    pub fn with_stream_table<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.strtab.read())
    }

    /// The ASID allocator, to replace (adoption puts the allocator holding the crashed
    /// kernel's reserved ASIDs here, SPEC K14).
    pub fn asids_mut(&mut self) -> &mut IdAllocator {
        &mut self.asids
    }

    /// The VMID allocator.
    pub fn vmids_mut(&mut self) -> &mut IdAllocator {
        &mut self.vmids
    }

    /// The ASID allocator (lock-free: reservations go through `&self`).
    pub fn asids(&self) -> &IdAllocator {
        &self.asids
    }

    /// The VMID allocator.
    pub fn vmids(&self) -> &IdAllocator {
        &self.vmids
    }

    /// Whether stage-1 TLB invalidations use the EL2 (E2H) forms.
    pub fn e2h(&self) -> bool {
        self.e2h
    }

    /// Whether a reset accepted, under [`GbpaPolicy::AcceptIgnoredWhileDisabled`], an SMMU
    /// that ignored the `GBPA.ABORT` write: until `SMMUEN` was set, incoming DMA bypassed.
    pub fn gbpa_ignored(&self) -> bool {
        self.gbpa_ignored
    }

    // ------------------------------------------------------------------ reset

    /// Runs a reset plan (SPEC D2 for [`ResetPlan::FULL`]). On failure the plan's
    /// [`OnFailure`] action runs before the error is returned.
    pub fn reset(&mut self, plan: &ResetPlan) -> Result<(), Error> {
        report!(debug, "SMMU reset: {:?}", plan.steps);
        for &step in plan.steps {
            if let Err(e) = self.run_step(step) {
                report!(error, "SMMU reset failed at {step:?}: {e}");
                if plan.on_failure == OnFailure::AbortThenDisable {
                    return Err(self.abort_then_disable(step, e));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The failure action [`OnFailure::AbortThenDisable`] after `step` failed with `cause`
    /// (SPEC K16, D11): `GBPA.ABORT` through the handshake, read back; only when it is
    /// confirmed is `SMMUEN` cleared. Otherwise clearing `SMMUEN` would turn translated DMA
    /// into bypass, so `CR0` is left alone and, if `SMMUEN` is set, the error says so
    /// ([`Error::AbortNotConfirmed`]); with `SMMUEN` already clear there is nothing to keep
    /// and `cause` is reported. Returns the error to report.
    fn abort_then_disable(&mut self, step: ResetStep, cause: Error) -> Error {
        let smmuen = CR0::SMMUEN.mask << CR0::SMMUEN.shift;
        match self.update_gbpa(true) {
            Ok(()) => {
                self.cr0 = self.regs.read32(offset::CR0) & !smmuen;
                self.regs.write32(offset::CR0, self.cr0);
                // Best effort: the step's error is the one to report.
                let _ = self.wait_cr0_ack();
                cause
            }
            Err(_) if self.regs.read32(offset::CR0) & smmuen != 0 => Error::AbortNotConfirmed {
                step,
                gbpa: self.regs.read32(offset::GBPA),
            },
            Err(_) => cause,
        }
    }

    fn run_step(&mut self, step: ResetStep) -> Result<(), Error> {
        match step {
            ResetStep::GlobalBypassAbort => match self.update_gbpa(true) {
                Err(Error::GbpaNotTaken { wrote, read })
                    if self.config.gbpa == GbpaPolicy::AcceptIgnoredWhileDisabled
                        && read == wrote & !(GBPA::ABORT.mask << GBPA::ABORT.shift)
                        && self.regs.read32(offset::CR0)
                            & CR0::SMMUEN.mask << CR0::SMMUEN.shift
                            == 0 =>
                {
                    // The write was dropped and the SMMU is disabled (bypassing already):
                    // accepted by the platform's choice, and reported.
                    self.gbpa_ignored = true;
                    Ok(())
                }
                other => other,
            },
            ResetStep::GlobalBypassAllow => self.update_gbpa(false),
            ResetStep::DisableAll => self.write_cr0(0),
            ResetStep::AcknowledgeGlobalErrors => {
                let report = evtq::acknowledge_global_errors(&self.regs);
                // CMDQ_ERR belongs to the old command queue, which is being replaced: no
                // command will be retried, so it is acknowledged here too.
                if report.still_active().contains(GlobalErrors::CMDQ_ERR) {
                    evtq::acknowledge_only(&self.regs, GlobalErrors::CMDQ_ERR);
                }
                if evtq::global_errors(&self.regs).contains(GlobalErrors::SFM_ERR) {
                    return Err(Error::ServiceFailure);
                }
                Ok(())
            }
            ResetStep::QuiesceQueuesKeepingTranslation => {
                let queues = CR0::CMDQEN.mask << CR0::CMDQEN.shift
                    | CR0::EVTQEN.mask << CR0::EVTQEN.shift
                    | CR0::PRIQEN.mask << CR0::PRIQEN.shift;
                let kept = self.regs.read32(offset::CR0) & !queues;
                self.write_cr0(kept)
            }
            ResetStep::ConfigureAttributes => {
                self.regs.write32(offset::CR1, self.cr1_value());
                let mut cr2 = LocalRegisterCopy::<u32, CR2::Register>::new(0);
                cr2.modify(CR2::PTM::SET + CR2::RECINVSID::SET);
                if self.e2h {
                    cr2.modify(CR2::E2H::SET);
                }
                self.regs.write32(offset::CR2, cr2.get());
                Ok(())
            }
            ResetStep::ReadBackE2h => {
                let cr2 =
                    LocalRegisterCopy::<u32, CR2::Register>::new(self.regs.read32(offset::CR2));
                self.e2h = self.features.hyp && cr2.is_set(CR2::E2H);
                self.entry_features.e2h = self.e2h;
                Ok(())
            }
            ResetStep::ProgramStreamTable => {
                let (base, cfg) = self
                    .strtab
                    .read()
                    .base_registers()
                    .ok_or(Error::Unsupported("programming an adopted stream table"))?;
                self.regs.write64(offset::STRTAB_BASE, base);
                self.regs.write32(offset::STRTAB_BASE_CFG, cfg);
                Ok(())
            }
            ResetStep::ProgramCommandQueue => {
                self.cmdq.program(&self.regs);
                Ok(())
            }
            ResetStep::EnableCommandQueue => {
                self.set_cr0_bits(CR0::CMDQEN.mask << CR0::CMDQEN.shift)
            }
            ResetStep::InvalidateAll => {
                self.cmdq
                    .issue(&self.hal, &self.regs, &[Command::CfgiAll], true)?;
                if self.features.hyp {
                    self.cmdq
                        .issue(&self.hal, &self.regs, &[Command::TlbiEl2All], true)?;
                }
                self.cmdq
                    .issue(&self.hal, &self.regs, &[Command::TlbiNsnhAll], true)
            }
            ResetStep::EnableEventQueue => match &self.evtq {
                Some(q) => {
                    q.program(&self.regs);
                    self.set_cr0_bits(CR0::EVTQEN.mask << CR0::EVTQEN.shift)
                }
                None => Ok(()),
            },
            ResetStep::EnablePriQueue => match &self.priq {
                Some(q) => {
                    q.program(&self.regs);
                    self.set_cr0_bits(CR0::PRIQEN.mask << CR0::PRIQEN.shift)
                }
                None => Ok(()),
            },
            ResetStep::ConfigureInterrupts => {
                self.write_irq_ctrl(0)?;
                if self.features.msi {
                    self.program_msi_off()?;
                }
                Ok(())
            }
            ResetStep::EnableInterrupts => {
                let mut irq = LocalRegisterCopy::<u32, IRQ_CTRL::Register>::new(0);
                irq.modify(IRQ_CTRL::GERROR_IRQEN::SET);
                if self.evtq.is_some() {
                    irq.modify(IRQ_CTRL::EVTQ_IRQEN::SET);
                }
                if self.priq.is_some() {
                    irq.modify(IRQ_CTRL::PRIQ_IRQEN::SET);
                }
                self.write_irq_ctrl(irq.get())
            }
            ResetStep::EnableGlobalErrorInterruptOnly => {
                let mut irq = LocalRegisterCopy::<u32, IRQ_CTRL::Register>::new(0);
                irq.modify(IRQ_CTRL::GERROR_IRQEN::SET);
                self.write_irq_ctrl(irq.get())
            }
            ResetStep::EnableAtsCheck => {
                if self.features.ats {
                    self.set_cr0_bits(CR0::ATSCHK.mask << CR0::ATSCHK.shift)
                } else {
                    Ok(())
                }
            }
            ResetStep::EnableTranslation => {
                self.set_cr0_bits(CR0::SMMUEN.mask << CR0::SMMUEN.shift)
            }
        }
    }

    fn cr1_value(&self) -> u32 {
        // Inner Shareable, write-back cacheable when the SMMU is coherent; otherwise
        // non-cacheable (§6.3.11: the encodings are those of the SH and RGN fields).
        let (sh, c) = if self.coherent { (3, 1) } else { (0, 0) };
        let mut cr1 = LocalRegisterCopy::<u32, CR1::Register>::new(0);
        cr1.modify(
            CR1::TABLE_SH.val(sh)
                + CR1::TABLE_OC.val(c)
                + CR1::TABLE_IC.val(c)
                + CR1::QUEUE_SH.val(sh)
                + CR1::QUEUE_OC.val(c)
                + CR1::QUEUE_IC.val(c),
        );
        cr1.get()
    }

    fn wait_cr0_ack(&self) -> Result<(), Error> {
        let want = self.cr0;
        poll(&self.hal, self.config.budget, || {
            (self.regs.read32(offset::CR0ACK) == want).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::Cr0Ack))
    }

    fn write_cr0(&mut self, value: u32) -> Result<(), Error> {
        self.cr0 = value;
        self.regs.write32(offset::CR0, value);
        self.wait_cr0_ack()
    }

    fn set_cr0_bits(&mut self, bits: u32) -> Result<(), Error> {
        let current = self.regs.read32(offset::CR0);
        self.write_cr0(current | bits)
    }

    /// The `IRQ_CFG0–2` of every interrupt the SMMU has, with MSIs off: `ADDR` = 0 (no MSI
    /// is sent, a wired interrupt is used, §6.3.21), `DATA` and the attributes 0. Each is
    /// read back: a value that did not take would leave a previous kernel's MSI target live.
    /// Only while `IRQ_CTRL` = 0 is acknowledged (the registers are guarded by it).
    fn program_msi_off(&self) -> Result<(), Error> {
        let sets = [
            (
                "GERROR_IRQ_CFG0",
                offset::GERROR_IRQ_CFG0,
                offset::GERROR_IRQ_CFG1,
                offset::GERROR_IRQ_CFG2,
            ),
            (
                "EVENTQ_IRQ_CFG0",
                offset::EVTQ_IRQ_CFG0,
                offset::EVTQ_IRQ_CFG1,
                offset::EVTQ_IRQ_CFG2,
            ),
            (
                "PRIQ_IRQ_CFG0",
                offset::PRIQ_IRQ_CFG0,
                offset::PRIQ_IRQ_CFG1,
                offset::PRIQ_IRQ_CFG2,
            ),
        ];
        // The PRI queue's registers exist only with IDR0.PRI (§6.3.34).
        let count = if self.features.pri { 3 } else { 2 };
        for &(name, cfg0, cfg1, cfg2) in sets.iter().take(count) {
            self.regs.write64(cfg0, 0);
            self.regs.write32(cfg1, 0);
            self.regs.write32(cfg2, 0);
            if self.regs.read64(cfg0) != 0 {
                return Err(Error::WriteNotTaken(name));
            }
        }
        Ok(())
    }

    fn write_irq_ctrl(&self, value: u32) -> Result<(), Error> {
        self.regs.write32(offset::IRQ_CTRL, value);
        poll(&self.hal, self.config.budget, || {
            (self.regs.read32(offset::IRQ_CTRLACK) == value).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::IrqCtrlAck))
    }

    /// `GBPA.ABORT` = `abort` through the `Update` handshake (§6.3.14): wait for a previous
    /// update to finish, write with `Update` = 1, wait for `Update` to clear, and read the
    /// register back (SPEC D11): a value that did not take is [`Error::GbpaNotTaken`].
    fn update_gbpa(&self, abort: bool) -> Result<(), Error> {
        let update = GBPA::UPDATE.mask << GBPA::UPDATE.shift;
        let idle = || {
            poll(&self.hal, self.config.budget, || {
                let v = self.regs.read32(offset::GBPA);
                (v & update == 0).then_some(v)
            })
            .ok_or(Error::Timeout(WaitFor::GbpaUpdate))
        };
        let current = idle()?;
        let abort_bit = GBPA::ABORT.mask << GBPA::ABORT.shift;
        let value = if abort {
            current | abort_bit
        } else {
            current & !abort_bit
        };
        self.regs.write32(offset::GBPA, value | update);
        let read = idle()?;
        if read == value {
            Ok(())
        } else {
            Err(Error::GbpaNotTaken { wrote: value, read })
        }
    }

    // ------------------------------------------------------------------ masters

    /// Locks `id`'s slot (which holds a master if `id` came from [`Smmu::add_master`]).
    fn lock_master(&self, id: MasterId) -> Result<MutexGuard<'_, Option<Master>>, Error> {
        Ok(self
            .masters
            .get(usize::from(id.0))
            .ok_or(Error::NoSuchMaster)?
            .lock())
    }

    /// Whether any master satisfies `f`, each looked at under its own lock.
    fn any_master(&self, f: impl Fn(&Master) -> bool) -> bool {
        self.masters
            .iter()
            .any(|m| m.lock().as_ref().is_some_and(&f))
    }

    fn owner_of(&self, sid: u32) -> bool {
        self.any_master(|m| m.sids.contains(&sid))
    }

    /// Registers a master and makes its STEs addressable (allocating level-2 tables as
    /// needed). Its STEs are not changed: a new master stays blocked (the driver's table
    /// is filled with abort), and an adopted STE stays as the crashed kernel left it until
    /// an explicit attach (SPEC K11).
    ///
    /// One at a time (see [`Smmu`]'s lock order); it waits for attaches in flight.
    pub fn add_master(&self, config: &MasterConfig<'_>) -> Result<MasterId, Error> {
        self.config
            .policy
            .check_master(config.protected, config.ats)?;
        if config.ats && !self.features.ats {
            return Err(Error::Unsupported("ATS"));
        }
        if u32::from(config.ssid_bits) > u32::from(self.features.ssid_bits) {
            return Err(Error::SubstreamIdOutOfRange(1 << config.ssid_bits.min(31)));
        }
        let _registration = self.registration.lock();
        let log2_size = self.strtab.read().log2_size();
        let mut sids = Vec::new();
        for &sid in config.sids {
            if u64::from(sid) >> log2_size != 0 {
                return Err(Error::StreamIdOutOfRange(sid));
            }
            if self.owner_of(sid) || sids.contains(&sid) {
                return Err(Error::StreamIdInUse(sid));
            }
            sids.push(sid).map_err(|_| Error::CapacityExhausted)?;
        }
        if sids.is_empty() {
            return Err(Error::NoSuchMaster);
        }
        // Slots are filled only under the registration lock, which this holds.
        let slot = self
            .masters
            .iter()
            .position(|m| m.lock().is_none())
            .ok_or(Error::CapacityExhausted)?;
        let fill = make::ste_image(&make::abort_ste());
        for &sid in &sids {
            let prepared = self.strtab.write().prepare(&self.hal, sid, &fill)?;
            if prepared == Prepared::NewLevel1Descriptor {
                // The SMMU may have cached the invalid descriptor (§4.3.1, Leaf = 0).
                self.cmdq.issue(
                    &self.hal,
                    &self.regs,
                    &[Command::CfgiSte { sid, leaf: false }],
                    true,
                )?;
            }
        }
        if config.ats {
            // Before the master can be attached: an unmap that could miss it cannot have
            // reached its ATC.
            self.ats_masters.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(m) = self.masters.get(slot) {
            *m.lock() = Some(Master {
                sids,
                protected: config.protected,
                ats: config.ats,
                stall: config.stall,
                ssid_bits: config.ssid_bits,
                cd: None,
                attached: Attachment::Initial,
                lingering: Vec::new(),
            });
        }
        let id = MasterId(slot as u16);
        if config.protected {
            self.confine_inherited_bypass(id)?;
        }
        Ok(id)
    }

    /// SPEC K22 (D9 outranks K12): a protected master never keeps an STE that lets traffic
    /// bypass translation — one inherited from an adopted table with `Config` = bypass, or a
    /// stage-1-only STE whose `S1DSS` lets transactions without a SubstreamID bypass stage 1
    /// (§5.2: S1DSS is used only with `S1CDMax` ≠ 0, which the decoder honours). Such STEs are
    /// replaced by abort at once, hitlessly, and the report says so; the master is then
    /// [`Attachment::Blocked`] until its driver attaches a paging domain. If the replacement
    /// fails, the registration is undone and the error returned: nothing changed.
    fn confine_inherited_bypass(&self, id: MasterId) -> Result<(), Error> {
        let bypassing = {
            let guard = self.lock_master(id)?;
            let m = guard.as_ref().ok_or(Error::NoSuchMaster)?;
            let strtab = self.strtab.read();
            m.sids.iter().copied().find(|&sid| {
                Self::locate_ste(&strtab, sid)
                    .and_then(|loc| loc.read(&self.hal))
                    .is_ok_and(|w| lets_traffic_bypass(&w))
            })
        };
        let Some(sid) = bypassing else {
            return Ok(());
        };
        report!(
            warn,
            "protected master with StreamID {sid:#x}: its inherited STE lets DMA bypass \
             translation; replaced by abort (a protected master never bypasses)"
        );
        if let Err(e) = self.attach_blocked(id) {
            if let Some(m) = self.masters.get(usize::from(id.0)) {
                let ats = m.lock().take().is_some_and(|m| m.ats);
                if ats {
                    self.ats_masters.fetch_sub(1, Ordering::SeqCst);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// What `master` is attached to.
    pub fn attachment(&self, master: MasterId) -> Result<Attachment, Error> {
        let m = self.lock_master(master)?;
        Ok(m.as_ref().ok_or(Error::NoSuchMaster)?.attached)
    }

    /// The StreamIDs of `master`.
    pub fn master_sids(&self, master: MasterId) -> Result<Vec<u32, MAX_SIDS_PER_MASTER>, Error> {
        let m = self.lock_master(master)?;
        Ok(m.as_ref().ok_or(Error::NoSuchMaster)?.sids.clone())
    }

    /// Whether any STE of `master` is still deferred (adopted and not yet replaced).
    pub fn is_deferred(&self, master: MasterId) -> Result<bool, Error> {
        let m = self.lock_master(master)?;
        let m = m.as_ref().ok_or(Error::NoSuchMaster)?;
        let strtab = self.strtab.read();
        Ok(m.sids.iter().any(|&s| strtab.is_deferred(s)))
    }

    fn caps(&self, m: &Master, paging: bool) -> MasterCaps {
        MasterCaps {
            ats: m.ats && paging,
            stall: m.stall && self.features.stall_model != StallModel::NoStall,
        }
    }

    /// `sid`'s STE as the entry writer sees it.
    fn ste_slot<'a>(&'a self, strtab: &'a S, sid: u32) -> Result<LiveEntry<'a, R, H>, Error> {
        let loc = Self::locate_ste(strtab, sid)?;
        Ok(LiveEntry {
            buf: loc.buf,
            first: loc.first_word,
            hal: &self.hal,
            regs: &self.regs,
            cmdq: &self.cmdq,
            invalidate: Invalidate::Ste(sid),
            failed: None,
        })
    }

    /// One STE through the hitless writer.
    fn write_ste(
        &self,
        strtab: &S,
        sid: u32,
        target: &[u64; ENTRY_QWORDS],
    ) -> Result<WriteReport, Error> {
        write_entry(&SteRules, &mut self.ste_slot(strtab, sid)?, target).map_err(|e| e.error)
    }

    /// Puts `sid`'s STE back to `image` after a failed write. The failed step's sync did not
    /// complete, so the SMMU may hold any image the entry took since its last completed
    /// sync; the writer plans from the entry as it is in memory, so that invalidation is
    /// issued again first and the writer starts from what the SMMU can see (SPEC D4).
    fn restore_ste(&self, strtab: &S, sid: u32, image: &[u64; ENTRY_QWORDS]) -> Result<(), Error> {
        let mut slot = self.ste_slot(strtab, sid)?;
        slot.sync()?;
        write_entry(&SteRules, &mut slot, image).map_err(|e| e.error)?;
        Ok(())
    }

    /// Where `sid`'s STE is, with its eight words checked to lie in the buffer.
    fn locate_ste(strtab: &S, sid: u32) -> Result<crate::strtab::SteLocation<'_>, Error> {
        let loc = strtab.locate(sid)?;
        if loc.first_word + ENTRY_QWORDS > loc.buf.words() {
            return Err(Error::StreamIdOutOfRange(sid));
        }
        Ok(loc)
    }

    /// Attaches `master` to the blocked domain: every STE aborts. Always allowed, also for
    /// protected and deferred masters (it is how a deferred master is released, SPEC K12).
    pub fn attach_blocked(&self, master: MasterId) -> Result<(), Error> {
        let target = AttachTarget {
            ste: make::ste_image(&make::abort_ste()),
            cd0: None,
            now: Attachment::Blocked,
        };
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        self.commit(m, &self.strtab.read(), &target)
    }

    /// Detaching is attaching to the blocked domain (SPEC D8, D9: a protected master is left
    /// aborting).
    pub fn detach(&self, master: MasterId) -> Result<(), Error> {
        self.attach_blocked(master)
    }

    /// Attaches `master` to the identity domain (bypass). Refused for protected masters
    /// (SPEC D9) and while any of its STEs is deferred (SPEC K12).
    pub fn attach_identity(&self, master: MasterId) -> Result<(), Error> {
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        self.identity_locked(m, &self.strtab.read(), Rewrite::Identity)
    }

    /// Puts `m` on a bypass STE for `why`, once [`policy::check_rewrite`] allows it: a
    /// deferred STE is only ever replaced by a translating attach or released to abort (SPEC
    /// K12), so an identity default domain must not widen what it allows.
    fn identity_locked(&self, m: &mut Master, strtab: &S, why: Rewrite) -> Result<(), Error> {
        let stes = RewriteTarget {
            master_protected: m.protected,
            first_deferred: m.sids.iter().copied().find(|&s| strtab.is_deferred(s)),
            first_inherited: m.sids.iter().copied().find(|&s| strtab.is_inherited(s)),
        };
        policy::check_rewrite(why, &stes)?;
        let target = AttachTarget {
            ste: make::ste_image(&make::bypass_ste(self.entry_features)),
            cd0: None,
            now: Attachment::Identity,
        };
        self.commit(m, strtab, &target)
    }

    /// Installs a bypass STE for a reserved-memory (RMR) region's StreamID. Refused for
    /// protected masters (SPEC D9), for deferred STEs (SPEC K12) and for every STE that lives
    /// in a structure inherited from the crashed kernel, whatever it holds now (SPEC K10):
    /// the stream table knows which those are ([`StreamTable::is_inherited`]).
    pub fn install_rmr_bypass(&self, master: MasterId) -> Result<(), Error> {
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        self.identity_locked(m, &self.strtab.read(), Rewrite::RmrBypass)
    }

    /// The one way STEs and CD 0 change (SPEC D4, D12, K11): an attach completes for every
    /// StreamID of the master or leaves every STE (and CD 0) as it was.
    ///
    /// 1. Everything that can fail without a live write is done first: every STE located
    ///    and its current image saved, the CD table allocated and CD 0 made addressable (a
    ///    new leaf is all-invalid, so publishing it changes no translation), CD 0 saved, room
    ///    checked for what a failure would have to record.
    /// 2. The live writes, each through the hitless writer: CD 0 (stage 1: a master already
    ///    on the CD table switches here), then every STE in order.
    /// 3. A write that fails undoes, in reverse order, every write made so far, the failed
    ///    one included, back to the saved image: its invalidation is issued again (the failed
    ///    sync left the SMMU's view unknown), then the hitless writer takes it back. The
    ///    deferred state of the STEs is untouched and the master's attachment is unchanged.
    ///    If undoing fails too, the master is recorded as [`Attachment::Indeterminate`] and
    ///    both domains stay referenced.
    /// 4. Only once every STE holds the target is the deferred state cleared; then CD 0 is
    ///    invalidated when the STEs no longer reach the CD table (so no CD names a domain the
    ///    master left), and the ATC is invalidated when the master had translations.
    ///
    /// The caller holds the master's lock (`m`) and the stream table's read lock (`strtab`).
    fn commit(&self, m: &mut Master, strtab: &S, target: &AttachTarget) -> Result<(), Error> {
        // ---- 1. preparation: nothing live changes
        let sids = m.sids.clone();
        let before = m.attached;
        let extra = [before.token(), target.now.token()]
            .into_iter()
            .flatten()
            .filter(|t| !m.lingering.contains(t))
            .count();
        if m.lingering.len() + extra > MAX_LINGERING {
            return Err(Error::CapacityExhausted);
        }
        let mut saved: Vec<[u64; ENTRY_QWORDS], MAX_SIDS_PER_MASTER> = Vec::new();
        for &sid in &sids {
            let image = Self::locate_ste(strtab, sid)?.read(&self.hal)?;
            saved.push(image).map_err(|_| Error::CapacityExhausted)?;
        }
        let saved_cd = match target.cd0 {
            Some(_) => Some(self.prepare_cd0(m)?),
            None => None,
        };

        // ---- 2. live writes
        let mut failure = None;
        if let Some(cd) = &target.cd0 {
            if let Err(e) = self.write_cd0(m, cd) {
                failure = Some((e, 0));
            }
        }
        if failure.is_none() {
            for (i, &sid) in sids.iter().enumerate() {
                if let Err(e) = self.write_ste(strtab, sid, &target.ste) {
                    failure = Some((e, i + 1));
                    break;
                }
            }
        }

        // ---- 3. undo
        if let Some((error, touched)) = failure {
            let mut restored = true;
            for (&sid, image) in sids.iter().zip(&saved).take(touched).rev() {
                restored &= self.restore_ste(strtab, sid, image).is_ok();
            }
            if let Some(image) = &saved_cd {
                restored &= self.restore_cd0(m, image).is_ok();
            }
            if !restored {
                for t in [before.token(), target.now.token()].into_iter().flatten() {
                    if !m.lingering.contains(&t) {
                        // Cannot fail: room was checked in step 1.
                        let _ = m.lingering.push(t);
                    }
                }
                m.attached = Attachment::Indeterminate;
            }
            return Err(error);
        }

        // ---- 4. completed for every StreamID
        for &sid in &sids {
            strtab.clear_deferred(sid);
        }
        let mut cleanup = Ok(());
        if target.cd0.is_none() && m.cd.is_some() {
            // The STEs no longer reach the CD table (their change was synced): CD 0 goes
            // invalid, so it names no domain the master left.
            let invalid = [0u64; ENTRY_QWORDS];
            cleanup = self
                .prepare_cd0(m)
                .and_then(|_| self.write_cd0(m, &invalid));
        }
        let atc_dirty = m.ats
            && (!m.lingering.is_empty()
                || (before != target.now
                    && matches!(
                        before,
                        Attachment::Paging { .. } | Attachment::Indeterminate
                    )));
        if cleanup.is_ok() && atc_dirty {
            // §3.9.1: the ATC is invalidated after the STE change is visible.
            let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
            cleanup = sids
                .iter()
                .try_for_each(|&sid| {
                    atc_commands(sid, None, 0, u64::MAX, &mut |c| batch.add(c)).map(|_| ())
                })
                .and_then(|()| batch.submit());
        }
        m.attached = target.now;
        match cleanup {
            Ok(()) => {
                m.lingering.clear();
                Ok(())
            }
            Err(e) => {
                // Every STE switched, but CD 0 or the ATC may still use the previous domain.
                if let Some(t) = before.token().filter(|t| !m.lingering.contains(t)) {
                    // Cannot fail: room was checked in step 1.
                    let _ = m.lingering.push(t);
                }
                Err(e)
            }
        }
    }

    // ------------------------------------------------------------------ domains

    /// Creates a paging domain with a fresh ASID (stage 1) or VMID (stage 2). A `protected`
    /// domain only maps memory inside the platform's shared windows (SPEC D9).
    ///
    /// The short form of [`Smmu::new_domain_with`]: `new_domain(DomainStage::Stage1, false,
    /// alloc)` is `new_domain_with(DomainOptions::stage1(), alloc)`.
    pub fn new_domain<A: TableAllocator>(
        &self,
        stage: DomainStage,
        protected: bool,
        alloc: A,
    ) -> Result<Domain<A>, Error> {
        let config = table_config(stage, &self.features)?;
        let table = PageTable::new(config, alloc)?;
        let id = match stage {
            DomainStage::Stage1 => self.asids.alloc()?,
            DomainStage::Stage2 => self.vmids.alloc()?,
        };
        // Tokens start at 1; 0 is skipped when the count wraps.
        let mut token = self.next_token.fetch_add(1, Ordering::Relaxed);
        if token == 0 {
            token = self.next_token.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Domain {
            token,
            smmu: self.instance,
            stage,
            protected,
            id,
            table: ManuallyDrop::new(table),
        })
    }

    /// Creates a paging domain as `options` describe it, its tables from `alloc`: the
    /// named form of [`Smmu::new_domain`].
    ///
    /// ```
    /// # use smmu::{DomainOptions, MasterConfig, OwnedStreamTable, ResetPlan, Smmu, SmmuConfig};
    /// # use smmu_model::ModelConfig;
    /// # use smmu_scenarios::{tables::ModelTables, ModelPlatform};
    /// # let platform = ModelPlatform::new(ModelConfig::default()).unwrap();
    /// # let (regs, hal) = (platform.regs(), platform.hal());
    /// # let features = smmu::probe::probe(&regs).unwrap();
    /// # let strtab = OwnedStreamTable::for_smmu(&hal, &features, &SmmuConfig::default()).unwrap();
    /// # let mut smmu = Smmu::new(regs, hal.clone(), features, strtab, SmmuConfig::default()).unwrap();
    /// # smmu.reset(&ResetPlan::FULL).unwrap();
    /// let disk = smmu.add_master(&MasterConfig::new(&[0x8]))?;
    /// let domain = smmu.new_domain_with(DomainOptions::stage1(), ModelTables(hal.clone()))?;
    /// smmu.attach(disk, &domain)?;
    /// # Ok::<(), smmu::Error>(())
    /// ```
    pub fn new_domain_with<A: TableAllocator>(
        &self,
        options: DomainOptions,
        alloc: A,
    ) -> Result<Domain<A>, Error> {
        self.new_domain(options.stage, options.protected, alloc)
    }

    fn check_domain<A: TableAllocator>(&self, domain: &Domain<A>) -> Result<(), Error> {
        if domain.smmu == self.instance {
            Ok(())
        } else {
            Err(Error::WrongDomainKind)
        }
    }

    /// Frees a domain: refused ([`Error::DomainBusy`]) while any master's STE or CD may still
    /// refer to it: attached, or left referenced by an attach that could not complete or be
    /// undone. Its TLB entries are invalidated before the ID goes back to the allocator, so a
    /// later domain with the same ID cannot hit them.
    // The refused domain travels back by value so that the caller keeps it; boxing it would
    // need an allocator, which this crate does not have.
    #[allow(clippy::result_large_err)]
    pub fn free_domain<A: TableAllocator>(
        &self,
        domain: Domain<A>,
    ) -> Result<(), (Error, Domain<A>)> {
        if self.check_domain(&domain).is_err() {
            return Err((Error::WrongDomainKind, domain));
        }
        // No attach can start meanwhile: it would need to borrow `domain`.
        if self.any_master(|m| m.refers_to(domain.token)) {
            return Err((Error::DomainBusy, domain));
        }
        let scope = self.scope(domain.stage, domain.id);
        if let Err(e) = self
            .cmdq
            .issue(&self.hal, &self.regs, &[scope.wide_command()], true)
        {
            return Err((e, domain));
        }
        let _ = match domain.stage {
            DomainStage::Stage1 => self.asids.free(domain.id),
            DomainStage::Stage2 => self.vmids.free(domain.id),
        };
        // Nothing refers to the tables any more: the page table frees them as it drops.
        drop(domain.into_table());
        Ok(())
    }

    fn scope(&self, stage: DomainStage, id: u16) -> TlbScope {
        match stage {
            DomainStage::Stage1 if self.e2h => TlbScope::Stage1El2 { asid: id },
            DomainStage::Stage1 => TlbScope::Stage1 { vmid: 0, asid: id },
            DomainStage::Stage2 => TlbScope::Stage2 { vmid: id },
        }
    }

    /// Attaches `master` to a paging domain. Stage 1: the domain's CD is written (hitlessly)
    /// at SubstreamID 0 of the master's CD table, then the STEs point at the table; stage 2:
    /// the STEs hold the domain's table and VMID. Every STE change goes through the hitless
    /// writer (SPEC D4); the attach completes for every StreamID or leaves every STE as it
    /// was, and a deferred STE stops being deferred only when it completed (SPEC D12, K11).
    pub fn attach<A: TableAllocator>(
        &self,
        master: MasterId,
        domain: &Domain<A>,
    ) -> Result<(), Error> {
        self.check_domain(domain)?;
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        let strtab = self.strtab.read();
        self.config
            .policy
            .check_attach(m.protected, domain.kind(), domain.protected)?;
        let caps = self.caps(m, true);
        let now = Attachment::Paging {
            token: domain.token,
            stage: domain.stage,
            id: domain.id,
        };
        let target = match domain.stage {
            DomainStage::Stage1 => {
                let cd = stage1_cd(&domain.table, domain.id, caps.stall)?;
                // The CD table must exist for the STE to point at it; creating it (empty)
                // changes nothing the SMMU uses.
                self.prepare_cd0(m)?;
                let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?.pointer();
                AttachTarget {
                    ste: make::ste_image(&make::cd_table_ste(
                        self.entry_features,
                        caps,
                        table,
                        S1Dss::Substream0,
                    )),
                    cd0: Some(make::cd_image(&cd)),
                    now,
                }
            }
            DomainStage::Stage2 => AttachTarget {
                ste: make::ste_image(&make::s2_ste(
                    self.entry_features,
                    caps,
                    stage2_table(&domain.table)?,
                    domain.id,
                )),
                cd0: None,
                now,
            },
        };
        self.commit(m, &strtab, &target)
    }

    /// Makes CD 0 of the master's CD table addressable, creating the table on first use, and
    /// returns what it holds now. Nothing the SMMU translates with changes: a new table or
    /// leaf is all-invalid, and a new level-1 descriptor replaces an invalid one.
    fn prepare_cd0(&self, m: &mut Master) -> Result<[u64; ENTRY_QWORDS], Error> {
        if m.cd.is_none() {
            let table = CdTable::new(
                &self.hal,
                u32::from(m.ssid_bits),
                self.features.cd2l,
                self.coherent,
            )?;
            m.cd = Some(table);
        }
        let table = m.cd.as_mut().ok_or(Error::NoSuchMaster)?;
        let prepared = table.prepare(&self.hal, 0)?;
        if prepared == CdPrepared::NewLevel1Descriptor {
            let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
            for &sid in &m.sids {
                batch.add(Command::CfgiCd {
                    sid,
                    ssid: 0,
                    leaf: false,
                })?;
            }
            batch.submit()?;
        }
        let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?;
        let (buf, first) = table.locate(0)?;
        let mut image = [0u64; ENTRY_QWORDS];
        for (i, w) in image.iter_mut().enumerate() {
            *w = buf.read(&self.hal, first + i)?;
        }
        Ok(image)
    }

    /// CD 0 of the master's CD table (prepared by [`Smmu::prepare_cd0`]) as the entry
    /// writer sees it.
    fn cd0_slot<'a>(&'a self, m: &'a Master) -> Result<LiveEntry<'a, R, H>, Error> {
        let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?;
        let (buf, first) = table.locate(0)?;
        if first + ENTRY_QWORDS > buf.words() {
            return Err(Error::SubstreamIdOutOfRange(0));
        }
        Ok(LiveEntry {
            buf,
            first,
            hal: &self.hal,
            regs: &self.regs,
            cmdq: &self.cmdq,
            invalidate: Invalidate::Cd {
                sids: &m.sids,
                ssid: 0,
            },
            failed: None,
        })
    }

    /// Writes CD 0 hitlessly. EL1 and EL2-E2H StreamWorlds both honour `EPDx` (the only
    /// ones this driver uses), hence [`CdRules::EL1`].
    fn write_cd0(&self, m: &Master, cd: &[u64; ENTRY_QWORDS]) -> Result<(), Error> {
        write_entry(&CdRules::EL1, &mut self.cd0_slot(m)?, cd).map_err(|e| e.error)?;
        Ok(())
    }

    /// Puts CD 0 back to `image` after a failed write, as [`Smmu::restore_ste`] does.
    fn restore_cd0(&self, m: &Master, image: &[u64; ENTRY_QWORDS]) -> Result<(), Error> {
        let mut slot = self.cd0_slot(m)?;
        slot.sync()?;
        write_entry(&CdRules::EL1, &mut slot, image).map_err(|e| e.error)?;
        Ok(())
    }

    /// Maps `[iova, iova + size)` to `pa` in a domain. A protected domain refuses physical
    /// memory outside the platform's shared windows before anything changes (SPEC D9).
    ///
    /// Takes the domain by shared reference: several CPUs may map and unmap disjoint ranges of
    /// one domain at once (see [`PageTable`](smmu_pagetable::PageTable) for what overlapping
    /// calls may do).
    pub fn map<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        iova: Iova,
        pa: PhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), Error> {
        self.check_domain(domain)?;
        self.config
            .policy
            .check_map(domain.protected, self.hal.shared_windows(), pa, size)?;
        domain.table.map(iova, pa, size, prot)?;
        Ok(())
    }

    /// Unmaps `[iova, iova + size)` from a domain and invalidates it (SPEC D6): range TLBIs
    /// (or per-page, or one ASID/VMID-wide TLBI), then ATC invalidations for attached ATS
    /// masters, one `CMD_SYNC` each; tables the unmap emptied are freed only after that.
    /// Returns the bytes unmapped.
    pub fn unmap<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        iova: Iova,
        size: u64,
    ) -> Result<u64, Error> {
        self.check_domain(domain)?;
        let mut gather = Gather::new();
        let unmapped = domain.table.unmap(iova, size, &mut gather);
        // Whatever the unmap did before failing has to be invalidated too.
        self.invalidate(domain, &gather, iova, size)?;
        // SAFETY: the invalidation covering every table in the gather has completed (its
        // CMD_SYNC returned), so the SMMU can no longer walk them.
        unsafe { domain.table.release(&mut gather) }?;
        Ok(unmapped?)
    }

    fn invalidate<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        gather: &Gather,
        iova: Iova,
        size: u64,
    ) -> Result<(), Error> {
        if gather.is_empty() {
            return Ok(());
        }
        let caps = InvalCaps {
            ril: self.features.range_invalidation,
            max_ops: self.config.max_invalidation_ops,
        };
        let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
        tlbi_commands(
            gather.ranges(),
            self.scope(domain.stage, domain.id),
            &caps,
            &mut |c| batch.add(c),
        )?;
        batch.submit()?;
        // ATC invalidation only after the TLB invalidation completed (§3.9.1).
        if self.ats_masters.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let mut atc = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
        for slot in &self.masters {
            // The StreamIDs are copied out so that no master lock is held while the batch
            // waits for the queue. A master that attaches after the look saw the table
            // already unmapped and invalidated; one that detaches gets a harmless extra
            // invalidation.
            let sids = match slot.lock().as_ref() {
                Some(m) if m.ats && m.refers_to(domain.token) => m.sids.clone(),
                _ => continue,
            };
            for sid in sids {
                atc_commands(sid, None, iova.0, size, &mut |c| atc.add(c))?;
            }
        }
        if !atc.is_empty() {
            atc.submit()?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ events

    /// Drains the event queue into `handler` (SPEC D7). Returns the records consumed.
    ///
    /// Callable from interrupt context on any CPU at once: a call that finds another CPU
    /// draining returns 0 at once and that CPU delivers the records to its own handler (see
    /// [`OutputQueue::drain_events`]).
    pub fn handle_events(&self, handler: &mut dyn FnMut(EventReport)) -> Result<u32, Error> {
        let handler = &mut |event: EventReport| {
            report!(warn, "SMMU event: {event:?}");
            handler(event);
        };
        match self.evtq.as_ref() {
            Some(q) => Ok(q
                .drain_events(&self.hal, &self.regs, handler)
                .map_err(Error::Drain)?
                .consumed),
            None => Ok(0),
        }
    }

    /// Drains the PRI queue into `handler` (SPEC D7), from any CPU as
    /// [`Smmu::handle_events`].
    pub fn handle_page_requests(&self, handler: &mut dyn FnMut(PriReport)) -> Result<u32, Error> {
        match self.priq.as_ref() {
            Some(q) => Ok(q
                .drain_page_requests(&self.hal, &self.regs, handler)
                .map_err(Error::Drain)?
                .consumed),
            None => Ok(0),
        }
    }

    /// Handles global errors (SPEC D7): acknowledges what can be acknowledged; service
    /// failure mode is reported every time and never acknowledged away; `CMDQ_ERR` is left
    /// to the command queue's recovery.
    pub fn handle_gerror(&self) -> GerrorReport {
        let report = evtq::acknowledge_global_errors(&self.regs);
        if report.service_failure {
            report!(error, "SMMU in service failure mode: {report:?}");
        } else if !report.active.is_empty() {
            report!(warn, "SMMU global error: {report:?}");
        }
        report
    }

    /// Gives every buffer back, consuming the driver, and returns the register interface
    /// and the HAL. `self` passes through the stack: a driver built in place is released in
    /// place with [`Smmu::release_in`].
    ///
    /// # Safety
    /// The SMMU no longer uses any of the driver's structures: it was disabled (`CR0` = 0
    /// acknowledged) or reset, and no domain is attached.
    pub unsafe fn release(self) -> (R, H) {
        let mut slot = MaybeUninit::new(self);
        // SAFETY: `slot` holds a driver (just written); forwarded from the caller.
        unsafe { Self::release_in(&mut slot) }
    }

    /// Gives every buffer of the driver in `slot` back and returns the register interface
    /// and the HAL, leaving the slot uninitialised (ready for [`Smmu::new_in_with`] again).
    /// Nothing of the size of `Smmu` or its table passes through the stack.
    ///
    /// # Safety
    /// `slot` holds a driver (built by [`Smmu::new_in_with`] and not released since), and the
    /// SMMU no longer uses any of its structures: it was disabled (`CR0` = 0 acknowledged)
    /// or reset, and no domain is attached. The slot is not read as a driver afterwards.
    pub unsafe fn release_in(slot: &mut MaybeUninit<Self>) -> (R, H) {
        let p = slot.as_mut_ptr();
        // SAFETY: `slot` holds an initialised driver (caller). Each field is moved out once
        // with `ptr::read` (the masters one at a time, the table released where it is), and
        // the slot is treated as uninitialised afterwards (caller), so nothing is used or
        // given back twice. The SMMU no longer uses the buffers (caller).
        unsafe {
            let regs = core::ptr::read(addr_of!((*p).regs));
            let hal = core::ptr::read(addr_of!((*p).hal));
            let masters = addr_of_mut!((*p).masters).cast::<Mutex<Option<Master>>>();
            for i in 0..MAX_MASTERS {
                if let Some(Master { cd: Some(cd), .. }) =
                    core::ptr::read(masters.add(i)).into_inner()
                {
                    cd.release(&hal);
                }
            }
            let evtq = core::ptr::read(addr_of!((*p).evtq));
            let priq = core::ptr::read(addr_of!((*p).priq));
            for q in [evtq, priq].into_iter().flatten() {
                q.release(&hal);
            }
            core::ptr::read(addr_of!((*p).cmdq)).release(&hal);
            (*addr_of_mut!((*p).strtab)).get_mut().release(&hal);
            (regs, hal)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::vec::Vec as StdVec;

    use super::*;
    use crate::strtab::{Layout, OwnedStreamTable};
    use crate::testutil::{FakeRegs, HeapHal};

    /// Drop no `CMDQ_PROD` write.
    const NEVER: u64 = u64::MAX;

    /// A fake SMMU whose command queue consumes everything at each `CMDQ_PROD` write, except
    /// the writes from index `drop_from` (counted from 0, reset with it) up to
    /// `drop_from + drop_len`: those the "SMMU" never sees, so their `CMD_SYNC` times out.
    struct Stalls {
        drop_from: Arc<AtomicU64>,
        drop_len: Arc<AtomicU64>,
        seen: Arc<AtomicU64>,
    }

    impl Stalls {
        fn set(&self, from: u64, len: u64) {
            self.seen.store(0, Ordering::SeqCst);
            self.drop_len.store(len, Ordering::SeqCst);
            self.drop_from.store(from, Ordering::SeqCst);
        }
    }

    fn fake_smmu_regs() -> (FakeRegs, Stalls) {
        let regs = FakeRegs::new();
        let stalls = Stalls {
            drop_from: Arc::new(AtomicU64::new(NEVER)),
            drop_len: Arc::new(AtomicU64::new(0)),
            seen: Arc::new(AtomicU64::new(0)),
        };
        let (from, len, seen) = (
            stalls.drop_from.clone(),
            stalls.drop_len.clone(),
            stalls.seen.clone(),
        );
        regs.on_write(move |file, w| match w.offset {
            offset::CR0 => file.set32(offset::CR0ACK, w.value as u32),
            offset::IRQ_CTRL => file.set32(offset::IRQ_CTRLACK, w.value as u32),
            offset::CMDQ_PROD => {
                let i = seen.fetch_add(1, Ordering::SeqCst);
                let start = from.load(Ordering::SeqCst);
                let dropped = i >= start && i - start < len.load(Ordering::SeqCst);
                if !dropped {
                    file.set32(offset::CMDQ_CONS, w.value as u32);
                }
            }
            _ => {}
        });
        (regs, stalls)
    }

    fn features(msi: bool) -> Features {
        // IDR0: S2P, S1P, AArch64 tables, COHACC, MSI (optional), no stalls. IDR1: CMDQS 8,
        // SIDSIZE 4. IDR5: 4K granule, 48-bit OAS.
        let idr0 = 0b11 | 0b10 << 2 | 1 << 4 | u32::from(msi) << 13 | 0b01 << 24;
        let ids = crate::arch::idr::IdRegs {
            idr: [idr0, 8 << 21 | 4, 0, 0, 0, 1 << 4 | 0b101],
            iidr: 0,
            aidr: 0,
        };
        Features::decode(&ids)
    }

    fn config() -> SmmuConfig {
        SmmuConfig {
            budget: PollBudget(20),
            evtq_log2: None,
            ..SmmuConfig::default()
        }
    }

    type TestSmmu<'a> = Smmu<&'a FakeRegs, &'a HeapHal, OwnedStreamTable>;

    fn new_smmu<'a>(regs: &'a FakeRegs, hal: &'a HeapHal, msi: bool) -> TestSmmu<'a> {
        let abort = make::ste_image(&make::abort_ste());
        let table = OwnedStreamTable::new(hal, Layout::Linear, 4, true, &abort).unwrap();
        Smmu::new(regs, hal, features(msi), table, config()).unwrap()
    }

    fn stes(smmu: &TestSmmu<'_>, sids: &[u32]) -> StdVec<[u64; ENTRY_QWORDS]> {
        sids.iter()
            .map(|&s| {
                smmu.with_stream_table(|t| {
                    TestSmmu::locate_ste(t, s)
                        .unwrap()
                        .read(smmu.hal())
                        .unwrap()
                })
            })
            .collect()
    }

    // spec: D12, K11
    #[test]
    fn an_attach_failing_at_any_submission_leaves_every_ste_as_it_was() {
        let hal = HeapHal::new();
        let (regs, stalls) = fake_smmu_regs();
        let smmu = new_smmu(&regs, &hal, false);
        let sids = [1, 2, 3];
        let m = smmu
            .add_master(&MasterConfig {
                sids: &sids,
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .unwrap();
        let before = stes(&smmu, &sids);
        let mut failures = 0;
        for n in 0..32 {
            stalls.set(n, 1);
            let result = smmu.attach_identity(m);
            stalls.set(NEVER, 0);
            if result.is_ok() {
                break;
            }
            failures += 1;
            assert_eq!(result, Err(Error::Timeout(WaitFor::CmdSync)), "n {n}");
            assert_eq!(smmu.attachment(m).unwrap(), Attachment::Initial, "n {n}");
            assert_eq!(stes(&smmu, &sids), before, "n {n}");
        }
        assert!(failures >= sids.len(), "{failures}");
        assert_eq!(smmu.attachment(m).unwrap(), Attachment::Identity);
        let bypass = make::ste_image(&make::bypass_ste(smmu.entry_features));
        assert!(stes(&smmu, &sids).iter().all(|s| *s == bypass));

        // The queue stops for good in the middle: undoing fails too, and the record says so.
        stalls.set(1, u64::MAX);
        assert!(smmu.attach_blocked(m).is_err());
        assert_eq!(smmu.attachment(m).unwrap(), Attachment::Indeterminate);
        stalls.set(NEVER, 0);
        smmu.attach_blocked(m).unwrap();
        assert_eq!(smmu.attachment(m).unwrap(), Attachment::Blocked);
        assert_eq!(stes(&smmu, &sids), before);
        // SAFETY: a fake SMMU; nothing uses the buffers any more.
        unsafe { smmu.release() };
        assert_eq!(hal.live_allocations(), 0);
    }

    const IRQ_PLAN: ResetPlan = ResetPlan {
        steps: &[
            ResetStep::ConfigureInterrupts,
            ResetStep::EnableGlobalErrorInterruptOnly,
        ],
        on_failure: OnFailure::Report,
    };

    // spec: K8, D11
    #[test]
    fn interrupts_are_disabled_and_their_msis_turned_off_before_one_is_enabled() {
        let hal = HeapHal::new();
        let (regs, _stalls) = fake_smmu_regs();
        // What a previous kernel left: its MSI doorbell, GERROR and EVTQ interrupts on.
        regs.set64(offset::GERROR_IRQ_CFG0, 0x8000_1000);
        regs.set32(offset::GERROR_IRQ_CFG1, 0xdead);
        regs.set32(offset::IRQ_CTRL, 0b101);
        regs.set32(offset::IRQ_CTRLACK, 0b101);
        let mut smmu = new_smmu(&regs, &hal, true);
        smmu.reset(&IRQ_PLAN).unwrap();
        let order: StdVec<(usize, u64)> = regs
            .writes()
            .iter()
            .map(|w| (w.offset, w.value))
            .filter(|(o, _)| {
                [
                    offset::IRQ_CTRL,
                    offset::GERROR_IRQ_CFG0,
                    offset::GERROR_IRQ_CFG1,
                    offset::GERROR_IRQ_CFG2,
                ]
                .contains(o)
            })
            .collect();
        assert_eq!(
            order,
            [
                (offset::IRQ_CTRL, 0),
                (offset::GERROR_IRQ_CFG0, 0),
                (offset::GERROR_IRQ_CFG1, 0),
                (offset::GERROR_IRQ_CFG2, 0),
                (offset::IRQ_CTRL, 1),
            ]
        );
        // SAFETY: a fake SMMU; nothing uses the buffers any more.
        unsafe { smmu.release() };

        // An SMMU that ignores the write: a typed error, the interrupt stays off.
        let (regs, _stalls) = fake_smmu_regs();
        regs.set64(offset::GERROR_IRQ_CFG0, 0x8000_1000);
        regs.on_write(|file, w| match w.offset {
            offset::IRQ_CTRL => file.set32(offset::IRQ_CTRLACK, w.value as u32),
            offset::GERROR_IRQ_CFG0 => file.set64(offset::GERROR_IRQ_CFG0, 0x8000_1000),
            _ => {}
        });
        let mut smmu = new_smmu(&regs, &hal, true);
        assert_eq!(
            smmu.reset(&IRQ_PLAN),
            Err(Error::WriteNotTaken("GERROR_IRQ_CFG0"))
        );
        assert_eq!(regs.get32(offset::IRQ_CTRL), 0);
        // SAFETY: as above.
        unsafe { smmu.release() };
        assert_eq!(hal.live_allocations(), 0);
    }
}

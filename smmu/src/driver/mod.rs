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

mod bringup;
mod domains;
mod masters;
mod nested;
pub use nested::NestedDomain;
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
    /// A stage-2 nesting parent ([`DomainOptions::nesting_parent`]).
    pub nesting_parent: bool,
}

impl DomainOptions {
    /// A domain of `stage`, not protected.
    pub const fn new(stage: DomainStage) -> Self {
        Self {
            stage,
            protected: false,
            nesting_parent: false,
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

    /// A stage-2 domain that nested domains may be built on (SPEC D13; Linux's nesting
    /// parent): its unmaps also remove the combined stage-1+2 TLB entries of the guests on it.
    pub const fn nesting_parent() -> Self {
        Self {
            nesting_parent: true,
            ..Self::stage2()
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
    /// A nested domain (SPEC D13): the guest's stage 1 over a nesting parent's stage 2.
    Nested {
        /// The nested domain's token.
        token: u32,
        /// The nesting parent's token: it cannot be freed while this is attached.
        parent: u32,
        /// The parent's VMID, which tags the master's TLB entries.
        vmid: u16,
    },
    /// An attach failed part-way and putting the previous STEs (and CD) back failed too,
    /// typically because the command queue stopped completing: each STE holds the previous
    /// configuration or the new one, and which is not known. Every domain either may use
    /// stays referenced (it cannot be freed) until an attach completes; a deferred STE stays
    /// deferred (SPEC K11, D12).
    Indeterminate,
}

impl Attachment {
    /// The token of the paging or nested domain, if this is one.
    fn token(self) -> Option<u32> {
        match self {
            Attachment::Paging { token, .. } | Attachment::Nested { token, .. } => Some(token),
            _ => None,
        }
    }

    /// Every domain the STEs use: a nested domain uses its parent's stage 2 too.
    fn tokens(self) -> [Option<u32>; 2] {
        match self {
            Attachment::Nested { token, parent, .. } => [Some(token), Some(parent)],
            other => [other.token(), None],
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
        self.attached.tokens().contains(&Some(token)) || self.lingering.contains(&token)
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
mod test_support;

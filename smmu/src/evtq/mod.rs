//! The output queues (Event queue and PRI queue) and global errors (SPEC D7).
//!
//! - [`OutputQueue`]: a queue the SMMU produces into and software consumes from (IHI 0070 G.b
//!   §3.5.1), shared by the Event queue (32-byte records, §7.3) and the PRI queue (16-byte
//!   records, chapter 8). It owns its DMA memory, computes its `SMMU_EVENTQ_BASE` /
//!   `SMMU_PRIQ_BASE` value (§6.3.29, §6.3.33), and drains records into typed values
//!   ([`EventReport`], [`PriReport`]), handling wrap and overflow (`OVFLG`/`OVACKFLG`, §7.4,
//!   §8.1). A hostile `PROD` is a typed [`DrainError`], never an out-of-bounds access or an
//!   unbounded loop: one drain consumes at most one queue's worth of records.
//! - [`global_errors`], [`acknowledge_global_errors`], [`acknowledge_only`]: `SMMU_GERROR`
//!   and `SMMU_GERRORN` (§6.3.19, §6.3.20, §7.5). An error is active while the two registers
//!   differ in its bit; it is acknowledged by toggling its `GERRORN` bit. `SFM_ERR` is
//!   reported every time and never acknowledged away; `CMDQ_ERR` is left to the command
//!   queue's error recovery.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::access::RegisterAccess;
use crate::arch::event::{Event, EventRecord};
use crate::arch::idr::Features;
use crate::arch::pri::{PageRequest, PriRecord};
use crate::arch::queue::{GlobalErrors, QueuePtr, MAX_LOG2_ENTRIES, OVERFLOW_FLAG};
use crate::arch::regs::{offset, EVTQ_BASE, EVTQ_CONS};
use crate::arch::DecodeError;
use crate::dma::{DmaBuf, OutOfBounds};
use crate::hal::{Hal, HalError, PhysAddr};
use crate::sync::AtomicU32;

/// Which output queue an [`OutputQueue`] is: it picks the registers and the record size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// The Event queue: `SMMU_EVENTQ_*`, 32-byte records (§7.3).
    Event,
    /// The PRI queue: `SMMU_PRIQ_*`, 16-byte records (chapter 8).
    Pri,
}

impl QueueKind {
    /// Bytes per record: 32 for events, 16 for page requests.
    pub const fn record_size(self) -> usize {
        match self {
            QueueKind::Event => EventRecord::SIZE,
            QueueKind::Pri => PriRecord::SIZE,
        }
    }

    /// 64-bit words per record.
    pub const fn record_words(self) -> usize {
        match self {
            QueueKind::Event => EventRecord::WORDS,
            QueueKind::Pri => PriRecord::WORDS,
        }
    }

    /// Offset of `SMMU_EVENTQ_BASE` / `SMMU_PRIQ_BASE` (page 0).
    pub const fn base_offset(self) -> usize {
        match self {
            QueueKind::Event => offset::EVTQ_BASE,
            QueueKind::Pri => offset::PRIQ_BASE,
        }
    }

    /// Offset of `SMMU_EVENTQ_PROD` / `SMMU_PRIQ_PROD` (page 1).
    pub const fn prod_offset(self) -> usize {
        match self {
            QueueKind::Event => offset::EVTQ_PROD,
            QueueKind::Pri => offset::PRIQ_PROD,
        }
    }

    /// Offset of `SMMU_EVENTQ_CONS` / `SMMU_PRIQ_CONS` (page 1).
    pub const fn cons_offset(self) -> usize {
        match self {
            QueueKind::Event => offset::EVTQ_CONS,
            QueueKind::Pri => offset::PRIQ_CONS,
        }
    }

    /// The largest log2 size this SMMU supports for the queue (`IDR1.EVENTQS` / `IDR1.PRIQS`).
    /// A `LOG2SIZE` above it is capped by the SMMU (§6.3.29), which would move the wrap bit
    /// away from where software expects it, so callers clamp to this.
    pub fn max_log2_entries(self, features: &Features) -> u32 {
        u32::from(match self {
            QueueKind::Event => features.evtq_log2_max,
            QueueKind::Pri => features.priq_log2_max,
        })
    }
}

/// Why an output queue could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// More than 2^19 entries asked for (§3.5.1: 0 ≤ n ≤ 19).
    TooLarge {
        /// The log2 size asked for.
        log2_entries: u32,
    },
    /// The HAL's memory lies above what `ADDR[55:5]` of the base register can hold.
    AddressTooWide {
        /// Where the memory was.
        pa: PhysAddr,
    },
    /// The HAL could not allocate the queue.
    Hal(HalError),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::TooLarge { log2_entries } => {
                write!(
                    f,
                    "queue of 2^{log2_entries} entries exceeds the 2^19 maximum"
                )
            }
            QueueError::AddressTooWide { pa } => {
                write!(
                    f,
                    "queue memory at {:#x} is above the 56-bit queue base",
                    pa.0
                )
            }
            QueueError::Hal(e) => write!(f, "queue allocation failed: {e}"),
        }
    }
}

impl core::error::Error for QueueError {}

/// Why a drain stopped without consuming (or before consuming everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainError {
    /// [`OutputQueue::drain_events`] on a PRI queue or [`OutputQueue::drain_page_requests`]
    /// on an Event queue.
    WrongKind {
        /// What the queue is.
        queue: QueueKind,
    },
    /// `PROD` has bits set that must read as zero (bits \[30:QS+1\], §6.3.95, §6.3.97): an
    /// index beyond the queue, garbage, or the all-ones of a dead bus. Nothing was consumed
    /// and `CONS` was not written.
    BadProd {
        /// The raw `PROD` value.
        prod: u32,
    },
    /// `PROD` is more than a queue's worth ahead of `CONS` (an inconsistent state, §3.5.1):
    /// which records are valid is unknown. Nothing was consumed and `CONS` was not written.
    Inconsistent {
        /// The raw `PROD` value.
        prod: u32,
        /// The `CONS` value software last wrote.
        cons: u32,
    },
    /// A record slot outside the queue memory (cannot happen for a queue built by
    /// [`OutputQueue::new`]; kept as a typed error rather than an assumption). The records
    /// before it were delivered and `CONS` covers them.
    OutOfBounds(OutOfBounds),
}

impl fmt::Display for DrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainError::WrongKind { queue } => write!(f, "wrong drain for the {queue:?} queue"),
            DrainError::BadProd { prod } => write!(f, "PROD {prod:#010x} has reserved bits set"),
            DrainError::Inconsistent { prod, cons } => write!(
                f,
                "PROD {prod:#010x} is more than a queue ahead of CONS {cons:#010x}"
            ),
            DrainError::OutOfBounds(e) => write!(f, "queue slot out of bounds: {e}"),
        }
    }
}

impl core::error::Error for DrainError {}

/// One item delivered by [`OutputQueue::drain_events`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReport {
    /// A decoded event record.
    Event(Event),
    /// A record with a reserved event number or field value, kept raw.
    Undecodable {
        /// The record's words, lowest-addressed first.
        words: [u64; EventRecord::WORDS],
        /// What is reserved.
        error: DecodeError,
    },
    /// The SMMU discarded one or more event records because the queue was full (§7.4). Sent
    /// once per overflow condition, after the records of the drain that found it; the
    /// drain acknowledges it (`CONS.OVACKFLG = PROD.OVFLG`).
    Overflow,
}

/// One item delivered by [`OutputQueue::drain_page_requests`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriReport {
    /// A page request (every bit pattern decodes).
    Request(PageRequest),
    /// The SMMU discarded page requests because the queue was full, auto-responding to those
    /// with `Last == 1` (§8.1). Sent once per overflow condition, after the records of the
    /// drain that found it: a page request group whose `Last` request has not been seen by
    /// now must be dropped without a response. The drain acknowledges it.
    Overflow,
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainSummary {
    /// Records consumed (at most the queue's size).
    pub consumed: u32,
    /// An overflow condition was found, reported and acknowledged.
    pub overflow: bool,
    /// The queue was full when `PROD` was read: the SMMU may be holding back (stall) records
    /// or discarding others; drain again soon.
    pub was_full: bool,
    /// Another CPU was draining the queue: this call consumed nothing itself, and that CPU
    /// makes one more pass (reading `PROD` again) before it stops, so the records this call
    /// was for reach *its* handler.
    pub handed_over: bool,
    /// CPUs kept arriving while this one drained and it stopped after [`MAX_DRAIN_PASSES`]
    /// passes: records may be waiting that nobody else will drain; call again.
    pub again: bool,
}

impl DrainSummary {
    /// Adds one more pass of the same drainer.
    fn merge(&mut self, pass: &DrainSummary) {
        self.consumed = self.consumed.saturating_add(pass.consumed);
        self.overflow |= pass.overflow;
        self.was_full |= pass.was_full;
    }
}

/// At most this many passes in one drain: a drainer that CPUs keep handing work to stops
/// here (and says [`DrainSummary::again`]) so that one call stays bounded.
pub const MAX_DRAIN_PASSES: u32 = 8;
mod display;

/// Lets any number of CPUs call a drain at once (an interrupt handler on each, or a thread
/// and a poller) while exactly one consumes records: `CONS` and the record slots belong to
/// one reader at a time. Nobody waits: a CPU that finds a drainer leaves its request and
/// returns; the drainer sees the request when it tries to leave and makes another pass, so a
/// record published before any caller arrived is consumed before the last drainer leaves.
///
/// `requests` counts the callers since the drainer entered (0: nobody drains). The drainer
/// leaves only by swapping the count it last saw back to 0, so an arrival during a pass
/// makes that swap fail. 2^32 arrivals during one drain would wrap the count: impossible in
/// [`MAX_DRAIN_PASSES`] bounded passes.
#[derive(Debug)]
struct DrainGate {
    requests: AtomicU32,
}

impl DrainGate {
    fn new() -> Self {
        DrainGate {
            requests: AtomicU32::new(0),
        }
    }

    /// Runs `pass` as the drainer, again after every pass during which another caller
    /// arrived (up to [`MAX_DRAIN_PASSES`]), or hands over to the CPU already draining.
    fn run<E>(&self, mut pass: impl FnMut() -> Result<DrainSummary, E>) -> Result<DrainSummary, E> {
        // AcqRel: acquire the previous drainer's consumer state (its leaving store is a
        // release); release what this CPU saw before it asked (its interrupt), for the
        // drainer whose leaving swap reads this increment.
        if self.requests.fetch_add(1, Ordering::AcqRel) != 0 {
            return Ok(DrainSummary {
                handed_over: true,
                ..DrainSummary::default()
            });
        }
        let mut total = DrainSummary::default();
        let mut seen = 1;
        for _ in 0..MAX_DRAIN_PASSES {
            match pass() {
                Ok(d) => total.merge(&d),
                Err(e) => {
                    // The error goes to this caller; the next caller drains afresh.
                    self.requests.store(0, Ordering::Release);
                    return Err(e);
                }
            }
            match self
                .requests
                .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(total),
                Err(now) => seen = now,
            }
        }
        self.requests.store(0, Ordering::Release);
        total.again = true;
        Ok(total)
    }
}

/// `CONS` is written after at most this many records, and once at the end of a drain: the
/// SMMU gets space back during a long drain without a register write per record.
pub const CONS_BATCH: u32 = 32;

/// Orders the read of `PROD` before the reads of the records it covers (§3.5.2: an entry is
/// only valid once a `PROD` covering it has been observed). Linux: `readl` (`dma_rmb`).
#[inline(always)]
fn read_barrier() {
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: `dmb oshld` only orders memory accesses; it touches no memory, registers or
    // flags the compiler relies on.
    unsafe {
        core::arch::asm!("dmb oshld", options(nostack, preserves_flags));
    }
    #[cfg(any(not(target_arch = "aarch64"), miri))]
    core::sync::atomic::fence(Ordering::Acquire);
}

/// Orders the reads of consumed records before the `CONS` write that lets the SMMU reuse their
/// slots (a store barrier alone would not order the loads). Linux: `__iomb` before
/// `writel_relaxed(cons)`.
#[inline(always)]
fn consume_barrier() {
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: `dmb osh` only orders memory accesses; it touches no memory, registers or flags
    // the compiler relies on.
    unsafe {
        core::arch::asm!("dmb osh", options(nostack, preserves_flags));
    }
    #[cfg(any(not(target_arch = "aarch64"), miri))]
    core::sync::atomic::fence(Ordering::SeqCst);
}

/// The low-level result of a drain: the typed drains turn it into reports.
struct Drained {
    consumed: u32,
    overflow: bool,
    was_full: bool,
    fault: Option<OutOfBounds>,
}

/// An Event or PRI queue: DMA memory the SMMU writes records into, and the consumer state.
///
/// Lifecycle: [`OutputQueue::new`] allocates; the reset plan calls [`OutputQueue::program`]
/// while the queue is disabled (`CR0.EVENTQEN`/`PRIQEN` and their ACK bits 0), then enables
/// it; the interrupt thread calls [`OutputQueue::drain_events`] or
/// [`OutputQueue::drain_page_requests`]; after the queue is disabled again (or the SMMU is
/// reset), [`OutputQueue::release`] gives the memory back.
///
/// Software owns `CONS`: the queue keeps the value it last wrote (index, wrap and
/// `OVACKFLG`) and never reads the register back.
#[derive(Debug)]
pub struct OutputQueue {
    kind: QueueKind,
    log2: u32,
    buf: DmaBuf,
    /// `CONS` as last written (`RD`, `RD_WRAP`, `OVACKFLG`). Only the CPU inside `gate`
    /// changes it (and [`OutputQueue::program`], while the queue is disabled); atomic so that
    /// it can be shared, relaxed because the gate orders the drainers.
    cons: AtomicU32,
    gate: DrainGate,
}

impl OutputQueue {
    /// Allocates a queue of 2^`log2_entries` records, aligned to its size (at least 32
    /// bytes, §6.3.29: the SMMU ignores `ADDR` bits below that). `coherent` says whether the
    /// SMMU's queue accesses snoop the CPU caches (`IDR0.COHACC` and the platform).
    ///
    /// The caller keeps `log2_entries` within [`QueueKind::max_log2_entries`].
    pub fn new<H: Hal + ?Sized>(
        hal: &H,
        kind: QueueKind,
        log2_entries: u32,
        coherent: bool,
    ) -> Result<Self, QueueError> {
        if log2_entries > MAX_LOG2_ENTRIES {
            return Err(QueueError::TooLarge { log2_entries });
        }
        // At most 32 << 19 = 16 MiB: no overflow.
        let size = kind.record_size() << log2_entries;
        let buf = DmaBuf::alloc(hal, size, size.max(32), coherent).map_err(QueueError::Hal)?;
        let pa = buf.pa();
        let addr = EVTQ_BASE::ADDR;
        if (pa.0 >> addr.shift) & !addr.mask != 0 {
            // SAFETY: the buffer was allocated just now and no register points at it.
            unsafe { buf.release(hal) };
            return Err(QueueError::AddressTooWide { pa });
        }
        Ok(OutputQueue {
            kind,
            log2: log2_entries,
            buf,
            cons: AtomicU32::new(0),
            gate: DrainGate::new(),
        })
    }

    /// Which queue this is.
    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// log2 of the number of records.
    pub fn log2_entries(&self) -> u32 {
        self.log2
    }

    /// Number of records the queue holds.
    pub fn entries(&self) -> u32 {
        1 << self.log2
    }

    /// Physical address of the first record.
    pub fn pa(&self) -> PhysAddr {
        self.buf.pa()
    }

    /// The `CONS` value software last wrote (`RD`, `RD_WRAP`, `OVACKFLG`).
    pub fn cons(&self) -> u32 {
        self.cons.load(Ordering::Relaxed)
    }

    /// The `SMMU_EVENTQ_BASE` / `SMMU_PRIQ_BASE` value (§6.3.29, §6.3.33; the two have the
    /// same layout): `WA` = 1 (write-allocate hint for the SMMU's record writes, as Linux
    /// sets it; `RA` does not exist for output queues), `ADDR` = the queue's pa, `LOG2SIZE`.
    pub fn base_register(&self) -> u64 {
        let pa = self.buf.pa().0;
        (EVTQ_BASE::WA::SET
            + EVTQ_BASE::ADDR.val(pa >> EVTQ_BASE::ADDR.shift)
            + EVTQ_BASE::LOG2SIZE.val(u64::from(self.log2)))
        .value
    }

    /// Programs the queue: writes the base register and an empty queue (`PROD` = `CONS` = 0,
    /// so `OVFLG` = `OVACKFLG` = 0: no overflow pending), and resets the consumer state.
    ///
    /// Only while the queue is disabled (`CR0.EVENTQEN`/`PRIQEN` = 0 and acknowledged): the
    /// base and `PROD` registers are guarded by the enable (§6.3.29), and §3.5.1 has software
    /// initialise the indices before enabling.
    pub fn program<R: RegisterAccess + ?Sized>(&self, regs: &R) {
        regs.write64(self.kind.base_offset(), self.base_register());
        regs.write32(self.kind.prod_offset(), 0);
        regs.write32(self.kind.cons_offset(), 0);
        self.cons.store(0, Ordering::Relaxed);
    }

    /// Gives the queue memory back.
    ///
    /// # Safety
    /// The SMMU no longer writes to the queue: it is disabled (`CR0.EVENTQEN`/`PRIQEN` = 0
    /// acknowledged in `CR0ACK`), or the SMMU is reset or off, or the base register was
    /// reprogrammed to other memory while disabled.
    pub unsafe fn release<H: Hal + ?Sized>(self, hal: &H) {
        // SAFETY: the caller guarantees the SMMU no longer accesses the buffer.
        unsafe { self.buf.release(hal) };
    }

    /// Consumes the event records the SMMU has published, decodes each and hands it to
    /// `handler` in queue order, then reports [`EventReport::Overflow`] if an overflow
    /// condition was found (and acknowledges it).
    ///
    /// Reads `PROD` once and consumes at most one queue's worth; an interrupt thread that
    /// wants the queue empty calls again while `consumed > 0`. `CONS` is written every
    /// [`CONS_BATCH`] records and at the end (and once for an overflow acknowledgement
    /// alone). SPEC D7, D10.
    ///
    /// Any number of CPUs may call this at once (from interrupt context too: it never waits
    /// for another CPU): one drains, the others return at once with
    /// [`DrainSummary::handed_over`], and the drainer passes again for them, so their
    /// records reach the drainer's `handler`.
    pub fn drain_events<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        handler: &mut dyn FnMut(EventReport),
    ) -> Result<DrainSummary, DrainError> {
        if self.kind != QueueKind::Event {
            return Err(DrainError::WrongKind { queue: self.kind });
        }
        self.gate.run(|| {
            let d = self.drain_raw::<{ EventRecord::WORDS }, _, _>(hal, regs, |words| {
                handler(match EventRecord::from_words(words).decode() {
                    Ok(event) => EventReport::Event(event),
                    Err(error) => EventReport::Undecodable { words, error },
                });
            })?;
            if d.overflow {
                handler(EventReport::Overflow);
            }
            Self::finish(&d)
        })
    }

    /// Consumes the page requests the SMMU has published, in queue order, then reports
    /// [`PriReport::Overflow`] if an overflow condition was found (and acknowledges it).
    /// Bounded, batched and shared between CPUs as [`OutputQueue::drain_events`].
    pub fn drain_page_requests<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        handler: &mut dyn FnMut(PriReport),
    ) -> Result<DrainSummary, DrainError> {
        if self.kind != QueueKind::Pri {
            return Err(DrainError::WrongKind { queue: self.kind });
        }
        self.gate.run(|| {
            let d = self.drain_raw::<{ PriRecord::WORDS }, _, _>(hal, regs, |words| {
                handler(PriReport::Request(PriRecord::from_words(words).decode()));
            })?;
            if d.overflow {
                handler(PriReport::Overflow);
            }
            Self::finish(&d)
        })
    }

    fn finish(d: &Drained) -> Result<DrainSummary, DrainError> {
        match d.fault {
            Some(e) => Err(DrainError::OutOfBounds(e)),
            None => Ok(DrainSummary {
                consumed: d.consumed,
                overflow: d.overflow,
                was_full: d.was_full,
                ..DrainSummary::default()
            }),
        }
    }

    /// Reads `PROD`, validates it, copies out every published record of `W` words (`W` is the
    /// queue kind's record size: the callers check the kind), and writes `CONS`.
    fn drain_raw<const W: usize, H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        mut deliver: impl FnMut([u64; W]),
    ) -> Result<Drained, DrainError> {
        let prod_raw = regs.read32(self.kind.prod_offset());
        read_barrier();
        // Only OVFLG, WR_WRAP and WR may be set: bits [19:QS+1] are RAZ and [30:20] RES0.
        let valid = OVERFLOW_FLAG | ((2u32 << self.log2) - 1);
        if prod_raw & !valid != 0 {
            return Err(DrainError::BadProd { prod: prod_raw });
        }
        let prod = QueuePtr::new(prod_raw, self.log2);
        let cons_raw = self.cons.load(Ordering::Relaxed);
        let mut cons = QueuePtr::new(cons_raw, self.log2);
        let pending = QueuePtr::used(prod, cons);
        if pending > self.entries() {
            return Err(DrainError::Inconsistent {
                prod: prod_raw,
                cons: cons_raw,
            });
        }
        // §7.4, §8.1: the condition is present while OVFLG != OVACKFLG; our CONS shadow holds
        // the OVACKFLG we last wrote, so an overflow is reported once even if the SMMU were
        // slow to see the acknowledgement.
        let overflow = prod.overflow() != cons.overflow();
        let ack = prod.overflow();
        let mut d = Drained {
            consumed: 0,
            overflow,
            was_full: QueuePtr::is_full(prod, cons),
            fault: None,
        };
        let mut unpublished = 0;
        // `pending <= entries`: the loop is bounded by the queue size whatever PROD said.
        'records: while d.consumed < pending {
            let first = cons.index() as usize * W;
            let mut words = [0u64; W];
            for (k, word) in words.iter_mut().enumerate() {
                match self.buf.read(hal, first + k) {
                    Ok(v) => *word = v,
                    Err(e) => {
                        d.fault = Some(e);
                        break 'records;
                    }
                }
            }
            deliver(words);
            cons = cons.advance(1);
            d.consumed += 1;
            unpublished += 1;
            if unpublished == CONS_BATCH {
                self.publish_cons(regs, cons, ack);
                unpublished = 0;
            }
        }
        // The last batch, or the overflow acknowledgement alone (the spec expects it on the
        // first consumption after the condition arose: §7.4).
        if unpublished > 0 || (overflow && d.consumed == 0) {
            self.publish_cons(regs, cons, ack);
        }
        Ok(d)
    }

    /// Writes `CONS` = (`cons`'s index and wrap, `OVACKFLG` = `ack`) and remembers it.
    fn publish_cons<R: RegisterAccess + ?Sized>(&self, regs: &R, cons: QueuePtr, ack: bool) {
        consume_barrier();
        let value =
            (EVTQ_CONS::RD.val(cons.value()) + EVTQ_CONS::OVACKFLG.val(u32::from(ack))).value;
        regs.write32(self.kind.cons_offset(), value);
        self.cons.store(value, Ordering::Relaxed);
    }
}

/// Errors [`acknowledge_global_errors`] reports but never acknowledges:
///
/// - `SFM_ERR`: the SMMU is in Service Failure Mode; acknowledging the bit would not leave it
///   (§6.3.19: it is left in an IMPLEMENTATION DEFINED way, in practice a reset), and leaving
///   the bit active keeps the condition visible to everyone who looks later — including a
///   crash kernel deciding whether to adopt (SPEC K1) — so it is reported every time.
/// - `CMDQ_ERR`: the command queue stopped at a failing command (`CMDQ_CONS.ERR`, §7.1) and
///   resumes as soon as the error is acknowledged. The command queue's own recovery must
///   first deal with the command at `CMDQ_CONS.RD` (replace it, for example with a
///   `CMD_SYNC` as Linux does, and fail its caller), then acknowledge with
///   [`acknowledge_only`]`(regs, GlobalErrors::CMDQ_ERR)`.
pub const NOT_ACKNOWLEDGED: GlobalErrors = GlobalErrors::SFM_ERR.union(GlobalErrors::CMDQ_ERR);

/// The active global errors: `SMMU_GERROR` XOR `SMMU_GERRORN` (§6.3.19), defined bits only.
pub fn global_errors<R: RegisterAccess + ?Sized>(regs: &R) -> GlobalErrors {
    GlobalErrors::active(regs.read32(offset::GERROR), regs.read32(offset::GERRORN))
}

/// What [`acknowledge_global_errors`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GerrorReport {
    /// Every active error (defined bits of `GERROR ^ GERRORN`).
    pub active: GlobalErrors,
    /// The errors acknowledged now (their `GERRORN` bits toggled): `active` minus
    /// [`NOT_ACKNOWLEDGED`].
    pub acknowledged: GlobalErrors,
    /// `SFM_ERR` is active: the SMMU has stopped translating, processing commands and
    /// recording events until it is reset. Reported on every call.
    pub service_failure: bool,
    /// `CMDQ_ERR` is active: the command queue is stopped and waits for its recovery.
    pub command_queue_error: bool,
    /// Bits of `GERROR ^ GERRORN` with no defined meaning (reserved, RES0): reported, never
    /// toggled.
    pub reserved: u32,
}

impl GerrorReport {
    /// The errors still active after this acknowledgement.
    pub fn still_active(&self) -> GlobalErrors {
        self.active.difference(self.acknowledged)
    }
}

/// Reads `SMMU_GERROR` and `SMMU_GERRORN` and acknowledges every active error by toggling
/// its `GERRORN` bit in one write, except those in [`NOT_ACKNOWLEDGED`] (`SFM_ERR`,
/// `CMDQ_ERR`), which are reported and left active. Inactive errors and reserved bits are
/// never toggled (§6.3.20: toggling an inactive error is CONSTRAINED UNPREDICTABLE). SPEC D7.
///
/// The caller acts on the report: `EVENTQ_ABT_ERR` / `PRIQ_ABT_ERR` mean records may have
/// been lost and the queue stopped being written (§7.5); the `MSI_*_ABT_ERR` bits mean an
/// MSI went nowhere.
pub fn acknowledge_global_errors<R: RegisterAccess + ?Sized>(regs: &R) -> GerrorReport {
    let gerror = regs.read32(offset::GERROR);
    let gerrorn = regs.read32(offset::GERRORN);
    let active = GlobalErrors::active(gerror, gerrorn);
    let acknowledged = active.difference(NOT_ACKNOWLEDGED);
    if !acknowledged.is_empty() {
        regs.write32(offset::GERRORN, gerrorn ^ acknowledged.bits());
    }
    GerrorReport {
        active,
        acknowledged,
        service_failure: active.contains(GlobalErrors::SFM_ERR),
        command_queue_error: active.contains(GlobalErrors::CMDQ_ERR),
        reserved: (gerror ^ gerrorn) & !GlobalErrors::all().bits(),
    }
}

/// Acknowledges those of `which` that are active now (for the command queue's recovery:
/// `GlobalErrors::CMDQ_ERR` once the failing command is dealt with) and returns them.
/// `SFM_ERR` is never acknowledged (see [`NOT_ACKNOWLEDGED`]), even when asked.
pub fn acknowledge_only<R: RegisterAccess + ?Sized>(regs: &R, which: GlobalErrors) -> GlobalErrors {
    let gerror = regs.read32(offset::GERROR);
    let gerrorn = regs.read32(offset::GERRORN);
    let ack = GlobalErrors::active(gerror, gerrorn)
        .intersection(which)
        .difference(GlobalErrors::SFM_ERR);
    if !ack.is_empty() {
        regs.write32(offset::GERRORN, gerrorn ^ ack.bits());
    }
    ack
}

#[cfg(test)]
mod tests {
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::arch::event::{Fault, FaultClass, StreamRef, TranslationFault};
    use crate::arch::regs::RegWidth;
    use crate::host::HostHal;
    use crate::testutil::FakeRegs;

    const CASES: u32 = if cfg!(miri) { 8 } else { 256 };

    /// The SMMU side of a test: writes records at its PROD and publishes PROD.
    struct Producer {
        prod: QueuePtr,
        log2: u32,
    }

    impl Producer {
        fn new(q: &OutputQueue) -> Self {
            Producer {
                prod: QueuePtr::new(0, q.log2),
                log2: q.log2,
            }
        }

        /// Writes one record at PROD and advances PROD (not yet visible).
        fn push(&mut self, hal: &HostHal, q: &OutputQueue, words: &[u64]) {
            assert_eq!(words.len(), q.kind.record_words());
            let first = self.prod.index() as usize * words.len();
            for (k, w) in words.iter().enumerate() {
                hal.write_u64(q.buf.pa_of(first + k), *w);
            }
            self.prod = self.prod.advance(1);
        }

        /// Toggles OVFLG: the SMMU discarded a record (§7.4).
        fn overflow(&mut self) {
            self.prod = QueuePtr::new(self.prod.raw() ^ OVERFLOW_FLAG, self.log2);
        }

        /// Makes PROD visible.
        fn publish(&self, regs: &FakeRegs, kind: QueueKind) {
            regs.set32(kind.prod_offset(), self.prod.raw());
        }
    }

    fn event(sid: u32) -> Event {
        Event::BadSte(StreamRef { sid, ssid: None })
    }

    fn event_words(sid: u32) -> [u64; 4] {
        event(sid).encode().to_words()
    }

    fn request(sid: u32) -> PageRequest {
        PageRequest {
            sid,
            ssid: Some(sid ^ 0x55),
            privileged: false,
            exec: false,
            read: true,
            write: sid.is_multiple_of(2),
            last: sid.is_multiple_of(3),
            prg_index: (sid % 512) as u16,
            addr: u64::from(sid) << 12,
        }
    }

    fn drain_events(
        q: &OutputQueue,
        hal: &HostHal,
        regs: &FakeRegs,
    ) -> (Result<DrainSummary, DrainError>, Vec<EventReport>) {
        let mut got = Vec::new();
        let r = q.drain_events(hal, regs, &mut |e| got.push(e));
        (r, got)
    }

    fn setup(kind: QueueKind, log2: u32) -> (HostHal, FakeRegs, OutputQueue) {
        let hal = HostHal::new();
        let regs = FakeRegs::new();
        let q = OutputQueue::new(&hal, kind, log2, true).unwrap();
        q.program(&regs);
        (hal, regs, q)
    }

    fn release(q: OutputQueue, hal: &HostHal) {
        // SAFETY: no SMMU reaches the queue in these tests.
        unsafe { q.release(hal) };
        assert_eq!(hal.live_allocations(), 0, "the queue leaked its memory");
    }

    #[test]
    fn events_are_decoded_and_delivered_in_order() {
        // spec: D7 — every record decoded into a typed event, in queue order.
        let (hal, regs, q) = setup(QueueKind::Event, 3);
        let mut smmu = Producer::new(&q);
        let translation = Event::Translation(TranslationFault {
            fault: Fault {
                stream: StreamRef {
                    sid: 7,
                    ssid: Some(3),
                },
                stall: true,
                stag: 0x42,
                privileged: false,
                instruction: false,
                read: true,
                stage2: false,
                class: FaultClass::Input,
                tt_read: false,
                input_addr: 0xdead_b000,
            },
            ipa: 0,
        });
        smmu.push(&hal, &q, &event_words(1));
        smmu.push(&hal, &q, &translation.encode().to_words());
        smmu.push(&hal, &q, &event_words(2));
        // A record written but not yet covered by PROD is not consumed (§3.5.2).
        let mut unpublished = Producer { ..smmu };
        smmu.publish(&regs, QueueKind::Event);
        unpublished.push(&hal, &q, &event_words(99));

        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(
            r,
            Ok(DrainSummary {
                consumed: 3,
                overflow: false,
                was_full: false,
                ..DrainSummary::default()
            })
        );
        assert_eq!(
            got,
            [
                EventReport::Event(event(1)),
                EventReport::Event(translation),
                EventReport::Event(event(2)),
            ]
        );
        // One batched CONS write covering all three.
        assert_eq!(regs.writes_to(offset::EVTQ_CONS), [0, 3]);
        assert_eq!(q.cons(), 3);

        // Nothing new: nothing consumed, no register write.
        let before = regs.writes().len();
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r.map(|s| s.consumed), Ok(0));
        assert!(got.is_empty());
        assert_eq!(regs.writes().len(), before);
        release(q, &hal);
    }

    // spec: D7 — an interrupt on the CPU that is draining (the handler calling in again) must
    // neither wait for itself nor lose the record it was raised for.
    #[test]
    fn a_drain_entered_while_another_drains_hands_over_and_its_record_is_consumed() {
        let (hal, regs, q) = setup(QueueKind::Event, 3);
        let mut smmu = Producer::new(&q);
        smmu.push(&hal, &q, &event_words(1));
        smmu.publish(&regs, QueueKind::Event);
        let mut got = Vec::new();
        let mut nested = Vec::new();
        let r = q.drain_events(&hal, &regs, &mut |e| {
            if got.is_empty() {
                // The SMMU writes another record and interrupts this CPU.
                smmu.push(&hal, &q, &event_words(2));
                smmu.publish(&regs, QueueKind::Event);
                nested.push(q.drain_events(&hal, &regs, &mut |_| panic!("second drainer")));
            }
            got.push(e);
        });
        assert_eq!(
            nested,
            [Ok(DrainSummary {
                handed_over: true,
                ..DrainSummary::default()
            })]
        );
        assert_eq!(
            got,
            [EventReport::Event(event(1)), EventReport::Event(event(2))]
        );
        let s = r.unwrap();
        assert_eq!((s.consumed, s.handed_over, s.again), (2, false, false));
        // The gate is open again: the next drain is a drainer.
        let (r, _) = drain_events(&q, &hal, &regs);
        assert_eq!(r, Ok(DrainSummary::default()));
        release(q, &hal);
    }

    #[test]
    fn a_drainer_kept_busy_stops_after_its_pass_bound_and_says_to_call_again() {
        let (hal, regs, q) = setup(QueueKind::Event, 6);
        let mut smmu = Producer::new(&q);
        smmu.push(&hal, &q, &event_words(0));
        smmu.publish(&regs, QueueKind::Event);
        let mut delivered = 0u32;
        // Every record delivered brings another record and another interrupt.
        let r = q
            .drain_events(&hal, &regs, &mut |_| {
                delivered += 1;
                smmu.push(&hal, &q, &event_words(delivered));
                smmu.publish(&regs, QueueKind::Event);
                let nested = q.drain_events(&hal, &regs, &mut |_| panic!("second drainer"));
                assert!(nested.is_ok_and(|s| s.handed_over));
            })
            .unwrap();
        assert!(r.again && !r.handed_over);
        assert_eq!(
            (r.consumed, delivered),
            (MAX_DRAIN_PASSES, MAX_DRAIN_PASSES)
        );
        // The one record published by the last interrupt waits for the next call.
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r.map(|s| (s.consumed, s.again)), Ok((1, false)));
        assert_eq!(got, [EventReport::Event(event(MAX_DRAIN_PASSES))]);
        release(q, &hal);
    }

    #[test]
    fn an_error_in_a_pass_reaches_the_drainer_and_reopens_the_gate() {
        let (hal, regs, q) = setup(QueueKind::Event, 3);
        regs.set32(QueueKind::Event.prod_offset(), 1 << 20);
        assert!(matches!(
            drain_events(&q, &hal, &regs).0,
            Err(DrainError::BadProd { .. })
        ));
        regs.set32(QueueKind::Event.prod_offset(), 0);
        assert_eq!(drain_events(&q, &hal, &regs).0, Ok(DrainSummary::default()));
        release(q, &hal);
    }

    // spec: D7 — several CPUs draining one queue while the SMMU writes: every record reaches
    // exactly one handler, in order, whoever drains.
    #[test]
    fn cpus_draining_at_once_deliver_every_record_exactly_once_in_order() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Mutex;
        const RECORDS: u32 = if cfg!(miri) { 40 } else { 4000 };
        let (hal, regs, q) = setup(QueueKind::Event, 4);
        let delivered = Mutex::new(Vec::new());
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut smmu = Producer::new(&q);
                for sid in 0..RECORDS {
                    // Wait for room, as the SMMU does (it never overwrites an unconsumed slot).
                    while QueuePtr::is_full(smmu.prod, QueuePtr::new(q.cons(), q.log2)) {
                        std::thread::yield_now();
                    }
                    smmu.push(&hal, &q, &event_words(sid));
                    smmu.publish(&regs, QueueKind::Event);
                }
                done.store(true, Ordering::Release);
            });
            for _ in 0..2 {
                s.spawn(|| loop {
                    let finished = done.load(Ordering::Acquire);
                    let r = q.drain_events(&hal, &regs, &mut |e| {
                        delivered.lock().unwrap().push(e);
                    });
                    assert!(r.is_ok(), "{r:?}");
                    if finished && r.is_ok_and(|s| s.consumed == 0 && !s.handed_over) {
                        break;
                    }
                    std::thread::yield_now();
                });
            }
        });
        let delivered = delivered.into_inner().unwrap();
        let want: Vec<_> = (0..RECORDS).map(|s| EventReport::Event(event(s))).collect();
        assert_eq!(delivered, want);
        release(q, &hal);
    }

    #[test]
    fn program_writes_base_and_empty_indices_and_resets_the_consumer() {
        // spec: D7 — EVENTQ_BASE/PRIQ_BASE: WA, ADDR[55:5], LOG2SIZE (§6.3.29, §6.3.33).
        for (kind, log2) in [
            (QueueKind::Event, 5),
            (QueueKind::Pri, 0),
            (QueueKind::Pri, 4),
        ] {
            let (hal, regs, q) = setup(kind, log2);
            let size = (kind.record_size() << log2) as u64;
            let pa = q.pa().0;
            assert_eq!(pa % size.max(32), 0, "queue base aligned to its size");
            let base = q.base_register();
            assert_eq!(base, (1 << 62) | pa | u64::from(log2));
            assert_eq!(
                regs.writes(),
                [
                    crate::testutil::RegWrite {
                        offset: kind.base_offset(),
                        value: base,
                        width: RegWidth::W64
                    },
                    crate::testutil::RegWrite {
                        offset: kind.prod_offset(),
                        value: 0,
                        width: RegWidth::W32
                    },
                    crate::testutil::RegWrite {
                        offset: kind.cons_offset(),
                        value: 0,
                        width: RegWidth::W32
                    },
                ]
            );
            // Consume a record, then reprogram: the consumer starts from 0 again.
            let mut smmu = Producer::new(&q);
            let words = vec![0u64; kind.record_words()];
            smmu.push(&hal, &q, &words);
            smmu.publish(&regs, kind);
            let r = match kind {
                QueueKind::Event => q.drain_events(&hal, &regs, &mut |_| {}),
                QueueKind::Pri => q.drain_page_requests(&hal, &regs, &mut |_| {}),
            };
            assert_eq!(r.map(|s| s.consumed), Ok(1));
            assert_eq!(q.cons(), 1 % (2 << log2));
            q.program(&regs);
            assert_eq!((q.cons(), regs.get32(kind.cons_offset())), (0, 0));
            assert_eq!(regs.get32(kind.prod_offset()), 0);
            release(q, &hal);
        }
    }

    #[test]
    fn new_refuses_oversized_queues_and_reports_allocation_failure() {
        let hal = HostHal::new();
        assert_eq!(
            OutputQueue::new(&hal, QueueKind::Event, 20, true).map(|_| ()),
            Err(QueueError::TooLarge { log2_entries: 20 })
        );
        hal.set_alloc_budget(Some(0));
        assert_eq!(
            OutputQueue::new(&hal, QueueKind::Pri, 3, true).map(|_| ()),
            Err(QueueError::Hal(HalError::NoMemory))
        );
        assert_eq!(hal.live_allocations(), 0);
        // Memory above ADDR[55:5] cannot be programmed: refused, and given back.
        let high = HostHal::new().with_pa_base(1 << 56);
        assert_eq!(
            OutputQueue::new(&high, QueueKind::Event, 3, true).map(|_| ()),
            Err(QueueError::AddressTooWide {
                pa: PhysAddr(1 << 56)
            })
        );
        assert_eq!((high.live_allocations(), high.total_allocations()), (0, 1));
    }

    #[test]
    fn wrap_across_the_end_of_the_queue_over_several_wraps() {
        // spec: D7 — wrap handled: the wrap bit toggles each time the index passes the end.
        let (hal, regs, q) = setup(QueueKind::Event, 2); // 4 entries
        let mut smmu = Producer::new(&q);
        let mut next_sid = 0u32;
        let mut expect_sid = 0u32;
        // Batch sizes chosen so that drains start and end at every index; 3+ wraps of 4.
        for batch in [3u32, 4, 1, 2, 4, 3, 1, 4, 2, 3] {
            for _ in 0..batch {
                smmu.push(&hal, &q, &event_words(next_sid));
                next_sid += 1;
            }
            smmu.publish(&regs, QueueKind::Event);
            let (r, got) = drain_events(&q, &hal, &regs);
            let s = r.unwrap();
            assert_eq!(s.consumed, batch);
            assert_eq!(s.was_full, batch == 4);
            for e in got {
                assert_eq!(e, EventReport::Event(event(expect_sid)));
                expect_sid += 1;
            }
            // CONS now equals PROD, wrap bit included.
            assert_eq!(regs.get32(offset::EVTQ_CONS), smmu.prod.value());
        }
        // 27 records through 4 slots: the index wrapped 6 times, the wrap bit went 0→1→0 3 times.
        assert_eq!(expect_sid, 27);
        release(q, &hal);
    }

    #[test]
    fn cons_writes_are_batched() {
        // spec: D7 — CONS written every CONS_BATCH records and at the end.
        let (hal, regs, q) = setup(QueueKind::Event, 7);
        let mut smmu = Producer::new(&q);
        for sid in 0..100 {
            smmu.push(&hal, &q, &event_words(sid));
        }
        smmu.publish(&regs, QueueKind::Event);
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r.map(|s| s.consumed), Ok(100));
        assert_eq!(got.len(), 100);
        assert_eq!(regs.writes_to(offset::EVTQ_CONS), [0, 32, 64, 96, 100]);
        release(q, &hal);
    }

    #[test]
    fn overflow_is_reported_once_and_acknowledged() {
        // spec: D7 — OVFLG != OVACKFLG is reported once (after the records) and acknowledged
        // by making CONS.OVACKFLG equal to OVFLG in the next CONS write (§7.4).
        let (hal, regs, q) = setup(QueueKind::Event, 2);
        let mut smmu = Producer::new(&q);
        for sid in 0..4 {
            smmu.push(&hal, &q, &event_words(sid));
        }
        smmu.overflow(); // a fifth record was discarded
        smmu.publish(&regs, QueueKind::Event);

        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(
            r,
            Ok(DrainSummary {
                consumed: 4,
                overflow: true,
                was_full: true,
                ..DrainSummary::default()
            })
        );
        assert_eq!(got.len(), 5);
        assert_eq!(got[4], EventReport::Overflow);
        assert_eq!(
            regs.writes_to(offset::EVTQ_CONS),
            [0, u64::from(OVERFLOW_FLAG | 4)]
        );

        // Already acknowledged: not reported again, no write.
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!((r.map(|s| s.overflow), got.len()), (Ok(false), 0));
        assert_eq!(regs.writes_to(offset::EVTQ_CONS).len(), 2);

        // More records while OVFLG stays 1: delivered, the acknowledgement is kept.
        smmu.push(&hal, &q, &event_words(10));
        smmu.publish(&regs, QueueKind::Event);
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r.map(|s| (s.consumed, s.overflow)), Ok((1, false)));
        assert_eq!(got, [EventReport::Event(event(10))]);
        assert_eq!(regs.get32(offset::EVTQ_CONS), OVERFLOW_FLAG | 5);

        // A second overflow toggles OVFLG back to 0; reported with no record pending, and
        // acknowledged by a CONS write that leaves the index alone.
        smmu.overflow();
        smmu.publish(&regs, QueueKind::Event);
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r.map(|s| (s.consumed, s.overflow)), Ok((0, true)));
        assert_eq!(got, [EventReport::Overflow]);
        assert_eq!(regs.get32(offset::EVTQ_CONS), 5);
        release(q, &hal);
    }

    #[test]
    fn hostile_prod_is_a_typed_error_without_access_or_write() {
        // spec: D7, D10 — a PROD with reserved bits, an index beyond the queue, or more than a
        // queue ahead of CONS is a typed error: nothing read, nothing consumed, CONS untouched.
        let (hal, regs, q) = setup(QueueKind::Event, 2);
        let writes = regs.writes().len();
        let invalidates = hal.invalidate_count();
        for prod in [u32::MAX, 1 << 3, 0x7fff_ffff, 1 << 20, (1 << 30) | 1] {
            regs.set32(offset::EVTQ_PROD, prod);
            let (r, got) = drain_events(&q, &hal, &regs);
            assert_eq!(r, Err(DrainError::BadProd { prod }));
            assert!(got.is_empty());
        }
        // Wrap set and index 2 past CONS 0: six records "published" in a four-entry queue.
        regs.set32(offset::EVTQ_PROD, 0b110);
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r, Err(DrainError::Inconsistent { prod: 6, cons: 0 }));
        assert!(got.is_empty());
        assert_eq!(regs.writes().len(), writes);
        assert_eq!(hal.invalidate_count(), invalidates);
        // A full queue (wrap differs, same index) is consistent: exactly four records.
        regs.set32(offset::EVTQ_PROD, 0b100);
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r.map(|s| s.consumed), Ok(4));
        assert_eq!(got.len(), 4);
        release(q, &hal);
    }

    #[test]
    fn an_undecodable_record_is_delivered_with_its_words() {
        // spec: D7, D10 — a reserved event number or field value is delivered raw, in order.
        let (hal, regs, q) = setup(QueueKind::Event, 3);
        let mut smmu = Producer::new(&q);
        let reserved_id = [0x7f, 0x1234, 0, 0];
        // F_TRANSLATION with CLASS = 0b11 (reserved).
        let mut bad_class = Event::Translation(TranslationFault {
            fault: Fault {
                stream: StreamRef { sid: 1, ssid: None },
                stall: false,
                stag: 0,
                privileged: false,
                instruction: false,
                read: false,
                stage2: false,
                class: FaultClass::Cd,
                tt_read: false,
                input_addr: 0,
            },
            ipa: 0,
        })
        .encode()
        .to_words();
        bad_class[1] |= 0b11 << 40;
        smmu.push(&hal, &q, &event_words(1));
        smmu.push(&hal, &q, &reserved_id);
        smmu.push(&hal, &q, &bad_class);
        smmu.push(&hal, &q, &event_words(2));
        smmu.publish(&regs, QueueKind::Event);
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(r.map(|s| s.consumed), Ok(4));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], EventReport::Event(event(1)));
        assert_eq!(
            got[1],
            EventReport::Undecodable {
                words: reserved_id,
                error: EventRecord::from_words(reserved_id).decode().unwrap_err(),
            }
        );
        assert!(matches!(
            got[2],
            EventReport::Undecodable { words, error: DecodeError::Reserved { .. } }
                if words == bad_class
        ));
        assert_eq!(got[3], EventReport::Event(event(2)));
        release(q, &hal);
    }

    #[test]
    fn page_requests_are_decoded_in_order_across_wraps_with_overflow() {
        // spec: D7 — the PRI queue: 16-byte records, wrap and overflow as for events (§8.1).
        let (hal, regs, q) = setup(QueueKind::Pri, 1); // 2 entries
        let mut smmu = Producer::new(&q);
        let mut sid = 0;
        for round in 0..6 {
            let n = 1 + round % 2;
            let first = sid;
            for _ in 0..n {
                smmu.push(&hal, &q, &request(sid).encode().to_words());
                sid += 1;
            }
            if round == 3 {
                smmu.overflow();
            }
            smmu.publish(&regs, QueueKind::Pri);
            let mut got = Vec::new();
            let s = q
                .drain_page_requests(&hal, &regs, &mut |r| got.push(r))
                .unwrap();
            let mut want: Vec<PriReport> = (first..sid)
                .map(|i| PriReport::Request(request(i)))
                .collect();
            if round == 3 {
                want.push(PriReport::Overflow);
            }
            assert_eq!(got, want);
            assert_eq!(s.overflow, round == 3);
            assert_eq!(
                regs.get32(offset::PRIQ_CONS),
                smmu.prod.value() | if round >= 3 { OVERFLOW_FLAG } else { 0 }
            );
        }
        release(q, &hal);
    }

    #[test]
    fn a_drain_of_the_other_kind_is_refused() {
        let (hal, regs, q) = setup(QueueKind::Pri, 2);
        regs.set32(offset::PRIQ_PROD, 1);
        let (r, got) = drain_events(&q, &hal, &regs);
        assert_eq!(
            r,
            Err(DrainError::WrongKind {
                queue: QueueKind::Pri
            })
        );
        assert!(got.is_empty());
        release(q, &hal);
        let (hal, regs, q) = setup(QueueKind::Event, 2);
        let r = q.drain_page_requests(&hal, &regs, &mut |_| panic!("nothing to deliver"));
        assert_eq!(
            r,
            Err(DrainError::WrongKind {
                queue: QueueKind::Event
            })
        );
        release(q, &hal);
    }

    #[test]
    fn non_coherent_queue_invalidates_before_reading_records() {
        let hal = HostHal::new().with_cache_maintenance(true);
        let regs = FakeRegs::new();
        let q = OutputQueue::new(&hal, QueueKind::Pri, 2, false).unwrap();
        q.program(&regs);
        let mut smmu = Producer::new(&q);
        smmu.push(&hal, &q, &request(5).encode().to_words());
        smmu.publish(&regs, QueueKind::Pri);
        let mut got = Vec::new();
        q.drain_page_requests(&hal, &regs, &mut |r| got.push(r))
            .unwrap();
        assert_eq!(got, [PriReport::Request(request(5))]);
        assert_eq!(hal.invalidate_count(), 2, "one invalidate per record word");
        release(q, &hal);
    }

    // spec: D7
    #[test]
    fn reports_display_as_one_line_in_plain_words() {
        let fault = Fault {
            stream: StreamRef {
                sid: 0x10,
                ssid: Some(3),
            },
            stall: true,
            stag: 7,
            privileged: false,
            instruction: false,
            read: true,
            stage2: true,
            class: FaultClass::TableWalk,
            tt_read: true,
            input_addr: 0x1000_0040,
        };
        let lines = [
            (
                EventReport::Event(Event::Permission(TranslationFault { fault, ipa: 0x8000 })),
                "F_PERMISSION (permission fault): StreamID 0x10, SubstreamID 0x3, read at \
                 0x10000040, stage 2 (IPA 0x8000), class: translation table walk, stalled \
                 (STAG 0x7)",
            ),
            (
                EventReport::Event(Event::BadSte(StreamRef { sid: 5, ssid: None })),
                "C_BAD_STE (invalid or ILLEGAL STE): StreamID 0x5",
            ),
            (
                EventReport::Overflow,
                "event queue overflow: the SMMU discarded event records",
            ),
        ];
        for (report, line) in lines {
            assert_eq!(report.to_string(), line);
        }
        // Every event kind the record format has: one line, its name first, its StreamID.
        for id in 0..=u8::MAX {
            let mut words = [0u64; 4];
            words[0] = u64::from(id) | 0x42 << 32;
            let report = match EventRecord::from_words(words).decode() {
                Ok(e) => EventReport::Event(e),
                Err(error) => EventReport::Undecodable { words, error },
            };
            let line = report.to_string();
            assert!(!line.contains('\n'), "{line}");
            if let EventReport::Event(e) = report {
                assert!(line.starts_with(e.name()), "{line}");
                assert!(line.contains("StreamID 0x42"), "{line}");
            }
        }
        let request = PageRequest {
            sid: 0x8,
            ssid: None,
            privileged: false,
            exec: false,
            read: true,
            write: true,
            last: true,
            prg_index: 2,
            addr: 0x4000,
        };
        assert_eq!(
            PriReport::Request(request).to_string(),
            "page request: StreamID 0x8, address 0x4000, access rw, PRG index 2, last"
        );
        let gerror = GerrorReport {
            active: GlobalErrors::SFM_ERR | GlobalErrors::EVTQ_ABT_ERR,
            acknowledged: GlobalErrors::EVTQ_ABT_ERR,
            service_failure: true,
            command_queue_error: false,
            reserved: 0,
        };
        assert_eq!(
            gerror.to_string(),
            "global errors: EVTQ_ABT_ERR SFM_ERR; acknowledged: EVTQ_ABT_ERR; service failure \
             mode: the SMMU stopped until reset"
        );
    }

    fn gerror_regs(gerror: u32, gerrorn: u32) -> FakeRegs {
        let regs = FakeRegs::new();
        regs.set32(offset::GERROR, gerror);
        regs.set32(offset::GERRORN, gerrorn);
        regs
    }

    #[test]
    fn each_global_error_is_acknowledged_by_toggling_except_sfm_and_cmdq() {
        // spec: D7 — active = GERROR ^ GERRORN; acknowledged by toggling GERRORN; SFM reported
        // and never acknowledged away; CMDQ_ERR left to the command queue's recovery.
        for bit in GlobalErrors::all().iter() {
            // Both polarities: the SMMU toggles GERROR, so an active error may read 1/0 or 0/1.
            for (gerror, gerrorn) in [(bit.bits(), 0), (0, bit.bits())] {
                let regs = gerror_regs(gerror, gerrorn);
                assert_eq!(global_errors(&regs), bit);
                let r = acknowledge_global_errors(&regs);
                assert_eq!(r.active, bit);
                assert_eq!(r.service_failure, bit == GlobalErrors::SFM_ERR);
                assert_eq!(r.command_queue_error, bit == GlobalErrors::CMDQ_ERR);
                assert_eq!(r.reserved, 0);
                if NOT_ACKNOWLEDGED.contains(bit) {
                    assert!(r.acknowledged.is_empty());
                    assert_eq!(r.still_active(), bit);
                    assert!(regs.writes().is_empty(), "{bit:?} must not be toggled");
                    assert_eq!(global_errors(&regs), bit);
                } else {
                    assert_eq!(r.acknowledged, bit);
                    assert_eq!(
                        regs.writes_to(offset::GERRORN),
                        [u64::from(gerrorn ^ bit.bits())]
                    );
                    assert!(global_errors(&regs).is_empty());
                }
            }
        }
    }

    #[test]
    fn sfm_is_reported_on_every_call_and_cmdq_err_is_acknowledged_by_its_recovery() {
        // spec: D7 — SFM stays active (Service Failure Mode lasts until reset).
        let all = GlobalErrors::all().bits();
        let regs = gerror_regs(all, 0);
        let first = acknowledge_global_errors(&regs);
        assert_eq!(first.active, GlobalErrors::all());
        assert_eq!(first.still_active(), NOT_ACKNOWLEDGED);
        assert_eq!(regs.get32(offset::GERRORN), all & !NOT_ACKNOWLEDGED.bits());
        for _ in 0..3 {
            let again = acknowledge_global_errors(&regs);
            assert!(again.service_failure && again.command_queue_error);
            assert!(again.acknowledged.is_empty());
        }
        // The command queue's recovery acknowledges CMDQ_ERR; SFM is refused even if asked.
        assert_eq!(
            acknowledge_only(&regs, GlobalErrors::CMDQ_ERR | GlobalErrors::SFM_ERR),
            GlobalErrors::CMDQ_ERR
        );
        assert_eq!(global_errors(&regs), GlobalErrors::SFM_ERR);
        assert!(acknowledge_global_errors(&regs).service_failure);
    }

    #[test]
    fn inactive_errors_and_reserved_bits_are_never_toggled() {
        // spec: D7 — §6.3.20: toggling an inactive error is CONSTRAINED UNPREDICTABLE.
        // GERROR and GERRORN agree on EVTQ_ABT_ERR (inactive, acknowledged earlier); PRIQ_ABT
        // is active; bit 1 and bit 20 (reserved) differ.
        let evtq = GlobalErrors::EVTQ_ABT_ERR.bits();
        let priq = GlobalErrors::PRIQ_ABT_ERR.bits();
        let regs = gerror_regs(evtq | priq | 0b10 | (1 << 20), evtq);
        let r = acknowledge_global_errors(&regs);
        assert_eq!(r.active, GlobalErrors::PRIQ_ABT_ERR);
        assert_eq!(r.reserved, 0b10 | (1 << 20));
        assert_eq!(regs.writes_to(offset::GERRORN), [u64::from(evtq | priq)]);
        // Nothing active: no write at all.
        let regs = gerror_regs(evtq, evtq);
        let r = acknowledge_global_errors(&regs);
        assert!(r.active.is_empty() && regs.writes().is_empty());
        assert!(acknowledge_only(&regs, GlobalErrors::all()).is_empty());
        assert!(regs.writes().is_empty());
    }

    /// Mostly plausible pointers (index, wrap, overflow flag), sometimes anything.
    fn queue_pointer() -> impl Strategy<Value = u32> {
        prop_oneof![
            3 => (0u32..64, any::<bool>())
                .prop_map(|(v, ov)| v | if ov { OVERFLOW_FLAG } else { 0 }),
            1 => any::<u32>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: CASES,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// spec: D7, D10 — whatever PROD, CONS and the records hold, a drain does not panic,
        /// consumes at most one queue's worth, reports each record once plus at most one
        /// overflow, and leaves CONS consistent so a second drain finds nothing new.
        #[test]
        fn any_prod_cons_and_records_drain_boundedly(
            pri in any::<bool>(),
            log2 in 0u32..=4,
            prod in queue_pointer(),
            cons in queue_pointer(),
            words in proptest::collection::vec(any::<u64>(), 64),
        ) {
            let kind = if pri { QueueKind::Pri } else { QueueKind::Event };
            let (hal, regs, q) = setup(kind, log2);
            let slots = (kind.record_words() << log2).min(words.len());
            for (i, w) in words.iter().take(slots).enumerate() {
                hal.write_u64(q.buf.pa_of(i), *w);
            }
            q.cons.store(cons, Ordering::Relaxed);
            regs.set32(kind.prod_offset(), prod);
            let _ = regs.take_writes();

            let mut delivered = 0u32;
            let mut overflows = 0u32;
            let r = match kind {
                QueueKind::Event => q.drain_events(&hal, &regs, &mut |e| match e {
                    EventReport::Overflow => overflows += 1,
                    _ => delivered += 1,
                }),
                QueueKind::Pri => q.drain_page_requests(&hal, &regs, &mut |e| match e {
                    PriReport::Overflow => overflows += 1,
                    PriReport::Request(_) => delivered += 1,
                }),
            };
            let cons_writes = regs.writes_to(kind.cons_offset());
            match r {
                Ok(s) => {
                    prop_assert!(s.consumed <= q.entries());
                    prop_assert_eq!(s.consumed, delivered);
                    prop_assert_eq!(u32::from(s.overflow), overflows);
                    prop_assert!(cons_writes.len() as u32 <= s.consumed / CONS_BATCH + 1);
                    if s.consumed > 0 || s.overflow {
                        // CONS now matches PROD (index, wrap and the overflow flag).
                        let mask = OVERFLOW_FLAG | ((2u32 << log2) - 1);
                        prop_assert_eq!(cons_writes.last().copied(), Some(u64::from(prod & mask)));
                    }
                    let mut again = 0;
                    let r2 = match kind {
                        QueueKind::Event => q.drain_events(&hal, &regs, &mut |_| again += 1),
                        QueueKind::Pri => q.drain_page_requests(&hal, &regs, &mut |_| again += 1),
                    };
                    prop_assert_eq!(r2.map(|s| s.consumed), Ok(0));
                    prop_assert_eq!(again, 0);
                }
                Err(DrainError::BadProd { .. } | DrainError::Inconsistent { .. }) => {
                    prop_assert_eq!((delivered, overflows), (0, 0));
                    prop_assert!(cons_writes.is_empty());
                }
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
            release(q, &hal);
        }
    }
}

/// loom model checks of the drain gate (`RUSTFLAGS="--cfg loom" cargo test -p smmu --lib
/// --release loom`): the consumer state is a loom cell, so two CPUs inside a pass at once is
/// a reported data race, and a record published before a caller arrived and left unconsumed
/// when everybody has returned fails the final check.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    use super::*;

    struct World {
        gate: DrainGate,
        /// Records the "SMMU" has published (its `PROD`).
        published: AtomicU32,
        /// Records consumed: the drainer's own state, as `CONS` is.
        consumed: UnsafeCell<u32>,
    }

    fn interrupt(w: &World) -> DrainSummary {
        w.published.fetch_add(1, Ordering::Release);
        let r: Result<_, ()> = w.gate.run(|| {
            let prod = w.published.load(Ordering::Acquire);
            let consumed = w.consumed.with_mut(|c| {
                // SAFETY: loom checks that no other thread accesses the cell meanwhile.
                let c = unsafe { &mut *c };
                let n = prod - *c;
                *c = prod;
                n
            });
            Ok(DrainSummary {
                consumed,
                ..DrainSummary::default()
            })
        });
        r.unwrap_or_default()
    }

    fn model(cpus: usize) {
        loom::model(move || {
            let w = Arc::new(World {
                gate: DrainGate::new(),
                published: AtomicU32::new(0),
                consumed: UnsafeCell::new(0),
            });
            let others: std::vec::Vec<_> = (1..cpus)
                .map(|_| {
                    let w = w.clone();
                    loom::thread::spawn(move || interrupt(&w))
                })
                .collect();
            let mut summaries = std::vec![interrupt(&w)];
            summaries.extend(others.into_iter().map(|t| t.join().unwrap()));
            // With so few callers no drainer reaches its pass bound.
            assert!(summaries.iter().all(|s| !s.again));
            let total: u32 = summaries.iter().map(|s| s.consumed).sum();
            assert_eq!(total, cpus as u32);
            // SAFETY: every thread has been joined.
            assert_eq!(w.consumed.with(|c| unsafe { *c }), cpus as u32);
        });
    }

    #[test]
    fn loom_two_cpus_drain_one_queue_every_record_consumed_once() {
        model(2);
    }

    #[test]
    fn loom_three_cpus_drain_one_queue_every_record_consumed_once() {
        model(3);
    }
}

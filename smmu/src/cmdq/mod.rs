//! The command queue (SPEC D5, D12; IHI 0070 G.b §3.5, §4).
//!
//! Any number of CPUs submit at once and no lock is held while a `CMD_SYNC` is awaited. The
//! protocol is the one Linux's arm-smmu-v3 driver uses:
//!
//! 1. **Reserve.** A producer claims `n` slots with one compare-and-swap on a shadow of
//!    `PROD` kept in memory (the shadow `CONS` beside it only bounds the free space; a stale
//!    one understates it). The shadow `PROD` carries an *owned* flag:
//!    the producer that finds it clear becomes the **owner** and sets it; every producer that
//!    reserves while it is set is *gathered* behind that owner.
//! 2. **Write.** The producer writes its commands (and its `CMD_SYNC`) into its own slots,
//!    which no other CPU touches and the SMMU cannot see yet (they are beyond `CMDQ_PROD`).
//! 3. **Mark valid.** It toggles its slots' bits in a valid bitmap (release); the bit's
//!    expected value flips on every pass over the queue, so the map never needs clearing.
//! 4. **Publish (owner only).** The owner waits until the previous owner has published, clears
//!    the owned flag (which ends the gathering and fixes the end of the batch), waits for the
//!    valid bits of every gathered slot, writes `CMDQ_PROD` once for all of them and hands over
//!    to the next owner.
//! 5. **Wait.** A producer with a `CMD_SYNC` waits for its own sync: the MSI write-back into
//!    the sync's own slot, or `CMDQ_CONS` past the sync's index, wrap handled.
//!
//! The shadow `CONS` only moves forward under a shared/exclusive lock: a producer holds it
//! *shared* from before its sync becomes visible until it has seen the sync complete, and the
//! shadow is refreshed from `CMDQ_CONS` only *exclusively*, or by the last shared holder on its
//! way out. So the queue cannot wrap past a sync whose waiter has not looked yet (its MSI slot
//! is not overwritten and "CONS past my index" is never ambiguous). The lock is never held while
//! waiting for the SMMU: shared holders wait, but they do not exclude one another.
//!
//! Errors (`GERROR.CMDQ_ERR`) are recovered by whichever waiting CPU sees them first, one CPU at
//! a time: `CERROR_ILL` replaces the entry at `CONS` with a `CMD_SYNC` and marks that slot
//! rejected; the submission that owns the slot reports it once its own sync completed.
//!
//! A [`CommandBatch`] buffers up to [`BATCH`] commands and ends with exactly one `CMD_SYNC`.

use core::sync::atomic::AtomicU64 as StatCounter;

use crossbeam_utils::CachePadded;

use heapless::Vec;
use tock_registers::LocalRegisterCopy;

use crate::access::RegisterAccess;
use crate::arch::cmd::{Command, SyncSignal};
use crate::arch::queue::{cmdq_error, GlobalErrors, QueuePtr};
use crate::arch::regs::{offset, CMDQ_BASE};
use crate::dma::DmaBuf;
use crate::error::{CommandFault, Error, WaitFor};
use crate::hal::Hal;
use crate::poll::{poll, PollBudget};
use crate::sync::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Commands per batch: a [`CommandBatch`] publishes at most this many before its `CMD_SYNC`.
pub const BATCH: usize = 64;
mod batch;
pub use batch::*;

/// The smallest queue the driver accepts: a full batch plus its `CMD_SYNC` must fit, and
/// 2^7 = 128 is the first power of two above 65 (SPEC D1).
pub const MIN_LOG2_ENTRIES: u32 = 7;

/// The largest queue the driver allocates, even if `IDR1.CMDQS` allows more: 2^10 entries
/// (16 KiB) by default, 2^14 (256 KiB) with the Cargo feature `cmdq-entries-16k`.
///
/// A queue needs room for every submission in flight at once, and each CPU has at most one
/// (a submitter waits for its `CMD_SYNC`), or two with an interrupt nested on it. 2^10 holds
/// 72 CPUs' `TLBI` + `CMD_SYNC` pairs seven times over, but only 15 full batches
/// ([`BATCH`] + 1 entries): a host where many CPUs flush full batches at once needs the larger
/// queue, or a waiter for space is not guaranteed to fit in the space the next drain frees
/// (the README's many-CPU model works the numbers). The two bitmaps below grow with it:
/// 2 × 2^14 bits = 4 KiB more in `Smmu`.
pub const MAX_LOG2_ENTRIES: u32 = if cfg!(feature = "cmdq-entries-16k") {
    14
} else {
    10
};

/// The model checks run on a 4-entry queue so that they wrap within a few commands.
#[cfg(all(loom, test))]
const LOWEST_LOG2_ENTRIES: u32 = 2;
#[cfg(not(all(loom, test)))]
const LOWEST_LOG2_ENTRIES: u32 = MIN_LOG2_ENTRIES;

/// How often an aborted command fetch or a timed-out ATC invalidation is retried before the
/// submission fails (SPEC D5).
pub const MAX_RETRIES: u32 = 8;

/// `MSH` = Inner Shareable for the MSI completion write (§4.7.3).
const MSI_SH_INNER: u8 = 0b11;
/// `MSIAttr` = Normal, Inner/Outer Write-Back cacheable (the STE `MemAttr` encoding, §4.7.3).
const MSI_ATTR_WB: u8 = 0xf;

/// The shadow `PROD`'s owned flag: set while an owner gathers producers. Bit 31 is free:
/// `PROD` values are at most 2^(`MAX_LOG2_ENTRIES` + 1) − 1.
const OWNED: u32 = 1 << 31;

/// Bits 30:20 of the shadow `PROD` (free too: `PROD` needs bits 19:0): the `CMD_SYNC`s
/// reserved since the owner set [`OWNED`]. The owner clears them with the flag and adds them
/// to the statistics, so a producer pays no read-modify-write of its own to be counted. The
/// count saturates; a producer that finds it full counts itself.
const SYNCS_SHIFT: u32 = 20;
const SYNCS_MAX: u32 = (OWNED >> SYNCS_SHIFT) - 1;
const SYNCS: u32 = SYNCS_MAX << SYNCS_SHIFT;
const _: () = assert!((2u32 << MAX_LOG2_ENTRIES) - 1 < 1 << SYNCS_SHIFT);

/// 64-bit words of the valid (and rejected) bitmaps: one bit per entry of the largest queue.
const MAP_WORDS: usize = (1 << MAX_LOG2_ENTRIES) / 64;

/// The shared/exclusive lock's value while held exclusively (shared holders count up from 0).
const EXCLUSIVE: i32 = i32::MIN;

/// How a `CMD_SYNC`'s completion is observed (SPEC D5; §4.7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `CS = SIG_IRQ` with the MSI aimed at the sync's own slot: the SMMU zeroes the first 32
    /// bits of the entry, the CPU polls memory, not a register. Needs `IDR0.MSI` and a
    /// coherent SMMU (the CPU must see the SMMU's write without maintenance).
    Msi,
    /// `CS = SIG_SEV`: the SMMU sends an event on completion; the CPU polls `CMDQ_CONS`
    /// (waiting for events is the HAL's `relax`).
    Sev,
    /// `CS = SIG_NONE`: poll `CMDQ_CONS`.
    Poll,
}

impl SyncMode {
    /// The best mode the features allow.
    pub fn select(msi: bool, sev: bool, coherent: bool) -> SyncMode {
        if msi && coherent {
            SyncMode::Msi
        } else if sev {
            SyncMode::Sev
        } else {
            SyncMode::Poll
        }
    }
}

/// Counters of what the queue did, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdqStats {
    /// Commands published to the SMMU (`CMD_SYNC`s included), counted by each owner when it
    /// writes `CMDQ_PROD`.
    pub commands: u64,
    /// `CMD_SYNC`s written.
    pub syncs: u64,
    /// `PROD` register writes.
    pub publishes: u64,
    /// `CERROR_ILL` recoveries.
    pub illegal: u64,
    /// `CERROR_ABT` and `CERROR_ATC_INV_SYNC` retries.
    pub retries: u64,
}

/// Statistics only: relaxed `core` atomics even under loom (they order nothing).
#[derive(Default)]
struct Counters {
    commands: StatCounter,
    /// Updated by owners only (`add_alone`).
    syncs: StatCounter,
    /// Syncs reserved while the count in the shadow `PROD` was full: counted by their
    /// producers, with a read-modify-write, in a counter of their own.
    syncs_beyond_count: StatCounter,
    publishes: StatCounter,
    illegal: StatCounter,
    retries: StatCounter,
}

impl Counters {
    fn add(c: &StatCounter, n: u64) {
        c.fetch_add(n, core::sync::atomic::Ordering::Relaxed);
    }

    /// For a counter only one CPU at a time updates (the publishing owner): a load and a
    /// store, no read-modify-write (which would cost as much as the protocol's own).
    fn add_alone(c: &StatCounter, n: u64) {
        let relaxed = core::sync::atomic::Ordering::Relaxed;
        c.store(c.load(relaxed).wrapping_add(n), relaxed);
    }

    fn get(c: &StatCounter) -> u64 {
        c.load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// A command queue in DMA memory and the lock-free producer state (module docs).
///
/// `CommandQueue` is `Send + Sync`: every method takes `&self`, and any number of CPUs may
/// call [`CommandQueue::issue`] at once.
pub struct CommandQueue {
    buf: DmaBuf,
    log2: u32,
    mode: SyncMode,
    budget: PollBudget,
    /// What every submission reads and writes, in one cache line of its own.
    producers: CachePadded<Producers>,
    /// One bit per entry, toggled when its command is written (module docs, step 3). Its own
    /// cache lines: written by every producer, read by owners only.
    valid: CachePadded<[AtomicU64; MAP_WORDS]>,
    /// One bit per entry, set when the SMMU rejected the command there (`CERROR_ILL`).
    rejected: [AtomicU64; MAP_WORDS],
    /// Bits set in `rejected`: while 0, a submission looks at no bitmap word.
    rejections: AtomicU32,
    /// Held by the one CPU recovering from `GERROR.CMDQ_ERR`.
    recovering: AtomicBool,
}

/// The producers' shared state. Its own cache line, apart from the queue's configuration
/// (`buf`, `log2`, `mode`), which a CPU waiting for its sync reads on every poll: a poller
/// keeping a copy of the line the producers write would take it from them on every poll and
/// stretch each of their atomics into a line transfer. One line for all of it: an owner
/// touches every field in a row.
struct Producers {
    /// Shadow `PROD` with the [`OWNED`] flag; reservations are CAS on it.
    prod: AtomicU32,
    /// Shadow `CONS`: a position the SMMU has reached. Written only by the exclusive lock
    /// holder or the last shared holder, and only forward (module docs), in its own word so
    /// that the common path updates it with a plain store.
    cons: AtomicU32,
    /// The `PROD` value up to which the last owner published: the next owner starts there.
    owner_prod: AtomicU32,
    /// Shared (≥ 0, the number of sync waiters) / exclusive ([`EXCLUSIVE`]) lock on moving
    /// the shadow `CONS`.
    lock: AtomicI32,
    /// Updated by the owner as it publishes.
    counters: Counters,
}

impl core::fmt::Debug for CommandQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CommandQueue")
            .field("base", &self.buf.pa())
            .field("log2", &self.log2)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CommandQueue {
    /// Allocates a queue of 2^`log2_entries` commands (clamped to
    /// [`MIN_LOG2_ENTRIES`]..=[`MAX_LOG2_ENTRIES`]), aligned to its size (§6.3.26).
    pub fn new<H: Hal + ?Sized>(
        hal: &H,
        log2_entries: u32,
        mode: SyncMode,
        coherent: bool,
        budget: PollBudget,
    ) -> Result<Self, Error> {
        let log2 = log2_entries.clamp(LOWEST_LOG2_ENTRIES, MAX_LOG2_ENTRIES);
        let bytes = 16usize << log2;
        let buf = DmaBuf::alloc(hal, bytes, bytes, coherent)?;
        Ok(Self {
            buf,
            log2,
            mode,
            budget,
            producers: CachePadded::new(Producers {
                prod: AtomicU32::new(0),
                cons: AtomicU32::new(0),
                owner_prod: AtomicU32::new(0),
                lock: AtomicI32::new(0),
                counters: Counters::default(),
            }),
            valid: CachePadded::new(core::array::from_fn(|_| AtomicU64::new(0))),
            rejected: core::array::from_fn(|_| AtomicU64::new(0)),
            rejections: AtomicU32::new(0),
            recovering: AtomicBool::new(false),
        })
    }

    /// log2 of the number of entries.
    pub fn log2_entries(&self) -> u32 {
        self.log2
    }

    /// How completion is observed.
    pub fn sync_mode(&self) -> SyncMode {
        self.mode
    }

    /// The `SMMU_CMDQ_BASE` value for this queue (§6.3.26): read-allocate hint, address,
    /// size.
    pub fn base_register(&self) -> u64 {
        let mut r = LocalRegisterCopy::<u64, CMDQ_BASE::Register>::new(0);
        r.modify(
            CMDQ_BASE::RA::SET
                + CMDQ_BASE::ADDR.val(self.buf.pa().0 >> 5)
                + CMDQ_BASE::LOG2SIZE.val(u64::from(self.log2)),
        );
        r.get()
    }

    /// Points the SMMU at this queue and empties it: `CMDQ_BASE`, `CMDQ_PROD` = `CMDQ_CONS`
    /// = 0. Only legal while `CR0.CMDQEN` is 0 (§6.3.26) and no submission is in flight; the
    /// reset plans call it there.
    pub fn program<R: RegisterAccess + ?Sized>(&self, regs: &R) {
        regs.write64(offset::CMDQ_BASE, self.base_register());
        regs.write32(offset::CMDQ_PROD, 0);
        regs.write32(offset::CMDQ_CONS, 0);
        self.producers.prod.store(0, Ordering::Release);
        self.producers.cons.store(0, Ordering::Release);
        self.producers.owner_prod.store(0, Ordering::Release);
        // Index 0 with wrap 0 expects valid bits that read 1 once written: start from 0.
        for w in self.valid.iter().chain(self.rejected.iter()) {
            w.store(0, Ordering::Release);
        }
        self.rejections.store(0, Ordering::Release);
    }

    /// What the queue did so far.
    pub fn stats(&self) -> CmdqStats {
        let c = &self.producers.counters;
        CmdqStats {
            commands: Counters::get(&c.commands),
            syncs: Counters::get(&c.syncs) + Counters::get(&c.syncs_beyond_count),
            publishes: Counters::get(&c.publishes),
            illegal: Counters::get(&c.illegal),
            retries: Counters::get(&c.retries),
        }
    }

    /// Gives the memory back.
    ///
    /// # Safety
    /// The SMMU no longer uses the queue (`CR0.CMDQEN` = 0 acknowledged, or the SMMU reset).
    pub unsafe fn release<H: Hal + ?Sized>(self, hal: &H) {
        // SAFETY: forwarded from the caller.
        unsafe { self.buf.release(hal) };
    }

    /// Issues `cmds` in batches of at most [`BATCH`], and a `CMD_SYNC` after the last one
    /// when `sync` is set; returns once that sync completed (or at once without one).
    /// Several CPUs may call it at once; each batch occupies contiguous slots.
    ///
    /// On `Err(CommandRejected)` the queue has been recovered and the rest of the
    /// submission ran; only the rejected command had no effect. A rejection is reported to
    /// the submission whose synced batch held the command; a rejected command of an unsynced
    /// batch is counted in [`CmdqStats::illegal`] only.
    pub fn issue<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        cmds: &[Command],
        sync: bool,
    ) -> Result<(), Error> {
        let mut outcome = Outcome::default();
        for chunk in cmds.chunks(BATCH) {
            let last = chunk.as_ptr_range().end == cmds.as_ptr_range().end;
            self.submit_batch(hal, regs, chunk, sync && last, &mut outcome)?;
        }
        if cmds.is_empty() && sync {
            self.submit_batch(hal, regs, &[], true, &mut outcome)?;
        }
        outcome.into_result()
    }

    /// A `CMD_SYNC` alone: waits for everything issued before it.
    pub fn sync<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
    ) -> Result<(), Error> {
        self.issue(hal, regs, &[], true)
    }

    fn ptr(&self, raw: u32) -> QueuePtr {
        QueuePtr::new(raw & !(OWNED | SYNCS), self.log2)
    }

    fn slot_words(p: QueuePtr) -> usize {
        p.index() as usize * 2
    }

    /// Steps 1–5 of the module docs for at most [`BATCH`] commands.
    fn submit_batch<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        cmds: &[Command],
        sync: bool,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let n = cmds.len() as u32 + u32::from(sync);
        // 1. Reserve.
        let (start, owner) = self.reserve(hal, regs, n, sync, outcome)?;
        let end = start.advance(n);
        self.clear_rejected(start, end);
        // 2. Write. The slots are ours alone and beyond CMDQ_PROD; an error here (it cannot
        // happen: every index is below the queue size) must not stop the protocol, or every
        // later producer would wait for these slots forever.
        let mut written = Ok(());
        let mut slot = start;
        for cmd in cmds {
            written = written.and(self.write_slot(hal, slot, cmd.encode().to_words()));
            slot = slot.advance(1);
        }
        let sync_slot = slot;
        if sync {
            let words = self.sync_command(sync_slot).encode().to_words();
            written = written.and(self.write_slot(hal, sync_slot, words));
            // Before the sync can become visible: from here the shadow CONS cannot move past
            // it until this CPU has seen it complete (module docs).
            self.shared_lock(hal);
        }
        // 3. Mark valid (release: the slot stores above happen before the owner's publish).
        self.toggle_valid(start, end);
        // 4. Publish.
        let published = if owner {
            self.publish_gathered(hal, regs, start)
        } else {
            Ok(())
        };
        // 5. Wait.
        if sync {
            let waited = published.and_then(|()| self.wait_sync(hal, regs, sync_slot, outcome));
            if let Ok(seen) = waited {
                self.take_rejected(start, sync_slot, cmds, outcome);
                self.shared_unlock(Some(seen));
            } else {
                self.shared_unlock(None);
            }
            waited?;
        } else {
            published?;
        }
        written.map_err(Error::from)
    }

    fn write_slot<H: Hal + ?Sized>(
        &self,
        hal: &H,
        slot: QueuePtr,
        words: [u64; 2],
    ) -> Result<(), crate::dma::OutOfBounds> {
        let w = Self::slot_words(slot);
        self.buf.write(hal, w, words[0])?;
        self.buf.write(hal, w + 1, words[1])
    }

    fn read_cons<R: RegisterAccess + ?Sized>(&self, regs: &R) -> QueuePtr {
        QueuePtr::new(regs.read32(offset::CMDQ_CONS), self.log2)
    }

    /// Free entries between a shadow `PROD` and `CONS` (0 if they are inconsistent, which
    /// they never are: a stale `CONS` only makes the queue look fuller).
    fn space(&self, prod: u32, cons: u32) -> u32 {
        let size = 1u32 << self.log2;
        size.saturating_sub(QueuePtr::used(self.ptr(prod), self.ptr(cons)))
    }

    /// Claims `n` contiguous slots; returns the first and whether this CPU is the owner.
    fn reserve<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        n: u32,
        sync: bool,
        outcome: &mut Outcome,
    ) -> Result<(QueuePtr, bool), Error> {
        let mut cur = self.producers.prod.load(Ordering::Relaxed);
        loop {
            // Acquire: the slots were freed by the SMMU reaching this CONS; nothing of ours is
            // written to them before that. Loaded before the CAS, so it can only be older
            // than the truth, which understates the space.
            let cons = self.producers.cons.load(Ordering::Acquire);
            if self.space(cur, cons) < n {
                self.wait_for_space(hal, regs, n, outcome)?;
                cur = self.producers.prod.load(Ordering::Relaxed);
                continue;
            }
            let start = self.ptr(cur);
            // Clear while nobody owns the queue: the last owner took the count with the flag.
            let syncs = (cur & SYNCS) >> SYNCS_SHIFT;
            let counted = sync && syncs < SYNCS_MAX;
            let syncs = syncs + u32::from(counted);
            let next = start.advance(n).value() | OWNED | syncs << SYNCS_SHIFT;
            match self.producers.prod.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if sync && !counted {
                        Counters::add(&self.producers.counters.syncs_beyond_count, 1);
                    }
                    return Ok((start, cur & OWNED == 0));
                }
                Err(v) => cur = v,
            }
        }
    }

    /// Waits until the shadow shows `n` free slots, refreshing it from `CMDQ_CONS` when this
    /// CPU can take the lock exclusively, and recovering from command errors meanwhile.
    fn wait_for_space<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        n: u32,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let done = poll(hal, self.budget, || {
            if let Err(e) = self.check_errors(hal, regs, outcome) {
                return Some(Err(e));
            }
            if self.try_exclusive() {
                let cons = self.read_cons(regs);
                self.advance_shadow_cons(cons);
                self.exclusive_unlock();
            }
            let prod = self.producers.prod.load(Ordering::Relaxed);
            (self.space(prod, self.producers.cons.load(Ordering::Acquire)) >= n).then_some(Ok(()))
        });
        done.unwrap_or(Err(Error::Timeout(WaitFor::CmdqSpace)))
    }

    /// Sets the shadow `CONS`. Callers hold the lock exclusively, or are the last shared
    /// holder: then no one else writes it, and every value written is a position the SMMU
    /// reached after the previous one was written, so it only moves forward.
    fn advance_shadow_cons(&self, cons: QueuePtr) {
        self.producers.cons.store(cons.value(), Ordering::Release);
    }

    /// Takes the lock shared. Exclusive holders only read one register, so this waits for
    /// at most that long. Our increment survives an exclusive holder (its unlock clears only
    /// the sign bit), so waiting sharers need no second attempt and cannot be starved by a
    /// stream of exclusive lockers (Linux's later fairness fix to the same lock).
    fn shared_lock<H: Hal + ?Sized>(&self, hal: &H) {
        if self.producers.lock.fetch_add(1, Ordering::Acquire) >= 0 {
            return;
        }
        while self.producers.lock.load(Ordering::Acquire) < 0 {
            hal.relax();
        }
    }

    fn try_exclusive(&self) -> bool {
        self.producers
            .lock
            .compare_exchange(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Clears the sign bit only: sharers that arrived meanwhile keep their count.
    fn exclusive_unlock(&self) {
        self.producers.lock.fetch_and(!EXCLUSIVE, Ordering::Release);
    }

    /// Drops the shared lock; the last holder out publishes the `CONS` it saw (which is
    /// past its sync, and no sync of a current holder is behind it).
    fn shared_unlock(&self, seen: Option<QueuePtr>) {
        if let Some(cons) = seen {
            if self.producers.lock.load(Ordering::Relaxed) == 1 {
                self.advance_shadow_cons(cons);
            }
        }
        self.producers.lock.fetch_sub(1, Ordering::Release);
    }

    /// Bit `index` of a bitmap: the word and the mask.
    fn bit(map: &[AtomicU64; MAP_WORDS], index: u32) -> Option<(&AtomicU64, u64)> {
        map.get(index as usize / 64)
            .map(|w| (w, 1u64 << (index % 64)))
    }

    /// `[start, end)` cut into pieces that each lie in one bitmap word and one pass over the
    /// queue: `(first slot, slots, word, mask)`. One atomic per piece instead of per slot.
    fn spans<'m>(
        &self,
        map: &'m [AtomicU64; MAP_WORDS],
        start: QueuePtr,
        end: QueuePtr,
    ) -> impl Iterator<Item = (QueuePtr, u32, Option<&'m AtomicU64>, u64)> + 'm {
        let size = 1u32 << self.log2;
        let mut p = start;
        let mut left = QueuePtr::used(end, start);
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let idx = p.index();
            let n = left.min(64 - idx % 64).min(size - idx);
            let mask = (u64::MAX >> (64 - n)) << (idx % 64);
            let first = p;
            p = p.advance(n);
            left -= n;
            Some((first, n, map.get(idx as usize / 64), mask))
        })
    }

    fn toggle_valid(&self, start: QueuePtr, end: QueuePtr) {
        for (_, _, w, m) in self.spans(&self.valid, start, end) {
            if let Some(w) = w {
                w.fetch_xor(m, Ordering::Release);
            }
        }
    }

    /// Whether every slot of a span is valid: its bits read 1 on an even pass (wrap clear)
    /// and 0 on an odd one.
    fn span_valid(first: QueuePtr, w: Option<&AtomicU64>, m: u64) -> bool {
        w.is_none_or(|w| {
            let bits = w.load(Ordering::Acquire) & m;
            if first.wrap() {
                bits == 0
            } else {
                bits == m
            }
        })
    }

    /// Step 4: waits for the previous owner, stops gathering, waits for every gathered slot
    /// to be valid and publishes them with one `CMDQ_PROD` write.
    fn publish_gathered<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        start: QueuePtr,
    ) -> Result<(), Error> {
        poll(hal, self.budget, || {
            (self.producers.owner_prod.load(Ordering::Acquire) == start.value()).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::CmdqOwner))?;
        let taken = self
            .producers
            .prod
            .fetch_and(!(OWNED | SYNCS), Ordering::Relaxed);
        let end = self.ptr(taken);
        for (first, _, w, m) in self.spans(&self.valid, start, end) {
            poll(hal, self.budget, || {
                Self::span_valid(first, w, m).then_some(())
            })
            .ok_or(Error::Timeout(WaitFor::CmdqOwner))?;
        }
        // The register write orders the slot stores before it (RegisterAccess contract).
        regs.write32(offset::CMDQ_PROD, end.value());
        // One owner at a time runs between its hand-over and the next (the acquire of
        // `owner_prod` above, the release below): its counts need no read-modify-write.
        Counters::add_alone(&self.producers.counters.publishes, 1);
        Counters::add_alone(
            &self.producers.counters.syncs,
            u64::from((taken & SYNCS) >> SYNCS_SHIFT),
        );
        Counters::add_alone(
            &self.producers.counters.commands,
            u64::from(QueuePtr::used(end, start)),
        );
        self.producers
            .owner_prod
            .store(end.value(), Ordering::Release);
        Ok(())
    }

    /// Step 5: waits for the sync in `slot`; returns a `CONS` the SMMU has reached.
    fn wait_sync<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        slot: QueuePtr,
        outcome: &mut Outcome,
    ) -> Result<QueuePtr, Error> {
        let slot_word = Self::slot_words(slot);
        let done = poll(hal, self.budget, || {
            let complete = match self.mode {
                // The SMMU's completion write zeroes the entry's first 32 bits, which hold the
                // non-zero CMD_SYNC opcode until then (§4.7.3).
                SyncMode::Msi => match self.buf.read_low32(hal, slot_word) {
                    Ok(0) => Some(Ok(slot.advance(1))),
                    Ok(_) => None,
                    Err(e) => Some(Err(e.into())),
                },
                SyncMode::Sev | SyncMode::Poll => {
                    let cons = self.read_cons(regs);
                    // CONS moves past a CMD_SYNC only once it completed (§4.7.3).
                    consumed(cons, slot).then_some(Ok(cons))
                }
            };
            // GERROR is read only while the sync is outstanding: a completed sync had every
            // command before it consumed (an illegal one was replaced first, and its slot
            // marked rejected), so the common case costs no error-register reads.
            if complete.is_none() {
                if let Err(e) = self.check_errors(hal, regs, outcome) {
                    return Some(Err(e));
                }
            }
            complete
        });
        done.unwrap_or(Err(Error::Timeout(WaitFor::CmdSync)))
    }

    fn clear_rejected(&self, start: QueuePtr, end: QueuePtr) {
        // Rejections are rare: one load of the count skips the bitmap altogether. A bit set
        // meanwhile is for a published slot under recovery, never one of ours (unpublished).
        if self.rejections.load(Ordering::Acquire) == 0 {
            return;
        }
        for (_, _, w, m) in self.spans(&self.rejected, start, end) {
            // Read first: a plain load keeps the line shared.
            if let Some(w) = w.filter(|w| w.load(Ordering::Relaxed) & m != 0) {
                self.uncount_rejections(w.fetch_and(!m, Ordering::Relaxed) & m);
            }
        }
    }

    /// Takes the bits a clear actually removed off the count.
    fn uncount_rejections(&self, cleared: u64) {
        if cleared != 0 {
            self.rejections
                .fetch_sub(cleared.count_ones(), Ordering::Relaxed);
        }
    }

    /// After our sync completed: reports the first of our commands the SMMU rejected.
    fn take_rejected(
        &self,
        start: QueuePtr,
        sync_slot: QueuePtr,
        cmds: &[Command],
        outcome: &mut Outcome,
    ) {
        // Any rejection of ours was counted before our sync could complete.
        if self.rejections.load(Ordering::Acquire) == 0 {
            return;
        }
        for (first, n, w, m) in self.spans(&self.rejected, start, sync_slot) {
            let Some(w) = w else { continue };
            let hit = w.load(Ordering::Acquire) & m;
            if hit == 0 {
                continue;
            }
            self.uncount_rejections(w.fetch_and(!hit, Ordering::Relaxed) & hit);
            // The lowest rejected slot of the span, as an offset into our commands.
            let slot = hit.trailing_zeros() - first.index() % 64;
            let offset = QueuePtr::used(first, start) + slot;
            if let Some(cmd) = cmds.get(offset as usize).filter(|_| slot < n) {
                outcome.rejected.get_or_insert(CommandFault {
                    error: cmdq_error::ILL,
                    words: cmd.encode().to_words(),
                });
            }
        }
    }

    fn sync_command(&self, slot: QueuePtr) -> Command {
        match self.mode {
            SyncMode::Msi => Command::Sync {
                cs: SyncSignal::Irq,
                msh: MSI_SH_INNER,
                msi_attr: MSI_ATTR_WB,
                msi_data: 0,
                msi_addr: self.buf.pa_of(Self::slot_words(slot)).0,
            },
            SyncMode::Sev => Command::Sync {
                cs: SyncSignal::Sev,
                msh: 0,
                msi_attr: 0,
                msi_data: 0,
                msi_addr: 0,
            },
            SyncMode::Poll => Command::Sync {
                cs: SyncSignal::None,
                msh: 0,
                msi_attr: 0,
                msi_data: 0,
                msi_addr: 0,
            },
        }
    }

    /// Looks at `GERROR.CMDQ_ERR` and recovers the queue when it is set (§7.1, SPEC D5):
    /// - `CERROR_ILL`: the entry at `CONS` is overwritten with a `CMD_SYNC` (which cannot be
    ///   illegal), the slot is marked rejected for its submitter, the error is acknowledged;
    /// - `CERROR_ABT`, `CERROR_ATC_INV_SYNC`: acknowledged, so the SMMU retries the entry;
    ///   bounded by [`MAX_RETRIES`] per submission.
    ///
    /// One CPU recovers at a time; the others go on waiting. Also fails fast on service
    /// failure mode, which no command can fix.
    fn check_errors<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let active = |regs: &R| {
            let gerrorn = regs.read32(offset::GERRORN);
            (
                GlobalErrors::active(regs.read32(offset::GERROR), gerrorn),
                gerrorn,
            )
        };
        let (errors, _) = active(regs);
        if errors.contains(GlobalErrors::SFM_ERR) {
            return Err(Error::ServiceFailure);
        }
        if !errors.contains(GlobalErrors::CMDQ_ERR) {
            return Ok(());
        }
        if self.recovering.swap(true, Ordering::Acquire) {
            return Ok(());
        }
        let r = self.recover(hal, regs, outcome, active);
        self.recovering.store(false, Ordering::Release);
        r
    }

    /// [`Self::check_errors`] with the recovery flag held.
    fn recover<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        outcome: &mut Outcome,
        active: impl Fn(&R) -> (GlobalErrors, u32),
    ) -> Result<(), Error> {
        // Another CPU may have recovered between our first look and taking the flag.
        let (errors, gerrorn) = active(regs);
        if !errors.contains(GlobalErrors::CMDQ_ERR) {
            return Ok(());
        }
        let cons = self.read_cons(regs);
        let w = Self::slot_words(cons);
        let words = [self.buf.read(hal, w)?, self.buf.read(hal, w + 1)?];
        let fault = CommandFault {
            error: cons.cmdq_error(),
            words,
        };
        match fault.error {
            cmdq_error::ILL => {
                let replacement = self.sync_command(cons).encode().to_words();
                self.buf.write(hal, w, replacement[0])?;
                self.buf.write(hal, w + 1, replacement[1])?;
                if let Some((b, m)) = Self::bit(&self.rejected, cons.index()) {
                    // Counted before the acknowledgement below lets the submitter's sync
                    // complete, so the submitter sees the count with the bit.
                    if b.fetch_or(m, Ordering::Release) & m == 0 {
                        self.rejections.fetch_add(1, Ordering::Release);
                    }
                }
                Counters::add(&self.producers.counters.illegal, 1);
            }
            cmdq_error::ABT | cmdq_error::ATC_INV_SYNC => {
                Counters::add(&self.producers.counters.retries, 1);
                outcome.retries += 1;
                if outcome.retries > MAX_RETRIES {
                    return Err(Error::CommandRetriesExhausted(fault));
                }
            }
            // CERROR_NONE or a reserved value: nothing to fix, acknowledging resumes.
            _ => {}
        }
        // Toggling GERRORN.CMDQ_ERR acknowledges the error and restarts consumption (§6.3.20).
        regs.write32(offset::GERRORN, gerrorn ^ GlobalErrors::CMDQ_ERR.bits());
        Ok(())
    }
}

/// Whether `cons` is past `slot`. Exact while the queue cannot wrap twice behind the waiter,
/// which the shared lock guarantees (module docs).
fn consumed(cons: QueuePtr, slot: QueuePtr) -> bool {
    if cons.wrap() == slot.wrap() {
        cons.index() > slot.index()
    } else {
        cons.index() <= slot.index()
    }
}

#[derive(Default)]
struct Outcome {
    rejected: Option<CommandFault>,
    retries: u32,
}

impl Outcome {
    fn into_result(self) -> Result<(), Error> {
        match self.rejected {
            Some(f) => Err(Error::CommandRejected(f)),
            None => Ok(()),
        }
    }
}

/// A register file that behaves like an SMMU consuming commands the moment `CMDQ_PROD`
/// moves, with the checks the protocol must pass: `PROD` only ever moves forward, and every
/// published slot holds a command written for this pass (consumed slots are poisoned with 0,
/// which is no opcode). `CMD_TLBI_EL3_ALL` is rejected with `CERROR_ILL`, as on a Non-secure
/// queue. Shared by the unit tests, their Miri run and the loom model.
#[cfg(test)]
mod fake {
    #[cfg(all(loom, test))]
    use loom::sync::Mutex;
    #[cfg(not(all(loom, test)))]
    use std::sync::Mutex;
    use std::vec::Vec;

    use crate::access::RegisterAccess;
    use crate::arch::cmd::opcode;
    use crate::arch::queue::{cmdq_error, GlobalErrors, QueuePtr};
    use crate::arch::regs::offset;
    use crate::hal::PhysAddr;
    use crate::host::HostHal;

    #[derive(Default)]
    pub(super) struct State {
        base: u64,
        log2: u32,
        prod: u32,
        cons: u32,
        error: u32,
        gerror: u32,
        gerrorn: u32,
        /// Word 0 of every non-sync command consumed, in order.
        pub(super) consumed: Vec<u64>,
        /// Slots published before they were written (must stay 0).
        pub(super) stale: u32,
        /// `CMDQ_PROD` writes that moved it backwards or beyond a queue's worth (must stay 0).
        pub(super) bad_prod: u32,
        pub(super) syncs: u32,
    }

    pub(super) struct Smmu<'h> {
        hal: &'h HostHal,
        state: Mutex<State>,
    }

    impl<'h> Smmu<'h> {
        pub(super) fn new(hal: &'h HostHal) -> Self {
            Self {
                hal,
                state: Mutex::new(State::default()),
            }
        }

        pub(super) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            f(&mut self.state.lock().unwrap())
        }

        fn run(&self, s: &mut State) {
            let q = |raw| QueuePtr::new(raw, s.log2);
            while s.error == cmdq_error::NONE && !QueuePtr::is_empty(q(s.prod), q(s.cons)) {
                let pa = PhysAddr(s.base + u64::from(q(s.cons).index()) * 16);
                let w0 = self.hal.read_u64(pa);
                let op = (w0 & 0xff) as u8;
                if op == opcode::TLBI_EL3_ALL {
                    s.error = cmdq_error::ILL;
                    s.gerror ^= GlobalErrors::CMDQ_ERR.bits();
                    return;
                }
                if op == 0 {
                    s.stale += 1;
                } else if op == opcode::CMD_SYNC {
                    s.syncs += 1;
                } else {
                    s.consumed.push(w0);
                }
                if op == opcode::CMD_SYNC && (w0 >> 12) & 0b11 == 0b01 {
                    // CS = SIG_IRQ: the MSI write-back, 32 zero bits into the sync's own slot
                    // (where the driver aims it), atomic since its waiter polls it right now.
                    // It also poisons the slot.
                    self.hal.write_u32_atomic(pa, 0);
                } else {
                    // Poison the slot: opcode 0 is no command.
                    self.hal.write_u64(pa, w0 & !0xffff_ffff);
                }
                s.cons = q(s.cons).advance(1).value();
            }
        }
    }

    impl RegisterAccess for Smmu<'_> {
        fn read32(&self, off: usize) -> u32 {
            self.with(|s| match off {
                offset::CMDQ_CONS => s.cons | (s.error << 24),
                offset::CMDQ_PROD => s.prod,
                offset::GERROR => s.gerror,
                offset::GERRORN => s.gerrorn,
                _ => 0,
            })
        }

        fn write32(&self, off: usize, value: u32) {
            let mut s = self.state.lock().unwrap();
            match off {
                offset::CMDQ_PROD => {
                    let (new, old) = (QueuePtr::new(value, s.log2), QueuePtr::new(s.prod, s.log2));
                    if QueuePtr::used(new, old) > 1 << s.log2 {
                        s.bad_prod += 1;
                    }
                    s.prod = value;
                    self.run(&mut s);
                }
                offset::CMDQ_CONS => s.cons = value,
                offset::GERRORN => {
                    s.gerrorn = value;
                    if !GlobalErrors::active(s.gerror, s.gerrorn).contains(GlobalErrors::CMDQ_ERR) {
                        s.error = cmdq_error::NONE;
                        self.run(&mut s);
                    }
                }
                _ => {}
            }
        }

        fn read64(&self, _off: usize) -> u64 {
            0
        }

        fn write64(&self, off: usize, value: u64) {
            if off == offset::CMDQ_BASE {
                self.with(|s| {
                    s.base = value & 0x00ff_ffff_ffff_ffe0;
                    s.log2 = (value & 0x1f) as u32;
                });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::vec::Vec;

    use super::fake::Smmu;
    use super::*;
    use crate::host::HostHal;

    fn cfgi(sid: u32) -> Command {
        Command::CfgiSte { sid, leaf: true }
    }

    fn sid_of(word0: u64) -> u32 {
        (word0 >> 32) as u32
    }

    fn setup(hal: &HostHal, mode: SyncMode) -> CommandQueue {
        setup_sized(hal, mode, MIN_LOG2_ENTRIES)
    }

    fn setup_sized(hal: &HostHal, mode: SyncMode, log2: u32) -> CommandQueue {
        // Spinning CPUs give the others a turn (real threads and Miri alike).
        hal.on_relax(|_| std::thread::yield_now());
        CommandQueue::new(hal, log2, mode, true, PollBudget(1_000_000)).unwrap()
    }

    /// Threads × rounds of (a few commands + sync) through the protocol; every command is
    /// consumed exactly once, each thread's in its own order, nothing stale is published.
    fn stress(mode: SyncMode, threads: u32, rounds: u32) {
        stress_sized(MIN_LOG2_ENTRIES, mode, threads, rounds);
    }

    fn stress_sized(log2: u32, mode: SyncMode, threads: u32, rounds: u32) {
        let hal = HostHal::new();
        let smmu = Smmu::new(&hal);
        let q = setup_sized(&hal, mode, log2);
        assert_eq!(q.log2_entries(), log2);
        q.program(&smmu);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (q, hal, smmu) = (&q, &hal, &smmu);
                s.spawn(move || {
                    for r in 0..rounds {
                        let mut b = CommandBatch::new(q, hal, smmu);
                        // Up to 70 commands: some batches span two publishes.
                        for k in 0..=((t * 7 + r * 13) % 70) {
                            b.add(cfgi((t << 24) | (r << 8) | k)).unwrap();
                        }
                        b.submit().unwrap();
                    }
                });
            }
        });
        let expected: u64 = (0..threads)
            .flat_map(|t| (0..rounds).map(move |r| u64::from(1 + (t * 7 + r * 13) % 70)))
            .sum();
        smmu.with(|s| {
            assert_eq!(s.stale, 0, "a slot was published before it was written");
            assert_eq!(s.bad_prod, 0, "CMDQ_PROD moved backwards");
            assert_eq!(s.consumed.len() as u64, expected, "every command, once");
            assert_eq!(s.syncs, threads * rounds);
            for t in 0..threads {
                let mine: Vec<u32> = s
                    .consumed
                    .iter()
                    .map(|w| sid_of(*w))
                    .filter(|sid| sid >> 24 == t)
                    .collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "thread {t} out of order"
                );
            }
        });
        let st = q.stats();
        assert_eq!(st.syncs, u64::from(threads * rounds));
        assert!(st.publishes <= st.commands);
        // SAFETY: the fake SMMU is done with the queue.
        unsafe { q.release(&hal) };
    }

    // spec: D5, D12
    #[test]
    fn several_threads_submit_and_sync_without_losing_or_reordering_commands() {
        let rounds = if cfg!(miri) { 3 } else { 200 };
        stress(SyncMode::Msi, 3, rounds);
    }

    // spec: D5, D12
    #[test]
    fn cons_polling_sees_each_sync_complete_across_many_wraps() {
        // 128 entries; 2 × 100 rounds of up to 71 entries wrap the queue dozens of times.
        let rounds = if cfg!(miri) { 3 } else { 100 };
        stress(SyncMode::Poll, 2, rounds);
        stress(SyncMode::Sev, 2, rounds / 2 + 1);
    }

    /// The largest queue the build allows (2^10, or 2^14 with `cmdq-entries-16k`): the bitmaps
    /// cover every entry, and the protocol wraps it more than twice. Not under Miri: the
    /// unsafe it runs is the small queue's, and wrapping 2^14 entries takes Miri hours.
    // spec: D5, D12
    #[test]
    #[cfg_attr(miri, ignore)]
    fn the_largest_queue_wraps_without_losing_or_reordering_commands() {
        // About 36 entries per round: 3 × 1400 rounds pass 2^14 entries more than twice.
        stress_sized(MAX_LOG2_ENTRIES, SyncMode::Msi, 3, 1400);
        stress_sized(MAX_LOG2_ENTRIES, SyncMode::Poll, 2, 1400);
    }

    // spec: D5
    #[test]
    fn an_illegal_command_is_reported_to_its_submitter_only_while_others_run_on() {
        let hal = HostHal::new();
        let smmu = Smmu::new(&hal);
        let q = setup(&hal, SyncMode::Poll);
        q.program(&smmu);
        let rounds = if cfg!(miri) { 2 } else { 50 };
        let results: Vec<Vec<Result<(), Error>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3u32)
                .map(|t| {
                    let (q, hal, smmu) = (&q, &hal, &smmu);
                    s.spawn(move || {
                        (0..rounds)
                            .map(|r| {
                                let bad = t == 0 && r % 2 == 0;
                                let mut cmds = std::vec![cfgi(t << 24 | r)];
                                if bad {
                                    cmds.push(Command::TlbiEl3All);
                                }
                                cmds.push(cfgi(t << 24 | r | 0x8000));
                                q.issue(hal, smmu, &cmds, true)
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (t, rs) in results.iter().enumerate() {
            for (r, res) in rs.iter().enumerate() {
                if t == 0 && r % 2 == 0 {
                    let Err(Error::CommandRejected(f)) = res else {
                        panic!("thread 0 round {r}: {res:?}")
                    };
                    assert_eq!(f.error, cmdq_error::ILL);
                    assert_eq!(f.words, Command::TlbiEl3All.encode().to_words());
                } else {
                    assert!(res.is_ok(), "thread {t} round {r}: {res:?}");
                }
            }
        }
        assert_eq!(q.stats().illegal, u64::from(rounds.div_ceil(2)));
        smmu.with(|s| {
            assert_eq!(s.stale, 0);
            // Both good commands of every submission ran, the rejected one did not.
            assert_eq!(s.consumed.len() as u32, 3 * rounds * 2);
        });
        // SAFETY: the fake SMMU is done with the queue.
        unsafe { q.release(&hal) };
    }

    /// The owner counts the syncs its batch gathered from the count in the shadow `PROD`; a
    /// producer that finds that count full counts itself, and neither is lost.
    #[test]
    fn syncs_are_counted_by_the_owner_and_beyond_a_full_count_by_their_producer() {
        let hal = HostHal::new();
        let smmu = Smmu::new(&hal);
        let q = setup(&hal, SyncMode::Msi);
        q.program(&smmu);
        let mut outcome = Outcome::default();
        // An owner has gathered a full count of syncs (index still 0).
        q.producers.prod.store(OWNED | SYNCS, Ordering::Relaxed);
        let (start, owner) = q.reserve(&hal, &smmu, 1, true, &mut outcome).unwrap();
        assert_eq!((start.value(), owner), (0, false));
        assert_eq!(q.producers.prod.load(Ordering::Relaxed), OWNED | SYNCS | 1);
        assert_eq!(q.stats().syncs, 1, "counted by the producer");
        // The owner takes the count with the flag.
        q.producers
            .prod
            .store(OWNED | 3 << SYNCS_SHIFT | 1, Ordering::Relaxed);
        q.producers.owner_prod.store(0, Ordering::Relaxed);
        q.toggle_valid(q.ptr(0), q.ptr(1));
        q.publish_gathered(&hal, &smmu, q.ptr(0)).unwrap();
        assert_eq!(
            q.producers.prod.load(Ordering::Relaxed),
            1,
            "flag and count cleared"
        );
        assert_eq!(q.stats().syncs, 4);
        assert_eq!((q.stats().commands, q.stats().publishes), (1, 1));
        // SAFETY: the fake SMMU is done with the queue.
        unsafe { q.release(&hal) };
    }

    // spec: D12
    #[test]
    fn the_queue_is_shared_between_cpus() {
        // Fails to compile if a field makes the queue unsafe to share.
        fn shareable<T: Send + Sync>() {}
        shareable::<CommandQueue>();
    }

    // spec: D12
    #[test]
    fn what_sync_pollers_read_shares_no_cache_line_with_what_producers_write() {
        use core::mem::{offset_of, size_of};
        // The widest line a CPU moves as one (two 64-byte lines on x86's adjacent-line
        // prefetch, 128 bytes on some Arm cores).
        const LINE: usize = 128;
        let lines = |start: usize, len: usize| (start / LINE)..(start + len).div_ceil(LINE);
        let overlaps = |a: core::ops::Range<usize>, b: &core::ops::Range<usize>| {
            a.start < b.end && b.start < a.end
        };
        let written = [
            lines(offset_of!(CommandQueue, producers), size_of::<Producers>()),
            lines(
                offset_of!(CommandQueue, valid),
                size_of::<[AtomicU64; MAP_WORDS]>(),
            ),
        ];
        let polled = [
            lines(offset_of!(CommandQueue, buf), size_of::<DmaBuf>()),
            lines(offset_of!(CommandQueue, log2), 4),
            lines(offset_of!(CommandQueue, mode), size_of::<SyncMode>()),
            lines(offset_of!(CommandQueue, budget), size_of::<PollBudget>()),
        ];
        for p in &polled {
            for w in &written {
                assert!(!overlaps(p.clone(), w), "lines {p:?} and {w:?} overlap");
            }
        }
        assert!(!overlaps(written[0].clone(), &written[1]));
        assert_eq!(offset_of!(CommandQueue, producers) % LINE, 0);
    }

    #[test]
    fn consumed_handles_the_wrap() {
        let p = |idx: u32, wrap: u32| QueuePtr::new(idx | (wrap << 7), 7);
        assert!(!consumed(p(5, 0), p(5, 0)));
        assert!(consumed(p(6, 0), p(5, 0)));
        assert!(consumed(p(0, 1), p(5, 0)));
        assert!(consumed(p(5, 1), p(5, 0)));
        assert!(
            !consumed(p(6, 1), p(5, 0)),
            "a full lap ahead is not reachable"
        );
        assert!(consumed(p(1, 0), p(127, 1)));
        assert!(!consumed(p(127, 1), p(127, 1)));
    }
}

/// loom model checks of the producer/owner protocol (`RUSTFLAGS="--cfg loom" cargo test -p
/// smmu --lib --release loom`; bound the search with `LOOM_MAX_PREEMPTIONS`). The queue has
/// 4 entries here, so two producers of a command and a sync each fill it and wrap it.
#[cfg(all(test, loom))]
mod loom_tests {
    use core::ptr::NonNull;
    use std::sync::Arc;
    use std::vec::Vec;

    use super::fake::Smmu;
    use super::*;
    use crate::hal::{DmaRegion, HalError, MapAttr, PhysAddr};
    use crate::host::HostHal;

    /// The test HAL whose `relax` is a loom yield, so spinning CPUs let the others run.
    struct LoomHal(HostHal);

    // SAFETY: every call is forwarded to `HostHal`, which upholds the contract.
    unsafe impl Hal for LoomHal {
        fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
            self.0.dma_alloc(size, align)
        }
        unsafe fn dma_free(&self, region: DmaRegion) {
            // SAFETY: forwarded from the caller.
            unsafe { self.0.dma_free(region) }
        }
        fn map_phys(
            &self,
            pa: PhysAddr,
            size: usize,
            attr: MapAttr,
        ) -> Result<NonNull<u8>, HalError> {
            self.0.map_phys(pa, size, attr)
        }
        unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize) {
            // SAFETY: forwarded from the caller.
            unsafe { self.0.unmap_phys(va, size) }
        }
        fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
            self.0.is_ram(pa, size)
        }
        fn relax(&self) {
            loom::thread::yield_now();
        }
    }

    struct World {
        hal: &'static LoomHal,
        smmu: Smmu<'static>,
        q: CommandQueue,
    }

    fn cfgi(sid: u32) -> Command {
        Command::CfgiSte { sid, leaf: true }
    }

    /// `threads` producers each submit `per_thread` rounds of `cmds(t, r)` + sync at once.
    fn model(mode: SyncMode, threads: u32, per_thread: u32, cmds: fn(u32, u32) -> Vec<Command>) {
        loom::model(move || {
            // Leaked per execution: loom threads need 'static, and the HAL outlives them.
            let hal: &'static LoomHal =
                std::boxed::Box::leak(std::boxed::Box::new(LoomHal(HostHal::new())));
            let q = CommandQueue::new(hal, 2, mode, true, PollBudget(10_000)).unwrap();
            let w = Arc::new(World {
                hal,
                smmu: Smmu::new(&hal.0),
                q,
            });
            w.q.program(&w.smmu);
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let w = Arc::clone(&w);
                    loom::thread::spawn(move || {
                        (0..per_thread)
                            .map(|r| w.q.issue(w.hal, &w.smmu, &cmds(t, r), true))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let results: Vec<Vec<Result<(), Error>>> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            let expected_ok = |t: u32, r: u32| !cmds(t, r).contains(&Command::TlbiEl3All);
            for (t, rs) in results.iter().enumerate() {
                for (r, res) in rs.iter().enumerate() {
                    if expected_ok(t as u32, r as u32) {
                        assert!(res.is_ok(), "thread {t} round {r}: {res:?}");
                    } else {
                        assert!(
                            matches!(res, Err(Error::CommandRejected(_))),
                            "thread {t} round {r}: {res:?}"
                        );
                    }
                }
            }
            let good: usize = (0..threads)
                .flat_map(|t| (0..per_thread).map(move |r| (t, r)))
                .map(|(t, r)| {
                    cmds(t, r)
                        .iter()
                        .filter(|c| **c != Command::TlbiEl3All)
                        .count()
                })
                .sum();
            w.smmu.with(|s| {
                assert_eq!(s.stale, 0, "a slot was published before it was written");
                assert_eq!(s.bad_prod, 0, "CMDQ_PROD moved backwards");
                assert_eq!(s.consumed.len(), good, "every command, exactly once");
                // Each rejected command came back as a CMD_SYNC.
                let replaced = results.iter().flatten().filter(|r| r.is_err()).count() as u32;
                assert_eq!(s.syncs, threads * per_thread + replaced);
            });
        });
    }

    #[test]
    fn loom_two_producers_msi_each_sees_its_own_sync() {
        model(SyncMode::Msi, 2, 1, |t, _| std::vec![cfgi(t)]);
    }

    #[test]
    fn loom_two_producers_poll_wrap_the_queue() {
        // 2 × 2 × (1 + sync) = 8 entries through a 4-entry queue: space waits, the exclusive
        // CONS refresh and the last-shared-holder update all run.
        model(SyncMode::Poll, 2, 2, |t, r| std::vec![cfgi(t * 2 + r)]);
    }

    #[test]
    fn loom_an_illegal_command_is_recovered_with_another_producer_in_flight() {
        model(SyncMode::Poll, 2, 1, |t, _| {
            if t == 0 {
                std::vec![Command::TlbiEl3All]
            } else {
                std::vec![cfgi(1)]
            }
        });
    }
}

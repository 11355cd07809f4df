//! The command queue (SPEC D5, D12; IHI 0070 G.b §3.5, §4).
//!
//! Any number of CPUs submit at once and no lock is held while a `CMD_SYNC` is awaited. The
//! protocol is the one Linux's arm-smmu-v3 driver uses:
//!
//! 1. **Reserve.** A producer claims `n` slots with one compare-and-swap on a shadow of
//!    `PROD` and `CONS` kept in memory (`llq`). The shadow `PROD` carries an *owned* flag:
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

/// The smallest queue the driver accepts: a full batch plus its `CMD_SYNC` must fit, and
/// 2^7 = 128 is the first power of two above 65 (SPEC D1).
pub const MIN_LOG2_ENTRIES: u32 = 7;

/// The largest queue the driver allocates (2^10 entries = 16 KiB), even if `IDR1.CMDQS`
/// allows more: batches are 65 entries, so more space only buys memory.
pub const MAX_LOG2_ENTRIES: u32 = 10;

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
    /// Commands written, `CMD_SYNC`s included.
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
    syncs: StatCounter,
    publishes: StatCounter,
    illegal: StatCounter,
    retries: StatCounter,
}

impl Counters {
    fn add(c: &StatCounter, n: u64) {
        c.fetch_add(n, core::sync::atomic::Ordering::Relaxed);
    }

    fn get(c: &StatCounter) -> u64 {
        c.load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// The shadow `PROD` (with [`OWNED`]) in the low half, the shadow `CONS` in the high half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shadow {
    prod: u32,
    cons: u32,
}

impl Shadow {
    fn unpack(v: u64) -> Self {
        Shadow {
            prod: v as u32,
            cons: (v >> 32) as u32,
        }
    }

    fn pack(self) -> u64 {
        u64::from(self.prod) | (u64::from(self.cons) << 32)
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
    /// Shadow `PROD`/`CONS` ([`Shadow`]); reservations are CAS on it.
    llq: AtomicU64,
    /// The `PROD` value up to which the last owner published: the next owner starts there.
    owner_prod: AtomicU32,
    /// Shared (≥ 0, the number of sync waiters) / exclusive ([`EXCLUSIVE`]) lock on moving
    /// the shadow `CONS`.
    lock: AtomicI32,
    /// One bit per entry, toggled when its command is written (module docs, step 3).
    valid: [AtomicU64; MAP_WORDS],
    /// One bit per entry, set when the SMMU rejected the command there (`CERROR_ILL`).
    rejected: [AtomicU64; MAP_WORDS],
    /// Held by the one CPU recovering from `GERROR.CMDQ_ERR`.
    recovering: AtomicBool,
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
            llq: AtomicU64::new(0),
            owner_prod: AtomicU32::new(0),
            lock: AtomicI32::new(0),
            valid: core::array::from_fn(|_| AtomicU64::new(0)),
            rejected: core::array::from_fn(|_| AtomicU64::new(0)),
            recovering: AtomicBool::new(false),
            counters: Counters::default(),
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
        self.llq.store(0, Ordering::Release);
        self.owner_prod.store(0, Ordering::Release);
        // Index 0 with wrap 0 expects valid bits that read 1 once written: start from 0.
        for w in self.valid.iter().chain(self.rejected.iter()) {
            w.store(0, Ordering::Release);
        }
    }

    /// What the queue did so far.
    pub fn stats(&self) -> CmdqStats {
        let c = &self.counters;
        CmdqStats {
            commands: Counters::get(&c.commands),
            syncs: Counters::get(&c.syncs),
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
        QueuePtr::new(raw & !OWNED, self.log2)
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
        let (start, owner) = self.reserve(hal, regs, n, outcome)?;
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
        Counters::add(&self.counters.commands, u64::from(n));
        Counters::add(&self.counters.syncs, u64::from(sync));
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

    /// Free entries for a shadow (0 if the shadow is inconsistent, which it never is).
    fn space(&self, s: Shadow) -> u32 {
        let size = 1u32 << self.log2;
        size.saturating_sub(QueuePtr::used(self.ptr(s.prod), self.ptr(s.cons)))
    }

    /// Claims `n` contiguous slots; returns the first and whether this CPU is the owner.
    fn reserve<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        n: u32,
        outcome: &mut Outcome,
    ) -> Result<(QueuePtr, bool), Error> {
        let mut cur = self.llq.load(Ordering::Relaxed);
        loop {
            let s = Shadow::unpack(cur);
            if self.space(s) < n {
                self.wait_for_space(hal, regs, n, outcome)?;
                cur = self.llq.load(Ordering::Relaxed);
                continue;
            }
            let start = self.ptr(s.prod);
            let next = Shadow {
                prod: start.advance(n).value() | OWNED,
                cons: s.cons,
            };
            // Acquire: the slots were freed by the CONS this shadow came from; nothing of
            // ours is written to them before that.
            match self.llq.compare_exchange_weak(
                cur,
                next.pack(),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok((start, s.prod & OWNED == 0)),
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
            if self
                .lock
                .compare_exchange(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                let cons = self.read_cons(regs);
                self.advance_shadow_cons(cons);
                self.lock.store(0, Ordering::Release);
            }
            let s = Shadow::unpack(self.llq.load(Ordering::Acquire));
            (self.space(s) >= n).then_some(Ok(()))
        });
        done.unwrap_or(Err(Error::Timeout(WaitFor::CmdqSpace)))
    }

    /// Moves the shadow `CONS` to `cons` if that is forward (a later observer may have moved
    /// it further already).
    fn advance_shadow_cons(&self, cons: QueuePtr) {
        let mut cur = self.llq.load(Ordering::Relaxed);
        loop {
            let s = Shadow::unpack(cur);
            let prod = self.ptr(s.prod);
            let forward = QueuePtr::used(prod, cons) <= QueuePtr::used(prod, self.ptr(s.cons));
            if !forward {
                return;
            }
            let next = Shadow {
                prod: s.prod,
                cons: cons.value(),
            };
            match self.llq.compare_exchange_weak(
                cur,
                next.pack(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(v) => cur = v,
            }
        }
    }

    /// Takes the lock shared. Exclusive holders only read one register, so this waits for
    /// at most that long.
    fn shared_lock<H: Hal + ?Sized>(&self, hal: &H) {
        if self.lock.fetch_add(1, Ordering::Acquire) >= 0 {
            return;
        }
        // An exclusive holder: our increment is lost when it stores 0; count in afresh.
        loop {
            let v = self.lock.load(Ordering::Relaxed);
            if v >= 0
                && self
                    .lock
                    .compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            hal.relax();
        }
    }

    /// Drops the shared lock; the last holder out publishes the `CONS` it saw (which is
    /// past its sync, and no sync of a current holder is behind it).
    fn shared_unlock(&self, seen: Option<QueuePtr>) {
        if let Some(cons) = seen {
            if self.lock.load(Ordering::Relaxed) == 1 {
                self.advance_shadow_cons(cons);
            }
        }
        self.lock.fetch_sub(1, Ordering::Release);
    }

    /// Bit `index` of a bitmap: the word and the mask.
    fn bit(map: &[AtomicU64; MAP_WORDS], index: u32) -> Option<(&AtomicU64, u64)> {
        map.get(index as usize / 64)
            .map(|w| (w, 1u64 << (index % 64)))
    }

    fn toggle_valid(&self, start: QueuePtr, end: QueuePtr) {
        let mut p = start;
        while p != end {
            if let Some((w, m)) = Self::bit(&self.valid, p.index()) {
                w.fetch_xor(m, Ordering::Release);
            }
            p = p.advance(1);
        }
    }

    /// A slot is valid when its bit reads 1 on an even pass (wrap clear) and 0 on an odd one.
    fn is_valid(&self, p: QueuePtr) -> bool {
        Self::bit(&self.valid, p.index())
            .is_none_or(|(w, m)| (w.load(Ordering::Acquire) & m != 0) != p.wrap())
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
            (self.owner_prod.load(Ordering::Acquire) == start.value()).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::CmdqOwner))?;
        let end = self.ptr(Shadow::unpack(self.llq.fetch_and(!u64::from(OWNED), Ordering::Relaxed)).prod);
        let mut p = start;
        while p != end {
            poll(hal, self.budget, || self.is_valid(p).then_some(()))
                .ok_or(Error::Timeout(WaitFor::CmdqOwner))?;
            p = p.advance(1);
        }
        // The register write orders the slot stores before it (RegisterAccess contract).
        regs.write32(offset::CMDQ_PROD, end.value());
        Counters::add(&self.counters.publishes, 1);
        self.owner_prod.store(end.value(), Ordering::Release);
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
            if let Err(e) = self.check_errors(hal, regs, outcome) {
                return Some(Err(e));
            }
            match self.mode {
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
            }
        });
        done.unwrap_or(Err(Error::Timeout(WaitFor::CmdSync)))
    }

    fn clear_rejected(&self, start: QueuePtr, end: QueuePtr) {
        let mut p = start;
        while p != end {
            if let Some((w, m)) = Self::bit(&self.rejected, p.index()) {
                w.fetch_and(!m, Ordering::Relaxed);
            }
            p = p.advance(1);
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
        let mut p = start;
        for cmd in cmds {
            if p == sync_slot {
                break;
            }
            if let Some((w, m)) = Self::bit(&self.rejected, p.index()) {
                if w.fetch_and(!m, Ordering::Acquire) & m != 0 {
                    outcome.rejected.get_or_insert(CommandFault {
                        error: cmdq_error::ILL,
                        words: cmd.encode().to_words(),
                    });
                }
            }
            p = p.advance(1);
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
            (GlobalErrors::active(regs.read32(offset::GERROR), gerrorn), gerrorn)
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
                    b.fetch_or(m, Ordering::Release);
                }
                Counters::add(&self.counters.illegal, 1);
            }
            cmdq_error::ABT | cmdq_error::ATC_INV_SYNC => {
                Counters::add(&self.counters.retries, 1);
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

/// Up to [`BATCH`] buffered commands that end in exactly one `CMD_SYNC` (SPEC D5).
///
/// Adding a command to a full batch first publishes the buffered ones without a sync, as
/// Linux's `arm_smmu_cmdq_batch` does, so a logical invalidation of any size costs one sync.
pub struct CommandBatch<'q, H: Hal + ?Sized, R: RegisterAccess + ?Sized> {
    queue: &'q CommandQueue,
    hal: &'q H,
    regs: &'q R,
    cmds: Vec<Command, BATCH>,
    issued: u32,
    error: Option<Error>,
}

impl<'q, H: Hal + ?Sized, R: RegisterAccess + ?Sized> CommandBatch<'q, H, R> {
    /// An empty batch on `queue`.
    pub fn new(queue: &'q CommandQueue, hal: &'q H, regs: &'q R) -> Self {
        Self {
            queue,
            hal,
            regs,
            cmds: Vec::new(),
            issued: 0,
            error: None,
        }
    }

    /// Adds a command, publishing the batch first when it is full.
    pub fn add(&mut self, cmd: Command) -> Result<(), Error> {
        if self.cmds.is_full() {
            self.flush(false)?;
        }
        // Cannot fail: the batch was just emptied if it was full.
        let _ = self.cmds.push(cmd);
        Ok(())
    }

    /// Commands added so far (the `CMD_SYNC` not included).
    pub fn len(&self) -> u32 {
        self.issued + self.cmds.len() as u32
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn flush(&mut self, sync: bool) -> Result<(), Error> {
        let r = self.queue.issue(self.hal, self.regs, &self.cmds, sync);
        self.issued += self.cmds.len() as u32;
        self.cmds.clear();
        match r {
            // A rejected command is reported at the end; the others still run.
            Err(e @ Error::CommandRejected(_)) => {
                self.error.get_or_insert(e);
                Ok(())
            }
            other => other,
        }
    }

    /// Publishes the rest and one `CMD_SYNC`, and waits for it.
    pub fn submit(mut self) -> Result<(), Error> {
        self.flush(true)?;
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

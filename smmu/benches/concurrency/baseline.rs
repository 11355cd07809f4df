//! The command queue as it was before the lock-free protocol, kept for the benchmark only: one
//! `spin::Mutex` held from the first slot written until the batch's `CMD_SYNC` completed.
//! (A verbatim copy of the old `smmu::cmdq::CommandQueue`, minus what the bench does not call.)
#![allow(dead_code, clippy::all, clippy::pedantic)]

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use tock_registers::LocalRegisterCopy;

use smmu::access::RegisterAccess;
use smmu::arch::cmd::{Command, SyncSignal};
use smmu::arch::queue::{cmdq_error, GlobalErrors, QueuePtr};
use smmu::arch::regs::{offset, CMDQ_BASE};
use smmu::dma::DmaBuf;

use smmu::hal::Hal;
use smmu::poll::{poll, PollBudget};
use smmu::{CommandFault, Error, WaitFor};

/// Commands per batch: a [`CommandBatch`] publishes at most this many before its `CMD_SYNC`.
pub const BATCH: usize = 64;

/// The smallest queue the driver accepts: a full batch plus its `CMD_SYNC` must fit, and
/// 2^7 = 128 is the first power of two above 65 (SPEC D1).
pub const MIN_LOG2_ENTRIES: u32 = 7;

/// The largest queue the driver allocates (2^10 entries = 16 KiB), even if `IDR1.CMDQS`
/// allows more: batches are 65 entries, so more space only buys memory.
pub const MAX_LOG2_ENTRIES: u32 = 10;

/// How often an aborted command fetch or a timed-out ATC invalidation is retried before the
/// submission fails (SPEC D5).
pub const MAX_RETRIES: u32 = 8;

/// `MSH` = Inner Shareable for the MSI completion write (§4.7.3).
const MSI_SH_INNER: u8 = 0b11;
/// `MSIAttr` = Normal, Inner/Outer Write-Back cacheable (the STE `MemAttr` encoding, §4.7.3).
const MSI_ATTR_WB: u8 = 0xf;

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

#[derive(Default)]
struct Counters {
    commands: AtomicU64,
    syncs: AtomicU64,
    publishes: AtomicU64,
    illegal: AtomicU64,
    retries: AtomicU64,
}

struct Producer {
    /// The driver's PROD: the next slot to write (index + wrap).
    prod: QueuePtr,
    /// The last `CMDQ_CONS` read.
    cons: QueuePtr,
}

/// A command queue in DMA memory and the driver's producer state.
pub struct CommandQueue {
    buf: DmaBuf,
    log2: u32,
    mode: SyncMode,
    budget: PollBudget,
    producer: Mutex<Producer>,
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
        let log2 = log2_entries.clamp(MIN_LOG2_ENTRIES, MAX_LOG2_ENTRIES);
        let bytes = 16usize << log2;
        let buf = DmaBuf::alloc(hal, bytes, bytes, coherent)?;
        Ok(Self {
            buf,
            log2,
            mode,
            budget,
            producer: Mutex::new(Producer {
                prod: QueuePtr::new(0, log2),
                cons: QueuePtr::new(0, log2),
            }),
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
    /// = 0. Only legal while `CR0.CMDQEN` is 0 (§6.3.26); the reset plans call it there.
    pub fn program<R: RegisterAccess + ?Sized>(&self, regs: &R) {
        regs.write64(offset::CMDQ_BASE, self.base_register());
        regs.write32(offset::CMDQ_PROD, 0);
        regs.write32(offset::CMDQ_CONS, 0);
        let mut p = self.producer.lock();
        p.prod = QueuePtr::new(0, self.log2);
        p.cons = QueuePtr::new(0, self.log2);
    }

    /// What the queue did so far.
    pub fn stats(&self) -> CmdqStats {
        CmdqStats {
            commands: self.counters.commands.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            publishes: self.counters.publishes.load(Ordering::Relaxed),
            illegal: self.counters.illegal.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
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
    ///
    /// On `Err(CommandRejected)` the queue has been recovered and the rest of the
    /// submission ran; only the rejected command had no effect.
    pub fn issue<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        cmds: &[Command],
        sync: bool,
    ) -> Result<(), Error> {
        let mut p = self.producer.lock();
        let mut outcome = Outcome::default();
        for chunk in cmds.chunks(BATCH) {
            let last = chunk.as_ptr_range().end == cmds.as_ptr_range().end;
            let with_sync = sync && last;
            self.reserve(
                hal,
                regs,
                &mut p,
                &mut outcome,
                chunk.len() + usize::from(with_sync),
            )?;
            for cmd in chunk {
                self.write_slot(hal, &mut p, cmd.encode().to_words())?;
            }
            if with_sync {
                self.issue_sync(hal, regs, &mut p, &mut outcome)?;
            } else {
                self.publish(regs, &p);
            }
        }
        if cmds.is_empty() && sync {
            self.reserve(hal, regs, &mut p, &mut outcome, 1)?;
            self.issue_sync(hal, regs, &mut p, &mut outcome)?;
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

    fn slot_words(p: &QueuePtr) -> usize {
        p.index() as usize * 2
    }

    fn write_slot<H: Hal + ?Sized>(
        &self,
        hal: &H,
        p: &mut Producer,
        words: [u64; 2],
    ) -> Result<(), Error> {
        let w = Self::slot_words(&p.prod);
        self.buf.write(hal, w, words[0])?;
        self.buf.write(hal, w + 1, words[1])?;
        p.prod = p.prod.advance(1);
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn publish<R: RegisterAccess + ?Sized>(&self, regs: &R, p: &Producer) {
        // The register write orders the slot stores before it (RegisterAccess contract).
        regs.write32(offset::CMDQ_PROD, p.prod.value());
        self.counters.publishes.fetch_add(1, Ordering::Relaxed);
    }

    fn read_cons<R: RegisterAccess + ?Sized>(&self, regs: &R) -> QueuePtr {
        QueuePtr::new(regs.read32(offset::CMDQ_CONS), self.log2)
    }

    /// Waits until `n` slots are free, recovering from command errors on the way.
    fn reserve<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        p: &mut Producer,
        outcome: &mut Outcome,
        n: usize,
    ) -> Result<(), Error> {
        let size = 1u32 << self.log2;
        let fits = |p: &Producer| (size - QueuePtr::used(p.prod, p.cons)) as usize >= n;
        if fits(p) {
            return Ok(());
        }
        let done = poll(hal, self.budget, || {
            if let Err(e) = self.check_errors(hal, regs, p, outcome) {
                return Some(Err(e));
            }
            p.cons = self.read_cons(regs);
            fits(p).then_some(Ok(()))
        });
        done.unwrap_or(Err(Error::Timeout(WaitFor::CmdqSpace)))
    }

    fn issue_sync<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        p: &mut Producer,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let slot = p.prod;
        let cmd = self.sync_command(slot);
        self.write_slot(hal, p, cmd.encode().to_words())?;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.publish(regs, p);
        let target = p.prod;
        let slot_word = Self::slot_words(&slot);
        let done = poll(hal, self.budget, || {
            if let Err(e) = self.check_errors(hal, regs, p, outcome) {
                return Some(Err(e));
            }
            let complete = match self.mode {
                // The SMMU's completion write zeroes the entry's first 32 bits, which hold the
                // non-zero CMD_SYNC opcode until then (§4.7.3).
                SyncMode::Msi => match self.buf.read_low32(hal, slot_word) {
                    Ok(v) => v == 0,
                    Err(e) => return Some(Err(e.into())),
                },
                SyncMode::Sev | SyncMode::Poll => {
                    p.cons = self.read_cons(regs);
                    // CONS moves past a CMD_SYNC only once it completed (§4.7.3); the lock
                    // means nothing was queued after it, so "past" is "CONS == PROD".
                    QueuePtr::is_empty(target, p.cons)
                }
            };
            complete.then_some(Ok(()))
        });
        done.unwrap_or(Err(Error::Timeout(WaitFor::CmdSync)))?;
        if self.mode == SyncMode::Msi {
            // The CMD_SYNC completed, so the SMMU consumed everything up to it.
            p.cons = target;
        }
        Ok(())
    }

    fn sync_command(&self, slot: QueuePtr) -> Command {
        match self.mode {
            SyncMode::Msi => Command::Sync {
                cs: SyncSignal::Irq,
                msh: MSI_SH_INNER,
                msi_attr: MSI_ATTR_WB,
                msi_data: 0,
                msi_addr: self.buf.pa_of(Self::slot_words(&slot)).0,
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
    ///   illegal), the error is acknowledged, the fault is kept for the caller;
    /// - `CERROR_ABT`, `CERROR_ATC_INV_SYNC`: acknowledged, so the SMMU retries the entry;
    ///   bounded by [`MAX_RETRIES`].
    ///
    /// Also fails fast on service failure mode, which no command can fix.
    fn check_errors<H: Hal + ?Sized, R: RegisterAccess + ?Sized>(
        &self,
        hal: &H,
        regs: &R,
        p: &mut Producer,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let gerror = regs.read32(offset::GERROR);
        let gerrorn = regs.read32(offset::GERRORN);
        let active = GlobalErrors::active(gerror, gerrorn);
        if active.contains(GlobalErrors::SFM_ERR) {
            return Err(Error::ServiceFailure);
        }
        if !active.contains(GlobalErrors::CMDQ_ERR) {
            return Ok(());
        }
        let cons = self.read_cons(regs);
        let w = Self::slot_words(&cons);
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
                self.counters.illegal.fetch_add(1, Ordering::Relaxed);
                outcome.rejected.get_or_insert(fault);
            }
            cmdq_error::ABT | cmdq_error::ATC_INV_SYNC => {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                outcome.retries += 1;
                if outcome.retries > MAX_RETRIES {
                    return Err(Error::CommandRetriesExhausted(fault));
                }
            }
            // CERROR_NONE or a reserved value: nothing to fix, acknowledging resumes.
            _ => {}
        }
        p.cons = cons;
        // Toggling GERRORN.CMDQ_ERR acknowledges the error and restarts consumption (§6.3.20).
        regs.write32(offset::GERRORN, gerrorn ^ GlobalErrors::CMDQ_ERR.bits());
        Ok(())
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

//! Faults the model has no knob for, injected between the driver and the model's registers.
//!
//! [`StallingRegs`] forwards every access to the model except the writes to `CMDQ_PROD` it is
//! told to drop: a dropped write means the SMMU never sees those commands (until a later
//! `PROD` write publishes them with the rest), so the driver's `CMD_SYNC` times out exactly
//! as on an SMMU that stopped consuming. That is how a test makes an attach fail at any
//! chosen command submission.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use smmu::arch::regs::offset;
use smmu::RegisterAccess;

use crate::platform::ModelRegs;

/// Which `CMDQ_PROD` writes to drop, counted from when the mode was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// Forward every write.
    Off,
    /// Drop only the write with this index (0: the next one); forward the others.
    Once(u64),
    /// Drop the write with this index and every one after it.
    From(u64),
}

#[derive(Debug)]
struct State {
    /// Bit 63: "from" mode; bits 62..0: the index, or all-ones for off.
    mode: AtomicU64,
    /// `CMDQ_PROD` writes seen since the mode was set.
    seen: AtomicU64,
    /// Writes dropped so far (in every mode).
    dropped: AtomicU64,
}

const OFF: u64 = u64::MAX >> 1;
const FROM: u64 = 1 << 63;

/// Register access to the model that drops chosen `CMDQ_PROD` writes.
#[derive(Clone, Debug)]
pub struct StallingRegs {
    inner: ModelRegs,
    state: Arc<State>,
}

impl StallingRegs {
    /// Forwards to `inner`; no write is dropped until [`StallingRegs::set`].
    pub fn new(inner: ModelRegs) -> Self {
        Self {
            inner,
            state: Arc::new(State {
                mode: AtomicU64::new(OFF),
                seen: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Sets the mode and restarts the count (every clone shares it).
    pub fn set(&self, stall: Stall) {
        let mode = match stall {
            Stall::Off => OFF,
            Stall::Once(n) => n.min(OFF - 1),
            Stall::From(n) => FROM | n.min(OFF - 1),
        };
        self.state.seen.store(0, Ordering::SeqCst);
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    /// `CMDQ_PROD` writes seen since the last [`StallingRegs::set`].
    pub fn prod_writes(&self) -> u64 {
        self.state.seen.load(Ordering::SeqCst)
    }

    /// `CMDQ_PROD` writes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::SeqCst)
    }

    fn drops(&self) -> bool {
        let i = self.state.seen.fetch_add(1, Ordering::SeqCst);
        let mode = self.state.mode.load(Ordering::SeqCst);
        let hit = match mode {
            OFF => false,
            m if m & FROM != 0 => i >= m & !FROM,
            m => i == m,
        };
        if hit {
            self.state.dropped.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }
}

impl RegisterAccess for StallingRegs {
    fn read32(&self, offset: usize) -> u32 {
        self.inner.read32(offset)
    }
    fn write32(&self, off: usize, value: u32) {
        if off == offset::CMDQ_PROD && self.drops() {
            return;
        }
        self.inner.write32(off, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.inner.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.inner.write64(offset, value);
    }
}

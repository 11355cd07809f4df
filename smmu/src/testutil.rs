//! Test doubles for the crate's unit tests (`cfg(test)` only): [`FakeRegs`], a scriptable
//! register file implementing [`RegisterAccess`]. Their HAL is [`HostHal`](crate::host::HostHal),
//! the strict host HAL that integration tests, benches and fuzz targets use too.
//!
//! ```ignore
//! let hal = HostHal::new();
//! let regs = FakeRegs::new();
//! let buf = DmaBuf::alloc(&hal, 4096, 4096, true)?;
//! regs.set32(offset::EVTQ_PROD, 3);          // script what the "SMMU" shows
//! hal.write_u64(buf.pa_of(0), 0x1);           // the "SMMU" writes memory by PA
//! // ... run the code under test ...
//! assert_eq!(regs.writes_to(offset::EVTQ_CONS), [3]);
//! // SAFETY: no register points at the buffer any more.
//! unsafe { buf.release(&hal) };
//! assert_eq!(hal.live_allocations(), 0);     // leak check
//! ```

// Test-only code: a broken test double should fail the test loudly.
#![allow(clippy::missing_panics_doc, unreachable_pub, dead_code)]

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::vec::Vec;

use crate::access::RegisterAccess;
use crate::arch::regs::{offset, RegWidth, REGISTER_FRAME_SIZE};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test must not turn every later access into a second panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One register write seen by [`FakeRegs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegWrite {
    /// Byte offset from the SMMU base.
    pub offset: usize,
    /// The value written (zero-extended for 32-bit writes).
    pub value: u64,
    /// The access width.
    pub width: RegWidth,
}

/// The storage behind [`FakeRegs`]: 32-bit words at 4-aligned offsets, unwritten ones zero.
/// A 64-bit register is the two words at `offset` and `offset + 4` (little-endian), so 32-
/// and 64-bit views of the same offset agree.
#[derive(Clone, Debug, Default)]
pub struct RegFile {
    words: HashMap<usize, u32>,
}

impl RegFile {
    /// The 32-bit word at `offset`.
    pub fn get32(&self, offset: usize) -> u32 {
        self.words.get(&offset).copied().unwrap_or(0)
    }

    /// Sets the 32-bit word at `offset`.
    pub fn set32(&mut self, offset: usize, value: u32) {
        self.words.insert(offset, value);
    }

    /// The 64-bit register at `offset`.
    pub fn get64(&self, offset: usize) -> u64 {
        u64::from(self.get32(offset)) | (u64::from(self.get32(offset + 4)) << 32)
    }

    /// Sets the 64-bit register at `offset`.
    pub fn set64(&mut self, offset: usize, value: u64) {
        self.set32(offset, value as u32);
        self.set32(offset + 4, (value >> 32) as u32);
    }
}

type WriteHook = Box<dyn FnMut(&mut RegFile, RegWrite) + Send>;

#[derive(Default)]
struct RegsInner {
    file: RegFile,
    log: Vec<RegWrite>,
    script32: HashMap<usize, VecDeque<u32>>,
    script64: HashMap<usize, VecDeque<u64>>,
    reads: HashMap<usize, usize>,
    ignored_writes: usize,
    on_write: Option<WriteHook>,
}

/// A plain register file implementing [`RegisterAccess`], for unit tests.
///
/// Writes are stored (and logged); reads return what is stored, unless a test scripted a
/// sequence of values for that offset ([`FakeRegs::script_reads32`]), which are returned
/// first, one per read. There are no architected side effects unless a test installs a
/// write hook ([`FakeRegs::on_write`]) or uses [`FakeRegs::with_ack_mirroring`]. As
/// [`RegisterAccess`] requires, offsets outside the 128 KiB frame or not aligned to the
/// access read as all-ones and ignore writes.
pub struct FakeRegs {
    inner: Mutex<RegsInner>,
}

impl Default for FakeRegs {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for FakeRegs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FakeRegs")
            .field("writes", &lock(&self.inner).log.len())
            .finish_non_exhaustive()
    }
}

impl FakeRegs {
    /// An all-zero register file.
    pub fn new() -> Self {
        FakeRegs {
            inner: Mutex::new(RegsInner::default()),
        }
    }

    /// A register file where `CR0ACK` follows `CR0` and `IRQ_CTRLACK` follows `IRQ_CTRL`
    /// at once (an SMMU with zero update latency).
    pub fn with_ack_mirroring() -> Self {
        let regs = Self::new();
        regs.on_write(|file, w| match w.offset {
            offset::CR0 => file.set32(offset::CR0ACK, w.value as u32),
            offset::IRQ_CTRL => file.set32(offset::IRQ_CTRLACK, w.value as u32),
            _ => {}
        });
        regs
    }

    /// Runs `hook` after every accepted write, with the register file (already holding the
    /// written value) and the write. Replaces an earlier hook.
    pub fn on_write(&self, hook: impl FnMut(&mut RegFile, RegWrite) + Send + 'static) {
        lock(&self.inner).on_write = Some(Box::new(hook));
    }

    /// Sets a 32-bit register as the SMMU would (not logged, no hook).
    pub fn set32(&self, offset: usize, value: u32) {
        lock(&self.inner).file.set32(offset, value);
    }

    /// Sets a 64-bit register as the SMMU would (not logged, no hook).
    pub fn set64(&self, offset: usize, value: u64) {
        lock(&self.inner).file.set64(offset, value);
    }

    /// The stored 32-bit value (ignores scripted reads, not counted as a read).
    pub fn get32(&self, offset: usize) -> u32 {
        lock(&self.inner).file.get32(offset)
    }

    /// The stored 64-bit value (ignores scripted reads, not counted as a read).
    pub fn get64(&self, offset: usize) -> u64 {
        lock(&self.inner).file.get64(offset)
    }

    /// Queues values that the next 32-bit reads of `offset` return, one per read, before
    /// falling back to the stored value.
    pub fn script_reads32(&self, offset: usize, values: impl IntoIterator<Item = u32>) {
        lock(&self.inner)
            .script32
            .entry(offset)
            .or_default()
            .extend(values);
    }

    /// Queues values that the next 64-bit reads of `offset` return, one per read.
    pub fn script_reads64(&self, offset: usize, values: impl IntoIterator<Item = u64>) {
        lock(&self.inner)
            .script64
            .entry(offset)
            .or_default()
            .extend(values);
    }

    /// Every accepted write so far, oldest first.
    pub fn writes(&self) -> Vec<RegWrite> {
        lock(&self.inner).log.clone()
    }

    /// The values written to `offset` so far, oldest first.
    pub fn writes_to(&self, offset: usize) -> Vec<u64> {
        lock(&self.inner)
            .log
            .iter()
            .filter(|w| w.offset == offset)
            .map(|w| w.value)
            .collect()
    }

    /// Returns the write log and empties it.
    pub fn take_writes(&self) -> Vec<RegWrite> {
        core::mem::take(&mut lock(&self.inner).log)
    }

    /// Reads (32- or 64-bit) of `offset` so far.
    pub fn read_count(&self, offset: usize) -> usize {
        lock(&self.inner).reads.get(&offset).copied().unwrap_or(0)
    }

    /// Writes dropped because their offset was outside the frame or misaligned.
    pub fn ignored_writes(&self) -> usize {
        lock(&self.inner).ignored_writes
    }

    fn in_frame(offset: usize, width: usize) -> bool {
        offset.is_multiple_of(width)
            && offset
                .checked_add(width)
                .is_some_and(|end| end <= REGISTER_FRAME_SIZE)
    }

    fn write(&self, offset: usize, value: u64, width: RegWidth) {
        let bytes = if width == RegWidth::W32 { 4 } else { 8 };
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        if !Self::in_frame(offset, bytes) {
            inner.ignored_writes += 1;
            return;
        }
        match width {
            RegWidth::W32 => inner.file.set32(offset, value as u32),
            RegWidth::W64 => inner.file.set64(offset, value),
        }
        let w = RegWrite {
            offset,
            value,
            width,
        };
        inner.log.push(w);
        if let Some(hook) = inner.on_write.as_mut() {
            hook(&mut inner.file, w);
        }
    }
}

impl RegisterAccess for FakeRegs {
    fn read32(&self, offset: usize) -> u32 {
        if !Self::in_frame(offset, 4) {
            return u32::MAX;
        }
        let mut inner = lock(&self.inner);
        *inner.reads.entry(offset).or_default() += 1;
        if let Some(v) = inner
            .script32
            .get_mut(&offset)
            .and_then(VecDeque::pop_front)
        {
            return v;
        }
        inner.file.get32(offset)
    }

    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, u64::from(value), RegWidth::W32);
    }

    fn read64(&self, offset: usize) -> u64 {
        if !Self::in_frame(offset, 8) {
            return u64::MAX;
        }
        let mut inner = lock(&self.inner);
        *inner.reads.entry(offset).or_default() += 1;
        if let Some(v) = inner
            .script64
            .get_mut(&offset)
            .and_then(VecDeque::pop_front)
        {
            return v;
        }
        inner.file.get64(offset)
    }

    fn write64(&self, offset: usize, value: u64) {
        self.write(offset, value, RegWidth::W64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_regs_store_log_script_and_refuse_out_of_frame() {
        let regs = FakeRegs::with_ack_mirroring();
        regs.write32(offset::CR0, 0x5);
        assert_eq!(regs.get32(offset::CR0ACK), 0x5);
        regs.write64(offset::STRTAB_BASE, 0x1_2345_6000);
        assert_eq!(regs.read32(offset::STRTAB_BASE + 4), 0x1);
        assert_eq!(regs.read64(offset::STRTAB_BASE), 0x1_2345_6000);
        regs.script_reads32(offset::GERROR, [1, 2]);
        regs.set32(offset::GERROR, 7);
        let got: Vec<u32> = (0..3).map(|_| regs.read32(offset::GERROR)).collect();
        assert_eq!(got, [1, 2, 7]);
        assert_eq!(regs.read_count(offset::GERROR), 3);
        assert_eq!(regs.read32(REGISTER_FRAME_SIZE), u32::MAX);
        assert_eq!(regs.read64(offset::CR0 + 4), u64::MAX);
        regs.write32(offset::CR0 + 2, 1);
        assert_eq!(regs.ignored_writes(), 1);
        assert_eq!(regs.writes_to(offset::CR0), [5]);
        assert_eq!(regs.take_writes().len(), 2);
        assert!(regs.writes().is_empty());
    }
}

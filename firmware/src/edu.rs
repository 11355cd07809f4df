//! QEMU's `edu` teaching device (PCI 1234:11e8, `docs/specs/edu.rst`): a DMA engine that copies
//! between RAM and a 4 KiB buffer inside the device.
//!
//! QEMU masks its DMA addresses (`dma_mask`, 28 bits by default) before they reach the IOMMU;
//! `qemu-run` widens the mask to 48 bits, so that an untranslated (bypassed) transfer to a bus
//! address in RAM lands there and can be seen: the `kdump` crash stage reads where each
//! transfer in flight went from memory. `confine`'s IOVAs are all below 0x4000_0000, so none of
//! its transfers reaches RAM except through the SMMU's translation.

use crate::time::poll_for;

/// PCI vendor ID.
pub const VENDOR: u16 = 0x1234;
/// PCI device ID.
pub const DEVICE: u16 = 0x11e8;
/// Offset of the device's buffer in its DMA address space.
pub const BUFFER: u64 = 0x4_0000;
/// Size of the device's buffer.
pub const BUFFER_SIZE: u64 = 4096;
/// The largest transfer this driver issues: QEMU 7.2's `edu` range check refuses a transfer
/// that ends exactly at the end of its buffer (and stops QEMU with a hardware error), so
/// transfers stay within the first half.
pub const MAX_TRANSFER: u64 = 2048;

const IDENTIFICATION: usize = 0x00;
const DMA_SRC: usize = 0x80;
const DMA_DST: usize = 0x88;
const DMA_COUNT: usize = 0x90;
const DMA_CMD: usize = 0x98;
const CMD_RUN: u64 = 1 << 0;
/// Direction bit: 0 = RAM to device buffer, 1 = device buffer to RAM.
const CMD_TO_RAM: u64 = 1 << 1;

/// Why a DMA request was not issued or did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EduError {
    /// The range is outside the device's buffer (the device would stop QEMU).
    OutOfBuffer,
    /// The engine did not finish in time.
    Timeout,
    /// A transfer is still running (the device runs one at a time).
    Busy,
}

/// One `edu` device with its BAR0 mapped.
#[derive(Debug)]
pub struct Edu {
    bar: usize,
}

impl Edu {
    /// The device whose BAR0 is at `bar`.
    ///
    /// # Safety
    /// `bar` is the address of an enabled `edu` device's BAR0, mapped as Device memory.
    pub unsafe fn new(bar: u64) -> Self {
        Self { bar: bar as usize }
    }

    fn read(&self, offset: usize) -> u64 {
        // SAFETY: BAR0 is 1 MiB of Device memory (constructor contract); the offsets used here
        // are the device's 8-aligned DMA registers.
        unsafe { ((self.bar + offset) as *const u64).read_volatile() }
    }

    fn write(&self, offset: usize, value: u64) {
        // SAFETY: as in `read`.
        unsafe { ((self.bar + offset) as *mut u64).write_volatile(value) }
    }

    /// The identification register (`0x010000ed` for version 1.0).
    pub fn identification(&self) -> u32 {
        // SAFETY: as in `read`; the identification register is a 32-bit register at 0.
        unsafe { ((self.bar + IDENTIFICATION) as *const u32).read_volatile() }
    }

    fn run(&self, src: u64, dst: u64, len: u64, cmd: u64) -> Result<(), EduError> {
        self.write(DMA_SRC, src);
        self.write(DMA_DST, dst);
        self.write(DMA_COUNT, len);
        self.write(DMA_CMD, cmd | CMD_RUN);
        // The device finishes a transfer on a 100 ms timer.
        poll_for(2000, || (self.read(DMA_CMD) & CMD_RUN == 0).then_some(()))
            .ok_or(EduError::Timeout)
    }

    /// Whether a transfer is running (`DMA_CMD` bit 0 still set: the device clears it when
    /// its timer has moved the bytes).
    pub fn busy(&self) -> bool {
        self.read(DMA_CMD) & CMD_RUN != 0
    }

    /// Waits up to `millis` ms for the running transfer, if any, to finish.
    pub fn wait(&self, millis: u64) -> Result<(), EduError> {
        poll_for(millis, || (!self.busy()).then_some(())).ok_or(EduError::Timeout)
    }

    /// Starts a DMA of `len` bytes from the device buffer at `offset` to bus address `iova`
    /// and returns at once: the device moves the bytes ~100 ms later, from a timer. The device
    /// ignores a second start while one runs, so a running transfer is refused.
    pub fn start_write_to(&self, offset: u64, iova: u64, len: u64) -> Result<(), EduError> {
        let src = Self::check(offset, len)?;
        if self.busy() {
            return Err(EduError::Busy);
        }
        self.write(DMA_SRC, src);
        self.write(DMA_DST, iova);
        self.write(DMA_COUNT, len);
        self.write(DMA_CMD, CMD_TO_RAM | CMD_RUN);
        Ok(())
    }

    fn check(offset: u64, len: u64) -> Result<u64, EduError> {
        match offset.checked_add(len) {
            Some(end) if end <= MAX_TRANSFER && len > 0 => Ok(BUFFER + offset),
            _ => Err(EduError::OutOfBuffer),
        }
    }

    /// DMA `len` bytes from bus address `iova` into the device buffer at `offset`. A
    /// transaction the SMMU terminates completes too, with no data (the device cannot tell).
    pub fn read_from(&self, iova: u64, offset: u64, len: u64) -> Result<(), EduError> {
        let dst = Self::check(offset, len)?;
        self.run(iova, dst, len, 0)
    }

    /// DMA `len` bytes from the device buffer at `offset` to bus address `iova`.
    pub fn write_to(&self, offset: u64, iova: u64, len: u64) -> Result<(), EduError> {
        let src = Self::check(offset, len)?;
        self.run(src, iova, len, CMD_TO_RAM)
    }
}

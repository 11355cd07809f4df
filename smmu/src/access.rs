//! Register access: one small trait, implemented by volatile MMIO here and by the model in
//! the tests.

use core::ptr::NonNull;

use crate::arch::regs::REGISTER_FRAME_SIZE;

/// Reads and writes of SMMU registers at byte offsets from the SMMU base.
///
/// Offsets are those of [`crate::arch::regs::offset`]. An implementation must make a 64-bit
/// access single-copy atomic (IHI 0070 G.b §6.2: 64-bit registers may be accessed with
/// 64-bit accesses). An offset outside the register frame or not aligned to the access size
/// reads as all-ones (as a bus error typically does) and ignores writes: it never touches
/// memory outside the frame.
///
/// A write must be ordered after the caller's earlier writes to normal memory (the
/// driver writes a queue entry, then `CMDQ_PROD`); [`Mmio`] issues the barrier itself.
pub trait RegisterAccess {
    /// Reads a 32-bit register.
    fn read32(&self, offset: usize) -> u32;
    /// Writes a 32-bit register.
    fn write32(&self, offset: usize, value: u32);
    /// Reads a 64-bit register.
    fn read64(&self, offset: usize) -> u64;
    /// Writes a 64-bit register.
    fn write64(&self, offset: usize, value: u64);
}

impl<R: RegisterAccess + ?Sized> RegisterAccess for &R {
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        (**self).read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        (**self).write64(offset, value);
    }
}

/// Orders earlier writes to normal memory (queue entries, STEs, CDs, page tables) before a
/// following register write, as Linux's `writel` does with `dma_wmb()`: the SMMU must not
/// see a new `CMDQ_PROD` before the commands it publishes.
#[inline(always)]
fn io_write_barrier() {
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: `dmb oshst` only orders memory accesses; it touches no memory, registers or
    // flags the compiler relies on.
    unsafe {
        core::arch::asm!("dmb oshst", options(nostack, preserves_flags));
    }
    #[cfg(any(not(target_arch = "aarch64"), miri))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
}

/// Volatile MMIO access to a mapped SMMU register frame.
///
/// Writes are preceded by a barrier that orders earlier normal-memory writes before them
/// (see [`RegisterAccess`]); reads are plain volatile loads.
#[derive(Debug)]
pub struct Mmio {
    base: NonNull<u8>,
    size: usize,
}

// SAFETY: `Mmio` only performs volatile accesses to device registers, which the SMMU
// serialises; the constructor's contract makes the mapping valid for the value's lifetime
// from any thread.
unsafe impl Send for Mmio {}
// SAFETY: as for `Send`: concurrent volatile register accesses are what MMIO is for; the
// driver's own locks order the accesses that must be ordered.
unsafe impl Sync for Mmio {}

impl Mmio {
    /// Wraps a mapped register frame of `size` bytes (normally
    /// [`REGISTER_FRAME_SIZE`], 128 KiB: pages 0 and 1).
    ///
    /// # Safety
    /// For as long as the returned value (or anything holding it) exists, `base` must point
    /// to `size` bytes of mapped SMMU registers (Device-nGnRE or stronger), valid for
    /// volatile 32- and 64-bit reads and writes, 8-byte aligned, and not reused for any
    /// other object. `size` must not exceed `isize::MAX`.
    pub unsafe fn new(base: NonNull<u8>, size: usize) -> Self {
        Mmio { base, size }
    }

    /// The size of a standard register frame (pages 0 and 1).
    pub const STANDARD_SIZE: usize = REGISTER_FRAME_SIZE;

    fn in_frame(&self, offset: usize, width: usize) -> bool {
        offset.is_multiple_of(width)
            && offset
                .checked_add(width)
                .is_some_and(|end| end <= self.size)
    }
}

// The frame base is 8-aligned (constructor contract) and every offset is checked to be aligned
// to the access width, so the casts below produce aligned pointers.
#[allow(clippy::cast_ptr_alignment)]
impl RegisterAccess for Mmio {
    fn read32(&self, offset: usize) -> u32 {
        if !self.in_frame(offset, 4) {
            return u32::MAX;
        }
        // SAFETY: `offset + 4 <= size` and `offset` is 4-aligned (checked above), `base` is
        // 8-aligned and valid for `size` bytes of volatile access (constructor contract).
        unsafe { self.base.as_ptr().add(offset).cast::<u32>().read_volatile() }
    }

    fn write32(&self, offset: usize, value: u32) {
        if self.in_frame(offset, 4) {
            io_write_barrier();
            // SAFETY: as in `read32`.
            unsafe {
                self.base
                    .as_ptr()
                    .add(offset)
                    .cast::<u32>()
                    .write_volatile(value);
            }
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        if !self.in_frame(offset, 8) {
            return u64::MAX;
        }
        // SAFETY: `offset + 8 <= size`, `offset` 8-aligned, `base` 8-aligned and valid
        // (constructor contract); a 64-bit volatile access is single-copy atomic on AArch64.
        unsafe { self.base.as_ptr().add(offset).cast::<u64>().read_volatile() }
    }

    fn write64(&self, offset: usize, value: u64) {
        if self.in_frame(offset, 8) {
            io_write_barrier();
            // SAFETY: as in `read64`.
            unsafe {
                self.base
                    .as_ptr()
                    .add(offset)
                    .cast::<u64>()
                    .write_volatile(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::regs::offset;

    #[repr(align(8))]
    struct Frame([u8; 0x200]);

    #[test]
    fn mmio_reads_back_writes_and_refuses_out_of_frame_offsets() {
        let mut frame = Frame([0; 0x200]);
        let base = NonNull::from(&mut frame.0).cast::<u8>();
        // SAFETY: `frame` is 8-aligned, 0x200 bytes, and outlives `mmio`.
        let mmio = unsafe { Mmio::new(base, 0x200) };
        mmio.write32(offset::CR0, 0x0d);
        mmio.write64(offset::STRTAB_BASE, 0x1234_5000);
        assert_eq!(mmio.read32(offset::CR0), 0x0d);
        assert_eq!(mmio.read64(offset::STRTAB_BASE), 0x1234_5000);
        // Little-endian layout of a 64-bit register: the low half is at the lower offset.
        assert_eq!(mmio.read32(offset::STRTAB_BASE), 0x1234_5000);
        // Outside the frame or misaligned: all-ones, and writes go nowhere.
        assert_eq!(mmio.read32(0x200), u32::MAX);
        assert_eq!(mmio.read64(0x1fc), u64::MAX);
        assert_eq!(mmio.read32(offset::CR0 + 1), u32::MAX);
        mmio.write32(usize::MAX - 1, 7);
        mmio.write64(0x1f8 + 4, 7);
        assert_eq!(frame.0.iter().filter(|b| **b != 0).count(), 1 + 3);
    }
}

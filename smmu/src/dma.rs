//! DMA memory the driver shares with the SMMU: the one place that dereferences it.
//!
//! Every queue, stream table and CD table is a [`DmaBuf`]: a region the HAL allocated (or, for
//! adoption, mapped) plus whether the SMMU snoops the CPU caches. Accesses are bounds-checked
//! 64-bit volatile loads and stores at word indices, so a corrupt index from a hostile table or
//! register is a typed error, never an out-of-bounds access (SPEC D10, B1).

use core::ptr::NonNull;

use crate::hal::{DmaRegion, Hal, HalError, MapAttr, PhysAddr};

/// A word index outside the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    /// The word index asked for.
    pub index: usize,
    /// The buffer's length in 64-bit words.
    pub words: usize,
}

impl core::fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "word {} outside a {}-word DMA buffer",
            self.index, self.words
        )
    }
}

impl core::error::Error for OutOfBounds {}

/// Where a buffer's memory came from, and so how it is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// [`Hal::dma_alloc`]: freed with [`Hal::dma_free`].
    Allocated,
    /// [`Hal::map_phys`] of memory the driver does not own (an adopted table): unmapped with
    /// [`Hal::unmap_phys`], never freed.
    Mapped(MapAttr),
}

/// A DMA buffer: physically contiguous memory both the CPU and the SMMU access.
///
/// The buffer does not free itself (there is no HAL to call from `Drop`); its owner calls
/// [`DmaBuf::release`] once the SMMU can no longer reach it.
#[derive(Debug)]
pub struct DmaBuf {
    region: DmaRegion,
    origin: Origin,
    coherent: bool,
}

// SAFETY: a `DmaBuf` is an owning handle to memory nobody else on the CPU side references (the
// HAL contract); moving or sharing the handle between threads is like doing so with a `Box`.
// Mutation through `&self` uses volatile single-word accesses only, as with MMIO.
unsafe impl Send for DmaBuf {}
// SAFETY: see `Send`; concurrent `&self` users only issue aligned 64-bit volatile accesses.
unsafe impl Sync for DmaBuf {}

impl DmaBuf {
    /// Allocates `size` zeroed bytes aligned to `align` (both rounded up to 64).
    pub fn alloc<H: Hal + ?Sized>(
        hal: &H,
        size: usize,
        align: usize,
        coherent: bool,
    ) -> Result<Self, HalError> {
        let size = size
            .max(64)
            .checked_next_multiple_of(64)
            .ok_or(HalError::NoMemory)?;
        let align = align.max(64);
        if !align.is_power_of_two() {
            return Err(HalError::Unsupported);
        }
        let region = hal.dma_alloc(size, align)?;
        // A HAL that hands out too little or misaligned memory would make every later access
        // unsound; refuse it here rather than trust it.
        if region.size < size
            || region.pa.0 % align as u64 != 0
            || !(region.va.as_ptr() as usize).is_multiple_of(8)
        {
            // SAFETY: the region came from `dma_alloc` just now and nothing has used it.
            unsafe { hal.dma_free(region) };
            return Err(HalError::Unsupported);
        }
        Ok(Self {
            region,
            origin: Origin::Allocated,
            coherent,
        })
    }

    /// Maps `size` bytes of foreign memory at `pa` (an adopted structure) with `attr`.
    /// `pa` must be 8-byte aligned.
    pub fn map<H: Hal + ?Sized>(
        hal: &H,
        pa: PhysAddr,
        size: usize,
        attr: MapAttr,
        coherent: bool,
    ) -> Result<Self, HalError> {
        if !pa.0.is_multiple_of(8) || !size.is_multiple_of(8) || size == 0 {
            return Err(HalError::MapRefused);
        }
        let va = hal.map_phys(pa, size, attr)?;
        if !(va.as_ptr() as usize).is_multiple_of(8) {
            // SAFETY: `va` and `size` are those of the `map_phys` call just made.
            unsafe { hal.unmap_phys(va, size) };
            return Err(HalError::MapRefused);
        }
        Ok(Self {
            region: DmaRegion { pa, va, size },
            origin: Origin::Mapped(attr),
            coherent,
        })
    }

    /// Gives the memory back to the HAL.
    ///
    /// # Safety
    /// The SMMU can no longer access the buffer: no register or live structure points at it,
    /// or the invalidation that dropped the last such pointer has completed.
    pub unsafe fn release<H: Hal + ?Sized>(self, hal: &H) {
        match self.origin {
            // SAFETY: the region came from `dma_alloc` on this HAL (constructor), is released
            // once (`self` is consumed), and the caller guarantees the SMMU is done with it.
            Origin::Allocated => unsafe { hal.dma_free(self.region) },
            // SAFETY: `va`/`size` are those of the `map_phys` call in `map`; consumed once.
            Origin::Mapped(_) => unsafe { hal.unmap_phys(self.region.va, self.region.size) },
        }
    }

    /// Physical (bus) address of the first byte.
    pub fn pa(&self) -> PhysAddr {
        self.region.pa
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.region.size
    }

    /// Whether the buffer is empty (never, for a constructed buffer).
    pub fn is_empty(&self) -> bool {
        self.region.size == 0
    }

    /// Length in 64-bit words.
    pub fn words(&self) -> usize {
        self.region.size / 8
    }

    /// Where the memory came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether the SMMU snoops CPU caches for this buffer.
    pub fn coherent(&self) -> bool {
        self.coherent
    }

    fn word_ptr(&self, index: usize) -> Result<NonNull<u64>, OutOfBounds> {
        if index >= self.words() {
            return Err(OutOfBounds {
                index,
                words: self.words(),
            });
        }
        // SAFETY: `index < words`, so the offset stays inside the region the HAL handed out
        // (valid for `size` bytes); the base is 8-byte aligned (checked at construction).
        Ok(unsafe { self.region.va.cast::<u64>().add(index) })
    }

    /// Physical address of word `index` (no bounds check: arithmetic only).
    pub fn pa_of(&self, index: usize) -> PhysAddr {
        PhysAddr(
            self.region
                .pa
                .0
                .wrapping_add((index as u64).wrapping_mul(8)),
        )
    }

    /// Reads word `index` as the SMMU last left it (invalidating the line first when the
    /// SMMU is not coherent, so a value the SMMU wrote is not hidden by a stale line).
    pub fn read<H: Hal + ?Sized>(&self, hal: &H, index: usize) -> Result<u64, OutOfBounds> {
        let p = self.word_ptr(index)?;
        if !self.coherent {
            hal.invalidate_dcache(p.cast(), 8);
        }
        // SAFETY: `p` is aligned and inside the live region (`word_ptr`).
        Ok(unsafe { p.as_ptr().read_volatile() })
    }

    /// Reads the low 32 bits of word `index` with a 32-bit atomic load (acquire): how a
    /// CMD_SYNC's MSI write-back, which stores 32 bits while this CPU polls, is observed. The
    /// SMMU writes concurrently with the poll, so the load is atomic, not merely volatile.
    pub fn read_low32<H: Hal + ?Sized>(&self, hal: &H, index: usize) -> Result<u32, OutOfBounds> {
        let p = self.word_ptr(index)?;
        if !self.coherent {
            hal.invalidate_dcache(p.cast(), 8);
        }
        // SAFETY: `p` is aligned and inside the live region; the low half of a little-endian
        // word is its first four bytes, so the 32-bit pointer is aligned and in bounds too.
        // Every access racing with this one is a 32-bit atomic store (the SMMU's MSI write, or
        // a test double's); the CPU's own earlier stores to the word happen before it.
        let word = unsafe { core::sync::atomic::AtomicU32::from_ptr(p.cast::<u32>().as_ptr()) };
        Ok(word.load(core::sync::atomic::Ordering::Acquire))
    }

    /// Writes word `index` of memory the SMMU is not reading yet (a queue slot beyond PROD, a
    /// table before it is published). Cleaned to the SMMU when it is not coherent.
    pub fn write<H: Hal + ?Sized>(
        &self,
        hal: &H,
        index: usize,
        value: u64,
    ) -> Result<(), OutOfBounds> {
        let p = self.word_ptr(index)?;
        // SAFETY: `p` is aligned and inside the live region (`word_ptr`).
        unsafe { p.as_ptr().write_volatile(value) };
        if !self.coherent {
            hal.clean_dcache(p.cast(), 8);
        }
        Ok(())
    }

    /// Stores word `index` of a structure the SMMU may be reading now (STE, CD, L1
    /// descriptor): one single-copy-atomic store through [`Hal::store_entry_qword`], then a
    /// clean when the SMMU is not coherent (SPEC K17).
    pub fn store_live<H: Hal + ?Sized>(
        &self,
        hal: &H,
        index: usize,
        value: u64,
    ) -> Result<(), OutOfBounds> {
        let p = self.word_ptr(index)?;
        // SAFETY: `p` is aligned and inside a live region this HAL handed out.
        unsafe { hal.store_entry_qword(p, value) };
        if !self.coherent {
            hal.clean_dcache(p.cast(), 8);
        }
        Ok(())
    }
}

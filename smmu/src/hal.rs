//! The platform HAL: what the kernel or firmware provides to the driver.

use core::fmt;
use core::ptr::NonNull;

pub use smmu_pagetable::{Iova, PhysAddr};

/// A physically contiguous DMA region: where the SMMU sees it and where the CPU does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRegion {
    /// The physical (bus) address the SMMU uses.
    pub pa: PhysAddr,
    /// The CPU's mapping of the same memory.
    pub va: NonNull<u8>,
    /// Size in bytes.
    pub size: usize,
}

/// A physical address range `[start, start + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// Length in bytes.
    pub size: u64,
}

impl PhysRange {
    /// Whether `[pa, pa + size)` lies entirely inside this range (overflow-safe).
    pub fn contains(&self, pa: PhysAddr, size: u64) -> bool {
        let (Some(end), Some(self_end)) =
            (pa.0.checked_add(size), self.start.0.checked_add(self.size))
        else {
            return false;
        };
        pa.0 >= self.start.0 && end <= self_end
    }
}

/// How foreign physical memory (the crashed kernel's tables) is to be mapped (SPEC K17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapAttr {
    /// Normal cacheable memory: the SMMU is coherent, or the caller cleans/invalidates.
    Cacheable,
    /// Normal non-cacheable memory: reads see what a non-coherent SMMU wrote.
    NonCacheable,
    /// Cacheable, through the platform's encrypted (private) mapping.
    EncryptedCacheable,
    /// Non-cacheable, through the platform's encrypted (private) mapping.
    EncryptedNonCacheable,
}

/// Why the platform could not do what the driver asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HalError {
    /// No memory for the allocation.
    NoMemory,
    /// The physical range cannot be mapped (not RAM, or refused by the platform).
    MapRefused,
    /// The platform does not implement this operation.
    Unsupported,
}

impl fmt::Display for HalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HalError::NoMemory => "out of DMA memory",
            HalError::MapRefused => "the platform refused to map the physical range",
            HalError::Unsupported => "operation not supported by the platform",
        })
    }
}

impl core::error::Error for HalError {}

/// Services the platform provides to the driver.
///
/// # Safety
/// The driver dereferences what this trait hands out. An implementation must guarantee:
/// - [`Hal::dma_alloc`] returns a region whose `va` is valid for reads and writes of `size`
///   bytes, zeroed, aligned (both `pa` and `va`) to at least `align`, visible to the SMMU at
///   `pa`, and not handed out again before [`Hal::dma_free`] is called for it;
/// - [`Hal::map_phys`] returns a pointer valid for reads and writes of `size` bytes of the
///   memory at `pa` until [`Hal::unmap_phys`] is called for it;
/// - the cache-maintenance calls make CPU writes visible to a non-coherent SMMU (clean) and
///   SMMU writes visible to the CPU (invalidate) for the given range.
pub unsafe trait Hal {
    /// Allocates `size` bytes of zeroed memory for SMMU structures, aligned to `align` (a
    /// power of two, at least 64).
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError>;

    /// Frees a region from [`Hal::dma_alloc`].
    ///
    /// # Safety
    /// `region` came from `dma_alloc` on this HAL, is freed once, and neither the CPU nor the
    /// SMMU uses it afterwards (for the SMMU: the invalidation that dropped its last
    /// reference has completed).
    unsafe fn dma_free(&self, region: DmaRegion);

    /// Maps `size` bytes of foreign physical memory at `pa` with `attr` (SPEC K17).
    fn map_phys(&self, pa: PhysAddr, size: usize, attr: MapAttr) -> Result<NonNull<u8>, HalError>;

    /// Unmaps memory mapped by [`Hal::map_phys`].
    ///
    /// # Safety
    /// `va` and `size` are those of one `map_phys` call and the mapping is not used again.
    unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize);

    /// Whether `[pa, pa + size)` is RAM the platform knows (adoption's optional sanity check).
    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool;

    /// Cleans CPU caches for a range the CPU wrote and a non-coherent SMMU will read. The
    /// default does nothing, which is right for a coherent SMMU.
    fn clean_dcache(&self, va: NonNull<u8>, size: usize) {
        let _ = (va, size);
    }

    /// Invalidates CPU caches for a range a non-coherent SMMU wrote and the CPU will read.
    fn invalidate_dcache(&self, va: NonNull<u8>, size: usize) {
        let _ = (va, size);
    }

    /// Whether the platform can do the cache maintenance a non-coherent SMMU needs.
    fn has_cache_maintenance(&self) -> bool {
        false
    }

    /// The shared (bounce-buffer) windows a protected device may reach (SPEC D9). Empty by
    /// default: a protected device then can be given no mapping at all.
    fn shared_windows(&self) -> &[PhysRange] {
        &[]
    }

    /// Stores one 64-bit word of a structure the SMMU may be reading right now (an STE, a CD,
    /// an L1 descriptor). The store must be single-copy atomic (IHI 0070 G.b §3.21.3: the SMMU
    /// reads these structures 64 bits at a time, in no defined order), which the default
    /// volatile write is on AArch64. A platform overrides this to trace or check every step of
    /// a live update (the model-based tests route it to the model's torn-fetch check); the
    /// driver cleans the line itself afterwards when the SMMU is not coherent.
    ///
    /// # Safety
    /// `va` is 8-byte aligned and lies inside a region this HAL handed out (`dma_alloc` or
    /// `map_phys`) that is still live.
    unsafe fn store_entry_qword(&self, va: NonNull<u64>, value: u64) {
        // SAFETY: the caller guarantees `va` is aligned and valid for writes.
        unsafe { va.as_ptr().write_volatile(value) }
    }

    /// Called between polls of a register or memory location; a kernel may `cpu_relax()`,
    /// `wfe`, or sleep. Every poll in the driver is bounded by a count of these calls.
    ///
    /// On the SMMUv3 model (`smmu-model`) time passes only when something steps it: a HAL of
    /// your own whose `relax` spins leaves the model standing still between polls, and the
    /// driver reports `Timeout(CmdSync)` or `Timeout(Cr0Ack)`. Wrap it in
    /// `smmu_model_platform::Stepping`, whose `relax` steps the model and then calls yours.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

// SAFETY: every method forwards to `H`, whose implementation upholds the contract.
unsafe impl<H: Hal + ?Sized> Hal for &H {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        (**self).dma_alloc(size, align)
    }

    unsafe fn dma_free(&self, region: DmaRegion) {
        // SAFETY: forwarded from the caller.
        unsafe { (**self).dma_free(region) }
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        (**self).map_phys(pa, size, attr)
    }

    unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { (**self).unmap_phys(va, size) }
    }

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        (**self).is_ram(pa, size)
    }

    fn clean_dcache(&self, va: NonNull<u8>, size: usize) {
        (**self).clean_dcache(va, size);
    }

    fn invalidate_dcache(&self, va: NonNull<u8>, size: usize) {
        (**self).invalidate_dcache(va, size);
    }

    fn has_cache_maintenance(&self) -> bool {
        (**self).has_cache_maintenance()
    }

    fn shared_windows(&self) -> &[PhysRange] {
        (**self).shared_windows()
    }

    unsafe fn store_entry_qword(&self, va: NonNull<u64>, value: u64) {
        // SAFETY: forwarded from the caller.
        unsafe { (**self).store_entry_qword(va, value) }
    }

    fn relax(&self) {
        (**self).relax();
    }
}

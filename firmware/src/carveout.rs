//! The DMA carve-out: one physically contiguous, identity-mapped range of RAM, handed out in
//! 4 KiB pages. It is both the driver's [`Hal`] and the I/O page tables' [`TableAllocator`].
//!
//! A bitmap of pages under a spin lock: allocation is first-fit at the requested alignment,
//! freed pages are reused, and every allocation is zeroed before it is handed out. The CPU
//! maps the carve-out Normal write-back cacheable (aarch64-rt's initial page table); QEMU's
//! SMMU is coherent (`IDR0.COHACC` = 1), so no cache maintenance is needed. A board with a
//! non-coherent SMMU implements `clean_dcache`/`invalidate_dcache` with `dc cvac`/`dc ivac`
//! and says so in `has_cache_maintenance`.

use core::ptr::NonNull;

use smmu::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, PhysRange};
use smmu_pagetable::{TableAllocator, TableMem};
use spin::mutex::SpinMutex;

/// Page size of the allocator.
pub const PAGE: usize = 4096;
const MAX_PAGES: usize = 8192;
const WORDS: usize = MAX_PAGES / 64;

/// The carve-out allocator (see the module documentation).
pub struct Carveout {
    base: u64,
    pages: usize,
    used: SpinMutex<[u64; WORDS]>,
    /// One past the highest page ever handed out (allocation is first fit from the bottom,
    /// so pages from here up were never allocated: the footprint check expects them intact).
    high_water: core::sync::atomic::AtomicUsize,
    shared: [PhysRange; 1],
}

impl Carveout {
    /// A carve-out of `size` bytes at physical (= virtual) address `base`, of which the
    /// `shared` range (inside it, page aligned) is a protected master's bounce-buffer window:
    /// it is never handed out by the allocator.
    ///
    /// # Safety
    /// `[base, base + size)` is RAM, identity-mapped for reads and writes, used by nothing
    /// else for the value's lifetime, and page aligned.
    pub unsafe fn new(base: u64, size: u64, shared: PhysRange) -> Self {
        let pages = ((size / PAGE as u64) as usize).min(MAX_PAGES);
        let mut used = [0u64; WORDS];
        for p in 0..pages {
            let pa = base + (p * PAGE) as u64;
            if shared.contains(PhysAddr(pa), PAGE as u64) {
                used[p / 64] |= 1 << (p % 64);
            }
        }
        Self {
            base,
            pages,
            used: SpinMutex::new(used),
            high_water: core::sync::atomic::AtomicUsize::new(0),
            shared: [shared],
        }
    }

    /// Bytes of the carve-out in use (allocated or reserved).
    pub fn used_bytes(&self) -> usize {
        let used = self.used.lock();
        used.iter().map(|w| w.count_ones() as usize).sum::<usize>() * PAGE
    }

    /// The end of the memory ever allocated: `[high_water, end)` was never handed out.
    pub fn high_water(&self) -> u64 {
        self.base + (self.high_water.load(core::sync::atomic::Ordering::Relaxed) * PAGE) as u64
    }

    /// The CPU pointer of a carve-out physical address, if it lies inside.
    pub fn va(&self, pa: u64) -> Option<NonNull<u8>> {
        let end = self.base + (self.pages * PAGE) as u64;
        if pa < self.base || pa >= end {
            return None;
        }
        NonNull::new(pa as usize as *mut u8)
    }

    fn alloc_pages(&self, size: usize, align: usize) -> Option<u64> {
        let n = size.div_ceil(PAGE).max(1);
        let step = (align / PAGE).max(1);
        let mut used = self.used.lock();
        let is_used = |used: &[u64; WORDS], p: usize| used[p / 64] & (1 << (p % 64)) != 0;
        // Alignment is of the physical address; the base is page aligned, so align the
        // page index relative to address 0.
        let first_aligned = |p: usize| {
            let pa = self.base + (p * PAGE) as u64;
            let a = pa.next_multiple_of((step * PAGE) as u64);
            ((a - self.base) / PAGE as u64) as usize
        };
        let mut p = first_aligned(0);
        while p + n <= self.pages {
            match (p..p + n).find(|&q| is_used(&used, q)) {
                None => {
                    for q in p..p + n {
                        used[q / 64] |= 1 << (q % 64);
                    }
                    self.high_water
                        .fetch_max(p + n, core::sync::atomic::Ordering::Relaxed);
                    return Some(self.base + (p * PAGE) as u64);
                }
                Some(q) => p = first_aligned(q + 1),
            }
        }
        None
    }

    fn free_pages(&self, pa: u64, size: usize) {
        let Some(first) = pa
            .checked_sub(self.base)
            .map(|o| (o / PAGE as u64) as usize)
        else {
            return;
        };
        let mut used = self.used.lock();
        for q in first..(first + size.div_ceil(PAGE).max(1)).min(self.pages) {
            used[q / 64] &= !(1 << (q % 64));
        }
    }

    /// Allocates `size` zeroed bytes aligned to `align` for a DMA buffer.
    pub fn alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        let pa = self
            .alloc_pages(size, align.max(PAGE))
            .ok_or(HalError::NoMemory)?;
        let va = self.va(pa).ok_or(HalError::NoMemory)?;
        // SAFETY: the pages lie inside the carve-out (allocated above, so no one else uses
        // them), which is identity-mapped and writable (constructor contract).
        unsafe { va.as_ptr().write_bytes(0, size.div_ceil(PAGE) * PAGE) };
        Ok(DmaRegion {
            pa: PhysAddr(pa),
            va,
            size,
        })
    }
}

// SAFETY: allocations are page runs of the carve-out, aligned as asked, zeroed, marked used
// until freed (so never handed out twice); `va` = `pa` through the identity map; `map_phys`
// only hands out RAM the board has, identity-mapped; QEMU's SMMU is coherent.
unsafe impl Hal for Carveout {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        self.alloc(size, align)
    }

    unsafe fn dma_free(&self, region: DmaRegion) {
        self.free_pages(region.pa.0, region.size);
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, _attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        // The whole of RAM is identity-mapped cacheable; an encrypted attribute does not exist
        // on this board.
        if !self.is_ram(pa, size as u64) {
            return Err(HalError::MapRefused);
        }
        NonNull::new(pa.0 as usize as *mut u8).ok_or(HalError::MapRefused)
    }

    unsafe fn unmap_phys(&self, _va: NonNull<u8>, _size: usize) {}

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        PhysRange {
            start: PhysAddr(crate::board::RAM_BASE),
            size: crate::board::RAM_SIZE,
        }
        .contains(pa, size)
    }

    fn shared_windows(&self) -> &[PhysRange] {
        &self.shared
    }
}

// SAFETY: tables are carve-out allocations (zeroed, aligned to their size, not reused before
// `free_table`), `phys_to_virt` is the identity map, and the SMMU walks coherently.
unsafe impl TableAllocator for Carveout {
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        let r = self.alloc(size, size).ok()?;
        Some(TableMem {
            pa: r.pa,
            va: r.va.cast(),
        })
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        self.free_pages(table.pa.0, size);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        self.va(pa.0).map_or(NonNull::dangling(), NonNull::cast)
    }
}

//! Page-table memory on the model: a [`TableAllocator`] over [`ModelHal`].

use core::ptr::NonNull;

use smmu::{Hal, PhysAddr};
use smmu_pagetable::{TableAllocator, TableMem};

use crate::platform::ModelHal;

/// Page tables allocated from the model's DMA pool through the HAL (coherent: the arena is
/// the model's RAM). Frees go back through [`Hal::dma_free`], so
/// [`ModelHal::live_allocations`] counts live tables too.
#[derive(Clone, Debug)]
pub struct ModelTables(pub ModelHal);

// SAFETY: `alloc_table` returns `dma_alloc` memory (zeroed, aligned to `size` as asked, valid
// for `size` bytes while the HAL lives, never handed out twice); `phys_to_virt` maps a
// physical address of that memory back to its arena pointer; `free_table` returns it.
unsafe impl TableAllocator for ModelTables {
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        let r = self.0.dma_alloc(size, size).ok()?;
        Some(TableMem {
            pa: r.pa,
            va: r.va.cast(),
        })
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        let region = smmu::DmaRegion {
            pa: table.pa,
            va: table.va.cast(),
            size,
        };
        // SAFETY: forwarded from the caller: the table came from `alloc_table` (so from
        // `dma_alloc` with this size) and is not used again.
        unsafe { self.0.dma_free(region) };
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        // Only called for tables this allocator handed out, which lie in the arena.
        self.0.va(pa).map_or(NonNull::dangling(), NonNull::cast)
    }
}

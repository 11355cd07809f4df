//! The caller-supplied table allocator: the only way this crate gets memory.

use core::ptr::NonNull;

use crate::PhysAddr;

/// One table allocation: where the walker sees it and where the CPU sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableMem {
    /// Physical address (what descriptors and TTB fields hold).
    pub pa: PhysAddr,
    /// CPU virtual address of the same memory.
    pub va: NonNull<u64>,
}

/// Supplies, translates and frees translation-table memory, and keeps non-coherent walkers in
/// sync.
///
/// # Safety
///
/// The page table dereferences the pointers this trait hands out, so an implementation must
/// guarantee all of the following:
///
/// 1. [`alloc_table`](Self::alloc_table)`(size)` (`size` is a power of two, at least 4 KiB and at
///    most 1 MiB) returns either `None` or a [`TableMem`] whose `va` is valid for reads and writes
///    of `size` bytes, aligned to `size`, filled with zeroes, and not accessed by anything else
///    (other than the SMMU's table walker, and only after it has been linked into a live table)
///    until it is passed to [`free_table`](Self::free_table). `pa` is the physical address of
///    the same memory as the SMMU sees it, aligned to `size`.
/// 2. [`phys_to_virt`](Self::phys_to_virt)`(pa)`, for the `pa` of any allocation not yet freed,
///    returns that allocation's `va` (with the provenance to access all of it). It is only ever
///    called with such addresses, and it is on the hot path: keep it cheap (a linear-map offset).
/// 3. [`free_table`](Self::free_table) accepts every allocation exactly once.
/// 4. If [`COHERENT`](Self::COHERENT) is `true`, the SMMU's table walks snoop the CPU caches.
///    Otherwise [`sync`](Self::sync) must make the given range visible to the walker (clean to
///    the point of coherency) before it returns.
pub unsafe trait TableAllocator {
    /// Whether the SMMU walks the tables coherently with the CPU caches. When `false`, every
    /// descriptor write is followed by one [`sync`](Self::sync) over the written range (one call
    /// per table touched, not per descriptor), and the walk attributes become Non-cacheable.
    const COHERENT: bool = true;

    /// Allocates a zeroed table of `size` bytes aligned to `size`; `None` when out of memory.
    fn alloc_table(&self, size: usize) -> Option<TableMem>;

    /// Returns a table to the allocator.
    ///
    /// # Safety
    ///
    /// `table` and `size` are exactly those of an earlier [`alloc_table`](Self::alloc_table) call
    /// on this allocator, the table has not been freed since, and nothing (neither the CPU nor the
    /// SMMU) will access it again.
    unsafe fn free_table(&self, table: TableMem, size: usize);

    /// CPU virtual address of the allocated table at `pa` (see the trait's safety contract).
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64>;

    /// Makes `len` bytes at `va` visible to a non-coherent walker (clean to PoC). Only called when
    /// [`COHERENT`](Self::COHERENT) is `false`; the default does nothing.
    #[inline]
    fn sync(&self, va: NonNull<u64>, len: usize) {
        let _ = (va, len);
    }
}

// SAFETY: every obligation is forwarded unchanged to `T`, which upholds them.
unsafe impl<T: TableAllocator + ?Sized> TableAllocator for &T {
    const COHERENT: bool = T::COHERENT;

    #[inline]
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        (**self).alloc_table(size)
    }

    #[inline]
    unsafe fn free_table(&self, table: TableMem, size: usize) {
        // SAFETY: the caller's guarantees are exactly those `T::free_table` requires.
        unsafe { (**self).free_table(table, size) }
    }

    #[inline]
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        (**self).phys_to_virt(pa)
    }

    #[inline]
    fn sync(&self, va: NonNull<u64>, len: usize) {
        (**self).sync(va, len);
    }
}

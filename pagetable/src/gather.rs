//! The invalidation gather: what an unmap left for the driver to invalidate, and the tables it
//! may free only afterwards (SPEC P3).

use crate::alloc::{TableAllocator, TableMem};
use crate::sync::{slot, Ordering};
use crate::{Granule, Iova, PhysAddr};

/// How many disjoint ranges a [`Gather`] keeps before it starts widening them.
pub const GATHER_RANGES: usize = 8;

/// One IOVA range whose cached translations must be invalidated.
///
/// A driver turns it into `CMD_TLBI_NH_VA` / `CMD_TLBI_S2_IPA` commands (or one range command:
/// `TG` from `granule`, `TTL` from `level`, `NUM`/`SCALE` from `size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalRange {
    /// Start of the range (aligned to `granule`).
    pub iova: Iova,
    /// Length in bytes (a multiple of `granule`).
    pub size: u64,
    /// Translation granule of the table (the TLBI `TG`).
    pub granule: Granule,
    /// `true`: only last-level (leaf) entries changed, so `Leaf=1` invalidation suffices.
    /// `false`: a table descriptor was removed as well, so walk-cache entries must go too
    /// (`Leaf=0`).
    pub leaf: bool,
    /// When `Some(l)`, every removed entry in the range was a leaf at level `l`: usable as the
    /// TLBI `TTL` hint. `None`: mixed or unknown (use `TTL=0`).
    pub level: Option<u8>,
}

impl InvalRange {
    #[inline]
    const fn end(&self) -> u64 {
        self.iova.0 + self.size
    }
}

/// An intrusive, allocation-free list of table pages, threaded through the pages themselves.
///
/// Each node's first two descriptor slots hold the *next* node's physical address and size in
/// bytes (size 0: end of the list); the third is zero. All are even numbers (page-aligned
/// addresses, power-of-two sizes), so to a walker that still holds a stale pointer to the page
/// they read as *invalid* descriptors: overwriting a retired table this way never creates a
/// translation. Nodes are linked by physical address and turned back into pointers through the
/// allocator's `phys_to_virt`, so the list keeps no raw pointer besides its head.
pub(crate) struct FreeList {
    head: Option<(TableMem, usize)>,
    len: usize,
}

impl FreeList {
    pub(crate) const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    /// Threads `mem` onto the list.
    ///
    /// # Safety
    ///
    /// `mem` is a live allocation of `size >= 24` bytes from the table allocator, 8-aligned, no
    /// longer reachable from any table (the CPU side is exclusively ours until it is popped).
    pub(crate) unsafe fn push(&mut self, mem: TableMem, size: usize) {
        let (next_pa, next_size) = match self.head {
            Some((next, next_size)) => (next.pa.0, next_size as u64),
            None => (0, 0),
        };
        // SAFETY: per the caller, the allocation holds at least three descriptor slots and is
        // exclusively ours.
        unsafe {
            slot(mem.va, 0).store(next_pa, Ordering::Relaxed);
            slot(mem.va, 1).store(next_size, Ordering::Relaxed);
            slot(mem.va, 2).store(0, Ordering::Relaxed);
        }
        self.head = Some((mem, size));
        self.len += 1;
    }

    /// Unthreads one page. Its first three words still hold list data. `alloc` must be the
    /// allocator the pages came from (it turns the next node's address into a pointer).
    pub(crate) fn pop(&mut self, alloc: &impl TableAllocator) -> Option<(TableMem, usize)> {
        let (mem, size) = self.head?;
        // SAFETY: every node was written by `push`, whose caller handed us exclusive ownership of
        // at least three slots at `mem.va`; nodes stay owned by the list until popped here.
        let (next_pa, next_size) = unsafe {
            (
                slot(mem.va, 0).load(Ordering::Relaxed),
                slot(mem.va, 1).load(Ordering::Relaxed),
            )
        };
        self.head = (next_size != 0).then(|| {
            let pa = PhysAddr(next_pa);
            // The next node is a live allocation of this allocator (contract 2).
            let va = alloc.phys_to_virt(pa);
            (TableMem { pa, va }, next_size as usize)
        });
        self.len -= 1;
        Some((mem, size))
    }
}

/// Invalidations owed after [`PageTable::unmap`](crate::PageTable::unmap), and the table pages
/// that can be freed once they are done.
///
/// # Contract (SPEC P3)
///
/// ```text
/// let mut gather = Gather::new();
/// pt.unmap(iova, size, &mut gather)?;          // descriptors cleared, nothing freed
/// for r in gather.ranges() { /* driver queues TLBI (range or per page), then CMD_SYNC */ }
/// // ... wait for CMD_SYNC completion ...
/// // SAFETY: the CMD_SYNC above completed, so the SMMU no longer walks the retired tables.
/// unsafe { pt.release(&mut gather) }?;         // only now are unlinked tables freed
/// ```
///
/// * Several unmaps (of the same page table) may share one gather; adjacent and overlapping
///   ranges merge. Beyond [`GATHER_RANGES`] disjoint ranges, a new range widens the nearest
///   existing one to cover both, so the set always covers everything removed
///   (over-invalidation is always safe).
/// * Freed tables are an intrusive list through the freed pages themselves: no capacity limit, no
///   allocation. Their memory is not touched by the driver.
/// * Every freed table lies under a recorded non-leaf range, so invalidating [`ranges`](Self::ranges)
///   is always enough before [`PageTable::release`](crate::PageTable::release). An empty gather
///   needs neither. Dropping a gather without releasing it leaks its pages (it never frees them
///   early); `release` also empties the gather for reuse.
/// * Ranges carry the granule and, when uniform, the leaf level, so a driver can issue one
///   range invalidation per entry (`CMD_TLBI_*` with `TG`, `TTL`, `NUM`, `SCALE`) or fall back
///   to per-granule commands, or to invalidating the whole ASID/VMID when a range is large.
/// * Map never needs a gather: it only turns invalid descriptors valid, which no TLB caches.
#[must_use = "freed tables are only returned by PageTable::release"]
pub struct Gather {
    ranges: [InvalRange; GATHER_RANGES],
    len: usize,
    pub(crate) freed: FreeList,
    /// Identity of the page table that filled the gather; 0 while unused.
    pub(crate) owner: usize,
}

// SAFETY: the freed pages a gather holds are exclusively owned by it (no other reference exists);
// moving that ownership to another thread is sound, like moving a `Box`.
unsafe impl Send for Gather {}

impl Default for Gather {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Gather {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gather")
            .field("ranges", &self.ranges())
            .field("freed_tables", &self.freed.len())
            .finish_non_exhaustive()
    }
}

impl Gather {
    /// An empty gather.
    pub const fn new() -> Self {
        const EMPTY: InvalRange = InvalRange {
            iova: Iova(0),
            size: 0,
            granule: Granule::Size4K,
            leaf: true,
            level: None,
        };
        Self {
            ranges: [EMPTY; GATHER_RANGES],
            len: 0,
            freed: FreeList::new(),
            owner: 0,
        }
    }

    /// The ranges to invalidate, in no particular order (they may overlap after widening).
    pub fn ranges(&self) -> &[InvalRange] {
        self.ranges.get(..self.len).unwrap_or(&[])
    }

    /// Number of table pages (allocations) waiting for [`PageTable::release`](crate::PageTable::release).
    pub fn freed_tables(&self) -> usize {
        self.freed.len()
    }

    /// Nothing to invalidate and nothing to free.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.freed.len() == 0
    }

    pub(crate) fn clear_ranges(&mut self) {
        self.len = 0;
    }

    /// Records that `[iova, iova + size)` needs invalidating.
    #[inline]
    pub(crate) fn add(
        &mut self,
        iova: u64,
        size: u64,
        leaf: bool,
        level: Option<u8>,
        granule: Granule,
    ) {
        let end = iova + size;
        let merge = |r: &mut InvalRange| {
            let start = r.iova.0.min(iova);
            let stop = r.end().max(end);
            r.iova = Iova(start);
            r.size = stop - start;
            r.leaf &= leaf;
            if r.level != level {
                r.level = None;
            }
        };
        // Touching or overlapping ranges merge; the latest range is the likeliest neighbour.
        for r in self.ranges.iter_mut().take(self.len).rev() {
            if r.iova.0 <= end && iova <= r.end() {
                merge(r);
                return;
            }
        }
        if let Some(slot) = self.ranges.get_mut(self.len) {
            *slot = InvalRange {
                iova: Iova(iova),
                size,
                granule,
                leaf,
                level,
            };
            self.len += 1;
            return;
        }
        // Full: widen the range nearest to the new one so that it covers it.
        let gap = |r: &InvalRange| {
            if r.end() < iova {
                iova - r.end()
            } else {
                r.iova.0.saturating_sub(end)
            }
        };
        if let Some(r) = self.ranges.iter_mut().min_by_key(|r| gap(r)) {
            merge(r);
        }
    }
}

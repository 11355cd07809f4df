//! The invalidation gather: what an unmap left for the driver to invalidate, and the tables it
//! unlinked, which may be reused only afterwards (SPEC P3).

use crate::pool::FreeList;
use crate::{Granule, Iova};

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

/// Invalidations owed after [`PageTable::unmap`](crate::PageTable::unmap), and the table pages
/// that can be reused once they are done.
///
/// # Contract (SPEC P3)
///
/// ```text
/// let mut gather = Gather::new();
/// pt.unmap(iova, size, &mut gather)?;          // descriptors cleared, tables unlinked
/// for r in gather.ranges() { /* driver queues TLBI (range or per page), then CMD_SYNC */ }
/// // ... wait for CMD_SYNC completion ...
/// // SAFETY: the CMD_SYNC above completed, so the SMMU no longer walks the retired tables.
/// unsafe { pt.release(&mut gather) }?;         // only now may unlinked tables be reused
/// ```
///
/// * Several unmaps (of the same page table) may share one gather; adjacent and overlapping
///   ranges merge. Beyond [`GATHER_RANGES`] disjoint ranges, a new range widens the nearest
///   existing one to cover both, so the set always covers everything removed
///   (over-invalidation is always safe).
/// * Unlinked tables are an intrusive list through the tables themselves: no capacity limit, no
///   allocation. Their memory is not touched by the driver.
/// * Every unlinked table lies under a recorded non-leaf range, so invalidating [`ranges`](Self::ranges)
///   is always enough before [`PageTable::release`](crate::PageTable::release). An empty gather
///   needs neither. `release` moves the tables into the page table's pool of retired tables
///   (they go back to the allocator only through `&mut`: `PageTable::reclaim` or drop) and
///   empties the gather for reuse. Dropping a gather without releasing it leaks its pages (it
///   never frees them early).
/// * Ranges carry the granule and, when uniform, the leaf level, so a driver can issue one
///   range invalidation per entry (`CMD_TLBI_*` with `TG`, `TTL`, `NUM`, `SCALE`) or fall back
///   to per-granule commands, or to invalidating the whole ASID/VMID when a range is large.
/// * Map never needs a gather: it only turns invalid descriptors valid, which no TLB caches.
#[must_use = "unlinked tables are only returned by PageTable::release"]
pub struct Gather {
    ranges: [InvalRange; GATHER_RANGES],
    len: usize,
    pub(crate) freed: FreeList,
    /// Identity of the page table that filled the gather; 0 while unused.
    pub(crate) owner: usize,
}

// SAFETY: the unlinked pages a gather holds are owned by it (no other CPU can reach them but a
// buggy overlapping caller's stale pointer, which only ever makes atomic accesses); moving that
// ownership to another thread is sound, like moving a `Box`.
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

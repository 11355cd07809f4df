//! The page table: map, unmap, lookup, walk.

use core::ptr::NonNull;
use core::sync::atomic::AtomicUsize;

use crate::alloc::{TableAllocator, TableMem};
use crate::desc;
use crate::format::{Geometry, LEAF_LEVEL};
use crate::gather::Gather;
use crate::pool::{FreeList, Pool, LEVELS};
use crate::scan::{count_valid, or_all, or_tables};
use crate::sync::{slot, slots, Desc, Ordering};
use crate::{Config, Error, Iova, PhysAddr, Prot, Stage, Stage1Config, Stage2Config, WalkAttrs};

/// Source of page-table identities, used to tie a [`Gather`] to the table that filled it.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

const VALID: u64 = desc::VALID.mask();

/// A view of one live translation table: its CPU address and `entries - 1`.
///
/// Invariant (upheld by every constructor in this module): `va` is the CPU address of a table
/// allocation owned by the page table through which the view was made (linked in its tree, in
/// its pool, on a gather or list of its own, or stranded by a buggy caller and never freed), that
/// holds at least `mask + 1` descriptors; a view is used only while that page table is borrowed.
/// Tables owned by a page table go back to the allocator only through `&mut` (`reclaim`, `Drop`),
/// so no view made through `&self` can outlive its memory (see [`crate::pool`]).
///
/// Every access is an atomic access of one descriptor ([`Desc`]): several CPUs may map and unmap
/// disjoint ranges of one table at once, and even overlapping (buggy) callers race only on
/// atomics, never into undefined behaviour. Relaxed loads and stores compile to plain ones; only
/// table installs and unlinks are read-modify-writes. The SMMU only reads descriptors (AF is
/// preset and DBM never set, so hardware never updates them).
#[derive(Clone, Copy)]
struct Tbl {
    va: NonNull<u64>,
    mask: usize,
}

impl Tbl {
    #[inline(always)]
    fn slot(&self, i: usize) -> &Desc {
        // SAFETY: `i & mask` < entries of the allocation, which (type invariant, allocator
        // contract 1-2) is valid, 8-aligned and stays allocated while the view is used.
        unsafe { slot(self.va, i & self.mask) }
    }

    /// Reads descriptor `i`. Acquire: a table descriptor read here is followed into its table,
    /// whose contents another CPU wrote before linking it with a release.
    #[inline(always)]
    fn get(self, i: usize) -> u64 {
        self.slot(i).load(Ordering::Acquire)
    }

    /// Runs `f` on descriptors `first..first + n` (`None` if that is out of bounds).
    #[inline(always)]
    fn scan<R>(self, first: usize, n: usize, f: impl FnOnce(&[Desc]) -> R) -> Option<R> {
        if first.checked_add(n)? > self.mask + 1 {
            return None;
        }
        // SAFETY: `first + n` <= entries, so the range lies inside the live allocation (type
        // invariant).
        Some(f(unsafe { slots(self.va, first, n) }))
    }

    /// Descriptors `first..first + n` as a slice (`None` if that is out of bounds), for the hot
    /// scans, written inline by the caller: a closure passed to [`scan`](Self::scan) was
    /// sometimes compiled out of line, a call per scan.
    #[inline(always)]
    fn run(&self, first: usize, n: usize) -> Option<&[Desc]> {
        if first.checked_add(n)? > self.mask + 1 {
            return None;
        }
        // SAFETY: `first + n` <= entries, so the range lies inside the live allocation, which
        // outlives this borrow of the view (type invariant).
        Some(unsafe { slots(self.va, first, n) })
    }

    /// Whether the `n` descriptors from `first` are all invalid.
    #[inline(always)]
    fn run_is_empty(self, first: usize, n: usize) -> bool {
        self.run(first, n).is_some_and(|s| or_all(s) & VALID == 0)
    }

    /// Stores a leaf (or zero) into descriptor `i`: one single-copy-atomic 64-bit store, as the
    /// walker may observe it at any time. Only for slots inside the caller's own range (no
    /// correct caller writes them meanwhile) and for tables the caller owns.
    #[inline(always)]
    fn set(self, i: usize, v: u64) {
        self.slot(i).store(v, Ordering::Relaxed);
    }

    /// Installs `new` into descriptor `i` if it is still invalid (exactly 0: this crate only
    /// ever writes 0 as an invalid descriptor); `Err` holds what another CPU installed first.
    /// Release: a table linked here was filled (or zeroed) before, and the CPU that follows
    /// the link must see that; on Arm this is the store-release that also orders the fill
    /// before the link for the SMMU's walker (Linux uses `dma_wmb()` at the same point).
    #[inline(always)]
    fn install(self, i: usize, new: u64) -> Result<(), u64> {
        self.slot(i)
            .compare_exchange(0, new, Ordering::Release, Ordering::Acquire)
            .map(drop)
    }

    /// Clears descriptor `i` if it still holds `old`. For a table descriptor this is the unlink:
    /// the one CPU whose swap succeeds owns the table from then on, so even overlapping unmaps
    /// retire a table once. For a leaf, a slot another caller turned into a table meanwhile is
    /// left alone (replacing it would strand that table).
    #[inline(always)]
    fn clear_if(self, i: usize, old: u64) -> bool {
        self.slot(i)
            .compare_exchange(old, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// A relaxed load, for scans of slots that belong to the caller's own range (ordering comes from
/// the acquire on the way down to the table). It compiles to a plain load.
#[inline(always)]
fn ld(d: &Desc) -> u64 {
    d.load(Ordering::Relaxed)
}

/// Allocates a table of `size` bytes and checks the allocator's promises that the walker relies
/// on (alignment, PA below 2^OAS); a bad allocation is handed back.
fn checked_alloc<A: TableAllocator>(alloc: &A, oas: u32, size: usize) -> Result<TableMem, Error> {
    let mem = alloc.alloc_table(size).ok_or(Error::OutOfMemory)?;
    let bad_pa = mem.pa.0 & (size as u64 - 1) != 0 || mem.pa.0 >> oas != 0;
    let bad_va = mem.va.as_ptr().addr() & 7 != 0;
    if bad_pa || bad_va {
        // SAFETY: `mem` came from this allocator with this size and was never used.
        unsafe { alloc.free_table(mem, size) };
        return Err(Error::BadTableMemory);
    }
    Ok(mem)
}

/// What pass 2 of `map` carries down the tree.
struct Writer<'p> {
    /// Leaf attributes (without the descriptor type).
    attrs: u64,
    /// The tables pass 1 preallocated, per lookup level.
    pool: &'p mut [FreeList; LEVELS],
}

/// Where a descent towards a leaf table stopped.
enum Descent {
    /// At the leaf table.
    Leaf(Tbl),
    /// At an invalid descriptor: the table holding it, its index, its level.
    Missing(Tbl, usize, u32),
    /// At a block of this level.
    Block(u32),
}

/// Tables a map has to create, per lookup level (index: the level of the entries they hold).
pub(crate) type Need = [usize; LEVELS];

/// Adds `n` tables of `level` to `need`.
#[inline(always)]
pub(crate) fn add_need(need: &mut Need, level: u32, n: usize) {
    if let Some(c) = need.get_mut(level as usize) {
        *c += n;
    }
}

/// One item reported by [`PageTable::walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEntry {
    /// A translation table (the start table first, then each table before its contents).
    Table {
        /// First IOVA the table translates.
        iova: Iova,
        /// Bytes of IOVA space it spans.
        span: u64,
        /// Lookup level of the descriptors it holds.
        level: u8,
        /// Its physical address.
        table: PhysAddr,
        /// The Table descriptor pointing to it (0 for the start table).
        desc: u64,
    },
    /// A Block or Page descriptor.
    Leaf {
        /// First IOVA it maps.
        iova: Iova,
        /// Output address of that IOVA.
        pa: PhysAddr,
        /// Bytes mapped.
        size: u64,
        /// Lookup level (3 = page).
        level: u8,
        /// The raw descriptor.
        desc: u64,
    },
}

/// A VMSAv8-64 I/O page table (stage 1 or stage 2), with its memory from `A`.
///
/// # Several CPUs
///
/// [`map`](Self::map), [`unmap`](Self::unmap), [`iova_to_phys`](Self::iova_to_phys) and
/// [`walk`](Self::walk) take `&self`: when `A: Sync`, the table is `Sync` and CPUs may map and
/// unmap *disjoint* IOVA ranges of it at the same time, as a DMA API does for the queues of one
/// device. No call takes a lock or a guard: a CPU walks with plain (relaxed or acquire) loads
/// and writes its own range's leaves with plain stores, as Linux's io-pgtable-arm does.
/// Intermediate tables are installed with a compare-and-swap on their descriptor (the loser of a
/// race descends into the winner's table and gives its own back), so two CPUs that need the same
/// new table never both link one; an unmap unlinks a table whose whole span its range covers
/// with a compare-and-swap too, so a table is retired once.
///
/// A table unlinked through `&self` is never freed while `&self` callers may exist: after the
/// caller's invalidation, [`release`](Self::release) moves it into the page table's own pool of
/// retired tables (per lookup level), from which later maps take tables first. Memory stays
/// bounded by the domain's peak use; [`reclaim`](Self::reclaim) (`&mut self`) or dropping the
/// table gives the pool back to the allocator. See the `pool` module for why this makes a
/// stale pointer harmless.
///
/// Overlapping concurrent calls are the caller's bug, and never undefined behaviour (every
/// access is atomic, and no table is freed while reachable). They may leave part of a range
/// mapped or fail with [`Error::AlreadyMapped`]. A caller that walks into a table another CPU's
/// unmap retires may, through that stale pointer, read or write whatever range the table serves
/// after it is reused: wrong translations within this domain, never outside it. A run of blocks
/// is written and cleared with plain stores, so an overlapping map that links a table into such a
/// run at the same moment may strand that table (unreachable, never freed, so still never a
/// use-after-free).
///
/// Dropping the table frees every table immediately: detach it from the SMMU and invalidate
/// first.
pub struct PageTable<A: TableAllocator> {
    alloc: A,
    geo: Geometry,
    root: TableMem,
    id: usize,
    pool: Pool,
}

// SAFETY: a `PageTable` exclusively owns its table memory (raw pointers only because it lives
// outside Rust's allocator); moving it to another thread moves that ownership, like a `Box`.
unsafe impl<A: TableAllocator + Send> Send for PageTable<A> {}
// SAFETY: all CPU-side accesses to table memory through `&self` are atomic descriptor accesses
// (`Tbl`, the pool's links), so shared references never cause a data race; a table unlinked
// through `&self` goes to a gather and then the pool, never to the allocator, so a pointer that
// another `&self` caller still holds always points into memory this page table owns (freed
// only through `&mut self` or `Drop`). The allocator is called from several CPUs at once, hence
// `A: Sync`.
unsafe impl<A: TableAllocator + Sync> Sync for PageTable<A> {}

impl<A: TableAllocator> core::fmt::Debug for PageTable<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageTable")
            .field("config", &self.config())
            .field("start_level", &self.geo.start_level)
            .field("concatenated", &self.geo.concat)
            .field("root", &self.root.pa)
            .finish_non_exhaustive()
    }
}

impl<A: TableAllocator> PageTable<A> {
    /// Creates an empty table for `config`, allocating the start table(s) from `alloc`.
    pub fn new(config: Config, alloc: A) -> Result<Self, Error> {
        let geo = Geometry::new(config)?;
        // The value is built only once the root exists: `Drop` must never see a missing root.
        let root = checked_alloc(&alloc, geo.oas, geo.root_bytes())?;
        if !A::COHERENT {
            alloc.sync(root.va, geo.root_bytes());
        }
        Ok(Self {
            alloc,
            geo,
            root,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pool: Pool::new(),
        })
    }

    /// The configuration this table was built for.
    pub fn config(&self) -> Config {
        Config {
            stage: self.geo.stage,
            granule: self.geo.granule,
            ias: self.geo.ias,
            oas: self.geo.oas,
        }
    }

    /// Level of the start table (derived from IAS, granule and, at stage 2, concatenation).
    pub fn start_level(&self) -> u8 {
        self.geo.start_level as u8
    }

    /// Number of concatenated start tables (1 = not concatenated; only stage 2 concatenates).
    pub fn concatenated(&self) -> u8 {
        self.geo.concat as u8
    }

    /// Physical address of the start table (TTB0 / S2TTB).
    pub fn root(&self) -> PhysAddr {
        self.root.pa
    }

    /// Every size a single descriptor can map, as a bitmap (`1 << n` for each `2^n`-byte leaf):
    /// 4K: 4K|2M|1G, 16K: 16K|32M, 64K: 64K|512M (+4T with a 52-bit OAS).
    pub fn pgsize_bitmap(&self) -> u64 {
        self.geo.pgsize_bitmap()
    }

    /// The allocator.
    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// Walk attributes for this allocator's coherency.
    fn walk_attrs() -> WalkAttrs {
        WalkAttrs::for_coherence(A::COHERENT)
    }

    /// Values for a stage-1 Context Descriptor; [`Error::WrongStage`] on a stage-2 table.
    pub fn stage1_config(&self) -> Result<Stage1Config, Error> {
        if self.geo.stage != Stage::Stage1 {
            return Err(Error::WrongStage);
        }
        Ok(Stage1Config {
            ttb: self.root.pa,
            t0sz: (64 - self.geo.ias) as u8,
            granule: self.geo.granule,
            oas: self.geo.oas as u8,
            ips: crate::pa_size_encoding(self.geo.oas).unwrap_or(0),
            walk: Self::walk_attrs(),
            mair: desc::MAIR,
            start_level: self.geo.start_level as u8,
        })
    }

    /// Values for a stage-2 STE; [`Error::WrongStage`] on a stage-1 table.
    pub fn stage2_config(&self) -> Result<Stage2Config, Error> {
        if self.geo.stage != Stage::Stage2 {
            return Err(Error::WrongStage);
        }
        Ok(Stage2Config {
            ttb: self.root.pa,
            t0sz: (64 - self.geo.ias) as u8,
            sl0: self.geo.sl0(),
            start_level: self.geo.start_level as u8,
            concatenated: self.geo.concat as u8,
            granule: self.geo.granule,
            oas: self.geo.oas as u8,
            ps: crate::pa_size_encoding(self.geo.oas).unwrap_or(0),
            walk: Self::walk_attrs(),
        })
    }

    // ---- memory ---------------------------------------------------------------------------

    fn alloc_checked(&self, size: usize) -> Result<TableMem, Error> {
        checked_alloc(&self.alloc, self.geo.oas, size)
    }

    /// Hands a table the caller owns (unlinked from the tree, or never linked) to the pool,
    /// zeroed. Never to the allocator: a buggy caller's stale pointer may still reach it, and
    /// the pool's memory is freed only through `&mut self`. For an unlinked table, only after the
    /// invalidation (the caller is `release`), as the SMMU may walk it until then (SPEC P3).
    #[inline(never)]
    fn recycle(&self, mem: TableMem, level: u32) {
        let t = Tbl {
            va: mem.va,
            mask: self.geo.table_bytes() / 8 - 1,
        };
        t.scan(0, t.mask + 1, |s| {
            for d in s {
                d.store(0, Ordering::Relaxed);
            }
        });
        // SAFETY: a table allocation of `self.alloc` (type invariant of the caller's view), owned
        // by the caller and unreachable from the tree, now zero beyond what the push writes.
        unsafe { self.pool.push(mem, level) };
    }

    /// Recycles every table on a list.
    fn recycle_list(&self, list: &mut FreeList) {
        while let Some((mem, level)) = list.pop(&self.alloc) {
            self.recycle(mem, level);
        }
    }

    /// Recycles every table of per-level lists.
    fn recycle_lists(&self, lists: &mut [FreeList; LEVELS]) {
        for list in lists {
            self.recycle_list(list);
        }
    }

    /// A zeroed table for `level` (not yet synced for a non-coherent walker): the pool's first,
    /// so that memory stays bounded by peak use, else a fresh allocation.
    #[inline(never)]
    fn take_shared(&self, level: u32) -> Result<TableMem, Error> {
        if let Some(mem) = self.pool.pop(level, &self.alloc) {
            // The rest was zeroed by `recycle` (a buggy caller's stale writes aside, which only
            // ever put valid descriptors of this level there).
            let t = self.view(mem.va, level);
            t.set(0, 0);
            t.set(1, 0);
            t.set(2, 0);
            return Ok(mem);
        }
        self.alloc_checked(self.geo.table_bytes())
    }

    /// Takes a table for `level` from the ones pass 1 preallocated (zeroing the list words and
    /// making it visible), or from the pool or the allocator if they ran out. Pass 1 counts an
    /// upper bound of the tables pass 2 links (concurrent maps can only install tables it then
    /// uses instead, and a correct caller's tables are not unlinked under it), so the fallback
    /// is belt and braces.
    fn take(&self, pool: &mut [FreeList; LEVELS], level: u32) -> Result<TableMem, Error> {
        let popped = pool
            .get_mut(level as usize)
            .and_then(|l| l.pop(&self.alloc));
        let mem = match popped {
            Some((mem, _)) => {
                let t = self.view(mem.va, level);
                t.set(0, 0);
                t.set(1, 0);
                t.set(2, 0);
                mem
            }
            None => self.take_shared(level)?,
        };
        if !A::COHERENT {
            self.alloc.sync(mem.va, self.geo.table_bytes());
        }
        Ok(mem)
    }

    #[inline(always)]
    fn view(&self, va: NonNull<u64>, level: u32) -> Tbl {
        Tbl {
            va,
            mask: self.geo.entries(level) - 1,
        }
    }

    #[inline(always)]
    fn root_tbl(&self) -> Tbl {
        self.view(self.root.va, self.geo.start_level)
    }

    /// [`child`](Self::child) with the geometry from a local copy. Descents use it: `&self`
    /// holds atomics (the pool), so it is not `noalias`, and LLVM reloads every `self.geo` field
    /// after each acquire load of a descriptor; a copy in registers costs nothing to keep.
    #[inline(always)]
    fn child_in(&self, geo: &Geometry, d: u64, level: u32) -> Tbl {
        let va = self.alloc.phys_to_virt(PhysAddr(geo.desc_pa(d)));
        Tbl {
            va,
            mask: geo.entries(level) - 1,
        }
    }

    /// The table a Table descriptor `d` (found at level `level - 1`) points to.
    #[inline(always)]
    fn child(&self, d: u64, level: u32) -> Tbl {
        let va = self.alloc.phys_to_virt(PhysAddr(self.geo.desc_pa(d)));
        self.view(va, level)
    }

    /// Cleans `count` descriptors from `first` for a non-coherent walker (no-op when coherent).
    #[inline(always)]
    fn sync(&self, t: Tbl, first: usize, count: usize) {
        if !A::COHERENT && count > 0 {
            if let Some(p) = NonNull::new(t.va.as_ptr().wrapping_add(first & t.mask)) {
                self.alloc.sync(p, count * 8);
            }
        }
    }

    // ---- argument checks ------------------------------------------------------------------

    #[inline]
    fn check_iova_range(&self, iova: u64, size: u64) -> Result<(), Error> {
        let gmask = self.geo.granule.size() - 1;
        if size == 0 {
            return Err(Error::EmptyRange);
        }
        if (iova | size) & gmask != 0 {
            return Err(Error::Misaligned);
        }
        match iova.checked_add(size) {
            Some(end) if end <= 1u64 << self.geo.ias => Ok(()),
            _ => Err(Error::OutOfRange),
        }
    }

    // ---- map ------------------------------------------------------------------------------

    /// Maps `[iova, iova + size)` to `[pa, pa + size)` with `prot`, using the largest leaf each
    /// aligned piece allows (SPEC P2).
    ///
    /// `iova`, `pa` and `size` must be multiples of the granule. If any part of the range is
    /// already mapped the call fails with [`Error::AlreadyMapped`] and changes nothing; every
    /// table the mapping needs is allocated *before* the first descriptor is written, so
    /// [`Error::OutOfMemory`] changes no translation either (the tables it did get wait in the
    /// pool for the next map). (Both hold against every caller that does not map an
    /// overlapping range at the same time; one that does may see a part of the range mapped and
    /// the rest refused.) Tables come from the pool of retired tables first, then from the
    /// allocator. A table left empty by an earlier partial unmap is reused
    /// (descended into) rather than replaced by a block, so that `map` never needs an
    /// invalidation. Safe to call from several CPUs at once for disjoint ranges (see the type's
    /// documentation).
    pub fn map(&self, iova: Iova, pa: PhysAddr, size: u64, prot: Prot) -> Result<(), Error> {
        self.check_iova_range(iova.0, size)?;
        if pa.0 & (self.geo.granule.size() - 1) != 0 {
            return Err(Error::Misaligned);
        }
        match pa.0.checked_add(size) {
            Some(end) if end <= 1u64 << self.geo.oas => {}
            _ => return Err(Error::OutOfRange),
        }
        let attrs = self.geo.leaf_attrs(prot)?;
        if self.within_one_leaf_table(iova.0, size) {
            return self.map_in_leaf_table(iova.0, pa.0, size, attrs);
        }
        self.map_general(iova.0, pa.0, size, attrs)
    }

    /// `map` of a range that may span several tables or hold blocks: two passes. Kept out of
    /// line, so that the one-table fast path above stays a small function (its prologue and
    /// register spills were a third of a 4 KiB map while this was inlined into it).
    #[inline(never)]
    fn map_general(&self, iova: u64, pa: u64, size: u64, attrs: u64) -> Result<(), Error> {
        let root = self.root_tbl();
        let start = self.geo.start_level;
        // Pass 1: refuse overlaps and count the tables to create, per level; nothing is written.
        let mut need: Need = [0; LEVELS];
        self.map_check(root, start, iova, pa, size, &mut need)?;
        let mut pool: [FreeList; LEVELS] = core::array::from_fn(|_| FreeList::new());
        for (level, (list, n)) in pool.iter_mut().zip(need).enumerate() {
            for _ in 0..n {
                match self.take_shared(level as u32) {
                    // SAFETY: a table of this page table's allocator, zeroed and reachable from
                    // nowhere (fresh, or popped from the pool, which owned it).
                    Ok(mem) => unsafe { list.push(mem, level as u32) },
                    Err(e) => {
                        self.recycle_lists(&mut pool);
                        return Err(e);
                    }
                }
            }
        }
        // Pass 2: write. Fails only if an overlapping caller mapped part of the range since.
        let mut w = Writer {
            attrs,
            pool: &mut pool,
        };
        let r = self.map_write(root, start, iova, pa, size, &mut w);
        self.recycle_lists(&mut pool);
        r
    }

    /// Whether `[iova, iova + size)` lies inside one last-level table's span and cannot be a
    /// level-2 block: then only pages are written, all in one table.
    #[inline(always)]
    fn within_one_leaf_table(&self, iova: u64, size: u64) -> bool {
        let s2 = self.geo.shift(LEAF_LEVEL - 1);
        (iova ^ (iova + size - 1)) >> s2 == 0 && size >> s2 == 0
    }

    /// Fast path of `map` for a range inside one last-level table: one descent, then a check of
    /// the target descriptors, then the writes. Missing tables are allocated, filled and linked
    /// bottom-up, so the walker never sees a half-built subtree.
    #[inline]
    fn map_in_leaf_table(&self, iova: u64, pa: u64, size: u64, attrs: u64) -> Result<(), Error> {
        // A lost install race leaves the slot valid, and only an unmap covering this range
        // unlinks a table on the way: more than one loss per level means someone maps and
        // unmaps over this very range, which is an overlap.
        let mut races = 0;
        let t = loop {
            match self.descend(iova) {
                Descent::Leaf(t) => break t,
                Descent::Block(_) => return Err(Error::AlreadyMapped { iova: Iova(iova) }),
                Descent::Missing(t, idx, level) => {
                    if self.map_fresh_chain(t, idx, level, iova, pa, size, attrs)? {
                        return Ok(());
                    }
                    races += 1;
                    if races > LEAF_LEVEL {
                        return Err(Error::AlreadyMapped { iova: Iova(iova) });
                    }
                }
            }
        };
        let first = self.geo.index(iova, LEAF_LEVEL);
        let n = (size >> self.geo.g) as usize;
        self.check_pages(t, first, n, iova)?;
        self.write_pages(t, first, n, pa, attrs);
        Ok(())
    }

    /// Follows table descriptors from the root towards `iova`'s leaf table. The geometry is a
    /// local copy (see `child_in`), and the loop keeps nothing else alive, so that it runs in
    /// registers.
    #[inline(always)]
    fn descend(&self, iova: u64) -> Descent {
        let geo = self.geo;
        let mut t = self.root_tbl();
        let mut level = geo.start_level;
        while level < LEAF_LEVEL {
            let idx = geo.index(iova, level);
            let d = t.get(idx);
            if d & VALID == 0 {
                return Descent::Missing(t, idx, level);
            }
            if !Geometry::is_table(d, level) {
                return Descent::Block(level);
            }
            level += 1;
            t = self.child_in(&geo, d, level);
        }
        Descent::Leaf(t)
    }

    /// Allocates the tables from `level + 1` down to the leaf level for a range inside one leaf
    /// table, fills them, then publishes the chain at `t[idx]` with one compare-and-swap.
    /// `Ok(false)`: another CPU filled `t[idx]` first; the chain went to the pool, never seen.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn map_fresh_chain(
        &self,
        t: Tbl,
        idx: usize,
        level: u32,
        iova: u64,
        pa: u64,
        size: u64,
        attrs: u64,
    ) -> Result<bool, Error> {
        let geo = &self.geo;
        let tbytes = geo.table_bytes();
        let count = (LEAF_LEVEL - level) as usize;
        let mut chain: [Option<TableMem>; 3] = [None; 3];
        for (j, slot) in chain.iter_mut().take(count).enumerate() {
            match self.take_shared(level + 1 + j as u32) {
                Ok(mem) => *slot = Some(mem),
                Err(e) => {
                    for (j, mem) in chain.iter().enumerate() {
                        if let Some(mem) = *mem {
                            self.recycle(mem, level + 1 + j as u32);
                        }
                    }
                    return Err(e);
                }
            }
        }
        // Bottom-up: pages into the last table, then each table into its parent.
        let mut below: Option<TableMem> = None;
        for (j, mem) in chain.iter().take(count).enumerate().rev() {
            let Some(mem) = *mem else { continue };
            let lvl = level + 1 + j as u32;
            let nt = self.view(mem.va, lvl);
            if let Some(child) = below {
                nt.set(
                    geo.index(iova, lvl),
                    desc::TYPE.encode(desc::TYPE_TABLE) | geo.oa_bits(child.pa.0),
                );
            } else {
                let n = (size >> geo.g) as usize;
                let first = geo.index(iova, LEAF_LEVEL);
                let base = attrs | desc::TYPE.encode(desc::TYPE_PAGE);
                self.fill_leaves(nt, first, n, base, pa, 1u64 << geo.g);
            }
            if !A::COHERENT {
                self.alloc.sync(mem.va, tbytes);
            }
            below = Some(mem);
        }
        let Some(top) = below else {
            return Ok(true);
        };
        let link = desc::TYPE.encode(desc::TYPE_TABLE) | geo.oa_bits(top.pa.0);
        if t.install(idx, link).is_err() {
            // The chain lost the race, so the SMMU never saw it; each table keeps its level.
            for (j, mem) in chain.iter().enumerate() {
                if let Some(mem) = *mem {
                    self.recycle(mem, level + 1 + j as u32);
                }
            }
            return Ok(false);
        }
        self.sync(t, idx, 1);
        Ok(true)
    }

    /// Refuses if any of the `n` descriptors from `t[first]` (translating from `iova`) is valid.
    #[inline(always)]
    fn check_pages(&self, t: Tbl, first: usize, n: usize, iova: u64) -> Result<(), Error> {
        // Out of bounds cannot happen (the range lies in one table); refuse rather than guess.
        let s = t.run(first, n).ok_or(Error::OutOfRange)?;
        if or_all(s) & VALID == 0 {
            return Ok(());
        }
        // Taken meanwhile by an overlapping caller if none is found now: report the first.
        let i = s.iter().position(|d| ld(d) & VALID != 0).unwrap_or(0);
        Err(Error::AlreadyMapped {
            iova: Iova(iova + ((i as u64) << self.geo.g)),
        })
    }

    /// Writes `n` page descriptors from `t[first]` for `pa..`, then one sync.
    #[inline(always)]
    fn write_pages(&self, t: Tbl, first: usize, n: usize, pa: u64, attrs: u64) {
        let geo = &self.geo;
        let base = attrs | desc::TYPE.encode(desc::TYPE_PAGE);
        self.fill_leaves(t, first, n, base, pa, 1u64 << geo.g);
        self.sync(t, first, n);
    }

    /// Writes the `n` leaf descriptors `base | OA(pa + i * step)` from `t[first]`.
    #[inline(always)]
    fn fill_leaves(&self, t: Tbl, first: usize, n: usize, base: u64, pa: u64, step: u64) {
        if self.geo.lpa {
            for i in 0..n {
                t.set(first + i, base | self.geo.oa_bits(pa + (i as u64) * step));
            }
        } else {
            // Without LPA the OA sits in place in bits [47:g], and the range ends at or below
            // 2^OAS <= 2^48: consecutive descriptors differ by exactly `step`, with no carry out
            // of the OA field.
            let mut d = base | self.geo.oa_bits(pa);
            for i in 0..n {
                t.set(first + i, d);
                d += step;
            }
        }
    }

    /// Splits `[iova, iova + size)` at `level` into a partial first entry (`head` bytes), a run
    /// of `whole` complete entries, and a partial last entry (`tail` bytes).
    #[inline(always)]
    fn split(&self, level: u32, iova: u64, size: u64) -> (u64, u64, u64) {
        let esz = 1u64 << self.geo.shift(level);
        let end = iova + size;
        let head_end = ((iova + esz - 1) & !(esz - 1)).min(end);
        if head_end == end {
            // Unaligned start and the end within the same entry (an aligned start gives
            // `head_end == iova`, which is below `end` as `size > 0`).
            return (size, 0, 0);
        }
        let tail_start = end & !(esz - 1);
        let whole = (tail_start - head_end) >> self.geo.shift(level);
        (head_end - iova, whole, end - tail_start)
    }

    /// Pass 1 of `map` below table `t` at `level`: overlap check, and the count of tables to
    /// create added to `need` (per level, as a table keeps its level for life: see `pool`).
    fn map_check(
        &self,
        t: Tbl,
        level: u32,
        iova: u64,
        pa: u64,
        size: u64,
        need: &mut Need,
    ) -> Result<(), Error> {
        let geo = &self.geo;
        let shift = geo.shift(level);
        let mut idx = geo.index(iova, level);
        if level >= LEAF_LEVEL {
            return self.check_pages(t, idx, (size >> shift) as usize, iova);
        }
        let esz = 1u64 << shift;
        let (head, whole, tail) = self.split(level, iova, size);
        let (mut cur, mut pa) = (iova, pa);
        if head > 0 {
            self.check_partial(t, idx, level, cur, pa, head, need)?;
            (cur, pa, idx) = (cur + head, pa + head, idx + 1);
        }
        if whole > 0 {
            let block = geo.leaf_ok(level) && pa & (esz - 1) == 0;
            let n = whole as usize;
            if t.run_is_empty(idx, n) {
                // Nothing mapped in the run (the common case): no per-entry work. pa advances
                // by whole entries, so every entry of the run needs the same below it.
                if !block {
                    add_need(need, level + 1, n);
                    geo.tables_needed(level + 1, cur, pa, esz, n, need);
                }
                (cur, pa, idx) = (cur + (whole << shift), pa + (whole << shift), idx + n);
            } else {
                for _ in 0..n {
                    let d = t.get(idx);
                    if d & VALID == 0 {
                        if !block {
                            add_need(need, level + 1, 1);
                            geo.tables_needed(level + 1, cur, pa, esz, 1, need);
                        }
                    } else if Geometry::is_table(d, level) {
                        self.map_check(self.child(d, level + 1), level + 1, cur, pa, esz, need)?;
                    } else {
                        return Err(Error::AlreadyMapped { iova: Iova(cur) });
                    }
                    (cur, pa, idx) = (cur + esz, pa + esz, idx + 1);
                }
            }
        }
        if tail > 0 {
            self.check_partial(t, idx, level, cur, pa, tail, need)?;
        }
        Ok(())
    }

    /// Pass 1 for a piece covering part of the entry `t[idx]`.
    #[allow(clippy::too_many_arguments)]
    fn check_partial(
        &self,
        t: Tbl,
        idx: usize,
        level: u32,
        iova: u64,
        pa: u64,
        len: u64,
        need: &mut Need,
    ) -> Result<(), Error> {
        let d = t.get(idx);
        if d & VALID == 0 {
            add_need(need, level + 1, 1);
            self.geo.tables_needed(level + 1, iova, pa, len, 1, need);
            Ok(())
        } else if Geometry::is_table(d, level) {
            self.map_check(self.child(d, level + 1), level + 1, iova, pa, len, need)
        } else {
            Err(Error::AlreadyMapped { iova: Iova(iova) })
        }
    }

    /// Pass 2 of `map` below table `t` at `level`.
    #[allow(clippy::too_many_arguments)]
    fn map_write(
        &self,
        t: Tbl,
        level: u32,
        iova: u64,
        pa: u64,
        size: u64,
        w: &mut Writer<'_>,
    ) -> Result<(), Error> {
        let geo = &self.geo;
        let shift = geo.shift(level);
        let first = geo.index(iova, level);
        if level >= LEAF_LEVEL {
            self.write_pages(t, first, (size >> shift) as usize, pa, w.attrs);
            return Ok(());
        }
        let esz = 1u64 << shift;
        let (head, whole, tail) = self.split(level, iova, size);
        let (mut cur, mut pa, mut idx) = (iova, pa, first);
        let mut res = Ok(());
        let mut written = false;
        if head > 0 {
            res = self.write_partial(t, idx, level, cur, pa, head, w, &mut written);
            (cur, pa, idx) = (cur + head, pa + head, idx + 1);
        }
        if whole > 0 && res.is_ok() {
            let block = geo.leaf_ok(level) && pa & (esz - 1) == 0;
            let bdesc = w.attrs | desc::TYPE.encode(desc::TYPE_BLOCK);
            let n = whole as usize;
            if block && t.run_is_empty(idx, n) {
                // A run of blocks over empty entries of the caller's own range: one loop of plain
                // stores, as no correct caller writes these slots (a compare-and-swap per block
                // cost ~5 ns apiece on x86 and made a 512 MiB map eight times slower). An
                // overlapping map that links a table here meanwhile would see it replaced:
                // stranded, never freed (see the type's documentation).
                written = true;
                self.fill_leaves(t, idx, n, bdesc, pa, esz);
                (cur, pa, idx) = (cur + (whole << shift), pa + (whole << shift), idx + n);
            } else {
                for _ in 0..n {
                    let d = t.get(idx);
                    if block && d & VALID == 0 {
                        written = true;
                        if t.install(idx, bdesc | geo.oa_bits(pa)).is_err() {
                            res = Err(Error::AlreadyMapped { iova: Iova(cur) });
                            break;
                        }
                    } else {
                        res = self.write_partial(t, idx, level, cur, pa, esz, w, &mut written);
                        if res.is_err() {
                            break;
                        }
                    }
                    (cur, pa, idx) = (cur + esz, pa + esz, idx + 1);
                }
            }
        }
        if tail > 0 && res.is_ok() {
            res = self.write_partial(t, idx, level, cur, pa, tail, w, &mut written);
            idx += 1;
        }
        if written {
            self.sync(t, first, idx.saturating_sub(first).max(1));
        }
        res
    }

    /// Pass 2 for a piece that goes below entry `t[idx]` (existing table, or one from the pool).
    #[allow(clippy::too_many_arguments)]
    fn write_partial(
        &self,
        t: Tbl,
        idx: usize,
        level: u32,
        iova: u64,
        pa: u64,
        len: u64,
        w: &mut Writer<'_>,
        written: &mut bool,
    ) -> Result<(), Error> {
        let mut d = t.get(idx);
        if d & VALID == 0 {
            let mem = self.take(w.pool, level + 1)?;
            // Link the (empty) table first, then fill it, as Linux's io-pgtable does: an empty
            // table translates nothing, exactly like the invalid slot it replaces, and linking
            // first means the compare-and-swap decides a race before any work is done.
            let link = desc::TYPE.encode(desc::TYPE_TABLE) | self.geo.oa_bits(mem.pa.0);
            match t.install(idx, link) {
                Ok(()) => {
                    *written = true;
                    return self.map_write(
                        self.view(mem.va, level + 1),
                        level + 1,
                        iova,
                        pa,
                        len,
                        w,
                    );
                }
                Err(winner) => {
                    // `mem` lost the race and was never linked; it goes back to its level's
                    // list (and from there to the page table's pool).
                    if let Some(list) = w.pool.get_mut(level as usize + 1) {
                        // SAFETY: a zeroed table of this allocator that nothing links to.
                        unsafe { list.push(mem, level + 1) };
                    }
                    d = winner;
                }
            }
        }
        if Geometry::is_table(d, level) {
            self.map_write(self.child(d, level + 1), level + 1, iova, pa, len, w)
        } else {
            // Pass 1 refused every valid leaf in the range: this one was mapped since by an
            // overlapping caller.
            Err(Error::AlreadyMapped { iova: Iova(iova) })
        }
    }

    // ---- unmap ----------------------------------------------------------------------------

    /// Unmaps every mapping inside `[iova, iova + size)` and returns the number of bytes that
    /// were mapped there (holes are skipped; 0 if nothing was mapped).
    ///
    /// `iova` and `size` must be multiples of the granule. If a block mapping straddles either
    /// end of the range the call fails with [`Error::PartialBlock`] and changes nothing (SPEC P2).
    /// The invalidations owed, and the tables that became unreachable, are added to `gather`;
    /// those tables are reused only after [`release`](Self::release) (SPEC P3). Tables are
    /// retired when the range covers their whole span; a table emptied by smaller unmaps stays in
    /// place and is reused by later maps. Safe to call from several CPUs at once for disjoint
    /// ranges: a table whose whole span is inside this range is one no correct caller is in.
    pub fn unmap(&self, iova: Iova, size: u64, gather: &mut Gather) -> Result<u64, Error> {
        self.check_iova_range(iova.0, size)?;
        if gather.owner != 0 && gather.owner != self.id {
            return Err(Error::ForeignGather);
        }
        if self.within_one_leaf_table(iova.0, size) {
            gather.owner = self.id;
            return self.unmap_in_leaf_table(iova.0, size, gather);
        }
        self.unmap_general(iova.0, size, gather)
    }

    /// `unmap` of a range that may span several tables or hold blocks (out of line, as
    /// `map_general`).
    #[inline(never)]
    fn unmap_general(&self, iova: u64, size: u64, gather: &mut Gather) -> Result<u64, Error> {
        let end = iova + size;
        // A block straddling the end must be found before anything is written. (One straddling
        // the start is met first on the way down, so `unmap_level` refuses it before writing.)
        let last = end - self.geo.granule.size();
        if let Some((_, level)) = self.lookup(last) {
            let bsz = 1u64 << self.geo.shift(level);
            let block = last & !(bsz - 1);
            if block + bsz > end {
                return Err(Error::PartialBlock {
                    block: Iova(block),
                    size: bsz,
                });
            }
        }
        gather.owner = self.id;
        let (root, start) = (self.root_tbl(), self.geo.start_level);
        self.unmap_level(root, start, iova, size, gather)
    }

    /// Fast path of `unmap` for a range inside one last-level table's span.
    #[inline]
    fn unmap_in_leaf_table(&self, iova: u64, size: u64, gather: &mut Gather) -> Result<u64, Error> {
        match self.descend(iova) {
            Descent::Leaf(t) => Ok(self.clear_pages(t, iova, size, gather)),
            Descent::Missing(..) => Ok(0),
            Descent::Block(level) => {
                // A block contains the whole range, which is smaller than the block.
                let bsz = 1u64 << self.geo.shift(level);
                Err(Error::PartialBlock {
                    block: Iova(iova & !(bsz - 1)),
                    size: bsz,
                })
            }
        }
    }

    /// Clears the valid page descriptors of `[iova, iova + size)` in leaf table `t`.
    #[inline(always)]
    fn clear_pages(&self, t: Tbl, iova: u64, size: u64, gather: &mut Gather) -> u64 {
        let first = self.geo.index(iova, LEAF_LEVEL);
        self.clear_leaves(
            t,
            first,
            (size >> self.geo.g) as usize,
            iova,
            LEAF_LEVEL,
            gather,
        )
    }

    /// Clears the `n` descriptors from `t[first]` (translating from `iova`; none is a table
    /// descriptor) and records one leaf range; returns the bytes that were mapped. Plain stores:
    /// the slots are the caller's own range (an overlapping map that links a table into a run of
    /// blocks meanwhile would see it stranded, never freed: see the type's documentation).
    #[inline(always)]
    fn clear_leaves(
        &self,
        t: Tbl,
        first: usize,
        n: usize,
        iova: u64,
        level: u32,
        gather: &mut Gather,
    ) -> u64 {
        // Read before the stores, which LLVM cannot tell apart from writes to `self`.
        let (shift, granule) = (self.geo.shift(level), self.geo.granule);
        // Scan first (count, then the first and last valid entry); then one run of stores over
        // [lo, hi] (zeroing a hole that is already zero is invisible to the walker).
        let Some(s) = t.run(first, n) else {
            return 0;
        };
        let cleared = count_valid(s);
        if cleared == 0 {
            return 0;
        }
        let lo = s.iter().position(|d| ld(d) & VALID != 0);
        let hi = s.iter().rposition(|d| ld(d) & VALID != 0);
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return 0;
        };
        for i in lo..=hi {
            t.set(first + i, 0);
        }
        let count = hi + 1 - lo;
        self.sync(t, first + lo, count);
        let span = (count as u64) << shift;
        gather.add(
            iova + ((lo as u64) << shift),
            span,
            true,
            Some(level as u8),
            granule,
        );
        cleared << shift
    }

    /// Unmaps `[iova, iova + size)` below table `t` at `level`: tables the range covers are
    /// unlinked (by compare-and-swap, so that each is retired once even under overlapping
    /// callers) and retired onto the gather; leaves are cleared.
    fn unmap_level(
        &self,
        t: Tbl,
        level: u32,
        iova: u64,
        size: u64,
        gather: &mut Gather,
    ) -> Result<u64, Error> {
        if level >= LEAF_LEVEL {
            return Ok(self.clear_pages(t, iova, size, gather));
        }
        let geo = &self.geo;
        let granule = geo.granule;
        let esz = 1u64 << geo.shift(level);
        let first = geo.index(iova, level);
        let (head, whole, tail) = self.split(level, iova, size);
        let (mut cur, mut idx) = (iova, first);
        let mut removed = 0;
        if head > 0 {
            // Start edge: nothing has been written yet if this fails.
            removed += self.unmap_partial(t, idx, level, cur, head, gather)?;
            (cur, idx) = (cur + head, idx + 1);
        }
        let mut written = false;
        if whole > 0 {
            let n = whole as usize;
            // No table descriptor (TYPE=0b11) in the run: clear it like a leaf table.
            let no_tables = t.run(idx, n).map(|s| or_tables(s) & 1 == 0);
            let todo = if no_tables == Some(true) {
                // `clear_leaves` syncs what it wrote; `written` stays false.
                removed += self.clear_leaves(t, idx, n, cur, level, gather);
                (cur, idx) = (cur + (whole << geo.shift(level)), idx + n);
                0
            } else {
                whole
            };
            // Runs of leaves become one gather range each.
            let mut run: Option<(u64, u64)> = None;
            for _ in 0..todo {
                let d = t.get(idx);
                // Compare-and-swap: a table goes to the one CPU that unlinks it, and a leaf is
                // not cleared over a table an overlapping map linked since.
                if d & VALID != 0 && t.clear_if(idx, d) {
                    written = true;
                    if Geometry::is_table(d, level) {
                        if let Some((a, e)) = run.take() {
                            gather.add(a, e - a, true, Some(level as u8), granule);
                        }
                        removed += self.retire(d, level + 1, gather);
                        gather.add(cur, esz, false, None, granule);
                    } else {
                        removed += esz;
                        run = match run {
                            Some((a, _)) => Some((a, cur + esz)),
                            None => Some((cur, cur + esz)),
                        };
                    }
                }
                (cur, idx) = (cur + esz, idx + 1);
            }
            if let Some((a, e)) = run {
                gather.add(a, e - a, true, Some(level as u8), granule);
            }
        }
        if written {
            self.sync(
                t,
                first + usize::from(head > 0),
                idx - first - usize::from(head > 0),
            );
        }
        if tail > 0 {
            // End edge: `unmap` checked it cannot be a partial block.
            removed += self.unmap_partial(t, idx, level, cur, tail, gather)?;
        }
        Ok(removed)
    }

    /// Unmaps a piece covering part of entry `t[idx]`: below a table, or refused for a block.
    fn unmap_partial(
        &self,
        t: Tbl,
        idx: usize,
        level: u32,
        iova: u64,
        len: u64,
        gather: &mut Gather,
    ) -> Result<u64, Error> {
        let d = t.get(idx);
        if d & VALID == 0 {
            Ok(0)
        } else if Geometry::is_table(d, level) {
            let child = self.child(d, level + 1);
            self.unmap_level(child, level + 1, iova, len, gather)
        } else {
            let esz = 1u64 << self.geo.shift(level);
            Err(Error::PartialBlock {
                block: Iova(iova & !(esz - 1)),
                size: esz,
            })
        }
    }

    /// Retires the table that descriptor `d` pointed to (its entries are at `level`) and every
    /// table below it onto the gather's free list; returns the bytes its leaves mapped.
    fn retire(&self, d: u64, level: u32, gather: &mut Gather) -> u64 {
        let top = TableMem {
            pa: PhysAddr(self.geo.desc_pa(d)),
            va: self.child(d, level).va,
        };
        let freed = &mut gather.freed;
        let mapped = self.drain_below(top, level, |mem, lvl| {
            // SAFETY: `mem` is a table of `lvl` that `drain_below` unlinked from a table we own
            // (by compare-and-swap, so only we retire it); no correct caller can reach it.
            unsafe { freed.push(mem, lvl) }
        });
        // SAFETY: `top` was just unlinked by the caller's compare-and-swap and its subtree
        // drained above.
        unsafe { freed.push(top, level) };
        mapped
    }

    /// Unlinks and visits, children before parents, every table below `top` (whose entries are
    /// at `level`), not `top` itself, with its level; returns the bytes mapped by all leaves
    /// below `top`. Each table descriptor is cleared by compare-and-swap before its table is
    /// visited: a buggy overlapping unmap with a stale pointer into the subtree may race for it,
    /// and exactly one of them gets it. Iterative, with a stack bounded by the four lookup levels
    /// (SPEC P5).
    fn drain_below(&self, top: TableMem, level: u32, mut sink: impl FnMut(TableMem, u32)) -> u64 {
        #[derive(Clone, Copy)]
        struct Frame {
            mem: TableMem,
            t: Tbl,
            level: u32,
            idx: usize,
        }
        let first = Frame {
            mem: top,
            t: self.view(top.va, level),
            level,
            idx: 0,
        };
        let mut stack = [Some(first), None, None, None];
        let mut depth = 1usize;
        let mut mapped = 0u64;
        while depth > 0 {
            let Some(Some(f)) = stack.get_mut(depth - 1) else {
                break;
            };
            let entries = self.geo.entries(f.level);
            let lvl = f.level;
            // Next valid descriptor, found by a slice scan (a leaf table is summed in one go).
            let next = if lvl >= LEAF_LEVEL {
                let pages = f.t.scan(0, entries, count_valid);
                mapped += pages.unwrap_or(0) << self.geo.g;
                None
            } else {
                let from = f.idx.min(entries);
                f.t.scan(from, entries - from, |s| {
                    s.iter().position(|d| ld(d) & VALID != 0)
                })
                .flatten()
                .map(|p| from + p)
            };
            let Some(i) = next else {
                let done = f.mem;
                depth -= 1;
                if depth > 0 {
                    sink(done, lvl);
                }
                continue;
            };
            let d = f.t.get(i);
            f.idx = i + 1;
            if d & VALID == 0 {
                // Cleared since the scan (by an overlapping caller): nothing to visit.
            } else if Geometry::is_table(d, lvl) {
                if !f.t.clear_if(i, d) {
                    // Another CPU unlinked it first, and retires it.
                    continue;
                }
                let child = self.child(d, lvl + 1);
                let mem = TableMem {
                    pa: PhysAddr(self.geo.desc_pa(d)),
                    va: child.va,
                };
                if let Some(slot) = stack.get_mut(depth) {
                    *slot = Some(Frame {
                        mem,
                        t: child,
                        level: lvl + 1,
                        idx: 0,
                    });
                    depth += 1;
                }
            } else {
                mapped += 1u64 << self.geo.shift(lvl);
            }
        }
        mapped
    }

    /// Hands the tables a gather holds to the page table's pool of retired tables, after the
    /// invalidation it describes completed; later maps reuse them. They go back to the allocator
    /// only through [`reclaim`](Self::reclaim) or when the page table is dropped: while `&self`
    /// callers may exist, a buggy one may still hold a pointer into them (see the type's
    /// documentation).
    ///
    /// The gather is left empty and can be reused. Fails with [`Error::ForeignGather`] (and
    /// leaves the gather untouched) if another page table filled it.
    ///
    /// # Safety
    ///
    /// Every range in `gather.ranges()` must have been invalidated, with completion observed
    /// (e.g. `CMD_TLBI_*` followed by a completed `CMD_SYNC`), on every SMMU that may have cached
    /// walks of this table. Otherwise the walker may still read a retired table that a later map
    /// has filled with translations for another range.
    pub unsafe fn release(&self, gather: &mut Gather) -> Result<(), Error> {
        if gather.owner != 0 && gather.owner != self.id {
            return Err(Error::ForeignGather);
        }
        if !gather.freed.is_empty() {
            let mut freed = core::mem::replace(&mut gather.freed, FreeList::new());
            // The caller guarantees the SMMU is done with these tables; the CPU side can only
            // reach them through a buggy caller's stale pointer, which the pool tolerates.
            self.recycle_list(&mut freed);
        }
        gather.clear_ranges();
        gather.owner = 0;
        Ok(())
    }

    /// Gives the pool of retired tables back to the allocator; returns how many tables it freed.
    ///
    /// Takes `&mut self`: no other CPU can then hold a pointer into a pooled table. Call it when
    /// the domain is quiet (e.g. after a large unmap, or under memory pressure); the pool is
    /// otherwise bounded by the domain's peak use and freed on drop.
    pub fn reclaim(&mut self) -> usize {
        let mut n = 0;
        for level in 0..LEVELS as u32 {
            let mut list = self.pool.drain(level, &self.alloc);
            while let Some((mem, _)) = list.pop(&self.alloc) {
                // SAFETY: a table of `self.alloc` (`table_bytes()`, as every table but the root),
                // in the pool once and never linked since its release; `&mut self` means no CPU
                // holds a pointer into it, and `release`'s caller invalidated the SMMU's walks.
                unsafe { self.alloc.free_table(mem, self.geo.table_bytes()) };
                n += 1;
            }
        }
        self.pool.drained();
        n
    }

    /// Tables waiting in the pool of retired tables for a later map (or for
    /// [`reclaim`](Self::reclaim)). A snapshot: other CPUs may be releasing or taking tables.
    pub fn pooled_tables(&self) -> usize {
        self.pool.len()
    }

    // ---- lookup -------------------------------------------------------------------------

    /// The valid leaf descriptor translating `iova`, and its level. Iterative.
    #[inline]
    fn lookup(&self, iova: u64) -> Option<(u64, u32)> {
        // A local copy: see `child_in`.
        let geo = self.geo;
        if iova >> geo.ias != 0 {
            return None;
        }
        let mut t = self.root_tbl();
        let mut level = geo.start_level;
        loop {
            let d = t.get(geo.index(iova, level));
            if d & VALID == 0 {
                return None;
            }
            if level >= LEAF_LEVEL {
                return (desc::TYPE.decode(d) == desc::TYPE_PAGE).then_some((d, level));
            }
            if Geometry::is_table(d, level) {
                level += 1;
                t = self.child_in(&geo, d, level);
            } else {
                return geo.leaf_ok(level).then_some((d, level));
            }
        }
    }

    /// The address `iova` translates to, or `None` if it is unmapped or out of range.
    #[inline]
    pub fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        let (d, level) = self.lookup(iova.0)?;
        let mask = (1u64 << self.geo.shift(level)) - 1;
        Some(PhysAddr((self.geo.desc_pa(d) & !mask) | (iova.0 & mask)))
    }

    /// Calls `f` for every table (before its contents) and every leaf, in IOVA order. Recursion
    /// depth is bounded by the four lookup levels.
    ///
    /// A walk overlaps every range: while other CPUs unmap, it may step into a table they retire
    /// and that a later map reuses, and then report that table's entries at the IOVAs it had
    /// before (memory-safe, but not a snapshot). Walk a quiet table for an exact picture.
    pub fn walk(&self, mut f: impl FnMut(&WalkEntry)) {
        let start = self.geo.start_level;
        let span = 1u64 << self.geo.ias;
        f(&WalkEntry::Table {
            iova: Iova(0),
            span,
            level: start as u8,
            table: self.root.pa,
            desc: 0,
        });
        self.walk_level(self.root_tbl(), start, 0, &mut f);
    }

    fn walk_level(&self, t: Tbl, level: u32, base: u64, f: &mut impl FnMut(&WalkEntry)) {
        let shift = self.geo.shift(level);
        for i in 0..self.geo.entries(level) {
            let d = t.get(i);
            if d & VALID == 0 {
                continue;
            }
            let iova = base + ((i as u64) << shift);
            if Geometry::is_table(d, level) {
                f(&WalkEntry::Table {
                    iova: Iova(iova),
                    span: 1u64 << shift,
                    level: (level + 1) as u8,
                    table: PhysAddr(self.geo.desc_pa(d)),
                    desc: d,
                });
                self.walk_level(self.child(d, level + 1), level + 1, iova, f);
            } else if level >= LEAF_LEVEL || self.geo.leaf_ok(level) {
                let mask = (1u64 << shift) - 1;
                f(&WalkEntry::Leaf {
                    iova: Iova(iova),
                    pa: PhysAddr(self.geo.desc_pa(d) & !mask),
                    size: 1u64 << shift,
                    level: level as u8,
                    desc: d,
                });
            }
        }
    }
}

#[cfg(test)]
impl<A: TableAllocator> PageTable<A> {
    /// The deliberately broken `release` of a design without the pool: the gather's tables go
    /// straight back to the allocator while other CPUs may still walk them. Only the tests that
    /// must catch it (a loom model, a threaded test) call it.
    pub(crate) unsafe fn release_to_allocator(&self, gather: &mut Gather) {
        while let Some((mem, _)) = gather.freed.pop(&self.alloc) {
            // SAFETY: not safe in general, which is the point; the tests' allocators poison
            // freed tables instead of handing the memory back.
            unsafe { self.alloc.free_table(mem, self.geo.table_bytes()) };
        }
        gather.clear_ranges();
        gather.owner = 0;
    }
}

impl<A: TableAllocator> Drop for PageTable<A> {
    fn drop(&mut self) {
        self.reclaim();
        let alloc = &self.alloc;
        let tbytes = self.geo.table_bytes();
        self.drain_below(self.root, self.geo.start_level, |mem, _| {
            // SAFETY: every table below the root is visited once (a table is linked in one place
            // only, and pooled tables are never linked); the table is being dropped, so nothing
            // will reach these pages again (the driver detached it, per `PageTable` docs).
            unsafe { alloc.free_table(mem, tbytes) }
        });
        // SAFETY: the root was allocated with `root_bytes()` in `new` and is freed once, here.
        unsafe { self.alloc.free_table(self.root, self.geo.root_bytes()) };
    }
}

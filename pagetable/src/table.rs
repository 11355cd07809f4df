//! The page table: map, unmap, lookup, walk.

use core::ptr::NonNull;
use core::sync::atomic::AtomicUsize;

use crate::alloc::{TableAllocator, TableMem};
use crate::desc;
use crate::format::{Geometry, LEAF_LEVEL};
use crate::gather::{FreeList, Gather};
use crate::sync::{slot, slots, Desc, Ordering, Walkers, EXCLUSIVE_RMWS};
use crate::{Config, Error, Iova, PhysAddr, Prot, Stage, Stage1Config, Stage2Config, WalkAttrs};

/// Source of page-table identities, used to tie a [`Gather`] to the table that filled it.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

const VALID: u64 = desc::VALID.mask();

/// A view of one live translation table: its CPU address and `entries - 1`.
///
/// Invariant (upheld by every constructor in this module): `va` is the CPU address of a table
/// allocation, currently owned by the page table through which the view was made, that holds at
/// least `mask + 1` descriptors; a view is used only while that page table is borrowed and the
/// table can no longer be freed under it: it is reachable and the caller walks with the
/// [`Walkers`] guard held (tables are unlinked only under the exclusive guard), or it is
/// unpublished and owned by the caller, or the page table is borrowed mutably.
///
/// Every access is an atomic access of one descriptor ([`Desc`]): several CPUs may map and unmap
/// disjoint ranges of one table at once, and even overlapping (buggy) callers race only on
/// atomics, never into undefined behaviour. The SMMU only reads descriptors (AF is preset and DBM
/// never set, so hardware never updates them).
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

    /// Whether the `n` descriptors from `first` are all invalid.
    #[inline(always)]
    fn run_is_empty(self, first: usize, n: usize) -> bool {
        self.scan(first, n, |s| {
            s.iter().fold(0, |a, d| a | ld(d)) & VALID == 0
        }) == Some(true)
    }

    /// Stores a leaf (or zero) into descriptor `i`: one single-copy-atomic 64-bit store, as the
    /// walker may observe it at any time. Only for slots no other caller may turn into a table
    /// descriptor (pages, and slots owned exclusively).
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

    /// Clears leaf descriptor `i` if it still holds `old`; a slot another caller turned into a
    /// table meanwhile is left alone (replacing it would leak that table).
    #[inline(always)]
    fn clear_if(self, i: usize, old: u64) -> bool {
        self.slot(i)
            .compare_exchange(old, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// A relaxed load, for scans of slots that belong to the caller's own range (ordering comes from
/// the acquire on the way down to the table).
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
    /// The tables pass 1 preallocated.
    pool: &'p mut FreeList,
    /// Whether this map holds the exclusive walk guard (no other CPU is in the tree).
    alone: bool,
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
/// device. Intermediate tables are installed with a compare-and-swap on their descriptor (the
/// loser of a race descends into the winner's table and gives its own back), so two CPUs that
/// need the same new table never both link one. Tables are only unlinked by an unmap that is the
/// only walker at that moment (it *tries* to be, it never waits): under contention a large unmap
/// clears the leaves and leaves emptied tables linked for later maps to reuse, so memory stays
/// bounded by what the domain has ever mapped.
///
/// Overlapping concurrent calls are the caller's bug: they may leave part of a range mapped or
/// fail with [`Error::AlreadyMapped`], but they never touch translations outside the ranges
/// involved, never leak a table and are never undefined behaviour (every access is atomic).
///
/// Dropping the table frees every table immediately: detach it from the SMMU and invalidate
/// first.
pub struct PageTable<A: TableAllocator> {
    alloc: A,
    geo: Geometry,
    root: TableMem,
    id: usize,
    walkers: Walkers,
}

// SAFETY: a `PageTable` exclusively owns its table memory (raw pointers only because it lives
// outside Rust's allocator); moving it to another thread moves that ownership, like a `Box`.
unsafe impl<A: TableAllocator + Send> Send for PageTable<A> {}
// SAFETY: all CPU-side accesses to table memory through `&self` are atomic descriptor accesses
// (`Tbl`), so shared references never cause a data race; a table is unlinked only by an unmap
// holding the exclusive `Walkers` guard, so no other `&self` caller can be inside it then, and it
// is freed only after that (by `release`, from the gather, or by `Drop`). The allocator is
// called from several CPUs at once, hence `A: Sync`.
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
            walkers: Walkers::new(),
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

    /// Frees every page on a list that was never published to the walker.
    fn free_unpublished(&self, list: &mut FreeList) {
        while let Some((mem, size)) = list.pop(&self.alloc) {
            // SAFETY: the list only holds fresh allocations of `size` bytes that were never linked
            // into a table, so nothing else can reach them.
            unsafe { self.alloc.free_table(mem, size) };
        }
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

    /// Takes a preallocated table from `pool` (zeroing the list words and making it visible),
    /// or allocates one if the pool ran dry. Pass 1 of `map` counts an upper bound of the tables
    /// pass 2 links (concurrent maps can only install tables it then uses instead, and no table
    /// goes away while the walk guard is held), so the fallback is belt and braces.
    fn take(&self, pool: &mut FreeList, level: u32) -> Result<TableMem, Error> {
        let Some((mem, size)) = pool.pop(&self.alloc) else {
            return self.alloc_checked(self.geo.table_bytes());
        };
        let t = self.view(mem.va, level);
        t.set(0, 0);
        t.set(1, 0);
        t.set(2, 0);
        if !A::COHERENT {
            self.alloc.sync(mem.va, size);
        }
        Ok(mem)
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
    /// [`Error::OutOfMemory`] changes nothing either. (Both hold against every caller that does
    /// not map an overlapping range at the same time; one that does may see a part of the range
    /// mapped and the rest refused.) A table left empty by an earlier partial unmap is reused
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
            let _walk = self.walkers.shared();
            return self.map_in_leaf_table(iova.0, pa.0, size, attrs);
        }
        // A walk guard is held across both passes, so that no table the count relies on can be
        // unlinked meanwhile. A range that may hold many blocks tries to be the only walker:
        // then runs of blocks are plain stores rather than one compare-and-swap each (which
        // costs ~5 ns apiece on x86 and made a 512 MiB map eight times slower), as long as
        // that saves more than claiming the exclusive guard costs.
        let exclusive = (size >> self.geo.shift(LEAF_LEVEL - 1) > EXCLUSIVE_RMWS)
            .then(|| self.walkers.try_exclusive())
            .flatten();
        let _walk = exclusive.is_none().then(|| self.walkers.shared());
        let root = self.root_tbl();
        let start = self.geo.start_level;
        // Pass 1: refuse overlaps and count the tables to create; nothing is written.
        let need = self.map_check(root, start, iova.0, pa.0, size)?;
        let mut pool = FreeList::new();
        let tbytes = self.geo.table_bytes();
        for _ in 0..need {
            match self.alloc_checked(tbytes) {
                // SAFETY: a fresh allocation of `tbytes` (>= 4096) bytes, reachable from nowhere.
                Ok(mem) => unsafe { pool.push(mem, tbytes) },
                Err(e) => {
                    self.free_unpublished(&mut pool);
                    return Err(e);
                }
            }
        }
        // Pass 2: write. Fails only if an overlapping caller mapped part of the range since.
        let mut w = Writer {
            attrs,
            pool: &mut pool,
            alone: exclusive.is_some(),
        };
        let r = self.map_write(root, start, iova.0, pa.0, size, &mut w);
        self.free_unpublished(&mut pool);
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
        let geo = &self.geo;
        let mut t = self.root_tbl();
        let mut level = geo.start_level;
        // A lost install race leaves the slot valid, and under the walk guard a table
        // descriptor stays: more than one loss per level means someone maps and unmaps blocks
        // over this very range, which is an overlap.
        let mut races = 0;
        while level < LEAF_LEVEL {
            let idx = geo.index(iova, level);
            let d = t.get(idx);
            if d & VALID == 0 {
                if self.map_fresh_chain(t, idx, level, iova, pa, size, attrs)? {
                    return Ok(());
                }
                races += 1;
                if races > LEAF_LEVEL {
                    return Err(Error::AlreadyMapped { iova: Iova(iova) });
                }
                continue;
            }
            if !Geometry::is_table(d, level) {
                return Err(Error::AlreadyMapped { iova: Iova(iova) });
            }
            level += 1;
            t = self.child(d, level);
        }
        let first = geo.index(iova, LEAF_LEVEL);
        let n = (size >> geo.g) as usize;
        self.check_pages(t, first, n, iova)?;
        self.write_pages(t, first, n, pa, attrs);
        Ok(())
    }

    /// Allocates the tables from `level + 1` down to the leaf level for a range inside one leaf
    /// table, fills them, then publishes the chain at `t[idx]` with one compare-and-swap.
    /// `Ok(false)`: another CPU filled `t[idx]` first; the chain was freed, never seen.
    #[allow(clippy::too_many_arguments)]
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
        for slot in chain.iter_mut().take(count) {
            match self.alloc_checked(tbytes) {
                Ok(mem) => *slot = Some(mem),
                Err(e) => {
                    for mem in chain.iter().flatten() {
                        // SAFETY: fresh allocations of `tbytes`, never linked anywhere.
                        unsafe { self.alloc.free_table(*mem, tbytes) };
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
            for mem in chain.iter().flatten() {
                // SAFETY: the chain lost the race, so it was never linked: fresh allocations of
                // `tbytes` that nothing else can reach.
                unsafe { self.alloc.free_table(*mem, tbytes) };
            }
            return Ok(false);
        }
        self.sync(t, idx, 1);
        Ok(true)
    }

    /// Refuses if any of the `n` descriptors from `t[first]` (translating from `iova`) is valid.
    #[inline(always)]
    fn check_pages(&self, t: Tbl, first: usize, n: usize, iova: u64) -> Result<(), Error> {
        let busy = t.scan(first, n, |s| {
            if s.iter().fold(0, |a, d| a | ld(d)) & VALID == 0 {
                None
            } else {
                s.iter().position(|d| ld(d) & VALID != 0)
            }
        });
        match busy {
            Some(None) => Ok(()),
            Some(Some(i)) => Err(Error::AlreadyMapped {
                iova: Iova(iova + ((i as u64) << self.geo.g)),
            }),
            // Out of bounds cannot happen (the range lies in one table); refuse rather than guess.
            None => Err(Error::OutOfRange),
        }
    }

    /// Writes `n` page descriptors from `t[first]` for `pa..`, then one sync.
    #[inline(always)]
    fn write_pages(&self, t: Tbl, first: usize, n: usize, pa: u64, attrs: u64) {
        let geo = &self.geo;
        let base = attrs | desc::TYPE.encode(desc::TYPE_PAGE);
        self.fill_leaves(t, first, n, base, pa, 1u64 << geo.g);
        self.sync(t, first, n);
    }

    /// Installs the `n` block descriptors `base | OA(pa + i * step)` from `t[first]` (found
    /// empty by the caller). With other walkers about (`alone` false), each goes in only over an
    /// invalid slot: a block must never replace a table another CPU just linked, as that table
    /// would leak. Fails at the first slot found taken, with that slot's IOVA offset.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn install_blocks(
        &self,
        t: Tbl,
        first: usize,
        n: usize,
        base: u64,
        pa: u64,
        step: u64,
        alone: bool,
    ) -> Result<(), u64> {
        if alone {
            self.fill_leaves(t, first, n, base, pa, step);
            return Ok(());
        }
        for i in 0..n {
            let off = (i as u64) * step;
            t.install(first + i, base | self.geo.oa_bits(pa + off))
                .map_err(|_| off)?;
        }
        Ok(())
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

    /// Pass 1 of `map` below table `t` at `level`: overlap check and table count.
    fn map_check(&self, t: Tbl, level: u32, iova: u64, pa: u64, size: u64) -> Result<usize, Error> {
        let geo = &self.geo;
        let shift = geo.shift(level);
        let mut idx = geo.index(iova, level);
        if level >= LEAF_LEVEL {
            return self
                .check_pages(t, idx, (size >> shift) as usize, iova)
                .map(|()| 0);
        }
        let esz = 1u64 << shift;
        let (head, whole, tail) = self.split(level, iova, size);
        let (mut cur, mut pa, mut need) = (iova, pa, 0);
        if head > 0 {
            need += self.check_partial(t, idx, level, cur, pa, head)?;
            (cur, pa, idx) = (cur + head, pa + head, idx + 1);
        }
        if whole > 0 {
            let block = geo.leaf_ok(level) && pa & (esz - 1) == 0;
            // pa advances by whole entries, so every entry of the run needs the same below it.
            let per_new = if block {
                0
            } else {
                1 + geo.tables_needed(level + 1, cur, pa, esz)
            };
            let n = whole as usize;
            if t.run_is_empty(idx, n) {
                // Nothing mapped in the run (the common case): no per-entry work.
                need += per_new * n;
                (cur, pa, idx) = (cur + (whole << shift), pa + (whole << shift), idx + n);
            } else {
                for _ in 0..n {
                    let d = t.get(idx);
                    if d & VALID == 0 {
                        need += per_new;
                    } else if Geometry::is_table(d, level) {
                        need +=
                            self.map_check(self.child(d, level + 1), level + 1, cur, pa, esz)?;
                    } else {
                        return Err(Error::AlreadyMapped { iova: Iova(cur) });
                    }
                    (cur, pa, idx) = (cur + esz, pa + esz, idx + 1);
                }
            }
        }
        if tail > 0 {
            need += self.check_partial(t, idx, level, cur, pa, tail)?;
        }
        Ok(need)
    }

    /// Pass 1 for a piece covering part of the entry `t[idx]`.
    fn check_partial(
        &self,
        t: Tbl,
        idx: usize,
        level: u32,
        iova: u64,
        pa: u64,
        len: u64,
    ) -> Result<usize, Error> {
        let d = t.get(idx);
        if d & VALID == 0 {
            Ok(1 + self.geo.tables_needed(level + 1, iova, pa, len))
        } else if Geometry::is_table(d, level) {
            self.map_check(self.child(d, level + 1), level + 1, iova, pa, len)
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
                // A run of blocks over empty entries: one tight loop.
                written = true;
                if let Err(off) = self.install_blocks(t, idx, n, bdesc, pa, esz, w.alone) {
                    res = Err(Error::AlreadyMapped {
                        iova: Iova(cur + off),
                    });
                }
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
                    // SAFETY: `mem` lost the race and was never linked; it goes back to the pool
                    // (and is freed with it).
                    unsafe { w.pool.push(mem, self.geo.table_bytes()) };
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
    /// those tables are freed only by [`release`](Self::release) (SPEC P3). Tables are retired
    /// when the range covers their whole span and no other CPU is walking this page table at
    /// that moment; a table emptied by smaller unmaps, or under contention, stays in place and
    /// is reused by later maps. Safe to call from several CPUs at once for disjoint ranges.
    pub fn unmap(&self, iova: Iova, size: u64, gather: &mut Gather) -> Result<u64, Error> {
        self.check_iova_range(iova.0, size)?;
        if gather.owner != 0 && gather.owner != self.id {
            return Err(Error::ForeignGather);
        }
        if self.within_one_leaf_table(iova.0, size) {
            let _walk = self.walkers.shared();
            gather.owner = self.id;
            return self.unmap_in_leaf_table(iova.0, size, gather);
        }
        // Unlinking a table needs every other walker out (one could be inside it); an unmap
        // never waits for that, it only takes the chance when it comes.
        let exclusive = (size >> self.geo.shift(LEAF_LEVEL - 1) != 0)
            .then(|| self.walkers.try_exclusive())
            .flatten();
        let _walk = exclusive.is_none().then(|| self.walkers.shared());
        let retire = exclusive.is_some();
        let end = iova.0 + size;
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
        self.unmap_level(root, start, iova.0, size, gather, retire)
    }

    /// Fast path of `unmap` for a range inside one last-level table's span.
    #[inline]
    fn unmap_in_leaf_table(&self, iova: u64, size: u64, gather: &mut Gather) -> Result<u64, Error> {
        let geo = &self.geo;
        let mut t = self.root_tbl();
        let mut level = geo.start_level;
        while level < LEAF_LEVEL {
            let d = t.get(geo.index(iova, level));
            if d & VALID == 0 {
                return Ok(0);
            }
            if !Geometry::is_table(d, level) {
                // A block contains the whole range, which is smaller than the block.
                let bsz = 1u64 << geo.shift(level);
                return Err(Error::PartialBlock {
                    block: Iova(iova & !(bsz - 1)),
                    size: bsz,
                });
            }
            level += 1;
            t = self.child(d, level);
        }
        Ok(self.clear_pages(t, iova, size, gather))
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
            false,
        )
    }

    /// Clears the `n` descriptors from `t[first]` (translating from `iova`; none is a table
    /// descriptor) and records one leaf range; returns the bytes that were mapped. `alone`: the
    /// caller holds the exclusive walk guard (blocks are cleared with plain stores, not CAS).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn clear_leaves(
        &self,
        t: Tbl,
        first: usize,
        n: usize,
        iova: u64,
        level: u32,
        gather: &mut Gather,
        alone: bool,
    ) -> u64 {
        let shift = self.geo.shift(level);
        // Vectorisable scan first; then one run of stores over [lo, hi] (zeroing a hole that is
        // already zero is invisible to the walker).
        let found = t.scan(first, n, |s| {
            let cleared: u64 = s.iter().map(|d| ld(d) & VALID).sum();
            let lo = s.iter().position(|d| ld(d) & VALID != 0)?;
            let hi = s.iter().rposition(|d| ld(d) & VALID != 0)?;
            Some((lo, hi, cleared))
        });
        let Some(Some((lo, hi, cleared))) = found else {
            return 0;
        };
        if level >= LEAF_LEVEL || alone {
            for i in lo..=hi {
                t.set(first + i, 0);
            }
        } else {
            // Blocks: only clear what is still the leaf we saw (see `Tbl::clear_if`).
            for i in lo..=hi {
                let d = t.get(first + i);
                if d & VALID != 0 && !Geometry::is_table(d, level) {
                    t.clear_if(first + i, d);
                }
            }
        }
        let count = hi + 1 - lo;
        self.sync(t, first + lo, count);
        let span = (count as u64) << shift;
        gather.add(
            iova + ((lo as u64) << shift),
            span,
            true,
            Some(level as u8),
            self.geo.granule,
        );
        cleared << shift
    }

    /// Unmaps `[iova, iova + size)` below table `t` at `level`. `retire`: this caller holds the
    /// exclusive walk guard, so tables the range covers are unlinked and retired; otherwise
    /// only leaves are cleared and covered tables are descended into.
    fn unmap_level(
        &self,
        t: Tbl,
        level: u32,
        iova: u64,
        size: u64,
        gather: &mut Gather,
        retire: bool,
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
            removed += self.unmap_partial(t, idx, level, cur, head, gather, retire)?;
            (cur, idx) = (cur + head, idx + 1);
        }
        let mut written = false;
        if whole > 0 {
            let n = whole as usize;
            // No table descriptor (TYPE=0b11) in the run: clear it like a leaf table.
            let no_tables = t.scan(idx, n, |s| {
                s.iter().fold(0, |a, d| {
                    let d = ld(d);
                    a | (d & (d >> 1))
                }) & 1
                    == 0
            });
            let todo = if no_tables == Some(true) {
                // `clear_leaves` syncs what it wrote; `written` stays false.
                removed += self.clear_leaves(t, idx, n, cur, level, gather, retire);
                (cur, idx) = (cur + (whole << geo.shift(level)), idx + n);
                0
            } else {
                whole
            };
            // Runs of leaves become one gather range each.
            let mut run: Option<(u64, u64)> = None;
            for _ in 0..todo {
                let d = t.get(idx);
                if d & VALID != 0 && Geometry::is_table(d, level) && !retire {
                    // Another CPU may be walking through this table: keep it, empty it.
                    if let Some((a, e)) = run.take() {
                        gather.add(a, e - a, true, Some(level as u8), granule);
                    }
                    removed += self.unmap_level(
                        self.child(d, level + 1),
                        level + 1,
                        cur,
                        esz,
                        gather,
                        false,
                    )?;
                } else if d & VALID != 0 && (retire || t.clear_if(idx, d)) {
                    if retire {
                        // The only walker: a plain store suffices.
                        t.set(idx, 0);
                    }
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
            removed += self.unmap_partial(t, idx, level, cur, tail, gather, retire)?;
        }
        Ok(removed)
    }

    /// Unmaps a piece covering part of entry `t[idx]`: below a table, or refused for a block.
    #[allow(clippy::too_many_arguments)]
    fn unmap_partial(
        &self,
        t: Tbl,
        idx: usize,
        level: u32,
        iova: u64,
        len: u64,
        gather: &mut Gather,
        retire: bool,
    ) -> Result<u64, Error> {
        let d = t.get(idx);
        if d & VALID == 0 {
            Ok(0)
        } else if Geometry::is_table(d, level) {
            let child = self.child(d, level + 1);
            self.unmap_level(child, level + 1, iova, len, gather, retire)
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
        let tbytes = self.geo.table_bytes();
        let freed = &mut gather.freed;
        let mapped = self.drain_below(top, level, |mem| {
            // SAFETY: `mem` is a table below `top`, which was just unlinked: the CPU side can no
            // longer reach it, and each table is drained exactly once.
            unsafe { freed.push(mem, tbytes) }
        });
        // SAFETY: `top` was just unlinked by the caller and its subtree fully scanned above.
        unsafe { freed.push(top, tbytes) };
        mapped
    }

    /// Visits, children before parents, every table below `top` (whose entries are at `level`),
    /// not `top` itself; returns the bytes mapped by all leaves below `top`. Iterative, with a
    /// stack bounded by the four lookup levels (SPEC P5).
    fn drain_below(&self, top: TableMem, level: u32, mut sink: impl FnMut(TableMem)) -> u64 {
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
                let pages =
                    f.t.scan(0, entries, |s| s.iter().map(|d| ld(d) & VALID).sum::<u64>());
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
                    sink(done);
                }
                continue;
            };
            let d = f.t.get(i);
            f.idx = i + 1;
            if Geometry::is_table(d, lvl) {
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

    /// Frees the tables a gather holds, after the invalidation it describes completed.
    ///
    /// The gather is left empty and can be reused. Fails with [`Error::ForeignGather`] (and
    /// leaves the gather untouched) if another page table filled it.
    ///
    /// # Safety
    ///
    /// Every range in `gather.ranges()` must have been invalidated, with completion observed
    /// (e.g. `CMD_TLBI_*` followed by a completed `CMD_SYNC`), on every SMMU that may have cached
    /// walks of this table. Otherwise the walker may still read a freed page that the allocator
    /// has handed to someone else.
    pub unsafe fn release(&self, gather: &mut Gather) -> Result<(), Error> {
        if gather.owner != 0 && gather.owner != self.id {
            return Err(Error::ForeignGather);
        }
        while let Some((mem, size)) = gather.freed.pop(&self.alloc) {
            // SAFETY: the page was allocated by `self.alloc` with `size` bytes, unlinked by
            // `unmap` and pushed once; the caller guarantees the walker is done with it.
            unsafe { self.alloc.free_table(mem, size) };
        }
        gather.clear_ranges();
        gather.owner = 0;
        Ok(())
    }

    // ---- lookup -------------------------------------------------------------------------

    /// The valid leaf descriptor translating `iova`, and its level. Iterative.
    #[inline]
    fn lookup(&self, iova: u64) -> Option<(u64, u32)> {
        if iova >> self.geo.ias != 0 {
            return None;
        }
        let mut t = self.root_tbl();
        let mut level = self.geo.start_level;
        loop {
            let d = t.get(self.geo.index(iova, level));
            if d & VALID == 0 {
                return None;
            }
            if level >= LEAF_LEVEL {
                return (desc::TYPE.decode(d) == desc::TYPE_PAGE).then_some((d, level));
            }
            if Geometry::is_table(d, level) {
                level += 1;
                t = self.child(d, level);
            } else {
                return self.geo.leaf_ok(level).then_some((d, level));
            }
        }
    }

    /// The address `iova` translates to, or `None` if it is unmapped or out of range.
    #[inline]
    pub fn iova_to_phys(&self, iova: Iova) -> Option<PhysAddr> {
        let _walk = self.walkers.shared();
        let (d, level) = self.lookup(iova.0)?;
        let mask = (1u64 << self.geo.shift(level)) - 1;
        Some(PhysAddr((self.geo.desc_pa(d) & !mask) | (iova.0 & mask)))
    }

    /// Calls `f` for every table (before its contents) and every leaf, in IOVA order. Recursion
    /// depth is bounded by the four lookup levels.
    ///
    /// The walk holds the page table's shared walk guard throughout: `f` must not call this
    /// table's `unmap` (it would find no chance to retire tables, which is harmless, but a
    /// long-running `f` delays every other CPU's table retirement).
    pub fn walk(&self, mut f: impl FnMut(&WalkEntry)) {
        let _walk = self.walkers.shared();
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

impl<A: TableAllocator> Drop for PageTable<A> {
    fn drop(&mut self) {
        let alloc = &self.alloc;
        let tbytes = self.geo.table_bytes();
        self.drain_below(self.root, self.geo.start_level, |mem| {
            // SAFETY: every table below the root is visited once; the table is being dropped, so
            // nothing will reach these pages again (the driver detached it, per `PageTable` docs).
            unsafe { alloc.free_table(mem, tbytes) }
        });
        // SAFETY: the root was allocated with `root_bytes()` in `new` and is freed once, here.
        unsafe { self.alloc.free_table(self.root, self.geo.root_bytes()) };
    }
}

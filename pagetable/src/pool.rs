//! Where unlinked tables wait: the gather's private [`FreeList`], and the page table's shared,
//! lock-free [`Pool`] of retired tables that later maps take first.
//!
//! # Why tables are pooled rather than freed
//!
//! `map`, `unmap` and `iova_to_phys` take `&self` and hold no guard: a CPU follows table
//! descriptors with nothing but atomic loads. Correct callers own disjoint IOVA ranges, and a
//! table is unlinked only by an unmap whose range covers the table's whole span, so no correct
//! caller is inside it. A *buggy* caller, mapping or looking up a range another CPU is unmapping
//! (which safe code can do), may still hold a pointer into it. If that table went back to the
//! allocator, the buggy caller would read and write memory that may belong to someone else: Rust
//! undefined behaviour from safe code. So a table unlinked through `&self` is never freed while
//! `&self` callers may exist. After the caller's invalidation (TLBI + CMD_SYNC, SPEC P3: until
//! then the SMMU's walk caches may still point at it) [`PageTable::release`](crate::PageTable::release)
//! moves it into this pool, and later maps take tables from the pool before asking the
//! allocator. The pool goes back to the allocator only through `&mut` (`reclaim`, `Drop`), when
//! no other CPU can hold a pointer. Memory stays bounded by the domain's peak use.
//!
//! A stale pointer from a buggy caller then reads or writes memory the page table still owns,
//! which at worst gives wrong translations within this domain, never undefined behaviour. Three
//! rules keep that true:
//!
//! * **Levels are kept.** A table lives at one lookup level for its whole life in the page table
//!   (one pool per level). A stale walker that follows a descriptor of a reused table therefore
//!   always interprets it at the level it was written for: a level-3 page descriptor (TYPE=0b11,
//!   the same bits as a Table descriptor, DDI 0487 D8.3.1) is never read as a pointer by a walker
//!   at level 0–2.
//! * **Links are checked.** Pool and list links are threaded through the tables' first three
//!   descriptor slots, where a stale writer may overwrite them. Every value this crate writes into
//!   a table slot is either 0 or a valid descriptor (bit 0 set, D8.3.1), while link words are all
//!   even and non-zero except a final 0 address, and the third word checks the first two. A link
//!   that fails the check ends the list: the tables behind it are stranded (leaked), never
//!   followed. To a walker, link words are invalid descriptors (bit 0 clear).
//! * **Pops are single-consumer.** The pool is a Treiber stack whose head holds the top table's
//!   address and a *popping* bit. Pushes (from any CPU, in `release`) only compare-and-swap the
//!   head; a pop first claims the popping bit, so only one CPU at a time reads a top node's link.
//!   Without concurrent pops, a node cannot be popped and pushed again under a popper's feet,
//!   which is the ABA problem of lock-free stacks: no tag is needed. A pop that finds another in
//!   progress retries a few times, then lets the caller allocate (a map never waits on another
//!   CPU, so an interrupt handler that maps cannot deadlock against the CPU it interrupted).

use core::ptr::NonNull;

use crate::alloc::{TableAllocator, TableMem};
use crate::sync::{slot, Desc, Ordering};
use crate::PhysAddr;

/// Lookup levels, 0..=3 (index of the per-level pools).
pub(crate) const LEVELS: usize = 4;

/// Bits 48..63 of link word 1: no table address (below 2^52) or descriptor has them this way.
const MARK: u64 = 0xA5C3 << 48;
const MARK_MASK: u64 = 0xFFFF << 48;
/// Link word 1: there is a next node (its address is word 0).
const HAS_NEXT: u64 = 1 << 4;
/// Link word 1, bits 1..=2: the next node's lookup level.
const LEVEL_SHIFT: u32 = 1;
const LEVEL_MASK: u64 = 3 << LEVEL_SHIFT;
/// Link word 2 is word 0 ^ word 1 ^ CHECK (even, and non-zero because word 1's mark is).
const CHECK: u64 = 0x0000_0000_0000_0ff0;

/// What a node's link words say.
enum Link {
    End,
    Next(PhysAddr, u32),
    /// Overwritten by a stale writer: the rest of the list is abandoned.
    Broken,
}

/// Writes `va`'s link words: the next node, if any, and its level.
///
/// # Safety
///
/// `va` is a table allocation of at least three descriptor slots, owned by the caller (it may
/// still be reachable by a stale pointer of a buggy caller, which is why every access is atomic).
#[inline]
unsafe fn write_link(va: NonNull<u64>, next: Option<(PhysAddr, u32)>) {
    let (w0, w1) = match next {
        Some((pa, level)) => (
            pa.0,
            MARK | HAS_NEXT | (u64::from(level) << LEVEL_SHIFT) & LEVEL_MASK,
        ),
        None => (0, MARK),
    };
    // SAFETY: three slots of an allocation the caller owns.
    unsafe {
        slot(va, 0).store(w0, Ordering::Relaxed);
        slot(va, 1).store(w1, Ordering::Relaxed);
        slot(va, 2).store(w0 ^ w1 ^ CHECK, Ordering::Relaxed);
    }
}

/// Reads and checks `va`'s link words.
///
/// # Safety
///
/// `va` is a live table allocation of at least three descriptor slots.
#[inline]
unsafe fn read_link(va: NonNull<u64>) -> Link {
    // SAFETY: three slots of a live allocation (caller).
    let (w0, w1, w2) = unsafe {
        (
            slot(va, 0).load(Ordering::Relaxed),
            slot(va, 1).load(Ordering::Relaxed),
            slot(va, 2).load(Ordering::Relaxed),
        )
    };
    let sound = w1 & MARK_MASK == MARK
        && w1 & !(MARK_MASK | HAS_NEXT | LEVEL_MASK) == 0
        && w2 == w0 ^ w1 ^ CHECK
        // A table address: 4 KiB aligned (tables are at least that), below 2^52 (OAS).
        && w0 & 0xfff == 0
        && w0 >> 52 == 0;
    if !sound {
        Link::Broken
    } else if w1 & HAS_NEXT == 0 {
        if w0 == 0 {
            Link::End
        } else {
            Link::Broken
        }
    } else {
        Link::Next(PhysAddr(w0), ((w1 & LEVEL_MASK) >> LEVEL_SHIFT) as u32)
    }
}

/// An intrusive, allocation-free list of tables, threaded through the tables themselves (see
/// the module documentation for the link format), each with its lookup level. Owned by one
/// CPU at a time: a gather's retired tables, or a map's preallocated ones.
pub(crate) struct FreeList {
    head: Option<(TableMem, u32)>,
    len: usize,
}

impl FreeList {
    pub(crate) const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Threads `mem` (a table of `level`) onto the list.
    ///
    /// # Safety
    ///
    /// `mem` is a live table allocation (at least three descriptor slots, 8-aligned) of the
    /// allocator the list is popped with, no longer reachable from the tree and owned by the
    /// caller, who hands it to the list.
    pub(crate) unsafe fn push(&mut self, mem: TableMem, level: u32) {
        let next = self.head.map(|(m, l)| (m.pa, l));
        // SAFETY: the caller hands us `mem`, which has room for the link.
        unsafe { write_link(mem.va, next) };
        self.head = Some((mem, level));
        self.len += 1;
    }

    /// Unthreads one table and its level. Its first three words still hold link data. `alloc`
    /// must be the allocator the tables came from (it turns the next node's address into a
    /// pointer).
    pub(crate) fn pop(&mut self, alloc: &impl TableAllocator) -> Option<(TableMem, u32)> {
        let (mem, level) = self.head?;
        // SAFETY: every node was handed over by `push`, live and with room for the link.
        let link = unsafe { read_link(mem.va) };
        (self.head, self.len) = match link {
            Link::Next(pa, l) => (
                Some((
                    TableMem {
                        pa,
                        // A node's successor is a live allocation of this allocator (contract 2).
                        va: alloc.phys_to_virt(pa),
                    },
                    l,
                )),
                self.len.saturating_sub(1),
            ),
            Link::End | Link::Broken => (None, 0),
        };
        Some((mem, level))
    }
}

/// Head word of a pool: the top table's address (4 KiB aligned) | `NONEMPTY` | `POPPING`.
const NONEMPTY: u64 = 1 << 1;
const POPPING: u64 = 1;
const ADDR: u64 = !0xfff;

/// Times a pop re-reads a head another CPU is popping before giving up (each time costs one
/// load and a spin hint; the other pop holds the bit for a few instructions).
#[cfg(not(all(loom, test)))]
const POP_SPINS: u32 = 64;
#[cfg(all(loom, test))]
const POP_SPINS: u32 = 1;

/// The page table's retired tables, one lock-free stack per lookup level (see the module
/// documentation). On its own cache line: it is written only when tables are retired or
/// created, and must not share a line with what every map and unmap reads.
#[repr(align(64))]
pub(crate) struct Pool {
    heads: [Desc; LEVELS],
    /// Tables in the pool (all levels), for accounting; exact unless a buggy caller broke a
    /// link (then it counts the stranded tables too).
    count: Desc,
}

impl Pool {
    pub(crate) fn new() -> Self {
        Self {
            heads: core::array::from_fn(|_| Desc::new(0)),
            count: Desc::new(0),
        }
    }

    #[inline]
    fn head(&self, level: u32) -> &Desc {
        // In bounds: masked to 0..=3, and LEVELS is 4.
        #[allow(clippy::indexing_slicing)]
        &self.heads[level as usize & (LEVELS - 1)]
    }

    /// Pushes `mem`, a table of `level`, from any CPU.
    ///
    /// # Safety
    ///
    /// As for [`FreeList::push`]: a live allocation of `alloc`, unreachable from the tree (and,
    /// on the SMMU side, invalidated), owned by the caller, who hands it to the pool; its
    /// contents are zero beyond the link words, as pops hand it out.
    pub(crate) unsafe fn push(&self, mem: TableMem, level: u32) {
        let head = self.head(level);
        // Counted before the node is visible, so that a pop never counts it out first.
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut h = head.load(Ordering::Relaxed);
        loop {
            let next = (h & NONEMPTY != 0).then_some((PhysAddr(h & ADDR), level));
            // SAFETY: `mem` is ours (caller) with room for the link.
            unsafe { write_link(mem.va, next) };
            // Release: the link (and the zeroed contents) before the node is visible to a pop.
            // A concurrent popper's bit is kept: it is popping whatever is on top when it
            // swaps, and a push only adds a new top.
            let new = (mem.pa.0 & ADDR) | NONEMPTY | (h & POPPING);
            match head.compare_exchange_weak(h, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => h = now,
            }
        }
    }

    /// Tables in the pool (see `count`).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    /// Clears the count, once every level has been drained through `&mut`.
    pub(crate) fn drained(&mut self) {
        self.count.store(0, Ordering::Relaxed);
    }

    /// Pops a table of `level`, from any CPU; `None` if the pool is empty or another CPU kept
    /// popping for longer than [`POP_SPINS`] re-reads. The table's first three words hold link
    /// data, the rest is zero (as pushed), unless a buggy caller wrote through a stale pointer.
    pub(crate) fn pop(&self, level: u32, alloc: &impl TableAllocator) -> Option<TableMem> {
        let head = self.head(level);
        let mut h = head.load(Ordering::Relaxed);
        let mut spins = 0;
        // Claim the popping bit: from then on no other CPU removes nodes.
        loop {
            if h & NONEMPTY == 0 {
                return None;
            }
            if h & POPPING != 0 {
                if spins >= POP_SPINS {
                    return None;
                }
                spins += 1;
                crate::sync::spin_hint();
                h = head.load(Ordering::Relaxed);
                continue;
            }
            // Acquire: the pusher's link words (its release) are visible before we read them.
            match head.compare_exchange_weak(h, h | POPPING, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => h = now,
            }
        }
        let mut cur = h | POPPING;
        loop {
            let pa = PhysAddr(cur & ADDR);
            // A pooled table is a live allocation of this allocator (contract 2): nothing in
            // the pool is freed while `&self` exists.
            let va = alloc.phys_to_virt(pa);
            // SAFETY: `va` is a live table; we are the only popper, so it stays in the pool
            // (and its link as its pusher wrote it, unless a stale writer broke it) until our
            // swap below takes it out.
            let next = match unsafe { read_link(va) } {
                Link::Next(next, l) if l == level => (next.0 & ADDR) | NONEMPTY,
                // The end, or a broken link: the rest (if any) is stranded, never followed.
                _ => 0,
            };
            // The swap also drops the popping bit. It fails only if a push put a new top on
            // (keeping our bit); pop that one instead. Acquire: its pusher's link.
            match head.compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    return Some(TableMem { pa, va });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The deliberately broken pop of a plain Treiber stack (no popping bit): a popper that
    /// read a top and its link, stalled while others popped that top and the next and pushed
    /// the first back, swaps in a link to a table another CPU now owns (ABA). Only the loom
    /// model that must catch it calls it.
    #[cfg(all(test, loom))]
    pub(crate) fn pop_without_claim(
        &self,
        level: u32,
        alloc: &impl TableAllocator,
    ) -> Option<TableMem> {
        let head = self.head(level);
        loop {
            let h = head.load(Ordering::Acquire);
            if h & NONEMPTY == 0 {
                return None;
            }
            let pa = PhysAddr(h & ADDR);
            let va = alloc.phys_to_virt(pa);
            // SAFETY: pooled tables are never freed under `&self`.
            let next = match unsafe { read_link(va) } {
                Link::Next(next, _) => (next.0 & ADDR) | NONEMPTY,
                _ => 0,
            };
            if head
                .compare_exchange(h, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.count.fetch_sub(1, Ordering::Relaxed);
                return Some(TableMem { pa, va });
            }
        }
    }

    /// Takes every table of `level` out, through `&mut` (no other CPU is in the pool).
    pub(crate) fn drain(&mut self, level: u32, alloc: &impl TableAllocator) -> FreeList {
        let h = self.head(level).swap(0, Ordering::Acquire);
        let mut list = FreeList::new();
        if h & NONEMPTY != 0 {
            let pa = PhysAddr(h & ADDR);
            list.head = Some((
                TableMem {
                    pa,
                    va: alloc.phys_to_virt(pa),
                },
                level,
            ));
            // The length is not kept in the pool; 1 marks the list as non-empty.
            list.len = 1;
        }
        list
    }
}

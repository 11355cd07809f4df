//! The page table's concurrency primitives, from `core`/`spin` or, under `--cfg loom`, from the
//! loom model checker, so that the code the model checks explore is the code that ships.
//!
//! * [`Desc`]: one translation-table descriptor. Every CPU-side access to a live table is an
//!   atomic access of one 64-bit descriptor (single-copy atomic, as the walker needs, and free of
//!   data races when several CPUs map and unmap the same table).
//! * [`Walkers`]: who may follow table pointers. Every map, unmap and lookup holds it shared; an
//!   unmap that unlinks tables (so that they can be freed) must hold it exclusively, which it
//!   only ever *tries* to take. No caller ever waits for exclusivity, so no caller can deadlock;
//!   shared holders wait only while an exclusive unmap runs (bounded by that unmap's size).

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicU64 as Desc, Ordering};

#[cfg(not(all(loom, test)))]
pub(crate) use core::sync::atomic::{AtomicU64 as Desc, Ordering};

/// Descriptor slot `i` of the table whose memory starts at `va`.
///
/// Outside loom, [`Desc`] is `AtomicU64`, which has the size and bit validity of `u64` and an
/// alignment of 8, so table memory (zeroed, 8-aligned `u64`s) holds descriptors in place. Under
/// loom the test allocator builds the tables as arrays of loom atomics, so indexing in `Desc`
/// units is right in both cases.
///
/// # Safety
///
/// `va` is an 8-aligned table allocation of more than `i` descriptors that stays allocated for
/// `'a`, and nothing accesses it other than through atomic descriptor accesses (and the SMMU's
/// walker, which only reads).
#[inline(always)]
pub(crate) unsafe fn slot<'a>(va: core::ptr::NonNull<u64>, i: usize) -> &'a Desc {
    // SAFETY: in bounds and live for 'a (caller); alignment and validity as documented above.
    unsafe { &*va.as_ptr().cast::<Desc>().add(i) }
}

/// A slice of `n` descriptor slots from slot `first` (the same layout argument as [`slot`]).
///
/// # Safety
///
/// As for [`slot`], for every slot in `first..first + n`.
#[inline(always)]
pub(crate) unsafe fn slots<'a>(va: core::ptr::NonNull<u64>, first: usize, n: usize) -> &'a [Desc] {
    // SAFETY: in bounds and live for 'a (caller); shared references to atomics may alias.
    unsafe { core::slice::from_raw_parts(va.as_ptr().cast::<Desc>().add(first), n) }
}

/// Shared/exclusive access to the table tree (see the module documentation).
///
/// Outside loom this is a distributed reader lock: [`SHARDS`] counters, each on its own cache
/// line, and a reader counts itself on the shard its stack address picks. Readers on different
/// CPUs therefore (almost always) touch different lines, so the guard adds no cache-line
/// traffic between CPUs that map disjoint ranges; a single counter would bounce between them
/// on every call. Exclusivity needs every shard: `try_exclusive` claims them in order and gives
/// them all back at the first one that has a reader.
pub(crate) struct Walkers {
    #[cfg(not(all(loom, test)))]
    shards: [Shard; SHARDS],
    #[cfg(all(loom, test))]
    lock: loom::sync::RwLock<()>,
}

/// Reader-count shards per page table (1 KiB in all).
#[cfg(not(all(loom, test)))]
pub(crate) const SHARDS: usize = 16;
#[cfg(not(all(loom, test)))]
const _: () = assert!(SHARDS.is_power_of_two());

/// Atomic read-modify-writes that taking and dropping the exclusive guard costs when it is
/// free: one claim and one release per shard. A map takes the exclusive path only when that
/// saves more (one compare-and-swap per block otherwise).
#[cfg(not(all(loom, test)))]
pub(crate) const EXCLUSIVE_RMWS: u64 = 2 * SHARDS as u64;
#[cfg(all(loom, test))]
pub(crate) const EXCLUSIVE_RMWS: u64 = 2;

/// The exclusive holder's mark in a shard; the bits below count readers.
#[cfg(not(all(loom, test)))]
const WRITER: usize = 1 << (usize::BITS - 1);

#[cfg(not(all(loom, test)))]
#[repr(align(64))]
struct Shard(core::sync::atomic::AtomicUsize);

/// Held while following table pointers; dropping it ends the walk.
#[cfg(not(all(loom, test)))]
pub(crate) struct SharedWalk<'a>(&'a Shard);

#[cfg(not(all(loom, test)))]
impl Drop for SharedWalk<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: this walk's reads happen before an exclusive holder's later writes.
        self.0 .0.fetch_sub(1, Ordering::Release);
    }
}

/// Held while unlinking tables; dropping it lets walkers in again.
#[cfg(not(all(loom, test)))]
pub(crate) struct ExclusiveWalk<'a>(&'a [Shard; SHARDS]);

#[cfg(not(all(loom, test)))]
impl Drop for ExclusiveWalk<'_> {
    #[inline]
    fn drop(&mut self) {
        for s in self.0 {
            // Clears only the mark: a reader may be between its increment and its back-off.
            s.0.fetch_and(!WRITER, Ordering::Release);
        }
    }
}

#[cfg(all(loom, test))]
pub(crate) type SharedWalk<'a> = loom::sync::RwLockReadGuard<'a, ()>;
#[cfg(all(loom, test))]
pub(crate) type ExclusiveWalk<'a> = loom::sync::RwLockWriteGuard<'a, ()>;

impl Walkers {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(all(loom, test)))]
            shards: core::array::from_fn(|_| Shard(core::sync::atomic::AtomicUsize::new(0))),
            #[cfg(all(loom, test))]
            lock: loom::sync::RwLock::new(()),
        }
    }

    /// Starts a walk; waits only while an exclusive unmap is running.
    #[cfg(not(all(loom, test)))]
    #[inline]
    pub(crate) fn shared(&self) -> SharedWalk<'_> {
        // The stack address tells CPUs (and threads) apart without a CPU number; hashing the
        // 4 KiB frame number spreads neighbouring stacks over the shards.
        let probe = 0u8;
        let frame = (&raw const probe).addr() as u64 >> 12;
        let i = (frame.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros()))
            as usize
            & (SHARDS - 1);
        // In bounds: masked by SHARDS - 1, a power of two (checked below at compile time).
        #[allow(clippy::indexing_slicing)]
        let shard = &self.shards[i];
        loop {
            // Acquire: the tables an exclusive holder changed are seen as it left them.
            if shard.0.fetch_add(1, Ordering::Acquire) & WRITER == 0 {
                return SharedWalk(shard);
            }
            shard.0.fetch_sub(1, Ordering::Relaxed);
            while shard.0.load(Ordering::Relaxed) & WRITER != 0 {
                core::hint::spin_loop();
            }
        }
    }

    /// Becomes the only walker, if nobody else is walking now; never waits.
    #[cfg(not(all(loom, test)))]
    #[inline]
    pub(crate) fn try_exclusive(&self) -> Option<ExclusiveWalk<'_>> {
        for (n, s) in self.shards.iter().enumerate() {
            // Acquire: every walk that left this shard happened before what we do next.
            if s.0
                .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                for claimed in self.shards.iter().take(n) {
                    claimed.0.fetch_and(!WRITER, Ordering::Release);
                }
                return None;
            }
        }
        Some(ExclusiveWalk(&self.shards))
    }

    /// Starts a walk; waits only while an exclusive unmap is running.
    #[cfg(all(loom, test))]
    #[inline]
    pub(crate) fn shared(&self) -> SharedWalk<'_> {
        #[allow(clippy::unwrap_used)] // loom's lock is only poisoned by a panicking model
        self.lock.read().unwrap()
    }

    /// Becomes the only walker, if nobody else is walking now; never waits.
    #[cfg(all(loom, test))]
    #[inline]
    pub(crate) fn try_exclusive(&self) -> Option<ExclusiveWalk<'_>> {
        self.lock.try_write().ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::{AtomicBool, AtomicUsize};

    /// Exclusion: while `try_exclusive` is held no walk is inside, and while a walk is inside
    /// `try_exclusive` fails; readers on other threads (other stacks, so other shards) wait out
    /// a holder rather than slip past it.
    #[test]
    fn exclusive_excludes_every_shard() {
        let w = Walkers::new();
        let excl_inside = AtomicBool::new(false);
        let readers_inside = AtomicUsize::new(0);
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..rounds {
                        let g = w.shared();
                        readers_inside.fetch_add(1, Ordering::SeqCst);
                        assert!(!excl_inside.load(Ordering::SeqCst), "walk beside exclusive");
                        readers_inside.fetch_sub(1, Ordering::SeqCst);
                        drop(g);
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..rounds {
                    if let Some(g) = w.try_exclusive() {
                        excl_inside.store(true, Ordering::SeqCst);
                        assert_eq!(
                            readers_inside.load(Ordering::SeqCst),
                            0,
                            "exclusive beside a walk"
                        );
                        excl_inside.store(false, Ordering::SeqCst);
                        drop(g);
                    }
                }
            });
        });
        // Alone, exclusivity is always available, and a walk still starts after it.
        assert!(w.try_exclusive().is_some());
        let g = w.shared();
        assert!(
            w.try_exclusive().is_none(),
            "exclusive granted beside a walk"
        );
        drop(g);
        assert!(w.try_exclusive().is_some());
    }
}

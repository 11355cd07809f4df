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
pub(crate) struct Walkers {
    #[cfg(not(all(loom, test)))]
    lock: spin::RwLock<()>,
    #[cfg(all(loom, test))]
    lock: loom::sync::RwLock<()>,
}

/// Held while following table pointers; dropping it ends the walk.
#[cfg(not(all(loom, test)))]
pub(crate) type SharedWalk<'a> = spin::RwLockReadGuard<'a, ()>;
/// Held while unlinking tables; dropping it lets walkers in again.
#[cfg(not(all(loom, test)))]
pub(crate) type ExclusiveWalk<'a> = spin::RwLockWriteGuard<'a, ()>;
#[cfg(all(loom, test))]
pub(crate) type SharedWalk<'a> = loom::sync::RwLockReadGuard<'a, ()>;
#[cfg(all(loom, test))]
pub(crate) type ExclusiveWalk<'a> = loom::sync::RwLockWriteGuard<'a, ()>;

impl Walkers {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(all(loom, test)))]
            lock: spin::RwLock::new(()),
            #[cfg(all(loom, test))]
            lock: loom::sync::RwLock::new(()),
        }
    }

    /// Starts a walk; waits only while an exclusive unmap is running.
    #[inline]
    pub(crate) fn shared(&self) -> SharedWalk<'_> {
        #[cfg(not(all(loom, test)))]
        return self.lock.read();
        #[cfg(all(loom, test))]
        #[allow(clippy::unwrap_used)] // loom's lock is only poisoned by a panicking model
        return self.lock.read().unwrap();
    }

    /// Becomes the only walker, if nobody else is walking now; never waits.
    #[inline]
    pub(crate) fn try_exclusive(&self) -> Option<ExclusiveWalk<'_>> {
        #[cfg(not(all(loom, test)))]
        return self.lock.try_write();
        #[cfg(all(loom, test))]
        return self.lock.try_write().ok();
    }
}

//! The page table's concurrency primitives, from `core` or, under `--cfg loom`, from the
//! loom model checker, so that the code the model checks explore is the code that ships.
//!
//! * [`Desc`]: one translation-table descriptor. Every CPU-side access to a live table is an
//!   atomic access of one 64-bit descriptor (single-copy atomic, as the walker needs, and free of
//!   data races when several CPUs map and unmap the same table); the vector scans of
//!   [`crate::scan`] read two at a time, as two single-copy atomic 64-bit reads.
//!
//! There is no lock or guard around walks: a table unlinked through `&self` is never freed while
//! `&self` callers may exist (see [`crate::pool`]).

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

/// A spin-wait hint (a loom yield under the model checker, so that a bounded spin lets the other
/// thread run).
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(all(loom, test))]
    loom::thread::yield_now();
    #[cfg(not(all(loom, test)))]
    core::hint::spin_loop();
}

//! Statically allocated, once-taken memory for the driver: where firmware, or a crash kernel
//! without a heap yet, puts what a kernel would put in its heap.
//!
//! ```
//! use core::mem::MaybeUninit;
//! use smmu::StaticSlot;
//!
//! static SLOT: StaticSlot<[u64; 4096]> = StaticSlot::new();
//!
//! let place: &'static mut MaybeUninit<[u64; 4096]> = SLOT.take().expect("first time");
//! place.write([0; 4096]); // a driver is built with `Smmu::new_in_with(place, …)` instead
//! assert!(SLOT.take().is_none(), "handed out once");
//! ```

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

/// Room for one `T` in `.bss`, handed out once as `&'static mut MaybeUninit<T>`: the place
/// [`Smmu::new_in_with`](crate::Smmu::new_in_with) or `smmu_kdump::boot_in` builds a driver
/// in, without `static mut` or `unsafe` in the caller.
pub struct StaticSlot<T> {
    taken: AtomicBool,
    cell: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the cell is only reached through `take`, which hands out one exclusive reference
// ever (the atomic swap), so no two threads can reach the contents; moving that reference to
// another thread is what `T: Send` allows.
unsafe impl<T: Send> Sync for StaticSlot<T> {}

impl<T> StaticSlot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Self {
            taken: AtomicBool::new(false),
            cell: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The slot's memory, the first time; `None` afterwards.
    // The one `&mut` ever made comes from the `UnsafeCell`, guarded by the atomic flag.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut MaybeUninit<T>> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above succeeds once, so this is the only reference ever made to
        // the cell's contents, and the slot is `'static`.
        Some(unsafe { &mut *self.cell.get() })
    }
}

impl<T> Default for StaticSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

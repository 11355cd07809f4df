//! Statically allocated, once-taken memory: where the firmware puts what a kernel would put
//! in its heap or a HAL page (the driver, built in place with
//! [`Smmu::new_in`](smmu::Smmu::new_in), is ~52 KiB and the boot stack is 64 KiB).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

/// Room for one `T` in `.bss`, handed out once as `&'static mut MaybeUninit<T>`.
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

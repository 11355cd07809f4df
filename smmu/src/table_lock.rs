//! The stream table behind the driver's reader-writer lock, in a shape that can be built in
//! place.
//!
//! `spin::RwLock<S>` keeps its data at an offset the crate does not promise, so a table of
//! tens of KiB (an adopted table's chunk directory, a 2-level table's level-2 directory)
//! could only enter it by value: through the stack. A crash kernel's stack is small and the
//! memory below it belongs to the crashed kernel (the dump it must save), so the driver keeps
//! the lock (over `()`) and the table side by side instead, and the table is written where it
//! lives ([`Smmu::new_in_with`](crate::Smmu::new_in_with)). The guards below are the only way
//! to the table, so the lock discipline is the one `RwLock<S>` had.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};

use spin::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A stream table and its reader-writer lock.
pub(crate) struct TableLock<S> {
    lock: RwLock<()>,
    table: UnsafeCell<S>,
}

// SAFETY: the table is reached only through `read` (shared, under the read lock), `write`
// (exclusive, under the write lock) or `&mut self`: the same rules as `spin::RwLock<S>`, which
// is `Sync` exactly when `S: Send + Sync`.
unsafe impl<S: Send + Sync> Sync for TableLock<S> {}

/// Shared access to the table, under the read lock.
pub(crate) struct TableRead<'a, S> {
    _guard: RwLockReadGuard<'a, ()>,
    table: &'a S,
}

/// Exclusive access to the table, under the write lock.
pub(crate) struct TableWrite<'a, S> {
    _guard: RwLockWriteGuard<'a, ()>,
    table: &'a mut S,
}

impl<S> TableLock<S> {
    /// Writes an unlocked lock at `dst` and returns the place of its table, still
    /// uninitialised: the caller initialises it before the `TableLock` is used.
    ///
    /// # Safety
    /// `dst` is valid for writes of `Self` and aligned.
    pub(crate) unsafe fn init_lock_at(dst: *mut Self) -> *mut MaybeUninit<S> {
        // SAFETY: `dst` is valid and aligned (caller); only raw places are formed.
        unsafe {
            core::ptr::addr_of_mut!((*dst).lock).write(RwLock::new(()));
            // `UnsafeCell<S>` has the layout of `S`, and `MaybeUninit<S>` too.
            UnsafeCell::raw_get(core::ptr::addr_of!((*dst).table)).cast::<MaybeUninit<S>>()
        }
    }

    /// The table, shared, while the read lock is held.
    pub(crate) fn read(&self) -> TableRead<'_, S> {
        let guard = self.lock.read();
        // SAFETY: the read lock is held for as long as the reference lives (both are in the
        // returned guard), so no `&mut S` exists meanwhile (`write` needs the write lock,
        // `get_mut` needs `&mut self`).
        let table = unsafe { &*self.table.get() };
        TableRead {
            _guard: guard,
            table,
        }
    }

    /// The table, exclusively, while the write lock is held.
    pub(crate) fn write(&self) -> TableWrite<'_, S> {
        let guard = self.lock.write();
        // SAFETY: the write lock is held for as long as the reference lives, so no other
        // reference to the table exists meanwhile.
        let table = unsafe { &mut *self.table.get() };
        TableWrite {
            _guard: guard,
            table,
        }
    }

    /// The table, through exclusive access to the lock.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        self.table.get_mut()
    }
}

impl<S> Deref for TableRead<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.table
    }
}

impl<S> Deref for TableWrite<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.table
    }
}

impl<S> DerefMut for TableWrite<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        self.table
    }
}

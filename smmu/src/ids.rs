//! ASID and VMID allocation (SPEC D8, K14).
//!
//! One allocator per SMMU and per ID space. ID 0 is never handed out (Linux keeps ASID 0 for
//! the bypass-ish "no context" case and VMID 0 is what a reset SMMU's caches may hold). IDs
//! can be *reserved* — the crash kernel reserves every ASID and VMID the crashed kernel's
//! tables still use, so that a new domain can never alias a translation the SMMU may still
//! cache — and a reserved ID is never allocated or freed.

use crate::error::Error;

const WORDS: usize = (1 << 16) / 64;

/// Why an ID operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// The ID is 0 or does not fit the SMMU's ID width.
    OutOfRange(u16),
    /// The ID is already allocated or reserved.
    InUse(u16),
    /// The ID was not allocated (double free), or is reserved.
    NotAllocated(u16),
}

/// A bitmap allocator for 8- or 16-bit IDs.
#[derive(Clone)]
pub struct IdAllocator {
    bits: u32,
    used: [u64; WORDS],
    reserved: [u64; WORDS],
    next: u32,
    in_use: u32,
}

impl core::fmt::Debug for IdAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdAllocator")
            .field("bits", &self.bits)
            .field("in_use", &self.in_use)
            .finish_non_exhaustive()
    }
}

impl IdAllocator {
    /// An allocator of IDs 1..2^`bits` (`bits` is clamped to 1..=16).
    pub const fn new(bits: u32) -> Self {
        let bits = if bits == 0 {
            1
        } else if bits > 16 {
            16
        } else {
            bits
        };
        Self {
            bits,
            used: [0; WORDS],
            reserved: [0; WORDS],
            next: 1,
            in_use: 0,
        }
    }

    /// Initialises an allocator (as [`IdAllocator::new`]) directly at `dst`, without a
    /// temporary: the allocator is 16 KiB, which [`Smmu::new_in`](crate::Smmu::new_in)
    /// keeps off the stack.
    ///
    /// # Safety
    /// `dst` is valid for writes of `Self` and suitably aligned.
    pub(crate) unsafe fn init_at(dst: *mut Self, bits: u32) {
        let bits = bits.clamp(1, 16);
        // SAFETY: `dst` is valid and aligned (caller); each field is written once through a
        // raw place, and an all-zero `[u64; WORDS]` is a valid bitmap.
        unsafe {
            core::ptr::addr_of_mut!((*dst).bits).write(bits);
            core::ptr::addr_of_mut!((*dst).used).write_bytes(0, 1);
            core::ptr::addr_of_mut!((*dst).reserved).write_bytes(0, 1);
            core::ptr::addr_of_mut!((*dst).next).write(1);
            core::ptr::addr_of_mut!((*dst).in_use).write(0);
        }
    }

    /// Number of IDs in the space, 0 included.
    pub const fn capacity(&self) -> u32 {
        1 << self.bits
    }

    /// IDs currently allocated or reserved.
    pub const fn in_use(&self) -> u32 {
        self.in_use
    }

    fn check(&self, id: u16) -> Result<(usize, u64), IdError> {
        if id == 0 || u32::from(id) >= self.capacity() {
            return Err(IdError::OutOfRange(id));
        }
        Ok((usize::from(id) / 64, 1u64 << (id % 64)))
    }

    fn word(&self, i: usize) -> u64 {
        self.used.get(i).copied().unwrap_or(u64::MAX)
    }

    /// Whether `id` is allocated or reserved.
    pub fn is_used(&self, id: u16) -> bool {
        self.check(id).is_ok_and(|(w, b)| self.word(w) & b != 0)
    }

    /// Whether `id` is reserved.
    pub fn is_reserved(&self, id: u16) -> bool {
        self.check(id)
            .is_ok_and(|(w, b)| self.reserved.get(w).is_some_and(|r| r & b != 0))
    }

    fn set(&mut self, w: usize, b: u64, reserved: bool) {
        if let Some(x) = self.used.get_mut(w) {
            *x |= b;
        }
        if reserved {
            if let Some(x) = self.reserved.get_mut(w) {
                *x |= b;
            }
        }
        self.in_use += 1;
    }

    /// Allocates the next free ID (round-robin, so a just-freed ID is reused last).
    pub fn alloc(&mut self) -> Result<u16, Error> {
        let cap = self.capacity();
        for k in 0..cap {
            let id = (self.next + k) % cap;
            if id == 0 {
                continue;
            }
            let id = id as u16;
            if let Ok((w, b)) = self.check(id) {
                if self.word(w) & b == 0 {
                    self.set(w, b, false);
                    self.next = (u32::from(id) + 1) % cap;
                    return Ok(id);
                }
            }
        }
        Err(Error::IdsExhausted)
    }

    /// Frees an allocated ID. Reserved IDs cannot be freed.
    pub fn free(&mut self, id: u16) -> Result<(), IdError> {
        let (w, b) = self.check(id)?;
        if self.word(w) & b == 0 || self.is_reserved(id) {
            return Err(IdError::NotAllocated(id));
        }
        if let Some(x) = self.used.get_mut(w) {
            *x &= !b;
        }
        self.in_use -= 1;
        Ok(())
    }

    /// Reserves `id` for good: it is never allocated or freed afterwards (SPEC K14).
    pub fn reserve(&mut self, id: u16) -> Result<(), IdError> {
        let (w, b) = self.check(id)?;
        if self.word(w) & b != 0 {
            return Err(IdError::InUse(id));
        }
        self.set(w, b, true);
        Ok(())
    }

    /// Drops every reservation (adoption failed and the SMMU is reset, SPEC K4/K14).
    pub fn clear_reservations(&mut self) {
        for (u, r) in self.used.iter_mut().zip(self.reserved.iter_mut()) {
            self.in_use -= (*r).count_ones();
            *u &= !*r;
            *r = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: D8
    #[test]
    fn zero_is_never_handed_out_and_ids_are_unique() {
        let mut a = IdAllocator::new(8);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..255 {
            let id = a.alloc().unwrap();
            assert_ne!(id, 0);
            assert!(seen.insert(id));
        }
        assert_eq!(a.alloc(), Err(Error::IdsExhausted));
        a.free(17).unwrap();
        assert_eq!(a.alloc(), Ok(17));
        assert_eq!(a.free(0), Err(IdError::OutOfRange(0)));
        assert_eq!(IdAllocator::new(8).free(5), Err(IdError::NotAllocated(5)));
    }

    // spec: D8, K14
    #[test]
    fn reserved_ids_are_never_allocated_nor_freed() {
        let mut a = IdAllocator::new(4);
        for id in [1, 2, 7, 15] {
            a.reserve(id).unwrap();
        }
        assert_eq!(a.reserve(7), Err(IdError::InUse(7)));
        assert_eq!(a.reserve(16), Err(IdError::OutOfRange(16)));
        let mut got = std::vec::Vec::new();
        while let Ok(id) = a.alloc() {
            got.push(id);
        }
        assert_eq!(got, [3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14]);
        assert_eq!(a.free(7), Err(IdError::NotAllocated(7)));
        a.clear_reservations();
        assert!(!a.is_used(7));
        assert_eq!(a.in_use(), 11);
        assert_eq!(a.alloc(), Ok(15)); // round-robin resumes after the last one handed out
    }
}

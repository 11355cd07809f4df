//! ASID and VMID allocation (SPEC D8, K14).
//!
//! One allocator per SMMU and per ID space. ID 0 is never handed out (Linux keeps ASID 0 for
//! the bypass-ish "no context" case and VMID 0 is what a reset SMMU's caches may hold). IDs
//! can be *reserved* — the crash kernel reserves every ASID and VMID the crashed kernel's
//! tables still use, so that a new domain can never alias a translation the SMMU may still
//! cache — and a reserved ID is never allocated or freed.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
///
/// Lock-free: [`IdAllocator::alloc`], [`IdAllocator::free`] and [`IdAllocator::reserve`]
/// take `&self` and claim or release an ID with one atomic read-modify-write of its bitmap
/// word, so domains can be created and freed on any number of CPUs at once. Two CPUs racing
/// for one ID: one wins it, the other moves on to the next free one.
pub struct IdAllocator {
    bits: u32,
    /// Allocated or reserved IDs (a reserved ID is set in both maps).
    used: [AtomicU64; WORDS],
    reserved: [AtomicU64; WORDS],
    /// Where the next search starts: round-robin, so a freed ID is not reused at once
    /// (its TLB entries were invalidated, but a stale one is still less likely to matter).
    next: AtomicU32,
    in_use: AtomicU32,
}

impl Clone for IdAllocator {
    fn clone_from(&mut self, source: &Self) {
        self.copy_from(source);
    }

    fn clone(&self) -> Self {
        let copy = |m: &[AtomicU64; WORDS]| {
            core::array::from_fn(|i| {
                AtomicU64::new(m.get(i).map_or(0, |w| w.load(Ordering::Relaxed)))
            })
        };
        Self {
            bits: self.bits,
            used: copy(&self.used),
            reserved: copy(&self.reserved),
            next: AtomicU32::new(self.next.load(Ordering::Relaxed)),
            in_use: AtomicU32::new(self.in_use()),
        }
    }
}

impl core::fmt::Debug for IdAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdAllocator")
            .field("bits", &self.bits)
            .field("in_use", &self.in_use())
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
            used: [const { AtomicU64::new(0) }; WORDS],
            reserved: [const { AtomicU64::new(0) }; WORDS],
            next: AtomicU32::new(1),
            in_use: AtomicU32::new(0),
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
        // raw place. `AtomicU64` has the size and bit validity of `u64`, so all-zero bytes
        // are an empty bitmap.
        unsafe {
            core::ptr::addr_of_mut!((*dst).bits).write(bits);
            core::ptr::addr_of_mut!((*dst).used).write_bytes(0, 1);
            core::ptr::addr_of_mut!((*dst).reserved).write_bytes(0, 1);
            core::ptr::addr_of_mut!((*dst).next).write(AtomicU32::new(1));
            core::ptr::addr_of_mut!((*dst).in_use).write(AtomicU32::new(0));
        }
    }

    /// As [`IdAllocator::new`], built in `place` (16 KiB that never pass through the stack).
    pub fn new_in(place: &mut MaybeUninit<Self>, bits: u32) -> &mut Self {
        // SAFETY: `place` is valid for writes of `Self` and aligned (it is a
        // `&mut MaybeUninit<Self>`), and `init_at` initialises every field.
        unsafe {
            Self::init_at(place.as_mut_ptr(), bits);
            place.assume_init_mut()
        }
    }

    /// Makes `self` a copy of `source` where it is, word by word (what
    /// [`Clone::clone_from`] does, with no 16 KiB temporary on the stack). Exclusive:
    /// nothing may allocate from either meanwhile.
    pub fn copy_from(&mut self, source: &IdAllocator) {
        self.bits = source.bits;
        for (dst, src) in self.used.iter_mut().zip(&source.used) {
            *dst.get_mut() = src.load(Ordering::Relaxed);
        }
        for (dst, src) in self.reserved.iter_mut().zip(&source.reserved) {
            *dst.get_mut() = src.load(Ordering::Relaxed);
        }
        *self.next.get_mut() = source.next.load(Ordering::Relaxed);
        *self.in_use.get_mut() = source.in_use();
    }

    /// Reserves every ID `source` holds reserved (SPEC K14: the crash kernel's driver takes
    /// over what the scan of the old tables reserved). An ID reserved already stays
    /// reserved; one this allocator handed out, or that does not fit it, is refused.
    pub fn reserve_from(&self, source: &IdAllocator) -> Result<(), IdError> {
        for (word, bits) in source.reserved.iter().enumerate() {
            let mut bits = bits.load(Ordering::Relaxed);
            while bits != 0 {
                let id = (word * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                let id = u16::try_from(id).map_err(|_| IdError::OutOfRange(u16::MAX))?;
                match self.reserve(id) {
                    Ok(()) => {}
                    Err(IdError::InUse(_)) if self.is_reserved(id) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// How many IDs there are, 0 included (2^bits).
    pub const fn capacity(&self) -> u32 {
        1 << self.bits
    }

    /// IDs allocated or reserved now.
    pub fn in_use(&self) -> u32 {
        self.in_use.load(Ordering::Relaxed)
    }

    fn check(&self, id: u16) -> Result<(&AtomicU64, &AtomicU64, u64), IdError> {
        if id == 0 || u32::from(id) >= self.capacity() {
            return Err(IdError::OutOfRange(id));
        }
        let w = usize::from(id) / 64;
        match (self.used.get(w), self.reserved.get(w)) {
            (Some(u), Some(r)) => Ok((u, r, 1u64 << (id % 64))),
            _ => Err(IdError::OutOfRange(id)),
        }
    }

    /// Whether `id` is allocated or reserved.
    pub fn is_used(&self, id: u16) -> bool {
        self.check(id)
            .is_ok_and(|(u, _, b)| u.load(Ordering::Acquire) & b != 0)
    }

    /// Whether `id` is reserved.
    pub fn is_reserved(&self, id: u16) -> bool {
        self.check(id)
            .is_ok_and(|(_, r, b)| r.load(Ordering::Acquire) & b != 0)
    }

    /// Allocates the next free ID (never 0, never a reserved one).
    pub fn alloc(&self) -> Result<u16, Error> {
        let cap = self.capacity();
        let start = self.next.load(Ordering::Relaxed);
        for k in 0..cap {
            let id = (start.wrapping_add(k) % cap) as u16;
            let Ok((used, _, b)) = self.check(id) else {
                continue; // 0
            };
            // Read first: a taken ID costs no write to a line other CPUs use.
            if used.load(Ordering::Relaxed) & b == 0 && used.fetch_or(b, Ordering::AcqRel) & b == 0
            {
                self.in_use.fetch_add(1, Ordering::Relaxed);
                self.next
                    .store((u32::from(id) + 1) % cap, Ordering::Relaxed);
                return Ok(id);
            }
        }
        Err(Error::IdsExhausted)
    }

    /// Frees an allocated ID. Refused for reserved IDs and for IDs not allocated.
    pub fn free(&self, id: u16) -> Result<(), IdError> {
        let (used, reserved, b) = self.check(id)?;
        if reserved.load(Ordering::Acquire) & b != 0
            || used.fetch_and(!b, Ordering::AcqRel) & b == 0
        {
            return Err(IdError::NotAllocated(id));
        }
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reserves `id` (SPEC K14): it is never allocated or freed until
    /// [`IdAllocator::clear_reservations`].
    pub fn reserve(&self, id: u16) -> Result<(), IdError> {
        let (used, reserved, b) = self.check(id)?;
        if used.fetch_or(b, Ordering::AcqRel) & b != 0 {
            return Err(IdError::InUse(id));
        }
        reserved.fetch_or(b, Ordering::AcqRel);
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Releases every reservation (once the crashed kernel's translations can no longer be
    /// cached anywhere). Exclusive: nothing may allocate meanwhile.
    pub fn clear_reservations(&mut self) {
        for (u, r) in self.used.iter_mut().zip(self.reserved.iter_mut()) {
            let r = core::mem::take(r.get_mut());
            *self.in_use.get_mut() -= r.count_ones();
            *u.get_mut() &= !r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: D8
    #[test]
    fn zero_is_never_handed_out_and_ids_are_unique() {
        let a = IdAllocator::new(8);
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

    // spec: D8 — two CPUs creating domains at once never get the same ASID.
    #[test]
    fn cpus_allocating_at_once_get_distinct_ids_until_exhausted() {
        let bits = if cfg!(miri) { 6 } else { 12 };
        let a = IdAllocator::new(bits);
        a.reserve(5).unwrap();
        let (mut x, mut y) = std::thread::scope(|s| {
            let t = || {
                s.spawn(|| {
                    let mut got = std::vec::Vec::new();
                    let mut freed = 0;
                    while let Ok(id) = a.alloc() {
                        // Give every seventh back (once each), so the two also race on frees.
                        if id % 7 == 0 && freed < 64 {
                            a.free(id).unwrap();
                            freed += 1;
                        } else {
                            got.push(id);
                        }
                    }
                    got
                })
            };
            let (x, y) = (t(), t());
            (x.join().unwrap(), y.join().unwrap())
        });
        x.append(&mut y);
        x.sort_unstable();
        let want: std::vec::Vec<u16> = (1..1u16 << bits).filter(|&i| i != 5).collect();
        // Every ID once: the ones freed were taken again before the allocator ran dry.
        assert_eq!(x, want);
        assert_eq!(a.in_use(), a.capacity() - 1);
    }
}

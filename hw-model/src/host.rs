//! Host-RAM backing (SPEC M5): an arena of host memory that both a driver (through raw
//! pointers) and the model (through atomics) read and write.

use crate::phys::{MemError, PAGE};
use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use zerocopy::FromZeros;

/// The largest alignment [`HostRam`] gives its first byte (1 GiB); below that, the arena size
/// rounded up to a power of two ([`HostRam::alignment`]). Memory at an arena offset aligned to
/// `A <= alignment()` therefore has a host pointer aligned to `A` too.
pub const HOST_ALIGN_MAX: u64 = 1 << 30;

/// Memory ordering of every access the model makes to the arena. The model and a driver on
/// another thread are ordered by whatever serialises them (the [`SharedModel`](crate::SharedModel)
/// mutex); these accesses only need to be single-copy atomic per 64-bit word.
const ORD: Ordering = Ordering::Relaxed;

/// A zeroed arena of host memory that backs the model's RAM window when given in
/// [`ModelConfig::host_ram`](crate::ModelConfig::host_ram).
///
/// The arena is an array of [`AtomicU64`] words behind an [`Arc`]: clones are handles to the
/// same memory. The model reads and writes it with 64-bit atomic loads and stores (a byte write
/// that does not cover a whole word is a compare-and-swap of that word), so a driver can hold
/// raw pointers into it ([`HostRam::byte_ptr`], [`HostRam::word_ptr`]) and write page tables,
/// queues and stream tables through them while the model fetches the same words.
///
/// Offset 0 is aligned on the host to the arena size rounded up to a power of two (at most
/// [`HOST_ALIGN_MAX`]), so any allocation inside the arena aligned relative to its start is
/// aligned on the host as well. The memory comes from the allocator already zeroed (`calloc`):
/// the operating system backs its pages on first touch, so a large arena costs little until
/// used.
///
/// ```
/// use smmu_model::HostRam;
///
/// let ram = HostRam::new(2 * 4096).unwrap();
/// assert_eq!(ram.len_bytes(), 8192);
/// assert!(ram.store_u64(0x1008, 0xdead_beef));
/// assert_eq!(ram.load_u64(0x1008), Some(0xdead_beef));
/// let mut b = [0u8; 4];
/// assert!(ram.read_bytes(0x1008, &mut b));
/// assert_eq!(b, [0xef, 0xbe, 0xad, 0xde]);
/// assert!(ram.word_ptr(0x2000).is_none(), "outside the arena");
/// ```
#[derive(Clone)]
pub struct HostRam {
    words: Arc<Box<[AtomicU64]>>,
    /// Index of the word at offset 0 (the arena is over-allocated to align its start).
    skip: usize,
    /// Length in 64-bit words.
    len: usize,
}

impl fmt::Debug for HostRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostRam")
            .field("len_bytes", &self.len_bytes())
            .finish_non_exhaustive()
    }
}

/// The byte mask of `n` bytes starting at byte `lane` of a little-endian word (`lane + n <= 8`).
#[inline]
fn lane_mask(lane: usize, n: usize) -> u64 {
    let bits = if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    bits << (8 * lane)
}

impl HostRam {
    /// Allocates a zeroed arena of `bytes` bytes, a non-zero multiple of 4096.
    ///
    /// [`MemError::BadArgument`] for a size that is zero, not a multiple of 4096 or too large
    /// for the host; [`MemError::PoolExhausted`] if the host cannot allocate it.
    pub fn new(bytes: u64) -> Result<Self, MemError> {
        if bytes == 0 || !bytes.is_multiple_of(PAGE) {
            return Err(MemError::BadArgument);
        }
        let align = if bytes >= HOST_ALIGN_MAX {
            HOST_ALIGN_MAX
        } else {
            bytes.next_power_of_two()
        };
        let len = usize::try_from(bytes / 8).map_err(|_| MemError::BadArgument)?;
        let slack = usize::try_from(align / 8 - 1).map_err(|_| MemError::BadArgument)?;
        let total = len.checked_add(slack).ok_or(MemError::BadArgument)?;
        if total.checked_mul(8).is_none_or(|b| b > isize::MAX as usize) {
            return Err(MemError::BadArgument);
        }
        // Zeroed by the allocator (not by a loop), so untouched pages stay unbacked.
        let words = <[AtomicU64]>::new_box_zeroed_with_elems(total)
            .map_err(|_| MemError::PoolExhausted { bytes })?;
        let addr = words.as_ptr().addr() as u64;
        let skip = ((addr.wrapping_neg() & (align - 1)) / 8) as usize;
        Ok(Self {
            words: Arc::new(words),
            skip,
            len,
        })
    }

    /// The host alignment of offset 0: the arena size rounded up to a power of two, at most
    /// [`HOST_ALIGN_MAX`].
    pub fn alignment(&self) -> u64 {
        self.len_bytes()
            .checked_next_power_of_two()
            .map_or(HOST_ALIGN_MAX, |a| a.min(HOST_ALIGN_MAX))
    }

    /// Length of the arena in bytes.
    #[inline]
    pub fn len_bytes(&self) -> u64 {
        self.len as u64 * 8
    }

    /// Whether `[offset, offset + len)` lies inside the arena (overflow-safe).
    #[inline]
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.len_bytes())
    }

    #[inline]
    fn word(&self, index: usize) -> Option<&AtomicU64> {
        if index < self.len {
            self.words.get(self.skip + index)
        } else {
            None
        }
    }

    /// A pointer to the first byte of the arena, valid for reads and writes of
    /// [`len_bytes`](Self::len_bytes) bytes for as long as any clone of this handle lives.
    ///
    /// The pointer is derived from the whole arena, so it may be offset anywhere inside it.
    /// Accesses through it race with the model's atomic accesses unless they are ordered with
    /// them (the model runs only while its owner, e.g. a [`SharedModel`](crate::SharedModel)
    /// lock, says so); 8-byte aligned 64-bit accesses are single-copy atomic on the host.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.words
            .as_ptr()
            .wrapping_add(self.skip)
            .cast_mut()
            .cast::<u8>()
    }

    /// A pointer to the byte at `offset` (`None` outside the arena). See [`HostRam::as_ptr`]
    /// for validity.
    #[inline]
    pub fn byte_ptr(&self, offset: u64) -> Option<*mut u8> {
        if offset < self.len_bytes() {
            Some(self.as_ptr().wrapping_add(offset as usize))
        } else {
            None
        }
    }

    /// A pointer to the 64-bit word at `offset` (`None` if `offset` is not 8-byte aligned or
    /// the word is not inside the arena). See [`HostRam::as_ptr`] for validity.
    #[inline]
    pub fn word_ptr(&self, offset: u64) -> Option<*mut u64> {
        if offset.is_multiple_of(8) && self.contains(offset, 8) {
            Some(
                self.words
                    .as_ptr()
                    .wrapping_add(self.skip + (offset / 8) as usize)
                    .cast_mut()
                    .cast::<u64>(),
            )
        } else {
            None
        }
    }

    /// The arena offset of a host pointer (`None` if the pointer is not inside the arena). The
    /// inverse of [`HostRam::byte_ptr`]; compares addresses only, never dereferences.
    #[inline]
    pub fn offset_of(&self, ptr: *const u8) -> Option<u64> {
        let off = ptr.addr().checked_sub(self.as_ptr().addr())? as u64;
        (off < self.len_bytes()).then_some(off)
    }

    /// Atomic 64-bit load at an 8-byte aligned `offset` (`None` if misaligned or outside).
    #[inline]
    pub fn load_u64(&self, offset: u64) -> Option<u64> {
        if !offset.is_multiple_of(8) {
            return None;
        }
        self.word((offset / 8) as usize).map(|w| w.load(ORD))
    }

    /// Atomic 64-bit store at an 8-byte aligned `offset`. Returns false (and stores nothing) if
    /// misaligned or outside.
    #[inline]
    #[must_use = "a store outside the arena is dropped"]
    pub fn store_u64(&self, offset: u64, value: u64) -> bool {
        if !offset.is_multiple_of(8) {
            return false;
        }
        match self.word((offset / 8) as usize) {
            Some(w) => {
                w.store(value, ORD);
                true
            }
            None => false,
        }
    }

    /// Reads `buf.len()` bytes at `offset` (any alignment), one atomic load per word touched.
    /// Returns false (and fills nothing) if the range is not inside the arena.
    #[must_use = "a read outside the arena leaves the buffer untouched"]
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> bool {
        if !self.contains(offset, buf.len() as u64) {
            return false;
        }
        let mut done = 0usize;
        while done < buf.len() {
            let a = offset + done as u64;
            let lane = (a % 8) as usize;
            let n = (8 - lane).min(buf.len() - done);
            let w = self.word((a / 8) as usize).map_or(0, |w| w.load(ORD));
            let bytes = w.to_le_bytes();
            buf[done..done + n].copy_from_slice(&bytes[lane..lane + n]);
            done += n;
        }
        true
    }

    /// Writes `data` at `offset` (any alignment): whole words are atomic stores, a partial word
    /// is an atomic read-modify-write of that word (the other bytes are preserved). Returns
    /// false (and writes nothing) if the range is not inside the arena.
    #[must_use = "a write outside the arena is dropped"]
    pub fn write_bytes(&self, offset: u64, data: &[u8]) -> bool {
        if !self.contains(offset, data.len() as u64) {
            return false;
        }
        let mut done = 0usize;
        while done < data.len() {
            let a = offset + done as u64;
            let lane = (a % 8) as usize;
            let n = (8 - lane).min(data.len() - done);
            if let Some(w) = self.word((a / 8) as usize) {
                let mut bytes = [0u8; 8];
                bytes[lane..lane + n].copy_from_slice(&data[done..done + n]);
                let v = u64::from_le_bytes(bytes);
                if n == 8 {
                    w.store(v, ORD);
                } else {
                    let mask = lane_mask(lane, n);
                    let mut old = w.load(ORD);
                    while let Err(now) = w.compare_exchange_weak(old, (old & !mask) | v, ORD, ORD) {
                        old = now;
                    }
                }
            }
            done += n;
        }
        true
    }

    /// Zeroes `[offset, offset + len)`; returns false (and zeroes nothing) if the range is not
    /// inside the arena.
    #[must_use = "a fill outside the arena is dropped"]
    pub fn zero(&self, offset: u64, len: u64) -> bool {
        if !self.contains(offset, len) {
            return false;
        }
        let mut a = offset;
        let end = offset + len;
        while a < end {
            let lane = (a % 8) as usize;
            let n = (8 - lane).min((end - a) as usize);
            if let Some(w) = self.word((a / 8) as usize) {
                if n == 8 {
                    w.store(0, ORD);
                } else {
                    w.fetch_and(!lane_mask(lane, n), ORD);
                }
            }
            a += n as u64;
        }
        true
    }

    /// Whether two handles share one arena.
    pub fn same_arena(&self, other: &HostRam) -> bool {
        Arc::ptr_eq(&self.words, &other.words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_alignment_and_bounds() {
        let r = HostRam::new(4 * PAGE).unwrap();
        assert_eq!(r.as_ptr().addr() % (4 * PAGE as usize), 0);
        assert_eq!(r.offset_of(r.as_ptr().wrapping_add(24)), Some(24));
        assert_eq!(
            r.offset_of(r.as_ptr().wrapping_add(4 * PAGE as usize)),
            None
        );
        assert_eq!(r.offset_of(r.as_ptr().wrapping_sub(1)), None);
        assert!(r.word_ptr(4).is_none());
        assert!(r.word_ptr(4 * PAGE - 8).is_some());
        assert!(r.word_ptr(4 * PAGE).is_none());
        assert!(r.byte_ptr(4 * PAGE - 1).is_some());
        assert!(r.byte_ptr(4 * PAGE).is_none());
        assert!(HostRam::new(0).is_err());
        assert!(HostRam::new(100).is_err());
        assert!(HostRam::new(!(PAGE - 1)).is_err());
        let big = HostRam::new(4 << 20).unwrap();
        assert_eq!(big.alignment(), 4 << 20);
        assert_eq!(big.as_ptr().addr() % (4 << 20), 0);
        assert_eq!(HostRam::new(3 * PAGE).unwrap().alignment(), 4 * PAGE);
        assert_eq!(format!("{big:?}"), "HostRam { len_bytes: 4194304, .. }");
    }

    #[test]
    fn partial_words_preserve_neighbours() {
        let r = HostRam::new(PAGE).unwrap();
        assert!(r.store_u64(8, u64::MAX));
        assert!(r.write_bytes(10, &[1, 2, 3]));
        assert_eq!(r.load_u64(8), Some(0xFFFF_FF03_0201_FFFF));
        assert!(r.write_bytes(5, &[9; 12]));
        assert_eq!(r.load_u64(0), Some(0x0909_0900_0000_0000));
        assert_eq!(r.load_u64(8), Some(0x0909_0909_0909_0909));
        assert_eq!(r.load_u64(16), Some(0x09));
        let mut b = [0u8; 5];
        assert!(r.read_bytes(6, &mut b));
        assert_eq!(b, [9, 9, 9, 9, 9]);
        assert!(r.zero(7, 3));
        assert_eq!(r.load_u64(0), Some(0x0009_0900_0000_0000));
        assert_eq!(r.load_u64(8), Some(0x0909_0909_0909_0000));
        assert!(!r.write_bytes(PAGE - 2, &[0; 4]));
        assert!(!r.read_bytes(PAGE, &mut b));
        assert!(!r.store_u64(3, 0));
        assert_eq!(r.load_u64(PAGE), None);
    }

    #[test]
    fn clones_share_memory() {
        let a = HostRam::new(PAGE).unwrap();
        let b = a.clone();
        assert!(a.store_u64(16, 42));
        assert_eq!(b.load_u64(16), Some(42));
        assert!(a.same_arena(&b));
        assert!(!a.same_arena(&HostRam::new(PAGE).unwrap()));
    }
}

//! The table shape that stream tables and CD tables share (SPEC D3; IHI 0070 G.b §3.3.2,
//! §3.4.3): one linear array of 64-byte entries, or an array of level-1 descriptors each
//! pointing at a level-2 array that is allocated on first use.
//!
//! [`TwoLevel`] owns the memory and does what both tables do the same way: split an index into
//! its level-1 descriptor and its slot in a level-2 table, find a level-2 table, allocate, fill
//! and publish a new one (filled completely before one 64-bit store of its descriptor makes it
//! reachable; given back if that store fails), unpublish one, and release everything. What
//! differs stays with each table: the descriptor's encoding, what a new level-2 table holds,
//! the sizes, and the error a bad index gets.

use heapless::Vec;

use crate::dma::DmaBuf;
use crate::error::Error;
use crate::hal::Hal;
use crate::writer::ENTRY_QWORDS;

/// Bytes per entry (an STE or a CD).
pub(crate) const ENTRY_BYTES: usize = ENTRY_QWORDS * 8;

/// The form and size of a [`TwoLevel`] table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// log2 of the number of entries the table covers (at least `split` for 2 levels).
    pub(crate) log2: u32,
    /// log2 of the entries per level-2 table; `None` for a linear table.
    pub(crate) split: Option<u32>,
    /// Whether the SMMU accesses the table's memory coherently.
    pub(crate) coherent: bool,
}

/// A linear or 2-level table of 64-byte entries, with room for `N` level-2 tables.
pub(crate) struct TwoLevel<const N: usize> {
    /// The linear table, or the level-1 descriptor array.
    base: DmaBuf,
    /// log2 of the number of entries the table covers.
    log2: u32,
    /// log2 of the entries per level-2 table, 0 for a linear table (one byte, not an
    /// `Option<u32>`: a CD table sits in every master slot of the driver).
    split: u8,
    /// Level-2 tables by level-1 index, sorted.
    l2: Vec<(u32, DmaBuf), N>,
    coherent: bool,
}

impl<const N: usize> TwoLevel<N> {
    /// Allocates a table of `shape`: linear when `shape.split` is `None` (every entry set to
    /// `fill` when given, else zero), otherwise the level-1 array of 2^(`log2` − `split`)
    /// descriptors, every one invalid.
    pub(crate) fn new<H: Hal + ?Sized>(
        hal: &H,
        shape: Shape,
        fill: Option<&[u64; ENTRY_QWORDS]>,
    ) -> Result<Self, Error> {
        let base = alloc_base(hal, shape, fill)?;
        Ok(Self {
            base,
            log2: shape.log2,
            split: encode_split(shape.split),
            l2: Vec::new(),
            coherent: shape.coherent,
        })
    }

    /// Writes a table of `shape` over `base` (from [`alloc_base`]) into `place` field by field,
    /// its level-2 directory copied from `empty`: a directory of many level-2 tables is large
    /// (kilobytes), and a table built in place must never have it pass through the stack.
    ///
    /// # Safety
    /// `place` is valid for writes and aligned. `empty` is an empty directory.
    pub(crate) unsafe fn write_in(
        place: *mut Self,
        base: DmaBuf,
        shape: Shape,
        empty: &'static Vec<(u32, DmaBuf), N>,
    ) {
        debug_assert!(empty.is_empty());
        // SAFETY: the caller guarantees `place` is valid for writes and aligned; each field is
        // written once through a raw place. The directory is a bitwise copy of an empty
        // `heapless::Vec`, which owns nothing and points nowhere (inline storage), so the copy
        // is an independent empty vector; `empty` itself is only read.
        unsafe {
            (&raw mut (*place).base).write(base);
            (&raw mut (*place).log2).write(shape.log2);
            (&raw mut (*place).split).write(encode_split(shape.split));
            core::ptr::copy_nonoverlapping(empty, &raw mut (*place).l2, 1);
            (&raw mut (*place).coherent).write(shape.coherent);
        }
    }

    /// The linear table, or the level-1 descriptor array.
    pub(crate) fn base(&self) -> &DmaBuf {
        &self.base
    }

    /// log2 of the number of entries the table covers.
    pub(crate) fn log2(&self) -> u32 {
        self.log2
    }

    /// Whether the table has two levels.
    pub(crate) fn is_two_level(&self) -> bool {
        self.split != 0
    }

    /// log2 of the entries per level-2 table; `None` for a linear table.
    fn split(&self) -> Option<u32> {
        self.is_two_level().then_some(u32::from(self.split))
    }

    /// Whether the SMMU accesses the table's memory coherently (what its level-2 tables get).
    #[cfg(test)]
    pub(crate) fn coherent(&self) -> bool {
        self.coherent
    }

    /// Number of level-2 tables allocated.
    pub(crate) fn level2_tables(&self) -> usize {
        self.l2.len()
    }

    /// Adds the table's size, base address and number of level-2 tables (under the name
    /// `level2`) to a `Debug` report of the table that holds it.
    pub(crate) fn debug_fields<'d, 'a, 'b: 'a>(
        &self,
        d: &'d mut core::fmt::DebugStruct<'a, 'b>,
        level2: &str,
    ) -> &'d mut core::fmt::DebugStruct<'a, 'b> {
        d.field("log2", &self.log2)
            .field("base", &self.base.pa())
            .field(level2, &self.l2.len())
    }

    /// Whether `index` is inside the table.
    pub(crate) fn contains(&self, index: u32) -> bool {
        u64::from(index) >> self.log2 == 0
    }

    /// Where entry `index` lives: its buffer and the index of its first word there. `None`
    /// outside the table, or in a level-2 table not allocated yet.
    pub(crate) fn locate(&self, index: u32) -> Option<(&DmaBuf, usize)> {
        if !self.contains(index) {
            return None;
        }
        let Some(split) = self.split() else {
            return Some((&self.base, index as usize * ENTRY_QWORDS));
        };
        let i = self.find(index >> split).ok()?;
        let (_, table) = self.l2.get(i)?;
        let slot = (index & ((1 << split) - 1)) as usize;
        Some((table, slot * ENTRY_QWORDS))
    }

    /// Makes entry `index` (inside the table) addressable. In a 2-level table without the
    /// level-2 table for it, allocates that table, sets every entry to `fill` when given (else
    /// leaves it zero), and only then publishes it with one single-copy-atomic 64-bit store of
    /// the level-1 descriptor `descriptor(table)`. Returns whether a descriptor was published
    /// (the caller then invalidates the SMMU's copy of the old one).
    pub(crate) fn prepare<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        index: u32,
        fill: Option<&[u64; ENTRY_QWORDS]>,
        descriptor: impl FnOnce(&DmaBuf) -> u64,
    ) -> Result<bool, Error> {
        let Some(split) = self.split() else {
            return Ok(false);
        };
        let l1 = index >> split;
        let Err(pos) = self.find(l1) else {
            return Ok(false);
        };
        if self.l2.is_full() {
            return Err(Error::CapacityExhausted);
        }
        let bytes = ENTRY_BYTES << split;
        let table = DmaBuf::alloc(hal, bytes, bytes, self.coherent)?;
        let filled = match fill {
            Some(fill) => fill_entries(hal, &table, 1 << split, fill),
            // The allocator zeroes it.
            None => Ok(()),
        };
        let published = filled.and_then(|()| {
            let desc = descriptor(&table);
            Ok(self.base.store_live(hal, l1 as usize, desc)?)
        });
        if let Err(e) = published {
            // SAFETY: the descriptor was not written (or the fill failed), so the SMMU never
            // saw this table.
            unsafe { table.release(hal) };
            return Err(e);
        }
        // Cannot fail: capacity was checked above.
        let _ = self.l2.insert(pos, (l1, table));
        Ok(true)
    }

    /// Unpublishes the level-2 table holding entry `index` (inside the table): its level-1
    /// descriptor becomes invalid with one 64-bit store, and the table is handed back for the
    /// caller to release once the SMMU's copy of the old descriptor has been invalidated.
    /// `None` for a linear table or a level-2 table that does not exist.
    pub(crate) fn take<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        index: u32,
    ) -> Result<Option<DmaBuf>, Error> {
        let Some(split) = self.split() else {
            return Ok(None);
        };
        let l1 = index >> split;
        let Ok(pos) = self.find(l1) else {
            return Ok(None);
        };
        self.base.store_live(hal, l1 as usize, 0)?;
        Ok(Some(self.l2.remove(pos).1))
    }

    /// Gives every buffer back to the HAL, where the table is. Afterwards the table refers to
    /// memory it no longer owns: it is never used again, only forgotten or dropped (nothing in
    /// it has a `Drop` that would touch that memory).
    ///
    /// # Safety
    /// The SMMU no longer uses the table, and the table is not used or released again.
    pub(crate) unsafe fn release<H: Hal + ?Sized>(&mut self, hal: &H) {
        while let Some((_, t)) = self.l2.pop() {
            // SAFETY: the caller guarantees the SMMU no longer uses the table.
            unsafe { t.release(hal) };
        }
        // SAFETY: as above; the caller never uses or releases the table again, so the base
        // buffer, read out of it here, is given back once.
        unsafe { core::ptr::read(&raw const self.base).release(hal) };
    }

    /// The position of the level-2 table of level-1 index `l1` in the directory, or where it
    /// would go.
    fn find(&self, l1: u32) -> Result<usize, usize> {
        self.l2.binary_search_by_key(&l1, |(i, _)| *i)
    }
}

/// The base buffer of a [`TwoLevel`] table of `shape` (see [`TwoLevel::new`]), alone: for
/// [`TwoLevel::write_in`].
pub(crate) fn alloc_base<H: Hal + ?Sized>(
    hal: &H,
    shape: Shape,
    fill: Option<&[u64; ENTRY_QWORDS]>,
) -> Result<DmaBuf, Error> {
    let Shape {
        log2,
        split,
        coherent,
    } = shape;
    let Some(split) = split else {
        // §5.1, §5.2: a linear table is aligned to its size.
        let bytes = ENTRY_BYTES << log2;
        let buf = DmaBuf::alloc(hal, bytes, bytes, coherent)?;
        if let Some(fill) = fill {
            if let Err(e) = fill_entries(hal, &buf, 1 << log2, fill) {
                // SAFETY: just allocated; nothing points at it.
                unsafe { buf.release(hal) };
                return Err(e);
            }
        }
        return Ok(buf);
    };
    // The level-1 array is aligned to its size, and to 64 bytes at least.
    let bytes = 8usize << (log2 - split);
    Ok(DmaBuf::alloc(hal, bytes, bytes.max(64), coherent)?)
}

/// [`TwoLevel::split`] as stored: the level-2 tables of both users hold 2^8 or 2^10 entries,
/// never one (split 0), so 0 can mark a linear table.
fn encode_split(split: Option<u32>) -> u8 {
    debug_assert!(split.is_none_or(|s| (1..32).contains(&s)));
    split.map_or(0, |s| s as u8)
}

/// Sets each of the first `entries` entries of `buf` to `fill`.
fn fill_entries<H: Hal + ?Sized>(
    hal: &H,
    buf: &DmaBuf,
    entries: usize,
    fill: &[u64; ENTRY_QWORDS],
) -> Result<(), Error> {
    (0..entries).try_for_each(|i| {
        fill.iter()
            .enumerate()
            .try_for_each(|(w, v)| buf.write(hal, i * ENTRY_QWORDS + w, *v))
    })?;
    Ok(())
}

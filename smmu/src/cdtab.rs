//! Context-descriptor tables, linear and 2-level (SPEC D3; IHI 0070 G.b §3.4.3, §5.3, §5.4).
//!
//! A master with stage-1 translation owns one CD table; its STE points at it and the CD at
//! SubstreamID 0 holds the attached domain's translation. Masters with more SubstreamIDs than
//! one leaf table holds get a 2-level table whose 64 KiB leaves (1024 CDs) are allocated on
//! first use, as Linux does.

use heapless::Vec;

use crate::arch::cd::L1CdConfig;
use crate::arch::ste::S1Fmt;
use crate::dma::DmaBuf;
use crate::error::Error;
use crate::hal::Hal;
use crate::writer::make::CdTable as CdTablePointer;
use crate::writer::ENTRY_QWORDS;

/// Bytes per CD.
pub const CD_BYTES: usize = 64;
/// log2 of the CDs per leaf table of a 2-level table (`S1Fmt` = 64 KiB leaves).
pub const LEAF_SPLIT: u32 = 10;
/// The largest linear table (1024 CDs, 64 KiB); more SubstreamIDs need 2 levels.
pub const MAX_LOG2_LINEAR: u32 = LEAF_SPLIT;
/// Leaf tables a 2-level CD table can hold (a fixed bound: no heap): 4 × 1024 SubstreamIDs.
pub const MAX_LEAVES: usize = 4;

/// What [`CdTable::prepare`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdPrepared {
    /// The CD was already addressable.
    Present,
    /// A level-1 CD descriptor was published: `CMD_CFGI_CD` with `Leaf` = 0 (for every
    /// StreamID using the table) and a sync must follow (§4.3.3).
    NewLevel1Descriptor,
}

/// A master's CD table.
pub struct CdTable {
    fmt: S1Fmt,
    /// log2 of the number of CDs (`S1CDMax`).
    log2: u32,
    /// The linear table, or the level-1 descriptors.
    base: DmaBuf,
    leaves: Vec<(u32, DmaBuf), MAX_LEAVES>,
    coherent: bool,
}

impl core::fmt::Debug for CdTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CdTable")
            .field("fmt", &self.fmt)
            .field("log2", &self.log2)
            .field("base", &self.base.pa())
            .field("leaves", &self.leaves.len())
            .finish_non_exhaustive()
    }
}

impl CdTable {
    /// Allocates a table for 2^`log2` SubstreamIDs (0 = SubstreamID 0 only): linear up to
    /// 1024 CDs or without `IDR0.CD2L`, 2-level above. Every CD starts invalid (`V` = 0).
    pub fn new<H: Hal + ?Sized>(
        hal: &H,
        log2: u32,
        cd2l: bool,
        coherent: bool,
    ) -> Result<Self, Error> {
        let (fmt, log2) = if cd2l && log2 > MAX_LOG2_LINEAR {
            let max = LEAF_SPLIT + MAX_LEAVES.trailing_zeros();
            (S1Fmt::TwoLevel64K, log2.min(20).min(max.max(LEAF_SPLIT)))
        } else {
            (S1Fmt::Linear, log2.min(MAX_LOG2_LINEAR))
        };
        let bytes = match fmt {
            S1Fmt::Linear => CD_BYTES << log2,
            _ => 8usize << (log2 - LEAF_SPLIT),
        };
        // §5.2: a linear table is 64-byte aligned; the L1 table is aligned to its size (min 64).
        let base = DmaBuf::alloc(hal, bytes, bytes.max(64), coherent)?;
        Ok(Self {
            fmt,
            log2,
            base,
            leaves: Vec::new(),
            coherent,
        })
    }

    /// What an STE needs to point at this table.
    pub fn pointer(&self) -> CdTablePointer {
        CdTablePointer {
            base: self.base.pa().0,
            fmt: self.fmt,
            cd_max: self.log2 as u8,
        }
    }

    /// log2 of the number of SubstreamIDs.
    pub fn log2_size(&self) -> u32 {
        self.log2
    }

    fn check(&self, ssid: u32) -> Result<(), Error> {
        if u64::from(ssid) >> self.log2 != 0 {
            Err(Error::SubstreamIdOutOfRange(ssid))
        } else {
            Ok(())
        }
    }

    /// Makes the CD of `ssid` addressable, allocating its leaf table when needed.
    pub fn prepare<H: Hal + ?Sized>(&mut self, hal: &H, ssid: u32) -> Result<CdPrepared, Error> {
        self.check(ssid)?;
        if self.fmt == S1Fmt::Linear {
            return Ok(CdPrepared::Present);
        }
        let l1 = ssid >> LEAF_SPLIT;
        let Err(pos) = self.leaves.binary_search_by_key(&l1, |(i, _)| *i) else {
            return Ok(CdPrepared::Present);
        };
        if self.leaves.is_full() {
            return Err(Error::CapacityExhausted);
        }
        let bytes = CD_BYTES << LEAF_SPLIT;
        let leaf = DmaBuf::alloc(hal, bytes, bytes, self.coherent)?;
        let desc = L1CdConfig {
            l2_ptr: leaf.pa().0,
        }
        .encode()
        .to_words()[0];
        // The leaf is zeroed (every CD invalid) by the allocator; one 64-bit store publishes it.
        if let Err(e) = self.base.store_live(hal, l1 as usize, desc) {
            // SAFETY: the descriptor was not written, so the SMMU never saw the leaf.
            unsafe { leaf.release(hal) };
            return Err(e.into());
        }
        let _ = self.leaves.insert(pos, (l1, leaf));
        Ok(CdPrepared::NewLevel1Descriptor)
    }

    /// Where the CD of `ssid` is (prepared): its buffer and first word.
    pub fn locate(&self, ssid: u32) -> Result<(&DmaBuf, usize), Error> {
        self.check(ssid)?;
        if self.fmt == S1Fmt::Linear {
            return Ok((&self.base, ssid as usize * ENTRY_QWORDS));
        }
        let l1 = ssid >> LEAF_SPLIT;
        let i = self
            .leaves
            .binary_search_by_key(&l1, |(i, _)| *i)
            .map_err(|_| Error::SubstreamIdOutOfRange(ssid))?;
        let (_, leaf) = self
            .leaves
            .get(i)
            .ok_or(Error::SubstreamIdOutOfRange(ssid))?;
        let index = (ssid & ((1 << LEAF_SPLIT) - 1)) as usize;
        Ok((leaf, index * ENTRY_QWORDS))
    }

    /// Gives the memory back.
    ///
    /// # Safety
    /// No STE points at the table any more, and the CFGI that dropped the last pointer has
    /// completed.
    pub unsafe fn release<H: Hal + ?Sized>(self, hal: &H) {
        for (_, leaf) in self.leaves {
            // SAFETY: forwarded from the caller.
            unsafe { leaf.release(hal) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.base.release(hal) };
    }
}

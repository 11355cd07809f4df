//! Context-descriptor tables, linear and 2-level (SPEC D3; IHI 0070 G.b §3.4.3, §5.3, §5.4).
//!
//! A master with stage-1 translation owns one CD table; its STE points at it and the CD at
//! SubstreamID 0 holds the attached domain's translation. Masters with more SubstreamIDs than
//! one leaf table holds get a 2-level table whose 64 KiB leaves (1024 CDs) are allocated on
//! first use, as Linux does.

use crate::arch::cd::L1CdConfig;
use crate::arch::ste::S1Fmt;
use crate::dma::DmaBuf;
use crate::error::Error;
use crate::hal::Hal;
use crate::two_level::{Shape, TwoLevel};
use crate::writer::make::CdTable as CdTablePointer;

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
    /// The linear table, or the level-1 descriptors and the leaf tables.
    table: TwoLevel<MAX_LEAVES>,
}

impl core::fmt::Debug for CdTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("CdTable");
        d.field("fmt", &self.format());
        self.table
            .debug_fields(&mut d, "leaves")
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
        let (split, log2) = if cd2l && log2 > MAX_LOG2_LINEAR {
            let max = LEAF_SPLIT + MAX_LEAVES.trailing_zeros();
            (Some(LEAF_SPLIT), log2.min(20).min(max.max(LEAF_SPLIT)))
        } else {
            (None, log2.min(MAX_LOG2_LINEAR))
        };
        let shape = Shape {
            log2,
            split,
            coherent,
        };
        // Every CD (linear) or level-1 descriptor (2-level) starts zero: invalid.
        let table = TwoLevel::new(hal, shape, None)?;
        Ok(Self { table })
    }

    /// `S1Fmt` of the table: linear, or 2-level with 64 KiB leaves.
    fn format(&self) -> S1Fmt {
        if self.table.is_two_level() {
            S1Fmt::TwoLevel64K
        } else {
            S1Fmt::Linear
        }
    }

    /// What an STE needs to point at this table.
    pub fn pointer(&self) -> CdTablePointer {
        CdTablePointer {
            base: self.table.base().pa().0,
            fmt: self.format(),
            cd_max: self.table.log2() as u8,
        }
    }

    /// log2 of the number of SubstreamIDs.
    pub fn log2_size(&self) -> u32 {
        self.table.log2()
    }

    fn check(&self, ssid: u32) -> Result<(), Error> {
        if self.table.contains(ssid) {
            Ok(())
        } else {
            Err(Error::SubstreamIdOutOfRange(ssid))
        }
    }

    /// Makes the CD of `ssid` addressable, allocating its leaf table when needed.
    pub fn prepare<H: Hal + ?Sized>(&mut self, hal: &H, ssid: u32) -> Result<CdPrepared, Error> {
        self.check(ssid)?;
        // The leaf is zeroed (every CD invalid) by the allocator; one 64-bit store publishes it.
        let published = self.table.prepare(hal, ssid, None, |leaf| {
            L1CdConfig {
                l2_ptr: leaf.pa().0,
            }
            .encode()
            .to_words()[0]
        })?;
        Ok(if published {
            CdPrepared::NewLevel1Descriptor
        } else {
            CdPrepared::Present
        })
    }

    /// Where the CD of `ssid` is (prepared): its buffer and first word.
    pub fn locate(&self, ssid: u32) -> Result<(&DmaBuf, usize), Error> {
        self.table
            .locate(ssid)
            .ok_or(Error::SubstreamIdOutOfRange(ssid))
    }

    /// Gives the memory back.
    ///
    /// # Safety
    /// No STE points at the table any more, and the CFGI that dropped the last pointer has
    /// completed.
    pub unsafe fn release<H: Hal + ?Sized>(self, hal: &H) {
        let mut table = self.table;
        // SAFETY: forwarded from the caller; `table` is dropped right after, unused.
        unsafe { table.release(hal) };
    }
}

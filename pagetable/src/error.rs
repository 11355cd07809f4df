//! The crate's error type.

use core::fmt;

use crate::{Granule, Iova};

/// Why a page-table operation was refused.
///
/// Every error is reported *before* anything is written: a failed call leaves the tables exactly
/// as they were (SPEC P2).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input address size is not supported with this granule (32..=48 bits; 52 only with the
    /// 64 KiB granule).
    UnsupportedInputSize {
        /// The requested IAS in bits.
        ias: u32,
        /// The granule it was requested with.
        granule: Granule,
    },
    /// The output address size is not one of 32, 36, 40, 42, 44, 48 (or 52 with the 64 KiB
    /// granule): the values a PS/IPS field can encode.
    UnsupportedOutputSize {
        /// The requested OAS in bits.
        oas: u32,
        /// The granule it was requested with.
        granule: Granule,
    },
    /// An address or a size is not a multiple of the granule.
    Misaligned,
    /// A zero-sized map or unmap.
    EmptyRange,
    /// The IOVA range does not fit below 2^IAS, or the PA range below 2^OAS.
    OutOfRange,
    /// The protection grants neither read nor write: there is nothing to map.
    NoAccess,
    /// Part of the range is already mapped; nothing was changed.
    AlreadyMapped {
        /// The first IOVA found mapped.
        iova: Iova,
    },
    /// The unmap range covers only part of a block mapping; nothing was changed.
    PartialBlock {
        /// Start of the block that would have to be split.
        block: Iova,
        /// Size of that block in bytes.
        size: u64,
    },
    /// The table allocator returned no memory; nothing was changed.
    OutOfMemory,
    /// The table allocator returned memory that breaks its contract (misaligned, or a physical
    /// address at or above 2^OAS). The memory was handed back; nothing was changed.
    BadTableMemory,
    /// The gather was filled by a different page table.
    ForeignGather,
    /// The operation needs the other translation stage (e.g. `stage1_config` on a stage-2
    /// table).
    WrongStage,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnsupportedInputSize { ias, granule } => {
                write!(
                    f,
                    "input address size {ias} bits is not supported with the {granule} granule"
                )
            }
            Self::UnsupportedOutputSize { oas, granule } => {
                write!(
                    f,
                    "output address size {oas} bits is not supported with the {granule} granule"
                )
            }
            Self::Misaligned => f.write_str("address or size is not a multiple of the granule"),
            Self::EmptyRange => f.write_str("zero-sized range"),
            Self::OutOfRange => f.write_str("range exceeds the input or output address size"),
            Self::NoAccess => f.write_str("protection grants neither read nor write"),
            Self::AlreadyMapped { iova } => write!(f, "{iova} is already mapped"),
            Self::PartialBlock { block, size } => {
                write!(
                    f,
                    "range covers part of the {size:#x}-byte block at {block}"
                )
            }
            Self::OutOfMemory => f.write_str("table allocator is out of memory"),
            Self::BadTableMemory => {
                f.write_str("table allocator returned memory that breaks its contract")
            }
            Self::ForeignGather => f.write_str("gather belongs to another page table"),
            Self::WrongStage => f.write_str("operation needs the other translation stage"),
        }
    }
}

impl core::error::Error for Error {}

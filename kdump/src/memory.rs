//! The crashed kernel's memory as adoption reads it: [`OldMemory`], the largest read any walk
//! makes, and [`HalMemory`], the reads through the platform's HAL.
//!
//! Its own module so that the walk, the scan (`adopt` at adoption) and `table` (the
//! re-validation of a level-2 table mapped later) read old memory without importing each other.

use smmu::dma::DmaBuf;
use smmu::{Hal, MapAttr, PhysAddr};

/// The largest read [`scan`](crate::scan::scan) makes, in 64-bit words (512 bytes: 8 STEs or CDs, or 64
/// descriptors).
pub const READ_CHUNK_WORDS: usize = 64;

/// A read of the crashed kernel's memory failed (unmapped, not RAM, refused by the platform).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemFault;

impl core::fmt::Display for MemFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the crashed kernel's memory could not be read")
    }
}

impl core::error::Error for MemFault {}

/// Read access to the crashed kernel's physical memory: the old tables.
///
/// Implemented by the driver over the HAL's foreign mappings (with the attribute SPEC K17 has
/// the platform choose), and by tests over an in-memory image.
pub trait OldMemory {
    /// Fills `out` with the `out.len()` little-endian 64-bit words at physical address `pa`
    /// (8-byte aligned), lowest-addressed first, converted to native values. [`scan`](crate::scan::scan) never
    /// asks for more than [`READ_CHUNK_WORDS`] words at once, and only for ranges the
    /// registers and descriptors describe.
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault>;
}

impl<M: OldMemory + ?Sized> OldMemory for &M {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        (**self).read_words(pa, out)
    }
}

/// The crashed kernel's memory through the HAL: each read maps the words it needs with the
/// platform's attribute, reads them (after invalidating, when the SMMU is not coherent, so a
/// line the SMMU wrote is not hidden) and unmaps them again: nothing stays mapped (SPEC K3).
pub struct HalMemory<'h, H: Hal + ?Sized> {
    /// The platform.
    pub hal: &'h H,
    /// The attribute of the mappings (SPEC K17).
    pub attr: MapAttr,
    /// Whether the SMMU is coherent.
    pub coherent: bool,
}

impl<H: Hal + ?Sized> OldMemory for HalMemory<'_, H> {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        if out.is_empty() {
            return Ok(());
        }
        let bytes = out.len().checked_mul(8).ok_or(MemFault)?;
        let buf = DmaBuf::map(self.hal, PhysAddr(pa), bytes, self.attr, self.coherent)
            .map_err(|_| MemFault)?;
        let mut result = Ok(());
        for (i, w) in out.iter_mut().enumerate() {
            if let Ok(v) = buf.read(self.hal, i) {
                *w = v;
            } else {
                result = Err(MemFault);
                break;
            }
        }
        // SAFETY: a CPU mapping made above for this read only.
        unsafe { buf.release(self.hal) };
        result
    }
}

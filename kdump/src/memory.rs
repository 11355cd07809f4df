//! The crashed kernel's memory as adoption reads it: through the platform's HAL.
//!
//! Its own module so that both `adopt` (the scan at adoption) and `table` (the re-validation
//! of a level-2 table mapped later) can read old memory without importing each other.

use smmu::dma::DmaBuf;
use smmu::{Hal, MapAttr, PhysAddr};

use crate::scan::{MemFault, OldMemory};

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

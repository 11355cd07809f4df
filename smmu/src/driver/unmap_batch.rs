//! Deferred-flush unmap (SPEC D6, P3): several unmaps gather their invalidations, one flush
//! issues them with one `CMD_SYNC` and only then releases the page-table pages they retired
//! (into the table's pool, for later maps) — the `unmap` / `iotlb_sync` pair of Linux's IOMMU
//! API.

use smmu_pagetable::{Error as PtError, Gather, Iova, TableAllocator};

use super::Smmu;
use crate::access::RegisterAccess;
use crate::domain::Domain;
use crate::error::Error;
use crate::hal::Hal;
use crate::strtab::StreamTable;

/// Invalidations owed by [`Smmu::unmap_deferred`] calls on one domain, and the page-table
/// pages those unmaps retired, until [`Smmu::flush`] issues the one and releases the other.
///
/// Until the flush, the SMMU may still translate the unmapped IOVAs from its TLBs (as with
/// Linux's deferred `iotlb_sync`): a caller defers only when the device can no longer reach
/// the memory for other reasons (its driver stopped the DMA), or tolerates the window. The
/// retired tables are never freed before their invalidation completed (SPEC P3): dropping a
/// batch without a flush leaks them rather than freeing them early.
///
/// A batch belongs to the first domain it gathers for, until its flush; gathering for another
/// domain, or flushing it against another, is refused
/// ([`smmu_pagetable::Error::ForeignGather`]).
#[must_use = "the unmapped IOVAs stay in the TLBs and the retired tables allocated until Smmu::flush"]
#[derive(Debug, Default)]
pub struct UnmapBatch {
    gather: Gather,
    /// `(SMMU instance, domain token)` of the domain gathered for; `None` while empty.
    owner: Option<(usize, u32)>,
    /// The hull `[start, end)` of the unmapped ranges, for ATC invalidation.
    start: u64,
    end: u64,
}

impl UnmapBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            gather: Gather::new(),
            owner: None,
            start: u64::MAX,
            end: 0,
        }
    }

    /// Nothing to invalidate and nothing to free.
    pub fn is_empty(&self) -> bool {
        self.gather.is_empty()
    }

    /// Page-table pages retired by the gathered unmaps, waiting for the flush.
    pub fn retired_tables(&self) -> usize {
        self.gather.freed_tables()
    }

    /// The gathered ranges to invalidate.
    pub fn ranges(&self) -> &[smmu_pagetable::InvalRange] {
        self.gather.ranges()
    }

    fn claim(&mut self, owner: (usize, u32)) -> Result<(), Error> {
        match self.owner {
            Some(o) if o != owner => Err(Error::PageTable(PtError::ForeignGather)),
            _ => {
                self.owner = Some(owner);
                Ok(())
            }
        }
    }
}

impl<R: RegisterAccess, H: Hal, S: StreamTable> Smmu<R, H, S> {
    /// Unmaps `[iova, iova + size)` from a domain like [`Smmu::unmap`], but issues no
    /// invalidation: the TLBIs it owes, and the tables it retired, go into `batch` for one
    /// [`Smmu::flush`] later. Returns the bytes unmapped.
    ///
    /// Until the flush the SMMU may still use cached translations of the range (SPEC D6 is
    /// met at the flush, not here). What an unmap that failed part-way did is in the batch
    /// too, so the flush invalidates it.
    ///
    /// ```
    /// # use smmu::{DomainOptions, OwnedStreamTable, Prot, ResetPlan, Smmu, SmmuConfig, UnmapBatch};
    /// # use smmu_model::ModelConfig;
    /// # use smmu_pagetable::{Iova, PhysAddr};
    /// # use smmu_model_platform::{tables::ModelTables, ModelPlatform};
    /// # let platform = ModelPlatform::new(ModelConfig::default()).unwrap();
    /// # let (regs, hal) = (platform.regs(), platform.hal());
    /// # let features = smmu::probe::probe(&regs).unwrap();
    /// # let strtab = OwnedStreamTable::for_smmu(&hal, &features, &SmmuConfig::default()).unwrap();
    /// # let mut smmu = Smmu::new(regs, hal.clone(), features, strtab, SmmuConfig::default()).unwrap();
    /// # smmu.reset(&ResetPlan::FULL).unwrap();
    /// let domain = smmu.new_domain_with(DomainOptions::stage1(), ModelTables(hal.clone()))?;
    /// for page in 0..4u64 {
    ///     let iova = Iova(0x10_0000 + page * 0x1000);
    ///     smmu.map(&domain, iova, PhysAddr(0x4000_0000 + page * 0x1000), 0x1000, Prot::READ)?;
    /// }
    /// let syncs = smmu.cmdq().stats().syncs;
    /// let mut batch = UnmapBatch::new();
    /// for page in 0..4u64 {
    ///     smmu.unmap_deferred(&domain, Iova(0x10_0000 + page * 0x1000), 0x1000, &mut batch)?;
    /// }
    /// smmu.flush(&domain, &mut batch)?; // four unmaps, one CMD_SYNC
    /// assert_eq!(smmu.cmdq().stats().syncs, syncs + 1);
    /// # Ok::<(), smmu::Error>(())
    /// ```
    pub fn unmap_deferred<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        iova: Iova,
        size: u64,
        batch: &mut UnmapBatch,
    ) -> Result<u64, Error> {
        self.check_domain(domain)?;
        batch.claim((domain.smmu, domain.token))?;
        let unmapped = domain.table.unmap(iova, size, &mut batch.gather);
        // Whatever the unmap did before failing is in the gather: cover it in the hull.
        batch.start = batch.start.min(iova.0);
        batch.end = batch.end.max(iova.0.saturating_add(size));
        Ok(unmapped?)
    }

    /// Issues the invalidations `batch` gathered for `domain` — range TLBIs (or per page, or
    /// one ASID/VMID-wide TLBI) and one `CMD_SYNC`, then the ATC invalidations of attached
    /// ATS masters over the hull of the unmapped ranges with theirs — and only once they
    /// completed releases the page-table pages the unmaps retired into the table's pool, where later maps reuse them (SPEC D6, P3). The batch is
    /// empty afterwards and may be used for any domain.
    ///
    /// On an error nothing is freed and the batch keeps everything: flush it again (or drop
    /// it, which leaks the retired tables rather than freeing them under the SMMU).
    pub fn flush<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        batch: &mut UnmapBatch,
    ) -> Result<(), Error> {
        self.check_domain(domain)?;
        let Some(owner) = batch.owner else {
            return Ok(());
        };
        if owner != (domain.smmu, domain.token) {
            return Err(Error::PageTable(PtError::ForeignGather));
        }
        let size = batch.end.saturating_sub(batch.start);
        self.invalidate(domain, &batch.gather, Iova(batch.start), size)?;
        // SAFETY: every range of the gather was invalidated above and its CMD_SYNC completed
        // (`invalidate` returned `Ok`), so the SMMU no longer walks the retired tables.
        unsafe { domain.table.release(&mut batch.gather) }?;
        *batch = UnmapBatch::new();
        Ok(())
    }
}

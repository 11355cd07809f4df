//! Paging domains: a page table, its ASID or VMID, and whether it is protected (SPEC D8, D9).
//!
//! A domain is an address space masters are attached to. Blocked and identity "domains" need
//! no state and are attached with [`Smmu::attach_blocked`](crate::Smmu::attach_blocked) and
//! [`Smmu::attach_identity`](crate::Smmu::attach_identity); a [`Domain`] is always a paging
//! domain. It is owned by the caller, created and freed through the SMMU it belongs to, and
//! mapped and unmapped through it too, so that every unmap is followed by its invalidation.

use core::mem::ManuallyDrop;

use smmu_pagetable::{Config, Granule as PtGranule, PageTable, Stage, TableAllocator};

use crate::arch::cd::{CdConfig, TableControls};
use crate::arch::{AddressSize, Cacheability, Granule, Shareability};
use crate::error::Error;
use crate::policy::DomainKind;
use crate::writer::make::{self, S2Table};

/// The translation stage of a paging domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainStage {
    /// Stage 1: a CD with an ASID; the STE points at the master's CD table.
    Stage1,
    /// Stage 2: the STE holds the table and a VMID.
    Stage2,
}

/// A paging domain.
///
/// Its page table is freed only by [`Smmu::free_domain`](crate::Smmu::free_domain), which
/// refuses while a master may still use it. A `Domain` that is simply dropped *leaks* its
/// table (and says so through the `log` feature): the SMMU may still be walking it for a
/// master attached to it, and freeing it then would let the SMMU read memory the allocator
/// hands out again. Leaking is the safe default; freeing is the explicit step.
pub struct Domain<A: TableAllocator> {
    pub(crate) token: u32,
    pub(crate) smmu: usize,
    pub(crate) stage: DomainStage,
    pub(crate) protected: bool,
    pub(crate) id: u16,
    /// A stage-2 nesting parent (SPEC D13): its unmaps also invalidate combined entries.
    pub(crate) nesting_parent: bool,
    /// Never dropped by `Domain`'s own `Drop` (which leaks it); `free_domain` takes it out.
    pub(crate) table: ManuallyDrop<PageTable<A>>,
}

impl<A: TableAllocator> Drop for Domain<A> {
    fn drop(&mut self) {
        // The table stays allocated: nothing here knows whether a master still uses it.
        crate::report::report!(
            warn,
            "domain {} (ID {}) dropped without Smmu::free_domain: its page table is leaked, \
             since the SMMU may still walk it",
            self.token,
            self.id
        );
    }
}

impl<A: TableAllocator> Domain<A> {
    /// Takes the page table out of a domain that is going away (freed by
    /// [`Smmu::free_domain`](crate::Smmu::free_domain), which checked no master uses it).
    pub(crate) fn into_table(self) -> PageTable<A> {
        let mut domain = ManuallyDrop::new(self);
        // SAFETY: `domain` is wrapped in `ManuallyDrop` and never used again, so neither its
        // `Drop` nor a second `take` can reach the table taken here.
        unsafe { ManuallyDrop::take(&mut domain.table) }
    }
}

impl<A: TableAllocator> core::fmt::Debug for Domain<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Domain")
            .field("token", &self.token)
            .field("stage", &self.stage)
            .field("protected", &self.protected)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<A: TableAllocator> Domain<A> {
    /// The stage.
    pub fn stage(&self) -> DomainStage {
        self.stage
    }

    /// The policy view of the domain's kind.
    pub fn kind(&self) -> DomainKind {
        match self.stage {
            DomainStage::Stage1 => DomainKind::Stage1,
            DomainStage::Stage2 => DomainKind::Stage2,
        }
    }

    /// Whether mappings are limited to the platform's shared windows (SPEC D9).
    pub fn is_protected(&self) -> bool {
        self.protected
    }

    /// Whether nested domains may be built on it (a stage-2 nesting parent, SPEC D13).
    pub fn is_nesting_parent(&self) -> bool {
        self.nesting_parent
    }

    /// The ASID (stage 1) or VMID (stage 2).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The page table (read-only: changes go through the SMMU so that they are invalidated).
    pub fn table(&self) -> &PageTable<A> {
        &self.table
    }
}

pub(crate) fn granule_of(g: PtGranule) -> Granule {
    match g {
        PtGranule::Size4K => Granule::Size4K,
        PtGranule::Size16K => Granule::Size16K,
        PtGranule::Size64K => Granule::Size64K,
    }
}

fn cacheability(c: smmu_pagetable::Cacheability) -> Cacheability {
    match c {
        smmu_pagetable::Cacheability::NonCacheable => Cacheability::NonCacheable,
        smmu_pagetable::Cacheability::WriteBackWriteAllocate => Cacheability::WriteBackAllocate,
        smmu_pagetable::Cacheability::WriteThrough => Cacheability::WriteThrough,
        smmu_pagetable::Cacheability::WriteBackNoWriteAllocate => {
            Cacheability::WriteBackNoWriteAllocate
        }
    }
}

fn shareability(s: smmu_pagetable::Shareability) -> Shareability {
    match s {
        smmu_pagetable::Shareability::NonShareable => Shareability::NonShareable,
        smmu_pagetable::Shareability::Outer => Shareability::Outer,
        smmu_pagetable::Shareability::Inner => Shareability::Inner,
    }
}

/// The CD of a stage-1 domain (§5.4): TTB0 walks the page table, TTB1 is disabled, faults
/// are recorded and abort, the ASID is private to the SMMU (`ASET` = 1: no broadcast TLBI
/// from the CPUs may hit it).
pub(crate) fn stage1_cd<A: TableAllocator>(
    table: &PageTable<A>,
    asid: u16,
    stall: bool,
) -> Result<CdConfig, Error> {
    let c = table.stage1_config()?;
    let tt0 = TableControls {
        tsz: c.t0sz,
        ir: cacheability(c.walk.irgn),
        or: cacheability(c.walk.orgn),
        sh: shareability(c.walk.sh),
        epd: false,
        ttb: c.ttb.0,
    };
    let ips = AddressSize::from_bits(u32::from(c.oas)).ok_or(Error::Unsupported("output size"))?;
    Ok(CdConfig {
        stall,
        ..make::stage1_cd(asid, tt0, granule_of(c.granule), ips, c.mair)
    })
}

/// The stage-2 half of a domain's STE.
pub(crate) fn stage2_table<A: TableAllocator>(table: &PageTable<A>) -> Result<S2Table, Error> {
    let c = table.stage2_config()?;
    Ok(S2Table {
        ttb: c.ttb.0,
        t0sz: c.t0sz,
        sl0: c.sl0,
        ir0: cacheability(c.walk.irgn),
        or0: cacheability(c.walk.orgn),
        sh0: shareability(c.walk.sh),
        tg: granule_of(c.granule),
        ps: AddressSize::from_bits(u32::from(c.oas)).ok_or(Error::Unsupported("output size"))?,
        fwb: false,
    })
}

/// The page-table format for a new domain on an SMMU with these features: the smallest
/// granule the SMMU supports (4K, else 16K, else 64K), a 48-bit input range (stage 2: the
/// output size, at most 48) and the SMMU's output size capped at 48 bits.
pub(crate) fn table_config(
    stage: DomainStage,
    f: &crate::arch::idr::Features,
) -> Result<Config, Error> {
    let granule = if f.granule_4k {
        PtGranule::Size4K
    } else if f.granule_16k {
        PtGranule::Size16K
    } else if f.granule_64k {
        PtGranule::Size64K
    } else {
        return Err(Error::Unsupported("translation granule"));
    };
    let oas = f.oas.bits().min(48);
    let (stage, ias) = match stage {
        DomainStage::Stage1 if f.stage1 => (Stage::Stage1, 48),
        DomainStage::Stage2 if f.stage2 => (Stage::Stage2, oas.max(32)),
        DomainStage::Stage1 => return Err(Error::Unsupported("stage 1")),
        DomainStage::Stage2 => return Err(Error::Unsupported("stage 2")),
    };
    Ok(Config {
        stage,
        granule,
        ias,
        oas,
    })
}

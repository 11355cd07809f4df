//! A domain's page table outlives every master attached to it (SPEC D8, M3).
//!
//! Dropping a `Domain` must never free tables the SMMU is still walking: the DMA of a master
//! attached to it would translate through whatever the allocator puts in those pages next.
//! The model flags any SMMU read of memory the platform freed, so this class of bug is caught
//! wherever it happens; the second test is the deliberately broken variant that shows the
//! model does catch it.

use smmu::{Hal, SmmuConfig};
use smmu_model::{ModelConfig, Profile, Transaction, TxnResult, ViolationKind};
use smmu_model_platform::rig::Rig;
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);
const IOVA: u64 = 0x4000_0000;

/// A rig with one stage-1 master on StreamID 3 whose domain maps one page at `IOVA`; the
/// page's physical address.
fn attached() -> (
    Rig,
    smmu::Domain<smmu_model_platform::tables::ModelTables>,
    u64,
) {
    let cfg = ModelConfig {
        ram_size: 32 << 20,
        ..ModelConfig::hostile(Profile::grace(), 5)
    };
    let mut rig = Rig::new(cfg, SmmuConfig::default()).expect("probe and reset");
    let (_, domain) = rig.stage1_master(3).expect("attach");
    let pa = rig.model().alloc_pages(1, 1 << 12).expect("a page of RAM");
    rig.smmu
        .map(&domain, Iova(IOVA), PhysAddr(pa), 1 << 12, RW)
        .expect("map");
    assert_eq!(
        rig.dma(Transaction::read(3, IOVA + 8)),
        TxnResult::Translated { pa: pa + 8 }
    );
    (rig, domain, pa)
}

// spec: D8, M3
#[test]
fn dropping_an_attached_domain_frees_nothing_the_smmu_walks() {
    let (rig, domain, pa) = attached();
    let live = rig.platform.hal().live_allocations();
    drop(domain);
    assert_eq!(
        rig.platform.hal().live_allocations(),
        live,
        "the dropped domain's tables stay allocated"
    );
    assert_eq!(
        rig.dma(Transaction::read(3, IOVA + 16)),
        TxnResult::Translated { pa: pa + 16 },
        "the master still translates through its (leaked) tables"
    );
    // An address under another level-0 entry is in no TLB or walk cache: the SMMU walks from
    // the root (and faults, nothing is mapped there), reading only memory still allocated.
    assert!(rig.dma(Transaction::read(3, 1 << 39)).pa().is_none());
    rig.assert_no_violations();
}

/// The broken variant: the domain's tables are given back while it is attached (what
/// `Drop` used to do). The next walk reads freed memory and the model says so.
// spec: M3
#[test]
fn the_model_flags_a_walk_of_tables_freed_under_the_smmu() {
    let (rig, domain, _) = attached();
    let root = domain.table().root();
    let hal = rig.platform.hal();
    let va = hal.va(root).expect("the root table is in the model's RAM");
    // SAFETY: deliberately wrong, and only for the model: the root page came from this HAL's
    // `dma_alloc`; nothing on the CPU side uses it again (the domain is leaked below).
    unsafe {
        hal.dma_free(smmu::DmaRegion {
            pa: root,
            va,
            size: 1 << 12,
        });
    }
    // An address under another level-0 entry: no TLB or walk-cache entry covers it, so the
    // SMMU reads the (freed) root table.
    let _ = rig.dma(Transaction::read(3, 1 << 39));
    let freed: Vec<_> = rig
        .violations()
        .into_iter()
        .filter(|v| v.kind == ViolationKind::FreedMemoryRead)
        .collect();
    assert!(
        freed.iter().any(|v| v.offset >> 12 == root.0 >> 12),
        "no walk of the freed root table was flagged: {:#?}",
        rig.violations()
    );
    std::mem::forget(domain);
}

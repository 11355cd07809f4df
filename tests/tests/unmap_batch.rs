//! Deferred-flush unmap (`Smmu::unmap_deferred` + `Smmu::flush`, SPEC D6, P3): several unmaps,
//! one `CMD_SYNC`; the TLB keeps the old translations until the flush and drops them at it; the
//! retired page-table pages stay allocated until the flush completed.

use smmu::{DomainOptions, Error, MasterConfig, Prot, UnmapBatch};
use smmu_model::{ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::rig::Rig;
use smmu_pagetable::{Iova, PhysAddr};

const SID: u32 = 0x8;
const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);
/// A 2 MiB block of IOVA mapped with 4K pages: one whole level-3 table, retired by an unmap
/// of the block.
const BLOCK: u64 = 0x20_0000;
/// Single pages in another level-3 table.
const PAGES: u64 = 0x100_0000;

// spec: D6, P3
#[test]
fn deferred_unmaps_cost_one_sync_and_free_their_tables_only_at_the_flush() {
    let rig = Rig::new(
        ModelConfig {
            ram_size: 32 << 20,
            ..ModelConfig::hostile(Profile::grace(), 21)
        },
        smmu::SmmuConfig::default(),
    )
    .expect("rig");
    let hal = rig.platform.hal();
    let dev = rig
        .smmu
        .add_master(&MasterConfig::new(&[SID]))
        .expect("master");
    let domain = rig
        .smmu
        .new_domain_with(DomainOptions::stage1(), rig.tables())
        .expect("domain");
    let block_pa = rig.model().alloc_pages(512, 1 << 21).expect("2 MiB");
    let pages_pa = rig.model().alloc_pages(3, 1 << 12).expect("pages");
    for i in 0..512 {
        let off = i << 12;
        rig.smmu
            .map(
                &domain,
                Iova(BLOCK + off),
                PhysAddr(block_pa + off),
                0x1000,
                RW,
            )
            .expect("map block page");
    }
    for i in 0..3 {
        let off = i << 12;
        rig.smmu
            .map(
                &domain,
                Iova(PAGES + off),
                PhysAddr(pages_pa + off),
                0x1000,
                RW,
            )
            .expect("map page");
    }
    rig.smmu.attach(dev, &domain).expect("attach");
    let probes = [(BLOCK + 0x10, block_pa + 0x10)]
        .into_iter()
        .chain((0..3).map(|i| (PAGES + (i << 12) + 8, pages_pa + (i << 12) + 8)))
        .collect::<Vec<_>>();
    for &(iova, pa) in &probes {
        assert_eq!(
            rig.dma(Transaction::read(SID, iova)),
            TxnResult::Translated { pa },
            "{iova:#x} before the unmaps"
        );
    }

    let live = hal.live_allocations();
    let syncs = rig.smmu.cmdq().stats().syncs;
    let mut batch = UnmapBatch::new();
    assert_eq!(
        rig.smmu
            .unmap_deferred(&domain, Iova(BLOCK), 0x20_0000, &mut batch),
        Ok(0x20_0000)
    );
    for i in 0..3 {
        assert_eq!(
            rig.smmu
                .unmap_deferred(&domain, Iova(PAGES + (i << 12)), 0x1000, &mut batch),
            Ok(0x1000)
        );
    }
    // Nothing issued, nothing released: the retired level-3 table waits in the batch.
    assert_eq!(rig.smmu.cmdq().stats().syncs, syncs);
    assert!(batch.retired_tables() >= 1, "{batch:?}");
    assert_eq!(hal.live_allocations(), live);
    // The TLB still holds the translations the walk would no longer find (the deferral).
    for &(iova, pa) in &probes {
        assert_eq!(
            rig.dma(Transaction::read(SID, iova)),
            TxnResult::Translated { pa },
            "{iova:#x}: stale until the flush"
        );
    }

    let retired = batch.retired_tables();
    let pooled = domain.table().pooled_tables();
    rig.smmu.flush(&domain, &mut batch).expect("flush");
    assert_eq!(rig.smmu.cmdq().stats().syncs, syncs + 1, "one CMD_SYNC");
    assert!(batch.is_empty());
    // Only now are the retired tables released: into the page table's own pool, which later
    // maps take from and `reclaim`/drop return to the allocator (never while other CPUs may
    // hold a pointer), so the allocator's count is unchanged.
    assert_eq!(domain.table().pooled_tables(), pooled + retired);
    assert_eq!(hal.live_allocations(), live);
    for &(iova, _) in &probes {
        let r = rig.dma(Transaction::read(SID, iova));
        assert_eq!(r.pa(), None, "{iova:#x} after the flush: {r:?}");
    }
    // An empty batch flushes for free.
    rig.smmu.flush(&domain, &mut batch).expect("empty flush");
    assert_eq!(rig.smmu.cmdq().stats().syncs, syncs + 1);
    rig.assert_no_violations();
    std::mem::forget(domain);
}

#[test]
fn a_batch_belongs_to_one_domain_until_its_flush() {
    let rig = Rig::new(
        ModelConfig {
            ram_size: 16 << 20,
            ..ModelConfig::hostile(Profile::grace(), 22)
        },
        smmu::SmmuConfig::default(),
    )
    .expect("rig");
    let a = rig
        .smmu
        .new_domain_with(DomainOptions::stage1(), rig.tables())
        .expect("a");
    let b = rig
        .smmu
        .new_domain_with(DomainOptions::stage2(), rig.tables())
        .expect("b");
    let pa = rig.model().alloc_pages(1, 1 << 12).expect("page");
    rig.smmu
        .map(&a, Iova(0x4000), PhysAddr(pa), 0x1000, RW)
        .expect("map");
    rig.smmu
        .map(&b, Iova(0x4000), PhysAddr(pa), 0x1000, RW)
        .expect("map");
    let mut batch = UnmapBatch::new();
    rig.smmu
        .unmap_deferred(&a, Iova(0x4000), 0x1000, &mut batch)
        .expect("unmap a");
    let foreign = Error::PageTable(smmu_pagetable::Error::ForeignGather);
    assert_eq!(
        rig.smmu
            .unmap_deferred(&b, Iova(0x4000), 0x1000, &mut batch),
        Err(foreign)
    );
    assert_eq!(rig.smmu.flush(&b, &mut batch), Err(foreign));
    // `b` was not touched; `a`'s batch still flushes.
    assert_eq!(rig.smmu.unmap(&b, Iova(0x4000), 0x1000), Ok(0x1000));
    rig.smmu.flush(&a, &mut batch).expect("flush a");
    // Empty again: any domain may use it.
    assert_eq!(
        rig.smmu
            .unmap_deferred(&b, Iova(0x4000), 0x1000, &mut batch),
        Ok(0)
    );
    rig.smmu.flush(&b, &mut batch).expect("flush b");
    rig.assert_no_violations();
    std::mem::forget((a, b));
}

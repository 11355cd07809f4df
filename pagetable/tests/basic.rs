//! Focused tests: descriptor bits per prot, geometry, atomicity of failures, the gather.
mod common;

use common::{NcAlloc, TestAlloc};
use smmu::host::HostHal;
use smmu_pagetable::*;

const RW: Prot = Prot::READ.union(Prot::WRITE);

fn pt(stage: Stage, granule: Granule, ias: u32, oas: u32) -> PageTable<TestAlloc> {
    PageTable::new(
        Config {
            stage,
            granule,
            ias,
            oas,
        },
        TestAlloc::default(),
    )
    .unwrap()
}

fn leaves<A: TableAllocator>(pt: &PageTable<A>) -> Vec<(u64, u64, u64, u8, u64)> {
    let mut v = Vec::new();
    pt.walk(|e| {
        if let WalkEntry::Leaf {
            iova,
            pa,
            size,
            level,
            desc,
        } = *e
        {
            v.push((iova.0, pa.0, size, level, desc));
        }
    });
    v
}

fn tables<A: TableAllocator>(pt: &PageTable<A>) -> usize {
    let mut n = 0;
    pt.walk(|e| n += usize::from(matches!(e, WalkEntry::Table { .. })));
    n
}

fn release<A: TableAllocator>(pt: &PageTable<A>, g: &mut Gather) {
    // SAFETY: no SMMU walks these tables in a test.
    unsafe { pt.release(g) }.unwrap();
}

// spec: P4
#[test]
fn stage1_descriptor_bits() {
    let t = pt(Stage::Stage1, Granule::Size4K, 48, 48);
    t.map(
        Iova(0x1000),
        PhysAddr(0x12_3456_7000),
        0x1000,
        RW | Prot::CACHE,
    )
    .unwrap();
    t.map(
        Iova(0x2000),
        PhysAddr(0x2000),
        0x1000,
        Prot::READ | Prot::NOEXEC | Prot::PRIV,
    )
    .unwrap();
    t.map(Iova(0x3000), PhysAddr(0x3000), 0x1000, RW | Prot::MMIO)
        .unwrap();
    t.map(Iova(0x20_0000), PhysAddr(0x40_0000), 0x20_0000, RW)
        .unwrap();
    let l = leaves(&t);
    // Page, WB (AttrIndx 1), SH=IS, AF, nG, AP=01 (RW, EL0), OA.
    assert_eq!(
        l[0].4,
        0x12_3456_7000 | 0b11 | (1 << 2) | (3 << 8) | (1 << 10) | (1 << 11) | (1 << 6)
    );
    // Read-only, privileged, no-exec: AP=10, UXN|PXN, NC (AttrIndx 0), SH=OS.
    assert_eq!(
        l[1].4,
        0x2000 | 0b11 | (2 << 8) | (1 << 10) | (1 << 11) | (1 << 7) | (3 << 53)
    );
    // Device: AttrIndx 2, SH=OS.
    assert_eq!(
        l[2].4,
        0x3000 | 0b11 | (2 << 2) | (2 << 8) | (1 << 10) | (1 << 11) | (1 << 6)
    );
    // Level-2 block: TYPE=01.
    assert_eq!((l[3].3, l[3].4 & 3), (2, 0b01));
    assert_eq!(
        l[3].4,
        0x40_0000 | 0b01 | (2 << 8) | (1 << 10) | (1 << 11) | (1 << 6)
    );
    assert_eq!(
        t.map(Iova(0x4000), PhysAddr(0), 0x1000, Prot::NOEXEC),
        Err(Error::NoAccess)
    );
}

// spec: P4
#[test]
fn stage2_descriptor_bits() {
    let t = pt(Stage::Stage2, Granule::Size4K, 40, 40);
    t.map(Iova(0x1000), PhysAddr(0x1000), 0x1000, RW | Prot::CACHE)
        .unwrap();
    t.map(
        Iova(0x2000),
        PhysAddr(0x2000),
        0x1000,
        Prot::WRITE | Prot::NOEXEC,
    )
    .unwrap();
    t.map(
        Iova(0x3000),
        PhysAddr(0x3000),
        0x1000,
        Prot::READ | Prot::MMIO | Prot::CACHE,
    )
    .unwrap();
    let l = leaves(&t);
    // S2AP=11, MemAttr=0xf, SH=IS, AF; no nG at stage 2.
    assert_eq!(
        l[0].4,
        0x1000 | 0b11 | (0xf << 2) | (3 << 6) | (3 << 8) | (1 << 10)
    );
    // Write-only, NC (0x5), SH=OS, XN=0b10 (bit 54 only).
    assert_eq!(
        l[1].4,
        0x2000 | 0b11 | (0x5 << 2) | (2 << 6) | (2 << 8) | (1 << 10) | (1 << 54)
    );
    // Device (0x1) wins over CACHE, read-only.
    assert_eq!(
        l[2].4,
        0x3000 | 0b11 | (0x1 << 2) | (1 << 6) | (2 << 8) | (1 << 10)
    );
}

// spec: P1
#[test]
fn lpa_52bit_output_with_64k() {
    let t = pt(Stage::Stage2, Granule::Size64K, 52, 52);
    let pa = 0x000f_1234_5678_0000u64;
    t.map(Iova(0x10000), PhysAddr(pa), 0x10000, RW).unwrap();
    let l = leaves(&t);
    // OA[51:48] = 0xf in bits [15:12]; OA[47:16] in place.
    assert_eq!(l[0].4 & 0xf000, 0xf000);
    assert_eq!(l[0].4 & 0x0000_ffff_ffff_0000, pa & 0x0000_ffff_ffff_0000);
    assert_eq!(t.iova_to_phys(Iova(0x10123)), Some(PhysAddr(pa | 0x123)));
    // 4 TiB level-1 block exists with a 52-bit OAS.
    assert_ne!(t.pgsize_bitmap() & (1 << 42), 0);
    let tb = 1u64 << 42;
    t.map(Iova(tb), PhysAddr(0x000f_0000_0000_0000), tb, RW)
        .unwrap();
    assert_eq!(
        t.iova_to_phys(Iova(tb + 5)),
        Some(PhysAddr(0x000f_0000_0000_0005))
    );
    assert!(leaves(&t).iter().any(|l| l.3 == 1 && l.2 == tb));
    assert_eq!(t.stage2_config().unwrap().ps, 6);
    // 52 bits only with 64K.
    let e = PageTable::new(
        Config {
            stage: Stage::Stage1,
            granule: Granule::Size4K,
            ias: 48,
            oas: 52,
        },
        TestAlloc::default(),
    );
    assert!(matches!(
        e,
        Err(Error::UnsupportedOutputSize { oas: 52, .. })
    ));
    let e = PageTable::new(
        Config {
            stage: Stage::Stage1,
            granule: Granule::Size16K,
            ias: 52,
            oas: 48,
        },
        TestAlloc::default(),
    );
    assert!(matches!(
        e,
        Err(Error::UnsupportedInputSize { ias: 52, .. })
    ));
}

// spec: P1
#[test]
fn start_levels_and_concatenation() {
    // (granule, ias, stage-1 start, stage-2 start, stage-2 concat)
    let cases = [
        (Granule::Size4K, 32, 1, 1, 1),
        (Granule::Size4K, 39, 1, 1, 1),
        (Granule::Size4K, 40, 0, 1, 2),
        (Granule::Size4K, 42, 0, 1, 8),
        (Granule::Size4K, 43, 0, 1, 16),
        (Granule::Size4K, 44, 0, 0, 1),
        (Granule::Size4K, 48, 0, 0, 1),
        (Granule::Size16K, 32, 2, 2, 1),
        (Granule::Size16K, 36, 2, 2, 1),
        (Granule::Size16K, 40, 1, 1, 1),
        (Granule::Size16K, 47, 1, 1, 1),
        (Granule::Size16K, 48, 0, 1, 2),
        (Granule::Size64K, 32, 2, 2, 1),
        (Granule::Size64K, 42, 2, 2, 1),
        (Granule::Size64K, 48, 1, 1, 1),
        (Granule::Size64K, 52, 1, 1, 1),
    ];
    // Under Miri (which interprets every descriptor of an 8192-entry 64K table) one 64K case.
    let cases = cases
        .into_iter()
        .filter(|c| !cfg!(miri) || c.0 != Granule::Size64K || c.1 == 42);
    for (granule, ias, s1, s2, concat) in cases {
        let oas = if ias == 52 { 52 } else { 48 };
        let a = pt(Stage::Stage1, granule, ias, oas);
        assert_eq!(a.start_level(), s1, "{granule} ias {ias} stage 1");
        let c1 = a.stage1_config().unwrap();
        assert_eq!(u32::from(c1.t0sz), 64 - ias);
        assert_eq!(a.stage2_config(), Err(Error::WrongStage));
        let b = pt(Stage::Stage2, granule, ias, oas);
        let c = b.stage2_config().unwrap();
        assert_eq!(
            (c.start_level, c.concatenated),
            (s2, concat),
            "{granule} ias {ias} stage 2"
        );
        assert_eq!(b.allocator().live(), 1);
        // SL0 per DDI 0487 Tables D8-19/D8-29/D8-38.
        let sl0 = match granule {
            Granule::Size4K => [2, 1, 0, 3][usize::from(s2)],
            _ => 3 - s2,
        };
        assert_eq!(c.sl0, sl0);
        // The whole input range is reachable: map the last page.
        let b = b;
        let g = granule.size();
        b.map(Iova((1 << ias) - g), PhysAddr(0), g, RW).unwrap();
        assert_eq!(b.iova_to_phys(Iova((1 << ias) - 1)), Some(PhysAddr(g - 1)));
        assert_eq!(
            b.map(Iova(1 << ias), PhysAddr(0), g, RW),
            Err(Error::OutOfRange)
        );
    }
}

// spec: P2
#[test]
fn largest_block_and_split_pieces() {
    let t = pt(Stage::Stage1, Granule::Size4K, 48, 48);
    // 4K + 2M-aligned 1G... : iova 0x3ff000 .. 0x4060_1000 mapped 1:1 → 1 page, 511 2M blocks? no:
    // [0x1ff000, 0x4020_1000) = 1 page, 255 2M blocks up to 1G, one 1G block? (needs 1G alignment)
    let start = 0x1ff000u64;
    let end = 0x8020_1000u64;
    t.map(Iova(start), PhysAddr(start), end - start, RW)
        .unwrap();
    let l = leaves(&t);
    let count = |lvl: u8| l.iter().filter(|x| x.3 == lvl).count();
    assert_eq!(count(1), 1, "one 1G block at 0x4000_0000");
    assert_eq!(count(2), 511 + 1, "2M blocks up to 1G, and one after 2G");
    assert_eq!(count(3), 2, "a page at each end");
    let mut g = Gather::new();
    assert_eq!(
        t.unmap(Iova(start), end - start, &mut g).unwrap(),
        end - start
    );
    assert!(leaves(&t).is_empty());
    release(&t, &mut g);
    // Misaligned PA: no blocks possible.
    t.map(Iova(0x20_0000), PhysAddr(0x1000), 0x20_0000, RW)
        .unwrap();
    assert!(leaves(&t).iter().all(|x| x.3 == 3));
    assert_eq!(t.iova_to_phys(Iova(0x20_0000)), Some(PhysAddr(0x1000)));
}

// spec: P2
#[test]
fn overlap_refused_without_change() {
    let t = pt(Stage::Stage1, Granule::Size4K, 48, 48);
    t.map(Iova(0x40_5000), PhysAddr(0x5000), 0x1000, RW)
        .unwrap();
    let before = (leaves(&t), t.allocator().live());
    // A range that needs new tables before reaching the overlap.
    let r = t.map(Iova(0x3000), PhysAddr(0x3000), 0x40_3000, RW);
    assert_eq!(
        r,
        Err(Error::AlreadyMapped {
            iova: Iova(0x40_5000)
        })
    );
    assert_eq!((leaves(&t), t.allocator().live()), before);
    // Over a block.
    t.map(Iova(0x4000_0000), PhysAddr(0x4000_0000), 0x4000_0000, RW)
        .unwrap();
    let before = (leaves(&t), t.allocator().live());
    assert_eq!(
        t.map(Iova(0x5000_0000), PhysAddr(0), 0x1000, RW),
        Err(Error::AlreadyMapped {
            iova: Iova(0x5000_0000)
        })
    );
    assert_eq!((leaves(&t), t.allocator().live()), before);
}

// spec: P2
#[test]
fn out_of_memory_changes_nothing() {
    for budget in 0..3 {
        let mut t = pt(Stage::Stage1, Granule::Size4K, 48, 48);
        t.map(Iova(0), PhysAddr(0), 0x1000, RW).unwrap();
        let before = (leaves(&t), t.allocator().live());
        t.allocator().hal().set_alloc_budget(Some(budget));
        // Needs 3 new tables (L1, L2, L3) at 512 GiB.
        let r = t.map(Iova(1 << 39), PhysAddr(0), 0x1000, RW);
        assert_eq!(r, Err(Error::OutOfMemory));
        // The tables it did get wait in the pool for the next map; `reclaim` frees them.
        assert_eq!(t.reclaim(), budget);
        assert_eq!(
            (leaves(&t), t.allocator().live()),
            before,
            "budget {budget}"
        );
        t.allocator().hal().set_alloc_budget(None);
        t.map(Iova(1 << 39), PhysAddr(0), 0x1000, RW).unwrap();
    }
}

// spec: P2
#[test]
fn unmap_partial_block_refused_at_both_edges() {
    let t = pt(Stage::Stage2, Granule::Size4K, 40, 40);
    t.map(Iova(0x20_0000), PhysAddr(0x20_0000), 0x20_0000, RW)
        .unwrap();
    t.map(Iova(0x1000), PhysAddr(0x1000), 0x1000, RW).unwrap();
    let before = leaves(&t);
    let mut g = Gather::new();
    // Covers the page, then ends inside the block.
    assert_eq!(
        t.unmap(Iova(0x1000), 0x30_0000, &mut g),
        Err(Error::PartialBlock {
            block: Iova(0x20_0000),
            size: 0x20_0000
        })
    );
    // Starts inside the block.
    assert_eq!(
        t.unmap(Iova(0x30_0000), 0x20_0000, &mut g),
        Err(Error::PartialBlock {
            block: Iova(0x20_0000),
            size: 0x20_0000
        })
    );
    // One page inside the block.
    assert!(matches!(
        t.unmap(Iova(0x21_0000), 0x1000, &mut g),
        Err(Error::PartialBlock { .. })
    ));
    assert_eq!(leaves(&t), before);
    assert!(g.is_empty());
    // Holes are fine; the size unmapped counts only what was mapped.
    assert_eq!(t.unmap(Iova(0), 0x40_0000, &mut g).unwrap(), 0x20_1000);
    assert_eq!(t.unmap(Iova(0), 0x40_0000, &mut g).unwrap(), 0);
    release(&t, &mut g);
}

// spec: P3
#[test]
fn gather_ranges_and_deferred_free() {
    let mut t = pt(Stage::Stage1, Granule::Size4K, 48, 48);
    t.map(Iova(0x20_0000), PhysAddr(0), 0x20_0000, RW | Prot::NOEXEC)
        .unwrap();
    // Pages under an L3 table (misaligned PA), then a block next to it.
    t.map(Iova(0x40_0000), PhysAddr(0x1000), 0x20_0000, RW)
        .unwrap();
    let live = t.allocator().live();
    assert_eq!(live, 4); // root(L0), L1, L2, L3
    let mut g = Gather::new();
    // Partial page range: leaf-only range with TTL=3.
    assert_eq!(t.unmap(Iova(0x40_0000), 0x3000, &mut g).unwrap(), 0x3000);
    assert_eq!(
        g.ranges(),
        &[InvalRange {
            iova: Iova(0x40_0000),
            size: 0x3000,
            granule: Granule::Size4K,
            leaf: true,
            level: Some(3)
        }]
    );
    assert_eq!(g.freed_tables(), 0);
    // The rest of the L3 table's span: the table is retired and its range becomes non-leaf.
    assert_eq!(
        t.unmap(Iova(0x40_0000), 0x20_0000, &mut g).unwrap(),
        0x20_0000 - 0x3000
    );
    assert_eq!(g.freed_tables(), 1);
    assert_eq!(
        g.ranges(),
        &[InvalRange {
            iova: Iova(0x40_0000),
            size: 0x20_0000,
            granule: Granule::Size4K,
            leaf: false,
            level: None
        }]
    );
    // Freed only on release.
    assert_eq!(t.allocator().live(), live);
    // Adjacent block below merges.
    assert_eq!(
        t.unmap(Iova(0x20_0000), 0x20_0000, &mut g).unwrap(),
        0x20_0000
    );
    assert_eq!(g.ranges().len(), 1);
    assert_eq!(
        (g.ranges()[0].iova, g.ranges()[0].size),
        (Iova(0x20_0000), 0x40_0000)
    );
    release(&t, &mut g);
    assert!(g.is_empty());
    // Released into the pool, not to the allocator: another CPU's stale pointer may still reach
    // it while `&self` callers exist. A map reuses it rather than allocating.
    assert_eq!(t.allocator().live(), live);
    t.map(Iova(0x40_0000), PhysAddr(0x1000), 0x1000, RW)
        .unwrap();
    assert_eq!(t.allocator().live(), live);
    assert_eq!(t.iova_to_phys(Iova(0x40_0000)), Some(PhysAddr(0x1000)));
    assert_eq!(t.unmap(Iova(0x40_0000), 0x20_0000, &mut g).unwrap(), 0x1000);
    release(&t, &mut g);
    // Through `&mut`, the pool goes back to the allocator.
    assert_eq!(t.reclaim(), 1);
    assert_eq!(t.allocator().live(), live - 1);
    assert_eq!(t.reclaim(), 0);
    // A gather is tied to its table.
    let other = pt(Stage::Stage1, Granule::Size4K, 48, 48);
    other.map(Iova(0), PhysAddr(0), 0x1000, RW).unwrap();
    t.map(Iova(0), PhysAddr(0), 0x1000, RW).unwrap();
    assert_eq!(t.unmap(Iova(0), 0x1000, &mut g).unwrap(), 0x1000);
    assert_eq!(
        other.unmap(Iova(0), 0x1000, &mut g),
        Err(Error::ForeignGather)
    );
    // SAFETY: no SMMU.
    assert_eq!(unsafe { other.release(&mut g) }, Err(Error::ForeignGather));
    release(&t, &mut g);
}

// spec: P3
#[test]
fn gather_bounded_widening() {
    let t = pt(Stage::Stage1, Granule::Size4K, 48, 48);
    let mut g = Gather::new();
    for i in 0..(GATHER_RANGES as u64 * 2) {
        t.map(Iova(i * 0x10_0000), PhysAddr(0), 0x1000, RW).unwrap();
    }
    for i in 0..(GATHER_RANGES as u64 * 2) {
        t.unmap(Iova(i * 0x10_0000), 0x1000, &mut g).unwrap();
    }
    assert_eq!(g.ranges().len(), GATHER_RANGES);
    // Every unmapped page is still covered.
    for i in 0..(GATHER_RANGES as u64 * 2) {
        let a = i * 0x10_0000;
        assert!(
            g.ranges()
                .iter()
                .any(|r| r.iova.0 <= a && a + 0x1000 <= r.iova.0 + r.size),
            "{a:#x}"
        );
    }
    release(&t, &mut g);
}

// spec: P3
#[test]
fn whole_subtree_retired_and_dropped_cleanly() {
    let alloc = TestAlloc::default();
    {
        let mut t = PageTable::new(
            Config {
                stage: Stage::Stage2,
                granule: Granule::Size16K,
                ias: 48,
                oas: 48,
            },
            &alloc,
        )
        .unwrap();
        for i in 0..8u64 {
            t.map(
                Iova((1 << 36) + i * 0x10_0000),
                PhysAddr(i * 0x4000),
                0x4000,
                RW,
            )
            .unwrap();
        }
        let live = alloc.live();
        assert_eq!(live, 3); // the 2 concatenated start tables (one allocation), L2, L3
        let mut g = Gather::new();
        // Covers the whole level-1 entry span (64 GiB): L2 and L3 retired.
        assert_eq!(t.unmap(Iova(1 << 36), 1 << 36, &mut g).unwrap(), 8 * 0x4000);
        assert_eq!(g.freed_tables(), 2);
        assert_eq!(alloc.live(), live);
        release(&t, &mut g);
        assert_eq!(alloc.live(), live, "pooled, not freed");
        assert_eq!(t.reclaim(), 2);
        assert_eq!(alloc.live(), 1);
        t.map(Iova(0), PhysAddr(0), 1 << 30, RW).unwrap();
        // Retired again, into the pool this time: the drop frees the pool too.
        assert_eq!(t.unmap(Iova(0), 1 << 30, &mut g).unwrap(), 1 << 30);
        release(&t, &mut g);
    }
    assert_eq!(alloc.live(), 0, "drop frees everything");
}

// spec: P4
#[test]
fn non_coherent_sync_covers_every_write() {
    let alloc = NcAlloc::default();
    let t = PageTable::new(
        Config {
            stage: Stage::Stage1,
            granule: Granule::Size4K,
            ias: 39,
            oas: 40,
        },
        &alloc,
    )
    .unwrap();
    let c = t.stage1_config().unwrap();
    assert_eq!(c.walk.sh, Shareability::Outer);
    assert_eq!(c.walk.irgn, Cacheability::NonCacheable);
    let _ = alloc.take_syncs();
    t.map(Iova(0x1000), PhysAddr(0x1000), 0x100_0000 - 0x1000, RW)
        .unwrap();
    let syncs = alloc.take_syncs();
    // Every leaf descriptor written lies in some synced range.
    let mut leaf_addrs = Vec::new();
    t.walk(|e| {
        if let WalkEntry::Table { table, level, .. } = *e {
            leaf_addrs.push((table.0, level));
        }
    });
    assert!(!syncs.is_empty());
    // One sync per table touched plus one per new table, not one per descriptor.
    assert!(syncs.len() <= 2 * tables(&t), "{} syncs", syncs.len());
    let mut g = Gather::new();
    t.unmap(Iova(0x1000), 0x2000, &mut g).unwrap();
    let syncs = alloc.take_syncs();
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0].1, 16);
    release(&t, &mut g);
}

// spec: P2
#[test]
fn argument_errors() {
    let t = pt(Stage::Stage1, Granule::Size16K, 36, 40);
    let mut g = Gather::new();
    assert_eq!(
        t.map(Iova(0x1000), PhysAddr(0), 0x4000, RW),
        Err(Error::Misaligned)
    );
    assert_eq!(
        t.map(Iova(0), PhysAddr(0x1000), 0x4000, RW),
        Err(Error::Misaligned)
    );
    assert_eq!(
        t.map(Iova(0), PhysAddr(0), 0x1000, RW),
        Err(Error::Misaligned)
    );
    assert_eq!(t.map(Iova(0), PhysAddr(0), 0, RW), Err(Error::EmptyRange));
    assert_eq!(
        t.map(Iova(!0x3fff_u64), PhysAddr(0), 0x4000, RW),
        Err(Error::OutOfRange)
    );
    assert_eq!(
        t.map(Iova(0), PhysAddr((1 << 40) - 0x4000), 0x8000, RW),
        Err(Error::OutOfRange)
    );
    assert_eq!(
        t.unmap(Iova(1 << 36), 0x4000, &mut g),
        Err(Error::OutOfRange)
    );
    assert_eq!(
        t.unmap(Iova(0), !0x3fff_u64, &mut g),
        Err(Error::OutOfRange)
    );
    assert_eq!(t.iova_to_phys(Iova(u64::MAX)), None);
    assert_eq!(t.allocator().live(), 1);
    assert!(!format!(
        "{}",
        Error::PartialBlock {
            block: Iova(0x20_0000),
            size: 0x20_0000
        }
    )
    .is_empty());
}

// spec: P2 (walk reports the placement map chose)
#[test]
fn walk_reports_tables_then_leaves() {
    let t = pt(Stage::Stage1, Granule::Size4K, 48, 48);
    t.map(Iova(0x1000), PhysAddr(0x9000), 0x1000, RW).unwrap();
    let mut items = Vec::new();
    t.walk(|e| items.push(*e));
    assert_eq!(items.len(), 5);
    assert!(matches!(
        items[0],
        WalkEntry::Table {
            level: 0,
            desc: 0,
            ..
        }
    ));
    assert!(matches!(
        items[3],
        WalkEntry::Table {
            level: 3,
            iova: Iova(0),
            span: 0x20_0000,
            ..
        }
    ));
    assert!(matches!(
        items[4],
        WalkEntry::Leaf {
            iova: Iova(0x1000),
            pa: PhysAddr(0x9000),
            size: 0x1000,
            level: 3,
            ..
        }
    ));
}

// spec: P5 (found by the pagetable_ops fuzz target: a failed start-table allocation used to drop
// a half-built table)
#[test]
fn new_fails_cleanly_without_memory_or_with_bad_memory() {
    let alloc = TestAlloc::default();
    alloc.hal().set_alloc_budget(Some(0));
    let cfg = Config {
        stage: Stage::Stage1,
        granule: Granule::Size4K,
        ias: 48,
        oas: 48,
    };
    assert!(matches!(
        PageTable::new(cfg, &alloc),
        Err(Error::OutOfMemory)
    ));
    assert_eq!(alloc.live(), 0);
    // An allocator handing out a PA above 2^OAS gets BadTableMemory, and its page back.
    let high = TestAlloc::new(HostHal::new().with_pa_base(1 << 32));
    let cfg = Config {
        stage: Stage::Stage2,
        granule: Granule::Size4K,
        ias: 32,
        oas: 32,
    };
    assert!(matches!(
        PageTable::new(cfg, &high),
        Err(Error::BadTableMemory)
    ));
    assert_eq!((high.live(), high.total()), (0, 1));
    assert_eq!(high.hal().leaks(), []);
}

// spec: P1 — every stage-2 geometry is one DDI 0487 permits: (start level, concatenated tables,
// T0SZ) checked against Tables D8-21/D8-22/D8-23 (4K), D8-31/D8-32 (16K), D8-39/D8-40 (64K), for
// every IAS from 32 to 48 (52 with 64K), without FEAT_TTST, DS or LPA2.
#[test]
fn stage2_geometry_is_permitted_by_the_spec_tables() {
    // (granule, start level, concatenated tables, lowest T0SZ, highest T0SZ)
    let permitted: &[(Granule, u8, u8, u32, u32)] = &[
        (Granule::Size4K, 0, 1, 16, 24),
        (Granule::Size4K, 1, 1, 25, 33),
        (Granule::Size4K, 1, 2, 24, 24),
        (Granule::Size4K, 1, 4, 23, 23),
        (Granule::Size4K, 1, 8, 22, 22),
        (Granule::Size4K, 1, 16, 21, 21),
        (Granule::Size4K, 2, 1, 34, 39),
        (Granule::Size4K, 2, 2, 33, 33),
        (Granule::Size4K, 2, 4, 32, 32),
        (Granule::Size4K, 2, 8, 31, 31),
        (Granule::Size4K, 2, 16, 30, 30),
        (Granule::Size16K, 1, 1, 17, 27),
        (Granule::Size16K, 1, 2, 16, 16),
        (Granule::Size16K, 2, 1, 28, 38),
        (Granule::Size16K, 2, 2, 27, 27),
        (Granule::Size16K, 2, 4, 26, 26),
        (Granule::Size16K, 2, 8, 25, 25),
        (Granule::Size16K, 2, 16, 24, 24),
        (Granule::Size64K, 1, 1, 12, 21), // 12-15 need FEAT_LPA (IAS > 48)
        (Granule::Size64K, 2, 1, 22, 34),
        (Granule::Size64K, 2, 2, 21, 21),
        (Granule::Size64K, 2, 4, 20, 20),
        (Granule::Size64K, 2, 8, 19, 19),
        (Granule::Size64K, 2, 16, 18, 18),
    ];
    for granule in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
        let max = if granule == Granule::Size64K { 52 } else { 48 };
        for ias in 32..=max {
            let oas = if ias > 48 { 52 } else { 48 };
            let c = pt(Stage::Stage2, granule, ias, oas)
                .stage2_config()
                .unwrap();
            let t0sz = u32::from(c.t0sz);
            assert!(
                permitted.iter().any(|&(gr, l, n, lo, hi)| {
                    gr == granule
                        && l == c.start_level
                        && n == c.concatenated
                        && (lo..=hi).contains(&t0sz)
                }),
                "{granule} IAS {ias}: start level {} with {} tables and T0SZ {t0sz} is not permitted",
                c.start_level,
                c.concatenated
            );
        }
    }
}

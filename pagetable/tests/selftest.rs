//! The io-pgtable-arm selftest matrix, re-done: page-size sets {4K|2M|1G, 16K|32M, 64K|512M} ×
//! (IAS, OAS) from {32, 36, 40, 42, 44, 48} with IAS <= OAS × stage 1 and stage 2.
mod common;

use common::TestAlloc;
use smmu_pagetable::*;

const SIZES: [u32; 6] = [32, 36, 40, 42, 44, 48];
const SZ_1G: u64 = 1 << 30;

fn expected_bitmap(g: Granule) -> u64 {
    match g {
        Granule::Size4K => (1 << 12) | (1 << 21) | (1 << 30),
        Granule::Size16K => (1 << 14) | (1 << 25),
        Granule::Size64K => (1 << 16) | (1 << 29),
    }
}

fn sizes(bitmap: u64) -> impl Iterator<Item = u64> {
    (0..64)
        .filter(move |b| bitmap & (1 << b) != 0)
        .map(|b| 1u64 << b)
}

fn release<A: TableAllocator>(pt: &PageTable<A>, g: &mut Gather) {
    // SAFETY: no SMMU walks these tables in a test.
    unsafe { pt.release(g) }.unwrap();
}

// spec: P1, P2, P3, P5
fn run(stage: Stage, granule: Granule, ias: u32, oas: u32) {
    let ctx = format!("{stage:?} {granule} ias {ias} oas {oas}");
    let alloc = TestAlloc::default();
    {
        let mut pt = PageTable::new(
            Config {
                stage,
                granule,
                ias,
                oas,
            },
            &alloc,
        )
        .unwrap();
        let prot = Prot::READ | Prot::WRITE | Prot::NOEXEC | Prot::CACHE;
        let bitmap = pt.pgsize_bitmap();
        assert_eq!(bitmap, expected_bitmap(granule), "{ctx}");

        // Empty lookups.
        for a in [0, 42, SZ_1G + 42, (1u64 << ias) - 1] {
            assert_eq!(pt.iova_to_phys(Iova(a)), None, "{ctx}: empty lookup {a:#x}");
        }

        // One mapping per page size, each refused a second time (overlap).
        let mut iova = 0;
        for size in sizes(bitmap) {
            pt.map(Iova(iova), PhysAddr(iova), size, prot)
                .unwrap_or_else(|e| panic!("{ctx}: map {size:#x}: {e}"));
            let e = pt.map(Iova(iova), PhysAddr(iova + size), size, prot);
            assert_eq!(
                e,
                Err(Error::AlreadyMapped { iova: Iova(iova) }),
                "{ctx}: overlap {size:#x}"
            );
            if size > granule.size() {
                let mid = iova + size / 2;
                let e = pt.map(Iova(mid), PhysAddr(0), size, prot);
                assert_eq!(
                    e,
                    Err(Error::AlreadyMapped { iova: Iova(mid) }),
                    "{ctx}: overlap mid {size:#x}"
                );
            }
            assert_eq!(
                pt.iova_to_phys(Iova(iova + 42)),
                Some(PhysAddr(iova + 42)),
                "{ctx}"
            );
            iova += SZ_1G;
        }

        // Full unmap and remap.
        let mut gather = Gather::new();
        iova = 0;
        for size in sizes(bitmap) {
            assert_eq!(
                pt.unmap(Iova(iova), size, &mut gather),
                Ok(size),
                "{ctx}: unmap {size:#x}"
            );
            assert_eq!(pt.iova_to_phys(Iova(iova + 42)), None, "{ctx}");
            release(&pt, &mut gather);
            pt.map(Iova(iova), PhysAddr(iova), size, prot)
                .unwrap_or_else(|e| panic!("{ctx}: remap {size:#x}: {e}"));
            assert_eq!(
                pt.iova_to_phys(Iova(iova + 42)),
                Some(PhysAddr(iova + 42)),
                "{ctx}"
            );
            iova += SZ_1G;
        }

        // The last largest page below 2^IAS.
        let big = sizes(bitmap).last().unwrap();
        let last = (1u64 << ias) - big;
        let pa = big; // aligned and below 2^OAS
        pt.map(Iova(last), PhysAddr(pa), big, prot)
            .unwrap_or_else(|e| panic!("{ctx}: last page: {e}"));
        assert_eq!(
            pt.iova_to_phys(Iova(last + 42)),
            Some(PhysAddr(pa + 42)),
            "{ctx}"
        );
        assert_eq!(
            pt.iova_to_phys(Iova((1 << ias) - 1)),
            Some(PhysAddr(pa + big - 1)),
            "{ctx}"
        );
        let g = granule.size();
        assert_eq!(
            pt.map(Iova(1 << ias), PhysAddr(0), g, prot),
            Err(Error::OutOfRange),
            "{ctx}"
        );
        assert_eq!(
            pt.map(Iova(last), PhysAddr(0), 2 * big, prot),
            Err(Error::OutOfRange),
            "{ctx}"
        );

        // Unmap everything: all tables but the start table are retired.
        assert!(
            pt.unmap(Iova(0), 1 << ias, &mut gather).unwrap() > 0,
            "{ctx}"
        );
        assert_eq!(pt.iova_to_phys(Iova(last)), None, "{ctx}");
        release(&pt, &mut gather);
        // Released into the pool; `reclaim` (through `&mut`) frees them.
        assert_eq!(alloc.live(), 1 + pt.pooled_tables(), "{ctx}");
        pt.reclaim();
        assert_eq!(alloc.live(), 1, "{ctx}: only the start table is left");
    }
    assert_eq!(alloc.live(), 0, "{ctx}: leak");
}

fn each_config(mut f: impl FnMut(Stage, Granule, u32, u32)) {
    for granule in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
        for &ias in &SIZES {
            for &oas in SIZES.iter().filter(|&&o| o >= ias) {
                for stage in [Stage::Stage1, Stage::Stage2] {
                    f(stage, granule, ias, oas);
                }
            }
        }
    }
}

// spec: P1, P2, P3
#[test]
#[cfg_attr(miri, ignore)]
fn selftest_matrix_full() {
    let mut n = 0;
    each_config(|s, g, i, o| {
        run(s, g, i, o);
        n += 1;
    });
    assert_eq!(n, 3 * 21 * 2);
}

// spec: P1, P2, P3 (the subset Miri runs: every granule and both stages, smallest and largest
// sizes, stage-2 concatenation; smaller under Miri, where 64K tables are costly to interpret)
#[test]
fn selftest_matrix_subset() {
    let subset: &[(Stage, Granule, u32, u32)] = if cfg!(miri) {
        &[
            (Stage::Stage1, Granule::Size4K, 32, 48),
            (Stage::Stage2, Granule::Size4K, 48, 48),
            (Stage::Stage2, Granule::Size4K, 40, 42),
            (Stage::Stage1, Granule::Size16K, 48, 48),
            (Stage::Stage2, Granule::Size16K, 36, 40),
            (Stage::Stage2, Granule::Size64K, 32, 36),
        ]
    } else {
        &[
            (Stage::Stage1, Granule::Size4K, 32, 48),
            (Stage::Stage1, Granule::Size4K, 48, 48),
            (Stage::Stage2, Granule::Size4K, 32, 48),
            (Stage::Stage2, Granule::Size4K, 48, 48),
            (Stage::Stage2, Granule::Size4K, 40, 42),
            (Stage::Stage2, Granule::Size4K, 42, 44),
            (Stage::Stage1, Granule::Size16K, 32, 48),
            (Stage::Stage1, Granule::Size16K, 48, 48),
            (Stage::Stage2, Granule::Size16K, 32, 48),
            (Stage::Stage2, Granule::Size16K, 48, 48),
            (Stage::Stage1, Granule::Size64K, 32, 48),
            (Stage::Stage1, Granule::Size64K, 48, 48),
            (Stage::Stage2, Granule::Size64K, 32, 48),
            (Stage::Stage2, Granule::Size64K, 48, 48),
        ]
    };
    for &(stage, granule, ias, oas) in subset {
        run(stage, granule, ias, oas);
    }
}

//! Arbitrary configurations and map/unmap/lookup/walk/release sequences on `smmu-pagetable`
//! (SPEC P2, P3, P5, B1): typed errors, never a panic; a successful map translates, a successful
//! unmap leaves nothing behind, and dropping the table returns every page to the allocator.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use smmu::host::{HalTables, HostHal};
use smmu_pagetable::{Config, Gather, Granule, Iova, PageTable, PhysAddr, Prot, Stage};

/// Fake physical addresses of the tables: low enough that every output-address size holds
/// them (at most `MAX_TABLES` tables of up to 64 KiB, with the HAL's gaps, stay below 2^32).
const PA_BASE: u64 = 0x1000_0000;
/// Tables an input may allocate before the allocator reports out of memory.
const MAX_TABLES: usize = 3000;

#[derive(Arbitrary, Debug)]
enum Op {
    Map {
        page: u32,
        pages: u16,
        pa_page: u32,
        prot: u8,
    },
    MapRaw {
        iova: u64,
        pa: u64,
        size: u64,
        prot: u8,
    },
    Unmap {
        page: u32,
        pages: u16,
    },
    UnmapRaw {
        iova: u64,
        size: u64,
    },
    Lookup {
        iova: u64,
    },
    Walk,
    Release,
}

#[derive(Arbitrary, Debug)]
struct Input {
    stage2: bool,
    granule: u8,
    ias: u8,
    oas: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let granule = match input.granule % 3 {
        0 => Granule::Size4K,
        1 => Granule::Size16K,
        _ => Granule::Size64K,
    };
    let stage = if input.stage2 {
        Stage::Stage2
    } else {
        Stage::Stage1
    };
    let cfg = Config {
        stage,
        granule,
        ias: u32::from(input.ias % 56),
        oas: u32::from(input.oas % 56),
    };
    // Tables on the strict host HAL: a double or mismatched free, or a lookup outside a live
    // table, panics.
    let alloc = HalTables::<_>::new(HostHal::new().with_pa_base(PA_BASE));
    alloc.hal().set_alloc_budget(Some(MAX_TABLES));
    {
        let Ok(pt) = PageTable::new(cfg, &alloc) else {
            return;
        };
        let g = granule.shift();
        let mut gather = Gather::new();
        for op in input.ops.iter().take(64) {
            match *op {
                Op::Map {
                    page,
                    pages,
                    pa_page,
                    prot,
                } => {
                    let (iova, pa) = (u64::from(page) << g, u64::from(pa_page) << g);
                    let size = u64::from(pages % 1024) << g;
                    let prot = Prot::from_bits_truncate(u32::from(prot));
                    if pt.map(Iova(iova), PhysAddr(pa), size, prot).is_ok() {
                        assert_eq!(pt.iova_to_phys(Iova(iova)), Some(PhysAddr(pa)));
                        assert_eq!(
                            pt.iova_to_phys(Iova(iova + size - 1)),
                            Some(PhysAddr(pa + size - 1))
                        );
                    }
                }
                Op::MapRaw {
                    iova,
                    pa,
                    size,
                    prot,
                } => {
                    let prot = Prot::from_bits_truncate(u32::from(prot));
                    // Huge sizes would take long to fill with pages: bound them.
                    if size <= 1 << 30 {
                        let _ = pt.map(Iova(iova), PhysAddr(pa), size, prot);
                    }
                }
                Op::Unmap { page, pages } => {
                    let iova = u64::from(page) << g;
                    let size = u64::from(pages % 1024) << g;
                    if pt.unmap(Iova(iova), size, &mut gather).is_ok() {
                        assert_eq!(pt.iova_to_phys(Iova(iova)), None);
                    }
                }
                Op::UnmapRaw { iova, size } => {
                    let _ = pt.unmap(Iova(iova), size, &mut gather);
                }
                Op::Lookup { iova } => {
                    let _ = pt.iova_to_phys(Iova(iova));
                }
                Op::Walk => {
                    let mut n = 0usize;
                    pt.walk(|_| n += 1);
                }
                Op::Release => {
                    // SAFETY: no SMMU walks this table.
                    unsafe { pt.release(&mut gather) }.expect("own gather");
                }
            }
        }
        // SAFETY: as above.
        unsafe { pt.release(&mut gather) }.expect("own gather");
    }
    assert_eq!(alloc.hal().leaks(), [], "leaked tables");
});

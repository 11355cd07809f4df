//! Arbitrary configurations and map/unmap/lookup/walk/release sequences on `smmu-pagetable`
//! (SPEC P2, P3, P5, B1): typed errors, never a panic; a successful map translates, a successful
//! unmap leaves nothing behind, and dropping the table returns every page to the allocator.
#![no_main]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use smmu_pagetable::{
    Config, Gather, Granule, Iova, PageTable, PhysAddr, Prot, Stage, TableAllocator, TableMem,
};

/// Tables from the global allocator with fake physical addresses below 2^32 (one 1 MiB-aligned
/// slot per allocation, so every OAS works), counting live ones.
#[derive(Default)]
struct Alloc {
    slots: RefCell<Vec<Option<NonNull<u64>>>>,
    live: Cell<usize>,
}

const PA_BASE: u64 = 0x1000_0000;
const SLOT: u64 = 1 << 20;
const MAX_SLOTS: usize = 3000;

// SAFETY: zeroed, size-aligned allocations from the global allocator, each freed once with its
// own layout; every fake PA is slot-aligned (so aligned to any table size) and maps back to its
// allocation through `slots`, which keeps the pointer's provenance.
unsafe impl TableAllocator for Alloc {
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        let mut slots = self.slots.borrow_mut();
        if slots.len() >= MAX_SLOTS {
            return None;
        }
        let layout = Layout::from_size_align(size, size).ok()?;
        // SAFETY: non-zero size; the alignment (>= 4096) suits u64.
        #[allow(clippy::cast_ptr_alignment)]
        let va = NonNull::new(unsafe { alloc_zeroed(layout) }.cast::<u64>())?;
        slots.push(Some(va));
        self.live.set(self.live.get() + 1);
        Some(TableMem {
            pa: PhysAddr(PA_BASE + (slots.len() as u64 - 1) * SLOT),
            va,
        })
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        let i = ((table.pa.0 - PA_BASE) / SLOT) as usize;
        let va = self.slots.borrow_mut()[i].take().expect("double free");
        assert_eq!(va, table.va);
        self.live.set(self.live.get() - 1);
        // SAFETY: allocated above with this layout.
        unsafe {
            dealloc(
                va.as_ptr().cast(),
                Layout::from_size_align_unchecked(size, size),
            )
        };
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        let i = ((pa.0 - PA_BASE) / SLOT) as usize;
        self.slots.borrow()[i].expect("live table")
    }
}

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
    let alloc = Alloc::default();
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
    assert_eq!(alloc.live.get(), 0, "leaked tables");
});

//! Test table allocator: a chunked arena with fake physical addresses, counting live tables so
//! that leaks and double frees are caught. Provenance-clean, so it runs under Miri.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::ptr::NonNull;

use smmu_pagetable::{PhysAddr, TableAllocator, TableMem};

/// Every chunk serves one table size. The largest table this crate allocates is 64 KiB (one 64K
/// granule; concatenation only happens with 4K and 16K, up to 16 × 4 KiB). Under Miri, whose
/// allocations cost per byte, a chunk holds exactly one such table.
const CHUNK: usize = if cfg!(miri) { 1 << 16 } else { 1 << 20 };
/// Fake physical base: below 2^32 so that every OAS works.
pub const PA_BASE: u64 = 0x4000_0000;

#[derive(Default)]
struct Inner {
    chunks: Vec<NonNull<u8>>,
    /// Per size: (chunk, next offset) of the chunk being carved.
    bump: HashMap<usize, (usize, usize)>,
    free: HashMap<usize, Vec<u64>>,
    live: BTreeMap<u64, usize>,
    allocs: usize,
    frees: usize,
}

/// The test allocator. `COHERENT = true`; see [`NcAlloc`] for the non-coherent flavour.
#[derive(Default)]
pub struct TestAlloc {
    inner: RefCell<Inner>,
    /// Allocations left before `alloc_table` starts failing (`None` = unlimited).
    pub fail_after: Cell<Option<usize>>,
}

impl TestAlloc {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tables currently allocated.
    pub fn live(&self) -> usize {
        self.inner.borrow().live.len()
    }

    /// Total allocations so far.
    pub fn allocs(&self) -> usize {
        self.inner.borrow().allocs
    }

    /// Whether `pa..pa+len` lies inside one live table.
    pub fn inside_live(&self, pa: u64, len: usize) -> bool {
        let inner = self.inner.borrow();
        inner
            .live
            .range(..=pa)
            .next_back()
            .is_some_and(|(&base, &size)| pa + len as u64 <= base + size as u64)
    }

    fn va_of(inner: &Inner, pa: u64) -> NonNull<u8> {
        let off = (pa - PA_BASE) as usize;
        let chunk = inner.chunks[off / CHUNK];
        // SAFETY: `off % CHUNK` is inside the chunk's allocation.
        unsafe { chunk.add(off % CHUNK) }
    }

    /// The PA of a VA inside the arena (for the non-coherent sync check).
    pub fn pa_of(&self, va: NonNull<u64>) -> Option<u64> {
        let inner = self.inner.borrow();
        let a = va.as_ptr().addr();
        inner.chunks.iter().enumerate().find_map(|(i, c)| {
            let base = c.as_ptr().addr();
            (a >= base && a < base + CHUNK).then(|| PA_BASE + (i * CHUNK + (a - base)) as u64)
        })
    }
}

impl Drop for TestAlloc {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(CHUNK, CHUNK).unwrap();
        for c in self.inner.get_mut().chunks.drain(..) {
            // SAFETY: allocated in `alloc_table` with this layout.
            unsafe { dealloc(c.as_ptr(), layout) };
        }
    }
}

// SAFETY: tables are carved from 1 MiB chunks aligned to 1 MiB at size-aligned offsets, so both
// the VA and the fake PA are aligned to the size; fresh chunks are zeroed and reused tables are
// re-zeroed; `live` tracks every table so a double or mismatched free panics instead of
// corrupting; `phys_to_virt` is the inverse of the PA assignment and keeps the chunk's provenance.
unsafe impl TableAllocator for TestAlloc {
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        assert!(
            size.is_power_of_two() && (4096..=CHUNK).contains(&size),
            "bad table size {size}"
        );
        if let Some(n) = self.fail_after.get() {
            if n == 0 {
                return None;
            }
            self.fail_after.set(Some(n - 1));
        }
        let mut inner = self.inner.borrow_mut();
        inner.allocs += 1;
        let pa = if let Some(pa) = inner.free.get_mut(&size).and_then(Vec::pop) {
            let va = Self::va_of(&inner, pa);
            // SAFETY: the table lies inside its chunk.
            unsafe { va.as_ptr().write_bytes(0, size) };
            pa
        } else {
            let (chunk, off) = match inner.bump.get(&size) {
                Some(&(c, o)) if o + size <= CHUNK => (c, o),
                _ => {
                    let layout = Layout::from_size_align(CHUNK, CHUNK).unwrap();
                    // SAFETY: non-zero size.
                    let p = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("host OOM");
                    inner.chunks.push(p);
                    (inner.chunks.len() - 1, 0)
                }
            };
            inner.bump.insert(size, (chunk, off + size));
            PA_BASE + (chunk * CHUNK + off) as u64
        };
        assert!(
            inner.live.insert(pa, size).is_none(),
            "allocator handed out {pa:#x} twice"
        );
        let va = Self::va_of(&inner, pa).cast();
        Some(TableMem {
            pa: PhysAddr(pa),
            va,
        })
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        let mut inner = self.inner.borrow_mut();
        match inner.live.remove(&table.pa.0) {
            Some(s) if s == size => {}
            Some(s) => panic!(
                "table {:#x} freed with size {size}, allocated with {s}",
                table.pa.0
            ),
            None => panic!("double free (or foreign free) of table {:#x}", table.pa.0),
        }
        assert_eq!(
            Self::va_of(&inner, table.pa.0).cast(),
            table.va,
            "VA/PA mismatch on free"
        );
        inner.frees += 1;
        inner.free.entry(size).or_default().push(table.pa.0);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        let inner = self.inner.borrow();
        assert!(
            inner
                .live
                .range(..=pa.0)
                .next_back()
                .is_some_and(|(&b, &s)| pa.0 < b + s as u64),
            "phys_to_virt of a PA that is not a live table: {:#x}",
            pa.0
        );
        Self::va_of(&inner, pa.0).cast()
    }
}

/// Non-coherent flavour: records every `sync` and checks it lies inside a live table.
#[derive(Default)]
pub struct NcAlloc {
    pub inner: TestAlloc,
    pub syncs: RefCell<Vec<(u64, usize)>>,
}

// SAFETY: forwards to `TestAlloc`, whose contract holds; `sync` only records.
unsafe impl TableAllocator for NcAlloc {
    const COHERENT: bool = false;

    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        self.inner.alloc_table(size)
    }

    unsafe fn free_table(&self, table: TableMem, size: usize) {
        // SAFETY: forwarded caller guarantee.
        unsafe { self.inner.free_table(table, size) }
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        self.inner.phys_to_virt(pa)
    }

    fn sync(&self, va: NonNull<u64>, len: usize) {
        let pa = self.inner.pa_of(va).expect("sync outside the arena");
        assert!(
            self.inner.inside_live(pa, len),
            "sync of {len} bytes at {pa:#x} outside a live table"
        );
        self.syncs.borrow_mut().push((pa, len));
    }
}

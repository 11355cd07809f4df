//! [`HostHal`]: a strict [`Hal`] on the host heap.
//!
//! It runs under Miri with Tree Borrows: it keeps the real allocation pointers and resolves
//! physical addresses through its table of allocations (never an integer-to-pointer cast), and
//! memory is only touched through raw pointers derived from those allocations. (The one
//! exception is a caller's choice: [`HostHal::identity`] exposes each allocation's address as
//! its physical address, for code that turns addresses back into pointers itself.)

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::boxed::Box;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::vec::Vec;

use super::Held;
use crate::hal::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, PhysRange};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test must not turn every later access into a second panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first fake physical address a [`HostHal`] hands out unless told otherwise
/// ([`HostHal::with_pa_base`]): below 4 GiB, so that every output-address size takes it.
pub const FAKE_PA_BASE: u64 = 0x8000_0000;

/// Fake physical address space left unused after each allocation, so that a range running
/// off the end of one allocation never lands in the next one.
const PA_GUARD: u64 = 0x1000;

/// A broken promise a [`HostHal`] saw from the code using it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalFault {
    /// `dma_free` of a region no live allocation starts at: never handed out by this HAL, or
    /// freed already.
    UnknownFree {
        /// The region's physical address.
        pa: PhysAddr,
        /// The region's size.
        size: usize,
    },
    /// `dma_free` of a live allocation with another size or CPU address than it was handed
    /// out with.
    MismatchedFree {
        /// The allocation's physical address.
        pa: PhysAddr,
        /// The size given back.
        size: usize,
        /// The size handed out.
        allocated: usize,
        /// Whether the CPU address given back was the one handed out.
        same_va: bool,
    },
    /// `dma_free` of an allocation a live `map_phys` mapping still reaches.
    FreedWhileMapped {
        /// The allocation's physical address.
        pa: PhysAddr,
    },
    /// `unmap_phys` of a pointer and size that no live mapping has.
    UnknownUnmap {
        /// The size given.
        size: usize,
    },
}

impl fmt::Display for HalFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HalFault::UnknownFree { pa, size } => write!(
                f,
                "dma_free of {size} bytes at {:#x}: not allocated here, or freed already",
                pa.0
            ),
            HalFault::MismatchedFree {
                pa,
                size,
                allocated,
                same_va,
            } => write!(
                f,
                "dma_free of {:#x} with {size} bytes (allocated {allocated}){}",
                pa.0,
                if same_va { "" } else { " and another va" }
            ),
            HalFault::FreedWhileMapped { pa } => {
                write!(f, "dma_free of {:#x} while map_phys still maps it", pa.0)
            }
            HalFault::UnknownUnmap { size } => {
                write!(f, "unmap_phys of an unknown mapping ({size} bytes)")
            }
        }
    }
}

/// One live heap allocation.
struct Allocation {
    pa: u64,
    ptr: Held<u8>,
    layout: Layout,
}

impl Allocation {
    fn end(&self) -> u64 {
        self.pa + self.layout.size() as u64
    }

    fn contains(&self, pa: u64, size: u64) -> bool {
        pa >= self.pa && pa.checked_add(size).is_some_and(|end| end <= self.end())
    }

    fn overlaps(&self, pa: u64, size: u64) -> bool {
        pa < self.end() && self.pa < pa.saturating_add(size)
    }
}

/// One live `map_phys` mapping.
struct Mapping {
    va: Held<u8>,
    size: usize,
    pa: u64,
    attr: MapAttr,
}

#[derive(Default)]
struct HalState {
    /// Live allocations by physical address (they never overlap).
    allocs: BTreeMap<u64, Allocation>,
    mappings: Vec<Mapping>,
    /// Where the next fake physical address search starts; `None`: identity addresses.
    next_pa: Option<u64>,
    total_allocs: usize,
    /// `Some(n)`: the next `n` allocations succeed, later ones fail with `NoMemory`.
    alloc_budget: Option<usize>,
    faults: Vec<HalFault>,
}

impl HalState {
    /// The live allocation holding all of `[pa, pa + size)`.
    fn holding(&self, pa: u64, size: u64) -> Option<&Allocation> {
        let (_, a) = self.allocs.range(..=pa).next_back()?;
        a.contains(pa, size).then_some(a)
    }

    /// A live allocation overlapping `[pa, pa + size)`: allocations do not overlap each
    /// other, so the last one starting before the range's end is the only candidate.
    fn overlapping(&self, pa: u64, size: u64) -> Option<&Allocation> {
        let (_, a) = self.allocs.range(..pa.saturating_add(size)).next_back()?;
        a.overlaps(pa, size).then_some(a)
    }
}

type RelaxHook = Box<dyn FnMut(usize) + Send>;

/// A strict [`Hal`] on the host heap, for unit tests, integration tests, benches and fuzz
/// targets.
///
/// - `dma_alloc` takes zeroed memory from the global allocator with the requested alignment
///   and gives it a **fake physical address** from a bump counter starting at
///   [`FAKE_PA_BASE`] (or [`HostHal::with_pa_base`]), aligned to the requested alignment, with
///   a 4 KiB hole after each region: the pa is not the pointer value, so code that confuses
///   pa and va fails. [`HostHal::identity`] instead uses each block's address as its pa.
/// - Every live allocation is tracked. `dma_free` of something not handed out (or freed
///   already), with another size or va, or of memory still mapped, is a [`HalFault`]: a panic,
///   or with [`HostHal::recording_faults`] an entry in [`HostHal::faults`] (the memory then
///   stays allocated until the HAL is dropped). So is an `unmap_phys` of an unknown mapping.
/// - Leaks: [`HostHal::leaks`] lists what is still allocated. Memory still allocated when the
///   HAL is dropped is freed then (so Miri sees no leak), without complaint: check first.
/// - `map_phys(pa, size)` succeeds when `[pa, pa + size)` lies inside one live allocation (or
///   one planted with [`HostHal::alloc_at`]) and returns a pointer into it; anything else is
///   `MapRefused`. `is_ram` answers the same question.
/// - Cache maintenance: counted, and reported available or not
///   ([`HostHal::with_cache_maintenance`]) for the tests of a non-coherent SMMU; the host's
///   memory is coherent, so there is nothing to do.
/// - Counters of live and total allocations, live mappings, `relax`, cache maintenance and
///   `store_entry_qword` calls. [`HostHal::on_relax`] runs a hook on every `relax` (a test can
///   let a register change after a number of polls); [`HostHal::with_relax`] replaces `relax`
///   with a platform's own (a bench's `cpu_relax`).
///
/// The SMMU side of a test reads and writes memory by physical address with
/// [`HostHal::read_u64`] and [`HostHal::write_u64`].
///
/// ```
/// use smmu::host::HostHal;
/// use smmu::{Hal, PhysAddr};
///
/// let hal = HostHal::new();
/// let region = hal.dma_alloc(4096, 4096).unwrap();
/// hal.write_u64(PhysAddr(region.pa.0 + 8), 0x5);
/// // SAFETY: `region.va` is valid for 4096 bytes and nothing else uses it.
/// assert_eq!(unsafe { region.va.cast::<u64>().add(1).read() }, 0x5);
/// assert_eq!(hal.leaks(), [(region.pa, 4096)]);
/// // SAFETY: the region came from `dma_alloc` and is not used again.
/// unsafe { hal.dma_free(region) };
/// assert!(hal.leaks().is_empty());
/// ```
pub struct HostHal {
    state: Mutex<HalState>,
    relaxes: AtomicUsize,
    cleans: AtomicUsize,
    invalidates: AtomicUsize,
    entry_stores: AtomicUsize,
    cache_maintenance: bool,
    record_faults: bool,
    windows: Vec<PhysRange>,
    on_relax: Mutex<Option<RelaxHook>>,
    platform_relax: Option<fn()>,
}

impl Default for HostHal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HostHal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostHal")
            .field("live_allocations", &self.live_allocations())
            .field("live_mappings", &self.live_mappings())
            .field("faults", &lock(&self.state).faults.len())
            .finish_non_exhaustive()
    }
}

impl HostHal {
    /// A HAL with fake physical addresses from [`FAKE_PA_BASE`], no cache maintenance, no
    /// shared windows, panicking on every [`HalFault`].
    pub fn new() -> Self {
        HostHal {
            state: Mutex::new(HalState {
                next_pa: Some(FAKE_PA_BASE),
                ..HalState::default()
            }),
            relaxes: AtomicUsize::new(0),
            cleans: AtomicUsize::new(0),
            invalidates: AtomicUsize::new(0),
            entry_stores: AtomicUsize::new(0),
            cache_maintenance: false,
            record_faults: false,
            windows: Vec::new(),
            on_relax: Mutex::new(None),
            platform_relax: None,
        }
    }

    /// A HAL whose physical addresses are the host addresses of the blocks it hands out, each
    /// block's provenance exposed: for code that turns a physical address back into a pointer
    /// with [`core::ptr::with_exposed_provenance_mut`] (a register backend fetching commands,
    /// [`HalTables::identity`](super::HalTables::identity)). Host addresses are large: they
    /// do not fit a small output-address size. [`HostHal::alloc_at`] is unsupported.
    pub fn identity() -> Self {
        let hal = Self::new();
        lock(&hal.state).next_pa = None;
        hal
    }

    /// Hands out fake physical addresses from `base` on (for example above what a register
    /// field can hold, or below 4 GiB for small output-address sizes).
    pub fn with_pa_base(self, base: u64) -> Self {
        lock(&self.state).next_pa = Some(base);
        self
    }

    /// Reports [`Hal::has_cache_maintenance`] as `yes`.
    pub fn with_cache_maintenance(mut self, yes: bool) -> Self {
        self.cache_maintenance = yes;
        self
    }

    /// Reports these ranges from [`Hal::shared_windows`].
    pub fn with_shared_windows(mut self, windows: &[PhysRange]) -> Self {
        self.windows = windows.to_vec();
        self
    }

    /// Records each [`HalFault`] in [`HostHal::faults`] instead of panicking (for a test of
    /// code that is meant to break a promise, or of one that must not unwind).
    pub fn recording_faults(mut self) -> Self {
        self.record_faults = true;
        self
    }

    /// Makes `relax` call `relax` and nothing else: no count, no hook, nothing shared is
    /// written, so CPUs polling at once do not contend on the HAL (a bench's `cpu_relax`).
    pub fn with_relax(mut self, relax: fn()) -> Self {
        self.platform_relax = Some(relax);
        self
    }

    /// Lets the next `n` allocations succeed and fails every later one with `NoMemory`
    /// (`None`: unlimited).
    pub fn set_alloc_budget(&self, n: Option<usize>) {
        lock(&self.state).alloc_budget = n;
    }

    /// Runs `hook(relax_count)` on every [`Hal::relax`], after counting it.
    pub fn on_relax(&self, hook: impl FnMut(usize) + Send + 'static) {
        *lock(&self.on_relax) = Some(Box::new(hook));
    }

    /// Allocates zeroed memory at the chosen fake physical address `pa` (8-byte aligned), as
    /// if another kernel had left a structure there; `map_phys` and [`HostHal::write_u64`]
    /// then reach it. Freed with [`Hal::dma_free`] or when the HAL is dropped. Fails with
    /// `MapRefused` if it overlaps a live region, `Unsupported` on an identity HAL.
    pub fn alloc_at(&self, pa: PhysAddr, size: usize) -> Result<DmaRegion, HalError> {
        assert!(
            pa.0.is_multiple_of(8),
            "alloc_at: pa {:#x} is not 8-byte aligned",
            pa.0
        );
        let mut st = lock(&self.state);
        if st.next_pa.is_none() {
            return Err(HalError::Unsupported);
        }
        if size == 0 || st.overlapping(pa.0, size as u64).is_some() {
            return Err(HalError::MapRefused);
        }
        // `dma_alloc` steps over planted regions, so the bump counter needs no adjustment.
        Self::allocate(&mut st, Some(pa.0), size, 64)
    }

    /// Allocates a zeroed block at `pa` (`None`: at its own address) and records it.
    fn allocate(
        st: &mut HalState,
        pa: Option<u64>,
        size: usize,
        align: usize,
    ) -> Result<DmaRegion, HalError> {
        if let Some(budget) = st.alloc_budget.as_mut() {
            if *budget == 0 {
                return Err(HalError::NoMemory);
            }
            *budget -= 1;
        }
        let layout = Layout::from_size_align(size, align).map_err(|_| HalError::Unsupported)?;
        // SAFETY: `layout` has a non-zero size (callers check `size != 0`).
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(HalError::NoMemory)?;
        let pa = pa.unwrap_or_else(|| ptr.as_ptr().expose_provenance() as u64);
        st.allocs.insert(
            pa,
            Allocation {
                pa,
                ptr: Held(ptr),
                layout,
            },
        );
        st.total_allocs += 1;
        Ok(DmaRegion {
            pa: PhysAddr(pa),
            va: ptr,
            size,
        })
    }

    /// Reports `fault`: records it, and panics unless the HAL records faults.
    fn fault(&self, fault: HalFault) {
        lock(&self.state).faults.push(fault);
        assert!(self.record_faults, "HostHal: {fault}");
    }

    /// Regions currently allocated (leak check: 0 after the code under test released all).
    pub fn live_allocations(&self) -> usize {
        lock(&self.state).allocs.len()
    }

    /// The regions still allocated, as `(pa, size)`, lowest address first: empty once the
    /// code under test gave back everything it took.
    pub fn leaks(&self) -> Vec<(PhysAddr, usize)> {
        lock(&self.state)
            .allocs
            .values()
            .map(|a| (PhysAddr(a.pa), a.layout.size()))
            .collect()
    }

    /// The faults recorded so far (only with [`HostHal::recording_faults`]; otherwise the
    /// first one panicked).
    pub fn faults(&self) -> Vec<HalFault> {
        lock(&self.state).faults.clone()
    }

    /// Allocations made so far, including freed ones.
    pub fn total_allocations(&self) -> usize {
        lock(&self.state).total_allocs
    }

    /// Bytes currently allocated.
    pub fn live_bytes(&self) -> usize {
        lock(&self.state)
            .allocs
            .values()
            .map(|a| a.layout.size())
            .sum()
    }

    /// `map_phys` mappings not yet unmapped.
    pub fn live_mappings(&self) -> usize {
        lock(&self.state).mappings.len()
    }

    /// The attributes of every live mapping, with its pa and size, oldest first.
    pub fn mappings(&self) -> Vec<(PhysAddr, usize, MapAttr)> {
        lock(&self.state)
            .mappings
            .iter()
            .map(|m| (PhysAddr(m.pa), m.size, m.attr))
            .collect()
    }

    /// Calls of [`Hal::relax`] so far (none are counted with [`HostHal::with_relax`]).
    pub fn relax_count(&self) -> usize {
        self.relaxes.load(Ordering::Relaxed)
    }

    /// Calls of [`Hal::clean_dcache`] so far.
    pub fn clean_count(&self) -> usize {
        self.cleans.load(Ordering::Relaxed)
    }

    /// Calls of [`Hal::invalidate_dcache`] so far.
    pub fn invalidate_count(&self) -> usize {
        self.invalidates.load(Ordering::Relaxed)
    }

    /// Calls of [`Hal::store_entry_qword`] so far.
    pub fn entry_store_count(&self) -> usize {
        self.entry_stores.load(Ordering::Relaxed)
    }

    /// The CPU pointer of physical address `pa`, if a live allocation holds it (with that
    /// allocation's provenance).
    pub fn va(&self, pa: PhysAddr) -> Option<NonNull<u8>> {
        let st = lock(&self.state);
        let a = st.holding(pa.0, 1)?;
        // SAFETY: `pa` lies inside the allocation (`holding`), so the offset stays inside the
        // block the pointer came from.
        Some(unsafe { a.ptr.add((pa.0 - a.pa) as usize) })
    }

    /// A pointer to the 8-aligned word at `pa` inside a live allocation.
    fn word_ptr(&self, pa: PhysAddr) -> NonNull<u64> {
        assert!(
            pa.0.is_multiple_of(8),
            "pa {:#x} is not 8-byte aligned",
            pa.0
        );
        let st = lock(&self.state);
        let a = st
            .holding(pa.0, 8)
            .unwrap_or_else(|| panic!("pa {:#x} is not in any live allocation", pa.0));
        let off = (pa.0 - a.pa) as usize;
        // SAFETY: `off + 8 <= layout.size()` (`holding`), so the result stays inside the
        // allocation; allocations are at least 8-aligned (64 for `alloc_at`, at least what was
        // asked for by `dma_alloc`, which `DmaBuf` asks 64 of) and `a.pa` and `pa` are both
        // 8-aligned, so the word pointer is aligned.
        unsafe { a.ptr.add(off).cast::<u64>() }
    }

    /// Reads the word at `pa` as the SMMU would (volatile). Panics outside live memory.
    pub fn read_u64(&self, pa: PhysAddr) -> u64 {
        let p = self.word_ptr(pa);
        // SAFETY: `p` is aligned and inside a live allocation (`word_ptr`); the allocation
        // stays live while the test holds the HAL and has not freed it.
        unsafe { p.as_ptr().read_volatile() }
    }

    /// Stores 32 bits at the 8-aligned `pa` with an atomic release store, as an SMMU's MSI
    /// write-back lands while a CPU polls the location. Panics outside live memory.
    pub fn write_u32_atomic(&self, pa: PhysAddr, value: u32) {
        let p = self.word_ptr(pa);
        // SAFETY: `p` is aligned and inside a live allocation (`word_ptr`); the low half of
        // the little-endian word is aligned for a `u32`; racing accesses are atomic too.
        let w = unsafe { AtomicU32::from_ptr(p.cast::<u32>().as_ptr()) };
        w.store(value, Ordering::Release);
    }

    /// Writes the word at `pa` as the SMMU would (volatile). Panics outside live memory.
    pub fn write_u64(&self, pa: PhysAddr, value: u64) {
        let p = self.word_ptr(pa);
        // SAFETY: as in `read_u64`.
        unsafe { p.as_ptr().write_volatile(value) }
    }

    /// What is wrong with giving `region` back, if anything.
    fn check_free(st: &HalState, region: &DmaRegion) -> Option<HalFault> {
        let Some(a) = st.allocs.get(&region.pa.0) else {
            return Some(HalFault::UnknownFree {
                pa: region.pa,
                size: region.size,
            });
        };
        if *a.ptr != region.va || a.layout.size() != region.size {
            return Some(HalFault::MismatchedFree {
                pa: region.pa,
                size: region.size,
                allocated: a.layout.size(),
                same_va: *a.ptr == region.va,
            });
        }
        st.mappings
            .iter()
            .any(|m| a.contains(m.pa, m.size as u64))
            .then_some(HalFault::FreedWhileMapped { pa: region.pa })
    }
}

// SAFETY: `dma_alloc` hands out fresh zeroed blocks from the global allocator, valid for
// `size` bytes, with the pointer aligned to `align` (the `Layout`) and the pa aligned to
// `align` (by construction for fake addresses; an identity pa is the aligned pointer's
// address); a block is freed only by a `dma_free` that matches it exactly (or when the HAL
// itself is dropped), and a block a fault was reported for stays allocated. `map_phys` returns
// pointers into live blocks for ranges that lie inside them. Cache maintenance is a no-op,
// right for the host's coherent memory.
unsafe impl Hal for HostHal {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        if size == 0 {
            return Err(HalError::NoMemory);
        }
        if !align.is_power_of_two() {
            return Err(HalError::Unsupported);
        }
        let mut st = lock(&self.state);
        let Some(next) = st.next_pa else {
            return Self::allocate(&mut st, None, size, align);
        };
        let (align64, size64) = (align as u64, size as u64);
        let mut pa = next.next_multiple_of(align64);
        // Skip regions planted with `alloc_at`.
        while let Some(a) = st.overlapping(pa, size64) {
            pa = (a.end() + PA_GUARD).next_multiple_of(align64);
        }
        let next = pa
            .checked_add(size64 + PA_GUARD)
            .ok_or(HalError::NoMemory)?;
        let region = Self::allocate(&mut st, Some(pa), size, align)?;
        st.next_pa = Some(next);
        Ok(region)
    }

    unsafe fn dma_free(&self, region: DmaRegion) {
        let mut st = lock(&self.state);
        if let Some(fault) = Self::check_free(&st, &region) {
            drop(st);
            return self.fault(fault);
        }
        let a = st.allocs.remove(&region.pa.0).expect("checked above");
        drop(st);
        // SAFETY: `a.ptr` came from `alloc_zeroed(a.layout)` and was removed from the table,
        // so it is freed exactly once.
        unsafe { dealloc(a.ptr.as_ptr(), a.layout) };
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        let mut st = lock(&self.state);
        let a = st.holding(pa.0, size as u64).ok_or(HalError::MapRefused)?;
        // SAFETY: `[pa, pa + size)` lies inside the allocation (`holding`), so the offset
        // stays inside the block the pointer came from.
        let va = unsafe { a.ptr.add((pa.0 - a.pa) as usize) };
        st.mappings.push(Mapping {
            va: Held(va),
            size,
            pa: pa.0,
            attr,
        });
        Ok(va)
    }

    unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize) {
        let mut st = lock(&self.state);
        let Some(i) = st
            .mappings
            .iter()
            .position(|m| *m.va == va && m.size == size)
        else {
            drop(st);
            return self.fault(HalFault::UnknownUnmap { size });
        };
        st.mappings.swap_remove(i);
    }

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        lock(&self.state).holding(pa.0, size).is_some()
    }

    fn clean_dcache(&self, _va: NonNull<u8>, _size: usize) {
        self.cleans.fetch_add(1, Ordering::Relaxed);
    }

    fn invalidate_dcache(&self, _va: NonNull<u8>, _size: usize) {
        self.invalidates.fetch_add(1, Ordering::Relaxed);
    }

    fn has_cache_maintenance(&self) -> bool {
        self.cache_maintenance
    }

    fn shared_windows(&self) -> &[PhysRange] {
        &self.windows
    }

    unsafe fn store_entry_qword(&self, va: NonNull<u64>, value: u64) {
        self.entry_stores.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller guarantees `va` is aligned and inside a live region.
        unsafe { va.as_ptr().write_volatile(value) }
    }

    fn relax(&self) {
        if let Some(relax) = self.platform_relax {
            return relax();
        }
        let n = self.relaxes.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(hook) = lock(&self.on_relax).as_mut() {
            hook(n);
        }
    }
}

impl Drop for HostHal {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for a in core::mem::take(&mut st.allocs).into_values() {
            // SAFETY: every block in the table came from `alloc_zeroed(a.layout)` and has not
            // been freed (`dma_free` removes what it frees).
            unsafe { dealloc(a.ptr.as_ptr(), a.layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;
    use crate::dma::DmaBuf;

    #[test]
    fn hands_out_aligned_fake_pas_and_maps_them_back() {
        let hal = HostHal::new();
        let a = hal.dma_alloc(128, 64).unwrap();
        let b = hal.dma_alloc(4096, 4096).unwrap();
        assert_eq!(a.pa.0 % 64, 0);
        assert_eq!(b.pa.0 % 4096, 0);
        assert_eq!(b.va.as_ptr() as usize % 4096, 0);
        assert!(b.pa.0 >= a.pa.0 + 128 + PA_GUARD);
        assert_eq!(hal.live_allocations(), 2);
        let word = hal.va(PhysAddr(b.pa.0 + 8)).unwrap();
        assert_eq!(word.as_ptr().addr(), b.va.as_ptr().addr() + 8);

        hal.write_u64(PhysAddr(b.pa.0 + 8), 0xfeed);
        let va = hal
            .map_phys(PhysAddr(b.pa.0 + 8), 8, MapAttr::Cacheable)
            .unwrap();
        // SAFETY: `va` maps 8 live, aligned bytes until `unmap_phys`.
        assert_eq!(unsafe { va.cast::<u64>().as_ptr().read_volatile() }, 0xfeed);
        assert_eq!(hal.live_mappings(), 1);
        // A range off the end of an allocation, or between allocations, is refused.
        assert_eq!(
            hal.map_phys(PhysAddr(a.pa.0 + 64), 128, MapAttr::Cacheable),
            Err(HalError::MapRefused)
        );
        assert!(hal.is_ram(a.pa, 128) && !hal.is_ram(a.pa, 129));
        // SAFETY: `va`/8 are those of the `map_phys` call above.
        unsafe { hal.unmap_phys(va, 8) };
        // SAFETY: both regions came from `dma_alloc` and are not used again.
        unsafe {
            hal.dma_free(a);
            hal.dma_free(b);
        }
        assert_eq!((hal.live_allocations(), hal.live_mappings()), (0, 0));
        assert_eq!(hal.total_allocations(), 2);
        assert!(hal.leaks().is_empty() && hal.faults().is_empty());
    }

    #[test]
    fn planted_regions_budget_and_relax_hook() {
        let hal = HostHal::new();
        let planted = hal.alloc_at(PhysAddr(FAKE_PA_BASE), 256).unwrap();
        assert_eq!(
            hal.alloc_at(PhysAddr(FAKE_PA_BASE + 8), 8),
            Err(HalError::MapRefused)
        );
        let next = hal.dma_alloc(64, 64).unwrap();
        assert!(next.pa.0 >= FAKE_PA_BASE + 256);
        hal.set_alloc_budget(Some(0));
        assert_eq!(hal.dma_alloc(64, 64), Err(HalError::NoMemory));
        hal.set_alloc_budget(None);

        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        hal.on_relax(move |n| s.store(n, Ordering::Relaxed));
        hal.relax();
        hal.relax();
        assert_eq!((hal.relax_count(), seen.load(Ordering::Relaxed)), (2, 2));
        assert!(hal.is_ram(planted.pa, 256));
        assert_eq!(hal.leaks(), [(planted.pa, 256), (next.pa, 64)]);
        // `planted` and `next` are freed by the HAL's drop (no leak under Miri).
    }

    #[test]
    fn every_broken_promise_is_a_fault() {
        let hal = HostHal::new().recording_faults();
        let a = hal.dma_alloc(256, 64).unwrap();
        let b = hal.dma_alloc(256, 64).unwrap();
        let va = hal.map_phys(b.pa, 8, MapAttr::Cacheable).unwrap();
        // SAFETY: the HAL checks each call before it frees; a faulty call frees nothing, and
        // `a` is freed once, unused.
        unsafe {
            // A smaller size, then another va, than `a` was handed out with.
            hal.dma_free(DmaRegion { size: 128, ..a });
            hal.dma_free(DmaRegion { va: b.va, ..a });
            // `b` is still mapped.
            hal.dma_free(b);
            // A mapping that does not exist.
            hal.unmap_phys(va, 16);
            // Right, then twice.
            hal.dma_free(a);
            hal.dma_free(a);
        }
        assert_eq!(
            hal.faults(),
            [
                HalFault::MismatchedFree {
                    pa: a.pa,
                    size: 128,
                    allocated: 256,
                    same_va: true
                },
                HalFault::MismatchedFree {
                    pa: a.pa,
                    size: 256,
                    allocated: 256,
                    same_va: false
                },
                HalFault::FreedWhileMapped { pa: b.pa },
                HalFault::UnknownUnmap { size: 16 },
                HalFault::UnknownFree {
                    pa: a.pa,
                    size: 256
                },
            ]
        );
        // `b` stayed allocated: its fault left it alone.
        assert_eq!(hal.leaks(), [(b.pa, 256)]);
        assert!(hal.faults()[0].to_string().contains("allocated 256"));
    }

    #[test]
    #[should_panic(expected = "not allocated here, or freed already")]
    fn a_double_free_panics_by_default() {
        let hal = HostHal::new();
        let a = hal.dma_alloc(64, 64).unwrap();
        // SAFETY: the second free is the broken promise under test; the HAL refuses it.
        unsafe {
            hal.dma_free(a);
            hal.dma_free(a);
        }
    }

    #[test]
    fn identity_pas_are_the_blocks_addresses() {
        let hal = HostHal::identity();
        let r = hal.dma_alloc(4096, 4096).unwrap();
        assert_eq!(r.pa.0, r.va.as_ptr().addr() as u64);
        assert_eq!(
            hal.alloc_at(PhysAddr(0x1000), 8),
            Err(HalError::Unsupported)
        );
        let p = core::ptr::with_exposed_provenance_mut::<u64>(r.pa.0 as usize);
        // SAFETY: the block's provenance was exposed by `dma_alloc`; it is live and aligned.
        unsafe { p.write(7) };
        assert_eq!(hal.read_u64(r.pa), 7);
        // SAFETY: from `dma_alloc`, not used again.
        unsafe { hal.dma_free(r) };
    }

    #[test]
    fn a_platform_relax_is_not_counted() {
        fn spin() {
            core::hint::spin_loop();
        }
        let hal = HostHal::new().with_relax(spin);
        hal.relax();
        assert_eq!(hal.relax_count(), 0);
    }

    #[test]
    fn dma_buf_on_host_hal_round_trips_and_releases() {
        let hal = HostHal::new();
        let buf = DmaBuf::alloc(&hal, 256, 256, false).unwrap();
        buf.write(&hal, 3, 0x1234).unwrap();
        assert_eq!(hal.read_u64(buf.pa_of(3)), 0x1234);
        hal.write_u64(buf.pa_of(4), 0x5678);
        assert_eq!(buf.read(&hal, 4), Ok(0x5678));
        assert!(hal.clean_count() == 1 && hal.invalidate_count() == 1);
        // SAFETY: nothing else references the buffer.
        unsafe { buf.release(&hal) };
        assert_eq!(hal.live_allocations(), 0);
    }
}

//! Test doubles for the crate's unit tests (`cfg(test)` only): [`HeapHal`], a [`Hal`] backed
//! by the host heap, and [`FakeRegs`], a scriptable register file implementing
//! [`RegisterAccess`].
//!
//! Both run under Miri with Tree Borrows: `HeapHal` keeps the real allocation pointers and
//! resolves fake physical addresses through a table (never an integer-to-pointer cast), and
//! memory is only touched through raw pointers derived from those allocations.
//!
//! ```ignore
//! let hal = HeapHal::new();
//! let regs = FakeRegs::new();
//! let buf = DmaBuf::alloc(&hal, 4096, 4096, true)?;
//! regs.set32(offset::EVTQ_PROD, 3);          // script what the "SMMU" shows
//! hal.write_u64(buf.pa_of(0), 0x1);           // the "SMMU" writes memory by PA
//! // ... run the code under test ...
//! assert_eq!(regs.writes_to(offset::EVTQ_CONS), [3]);
//! // SAFETY: no register points at the buffer any more.
//! unsafe { buf.release(&hal) };
//! assert_eq!(hal.live_allocations(), 0);     // leak check
//! ```

// Test-only code: a broken test double should fail the test loudly.
#![allow(clippy::missing_panics_doc, unreachable_pub, dead_code)]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::vec::Vec;

use crate::access::RegisterAccess;
use crate::arch::regs::{offset, RegWidth, REGISTER_FRAME_SIZE};
use crate::hal::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, PhysRange};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test must not turn every later access into a second panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first fake physical address [`HeapHal`] hands out.
pub const HEAP_PA_BASE: u64 = 0x8000_0000;

/// Fake physical address space left unused after each allocation, so that a range running
/// off the end of one allocation never lands in the next one.
const PA_GUARD: u64 = 0x1000;

/// One live heap allocation.
struct Allocation {
    pa: u64,
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Allocation {
    fn contains(&self, pa: u64, size: u64) -> bool {
        pa >= self.pa
            && pa
                .checked_add(size)
                .is_some_and(|end| end <= self.pa + self.layout.size() as u64)
    }

    fn overlaps(&self, pa: u64, size: u64) -> bool {
        pa < self.pa + self.layout.size() as u64 && self.pa < pa.saturating_add(size)
    }
}

// SAFETY: an `Allocation` is an owning record of a heap block (like a `Box<[u8]>`); the
// pointer is only dereferenced by whoever holds the `HeapHal` lock or a `DmaBuf` contract.
unsafe impl Send for Allocation {}

/// One live `map_phys` mapping.
struct Mapping {
    va: NonNull<u8>,
    size: usize,
    pa: u64,
    attr: MapAttr,
}

// SAFETY: a record of a pointer into an `Allocation` (see there); never dereferenced here.
unsafe impl Send for Mapping {}

#[derive(Default)]
struct HalState {
    allocs: Vec<Allocation>,
    mappings: Vec<Mapping>,
    next_pa: u64,
    total_allocs: usize,
    /// `Some(n)`: the next `n` allocations succeed, later ones fail with `NoMemory`.
    alloc_budget: Option<usize>,
}

type RelaxHook = Box<dyn FnMut(usize) + Send>;

/// A [`Hal`] on the host heap, for unit tests.
///
/// - `dma_alloc` takes zeroed memory from the global allocator with the requested alignment
///   and gives it a **fake physical address** from a bump counter starting at
///   [`HEAP_PA_BASE`], aligned to the requested alignment, with a 4 KiB hole after each
///   region. The pa is not the pointer value: code that confuses pa and va fails.
/// - `map_phys(pa, size)` succeeds when `[pa, pa + size)` lies inside one live allocation
///   (or one planted with [`HeapHal::alloc_at`]) and returns a pointer into it; anything else
///   is `MapRefused`. `is_ram` answers the same question.
/// - Counters: live and total allocations, live mappings, `relax`, cache maintenance and
///   `store_entry_qword` calls. [`HeapHal::on_relax`] runs a hook on every `relax` (a test
///   can let a register change after a number of polls).
/// - Memory still allocated when the `HeapHal` is dropped is freed then (so Miri sees no
///   leak); use [`HeapHal::live_allocations`] to check that the code under test freed it.
///
/// The SMMU side of a test reads and writes memory by physical address with
/// [`HeapHal::read_u64`] and [`HeapHal::write_u64`].
pub struct HeapHal {
    state: Mutex<HalState>,
    relaxes: AtomicUsize,
    cleans: AtomicUsize,
    invalidates: AtomicUsize,
    entry_stores: AtomicUsize,
    cache_maintenance: bool,
    windows: Vec<PhysRange>,
    on_relax: Mutex<Option<RelaxHook>>,
}

impl Default for HeapHal {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for HeapHal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapHal")
            .field("live_allocations", &self.live_allocations())
            .field("live_mappings", &self.live_mappings())
            .finish_non_exhaustive()
    }
}

impl HeapHal {
    /// A HAL with no cache maintenance and no shared windows.
    pub fn new() -> Self {
        HeapHal {
            state: Mutex::new(HalState {
                next_pa: HEAP_PA_BASE,
                ..HalState::default()
            }),
            relaxes: AtomicUsize::new(0),
            cleans: AtomicUsize::new(0),
            invalidates: AtomicUsize::new(0),
            entry_stores: AtomicUsize::new(0),
            cache_maintenance: false,
            windows: Vec::new(),
            on_relax: Mutex::new(None),
        }
    }

    /// Hands out fake physical addresses from `base` on instead of [`HEAP_PA_BASE`] (for
    /// example above what a register field can hold).
    pub fn with_pa_base(self, base: u64) -> Self {
        lock(&self.state).next_pa = base;
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
    /// if another kernel had left a structure there; `map_phys` and [`HeapHal::write_u64`]
    /// then reach it. Freed with [`Hal::dma_free`] or when the HAL is dropped. Fails with
    /// `MapRefused` if it overlaps a live region.
    pub fn alloc_at(&self, pa: PhysAddr, size: usize) -> Result<DmaRegion, HalError> {
        assert!(
            pa.0.is_multiple_of(8),
            "alloc_at: pa {:#x} is not 8-byte aligned",
            pa.0
        );
        let mut st = lock(&self.state);
        if size == 0 || st.allocs.iter().any(|a| a.overlaps(pa.0, size as u64)) {
            return Err(HalError::MapRefused);
        }
        // `dma_alloc` steps over planted regions, so the bump counter needs no adjustment.
        Self::allocate(&mut st, pa.0, size, 64)
    }

    fn allocate(
        st: &mut HalState,
        pa: u64,
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
        st.allocs.push(Allocation { pa, ptr, layout });
        st.total_allocs += 1;
        Ok(DmaRegion {
            pa: PhysAddr(pa),
            va: ptr,
            size,
        })
    }

    /// Regions currently allocated (leak check: 0 after the code under test released all).
    pub fn live_allocations(&self) -> usize {
        lock(&self.state).allocs.len()
    }

    /// Allocations made so far, including freed ones.
    pub fn total_allocations(&self) -> usize {
        lock(&self.state).total_allocs
    }

    /// Bytes currently allocated.
    pub fn live_bytes(&self) -> usize {
        lock(&self.state)
            .allocs
            .iter()
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

    /// Calls of [`Hal::relax`] so far.
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

    /// A pointer to the 8-aligned word at `pa` inside a live allocation.
    fn word_ptr(&self, pa: PhysAddr) -> NonNull<u64> {
        assert!(
            pa.0.is_multiple_of(8),
            "pa {:#x} is not 8-byte aligned",
            pa.0
        );
        let st = lock(&self.state);
        let a = st
            .allocs
            .iter()
            .find(|a| a.contains(pa.0, 8))
            .unwrap_or_else(|| panic!("pa {:#x} is not in any live allocation", pa.0));
        let off = (pa.0 - a.pa) as usize;
        // SAFETY: `off + 8 <= layout.size()` (`contains`), so the result stays inside the
        // allocation; allocations are at least 8-aligned (64 for `dma_alloc`, `alloc_at`) and
        // `a.pa` and `pa` are both 8-aligned, so the word pointer is aligned.
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
        let w = unsafe { core::sync::atomic::AtomicU32::from_ptr(p.cast::<u32>().as_ptr()) };
        w.store(value, Ordering::Release);
    }

    /// Writes the word at `pa` as the SMMU would (volatile). Panics outside live memory.
    pub fn write_u64(&self, pa: PhysAddr, value: u64) {
        let p = self.word_ptr(pa);
        // SAFETY: as in `read_u64`.
        unsafe { p.as_ptr().write_volatile(value) }
    }
}

// SAFETY: `dma_alloc` hands out fresh zeroed blocks from the global allocator, valid for
// `size` bytes, with the pointer aligned to `align` (the `Layout`) and the fake pa aligned to
// `align` by construction; a block is freed only by `dma_free` (or when the HAL itself is
// dropped). `map_phys` returns pointers into live blocks for ranges that lie inside them.
// Cache maintenance is a no-op, right for the host's coherent memory.
unsafe impl Hal for HeapHal {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        if size == 0 {
            return Err(HalError::NoMemory);
        }
        if !align.is_power_of_two() {
            return Err(HalError::Unsupported);
        }
        let mut st = lock(&self.state);
        let align64 = align as u64;
        let mut pa = st.next_pa.next_multiple_of(align64);
        // Skip regions planted with `alloc_at`.
        while let Some(a) = st.allocs.iter().find(|a| a.overlaps(pa, size as u64)) {
            pa = (a.pa + a.layout.size() as u64 + PA_GUARD).next_multiple_of(align64);
        }
        let region = Self::allocate(&mut st, pa, size, align)?;
        st.next_pa = pa + size as u64 + PA_GUARD;
        Ok(region)
    }

    unsafe fn dma_free(&self, region: DmaRegion) {
        let mut st = lock(&self.state);
        let i = st
            .allocs
            .iter()
            .position(|a| a.pa == region.pa.0)
            .unwrap_or_else(|| panic!("dma_free of unknown or freed pa {:#x}", region.pa.0));
        let a = st.allocs.swap_remove(i);
        assert_eq!(a.ptr, region.va, "dma_free: va does not match pa");
        assert_eq!(
            a.layout.size(),
            region.size,
            "dma_free: size does not match"
        );
        assert!(
            !st.mappings.iter().any(|m| a.contains(m.pa, m.size as u64)),
            "dma_free of a region that is still mapped"
        );
        // SAFETY: `a.ptr` came from `alloc_zeroed(a.layout)` and was removed from the table,
        // so it is freed exactly once.
        unsafe { dealloc(a.ptr.as_ptr(), a.layout) };
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        let mut st = lock(&self.state);
        let a = st
            .allocs
            .iter()
            .find(|a| a.contains(pa.0, size as u64))
            .ok_or(HalError::MapRefused)?;
        // SAFETY: `[pa, pa + size)` lies inside the allocation (`contains`), so the offset
        // stays inside the block the pointer came from.
        let va = unsafe { a.ptr.add((pa.0 - a.pa) as usize) };
        st.mappings.push(Mapping {
            va,
            size,
            pa: pa.0,
            attr,
        });
        Ok(va)
    }

    unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize) {
        let mut st = lock(&self.state);
        let i = st
            .mappings
            .iter()
            .position(|m| m.va == va && m.size == size)
            .unwrap_or_else(|| panic!("unmap_phys of an unknown mapping ({size} bytes)"));
        st.mappings.swap_remove(i);
    }

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        lock(&self.state)
            .allocs
            .iter()
            .any(|a| a.contains(pa.0, size))
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
        let n = self.relaxes.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(hook) = lock(&self.on_relax).as_mut() {
            hook(n);
        }
    }
}

impl Drop for HeapHal {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for a in st.allocs.drain(..) {
            // SAFETY: every block in the table came from `alloc_zeroed(a.layout)` and has not
            // been freed (`dma_free` removes what it frees).
            unsafe { dealloc(a.ptr.as_ptr(), a.layout) };
        }
    }
}

/// One register write seen by [`FakeRegs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegWrite {
    /// Byte offset from the SMMU base.
    pub offset: usize,
    /// The value written (zero-extended for 32-bit writes).
    pub value: u64,
    /// The access width.
    pub width: RegWidth,
}

/// The storage behind [`FakeRegs`]: 32-bit words at 4-aligned offsets, unwritten ones zero.
/// A 64-bit register is the two words at `offset` and `offset + 4` (little-endian), so 32-
/// and 64-bit views of the same offset agree.
#[derive(Clone, Debug, Default)]
pub struct RegFile {
    words: HashMap<usize, u32>,
}

impl RegFile {
    /// The 32-bit word at `offset`.
    pub fn get32(&self, offset: usize) -> u32 {
        self.words.get(&offset).copied().unwrap_or(0)
    }

    /// Sets the 32-bit word at `offset`.
    pub fn set32(&mut self, offset: usize, value: u32) {
        self.words.insert(offset, value);
    }

    /// The 64-bit register at `offset`.
    pub fn get64(&self, offset: usize) -> u64 {
        u64::from(self.get32(offset)) | (u64::from(self.get32(offset + 4)) << 32)
    }

    /// Sets the 64-bit register at `offset`.
    pub fn set64(&mut self, offset: usize, value: u64) {
        self.set32(offset, value as u32);
        self.set32(offset + 4, (value >> 32) as u32);
    }
}

type WriteHook = Box<dyn FnMut(&mut RegFile, RegWrite) + Send>;

#[derive(Default)]
struct RegsInner {
    file: RegFile,
    log: Vec<RegWrite>,
    script32: HashMap<usize, VecDeque<u32>>,
    script64: HashMap<usize, VecDeque<u64>>,
    reads: HashMap<usize, usize>,
    ignored_writes: usize,
    on_write: Option<WriteHook>,
}

/// A plain register file implementing [`RegisterAccess`], for unit tests.
///
/// Writes are stored (and logged); reads return what is stored, unless a test scripted a
/// sequence of values for that offset ([`FakeRegs::script_reads32`]), which are returned
/// first, one per read. There are no architected side effects unless a test installs a
/// write hook ([`FakeRegs::on_write`]) or uses [`FakeRegs::with_ack_mirroring`]. As
/// [`RegisterAccess`] requires, offsets outside the 128 KiB frame or not aligned to the
/// access read as all-ones and ignore writes.
pub struct FakeRegs {
    inner: Mutex<RegsInner>,
}

impl Default for FakeRegs {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for FakeRegs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FakeRegs")
            .field("writes", &lock(&self.inner).log.len())
            .finish_non_exhaustive()
    }
}

impl FakeRegs {
    /// An all-zero register file.
    pub fn new() -> Self {
        FakeRegs {
            inner: Mutex::new(RegsInner::default()),
        }
    }

    /// A register file where `CR0ACK` follows `CR0` and `IRQ_CTRLACK` follows `IRQ_CTRL`
    /// at once (an SMMU with zero update latency).
    pub fn with_ack_mirroring() -> Self {
        let regs = Self::new();
        regs.on_write(|file, w| match w.offset {
            offset::CR0 => file.set32(offset::CR0ACK, w.value as u32),
            offset::IRQ_CTRL => file.set32(offset::IRQ_CTRLACK, w.value as u32),
            _ => {}
        });
        regs
    }

    /// Runs `hook` after every accepted write, with the register file (already holding the
    /// written value) and the write. Replaces an earlier hook.
    pub fn on_write(&self, hook: impl FnMut(&mut RegFile, RegWrite) + Send + 'static) {
        lock(&self.inner).on_write = Some(Box::new(hook));
    }

    /// Sets a 32-bit register as the SMMU would (not logged, no hook).
    pub fn set32(&self, offset: usize, value: u32) {
        lock(&self.inner).file.set32(offset, value);
    }

    /// Sets a 64-bit register as the SMMU would (not logged, no hook).
    pub fn set64(&self, offset: usize, value: u64) {
        lock(&self.inner).file.set64(offset, value);
    }

    /// The stored 32-bit value (ignores scripted reads, not counted as a read).
    pub fn get32(&self, offset: usize) -> u32 {
        lock(&self.inner).file.get32(offset)
    }

    /// The stored 64-bit value (ignores scripted reads, not counted as a read).
    pub fn get64(&self, offset: usize) -> u64 {
        lock(&self.inner).file.get64(offset)
    }

    /// Queues values that the next 32-bit reads of `offset` return, one per read, before
    /// falling back to the stored value.
    pub fn script_reads32(&self, offset: usize, values: impl IntoIterator<Item = u32>) {
        lock(&self.inner)
            .script32
            .entry(offset)
            .or_default()
            .extend(values);
    }

    /// Queues values that the next 64-bit reads of `offset` return, one per read.
    pub fn script_reads64(&self, offset: usize, values: impl IntoIterator<Item = u64>) {
        lock(&self.inner)
            .script64
            .entry(offset)
            .or_default()
            .extend(values);
    }

    /// Every accepted write so far, oldest first.
    pub fn writes(&self) -> Vec<RegWrite> {
        lock(&self.inner).log.clone()
    }

    /// The values written to `offset` so far, oldest first.
    pub fn writes_to(&self, offset: usize) -> Vec<u64> {
        lock(&self.inner)
            .log
            .iter()
            .filter(|w| w.offset == offset)
            .map(|w| w.value)
            .collect()
    }

    /// Returns the write log and empties it.
    pub fn take_writes(&self) -> Vec<RegWrite> {
        core::mem::take(&mut lock(&self.inner).log)
    }

    /// Reads (32- or 64-bit) of `offset` so far.
    pub fn read_count(&self, offset: usize) -> usize {
        lock(&self.inner).reads.get(&offset).copied().unwrap_or(0)
    }

    /// Writes dropped because their offset was outside the frame or misaligned.
    pub fn ignored_writes(&self) -> usize {
        lock(&self.inner).ignored_writes
    }

    fn in_frame(offset: usize, width: usize) -> bool {
        offset.is_multiple_of(width)
            && offset
                .checked_add(width)
                .is_some_and(|end| end <= REGISTER_FRAME_SIZE)
    }

    fn write(&self, offset: usize, value: u64, width: RegWidth) {
        let bytes = if width == RegWidth::W32 { 4 } else { 8 };
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        if !Self::in_frame(offset, bytes) {
            inner.ignored_writes += 1;
            return;
        }
        match width {
            RegWidth::W32 => inner.file.set32(offset, value as u32),
            RegWidth::W64 => inner.file.set64(offset, value),
        }
        let w = RegWrite {
            offset,
            value,
            width,
        };
        inner.log.push(w);
        if let Some(hook) = inner.on_write.as_mut() {
            hook(&mut inner.file, w);
        }
    }
}

impl RegisterAccess for FakeRegs {
    fn read32(&self, offset: usize) -> u32 {
        if !Self::in_frame(offset, 4) {
            return u32::MAX;
        }
        let mut inner = lock(&self.inner);
        *inner.reads.entry(offset).or_default() += 1;
        if let Some(v) = inner
            .script32
            .get_mut(&offset)
            .and_then(VecDeque::pop_front)
        {
            return v;
        }
        inner.file.get32(offset)
    }

    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, u64::from(value), RegWidth::W32);
    }

    fn read64(&self, offset: usize) -> u64 {
        if !Self::in_frame(offset, 8) {
            return u64::MAX;
        }
        let mut inner = lock(&self.inner);
        *inner.reads.entry(offset).or_default() += 1;
        if let Some(v) = inner
            .script64
            .get_mut(&offset)
            .and_then(VecDeque::pop_front)
        {
            return v;
        }
        inner.file.get64(offset)
    }

    fn write64(&self, offset: usize, value: u64) {
        self.write(offset, value, RegWidth::W64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaBuf;

    #[test]
    fn heap_hal_hands_out_aligned_fake_pas_and_maps_them_back() {
        let hal = HeapHal::new();
        let a = hal.dma_alloc(128, 64).unwrap();
        let b = hal.dma_alloc(4096, 4096).unwrap();
        assert_eq!(a.pa.0 % 64, 0);
        assert_eq!(b.pa.0 % 4096, 0);
        assert_eq!(b.va.as_ptr() as usize % 4096, 0);
        assert!(b.pa.0 >= a.pa.0 + 128 + PA_GUARD);
        assert_eq!(hal.live_allocations(), 2);

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
    }

    #[test]
    fn heap_hal_planted_regions_budget_and_relax_hook() {
        let hal = HeapHal::new();
        let planted = hal.alloc_at(PhysAddr(HEAP_PA_BASE), 256).unwrap();
        assert_eq!(
            hal.alloc_at(PhysAddr(HEAP_PA_BASE + 8), 8),
            Err(HalError::MapRefused)
        );
        let next = hal.dma_alloc(64, 64).unwrap();
        assert!(next.pa.0 >= HEAP_PA_BASE + 256);
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
        // `planted` and `next` are freed by the HAL's drop (no leak under Miri).
    }

    #[test]
    fn dma_buf_on_heap_hal_round_trips_and_releases() {
        let hal = HeapHal::new();
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

    #[test]
    fn fake_regs_store_log_script_and_refuse_out_of_frame() {
        let regs = FakeRegs::with_ack_mirroring();
        regs.write32(offset::CR0, 0x5);
        assert_eq!(regs.get32(offset::CR0ACK), 0x5);
        regs.write64(offset::STRTAB_BASE, 0x1_2345_6000);
        assert_eq!(regs.read32(offset::STRTAB_BASE + 4), 0x1);
        assert_eq!(regs.read64(offset::STRTAB_BASE), 0x1_2345_6000);
        regs.script_reads32(offset::GERROR, [1, 2]);
        regs.set32(offset::GERROR, 7);
        let got: Vec<u32> = (0..3).map(|_| regs.read32(offset::GERROR)).collect();
        assert_eq!(got, [1, 2, 7]);
        assert_eq!(regs.read_count(offset::GERROR), 3);
        assert_eq!(regs.read32(REGISTER_FRAME_SIZE), u32::MAX);
        assert_eq!(regs.read64(offset::CR0 + 4), u64::MAX);
        regs.write32(offset::CR0 + 2, 1);
        assert_eq!(regs.ignored_writes(), 1);
        assert_eq!(regs.writes_to(offset::CR0), [5]);
        assert_eq!(regs.take_writes().len(), 2);
        assert!(regs.writes().is_empty());
    }
}

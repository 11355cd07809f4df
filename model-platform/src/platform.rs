//! The driver's platform on the model: register access and a HAL whose DMA memory is a
//! [`HostRam`] arena the model uses as its RAM.
//!
//! The driver writes queues, stream tables, CDs and page tables through the raw pointers the
//! HAL hands out; the model fetches the same words. Structure stores the driver routes through
//! [`Hal::store_entry_qword`] land through [`SharedModel::write_u64`], so the model's torn-fetch
//! check sees every step of a live update.

use core::ptr::NonNull;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use smmu::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, PhysRange, RegisterAccess};
use smmu_model::{HostRam, MemError, Model, ModelConfig, SharedModel, PAGE};

/// The arena size [`ModelPlatform::new`] uses at most: 64 MiB (the model's default `ram_size`
/// is 1 GiB, which a test should not allocate and zero).
pub const DEFAULT_RAM_BYTES: u64 = 64 << 20;

/// A model with host-RAM backing and the register and HAL adapters a driver takes.
///
/// ```
/// use smmu::{Hal, RegisterAccess};
/// use smmu::arch::regs::offset;
/// use smmu_model::ModelConfig;
/// use smmu_model_platform::platform::ModelPlatform;
///
/// let platform = ModelPlatform::new(ModelConfig::default()).unwrap();
/// let (regs, hal) = (platform.regs(), platform.hal());
/// // DMA memory the driver writes through its pointer is what the model reads.
/// let region = hal.dma_alloc(4096, 4096).unwrap();
/// // SAFETY: `region.va` is valid for 4096 bytes, 4096-aligned, and nothing else uses it.
/// unsafe { region.va.cast::<u64>().as_ptr().write_volatile(0x9) };
/// assert_eq!(platform.model().read_u64(region.pa.0), Ok(0x9));
/// // Registers go to the model; polls advance model time through `relax`.
/// regs.write32(offset::GBPA, 1 << 31);
/// while regs.read32(offset::GBPA) & (1 << 31) != 0 {
///     hal.relax();
/// }
/// // SAFETY: the region came from `dma_alloc` and is not used again.
/// unsafe { hal.dma_free(region) };
/// assert_eq!(hal.live_allocations(), 0);
/// assert!(platform.model().with(|m| m.violations().is_empty()));
/// ```
#[derive(Clone, Debug)]
pub struct ModelPlatform {
    model: SharedModel,
    hal: ModelHal,
}

impl ModelPlatform {
    /// Builds the model from `cfg` with host-RAM backing.
    ///
    /// If `cfg.host_ram` is `None`, an arena of `cfg.ram_size` bytes is created, clamped to
    /// [`DEFAULT_RAM_BYTES`] and rounded up to whole pages; a given arena is used as it is.
    /// RAM is then `[cfg.ram_base, cfg.ram_base + arena length)`.
    pub fn new(cfg: ModelConfig) -> Result<Self, MemError> {
        let bytes = cfg.ram_size.clamp(1, DEFAULT_RAM_BYTES).div_ceil(PAGE) * PAGE;
        Self::with_ram_bytes(cfg, bytes)
    }

    /// As [`ModelPlatform::new`], with an arena of exactly `bytes` bytes (a non-zero multiple
    /// of 4096, any size the host can allocate) unless `cfg.host_ram` already gives one.
    pub fn with_ram_bytes(mut cfg: ModelConfig, bytes: u64) -> Result<Self, MemError> {
        let ram = match &cfg.host_ram {
            Some(ram) => ram.clone(),
            None => HostRam::new(bytes)?,
        };
        cfg.host_ram = Some(ram.clone());
        let ram_base = cfg.ram_base;
        let model = SharedModel::new(Model::new(cfg));
        let ram_end = ram_base.saturating_add(ram.len_bytes());
        let hal = ModelHal {
            model: model.clone(),
            ram,
            ram_base,
            ram_end,
            windows: Arc::from(Vec::new()),
            cache_maintenance: false,
            state: Arc::new(HalState::default()),
        };
        Ok(Self { model, hal })
    }

    /// A platform over a model built elsewhere (one interface of an
    /// [`RmeModel`](smmu_model::rme::RmeModel)) whose RAM is `ram` at `ram_base`.
    pub fn over(model: SharedModel, ram: HostRam, ram_base: u64) -> Self {
        let ram_end = ram_base.saturating_add(ram.len_bytes());
        let hal = ModelHal {
            model: model.clone(),
            ram,
            ram_base,
            ram_end,
            windows: Arc::from(Vec::new()),
            cache_maintenance: false,
            state: Arc::new(HalState::default()),
        };
        Self { model, hal }
    }

    /// Sets the shared (bounce-buffer) windows the HAL reports (SPEC D9). Empty by default.
    pub fn with_shared_windows(mut self, windows: Vec<PhysRange>) -> Self {
        self.hal.windows = Arc::from(windows);
        self
    }

    /// Sets what [`Hal::has_cache_maintenance`] answers. False by default. Cleans are counted
    /// and forwarded to [`Model::clean_dcache`], which matters only for a non-coherent model
    /// ([`ModelConfig::cpu_cache`] with IDR0.COHACC = 0); invalidates are only counted.
    pub fn with_cache_maintenance(mut self, available: bool) -> Self {
        self.hal.cache_maintenance = available;
        self
    }

    /// The model: keep a clone to step time, run masters and check the violation log.
    pub fn model(&self) -> &SharedModel {
        &self.model
    }

    /// The register adapter for the driver.
    pub fn regs(&self) -> ModelRegs {
        ModelRegs(self.model.clone())
    }

    /// The HAL for the driver. Every handle shares one set of counters.
    pub fn hal(&self) -> ModelHal {
        self.hal.clone()
    }

    /// The arena backing the model's RAM.
    pub fn ram(&self) -> &HostRam {
        &self.hal.ram
    }
}

/// [`RegisterAccess`] forwarded to a [`SharedModel`] (offsets from the SMMU base, page 1 at
/// `0x10000`). Every access advances model time by one unit.
#[derive(Clone, Debug)]
pub struct ModelRegs(SharedModel);

impl ModelRegs {
    /// Register access to `model`.
    pub fn new(model: SharedModel) -> Self {
        Self(model)
    }
}

impl RegisterAccess for ModelRegs {
    fn read32(&self, offset: usize) -> u32 {
        self.0.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.0.write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.0.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.0.write64(offset, value);
    }
}

/// One [`Hal::map_phys`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Physical address mapped.
    pub pa: PhysAddr,
    /// Bytes mapped.
    pub size: usize,
    /// Attribute asked for.
    pub attr: MapAttr,
}

/// A structure store or a cache clean, in the order the driver made them (for SPEC K17:
/// every store to a structure a non-coherent SMMU reads is followed by its clean).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheEvent {
    /// `store_entry_qword` at this physical address.
    EntryStore(PhysAddr),
    /// `clean_dcache` of `[pa, pa + size)` (`pa` is `None` outside the arena).
    Clean {
        /// First byte cleaned.
        pa: Option<PhysAddr>,
        /// Bytes cleaned.
        size: usize,
    },
}

/// Counters of what the driver asked of the HAL, for leak and usage checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HalStats {
    /// `dma_alloc` regions not yet freed.
    pub live_allocations: usize,
    /// Bytes (as requested) of those regions.
    pub live_bytes: u64,
    /// `map_phys` mappings not yet unmapped.
    pub live_mappings: usize,
    /// `store_entry_qword` calls that reached the model's `write_u64`.
    pub entry_stores: usize,
    /// `store_entry_qword` calls on a pointer outside the arena (volatile store, no check).
    pub foreign_entry_stores: usize,
    /// `clean_dcache` calls.
    pub cleans: usize,
    /// `invalidate_dcache` calls.
    pub invalidates: usize,
    /// `clean_dcache` calls dropped by [`ModelHal::drop_cleans`] (a broken-driver variant).
    pub dropped_cleans: usize,
    /// `dma_free` / `unmap_phys` calls for something this HAL did not hand out (or twice).
    pub bad_releases: usize,
}

#[derive(Debug, Default)]
struct HalState {
    /// Live allocations by physical address: requested size.
    allocs: Mutex<BTreeMap<u64, usize>>,
    /// Live mappings: (pointer address, size, the call).
    maps: Mutex<Vec<(usize, usize, Mapping)>>,
    /// Every `map_phys` call that succeeded, in order.
    map_log: Mutex<Vec<Mapping>>,
    /// Every entry store and clean, in order.
    cache_log: Mutex<Vec<CacheEvent>>,
    entry_stores: AtomicUsize,
    foreign_entry_stores: AtomicUsize,
    cleans: AtomicUsize,
    invalidates: AtomicUsize,
    bad_releases: AtomicUsize,
    /// Physical ranges `[start, end)` whose cleans are dropped.
    drop_cleans: Mutex<Vec<(u64, u64)>>,
    dropped_cleans: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`Hal`] on the model: DMA memory from the model's pool in the [`HostRam`] arena, foreign
/// mappings of arena RAM, entry stores through the model's torn-fetch check, and `relax` as a
/// model time step.
///
/// Allocations are never reused (the model's pool only grows); `dma_free` and `unmap_phys`
/// update the live counts ([`ModelHal::stats`]) so a test can assert that nothing leaked.
/// `map_phys` records the attribute but does not change what the CPU sees through the pointer:
/// the model's encrypted-region garbage applies only to the model's own reads.
#[derive(Clone, Debug)]
pub struct ModelHal {
    model: SharedModel,
    ram: HostRam,
    ram_base: u64,
    ram_end: u64,
    windows: Arc<[PhysRange]>,
    cache_maintenance: bool,
    state: Arc<HalState>,
}

impl ModelHal {
    /// The arena offset of `[pa, pa + size)`, if it lies in RAM.
    fn offset(&self, pa: u64, size: u64) -> Option<u64> {
        let end = pa.checked_add(size)?;
        (pa >= self.ram_base && end <= self.ram_end).then(|| pa - self.ram_base)
    }

    /// The CPU pointer of physical address `pa` (`None` outside RAM).
    pub fn va(&self, pa: PhysAddr) -> Option<NonNull<u8>> {
        let off = self.offset(pa.0, 1)?;
        NonNull::new(self.ram.byte_ptr(off)?)
    }

    /// The physical address of a CPU pointer into RAM (`None` for any other pointer).
    pub fn pa(&self, va: *const u8) -> Option<PhysAddr> {
        Some(PhysAddr(self.ram_base + self.ram.offset_of(va)?))
    }

    /// `dma_alloc` regions not yet freed.
    pub fn live_allocations(&self) -> usize {
        lock(&self.state.allocs).len()
    }

    /// `map_phys` mappings not yet unmapped.
    pub fn live_mappings(&self) -> usize {
        lock(&self.state.maps).len()
    }

    /// Every successful `map_phys` call so far, in order (with its attribute).
    pub fn mapping_log(&self) -> Vec<Mapping> {
        lock(&self.state.map_log).clone()
    }

    /// Every entry store and cache clean so far, in order.
    pub fn cache_log(&self) -> Vec<CacheEvent> {
        lock(&self.state.cache_log).clone()
    }

    /// All counters.
    pub fn stats(&self) -> HalStats {
        let allocs = lock(&self.state.allocs);
        HalStats {
            live_allocations: allocs.len(),
            live_bytes: allocs.values().map(|&s| s as u64).sum(),
            live_mappings: self.live_mappings(),
            entry_stores: self.state.entry_stores.load(Ordering::Relaxed),
            foreign_entry_stores: self.state.foreign_entry_stores.load(Ordering::Relaxed),
            cleans: self.state.cleans.load(Ordering::Relaxed),
            invalidates: self.state.invalidates.load(Ordering::Relaxed),
            bad_releases: self.state.bad_releases.load(Ordering::Relaxed),
            dropped_cleans: self.state.dropped_cleans.load(Ordering::Relaxed),
        }
    }

    /// A broken-driver variant for non-coherent tests (SPEC K17): from now on, cache cleans
    /// that touch `[start, end)` are counted but not performed, as if the driver had forgotten
    /// them. Every handle of this HAL shares the filter.
    pub fn drop_cleans(&self, start: u64, end: u64) {
        lock(&self.state.drop_cleans).push((start, end));
    }

    /// Performs every clean again.
    pub fn keep_cleans(&self) {
        lock(&self.state.drop_cleans).clear();
    }

    /// Where the DMA pool's next allocation starts at the earliest (for
    /// [`ModelHal::drop_cleans`] of memory allocated from now on).
    pub fn next_dma_pa(&self) -> u64 {
        self.model.with(|m| m.dma_pool_next())
    }
}

// SAFETY: `dma_alloc` hands out pool pages of the arena, which the model's pool never hands
// out twice; the pointer is derived from the whole arena (`HostRam::byte_ptr`), is valid for
// the region's size for as long as this HAL (which holds the arena's `Arc`) lives, is zeroed
// by `alloc_pages`, and is checked to be aligned to `align` (pa alignment comes from the
// pool). `map_phys` returns pointers into the arena for ranges checked to lie inside it. Cache
// cleans are forwarded to the model, whose non-coherent view is the only place they matter.
unsafe impl Hal for ModelHal {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        if !align.is_power_of_two() {
            return Err(HalError::NoMemory);
        }
        let pages = (size as u64).max(1).div_ceil(PAGE);
        let pa = self
            .model
            .alloc_pages(pages, align as u64)
            .map_err(|_| HalError::NoMemory)?;
        let off = self.offset(pa, pages * PAGE).ok_or(HalError::NoMemory)?;
        let va = self
            .ram
            .byte_ptr(off)
            .and_then(NonNull::new)
            .ok_or(HalError::NoMemory)?;
        // The arena's host alignment is its size rounded up to a power of two; a larger
        // request, or a RAM base aligned less than the request, cannot be met by the pointer.
        if va.as_ptr().addr() % align != 0 {
            return Err(HalError::NoMemory);
        }
        lock(&self.state.allocs).insert(pa, size);
        Ok(DmaRegion {
            pa: PhysAddr(pa),
            va,
            size,
        })
    }

    unsafe fn dma_free(&self, region: DmaRegion) {
        let known = lock(&self.state.allocs).remove(&region.pa.0) == Some(region.size);
        if !known || self.pa(region.va.as_ptr()) != Some(region.pa) {
            self.state.bad_releases.fetch_add(1, Ordering::Relaxed);
        }
        // From now on any SMMU read of it is a violation (SPEC M3): a table or queue given
        // back while the SMMU can still reach it is caught wherever it happens.
        self.model
            .with(|m| m.mark_freed(region.pa.0, (region.size as u64).div_ceil(PAGE) * PAGE));
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        let off = self
            .offset(pa.0, (size as u64).max(1))
            .ok_or(HalError::MapRefused)?;
        let va = self
            .ram
            .byte_ptr(off)
            .and_then(NonNull::new)
            .ok_or(HalError::MapRefused)?;
        let m = Mapping { pa, size, attr };
        lock(&self.state.maps).push((va.as_ptr().addr(), size, m));
        lock(&self.state.map_log).push(m);
        Ok(va)
    }

    unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize) {
        let mut maps = lock(&self.state.maps);
        match maps
            .iter()
            .position(|&(a, s, _)| a == va.as_ptr().addr() && s == size)
        {
            Some(i) => {
                maps.swap_remove(i);
            }
            None => {
                self.state.bad_releases.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        self.offset(pa.0, size).is_some()
    }

    fn clean_dcache(&self, va: NonNull<u8>, size: usize) {
        let pa = self.pa(va.as_ptr());
        lock(&self.state.cache_log).push(CacheEvent::Clean { pa, size });
        self.state.cleans.fetch_add(1, Ordering::Relaxed);
        let Some(pa) = self.pa(va.as_ptr()) else {
            return;
        };
        let end = pa.0.saturating_add(size as u64);
        let dropped = lock(&self.state.drop_cleans)
            .iter()
            .any(|&(s, e)| pa.0 < e && end > s);
        if dropped {
            self.state.dropped_cleans.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.model.clean_dcache(pa.0, size as u64);
    }

    fn invalidate_dcache(&self, va: NonNull<u8>, size: usize) {
        let _ = (va, size);
        self.state.invalidates.fetch_add(1, Ordering::Relaxed);
    }

    fn has_cache_maintenance(&self) -> bool {
        self.cache_maintenance
    }

    fn shared_windows(&self) -> &[PhysRange] {
        &self.windows
    }

    unsafe fn store_entry_qword(&self, va: NonNull<u64>, value: u64) {
        if let Some(pa) = self.pa(va.as_ptr().cast::<u8>()) {
            lock(&self.state.cache_log).push(CacheEvent::EntryStore(pa));
            if self.model.write_u64(pa.0, value).is_ok() {
                self.state.entry_stores.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.state
            .foreign_entry_stores
            .fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller guarantees `va` is 8-byte aligned and valid for writes (it lies in
        // a live region this HAL handed out).
        unsafe { va.as_ptr().write_volatile(value) }
    }

    fn relax(&self) {
        self.model.step();
    }
}

//! [`Stepping`]: a user's own [`Hal`] on the model.
//!
//! The model is a simulation: time passes in it only when something steps it. Its register
//! adapter ([`ModelRegs`](crate::ModelRegs)) steps once per access and the `relax` of
//! [`ModelHal`](crate::ModelHal) steps too, so the driver's polls (a bounded count of
//! `relax` calls) see the SMMU make progress. A HAL written for a board, whose `relax` is
//! `spin_loop` or `wfe`, does not step the model: a hostile model that acknowledges late
//! never gets there within the poll budget, and the driver reports `Timeout(CmdSync)` or
//! `Timeout(Cr0Ack)`. Wrapping the HAL in [`Stepping`] makes each `relax` step the model
//! first, then run the HAL's own `relax`; everything else goes to the HAL unchanged.

use core::ptr::NonNull;

use smmu::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, PhysRange};
use smmu_model::SharedModel;

/// A [`Hal`] whose [`relax`](Hal::relax) advances the model's time by one step before calling
/// the wrapped HAL's: run a HAL of your own against the model.
///
/// ```
/// use core::ptr::NonNull;
/// use smmu::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, ResetPlan, Smmu, SmmuConfig};
/// use smmu::{MasterConfig, OwnedStreamTable};
/// use smmu_model::{HostRam, ModelConfig, Profile};
/// use smmu_model_platform::{platform::ModelPlatform, stepping::Stepping};
///
/// /// A board's HAL, minimal: DMA pages from a pool, no foreign mappings, `relax` spins.
/// struct MyHal { ram: HostRam, ram_base: u64, model: smmu_model::SharedModel }
///
/// // SAFETY: pages come from the model's pool (zeroed, never handed out twice, aligned as
/// // asked) and the pointer is the arena's, valid while `ram` lives.
/// unsafe impl Hal for MyHal {
///     fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
///         let pages = (size as u64).div_ceil(4096).max(1);
///         let pa = self.model.alloc_pages(pages, align as u64).map_err(|_| HalError::NoMemory)?;
///         let va = self.ram.byte_ptr(pa - self.ram_base).and_then(NonNull::new);
///         Ok(DmaRegion { pa: PhysAddr(pa), va: va.ok_or(HalError::NoMemory)?, size })
///     }
///     unsafe fn dma_free(&self, _: DmaRegion) {}
///     fn map_phys(&self, _: PhysAddr, _: usize, _: MapAttr) -> Result<NonNull<u8>, HalError> {
///         Err(HalError::Unsupported)
///     }
///     unsafe fn unmap_phys(&self, _: NonNull<u8>, _: usize) {}
///     fn is_ram(&self, _: PhysAddr, _: u64) -> bool { false }
/// }
///
/// let platform = ModelPlatform::new(ModelConfig::hostile(Profile::grace(), 3)).unwrap();
/// let model = platform.model().clone();
/// let mine = MyHal { ram: platform.ram().clone(), ram_base: 0x4000_0000, model: model.clone() };
/// let hal = Stepping::new(mine, model);
/// let regs = platform.regs();
/// let features = smmu::probe::probe(&regs).unwrap();
/// let strtab = OwnedStreamTable::for_smmu(&hal, &features, &SmmuConfig::default()).unwrap();
/// let mut smmu = Smmu::new(regs, hal, features, strtab, SmmuConfig::default()).unwrap();
/// smmu.reset(&ResetPlan::FULL).unwrap(); // without `Stepping`: Timeout(CmdSync)
/// let nic = smmu.add_master(&MasterConfig::new(&[0x10])).unwrap();
/// smmu.attach_blocked(nic).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Stepping<H> {
    inner: H,
    model: SharedModel,
}

impl<H> Stepping<H> {
    /// `inner`, with each `relax` stepping `model` first.
    pub fn new(inner: H, model: SharedModel) -> Self {
        Self { inner, model }
    }

    /// The wrapped HAL.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The wrapped HAL, unwrapped.
    pub fn into_inner(self) -> H {
        self.inner
    }
}

// SAFETY: every method but `relax` forwards to `H`, whose implementation upholds the
// contract; `relax` only adds a model step, which hands out or frees nothing.
unsafe impl<H: Hal> Hal for Stepping<H> {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        self.inner.dma_alloc(size, align)
    }

    unsafe fn dma_free(&self, region: DmaRegion) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.dma_free(region) }
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        self.inner.map_phys(pa, size, attr)
    }

    unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.unmap_phys(va, size) }
    }

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        self.inner.is_ram(pa, size)
    }

    fn clean_dcache(&self, va: NonNull<u8>, size: usize) {
        self.inner.clean_dcache(va, size);
    }

    fn invalidate_dcache(&self, va: NonNull<u8>, size: usize) {
        self.inner.invalidate_dcache(va, size);
    }

    fn has_cache_maintenance(&self) -> bool {
        self.inner.has_cache_maintenance()
    }

    fn shared_windows(&self) -> &[PhysRange] {
        self.inner.shared_windows()
    }

    unsafe fn store_entry_qword(&self, va: NonNull<u64>, value: u64) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.store_entry_qword(va, value) }
    }

    fn relax(&self) {
        self.model.step();
        self.inner.relax();
    }
}

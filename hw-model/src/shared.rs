//! A cloneable, thread-safe handle for adapting `&self` driver traits to the model.

use crate::mem::MemError;
use crate::model::Model;
use std::sync::{Arc, Mutex, MutexGuard};

/// A shared handle to a [`Model`]: every method takes `&self`, so a driver's register trait
/// (`fn read32(&self, offset: usize) -> u32`, ...) and its HAL can forward to it directly, and
/// the test keeps a clone to step time, run masters and inspect the violation log.
///
/// ```
/// use smmu_model::{fields::reg, Model, ModelConfig, SharedModel};
///
/// let shared = SharedModel::new(Model::new(ModelConfig::default()));
/// let regs = shared.clone(); // hand this one to the driver
/// regs.write32(reg::GBPA as usize, reg::GBPA_UPDATE);
/// while regs.read32(reg::GBPA as usize) & reg::GBPA_UPDATE != 0 {}
/// assert!(shared.with(|m| m.violations().is_empty()));
/// ```
#[derive(Clone, Debug)]
pub struct SharedModel(Arc<Mutex<Model>>);

impl SharedModel {
    /// Wraps a model.
    pub fn new(m: Model) -> Self {
        Self(Arc::new(Mutex::new(m)))
    }

    fn lock(&self) -> MutexGuard<'_, Model> {
        // A panic in another test thread must not turn every later access into a panic.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` with exclusive access to the model.
    pub fn with<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        f(&mut self.lock())
    }

    /// 32-bit register read.
    pub fn read32(&self, offset: usize) -> u32 {
        self.lock().read32(offset as u64)
    }

    /// 32-bit register write.
    pub fn write32(&self, offset: usize, value: u32) {
        self.lock().write32(offset as u64, value);
    }

    /// 64-bit register read.
    pub fn read64(&self, offset: usize) -> u64 {
        self.lock().read64(offset as u64)
    }

    /// 64-bit register write.
    pub fn write64(&self, offset: usize, value: u64) {
        self.lock().write64(offset as u64, value);
    }

    /// DMA-coherent allocation: `n` zeroed pages aligned to `align`; physical = virtual.
    pub fn alloc_pages(&self, n: u64, align: u64) -> Result<u64, MemError> {
        self.lock().alloc_pages(n, align)
    }

    /// CPU read of physical memory.
    pub fn mem_read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.lock().mem_read(pa, buf)
    }

    /// CPU write of physical memory (a sequence of 64-bit stores, each firing the hook).
    pub fn mem_write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.lock().mem_write(pa, data)
    }

    /// CPU 64-bit load.
    pub fn read_u64(&self, pa: u64) -> Result<u64, MemError> {
        self.lock().read_u64(pa)
    }

    /// CPU 64-bit single-copy-atomic store (fires the torn-fetch hook).
    pub fn write_u64(&self, pa: u64, value: u64) -> Result<(), MemError> {
        self.lock().write_u64(pa, value)
    }

    /// CPU clean to the point of coherency (see [`Model::clean_dcache`]).
    pub fn clean_dcache(&self, pa: u64, len: u64) {
        self.lock().clean_dcache(pa, len);
    }

    /// Advances model time by one step.
    pub fn step(&self) {
        self.lock().step();
    }
}

//! How a platform integrates the driver: its HAL, probe and reset, a protected GPU attached
//! to a protected stage-1 domain, and a bounce buffer mapped for it.
//!
//! The "hardware" is the SMMUv3 model; everything else is what a kernel or firmware writes:
//! a HAL over its DMA allocator (here a bump allocator over one physically contiguous
//! carve-out, linearly mapped), a page-table allocator, and the calls into the driver.
//!
//! Run with `cargo run -p smmu-scenarios --example platform_integration`.

use core::ptr::NonNull;
use std::sync::Mutex;

use smmu::strtab::Layout;
use smmu::{
    DmaRegion, DomainStage, Hal, HalError, MapAttr, MasterConfig, OwnedStreamTable, PhysAddr,
    PhysRange, ResetPlan, Smmu, SmmuConfig,
};
use smmu_model::{HostRam, ModelConfig, Profile, SharedModel, Transaction};
use smmu_model_platform::platform::ModelRegs;
use smmu_pagetable::{Iova, Prot, TableAllocator, TableMem};

/// The platform: a carve-out of RAM at `base`, linearly mapped at `ram`'s host pointer.
struct Platform {
    ram: HostRam,
    base: u64,
    next: Mutex<u64>,
    /// The realm's shared (decrypted) bounce-buffer window.
    shared: [PhysRange; 1],
    model: SharedModel,
}

impl Platform {
    fn va(&self, pa: u64) -> Option<NonNull<u8>> {
        NonNull::new(self.ram.byte_ptr(pa.checked_sub(self.base)?)?)
    }
}

// SAFETY: allocations come from a bump allocator over the carve-out (never handed out twice),
// zeroed by construction of the arena and never reused; the linear map makes `va` valid for
// the whole region; `map_phys` only maps ranges inside the carve-out.
unsafe impl Hal for Platform {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        let mut next = self.next.lock().map_err(|_| HalError::NoMemory)?;
        let pa = next.next_multiple_of(align as u64);
        let end = pa + size as u64;
        if end > self.base + self.ram.len_bytes() {
            return Err(HalError::NoMemory);
        }
        *next = end;
        let va = self.va(pa).ok_or(HalError::NoMemory)?;
        Ok(DmaRegion {
            pa: PhysAddr(pa),
            va,
            size,
        })
    }

    unsafe fn dma_free(&self, _region: DmaRegion) {
        // A bump allocator: freed memory is not reused.
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, _attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        if !self.is_ram(pa, size as u64) {
            return Err(HalError::MapRefused);
        }
        self.va(pa.0).ok_or(HalError::MapRefused)
    }

    unsafe fn unmap_phys(&self, _va: NonNull<u8>, _size: usize) {}

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        pa.0 >= self.base && pa.0.saturating_add(size) <= self.base + self.ram.len_bytes()
    }

    fn shared_windows(&self) -> &[PhysRange] {
        &self.shared
    }

    fn relax(&self) {
        // A kernel would cpu_relax() or wfe; the model needs time to pass.
        self.model.with(smmu_model::Model::step);
    }
}

/// Page tables from the same allocator.
struct Tables<'p>(&'p Platform);

// SAFETY: tables are `dma_alloc` memory (zeroed, aligned to their size, never reused) and
// `phys_to_virt` is the linear map.
unsafe impl TableAllocator for Tables<'_> {
    fn alloc_table(&self, size: usize) -> Option<TableMem> {
        let r = self.0.dma_alloc(size, size).ok()?;
        Some(TableMem {
            pa: r.pa,
            va: r.va.cast(),
        })
    }

    unsafe fn free_table(&self, _table: TableMem, _size: usize) {}

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u64> {
        self.0.va(pa.0).map_or(NonNull::dangling(), NonNull::cast)
    }
}

fn main() -> Result<(), smmu::Error> {
    // The hardware: a Grace-like SMMU whose RAM is our carve-out.
    let ram = HostRam::new(16 << 20).map_err(|_| smmu::Error::Hal(HalError::NoMemory))?;
    let base = 0x8000_0000;
    let model = SharedModel::new(smmu_model::Model::new(ModelConfig {
        ram_base: base,
        ram_size: ram.len_bytes(),
        host_ram: Some(ram.clone()),
        ..ModelConfig::hostile(Profile::grace(), 1)
    }));
    let shared = PhysRange {
        start: PhysAddr(base + (8 << 20)),
        size: 1 << 20,
    };
    let platform = Platform {
        ram,
        base,
        next: Mutex::new(base),
        shared: [shared],
        model: model.clone(),
    };
    let regs = ModelRegs::new(model.clone());

    // Probe, build a stream table, reset.
    let features = smmu::probe::probe(&regs)?;
    let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
    let abort = smmu::writer::make::ste_image(&smmu::writer::make::abort_ste());
    let strtab = OwnedStreamTable::new(&platform, layout, log2, features.coherent, &abort)?;
    let mut smmu = Smmu::new(&regs, &platform, features, strtab, SmmuConfig::default())?;
    smmu.reset(&ResetPlan::FULL)?;
    println!("SMMU up: {layout:?} stream table of 2^{log2} StreamIDs");

    // The confidential GPU: protected, so only a protected paging domain will do.
    let gpu = smmu.add_master(&MasterConfig {
        sids: &[0x100],
        protected: true,
        ats: false,
        stall: false,
        ssid_bits: 0,
    })?;
    let domain = smmu.new_domain(DomainStage::Stage1, true, Tables(&platform))?;
    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    // Private memory is refused...
    let private = smmu.map(
        &domain,
        Iova(0x1000_0000),
        PhysAddr(base + (4 << 20)),
        0x1000,
        rw,
    );
    println!("map private memory: {private:?}");
    // ...the bounce buffer in the shared window is not.
    smmu.map(&domain, Iova(0x1000_0000), shared.start, 0x10_0000, rw)?;
    smmu.attach(gpu, &domain)?;

    let hit = model.with(|m| m.dma(Transaction::write(0x100, 0x1000_0040)));
    let miss = model.with(|m| m.dma(Transaction::read(0x100, 0x2000_0000)));
    println!("GPU DMA to its bounce buffer: {hit:?}");
    println!("GPU DMA elsewhere: {miss:?}");
    assert_eq!(hit.pa(), Some(shared.start.0 + 0x40));
    assert!(miss.pa().is_none());
    assert!(model.with(|m| m.violations().is_empty()));
    Ok(())
}

//! A user's own `Hal` on the model: without [`Stepping`] the model never advances between
//! polls and the driver times out; wrapped, the same HAL brings the driver up, attaches a
//! domain and translates DMA.

use core::ptr::NonNull;

use smmu::host::HalTables;
use smmu::{
    DmaRegion, DomainOptions, Error, Hal, HalError, MapAttr, MasterConfig, OwnedStreamTable,
    PhysAddr, Prot, ResetPlan, Smmu, SmmuConfig, WaitFor,
};
use smmu_model::{HostRam, ModelConfig, Profile, SharedModel, Transaction};
use smmu_model_platform::{ModelPlatform, Stepping};
use smmu_pagetable::Iova;

/// What a board's HAL looks like at its smallest: pages from a pool, no foreign mappings, no
/// cache maintenance, and a `relax` that spins. It stays a HAL of its own (not the strict host
/// HAL, nor the model's): a HAL the user wrote, that knows nothing of the model's time, is
/// what this test is about.
#[derive(Clone)]
struct BoardHal {
    ram: HostRam,
    ram_base: u64,
    model: SharedModel,
}

// SAFETY: pages come from the model's pool (zeroed, aligned as asked, never handed out
// twice); the pointer is the arena's, valid while `ram` lives.
unsafe impl Hal for BoardHal {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        let pages = (size as u64).div_ceil(4096).max(1);
        let pa = self
            .model
            .alloc_pages(pages, align as u64)
            .map_err(|_| HalError::NoMemory)?;
        let va = self.ram.byte_ptr(pa - self.ram_base).and_then(NonNull::new);
        Ok(DmaRegion {
            pa: PhysAddr(pa),
            va: va.ok_or(HalError::NoMemory)?,
            size,
        })
    }
    unsafe fn dma_free(&self, _: DmaRegion) {}
    fn map_phys(&self, _: PhysAddr, _: usize, _: MapAttr) -> Result<NonNull<u8>, HalError> {
        Err(HalError::Unsupported)
    }
    unsafe fn unmap_phys(&self, _: NonNull<u8>, _: usize) {}
    fn is_ram(&self, _: PhysAddr, _: u64) -> bool {
        false
    }
}

fn platform() -> (ModelPlatform, BoardHal) {
    let cfg = ModelConfig::hostile(Profile::grace(), 9);
    let ram_base = cfg.ram_base;
    let platform = ModelPlatform::new(cfg).expect("model");
    let hal = BoardHal {
        ram: platform.ram().clone(),
        ram_base,
        model: platform.model().clone(),
    };
    (platform, hal)
}

#[test]
fn a_users_hal_times_out_on_the_model_unless_it_steps_it() {
    // Unwrapped: `relax` spins, the model stands still between polls, the reset times out.
    let (platform, hal) = platform();
    let regs = platform.regs();
    let features = smmu::probe::probe(&regs).expect("probe");
    let config = SmmuConfig::default();
    let strtab = OwnedStreamTable::for_smmu(&hal, &features, &config).expect("table");
    let mut smmu = Smmu::new(regs, hal, features, strtab, config).expect("driver");
    let err = smmu
        .reset(&ResetPlan::FULL)
        .expect_err("the model never advances");
    assert!(
        matches!(err, Error::Timeout(WaitFor::CmdSync | WaitFor::Cr0Ack)),
        "{err:?}"
    );

    // Wrapped: the same HAL brings the driver up and translates.
    let (platform, board) = self::platform();
    let model = platform.model().clone();
    let hal = Stepping::new(board.clone(), model.clone());
    let regs = platform.regs();
    let features = smmu::probe::probe(&regs).expect("probe");
    let strtab = OwnedStreamTable::for_smmu(&hal, &features, &config).expect("table");
    let mut smmu = Smmu::new(regs, hal.clone(), features, strtab, config).expect("driver");
    smmu.reset(&ResetPlan::FULL).expect("reset");
    let nic = smmu
        .add_master(&MasterConfig::new(&[0x10]))
        .expect("master");
    // Page tables from the same HAL, through the table allocator over any HAL.
    let tables = HalTables::<_>::new(hal.clone());
    let domain = smmu
        .new_domain_with(DomainOptions::stage1(), tables)
        .expect("domain");
    let ring = hal.dma_alloc(4096, 4096).expect("ring");
    smmu.map(
        &domain,
        Iova(0x1000_0000),
        ring.pa,
        4096,
        Prot::READ | Prot::WRITE,
    )
    .expect("map");
    smmu.attach(nic, &domain).expect("attach");
    let hit = model.with(|m| m.dma(Transaction::write(0x10, 0x1000_0040)));
    assert_eq!(hit.pa(), Some(ring.pa.0 + 0x40));
    assert!(model.with(|m| m.violations().is_empty()));
}

//! The model platform adapter: DMA memory shared by pointer, entry stores through the model's
//! torn-fetch check, foreign mappings, register forwarding.

use core::ptr::NonNull;

use smmu::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, PhysRange, RegisterAccess};
use smmu_model::fields::{cmd, reg, ste};
use smmu_model::{
    Cause, Model, ModelConfig, Profile, SharedModel, Transaction, TxnResult, ViolationKind,
};
use smmu_model_platform::{ModelHal, ModelPlatform, ModelRegs, DEFAULT_RAM_BYTES};

const POLLS: u32 = 10_000;

fn platform() -> ModelPlatform {
    ModelPlatform::new(ModelConfig::default()).unwrap()
}

fn r(offset: u64) -> usize {
    offset as usize
}

/// A pointer to the 64-bit word at `offset` of a region (asserted 8-aligned and inside).
fn entry_ptr(region: &DmaRegion, offset: usize) -> NonNull<u64> {
    assert!(offset.is_multiple_of(8) && offset + 8 <= region.size);
    assert_eq!(region.va.as_ptr().addr() % 8, 0);
    // SAFETY: `offset` is inside the region (asserted), so the result is in bounds and non-null.
    unsafe { region.va.add(offset).cast::<u64>() }
}

/// A volatile 64-bit store through a region's pointer, as the driver does for queue entries.
fn poke(region: &DmaRegion, offset: usize, value: u64) {
    let p = entry_ptr(region, offset);
    // SAFETY: `p` is an aligned word inside the live region, whose `va` is valid for `size`
    // bytes; no other thread touches it.
    unsafe { p.as_ptr().write_volatile(value) }
}

fn peek(region: &DmaRegion, offset: usize) -> u64 {
    let p = entry_ptr(region, offset);
    // SAFETY: as in `poke`, for a read.
    unsafe { p.as_ptr().read_volatile() }
}

/// A minimal driver: a 256-entry command queue and a 256-entry linear stream table in HAL
/// memory, registers through `ModelRegs`, every poll bounded and relaxing through the HAL.
struct MiniDriver {
    regs: ModelRegs,
    hal: ModelHal,
    cmdq: DmaRegion,
    strtab: DmaRegion,
    prod: u32,
}

impl MiniDriver {
    fn new(p: &ModelPlatform) -> Self {
        let (regs, hal) = (p.regs(), p.hal());
        let cmdq = hal.dma_alloc(256 * 16, 4096).unwrap();
        let strtab = hal.dma_alloc(256 * 64, 16384).unwrap();
        let mut d = Self {
            regs,
            hal,
            cmdq,
            strtab,
            prod: 0,
        };
        d.regs.write64(r(reg::CMDQ_BASE), d.cmdq.pa.0 | 8);
        d.regs.write32(r(reg::CMDQ_PROD), 0);
        d.regs.write32(r(reg::CMDQ_CONS), 0);
        d.regs.write32(r(reg::STRTAB_BASE_CFG), 8);
        d.regs.write64(r(reg::STRTAB_BASE), d.strtab.pa.0);
        d.regs.write32(r(reg::CR2), reg::CR2_RECINVSID);
        d.set_cr0(reg::CR0_CMDQEN);
        let mut all = [u64::from(cmd::CFGI_STE_RANGE), 0];
        cmd::RANGE.set(&mut all, 31);
        d.cmd(all);
        d.cmd([u64::from(cmd::TLBI_NSNH_ALL), 0]);
        d.sync();
        d.set_cr0(reg::CR0_CMDQEN | reg::CR0_SMMUEN);
        d
    }

    fn poll(&self, off: u64, mask: u32, want: u32) {
        for _ in 0..POLLS {
            if self.regs.read32(r(off)) & mask == want {
                return;
            }
            self.hal.relax();
        }
        panic!("poll of {off:#x} timed out");
    }

    fn set_cr0(&self, v: u32) {
        self.regs.write32(r(reg::CR0), v);
        self.poll(reg::CR0ACK, 0x1FF, v);
    }

    fn cmd(&mut self, w: [u64; 2]) {
        let idx = (self.prod & 255) as usize;
        poke(&self.cmdq, 16 * idx, w[0]);
        poke(&self.cmdq, 16 * idx + 8, w[1]);
        self.prod = (self.prod + 1) & 511;
        self.regs.write32(r(reg::CMDQ_PROD), self.prod);
    }

    fn sync(&mut self) {
        self.cmd([u64::from(cmd::SYNC), 0]);
        self.poll(reg::CMDQ_CONS, 0xF_FFFF, self.prod);
    }

    fn cfgi_ste(&mut self, sid: u32) {
        let mut w = [u64::from(cmd::CFGI_STE), 0];
        cmd::SID.set(&mut w, u64::from(sid));
        cmd::LEAF.set(&mut w, 1);
        self.cmd(w);
        self.sync();
    }

    /// Writes an STE word by word through `store_entry_qword` (a naive, possibly torn update).
    fn store_ste(&self, sid: u32, words: [u64; 8]) {
        for (i, w) in words.iter().enumerate() {
            let va = entry_ptr(&self.strtab, 64 * sid as usize + 8 * i);
            // SAFETY: `va` is an 8-aligned word of the live stream table this HAL allocated.
            unsafe { self.hal.store_entry_qword(va, *w) };
        }
    }
}

fn s2_ste(vmid: u16, s2ttb: u64) -> [u64; 8] {
    let mut w = [0u64; 8];
    ste::V.set(&mut w, 1);
    ste::CONFIG.set(&mut w, ste::CONFIG_S2);
    ste::S2VMID.set(&mut w, u64::from(vmid));
    ste::S2T0SZ.set(&mut w, 20);
    ste::S2SL0.set(&mut w, 2);
    ste::S2PS.set(&mut w, 4);
    ste::S2AA64.set(&mut w, 1);
    ste::S2R.set(&mut w, 1);
    ste::S2TTB.set(&mut w, s2ttb >> 4);
    w
}

#[test]
fn adapters_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<ModelRegs>();
    check::<ModelHal>();
    check::<ModelPlatform>();
    check::<SharedModel>();
}

#[test]
fn arena_size_follows_ram_size_up_to_the_default() {
    let p = platform();
    assert_eq!(p.ram().len_bytes(), DEFAULT_RAM_BYTES, "1 GiB clamped");
    assert_eq!(p.model().with(|m| m.config().ram_size), DEFAULT_RAM_BYTES);
    let p = ModelPlatform::new(ModelConfig {
        ram_size: 5000,
        ..ModelConfig::default()
    })
    .unwrap();
    assert_eq!(p.ram().len_bytes(), 8192, "rounded up to pages");
    let p = ModelPlatform::with_ram_bytes(ModelConfig::default(), 1 << 20).unwrap();
    assert_eq!(p.ram().len_bytes(), 1 << 20);
    assert!(ModelPlatform::with_ram_bytes(ModelConfig::default(), 100).is_err());
}

#[test]
fn dma_alloc_region_is_model_memory() {
    let p = platform();
    let hal = p.hal();
    let model = p.model().clone();
    let a = hal.dma_alloc(3 * 4096 + 100, 65536).unwrap();
    assert_eq!(a.size, 3 * 4096 + 100);
    assert_eq!(a.pa.0 % 65536, 0);
    assert_eq!(a.va.as_ptr().addr() % 65536, 0, "va aligned like pa");
    assert!(hal.is_ram(a.pa, 4 * 4096));
    assert_eq!(hal.va(a.pa), Some(a.va));
    assert_eq!(hal.pa(a.va.as_ptr()), Some(a.pa));
    for off in (0..a.size - 7).step_by(8) {
        assert_eq!(peek(&a, off), 0, "zeroed at {off:#x}");
    }
    // CPU writes through the pointer are what the model reads at pa, and back.
    poke(&a, 0, 0x1122_3344_5566_7788);
    poke(&a, 3 * 4096 + 64, 0xABCD);
    assert_eq!(model.read_u64(a.pa.0), Ok(0x1122_3344_5566_7788));
    assert_eq!(model.read_u64(a.pa.0 + 3 * 4096 + 64), Ok(0xABCD));
    model.write_u64(a.pa.0 + 8, 42).unwrap();
    assert_eq!(peek(&a, 8), 42);
    // A second allocation does not overlap the first.
    let b = hal.dma_alloc(64, 64).unwrap();
    assert!(b.pa.0 >= a.pa.0 + 4 * 4096);
    let stats = hal.stats();
    assert_eq!(
        (stats.live_allocations, stats.live_bytes),
        (2, 3 * 4096 + 164)
    );
    // SAFETY: both regions came from this HAL and are not used again.
    unsafe {
        hal.dma_free(a);
        hal.dma_free(b);
    }
    assert_eq!(hal.live_allocations(), 0);
    assert_eq!(p.hal().stats().bad_releases, 0, "handles share counters");
    // SAFETY: deliberately a double free, to see it counted (the HAL never dereferences it).
    unsafe { hal.dma_free(b) };
    assert_eq!(hal.stats().bad_releases, 1);
    // Large alignments (a big queue's) hold for the pointer too.
    let big = hal.dma_alloc(4096, 4 << 20).unwrap();
    assert_eq!(
        (big.pa.0 % (4 << 20), big.va.as_ptr().addr() % (4 << 20)),
        (0, 0)
    );
    // Bad alignment, exhaustion.
    assert_eq!(hal.dma_alloc(4096, 3000), Err(HalError::NoMemory));
    assert_eq!(
        hal.dma_alloc(DEFAULT_RAM_BYTES as usize, 4096),
        Err(HalError::NoMemory)
    );
}

#[test]
fn store_entry_qword_lands_through_the_model() {
    let p = platform();
    let hal = p.hal();
    let region = hal.dma_alloc(4096, 4096).unwrap();
    let va = entry_ptr(&region, 24);
    // SAFETY: `va` is an 8-aligned word of a live region of this HAL.
    unsafe { hal.store_entry_qword(va, 0xFEED_F00D) };
    assert_eq!(p.model().read_u64(region.pa.0 + 24), Ok(0xFEED_F00D));
    assert_eq!(peek(&region, 24), 0xFEED_F00D);
    assert_eq!(hal.stats().entry_stores, 1);
    // A pointer outside the arena is stored to directly.
    let mut outside = 0u64;
    // SAFETY: `outside` is a live, aligned local.
    unsafe { hal.store_entry_qword(NonNull::from(&mut outside), 7) };
    assert_eq!(outside, 7);
    assert_eq!(hal.stats().foreign_entry_stores, 1);
}

#[test]
fn torn_ste_update_through_the_hal_is_caught() {
    // Hostile model: commands are consumed only as `relax` steps time, acks lag.
    let p = ModelPlatform::new(ModelConfig::hostile(Profile::qemu_virt(), 7)).unwrap();
    let mut d = MiniDriver::new(&p);
    let (a, b) = (
        p.hal().dma_alloc(4096, 4096).unwrap(),
        p.hal().dma_alloc(4096, 4096).unwrap(),
    );
    let old = s2_ste(1, a.pa.0);
    d.store_ste(9, old);
    d.cfgi_ste(9);
    let m = p.model();
    m.with(|m| m.dma(Transaction::read(9, 0)));
    // Naive qword-by-qword copy over the live STE: an intermediate image has VMID 2 with
    // TTB a.
    d.store_ste(9, s2_ste(2, b.pa.0));
    d.cfgi_ste(9);
    assert!(m.with(|m| m.has_violation(ViolationKind::TornStructure)));
    assert_eq!(p.hal().stats().entry_stores, 16);
    // The same copy by plain pointer stores bypasses the hook: nothing to see. This is why the
    // driver routes live entry stores through the HAL.
    m.with(Model::clear_violations);
    m.with(|m| m.dma(Transaction::read(9, 0)));
    for (i, w) in s2_ste(1, a.pa.0).iter().enumerate() {
        poke(&d.strtab, 64 * 9 + 8 * i, *w);
    }
    d.cfgi_ste(9);
    assert!(!m.with(|m| m.has_violation(ViolationKind::TornStructure)));
    // A bypass STE built through the HAL is honoured.
    let mut byp = [0u64; 8];
    ste::V.set(&mut byp, 1);
    ste::CONFIG.set(&mut byp, ste::CONFIG_BYPASS);
    d.store_ste(4, byp);
    d.cfgi_ste(4);
    assert_eq!(
        m.with(|m| m.dma(Transaction::read(4, 0x1234))),
        TxnResult::Bypass { pa: 0x1234 }
    );
    m.with(Model::clear_violations);
    assert!(m.with(|m| m.violations().is_empty()));
}

#[test]
fn map_phys_maps_ram_and_refuses_the_rest() {
    let p = platform();
    let hal = p.hal();
    let base = p.model().with(|m| m.config().ram_base);
    let end = base + DEFAULT_RAM_BYTES;
    for (pa, size) in [
        (0, 4096),
        (base - 4096, 8192),
        (end - 8, 16),
        (end, 8),
        (u64::MAX - 4, 8),
    ] {
        assert_eq!(
            hal.map_phys(PhysAddr(pa), size, MapAttr::Cacheable),
            Err(HalError::MapRefused),
            "{pa:#x}+{size:#x}"
        );
        assert!(!hal.is_ram(PhysAddr(pa), size as u64));
    }
    // Foreign memory (say, a crashed kernel's stream table) is seen through the mapping.
    let pa = PhysAddr(base + 0x30_0000);
    p.model().write_u64(pa.0 + 8, 0x55).unwrap();
    let va = hal
        .map_phys(pa, 4096, MapAttr::EncryptedNonCacheable)
        .unwrap();
    assert_eq!(Some(va), hal.va(pa));
    // SAFETY: `va` maps 4096 bytes of arena RAM, 4096-aligned; +8 is inside.
    assert_eq!(unsafe { va.add(8).cast::<u64>().read_volatile() }, 0x55);
    let va2 = hal
        .map_phys(PhysAddr(end - 8), 8, MapAttr::Cacheable)
        .unwrap();
    assert_eq!(hal.live_mappings(), 2);
    assert_eq!(hal.mapping_log()[0].attr, MapAttr::EncryptedNonCacheable);
    assert_eq!(hal.mapping_log()[1].pa, PhysAddr(end - 8));
    // SAFETY: both mappings came from `map_phys` with these sizes and are not used again.
    unsafe {
        hal.unmap_phys(va, 4096);
        hal.unmap_phys(va2, 8);
    }
    assert_eq!(hal.live_mappings(), 0);
    // SAFETY: deliberately unmapped twice, to see it counted.
    unsafe { hal.unmap_phys(va, 4096) };
    assert_eq!(hal.stats().bad_releases, 1);
}

#[test]
fn register_access_round_trip_and_gbpa_handshake() {
    let p = platform();
    let (regs, hal) = (p.regs(), p.hal());
    assert_eq!(
        regs.read32(r(reg::IDR0)),
        p.model().with(|m| m.read32(reg::IDR0))
    );
    // GBPA: set ABORT with Update, poll Update clear (bounded, relaxing), then read back.
    regs.write32(r(reg::GBPA), reg::GBPA_UPDATE | reg::GBPA_ABORT);
    let mut polls = 0;
    while regs.read32(r(reg::GBPA)) & reg::GBPA_UPDATE != 0 {
        polls += 1;
        assert!(polls < POLLS, "GBPA.Update never cleared");
        hal.relax();
    }
    assert_ne!(regs.read32(r(reg::GBPA)) & reg::GBPA_ABORT, 0);
    match p.model().with(|m| m.dma(Transaction::read(1, 0x1000))) {
        TxnResult::Abort { cause, .. } => assert_eq!(cause, Cause::GbpaAbort),
        other => panic!("expected a GBPA abort, got {other:?}"),
    }
    // 64-bit registers.
    regs.write64(r(reg::STRTAB_BASE), 0x4010_0000);
    assert_eq!(regs.read64(r(reg::STRTAB_BASE)), 0x4010_0000);
    assert_eq!(regs.read32(r(reg::STRTAB_BASE)), 0x4010_0000);
    assert!(p.model().with(|m| m.violations().is_empty()));
}

#[test]
fn hal_knobs() {
    let p = platform();
    let hal = p.hal();
    assert!(hal.shared_windows().is_empty());
    assert!(!hal.has_cache_maintenance());
    let w = PhysRange {
        start: PhysAddr(0x4800_0000),
        size: 1 << 20,
    };
    let p = p.with_shared_windows(vec![w]).with_cache_maintenance(true);
    let hal = p.hal();
    assert_eq!(hal.shared_windows(), &[w]);
    assert!(hal.has_cache_maintenance());
    let region = hal.dma_alloc(64, 64).unwrap();
    hal.clean_dcache(region.va, 64);
    hal.invalidate_dcache(region.va, 64);
    let s = hal.stats();
    assert_eq!((s.cleans, s.invalidates), (1, 1));
    // relax advances model time.
    let t = p.model().with(|m| m.time());
    hal.relax();
    assert_eq!(p.model().with(|m| m.time()), t + 1);
}

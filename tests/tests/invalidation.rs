//! Invalidation on the model (SPEC D6): how many commands an unmap costs, and a negative
//! control proving the model notices a driver that skips a CFGI or a TLBI.

use std::sync::atomic::{AtomicU32, Ordering};

use smmu::arch::cmd::{opcode, Command, SyncSignal};
use smmu::strtab::Layout;
use smmu::{
    DomainStage, MasterConfig, OwnedStreamTable, RegisterAccess, ResetPlan, Smmu, SmmuConfig,
};
use smmu_model::fields::reg;
use smmu_model::{Cause, ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::platform::{ModelHal, ModelPlatform, ModelRegs};
use smmu_model_platform::rig::Rig;
use smmu_model_platform::tables::ModelTables;
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);

fn config(ril: bool) -> ModelConfig {
    let profile = Profile::grace().with(3, reg::IDR3_RIL, u64::from(ril));
    ModelConfig {
        ram_size: 64 << 20,
        ..ModelConfig::hostile(profile, 5)
    }
}

/// Commands the driver issued to unmap `pages` 4K pages at `iova` (mapped page by page) from
/// a stage-1 domain, with the sync counted.
fn unmap_cost(ril: bool, iova: u64, pages: u64) -> u64 {
    let rig = Rig::new(config(ril), SmmuConfig::default()).unwrap();
    let dev = rig
        .smmu
        .add_master(&MasterConfig {
            sids: &[1],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })
        .unwrap();
    let tables = rig.tables();
    let d = rig
        .smmu
        .new_domain(DomainStage::Stage1, false, tables)
        .unwrap();
    // One physical page behind every IOVA page: the count depends on the table, not the PA.
    let pa = rig.model().alloc_pages(1, 0x1000).unwrap();
    for p in 0..pages {
        rig.smmu
            .map(&d, Iova(iova + (p << 12)), PhysAddr(pa), 0x1000, RW)
            .unwrap();
    }
    rig.smmu.attach(dev, &d).unwrap();
    let before = rig.smmu.cmdq().stats().commands;
    let unmapped = rig.smmu.unmap(&d, Iova(iova), pages << 12).unwrap();
    assert_eq!(unmapped, pages << 12);
    let cost = rig.smmu.cmdq().stats().commands - before;
    let r = rig.dma(Transaction::read(1, iova + ((pages - 1) << 12)));
    assert!(matches!(
        r,
        TxnResult::Abort {
            cause: Cause::Translation,
            ..
        }
    ));
    rig.assert_no_violations();
    cost
}

// spec: D6
#[test]
fn unmap_costs_at_most_what_linux_pays() {
    const GIB: u64 = 1 << 30;
    // (N, case, IOVA, Linux with RIL, Linux without RIL) — linux-kunit-and-hitless.md §3.6.
    // Our page table frees the tables an unmap empties into the same gather, so a 1 GiB
    // unmap at a 4K offset is compared with Linux's leaf-only row (its cheapest).
    let rows: [(u64, &str, u64, u64, u64); 7] = [
        (1, "leaf", GIB, 2, 2),
        (16, "leaf", GIB, 2, 17),
        (512, "unaligned", GIB + 0x1000, 2, 513),
        (512, "2M-aligned", GIB, 4, 515),
        (262_144, "4K offset", GIB + 0x1000, 2, 262_145),
        (262_144, "2M-aligned", GIB + (2 << 20), 1026, 263_169),
        (262_144, "1G-aligned", GIB, 4, 262_147),
    ];
    let threshold = u64::from(smmu::inval::DEFAULT_MAX_OPS);
    println!("| N | case | RIL ours | RIL Linux | no RIL ours | no RIL Linux |");
    for (n, case, iova, linux_ril, linux_plain) in rows {
        let ril = unmap_cost(true, iova, n);
        let plain = unmap_cost(false, iova, n);
        println!("| {n} | {case} | {ril} | {linux_ril} | {plain} | {linux_plain} |");
        assert!(
            ril <= linux_ril,
            "N={n} {case}: {ril} > {linux_ril} with RIL"
        );
        assert!(
            plain <= linux_plain,
            "N={n} {case}: {plain} > {linux_plain}"
        );
        assert!(
            plain <= threshold + 1,
            "N={n} {case}: {plain} > threshold + 1"
        );
    }
}

/// A deliberately broken driver: its register interface throws away every command of the
/// given opcode before publishing (it is rewritten to a `CMD_SYNC` that signals nothing).
struct SkippingRegs {
    inner: ModelRegs,
    hal: ModelHal,
    skip: u8,
    published: AtomicU32,
    skipped: AtomicU32,
}

impl RegisterAccess for SkippingRegs {
    fn read32(&self, offset: usize) -> u32 {
        self.inner.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        if offset == smmu::arch::regs::offset::CMDQ_PROD {
            let base = self.inner.read64(smmu::arch::regs::offset::CMDQ_BASE);
            let log2 = (base & 0x1f) as u32;
            let pa = base & 0x00ff_ffff_ffff_ffe0;
            let mask = (2u32 << log2) - 1;
            let mut p = self.published.load(Ordering::Relaxed) & mask;
            while p != value & mask {
                let slot = PhysAddr(pa + 16 * u64::from(p & ((1 << log2) - 1)));
                let va = self.hal.va(slot).unwrap().cast::<u64>();
                // SAFETY: `va` points at a command slot inside the model's RAM arena.
                let word0 = unsafe { va.as_ptr().read_volatile() };
                if word0 & 0xff == u64::from(self.skip) {
                    let nop = Command::Sync {
                        cs: SyncSignal::None,
                        msh: 0,
                        msi_attr: 0,
                        msi_data: 0,
                        msi_addr: 0,
                    }
                    .encode()
                    .to_words();
                    // SAFETY: as above; the slot is not yet published to the model.
                    unsafe {
                        va.as_ptr().write_volatile(nop[0]);
                        va.as_ptr().add(1).write_volatile(nop[1]);
                    }
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
                p = (p + 1) & mask;
            }
            self.published.store(value & mask, Ordering::Relaxed);
        }
        self.inner.write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.inner.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.inner.write64(offset, value);
    }
}

fn broken(
    skip: u8,
) -> (
    ModelPlatform,
    Smmu<SkippingRegs, ModelHal, OwnedStreamTable>,
) {
    let platform = ModelPlatform::new(config(true)).unwrap();
    let hal = platform.hal();
    let regs = SkippingRegs {
        inner: platform.regs(),
        hal: hal.clone(),
        skip,
        published: AtomicU32::new(0),
        skipped: AtomicU32::new(0),
    };
    let features = smmu::probe::probe(&regs).unwrap();
    let abort = smmu::writer::make::ste_image(&smmu::writer::make::abort_ste());
    let strtab = OwnedStreamTable::new(&hal, Layout::Linear, 8, true, &abort).unwrap();
    let mut smmu = Smmu::new(regs, hal, features, strtab, SmmuConfig::default()).unwrap();
    smmu.reset(&ResetPlan::FULL).unwrap();
    (platform, smmu)
}

// spec: D4, D6, M2
#[test]
fn negative_control_a_driver_that_skips_cfgi_ste_is_caught() {
    let (platform, smmu) = broken(opcode::CFGI_STE);
    let dev = smmu
        .add_master(&MasterConfig {
            sids: &[3],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })
        .unwrap();
    // The SMMU caches the blocked STE...
    let dma = |t| platform.model().with(|m| m.dma(t));
    assert!(dma(Transaction::read(3, 0x1000)).pa().is_none());
    // ...the driver switches it to identity but its CFGI_STE never reaches the SMMU...
    smmu.attach_identity(dev).unwrap();
    assert!(smmu.regs().skipped.load(Ordering::Relaxed) > 0);
    // ...and the model keeps serving the stale entry: the device does not get the
    // translation the driver set up.
    let r = dma(Transaction::read(3, 0x1000));
    assert_ne!(
        r,
        TxnResult::Bypass { pa: 0x1000 },
        "stale STE not observed"
    );
}

// spec: D6, M2
#[test]
fn negative_control_a_driver_that_skips_tlbis_is_caught() {
    let (platform, smmu) = broken(opcode::TLBI_NH_VA);
    let dev = smmu
        .add_master(&MasterConfig {
            sids: &[3],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })
        .unwrap();
    let tables = ModelTables(platform.hal());
    let d = smmu.new_domain(DomainStage::Stage1, false, tables).unwrap();
    let pa = platform.model().alloc_pages(1, 0x1000).unwrap();
    smmu.map(&d, Iova(0x10_0000), PhysAddr(pa), 0x1000, RW)
        .unwrap();
    smmu.attach(dev, &d).unwrap();
    let dma = |t| platform.model().with(|m| m.dma(t));
    assert_eq!(
        dma(Transaction::read(3, 0x10_0000)),
        TxnResult::Translated { pa }
    );
    smmu.unmap(&d, Iova(0x10_0000), 0x1000).unwrap();
    assert!(smmu.regs().skipped.load(Ordering::Relaxed) > 0);
    assert_eq!(d.table().iova_to_phys(Iova(0x10_0000)), None);
    // The page is gone from the table, but the model's TLB still translates it.
    assert_eq!(
        dma(Transaction::read(3, 0x10_0000)),
        TxnResult::Translated { pa },
        "stale TLB entry not observed"
    );
}

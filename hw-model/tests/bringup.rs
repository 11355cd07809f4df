//! A whole driver-style bring-up under the most hostile settings (ack jitter, lagging command
//! consumption, stale power-on caches, DMA between steps): a correct sequence logs nothing.
mod common;
use common::*;
use smmu_model::fields::reg;
use smmu_model::{
    CachePolicy, CmdMode, Eviction, MasterSpec, ModelConfig, PowerOn, Profile, SharedModel,
    Transaction, TxnResult,
};

#[test]
fn hostile_bring_up_with_a_correct_driver_is_clean() {
    for profile in [Profile::qemu_virt(), Profile::mmu600(), Profile::grace()] {
        let cache = CachePolicy {
            power_on: PowerOn::Stale {
                sids: (0..8).collect(),
                asids: vec![1, 2, 3],
                iovas: vec![0x1000, 0x2000],
            },
            eviction: Eviction::Random,
            tlb_capacity: 16,
            ..CachePolicy::default()
        };
        let cfg = ModelConfig {
            profile,
            ack_latency: 3,
            ack_jitter: 5,
            cmd_mode: CmdMode::Step { per_step: 2 },
            cache,
            masters_per_step: 1,
            seed: 0xBAD5EED,
            ..ModelConfig::default()
        };
        let mut r = Rig::new(cfg);
        r.m.add_master(MasterSpec::script(vec![
            Transaction::read(1, 0x1000),
            Transaction::write(2, 0x2000),
        ]));
        // GBPA abort first (with the Update handshake), then queues, tables, invalidation, enable.
        r.m.write32(reg::GBPA, reg::GBPA_UPDATE | reg::GBPA_ABORT);
        r.poll(reg::GBPA, reg::GBPA_UPDATE, 0);
        // Until here DMA legitimately bypassed (GBPA reset value); from now on nothing may.
        r.m.take_outcomes();
        r.enable();
        let (_, root) = r.s1_stream(1, 1);
        let page = r.m.alloc_pages(1, 4096).unwrap();
        r.map(root, 0x1000, page, PT_FLAGS);
        r.cfgi_ste(1);
        r.m.write32(reg::IRQ_CTRL, reg::IRQ_EVTQ | reg::IRQ_GERROR);
        r.poll(reg::IRQ_CTRLACK, 0x5, 0x5);
        for _ in 0..20 {
            r.m.step();
        }
        assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
        assert_eq!(r.dma_pa(Transaction::read(1, 0x1008)), Some(page + 8));
        // SID 2 has no STE (V = 0): C_BAD_STE, never the stale seeded bypass.
        assert!(r
            .m
            .outcomes()
            .iter()
            .filter(|o| o.txn.sid == 2)
            .all(|o| !matches!(o.result, TxnResult::Bypass { .. })));
    }
}

#[test]
fn shared_handle_drives_the_same_model() {
    let shared = SharedModel::new(smmu_model::Model::new(ModelConfig::default()));
    let regs = shared.clone();
    let q = regs.alloc_pages(1, 4096).unwrap();
    regs.write64(reg::CMDQ_BASE as usize, q | 8);
    regs.write32(reg::CMDQ_PROD as usize, 0);
    regs.write32(reg::CMDQ_CONS as usize, 0);
    regs.write32(reg::CR0 as usize, reg::CR0_CMDQEN);
    while regs.read32(reg::CR0ACK as usize) & reg::CR0_CMDQEN == 0 {}
    let sync = sync_none();
    regs.write_u64(q, sync[0]).unwrap();
    regs.write_u64(q + 8, sync[1]).unwrap();
    regs.write32(reg::CMDQ_PROD as usize, 1);
    assert_eq!(regs.read32(reg::CMDQ_CONS as usize), 1);
    assert!(shared.with(|m| m.violations().is_empty() && m.signals().syncs == 1));
}

#[test]
fn hostile_preset_catches_a_driver_that_skips_invalidation() {
    let mut r = Rig::new(ModelConfig::hostile(Profile::mmu600(), 3));
    // Programs everything correctly except CFGI_ALL / TLBI_NSNH_ALL before SMMUEN.
    r.m.write64(reg::CMDQ_BASE, r.cmdq | 8);
    r.m.write32(reg::CMDQ_PROD, 0);
    r.m.write32(reg::CMDQ_CONS, 0);
    r.m.write32(reg::STRTAB_BASE_CFG, 8);
    r.m.write64(reg::STRTAB_BASE, r.strtab);
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_SMMUEN);
    // SID 5's STE in memory is all zero (invalid), but the stale power-on entry bypasses.
    assert!(matches!(
        r.m.dma(Transaction::read(5, 0x1000)),
        TxnResult::Bypass { .. }
    ));
    // The correct driver (Rig::enable) sees the abort.
    let mut r = Rig::new(ModelConfig::hostile(Profile::mmu600(), 3));
    r.enable();
    assert!(matches!(
        r.m.dma(Transaction::read(5, 0x1000)),
        TxnResult::Abort { .. }
    ));
    assert!(r.m.violations().is_empty());
}

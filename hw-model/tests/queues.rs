//! Queue and command-processing rows Q1–Q17 of model-conformance.md §2.2.
mod common;
use common::*;
use smmu_model::fields::{cmd, reg};
use smmu_model::{CmdMode, Delivery, Model, ModelConfig, Profile, Transaction, ViolationKind};

fn bad_ste_rig(cfg: ModelConfig) -> Rig {
    let mut r = Rig::new(cfg);
    r.enable();
    // SID 7 has an all-zero (V = 0) STE: every DMA gives C_BAD_STE.
    r
}

#[test]
fn q1_wrap_bits_full_and_raz_upper_bits() {
    // spec: Q1
    let mut m = Model::new(ModelConfig::default());
    m.write64(reg::CMDQ_BASE, 0x4000_0000 | 4);
    m.write32(reg::CMDQ_PROD, 0xFFFF_FFFF);
    assert_eq!(
        m.read32(reg::CMDQ_PROD),
        0x1F,
        "bits above the wrap bit are RAZ"
    );
    // Event queue with 4 entries: four faults fill it exactly.
    let mut r = Rig::new(ModelConfig::default());
    r.log2_evtq = 2;
    r.enable();
    for _ in 0..4 {
        r.m.dma(Transaction::read(7, 0));
    }
    let prod = r.m.read32(reg::EVTQ_PROD);
    let cons = r.m.read32(reg::EVTQ_CONS);
    assert_eq!(prod & 3, cons & 3, "indexes equal");
    assert_ne!(prod & 4, cons & 4, "wrap bits differ: full");
    assert_eq!(prod >> 31, 0, "no overflow yet");
}

#[test]
fn q2_inconsistent_pair_logged_nothing_consumed() {
    // spec: Q2
    let mut r = Rig::new(ModelConfig::default());
    r.m.write64(reg::CMDQ_BASE, r.cmdq | 8);
    r.m.write32(reg::CMDQ_CONS, 5);
    r.m.write32(reg::CMDQ_PROD, 3);
    assert!(
        r.m.violations().is_empty(),
        "transient states while disabled are fine"
    );
    r.set_cr0(reg::CR0_CMDQEN);
    assert!(
        r.viol(ViolationKind::QueueInconsistent),
        "enabled with an inconsistent pair"
    );
    for _ in 0..5 {
        r.m.step();
    }
    assert_eq!(r.m.read32(reg::CMDQ_CONS) & 0xFFFFF, 5, "treated as empty");
    assert_eq!(r.m.signals().commands, 0);
}

#[test]
fn q3_prod_must_not_move_back_except_during_error() {
    // spec: Q3
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    let p = r.prod;
    r.m.write32(reg::CMDQ_PROD, p.wrapping_sub(1) & 0x1FF);
    assert!(r.viol(ViolationKind::CmdqProdBackwards));
    assert_eq!(r.m.read32(reg::CMDQ_PROD), p, "ignored");
    r.m.clear_violations();
    // During an error PROD may move back to CONS (error-recovery rewind): no log.
    r.cmd(op(0x7F));
    r.cmd(sync_none());
    assert_ne!(r.m.read32(reg::GERROR) & reg::GERROR_CMDQ_ERR, 0);
    let cons = r.m.read32(reg::CMDQ_CONS) & 0xFFFFF;
    r.m.write32(reg::CMDQ_PROD, cons);
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
}

#[test]
fn q4_processing_needs_cmdqen_and_no_error() {
    // spec: Q4
    let mut r = Rig::new(ModelConfig::default());
    r.m.write64(reg::CMDQ_BASE, r.cmdq | 8);
    r.m.write32(reg::CMDQ_CONS, 0);
    r.cmd(sync_none());
    r.m.step();
    assert_eq!(
        r.m.read32(reg::CMDQ_CONS),
        0,
        "CMDQEN = 0: nothing consumed"
    );
    r.m.write32(reg::CR0, reg::CR0_CMDQEN);
    assert_eq!(
        r.m.read32(reg::CMDQ_CONS),
        0,
        "not before CMDQEN is acknowledged (QEMU: on the CR0 write)"
    );
    r.poll(reg::CR0ACK, reg::CR0_CMDQEN, reg::CR0_CMDQEN);
    assert_eq!(
        r.m.read32(reg::CMDQ_CONS),
        1,
        "enabling with pending commands starts consumption"
    );
}

#[test]
fn q5_reliance_before_sync_is_flagged() {
    // spec: Q5
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    let (_, root) = r.s1_stream(1, 5);
    let page = r.m.alloc_pages(1, 4096).unwrap();
    r.map(root, 0x10_0000, page, PT_FLAGS);
    r.cfgi_ste(1);
    assert_eq!(r.dma_pa(Transaction::read(1, 0x10_0008)), Some(page + 8));
    // Unmap, TLBI, then reuse the page before CMD_SYNC.
    r.map(root, 0x10_0000, 0, 0);
    r.cmd(tlbi_nh_va(5, 0x10_0000, true));
    r.m.mem_write(page, &[1, 2, 3]).unwrap();
    assert!(r.viol(ViolationKind::RelianceBeforeSync));
    // The correct order: TLBI, SYNC, then reuse.
    r.m.clear_violations();
    r.map(root, 0x20_0000, page, PT_FLAGS);
    r.dma_pa(Transaction::read(1, 0x20_0000));
    r.map(root, 0x20_0000, 0, 0);
    r.cmd(tlbi_nh_va(5, 0x20_0000, true));
    r.sync();
    r.m.mem_write(page, &[1, 2, 3]).unwrap();
    assert!(r.m.violations().is_empty());
}

#[test]
fn q6_cmdqen_off_mid_batch_leaves_cons_at_next_command() {
    // spec: Q6
    let mut r = Rig::new(ModelConfig {
        cmd_mode: CmdMode::Step { per_step: 1 },
        ack_latency: 0,
        ..ModelConfig::default()
    });
    r.m.write64(reg::CMDQ_BASE, r.cmdq | 8);
    r.m.write32(reg::CMDQ_CONS, 0);
    r.m.write32(reg::CR0, reg::CR0_CMDQEN);
    for _ in 0..4 {
        r.cmd(sync_none());
    }
    assert_eq!(
        r.m.read32(reg::CMDQ_CONS),
        0,
        "consumption lags PROD (QEMU: instant)"
    );
    r.m.step();
    r.m.write32(reg::CR0, 0);
    let c = r.m.read32(reg::CMDQ_CONS);
    for _ in 0..5 {
        r.m.step();
    }
    assert_eq!(r.m.read32(reg::CMDQ_CONS), c, "stable after disable");
    assert!(c < 4);
}

fn ill(m_profile: Profile, w: [u64; 2]) -> u32 {
    let mut r = Rig::new(ModelConfig {
        profile: m_profile,
        ..ModelConfig::default()
    });
    r.init();
    r.cmd(w);
    cons_err(&mut r.m)
}

#[test]
fn q7_opcode_legality_against_idrs() {
    // spec: Q7
    let q = Profile::qemu_virt;
    for o in [
        cmd::TLBI_EL2_ALL,
        cmd::TLBI_EL3_ALL,
        cmd::ATC_INV,
        cmd::PRI_RESP,
        cmd::RESUME,
        cmd::STALL_TERM,
        cmd::CFGI_VMS_PIDM,
        0x00,
        0x50,
        0x7F,
    ] {
        assert_eq!(
            ill(q(), op(o)),
            cmd::CERROR_ILL,
            "opcode {o:#x} must be ILL on qemu-virt"
        );
    }
    let mut ssec = cfgi_ste(1, true);
    cmd::SSEC.set(&mut ssec, 1);
    assert_eq!(ill(q(), ssec), cmd::CERROR_ILL, "SSec = 1 on the NS queue");
    // S2 TLBIs without S2P, S1 TLBIs without S1P.
    let s1only = q().with(0, reg::IDR0_S2P, 0);
    assert_eq!(ill(s1only, op(cmd::TLBI_S12_VMALL)), cmd::CERROR_ILL);
    let s2only = q().with(0, reg::IDR0_S1P, 0);
    assert_eq!(ill(s2only.clone(), op(cmd::TLBI_NH_ALL)), cmd::CERROR_ILL);
    assert_eq!(ill(s2only, op(cmd::CFGI_CD_ALL)), cmd::CERROR_ILL);
    // The same commands are legal where the IDRs advertise them.
    for o in [
        cmd::TLBI_EL2_ALL,
        cmd::ATC_INV,
        cmd::PRI_RESP,
        cmd::RESUME,
        cmd::STALL_TERM,
    ] {
        assert_eq!(
            ill(Profile::mmu600(), op(o)),
            0,
            "opcode {o:#x} legal on mmu-600"
        );
    }
}

#[test]
fn q8_cmd_sync_completion_signals() {
    // spec: Q8
    let mut r = Rig::new(ModelConfig {
        profile: Profile::grace(),
        ..ModelConfig::default()
    });
    r.init();
    let slot = r.m.alloc_pages(1, 4096).unwrap();
    r.cmd(sync_cs(0b01, slot + 4, 0xABCD));
    assert_eq!(
        r.m.read_u64(slot).unwrap() >> 32,
        0xABCD,
        "MSIData written at MSIAddress"
    );
    r.cmd(sync_cs(0b10, 0, 0));
    assert_eq!(r.m.signals().sev, 1);
    r.cmd(sync_cs(0b11, 0, 0));
    assert_eq!(cons_err(&mut r.m), cmd::CERROR_ILL, "CS = 0b11 is ILL");
    // Without MSI support, SIG_IRQ pulses the wired line instead.
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    r.cmd(sync_cs(0b01, 0x4000_0000, 1));
    assert_eq!(r.m.signals().sync_irq, 1);
    assert!(r.m.signals().msi_writes.is_empty());
    r.cmd(sync_cs(0b10, 0, 0));
    assert_eq!(r.m.signals().sev, 0, "no SEV without IDR0.SEV");
}

#[test]
fn q9_events_visible_when_sync_completes() {
    // spec: Q9
    let mut r = bad_ste_rig(ModelConfig {
        cmd_mode: CmdMode::Step { per_step: 1 },
        ..ModelConfig::default()
    });
    r.m.dma(Transaction::read(7, 0x1000));
    r.cmd(sync_none());
    r.wait_cons();
    assert_eq!(r.m.read32(reg::EVTQ_PROD) & 0xFF, 1);
    let rec = r.m.read_u64(r.evtq).unwrap();
    assert_eq!(rec & 0xFF, 0x04, "C_BAD_STE in the queue");
    assert_eq!(rec >> 32, 7);
}

#[test]
fn q10_command_error_stops_and_restarts_after_ack() {
    // spec: Q10
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    let syncs = r.m.signals().syncs;
    let base = r.prod;
    r.cmd(cfgi_all());
    r.cmd(op(0x7F));
    r.cmd(sync_none());
    let cons = r.m.read32(reg::CMDQ_CONS);
    assert_eq!(cons & 0xFFFFF, base + 1, "CONS points at the bad command");
    assert_eq!(cons_err(&mut r.m), cmd::CERROR_ILL);
    assert_ne!(r.m.read32(reg::GERROR) & reg::GERROR_CMDQ_ERR, 0);
    assert_eq!(r.m.signals().syncs, syncs, "later commands have no effect");
    // Linux skip_err: patch the slot to CMD_SYNC, then acknowledge.
    let slot = r.cmdq + 16 * u64::from(base + 1);
    r.m.write_u64(slot, sync_none()[0]).unwrap();
    let g = r.m.read32(reg::GERROR);
    r.m.write32(reg::GERRORN, g);
    assert_eq!(r.m.read32(reg::CMDQ_CONS) & 0xFFFFF, base + 3);
    assert_eq!(r.m.signals().syncs, syncs + 2);
}

#[test]
fn q11_command_fetch_abort() {
    // spec: Q11
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    let p = r.prod;
    r.m.inject_fetch_fault(r.cmdq, 4096);
    r.cmd(sync_none());
    assert_eq!(cons_err(&mut r.m), cmd::CERROR_ABT);
    assert_eq!(r.m.read32(reg::CMDQ_CONS) & 0xFFFFF, p, "CONS not advanced");
    r.m.clear_faults();
    let g = r.m.read32(reg::GERROR);
    r.m.write32(reg::GERRORN, g);
    assert_eq!(
        r.m.read32(reg::CMDQ_CONS) & 0xFFFFF,
        p + 1,
        "retried after the ack"
    );
}

#[test]
fn q12_cons_err_write_knob() {
    // spec: Q12
    let mut m = Model::new(ModelConfig::default());
    m.write64(reg::CMDQ_BASE, 0x4000_0000 | 8);
    m.write32(reg::CMDQ_CONS, 0x0100_0003);
    assert_eq!(m.read32(reg::CMDQ_CONS), 3, "default: ERR ignored on write");
    let mut m = Model::new(ModelConfig {
        cons_err_write: true,
        ..ModelConfig::default()
    });
    m.write64(reg::CMDQ_BASE, 0x4000_0000 | 8);
    m.write32(reg::CMDQ_CONS, 0x0100_0003);
    assert_eq!(m.read32(reg::CMDQ_CONS), 0x0100_0003);
}

#[test]
fn q13_event_write_abort_blocks_queue_until_ack() {
    // spec: Q13
    let mut r = bad_ste_rig(ModelConfig::default());
    r.m.inject_write_fault(r.evtq, 8192);
    r.m.dma(Transaction::read(7, 0));
    assert_ne!(r.m.read32(reg::GERROR) & reg::GERROR_EVTQ_ABT_ERR, 0);
    r.m.clear_faults();
    r.m.dma(Transaction::read(7, 0));
    assert_eq!(
        r.m.events().last().unwrap().1,
        Delivery::AbortActive,
        "dropped while ABT_ERR active"
    );
    assert_eq!(r.m.read32(reg::EVTQ_PROD), 0);
    let g = r.m.read32(reg::GERROR);
    r.m.write32(reg::GERRORN, g);
    r.m.dma(Transaction::read(7, 0));
    assert_eq!(r.m.read32(reg::EVTQ_PROD), 1);
}

#[test]
fn q14_overflow_flag_not_gerror() {
    // spec: Q14
    let mut r = Rig::new(ModelConfig::default());
    r.log2_evtq = 1;
    r.enable();
    for _ in 0..2 {
        r.m.dma(Transaction::read(7, 0));
    }
    r.m.dma(Transaction::read(7, 0));
    assert_eq!(r.m.read32(reg::EVTQ_PROD) >> 31, 1, "OVFLG toggled");
    assert_eq!(
        r.m.read32(reg::GERROR),
        0,
        "QEMU raises EVENTQ_ABT_ERR here"
    );
    r.m.dma(Transaction::read(7, 0));
    assert_eq!(
        r.m.read32(reg::EVTQ_PROD) >> 31,
        1,
        "second overflow invisible until acked"
    );
    // Drain and acknowledge the overflow.
    let prod = r.m.read32(reg::EVTQ_PROD);
    r.m.write32(reg::EVTQ_CONS, prod);
    for _ in 0..3 {
        r.m.dma(Transaction::read(7, 0));
    }
    assert_eq!(
        r.m.read32(reg::EVTQ_PROD) >> 31,
        0,
        "toggled again after the ack"
    );
}

#[test]
fn q15_one_irq_edge_per_empty_to_nonempty() {
    // spec: Q15
    let mut r = bad_ste_rig(ModelConfig::default());
    r.m.write32(reg::IRQ_CTRL, reg::IRQ_EVTQ);
    r.poll(reg::IRQ_CTRLACK, reg::IRQ_EVTQ, reg::IRQ_EVTQ);
    r.m.dma(Transaction::read(7, 0));
    r.m.dma(Transaction::read(7, 0));
    assert_eq!(
        r.m.signals().evtq_irq,
        1,
        "two back-to-back events, one edge"
    );
    let p = r.m.read32(reg::EVTQ_PROD);
    r.m.write32(reg::EVTQ_CONS, p);
    r.m.dma(Transaction::read(7, 0));
    assert_eq!(r.m.signals().evtq_irq, 2);
}

#[test]
fn q16_eventq_disabled_drops_without_overflow() {
    // spec: Q16
    let mut r = bad_ste_rig(ModelConfig::default());
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_SMMUEN);
    let mut before = vec![0u8; 256];
    r.m.mem_read(r.evtq, &mut before).unwrap();
    for _ in 0..600 {
        r.m.dma(Transaction::read(7, 0));
    }
    let mut after = vec![0u8; 256];
    r.m.mem_read(r.evtq, &mut after).unwrap();
    assert_eq!(before, after, "nothing written into the queue memory");
    assert_eq!(r.m.read32(reg::EVTQ_PROD), 0, "OVFLG unchanged");
    assert_eq!(r.m.events().last().unwrap().1, Delivery::DroppedDisabled);
}

#[test]
fn q17_eventq_cons_must_move_consistently() {
    // spec: Q17
    let mut r = bad_ste_rig(ModelConfig::default());
    r.m.dma(Transaction::read(7, 0));
    r.m.write32(reg::EVTQ_CONS, 5);
    assert!(r.viol(ViolationKind::QueueConsBad));
}

//! Register-interface rows R1–R19 of model-conformance.md §2.1.
mod common;
use common::*;
use smmu_model::fields::{reg, ste};
use smmu_model::{
    Cause, CuPolicy, Model, ModelConfig, Profile, Transaction, TxnResult, ViolationKind,
};

fn model() -> Model {
    Model::new(ModelConfig::default())
}

#[test]
fn r1_bad_access_sizes_are_logged_and_raz_wi() {
    // spec: R1
    let mut m = model();
    m.write(reg::CR0, 1, 1);
    assert!(m.has_violation(ViolationKind::BadAccess));
    for _ in 0..5 {
        m.step();
    }
    assert_eq!(m.read32(reg::CR0), 0, "8-bit write must not reach CR0");
    assert_eq!(m.read32(reg::CR0ACK), 0);
    m.clear_violations();
    // A 64-bit access spanning two 32-bit registers (CMDQ_PROD/CONS) is RAZ/WI + logged.
    m.write32(reg::CMDQ_PROD, 0);
    assert_eq!(m.read64(reg::CMDQ_PROD), 0);
    assert!(m.has_violation(ViolationKind::BadAccess));
    // Both halves of a 64-bit register are accepted without a log entry.
    m.clear_violations();
    m.write32(reg::STRTAB_BASE, 0x4000_0000);
    m.write32(reg::STRTAB_BASE + 4, 0x1);
    assert_eq!(m.read64(reg::STRTAB_BASE), 0x1_4000_0000);
    assert!(m.violations().is_empty());
}

#[test]
fn r2_id_registers_are_read_only() {
    // spec: R2
    let mut m = model();
    let idr0 = m.read32(reg::IDR0);
    m.write32(reg::IDR0, 0);
    assert_eq!(m.read32(reg::IDR0), idr0);
    assert!(m.has_violation(ViolationKind::ReadOnlyWrite));
}

#[test]
fn r3_page0_alias_is_off_by_default() {
    // spec: R3
    let mut r = Rig::new(ModelConfig::default());
    r.m.write32(reg::EVTQ_PROD, 0);
    r.m.write64(reg::EVTQ_BASE, r.evtq | 8);
    r.m.write32(reg::EVTQ_CONS, 5);
    assert_eq!(r.m.read32(reg::EVTQ_CONS), 5);
    // QEMU aliases page 1 at 0xAC; here it reads as zero and is logged.
    assert_eq!(r.m.read32(0xAC), 0);
    assert!(r.viol(ViolationKind::Page0Alias));
    let mut m = Model::new(ModelConfig {
        page0_alias: true,
        ..ModelConfig::default()
    });
    m.write64(reg::EVTQ_BASE, 0x4000_0000 | 8);
    m.write32(reg::EVTQ_CONS, 3);
    assert_eq!(m.read32(0xAC), 3);
}

#[test]
fn r4_cr0ack_reflects_only_implemented_fields() {
    // spec: R4
    let mut m = model();
    m.write32(reg::CR0, 0x3FF);
    for _ in 0..8 {
        m.step();
    }
    // QEMU would echo PRIQEN, ATSCHK, VMW and bit 9.
    assert_eq!(
        m.read32(reg::CR0ACK),
        reg::CR0_SMMUEN | reg::CR0_EVTQEN | reg::CR0_CMDQEN
    );
}

#[test]
fn r5_cr0_ack_is_delayed_per_field() {
    // spec: R5
    let mut m = Model::new(ModelConfig {
        ack_latency: 4,
        ..ModelConfig::default()
    });
    m.write32(reg::CR0, reg::CR0_CMDQEN);
    assert_eq!(m.read32(reg::CR0ACK), 0, "the ack must not be immediate");
    m.step();
    m.write32(reg::CR0, reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    let mut seen_cmdq_only = false;
    for _ in 0..10 {
        let ack = m.read32(reg::CR0ACK);
        if ack == reg::CR0_CMDQEN {
            seen_cmdq_only = true;
        }
        if ack == reg::CR0_CMDQEN | reg::CR0_EVTQEN {
            break;
        }
    }
    assert!(seen_cmdq_only, "fields are acknowledged independently");
    assert_eq!(m.read32(reg::CR0ACK), reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    assert!(m.violations().is_empty());
}

#[test]
fn r6_changing_a_field_again_before_its_ack_is_logged_and_ignored() {
    // spec: R6
    let mut m = Model::new(ModelConfig {
        ack_latency: 5,
        ..ModelConfig::default()
    });
    m.write32(reg::CR0, reg::CR0_CMDQEN);
    m.write32(reg::CR0, 0);
    assert!(m.has_violation(ViolationKind::ChangeBeforeAck));
    for _ in 0..10 {
        m.step();
    }
    assert_eq!(
        m.read32(reg::CR0ACK),
        reg::CR0_CMDQEN,
        "v3.2 policy: the second change is ignored"
    );
}

#[test]
fn r7_strtab_base_is_read_only_while_smmuen() {
    // spec: R7
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    r.write_ste(1, ste_bypass());
    assert!(matches!(
        r.m.dma(Transaction::read(1, 0x5000)),
        TxnResult::Bypass { .. }
    ));
    let old = r.m.read64(reg::STRTAB_BASE);
    let other = r.m.alloc_pages(4, 16384).unwrap();
    r.m.write64(reg::STRTAB_BASE, other);
    r.m.write32(reg::STRTAB_BASE_CFG, 4);
    assert_eq!(
        r.m.read64(reg::STRTAB_BASE),
        old,
        "the old base is still read back"
    );
    assert_eq!(r.m.read32(reg::STRTAB_BASE_CFG), 8);
    assert_eq!(
        r.m.violations()
            .iter()
            .filter(|v| v.kind == ViolationKind::GuardedWrite)
            .count(),
        2
    );
    // ... and still in use: a fresh STE fetch (after CFGI) comes from the old table.
    r.cfgi_ste(1);
    assert!(matches!(
        r.m.dma(Transaction::read(1, 0x5000)),
        TxnResult::Bypass { .. }
    ));
}

#[test]
fn r8_cr1_cr2_guarded() {
    // spec: R8
    let mut r = Rig::new(ModelConfig::default());
    r.enable();
    r.m.write32(reg::CR1, 0xFFF);
    r.m.write32(reg::CR2, 0);
    assert_eq!(r.m.read32(reg::CR1), 0);
    assert_eq!(r.m.read32(reg::CR2), reg::CR2_RECINVSID);
    assert!(r.viol(ViolationKind::GuardedWrite));
    // Only the TABLE fields are guarded by SMMUEN: with the queues off, QUEUE fields are writable.
    let mut m = model();
    m.write32(reg::CR0, reg::CR0_SMMUEN);
    for _ in 0..4 {
        m.step();
    }
    m.write32(reg::CR1, 0xFFF);
    assert_eq!(m.read32(reg::CR1), reg::CR1_QUEUE_MASK);
    // The permissive policy takes the value, as QEMU does (still logged).
    let mut m = Model::new(ModelConfig {
        cu_policy: CuPolicy::Accept,
        ..ModelConfig::default()
    });
    m.write32(reg::CR0, reg::CR0_SMMUEN);
    m.write32(reg::CR2, 1);
    assert_eq!(m.read32(reg::CR2), 1);
    assert!(m.has_violation(ViolationKind::GuardedWrite));
}

#[test]
fn r9_queue_registers_guarded_by_enables() {
    // spec: R9
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    let cons = r.m.read32(reg::CMDQ_CONS);
    r.m.write32(reg::CMDQ_CONS, cons + 1);
    assert_eq!(r.m.read32(reg::CMDQ_CONS), cons, "read-back unchanged");
    let base = r.m.read64(reg::CMDQ_BASE);
    r.m.write64(reg::CMDQ_BASE, 0);
    assert_eq!(r.m.read64(reg::CMDQ_BASE), base);
    r.m.write32(reg::EVTQ_PROD, 7);
    assert_eq!(r.m.read32(reg::EVTQ_PROD), 0);
    assert_eq!(
        r.m.violations()
            .iter()
            .filter(|v| v.kind == ViolationKind::GuardedWrite)
            .count(),
        3
    );
}

#[test]
fn r10_queue_base_after_indexes_is_logged() {
    // spec: R10
    let mut m = model();
    m.write32(reg::CMDQ_PROD, 0);
    m.write64(reg::CMDQ_BASE, 0x4000_0000 | 8);
    assert!(m.has_violation(ViolationKind::QueueInitOrder));
    let mut m = model();
    m.write64(reg::CMDQ_BASE, 0x4000_0000 | 8);
    m.write32(reg::CMDQ_PROD, 0);
    assert!(m.violations().is_empty());
}

#[test]
fn r11_misaligned_queue_base_is_aligned_down_and_linted() {
    // spec: R11
    let mut r = Rig::new(ModelConfig::default());
    // 256 commands = 4 KiB: the base must be 4 KiB aligned; write it 0x100 too high.
    let q = r.cmdq + 0x100;
    r.m.write64(reg::CMDQ_BASE, q | 8);
    assert!(r.viol(ViolationKind::MisalignedBase));
    r.m.write32(reg::CMDQ_CONS, 0);
    // The driver writes its command at base+0x100, but the SMMU fetches from the aligned base,
    // where there is nothing (opcode 0): CERROR_ILL. QEMU would consume the driver's command.
    r.m.write_u64(q, cfgi_all()[0]).unwrap();
    r.m.write_u64(q + 8, cfgi_all()[1]).unwrap();
    r.m.write32(reg::CMDQ_PROD, 1);
    r.set_cr0(reg::CR0_CMDQEN);
    assert_eq!(cons_err(&mut r.m), smmu_model::fields::cmd::CERROR_ILL);
    assert_ne!(r.m.read32(reg::GERROR) & reg::GERROR_CMDQ_ERR, 0);
}

#[test]
fn r12_log2size_capped_raw_kept() {
    // spec: R12
    let p = Profile::qemu_virt().with(1, reg::IDR1_CMDQS, 8);
    let mut m = Model::new(ModelConfig {
        profile: p,
        ..ModelConfig::default()
    });
    m.write64(reg::CMDQ_BASE, 0x4000_0000 | 31);
    assert_eq!(
        m.read64(reg::CMDQ_BASE) & 0x1F,
        31,
        "raw LOG2SIZE read back"
    );
    m.write32(reg::CMDQ_PROD, 0x3FF);
    assert_eq!(
        m.read32(reg::CMDQ_PROD),
        0x1FF,
        "index + wrap width of the capped size (8)"
    );
}

#[test]
fn r13_strtab_cfg_decoded_fresh_no_sticky_fmt() {
    // spec: R13
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    // 2-level first.
    let l2 = r.m.alloc_pages(4, 16384).unwrap();
    r.m.write32(reg::STRTAB_BASE_CFG, (1 << 16) | (8 << 6) | 16);
    r.m.write_u64(r.strtab, l2 | 9).unwrap();
    r.write_struct(l2 + 64 * 5, ste_bypass());
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    assert!(matches!(
        r.m.dma(Transaction::read(5, 0x1000)),
        TxnResult::Bypass { .. }
    ));
    // kexec with SMMUEN dropped; the new kernel uses a linear table (FMT 0).
    r.m.warm_restart();
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    r.m.write32(reg::STRTAB_BASE_CFG, 8);
    r.write_ste(5, ste_abort());
    r.cmd(cfgi_all());
    r.sync();
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    assert!(matches!(
        r.m.dma(Transaction::read(5, 0x1000)),
        TxnResult::Abort {
            cause: Cause::SteAbort,
            ..
        }
    ));
    // FMT 0b11 behaves as linear; reserved SPLIT behaves as 6.
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
}

#[test]
fn r13_reserved_fmt_is_linear() {
    // spec: R13
    let mut r = Rig::new(ModelConfig::default());
    r.init();
    r.m.write32(reg::STRTAB_BASE_CFG, (3 << 16) | (7 << 6) | 8);
    r.write_ste(2, ste_bypass());
    r.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    assert!(matches!(
        r.m.dma(Transaction::read(2, 0x1000)),
        TxnResult::Bypass { .. }
    ));
}

#[test]
fn r14_gbpa_update_handshake() {
    // spec: R14
    let mut m = Model::new(ModelConfig {
        ack_latency: 6,
        ..ModelConfig::default()
    });
    m.write32(reg::GBPA, reg::GBPA_ABORT);
    assert!(m.has_violation(ViolationKind::GbpaWithoutUpdate));
    assert_eq!(
        m.read32(reg::GBPA) & reg::GBPA_ABORT,
        0,
        "write without Update ignored"
    );
    m.write32(reg::GBPA, reg::GBPA_UPDATE | reg::GBPA_ABORT);
    assert_ne!(
        m.read32(reg::GBPA) & reg::GBPA_UPDATE,
        0,
        "Update stays visible (QEMU: never)"
    );
    m.write32(reg::GBPA, reg::GBPA_UPDATE);
    assert!(m.has_violation(ViolationKind::GbpaWhileUpdate));
    let mut n = 0;
    while m.read32(reg::GBPA) & reg::GBPA_UPDATE != 0 {
        n += 1;
    }
    assert!(n >= 1);
    assert_eq!(
        m.read32(reg::GBPA),
        reg::GBPA_ABORT,
        "second write was ignored"
    );
}

#[test]
fn r15_gbpa_applies_while_disabled() {
    // spec: R15
    let mut m = Model::new(ModelConfig {
        ack_latency: 4,
        ..ModelConfig::default()
    });
    assert_eq!(
        m.dma(Transaction::write(9, 0x1234)),
        TxnResult::Bypass { pa: 0x1234 }
    );
    m.write32(reg::GBPA, reg::GBPA_UPDATE | reg::GBPA_ABORT);
    // During the Update window the old attributes still apply (QEMU: instantly the new ones).
    assert_eq!(
        m.dma(Transaction::write(9, 0x1234)),
        TxnResult::Bypass { pa: 0x1234 }
    );
    while m.read32(reg::GBPA) & reg::GBPA_UPDATE != 0 {}
    assert_eq!(
        m.dma(Transaction::write(9, 0x1234)),
        TxnResult::Abort {
            cause: Cause::GbpaAbort,
            event: None
        }
    );
    assert!(m.events().is_empty(), "GBPA aborts record no event");
}

#[test]
fn r16_irq_ctrl_ack_delayed_and_masked() {
    // spec: R16
    let mut m = Model::new(ModelConfig {
        ack_latency: 3,
        ..ModelConfig::default()
    });
    m.write32(reg::IRQ_CTRL, 0x7);
    assert_eq!(
        m.read32(reg::IRQ_CTRL),
        reg::IRQ_GERROR | reg::IRQ_EVTQ,
        "PRIQ_IRQEN is RES0 without PRI"
    );
    assert_eq!(m.read32(reg::IRQ_CTRLACK), 0, "not immediate");
    for _ in 0..5 {
        m.step();
    }
    assert_eq!(m.read32(reg::IRQ_CTRLACK), reg::IRQ_GERROR | reg::IRQ_EVTQ);
}

#[test]
fn r17_irq_cfg_guarded_by_irqen() {
    // spec: R17
    let mut m = Model::new(ModelConfig {
        ack_latency: 0,
        ..ModelConfig::default()
    });
    m.write64(reg::EVTQ_IRQ_CFG0, 0x4000_1000);
    m.write32(reg::IRQ_CTRL, reg::IRQ_EVTQ);
    m.write64(reg::EVTQ_IRQ_CFG0, 0x4000_2000);
    m.write32(reg::EVTQ_IRQ_CFG1, 5);
    assert_eq!(m.read64(reg::EVTQ_IRQ_CFG0), 0x4000_1000);
    assert_eq!(m.read32(reg::EVTQ_IRQ_CFG1), 0);
    assert!(m.has_violation(ViolationKind::GuardedWrite));
}

#[test]
fn r18_gerror_toggles_once_and_inactive_ack_is_logged() {
    // spec: R18
    let mut m = model();
    m.raise_gerror(reg::GERROR_CMDQ_ERR);
    m.raise_gerror(reg::GERROR_CMDQ_ERR);
    assert_eq!(
        m.read32(reg::GERROR),
        reg::GERROR_CMDQ_ERR,
        "one toggle only"
    );
    m.write32(reg::GERROR, 0);
    assert_eq!(m.read32(reg::GERROR), reg::GERROR_CMDQ_ERR);
    m.clear_violations();
    m.write32(reg::GERRORN, reg::GERROR_CMDQ_ERR | reg::GERROR_SFM_ERR);
    assert!(m.has_violation(ViolationKind::GerrornInactiveToggle));
    assert_eq!(
        m.read32(reg::GERRORN),
        reg::GERROR_CMDQ_ERR,
        "inactive toggle ignored"
    );
    // Active again only after a new activation.
    m.raise_gerror(reg::GERROR_CMDQ_ERR);
    assert_eq!(
        m.read32(reg::GERROR) ^ m.read32(reg::GERRORN),
        reg::GERROR_CMDQ_ERR
    );
}

#[test]
fn r19_profiles_identify_themselves() {
    // spec: R19
    let mut q = Model::new(ModelConfig {
        profile: Profile::qemu_virt(),
        ..ModelConfig::default()
    });
    let mut a = Model::new(ModelConfig {
        profile: Profile::mmu600(),
        ..ModelConfig::default()
    });
    let mut g = Model::new(ModelConfig {
        profile: Profile::grace(),
        ..ModelConfig::default()
    });
    assert_eq!(q.read32(reg::IIDR), 0);
    assert_eq!(a.read32(reg::IIDR), 0x4831_043B);
    assert_eq!(
        a.read32(reg::IIDR) >> 20,
        0x483,
        "MMU-600 product id for errata probing"
    );
    assert_eq!(g.read32(reg::AIDR), 2);
    assert_ne!(g.read32(reg::IDR0) & (1 << 9), 0, "HYP");
    assert_ne!(g.read32(reg::IDR3) & (1 << 10), 0, "RIL");
    assert_eq!(q.read32(reg::STATUSR), 0);
    assert_eq!(q.read32(reg::AGBPA), 0);
    let errata = Model::new(ModelConfig {
        profile: Profile::mmu600().with_iidr(0x4830_043B),
        ..ModelConfig::default()
    });
    assert_eq!(errata.profile().iidr, 0x4830_043B);
    // STE abort config is usable on all profiles.
    let mut w = [0u64; 8];
    ste::V.set(&mut w, 1);
    assert!(q.ste_is_legal(&w) && a.ste_is_legal(&w) && g.ste_is_legal(&w));
}

#[test]
fn r17_irq_cfg_registers_and_gerror_msi() {
    // spec: R17
    let mut m = Model::new(ModelConfig {
        profile: Profile::grace(),
        ack_latency: 0,
        ..ModelConfig::default()
    });
    let slot = m.alloc_pages(1, 4096).unwrap();
    m.write64(reg::GERROR_IRQ_CFG0, slot + 8);
    m.write32(reg::GERROR_IRQ_CFG1, 0x1234_5678);
    m.write32(reg::GERROR_IRQ_CFG2, 0x1F);
    assert_eq!(m.read32(reg::GERROR_IRQ_CFG1), 0x1234_5678);
    assert_eq!(m.read32(reg::GERROR_IRQ_CFG2), 0x1F);
    m.write32(reg::IRQ_CTRL, reg::IRQ_GERROR);
    m.raise_gerror(reg::GERROR_SFM_ERR);
    assert_eq!(
        m.read_u64(slot + 8).unwrap() as u32,
        0x1234_5678,
        "GERROR MSI written"
    );
    assert_eq!(m.signals().gerror_irq, 1);
    m.write32(reg::GERROR_IRQ_CFG1, 0);
    assert_eq!(
        m.read32(reg::GERROR_IRQ_CFG1),
        0x1234_5678,
        "RO while GERROR_IRQEN"
    );
    assert!(m.has_violation(ViolationKind::GuardedWrite));
}

#[test]
fn r5_dependent_write_inside_the_ack_window_is_flagged() {
    // spec: R5
    let mut r = Rig::new(ModelConfig {
        ack_latency: 4,
        ..ModelConfig::default()
    });
    r.enable();
    // Clearing SMMUEN without polling CR0ACK, then reprogramming the stream table: SMMUEN's ack
    // is still 1, so the write is ignored and logged (QEMU acks instantly and accepts it).
    let base = r.m.read64(reg::STRTAB_BASE);
    r.m.write32(reg::CR0, reg::CR0_CMDQEN | reg::CR0_EVTQEN);
    r.m.write64(reg::STRTAB_BASE, base + 0x4000);
    assert!(r.viol(ViolationKind::GuardedWrite));
    assert_eq!(r.m.read64(reg::STRTAB_BASE), base);
    // Polling first makes the same write legal.
    r.m.clear_violations();
    r.poll(reg::CR0ACK, reg::CR0_SMMUEN, 0);
    r.m.write64(reg::STRTAB_BASE, base + 0x4000);
    assert!(r.m.violations().is_empty());
    assert_eq!(r.m.read64(reg::STRTAB_BASE), base + 0x4000);
}

#[test]
fn r19_statusr_dormant_follows_the_profile() {
    // spec: R19
    let p = Profile::grace().with(0, reg::IDR0_DORMHINT, 1);
    let mut m = Model::new(ModelConfig {
        profile: p,
        ack_latency: 0,
        ..ModelConfig::default()
    });
    assert_eq!(m.read32(reg::STATUSR), reg::STATUSR_DORMANT);
    m.write32(reg::CR0, reg::CR0_SMMUEN);
    assert_eq!(m.read32(reg::STATUSR), 0);
    let mut q = Model::new(ModelConfig::default());
    assert_eq!(q.read32(reg::STATUSR), 0, "no DORMHINT: never dormant");
}

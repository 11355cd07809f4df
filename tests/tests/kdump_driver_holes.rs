//! The driver's side of the holes the adoption review found (issue 10, items 3–6 and 12):
//! each test builds the crash of SPEC §0 on the hostile Grace-like model, brings the crash
//! kernel up, and shows one rule holding where the code before it broke it. Every test ends
//! with an empty violation log.

mod common;
use common::{master, platform_ok};
use smmu::arch::regs::offset;
use smmu::poll::PollBudget;
use smmu::{Attachment, DomainStage, Error, MapAttr, SmmuConfig, StreamTable};
use smmu_kdump::{boot, AdoptOptions, AdoptPlatform, Booted, Verdict};
use smmu_model::fields::reg;
use smmu_model::{Cause, Transaction, TxnResult};
use smmu_model_platform::faults::{Stall, StallingRegs};
use smmu_model_platform::kdump_scenario::{crash, Crashed, Device, OldKernel};
use smmu_model_platform::platform::ModelHal;
use smmu_model_platform::tables::ModelTables;
use smmu_model_platform::{CacheEvent, ModelPlatform};
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);

fn device<'a>(devices: &'a [Device], name: &str) -> &'a Device {
    devices.iter().find(|d| d.name == name).unwrap()
}

fn assert_no_violations(platform: &ModelPlatform) {
    let v = platform.model().with(|m| m.violations().to_vec());
    assert!(v.is_empty(), "the model logged violations: {v:#?}");
}

/// Options whose polls give up quickly: a stalled command queue is the point of some tests.
fn quick() -> AdoptOptions {
    AdoptOptions {
        config: SmmuConfig {
            budget: PollBudget(3000),
            ..SmmuConfig::default()
        },
        ..AdoptOptions::default()
    }
}

type CrashBooted = Booted<StallingRegs, ModelHal>;

/// The crash of SPEC §0, adopted, with registers that can stall the command queue.
fn adopted(seed: u64) -> (ModelPlatform, Vec<Device>, StallingRegs, CrashBooted) {
    let Crashed {
        platform, devices, ..
    } = crash(&OldKernel::grace(seed)).unwrap();
    let regs = StallingRegs::new(platform.regs());
    let booted = boot(regs.clone(), platform.hal(), &platform_ok(), &quick()).unwrap();
    assert!(
        matches!(booted.verdict, Verdict::Adopted { .. }),
        "{:?}",
        booted.verdict
    );
    (platform, devices, regs, booted)
}

/// The eight words of each StreamID's STE, as the SMMU would fetch them from memory.
fn ste_images(platform: &ModelPlatform, table: &impl StreamTable, sids: &[u32]) -> Vec<[u64; 8]> {
    sids.iter()
        .map(|&sid| {
            let loc = table.locate(sid).unwrap();
            let pa = loc.buf.pa_of(loc.first_word).0;
            core::array::from_fn(|i| platform.model().read_u64(pa + 8 * i as u64).unwrap())
        })
        .collect()
}

/// Every transaction `d`'s master issued in the current epoch reached the page the old
/// kernel's mapping (and the new domains', which map the same) gives it.
fn assert_dma_never_broke(platform: &ModelPlatform, d: &Device) {
    let epoch = platform.model().with(|m| m.epoch());
    let outcomes = platform.model().with(|m| m.outcomes().to_vec());
    let mine: Vec<_> = outcomes
        .iter()
        .filter(|o| o.master == Some(d.master) && o.epoch == epoch)
        .collect();
    assert!(!mine.is_empty());
    for o in mine {
        let expected = d.pa + (o.txn.iova - d.iova);
        assert_eq!(
            o.result,
            TxnResult::Translated { pa: expected },
            "{}: {o:?}",
            d.name
        );
    }
}

// spec: K11, D12
/// The NIC's four StreamIDs (over two level-2 tables) are attached to a new stage-1 domain
/// while the command queue stalls at the n-th submission, for every n until the attach gets
/// through: each failed attach leaves every STE as the crashed kernel left it, still
/// deferred, the master still `Initial`, and the domain free to be freed; the NIC's DMA,
/// running all along, never misses a translation. Before the fix the STEs written before the
/// failure stayed rewritten and un-deferred.
#[test]
fn an_attach_that_fails_at_any_submission_leaves_every_ste_as_it_was() {
    let (platform, devices, regs, mut booted) = adopted(21);
    let smmu = &mut booted.smmu;
    let nic = device(&devices, "nic");
    let id = smmu.add_master(&master(nic.sids, false)).unwrap();
    assert!(smmu.is_deferred(id).unwrap());
    let before = smmu.with_stream_table(|t| ste_images(&platform, t, nic.sids));
    let mut failures = 0;
    for n in 0..64 {
        let domain = smmu
            .new_domain(DomainStage::Stage1, false, ModelTables(platform.hal()))
            .unwrap();
        smmu.map(
            &domain,
            Iova(nic.iova),
            PhysAddr(nic.pa),
            nic.pages << 12,
            RW,
        )
        .unwrap();
        regs.set(Stall::Once(n));
        let result = smmu.attach(id, &domain);
        let submissions = regs.prod_writes();
        regs.set(Stall::Off);
        if result.is_ok() {
            assert!(n >= submissions, "n {n}: the stall never struck");
            break;
        }
        failures += 1;
        assert_eq!(
            smmu.attachment(id).unwrap(),
            Attachment::Initial,
            "n {n}: {result:?}"
        );
        for &sid in nic.sids {
            assert!(
                smmu.with_stream_table(|t| t.is_deferred(sid)),
                "n {n}: {sid:#x}"
            );
        }
        assert_eq!(
            smmu.with_stream_table(|t| ste_images(&platform, t, nic.sids)),
            before,
            "n {n}: {result:?}"
        );
        smmu.free_domain(domain)
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("n {n}: {e}"));
    }
    // One failure per submission: the CD write's and every STE's.
    assert!(failures > nic.sids.len(), "{failures} failures");
    assert!(matches!(
        smmu.attachment(id).unwrap(),
        Attachment::Paging { .. }
    ));
    assert!(!smmu.is_deferred(id).unwrap());
    assert_ne!(
        smmu.with_stream_table(|t| ste_images(&platform, t, nic.sids)),
        before
    );
    platform.model().with(|m| m.run_masters(50));
    assert_dma_never_broke(&platform, nic);
    assert_no_violations(&platform);
}

// spec: K11, D12
/// When undoing fails too (the queue stays stalled), the master is recorded as
/// `Indeterminate`, its STEs stay deferred, and the new domain cannot be freed, because an
/// STE may point at it. Once the queue runs again, releasing the master to abort settles it
/// and the domain can go. Before the fix the master read `Initial` and `free_domain`
/// succeeded while an STE pointed at the freed table.
#[test]
fn an_attach_that_cannot_be_undone_keeps_its_domain_referenced() {
    let (platform, devices, regs, mut booted) = adopted(22);
    let smmu = &mut booted.smmu;
    let nvme_and_nic = [device(&devices, "nvme"), device(&devices, "nic")];
    for d in nvme_and_nic {
        let id = smmu.add_master(&master(d.sids, false)).unwrap();
        let domain = smmu
            .new_domain(d.stage, false, ModelTables(platform.hal()))
            .unwrap();
        smmu.map(&domain, Iova(d.iova), PhysAddr(d.pa), d.pages << 12, RW)
            .unwrap();
        // The first submission gets through (an STE or the CD is rewritten), then the SMMU
        // stops consuming.
        regs.set(Stall::From(1));
        assert!(smmu.attach(id, &domain).is_err(), "{}", d.name);
        assert!(regs.dropped() > 0);
        assert_eq!(smmu.attachment(id).unwrap(), Attachment::Indeterminate);
        assert!(smmu.is_deferred(id).unwrap(), "{}", d.name);
        let (err, domain) = smmu.free_domain(domain).expect_err("still referenced");
        assert_eq!(err, Error::DomainBusy);
        regs.set(Stall::Off);
        let (err, domain) = smmu.free_domain(domain).expect_err("still referenced");
        assert_eq!(err, Error::DomainBusy);
        platform
            .model()
            .with(|m| m.set_master_running(d.master, false))
            .unwrap();
        smmu.attach_blocked(id).unwrap();
        assert_eq!(smmu.attachment(id).unwrap(), Attachment::Blocked);
        smmu.free_domain(domain).map_err(|(e, _)| e).unwrap();
        for &sid in d.sids {
            let r = platform
                .model()
                .with(|m| m.dma(Transaction::read(sid, d.iova)));
            assert!(
                matches!(
                    r,
                    TxnResult::Abort {
                        cause: Cause::SteAbort,
                        ..
                    }
                ),
                "{}: {r:?}",
                d.name
            );
        }
    }
    assert_no_violations(&platform);
}

// spec: K10
/// No RMR bypass goes over an STE of the adopted table: not over an abort STE the crashed
/// kernel left (never deferred), not over a deferred STE once it has been replaced. An STE in
/// a level-2 table this kernel allocated (under a descriptor the old table left unused) is
/// not inherited and may get one. Before the fix only deferred STEs were refused.
#[test]
fn no_rmr_bypass_is_installed_over_any_adopted_ste() {
    let (platform, devices, _regs, mut booted) = adopted(23);
    let smmu = &mut booted.smmu;
    // 0x105 shares the GPU's level-2 table; the old kernel left it aborting.
    let spare = smmu.add_master(&master(&[0x105], false)).unwrap();
    assert!(!smmu.is_deferred(spare).unwrap());
    assert_eq!(
        smmu.install_rmr_bypass(spare),
        Err(Error::InheritedSte(0x105))
    );
    let dma = |sid, iova| {
        platform
            .model()
            .with(|m| m.dma(Transaction::read(sid, iova)))
    };
    assert!(matches!(
        dma(0x105, 0x1000),
        TxnResult::Abort {
            cause: Cause::SteAbort,
            ..
        }
    ));
    // The NVMe's deferred STE, replaced by an attach and released again: still adopted.
    let nvme = device(&devices, "nvme");
    let id = smmu.add_master(&master(nvme.sids, false)).unwrap();
    assert_eq!(
        smmu.install_rmr_bypass(id),
        Err(Error::Deferred(nvme.sids[0]))
    );
    platform
        .model()
        .with(|m| m.set_master_running(nvme.master, false))
        .unwrap();
    smmu.attach_blocked(id).unwrap();
    assert!(!smmu.is_deferred(id).unwrap());
    assert_eq!(
        smmu.install_rmr_bypass(id),
        Err(Error::InheritedSte(nvme.sids[0]))
    );
    // Positive control: StreamID 0x800's descriptor was unused, so its level-2 table is ours.
    let fresh = smmu.add_master(&master(&[0x800], false)).unwrap();
    smmu.install_rmr_bypass(fresh).unwrap();
    assert_eq!(
        dma(0x800, 0x1234_5000),
        TxnResult::Bypass { pa: 0x1234_5000 }
    );
    assert_no_violations(&platform);
}

/// The registers after the crash kernel came up: (CR0, IRQ_CTRL).
fn cr0_and_irqs(platform: &ModelPlatform) -> (u32, u32) {
    let m = platform.model();
    (m.read32(offset::CR0), m.read32(offset::IRQ_CTRL))
}

// spec: K8
/// After every refusal the full reset the crash kernel falls back to is still the crash
/// kernel's: translation and the command queue on, the event and PRI queues and their
/// interrupts off, only the global-error interrupt enabled. Before the fix the fallback used
/// the caller's configuration: CR0 ended 0x1d (EVENTQEN) and IRQ_CTRL 0x5.
#[test]
fn the_fallback_full_reset_keeps_the_event_queue_off() {
    let refusals: [(&str, AdoptPlatform, Option<u64>); 3] = [
        (
            "not-coherent",
            AdoptPlatform {
                coherent: false,
                ..platform_ok()
            },
            None,
        ),
        (
            "e2h-mismatch",
            AdoptPlatform {
                expect_e2h: Some(true),
                ..platform_ok()
            },
            None,
        ),
        // Descriptor 1 (the GPU's) gets SPAN 5.
        ("l1-bad-span", platform_ok(), Some(1)),
    ];
    for (code, adopt_platform, corrupt) in refusals {
        let Crashed { platform, .. } = crash(&OldKernel::grace(31)).unwrap();
        if let Some(i) = corrupt {
            let m = platform.model();
            let base = m.read64(offset::STRTAB_BASE) & 0x00ff_ffff_ffff_ffc0;
            let desc = m.read_u64(base + 8 * i).unwrap();
            m.write_u64(base + 8 * i, (desc & !0x1f) | 5).unwrap();
        }
        let options = AdoptOptions {
            config: SmmuConfig {
                evtq_log2: Some(8),
                priq_log2: Some(8),
                ..quick().config
            },
            ..quick()
        };
        let booted = boot(platform.regs(), platform.hal(), &adopt_platform, &options).unwrap();
        match booted.verdict {
            Verdict::FullReset(r) => assert_eq!(r.code(), code),
            v => panic!("{code}: {v:?}"),
        }
        let (cr0, irq) = cr0_and_irqs(&platform);
        assert_ne!(cr0 & reg::CR0_SMMUEN, 0, "{code}: CR0 {cr0:#x}");
        assert_ne!(cr0 & reg::CR0_CMDQEN, 0, "{code}: CR0 {cr0:#x}");
        assert_eq!(
            cr0 & (reg::CR0_EVTQEN | reg::CR0_PRIQEN),
            0,
            "{code}: CR0 {cr0:#x}"
        );
        assert_eq!(irq, reg::IRQ_GERROR, "{code}: IRQ_CTRL {irq:#x}");
        assert_no_violations(&platform);
    }
    // A kernel that is not a crash kernel gets the configuration it asked for.
    let Crashed { platform, .. } = crash(&OldKernel::grace(32)).unwrap();
    let normal = AdoptPlatform {
        crash_kernel: false,
        ..platform_ok()
    };
    boot(platform.regs(), platform.hal(), &normal, &quick()).unwrap();
    assert_ne!(cr0_and_irqs(&platform).0 & reg::CR0_EVTQEN, 0);
    assert_no_violations(&platform);
}

/// Where the crashed kernel aimed its global-error MSI: a page of its own memory.
const OLD_MSI_DATA: u32 = 0x0dea_d0ff;

/// Sets the global-error MSI as a crashed kernel would have left it: IRQ_CTRL off while the
/// IRQ_CFG registers change (as it must), then the global-error and event-queue interrupts
/// enabled again. Returns the doorbell address.
fn crashed_kernel_msi(platform: &ModelPlatform) -> u64 {
    let m = platform.model();
    let doorbell = m.alloc_pages(1, 0x1000).unwrap();
    let irq_before = m.read32(offset::IRQ_CTRL);
    let wait_ack = |v: u32| {
        for _ in 0..1000 {
            if m.read32(offset::IRQ_CTRLACK) == v {
                return;
            }
            m.step();
        }
        panic!("IRQ_CTRLACK");
    };
    m.write32(offset::IRQ_CTRL, 0);
    wait_ack(0);
    m.write64(offset::GERROR_IRQ_CFG0, doorbell);
    m.write32(offset::GERROR_IRQ_CFG1, OLD_MSI_DATA);
    m.write32(offset::GERROR_IRQ_CFG2, 0x31);
    let irq = irq_before | reg::IRQ_GERROR | reg::IRQ_EVTQ;
    m.write32(offset::IRQ_CTRL, irq);
    wait_ack(irq);
    assert!(m.with(|m| m.violations().is_empty()));
    doorbell
}

// spec: K8, D11
/// The crash kernel, adopting or falling back to the full reset, disables every interrupt,
/// replaces the crashed kernel's global-error MSI configuration by its own (MSI off: a wired
/// interrupt) and only then enables the global-error interrupt: a global error after boot
/// signals the interrupt and never writes the crashed kernel's doorbell. Before the fix the
/// IRQ_CFG registers were never written and the error rang the old doorbell.
#[test]
fn the_global_error_interrupt_never_uses_the_crashed_kernels_msi() {
    let cases = [
        ("adopted", platform_ok()),
        (
            "full reset",
            AdoptPlatform {
                coherent: false,
                ..platform_ok()
            },
        ),
    ];
    for (name, adopt_platform) in cases {
        let Crashed { platform, .. } = crash(&OldKernel::grace(33)).unwrap();
        let doorbell = crashed_kernel_msi(&platform);
        let booted = boot(platform.regs(), platform.hal(), &adopt_platform, &quick()).unwrap();
        assert_eq!(
            matches!(booted.verdict, Verdict::Adopted { .. }),
            name == "adopted",
            "{name}: {:?}",
            booted.verdict
        );
        let m = platform.model();
        assert_eq!(m.read64(offset::GERROR_IRQ_CFG0), 0, "{name}");
        assert_eq!(m.read32(offset::GERROR_IRQ_CFG1), 0, "{name}");
        assert_eq!(m.read32(offset::GERROR_IRQ_CFG2), 0, "{name}");
        assert_eq!(m.read64(offset::EVTQ_IRQ_CFG0), 0, "{name}");
        assert_eq!(cr0_and_irqs(&platform).1, reg::IRQ_GERROR, "{name}");
        let edges = m.with(|m| m.signals().gerror_irq);
        m.with(|m| m.raise_gerror(reg::GERROR_EVTQ_ABT_ERR));
        let signals = m.with(|m| m.signals().clone());
        assert_eq!(signals.gerror_irq, edges + 1, "{name}: the interrupt is on");
        assert!(
            signals.msi_writes.iter().all(|&(a, _)| a != doorbell),
            "{name}: the crashed kernel's doorbell was written: {:x?}",
            signals.msi_writes
        );
        let mut word = [0u8; 4];
        m.mem_read(doorbell, &mut word).unwrap();
        assert_ne!(u32::from_le_bytes(word), OLD_MSI_DATA, "{name}");
        booted.smmu.handle_gerror();
        assert_no_violations(&platform);
    }
}

// spec: K17
/// On an SMMU whose IDR0.COHACC says coherent, a platform that says non-coherent (with cache
/// maintenance) is believed: every store the crash kernel makes to a structure the SMMU reads
/// (an adopted STE, an adopted level-1 descriptor, its own CD and level-2 table) is followed
/// by the clean of that word. Before the fix adoption took COHACC and cleaned nothing.
#[test]
fn the_platforms_coherency_answer_wins_over_cohacc() {
    let Crashed {
        platform, devices, ..
    } = crash(&OldKernel::grace(34)).unwrap();
    assert_ne!(
        u64::from(platform.model().read32(offset::IDR0)) & reg::IDR0_COHACC.mask(),
        0,
        "COHACC = 1 hardware"
    );
    let hal = platform.hal();
    let with_cmo = AdoptPlatform {
        coherent: false,
        cache_maintenance: true,
        ..platform_ok()
    };
    let options = AdoptOptions {
        attr: MapAttr::NonCacheable,
        ..quick()
    };
    let mut booted = boot(platform.regs(), hal.clone(), &with_cmo, &options).unwrap();
    assert!(
        matches!(booted.verdict, Verdict::Adopted { .. }),
        "{:?}",
        booted.verdict
    );
    let start = hal.cache_log().len();
    let smmu = &mut booted.smmu;
    let nvme = device(&devices, "nvme");
    let id = smmu.add_master(&master(nvme.sids, false)).unwrap();
    platform
        .model()
        .with(|m| m.set_master_running(nvme.master, false))
        .unwrap();
    let domain = smmu
        .new_domain(DomainStage::Stage1, false, ModelTables(platform.hal()))
        .unwrap();
    smmu.map(
        &domain,
        Iova(nvme.iova),
        PhysAddr(nvme.pa),
        nvme.pages << 12,
        RW,
    )
    .unwrap();
    smmu.attach(id, &domain).unwrap();
    // StreamID 0x800: its descriptor was unused, so this kernel publishes a level-2 table in
    // the adopted level-1 table.
    smmu.add_master(&master(&[0x800], false)).unwrap();
    let strtab = platform.model().read64(offset::STRTAB_BASE) & 0x00ff_ffff_ffff_ffc0;
    let nvme_ste = smmu.with_stream_table(|t| {
        let loc = t.locate(nvme.sids[0]).unwrap();
        loc.buf.pa_of(loc.first_word).0
    });
    let log = hal.cache_log();
    let log = &log[start..];
    let mut stored = Vec::new();
    for (i, e) in log.iter().enumerate() {
        let CacheEvent::EntryStore(pa) = *e else {
            continue;
        };
        stored.push(pa.0);
        let cleaned = matches!(
            log.get(i + 1),
            Some(&CacheEvent::Clean { pa: Some(c), size })
                if c.0 <= pa.0 && pa.0 + 8 <= c.0 + size as u64
        );
        assert!(
            cleaned,
            "store at {:#x} not cleaned: {:?}",
            pa.0,
            log.get(i + 1)
        );
    }
    assert!(
        stored
            .iter()
            .any(|&pa| (nvme_ste..nvme_ste + 64).contains(&pa)),
        "the adopted STE was rewritten"
    );
    assert!(
        stored.contains(&(strtab + 8 * 8)),
        "the L1 descriptor was written"
    );
    assert!(
        stored.len() > 2,
        "the CD of the new domain was written too: {stored:x?}"
    );
    assert_eq!(
        platform
            .model()
            .with(|m| m.dma(Transaction::read(nvme.sids[0], nvme.iova + 0x1008))),
        TxnResult::Translated {
            pa: nvme.pa + 0x1008
        }
    );
    std::mem::forget(domain);
    assert_no_violations(&platform);
}

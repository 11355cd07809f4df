//! Crash-kernel adoption on the model (SPEC K1–K17): the scenario, and one test per rule that
//! needs a live SMMU to show.

mod common;
use common::{master, platform_ok};
use std::sync::{Arc, Mutex};

use smmu::arch::regs::offset;
use smmu::{DomainStage, Error, MapAttr, RegisterAccess, SmmuConfig, StreamTable};
use smmu_kdump::{boot, AdoptOptions, AdoptPlatform, Booted, Verdict, ADOPT};
use smmu_model::fields::reg;
use smmu_model::{Cause, Profile, Transaction, TxnResult};
use smmu_model_platform::kdump_scenario::{crash, run, Crashed, OldKernel, Strategy};
use smmu_model_platform::platform::ModelRegs;
use smmu_model_platform::tables::ModelTables;
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);

/// The crash kernel boots with the default options on a platform that allows adoption, and
/// must adopt.
fn boot_adopted<R, H>(regs: R, hal: H) -> Booted<R, H>
where
    R: smmu::RegisterAccess + Clone,
    H: smmu::Hal + Clone,
{
    let booted = boot(regs, hal, &platform_ok(), &AdoptOptions::default()).unwrap();
    assert!(
        matches!(booted.verdict, Verdict::Adopted { .. }),
        "{:?}",
        booted.verdict
    );
    booted
}

// spec: K1, K5, K7, K8, K11
#[test]
fn adoption_keeps_every_device_translating_through_the_crash() {
    for seed in 1..=20 {
        let r = run(Strategy::Adopt, seed).unwrap();
        assert_eq!(r.verdict, "adopted", "seed {seed}");
        let t = r.totals;
        assert!(t.translated > 0, "seed {seed}: {t:?}");
        assert_eq!(
            (
                t.aborted,
                t.bypassed,
                t.misdirected,
                t.faulted,
                r.violations
            ),
            (0, 0, 0, 0, 0),
            "seed {seed}: {r:#?}"
        );
        for d in &r.devices {
            assert!(d.deferred_at_probe && d.reattached, "seed {seed}: {d:?}");
            assert!(d.counts.translated > 0, "seed {seed}: {d:?}");
        }
    }
}

// spec: K1
#[test]
fn the_reset_strategies_break_the_dma_that_adoption_keeps() {
    let abort = run(Strategy::Abort, 3).unwrap();
    assert!(abort.totals.aborted > 0, "{abort:#?}");
    assert_eq!(abort.totals.misdirected, 0);
    let bypass = run(Strategy::Bypass, 3).unwrap();
    assert!(bypass.totals.misdirected > 0, "{bypass:#?}");
}

/// Registers that log every write (offset, value) on their way to the model.
#[derive(Clone)]
struct Logged {
    inner: ModelRegs,
    model: smmu_model::SharedModel,
    log: Arc<Mutex<Vec<(usize, u64)>>>,
    /// Raise these GERROR bits at the first CR0 write (a fault that strikes mid-adoption).
    strike: u32,
}

impl Logged {
    fn new(platform: &smmu_model_platform::ModelPlatform) -> Self {
        Self {
            inner: platform.regs(),
            model: platform.model().clone(),
            log: Arc::default(),
            strike: 0,
        }
    }
    fn writes_to(&self, off: usize) -> Vec<u64> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == off)
            .map(|&(_, v)| v)
            .collect()
    }
}

impl RegisterAccess for Logged {
    fn read32(&self, o: usize) -> u32 {
        self.inner.read32(o)
    }
    fn write32(&self, o: usize, v: u32) {
        let first_cr0 = o == offset::CR0 && self.writes_to(offset::CR0).is_empty();
        self.log.lock().unwrap().push((o, u64::from(v)));
        self.inner.write32(o, v);
        if first_cr0 && self.strike != 0 {
            self.model.with(|m| m.raise_gerror(self.strike));
        }
    }
    fn read64(&self, o: usize) -> u64 {
        self.inner.read64(o)
    }
    fn write64(&self, o: usize, v: u64) {
        self.log.lock().unwrap().push((o, v));
        self.inner.write64(o, v);
    }
}

// spec: K5, K8, K9
#[test]
fn the_adopt_plan_never_writes_what_it_must_not() {
    use smmu::ResetStep::*;
    for forbidden in [
        GlobalBypassAbort,
        GlobalBypassAllow,
        DisableAll,
        ConfigureAttributes,
        ProgramStreamTable,
        EnableEventQueue,
        EnablePriQueue,
        EnableInterrupts,
        EnableAtsCheck,
        EnableTranslation,
    ] {
        assert!(!ADOPT.contains(forbidden), "{forbidden:?}");
    }
    let Crashed { platform, .. } = crash(&OldKernel::grace(4)).unwrap();
    let cr0_before = platform.model().read32(offset::CR0);
    let regs = Logged::new(&platform);
    let _booted = boot_adopted(regs.clone(), platform.hal());
    for off in [
        offset::GBPA,
        offset::CR1,
        offset::CR2,
        offset::STRTAB_BASE,
        offset::STRTAB_BASE_CFG,
    ] {
        assert_eq!(
            regs.writes_to(off),
            Vec::<u64>::new(),
            "register {off:#x} written"
        );
    }
    let cr0 = regs.writes_to(offset::CR0);
    assert!(
        cr0.iter().all(|v| v & u64::from(reg::CR0_SMMUEN) != 0),
        "SMMUEN cleared: {cr0:x?}"
    );
    // K9: ATSCHK as the crashed kernel left it; K8: no event or PRI queue.
    let after = platform.model().read32(offset::CR0);
    assert_eq!(after & reg::CR0_ATSCHK, cr0_before & reg::CR0_ATSCHK);
    assert_eq!(after & (reg::CR0_EVTQEN | reg::CR0_PRIQEN), 0);
    assert_eq!(
        platform.model().read32(offset::IRQ_CTRL),
        1,
        "only GERROR_IRQEN"
    );
    assert!(platform.model().with(|m| m.violations().is_empty()));
}

// spec: K6, K16
#[test]
fn service_failure_mid_adoption_aborts_before_disabling() {
    let Crashed { platform, .. } = crash(&OldKernel::grace(5)).unwrap();
    let mut regs = Logged::new(&platform);
    regs.strike = reg::GERROR_SFM_ERR;
    // Adoption is abandoned, and the full reset it falls back to cannot run either: the
    // SMMU stays in service failure mode until it is reset from outside.
    let err = boot(
        regs.clone(),
        platform.hal(),
        &platform_ok(),
        &AdoptOptions::default(),
    )
    .expect_err("service failure");
    assert_eq!(err, Error::ServiceFailure);
    // GBPA.ABORT was written before the first CR0 write that cleared SMMUEN.
    let log = regs.log.lock().unwrap().clone();
    let gbpa = log
        .iter()
        .position(|&(o, v)| o == offset::GBPA && v & u64::from(reg::GBPA_ABORT) != 0)
        .expect("GBPA.ABORT written");
    let disable = log
        .iter()
        .position(|&(o, v)| o == offset::CR0 && v & u64::from(reg::CR0_SMMUEN) == 0)
        .expect("SMMUEN cleared");
    assert!(
        gbpa < disable,
        "GBPA at {gbpa}, SMMUEN cleared at {disable}"
    );
}

// spec: K6
#[test]
fn latched_global_errors_are_acknowledged_before_the_new_queue_runs() {
    let Crashed { platform, .. } = crash(&OldKernel::grace(6)).unwrap();
    platform
        .model()
        .with(|m| m.raise_gerror(reg::GERROR_EVTQ_ABT_ERR | reg::GERROR_CMDQ_ERR));
    let _booted = boot_adopted(platform.regs(), platform.hal());
    let m = platform.model();
    assert_eq!(m.read32(offset::GERROR), m.read32(offset::GERRORN));
    assert!(m.with(|m| m.violations().is_empty()));
}

// spec: K1
#[test]
fn refusals_fall_back_to_the_full_reset_with_their_reason() {
    let cases: [(AdoptPlatform, &str); 2] = [
        (
            AdoptPlatform {
                crash_kernel: false,
                ..platform_ok()
            },
            "not-crash-kernel",
        ),
        (
            AdoptPlatform {
                coherent: false,
                ..platform_ok()
            },
            "not-coherent",
        ),
    ];
    for (p, code) in cases {
        let Crashed { platform, .. } = crash(&OldKernel::grace(7)).unwrap();
        let booted = boot(
            platform.regs(),
            platform.hal(),
            &p,
            &AdoptOptions::default(),
        )
        .unwrap();
        let Verdict::FullReset(r) = booted.verdict else {
            panic!("{:?}", booted.verdict)
        };
        assert_eq!(r.code(), code);
        // Everything adoption took was released; the full reset's SMMU runs.
        assert_eq!(platform.hal().live_mappings(), 0);
        let cr0 = platform.model().read32(offset::CR0);
        assert_ne!(cr0 & reg::CR0_SMMUEN, 0);
    }
}

// spec: K4, K3
#[test]
fn a_corrupt_level1_descriptor_fails_adoption_and_releases_everything() {
    let Crashed { platform, .. } = crash(&OldKernel::grace(8)).unwrap();
    let m = platform.model().clone();
    let base = m.read64(offset::STRTAB_BASE) & 0x00ff_ffff_ffff_ffc0;
    // Descriptor 1 (StreamIDs 0x100..0x1ff, the GPU's): SPAN 5 is not the SPLIT + 1 = 9.
    let desc = m.read_u64(base + 8).unwrap();
    m.with(|mm| mm.write_u64(base + 8, (desc & !0x1f) | 5))
        .unwrap();
    let booted = boot(
        platform.regs(),
        platform.hal(),
        &platform_ok(),
        &AdoptOptions::default(),
    )
    .unwrap();
    let Verdict::FullReset(r) = booted.verdict else {
        panic!("{:?}", booted.verdict)
    };
    assert_eq!(r.code(), "l1-bad-span");
    assert_eq!(platform.hal().live_mappings(), 0);
    assert_eq!(booted.smmu.asids().in_use(), 0, "reservations released");
}

// spec: K3
#[test]
fn a_descriptor_that_goes_bad_after_adoption_rejects_only_its_devices() {
    let Crashed {
        platform, devices, ..
    } = crash(&OldKernel::grace(9)).unwrap();
    let booted = boot_adopted(platform.regs(), platform.hal());
    assert_eq!(
        platform.hal().live_mappings(),
        1,
        "only the level-1 table is mapped"
    );
    let m = platform.model().clone();
    let base = m.read64(offset::STRTAB_BASE) & 0x00ff_ffff_ffff_ffc0;
    let desc = m.read_u64(base + 2 * 8).unwrap(); // StreamIDs 0x200..0x2ff: the NVMe's
    m.with(|mm| mm.write_u64(base + 2 * 8, desc | 1 << 6))
        .unwrap(); // L2PTR misaligned
    let nvme = devices.iter().find(|d| d.name == "nvme").unwrap();
    assert_eq!(
        booted.smmu.add_master(&master(nvme.sids, false)),
        Err(Error::InheritedDescriptorInvalid(0x200))
    );
    let gpu = devices.iter().find(|d| d.name == "gpu").unwrap();
    let id = booted.smmu.add_master(&master(gpu.sids, true)).unwrap();
    assert!(booted.smmu.is_deferred(id).unwrap());
    assert_eq!(
        platform.hal().live_mappings(),
        2,
        "the GPU's level-2 table, mapped lazily"
    );
}

// spec: K10, K11, K12
#[test]
fn deferred_stes_are_only_replaced_by_an_attach_or_released_to_abort() {
    let Crashed {
        platform, devices, ..
    } = crash(&OldKernel::grace(10)).unwrap();
    let mut booted = boot(
        platform.regs(),
        platform.hal(),
        &platform_ok(),
        &AdoptOptions::default(),
    )
    .unwrap();
    let smmu = &mut booted.smmu;
    let nic = devices.iter().find(|d| d.name == "nic").unwrap();
    let id = smmu.add_master(&master(nic.sids, false)).unwrap();
    assert!(smmu.is_deferred(id).unwrap());
    let first = nic.sids[0];
    assert_eq!(smmu.install_rmr_bypass(id), Err(Error::Deferred(first)));
    assert_eq!(smmu.attach_identity(id), Err(Error::Deferred(first)));
    // A failed attach (a domain of another SMMU) leaves it deferred.
    let other = smmu_model_platform::rig::Rig::new(
        smmu_model::ModelConfig::default(),
        SmmuConfig::default(),
    )
    .unwrap();
    let other = other;
    let foreign = other
        .smmu
        .new_domain(DomainStage::Stage1, false, other.tables())
        .unwrap();
    assert!(smmu.attach(id, &foreign).is_err());
    assert!(smmu.is_deferred(id).unwrap());
    // Still translating as the old kernel set it up.
    let dma = |sid, iova| {
        platform
            .model()
            .with(|m| m.dma(Transaction::read(sid, iova)))
    };
    assert_eq!(
        dma(first, nic.iova + 0x2000),
        TxnResult::Translated {
            pa: nic.pa + 0x2000
        }
    );
    // Released without an attach: hitlessly to abort.
    platform
        .model()
        .with(|m| m.set_master_running(nic.master, false))
        .unwrap();
    smmu.attach_blocked(id).unwrap();
    assert!(!smmu.is_deferred(id).unwrap());
    for &sid in nic.sids {
        let r = dma(sid, nic.iova);
        assert!(
            matches!(
                r,
                TxnResult::Abort {
                    cause: Cause::SteAbort,
                    ..
                }
            ),
            "{r:?}"
        );
    }
    assert!(platform.model().with(|m| m.violations().is_empty()));
}

// spec: K13
#[test]
fn e2h_is_read_back_and_checked_against_the_platform() {
    let mut old = OldKernel::grace(11);
    old.config.e2h = true;
    let Crashed { platform, .. } = crash(&old).unwrap();
    let expect_nh = AdoptPlatform {
        expect_e2h: Some(false),
        ..platform_ok()
    };
    let booted = boot(
        platform.regs(),
        platform.hal(),
        &expect_nh,
        &AdoptOptions::default(),
    )
    .unwrap();
    let Verdict::FullReset(r) = booted.verdict else {
        panic!("{:?}", booted.verdict)
    };
    assert_eq!(r.code(), "e2h-mismatch");

    let Crashed { platform, .. } = crash(&old).unwrap();
    let booted = boot_adopted(platform.regs(), platform.hal());
    assert!(booted.smmu.e2h(), "stage-1 invalidations use the EL2 forms");
}

// spec: K14
#[test]
fn new_domains_never_get_a_reserved_id_and_reuse_would_serve_stale_translations() {
    let Crashed {
        platform, devices, ..
    } = crash(&OldKernel::grace(12)).unwrap();
    let mut booted = boot(
        platform.regs(),
        platform.hal(),
        &platform_ok(),
        &AdoptOptions::default(),
    )
    .unwrap();
    let gpu = devices.iter().find(|d| d.name == "gpu").unwrap().clone();
    let nic = devices.iter().find(|d| d.name == "nic").unwrap().clone();
    let smmu = &mut booted.smmu;
    assert!(smmu.asids().is_reserved(gpu.old_id));
    let mut fresh = Vec::new();
    for _ in 0..40 {
        let d = smmu
            .new_domain(DomainStage::Stage1, false, ModelTables(platform.hal()))
            .unwrap();
        assert!(!smmu.asids().is_reserved(d.id()));
        assert!(devices
            .iter()
            .all(|o| o.stage != DomainStage::Stage1 || o.old_id != d.id()));
        fresh.push(d);
    }
    for d in fresh {
        smmu.free_domain(d).map_err(|(e, _)| e).unwrap();
    }
    let nvme = devices.iter().find(|d| d.name == "nvme").unwrap();
    assert!(smmu.vmids().is_reserved(nvme.old_id));
    for _ in 0..20 {
        let d = smmu
            .new_domain(DomainStage::Stage2, false, ModelTables(platform.hal()))
            .unwrap();
        assert!(!smmu.vmids().is_reserved(d.id()) && d.id() != nvme.old_id);
        smmu.free_domain(d).map_err(|(e, _)| e).unwrap();
    }
    // Negative control: a driver without K14's reservations (a fresh allocator) hands the
    // GPU's old ASID to the NIC's new domain.
    *smmu.asids_mut() = smmu::ids::IdAllocator::new(16);
    let reused = smmu
        .new_domain(DomainStage::Stage1, false, ModelTables(platform.hal()))
        .unwrap();
    assert_eq!(reused.id(), gpu.old_id);
    let other = platform.model().alloc_pages(1, 0x1000).unwrap();
    smmu.map(&reused, Iova(gpu.iova), PhysAddr(other), 0x1000, RW)
        .unwrap();
    // The GPU (still on its deferred STE, same ASID) fills the TLB for that IOVA...
    let dma = |sid, iova| {
        platform
            .model()
            .with(|m| m.dma(Transaction::read(sid, iova)))
    };
    assert_eq!(
        dma(gpu.sids[0], gpu.iova),
        TxnResult::Translated { pa: gpu.pa }
    );
    let id = smmu.add_master(&master(nic.sids, false)).unwrap();
    platform
        .model()
        .with(|m| m.set_master_running(nic.master, false))
        .unwrap();
    smmu.attach(id, &reused).unwrap();
    // ...and the NIC, whose new domain maps that IOVA elsewhere, gets the GPU's page.
    assert_eq!(
        dma(nic.sids[0], gpu.iova),
        TxnResult::Translated { pa: gpu.pa },
        "the stale translation of the reused ASID"
    );
    std::mem::forget(reused);
}

// spec: K17
#[test]
fn a_non_coherent_smmu_is_adopted_only_with_cache_maintenance_which_every_write_uses() {
    let old = OldKernel {
        profile: Profile::grace().with(0, reg::IDR0_COHACC, 0),
        ..OldKernel::grace(13)
    };
    let Crashed {
        platform, devices, ..
    } = crash(&old).unwrap();
    let no_cmo = AdoptPlatform {
        coherent: false,
        ..platform_ok()
    };
    let booted = boot(
        platform.regs(),
        platform.hal(),
        &no_cmo,
        &AdoptOptions::default(),
    )
    .unwrap();
    assert!(matches!(booted.verdict, Verdict::FullReset(r) if r.code() == "not-coherent"));

    let Crashed {
        platform,
        devices: _,
        ..
    } = crash(&old).unwrap();
    let hal = platform.hal();
    let with_cmo = AdoptPlatform {
        coherent: false,
        cache_maintenance: true,
        ..platform_ok()
    };
    let options = AdoptOptions {
        attr: MapAttr::NonCacheable,
        ..AdoptOptions::default()
    };
    let booted = boot(platform.regs(), hal.clone(), &with_cmo, &options).unwrap();
    assert!(
        matches!(booted.verdict, Verdict::Adopted { .. }),
        "{:?}",
        booted.verdict
    );
    assert!(hal
        .mapping_log()
        .iter()
        .all(|m| m.attr == MapAttr::NonCacheable));
    let nvme = devices.iter().find(|d| d.name == "nvme").unwrap();
    let id = booted.smmu.add_master(&master(nvme.sids, false)).unwrap();
    let cleans = hal.stats().cleans;
    booted.smmu.attach_blocked(id).unwrap();
    assert!(
        hal.stats().cleans > cleans,
        "writes to the adopted STE were cleaned"
    );
    assert!(!booted
        .smmu
        .with_stream_table(|t| t.is_deferred(nvme.sids[0])));
}

/// The crash kernel adopts, then each device's driver probes and attaches on its own thread,
/// all at once, while the other devices keep doing DMA: the attaches of different masters run
/// concurrently (each under its own master's lock, the adopted table under its read lock),
/// and still no transaction of any device is aborted, bypassed or misdirected, every STE
/// leaves the deferred state only through its own attach, and the model sees no torn or
/// stale entry. Each driver quiesces its own device around the attach, as Linux drivers do:
/// a stage-2 domain swap changes two STE qwords, which the hitless writer may only do through
/// an invalid STE, so a device that kept running would see aborts.
// spec: D12, K11, K12, K14
#[test]
fn adopted_table_takes_concurrent_attaches_of_different_masters_without_a_dma_glitch() {
    use std::sync::atomic::{AtomicBool, Ordering};
    for seed in 1..=6 {
        let Crashed {
            platform,
            devices,
            epoch,
        } = crash(&OldKernel::grace(seed)).unwrap();
        let model = platform.model().clone();
        let booted = boot_adopted(platform.regs(), platform.hal());
        let smmu = &booted.smmu;
        let stop = AtomicBool::new(false);
        let before = model.with(|m| m.outcomes().len());
        let new_ids = std::thread::scope(|s| {
            // The devices keep issuing DMA throughout, interleaved with the attaches.
            let dma = s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    model.with(|m| m.run_masters(2));
                    std::thread::yield_now();
                }
            });
            let drivers: Vec<_> = devices
                .iter()
                .map(|d| {
                    let platform = &platform;
                    s.spawn(move || {
                        let id = smmu.add_master(&master(d.sids, d.protected)).unwrap();
                        assert!(smmu.is_deferred(id).unwrap(), "{}", d.name);
                        let run = |on| {
                            platform
                                .model()
                                .with(|m| m.set_master_running(d.master, on))
                                .unwrap();
                        };
                        run(false);
                        let domain = smmu
                            .new_domain(d.stage, d.protected, ModelTables(platform.hal()))
                            .unwrap();
                        smmu.map(&domain, Iova(d.iova), PhysAddr(d.pa), d.pages << 12, RW)
                            .unwrap();
                        smmu.attach(id, &domain).unwrap();
                        assert!(!smmu.is_deferred(id).unwrap(), "{}", d.name);
                        for &sid in d.sids {
                            assert_eq!(
                                platform
                                    .model()
                                    .with(|m| m.dma(Transaction::read(sid, d.iova + 0x2010))),
                                TxnResult::Translated { pa: d.pa + 0x2010 },
                                "{} sid {sid:#x}",
                                d.name
                            );
                        }
                        run(true);
                        let new_id = domain.id();
                        // Left attached, as a kernel leaves a device's DMA domain.
                        std::mem::forget(domain);
                        (d.stage, new_id)
                    })
                })
                .collect();
            let ids: Vec<_> = drivers.into_iter().map(|t| t.join().unwrap()).collect();
            stop.store(true, Ordering::Relaxed);
            dma.join().unwrap();
            ids
        });
        // Every new domain has an ID of its own, none the crashed kernel's (SPEC K14).
        for (d, &(stage, id)) in devices.iter().zip(&new_ids) {
            assert_ne!(id, d.old_id, "seed {seed}: {}", d.name);
            assert!(
                new_ids
                    .iter()
                    .filter(|&&(s, i)| s == stage && i == id)
                    .count()
                    == 1,
                "seed {seed}: {new_ids:?}"
            );
        }
        let during = model.with(|m| m.outcomes().len()) - before;
        assert!(during > 0, "seed {seed}: no DMA ran during the attaches");
        let mut translated = 0;
        model.with(|m| {
            for o in m.outcomes().iter().filter(|o| o.epoch == epoch) {
                let Some(d) = devices.iter().find(|d| Some(d.master) == o.master) else {
                    continue;
                };
                let want = d.pa + (o.txn.iova - d.iova);
                assert_eq!(
                    o.result,
                    TxnResult::Translated { pa: want },
                    "seed {seed}: {} {:?}",
                    d.name,
                    o.txn
                );
                translated += 1;
            }
            assert!(
                m.violations().is_empty(),
                "seed {seed}: {:?}",
                m.violations()
            );
        });
        assert!(translated > 0, "seed {seed}");
    }
}

//! The driver core on the model: reset, attach, translate, unmap, detach (SPEC D2, D3, D6, D8).
//!
//! Every test runs on a hostile model (acks that take several accesses, commands consumed
//! only as time advances, caches that power on holding stale STEs and TLB entries) and ends
//! with an empty violation log; DMA masters must see exactly the translations the driver set
//! up, and faults with the right event otherwise.

use smmu::arch::event::{Event, Fault, TranslationFault};
use smmu::evtq::EventReport;
use smmu::strtab::Layout;
use smmu::{Attachment, DomainStage, Error, MasterConfig, SmmuConfig};
use smmu_model::fields::reg;
use smmu_model::{Cause, ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::rig::Rig;
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);

fn profiles() -> [Profile; 3] {
    [Profile::qemu_virt(), Profile::mmu600(), Profile::grace()]
}

fn hostile(profile: Profile, seed: u64) -> ModelConfig {
    ModelConfig {
        ram_size: 32 << 20,
        ..ModelConfig::hostile(profile, seed)
    }
}

fn rig(profile: Profile) -> Rig {
    Rig::new(hostile(profile, 7), SmmuConfig::default()).expect("probe and reset")
}

/// A physical buffer in the model's RAM (allocated, so nothing else uses it).
fn buffer(rig: &Rig, pages: u64) -> u64 {
    rig.model()
        .alloc_pages(pages, 1 << 21)
        .expect("RAM for a DMA buffer")
}

fn abort_cause(r: TxnResult) -> Option<Cause> {
    match r {
        TxnResult::Abort { cause, .. } => Some(cause),
        _ => None,
    }
}

// spec: D1, D2
#[test]
fn full_reset_on_hostile_models_leaves_a_clean_enabled_smmu() {
    for profile in profiles() {
        let name = profile.name;
        let ats = profile.idr[0] & (1 << 10) != 0;
        let rig = rig(profile);
        let cr0 = rig.model().read32(reg::CR0 as usize);
        let want = reg::CR0_SMMUEN
            | reg::CR0_CMDQEN
            | reg::CR0_EVTQEN
            | if ats { reg::CR0_ATSCHK } else { 0 };
        assert_eq!(cr0, want, "{name}: CR0");
        let gbpa = rig.model().read32(reg::GBPA as usize);
        assert_ne!(gbpa & reg::GBPA_ABORT, 0, "{name}: GBPA.ABORT");
        // The model powered on with stale bypass STEs cached for SIDs 0..64 and bogus TLB
        // entries: after CFGI_ALL and TLBI_NSNH_ALL none of them may be used.
        for sid in [0, 3, 63] {
            let r = rig.dma(Transaction::read(sid, 0x1000));
            assert!(r.pa().is_none(), "{name}: SID {sid} reached memory: {r:?}");
        }
        rig.assert_no_violations();
    }
}

// spec: D2, D10
#[test]
fn reset_times_out_with_a_typed_error_when_acks_never_come() {
    let cfg = ModelConfig {
        ack_latency: u32::MAX / 2,
        ..hostile(Profile::qemu_virt(), 1)
    };
    let config = SmmuConfig {
        budget: smmu::poll::PollBudget(1000),
        ..SmmuConfig::default()
    };
    let err = Rig::new(cfg, config).expect_err("CR0ACK never follows");
    assert!(
        matches!(err, Error::Timeout(_)),
        "expected a typed timeout, got {err:?}"
    );
}

/// Maps `pages` 4K pages at `iova` to a fresh buffer; returns the buffer's PA.
fn map_pages<A: smmu_pagetable::TableAllocator>(
    rig: &Rig,
    domain: &smmu::Domain<A>,
    iova: u64,
    pages: u64,
) -> u64 {
    let pa = buffer(rig, pages);
    rig.smmu
        .map(domain, Iova(iova), PhysAddr(pa), pages << 12, RW)
        .expect("map");
    pa
}

// spec: D3, D8
#[test]
fn stage1_domain_translates_exactly_what_was_mapped() {
    for profile in profiles() {
        let name = profile.name;
        let rig = rig(profile);
        // Two StreamIDs under different level-2 tables (on 2-level hardware).
        let gpu = rig
            .smmu
            .add_master(&MasterConfig {
                sids: &[0x11, 0x311],
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .expect("add master");
        let tables = rig.tables();
        let domain = rig
            .smmu
            .new_domain(DomainStage::Stage1, false, tables)
            .expect("domain");
        let iova = 0x4000_0000;
        let pa = map_pages(&rig, &domain, iova, 16);
        rig.smmu.attach(gpu, &domain).expect("attach");
        for sid in [0x11, 0x311] {
            for page in 0..16 {
                let off = page * 0x1000 + 0x18;
                let r = rig.dma(Transaction::read(sid, iova + off));
                assert_eq!(
                    r,
                    TxnResult::Translated { pa: pa + off },
                    "{name}: SID {sid:#x}"
                );
            }
            // One page past the mapping: a translation fault, reported.
            let r = rig.dma(Transaction::write(sid, iova + 16 * 0x1000));
            assert_eq!(abort_cause(r), Some(Cause::Translation), "{name}");
        }
        let mut faults = Vec::new();
        rig.smmu
            .handle_events(&mut |e| faults.push(e))
            .expect("drain events");
        let mut faulted: Vec<u32> = faults
            .iter()
            .filter_map(|e| match e {
                EventReport::Event(Event::Translation(TranslationFault {
                    fault: Fault { stream, .. },
                    ..
                })) => Some(stream.sid),
                _ => None,
            })
            .collect();
        faulted.sort_unstable();
        assert_eq!(faulted, [0x11, 0x311], "{name}: {faults:?}");
        assert_eq!(
            rig.smmu.attachment(gpu).unwrap(),
            Attachment::Paging {
                token: 1,
                stage: DomainStage::Stage1,
                id: domain.id()
            }
        );
        rig.assert_no_violations();
    }
}

// spec: D3, D8
#[test]
fn stage2_identity_blocked_and_detach_on_linear_and_two_level_tables() {
    for layout in [Layout::Linear, Layout::TwoLevel] {
        let rig = Rig::with_layout(
            hostile(Profile::mmu600(), 11),
            SmmuConfig::default(),
            Some(layout),
        )
        .unwrap();
        let nvme = rig
            .smmu
            .add_master(&MasterConfig {
                sids: &[0x20],
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .unwrap();
        let nic = rig
            .smmu
            .add_master(&MasterConfig {
                sids: &[0x40, 0x41, 0x42],
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .unwrap();
        // A new master is blocked: its STEs abort.
        assert_eq!(
            abort_cause(rig.dma(Transaction::read(0x20, 0x1000))),
            Some(Cause::SteAbort)
        );
        let tables = rig.tables();
        let s2 = rig
            .smmu
            .new_domain(DomainStage::Stage2, false, tables)
            .unwrap();
        let ipa = 0x8000_0000;
        let pa = map_pages(&rig, &s2, ipa, 4);
        rig.smmu.attach(nvme, &s2).unwrap();
        assert_eq!(
            rig.dma(Transaction::write(0x20, ipa + 0x3008)),
            TxnResult::Translated { pa: pa + 0x3008 }
        );
        let r = rig.dma(Transaction::read(0x20, ipa + 0x4000));
        assert_eq!(abort_cause(r), Some(Cause::Translation), "{layout:?}");

        rig.smmu.attach_identity(nic).unwrap();
        for sid in [0x40, 0x41, 0x42] {
            assert_eq!(
                rig.dma(Transaction::read(sid, 0x1234_5678)),
                TxnResult::Bypass { pa: 0x1234_5678 }
            );
        }
        rig.smmu.detach(nic).unwrap();
        rig.smmu.detach(nvme).unwrap();
        for sid in [0x20, 0x40, 0x41, 0x42] {
            let r = rig.dma(Transaction::read(sid, ipa));
            assert_eq!(
                abort_cause(r),
                Some(Cause::SteAbort),
                "{layout:?} SID {sid:#x}"
            );
        }
        // Free the domain: refused while attached, accepted after.
        rig.smmu.attach(nvme, &s2).unwrap();
        let (err, s2) = rig.smmu.free_domain(s2).expect_err("still attached");
        assert_eq!(err, Error::DomainBusy);
        rig.smmu.detach(nvme).unwrap();
        let vmid = s2.id();
        rig.smmu.free_domain(s2).unwrap();
        assert!(!rig.smmu.vmids().is_used(vmid));
        rig.assert_no_violations();
    }
}

// spec: D8
#[test]
fn masters_are_checked_when_added() {
    let rig = rig(Profile::qemu_virt());
    let cfg = |sids: &'static [u32]| MasterConfig {
        sids,
        protected: false,
        ats: false,
        stall: false,
        ssid_bits: 0,
    };
    rig.smmu.add_master(&cfg(&[1, 2])).unwrap();
    assert_eq!(
        rig.smmu.add_master(&cfg(&[2])),
        Err(Error::StreamIdInUse(2))
    );
    assert_eq!(
        rig.smmu.add_master(&cfg(&[3, 3])),
        Err(Error::StreamIdInUse(3))
    );
    assert_eq!(
        rig.smmu.add_master(&cfg(&[1 << 16])),
        Err(Error::StreamIdOutOfRange(1 << 16))
    );
    assert_eq!(rig.smmu.add_master(&cfg(&[])), Err(Error::NoSuchMaster));
    // qemu-virt has no ATS.
    assert_eq!(
        rig.smmu.add_master(&MasterConfig {
            ats: true,
            ..cfg(&[9])
        }),
        Err(Error::Unsupported("ATS"))
    );
    rig.assert_no_violations();
}

// spec: D6
#[test]
fn unmap_invalidates_so_dma_faults_at_once() {
    for profile in profiles() {
        let name = profile.name;
        let rig = rig(profile);
        let dev = rig
            .smmu
            .add_master(&MasterConfig {
                sids: &[7],
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
        let iova = 0x20_0000; // 2M-aligned: unmapping all 512 pages frees the L3 table
        let pa = buffer(&rig, 512);
        for p in 0..512 {
            // Page by page, so that the table holds 4K entries rather than one 2M block.
            let off = p << 12;
            rig.smmu
                .map(&d, Iova(iova + off), PhysAddr(pa + off), 0x1000, RW)
                .unwrap();
        }
        rig.smmu.attach(dev, &d).unwrap();
        // Fill the model's TLB with every page.
        for p in 0..512 {
            assert_eq!(
                rig.dma(Transaction::read(7, iova + p * 0x1000)),
                TxnResult::Translated {
                    pa: pa + p * 0x1000
                }
            );
        }
        assert_eq!(
            rig.smmu.unmap(&d, Iova(iova + 0x1000), 0x1000).unwrap(),
            0x1000
        );
        let r = rig.dma(Transaction::read(7, iova + 0x1000));
        assert_eq!(abort_cause(r), Some(Cause::Translation), "{name}: one page");
        assert_eq!(
            rig.dma(Transaction::read(7, iova)),
            TxnResult::Translated { pa },
            "{name}: its neighbour stays"
        );
        let pooled = d.table().pooled_tables();
        assert_eq!(
            rig.smmu.unmap(&d, Iova(iova), 512 << 12).unwrap(),
            511 << 12
        );
        // The emptied table is retired after the invalidation: into the page table's own
        // pool (later maps take from it; the allocator gets it back on reclaim or drop).
        assert!(
            d.table().pooled_tables() > pooled,
            "{name}: the emptied table was retired"
        );
        for p in [0, 100, 511] {
            let r = rig.dma(Transaction::read(7, iova + p * 0x1000));
            assert_eq!(abort_cause(r), Some(Cause::Translation), "{name}: page {p}");
        }
        rig.assert_no_violations();
    }
}

// spec: D3, D8
#[test]
fn a_master_with_many_substreams_gets_a_two_level_cd_table() {
    let rig = rig(Profile::mmu600()); // IDR0.CD2L, SSIDSIZE 20
    let dev = rig
        .smmu
        .add_master(&MasterConfig {
            sids: &[0x55],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 12, // 4096 CDs: more than one 1024-CD leaf
        })
        .unwrap();
    let tables = rig.tables();
    let d = rig
        .smmu
        .new_domain(DomainStage::Stage1, false, tables)
        .unwrap();
    let pa = map_pages(&rig, &d, 0x7000_0000, 2);
    rig.smmu.attach(dev, &d).unwrap();
    // Traffic without a SubstreamID uses CD 0 (S1DSS = substream 0).
    assert_eq!(
        rig.dma(Transaction::read(0x55, 0x7000_1010)),
        TxnResult::Translated { pa: pa + 0x1010 }
    );
    // SubstreamID 3000 lies in a leaf that was never allocated: its L1CD is invalid.
    let r = rig.dma(Transaction::read(0x55, 0x7000_1010).with_ssid(3000));
    assert!(r.pa().is_none(), "{r:?}");
    // Beyond S1CDMax: C_BAD_SUBSTREAMID.
    let r = rig.dma(Transaction::read(0x55, 0x7000_1010).with_ssid(1 << 12));
    assert_eq!(abort_cause(r), Some(Cause::BadSubstreamId));
    rig.assert_no_violations();
}

// spec: D6, D8
#[test]
fn unmap_invalidates_the_atc_of_ats_masters_after_the_tlb() {
    let rig = rig(Profile::mmu600()); // IDR0.ATS
    let nic = rig
        .smmu
        .add_master(&MasterConfig {
            sids: &[0x60, 0x61],
            protected: false,
            ats: true,
            stall: false,
            ssid_bits: 0,
        })
        .unwrap();
    let tables = rig.tables();
    let d = rig
        .smmu
        .new_domain(DomainStage::Stage1, false, tables)
        .unwrap();
    map_pages(&rig, &d, 0x40_0000, 4);
    rig.smmu.attach(nic, &d).unwrap();
    let before = rig.model().with(|m| m.signals().atc_inv.len());
    rig.smmu.unmap(&d, Iova(0x40_1000), 0x2000).unwrap();
    let atc = rig.model().with(|m| m.signals().atc_inv[before..].to_vec());
    let mut sids: Vec<u32> = atc.iter().map(|&(sid, ..)| sid).collect();
    sids.sort_unstable();
    assert_eq!(sids, [0x60, 0x61], "one ATC_INV per StreamID: {atc:x?}");
    // Detaching an ATS master invalidates its whole ATC.
    let before = rig.model().with(|m| m.signals().atc_inv.len());
    rig.smmu.detach(nic).unwrap();
    let atc = rig.model().with(|m| m.signals().atc_inv[before..].to_vec());
    assert_eq!(atc.len(), 2, "{atc:x?}");
    rig.assert_no_violations();
}

//! Protected DMA (SPEC D9): a confidential-computing GPU reaches only the shared
//! (bounce-buffer) windows, through a paging domain, never bypass or ATS.

use smmu::policy::Refusal;
use smmu::{DomainStage, Error, MasterConfig, PhysRange, SmmuConfig, StreamTable};
use smmu_model::{Cause, ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::platform::ModelPlatform;
use smmu_model_platform::rig::Rig;
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);
const GPU_SID: u32 = 0x100;

/// A Grace-like SMMU whose platform shares one 1 MiB window at `window` (inside RAM).
fn rig() -> (Rig, PhysRange) {
    let cfg = ModelConfig {
        ram_size: 32 << 20,
        ..ModelConfig::hostile(Profile::grace(), 21)
    };
    let probe = ModelPlatform::new(cfg.clone()).unwrap();
    let window_pa = probe.model().alloc_pages(256, 1 << 20).unwrap();
    let window = PhysRange {
        start: PhysAddr(window_pa),
        size: 1 << 20,
    };
    let platform = probe.with_shared_windows(vec![window]);
    (
        Rig::on(platform, SmmuConfig::default(), None).unwrap(),
        window,
    )
}

fn gpu(protected: bool, ats: bool) -> MasterConfig<'static> {
    MasterConfig {
        sids: &[GPU_SID],
        protected,
        ats,
        stall: false,
        ssid_bits: 0,
    }
}

/// The STE words of the GPU as the model's memory holds them.
fn ste_words(rig: &Rig) -> Vec<u64> {
    rig.smmu.with_stream_table(|t| {
        let loc = t.locate(GPU_SID).unwrap();
        (0..8)
            .map(|i| loc.buf.read(rig.smmu.hal(), loc.first_word + i).unwrap())
            .collect()
    })
}

// spec: D9
#[test]
fn a_protected_master_can_never_bypass_or_use_ats() {
    let (rig, _) = rig();
    assert_eq!(
        rig.smmu.add_master(&gpu(true, true)),
        Err(Error::Protected(Refusal::Ats))
    );
    let g = rig.smmu.add_master(&gpu(true, false)).unwrap();
    let before = ste_words(&rig);
    let commands = rig.model().with(|m| m.signals().commands);
    assert_eq!(
        rig.smmu.attach_identity(g),
        Err(Error::Protected(Refusal::Identity))
    );
    assert_eq!(
        rig.smmu.install_rmr_bypass(g),
        Err(Error::Protected(Refusal::Bypass))
    );
    // An unprotected paging domain could map anything: refused too.
    let tables = rig.tables();
    let open = rig
        .smmu
        .new_domain(DomainStage::Stage1, false, tables)
        .unwrap();
    assert_eq!(
        rig.smmu.attach(g, &open),
        Err(Error::Protected(Refusal::UnprotectedDomain))
    );
    // Nothing reached the SMMU: the STE and the command stream are as they were.
    assert_eq!(ste_words(&rig), before);
    assert_eq!(rig.model().with(|m| m.signals().commands), commands);
    assert_eq!(
        rig.dma(Transaction::read(GPU_SID, 0x1000)).pa(),
        None,
        "still blocked"
    );
    rig.assert_no_violations();
}

// spec: D9
#[test]
fn a_protected_domain_maps_only_inside_the_shared_windows() {
    let (rig, window) = rig();
    let g = rig.smmu.add_master(&gpu(true, false)).unwrap();
    let tables = rig.tables();
    let d = rig
        .smmu
        .new_domain(DomainStage::Stage1, true, tables)
        .unwrap();
    let private = rig.model().alloc_pages(16, 1 << 16).unwrap();
    let iova = 0x1_0000_0000;
    for (pa, size) in [
        (private, 0x1000),                               // private memory
        (window.start.0 + window.size - 0x1000, 0x2000), // runs out of the window
        (window.start.0 - 0x1000, 0x2000),               // starts before it
    ] {
        assert_eq!(
            rig.smmu.map(&d, Iova(iova), PhysAddr(pa), size, RW),
            Err(Error::Protected(Refusal::OutsideSharedWindows {
                pa: PhysAddr(pa),
                size
            }))
        );
        assert_eq!(
            d.table().iova_to_phys(Iova(iova)),
            None,
            "nothing was mapped"
        );
    }
    // The bounce buffer itself maps, and the GPU reaches exactly it.
    rig.smmu
        .map(&d, Iova(iova), window.start, 0x10_0000, RW)
        .unwrap();
    rig.smmu.attach(g, &d).unwrap();
    assert_eq!(
        rig.dma(Transaction::write(GPU_SID, iova + 0x5_4320)),
        TxnResult::Translated {
            pa: window.start.0 + 0x5_4320
        }
    );
    // DMA outside its mappings faults with F_TRANSLATION recorded.
    let r = rig.dma(Transaction::read(GPU_SID, iova + 0x10_0000));
    let TxnResult::Abort { cause, event } = r else {
        panic!("reached memory: {r:?}")
    };
    assert_eq!(cause, Cause::Translation);
    let event = event.expect("an event record");
    assert_eq!((event.id(), event.sid()), (0x10, GPU_SID));
    // Detaching leaves the GPU aborting.
    rig.smmu.detach(g).unwrap();
    assert_eq!(
        rig.dma(Transaction::read(GPU_SID, iova)).pa(),
        None,
        "blocked after detach"
    );
    rig.assert_no_violations();
}

//! `Smmu::new_in` on the model: the driver built in caller memory (here a
//! `Box<MaybeUninit<_>>`, in the firmware a `static`) is the same driver — reset, attach,
//! translate, fault — with an empty violation log (issue 11: `Smmu` overflowed a 64 KiB
//! firmware stack).

use core::mem::MaybeUninit;

use smmu::arch::event::Event;
use smmu::evtq::EventReport;
use smmu::strtab::Layout;
use smmu::{DomainStage, MasterConfig, OwnedStreamTable, ResetPlan, Smmu, SmmuConfig};
use smmu_model::{ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::platform::ModelPlatform;
use smmu_model_platform::rig::ModelSmmu;
use smmu_model_platform::tables::ModelTables;
use smmu_pagetable::{Iova, PhysAddr, Prot};

// spec: D2, D8
#[test]
fn a_driver_built_in_place_resets_and_translates_on_a_hostile_model() {
    for profile in [Profile::qemu_virt(), Profile::mmu600(), Profile::grace()] {
        let name = profile.name;
        let platform = ModelPlatform::new(ModelConfig {
            ram_size: 32 << 20,
            ..ModelConfig::hostile(profile, 5)
        })
        .expect("model");
        let (regs, hal) = (platform.regs(), platform.hal());
        let features = smmu::probe::probe(&regs).expect("probe");
        let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
        let abort = smmu::writer::make::ste_image(&smmu::writer::make::abort_ste());
        let strtab = OwnedStreamTable::new(&hal, layout, log2, features.coherent, &abort)
            .expect("stream table");
        let mut slot: Box<MaybeUninit<ModelSmmu>> = Box::new_uninit();
        let smmu = Smmu::new_in(
            &mut slot,
            regs,
            hal.clone(),
            features,
            strtab,
            SmmuConfig::default(),
        )
        .expect("new_in");
        smmu.reset(&ResetPlan::FULL).expect("full reset");

        let dev = smmu
            .add_master(&MasterConfig {
                sids: &[0x21],
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .expect("master");
        let domain = smmu
            .new_domain(DomainStage::Stage1, false, ModelTables(hal.clone()))
            .expect("domain");
        let pa = platform.model().alloc_pages(1, 1 << 12).expect("page");
        let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
        smmu.map(&domain, Iova(0x7000), PhysAddr(pa), 0x1000, rw)
            .expect("map");
        smmu.attach(dev, &domain).expect("attach");
        let hit = platform
            .model()
            .with(|m| m.dma(Transaction::read(0x21, 0x7010)));
        assert_eq!(hit, TxnResult::Translated { pa: pa + 0x10 }, "{name}");
        let miss = platform
            .model()
            .with(|m| m.dma(Transaction::write(0x21, 0x9000)));
        assert!(miss.pa().is_none(), "{name}: {miss:?}");
        let mut faults = Vec::new();
        smmu.handle_events(&mut |e| faults.push(e)).expect("drain");
        assert!(
            faults.iter().any(|e| matches!(
                e,
                EventReport::Event(Event::Translation(t)) if t.fault.input_addr == 0x9000
            )),
            "{name}: {faults:?}"
        );
        let v = platform.model().with(|m| m.violations().to_vec());
        assert!(v.is_empty(), "{name}: {v:#?}");
    }
}

//! A non-coherent SMMU (IDR0.COHACC = 0, SPEC K17) whose walks read memory as the point of
//! coherency holds it (`ModelConfig::cpu_cache`). The driver cleans every structure and table
//! it writes, so its master translates; the same driver on a HAL that drops the clean of one
//! structure (an L1 stream-table descriptor, the STE, the CD, the page-table entries) leaves the
//! SMMU fetching the stale entry.

use smmu::host::HalTables;
use smmu::{DomainStage, MasterConfig, PhysAddr, SmmuConfig, StreamTable};
use smmu_model::fields::reg;
use smmu_model::{Cause, ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::platform::{ModelHal, ModelPlatform};
use smmu_model_platform::rig::Rig;
use smmu_pagetable::{Iova, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);
const SID: u32 = 0x120;
const IOVA: u64 = 0x4000_0000;

/// Page tables for a non-coherent walker: every descriptor write is cleaned through the HAL.
type NonCoherentTables = HalTables<ModelHal, false>;

/// Which clean the HAL drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forget {
    Nothing,
    L1Descriptor,
    Ste,
    Cd,
    Pte,
}

/// The driver on a non-coherent Grace-like SMMU: a master at `SID` attached to a stage-1
/// domain mapping `IOVA` to a page. Returns its DMA and whether the model's log was empty.
fn scenario(forget: Forget) -> (TxnResult, u64, bool) {
    let cfg = ModelConfig {
        ram_size: 32 << 20,
        cpu_cache: true,
        ..ModelConfig::hostile(Profile::grace().with(0, reg::IDR0_COHACC, 0), 41)
    };
    let platform = ModelPlatform::new(cfg)
        .unwrap()
        .with_cache_maintenance(true);
    let hal = platform.hal();
    let rig = Rig::on(platform, SmmuConfig::default(), None).unwrap();
    assert!(rig.model().with(|m| m.noncoherent()));
    if forget == Forget::L1Descriptor {
        let (base, cfg) = rig.model().with(|m| {
            (
                m.read64(reg::STRTAB_BASE) & 0x00FF_FFFF_FFFF_FFC0,
                m.read32(reg::STRTAB_BASE_CFG),
            )
        });
        assert_eq!(cfg >> 16 & 3, 1, "a 2-level stream table");
        let l1 = base + 8 * u64::from(SID >> (cfg >> 6 & 0x1F));
        hal.drop_cleans(l1, l1 + 8);
    }
    let g = rig
        .smmu
        .add_master(&MasterConfig {
            sids: &[SID],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })
        .unwrap();
    if forget == Forget::Ste {
        let pa = rig.smmu.with_stream_table(|t| {
            let loc = t.locate(SID).unwrap();
            loc.buf.pa_of(loc.first_word).0
        });
        hal.drop_cleans(pa, pa + 64);
    }
    if forget == Forget::Pte {
        hal.drop_cleans(hal.next_dma_pa(), u64::MAX);
    }
    let d = rig
        .smmu
        .new_domain(
            DomainStage::Stage1,
            false,
            NonCoherentTables::new(hal.clone()),
        )
        .unwrap();
    let page = rig.model().alloc_pages(1, 4096).unwrap();
    rig.smmu
        .map(&d, Iova(IOVA), PhysAddr(page), 0x1000, RW)
        .unwrap();
    if forget == Forget::Pte {
        hal.keep_cleans();
    }
    if forget == Forget::Cd {
        hal.drop_cleans(hal.next_dma_pa(), u64::MAX);
    }
    rig.smmu.attach(g, &d).unwrap();
    let r = rig.dma(Transaction::write(SID, IOVA + 0x18));
    let clean = rig.violations().is_empty();
    if forget != Forget::Nothing {
        assert!(
            hal.stats().dropped_cleans > 0,
            "{forget:?}: a clean was dropped"
        );
    }
    std::mem::forget(d);
    (r, page, clean)
}

// spec: K17
#[test]
fn the_driver_cleans_every_structure_a_non_coherent_smmu_walks() {
    let (r, page, clean) = scenario(Forget::Nothing);
    assert_eq!(r, TxnResult::Translated { pa: page + 0x18 });
    assert!(clean, "the model's violation log is empty");
}

// spec: K17 (negative controls: one forgotten clean each)
#[test]
fn a_forgotten_clean_leaves_the_smmu_on_the_stale_entry() {
    for (forget, cause) in [
        // The L1 descriptor still says "no L2 table": the StreamID is out of range.
        (Forget::L1Descriptor, Cause::BadStreamId),
        // The STE still holds the abort configuration the stream table was filled with.
        (Forget::Ste, Cause::SteAbort),
        // The CD still reads as zero (V = 0).
        (Forget::Cd, Cause::BadCd),
        // The page-table entries still read as invalid.
        (Forget::Pte, Cause::Translation),
    ] {
        let (r, _, _) = scenario(forget);
        match r {
            TxnResult::Abort { cause: got, .. } => assert_eq!(got, cause, "{forget:?}"),
            other => panic!("{forget:?}: the DMA went through: {other:?}"),
        }
    }
}

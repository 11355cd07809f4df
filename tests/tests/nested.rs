//! Nested translation on the model (SPEC D13; IHI 0070 G.b §3.3.2–3.3.4, §4.4.3.1): a guest's
//! stage 1 over the host's nesting parent, on QEMU 10's nested-capable SMMU profile with a TLB
//! that keeps combined stage-1+2 entries (as QEMU does).
//!
//! The guest owns IOVA → IPA (its CD and its page table, both in IPA space); the host owns
//! IPA → PA (the nesting parent). Both unmaps must take the combined translation away: the
//! guest's through [`smmu::Smmu::guest_invalidate`] (the parent's VMID forced on its
//! commands), the host's through `Smmu::unmap` on the parent (`TLBI_S2_IPA` alone may leave
//! combined entries: `TLBI_NH_ALL` of the VMID goes with it). The broken variants issue the
//! command a driver that forgot either would issue, and the DMA still reaches the old page.

use smmu::arch::cd::TableControls;
use smmu::arch::cmd::{Command, TlbiAddr, TlbiRange};
use smmu::arch::ste::fields as stef;
use smmu::arch::{AddressSize, Cacheability, Granule, Shareability};
use smmu::nested::GuestCommandError;
use smmu::writer::make;
use smmu::{Attachment, DomainOptions, Error, MasterConfig, SmmuConfig};
use smmu_model::{ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::rig::Rig;
use smmu_model_platform::tables::ModelTables;
use smmu_pagetable::{
    Config, Gather, Granule as PtGranule, Iova, PageTable, PhysAddr, Prot, Stage,
};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);
const SID: u32 = 3;
const ASID: u16 = 5;
/// The guest's IOVA of its DMA buffer.
const IOVA: u64 = 0x4000_0000;
/// The buffer's IPA (guest "physical"), which the host maps to a real page.
const IPA: u64 = 0x2_0000_0000;

struct Setup {
    rig: Rig,
    /// The real page behind the guest's buffer.
    pa: u64,
    /// The guest's page table (IOVA → IPA; its own tables live at IPA = PA).
    guest: PageTable<ModelTables>,
    /// The guest's STE words (its stage-1 half).
    ste: [u64; 8],
}

/// The host's parent maps the guest's structures at IPA = PA and its buffer at `IPA`; the
/// guest's table maps `IOVA` → `IPA`, its CD 0 (ASID 5) points at that table.
fn setup(rig: Rig, parent: &smmu::Domain<ModelTables>) -> Setup {
    let model = rig.model().clone();
    let pa = model.alloc_pages(1, 1 << 12).unwrap();
    rig.smmu
        .map(parent, Iova(IPA), PhysAddr(pa), 1 << 12, RW)
        .unwrap();
    // The guest's stage 1 (its tables are allocated from the model at IPA = PA).
    let guest = PageTable::new(
        Config {
            stage: Stage::Stage1,
            granule: PtGranule::Size4K,
            ias: 48,
            oas: 48,
        },
        rig.tables(),
    )
    .unwrap();
    guest.map(Iova(IOVA), PhysAddr(IPA), 1 << 12, RW).unwrap();
    // The guest's CD table: one CD in a page of its own.
    let cd_page = model.alloc_pages(1, 1 << 12).unwrap();
    let c = guest.stage1_config().unwrap();
    let cd = make::stage1_cd(
        ASID,
        TableControls {
            tsz: c.t0sz,
            ir: Cacheability::WriteBackAllocate,
            or: Cacheability::WriteBackAllocate,
            sh: Shareability::Inner,
            epd: false,
            ttb: c.ttb.0,
        },
        Granule::Size4K,
        AddressSize::Bits48,
        c.mair,
    );
    for (i, w) in make::cd_image(&cd).iter().enumerate() {
        model.write_u64(cd_page + 8 * i as u64, *w).unwrap();
    }
    // Every guest structure (CD page, table pages) at IPA = PA in the parent.
    let mut pages = vec![cd_page];
    guest.walk(|e| {
        if let smmu_pagetable::WalkEntry::Table { table, .. } = e {
            pages.push(table.0);
        }
    });
    for p in pages {
        rig.smmu
            .map(parent, Iova(p), PhysAddr(p), 1 << 12, RW)
            .unwrap();
    }
    // The guest's STE: V, Config = stage 1, its CD table and how to fetch it.
    let mut ste = [0u64; 8];
    stef::V.set(&mut ste, 1);
    stef::CONFIG.set(&mut ste, 0b101);
    stef::S1_CONTEXT_PTR.set(&mut ste, cd_page >> 6);
    stef::S1CIR.set(&mut ste, 1);
    stef::S1COR.set(&mut ste, 1);
    stef::S1CSH.set(&mut ste, 3);
    Setup {
        rig,
        pa,
        guest,
        ste,
    }
}

fn rig() -> Rig {
    let cfg = ModelConfig {
        ram_size: 32 << 20,
        ..ModelConfig::hostile(Profile::qemu_virt(), 11)
    };
    assert!(
        cfg.cache.combined_tlb,
        "the strict TLB keeps combined entries"
    );
    Rig::new(cfg, SmmuConfig::default()).expect("probe and reset")
}

/// Runs `f` on a plain master (StreamID 3) attached to the guest's nested domain over a
/// nesting parent, with the setup above.
fn with_nested(
    f: impl FnOnce(
        &Setup,
        &smmu::Domain<ModelTables>,
        &smmu::NestedDomain<'_, ModelTables>,
        smmu::MasterId,
    ),
) {
    let rig = rig();
    let parent = rig
        .smmu
        .new_domain_with(DomainOptions::nesting_parent(), rig.tables())
        .unwrap();
    let s = setup(rig, &parent);
    let nested = s.rig.smmu.new_nested_domain(&parent, &s.ste).unwrap();
    let m = s.rig.smmu.add_master(&MasterConfig::new(&[SID])).unwrap();
    s.rig.smmu.attach_nested(m, &nested).unwrap();
    f(&s, &parent, &nested, m);
}

fn dma(rig: &Rig) -> TxnResult {
    rig.dma(Transaction::read(SID, IOVA + 0x10))
}

fn nh_va(vmid: u16) -> [u64; 2] {
    Command::TlbiNhVa {
        vmid,
        asid: ASID,
        va: TlbiAddr {
            addr: IOVA,
            leaf: true,
            range: TlbiRange::SINGLE,
        },
    }
    .encode()
    .to_words()
}

/// The guest unmaps its page and asks for the invalidation with `invalidate`.
fn guest_unmap(s: &Setup, invalidate: impl FnOnce(&Setup)) {
    let mut gather = Gather::new();
    s.guest.unmap(Iova(IOVA), 1 << 12, &mut gather).unwrap();
    invalidate(s);
}

// spec: D13
#[test]
fn dma_goes_through_the_guests_stage1_and_the_hosts_stage2() {
    let rig = rig();
    let parent = rig
        .smmu
        .new_domain_with(DomainOptions::nesting_parent(), rig.tables())
        .unwrap();
    let s = setup(rig, &parent);
    let nested = s.rig.smmu.new_nested_domain(&parent, &s.ste).unwrap();
    let m = s.rig.smmu.add_master(&MasterConfig::new(&[SID])).unwrap();
    s.rig.smmu.attach_nested(m, &nested).unwrap();
    assert!(matches!(
        s.rig.smmu.attachment(m).unwrap(),
        Attachment::Nested { vmid, .. } if vmid == parent.id()
    ));
    assert_eq!(dma(&s.rig), TxnResult::Translated { pa: s.pa + 0x10 });
    // The parent cannot go while a master's STE uses it, even through a nested domain.
    s.rig.smmu.attach_blocked(m).unwrap();
    s.rig.smmu.free_nested_domain(nested).unwrap();
    s.rig.smmu.free_domain(parent).map_err(|(e, _)| e).unwrap();
    s.rig.assert_no_violations();
}

// spec: D13
#[test]
fn a_guest_stage1_unmap_is_invalidated_with_the_parents_vmid() {
    with_nested(|s, _parent, nested, _m| {
        assert_eq!(dma(&s.rig), TxnResult::Translated { pa: s.pa + 0x10 });
        // The guest writes VMID 0 (it has none); the host issues the parent's.
        guest_unmap(s, |s| {
            s.rig.smmu.guest_invalidate(nested, &[nh_va(0)]).unwrap();
        });
        assert!(dma(&s.rig).pa().is_none(), "{:?}", dma(&s.rig));
        s.rig.assert_no_violations();
    });
}

/// The broken variant: the stage-1 unmap's TLBI sent with VMID 0, as a driver that treats
/// the nested domain like a stage-1 one would: the combined entry carries the parent's VMID
/// and survives, and the DMA still reaches the unmapped page.
// spec: D13
#[test]
fn a_stage1_invalidation_with_vmid_0_leaves_the_nested_translation_live() {
    with_nested(|s, _parent, _nested, _m| {
        assert_eq!(dma(&s.rig), TxnResult::Translated { pa: s.pa + 0x10 });
        guest_unmap(s, |s| {
            let raw = Command::TlbiNhVa {
                vmid: 0,
                asid: ASID,
                va: TlbiAddr {
                    addr: IOVA,
                    leaf: true,
                    range: TlbiRange::SINGLE,
                },
            };
            s.rig
                .smmu
                .cmdq()
                .issue(s.rig.smmu.hal(), s.rig.smmu.regs(), &[raw], true)
                .unwrap();
        });
        assert_eq!(
            dma(&s.rig),
            TxnResult::Translated { pa: s.pa + 0x10 },
            "the stale combined entry is still used"
        );
    });
}

// spec: D13
#[test]
fn a_nesting_parent_unmap_also_removes_the_combined_entries() {
    with_nested(|s, parent, _nested, _m| {
        assert_eq!(dma(&s.rig), TxnResult::Translated { pa: s.pa + 0x10 });
        let before = s.rig.smmu.cmdq().stats();
        s.rig.smmu.unmap(parent, Iova(IPA), 1 << 12).unwrap();
        let after = s.rig.smmu.cmdq().stats();
        assert!(dma(&s.rig).pa().is_none(), "{:?}", dma(&s.rig));
        // TLBI_S2_IPA, TLBI_NH_ALL and one CMD_SYNC (Linux: a second CMD_SYNC after NH_ALL).
        assert_eq!(
            after.commands - before.commands,
            3,
            "{before:?} → {after:?}"
        );
        s.rig.assert_no_violations();
    });
}

/// The broken variant: the parent's unmap invalidated with `TLBI_S2_IPA` alone, which
/// §4.4.3.1 allows to leave the combined stage-1+2 entry: the DMA still reaches the page the
/// host unmapped.
// spec: D13
#[test]
fn a_parent_unmap_without_nh_all_leaves_the_nested_translation_live() {
    with_nested(|s, parent, _nested, _m| {
        assert_eq!(dma(&s.rig), TxnResult::Translated { pa: s.pa + 0x10 });
        let mut gather = Gather::new();
        parent
            .table()
            .unmap(Iova(IPA), 1 << 12, &mut gather)
            .unwrap();
        let s2_ipa = Command::TlbiS2Ipa {
            vmid: parent.id(),
            ipa: TlbiAddr {
                addr: IPA,
                leaf: true,
                range: TlbiRange::SINGLE,
            },
        };
        s.rig
            .smmu
            .cmdq()
            .issue(s.rig.smmu.hal(), s.rig.smmu.regs(), &[s2_ipa], true)
            .unwrap();
        assert_eq!(
            dma(&s.rig),
            TxnResult::Translated { pa: s.pa + 0x10 },
            "the stale combined entry is still used"
        );
    });
}

// spec: D13
#[test]
fn a_guest_can_name_neither_another_vmid_nor_another_stream_id() {
    with_nested(|s, parent, nested, _m| {
        let before = s.rig.smmu.cmdq().stats();
        assert_eq!(
            s.rig.smmu.guest_invalidate(nested, &[nh_va(0), nh_va(7)]),
            Err(Error::GuestCommand(GuestCommandError::ForeignVmid(7)))
        );
        let other = Command::CfgiCdAll { sid: SID + 1 }.encode().to_words();
        assert_eq!(
            s.rig.smmu.guest_invalidate(nested, &[other]),
            Err(Error::GuestCommand(GuestCommandError::ForeignStreamId(
                SID + 1
            )))
        );
        assert_eq!(
            s.rig.smmu.cmdq().stats().commands,
            before.commands,
            "a refused batch issues nothing"
        );
        // A stage-2 STE from the guest is refused.
        let mut s2 = s.ste;
        stef::CONFIG.set(&mut s2, 0b110);
        assert!(matches!(
            s.rig.smmu.new_nested_domain(parent, &s2),
            Err(Error::Nested(_))
        ));
    });
}

/// A protected master attaches only to a nested domain on a protected parent (SPEC D9, D13).
// spec: D9, D13
#[test]
fn a_protected_master_needs_a_protected_parent() {
    let rig = rig();
    let parent = rig
        .smmu
        .new_domain_with(DomainOptions::nesting_parent(), rig.tables())
        .unwrap();
    let s = setup(rig, &parent);
    let nested = s.rig.smmu.new_nested_domain(&parent, &s.ste).unwrap();
    assert!(!nested.is_protected());
    let gpu = s
        .rig
        .smmu
        .add_master(&MasterConfig::new(&[SID]).protected())
        .unwrap();
    assert!(matches!(
        s.rig.smmu.attach_nested(gpu, &nested),
        Err(Error::Protected(_))
    ));
    assert_eq!(s.rig.smmu.attachment(gpu).unwrap(), Attachment::Initial);
}

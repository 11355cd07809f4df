//! Tests of the adoption validator: one bad table per rule of K2, K3 and K14 (each with its own
//! refusal code), positive tables with their exact reports, the K1/K13 decision, the bounds of
//! K15, and the fuzz entry point as a property test (B1, B2).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use proptest::prelude::*;
use smmu::arch::cd::{fields as cdf, L1CdConfig, TableControls};
use smmu::arch::idr::IdRegs;
use smmu::arch::l1std::L1StdConfig;
use smmu::arch::regs::{offset, IDR0, IDR1, IDR5, STRTAB_BASE_CFG};
use smmu::arch::ste::{self, S1Dss, S1Fmt, Stage1Ste, Stage2Ste, SteConfig, Translation};
use smmu::arch::{AddressSize, Cacheability, DecodeError, Granule, Shareability};
use smmu::writer::make;
use smmu::RegisterAccess;

use crate::*;

const CASES: u32 = if cfg!(miri) { 3 } else { 384 };

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// Sparse old memory from the crate's one image builder, every read recorded.
type Mem = crate::image::Image;

const ST: u64 = 0x8000_0000;
const L2A: u64 = 0x8010_0000;
const L2B: u64 = 0x8010_4000;
const CDT: u64 = 0x8100_0000;
const LEAF0: u64 = 0x8200_0000;
const LEAF1: u64 = 0x8201_0000;

/// IDR0 of a Grace-like SMMU: both stages, AArch64 tables, coherent, Hyp, 16-bit ASIDs and
/// VMIDs, 2-level CD and stream tables.
fn idr0_full() -> u32 {
    (IDR0::S1P::SET
        + IDR0::S2P::SET
        + IDR0::TTF.val(0b10)
        + IDR0::COHACC::SET
        + IDR0::HYP::SET
        + IDR0::ASID16::SET
        + IDR0::VMID16::SET
        + IDR0::CD2L::SET
        + IDR0::ST_LVL.val(1))
    .value
}

fn idr1(sid_bits: u32, ssid_bits: u32) -> u32 {
    (IDR1::SIDSIZE.val(sid_bits) + IDR1::SSIDSIZE.val(ssid_bits)).value
}

/// `IDR5.OAS` encoding for a size in bits, with the three granules.
fn idr5(oas_bits: u32) -> u32 {
    (IDR5::OAS.val(AddressSize::from_bits(oas_bits).unwrap().encode() as u32)
        + IDR5::GRAN4K::SET
        + IDR5::GRAN16K::SET
        + IDR5::GRAN64K::SET)
        .value
}

fn strtab_cfg(fmt: u32, split: u32, log2size: u32) -> u32 {
    (STRTAB_BASE_CFG::FMT.val(fmt)
        + STRTAB_BASE_CFG::SPLIT.val(split)
        + STRTAB_BASE_CFG::LOG2SIZE.val(log2size))
    .value
}

fn snap_with(idr0: u32, idr1: u32, oas_bits: u32, cfg: u32, base: u64) -> RegisterSnapshot {
    RegisterSnapshot {
        ids: IdRegs {
            idr: [idr0, idr1, 0, 0, 0, idr5(oas_bits)],
            iidr: 0,
            aidr: 0,
        },
        cr0: 0b1001, // SMMUEN, CMDQEN
        strtab_base: base,
        strtab_base_cfg: cfg,
        ..RegisterSnapshot::default()
    }
}

fn linear(log2size: u32) -> RegisterSnapshot {
    snap_with(
        idr0_full(),
        idr1(16, 20),
        48,
        strtab_cfg(0, 0, log2size),
        ST,
    )
}

fn two_level(log2size: u32) -> RegisterSnapshot {
    snap_with(
        idr0_full(),
        idr1(24, 20),
        48,
        strtab_cfg(1, 8, log2size),
        ST,
    )
}

/// Clears (or sets) one IDR0 field of a snapshot.
fn with_idr0(mut s: RegisterSnapshot, idr0: u32) -> RegisterSnapshot {
    s.ids.idr[0] = idr0;
    s
}

const PLATFORM: AdoptPlatform = AdoptPlatform {
    crash_kernel: true,
    coherent: true,
    cache_maintenance: false,
    expect_e2h: None,
};

fn stage1(ptr: u64, fmt: S1Fmt, cd_max: u8) -> Stage1Ste {
    Stage1Ste {
        context_ptr: ptr,
        fmt,
        cd_max,
        dss: S1Dss::Substream0,
        cir: Cacheability::WriteBackAllocate,
        cor: Cacheability::WriteBackAllocate,
        csh: Shareability::Inner,
        stall_disable: false,
    }
}

fn stage2() -> Stage2Ste {
    crate::image::stage2_ste(0x9000_0000)
}

fn ste_words(translation: Translation, vmid: u16) -> [u64; 8] {
    SteConfig {
        translation,
        s2vmid: vmid,
        ..SteConfig::ABORT
    }
    .encode()
    .to_words()
}

fn s1_ste(ptr: u64, fmt: S1Fmt, cd_max: u8) -> [u64; 8] {
    ste_words(Translation::Stage1(stage1(ptr, fmt, cd_max)), 0)
}

fn s2_ste(vmid: u16) -> [u64; 8] {
    ste_words(Translation::Stage2(stage2()), vmid)
}

fn nested_ste(ptr: u64, fmt: S1Fmt, cd_max: u8, vmid: u16) -> [u64; 8] {
    ste_words(
        Translation::Nested(stage1(ptr, fmt, cd_max), stage2()),
        vmid,
    )
}

fn cd(asid: u16) -> [u64; 8] {
    let tt0 = TableControls {
        tsz: 16,
        ir: Cacheability::WriteBackAllocate,
        or: Cacheability::WriteBackAllocate,
        sh: Shareability::Inner,
        epd: false,
        ttb: 0xa000_0000,
    };
    make::stage1_cd(asid, tt0, Granule::Size4K, AddressSize::Bits48, 0xff04)
        .encode()
        .to_words()
}

fn l1std(l2: u64) -> u64 {
    L1StdConfig {
        span: 9,
        l2_ptr: l2,
    }
    .encode()
    .to_words()[0]
}

fn l1cd(leaf: u64) -> u64 {
    L1CdConfig { l2_ptr: leaf }.encode().to_words()[0]
}

/// Validates and scans, collecting every report.
fn run(snap: &RegisterSnapshot, mem: &Mem) -> Result<(ScanStats, Vec<Found>), Refusal> {
    let mut found = Vec::new();
    // Exactly what the scan needs (less for Miri to initialise than MAX_SCRATCH_SLOTS).
    let slots = validate_geometry(snap, &snap.features(), &any_ram)
        .map_or(0, |g| scratch_slots(&g, &snap.features()));
    let mut scratch = std::vec![ScratchSlot::default(); slots];
    let adoption = check_adoption(snap, &PLATFORM, &any_ram, mem, &mut scratch, &mut |f| {
        found.push(f);
        Ok(())
    })?;
    Ok((adoption.stats, found))
}

fn code(snap: &RegisterSnapshot, mem: &Mem) -> &'static str {
    run(snap, mem)
        .expect_err("the table must be refused")
        .code()
}

/// A linear table of 16 STEs at `ST` with `stes` at the given StreamIDs.
fn linear_mem(stes: &[(u64, [u64; 8])]) -> Mem {
    let mut m = Mem::recording();
    m.region(ST, 16 * 64);
    for (sid, w) in stes {
        m.write(ST + sid * 64, w);
    }
    m
}

/// `linear_mem` plus a CD table region at `CDT`.
fn with_cds(mut m: Mem, cds: &[(u64, [u64; 8])]) -> Mem {
    m.region(CDT, 64 << 10);
    for (ssid, w) in cds {
        m.write(CDT + ssid * 64, w);
    }
    m
}

fn err_of(snap: &RegisterSnapshot) -> Refusal {
    validate_geometry(snap, &snap.features(), &any_ram).unwrap_err()
}

// ---------------------------------------------------------------------------------------------
// Register snapshot.

struct Regs(BTreeMap<usize, u64>);

impl RegisterAccess for Regs {
    fn read32(&self, offset: usize) -> u32 {
        self.0.get(&offset).copied().unwrap_or(0) as u32
    }
    fn write32(&self, _: usize, _: u32) {
        panic!("a snapshot never writes");
    }
    fn read64(&self, offset: usize) -> u64 {
        self.0.get(&offset).copied().unwrap_or(0)
    }
    fn write64(&self, _: usize, _: u64) {
        panic!("a snapshot never writes");
    }
}

// spec: K1, K2, K13
#[test]
fn snapshot_reads_each_register_at_its_offset_and_writes_nothing() {
    let regs = Regs(BTreeMap::from([
        (offset::IDR0, 0x1),
        (offset::IDR1, 0x2),
        (offset::IDR2, 0x3),
        (offset::IDR3, 0x4),
        (offset::IDR4, 0x5),
        (offset::IDR5, 0x6),
        (offset::IIDR, 0x7),
        (offset::AIDR, 0x8),
        (offset::CR0, 0x9),
        (offset::CR1, 0xa),
        (offset::CR2, 0xb),
        (offset::GBPA, 0xc),
        (offset::GERROR, 0xd),
        (offset::GERRORN, 0xe),
        (offset::STRTAB_BASE, 0x4000_0000_1234_5640),
        (offset::STRTAB_BASE_CFG, 0x1_0208),
    ]));
    let s = RegisterSnapshot::read(&regs);
    assert_eq!(s.ids.idr, [1, 2, 3, 4, 5, 6]);
    assert_eq!((s.ids.iidr, s.ids.aidr), (7, 8));
    assert_eq!((s.cr0, s.cr1, s.cr2, s.gbpa), (9, 0xa, 0xb, 0xc));
    assert_eq!((s.gerror, s.gerrorn), (0xd, 0xe));
    assert_eq!(s.strtab_base, 0x4000_0000_1234_5640);
    assert_eq!(s.strtab_base_cfg, 0x1_0208);
    // Through a trait object too.
    let dynamic: &dyn RegisterAccess = &regs;
    assert_eq!(RegisterSnapshot::read(dynamic), s);
}

// spec: K1, K2, K5, K9, K13
#[test]
fn snapshot_helpers_read_the_architected_fields() {
    let s = RegisterSnapshot {
        cr0: 0b1_0111, // ATSCHK, EVENTQEN, PRIQEN, SMMUEN
        cr2: 0b101,    // PTM, E2H
        gbpa: 1 << 20,
        gerror: 1 << 8 | 1 << 0 | 1 << 20, // SFM, CMDQ_ERR, and an undefined bit
        gerrorn: 1 << 0,
        strtab_base: 1 << 62 | 0x00ff_0000_1234_5678, // RA, ADDR, RES0 low bits
        strtab_base_cfg: strtab_cfg(1, 8, 20),
        ..RegisterSnapshot::default()
    };
    assert!(s.smmuen() && s.atschk() && s.queues_enabled() && s.e2h() && s.gbpa_abort());
    assert_eq!(s.cr0_without_queues(), 0b1_0001);
    assert_eq!(s.active_gerrors(), 1 << 8);
    assert!(s.sfm_active());
    assert_eq!(s.strtab_addr(), 0x00ff_0000_1234_5640);
    assert!(s.strtab_ra());
    assert_eq!(
        (s.strtab_fmt(), s.strtab_split(), s.strtab_log2size()),
        (1, 8, 20)
    );
    let quiet = RegisterSnapshot {
        cr0: 0b1,
        ..RegisterSnapshot::default()
    };
    assert!(!quiet.queues_enabled() && !quiet.sfm_active() && !quiet.e2h());
}

// ---------------------------------------------------------------------------------------------
// K1, K13, K17: the decision.

// spec: K1
#[test]
fn k1_adopts_an_enabled_coherent_smmu_in_a_crash_kernel() {
    assert_eq!(decide(&linear(4), &PLATFORM), Ok(()));
}

// spec: K1
#[test]
fn k1_refuses_outside_a_crash_kernel() {
    let p = AdoptPlatform {
        crash_kernel: false,
        ..PLATFORM
    };
    assert_eq!(
        decide(&linear(4), &p).unwrap_err().code(),
        "not-crash-kernel"
    );
    // The first rule in K1's order wins.
    let off = RegisterSnapshot {
        cr0: 0,
        ..linear(4)
    };
    assert_eq!(decide(&off, &p), Err(Refusal::NotCrashKernel));
}

// spec: K1
#[test]
fn k1_refuses_a_disabled_smmu() {
    let s = RegisterSnapshot {
        cr0: 0b1000, // CMDQEN only
        ..linear(4)
    };
    assert_eq!(
        decide(&s, &PLATFORM),
        Err(Refusal::SmmuDisabled { cr0: 0b1000 })
    );
    assert_eq!(decide(&s, &PLATFORM).unwrap_err().code(), "smmu-disabled");
}

// spec: K1, K17
#[test]
fn k1_refuses_a_non_coherent_smmu_unless_the_platform_maintains_caches() {
    let nc = AdoptPlatform {
        coherent: false,
        ..PLATFORM
    };
    assert_eq!(decide(&linear(4), &nc).unwrap_err().code(), "not-coherent");
    let maintained = AdoptPlatform {
        cache_maintenance: true,
        ..nc
    };
    assert_eq!(decide(&linear(4), &maintained), Ok(()));
}

// spec: K1
#[test]
fn k1_refuses_service_failure_mode_only() {
    let sfm = RegisterSnapshot {
        gerror: 1 << 8,
        ..linear(4)
    };
    let r = decide(&sfm, &PLATFORM).unwrap_err();
    assert_eq!(r.code(), "service-failure");
    assert_eq!(
        r,
        Refusal::ServiceFailure {
            gerror: 1 << 8,
            gerrorn: 0
        }
    );
    // Acknowledged SFM (GERRORN caught up) is not active.
    let acked = RegisterSnapshot {
        gerrorn: 1 << 8,
        ..sfm
    };
    assert_eq!(decide(&acked, &PLATFORM), Ok(()));
    // Other active errors are acknowledged by the adopt-mode reset (K6), not refused here.
    let cmdq_err = RegisterSnapshot {
        gerror: 0b1_1111_1101 & !(1 << 8) | 1 << 9 | 1 << 10,
        ..linear(4)
    };
    assert_eq!(decide(&cmdq_err, &PLATFORM), Ok(()));
}

// spec: K13
#[test]
fn k13_e2h_read_back_must_match_the_platform() {
    let e2h = RegisterSnapshot {
        cr2: 1,
        ..linear(4)
    };
    let expect = |v| AdoptPlatform {
        expect_e2h: v,
        ..PLATFORM
    };
    assert_eq!(decide(&e2h, &expect(Some(true))), Ok(()));
    assert_eq!(decide(&e2h, &expect(None)), Ok(()));
    assert_eq!(decide(&linear(4), &expect(Some(false))), Ok(()));
    assert_eq!(
        decide(&e2h, &expect(Some(false))),
        Err(Refusal::E2hMismatch {
            found: true,
            expected: false
        })
    );
    let r = decide(&linear(4), &expect(Some(true))).unwrap_err();
    assert_eq!(r.code(), "e2h-mismatch");
}

// ---------------------------------------------------------------------------------------------
// K2: one bad table per rule.

// spec: K2
#[test]
fn k2_reserved_format_is_refused() {
    for fmt in [2, 3] {
        let s = snap_with(idr0_full(), idr1(16, 8), 48, strtab_cfg(fmt, 8, 10), ST);
        assert_eq!(err_of(&s), Refusal::ReservedFormat { fmt });
        assert_eq!(err_of(&s).code(), "reserved-format");
    }
}

// spec: K2
#[test]
fn k2_two_level_table_needs_st_level() {
    let no_2lvl = idr0_full() & !(IDR0::ST_LVL.mask << IDR0::ST_LVL.shift);
    let s = with_idr0(two_level(16), no_2lvl);
    assert_eq!(err_of(&s).code(), "two-level-unsupported");
    // ST_LEVEL = 0b10 is reserved: not "2-level supported" either.
    let reserved = no_2lvl | IDR0::ST_LVL.val(0b10).value;
    assert_eq!(
        err_of(&with_idr0(two_level(16), reserved)),
        Refusal::TwoLevelUnsupported
    );
}

// spec: K2
#[test]
fn k2_log2size_above_sidsize_is_refused() {
    let s = snap_with(idr0_full(), idr1(12, 8), 48, strtab_cfg(0, 0, 13), ST);
    assert_eq!(
        err_of(&s),
        Refusal::Log2SizeExceedsSidSize {
            log2size: 13,
            sid_bits: 12
        }
    );
    let s = snap_with(idr0_full(), idr1(12, 8), 48, strtab_cfg(1, 8, 13), ST);
    assert_eq!(err_of(&s).code(), "log2size-exceeds-sidsize");
}

// spec: K2
#[test]
fn k2_two_level_split_must_be_8() {
    for split in [0, 6, 7, 9, 10, 31] {
        let s = snap_with(idr0_full(), idr1(24, 8), 48, strtab_cfg(1, split, 16), ST);
        assert_eq!(err_of(&s), Refusal::BadSplit { split });
        assert_eq!(err_of(&s).code(), "bad-split");
    }
    // SPLIT is IGNORED for linear tables.
    let s = snap_with(idr0_full(), idr1(24, 8), 48, strtab_cfg(0, 6, 4), ST);
    assert!(validate_geometry(&s, &s.features(), &any_ram).is_ok());
}

// spec: K2
#[test]
fn k2_two_level_log2size_below_split_is_refused() {
    let s = two_level(7);
    assert_eq!(
        err_of(&s),
        Refusal::Log2SizeBelowSplit {
            log2size: 7,
            split: 8
        }
    );
    assert_eq!(err_of(&s).code(), "log2size-below-split");
}

// spec: K2
#[test]
fn k2_more_than_2_17_l1_descriptors_is_refused_before_any_shift() {
    let s = snap_with(idr0_full(), idr1(63, 8), 48, strtab_cfg(1, 8, 26), ST);
    assert_eq!(err_of(&s).code(), "l1-too-large");
    // LOG2SIZE 63 would shift 8 by 55: refused, not computed.
    let s = snap_with(idr0_full(), idr1(63, 8), 48, strtab_cfg(1, 8, 63), 0);
    assert_eq!(
        err_of(&s),
        Refusal::L1TooLarge {
            log2size: 63,
            split: 8
        }
    );
    // The largest accepted: 2^17 descriptors (1 MiB, so a 1 MiB-aligned base).
    let s = snap_with(idr0_full(), idr1(25, 8), 48, strtab_cfg(1, 8, 25), 1 << 20);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    assert_eq!((g.l1_entries(), g.table_bytes()), (Some(1 << 17), 1 << 20));
}

// spec: K2
#[test]
fn k2_linear_tables_are_capped() {
    // 2-level-capable hardware: at most 2^25 STEs.
    let s = snap_with(idr0_full(), idr1(32, 8), 48, strtab_cfg(0, 0, 26), 0);
    assert_eq!(
        err_of(&s),
        Refusal::LinearTooLarge {
            log2size: 26,
            max: 25
        }
    );
    assert_eq!(err_of(&s).code(), "linear-too-large");
    let s = snap_with(idr0_full(), idr1(32, 8), 48, strtab_cfg(0, 0, 25), 0);
    assert!(validate_geometry(&s, &s.features(), &any_ram).is_ok());
    // Linear-only hardware: at most 2^31 whatever SIDSIZE says.
    let linear_only = idr0_full() & !(IDR0::ST_LVL.mask << IDR0::ST_LVL.shift);
    let s = snap_with(linear_only, idr1(40, 8), 48, strtab_cfg(0, 0, 32), 0);
    assert_eq!(
        err_of(&s),
        Refusal::LinearTooLarge {
            log2size: 32,
            max: 31
        }
    );
    let s = snap_with(linear_only, idr1(40, 8), 48, strtab_cfg(0, 0, 31), 0);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    assert_eq!((g.linear_stes(), g.table_bytes()), (Some(1 << 31), 1 << 37));
}

// spec: K2
#[test]
fn k2_base_must_be_aligned_to_the_table_at_least_64_bytes() {
    // Linear, 16 STEs = 1 KiB: 512-byte alignment is not enough.
    let s = snap_with(idr0_full(), idr1(16, 8), 48, strtab_cfg(0, 0, 4), ST + 512);
    assert_eq!(
        err_of(&s),
        Refusal::BaseMisaligned {
            base: ST + 512,
            align: 1024
        }
    );
    assert_eq!(err_of(&s).code(), "base-misaligned");
    // 2-level with 2 descriptors (16 bytes): the SMMU aligns the base to 64 (§6.3.24), which
    // `ADDR` (bits [55:6]) cannot break: bits 5:0 are RES0 and not part of the address.
    let s = snap_with(idr0_full(), idr1(16, 8), 48, strtab_cfg(1, 8, 9), ST + 16);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    assert_eq!((g.base(), g.table_bytes()), (ST, 16));
    let s = snap_with(idr0_full(), idr1(16, 8), 48, strtab_cfg(1, 8, 9), ST + 64);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    assert_eq!((g.base(), g.table_bytes()), (ST + 64, 16));
    // 2-level with 16 descriptors (128 bytes): aligned to 128.
    let s = snap_with(idr0_full(), idr1(16, 8), 48, strtab_cfg(1, 8, 12), ST + 64);
    assert_eq!(
        err_of(&s),
        Refusal::BaseMisaligned {
            base: ST + 64,
            align: 128
        }
    );
}

// spec: K2
#[test]
fn k2_base_beyond_oas_is_refused() {
    let s = snap_with(idr0_full(), idr1(16, 8), 32, strtab_cfg(0, 0, 4), 1 << 32);
    assert_eq!(
        err_of(&s),
        Refusal::BaseBeyondOas {
            base: 1 << 32,
            oas_bits: 32
        }
    );
    assert_eq!(err_of(&s).code(), "base-beyond-oas");
    // The last table below 2^32 is fine.
    let s = snap_with(
        idr0_full(),
        idr1(16, 8),
        32,
        strtab_cfg(0, 0, 4),
        (1 << 32) - 1024,
    );
    assert!(validate_geometry(&s, &s.features(), &any_ram).is_ok());
}

// spec: K2
#[test]
fn k2_table_end_beyond_oas_is_refused() {
    // An aligned table below 2^OAS can only cross it by being larger than 2^OAS: 2^31 STEs
    // (128 GiB) at 0 with a 32-bit OAS.
    let linear_only = idr0_full() & !(IDR0::ST_LVL.mask << IDR0::ST_LVL.shift);
    let s = snap_with(linear_only, idr1(32, 8), 32, strtab_cfg(0, 0, 31), 0);
    assert_eq!(
        err_of(&s),
        Refusal::TableEndBeyondOas {
            base: 0,
            bytes: 1 << 37,
            oas_bits: 32
        }
    );
    assert_eq!(err_of(&s).code(), "table-end-beyond-oas");
}

// spec: K2
#[test]
fn k2_platform_ram_check() {
    let s = linear(4);
    let asked = RefCell::new(Vec::new());
    let not_ram = |base: u64, bytes: u64| {
        asked.borrow_mut().push((base, bytes));
        false
    };
    let r = validate_geometry(&s, &s.features(), &not_ram).unwrap_err();
    assert_eq!(
        r,
        Refusal::NotRam {
            base: ST,
            bytes: 1024
        }
    );
    assert_eq!(r.code(), "not-ram");
    assert_eq!(asked.into_inner(), [(ST, 1024)]);
}

// spec: K2, K3
#[test]
fn k2_geometry_locates_stes_and_descriptors() {
    let s = linear(4);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    assert_eq!(g.format(), Format::Linear);
    assert_eq!(
        (g.num_sids(), g.linear_stes(), g.l1_entries()),
        (16, Some(16), None)
    );
    assert_eq!(g.ste_pa(3), Some(ST + 3 * 64));
    assert_eq!((g.ste_pa(16), g.l1_index(3)), (None, None));
    assert!(g.contains_sid(15) && !g.contains_sid(16));

    let s = two_level(12);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    assert_eq!(g.format(), Format::TwoLevel);
    assert_eq!(
        (g.log2size(), g.l1_entries(), g.table_bytes()),
        (12, Some(16), 128)
    );
    assert_eq!(g.l1_index(0x3ff), Some(3));
    assert_eq!(g.l1_desc_pa(0x3ff), Some(ST + 3 * 8));
    assert_eq!((g.ste_pa(1), g.l1_index(1 << 12)), (None, None));
    assert_eq!(ste_pa_in_l2(L2A, 0x3ff), Some(L2A + 0xff * 64));
    assert_eq!(g.oas_bits(), 48);
    assert_eq!(g.validate_l1(7, l1std(L2A)), Ok(Some(L2A)));
    assert_eq!(
        g.validate_l1(7, 8 | L2A).unwrap_err(),
        Refusal::L1BadSpan {
            index: Some(7),
            desc: 8 | L2A
        }
    );
}

// ---------------------------------------------------------------------------------------------
// K3: level-1 descriptors.

// spec: K3
#[test]
fn k3_span_0_is_unused_whatever_the_pointer() {
    assert_eq!(validate_l1(0, 48), Ok(None));
    assert_eq!(validate_l1(0xffff_ffff_ffff_ffe0, 48), Ok(None));
}

// spec: K3
#[test]
fn k3_span_other_than_9_is_refused() {
    for span in (1..32u64).filter(|&s| s != 9) {
        let desc = span | L2A;
        let r = validate_l1(desc, 48).unwrap_err();
        assert_eq!(r, Refusal::L1BadSpan { index: None, desc });
        assert_eq!(r.code(), "l1-bad-span");
    }
}

// spec: K3
#[test]
fn k3_null_l2ptr_is_refused() {
    let r = validate_l1(9, 48).unwrap_err();
    assert_eq!(r.code(), "l1-null-l2ptr");
    assert_eq!(
        r.with_l1_index(4),
        Refusal::L1NullL2Ptr {
            index: Some(4),
            desc: 9
        }
    );
}

// spec: K3
#[test]
fn k3_l2ptr_must_be_16k_aligned() {
    let r = validate_l1(l1std(L2A + 0x1000), 48).unwrap_err();
    assert_eq!(
        r,
        Refusal::L1Misaligned {
            index: None,
            l2ptr: L2A + 0x1000
        }
    );
    assert_eq!(r.code(), "l1-misaligned");
}

// spec: K3
#[test]
fn k3_l2_table_must_be_below_oas() {
    let r = validate_l1_at(2, l1std(1 << 32), 32).unwrap_err();
    assert_eq!(
        r,
        Refusal::L1BeyondOas {
            index: Some(2),
            l2ptr: 1 << 32,
            oas_bits: 32
        }
    );
    assert_eq!(r.code(), "l1-beyond-oas");
    let last = (1 << 32) - 0x4000;
    assert_eq!(validate_l1(l1std(last), 32), Ok(Some(last)));
    // Bits 63:56 are RES0 and not part of the pointer; bit 5 likewise.
    assert_eq!(
        validate_l1(l1std(L2A) | 1 << 63 | 1 << 5, 48),
        Ok(Some(L2A))
    );
}

// spec: K3, K4
#[test]
fn k3_one_bad_descriptor_fails_the_scan() {
    let mut m = Mem::recording();
    m.region(ST, 128);
    m.region(L2A, 0x4000);
    m.write(ST, &[l1std(L2A), 0, 0, 0b1010 | L2B]);
    m.write(L2A + 5 * 64, &SteConfig::BYPASS.encode().to_words());
    assert_eq!(
        run(&two_level(12), &m).unwrap_err(),
        Refusal::L1BadSpan {
            index: Some(3),
            desc: 0b1010 | L2B
        }
    );
    // The bad descriptor's table is never read.
    assert!(!m.touched(L2B, 0x4000));
}

// ---------------------------------------------------------------------------------------------
// K14: positive tables with their exact reports.

// spec: K11, K14
#[test]
fn k14_linear_table_reports_exactly_what_is_in_use() {
    let mut abort_invalid = SteConfig::ABORT.encode().to_words();
    ste::fields::V.set(&mut abort_invalid, 0);
    let m = linear_mem(&[
        (0, SteConfig::ABORT.encode().to_words()),
        (1, SteConfig::BYPASS.encode().to_words()),
        (2, s1_ste(CDT, S1Fmt::Linear, 2)),
        (3, s2_ste(7)),
        (4, nested_ste(0x1_0000, S1Fmt::Linear, 0, 9)),
        (5, abort_invalid),
        (6, s2_ste(7)), // a VMID shared by two streams is reported twice
    ]);
    let m = with_cds(m, &[(0, cd(0x11)), (2, cd(0x12)), (3, cd(0x11))]);
    let (stats, found) = run(&linear(4), &m).unwrap();
    assert_eq!(
        found,
        [
            Found::Deferred { sid: 1 },
            Found::Deferred { sid: 2 },
            Found::Vmid { sid: 3, vmid: 7 },
            Found::Deferred { sid: 3 },
            Found::Vmid { sid: 4, vmid: 9 },
            Found::Deferred { sid: 4 },
            Found::Vmid { sid: 6, vmid: 7 },
            Found::Deferred { sid: 6 },
            // Pass 2: the CD table, once.
            Found::Asid {
                sid: 2,
                ssid: 0,
                asid: 0x11
            },
            Found::Asid {
                sid: 2,
                ssid: 2,
                asid: 0x12
            },
            Found::Asid {
                sid: 2,
                ssid: 3,
                asid: 0x11
            },
        ]
    );
    assert_eq!(
        stats,
        ScanStats {
            l1_descriptors: 0,
            l1_valid: 0,
            stes_scanned: 16,
            stes_valid: 6,
            cd_tables: 1,
            cds_scanned: 4,
            cds_valid: 3,
            vmids: 3,
            asids: 3,
            deferred: 5,
            // The stream table and the CD table.
            structures: 2,
            // CD 3 shares ASID 0x11 with CD 0, SID 6 VMID 7 with SID 3: each first user
            // is read back once to compare (identical).
            tag_compares: 2,
            // K18: the first user of each of the four tags (VMIDs 7 and 9, ASIDs 0x11
            // and 0x12) is read once more for its translation table base.
            reads: 5 + 4,
            bytes_read: 1024 + 256 + 2 * 64 + 4 * 64,
        }
    );
    // The nested STE's CD table is an IPA: never read.
    assert!(!m.touched(0x1_0000, 64));
}

// spec: K3, K11, K14
#[test]
fn k14_two_level_table_reports_exactly_what_is_in_use() {
    let mut m = Mem::recording();
    m.region(ST, 128);
    m.region(L2A, 0x4000);
    m.region(L2B, 0x4000);
    m.write(ST, &[l1std(L2A), 0, l1std(L2B)]);
    m.write(L2A + 5 * 64, &SteConfig::BYPASS.encode().to_words());
    m.write(L2A + 6 * 64, &SteConfig::ABORT.encode().to_words());
    m.write(L2B + 7 * 64, &s2_ste(0x1234));
    m.write(L2B + 255 * 64, &s1_ste(CDT, S1Fmt::Linear, 0));
    let m = with_cds(m, &[(0, cd(0xabcd))]);
    let (stats, found) = run(&two_level(12), &m).unwrap();
    assert_eq!(
        found,
        [
            Found::Deferred { sid: 5 },
            Found::Vmid {
                sid: 0x207,
                vmid: 0x1234
            },
            Found::Deferred { sid: 0x207 },
            Found::Deferred { sid: 0x2ff },
            Found::Asid {
                sid: 0x2ff,
                ssid: 0,
                asid: 0xabcd
            },
        ]
    );
    assert_eq!((stats.l1_descriptors, stats.l1_valid), (16, 2));
    assert_eq!((stats.stes_scanned, stats.stes_valid), (512, 4));
}

// spec: K14
#[test]
fn k14_stage1_two_level_cd_table_with_4k_leaves() {
    // S1CDMax 7: two L1CDs, each to a 4 KiB leaf of 64 CDs.
    let mut m = linear_mem(&[(1, s1_ste(CDT, S1Fmt::TwoLevel4K, 7))]);
    m.region(CDT, 16);
    m.write(CDT, &[l1cd(LEAF0), l1cd(LEAF0 + 0x1000)]);
    m.region(LEAF0, 0x2000);
    m.write(LEAF0 + 3 * 64, &cd(0x21));
    m.write(LEAF0 + 0x1000 + 64, &cd(0x22));
    let (stats, found) = run(&linear(4), &m).unwrap();
    assert_eq!(
        found,
        [
            Found::Deferred { sid: 1 },
            Found::Asid {
                sid: 1,
                ssid: 3,
                asid: 0x21
            },
            Found::Asid {
                sid: 1,
                ssid: 65,
                asid: 0x22
            },
        ]
    );
    assert_eq!((stats.cds_scanned, stats.cds_valid), (128, 2));
}

// spec: K14
#[test]
fn k14_stage1_two_level_cd_table_with_64k_leaves() {
    // S1CDMax 11: two L1CDs of 1024 CDs each; an invalid one is skipped.
    let mut m = linear_mem(&[(0, s1_ste(CDT, S1Fmt::TwoLevel64K, 11))]);
    m.region(CDT, 64);
    m.write(CDT, &[0, l1cd(LEAF1)]);
    m.region(LEAF1, 0x1_0000);
    m.write(LEAF1 + 5 * 64, &cd(0x31));
    let (stats, found) = run(&linear(4), &m).unwrap();
    assert_eq!(
        found,
        [
            Found::Deferred { sid: 0 },
            Found::Asid {
                sid: 0,
                ssid: 1024 + 5,
                asid: 0x31
            },
        ]
    );
    assert_eq!(stats.cds_scanned, 1024);
    assert!(!m.touched(LEAF0, 0x1_0000));
    // A small 2-level table (S1CDMax 3): one L1CD, a leaf of which only 8 CDs are used.
    let mut m = linear_mem(&[(0, s1_ste(CDT, S1Fmt::TwoLevel64K, 3))]);
    m.region(CDT, 64);
    m.write(CDT, &[l1cd(LEAF1)]);
    m.region(LEAF1, 8 * 64);
    m.write(LEAF1 + 7 * 64, &cd(0x32));
    let (_, found) = run(&linear(4), &m).unwrap();
    assert_eq!(
        found[1],
        Found::Asid {
            sid: 0,
            ssid: 7,
            asid: 0x32
        }
    );
}

// spec: K14
#[test]
fn k14_s1fmt_and_s1dss_are_ignored_for_a_single_cd() {
    let mut w = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::S1FMT.set(&mut w, 0b11);
    ste::fields::S1DSS.set(&mut w, 0b11);
    let m = with_cds(linear_mem(&[(2, w)]), &[(0, cd(5))]);
    let (_, found) = run(&linear(4), &m).unwrap();
    assert_eq!(
        found,
        [
            Found::Deferred { sid: 2 },
            Found::Asid {
                sid: 2,
                ssid: 0,
                asid: 5
            },
        ]
    );
}

// spec: K14
#[test]
fn k14_nested_reserves_the_vmid_and_never_reads_the_ipa_cd_table() {
    // IPA 0 is a legal CD table address for a guest; the pointer is not a PA.
    let m = linear_mem(&[(3, nested_ste(0, S1Fmt::TwoLevel64K, 12, 0x44))]);
    let (_, found) = run(&linear(4), &m).unwrap();
    assert_eq!(
        found,
        [
            Found::Vmid { sid: 3, vmid: 0x44 },
            Found::Deferred { sid: 3 }
        ]
    );
    // The stream table, then the STE once more for its stage-2 start table (K18).
    assert_eq!(m.reads().len(), 3, "only the stream table is read");
    // Its address-independent geometry is still checked.
    let m = linear_mem(&[(3, nested_ste(0x40, S1Fmt::Linear, 2, 0x44))]);
    assert_eq!(code(&linear(4), &m), "cd-table-misaligned");
}

// ---------------------------------------------------------------------------------------------
// K14: one bad table per rule.

// spec: K14
#[test]
fn k14_reserved_config_is_refused() {
    for config in [0b001, 0b010, 0b011] {
        let mut w = [0u64; 8];
        ste::fields::V.set(&mut w, 1);
        ste::fields::CONFIG.set(&mut w, config);
        let r = run(&linear(4), &linear_mem(&[(9, w)])).unwrap_err();
        assert_eq!(r.code(), "ste-reserved");
        assert_eq!(
            r,
            Refusal::SteReserved {
                sid: 9,
                error: DecodeError::Reserved {
                    structure: "STE",
                    field: "Config",
                    value: config
                }
            }
        );
    }
    // Another reserved encoding of a valid STE, in a field its Config uses (S2TG = 0b11).
    let mut w = s2_ste(3);
    ste::fields::S2TG.set(&mut w, 0b11);
    assert_eq!(code(&linear(4), &linear_mem(&[(0, w)])), "ste-reserved");
    // An invalid STE is never decoded.
    ste::fields::V.set(&mut w, 0);
    assert!(run(&linear(4), &linear_mem(&[(0, w)])).is_ok());
}

// spec: K14
#[test]
fn k14_vmid_zero_is_refused() {
    let r = run(&linear(4), &linear_mem(&[(4, s2_ste(0))])).unwrap_err();
    assert_eq!(r, Refusal::VmidZero { sid: 4 });
    assert_eq!(r.code(), "vmid-zero");
    let nested = nested_ste(CDT, S1Fmt::Linear, 0, 0);
    assert_eq!(code(&linear(4), &linear_mem(&[(4, nested)])), "vmid-zero");
}

// spec: K14
#[test]
fn k14_vmid_wider_than_the_smmu_is_refused() {
    let vmid8 = idr0_full() & !(IDR0::VMID16.mask << IDR0::VMID16.shift);
    let s = with_idr0(linear(4), vmid8);
    assert!(run(&s, &linear_mem(&[(4, s2_ste(255))])).is_ok());
    let r = run(&s, &linear_mem(&[(4, s2_ste(256))])).unwrap_err();
    assert_eq!(
        r,
        Refusal::VmidOutOfRange {
            sid: 4,
            vmid: 256,
            bits: 8
        }
    );
    assert_eq!(r.code(), "vmid-out-of-range");
}

// spec: K14
#[test]
fn k14_null_cd_table_is_refused() {
    let r = run(&linear(4), &linear_mem(&[(1, s1_ste(0, S1Fmt::Linear, 0))])).unwrap_err();
    assert_eq!(r, Refusal::CdTableNull { sid: 1 });
    assert_eq!(r.code(), "cd-table-null");
}

// spec: K14
#[test]
fn k14_s1cdmax_above_ssidsize_is_refused() {
    let s = snap_with(idr0_full(), idr1(16, 4), 48, strtab_cfg(0, 0, 4), ST);
    let m = with_cds(linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 5))]), &[]);
    let r = run(&s, &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::CdMaxExceedsSsidSize {
            sid: 1,
            cd_max: 5,
            ssid_bits: 4
        }
    );
    assert_eq!(r.code(), "cd-max-exceeds-ssidsize");
    let m = with_cds(linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 4))]), &[]);
    assert!(run(&s, &m).is_ok());
}

// spec: K14
#[test]
fn k14_unsupported_cd_format_is_refused() {
    // 2-level CD tables need IDR0.CD2L.
    let no_cd2l = idr0_full() & !(IDR0::CD2L.mask << IDR0::CD2L.shift);
    let s = with_idr0(linear(4), no_cd2l);
    let m = linear_mem(&[(1, s1_ste(CDT, S1Fmt::TwoLevel64K, 12))]);
    let r = run(&s, &m).unwrap_err();
    assert_eq!(r, Refusal::CdFormatUnsupported { sid: 1, fmt: 0b10 });
    assert_eq!(r.code(), "cd-format-unsupported");
    // 0b11 is reserved once there is more than one CD.
    let mut w = s1_ste(CDT, S1Fmt::Linear, 2);
    ste::fields::S1FMT.set(&mut w, 0b11);
    let r = run(&linear(4), &linear_mem(&[(1, w)])).unwrap_err();
    assert_eq!(r, Refusal::CdFormatUnsupported { sid: 1, fmt: 0b11 });
}

// spec: K14
#[test]
fn k14_misaligned_cd_table_is_refused() {
    // Linear, 16 CDs = 1 KiB: aligned to 1 KiB.
    let m = with_cds(linear_mem(&[(1, s1_ste(CDT + 512, S1Fmt::Linear, 4))]), &[]);
    let r = run(&linear(4), &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::CdTableMisaligned {
            sid: 1,
            ptr: CDT + 512,
            align: 1024
        }
    );
    assert_eq!(r.code(), "cd-table-misaligned");
    // 2-level, 4 KiB leaves, S1CDMax 12: 64 L1CDs = 512 bytes.
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT + 64, S1Fmt::TwoLevel4K, 12))]),
        &[],
    );
    assert_eq!(
        run(&linear(4), &m).unwrap_err(),
        Refusal::CdTableMisaligned {
            sid: 1,
            ptr: CDT + 64,
            align: 512
        }
    );
    // 2-level with a single L1CD: 64-byte alignment suffices.
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT + 64, S1Fmt::TwoLevel4K, 5))]),
        &[],
    );
    assert!(run(&linear(4), &m).is_ok());
}

// spec: K14
#[test]
fn k14_cd_table_beyond_oas_is_refused() {
    let s = snap_with(idr0_full(), idr1(16, 8), 32, strtab_cfg(0, 0, 4), ST);
    let m = linear_mem(&[(1, s1_ste(1 << 32, S1Fmt::Linear, 0))]);
    let r = run(&s, &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::CdTableBeyondOas {
            sid: 1,
            ptr: 1 << 32,
            bytes: 64,
            oas_bits: 32
        }
    );
    assert_eq!(r.code(), "cd-table-beyond-oas");
    assert!(!m.touched(1 << 32, 64));
}

// spec: K14
#[test]
fn k14_null_leaf_is_refused() {
    let mut m = linear_mem(&[(1, s1_ste(CDT, S1Fmt::TwoLevel4K, 8))]);
    m.region(CDT, 32);
    m.write(CDT, &[l1cd(LEAF0), 0, 1]); // V = 1, L2Ptr = 0
    m.region(LEAF0, 0x1000);
    let r = run(&linear(4), &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::CdLeafNull {
            sid: 1,
            l1_index: 2
        }
    );
    assert_eq!(r.code(), "cd-leaf-null");
}

// spec: K14
#[test]
fn k14_misaligned_leaf_is_refused() {
    // 64 KiB leaves must be 64 KiB aligned (L2Ptr[15:12] RES0).
    let mut m = linear_mem(&[(1, s1_ste(CDT, S1Fmt::TwoLevel64K, 10))]);
    m.region(CDT, 64);
    m.write(CDT, &[l1cd(LEAF0 + 0x1000)]);
    let r = run(&linear(4), &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::CdLeafMisaligned {
            sid: 1,
            l1_index: 0,
            ptr: LEAF0 + 0x1000,
            align: 0x1_0000
        }
    );
    assert_eq!(r.code(), "cd-leaf-misaligned");
}

// spec: K14
#[test]
fn k14_leaf_beyond_oas_is_refused() {
    let s = snap_with(idr0_full(), idr1(16, 8), 40, strtab_cfg(0, 0, 4), ST);
    let mut m = linear_mem(&[(1, s1_ste(CDT, S1Fmt::TwoLevel4K, 6))]);
    m.region(CDT, 64);
    m.write(CDT, &[l1cd(1 << 40)]);
    let r = run(&s, &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::CdLeafBeyondOas {
            sid: 1,
            l1_index: 0,
            ptr: 1 << 40,
            oas_bits: 40
        }
    );
    assert_eq!(r.code(), "cd-leaf-beyond-oas");
}

// spec: K14
#[test]
fn k14_reserved_cd_is_refused() {
    let mut bad = cd(3);
    cdf::TG0.set(&mut bad, 0b11); // reserved granule, walks enabled (EPD0 = 0)
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 1))]),
        &[(1, bad)],
    );
    let r = run(&linear(4), &m).unwrap_err();
    assert_eq!(r.code(), "cd-reserved");
    assert!(matches!(
        r,
        Refusal::CdReserved {
            sid: 1,
            ssid: 1,
            ..
        }
    ));
}

// spec: K14
#[test]
fn k14_asid_zero_is_refused() {
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 1))]),
        &[(0, cd(4)), (1, cd(0))],
    );
    let r = run(&linear(4), &m).unwrap_err();
    assert_eq!(r, Refusal::AsidZero { sid: 1, ssid: 1 });
    assert_eq!(r.code(), "asid-zero");
}

// spec: K14
#[test]
fn k14_asid_wider_than_the_smmu_is_refused() {
    let asid8 = idr0_full() & !(IDR0::ASID16.mask << IDR0::ASID16.shift);
    let s = with_idr0(linear(4), asid8);
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 0))]),
        &[(0, cd(0x100))],
    );
    let r = run(&s, &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::AsidOutOfRange {
            sid: 1,
            ssid: 0,
            asid: 0x100,
            bits: 8
        }
    );
    assert_eq!(r.code(), "asid-out-of-range");
}

// spec: K4, K14
#[test]
fn k14_a_failed_reservation_stops_the_scan_with_the_sinks_refusal() {
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 0)), (9, s2_ste(3))]),
        &[(0, cd(0x55))],
    );
    let s = linear(4);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    let mut calls = 0;
    let r = scan(
        &g,
        &s.features(),
        &m,
        &mut std::vec![ScratchSlot::default(); scratch_slots(&g, &s.features())],
        &mut |f| {
            calls += 1;
            match f {
                Found::Asid { sid, ssid, asid } => Err(Refusal::AsidConflict { sid, ssid, asid }),
                _ => Ok(()),
            }
        },
    )
    .unwrap_err();
    assert_eq!(
        r,
        Refusal::AsidConflict {
            sid: 1,
            ssid: 0,
            asid: 0x55
        }
    );
    // Pass 1 reported Deferred 1, Vmid 9 and Deferred 9 before the CD table's ASID.
    assert_eq!((r.code(), calls), ("asid-conflict", 4));
    let mut vmid_calls = 0;
    let r = scan(
        &g,
        &s.features(),
        &m,
        &mut std::vec![ScratchSlot::default(); scratch_slots(&g, &s.features())],
        &mut |f| {
            vmid_calls += 1;
            match f {
                Found::Vmid { sid, vmid } => Err(Refusal::VmidConflict { sid, vmid }),
                _ => Ok(()),
            }
        },
    )
    .unwrap_err();
    assert_eq!(r, Refusal::VmidConflict { sid: 9, vmid: 3 });
    assert_eq!((r.code(), vmid_calls), ("vmid-conflict", 2));
}

// spec: K4, K14
#[test]
fn k14_unreadable_memory_is_refused() {
    // The stream table is 16 STEs but only the first 8 are readable.
    let mut m = Mem::recording();
    m.region(ST, 512);
    let r = run(&linear(4), &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::MemoryUnreadable {
            pa: ST + 512,
            len: 512
        }
    );
    assert_eq!(r.code(), "memory-unreadable");
    // A CD table that cannot be read.
    let m = linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 0))]);
    assert_eq!(
        run(&linear(4), &m).unwrap_err(),
        Refusal::MemoryUnreadable { pa: CDT, len: 64 }
    );
}

// ---------------------------------------------------------------------------------------------
// K15: bounds.

// spec: K15
#[test]
fn k15_reads_are_proportional_to_valid_descriptors() {
    // 2^24 StreamIDs: 2^16 L1 descriptors (512 KiB), one of them valid. (2^16 StreamIDs under
    // Miri, where 2^16 descriptors take minutes; the count follows the same formula.)
    let log2size = if cfg!(miri) { 16 } else { 24 };
    let l1_bytes = 8u64 << (log2size - 8);
    let chunk = READ_CHUNK_WORDS as u64 * 8;
    let s = snap_with(
        idr0_full(),
        idr1(24, 8),
        48,
        strtab_cfg(1, 8, log2size),
        0x1000_0000,
    );
    let mut m = Mem::recording();
    m.region(0x1000_0000, l1_bytes);
    m.region(L2A, 0x4000);
    m.write(0x1000_0000 + 0x34 * 8, &[l1std(L2A)]);
    m.write(L2A + 17 * 64, &SteConfig::BYPASS.encode().to_words());
    let (stats, found) = run(&s, &m).unwrap();
    assert_eq!(found, [Found::Deferred { sid: 0x3411 }]);
    let l1_reads = l1_bytes / chunk;
    let l2_reads = 0x4000 / chunk;
    assert_eq!(stats.reads, l1_reads + l2_reads);
    assert_eq!(stats.bytes_read, l1_bytes + 0x4000);
    assert_eq!(m.reads().len() as u64, stats.reads);
    assert!(m.reads().iter().all(|&(_, len)| len <= chunk));
    assert_eq!(
        (stats.l1_descriptors, stats.l1_valid, stats.stes_scanned),
        (l1_bytes / 8, 1, 256)
    );
    // With no valid descriptor, only the L1 table is read.
    m.write(0x1000_0000 + 0x34 * 8, &[0]);
    let (stats, _) = run(&s, &m).unwrap();
    assert_eq!(stats.reads, l1_reads);
}

// spec: K15
#[test]
fn k15_every_read_lies_inside_a_described_range() {
    let mut m = Mem::recording();
    m.region(ST, 128);
    m.region(L2A, 0x4000);
    m.write(ST, &[l1std(L2A)]);
    m.write(L2A, &s1_ste(CDT, S1Fmt::TwoLevel4K, 7));
    m.write(L2A + 64, &s1_ste(CDT + 0x1000, S1Fmt::Linear, 3));
    m.write(L2A + 128, &s2_ste(1));
    m.region(CDT, 0x2000);
    m.write(CDT, &[l1cd(LEAF0), l1cd(LEAF1)]);
    m.write(CDT + 0x1000 + 64, &cd(9));
    m.region(LEAF0, 0x1000);
    m.region(LEAF1, 0x1000);
    m.write(LEAF1, &cd(8));
    let (_, found) = run(&two_level(12), &m).unwrap();
    assert_eq!(found.len(), 6);
    let described = [
        (ST, 128),
        (L2A, 0x4000),
        (CDT, 16),
        (LEAF0, 0x1000),
        (LEAF1, 0x1000),
        (CDT + 0x1000, 8 * 64),
    ];
    for (pa, len) in m.reads() {
        assert!(
            described.iter().any(|&(b, l)| b <= pa && pa + len <= b + l),
            "read {pa:#x}+{len:#x}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The one walk of the stream table (`crate::walk`): what `smmuctl inspect` visits past gaps
// and what the scan visits up to its first refusal are the same STEs.

/// A third level-2 table, 16 KiB aligned.
const L2C: u64 = 0x8010_8000;

/// The valid STEs [`visit_stes`] finds going on past every gap (inspect's way), the gaps,
/// and what it read.
fn visit_past_gaps(g: &Geometry, m: &Mem) -> (Vec<u32>, Vec<Gap>, WalkStats) {
    let (mut sids, mut gaps) = (Vec::new(), Vec::new());
    let stats = visit_stes(
        g,
        m,
        OnGap::Skip(&mut |gap| gaps.push(gap)),
        &mut |e: &SteEntry| {
            sids.push(e.sid);
            Ok::<(), Refusal>(())
        },
    )
    .expect("a walk past gaps stops only for its visitor");
    (sids, gaps, stats)
}

/// Adoption's view: the StreamIDs the scan reported deferred (every valid STE here is
/// non-abort, so all it visited), and its verdict.
fn adoption_view(snap: &RegisterSnapshot, m: &Mem) -> (Vec<u32>, Result<ScanStats, Refusal>) {
    let mut deferred = Vec::new();
    // Exactly what the scan needs, as `run` gives it.
    let slots = validate_geometry(snap, &snap.features(), &any_ram)
        .map_or(0, |g| scratch_slots(&g, &snap.features()));
    let mut scratch = std::vec![ScratchSlot::default(); slots];
    let verdict = check_adoption(snap, &PLATFORM, &any_ram, m, &mut scratch, &mut |f| {
        if let Found::Deferred { sid } = f {
            deferred.push(sid);
        }
        Ok(())
    });
    (deferred, verdict.map(|a| a.stats))
}

// spec: K3, K4, K14, K15
#[test]
fn k3_inspect_and_adoption_see_the_same_stes_on_a_table_with_gaps() {
    // 2^12 StreamIDs: descriptors 0, 1 and 3 valid, the level-2 table of descriptor 1 (at
    // L2B) missing from the dump.
    let bypass = SteConfig::BYPASS.encode().to_words();
    let snap = two_level(12);
    let g = validate_geometry(&snap, &snap.features(), &any_ram).unwrap();
    let mut m = Mem::recording();
    m.region(ST, 128).region(L2A, 0x4000).region(L2C, 0x4000);
    m.write(ST, &[l1std(L2A), l1std(L2B), 0, l1std(L2C)]);
    m.write(L2A + 5 * 64, &bypass);
    m.write(L2A + 200 * 64, &s2_ste(7));
    m.write(L2C, &bypass);
    m.write(L2C + 255 * 64, &bypass);

    // Inspect: every STE the dump holds, and the gap where the missing table starts.
    let (seen, gaps, walked) = visit_past_gaps(&g, &m);
    assert_eq!(seen, [5, 200, 0x300, 0x3ff]);
    assert_eq!(
        gaps,
        [Gap::L2Table {
            index: 1,
            l2: L2B,
            sid: 0x100,
            pa: L2B,
            len: 64
        }]
    );
    assert_eq!((walked.l1_valid, walked.stes_valid, walked.gaps), (3, 4, 1));
    // Adoption: the same STEs up to the gap, where it refuses with the chunk it could not
    // read, exactly as the walk stopping at its first gap does.
    let (deferred, verdict) = adoption_view(&snap, &m);
    let refusal = Refusal::MemoryUnreadable { pa: L2B, len: 512 };
    assert_eq!(verdict, Err(refusal));
    let before_gap: Vec<u32> = seen.iter().copied().filter(|&s| s < 0x100).collect();
    assert_eq!(deferred, before_gap);
    let stopped = visit_stes(&g, &m, OnGap::Stop, &mut |_: &SteEntry| {
        Ok::<(), Refusal>(())
    });
    assert_eq!(stopped, Err(refusal));

    // The dump completed: one walk, one set of STEs, whoever walks.
    m.region(L2B, 0x4000);
    m.write(L2B + 9 * 64, &bypass);
    let (seen, gaps, walked) = visit_past_gaps(&g, &m);
    assert_eq!(seen, [5, 200, 0x109, 0x300, 0x3ff]);
    assert_eq!(gaps, []);
    let (deferred, verdict) = adoption_view(&snap, &m);
    let stats = verdict.expect("adoptable");
    assert_eq!(deferred, seen);
    assert_eq!(
        (
            stats.l1_descriptors,
            stats.l1_valid,
            stats.stes_scanned,
            stats.stes_valid
        ),
        (
            walked.l1_descriptors,
            walked.l1_valid,
            walked.stes_read,
            walked.stes_valid
        )
    );

    // A descriptor the scan refuses (Span 10) is skipped by inspect, the refusal the same.
    m.write(ST + 2 * 8, &[0b1010 | 0x8020_0000]);
    let (seen_past, gaps, _) = visit_past_gaps(&g, &m);
    assert_eq!(seen_past, seen, "descriptor 2 has no STEs to lose");
    let bad = Refusal::L1BadSpan {
        index: Some(2),
        desc: 0b1010 | 0x8020_0000,
    };
    assert_eq!(
        gaps,
        [Gap::BadL1 {
            index: 2,
            desc: 0b1010 | 0x8020_0000,
            refusal: bad
        }]
    );
    let (deferred, verdict) = adoption_view(&snap, &m);
    assert_eq!(verdict, Err(bad));
    assert_eq!(deferred, [5, 200, 0x109]);
    assert!(
        !m.touched(0x8020_0000, 0x4000),
        "a refused descriptor's table is not read"
    );
}

// spec: K15
#[test]
fn k15_a_walk_past_a_gap_reads_each_entry_it_can_and_no_further() {
    // 64 STEs, of which the dump holds 11 (704 bytes): the second chunk of 8 cannot be read.
    let snap = linear(6);
    let g = validate_geometry(&snap, &snap.features(), &any_ram).unwrap();
    let mut m = Mem::recording();
    m.region(ST, 11 * 64);
    for sid in [1u64, 9, 10] {
        m.write(ST + sid * 64, &SteConfig::BYPASS.encode().to_words());
    }
    let (seen, gaps, walked) = visit_past_gaps(&g, &m);
    // STEs 9 and 10 share the failed chunk with the missing ones: read on their own.
    assert_eq!(seen, [1, 9, 10]);
    assert_eq!(
        gaps,
        [Gap::Stes {
            sid: 11,
            pa: ST + 11 * 64,
            len: 64
        }]
    );
    // One chunk, the failed one, then STEs 8 to 11 one by one; nothing after the gap.
    let chunk = READ_CHUNK_WORDS as u64 * 8;
    let mut expected = std::vec![(ST, chunk), (ST + chunk, chunk)];
    expected.extend((8..12).map(|i| (ST + i * 64, 64)));
    assert_eq!(m.reads(), expected);
    assert_eq!((walked.reads, walked.stes_read), (6, 11));
    // Stopping at the gap reads the failed chunk once and refuses it whole: the scan's read
    // pattern, not one read more.
    m.reset();
    let stopped = visit_stes(&g, &m, OnGap::Stop, &mut |_: &SteEntry| {
        Ok::<(), Refusal>(())
    });
    assert_eq!(
        stopped,
        Err(Refusal::MemoryUnreadable {
            pa: ST + chunk,
            len: chunk
        })
    );
    assert_eq!(m.reads(), [(ST, chunk), (ST + chunk, chunk)]);
}

// spec: K1, K4
#[test]
fn k1_boot_runs_the_pipeline_of_check_adoption_with_the_drivers_own_feature_checks() {
    // A table check_adoption adopts, on an SMMU whose command queue (IDR1.CMDQS 0) is below
    // the driver's minimum: the ID registers decoded as they are pass, smmu::probe::check
    // does not.
    let snap = linear(4);
    let m = linear_mem(&[(1, SteConfig::BYPASS.encode().to_words())]);
    assert!(run(&snap, &m).is_ok());
    assert_eq!(
        smmu::probe::check(&snap.ids),
        Err(smmu::ProbeError::CmdqTooSmall { log2_entries: 0 })
    );
    // The crash kernel's bring-up runs the same pipeline with probe's checks: nothing is
    // adopted, nor reset (the driver cannot run this SMMU at all), and no register is written
    // (`Regs` panics on a write).
    let [idr0, idr1, idr2, idr3, idr4, idr5] = snap.ids.idr.map(u64::from);
    let regs = Regs(BTreeMap::from([
        (offset::IDR0, idr0),
        (offset::IDR1, idr1),
        (offset::IDR2, idr2),
        (offset::IDR3, idr3),
        (offset::IDR4, idr4),
        (offset::IDR5, idr5),
        (offset::CR0, u64::from(snap.cr0)),
        (offset::STRTAB_BASE, snap.strtab_base),
        (offset::STRTAB_BASE_CFG, u64::from(snap.strtab_base_cfg)),
    ]));
    let hal = crate::fuzzing::ImageHal::new(&m);
    let booted = boot(&regs, &hal, &PLATFORM, &AdoptOptions::default());
    assert!(
        matches!(
            booted.as_ref().err(),
            Some(smmu::Error::Probe(smmu::ProbeError::CmdqTooSmall { .. }))
        ),
        "{:?}",
        booted.as_ref().err()
    );
}

/// A small xorshift generator for the walk's property test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A table for the walk's property test: registers and memory with parts missing, bad and
/// wild descriptors, and random valid STEs.
fn gappy_table(seed: u64) -> (RegisterSnapshot, Mem) {
    let mut r = Rng(seed | 1);
    let mut m = Mem::recording();
    // Any whole number of words of a region, nothing, or (most often) all of it.
    let part = |r: &mut Rng, bytes: u64| match r.below(8) {
        0 => 0,
        1 | 2 => r.below(bytes / 8 + 1) * 8,
        _ => bytes,
    };
    let random_stes = |r: &mut Rng, m: &mut Mem, base: u64, count: u64| {
        for i in 0..count {
            // Word 0 with V set: the walk looks at nothing else.
            if r.below(4) == 0 {
                m.store(base + i * 64, r.next() | 1);
            }
        }
    };
    if r.below(3) == 0 {
        let log2size = r.below(8) as u32;
        let bytes = 64u64 << log2size;
        let held = part(&mut r, bytes);
        m.region(ST, held);
        random_stes(&mut r, &mut m, ST, held / 64);
        return (linear(log2size), m);
    }
    let log2size = 8 + r.below(5) as u32;
    let entries = 1u64 << (log2size - 8);
    let held = part(&mut r, entries * 8);
    m.region(ST, held);
    let slots = [L2A, L2B, L2C, 0x8010_c000];
    for i in 0..held / 8 {
        let desc = match r.below(10) {
            0..=2 => 0,
            3 => 0b1010 | slots[r.below(4) as usize], // Span 10: refused (K3)
            4 => r.next(),
            _ => l1std(slots[r.below(4) as usize]),
        };
        m.store(ST + i * 8, desc);
    }
    for slot in slots {
        if r.below(4) != 0 {
            let held = part(&mut r, 0x4000);
            m.region(slot, held);
            random_stes(&mut r, &mut m, slot, held / 64);
        }
    }
    (two_level(log2size), m)
}

/// What one walk saw: valid STEs and level-2 tables announced.
#[derive(Default)]
struct Seen {
    sids: Vec<u32>,
    l2s: Vec<u64>,
}

impl SteVisitor for Seen {
    type Error = Refusal;

    fn level2(&mut self, _: u32, l2: u64) -> Result<(), Refusal> {
        self.l2s.push(l2);
        Ok(())
    }

    fn ste(&mut self, e: &SteEntry) -> Result<(), Refusal> {
        self.sids.push(e.sid);
        Ok(())
    }
}

/// The first StreamID the gap's part of the table would have held: where the walk that
/// stops at `refusal` (the same gap, whole chunk) stopped visiting.
fn stopped_before(gap: &Gap, refusal: &Refusal) -> u64 {
    let chunk_pa = match *refusal {
        Refusal::MemoryUnreadable { pa, .. } => pa,
        _ => 0,
    };
    match *gap {
        Gap::Stes { sid, pa, .. } | Gap::L2Table { sid, pa, .. } => {
            u64::from(sid) - (pa - chunk_pa) / 64
        }
        Gap::L1Descriptors { index, pa, .. } => (u64::from(index) - (pa - chunk_pa) / 8) << 8,
        Gap::BadL1 { index, .. } => u64::from(index) << 8,
    }
}

proptest! {
    #![proptest_config(cfg())]

    // spec: B1, K3, K15 — whatever the memory holds or lacks, the walk never panics, visits
    // valid STEs in StreamID order inside the table, reads at most a chunk at a time inside
    // the table or a level-2 table it announced, and the walk that stops at the first gap
    // visits exactly what the one going on past it visits before that gap's chunk.
    #[test]
    fn the_walk_past_gaps_and_the_walk_that_stops_agree(seed in any::<u64>()) {
        let (snap, m) = gappy_table(seed);
        let g = validate_geometry(&snap, &snap.features(), &any_ram).unwrap();
        let mut past = Seen::default();
        let mut gaps = Vec::new();
        let walked = visit_stes(&g, &m, OnGap::Skip(&mut |gap| gaps.push(gap)), &mut past);
        prop_assert!(walked.is_ok());
        prop_assert!(past.sids.windows(2).all(|w| w[0] < w[1]), "{:?}", past.sids);
        prop_assert!(past.sids.iter().all(|&s| u64::from(s) < g.num_sids()));
        for (pa, len) in m.reads() {
            let inside = |b: u64, l: u64| b <= pa && pa + len <= b + l;
            prop_assert!(len <= READ_CHUNK_WORDS as u64 * 8 && pa % 8 == 0);
            prop_assert!(
                inside(g.base(), g.table_bytes()) || past.l2s.iter().any(|&l2| inside(l2, 0x4000)),
                "read {:#x}+{:#x}", pa, len
            );
        }
        let mut stopping = Seen::default();
        match visit_stes(&g, &m, OnGap::Stop, &mut stopping) {
            Ok(_) => {
                prop_assert!(gaps.is_empty(), "{:?}", gaps);
                prop_assert_eq!(&stopping.sids, &past.sids);
            }
            Err(refusal) => {
                let first = gaps.first().copied();
                prop_assert!(first.is_some(), "refused {:?} without a gap", refusal);
                let gap = match refusal {
                    Refusal::MemoryUnreadable { pa, len } => {
                        // The gap of the first entry of that chunk that could not be read.
                        // Under a failed level-1 chunk, the walk past it visits (and may find
                        // gaps under) the chunk's descriptors before that one; under any other
                        // chunk, it is the first gap.
                        let l1_chunk = g.format() == Format::TwoLevel
                            && g.base() <= pa
                            && pa < g.base() + g.table_bytes();
                        let gap = gaps.iter().copied().find(|gap| {
                            matches!(gap, Gap::L1Descriptors { .. }) == l1_chunk
                                && matches!(gap.refusal(),
                                    Refusal::MemoryUnreadable { pa: at, .. }
                                        if pa <= at && at < pa + len)
                        });
                        prop_assert!(gap.is_some(), "{:?} for {:?}", refusal, gaps);
                        if !l1_chunk {
                            prop_assert_eq!(gap, first);
                        }
                        gap.unwrap()
                    }
                    // A descriptor K3 refuses: read without failure, so the first gap.
                    r => {
                        let first = first.unwrap();
                        prop_assert!(matches!(first, Gap::BadL1 { .. }), "{:?}", first);
                        prop_assert_eq!(first.refusal(), r);
                        first
                    }
                };
                let before = stopped_before(&gap, &refusal);
                let expected: Vec<u32> =
                    past.sids.iter().copied().filter(|&s| u64::from(s) < before).collect();
                prop_assert_eq!(&stopping.sids, &expected);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals.

fn one_of_each() -> Vec<Refusal> {
    let e = DecodeError::Reserved {
        structure: "STE",
        field: "Config",
        value: 1,
    };
    let mut v = std::vec![
        Refusal::NotCrashKernel,
        Refusal::SmmuDisabled { cr0: 0 },
        Refusal::NotCoherent,
        Refusal::ServiceFailure {
            gerror: 0x100,
            gerrorn: 0
        },
        Refusal::E2hMismatch {
            found: false,
            expected: true
        },
        Refusal::ReservedFormat { fmt: 2 },
        Refusal::TwoLevelUnsupported,
        Refusal::Log2SizeExceedsSidSize {
            log2size: 9,
            sid_bits: 8
        },
        Refusal::BadSplit { split: 6 },
        Refusal::Log2SizeBelowSplit {
            log2size: 7,
            split: 8
        },
        Refusal::L1TooLarge {
            log2size: 26,
            split: 8
        },
        Refusal::LinearTooLarge {
            log2size: 26,
            max: 25
        },
        Refusal::BaseMisaligned {
            base: 64,
            align: 128
        },
        Refusal::BaseBeyondOas {
            base: 1 << 40,
            oas_bits: 40
        },
        Refusal::TableEndBeyondOas {
            base: 0,
            bytes: 1 << 37,
            oas_bits: 32
        },
        Refusal::NotRam { base: 0, bytes: 64 },
        Refusal::L1BadSpan {
            index: Some(1),
            desc: 8
        },
        Refusal::L1NullL2Ptr {
            index: None,
            desc: 9
        },
        Refusal::L1Misaligned {
            index: Some(2),
            l2ptr: 0x1000
        },
        Refusal::L1BeyondOas {
            index: None,
            l2ptr: 1 << 48,
            oas_bits: 48
        },
        Refusal::SteReserved { sid: 1, error: e },
        Refusal::VmidZero { sid: 1 },
        Refusal::VmidOutOfRange {
            sid: 1,
            vmid: 256,
            bits: 8
        },
        Refusal::CdTableNull { sid: 1 },
        Refusal::CdMaxExceedsSsidSize {
            sid: 1,
            cd_max: 9,
            ssid_bits: 8
        },
        Refusal::CdFormatUnsupported { sid: 1, fmt: 3 },
        Refusal::CdTableMisaligned {
            sid: 1,
            ptr: 64,
            align: 128
        },
        Refusal::CdTableBeyondOas {
            sid: 1,
            ptr: 0,
            bytes: 64,
            oas_bits: 32
        },
        Refusal::CdLeafNull {
            sid: 1,
            l1_index: 0
        },
        Refusal::CdLeafMisaligned {
            sid: 1,
            l1_index: 0,
            ptr: 0x1000,
            align: 0x10000
        },
        Refusal::CdLeafBeyondOas {
            sid: 1,
            l1_index: 0,
            ptr: 1 << 40,
            oas_bits: 40
        },
        Refusal::CdReserved {
            sid: 1,
            ssid: 2,
            error: e
        },
        Refusal::AsidZero { sid: 1, ssid: 0 },
        Refusal::AsidOutOfRange {
            sid: 1,
            ssid: 0,
            asid: 256,
            bits: 8
        },
        Refusal::AsidConflict {
            sid: 1,
            ssid: 0,
            asid: 1
        },
        Refusal::VmidConflict { sid: 1, vmid: 1 },
        Refusal::SteStrwIllegal { sid: 1, strw: 1 },
    ];
    // One refusal per ILLEGAL rule: STE rules as SteIllegal, CD rules as CdIllegal.
    for &rule in Illegal::ALL {
        v.push(if rule.code().starts_with("ste-") {
            Refusal::SteIllegal {
                sid: 1,
                rule,
                value: 1,
            }
        } else {
            Refusal::CdIllegal {
                sid: 1,
                ssid: 0,
                rule,
                value: 1,
            }
        });
    }
    v.extend([
        overlap(StructureKind::StreamTable, StructureKind::L2Table),
        overlap(StructureKind::CdTable, StructureKind::StreamTable),
        overlap(StructureKind::StreamTable, StructureKind::CdLeaf),
        overlap(StructureKind::L2Table, StructureKind::L2Table),
        overlap(StructureKind::L2Table, StructureKind::CdTable),
        overlap(StructureKind::CdLeaf, StructureKind::L2Table),
        overlap(StructureKind::CdTable, StructureKind::CdTable),
        overlap(StructureKind::CdTable, StructureKind::CdLeaf),
        overlap(StructureKind::CdLeaf, StructureKind::CdLeaf),
    ]);
    for kind in [RootKind::S2ttb, RootKind::Ttb0, RootKind::Ttb1] {
        for structure in [
            StructureKind::StreamTable,
            StructureKind::L2Table,
            StructureKind::CdTable,
            StructureKind::CdLeaf,
        ] {
            v.push(Refusal::RootOverlaps {
                root: Root {
                    kind,
                    base: 0x8000_0000,
                    bytes: 0x1000,
                    entry: 0x9000_0000,
                },
                structure: Structure {
                    kind: structure,
                    base: 0x8000_0000,
                    bytes: 0x4000,
                    owner: 1,
                },
            });
        }
    }
    v.extend([
        Refusal::AsidAlias {
            sid: 1,
            ssid: 2,
            asid: 3,
            first_cd: 0x8000,
        },
        Refusal::VmidAlias {
            sid: 1,
            vmid: 2,
            first_ste: 0x8000,
        },
        Refusal::ScanBudgetExceeded {
            sid: 1,
            budget: CD_SCAN_BUDGET,
        },
        Refusal::TooManyStructures { max: 1 },
        Refusal::ScratchTooSmall {
            needed: 2,
            given: 1,
        },
        Refusal::MemoryUnreadable { pa: 0, len: 8 },
    ]);
    v
}

fn overlap(a: StructureKind, b: StructureKind) -> Refusal {
    let s = |kind| Structure {
        kind,
        base: 0x8000_0000,
        bytes: 0x4000,
        owner: 1,
    };
    Refusal::StructuresOverlap {
        first: s(a),
        second: s(b),
    }
}

// spec: K1, K2, K3, K4, K13, K14
#[test]
fn every_refusal_has_its_own_listed_code_and_a_message() {
    let all = one_of_each();
    let codes: Vec<&str> = all.iter().map(Refusal::code).collect();
    assert_eq!(
        codes.as_slice(),
        all_codes(),
        "all_codes lists every code in order"
    );
    let unique: BTreeSet<&str> = codes.iter().copied().collect();
    assert_eq!(unique.len(), codes.len(), "codes are distinct");
    for (r, c) in all.iter().zip(&codes) {
        assert!(c
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'));
        let text = std::format!("{r}");
        assert!(text.len() > 10, "{c}: {text}");
    }
    // The L1 index is filled in by with_l1_index and shown.
    let r = Refusal::L1BadSpan {
        index: None,
        desc: 8,
    }
    .with_l1_index(5);
    assert!(std::format!("{r}").contains("descriptor 5"));
    assert_eq!(Refusal::NotCoherent.with_l1_index(5), Refusal::NotCoherent);
}

// ---------------------------------------------------------------------------------------------
// B1, B2: arbitrary input.

/// A fuzz input that builds an adoptable linear table: 4 STEs (bypass, stage 2 VMID 9,
/// stage 1 with 4 CDs, invalid).
const ADOPTABLE: &[u8] = &[
    8,    // no fault injected
    0x1e, // CD2L, ASID16, VMID16, Hyp; linear-only hardware
    0,    // linear
    2,    // LOG2SIZE 2
    1,    // SPLIT 8
    1,    // SIDSIZE 3
    5,    // SSIDSIZE 5
    0,    // OAS 48
    1,    // base ST_BASE
    2,    // no RAM check
    0,    // no E2H expectation
    0, 0, // no active global errors
    1, // the sink accepts everything
    5, // SID 0: bypass
    8, 0, 8, 2, 4, // SID 1: stage 2, VMID 9, a legal 4KB walk, S2TTB apart
    6, 0, 0, 2, 5, 0, // SID 2: stage 1 (EL1), CD slot 0, linear, S1CDMax 2, pointer as is
    0, // SID 3: invalid
    2, 0, 4, 0, // CD 0: ASID 5, TTB0 half disabled
    0, // CD 1: invalid
    2, 0, 5, 0, // CD 2: ASID 6
    2, 0, 4, 0, // CD 3: ASID 5 again
];

// spec: B1, B2, K14
#[test]
fn fuzz_entry_point_reaches_an_adoptable_verdict() {
    let out = fuzzing::validate_image(ADOPTABLE).unwrap();
    let stats = out.verdict.unwrap();
    assert_eq!(
        (stats.stes_valid, stats.vmids, stats.asids, stats.deferred),
        (3, 1, 3, 3)
    );
    assert_eq!(out.found, 7);
    assert!(fuzzing::validate_image(&ADOPTABLE[..11]).is_none());
    // The same input with each fault injected is refused for that reason.
    for (fault, code) in [
        (1, "not-crash-kernel"),
        (2, "smmu-disabled"),
        (3, "not-coherent"),
        (5, "service-failure"),
    ] {
        let mut input = ADOPTABLE.to_vec();
        input[0] = fault;
        let out = fuzzing::validate_image(&input).unwrap();
        assert_eq!(out.verdict.unwrap_err().code(), code);
        assert_eq!(out.reads, 0);
    }
    // Non-coherent with cache maintenance is adopted (K17).
    let mut input = ADOPTABLE.to_vec();
    input[0] = 4;
    assert!(fuzzing::validate_image(&input).unwrap().verdict.is_ok());
    // The sink refusing its 2nd report.
    let mut input = ADOPTABLE.to_vec();
    input[13] = 8;
    let out = fuzzing::validate_image(&input).unwrap();
    assert_eq!(out.verdict.unwrap_err().code(), "vmid-conflict");
    assert_eq!(out.found, 2);
}

// spec: B1, B2, K15
#[test]
fn fuzz_entry_point_on_pseudo_random_inputs_covers_verdicts() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let runs = if cfg!(miri) { 3 } else { 1500 };
    let mut codes = BTreeSet::new();
    let mut adopted = 0;
    for _ in 0..runs {
        let len = 12 + (next() % 600) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Keep most inputs free of injected faults so that the scan is reached.
        if data[0] % 16 < 8 && next() % 4 != 0 {
            data[0] = 8;
        }
        match fuzzing::validate_image(&data).unwrap().verdict {
            Ok(_) => adopted += 1,
            Err(r) => {
                codes.insert(r.code());
            }
        }
    }
    if !cfg!(miri) {
        assert!(adopted > 0, "no adoptable input among {runs}");
        assert!(codes.len() >= 15, "only {codes:?}");
    }
}

proptest! {
    #![proptest_config(cfg())]

    // spec: B1, B2, K15
    #[test]
    fn validate_image_never_panics_nor_reads_outside_described_ranges(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let _ = fuzzing::validate_image(&data);
    }

    // spec: B1, K2, K3
    #[test]
    fn register_and_descriptor_checks_never_panic(
        idr in proptest::array::uniform6(any::<u32>()),
        cfg_word in any::<u32>(),
        base in any::<u64>(),
        desc in any::<u64>(),
        oas_bits in 0u32..80,
    ) {
        let s = RegisterSnapshot {
            ids: IdRegs { idr, iidr: 0, aidr: 0 },
            strtab_base: base,
            strtab_base_cfg: cfg_word,
            ..RegisterSnapshot::default()
        };
        let f = s.features();
        if let Ok(g) = validate_geometry(&s, &f, &any_ram) {
            prop_assert!(g.log2size() <= u32::from(f.sid_bits));
            prop_assert_eq!(g.base() % g.table_bytes().max(64), 0);
            prop_assert!(u128::from(g.base()) + u128::from(g.table_bytes())
                <= 1u128 << f.oas_bits());
            prop_assert!(g.num_sids() <= 1 << 31);
        }
        if let Ok(Some(l2)) = validate_l1(desc, oas_bits) {
            prop_assert!(l2 != 0 && l2 % 0x4000 == 0);
            prop_assert!(oas_bits >= 64 || u128::from(l2) + 0x4000 <= 1u128 << oas_bits);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 10: overlapping structures (K18), tags (K19), the CD budget (K20), fields by
// configuration (K21).

/// A 2-level table of 2^19 StreamIDs: its level-1 table (2^11 descriptors) is 16 KiB, so a
/// descriptor can point at it.
fn two_level_16k() -> RegisterSnapshot {
    two_level(19)
}

// spec: K18
#[test]
fn k18_each_kind_of_overlap_is_refused_with_its_own_code() {
    let l1 = |descs: &[(u64, u64)]| {
        let mut m = Mem::recording();
        m.region(ST, 16 << 10);
        for &(i, d) in descs {
            m.write(ST + i * 8, &[d]);
        }
        m.region(L2A, 0x8000);
        m
    };
    // An L1 descriptor whose level-2 table is the L1 table itself.
    assert_eq!(
        code(&two_level_16k(), &l1(&[(0, l1std(ST))])),
        "l2-table-overlaps-stream-table"
    );
    // Two descriptors sharing one level-2 table.
    assert_eq!(
        code(&two_level_16k(), &l1(&[(0, l1std(L2A)), (1, l1std(L2A))])),
        "l2-tables-overlap"
    );
    // A CD table inside a level-2 table.
    let mut m = l1(&[(0, l1std(L2A)), (1, l1std(L2B))]);
    m.write(L2A + 3 * 64, &s1_ste(L2B + 0x100, S1Fmt::Linear, 0));
    assert_eq!(code(&two_level_16k(), &m), "cd-table-overlaps-l2-table");
    let r = run(&two_level_16k(), &m).unwrap_err();
    let Refusal::StructuresOverlap { first, second } = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (first.kind, first.base, first.owner),
        (StructureKind::L2Table, L2B, 1)
    );
    assert_eq!(
        (second.kind, second.base, second.owner),
        (StructureKind::CdTable, L2B + 0x100, 3)
    );
    // A CD table inside the (linear) stream table.
    let m = linear_mem(&[(1, s1_ste(ST + 0x200, S1Fmt::Linear, 0))]);
    assert_eq!(code(&linear(4), &m), "cd-table-overlaps-stream-table");
    // Two CD tables that overlap without being one (same base, other S1CDMax).
    let m = with_cds(
        linear_mem(&[
            (1, s1_ste(CDT, S1Fmt::Linear, 2)),
            (2, s1_ste(CDT, S1Fmt::Linear, 3)),
        ]),
        &[],
    );
    assert_eq!(code(&linear(4), &m), "cd-tables-overlap");
    // A leaf CD table on its own level-1 CD table, and two L1CDs sharing one leaf. (At an
    // address with bit 31 clear, the descriptors read as CDs are invalid ones.)
    const LOW: u64 = 0x7000_0000;
    let leafy = |l1cds: &[u64]| {
        let mut m = linear_mem(&[(1, s1_ste(LOW, S1Fmt::TwoLevel4K, 7))]);
        m.region(LOW, 0x3000);
        m.write(LOW, l1cds);
        m
    };
    assert_eq!(
        code(&linear(4), &leafy(&[l1cd(LOW)])),
        "cd-leaf-overlaps-cd-table"
    );
    assert_eq!(
        code(
            &linear(4),
            &leafy(&[l1cd(LOW + 0x1000), l1cd(LOW + 0x1000)])
        ),
        "cd-leaves-overlap"
    );
    // A leaf inside the stream table.
    let mut m = linear_mem(&[(1, s1_ste(CDT, S1Fmt::TwoLevel4K, 7))]);
    m.region(CDT, 16);
    m.write(CDT, &[l1cd(ST)]);
    assert_eq!(code(&linear(4), &m), "cd-leaf-overlaps-stream-table");
    // A leaf inside a level-2 table.
    let mut m = l1(&[(0, l1std(L2A))]);
    m.write(L2A, &s1_ste(CDT, S1Fmt::TwoLevel4K, 7));
    m.region(CDT, 16);
    m.write(CDT, &[l1cd(L2A + 0x1000)]);
    assert_eq!(code(&two_level_16k(), &m), "cd-leaf-overlaps-l2-table");
    // Disjoint structures, and one CD table shared by two STEs, are adopted.
    let m = with_cds(
        linear_mem(&[
            (1, s1_ste(CDT, S1Fmt::Linear, 2)),
            (2, s1_ste(CDT, S1Fmt::Linear, 2)),
        ]),
        &[(0, cd(7))],
    );
    let (stats, _) = run(&linear(4), &m).unwrap();
    assert_eq!((stats.cd_tables, stats.structures), (1, 2));
}

// spec: K18, K15
#[test]
fn k18_the_structure_list_is_bounded_and_sized_before_the_walk() {
    let s = linear(4);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    let needed = scratch_slots(&g, &s.features());
    assert!(needed <= MAX_SCRATCH_SLOTS);
    let m = linear_mem(&[]);
    let mut small = std::vec![ScratchSlot::default(); needed - 1];
    assert_eq!(
        scan(&g, &s.features(), &m, &mut small, &mut |_| Ok(())),
        Err(Refusal::ScratchTooSmall {
            needed: needed as u64,
            given: needed as u64 - 1
        })
    );
    // Garbage in the scratch area does not matter: the scan initialises what it uses.
    let mut dirty = std::vec![ScratchSlot::default(); needed];
    let mut junk = Mem::recording();
    junk.region(ST, 16 * 64);
    assert!(scan(&g, &s.features(), &junk, &mut dirty, &mut |_| Ok(())).is_ok());
}

// spec: K19
#[test]
fn k19_stage1_s2vmid_is_checked_and_reserved_when_stage2_exists() {
    let mut w = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::S2VMID.set(&mut w, 0x42);
    let m = with_cds(linear_mem(&[(1, w)]), &[(0, cd(5))]);
    let (_, found) = run(&linear(4), &m).unwrap();
    assert!(found.contains(&Found::Vmid { sid: 1, vmid: 0x42 }));
    // Without stage 2 (S2P = 0) the field is IGNORED: not reported.
    let no_s2 = with_idr0(linear(4), idr0_full() & !IDR0::S2P::SET.value);
    let (_, found) = run(&no_s2, &m).unwrap();
    assert!(!found.iter().any(|f| matches!(f, Found::Vmid { .. })));
    // 8-bit VMIDs: 0x142 does not fit.
    ste::fields::S2VMID.set(&mut w, 0x142);
    let m = with_cds(linear_mem(&[(1, w)]), &[(0, cd(5))]);
    let vmid8 = with_idr0(linear(4), idr0_full() & !IDR0::VMID16::SET.value);
    assert_eq!(code(&vmid8, &m), "vmid-out-of-range");
    // StreamWorld EL2: S2VMID IGNORED, whatever it holds.
    ste::fields::STRW.set(&mut w, 0b10);
    let m = with_cds(linear_mem(&[(1, w)]), &[(0, cd(5))]);
    assert!(run(&vmid8, &m).is_ok());
}

// spec: K19
#[test]
fn k19_one_tag_naming_two_configurations_is_refused() {
    // ASID 5 in two CDs with different TTB0.
    let mut other = cd(5);
    cdf::TTB0.set(&mut other, 0xdead_0000 >> cdf::TTB0.lo);
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 2))]),
        &[(0, cd(5)), (1, other)],
    );
    let r = run(&linear(4), &m).unwrap_err();
    assert_eq!(
        r,
        Refusal::AsidAlias {
            sid: 1,
            ssid: 1,
            asid: 5,
            first_cd: CDT
        }
    );
    // Fields a TLB entry never caches (S, R, A, PARTID) may differ.
    let mut same = cd(5);
    cdf::R.set(&mut same, 0);
    cdf::PARTID.set(&mut same, 9);
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 2))]),
        &[(0, cd(5)), (1, same)],
    );
    assert!(run(&linear(4), &m).is_ok());
    // VMID 7 on two stage-2 STEs with different S2TTB.
    let mut s2 = stage2();
    s2.ttb = 0xa000_0000;
    let m = linear_mem(&[(1, s2_ste(7)), (2, ste_words(Translation::Stage2(s2), 7))]);
    assert_eq!(
        run(&linear(4), &m).unwrap_err(),
        Refusal::VmidAlias {
            sid: 2,
            vmid: 7,
            first_ste: ST + 64
        }
    );
    // ... and VMID 7 on a stage-2 STE and on a stage-1-only one (no stage 2 at all).
    let mut w = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::S2VMID.set(&mut w, 7);
    let m = with_cds(linear_mem(&[(1, s2_ste(7)), (2, w)]), &[(0, cd(5))]);
    assert_eq!(code(&linear(4), &m), "vmid-alias");
}

/// A linear stream table whose first `tables` stage-1 STEs point at their own linear CD
/// tables of 2^20 CDs (repeated blocks: 64 MiB each, a few KiB of image).
fn big_cd_tables(tables: u64, asids: u64) -> Mem {
    let mut m = Mem::recording();
    m.region(ST, 16 * 64);
    let block: Vec<u64> = (1..=asids).flat_map(|a| cd(a as u16)).collect();
    for t in 0..tables {
        let base = 0x40_0000_0000 + t * (64 << 20);
        m.write(ST + t * 64, &s1_ste(base, S1Fmt::Linear, 20));
        m.repeat(base, &block, (1 << 20) / asids);
    }
    m
}

// spec: K20
#[test]
#[cfg_attr(
    miri,
    ignore = "reads 2^21 CDs: minutes under Miri; the bounds are host-tested"
)]
fn k20_each_distinct_cd_table_is_scanned_once_within_the_budget() {
    // 16 STEs sharing one table of 2^20 CDs: read once.
    let mut m = Mem::new();
    m.region(ST, 16 * 64);
    let block: Vec<u64> = (1..=64).flat_map(|a| cd(a as u16)).collect();
    m.repeat(0x40_0000_0000, &block, (1 << 20) / 64);
    for sid in 0..16 {
        m.write(ST + sid * 64, &s1_ste(0x40_0000_0000, S1Fmt::Linear, 20));
    }
    let (stats, _) = run(&linear(4), &m).unwrap();
    assert_eq!((stats.cd_tables, stats.cds_scanned), (1, 1 << 20));
    // Two distinct tables: exactly the budget, adopted.
    let (stats, _) = run(&linear(4), &big_cd_tables(2, 64)).unwrap();
    assert_eq!(stats.cds_scanned, CD_SCAN_BUDGET);
    // A third one would exceed it: refused before it is read.
    let m = big_cd_tables(3, 64);
    assert_eq!(
        run(&linear(4), &m).unwrap_err(),
        Refusal::ScanBudgetExceeded {
            sid: 2,
            budget: CD_SCAN_BUDGET
        }
    );
    assert!(!m.touched(0x40_0000_0000 + 2 * (64 << 20), 64 << 20));
}

// spec: K21
#[test]
fn k21_ignored_fields_never_refuse_and_illegal_ones_always_do() {
    // Abort and bypass STEs with garbage in every field their Config ignores.
    let mut abort = [u64::MAX; 8];
    ste::fields::CONFIG.set(&mut abort, 0);
    let mut bypass = SteConfig::BYPASS.encode().to_words();
    ste::fields::STRW.set(&mut bypass, 0b11);
    ste::fields::S1CSH.set(&mut bypass, 0b01);
    ste::fields::S2TG.set(&mut bypass, 0b11);
    ste::fields::EATS.set(&mut bypass, 0b10);
    // STRW on a stage-2 STE is IGNORED.
    let mut s2 = s2_ste(3);
    ste::fields::STRW.set(&mut s2, 0b01);
    let m = linear_mem(&[(0, abort), (1, bypass), (2, s2)]);
    let (stats, _) = run(&linear(4), &m).unwrap();
    assert_eq!(stats.stes_valid, 3);
    // STRW 0b01 on a stage-1 STE is ILLEGAL (Non-secure).
    let mut s1 = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::STRW.set(&mut s1, 0b01);
    let m = with_cds(linear_mem(&[(1, s1)]), &[(0, cd(5))]);
    assert_eq!(
        run(&linear(4), &m).unwrap_err(),
        Refusal::SteStrwIllegal { sid: 1, strw: 1 }
    );
    // S1CDMax is IGNORED on an SMMU without substreams: one CD, not 2^7.
    let m = with_cds(
        linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 7))]),
        &[(0, cd(5))],
    );
    let no_ssid = snap_with(idr0_full(), idr1(16, 0), 48, strtab_cfg(0, 0, 4), ST);
    let (stats, _) = run(&no_ssid, &m).unwrap();
    assert_eq!(stats.cds_scanned, 1);
    // S1STALLD = 1 where the stall model does not allow it.
    let mut w = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::S1STALLD.set(&mut w, 1);
    let m = with_cds(linear_mem(&[(1, w)]), &[(0, cd(5))]);
    let no_stall = with_idr0(linear(4), idr0_full() | IDR0::STALL_MODEL.val(0b01).value);
    assert_eq!(code(&no_stall, &m), "ste-s1stalld-illegal");
    assert!(run(&linear(4), &m).is_ok());
    // A CD asking for hardware access-flag updates the SMMU lacks.
    let mut c = cd(5);
    cdf::HA.set(&mut c, 1);
    let m = with_cds(linear_mem(&[(1, s1_ste(CDT, S1Fmt::Linear, 0))]), &[(0, c)]);
    assert_eq!(code(&linear(4), &m), "cd-ha-unsupported");
}

// spec: K18, K19, K20, K21 — the README's adoption section lists every refusal code.
#[test]
#[cfg_attr(miri, ignore = "reads a text file, no unsafe code; minutes under Miri")]
fn the_readme_lists_every_refusal_code() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("### Adoption (`smmu-kdump`)")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has an adoption section");
    for code in all_codes() {
        assert!(
            section.contains(&std::format!("| `{code}` |")),
            "README: refusal code {code} is not listed"
        );
    }
}

// spec: K21, K20
#[test]
#[cfg_attr(miri, ignore = "reads 2^20 CDs")]
fn k21_revalidation_checks_tags_and_reads_a_shared_cd_table_once() {
    let mut m = Mem::new();
    let block: Vec<u64> = (1..=64).flat_map(|a| cd(a as u16)).collect();
    m.repeat(0x40_0000_0000, &block, (1 << 20) / 64);
    let s = linear(4);
    let g = validate_geometry(&s, &s.features(), &any_ram).unwrap();
    let ste = s1_ste(0x40_0000_0000, S1Fmt::Linear, 20);
    let mut r = Revalidation::new();
    let mut asids = BTreeSet::new();
    // Four STEs sharing a 2^20-CD table: twice the budget if each walked it.
    for sid in 0..4 {
        r.ste(sid, ste, &g, &s.features(), &m, &mut |f| {
            if let Found::Asid { asid, .. } = f {
                asids.insert(asid);
            }
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(asids.len(), 64);
    assert_eq!(m.counters().bytes, 64 << 20, "the table is read once");
    // A tag the sink does not know (not reserved at scan time) rejects the STE.
    let mut r = Revalidation::new();
    let refused = r.ste(9, s2_ste(0x33), &g, &s.features(), &m, &mut |f| match f {
        Found::Vmid { sid, vmid } => Err(Refusal::VmidConflict { sid, vmid }),
        _ => Ok(()),
    });
    assert_eq!(refused, Err(Refusal::VmidConflict { sid: 9, vmid: 0x33 }));
}

// ---------------------------------------------------------------------------------------------
// Issue 25: every ILLEGAL class (K21), StreamWorlds (K21, K19), translation roots (K18).

use smmu::arch::regs::IDR3;

/// A linear table of 16 STEs with the stage-2 STE `s2` (VMID 5) at StreamID 1.
fn s2_mem(edit: impl FnOnce(&mut Stage2Ste, &mut [u64; 8])) -> Mem {
    let mut s2 = stage2();
    let mut w = ste_words(Translation::Stage2(s2), 5);
    edit(&mut s2, &mut w);
    let mut words = ste_words(Translation::Stage2(s2), 5);
    // Raw fields the edit set beyond the decoded ones (S2DS, S2SL0_2, PRIVCFG, ...).
    for (i, x) in w.iter().enumerate() {
        words[i] |= x & !ste_words(Translation::Stage2(stage2()), 5)[i];
    }
    linear_mem(&[(1, words)])
}

/// A stage-1 STE at StreamID 1 (world from `strw`) over one CD `c` at `CDT`.
fn s1_mem(strw: u64, c: [u64; 8]) -> Mem {
    let mut w = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::STRW.set(&mut w, strw);
    with_cds(linear_mem(&[(1, w)]), &[(0, c)])
}

fn with_aidr_minor(mut s: RegisterSnapshot, minor: u32) -> RegisterSnapshot {
    s.ids.aidr = minor;
    s
}

fn with_idr3(mut s: RegisterSnapshot, idr3: u32) -> RegisterSnapshot {
    s.ids.idr[3] = idr3;
    s
}

fn with_idr5(mut s: RegisterSnapshot, idr5: u32) -> RegisterSnapshot {
    s.ids.idr[5] = idr5;
    s
}

/// SMMUv3.1 (`AIDR.ArchMinorRev` = 1): out-of-range sizes are ILLEGAL.
fn v31() -> RegisterSnapshot {
    with_aidr_minor(linear(4), 1)
}

// spec: K21 — §5.2 S2SL0 and DDI 0487 D8.2 (Tables D8-19..41): the start level must match
// S2T0SZ and S2TG, with at most 16 concatenated tables; level 3 (4KB) needs IDR3.STT, 16KB
// level 0 needs DS, 64KB SL0 = 0b11 is reserved.
#[test]
fn k21_s2sl0_start_level_against_s2t0sz_granule_and_concatenation() {
    // 40-bit IPA from level 2 with 4KB: 19 bits at the start level, 64 tables.
    let m = s2_mem(|s2, _| s2.sl0 = 0);
    assert_eq!(code(&v31(), &m), "ste-s2sl0-inconsistent");
    // 44-bit IPA from level 1: 32 concatenated tables (more than 16).
    let m = s2_mem(|s2, _| s2.t0sz = 20);
    assert_eq!(code(&v31(), &m), "ste-s2sl0-inconsistent");
    // 42-bit IPA from level 1: 16 tables, the most allowed.
    let m = s2_mem(|s2, _| {
        s2.t0sz = 22;
        s2.ttb = 0x9002_0000;
    });
    assert!(run(&v31(), &m).is_ok());
    // Level 3 with 4KB: needs IDR3.STT.
    let m = s2_mem(|s2, _| {
        s2.t0sz = 39;
        s2.sl0 = 3;
    });
    assert_eq!(code(&v31(), &m), "ste-s2sl0-needs-stt");
    let stt = with_idr3(v31(), IDR3::STT::SET.value);
    assert!(run(&stt, &m).is_ok());
    // 16KB level 0 without DS.
    let m = s2_mem(|s2, _| {
        s2.tg = Granule::Size16K;
        s2.t0sz = 16;
        s2.sl0 = 3;
    });
    assert_eq!(code(&v31(), &m), "ste-s2sl0-needs-ds");
    // 48 bits with 16KB: level 1 with two tables is the legal way (R DXBSH).
    let m = s2_mem(|s2, _| {
        s2.tg = Granule::Size16K;
        s2.t0sz = 16;
        s2.sl0 = 2;
    });
    assert!(run(&v31(), &m).is_ok());
    // 64KB SL0 = 0b11 is reserved.
    let m = s2_mem(|s2, _| {
        s2.tg = Granule::Size64K;
        s2.sl0 = 3;
    });
    assert_eq!(code(&v31(), &m), "ste-s2sl0-reserved");
}

// spec: K21 — §5.2 S2T0SZ, §3.4: the range (IAS, IDR3.STT, granule) is ILLEGAL from
// SMMUv3.1 and CONSTRAINED UNPREDICTABLE on SMMUv3.0; AIDR decides which code.
#[test]
fn k21_s2t0sz_range_is_decided_by_aidr() {
    // T0SZ 40 without STT (max 39), level 2.
    let m = s2_mem(|s2, _| {
        s2.t0sz = 40;
        s2.sl0 = 0;
    });
    assert_eq!(code(&v31(), &m), "ste-s2t0sz-out-of-range");
    assert_eq!(
        code(&with_aidr_minor(linear(4), 0), &m),
        "ste-s2t0sz-unpredictable"
    );
    assert_eq!(
        code(&with_aidr_minor(linear(4), 3), &m),
        "ste-s2t0sz-out-of-range"
    );
    // With STT it is legal (Table D8-23: level 2, T0SZ 40-42).
    assert!(run(&with_idr3(v31(), IDR3::STT::SET.value), &m).is_ok());
    // Below 64 - IAS: a 40-bit OAS (no AArch32: IAS = OAS) allows no more than 40 bits.
    let oas40 = with_aidr_minor(
        snap_with(idr0_full(), idr1(16, 20), 40, strtab_cfg(0, 0, 4), ST),
        2,
    );
    let m = s2_mem(|s2, _| {
        s2.t0sz = 22;
        s2.ps = AddressSize::Bits40;
    });
    assert_eq!(code(&oas40, &m), "ste-s2t0sz-out-of-range");
}

// spec: K21 — §5.2 S2TG, §5.4 TG0: a granule IDR5 does not advertise is ILLEGAL.
#[test]
fn k21_granules_idr5_does_not_advertise() {
    let only_4k = with_idr5(linear(4), (IDR5::OAS.val(5) + IDR5::GRAN4K::SET).value);
    let m = s2_mem(|s2, _| {
        s2.tg = Granule::Size64K;
        s2.sl0 = 1;
        s2.t0sz = 24;
    });
    assert_eq!(code(&only_4k, &m), "ste-s2tg-unsupported");
    let mut c = cd(5);
    cdf::TG0.set(&mut c, 0b10); // 16KB
    assert_eq!(code(&only_4k, &s1_mem(0, c)), "cd-tg0-unsupported");
    assert!(run(&linear(4), &s1_mem(0, c)).is_ok());
}

// spec: K21 — §5.2 S2TTB, §5.4 TTB0: a base beyond the effective S2PS/IPS (capped by OAS)
// or beyond 48 bits with 4KB/16KB and no DS is ILLEGAL.
#[test]
fn k21_translation_bases_beyond_their_address_size() {
    let m = s2_mem(|s2, _| {
        s2.ps = AddressSize::Bits40;
        s2.ttb = 1 << 41;
    });
    assert_eq!(code(&linear(4), &m), "ste-s2ttb-beyond-s2ps");
    // S2PS 52 is capped by a 48-bit OAS.
    let m = s2_mem(|s2, _| {
        s2.ps = AddressSize::Bits52;
        s2.ttb = 1 << 49;
    });
    assert_eq!(code(&linear(4), &m), "ste-s2ttb-beyond-s2ps");
    // 52-bit OAS and S2PS, 4KB and no DS: still 48 bits.
    let oas52 = with_aidr_minor(
        snap_with(idr0_full(), idr1(16, 20), 52, strtab_cfg(0, 0, 4), ST),
        1,
    );
    assert_eq!(code(&oas52, &m), "ste-s2ttb-beyond-48-bits");
    let mut c = cd(5);
    cdf::IPS.set(&mut c, AddressSize::Bits40.encode());
    cdf::TTB0.set(&mut c, (1u64 << 41) >> cdf::TTB0.lo);
    assert_eq!(code(&linear(4), &s1_mem(0, c)), "cd-ttb0-beyond-ips");
}

// spec: K21 — §5.2 S2AA64, S2ENDI; §5.4 ENDI: formats and endianness IDR0 lacks.
#[test]
fn k21_table_formats_and_endianness_idr0_lacks() {
    let m = s2_mem(|s2, _| s2.aa64 = false);
    assert_eq!(code(&linear(4), &m), "ste-s2aa64-unsupported");
    let little = with_idr0(linear(4), idr0_full() | IDR0::TTENDIAN.val(0b10).value);
    let m = s2_mem(|s2, _| s2.endi = true);
    assert_eq!(code(&little, &m), "ste-s2endi-unsupported");
    let mut c = cd(5);
    cdf::ENDI.set(&mut c, 1);
    assert_eq!(code(&little, &s1_mem(0, c)), "cd-endi-unsupported");
}

// spec: K21 — §5.4 HAFT, A, S and §5.2 S1STALLD: CdIllegal()'s conditions on the ID
// registers and on the STE.
#[test]
fn k21_cd_haft_term_model_and_stall_conditions() {
    let httu3 = with_idr0(linear(4), idr0_full() | IDR0::HTTU.val(0b11).value);
    let mut c = cd(5);
    cdf::HAFT.set(&mut c, 1);
    assert_eq!(code(&httu3, &s1_mem(0, c)), "cd-haft-without-ha");
    cdf::HA.set(&mut c, 1);
    assert!(run(&httu3, &s1_mem(0, c)).is_ok());
    // TERM_MODEL = 1 needs CD.A = 1.
    let term = with_idr0(linear(4), idr0_full() | IDR0::TERM_MODEL::SET.value);
    let mut c = cd(5);
    cdf::A.set(&mut c, 0);
    assert_eq!(code(&term, &s1_mem(0, c)), "cd-a-term-model");
    // S1STALLD = 1 with CD.S = 1.
    let mut c = cd(5);
    cdf::S.set(&mut c, 1);
    let mut w = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::S1STALLD.set(&mut w, 1);
    let m = with_cds(linear_mem(&[(1, w)]), &[(0, c)]);
    assert_eq!(code(&linear(4), &m), "cd-s-stalls-disabled");
    // CD.S against the stall model: 0b01 forbids S = 1, 0b10 forces it.
    let no_stall = with_idr0(linear(4), idr0_full() | IDR0::STALL_MODEL.val(0b01).value);
    assert_eq!(code(&no_stall, &s1_mem(0, c)), "cd-s-stall-model");
    let forced = with_idr0(linear(4), idr0_full() | IDR0::STALL_MODEL.val(0b10).value);
    assert_eq!(code(&forced, &s1_mem(0, cd(5))), "cd-s-stall-model");
    assert!(run(&forced, &s1_mem(0, c)).is_ok());
}

// spec: K21 — §5.2 PRIVCFG, INSTCFG: 0b01 is reserved where the overrides are used.
#[test]
fn k21_reserved_privcfg_and_instcfg_refuse_where_used() {
    let ovr = snap_with(
        idr0_full(),
        idr1(16, 20) | IDR1::ATTR_PERMS_OVR::SET.value,
        48,
        strtab_cfg(0, 0, 4),
        ST,
    );
    let mut bypass = ste_words(Translation::Bypass, 0);
    ste::fields::PRIVCFG.set(&mut bypass, 0b01);
    let m = linear_mem(&[(1, bypass)]);
    assert_eq!(code(&ovr, &m), "ste-privcfg-reserved");
    // Without ATTR_PERMS_OVR the field is RES0 and not used.
    assert!(run(&linear(4), &m).is_ok());
    let mut bypass = ste_words(Translation::Bypass, 0);
    ste::fields::INSTCFG.set(&mut bypass, 0b01);
    assert_eq!(
        code(&ovr, &linear_mem(&[(1, bypass)])),
        "ste-instcfg-reserved"
    );
}

/// `linear(4)` with `CR2.E2H` set.
fn e2h(mut s: RegisterSnapshot) -> RegisterSnapshot {
    s.cr2 = 1;
    s
}

// spec: K21 — §5.2 STRW with CR2.E2H, §5.4 EPD0/AA64: under NS-EL2 the effective EPD0 is 0
// (a TTB0 behind EPD0 = 1 is still checked); AArch32 CDs are ILLEGAL under NS-EL2-E2H.
#[test]
fn k21_streamworld_decides_what_a_cd_uses() {
    let mut c = cd(5);
    cdf::EPD0.set(&mut c, 1);
    cdf::TG0.set(&mut c, 0b11); // reserved, IGNORED behind EPD0 = 1 at EL1
    assert!(run(&linear(4), &s1_mem(0, c)).is_ok());
    assert_eq!(code(&linear(4), &s1_mem(0b10, c)), "cd-reserved");
    let aarch32 = with_idr0(linear(4), idr0_full() | IDR0::TTF.val(0b11).value);
    let mut c = cd(5);
    cdf::AA64.set(&mut c, 0);
    cdf::T0SZ.set(&mut c, 0);
    assert!(run(&aarch32, &s1_mem(0b10, c)).is_ok());
    assert_eq!(
        code(&e2h(aarch32), &s1_mem(0b10, c)),
        "cd-aa64-aarch32-under-e2h"
    );
    // STRW = EL2 on an SMMU without IDR0.Hyp (RES0 there).
    let no_hyp = with_idr0(linear(4), idr0_full() & !IDR0::HYP::SET.value);
    assert_eq!(
        code(&no_hyp, &s1_mem(0b10, cd(5))),
        "ste-strw-el2-without-hyp"
    );
}

// spec: K21, K14 — §5.4 ASID, §5.2 S1CDMax: what NS-EL2 and SSIDSIZE = 0 leave IGNORED never
// refuses: ASID 0, a 16-bit ASID on 8-bit hardware, and a reserved S1Fmt/S1DSS.
#[test]
fn k21_ignored_asids_and_substream_fields_never_refuse() {
    let (_, found) = run(&linear(4), &s1_mem(0b10, cd(0))).unwrap();
    assert!(!found.iter().any(|f| matches!(f, Found::Asid { .. })));
    let asid8 = with_idr0(linear(4), idr0_full() & !IDR0::ASID16::SET.value);
    assert!(run(&asid8, &s1_mem(0b10, cd(0x1234))).is_ok());
    // The ignored ASID does not alias the EL1 CD that uses ASID 0x1234 differently.
    let mut el1 = cd(0x34);
    cdf::TTB0.set(&mut el1, 0xb000_0000 >> cdf::TTB0.lo);
    let mut w2 = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::STRW.set(&mut w2, 0b10);
    let mut m = linear_mem(&[(1, s1_ste(CDT + 0x1000, S1Fmt::Linear, 0)), (2, w2)]);
    m.region(CDT, 64 << 10);
    m.write(CDT, &cd(0x34));
    m.write(CDT + 0x1000, &el1);
    assert!(run(&linear(4), &m).is_ok());
    // SSIDSIZE = 0: S1CDMax, hence S1Fmt and S1DSS, are IGNORED.
    let mut w = s1_ste(CDT, S1Fmt::Linear, 5);
    ste::fields::S1FMT.set(&mut w, 0b11);
    ste::fields::S1DSS.set(&mut w, 0b11);
    let m = with_cds(linear_mem(&[(1, w)]), &[(0, cd(5))]);
    let no_ssid = snap_with(idr0_full(), idr1(16, 0), 48, strtab_cfg(0, 0, 4), ST);
    assert!(run(&no_ssid, &m).is_ok());
}

// spec: K19 — §3.17, §5.4: NS-EL2 without E2H has no ASID, so every EL2 CD is one address
// space: two EL2 STEs whose CDs have different TTB0 alias; identical ones do not.
#[test]
fn k19_ns_el2_cds_share_one_tag() {
    let mut other = cd(7);
    cdf::TTB0.set(&mut other, 0xb000_0000 >> cdf::TTB0.lo);
    let el2 = |ptr| {
        let mut w = s1_ste(ptr, S1Fmt::Linear, 0);
        ste::fields::STRW.set(&mut w, 0b10);
        w
    };
    let mut m = linear_mem(&[(1, el2(CDT)), (2, el2(CDT + 0x1000))]);
    m.region(CDT, 64 << 10);
    m.write(CDT, &cd(5));
    m.write(CDT + 0x1000, &other);
    assert_eq!(code(&linear(4), &m), "asid-alias");
    // With E2H the ASIDs tell them apart.
    assert!(run(&e2h(linear(4)), &m).is_ok());
    // Identical EL2 CDs (even with different, IGNORED ASIDs) are one address space.
    m.write(CDT + 0x1000, &cd(9));
    assert!(run(&linear(4), &m).is_ok());
}

// spec: K18 — §5.4 TTB0, §5.2 S2TTB: a live regime's start-level table must not overlap a
// structure adoption trusts: the crash kernel's writes there would become descriptors.
#[test]
fn k18_translation_roots_stay_off_adopted_structures() {
    // A CD's TTB0 inside a level-2 stream table.
    let mut c = cd(5);
    cdf::TTB0.set(&mut c, L2A >> cdf::TTB0.lo);
    let mut m = Mem::recording();
    m.region(ST, 8 * 64);
    m.write(ST, &[l1std(L2A)]);
    m.region(L2A, 16 << 10);
    m.write(L2A + 64, &s1_ste(CDT, S1Fmt::Linear, 0));
    m.region(CDT, 4096);
    m.write(CDT, &c);
    let r = run(&two_level(14), &m).unwrap_err();
    assert_eq!(r.code(), "ttb0-overlaps-l2-table");
    assert!(std::format!("{r}").contains("TTB0"));
    // An S2TTB equal to the level-1 table.
    let mut m = Mem::recording();
    m.region(ST, 8 * 64);
    m.write(ST, &[l1std(L2A)]);
    m.region(L2A, 16 << 10);
    let mut s2 = stage2();
    s2.ttb = ST;
    m.write(L2A + 64, &ste_words(Translation::Stage2(s2), 5));
    assert_eq!(code(&two_level(14), &m), "s2ttb-overlaps-stream-table");
    // A TTB0 behind EPD0 = 1 is not live.
    let mut c = cd(5);
    cdf::TTB0.set(&mut c, CDT >> cdf::TTB0.lo);
    cdf::EPD0.set(&mut c, 1);
    assert!(run(&linear(4), &s1_mem(0, c)).is_ok());
    cdf::EPD0.set(&mut c, 0);
    assert_eq!(code(&linear(4), &s1_mem(0, c)), "ttb0-overlaps-cd-table");
}

// ---------------------------------------------------------------------------------------------
// Issue 25 acceptance: an independent generator of LEGAL tables, written from the spec's
// tables (DDI 0487 D8.2 Tables D8-19..41 for stage-2 start levels and concatenation, §5.2
// S2T0SZ/S2TTB, §5.4 TxSZ/TTBx/ASID, §3.4 IAS), not from the validator.

/// A small deterministic source of choices (SplitMix64).
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn flag(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// The generated SMMU, as the generator reads it (its own copy of the ID fields).
#[derive(Clone, Copy, Debug)]
struct GenSmmu {
    minor: u32,
    oas: u32,
    aarch32: bool,
    gran: [bool; 3], // 4K, 16K, 64K
    stt: bool,
    ds: bool,
    vax52: bool,
    httu: u32,
    stall_model: u32,
    term_model: bool,
    asid16: bool,
    ssid_bits: u32,
    e2h: bool,
}

/// Granules as (S2TG encoding, TG0 encoding, log2 size).
const GRANS: [(u64, u64, u32); 3] = [(0b00, 0b00, 12), (0b10, 0b10, 14), (0b01, 0b01, 16)];

/// DDI 0487 D8.2: for a granule (index into GRANS), each permitted stage-2 initial lookup
/// level with its T0SZ range and requirement: 0 none, 1 DS, 2 FEAT_TTST (IDR3.STT).
const S2_LEVELS: [&[(i32, u32, u32, u8)]; 3] = [
    // 4KB: Tables D8-20..24.
    &[
        (-1, 12, 15, 1),
        (0, 16, 24, 0),
        (0, 12, 15, 1),
        (1, 21, 33, 0),
        (2, 30, 39, 0),
        (2, 40, 42, 2),
        (3, 39, 48, 2),
    ],
    // 16KB: Tables D8-30..33.
    &[
        (0, 12, 16, 1),
        (1, 16, 27, 0),
        (1, 13, 15, 1),
        (2, 24, 38, 0),
        (3, 35, 39, 0),
        (3, 40, 48, 2),
    ],
    // 64KB: Tables D8-39..41 (T0SZ 12-15 at level 1 needs 52-bit addresses: IAS 52).
    &[
        (1, 16, 21, 0),
        (1, 12, 15, 0),
        (2, 18, 34, 0),
        (3, 31, 39, 0),
        (3, 40, 47, 2),
    ],
];

/// The SL0 (and, for 4KB level -1, SL2) encoding of a start level (Tables D8-19, 29, 38).
fn sl0_of(gran: usize, level: i32) -> (u64, bool) {
    match (gran, level) {
        (0, -1) => (0, true),
        (0, 0) => (2, false),
        (0, 1) => (1, false),
        (0, 2) => (0, false),
        (0, _) => (3, false),
        (_, 0) => (3, false),
        (_, 1) => (2, false),
        (_, 2) => (1, false),
        _ => (0, false),
    }
}

impl GenSmmu {
    fn new(c: &mut Choices) -> GenSmmu {
        let minor = c.below(4) as u32;
        let oas = if minor == 0 {
            c.pick(&[32, 36, 40, 42, 44, 48])
        } else {
            c.pick(&[32, 36, 40, 42, 44, 48, 52])
        };
        let mut gran = [c.flag(), c.flag(), c.flag()];
        if !gran.iter().any(|g| *g) {
            gran[c.below(3) as usize] = true;
        }
        GenSmmu {
            minor,
            oas,
            aarch32: c.flag(),
            gran,
            stt: minor > 0 && c.flag(),
            ds: minor > 0 && c.flag(),
            vax52: minor > 0 && c.flag(),
            httu: c.below(4) as u32,
            stall_model: c.pick(&[0, 1, 2]),
            term_model: c.below(4) == 0,
            asid16: c.flag(),
            ssid_bits: if c.flag() { 0 } else { 1 + c.below(20) as u32 },
            e2h: c.flag(),
        }
    }

    fn ias(&self) -> u32 {
        if self.aarch32 {
            self.oas.max(40)
        } else {
            self.oas
        }
    }

    fn snapshot(&self) -> RegisterSnapshot {
        let idr0 = (IDR0::S1P::SET
            + IDR0::S2P::SET
            + IDR0::TTF.val(if self.aarch32 { 0b11 } else { 0b10 })
            + IDR0::COHACC::SET
            + IDR0::HYP::SET
            + IDR0::HTTU.val(self.httu)
            + IDR0::STALL_MODEL.val(self.stall_model)
            + IDR0::VMID16::SET
            + IDR0::CD2L::SET
            + IDR0::ST_LVL.val(1))
        .value
            | if self.asid16 {
                IDR0::ASID16::SET.value
            } else {
                0
            }
            | if self.term_model {
                IDR0::TERM_MODEL::SET.value
            } else {
                0
            };
        let oas = AddressSize::from_bits(self.oas).unwrap().encode() as u32;
        let mut idr5 = IDR5::OAS.val(oas).value;
        for (on, f) in self
            .gran
            .iter()
            .zip([IDR5::GRAN4K, IDR5::GRAN16K, IDR5::GRAN64K])
        {
            if *on {
                idr5 |= f.val(1).value;
            }
        }
        idr5 |= if self.ds { IDR5::DS::SET.value } else { 0 };
        idr5 |= if self.vax52 {
            IDR5::VAX.val(1).value
        } else {
            0
        };
        let mut s = snap_with(
            idr0,
            idr1(16, self.ssid_bits),
            self.oas,
            strtab_cfg(0, 0, 4),
            ST,
        );
        s.ids.idr[5] = idr5;
        s.ids.idr[3] = if self.stt { IDR3::STT::SET.value } else { 0 };
        s.ids.aidr = self.minor;
        s.cr2 = u32::from(self.e2h);
        s
    }
}

/// A generated legal table and what may be mutated in it.
struct LegalTable {
    smmu: GenSmmu,
    mem: Mem,
    /// (StreamID, STE words, stage-2 granule index, start level, IA bits).
    s2: Vec<(u64, [u64; 8], usize, i32, u32)>,
    /// (CD address, CD words, StreamWorld is EL2 without E2H).
    cds: Vec<(u64, [u64; 8], bool)>,
}

/// Stage-2 start tables and stage-1 tables live far from every structure (1 MiB apart, below
/// 4 GiB so that any OAS holds them).
const S2_TABLES: u64 = 0xc000_0000;
const S1_TABLES: u64 = 0xd000_0000;

fn legal_stage2(c: &mut Choices, g: &GenSmmu, sid: u64) -> Option<([u64; 8], usize, i32, u32)> {
    let grans: Vec<usize> = (0..3).filter(|&i| g.gran[i]).collect();
    let gi = c.pick(&grans);
    let (s2tg, _, shift) = GRANS[gi];
    let s2ds = g.ds && gi != 2 && c.flag();
    let max = match (g.stt, gi) {
        (true, 2) => 47,
        (true, _) => 48,
        (false, _) => 39,
    };
    let ias_min = 64 - g.ias();
    let min = if g.minor == 0 {
        ias_min
    } else if gi == 2 || s2ds {
        ias_min.max(12)
    } else {
        ias_min.max(16)
    };
    let rows: Vec<_> = S2_LEVELS[gi]
        .iter()
        .filter(|r| match r.3 {
            1 => s2ds,
            2 => g.stt,
            _ => true,
        })
        .flat_map(|&(level, lo, hi, _)| (lo.max(min)..=hi.min(max)).map(move |t| (level, t)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let (level, t0sz) = c.pick(&rows);
    let (sl0, sl2) = sl0_of(gi, level);
    let stride = shift - 3;
    let ia = 64 - t0sz;
    let bits = ia as i32 - (shift as i32 + stride as i32 * (3 - level));
    let ps_bits = c.pick(&[32, 36, 40, 42, 44, 48, 52]);
    let mut w = ste_words(Translation::Stage2(stage2()), 0x100 + sid as u16);
    let f = |w: &mut [u64; 8], field: smmu::arch::Field, v: u64| field.set(w, v);
    f(&mut w, ste::fields::S2T0SZ, u64::from(t0sz));
    f(&mut w, ste::fields::S2SL0, sl0);
    f(&mut w, ste::fields::S2SL0_2, u64::from(sl2));
    f(&mut w, ste::fields::S2DS, u64::from(s2ds));
    f(&mut w, ste::fields::S2TG, s2tg);
    f(
        &mut w,
        ste::fields::S2PS,
        AddressSize::from_bits(ps_bits).unwrap().encode(),
    );
    f(
        &mut w,
        ste::fields::S2TTB,
        (S2_TABLES + sid * (1 << 20)) >> 4,
    );
    if g.stall_model == 2 {
        f(&mut w, ste::fields::S2S, 1);
    }
    Some((w, gi, level, bits as u32))
}

fn legal_cd(c: &mut Choices, g: &GenSmmu, asid: u16, ttb: u64, el2: bool) -> [u64; 8] {
    let mut w = cd(asid);
    let grans: Vec<usize> = (0..3).filter(|&i| g.gran[i]).collect();
    let gi = c.pick(&grans);
    let ds = g.ds && gi != 2 && c.flag();
    let max = match (g.stt, gi) {
        (true, 2) => 47,
        (true, _) => 48,
        (false, _) => 39,
    };
    let min = if g.vax52 && (gi == 2 || ds) { 12 } else { 16 };
    let f = |w: &mut [u64; 8], field: smmu::arch::Field, v: u64| field.set(w, v);
    f(&mut w, cdf::TG0, GRANS[gi].1);
    f(
        &mut w,
        cdf::T0SZ,
        (min + c.below((max - min + 1) as u64) as i32) as u64,
    );
    f(&mut w, cdf::DS, u64::from(ds));
    f(&mut w, cdf::IPS, c.below(7));
    f(&mut w, cdf::TTB0, ttb >> 4);
    f(&mut w, cdf::ENDI, 0);
    f(&mut w, cdf::HA, u64::from(g.httu >= 1 && c.flag()));
    f(&mut w, cdf::S, u64::from(g.stall_model == 2));
    f(&mut w, cdf::A, 1);
    if el2 {
        // NS-EL2: EPD0 and the TTB1 half are IGNORED; so is the ASID (any value).
        f(&mut w, cdf::EPD0, c.below(2));
        f(&mut w, cdf::ASID, c.next() & 0xffff);
    }
    w
}

fn legal_table(seed: u64) -> LegalTable {
    let c = &mut Choices(seed);
    let g = GenSmmu::new(c);
    let mut mem = Mem::recording();
    mem.region(ST, 16 * 64);
    let mut s2 = Vec::new();
    let mut cds = Vec::new();
    // One CD configuration for every NS-EL2 stream (§3.17: one address space).
    let el2_cd = legal_cd(c, &g, 0, S1_TABLES, true);
    for sid in 0..16u64 {
        let w = match c.below(6) {
            0 => continue,
            1 => ste_words(Translation::Bypass, 0),
            2 | 3 => match legal_stage2(c, &g, sid) {
                Some((w, gi, level, bits)) => {
                    s2.push((sid, w, gi, level, bits));
                    w
                }
                None => continue,
            },
            _ => {
                let table = CDT + sid * 0x1000;
                let el2 = c.flag();
                let cd_max = if g.ssid_bits == 0 {
                    c.below(32)
                } else {
                    c.below(3).min(u64::from(g.ssid_bits))
                };
                let mut w = s1_ste(table, S1Fmt::Linear, 0);
                ste::fields::S1_CD_MAX.set(&mut w, cd_max);
                if g.ssid_bits == 0 {
                    // IGNORED without substreams: anything, reserved values included.
                    ste::fields::S1FMT.set(&mut w, c.below(4));
                    ste::fields::S1DSS.set(&mut w, c.below(4));
                }
                ste::fields::STRW.set(&mut w, if el2 { 0b10 } else { 0 });
                let stalld = g.stall_model == 0 && c.flag();
                ste::fields::S1STALLD.set(&mut w, u64::from(stalld));
                let n = if g.ssid_bits == 0 { 1 } else { 1u64 << cd_max };
                mem.region(table, 0x1000);
                for ssid in 0..n {
                    let pa = table + ssid * 64;
                    let world_el2 = el2 && !g.e2h;
                    let mut d = if world_el2 {
                        el2_cd
                    } else {
                        let asid = 1 + (sid * 4 + ssid) as u16;
                        legal_cd(
                            c,
                            &g,
                            asid,
                            S1_TABLES + (1 + sid * 4 + ssid) * (1 << 20),
                            false,
                        )
                    };
                    if stalld {
                        cdf::S.set(&mut d, 0);
                    }
                    mem.write(pa, &d);
                    cds.push((pa, d, world_el2));
                }
                w
            }
        };
        mem.write(ST + sid * 64, &w);
    }
    LegalTable {
        smmu: g,
        mem,
        s2,
        cds,
    }
}

/// One used field of a legal table mutated into an ILLEGAL value, and the code it must
/// refuse with (from the spec's rules as the generator reads them).
fn mutate(t: &mut LegalTable, c: &mut Choices) -> Option<&'static str> {
    let g = t.smmu;
    let cu = |v30: &'static str, v31: &'static str| if g.minor == 0 { v30 } else { v31 };
    let mut options: Vec<u8> = Vec::new();
    if !t.s2.is_empty() {
        options.extend([0, 1, 2]);
        if !g.aarch32 {
            options.push(3);
        }
        if g.gran.iter().any(|x| !x) {
            options.push(4);
        }
    }
    if !t.cds.is_empty() {
        options.extend([5, 6]);
        if g.httu == 0 {
            options.push(7);
        }
        if g.gran.iter().any(|x| !x) {
            options.push(8);
        }
    }
    if options.is_empty() {
        return None;
    }
    let what = c.pick(&options);
    if what <= 4 {
        let (sid, mut w, gi, level, bits) = t.s2[c.below(t.s2.len() as u64) as usize];
        let code = match what {
            0 => {
                ste::fields::S2T0SZ.set(&mut w, 63);
                cu("ste-s2t0sz-unpredictable", "ste-s2t0sz-out-of-range")
            }
            1 => {
                // Beyond the effective S2PS (MIN(S2PS, OAS)).
                let ps = [32, 36, 40, 42, 44, 48, 52, 56][ste::fields::S2PS.get(&w) as usize];
                let eff = ps.min(g.oas);
                ste::fields::S2TTB.set(&mut w, ((S2_TABLES + sid * (1 << 20)) | 1 << eff) >> 4);
                "ste-s2ttb-beyond-s2ps"
            }
            2 => {
                if gi == 2 {
                    ste::fields::S2SL0.set(&mut w, 3);
                    "ste-s2sl0-reserved"
                } else if (0..=2).contains(&level) && bits > 4 && !ste::fields::S2SL0_2.flag(&w) {
                    // One level deeper: the input no longer fits 16 tables there.
                    let (sl0, _) = sl0_of(gi, level + 1);
                    ste::fields::S2SL0.set(&mut w, sl0);
                    if gi == 0 && level + 1 == 3 && !g.stt {
                        "ste-s2sl0-needs-stt"
                    } else {
                        "ste-s2sl0-inconsistent"
                    }
                } else {
                    return None;
                }
            }
            3 => {
                ste::fields::S2AA64.set(&mut w, 0);
                "ste-s2aa64-unsupported"
            }
            _ => {
                let off = (0..3).find(|&i| !g.gran[i]).unwrap();
                ste::fields::S2TG.set(&mut w, GRANS[off].0);
                "ste-s2tg-unsupported"
            }
        };
        t.mem.write(ST + sid * 64, &w);
        Some(code)
    } else {
        let (pa, mut w, el2) = t.cds[c.below(t.cds.len() as u64) as usize];
        let code = match what {
            5 => {
                cdf::T0SZ.set(&mut w, 63);
                cdf::EPD0.set(&mut w, 0);
                cu("cd-t0sz-unpredictable", "cd-t0sz-out-of-range")
            }
            6 if !el2 => {
                cdf::ASID.set(&mut w, 0);
                "asid-zero"
            }
            6 => {
                // Under NS-EL2 a disabled-looking TTB0 is live: bend it beyond the IPS.
                let ips = [32, 36, 40, 42, 44, 48, 52, 56][cdf::IPS.get(&w) as usize];
                cdf::TTB0.set(&mut w, (1u64 << ips.min(g.oas)) >> 4);
                cdf::EPD0.set(&mut w, 1);
                "cd-ttb0-beyond-ips"
            }
            7 => {
                cdf::HA.set(&mut w, 1);
                "cd-ha-unsupported"
            }
            _ => {
                let off = (0..3).find(|&i| !g.gran[i]).unwrap();
                cdf::TG0.set(&mut w, GRANS[off].1);
                cdf::EPD0.set(&mut w, 0);
                // A size every granule allows (§5.4 checks TxSZ before the granule).
                cdf::T0SZ.set(&mut w, 25);
                "cd-tg0-unsupported"
            }
        };
        t.mem.write(pa, &w);
        Some(code)
    }
}

proptest! {
    #![proptest_config(cfg())]

    // spec: K21, K18, K19 — legal tables from the spec's tables (every granule, start level
    // and concatenation, the three StreamWorlds, SSIDSIZE 0 and > 0, AIDR v3.0–v3.3, IAS/OAS
    // 32–52) are adopted; one used field made ILLEGAL refuses with the matching code.
    #[test]
    fn k21_legal_tables_adopt_and_one_illegal_field_refuses(seed in any::<u64>(), m in any::<u64>()) {
        let mut t = legal_table(seed);
        let snap = t.smmu.snapshot();
        let adopted = run(&snap, &t.mem);
        prop_assert!(adopted.is_ok(), "legal table refused: {:?} ({:?})", adopted.err(), t.smmu);
        if let Some(expected) = mutate(&mut t, &mut Choices(m)) {
            let got = run(&snap, &t.mem).map(|_| ()).map_err(|r| r.code());
            prop_assert_eq!(got, Err(expected), "{:?}", t.smmu);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// B2: the `adopt` fuzz target's seed corpus.

/// Linux's table (`testdata/linux-6.1-qemu-7.2`) as registers and regions.
fn linux_table() -> (RegisterSnapshot, Vec<(u64, Vec<u64>)>) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/linux-6.1-qemu-7.2");
    let regs = std::fs::read_to_string(dir.join("regs.txt")).unwrap();
    let reg = |name: &str| -> u64 {
        let line = regs
            .lines()
            .find(|l| l.starts_with(&std::format!("{name}=")))
            .unwrap();
        u64::from_str_radix(line.split("=0x").nth(1).unwrap().trim(), 16).unwrap()
    };
    let snap = RegisterSnapshot {
        ids: IdRegs {
            idr: ["IDR0", "IDR1", "IDR2", "IDR3", "IDR4", "IDR5"].map(|r| reg(r) as u32),
            iidr: reg("IIDR") as u32,
            aidr: reg("AIDR") as u32,
        },
        cr0: reg("CR0") as u32,
        cr1: reg("CR1") as u32,
        cr2: reg("CR2") as u32,
        gbpa: reg("GBPA") as u32,
        gerror: reg("GERROR") as u32,
        gerrorn: reg("GERRORN") as u32,
        strtab_base: reg("STRTAB_BASE"),
        strtab_base_cfg: reg("STRTAB_BASE_CFG") as u32,
    };
    let words = |f: &str| -> Vec<u64> {
        std::fs::read(dir.join(f))
            .unwrap()
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let regions = std::vec![
        (0x4302_a000, words("l1.bin")),
        (0x5b66_0000, words("l2.bin")),
        (0x4807_d000, words("cd.bin")),
    ];
    (snap, regions)
}

fn regions_of(m: &Mem) -> Vec<(u64, Vec<u64>)> {
    m.regions_bytes()
        .into_iter()
        .map(|(base, bytes)| {
            let w = bytes
                .chunks(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..c.len()].copy_from_slice(c);
                    u64::from_le_bytes(b)
                })
                .collect();
            (base, w)
        })
        .collect()
}

// spec: B2, K21 — the seed corpus: Linux's table (adopted), legal generated tables, and one
// input per refusal code the generators reach. `SMMU_KDUMP_WRITE_SEEDS=<dir>` writes it
// (`fuzz/seeds/adopt`, see the README).
#[test]
#[cfg_attr(miri, ignore = "tens of thousands of inputs")]
fn fuzz_seed_corpus_reaches_the_refusal_codes() {
    let open = AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    };
    let mut seeds: BTreeMap<std::string::String, Vec<u8>> = BTreeMap::new();
    let (snap, regions) = linux_table();
    let linux = fuzzing::raw_input(&snap, &open, &regions);
    let out = fuzzing::validate_image(&linux).unwrap();
    assert!(out.verdict.is_ok(), "Linux's table: {:?}", out.verdict);
    seeds.insert("adopt-linux-6.1-qemu-7.2".into(), linux);
    let mut keep = |name: std::string::String, input: Vec<u8>| {
        let e = seeds.entry(name).or_insert_with(|| input.clone());
        if input.len() < e.len() {
            *e = input;
        }
    };
    // Legal generated tables, and each with one field made ILLEGAL.
    for seed in 0..400u64 {
        let mut t = legal_table(seed);
        let snap = t.smmu.snapshot();
        let input = fuzzing::raw_input(&snap, &open, &regions_of(&t.mem));
        let name = match fuzzing::validate_image(&input).unwrap().verdict {
            Ok(_) => std::format!("adopt-generated-{}", seed % 8),
            Err(r) => r.code().into(),
        };
        keep(name, input);
        if mutate(&mut t, &mut Choices(seed)).is_some() {
            let input = fuzzing::raw_input(&snap, &open, &regions_of(&t.mem));
            if let Err(r) = fuzzing::validate_image(&input).unwrap().verdict {
                keep(r.code().into(), input);
            }
        }
    }
    // Linux's table with one thing changed, for the codes the generators rarely reach.
    for (want, input) in linux_mutants(&open) {
        let got = fuzzing::validate_image(&input).unwrap().verdict;
        assert_eq!(
            got.map(|_| ()).map_err(|r| r.code()),
            Err(want),
            "Linux mutant"
        );
        keep(want.into(), input);
    }
    // The byte generator's own inputs.
    let mut c = Choices(0x5eed);
    for _ in 0..40_000 {
        let len = 12 + c.below(180) as usize;
        let input: Vec<u8> = (0..len).map(|_| c.next() as u8).collect();
        if let Some(out) = fuzzing::validate_image(&input) {
            if let Err(r) = out.verdict {
                keep(r.code().into(), input);
            }
        }
    }
    let reached = seeds.keys().filter(|k| !k.starts_with("adopt-")).count();
    assert!(reached >= 85, "only {reached} refusal codes reached");
    if let Ok(dir) = std::env::var("SMMU_KDUMP_WRITE_SEEDS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, input) in &seeds {
            std::fs::write(std::path::Path::new(&dir).join(name), input).unwrap();
        }
        let missing: Vec<_> = all_codes()
            .iter()
            .filter(|c| !seeds.contains_key(**c))
            .collect();
        std::println!("{} seeds; codes not reached: {missing:?}", seeds.len());
    }
}

/// Linux's table with one register or field changed, and the code each must refuse with.
fn linux_mutants(platform: &AdoptPlatform) -> Vec<(&'static str, Vec<u8>)> {
    type Edit = fn(&mut RegisterSnapshot, &mut [u64; 8], &mut [u64; 8]);
    let edits: &[(&str, Edit)] = &[
        ("log2size-below-split", |s, _, _| {
            s.strtab_base_cfg = strtab_cfg(1, 8, 4);
        }),
        ("table-end-beyond-oas", |s, _, _| {
            s.ids.idr[0] &= !IDR0::ST_LVL.val(3).value;
            s.ids.idr[1] = idr1(31, 0);
            s.ids.idr[5] &= !7;
            s.strtab_base_cfg = strtab_cfg(0, 0, 27);
            s.strtab_base = 0;
        }),
        ("ste-config-stage-unsupported", |s, _, _| {
            s.ids.idr[0] &= !IDR0::S1P::SET.value;
        }),
        ("ste-s1stalld-illegal", |_, ste, _| {
            ste::fields::S1STALLD.set(ste, 1);
        }),
        ("ste-privcfg-reserved", |s, ste, _| {
            s.ids.idr[1] |= IDR1::ATTR_PERMS_OVR::SET.value;
            ste::fields::PRIVCFG.set(ste, 1);
        }),
        ("ste-instcfg-reserved", |s, ste, _| {
            s.ids.idr[1] |= IDR1::ATTR_PERMS_OVR::SET.value;
            ste::fields::INSTCFG.set(ste, 1);
        }),
        ("cd-hd-unsupported", |s, _, cd| {
            s.ids.idr[0] |= IDR0::HTTU.val(1).value;
            cdf::HD.set(cd, 1);
        }),
        ("cd-haft-without-ha", |s, _, cd| {
            s.ids.idr[0] |= IDR0::HTTU.val(3).value;
            cdf::HAFT.set(cd, 1);
        }),
        ("cd-s-stall-model", |_, _, cd| cdf::S.set(cd, 1)),
        ("cd-s-stalls-disabled", |s, ste, cd| {
            s.ids.idr[0] &= !IDR0::STALL_MODEL.val(3).value;
            ste::fields::S1STALLD.set(ste, 1);
            cdf::S.set(cd, 1);
        }),
        ("cd-endi-unsupported", |_, _, cd| cdf::ENDI.set(cd, 1)),
        ("cd-tg1-unsupported", |s, _, cd| {
            s.ids.idr[5] &= !(IDR5::GRAN16K::SET.value);
            cdf::EPD1.set(cd, 0);
            cdf::T1SZ.set(cd, 25);
            cdf::TG1.set(cd, 0b01);
        }),
        ("cd-t1sz-out-of-range", |_, _, cd| {
            cdf::EPD1.set(cd, 0);
            cdf::T1SZ.set(cd, 63);
            cdf::TG1.set(cd, 0b10);
        }),
        ("cd-ttb0-beyond-48-bits", |s, _, cd| {
            s.ids.idr[5] = (s.ids.idr[5] & !7) | 6;
            cdf::IPS.set(cd, 6);
            cdf::TTB0.set(cd, (1u64 << 49) >> 4);
        }),
        ("cd-ttb1-beyond-48-bits", |s, _, cd| {
            s.ids.idr[5] = (s.ids.idr[5] & !7) | 6;
            cdf::IPS.set(cd, 6);
            cdf::EPD1.set(cd, 0);
            cdf::T1SZ.set(cd, 25);
            cdf::TG1.set(cd, 0b10);
            cdf::TTB1.set(cd, (1u64 << 49) >> 4);
        }),
        ("cd-aa64-aarch32-under-e2h", |s, ste, cd| {
            s.ids.idr[0] |= IDR0::TTF.val(3).value | IDR0::HYP::SET.value;
            s.cr2 |= 1;
            ste::fields::STRW.set(ste, 0b10);
            cdf::AA64.set(cd, 0);
        }),
        ("ste-s2hd-unsupported", |s, ste, _| {
            s.ids.idr[0] |= IDR0::HTTU.val(1).value;
            to_stage2(s, ste);
            ste::fields::S2HD.set(ste, 1);
        }),
        ("ste-s2s-stall-model", |s, ste, _| {
            to_stage2(s, ste);
            ste::fields::S2S.set(ste, 1);
        }),
        ("ste-eats-illegal", |s, ste, _| {
            s.ids.idr[0] |= IDR0::ATS::SET.value;
            to_stage2(s, ste);
            ste::fields::EATS.set(ste, 0b10);
        }),
        ("ste-s2endi-unsupported", |s, ste, _| {
            to_stage2(s, ste);
            ste::fields::S2ENDI.set(ste, 1);
        }),
        ("ste-s2ttb-beyond-48-bits", |s, ste, _| {
            s.ids.idr[5] = (s.ids.idr[5] & !7) | 6;
            to_stage2(s, ste);
            ste::fields::S2PS.set(ste, 6);
            ste::fields::S2TTB.set(ste, (1u64 << 49) >> 4);
        }),
        ("cd-table-overlaps-stream-table", |_, ste, _| {
            ste::fields::S1_CONTEXT_PTR.set(ste, 0x4302_a000 >> 6);
        }),
        ("cd-table-overlaps-l2-table", |_, ste, _| {
            ste::fields::S1_CONTEXT_PTR.set(ste, 0x5b66_0400 >> 6);
        }),
        ("ttb0-overlaps-stream-table", |_, _, cd| {
            cdf::TTB0.set(cd, 0x4302_a000 >> 4);
        }),
        ("ttb0-overlaps-l2-table", |_, _, cd| {
            cdf::TTB0.set(cd, 0x5b66_0000 >> 4);
        }),
        ("ttb1-overlaps-stream-table", |_, _, cd| {
            cdf::EPD1.set(cd, 0);
            cdf::T1SZ.set(cd, 25);
            cdf::TG1.set(cd, 0b10);
            cdf::TTB1.set(cd, 0x4302_a000 >> 4);
        }),
        ("ttb1-overlaps-l2-table", |_, _, cd| {
            cdf::EPD1.set(cd, 0);
            cdf::T1SZ.set(cd, 25);
            cdf::TG1.set(cd, 0b10);
            cdf::TTB1.set(cd, 0x5b66_0000 >> 4);
        }),
        ("ttb1-overlaps-cd-table", |_, _, cd| {
            cdf::EPD1.set(cd, 0);
            cdf::T1SZ.set(cd, 25);
            cdf::TG1.set(cd, 0b10);
            cdf::TTB1.set(cd, 0x4807_d000 >> 4);
        }),
    ];
    edits
        .iter()
        .map(|(code, edit)| {
            let (mut snap, mut regions) = linux_table();
            let mut ste: [u64; 8] = regions[1].1[64..72].try_into().unwrap();
            let mut cd: [u64; 8] = regions[2].1[0..8].try_into().unwrap();
            edit(&mut snap, &mut ste, &mut cd);
            regions[1].1[64..72].copy_from_slice(&ste);
            regions[2].1[0..8].copy_from_slice(&cd);
            (*code, fuzzing::raw_input(&snap, platform, &regions))
        })
        .collect()
}

/// Linux's stage-1 STE made a legal stage-2 one, on an SMMU given stage 2.
fn to_stage2(s: &mut RegisterSnapshot, ste: &mut [u64; 8]) {
    s.ids.idr[0] |= IDR0::S2P::SET.value;
    *ste = ste_words(Translation::Stage2(stage2()), 5);
}

// spec: K18, K21 — found by the `adopt` fuzz target: a nested STE whose S1Fmt is reserved
// but IGNORED (SSIDSIZE = 0) was skipped by the root pass, so its S2TTB over the stream
// table was adopted.
#[test]
fn fuzz_regression_ignored_s1fmt_does_not_hide_a_stage2_root() {
    let mut s2 = stage2();
    s2.ttb = ST;
    let mut w = ste_words(Translation::Nested(stage1(CDT, S1Fmt::Linear, 0), s2), 5);
    ste::fields::S1_CD_MAX.set(&mut w, 3);
    ste::fields::S1FMT.set(&mut w, 0b11);
    let no_ssid = snap_with(idr0_full(), idr1(16, 0), 48, strtab_cfg(0, 0, 4), ST);
    let m = linear_mem(&[(1, w)]);
    assert_eq!(code(&no_ssid, &m), "s2ttb-overlaps-stream-table");
}

// spec: K19 — found by the `adopt` fuzz target: on an SMMU without stage 2 (IDR0.S2P = 0) a
// stage-1 STE's S2VMID tags nothing and is not checked, but the harness took S2P from IDR0
// bit 1 (S1P) and failed the adoption of an S2VMID wider than the SMMU's VMIDs.
#[test]
fn fuzz_regression_s2vmid_of_a_stage1_ste_without_stage2() {
    let mut w = s1_ste(CDT, S1Fmt::Linear, 0);
    ste::fields::S2VMID.set(&mut w, 0x4331);
    let idr0 = idr0_full() & !(IDR0::S2P::SET.value | IDR0::VMID16::SET.value);
    let snap = snap_with(idr0, idr1(16, 0), 48, strtab_cfg(0, 0, 4), ST);
    let m = with_cds(linear_mem(&[(1, w)]), &[(0, cd(0x11))]);
    let open = AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    };
    let input = fuzzing::raw_input(&snap, &open, &regions_of(&m));
    let out = fuzzing::validate_image(&input).unwrap();
    assert!(out.verdict.is_ok(), "{:?}", out.verdict);
}

// spec: K15, K19 — the scan's scratch may hold anything: the tag map is cleared block by
// block as it is first written, never read before (a garbage-filled scratch gives the same
// verdict, reports and statistics as a zeroed one, aliases included).
#[test]
fn k15_scratch_content_does_not_matter() {
    let mut other = cd(0x11);
    cdf::TTB0.set(&mut other, 0xb000_0000 >> cdf::TTB0.lo);
    let tables = [
        with_cds(
            linear_mem(&[
                (1, s2_ste(7)),
                (2, s1_ste(CDT, S1Fmt::Linear, 2)),
                (3, s2_ste(7)),
            ]),
            &[(0, cd(0x11)), (1, cd(0x12)), (3, cd(0x11))],
        ),
        with_cds(
            linear_mem(&[(2, s1_ste(CDT, S1Fmt::Linear, 2))]),
            &[(0, cd(0x11)), (1, other)],
        ),
    ];
    for m in &tables {
        let snap = linear(4);
        let g = validate_geometry(&snap, &snap.features(), &any_ram).unwrap();
        let n = scratch_slots(&g, &snap.features());
        let mut outcomes = Vec::new();
        for fill in [0u64, u64::MAX, 0x8000_0041] {
            let mut scratch = std::vec![[fill; 2]; n];
            let mut found = Vec::new();
            let r = scan(&g, &snap.features(), m, &mut scratch, &mut |f| {
                found.push(f);
                Ok(())
            });
            outcomes.push((r.map(|s| (s.asids, s.vmids, s.tag_compares)), found));
        }
        assert_eq!(outcomes[0], outcomes[1]);
        assert_eq!(outcomes[0], outcomes[2]);
    }
}

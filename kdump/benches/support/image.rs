//! The layouts the `adopt` bench and the `k15_cost` test measure (both include this file with
//! `#[path]`), built with the crate's one image builder, [`smmu_kdump::image`].
//!
//! Whatever the table's size, the image holds: the level-1 table (2^(LOG2SIZE − 8)
//! descriptors, 512 KiB for 2^24 StreamIDs); one level-2 table per valid descriptor, all at
//! distinct addresses (SPEC K18) but with one content, stored once as a repeated block; and
//! one small linear CD table shared by every stage-1 STE (one structure, scanned once,
//! SPEC K20). Reads are counted by the image: bytes, calls, and the largest single request.
#![allow(dead_code)]

use smmu::arch::cd::TableControls;
use smmu::arch::l1std::L1StdConfig;
use smmu::arch::ste::{S1Dss, S1Fmt, Stage1Ste, Stage2Ste, SteConfig, Translation};
use smmu::arch::{AddressSize, Cacheability, Granule, Shareability};
use smmu::writer::make;
pub(crate) use smmu_kdump::image::Image;
use smmu_kdump::image::Registers;
use smmu_kdump::{
    any_ram, check_adoption, AdoptPlatform, Adoption, Found, Refusal, RegisterSnapshot,
    ScratchSlot, MAX_SCRATCH_SLOTS,
};

/// Physical address of the level-1 table (aligned to the largest one, 1 MiB).
pub(crate) const L1_BASE: u64 = 0x8000_0000;
/// Physical address of the first level-2 table; the k-th valid descriptor points 16 KiB × k
/// above it.
pub(crate) const L2_BASE: u64 = 0x1_0000_0000;
/// Physical address of the one CD table.
pub(crate) const CD_BASE: u64 = 0xa000_0000;

/// `STRTAB_BASE_CFG.SPLIT`.
pub(crate) const SPLIT: u32 = 8;
/// STEs per level-2 table.
pub(crate) const STES_PER_L2: u64 = 1 << SPLIT;
/// Bytes per level-2 table (16 KiB).
pub(crate) const L2_BYTES: u64 = STES_PER_L2 * 64;
/// `S1CDMax` of every stage-1 STE: a linear table of 2^3 = 8 CDs (512 bytes, one read).
pub(crate) const CD_MAX: u8 = 3;
/// CDs per CD table.
pub(crate) const CDS_PER_TABLE: u64 = 1 << CD_MAX;
/// The valid CDs of the CD table (SubstreamID, ASID); the other CDs are invalid.
pub(crate) const VALID_CDS: [(u64, u16); 3] = [(0, 0x11), (1, 0x12), (5, 0x13)];

/// The StreamID sizes measured (LOG2SIZE).
pub(crate) const LOG2SIZES: [u32; 5] = [8, 12, 16, 20, 24];

/// What the STE at index `i` (0..256) of the level-2 table holds: a pattern of 16 repeated 16
/// times, so each table has 16 stage-2 STEs (VMIDs 1..=16), 16 stage-1 STEs, 16 abort, 16
/// bypass and 192 invalid ones (most StreamIDs of a bus have no device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Stage 2 with this VMID.
    Stage2(u16),
    /// Stage 1 through the shared CD table.
    Stage1,
    /// `V` = 1, `Config` = abort.
    Abort,
    /// `V` = 1, `Config` = bypass.
    Bypass,
    /// `V` = 0.
    Invalid,
}

/// The kind of level-2 STE `i`.
pub(crate) fn kind(i: u64) -> Kind {
    match i % 16 {
        0 => Kind::Stage2(1 + (i / 16) as u16),
        1 => Kind::Stage1,
        2 => Kind::Abort,
        3 => Kind::Bypass,
        _ => Kind::Invalid,
    }
}

/// How many STEs of one level-2 table are of a kind matching `f`.
pub(crate) fn count_kind(f: impl Fn(Kind) -> bool) -> u64 {
    (0..STES_PER_L2).filter(|&i| f(kind(i))).count() as u64
}

/// Stage-1 STEs per level-2 table (each walks the CD table).
pub(crate) fn stage1_per_l2() -> u64 {
    count_kind(|k| k == Kind::Stage1)
}

/// Number of level-1 descriptors of a table of 2^`log2size` StreamIDs.
pub(crate) const fn l1_entries(log2size: u32) -> u64 {
    1 << (log2size - SPLIT)
}

/// The valid-descriptor counts measured for `log2size`, with a label: 1, 64 and all, without
/// the counts that do not fit (64 of 16) or repeat (1 of 1).
pub(crate) fn valid_counts(log2size: u32) -> Vec<(u64, String)> {
    let entries = l1_entries(log2size);
    let mut out: Vec<(u64, String)> = Vec::new();
    for n in [1, 64] {
        if n < entries {
            out.push((n, n.to_string()));
        }
    }
    out.push((entries, format!("all ({entries})")));
    out
}

/// Index of the `k`-th of `valid` valid descriptors among `entries`: spread evenly, each in the
/// middle of its stride (every descriptor when `valid` = `entries`).
pub(crate) fn valid_index(k: u64, valid: u64, entries: u64) -> u64 {
    let stride = entries / valid;
    k * stride + stride / 2
}

fn stage1() -> Stage1Ste {
    Stage1Ste {
        context_ptr: CD_BASE,
        fmt: S1Fmt::Linear,
        cd_max: CD_MAX,
        dss: S1Dss::Substream0,
        cir: Cacheability::WriteBackAllocate,
        cor: Cacheability::WriteBackAllocate,
        csh: Shareability::Inner,
        stall_disable: false,
    }
}

fn stage2() -> Stage2Ste {
    smmu_kdump::image::stage2_ste(0xb000_0000)
}

fn ste_words(kind: Kind) -> [u64; 8] {
    let (translation, s2vmid) = match kind {
        Kind::Invalid => return [0; 8],
        Kind::Abort => return SteConfig::ABORT.encode().to_words(),
        Kind::Bypass => return SteConfig::BYPASS.encode().to_words(),
        Kind::Stage1 => (Translation::Stage1(stage1()), 0),
        Kind::Stage2(vmid) => (Translation::Stage2(stage2()), vmid),
    };
    SteConfig {
        translation,
        s2vmid,
        ..SteConfig::ABORT
    }
    .encode()
    .to_words()
}

fn cd_words(asid: u16) -> [u64; 8] {
    let tt0 = TableControls {
        tsz: 16,
        ir: Cacheability::WriteBackAllocate,
        or: Cacheability::WriteBackAllocate,
        sh: Shareability::Inner,
        epd: false,
        ttb: 0xc000_0000,
    };
    make::stage1_cd(asid, tt0, Granule::Size4K, AddressSize::Bits48, 0xff04)
        .encode()
        .to_words()
}

/// The image of a table of 2^`log2size` StreamIDs with `valid` valid level-1 descriptors
/// (spread by [`valid_index`]), the k-th pointing at its own level-2 table `L2_BASE` + 16 KiB
/// × k, every level-2 table holding the same STEs.
pub(crate) fn build(log2size: u32, valid: u64) -> Image {
    let entries = l1_entries(log2size);
    assert!((1..=entries).contains(&valid), "{valid} of {entries}");
    let mut image = Image::new();
    image.region(L1_BASE, entries * 8);
    for k in 0..valid {
        let desc = L1StdConfig {
            span: (SPLIT + 1) as u8,
            l2_ptr: L2_BASE + k * L2_BYTES,
        }
        .encode()
        .to_words()[0];
        image.write(L1_BASE + valid_index(k, valid, entries) * 8, &[desc]);
    }
    let l2: Vec<u64> = (0..STES_PER_L2).flat_map(|i| ste_words(kind(i))).collect();
    image.repeat(L2_BASE, &l2, valid);
    image.region(CD_BASE, CDS_PER_TABLE * 64);
    for (ssid, asid) in VALID_CDS {
        image.write(CD_BASE + ssid * 64, &cd_words(asid));
    }
    image
}

/// The registers of a Grace-like SMMU ([`Registers::grace_like`]) with the 2-level table at
/// [`L1_BASE`].
pub(crate) fn snapshot(log2size: u32) -> RegisterSnapshot {
    Registers::grace_like()
        .two_level(L1_BASE, log2size)
        .snapshot()
}

/// A crash kernel on a coherent SMMU.
pub(crate) const PLATFORM: AdoptPlatform = AdoptPlatform {
    crash_kernel: true,
    coherent: true,
    cache_maintenance: false,
    expect_e2h: None,
};

/// What a crash kernel's sink does with the reports: a bitmap per 16-bit ID space (set, so a
/// repeated ID is accepted) and a count of deferred StreamIDs.
pub(crate) struct Reservations {
    vmids: Box<[u64; 1024]>,
    asids: Box<[u64; 1024]>,
    /// [`Found::Deferred`] reports.
    pub(crate) deferred: u64,
}

impl Reservations {
    /// Nothing reserved.
    pub(crate) fn new() -> Self {
        Reservations {
            vmids: Box::new([0; 1024]),
            asids: Box::new([0; 1024]),
            deferred: 0,
        }
    }

    /// Records one report.
    pub(crate) fn accept(&mut self, found: Found) {
        let set = |map: &mut [u64; 1024], id: u16| map[usize::from(id) / 64] |= 1 << (id % 64);
        match found {
            Found::Vmid { vmid, .. } => set(&mut self.vmids, vmid),
            Found::Asid { asid, .. } => set(&mut self.asids, asid),
            Found::Deferred { .. } => self.deferred += 1,
        }
    }

    /// Number of distinct (VMIDs, ASIDs) reserved.
    pub(crate) fn distinct(&self) -> (u32, u32) {
        let ones = |map: &[u64; 1024]| map.iter().map(|w| w.count_ones()).sum();
        (ones(&self.vmids), ones(&self.asids))
    }
}

/// One adoption check of `image` (decide + validate_geometry + scan), reports to `sink`.
pub(crate) fn adopt(
    snap: &RegisterSnapshot,
    image: &Image,
    sink: &mut Reservations,
) -> Result<Adoption, Refusal> {
    thread_local! {
        // The scan's scratch (SPEC K15), allocated once: a kernel takes it from the HAL.
        static SCRATCH: std::cell::RefCell<Vec<ScratchSlot>> =
            std::cell::RefCell::new(vec![ScratchSlot::default(); MAX_SCRATCH_SLOTS]);
    }
    SCRATCH.with_borrow_mut(|scratch| {
        check_adoption(snap, &PLATFORM, &any_ram, image, scratch, &mut |found| {
            sink.accept(found);
            Ok(())
        })
    })
}

/// The bytes SPEC K15 and K20 say the scan reads: the whole level-1 table, each valid
/// level-2 table (16 KiB), the one CD table once, one STE per VMID read back to compare
/// its second user with its first (K19; from the second level-2 table on the tag cache knows
/// them), and the first user of each tag once more for its start table (K18).
pub(crate) fn expected_bytes(log2size: u32, valid: u64) -> u64 {
    l1_entries(log2size) * 8
        + valid * L2_BYTES
        + CDS_PER_TABLE * 64
        + tag_compares(valid) * 64
        + root_rereads(valid) * 64
}

/// Entries read once more after the walk for their translation table base (SPEC K18): the
/// first user of each VMID and each ASID in use.
pub(crate) fn root_rereads(valid: u64) -> u64 {
    if valid > 0 {
        count_kind(|k| matches!(k, Kind::Stage2(_))) + VALID_CDS.len() as u64
    } else {
        0
    }
}

/// STEs read back to compare users of one VMID: each of the 16 VMIDs once, when its second
/// user (in the second level-2 table) is met.
pub(crate) fn tag_compares(valid: u64) -> u64 {
    if valid > 1 {
        count_kind(|k| matches!(k, Kind::Stage2(_)))
    } else {
        0
    }
}

/// CDs in each CD table of the CD-budget cases: 2^20, the most `IDR1.SSIDSIZE` allows.
pub(crate) const BIG_CD_MAX: u8 = 20;
/// Physical address of the first big CD table (each 64 MiB, 64 MiB aligned).
pub(crate) const BIG_CD_BASE: u64 = 0x40_0000_0000;
/// ASIDs the big CD tables cycle through: more than the scan's tag cache holds, so every
/// CD after the first cycle is read back and compared (the slowest path of K19).
pub(crate) const BIG_CD_ASIDS: u64 = 4096;

/// SPEC K20's worst case: a linear stream table whose first `tables` stage-1 STEs each point
/// at their own linear CD table of 2^20 valid CDs (ASIDs cycling through 1..=4096, one
/// address space per ASID). Two tables are exactly [`smmu_kdump::CD_SCAN_BUDGET`] CDs: the
/// most the scan ever reads; a third is refused before it is read.
pub(crate) fn build_cd_budget(tables: u64) -> (RegisterSnapshot, Image) {
    let stream_table = 0x8000_0000;
    let mut image = Image::new();
    image.region(stream_table, 16 * 64);
    let cd_bytes = 64u64 << BIG_CD_MAX;
    for t in 0..tables {
        let s1 = Stage1Ste {
            context_ptr: BIG_CD_BASE + t * cd_bytes,
            cd_max: BIG_CD_MAX,
            fmt: S1Fmt::Linear,
            ..stage1()
        };
        let ste = SteConfig {
            translation: Translation::Stage1(s1),
            ..SteConfig::ABORT
        }
        .encode()
        .to_words();
        image.write(stream_table + t * 64, &ste);
        let block: Vec<u64> = (1..=BIG_CD_ASIDS)
            .flat_map(|asid| cd_words(asid as u16))
            .collect();
        image.repeat(
            BIG_CD_BASE + t * cd_bytes,
            &block,
            (1 << BIG_CD_MAX) / BIG_CD_ASIDS,
        );
    }
    let snap = Registers::grace_like().linear(stream_table, 4).snapshot();
    (snap, image)
}

/// SPEC K20 in the shape issue 10 found: 256 valid level-1 descriptors, each to its own
/// level-2 table of 256 stage-1 STEs, all sharing ONE CD table of 2^20 CDs: 2^16 STEs, one
/// table scanned once (it took hours when each STE walked it).
pub(crate) fn build_shared_big_cd_table() -> (RegisterSnapshot, Image) {
    let log2size = 16;
    let entries = l1_entries(log2size);
    let mut image = Image::new();
    image.region(L1_BASE, entries * 8);
    for k in 0..entries {
        let desc = L1StdConfig {
            span: (SPLIT + 1) as u8,
            l2_ptr: L2_BASE + k * L2_BYTES,
        }
        .encode()
        .to_words()[0];
        image.write(L1_BASE + k * 8, &[desc]);
    }
    let s1 = Stage1Ste {
        context_ptr: BIG_CD_BASE,
        cd_max: BIG_CD_MAX,
        fmt: S1Fmt::Linear,
        ..stage1()
    };
    let ste = SteConfig {
        translation: Translation::Stage1(s1),
        ..SteConfig::ABORT
    }
    .encode()
    .to_words();
    let l2: Vec<u64> = (0..STES_PER_L2).flat_map(|_| ste).collect();
    image.repeat(L2_BASE, &l2, entries);
    let block: Vec<u64> = (1..=BIG_CD_ASIDS)
        .flat_map(|asid| cd_words(asid as u16))
        .collect();
    image.repeat(BIG_CD_BASE, &block, (1 << BIG_CD_MAX) / BIG_CD_ASIDS);
    (snapshot(log2size), image)
}

/// The scratch the scan needs for `snap`'s table, in bytes (SPEC K15).
pub(crate) fn scratch_bytes(snap: &RegisterSnapshot) -> u64 {
    let features = snap.features();
    let geometry = smmu_kdump::validate_geometry(snap, &features, &any_ram).unwrap();
    smmu_kdump::scratch_slots(&geometry, &features) as u64 * 16
}

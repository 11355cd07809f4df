//! Sparse in-memory images of a crashed kernel's 2-level stream table (SPLIT 8), shared by the
//! `adopt` bench and the `k15_cost` test (both include this file with `#[path]`).
//!
//! The image holds three regions only, whatever the table's size: the level-1 table (one `Vec`
//! of 2^(LOG2SIZE − 8) descriptors, 512 KiB for 2^24 StreamIDs), ONE 16 KiB level-2 table that
//! every valid level-1 descriptor points at (legal input: the scan does the same work for each
//! descriptor as with distinct tables), and one small linear CD table shared by every stage-1
//! STE. Reads are counted through [`Cell`]s: bytes, calls, and the largest single request.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;

use smmu::arch::cd::TableControls;
use smmu::arch::idr::IdRegs;
use smmu::arch::l1std::L1StdConfig;
use smmu::arch::regs::{IDR0, IDR1, IDR5, STRTAB_BASE_CFG};
use smmu::arch::ste::{S1Dss, S1Fmt, Stage1Ste, Stage2Ste, SteConfig, Translation};
use smmu::arch::{AddressSize, Cacheability, Granule, Shareability};
use smmu::writer::make;
use smmu_kdump::{
    any_ram, check_adoption, AdoptPlatform, Adoption, Found, MemFault, OldMemory, Refusal,
    RegisterSnapshot, ScratchSlot, MAX_SCRATCH_SLOTS,
};

/// Physical address of the level-1 table (aligned to the largest one, 1 MiB).
pub(crate) const L1_BASE: u64 = 0x8000_0000;
/// Physical address of the one level-2 table.
pub(crate) const L2_BASE: u64 = 0x9000_0000;
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

/// A sparse, instrumented image of the crashed kernel's memory.
pub(crate) struct Image {
    /// Region base → its 64-bit words.
    regions: BTreeMap<u64, Vec<u64>>,
    bytes_read: Cell<u64>,
    reads: Cell<u64>,
    max_read_bytes: Cell<u64>,
}

/// What the scan asked of an [`Image`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReadCounters {
    /// Bytes read, summed over every `read_words` call.
    pub(crate) bytes: u64,
    /// `read_words` calls.
    pub(crate) reads: u64,
    /// The largest single request, `out.len()` × 8.
    pub(crate) max_read_bytes: u64,
}

impl Image {
    /// The counters since the last [`Image::reset`].
    pub(crate) fn counters(&self) -> ReadCounters {
        ReadCounters {
            bytes: self.bytes_read.get(),
            reads: self.reads.get(),
            max_read_bytes: self.max_read_bytes.get(),
        }
    }

    /// Zeroes the counters.
    pub(crate) fn reset(&self) {
        self.bytes_read.set(0);
        self.reads.set(0);
        self.max_read_bytes.set(0);
    }

    /// Bytes the image holds (its own memory, not counting map overhead).
    pub(crate) fn resident_bytes(&self) -> u64 {
        self.regions.values().map(|r| r.len() as u64 * 8).sum()
    }
}

impl OldMemory for Image {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        let bytes = out.len() as u64 * 8;
        self.bytes_read.set(self.bytes_read.get() + bytes);
        self.reads.set(self.reads.get() + 1);
        self.max_read_bytes
            .set(self.max_read_bytes.get().max(bytes));
        if pa % 8 != 0 {
            return Err(MemFault);
        }
        let (&base, words) = self.regions.range(..=pa).next_back().ok_or(MemFault)?;
        let first = usize::try_from((pa - base) / 8).map_err(|_| MemFault)?;
        let end = first.checked_add(out.len()).ok_or(MemFault)?;
        out.copy_from_slice(words.get(first..end).ok_or(MemFault)?);
        Ok(())
    }
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
    Stage2Ste {
        t0sz: 24,
        sl0: 1,
        ir0: Cacheability::WriteBackAllocate,
        or0: Cacheability::WriteBackAllocate,
        sh0: Shareability::Inner,
        tg: Granule::Size4K,
        ps: AddressSize::Bits48,
        aa64: true,
        endi: false,
        affd: true,
        ptw: false,
        hd: false,
        ha: false,
        stall: false,
        record: true,
        fwb: false,
        ttb: 0xb000_0000,
    }
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
/// (spread by [`valid_index`]), all pointing at the one level-2 table.
pub(crate) fn build(log2size: u32, valid: u64) -> Image {
    let entries = l1_entries(log2size);
    assert!((1..=entries).contains(&valid), "{valid} of {entries}");
    let l1_desc = L1StdConfig {
        span: (SPLIT + 1) as u8,
        l2_ptr: L2_BASE,
    }
    .encode()
    .to_words()[0];
    let mut l1 = vec![0u64; entries as usize];
    for k in 0..valid {
        l1[valid_index(k, valid, entries) as usize] = l1_desc;
    }
    let l2: Vec<u64> = (0..STES_PER_L2).flat_map(|i| ste_words(kind(i))).collect();
    let mut cds = vec![0u64; CDS_PER_TABLE as usize * 8];
    for (ssid, asid) in VALID_CDS {
        let at = ssid as usize * 8;
        cds[at..at + 8].copy_from_slice(&cd_words(asid));
    }
    Image {
        regions: BTreeMap::from([(L1_BASE, l1), (L2_BASE, l2), (CD_BASE, cds)]),
        bytes_read: Cell::new(0),
        reads: Cell::new(0),
        max_read_bytes: Cell::new(0),
    }
}

/// The registers of a Grace-like SMMU (both stages, 16-bit ASIDs and VMIDs, 2-level stream and
/// CD tables, coherent, 24-bit StreamIDs, 48-bit OAS) with SMMUEN set and the 2-level table at
/// [`L1_BASE`].
pub(crate) fn snapshot(log2size: u32) -> RegisterSnapshot {
    let idr0 = (IDR0::S1P::SET
        + IDR0::S2P::SET
        + IDR0::TTF.val(0b10)
        + IDR0::COHACC::SET
        + IDR0::ASID16::SET
        + IDR0::VMID16::SET
        + IDR0::CD2L::SET
        + IDR0::ST_LVL.val(1))
    .value;
    let idr1 = (IDR1::SIDSIZE.val(24) + IDR1::SSIDSIZE.val(20)).value;
    let idr5 = IDR5::OAS.val(AddressSize::Bits48.encode() as u32).value;
    let cfg = (STRTAB_BASE_CFG::FMT.val(1)
        + STRTAB_BASE_CFG::SPLIT.val(SPLIT)
        + STRTAB_BASE_CFG::LOG2SIZE.val(log2size))
    .value;
    RegisterSnapshot {
        ids: IdRegs {
            idr: [idr0, idr1, 0, 0, 0, idr5],
            iidr: 0,
            aidr: 0,
        },
        cr0: 0b1101, // SMMUEN, EVENTQEN, CMDQEN
        strtab_base: L1_BASE,
        strtab_base_cfg: cfg,
        ..RegisterSnapshot::default()
    }
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
    let mut scratch = vec![ScratchSlot::default(); MAX_SCRATCH_SLOTS];
    check_adoption(
        snap,
        &PLATFORM,
        &any_ram,
        image,
        &mut scratch,
        &mut |found| {
            sink.accept(found);
            Ok(())
        },
    )
}

/// The bytes SPEC K15 says the scan reads: the whole level-1 table, each valid level-2 table
/// (16 KiB), and the CD table of each stage-1 STE in them.
pub(crate) fn expected_bytes(log2size: u32, valid: u64) -> u64 {
    l1_entries(log2size) * 8 + valid * (L2_BYTES + stage1_per_l2() * CDS_PER_TABLE * 64)
}

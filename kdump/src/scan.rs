//! The walk over the crashed kernel's tables (SPEC K3 at adoption, K14, K15, K18–K21).
//!
//! [`scan`] works in two passes over read-only memory and a scratch area the caller provides
//! (see [Memory](#memory)).
//!
//! **Pass 1, the stream table.** Every level-1 descriptor of a 2-level table (each checked
//! with [`validate_l1_at`](crate::validate_l1_at); one bad descriptor fails the scan) and every
//! STE of each valid level-2 table, or of the linear table: the walk of [`visit_stes`], which
//! `smmuctl inspect` uses too, stopping at the first part it cannot walk. STE fields are
//! decoded only where the STE's
//! `Config` uses them (SPEC K21, [`Ste::decode`]); for each valid STE:
//! - a reserved encoding is a refusal ([`Refusal::SteReserved`]), `STRW` = `0bx1` on a
//!   stage-1 stream is [`Refusal::SteStrwIllegal`], and the ILLEGAL cases that depend on the
//!   ID registers (a stage the SMMU lacks, `S1STALLD` under a stall model that forbids it,
//!   split-stage ATS outside nesting, hardware updates the SMMU lacks) are
//!   [`Refusal::SteIllegal`];
//! - stage 2 and nested: `S2VMID` must be non-zero and fit `IDR0.VMID16`; stage 1 only with
//!   `IDR0.S2P` = 1 and StreamWorld EL1: a non-zero `S2VMID` tags the stage-1 entries
//!   (§5.2, §3.17) and must fit too (zero is the VMID this kernel's own stage-1 domains
//!   use). Each is reported as [`Found::Vmid`] (SPEC K19);
//! - stage 1: the CD table's geometry is validated (pointer non-zero, `S1CDMax` ≤
//!   `IDR1.SSIDSIZE`, `S1Fmt` supported, aligned as §5.2 requires, below 2^OAS) and the
//!   table is recorded; `S1CDMax` is IGNORED when `SSIDSIZE` = 0;
//! - nested: `S1ContextPtr` is an IPA (§5.2), so the CD table is not reachable and is not read;
//!   its address-independent geometry (`S1CDMax`, `S1Fmt`, alignment) is still checked. The
//!   guest's ASIDs are tagged with the VMID reserved for the STE, so they cannot alias this
//!   kernel's domains (Linux does the same);
//! - every STE with `V` = 1 and `Config` ≠ abort is reported as [`Found::Deferred`] (SPEC K11).
//!
//! **Pass 2, the CD tables.** Each *distinct* CD table (same address, format and `S1CDMax`)
//! is walked once, however many STEs share it (SPEC K20), in address order, on behalf of the
//! lowest StreamID that uses it: linear, or level-1 CD descriptors then leaf tables whose
//! pointers are validated the same way. The ASID of each valid CD, non-zero and fitting
//! `IDR0.ASID16`, is reported as [`Found::Asid`]. CD fields are decoded only where used
//! ([`Cd::decode`]) for the StreamWorld of the STE that reaches them (§5.2 `STRW` with
//! `CR2.E2H`: under NS-EL2 the ASID is IGNORED, `EPD0`/`EPD1` read as 0 and there is no
//! `TTB1`); every ILLEGAL value of §5.4 ([`legal::cd`]) is a [`Refusal::CdIllegal`] naming
//! its rule. Every NS-EL2 CD shares one tag (§3.17), so they are compared as one ASID.
//!
//! **Translation roots (SPEC K18).** After both passes, the first user of each ASID, VMID
//! and of the NS-EL2 tag is read once more: the starting-level table of each live regime
//! (`TTB0`/`TTB1` unless the effective `EPD` disables it, `S2TTB` with its concatenated
//! tables) must not share a byte with any structure ([`Refusal::RootOverlaps`]). K19 makes
//! the first user's root the root of every user of the tag. Deeper table levels are not
//! followed (K15).
//!
//! **Disjointness (SPEC K18).** The linear or level-1 stream table, each level-2 table,
//! each CD or level-1 CD table and each leaf CD table must not share a byte with any other:
//! an L1 descriptor pointing into the L1 table, two descriptors sharing a level-2 table, a CD
//! table inside a level-2 table — each lets a write the crash kernel makes to one structure
//! change another one. The first overlap found is refused with a code naming the two kinds
//! ([`Refusal::StructuresOverlap`]). One CD table shared by several STEs is one structure.
//!
//! **Aliased tags (SPEC K19).** One VMID must name one stage-2 configuration (the STE fields
//! §5.2 lets a TLB entry cache; a stage-1-only STE's VMID names "no stage 2"), and one ASID
//! one stage-1 configuration (every CD field §5.4 lets a TLB entry cache: all but `A`, `R`,
//! `S`, `PARTID`, `PMG`). Identical configurations sharing a tag are legal (one domain
//! attached to several masters); anything else would make this kernel's TLB maintenance by
//! ASID or VMID miss entries, and is [`Refusal::AsidAlias`] / [`Refusal::VmidAlias`]. ASIDs
//! are compared across VMIDs too: stricter than §3.17 needs, never looser.
//!
//! **Budget (SPEC K20).** Pass 2 reads at most [`CD_SCAN_BUDGET`] CDs and level-1 CD
//! descriptors in all; a table that would exceed it is not read and the scan refuses with
//! [`Refusal::ScanBudgetExceeded`].
//!
//! Reports: pass 1 reports `Vmid` then `Deferred` for each STE in StreamID order; pass 2
//! reports `Asid` in SubstreamID order for each distinct CD table. The same ASID or VMID is
//! reported once per use, so the sink must accept one it has already reserved. The sink's
//! error stops the scan and is returned as is (use [`Refusal::AsidConflict`] /
//! [`Refusal::VmidConflict`]).
//!
//! # Memory
//!
//! Nothing recurses or allocates; every read is at most [`READ_CHUNK_WORDS`] words into a
//! buffer on the stack. What must be remembered across the walk lives in the caller's
//! scratch area of [`scratch_slots`] [`ScratchSlot`]s (16 bytes each), a number fixed by the
//! ID registers and the table geometry before the walk starts (SPEC K15):
//! - a first-user map per tag: one 8-byte entry per possible ASID and per possible VMID,
//!   and one for the NS-EL2 regime (2 × 2^16 × 8 = 1 MiB on an SMMU with 16-bit tags, 4 KiB
//!   with 8-bit tags). It is never zeroed as a whole: a bitmap on the stack marks the
//!   blocks of 64 entries the scan cleared and wrote, so the cost follows the tags in use;
//! - a list of structures: one slot for the stream table, one per level-1 descriptor and
//!   [`MAX_CD_STRUCTURES`] for CD tables and leaves. It is sorted in place once after each
//!   pass (and whenever it fills, merging duplicate CD tables); a neighbour check on the
//!   sorted list finds every overlap. More distinct CD structures than it holds refuse with
//!   [`Refusal::TooManyStructures`] — also when merging a full list frees less than an eighth
//!   of it, so that no input makes the scan sort it again for every new STE.
//!
//! For the largest table adopted (2^17 level-1 descriptors) that is 1 MiB + 3 MiB. Time is
//! O(valid L1 descriptors × 256 + CDs scanned) reads plus the sort, O(n log n) in the
//! structures; `kdump/BENCHMARKS.md` has the figures.

use smmu::arch::cd::{Cd, CdConfig, L1Cd};
use smmu::arch::idr::{Features, StallModel};
use smmu::arch::ste::{self, Eats, S1Fmt, Stage1Ste, Stage2Ste, Ste, SteConfig, Strw, Translation};
use smmu::arch::DecodeError;

use crate::legal::{self, CdContext, World};
use crate::reason::{Illegal, Refusal, Root, RootKind, Structure, StructureKind};
use crate::validate::{range_below_oas, Geometry, STES_PER_L2, STE_BYTES};
use crate::walk::{visit_stes, OnGap, SteEntry, SteVisitor};

// Old memory and the largest read have their own module, which the walk shares.
pub use crate::memory::{MemFault, OldMemory, READ_CHUNK_WORDS};

/// SPEC K20: the most CDs and level-1 CD descriptors the scan reads in all (2^21). Linux
/// gives a master a linear table of at most 1024 CDs, or a 2-level one whose leaves (1024
/// CDs) are allocated as SubstreamIDs are bound: 2^21 covers 2048 such leaves. The worst
/// case stays well under a second (`kdump/BENCHMARKS.md`).
pub const CD_SCAN_BUDGET: u64 = 1 << 21;

/// SPEC K15/K18: the most distinct CD tables, level-1 CD tables and leaf CD tables the
/// scan can keep track of (2^16: one per possible PCIe function).
pub const MAX_CD_STRUCTURES: usize = 1 << 16;

/// Bytes per CD.
const CD_BYTES: u64 = 64;
/// Bytes per level-1 CD descriptor.
const L1CD_BYTES: u64 = 8;

/// One 16-byte slot of the scan's scratch area: two words. All-zero is a valid value, so the
/// area may come straight from zeroed pages (`vec![[0; 2]; n]` on a host allocates it
/// zeroed); its content does not matter, [`scan`] initialises what it uses.
pub type ScratchSlot = [u64; 2];

/// The number of [`ScratchSlot`]s [`scan`] needs for `geometry` on an SMMU with `features`
/// (see the [module documentation](self#memory)).
pub fn scratch_slots(geometry: &Geometry, features: &Features) -> usize {
    tag_slots(features) + extent_slots(geometry)
}

/// The most [`scratch_slots`] can be for any table adopted (16-bit tags, 2^17 level-1
/// descriptors): 262 147 slots, 4 MiB.
pub const MAX_SCRATCH_SLOTS: usize = (1 << 16) + 1 + 2 + (1 << 17) + MAX_CD_STRUCTURES;

fn tag_slots(features: &Features) -> usize {
    // Two 8-byte first-user entries per slot: the ASIDs, the VMIDs, then one slot whose
    // first entry is the NS-EL2 regime's single tag (SPEC K19, §3.17).
    (1usize << features.asid_bits()) / 2 + (1usize << features.vmid_bits()) / 2 + 1
}

/// The tag map's entry for the NS-EL2 regime (no ASID: one address space).
fn el2_tag_index(features: &Features) -> usize {
    (1usize << features.asid_bits()) + (1usize << features.vmid_bits())
}

fn extent_slots(geometry: &Geometry) -> usize {
    2 + geometry.l1_entries().unwrap_or(0) as usize + MAX_CD_STRUCTURES
}

/// Something the scan found in use by the crashed kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Found {
    /// A stage-2 or nested STE's `S2VMID`: to reserve (SPEC K14).
    Vmid {
        /// The StreamID.
        sid: u32,
        /// The VMID (non-zero, fits the SMMU's VMID width).
        vmid: u16,
    },
    /// A valid CD's `ASID`, reached from a stage-1 STE: to reserve (SPEC K14).
    Asid {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID (the CD's index in its table).
        ssid: u32,
        /// The ASID (non-zero, fits the SMMU's ASID width).
        asid: u16,
    },
    /// An STE with `V` = 1 and `Config` ≠ abort: its master's attach is deferred (SPEC K11).
    Deferred {
        /// The StreamID.
        sid: u32,
    },
}

/// What a successful scan visited (SPEC K15's measure of its work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScanStats {
    /// Level-1 descriptors read (2-level tables).
    pub l1_descriptors: u64,
    /// Of which valid.
    pub l1_valid: u64,
    /// STEs read.
    pub stes_scanned: u64,
    /// Of which valid (`V` = 1).
    pub stes_valid: u64,
    /// Distinct CD tables walked (each once, however many STEs share it, SPEC K20).
    pub cd_tables: u64,
    /// CDs read.
    pub cds_scanned: u64,
    /// Of which valid.
    pub cds_valid: u64,
    /// [`Found::Vmid`] reports.
    pub vmids: u64,
    /// [`Found::Asid`] reports.
    pub asids: u64,
    /// [`Found::Deferred`] reports.
    pub deferred: u64,
    /// Distinct structures checked for overlap (SPEC K18).
    pub structures: u64,
    /// Entries re-read to compare two users of one tag (SPEC K19).
    pub tag_compares: u64,
    /// Calls to [`OldMemory::read_words`].
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

// The packing of a structure into a ScratchSlot: `a` is the base address, `b` holds the kind,
// log2 of the size, the CD table's shape and the owner, in an order that sorts identical CD
// tables next to each other, lowest owner first.
const KIND_SHIFT: u32 = 62;
const LOG2_SHIFT: u32 = 56;
const SHAPE_SHIFT: u32 = 48;
/// What a CD table's CDs are checked against beyond its shape (the STE's StreamWorld and
/// `S1STALLD`): STEs that differ there do not share one table (§5.4: a CD reached from
/// STEs of different Exception levels is not one configuration).
const CONTEXT_SHIFT: u32 = 40;
const CONTEXT_EL2: u64 = 1;
const CONTEXT_STALLD: u64 = 2;

const fn kind_bits(kind: StructureKind) -> u64 {
    match kind {
        StructureKind::StreamTable => 0,
        StructureKind::L2Table => 1,
        StructureKind::CdTable => 2,
        StructureKind::CdLeaf => 3,
    }
}

fn extent(kind: StructureKind, base: u64, bytes: u64, shape: u8, owner: u32) -> ScratchSlot {
    // Every size is a power of two below 2^40 (K2, §5.2), so its log2 fits 6 bits.
    let log2 = u64::from(bytes.max(1).trailing_zeros() & 63);
    [
        base,
        (kind_bits(kind) << KIND_SHIFT)
            | (log2 << LOG2_SHIFT)
            | (u64::from(shape) << SHAPE_SHIFT)
            | u64::from(owner),
    ]
}

fn structure(e: &ScratchSlot) -> Structure {
    let kind = match e[1] >> KIND_SHIFT {
        0 => StructureKind::StreamTable,
        1 => StructureKind::L2Table,
        2 => StructureKind::CdTable,
        _ => StructureKind::CdLeaf,
    };
    Structure {
        kind,
        base: e[0],
        bytes: 1u64 << ((e[1] >> LOG2_SHIFT) & 63),
        owner: e[1] as u32,
    }
}

fn shape(e: &ScratchSlot) -> (u8, u8) {
    let s = (e[1] >> SHAPE_SHIFT) as u8;
    (s >> 5, s & 31)
}

/// The CD context bits of a stage-1 STE (see [`CONTEXT_SHIFT`]).
fn context_bits(strw_el2: bool, stalls_disabled: bool) -> u64 {
    (if strw_el2 { CONTEXT_EL2 } else { 0 } | if stalls_disabled { CONTEXT_STALLD } else { 0 })
        << CONTEXT_SHIFT
}

/// The CD context a table entry carries, with `CR2.E2H`.
fn context(e: &ScratchSlot, e2h: bool) -> CdContext {
    let bits = e[1] >> CONTEXT_SHIFT;
    CdContext {
        world: match (bits & CONTEXT_EL2 != 0, e2h) {
            (false, _) => World::El1,
            (true, false) => World::El2,
            (true, true) => World::El2E2h,
        },
        stalls_disabled: bits & CONTEXT_STALLD != 0,
    }
}

/// Whether `x` and `y` are one CD table (same address, format and `S1CDMax`), seen from
/// different STEs.
fn same_cd_table(x: &ScratchSlot, y: &ScratchSlot) -> bool {
    x[0] == y[0]
        && x[1] >> 32 == y[1] >> 32
        && x[1] >> KIND_SHIFT == kind_bits(StructureKind::CdTable)
}

/// The last byte of a structure (sizes were checked below 2^OAS, so no overflow; saturate
/// anyway).
fn last_byte(e: &ScratchSlot) -> u64 {
    e[0].saturating_add(structure(e).bytes - 1)
}

/// What a TLB entry tagged with a VMID may cache of an STE (§5.2): the stage-2 fields but
/// the fault controls; `None` for a stage-1-only stream (stage 2 bypassed).
fn vmid_identity(config: &SteConfig) -> Option<Stage2Ste> {
    config.translation.stage2().map(|s2| Stage2Ste {
        stall: false,
        record: false,
        ..*s2
    })
}

/// Reads a tag's configuration back from an entry's words.
type IdentityAt<I> = fn(&[u64; 8]) -> Option<I>;

/// The [`asid_identity`] of the CD words `w` (NS-EL1 or NS-EL2-E2H).
fn cd_identity(w: &[u64; 8]) -> Option<CdConfig> {
    match Cd::from_words(*w).decode() {
        Ok(Some(c)) => Some(asid_identity(&c)),
        _ => None,
    }
}

/// The [`asid_identity`] of the CD words `w` as NS-EL2 reads them ([`legal::as_seen`]).
fn cd_identity_el2(w: &[u64; 8]) -> Option<CdConfig> {
    cd_identity(&legal::as_seen(*w, World::El2))
}

/// What a TLB entry tagged with an ASID may cache of a CD (§5.4): every field but `A`, `R`,
/// `S`, `PARTID` and `PMG`.
fn asid_identity(config: &CdConfig) -> CdConfig {
    CdConfig {
        stall: false,
        record: false,
        abort: false,
        partid: 0,
        pmg: 0,
        ..*config
    }
}

struct Scan<'a> {
    features: &'a Features,
    oas_bits: u32,
    /// `SMMU_CR2.E2H`: with `STRW` = EL2 it selects NS-EL2-E2H over NS-EL2 (§5.2 STRW).
    e2h: bool,
    mem: &'a dyn OldMemory,
    sink: &'a mut dyn FnMut(Found) -> Result<(), Refusal>,
    stats: ScanStats,
    /// First user of each ASID (index = ASID) then of each VMID: the PA of its CD or STE
    /// with bit 0 set, or 0.
    tags: &'a mut [ScratchSlot],
    /// The structures: `list[..sorted]` sorted and merged, then appended ones.
    list: &'a mut [ScratchSlot],
    len: usize,
    sorted: usize,
    /// Pass 2 walks `list[..sorted]`: nothing may reorder it.
    frozen: bool,
    /// Re-validation of one STE ([`revalidate_ste`]): no structure list, each CD table
    /// walked at once.
    inline: bool,
    last_cd_table: Option<ScratchSlot>,
    budget: u64,
    /// Tags whose first user's configuration was read back, by tag modulo
    /// [`TAG_CACHE`]: most tables share few tags, so most comparisons need no read.
    asid_cache: TagCache<CdConfig>,
    vmid_cache: TagCache<Option<Stage2Ste>>,
    s2_memo: S2Memo,
    /// One bit per [`TAG_BLOCK`] entries of `tags`: set once the block was cleared and
    /// written; an untouched block reads as zero.
    touched: [u64; TOUCHED_WORDS],
}

/// Tag map entries per block (32 slots, 512 bytes).
const TAG_BLOCK: usize = 64;
/// Bitmap words for the largest tag map (2^16 ASIDs, 2^16 VMIDs, the NS-EL2 tag).
const TOUCHED_WORDS: usize = ((1usize << 17) + 1).div_ceil(TAG_BLOCK).div_ceil(64);

/// Entries of each tag cache (on the stack: 16 CD and 16 stage-2 configurations, ~2.5 KiB).
const TAG_CACHE: usize = 16;

/// The last configuration seen per tag, a few tags at a time ([`TAG_CACHE`] slots).
type TagCache<I> = [Option<(u16, I)>; TAG_CACHE];

impl Scan<'_> {
    fn read(&mut self, pa: u64, out: &mut [u64]) -> Result<(), Refusal> {
        let len = out.len() as u64 * 8;
        self.stats.reads += 1;
        self.stats.bytes_read += len;
        self.mem
            .read_words(pa, out)
            .map_err(|MemFault| Refusal::MemoryUnreadable { pa, len })
    }

    fn emit(&mut self, found: Found) -> Result<(), Refusal> {
        (self.sink)(found)
    }

    /// Whether block `b` of the tag map holds what the scan wrote (else it reads as zero).
    fn touched(&self, b: usize) -> bool {
        self.touched
            .get(b / 64)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    fn tag(&self, index: usize) -> u64 {
        if !self.touched(index / TAG_BLOCK) {
            return 0;
        }
        self.tags
            .get(index / 2)
            .map_or(0, |s| if index.is_multiple_of(2) { s[0] } else { s[1] })
    }

    fn set_tag(&mut self, index: usize, value: u64) {
        let b = index / TAG_BLOCK;
        if !self.touched(b) {
            // First write to this block: clear it, then it is the scan's.
            let slots = TAG_BLOCK / 2;
            if let Some(block) = self.tags.get_mut(b * slots..) {
                let n = block.len().min(slots);
                if let Some(block) = block.get_mut(..n) {
                    zerocopy::FromZeros::zero(block);
                }
            }
            if let Some(w) = self.touched.get_mut(b / 64) {
                *w |= 1 << (b % 64);
            }
        }
        if let Some(s) = self.tags.get_mut(index / 2) {
            if index.is_multiple_of(2) {
                s[0] = value;
            } else {
                s[1] = value;
            }
        }
    }

    /// Reads the 64-byte entry at `pa` (a tag's first user) for comparison.
    fn reread(&mut self, pa: u64) -> Result<[u64; 8], Refusal> {
        self.stats.tag_compares += 1;
        let mut w = [0u64; 8];
        self.read(pa, &mut w)?;
        Ok(w)
    }

    /// SPEC K19: `vmid`, used by the STE at `pa`, names one stage-2 configuration.
    fn vmid_tag(
        &mut self,
        sid: u32,
        vmid: u16,
        pa: u64,
        config: &SteConfig,
    ) -> Result<(), Refusal> {
        let index = (1usize << self.features.asid_bits()) + usize::from(vmid);
        let alias = |first_ste| Refusal::VmidAlias {
            sid,
            vmid,
            first_ste,
        };
        self.one_configuration_per_tag(
            index,
            vmid,
            pa,
            vmid_identity(config),
            alias,
            |scan| &mut scan.vmid_cache,
            |w| {
                // Only stage-2 fields matter here: S1CDMax cleared, S1Fmt and S1DSS (which
                // SSIDSIZE = 0 may leave IGNORED and reserved) are not read.
                let mut w = *w;
                ste::fields::S1_CD_MAX.set(&mut w, 0);
                match Ste::from_words(w).decode() {
                    Ok(Some(c)) => Some(vmid_identity(&c)),
                    _ => None,
                }
            },
        )
    }

    /// SPEC K19: `asid`, used by the CD at `pa`, names one stage-1 configuration. Under
    /// NS-EL2 there is no ASID (§3.17, §5.4 ASID): every CD of that world shares one tag,
    /// kept apart from the ASIDs (it is reported as ASID 0 in an alias refusal).
    fn asid_tag(
        &mut self,
        (sid, ssid): (u32, u32),
        asid: u16,
        pa: u64,
        config: &CdConfig,
        world: World,
    ) -> Result<(), Refusal> {
        let alias = |first_cd| Refusal::AsidAlias {
            sid,
            ssid,
            asid,
            first_cd,
        };
        let (index, identity_at): (usize, IdentityAt<CdConfig>) = if world == World::El2 {
            (el2_tag_index(self.features), cd_identity_el2)
        } else {
            (usize::from(asid), cd_identity)
        };
        self.one_configuration_per_tag(
            index,
            asid,
            pa,
            asid_identity(config),
            alias,
            |scan| &mut scan.asid_cache,
            identity_at,
        )
    }

    /// SPEC K19 for either kind of tag: the first entry seen with tag `tag` (slot `index` of
    /// the tag map) is recorded; a later one must have the same `id` as that first entry,
    /// which is read back (once per cache slot) and decoded by `identity_at`. An entry that no
    /// longer decodes changed under the scan: not one configuration either.
    #[allow(clippy::too_many_arguments)]
    fn one_configuration_per_tag<I: Copy + PartialEq>(
        &mut self,
        index: usize,
        tag: u16,
        pa: u64,
        id: I,
        alias: impl Fn(u64) -> Refusal,
        cache: fn(&mut Self) -> &mut TagCache<I>,
        identity_at: fn(&[u64; 8]) -> Option<I>,
    ) -> Result<(), Refusal> {
        let first = self.tag(index);
        if first == 0 {
            self.set_tag(index, pa | 1);
            return Ok(());
        }
        let first_pa = first & !1;
        let slot = usize::from(tag) % TAG_CACHE;
        let known = match cache(self).get(slot).copied().flatten() {
            Some((t, known)) if t == tag => known,
            _ => {
                let w = self.reread(first_pa)?;
                let known = identity_at(&w).ok_or_else(|| alias(first_pa))?;
                if let Some(e) = cache(self).get_mut(slot) {
                    *e = Some((tag, known));
                }
                known
            }
        };
        if known == id {
            Ok(())
        } else {
            Err(alias(first_pa))
        }
    }

    /// Records a structure (SPEC K18).
    fn push(&mut self, e: ScratchSlot) -> Result<(), Refusal> {
        if self.inline {
            return Ok(());
        }
        if self.len >= self.list.len() {
            if self.frozen {
                return Err(Self::TOO_MANY);
            }
            self.compact();
            // Merging must free an eighth of the list, or the next pushes would sort it
            // again and again: stop here instead (the cost stays O(n log n) per push of
            // an eighth).
            if self.list.len() - self.len < self.list.len() / 8 {
                return Err(Self::TOO_MANY);
            }
        }
        let slot = self
            .list
            .get_mut(self.len)
            .ok_or(Refusal::TooManyStructures {
                max: MAX_CD_STRUCTURES as u32,
            })?;
        *slot = e;
        self.len += 1;
        Ok(())
    }

    const TOO_MANY: Refusal = Refusal::TooManyStructures {
        max: MAX_CD_STRUCTURES as u32,
    };

    /// Records a stage-1 STE's CD table, unless it is the table recorded last or one already
    /// merged into the sorted part of the list.
    fn push_cd_table(&mut self, e: ScratchSlot) -> Result<(), Refusal> {
        if self.last_cd_table.is_some_and(|l| same_cd_table(&l, &e)) {
            return Ok(());
        }
        self.last_cd_table = Some(e);
        let sorted = self.list.get(..self.sorted).unwrap_or(&[]);
        let pos = sorted.partition_point(|x| (x[0], x[1] >> 32) < (e[0], e[1] >> 32));
        if sorted.get(pos).is_some_and(|x| same_cd_table(x, &e)) {
            return Ok(());
        }
        self.push(e)
    }

    /// Sorts the list and merges the records of one CD table into one (its lowest owner).
    fn compact(&mut self) {
        let Some(v) = self.list.get_mut(..self.len) else {
            return;
        };
        v.sort_unstable();
        let mut kept = 0usize;
        for read in 0..v.len() {
            let Some(&e) = v.get(read) else { break };
            if kept > 0 && v.get(kept - 1).is_some_and(|p| same_cd_table(p, &e)) {
                continue;
            }
            if let Some(slot) = v.get_mut(kept) {
                *slot = e;
            }
            kept += 1;
        }
        self.len = kept;
        self.sorted = kept;
        self.last_cd_table = None;
    }

    /// SPEC K18: sorts the structures and refuses the first pair that shares a byte.
    fn check_disjoint(&mut self) -> Result<(), Refusal> {
        self.compact();
        self.stats.structures = self.len as u64;
        let mut reach: Option<(ScratchSlot, u64)> = None;
        for e in self.list.iter().take(self.len) {
            let last = last_byte(e);
            match reach {
                Some((r, r_last)) if e[0] <= r_last => {
                    return Err(Refusal::StructuresOverlap {
                        first: structure(&r),
                        second: structure(e),
                    });
                }
                Some((_, r_last)) if last <= r_last => {}
                _ => reach = Some((*e, last)),
            }
        }
        Ok(())
    }

    /// SPEC K18: refuses `e` if it overlaps a structure of the sorted, disjoint part of the
    /// list — before a leaf's contents are interpreted, so the refusal names the overlap,
    /// not what the other structure's words look like as CDs. O(log n).
    fn check_against_sorted(&self, e: &ScratchSlot) -> Result<(), Refusal> {
        if self.inline {
            return Ok(());
        }
        let sorted = self.list.get(..self.sorted).unwrap_or(&[]);
        let last = last_byte(e);
        let pos = sorted.partition_point(|x| x[0] < e[0]);
        let before = pos.checked_sub(1).and_then(|i| sorted.get(i));
        let hit = before
            .filter(|p| last_byte(p) >= e[0])
            .or_else(|| sorted.get(pos).filter(|n| n[0] <= last));
        match hit {
            Some(other) => Err(Refusal::StructuresOverlap {
                first: structure(other),
                second: structure(e),
            }),
            None => Ok(()),
        }
    }

    /// SPEC K18: the starting-level table of every live regime stays clear of every
    /// structure (the list is sorted and disjoint). One ASID or VMID names one
    /// configuration (K19, checked on the way), so the first user of each tag holds every
    /// distinct root of its tag: the tag map is swept once and each first user read again.
    /// O(tags) plus one read per tag in use.
    fn check_roots(&mut self) -> Result<(), Refusal> {
        let asids = 1usize << self.features.asid_bits();
        let el2 = el2_tag_index(self.features);
        // Only the blocks the scan wrote: the work follows the tags in use.
        let touched = self.touched;
        for (wi, &word) in touched.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = wi * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                for index in b * TAG_BLOCK..(b + 1) * TAG_BLOCK {
                    if index > el2 {
                        break;
                    }
                    self.check_root_of(index, asids, el2)?;
                }
            }
        }
        Ok(())
    }

    /// [`Self::check_roots`] for the first user of tag map entry `index`, if any.
    fn check_root_of(&mut self, index: usize, asids: usize, el2: usize) -> Result<(), Refusal> {
        let first = self.tag(index);
        if first == 0 {
            return Ok(());
        }
        let entry = first & !1;
        let mut w = [0u64; 8];
        self.read(entry, &mut w)?;
        if index < asids || index == el2 {
            let world = if index == el2 { World::El2 } else { World::El1 };
            let Ok(Some(c)) = Cd::from_words(legal::as_seen(w, world)).decode() else {
                return Ok(());
            };
            let halves = [
                (RootKind::Ttb0, &c.tt0, c.tg0),
                (RootKind::Ttb1, &c.tt1, legal::tg1(&c)),
            ];
            for (kind, tt, tg) in halves {
                if let Some((base, bytes)) = legal::s1_root(tt, tg, c.aa64) {
                    self.check_root(Root {
                        kind,
                        base,
                        bytes,
                        entry,
                    })?;
                }
            }
        } else {
            let Ok(Some(c)) = Ste::from_words(ste_as_used(w, self.features)).decode() else {
                return Ok(());
            };
            let root = c
                .translation
                .stage2()
                .and_then(|s2| legal::s2_root(s2, &w, self.features));
            if let Some((base, bytes)) = root {
                self.check_root(Root {
                    kind: RootKind::S2ttb,
                    base,
                    bytes,
                    entry,
                })?;
            }
        }
        Ok(())
    }

    /// SPEC K18: refuses `root` if it shares a byte with a structure of the sorted list.
    fn check_root(&self, root: Root) -> Result<(), Refusal> {
        let probe = extent(StructureKind::CdLeaf, root.base, root.bytes, 0, 0);
        match self.check_against_sorted(&probe) {
            Err(Refusal::StructuresOverlap { first, .. }) => Err(Refusal::RootOverlaps {
                root,
                structure: first,
            }),
            _ => Ok(()),
        }
    }

    /// SPEC K20: takes `entries` CDs or descriptors from the budget before they are read.
    fn charge(&mut self, sid: u32, entries: u64) -> Result<(), Refusal> {
        if entries > self.budget {
            return Err(Refusal::ScanBudgetExceeded {
                sid,
                budget: CD_SCAN_BUDGET,
            });
        }
        self.budget -= entries;
        Ok(())
    }
}

/// Reads `count` entries of `W` words from `base`, [`READ_CHUNK_WORDS`] words at a time, and
/// hands each with its index and address to `f`: the CD tables of pass 2 (the stream table is
/// [`visit_stes`]'s).
fn walk<'a, const W: usize, F>(
    s: &mut Scan<'a>,
    base: u64,
    count: u64,
    mut f: F,
) -> Result<(), Refusal>
where
    F: FnMut(&mut Scan<'a>, u64, u64, [u64; W]) -> Result<(), Refusal>,
{
    let per_chunk = (READ_CHUNK_WORDS / W) as u64;
    let entry_bytes = W as u64 * 8;
    let mut buf = [0u64; READ_CHUNK_WORDS];
    let mut index = 0u64;
    while index < count {
        let n = per_chunk.min(count - index);
        let len = n * entry_bytes;
        let pa = index
            .checked_mul(entry_bytes)
            .and_then(|offset| base.checked_add(offset))
            .ok_or(Refusal::MemoryUnreadable { pa: base, len })?;
        let unreadable = Refusal::MemoryUnreadable { pa, len };
        let chunk = buf.get_mut(..n as usize * W).ok_or(unreadable)?;
        s.read(pa, chunk)?;
        for (i, entry) in chunk.chunks_exact(W).enumerate() {
            let words = <[u64; W]>::try_from(entry).map_err(|_| unreadable)?;
            // Inside the range read, so no overflow.
            let at = pa + i as u64 * entry_bytes;
            f(s, index + i as u64, at, words)?;
        }
        index += n;
    }
    Ok(())
}

/// SPEC K3, K14, K18–K21: walks the adopted stream table `geometry` through `mem`, reporting
/// every ASID, VMID and deferred StreamID to `sink` (see the module documentation for the
/// rules, the order and the memory). `scratch` must hold [`scratch_slots`] slots (any
/// content; more are left unused), else [`Refusal::ScratchTooSmall`]. Any broken rule,
/// unreadable range or sink error stops the walk and is returned; the caller then releases
/// every reservation the sink made (SPEC K4).
pub fn scan(
    geometry: &Geometry,
    features: &Features,
    mem: &dyn OldMemory,
    scratch: &mut [ScratchSlot],
    sink: &mut dyn FnMut(Found) -> Result<(), Refusal>,
) -> Result<ScanStats, Refusal> {
    let needed = scratch_slots(geometry, features);
    if scratch.len() < needed {
        return Err(Refusal::ScratchTooSmall {
            needed: needed as u64,
            given: scratch.len() as u64,
        });
    }
    // The tag map is not zeroed: a block of it is cleared when first written, and `touched`
    // says which (the work follows the tags in use, not the 2^17 entries).
    let (tags, rest) = scratch.split_at_mut(tag_slots(features));
    let list = rest.get_mut(..extent_slots(geometry)).unwrap_or(&mut []);
    let mut s = Scan {
        features,
        oas_bits: geometry.oas_bits(),
        e2h: geometry.e2h(),
        mem,
        sink,
        stats: ScanStats::default(),
        tags,
        list,
        len: 0,
        sorted: 0,
        frozen: false,
        inline: false,
        last_cd_table: None,
        budget: CD_SCAN_BUDGET,
        asid_cache: [None; TAG_CACHE],
        vmid_cache: [None; TAG_CACHE],
        s2_memo: None,
        touched: [0; TOUCHED_WORDS],
    };
    s.push(extent(
        StructureKind::StreamTable,
        geometry.base(),
        geometry.table_bytes().max(1),
        0,
        0,
    ))?;
    // Pass 1: the one walk of the stream table (crate::walk), stopping at its first gap:
    // an unreadable range or a level-1 descriptor K3 refuses is a refusal (SPEC K3, K4).
    let mem = s.mem;
    let walked = visit_stes(geometry, mem, OnGap::Stop, &mut PassOne(&mut s))?;
    s.stats.l1_descriptors = walked.l1_descriptors;
    s.stats.l1_valid = walked.l1_valid;
    s.stats.stes_scanned = walked.stes_read;
    s.stats.reads += walked.reads;
    s.stats.bytes_read += walked.bytes_read;
    // Pass 2: each distinct CD table once, with the structures known so far disjoint.
    s.check_disjoint()?;
    s.frozen = true;
    for i in 0..s.sorted {
        let Some(&e) = s.list.get(i) else { break };
        if structure(&e).kind == StructureKind::CdTable {
            cd_table(&mut s, &e)?;
        }
    }
    s.frozen = false;
    s.check_disjoint()?;
    s.check_roots()?;
    Ok(s.stats)
}

/// SPEC K21: re-validation of inherited STEs when the crash kernel maps their table after
/// adoption (the crashed kernel's DMA may have rewritten memory since the scan). One per
/// mapped table: its budget ([`CD_SCAN_BUDGET`]) bounds the CDs read for all of its STEs, and
/// a CD table shared by consecutive STEs is read once.
#[derive(Debug)]
pub struct Revalidation {
    budget: u64,
    last_cd_table: Option<ScratchSlot>,
}

impl Default for Revalidation {
    fn default() -> Self {
        Self::new()
    }
}

impl Revalidation {
    /// A fresh budget, no CD table read yet.
    pub const fn new() -> Self {
        Self {
            budget: CD_SCAN_BUDGET,
            last_cd_table: None,
        }
    }

    /// Re-validates the STE `words` of `sid`: the same decode and rules as [`scan`], its CD
    /// table walked through `mem`, each ASID and VMID reported to `sink` (which refuses one
    /// not reserved at scan time). Overlaps and aliases are not re-checked: the structures
    /// were placed at adoption. Any refusal rejects this StreamID's device only.
    pub fn ste(
        &mut self,
        sid: u32,
        words: [u64; 8],
        geometry: &Geometry,
        features: &Features,
        mem: &dyn OldMemory,
        sink: &mut dyn FnMut(Found) -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        let mut s = Scan {
            features,
            oas_bits: geometry.oas_bits(),
            e2h: geometry.e2h(),
            mem,
            sink,
            stats: ScanStats::default(),
            tags: &mut [],
            list: &mut [],
            len: 0,
            sorted: 0,
            frozen: false,
            inline: true,
            last_cd_table: self.last_cd_table,
            budget: self.budget,
            asid_cache: [None; TAG_CACHE],
            vmid_cache: [None; TAG_CACHE],
            s2_memo: None,
            touched: [0; TOUCHED_WORDS],
        };
        let result = ste(&mut s, sid, 0, words);
        self.budget = s.budget;
        // Only a table read to the end without a refusal may be skipped for the next STE.
        self.last_cd_table = if result.is_ok() {
            s.last_cd_table
        } else {
            None
        };
        result
    }
}

/// Pass 1 of [`scan`] as the walk's visitor: each valid level-1 descriptor's level-2 table
/// is a structure (SPEC K18), recorded before its STEs are read; each valid STE is decoded,
/// checked and reported ([`ste`]).
struct PassOne<'s, 'a>(&'s mut Scan<'a>);

impl SteVisitor for PassOne<'_, '_> {
    type Error = Refusal;

    fn level2(&mut self, index: u32, l2: u64) -> Result<(), Refusal> {
        self.0.push(extent(
            StructureKind::L2Table,
            l2,
            STES_PER_L2 * STE_BYTES,
            0,
            index,
        ))
    }

    fn ste(&mut self, e: &SteEntry) -> Result<(), Refusal> {
        ste(self.0, e.sid, e.pa, e.words)
    }
}

/// Decodes an STE as SPEC K21 says: reserved encodings and ILLEGAL values where the
/// configuration uses a field are refusals; what it ignores is never looked at.
pub(crate) fn decode_ste(
    sid: u32,
    words: [u64; 8],
    features: &Features,
    memo: &mut S2Memo,
) -> Result<Option<SteConfig>, Refusal> {
    use ste::fields::{S1FMT, STRW};
    let words = ste_as_used(words, features);
    let config = match Ste::from_words(words).decode() {
        Ok(None) => return Ok(None),
        Ok(Some(config)) => config,
        Err(DecodeError::Reserved { field, value, .. }) if field == S1FMT.name => {
            return Err(Refusal::CdFormatUnsupported {
                sid,
                fmt: value as u8,
            })
        }
        Err(DecodeError::Reserved { field, value, .. }) if field == STRW.name => {
            return Err(Refusal::SteStrwIllegal {
                sid,
                strw: value as u8,
            })
        }
        Err(error) => return Err(Refusal::SteReserved { sid, error }),
    };
    ste_legal(sid, &config, &words, features, memo)?;
    Ok(Some(config))
}

/// §5.2 S1CDMax: IGNORED without substreams (SSIDSIZE = 0), so S1Fmt and S1DSS, which the
/// decoder reads only when S1CDMax ≠ 0, are IGNORED too: the words with S1CDMax cleared.
fn ste_as_used(mut words: [u64; 8], features: &Features) -> [u64; 8] {
    if features.ssid_bits == 0 {
        ste::fields::S1_CD_MAX.set(&mut words, 0);
    }
    words
}

/// The last stage-2 configuration [`legal::stage2`] accepted, with the raw `S2SL0_2`/`S2DS`
/// bits it also reads: most tables repeat a few stage-2 configurations, which are then not
/// checked again (the rules depend on nothing else).
pub(crate) type S2Memo = Option<(Stage2Ste, u64)>;

/// The ILLEGAL cases of §5.2 that depend on the ID registers, for the fields `config` uses
/// (the stage-2 walk geometry, formats and addresses in [`legal::stage2`]).
fn ste_legal(
    sid: u32,
    config: &SteConfig,
    words: &[u64; 8],
    f: &Features,
    memo: &mut S2Memo,
) -> Result<(), Refusal> {
    let illegal = |rule: Illegal, value: u64| Err(Refusal::SteIllegal { sid, rule, value });
    let t = &config.translation;
    let kind = u64::from(t.kind().encode() as u8);
    if (t.stage1().is_some() && !f.stage1) || (t.stage2().is_some() && !f.stage2) {
        return illegal(Illegal::SteStageUnsupported, kind);
    }
    if let Some(s1) = t.stage1() {
        if s1.stall_disable && f.stall_model != StallModel::Stall {
            return illegal(Illegal::SteS1stalld, 1);
        }
    }
    // §5.2 STRW: RES0 without IDR0.Hyp; the decoder reads it only for stage 1 alone.
    if matches!(t, Translation::Stage1(_)) && config.strw == Strw::El2 && !f.hyp {
        return illegal(Illegal::SteStrwWithoutHyp, Strw::El2.encode());
    }
    if let Some(s2) = t.stage2() {
        if (s2.stall && f.stall_model == StallModel::NoStall)
            || (!s2.stall && f.stall_model == StallModel::Forced)
        {
            return illegal(Illegal::SteS2s, u64::from(s2.stall));
        }
        use ste::fields::{S2DS, S2SL0_2};
        let raw = S2DS.get(words) << 1 | S2SL0_2.get(words);
        if *memo != Some((*s2, raw)) {
            legal::stage2(s2, words, f).or_else(|(rule, value)| illegal(rule, value))?;
            *memo = Some((*s2, raw));
        }
    }
    // EATS is IGNORED without ATS and for bypass (decoded as 0b00 there).
    if f.ats {
        let s2_stall = t.stage2().is_some_and(|s2| s2.stall);
        let bad = match config.eats {
            Eats::SplitStage => !matches!(t, Translation::Nested(..)) || s2_stall || f.ns1ats,
            Eats::Full | Eats::FullDpt => s2_stall,
            Eats::Abort => false,
        };
        if bad {
            return illegal(Illegal::SteEats, config.eats.encode());
        }
    }
    if t.kind() != ste::SteKind::Abort {
        legal::attribute_overrides(config.attrs.priv_cfg, config.attrs.inst_cfg, f)
            .or_else(|(rule, value)| illegal(rule, value))?;
    }
    Ok(())
}

/// One STE read at `pa` (pass 1, or [`Revalidation::ste`]). The walk hands over valid STEs
/// only and counts what it read; a re-validated one may be invalid.
fn ste(s: &mut Scan<'_>, sid: u32, pa: u64, words: [u64; 8]) -> Result<(), Refusal> {
    // Most STEs of a large table are invalid: nothing else of them is read (§5.2 V).
    if !ste::fields::V.flag(&words) {
        return Ok(());
    }
    let Some(config) = decode_ste(sid, words, s.features, &mut s.s2_memo)? else {
        return Ok(());
    };
    s.stats.stes_valid += 1;
    match &config.translation {
        Translation::Abort => return Ok(()),
        Translation::Bypass => {}
        Translation::Stage1(s1) => {
            // §5.2 S2VMID: with stage 2 implemented, a stage-1 stream of StreamWorld EL1
            // (the decoder zeroes it otherwise) tags its TLB entries with S2VMID (SPEC K19).
            // Zero is what this kernel's own stage-1 domains use.
            if s.features.stage2 && config.s2vmid != 0 {
                vmid(s, sid, pa, &config)?;
            }
            let layout = cd_geometry(s, sid, s1, AddressSpace::Physical)?;
            let mut table = extent(
                StructureKind::CdTable,
                s1.context_ptr,
                layout.bytes(),
                layout.shape(),
                sid,
            );
            // The StreamWorld (NS-EL1 or one of the EL2 worlds, with CR2.E2H) and S1STALLD
            // decide which CD values are ILLEGAL and how CDs are tagged (§5.4, §3.17).
            table[1] |= context_bits(config.strw == Strw::El2, s1.stall_disable);
            if s.inline {
                // Re-validation: the table the previous STE used, read moments ago, is not
                // read again.
                if !s.last_cd_table.is_some_and(|l| same_cd_table(&l, &table)) {
                    s.last_cd_table = None;
                    cd_table(s, &table)?;
                    s.last_cd_table = Some(table);
                }
            } else {
                s.push_cd_table(table)?;
            }
        }
        Translation::Stage2(_) => vmid(s, sid, pa, &config)?,
        Translation::Nested(s1, _) => {
            vmid(s, sid, pa, &config)?;
            cd_geometry(s, sid, s1, AddressSpace::Intermediate)?;
        }
    }
    s.stats.deferred += 1;
    s.emit(Found::Deferred { sid })
}

fn vmid(s: &mut Scan<'_>, sid: u32, pa: u64, config: &SteConfig) -> Result<(), Refusal> {
    let vmid = config.s2vmid;
    if vmid == 0 {
        return Err(Refusal::VmidZero { sid });
    }
    let bits = s.features.vmid_bits();
    if u32::from(vmid) >> bits != 0 {
        return Err(Refusal::VmidOutOfRange { sid, vmid, bits });
    }
    s.vmid_tag(sid, vmid, pa, config)?;
    s.stats.vmids += 1;
    s.emit(Found::Vmid { sid, vmid })
}

/// Whether `S1ContextPtr` is a physical address (stage 1 only) or an IPA (nested, §5.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AddressSpace {
    Physical,
    Intermediate,
}

#[derive(Clone, Copy)]
enum CdLayout {
    /// `cds` CDs (one when `S1CDMax` = 0).
    Linear { cds: u64, fmt: S1Fmt, cd_max: u8 },
    /// `l1_entries` level-1 descriptors, each to a leaf of which `leaf_cds` CDs are used;
    /// SubstreamID = index × `leaf_capacity` + index in the leaf.
    TwoLevel {
        l1_entries: u64,
        leaf_cds: u64,
        leaf_capacity: u64,
        leaf_align: u64,
        fmt: S1Fmt,
        cd_max: u8,
    },
}

impl CdLayout {
    /// Bytes of the CD table or level-1 CD table.
    fn bytes(&self) -> u64 {
        match *self {
            CdLayout::Linear { cds, .. } => cds * CD_BYTES,
            CdLayout::TwoLevel { l1_entries, .. } => l1_entries * L1CD_BYTES,
        }
    }

    /// The table's identity beyond its address: `S1Fmt` and the effective `S1CDMax`.
    fn shape(&self) -> u8 {
        let (fmt, cd_max) = match *self {
            CdLayout::Linear { fmt, cd_max, .. } | CdLayout::TwoLevel { fmt, cd_max, .. } => {
                (fmt, cd_max)
            }
        };
        ((fmt.encode() as u8) << 5) | (cd_max & 31)
    }
}

/// The layout of a CD table from its shape (`S1Fmt`, effective `S1CDMax` ≤ 31, both checked).
fn layout(fmt: S1Fmt, cd_max: u8) -> CdLayout {
    // S1CDMax ≤ 31 (a 5-bit field), so none of these shifts overflows.
    let cd_max = cd_max & 31;
    let m = u32::from(cd_max);
    match fmt {
        _ if m == 0 => CdLayout::Linear {
            cds: 1,
            fmt: S1Fmt::Linear,
            cd_max: 0,
        },
        S1Fmt::Linear => CdLayout::Linear {
            cds: 1u64 << m,
            fmt,
            cd_max,
        },
        S1Fmt::TwoLevel4K | S1Fmt::TwoLevel64K => {
            let (leaf_log2, leaf_align) = if fmt == S1Fmt::TwoLevel4K {
                (6, 4 << 10)
            } else {
                (10, 64 << 10)
            };
            CdLayout::TwoLevel {
                l1_entries: 1u64 << m.saturating_sub(leaf_log2),
                leaf_cds: 1u64 << m.min(leaf_log2),
                leaf_capacity: 1u64 << leaf_log2,
                leaf_align,
                fmt,
                cd_max,
            }
        }
    }
}

/// Validates the geometry of a stage-1 STE's CD table (K14, §5.2).
fn cd_geometry(
    s: &Scan<'_>,
    sid: u32,
    s1: &Stage1Ste,
    space: AddressSpace,
) -> Result<CdLayout, Refusal> {
    let ptr = s1.context_ptr;
    let physical = space == AddressSpace::Physical;
    if physical && ptr == 0 {
        return Err(Refusal::CdTableNull { sid });
    }
    let ssid_bits = s.features.ssid_bits;
    // §5.2 S1CDMax: IGNORED when the SMMU has no substreams (SSIDSIZE = 0).
    let cd_max = if ssid_bits == 0 { 0 } else { s1.cd_max };
    if cd_max > ssid_bits {
        return Err(Refusal::CdMaxExceedsSsidSize {
            sid,
            cd_max,
            ssid_bits,
        });
    }
    let layout = layout(s1.fmt, cd_max);
    let align = match layout {
        CdLayout::Linear { .. } => layout.bytes(),
        CdLayout::TwoLevel { .. } => {
            if !s.features.cd2l {
                return Err(Refusal::CdFormatUnsupported {
                    sid,
                    fmt: s1.fmt.encode() as u8,
                });
            }
            layout.bytes().max(64)
        }
    };
    if !ptr.is_multiple_of(align) {
        return Err(Refusal::CdTableMisaligned { sid, ptr, align });
    }
    if physical && !range_below_oas(ptr, layout.bytes(), s.oas_bits) {
        return Err(Refusal::CdTableBeyondOas {
            sid,
            ptr,
            bytes: layout.bytes(),
            oas_bits: s.oas_bits,
        });
    }
    Ok(layout)
}

/// Walks one distinct CD table (pass 2) on behalf of its lowest StreamID.
fn cd_table(s: &mut Scan<'_>, table: &ScratchSlot) -> Result<(), Refusal> {
    let st = structure(table);
    let sid = st.owner;
    let ctx = context(table, s.e2h);
    let (fmt, cd_max) = shape(table);
    let fmt = S1Fmt::decode(u64::from(fmt)).unwrap_or(S1Fmt::Linear);
    s.stats.cd_tables += 1;
    match layout(fmt, cd_max) {
        CdLayout::Linear { cds, .. } => {
            s.charge(sid, cds)?;
            scan_cds(s, (sid, ctx), st.base, 0, cds)
        }
        CdLayout::TwoLevel {
            l1_entries,
            leaf_cds,
            leaf_capacity,
            leaf_align,
            ..
        } => {
            s.charge(sid, l1_entries)?;
            walk::<1, _>(s, st.base, l1_entries, |s, l1_index, _, [desc]| {
                let Some(l1) = L1Cd::from_words([desc]).decode() else {
                    return Ok(());
                };
                // At most 2^25 descriptors (S1CDMax ≤ 31), so the index fits in u32.
                let l1_index = l1_index as u32;
                let leaf = l1.l2_ptr;
                if leaf == 0 {
                    return Err(Refusal::CdLeafNull { sid, l1_index });
                }
                if leaf % leaf_align != 0 {
                    return Err(Refusal::CdLeafMisaligned {
                        sid,
                        l1_index,
                        ptr: leaf,
                        align: leaf_align,
                    });
                }
                let bytes = leaf_cds * CD_BYTES;
                if !range_below_oas(leaf, bytes, s.oas_bits) {
                    return Err(Refusal::CdLeafBeyondOas {
                        sid,
                        l1_index,
                        ptr: leaf,
                        oas_bits: s.oas_bits,
                    });
                }
                let e = extent(StructureKind::CdLeaf, leaf, bytes, 0, sid);
                s.check_against_sorted(&e)?;
                s.push(e)?;
                s.charge(sid, leaf_cds)?;
                scan_cds(
                    s,
                    (sid, ctx),
                    leaf,
                    u64::from(l1_index) * leaf_capacity,
                    leaf_cds,
                )
            })
        }
    }
}

/// Decodes a CD as SPEC K21 says (see [`decode_ste`]) for the StreamWorld and `S1STALLD`
/// of the STE that reaches it (`ctx`), and checks its ASID (K14) where the world has one.
/// Under NS-EL2 the words are read as [`legal::as_seen`] makes them (ASID 0, no `TTB1`).
pub(crate) fn decode_cd(
    (sid, ssid): (u32, u32),
    words: [u64; 8],
    ctx: CdContext,
    f: &Features,
) -> Result<Option<CdConfig>, Refusal> {
    let words = legal::as_seen(words, ctx.world);
    let config = match Cd::from_words(words).decode() {
        Ok(None) => return Ok(None),
        Ok(Some(config)) => config,
        Err(error) => return Err(Refusal::CdReserved { sid, ssid, error }),
    };
    legal::cd(&config, &words, ctx, f).map_err(|(rule, value)| Refusal::CdIllegal {
        sid,
        ssid,
        rule,
        value,
    })?;
    if ctx.world == World::El2 {
        // §5.4 ASID: IGNORED under NS-EL2 (zeroed by `as_seen`).
        return Ok(Some(config));
    }
    let asid = config.asid;
    if asid == 0 {
        return Err(Refusal::AsidZero { sid, ssid });
    }
    let bits = f.asid_bits();
    if u32::from(asid) >> bits != 0 {
        return Err(Refusal::AsidOutOfRange {
            sid,
            ssid,
            asid,
            bits,
        });
    }
    Ok(Some(config))
}

/// Visits `count` CDs from `base`; the first has SubstreamID `first_ssid`.
fn scan_cds(
    s: &mut Scan<'_>,
    (sid, ctx): (u32, CdContext),
    base: u64,
    first_ssid: u64,
    count: u64,
) -> Result<(), Refusal> {
    walk::<8, _>(s, base, count, |s, i, pa, words| {
        s.stats.cds_scanned += 1;
        // SubstreamIDs stay below 2^31 (S1CDMax ≤ 31), so they fit in u32.
        let ssid = (first_ssid + i) as u32;
        let Some(config) = decode_cd((sid, ssid), words, ctx, s.features)? else {
            return Ok(());
        };
        s.stats.cds_valid += 1;
        let asid = config.asid;
        s.asid_tag((sid, ssid), asid, pa, &config, ctx.world)?;
        if ctx.world == World::El2 {
            // No ASID to reserve: the EL2 regime's entries go with TLBI_EL2_ALL (K7).
            return Ok(());
        }
        s.stats.asids += 1;
        s.emit(Found::Asid { sid, ssid, asid })
    })
}

// Keeps the STE size the walk assumes tied to the architected one.
const _: () = assert!(STE_BYTES == Ste::SIZE as u64 && CD_BYTES == Cd::SIZE as u64);

//! The walk over the crashed kernel's tables (SPEC K3 at adoption, K14, K15).
//!
//! [`scan`] visits every level-1 descriptor of a 2-level table (each checked with
//! [`validate_l1_at`]; one bad descriptor fails the scan) and every STE of each valid level-2
//! table, or of the linear table. For each valid STE:
//! - a reserved encoding is a refusal ([`Refusal::SteReserved`]); `S1Fmt` and `S1DSS` are
//!   IGNORED when `S1CDMax` = 0 (§5.2) and are not held against the entry;
//! - stage 2 and nested: `S2VMID` must be non-zero and fit `IDR0.VMID16`, and is reported as
//!   [`Found::Vmid`];
//! - stage 1: the CD table is validated (pointer non-zero, `S1CDMax` ≤ `IDR1.SSIDSIZE`,
//!   `S1Fmt` supported, aligned as §5.2 requires, below 2^OAS), every CD is read (linear, or
//!   level-1 CD descriptors then leaf tables whose pointers are validated the same way) and the
//!   ASID of each valid CD, non-zero and fitting `IDR0.ASID16`, is reported as [`Found::Asid`];
//! - nested: `S1ContextPtr` is an IPA (§5.2), so the CD table is not reachable and is not read;
//!   its address-independent geometry (`S1CDMax`, `S1Fmt`, alignment) is still checked. The
//!   guest's ASIDs are tagged with the VMID reserved for the STE, so they cannot alias this
//!   kernel's domains (Linux does the same);
//! - every STE with `V` = 1 and `Config` ≠ abort is reported as [`Found::Deferred`] (SPEC K11).
//!
//! For one STE the reports come in this order: `Vmid`, then `Asid` in SubstreamID order, then
//! `Deferred`; STEs come in StreamID order. The same ASID or VMID is reported once per use,
//! so the sink must accept one it has already reserved. The sink's error stops the scan and is
//! returned as is (use [`Refusal::AsidConflict`] / [`Refusal::VmidConflict`]).
//!
//! Bounds (SPEC K15): reads stay inside the ranges the registers and descriptors describe,
//! at most [`READ_CHUNK_WORDS`] words at a time into a buffer on the stack (four of them at
//! the deepest point, 2 KiB); nothing recurses or allocates. Time is one read per
//! [`READ_CHUNK_WORDS`] words of the level-1 table, of each valid level-2 table and of each CD
//! table and leaf CD table reached from a valid STE or level-1 CD descriptor.

use smmu::arch::cd::{Cd, L1Cd};
use smmu::arch::idr::Features;
use smmu::arch::l1std::STRTAB_SPLIT;
use smmu::arch::ste::{self, S1Fmt, Stage1Ste, Ste, Translation};
use smmu::arch::DecodeError;

use crate::reason::Refusal;
use crate::validate::{range_below_oas, validate_l1_at, Format, Geometry, STES_PER_L2, STE_BYTES};

/// The largest read [`scan`] makes, in 64-bit words (512 bytes: 8 STEs or CDs, or 64
/// descriptors).
pub const READ_CHUNK_WORDS: usize = 64;

/// Bytes per CD.
const CD_BYTES: u64 = 64;
/// Bytes per level-1 CD descriptor.
const L1CD_BYTES: u64 = 8;

/// A read of the crashed kernel's memory failed (unmapped, not RAM, refused by the platform).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemFault;

impl core::fmt::Display for MemFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the crashed kernel's memory could not be read")
    }
}

impl core::error::Error for MemFault {}

/// Read access to the crashed kernel's physical memory: the old tables.
///
/// Implemented by the driver over the HAL's foreign mappings (with the attribute SPEC K17 has
/// the platform choose), and by tests over an in-memory image.
pub trait OldMemory {
    /// Fills `out` with the `out.len()` little-endian 64-bit words at physical address `pa`
    /// (8-byte aligned), lowest-addressed first, converted to native values. [`scan`] never
    /// asks for more than [`READ_CHUNK_WORDS`] words at once, and only for ranges the
    /// registers and descriptors describe.
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault>;
}

impl<M: OldMemory + ?Sized> OldMemory for &M {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        (**self).read_words(pa, out)
    }
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
    /// CD tables validated and walked (one per stage-1 STE).
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
    /// Calls to [`OldMemory::read_words`].
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

struct Scan<'a> {
    features: &'a Features,
    oas_bits: u32,
    mem: &'a dyn OldMemory,
    sink: &'a mut dyn FnMut(Found) -> Result<(), Refusal>,
    stats: ScanStats,
}

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
}

/// Reads `count` entries of `W` words from `base`, [`READ_CHUNK_WORDS`] words at a time, and
/// hands each with its index to `f`.
fn walk<'a, const W: usize, F>(
    s: &mut Scan<'a>,
    base: u64,
    count: u64,
    mut f: F,
) -> Result<(), Refusal>
where
    F: FnMut(&mut Scan<'a>, u64, [u64; W]) -> Result<(), Refusal>,
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
            f(s, index + i as u64, words)?;
        }
        index += n;
    }
    Ok(())
}

/// SPEC K3, K14: walks the adopted stream table `geometry` through `mem`, reporting every
/// ASID, VMID and deferred StreamID to `sink` (see the module documentation for the rules and
/// the order). Any broken rule, unreadable range or sink error stops the walk and is
/// returned; the caller then releases every reservation the sink made (SPEC K4).
pub fn scan(
    geometry: &Geometry,
    features: &Features,
    mem: &dyn OldMemory,
    sink: &mut dyn FnMut(Found) -> Result<(), Refusal>,
) -> Result<ScanStats, Refusal> {
    let mut s = Scan {
        features,
        oas_bits: geometry.oas_bits(),
        mem,
        sink,
        stats: ScanStats::default(),
    };
    match geometry.format() {
        Format::Linear => scan_stes(&mut s, geometry.base(), 0, geometry.num_sids())?,
        Format::TwoLevel => {
            let entries = u64::from(geometry.l1_entries().unwrap_or(0));
            walk::<1, _>(&mut s, geometry.base(), entries, |s, index, [desc]| {
                s.stats.l1_descriptors += 1;
                // At most 2^17 descriptors (K2), so the index and its StreamIDs fit in u32.
                let index = index as u32;
                match validate_l1_at(index, desc, s.oas_bits)? {
                    None => Ok(()),
                    Some(l2) => {
                        s.stats.l1_valid += 1;
                        scan_stes(s, l2, u64::from(index) << STRTAB_SPLIT, STES_PER_L2)
                    }
                }
            })?;
        }
    }
    Ok(s.stats)
}

/// Visits `count` STEs from `base`; the first has StreamID `first_sid`.
fn scan_stes(s: &mut Scan<'_>, base: u64, first_sid: u64, count: u64) -> Result<(), Refusal> {
    walk::<8, _>(s, base, count, |s, i, words| {
        // StreamIDs stay below 2^31 (K2 bounds the table), so they fit in u32.
        ste(s, (first_sid + i) as u32, words)
    })
}

fn ste(s: &mut Scan<'_>, sid: u32, words: [u64; 8]) -> Result<(), Refusal> {
    use ste::fields::{S1DSS, S1FMT, S1_CD_MAX};
    s.stats.stes_scanned += 1;
    let mut canonical = words;
    if S1_CD_MAX.get(&canonical) == 0 {
        // §5.2: with S1CDMax = 0 the STE points at one CD and S1Fmt and S1DSS are IGNORED.
        S1FMT.set(&mut canonical, 0);
        S1DSS.set(&mut canonical, 0);
    }
    let config = match Ste::from_words(canonical).decode() {
        Ok(None) => return Ok(()),
        Ok(Some(config)) => config,
        Err(DecodeError::Reserved { field, value, .. }) if field == S1FMT.name => {
            return Err(Refusal::CdFormatUnsupported {
                sid,
                fmt: value as u8,
            })
        }
        Err(error) => return Err(Refusal::SteReserved { sid, error }),
    };
    s.stats.stes_valid += 1;
    match &config.translation {
        Translation::Abort => return Ok(()),
        Translation::Bypass => {}
        Translation::Stage1(s1) => cd_table(s, sid, s1)?,
        Translation::Stage2(_) => vmid(s, sid, config.s2vmid)?,
        Translation::Nested(s1, _) => {
            vmid(s, sid, config.s2vmid)?;
            cd_geometry(s, sid, s1, AddressSpace::Intermediate)?;
        }
    }
    s.stats.deferred += 1;
    s.emit(Found::Deferred { sid })
}

fn vmid(s: &mut Scan<'_>, sid: u32, vmid: u16) -> Result<(), Refusal> {
    if vmid == 0 {
        return Err(Refusal::VmidZero { sid });
    }
    let bits = s.features.vmid_bits();
    if u32::from(vmid) >> bits != 0 {
        return Err(Refusal::VmidOutOfRange { sid, vmid, bits });
    }
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
    Linear { cds: u64 },
    /// `l1_entries` level-1 descriptors, each to a leaf of which `leaf_cds` CDs are used;
    /// SubstreamID = index × `leaf_capacity` + index in the leaf.
    TwoLevel {
        l1_entries: u64,
        leaf_cds: u64,
        leaf_capacity: u64,
        leaf_align: u64,
    },
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
    if s1.cd_max > ssid_bits {
        return Err(Refusal::CdMaxExceedsSsidSize {
            sid,
            cd_max: s1.cd_max,
            ssid_bits,
        });
    }
    // S1CDMax ≤ 31 (a 5-bit field), so none of these shifts overflows.
    let cd_max = u32::from(s1.cd_max);
    let (layout, bytes, align) = match s1.fmt {
        _ if cd_max == 0 => (CdLayout::Linear { cds: 1 }, CD_BYTES, CD_BYTES),
        S1Fmt::Linear => {
            let cds = 1u64 << cd_max;
            (CdLayout::Linear { cds }, cds * CD_BYTES, cds * CD_BYTES)
        }
        S1Fmt::TwoLevel4K | S1Fmt::TwoLevel64K => {
            if !s.features.cd2l {
                return Err(Refusal::CdFormatUnsupported {
                    sid,
                    fmt: s1.fmt.encode() as u8,
                });
            }
            let (leaf_log2, leaf_align) = if s1.fmt == S1Fmt::TwoLevel4K {
                (6, 4 << 10)
            } else {
                (10, 64 << 10)
            };
            let l1_entries = 1u64 << cd_max.saturating_sub(leaf_log2);
            let bytes = l1_entries * L1CD_BYTES;
            let layout = CdLayout::TwoLevel {
                l1_entries,
                leaf_cds: 1u64 << cd_max.min(leaf_log2),
                leaf_capacity: 1u64 << leaf_log2,
                leaf_align,
            };
            (layout, bytes, bytes.max(64))
        }
    };
    if !ptr.is_multiple_of(align) {
        return Err(Refusal::CdTableMisaligned { sid, ptr, align });
    }
    if physical && !range_below_oas(ptr, bytes, s.oas_bits) {
        return Err(Refusal::CdTableBeyondOas {
            sid,
            ptr,
            bytes,
            oas_bits: s.oas_bits,
        });
    }
    Ok(layout)
}

/// Validates and walks a stage-1 STE's CD table.
fn cd_table(s: &mut Scan<'_>, sid: u32, s1: &Stage1Ste) -> Result<(), Refusal> {
    let layout = cd_geometry(s, sid, s1, AddressSpace::Physical)?;
    s.stats.cd_tables += 1;
    match layout {
        CdLayout::Linear { cds } => scan_cds(s, sid, s1.context_ptr, 0, cds),
        CdLayout::TwoLevel {
            l1_entries,
            leaf_cds,
            leaf_capacity,
            leaf_align,
        } => walk::<1, _>(s, s1.context_ptr, l1_entries, |s, l1_index, [desc]| {
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
            if !range_below_oas(leaf, leaf_cds * CD_BYTES, s.oas_bits) {
                return Err(Refusal::CdLeafBeyondOas {
                    sid,
                    l1_index,
                    ptr: leaf,
                    oas_bits: s.oas_bits,
                });
            }
            scan_cds(s, sid, leaf, u64::from(l1_index) * leaf_capacity, leaf_cds)
        }),
    }
}

/// Visits `count` CDs from `base`; the first has SubstreamID `first_ssid`.
fn scan_cds(
    s: &mut Scan<'_>,
    sid: u32,
    base: u64,
    first_ssid: u64,
    count: u64,
) -> Result<(), Refusal> {
    walk::<8, _>(s, base, count, |s, i, words| {
        s.stats.cds_scanned += 1;
        // SubstreamIDs stay below 2^31 (S1CDMax ≤ 31), so they fit in u32.
        let ssid = (first_ssid + i) as u32;
        let config = match Cd::from_words(words).decode() {
            Ok(None) => return Ok(()),
            Ok(Some(config)) => config,
            Err(error) => return Err(Refusal::CdReserved { sid, ssid, error }),
        };
        s.stats.cds_valid += 1;
        let asid = config.asid;
        if asid == 0 {
            return Err(Refusal::AsidZero { sid, ssid });
        }
        let bits = s.features.asid_bits();
        if u32::from(asid) >> bits != 0 {
            return Err(Refusal::AsidOutOfRange {
                sid,
                ssid,
                asid,
                bits,
            });
        }
        s.stats.asids += 1;
        s.emit(Found::Asid { sid, ssid, asid })
    })
}

// Keeps the STE size the walk assumes tied to the architected one.
const _: () = assert!(STE_BYTES == Ste::SIZE as u64 && CD_BYTES == Cd::SIZE as u64);

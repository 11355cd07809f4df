//! The decision (SPEC K1, K13, K17) and the register-level validation of the live stream table
//! (SPEC K2) and of its level-1 descriptors (SPEC K3).
//!
//! Pure functions: they look at a [`RegisterSnapshot`] and at descriptor values, never at
//! memory (the optional RAM check is the caller's callback). No input can make them overflow or
//! panic: every size is bounded before it is used as a shift.

use smmu::arch::idr::Features;
use smmu::arch::l1std::{L1Std, STRTAB_SPLIT};
use smmu::strtab::fmt;

use crate::reason::Refusal;
use crate::snapshot::RegisterSnapshot;

/// What the platform (not the SMMU) says about this boot, for the decision of SPEC K1/K13.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptPlatform {
    /// This kernel is a crash (kdump) kernel.
    pub crash_kernel: bool,
    /// The SMMU's table walks snoop the CPU caches. Linux takes this from firmware (DT
    /// `dma-coherent`, IORT), not from `IDR0.COHACC`; the platform decides which view to give.
    pub coherent: bool,
    /// The platform can clean and invalidate the caches for every write to an adopted
    /// structure, so a non-coherent SMMU may be adopted (SPEC K17).
    pub cache_maintenance: bool,
    /// The `CR2.E2H` value this kernel's TLB-invalidation choice assumes (EL2-E2H vs NH), or
    /// `None` when this kernel follows whatever the register says (SPEC K13).
    pub expect_e2h: Option<bool>,
}

/// SPEC K1, K13 (and K17): whether a live SMMU may be adopted at all.
///
/// Checked in this order: crash kernel, `CR0.SMMUEN` = 1, coherent or cache maintenance,
/// `SFM_ERR` not active (`GERROR` xor `GERRORN`), `CR2.E2H` as the platform expects. Other
/// active global errors do not refuse: the adopt-mode reset acknowledges them (SPEC K6).
pub fn decide(snap: &RegisterSnapshot, platform: &AdoptPlatform) -> Result<(), Refusal> {
    if !platform.crash_kernel {
        return Err(Refusal::NotCrashKernel);
    }
    if !snap.smmuen() {
        return Err(Refusal::SmmuDisabled { cr0: snap.cr0 });
    }
    if !platform.coherent && !platform.cache_maintenance {
        return Err(Refusal::NotCoherent);
    }
    if snap.sfm_active() {
        return Err(Refusal::ServiceFailure {
            gerror: snap.gerror,
            gerrorn: snap.gerrorn,
        });
    }
    if let Some(expected) = platform.expect_e2h {
        let found = snap.e2h();
        if found != expected {
            return Err(Refusal::E2hMismatch { found, expected });
        }
    }
    Ok(())
}

/// Bytes per STE.
pub const STE_BYTES: u64 = 64;
/// Bytes per level-1 stream table descriptor.
pub const L1STD_BYTES: u64 = 8;
/// The only `SPAN` a valid adopted L1 descriptor may have: `SPLIT` + 1 (SPEC K3).
pub const L1_SPAN: u32 = STRTAB_SPLIT + 1;
/// STEs per level-2 table (`SPLIT` = 8).
pub const STES_PER_L2: u64 = 1 << STRTAB_SPLIT;
/// Bytes per level-2 table (16 KiB), which is also its alignment.
pub const L2_TABLE_BYTES: u64 = STES_PER_L2 * STE_BYTES;
/// The largest `LOG2SIZE` − `SPLIT` adopted: 2^17 L1 descriptors, 1 MiB (SPEC K2).
pub const MAX_L1_LOG2: u32 = 17;
/// The largest linear `LOG2SIZE` adopted on an SMMU that supports 2-level tables: the largest
/// table a 2-level-capable driver describes (SPEC K2).
pub const MAX_LINEAR_LOG2_TWO_LEVEL_HW: u32 = STRTAB_SPLIT + MAX_L1_LOG2;
/// The largest linear `LOG2SIZE` adopted on any SMMU (SPEC K2).
pub const MAX_LINEAR_LOG2: u32 = 31;
/// The smallest alignment of a stream table base (§6.3.24: `ADDR[5:0]` are always zero).
pub const MIN_TABLE_ALIGN: u64 = 64;

/// Layout of the adopted stream table (`STRTAB_BASE_CFG.FMT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// One array of STEs.
    Linear,
    /// Level-1 descriptors, each covering 256 STEs (`SPLIT` = 8).
    TwoLevel,
}

/// A stream table whose registers passed SPEC K2: where it is and how big.
///
/// Built only by [`validate_geometry`], so every value is consistent: `table_bytes` is the
/// linear table (2^`log2size` STEs) or the level-1 table (2^(`log2size` − 8) descriptors),
/// `base` is aligned to it and the whole table lies below 2^`oas_bits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    format: Format,
    log2size: u32,
    base: u64,
    entries: u64,
    table_bytes: u64,
    oas_bits: u32,
    e2h: bool,
}

impl Geometry {
    /// `SMMU_CR2.E2H`: with `STE.STRW` = EL2 it selects StreamWorld NS-EL2-E2H over NS-EL2
    /// (§5.2 STRW), which decides how CDs are read and tagged (SPEC K21, K19).
    pub const fn e2h(&self) -> bool {
        self.e2h
    }

    /// Linear or 2-level.
    pub const fn format(&self) -> Format {
        self.format
    }

    /// `STRTAB_BASE_CFG.LOG2SIZE`: the table covers StreamIDs `0..2^log2size`.
    pub const fn log2size(&self) -> u32 {
        self.log2size
    }

    /// Physical address of the linear table or of the level-1 table.
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes of the linear table or of the level-1 table (a level-1 table of one
    /// descriptor is 8 bytes; its base is still 64-byte aligned).
    pub const fn table_bytes(&self) -> u64 {
        self.table_bytes
    }

    /// `IDR5.OAS` in bits, which every pointer of the table must stay below.
    pub const fn oas_bits(&self) -> u32 {
        self.oas_bits
    }

    /// Number of StreamIDs covered: 2^`log2size`.
    pub const fn num_sids(&self) -> u64 {
        1u64 << self.log2size
    }

    /// Number of level-1 descriptors of a 2-level table (at most 2^17).
    pub const fn l1_entries(&self) -> Option<u32> {
        match self.format {
            Format::TwoLevel => Some(self.entries as u32),
            Format::Linear => None,
        }
    }

    /// Number of STEs of a linear table (at most 2^31).
    pub const fn linear_stes(&self) -> Option<u32> {
        match self.format {
            Format::Linear => Some(self.entries as u32),
            Format::TwoLevel => None,
        }
    }

    /// Whether `sid` is inside the adopted table (a StreamID beyond it is rejected for that
    /// device only, as Linux does).
    pub const fn contains_sid(&self, sid: u32) -> bool {
        (sid as u64) < self.num_sids()
    }

    /// Physical address of `sid`'s STE in a linear table.
    pub const fn ste_pa(&self, sid: u32) -> Option<u64> {
        match self.format {
            Format::Linear if self.contains_sid(sid) => {
                self.base.checked_add(sid as u64 * STE_BYTES)
            }
            _ => None,
        }
    }

    /// Index of the level-1 descriptor that covers `sid` in a 2-level table.
    pub const fn l1_index(&self, sid: u32) -> Option<u32> {
        match self.format {
            Format::TwoLevel if self.contains_sid(sid) => Some(sid >> STRTAB_SPLIT),
            _ => None,
        }
    }

    /// Physical address of the level-1 descriptor that covers `sid` in a 2-level table.
    pub const fn l1_desc_pa(&self, sid: u32) -> Option<u64> {
        match self.l1_index(sid) {
            Some(i) => self.base.checked_add(i as u64 * L1STD_BYTES),
            None => None,
        }
    }

    /// [`validate_l1_at`] with this table's output address size: the check to repeat when a
    /// device under descriptor `index` is added (SPEC K3).
    pub fn validate_l1(&self, index: u32, desc: u64) -> Result<Option<u64>, Refusal> {
        validate_l1_at(index, desc, self.oas_bits)
    }
}

/// Physical address of `sid`'s STE inside the level-2 table at `l2` (one that passed
/// [`validate_l1`], so the sum cannot overflow; `None` if it would).
pub const fn ste_pa_in_l2(l2: u64, sid: u32) -> Option<u64> {
    l2.checked_add((sid as u64 % STES_PER_L2) * STE_BYTES)
}

/// Whether `pa` is below 2^`oas_bits` (any address is, for 64 bits or more).
pub(crate) const fn below_oas(pa: u64, oas_bits: u32) -> bool {
    match pa.checked_shr(oas_bits) {
        Some(high) => high == 0,
        None => true,
    }
}

/// Whether the `bytes` (> 0) bytes from `base` all lie below 2^`oas_bits`.
pub(crate) const fn range_below_oas(base: u64, bytes: u64, oas_bits: u32) -> bool {
    if bytes == 0 {
        return below_oas(base, oas_bits);
    }
    match base.checked_add(bytes - 1) {
        Some(last) => below_oas(last, oas_bits),
        None => false,
    }
}

/// SPEC K2: validates `STRTAB_BASE_CFG` and `STRTAB_BASE` against the ID registers.
///
/// Every clause of K2, in its order: `FMT` linear or 2-level (2-level needs
/// `IDR0.ST_LEVEL`); `LOG2SIZE` ≤ `IDR1.SIDSIZE`; for 2-level `SPLIT` = 8, `LOG2SIZE` ≥
/// `SPLIT` and `LOG2SIZE` − `SPLIT` ≤ 17 (checked before the shift); for linear
/// `LOG2SIZE` ≤ 25 on 2-level-capable hardware and ≤ 31 always; the base aligned to the table
/// (the level-1 table of a 2-level table), at least 64 bytes (§6.3.24); base and last byte
/// below 2^OAS; then `is_ram(base, bytes)`, the platform's optional RAM check (pass
/// [`any_ram`] to skip it). `STRTAB_BASE.RA` and the RES0 bits are ignored, as Linux does.
pub fn validate_geometry(
    snap: &RegisterSnapshot,
    features: &Features,
    is_ram: &dyn Fn(u64, u64) -> bool,
) -> Result<Geometry, Refusal> {
    let format = match snap.strtab_fmt() {
        fmt::LINEAR => Format::Linear,
        fmt::TWO_LEVEL => Format::TwoLevel,
        other => return Err(Refusal::ReservedFormat { fmt: other }),
    };
    if format == Format::TwoLevel && !features.two_level_stream_table {
        return Err(Refusal::TwoLevelUnsupported);
    }
    let log2size = snap.strtab_log2size();
    let sid_bits = u32::from(features.sid_bits);
    if log2size > sid_bits {
        return Err(Refusal::Log2SizeExceedsSidSize { log2size, sid_bits });
    }
    let (entries, table_bytes, align) = match format {
        Format::TwoLevel => {
            let split = snap.strtab_split();
            if split != STRTAB_SPLIT {
                return Err(Refusal::BadSplit { split });
            }
            if log2size < split {
                return Err(Refusal::Log2SizeBelowSplit { log2size, split });
            }
            let l1_log2 = log2size - split;
            if l1_log2 > MAX_L1_LOG2 {
                return Err(Refusal::L1TooLarge { log2size, split });
            }
            let entries = 1u64 << l1_log2;
            let bytes = entries * L1STD_BYTES;
            (
                entries,
                bytes,
                if bytes > MIN_TABLE_ALIGN {
                    bytes
                } else {
                    MIN_TABLE_ALIGN
                },
            )
        }
        Format::Linear => {
            let max = if features.two_level_stream_table {
                MAX_LINEAR_LOG2_TWO_LEVEL_HW
            } else {
                MAX_LINEAR_LOG2
            };
            if log2size > max {
                return Err(Refusal::LinearTooLarge { log2size, max });
            }
            let entries = 1u64 << log2size;
            let bytes = entries * STE_BYTES;
            (entries, bytes, bytes)
        }
    };
    let base = snap.strtab_addr();
    let oas_bits = features.oas_bits();
    if !base.is_multiple_of(align) {
        return Err(Refusal::BaseMisaligned { base, align });
    }
    if !below_oas(base, oas_bits) {
        return Err(Refusal::BaseBeyondOas { base, oas_bits });
    }
    if !range_below_oas(base, table_bytes, oas_bits) {
        return Err(Refusal::TableEndBeyondOas {
            base,
            bytes: table_bytes,
            oas_bits,
        });
    }
    if !is_ram(base, table_bytes) {
        return Err(Refusal::NotRam {
            base,
            bytes: table_bytes,
        });
    }
    Ok(Geometry {
        format,
        log2size,
        base,
        entries,
        table_bytes,
        oas_bits,
        e2h: snap.e2h(),
    })
}

/// A RAM check that accepts every range: for platforms that cannot tell (Linux dropped its
/// check in v6 of the series).
pub fn any_ram(_base: u64, _bytes: u64) -> bool {
    true
}

/// SPEC K3: one level-1 stream table descriptor. `Ok(None)` for `Span` = 0 (unused);
/// `Ok(Some(l2))` for a valid descriptor; otherwise the broken rule: `Span` ≠ 9 (reserved
/// spans 12–31 included), `L2Ptr` = 0, `L2Ptr` not 16 KiB aligned, or the level-2 table not
/// entirely below 2^`oas_bits`. The refusal's `index` is `None`; see [`validate_l1_at`].
pub fn validate_l1(desc: u64, oas_bits: u32) -> Result<Option<u64>, Refusal> {
    let config = match L1Std::from_words([desc]).decode() {
        Ok(None) => return Ok(None),
        Ok(Some(config)) => config,
        Err(_) => return Err(Refusal::L1BadSpan { index: None, desc }),
    };
    if u32::from(config.span) != L1_SPAN {
        return Err(Refusal::L1BadSpan { index: None, desc });
    }
    let l2ptr = config.l2_ptr;
    if l2ptr == 0 {
        return Err(Refusal::L1NullL2Ptr { index: None, desc });
    }
    if l2ptr % L2_TABLE_BYTES != 0 {
        return Err(Refusal::L1Misaligned { index: None, l2ptr });
    }
    if !range_below_oas(l2ptr, L2_TABLE_BYTES, oas_bits) {
        return Err(Refusal::L1BeyondOas {
            index: None,
            l2ptr,
            oas_bits,
        });
    }
    Ok(Some(l2ptr))
}

/// [`validate_l1`] for the descriptor at `index` of the level-1 table; refusals carry the index.
pub fn validate_l1_at(index: u32, desc: u64, oas_bits: u32) -> Result<Option<u64>, Refusal> {
    validate_l1(desc, oas_bits).map_err(|r| r.with_l1_index(index))
}

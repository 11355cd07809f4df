//! VMSAv8-64 descriptor fields, one named constant per field.
//!
//! Every position here is taken from Arm DDI 0487, chapter D8 (VMSAv8-64): the table and
//! Block/Page descriptor layouts of D8.3.1 (Tables D8-50 to D8-53), the permission encodings of D8.4
//! and the memory attribute encodings of D8.6. Nothing else in the crate shifts or masks
//! descriptor bits by hand; `pagetable/tests/fields.rs` checks each constant against the `pte`
//! section of `testdata/smmuv3-fields.json`.
//!
//! The software bit Linux calls `SW_SYNC` (bit 55) is not used: this crate keeps no software state
//! in descriptors.

/// A descriptor bit field `[hi:lo]` (inclusive, `hi >= lo`, `hi < 64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Most significant bit.
    pub hi: u32,
    /// Least significant bit.
    pub lo: u32,
}

impl Field {
    const fn new(hi: u32, lo: u32) -> Self {
        Self { hi, lo }
    }

    /// The field's bits in place.
    #[inline]
    pub const fn mask(self) -> u64 {
        (u64::MAX >> (63 - self.hi + self.lo)) << self.lo
    }

    /// `value` placed in the field (excess high bits are dropped).
    #[inline]
    pub const fn encode(self, value: u64) -> u64 {
        (value << self.lo) & self.mask()
    }

    /// The field's value extracted from `desc`.
    #[inline]
    pub const fn decode(self, desc: u64) -> u64 {
        (desc & self.mask()) >> self.lo
    }
}

// ---- Fields common to both stages -------------------------------------------------------------

/// Valid bit. DDI 0487 D8.3.1, Tables D8-50 to D8-53 (bit 0).
pub const VALID: Field = Field::new(0, 0);
/// Descriptor type `[1:0]`: with VALID set, bit 1 distinguishes Table/Page (1) from Block (0).
/// DDI 0487 D8.3.1, Table D8-48.
pub const TYPE: Field = Field::new(1, 0);
/// `TYPE` value of a Block descriptor (levels 0..=2). DDI 0487 D8.3.1, Table D8-48.
pub const TYPE_BLOCK: u64 = 0b01;
/// `TYPE` value of a Table descriptor (levels 0..=2). DDI 0487 D8.3.1, Table D8-48.
pub const TYPE_TABLE: u64 = 0b11;
/// `TYPE` value of a Page descriptor (level 3). DDI 0487 D8.3.1, Table D8-48.
pub const TYPE_PAGE: u64 = 0b11;
/// Non-secure bit of a stage-1 Block/Page descriptor (Secure translation regimes only; at stage 2
/// bit 5 is MemAttr\[3\]). DDI 0487 D8.3.1, Table D8-52. Never set by this crate.
pub const NS: Field = Field::new(5, 5);
/// Shareability `SH[1:0]`. DDI 0487 D8.3.1, Tables D8-52/D8-53; values D8.6.2 (Table D8-102 for
/// stage 2).
pub const SH: Field = Field::new(9, 8);
/// `SH` value: Non-shareable. DDI 0487 D8.6.2.
pub const SH_NS: u64 = 0b00;
/// `SH` value: Outer Shareable. DDI 0487 D8.6.2.
pub const SH_OS: u64 = 0b10;
/// `SH` value: Inner Shareable. DDI 0487 D8.6.2.
pub const SH_IS: u64 = 0b11;
/// Access flag. DDI 0487 D8.3.1, Tables D8-52/D8-53 (bit 10). Always set: the SMMU is not asked to
/// manage it.
pub const AF: Field = Field::new(10, 10);
/// Output address `[47:12]` of a 4 KiB-granule Page descriptor (the widest form of the field; 16K
/// and 64K granules use `[47:14]` / `[47:16]`, blocks fewer bits still). DDI 0487 D8.3.1, Tables
/// D8-50 to D8-53.
pub const ADDR: Field = Field::new(47, 12);
/// OA\[51:48\] of a 64 KiB-granule descriptor with FEAT_LPA (52-bit OA). DDI 0487 D8.3.1, Tables
/// D8-50 to D8-53 (`NLTA[51:48]` / `OAB[51:48]` in bits \[15:12\]).
pub const ADDR_HI_LPA: Field = Field::new(15, 12);
/// Dirty bit modifier. DDI 0487 D8.3.1, Tables D8-52/D8-53 (bit 51). Never set by this crate.
pub const DBM: Field = Field::new(51, 51);
/// Contiguous hint. DDI 0487 D8.3.1, Tables D8-52/D8-53 (bit 52). Never set by this crate.
pub const CONTIG: Field = Field::new(52, 52);
/// Table descriptor NSTable (Secure state only; RES0 otherwise). DDI 0487 D8.3.1, Table D8-50
/// (bit 63). Never set by this crate.
pub const NSTABLE: Field = Field::new(63, 63);

// ---- Stage 1 Block/Page (DDI 0487 D8.3.1, Table D8-52) ----------------------------------------

/// Stage-1 `AttrIndx[2:0]`: index into MAIR. DDI 0487 D8.3.1, Table D8-52.
pub const ATTRINDX: Field = Field::new(4, 2);
/// Stage-1 `AP[2:1]`. DDI 0487 D8.3.1, Table D8-52; meaning D8.4.1, Table D8-63.
pub const AP: Field = Field::new(7, 6);
/// Stage-1 `AP[1]`: 1 = accessible from EL0 (unprivileged). DDI 0487 D8.4.1, Table D8-63.
pub const AP_UNPRIV: Field = Field::new(6, 6);
/// Stage-1 `AP[2]`: 1 = read-only. DDI 0487 D8.4.1, Table D8-63.
pub const AP_RDONLY: Field = Field::new(7, 7);
/// Stage-1 not-Global bit: the translation is tagged with the ASID. DDI 0487 D8.3.1, Table D8-52
/// (bit 11).
pub const NG: Field = Field::new(11, 11);
/// Stage-1 Privileged execute-never. DDI 0487 D8.3.1, Table D8-52 (bit 53).
pub const PXN: Field = Field::new(53, 53);
/// Stage-1 Unprivileged execute-never. DDI 0487 D8.3.1, Table D8-52 (bit 54).
pub const UXN: Field = Field::new(54, 54);

// ---- Stage 2 Block/Page (DDI 0487 D8.3.1, Table D8-53) ----------------------------------------

/// Stage-2 `MemAttr[3:0]`. DDI 0487 D8.3.1, Table D8-53; values D8.6.5, Table D8-96.
pub const MEMATTR: Field = Field::new(5, 2);
/// Stage-2 `S2AP[1:0]`. DDI 0487 D8.3.1, Table D8-53; values D8.4.2, Table D8-76.
pub const S2AP: Field = Field::new(7, 6);
/// `S2AP` value bit: reads permitted. DDI 0487 D8.4.2, Table D8-76.
pub const S2AP_READ: u64 = 0b01;
/// `S2AP` value bit: writes permitted. DDI 0487 D8.4.2, Table D8-76.
pub const S2AP_WRITE: u64 = 0b10;
/// Stage-2 `XN[1:0]` (bit 53 is RES0 without FEAT_XNX). DDI 0487 D8.3.1, Table D8-53; values D8.4.2,
/// Tables D8-77/D8-78.
pub const XN: Field = Field::new(54, 53);
/// `XN` value for "no execution at EL1 or EL0": `0b10`, valid with and without FEAT_XNX
/// (Tables D8-77/D8-78). Linux writes `0b11`, which with FEAT_XNX still permits EL1 execution.
pub const XN_NONE: u64 = 0b10;
/// `MemAttr` value: Device-nGnRE. DDI 0487 D8.6.5, Table D8-96.
pub const MEMATTR_DEVICE: u64 = 0x1;
/// `MemAttr` value: Normal, Inner and Outer Non-cacheable. DDI 0487 D8.6.5, Table D8-96.
pub const MEMATTR_NC: u64 = 0x5;
/// `MemAttr` value: Normal, Inner and Outer Write-Back Cacheable. DDI 0487 D8.6.5, Table D8-96.
pub const MEMATTR_WB: u64 = 0xf;

// ---- MAIR ----------------------------------------------------------------------------------------

/// MAIR index of Normal Non-cacheable memory (`Attr0 = 0x44`).
pub const MAIR_IDX_NC: u64 = 0;
/// MAIR index of Normal Write-Back, Read/Write-Allocate memory (`Attr1 = 0xff`).
pub const MAIR_IDX_CACHE: u64 = 1;
/// MAIR index of Device-nGnRE memory (`Attr2 = 0x04`).
pub const MAIR_IDX_DEV: u64 = 2;
/// MAIR index of Normal, Inner Non-cacheable, Outer Write-Back memory (`Attr3 = 0xf4`; unused by
/// the mappings this crate makes, kept for parity with Linux).
pub const MAIR_IDX_INC_OCACHE: u64 = 3;

/// The MAIR value every stage-1 table of this crate assumes. The driver writes the low 32 bits to
/// `CD.MAIR0` and the high 32 bits to `CD.MAIR1` (IHI 0070 §5.4).
///
/// | index | attribute | meaning |
/// |---|---|---|
/// | 0 | `0x44` | Normal, Inner/Outer Non-cacheable |
/// | 1 | `0xff` | Normal, Inner/Outer Write-Back Read/Write-Allocate |
/// | 2 | `0x04` | Device-nGnRE |
/// | 3 | `0xf4` | Normal, Inner Non-cacheable, Outer Write-Back RW-Allocate |
///
/// Attribute encodings are those of the MAIR_ELx registers (DDI 0487 D24.2, not chapter D8).
pub const MAIR: u64 = 0x44 | (0xff << 8) | (0x04 << 16) | (0xf4 << 24);

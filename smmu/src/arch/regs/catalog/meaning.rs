//! The meanings of enumerated register values, in plain words after the field descriptions of
//! IHI 0070 G.b §6.3 (the section of each list is the register's).

use super::super::cmdq_error;
use crate::arch::entry::AddressSize;

type List = &'static [(u64, &'static str)];

/// `IDR0.ST_LEVEL` (§6.3.1).
pub(super) const ST_LEVEL: List = &[
    (0b00, "linear Stream table only"),
    (0b01, "2-level Stream table supported, and linear"),
];
/// `IDR0.TERM_MODEL` (§6.3.1).
pub(super) const TERM_MODEL: List = &[
    (
        0,
        "CD.A chooses abort or RAZ/WI for a terminated transaction",
    ),
    (1, "a terminated transaction always aborts (CD.A must be 1)"),
];
/// `IDR0.STALL_MODEL` (§6.3.1).
pub(super) const STALL_MODEL: List = &[
    (0b00, "stall and terminate models supported"),
    (
        0b01,
        "stall not supported: every fault terminates the transaction",
    ),
    (0b10, "stall forced: every fault that can stall does"),
];
/// `IDR0.TTENDIAN` (§6.3.1).
pub(super) const TTENDIAN: List = &[
    (
        0b00,
        "mixed-endian: each CD and STE selects its table endianness",
    ),
    (0b10, "little-endian tables only"),
    (0b11, "big-endian tables only"),
];
/// `IDR0.HTTU` (§6.3.1).
pub(super) const HTTU: List = &[
    (0b00, "no hardware Access flag or dirty state updates"),
    (0b01, "hardware Access flag updates"),
    (0b10, "hardware Access flag and dirty state updates"),
    (
        0b11,
        "hardware Access flag, dirty state and table-descriptor Access flag updates",
    ),
];
/// `IDR0.TTF` (§6.3.1).
pub(super) const TTF: List = &[
    (0b01, "VMSAv8-32 LPAE tables"),
    (0b10, "VMSAv8-64 tables"),
    (0b11, "VMSAv8-32 LPAE and VMSAv8-64 tables"),
];
/// `IDR3.BBML` (§6.3.4).
pub(super) const BBML: List = &[
    (0b00, "break-before-make level 0"),
    (0b01, "break-before-make level 1"),
    (0b10, "break-before-make level 2"),
];
/// `IDR5.VAX` (§6.3.6).
pub(super) const VAX: List = &[
    (0b00, "virtual addresses up to 48 bits"),
    (0b01, "virtual addresses up to 52 bits"),
    (0b10, "virtual addresses up to 56 bits"),
];
const fn oas(size: AddressSize) -> (u64, &'static str) {
    (size.encode(), size.describe())
}
/// `IDR5.OAS` (§6.3.6): the encoding the `AddressSize` of STEs and CDs shares.
pub(super) const OAS: List = &[
    oas(AddressSize::Bits32),
    oas(AddressSize::Bits36),
    oas(AddressSize::Bits40),
    oas(AddressSize::Bits42),
    oas(AddressSize::Bits44),
    oas(AddressSize::Bits48),
    oas(AddressSize::Bits52),
    oas(AddressSize::Bits56),
];
/// `AIDR.ArchMajorRev` (§6.3.8).
pub(super) const ARCH_MAJOR: List = &[(0, "SMMUv3.x")];
/// `AIDR.ArchMinorRev` (§6.3.8).
pub(super) const ARCH_MINOR: List = &[
    (0, "SMMUv3.0"),
    (1, "SMMUv3.1"),
    (2, "SMMUv3.2"),
    (3, "SMMUv3.3"),
    (4, "SMMUv3.4"),
];
/// `CR0.SMMUEN` (§6.3.9).
pub(super) const SMMUEN: List = &[
    (0, "off: every stream bypasses the SMMU as SMMU_GBPA says"),
    (1, "on: every stream is checked against the Stream table"),
];
/// `CR0.VMW` (§6.3.9).
pub(super) const VMW: List = &[
    (0b000, "TLB invalidations match VMIDs exactly"),
    (0b001, "TLB invalidations match VMID[N:1]"),
    (0b010, "TLB invalidations match VMID[N:2]"),
    (0b011, "TLB invalidations match VMID[N:3]"),
    (0b100, "TLB invalidations match VMID[N:4]"),
];
/// `CR1.*_SH`, `*_IRQ_CFG2.SH` (§6.3.11, §6.3.23).
pub(super) const SHAREABILITY: List = &[
    (0b00, "non-shareable"),
    (0b01, "reserved, treated as non-shareable"),
    (0b10, "outer shareable"),
    (0b11, "inner shareable"),
];
/// `CR1.*_OC`, `CR1.*_IC` (§6.3.11).
pub(super) const CACHEABILITY: List = &[
    (0b00, "non-cacheable"),
    (0b01, "write-back cacheable"),
    (0b10, "write-through cacheable"),
    (0b11, "reserved, treated as non-cacheable"),
];
/// `GBPA.ABORT` (§6.3.14).
pub(super) const ABORT: List = &[
    (
        0,
        "incoming transactions bypass the SMMU (when SMMUEN is 0)",
    ),
    (1, "all incoming transactions abort (when SMMUEN is 0)"),
];
/// `GBPA.INSTCFG` (§6.3.14).
pub(super) const INSTCFG: List = &[
    (0b00, "use incoming"),
    (0b01, "reserved, behaves as use incoming"),
    (0b10, "data"),
    (0b11, "instruction"),
];
/// `GBPA.PRIVCFG` (§6.3.14).
pub(super) const PRIVCFG: List = &[
    (0b00, "use incoming"),
    (0b01, "reserved, behaves as use incoming"),
    (0b10, "unprivileged"),
    (0b11, "privileged"),
];
/// `GBPA.SHCFG` (§6.3.14).
pub(super) const SHCFG: List = &[
    (0b00, "non-shareable"),
    (0b01, "use incoming"),
    (0b10, "outer shareable"),
    (0b11, "inner shareable"),
];
/// `GBPA.MTCFG` (§6.3.14).
pub(super) const MTCFG: List = &[
    (0, "use incoming memory type"),
    (1, "memory type from MemAttr"),
];
/// `STRTAB_BASE_CFG.FMT` (§6.3.25); other values behave as linear.
pub(super) const FMT: List = &[(0b00, "linear"), (0b01, "2-level")];
/// `STRTAB_BASE_CFG.SPLIT` (§6.3.25); other values behave as 6.
pub(super) const SPLIT: List = &[
    (6, "6 bits: 4KB level-2 tables"),
    (8, "8 bits: 16KB level-2 tables"),
    (10, "10 bits: 64KB level-2 tables"),
];
/// `CMDQ_CONS.ERR` (§6.3.28, the reason codes of §7.1).
pub(super) const CMDQ_ERR: List = &[
    (cmdq_error::NONE as u64, "CERROR_NONE: no error"),
    (cmdq_error::ILL as u64, "CERROR_ILL: illegal command"),
    (cmdq_error::ABT as u64, "CERROR_ABT: abort on command fetch"),
    (
        cmdq_error::ATC_INV_SYNC as u64,
        "CERROR_ATC_INV_SYNC: a CMD_SYNC after a timed-out ATC invalidation",
    ),
];

//! Why a live SMMU is not adopted: one variant per rule of SPEC K1–K3, K13–K15 and K18–K21.
//!
//! Every [`Refusal`] has a stable kebab-case [`code`](Refusal::code) (for logs, the CLI and
//! tests) and a [`Display`](core::fmt::Display) form for people that names the offending
//! values. Any refusal means the same thing to the caller: discard the adoption, release what
//! it reserved and do the full reset (SPEC K4).

use core::fmt;

use smmu::arch::{l1std, DecodeError};

/// Why adoption is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    // K1 / K13 / K17: the decision.
    /// K1: the caller did not say this is a crash kernel.
    NotCrashKernel,
    /// K1: `CR0.SMMUEN` = 0; a disabled SMMU has no translated DMA in flight.
    SmmuDisabled {
        /// `CR0` as read.
        cr0: u32,
    },
    /// K1/K17: the SMMU is not coherent and the platform offers no cache maintenance.
    NotCoherent,
    /// K1: `SFM_ERR` is active (`GERROR` xor `GERRORN`): Service Failure Mode.
    ServiceFailure {
        /// `GERROR` as read.
        gerror: u32,
        /// `GERRORN` as read.
        gerrorn: u32,
    },
    /// K13: `CR2.E2H` differs from what the platform expects.
    E2hMismatch {
        /// `CR2.E2H` as read back.
        found: bool,
        /// The platform's expectation.
        expected: bool,
    },

    // K2: STRTAB_BASE / STRTAB_BASE_CFG.
    /// K2: `STRTAB_BASE_CFG.FMT` is a reserved value (2 or 3).
    ReservedFormat {
        /// `FMT`.
        fmt: u32,
    },
    /// K2: a 2-level table on an SMMU whose `IDR0.ST_LEVEL` says linear only.
    TwoLevelUnsupported,
    /// K2: `LOG2SIZE` > `IDR1.SIDSIZE`.
    Log2SizeExceedsSidSize {
        /// `LOG2SIZE`.
        log2size: u32,
        /// `IDR1.SIDSIZE`.
        sid_bits: u32,
    },
    /// K2: a 2-level table with `SPLIT` ≠ 8.
    BadSplit {
        /// `SPLIT`.
        split: u32,
    },
    /// K2: a 2-level table with `LOG2SIZE` < `SPLIT`.
    Log2SizeBelowSplit {
        /// `LOG2SIZE`.
        log2size: u32,
        /// `SPLIT`.
        split: u32,
    },
    /// K2: a 2-level table with `LOG2SIZE` − `SPLIT` > 17 (more than 2^17 L1 descriptors).
    L1TooLarge {
        /// `LOG2SIZE`.
        log2size: u32,
        /// `SPLIT`.
        split: u32,
    },
    /// K2: a linear table larger than allowed (2^25 STEs on 2-level hardware, 2^31 always).
    LinearTooLarge {
        /// `LOG2SIZE`.
        log2size: u32,
        /// The largest `LOG2SIZE` accepted on this SMMU.
        max: u32,
    },
    /// K2: `STRTAB_BASE.ADDR` is not aligned to the (L1) table size (at least 64 bytes).
    BaseMisaligned {
        /// The table address.
        base: u64,
        /// The alignment the SMMU applies (§6.3.24).
        align: u64,
    },
    /// K2: the table address is at or above 2^OAS.
    BaseBeyondOas {
        /// The table address.
        base: u64,
        /// `IDR5.OAS` in bits.
        oas_bits: u32,
    },
    /// K2: the table's last byte is at or above 2^OAS.
    TableEndBeyondOas {
        /// The table address.
        base: u64,
        /// The table size in bytes.
        bytes: u64,
        /// `IDR5.OAS` in bits.
        oas_bits: u32,
    },
    /// K2: the platform says the table is not in RAM.
    NotRam {
        /// The table address.
        base: u64,
        /// The table size in bytes.
        bytes: u64,
    },

    // K3: level-1 stream table descriptors.
    /// K3: an L1STD with `Span` ≠ 0 and ≠ 9 (`SPLIT` + 1).
    L1BadSpan {
        /// The descriptor's index in the L1 table, when known.
        index: Option<u32>,
        /// The descriptor.
        desc: u64,
    },
    /// K3: a valid L1STD with `L2Ptr` = 0.
    L1NullL2Ptr {
        /// The descriptor's index in the L1 table, when known.
        index: Option<u32>,
        /// The descriptor.
        desc: u64,
    },
    /// K3: a valid L1STD whose `L2Ptr` is not 16 KiB aligned.
    L1Misaligned {
        /// The descriptor's index in the L1 table, when known.
        index: Option<u32>,
        /// `L2Ptr`.
        l2ptr: u64,
    },
    /// K3: a valid L1STD whose level-2 table reaches 2^OAS.
    L1BeyondOas {
        /// The descriptor's index in the L1 table, when known.
        index: Option<u32>,
        /// `L2Ptr`.
        l2ptr: u64,
        /// `IDR5.OAS` in bits.
        oas_bits: u32,
    },

    // K14: STEs and CDs.
    /// K14: a valid STE with a reserved `Config` or another reserved encoding.
    SteReserved {
        /// The StreamID.
        sid: u32,
        /// The field and value.
        error: DecodeError,
    },
    /// K14: a stage-2 or nested STE with `S2VMID` = 0.
    VmidZero {
        /// The StreamID.
        sid: u32,
    },
    /// K14: a stage-2 or nested STE whose `S2VMID` does not fit the SMMU's VMID width.
    VmidOutOfRange {
        /// The StreamID.
        sid: u32,
        /// `S2VMID`.
        vmid: u16,
        /// 8 or 16 (`IDR0.VMID16`).
        bits: u32,
    },
    /// K14: a stage-1 STE with `S1ContextPtr` = 0.
    CdTableNull {
        /// The StreamID.
        sid: u32,
    },
    /// K14: `S1CDMax` > `IDR1.SSIDSIZE`.
    CdMaxExceedsSsidSize {
        /// The StreamID.
        sid: u32,
        /// `S1CDMax`.
        cd_max: u8,
        /// `IDR1.SSIDSIZE`.
        ssid_bits: u8,
    },
    /// K14: `S1Fmt` is reserved (0b11), or 2-level while `IDR0.CD2L` = 0.
    CdFormatUnsupported {
        /// The StreamID.
        sid: u32,
        /// `S1Fmt`.
        fmt: u8,
    },
    /// K14: `S1ContextPtr` is not aligned as §5.2 requires for its table.
    CdTableMisaligned {
        /// The StreamID.
        sid: u32,
        /// `S1ContextPtr`.
        ptr: u64,
        /// The required alignment.
        align: u64,
    },
    /// K14: the CD table (or level-1 CD table) reaches 2^OAS.
    CdTableBeyondOas {
        /// The StreamID.
        sid: u32,
        /// `S1ContextPtr`.
        ptr: u64,
        /// The table size in bytes.
        bytes: u64,
        /// `IDR5.OAS` in bits.
        oas_bits: u32,
    },
    /// K14: a valid level-1 CD descriptor with `L2Ptr` = 0.
    CdLeafNull {
        /// The StreamID.
        sid: u32,
        /// The descriptor's index in the level-1 CD table.
        l1_index: u32,
    },
    /// K14: a leaf CD table not aligned to its size (64 KiB leaves).
    CdLeafMisaligned {
        /// The StreamID.
        sid: u32,
        /// The descriptor's index in the level-1 CD table.
        l1_index: u32,
        /// `L2Ptr`.
        ptr: u64,
        /// The required alignment.
        align: u64,
    },
    /// K14: a leaf CD table that reaches 2^OAS.
    CdLeafBeyondOas {
        /// The StreamID.
        sid: u32,
        /// The descriptor's index in the level-1 CD table.
        l1_index: u32,
        /// `L2Ptr`.
        ptr: u64,
        /// `IDR5.OAS` in bits.
        oas_bits: u32,
    },
    /// K14: a valid CD with a reserved encoding.
    CdReserved {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID (the CD's index).
        ssid: u32,
        /// The field and value.
        error: DecodeError,
    },
    /// K14: a valid CD with `ASID` = 0.
    AsidZero {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID.
        ssid: u32,
    },
    /// K14: a valid CD whose `ASID` does not fit the SMMU's ASID width.
    AsidOutOfRange {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID.
        ssid: u32,
        /// `ASID`.
        asid: u16,
        /// 8 or 16 (`IDR0.ASID16`).
        bits: u32,
    },
    /// K14: the ASID could not be reserved (returned by the caller's reservation sink).
    AsidConflict {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID.
        ssid: u32,
        /// `ASID`.
        asid: u16,
    },
    /// K14: the VMID could not be reserved (returned by the caller's reservation sink).
    VmidConflict {
        /// The StreamID.
        sid: u32,
        /// `S2VMID`.
        vmid: u16,
    },
    /// K21: a stage-1 STE with `STRW` = `0b01` or `0b11`: Reserved, ILLEGAL for a
    /// Non-secure stream (§5.2).
    SteStrwIllegal {
        /// The StreamID.
        sid: u32,
        /// `STRW`.
        strw: u8,
    },
    /// K21: a field the STE's configuration uses holds a value §5.2 makes ILLEGAL on this
    /// SMMU (or, on SMMUv3.0, CONSTRAINED UNPREDICTABLE); `rule` names the field, the
    /// condition and the section, and gives the refusal its code.
    SteIllegal {
        /// The StreamID.
        sid: u32,
        /// Which condition of §5.2 (or DDI 0487 D8.2) the entry breaks.
        rule: Illegal,
        /// The value of the field named by `rule`.
        value: u64,
    },
    /// K21: a field a valid CD uses holds a value §5.4 makes ILLEGAL on this SMMU (or, on
    /// SMMUv3.0, CONSTRAINED UNPREDICTABLE), for the StreamWorld its STE selects.
    CdIllegal {
        /// The StreamID.
        sid: u32,
        /// The SubstreamID.
        ssid: u32,
        /// Which condition of §5.4 the descriptor breaks.
        rule: Illegal,
        /// The value of the field named by `rule`.
        value: u64,
    },
    /// K18: the starting-level table of a live translation regime (a CD's `TTB0`/`TTB1`,
    /// an STE's `S2TTB` with its concatenated tables) shares memory with a structure
    /// adoption trusts and the crash kernel writes: those writes would become live
    /// translation table descriptors.
    RootOverlaps {
        /// The translation table.
        root: Root,
        /// The structure it overlaps.
        structure: Structure,
    },
    /// K18: two structures adoption trusts share memory.
    StructuresOverlap {
        /// The one at the lower address.
        first: Structure,
        /// The one that starts inside it.
        second: Structure,
    },
    /// K19: one ASID names two different stage-1 configurations.
    AsidAlias {
        /// The StreamID of the second user.
        sid: u32,
        /// The SubstreamID of the second user.
        ssid: u32,
        /// `ASID`.
        asid: u16,
        /// Address of the first CD that uses the ASID.
        first_cd: u64,
    },
    /// K19: one VMID names two different stage-2 configurations (or stage 2 and none).
    VmidAlias {
        /// The StreamID of the second user.
        sid: u32,
        /// `S2VMID`.
        vmid: u16,
        /// Address of the first STE that uses the VMID.
        first_ste: u64,
    },
    /// K20: the CD tables hold more entries than the scan budget.
    ScanBudgetExceeded {
        /// The StreamID whose CD table would exceed it.
        sid: u32,
        /// The budget, in CDs and level-1 CD descriptors.
        budget: u64,
    },
    /// K15/K18: more distinct CD tables and leaves than the scan can keep track of.
    TooManyStructures {
        /// The most it keeps track of.
        max: u32,
    },
    /// K15: the caller's scratch area is smaller than the scan needs.
    ScratchTooSmall {
        /// Slots needed.
        needed: u64,
        /// Slots given.
        given: u64,
    },
    /// A range the registers or descriptors describe could not be read.
    MemoryUnreadable {
        /// First byte of the read.
        pa: u64,
        /// Bytes.
        len: u64,
    },
}

/// Declares [`Illegal`]: each condition with its code, the field it names, the section that
/// makes it ILLEGAL and the words `smmuctl inspect` prints.
macro_rules! illegal_rules {
    ($( $(#[$m:meta])* $name:ident => $code:literal, $field:literal, $section:literal, $words:literal; )+) => {
        /// One condition under which §5.2 (STE) or §5.4 (CD) makes an entry ILLEGAL (the SMMU
        /// aborts its transactions with `C_BAD_STE` / `C_BAD_CD`), or, on SMMUv3.0 where
        /// `SMMU_AIDR` says so, CONSTRAINED UNPREDICTABLE (SPEC K21). Each has a stable
        /// kebab-case [`code`](Illegal::code) naming the field.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Illegal {
            $( $(#[$m])* $name, )+
        }

        impl Illegal {
            /// Every condition, in declaration order.
            pub const ALL: &'static [Illegal] = &[$(Illegal::$name),+];

            /// The refusal code.
            pub const fn code(self) -> &'static str {
                match self { $(Illegal::$name => $code),+ }
            }

            /// The field, by its specification name.
            pub const fn field(self) -> &'static str {
                match self { $(Illegal::$name => $field),+ }
            }

            /// The section of IHI 0070 G.b (or DDI 0487) that makes the value ILLEGAL.
            pub const fn section(self) -> &'static str {
                match self { $(Illegal::$name => $section),+ }
            }

            /// What is wrong, in words.
            pub const fn words(self) -> &'static str {
                match self { $(Illegal::$name => $words),+ }
            }
        }
    };
}

illegal_rules! {
    /// A stage the SMMU does not implement (`IDR0.S1P` / `S2P`).
    SteStageUnsupported => "ste-config-stage-unsupported", "Config", "§5.2 Config",
        "selects a translation stage this SMMU does not implement (IDR0.S1P/S2P)";
    /// `STRW` = EL2 on an SMMU without `IDR0.Hyp` (the field is RES0 there).
    SteStrwWithoutHyp => "ste-strw-el2-without-hyp", "STRW", "§5.2 STRW",
        "selects EL2 on an SMMU without EL2 support (IDR0.Hyp = 0, STRW is RES0)";
    /// `S1STALLD` = 1 under a stall model other than stall-and-terminate.
    SteS1stalld => "ste-s1stalld-illegal", "S1STALLD", "§5.2 S1STALLD",
        "disables stalls, which only the stall-and-terminate model (IDR0.STALL_MODEL = 0b00) allows";
    /// `S2HA`/`S2HD` without hardware access-flag updates, or on AArch32 tables.
    SteS2ha => "ste-s2ha-unsupported", "S2HA", "§5.2 S2HA",
        "asks for hardware flag updates the SMMU lacks (IDR0.HTTU) or AArch32 tables cannot have";
    /// `S2HD` with access-flag-only updates.
    SteS2hd => "ste-s2hd-unsupported", "S2HD", "§5.2 S2HD",
        "asks for hardware dirty-state updates the SMMU lacks (IDR0.HTTU)";
    /// `S2S` against the stall model.
    SteS2s => "ste-s2s-stall-model", "S2S", "§5.2 S2S",
        "contradicts the stall model (IDR0.STALL_MODEL: stalls unsupported or forced)";
    /// `EATS` where ATS cannot be used that way.
    SteEats => "ste-eats-illegal", "EATS", "§5.2 EATS",
        "selects an ATS mode this configuration cannot use (split-stage outside nesting, with stalls, or without support)";
    /// `S2AA64` selects a table format `IDR0.TTF` does not support.
    SteS2aa64 => "ste-s2aa64-unsupported", "S2AA64", "§5.2 S2AA64",
        "selects a stage-2 table format the SMMU does not support (IDR0.TTF)";
    /// `S2ENDI` selects an endianness `IDR0.TTENDIAN` does not support.
    SteS2endi => "ste-s2endi-unsupported", "S2ENDI", "§5.2 S2ENDI",
        "selects a table endianness the SMMU does not support (IDR0.TTENDIAN)";
    /// `S2TG` selects a granule `IDR5` does not advertise.
    SteS2tg => "ste-s2tg-unsupported", "S2TG", "§5.2 S2TG",
        "selects a granule the SMMU does not support (IDR5.GRAN4K/16K/64K)";
    /// `S2T0SZ` outside its range (IAS, `IDR3.STT`, granule, `S2DS`), SMMUv3.1 and later.
    SteS2t0sz => "ste-s2t0sz-out-of-range", "S2T0SZ", "§5.2 S2T0SZ, §3.4",
        "is outside the range IAS, IDR3.STT and the granule allow (ILLEGAL from SMMUv3.1)";
    /// The same on SMMUv3.0 (`AIDR`), where it is CONSTRAINED UNPREDICTABLE.
    SteS2t0szUnpredictable => "ste-s2t0sz-unpredictable", "S2T0SZ", "§5.2 S2T0SZ, §3.4",
        "is outside the range IAS, IDR3.STT and the granule allow (CONSTRAINED UNPREDICTABLE on SMMUv3.0: ILLEGAL or clamped)";
    /// `S2SL0` is a reserved encoding for the granule.
    SteS2sl0Reserved => "ste-s2sl0-reserved", "S2SL0", "§5.2 S2SL0, DDI 0487 D8.2",
        "is a reserved start-level encoding for the granule";
    /// A start level 3 (4KB granule) without small translation tables.
    SteS2sl0NeedsStt => "ste-s2sl0-needs-stt", "S2SL0", "§5.2 S2SL0, DDI 0487 D8.2",
        "starts the walk at level 3 with a 4KB granule, which needs IDR3.STT";
    /// A start level that needs `S2DS` (16KB level 0, 4KB level -1, more than 48 bits).
    SteS2sl0NeedsDs => "ste-s2sl0-needs-ds", "S2SL0", "§5.2 S2SL0, §5.2 S2DS, DDI 0487 D8.2",
        "needs 52-bit addressing (S2DS with IDR5.DS) for this start level";
    /// `S2SL0` inconsistent with `S2T0SZ` and `S2TG` (more than 16 concatenated tables, or
    /// a start level the input size does not reach).
    SteS2sl0Inconsistent => "ste-s2sl0-inconsistent", "S2SL0", "§5.2 S2SL0, DDI 0487 D8.2",
        "is inconsistent with S2T0SZ and S2TG (a start level the input size does not reach, or more than 16 concatenated tables)";
    /// `S2TTB` beyond the effective `S2PS` (capped by `IDR5.OAS`).
    SteS2ttbBeyondPs => "ste-s2ttb-beyond-s2ps", "S2TTB", "§5.2 S2TTB, §5.2 S2PS",
        "lies beyond the effective S2PS (capped by IDR5.OAS)";
    /// `S2TTB` beyond 48 bits with a 4KB/16KB granule and `S2DS` = 0.
    SteS2ttbBeyond48 => "ste-s2ttb-beyond-48-bits", "S2TTB", "§5.2 S2TTB",
        "lies beyond 48 bits with a 4KB or 16KB granule and S2DS = 0";
    /// `PRIVCFG` = 0b01 (reserved) where attribute overrides are used.
    StePrivcfg => "ste-privcfg-reserved", "PRIVCFG", "§5.2 PRIVCFG",
        "holds the reserved encoding 0b01 (IDR1.ATTR_PERMS_OVR = 1)";
    /// `INSTCFG` = 0b01 (reserved) where attribute overrides are used.
    SteInstcfg => "ste-instcfg-reserved", "INSTCFG", "§5.2 INSTCFG",
        "holds the reserved encoding 0b01 (IDR1.ATTR_PERMS_OVR = 1)";
    /// `AA64` selects a table format the SMMU does not support.
    CdAa64 => "cd-aa64-unsupported", "AA64", "§5.4 AA64",
        "selects a table format the SMMU does not support (IDR0.TTF)";
    /// `AA64` = 0 (AArch32) under StreamWorld NS-EL2-E2H.
    CdAa64E2h => "cd-aa64-aarch32-under-e2h", "AA64", "§5.4 AA64, §5.2 STRW",
        "selects AArch32 tables under StreamWorld NS-EL2-E2H";
    /// `HA`/`HD` without hardware updates.
    CdHa => "cd-ha-unsupported", "HA", "§5.4 HA",
        "asks for hardware access-flag updates the SMMU lacks (IDR0.HTTU)";
    /// `HD` with access-flag-only updates.
    CdHd => "cd-hd-unsupported", "HD", "§5.4 HD",
        "asks for hardware dirty-state updates the SMMU lacks (IDR0.HTTU)";
    /// `HAFT` = 1 with `HA` = 0 on an SMMU with table access-flag updates.
    CdHaft => "cd-haft-without-ha", "HAFT", "§5.4 HAFT",
        "enables table access-flag updates without HA (IDR0.HTTU = 0b11)";
    /// `A` = 0 on an SMMU whose `IDR0.TERM_MODEL` = 1.
    CdA => "cd-a-term-model", "A", "§5.4 A, §6.3.1 TERM_MODEL",
        "is 0 but the SMMU only aborts terminated transactions (IDR0.TERM_MODEL = 1)";
    /// `S` = 1 under an STE with `S1STALLD` = 1.
    CdSStallsDisabled => "cd-s-stalls-disabled", "S", "§5.4 S, §5.2 S1STALLD",
        "enables stalls that the STE disables (S1STALLD = 1)";
    /// `S` against the stall model.
    CdSStallModel => "cd-s-stall-model", "S", "§5.4 S",
        "contradicts the stall model (IDR0.STALL_MODEL: stalls unsupported or forced)";
    /// `ENDI` selects an endianness `IDR0.TTENDIAN` does not support.
    CdEndi => "cd-endi-unsupported", "ENDI", "§5.4 ENDI",
        "selects a table endianness the SMMU does not support (IDR0.TTENDIAN)";
    /// `TG0` selects a granule `IDR5` does not advertise.
    CdTg0 => "cd-tg0-unsupported", "TG0", "§5.4 TG0",
        "selects a granule the SMMU does not support (IDR5.GRAN4K/16K/64K)";
    /// `TG1` selects a granule `IDR5` does not advertise.
    CdTg1 => "cd-tg1-unsupported", "TG1", "§5.4 TG1",
        "selects a granule the SMMU does not support (IDR5.GRAN4K/16K/64K)";
    /// `T0SZ` out of range, SMMUv3.1 and later.
    CdT0sz => "cd-t0sz-out-of-range", "T0SZ", "§5.4 T0SZ",
        "is outside the range IDR5.VAX, IDR3.STT and the granule allow (ILLEGAL from SMMUv3.1)";
    /// `T0SZ` out of range on SMMUv3.0.
    CdT0szUnpredictable => "cd-t0sz-unpredictable", "T0SZ", "§5.4 T0SZ",
        "is outside the range IDR5.VAX, IDR3.STT and the granule allow (CONSTRAINED UNPREDICTABLE on SMMUv3.0: ILLEGAL or clamped)";
    /// `T1SZ` out of range, SMMUv3.1 and later.
    CdT1sz => "cd-t1sz-out-of-range", "T1SZ", "§5.4 T1SZ",
        "is outside the range IDR5.VAX, IDR3.STT and the granule allow (ILLEGAL from SMMUv3.1)";
    /// `T1SZ` out of range on SMMUv3.0.
    CdT1szUnpredictable => "cd-t1sz-unpredictable", "T1SZ", "§5.4 T1SZ",
        "is outside the range IDR5.VAX, IDR3.STT and the granule allow (CONSTRAINED UNPREDICTABLE on SMMUv3.0: ILLEGAL or clamped)";
    /// `TTB0` beyond the effective `IPS` (capped by `IDR5.OAS`).
    CdTtb0BeyondIps => "cd-ttb0-beyond-ips", "TTB0", "§5.4 TTB0, §5.4 IPS",
        "lies beyond the effective IPS (capped by IDR5.OAS)";
    /// `TTB0` beyond 48 bits with a 4KB/16KB granule and `DS` = 0.
    CdTtb0Beyond48 => "cd-ttb0-beyond-48-bits", "TTB0", "§5.4 TTB0",
        "lies beyond 48 bits with a 4KB or 16KB granule and DS = 0";
    /// `TTB1` beyond the effective `IPS`.
    CdTtb1BeyondIps => "cd-ttb1-beyond-ips", "TTB1", "§5.4 TTB1, §5.4 IPS",
        "lies beyond the effective IPS (capped by IDR5.OAS)";
    /// `TTB1` beyond 48 bits with a 4KB/16KB granule and `DS` = 0.
    CdTtb1Beyond48 => "cd-ttb1-beyond-48-bits", "TTB1", "§5.4 TTB1",
        "lies beyond 48 bits with a 4KB or 16KB granule and DS = 0";
}

/// The field that holds a live translation table base (SPEC K18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootKind {
    /// An STE's `S2TTB` (with its concatenated start tables).
    S2ttb,
    /// A CD's `TTB0`.
    Ttb0,
    /// A CD's `TTB1`.
    Ttb1,
}

impl RootKind {
    const fn name(self) -> &'static str {
        match self {
            RootKind::S2ttb => "the stage-2 start table (S2TTB, §5.2)",
            RootKind::Ttb0 => "the stage-1 start table (TTB0, §5.4)",
            RootKind::Ttb1 => "the stage-1 start table (TTB1, §5.4)",
        }
    }

    const fn holder(self) -> &'static str {
        match self {
            RootKind::S2ttb => "STE",
            RootKind::Ttb0 | RootKind::Ttb1 => "CD",
        }
    }
}

/// The starting-level table of a live translation regime (SPEC K18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Root {
    /// Which base field.
    pub kind: RootKind,
    /// The table's first byte (the base with the bits below its alignment cleared).
    pub base: u64,
    /// Bytes the walk may read at the starting level (all concatenated tables).
    pub bytes: u64,
    /// Address of the STE or CD that holds it (the first user of its tag).
    pub entry: u64,
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of the {} at {:#x}, at {:#x} ({:#x} bytes)",
            self.kind.name(),
            self.kind.holder(),
            self.entry,
            self.base,
            self.bytes
        )
    }
}

/// The code of a root of kind `r` overlapping a structure of kind `s`.
const fn root_overlap_code(r: RootKind, s: StructureKind) -> &'static str {
    match (r, s) {
        (RootKind::S2ttb, StructureKind::StreamTable) => "s2ttb-overlaps-stream-table",
        (RootKind::S2ttb, StructureKind::L2Table) => "s2ttb-overlaps-l2-table",
        (RootKind::S2ttb, StructureKind::CdTable) => "s2ttb-overlaps-cd-table",
        (RootKind::S2ttb, StructureKind::CdLeaf) => "s2ttb-overlaps-cd-leaf",
        (RootKind::Ttb0, StructureKind::StreamTable) => "ttb0-overlaps-stream-table",
        (RootKind::Ttb0, StructureKind::L2Table) => "ttb0-overlaps-l2-table",
        (RootKind::Ttb0, StructureKind::CdTable) => "ttb0-overlaps-cd-table",
        (RootKind::Ttb0, StructureKind::CdLeaf) => "ttb0-overlaps-cd-leaf",
        (RootKind::Ttb1, StructureKind::StreamTable) => "ttb1-overlaps-stream-table",
        (RootKind::Ttb1, StructureKind::L2Table) => "ttb1-overlaps-l2-table",
        (RootKind::Ttb1, StructureKind::CdTable) => "ttb1-overlaps-cd-table",
        (RootKind::Ttb1, StructureKind::CdLeaf) => "ttb1-overlaps-cd-leaf",
    }
}

/// A structure adoption trusts, named in an overlap refusal (SPEC K18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StructureKind {
    /// The linear stream table, or the level-1 stream table.
    StreamTable,
    /// A level-2 stream table (16 KiB).
    L2Table,
    /// A CD table: linear, or the level-1 CD table of a 2-level one.
    CdTable,
    /// A leaf CD table of a 2-level CD table.
    CdLeaf,
}

impl StructureKind {
    const fn name(self) -> &'static str {
        match self {
            StructureKind::StreamTable => "the stream table",
            StructureKind::L2Table => "the level-2 stream table",
            StructureKind::CdTable => "the CD table",
            StructureKind::CdLeaf => "the leaf CD table",
        }
    }

    const fn owner(self) -> &'static str {
        match self {
            StructureKind::StreamTable => "",
            StructureKind::L2Table => " of L1 descriptor ",
            StructureKind::CdTable | StructureKind::CdLeaf => " of StreamID ",
        }
    }

    const fn rank(self) -> u8 {
        match self {
            StructureKind::StreamTable => 0,
            StructureKind::L2Table => 1,
            StructureKind::CdTable => 2,
            StructureKind::CdLeaf => 3,
        }
    }
}

/// One structure: what it is, where, how big and whose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Structure {
    /// What it is.
    pub kind: StructureKind,
    /// Its first byte.
    pub base: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The L1 descriptor index of a level-2 table; the lowest StreamID using a CD table or
    /// leaf; 0 for the stream table.
    pub owner: u32,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.name())?;
        match self.kind {
            StructureKind::StreamTable => {}
            StructureKind::L2Table => write!(f, "{}{}", self.kind.owner(), self.owner)?,
            _ => write!(f, "{}{:#x}", self.kind.owner(), self.owner)?,
        }
        write!(f, " at {:#x} ({:#x} bytes)", self.base, self.bytes)
    }
}

/// The code of an overlap between structures of kinds `a` and `b` (in either order).
const fn overlap_code(a: StructureKind, b: StructureKind) -> &'static str {
    let (lo, hi) = if a.rank() <= b.rank() { (a, b) } else { (b, a) };
    match (lo, hi) {
        // One stream table: two of them never overlap each other; named for completeness.
        (StructureKind::StreamTable, StructureKind::StreamTable | StructureKind::L2Table) => {
            "l2-table-overlaps-stream-table"
        }
        (StructureKind::StreamTable, StructureKind::CdTable) => "cd-table-overlaps-stream-table",
        (StructureKind::StreamTable, StructureKind::CdLeaf) => "cd-leaf-overlaps-stream-table",
        (StructureKind::L2Table, StructureKind::L2Table) => "l2-tables-overlap",
        (StructureKind::L2Table, StructureKind::CdTable) => "cd-table-overlaps-l2-table",
        (StructureKind::L2Table, StructureKind::CdLeaf) => "cd-leaf-overlaps-l2-table",
        (StructureKind::CdTable, StructureKind::CdTable) => "cd-tables-overlap",
        (StructureKind::CdTable, StructureKind::CdLeaf) => "cd-leaf-overlaps-cd-table",
        _ => "cd-leaves-overlap",
    }
}

/// Every code [`Refusal::code`] can return, in declaration order.
const ALL_CODES: &[&str] = &[
    "not-crash-kernel",
    "smmu-disabled",
    "not-coherent",
    "service-failure",
    "e2h-mismatch",
    "reserved-format",
    "two-level-unsupported",
    "log2size-exceeds-sidsize",
    "bad-split",
    "log2size-below-split",
    "l1-too-large",
    "linear-too-large",
    "base-misaligned",
    "base-beyond-oas",
    "table-end-beyond-oas",
    "not-ram",
    "l1-bad-span",
    "l1-null-l2ptr",
    "l1-misaligned",
    "l1-beyond-oas",
    "ste-reserved",
    "vmid-zero",
    "vmid-out-of-range",
    "cd-table-null",
    "cd-max-exceeds-ssidsize",
    "cd-format-unsupported",
    "cd-table-misaligned",
    "cd-table-beyond-oas",
    "cd-leaf-null",
    "cd-leaf-misaligned",
    "cd-leaf-beyond-oas",
    "cd-reserved",
    "asid-zero",
    "asid-out-of-range",
    "asid-conflict",
    "vmid-conflict",
    "ste-strw-illegal",
    "ste-config-stage-unsupported",
    "ste-strw-el2-without-hyp",
    "ste-s1stalld-illegal",
    "ste-s2ha-unsupported",
    "ste-s2hd-unsupported",
    "ste-s2s-stall-model",
    "ste-eats-illegal",
    "ste-s2aa64-unsupported",
    "ste-s2endi-unsupported",
    "ste-s2tg-unsupported",
    "ste-s2t0sz-out-of-range",
    "ste-s2t0sz-unpredictable",
    "ste-s2sl0-reserved",
    "ste-s2sl0-needs-stt",
    "ste-s2sl0-needs-ds",
    "ste-s2sl0-inconsistent",
    "ste-s2ttb-beyond-s2ps",
    "ste-s2ttb-beyond-48-bits",
    "ste-privcfg-reserved",
    "ste-instcfg-reserved",
    "cd-aa64-unsupported",
    "cd-aa64-aarch32-under-e2h",
    "cd-ha-unsupported",
    "cd-hd-unsupported",
    "cd-haft-without-ha",
    "cd-a-term-model",
    "cd-s-stalls-disabled",
    "cd-s-stall-model",
    "cd-endi-unsupported",
    "cd-tg0-unsupported",
    "cd-tg1-unsupported",
    "cd-t0sz-out-of-range",
    "cd-t0sz-unpredictable",
    "cd-t1sz-out-of-range",
    "cd-t1sz-unpredictable",
    "cd-ttb0-beyond-ips",
    "cd-ttb0-beyond-48-bits",
    "cd-ttb1-beyond-ips",
    "cd-ttb1-beyond-48-bits",
    "l2-table-overlaps-stream-table",
    "cd-table-overlaps-stream-table",
    "cd-leaf-overlaps-stream-table",
    "l2-tables-overlap",
    "cd-table-overlaps-l2-table",
    "cd-leaf-overlaps-l2-table",
    "cd-tables-overlap",
    "cd-leaf-overlaps-cd-table",
    "cd-leaves-overlap",
    "s2ttb-overlaps-stream-table",
    "s2ttb-overlaps-l2-table",
    "s2ttb-overlaps-cd-table",
    "s2ttb-overlaps-cd-leaf",
    "ttb0-overlaps-stream-table",
    "ttb0-overlaps-l2-table",
    "ttb0-overlaps-cd-table",
    "ttb0-overlaps-cd-leaf",
    "ttb1-overlaps-stream-table",
    "ttb1-overlaps-l2-table",
    "ttb1-overlaps-cd-table",
    "ttb1-overlaps-cd-leaf",
    "asid-alias",
    "vmid-alias",
    "scan-budget-exceeded",
    "too-many-structures",
    "scratch-too-small",
    "memory-unreadable",
];

/// Every refusal code, in declaration order (for `smmuctl` and documentation).
pub fn all_codes() -> &'static [&'static str] {
    ALL_CODES
}

impl Refusal {
    /// The stable, kebab-case code of the refusal.
    pub const fn code(&self) -> &'static str {
        match self {
            Refusal::NotCrashKernel => "not-crash-kernel",
            Refusal::SmmuDisabled { .. } => "smmu-disabled",
            Refusal::NotCoherent => "not-coherent",
            Refusal::ServiceFailure { .. } => "service-failure",
            Refusal::E2hMismatch { .. } => "e2h-mismatch",
            Refusal::ReservedFormat { .. } => "reserved-format",
            Refusal::TwoLevelUnsupported => "two-level-unsupported",
            Refusal::Log2SizeExceedsSidSize { .. } => "log2size-exceeds-sidsize",
            Refusal::BadSplit { .. } => "bad-split",
            Refusal::Log2SizeBelowSplit { .. } => "log2size-below-split",
            Refusal::L1TooLarge { .. } => "l1-too-large",
            Refusal::LinearTooLarge { .. } => "linear-too-large",
            Refusal::BaseMisaligned { .. } => "base-misaligned",
            Refusal::BaseBeyondOas { .. } => "base-beyond-oas",
            Refusal::TableEndBeyondOas { .. } => "table-end-beyond-oas",
            Refusal::NotRam { .. } => "not-ram",
            Refusal::L1BadSpan { .. } => "l1-bad-span",
            Refusal::L1NullL2Ptr { .. } => "l1-null-l2ptr",
            Refusal::L1Misaligned { .. } => "l1-misaligned",
            Refusal::L1BeyondOas { .. } => "l1-beyond-oas",
            Refusal::SteReserved { .. } => "ste-reserved",
            Refusal::VmidZero { .. } => "vmid-zero",
            Refusal::VmidOutOfRange { .. } => "vmid-out-of-range",
            Refusal::CdTableNull { .. } => "cd-table-null",
            Refusal::CdMaxExceedsSsidSize { .. } => "cd-max-exceeds-ssidsize",
            Refusal::CdFormatUnsupported { .. } => "cd-format-unsupported",
            Refusal::CdTableMisaligned { .. } => "cd-table-misaligned",
            Refusal::CdTableBeyondOas { .. } => "cd-table-beyond-oas",
            Refusal::CdLeafNull { .. } => "cd-leaf-null",
            Refusal::CdLeafMisaligned { .. } => "cd-leaf-misaligned",
            Refusal::CdLeafBeyondOas { .. } => "cd-leaf-beyond-oas",
            Refusal::CdReserved { .. } => "cd-reserved",
            Refusal::AsidZero { .. } => "asid-zero",
            Refusal::AsidOutOfRange { .. } => "asid-out-of-range",
            Refusal::AsidConflict { .. } => "asid-conflict",
            Refusal::VmidConflict { .. } => "vmid-conflict",
            Refusal::SteStrwIllegal { .. } => "ste-strw-illegal",
            Refusal::SteIllegal { rule, .. } | Refusal::CdIllegal { rule, .. } => rule.code(),
            Refusal::StructuresOverlap { first, second } => overlap_code(first.kind, second.kind),
            Refusal::RootOverlaps { root, structure } => {
                root_overlap_code(root.kind, structure.kind)
            }
            Refusal::AsidAlias { .. } => "asid-alias",
            Refusal::VmidAlias { .. } => "vmid-alias",
            Refusal::ScanBudgetExceeded { .. } => "scan-budget-exceeded",
            Refusal::TooManyStructures { .. } => "too-many-structures",
            Refusal::ScratchTooSmall { .. } => "scratch-too-small",
            Refusal::MemoryUnreadable { .. } => "memory-unreadable",
        }
    }

    /// The same refusal with the level-1 descriptor index filled in (K3 refusals from
    /// [`validate_l1`](crate::validate_l1) do not know it); other refusals are unchanged.
    pub const fn with_l1_index(self, i: u32) -> Refusal {
        match self {
            Refusal::L1BadSpan { desc, .. } => Refusal::L1BadSpan {
                index: Some(i),
                desc,
            },
            Refusal::L1NullL2Ptr { desc, .. } => Refusal::L1NullL2Ptr {
                index: Some(i),
                desc,
            },
            Refusal::L1Misaligned { l2ptr, .. } => Refusal::L1Misaligned {
                index: Some(i),
                l2ptr,
            },
            Refusal::L1BeyondOas {
                l2ptr, oas_bits, ..
            } => Refusal::L1BeyondOas {
                index: Some(i),
                l2ptr,
                oas_bits,
            },
            other => other,
        }
    }
}

/// Writes "L1 descriptor 5" or "an L1 descriptor".
struct L1Name(Option<u32>);

impl fmt::Display for L1Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, "L1 stream table descriptor {i}"),
            None => f.write_str("an L1 stream table descriptor"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::NotCrashKernel => f.write_str("not a crash kernel (K1)"),
            Refusal::SmmuDisabled { cr0 } => {
                write!(f, "CR0.SMMUEN is 0 (CR0 = {cr0:#x}): nothing to adopt (K1)")
            }
            Refusal::NotCoherent => f.write_str(
                "the SMMU is not coherent and the platform has no cache maintenance (K1, K17)",
            ),
            Refusal::ServiceFailure { gerror, gerrorn } => write!(
                f,
                "SFM_ERR is active (GERROR = {gerror:#x}, GERRORN = {gerrorn:#x}): \
                 the SMMU is in Service Failure Mode (K1)"
            ),
            Refusal::E2hMismatch { found, expected } => write!(
                f,
                "CR2.E2H reads {} but the platform expects {} (K13)",
                u8::from(found),
                u8::from(expected)
            ),
            Refusal::ReservedFormat { fmt } => {
                write!(f, "STRTAB_BASE_CFG.FMT = {fmt:#b} is reserved (K2)")
            }
            Refusal::TwoLevelUnsupported => f.write_str(
                "a 2-level stream table on an SMMU without 2-level support (IDR0.ST_LEVEL) (K2)",
            ),
            Refusal::Log2SizeExceedsSidSize { log2size, sid_bits } => write!(
                f,
                "STRTAB_BASE_CFG.LOG2SIZE = {log2size} exceeds IDR1.SIDSIZE = {sid_bits} (K2)"
            ),
            Refusal::BadSplit { split } => {
                write!(f, "STRTAB_BASE_CFG.SPLIT = {split}, only 8 is adopted (K2)")
            }
            Refusal::Log2SizeBelowSplit { log2size, split } => write!(
                f,
                "STRTAB_BASE_CFG.LOG2SIZE = {log2size} is below SPLIT = {split} (K2)"
            ),
            Refusal::L1TooLarge { log2size, split } => write!(
                f,
                "LOG2SIZE {log2size} - SPLIT {split} exceeds 17: more than 2^17 L1 descriptors (K2)"
            ),
            Refusal::LinearTooLarge { log2size, max } => write!(
                f,
                "linear STRTAB_BASE_CFG.LOG2SIZE = {log2size} exceeds {max} (K2)"
            ),
            Refusal::BaseMisaligned { base, align } => write!(
                f,
                "STRTAB_BASE {base:#x} is not aligned to the table size ({align:#x} bytes) (K2)"
            ),
            Refusal::BaseBeyondOas { base, oas_bits } => write!(
                f,
                "STRTAB_BASE {base:#x} is beyond the {oas_bits}-bit output address size (K2)"
            ),
            Refusal::TableEndBeyondOas {
                base,
                bytes,
                oas_bits,
            } => write!(
                f,
                "the stream table at {base:#x} ({bytes:#x} bytes) ends beyond the \
                 {oas_bits}-bit output address size (K2)"
            ),
            Refusal::NotRam { base, bytes } => write!(
                f,
                "the stream table at {base:#x} ({bytes:#x} bytes) is not RAM (K2)"
            ),
            Refusal::L1BadSpan { index, desc } => write!(
                f,
                "{} ({desc:#x}) has Span {}, only 0 or 9 is adopted (K3)",
                L1Name(index),
                l1std::fields::SPAN.get(&[desc])
            ),
            Refusal::L1NullL2Ptr { index, desc } => write!(
                f,
                "{} ({desc:#x}) is valid with a null L2Ptr (K3)",
                L1Name(index)
            ),
            Refusal::L1Misaligned { index, l2ptr } => write!(
                f,
                "{} points at {l2ptr:#x}, not 16 KiB aligned (K3)",
                L1Name(index)
            ),
            Refusal::L1BeyondOas {
                index,
                l2ptr,
                oas_bits,
            } => write!(
                f,
                "{} points at {l2ptr:#x}, beyond the {oas_bits}-bit output address size (K3)",
                L1Name(index)
            ),
            Refusal::SteReserved { sid, error } => {
                write!(f, "STE of StreamID {sid:#x}: {error} (K14)")
            }
            Refusal::VmidZero { sid } => {
                write!(
                    f,
                    "STE of StreamID {sid:#x} translates at stage 2 with VMID 0 (K14)"
                )
            }
            Refusal::VmidOutOfRange { sid, vmid, bits } => write!(
                f,
                "STE of StreamID {sid:#x} has VMID {vmid:#x}, wider than {bits} bits (K14)"
            ),
            Refusal::CdTableNull { sid } => write!(
                f,
                "STE of StreamID {sid:#x} translates at stage 1 with a null S1ContextPtr (K14)"
            ),
            Refusal::CdMaxExceedsSsidSize {
                sid,
                cd_max,
                ssid_bits,
            } => write!(
                f,
                "STE of StreamID {sid:#x} has S1CDMax {cd_max} > IDR1.SSIDSIZE {ssid_bits} (K14)"
            ),
            Refusal::CdFormatUnsupported { sid, fmt } => write!(
                f,
                "STE of StreamID {sid:#x} has S1Fmt {fmt:#b}, not supported by this SMMU (K14)"
            ),
            Refusal::CdTableMisaligned { sid, ptr, align } => write!(
                f,
                "STE of StreamID {sid:#x}: CD table {ptr:#x} is not aligned to {align:#x} (K14)"
            ),
            Refusal::CdTableBeyondOas {
                sid,
                ptr,
                bytes,
                oas_bits,
            } => write!(
                f,
                "STE of StreamID {sid:#x}: CD table {ptr:#x} ({bytes:#x} bytes) reaches beyond \
                 the {oas_bits}-bit output address size (K14)"
            ),
            Refusal::CdLeafNull { sid, l1_index } => write!(
                f,
                "StreamID {sid:#x}: L1 CD descriptor {l1_index} is valid with a null L2Ptr (K14)"
            ),
            Refusal::CdLeafMisaligned {
                sid,
                l1_index,
                ptr,
                align,
            } => write!(
                f,
                "StreamID {sid:#x}: L1 CD descriptor {l1_index} points at {ptr:#x}, not aligned \
                 to {align:#x} (K14)"
            ),
            Refusal::CdLeafBeyondOas {
                sid,
                l1_index,
                ptr,
                oas_bits,
            } => write!(
                f,
                "StreamID {sid:#x}: L1 CD descriptor {l1_index} points at {ptr:#x}, beyond the \
                 {oas_bits}-bit output address size (K14)"
            ),
            Refusal::CdReserved { sid, ssid, error } => {
                write!(f, "CD {ssid} of StreamID {sid:#x}: {error} (K14)")
            }
            Refusal::AsidZero { sid, ssid } => {
                write!(
                    f,
                    "CD {ssid} of StreamID {sid:#x} is valid with ASID 0 (K14)"
                )
            }
            Refusal::AsidOutOfRange {
                sid,
                ssid,
                asid,
                bits,
            } => write!(
                f,
                "CD {ssid} of StreamID {sid:#x} has ASID {asid:#x}, wider than {bits} bits (K14)"
            ),
            Refusal::AsidConflict { sid, ssid, asid } => write!(
                f,
                "ASID {asid:#x} of CD {ssid} of StreamID {sid:#x} could not be reserved (K14)"
            ),
            Refusal::VmidConflict { sid, vmid } => write!(
                f,
                "VMID {vmid:#x} of StreamID {sid:#x} could not be reserved (K14)"
            ),
            Refusal::SteStrwIllegal { sid, strw } => write!(
                f,
                "stage-1 STE of StreamID {sid:#x} has STRW {strw:#04b}, reserved and illegal \
                 for a Non-secure stream (K21)"
            ),
            Refusal::SteIllegal { sid, rule, value } => write!(
                f,
                "STE of StreamID {sid:#x}: {} = {value:#x} {} ({}; K21)",
                rule.field(),
                rule.words(),
                rule.section()
            ),
            Refusal::CdIllegal {
                sid,
                ssid,
                rule,
                value,
            } => write!(
                f,
                "CD {ssid} of StreamID {sid:#x}: {} = {value:#x} {} ({}; K21)",
                rule.field(),
                rule.words(),
                rule.section()
            ),
            Refusal::StructuresOverlap { first, second } => write!(
                f,
                "{second} overlaps {first}: a write to one would change the other (K18)"
            ),
            Refusal::RootOverlaps { root, structure } => write!(
                f,
                "{root} overlaps {structure}: the crash kernel's writes to it would become \
                 live translation table descriptors (K18)"
            ),
            Refusal::AsidAlias {
                sid,
                ssid,
                asid,
                first_cd,
            } => write!(
                f,
                "ASID {asid:#x} of CD {ssid} of StreamID {sid:#x} also names the different \
                 address space of the CD at {first_cd:#x} (K19)"
            ),
            Refusal::VmidAlias {
                sid,
                vmid,
                first_ste,
            } => write!(
                f,
                "VMID {vmid:#x} of StreamID {sid:#x} also names the different stage-2 \
                 configuration of the STE at {first_ste:#x} (K19)"
            ),
            Refusal::ScanBudgetExceeded { sid, budget } => write!(
                f,
                "the CD table of StreamID {sid:#x} would take the scan beyond its budget of \
                 {budget} CDs (K20)"
            ),
            Refusal::TooManyStructures { max } => write!(
                f,
                "more than about {max} distinct CD tables and leaves to keep track of (K15, K18)"
            ),
            Refusal::ScratchTooSmall { needed, given } => write!(
                f,
                "the scan needs {needed} scratch slots, {given} were given (K15)"
            ),
            Refusal::MemoryUnreadable { pa, len } => write!(
                f,
                "could not read {len:#x} bytes of the crashed kernel's tables at {pa:#x}"
            ),
        }
    }
}

impl core::error::Error for Refusal {}

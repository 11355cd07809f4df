//! STE, the Stream Table Entry (IHI 0070 G.b §5.2).
//!
//! [`SteConfig`] is the typed view of an entry: what the driver builds and what a decoder
//! (the CLI, crash-kernel adoption) recovers from memory. [`fields`] holds the bit positions.

use super::entry::{encoded_enum, words_struct, AddressSize, Cacheability, Granule, Shareability};
use super::field::Field;
use super::DecodeError;

/// Bit positions of every STE field (IHI 0070 G.b §5.2).
pub mod fields {
    use super::Field;

    /// `VTCR` (STE bits \[178:160\]): the stage-2 translation controls as one field.
    pub const VTCR: Field = Field::new("VTCR", 2, 50, 32);

    /// `V` (IHI 0070 G.b §5.2).
    pub const V: Field = Field::new("V", 0, 0, 0);
    /// `Config` (IHI 0070 G.b §5.2).
    pub const CONFIG: Field = Field::new("Config", 0, 3, 1);
    /// `S1Fmt` (IHI 0070 G.b §5.2).
    pub const S1FMT: Field = Field::new("S1Fmt", 0, 5, 4);
    /// `S1ContextPtr` (IHI 0070 G.b §5.2).
    pub const S1_CONTEXT_PTR: Field = Field::address("S1ContextPtr", 0, 55, 6);
    /// `S1CDMax` (IHI 0070 G.b §5.2).
    pub const S1_CD_MAX: Field = Field::new("S1CDMax", 0, 63, 59);
    /// `S1DSS` (IHI 0070 G.b §5.2).
    pub const S1DSS: Field = Field::new("S1DSS", 1, 1, 0);
    /// `S1CIR` (IHI 0070 G.b §5.2).
    pub const S1CIR: Field = Field::new("S1CIR", 1, 3, 2);
    /// `S1COR` (IHI 0070 G.b §5.2).
    pub const S1COR: Field = Field::new("S1COR", 1, 5, 4);
    /// `S1CSH` (IHI 0070 G.b §5.2).
    pub const S1CSH: Field = Field::new("S1CSH", 1, 7, 6);
    /// `S2HWU59` (IHI 0070 G.b §5.2).
    pub const S2HWU59: Field = Field::new("S2HWU59", 1, 8, 8);
    /// `S2HWU60` (IHI 0070 G.b §5.2).
    pub const S2HWU60: Field = Field::new("S2HWU60", 1, 9, 9);
    /// `S2HWU61` (IHI 0070 G.b §5.2).
    pub const S2HWU61: Field = Field::new("S2HWU61", 1, 10, 10);
    /// `S2HWU62` (IHI 0070 G.b §5.2).
    pub const S2HWU62: Field = Field::new("S2HWU62", 1, 11, 11);
    /// `DRE` (IHI 0070 G.b §5.2).
    pub const DRE: Field = Field::new("DRE", 1, 12, 12);
    /// `CONT` (IHI 0070 G.b §5.2).
    pub const CONT: Field = Field::new("CONT", 1, 16, 13);
    /// `DCP` (IHI 0070 G.b §5.2).
    pub const DCP: Field = Field::new("DCP", 1, 17, 17);
    /// `PPAR` (IHI 0070 G.b §5.2).
    pub const PPAR: Field = Field::new("PPAR", 1, 18, 18);
    /// `MEV` (IHI 0070 G.b §5.2).
    pub const MEV: Field = Field::new("MEV", 1, 19, 19);
    /// `SW_RESERVED` (IHI 0070 G.b §5.2).
    pub const SW_RESERVED: Field = Field::new("SW_RESERVED", 1, 23, 20);
    /// `S1PIE` (IHI 0070 G.b §5.2).
    pub const S1PIE: Field = Field::new("S1PIE", 1, 24, 24);
    /// `S2FWB` (IHI 0070 G.b §5.2).
    pub const S2FWB: Field = Field::new("S2FWB", 1, 25, 25);
    /// `S1MPAM` (IHI 0070 G.b §5.2).
    pub const S1MPAM: Field = Field::new("S1MPAM", 1, 26, 26);
    /// `S1STALLD` (IHI 0070 G.b §5.2).
    pub const S1STALLD: Field = Field::new("S1STALLD", 1, 27, 27);
    /// `EATS` (IHI 0070 G.b §5.2).
    pub const EATS: Field = Field::new("EATS", 1, 29, 28);
    /// `STRW` (IHI 0070 G.b §5.2).
    pub const STRW: Field = Field::new("STRW", 1, 31, 30);
    /// `MemAttr` (IHI 0070 G.b §5.2).
    pub const MEMATTR: Field = Field::new("MemAttr", 1, 35, 32);
    /// `MTCFG` (IHI 0070 G.b §5.2).
    pub const MTCFG: Field = Field::new("MTCFG", 1, 36, 36);
    /// `ALLOCCFG` (IHI 0070 G.b §5.2).
    pub const ALLOCCFG: Field = Field::new("ALLOCCFG", 1, 40, 37);
    /// `SHCFG` (IHI 0070 G.b §5.2).
    pub const SHCFG: Field = Field::new("SHCFG", 1, 45, 44);
    /// `NSCFG` (IHI 0070 G.b §5.2).
    pub const NSCFG: Field = Field::new("NSCFG", 1, 47, 46);
    /// `PRIVCFG` (IHI 0070 G.b §5.2).
    pub const PRIVCFG: Field = Field::new("PRIVCFG", 1, 49, 48);
    /// `INSTCFG` (IHI 0070 G.b §5.2).
    pub const INSTCFG: Field = Field::new("INSTCFG", 1, 51, 50);
    /// `IMPLEMENTATION_DEFINED_0` (IHI 0070 G.b §5.2).
    pub const IMPLEMENTATION_DEFINED_0: Field = Field::new("IMPLEMENTATION_DEFINED_0", 1, 63, 52);
    /// `S2VMID` (IHI 0070 G.b §5.2).
    pub const S2VMID: Field = Field::new("S2VMID", 2, 15, 0);
    /// `IMPLEMENTATION_DEFINED_1` (IHI 0070 G.b §5.2).
    pub const IMPLEMENTATION_DEFINED_1: Field = Field::new("IMPLEMENTATION_DEFINED_1", 2, 31, 16);
    /// `S2T0SZ` (IHI 0070 G.b §5.2).
    pub const S2T0SZ: Field = Field::new("S2T0SZ", 2, 37, 32);
    /// `S2SL0` (IHI 0070 G.b §5.2).
    pub const S2SL0: Field = Field::new("S2SL0", 2, 39, 38);
    /// `S2IR0` (IHI 0070 G.b §5.2).
    pub const S2IR0: Field = Field::new("S2IR0", 2, 41, 40);
    /// `S2OR0` (IHI 0070 G.b §5.2).
    pub const S2OR0: Field = Field::new("S2OR0", 2, 43, 42);
    /// `S2SH0` (IHI 0070 G.b §5.2).
    pub const S2SH0: Field = Field::new("S2SH0", 2, 45, 44);
    /// `S2TG` (IHI 0070 G.b §5.2).
    pub const S2TG: Field = Field::new("S2TG", 2, 47, 46);
    /// `S2PS` (IHI 0070 G.b §5.2).
    pub const S2PS: Field = Field::new("S2PS", 2, 50, 48);
    /// `S2AA64` (IHI 0070 G.b §5.2).
    pub const S2AA64: Field = Field::new("S2AA64", 2, 51, 51);
    /// `S2ENDI` (IHI 0070 G.b §5.2).
    pub const S2ENDI: Field = Field::new("S2ENDI", 2, 52, 52);
    /// `S2AFFD` (IHI 0070 G.b §5.2).
    pub const S2AFFD: Field = Field::new("S2AFFD", 2, 53, 53);
    /// `S2PTW` (IHI 0070 G.b §5.2).
    pub const S2PTW: Field = Field::new("S2PTW", 2, 54, 54);
    /// `S2HD` (IHI 0070 G.b §5.2).
    pub const S2HD: Field = Field::new("S2HD", 2, 55, 55);
    /// `S2HA` (IHI 0070 G.b §5.2).
    pub const S2HA: Field = Field::new("S2HA", 2, 56, 56);
    /// `S2S` (IHI 0070 G.b §5.2).
    pub const S2S: Field = Field::new("S2S", 2, 57, 57);
    /// `S2R` (IHI 0070 G.b §5.2).
    pub const S2R: Field = Field::new("S2R", 2, 58, 58);
    /// `S2HAFT` (IHI 0070 G.b §5.2).
    pub const S2HAFT: Field = Field::new("S2HAFT", 2, 59, 59);
    /// `S2PIE` (IHI 0070 G.b §5.2).
    pub const S2PIE: Field = Field::new("S2PIE", 2, 60, 60);
    /// `S2POE` (IHI 0070 G.b §5.2).
    pub const S2POE: Field = Field::new("S2POE", 2, 61, 61);
    /// `DPT_VMATCH` (IHI 0070 G.b §5.2).
    pub const DPT_VMATCH: Field = Field::new("DPT_VMATCH", 2, 63, 62);
    /// `S2NSW` (IHI 0070 G.b §5.2).
    pub const S2NSW: Field = Field::new("S2NSW", 3, 0, 0);
    /// `S2NSA` (IHI 0070 G.b §5.2).
    pub const S2NSA: Field = Field::new("S2NSA", 3, 1, 1);
    /// `S2SL0_2` (IHI 0070 G.b §5.2).
    pub const S2SL0_2: Field = Field::new("S2SL0_2", 3, 2, 2);
    /// `S2DS` (IHI 0070 G.b §5.2).
    pub const S2DS: Field = Field::new("S2DS", 3, 3, 3);
    /// `S2TTB` (IHI 0070 G.b §5.2).
    pub const S2TTB: Field = Field::address("S2TTB", 3, 55, 4);
    /// `S2SKL` (IHI 0070 G.b §5.2).
    pub const S2SKL: Field = Field::new("S2SKL", 3, 62, 61);
    /// `IMPLEMENTATION_DEFINED_2` (IHI 0070 G.b §5.2).
    pub const IMPLEMENTATION_DEFINED_2: Field = Field::new("IMPLEMENTATION_DEFINED_2", 4, 15, 0);
    /// `PARTID` (IHI 0070 G.b §5.2).
    pub const PARTID: Field = Field::new("PARTID", 4, 31, 16);
    /// `S_S2T0SZ` (IHI 0070 G.b §5.2).
    pub const S_S2T0SZ: Field = Field::new("S_S2T0SZ", 4, 37, 32);
    /// `S_S2SL0` (IHI 0070 G.b §5.2).
    pub const S_S2SL0: Field = Field::new("S_S2SL0", 4, 39, 38);
    /// `S_S2TG` (IHI 0070 G.b §5.2).
    pub const S_S2TG: Field = Field::new("S_S2TG", 4, 47, 46);
    /// `MECID` (IHI 0070 G.b §5.2).
    pub const MECID: Field = Field::new("MECID", 4, 63, 48);
    /// `PMG` (IHI 0070 G.b §5.2).
    pub const PMG: Field = Field::new("PMG", 5, 7, 0);
    /// `MPAM_NS` (IHI 0070 G.b §5.2).
    pub const MPAM_NS: Field = Field::new("MPAM_NS", 5, 8, 8);
    /// `AssuredOnly` (IHI 0070 G.b §5.2).
    pub const ASSUREDONLY: Field = Field::new("AssuredOnly", 5, 9, 9);
    /// `TL0` (IHI 0070 G.b §5.2).
    pub const TL0: Field = Field::new("TL0", 5, 10, 10);
    /// `TL1` (IHI 0070 G.b §5.2).
    pub const TL1: Field = Field::new("TL1", 5, 11, 11);
    /// `VMSPtr` (IHI 0070 G.b §5.2).
    pub const VMSPTR: Field = Field::address("VMSPtr", 5, 55, 12);
    /// `S2SW` (IHI 0070 G.b §5.2).
    pub const S2SW: Field = Field::new("S2SW", 6, 0, 0);
    /// `S2SA` (IHI 0070 G.b §5.2).
    pub const S2SA: Field = Field::new("S2SA", 6, 1, 1);
    /// `S_S2SL0_2` (IHI 0070 G.b §5.2).
    pub const S_S2SL0_2: Field = Field::new("S_S2SL0_2", 6, 2, 2);
    /// `S_S2TTB` (IHI 0070 G.b §5.2).
    pub const S_S2TTB: Field = Field::address("S_S2TTB", 6, 55, 4);
    /// `S_S2SKL` (IHI 0070 G.b §5.2).
    pub const S_S2SKL: Field = Field::new("S_S2SKL", 6, 62, 61);
    /// `S2POI` (IHI 0070 G.b §5.2).
    pub const S2POI: Field = Field::new("S2POI", 7, 63, 0);

    /// Every field, in specification order (lowest bit first).
    pub const FIELDS: &[Field] = &[
        V,
        CONFIG,
        S1FMT,
        S1_CONTEXT_PTR,
        S1_CD_MAX,
        S1DSS,
        S1CIR,
        S1COR,
        S1CSH,
        S2HWU59,
        S2HWU60,
        S2HWU61,
        S2HWU62,
        DRE,
        CONT,
        DCP,
        PPAR,
        MEV,
        SW_RESERVED,
        S1PIE,
        S2FWB,
        S1MPAM,
        S1STALLD,
        EATS,
        STRW,
        MEMATTR,
        MTCFG,
        ALLOCCFG,
        SHCFG,
        NSCFG,
        PRIVCFG,
        INSTCFG,
        IMPLEMENTATION_DEFINED_0,
        S2VMID,
        IMPLEMENTATION_DEFINED_1,
        S2T0SZ,
        S2SL0,
        S2IR0,
        S2OR0,
        S2SH0,
        S2TG,
        S2PS,
        S2AA64,
        S2ENDI,
        S2AFFD,
        S2PTW,
        S2HD,
        S2HA,
        S2S,
        S2R,
        S2HAFT,
        S2PIE,
        S2POE,
        DPT_VMATCH,
        S2NSW,
        S2NSA,
        S2SL0_2,
        S2DS,
        S2TTB,
        S2SKL,
        IMPLEMENTATION_DEFINED_2,
        PARTID,
        S_S2T0SZ,
        S_S2SL0,
        S_S2TG,
        MECID,
        PMG,
        MPAM_NS,
        ASSUREDONLY,
        TL0,
        TL1,
        VMSPTR,
        S2SW,
        S2SA,
        S_S2SL0_2,
        S_S2TTB,
        S_S2SKL,
        S2POI,
    ];
}

words_struct! {
    /// A Stream Table Entry: 64 bytes, eight little-endian words (§5.2).
    Ste, 8
}

encoded_enum! {
    /// `STE.Config` (§5.2): what the stream does with its transactions.
    SteKind in "STE" . "Config" {
        /// `0b000`: every transaction aborts (no event).
        Abort = 0b000 => "abort",
        /// `0b100`: both stages bypassed.
        Bypass = 0b100 => "bypass",
        /// `0b101`: stage 1 translates, stage 2 bypassed.
        Stage1 = 0b101 => "stage 1 translate, stage 2 bypass",
        /// `0b110`: stage 1 bypassed, stage 2 translates.
        Stage2 = 0b110 => "stage 1 bypass, stage 2 translate",
        /// `0b111`: both stages translate (nested).
        Nested = 0b111 => "stage 1 and stage 2 translate (nested)",
    }
}

encoded_enum! {
    /// `STE.S1Fmt` (§5.2): layout of the context-descriptor table.
    S1Fmt in "STE" . "S1Fmt" {
        /// A linear array of CDs.
        Linear = 0b00 => "linear CD table",
        /// Two levels, 4 KiB leaf tables (64 CDs each).
        TwoLevel4K = 0b01 => "2-level CD table, 4KB leaves",
        /// Two levels, 64 KiB leaf tables (1024 CDs each).
        TwoLevel64K = 0b10 => "2-level CD table, 64KB leaves",
    }
}

encoded_enum! {
    /// `STE.S1DSS` (§5.2): what a transaction without a SubstreamID does.
    S1Dss in "STE" . "S1DSS" {
        /// Terminate (abort, with event).
        Terminate = 0b00 => "terminate",
        /// Bypass stage 1.
        Bypass = 0b01 => "bypass stage 1",
        /// Use CD 0 (SubstreamID 0 then belongs to the no-SubstreamID traffic).
        Substream0 = 0b10 => "use substream 0",
    }
}

encoded_enum! {
    /// `STE.EATS` (§5.2): whether ATS translation requests are allowed.
    Eats in "STE" . "EATS" {
        /// ATS requests are aborted.
        Abort = 0b00 => "ATS disabled",
        /// Full ATS: the SMMU translates both stages for the ATC.
        Full = 0b01 => "full ATS",
        /// Split-stage ATS: the ATC caches stage 1, stage 2 is checked on the translated access.
        SplitStage = 0b10 => "split-stage ATS",
        /// Full ATS with DPT checks (needs `SMMU_IDR3.DPT`).
        FullDpt = 0b11 => "full ATS with DPT checks",
    }
}

encoded_enum! {
    /// `STE.STRW` (§5.2): the translation regime (StreamWorld) of stage 1.
    Strw in "STE" . "STRW" {
        /// Non-secure EL1 (or Secure EL1 for a Secure stream).
        El1 = 0b00 => "EL1",
        /// EL3 (Secure streams only).
        El3 = 0b01 => "EL3",
        /// EL2, or EL2-E2H when `SMMU_CR2.E2H` is set.
        El2 = 0b10 => "EL2",
    }
}

encoded_enum! {
    /// `STE.SHCFG` (§5.2): shareability override of bypassed or stage-1-only streams.
    ShCfg in "STE" . "SHCFG" {
        /// Non-shareable.
        NonShareable = 0b00 => "non-shareable",
        /// Use the incoming shareability.
        Incoming = 0b01 => "use incoming",
        /// Outer Shareable.
        Outer = 0b10 => "outer shareable",
        /// Inner Shareable.
        Inner = 0b11 => "inner shareable",
    }
}

/// Attribute overrides applied to a stream's transactions (STE bits \[115:96\]; §5.2, §13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct StreamAttrs {
    /// `MemAttr` (4 bits, the stage-2 MemAttr encoding), used when `mtcfg` is set.
    pub mem_attr: u8,
    /// `MTCFG`: override the memory type with `mem_attr`.
    pub mtcfg: bool,
    /// `ALLOCCFG` (4 bits): allocation-hint override.
    pub alloc_cfg: u8,
    /// `SHCFG`: shareability override.
    pub sh_cfg: ShCfg,
    /// `NSCFG` (2 bits): security override (Secure streams).
    pub ns_cfg: u8,
    /// `PRIVCFG` (2 bits): privilege override.
    pub priv_cfg: u8,
    /// `INSTCFG` (2 bits): instruction/data override.
    pub inst_cfg: u8,
}

impl StreamAttrs {
    /// Every field zero: what an abort STE carries (the fields are unused there).
    pub const NONE: StreamAttrs = StreamAttrs {
        mem_attr: 0,
        mtcfg: false,
        alloc_cfg: 0,
        sh_cfg: ShCfg::NonShareable,
        ns_cfg: 0,
        priv_cfg: 0,
        inst_cfg: 0,
    };

    /// Every override at "use incoming": what Linux programs for bypass when
    /// `SMMU_IDR1.ATTR_TYPES_OVR` is set.
    pub const INCOMING: StreamAttrs = StreamAttrs {
        mem_attr: 0,
        mtcfg: false,
        alloc_cfg: 0,
        sh_cfg: ShCfg::Incoming,
        ns_cfg: 0,
        priv_cfg: 0,
        inst_cfg: 0,
    };
}

/// Stage-1 controls: where the stream's context descriptors are (§5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Stage1Ste {
    /// `S1ContextPtr`: physical address of the CD table (bits \[55:6\], 64-byte aligned).
    pub context_ptr: u64,
    /// `S1Fmt`.
    pub fmt: S1Fmt,
    /// `S1CDMax`: log2 of the number of CDs (0 = one CD, no SubstreamIDs).
    pub cd_max: u8,
    /// `S1DSS`.
    pub dss: S1Dss,
    /// `S1CIR`: inner cacheability of CD fetches.
    pub cir: Cacheability,
    /// `S1COR`: outer cacheability of CD fetches.
    pub cor: Cacheability,
    /// `S1CSH`: shareability of CD fetches.
    pub csh: Shareability,
    /// `S1STALLD`: stalls disallowed for this stream.
    pub stall_disable: bool,
}

/// Stage-2 controls: the VTCR fields, the table base and the fault behaviour (§5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Stage2Ste {
    /// `S2T0SZ` (6 bits): the IPA space is 2^(64 − t0sz) bytes.
    pub t0sz: u8,
    /// `S2SL0` (2 bits): starting level, encoded as in VTCR_EL2.SL0.
    pub sl0: u8,
    /// `S2IR0`.
    pub ir0: Cacheability,
    /// `S2OR0`.
    pub or0: Cacheability,
    /// `S2SH0`.
    pub sh0: Shareability,
    /// `S2TG`.
    pub tg: Granule,
    /// `S2PS`: output (physical) address size.
    pub ps: AddressSize,
    /// `S2AA64`: VMSAv8-64 tables (this crate builds only those; a decoded AArch32 entry keeps
    /// the flag clear).
    pub aa64: bool,
    /// `S2ENDI`: big-endian table walks.
    pub endi: bool,
    /// `S2AFFD`: Access-flag faults disabled.
    pub affd: bool,
    /// `S2PTW`: stage-1 walks to Device memory at stage 2 fault.
    pub ptw: bool,
    /// `S2HD`: hardware dirty-state update.
    pub hd: bool,
    /// `S2HA`: hardware access-flag update.
    pub ha: bool,
    /// `S2S`: stage-2 faults stall.
    pub stall: bool,
    /// `S2R`: stage-2 faults are recorded.
    pub record: bool,
    /// `S2FWB`: stage 2 forces write-back.
    pub fwb: bool,
    /// `S2TTB`: physical address of the stage-2 start table (bits \[55:4\]).
    pub ttb: u64,
}

/// What a valid STE does with a transaction, with the parameters of the stages it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum Translation {
    /// `Config = 0b000`: abort.
    Abort,
    /// `Config = 0b100`: bypass.
    Bypass,
    /// `Config = 0b101`: stage 1 only.
    Stage1(Stage1Ste),
    /// `Config = 0b110`: stage 2 only.
    Stage2(Stage2Ste),
    /// `Config = 0b111`: stage 1 nested in stage 2.
    Nested(Stage1Ste, Stage2Ste),
}

impl Translation {
    /// The `Config` encoding.
    pub const fn kind(&self) -> SteKind {
        match self {
            Translation::Abort => SteKind::Abort,
            Translation::Bypass => SteKind::Bypass,
            Translation::Stage1(_) => SteKind::Stage1,
            Translation::Stage2(_) => SteKind::Stage2,
            Translation::Nested(..) => SteKind::Nested,
        }
    }

    /// The stage-1 parameters, if stage 1 translates.
    pub const fn stage1(&self) -> Option<&Stage1Ste> {
        match self {
            Translation::Stage1(s1) | Translation::Nested(s1, _) => Some(s1),
            _ => None,
        }
    }

    /// The stage-2 parameters, if stage 2 translates.
    pub const fn stage2(&self) -> Option<&Stage2Ste> {
        match self {
            Translation::Stage2(s2) | Translation::Nested(_, s2) => Some(s2),
            _ => None,
        }
    }
}

/// The typed content of a valid STE (§5.2). An entry with `V = 0` decodes to `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct SteConfig {
    /// The stream's translation and the parameters of the stages it uses.
    pub translation: Translation,
    /// `S2VMID`: the VMID tagging this stream's TLB entries (also for stage 1 with STRW = EL1
    /// when stage 2 is implemented).
    pub s2vmid: u16,
    /// `EATS`.
    pub eats: Eats,
    /// `STRW`.
    pub strw: Strw,
    /// `MEV`: merge events.
    pub mev: bool,
    /// Attribute overrides.
    pub attrs: StreamAttrs,
}

/// The kind of an entry, for people and for the CLI's `"kind"` key.
pub fn kind_name(config: Option<&SteConfig>) -> &'static str {
    match config.map(|c| c.translation.kind()) {
        None => "invalid",
        Some(SteKind::Abort) => "abort",
        Some(SteKind::Bypass) => "bypass",
        Some(SteKind::Stage1) => "s1-translate",
        Some(SteKind::Stage2) => "s2-translate",
        Some(SteKind::Nested) => "nested",
    }
}

impl SteConfig {
    /// An entry that aborts every transaction: `V = 1`, `Config = 0b000`, nothing else set.
    pub const ABORT: SteConfig = SteConfig {
        translation: Translation::Abort,
        s2vmid: 0,
        eats: Eats::Abort,
        strw: Strw::El1,
        mev: false,
        attrs: StreamAttrs::NONE,
    };

    /// An entry that bypasses both stages with the incoming attributes (`SHCFG = 0b01`, as
    /// Linux writes it on SMMUs with `ATTR_TYPES_OVR`).
    pub const BYPASS: SteConfig = SteConfig {
        translation: Translation::Bypass,
        attrs: StreamAttrs::INCOMING,
        ..SteConfig::ABORT
    };

    /// Encodes the configuration. Values wider than their field are truncated to it (addresses
    /// lose the bits below their field's alignment).
    pub fn encode(&self) -> Ste {
        use fields::*;
        let mut w = [0u64; 8];
        V.set(&mut w, 1);
        CONFIG.set(&mut w, self.translation.kind().encode());
        S2VMID.set(&mut w, u64::from(self.s2vmid));
        EATS.set(&mut w, self.eats.encode());
        STRW.set(&mut w, self.strw.encode());
        MEV.set(&mut w, u64::from(self.mev));
        let a = &self.attrs;
        MEMATTR.set(&mut w, u64::from(a.mem_attr));
        MTCFG.set(&mut w, u64::from(a.mtcfg));
        ALLOCCFG.set(&mut w, u64::from(a.alloc_cfg));
        SHCFG.set(&mut w, a.sh_cfg.encode());
        NSCFG.set(&mut w, u64::from(a.ns_cfg));
        PRIVCFG.set(&mut w, u64::from(a.priv_cfg));
        INSTCFG.set(&mut w, u64::from(a.inst_cfg));
        if let Some(s1) = self.translation.stage1() {
            S1_CONTEXT_PTR.set(&mut w, s1.context_ptr >> S1_CONTEXT_PTR.lo);
            S1FMT.set(&mut w, s1.fmt.encode());
            S1_CD_MAX.set(&mut w, u64::from(s1.cd_max));
            S1DSS.set(&mut w, s1.dss.encode());
            S1CIR.set(&mut w, s1.cir.encode());
            S1COR.set(&mut w, s1.cor.encode());
            S1CSH.set(&mut w, s1.csh.encode());
            S1STALLD.set(&mut w, u64::from(s1.stall_disable));
        }
        if let Some(s2) = self.translation.stage2() {
            S2T0SZ.set(&mut w, u64::from(s2.t0sz));
            S2SL0.set(&mut w, u64::from(s2.sl0));
            S2IR0.set(&mut w, s2.ir0.encode());
            S2OR0.set(&mut w, s2.or0.encode());
            S2SH0.set(&mut w, s2.sh0.encode());
            S2TG.set(&mut w, s2.tg.encode());
            S2PS.set(&mut w, s2.ps.encode());
            S2AA64.set(&mut w, u64::from(s2.aa64));
            S2ENDI.set(&mut w, u64::from(s2.endi));
            S2AFFD.set(&mut w, u64::from(s2.affd));
            S2PTW.set(&mut w, u64::from(s2.ptw));
            S2HD.set(&mut w, u64::from(s2.hd));
            S2HA.set(&mut w, u64::from(s2.ha));
            S2S.set(&mut w, u64::from(s2.stall));
            S2R.set(&mut w, u64::from(s2.record));
            S2FWB.set(&mut w, u64::from(s2.fwb));
            S2TTB.set(&mut w, s2.ttb >> S2TTB.lo);
        }
        Ste::from_words(w)
    }
}

impl Ste {
    /// An all-zero, invalid entry.
    pub const INVALID: Ste = Ste([zerocopy::little_endian::U64::ZERO; 8]);

    /// Whether `V` is set.
    pub fn is_valid(&self) -> bool {
        fields::V.flag(&self.to_words())
    }

    /// Decodes the entry: `Ok(None)` when `V = 0`, the configuration when valid, or the first
    /// field that holds a reserved or ILLEGAL encoding. Fields the configuration does not model
    /// (MPAM, DPT, Secure stage 2, IMPLEMENTATION DEFINED bits) are not examined; print them
    /// from [`fields::FIELDS`].
    ///
    /// A field is decoded only where the entry's `Config` uses it (§5.2, per field; SPEC
    /// K21); an IGNORED field never fails the decode and comes back at its default, so two
    /// entries that differ only in IGNORED bits decode to the same configuration:
    /// - `Config` = abort: every other field is IGNORED ([`SteConfig::ABORT`]);
    /// - bypass: the `S1*` and `S2*` fields, `STRW`, `EATS` (effectively `0b00`) and `S2VMID`
    ///   are IGNORED; the attribute overrides and `MEV` are used;
    /// - stage 1 only: `STRW` is used and `0bx1` is ILLEGAL for a Non-secure stream (this
    ///   driver's); `S2VMID` is IGNORED unless the StreamWorld is EL1 (`STRW` = `0b00`;
    ///   whether stage 2 is implemented, the other condition, is the caller's to apply);
    /// - stage 2 and nested: `STRW` is IGNORED (the StreamWorld is NS-EL1);
    /// - `S1Fmt` and `S1DSS` are IGNORED when `S1CDMax` = 0.
    ///
    /// Conditions that depend on the ID registers (`S1CDMax` ≤ `SSIDSIZE`, 8-bit VMIDs,
    /// the stall model, ATS) are not checked here: the decoder sees one entry, not the SMMU.
    pub fn decode(&self) -> Result<Option<SteConfig>, DecodeError> {
        use fields::*;
        let w = self.to_words();
        if !V.flag(&w) {
            return Ok(None);
        }
        let kind = SteKind::decode(CONFIG.get(&w))?;
        if kind == SteKind::Abort {
            // §5.2: "The remaining fields contain no relevant configuration and are IGNORED."
            return Ok(Some(SteConfig::ABORT));
        }
        let stage1 = || -> Result<Stage1Ste, DecodeError> {
            let cd_max = S1_CD_MAX.get(&w) as u8;
            // §5.2 S1Fmt, S1DSS: IGNORED when S1CDMax = 0 (one CD, no substreams).
            let substreams = cd_max != 0;
            Ok(Stage1Ste {
                context_ptr: S1_CONTEXT_PTR.get(&w) << S1_CONTEXT_PTR.lo,
                fmt: if substreams {
                    S1Fmt::decode(S1FMT.get(&w))?
                } else {
                    S1Fmt::Linear
                },
                cd_max,
                dss: if substreams {
                    S1Dss::decode(S1DSS.get(&w))?
                } else {
                    S1Dss::Terminate
                },
                cir: Cacheability::decode(S1CIR.get(&w))?,
                cor: Cacheability::decode(S1COR.get(&w))?,
                csh: Shareability::decode(S1CSH.get(&w)).map_err(|_| reserved(S1CSH, &w))?,
                stall_disable: S1STALLD.flag(&w),
            })
        };
        let stage2 = || -> Result<Stage2Ste, DecodeError> {
            Ok(Stage2Ste {
                t0sz: S2T0SZ.get(&w) as u8,
                sl0: S2SL0.get(&w) as u8,
                ir0: Cacheability::decode(S2IR0.get(&w)).map_err(|_| reserved(S2IR0, &w))?,
                or0: Cacheability::decode(S2OR0.get(&w)).map_err(|_| reserved(S2OR0, &w))?,
                sh0: Shareability::decode(S2SH0.get(&w)).map_err(|_| reserved(S2SH0, &w))?,
                tg: Granule::decode(S2TG.get(&w)).map_err(|_| reserved(S2TG, &w))?,
                ps: AddressSize::decode(S2PS.get(&w)).map_err(|_| reserved(S2PS, &w))?,
                aa64: S2AA64.flag(&w),
                endi: S2ENDI.flag(&w),
                affd: S2AFFD.flag(&w),
                ptw: S2PTW.flag(&w),
                hd: S2HD.flag(&w),
                ha: S2HA.flag(&w),
                stall: S2S.flag(&w),
                record: S2R.flag(&w),
                fwb: S2FWB.flag(&w),
                ttb: S2TTB.get(&w) << S2TTB.lo,
            })
        };
        let translation = match kind {
            SteKind::Abort => Translation::Abort,
            SteKind::Bypass => Translation::Bypass,
            SteKind::Stage1 => Translation::Stage1(stage1()?),
            SteKind::Stage2 => Translation::Stage2(stage2()?),
            SteKind::Nested => Translation::Nested(stage1()?, stage2()?),
        };
        // §5.2 STRW: used by stage-1-only streams alone; for a Non-secure STE the values
        // 0bx1 are "Reserved, ILLEGAL".
        let strw = match kind {
            SteKind::Stage1 => match STRW.get(&w) {
                0b00 => Strw::El1,
                0b10 => Strw::El2,
                _ => return Err(reserved(STRW, &w)),
            },
            _ => Strw::El1,
        };
        // §5.2 S2VMID: IGNORED for bypass, and for a stage-1 stream whose StreamWorld is
        // not NS-EL1.
        let s2vmid = match kind {
            SteKind::Bypass => 0,
            SteKind::Stage1 if strw != Strw::El1 => 0,
            _ => S2VMID.get(&w) as u16,
        };
        // §5.2 EATS: IGNORED when Config[1:0] = 0b00 (bypass), effectively 0b00.
        let eats = match kind {
            SteKind::Bypass => Eats::Abort,
            _ => Eats::decode(EATS.get(&w))?,
        };
        Ok(Some(SteConfig {
            translation,
            s2vmid,
            eats,
            strw,
            mev: MEV.flag(&w),
            attrs: StreamAttrs {
                mem_attr: MEMATTR.get(&w) as u8,
                mtcfg: MTCFG.flag(&w),
                alloc_cfg: ALLOCCFG.get(&w) as u8,
                sh_cfg: ShCfg::decode(SHCFG.get(&w))?,
                ns_cfg: NSCFG.get(&w) as u8,
                priv_cfg: PRIVCFG.get(&w) as u8,
                inst_cfg: INSTCFG.get(&w) as u8,
            },
        }))
    }
}

fn reserved(field: Field, w: &[u64; 8]) -> DecodeError {
    DecodeError::Reserved {
        structure: "STE",
        field: field.name,
        value: field.get(w),
    }
}

/// What a field's value means, where the field is an enumeration (for printers).
pub fn describe_field(field: &Field, value: u64) -> Option<&'static str> {
    use fields::*;
    let d = |r: Result<&'static str, DecodeError>| Some(r.unwrap_or("reserved"));
    match field.name {
        n if n == V.name => Some(if value == 0 { "invalid" } else { "valid" }),
        n if n == CONFIG.name => d(SteKind::decode(value).map(SteKind::describe)),
        n if n == S1FMT.name => d(S1Fmt::decode(value).map(S1Fmt::describe)),
        n if n == S1DSS.name => d(S1Dss::decode(value).map(S1Dss::describe)),
        n if n == S1CIR.name || n == S1COR.name || n == S2IR0.name || n == S2OR0.name => {
            d(Cacheability::decode(value).map(Cacheability::describe))
        }
        n if n == S1CSH.name || n == S2SH0.name => {
            d(Shareability::decode(value).map(Shareability::describe))
        }
        n if n == EATS.name => d(Eats::decode(value).map(Eats::describe)),
        n if n == STRW.name => d(Strw::decode(value).map(Strw::describe)),
        n if n == SHCFG.name => d(ShCfg::decode(value).map(ShCfg::describe)),
        n if n == S2TG.name => d(Granule::decode(value).map(Granule::describe)),
        n if n == S2PS.name => d(AddressSize::decode(value).map(AddressSize::describe)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::fields::*;
    use super::*;

    fn words(config: u64) -> [u64; 8] {
        let mut w = [0u64; 8];
        V.set(&mut w, 1);
        CONFIG.set(&mut w, config);
        w
    }

    // spec: K21 — fields the Config leaves IGNORED never fail the decode (§5.2).
    #[test]
    fn ignored_fields_never_refuse() {
        // Abort: every other field is IGNORED, reserved values included.
        let mut w = [u64::MAX; 8];
        CONFIG.set(&mut w, SteKind::Abort.encode());
        assert_eq!(Ste::from_words(w).decode(), Ok(Some(SteConfig::ABORT)));
        // Bypass: STRW = 0b11, S1CSH = 0b01 (reserved), S2TG = 0b11 (reserved), S2VMID and
        // EATS are all IGNORED.
        let mut w = words(SteKind::Bypass.encode());
        STRW.set(&mut w, 0b11);
        S1CSH.set(&mut w, 0b01);
        S2TG.set(&mut w, 0b11);
        S2VMID.set(&mut w, 0x1234);
        EATS.set(&mut w, 0b10);
        SHCFG.set(&mut w, 0b01);
        assert_eq!(Ste::from_words(w).decode(), Ok(Some(SteConfig::BYPASS)));
        // Stage 2 only: STRW is IGNORED (StreamWorld NS-EL1), so 0b01 is not ILLEGAL there.
        let mut w = SteConfig {
            translation: Translation::Stage2(Stage2Ste {
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
                ttb: 0x8000_0000,
            }),
            s2vmid: 3,
            ..SteConfig::ABORT
        }
        .encode()
        .to_words();
        let expected = Ste::from_words(w).decode();
        STRW.set(&mut w, 0b01);
        assert_eq!(Ste::from_words(w).decode(), expected);
        assert!(expected.is_ok());
    }

    // spec: K21 — STRW 0bx1 is ILLEGAL for a Non-secure stage-1 STE (§5.2), and S1Fmt/S1DSS
    // are decoded only with substreams.
    #[test]
    fn strw_illegal_where_used_and_s1_fields_by_cdmax() {
        let mut w = words(SteKind::Stage1.encode());
        S1_CONTEXT_PTR.set(&mut w, 0x8000_0000 >> S1_CONTEXT_PTR.lo);
        // S1Fmt = 0b11 and S1DSS = 0b11 are reserved, but IGNORED with S1CDMax = 0.
        S1FMT.set(&mut w, 0b11);
        S1DSS.set(&mut w, 0b11);
        S2VMID.set(&mut w, 7);
        let ok = Ste::from_words(w).decode().unwrap().unwrap();
        let s1 = ok.translation.stage1().unwrap();
        assert_eq!((s1.fmt, s1.dss), (S1Fmt::Linear, S1Dss::Terminate));
        // StreamWorld EL1: S2VMID is kept for the caller (it tags entries when S2P = 1).
        assert_eq!(ok.s2vmid, 7);
        for strw in [0b01, 0b11] {
            let mut bad = w;
            STRW.set(&mut bad, strw);
            assert_eq!(
                Ste::from_words(bad).decode(),
                Err(DecodeError::Reserved {
                    structure: "STE",
                    field: "STRW",
                    value: strw
                })
            );
        }
        // EL2: S2VMID is IGNORED.
        let mut el2 = w;
        STRW.set(&mut el2, 0b10);
        let cfg = Ste::from_words(el2).decode().unwrap().unwrap();
        assert_eq!((cfg.strw, cfg.s2vmid), (Strw::El2, 0));
        // With substreams the reserved S1Fmt is an error again.
        S1_CD_MAX.set(&mut w, 4);
        assert!(Ste::from_words(w).decode().is_err());
    }
}

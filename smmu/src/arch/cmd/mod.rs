//! Command queue entries (IHI 0070 G.b chapter 4): 16 bytes, opcode in bits \[7:0\].
//!
//! [`Command`] is the typed form of every command of the Non-secure and Secure queues;
//! [`Command::encode`] builds the entry and [`Cmd::decode`] validates one. Many parameter
//! positions are only in figures the rendered specification lacks; those follow Linux's and
//! QEMU's layouts (see `smmuv3-fields.json`, whose check names each such field).

use super::entry::{encoded_enum, words_struct};
use super::field::Field;
use super::DecodeError;

/// Bit positions of command parameters. A parameter has the same position in every command
/// that has it.
pub mod fields {
    use super::Field;

    /// `opcode` (§4.1.1).
    pub const OPCODE: Field = Field::new("opcode", 0, 7, 0);
    /// `Global` of `CMD_ATC_INV` (§4.5.1; figure).
    pub const GLOBAL: Field = Field::new("Global", 0, 9, 9);
    /// `SSV`: the SubstreamID parameter is valid (§4.1.6; figure).
    pub const SSV: Field = Field::new("SSV", 0, 11, 11);
    /// `SubstreamID` (figure).
    pub const SUBSTREAM_ID: Field = Field::new("SubstreamID", 0, 31, 12);
    /// `StreamID` (figure).
    pub const STREAM_ID: Field = Field::new("StreamID", 0, 63, 32);
    /// `NUM` of a range invalidation: (NUM+1) × 2^SCALE granules (§4.4.1.1).
    pub const NUM: Field = Field::new("NUM", 0, 16, 12);
    /// `SCALE` of a range invalidation (§4.4.1.1).
    pub const SCALE: Field = Field::new("SCALE", 0, 25, 20);
    /// `VMID` (§4.4.2.2).
    pub const VMID: Field = Field::new("VMID", 0, 47, 32);
    /// `ASID` (§4.4.2.2).
    pub const ASID: Field = Field::new("ASID", 0, 63, 48);
    /// `Leaf` (figure).
    pub const LEAF: Field = Field::new("Leaf", 1, 0, 0);
    /// `TTL128` (§4.4.1.1).
    pub const TTL128: Field = Field::new("TTL128", 1, 7, 7);
    /// `TTL`: level of the leaf being invalidated, 0 = unknown (§4.4.1.1).
    pub const TTL: Field = Field::new("TTL", 1, 9, 8);
    /// `TG`: granule of a range invalidation, 0 = not a range (§4.4.1.1).
    pub const TG: Field = Field::new("TG", 1, 11, 10);
    /// `Address\[63:12\]` of a VA invalidation or prefetch (§4.1.6).
    pub const ADDRESS: Field = Field::address("Address", 1, 63, 12);
    /// `Address\[55:12\]` of an IPA invalidation (§4.1.6).
    pub const IPA: Field = Field::address("Address", 1, 55, 12);
    /// `Range` of `CMD_CFGI_STE_RANGE`: 2^(Range+1) StreamIDs (§4.3.2; figure).
    pub const RANGE: Field = Field::new("Range", 1, 4, 0);
    /// `Size` of `CMD_PREFETCH_ADDR` (§4.2.2; figure).
    pub const PREFETCH_SIZE: Field = Field::new("Size", 1, 4, 0);
    /// `Size` of `CMD_ATC_INV`: the span is 4 KiB × 2^Size (§4.5.1; figure).
    pub const ATC_SIZE: Field = Field::new("Size", 1, 5, 0);
    /// `PRGIndex` of `CMD_PRI_RESP` (§4.5.2; figure).
    pub const PRG_INDEX: Field = Field::new("PRGIndex", 1, 8, 0);
    /// `Resp` of `CMD_PRI_RESP` (§4.5.2; figure).
    pub const PRI_RESPONSE: Field = Field::new("Resp", 1, 13, 12);
    /// `Ab`/`Ac` of `CMD_RESUME`, packed as Linux does (§4.7.1; figure).
    pub const RESUME_RESP: Field = Field::new("Resp", 0, 13, 12);
    /// `STAG` of `CMD_RESUME` (§4.7.1; figure).
    pub const STAG: Field = Field::new("STAG", 1, 15, 0);
    /// `CS`, the completion signal of `CMD_SYNC` (§4.7.3; figure).
    pub const CS: Field = Field::new("CS", 0, 13, 12);
    /// `MSH` of `CMD_SYNC` (§4.7.3; figure).
    pub const MSH: Field = Field::new("MSH", 0, 23, 22);
    /// `MSIAttr` of `CMD_SYNC` (§4.7.3; figure).
    pub const MSI_ATTR: Field = Field::new("MSIAttr", 0, 27, 24);
    /// `MSIData` of `CMD_SYNC` (§4.7.3; figure).
    pub const MSI_DATA: Field = Field::new("MSIData", 0, 63, 32);
    /// `MSIAddress\[55:2\]` of `CMD_SYNC` (§4.7.3).
    pub const MSI_ADDRESS: Field = Field::address("MSIAddress", 1, 55, 2);
}

/// Opcodes (IHI 0070 G.b §4.1.1, Table 4.1).
pub mod opcode {
    /// `CMD_PREFETCH_CONFIG`.
    pub const PREFETCH_CFG: u8 = 0x01;
    /// `CMD_PREFETCH_ADDR`.
    pub const PREFETCH_ADDR: u8 = 0x02;
    /// `CMD_CFGI_STE`.
    pub const CFGI_STE: u8 = 0x03;
    /// `CMD_CFGI_STE_RANGE`; `CMD_CFGI_ALL` is this opcode with `Range = 31`.
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// `CMD_CFGI_ALL` (= `CMD_CFGI_STE_RANGE`, `Range = 31`; §4.3.6).
    pub const CFGI_ALL: u8 = 0x04;
    /// `CMD_CFGI_CD`.
    pub const CFGI_CD: u8 = 0x05;
    /// `CMD_CFGI_CD_ALL`.
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// `CMD_CFGI_VMS_PIDM`.
    pub const CFGI_VMS_PIDM: u8 = 0x07;
    /// `CMD_TLBI_NH_ALL`.
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// `CMD_TLBI_NH_ASID`.
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// `CMD_TLBI_NH_VA`.
    pub const TLBI_NH_VA: u8 = 0x12;
    /// `CMD_TLBI_NH_VAA`.
    pub const TLBI_NH_VAA: u8 = 0x13;
    /// `CMD_TLBI_EL3_ALL`.
    pub const TLBI_EL3_ALL: u8 = 0x18;
    /// `CMD_TLBI_EL3_VA`.
    pub const TLBI_EL3_VA: u8 = 0x1a;
    /// `CMD_TLBI_EL2_ALL`.
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// `CMD_TLBI_EL2_ASID`.
    pub const TLBI_EL2_ASID: u8 = 0x21;
    /// `CMD_TLBI_EL2_VA`.
    pub const TLBI_EL2_VA: u8 = 0x22;
    /// `CMD_TLBI_EL2_VAA`.
    pub const TLBI_EL2_VAA: u8 = 0x23;
    /// `CMD_TLBI_S12_VMALL`.
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// `CMD_TLBI_S2_IPA`.
    pub const TLBI_S2_IPA: u8 = 0x2a;
    /// `CMD_TLBI_NSNH_ALL`.
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// `CMD_ATC_INV`.
    pub const ATC_INV: u8 = 0x40;
    /// `CMD_PRI_RESP`.
    pub const PRI_RESP: u8 = 0x41;
    /// `CMD_RESUME`.
    pub const RESUME: u8 = 0x44;
    /// `CMD_STALL_TERM`.
    pub const STALL_TERM: u8 = 0x45;
    /// `CMD_SYNC`.
    pub const CMD_SYNC: u8 = 0x46;
    /// `CMD_TLBI_S_EL2_ALL` (Secure queue only).
    pub const TLBI_S_EL2_ALL: u8 = 0x50;
    /// `CMD_TLBI_S_EL2_ASID` (Secure queue only).
    pub const TLBI_S_EL2_ASID: u8 = 0x51;
    /// `CMD_TLBI_S_EL2_VA` (Secure queue only).
    pub const TLBI_S_EL2_VA: u8 = 0x52;
    /// `CMD_TLBI_S_EL2_VAA` (Secure queue only).
    pub const TLBI_S_EL2_VAA: u8 = 0x53;
    /// `CMD_TLBI_S_S12_VMALL` (Secure queue only).
    pub const TLBI_S_S12_VMALL: u8 = 0x58;
    /// `CMD_TLBI_S_S2_IPA` (Secure queue only).
    pub const TLBI_S_S2_IPA: u8 = 0x5a;
    /// `CMD_TLBI_SNH_ALL` (Secure queue only).
    pub const TLBI_SNH_ALL: u8 = 0x60;
    /// `CMD_DPTI_ALL` (needs `SMMU_IDR3.DPT`).
    pub const DPTI_ALL: u8 = 0x70;
    /// `CMD_DPTI_PA` (needs `SMMU_IDR3.DPT`).
    pub const DPTI_PA: u8 = 0x73;
}

words_struct! {
    /// A command queue entry: 16 bytes, two little-endian words (§4.1.1).
    Cmd, 2
}

encoded_enum! {
    /// `TG` of a TLB invalidation (§4.4.1.1): the granule of a range, or none.
    TlbiGranule in "CMD_TLBI" . "TG" {
        /// Not a range invalidation: one address, any granule.
        None = 0 => "not a range",
        /// 4 KiB granule.
        Size4K = 1 => "4KB",
        /// 16 KiB granule.
        Size16K = 2 => "16KB",
        /// 64 KiB granule.
        Size64K = 3 => "64KB",
    }
}

encoded_enum! {
    /// `CS` of `CMD_SYNC` (§4.7.3): how completion is signalled.
    SyncSignal in "CMD_SYNC" . "CS" {
        /// No signal: software polls `CMDQ_CONS`.
        None = 0 => "SIG_NONE",
        /// A 32-bit MSI write of `MSIData` to `MSIAddress`.
        Irq = 1 => "SIG_IRQ (MSI)",
        /// A wake-up event (SEV).
        Sev = 2 => "SIG_SEV",
    }
}

encoded_enum! {
    /// `Resp` of `CMD_PRI_RESP` (§4.5.2).
    PriResponse in "CMD_PRI_RESP" . "Resp" {
        /// Response failure.
        Failure = 0 => "ResponseFailure",
        /// Invalid request.
        Invalid = 1 => "InvalidRequest",
        /// Success.
        Success = 2 => "Success",
    }
}

encoded_enum! {
    /// The Ac/Ab parameters of `CMD_RESUME` (§4.7.1), packed as Linux packs them.
    ResumeAction in "CMD_RESUME" . "Resp" {
        /// Terminate the stalled transaction with RAZ/WI behaviour.
        Terminate = 0 => "terminate",
        /// Retry the stalled transaction.
        Retry = 1 => "retry",
        /// Terminate the stalled transaction with an abort.
        Abort = 2 => "abort",
    }
}

/// The range and hint parameters of a TLB invalidation by address (§4.4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct TlbiRange {
    /// `TG`: the granule; [`TlbiGranule::None`] for a single address.
    pub tg: TlbiGranule,
    /// `NUM` (5 bits): (NUM+1) × 2^SCALE granules.
    pub num: u8,
    /// `SCALE` (6 bits).
    pub scale: u8,
    /// `TTL` (2 bits): level of the leaves, 0 when unknown.
    pub ttl: u8,
    /// `TTL128`: TTL refers to 128-bit descriptors.
    pub ttl128: bool,
}

impl TlbiRange {
    /// A single-address invalidation with no level hint.
    pub const SINGLE: TlbiRange = TlbiRange {
        tg: TlbiGranule::None,
        num: 0,
        scale: 0,
        ttl: 0,
        ttl128: false,
    };
}

/// A TLB invalidation by address: which address, leaf-only or not, and the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct TlbiAddr {
    /// The address (bits \[63:12\] for a VA, \[55:12\] for an IPA).
    pub addr: u64,
    /// `Leaf`: only leaf entries need invalidating.
    pub leaf: bool,
    /// Range and hints.
    pub range: TlbiRange,
}

/// Every SMMUv3 command, with its parameters (§4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Command {
    /// `CMD_PREFETCH_CONFIG(StreamID)` (§4.2.1).
    PrefetchConfig {
        /// StreamID.
        sid: u32,
    },
    /// `CMD_PREFETCH_ADDR(StreamID, Addr, Size)` (§4.2.2).
    PrefetchAddr {
        /// StreamID.
        sid: u32,
        /// Address (bits \[63:12\]).
        addr: u64,
        /// Size (5 bits).
        size: u8,
    },
    /// `CMD_CFGI_STE(StreamID, Leaf)` (§4.3.1).
    CfgiSte {
        /// StreamID.
        sid: u32,
        /// Only the STE, not a level-1 descriptor, changed.
        leaf: bool,
    },
    /// `CMD_CFGI_STE_RANGE(StreamID, Range)`: 2^(range+1) aligned StreamIDs (§4.3.2).
    /// `range` is 0..=30; 31 is [`Command::CfgiAll`].
    CfgiSteRange {
        /// StreamID (the low `range+1` bits are ignored).
        sid: u32,
        /// Range.
        range: u8,
    },
    /// `CMD_CFGI_ALL` (§4.3.6).
    CfgiAll,
    /// `CMD_CFGI_CD(StreamID, SubstreamID, Leaf)` (§4.3.3).
    CfgiCd {
        /// StreamID.
        sid: u32,
        /// SubstreamID (20 bits).
        ssid: u32,
        /// Only the CD, not a level-1 descriptor, changed.
        leaf: bool,
    },
    /// `CMD_CFGI_CD_ALL(StreamID)` (§4.3.4).
    CfgiCdAll {
        /// StreamID.
        sid: u32,
    },
    /// `CMD_CFGI_VMS_PIDM(VMID)` (§4.3.5).
    CfgiVmsPidm {
        /// VMID.
        vmid: u16,
    },
    /// `CMD_TLBI_NH_ALL(VMID)` (§4.4.2.1).
    TlbiNhAll {
        /// VMID.
        vmid: u16,
    },
    /// `CMD_TLBI_NH_ASID(VMID, ASID)` (§4.4.2.2).
    TlbiNhAsid {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
    },
    /// `CMD_TLBI_NH_VA(VMID, ASID, Addr, Leaf)` (§4.4.2.4).
    TlbiNhVa {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
        /// Address, leaf flag and range.
        va: TlbiAddr,
    },
    /// `CMD_TLBI_NH_VAA(VMID, Addr, Leaf)` (§4.4.2.3).
    TlbiNhVaa {
        /// VMID.
        vmid: u16,
        /// Address, leaf flag and range.
        va: TlbiAddr,
    },
    /// `CMD_TLBI_EL3_ALL` (§4.4.2.5).
    TlbiEl3All,
    /// `CMD_TLBI_EL3_VA(Addr, Leaf)` (§4.4.2.6).
    TlbiEl3Va {
        /// Address, leaf flag and range.
        va: TlbiAddr,
    },
    /// `CMD_TLBI_EL2_ALL` (§4.4.2.7).
    TlbiEl2All,
    /// `CMD_TLBI_EL2_ASID(ASID)` (§4.4.2.10).
    TlbiEl2Asid {
        /// ASID.
        asid: u16,
    },
    /// `CMD_TLBI_EL2_VA(ASID, Addr, Leaf)` (§4.4.2.8).
    TlbiEl2Va {
        /// ASID.
        asid: u16,
        /// Address, leaf flag and range.
        va: TlbiAddr,
    },
    /// `CMD_TLBI_EL2_VAA(Addr, Leaf)` (§4.4.2.9).
    TlbiEl2Vaa {
        /// Address, leaf flag and range.
        va: TlbiAddr,
    },
    /// `CMD_TLBI_S12_VMALL(VMID)` (§4.4.3.2).
    TlbiS12Vmall {
        /// VMID.
        vmid: u16,
    },
    /// `CMD_TLBI_S2_IPA(VMID, Addr, Leaf)` (§4.4.3.1).
    TlbiS2Ipa {
        /// VMID.
        vmid: u16,
        /// IPA (bits \[55:12\]), leaf flag and range.
        ipa: TlbiAddr,
    },
    /// `CMD_TLBI_NSNH_ALL` (§4.4.4.1).
    TlbiNsnhAll,
    /// `CMD_ATC_INV(StreamID, SubstreamID, Addr, Size, Global)` (§4.5.1).
    AtcInv {
        /// StreamID.
        sid: u32,
        /// SubstreamID, if the invalidation is for one PASID.
        ssid: Option<u32>,
        /// Global: also invalidate global entries (only with a SubstreamID).
        global: bool,
        /// Address (bits \[63:12\]), aligned to the span.
        addr: u64,
        /// Span = 4 KiB × 2^size; 52 invalidates everything.
        size: u8,
    },
    /// `CMD_PRI_RESP(StreamID, SubstreamID, PRGIndex, Resp)` (§4.5.2).
    PriResp {
        /// StreamID.
        sid: u32,
        /// SubstreamID, if the request had one.
        ssid: Option<u32>,
        /// Page request group index (9 bits).
        prg_index: u16,
        /// Response.
        resp: PriResponse,
    },
    /// `CMD_RESUME(StreamID, STAG, Ac, Ab)` (§4.7.1).
    Resume {
        /// StreamID.
        sid: u32,
        /// Stall tag.
        stag: u16,
        /// Retry or terminate.
        action: ResumeAction,
    },
    /// `CMD_STALL_TERM(StreamID)` (§4.7.2).
    StallTerm {
        /// StreamID.
        sid: u32,
    },
    /// `CMD_SYNC(ComplSignal, MSIAddress, MSIData, MSIWriteAttributes)` (§4.7.3).
    Sync {
        /// Completion signal.
        cs: SyncSignal,
        /// `MSH` (2 bits): shareability of the MSI write.
        msh: u8,
        /// `MSIAttr` (4 bits): memory type of the MSI write, as STE.MemAttr.
        msi_attr: u8,
        /// `MSIData`.
        msi_data: u32,
        /// `MSIAddress` (bits \[55:2\]).
        msi_addr: u64,
    },
    /// `CMD_TLBI_S_EL2_ALL` (§4.4.2.11).
    TlbiSEl2All,
    /// `CMD_TLBI_S_EL2_ASID(ASID)` (§4.4.2.14).
    TlbiSEl2Asid {
        /// ASID.
        asid: u16,
    },
    /// `CMD_TLBI_S_EL2_VA(ASID, Addr, Leaf)` (§4.4.2.12).
    TlbiSEl2Va {
        /// ASID.
        asid: u16,
        /// Address, leaf flag and range.
        va: TlbiAddr,
    },
    /// `CMD_TLBI_S_EL2_VAA(Addr, Leaf)` (§4.4.2.13).
    TlbiSEl2Vaa {
        /// Address, leaf flag and range.
        va: TlbiAddr,
    },
    /// `CMD_TLBI_S_S12_VMALL(VMID)` (§4.4.3.4).
    TlbiSS12Vmall {
        /// VMID.
        vmid: u16,
    },
    /// `CMD_TLBI_S_S2_IPA(VMID, Addr, Leaf)` (§4.4.3.3).
    TlbiSS2Ipa {
        /// VMID.
        vmid: u16,
        /// IPA, leaf flag and range.
        ipa: TlbiAddr,
    },
    /// `CMD_TLBI_SNH_ALL` (§4.4.4.2).
    TlbiSnhAll,
    /// `CMD_DPTI_ALL` (§4.6.1).
    DptiAll,
    /// `CMD_DPTI_PA` (§4.6.2). Its parameter positions are only in a figure the rendered
    /// specification lacks, so the payload is kept as the raw words with the opcode cleared.
    DptiPa {
        /// The entry's words, opcode bits zero.
        payload: [u64; 2],
    },
}

mod describe;
pub use describe::{describe_field, fields_of, opcode_name};

const CFGI_ALL_RANGE: u64 = 31;

fn put_sid_ssid(w: &mut [u64; 2], sid: u32, ssid: Option<u32>) {
    use fields::*;
    STREAM_ID.set(w, u64::from(sid));
    if let Some(ssid) = ssid {
        SSV.set(w, 1);
        SUBSTREAM_ID.set(w, u64::from(ssid));
    }
}

fn put_tlbi_addr(w: &mut [u64; 2], addr_field: Field, a: &TlbiAddr) {
    use fields::*;
    addr_field.set(w, a.addr >> addr_field.lo);
    LEAF.set(w, u64::from(a.leaf));
    TG.set(w, a.range.tg.encode());
    NUM.set(w, u64::from(a.range.num));
    SCALE.set(w, u64::from(a.range.scale));
    TTL.set(w, u64::from(a.range.ttl));
    TTL128.set(w, u64::from(a.range.ttl128));
}

impl Command {
    /// The opcode.
    pub const fn opcode(&self) -> u8 {
        use opcode::*;
        match self {
            Command::PrefetchConfig { .. } => PREFETCH_CFG,
            Command::PrefetchAddr { .. } => PREFETCH_ADDR,
            Command::CfgiSte { .. } => CFGI_STE,
            Command::CfgiSteRange { .. } => CFGI_STE_RANGE,
            Command::CfgiAll => CFGI_ALL,
            Command::CfgiCd { .. } => CFGI_CD,
            Command::CfgiCdAll { .. } => CFGI_CD_ALL,
            Command::CfgiVmsPidm { .. } => CFGI_VMS_PIDM,
            Command::TlbiNhAll { .. } => TLBI_NH_ALL,
            Command::TlbiNhAsid { .. } => TLBI_NH_ASID,
            Command::TlbiNhVa { .. } => TLBI_NH_VA,
            Command::TlbiNhVaa { .. } => TLBI_NH_VAA,
            Command::TlbiEl3All => TLBI_EL3_ALL,
            Command::TlbiEl3Va { .. } => TLBI_EL3_VA,
            Command::TlbiEl2All => TLBI_EL2_ALL,
            Command::TlbiEl2Asid { .. } => TLBI_EL2_ASID,
            Command::TlbiEl2Va { .. } => TLBI_EL2_VA,
            Command::TlbiEl2Vaa { .. } => TLBI_EL2_VAA,
            Command::TlbiS12Vmall { .. } => TLBI_S12_VMALL,
            Command::TlbiS2Ipa { .. } => TLBI_S2_IPA,
            Command::TlbiNsnhAll => TLBI_NSNH_ALL,
            Command::AtcInv { .. } => ATC_INV,
            Command::PriResp { .. } => PRI_RESP,
            Command::Resume { .. } => RESUME,
            Command::StallTerm { .. } => STALL_TERM,
            Command::Sync { .. } => CMD_SYNC,
            Command::TlbiSEl2All => TLBI_S_EL2_ALL,
            Command::TlbiSEl2Asid { .. } => TLBI_S_EL2_ASID,
            Command::TlbiSEl2Va { .. } => TLBI_S_EL2_VA,
            Command::TlbiSEl2Vaa { .. } => TLBI_S_EL2_VAA,
            Command::TlbiSS12Vmall { .. } => TLBI_S_S12_VMALL,
            Command::TlbiSS2Ipa { .. } => TLBI_S_S2_IPA,
            Command::TlbiSnhAll => TLBI_SNH_ALL,
            Command::DptiAll => DPTI_ALL,
            Command::DptiPa { .. } => DPTI_PA,
        }
    }

    /// The specification's name of the command (`CMD_SYNC`, `CMD_TLBI_NH_VA`, …).
    pub fn name(&self) -> &'static str {
        if matches!(self, Command::CfgiAll) {
            return "CMD_CFGI_ALL";
        }
        opcode_name(self.opcode()).unwrap_or("CMD_UNKNOWN")
    }

    /// Builds the queue entry. Values wider than their field are truncated to it.
    pub fn encode(&self) -> Cmd {
        use fields::*;
        let mut w = [0u64; 2];
        if let Command::DptiPa { payload } = self {
            w = *payload;
        }
        OPCODE.set(&mut w, u64::from(self.opcode()));
        match *self {
            Command::PrefetchConfig { sid }
            | Command::CfgiCdAll { sid }
            | Command::StallTerm { sid } => STREAM_ID.set(&mut w, u64::from(sid)),
            Command::PrefetchAddr { sid, addr, size } => {
                STREAM_ID.set(&mut w, u64::from(sid));
                ADDRESS.set(&mut w, addr >> ADDRESS.lo);
                PREFETCH_SIZE.set(&mut w, u64::from(size));
            }
            Command::CfgiSte { sid, leaf } => {
                STREAM_ID.set(&mut w, u64::from(sid));
                LEAF.set(&mut w, u64::from(leaf));
            }
            Command::CfgiSteRange { sid, range } => {
                STREAM_ID.set(&mut w, u64::from(sid));
                RANGE.set(&mut w, u64::from(range));
            }
            Command::CfgiAll => RANGE.set(&mut w, CFGI_ALL_RANGE),
            Command::CfgiCd { sid, ssid, leaf } => {
                STREAM_ID.set(&mut w, u64::from(sid));
                SUBSTREAM_ID.set(&mut w, u64::from(ssid));
                LEAF.set(&mut w, u64::from(leaf));
            }
            Command::CfgiVmsPidm { vmid }
            | Command::TlbiNhAll { vmid }
            | Command::TlbiS12Vmall { vmid }
            | Command::TlbiSS12Vmall { vmid } => VMID.set(&mut w, u64::from(vmid)),
            Command::TlbiNhAsid { vmid, asid } => {
                VMID.set(&mut w, u64::from(vmid));
                ASID.set(&mut w, u64::from(asid));
            }
            Command::TlbiNhVa { vmid, asid, va } => {
                VMID.set(&mut w, u64::from(vmid));
                ASID.set(&mut w, u64::from(asid));
                put_tlbi_addr(&mut w, ADDRESS, &va);
            }
            Command::TlbiNhVaa { vmid, va } => {
                VMID.set(&mut w, u64::from(vmid));
                put_tlbi_addr(&mut w, ADDRESS, &va);
            }
            Command::TlbiEl3Va { va }
            | Command::TlbiEl2Vaa { va }
            | Command::TlbiSEl2Vaa { va } => {
                put_tlbi_addr(&mut w, ADDRESS, &va);
            }
            Command::TlbiEl2Asid { asid } | Command::TlbiSEl2Asid { asid } => {
                ASID.set(&mut w, u64::from(asid));
            }
            Command::TlbiEl2Va { asid, va } | Command::TlbiSEl2Va { asid, va } => {
                ASID.set(&mut w, u64::from(asid));
                put_tlbi_addr(&mut w, ADDRESS, &va);
            }
            Command::TlbiS2Ipa { vmid, ipa } | Command::TlbiSS2Ipa { vmid, ipa } => {
                VMID.set(&mut w, u64::from(vmid));
                put_tlbi_addr(&mut w, IPA, &ipa);
            }
            Command::AtcInv {
                sid,
                ssid,
                global,
                addr,
                size,
            } => {
                put_sid_ssid(&mut w, sid, ssid);
                GLOBAL.set(&mut w, u64::from(global));
                ADDRESS.set(&mut w, addr >> ADDRESS.lo);
                ATC_SIZE.set(&mut w, u64::from(size));
            }
            Command::PriResp {
                sid,
                ssid,
                prg_index,
                resp,
            } => {
                put_sid_ssid(&mut w, sid, ssid);
                PRG_INDEX.set(&mut w, u64::from(prg_index));
                PRI_RESPONSE.set(&mut w, resp.encode());
            }
            Command::Resume { sid, stag, action } => {
                STREAM_ID.set(&mut w, u64::from(sid));
                STAG.set(&mut w, u64::from(stag));
                RESUME_RESP.set(&mut w, action.encode());
            }
            Command::Sync {
                cs,
                msh,
                msi_attr,
                msi_data,
                msi_addr,
            } => {
                CS.set(&mut w, cs.encode());
                MSH.set(&mut w, u64::from(msh));
                MSI_ATTR.set(&mut w, u64::from(msi_attr));
                MSI_DATA.set(&mut w, u64::from(msi_data));
                MSI_ADDRESS.set(&mut w, msi_addr >> MSI_ADDRESS.lo);
            }
            Command::TlbiEl3All
            | Command::TlbiEl2All
            | Command::TlbiNsnhAll
            | Command::TlbiSEl2All
            | Command::TlbiSnhAll
            | Command::DptiAll
            | Command::DptiPa { .. } => {}
        }
        Cmd::from_words(w)
    }
}

fn get_tlbi_addr(
    w: &[u64; 2],
    addr_field: Field,
    name: &'static str,
) -> Result<TlbiAddr, DecodeError> {
    use fields::*;
    let range = TlbiRange {
        tg: TlbiGranule::decode(TG.get(w))?,
        num: NUM.get(w) as u8,
        scale: SCALE.get(w) as u8,
        ttl: TTL.get(w) as u8,
        ttl128: TTL128.flag(w),
    };
    // §4.4.1.1: a range (TG != 0) of NUM == SCALE == TTL == 0 is reserved.
    if range.tg != TlbiGranule::None && range.num == 0 && range.scale == 0 && range.ttl == 0 {
        return Err(DecodeError::Reserved {
            structure: name,
            field: TTL.name,
            value: 0,
        });
    }
    Ok(TlbiAddr {
        addr: addr_field.get(w) << addr_field.lo,
        leaf: LEAF.flag(w),
        range,
    })
}

impl Cmd {
    /// The opcode byte.
    pub fn opcode(&self) -> u8 {
        fields::OPCODE.get(&self.to_words()) as u8
    }

    /// Decodes the entry into a [`Command`], or names the reserved opcode or field value that
    /// would make the SMMU report `CERROR_ILL`. Reserved (RES0) bits outside the command's
    /// parameters are not examined.
    pub fn decode(&self) -> Result<Command, DecodeError> {
        use fields::*;
        use opcode::*;
        let w = self.to_words();
        let op = self.opcode();
        let name = opcode_name(op).unwrap_or("CMD");
        let sid = STREAM_ID.get(&w) as u32;
        let vmid = VMID.get(&w) as u16;
        let asid = ASID.get(&w) as u16;
        let ssid = SSV.flag(&w).then(|| SUBSTREAM_ID.get(&w) as u32);
        Ok(match op {
            PREFETCH_CFG => Command::PrefetchConfig { sid },
            PREFETCH_ADDR => Command::PrefetchAddr {
                sid,
                addr: ADDRESS.get(&w) << ADDRESS.lo,
                size: PREFETCH_SIZE.get(&w) as u8,
            },
            CFGI_STE => Command::CfgiSte {
                sid,
                leaf: LEAF.flag(&w),
            },
            CFGI_STE_RANGE if RANGE.get(&w) == CFGI_ALL_RANGE => Command::CfgiAll,
            CFGI_STE_RANGE => Command::CfgiSteRange {
                sid,
                range: RANGE.get(&w) as u8,
            },
            CFGI_CD => Command::CfgiCd {
                sid,
                ssid: SUBSTREAM_ID.get(&w) as u32,
                leaf: LEAF.flag(&w),
            },
            CFGI_CD_ALL => Command::CfgiCdAll { sid },
            CFGI_VMS_PIDM => Command::CfgiVmsPidm { vmid },
            TLBI_NH_ALL => Command::TlbiNhAll { vmid },
            TLBI_NH_ASID => Command::TlbiNhAsid { vmid, asid },
            TLBI_NH_VA => Command::TlbiNhVa {
                vmid,
                asid,
                va: get_tlbi_addr(&w, ADDRESS, name)?,
            },
            TLBI_NH_VAA => Command::TlbiNhVaa {
                vmid,
                va: get_tlbi_addr(&w, ADDRESS, name)?,
            },
            TLBI_EL3_ALL => Command::TlbiEl3All,
            TLBI_EL3_VA => Command::TlbiEl3Va {
                va: get_tlbi_addr(&w, ADDRESS, name)?,
            },
            TLBI_EL2_ALL => Command::TlbiEl2All,
            TLBI_EL2_ASID => Command::TlbiEl2Asid { asid },
            TLBI_EL2_VA => Command::TlbiEl2Va {
                asid,
                va: get_tlbi_addr(&w, ADDRESS, name)?,
            },
            TLBI_EL2_VAA => Command::TlbiEl2Vaa {
                va: get_tlbi_addr(&w, ADDRESS, name)?,
            },
            TLBI_S12_VMALL => Command::TlbiS12Vmall { vmid },
            TLBI_S2_IPA => Command::TlbiS2Ipa {
                vmid,
                ipa: get_tlbi_addr(&w, IPA, name)?,
            },
            TLBI_NSNH_ALL => Command::TlbiNsnhAll,
            ATC_INV => Command::AtcInv {
                sid,
                ssid,
                global: GLOBAL.flag(&w),
                addr: ADDRESS.get(&w) << ADDRESS.lo,
                size: ATC_SIZE.get(&w) as u8,
            },
            PRI_RESP => Command::PriResp {
                sid,
                ssid,
                prg_index: PRG_INDEX.get(&w) as u16,
                resp: PriResponse::decode(PRI_RESPONSE.get(&w))?,
            },
            RESUME => Command::Resume {
                sid,
                stag: STAG.get(&w) as u16,
                action: ResumeAction::decode(RESUME_RESP.get(&w))?,
            },
            STALL_TERM => Command::StallTerm { sid },
            CMD_SYNC => Command::Sync {
                cs: SyncSignal::decode(CS.get(&w))?,
                msh: MSH.get(&w) as u8,
                msi_attr: MSI_ATTR.get(&w) as u8,
                msi_data: MSI_DATA.get(&w) as u32,
                msi_addr: MSI_ADDRESS.get(&w) << MSI_ADDRESS.lo,
            },
            TLBI_S_EL2_ALL => Command::TlbiSEl2All,
            TLBI_S_EL2_ASID => Command::TlbiSEl2Asid { asid },
            TLBI_S_EL2_VA => Command::TlbiSEl2Va {
                asid,
                va: get_tlbi_addr(&w, ADDRESS, name)?,
            },
            TLBI_S_EL2_VAA => Command::TlbiSEl2Vaa {
                va: get_tlbi_addr(&w, ADDRESS, name)?,
            },
            TLBI_S_S12_VMALL => Command::TlbiSS12Vmall { vmid },
            TLBI_S_S2_IPA => Command::TlbiSS2Ipa {
                vmid,
                ipa: get_tlbi_addr(&w, IPA, name)?,
            },
            TLBI_SNH_ALL => Command::TlbiSnhAll,
            DPTI_ALL => Command::DptiAll,
            DPTI_PA => {
                let mut payload = w;
                OPCODE.set(&mut payload, 0);
                Command::DptiPa { payload }
            }
            _ => {
                return Err(DecodeError::Reserved {
                    structure: "CMD",
                    field: OPCODE.name,
                    value: u64::from(op),
                })
            }
        })
    }
}

//! Event queue records (IHI 0070 G.b §7.3): 32 bytes, event number in bits \[7:0\].
//!
//! [`Event`] is the typed form; [`EventRecord::decode`] validates a record read from the
//! queue and [`Event::encode`] builds one (for models and tests). Positions the rendered
//! specification only shows in figures follow Linux and QEMU, as `smmuv3-fields.json` records.

use super::entry::{encoded_enum, words_struct};
use super::field::Field;
use super::DecodeError;

/// Bit positions of event record fields. A field has the same position in every event that
/// has it.
pub mod fields {
    use super::Field;

    /// The event number (§7.3).
    pub const EVENT_ID: Field = Field::new("EventType", 0, 7, 0);
    /// `SSV`: `SubstreamID` is valid (§7.3.2).
    pub const SSV: Field = Field::new("SSV", 0, 11, 11);
    /// `SubstreamID` (§7.3.2).
    pub const SUBSTREAM_ID: Field = Field::new("SubstreamID", 0, 31, 12);
    /// `StreamID` (§7.3.2).
    pub const STREAM_ID: Field = Field::new("StreamID", 0, 63, 32);
    /// `STAG` of a stalled fault (figure, §7.3.13–16).
    pub const STAG: Field = Field::new("STAG", 1, 15, 0);
    /// `Reason` of fetch and unsupported-transaction events (§7.3.20).
    pub const REASON: Field = Field::new("Reason", 1, 15, 0);
    /// `Reason` of `C_BAD_CONFIG`-style conflicts (§7.3.18).
    pub const REASON32: Field = Field::new("Reason", 1, 31, 0);
    /// `GPCF`: granule-protection-check fault on the fetch (§7.3.20).
    pub const GPCF: Field = Field::new("GPCF", 1, 16, 16);
    /// `Stall`: the faulting transaction is stalled (figure).
    pub const STALL: Field = Field::new("Stall", 1, 31, 31);
    /// `PnU`: privileged (§7.3.2).
    pub const PNU: Field = Field::new("PnU", 1, 33, 33);
    /// `InD`: instruction fetch (§7.3.2).
    pub const IND: Field = Field::new("InD", 1, 34, 34);
    /// `RnW`: read (§7.3.2).
    pub const RNW: Field = Field::new("RnW", 1, 35, 35);
    /// `S2`: the fault is a stage-2 fault (figure).
    pub const S2: Field = Field::new("S2", 1, 39, 39);
    /// `CLASS`: what the faulting access was doing (figure; encodings §7.3).
    pub const CLASS: Field = Field::new("CLASS", 1, 41, 40);
    /// `TTRnW`: the faulting table access was a read (figure, §7.3.16).
    pub const TT_RNW: Field = Field::new("TTRnW", 1, 44, 44);
    /// `uX` of a page request (§7.3.19).
    pub const UX: Field = Field::new("uX", 1, 33, 33);
    /// `uW` of a page request (§7.3.19).
    pub const UW: Field = Field::new("uW", 1, 34, 34);
    /// `uR` of a page request (§7.3.19).
    pub const UR: Field = Field::new("uR", 1, 35, 35);
    /// `pX` of a page request (§7.3.19).
    pub const PX: Field = Field::new("pX", 1, 37, 37);
    /// `pW` of a page request (§7.3.19).
    pub const PW: Field = Field::new("pW", 1, 38, 38);
    /// `pR` of a page request (§7.3.19).
    pub const PR: Field = Field::new("pR", 1, 39, 39);
    /// `SPAN` of a page request (§7.3.19).
    pub const SPAN: Field = Field::new("SPAN", 1, 51, 44);
    /// `InputAddr\[63:0\]` (§7.3.2).
    pub const INPUT_ADDR: Field = Field::address("InputAddr", 2, 63, 0);
    /// `Addr\[63:12\]` of a page request (§7.3.19).
    pub const PAGE_ADDR: Field = Field::address("Addr", 2, 63, 12);
    /// `FetchAddr\[55:3\]` (§7.3.4, §7.3.20).
    pub const FETCH_ADDR: Field = Field::address("FetchAddr", 3, 55, 3);
    /// `IPA\[55:12\]` of a stage-2 fault (§7.3.13; low end from the figure).
    pub const IPA: Field = Field::address("IPA", 3, 55, 12);
}

/// Event numbers (§7.3, Table 7.3).
pub mod event_id {
    /// `F_UUT`.
    pub const F_UUT: u8 = 0x01;
    /// `C_BAD_STREAMID`.
    pub const C_BAD_STREAMID: u8 = 0x02;
    /// `F_STE_FETCH`.
    pub const F_STE_FETCH: u8 = 0x03;
    /// `C_BAD_STE`.
    pub const C_BAD_STE: u8 = 0x04;
    /// `F_BAD_ATS_TREQ`.
    pub const F_BAD_ATS_TREQ: u8 = 0x05;
    /// `F_STREAM_DISABLED`.
    pub const F_STREAM_DISABLED: u8 = 0x06;
    /// `F_TRANSL_FORBIDDEN`.
    pub const F_TRANSL_FORBIDDEN: u8 = 0x07;
    /// `C_BAD_SUBSTREAMID`.
    pub const C_BAD_SUBSTREAMID: u8 = 0x08;
    /// `F_CD_FETCH`.
    pub const F_CD_FETCH: u8 = 0x09;
    /// `C_BAD_CD`.
    pub const C_BAD_CD: u8 = 0x0a;
    /// `F_WALK_EABT`.
    pub const F_WALK_EABT: u8 = 0x0b;
    /// `F_TRANSLATION`.
    pub const F_TRANSLATION: u8 = 0x10;
    /// `F_ADDR_SIZE`.
    pub const F_ADDR_SIZE: u8 = 0x11;
    /// `F_ACCESS`.
    pub const F_ACCESS: u8 = 0x12;
    /// `F_PERMISSION`.
    pub const F_PERMISSION: u8 = 0x13;
    /// `F_TLB_CONFLICT`.
    pub const F_TLB_CONFLICT: u8 = 0x20;
    /// `F_CFG_CONFLICT`.
    pub const F_CFG_CONFLICT: u8 = 0x21;
    /// `E_PAGE_REQUEST`.
    pub const E_PAGE_REQUEST: u8 = 0x24;
    /// `F_VMS_FETCH`.
    pub const F_VMS_FETCH: u8 = 0x25;
    /// First IMPLEMENTATION DEFINED event number.
    pub const IMPDEF_FIRST: u8 = 0xe0;
    /// Last IMPLEMENTATION DEFINED event number.
    pub const IMPDEF_LAST: u8 = 0xef;
}

words_struct! {
    /// An event queue record: 32 bytes, four little-endian words (§7.3).
    EventRecord, 4
}

encoded_enum! {
    /// `CLASS` of a translation-related fault (§7.3).
    FaultClass in "EVENT" . "CLASS" {
        /// Fetching a CD.
        Cd = 0 => "CD fetch",
        /// Fetching a translation table descriptor.
        TableWalk = 1 => "translation table walk",
        /// The input address of the transaction.
        Input = 2 => "input address",
    }
}

/// The stream (and substream) an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct StreamRef {
    /// `StreamID`.
    pub sid: u32,
    /// `SubstreamID` when `SSV` is set.
    pub ssid: Option<u32>,
}

/// A structure fetch that failed (`F_STE_FETCH`, `F_CD_FETCH`, `F_VMS_FETCH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct FetchFault {
    /// The stream.
    pub stream: StreamRef,
    /// `Reason` (IMPLEMENTATION DEFINED).
    pub reason: u16,
    /// `GPCF`.
    pub gpcf: bool,
    /// `FetchAddr` (bits \[55:3\]).
    pub fetch_addr: u64,
}

/// The common content of a translation fault (`F_TRANSLATION`, `F_ADDR_SIZE`, `F_ACCESS`,
/// `F_PERMISSION`, `F_WALK_EABT`, `F_TLB_CONFLICT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Fault {
    /// The stream.
    pub stream: StreamRef,
    /// `Stall`: the transaction is stalled; resume it with `stag`.
    pub stall: bool,
    /// `STAG`.
    pub stag: u16,
    /// `PnU`: privileged.
    pub privileged: bool,
    /// `InD`: instruction fetch.
    pub instruction: bool,
    /// `RnW`: read.
    pub read: bool,
    /// `S2`: stage-2 fault.
    pub stage2: bool,
    /// `CLASS`.
    pub class: FaultClass,
    /// `TTRnW`: the faulting table access was a read.
    pub tt_read: bool,
    /// `InputAddr`.
    pub input_addr: u64,
}

/// A translation fault with the IPA of a stage-2 fault (bits \[55:12\]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct TranslationFault {
    /// The fault.
    pub fault: Fault,
    /// `IPA` (meaningful when `fault.stage2`).
    pub ipa: u64,
}

/// An ATS page request forwarded as an event (`E_PAGE_REQUEST`, §7.3.19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct PageRequestEvent {
    /// The stream.
    pub stream: StreamRef,
    /// `uX`, `uW`, `uR`, `pX`, `pW`, `pR`.
    pub perms: [bool; 6],
    /// `SPAN` (8 bits).
    pub span: u8,
    /// `Addr` (bits \[63:12\]).
    pub addr: u64,
}

/// Every event the SMMU records (§7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Event {
    /// `F_UUT`: unsupported upstream transaction.
    UnsupportedUpstream {
        /// The stream.
        stream: StreamRef,
        /// `Reason` (IMPLEMENTATION DEFINED).
        reason: u16,
        /// `PnU`, `InD`, `RnW`.
        privileged: bool,
        /// Instruction fetch.
        instruction: bool,
        /// Read.
        read: bool,
        /// `InputAddr`.
        input_addr: u64,
    },
    /// `C_BAD_STREAMID`: the StreamID is out of range of the stream table.
    BadStreamId(StreamRef),
    /// `F_STE_FETCH`.
    SteFetch(FetchFault),
    /// `C_BAD_STE`: the STE is invalid or ILLEGAL.
    BadSte(StreamRef),
    /// `F_BAD_ATS_TREQ`: an ATS translation request the STE does not allow.
    BadAtsTreq {
        /// The stream.
        stream: StreamRef,
        /// `InputAddr`.
        input_addr: u64,
    },
    /// `F_STREAM_DISABLED`: a stream without a SubstreamID on an STE that refuses it.
    StreamDisabled(StreamRef),
    /// `F_TRANSL_FORBIDDEN`: a translated (ATS) transaction on a stream that bypasses.
    TranslForbidden {
        /// The stream.
        stream: StreamRef,
        /// `RnW`.
        read: bool,
        /// `InputAddr`.
        input_addr: u64,
    },
    /// `C_BAD_SUBSTREAMID`: the SubstreamID is out of range of the CD table.
    BadSubstreamId(StreamRef),
    /// `F_CD_FETCH`.
    CdFetch(FetchFault),
    /// `C_BAD_CD`: the CD is invalid or ILLEGAL.
    BadCd(StreamRef),
    /// `F_WALK_EABT`: an external abort on a table walk.
    WalkExternalAbort {
        /// The fault.
        fault: Fault,
        /// `FetchAddr` of the descriptor (bits \[55:3\]).
        fetch_addr: u64,
    },
    /// `F_TRANSLATION`.
    Translation(TranslationFault),
    /// `F_ADDR_SIZE`.
    AddressSize(TranslationFault),
    /// `F_ACCESS`.
    Access(TranslationFault),
    /// `F_PERMISSION`.
    Permission(TranslationFault),
    /// `F_TLB_CONFLICT`.
    TlbConflict(TranslationFault),
    /// `F_CFG_CONFLICT`.
    CfgConflict {
        /// The stream.
        stream: StreamRef,
        /// `Reason` (IMPLEMENTATION DEFINED).
        reason: u32,
    },
    /// `E_PAGE_REQUEST`.
    PageRequest(PageRequestEvent),
    /// `F_VMS_FETCH`.
    VmsFetch(FetchFault),
    /// An IMPLEMENTATION DEFINED event (0xE0–0xEF), kept raw with the number cleared.
    ImplementationDefined {
        /// Event number.
        id: u8,
        /// The record's words, number bits zero.
        payload: [u64; 4],
    },
}

fn put_stream(w: &mut [u64; 4], s: &StreamRef) {
    use fields::*;
    STREAM_ID.set(w, u64::from(s.sid));
    if let Some(ssid) = s.ssid {
        SSV.set(w, 1);
        SUBSTREAM_ID.set(w, u64::from(ssid));
    }
}

fn get_stream(w: &[u64; 4]) -> StreamRef {
    use fields::*;
    StreamRef {
        sid: STREAM_ID.get(w) as u32,
        ssid: SSV.flag(w).then(|| SUBSTREAM_ID.get(w) as u32),
    }
}

fn put_fetch(w: &mut [u64; 4], f: &FetchFault) {
    use fields::*;
    put_stream(w, &f.stream);
    REASON.set(w, u64::from(f.reason));
    GPCF.set(w, u64::from(f.gpcf));
    FETCH_ADDR.set(w, f.fetch_addr >> FETCH_ADDR.lo);
}

fn get_fetch(w: &[u64; 4]) -> FetchFault {
    use fields::*;
    FetchFault {
        stream: get_stream(w),
        reason: REASON.get(w) as u16,
        gpcf: GPCF.flag(w),
        fetch_addr: FETCH_ADDR.get(w) << FETCH_ADDR.lo,
    }
}

fn put_fault(w: &mut [u64; 4], f: &Fault) {
    use fields::*;
    put_stream(w, &f.stream);
    STALL.set(w, u64::from(f.stall));
    STAG.set(w, u64::from(f.stag));
    PNU.set(w, u64::from(f.privileged));
    IND.set(w, u64::from(f.instruction));
    RNW.set(w, u64::from(f.read));
    S2.set(w, u64::from(f.stage2));
    CLASS.set(w, f.class.encode());
    TT_RNW.set(w, u64::from(f.tt_read));
    INPUT_ADDR.set(w, f.input_addr);
}

fn get_fault(w: &[u64; 4]) -> Result<Fault, DecodeError> {
    use fields::*;
    Ok(Fault {
        stream: get_stream(w),
        stall: STALL.flag(w),
        stag: STAG.get(w) as u16,
        privileged: PNU.flag(w),
        instruction: IND.flag(w),
        read: RNW.flag(w),
        stage2: S2.flag(w),
        class: FaultClass::decode(CLASS.get(w))?,
        tt_read: TT_RNW.flag(w),
        input_addr: INPUT_ADDR.get(w),
    })
}

fn put_translation(w: &mut [u64; 4], t: &TranslationFault) {
    put_fault(w, &t.fault);
    fields::IPA.set(w, t.ipa >> fields::IPA.lo);
}

fn get_translation(w: &[u64; 4]) -> Result<TranslationFault, DecodeError> {
    Ok(TranslationFault {
        fault: get_fault(w)?,
        ipa: fields::IPA.get(w) << fields::IPA.lo,
    })
}

const PAGE_REQUEST_PERMS: [Field; 6] = [
    fields::UX,
    fields::UW,
    fields::UR,
    fields::PX,
    fields::PW,
    fields::PR,
];

impl Event {
    /// The event number.
    pub const fn id(&self) -> u8 {
        use event_id::*;
        match self {
            Event::UnsupportedUpstream { .. } => F_UUT,
            Event::BadStreamId(_) => C_BAD_STREAMID,
            Event::SteFetch(_) => F_STE_FETCH,
            Event::BadSte(_) => C_BAD_STE,
            Event::BadAtsTreq { .. } => F_BAD_ATS_TREQ,
            Event::StreamDisabled(_) => F_STREAM_DISABLED,
            Event::TranslForbidden { .. } => F_TRANSL_FORBIDDEN,
            Event::BadSubstreamId(_) => C_BAD_SUBSTREAMID,
            Event::CdFetch(_) => F_CD_FETCH,
            Event::BadCd(_) => C_BAD_CD,
            Event::WalkExternalAbort { .. } => F_WALK_EABT,
            Event::Translation(_) => F_TRANSLATION,
            Event::AddressSize(_) => F_ADDR_SIZE,
            Event::Access(_) => F_ACCESS,
            Event::Permission(_) => F_PERMISSION,
            Event::TlbConflict(_) => F_TLB_CONFLICT,
            Event::CfgConflict { .. } => F_CFG_CONFLICT,
            Event::PageRequest(_) => E_PAGE_REQUEST,
            Event::VmsFetch(_) => F_VMS_FETCH,
            Event::ImplementationDefined { id, .. } => *id,
        }
    }

    /// The specification's name (`F_TRANSLATION`, `C_BAD_STE`, …).
    pub fn name(&self) -> &'static str {
        event_name(self.id()).unwrap_or("IMPDEF_EVENT")
    }

    /// The stream the event is about.
    pub fn stream(&self) -> StreamRef {
        match self {
            Event::UnsupportedUpstream { stream, .. }
            | Event::BadStreamId(stream)
            | Event::BadSte(stream)
            | Event::BadAtsTreq { stream, .. }
            | Event::StreamDisabled(stream)
            | Event::TranslForbidden { stream, .. }
            | Event::BadSubstreamId(stream)
            | Event::BadCd(stream)
            | Event::CfgConflict { stream, .. } => *stream,
            Event::SteFetch(f) | Event::CdFetch(f) | Event::VmsFetch(f) => f.stream,
            Event::WalkExternalAbort { fault, .. } => fault.stream,
            Event::Translation(t)
            | Event::AddressSize(t)
            | Event::Access(t)
            | Event::Permission(t)
            | Event::TlbConflict(t) => t.fault.stream,
            Event::PageRequest(p) => p.stream,
            Event::ImplementationDefined { payload, .. } => get_stream(payload),
        }
    }

    /// Builds the record. Values wider than their field are truncated.
    pub fn encode(&self) -> EventRecord {
        use fields::*;
        let mut w = [0u64; 4];
        if let Event::ImplementationDefined { payload, .. } = self {
            w = *payload;
        }
        EVENT_ID.set(&mut w, u64::from(self.id()));
        match self {
            Event::UnsupportedUpstream {
                stream,
                reason,
                privileged,
                instruction,
                read,
                input_addr,
            } => {
                put_stream(&mut w, stream);
                REASON.set(&mut w, u64::from(*reason));
                PNU.set(&mut w, u64::from(*privileged));
                IND.set(&mut w, u64::from(*instruction));
                RNW.set(&mut w, u64::from(*read));
                INPUT_ADDR.set(&mut w, *input_addr);
            }
            Event::BadStreamId(s)
            | Event::BadSte(s)
            | Event::StreamDisabled(s)
            | Event::BadSubstreamId(s)
            | Event::BadCd(s) => put_stream(&mut w, s),
            Event::SteFetch(f) | Event::CdFetch(f) | Event::VmsFetch(f) => put_fetch(&mut w, f),
            Event::BadAtsTreq { stream, input_addr } => {
                put_stream(&mut w, stream);
                INPUT_ADDR.set(&mut w, *input_addr);
            }
            Event::TranslForbidden {
                stream,
                read,
                input_addr,
            } => {
                put_stream(&mut w, stream);
                RNW.set(&mut w, u64::from(*read));
                INPUT_ADDR.set(&mut w, *input_addr);
            }
            Event::WalkExternalAbort { fault, fetch_addr } => {
                put_fault(&mut w, fault);
                FETCH_ADDR.set(&mut w, fetch_addr >> FETCH_ADDR.lo);
            }
            Event::Translation(t)
            | Event::AddressSize(t)
            | Event::Access(t)
            | Event::Permission(t)
            | Event::TlbConflict(t) => put_translation(&mut w, t),
            Event::CfgConflict { stream, reason } => {
                put_stream(&mut w, stream);
                REASON32.set(&mut w, u64::from(*reason));
            }
            Event::PageRequest(p) => {
                put_stream(&mut w, &p.stream);
                for (field, flag) in PAGE_REQUEST_PERMS.iter().zip(p.perms) {
                    field.set(&mut w, u64::from(flag));
                }
                SPAN.set(&mut w, u64::from(p.span));
                PAGE_ADDR.set(&mut w, p.addr >> PAGE_ADDR.lo);
            }
            Event::ImplementationDefined { .. } => {}
        }
        EventRecord::from_words(w)
    }
}

/// The specification's name of an event number, `None` for a reserved one.
pub fn event_name(id: u8) -> Option<&'static str> {
    use event_id::*;
    Some(match id {
        F_UUT => "F_UUT",
        C_BAD_STREAMID => "C_BAD_STREAMID",
        F_STE_FETCH => "F_STE_FETCH",
        C_BAD_STE => "C_BAD_STE",
        F_BAD_ATS_TREQ => "F_BAD_ATS_TREQ",
        F_STREAM_DISABLED => "F_STREAM_DISABLED",
        F_TRANSL_FORBIDDEN => "F_TRANSL_FORBIDDEN",
        C_BAD_SUBSTREAMID => "C_BAD_SUBSTREAMID",
        F_CD_FETCH => "F_CD_FETCH",
        C_BAD_CD => "C_BAD_CD",
        F_WALK_EABT => "F_WALK_EABT",
        F_TRANSLATION => "F_TRANSLATION",
        F_ADDR_SIZE => "F_ADDR_SIZE",
        F_ACCESS => "F_ACCESS",
        F_PERMISSION => "F_PERMISSION",
        F_TLB_CONFLICT => "F_TLB_CONFLICT",
        F_CFG_CONFLICT => "F_CFG_CONFLICT",
        E_PAGE_REQUEST => "E_PAGE_REQUEST",
        F_VMS_FETCH => "F_VMS_FETCH",
        IMPDEF_FIRST..=IMPDEF_LAST => "IMPDEF_EVENT",
        _ => return None,
    })
}

/// The fields of an event with this number, for printers (event number first).
pub fn fields_of(id: u8) -> &'static [Field] {
    use event_id::*;
    use fields::*;
    const FAULT: &[Field] = &[
        EVENT_ID,
        SSV,
        SUBSTREAM_ID,
        STREAM_ID,
        STAG,
        STALL,
        PNU,
        IND,
        RNW,
        S2,
        CLASS,
        TT_RNW,
        INPUT_ADDR,
        IPA,
    ];
    const FETCH: &[Field] = &[
        EVENT_ID,
        SSV,
        SUBSTREAM_ID,
        STREAM_ID,
        REASON,
        GPCF,
        FETCH_ADDR,
    ];
    const STREAM: &[Field] = &[EVENT_ID, SSV, SUBSTREAM_ID, STREAM_ID];
    match id {
        F_UUT => &[
            EVENT_ID,
            SSV,
            SUBSTREAM_ID,
            STREAM_ID,
            REASON,
            PNU,
            IND,
            RNW,
            INPUT_ADDR,
        ],
        C_BAD_STREAMID | C_BAD_STE | F_STREAM_DISABLED | C_BAD_SUBSTREAMID | C_BAD_CD => STREAM,
        F_STE_FETCH | F_CD_FETCH | F_VMS_FETCH => FETCH,
        F_BAD_ATS_TREQ => &[EVENT_ID, SSV, SUBSTREAM_ID, STREAM_ID, INPUT_ADDR],
        F_TRANSL_FORBIDDEN => &[EVENT_ID, SSV, SUBSTREAM_ID, STREAM_ID, RNW, INPUT_ADDR],
        F_WALK_EABT => &[
            EVENT_ID,
            SSV,
            SUBSTREAM_ID,
            STREAM_ID,
            STAG,
            STALL,
            PNU,
            IND,
            RNW,
            S2,
            CLASS,
            TT_RNW,
            INPUT_ADDR,
            FETCH_ADDR,
        ],
        F_TRANSLATION | F_ADDR_SIZE | F_ACCESS | F_PERMISSION | F_TLB_CONFLICT => FAULT,
        F_CFG_CONFLICT => &[EVENT_ID, SSV, SUBSTREAM_ID, STREAM_ID, REASON32],
        E_PAGE_REQUEST => &[
            EVENT_ID,
            SSV,
            SUBSTREAM_ID,
            STREAM_ID,
            UX,
            UW,
            UR,
            PX,
            PW,
            PR,
            SPAN,
            PAGE_ADDR,
        ],
        _ => &[EVENT_ID],
    }
}

impl EventRecord {
    /// The event number.
    pub fn id(&self) -> u8 {
        fields::EVENT_ID.get(&self.to_words()) as u8
    }

    /// Decodes the record, or names the reserved event number or field value.
    pub fn decode(&self) -> Result<Event, DecodeError> {
        use event_id::*;
        use fields::*;
        let w = self.to_words();
        let id = self.id();
        let stream = get_stream(&w);
        Ok(match id {
            F_UUT => Event::UnsupportedUpstream {
                stream,
                reason: REASON.get(&w) as u16,
                privileged: PNU.flag(&w),
                instruction: IND.flag(&w),
                read: RNW.flag(&w),
                input_addr: INPUT_ADDR.get(&w),
            },
            C_BAD_STREAMID => Event::BadStreamId(stream),
            F_STE_FETCH => Event::SteFetch(get_fetch(&w)),
            C_BAD_STE => Event::BadSte(stream),
            F_BAD_ATS_TREQ => Event::BadAtsTreq {
                stream,
                input_addr: INPUT_ADDR.get(&w),
            },
            F_STREAM_DISABLED => Event::StreamDisabled(stream),
            F_TRANSL_FORBIDDEN => Event::TranslForbidden {
                stream,
                read: RNW.flag(&w),
                input_addr: INPUT_ADDR.get(&w),
            },
            C_BAD_SUBSTREAMID => Event::BadSubstreamId(stream),
            F_CD_FETCH => Event::CdFetch(get_fetch(&w)),
            C_BAD_CD => Event::BadCd(stream),
            F_WALK_EABT => Event::WalkExternalAbort {
                fault: get_fault(&w)?,
                fetch_addr: FETCH_ADDR.get(&w) << FETCH_ADDR.lo,
            },
            F_TRANSLATION => Event::Translation(get_translation(&w)?),
            F_ADDR_SIZE => Event::AddressSize(get_translation(&w)?),
            F_ACCESS => Event::Access(get_translation(&w)?),
            F_PERMISSION => Event::Permission(get_translation(&w)?),
            F_TLB_CONFLICT => Event::TlbConflict(get_translation(&w)?),
            F_CFG_CONFLICT => Event::CfgConflict {
                stream,
                reason: REASON32.get(&w) as u32,
            },
            E_PAGE_REQUEST => Event::PageRequest(PageRequestEvent {
                stream,
                perms: PAGE_REQUEST_PERMS.map(|f| f.flag(&w)),
                span: SPAN.get(&w) as u8,
                addr: PAGE_ADDR.get(&w) << PAGE_ADDR.lo,
            }),
            F_VMS_FETCH => Event::VmsFetch(get_fetch(&w)),
            IMPDEF_FIRST..=IMPDEF_LAST => {
                let mut payload = w;
                EVENT_ID.set(&mut payload, 0);
                Event::ImplementationDefined { id, payload }
            }
            _ => {
                return Err(DecodeError::Reserved {
                    structure: "EVENT",
                    field: EVENT_ID.name,
                    value: u64::from(id),
                })
            }
        })
    }
}

/// What an event field's value means, where the field is an enumeration (for printers).
pub fn describe_field(field: &Field, value: u64) -> Option<&'static str> {
    use fields::*;
    match field.name {
        n if n == EVENT_ID.name => event_name(value as u8).or(Some("reserved")),
        n if n == CLASS.name => {
            Some(FaultClass::decode(value).map_or("reserved", FaultClass::describe))
        }
        _ => None,
    }
}

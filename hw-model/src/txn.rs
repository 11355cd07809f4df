//! What crosses the SMMU's input and output: a transaction, its result, why it aborted, and
//! the event record it generated (§7.3).

use crate::fields::evt;

/// One DMA transaction presented to the SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (PASID), if any.
    pub ssid: Option<u32>,
    /// Input address.
    pub iova: u64,
    /// Write (true) or read.
    pub write: bool,
    /// Size in bytes (the data access is clamped to the 4 KiB page).
    pub size: u32,
    /// Privileged (PnU = 1) access.
    pub privileged: bool,
    /// Instruction (InD = 1) access.
    pub instruction: bool,
}

impl Transaction {
    /// A privileged data read of 8 bytes.
    pub fn read(sid: u32, iova: u64) -> Self {
        Self {
            sid,
            ssid: None,
            iova,
            write: false,
            size: 8,
            privileged: true,
            instruction: false,
        }
    }
    /// A privileged data write of 8 bytes.
    pub fn write(sid: u32, iova: u64) -> Self {
        Self {
            write: true,
            ..Self::read(sid, iova)
        }
    }
    /// The same transaction with a SubstreamID.
    pub fn with_ssid(mut self, ssid: u32) -> Self {
        self.ssid = Some(ssid);
        self
    }
    /// The same transaction, unprivileged.
    pub fn unprivileged(mut self) -> Self {
        self.privileged = false;
        self
    }
}

/// What happened to a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnResult {
    /// Translated to this physical address.
    Translated {
        /// Output PA.
        pa: u64,
    },
    /// Passed through untranslated (GBPA bypass or STE bypass).
    Bypass {
        /// Output PA (= input address).
        pa: u64,
    },
    /// Terminated, with the event record if one was generated.
    Abort {
        /// Why.
        cause: Cause,
        /// The event generated (whether or not the queue accepted it).
        event: Option<Event>,
    },
}

impl TxnResult {
    /// The output PA if the transaction went through.
    pub fn pa(&self) -> Option<u64> {
        match self {
            Self::Translated { pa } | Self::Bypass { pa } => Some(*pa),
            Self::Abort { .. } => None,
        }
    }
}

/// Why a transaction was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// SMMUEN = 0 and GBPA.ABORT = 1 (no event, R15).
    GbpaAbort,
    /// StreamID out of range (C_BAD_STREAMID if CR2.RECINVSID, S1/S2).
    BadStreamId,
    /// L1STD or STE fetch aborted (F_STE_FETCH, S5).
    SteFetch,
    /// STE invalid or ILLEGAL (C_BAD_STE, S3).
    BadSte,
    /// STE.Config = 0b0xx: abort without an event.
    SteAbort,
    /// SubstreamID not valid for the STE (C_BAD_SUBSTREAMID).
    BadSubstreamId,
    /// No SubstreamID and S1DSS = terminate (F_STREAM_DISABLED).
    StreamDisabled,
    /// L1CD or CD fetch aborted (F_CD_FETCH).
    CdFetch,
    /// CD invalid or ILLEGAL (C_BAD_CD, S4).
    BadCd,
    /// Translation fault (F_TRANSLATION).
    Translation,
    /// Address size fault (F_ADDR_SIZE); without an event, an input above the OAS while the
    /// SMMU is disabled (§3.4) or a Translated transaction's PA above it (§3.9.1.1).
    AddrSize,
    /// Access flag fault (F_ACCESS).
    Access,
    /// Permission fault (F_PERMISSION).
    Permission,
    /// External abort on a table walk (F_WALK_EABT).
    WalkEabt,
    /// An ATS Translated transaction the SMMU does not let through (F_TRANSL_FORBIDDEN, or
    /// silently for ATS not implemented; §3.9.1.3).
    TranslForbidden,
    /// An ATS endpoint did not issue the access: its Translation Request was refused (UR or
    /// CA) or granted no permission for it (§3.9.1.2).
    AtsDenied,
    /// The output address failed its Granule Protection Check (§3.25.1): terminated like an
    /// External abort, with no event record.
    GranuleProtection,
}

/// A 32-byte event record as the model wrote (or tried to write) it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The four 64-bit words.
    pub raw: [u64; 4],
}

impl Event {
    /// Event number (e.g. 0x10 F_TRANSLATION).
    pub fn id(&self) -> u8 {
        evt::ID.get(&self.raw) as u8
    }
    /// StreamID.
    pub fn sid(&self) -> u32 {
        evt::SID.get(&self.raw) as u32
    }
    /// SubstreamID if SSV.
    pub fn ssid(&self) -> Option<u32> {
        (evt::SSV.get(&self.raw) != 0).then(|| evt::SSID.get(&self.raw) as u32)
    }
    /// InputAddr.
    pub fn input_addr(&self) -> u64 {
        evt::INPUT_ADDR.get(&self.raw)
    }
    /// IPA\[55:12\] (stage-2 faults), as an address.
    pub fn ipa(&self) -> u64 {
        evt::IPA.get(&self.raw) << 12
    }
    /// FetchAddr\[55:3\], as an address.
    pub fn fetch_addr(&self) -> u64 {
        evt::FETCH_ADDR.get(&self.raw) << 3
    }
    /// S2 bit.
    pub fn s2(&self) -> bool {
        evt::S2.get(&self.raw) != 0
    }
    /// CLASS (0 CD, 1 TT, 2 IN).
    pub fn class(&self) -> u8 {
        evt::CLASS.get(&self.raw) as u8
    }
    /// RnW (true = read).
    pub fn rnw(&self) -> bool {
        evt::RNW.get(&self.raw) != 0
    }
    /// PnU (true = privileged).
    pub fn pnu(&self) -> bool {
        evt::PNU.get(&self.raw) != 0
    }
}

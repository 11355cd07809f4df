//! PRI queue records: ATS page requests (IHI 0070 G.b chapter 8), 16 bytes.
//!
//! The record layout is a figure the rendered specification lacks; positions follow Linux,
//! and the check against `smmuv3-fields.json` says so for each field.

use super::entry::words_struct;
use super::field::Field;

/// Bit positions of the PRI record (chapter 8; figure).
pub mod fields {
    use super::Field;

    /// `StreamID`.
    pub const STREAM_ID: Field = Field::new("StreamID", 0, 31, 0);
    /// `SubstreamID`.
    pub const SUBSTREAM_ID: Field = Field::new("SubstreamID", 0, 51, 32);
    /// `Priv`: privileged access requested.
    pub const PRIV: Field = Field::new("Priv", 0, 58, 58);
    /// `X`: execute permission requested.
    pub const EXEC: Field = Field::new("X", 0, 59, 59);
    /// `R`: read permission requested.
    pub const READ: Field = Field::new("R", 0, 60, 60);
    /// `W`: write permission requested.
    pub const WRITE: Field = Field::new("W", 0, 61, 61);
    /// `Last`: the last request of its page request group.
    pub const LAST: Field = Field::new("Last", 0, 62, 62);
    /// `SSV`: `SubstreamID` is valid.
    pub const SSV: Field = Field::new("SSV", 0, 63, 63);
    /// `PRGIndex`.
    pub const PRG_INDEX: Field = Field::new("PRGIndex", 1, 8, 0);
    /// `Page address\[63:12\]`.
    pub const ADDRESS: Field = Field::address("Page address", 1, 63, 12);

    /// Every field, lowest bit first.
    pub const FIELDS: &[Field] = &[
        STREAM_ID,
        SUBSTREAM_ID,
        PRIV,
        EXEC,
        READ,
        WRITE,
        LAST,
        SSV,
        PRG_INDEX,
        ADDRESS,
    ];
}

words_struct! {
    /// A PRI queue record: 16 bytes, two little-endian words.
    PriRecord, 2
}

/// A page request (chapter 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct PageRequest {
    /// `StreamID`.
    pub sid: u32,
    /// `SubstreamID` when `SSV` is set.
    pub ssid: Option<u32>,
    /// `Priv`.
    pub privileged: bool,
    /// `X`.
    pub exec: bool,
    /// `R`.
    pub read: bool,
    /// `W`.
    pub write: bool,
    /// `Last`.
    pub last: bool,
    /// `PRGIndex` (9 bits).
    pub prg_index: u16,
    /// Page address (bits \[63:12\]).
    pub addr: u64,
}

impl PageRequest {
    /// A Stop Marker: `Last = 1`, `R = W = 0`, with a SubstreamID (chapter 8).
    pub fn is_stop_marker(&self) -> bool {
        self.last && !self.read && !self.write && self.ssid.is_some()
    }

    /// Builds the record. Values wider than their field are truncated.
    pub fn encode(&self) -> PriRecord {
        use fields::*;
        let mut w = [0u64; 2];
        STREAM_ID.set(&mut w, u64::from(self.sid));
        if let Some(ssid) = self.ssid {
            SSV.set(&mut w, 1);
            SUBSTREAM_ID.set(&mut w, u64::from(ssid));
        }
        PRIV.set(&mut w, u64::from(self.privileged));
        EXEC.set(&mut w, u64::from(self.exec));
        READ.set(&mut w, u64::from(self.read));
        WRITE.set(&mut w, u64::from(self.write));
        LAST.set(&mut w, u64::from(self.last));
        PRG_INDEX.set(&mut w, u64::from(self.prg_index));
        ADDRESS.set(&mut w, self.addr >> ADDRESS.lo);
        PriRecord::from_words(w)
    }
}

impl PriRecord {
    /// Decodes the record. Every bit pattern is a well-formed request, so this cannot fail.
    pub fn decode(&self) -> PageRequest {
        use fields::*;
        let w = self.to_words();
        PageRequest {
            sid: STREAM_ID.get(&w) as u32,
            ssid: SSV.flag(&w).then(|| SUBSTREAM_ID.get(&w) as u32),
            privileged: PRIV.flag(&w),
            exec: EXEC.flag(&w),
            read: READ.flag(&w),
            write: WRITE.flag(&w),
            last: LAST.flag(&w),
            prg_index: PRG_INDEX.get(&w) as u16,
            addr: ADDRESS.get(&w) << ADDRESS.lo,
        }
    }
}

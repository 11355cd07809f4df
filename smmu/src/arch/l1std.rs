//! L1STD, the level-1 Stream Table Descriptor of a 2-level stream table (IHI 0070 G.b §5.1).

use super::entry::words_struct;
use super::field::Field;
use super::DecodeError;

/// Bit positions of the L1STD (IHI 0070 G.b §5.1).
pub mod fields {
    use super::Field;

    /// `Span` (IHI 0070 G.b §5.1): 0 = invalid; 1..=11 = the L2 table holds 2^(Span−1) STEs.
    pub const SPAN: Field = Field::new("Span", 0, 4, 0);
    /// `L2Ptr` (IHI 0070 G.b §5.1): the level-2 table, aligned to its size.
    pub const L2PTR: Field = Field::address("L2Ptr", 0, 55, 6);

    /// Every field, lowest bit first.
    pub const FIELDS: &[Field] = &[SPAN, L2PTR];
}

/// Largest `Span` with a meaning; 12..=31 are reserved (§5.1).
pub const MAX_SPAN: u8 = 11;

/// The `SPLIT` this driver uses: 256 STEs (16 KiB) per level-2 table, as Linux does.
pub const STRTAB_SPLIT: u32 = 8;

words_struct! {
    /// A level-1 stream table descriptor: one little-endian word (§5.1).
    L1Std, 1
}

/// The typed content of a valid L1STD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct L1StdConfig {
    /// `Span`, 1..=11: the level-2 table holds 2^(span−1) STEs.
    pub span: u8,
    /// `L2Ptr` (bits \[55:6\]).
    pub l2_ptr: u64,
}

impl L1StdConfig {
    /// Number of STEs in the level-2 table.
    pub const fn num_stes(&self) -> u32 {
        1u32 << (self.span.saturating_sub(1) & 31)
    }

    /// Size of the level-2 table in bytes (64 bytes per STE).
    pub const fn l2_size(&self) -> u64 {
        (self.num_stes() as u64) * 64
    }

    /// Encodes the descriptor (a `span` of 0 would make it invalid: use [`L1Std::INVALID`]).
    pub fn encode(&self) -> L1Std {
        let mut w = [0u64; 1];
        fields::SPAN.set(&mut w, u64::from(self.span));
        fields::L2PTR.set(&mut w, self.l2_ptr >> fields::L2PTR.lo);
        L1Std::from_words(w)
    }
}

impl L1Std {
    /// An all-zero, invalid descriptor.
    pub const INVALID: L1Std = L1Std([zerocopy::little_endian::U64::ZERO; 1]);

    /// Decodes the descriptor: `Ok(None)` for `Span = 0`, the configuration for 1..=11, and a
    /// reserved-encoding error for 12..=31 (which hardware treats as invalid).
    pub fn decode(&self) -> Result<Option<L1StdConfig>, DecodeError> {
        let w = self.to_words();
        let span = fields::SPAN.get(&w);
        match span {
            0 => Ok(None),
            1..=11 => Ok(Some(L1StdConfig {
                span: span as u8,
                l2_ptr: fields::L2PTR.get(&w) << fields::L2PTR.lo,
            })),
            _ => Err(DecodeError::Reserved {
                structure: "L1STD",
                field: fields::SPAN.name,
                value: span,
            }),
        }
    }
}

/// What an L1STD field's value means (for printers).
pub fn describe_field(field: &Field, value: u64) -> Option<&'static str> {
    (field.name == fields::SPAN.name).then_some(match value {
        0 => "invalid",
        1..=11 => "valid",
        _ => "reserved (treated as invalid)",
    })
}

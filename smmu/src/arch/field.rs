//! Field positions inside the in-memory structures (STE, CD, descriptors, commands, records).
//!
//! Each structure is an array of little-endian 64-bit words; a [`Field`] names one bit range of
//! one word. The constants built from it in the structure modules are the only code that knows
//! where a field sits: builders and decoders go through [`Field::get`] and [`Field::set`].

/// A bit range `[hi:lo]` of the 64-bit word `qword` of a structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// The name the specification uses (`Config`, `S1ContextPtr`, `StreamID`, …).
    pub name: &'static str,
    /// Index of the 64-bit word, lowest-addressed first.
    pub qword: usize,
    /// Highest bit within the word.
    pub hi: u32,
    /// Lowest bit within the word.
    pub lo: u32,
}

impl Field {
    /// Defines a field. `hi >= lo` and `hi < 64` are checked at compile time where the constant
    /// is used.
    pub const fn new(name: &'static str, qword: usize, hi: u32, lo: u32) -> Self {
        assert!(hi < 64 && lo <= hi, "field bits out of range");
        Field {
            name,
            qword,
            hi,
            lo,
        }
    }

    /// Number of bits.
    pub const fn width(&self) -> u32 {
        self.hi - self.lo + 1
    }

    /// The field's mask, shifted down to bit 0.
    pub const fn max(&self) -> u64 {
        if self.width() == 64 {
            u64::MAX
        } else {
            (1u64 << self.width()) - 1
        }
    }

    /// The field's mask in place within its word.
    pub const fn mask_in_word(&self) -> u64 {
        self.max() << self.lo
    }

    /// Absolute bit positions `(hi, lo)` counting from bit 0 of word 0.
    pub const fn abs_bits(&self) -> (u32, u32) {
        let base = self.qword as u32 * 64;
        (base + self.hi, base + self.lo)
    }

    /// Reads the field. A word index beyond the array reads as 0 (cannot happen for the
    /// constants of this crate, whose structures are sized for their fields).
    #[inline]
    pub fn get<const N: usize>(&self, words: &[u64; N]) -> u64 {
        words
            .get(self.qword)
            .map_or(0, |w| (w >> self.lo) & self.max())
    }

    /// Reads a one-bit field as a flag.
    #[inline]
    pub fn flag<const N: usize>(&self, words: &[u64; N]) -> bool {
        self.get(words) != 0
    }

    /// Writes the field; bits of `value` above the field's width are dropped.
    #[inline]
    pub fn set<const N: usize>(&self, words: &mut [u64; N], value: u64) {
        if let Some(w) = words.get_mut(self.qword) {
            *w = (*w & !self.mask_in_word()) | ((value & self.max()) << self.lo);
        }
    }

    /// Whether `value` fits in the field without truncation.
    pub const fn fits(&self, value: u64) -> bool {
        value & !self.max() == 0
    }

    /// The field's bits of an address-carrying field, in place: for a field holding
    /// `Address[hi:lo]` at the same bit positions (e.g. `S1ContextPtr\[55:6\]`) this is the
    /// address with bits outside `[hi:lo]` cleared.
    pub const fn addr_mask(&self) -> u64 {
        self.mask_in_word()
    }
}

/// Declares a list of a structure's fields in specification order, for decoders and printers.
#[macro_export]
#[doc(hidden)]
macro_rules! field_list {
    ($($f:ident),* $(,)?) => { &[$($f),*] };
}

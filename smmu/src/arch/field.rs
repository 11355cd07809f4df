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
    /// The field holds bits `[hi:lo]` of an address at their own bit positions
    /// (`S1ContextPtr` is `PA[55:6]` in bits \[55:6\]): the address is the value shifted up by
    /// `lo`. Built by [`Field::address`].
    pub is_address: bool,
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
            is_address: false,
        }
    }

    /// Defines a field that holds bits `[hi:lo]` of an address at their own positions (a
    /// table pointer, a translation-table base, an MSI or fault address).
    pub const fn address(name: &'static str, qword: usize, hi: u32, lo: u32) -> Self {
        let mut f = Field::new(name, qword, hi, lo);
        f.is_address = true;
        f
    }

    /// For an address field, the address a field value (as [`Field::get`] returns it)
    /// stands for: the value shifted up by `lo`; `None` for any other field.
    pub const fn address_of(&self, value: u64) -> Option<u64> {
        if self.is_address {
            Some((value & self.max()) << self.lo)
        } else {
            None
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

//! A checking [`EntrySlot`]: an entry in an array, and an observer that plays the SMMU's part.
//!
//! It is what the transition tests run the writer against, and what a test of anything built
//! on the writer can use. At every store and every sync it checks that the SMMU could only see
//! an entry that behaves like the old one or the new one ([`behaves_like`]), or an entry whose
//! word 0 is all zero (invalid; this is how the Linux KUnit suite defines "not hitless").
//!
//! The check at a sync is stronger than the Linux recorder's: the SMMU reads an entry's words
//! in no defined order, so a fetch that overlaps a step may combine, word by word, any value a
//! word held during that step. At each sync the slot checks every such combination of the
//! words stored since the previous sync (each word's value before and after the step), not
//! only the image in memory.

use super::write::{behaves_like, EntryRules, EntrySlot};

/// The first image that behaved like neither the old nor the new entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation<const N: usize> {
    /// Syncs completed before the image could be fetched.
    pub after_syncs: u32,
    /// The offending image.
    pub image: [u64; N],
}

/// An entry in memory, with a record of what the writer did to it. `N` must be at most 16 (the
/// torn-fetch check enumerates up to 2^N combinations).
#[derive(Clone, Debug)]
pub struct CheckedSlot<'r, const N: usize, R: EntryRules<N> + ?Sized> {
    rules: &'r R,
    old: [u64; N],
    new: [u64; N],
    image: [u64; N],
    step_start: [u64; N],
    written: u32,
    /// Number of syncs.
    pub syncs: u32,
    /// Number of 64-bit stores.
    pub stores: u32,
    /// Whether a sync ever saw word 0 all zero (the entry invalid): the Linux suite's
    /// definition of a transition that is not hitless.
    pub invalid_seen: bool,
    /// Whether a word was stored twice between two syncs (the writer never does; the torn
    /// check would then only see the word's first and last values).
    pub rewritten: bool,
    /// The first image that behaved like neither entry.
    pub violation: Option<Violation<N>>,
}

impl<'r, const N: usize, R: EntryRules<N> + ?Sized> CheckedSlot<'r, N, R> {
    const FITS: () = assert!(N <= 16, "CheckedSlot checks at most 16 words");

    /// A slot holding `old`, to be rewritten to `new`.
    pub fn new(rules: &'r R, old: [u64; N], new: [u64; N]) -> Self {
        let () = Self::FITS;
        CheckedSlot {
            rules,
            old,
            new,
            image: old,
            step_start: old,
            written: 0,
            syncs: 0,
            stores: 0,
            invalid_seen: false,
            rewritten: false,
            violation: None,
        }
    }

    /// The entry as it is now.
    pub fn image(&self) -> [u64; N] {
        self.image
    }

    /// Whether stores were made that no sync has published yet.
    pub fn unsynced(&self) -> bool {
        self.written != 0
    }

    fn check(&mut self, image: &[u64; N]) {
        if self.violation.is_some() || image.first().is_some_and(|&q0| q0 == 0) {
            return;
        }
        if !behaves_like(self.rules, image, &self.old)
            && !behaves_like(self.rules, image, &self.new)
        {
            self.violation = Some(Violation {
                after_syncs: self.syncs,
                image: *image,
            });
        }
    }

    /// Every combination of the step's start and current values of the words stored since the
    /// last sync.
    fn check_torn(&mut self) {
        let words: u32 = self.written;
        let count = words.count_ones();
        for combo in 0..(1u32 << count) {
            let mut img = self.step_start;
            let mut pick = 0;
            for (i, (w, &now)) in img.iter_mut().zip(&self.image).enumerate() {
                if words & (1 << i) != 0 {
                    if combo & (1 << pick) != 0 {
                        *w = now;
                    }
                    pick += 1;
                }
            }
            self.check(&img);
        }
    }
}

impl<const N: usize, R: EntryRules<N> + ?Sized> EntrySlot<N> for CheckedSlot<'_, N, R> {
    type Error = core::convert::Infallible;

    fn read(&self) -> [u64; N] {
        self.image
    }

    fn write_qword(&mut self, index: usize, value: u64) {
        if let Some(w) = self.image.get_mut(index) {
            *w = value;
        }
        let bit = 1u32.checked_shl(index as u32).unwrap_or(0);
        if self.written & bit != 0 {
            self.rewritten = true;
        }
        self.written |= bit;
        self.stores += 1;
        let img = self.image;
        self.check(&img);
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.check_torn();
        if self.image.first().is_some_and(|&q0| q0 == 0) {
            self.invalid_seen = true;
        }
        self.syncs += 1;
        self.step_start = self.image;
        self.written = 0;
        Ok(())
    }
}

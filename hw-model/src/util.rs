//! Small deterministic helpers: a splitmix64 PRNG and a fast hasher for the caches.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// One splitmix64 output for `x` (stateless mixing).
#[inline]
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic PRNG (splitmix64 sequence).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0 ^ 0x5851_F42D_4C95_7F2D)
    }
    /// Uniform in `0..n` (n = 0 gives 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Multiply-rotate hasher (FxHash-like); deterministic, fast for small integer keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0x517C_C1B7_2722_0A95;

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
        }
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// HashMap with the fast deterministic hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A set of page addresses with a 64-bit Bloom mask for fast negative lookups (used on every
/// CPU store, so the common "nothing pending" and "not this page" cases cost a few instructions).
#[derive(Clone, Debug, Default)]
pub(crate) struct PageSet {
    pages: Vec<(u64, &'static str)>,
    bloom: u64,
}

impl PageSet {
    #[inline]
    fn bit(page: u64) -> u64 {
        1u64 << ((page >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
    }
    /// Adds a page (duplicates are allowed: lookups find the first, and the set is cleared at
    /// every CMD_SYNC, so a dedupe scan would only cost time on the command path).
    pub(crate) fn insert(&mut self, page: u64, what: &'static str) {
        self.bloom |= Self::bit(page);
        self.pages.push((page, what));
    }
    #[inline]
    pub(crate) fn get(&self, page: &u64) -> Option<&&'static str> {
        if self.bloom & Self::bit(*page) == 0 {
            return None;
        }
        self.pages.iter().find(|(p, _)| p == page).map(|(_, w)| w)
    }
    pub(crate) fn clear(&mut self) {
        self.pages.clear();
        self.bloom = 0;
    }
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }
}

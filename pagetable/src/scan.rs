//! Scans of runs of descriptors: the three folds the map and unmap paths need, vectorised.
//!
//! Every CPU-side access to a table is atomic, so that a buggy overlapping caller racing on the
//! same descriptors is never a data race (Rust undefined behaviour). Relaxed atomic loads compile
//! to plain loads, but LLVM never vectorises atomic loads, and a 256-descriptor scan done one
//! 64-bit load at a time took half again as long as the single-owner table's vector code
//! (pagetable/BENCHMARKS.md). Plain vector loads of the same memory would be non-atomic reads that a buggy
//! caller's stores race with.
//!
//! So where the target has 128-bit vector registers, the loads are done 16 bytes at a time by
//! inline assembly, from a 16-byte aligned address, with an instruction whose effect the
//! architecture defines as two single-copy atomic 64-bit reads. To the Rust memory model such a
//! block is therefore two relaxed atomic loads (inline assembly is allowed whatever effects some
//! Rust code could have), and the arithmetic runs on the vector registers. Nothing is promised
//! about the two reads together (another CPU's store may land between them), and nothing needs
//! it: each descriptor is read whole, as the scalar loads read it. The same argument is what
//! `atomic-memcpy` rests on.
//!
//! * x86-64 with SSE2: `MOVDQA`. Each aligned quadword read is atomic (Intel SDM Vol. 3A,
//!   "Guaranteed Atomic Operations"; AMD APM Vol. 2, "Memory Access Atomicity"), and a 16-byte
//!   SSE access may be carried out as such quadword accesses.
//! * AArch64 with NEON (Advanced SIMD): `LDR Q`. Arm DDI 0487, B2.2.1 "Requirements for
//!   single-copy atomicity", treats a read of a 128-bit value into a SIMD&FP register from a
//!   64-bit aligned address as a pair of single-copy atomic 64-bit reads; a 16-byte aligned
//!   address is 64-bit aligned, and `LDR Q` is that read in its plainest form (no element or
//!   structure load is needed). `aarch64-unknown-none` enables NEON, so bare-metal builds for it
//!   get these scans; the choice follows `target_feature = "neon"`, not the architecture, so a
//!   kernel built without NEON (`aarch64-unknown-none-softfloat`, or a target that turns `neon`
//!   off) gets the plain folds below and never touches a vector register here.
//!
//! Elsewhere (other architectures, the targets above without SSE2 or NEON, Miri, loom) the scans
//! are relaxed atomic loads folded in Rust, one descriptor at a time.

use crate::sync::{Desc, Ordering};

const VALID: u64 = 1;

#[inline(always)]
fn ld(d: &Desc) -> u64 {
    d.load(Ordering::Relaxed)
}

/// Two descriptors in one 128-bit register, and the lane-wise arithmetic the folds need: one
/// implementation per vector architecture (`lanes` below), one set of folds over it (`vector`).
#[cfg(any(
    all(
        target_arch = "x86_64",
        target_feature = "sse2",
        not(miri),
        not(all(loom, test))
    ),
    all(
        target_arch = "aarch64",
        target_feature = "neon",
        not(miri),
        not(all(loom, test))
    )
))]
trait Pair: Copy {
    /// Both lanes `v`.
    fn splat(v: u64) -> Self;
    /// Descriptors `p[0]` and `p[1]`, one per lane, read as two single-copy atomic 64-bit loads
    /// (see the module documentation).
    ///
    /// # Safety
    ///
    /// `p` is 16-byte aligned and `p[0..2]` are descriptors of a live table.
    unsafe fn load2(p: *const Desc) -> Self;
    fn or(self, other: Self) -> Self;
    fn and(self, other: Self) -> Self;
    fn add(self, other: Self) -> Self;
    /// Each lane shifted right by one bit.
    fn shr1(self) -> Self;
    /// The two lanes. The folds are symmetric in them, so which lane holds which descriptor of
    /// a pair (it differs with the endianness) does not matter.
    fn lanes(self) -> (u64, u64);
}

/// `fn op(self, other) -> Self` of [`Pair`] as one lane-wise intrinsic on the two registers.
#[cfg(any(
    all(
        target_arch = "x86_64",
        target_feature = "sse2",
        not(miri),
        not(all(loom, test))
    ),
    all(
        target_arch = "aarch64",
        target_feature = "neon",
        not(miri),
        not(all(loom, test))
    )
))]
macro_rules! lane_ops {
    ($($op:ident => $intrinsic:ident),*) => {$(
        #[inline(always)]
        fn $op(self, other: Self) -> Self {
            // SAFETY: register-only arithmetic on a vector unit this target enables (the
            // module's cfg).
            Self(unsafe { $intrinsic(self.0, other.0) })
        }
    )*};
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "sse2",
    not(miri),
    not(all(loom, test))
))]
mod lanes {
    use core::arch::x86_64::{
        __m128i, _mm_add_epi64, _mm_and_si128, _mm_cvtsi128_si64, _mm_or_si128, _mm_set1_epi64x,
        _mm_srli_epi64, _mm_unpackhi_epi64,
    };

    use super::{Desc, Pair};

    /// The scans this build compiled (a test checks it is the one the target calls for).
    #[cfg(all(test, not(loom)))]
    pub(super) const KIND: &str = "sse2";

    #[derive(Clone, Copy)]
    pub(super) struct Lanes(__m128i);

    impl Pair for Lanes {
        #[inline(always)]
        fn splat(v: u64) -> Self {
            // SAFETY: register-only SSE2 arithmetic (cfg).
            Self(unsafe { _mm_set1_epi64x(v as i64) })
        }

        #[inline(always)]
        unsafe fn load2(p: *const Desc) -> Self {
            let v: __m128i;
            // SAFETY: 16 bytes at a 16-aligned address inside a live table (caller); the block
            // only reads them.
            unsafe {
                core::arch::asm!(
                    "movdqa {v}, xmmword ptr [{p}]",
                    p = in(reg) p,
                    v = out(xmm_reg) v,
                    options(nostack, readonly, preserves_flags),
                );
            }
            Self(v)
        }

        lane_ops!(or => _mm_or_si128, and => _mm_and_si128, add => _mm_add_epi64);

        #[inline(always)]
        fn shr1(self) -> Self {
            // SAFETY: register-only SSE2 arithmetic (cfg).
            Self(unsafe { _mm_srli_epi64::<1>(self.0) })
        }

        #[inline(always)]
        fn lanes(self) -> (u64, u64) {
            // SAFETY: register-only SSE2 arithmetic (cfg).
            unsafe {
                (
                    _mm_cvtsi128_si64(self.0) as u64,
                    _mm_cvtsi128_si64(_mm_unpackhi_epi64(self.0, self.0)) as u64,
                )
            }
        }
    }
}

#[cfg(all(
    target_arch = "aarch64",
    target_feature = "neon",
    not(miri),
    not(all(loom, test))
))]
mod lanes {
    use core::arch::aarch64::{
        uint64x2_t, vaddq_u64, vandq_u64, vdupq_n_u64, vgetq_lane_u64, vorrq_u64, vshrq_n_u64,
    };

    use super::{Desc, Pair};

    /// The scans this build compiled (a test checks it is the one the target calls for).
    #[cfg(all(test, not(loom)))]
    pub(super) const KIND: &str = "neon";

    #[derive(Clone, Copy)]
    pub(super) struct Lanes(uint64x2_t);

    impl Pair for Lanes {
        #[inline(always)]
        fn splat(v: u64) -> Self {
            // SAFETY: register-only NEON arithmetic (cfg).
            Self(unsafe { vdupq_n_u64(v) })
        }

        /// One `LDR Q`.
        #[inline(always)]
        unsafe fn load2(p: *const Desc) -> Self {
            let v: uint64x2_t;
            // SAFETY: 16 bytes at a 16-aligned address inside a live table (caller); the block
            // only reads them, and touches neither the stack nor the condition flags.
            unsafe {
                core::arch::asm!(
                    "ldr {v:q}, [{p}]",
                    p = in(reg) p,
                    v = out(vreg) v,
                    options(nostack, readonly, preserves_flags),
                );
            }
            Self(v)
        }

        lane_ops!(or => vorrq_u64, and => vandq_u64, add => vaddq_u64);

        #[inline(always)]
        fn shr1(self) -> Self {
            // SAFETY: register-only NEON arithmetic (cfg).
            Self(unsafe { vshrq_n_u64::<1>(self.0) })
        }

        #[inline(always)]
        fn lanes(self) -> (u64, u64) {
            // SAFETY: register-only NEON arithmetic (cfg).
            unsafe { (vgetq_lane_u64::<0>(self.0), vgetq_lane_u64::<1>(self.0)) }
        }
    }
}

/// The folds on pairs of descriptors, written once over [`Pair`].
#[cfg(any(
    all(
        target_arch = "x86_64",
        target_feature = "sse2",
        not(miri),
        not(all(loom, test))
    ),
    all(
        target_arch = "aarch64",
        target_feature = "neon",
        not(miri),
        not(all(loom, test))
    )
))]
mod vector {
    use super::lanes::Lanes;
    use super::{ld, Desc, Pair, VALID};

    #[cfg(all(test, not(loom)))]
    pub(super) use super::lanes::KIND;

    /// Folds `s` with `step` on pairs of descriptors (four independent accumulators) and
    /// `one` on the descriptors the pairs leave out; `join` adds an accumulator's two lanes.
    #[inline(always)]
    fn fold(
        s: &[Desc],
        step: impl Fn(Lanes, Lanes) -> Lanes,
        join: impl Fn(u64, u64) -> u64,
        one: impl Fn(u64, &Desc) -> u64,
    ) -> u64 {
        // A leading descriptor at an odd index, so that the pairs are 16-byte aligned.
        let (head, rest) = if s.as_ptr().addr() & 15 != 0 {
            s.split_at(1.min(s.len()))
        } else {
            s.split_at(0)
        };
        let mut quads = rest.chunks_exact(8);
        let mut acc = [Lanes::splat(0); 4];
        for q in &mut quads {
            let p = q.as_ptr();
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: `p` is 16-byte aligned (`rest` starts so and advances by 64 bytes),
                // and `p[2k..2k + 2]` lies in `q`, a live table's descriptors.
                *a = step(*a, unsafe { Lanes::load2(p.add(2 * k)) });
            }
        }
        let mut total = 0u64;
        for a in acc {
            let (lo, hi) = a.lanes();
            total = join(join(total, lo), hi);
        }
        head.iter().chain(quads.remainder()).fold(total, one)
    }

    #[inline(never)]
    pub(super) fn or_all(s: &[Desc]) -> u64 {
        fold(s, Lanes::or, |a, b| a | b, |t, d| t | ld(d))
    }

    #[inline(never)]
    pub(super) fn or_tables(s: &[Desc]) -> u64 {
        fold(
            s,
            |a, v| a.or(v.and(v.shr1())),
            |a, b| a | b,
            |t, d| {
                let d = ld(d);
                t | (d & (d >> 1))
            },
        )
    }

    #[inline(never)]
    pub(super) fn count_valid(s: &[Desc]) -> u64 {
        let valid = Lanes::splat(VALID);
        fold(
            s,
            |a, v| a.add(v.and(valid)),
            |a, b| a + b,
            |t, d| t + (ld(d) & VALID),
        )
    }
}

#[cfg(not(any(
    all(
        target_arch = "x86_64",
        target_feature = "sse2",
        not(miri),
        not(all(loom, test))
    ),
    all(
        target_arch = "aarch64",
        target_feature = "neon",
        not(miri),
        not(all(loom, test))
    )
)))]
mod vector {
    use super::{ld, Desc, VALID};

    /// The scans this build compiled (a test checks it is the one the target calls for).
    #[cfg(all(test, not(loom)))]
    pub(super) const KIND: &str = "scalar";

    pub(super) fn or_all(s: &[Desc]) -> u64 {
        s.iter().fold(0, |a, d| a | ld(d))
    }

    pub(super) fn or_tables(s: &[Desc]) -> u64 {
        s.iter().fold(0, |a, d| {
            let d = ld(d);
            a | (d & (d >> 1))
        })
    }

    pub(super) fn count_valid(s: &[Desc]) -> u64 {
        s.iter().map(|d| ld(d) & VALID).sum()
    }
}

/// Runs shorter than this are folded inline, one load at a time: a single page is the common
/// DMA map, and it should not pay for a call and the vector setup.
const SHORT: usize = 16;

/// The OR of every descriptor of the run (bit 0 clear: all invalid).
#[inline(always)]
pub(crate) fn or_all(s: &[Desc]) -> u64 {
    if s.len() < SHORT {
        s.iter().fold(0, |a, d| a | ld(d))
    } else {
        vector::or_all(s)
    }
}

/// The OR of `d & (d >> 1)` over the run: bit 0 set iff some descriptor has TYPE = 0b11 (a
/// Table descriptor above level 3, DDI 0487 D8.3.1).
#[inline(always)]
pub(crate) fn or_tables(s: &[Desc]) -> u64 {
    if s.len() < SHORT {
        s.iter().fold(0, |a, d| {
            let d = ld(d);
            a | (d & (d >> 1))
        })
    } else {
        vector::or_tables(s)
    }
}

/// The number of valid descriptors in the run.
#[inline(always)]
pub(crate) fn count_valid(s: &[Desc]) -> u64 {
    if s.len() < SHORT {
        s.iter().map(|d| ld(d) & VALID).sum()
    } else {
        vector::count_valid(s)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// The vector folds agree with plain folds at every alignment and length (odd heads, short
    /// runs, tails).
    #[test]
    fn folds_agree_with_scalar_folds() {
        let vals: Vec<u64> = (0..64u64)
            .map(|i| match i % 7 {
                0 => 0,
                1 => 0b11 | i << 12,
                2 => 0b01 | i << 21,
                3 => 0b10,
                _ => i << 12,
            })
            .collect();
        let table: Vec<Desc> = vals.iter().map(|&v| Desc::new(v)).collect();
        for first in 0..9 {
            for n in 0..(64 - first) {
                let s = &table[first..first + n];
                let v = &vals[first..first + n];
                assert_eq!(or_all(s), v.iter().fold(0, |a, d| a | d));
                assert_eq!(
                    or_tables(s) & 1,
                    v.iter().fold(0, |a, d| a | (d & (d >> 1))) & 1
                );
                assert_eq!(count_valid(s), v.iter().map(|d| d & 1).sum::<u64>());
            }
        }
    }

    /// The three folds of plain values, for comparison.
    fn expected(v: &[u64]) -> (u64, u64, u64) {
        (
            v.iter().fold(0, |a, d| a | d),
            v.iter().fold(0, |a, d| a | (d & (d >> 1))),
            v.iter().map(|d| d & VALID).sum(),
        )
    }

    fn folds(s: &[Desc]) -> (u64, u64, u64) {
        (or_all(s), or_tables(s), count_valid(s))
    }

    /// The build uses the vector scans its target calls for: SSE2 on x86-64, NEON on AArch64
    /// (where the target enables it), plain folds elsewhere and under Miri. Run on AArch64 (under
    /// qemu-user in CI), this is what shows the NEON code is the code the other tests ran.
    #[test]
    fn the_scans_are_the_ones_the_target_calls_for() {
        let want = if cfg!(miri) {
            "scalar"
        } else if cfg!(all(target_arch = "x86_64", target_feature = "sse2")) {
            "sse2"
        } else if cfg!(all(target_arch = "aarch64", target_feature = "neon")) {
            "neon"
        } else {
            "scalar"
        };
        assert_eq!(vector::KIND, want);
    }

    /// One non-zero descriptor in a run of zeros, at every position of runs of every length
    /// from the vector threshold to five blocks of eight, at both alignments of the run's start:
    /// a fold that drops the head, the tail, a lane or an accumulator misses it somewhere.
    #[test]
    #[cfg_attr(miri, ignore = "plain folds under Miri; the first test has them")]
    fn a_lone_descriptor_is_seen_at_every_position() {
        let max = 5 * 8 + 3;
        let table: Vec<Desc> = (0..max + 2).map(|_| Desc::new(0)).collect();
        for first in 0..2 {
            for n in SHORT..=max {
                for i in 0..n {
                    for d in [0b01 | (i as u64) << 12, 0b11 | (i as u64) << 21, 0b10] {
                        table[first + i].store(d, Ordering::Relaxed);
                        let s = &table[first..first + n];
                        assert_eq!(folds(s), expected(&[d]), "run {first}+{n}, at {i}: {d:#x}");
                        table[first + i].store(0, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Random descriptors, random run lengths (up to a whole 4K-granule table and beyond) and
    /// random starts agree with the plain folds in every bit (xorshift64, fixed seed).
    #[test]
    #[cfg_attr(miri, ignore = "plain folds under Miri; the first test has them")]
    fn random_runs_agree_with_scalar_folds() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let len = 600;
        let rounds = 3000;
        let mut vals: Vec<u64> = (0..len).map(|_| 0).collect();
        let table: Vec<Desc> = (0..len).map(|_| Desc::new(0)).collect();
        for _ in 0..rounds {
            // Sparse, dense or all-invalid tables, so that every fold has both answers.
            let density = next() % 4;
            for (v, d) in vals.iter_mut().zip(&table) {
                let r = next();
                *v = match density {
                    0 => r & !VALID,
                    1 if r % 16 != 0 => 0,
                    _ => r,
                };
                d.store(*v, Ordering::Relaxed);
            }
            let first = (next() % 9) as usize;
            let n = (next() % (len as u64 - first as u64 + 1)) as usize;
            let (s, v) = (&table[first..first + n], &vals[first..first + n]);
            assert_eq!(folds(s), expected(v), "run {first}+{n}");
        }
    }
}

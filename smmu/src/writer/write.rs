//! The used-bits writer: the planning (pure) and the sequencing of stores and syncs.

use super::used::{cd_used_bits_with, ste_update_safe, ste_used_bits, ENTRY_QWORDS};

/// What kind of entry is being written: which bits its configuration reads, and which may
/// change in any order. Implemented by [`SteRules`] and [`CdRules`]; a test can implement it to
/// drive the writer over a made-up structure.
pub trait EntryRules<const N: usize> {
    /// The bits of `entry` that the SMMU reads given `entry`'s own configuration.
    fn used_bits(&self, entry: &[u64; N]) -> [u64; N];

    /// Bits that may change in any order between `cur` and `target` even though both use them.
    /// Only honoured where both configurations use the bit. None by default.
    fn update_safe(&self, cur: &[u64; N], target: &[u64; N]) -> [u64; N] {
        let _ = (cur, target);
        [0; N]
    }
}

/// Rules of the Stream Table Entry: [`ste_used_bits`] and [`ste_update_safe`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteRules;

impl EntryRules<ENTRY_QWORDS> for SteRules {
    fn used_bits(&self, entry: &[u64; ENTRY_QWORDS]) -> [u64; ENTRY_QWORDS] {
        ste_used_bits(entry)
    }

    fn update_safe(
        &self,
        cur: &[u64; ENTRY_QWORDS],
        target: &[u64; ENTRY_QWORDS],
    ) -> [u64; ENTRY_QWORDS] {
        ste_update_safe(cur, target)
    }
}

/// Rules of the Context Descriptor: [`cd_used_bits_with`]; no update-safe bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdRules {
    /// Whether the StreamWorld of the streams using this CD honours `EPDx` (EL1 and EL2-E2H
    /// do; any-EL2 without E2H and EL3 do not, see [`cd_used_bits_with`]).
    pub epd_honoured: bool,
}

impl CdRules {
    /// CDs of EL1 or EL2-E2H streams: `EPDx` = 1 makes its table half unused.
    pub const EL1: CdRules = CdRules { epd_honoured: true };
    /// CDs of any-EL2 (without E2H) or EL3 streams: `EPDx` is IGNORED.
    pub const NO_EPD: CdRules = CdRules {
        epd_honoured: false,
    };
}

impl Default for CdRules {
    fn default() -> Self {
        CdRules::EL1
    }
}

impl EntryRules<ENTRY_QWORDS> for CdRules {
    fn used_bits(&self, entry: &[u64; ENTRY_QWORDS]) -> [u64; ENTRY_QWORDS] {
        cd_used_bits_with(entry, self.epd_honoured)
    }
}

/// Where a live entry sits and how to tell the SMMU that it changed.
///
/// The driver implements it over the STE or CD in DMA memory; a test implements it over an
/// array and records what happens.
pub trait EntrySlot<const N: usize> {
    /// Why a sync failed (a CMD_SYNC timeout, a command-queue error).
    type Error;

    /// The entry as it is in memory now. The writer reads it once, before its first store.
    fn read(&self) -> [u64; N];

    /// Stores `value` into word `index` (`index < N`) with one single-copy-atomic 64-bit write
    /// (a volatile or relaxed-atomic store; on a non-coherent SMMU followed by a clean of the
    /// line to the point of coherency). The writer stores each word at most once per step.
    fn write_qword(&mut self, index: usize, value: u64);

    /// Makes every store so far visible to the SMMU and discards any copy it cached: in the
    /// driver CFGI_STE / CFGI_CD (leaf) for every stream using the entry, then CMD_SYNC, and
    /// its completion awaited.
    fn sync(&mut self) -> Result<(), Self::Error>;
}

/// How an entry gets from its current value to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePath {
    /// Nothing differs: no store, no sync.
    Unchanged,
    /// Only bits that neither configuration uses (or update-safe bits) differ: one step.
    Unused,
    /// Exactly one word must change in bits the target uses: fill the bits the current
    /// configuration ignores, switch with one 64-bit store of word `critical`, then clear the
    /// leftovers. The entry stays valid throughout.
    Hitless {
        /// Index of the word whose single store switches the configuration.
        critical: usize,
    },
    /// Two or more words must change in used bits: word 0 is zeroed (V = 0, the entry is
    /// invalid and its traffic aborts), the body is written, then word 0.
    Breaking,
}

impl WritePath {
    /// Whether the entry stays valid throughout (every path but [`WritePath::Breaking`]).
    pub const fn is_hitless(self) -> bool {
        !matches!(self, WritePath::Breaking)
    }
}

/// The writer's decision for one update, computed from the current and target words alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan<const N: usize> {
    /// The sequence that will be used.
    pub path: WritePath,
    /// The current entry with every bit it does not use (or may change safely) replaced by the
    /// target's.
    pub unused_update: [u64; N],
    /// On the hitless path, the image of the first step: `unused_update` with the critical word
    /// left as it is, or the current entry unchanged when only update-safe bits would be stored
    /// (they are then left for a later step; see [`write_entry`]).
    pub first_step: [u64; N],
}

/// Decides how `cur` becomes `target` under `rules` (pure; [`write_entry`] follows it).
///
/// For each word: `unused_update` keeps the current value in the bits the current
/// configuration uses (less the bits that are update-safe and used by both) and takes the
/// target's value everywhere else. The word is *critical* when `unused_update` still differs
/// from the target in bits the target uses: only a store of the target value itself can fix
/// it, and that store changes what the SMMU does.
pub fn plan<const N: usize, R: EntryRules<N> + ?Sized>(
    rules: &R,
    cur: &[u64; N],
    target: &[u64; N],
) -> Plan<N> {
    let cur_used = rules.used_bits(cur);
    let target_used = rules.used_bits(target);
    let safe = rules.update_safe(cur, target);
    let mut unused_update = *cur;
    // `unused_update` without the update-safe bits: what the first hitless step must store.
    let mut fill = *cur;
    let mut critical_count = 0usize;
    let mut first_critical = 0usize;
    for (i, ((upd, fil), (&t, (&cu, (&tu, &s))))) in unused_update
        .iter_mut()
        .zip(fill.iter_mut())
        .zip(
            target
                .iter()
                .zip(cur_used.iter().zip(target_used.iter().zip(&safe))),
        )
        .enumerate()
    {
        // Safe bits count only where both configurations use them.
        let keep = cu & !(s & tu);
        *upd = (*upd & keep) | (t & !keep);
        *fil = (*fil & cu) | (t & !cu);
        if (*upd ^ t) & tu != 0 {
            if critical_count == 0 {
                first_critical = i;
            }
            critical_count += 1;
        }
    }
    let path = if cur == target {
        WritePath::Unchanged
    } else {
        match critical_count {
            0 => WritePath::Unused,
            1 => WritePath::Hitless {
                critical: first_critical,
            },
            _ => WritePath::Breaking,
        }
    };
    // The first hitless step leaves the critical word alone: it is stored whole in the next
    // step, and leaving it here saves a sync when it is the only word that changes.
    let mut first_step = unused_update;
    if let (Some(f), Some(&c)) = (first_step.get_mut(first_critical), cur.get(first_critical)) {
        *f = c;
    }
    if let (Some(f), Some(&c)) = (fill.get_mut(first_critical), cur.get(first_critical)) {
        *f = c;
    }
    // Update-safe bits may change in any step. If nothing else needs the first step, they wait
    // for the switch or the clean-up instead of costing a sync of their own.
    if fill == *cur {
        first_step = *cur;
    }
    Plan {
        path,
        unused_update,
        first_step,
    }
}

/// What [`write_entry`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReport {
    /// The sequence used.
    pub path: WritePath,
    /// Number of [`EntrySlot::sync`] calls.
    pub syncs: u32,
    /// Number of 64-bit stores.
    pub stores: u32,
}

/// A sync failed part-way: the entry may be between the old and the new value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteError<E> {
    /// The slot's error.
    pub error: E,
    /// The sequence that was under way. On [`WritePath::Breaking`] the entry may be invalid.
    pub path: WritePath,
    /// Syncs that completed before the failure.
    pub syncs: u32,
    /// Stores made, including those the failed sync was to publish.
    pub stores: u32,
}

/// One step: store every word of `want` that differs from `image`, lowest index first, then
/// sync if anything was stored.
struct Stepper<'s, const N: usize, S: EntrySlot<N>> {
    slot: &'s mut S,
    image: [u64; N],
    path: WritePath,
    syncs: u32,
    stores: u32,
}

impl<const N: usize, S: EntrySlot<N>> Stepper<'_, N, S> {
    fn step(&mut self, want: &[u64; N]) -> Result<(), WriteError<S::Error>> {
        let mut stored = false;
        for (i, (have, &w)) in self.image.iter_mut().zip(want).enumerate() {
            if *have != w {
                self.slot.write_qword(i, w);
                *have = w;
                self.stores += 1;
                stored = true;
            }
        }
        if stored {
            self.slot.sync().map_err(|error| WriteError {
                error,
                path: self.path,
                syncs: self.syncs,
                stores: self.stores,
            })?;
            self.syncs += 1;
        }
        Ok(())
    }

    /// `image` with word `index` replaced by `value`.
    fn with_word(&self, index: usize, value: u64) -> [u64; N] {
        let mut w = self.image;
        if let Some(q) = w.get_mut(index) {
            *q = value;
        }
        w
    }
}

/// Rewrites the live entry in `slot` to `target` so that, at every point the SMMU may fetch it,
/// it behaves exactly like the old entry or the new one (or, when that is impossible, is
/// invalid for the duration): SPEC D4.
///
/// Each step stores only the words that change and is followed by one [`EntrySlot::sync`];
/// a step that changes nothing costs no sync. The paths (see [`WritePath`]):
///
/// - [`Unused`](WritePath::Unused): store the target; sync. (≤ 1 sync)
/// - [`Hitless`](WritePath::Hitless): store `unused_update` in every word but the critical one;
///   sync. Store the critical word; sync. Store the target; sync. (1 to 3 syncs.) When the first
///   step would store nothing but update-safe bits, it is skipped and those bits change with
///   the later steps: Linux spends a sync on them (3 for its nested → stage-2 case), this
///   writer does not (2).
/// - [`Breaking`](WritePath::Breaking): store 0 in word 0; sync. Store words 1.. of the target;
///   sync. Store word 0 of the target; sync. (3 syncs)
///
/// `target` should set no bit outside its own used bits (the builders of
/// [`super::make`] never do); if it does, those bits are written in the last step.
pub fn write_entry<const N: usize, R: EntryRules<N> + ?Sized, S: EntrySlot<N>>(
    rules: &R,
    slot: &mut S,
    target: &[u64; N],
) -> Result<WriteReport, WriteError<S::Error>> {
    let cur = slot.read();
    let Plan {
        path, first_step, ..
    } = plan(rules, &cur, target);
    let mut s = Stepper {
        slot,
        image: cur,
        path,
        syncs: 0,
        stores: 0,
    };
    match path {
        WritePath::Unchanged => {}
        WritePath::Unused => s.step(target)?,
        WritePath::Hitless { critical } => {
            s.step(&first_step)?;
            let switch = s.with_word(critical, target.get(critical).copied().unwrap_or(0));
            s.step(&switch)?;
            s.step(target)?;
        }
        WritePath::Breaking => {
            s.step(&s.with_word(0, 0))?;
            let mut body = *target;
            if let Some(q0) = body.first_mut() {
                *q0 = 0;
            }
            s.step(&body)?;
            s.step(target)?;
        }
    }
    Ok(WriteReport {
        path,
        syncs: s.syncs,
        stores: s.stores,
    })
}

/// Whether `image`, restricted to the bits it uses itself less the update-safe bits between it
/// and `reference`, equals `reference`: i.e. an SMMU fetching `image` does what it would do
/// with `reference`. The check the tests apply to every intermediate image (against the old
/// and the new entry).
pub fn behaves_like<const N: usize, R: EntryRules<N> + ?Sized>(
    rules: &R,
    image: &[u64; N],
    reference: &[u64; N],
) -> bool {
    let used = rules.used_bits(image);
    let safe = rules.update_safe(image, reference);
    image
        .iter()
        .zip(reference)
        .zip(used.iter().zip(&safe))
        .all(|((&a, &b), (&u, &s))| (a ^ b) & u & !s == 0)
}

//! The one walk over the crashed kernel's stream table (SPEC K3, K15): every valid STE of a
//! table whose registers passed [`validate_geometry`](crate::validate_geometry), in StreamID
//! order, with the parts that cannot be walked reported as [`Gap`]s.
//!
//! [`scan()`](crate::scan()) enumerates the STEs it validates through [`visit_stes`], stopping at
//! the first gap ([`OnGap::Stop`]: adoption refuses, SPEC K4), and `smmuctl inspect` prints a
//! crashed machine's table through it, going on past each gap ([`OnGap::Skip`]: a dump may lack
//! memory). One walk, so the two cannot disagree about which STEs a table holds.
//!
//! What the walk reads (IHI 0070 §3.3.1): a linear table is one array of STEs indexed by
//! StreamID (§3.3.1.1); a 2-level table is an array of level-1 descriptors, each of which
//! `Span` 0 leaves unused or points to a level-2 table of 2^`SPLIT` STEs (§3.3.1.2, §5.1; K2
//! adopts `SPLIT` = 8 only, and K3 a `Span` of 0 or 9). Every descriptor is checked with
//! [`validate_l1_at`] before its level-2 table is read. An STE is *valid* when its `V` bit is
//! set (§5.2 V); nothing else of it is interpreted here.
//!
//! Bounds (SPEC K15): nothing recurses or allocates; each read is at most
//! [`READ_CHUNK_WORDS`] words (8 STEs or 64 descriptors) into a buffer on the stack, and lies
//! inside the table or a level-2 table a checked descriptor describes. A walk reads each entry
//! once, plus, with [`OnGap::Skip`] only, each entry of a chunk whose read failed once more on
//! its own: at most 2^31 STEs of a linear table, or 2^17 descriptors and 256 STEs under each.

use smmu::arch::l1std::STRTAB_SPLIT;
use smmu::arch::ste;

use crate::memory::{OldMemory, READ_CHUNK_WORDS};
use crate::reason::Refusal;
use crate::validate::{validate_l1_at, Format, Geometry, L1STD_BYTES, STES_PER_L2, STE_BYTES};

/// One valid STE (`V` = 1, §5.2) of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SteEntry {
    /// Its StreamID.
    pub sid: u32,
    /// Its physical address.
    pub pa: u64,
    /// Its eight words, as read (little-endian words converted to native values).
    pub words: [u64; 8],
}

/// A part of the table the walk could not use.
///
/// Each unreadable variant names where the missing part starts and the bytes of the read that
/// failed: as [`OnGap::Skip`] reports it, the first entry that could not be read on its own;
/// as [`OnGap::Stop`] ends the walk with it ([`Gap::refusal`]), the whole chunk the walk
/// asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// The STEs of a linear table from `sid` (at `pa`) on could not be read; the walk ends.
    Stes {
        /// The first StreamID missing.
        sid: u32,
        /// Where its STE is.
        pa: u64,
        /// Bytes of the read that failed.
        len: u64,
    },
    /// The level-1 descriptors from `index` (at `pa`) on could not be read; the walk ends.
    L1Descriptors {
        /// The first descriptor missing.
        index: u32,
        /// Where it is.
        pa: u64,
        /// Bytes of the read that failed.
        len: u64,
    },
    /// The level-2 table of descriptor `index` (at `l2`) could not be read from StreamID
    /// `sid` (at `pa`) on; the walk goes on with the next descriptor.
    L2Table {
        /// The level-1 descriptor.
        index: u32,
        /// The level-2 table's address.
        l2: u64,
        /// The first StreamID missing.
        sid: u32,
        /// Where its STE is.
        pa: u64,
        /// Bytes of the read that failed.
        len: u64,
    },
    /// Descriptor `index` breaks SPEC K3 (`refusal`, from [`validate_l1_at`]): its level-2
    /// table is not read; the walk goes on with the next descriptor.
    BadL1 {
        /// The level-1 descriptor.
        index: u32,
        /// Its value.
        desc: u64,
        /// Why it cannot be followed.
        refusal: Refusal,
    },
}

impl Gap {
    /// The refusal adoption gives for this gap (SPEC K3, K4): [`Refusal::MemoryUnreadable`]
    /// of the read that failed, or the descriptor's own.
    pub const fn refusal(&self) -> Refusal {
        match *self {
            Gap::Stes { pa, len, .. }
            | Gap::L1Descriptors { pa, len, .. }
            | Gap::L2Table { pa, len, .. } => Refusal::MemoryUnreadable { pa, len },
            Gap::BadL1 { refusal, .. } => refusal,
        }
    }
}

/// What [`visit_stes`] does at a [`Gap`].
pub enum OnGap<'a> {
    /// End the walk with the gap's [`refusal`](Gap::refusal), reading nothing more: the
    /// scan's way, where the first problem refuses adoption (SPEC K3, K4).
    Stop,
    /// Hand the gap to the closure and go on with the next part of the table: the way to
    /// look at an incomplete dump. A chunk whose read fails is read again one entry at a
    /// time, so that every entry the memory holds is visited and the gap names the first
    /// one missing.
    Skip(&'a mut dyn FnMut(Gap)),
}

/// What [`visit_stes`] calls, in table order: [`level2`](SteVisitor::level2) for each valid
/// level-1 descriptor before its STEs, [`ste`](SteVisitor::ste) for each valid STE. An error
/// from either ends the walk and is returned as is.
///
/// A closure `FnMut(&SteEntry) -> Result<(), E>` is a visitor of STEs alone.
pub trait SteVisitor {
    /// What ends the walk early; a [`Refusal`] must convert into it ([`OnGap::Stop`]).
    type Error: From<Refusal>;

    /// Level-1 descriptor `index` is valid and its level-2 table is at `l2` (2-level tables
    /// only). Called before its first STE is read.
    fn level2(&mut self, index: u32, l2: u64) -> Result<(), Self::Error> {
        let _ = (index, l2);
        Ok(())
    }

    /// A valid STE.
    fn ste(&mut self, ste: &SteEntry) -> Result<(), Self::Error>;
}

impl<E: From<Refusal>, F: FnMut(&SteEntry) -> Result<(), E>> SteVisitor for F {
    type Error = E;

    fn ste(&mut self, ste: &SteEntry) -> Result<(), E> {
        self(ste)
    }
}

/// What a [`visit_stes`] walk read (SPEC K15's measure of its work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WalkStats {
    /// Level-1 descriptors read (2-level tables).
    pub l1_descriptors: u64,
    /// Of which valid ([`SteVisitor::level2`] was called).
    pub l1_valid: u64,
    /// STEs read.
    pub stes_read: u64,
    /// Of which valid ([`SteVisitor::ste`] was called).
    pub stes_valid: u64,
    /// Gaps reported ([`OnGap::Skip`]).
    pub gaps: u64,
    /// Calls to [`OldMemory::read_words`], failed ones included.
    pub reads: u64,
    /// Bytes those calls asked for.
    pub bytes_read: u64,
}

/// Walks the stream table `geometry` describes through `mem`, calling `visitor` for each valid
/// level-1 descriptor and each valid STE, in StreamID order, and doing what `on_gap` says
/// where part of the table cannot be walked (see the [module documentation](self) for what
/// is read and its bounds). Returns what was read, or the first error: the visitor's, or with
/// [`OnGap::Stop`] the first gap's refusal. Never panics, whatever the memory holds.
///
/// ```
/// use smmu_kdump::walk::{visit_stes, Gap, OnGap, SteEntry};
/// use smmu_kdump::{any_ram, validate_geometry, MemFault, OldMemory, Refusal, RegisterSnapshot};
/// use smmu::arch::idr::IdRegs;
/// use smmu::arch::l1std::L1StdConfig;
/// use smmu::arch::ste::SteConfig;
///
/// /// Old memory: 4 KiB at 0x8000_0000 (the level-1 table) and 16 KiB at 0x9000_0000 (one
/// /// level-2 table); nothing else.
/// struct Dump { l1: Vec<u64>, l2: Vec<u64> }
/// impl OldMemory for Dump {
///     fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
///         let (base, words) = match pa {
///             0x8000_0000..0x8000_1000 => (0x8000_0000, &self.l1),
///             0x9000_0000..0x9000_4000 => (0x9000_0000, &self.l2),
///             _ => return Err(MemFault),
///         };
///         let first = ((pa - base) / 8) as usize;
///         out.copy_from_slice(words.get(first..first + out.len()).ok_or(MemFault)?);
///         Ok(())
///     }
/// }
///
/// // A 2-level table of 2^12 StreamIDs: descriptor 0 points to the level-2 table in the dump,
/// // descriptor 2 to one that is not. StreamID 3 bypasses.
/// let desc = |l2| L1StdConfig { span: 9, l2_ptr: l2 }.encode().to_words()[0];
/// let mut dump = Dump { l1: vec![0; 512], l2: vec![0; 2048] };
/// dump.l1[0] = desc(0x9000_0000);
/// dump.l1[2] = desc(0xa000_0000);
/// dump.l2[3 * 8..4 * 8].copy_from_slice(&SteConfig::BYPASS.encode().to_words());
///
/// let snap = RegisterSnapshot {
///     // IDR0: S1P, AArch64 tables, 2-level stream tables. IDR1: SIDSIZE 16. IDR5: OAS 48.
///     ids: IdRegs { idr: [0b1010 | 1 << 27, 16, 0, 0, 0, 0b101], iidr: 0, aidr: 0 },
///     strtab_base: 0x8000_0000,
///     strtab_base_cfg: 1 << 16 | 8 << 6 | 12, // 2-level, SPLIT 8, LOG2SIZE 12
///     ..RegisterSnapshot::default()
/// };
/// let geometry = validate_geometry(&snap, &snap.features(), &any_ram).unwrap();
///
/// // Going on past the gap, as a tool looking at a dump does.
/// let (mut gaps, mut sids) = (Vec::new(), Vec::new());
/// let stats = visit_stes(&geometry, &dump, OnGap::Skip(&mut |gap| gaps.push(gap)), &mut |ste: &SteEntry| {
///     sids.push(ste.sid);
///     Ok::<(), Refusal>(())
/// })
/// .unwrap();
/// assert_eq!(sids, [3]);
/// assert_eq!(
///     gaps,
///     [Gap::L2Table { index: 2, l2: 0xa000_0000, sid: 0x200, pa: 0xa000_0000, len: 64 }]
/// );
/// assert_eq!((stats.l1_valid, stats.stes_valid), (2, 1));
///
/// // Stopping at it, as adoption does: the refusal names the chunk that could not be read.
/// let stopped = visit_stes(&geometry, &dump, OnGap::Stop, &mut |_: &SteEntry| Ok::<(), Refusal>(()));
/// assert_eq!(stopped, Err(Refusal::MemoryUnreadable { pa: 0xa000_0000, len: 512 }));
/// ```
pub fn visit_stes<V: SteVisitor + ?Sized>(
    geometry: &Geometry,
    mem: &dyn OldMemory,
    on_gap: OnGap<'_>,
    visitor: &mut V,
) -> Result<WalkStats, V::Error> {
    let mut w = Walker {
        mem,
        on_gap,
        stats: WalkStats::default(),
    };
    match geometry.format() {
        Format::Linear => {
            let count = u64::from(geometry.linear_stes().unwrap_or(0));
            w.stes(geometry.base(), 0, count, visitor, |sid, pa, len| {
                Gap::Stes { sid, pa, len }
            })?;
        }
        Format::TwoLevel => {
            let entries = u64::from(geometry.l1_entries().unwrap_or(0));
            let oas_bits = geometry.oas_bits();
            w.entries::<1, V::Error>(
                geometry.base(),
                entries,
                // At most 2^17 descriptors (K2): the index fits in u32.
                |index, pa, len| Gap::L1Descriptors {
                    index: index as u32,
                    pa,
                    len,
                },
                &mut |w, index, _, [desc]| {
                    w.stats.l1_descriptors += 1;
                    let index = index as u32;
                    let l2 = match validate_l1_at(index, desc, oas_bits) {
                        Ok(None) => return Ok(Walked::On),
                        Ok(Some(l2)) => l2,
                        Err(refusal) => {
                            w.gap(Gap::BadL1 {
                                index,
                                desc,
                                refusal,
                            })?;
                            return Ok(Walked::On);
                        }
                    };
                    w.stats.l1_valid += 1;
                    visitor.level2(index, l2)?;
                    // StreamIDs stay below 2^25 (2^17 descriptors of 2^8 STEs).
                    let first_sid = u64::from(index) << STRTAB_SPLIT;
                    w.stes(l2, first_sid, STES_PER_L2, visitor, |sid, pa, len| {
                        Gap::L2Table {
                            index,
                            l2,
                            sid,
                            pa,
                            len,
                        }
                    })?;
                    // A gap in one level-2 table leaves the others to walk.
                    Ok(Walked::On)
                },
            )?;
        }
    }
    Ok(w.stats)
}

/// Whether a walk over entries goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walked {
    On,
    /// A gap was reported ([`OnGap::Skip`]): nothing more of this array is read.
    Ended,
}

struct Walker<'m, 'g> {
    mem: &'m dyn OldMemory,
    on_gap: OnGap<'g>,
    stats: WalkStats,
}

/// What [`Walker::entries`] hands each entry to, with the walker: its index, address and words.
type PerEntry<'f, 'm, 'g, const W: usize, E> =
    dyn FnMut(&mut Walker<'m, 'g>, u64, u64, [u64; W]) -> Result<Walked, E> + 'f;

impl<'m, 'g> Walker<'m, 'g> {
    fn read(&mut self, pa: u64, out: &mut [u64]) -> bool {
        self.stats.reads += 1;
        self.stats.bytes_read += out.len() as u64 * 8;
        self.mem.read_words(pa, out).is_ok()
    }

    /// Reports `gap` ([`OnGap::Skip`]) or ends the walk with its refusal ([`OnGap::Stop`]).
    fn gap<E: From<Refusal>>(&mut self, gap: Gap) -> Result<(), E> {
        match &mut self.on_gap {
            OnGap::Stop => Err(gap.refusal().into()),
            OnGap::Skip(report) => {
                self.stats.gaps += 1;
                report(gap);
                Ok(())
            }
        }
    }

    /// Visits the valid STEs among `count` from `base`; the first has StreamID `first_sid`.
    fn stes<V: SteVisitor + ?Sized>(
        &mut self,
        base: u64,
        first_sid: u64,
        count: u64,
        visitor: &mut V,
        gap: impl Fn(u32, u64, u64) -> Gap,
    ) -> Result<Walked, V::Error> {
        self.entries::<8, V::Error>(
            base,
            count,
            // StreamIDs stay below 2^31 (K2 bounds the table), so they fit in u32.
            |i, pa, len| gap((first_sid + i) as u32, pa, len),
            &mut |w, i, pa, words| {
                w.stats.stes_read += 1;
                // §5.2 V: an invalid STE is not looked at any further.
                if ste::fields::V.flag(&words) {
                    w.stats.stes_valid += 1;
                    visitor.ste(&SteEntry {
                        sid: (first_sid + i) as u32,
                        pa,
                        words,
                    })?;
                }
                Ok(Walked::On)
            },
        )
    }

    /// Reads `count` entries of `W` words from `base`, [`READ_CHUNK_WORDS`] words at a time,
    /// and hands each with its index and address to `f`, until `f` ends the walk or errs.
    /// A read that fails is the gap `gap(index, pa, len)`: the whole chunk with
    /// [`OnGap::Stop`], the first entry of it that cannot be read on its own with
    /// [`OnGap::Skip`] (the entries before it are handed to `f` first).
    fn entries<const W: usize, E: From<Refusal>>(
        &mut self,
        base: u64,
        count: u64,
        gap: impl Fn(u64, u64, u64) -> Gap,
        f: &mut PerEntry<'_, 'm, 'g, W, E>,
    ) -> Result<Walked, E> {
        let per_chunk = (READ_CHUNK_WORDS / W) as u64;
        let entry_bytes = W as u64 * 8;
        let mut buf = [0u64; READ_CHUNK_WORDS];
        let mut index = 0u64;
        while index < count {
            let n = per_chunk.min(count - index);
            let len = n * entry_bytes;
            // Inside a table K2 or K3 placed below 2^OAS, so this cannot overflow; were it
            // to, the part is unreadable.
            let Some(pa) = index
                .checked_mul(entry_bytes)
                .and_then(|offset| base.checked_add(offset))
            else {
                self.gap(gap(index, base, len))?;
                return Ok(Walked::Ended);
            };
            // At most READ_CHUNK_WORDS words: `n` entries of `W` words fit the buffer. Were
            // they not to, the part is unreadable, as for any failed read.
            let Some(chunk) = buf.get_mut(..n as usize * W) else {
                self.gap(gap(index, pa, len))?;
                return Ok(Walked::Ended);
            };
            if !self.read(pa, chunk) {
                return match self.on_gap {
                    OnGap::Stop => Err(gap(index, pa, len).refusal().into()),
                    OnGap::Skip(_) => self.narrow(index, pa, n, &gap, f),
                };
            }
            for (i, entry) in buf.chunks_exact(W).take(n as usize).enumerate() {
                // Inside the range read, so no overflow.
                let at = pa + i as u64 * entry_bytes;
                // `chunks_exact(W)` gives `W` words: this cannot fail.
                let Ok(words) = <[u64; W]>::try_from(entry) else {
                    self.gap(gap(index + i as u64, at, entry_bytes))?;
                    return Ok(Walked::Ended);
                };
                if f(self, index + i as u64, at, words)? == Walked::Ended {
                    return Ok(Walked::Ended);
                }
            }
            index += n;
        }
        Ok(Walked::On)
    }

    /// [`OnGap::Skip`] after the chunk of `n` entries from entry `index` (at `pa`) could not
    /// be read: each entry read on its own and handed to `f` up to the first that cannot be,
    /// which is the gap; nothing after it is read.
    fn narrow<const W: usize, E: From<Refusal>>(
        &mut self,
        index: u64,
        pa: u64,
        n: u64,
        gap: &impl Fn(u64, u64, u64) -> Gap,
        f: &mut PerEntry<'_, 'm, 'g, W, E>,
    ) -> Result<Walked, E> {
        let entry_bytes = W as u64 * 8;
        for i in 0..n {
            // Inside the chunk whose address was computed without overflow.
            let at = pa + i * entry_bytes;
            let mut words = [0u64; W];
            if !self.read(at, &mut words) {
                self.gap(gap(index + i, at, entry_bytes))?;
                return Ok(Walked::Ended);
            }
            if f(self, index + i, at, words)? == Walked::Ended {
                return Ok(Walked::Ended);
            }
        }
        // Every entry could be read on its own (a memory that refuses long reads): no gap.
        Ok(Walked::On)
    }
}

// The entry sizes the walk reads in words (8 for an STE, 1 for a descriptor) tied to the
// architected ones (§5.2, §5.1), and a chunk holding whole STEs.
const _: () = assert!(8 * 8 == STE_BYTES && 8 == L1STD_BYTES && READ_CHUNK_WORDS.is_multiple_of(8));

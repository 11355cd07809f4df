//! Crash-dump images for tests, benchmarks, the CLI's tests and the fuzz oracle (host only,
//! feature `image`): the crashed kernel's memory as sparse regions, and the registers of the
//! SMMU that used it. One builder, so that every consumer reads the same layout the same way.
//!
//! An [`Image`] holds regions of 64-bit words at physical addresses; a region may also be a
//! *repeat* of one block (e.g. 2^17 distinct level-2 tables with the same content cost the
//! memory of one), so the largest tables the validator adopts can be measured without
//! gigabytes of RAM. A plain region stores the words up to the last one written and reads as
//! zero past it: a large table of which a few entries are filled costs those entries, to build
//! and to read (the fuzz oracle's speed). Every read through [`OldMemory`] is counted and,
//! optionally, recorded.
//!
//! ```
//! use smmu_kdump::image::{Image, Registers};
//! use smmu_kdump::OldMemory;
//!
//! let mut image = Image::new();
//! image.region(0x8000_0000, 1024).write(0x8000_0040, &[1, 2]);
//! let mut w = [0u64; 2];
//! image.read_words(0x8000_0040, &mut w).unwrap();
//! assert_eq!(w, [1, 2]);
//! assert_eq!(image.counters().bytes, 16);
//! let snap = Registers::grace_like().linear(0x8000_0000, 4).snapshot();
//! assert!(snap.smmuen());
//! ```

// A host-only fixture: a write outside the regions is the test's mistake and panics.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::cell::{Cell, RefCell};
use std::vec::Vec;

use smmu::arch::idr::IdRegs;
use smmu::arch::regs::{IDR0, IDR1, IDR5, STRTAB_BASE_CFG};
use smmu::arch::ste::Stage2Ste;
use smmu::arch::{AddressSize, Cacheability, Granule, Shareability};

use crate::scan::{MemFault, OldMemory};
use crate::RegisterSnapshot;

/// The stage-2 configuration the fixtures use: 4 KiB granule, 40-bit input (T0SZ 24, start
/// level 1), 48-bit output, write-back inner-shareable walks, translation table at `ttb`.
pub fn stage2_ste(ttb: u64) -> Stage2Ste {
    Stage2Ste {
        t0sz: 24,
        sl0: 1,
        ir0: Cacheability::WriteBackAllocate,
        or0: Cacheability::WriteBackAllocate,
        sh0: Shareability::Inner,
        tg: Granule::Size4K,
        ps: AddressSize::Bits48,
        aa64: true,
        endi: false,
        affd: true,
        ptw: false,
        hd: false,
        ha: false,
        stall: false,
        record: true,
        fwb: false,
        ttb,
    }
}

/// One region of an image.
#[derive(Clone, Debug)]
enum Region {
    /// `len` words, lowest address first: those in `stored`, then zeros (a word is stored
    /// when it, or one above it, is written).
    Words { stored: Vec<u64>, len: u64 },
    /// `count` copies of `block`, each `block.len()` words long, back to back.
    Repeat { block: Vec<u64>, count: u64 },
}

impl Region {
    fn bytes(&self) -> u64 {
        match self {
            Region::Words { len, .. } => len * 8,
            Region::Repeat { block, count } => block.len() as u64 * 8 * count,
        }
    }

    fn word(&self, index: u64) -> Option<u64> {
        match self {
            Region::Words { stored, len } => (index < *len).then(|| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| stored.get(i))
                    .copied()
                    .unwrap_or(0)
            }),
            Region::Repeat { block, count } => {
                let n = block.len() as u64;
                if n == 0 || index / n >= *count {
                    return None;
                }
                block.get(usize::try_from(index % n).ok()?).copied()
            }
        }
    }

    /// Copies the words from word `first` into `out`, which must fit inside the region.
    fn copy(&self, first: u64, out: &mut [u64]) -> Result<(), MemFault> {
        if out.is_empty() {
            return Ok(());
        }
        let first = usize::try_from(first).map_err(|_| MemFault)?;
        match self {
            Region::Words { stored, .. } => {
                // The stored part, then zeros.
                let have = stored.len().saturating_sub(first).min(out.len());
                let (head, tail) = out.split_at_mut(have);
                if let Some(src) = stored.get(first..first + have) {
                    head.copy_from_slice(src);
                }
                tail.fill(0);
            }
            Region::Repeat { block, .. } => {
                let n = block.len();
                let start = first % n;
                if let Some(src) = block.get(start..start + out.len()) {
                    out.copy_from_slice(src);
                } else {
                    for (i, w) in out.iter_mut().enumerate() {
                        *w = block[(first + i) % n];
                    }
                }
            }
        }
        Ok(())
    }

    /// The stored words of a plain region from word `first` for `n` words, grown (with
    /// zeros) to hold them; `None` past the region's end or in a repeat.
    fn stored_mut(&mut self, first: u64, n: usize) -> Option<&mut [u64]> {
        let Region::Words { stored, len } = self else {
            return None;
        };
        let end = first.checked_add(n as u64).filter(|&e| e <= *len)?;
        let (first, end) = (usize::try_from(first).ok()?, usize::try_from(end).ok()?);
        if stored.len() < end {
            stored.resize(end, 0);
        }
        stored.get_mut(first..end)
    }
}

/// What an [`Image`] was asked since [`Image::reset`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounters {
    /// Bytes read, summed over every `read_words` call.
    pub bytes: u64,
    /// `read_words` calls.
    pub reads: u64,
    /// The largest single request in bytes.
    pub max_read_bytes: u64,
}

/// The crashed kernel's memory: sparse regions (zero unless written), reads counted.
#[derive(Debug, Default)]
pub struct Image {
    /// Sorted by base; an address belongs to the region with the greatest base at or below it.
    regions: Vec<(u64, Region)>,
    /// Word buffers of regions forgotten by [`Image::clear`], for the next regions.
    spare: Vec<Vec<u64>>,
    counters: Cell<ReadCounters>,
    record: bool,
    reads: RefCell<Vec<(u64, u64)>>,
}

impl Image {
    /// An empty image (no address is readable).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, recording every read's `(address, bytes)` ([`Image::reads`]).
    pub fn recording() -> Self {
        Self {
            record: true,
            ..Self::default()
        }
    }

    /// Forgets every region and the counters, keeping the memory that held them for the
    /// regions added next (an image rebuilt for every input of a fuzzer).
    pub fn clear(&mut self) {
        for (_, r) in self.regions.drain(..) {
            if let Region::Words { mut stored, .. } = r {
                stored.clear();
                self.spare.push(stored);
            }
        }
        self.reset();
    }

    /// Where `base` is or would go in the sorted list, and whether a region starts there.
    fn slot(&self, base: u64) -> (usize, bool) {
        let i = self.regions.partition_point(|&(b, _)| b < base);
        (i, self.regions.get(i).is_some_and(|&(b, _)| b == base))
    }

    fn insert(&mut self, base: u64, region: Region) {
        match self.slot(base) {
            (i, true) => self.regions[i].1 = region,
            (i, false) => self.regions.insert(i, (base, region)),
        }
    }

    /// The region `pa` belongs to: the one with the greatest base at or below it.
    fn at(&self, pa: u64) -> Option<(u64, &Region)> {
        let i = self
            .regions
            .partition_point(|&(b, _)| b <= pa)
            .checked_sub(1)?;
        self.regions.get(i).map(|(b, r)| (*b, r))
    }

    fn at_mut(&mut self, pa: u64) -> Option<(u64, &mut Region)> {
        let i = self
            .regions
            .partition_point(|&(b, _)| b <= pa)
            .checked_sub(1)?;
        self.regions.get_mut(i).map(|(b, r)| (*b, r))
    }

    /// Adds a zeroed region of `bytes` (rounded up to words) at `base`, replacing one that
    /// starts there. Nothing is stored until a word of it is written.
    pub fn region(&mut self, base: u64, bytes: u64) -> &mut Self {
        let region = Region::Words {
            stored: self.spare.pop().unwrap_or_default(),
            len: bytes.div_ceil(8),
        };
        self.insert(base, region);
        self
    }

    /// An empty buffer of words for [`Image::region_with`], one that [`Image::clear`] kept if
    /// there is one.
    pub fn spare_words(&mut self) -> Vec<u64> {
        self.spare.pop().unwrap_or_default()
    }

    /// Adds a region of `bytes` (rounded up to words) at `base` that holds `words` (as many
    /// as fit), then zeros; unless it would share a byte with a region already there: then
    /// nothing is added and `false` returned. The region keeps the buffer.
    pub fn region_with(&mut self, base: u64, bytes: u64, mut words: Vec<u64>) -> bool {
        let len = bytes.div_ceil(8);
        if self.overlaps(base, bytes) {
            words.clear();
            self.spare.push(words);
            return false;
        }
        words.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        // Zeros at the end are what the region reads anyway.
        let used = words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |last| last + 1);
        words.truncate(used);
        self.insert(base, Region::Words { stored: words, len });
        true
    }

    /// Adds `count` back-to-back copies of `block` at `base`: distinct addresses, one
    /// content, the memory of one copy.
    pub fn repeat(&mut self, base: u64, block: &[u64], count: u64) -> &mut Self {
        let region = Region::Repeat {
            block: block.to_vec(),
            count,
        };
        self.insert(base, region);
        self
    }

    /// Removes the region that starts at `base` (nothing if none does).
    pub fn remove(&mut self, base: u64) -> &mut Self {
        if let (i, true) = self.slot(base) {
            self.regions.remove(i);
        }
        self
    }

    /// Stores `words` at `pa`, inside a plain region.
    ///
    /// # Panics
    /// If `pa` is outside every region or inside a repeated one: the test's mistake.
    pub fn write(&mut self, pa: u64, words: &[u64]) -> &mut Self {
        let (base, region) = self.at_mut(pa).expect("a write inside a region");
        if matches!(region, Region::Repeat { .. }) {
            panic!("a write into a repeated region at {base:#x}");
        }
        region
            .stored_mut((pa - base) / 8, words.len())
            .expect("a write inside a region")
            .copy_from_slice(words);
        self
    }

    /// Stores one word at `pa` if it lies in a plain region; `false` (nothing stored)
    /// otherwise. For generators that place words without checking first.
    pub fn store(&mut self, pa: u64, word: u64) -> bool {
        self.store_words(pa, &[word])
    }

    /// Stores `words` from `pa` if they all lie in one plain region; `false` (nothing
    /// stored) otherwise.
    pub fn store_words(&mut self, pa: u64, words: &[u64]) -> bool {
        if !pa.is_multiple_of(8) {
            return false;
        }
        let Some((base, region)) = self.at_mut(pa) else {
            return false;
        };
        let index = (pa - base) / 8;
        let Region::Words { stored, len } = region else {
            return false;
        };
        if index.saturating_add(words.len() as u64) > *len {
            return false;
        }
        // Zeros past the stored words are what the region reads already.
        let beyond = usize::try_from(index)
            .ok()
            .and_then(|i| stored.len().checked_sub(i))
            .unwrap_or(0);
        let keep = words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |last| last + 1)
            .max(beyond.min(words.len()));
        if keep == 0 {
            return true;
        }
        match region.stored_mut(index, keep) {
            Some(slots) => {
                slots.copy_from_slice(&words[..keep]);
                true
            }
            None => false,
        }
    }

    /// The word at `pa`, if readable.
    pub fn word(&self, pa: u64) -> Option<u64> {
        let (base, region) = self.at(pa)?;
        if !pa.is_multiple_of(8) {
            return None;
        }
        region.word((pa - base) / 8)
    }

    /// Whether the `bytes` from `pa` all lie in one region.
    pub fn contains(&self, pa: u64, bytes: u64) -> bool {
        self.at(pa).is_some_and(|(base, r)| {
            u128::from(pa) + u128::from(bytes) <= u128::from(base) + u128::from(r.bytes())
        })
    }

    /// Whether any region shares a byte with the `bytes` from `pa`.
    pub fn overlaps(&self, pa: u64, bytes: u64) -> bool {
        let end = u128::from(pa) + u128::from(bytes);
        let i = self.regions.partition_point(|&(b, _)| b <= pa);
        let below = i.checked_sub(1).and_then(|j| self.regions.get(j));
        below.is_some_and(|(b, r)| u128::from(*b) + u128::from(r.bytes()) > u128::from(pa))
            || self
                .regions
                .get(i)
                .is_some_and(|&(b, _)| u128::from(b) < end)
    }

    /// Of the `words` 64-bit words from `pa`, how many may be non-zero: [`OldMemory::read_words`]
    /// of the range returns zeros from that index on. `None` when the range is not readable
    /// (not inside one region, or misaligned). Lets a reader of a large, mostly empty table
    /// skip what was never written.
    pub fn stored_words(&self, pa: u64, words: u64) -> Option<u64> {
        let bytes = words.checked_mul(8)?;
        if !pa.is_multiple_of(8) || !self.contains(pa, bytes) {
            return None;
        }
        let (base, region) = self.at(pa)?;
        let first = (pa - base) / 8;
        Some(match region {
            Region::Words { stored, .. } => (stored.len() as u64).saturating_sub(first).min(words),
            Region::Repeat { .. } => words,
        })
    }

    /// The words [`OldMemory::read_words`] would return, neither counted nor recorded: `false`
    /// (and `out` unspecified) when the range is not readable.
    pub fn copy_words(&self, pa: u64, out: &mut [u64]) -> bool {
        self.fetch(pa, out).is_ok()
    }

    /// One lookup, then a copy: the region `pa` lies in serves the whole range.
    fn fetch(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        let bytes = out.len() as u64 * 8;
        let (base, region) = self.at(pa).ok_or(MemFault)?;
        if !pa.is_multiple_of(8)
            || u128::from(pa) + u128::from(bytes) > u128::from(base) + u128::from(region.bytes())
        {
            return Err(MemFault);
        }
        region.copy((pa - base) / 8, out)
    }

    /// Every plain region as `(base, little-endian bytes)`, repeats expanded (for dump files).
    pub fn regions_bytes(&self) -> Vec<(u64, Vec<u8>)> {
        self.regions_words()
            .into_iter()
            .map(|(base, words)| (base, words.iter().flat_map(|w| w.to_le_bytes()).collect()))
            .collect()
    }

    /// Every region as `(base, words)`, zeros and repeats expanded.
    pub fn regions_words(&self) -> Vec<(u64, Vec<u64>)> {
        self.regions
            .iter()
            .map(|(base, r)| {
                let mut words = std::vec![0; usize::try_from(r.bytes() / 8).unwrap_or(0)];
                let _ = r.copy(0, &mut words);
                (*base, words)
            })
            .collect()
    }

    /// The most bytes the image holds in memory: a plain region counts its length (it stores
    /// at most that), a repeat its block once.
    pub fn resident_bytes(&self) -> u64 {
        self.regions
            .iter()
            .map(|(_, r)| match r {
                Region::Words { len, .. } => len * 8,
                Region::Repeat { block, .. } => block.len() as u64 * 8,
            })
            .sum()
    }

    /// The counters since the last [`Image::reset`].
    pub fn counters(&self) -> ReadCounters {
        self.counters.get()
    }

    /// Zeroes the counters and forgets the recorded reads.
    pub fn reset(&self) {
        self.counters.set(ReadCounters::default());
        self.reads.borrow_mut().clear();
    }

    /// The reads recorded by a [`recording`](Image::recording) image.
    pub fn reads(&self) -> Vec<(u64, u64)> {
        self.reads.borrow().clone()
    }

    /// Whether a recorded read touched any of the `bytes` from `base`.
    pub fn touched(&self, base: u64, bytes: u64) -> bool {
        self.reads
            .borrow()
            .iter()
            .any(|&(pa, len)| pa < base + bytes && base < pa + len)
    }
}

impl OldMemory for Image {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        let bytes = out.len() as u64 * 8;
        let mut c = self.counters.get();
        c.bytes += bytes;
        c.reads += 1;
        c.max_read_bytes = c.max_read_bytes.max(bytes);
        self.counters.set(c);
        if self.record {
            self.reads.borrow_mut().push((pa, bytes));
        }
        // One lookup per read, then a copy (the benches read gigabytes through this).
        self.fetch(pa, out)
    }
}

/// The registers of the SMMU that used an [`Image`], built field by field with the
/// architected definitions.
#[derive(Clone, Copy, Debug)]
pub struct Registers {
    /// The register snapshot being built.
    pub snap: RegisterSnapshot,
}

impl Registers {
    /// A Grace-like SMMU: both stages, AArch64 tables, coherent, 16-bit ASIDs and VMIDs,
    /// 2-level stream and CD tables, 24-bit StreamIDs, 20-bit SubstreamIDs, 48-bit OAS,
    /// all three granules; `SMMUEN`, `EVENTQEN` and `CMDQEN` set; no table yet.
    pub fn grace_like() -> Self {
        let idr0 = (IDR0::S1P::SET
            + IDR0::S2P::SET
            + IDR0::TTF.val(0b10)
            + IDR0::COHACC::SET
            + IDR0::ASID16::SET
            + IDR0::VMID16::SET
            + IDR0::CD2L::SET
            + IDR0::ST_LVL.val(1))
        .value;
        let idr1 = (IDR1::SIDSIZE.val(24) + IDR1::SSIDSIZE.val(20)).value;
        let idr5 = (IDR5::OAS.val(AddressSize::Bits48.encode() as u32)
            + IDR5::GRAN4K::SET
            + IDR5::GRAN16K::SET
            + IDR5::GRAN64K::SET)
            .value;
        Registers {
            snap: RegisterSnapshot {
                ids: IdRegs {
                    idr: [idr0, idr1, 0, 0, 0, idr5],
                    iidr: 0,
                    aidr: 0,
                },
                cr0: 0b1101, // SMMUEN, EVENTQEN, CMDQEN
                ..RegisterSnapshot::default()
            },
        }
    }

    /// A linear stream table of 2^`log2size` STEs at `base`.
    pub fn linear(mut self, base: u64, log2size: u32) -> Self {
        self.snap.strtab_base = base;
        self.snap.strtab_base_cfg =
            (STRTAB_BASE_CFG::FMT.val(0) + STRTAB_BASE_CFG::LOG2SIZE.val(log2size)).value;
        self
    }

    /// A 2-level stream table (`SPLIT` = 8) of 2^`log2size` StreamIDs with its level-1
    /// table at `base`.
    pub fn two_level(mut self, base: u64, log2size: u32) -> Self {
        self.snap.strtab_base = base;
        self.snap.strtab_base_cfg = (STRTAB_BASE_CFG::FMT.val(1)
            + STRTAB_BASE_CFG::SPLIT.val(8)
            + STRTAB_BASE_CFG::LOG2SIZE.val(log2size))
        .value;
        self
    }

    /// `IDR0` replaced.
    pub fn idr0(mut self, idr0: u32) -> Self {
        self.snap.ids.idr[0] = idr0;
        self
    }

    /// `IDR1` replaced.
    pub fn idr1(mut self, idr1: u32) -> Self {
        self.snap.ids.idr[1] = idr1;
        self
    }

    /// The snapshot.
    pub fn snapshot(self) -> RegisterSnapshot {
        self.snap
    }
}

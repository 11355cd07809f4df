//! The adopted stream table: the crashed kernel's live table, as the driver's
//! [`StreamTable`] (SPEC K3, K11, K15, K17).
//!
//! At adoption only the linear table or the level-1 table is mapped. A level-2 table is
//! mapped the first time a device under it is added, after its descriptor is validated
//! again (it may have changed since the scan: a descriptor that went bad rejects only the
//! devices under it). A StreamID whose descriptor is unused gets a level-2 table of our own,
//! filled before a single 64-bit store publishes it.
//!
//! Each chunk of 256 StreamIDs the driver touched has a bitmap of *deferred* STEs: valid and
//! not aborting when the chunk was first touched, so still the crashed kernel's. Such an STE
//! is only rewritten by an explicit attach, and its bit is cleared once that write completed.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU64, Ordering};

use heapless::Vec;
use smmu::arch::ste::{Ste, SteKind};
use smmu::dma::{DmaBuf, Origin};
use smmu::strtab::{Prepared, SteLocation, StreamTable, STES_PER_L2, STE_BYTES};
use smmu::writer::ENTRY_QWORDS;
use smmu::{Error, Hal, MapAttr, PhysAddr};

use smmu::arch::idr::Features;
use smmu::ids::IdAllocator;

use crate::memory::HalMemory;
use crate::scan::{Found, Revalidation};
use crate::validate::{Format, Geometry};
use crate::Refusal;

/// Chunks of 256 StreamIDs an adopted table can have touched (a fixed bound, SPEC K15):
/// 256 × 256 StreamIDs with devices added in the crash kernel.
pub const MAX_CHUNKS: usize = 256;

struct Chunk {
    index: u32,
    /// The level-2 table (mapped, or allocated by us); `None` for a linear table's chunk.
    l2: Option<DmaBuf>,
    /// Atomic: attaches of different masters clear their bits at once, under the driver's
    /// read lock of the table (an insert, which moves chunks, holds its write lock).
    deferred: [AtomicU64; 4],
    /// STEs that failed re-validation when the chunk was mapped (SPEC K21): their devices
    /// are refused.
    rejected: [u64; 4],
}

/// An empty chunk directory, copied into a table built in place: writing `Vec::new()`
/// through a pointer makes a stack temporary of the directory's full size (28 KiB) when the
/// compiler does not optimise, and a crash kernel's stack has no room for it.
static NO_CHUNKS: Vec<Chunk, MAX_CHUNKS> = Vec::new();

/// What the scan reserved, to re-validate inherited STEs against when their table is mapped
/// (SPEC K21). Built in place with the table (two 16 KiB bitmaps).
struct ScanTags {
    /// The SMMU's features, once re-validation is armed; `None` before (nothing checked).
    features: Option<Features>,
    asids: IdAllocator,
    vmids: IdAllocator,
}

/// The crashed kernel's stream table, adopted.
pub struct AdoptedStreamTable {
    geometry: Geometry,
    attr: MapAttr,
    coherent: bool,
    base: DmaBuf,
    chunks: Vec<Chunk, MAX_CHUNKS>,
    tags: ScanTags,
}

impl core::fmt::Debug for AdoptedStreamTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AdoptedStreamTable")
            .field("geometry", &self.geometry)
            .field("attr", &self.attr)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

/// Whether an STE as found belongs to the crashed kernel's configuration: valid and not
/// aborting (SPEC K11). An STE that does not decode is left alone too.
pub(crate) fn inherited(words: &[u64; ENTRY_QWORDS]) -> bool {
    let ste = Ste::from_words(*words);
    match ste.decode() {
        Ok(Some(cfg)) => cfg.translation.kind() != SteKind::Abort,
        Ok(None) => false,
        Err(_) => true,
    }
}

impl AdoptedStreamTable {
    /// Maps the linear or level-1 table that `geometry` describes (nothing else), with the
    /// platform's attribute (SPEC K17). The table is about 60 KiB and returned by value: a
    /// crash kernel builds it in place with [`AdoptedStreamTable::new_in`].
    pub fn new<H: Hal + ?Sized>(
        hal: &H,
        geometry: Geometry,
        attr: MapAttr,
        coherent: bool,
    ) -> Result<Self, Error> {
        let mut place = MaybeUninit::uninit();
        Self::new_in(&mut place, hal, geometry, attr, coherent, 16, 16)?;
        // SAFETY: `new_in` returned `Ok`, so it initialised the table.
        Ok(unsafe { place.assume_init() })
    }

    /// As [`AdoptedStreamTable::new`], built in `place`, with room to record what the scan
    /// reserves in IDs of `asid_bits` and `vmid_bits` (the SMMU's widths): nothing of the
    /// table's size passes through the stack. On failure `place` is left uninitialised.
    pub fn new_in<'p, H: Hal + ?Sized>(
        place: &'p mut MaybeUninit<Self>,
        hal: &H,
        geometry: Geometry,
        attr: MapAttr,
        coherent: bool,
        asid_bits: u32,
        vmid_bits: u32,
    ) -> Result<&'p mut Self, Error> {
        let bytes = usize::try_from(geometry.table_bytes().max(8))
            .map_err(|_| Error::Hal(smmu::HalError::MapRefused))?;
        let base = DmaBuf::map(hal, PhysAddr(geometry.base()), bytes, attr, coherent)?;
        let p = place.as_mut_ptr();
        // SAFETY: `p` comes from `&mut MaybeUninit<Self>`: valid for writes and aligned. Each
        // field is written once through a raw place; the allocators are built where they are.
        // The chunk directory is a bitwise copy of an empty `heapless::Vec`, which owns
        // nothing and points nowhere (inline storage): an independent empty vector; the
        // static is never written or dropped.
        unsafe {
            addr_of_mut!((*p).geometry).write(geometry);
            addr_of_mut!((*p).attr).write(attr);
            addr_of_mut!((*p).coherent).write(coherent);
            addr_of_mut!((*p).base).write(base);
            core::ptr::copy_nonoverlapping(&raw const NO_CHUNKS, addr_of_mut!((*p).chunks), 1);
            let tags = addr_of_mut!((*p).tags);
            addr_of_mut!((*tags).features).write(None);
            IdAllocator::new_in(&mut *addr_of_mut!((*tags).asids).cast(), asid_bits);
            IdAllocator::new_in(&mut *addr_of_mut!((*tags).vmids).cast(), vmid_bits);
        }
        // SAFETY: every field was written above.
        Ok(unsafe { place.assume_init_mut() })
    }

    /// Where the scan records the ASIDs and VMIDs it reserves (SPEC K14), before
    /// [`AdoptedStreamTable::arm_revalidation`] makes later mappings check against them.
    pub fn scan_record(&self) -> (&IdAllocator, &IdAllocator) {
        (&self.tags.asids, &self.tags.vmids)
    }

    /// SPEC K21: from now on, each chunk of STEs is re-validated when first touched: decoded
    /// again, its CDs read again, and every ASID and VMID it uses checked against what the
    /// scan reserved ([`AdoptedStreamTable::scan_record`]). A StreamID whose STE fails is
    /// refused with [`Error::InheritedEntryChanged`]; the rest of the table stays adopted.
    pub fn arm_revalidation(&mut self, features: Features) {
        self.tags.features = Some(features);
    }

    /// [`AdoptedStreamTable::arm_revalidation`] against copies of `asids` and `vmids` — what a
    /// scan run elsewhere reserved, taken before this kernel allocates any. Copied in place.
    pub fn revalidate_against(
        &mut self,
        features: Features,
        asids: &IdAllocator,
        vmids: &IdAllocator,
    ) {
        self.tags.asids.copy_from(asids);
        self.tags.vmids.copy_from(vmids);
        self.arm_revalidation(features);
    }

    /// The validated geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Level-2 tables mapped (or allocated) so far.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    fn chunk(&self, sid: u32) -> Option<&Chunk> {
        let i = self
            .chunks
            .binary_search_by_key(&(sid >> 8), |c| c.index)
            .ok()?;
        self.chunks.get(i)
    }

    /// The deferred and the rejected (SPEC K21) STEs of the chunk of StreamID `first_sid`,
    /// `count` STEs from STE `first_ste` of `buf`.
    fn chunk_bits<H: Hal + ?Sized>(
        &self,
        hal: &H,
        buf: &DmaBuf,
        first_ste: usize,
        first_sid: u32,
        count: usize,
    ) -> Result<([u64; 4], [u64; 4]), Error> {
        let mut deferred = [0u64; 4];
        let mut rejected = [0u64; 4];
        let mut recheck = Revalidation::new();
        let memory = HalMemory {
            hal,
            attr: self.attr,
            coherent: self.coherent,
        };
        let set = |bits: &mut [u64; 4], i: usize| {
            if let Some(b) = bits.get_mut(i / 64) {
                *b |= 1 << (i % 64);
            }
        };
        for i in 0..count.min(STES_PER_L2 as usize) {
            let mut w = [0u64; ENTRY_QWORDS];
            for (k, v) in w.iter_mut().enumerate() {
                *v = buf.read(hal, (first_ste + i) * ENTRY_QWORDS + k)?;
            }
            if !inherited(&w) {
                continue;
            }
            set(&mut deferred, i);
            if let Some(features) = &self.tags.features {
                let t = &self.tags;
                let sid = first_sid + i as u32;
                let ok = recheck.ste(sid, w, &self.geometry, features, &memory, &mut |found| {
                    let reserved = match found {
                        Found::Asid { asid, .. } => t.asids.is_reserved(asid),
                        Found::Vmid { vmid, .. } => t.vmids.is_reserved(vmid),
                        Found::Deferred { .. } => true,
                    };
                    if reserved {
                        Ok(())
                    } else {
                        Err(Refusal::VmidConflict { sid, vmid: 0 })
                    }
                });
                if ok.is_err() {
                    set(&mut rejected, i);
                }
            }
        }
        Ok((deferred, rejected))
    }

    fn is_rejected(&self, sid: u32) -> bool {
        let bit = (sid % STES_PER_L2) as usize;
        self.chunk(sid)
            .and_then(|c| c.rejected.get(bit / 64))
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }
}

impl StreamTable for AdoptedStreamTable {
    fn log2_size(&self) -> u32 {
        self.geometry.log2size()
    }

    fn base_registers(&self) -> Option<(u64, u32)> {
        // SMMUEN stays 1: STRTAB_BASE and STRTAB_BASE_CFG must not be written (SPEC K5).
        None
    }

    fn prepare<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        sid: u32,
        fill: &[u64; ENTRY_QWORDS],
    ) -> Result<Prepared, Error> {
        if !self.geometry.contains_sid(sid) {
            return Err(Error::StreamIdOutOfRange(sid));
        }
        let index = sid >> 8;
        let Err(pos) = self.chunks.binary_search_by_key(&index, |c| c.index) else {
            if self.is_rejected(sid) {
                return Err(Error::InheritedEntryChanged(sid));
            }
            return Ok(Prepared::Present);
        };
        if self.chunks.is_full() {
            return Err(Error::CapacityExhausted);
        }
        let (chunk, prepared) = match self.geometry.format() {
            Format::Linear => {
                let first = index as usize * STES_PER_L2 as usize;
                let count = (self.geometry.num_sids() as usize).saturating_sub(first);
                let (deferred, rejected) =
                    self.chunk_bits(hal, &self.base, first, index << 8, count)?;
                (
                    Chunk {
                        index,
                        l2: None,
                        deferred: deferred.map(AtomicU64::new),
                        rejected,
                    },
                    Prepared::Present,
                )
            }
            Format::TwoLevel => {
                let desc = self.base.read(hal, index as usize)?;
                // SPEC K3: re-validate; a descriptor that went bad rejects this device only.
                match self.geometry.validate_l1(index, desc) {
                    Err(_) => return Err(Error::InheritedDescriptorInvalid(sid)),
                    Ok(Some(l2)) => {
                        let bytes = STE_BYTES * STES_PER_L2 as usize;
                        let buf = DmaBuf::map(hal, PhysAddr(l2), bytes, self.attr, self.coherent)?;
                        let bits = self.chunk_bits(hal, &buf, 0, index << 8, STES_PER_L2 as usize);
                        let (deferred, rejected) = match bits {
                            Ok(d) => d,
                            Err(e) => {
                                // SAFETY: a CPU mapping of memory the SMMU keeps using;
                                // dropping it does not affect the SMMU.
                                unsafe { buf.release(hal) };
                                return Err(e);
                            }
                        };
                        (
                            Chunk {
                                index,
                                l2: Some(buf),
                                deferred: deferred.map(AtomicU64::new),
                                rejected,
                            },
                            Prepared::Present,
                        )
                    }
                    Ok(None) => {
                        // Unused descriptor: a level-2 table of our own, filled, then
                        // published with one 64-bit store (SPEC D3).
                        let bytes = STE_BYTES * STES_PER_L2 as usize;
                        let buf = DmaBuf::alloc(hal, bytes, bytes, self.coherent)?;
                        let filled = (0..STES_PER_L2 as usize).try_for_each(|i| {
                            fill.iter()
                                .enumerate()
                                .try_for_each(|(w, v)| buf.write(hal, i * ENTRY_QWORDS + w, *v))
                        });
                        let desc = smmu::arch::l1std::L1StdConfig {
                            span: (smmu::arch::l1std::STRTAB_SPLIT + 1) as u8,
                            l2_ptr: buf.pa().0,
                        }
                        .encode()
                        .to_words()[0];
                        if let Err(e) =
                            filled.and_then(|()| self.base.store_live(hal, index as usize, desc))
                        {
                            // SAFETY: the descriptor was not published; the SMMU never saw it.
                            unsafe { buf.release(hal) };
                            return Err(e.into());
                        }
                        (
                            Chunk {
                                index,
                                l2: Some(buf),
                                deferred: [const { AtomicU64::new(0) }; 4],
                                rejected: [0; 4],
                            },
                            Prepared::NewLevel1Descriptor,
                        )
                    }
                }
            }
        };
        let rejected = chunk
            .rejected
            .get((sid % STES_PER_L2) as usize / 64)
            .is_some_and(|w| w & (1 << (sid % 64)) != 0);
        // Cannot fail: capacity was checked.
        let _ = self.chunks.insert(pos, chunk);
        if rejected {
            // SPEC K21: this device only; the chunk stays mapped for the others.
            return Err(Error::InheritedEntryChanged(sid));
        }
        Ok(prepared)
    }

    fn locate(&self, sid: u32) -> Result<SteLocation<'_>, Error> {
        let chunk = self.chunk(sid).ok_or(Error::StreamIdOutOfRange(sid))?;
        Ok(match &chunk.l2 {
            Some(buf) => SteLocation {
                buf,
                first_word: (sid % STES_PER_L2) as usize * ENTRY_QWORDS,
            },
            None => SteLocation {
                buf: &self.base,
                first_word: sid as usize * ENTRY_QWORDS,
            },
        })
    }

    fn is_deferred(&self, sid: u32) -> bool {
        let bit = (sid % STES_PER_L2) as usize;
        self.chunk(sid)
            .and_then(|c| c.deferred.get(bit / 64))
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (bit % 64)) != 0)
    }

    fn clear_deferred(&self, sid: u32) {
        let bit = (sid % STES_PER_L2) as usize;
        if let Some(w) = self.chunk(sid).and_then(|c| c.deferred.get(bit / 64)) {
            w.fetch_and(!(1 << (bit % 64)), Ordering::AcqRel);
        }
    }

    fn is_inherited(&self, sid: u32) -> bool {
        // A linear table's chunk, and a level-2 table mapped from the crashed kernel's
        // memory, are the old kernel's; only a level-2 table this kernel allocated (under a
        // descriptor that was unused) is not. Unknown: inherited (SPEC K10).
        self.chunk(sid).is_none_or(|c| {
            c.l2.as_ref()
                .is_none_or(|b| b.origin() != Origin::Allocated)
        })
    }

    unsafe fn release<H: Hal + ?Sized>(&mut self, hal: &H) {
        while let Some(c) = self.chunks.pop() {
            if let Some(buf) = c.l2 {
                // SAFETY: mappings are CPU-only; tables we allocated are no longer used by
                // the SMMU (the caller's guarantee).
                unsafe { buf.release(hal) };
            }
        }
        // SAFETY: a CPU mapping of the crashed kernel's table; the caller never uses or
        // releases the table again, so it is unmapped once.
        unsafe { core::ptr::read(&raw const self.base).release(hal) };
    }
}

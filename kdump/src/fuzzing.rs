//! The entry point shared by the property test and the `adopt` fuzz target (SPEC B1, B2).
//!
//! [`validate_image`] turns arbitrary bytes into a register snapshot, a platform and a sparse
//! memory image of the crashed kernel's tables, runs the whole validation, and checks it with a
//! second, independent implementation of the rules:
//! - every read lies inside a range the registers or an already-read descriptor describe (the
//!   stream table, a level-2 table, a stage-1 STE's CD table or level-1 CD table, a leaf CD
//!   table), is 8-byte aligned and at most [`READ_CHUNK_WORDS`] words long;
//! - the K1/K13 decision and the K2 geometry verdict agree exactly with the harness's own;
//! - a verdict of "adoptable" means K3 and K14 hold for every descriptor, STE and CD, and the
//!   reports are exactly the ones the harness derives.
//!
//! The bytes are read as a small header (which registers, which faults to inject) followed by
//! a generator's choices, so most inputs build structurally plausible tables at fixed
//! addresses: a stream table, up to four level-2 tables, four CD-table slots and four leaf
//! slots. Pointers are occasionally bent (null, misaligned, beyond the OAS, raw).
//!
//! This is the harness: a broken invariant panics here (that is what the fuzzer looks for);
//! the library itself never panics.
#![allow(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used
)]

use core::cell::{Cell, RefCell};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use std::boxed::Box;
use std::vec::Vec;

use smmu::arch::idr::IdRegs;

use crate::image::Image;
use crate::scan::{scan, Found, MemFault, OldMemory, ScanStats, READ_CHUNK_WORDS};
use crate::table::AdoptedStreamTable;
use crate::validate::{decide, validate_geometry, AdoptPlatform};
use crate::{Refusal, RegisterSnapshot};

const ST_BASE: u64 = 0x4000_0000;
const L2_BASE: u64 = 0x5000_0000;
const L2_BYTES: u64 = 16 << 10;
const CD_BASE: u64 = 0x6000_0000;
const LEAF_BASE: u64 = 0x7000_0000;
const SLOT_STRIDE: u64 = 64 << 10;
const SLOTS: usize = 4;
/// Bytes populated in each CD-table and leaf slot: 64 CDs, or 512 level-1 CD descriptors.
const SLOT_BYTES: usize = 4096;
/// The largest stream-table region built (1024 STEs, or 8192 level-1 descriptors).
const MAX_TABLE_BYTES: u64 = 64 << 10;
/// The most level-1 stream-table descriptors, and the most level-1 CD descriptors, that the
/// generator points at its slots: three, enough for two tables that overlap and one apart.
/// Each makes the scan walk a whole level-2 table (256 STEs) or leaf before it compares the
/// structures; more of them only repeat what three show, and would make one input cost as
/// much as dozens (libFuzzer keeps such inputs: each further descriptor is a new loop count).
const MAX_SLOT_POINTERS: u32 = 3;

/// Bits `[hi:lo]` of a word, as a mask in place.
const fn mask(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & !((1u64 << lo) - 1)
}
const PTR_55_6: u64 = mask(55, 6);
const PTR_55_12: u64 = mask(55, 12);

/// What one run established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The validation's verdict: adoptable (with what the scan visited) or the refusal.
    pub verdict: Result<ScanStats, Refusal>,
    /// Reads of the old memory.
    pub reads: usize,
    /// Reports the sink received.
    pub found: usize,
}

/// Runs decide → validate_geometry → scan on a snapshot, platform and memory image built from
/// `data`, and checks the result independently (module documentation). Returns `None` when
/// `data` is too short to describe registers; panics if an invariant is broken.
pub fn validate_image(data: &[u8]) -> Option<Outcome> {
    if data.len() < 12 {
        return None;
    }
    let mut pool = POOL.take().unwrap_or_default();
    let mut image = core::mem::take(&mut pool.image);
    image.clear();
    let case = Case::build(data, image);
    let outcome = case.run(&mut pool);
    pool.image = case.image;
    POOL.set(Some(pool));
    Some(outcome)
}

/// Serves every read from the image, and checks it as it is made ([`ReadCheck`]).
struct Recorder<'a> {
    image: &'a Image,
    check: RefCell<ReadCheck>,
}

/// What one run needs beyond its input, kept per thread from one run to the next: no
/// allocation, and no page zeroing, that the input does not call for (the fuzzer's speed).
struct Pool {
    /// The memory image, emptied for each input (its buffers stay).
    image: Image,
    /// The scan's scratch area, grown to the largest input seen and sliced to what each one
    /// needs (the scan initialises what it uses, SPEC K15).
    scratch: Vec<crate::ScratchSlot>,
    /// The read check's ranges.
    ranges: [Vec<(u64, u64, Kind)>; 2],
    found: Vec<Found>,
    /// The ASIDs and VMIDs the sink reserved, sorted.
    asids: Vec<u16>,
    vmids: Vec<u16>,
    /// Where lazy adoption builds its table (about 60 KiB).
    table: Box<MaybeUninit<AdoptedStreamTable>>,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            image: Image::new(),
            scratch: Vec::new(),
            ranges: [Vec::new(), Vec::new()],
            found: Vec::new(),
            asids: Vec::new(),
            vmids: Vec::new(),
            table: Box::new_uninit(),
        }
    }
}

/// The sink's reservation of `tag` among the sorted `held` tags, as the crash kernel's
/// allocator of `bits`-bit IDs makes it: `None` (refused) for 0 and past the width;
/// `Some(true)` when it was reserved already (several STEs share a CD table or a VMID),
/// `Some(false)` when it is reserved now. Lazy adoption makes the same reservations in the
/// adopted table's own allocators, which must accept them.
fn reserve(held: &mut Vec<u16>, bits: u32, tag: u16) -> Option<bool> {
    if tag == 0 || u32::from(tag) >> bits != 0 {
        return None;
    }
    match held.binary_search(&tag) {
        Ok(_) => Some(true),
        Err(at) => {
            held.insert(at, tag);
            Some(false)
        }
    }
}

std::thread_local! {
    /// The pool between runs (taken by [`validate_image`], given back at its end; a run that
    /// panics leaves a fresh one).
    static POOL: Cell<Option<Box<Pool>>> = const { Cell::new(None) };
}

impl OldMemory for Recorder<'_> {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        let read = self.image.read_words(pa, out);
        let words = read.is_ok().then_some(&*out);
        self.check
            .borrow_mut()
            .read(pa, out.len() as u64 * 8, words);
        read
    }
}

/// The generator's input: bytes, then zeros once they run out.
struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
}

/// What the platform's RAM check says.
#[derive(Clone, Copy)]
enum Ram {
    /// Everything is RAM (no check).
    Any,
    /// The image's regions are RAM.
    Image,
    /// Nothing is.
    None,
}

/// One generated input: registers, platform, memory and the sink's behaviour.
struct Case {
    snap: RegisterSnapshot,
    platform: AdoptPlatform,
    ram: Ram,
    sink_fails_at: Option<usize>,
    image: Image,
}

struct Gen<'a> {
    b: Bytes<'a>,
    image: Image,
    l2_used: [bool; SLOTS],
    cd_used: [Option<(u64, u64)>; SLOTS],
    leaf_used: [bool; SLOTS],
    /// Level-1 descriptors pointed at a level-2 slot, and at a leaf slot, so far.
    l2_pointers: u32,
    leaf_pointers: u32,
}

impl Gen<'_> {
    /// A pointer to `good`, occasionally bent.
    fn ptr(&mut self, good: u64) -> u64 {
        match self.b.u8() % 32 {
            0 => 0,
            1 => good + 64,
            2 => good + 4096,
            3 => good | 1 << 40,
            4 => self.b.u64(),
            _ => good,
        }
    }

    fn ste(&mut self) -> [u64; 8] {
        let mut w = [0u64; 8];
        match self.b.u8() % 12 {
            0..=3 => {}
            4 => w[0] = 1,
            5 => w[0] = 1 | 0b100 << 1,
            6 | 7 => {
                w[0] = self.stage1(0b101);
                // STRW (§5.2, bits [95:94]): EL1, or EL2 now and then.
                if self.b.u8() % 4 == 3 {
                    w[1] = 0b10 << 30;
                }
            }
            8 => {
                w[0] = 1 | 0b110 << 1;
                w[2] = self.vmid() | self.vtcr();
                w[3] = self.s2ttb();
            }
            9 => {
                w[0] = self.stage1(0b111);
                w[2] = self.vmid() | self.vtcr();
                w[3] = self.s2ttb();
            }
            10 => w = core::array::from_fn(|_| self.b.u64()),
            _ => w[0] = 1 | u64::from(1 + self.b.u8() % 3) << 1,
        }
        w
    }

    /// STE word 2 bits [51:32] (§5.2): S2T0SZ, S2SL0, S2TG, S2PS, S2AA64 — a legal 4KB
    /// walk (40-bit IPA from level 1, two concatenated tables, DDI 0487 Table D8-22) with a
    /// 48-bit S2PS, occasionally bent.
    fn vtcr(&mut self) -> u64 {
        let legal = 24 << 32 | 1 << 38 | 0b101 << 48 | 1 << 51;
        match self.b.u8() % 16 {
            0 => u64::from(self.b.u32() & 0xf_ffff) << 32,
            1 => legal ^ 1 << (32 + self.b.u8() % 20),
            _ => legal,
        }
    }

    /// STE word 3 (§5.2 S2TTB): an 8 KiB-aligned table far from every structure, or
    /// occasionally one of the structures.
    fn s2ttb(&mut self) -> u64 {
        match self.b.u8() % 16 {
            0 => ST_BASE,
            1 => L2_BASE,
            2 => CD_BASE,
            3 => self.b.u64() & PTR_55_6 & !0xf,
            _ => 0x9000_0000,
        }
    }

    fn vmid(&mut self) -> u64 {
        let sel = self.b.u8();
        if sel < 200 {
            1 + u64::from(self.b.u8() % 255)
        } else {
            u64::from(self.b.u16())
        }
    }

    fn stage1(&mut self, config: u64) -> u64 {
        let slot = usize::from(self.b.u8()) % SLOTS;
        let fmt = match self.b.u8() % 8 {
            0..=4 => 0,
            5 => 1,
            6 => 2,
            _ => 3,
        };
        let sel = self.b.u8();
        let cd_max = if sel < 224 {
            u64::from(sel % 9)
        } else {
            u64::from(sel % 32)
        };
        let ptr = self.ptr(CD_BASE + slot as u64 * SLOT_STRIDE);
        if config == 0b101 && self.cd_used[slot].is_none() {
            self.cd_used[slot] = Some((fmt, cd_max));
        }
        1 | config << 1 | fmt << 4 | (ptr & PTR_55_6) | cd_max << 59
    }

    fn l1std(&mut self) -> u64 {
        match self.b.u8() % 8 {
            0..=3 => 0,
            4..=6 => {
                let slot = usize::from(self.b.u8()) % SLOTS;
                let ptr = self.ptr(L2_BASE + slot as u64 * L2_BYTES);
                if self.l2_pointers >= MAX_SLOT_POINTERS {
                    return 0;
                }
                self.l2_pointers += 1;
                self.l2_used[slot] = true;
                9 | (ptr & PTR_55_6)
            }
            _ => self.b.u64(),
        }
    }

    fn cd(&mut self) -> [u64; 8] {
        let mut w = [0u64; 8];
        match self.b.u8() % 6 {
            0 | 1 => {}
            2..=4 => {
                let sel = self.b.u8();
                let asid = match sel {
                    0..=219 => 1 + u64::from(self.b.u8() % 255),
                    220..=227 => 0,
                    _ => u64::from(self.b.u16()),
                };
                // V, EPD0 and EPD1 (so the granule fields are IGNORED), AArch64 tables
                // (the only format the generated SMMUs support), A (TERM_MODEL), ASID.
                w[0] = 1 << 31 | 1 << 30 | 1 << 14 | 1 << 41 | 1 << 46 | asid << 48;
                match self.b.u8() % 8 {
                    // A live TTB0 half: T0SZ 25, 4KB, IPS 48 bits, a table apart.
                    1..=3 => {
                        w[0] = (w[0] & !(1 << 14)) | 0x19 | 0b101 << 32; // T0SZ 25
                        w[1] = 0xa000_0000;
                    }
                    // The same over a structure (K18), or any half at all.
                    4 => {
                        w[0] = (w[0] & !(1 << 14)) | 0x19 | 0b101 << 32; // T0SZ 25
                        w[1] = CD_BASE;
                    }
                    5 => {
                        w[0] = (w[0] & !0xffff) | u64::from(self.b.u16());
                        w[1] = self.b.u64();
                    }
                    _ => {}
                }
            }
            _ => w = core::array::from_fn(|_| self.b.u64()),
        }
        w
    }

    fn l1cd(&mut self) -> u64 {
        match self.b.u8() % 4 {
            0 => 0,
            1 | 2 => {
                let slot = usize::from(self.b.u8()) % SLOTS;
                let ptr = self.ptr(LEAF_BASE + slot as u64 * SLOT_STRIDE);
                if self.leaf_pointers >= MAX_SLOT_POINTERS {
                    return 0;
                }
                self.leaf_pointers += 1;
                self.leaf_used[slot] = true;
                1 | (ptr & PTR_55_12)
            }
            _ => self.b.u64(),
        }
    }

    /// Whether the input is used up: every further choice reads 0, which makes an invalid
    /// STE, CD or descriptor, all zero — what a region already holds. Generators stop there
    /// rather than store zeros one by one (the fuzzer's speed).
    fn exhausted(&self) -> bool {
        self.b.pos >= self.b.data.len()
    }

    /// Adds the region of `bytes` at `base` to the image, its words those `fill` appends
    /// (the entries from its start, as far as the input lasts), then zeros. Regions never
    /// overlap (one address, one content, whichever way it is read): one that would is left
    /// out, with its words.
    fn region(&mut self, base: u64, bytes: u64, fill: impl FnOnce(&mut Self, &mut Vec<u64>)) {
        let mut words = self.image.spare_words();
        fill(self, &mut words);
        self.image.region_with(base, bytes, words);
    }

    fn stes(&mut self, words: &mut Vec<u64>, count: u64) {
        for _ in 0..count {
            if self.exhausted() {
                break;
            }
            words.extend_from_slice(&self.ste());
        }
    }

    fn cds(&mut self, words: &mut Vec<u64>, count: u64) {
        for _ in 0..count {
            if self.exhausted() {
                break;
            }
            words.extend_from_slice(&self.cd());
        }
    }

    /// `count` descriptors made by `one`.
    fn descriptors(&mut self, words: &mut Vec<u64>, count: u64, one: fn(&mut Self) -> u64) {
        for _ in 0..count {
            if self.exhausted() {
                break;
            }
            words.push(one(self));
        }
    }
}

/// The first byte of an input that carries registers and memory as they are (a real table,
/// for the seed corpus) instead of a generator's choices: see [`raw_input`].
pub const RAW_IMAGE: u8 = 0xff;

/// At most this many regions, each of at most `RAW_MAX_WORDS` words, in a raw input.
const RAW_MAX_REGIONS: usize = 64;
const RAW_MAX_WORDS: u64 = 1 << 14;

/// Encodes registers, a platform and memory regions `(base, words)` as one `adopt` input
/// ([`RAW_IMAGE`] mode): the seed corpus's way of giving the fuzzer real tables (Linux's,
/// the scenarios', one per refusal reason). The inverse of what [`validate_image`] reads.
pub fn raw_input(
    snap: &RegisterSnapshot,
    platform: &AdoptPlatform,
    regions: &[(u64, Vec<u64>)],
) -> Vec<u8> {
    let mut v = std::vec![RAW_IMAGE];
    let expect = match platform.expect_e2h {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    };
    v.push(
        u8::from(platform.crash_kernel)
            | u8::from(platform.coherent) << 1
            | u8::from(platform.cache_maintenance) << 2
            | expect << 3,
    );
    for r in snap.ids.idr {
        v.extend(r.to_le_bytes());
    }
    for r in [snap.ids.aidr, snap.cr0, snap.cr2, snap.gerror, snap.gerrorn] {
        v.extend(r.to_le_bytes());
    }
    v.extend(snap.strtab_base.to_le_bytes());
    v.extend(snap.strtab_base_cfg.to_le_bytes());
    for (base, words) in regions.iter().take(RAW_MAX_REGIONS) {
        let n = words.len().min(RAW_MAX_WORDS as usize);
        v.extend(base.to_le_bytes());
        v.extend((n as u16).to_le_bytes());
        for w in words.iter().take(n) {
            v.extend(w.to_le_bytes());
        }
    }
    v
}

impl Case {
    /// A [`RAW_IMAGE`] input: registers, platform and regions as [`raw_input`] wrote them.
    fn raw(data: &[u8], mut image: Image) -> Case {
        let mut b = Bytes { data, pos: 1 };
        let p = b.u8();
        let mut idr = [0u32; 6];
        for r in &mut idr {
            *r = b.u32();
        }
        let [aidr, cr0, cr2, gerror, gerrorn] = core::array::from_fn(|_| b.u32());
        let strtab_base = b.u64();
        let strtab_base_cfg = b.u32();
        let snap = RegisterSnapshot {
            ids: IdRegs { idr, iidr: 0, aidr },
            cr0,
            cr1: 0,
            cr2,
            gbpa: 0,
            gerror,
            gerrorn,
            strtab_base,
            strtab_base_cfg,
        };
        let mut placed: Vec<(u64, u64)> = Vec::new();
        for _ in 0..RAW_MAX_REGIONS {
            if b.pos >= data.len() {
                break;
            }
            let base = b.u64() & !7;
            let n = u64::from(b.u16()) % (RAW_MAX_WORDS + 1);
            let end = base.checked_add(n * 8);
            // Regions never overlap: one address, one content. A region skipped is still
            // consumed.
            let Some(end) =
                end.filter(|&e| n != 0 && !placed.iter().any(|&(b0, e0)| base < e0 && b0 < e))
            else {
                b.pos = b.pos.saturating_add(n as usize * 8);
                continue;
            };
            placed.push((base, end));
            // The words the input holds (a short last one padded with zeros); those it
            // lacks read as zero.
            let bytes = data.get(b.pos..).unwrap_or(&[]);
            let bytes = bytes.get(..n as usize * 8).unwrap_or(bytes);
            let mut words = image.spare_words();
            words.extend(bytes.chunks(8).map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(w)
            }));
            image.region_with(base, n * 8, words);
            b.pos = b.pos.saturating_add(n as usize * 8);
        }
        Case {
            snap,
            platform: AdoptPlatform {
                crash_kernel: p & 1 != 0,
                coherent: p & 2 != 0,
                cache_maintenance: p & 4 != 0,
                expect_e2h: match (p >> 3) & 3 {
                    1 => Some(false),
                    2 => Some(true),
                    _ => None,
                },
            },
            ram: Ram::Any,
            sink_fails_at: None,
            image,
        }
    }

    /// The case `data` describes, its memory built in `image` (empty).
    fn build(data: &[u8], image: Image) -> Case {
        if data.first() == Some(&RAW_IMAGE) {
            return Case::raw(data, image);
        }
        let mut g = Gen {
            b: Bytes { data, pos: 0 },
            image,
            l2_used: [false; SLOTS],
            cd_used: [None; SLOTS],
            leaf_used: [false; SLOTS],
            l2_pointers: 0,
            leaf_pointers: 0,
        };
        let fault = g.b.u8() % 16;
        let flags = g.b.u8();
        let table = g.b.u8() % 8;
        let size = g.b.u8();
        let split_sel = g.b.u8();
        let sid_sel = g.b.u8();
        let ssid_bits = u32::from(g.b.u8() % 21);
        let oas_sel = g.b.u8();
        let base_sel = g.b.u8();
        let ram_sel = g.b.u8();
        let e2h_sel = g.b.u8();
        let gerr_sel = g.b.u16();
        let sink_sel = g.b.u8();
        // The high bits of the error byte pair pick the rest of the SMMU: IDR3.STT,
        // AIDR.ArchMinorRev, AArch32 tables, IDR0.TERM_MODEL.
        let stt = gerr_sel & 1 << 11 != 0;
        let arch_minor = u32::from(gerr_sel >> 12) & 3;
        let aarch32 = gerr_sel & 1 << 14 != 0;
        let term_model = gerr_sel & 1 << 15 != 0;

        let two_level = (4..=6).contains(&table);
        let fmt: u32 = match table {
            0..=3 => 0,
            4..=6 => 1,
            _ => 2 + u32::from(flags >> 7),
        };
        // Mostly small linear tables (at most 64 STEs), now and then up to 1024: every STE
        // the registers describe is walked, and a fuzzer's time is its exec rate. No more
        // entries (STEs, or level-1 descriptors) than the rest of the input can fill, each
        // taking at least a byte: 2^room_log2 >= the bytes left (at least 8).
        let room = data.len().saturating_sub(g.b.pos).max(8);
        let room_log2 = room.next_power_of_two().trailing_zeros();
        let mut log2size = if two_level {
            8 + u32::from(size % 10).min(room_log2)
        } else if size < 192 {
            u32::from(size % 7).min(room_log2)
        } else {
            u32::from(size % 11).min(room_log2)
        };
        if size >= 240 {
            log2size = u32::from(size % 64);
        }
        let split = if split_sel.is_multiple_of(16) {
            u32::from(split_sel >> 3) & 0x1f
        } else {
            8
        };
        let sid_bits = if sid_sel.is_multiple_of(16) {
            u32::from(sid_sel) % 64
        } else {
            (log2size + u32::from(sid_sel % 4)).min(63)
        };
        let st_lvl = two_level != (flags & 7 == 0);
        let oas = if oas_sel < 224 {
            0b101
        } else {
            u32::from(oas_sel % 8)
        };
        let idr0 = 0b11 // S1P, S2P
            | (0b10 | u32::from(aarch32)) << 2 // AArch64 (and AArch32) tables
            | u32::from(term_model) << 26 // TERM_MODEL
            | 1 << 4 // COHACC
            | u32::from(flags & 0x10 != 0) << 9 // Hyp
            | u32::from(flags & 0x04 != 0) << 12 // ASID16
            | u32::from(flags & 0x08 != 0) << 18 // VMID16
            | u32::from(flags & 0x02 != 0) << 19 // CD2L
            | u32::from(st_lvl) << 27;
        let idr1 = sid_bits | ssid_bits << 6;
        let base = if base_sel.is_multiple_of(16) {
            ST_BASE + u64::from(base_sel >> 4) * 64
        } else {
            ST_BASE
        };
        let e2h = e2h_sel & 1 != 0;
        let mut gerror = u32::from(gerr_sel) & 0x6ff; // active errors other than SFM
        if fault == 5 {
            gerror |= 1 << 8;
        }
        let mut snap = RegisterSnapshot {
            ids: IdRegs {
                // IDR5: OAS and the three granules.
                idr: [idr0, idr1, 0, u32::from(stt) << 9, 0, oas | 0b111 << 4],
                iidr: 0,
                aidr: arch_minor,
            },
            cr0: if fault == 2 { 0b1000 } else { 0b1001 },
            cr1: 0,
            cr2: u32::from(e2h),
            gbpa: 0,
            gerror,
            gerrorn: 0,
            strtab_base: base | u64::from(e2h_sel >> 7) << 62,
            strtab_base_cfg: log2size | split << 6 | fmt << 16,
        };
        let mut platform = AdoptPlatform {
            crash_kernel: fault != 1,
            coherent: fault != 3 && fault != 4,
            cache_maintenance: fault == 4,
            expect_e2h: match (e2h_sel >> 1) % 3 {
                0 => None,
                _ if fault == 6 => Some(!e2h),
                _ => Some(e2h),
            },
        };
        if fault == 7 {
            // Raw registers: anything at all.
            snap = RegisterSnapshot {
                ids: IdRegs {
                    idr: core::array::from_fn(|_| g.b.u32()),
                    iidr: 0,
                    aidr: 0,
                },
                cr0: g.b.u32(),
                cr1: 0,
                cr2: g.b.u32(),
                gbpa: 0,
                gerror: g.b.u32(),
                gerrorn: g.b.u32(),
                strtab_base: g.b.u64(),
                strtab_base_cfg: g.b.u32(),
            };
            platform = AdoptPlatform {
                crash_kernel: true,
                coherent: true,
                cache_maintenance: false,
                expect_e2h: None,
            };
        }

        // The stream table, as the registers describe it (as much of it as is worth building).
        let table_pa = snap.strtab_addr();
        let cfg = snap.strtab_base_cfg;
        let (log2size, split) = (cfg & 0x3f, (cfg >> 6) & 0x1f);
        if (cfg >> 16) & 3 == 1 && split <= log2size {
            let entries = 1u64 << (log2size - split).min(13).min(room_log2);
            let bytes = (entries * 8).min(MAX_TABLE_BYTES);
            g.region(table_pa, bytes, |g, w| {
                g.descriptors(w, bytes / 8, Gen::l1std);
            });
        } else {
            let stes = 1u64 << log2size.min(10).min(room_log2);
            g.region(table_pa, stes * 64, |g, w| g.stes(w, stes));
        }
        for slot in 0..SLOTS {
            if g.l2_used[slot] {
                let base = L2_BASE + slot as u64 * L2_BYTES;
                g.region(base, L2_BYTES, |g, w| g.stes(w, 256));
            }
        }
        for slot in 0..SLOTS {
            let Some((fmt, cd_max)) = g.cd_used[slot] else {
                continue;
            };
            let leaf_log2 = match fmt {
                1 => Some(6),
                2 => Some(10),
                _ => None,
            };
            let base = CD_BASE + slot as u64 * SLOT_STRIDE;
            g.region(base, SLOT_BYTES as u64, |g, w| match leaf_log2 {
                Some(leaf_log2) if cd_max != 0 => {
                    let entries = (1u64 << cd_max.saturating_sub(leaf_log2)).min(512);
                    g.descriptors(w, entries, Gen::l1cd);
                }
                _ => g.cds(w, (1u64 << cd_max).min(64)),
            });
        }
        for slot in 0..SLOTS {
            if g.leaf_used[slot] {
                let base = LEAF_BASE + slot as u64 * SLOT_STRIDE;
                g.region(base, SLOT_BYTES as u64, |g, w| g.cds(w, 64));
            }
        }
        Case {
            snap,
            platform,
            ram: match ram_sel % 16 {
                0 => Ram::Image,
                1 => Ram::None,
                _ => Ram::Any,
            },
            sink_fails_at: sink_sel
                .is_multiple_of(8)
                .then_some(usize::from(sink_sel / 8)),
            image: g.image,
        }
    }

    fn run(&self, pool: &mut Pool) -> Outcome {
        let features = self.snap.features();
        let image = &self.image;
        let is_ram = |base: u64, bytes: u64| match self.ram {
            Ram::Any => true,
            Ram::Image => image.contains(base, bytes),
            Ram::None => false,
        };

        let decided = decide(&self.snap, &self.platform);
        assert_eq!(
            decided.is_ok(),
            k1_holds(&self.snap, &self.platform),
            "K1/K13 decision {decided:?} disagrees with the harness"
        );
        if let Err(refusal) = decided {
            return Outcome {
                verdict: Err(refusal),
                reads: 0,
                found: 0,
            };
        }
        let geometry = validate_geometry(&self.snap, &features, &is_ram);
        let expected_table = k2_table(&self.snap, &is_ram);
        assert_eq!(
            geometry.map(|g| (g.base(), g.table_bytes())).ok(),
            expected_table,
            "K2 verdict {geometry:?} disagrees with the harness"
        );
        let geometry = match geometry {
            Ok(g) => g,
            Err(refusal) => {
                return Outcome {
                    verdict: Err(refusal),
                    reads: 0,
                    found: 0,
                }
            }
        };

        let Pool {
            image: _,
            scratch,
            ranges: [allowed, seen],
            found,
            asids,
            vmids,
            table,
        } = pool;
        found.clear();
        asids.clear();
        vmids.clear();
        let recorder = Recorder {
            image,
            check: RefCell::new(ReadCheck::new(
                &self.snap,
                core::mem::take(allowed),
                core::mem::take(seen),
            )),
        };
        let (asid_bits, vmid_bits) = (features.asid_bits(), features.vmid_bits());
        let mut injected = None;
        let needed = crate::scratch_slots(&geometry, &features);
        if scratch.len() < needed {
            scratch.resize(needed, crate::ScratchSlot::default());
        }
        let verdict = scan(
            &geometry,
            &features,
            &recorder,
            &mut scratch[..needed],
            &mut |f| {
                found.push(f);
                let refusal = match f {
                    Found::Asid { sid, ssid, asid } => {
                        let r = Refusal::AsidConflict { sid, ssid, asid };
                        if reserve(asids, asid_bits, asid).ok_or(r)? {
                            return Ok(());
                        }
                        r
                    }
                    Found::Vmid { sid, vmid } => {
                        let r = Refusal::VmidConflict { sid, vmid };
                        if reserve(vmids, vmid_bits, vmid).ok_or(r)? {
                            return Ok(());
                        }
                        r
                    }
                    Found::Deferred { sid } => Refusal::VmidConflict { sid, vmid: 0 },
                };
                if Some(found.len() - 1) == self.sink_fails_at {
                    injected = Some(refusal);
                    return Err(refusal);
                }
                Ok(())
            },
        );

        let check = recorder.check.into_inner();
        let reads = check.reads;
        [*allowed, *seen] = [check.allowed, check.seen];
        match verdict {
            Ok(stats) => {
                assert!(injected.is_none(), "the sink's refusal was dropped");
                recheck(&self.snap, image, found, &stats);
                lazy_adoption(&geometry, &features, image, found, table);
            }
            Err(refusal) => {
                if let Some(i) = injected {
                    assert_eq!(refusal, i, "the sink's refusal was not returned as is");
                }
            }
        }
        Outcome {
            verdict,
            reads,
            found: found.len(),
        }
    }
}

/// A range of the image HAL: its physical base and its words.
type Region = (u64, Box<[Cell<u64>]>);

/// The crashed kernel's memory as a HAL: `map_phys` copies the range it maps out of the
/// image into 8-byte cells (so the pointer is aligned and writable, and what is written
/// through it stays there until the HAL is dropped), `dma_alloc` hands out fresh zeroed
/// regions far above the image. Only what is mapped is copied: the structures the adopted
/// table maps are disjoint (SPEC K18), so each range is one structure's, seen through one
/// mapping.
pub(crate) struct ImageHal<'a> {
    image: &'a Image,
    mapped: RefCell<Vec<Region>>,
    allocated: RefCell<Vec<Region>>,
    live_maps: Cell<i64>,
    live_allocs: Cell<i64>,
}

impl<'a> ImageHal<'a> {
    pub(crate) fn new(image: &'a Image) -> Self {
        Self {
            image,
            mapped: RefCell::new(Vec::new()),
            allocated: RefCell::new(Vec::new()),
            live_maps: Cell::new(0),
            live_allocs: Cell::new(0),
        }
    }
}

/// `words` zeroed cells.
fn zeroed_cells(words: usize) -> Box<[Cell<u64>]> {
    (0..words).map(|_| Cell::new(0)).collect()
}

// SAFETY: `map_phys` returns a pointer into a region's cells for a range checked to lie
// inside it (valid for reads and writes through `Cell::as_ptr`, 8-byte aligned, alive as long
// as the HAL); `dma_alloc` returns a fresh zeroed region, aligned as asked, kept alive by the
// HAL and never handed out twice.
unsafe impl smmu::Hal for ImageHal<'_> {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<smmu::DmaRegion, smmu::HalError> {
        let mut allocated = self.allocated.borrow_mut();
        let align = align.max(8) as u64;
        let pa = (0x7f00_0000_0000u64 + allocated.len() as u64 * (1 << 24)).next_multiple_of(align);
        let words = zeroed_cells(size.div_ceil(8));
        if words.is_empty() {
            return Err(smmu::HalError::NoMemory);
        }
        allocated.push((pa, words));
        // A pointer to the whole slice of cells (interior mutability: writes through it are
        // allowed), not to one element, taken from the box where it stays: a pointer taken
        // before the box moved into the list would not be the one the list frees through (Tree
        // Borrows retags a box when it moves).
        let stored = allocated.last().ok_or(smmu::HalError::NoMemory)?;
        let va = NonNull::new(stored.1.as_ptr().cast_mut().cast::<u8>())
            .ok_or(smmu::HalError::NoMemory)?;
        self.live_allocs.set(self.live_allocs.get() + 1);
        Ok(smmu::DmaRegion {
            pa: smmu::PhysAddr(pa),
            va,
            size,
        })
    }

    unsafe fn dma_free(&self, _region: smmu::DmaRegion) {
        self.live_allocs.set(self.live_allocs.get() - 1);
    }

    fn map_phys(
        &self,
        pa: smmu::PhysAddr,
        size: usize,
        _attr: smmu::MapAttr,
    ) -> Result<NonNull<u8>, smmu::HalError> {
        // The words the image holds there, as a read of them would return them: those it
        // stores, then zeros.
        let words = size.div_ceil(8);
        let stored = self
            .image
            .stored_words(pa.0, words as u64)
            .filter(|_| words != 0)
            .ok_or(smmu::HalError::MapRefused)?;
        let mut head = std::vec![0u64; stored as usize];
        if !self.image.copy_words(pa.0, &mut head) {
            return Err(smmu::HalError::MapRefused);
        }
        let cells = zeroed_cells(words);
        for (cell, word) in cells.iter().zip(head) {
            cell.set(word);
        }
        let mut mapped = self.mapped.borrow_mut();
        mapped.push((pa.0, cells));
        // As in `dma_alloc`: a pointer to the whole slice, taken where the box stays.
        let stored = mapped.last().ok_or(smmu::HalError::MapRefused)?;
        let ptr = NonNull::new(stored.1.as_ptr().cast_mut().cast::<u8>())
            .ok_or(smmu::HalError::MapRefused)?;
        self.live_maps.set(self.live_maps.get() + 1);
        Ok(ptr)
    }

    unsafe fn unmap_phys(&self, _va: NonNull<u8>, _size: usize) {
        self.live_maps.set(self.live_maps.get() - 1);
    }

    fn is_ram(&self, _pa: smmu::PhysAddr, _size: u64) -> bool {
        true
    }
}

/// Lazy adoption of an adoptable image (SPEC K3, K11): the adopted table maps only what it
/// must, every StreamID the scan found translating is addressable and deferred, a prepared
/// StreamID's STE lies inside its buffer, clearing the deferred state sticks, and releasing
/// the table gives back every mapping and allocation. The table is built in `place` and
/// records what the scan reserved as the crash kernel's does (`scan_record`, then
/// `arm_revalidation`).
fn lazy_adoption(
    geometry: &crate::validate::Geometry,
    features: &smmu::arch::idr::Features,
    image: &Image,
    found: &[Found],
    place: &mut MaybeUninit<AdoptedStreamTable>,
) {
    use smmu::strtab::StreamTable;
    let hal = ImageHal::new(image);
    let Ok(table) = AdoptedStreamTable::new_in(
        place,
        &hal,
        *geometry,
        smmu::MapAttr::Cacheable,
        true,
        features.asid_bits(),
        features.vmid_bits(),
    ) else {
        panic!("an adoptable table could not be mapped from the image it was read from");
    };
    // SPEC K21: nothing changed since the scan, so re-validating against what it reserved
    // must accept every StreamID it found translating (checked below).
    let (asids, vmids) = table.scan_record();
    let mut deferred: Vec<u32> = Vec::new();
    for f in found {
        match *f {
            Found::Asid { asid, .. } => {
                if !asids.is_reserved(asid) {
                    asids.reserve(asid).expect("an ASID the scan's sink took");
                }
            }
            Found::Vmid { vmid, .. } => {
                if !vmids.is_reserved(vmid) {
                    vmids.reserve(vmid).expect("a VMID the scan's sink took");
                }
            }
            Found::Deferred { sid } => deferred.push(sid),
        }
    }
    table.arm_revalidation(*features);
    let fill = smmu::writer::make::ste_image(&smmu::writer::make::abort_ste());
    deferred.sort_unstable();
    deferred.dedup();
    let last = (geometry.num_sids() - 1) as u32;
    let mut probes: Vec<u32> = deferred
        .iter()
        .copied()
        .take(24)
        .chain([0, 1, 255, 256, 257, last / 2, last])
        .filter(|&sid| geometry.contains_sid(sid))
        .collect();
    probes.sort_unstable();
    probes.dedup();
    for sid in probes {
        let is_deferred = deferred.binary_search(&sid).is_ok();
        if table.prepare(&hal, sid, &fill).is_err() {
            assert!(
                !is_deferred,
                "SID {sid:#x}: the scan found it translating but it cannot be adopted"
            );
            continue;
        }
        let loc = table.locate(sid).expect("a prepared StreamID locates");
        assert!(loc.first_word + 8 <= loc.buf.words());
        assert_eq!(
            table.is_deferred(sid),
            is_deferred,
            "SID {sid:#x}: deferred state disagrees with the scan"
        );
        table.clear_deferred(sid);
        assert!(!table.is_deferred(sid));
    }
    // SAFETY: nothing points the (absent) SMMU at these buffers.
    unsafe { table.release(&hal) };
    assert_eq!(hal.live_maps.get(), 0, "a mapping leaked");
    assert_eq!(hal.live_allocs.get(), 0, "an allocation leaked");
}

// The harness's own reading of the rules: raw bit positions from the specification, nothing
// shared with the validator but the register snapshot's fields.

fn oas_bits(idr5: u32) -> u32 {
    [32, 36, 40, 42, 44, 48, 52, 56][(idr5 & 7) as usize]
}

/// Whether `[base, base + bytes)` is entirely below 2^`oas`.
fn below(base: u64, bytes: u64, oas: u32) -> bool {
    u128::from(base) + u128::from(bytes) <= 1u128 << oas
}

fn k1_holds(s: &RegisterSnapshot, p: &AdoptPlatform) -> bool {
    p.crash_kernel
        && s.cr0 & 1 == 1
        && (p.coherent || p.cache_maintenance)
        && (s.gerror ^ s.gerrorn) & (1 << 8) == 0
        && p.expect_e2h.is_none_or(|e| (s.cr2 & 1 == 1) == e)
}

/// K2 as the harness reads it: the table's `(base, bytes)` when the registers are adoptable.
fn k2_table(s: &RegisterSnapshot, is_ram: &dyn Fn(u64, u64) -> bool) -> Option<(u64, u64)> {
    let [idr0, idr1, _, _, _, idr5] = s.ids.idr;
    let cfg = s.strtab_base_cfg;
    let (fmt, split, log2) = ((cfg >> 16) & 3, (cfg >> 6) & 0x1f, cfg & 0x3f);
    let st_lvl = (idr0 >> 27) & 3 == 1;
    let base = s.strtab_base & PTR_55_6;
    let oas = oas_bits(idr5);
    if log2 > idr1 & 0x3f {
        return None;
    }
    let (bytes, align) = match fmt {
        0 if log2 <= if st_lvl { 25 } else { 31 } => (64u64 << log2, 64u64 << log2),
        1 if st_lvl && split == 8 && log2 >= 8 && log2 - 8 <= 17 => {
            let bytes = 8u64 << (log2 - 8);
            (bytes, bytes.max(64))
        }
        _ => return None,
    };
    (base.is_multiple_of(align) && below(base, bytes, oas) && is_ram(base, bytes))
        .then_some((base, bytes))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Ste,
    L1Std,
    L1Cd { leaf_cds: u64 },
    Cd,
}

/// The CD table a stage-1 STE's word 0 describes (§5.2), as `(base, bytes, kind)`.
fn cd_region(w0: u64) -> (u64, u64, Kind) {
    let ptr = w0 & PTR_55_6;
    let cd_max = w0 >> 59;
    let leaf_log2 = match (w0 >> 4) & 3 {
        _ if cd_max == 0 => return (ptr, 64, Kind::Cd),
        1 => 6,
        2 => 10,
        _ => return (ptr, 64 << cd_max, Kind::Cd),
    };
    let l1 = 1u64 << cd_max.saturating_sub(leaf_log2);
    (
        ptr,
        l1 * 8,
        Kind::L1Cd {
            leaf_cds: 1 << cd_max.min(leaf_log2),
        },
    )
}

/// Every read must lie inside a range the registers, or a descriptor read before it,
/// describe; checked as each read is made, on the words it returned.
struct ReadCheck {
    /// The ranges described so far, in the order found.
    allowed: Vec<(u64, u64, Kind)>,
    /// The same, sorted (no range twice).
    seen: Vec<(u64, u64, Kind)>,
    /// S1CDMax is IGNORED on an SMMU without substreams (§5.2).
    no_ssids: bool,
    /// Reads so far.
    reads: usize,
}

impl ReadCheck {
    /// The ranges the registers describe (`allowed` and `seen` are buffers to reuse).
    fn new(
        s: &RegisterSnapshot,
        mut allowed: Vec<(u64, u64, Kind)>,
        mut seen: Vec<(u64, u64, Kind)>,
    ) -> Self {
        let cfg = s.strtab_base_cfg;
        let (fmt, split, log2) = ((cfg >> 16) & 3, (cfg >> 6) & 0x1f, cfg & 0x3f);
        let base = s.strtab_base & PTR_55_6;
        allowed.clear();
        seen.clear();
        if fmt == 1 {
            if split <= log2 {
                allowed.push((base, 8u64 << (log2 - split), Kind::L1Std));
            }
        } else if log2 <= 57 {
            allowed.push((base, 64u64 << log2, Kind::Ste));
        }
        seen.extend_from_slice(&allowed);
        Self {
            allowed,
            seen,
            no_ssids: (s.ids.idr[1] >> 6) & 0x1f == 0,
            reads: 0,
        }
    }

    /// A read of `len` bytes at `pa`, which returned `words` (`None`: it failed, and taught
    /// nothing).
    fn read(&mut self, pa: u64, len: u64, words: Option<&[u64]>) {
        self.reads += 1;
        assert!(
            pa.is_multiple_of(8) && len > 0 && len <= READ_CHUNK_WORDS as u64 * 8,
            "read {pa:#x}+{len:#x} is not an aligned, bounded chunk"
        );
        let end = u128::from(pa) + u128::from(len);
        let inside = |b: u64, l: u64| {
            u128::from(b) <= u128::from(pa) && end <= u128::from(b) + u128::from(l)
        };
        assert!(
            self.allowed.iter().any(|&(b, l, _)| inside(b, l)),
            "read {pa:#x}+{len:#x} lies outside every range the registers and descriptors describe"
        );
        let Some(words) = words else {
            return;
        };
        for k in 0..self.allowed.len() {
            let (region, l, kind) = self.allowed[k];
            if !inside(region, l) {
                continue;
            }
            // Which words of the read can describe a child: every descriptor, an STE's
            // word 0; a CD describes none.
            let (first, step) = match kind {
                Kind::L1Std | Kind::L1Cd { .. } => (0, 1),
                Kind::Ste => (((64 - (pa - region) % 64) % 64 / 8) as usize, 8),
                Kind::Cd => continue,
            };
            for &w in words.iter().skip(first).step_by(step) {
                // A zero word describes nothing (Span 0, V = 0).
                if w == 0 {
                    continue;
                }
                let child = match kind {
                    Kind::L1Std => {
                        let span = w & 0x1f;
                        (span != 0).then(|| (w & PTR_55_6, 64u64 << (span - 1), Kind::Ste))
                    }
                    Kind::Ste if w & 1 == 1 && (w >> 1) & 7 == 0b101 => {
                        Some(cd_region(if self.no_ssids { w & !(0x1f << 59) } else { w }))
                    }
                    Kind::L1Cd { leaf_cds } if w & 1 == 1 => {
                        Some((w & PTR_55_12, leaf_cds * 64, Kind::Cd))
                    }
                    _ => None,
                };
                if let Some(c) = child {
                    if let Err(at) = self.seen.binary_search(&c) {
                        self.seen.insert(at, c);
                        self.allowed.push(c);
                    }
                }
            }
        }
    }
}

/// After an "adoptable" verdict: K3, K14 and K18–K21 hold everywhere, re-derived here with
/// the harness's own reading of the raw words (not the validator's decoders): every rule
/// holds, the structures are disjoint (K18), each tag names one configuration (K19), and the
/// reports are exactly the tags and deferred StreamIDs the tables hold. Any difference is a
/// crash.
fn recheck(s: &RegisterSnapshot, image: &Image, found: &[Found], stats: &ScanStats) {
    let [idr0, idr1, _, idr3, _, idr5] = s.ids.idr;
    let oas = oas_bits(idr5);
    let cfg = s.strtab_base_cfg;
    let log2 = cfg & 0x3f;
    let base = s.strtab_base & PTR_55_6;
    let rd = Old(image);
    let ctx = Rules {
        asid_bits: if idr0 & 1 << 12 != 0 { 16 } else { 8 },
        vmid_bits: if idr0 & 1 << 18 != 0 { 16 } else { 8 },
        ssid_bits: u64::from((idr1 >> 6) & 0x1f),
        cd2l: idr0 & 1 << 19 != 0,
        s2p: idr0 & 1 != 0, // IDR0.S2P, bit 0 (S1P is bit 1)
        oas,
        idr0,
        idr1,
        idr3,
        idr5,
        v3_0: s.ids.aidr & 0xff == 0,
        e2h: s.cr2 & 1 == 1,
    };
    let mut o = Oracle::default();
    if (cfg >> 16) & 3 == 1 {
        let entries = 1u64 << (log2 - 8);
        o.structure(base, entries * 8, "stream table", 0);
        for i in 0..rd.stored::<1>(base, entries) {
            let [d] = rd.entry(base + i * 8);
            let span = d & 0x1f;
            if span == 0 {
                continue;
            }
            let l2 = d & PTR_55_6;
            assert!(span == 9, "K3: span {span} adopted");
            assert!(
                l2 != 0 && l2.is_multiple_of(L2_BYTES),
                "K3: L2 table {l2:#x} adopted"
            );
            assert!(
                below(l2, L2_BYTES, oas),
                "K3: L2 table {l2:#x} beyond the OAS"
            );
            o.structure(l2, L2_BYTES, "L2 table", i);
            for j in 0..rd.stored::<8>(l2, 256) {
                ctx.ste(
                    ((i << 8) | j) as u32,
                    l2 + j * 64,
                    rd.entry(l2 + j * 64),
                    &mut o,
                );
            }
        }
    } else {
        o.structure(base, 64 << log2, "stream table", 0);
        for sid in 0..rd.stored::<8>(base, 1 << log2) {
            ctx.ste(
                sid as u32,
                base + sid * 64,
                rd.entry(base + sid * 64),
                &mut o,
            );
        }
    }
    // Pass 2 as the harness sees it: each distinct CD table once, for its lowest StreamID
    // (sorted by table, then StreamID: the first of each run).
    let mut tables = core::mem::take(&mut o.cd_tables);
    tables.sort_unstable();
    tables.dedup_by_key(|(k, _)| *k);
    for &((ptr, fmt, cd_max, el2, stalld), sid) in &tables {
        ctx.cd_table(&rd, sid, ptr, (fmt, cd_max), (el2, stalld), &mut o);
    }
    o.check_disjoint();
    o.check_roots();
    o.check_aliases();
    // One integer per report, ordered as (kind, StreamID, SubstreamID, tag).
    let key = |f: &Found| match *f {
        Found::Vmid { sid, vmid } => u128::from(sid) << 64 | u128::from(vmid),
        Found::Asid { sid, ssid, asid } => {
            1 << 96 | u128::from(sid) << 64 | u128::from(ssid) << 16 | u128::from(asid)
        }
        Found::Deferred { sid } => 2 << 96 | u128::from(sid) << 64,
    };
    let mut got: Vec<_> = found.iter().map(key).collect();
    let mut want: Vec<_> = o.expected.iter().map(key).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "the scan's reports differ");
    let count = |p: fn(&Found) -> bool| found.iter().filter(|f| p(f)).count() as u64;
    assert_eq!(
        stats.deferred,
        count(|f| matches!(f, Found::Deferred { .. }))
    );
    assert_eq!(stats.asids, count(|f| matches!(f, Found::Asid { .. })));
    assert_eq!(stats.vmids, count(|f| matches!(f, Found::Vmid { .. })));
}

/// The harness's reads of an adoptable image: whole entries, and how far a structure holds
/// anything (entries past that read as zero: invalid, nothing to check).
struct Old<'a>(&'a Image);

impl Old<'_> {
    /// Of `count` entries of `N` words from `pa`, how many may hold a non-zero word. The
    /// verdict was "adoptable", so all of them must be readable.
    fn stored<const N: usize>(&self, pa: u64, count: u64) -> u64 {
        let words = count.saturating_mul(N as u64);
        self.0
            .stored_words(pa, words)
            .unwrap_or_else(|| panic!("adoptable, but {pa:#x}+{:#x} was never readable", words * 8))
            .div_ceil(N as u64)
    }

    /// The `N` words at `pa`.
    fn entry<const N: usize>(&self, pa: u64) -> [u64; N] {
        let mut w = [0; N];
        assert!(
            self.0.copy_words(pa, &mut w),
            "adoptable, but {pa:#x} was never readable"
        );
        w
    }
}

/// One use of a tag: (0 ASID, 1 VMID, 2 the NS-EL2 regime, tag), the entry's address and its
/// cacheable bits.
type TagUse = ((u8, u16), u64, [u64; 8]);

/// What the harness derived from the tables.
#[derive(Default)]
struct Oracle {
    expected: Vec<Found>,
    /// Every structure: (first byte, last byte, kind, owner).
    structures: Vec<(u64, u64, &'static str, u64)>,
    /// Each use of a CD table (pointer, S1Fmt, effective S1CDMax, NS-EL2, S1STALLD) with its
    /// StreamID.
    cd_tables: Vec<(CdTableKey, u32)>,
    /// Each use of a tag, in the order found.
    uses: Vec<TagUse>,
    /// K18: every live translation table's start level: (first byte, last byte, entry).
    roots: Vec<(u64, u64, u64)>,
}

/// A CD table as the STEs that share it see it: pointer, S1Fmt, S1CDMax, whether their
/// StreamWorld is NS-EL2, S1STALLD.
type CdTableKey = (u64, u64, u64, bool, bool);

impl Oracle {
    fn structure(&mut self, base: u64, bytes: u64, kind: &'static str, owner: u64) {
        self.structures
            .push((base, base.saturating_add(bytes - 1), kind, owner));
    }

    /// K18: no two structures share a byte (a sort and a neighbour check of its own).
    fn check_disjoint(&mut self) {
        let mut v = self.structures.clone();
        v.sort_unstable();
        let mut reach: Option<(u64, u64, &'static str, u64)> = None;
        for b in v {
            if let Some(a) = reach {
                assert!(
                    b.0 > a.1,
                    "K18: {} {:#x}..={:#x} (owner {:#x}) overlaps {} {:#x}..={:#x} (owner \
                     {:#x}) but the table was adopted",
                    b.2,
                    b.0,
                    b.1,
                    b.3,
                    a.2,
                    a.0,
                    a.1,
                    a.3
                );
            }
            if reach.is_none_or(|a| b.1 > a.1) {
                reach = Some(b);
            }
        }
    }

    /// K18: no start-level table of a live regime shares a byte with a structure.
    fn check_roots(&self) {
        for &(first, last, entry) in &self.roots {
            for &(b, e, kind, owner) in &self.structures {
                assert!(
                    last < b || first > e,
                    "K18: the start table {first:#x}..={last:#x} of the entry at {entry:#x} \
                     overlaps {kind} {b:#x}..={e:#x} (owner {owner:#x}) but the table was adopted"
                );
            }
        }
    }

    /// K19: every use of a tag has the same cacheable configuration as its first use.
    fn check_aliases(&mut self) {
        // Stable: each tag's uses stay in the order found.
        self.uses.sort_by_key(|u| u.0);
        let mut first: Option<TagUse> = None;
        for &u in &self.uses {
            let f = *first.get_or_insert(u);
            if f.0 != u.0 {
                first = Some(u);
                continue;
            }
            let (kind, tag) = u.0;
            assert_eq!(
                u.2,
                f.2,
                "K19: {} {tag:#x} names different configurations at {:#x} and {:#x} but \
                 the table was adopted",
                ["ASID", "VMID", "NS-EL2 tag"][usize::from(kind)],
                f.1,
                u.1
            );
        }
    }
}

struct Rules {
    asid_bits: u32,
    vmid_bits: u32,
    ssid_bits: u64,
    cd2l: bool,
    s2p: bool,
    oas: u32,
    idr0: u32,
    idr1: u32,
    idr3: u32,
    idr5: u32,
    /// `AIDR`: SMMUv3.0, where out-of-range sizes are CONSTRAINED UNPREDICTABLE.
    v3_0: bool,
    e2h: bool,
}

/// `bits` of `x`, `[hi:lo]`.
const fn field(x: u64, hi: u32, lo: u32) -> u64 {
    (x >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

/// DDI 0487 D8.2 (Tables D8-19..41): the start level of a stage-2 walk from the granule
/// (S2TG encoding) and {SL2, SL0}, or `None` for a reserved encoding.
fn s2_level(tg: u64, sl2: bool, sl0: u64) -> Option<i32> {
    Some(match (tg, sl2, sl0) {
        (0b00, true, 0) => -1,
        (0b00, true, _) => return None,
        (0b00, false, 0) => 2,
        (0b00, false, 1) => 1,
        (0b00, false, 2) => 0,
        (0b00, false, _) => 3,
        (0b10, _, 0) => 3,
        (0b10, _, 1) => 2,
        (0b10, _, 2) => 1,
        (0b10, _, _) => 0,
        (0b01, _, 0) => 3,
        (0b01, _, 1) => 2,
        (0b01, _, 2) => 1,
        _ => return None,
    })
}

/// log2 of a granule in the S2TG/TG0 encoding (0b00 4KB, 0b01 64KB, 0b10 16KB).
const fn granule_log2(tg: u64) -> u32 {
    match tg {
        0b00 => 12,
        0b01 => 16,
        _ => 14,
    }
}

/// The identity a stage-1-only STE gives its VMID: "no stage 2" (K19).
const NO_STAGE2: [u64; 8] = [0, 0, 0, 0, 0, 0, 0, 1];

/// The bits of a stage-2 STE a TLB entry may cache (§5.2): S2FWB, VTCR with S2AA64 to
/// S2HA (not S2S, S2R), S2TTB.
fn s2_identity(w1: u64, w2: u64, w3: u64) -> [u64; 8] {
    let bits = |hi: u32, lo: u32| (u64::MAX >> (63 - hi)) & !((1u64 << lo) - 1);
    [
        0,
        w1 & 1 << 25,
        w2 & bits(56, 32),
        w3 & bits(55, 4),
        0,
        0,
        0,
        0,
    ]
}

/// The bits of a CD a TLB entry may cache (§5.4), with what EPDx and HA make IGNORED
/// cleared: word 0 but `S`, `R`, `A`; `TTB0`, `TTB1`; `MAIR`, `AMAIR`.
fn cd_identity(w: [u64; 8]) -> [u64; 8] {
    let bits = |hi: u32, lo: u32| (u64::MAX >> (63 - hi)) & !((1u64 << lo) - 1);
    let (epd0, epd1) = (w[0] >> 14 & 1 == 1, w[0] >> 30 & 1 == 1);
    let mut w0 = w[0] & !bits(46, 44);
    let (mut ttb0, mut ttb1) = (w[1] & bits(55, 4), w[2] & bits(55, 4));
    if epd0 {
        w0 &= !bits(13, 0);
        ttb0 = 0;
    }
    if epd1 {
        w0 &= !bits(29, 16);
        ttb1 = 0;
    }
    if epd0 && epd1 {
        w0 &= !(1 << 15);
    }
    if w0 >> 43 & 1 == 1 {
        w0 &= !(1 << 35);
    }
    [w0, ttb0, ttb1, w[3], w[4], 0, 0, 0]
}

impl Rules {
    fn granule_ok(&self, tg: u64) -> bool {
        match tg {
            0b00 => self.idr5 & 1 << 4 != 0,
            0b10 => self.idr5 & 1 << 5 != 0,
            0b01 => self.idr5 & 1 << 6 != 0,
            _ => false,
        }
    }

    fn endianness_ok(&self, big: bool) -> bool {
        match (self.idr0 >> 21) & 3 {
            0b10 => !big,
            0b11 => big,
            _ => true,
        }
    }

    fn stt(&self) -> bool {
        self.idr3 & 1 << 9 != 0
    }

    /// §5.2 SteIllegal() for the stage-2 fields of an adopted STE, read from raw bits; the
    /// start table's (first byte, bytes) for K18.
    fn stage2(&self, w1: u64, w2: u64, w3: u64) -> (u64, u64) {
        let _ = w1;
        let (t0sz, sl0, tg, ps) = (
            field(w2, 37, 32),
            field(w2, 39, 38),
            field(w2, 47, 46),
            field(w2, 50, 48),
        );
        let aa64 = w2 & 1 << 51 != 0;
        let endi = w2 & 1 << 52 != 0;
        let (hd, ha) = (w2 & 1 << 55 != 0, w2 & 1 << 56 != 0);
        let ttb = w3 & mask(55, 4);
        let ttf = (self.idr0 >> 2) & 3;
        let httu = (self.idr0 >> 6) & 3;
        assert!(
            if aa64 { ttf & 2 != 0 } else { ttf & 1 != 0 },
            "K21: S2AA64 {aa64} adopted"
        );
        assert!(
            !((ha || hd) && (httu == 0 || !aa64)) && !(hd && httu == 1),
            "K21: S2HA/S2HD adopted"
        );
        assert!(self.endianness_ok(endi), "K21: S2ENDI adopted");
        if !aa64 {
            // VMSAv8-32 LPAE: 40-bit output, a signed 4-bit T0SZ, SL0 level 2 or 1.
            assert!(ttb >> 40 == 0, "K21: AArch32 S2TTB beyond 40 bits adopted");
            let t = ((t0sz & 0xf) as i64) << 60 >> 60;
            let ia = 32 - t;
            let level = match sl0 {
                0 => 2,
                1 => 1,
                _ => panic!("K21: AArch32 SL0 {sl0} adopted"),
            };
            let bits = ia - (12 + 9 * (3 - level));
            assert!((1..=13).contains(&bits), "K21: AArch32 T0SZ/SL0 adopted");
            let bytes = 8u64 << bits;
            return (ttb & !(bytes - 1), bytes);
        }
        assert!(self.granule_ok(tg), "K21: S2TG {tg:#b} adopted");
        let ds = self.idr5 & 1 << 7 != 0 && tg != 0b01 && w3 & 1 << 3 != 0;
        let eff_ps = oas_bits(ps as u32).min(self.oas);
        assert!(
            ttb >> eff_ps == 0,
            "K21: S2TTB {ttb:#x} beyond S2PS adopted"
        );
        assert!(
            tg == 0b01 || ds || ttb >> 48 == 0,
            "K21: S2TTB {ttb:#x} beyond 48 bits adopted"
        );
        let ias = if (self.idr0 >> 2) & 1 == 1 {
            self.oas.max(40)
        } else {
            self.oas
        };
        let max = match (self.stt(), tg) {
            (true, 0b01) => 47,
            (true, _) => 48,
            _ => 39,
        };
        let min = if self.v3_0 {
            64 - ias
        } else if tg == 0b01 || ds {
            (64 - ias).max(12)
        } else {
            (64 - ias).max(16)
        };
        assert!(
            (u64::from(min)..=max).contains(&t0sz),
            "K21: S2T0SZ {t0sz} adopted (range {min}..={max})"
        );
        let sl2 = ds && tg == 0 && w3 & 1 << 2 != 0;
        let level = s2_level(tg, sl2, sl0)
            .unwrap_or_else(|| panic!("K21: reserved SL0 {sl0} (SL2 {sl2}) adopted"));
        assert!(
            !(tg == 0 && level == 3 && !self.stt()),
            "K21: 4KB level 3 without STT adopted"
        );
        assert!(
            !(tg == 0b10 && level == 0 && !ds),
            "K21: 16KB level 0 without DS adopted"
        );
        let g = granule_log2(tg);
        let ia = 64 - t0sz as i32;
        assert!(
            !(ia > 48 && tg != 0b01 && !ds),
            "K21: IA {ia} without DS adopted"
        );
        let bits = ia - (g as i32 + (g as i32 - 3) * (3 - level));
        assert!(
            (1..=g as i32 - 3 + 4).contains(&bits),
            "K21: S2T0SZ {t0sz} inconsistent with level {level} adopted"
        );
        let bytes = 8u64 << bits;
        (ttb & !(bytes - 1), bytes)
    }

    fn ste(&self, sid: u32, pa: u64, w: [u64; 8], o: &mut Oracle) {
        let [w0, w1, w2, w3, ..] = w;
        if w0 & 1 == 0 {
            return;
        }
        let config = (w0 >> 1) & 7;
        assert!(
            matches!(config, 0 | 4..=7),
            "K14: Config {config:#b} adopted"
        );
        if config == 0 {
            return;
        }
        // PRIVCFG/INSTCFG 0b01 is reserved where IDR1.ATTR_PERMS_OVR makes them used.
        if self.idr1 & 1 << 26 != 0 {
            assert!(
                field(w1, 49, 48) != 1 && field(w1, 51, 50) != 1,
                "K21: reserved PRIVCFG/INSTCFG adopted"
            );
        }
        if config & 0b110 == 0b110 {
            let vmid = w2 & 0xffff;
            assert!(
                vmid != 0 && vmid >> self.vmid_bits == 0,
                "K14: VMID {vmid:#x}"
            );
            let (root, bytes) = self.stage2(w1, w2, w3);
            o.roots.push((root, root + (bytes - 1), pa));
            o.expected.push(Found::Vmid {
                sid,
                vmid: vmid as u16,
            });
            o.uses.push(((1, vmid as u16), pa, s2_identity(w1, w2, w3)));
        }
        let mut el2 = false;
        if config == 0b101 {
            // STRW is used by stage-1-only streams: 0bx1 is ILLEGAL (K21); 0b10 (EL2)
            // needs IDR0.Hyp.
            let strw = (w1 >> 30) & 3;
            assert!(strw == 0 || strw == 2, "K21: STRW {strw:#b} adopted");
            assert!(
                strw == 0 || self.idr0 & 1 << 9 != 0,
                "K21: STRW EL2 without Hyp adopted"
            );
            el2 = strw == 2;
            // With S2P and StreamWorld EL1 a non-zero S2VMID tags the entries (K19).
            let vmid = w2 & 0xffff;
            if self.s2p && strw == 0 && vmid != 0 {
                assert!(vmid >> self.vmid_bits == 0, "K19: stage-1 VMID {vmid:#x}");
                o.expected.push(Found::Vmid {
                    sid,
                    vmid: vmid as u16,
                });
                o.uses.push(((1, vmid as u16), pa, NO_STAGE2));
            }
        }
        if config & 0b101 == 0b101 {
            // S1CDMax is IGNORED without substreams, S1Fmt with S1CDMax = 0 (§5.2).
            let cd_max = if self.ssid_bits == 0 { 0 } else { w0 >> 59 };
            let fmt = if cd_max == 0 { 0 } else { (w0 >> 4) & 3 };
            assert!(cd_max <= self.ssid_bits, "K14: S1CDMax {cd_max} adopted");
            assert!(
                fmt == 0 || (fmt != 3 && self.cd2l),
                "K14: S1Fmt {fmt} adopted"
            );
            let stalld = w1 & 1 << 27 != 0;
            assert!(
                !stalld || (self.idr0 >> 24) & 3 == 0,
                "K21: S1STALLD adopted"
            );
            let ptr = w0 & PTR_55_6;
            let (bytes, _) = cd_layout(fmt, cd_max);
            assert!(
                ptr.is_multiple_of(bytes.max(64)),
                "K14: CD table {ptr:#x} misaligned"
            );
            if config == 0b101 {
                assert!(ptr != 0, "K14: null CD table adopted");
                assert!(below(ptr, bytes, self.oas), "K14: CD table beyond the OAS");
                o.cd_tables.push(((ptr, fmt, cd_max, el2, stalld), sid));
            }
        }
        o.expected.push(Found::Deferred { sid });
    }

    fn cd_table(
        &self,
        rd: &Old<'_>,
        sid: u32,
        ptr: u64,
        (fmt, cd_max): (u64, u64),
        ctx: (bool, bool),
        o: &mut Oracle,
    ) {
        let (bytes, leaf_cds) = cd_layout(fmt, cd_max);
        o.structure(ptr, bytes, "CD table", u64::from(sid));
        match leaf_cds {
            Some(leaf_cds) => {
                let (capacity, align) = if fmt == 1 { (64, 4096) } else { (1024, 65536) };
                for i in 0..rd.stored::<1>(ptr, bytes / 8) {
                    let [d] = rd.entry(ptr + i * 8);
                    if d & 1 == 0 {
                        continue;
                    }
                    let leaf = d & PTR_55_12;
                    assert!(
                        leaf != 0 && leaf.is_multiple_of(align),
                        "K14: leaf {leaf:#x}"
                    );
                    assert!(below(leaf, leaf_cds * 64, self.oas), "K14: leaf beyond OAS");
                    o.structure(leaf, leaf_cds * 64, "leaf CD table", u64::from(sid));
                    for j in 0..rd.stored::<8>(leaf, leaf_cds) {
                        let ssid = (i * capacity + j) as u32;
                        let pa = leaf + j * 64;
                        self.cd((sid, ssid), pa, rd.entry(pa), ctx, o);
                    }
                }
            }
            None => {
                for j in 0..rd.stored::<8>(ptr, bytes / 64) {
                    let pa = ptr + j * 64;
                    self.cd((sid, j as u32), pa, rd.entry(pa), ctx, o);
                }
            }
        }
    }

    /// §5.4 CdIllegal() for one translation table half that is live, from raw bits: the
    /// start table's (first byte, bytes).
    fn cd_half(&self, w0: u64, tsz: u64, tg: u64, ttb: u64, ds_bit: bool) -> (u64, u64) {
        assert!(self.granule_ok(tg), "K21: CD granule {tg:#b} adopted");
        let ds = self.idr5 & 1 << 7 != 0 && ds_bit;
        let vax52 = field(u64::from(self.idr5), 11, 10) != 0;
        let max = match (self.stt(), tg) {
            (true, 0b01) => 47,
            (true, _) => 48,
            _ => 39,
        };
        let min = if vax52 && (tg == 0b01 || ds) { 12 } else { 16 };
        assert!(
            (min..=max).contains(&tsz),
            "K21: CD TxSZ {tsz} adopted (range {min}..={max}, v3.0 {})",
            self.v3_0
        );
        let ips = oas_bits(field(w0, 34, 32) as u32).min(self.oas);
        assert!(ttb >> ips == 0, "K21: TTB {ttb:#x} beyond IPS adopted");
        assert!(
            tg == 0b01 || ds || ttb >> 48 == 0,
            "K21: TTB {ttb:#x} beyond 48 bits adopted"
        );
        let g = u64::from(granule_log2(tg));
        let bits = (64 - tsz - g - 1) % (g - 3) + 1;
        let bytes = 8u64 << bits;
        (ttb & !(bytes - 1), bytes)
    }

    fn cd(
        &self,
        (sid, ssid): (u32, u32),
        pa: u64,
        mut w: [u64; 8],
        (el2, stalld): (bool, bool),
        o: &mut Oracle,
    ) {
        if (w[0] >> 31) & 1 == 0 {
            return;
        }
        // NS-EL2 (STRW EL2 without CR2.E2H): EPD0/EPD1 effectively 0, no TTB1 half, the
        // ASID IGNORED (§5.4) — the words as that world reads them.
        let ns_el2 = el2 && !self.e2h;
        if ns_el2 {
            w[0] = (w[0] & !(1 << 14) & !(0xffff << 48)) | 1 << 30;
        }
        let w0 = w[0];
        let (aa64, hd, ha, st, a) = (
            w0 & 1 << 41 != 0,
            w0 & 1 << 42 != 0,
            w0 & 1 << 43 != 0,
            w0 & 1 << 44 != 0,
            w0 & 1 << 46 != 0,
        );
        let (epd0, epd1) = (w0 & 1 << 14 != 0, w0 & 1 << 30 != 0);
        let ttf = (self.idr0 >> 2) & 3;
        let httu = (self.idr0 >> 6) & 3;
        let stall_model = (self.idr0 >> 24) & 3;
        assert!(!(stalld && st), "K21: CD.S under S1STALLD adopted");
        assert!(
            self.idr0 & 1 << 26 == 0 || a,
            "K21: CD.A = 0 under TERM_MODEL adopted"
        );
        assert!(
            !matches!((stall_model, st), (1, true) | (2, false)),
            "K21: CD.S against the stall model adopted"
        );
        if !(epd0 && epd1) {
            assert!(
                self.endianness_ok(w0 & 1 << 15 != 0),
                "K21: CD.ENDI adopted"
            );
        }
        assert!(
            if aa64 { ttf & 2 != 0 } else { ttf & 1 != 0 },
            "K21: CD.AA64 adopted"
        );
        assert!(
            !(!aa64 && el2 && self.e2h),
            "K21: AArch32 CD under E2H adopted"
        );
        if aa64 {
            assert!(
                !((ha || hd) && httu == 0) && !(hd && httu == 1),
                "K21: CD.HA/HD adopted"
            );
            assert!(
                !(httu == 3 && w[1] & 1 << 3 != 0 && !ha),
                "K21: CD.HAFT without HA adopted"
            );
            let ds = w[2] & 1 << 58 != 0;
            if !epd0 {
                let (b, n) =
                    self.cd_half(w0, field(w0, 5, 0), field(w0, 7, 6), w[1] & mask(55, 4), ds);
                o.roots.push((b, b + (n - 1), pa));
            }
            if !epd1 {
                // TG1: 0b01 16KB, 0b10 4KB, 0b11 64KB; in the TG0 encoding.
                let tg1 = match field(w0, 23, 22) {
                    0b01 => 0b10,
                    0b10 => 0b00,
                    0b11 => 0b01,
                    _ => panic!("K14: reserved TG1 adopted"),
                };
                let (b, n) = self.cd_half(w0, field(w0, 21, 16), tg1, w[2] & mask(55, 4), ds);
                o.roots.push((b, b + (n - 1), pa));
            }
        }
        if ns_el2 {
            o.uses.push(((2, 0), pa, cd_identity(w)));
            return;
        }
        let asid = w[0] >> 48;
        assert!(
            asid != 0 && asid >> self.asid_bits == 0,
            "K14: ASID {asid:#x}"
        );
        o.expected.push(Found::Asid {
            sid,
            ssid,
            asid: asid as u16,
        });
        o.uses.push(((0, asid as u16), pa, cd_identity(w)));
    }
}

/// A CD table of `S1Fmt` `fmt` and effective `S1CDMax` `cd_max` (§5.2): its bytes and, for
/// a 2-level one, the CDs used in each leaf.
fn cd_layout(fmt: u64, cd_max: u64) -> (u64, Option<u64>) {
    let leaf_log2 = match fmt {
        _ if cd_max == 0 => return (64, None),
        1 => 6,
        2 => 10,
        _ => return (64 << cd_max, None),
    };
    (
        8 << cd_max.saturating_sub(leaf_log2),
        Some(1 << cd_max.min(leaf_log2)),
    )
}

//! TLB and ATC invalidation commands for what an unmap left behind (SPEC D6).
//!
//! Pure functions: [`tlbi_commands`] turns the ranges of an invalidation
//! [`Gather`](smmu_pagetable::Gather) into `CMD_TLBI_*` commands, [`atc_commands`] turns an IOVA
//! range into `CMD_ATC_INV`. Neither allocates, touches hardware or adds a `CMD_SYNC`: the
//! caller queues the commands in one batch that ends with exactly one `CMD_SYNC`, waits for it,
//! and only then calls [`PageTable::release`](smmu_pagetable::PageTable::release) (SPEC D6, P3).
//! ATC invalidation goes in a second batch, after the TLB invalidation's `CMD_SYNC` completed
//! (IHI 0070 G.b §4.5.1: "after ensuring completion of the SMMU translation invalidate").
//!
//! # Policy
//!
//! With range invalidation (`SMMU_IDR3.RIL`, §4.4.1.1) each range becomes at most two range
//! commands:
//!
//! * `TG` is the table's translation granule. `TTL` is the gather's leaf level for a leaf range
//!   whose entries were all leaves at one level, and 0 otherwise (walk ranges, mixed levels).
//!   With `TTL != 0` the commands count in blocks of that level, so every command starts on a
//!   block boundary (§4.4.1.1 makes the range UNPREDICTABLE otherwise).
//! * One command when the length is `m · 2^s` with `m <= 32` (`NUM = m - 1`, `SCALE = s`). When
//!   `TTL == 0` the encoding `NUM == SCALE == 0` is reserved (CERROR_ILL), so a one-granule
//!   command is never emitted: like Linux, a length that one command covers only one granule
//!   longer is extended by that granule (the only over-invalidation outside the range).
//! * Otherwise two commands: the largest single-command length from the start, then the rest;
//!   when the rest has no encoding, the second command is the smallest encodable length ending
//!   at the range's end, overlapping the first by less than 1/16 of the rest (by one granule
//!   when the rest is one granule and `TTL == 0`). Linux's loop
//!   (`__arm_smmu_tlb_inv_range`) emits one command per 5-bit chunk of the page count, so this
//!   is never more commands than Linux, and fewer for most lengths.
//! * `TTL == 1` with the 16 KiB granule is reserved unless `SMMU_IDR5.DS` (§4.4.1.1), so such a
//!   range uses `TTL == 0`. `SCALE` stays within the 5 bits every SMMU has (`SMMU_IDR5.DS == 0`).
//!
//! Without range invalidation: one command per translation granule of the range (per block of
//! the leaf level for a uniform leaf range: a TLBI by address matches the entry containing the
//! address, §4.4), with `Leaf` from the range. In both modes, when the whole gather needs more
//! than [`InvalCaps::max_ops`] commands, or a range cannot be expressed, one ASID- or VMID-wide
//! command replaces them all ([`TlbScope::wide_command`]).
//!
//! Overlapping ranges, and touching ranges of the same kind, are merged first (up to
//! [`DEDUP_CAP`] ranges; a longer list is used as it is), and a range inside a range whose
//! invalidation already covers it is dropped.
//!
//! # Example
//!
//! ```
//! use smmu::arch::cmd::{Command, TlbiGranule};
//! use smmu::inval::{tlbi_commands, InvalCaps, TlbScope};
//! use smmu_pagetable::{Granule, InvalRange, Iova};
//!
//! // What unmapping 16 pages mapped as 4 KiB leaves leaves in a gather.
//! let ranges = [InvalRange {
//!     iova: Iova(0x1_2340_0000),
//!     size: 16 * 0x1000,
//!     granule: Granule::Size4K,
//!     leaf: true,
//!     level: Some(3),
//! }];
//! let scope = TlbScope::Stage1 { vmid: 0, asid: 7 };
//!
//! let mut cmds: heapless::Vec<Command, 8> = heapless::Vec::new();
//! let n = tlbi_commands(&ranges, scope, &InvalCaps { ril: true, ..InvalCaps::default() }, &mut |c| {
//!     cmds.push(c)
//! })?;
//! assert_eq!(n, 1);
//! let Command::TlbiNhVa { asid: 7, va, .. } = cmds[0] else { panic!() };
//! assert_eq!((va.addr, va.leaf), (0x1_2340_0000, true));
//! assert_eq!((va.range.tg, va.range.num, va.range.scale, va.range.ttl), (TlbiGranule::Size4K, 0, 4, 3));
//!
//! // Without RIL: one command per page (below the threshold), then the CMD_SYNC the caller adds.
//! let mut count = 0;
//! tlbi_commands(&ranges, scope, &InvalCaps::default(), &mut |_| -> Result<(), ()> {
//!     count += 1;
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(count, 16);
//! # Ok::<(), Command>(())
//! ```

use smmu_pagetable::{Granule, InvalRange};

use crate::arch::cmd::{Command, TlbiAddr, TlbiGranule, TlbiRange};

/// Default of [`InvalCaps::max_ops`]: Linux's threshold (512 per-granule commands, one 2 MiB
/// table's worth of 4 KiB pages).
pub const DEFAULT_MAX_OPS: u32 = 512;

/// Largest `SCALE` emitted: the field is 5 bits wide unless `SMMU_IDR5.DS == 1` (§4.4.1.1).
pub const MAX_SCALE: u8 = 31;

/// `CMD_ATC_INV` `Size` meaning a 2^64-byte span: invalidate everything (§4.5.1).
pub const ATC_INV_ALL: u8 = 52;

/// How many ranges [`tlbi_commands`] merges and de-duplicates (on the stack); a longer list is
/// used as given. A [`Gather`](smmu_pagetable::Gather) holds at most
/// [`GATHER_RANGES`](smmu_pagetable::GATHER_RANGES).
pub const DEDUP_CAP: usize = 32;

/// `CMD_TLBI_S2_IPA` carries `Address[55:12]` (§4.4.3.1): ranges reaching beyond are invalidated
/// VMID-wide.
const IPA_LIMIT: u64 = 1 << 56;

/// Whose translations are invalidated, and so which commands are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbScope {
    /// Stage 1, Non-secure EL1 StreamWorld: `CMD_TLBI_NH_VA` (§4.4.2.4); wide:
    /// `CMD_TLBI_NH_ASID` (§4.4.2.2). The ASID-wide command only removes non-global entries;
    /// `smmu-pagetable` sets nG in every stage-1 leaf.
    Stage1 {
        /// VMID: the stage-2 VMID under a nested stage 1; 0 on a stage-1-only SMMU, where the
        /// field is RES0 (§4.4.2).
        vmid: u16,
        /// ASID of the context descriptor.
        asid: u16,
    },
    /// Stage 1, Non-secure EL2-E2H StreamWorld (`SMMU_CR2.E2H == 1`): `CMD_TLBI_EL2_VA`
    /// (§4.4.2.8); wide: `CMD_TLBI_EL2_ASID` (§4.4.2.10). Not for EL2 without E2H, whose
    /// entries carry no ASID and which `CMD_TLBI_EL2_ASID` is not required to reach.
    Stage1El2 {
        /// ASID of the context descriptor.
        asid: u16,
    },
    /// Stage 2 only: `CMD_TLBI_S2_IPA` (§4.4.3.1); wide: `CMD_TLBI_S12_VMALL` (§4.4.3.2).
    ///
    /// `CMD_TLBI_S2_IPA` with `Leaf == 0` invalidates stage-2 entries from every lookup level,
    /// walk caches included ("sufficient to invalidate translations resulting from stage
    /// 2-only configuration", §4.4.3.1; IPAS2 "from any lookup level", DDI 0487 D8.17.5), so a
    /// freed stage-2 table needs nothing more. It is not required to remove entries combining
    /// stage 1 and stage 2: for a nesting parent the caller follows the `CMD_SYNC` with
    /// `CMD_TLBI_NH_ALL(VMID)` and a second `CMD_SYNC` (DDI 0487 D8.17.6.1 orders the two).
    Stage2 {
        /// VMID of the stage-2 translation.
        vmid: u16,
    },
}

impl TlbScope {
    /// The command that invalidates every (non-global, for stage 1) entry of the scope:
    /// `CMD_TLBI_NH_ASID`, `CMD_TLBI_EL2_ASID` or `CMD_TLBI_S12_VMALL`.
    pub const fn wide_command(self) -> Command {
        match self {
            TlbScope::Stage1 { vmid, asid } => Command::TlbiNhAsid { vmid, asid },
            TlbScope::Stage1El2 { asid } => Command::TlbiEl2Asid { asid },
            TlbScope::Stage2 { vmid } => Command::TlbiS12Vmall { vmid },
        }
    }

    /// The invalidation-by-address command of the scope.
    const fn by_addr(self, va: TlbiAddr) -> Command {
        match self {
            TlbScope::Stage1 { vmid, asid } => Command::TlbiNhVa { vmid, asid, va },
            TlbScope::Stage1El2 { asid } => Command::TlbiEl2Va { asid, va },
            TlbScope::Stage2 { vmid } => Command::TlbiS2Ipa { vmid, ipa: va },
        }
    }

    /// First address the scope's by-address command cannot carry.
    const fn addr_limit(self) -> Option<u64> {
        match self {
            TlbScope::Stage2 { .. } => Some(IPA_LIMIT),
            _ => None,
        }
    }
}

/// What the SMMU supports and how far per-address invalidation may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalCaps {
    /// `SMMU_IDR3.RIL`: range invalidation and the `TTL` hint (§4.4.1.1, §6.3.4).
    pub ril: bool,
    /// Most by-address commands for one gather; above it, one ASID/VMID-wide command replaces
    /// them. Matters mostly without RIL (one command per granule); with RIL a gather needs at
    /// most two commands per range. Default [`DEFAULT_MAX_OPS`].
    pub max_ops: u32,
}

impl Default for InvalCaps {
    fn default() -> Self {
        Self {
            ril: false,
            max_ops: DEFAULT_MAX_OPS,
        }
    }
}

/// Emits the TLB invalidations that `ranges` (from [`Gather::ranges`](smmu_pagetable::Gather))
/// require in `scope`, and returns how many commands were emitted.
///
/// No `CMD_SYNC` is emitted: the caller ends its batch with exactly one. See the
/// [module documentation](self) for the policy. Every page of every range is invalidated, with
/// `Leaf == 0` and `TTL == 0` for walk (non-leaf) ranges. An error from `emit` is returned at
/// once; the commands emitted before it are not counted.
pub fn tlbi_commands<E>(
    ranges: &[InvalRange],
    scope: TlbScope,
    caps: &InvalCaps,
    emit: &mut dyn FnMut(Command) -> Result<(), E>,
) -> Result<u32, E> {
    let set = SpanSet::new(ranges, scope.addr_limit());
    let count = match plan(&set, caps) {
        Plan::Nothing => return Ok(0),
        Plan::Wide => {
            emit(scope.wide_command())?;
            return Ok(1);
        }
        Plan::Each(n) => n,
    };
    for span in set.iter().flatten() {
        if caps.ril {
            // `plan` succeeded, so every span has pieces.
            if let Some(pieces) = ril_pieces(&span) {
                for p in pieces.iter() {
                    emit(scope.by_addr(TlbiAddr {
                        addr: p.addr,
                        leaf: span.leaf,
                        range: p.range,
                    }))?;
                }
            }
        } else {
            let step = 1u64 << span.step_shift();
            let mut addr = span.start;
            // `start` and `end` are multiples of `step`: no overflow.
            while addr < span.end {
                emit(scope.by_addr(TlbiAddr {
                    addr,
                    leaf: span.leaf,
                    range: TlbiRange::SINGLE,
                }))?;
                addr += step;
            }
        }
    }
    Ok(count)
}

/// Emits the `CMD_ATC_INV` for `[iova, iova + size)` on `sid` (and `ssid`, as the PASID, when
/// given) and returns how many commands were emitted: 0 for an empty range, otherwise 1.
///
/// The span is the smallest naturally aligned power of two of at least 4 KiB covering the
/// range (§4.5.1: 4096 × 2^Size bytes, aligned to its size by the SMMU); `Size == 52` (the whole
/// ATC) when nothing smaller covers it. `Global` is 0. The caller issues it only after the TLB
/// invalidation of the same range completed (§4.5.1) and ends the batch with one `CMD_SYNC`.
/// An endpoint whose ATS Smallest Translation Unit is above 4 KiB may answer a smaller span
/// with UR (§4.5.1): such a caller widens `iova`/`size` to the STU first.
pub fn atc_commands<E>(
    sid: u32,
    ssid: Option<u32>,
    iova: u64,
    size: u64,
    emit: &mut dyn FnMut(Command) -> Result<(), E>,
) -> Result<u32, E> {
    let Some((addr, size)) = atc_span(iova, size) else {
        return Ok(0);
    };
    emit(Command::AtcInv {
        sid,
        ssid,
        global: false,
        addr,
        size,
    })?;
    Ok(1)
}

/// `(Address, Size)` of the smallest `CMD_ATC_INV` span covering `[iova, iova + size)`, `None`
/// for an empty range (§4.5.1).
fn atc_span(iova: u64, size: u64) -> Option<(u64, u8)> {
    let last = iova.checked_add(size.checked_sub(1)?);
    let Some(last) = last else {
        // Runs past 2^64: only the whole address space covers it.
        return Some((0, ATC_INV_ALL));
    };
    let (first_page, last_page) = (iova >> 12, last >> 12);
    // Smallest k with first_page >> k == last_page >> k; at most 52.
    let k = u64::BITS - (first_page ^ last_page).leading_zeros();
    if k >= u32::from(ATC_INV_ALL) {
        return Some((0, ATC_INV_ALL));
    }
    Some(((first_page >> k) << (k + 12), k as u8))
}

// ---- internals ------------------------------------------------------------------------------

/// A range normalised to what one invalidation pass needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    /// Start, aligned to [`Span::align_shift`].
    start: u64,
    /// End (exclusive), aligned to [`Span::align_shift`], greater than `start`.
    end: u64,
    granule: Granule,
    /// Only leaf entries changed.
    leaf: bool,
    /// For a leaf range whose leaves are all at one level (1..=3): that level.
    level: Option<u8>,
}

/// log2 of the size of a leaf at `level` (1..=3) with `granule` (DDI 0487 D8.2).
const fn block_shift(granule: Granule, level: u8) -> u32 {
    granule.shift() + (3 - level as u32) * granule.bits_per_level()
}

const fn tg_of(granule: Granule) -> TlbiGranule {
    match granule {
        Granule::Size4K => TlbiGranule::Size4K,
        Granule::Size16K => TlbiGranule::Size16K,
        Granule::Size64K => TlbiGranule::Size64K,
    }
}

impl Span {
    /// Normalises `r`: `Ok(None)` when empty, `Err(())` when it cannot be expressed (it reaches
    /// 2^64 or goes past `limit`), else a span widened outwards to whole granules, or to whole
    /// blocks of its level.
    fn new(r: &InvalRange, limit: Option<u64>) -> Result<Option<Span>, ()> {
        if r.size == 0 {
            return Ok(None);
        }
        let level = match r.level {
            Some(l @ 1..=3) if r.leaf => Some(l),
            _ => None,
        };
        let mut span = Span {
            start: 0,
            end: 0,
            granule: r.granule,
            leaf: r.leaf,
            level,
        };
        let mask = (1u64 << span.align_shift()) - 1;
        let end = r.iova.0.checked_add(r.size).ok_or(())?;
        span.start = r.iova.0 & !mask;
        span.end = end.checked_add(mask).ok_or(())? & !mask;
        if limit.is_some_and(|l| span.end > l) {
            return Err(());
        }
        Ok(Some(span))
    }

    /// Alignment of `start` and `end`: the leaf level's block, else the granule.
    const fn align_shift(&self) -> u32 {
        match self.level {
            Some(l) => block_shift(self.granule, l),
            None => self.granule.shift(),
        }
    }

    /// Without RIL: the distance between two by-address commands.
    const fn step_shift(&self) -> u32 {
        self.align_shift()
    }

    /// Without RIL: how many by-address commands the span needs.
    const fn ops(&self) -> u64 {
        (self.end - self.start) >> self.step_shift()
    }

    /// The `TTL` hint: the leaf level, except the reserved 16 KiB level 1 (§4.4.1.1).
    fn ttl(&self) -> u8 {
        match self.level {
            Some(1) if self.granule == Granule::Size16K => 0,
            Some(l) => l,
            None => 0,
        }
    }

    /// Whether invalidating `self` also invalidates everything `other` asks for.
    fn covers(&self, other: &Span) -> bool {
        self.granule == other.granule
            && self.start <= other.start
            && other.end <= self.end
            && (!self.leaf || (other.leaf && (self.level.is_none() || self.level == other.level)))
    }

    /// Whether `self` and `other` are of the same kind and overlap or touch.
    fn joins(&self, other: &Span) -> bool {
        self.granule == other.granule
            && self.leaf == other.leaf
            && self.level == other.level
            && self.start <= other.end
            && other.start <= self.end
    }
}

/// The ranges of one call: normalised and de-duplicated on the stack when there are at most
/// [`DEDUP_CAP`], else normalised one by one as they are used.
struct SpanSet<'a> {
    buf: [Span; DEDUP_CAP],
    len: usize,
    /// Used as is (only when longer than [`DEDUP_CAP`]).
    raw: &'a [InvalRange],
    limit: Option<u64>,
    /// A range could not be expressed: only the wide command will do.
    unrepresentable: bool,
}

impl<'a> SpanSet<'a> {
    fn new(ranges: &'a [InvalRange], limit: Option<u64>) -> Self {
        const EMPTY: Span = Span {
            start: 0,
            end: 0,
            granule: Granule::Size4K,
            leaf: true,
            level: None,
        };
        let mut set = SpanSet {
            buf: [EMPTY; DEDUP_CAP],
            len: 0,
            raw: &[],
            limit,
            unrepresentable: false,
        };
        if ranges.len() > DEDUP_CAP {
            set.raw = ranges;
            return set;
        }
        for r in ranges {
            match Span::new(r, limit) {
                Ok(Some(s)) => {
                    if let Some(slot) = set.buf.get_mut(set.len) {
                        *slot = s;
                        set.len += 1;
                    }
                }
                Ok(None) => {}
                Err(()) => set.unrepresentable = true,
            }
        }
        set.dedup();
        set
    }

    /// Merges joinable spans and drops covered ones until neither applies (n <= 32: cheap).
    fn dedup(&mut self) {
        'again: loop {
            for i in 0..self.len {
                for j in 0..self.len {
                    let (Some(&a), Some(&b)) = (self.buf.get(i), self.buf.get(j)) else {
                        continue;
                    };
                    if i == j {
                        continue;
                    }
                    let merged = if a.covers(&b) {
                        a
                    } else if a.joins(&b) {
                        Span {
                            start: a.start.min(b.start),
                            end: a.end.max(b.end),
                            ..a
                        }
                    } else {
                        continue;
                    };
                    // `a` becomes the merged span; `b` is replaced by the last one.
                    if let Some(slot) = self.buf.get_mut(i) {
                        *slot = merged;
                    }
                    self.len -= 1;
                    if let Some(&last) = self.buf.get(self.len) {
                        if let Some(slot) = self.buf.get_mut(j) {
                            *slot = last;
                        }
                    }
                    continue 'again;
                }
            }
            break;
        }
    }

    /// The spans; `None` for a range that cannot be expressed.
    fn iter(&self) -> impl Iterator<Item = Option<Span>> + '_ {
        let limit = self.limit;
        self.buf
            .iter()
            .take(self.len)
            .map(|s| Some(*s))
            .chain(
                self.raw
                    .iter()
                    .filter_map(move |r| match Span::new(r, limit) {
                        Ok(Some(s)) => Some(Some(s)),
                        Ok(None) => None,
                        Err(()) => Some(None),
                    }),
            )
    }
}

enum Plan {
    /// No range: no command.
    Nothing,
    /// One ASID/VMID-wide command.
    Wide,
    /// This many by-address commands.
    Each(u32),
}

fn plan(set: &SpanSet<'_>, caps: &InvalCaps) -> Plan {
    if set.unrepresentable {
        return Plan::Wide;
    }
    let mut total: u64 = 0;
    for span in set.iter() {
        let Some(span) = span else {
            return Plan::Wide;
        };
        let n = if caps.ril {
            match ril_pieces(&span) {
                Some(p) => p.len as u64,
                None => return Plan::Wide,
            }
        } else {
            span.ops()
        };
        total = total.saturating_add(n);
        if total > u64::from(caps.max_ops) {
            return Plan::Wide;
        }
    }
    if total == 0 {
        Plan::Nothing
    } else {
        Plan::Each(total as u32)
    }
}

/// One range command: its start address and range fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    addr: u64,
    range: TlbiRange,
}

/// The one or two range commands of a span.
#[derive(Clone, Copy, Debug)]
struct Pieces {
    p: [Piece; 2],
    len: usize,
}

impl Pieces {
    fn iter(&self) -> impl Iterator<Item = &Piece> {
        self.p.iter().take(self.len)
    }
}

/// The range fields for `n` units (blocks of the `TTL` level, or granules when `TTL == 0`;
/// `extra` = log2 of granules per unit): `n = (NUM + 1) · 2^SCALE` granules with `NUM <= 31`
/// and `SCALE <= 31`, never the reserved `NUM == SCALE == TTL == 0` (§4.4.1.1).
fn encode_len(n: u64, tg: TlbiGranule, ttl: u8, extra: u32) -> Option<TlbiRange> {
    if n == 0 || (ttl == 0 && n == 1) {
        return None;
    }
    // The smallest NUM, unless SCALE would pass its maximum: then a larger NUM.
    let s = n.trailing_zeros().min(max_unit_scale(extra)?);
    let m = n >> s;
    if m > 32 {
        return None;
    }
    Some(TlbiRange {
        tg,
        num: (m - 1) as u8,
        scale: (s + extra) as u8,
        ttl,
        ttl128: false,
    })
}

/// Largest power of two, in units of `2^extra` granules, that `SCALE` can express.
fn max_unit_scale(extra: u32) -> Option<u32> {
    u32::from(MAX_SCALE).checked_sub(extra)
}

/// Largest `m · 2^s <= n` with `m <= 32` and `s <= smax` (`n >= 1`).
fn floor_len(n: u64, smax: u32) -> u64 {
    let bits = u64::BITS - n.leading_zeros();
    let s = bits.saturating_sub(5).min(smax);
    (n >> s).min(32) << s
}

/// Smallest `m · 2^s >= r` with `m <= 32`, and not 1 when `TTL == 0` (`r >= 1`).
const fn ceil_len(r: u64, ttl: u8) -> u64 {
    if ttl == 0 && r == 1 {
        return 2;
    }
    let bits = u64::BITS - r.leading_zeros();
    if bits <= 5 {
        r
    } else {
        let s = bits - 5;
        ((r + (1 << s) - 1) >> s) << s
    }
}

/// The range commands covering `span`, `None` when two cannot (see the module documentation).
fn ril_pieces(span: &Span) -> Option<Pieces> {
    let tg = tg_of(span.granule);
    let ttl = span.ttl();
    let g = span.granule.shift();
    let unit_shift = if ttl == 0 {
        g
    } else {
        block_shift(span.granule, ttl)
    };
    let extra = unit_shift - g;
    let n = (span.end - span.start) >> unit_shift;
    let piece = |addr, range| Piece { addr, range };
    let one = |p: Piece| Pieces { p: [p, p], len: 1 };

    if let Some(r) = encode_len(n, tg, ttl, extra) {
        return Some(one(piece(span.start, r)));
    }
    if ttl == 0 {
        // One granule more (past the end, else before the start) may fit one command: the
        // reserved one-granule case, and Linux's `num_pages % 32 == 1` bump.
        if let Some(r) = encode_len(n + 1, tg, ttl, extra) {
            let gsize = 1u64 << g;
            if span.end.checked_add(gsize).is_some() {
                return Some(one(piece(span.start, r)));
            }
            if let Some(start) = span.start.checked_sub(gsize) {
                return Some(one(piece(start, r)));
            }
        }
    }
    let a = floor_len(n, max_unit_scale(extra)?);
    let rest = n.checked_sub(a).filter(|&r| r > 0)?;
    let first = piece(span.start, encode_len(a, tg, ttl, extra)?);
    let second = if let Some(r) = encode_len(rest, tg, ttl, extra) {
        piece(span.start + (a << unit_shift), r)
    } else {
        let b = ceil_len(rest, ttl);
        let off = n.checked_sub(b)?;
        piece(
            span.start + (off << unit_shift),
            encode_len(b, tg, ttl, extra)?,
        )
    };
    Some(Pieces {
        p: [first, second],
        len: 2,
    })
}

#[cfg(test)]
mod tests {
    //! spec: D6. Exact encodings for known cases, and properties over arbitrary gathers:
    //! coverage, no reserved encoding, no more commands than Linux.

    use std::vec::Vec;

    use proptest::prelude::*;
    use smmu_pagetable::Iova;

    use super::*;

    const CASES: u32 = if cfg!(miri) { 4 } else { 1024 };
    const G4: Granule = Granule::Size4K;
    const G16: Granule = Granule::Size16K;
    const G64: Granule = Granule::Size64K;
    const S1: TlbScope = TlbScope::Stage1 { vmid: 3, asid: 42 };
    const K4: u64 = 0x1000;

    fn leaf(iova: u64, size: u64, granule: Granule, level: Option<u8>) -> InvalRange {
        InvalRange {
            iova: Iova(iova),
            size,
            granule,
            leaf: true,
            level,
        }
    }

    fn walk(iova: u64, size: u64, granule: Granule) -> InvalRange {
        InvalRange {
            iova: Iova(iova),
            size,
            granule,
            leaf: false,
            level: None,
        }
    }

    fn ril() -> InvalCaps {
        InvalCaps {
            ril: true,
            ..InvalCaps::default()
        }
    }

    /// Runs `tlbi_commands`, checks its count, and that every command survives encode/decode
    /// (so none is a reserved encoding the decoder refuses).
    fn run(ranges: &[InvalRange], scope: TlbScope, caps: &InvalCaps) -> Vec<Command> {
        let mut v = Vec::new();
        let n = tlbi_commands(ranges, scope, caps, &mut |c| {
            v.push(c);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(n as usize, v.len());
        for c in &v {
            assert_eq!(c.encode().decode(), Ok(*c), "{c:?}");
        }
        v
    }

    fn rng(tg: TlbiGranule, num: u8, scale: u8, ttl: u8) -> TlbiRange {
        TlbiRange {
            tg,
            num,
            scale,
            ttl,
            ttl128: false,
        }
    }

    fn nh(addr: u64, leaf: bool, range: TlbiRange) -> Command {
        Command::TlbiNhVa {
            vmid: 3,
            asid: 42,
            va: TlbiAddr { addr, leaf, range },
        }
    }

    use TlbiGranule::{Size16K as T16, Size4K as T4, Size64K as T64};

    // ---- exact encodings (spec: D6; IHI 0070 G.b §4.4.1.1) ---------------------------------

    #[test]
    fn one_page() {
        let c = run(&[leaf(0x1234_5000, K4, G4, Some(3))], S1, &ril());
        assert_eq!(c, [nh(0x1234_5000, true, rng(T4, 0, 0, 3))]);
    }

    #[test]
    fn sixteen_pages_is_scale_4() {
        let c = run(&[leaf(0x4000_0000, 16 * K4, G4, Some(3))], S1, &ril());
        assert_eq!(c, [nh(0x4000_0000, true, rng(T4, 0, 4, 3))]);
    }

    #[test]
    fn thousand_pages_two_commands() {
        // 1000 = 31·32 + 1·8: two disjoint commands (Linux: 232 at SCALE 3, then 768).
        let c = run(&[leaf(0x4000_0000, 1000 * K4, G4, Some(3))], S1, &ril());
        assert_eq!(
            c,
            [
                nh(0x4000_0000, true, rng(T4, 30, 5, 3)),
                nh(0x4000_0000 + 992 * K4, true, rng(T4, 0, 3, 3)),
            ]
        );
    }

    #[test]
    fn thirty_three_pages() {
        // Leaf: 32 + 1 (NUM = SCALE = 0 is fine with TTL = 3).
        let c = run(&[leaf(0x4000_0000, 33 * K4, G4, Some(3))], S1, &ril());
        assert_eq!(
            c,
            [
                nh(0x4000_0000, true, rng(T4, 0, 5, 3)),
                nh(0x4000_0000 + 32 * K4, true, rng(T4, 0, 0, 3)),
            ]
        );
        // Walk (TTL = 0): 34 pages in one command, like Linux's bump.
        let c = run(&[walk(0x4000_0000, 33 * K4, G4)], S1, &ril());
        assert_eq!(c, [nh(0x4000_0000, false, rng(T4, 16, 1, 0))]);
    }

    #[test]
    fn walk_never_uses_the_reserved_encoding() {
        // One granule with TTL = 0 would be NUM = SCALE = TTL = 0: two granules instead.
        let c = run(&[walk(0x4000_0000, K4, G4)], S1, &ril());
        assert_eq!(c, [nh(0x4000_0000, false, rng(T4, 0, 1, 0))]);
        // Same for a leaf range of mixed levels (TTL = 0, Leaf = 1).
        let c = run(&[leaf(0x4000_0000, K4, G4, None)], S1, &ril());
        assert_eq!(c, [nh(0x4000_0000, true, rng(T4, 0, 1, 0))]);
        // Where the extra granule would end at 2^64 it goes below the start instead.
        let top = u64::MAX - 0x1fff;
        let c = run(&[walk(top, K4, G4)], S1, &ril());
        assert_eq!(c, [nh(top - K4, false, rng(T4, 0, 1, 0))]);
        // A range ending at 2^64 itself is not representable: wide.
        let c = run(&[walk(u64::MAX - 0xfff, K4, G4)], S1, &ril());
        assert_eq!(c, [Command::TlbiNhAsid { vmid: 3, asid: 42 }]);
    }

    #[test]
    fn walk_rest_of_one_granule() {
        // 65 and 66 have no encoding: 64 granules, then 2 ending at the end (not 1: reserved
        // with TTL = 0). Linux: 66 → 2 + 64, two commands as well.
        let c = run(&[walk(0x4000_0000, 65 * K4, G4)], S1, &ril());
        assert_eq!(
            c,
            [
                nh(0x4000_0000, false, rng(T4, 0, 6, 0)),
                nh(0x4000_0000 + 63 * K4, false, rng(T4, 0, 1, 0)),
            ]
        );
        assert_eq!(linux_ril_count(65, false), 2);
    }

    #[test]
    fn walk_of_a_2m_table_with_4k_granule() {
        let c = run(&[walk(0x20_0000, 0x20_0000, G4)], S1, &ril());
        assert_eq!(c, [nh(0x20_0000, false, rng(T4, 0, 9, 0))]);
    }

    #[test]
    fn block_levels_count_in_blocks() {
        // Three 2 MiB blocks: TTL = 2, 3 · 2^9 pages.
        let c = run(&[leaf(0x4000_0000, 3 << 21, G4, Some(2))], S1, &ril());
        assert_eq!(c, [nh(0x4000_0000, true, rng(T4, 2, 9, 2))]);
        // One 1 GiB block: TTL = 1, 2^18 pages.
        let c = run(&[leaf(0xc000_0000, 1 << 30, G4, Some(1))], S1, &ril());
        assert_eq!(c, [nh(0xc000_0000, true, rng(T4, 0, 18, 1))]);
        // 33 blocks: each command starts on a 2 MiB boundary.
        let c = run(&[leaf(0x4000_0000, 33 << 21, G4, Some(2))], S1, &ril());
        assert_eq!(
            c,
            [
                nh(0x4000_0000, true, rng(T4, 0, 14, 2)),
                nh(0x4000_0000 + (32 << 21), true, rng(T4, 0, 9, 2)),
            ]
        );
    }

    #[test]
    fn granule_16k() {
        let c = run(&[leaf(0x8000_c000, 3 << 14, G16, Some(3))], S1, &ril());
        assert_eq!(c, [nh(0x8000_c000, true, rng(T16, 2, 0, 3))]);
        // A 32 MiB level-2 block: 2^11 granules.
        let c = run(&[leaf(0x2_0000_0000, 1 << 25, G16, Some(2))], S1, &ril());
        assert_eq!(c, [nh(0x2_0000_0000, true, rng(T16, 0, 11, 2))]);
        // A level-1 leaf would need TTL = 1, reserved for 16K without DS: TTL = 0, in granules.
        let c = run(&[leaf(0x10_0000_0000, 1 << 36, G16, Some(1))], S1, &ril());
        assert_eq!(c, [nh(0x10_0000_0000, true, rng(T16, 0, 22, 0))]);
        // A 16K walk: one 32 MiB table span.
        let c = run(&[walk(0x2_0000_0000, 1 << 25, G16)], S1, &ril());
        assert_eq!(c, [nh(0x2_0000_0000, false, rng(T16, 0, 11, 0))]);
    }

    #[test]
    fn granule_64k() {
        let c = run(&[leaf(0x9_0001_0000, 5 << 16, G64, Some(3))], S1, &ril());
        assert_eq!(c, [nh(0x9_0001_0000, true, rng(T64, 4, 0, 3))]);
        // Two 512 MiB level-2 blocks: 2 · 2^13 granules.
        let c = run(&[leaf(0x80_0000_0000, 2 << 29, G64, Some(2))], S1, &ril());
        assert_eq!(c, [nh(0x80_0000_0000, true, rng(T64, 0, 14, 2))]);
        // A 4 TiB level-1 block (52-bit OA).
        let c = run(
            &[leaf(0x4_0000_0000_0000, 1 << 42, G64, Some(1))],
            S1,
            &ril(),
        );
        assert_eq!(c, [nh(0x4_0000_0000_0000, true, rng(T64, 0, 26, 1))]);
    }

    #[test]
    fn addresses_beyond_4g() {
        let a = 0xffff_ffff_f000; // last page of a 48-bit space
        let c = run(&[leaf(a, K4, G4, Some(3))], S1, &ril());
        assert_eq!(c, [nh(a, true, rng(T4, 0, 0, 3))]);
        let a = 0x7_ab00_0000_0000;
        let c = run(&[walk(a, 1 << 30, G4)], S1, &ril());
        assert_eq!(c, [nh(a, false, rng(T4, 0, 18, 0))]);
    }

    #[test]
    fn rest_without_encoding_overlaps_the_first_command() {
        // 1057 = 1024 + 33 and 33 has no encoding: 1024, then 34 ending at the end (one page
        // invalidated twice). Linux: 1 + 32 + 1024, three commands.
        let c = run(&[leaf(0x4000_0000, 1057 * K4, G4, Some(3))], S1, &ril());
        assert_eq!(
            c,
            [
                nh(0x4000_0000, true, rng(T4, 0, 10, 3)),
                nh(0x4000_0000 + 1023 * K4, true, rng(T4, 16, 1, 3)),
            ]
        );
        assert_eq!(linux_ril_count(1057, true), 3);
    }

    #[test]
    fn scopes() {
        let r = [leaf(0x1_0000_0000, 2 * K4, G4, Some(3))];
        let va = TlbiAddr {
            addr: 0x1_0000_0000,
            leaf: true,
            range: rng(T4, 0, 1, 3),
        };
        let el2 = TlbScope::Stage1El2 { asid: 9 };
        assert_eq!(run(&r, el2, &ril()), [Command::TlbiEl2Va { asid: 9, va }]);
        let s2 = TlbScope::Stage2 { vmid: 5 };
        assert_eq!(
            run(&r, s2, &ril()),
            [Command::TlbiS2Ipa { vmid: 5, ipa: va }]
        );
        // Stage-2 walk: S2_IPA with Leaf = 0 is enough for stage-2-only (§4.4.3.1).
        let w = [walk(0x8000_0000, 0x20_0000, G4)];
        let ipa = TlbiAddr {
            addr: 0x8000_0000,
            leaf: false,
            range: rng(T4, 0, 9, 0),
        };
        assert_eq!(run(&w, s2, &ril()), [Command::TlbiS2Ipa { vmid: 5, ipa }]);
        // Wide commands.
        let big = [leaf(0, 513 * K4, G4, Some(3))];
        let caps = InvalCaps::default();
        assert_eq!(
            run(&big, S1, &caps),
            [Command::TlbiNhAsid { vmid: 3, asid: 42 }]
        );
        assert_eq!(run(&big, el2, &caps), [Command::TlbiEl2Asid { asid: 9 }]);
        assert_eq!(run(&big, s2, &caps), [Command::TlbiS12Vmall { vmid: 5 }]);
    }

    #[test]
    fn without_ril_one_command_per_granule_or_block() {
        let caps = InvalCaps::default();
        let single = |addr, leaf| nh(addr, leaf, TlbiRange::SINGLE);
        let c = run(&[leaf(0x1_0000_0000, 3 * K4, G4, Some(3))], S1, &caps);
        assert_eq!(
            c,
            [
                single(0x1_0000_0000, true),
                single(0x1_0000_1000, true),
                single(0x1_0000_2000, true),
            ]
        );
        // Uniform 2 MiB blocks: one per block.
        let c = run(&[leaf(0x4000_0000, 3 << 21, G4, Some(2))], S1, &caps);
        assert_eq!(
            c,
            [
                single(0x4000_0000, true),
                single(0x4020_0000, true),
                single(0x4040_0000, true),
            ]
        );
        // A walk range: per granule, Leaf = 0; 512 is still allowed, 513 is not.
        let c = run(&[walk(0x4000_0000, 0x20_0000, G4)], S1, &caps);
        assert_eq!(c.len(), 512);
        assert!(c
            .iter()
            .enumerate()
            .all(|(i, &x)| x == single(0x4000_0000 + i as u64 * K4, false)));
        let c = run(&[walk(0x4000_0000, 0x20_1000, G4)], S1, &caps);
        assert_eq!(c, [Command::TlbiNhAsid { vmid: 3, asid: 42 }]);
        // The threshold counts the whole gather.
        let two = [
            walk(0x4000_0000, 0x20_0000, G4),
            leaf(0x8000_0000, K4, G4, Some(3)),
        ];
        assert_eq!(
            run(&two, S1, &caps),
            [Command::TlbiNhAsid { vmid: 3, asid: 42 }]
        );
    }

    #[test]
    fn overlapping_and_touching_ranges_are_merged() {
        let caps = ril();
        // The same range twice, and two touching halves: one command.
        let a = leaf(0x4000_0000, 8 * K4, G4, Some(3));
        assert_eq!(run(&[a, a], S1, &caps).len(), 1);
        let b = leaf(0x4000_0000 + 8 * K4, 8 * K4, G4, Some(3));
        assert_eq!(
            run(&[b, a], S1, &caps),
            [nh(0x4000_0000, true, rng(T4, 0, 4, 3))]
        );
        // A leaf range inside a walk range: the walk alone.
        let w = walk(0x4000_0000, 0x20_0000, G4);
        let inner = leaf(0x4010_0000, K4, G4, Some(3));
        assert_eq!(
            run(&[inner, w], S1, &caps),
            [nh(0x4000_0000, false, rng(T4, 0, 9, 0))]
        );
        // Without RIL the duplicate is not invalidated twice either.
        assert_eq!(run(&[a, a], S1, &InvalCaps::default()).len(), 8);
        // Different levels touching: kept apart, each with its hint.
        let blk = leaf(0x4020_0000, 0x20_0000, G4, Some(2));
        let pg = leaf(0x4000_0000 + 0x1f_f000, K4, G4, Some(3));
        let c = run(&[blk, pg], S1, &caps);
        assert_eq!(
            c,
            [
                nh(0x4020_0000, true, rng(T4, 0, 9, 2)),
                nh(0x401f_f000, true, rng(T4, 0, 0, 3)),
            ]
        );
    }

    #[test]
    fn empty_and_unrepresentable() {
        assert!(run(&[], S1, &ril()).is_empty());
        assert!(run(&[leaf(0x1000, 0, G4, Some(3))], S1, &ril()).is_empty());
        // Running past 2^64: wide.
        let r = [leaf(u64::MAX - 0xfff, 0x2000, G4, Some(3))];
        assert_eq!(
            run(&r, S1, &ril()),
            [Command::TlbiNhAsid { vmid: 3, asid: 42 }]
        );
        // Stage 2 beyond Address[55:12]: wide.
        let s2 = TlbScope::Stage2 { vmid: 1 };
        let r = [leaf(1 << 56, K4, G4, Some(3))];
        assert_eq!(run(&r, s2, &ril()), [Command::TlbiS12Vmall { vmid: 1 }]);
        // More than SCALE can say in two commands: wide.
        let r = [walk(0, 1 << 50, G4)];
        assert_eq!(run(&r, S1, &ril()).len(), 1);
        let r = [walk(0x1000, u64::MAX - 0x2000, G4)];
        assert_eq!(
            run(&r, S1, &ril()),
            [Command::TlbiNhAsid { vmid: 3, asid: 42 }]
        );
        // max_ops also bounds range commands.
        let caps = InvalCaps {
            ril: true,
            max_ops: 1,
        };
        let r = [leaf(0x1000, K4, G4, Some(3)), leaf(0x9000, K4, G4, Some(3))];
        assert_eq!(
            run(&r, S1, &caps),
            [Command::TlbiNhAsid { vmid: 3, asid: 42 }]
        );
    }

    #[test]
    fn misaligned_input_is_widened_outwards() {
        // 0x1800..0x2800 touches pages 1 and 2.
        let c = run(&[leaf(0x1800, 0x1000, G4, Some(3))], S1, &ril());
        assert_eq!(c, [nh(0x1000, true, rng(T4, 0, 1, 3))]);
        // A "level 2" range not on 2 MiB boundaries: the enclosing block.
        let c = run(&[leaf(0x4000_1000, 0x1000, G4, Some(2))], S1, &ril());
        assert_eq!(c, [nh(0x4000_0000, true, rng(T4, 0, 9, 2))]);
    }

    #[test]
    fn emit_errors_stop_at_once() {
        let r = [leaf(0x1000, 4 * K4, G4, Some(3))];
        let mut calls = 0;
        let res = tlbi_commands(&r, S1, &InvalCaps::default(), &mut |_| {
            calls += 1;
            if calls == 2 {
                Err("full")
            } else {
                Ok(())
            }
        });
        assert_eq!((res, calls), (Err("full"), 2));
        let res = atc_commands(1, None, 0, K4, &mut |_| Err(7));
        assert_eq!(res, Err(7));
    }

    #[test]
    fn atc_spans() {
        // spec: D6; §4.5.1: 4096 · 2^Size bytes, aligned to the span.
        assert_eq!(atc_span(0x1000, 0x1000), Some((0x1000, 0)));
        assert_eq!(atc_span(0x1000, 0x2000), Some((0, 2)));
        assert_eq!(atc_span(0x3000, 0x2000), Some((0, 3)));
        assert_eq!(atc_span(0x1234, 0x10), Some((0x1000, 0)));
        assert_eq!(atc_span(0x1_0000_0000, 0x20_0000), Some((0x1_0000_0000, 9)));
        assert_eq!(atc_span(0x1_001f_f000, 0x2000), Some((0x1_0000_0000, 10)));
        assert_eq!(atc_span(0, u64::MAX), Some((0, ATC_INV_ALL)));
        assert_eq!(atc_span(1 << 63, 1 << 63), Some((1 << 63, 51)));
        assert_eq!(atc_span(u64::MAX - 0xfff, 0x2000), Some((0, ATC_INV_ALL)));
        assert_eq!(atc_span(0x1000, 0), None);
        let mut v = Vec::new();
        let n = atc_commands(0x42, Some(3), 0x1_0000_0000, 0x20_0000, &mut |c| {
            v.push(c);
            Ok::<(), ()>(())
        });
        assert_eq!(n, Ok(1));
        let cmd = Command::AtcInv {
            sid: 0x42,
            ssid: Some(3),
            global: false,
            addr: 0x1_0000_0000,
            size: 9,
        };
        assert_eq!(v, [cmd]);
        assert_eq!(cmd.encode().decode(), Ok(cmd));
        assert_eq!(atc_commands(0x42, None, 0, 0, &mut |_| Err(())), Ok(0));
    }

    // ---- properties --------------------------------------------------------------------------

    /// Commands of Linux's `__arm_smmu_tlb_inv_range` loop for `pages` granules (§3.5 of the
    /// Linux notes): non-leaf bumps `pages % 32 == 1`, then one command per 5-bit chunk.
    fn linux_ril_count(pages: u64, leaf: bool) -> u64 {
        let mut n = pages;
        if !leaf && n & 31 == 1 {
            n += 1;
        }
        let mut count = 0;
        while n != 0 {
            let scale = n.trailing_zeros();
            let num = (n >> scale) & 31;
            n -= num << scale;
            count += 1;
        }
        count
    }

    fn valid_level(r: &InvalRange) -> Option<u8> {
        match r.level {
            Some(l @ 1..=3) if r.leaf => Some(l),
            _ => None,
        }
    }

    /// The entries a by-address command was asked to remove from `r`'s TLB entries: same `TG`,
    /// `Leaf` no stricter than the range, `TTL` 0 or the range's uniform leaf level.
    fn adequate(va: &TlbiAddr, r: &InvalRange, ril: bool) -> bool {
        if va.leaf && !r.leaf {
            return false;
        }
        if !ril {
            return true;
        }
        va.range.tg == tg_of(r.granule)
            && (va.range.ttl == 0 || valid_level(r) == Some(va.range.ttl))
    }

    /// Checks `cmds` against the architecture's range semantics (§4.4.1.1) and against `ranges`.
    fn check(ranges: &[InvalRange], scope: TlbScope, caps: &InvalCaps, cmds: &[Command]) {
        if cmds.is_empty() {
            assert!(ranges.iter().all(|r| r.size == 0));
            return;
        }
        if cmds == [scope.wide_command()] {
            return;
        }
        let vas: Vec<TlbiAddr> = cmds
            .iter()
            .map(|c| {
                let va = match (*c, scope) {
                    (
                        Command::TlbiNhVa { vmid, asid, va },
                        TlbScope::Stage1 { vmid: v, asid: a },
                    ) if (vmid, asid) == (v, a) => va,
                    (Command::TlbiEl2Va { asid, va }, TlbScope::Stage1El2 { asid: a })
                        if asid == a =>
                    {
                        va
                    }
                    (Command::TlbiS2Ipa { vmid, ipa }, TlbScope::Stage2 { vmid: v })
                        if vmid == v =>
                    {
                        ipa
                    }
                    _ => panic!("{c:?} is not a by-address command of {scope:?}"),
                };
                let rg = va.range;
                if caps.ril {
                    assert_ne!(rg.tg, TlbiGranule::None);
                    assert!(!(rg.num == 0 && rg.scale == 0 && rg.ttl == 0), "reserved");
                    assert!(!(rg.tg == T16 && rg.ttl == 1), "TTL=1 reserved with 16K");
                    assert!(rg.scale <= MAX_SCALE && rg.num <= 31 && rg.ttl <= 3);
                    let g = granule_of(rg.tg);
                    let align = if rg.ttl == 0 {
                        g.shift()
                    } else {
                        block_shift(g, rg.ttl)
                    };
                    assert_eq!(va.addr % (1 << align), 0, "unaligned for TTL: {va:?}");
                } else {
                    assert_eq!(rg, TlbiRange::SINGLE);
                }
                assert!(!rg.ttl128);
                va
            })
            .collect();
        assert!(cmds.len() <= caps.max_ops as usize);
        if caps.ril {
            // Nothing outside the ranges (widened to whole granules, or blocks of their level),
            // except one granule at either end of a TTL = 0 command.
            let mut union: Vec<(u128, u128)> = ranges
                .iter()
                .filter(|r| r.size > 0)
                .map(|r| {
                    let a = valid_level(r).map_or(r.granule.shift(), |l| block_shift(r.granule, l));
                    let start = u128::from(r.iova.0) >> a << a;
                    let end = (u128::from(r.iova.0) + u128::from(r.size)).div_ceil(1 << a) << a;
                    (start, end)
                })
                .collect();
            union.sort_unstable();
            for va in &vas {
                let g = 1u128 << granule_of(va.range.tg).shift();
                let slack = if va.range.ttl == 0 { g } else { 0 };
                let len = u128::from(va.range.num + 1)
                    << (u32::from(va.range.scale) + granule_of(va.range.tg).shift());
                let (a, b) = (
                    u128::from(va.addr) + slack,
                    u128::from(va.addr) + len - slack,
                );
                let mut reached = a;
                for &(s, e) in &union {
                    if s <= reached {
                        reached = reached.max(e);
                    }
                }
                assert!(reached >= b, "{va:?} invalidates outside {ranges:?}");
            }
        }
        for r in ranges.iter().filter(|r| r.size > 0) {
            let (start, end) = (
                u128::from(r.iova.0),
                u128::from(r.iova.0) + u128::from(r.size),
            );
            if caps.ril {
                let mut iv: Vec<(u128, u128)> = vas
                    .iter()
                    .filter(|va| adequate(va, r, true))
                    .map(|va| {
                        let len = u128::from(va.range.num + 1)
                            << (u32::from(va.range.scale) + granule_of(va.range.tg).shift());
                        (u128::from(va.addr), u128::from(va.addr) + len)
                    })
                    .collect();
                iv.sort_unstable();
                let mut reached = start;
                for (a, b) in iv {
                    if a <= reached {
                        reached = reached.max(b);
                    }
                }
                assert!(reached >= end, "{r:?} not covered by {cmds:?}");
            } else {
                let step = match valid_level(r) {
                    Some(l) => block_shift(r.granule, l),
                    None => r.granule.shift(),
                };
                let mut addrs: Vec<u128> = vas
                    .iter()
                    .filter(|va| adequate(va, r, false))
                    .map(|va| u128::from(va.addr))
                    .collect();
                addrs.sort_unstable();
                let mut blk = start >> step << step;
                while blk < end {
                    let next = blk + (1 << step);
                    let i = addrs.partition_point(|&a| a < blk);
                    assert!(
                        addrs.get(i).is_some_and(|&a| a < next),
                        "{r:?}: no command in {blk:#x}"
                    );
                    blk = next;
                }
            }
        }
    }

    fn granule_of(tg: TlbiGranule) -> Granule {
        match tg {
            T16 => G16,
            T64 => G64,
            _ => G4,
        }
    }

    /// A range as a gather records it: aligned to its granule, or to its level's block.
    fn arb_range() -> impl Strategy<Value = InvalRange> {
        let granule = prop_oneof![Just(G4), Just(G16), Just(G64)];
        let kind = prop_oneof![
            2 => Just((false, None)),
            1 => Just((true, None)),
            4 => Just((true, Some(3u8))),
            2 => Just((true, Some(2u8))),
            1 => Just((true, Some(1u8))),
        ];
        let units = prop_oneof![1u64..=70, 1u64..=5000, 1u64..(1 << 30)];
        (granule, kind, 0u64..(1 << 52), units).prop_map(|(granule, (leaf, level), at, n)| {
            let shift = level.map_or(granule.shift(), |l| block_shift(granule, l));
            let room = 52 - shift;
            let n = 1 + (n - 1) % (1u64 << room.min(40));
            InvalRange {
                iova: Iova(at >> shift << shift),
                size: n << shift,
                granule,
                leaf,
                level,
            }
        })
    }

    fn arb_scope() -> impl Strategy<Value = TlbScope> {
        prop_oneof![
            (any::<u16>(), any::<u16>()).prop_map(|(vmid, asid)| TlbScope::Stage1 { vmid, asid }),
            any::<u16>().prop_map(|asid| TlbScope::Stage1El2 { asid }),
            any::<u16>().prop_map(|vmid| TlbScope::Stage2 { vmid }),
        ]
    }

    fn arb_gather() -> impl Strategy<Value = Vec<InvalRange>> {
        // One granule per gather (one page table), like a real `Gather`.
        (
            prop_oneof![Just(G4), Just(G16), Just(G64)],
            prop_oneof![
                4 => proptest::collection::vec(arb_range(), 1..=10),
                1 => proptest::collection::vec(arb_range(), DEDUP_CAP..DEDUP_CAP + 8),
            ],
        )
            .prop_map(|(g, mut v)| {
                for r in &mut v {
                    if r.granule != g {
                        // Re-express in the gather's granule as a walk range (always aligned).
                        *r = walk(r.iova.0, r.size, r.granule);
                    }
                }
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

        /// spec: D6. With RIL: every page of every range is covered by a command allowed to
        /// remove its entries, no reserved or UNPREDICTABLE encoding, and no more commands than
        /// Linux's loop.
        #[test]
        fn ril_covers_every_page(ranges in arb_gather(), scope in arb_scope(), max_ops in prop_oneof![Just(512u32), 1u32..8]) {
            let caps = InvalCaps { ril: true, max_ops };
            let cmds = run(&ranges, scope, &caps);
            check(&ranges, scope, &caps, &cmds);
            let linux: u64 = ranges
                .iter()
                .map(|r| linux_ril_count(r.size >> r.granule.shift(), r.leaf))
                .sum();
            prop_assert!(cmds.len() as u64 <= linux.max(1), "{} > Linux {}", cmds.len(), linux);
            // Never the wide command when two range commands per range can do.
            if max_ops >= 2 * ranges.len() as u32 && ranges.iter().all(|r| r.size >> r.granule.shift() < 1 << 35) {
                prop_assert!(cmds != [scope.wide_command()]);
            }
        }

        /// spec: D6. Without RIL: one command per granule (per block of a uniform leaf
        /// level) up to `max_ops`, else one wide command; never more than Linux's per-granule loop.
        #[test]
        fn per_granule_covers_every_page(ranges in arb_gather(), scope in arb_scope(), max_ops in prop_oneof![Just(512u32), 0u32..64]) {
            let caps = InvalCaps { ril: false, max_ops };
            let cmds = run(&ranges, scope, &caps);
            check(&ranges, scope, &caps, &cmds);
            let linux: u64 = ranges
                .iter()
                .map(|r| r.size >> valid_level(r).map_or(r.granule.shift(), |l| block_shift(r.granule, l)))
                .sum();
            prop_assert!(cmds.len() as u64 <= linux.max(1));
            prop_assert!(cmds.len() <= max_ops as usize || cmds == [scope.wide_command()]);
        }

        /// Ranges that are not aligned (not what a gather records) are still fully covered.
        #[test]
        fn unaligned_ranges_are_covered(
            v in proptest::collection::vec((0u64..(1 << 40), 0u64..(1 << 24), any::<bool>(), prop_oneof![Just(None), (1u8..=3).prop_map(Some)]), 1..6),
            ril in any::<bool>(),
        ) {
            let ranges: Vec<InvalRange> = v
                .into_iter()
                .map(|(iova, size, leaf, level)| InvalRange { iova: Iova(iova), size, granule: G4, leaf, level })
                .collect();
            let caps = InvalCaps { ril, max_ops: 4096 };
            let cmds = run(&ranges, S1, &caps);
            check(&ranges, S1, &caps, &cmds);
        }

        /// The ATC span contains the range, is aligned to its size, and halving it would not do.
        #[test]
        fn atc_span_is_smallest(iova in any::<u64>(), size in prop_oneof![1u64..0x10_0000, any::<u64>()]) {
            let (addr, s) = atc_span(iova, size).unwrap();
            prop_assert!(s <= ATC_INV_ALL);
            if s < ATC_INV_ALL {
                let span = 1u128 << (12 + u32::from(s));
                prop_assert_eq!(u128::from(addr) % span, 0);
                prop_assert!(u128::from(addr) <= u128::from(iova));
                prop_assert!(u128::from(iova) + u128::from(size) <= u128::from(addr) + span);
                if s > 0 {
                    let half = span / 2;
                    let first = u128::from(iova) / half;
                    let last = (u128::from(iova) + u128::from(size) - 1) / half;
                    prop_assert_ne!(first, last);
                }
            } else {
                prop_assert_eq!(addr, 0);
            }
        }
    }
}

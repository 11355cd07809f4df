//! What the SMMU and its endpoints cache: the cache policy, config cache (STEs, L1STDs, CDs,
//! L1CDs), TLB and walk cache with deterministic eviction (T4–T9, S6, S10), the micro-TLB, the
//! torn-fetch tracking of fetched structures, and the endpoints' ATCs (§3.9.1).

use crate::decode::{CdEntry, SteEntry};
use crate::util::{FastMap, Rng};
use std::collections::{BTreeMap, VecDeque};
use std::hash::Hash;

/// Cache eviction when a cache is full (T9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Oldest entry first (deterministic).
    Fifo,
    /// Seeded random victim (deterministic for a given seed).
    Random,
}

/// Power-on cache contents (T8).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum PowerOn {
    /// Caches start empty.
    #[default]
    Empty,
    /// Caches start with stale entries: a bypass STE for each SID, and a bogus TLB entry for each
    /// (ASID, IOVA) pair (VMID 0, EL1), so a driver that enables without CFGI_ALL/TLBI shows.
    Stale {
        /// StreamIDs given a cached bypass STE.
        sids: Vec<u32>,
        /// ASIDs given bogus TLB entries.
        asids: Vec<u16>,
        /// IOVAs (4 KiB pages) given bogus TLB entries.
        iovas: Vec<u64>,
    },
}

/// Cache geometry and invalidation behaviour (T4–T9, S6, S10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Config-cache capacity (STEs, CDs and L1STDs each); 0 disables caching.
    pub config_capacity: usize,
    /// TLB capacity; 0 disables the TLB.
    pub tlb_capacity: usize,
    /// Keep a walk cache of non-leaf table descriptors (T4).
    pub walk_cache: bool,
    /// Walk-cache capacity.
    pub walk_capacity: usize,
    /// Victim choice.
    pub eviction: Eviction,
    /// Combined S1+S2 TLB entries survive TLBI_S2_IPA (T6; allowed by §16.2.1). Default true.
    pub combined_tlb: bool,
    /// Power-on contents.
    pub power_on: PowerOn,
    /// Invalidate more than asked (CFGI_* flushes the whole config cache). Default false, so that
    /// missing invalidations show.
    pub over_invalidate: bool,
    /// A 64-entry direct-mapped front cache of complete translations. It only memoizes results
    /// that came entirely from the config cache and TLB, and is dropped on any removal or
    /// replacement in those caches, so it never changes what the model answers. Default true.
    pub micro_tlb: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            config_capacity: 4096,
            tlb_capacity: 4096,
            walk_cache: true,
            walk_capacity: 1024,
            eviction: Eviction::Fifo,
            combined_tlb: true,
            power_on: PowerOn::Empty,
            over_invalidate: false,
            micro_tlb: true,
        }
    }
}

/// A bounded map with FIFO or seeded-random eviction. Each insertion gets a sequence number;
/// the eviction order holds (key, sequence) so stale order entries (of removed or re-inserted
/// keys) are recognised and skipped.
#[derive(Clone, Debug)]
pub(crate) struct Bounded<K, V> {
    map: FastMap<K, (V, u64)>,
    order: VecDeque<(K, u64)>,
    cap: usize,
    seq: u64,
    /// Removals and replacements so far (the micro-TLB is valid only while this is unchanged).
    pub(crate) changes: u64,
}

impl<K: Copy + Eq + Hash, V> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: FastMap::default(),
            order: VecDeque::new(),
            cap,
            seq: 0,
            changes: 0,
        }
    }
    #[inline]
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }
    fn live(&self, k: &K, seq: u64) -> bool {
        self.map.get(k).is_some_and(|(_, s)| *s == seq)
    }
    pub(crate) fn insert(&mut self, k: K, v: V, ev: Eviction, rng: &mut Rng) {
        if self.cap == 0 {
            return;
        }
        if let Some(slot) = self.map.get_mut(&k) {
            slot.0 = v;
            self.changes += 1;
            return;
        }
        while self.map.len() >= self.cap {
            let victim = match ev {
                Eviction::Fifo => self.order.pop_front(),
                Eviction::Random => {
                    let i = rng.below(self.order.len() as u64) as usize;
                    self.order.swap_remove_back(i)
                }
            };
            match victim {
                Some((x, seq)) => {
                    if self.live(&x, seq) {
                        self.map.remove(&x);
                        self.changes += 1;
                    }
                }
                None => break,
            }
        }
        self.seq += 1;
        self.map.insert(k, (v, self.seq));
        self.order.push_back((k, self.seq));
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(x, seq)| map.get(x).is_some_and(|(_, s)| s == seq));
        }
    }
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let r = self.map.remove(k).map(|(v, _)| v);
        if r.is_some() {
            self.changes += 1;
        }
        r
    }
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &V) -> bool) -> Vec<(K, V)>
    where
        V: Clone,
    {
        let mut gone = Vec::new();
        self.map.retain(|k, (v, _)| {
            let keep = f(k, v);
            if !keep {
                gone.push((*k, v.clone()));
            }
            keep
        });
        self.changes += gone.len() as u64;
        gone
    }
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// TLB key: tag = world | VMID | ASID, page = canonical VA >> shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TlbKey {
    pub(crate) tag: u64,
    pub(crate) page: u64,
    pub(crate) shift: u8,
}

/// A cached translation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlbEntry {
    pub(crate) pa: u64,
    pub(crate) perm: u16,
    pub(crate) level: u8,
    /// IPA base of the entry (nested and stage-2 entries).
    pub(crate) ipa: u64,
    pub(crate) nested: bool,
    pub(crate) record_s1: bool,
    pub(crate) record_s2: bool,
}

/// Walk-cache key: (tag, stage, level of the table, input-address prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WcKey {
    pub(crate) tag: u64,
    pub(crate) stage2: bool,
    pub(crate) level: u8,
    pub(crate) prefix: u64,
}

/// A cached non-leaf descriptor: next table address and accumulated table attributes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WcEntry {
    pub(crate) table: u64,
    pub(crate) attrs: u64,
    /// Input-address span covered, as log2.
    pub(crate) span: u8,
}

pub(crate) use crate::decode::{W_EL1, W_EL2, W_S2};
/// ASID slot used for global (nG = 0) entries.
pub(crate) const GLOBAL: u32 = 0x1_0000;

#[inline]
pub(crate) const fn tag(world: u64, vmid: u16, asid: u32) -> u64 {
    (world << 40) | ((vmid as u64) << 20) | asid as u64
}
pub(crate) const fn tag_world(t: u64) -> u64 {
    t >> 40
}
pub(crate) const fn tag_vmid(t: u64) -> u16 {
    ((t >> 20) & 0xFFFF) as u16
}
pub(crate) const fn tag_asid(t: u64) -> u32 {
    (t & 0x1_FFFF) as u32
}

#[derive(Clone, Debug)]
pub(crate) struct Caches {
    pub(crate) ste: Bounded<u32, SteEntry>,
    pub(crate) l1: Bounded<u32, u64>,
    pub(crate) cd: Bounded<(u32, u32), CdEntry>,
    /// L1CD descriptors (§5.3): key (StreamID, first SubstreamID the descriptor covers), value
    /// (log2 of the SubstreamIDs it covers, descriptor).
    pub(crate) l1cd: Bounded<(u32, u32), (u8, u64)>,
    pub(crate) tlb: Bounded<TlbKey, TlbEntry>,
    pub(crate) walk: Bounded<WcKey, WcEntry>,
    /// Bit i set: some TLB entry of shift i may exist.
    pub(crate) shifts: u64,
    pub(crate) globals: bool,
    pub(crate) ev: Eviction,
    pub(crate) walk_on: bool,
}

impl Caches {
    pub(crate) fn new(p: &CachePolicy) -> Self {
        Self {
            ste: Bounded::new(p.config_capacity),
            l1: Bounded::new(p.config_capacity),
            cd: Bounded::new(p.config_capacity),
            l1cd: Bounded::new(p.config_capacity),
            tlb: Bounded::new(p.tlb_capacity),
            walk: Bounded::new(if p.walk_cache { p.walk_capacity } else { 0 }),
            shifts: 0,
            globals: false,
            ev: p.eviction,
            walk_on: p.walk_cache,
        }
    }

    pub(crate) fn tlb_insert(&mut self, k: TlbKey, e: TlbEntry, rng: &mut Rng) {
        if self.tlb.cap == 0 {
            return;
        }
        self.shifts |= 1u64 << k.shift;
        if tag_asid(k.tag) == GLOBAL {
            self.globals = true;
        }
        self.tlb.insert(k, e, self.ev, rng);
    }

    /// A stamp that changes whenever an STE, CD or TLB entry is removed or replaced.
    #[inline]
    pub(crate) fn stamp(&self) -> u64 {
        self.ste.changes + self.cd.changes + self.tlb.changes
    }

    #[inline]
    pub(crate) fn tlb_lookup(&self, t: u64, va: u64) -> Option<(TlbKey, TlbEntry)> {
        let mut s = self.shifts;
        while s != 0 {
            let shift = s.trailing_zeros() as u8;
            s &= s - 1;
            let k = TlbKey {
                tag: t,
                page: va >> shift,
                shift,
            };
            if let Some(e) = self.tlb.get(&k) {
                return Some((k, *e));
            }
            if self.globals && tag_world(t) != W_S2 {
                let g = TlbKey {
                    tag: (t & !0x1_FFFF) | u64::from(GLOBAL),
                    page: va >> shift,
                    shift,
                };
                if let Some(e) = self.tlb.get(&g) {
                    return Some((g, *e));
                }
            }
        }
        None
    }
}

// ------------------------------------------------------------------ micro-TLB, torn-fetch tracking

/// A micro-TLB entry: one 4 KiB page of a complete translation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Micro {
    pub(crate) valid: bool,
    pub(crate) bypass: bool,
    pub(crate) sid: u32,
    pub(crate) ssid: u32,
    pub(crate) page: u64,
    pub(crate) out: u64,
    pub(crate) perm: u16,
    pub(crate) stamp: u64,
}

/// A structure the SMMU has fetched and may be using (torn-fetch tracking, S9).
#[derive(Clone, Debug)]
pub(crate) struct Tracked {
    pub(crate) is_cd: bool,
    pub(crate) sid: u32,
    pub(crate) ssid: u32,
    pub(crate) baseline: [u64; 8],
    /// Images seen between stores since the baseline (snapshot check).
    pub(crate) candidates: Vec<[u64; 8]>,
    /// Every image seen between stores since the baseline (any-order mixture check).
    pub(crate) history: Vec<[u64; 8]>,
    /// Stored to since the baseline.
    pub(crate) dirty: bool,
}

// ------------------------------------------------------------------ the endpoints' ATCs (§3.9.1)

/// One translation an endpoint's ATC holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtcEntry {
    /// StreamID of the endpoint.
    pub sid: u32,
    /// The PASID the translation was requested with.
    pub ssid: Option<u32>,
    /// Untranslated address of the 4 KiB page.
    pub iova: u64,
    /// Translated address of the page.
    pub pa: u64,
    /// Read granted.
    pub read: bool,
    /// Write granted.
    pub write: bool,
    /// Execute granted.
    pub exec: bool,
    /// A CMD_ATC_INV covering the entry was consumed; it goes at the next CMD_SYNC.
    pub invalidating: bool,
}

/// Every endpoint's ATC, keyed by (StreamID, PASID or `u32::MAX`, page number).
#[derive(Clone, Debug, Default)]
pub(crate) struct Atc {
    pub(crate) entries: BTreeMap<(u32, u32, u64), AtcEntry>,
}

/// Bound on the entries all ATCs hold together (the oldest key goes first beyond it).
pub(crate) const ATC_CAPACITY: usize = 1 << 14;

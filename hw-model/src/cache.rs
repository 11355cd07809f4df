//! Config cache, TLB and walk cache with deterministic eviction (T4–T9, S6, S10).

use crate::model::{CachePolicy, Eviction};
use crate::util::{FastMap, Rng};
use crate::xlate::{CdEntry, SteEntry};
use std::collections::VecDeque;
use std::hash::Hash;

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

pub(crate) const W_EL1: u64 = 0;
pub(crate) const W_EL2: u64 = 1;
pub(crate) const W_S2: u64 = 2;
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

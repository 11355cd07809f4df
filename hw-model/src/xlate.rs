//! The walker: stream-table and CD fetch (decoded by `decode`), stage-1/stage-2/nested walks
//! (VMSAv8-64), terminations and fault records, TLB and walk-cache use, and the torn-fetch check.

use crate::cache::{
    tag, Micro, TlbEntry, TlbKey, Tracked, WcEntry, WcKey, GLOBAL, W_EL1, W_EL2, W_S2,
};
use crate::decode::{
    alike, block_ok, canon, decode_cd, decode_ste, ias, is_invalid, level_shift, low_mask, CdCfg,
    CdEntry, S2Cfg, SteDec, SteEntry, StePlan,
};
use crate::fields::{cd, evt, l1std, pte, reg, ste};
use crate::model::{Model, TornFetch, ViolationKind};
use crate::txn::{Cause, Event, Transaction, TxnResult};

/// One TLB entry as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbView {
    /// A stage-2-only entry (tagged by VMID, input is an IPA).
    pub stage2_only: bool,
    /// An EL2 StreamWorld entry.
    pub el2: bool,
    /// VMID tag.
    pub vmid: u16,
    /// ASID tag, `None` for a global (nG = 0) entry.
    pub asid: Option<u16>,
    /// Canonical input address of the entry's first byte.
    pub va: u64,
    /// log2 of the entry size.
    pub size_log2: u8,
    /// Output address of the entry's first byte.
    pub pa: u64,
    /// Lookup level of the leaf.
    pub level: u8,
}

#[inline]
fn micro_idx(sid: u32, iova: u64) -> usize {
    ((u64::from(sid) ^ (iova >> 12)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

// -------------------------------------------------------------------- permissions
const P_RP: u16 = 1; // read, privileged
const P_WP: u16 = 2;
const P_RU: u16 = 4;
const P_WU: u16 = 8;
const P_XP: u16 = 16;
const P_XU: u16 = 32;
const S1_ALL: u16 = 63;
const S2_R: u16 = 64;
const S2_W: u16 = 128;
const S2_X: u16 = 256;
const S2_ALL: u16 = S2_R | S2_W | S2_X;

/// Checks an access against permissions: Ok, or Err(stage2?).
fn perm_check(perm: u16, t: &Transaction) -> Result<(), bool> {
    let need1 = match (t.instruction, t.write, t.privileged) {
        (true, _, true) => P_XP | P_RP,
        (true, _, false) => P_XU | P_RU,
        (false, true, true) => P_WP,
        (false, true, false) => P_WU,
        (false, false, true) => P_RP,
        (false, false, false) => P_RU,
    };
    if perm & need1 != need1 {
        return Err(false);
    }
    let need2 = if t.write {
        S2_W
    } else if t.instruction {
        S2_X | S2_R
    } else {
        S2_R
    };
    if perm & need2 != need2 {
        return Err(true);
    }
    Ok(())
}

/// A fault found during translation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fault {
    pub(crate) cause: Cause,
    pub(crate) s2: bool,
    pub(crate) class: u64,
    pub(crate) ipa: u64,
    pub(crate) fetch: u64,
    pub(crate) record: bool,
}

pub(crate) enum WalkErr {
    Translation,
    AddrSize,
    Access,
    Eabt(u64),
    Nested(Fault),
}

pub(crate) struct WalkReq {
    pub(crate) stage2: bool,
    pub(crate) ttb: u64,
    pub(crate) ia: u64,
    pub(crate) ia_bits: u32,
    pub(crate) gran: u32,
    pub(crate) start: u8,
    pub(crate) ps_bits: u32,
    pub(crate) affd: bool,
    pub(crate) had: bool,
    pub(crate) tag: u64,
    /// The walk-cache key address: the canonical VA (stage 1) or the IPA (stage 2). Keying by
    /// the canonical VA keeps the TTB0 and TTB1 regions apart (their table-indexed `ia` bits
    /// are the same) and lets a TLBI range, which is canonical, match the entry.
    pub(crate) key: u64,
}

pub(crate) struct WalkOk {
    pub(crate) out: u64,
    pub(crate) shift: u32,
    pub(crate) level: u8,
    pub(crate) desc: u64,
    pub(crate) attrs: u64,
}

fn s1_perm(desc: u64, attrs: u64, wxn: bool) -> u16 {
    let ap1 = desc & pte::AP1 != 0;
    let ro = desc & pte::AP2 != 0 || attrs & pte::AP_TABLE1 != 0;
    let user = ap1 && attrs & pte::AP_TABLE0 == 0;
    let mut p = P_RP;
    if !ro {
        p |= P_WP;
    }
    if user {
        p |= P_RU;
        if !ro {
            p |= P_WU;
        }
    }
    let writable = !ro;
    let pxn =
        desc & pte::PXN != 0 || attrs & pte::PXN_TABLE != 0 || (wxn && writable) || (user && !ro);
    let uxn = desc & pte::UXN != 0 || attrs & pte::UXN_TABLE != 0 || (wxn && writable);
    if !pxn {
        p |= P_XP;
    }
    if user && !uxn {
        p |= P_XU;
    }
    p | S2_ALL
}

fn s2_perm(desc: u64) -> u16 {
    let mut p = S1_ALL;
    if desc & pte::AP1 != 0 {
        p |= S2_R;
    }
    if desc & pte::AP2 != 0 {
        p |= S2_W;
    }
    if desc & pte::UXN == 0 {
        p |= S2_X;
    }
    p
}

impl Model {
    pub(crate) fn smmu_on(&self) -> bool {
        self.cr0ack & reg::CR0_SMMUEN != 0
    }

    /// StreamWorld NS-EL2 (not NS-EL2-E2H): STRW selects EL2 and CR2.E2H is 0 (§5.2 STRW).
    pub(crate) fn el2_plain(&self, plan: &StePlan) -> bool {
        plan.world == W_EL2 && self.cr2 & reg::CR2_E2H == 0
    }

    pub(crate) fn fetch64(&self, pa: u64) -> Result<u64, u64> {
        if self.mem.is_freed(pa) {
            let mut reads = self.freed_reads.borrow_mut();
            // Bounded like the log itself: one read per word is plenty of evidence.
            if reads.len() < 64 {
                reads.push(pa);
            }
        }
        self.mem
            .dev_read_u64(pa, self.cfg.smmu_encrypted_attr)
            .map_err(|_| pa)
    }

    /// Reads a 64-byte structure as eight independent 64-bit loads.
    pub(crate) fn fetch_struct(&self, pa: u64) -> Result<[u64; 8], u64> {
        let mut w = [0u64; 8];
        for (i, x) in w.iter_mut().enumerate() {
            *x = self.fetch64(pa + 8 * i as u64)?;
        }
        Ok(w)
    }

    pub(crate) fn event(id: u8, t: &Transaction) -> Event {
        let mut raw = [0u64; 4];
        evt::ID.set(&mut raw, u64::from(id));
        evt::SID.set(&mut raw, u64::from(t.sid));
        if let Some(s) = t.ssid {
            evt::SSV.set(&mut raw, 1);
            evt::SSID.set(&mut raw, u64::from(s));
        }
        evt::RNW.set(&mut raw, u64::from(!t.write));
        evt::PNU.set(&mut raw, u64::from(t.privileged));
        // §7.3.13-16: InD == 0 when RnW == 0 (a write is never an instruction fetch).
        evt::IND.set(&mut raw, u64::from(t.instruction && !t.write));
        evt::INPUT_ADDR.set(&mut raw, t.iova);
        Event { raw }
    }

    fn abort_event(
        &mut self,
        cause: Cause,
        id: u8,
        t: &Transaction,
        fetch: Option<u64>,
    ) -> TxnResult {
        let mut e = Self::event(id, t);
        if let Some(f) = fetch {
            evt::FETCH_ADDR.set(&mut e.raw, f >> 3);
            if self.gpc_fetch_fault(f, crate::rme::GPF_CODE_STE_FETCH) {
                evt::GPCF.set(&mut e.raw, 1);
            }
        }
        self.emit_event(e);
        TxnResult::Abort {
            cause,
            event: Some(e),
        }
    }

    pub(crate) fn fault_result(&mut self, f: Fault, t: &Transaction) -> TxnResult {
        let id = match f.cause {
            Cause::Translation => evt::F_TRANSLATION,
            Cause::AddrSize => evt::F_ADDR_SIZE,
            Cause::Access => evt::F_ACCESS,
            Cause::Permission => evt::F_PERMISSION,
            Cause::WalkEabt => evt::F_WALK_EABT,
            Cause::CdFetch => evt::F_CD_FETCH,
            Cause::SteFetch => evt::F_STE_FETCH,
            Cause::BadSte => evt::C_BAD_STE,
            Cause::BadCd => evt::C_BAD_CD,
            Cause::BadSubstreamId => evt::C_BAD_SUBSTREAMID,
            Cause::StreamDisabled => evt::F_STREAM_DISABLED,
            Cause::BadStreamId => evt::C_BAD_STREAMID,
            Cause::TranslForbidden => evt::F_TRANSL_FORBIDDEN,
            Cause::GbpaAbort | Cause::SteAbort | Cause::AtsDenied | Cause::GranuleProtection => {
                return TxnResult::Abort {
                    cause: f.cause,
                    event: None,
                }
            }
        };
        let mut e = Self::event(id, t);
        evt::S2.set(&mut e.raw, u64::from(f.s2));
        evt::CLASS.set(&mut e.raw, f.class);
        if matches!(f.cause, Cause::WalkEabt | Cause::CdFetch) {
            evt::FETCH_ADDR.set(&mut e.raw, f.fetch >> 3);
            let code = if f.cause == Cause::CdFetch {
                crate::rme::GPF_CODE_CD_FETCH
            } else {
                crate::rme::GPF_CODE_WALK_EABT
            };
            if self.gpc_fetch_fault(f.fetch, code) {
                evt::GPCF.set(&mut e.raw, 1);
            }
        } else if f.s2 {
            evt::IPA.set(&mut e.raw, f.ipa >> 12);
        }
        if f.cause == Cause::Permission && f.s2 && f.class == evt::CLASS_TT {
            // §7.3.16 TTRnW: the stage-1 descriptor access that faulted at stage 2 was a read
            // (the model does not update descriptors, so it is always a read).
            evt::TTRNW.set(&mut e.raw, 1);
        }
        if !f.record {
            return TxnResult::Abort {
                cause: f.cause,
                event: None,
            };
        }
        self.emit_event(e);
        TxnResult::Abort {
            cause: f.cause,
            event: Some(e),
        }
    }

    /// Translates one transaction without recording an outcome (the hot path the benchmarks
    /// measure). Events are still generated as the architecture requires.
    pub fn translate(&mut self, t: &Transaction) -> TxnResult {
        let r = self.translate_unchecked(t);
        self.gpc_output(t, r)
    }

    /// [`Model::translate`] before the Granule Protection Check of the output address.
    fn translate_unchecked(&mut self, t: &Transaction) -> TxnResult {
        let ssid_key = t.ssid.unwrap_or(u32::MAX);
        let use_micro = self.cfg.cache.micro_tlb && self.smmu_on();
        if use_micro {
            let e = self.micro[micro_idx(t.sid, t.iova)];
            if e.valid
                && e.sid == t.sid
                && e.ssid == ssid_key
                && e.page == t.iova >> 12
                && e.stamp == self.caches.stamp()
            {
                if e.bypass {
                    return TxnResult::Bypass { pa: t.iova };
                }
                if perm_check(e.perm, t).is_ok() {
                    return TxnResult::Translated {
                        pa: e.out | (t.iova & 0xFFF),
                    };
                }
            }
        }
        self.pure = true;
        self.last_perm = S1_ALL | S2_ALL;
        let r = self.translate_full(t);
        if use_micro && self.pure && self.smmu_on() {
            let (bypass, out) = match r {
                TxnResult::Translated { pa } => (false, pa & !0xFFF),
                TxnResult::Bypass { .. } => (true, 0),
                TxnResult::Abort { .. } => return r,
            };
            self.micro[micro_idx(t.sid, t.iova)] = Micro {
                valid: true,
                bypass,
                sid: t.sid,
                ssid: ssid_key,
                page: t.iova >> 12,
                out,
                perm: self.last_perm,
                stamp: self.caches.stamp(),
            };
        }
        r
    }

    fn translate_full(&mut self, t: &Transaction) -> TxnResult {
        let above_oas = t.iova >> self.prof.oas_bits() != 0;
        if !self.smmu_on() {
            return if self.gbpa & reg::GBPA_ABORT != 0 {
                TxnResult::Abort {
                    cause: Cause::GbpaAbort,
                    event: None,
                }
            } else if above_oas {
                // §3.4: with the SMMU disabled, an input above the OAS aborts, no event.
                TxnResult::Abort {
                    cause: Cause::AddrSize,
                    event: None,
                }
            } else {
                TxnResult::Bypass { pa: t.iova }
            };
        }
        let dec = match self.get_ste(t) {
            Ok(d) => d,
            Err(r) => return r,
        };
        match dec {
            SteDec::Illegal => self.abort_event(Cause::BadSte, evt::C_BAD_STE, t, None),
            SteDec::Abort => TxnResult::Abort {
                cause: Cause::SteAbort,
                event: None,
            },
            // §5.2 S1ContextPtr: no SubstreamID through a bypass STE; §3.4: an input above the
            // OAS is a stage-1 Address Size fault (S2 = 0, CLASS = IN).
            SteDec::Bypass if t.ssid.is_some() => {
                self.abort_event(Cause::BadSubstreamId, evt::C_BAD_SUBSTREAMID, t, None)
            }
            SteDec::Bypass if above_oas => self.fault_result(
                Fault {
                    cause: Cause::AddrSize,
                    s2: false,
                    class: evt::CLASS_IN,
                    ipa: 0,
                    fetch: 0,
                    record: true,
                },
                t,
            ),
            SteDec::Bypass => TxnResult::Bypass { pa: t.iova },
            SteDec::Xlate(plan) => match self.xlate(t, &plan) {
                Ok(pa) => TxnResult::Translated { pa },
                Err(f) => self.fault_result(f, t),
            },
        }
    }

    /// Finds the STE of `t.sid`: config cache, else a fresh walk of the stream table.
    pub(crate) fn get_ste(&mut self, t: &Transaction) -> Result<SteDec, TxnResult> {
        let sid = t.sid;
        if let Some(e) = self.caches.ste.get(&sid) {
            return Ok(e.dec);
        }
        self.pure = false;
        let (linear, log2, split) = self.strtab_geometry();
        let bad_sid = |m: &mut Model| {
            if m.cr2 & reg::CR2_RECINVSID != 0 {
                m.abort_event(Cause::BadStreamId, evt::C_BAD_STREAMID, t, None)
            } else {
                TxnResult::Abort {
                    cause: Cause::BadStreamId,
                    event: None,
                }
            }
        };
        if log2 < 32 && u64::from(sid) >> log2 != 0 {
            return Err(bad_sid(self));
        }
        let base = self.strtab_addr();
        let addr = if linear {
            base + 64 * u64::from(sid)
        } else {
            let l1i = sid >> split;
            let cached = self.caches.l1.get(&l1i).copied();
            let l1 = if let Some(v) = cached {
                v
            } else {
                let a = base + 8 * u64::from(l1i);
                match self.fetch64(a) {
                    Ok(v) => {
                        let (ev, rng) = (self.caches.ev, &mut self.rng);
                        self.caches.l1.insert(l1i, v, ev, rng);
                        v
                    }
                    Err(fa) => {
                        return Err(self.abort_event(
                            Cause::SteFetch,
                            evt::F_STE_FETCH,
                            t,
                            Some(fa),
                        ));
                    }
                }
            };
            let span = l1std::SPAN.of(l1) as u32;
            if span == 0 || span > 11 || span > split + 1 {
                return Err(bad_sid(self));
            }
            let idx = u64::from(sid) & ((1u64 << split) - 1);
            if idx >> (span - 1) != 0 {
                return Err(bad_sid(self));
            }
            let l2 = (l1std::L2PTR.of(l1) << 6) & !((1u64 << (6 + span - 1)) - 1);
            l2 + 64 * idx
        };
        let raw = match self.fetch_struct(addr) {
            Ok(w) => w,
            Err(fa) => {
                return Err(self.abort_event(Cause::SteFetch, evt::F_STE_FETCH, t, Some(fa)))
            }
        };
        let dec = decode_ste(&self.prof, &raw);
        self.cache_ste(sid, raw, dec);
        self.track(addr, false, sid, 0, raw);
        Ok(dec)
    }

    pub(crate) fn cache_ste(&mut self, sid: u32, raw: [u64; 8], dec: SteDec) {
        if self.smmu_on() {
            let ev = self.caches.ev;
            self.caches
                .ste
                .insert(sid, SteEntry { raw, dec }, ev, &mut self.rng);
        }
    }

    fn track(&mut self, pa: u64, is_cd: bool, sid: u32, ssid: u32, raw: [u64; 8]) {
        if self.cfg.torn_fetch == TornFetch::Off || self.tracked.len() >= 1 << 16 {
            return;
        }
        let e = self.tracked.entry(pa).or_insert(Tracked {
            is_cd,
            sid,
            ssid,
            baseline: raw,
            candidates: Vec::new(),
            history: Vec::new(),
            dirty: false,
        });
        if !e.dirty {
            e.baseline = raw;
        }
        e.is_cd = is_cd;
        e.sid = sid;
        e.ssid = ssid;
    }

    /// The torn-fetch hook: called after each 64-bit CPU store at `pa`.
    pub(crate) fn torn_hook(&mut self, pa: u64) {
        let base = pa & !63;
        let Some(tr) = self.tracked.get(&base) else {
            return;
        };
        let (is_cd, sid, ssid) = (tr.is_cd, tr.sid, tr.ssid);
        let Ok(img) = self.fetch_struct(base) else {
            return;
        };
        let Some(tr) = self.tracked.get_mut(&base) else {
            return;
        };
        tr.dirty = true;
        if tr.history.len() < 64 {
            tr.history.push(img);
        }
        if !alike(&img, &tr.baseline, is_cd) && !is_invalid(&img, is_cd) && tr.candidates.len() < 64
        {
            tr.candidates.push(img);
        }
        if self.cfg.torn_fetch == TornFetch::CheckAndCache && self.smmu_on() {
            if is_cd {
                if self.caches.cd.get(&(sid, ssid)).is_none() {
                    // The fetch is through the STE the SMMU holds for this stream, if any.
                    let plan = match self.caches.ste.get(&sid).map(|e| e.dec) {
                        Some(SteDec::Xlate(p)) => Some(p),
                        _ => None,
                    };
                    let s1stalld = plan.is_some_and(|p| p.s1stalld);
                    let el2 = plan.is_some_and(|p| self.el2_plain(&p));
                    let dec = decode_cd(&self.prof, s1stalld, el2, &img);
                    let ev = self.caches.ev;
                    self.caches.cd.insert(
                        (sid, ssid),
                        CdEntry { raw: img, dec },
                        ev,
                        &mut self.rng,
                    );
                }
            } else if self.caches.ste.get(&sid).is_none() {
                let dec = decode_ste(&self.prof, &img);
                self.cache_ste(sid, img, dec);
            }
        }
    }

    /// Resolves torn-fetch candidates of the tracked structures matching `pred` against their
    /// current (new) image, logging [`ViolationKind::TornStructure`] for images that behaved like
    /// neither the old nor the new entry. Called when a covering CFGI is consumed.
    pub(crate) fn resolve_tracked(&mut self, pred: impl Fn(&Tracked) -> bool) {
        let keys: Vec<u64> = self
            .tracked
            .iter()
            .filter(|(_, t)| pred(t))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let Ok(new) = self.fetch_struct(k) else {
                continue;
            };
            let Some(tr) = self.tracked.get_mut(&k) else {
                continue;
            };
            let is_cd = tr.is_cd;
            let old = tr.baseline;
            let mut cands = std::mem::take(&mut tr.candidates);
            let history = std::mem::take(&mut tr.history);
            tr.baseline = new;
            tr.dirty = false;
            if self.cfg.torn_mixes {
                // §3.21.3: the words of a structure may be read in any order, each single-copy
                // atomic; between two sync points a fetch can combine any value each unit took.
                // The unit is the SMMU's single-copy-atomic fetch size: 64 or 128 bits.
                let g = if self.cfg.fetch_atomic_128 { 2 } else { 1 };
                let units = 8 / g;
                let mut sets: Vec<Vec<[u64; 2]>> = vec![Vec::new(); units];
                for img in std::iter::once(&old).chain(history.iter()) {
                    for (u, set) in sets.iter_mut().enumerate() {
                        let v = [img[g * u], if g == 2 { img[g * u + 1] } else { 0 }];
                        if !set.contains(&v) {
                            set.push(v);
                        }
                    }
                }
                let combos: usize = sets.iter().map(Vec::len).product();
                if combos <= 4096 {
                    cands.clear();
                    let mut idx = vec![0usize; units];
                    'all: loop {
                        let mut mix = [0u64; 8];
                        for (u, set) in sets.iter().enumerate() {
                            let v = set[idx[u]];
                            mix[g * u] = v[0];
                            if g == 2 {
                                mix[g * u + 1] = v[1];
                            }
                        }
                        if !alike(&mix, &old, is_cd)
                            && !alike(&mix, &new, is_cd)
                            && !is_invalid(&mix, is_cd)
                        {
                            cands.push(mix);
                            break;
                        }
                        let mut d = 0;
                        loop {
                            if d == units {
                                break 'all;
                            }
                            idx[d] += 1;
                            if idx[d] < sets[d].len() {
                                break;
                            }
                            idx[d] = 0;
                            d += 1;
                        }
                    }
                }
            }
            for c in cands {
                if !alike(&c, &old, is_cd) && !alike(&c, &new, is_cd) && !is_invalid(&c, is_cd) {
                    let i = (0..8).find(|&i| c[i] != new[i]).unwrap_or(0);
                    let what = if is_cd {
                        "CD (torn image)"
                    } else {
                        "STE (torn image)"
                    };
                    self.violate(
                        ViolationKind::TornStructure,
                        what,
                        k + 8 * i as u64,
                        old[i],
                        c[i],
                    );
                }
            }
        }
    }

    /// Resolves every tracked structure now (a test can call this at the end of an update
    /// sequence that did not end in a CFGI).
    pub fn check_structures(&mut self) {
        self.resolve_tracked(|_| true);
    }

    fn get_cd(&mut self, t: &Transaction, plan: &StePlan, ssid: u32) -> Result<CdCfg, Fault> {
        let key = (t.sid, ssid);
        if let Some(e) = self.caches.cd.get(&key) {
            return e.dec.ok_or(Fault {
                cause: Cause::BadCd,
                s2: false,
                class: 0,
                ipa: 0,
                fetch: 0,
                record: true,
            });
        }
        self.pure = false;
        let fetch_fault = |fa: u64| Fault {
            cause: Cause::CdFetch,
            s2: false,
            class: 0,
            ipa: 0,
            fetch: fa,
            record: true,
        };
        let ipa = if plan.s1cdmax == 0 || plan.s1fmt == 0 || plan.s1fmt == 3 {
            plan.s1ctx + 64 * u64::from(ssid)
        } else {
            let split: u8 = if plan.s1fmt == 1 { 6 } else { 10 };
            // L1CDs are configuration the SMMU may cache (§5.3, §4.3.3 CFGI_CD Leaf = 0).
            let l1key = (t.sid, ssid & !((1u32 << split) - 1));
            let d = match self.caches.l1cd.get(&l1key) {
                Some(&(sp, d)) if sp == split => d,
                _ => {
                    let l1 = plan.s1ctx + 8 * u64::from(ssid >> split);
                    let l1pa = self.cd_ipa_to_pa(plan, l1)?;
                    let d = self.fetch64(l1pa).map_err(fetch_fault)?;
                    if self.smmu_on() {
                        let ev = self.caches.ev;
                        self.caches
                            .l1cd
                            .insert(l1key, (split, d), ev, &mut self.rng);
                    }
                    d
                }
            };
            if cd::L1CD_V.of(d) == 0 {
                return Err(Fault {
                    cause: Cause::BadSubstreamId,
                    s2: false,
                    class: 0,
                    ipa: 0,
                    fetch: 0,
                    record: true,
                });
            }
            (cd::L1CD_L2PTR.of(d) << 12) + 64 * u64::from(ssid & ((1 << split) - 1))
        };
        let pa = self.cd_ipa_to_pa(plan, ipa)?;
        let raw = self.fetch_struct(pa).map_err(fetch_fault)?;
        let dec = decode_cd(&self.prof, plan.s1stalld, self.el2_plain(plan), &raw);
        if self.smmu_on() {
            let ev = self.caches.ev;
            self.caches
                .cd
                .insert(key, CdEntry { raw, dec }, ev, &mut self.rng);
        }
        self.track(pa, true, t.sid, ssid, raw);
        dec.ok_or(Fault {
            cause: Cause::BadCd,
            s2: false,
            class: 0,
            ipa: 0,
            fetch: 0,
            record: true,
        })
    }

    fn cd_ipa_to_pa(&mut self, plan: &StePlan, ipa: u64) -> Result<u64, Fault> {
        match &plan.s2 {
            Some(s2) => {
                let s2 = *s2;
                self.s2_xlate(&s2, ipa, false, evt::CLASS_CD)
            }
            None => Ok(ipa),
        }
    }

    /// Stage-2 translation of an IPA for a read or write by the SMMU itself (CD and table
    /// fetches): the walk plus the S2AP check.
    fn s2_xlate(&mut self, s2: &S2Cfg, ipa: u64, write: bool, class: u64) -> Result<u64, Fault> {
        let (pa, perm, _) = self.s2_lookup(s2, ipa, class)?;
        let need = if write { S2_W } else { S2_R };
        if perm & need != need {
            return Err(Fault {
                cause: Cause::Permission,
                s2: true,
                class,
                ipa,
                fetch: 0,
                record: s2.record,
            });
        }
        Ok(pa)
    }

    /// Stage-2 lookup (TLB, else walk and fill) without a permission check: (PA, permissions,
    /// entry size log2).
    fn s2_lookup(&mut self, s2: &S2Cfg, ipa: u64, class: u64) -> Result<(u64, u16, u32), Fault> {
        let tg = tag(W_S2, s2.vmid, 0);
        let f = |cause| Fault {
            cause,
            s2: true,
            class,
            ipa,
            fetch: 0,
            record: s2.record,
        };
        if ipa >> s2.ia_bits != 0 {
            return Err(f(Cause::Translation));
        }
        if let Some((k, e)) = self.caches.tlb_lookup(tg, ipa) {
            self.last_perm = e.perm;
            return Ok((
                e.pa | (ipa & ((1u64 << k.shift) - 1)),
                e.perm,
                u32::from(k.shift),
            ));
        }
        let req = WalkReq {
            stage2: true,
            ttb: s2.ttb,
            ia: ipa,
            ia_bits: s2.ia_bits,
            gran: s2.gran,
            start: s2.start,
            ps_bits: s2.ps_bits,
            affd: s2.affd,
            had: true,
            tag: tg,
            key: ipa,
        };
        let w = self.walk(&req, None).map_err(|e| match e {
            WalkErr::Translation => f(Cause::Translation),
            WalkErr::AddrSize => f(Cause::AddrSize),
            WalkErr::Access => f(Cause::Access),
            WalkErr::Eabt(fa) => Fault {
                cause: Cause::WalkEabt,
                s2: true,
                class,
                ipa,
                fetch: fa,
                record: true,
            },
            WalkErr::Nested(x) => x,
        })?;
        let perm = s2_perm(w.desc);
        if self.smmu_on() {
            let key = TlbKey {
                tag: tg,
                page: ipa >> w.shift,
                shift: w.shift as u8,
            };
            let mask = (1u64 << w.shift) - 1;
            let e = TlbEntry {
                pa: w.out & !mask,
                perm,
                level: w.level,
                ipa: ipa & !mask,
                nested: false,
                record_s1: false,
                record_s2: s2.record,
            };
            self.caches.tlb_insert(key, e, &mut self.rng);
        }
        Ok((w.out, perm, w.shift))
    }

    /// A VMSAv8-64 walk. `nest` translates table addresses (IPAs) through stage 2.
    pub(crate) fn walk(&mut self, r: &WalkReq, nest: Option<&S2Cfg>) -> Result<WalkOk, WalkErr> {
        self.pure = false;
        let s = r.gran - 3;
        let mut level = r.start;
        let mut table = r.ttb;
        let mut attrs = 0u64;
        // Walk cache: start from the deepest cached table.
        if self.caches.walk_on {
            let mut l = 3u8;
            while l > r.start {
                let span = level_shift(r.gran, l - 1);
                let k = WcKey {
                    tag: r.tag,
                    stage2: r.stage2,
                    level: l,
                    prefix: r.key >> span,
                };
                if let Some(e) = self.caches.walk.get(&k) {
                    table = e.table;
                    attrs = e.attrs;
                    level = l;
                    break;
                }
                l -= 1;
            }
        }
        loop {
            let sh = level_shift(r.gran, level);
            let bits = if level == r.start {
                r.ia_bits.saturating_sub(sh)
            } else {
                s
            };
            let idx = (r.ia >> sh) & ((1u64 << bits) - 1);
            let desc_addr = table + 8 * idx;
            let desc_pa = match nest {
                Some(s2) => {
                    let s2 = *s2;
                    self.s2_xlate(&s2, desc_addr, false, evt::CLASS_TT)
                        .map_err(WalkErr::Nested)?
                }
                None => desc_addr,
            };
            let d = self.fetch64(desc_pa).map_err(WalkErr::Eabt)?;
            if d & pte::VALID == 0 {
                return Err(WalkErr::Translation);
            }
            let is_table = d & pte::TABLE != 0;
            if level < 3 && is_table {
                let next = d & pte::OA_MASK & !((1u64 << r.gran) - 1);
                if next >> r.ps_bits != 0 {
                    return Err(WalkErr::AddrSize);
                }
                if !r.stage2 && !r.had {
                    attrs |=
                        d & (pte::AP_TABLE0 | pte::AP_TABLE1 | pte::PXN_TABLE | pte::UXN_TABLE);
                }
                if self.caches.walk_on && self.smmu_on() {
                    let k = WcKey {
                        tag: r.tag,
                        stage2: r.stage2,
                        level: level + 1,
                        prefix: r.key >> sh,
                    };
                    let ev = self.caches.ev;
                    self.caches.walk.insert(
                        k,
                        WcEntry {
                            table: next,
                            attrs,
                            span: sh as u8,
                        },
                        ev,
                        &mut self.rng,
                    );
                }
                table = next;
                level += 1;
                continue;
            }
            if level == 3 && !is_table {
                return Err(WalkErr::Translation);
            }
            if level < 3 && !block_ok(r.gran, level) {
                return Err(WalkErr::Translation);
            }
            let oa = d & pte::OA_MASK & !((1u64 << sh) - 1);
            if oa >> r.ps_bits != 0 {
                return Err(WalkErr::AddrSize);
            }
            if d & pte::AF == 0 && !r.affd {
                return Err(WalkErr::Access);
            }
            return Ok(WalkOk {
                out: oa | (r.ia & ((1u64 << sh) - 1)),
                shift: sh,
                level,
                desc: d,
                attrs,
            });
        }
    }

    /// Full translation for a translating STE.
    pub(crate) fn xlate(&mut self, t: &Transaction, plan: &StePlan) -> Result<u64, Fault> {
        let mut s1_on = plan.s1;
        let mut ssid = 0u32;
        let term = |cause| Fault {
            cause,
            s2: false,
            class: 0,
            ipa: 0,
            fetch: 0,
            record: true,
        };
        if !plan.s1 && t.ssid.is_some() {
            // §5.2 S1ContextPtr: a SubstreamID on a Config = 0b1x0 STE is terminated.
            return Err(term(Cause::BadSubstreamId));
        }
        if plan.s1 {
            let ssidsize = self.prof.idr1(reg::IDR1_SSIDSIZE);
            match t.ssid {
                Some(s) => {
                    if plan.s1cdmax == 0 || ssidsize == 0 || u64::from(s) >> plan.s1cdmax != 0 {
                        return Err(term(Cause::BadSubstreamId));
                    }
                    // §5.2 S1DSS = 0b10: CD 0 serves non-substream traffic only; SSID 0 with
                    // SSV = 1 is F_STREAM_DISABLED (§7.3.7).
                    if s == 0 && plan.s1dss == 0b10 {
                        return Err(term(Cause::StreamDisabled));
                    }
                    ssid = s;
                }
                None if plan.s1cdmax != 0 => match plan.s1dss {
                    0b01 => s1_on = false,
                    0b10 => ssid = 0,
                    _ => return Err(term(Cause::StreamDisabled)),
                },
                None => {}
            }
        }
        if !s1_on {
            // §3.4: a stage-1-bypassed input above the IAS is a stage-1 Address Size fault
            // (S2 = 0, CLASS = IN); only then may stage 2 reject it with a Translation fault.
            let ias = ias(&self.prof);
            if t.iova >> ias != 0 {
                return Err(Fault {
                    cause: Cause::AddrSize,
                    s2: false,
                    class: evt::CLASS_IN,
                    ipa: 0,
                    fetch: 0,
                    record: true,
                });
            }
            // Stage 2 bypassed too: the IPA is truncated to the OAS (§3.4).
            let Some(s2) = plan.s2 else {
                return Ok(t.iova & low_mask(self.prof.oas_bits()));
            };
            if t.iova >> s2.ia_bits != 0 {
                return Err(Fault {
                    cause: Cause::Translation,
                    s2: true,
                    class: evt::CLASS_IN,
                    ipa: t.iova,
                    fetch: 0,
                    record: s2.record,
                });
            }
            let (pa, perm, _) = self.s2_lookup(&s2, t.iova, evt::CLASS_IN)?;
            // Stage-2 permissions, including S2 XN for instruction fetches.
            return match perm_check(perm, t) {
                Ok(()) => Ok(pa),
                Err(_) => Err(Fault {
                    cause: Cause::Permission,
                    s2: true,
                    class: evt::CLASS_IN,
                    ipa: t.iova,
                    fetch: 0,
                    record: s2.record,
                }),
            };
        }
        let cdc = match self.get_cd(t, plan, ssid) {
            Ok(c) => c,
            Err(mut f) => {
                if f.s2 {
                    f.class = evt::CLASS_CD;
                }
                return Err(f);
            }
        };
        let va = t.iova;
        let region = ((va >> 55) & 1) as usize;
        let s1f = |cause| Fault {
            cause,
            s2: false,
            class: evt::CLASS_IN,
            ipa: 0,
            fetch: 0,
            record: cdc.record,
        };
        let Some(tt) = cdc.tt[region] else {
            return Err(s1f(Cause::Translation));
        };
        let top = if cdc.tbi[region] { 56 } else { 64 };
        let hi = if top == 64 {
            va >> tt.ia_bits
        } else {
            (va & ((1u64 << 56) - 1)) >> tt.ia_bits
        };
        let want = if region == 1 {
            (1u64 << (top - tt.ia_bits)) - 1
        } else {
            0
        };
        if hi != want {
            return Err(s1f(Cause::Translation));
        }
        let ia = va & ((1u64 << tt.ia_bits) - 1);
        let cva = canon(va);
        let tg = tag(plan.world, plan.vmid, u32::from(cdc.asid));
        if let Some((k, e)) = self.caches.tlb_lookup(tg, cva) {
            self.last_perm = e.perm;
            let pa = e.pa | (cva & ((1u64 << k.shift) - 1));
            return match perm_check(e.perm, t) {
                Ok(()) => Ok(pa),
                Err(s2) => Err(Fault {
                    cause: Cause::Permission,
                    s2,
                    class: evt::CLASS_IN,
                    ipa: e.ipa | (cva & ((1u64 << k.shift) - 1)),
                    fetch: 0,
                    record: if s2 { e.record_s2 } else { e.record_s1 },
                }),
            };
        }
        let req = WalkReq {
            stage2: false,
            ttb: tt.ttb,
            ia,
            ia_bits: tt.ia_bits,
            gran: tt.gran,
            start: tt.start,
            ps_bits: cdc.ips_bits,
            affd: cdc.affd,
            had: tt.had,
            tag: tg,
            key: cva,
        };
        // In nested mode the TTB itself is an IPA, translated per descriptor fetch.
        let nest = plan.s2;
        let w = self.walk(&req, nest.as_ref()).map_err(|e| match e {
            WalkErr::Translation => s1f(Cause::Translation),
            WalkErr::AddrSize => s1f(Cause::AddrSize),
            WalkErr::Access => s1f(Cause::Access),
            WalkErr::Eabt(fa) => Fault {
                cause: Cause::WalkEabt,
                s2: false,
                class: evt::CLASS_TT,
                ipa: 0,
                fetch: fa,
                record: true,
            },
            WalkErr::Nested(f) => f,
        })?;
        let mut perm = s1_perm(w.desc, w.attrs, cdc.wxn);
        let global = w.desc & pte::NG == 0;
        let mut shift = w.shift;
        let ipa_out = w.out;
        let mut pa = w.out;
        let mut record_s2 = false;
        if let Some(s2) = nest {
            // Output IPA through stage 2 (CLASS = IN); the entry is the smaller of both sizes
            // and carries both stages' permissions (checked below, S2 faults with S2 = 1).
            let (opa, s2perm, s2shift) = self.s2_lookup(&s2, ipa_out, evt::CLASS_IN)?;
            pa = opa;
            shift = shift.min(s2shift);
            perm = (perm & S1_ALL) | (s2perm & S2_ALL);
            record_s2 = s2.record;
        }
        if self.smmu_on() {
            let mask = (1u64 << shift) - 1;
            let asid = if global || cdc.global_only {
                GLOBAL
            } else {
                u32::from(cdc.asid)
            };
            let key = TlbKey {
                tag: tag(plan.world, plan.vmid, asid),
                page: cva >> shift,
                shift: shift as u8,
            };
            let e = TlbEntry {
                pa: pa & !mask,
                perm,
                level: w.level,
                ipa: ipa_out & !mask,
                nested: nest.is_some(),
                record_s1: cdc.record,
                record_s2,
            };
            self.caches.tlb_insert(key, e, &mut self.rng);
        }
        match perm_check(perm, t) {
            Ok(()) => Ok(pa),
            Err(s2) => Err(Fault {
                cause: Cause::Permission,
                s2,
                class: evt::CLASS_IN,
                ipa: ipa_out,
                fetch: 0,
                record: if s2 { record_s2 } else { cdc.record },
            }),
        }
    }

    /// The raw STE image the config cache holds for `sid`, if any (valid or not).
    pub fn cached_ste(&self, sid: u32) -> Option<[u64; 8]> {
        self.caches.ste.get(&sid).map(|e| e.raw)
    }

    /// The raw CD image the config cache holds for (`sid`, `ssid`), if any.
    pub fn cached_cd(&self, sid: u32, ssid: u32) -> Option<[u64; 8]> {
        self.caches.cd.get(&(sid, ssid)).map(|e| e.raw)
    }

    /// The L1STD the config cache holds for L1 index `index`, if any.
    pub fn cached_l1std(&self, index: u32) -> Option<u64> {
        self.caches.l1.get(&index).copied()
    }

    /// The L1CD the config cache holds for `sid` covering `ssid`, if any.
    pub fn cached_l1cd(&self, sid: u32, ssid: u32) -> Option<u64> {
        self.caches
            .l1cd
            .iter()
            .find(|((s, base), (split, _))| *s == sid && ssid >> split == base >> split)
            .map(|(_, (_, d))| *d)
    }

    /// Number of TLB entries.
    pub fn tlb_len(&self) -> usize {
        self.caches.tlb.len()
    }

    /// A snapshot of the TLB (sorted, for tests and property checks).
    pub fn tlb_snapshot(&self) -> Vec<TlbView> {
        let mut v: Vec<TlbView> = self
            .caches
            .tlb
            .iter()
            .map(|(k, e)| {
                let asid = crate::cache::tag_asid(k.tag);
                TlbView {
                    stage2_only: crate::cache::tag_world(k.tag) == W_S2,
                    el2: crate::cache::tag_world(k.tag) == W_EL2,
                    vmid: crate::cache::tag_vmid(k.tag),
                    asid: if asid == GLOBAL {
                        None
                    } else {
                        Some(asid as u16)
                    },
                    va: k.page << k.shift,
                    size_log2: k.shift,
                    pa: e.pa,
                    level: e.level,
                }
            })
            .collect();
        v.sort_by_key(|t| (t.va, t.size_log2, t.asid, t.vmid));
        v
    }

    /// Number of walk-cache entries.
    pub fn walk_cache_len(&self) -> usize {
        self.caches.walk.len()
    }

    /// Decodes an STE image against this model's profile: `true` if it is valid and legal
    /// (`SteIllegal` false) or a silent-abort config. Never panics on any bytes (S3).
    pub fn ste_is_legal(&self, raw: &[u64; 8]) -> bool {
        decode_ste(&self.prof, raw) != SteDec::Illegal
    }

    /// Decodes a CD image (with STE.S1STALLD = 0): `true` if `CdIllegal` is false (S4).
    pub fn cd_is_legal(&self, raw: &[u64; 8]) -> bool {
        decode_cd(&self.prof, false, false, raw).is_some()
    }

    /// The input-address size in bits a legal CD's TTB0 region decodes to, and its IPS in bits
    /// after capping to the OAS (S4).
    pub fn cd_geometry(&self, raw: &[u64; 8]) -> Option<(u32, u32)> {
        let c = decode_cd(&self.prof, false, false, raw)?;
        Some((c.tt[0].map_or(0, |t| t.ia_bits), c.ips_bits))
    }

    pub(crate) fn seed_power_on(&mut self) {
        let crate::cache::PowerOn::Stale { sids, asids, iovas } = self.cfg.cache.power_on.clone()
        else {
            return;
        };
        let ev = self.caches.ev;
        for sid in sids {
            let mut raw = [0u64; 8];
            ste::V.set(&mut raw, 1);
            ste::CONFIG.set(&mut raw, ste::CONFIG_BYPASS);
            let dec = decode_ste(&self.prof, &raw);
            self.caches
                .ste
                .insert(sid, SteEntry { raw, dec }, ev, &mut self.rng);
        }
        for a in &asids {
            for va in &iovas {
                let key = TlbKey {
                    tag: tag(W_EL1, 0, u32::from(*a)),
                    page: canon(*va) >> 12,
                    shift: 12,
                };
                // Bogus output addresses far above any RAM the model is usually given.
                let pa = (1u64 << 43) | (self.rng.next_u64() & 0x0000_00FF_FFFF_F000);
                let e = TlbEntry {
                    pa,
                    perm: S1_ALL | S2_ALL,
                    level: 3,
                    ipa: 0,
                    nested: false,
                    record_s1: true,
                    record_s2: true,
                };
                self.caches.tlb_insert(key, e, &mut self.rng);
            }
        }
    }
}

//! Command-queue consumption and every command's effect (§4, §7.1).

use crate::cache::{tag_asid, tag_vmid, tag_world, TlbKey, GLOBAL, W_EL1, W_EL2, W_S2};
use crate::decode::{canon, decode_ste};
use crate::fields::{cmd, reg};
use crate::mem::PAGE;
use crate::model::Model;

/// An invalidation range: [lo, hi] inclusive in canonical address space, optional TTL level.
#[derive(Clone, Copy, Debug)]
struct Range {
    lo: u64,
    hi: u64,
    ttl: Option<u8>,
    all_sizes_containing: bool,
}

impl Range {
    fn hits(&self, page: u64, shift: u8, level: u8) -> bool {
        let s = page.wrapping_shl(u32::from(shift));
        let e = s.wrapping_add((1u64 << shift) - 1);
        if let Some(l) = self.ttl {
            if l != level {
                return false;
            }
        }
        s <= self.hi && e >= self.lo
    }
}

impl Model {
    pub(crate) fn cmdq_can_run(&self) -> bool {
        self.cr0ack & reg::CR0_CMDQEN != 0
            && !self.gerror_active(reg::GERROR_CMDQ_ERR)
            && !self.cmdq.inconsistent
            && !self.cmdq.empty()
    }

    /// Consumes at most `budget` commands (bounded by the queue size: no unbounded work).
    pub(crate) fn process_cmdq(&mut self, budget: usize) {
        let cap = (1usize << self.cmdq.log2()).min(budget);
        for _ in 0..cap {
            if !self.cmdq_can_run() {
                return;
            }
            let q = self.cmdq;
            let addr = q.slot(q.cons);
            let Ok(w) = self.mem.dev_read_pair(addr, self.cfg.smmu_encrypted_attr) else {
                self.cmd_error(cmd::CERROR_ABT);
                return;
            };
            match self.exec(w) {
                Ok(()) => {
                    self.signals.commands += 1;
                    let cons = self.cmdq.cons;
                    let err = cons & reg::CMDQ_CONS_ERR.mask() as u32;
                    self.cmdq.cons =
                        (self.cmdq.inc(cons) & !(reg::CMDQ_CONS_ERR.mask() as u32)) | err;
                }
                Err(code) => {
                    self.cmd_error(code);
                    return;
                }
            }
        }
    }

    fn cmd_error(&mut self, code: u32) {
        // §7.1: CONS.ERR is written before GERROR.CMDQ_ERR is activated; CONS stays at the command.
        let cons = self.cmdq.cons & !(reg::CMDQ_CONS_ERR.mask() as u32);
        self.cmdq.cons = cons | ((code << 24) & reg::CMDQ_CONS_ERR.mask() as u32);
        self.activate_gerror(reg::GERROR_CMDQ_ERR);
    }

    fn legal(&self, op: u8, w: [u64; 2]) -> bool {
        let p = &self.prof;
        let ssec = cmd::SSEC.get(&w) != 0;
        // §4.1.6: SSec = 1 on the Non-secure queue is ILLEGAL on every command that has it.
        match op {
            cmd::PREFETCH_CFG | cmd::PREFETCH_ADDR => !ssec,
            cmd::CFGI_STE | cmd::CFGI_STE_RANGE => !ssec,
            cmd::CFGI_CD | cmd::CFGI_CD_ALL => !ssec && p.s1p(),
            cmd::CFGI_VMS_PIDM => false,
            cmd::TLBI_NH_ALL | cmd::TLBI_NH_ASID => p.s1p(),
            cmd::TLBI_NH_VA | cmd::TLBI_NH_VAA => p.s1p() && self.range_legal(w),
            cmd::TLBI_EL2_ALL | cmd::TLBI_EL2_ASID => p.hyp() && p.s1p(),
            cmd::TLBI_EL2_VA | cmd::TLBI_EL2_VAA => p.hyp() && p.s1p() && self.range_legal(w),
            cmd::TLBI_S12_VMALL => p.s2p(),
            cmd::TLBI_S2_IPA => p.s2p() && self.range_legal(w),
            cmd::TLBI_NSNH_ALL | cmd::SYNC => true,
            cmd::ATC_INV => p.ats(),
            cmd::PRI_RESP => p.pri(),
            cmd::RESUME | cmd::STALL_TERM => p.stall_model() != 0b01 && !ssec,
            // EL3 and Secure TLBIs, DPT and everything else: ILL on the Non-secure queue.
            _ => false,
        }
    }

    /// §4.4.1.1: with RIL, a TG ≠ 0 command must describe a range or a TTL hint:
    /// NUM = SCALE = TTL = 0 is Reserved, and TG = 16K with TTL = 0b01 is Reserved without
    /// IDR5.DS; both raise CERROR_ILL. Without RIL the fields are RES0 (not checked, §4.1.3).
    fn range_legal(&self, w: [u64; 2]) -> bool {
        let tg = cmd::TG.get(&w);
        if tg == 0 || !self.prof.ril() {
            return true;
        }
        let (num, ttl) = (cmd::NUM.get(&w), cmd::TTL.get(&w));
        if num == 0 && self.scale(w) == 0 && ttl == 0 {
            return false;
        }
        !(tg == 0b10 && ttl == 0b01 && self.prof.idr5(reg::IDR5_DS) == 0)
    }

    /// The effective SCALE (§4.4.1.1): 5 bits ([24:20], bit 25 RES0) without IDR5.DS; 6 bits
    /// with values above 39 treated as 39 with it.
    fn scale(&self, w: [u64; 2]) -> u64 {
        let raw = cmd::SCALE.get(&w);
        if self.prof.idr5(reg::IDR5_DS) == 0 {
            raw & 0x1F
        } else {
            raw.min(39)
        }
    }

    fn range_of(&self, w: [u64; 2]) -> Range {
        let addr = canon(cmd::ADDR.get(&w) << 12);
        let tg = cmd::TG.get(&w);
        if tg == 0 || !self.prof.ril() {
            return Range {
                lo: addr,
                hi: addr,
                ttl: None,
                all_sizes_containing: true,
            };
        }
        let gshift = match tg {
            1 => 12,
            2 => 14,
            _ => 16,
        };
        // Range = (NUM + 1) * 2^SCALE granules: at most 32 * 2^39 * 64 KiB = 2^60 bytes, so the
        // arithmetic cannot overflow; the top is clamped (the address does not wrap, §4.4.1.1).
        let num = cmd::NUM.get(&w);
        let len = (num + 1) << self.scale(w) << gshift;
        let lo = addr & !((1u64 << gshift) - 1);
        let hi = lo.saturating_add(len - 1);
        let ttl = match cmd::TTL.get(&w) {
            0 => None,
            l => Some(l as u8),
        };
        Range {
            lo,
            hi,
            ttl,
            all_sizes_containing: false,
        }
    }

    fn note_unsynced(&mut self, page: u64, what: &'static str) {
        if self.unsynced.len() < 4096 {
            self.unsynced.insert(page & !(PAGE - 1), what);
        }
    }

    /// Removes TLB entries matching `pred`; with `!leaf` also walk-cache entries matching `wpred`.
    fn tlb_remove(
        &mut self,
        pred: impl Fn(&TlbKey, u8) -> bool,
        leaf: bool,
        wpred: impl Fn(u64, bool, u64, u8) -> bool,
    ) {
        let gone = self.caches.tlb.retain(|k, e| !pred(k, e.level));
        for (_, e) in gone {
            self.note_unsynced(e.pa, "page released by TLBI before CMD_SYNC");
        }
        if !leaf {
            let gone = self
                .caches
                .walk
                .retain(|k, e| !wpred(k.tag, k.stage2, k.prefix << e.span, e.span));
            for (_, e) in gone {
                if self.unsynced.len() < 4096 {
                    self.unsynced.insert(
                        e.table & !(PAGE - 1),
                        "table released by TLBI before CMD_SYNC",
                    );
                }
            }
        }
    }

    fn tlbi_va(&mut self, world: u64, vmid: u16, asid: Option<u32>, w: [u64; 2]) {
        let r = self.range_of(w);
        let leaf = cmd::LEAF.get(&w) != 0;
        // Fast path: a single address with a known ASID: probe keys directly.
        if r.all_sizes_containing && asid.is_some() && leaf {
            let a = asid.unwrap_or(0);
            let mut s = self.caches.shifts;
            while s != 0 {
                let shift = s.trailing_zeros() as u8;
                s &= s - 1;
                let globals = self.caches.globals;
                for aa in [a, GLOBAL] {
                    if aa == GLOBAL && !globals {
                        continue;
                    }
                    let k = TlbKey {
                        tag: crate::cache::tag(world, vmid, aa),
                        page: r.lo >> shift,
                        shift,
                    };
                    if let Some(e) = self.caches.tlb.remove(&k) {
                        self.note_unsynced(e.pa, "page released by TLBI before CMD_SYNC");
                    }
                }
            }
            return;
        }
        let m = move |t: u64| {
            tag_world(t) == world
                && tag_vmid(t) == vmid
                && asid.is_none_or(|a| tag_asid(t) == a || tag_asid(t) == GLOBAL)
        };
        self.tlb_remove(
            |k, level| m(k.tag) && r.hits(k.page, k.shift, level),
            leaf,
            |t, s2, start, span| {
                !s2 && m(t) && start <= r.hi && start.wrapping_add((1u64 << span) - 1) >= r.lo
            },
        );
    }

    fn tlbi_match(&mut self, f: impl Fn(u64) -> bool) {
        let gone = self.caches.tlb.retain(|k, _| !f(k.tag));
        for (_, e) in gone {
            self.note_unsynced(e.pa, "page released by TLBI before CMD_SYNC");
        }
        let gone = self.caches.walk.retain(|k, _| !f(k.tag));
        for (_, e) in gone {
            if self.unsynced.len() < 4096 {
                self.unsynced.insert(
                    e.table & !(PAGE - 1),
                    "table released by TLBI before CMD_SYNC",
                );
            }
        }
    }

    fn cfgi_ste_range(&mut self, lo: u32, hi: u32, leaf: bool) {
        if self.cfg.cache.over_invalidate {
            self.caches.ste.retain(|_, _| false);
            self.caches.cd.retain(|_, _| false);
            self.caches.l1cd.retain(|_, _| false);
            self.caches.l1.retain(|_, _| false);
        } else {
            self.caches.ste.retain(|s, _| *s < lo || *s > hi);
            self.caches.cd.retain(|(s, _), _| *s < lo || *s > hi);
            self.caches.l1cd.retain(|(s, _), _| *s < lo || *s > hi);
            if !leaf {
                let (_, _, split) = self.strtab_geometry();
                let (l1lo, l1hi) = (lo >> split, hi >> split);
                self.caches.l1.retain(|i, _| *i < l1lo || *i > l1hi);
            }
        }
        self.resolve_tracked(|t| t.sid >= lo && t.sid <= hi);
    }

    /// Executes one command. `Err(code)` is a CERROR.
    fn exec(&mut self, w: [u64; 2]) -> Result<(), u32> {
        let op = cmd::OP.get(&w) as u8;
        if !self.legal(op, w) {
            return Err(cmd::CERROR_ILL);
        }
        let sid = cmd::SID.get(&w) as u32;
        let vmid = if self.prof.s2p() {
            cmd::VMID.get(&w) as u16
        } else {
            0
        };
        let asid = cmd::ASID.get(&w) as u32;
        let leaf = cmd::LEAF.get(&w) != 0;
        match op {
            cmd::PREFETCH_CFG => {
                // A prefetch may load the STE into the config cache (any time, §3.21.3).
                if self.cr0ack & reg::CR0_SMMUEN != 0 && self.caches.ste.get(&sid).is_none() {
                    if let Some(addr) = self.ste_addr_for_prefetch(sid) {
                        if let Ok(raw) = self.fetch_struct(addr) {
                            let dec = decode_ste(&self.prof, &raw);
                            self.cache_ste(sid, raw, dec);
                        }
                    }
                }
            }
            cmd::PREFETCH_ADDR => {}
            cmd::CFGI_STE => self.cfgi_ste_range(sid, sid, leaf),
            cmd::CFGI_STE_RANGE => {
                let range = cmd::RANGE.get(&w) as u32;
                if range >= 31 {
                    self.cfgi_ste_range(0, u32::MAX, false);
                } else {
                    let n = 1u64 << (range + 1);
                    let lo = (u64::from(sid) & !(n - 1)) as u32;
                    let hi = (u64::from(lo) + n - 1).min(u64::from(u32::MAX)) as u32;
                    self.cfgi_ste_range(lo, hi, false);
                }
            }
            cmd::CFGI_CD => {
                let ssid = cmd::SSID.get(&w) as u32;
                if self.cfg.cache.over_invalidate {
                    self.caches.cd.retain(|_, _| false);
                    self.caches.l1cd.retain(|_, _| false);
                } else {
                    self.caches.cd.remove(&(sid, ssid));
                    if !leaf {
                        // §4.3.3: Leaf = 0 also invalidates the L1CD covering the SubstreamID.
                        self.caches.l1cd.retain(|(s, base), (split, _)| {
                            *s != sid || ssid >> *split != base >> *split
                        });
                    }
                }
                self.resolve_tracked(|t| t.is_cd && t.sid == sid && t.ssid == ssid);
            }
            cmd::CFGI_CD_ALL => {
                self.caches.cd.retain(|(s, _), _| *s != sid);
                self.caches.l1cd.retain(|(s, _), _| *s != sid);
                self.resolve_tracked(|t| t.is_cd && t.sid == sid);
            }
            cmd::TLBI_NH_ALL => self.tlbi_match(|t| tag_world(t) == W_EL1 && tag_vmid(t) == vmid),
            cmd::TLBI_NH_ASID => self.tlbi_match(|t| {
                tag_world(t) == W_EL1 && tag_vmid(t) == vmid && tag_asid(t) == asid
            }),
            cmd::TLBI_NH_VA => self.tlbi_va(W_EL1, vmid, Some(asid), w),
            cmd::TLBI_NH_VAA => self.tlbi_va(W_EL1, vmid, None, w),
            cmd::TLBI_EL2_ALL => self.tlbi_match(|t| tag_world(t) == W_EL2),
            cmd::TLBI_EL2_ASID => self.tlbi_match(|t| tag_world(t) == W_EL2 && tag_asid(t) == asid),
            cmd::TLBI_EL2_VA => self.tlbi_va(W_EL2, 0, Some(asid), w),
            cmd::TLBI_EL2_VAA => self.tlbi_va(W_EL2, 0, None, w),
            cmd::TLBI_S12_VMALL => {
                self.tlbi_match(|t| {
                    (tag_world(t) == W_EL1 || tag_world(t) == W_S2) && tag_vmid(t) == vmid
                });
            }
            cmd::TLBI_S2_IPA => {
                let r = self.range_of(w);
                let combined = self.cfg.cache.combined_tlb;
                let ipa_lo = r.lo & ((1u64 << 56) - 1);
                let ipa_hi = r.hi & ((1u64 << 56) - 1);
                let gone = self.caches.tlb.retain(|k, e| {
                    let s2only = tag_world(k.tag) == W_S2 && tag_vmid(k.tag) == vmid;
                    let size = (1u64 << k.shift) - 1;
                    let hit_s2 = s2only && r.hits(k.page, k.shift, e.level);
                    let hit_nested = !combined
                        && e.nested
                        && tag_vmid(k.tag) == vmid
                        && e.ipa <= ipa_hi
                        && e.ipa.wrapping_add(size) >= ipa_lo;
                    !(hit_s2 || hit_nested)
                });
                for (_, e) in gone {
                    self.note_unsynced(e.pa, "page released by TLBI before CMD_SYNC");
                }
                if !leaf {
                    self.caches
                        .walk
                        .retain(|k, _| !(k.stage2 && tag_vmid(k.tag) == vmid));
                }
            }
            cmd::TLBI_NSNH_ALL => self.tlbi_match(|t| tag_world(t) != W_EL2),
            cmd::ATC_INV => {
                let ssid = (cmd::SSV.get(&w) != 0).then(|| cmd::SSID.get(&w) as u32);
                let size = (w[1] & 0x3F) as u8;
                self.signals.atc_inv.push((sid, ssid, w[1] & !0xFFF, size));
                // §4.5.1: IGNORED while SMMUEN = 0; completes at the next CMD_SYNC.
                if self.cr0ack & reg::CR0_SMMUEN != 0 {
                    self.atc_inv(sid, ssid, w[1] & !0xFFF, size);
                }
                if self.inject_atc_timeout {
                    self.atc_timeout_pending = true;
                }
            }
            cmd::PRI_RESP => {
                self.signals.pri_resp.push((sid, (w[1] & 0x1FF) as u32));
            }
            cmd::RESUME | cmd::STALL_TERM => {}
            cmd::SYNC => return self.sync(w),
            _ => return Err(cmd::CERROR_ILL),
        }
        Ok(())
    }

    fn ste_addr_for_prefetch(&self, sid: u32) -> Option<u64> {
        let (linear, log2, split) = self.strtab_geometry();
        if u64::from(sid) >> log2 != 0 {
            return None;
        }
        let base = self.strtab_addr();
        if linear {
            return Some(base + 64 * u64::from(sid));
        }
        let l1 = self.fetch64(base + 8 * u64::from(sid >> split)).ok()?;
        let span = crate::fields::l1std::SPAN.of(l1) as u32;
        let idx = u64::from(sid) & ((1u64 << split) - 1);
        if span == 0 || span > 11 || span > split + 1 || idx >> (span - 1) != 0 {
            return None;
        }
        let l2 = (crate::fields::l1std::L2PTR.of(l1) << 6) & !((1u64 << (6 + span - 1)) - 1);
        Some(l2 + 64 * idx)
    }

    fn sync(&mut self, w: [u64; 2]) -> Result<(), u32> {
        let cs = cmd::SYNC_CS.get(&w);
        if cs == 0b11 {
            return Err(cmd::CERROR_ILL);
        }
        if self.atc_timeout_pending {
            self.atc_timeout_pending = false;
            self.inject_atc_timeout = false;
            return Err(cmd::CERROR_ATC_INV_SYNC);
        }
        // Completion: every earlier invalidation is now guaranteed (Q5), ATC_INV included.
        self.unsynced.clear();
        self.atc_complete();
        self.signals.syncs += 1;
        match cs {
            0b01 => {
                let addr = (cmd::SYNC_MSIADDR.get(&w) << 2) & ((1u64 << self.prof.oas_bits()) - 1);
                if self.prof.msi() && addr != 0 {
                    let data = cmd::SYNC_MSIDATA.get(&w) as u32;
                    if self.mem.dev_write(addr, &data.to_le_bytes()).is_ok() {
                        self.signals.msi_writes.push((addr, data));
                    } else {
                        self.activate_gerror(reg::GERROR_MSI_CMDQ_ABT_ERR);
                    }
                } else {
                    self.signals.sync_irq += 1;
                }
            }
            0b10 if self.prof.sev() => self.signals.sev += 1,
            _ => {}
        }
        Ok(())
    }
}

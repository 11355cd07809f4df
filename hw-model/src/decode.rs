//! Structure decoding: the model's own reading of §5.2 `SteIllegal` and §5.4 `CdIllegal`, the
//! decoded STE and CD the caches hold, VMSAv8-64 geometry, and the used-bits rule of the
//! torn-fetch check. Nothing here touches memory or registers.

use crate::fields::{cd, reg, ste};
use crate::profile::{ps_bits, Profile};

/// TLB worlds: StreamWorld NS-EL1, NS-EL2 (with or without E2H), stage 2 only.
pub(crate) const W_EL1: u64 = 0;
pub(crate) const W_EL2: u64 = 1;
pub(crate) const W_S2: u64 = 2;

/// Decoded stage-2 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct S2Cfg {
    pub(crate) ttb: u64,
    pub(crate) ia_bits: u32,
    pub(crate) gran: u32,
    pub(crate) start: u8,
    pub(crate) ps_bits: u32,
    pub(crate) affd: bool,
    pub(crate) record: bool,
    pub(crate) vmid: u16,
}

/// Decoded translating STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StePlan {
    pub(crate) s1: bool,
    pub(crate) s2: Option<S2Cfg>,
    pub(crate) s1ctx: u64,
    pub(crate) s1fmt: u8,
    pub(crate) s1cdmax: u8,
    pub(crate) s1dss: u8,
    pub(crate) s1stalld: bool,
    pub(crate) world: u64,
    pub(crate) vmid: u16,
    /// STE.EATS as written (0 when IDR0.ATS = 0, where it is IGNORED).
    pub(crate) eats: u8,
}

/// Outcome of STE decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SteDec {
    Illegal,
    Abort,
    Bypass,
    Xlate(StePlan),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct SteEntry {
    pub(crate) raw: [u64; 8],
    pub(crate) dec: SteDec,
}

/// One translation-table region of a CD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TtCfg {
    pub(crate) ttb: u64,
    pub(crate) ia_bits: u32,
    pub(crate) gran: u32,
    pub(crate) start: u8,
    pub(crate) had: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CdCfg {
    pub(crate) asid: u16,
    /// Entries are not ASID-tagged (StreamWorld NS-EL2 without E2H): cached as global.
    pub(crate) global_only: bool,
    pub(crate) tt: [Option<TtCfg>; 2],
    pub(crate) tbi: [bool; 2],
    pub(crate) ips_bits: u32,
    pub(crate) affd: bool,
    pub(crate) wxn: bool,
    pub(crate) record: bool,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct CdEntry {
    pub(crate) raw: [u64; 8],
    pub(crate) dec: Option<CdCfg>,
}

/// Granule size shift of a TG0 / S2TG encoding (0 4K, 1 64K, 2 16K).
pub(crate) fn tg0_shift(tg: u64) -> Option<u32> {
    match tg {
        0 => Some(12),
        1 => Some(16),
        2 => Some(14),
        _ => None,
    }
}

/// Granule size shift of a TG1 encoding (1 16K, 2 4K, 3 64K).
pub(crate) fn tg1_shift(tg: u64) -> Option<u32> {
    match tg {
        1 => Some(14),
        2 => Some(12),
        3 => Some(16),
        _ => None,
    }
}

/// Shift of the input address resolved by one entry at `level` (VMSAv8-64).
#[inline]
pub(crate) fn level_shift(gran: u32, level: u8) -> u32 {
    gran + (gran - 3) * (3 - u32::from(level))
}

/// Stage-1 start level for an input size.
pub(crate) fn s1_start(gran: u32, ia_bits: u32) -> u8 {
    let mut l = 3u8;
    while l > 0 && level_shift(gran, l) + (gran - 3) < ia_bits {
        l -= 1;
    }
    l
}

/// Levels at which a block descriptor is permitted without 52-bit support.
pub(crate) fn block_ok(gran: u32, level: u8) -> bool {
    match gran {
        12 => level == 1 || level == 2,
        _ => level == 2,
    }
}

pub(crate) fn ias(p: &Profile) -> u32 {
    let oas = p.oas_bits();
    if p.idr0(reg::IDR0_TTF) & 1 != 0 {
        oas.max(40)
    } else {
        oas
    }
}

/// The largest legal TxSZ for a granule (§5.2 S2T0SZ, §5.4 T0SZ): 39 without small translation
/// tables; with IDR3.STT, 48 for 4 KiB and 16 KiB granules and 47 for 64 KiB.
pub(crate) fn txsz_max(p: &Profile, gran: u32) -> u32 {
    match (p.idr3(reg::IDR3_STT) != 0, gran) {
        (false, _) => 39,
        (true, 16) => 47,
        (true, _) => 48,
    }
}

/// Decodes an STE against the profile: the model's own reading of `SteIllegal` (§5.2).
pub(crate) fn decode_ste(p: &Profile, w: &[u64; 8]) -> SteDec {
    if ste::V.get(w) == 0 {
        return SteDec::Illegal;
    }
    let config = ste::CONFIG.get(w);
    if config & 0b100 == 0 {
        return SteDec::Abort;
    }
    if config == ste::CONFIG_BYPASS {
        return SteDec::Bypass;
    }
    let s1 = config & 1 != 0;
    let s2 = config & 2 != 0;
    if (s1 && !p.s1p()) || (s2 && !p.s2p()) {
        return SteDec::Illegal;
    }
    let stall = p.stall_model();
    // ATS configuration (§5.2 EATS).
    let eats = ste::EATS.get(w);
    if p.ats() {
        let s2s = ste::S2S.get(w) != 0;
        if eats == 0b10 && (config != ste::CONFIG_NESTED || s2s || p.idr0(reg::IDR0_NS1ATS) != 0) {
            return SteDec::Illegal;
        }
        if eats == 0b01 && s2s && s2 {
            return SteDec::Illegal;
        }
    }
    // STRW (§5.2, IgnoreSTESTRW): used only for stage-1-only STEs on an SMMU with S1P and HYP;
    // otherwise IGNORED and the StreamWorld is NS-EL1. When used, 0b01 and 0b11 are reserved
    // (ILLEGAL) and 0b10 selects NS-EL2 (or NS-EL2-E2H with CR2.E2H).
    let strw = ste::STRW.get(w);
    let strw_used = p.s1p() && p.hyp() && config == ste::CONFIG_S1;
    if strw_used && strw & 1 != 0 {
        return SteDec::Illegal;
    }
    let el2 = strw_used && strw == 0b10;
    let raw_cdmax = ste::S1CDMAX.get(w) as u8;
    let s1fmt = ste::S1FMT.get(w) as u8;
    let ssidsize = p.idr1(reg::IDR1_SSIDSIZE) as u8;
    // S1CDMax is IGNORED (behaves as 0) without substream support (§5.2).
    let s1cdmax = if ssidsize == 0 { 0 } else { raw_cdmax };
    let s1ctx = ste::S1CTXPTR.get(w) << 6;
    let s1stalld = ste::S1STALLD.get(w) != 0;
    if s1 {
        if s1stalld && stall != 0b00 {
            return SteDec::Illegal;
        }
        if ssidsize != 0 && s1cdmax > ssidsize {
            return SteDec::Illegal;
        }
        if ssidsize != 0
            && s1cdmax != 0
            && p.idr0(reg::IDR0_CD2L) == 0
            && (s1fmt == 1 || s1fmt == 2)
        {
            return SteDec::Illegal;
        }
        let range = if s2 { ias(p) } else { p.oas_bits() };
        if s1ctx >> range != 0 {
            return SteDec::Illegal;
        }
    }
    let mut s2cfg = None;
    if s2 {
        let s2s = ste::S2S.get(w) != 0;
        let stall_bad = match stall {
            0b01 => s2s,
            0b10 => !s2s,
            _ => false,
        };
        if stall_bad {
            return SteDec::Illegal;
        }
        // §5.2 S2AA64: selecting a format IDR0.TTF does not implement is ILLEGAL. Only
        // VMSAv8-64 stage 2 is modelled, so S2AA64 = 0 (VMSAv8-32 LPAE) is refused too (a
        // documented limit when TTF[0] = 1).
        if ste::S2AA64.get(w) == 0 || p.idr0(reg::IDR0_TTF) & 0b10 == 0 {
            return SteDec::Illegal;
        }
        let httu = p.idr0(reg::IDR0_HTTU);
        let (ha, hd) = (ste::S2HA.get(w) != 0, ste::S2HD.get(w) != 0);
        if ((ha || hd) && httu == 0) || (hd && httu == 1) {
            return SteDec::Illegal;
        }
        let Some(gran) = tg0_shift(ste::S2TG.get(w)) else {
            return SteDec::Illegal;
        };
        if !p.gran_ok(gran) {
            return SteDec::Illegal;
        }
        let ps = ps_bits(ste::S2PS.get(w)).min(p.oas_bits());
        let ttb = ste::S2TTB.get(w) << 4;
        if ttb >> ps != 0 {
            return SteDec::Illegal;
        }
        let t0sz = ste::S2T0SZ.get(w) as u32;
        let txsz_min = 16u32.max(64 - ias(p));
        let txsz_max = txsz_max(p, gran);
        if t0sz < txsz_min || t0sz > txsz_max {
            return SteDec::Illegal;
        }
        let ia_bits = 64 - t0sz;
        let sl0 = ste::S2SL0.get(w);
        let start = match (gran, sl0) {
            (_, 3) => return SteDec::Illegal,
            (12, s) => 2 - s as u8,
            (_, s) => 3 - s as u8,
        };
        let sh = level_shift(gran, start);
        if ia_bits <= sh || ia_bits - sh > (gran - 3) + 4 {
            return SteDec::Illegal;
        }
        let endi = ste::S2ENDI.get(w) != 0;
        let te = p.idr0(reg::IDR0_TTENDIAN);
        if (te == 0b10 && endi) || (te == 0b11 && !endi) {
            return SteDec::Illegal;
        }
        let vmid = ste::S2VMID.get(w) as u16;
        let bits = ia_bits - sh;
        let bytes = 8u64 << bits;
        s2cfg = Some(S2Cfg {
            ttb: ttb & !(bytes.max(64) - 1),
            ia_bits,
            gran,
            start,
            ps_bits: ps,
            affd: ste::S2AFFD.get(w) != 0,
            record: ste::S2R.get(w) != 0,
            vmid,
        });
    }
    // S2VMID tags stage-1 entries too when stage 2 exists and the StreamWorld is EL1 (§5.2
    // S2VMID); wherever it is used, bits [15:8] must be 0 without VMID16.
    let vmid_used = s2 || (s1 && p.s2p() && !el2);
    let vmid = if vmid_used {
        ste::S2VMID.get(w) as u16
    } else {
        0
    };
    if vmid_used && p.idr0(reg::IDR0_VMID16) == 0 && vmid >> 8 != 0 {
        return SteDec::Illegal;
    }
    SteDec::Xlate(StePlan {
        s1,
        s2: s2cfg,
        s1ctx,
        s1fmt,
        s1cdmax,
        s1dss: ste::S1DSS.get(w) as u8,
        s1stalld,
        world: if el2 { W_EL2 } else { W_EL1 },
        vmid,
        eats: if p.ats() { eats as u8 } else { 0 },
    })
}

/// Decodes a CD: the model's own reading of `CdIllegal` (§5.4). `None` = ILLEGAL.
/// `el2_plain` is the StreamWorld NS-EL2 (STRW = EL2 with CR2.E2H = 0): there EPD0 and EPD1
/// are IGNORED with an effective value of 0, the TTB1 fields are RES0 (one VA range, through
/// TTB0) and the ASID is IGNORED (§5.4 EPD0, TTB1, ASID).
pub(crate) fn decode_cd(
    p: &Profile,
    s1stalld: bool,
    el2_plain: bool,
    w: &[u64; 8],
) -> Option<CdCfg> {
    if cd::V.get(w) == 0 {
        return None;
    }
    let s = cd::S.get(w) != 0;
    let stall = p.stall_model();
    let stall_bad = match stall {
        0b01 => s,
        0b10 => !s,
        _ => false,
    };
    if (s1stalld && s) || stall_bad {
        return None;
    }
    if p.idr0(reg::IDR0_TERM_MODEL) != 0 && cd::A.get(w) == 0 {
        return None;
    }
    // §5.4 AA64: VMSAv8-64 needs IDR0.TTF[1]; VMSAv8-32 LPAE is not modelled (a limit).
    if cd::AA64.get(w) == 0 || p.idr0(reg::IDR0_TTF) & 0b10 == 0 {
        return None;
    }
    let httu = p.idr0(reg::IDR0_HTTU);
    let (ha, hd) = (cd::HA.get(w) != 0, cd::HD.get(w) != 0);
    if ((ha || hd) && httu == 0) || (hd && httu == 1) {
        return None;
    }
    // Which TTBx regions exist: under NS-EL2 only TTB0, whatever EPD0/EPD1 say.
    let epd = if el2_plain {
        [false, true]
    } else {
        [cd::EPD0.get(w) != 0, cd::EPD1.get(w) != 0]
    };
    let endi = cd::ENDI.get(w) != 0;
    let te = p.idr0(reg::IDR0_TTENDIAN);
    if (!epd[0] || !epd[1]) && ((te == 0b10 && endi) || (te == 0b11 && !endi)) {
        return None;
    }
    // IPS 6 and 7 are legal and behave as the implemented OAS (S4).
    let ips = ps_bits(cd::IPS.get(w)).min(p.oas_bits());
    let asid = if el2_plain { 0 } else { cd::ASID.get(w) as u16 };
    if p.idr0(reg::IDR0_ASID16) == 0 && asid >> 8 != 0 {
        return None;
    }
    let had_ok = p.idr3(reg::IDR3_HAD) != 0;
    let mut tt = [None, None];
    for r in 0..2 {
        if epd[r] {
            continue;
        }
        let (tsz, gran, ttb, had) = if r == 0 {
            (
                cd::T0SZ.get(w) as u32,
                tg0_shift(cd::TG0.get(w)),
                cd::TTB0.get(w) << 4,
                cd::HAD0.get(w) != 0,
            )
        } else {
            (
                cd::T1SZ.get(w) as u32,
                tg1_shift(cd::TG1.get(w)),
                cd::TTB1.get(w) << 4,
                cd::HAD1.get(w) != 0,
            )
        };
        let gran = gran.filter(|g| p.gran_ok(*g))?;
        if !(16..=txsz_max(p, gran)).contains(&tsz) {
            return None;
        }
        if ttb >> ips != 0 {
            return None;
        }
        let ia_bits = 64 - tsz;
        let start = s1_start(gran, ia_bits);
        let bits = ia_bits - level_shift(gran, start);
        let bytes = 8u64 << bits;
        tt[r] = Some(TtCfg {
            ttb: ttb & !(bytes.max(64) - 1),
            ia_bits,
            gran,
            start,
            had: had && had_ok,
        });
    }
    Some(CdCfg {
        asid,
        global_only: el2_plain,
        tt,
        tbi: [cd::TBI0.get(w) != 0, cd::TBI1.get(w) != 0 && !el2_plain],
        ips_bits: ips,
        affd: cd::AFFD.get(w) != 0,
        wxn: cd::WXN.get(w) != 0,
        record: cd::R.get(w) != 0,
    })
}

/// Bits of an STE image that its configuration uses (the torn-fetch check's rule; the same
/// shape as Linux's used-bits rule). Public so tests can drive a hitless writer against it.
pub fn ste_used_bits(w: &[u64; 8]) -> [u64; 8] {
    ste_used(w)
}

/// Bits of an STE image that its configuration uses (for the torn-fetch check).
pub(crate) fn ste_used(w: &[u64; 8]) -> [u64; 8] {
    let mut u = [0u64; 8];
    u[0] = ste::V.mask() | ste::CONFIG.mask();
    if ste::V.get(w) == 0 {
        return u;
    }
    let config = ste::CONFIG.get(w);
    if config & 0b100 == 0 {
        return u;
    }
    // Attribute overrides, STRW and EATS apply to bypass and translating configurations.
    u[1] |= ste::EATS.mask() | ste::STRW.mask() | Field51_32;
    if config & 1 != 0 {
        u[0] |= ste::S1FMT.mask() | ste::S1CTXPTR.mask() | ste::S1CDMAX.mask();
        u[1] |= ste::S1DSS.mask()
            | ste::S1CIR.mask()
            | ste::S1COR.mask()
            | ste::S1CSH.mask()
            | ste::S1STALLD.mask();
    }
    if config & 2 != 0 {
        u[2] |= ste::S2VMID.mask() | 0x07FF_FFFF_0000_0000;
        u[3] |= ste::S2TTB.mask();
    } else if config & 1 != 0 {
        u[2] |= ste::S2VMID.mask();
    }
    u
}

#[allow(non_upper_case_globals)]
const Field51_32: u64 = 0x000F_FFFF_0000_0000;

/// Bits of a CD image that its configuration uses.
pub(crate) fn cd_used(w: &[u64; 8]) -> [u64; 8] {
    let mut u = [0u64; 8];
    u[0] = cd::V.mask();
    if cd::V.get(w) == 0 {
        return u;
    }
    u[0] = u64::MAX;
    if cd::EPD0.get(w) == 0 {
        u[1] = u64::MAX;
    }
    if cd::EPD1.get(w) == 0 {
        u[2] = u64::MAX;
    }
    // Like Linux's used-bits rule: every other word counts (MAIR, AMAIR, IMPDEF, PARTID, ...).
    for w in u.iter_mut().skip(3) {
        *w = u64::MAX;
    }
    u
}

pub(crate) fn alike(a: &[u64; 8], b: &[u64; 8], is_cd: bool) -> bool {
    let (ua, ub) = if is_cd {
        (cd_used(a), cd_used(b))
    } else {
        (ste_used(a), ste_used(b))
    };
    // Both non-translating aborts behave alike.
    let dead = |w: &[u64; 8]| {
        if is_cd {
            cd::V.get(w) == 0
        } else {
            ste::V.get(w) == 0 || ste::CONFIG.get(w) & 0b100 == 0
        }
    };
    if dead(a) && dead(b) {
        return true;
    }
    let (mut ua, mut ub) = (ua, ub);
    if !is_cd {
        // EATS moving between 0b00 and 0b01 with S2S = 0 on both sides may change in any order
        // (the device's ATS is disabled around such a change), as Linux's writer assumes.
        let safe = |w: &[u64; 8]| ste::EATS.get(w) <= 1 && ste::S2S.get(w) == 0;
        if safe(a) && safe(b) {
            ua[1] &= !ste::EATS.mask();
            ub[1] &= !ste::EATS.mask();
        }
    }
    ua == ub && (0..8).all(|i| (a[i] ^ b[i]) & ub[i] == 0)
}

pub(crate) fn is_invalid(w: &[u64; 8], is_cd: bool) -> bool {
    if is_cd {
        cd::V.get(w) == 0
    } else {
        ste::V.get(w) == 0
    }
}

/// The mask of the low `bits` bits (`bits` ≤ 64).
#[inline]
pub(crate) fn low_mask(bits: u32) -> u64 {
    u64::MAX.checked_shr(64 - bits.min(64)).unwrap_or(0)
}

/// Canonical form of a VA: bits \[63:56\] replaced by the sign extension of bit 55.
#[inline]
pub(crate) fn canon(va: u64) -> u64 {
    (((va << 8) as i64) >> 8) as u64
}

//! Stream-table and CD fetch, STE/CD legality (the model's own reading of §5.2 `SteIllegal` and
//! §5.4 `CdIllegal`), stage-1/stage-2/nested walks (VMSAv8-64), TLB use, and the torn-fetch check.

use crate::cache::{tag, TlbEntry, TlbKey, WcEntry, WcKey, GLOBAL, W_EL1, W_EL2, W_S2};
use crate::fields::{cd, evt, l1std, pte, reg, ste};
use crate::master::{Transaction, TxnResult};
use crate::model::{Event, Model, TornFetch, ViolationKind};
use crate::profile::{ps_bits, Profile};

/// Why a transaction was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// SMMUEN = 0 and GBPA.ABORT = 1 (no event, R15).
    GbpaAbort,
    /// StreamID out of range (C_BAD_STREAMID if CR2.RECINVSID, S1/S2).
    BadStreamId,
    /// L1STD or STE fetch aborted (F_STE_FETCH, S5).
    SteFetch,
    /// STE invalid or ILLEGAL (C_BAD_STE, S3).
    BadSte,
    /// STE.Config = 0b0xx: abort without an event.
    SteAbort,
    /// SubstreamID not valid for the STE (C_BAD_SUBSTREAMID).
    BadSubstreamId,
    /// No SubstreamID and S1DSS = terminate (F_STREAM_DISABLED).
    StreamDisabled,
    /// L1CD or CD fetch aborted (F_CD_FETCH).
    CdFetch,
    /// CD invalid or ILLEGAL (C_BAD_CD, S4).
    BadCd,
    /// Translation fault (F_TRANSLATION).
    Translation,
    /// Address size fault (F_ADDR_SIZE); without an event, an input above the OAS while the
    /// SMMU is disabled (§3.4) or a Translated transaction's PA above it (§3.9.1.1).
    AddrSize,
    /// Access flag fault (F_ACCESS).
    Access,
    /// Permission fault (F_PERMISSION).
    Permission,
    /// External abort on a table walk (F_WALK_EABT).
    WalkEabt,
    /// An ATS Translated transaction the SMMU does not let through (F_TRANSL_FORBIDDEN, or
    /// silently for ATS not implemented; §3.9.1.3).
    TranslForbidden,
    /// An ATS endpoint did not issue the access: its Translation Request was refused (UR or
    /// CA) or granted no permission for it (§3.9.1.2).
    AtsDenied,
}

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

#[inline]
fn micro_idx(sid: u32, iova: u64) -> usize {
    ((u64::from(sid) ^ (iova >> 12)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

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

/// Granule size shift of a TG0 / S2TG encoding (0 4K, 1 64K, 2 16K).
fn tg0_shift(tg: u64) -> Option<u32> {
    match tg {
        0 => Some(12),
        1 => Some(16),
        2 => Some(14),
        _ => None,
    }
}

/// Granule size shift of a TG1 encoding (1 16K, 2 4K, 3 64K).
fn tg1_shift(tg: u64) -> Option<u32> {
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
fn s1_start(gran: u32, ia_bits: u32) -> u8 {
    let mut l = 3u8;
    while l > 0 && level_shift(gran, l) + (gran - 3) < ia_bits {
        l -= 1;
    }
    l
}

/// Levels at which a block descriptor is permitted without 52-bit support.
fn block_ok(gran: u32, level: u8) -> bool {
    match gran {
        12 => level == 1 || level == 2,
        _ => level == 2,
    }
}

fn ias(p: &Profile) -> u32 {
    let oas = p.oas_bits();
    if p.idr0(reg::IDR0_TTF) & 1 != 0 {
        oas.max(40)
    } else {
        oas
    }
}

/// The largest legal TxSZ for a granule (§5.2 S2T0SZ, §5.4 T0SZ): 39 without small translation
/// tables; with IDR3.STT, 48 for 4 KiB and 16 KiB granules and 47 for 64 KiB.
fn txsz_max(p: &Profile, gran: u32) -> u32 {
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

fn alike(a: &[u64; 8], b: &[u64; 8], is_cd: bool) -> bool {
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

fn is_invalid(w: &[u64; 8], is_cd: bool) -> bool {
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
            Cause::GbpaAbort | Cause::SteAbort | Cause::AtsDenied => {
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
        let crate::model::PowerOn::Stale { sids, asids, iovas } = self.cfg.cache.power_on.clone()
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

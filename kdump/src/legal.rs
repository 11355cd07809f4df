//! The ILLEGAL conditions of IHI 0070 G.b §5.2 (STE) and §5.4 (CD) that depend on the ID
//! registers, the StreamWorld and the stage-2 walk geometry of DDI 0487 D8.2 (SPEC K21), and
//! the size of the starting-level table each live regime walks (SPEC K18).
//!
//! Pure functions over decoded entries, their raw words (for the few fields the decoders do
//! not model: `S2DS`, `S2SL0_2`, `HAFT`, `DS`, read through `smmu::arch`'s field
//! definitions) and [`Features`]. Every shift is bounded; nothing panics.
//!
//! Versions (SPEC K21, §5.2 `S2T0SZ`, §5.4 `T0SZ`): on SMMUv3.0 (`AIDR.ArchMinorRev` = 0)
//! an out-of-range `S2T0SZ` or `TxSZ` is CONSTRAINED UNPREDICTABLE (the SMMU may abort or
//! clamp the value); from SMMUv3.1 it is ILLEGAL. Both refuse adoption, each with its own
//! code: no driver writes either, and a clamped walk would read a start table of a size
//! nobody chose.

use smmu::arch::cd::{fields as cdf, CdConfig, Granule1, TableControls};
use smmu::arch::idr::{Features, Httu, StallModel, TableEndianness};
use smmu::arch::ste::{fields as stf, Stage2Ste};
use smmu::arch::Granule;

use crate::reason::Illegal;

/// The StreamWorld of a stage-1 stream (§5.2 `STRW` with `SMMU_CR2.E2H`; §3.17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum World {
    /// NS-EL1: `STRW` = 0b00, stage 2 or nested streams, or an SMMU without `IDR0.Hyp`.
    El1,
    /// NS-EL2 (`STRW` = 0b10, `CR2.E2H` = 0): no ASID, `EPD0`/`EPD1` effectively 0, no
    /// `TTB1`; every CD of this world is one address space.
    El2,
    /// NS-EL2-E2H (`STRW` = 0b10, `CR2.E2H` = 1): ASIDs as at EL1; AArch32 tables ILLEGAL.
    El2E2h,
}

/// A failed condition: the rule and the value of the field it names.
pub type Broken = (Illegal, u64);

fn granule_supported(f: &Features, g: Granule) -> bool {
    match g {
        Granule::Size4K => f.granule_4k,
        Granule::Size16K => f.granule_16k,
        Granule::Size64K => f.granule_64k,
    }
}

fn granule1(g: Granule1) -> Granule {
    match g {
        Granule1::Size4K => Granule::Size4K,
        Granule1::Size16K => Granule::Size16K,
        Granule1::Size64K => Granule::Size64K,
    }
}

/// SMMUv3.0 (`AIDR`): out-of-range sizes are CONSTRAINED UNPREDICTABLE, not ILLEGAL.
const fn is_v3_0(f: &Features) -> bool {
    f.arch_minor == 0
}

/// §3.4: the input address size of stage 2: `MAX(40, OAS)` with AArch32 tables, else OAS.
pub fn ias_bits(f: &Features) -> u32 {
    if f.aarch32_tables {
        f.oas_bits().max(40)
    } else {
        f.oas_bits()
    }
}

/// Whether `addr` has a bit set at or above bit `bits`.
const fn beyond(addr: u64, bits: u32) -> bool {
    match addr.checked_shr(bits) {
        Some(high) => high != 0,
        None => false,
    }
}

/// The `S2TTB` and start level of a stage-2 walk that passed [`stage2`]: `(base, bytes)` of
/// every table the initial lookup may read (DDI 0487 D8.2: 2^(IA − lo) descriptors, all
/// concatenated tables; the base's bits below that size are treated as zero, §5.2 `S2TTB`).
pub fn s2_root(s2: &Stage2Ste, words: &[u64; 8], f: &Features) -> Option<(u64, u64)> {
    let bits = s2_start_bits(s2, words, f).ok()?;
    let bytes = 8u64.checked_shl(bits)?;
    Some((s2.ttb & !(bytes - 1), bytes))
}

/// `(shift, stride)` of a granule: log2 of its size and the IA bits one level resolves.
const fn geometry(g: Granule) -> (u32, u32) {
    let shift = g.shift();
    (shift, shift - 3)
}

/// DDI 0487 D8.2 (Tables D8-19 to D8-41), §5.2 `S2SL0`: the number of IA bits the initial
/// lookup of this stage-2 configuration resolves (concatenation included), or the rule the
/// start level breaks.
fn s2_start_bits(s2: &Stage2Ste, words: &[u64; 8], f: &Features) -> Result<u32, Broken> {
    let sl0 = u64::from(s2.sl0 & 3);
    if !s2.aa64 {
        // VMSAv8-32 LPAE (VTCR.SL0): a signed 4-bit T0SZ, 4KB granule, level 2 or 1.
        let t0sz = i32::from(((s2.t0sz & 0xf) as i8) << 4 >> 4);
        let ia = 32 - t0sz;
        let level = match sl0 {
            0b00 => 2,
            0b01 => 1,
            _ => return Err((Illegal::SteS2sl0Reserved, sl0)),
        };
        let lo = 12 + 9 * (3 - level);
        let bits = ia - lo;
        return if (1..=13).contains(&bits) {
            Ok(bits as u32)
        } else {
            Err((Illegal::SteS2sl0Inconsistent, sl0))
        };
    }
    let ds = effective_s2ds(s2, words, f);
    let sl2 = ds && s2.tg == Granule::Size4K && stf::S2SL0_2.flag(words);
    let level: i32 = match (s2.tg, sl2, sl0) {
        (Granule::Size4K, false, 0b00) => 2,
        (Granule::Size4K, false, 0b01) => 1,
        (Granule::Size4K, false, 0b10) => 0,
        (Granule::Size4K, false, _) => 3,
        (Granule::Size4K, true, 0b00) => -1,
        (Granule::Size4K, true, _) => return Err((Illegal::SteS2sl0Reserved, sl0 | 4)),
        (Granule::Size16K, _, 0b00) => 3,
        (Granule::Size16K, _, 0b01) => 2,
        (Granule::Size16K, _, 0b10) => 1,
        (Granule::Size16K, _, _) => 0,
        (Granule::Size64K, _, 0b00) => 3,
        (Granule::Size64K, _, 0b01) => 2,
        (Granule::Size64K, _, 0b10) => 1,
        (Granule::Size64K, _, _) => return Err((Illegal::SteS2sl0Reserved, sl0)),
    };
    // Table D8-24: every level-3 start with the 4KB granule needs FEAT_TTST (IDR3.STT).
    if s2.tg == Granule::Size4K && level == 3 && !f.stt {
        return Err((Illegal::SteS2sl0NeedsStt, sl0));
    }
    // Table D8-30: a 16KB level-0 start needs DS.
    if s2.tg == Granule::Size16K && level == 0 && !ds {
        return Err((Illegal::SteS2sl0NeedsDs, sl0));
    }
    let (shift, stride) = geometry(s2.tg);
    let ia = 64 - i32::from(s2.t0sz & 63);
    // Tables D8-20..23, 30, 31: more than 48 IA bits with 4KB/16KB need DS.
    if ia > 48 && s2.tg != Granule::Size64K && !ds {
        return Err((Illegal::SteS2sl0NeedsDs, sl0));
    }
    let lo = shift as i32 + stride as i32 * (3 - level);
    let bits = ia - lo;
    // At least one IA bit at the start level; at most a full table plus four bits of
    // concatenation (16 tables, R JKZFY).
    if bits < 1 || bits > stride as i32 + 4 {
        return Err((Illegal::SteS2sl0Inconsistent, sl0));
    }
    Ok(bits as u32)
}

/// §5.2 `S2DS`: RES0 without `IDR5.DS`, and with the 64KB granule or AArch32 tables.
fn effective_s2ds(s2: &Stage2Ste, words: &[u64; 8], f: &Features) -> bool {
    f.ds && s2.aa64 && s2.tg != Granule::Size64K && stf::S2DS.flag(words)
}

/// §5.2: the ILLEGAL conditions of the stage-2 fields of a stage-2 or nested STE, in the
/// order of the `SteIllegal()` pseudocode: format, hardware updates, granule, `S2TTB`,
/// `S2T0SZ`, start level, endianness.
pub fn stage2(s2: &Stage2Ste, words: &[u64; 8], f: &Features) -> Result<(), Broken> {
    if (s2.aa64 && !f.aarch64_tables) || (!s2.aa64 && !f.aarch32_tables) {
        return Err((Illegal::SteS2aa64, u64::from(s2.aa64)));
    }
    if (s2.ha || s2.hd) && (f.httu == Httu::None || !s2.aa64) {
        return Err((Illegal::SteS2ha, u64::from(s2.ha)));
    }
    if s2.hd && f.httu == Httu::Access {
        return Err((Illegal::SteS2hd, 1));
    }
    if s2.aa64 && !granule_supported(f, s2.tg) {
        return Err((Illegal::SteS2tg, s2.tg.encode()));
    }
    // §5.2 S2PS: the effective size is MIN(S2PS, OAS); AArch32 tables output 40 bits.
    let pa_bits = if s2.aa64 {
        s2.ps.bits().min(f.oas_bits())
    } else {
        40
    };
    if beyond(s2.ttb, pa_bits) {
        return Err((Illegal::SteS2ttbBeyondPs, s2.ttb));
    }
    let ds = effective_s2ds(s2, words, f);
    if s2.aa64 && s2.tg != Granule::Size64K && !ds && beyond(s2.ttb, 48) {
        return Err((Illegal::SteS2ttbBeyond48, s2.ttb));
    }
    if s2.aa64 {
        let t0sz = u32::from(s2.t0sz & 63);
        let max = match (f.stt, s2.tg) {
            (true, Granule::Size64K) => 47,
            (true, _) => 48,
            (false, _) => 39,
        };
        let ias_min = 64u32.saturating_sub(ias_bits(f));
        let min = if is_v3_0(f) {
            ias_min
        } else if s2.tg == Granule::Size64K || ds {
            ias_min.max(12)
        } else {
            ias_min.max(16)
        };
        if t0sz < min || t0sz > max {
            let rule = if is_v3_0(f) {
                Illegal::SteS2t0szUnpredictable
            } else {
                Illegal::SteS2t0sz
            };
            return Err((rule, u64::from(t0sz)));
        }
    }
    s2_start_bits(s2, words, f)?;
    if !endianness_supported(f, s2.endi) {
        return Err((Illegal::SteS2endi, u64::from(s2.endi)));
    }
    Ok(())
}

fn endianness_supported(f: &Features, big: bool) -> bool {
    match f.endianness {
        TableEndianness::Little => !big,
        TableEndianness::Big => big,
        TableEndianness::Mixed | TableEndianness::Reserved => true,
    }
}

/// §5.2 `PRIVCFG`, `INSTCFG`: 0b01 is reserved where the overrides are used
/// (`IDR1.ATTR_PERMS_OVR` = 1; RES0 otherwise), as reserved `S1CSH`/`S2SH0` already refuse.
pub fn attribute_overrides(priv_cfg: u8, inst_cfg: u8, f: &Features) -> Result<(), Broken> {
    if !f.attr_perms_ovr {
        return Ok(());
    }
    if priv_cfg & 3 == 0b01 {
        return Err((Illegal::StePrivcfg, 1));
    }
    if inst_cfg & 3 == 0b01 {
        return Err((Illegal::SteInstcfg, 1));
    }
    Ok(())
}

/// What a CD's rules need from the STE that reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CdContext {
    /// The STE's StreamWorld.
    pub world: World,
    /// The STE's `S1STALLD`.
    pub stalls_disabled: bool,
}

/// §5.4 (`EPD0`, `ASID`, `TTB1`): the words as the SMMU reads them under `world`. Under
/// NS-EL2 `EPD0` and `EPD1` are IGNORED with effective value 0, the EL2 regime has no
/// `TTB1` (its fields are RES0) and `ASID` is IGNORED: the words are rewritten so that
/// [`Cd::decode`](smmu::arch::cd::Cd::decode) sees the `TTB0` half enabled, the `TTB1` half
/// out of use and ASID 0, and two EL2 CDs that differ only in what EL2 ignores decode alike.
pub fn as_seen(mut words: [u64; 8], world: World) -> [u64; 8] {
    if world == World::El2 {
        cdf::EPD0.set(&mut words, 0);
        cdf::EPD1.set(&mut words, 1);
        cdf::ASID.set(&mut words, 0);
    }
    words
}

/// §5.4: the ILLEGAL conditions of a valid CD (decoded from [`as_seen`] words) that depend
/// on the ID registers and on the STE, in the order of the `CdIllegal()` pseudocode. The
/// ASID checks of SPEC K14 are the caller's.
pub fn cd(c: &CdConfig, words: &[u64; 8], ctx: CdContext, f: &Features) -> Result<(), Broken> {
    if ctx.stalls_disabled && c.stall {
        return Err((Illegal::CdSStallsDisabled, 1));
    }
    if f.term_model_abort_only && !c.abort {
        return Err((Illegal::CdA, 0));
    }
    if (f.stall_model == StallModel::NoStall && c.stall)
        || (f.stall_model == StallModel::Forced && !c.stall)
    {
        return Err((Illegal::CdSStallModel, u64::from(c.stall)));
    }
    // ENDI: the decoder clears it when both halves are disabled (IGNORED there).
    let walks = !c.tt0.epd || !c.tt1.epd;
    if walks && !endianness_supported(f, c.endi) {
        return Err((Illegal::CdEndi, u64::from(c.endi)));
    }
    if (c.aa64 && !f.aarch64_tables) || (!c.aa64 && !f.aarch32_tables) {
        return Err((Illegal::CdAa64, u64::from(c.aa64)));
    }
    if !c.aa64 && ctx.world == World::El2E2h {
        return Err((Illegal::CdAa64E2h, 0));
    }
    if c.aa64 {
        if (c.ha || c.hd) && f.httu == Httu::None {
            return Err((Illegal::CdHa, u64::from(c.ha)));
        }
        if c.hd && f.httu == Httu::Access {
            return Err((Illegal::CdHd, 1));
        }
        if f.httu == Httu::AccessDirtyTableAf && cdf::HAFT.flag(words) && !c.ha {
            return Err((Illegal::CdHaft, 1));
        }
    }
    let ds = f.ds && cdf::DS.flag(words);
    let halves = [
        (
            &c.tt0,
            c.tg0,
            Illegal::CdTg0,
            Illegal::CdT0sz,
            Illegal::CdT0szUnpredictable,
        ),
        (
            &c.tt1,
            granule1(c.tg1),
            Illegal::CdTg1,
            Illegal::CdT1sz,
            Illegal::CdT1szUnpredictable,
        ),
    ];
    for (half, (tt, tg, tg_rule, tsz_rule, tsz_cu)) in halves.into_iter().enumerate() {
        if tt.epd || !c.aa64 {
            continue;
        }
        let tsz = u32::from(tt.tsz & 63);
        let max = match (f.stt, tg) {
            (true, Granule::Size64K) => 47,
            (true, _) => 48,
            (false, _) => 39,
        };
        let min = if f.vax != 0 && (tg == Granule::Size64K || ds) {
            12
        } else {
            16
        };
        if tsz < min || tsz > max {
            let rule = if is_v3_0(f) { tsz_cu } else { tsz_rule };
            return Err((rule, u64::from(tsz)));
        }
        if !granule_supported(f, tg) {
            let value = if half == 0 {
                tg.encode()
            } else {
                c.tg1.encode()
            };
            return Err((tg_rule, value));
        }
        ttb_in_range(tt, tg, ds, c, f, half)?;
    }
    if !c.aa64 {
        // VMSAv8-32 LPAE: IPS is IGNORED, the output size is 40 bits (§5.4 IPS).
        for (half, tt) in [&c.tt0, &c.tt1].into_iter().enumerate() {
            if !tt.epd && beyond(tt.ttb, 40) {
                let rule = [Illegal::CdTtb0BeyondIps, Illegal::CdTtb1BeyondIps];
                return Err((
                    rule.get(half).copied().unwrap_or(Illegal::CdTtb0BeyondIps),
                    tt.ttb,
                ));
            }
        }
    }
    Ok(())
}

fn ttb_in_range(
    tt: &TableControls,
    tg: Granule,
    ds: bool,
    c: &CdConfig,
    f: &Features,
    half: usize,
) -> Result<(), Broken> {
    let (ips_rule, rule48) = if half == 0 {
        (Illegal::CdTtb0BeyondIps, Illegal::CdTtb0Beyond48)
    } else {
        (Illegal::CdTtb1BeyondIps, Illegal::CdTtb1Beyond48)
    };
    // §5.4 IPS: capped to OAS like S2PS.
    if beyond(tt.ttb, c.ips.bits().min(f.oas_bits())) {
        return Err((ips_rule, tt.ttb));
    }
    if tg != Granule::Size64K && !ds && beyond(tt.ttb, 48) {
        return Err((rule48, tt.ttb));
    }
    Ok(())
}

/// SPEC K18: `(base, bytes)` of the starting-level table a stage-1 half walks (`tt` enabled,
/// its sizes checked): VMSAv8-64 starts at the level whose table resolves the top
/// ((IA − granule − 1) mod stride) + 1 bits; VMSAv8-32 LPAE uses a 3-bit `TxSZ` and 4KB.
pub fn s1_root(tt: &TableControls, tg: Granule, aa64: bool) -> Option<(u64, u64)> {
    if tt.epd {
        return None;
    }
    let (shift, stride) = if aa64 { geometry(tg) } else { (12, 9) };
    let ia = if aa64 {
        64 - u32::from(tt.tsz & 63)
    } else {
        32 - u32::from(tt.tsz & 7)
    };
    let bits = (ia.checked_sub(shift + 1)? % stride) + 1;
    let bytes = 8u64.checked_shl(bits)?;
    Some((tt.ttb & !(bytes - 1), bytes))
}

/// The granule of a CD's `TTB1` half, in the `TG0` encoding.
pub fn tg1(c: &CdConfig) -> Granule {
    granule1(c.tg1)
}

//! Which bits of an STE or a CD the SMMU reads, given the entry's own configuration, and which
//! bits may change in any order even though they are read ("update-safe").
//!
//! These are pure functions over the entry's eight 64-bit words. The writer
//! ([`super::write_entry`]) uses them to decide how an entry can be changed without the SMMU
//! ever seeing a configuration that is neither the old nor the new one; tests use the same
//! functions to check every intermediate image.
//!
//! # Over-reporting is safe, under-reporting is not
//!
//! A bit reported as *used* is never written early; a bit reported as *unused* may be written
//! while the old configuration is live. So every doubt is resolved towards "used". The sets
//! below are those of the Linux driver (`arm_smmu_get_ste_used`, `arm_smmu_get_cd_used`), plus
//! the fields that driver never programs but that [`SteConfig`](crate::arch::ste::SteConfig)
//! can carry or that the architecture reads for that configuration (attribute overrides,
//! MPAM/MEC identifiers, the newer stage-2 controls). Those extras are zero in every entry
//! the Linux suite builds, so they never change a sync count of the §1.2 transitions.

use crate::arch::cd::fields as cd;
use crate::arch::ste::{fields as ste, Eats, S1Dss, SteKind};
use crate::arch::Field;

/// Number of 64-bit words of an STE and of a CD.
pub const ENTRY_QWORDS: usize = 8;

/// The mask of `fields` that live in word `q`.
const fn qword_mask(q: usize, mut fields: &[Field]) -> u64 {
    let mut mask = 0;
    while let Some((f, rest)) = fields.split_first() {
        if f.qword == q {
            mask |= f.mask_in_word();
        }
        fields = rest;
    }
    mask
}

/// The per-word masks of a list of fields.
const fn masks(fields: &[Field]) -> [u64; ENTRY_QWORDS] {
    [
        qword_mask(0, fields),
        qword_mask(1, fields),
        qword_mask(2, fields),
        qword_mask(3, fields),
        qword_mask(4, fields),
        qword_mask(5, fields),
        qword_mask(6, fields),
        qword_mask(7, fields),
    ]
}

fn or_into(acc: &mut [u64; ENTRY_QWORDS], add: &[u64; ENTRY_QWORDS]) {
    for (a, b) in acc.iter_mut().zip(add) {
        *a |= b;
    }
}

// ---------------------------------------------------------------------------------------------
// STE (IHI 0070 G.b §5.2)
// ---------------------------------------------------------------------------------------------

/// Read in every valid STE, whatever its `Config`. `CONT` is "permitted to be obeyed" even
/// when `Config` is abort (§5.2.1).
const STE_VALID: [u64; ENTRY_QWORDS] = masks(&[ste::V, ste::CONFIG, ste::CONT]);

/// Read by every configuration that lets traffic through (bypass and the three translating
/// ones): the attribute and permission overrides (§13.5: they shape bypassed traffic and the
/// input attributes of stage 1), MPAM and MEC identifiers, directed-prefetch and
/// destructive-read enables, PRI auto-response format and the IMPLEMENTATION DEFINED
/// per-stream controls. `SHCFG` is not here: see [`STE_SHCFG`].
const STE_TRAFFIC: [u64; ENTRY_QWORDS] = masks(&[
    ste::DRE,
    ste::DCP,
    ste::PPAR,
    ste::MEMATTR,
    ste::MTCFG,
    ste::ALLOCCFG,
    ste::NSCFG,
    ste::PRIVCFG,
    ste::INSTCFG,
    ste::IMPLEMENTATION_DEFINED_0,
    ste::IMPLEMENTATION_DEFINED_1,
    ste::IMPLEMENTATION_DEFINED_2,
    ste::PARTID,
    ste::MECID,
    ste::PMG,
    ste::MPAM_NS,
]);

/// `SHCFG` applies only where no stage-1 descriptor supplies the shareability (§13.5): bypass,
/// stage 2 only, and stage 1 bypassed through `S1DSS`. Nested configurations count it as used
/// too (as Linux does): with `S1DSS = bypass` they are stage-2-only for that traffic.
const STE_SHCFG: [u64; ENTRY_QWORDS] = masks(&[ste::SHCFG]);

/// Read by every translating configuration: ATS enable and event merging. With `Config` =
/// bypass `EATS` is IGNORED (effective 0b00, §5.2 `Config`).
const STE_TRANSLATE: [u64; ENTRY_QWORDS] = masks(&[ste::EATS, ste::MEV]);

/// Stage 1 translates (`Config` = 0b1x1). `S2VMID` is read too: with `STRW` = EL1 and stage 2
/// implemented, stage-1 TLB entries are tagged with it. `STRW` is IGNORED when stage 2 is
/// enabled, but counting it for nested entries only costs hitlessness that nobody asks for.
const STE_S1: [u64; ENTRY_QWORDS] = masks(&[
    ste::S1FMT,
    ste::S1_CONTEXT_PTR,
    ste::S1_CD_MAX,
    ste::S1DSS,
    ste::S1CIR,
    ste::S1COR,
    ste::S1CSH,
    ste::S1PIE,
    ste::S1MPAM,
    ste::S1STALLD,
    ste::STRW,
    ste::S2VMID,
]);

/// Stage 2 translates (`Config` = 0b11x): every `S2*` and `S_S2*` field, the stage-2 Assured
/// Translation controls, DPT VMID matching, and the VMS pointer.
const STE_S2: [u64; ENTRY_QWORDS] = masks(&[
    ste::S2HWU59,
    ste::S2HWU60,
    ste::S2HWU61,
    ste::S2HWU62,
    ste::S2FWB,
    ste::S2VMID,
    ste::VTCR,
    ste::S2AA64,
    ste::S2ENDI,
    ste::S2AFFD,
    ste::S2PTW,
    ste::S2HD,
    ste::S2HA,
    ste::S2S,
    ste::S2R,
    ste::S2HAFT,
    ste::S2PIE,
    ste::S2POE,
    ste::DPT_VMATCH,
    ste::S2NSW,
    ste::S2NSA,
    ste::S2SL0_2,
    ste::S2DS,
    ste::S2TTB,
    ste::S2SKL,
    ste::S_S2T0SZ,
    ste::S_S2SL0,
    ste::S_S2TG,
    ste::ASSUREDONLY,
    ste::TL0,
    ste::TL1,
    ste::VMSPTR,
    ste::S2SW,
    ste::S2SA,
    ste::S_S2SL0_2,
    ste::S_S2TTB,
    ste::S_S2SKL,
    ste::S2POI,
]);

/// `DPT_VMATCH` is read by a stage-1-only entry too when `EATS` selects DPT checks.
const STE_DPT: [u64; ENTRY_QWORDS] = masks(&[ste::DPT_VMATCH]);

/// `S2S` is "not IGNORED" by the `EATS` validity check even when stage 2 bypasses (§5.2 `V`,
/// `EATS` = 0b01/0b11 with `S2S` = 1 may be ILLEGAL for `Config` = 0b10x).
const STE_S2S: [u64; ENTRY_QWORDS] = masks(&[ste::S2S]);

/// The bits of `entry`, an STE, that the SMMU reads given the entry's own configuration.
///
/// - `V` = 0: only `V`.
/// - Otherwise `V`, `Config`, `CONT`, and by `Config`:
///   - abort (and the reserved 0b001–0b011, which behave as abort): nothing more;
///   - bypass: the "traffic" fields (`MTCFG`, `MemAttr`, `ALLOCCFG`, `NSCFG`, `PRIVCFG`,
///     `INSTCFG`, `DRE`, `DCP`, `PPAR`, `PARTID`, `PMG`, `MPAM_NS`, `MECID`, the three
///     IMPLEMENTATION DEFINED fields) and `SHCFG`;
///   - stage 1: the traffic fields, `EATS`, `MEV`, every `S1*` field, `STRW`, `S2VMID`;
///     `SHCFG` only when `S1DSS` = bypass; `S2S` when `EATS` ≠ 0; `DPT_VMATCH` when `EATS` =
///     0b11;
///   - stage 2: the traffic fields, `SHCFG`, `EATS`, `MEV`, every stage-2 field;
///   - nested: the union of the two.
pub fn ste_used_bits(entry: &[u64; ENTRY_QWORDS]) -> [u64; ENTRY_QWORDS] {
    let mut used = [0u64; ENTRY_QWORDS];
    if !ste::V.flag(entry) {
        or_into(&mut used, &masks(&[ste::V]));
        return used;
    }
    or_into(&mut used, &STE_VALID);
    let Ok(kind) = SteKind::decode(ste::CONFIG.get(entry)) else {
        // Reserved Config values behave as abort (§5.2 Config).
        return used;
    };
    let (stage1, stage2) = match kind {
        SteKind::Abort => return used,
        SteKind::Bypass => {
            or_into(&mut used, &STE_TRAFFIC);
            or_into(&mut used, &STE_SHCFG);
            return used;
        }
        SteKind::Stage1 => (true, false),
        SteKind::Stage2 => (false, true),
        SteKind::Nested => (true, true),
    };
    or_into(&mut used, &STE_TRAFFIC);
    or_into(&mut used, &STE_TRANSLATE);
    if stage1 {
        or_into(&mut used, &STE_S1);
        if ste::S1DSS.get(entry) == S1Dss::Bypass.encode() {
            or_into(&mut used, &STE_SHCFG);
        }
        let eats = ste::EATS.get(entry);
        if eats != Eats::Abort.encode() {
            or_into(&mut used, &STE_S2S);
        }
        if eats == Eats::FullDpt.encode() {
            or_into(&mut used, &STE_DPT);
        }
    }
    if stage2 {
        or_into(&mut used, &STE_S2);
        or_into(&mut used, &STE_SHCFG);
    }
    used
}

/// The low bit of `EATS`: the difference between 0b00 (ATS off) and 0b01 (full ATS).
const EATS_FULL_BIT: u64 = Eats::Full.encode() << ste::EATS.lo;
/// The high bit of `EATS`, set by split-stage (0b10) and DPT (0b11).
const EATS_HIGH_BIT: u64 = (Eats::SplitStage.encode()) << ste::EATS.lo;

/// Bits of an STE that may change in any order relative to the rest of the update, even though
/// both `cur` and `target` use them ("update-safe"). The writer only honours them for bits
/// that both configurations use; elsewhere the ordinary used/unused sequencing applies.
///
/// - `MEV`, always. It only controls whether similar fault records may be merged, and the
///   architecture tells software to cope with merged records even when `MEV` = 0 (§5.2 `MEV`),
///   so an early or late `MEV` is never observable as a third configuration.
/// - `EATS[0]`, when neither entry has `EATS[1]` set and neither has `S2S` set. This is a
///   contract with the caller: ATS is disabled in the endpoint (PCIe ATS Control.Enable clear)
///   before an STE write that takes `EATS` from 0b01 to 0b00, and enabled only after one that
///   takes it from 0b00 to 0b01, so no Translation Request arrives while the bit changes, and a
///   device trusted with ATS before (or after) the change gains nothing from the order. The
///   conditions exclude the two cases where an early `EATS` change would build an illegal
///   intermediate STE: `EATS` = 0b01 with `S2S` = 1 (ILLEGAL, §5.2 `EATS`), and split-stage or
///   DPT encodings, where toggling bit 0 turns one ATS mode into another rather than turning
///   ATS off.
pub fn ste_update_safe(
    cur: &[u64; ENTRY_QWORDS],
    target: &[u64; ENTRY_QWORDS],
) -> [u64; ENTRY_QWORDS] {
    let mut safe = masks(&[ste::MEV]);
    let q1 = |e: &[u64; ENTRY_QWORDS]| e.get(ste::EATS.qword).copied().unwrap_or(0);
    let high_eats = (q1(cur) | q1(target)) & EATS_HIGH_BIT != 0;
    let stall = ste::S2S.flag(cur) || ste::S2S.flag(target);
    if !high_eats && !stall {
        if let Some(w) = safe.get_mut(ste::EATS.qword) {
            *w |= EATS_FULL_BIT;
        }
    }
    safe
}

// ---------------------------------------------------------------------------------------------
// CD (IHI 0070 G.b §5.4)
// ---------------------------------------------------------------------------------------------

/// The TTB0 half of a CD, IGNORED when the effective `EPD0` is 1 (§5.4 `EPD0`).
const CD_TT0: [u64; ENTRY_QWORDS] =
    masks(&[cd::T0SZ, cd::TG0, cd::IR0, cd::OR0, cd::SH0, cd::TTB0]);
/// The TTB1 half of a CD, IGNORED when the effective `EPD1` is 1 (§5.4 `EPD1`).
const CD_TT1: [u64; ENTRY_QWORDS] =
    masks(&[cd::T1SZ, cd::TG1, cd::IR1, cd::OR1, cd::SH1, cd::TTB1]);

/// The bits of `entry`, a CD located from a stream whose StreamWorld honours `EPDx` (EL1 or
/// EL2-E2H, which is every stream this driver builds): see [`cd_used_bits_with`].
pub fn cd_used_bits(entry: &[u64; ENTRY_QWORDS]) -> [u64; ENTRY_QWORDS] {
    cd_used_bits_with(entry, true)
}

/// The bits of `entry`, a CD, that the SMMU reads.
///
/// - `V` = 0: only `V` ("the entire rest of the structure is IGNORED", §5.4 `V`).
/// - Otherwise every bit, except that when `epd_honoured` and `EPD0` = 1 the TTB0 half
///   (`T0SZ`, `TG0`, `IR0`, `OR0`, `SH0`, `TTB0`) is unused, and likewise the TTB1 half when
///   `EPD1` = 1.
///
/// `epd_honoured` is false for CDs located from an STE whose StreamWorld is any-EL2 (without
/// E2H) or EL3: there `EPDx` is IGNORED with an effective value of 0 (§5.4 `EPD0`), so the
/// table halves stay in use whatever `EPDx` holds.
pub fn cd_used_bits_with(entry: &[u64; ENTRY_QWORDS], epd_honoured: bool) -> [u64; ENTRY_QWORDS] {
    if !cd::V.flag(entry) {
        return masks(&[cd::V]);
    }
    let mut used = [u64::MAX; ENTRY_QWORDS];
    let mut drop = |half: &[u64; ENTRY_QWORDS]| {
        for (u, h) in used.iter_mut().zip(half) {
            *u &= !h;
        }
    };
    if epd_honoured && cd::EPD0.flag(entry) {
        drop(&CD_TT0);
    }
    if epd_honoured && cd::EPD1.flag(entry) {
        drop(&CD_TT1);
    }
    used
}

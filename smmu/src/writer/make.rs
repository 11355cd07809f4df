//! Builders of the entries the driver installs, and their canonical word images.
//!
//! The builders return typed configurations; [`ste_image`] and [`cd_image`] turn one into the
//! words the writer stores. The image is the encoding with every bit its configuration does
//! not use cleared, so that an entry never carries state the SMMU ignores (which would cost
//! syncs to clean up later, and which the Linux driver forbids with a warning).

use crate::arch::cd::{CdConfig, Granule1, TableControls};
use crate::arch::ste::{
    Eats, S1Dss, S1Fmt, ShCfg, Stage1Ste, Stage2Ste, SteConfig, StreamAttrs, Strw, Translation,
};
use crate::arch::{AddressSize, Cacheability, Granule, Shareability};

use super::used::{cd_used_bits, ste_used_bits, ENTRY_QWORDS};

/// SMMU features that change the entries the builders make.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryFeatures {
    /// `SMMU_IDR1.ATTR_TYPES_OVR`: `MTCFG`/`MemAttr`, `ALLOCCFG` and `SHCFG` are implemented.
    /// Bypassing entries then carry `SHCFG` = "use incoming" (0b01); without it the field is
    /// RES0 and the incoming shareability is used anyway.
    pub attr_types_ovr: bool,
    /// The stall fault model is configurable (`SMMU_IDR0.STALL_MODEL` = 0b00): stage-1 entries
    /// of masters that must not stall get `S1STALLD` = 1.
    pub stalls: bool,
    /// `SMMU_CR2.E2H` is in use: stage-1 entries use `STRW` = EL2 (EL2-E2H).
    pub e2h: bool,
}

/// Per-master properties that change its STEs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MasterCaps {
    /// ATS is enabled for the master: `EATS` = full ATS. See
    /// [`ste_update_safe`](super::ste_update_safe) for the ordering contract with the
    /// endpoint's ATS enable.
    pub ats: bool,
    /// The master may stall on faults (stall-safe platform device): `S1STALLD` clear,
    /// `S2S` = 1.
    pub stall: bool,
}

/// A CD table, as an STE points at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdTable {
    /// Physical address of the table (64-byte aligned; lower bits are dropped).
    pub base: u64,
    /// Linear or 2-level.
    pub fmt: S1Fmt,
    /// log2 of the number of CDs.
    pub cd_max: u8,
}

/// A stage-2 translation table and its walk controls (what the page table reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Table {
    /// Physical address of the start table (lower 4 bits dropped).
    pub ttb: u64,
    /// `S2T0SZ`.
    pub t0sz: u8,
    /// `S2SL0`.
    pub sl0: u8,
    /// `S2IR0`.
    pub ir0: Cacheability,
    /// `S2OR0`.
    pub or0: Cacheability,
    /// `S2SH0`.
    pub sh0: Shareability,
    /// `S2TG`.
    pub tg: Granule,
    /// `S2PS`.
    pub ps: AddressSize,
    /// `S2FWB`: the table was built for stage-2 forced write-back.
    pub fwb: bool,
}

/// The overrides of a bypassing stream: "use incoming" everywhere; `SHCFG` = 0b01 only where
/// the field is implemented.
pub fn incoming_attrs(f: EntryFeatures) -> StreamAttrs {
    StreamAttrs {
        sh_cfg: if f.attr_types_ovr {
            ShCfg::Incoming
        } else {
            ShCfg::NonShareable
        },
        ..StreamAttrs::INCOMING
    }
}

fn eats(m: MasterCaps) -> Eats {
    if m.ats {
        Eats::Full
    } else {
        Eats::Abort
    }
}

/// The CD of a stage-1 address space walked through `TTB0` (§5.4): `TTB1` walks disabled,
/// VMSAv8-64 tables, faults recorded and aborting, the Access flag managed by software
/// (`AFFD`), and an ASID private to the SMMU (`ASET` = 1: broadcast TLB maintenance from the
/// CPUs must not hit it).
pub fn stage1_cd(
    asid: u16,
    tt0: TableControls,
    tg0: Granule,
    ips: AddressSize,
    mair: u64,
) -> CdConfig {
    CdConfig {
        asid,
        tt0,
        tg0,
        tt1: TableControls {
            tsz: 0,
            ir: Cacheability::NonCacheable,
            or: Cacheability::NonCacheable,
            sh: Shareability::NonShareable,
            epd: true,
            ttb: 0,
        },
        tg1: Granule1::Size4K,
        ips,
        endi: cfg!(target_endian = "big"),
        affd: true,
        wxn: false,
        uwxn: false,
        tbi0: false,
        tbi1: false,
        pan: false,
        aa64: true,
        hd: false,
        ha: false,
        stall: false,
        record: true,
        abort: true,
        aset: true,
        mair,
        amair: 0,
        partid: 0,
        pmg: 0,
    }
}

/// An STE that aborts every transaction, silently: the "blocked" domain.
pub fn abort_ste() -> SteConfig {
    SteConfig {
        attrs: incoming_attrs(EntryFeatures::default()),
        ..SteConfig::ABORT
    }
}

/// An STE that bypasses both stages with the incoming attributes: the "identity" domain.
pub fn bypass_ste(f: EntryFeatures) -> SteConfig {
    SteConfig {
        attrs: incoming_attrs(f),
        ..SteConfig::BYPASS
    }
}

/// The stage-1 half of an STE pointing at `table`.
fn stage1(f: EntryFeatures, m: MasterCaps, table: CdTable, dss: S1Dss) -> Stage1Ste {
    Stage1Ste {
        context_ptr: table.base,
        fmt: table.fmt,
        cd_max: table.cd_max,
        dss,
        cir: Cacheability::WriteBackAllocate,
        cor: Cacheability::WriteBackAllocate,
        csh: Shareability::Inner,
        stall_disable: f.stalls && !m.stall,
    }
}

/// The stage-2 half of an STE translating through `s2`.
fn stage2(m: MasterCaps, s2: S2Table) -> Stage2Ste {
    Stage2Ste {
        t0sz: s2.t0sz,
        sl0: s2.sl0,
        ir0: s2.ir0,
        or0: s2.or0,
        sh0: s2.sh0,
        tg: s2.tg,
        ps: s2.ps,
        aa64: true,
        endi: cfg!(target_endian = "big"),
        affd: false,
        ptw: true,
        hd: false,
        ha: false,
        stall: m.stall,
        record: true,
        fwb: s2.fwb,
        ttb: s2.ttb,
    }
}

/// A stage-1 STE whose contexts are in `table`, with `dss` for traffic without a SubstreamID
/// (CD 0 for a paging domain, bypass when only PASIDs are attached).
pub fn cd_table_ste(f: EntryFeatures, m: MasterCaps, table: CdTable, dss: S1Dss) -> SteConfig {
    SteConfig {
        translation: Translation::Stage1(stage1(f, m, table, dss)),
        s2vmid: 0,
        eats: eats(m),
        strw: if f.e2h { Strw::El2 } else { Strw::El1 },
        mev: false,
        attrs: incoming_attrs(f),
    }
}

/// A stage-2 STE translating through `s2`, tagged with `vmid`.
pub fn s2_ste(f: EntryFeatures, m: MasterCaps, s2: S2Table, vmid: u16) -> SteConfig {
    SteConfig {
        translation: Translation::Stage2(stage2(m, s2)),
        s2vmid: vmid,
        eats: eats(m),
        strw: Strw::El1,
        mev: false,
        attrs: incoming_attrs(f),
    }
}

/// A nested STE: the contexts in `table` (IPA-addressed) translate at stage 1, `s2` at stage 2.
pub fn nested_ste(
    f: EntryFeatures,
    m: MasterCaps,
    table: CdTable,
    dss: S1Dss,
    s2: S2Table,
    vmid: u16,
) -> SteConfig {
    SteConfig {
        translation: Translation::Nested(stage1(f, m, table, dss), stage2(m, s2)),
        s2vmid: vmid,
        eats: eats(m),
        strw: Strw::El1,
        mev: false,
        attrs: incoming_attrs(f),
    }
}

fn masked(mut words: [u64; ENTRY_QWORDS], used: &[u64; ENTRY_QWORDS]) -> [u64; ENTRY_QWORDS] {
    for (w, u) in words.iter_mut().zip(used) {
        *w &= u;
    }
    words
}

/// The words of `config` as the writer should store them: the encoding less every bit the
/// configuration does not use (e.g. the attribute overrides of an abort STE, `SHCFG` of a
/// stage-1 STE whose `S1DSS` is not bypass).
pub fn ste_image(config: &SteConfig) -> [u64; ENTRY_QWORDS] {
    let words = config.encode().to_words();
    masked(words, &ste_used_bits(&words))
}

/// The words of `config` as the writer should store them: the encoding less the table half
/// that `EPDx` disables. For CDs of EL1 or EL2-E2H streams (see
/// [`cd_used_bits_with`](super::cd_used_bits_with)).
pub fn cd_image(config: &CdConfig) -> [u64; ENTRY_QWORDS] {
    let words = config.encode().to_words();
    masked(words, &cd_used_bits(&words))
}

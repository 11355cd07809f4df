//! CD, the Context Descriptor (IHI 0070 G.b §5.4), and L1CD, the level-1 CD table
//! descriptor (§5.3).

use super::entry::{encoded_enum, words_struct, AddressSize, Cacheability, Granule, Shareability};
use super::field::Field;
use super::DecodeError;

/// Bit positions of every CD field (IHI 0070 G.b §5.4). Some positions carry two names whose
/// meaning depends on implemented features (`HAD0`/`DisCH0`, `SKL0`/`HWU061`+`HWU062`); both
/// are listed.
pub mod fields {
    use super::Field;

    /// `T0SZ` (IHI 0070 G.b §5.4).
    pub const T0SZ: Field = Field::new("T0SZ", 0, 5, 0);
    /// `TG0` (IHI 0070 G.b §5.4).
    pub const TG0: Field = Field::new("TG0", 0, 7, 6);
    /// `IR0` (IHI 0070 G.b §5.4).
    pub const IR0: Field = Field::new("IR0", 0, 9, 8);
    /// `OR0` (IHI 0070 G.b §5.4).
    pub const OR0: Field = Field::new("OR0", 0, 11, 10);
    /// `SH0` (IHI 0070 G.b §5.4).
    pub const SH0: Field = Field::new("SH0", 0, 13, 12);
    /// `EPD0` (IHI 0070 G.b §5.4).
    pub const EPD0: Field = Field::new("EPD0", 0, 14, 14);
    /// `ENDI` (IHI 0070 G.b §5.4).
    pub const ENDI: Field = Field::new("ENDI", 0, 15, 15);
    /// `T1SZ` (IHI 0070 G.b §5.4).
    pub const T1SZ: Field = Field::new("T1SZ", 0, 21, 16);
    /// `TG1` (IHI 0070 G.b §5.4).
    pub const TG1: Field = Field::new("TG1", 0, 23, 22);
    /// `IR1` (IHI 0070 G.b §5.4).
    pub const IR1: Field = Field::new("IR1", 0, 25, 24);
    /// `OR1` (IHI 0070 G.b §5.4).
    pub const OR1: Field = Field::new("OR1", 0, 27, 26);
    /// `SH1` (IHI 0070 G.b §5.4).
    pub const SH1: Field = Field::new("SH1", 0, 29, 28);
    /// `EPD1` (IHI 0070 G.b §5.4).
    pub const EPD1: Field = Field::new("EPD1", 0, 30, 30);
    /// `V` (IHI 0070 G.b §5.4).
    pub const V: Field = Field::new("V", 0, 31, 31);
    /// `IPS` (IHI 0070 G.b §5.4).
    pub const IPS: Field = Field::new("IPS", 0, 34, 32);
    /// `AFFD` (IHI 0070 G.b §5.4).
    pub const AFFD: Field = Field::new("AFFD", 0, 35, 35);
    /// `WXN` (IHI 0070 G.b §5.4).
    pub const WXN: Field = Field::new("WXN", 0, 36, 36);
    /// `UWXN` (IHI 0070 G.b §5.4).
    pub const UWXN: Field = Field::new("UWXN", 0, 37, 37);
    /// `TBI0` (IHI 0070 G.b §5.4).
    pub const TBI0: Field = Field::new("TBI0", 0, 38, 38);
    /// `TBI1` (IHI 0070 G.b §5.4).
    pub const TBI1: Field = Field::new("TBI1", 0, 39, 39);
    /// `PAN` (IHI 0070 G.b §5.4).
    pub const PAN: Field = Field::new("PAN", 0, 40, 40);
    /// `AA64` (IHI 0070 G.b §5.4).
    pub const AA64: Field = Field::new("AA64", 0, 41, 41);
    /// `HD` (IHI 0070 G.b §5.4).
    pub const HD: Field = Field::new("HD", 0, 42, 42);
    /// `HA` (IHI 0070 G.b §5.4).
    pub const HA: Field = Field::new("HA", 0, 43, 43);
    /// `S` (IHI 0070 G.b §5.4).
    pub const S: Field = Field::new("S", 0, 44, 44);
    /// `R` (IHI 0070 G.b §5.4).
    pub const R: Field = Field::new("R", 0, 45, 45);
    /// `A` (IHI 0070 G.b §5.4).
    pub const A: Field = Field::new("A", 0, 46, 46);
    /// `ASET` (IHI 0070 G.b §5.4).
    pub const ASET: Field = Field::new("ASET", 0, 47, 47);
    /// `ASID` (IHI 0070 G.b §5.4).
    pub const ASID: Field = Field::new("ASID", 0, 63, 48);
    /// `NSCFG0` (IHI 0070 G.b §5.4).
    pub const NSCFG0: Field = Field::new("NSCFG0", 1, 0, 0);
    /// `HAD0` (IHI 0070 G.b §5.4).
    pub const HAD0: Field = Field::new("HAD0", 1, 1, 1);
    /// `DisCH0` (IHI 0070 G.b §5.4).
    pub const DISCH0: Field = Field::new("DisCH0", 1, 1, 1);
    /// `E0PD0` (IHI 0070 G.b §5.4).
    pub const E0PD0: Field = Field::new("E0PD0", 1, 2, 2);
    /// `HAFT` (IHI 0070 G.b §5.4).
    pub const HAFT: Field = Field::new("HAFT", 1, 3, 3);
    /// `TTB0` (IHI 0070 G.b §5.4).
    pub const TTB0: Field = Field::address("TTB0", 1, 55, 4);
    /// `PnCH` (IHI 0070 G.b §5.4).
    pub const PNCH: Field = Field::new("PnCH", 1, 58, 58);
    /// `EPAN` (IHI 0070 G.b §5.4).
    pub const EPAN: Field = Field::new("EPAN", 1, 59, 59);
    /// `HWU059` (IHI 0070 G.b §5.4).
    pub const HWU059: Field = Field::new("HWU059", 1, 60, 60);
    /// `HWU060` (IHI 0070 G.b §5.4).
    pub const HWU060: Field = Field::new("HWU060", 1, 61, 61);
    /// `SKL0` (IHI 0070 G.b §5.4).
    pub const SKL0: Field = Field::new("SKL0", 1, 63, 62);
    /// `HWU061` (IHI 0070 G.b §5.4).
    pub const HWU061: Field = Field::new("HWU061", 1, 62, 62);
    /// `HWU062` (IHI 0070 G.b §5.4).
    pub const HWU062: Field = Field::new("HWU062", 1, 63, 63);
    /// `NSCFG1` (IHI 0070 G.b §5.4).
    pub const NSCFG1: Field = Field::new("NSCFG1", 2, 0, 0);
    /// `HAD1` (IHI 0070 G.b §5.4).
    pub const HAD1: Field = Field::new("HAD1", 2, 1, 1);
    /// `DisCH1` (IHI 0070 G.b §5.4).
    pub const DISCH1: Field = Field::new("DisCH1", 2, 1, 1);
    /// `E0PD1` (IHI 0070 G.b §5.4).
    pub const E0PD1: Field = Field::new("E0PD1", 2, 2, 2);
    /// `AIE` (IHI 0070 G.b §5.4).
    pub const AIE: Field = Field::new("AIE", 2, 3, 3);
    /// `TTB1` (IHI 0070 G.b §5.4).
    pub const TTB1: Field = Field::address("TTB1", 2, 55, 4);
    /// `DS` (IHI 0070 G.b §5.4).
    pub const DS: Field = Field::new("DS", 2, 58, 58);
    /// `PIE` (IHI 0070 G.b §5.4).
    pub const PIE: Field = Field::new("PIE", 2, 59, 59);
    /// `HWU159` (IHI 0070 G.b §5.4).
    pub const HWU159: Field = Field::new("HWU159", 2, 60, 60);
    /// `HWU160` (IHI 0070 G.b §5.4).
    pub const HWU160: Field = Field::new("HWU160", 2, 61, 61);
    /// `SKL1` (IHI 0070 G.b §5.4).
    pub const SKL1: Field = Field::new("SKL1", 2, 63, 62);
    /// `HWU161` (IHI 0070 G.b §5.4).
    pub const HWU161: Field = Field::new("HWU161", 2, 62, 62);
    /// `HWU162` (IHI 0070 G.b §5.4).
    pub const HWU162: Field = Field::new("HWU162", 2, 63, 63);
    /// `MAIR0` (IHI 0070 G.b §5.4).
    pub const MAIR0: Field = Field::new("MAIR0", 3, 31, 0);
    /// `MAIR1` (IHI 0070 G.b §5.4).
    pub const MAIR1: Field = Field::new("MAIR1", 3, 63, 32);
    /// `AMAIR0` (IHI 0070 G.b §5.4).
    pub const AMAIR0: Field = Field::new("AMAIR0", 4, 31, 0);
    /// `AMAIR1` (IHI 0070 G.b §5.4).
    pub const AMAIR1: Field = Field::new("AMAIR1", 4, 63, 32);
    /// `IMPLEMENTATION_DEFINED` (IHI 0070 G.b §5.4).
    pub const IMPLEMENTATION_DEFINED: Field = Field::new("IMPLEMENTATION_DEFINED", 5, 31, 0);
    /// `PARTID` (IHI 0070 G.b §5.4).
    pub const PARTID: Field = Field::new("PARTID", 5, 47, 32);
    /// `PMG` (IHI 0070 G.b §5.4).
    pub const PMG: Field = Field::new("PMG", 5, 55, 48);
    /// `PIIU` (IHI 0070 G.b §5.4).
    pub const PIIU: Field = Field::new("PIIU", 6, 47, 0);
    /// `PIIP` (IHI 0070 G.b §5.4).
    pub const PIIP: Field = Field::new("PIIP", 7, 47, 0);

    /// Every field, in specification order (lowest bit first).
    pub const FIELDS: &[Field] = &[
        T0SZ,
        TG0,
        IR0,
        OR0,
        SH0,
        EPD0,
        ENDI,
        T1SZ,
        TG1,
        IR1,
        OR1,
        SH1,
        EPD1,
        V,
        IPS,
        AFFD,
        WXN,
        UWXN,
        TBI0,
        TBI1,
        PAN,
        AA64,
        HD,
        HA,
        S,
        R,
        A,
        ASET,
        ASID,
        NSCFG0,
        HAD0,
        DISCH0,
        E0PD0,
        HAFT,
        TTB0,
        PNCH,
        EPAN,
        HWU059,
        HWU060,
        SKL0,
        HWU061,
        HWU062,
        NSCFG1,
        HAD1,
        DISCH1,
        E0PD1,
        AIE,
        TTB1,
        DS,
        PIE,
        HWU159,
        HWU160,
        SKL1,
        HWU161,
        HWU162,
        MAIR0,
        MAIR1,
        AMAIR0,
        AMAIR1,
        IMPLEMENTATION_DEFINED,
        PARTID,
        PMG,
        PIIU,
        PIIP,
    ];
}

/// Bit positions of the level-1 CD descriptor (IHI 0070 G.b §5.3).
pub mod l1_fields {
    use super::Field;

    /// `V` (IHI 0070 G.b §5.3).
    pub const V: Field = Field::new("V", 0, 0, 0);
    /// `L2Ptr` (IHI 0070 G.b §5.3): the 4 KiB- or 64 KiB-aligned leaf CD table.
    pub const L2PTR: Field = Field::address("L2Ptr", 0, 55, 12);

    /// Every field, lowest bit first.
    pub const FIELDS: &[Field] = &[V, L2PTR];
}

words_struct! {
    /// A Context Descriptor: 64 bytes, eight little-endian words (§5.4).
    Cd, 8
}

words_struct! {
    /// A level-1 CD table descriptor: one little-endian word (§5.3).
    L1Cd, 1
}

encoded_enum! {
    /// `CD.TG1` (§5.4): the TTB1 granule, encoded differently from `TG0`.
    Granule1 in "CD" . "TG1" {
        /// 16 KiB.
        Size16K = 0b01 => "16KB",
        /// 4 KiB.
        Size4K = 0b10 => "4KB",
        /// 64 KiB.
        Size64K = 0b11 => "64KB",
    }
}

/// The controls of one translation table of a CD (the TTB0 half or the TTB1 half).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct TableControls {
    /// `TxSZ` (6 bits): the region is 2^(64 − TxSZ) bytes.
    pub tsz: u8,
    /// `IRx`: inner cacheability of walks.
    pub ir: Cacheability,
    /// `ORx`: outer cacheability of walks.
    pub or: Cacheability,
    /// `SHx`: shareability of walks.
    pub sh: Shareability,
    /// `EPDx`: walks of this table are disabled (a miss faults).
    pub epd: bool,
    /// `TTBx`: the table base (bits \[55:4\]).
    pub ttb: u64,
}

impl TableControls {
    /// The controls of a disabled half (`EPDx` = 1): every other field is IGNORED (§5.4) and
    /// decodes as zero.
    pub const DISABLED: TableControls = TableControls {
        tsz: 0,
        ir: Cacheability::NonCacheable,
        or: Cacheability::NonCacheable,
        sh: Shareability::NonShareable,
        epd: true,
        ttb: 0,
    };
}

/// The typed content of a valid CD (§5.4): a stage-1 address space. An entry with `V = 0`
/// decodes to `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct CdConfig {
    /// `ASID`.
    pub asid: u16,
    /// `TG0`, `T0SZ`, `IR0`, `OR0`, `SH0`, `EPD0`, `TTB0`.
    pub tt0: TableControls,
    /// `TG0`.
    pub tg0: Granule,
    /// `TG1`, `T1SZ`, `IR1`, `OR1`, `SH1`, `EPD1`, `TTB1`.
    pub tt1: TableControls,
    /// `TG1`.
    pub tg1: Granule1,
    /// `IPS`: intermediate (output) address size.
    pub ips: AddressSize,
    /// `ENDI`: big-endian walks.
    pub endi: bool,
    /// `AFFD`: Access-flag faults disabled.
    pub affd: bool,
    /// `WXN`.
    pub wxn: bool,
    /// `UWXN`.
    pub uwxn: bool,
    /// `TBI0`: top byte ignored for TTB0 addresses.
    pub tbi0: bool,
    /// `TBI1`.
    pub tbi1: bool,
    /// `PAN`.
    pub pan: bool,
    /// `AA64`: VMSAv8-64 tables.
    pub aa64: bool,
    /// `HD`: hardware dirty-state update.
    pub hd: bool,
    /// `HA`: hardware access-flag update.
    pub ha: bool,
    /// `S`: faults stall.
    pub stall: bool,
    /// `R`: faults are recorded.
    pub record: bool,
    /// `A`: faults abort (terminate with an abort rather than RAZ/WI).
    pub abort: bool,
    /// `ASET`: the ASID is not shared with the PE's broadcast invalidations.
    pub aset: bool,
    /// `MAIR1:MAIR0`, as the 64-bit `MAIR_EL1` value.
    pub mair: u64,
    /// `AMAIR1:AMAIR0`.
    pub amair: u64,
    /// `PARTID` (MPAM).
    pub partid: u16,
    /// `PMG` (MPAM).
    pub pmg: u8,
}

impl CdConfig {
    /// Encodes the descriptor with `V = 1`. Values wider than their field are truncated.
    pub fn encode(&self) -> Cd {
        use fields::*;
        let mut w = [0u64; 8];
        V.set(&mut w, 1);
        ASID.set(&mut w, u64::from(self.asid));
        T0SZ.set(&mut w, u64::from(self.tt0.tsz));
        TG0.set(&mut w, self.tg0.encode());
        IR0.set(&mut w, self.tt0.ir.encode());
        OR0.set(&mut w, self.tt0.or.encode());
        SH0.set(&mut w, self.tt0.sh.encode());
        EPD0.set(&mut w, u64::from(self.tt0.epd));
        TTB0.set(&mut w, self.tt0.ttb >> TTB0.lo);
        T1SZ.set(&mut w, u64::from(self.tt1.tsz));
        TG1.set(&mut w, self.tg1.encode());
        IR1.set(&mut w, self.tt1.ir.encode());
        OR1.set(&mut w, self.tt1.or.encode());
        SH1.set(&mut w, self.tt1.sh.encode());
        EPD1.set(&mut w, u64::from(self.tt1.epd));
        TTB1.set(&mut w, self.tt1.ttb >> TTB1.lo);
        IPS.set(&mut w, self.ips.encode());
        for (field, flag) in [
            (ENDI, self.endi),
            (AFFD, self.affd),
            (WXN, self.wxn),
            (UWXN, self.uwxn),
            (TBI0, self.tbi0),
            (TBI1, self.tbi1),
            (PAN, self.pan),
            (AA64, self.aa64),
            (HD, self.hd),
            (HA, self.ha),
            (S, self.stall),
            (R, self.record),
            (A, self.abort),
            (ASET, self.aset),
        ] {
            field.set(&mut w, u64::from(flag));
        }
        MAIR0.set(&mut w, self.mair);
        MAIR1.set(&mut w, self.mair >> 32);
        AMAIR0.set(&mut w, self.amair);
        AMAIR1.set(&mut w, self.amair >> 32);
        PARTID.set(&mut w, u64::from(self.partid));
        PMG.set(&mut w, u64::from(self.pmg));
        Cd::from_words(w)
    }
}

impl Cd {
    /// An all-zero, invalid descriptor.
    pub const INVALID: Cd = Cd([zerocopy::little_endian::U64::ZERO; 8]);

    /// Whether `V` is set.
    pub fn is_valid(&self) -> bool {
        fields::V.flag(&self.to_words())
    }

    /// Decodes the descriptor: `Ok(None)` when `V = 0`, else the configuration or the first
    /// field with a reserved encoding. Fields are decoded only where the descriptor uses them
    /// (§5.4, SPEC K21): a table half whose `EPDx` is set has `TxSZ`, `TGx`, `IRx`, `ORx`,
    /// `SHx` and `TTBx` IGNORED, so reserved values there are not errors and the half decodes
    /// as [`TableControls::DISABLED`] with a 4 KiB granule; `ENDI` is IGNORED when both halves
    /// are disabled and `AFFD` when `HA` = 1 (both decode as 0). Conditions that depend on
    /// the STE (StreamWorld) or on the ID registers are the caller's.
    pub fn decode(&self) -> Result<Option<CdConfig>, DecodeError> {
        use fields::*;
        let w = self.to_words();
        if !V.flag(&w) {
            return Ok(None);
        }
        let reserved = |field: Field| DecodeError::Reserved {
            structure: "CD",
            field: field.name,
            value: field.get(&w),
        };
        let epd0 = EPD0.flag(&w);
        let epd1 = EPD1.flag(&w);
        let cache = |field: Field| Cacheability::decode(field.get(&w)).map_err(|_| reserved(field));
        // §5.4 EPDx: with EPDx = 1, TxSZ, TGx, IRx, ORx, SHx and TTBx are IGNORED ("validity
        // checks are not performed on fields that are disabled"); they decode at their
        // defaults so that two CDs differing only there are the same configuration.
        let half = |epd: bool, tsz: Field, ir: Field, or: Field, sh: Field, ttb: Field| {
            if epd {
                return Ok(TableControls::DISABLED);
            }
            Ok(TableControls {
                tsz: tsz.get(&w) as u8,
                ir: cache(ir)?,
                or: cache(or)?,
                sh: Shareability::decode(sh.get(&w)).map_err(|_| reserved(sh))?,
                epd: false,
                ttb: ttb.get(&w) << ttb.lo,
            })
        };
        Ok(Some(CdConfig {
            asid: ASID.get(&w) as u16,
            tt0: half(epd0, T0SZ, IR0, OR0, SH0, TTB0)?,
            tg0: if epd0 {
                Granule::Size4K
            } else {
                Granule::decode(TG0.get(&w)).map_err(|_| reserved(TG0))?
            },
            tt1: half(epd1, T1SZ, IR1, OR1, SH1, TTB1)?,
            tg1: if epd1 {
                Granule1::Size4K
            } else {
                Granule1::decode(TG1.get(&w)).map_err(|_| reserved(TG1))?
            },
            ips: AddressSize::decode(IPS.get(&w)).map_err(|_| reserved(IPS))?,
            endi: !(epd0 && epd1) && ENDI.flag(&w),
            affd: !HA.flag(&w) && AFFD.flag(&w),
            wxn: WXN.flag(&w),
            uwxn: UWXN.flag(&w),
            tbi0: TBI0.flag(&w),
            tbi1: TBI1.flag(&w),
            pan: PAN.flag(&w),
            aa64: AA64.flag(&w),
            hd: HD.flag(&w),
            ha: HA.flag(&w),
            stall: S.flag(&w),
            record: R.flag(&w),
            abort: A.flag(&w),
            aset: ASET.flag(&w),
            mair: MAIR0.get(&w) | (MAIR1.get(&w) << 32),
            amair: AMAIR0.get(&w) | (AMAIR1.get(&w) << 32),
            partid: PARTID.get(&w) as u16,
            pmg: PMG.get(&w) as u8,
        }))
    }
}

/// The typed content of a level-1 CD descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct L1CdConfig {
    /// `L2Ptr`: the leaf CD table (bits \[55:12\]).
    pub l2_ptr: u64,
}

impl L1CdConfig {
    /// Encodes a valid descriptor.
    pub fn encode(&self) -> L1Cd {
        let mut w = [0u64; 1];
        l1_fields::V.set(&mut w, 1);
        l1_fields::L2PTR.set(&mut w, self.l2_ptr >> l1_fields::L2PTR.lo);
        L1Cd::from_words(w)
    }
}

impl L1Cd {
    /// Decodes the descriptor: `None` when `V = 0`. Every valid encoding is legal here; the
    /// pointer's alignment to the leaf-table size is checked by whoever knows `S1Fmt`.
    pub fn decode(&self) -> Option<L1CdConfig> {
        let w = self.to_words();
        l1_fields::V.flag(&w).then(|| L1CdConfig {
            l2_ptr: l1_fields::L2PTR.get(&w) << l1_fields::L2PTR.lo,
        })
    }
}

/// What a CD field's value means, where the field is an enumeration (for printers).
pub fn describe_field(field: &Field, value: u64) -> Option<&'static str> {
    use fields::*;
    let d = |r: Result<&'static str, DecodeError>| Some(r.unwrap_or("reserved"));
    match field.name {
        n if n == V.name => Some(if value == 0 { "invalid" } else { "valid" }),
        n if n == TG0.name => d(Granule::decode(value).map(Granule::describe)),
        n if n == TG1.name => d(Granule1::decode(value).map(Granule1::describe)),
        n if n == IR0.name || n == OR0.name || n == IR1.name || n == OR1.name => {
            d(Cacheability::decode(value).map(Cacheability::describe))
        }
        n if n == SH0.name || n == SH1.name => {
            d(Shareability::decode(value).map(Shareability::describe))
        }
        n if n == IPS.name => d(AddressSize::decode(value).map(AddressSize::describe)),
        n if n == AA64.name => Some(if value == 0 {
            "AArch32 tables"
        } else {
            "AArch64 tables"
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::fields::*;
    use super::*;

    // spec: K21 — a disabled half (EPDx = 1) is IGNORED whole (§5.4): garbage there neither
    // fails the decode nor tells two CDs apart; a used half still refuses reserved values.
    #[test]
    fn disabled_half_is_ignored() {
        let mut w = [0u64; 8];
        V.set(&mut w, 1);
        AA64.set(&mut w, 1);
        ASID.set(&mut w, 5);
        T0SZ.set(&mut w, 25);
        TG0.set(&mut w, 0);
        SH0.set(&mut w, 3);
        TTB0.set(&mut w, 0x8000_0000 >> TTB0.lo);
        EPD1.set(&mut w, 1);
        let clean = Cd::from_words(w).decode().unwrap().unwrap();
        assert_eq!(clean.tt1, TableControls::DISABLED);
        let mut noisy = w;
        TG1.set(&mut noisy, 0b00); // reserved TG1 encoding
        SH1.set(&mut noisy, 0b01); // reserved
        TTB1.set(&mut noisy, 0xdead_0000 >> TTB1.lo);
        T1SZ.set(&mut noisy, 7);
        assert_eq!(Cd::from_words(noisy).decode(), Ok(Some(clean)));
        // The same values in the used half are errors.
        let mut bad = w;
        SH0.set(&mut bad, 0b01);
        assert_eq!(
            Cd::from_words(bad).decode(),
            Err(DecodeError::Reserved {
                structure: "CD",
                field: "SH0",
                value: 1
            })
        );
        // AFFD is IGNORED when HA = 1.
        let mut ha = w;
        HA.set(&mut ha, 1);
        AFFD.set(&mut ha, 1);
        assert!(!Cd::from_words(ha).decode().unwrap().unwrap().affd);
    }
}

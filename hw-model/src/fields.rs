//! Field positions used by the model, each a named constant citing its spec section (IHI 0070 G.b).
//!
//! These are the model's own decoding (SPEC M6): nothing here comes from the driver crate. The
//! test `tests/fields_json.rs` compares every constant with `testdata/smmuv3-fields.json`.

/// A bit field inside a little-endian array of 64-bit words: word `qword`, bits `hi..=lo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Index of the 64-bit word holding the field.
    pub qword: u8,
    /// Highest bit (inclusive) within the word.
    pub hi: u8,
    /// Lowest bit within the word.
    pub lo: u8,
}

impl Field {
    /// A field of word `qword`, bits `hi..=lo`.
    pub const fn new(qword: u8, hi: u8, lo: u8) -> Self {
        Self { qword, hi, lo }
    }
    /// The mask of the field inside its word.
    pub const fn mask(self) -> u64 {
        let w = (self.hi - self.lo + 1) as u32;
        if w >= 64 {
            u64::MAX
        } else {
            ((1u64 << w) - 1) << self.lo
        }
    }
    /// Extracts the field from one word (the word is assumed to be `qword`).
    #[inline]
    pub const fn of(self, word: u64) -> u64 {
        (word & self.mask()) >> self.lo
    }
    /// Extracts the field from a structure image (missing words read as zero).
    #[inline]
    pub fn get(self, words: &[u64]) -> u64 {
        words.get(self.qword as usize).map_or(0, |w| self.of(*w))
    }
    /// Inserts `value` (truncated to the field width) into a word.
    #[inline]
    pub const fn put(self, word: u64, value: u64) -> u64 {
        (word & !self.mask()) | ((value << self.lo) & self.mask())
    }
    /// Sets the field in a structure image; out-of-range words are ignored.
    pub fn set(self, words: &mut [u64], value: u64) {
        if let Some(w) = words.get_mut(self.qword as usize) {
            *w = self.put(*w, value);
        }
    }
    /// Absolute bit positions (high, low) across the whole structure.
    pub const fn abs_bits(self) -> (u32, u32) {
        let base = self.qword as u32 * 64;
        (base + self.hi as u32, base + self.lo as u32)
    }
}

const fn r(hi: u8, lo: u8) -> Field {
    Field::new(0, hi, lo)
}

/// Register offsets and register fields (§6.2, §6.3).
pub mod reg {
    use super::{r, Field};
    /// SMMU_IDR0 (§6.3.1).
    pub const IDR0: u64 = 0x0;
    /// SMMU_IDR1 (§6.3.2).
    pub const IDR1: u64 = 0x4;
    /// SMMU_IDR2 (§6.3.3).
    pub const IDR2: u64 = 0x8;
    /// SMMU_IDR3 (§6.3.4).
    pub const IDR3: u64 = 0xC;
    /// SMMU_IDR4 (§6.3.5).
    pub const IDR4: u64 = 0x10;
    /// SMMU_IDR5 (§6.3.6).
    pub const IDR5: u64 = 0x14;
    /// SMMU_IIDR (§6.3.7).
    pub const IIDR: u64 = 0x18;
    /// SMMU_AIDR (§6.3.8).
    pub const AIDR: u64 = 0x1C;
    /// SMMU_CR0 (§6.3.9).
    pub const CR0: u64 = 0x20;
    /// SMMU_CR0ACK (§6.3.10).
    pub const CR0ACK: u64 = 0x24;
    /// SMMU_CR1 (§6.3.11).
    pub const CR1: u64 = 0x28;
    /// SMMU_CR2 (§6.3.12).
    pub const CR2: u64 = 0x2C;
    /// SMMU_STATUSR (§6.3.13).
    pub const STATUSR: u64 = 0x40;
    /// SMMU_GBPA (§6.3.14).
    pub const GBPA: u64 = 0x44;
    /// SMMU_AGBPA (§6.3.15).
    pub const AGBPA: u64 = 0x48;
    /// SMMU_IRQ_CTRL (§6.3.16).
    pub const IRQ_CTRL: u64 = 0x50;
    /// SMMU_IRQ_CTRLACK (§6.3.18).
    pub const IRQ_CTRLACK: u64 = 0x54;
    /// SMMU_GERROR (§6.3.19).
    pub const GERROR: u64 = 0x60;
    /// SMMU_GERRORN (§6.3.20).
    pub const GERRORN: u64 = 0x64;
    /// SMMU_GERROR_IRQ_CFG0, 64-bit (§6.3.21).
    pub const GERROR_IRQ_CFG0: u64 = 0x68;
    /// SMMU_GERROR_IRQ_CFG1 (§6.3.22).
    pub const GERROR_IRQ_CFG1: u64 = 0x70;
    /// SMMU_GERROR_IRQ_CFG2 (§6.3.23).
    pub const GERROR_IRQ_CFG2: u64 = 0x74;
    /// SMMU_STRTAB_BASE, 64-bit (§6.3.24).
    pub const STRTAB_BASE: u64 = 0x80;
    /// SMMU_STRTAB_BASE_CFG (§6.3.25).
    pub const STRTAB_BASE_CFG: u64 = 0x88;
    /// SMMU_CMDQ_BASE, 64-bit (§6.3.26).
    pub const CMDQ_BASE: u64 = 0x90;
    /// SMMU_CMDQ_PROD (§6.3.27).
    pub const CMDQ_PROD: u64 = 0x98;
    /// SMMU_CMDQ_CONS (§6.3.28).
    pub const CMDQ_CONS: u64 = 0x9C;
    /// SMMU_EVENTQ_BASE, 64-bit (§6.3.29).
    pub const EVTQ_BASE: u64 = 0xA0;
    /// SMMU_EVENTQ_PROD on page 1 (§6.3.95, §6.2.2).
    pub const EVTQ_PROD: u64 = 0x100A8;
    /// SMMU_EVENTQ_CONS on page 1 (§6.3.96, §6.2.2).
    pub const EVTQ_CONS: u64 = 0x100AC;
    /// SMMU_EVENTQ_IRQ_CFG0, 64-bit (§6.3.30).
    pub const EVTQ_IRQ_CFG0: u64 = 0xB0;
    /// SMMU_EVENTQ_IRQ_CFG1 (§6.3.31).
    pub const EVTQ_IRQ_CFG1: u64 = 0xB8;
    /// SMMU_EVENTQ_IRQ_CFG2 (§6.3.32).
    pub const EVTQ_IRQ_CFG2: u64 = 0xBC;
    /// SMMU_PRIQ_BASE, 64-bit (§6.3.33).
    pub const PRIQ_BASE: u64 = 0xC0;
    /// SMMU_PRIQ_PROD on page 1 (§6.3.97).
    pub const PRIQ_PROD: u64 = 0x100C8;
    /// SMMU_PRIQ_CONS on page 1 (§6.3.98).
    pub const PRIQ_CONS: u64 = 0x100CC;
    /// SMMU_PRIQ_IRQ_CFG0, 64-bit (§6.3.34).
    pub const PRIQ_IRQ_CFG0: u64 = 0xD0;
    /// SMMU_PRIQ_IRQ_CFG1 (§6.3.35).
    pub const PRIQ_IRQ_CFG1: u64 = 0xD8;
    /// SMMU_PRIQ_IRQ_CFG2 (§6.3.36).
    pub const PRIQ_IRQ_CFG2: u64 = 0xDC;
    /// SMMU_MPAMIDR (§6.3.41).
    pub const MPAMIDR: u64 = 0x130;
    /// Start of the identification registers PIDR/CIDR (§6.3, 0xFD0..0xFFC).
    pub const IDREGS: u64 = 0xFD0;
    /// Offset of register page 1 (§6.2.2).
    pub const PAGE1: u64 = 0x10000;

    /// IDR0.S2P (§6.3.1).
    pub const IDR0_S2P: Field = r(0, 0);
    /// IDR0.S1P (§6.3.1).
    pub const IDR0_S1P: Field = r(1, 1);
    /// IDR0.TTF (§6.3.1).
    pub const IDR0_TTF: Field = r(3, 2);
    /// IDR0.COHACC (§6.3.1).
    pub const IDR0_COHACC: Field = r(4, 4);
    /// IDR0.BTM (§6.3.1).
    pub const IDR0_BTM: Field = r(5, 5);
    /// IDR0.HTTU (§6.3.1).
    pub const IDR0_HTTU: Field = r(7, 6);
    /// IDR0.DORMHINT (§6.3.1).
    pub const IDR0_DORMHINT: Field = r(8, 8);
    /// IDR0.HYP (§6.3.1).
    pub const IDR0_HYP: Field = r(9, 9);
    /// IDR0.ATS (§6.3.1).
    pub const IDR0_ATS: Field = r(10, 10);
    /// IDR0.NS1ATS (§6.3.1).
    pub const IDR0_NS1ATS: Field = r(11, 11);
    /// IDR0.ASID16 (§6.3.1).
    pub const IDR0_ASID16: Field = r(12, 12);
    /// IDR0.MSI (§6.3.1).
    pub const IDR0_MSI: Field = r(13, 13);
    /// IDR0.SEV (§6.3.1).
    pub const IDR0_SEV: Field = r(14, 14);
    /// IDR0.ATOS (§6.3.1).
    pub const IDR0_ATOS: Field = r(15, 15);
    /// IDR0.PRI (§6.3.1).
    pub const IDR0_PRI: Field = r(16, 16);
    /// IDR0.VMW (§6.3.1).
    pub const IDR0_VMW: Field = r(17, 17);
    /// IDR0.VMID16 (§6.3.1).
    pub const IDR0_VMID16: Field = r(18, 18);
    /// IDR0.CD2L (§6.3.1).
    pub const IDR0_CD2L: Field = r(19, 19);
    /// IDR0.TTENDIAN (§6.3.1).
    pub const IDR0_TTENDIAN: Field = r(22, 21);
    /// IDR0.STALL_MODEL (§6.3.1).
    pub const IDR0_STALL_MODEL: Field = r(25, 24);
    /// IDR0.TERM_MODEL (§6.3.1).
    pub const IDR0_TERM_MODEL: Field = r(26, 26);
    /// IDR0.ST_LEVEL (§6.3.1).
    pub const IDR0_ST_LVL: Field = r(28, 27);
    /// IDR1.SIDSIZE (§6.3.2).
    pub const IDR1_SIDSIZE: Field = r(5, 0);
    /// IDR1.SSIDSIZE (§6.3.2).
    pub const IDR1_SSIDSIZE: Field = r(10, 6);
    /// IDR1.PRIQS (§6.3.2).
    pub const IDR1_PRIQS: Field = r(15, 11);
    /// IDR1.EVENTQS (§6.3.2).
    pub const IDR1_EVTQS: Field = r(20, 16);
    /// IDR1.CMDQS (§6.3.2).
    pub const IDR1_CMDQS: Field = r(25, 21);
    /// IDR3.HAD (§6.3.4).
    pub const IDR3_HAD: Field = r(2, 2);
    /// IDR3.MPAM (§6.3.4).
    pub const IDR3_MPAM: Field = r(7, 7);
    /// IDR3.STT (§6.3.4).
    pub const IDR3_STT: Field = r(9, 9);
    /// IDR3.RIL (§6.3.4).
    pub const IDR3_RIL: Field = r(10, 10);
    /// IDR3.BBM (§6.3.4).
    pub const IDR3_BBM: Field = r(12, 11);
    /// IDR5.OAS (§6.3.6).
    pub const IDR5_OAS: Field = r(2, 0);
    /// IDR5.GRAN4K (§6.3.6).
    pub const IDR5_GRAN4K: Field = r(4, 4);
    /// IDR5.DS (§6.3.6): 52-bit addressing with 4K/16K granules; widens TLBI SCALE to 6 bits.
    pub const IDR5_DS: Field = r(7, 7);
    /// IDR5.GRAN16K (§6.3.6).
    pub const IDR5_GRAN16K: Field = r(5, 5);
    /// IDR5.GRAN64K (§6.3.6).
    pub const IDR5_GRAN64K: Field = r(6, 6);
    /// IDR5.VAX (§6.3.6).
    pub const IDR5_VAX: Field = r(11, 10);

    /// CR0.SMMUEN (§6.3.9).
    pub const CR0_SMMUEN: u32 = 1 << 0;
    /// CR0.PRIQEN (§6.3.9).
    pub const CR0_PRIQEN: u32 = 1 << 1;
    /// CR0.EVENTQEN (§6.3.9).
    pub const CR0_EVTQEN: u32 = 1 << 2;
    /// CR0.CMDQEN (§6.3.9).
    pub const CR0_CMDQEN: u32 = 1 << 3;
    /// CR0.ATSCHK (§6.3.9).
    pub const CR0_ATSCHK: u32 = 1 << 4;
    /// CR0.VMW, bits \[8:6\] (§6.3.9).
    pub const CR0_VMW: u32 = 0x7 << 6;
    /// CR1.QUEUE_IC/OC/SH, bits \[5:0\] (§6.3.11).
    pub const CR1_QUEUE_MASK: u32 = 0x3F;
    /// CR1.TABLE_IC/OC/SH, bits \[11:6\] (§6.3.11).
    pub const CR1_TABLE_MASK: u32 = 0xFC0;
    /// CR2.E2H (§6.3.12).
    pub const CR2_E2H: u32 = 1 << 0;
    /// CR2.RECINVSID (§6.3.12).
    pub const CR2_RECINVSID: u32 = 1 << 1;
    /// CR2.PTM (§6.3.12).
    pub const CR2_PTM: u32 = 1 << 2;
    /// STATUSR.DORMANT (§6.3.13).
    pub const STATUSR_DORMANT: u32 = 1 << 0;
    /// GBPA.Update (§6.3.14).
    pub const GBPA_UPDATE: u32 = 1 << 31;
    /// GBPA.ABORT (§6.3.14).
    pub const GBPA_ABORT: u32 = 1 << 20;
    /// GBPA writable attribute fields: INSTCFG, PRIVCFG, SHCFG, ALLOCCFG, MTCFG, MEMATTR (§6.3.14).
    pub const GBPA_FIELDS: u32 =
        GBPA_ABORT | (0xF << 16) | (0x3 << 12) | (0xF << 8) | (1 << 4) | 0xF;
    /// IRQ_CTRL.GERROR_IRQEN (§6.3.16).
    pub const IRQ_GERROR: u32 = 1 << 0;
    /// IRQ_CTRL.PRIQ_IRQEN (§6.3.16).
    pub const IRQ_PRIQ: u32 = 1 << 1;
    /// IRQ_CTRL.EVENTQ_IRQEN (§6.3.16).
    pub const IRQ_EVTQ: u32 = 1 << 2;
    /// GERROR.CMDQ_ERR (§6.3.19).
    pub const GERROR_CMDQ_ERR: u32 = 1 << 0;
    /// GERROR.EVENTQ_ABT_ERR (§6.3.19).
    pub const GERROR_EVTQ_ABT_ERR: u32 = 1 << 2;
    /// GERROR.PRIQ_ABT_ERR (§6.3.19).
    pub const GERROR_PRIQ_ABT_ERR: u32 = 1 << 3;
    /// GERROR.MSI_CMDQ_ABT_ERR (§6.3.19).
    pub const GERROR_MSI_CMDQ_ABT_ERR: u32 = 1 << 4;
    /// GERROR.MSI_EVENTQ_ABT_ERR (§6.3.19).
    pub const GERROR_MSI_EVTQ_ABT_ERR: u32 = 1 << 5;
    /// GERROR.MSI_PRIQ_ABT_ERR (§6.3.19).
    pub const GERROR_MSI_PRIQ_ABT_ERR: u32 = 1 << 6;
    /// GERROR.MSI_GERROR_ABT_ERR (§6.3.19).
    pub const GERROR_MSI_GERROR_ABT_ERR: u32 = 1 << 7;
    /// GERROR.SFM_ERR (§6.3.19).
    pub const GERROR_SFM_ERR: u32 = 1 << 8;
    /// All GERROR bits this model implements (§6.3.19).
    pub const GERROR_MASK: u32 = 0x1FD;
    /// IRQ_CFG0.ADDR, bits \[55:2\] (§6.3.21).
    pub const IRQ_CFG0_ADDR: Field = r(55, 2);
    /// STRTAB_BASE.ADDR, bits \[55:6\] (§6.3.24).
    pub const STRTAB_BASE_ADDR: Field = r(55, 6);
    /// STRTAB_BASE.RA (§6.3.24).
    pub const STRTAB_BASE_RA: Field = r(62, 62);
    /// STRTAB_BASE_CFG.LOG2SIZE (§6.3.25).
    pub const STRTAB_CFG_LOG2SIZE: Field = r(5, 0);
    /// STRTAB_BASE_CFG.SPLIT (§6.3.25).
    pub const STRTAB_CFG_SPLIT: Field = r(10, 6);
    /// STRTAB_BASE_CFG.FMT (§6.3.25).
    pub const STRTAB_CFG_FMT: Field = r(17, 16);
    /// Q_BASE.LOG2SIZE (§6.3.26).
    pub const Q_BASE_LOG2SIZE: Field = r(4, 0);
    /// Q_BASE.ADDR, bits \[55:5\] (§6.3.26).
    pub const Q_BASE_ADDR: Field = r(55, 5);
    /// Q_BASE.RA / WA (§6.3.26).
    pub const Q_BASE_RA: Field = r(62, 62);
    /// CMDQ_CONS.ERR (§6.3.28).
    pub const CMDQ_CONS_ERR: Field = r(30, 24);
    /// EVENTQ_PROD.OVFLG and EVENTQ_CONS.OVACKFLG, bit 31 (§6.3.95, §6.3.96).
    pub const Q_OVF: u32 = 1 << 31;
}

/// Level-1 stream table descriptor (§5.1).
pub mod l1std {
    use super::Field;
    /// L1STD.Span (§5.1).
    pub const SPAN: Field = Field::new(0, 4, 0);
    /// L1STD.L2Ptr, bits \[55:6\] (§5.1).
    pub const L2PTR: Field = Field::new(0, 55, 6);
}

/// Stream table entry, 64 bytes (§5.2).
pub mod ste {
    use super::Field;
    /// STE.V (§5.2).
    pub const V: Field = Field::new(0, 0, 0);
    /// STE.Config (§5.2).
    pub const CONFIG: Field = Field::new(0, 3, 1);
    /// STE.S1Fmt (§5.2).
    pub const S1FMT: Field = Field::new(0, 5, 4);
    /// STE.S1ContextPtr, bits \[55:6\] (§5.2).
    pub const S1CTXPTR: Field = Field::new(0, 55, 6);
    /// STE.S1CDMax (§5.2).
    pub const S1CDMAX: Field = Field::new(0, 63, 59);
    /// STE.S1DSS (§5.2).
    pub const S1DSS: Field = Field::new(1, 1, 0);
    /// STE.S1CIR (§5.2).
    pub const S1CIR: Field = Field::new(1, 3, 2);
    /// STE.S1COR (§5.2).
    pub const S1COR: Field = Field::new(1, 5, 4);
    /// STE.S1CSH (§5.2).
    pub const S1CSH: Field = Field::new(1, 7, 6);
    /// STE.MEV (§5.2).
    pub const MEV: Field = Field::new(1, 19, 19);
    /// STE.S2FWB (§5.2).
    pub const S2FWB: Field = Field::new(1, 25, 25);
    /// STE.S1STALLD (§5.2).
    pub const S1STALLD: Field = Field::new(1, 27, 27);
    /// STE.EATS (§5.2).
    pub const EATS: Field = Field::new(1, 29, 28);
    /// STE.STRW (§5.2).
    pub const STRW: Field = Field::new(1, 31, 30);
    /// STE.MemAttr (§5.2).
    pub const MEMATTR: Field = Field::new(1, 35, 32);
    /// STE.SHCFG (§5.2).
    pub const SHCFG: Field = Field::new(1, 45, 44);
    /// STE.PRIVCFG (§5.2).
    pub const PRIVCFG: Field = Field::new(1, 49, 48);
    /// STE.INSTCFG (§5.2).
    pub const INSTCFG: Field = Field::new(1, 51, 50);
    /// STE.S2VMID (§5.2).
    pub const S2VMID: Field = Field::new(2, 15, 0);
    /// STE.S2T0SZ (§5.2).
    pub const S2T0SZ: Field = Field::new(2, 37, 32);
    /// STE.S2SL0 (§5.2).
    pub const S2SL0: Field = Field::new(2, 39, 38);
    /// STE.S2TG (§5.2).
    pub const S2TG: Field = Field::new(2, 47, 46);
    /// STE.S2PS (§5.2).
    pub const S2PS: Field = Field::new(2, 50, 48);
    /// STE.S2AA64 (§5.2).
    pub const S2AA64: Field = Field::new(2, 51, 51);
    /// STE.S2ENDI (§5.2).
    pub const S2ENDI: Field = Field::new(2, 52, 52);
    /// STE.S2AFFD (§5.2).
    pub const S2AFFD: Field = Field::new(2, 53, 53);
    /// STE.S2PTW (§5.2).
    pub const S2PTW: Field = Field::new(2, 54, 54);
    /// STE.S2HD (§5.2).
    pub const S2HD: Field = Field::new(2, 55, 55);
    /// STE.S2HA (§5.2).
    pub const S2HA: Field = Field::new(2, 56, 56);
    /// STE.S2S (§5.2).
    pub const S2S: Field = Field::new(2, 57, 57);
    /// STE.S2R (§5.2).
    pub const S2R: Field = Field::new(2, 58, 58);
    /// STE.S2TTB, bits \[55:4\] (§5.2).
    pub const S2TTB: Field = Field::new(3, 55, 4);
    /// Config value: abort (§5.2).
    pub const CONFIG_ABORT: u64 = 0b000;
    /// Config value: bypass (§5.2).
    pub const CONFIG_BYPASS: u64 = 0b100;
    /// Config value: stage 1 only (§5.2).
    pub const CONFIG_S1: u64 = 0b101;
    /// Config value: stage 2 only (§5.2).
    pub const CONFIG_S2: u64 = 0b110;
    /// Config value: nested (§5.2).
    pub const CONFIG_NESTED: u64 = 0b111;
}

/// Context descriptor, 64 bytes (§5.4).
pub mod cd {
    use super::Field;
    /// CD.T0SZ (§5.4).
    pub const T0SZ: Field = Field::new(0, 5, 0);
    /// CD.TG0 (§5.4).
    pub const TG0: Field = Field::new(0, 7, 6);
    /// CD.EPD0 (§5.4).
    pub const EPD0: Field = Field::new(0, 14, 14);
    /// CD.ENDI (§5.4).
    pub const ENDI: Field = Field::new(0, 15, 15);
    /// CD.T1SZ (§5.4).
    pub const T1SZ: Field = Field::new(0, 21, 16);
    /// CD.TG1 (§5.4).
    pub const TG1: Field = Field::new(0, 23, 22);
    /// CD.EPD1 (§5.4).
    pub const EPD1: Field = Field::new(0, 30, 30);
    /// CD.V (§5.4).
    pub const V: Field = Field::new(0, 31, 31);
    /// CD.IPS (§5.4).
    pub const IPS: Field = Field::new(0, 34, 32);
    /// CD.AFFD (§5.4).
    pub const AFFD: Field = Field::new(0, 35, 35);
    /// CD.WXN (§5.4).
    pub const WXN: Field = Field::new(0, 36, 36);
    /// CD.UWXN (§5.4).
    pub const UWXN: Field = Field::new(0, 37, 37);
    /// CD.TBI0 (§5.4).
    pub const TBI0: Field = Field::new(0, 38, 38);
    /// CD.TBI1 (§5.4).
    pub const TBI1: Field = Field::new(0, 39, 39);
    /// CD.PAN (§5.4).
    pub const PAN: Field = Field::new(0, 40, 40);
    /// CD.AA64 (§5.4).
    pub const AA64: Field = Field::new(0, 41, 41);
    /// CD.HD (§5.4).
    pub const HD: Field = Field::new(0, 42, 42);
    /// CD.HA (§5.4).
    pub const HA: Field = Field::new(0, 43, 43);
    /// CD.S (§5.4).
    pub const S: Field = Field::new(0, 44, 44);
    /// CD.R (§5.4).
    pub const R: Field = Field::new(0, 45, 45);
    /// CD.A (§5.4).
    pub const A: Field = Field::new(0, 46, 46);
    /// CD.ASET (§5.4).
    pub const ASET: Field = Field::new(0, 47, 47);
    /// CD.ASID (§5.4).
    pub const ASID: Field = Field::new(0, 63, 48);
    /// CD.HAD0 (§5.4).
    pub const HAD0: Field = Field::new(1, 1, 1);
    /// CD.TTB0, bits \[55:4\] (§5.4).
    pub const TTB0: Field = Field::new(1, 55, 4);
    /// CD.HAD1 (§5.4).
    pub const HAD1: Field = Field::new(2, 1, 1);
    /// CD.TTB1, bits \[55:4\] (§5.4).
    pub const TTB1: Field = Field::new(2, 55, 4);
    /// CD.MAIR0 (§5.4).
    pub const MAIR0: Field = Field::new(3, 31, 0);
    /// L1CD.V (§5.3).
    pub const L1CD_V: Field = Field::new(0, 0, 0);
    /// L1CD.L2Ptr, bits \[55:12\] (§5.3).
    pub const L1CD_L2PTR: Field = Field::new(0, 55, 12);
}

/// Commands, 16 bytes (§4).
pub mod cmd {
    use super::Field;
    /// Opcode (§4.1.1).
    pub const OP: Field = Field::new(0, 7, 0);
    /// SSec, bit 10 (§4.3; position from the command figures, unconfirmed in the rendered text).
    pub const SSEC: Field = Field::new(0, 10, 10);
    /// SSV (§4.1.6).
    pub const SSV: Field = Field::new(0, 11, 11);
    /// SubstreamID (§4.3.3).
    pub const SSID: Field = Field::new(0, 31, 12);
    /// StreamID (§4.3.1).
    pub const SID: Field = Field::new(0, 63, 32);
    /// Leaf (§4.3.1, §4.4).
    pub const LEAF: Field = Field::new(1, 0, 0);
    /// Range of CFGI_STE_RANGE (§4.3.2).
    pub const RANGE: Field = Field::new(1, 4, 0);
    /// TLBI NUM (§4.4.1.1).
    pub const NUM: Field = Field::new(0, 16, 12);
    /// TLBI SCALE (§4.4.1.1).
    pub const SCALE: Field = Field::new(0, 25, 20);
    /// TLBI VMID (§4.4.2.2).
    pub const VMID: Field = Field::new(0, 47, 32);
    /// TLBI ASID (§4.4.2.2).
    pub const ASID: Field = Field::new(0, 63, 48);
    /// TLBI TTL (§4.4.1.1).
    pub const TTL: Field = Field::new(1, 9, 8);
    /// TLBI TG (§4.4.1.1).
    pub const TG: Field = Field::new(1, 11, 10);
    /// TLBI Address\[63:12\] (§4.4.2.3).
    pub const ADDR: Field = Field::new(1, 63, 12);
    /// CMD_SYNC CS (§4.7.3).
    pub const SYNC_CS: Field = Field::new(0, 13, 12);
    /// CMD_SYNC MSH (§4.7.3).
    pub const SYNC_MSH: Field = Field::new(0, 23, 22);
    /// CMD_SYNC MSIAttr (§4.7.3).
    pub const SYNC_MSIATTR: Field = Field::new(0, 27, 24);
    /// CMD_SYNC MSIData (§4.7.3).
    pub const SYNC_MSIDATA: Field = Field::new(0, 63, 32);
    /// CMD_SYNC MSIAddress\[55:2\] (§4.7.3).
    pub const SYNC_MSIADDR: Field = Field::new(1, 55, 2);

    /// CMD_PREFETCH_CONFIG (§4.2.1).
    pub const PREFETCH_CFG: u8 = 0x01;
    /// CMD_PREFETCH_ADDR (§4.2.2).
    pub const PREFETCH_ADDR: u8 = 0x02;
    /// CMD_CFGI_STE (§4.3.1).
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE; CMD_CFGI_ALL is this opcode with Range 31 (§4.3.2, §4.3.6).
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_CFGI_CD (§4.3.3).
    pub const CFGI_CD: u8 = 0x05;
    /// CMD_CFGI_CD_ALL (§4.3.4).
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// CMD_CFGI_VMS_PIDM (§4.3.5).
    pub const CFGI_VMS_PIDM: u8 = 0x07;
    /// CMD_TLBI_NH_ALL (§4.4.2.1).
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// CMD_TLBI_NH_ASID (§4.4.2.2).
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// CMD_TLBI_NH_VA (§4.4.2.3).
    pub const TLBI_NH_VA: u8 = 0x12;
    /// CMD_TLBI_NH_VAA (§4.4.2.4).
    pub const TLBI_NH_VAA: u8 = 0x13;
    /// CMD_TLBI_EL3_ALL (§4.4.3).
    pub const TLBI_EL3_ALL: u8 = 0x18;
    /// CMD_TLBI_EL3_VA (§4.4.3).
    pub const TLBI_EL3_VA: u8 = 0x1A;
    /// CMD_TLBI_EL2_ALL (§4.4.4).
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// CMD_TLBI_EL2_ASID (§4.4.4).
    pub const TLBI_EL2_ASID: u8 = 0x21;
    /// CMD_TLBI_EL2_VA (§4.4.4).
    pub const TLBI_EL2_VA: u8 = 0x22;
    /// CMD_TLBI_EL2_VAA (§4.4.4).
    pub const TLBI_EL2_VAA: u8 = 0x23;
    /// CMD_TLBI_S12_VMALL (§4.4.5).
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// CMD_TLBI_S2_IPA (§4.4.6).
    pub const TLBI_S2_IPA: u8 = 0x2A;
    /// CMD_TLBI_NSNH_ALL (§4.4.7).
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// CMD_ATC_INV (§4.5.1).
    pub const ATC_INV: u8 = 0x40;
    /// CMD_PRI_RESP (§4.5.2).
    pub const PRI_RESP: u8 = 0x41;
    /// CMD_RESUME (§4.7.1).
    pub const RESUME: u8 = 0x44;
    /// CMD_STALL_TERM (§4.7.2).
    pub const STALL_TERM: u8 = 0x45;
    /// CMD_SYNC (§4.7.3).
    pub const SYNC: u8 = 0x46;
    /// CERROR_NONE (§7.1).
    pub const CERROR_NONE: u32 = 0;
    /// CERROR_ILL (§7.1).
    pub const CERROR_ILL: u32 = 1;
    /// CERROR_ABT (§7.1).
    pub const CERROR_ABT: u32 = 2;
    /// CERROR_ATC_INV_SYNC (§7.1).
    pub const CERROR_ATC_INV_SYNC: u32 = 3;
}

/// Event records, 32 bytes (§7.3).
pub mod evt {
    use super::Field;
    /// Event number (§7.3).
    pub const ID: Field = Field::new(0, 7, 0);
    /// SSV (§7.3.3).
    pub const SSV: Field = Field::new(0, 11, 11);
    /// SubstreamID (§7.3.3).
    pub const SSID: Field = Field::new(0, 31, 12);
    /// StreamID (§7.3.3).
    pub const SID: Field = Field::new(0, 63, 32);
    /// Reason / STAG (§7.3.20).
    pub const REASON: Field = Field::new(1, 15, 0);
    /// Stall (§7.3.13, position from the figures).
    pub const STALL: Field = Field::new(1, 31, 31);
    /// PnU (§7.3.2).
    pub const PNU: Field = Field::new(1, 33, 33);
    /// InD (§7.3.2).
    pub const IND: Field = Field::new(1, 34, 34);
    /// RnW (§7.3.2).
    pub const RNW: Field = Field::new(1, 35, 35);
    /// S2 (§7.3, position from the figures).
    pub const S2: Field = Field::new(1, 39, 39);
    /// CLASS (§7.3, position from the figures).
    pub const CLASS: Field = Field::new(1, 41, 40);
    /// TTRnW (§7.3.16 F_PERMISSION; position from the figure, JSON `TT_READ`): 1 = the stage-1
    /// table descriptor read faulted at stage 2.
    pub const TTRNW: Field = Field::new(1, 44, 44);
    /// InputAddr (§7.3.2).
    pub const INPUT_ADDR: Field = Field::new(2, 63, 0);
    /// GPCF, bit 80 of F_STE_FETCH, F_CD_FETCH, F_VMS_FETCH and F_WALK_EABT: the External
    /// abort was a Granule Protection Check fault (§3.25.3, SMMU_IDR0.RME_IMPL = 1).
    pub const GPCF: Field = Field::new(1, 16, 16);
    /// FetchAddr\[55:3\] (§7.3.4).
    pub const FETCH_ADDR: Field = Field::new(3, 55, 3);
    /// IPA\[55:12\] (§7.3.13).
    pub const IPA: Field = Field::new(3, 55, 12);

    /// F_UUT (§7.3.2).
    pub const F_UUT: u8 = 0x01;
    /// C_BAD_STREAMID (§7.3.3).
    pub const C_BAD_STREAMID: u8 = 0x02;
    /// F_STE_FETCH (§7.3.4).
    pub const F_STE_FETCH: u8 = 0x03;
    /// C_BAD_STE (§7.3.5).
    pub const C_BAD_STE: u8 = 0x04;
    /// F_BAD_ATS_TREQ (§7.3.6).
    pub const F_BAD_ATS_TREQ: u8 = 0x05;
    /// F_TRANSL_FORBIDDEN (§7.3.8).
    pub const F_TRANSL_FORBIDDEN: u8 = 0x07;
    /// F_STREAM_DISABLED (§7.3.7).
    pub const F_STREAM_DISABLED: u8 = 0x06;
    /// C_BAD_SUBSTREAMID (§7.3.9).
    pub const C_BAD_SUBSTREAMID: u8 = 0x08;
    /// F_CD_FETCH (§7.3.10).
    pub const F_CD_FETCH: u8 = 0x09;
    /// C_BAD_CD (§7.3.11).
    pub const C_BAD_CD: u8 = 0x0A;
    /// F_WALK_EABT (§7.3.12).
    pub const F_WALK_EABT: u8 = 0x0B;
    /// F_TRANSLATION (§7.3.13).
    pub const F_TRANSLATION: u8 = 0x10;
    /// F_ADDR_SIZE (§7.3.14).
    pub const F_ADDR_SIZE: u8 = 0x11;
    /// F_ACCESS (§7.3.15).
    pub const F_ACCESS: u8 = 0x12;
    /// F_PERMISSION (§7.3.16).
    pub const F_PERMISSION: u8 = 0x13;
    /// CLASS = CD (§7.3).
    pub const CLASS_CD: u64 = 0b00;
    /// CLASS = TT (§7.3).
    pub const CLASS_TT: u64 = 0b01;
    /// CLASS = IN (§7.3).
    pub const CLASS_IN: u64 = 0b10;
}

/// PRI queue records, 16 bytes (§8; positions from the figures, unconfirmed in the text).
pub mod priq {
    use super::Field;
    /// StreamID (§8).
    pub const SID: Field = Field::new(0, 31, 0);
    /// SubstreamID (§8).
    pub const SSID: Field = Field::new(0, 51, 32);
    /// Priv (§8).
    pub const PRIV: Field = Field::new(0, 58, 58);
    /// X (§8).
    pub const EXEC: Field = Field::new(0, 59, 59);
    /// R (§8).
    pub const READ: Field = Field::new(0, 60, 60);
    /// W (§8).
    pub const WRITE: Field = Field::new(0, 61, 61);
    /// Last (§8).
    pub const LAST: Field = Field::new(0, 62, 62);
    /// SSV (§8).
    pub const SSV: Field = Field::new(0, 63, 63);
    /// PRGIndex (§8).
    pub const PRG_IDX: Field = Field::new(1, 8, 0);
    /// Page address\[63:12\] (§8).
    pub const ADDR: Field = Field::new(1, 63, 12);
}

/// VMSAv8-64 translation table descriptor bits (Arm ARM D8.3).
pub mod pte {
    /// Valid.
    pub const VALID: u64 = 1 << 0;
    /// Table (at levels 0..2) or page (at level 3).
    pub const TABLE: u64 = 1 << 1;
    /// Stage-1 AP\[1\]: EL0 access / stage-2 S2AP\[0\]: read.
    pub const AP1: u64 = 1 << 6;
    /// Stage-1 AP\[2\]: read-only / stage-2 S2AP\[1\]: write.
    pub const AP2: u64 = 1 << 7;
    /// Access flag.
    pub const AF: u64 = 1 << 10;
    /// Stage-1 not-global.
    pub const NG: u64 = 1 << 11;
    /// Stage-1 PXN / stage-2 XN\[0\].
    pub const PXN: u64 = 1 << 53;
    /// Stage-1 UXN / stage-2 XN\[1\].
    pub const UXN: u64 = 1 << 54;
    /// Stage-1 table PXNTable.
    pub const PXN_TABLE: u64 = 1 << 59;
    /// Stage-1 table UXNTable.
    pub const UXN_TABLE: u64 = 1 << 60;
    /// Stage-1 table APTable\[0\]: no EL0 access.
    pub const AP_TABLE0: u64 = 1 << 61;
    /// Stage-1 table APTable\[1\]: no write.
    pub const AP_TABLE1: u64 = 1 << 62;
    /// Output address bits \[47:12\] (no 52-bit addressing in this model).
    pub const OA_MASK: u64 = 0x0000_FFFF_FFFF_F000;
}

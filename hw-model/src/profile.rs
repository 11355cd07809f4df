//! ID-register profiles (QEMU-virt-like, MMU-600-like, Grace-like) and IIDR values.

use crate::fields::{reg, Field};

/// The identification registers an instance presents (§6.3.1–§6.3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Short name for reports.
    pub name: &'static str,
    /// SMMU_IDR0..IDR5.
    pub idr: [u32; 6],
    /// SMMU_IIDR (errata paths key on it).
    pub iidr: u32,
    /// SMMU_AIDR (0x00 = v3.0, 0x01 = v3.1, 0x02 = v3.2, ...).
    pub aidr: u32,
}

impl Profile {
    /// Like QEMU's `virt` SMMUv3 (stage 1 + 2 "nested" variant): AArch64 tables, coherent, 16-bit
    /// ASID/VMID, no stall, terminate model 1, 2-level stream table, SIDSIZE 16, queues 2^19, RIL,
    /// OAS 44, all granules, IIDR 0, AIDR v3.1. No MSI, SEV, HYP, ATS or PRI.
    pub fn qemu_virt() -> Self {
        Self {
            name: "qemu-virt",
            idr: [0x0D44_101B, 0x0273_0010, 0, 0x1404, 0, 0x74],
            iidr: 0,
            aidr: 1,
        }
    }

    /// QEMU 7.2's `virt` SMMUv3, ID registers as the bare-metal firmware (`firmware/`) read
    /// them: as [`Profile::qemu_virt`] but stage 1 only (`IDR0` 0x0d40101a: no `S2P`). Its
    /// `GBPA` is not implemented; pair it with `ModelConfig::gbpa_ignored`.
    pub fn qemu_7_2() -> Self {
        Self {
            name: "qemu-7.2",
            idr: [0x0D40_101A, 0x0273_0010, 0, 0x1404, 0, 0x74],
            iidr: 0,
            aidr: 1,
        }
    }

    /// Like an Arm MMU-600 r1p0: S1+S2, HYP, ATS, PRI, MSI, SEV, stall model 0 (stall and
    /// terminate), 2-level stream and CD tables, SIDSIZE 24, SSIDSIZE 20, OAS 48, 4K/16K/64K,
    /// IIDR of Arm product 0x483, AIDR v3.1 (no RIL).
    pub fn mmu600() -> Self {
        let idr0 = (1 << 0) // S2P
            | (1 << 1) // S1P
            | (0b10 << 2) // TTF AArch64
            | (1 << 4) // COHACC
            | (1 << 5) // BTM
            | (1 << 9) // HYP
            | (1 << 10) // ATS
            | (1 << 12) // ASID16
            | (1 << 13) // MSI
            | (1 << 14) // SEV
            | (1 << 16) // PRI
            | (1 << 18) // VMID16
            | (1 << 19) // CD2L
            | (0b10 << 21) // TTENDIAN LE
            | (1 << 27); // ST_LEVEL 2-level
        let idr1 = 0x18 | (20 << 6) | (19 << 11) | (19 << 16) | (19 << 21);
        Self {
            name: "mmu-600",
            idr: [idr0, idr1, 0, 0x0004, 0, 0x75],
            iidr: 0x4831_043B,
            aidr: 1,
        }
    }

    /// Grace-like (NVIDIA Grace SoC SMMU, v3.2): coherent, HYP, S1+S2, 2-level, RIL, ATS, MSI,
    /// SEV, no PRI, no stall (STALL_MODEL 1), SIDSIZE 20, SSIDSIZE 20, OAS 48, 4K/16K/64K.
    /// The IIDR is an illustrative NVIDIA value (JEP106 0x36B), not copied from silicon.
    pub fn grace() -> Self {
        let idr0 = (1 << 0)
            | (1 << 1)
            | (0b10 << 2)
            | (1 << 4)
            | (1 << 5)
            | (1 << 9)
            | (1 << 10)
            | (1 << 12)
            | (1 << 13)
            | (1 << 14)
            | (1 << 18)
            | (1 << 19)
            | (0b10 << 21)
            | (0b01 << 24) // STALL_MODEL: stall not supported
            | (1 << 27);
        let idr1 = 0x14 | (20 << 6) | (19 << 16) | (19 << 21);
        Self {
            name: "grace",
            idr: [idr0, idr1, 0, 0x1404, 0, 0x75],
            iidr: 0x0000_036B,
            aidr: 2,
        }
    }

    /// Returns the profile with one ID-register field changed (`idr_index` 0..=5).
    pub fn with(mut self, idr_index: usize, field: Field, value: u64) -> Self {
        if let Some(r) = self.idr.get_mut(idr_index) {
            *r = field.put(u64::from(*r), value) as u32;
        }
        self
    }

    /// Returns the profile with another IIDR.
    pub fn with_iidr(mut self, iidr: u32) -> Self {
        self.iidr = iidr;
        self
    }

    pub(crate) fn idr0(&self, f: Field) -> u64 {
        f.of(u64::from(self.idr[0]))
    }
    pub(crate) fn idr1(&self, f: Field) -> u64 {
        f.of(u64::from(self.idr[1]))
    }
    pub(crate) fn idr3(&self, f: Field) -> u64 {
        f.of(u64::from(self.idr[3]))
    }
    pub(crate) fn idr5(&self, f: Field) -> u64 {
        f.of(u64::from(self.idr[5]))
    }
    pub(crate) fn s1p(&self) -> bool {
        self.idr0(reg::IDR0_S1P) != 0
    }
    pub(crate) fn s2p(&self) -> bool {
        self.idr0(reg::IDR0_S2P) != 0
    }
    pub(crate) fn hyp(&self) -> bool {
        self.idr0(reg::IDR0_HYP) != 0
    }
    pub(crate) fn ats(&self) -> bool {
        self.idr0(reg::IDR0_ATS) != 0
    }
    pub(crate) fn pri(&self) -> bool {
        self.idr0(reg::IDR0_PRI) != 0
    }
    pub(crate) fn msi(&self) -> bool {
        self.idr0(reg::IDR0_MSI) != 0
    }
    pub(crate) fn sev(&self) -> bool {
        self.idr0(reg::IDR0_SEV) != 0
    }
    pub(crate) fn vmw(&self) -> bool {
        self.idr0(reg::IDR0_VMW) != 0
    }
    pub(crate) fn stall_model(&self) -> u64 {
        self.idr0(reg::IDR0_STALL_MODEL)
    }
    pub(crate) fn two_level_st(&self) -> bool {
        self.idr0(reg::IDR0_ST_LVL) == 1
    }
    pub(crate) fn ril(&self) -> bool {
        self.idr3(reg::IDR3_RIL) != 0
    }
    /// Output address size in bits (IDR5.OAS), capped to 48 (no 52-bit support in the model).
    pub(crate) fn oas_bits(&self) -> u32 {
        ps_bits(self.idr5(reg::IDR5_OAS)).min(48)
    }
    pub(crate) fn gran_ok(&self, shift: u32) -> bool {
        match shift {
            12 => self.idr5(reg::IDR5_GRAN4K) != 0,
            14 => self.idr5(reg::IDR5_GRAN16K) != 0,
            16 => self.idr5(reg::IDR5_GRAN64K) != 0,
            _ => false,
        }
    }
}

/// Decodes a PS/IPS/OAS encoding into bits (§5.4, reserved values as 52).
pub(crate) fn ps_bits(enc: u64) -> u32 {
    match enc {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

//! The registers adoption decides on, read once and then only looked at (SPEC K1, K2, K13).
//!
//! [`RegisterSnapshot::read`] performs reads only: nothing here writes a register, so taking a
//! snapshot is harmless whatever the SMMU is doing. Every accessor goes through the
//! `tock-registers` field definitions of [`smmu::arch::regs`]; none of them knows a bit
//! position of its own.

use smmu::arch::idr::{Features, IdRegs};
use smmu::arch::regs::{offset, CR0, CR1, CR2, GBPA, GERROR, STRTAB_BASE, STRTAB_BASE_CFG};
use smmu::RegisterAccess;
use tock_registers::LocalRegisterCopy;

/// The ID, control, error and stream-table registers of a live SMMU, as read by the crash
/// kernel before it touches anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterSnapshot {
    /// `SMMU_IDR0`–`IDR5`, `IIDR`, `AIDR`.
    pub ids: IdRegs,
    /// `SMMU_CR0` (§6.3.9).
    pub cr0: u32,
    /// `SMMU_CR1` (§6.3.11): table and queue memory attributes, inherited as they are.
    pub cr1: u32,
    /// `SMMU_CR2` (§6.3.12).
    pub cr2: u32,
    /// `SMMU_GBPA` (§6.3.14).
    pub gbpa: u32,
    /// `SMMU_GERROR` (§6.3.19).
    pub gerror: u32,
    /// `SMMU_GERRORN` (§6.3.20).
    pub gerrorn: u32,
    /// `SMMU_STRTAB_BASE` (§6.3.24), all 64 bits.
    pub strtab_base: u64,
    /// `SMMU_STRTAB_BASE_CFG` (§6.3.25).
    pub strtab_base_cfg: u32,
}

/// The stable one-line text form, for a crash kernel to print into its log so that the
/// registers can be given to `smmuctl inspect --regs` with the memory dump:
/// `SMMU_IDR0=0x… SMMU_IDR1=0x… … SMMU_STRTAB_BASE=0x… SMMU_STRTAB_BASE_CFG=0x…`, every
/// register of the snapshot by its specification name, in this fixed order, in hexadecimal.
///
/// ```
/// let snap = smmu_kdump::RegisterSnapshot { cr0: 0xd, ..Default::default() };
/// let line = snap.to_string();
/// assert!(line.starts_with("SMMU_IDR0=0x0 SMMU_IDR1=0x0 "));
/// assert!(line.contains(" SMMU_CR0=0xd "));
/// assert!(line.ends_with(" SMMU_STRTAB_BASE_CFG=0x0"));
/// ```
impl core::fmt::Display for RegisterSnapshot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [idr0, idr1, idr2, idr3, idr4, idr5] = self.ids.idr;
        let regs: [(&str, u64); 16] = [
            ("IDR0", idr0.into()),
            ("IDR1", idr1.into()),
            ("IDR2", idr2.into()),
            ("IDR3", idr3.into()),
            ("IDR4", idr4.into()),
            ("IDR5", idr5.into()),
            ("IIDR", self.ids.iidr.into()),
            ("AIDR", self.ids.aidr.into()),
            ("CR0", self.cr0.into()),
            ("CR1", self.cr1.into()),
            ("CR2", self.cr2.into()),
            ("GBPA", self.gbpa.into()),
            ("GERROR", self.gerror.into()),
            ("GERRORN", self.gerrorn.into()),
            ("STRTAB_BASE", self.strtab_base),
            ("STRTAB_BASE_CFG", self.strtab_base_cfg.into()),
        ];
        for (i, (name, value)) in regs.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}SMMU_{name}={value:#x}")?;
        }
        Ok(())
    }
}

impl RegisterSnapshot {
    /// Reads every register of the snapshot. Only reads: no register is written.
    pub fn read<R: RegisterAccess + ?Sized>(regs: &R) -> Self {
        let id = |o: usize| regs.read32(o);
        RegisterSnapshot {
            ids: IdRegs {
                idr: [
                    id(offset::IDR0),
                    id(offset::IDR1),
                    id(offset::IDR2),
                    id(offset::IDR3),
                    id(offset::IDR4),
                    id(offset::IDR5),
                ],
                iidr: id(offset::IIDR),
                aidr: id(offset::AIDR),
            },
            cr0: regs.read32(offset::CR0),
            cr1: regs.read32(offset::CR1),
            cr2: regs.read32(offset::CR2),
            gbpa: regs.read32(offset::GBPA),
            gerror: regs.read32(offset::GERROR),
            gerrorn: regs.read32(offset::GERRORN),
            strtab_base: regs.read64(offset::STRTAB_BASE),
            strtab_base_cfg: regs.read32(offset::STRTAB_BASE_CFG),
        }
    }

    /// The ID registers decoded ([`Features::decode`]).
    pub fn features(&self) -> Features {
        Features::decode(&self.ids)
    }

    /// `CR0` with its fields.
    pub fn cr0_reg(&self) -> LocalRegisterCopy<u32, CR0::Register> {
        LocalRegisterCopy::new(self.cr0)
    }

    /// `CR1` with its fields.
    pub fn cr1_reg(&self) -> LocalRegisterCopy<u32, CR1::Register> {
        LocalRegisterCopy::new(self.cr1)
    }

    /// `CR2` with its fields.
    pub fn cr2_reg(&self) -> LocalRegisterCopy<u32, CR2::Register> {
        LocalRegisterCopy::new(self.cr2)
    }

    /// `GBPA` with its fields.
    pub fn gbpa_reg(&self) -> LocalRegisterCopy<u32, GBPA::Register> {
        LocalRegisterCopy::new(self.gbpa)
    }

    /// `STRTAB_BASE` with its fields.
    pub fn strtab_base_reg(&self) -> LocalRegisterCopy<u64, STRTAB_BASE::Register> {
        LocalRegisterCopy::new(self.strtab_base)
    }

    /// `STRTAB_BASE_CFG` with its fields.
    pub fn strtab_base_cfg_reg(&self) -> LocalRegisterCopy<u32, STRTAB_BASE_CFG::Register> {
        LocalRegisterCopy::new(self.strtab_base_cfg)
    }

    /// `CR0.SMMUEN`: the SMMU translates (or aborts) through its stream table.
    pub fn smmuen(&self) -> bool {
        self.cr0_reg().is_set(CR0::SMMUEN)
    }

    /// `CR0.ATSCHK`: the crashed kernel's ATS-check policy (SPEC K9 keeps it).
    pub fn atschk(&self) -> bool {
        self.cr0_reg().is_set(CR0::ATSCHK)
    }

    /// Whether any of `CR0.CMDQEN`, `EVENTQEN`, `PRIQEN` is set: queues the crashed kernel
    /// left running, which an adopt-mode reset turns off (SPEC K5).
    pub fn queues_enabled(&self) -> bool {
        self.cr0_reg()
            .any_matching_bits_set(CR0::CMDQEN::SET + CR0::EVTQEN::SET + CR0::PRIQEN::SET)
    }

    /// `CR0` with the three queue enables cleared and every other bit as found: the value an
    /// adopt-mode reset writes first (SPEC K5).
    pub fn cr0_without_queues(&self) -> u32 {
        let mut r = self.cr0_reg();
        r.modify(CR0::CMDQEN::CLEAR + CR0::EVTQEN::CLEAR + CR0::PRIQEN::CLEAR);
        r.get()
    }

    /// `CR2.E2H` as read back (SPEC K13). The field is RES0 when `IDR0.Hyp` is 0, so on such
    /// an SMMU it reads 0 and EL2-E2H StreamWorlds do not exist.
    pub fn e2h(&self) -> bool {
        self.cr2_reg().is_set(CR2::E2H)
    }

    /// `GBPA.ABORT`: what an SMMU with `SMMUEN` = 0 does with incoming transactions.
    pub fn gbpa_abort(&self) -> bool {
        self.gbpa_reg().is_set(GBPA::ABORT)
    }

    /// The global errors that are active: a bit of `GERROR` that differs from the same bit
    /// of `GERRORN` (§6.3.19), restricted to the architected error fields.
    pub fn active_gerrors(&self) -> u32 {
        let defined = GERROR::CMDQ_ERR::SET
            + GERROR::EVTQ_ABT_ERR::SET
            + GERROR::PRIQ_ABT_ERR::SET
            + GERROR::MSI_CMDQ_ABT_ERR::SET
            + GERROR::MSI_EVTQ_ABT_ERR::SET
            + GERROR::MSI_PRIQ_ABT_ERR::SET
            + GERROR::MSI_GERROR_ABT_ERR::SET
            + GERROR::SFM_ERR::SET
            + GERROR::CMDQP_ERR::SET
            + GERROR::DPT_ERR::SET;
        (self.gerror ^ self.gerrorn) & defined.value
    }

    /// `SFM_ERR` is active: the SMMU is in Service Failure Mode (SPEC K1 refuses adoption).
    pub fn sfm_active(&self) -> bool {
        LocalRegisterCopy::<u32, GERROR::Register>::new(self.active_gerrors())
            .is_set(GERROR::SFM_ERR)
    }

    /// `STRTAB_BASE_CFG.FMT` (0 linear, 1 2-level, 2 and 3 reserved).
    pub fn strtab_fmt(&self) -> u32 {
        self.strtab_base_cfg_reg().read(STRTAB_BASE_CFG::FMT)
    }

    /// `STRTAB_BASE_CFG.SPLIT`.
    pub fn strtab_split(&self) -> u32 {
        self.strtab_base_cfg_reg().read(STRTAB_BASE_CFG::SPLIT)
    }

    /// `STRTAB_BASE_CFG.LOG2SIZE`.
    pub fn strtab_log2size(&self) -> u32 {
        self.strtab_base_cfg_reg().read(STRTAB_BASE_CFG::LOG2SIZE)
    }

    /// The stream table's physical address: `STRTAB_BASE.ADDR` (bits \[55:6\]) in place, with
    /// `RA` and the RES0 bits dropped.
    pub fn strtab_addr(&self) -> u64 {
        self.strtab_base_reg().read(STRTAB_BASE::ADDR) << STRTAB_BASE::ADDR.shift
    }

    /// `STRTAB_BASE.RA`, the read-allocate hint (informational only).
    pub fn strtab_ra(&self) -> bool {
        self.strtab_base_reg().is_set(STRTAB_BASE::RA)
    }
}

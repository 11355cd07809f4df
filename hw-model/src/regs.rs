//! The register file (§6.3): accesses and their size rules (R1–R3), the acknowledged and guarded
//! registers (R4–R17), GERROR/GERRORN (R18) and the command-queue index registers (Q1–Q3).

use crate::fields::reg;
use crate::model::{AckReg, CuPolicy, Model, Pending, ViolationKind};

const RO_REGS: &[(u64, &str)] = &[
    (reg::IDR0, "IDR0"),
    (reg::IDR1, "IDR1"),
    (reg::IDR2, "IDR2"),
    (reg::IDR3, "IDR3"),
    (reg::IDR4, "IDR4"),
    (reg::IDR5, "IDR5"),
    (reg::IIDR, "IIDR"),
    (reg::AIDR, "AIDR"),
    (reg::CR0ACK, "CR0ACK"),
    (reg::STATUSR, "STATUSR"),
    (reg::AGBPA, "AGBPA"),
    (reg::IRQ_CTRLACK, "IRQ_CTRLACK"),
    (reg::GERROR, "GERROR"),
];

const REG64: &[u64] = &[
    reg::GERROR_IRQ_CFG0,
    reg::STRTAB_BASE,
    reg::CMDQ_BASE,
    reg::EVTQ_BASE,
    reg::EVTQ_IRQ_CFG0,
    reg::PRIQ_BASE,
    reg::PRIQ_IRQ_CFG0,
];

/// Arm MMU-600 style PIDR/CIDR bytes at 0xFD0..0xFFC (IMPLEMENTATION DEFINED).
const IDREGS: [u32; 12] = [
    0x04, 0, 0, 0, 0x83, 0xB4, 0x0B, 0x00, 0x0D, 0xF0, 0x05, 0xB1,
];

impl Model {
    // ---------------------------------------------------------------- register access

    /// 32-bit register read at `offset` (page 0 at 0, page 1 at 0x10000).
    pub fn read32(&mut self, offset: u64) -> u32 {
        self.read(offset, 4) as u32
    }

    /// 32-bit register write.
    pub fn write32(&mut self, offset: u64, value: u32) {
        self.write(offset, 4, u64::from(value));
    }

    /// 64-bit register read (only the 64-bit registers are guaranteed, R1).
    pub fn read64(&mut self, offset: u64) -> u64 {
        self.read(offset, 8)
    }

    /// 64-bit register write.
    pub fn write64(&mut self, offset: u64, value: u64) {
        self.write(offset, 8, value);
    }

    pub(crate) fn access_ok(&mut self, offset: u64, size: u8, value: u64) -> bool {
        let ok = match size {
            4 => offset & 3 == 0,
            8 => offset & 7 == 0 && REG64.contains(&offset),
            _ => false,
        };
        if !ok {
            self.violate(
                ViolationKind::BadAccess,
                "register access size/alignment",
                offset,
                u64::from(size),
                value,
            );
        }
        ok
    }

    pub(crate) fn alias(&mut self, offset: u64, value: u64) -> Option<u64> {
        const P0: [u64; 4] = [0xA8, 0xAC, 0xC8, 0xCC];
        if P0.contains(&(offset & !4)) || P0.contains(&offset) {
            if self.cfg.page0_alias {
                return Some(offset + reg::PAGE1);
            }
            self.violate(
                ViolationKind::Page0Alias,
                "page-0 alias of a page-1 register",
                offset,
                0,
                value,
            );
            return None;
        }
        Some(offset)
    }

    /// Register read of `size` bytes (1, 2, 4 or 8). Other sizes and misaligned accesses are
    /// CONSTRAINED UNPREDICTABLE: logged (R1) and read as zero.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.tick();
        if self.realm_page_access(offset) {
            return 0;
        }
        if !self.access_ok(offset, size, 0) {
            return 0;
        }
        let Some(offset) = self.alias(offset, 0) else {
            return 0;
        };
        if size == 8 {
            let lo = self.read_reg32(offset);
            let hi = self.read_reg32(offset + 4);
            return u64::from(lo) | (u64::from(hi) << 32);
        }
        u64::from(self.read_reg32(offset))
    }

    /// Register write of `size` bytes; see [`Model::read`].
    pub fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.write_inner(offset, size, value);
        // A write may have run commands (prefetches fetch STEs and CDs).
        self.log_freed_reads();
    }

    fn write_inner(&mut self, offset: u64, size: u8, value: u64) {
        self.tick();
        if self.realm_page_access(offset) {
            return;
        }
        if !self.access_ok(offset, size, value) {
            return;
        }
        let Some(offset) = self.alias(offset, value) else {
            return;
        };
        if size == 8 {
            self.write_reg64(offset, value);
        } else {
            self.write_reg32(offset, value as u32);
        }
    }

    pub(crate) fn cr0_impl(&self) -> u32 {
        let mut m = reg::CR0_SMMUEN | reg::CR0_EVTQEN | reg::CR0_CMDQEN;
        if self.prof.pri() {
            m |= reg::CR0_PRIQEN;
        }
        if self.prof.ats() {
            m |= reg::CR0_ATSCHK;
        }
        if self.prof.vmw() {
            m |= reg::CR0_VMW;
        }
        m
    }

    pub(crate) fn irq_impl(&self) -> u32 {
        let mut m = reg::IRQ_GERROR | reg::IRQ_EVTQ;
        if self.prof.pri() {
            m |= reg::IRQ_PRIQ;
        }
        m
    }

    pub(crate) fn reg64_value(&self, off: u64) -> Option<u64> {
        Some(match off {
            reg::GERROR_IRQ_CFG0 => self.irq_cfg[0][0],
            reg::EVTQ_IRQ_CFG0 => self.irq_cfg[1][0],
            reg::PRIQ_IRQ_CFG0 => self.irq_cfg[2][0],
            reg::STRTAB_BASE => self.strtab_base,
            reg::CMDQ_BASE => self.cmdq.base,
            reg::EVTQ_BASE => self.evtq.base,
            reg::PRIQ_BASE => self.priq.base,
            _ => return None,
        })
    }

    pub(crate) fn read_reg32(&mut self, off: u64) -> u32 {
        if let Some(v) = self.reg64_value(off & !7) {
            return if off & 4 == 0 {
                v as u32
            } else {
                (v >> 32) as u32
            };
        }
        if let Some(v) = self.realm_id_reg(off) {
            return v;
        }
        let p = &self.prof;
        match off {
            reg::IDR0..=reg::IDR5 => p.idr[(off / 4) as usize],
            reg::IIDR => p.iidr,
            reg::AIDR => p.aidr,
            reg::CR0 => self.cr0,
            reg::CR0ACK => self.cr0ack,
            reg::CR1 => self.cr1,
            reg::CR2 => self.cr2,
            reg::STATUSR => {
                let dormant = p.idr0(reg::IDR0_DORMHINT) != 0
                    && self.cr0ack & reg::CR0_SMMUEN == 0
                    && self.pending.is_empty();
                if dormant {
                    reg::STATUSR_DORMANT
                } else {
                    0
                }
            }
            // QEMU 7.2 does not implement GBPA: it reads as 0 (ModelConfig::gbpa_ignored).
            reg::GBPA if self.cfg.gbpa_ignored => 0,
            reg::GBPA => {
                let upd = self.pending.iter().any(|x| x.reg == AckReg::Gbpa);
                self.gbpa | if upd { reg::GBPA_UPDATE } else { 0 }
            }
            reg::AGBPA => 0,
            reg::IRQ_CTRL => self.irq_ctrl,
            reg::IRQ_CTRLACK => self.irq_ctrlack,
            reg::GERROR => self.gerror,
            reg::GERRORN => self.gerrorn,
            reg::GERROR_IRQ_CFG1 => self.irq_cfg[0][1] as u32,
            reg::GERROR_IRQ_CFG2 => self.irq_cfg[0][2] as u32,
            reg::EVTQ_IRQ_CFG1 => self.irq_cfg[1][1] as u32,
            reg::EVTQ_IRQ_CFG2 => self.irq_cfg[1][2] as u32,
            reg::PRIQ_IRQ_CFG1 if p.pri() => self.irq_cfg[2][1] as u32,
            reg::PRIQ_IRQ_CFG2 if p.pri() => self.irq_cfg[2][2] as u32,
            reg::STRTAB_BASE_CFG => self.strtab_cfg,
            reg::CMDQ_PROD => self.cmdq.prod,
            reg::CMDQ_CONS => self.cmdq.cons,
            reg::EVTQ_PROD => self.evtq.prod,
            reg::EVTQ_CONS => self.evtq.cons,
            reg::PRIQ_PROD if p.pri() => self.priq.prod,
            reg::PRIQ_CONS if p.pri() => self.priq.cons,
            0xFD0..=0xFFC => IDREGS[((off - 0xFD0) / 4) as usize],
            _ => 0,
        }
    }

    pub(crate) fn write_reg64(&mut self, off: u64, v: u64) {
        self.write_reg64_masked(off, v, u64::MAX);
    }

    pub(crate) fn guard(
        &mut self,
        what: &'static str,
        off: u64,
        old: u64,
        new: u64,
        guarded: bool,
    ) -> bool {
        if guarded {
            self.violate(ViolationKind::GuardedWrite, what, off, old, new);
            return self.cfg.cu_policy == CuPolicy::Accept;
        }
        true
    }

    pub(crate) fn enabled(&self, bit: u32) -> bool {
        (self.cr0 | self.cr0ack) & bit != 0
    }

    pub(crate) fn irq_enabled(&self, bit: u32) -> bool {
        (self.irq_ctrl | self.irq_ctrlack) & bit != 0
    }

    pub(crate) fn write_reg64_masked(&mut self, off: u64, v: u64, mask: u64) {
        let Some(old) = self.reg64_value(off) else {
            return;
        };
        let new = (old & !mask) | (v & mask);
        match off {
            reg::GERROR_IRQ_CFG0 | reg::EVTQ_IRQ_CFG0 | reg::PRIQ_IRQ_CFG0 => {
                let (i, bit, name) = match off {
                    reg::GERROR_IRQ_CFG0 => (0, reg::IRQ_GERROR, "GERROR_IRQ_CFG0"),
                    reg::EVTQ_IRQ_CFG0 => (1, reg::IRQ_EVTQ, "EVENTQ_IRQ_CFG0"),
                    _ => (2, reg::IRQ_PRIQ, "PRIQ_IRQ_CFG0"),
                };
                if i == 2 && !self.prof.pri() {
                    return;
                }
                let g = self.irq_enabled(bit);
                if self.guard(name, off, old, new, g) {
                    self.irq_cfg[i][0] = new & reg::IRQ_CFG0_ADDR.mask();
                }
            }
            reg::STRTAB_BASE => {
                let g = self.enabled(reg::CR0_SMMUEN);
                if self.guard("STRTAB_BASE", off, old, new, g) {
                    self.strtab_base =
                        new & (reg::STRTAB_BASE_ADDR.mask() | reg::STRTAB_BASE_RA.mask());
                    self.lint_strtab();
                }
            }
            reg::CMDQ_BASE | reg::EVTQ_BASE | reg::PRIQ_BASE => {
                let (bit, name) = match off {
                    reg::CMDQ_BASE => (reg::CR0_CMDQEN, "CMDQ_BASE"),
                    reg::EVTQ_BASE => (reg::CR0_EVTQEN, "EVENTQ_BASE"),
                    _ => (reg::CR0_PRIQEN, "PRIQ_BASE"),
                };
                if off == reg::PRIQ_BASE && !self.prof.pri() {
                    return;
                }
                let g = self.enabled(bit);
                if !self.guard(name, off, old, new, g) {
                    return;
                }
                let stored = new
                    & (reg::Q_BASE_ADDR.mask()
                        | reg::Q_BASE_RA.mask()
                        | reg::Q_BASE_LOG2SIZE.mask());
                let q = match off {
                    reg::CMDQ_BASE => &mut self.cmdq,
                    reg::EVTQ_BASE => &mut self.evtq,
                    _ => &mut self.priq,
                };
                let order_bad = q.idx_written;
                q.base = stored;
                q.idx_written = false;
                let addr = reg::Q_BASE_ADDR.of(stored) << 5;
                let aligned = q.base_addr();
                if order_bad {
                    self.violate(ViolationKind::QueueInitOrder, name, off, old, new);
                }
                if addr != aligned {
                    self.violate(ViolationKind::MisalignedBase, name, off, addr, aligned);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn lint_strtab(&mut self) {
        let addr = reg::STRTAB_BASE_ADDR.of(self.strtab_base) << 6;
        let eff = self.strtab_addr();
        if addr != eff {
            self.violate(
                ViolationKind::MisalignedBase,
                "STRTAB_BASE",
                reg::STRTAB_BASE,
                addr,
                eff,
            );
        }
    }

    pub(crate) fn write_ack_fields(&mut self, which: AckReg, fields: &[u32], new: u32) {
        let (cur, name, off) = match which {
            AckReg::Cr0 => (self.cr0, "CR0", reg::CR0),
            _ => (self.irq_ctrl, "IRQ_CTRL", reg::IRQ_CTRL),
        };
        let mut result = cur;
        for &f in fields {
            if (new ^ cur) & f == 0 {
                continue;
            }
            let busy = self
                .pending
                .iter()
                .position(|p| p.reg == which && p.mask == f);
            if let Some(i) = busy {
                self.violate(
                    ViolationKind::ChangeBeforeAck,
                    name,
                    off,
                    u64::from(cur),
                    u64::from(new),
                );
                if self.cfg.cu_policy == CuPolicy::Ignore {
                    continue;
                }
                self.pending.remove(i);
            }
            result = (result & !f) | (new & f);
            let due = self.time + self.latency();
            self.pending.push(Pending {
                reg: which,
                mask: f,
                value: new & f,
                due,
            });
        }
        match which {
            AckReg::Cr0 => self.cr0 = result,
            _ => self.irq_ctrl = result,
        }
        self.apply_due();
    }

    #[allow(clippy::too_many_lines)]
    pub(crate) fn write_reg32(&mut self, off: u64, v: u32) {
        if self.reg64_value(off & !7).is_some() {
            let shift = (off & 4) * 8;
            self.write_reg64_masked(off & !7, u64::from(v) << shift, 0xFFFF_FFFFu64 << shift);
            return;
        }
        if off == reg::GBPA && self.is_realm_interface() {
            // SMMU_R_GBPA is RO, ABORT RES1 (§6.3.133).
            let old = u64::from(self.read_reg32(off));
            self.violate(
                ViolationKind::ReadOnlyWrite,
                "R_GBPA",
                off,
                old,
                u64::from(v),
            );
            return;
        }
        if let Some(&(_, name)) = RO_REGS.iter().find(|(o, _)| *o == off) {
            let old = u64::from(self.read_reg32(off));
            self.violate(ViolationKind::ReadOnlyWrite, name, off, old, u64::from(v));
            return;
        }
        if (0xFD0..=0xFFC).contains(&off) {
            self.violate(
                ViolationKind::ReadOnlyWrite,
                "ID registers",
                off,
                0,
                u64::from(v),
            );
            return;
        }
        match off {
            reg::CR0 => {
                let new = v & self.cr0_impl();
                let fields = [
                    reg::CR0_SMMUEN,
                    reg::CR0_PRIQEN,
                    reg::CR0_EVTQEN,
                    reg::CR0_CMDQEN,
                    reg::CR0_ATSCHK,
                    reg::CR0_VMW,
                ];
                self.write_ack_fields(AckReg::Cr0, &fields, new);
                // A CR0 write restarts consumption if the queue was already enabled.
                self.kick_cmdq();
            }
            reg::IRQ_CTRL => {
                let new = v & self.irq_impl();
                self.write_ack_fields(
                    AckReg::IrqCtrl,
                    &[reg::IRQ_GERROR, reg::IRQ_PRIQ, reg::IRQ_EVTQ],
                    new,
                );
            }
            reg::CR1 => {
                let old = self.cr1;
                let new = v & (reg::CR1_QUEUE_MASK | reg::CR1_TABLE_MASK);
                let mut result = new;
                let tg = self.enabled(reg::CR0_SMMUEN);
                let qg = self.enabled(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_PRIQEN);
                if tg && !self.guard("CR1.TABLE_*", off, u64::from(old), u64::from(new), true) {
                    result = (result & !reg::CR1_TABLE_MASK) | (old & reg::CR1_TABLE_MASK);
                }
                if qg && !self.guard("CR1.QUEUE_*", off, u64::from(old), u64::from(new), true) {
                    result = (result & !reg::CR1_QUEUE_MASK) | (old & reg::CR1_QUEUE_MASK);
                }
                self.cr1 = result;
            }
            reg::CR2 => {
                let g = self.enabled(reg::CR0_SMMUEN);
                if self.guard("CR2", off, u64::from(self.cr2), u64::from(v), g) {
                    self.cr2 = v & (reg::CR2_E2H | reg::CR2_RECINVSID | reg::CR2_PTM);
                }
            }
            // ... and drops writes, with no handshake and no violation.
            reg::GBPA if self.cfg.gbpa_ignored => {}
            reg::GBPA => {
                let busy = self.pending.iter().position(|p| p.reg == AckReg::Gbpa);
                if let Some(i) = busy {
                    self.violate(
                        ViolationKind::GbpaWhileUpdate,
                        "GBPA",
                        off,
                        u64::from(self.gbpa),
                        u64::from(v),
                    );
                    if self.cfg.cu_policy == CuPolicy::Ignore {
                        return;
                    }
                    self.pending.remove(i);
                }
                if v & reg::GBPA_UPDATE == 0 {
                    self.violate(
                        ViolationKind::GbpaWithoutUpdate,
                        "GBPA",
                        off,
                        u64::from(self.gbpa),
                        u64::from(v),
                    );
                    if self.cfg.cu_policy == CuPolicy::Accept {
                        self.gbpa = v & reg::GBPA_FIELDS;
                    }
                    return;
                }
                let due = self.time + self.latency();
                self.pending.push(Pending {
                    reg: AckReg::Gbpa,
                    mask: u32::MAX,
                    value: v & reg::GBPA_FIELDS,
                    due,
                });
                self.apply_due();
            }
            reg::GERRORN => self.write_gerrorn(v),
            reg::GERROR_IRQ_CFG1
            | reg::GERROR_IRQ_CFG2
            | reg::EVTQ_IRQ_CFG1
            | reg::EVTQ_IRQ_CFG2 => {
                let (i, bit) = if off < reg::STRTAB_BASE {
                    (0, reg::IRQ_GERROR)
                } else {
                    (1, reg::IRQ_EVTQ)
                };
                self.irq_cfg_write(i, bit, off, v);
            }
            reg::PRIQ_IRQ_CFG1 | reg::PRIQ_IRQ_CFG2 if self.prof.pri() => {
                self.irq_cfg_write(2, reg::IRQ_PRIQ, off, v);
            }
            reg::STRTAB_BASE_CFG => {
                let g = self.enabled(reg::CR0_SMMUEN);
                if self.guard(
                    "STRTAB_BASE_CFG",
                    off,
                    u64::from(self.strtab_cfg),
                    u64::from(v),
                    g,
                ) {
                    self.strtab_cfg = v
                        & (reg::STRTAB_CFG_FMT.mask()
                            | reg::STRTAB_CFG_SPLIT.mask()
                            | reg::STRTAB_CFG_LOG2SIZE.mask()) as u32;
                    self.lint_strtab();
                }
            }
            reg::CMDQ_PROD => self.write_cmdq_prod(v),
            reg::CMDQ_CONS => {
                let g = self.enabled(reg::CR0_CMDQEN);
                if !self.guard("CMDQ_CONS", off, u64::from(self.cmdq.cons), u64::from(v), g) {
                    return;
                }
                let wm = self.cmdq.wm();
                let err = if self.cfg.cons_err_write || g {
                    v & reg::CMDQ_CONS_ERR.mask() as u32
                } else {
                    self.cmdq.cons & reg::CMDQ_CONS_ERR.mask() as u32
                };
                self.cmdq.cons = (v & wm) | err;
                self.cmdq.idx_written = !g;
                self.check_consistent(0);
            }
            reg::EVTQ_PROD | reg::PRIQ_PROD => {
                let (bit, name, pri) = if off == reg::EVTQ_PROD {
                    (reg::CR0_EVTQEN, "EVENTQ_PROD", false)
                } else {
                    (reg::CR0_PRIQEN, "PRIQ_PROD", true)
                };
                if pri && !self.prof.pri() {
                    return;
                }
                let g = self.enabled(bit);
                let q = if pri { self.priq } else { self.evtq };
                if !self.guard(name, off, u64::from(q.prod), u64::from(v), g) {
                    return;
                }
                let q = if pri { &mut self.priq } else { &mut self.evtq };
                q.prod = v & (q.wm() | reg::Q_OVF);
                q.idx_written = !g;
            }
            reg::EVTQ_CONS | reg::PRIQ_CONS => {
                let pri = off == reg::PRIQ_CONS;
                if pri && !self.prof.pri() {
                    return;
                }
                let q = if pri { self.priq } else { self.evtq };
                let new = v & (q.wm() | reg::Q_OVF);
                let enabled = self.enabled(if pri {
                    reg::CR0_PRIQEN
                } else {
                    reg::CR0_EVTQEN
                });
                // Q17: the new CONS must lie between the old CONS and PROD.
                let moved = q.count(new, q.cons);
                if enabled && moved > q.count(q.prod, q.cons) {
                    let name = if pri { "PRIQ_CONS" } else { "EVENTQ_CONS" };
                    self.violate(
                        ViolationKind::QueueConsBad,
                        name,
                        off,
                        u64::from(q.cons),
                        u64::from(v),
                    );
                }
                let q = if pri { &mut self.priq } else { &mut self.evtq };
                q.cons = new;
                q.idx_written = !enabled;
            }
            _ => {}
        }
    }

    pub(crate) fn irq_cfg_write(&mut self, i: usize, bit: u32, off: u64, v: u32) {
        let j = match off {
            reg::GERROR_IRQ_CFG1 | reg::EVTQ_IRQ_CFG1 | reg::PRIQ_IRQ_CFG1 => 1,
            _ => 2,
        };
        let names = [
            ["", "GERROR_IRQ_CFG1", "GERROR_IRQ_CFG2"],
            ["", "EVENTQ_IRQ_CFG1", "EVENTQ_IRQ_CFG2"],
            ["", "PRIQ_IRQ_CFG1", "PRIQ_IRQ_CFG2"],
        ];
        let g = self.irq_enabled(bit);
        let old = self.irq_cfg[i][j];
        if self.guard(names[i][j], off, old, u64::from(v), g) {
            // IRQ_CFG2: MEMATTR [3:0] and SH [5:4]; only PRIQ_IRQ_CFG2 has LO at bit 31
            // (§6.3.23, §6.3.32 vs §6.3.36), elsewhere it is RES0.
            let cfg2 = if i == 2 { 0x8000_003F } else { 0x3F };
            self.irq_cfg[i][j] = u64::from(if j == 2 { v & cfg2 } else { v });
        }
    }

    pub(crate) fn write_gerrorn(&mut self, v: u32) {
        let v = v & reg::GERROR_MASK;
        let toggled = v ^ self.gerrorn;
        let active = self.gerror ^ self.gerrorn;
        let bad = toggled & !active;
        let mut apply = toggled;
        if bad != 0 {
            self.violate(
                ViolationKind::GerrornInactiveToggle,
                "GERRORN",
                reg::GERRORN,
                u64::from(self.gerrorn),
                u64::from(v),
            );
            if self.cfg.cu_policy == CuPolicy::Ignore {
                apply &= !bad;
            }
        }
        self.gerrorn ^= apply;
        if apply & reg::GERROR_CMDQ_ERR != 0 {
            // §7.1: acknowledging CMDQ_ERR restarts consumption at CONS.
            self.kick_cmdq();
        }
    }

    /// Q2: an inconsistent PROD/CONS pair is logged when it matters: when written while the
    /// queue is enabled, or when the queue is enabled with one (transient states during a
    /// disabled re-initialisation are fine).
    pub(crate) fn check_consistent(&mut self, which: u8) {
        let q = if which == 0 { self.cmdq } else { self.evtq };
        let ok = q.consistent(q.prod, q.cons);
        let enabled = self.enabled(reg::CR0_CMDQEN);
        if !ok && enabled && !q.inconsistent {
            self.violate(
                ViolationKind::QueueInconsistent,
                "CMDQ_PROD/CONS",
                reg::CMDQ_PROD,
                u64::from(q.prod),
                u64::from(q.cons),
            );
        }
        if which == 0 {
            self.cmdq.inconsistent = !ok && enabled;
        }
    }

    pub(crate) fn write_cmdq_prod(&mut self, v: u32) {
        let q = self.cmdq;
        let new = v & q.wm();
        let err_active = self.gerror_active(reg::GERROR_CMDQ_ERR);
        let enabled = self.cr0ack & reg::CR0_CMDQEN != 0;
        // Q3: PROD only increments or wraps (it may move back while CMDQ_ERR is active).
        if enabled
            && !err_active
            && q.consistent(q.prod, q.cons)
            && q.count(new, q.prod) > (1u32 << q.log2()) - q.count(q.prod, q.cons)
        {
            self.violate(
                ViolationKind::CmdqProdBackwards,
                "CMDQ_PROD",
                reg::CMDQ_PROD,
                u64::from(q.prod),
                u64::from(v),
            );
            if self.cfg.cu_policy == CuPolicy::Ignore {
                return;
            }
        }
        self.cmdq.prod = new;
        self.cmdq.idx_written |= !self.enabled(reg::CR0_CMDQEN);
        self.check_consistent(0);
        self.kick_cmdq();
    }

    pub(crate) fn gerror_active(&self, bit: u32) -> bool {
        (self.gerror ^ self.gerrorn) & bit != 0
    }

    pub(crate) fn activate_gerror(&mut self, bit: u32) {
        if self.gerror_active(bit) {
            return;
        }
        self.gerror ^= bit;
        if self.irq_ctrlack & reg::IRQ_GERROR != 0 {
            self.signals.gerror_irq += 1;
            let addr = self.irq_cfg[0][0] & reg::IRQ_CFG0_ADDR.mask();
            if self.prof.msi() && addr != 0 {
                let data = self.irq_cfg[0][1] as u32;
                if self.mem.dev_write(addr, &data.to_le_bytes()).is_ok() {
                    self.signals.msi_writes.push((addr, data));
                } else {
                    let b = reg::GERROR_MSI_GERROR_ABT_ERR;
                    if !self.gerror_active(b) {
                        self.gerror ^= b;
                    }
                }
            }
        }
    }

    /// Test hook: activates GERROR bits as the hardware would (e.g. SFM_ERR for a kdump scenario).
    pub fn raise_gerror(&mut self, bits: u32) {
        for i in 0..32 {
            let b = 1u32 << i;
            if bits & b & reg::GERROR_MASK != 0 {
                self.activate_gerror(b);
            }
        }
    }
}

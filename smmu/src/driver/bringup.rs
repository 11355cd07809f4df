//! The reset executor: the steps of a [`ResetPlan`] as register writes and handshakes (SPEC
//! D2, D11, K5–K8, K16). `reset.rs` holds the plans (data); this runs them.

use super::*;

impl<R: RegisterAccess, H: Hal, S: StreamTable> Smmu<R, H, S> {
    // ------------------------------------------------------------------ reset

    /// Runs a reset plan (SPEC D2 for [`ResetPlan::FULL`]). On failure the plan's
    /// [`OnFailure`] action runs before the error is returned.
    pub fn reset(&mut self, plan: &ResetPlan) -> Result<(), Error> {
        report!(debug, "SMMU reset: {:?}", plan.steps);
        for &step in plan.steps {
            if let Err(e) = self.run_step(step) {
                report!(error, "SMMU reset failed at {step:?}: {e}");
                if plan.on_failure == OnFailure::AbortThenDisable {
                    return Err(self.abort_then_disable(step, e));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The failure action [`OnFailure::AbortThenDisable`] after `step` failed with `cause`
    /// (SPEC K16, D11): `GBPA.ABORT` through the handshake, read back; only when it is
    /// confirmed is `SMMUEN` cleared. Otherwise clearing `SMMUEN` would turn translated DMA
    /// into bypass, so `CR0` is left alone and, if `SMMUEN` is set, the error says so
    /// ([`Error::AbortNotConfirmed`]); with `SMMUEN` already clear there is nothing to keep
    /// and `cause` is reported. Returns the error to report.
    pub(super) fn abort_then_disable(&mut self, step: ResetStep, cause: Error) -> Error {
        let smmuen = CR0::SMMUEN.mask << CR0::SMMUEN.shift;
        match self.update_gbpa(true) {
            Ok(()) => {
                self.cr0 = self.regs.read32(offset::CR0) & !smmuen;
                self.regs.write32(offset::CR0, self.cr0);
                // Best effort: the step's error is the one to report.
                let _ = self.wait_cr0_ack();
                cause
            }
            Err(_) if self.regs.read32(offset::CR0) & smmuen != 0 => Error::AbortNotConfirmed {
                step,
                gbpa: self.regs.read32(offset::GBPA),
            },
            Err(_) => cause,
        }
    }

    pub(super) fn run_step(&mut self, step: ResetStep) -> Result<(), Error> {
        match step {
            ResetStep::GlobalBypassAbort => match self.update_gbpa(true) {
                Err(Error::GbpaNotTaken { wrote, read })
                    if self.config.gbpa == GbpaPolicy::AcceptIgnoredWhileDisabled
                        && read == wrote & !(GBPA::ABORT.mask << GBPA::ABORT.shift)
                        && self.regs.read32(offset::CR0)
                            & CR0::SMMUEN.mask << CR0::SMMUEN.shift
                            == 0 =>
                {
                    // The write was dropped and the SMMU is disabled (bypassing already):
                    // accepted by the platform's choice, and reported.
                    self.gbpa_ignored = true;
                    Ok(())
                }
                other => other,
            },
            ResetStep::GlobalBypassAllow => self.update_gbpa(false),
            ResetStep::DisableAll => self.write_cr0(0),
            ResetStep::AcknowledgeGlobalErrors => {
                let report = evtq::acknowledge_global_errors(&self.regs);
                // CMDQ_ERR belongs to the old command queue, which is being replaced: no
                // command will be retried, so it is acknowledged here too.
                if report.still_active().contains(GlobalErrors::CMDQ_ERR) {
                    evtq::acknowledge_only(&self.regs, GlobalErrors::CMDQ_ERR);
                }
                if evtq::global_errors(&self.regs).contains(GlobalErrors::SFM_ERR) {
                    return Err(Error::ServiceFailure);
                }
                Ok(())
            }
            ResetStep::QuiesceQueuesKeepingTranslation => {
                let queues = CR0::CMDQEN.mask << CR0::CMDQEN.shift
                    | CR0::EVTQEN.mask << CR0::EVTQEN.shift
                    | CR0::PRIQEN.mask << CR0::PRIQEN.shift;
                let kept = self.regs.read32(offset::CR0) & !queues;
                self.write_cr0(kept)
            }
            ResetStep::ConfigureAttributes => {
                self.regs.write32(offset::CR1, self.cr1_value());
                let mut cr2 = LocalRegisterCopy::<u32, CR2::Register>::new(0);
                cr2.modify(CR2::PTM::SET + CR2::RECINVSID::SET);
                if self.e2h {
                    cr2.modify(CR2::E2H::SET);
                }
                self.regs.write32(offset::CR2, cr2.get());
                Ok(())
            }
            ResetStep::ReadBackE2h => {
                let cr2 =
                    LocalRegisterCopy::<u32, CR2::Register>::new(self.regs.read32(offset::CR2));
                self.e2h = self.features.hyp && cr2.is_set(CR2::E2H);
                self.entry_features.e2h = self.e2h;
                Ok(())
            }
            ResetStep::ProgramStreamTable => {
                let (base, cfg) = self
                    .strtab
                    .read()
                    .base_registers()
                    .ok_or(Error::Unsupported("programming an adopted stream table"))?;
                self.regs.write64(offset::STRTAB_BASE, base);
                self.regs.write32(offset::STRTAB_BASE_CFG, cfg);
                Ok(())
            }
            ResetStep::ProgramCommandQueue => {
                self.cmdq.program(&self.regs);
                Ok(())
            }
            ResetStep::EnableCommandQueue => {
                self.set_cr0_bits(CR0::CMDQEN.mask << CR0::CMDQEN.shift)
            }
            ResetStep::InvalidateAll => {
                self.cmdq
                    .issue(&self.hal, &self.regs, &[Command::CfgiAll], true)?;
                if self.features.hyp {
                    self.cmdq
                        .issue(&self.hal, &self.regs, &[Command::TlbiEl2All], true)?;
                }
                self.cmdq
                    .issue(&self.hal, &self.regs, &[Command::TlbiNsnhAll], true)
            }
            ResetStep::EnableEventQueue => match &self.evtq {
                Some(q) => {
                    q.program(&self.regs);
                    self.set_cr0_bits(CR0::EVTQEN.mask << CR0::EVTQEN.shift)
                }
                None => Ok(()),
            },
            ResetStep::EnablePriQueue => match &self.priq {
                Some(q) => {
                    q.program(&self.regs);
                    self.set_cr0_bits(CR0::PRIQEN.mask << CR0::PRIQEN.shift)
                }
                None => Ok(()),
            },
            ResetStep::ConfigureInterrupts => {
                self.write_irq_ctrl(0)?;
                if self.features.msi {
                    self.program_msi_off()?;
                }
                Ok(())
            }
            ResetStep::EnableInterrupts => {
                let mut irq = LocalRegisterCopy::<u32, IRQ_CTRL::Register>::new(0);
                irq.modify(IRQ_CTRL::GERROR_IRQEN::SET);
                if self.evtq.is_some() {
                    irq.modify(IRQ_CTRL::EVTQ_IRQEN::SET);
                }
                if self.priq.is_some() {
                    irq.modify(IRQ_CTRL::PRIQ_IRQEN::SET);
                }
                self.write_irq_ctrl(irq.get())
            }
            ResetStep::EnableGlobalErrorInterruptOnly => {
                let mut irq = LocalRegisterCopy::<u32, IRQ_CTRL::Register>::new(0);
                irq.modify(IRQ_CTRL::GERROR_IRQEN::SET);
                self.write_irq_ctrl(irq.get())
            }
            ResetStep::EnableAtsCheck => {
                if self.features.ats {
                    self.set_cr0_bits(CR0::ATSCHK.mask << CR0::ATSCHK.shift)
                } else {
                    Ok(())
                }
            }
            ResetStep::EnableTranslation => {
                self.set_cr0_bits(CR0::SMMUEN.mask << CR0::SMMUEN.shift)
            }
        }
    }

    pub(super) fn cr1_value(&self) -> u32 {
        // Inner Shareable, write-back cacheable when the SMMU is coherent; otherwise
        // non-cacheable (§6.3.11: the encodings are those of the SH and RGN fields).
        let (sh, c) = if self.coherent { (3, 1) } else { (0, 0) };
        let mut cr1 = LocalRegisterCopy::<u32, CR1::Register>::new(0);
        cr1.modify(
            CR1::TABLE_SH.val(sh)
                + CR1::TABLE_OC.val(c)
                + CR1::TABLE_IC.val(c)
                + CR1::QUEUE_SH.val(sh)
                + CR1::QUEUE_OC.val(c)
                + CR1::QUEUE_IC.val(c),
        );
        cr1.get()
    }

    pub(super) fn wait_cr0_ack(&self) -> Result<(), Error> {
        let want = self.cr0;
        poll(&self.hal, self.config.budget, || {
            (self.regs.read32(offset::CR0ACK) == want).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::Cr0Ack))
    }

    pub(super) fn write_cr0(&mut self, value: u32) -> Result<(), Error> {
        self.cr0 = value;
        self.regs.write32(offset::CR0, value);
        self.wait_cr0_ack()
    }

    pub(super) fn set_cr0_bits(&mut self, bits: u32) -> Result<(), Error> {
        let current = self.regs.read32(offset::CR0);
        self.write_cr0(current | bits)
    }

    /// The `IRQ_CFG0–2` of every interrupt the SMMU has, with MSIs off: `ADDR` = 0 (no MSI
    /// is sent, a wired interrupt is used, §6.3.21), `DATA` and the attributes 0. Each is
    /// read back: a value that did not take would leave a previous kernel's MSI target live.
    /// Only while `IRQ_CTRL` = 0 is acknowledged (the registers are guarded by it).
    pub(super) fn program_msi_off(&self) -> Result<(), Error> {
        let sets = [
            (
                "GERROR_IRQ_CFG0",
                offset::GERROR_IRQ_CFG0,
                offset::GERROR_IRQ_CFG1,
                offset::GERROR_IRQ_CFG2,
            ),
            (
                "EVENTQ_IRQ_CFG0",
                offset::EVTQ_IRQ_CFG0,
                offset::EVTQ_IRQ_CFG1,
                offset::EVTQ_IRQ_CFG2,
            ),
            (
                "PRIQ_IRQ_CFG0",
                offset::PRIQ_IRQ_CFG0,
                offset::PRIQ_IRQ_CFG1,
                offset::PRIQ_IRQ_CFG2,
            ),
        ];
        // The PRI queue's registers exist only with IDR0.PRI (§6.3.34).
        let count = if self.features.pri { 3 } else { 2 };
        for &(name, cfg0, cfg1, cfg2) in sets.iter().take(count) {
            self.regs.write64(cfg0, 0);
            self.regs.write32(cfg1, 0);
            self.regs.write32(cfg2, 0);
            if self.regs.read64(cfg0) != 0 {
                return Err(Error::WriteNotTaken(name));
            }
        }
        Ok(())
    }

    pub(super) fn write_irq_ctrl(&self, value: u32) -> Result<(), Error> {
        self.regs.write32(offset::IRQ_CTRL, value);
        poll(&self.hal, self.config.budget, || {
            (self.regs.read32(offset::IRQ_CTRLACK) == value).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::IrqCtrlAck))
    }

    /// `GBPA.ABORT` = `abort` through the `Update` handshake (§6.3.14): wait for a previous
    /// update to finish, write with `Update` = 1, wait for `Update` to clear, and read the
    /// register back (SPEC D11): a value that did not take is [`Error::GbpaNotTaken`].
    pub(super) fn update_gbpa(&self, abort: bool) -> Result<(), Error> {
        let update = GBPA::UPDATE.mask << GBPA::UPDATE.shift;
        let idle = || {
            poll(&self.hal, self.config.budget, || {
                let v = self.regs.read32(offset::GBPA);
                (v & update == 0).then_some(v)
            })
            .ok_or(Error::Timeout(WaitFor::GbpaUpdate))
        };
        let current = idle()?;
        let abort_bit = GBPA::ABORT.mask << GBPA::ABORT.shift;
        let value = if abort {
            current | abort_bit
        } else {
            current & !abort_bit
        };
        self.regs.write32(offset::GBPA, value | update);
        let read = idle()?;
        if read == value {
            Ok(())
        } else {
            Err(Error::GbpaNotTaken { wrote: value, read })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const IRQ_PLAN: ResetPlan = ResetPlan {
        steps: &[
            ResetStep::ConfigureInterrupts,
            ResetStep::EnableGlobalErrorInterruptOnly,
        ],
        on_failure: OnFailure::Report,
    };

    // spec: K8, D11
    #[test]
    fn interrupts_are_disabled_and_their_msis_turned_off_before_one_is_enabled() {
        let hal = HostHal::new();
        let (regs, _stalls) = fake_smmu_regs();
        // What a previous kernel left: its MSI doorbell, GERROR and EVTQ interrupts on.
        regs.set64(offset::GERROR_IRQ_CFG0, 0x8000_1000);
        regs.set32(offset::GERROR_IRQ_CFG1, 0xdead);
        regs.set32(offset::IRQ_CTRL, 0b101);
        regs.set32(offset::IRQ_CTRLACK, 0b101);
        let mut smmu = new_smmu(&regs, &hal, true);
        smmu.reset(&IRQ_PLAN).unwrap();
        let order: StdVec<(usize, u64)> = regs
            .writes()
            .iter()
            .map(|w| (w.offset, w.value))
            .filter(|(o, _)| {
                [
                    offset::IRQ_CTRL,
                    offset::GERROR_IRQ_CFG0,
                    offset::GERROR_IRQ_CFG1,
                    offset::GERROR_IRQ_CFG2,
                ]
                .contains(o)
            })
            .collect();
        assert_eq!(
            order,
            [
                (offset::IRQ_CTRL, 0),
                (offset::GERROR_IRQ_CFG0, 0),
                (offset::GERROR_IRQ_CFG1, 0),
                (offset::GERROR_IRQ_CFG2, 0),
                (offset::IRQ_CTRL, 1),
            ]
        );
        // SAFETY: a fake SMMU; nothing uses the buffers any more.
        unsafe { smmu.release() };

        // An SMMU that ignores the write: a typed error, the interrupt stays off.
        let (regs, _stalls) = fake_smmu_regs();
        regs.set64(offset::GERROR_IRQ_CFG0, 0x8000_1000);
        regs.on_write(|file, w| match w.offset {
            offset::IRQ_CTRL => file.set32(offset::IRQ_CTRLACK, w.value as u32),
            offset::GERROR_IRQ_CFG0 => file.set64(offset::GERROR_IRQ_CFG0, 0x8000_1000),
            _ => {}
        });
        let mut smmu = new_smmu(&regs, &hal, true);
        assert_eq!(
            smmu.reset(&IRQ_PLAN),
            Err(Error::WriteNotTaken("GERROR_IRQ_CFG0"))
        );
        assert_eq!(regs.get32(offset::IRQ_CTRL), 0);
        // SAFETY: as above.
        unsafe { smmu.release() };
        assert_eq!(hal.live_allocations(), 0);
    }
}

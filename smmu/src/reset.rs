//! Reset as a plan: which steps run, in which order (SPEC D2; adoption's plan is SPEC K5–K10).
//!
//! The full reset of a driver that owns the SMMU and the crash kernel's adoption of a live one
//! differ in *which* register writes they may make, not in how each write is made. So a reset
//! is a [`ResetPlan`] — a list of [`ResetStep`]s and what to do if one fails — and one
//! executor, [`Smmu::reset`](crate::Smmu::reset), runs any plan. [`ResetPlan::FULL`] is
//! D2's sequence; the crash-kernel crate defines its own plan from the same steps, and a test
//! can check a plan's properties (the adoption plan never writes `STRTAB_BASE`) by looking at
//! the list.

/// One step of a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResetStep {
    /// `GBPA.ABORT` = 1 through the `Update` handshake (§6.3.14): while the SMMU is
    /// disabled, incoming transactions abort instead of bypassing.
    GlobalBypassAbort,
    /// `GBPA.ABORT` = 0 through the handshake: while the SMMU is disabled, incoming
    /// transactions bypass. Only for platforms (or simulations) that choose bypass.
    GlobalBypassAllow,
    /// `CR0` = 0 (every queue and translation off), `CR0ACK` polled.
    DisableAll,
    /// Acknowledge every latched global error (toggle `GERRORN`), then fail with
    /// [`Error::ServiceFailure`](crate::Error::ServiceFailure) if `SFM_ERR` is still active
    /// (SPEC K6).
    AcknowledgeGlobalErrors,
    /// `CR0` keeps every bit that is set except the queue enables, which are cleared;
    /// `CR0ACK` polled (SPEC K5). `SMMUEN` and `ATSCHK` stay as they were.
    QuiesceQueuesKeepingTranslation,
    /// `CR1` (table and queue access attributes) and `CR2` (`PTM`, `RECINVSID`, `E2H` as
    /// configured) (§6.3.11, §6.3.12).
    ConfigureAttributes,
    /// `CR2.E2H` is read back and decides the TLBI flavour from now on (SPEC K13).
    ReadBackE2h,
    /// `STRTAB_BASE` and `STRTAB_BASE_CFG` from the stream table; a table that reports no
    /// registers (an adopted one) makes this step fail rather than write.
    ProgramStreamTable,
    /// `CMDQ_BASE`, `CMDQ_PROD`, `CMDQ_CONS`.
    ProgramCommandQueue,
    /// `CR0.CMDQEN` = 1 (other bits kept), `CR0ACK` polled.
    EnableCommandQueue,
    /// `CMD_CFGI_ALL`, `CMD_TLBI_EL2_ALL` (when the SMMU has EL2), `CMD_TLBI_NSNH_ALL`, each
    /// followed by a `CMD_SYNC`.
    InvalidateAll,
    /// Event queue registers and `CR0.EVTQEN` (skipped when the driver has no event queue).
    EnableEventQueue,
    /// PRI queue registers and `CR0.PRIQEN` (skipped without a PRI queue).
    EnablePriQueue,
    /// `IRQ_CTRL` = 0 with `IRQ_CTRLACK` polled, then, when the SMMU has MSIs, the
    /// `*_IRQ_CFG0–2` registers of the global-error, event-queue and PRI-queue interrupts
    /// with this driver's own values, each read back: MSIs off (`ADDR` = 0, §6.3.21), so an
    /// enabled interrupt is the wired one. Whatever a previous kernel programmed there (an
    /// MSI doorbell it owned) is never used again. Runs before any step that enables an
    /// interrupt (the `IRQ_CFG` registers may only change while their enable is 0).
    ConfigureInterrupts,
    /// `IRQ_CTRL` with the interrupts of the queues that are on, `IRQ_CTRLACK` polled.
    EnableInterrupts,
    /// `IRQ_CTRL` with only `GERROR_IRQEN` (SPEC K8), `IRQ_CTRLACK` polled.
    EnableGlobalErrorInterruptOnly,
    /// `CR0.ATSCHK` = 1 when the SMMU supports ATS (ATS translated requests are checked
    /// against the STE's `EATS`).
    EnableAtsCheck,
    /// `CR0.SMMUEN` = 1, `CR0ACK` polled.
    EnableTranslation,
}

/// What the executor does when a step fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnFailure {
    /// Report the error and leave the registers as they are.
    Report,
    /// `GBPA.ABORT` = 1 with the handshake, *then* `CR0.SMMUEN` = 0, so that no transaction
    /// bypasses in between (SPEC K16); then report.
    AbortThenDisable,
}

/// A reset: its steps and its failure action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetPlan {
    /// The steps, in order.
    pub steps: &'static [ResetStep],
    /// What to do when one fails.
    pub on_failure: OnFailure,
}

impl ResetPlan {
    /// The full reset of SPEC D2.
    pub const FULL: ResetPlan = ResetPlan {
        steps: &[
            ResetStep::GlobalBypassAbort,
            ResetStep::DisableAll,
            ResetStep::ConfigureInterrupts,
            ResetStep::ConfigureAttributes,
            ResetStep::ProgramStreamTable,
            ResetStep::ProgramCommandQueue,
            ResetStep::EnableCommandQueue,
            ResetStep::InvalidateAll,
            ResetStep::EnableEventQueue,
            ResetStep::EnablePriQueue,
            ResetStep::EnableInterrupts,
            ResetStep::EnableAtsCheck,
            ResetStep::EnableTranslation,
        ],
        on_failure: OnFailure::AbortThenDisable,
    };

    /// Whether the plan contains `step`.
    pub fn contains(&self, step: ResetStep) -> bool {
        self.steps.contains(&step)
    }

    /// The plan's steps up to and including the first `step`, with the same failure
    /// action; `None` when the plan does not contain it. A crash kernel takes an abandoned
    /// adoption down with its fallback's steps through [`ResetStep::DisableAll`].
    pub fn through(&self, step: ResetStep) -> Option<ResetPlan> {
        let end = self.steps.iter().position(|&s| s == step)?;
        Some(ResetPlan {
            steps: self.steps.get(..=end)?,
            on_failure: self.on_failure,
        })
    }
}

//! The driver core: [`Smmu`] owns the registers, the queues, the stream table, the ID
//! allocators and the per-master state (SPEC D1–D10).

use core::sync::atomic::{AtomicUsize, Ordering};

use heapless::Vec;
use smmu_pagetable::{Gather, Iova, PageTable, PhysAddr, Prot, TableAllocator};
use tock_registers::LocalRegisterCopy;

use crate::access::RegisterAccess;
use crate::arch::cmd::Command;
use crate::arch::idr::{Features, StallModel};
use crate::arch::queue::GlobalErrors;
use crate::arch::regs::{offset, CR0, CR1, CR2, GBPA, IRQ_CTRL};
use crate::arch::ste::S1Dss;
use crate::cdtab::{CdPrepared, CdTable};
use crate::cmdq::{CommandBatch, CommandQueue, SyncMode};
use crate::dma::DmaBuf;
use crate::domain::{stage1_cd, stage2_table, table_config, Domain, DomainStage};
use crate::error::{Error, WaitFor};
use crate::evtq::{self, EventReport, GerrorReport, OutputQueue, PriReport, QueueKind};
use crate::hal::Hal;
use crate::ids::IdAllocator;
use crate::inval::{atc_commands, tlbi_commands, InvalCaps, TlbScope};
use crate::policy::{DomainKind, ProtectedPolicy, Refusal};
use crate::poll::{poll, PollBudget};
use crate::report::report;
use crate::reset::{OnFailure, ResetPlan, ResetStep};
use crate::strtab::{Prepared, StreamTable};
use crate::writer::make::{self, EntryFeatures, MasterCaps};
use crate::writer::{write_entry, CdRules, EntrySlot, SteRules, WriteReport, ENTRY_QWORDS};

/// Masters one SMMU instance tracks (a fixed bound: the driver has no heap).
pub const MAX_MASTERS: usize = 32;
/// StreamIDs per master (a PCIe function behind aliasing bridges, a platform device with
/// several IDs).
pub const MAX_SIDS_PER_MASTER: usize = 8;

static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(1);

/// Driver settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuConfig {
    /// Bound of every poll.
    pub budget: PollBudget,
    /// Use `CR2.E2H` (stage-1 domains in the EL2-E2H StreamWorld) when the SMMU has EL2.
    pub e2h: bool,
    /// Rules for protected masters (SPEC D9).
    pub policy: ProtectedPolicy,
    /// Without range invalidation: per-page TLBIs allowed before one ASID/VMID-wide TLBI.
    pub max_invalidation_ops: u32,
    /// log2 of the event-queue size asked for (clamped to `IDR1.EVENTQS`); `None`: no event
    /// queue.
    pub evtq_log2: Option<u32>,
    /// log2 of the PRI-queue size asked for (clamped to `IDR1.PRIQS`; only with `IDR0.PRI`);
    /// `None`: no PRI queue.
    pub priq_log2: Option<u32>,
    /// log2 of the command-queue size asked for (clamped to the driver's and the SMMU's
    /// limits).
    pub cmdq_log2: u32,
    /// The SMMU snoops CPU caches for its structures. `None`: as `IDR0.COHACC` says.
    pub coherent: Option<bool>,
}

impl Default for SmmuConfig {
    fn default() -> Self {
        Self {
            budget: PollBudget::DEFAULT,
            e2h: false,
            policy: ProtectedPolicy::default(),
            max_invalidation_ops: crate::inval::DEFAULT_MAX_OPS,
            evtq_log2: Some(8),
            priq_log2: None,
            cmdq_log2: 8,
            coherent: None,
        }
    }
}

/// A master (device) as [`Smmu::add_master`] describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterConfig<'a> {
    /// Its StreamIDs.
    pub sids: &'a [u32],
    /// A confidential-computing device whose DMA must stay in the shared windows (SPEC D9).
    pub protected: bool,
    /// ATS is enabled at the endpoint (paging domains then set `EATS`).
    pub ats: bool,
    /// The master may be stalled on faults.
    pub stall: bool,
    /// SubstreamID bits it uses (0: none, only SubstreamID 0).
    pub ssid_bits: u8,
}

/// A master's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MasterId(u16);

/// What a master is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Nothing yet: its STEs are as the table had them (abort for a table the driver
    /// built, the crashed kernel's for an adopted one).
    Initial,
    /// Blocked: every STE aborts.
    Blocked,
    /// Identity: every STE bypasses.
    Identity,
    /// A paging domain.
    Paging {
        /// The domain's token.
        token: u32,
        /// Its stage.
        stage: DomainStage,
        /// Its ASID or VMID.
        id: u16,
    },
}

struct Master {
    sids: Vec<u32, MAX_SIDS_PER_MASTER>,
    protected: bool,
    ats: bool,
    stall: bool,
    ssid_bits: u8,
    cd: Option<CdTable>,
    attached: Attachment,
}

/// An Arm SMMUv3 and everything the driver keeps for it.
///
/// # Many CPUs (SPEC D12)
///
/// `Smmu` has no `unsafe impl Send`/`Sync`: it is `Send` when `R`, `H` and `S` are `Send`, and
/// `Sync` when they are `Sync` (the command queue is both, see [`CommandQueue`]). Shared
/// through `&Smmu`, these run on any number of CPUs at once and hold no lock while a
/// `CMD_SYNC` completes: [`Smmu::map`], [`Smmu::unmap`] (each on its own `&mut Domain`: two
/// CPUs map into two domains concurrently, one domain is one CPU's at a time) and command
/// submission through [`Smmu::cmdq`]. Methods taking `&mut self` (attach, detach, event
/// handling, reset) still need the caller's exclusion.
pub struct Smmu<R: RegisterAccess, H: Hal, S: StreamTable> {
    regs: R,
    hal: H,
    features: Features,
    config: SmmuConfig,
    coherent: bool,
    instance: usize,
    cmdq: CommandQueue,
    evtq: Option<OutputQueue>,
    priq: Option<OutputQueue>,
    strtab: S,
    asids: IdAllocator,
    vmids: IdAllocator,
    masters: Vec<Option<Master>, MAX_MASTERS>,
    next_token: u32,
    cr0: u32,
    e2h: bool,
    entry_features: EntryFeatures,
}

impl<R: RegisterAccess, H: Hal, S: StreamTable> core::fmt::Debug for Smmu<R, H, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Smmu")
            .field("instance", &self.instance)
            .field("cmdq", &self.cmdq)
            .field("cr0", &self.cr0)
            .finish_non_exhaustive()
    }
}

/// An STE or CD in DMA memory as the entry writer sees it: stores go through the HAL's
/// live-store hook, each sync is the matching CFGI plus a `CMD_SYNC`.
struct LiveEntry<'a, R: RegisterAccess, H: Hal> {
    buf: &'a DmaBuf,
    first: usize,
    hal: &'a H,
    regs: &'a R,
    cmdq: &'a CommandQueue,
    invalidate: Invalidate<'a>,
    failed: Option<Error>,
}

#[derive(Clone, Copy)]
enum Invalidate<'a> {
    Ste(u32),
    Cd { sids: &'a [u32], ssid: u32 },
}

impl<R: RegisterAccess, H: Hal> EntrySlot<ENTRY_QWORDS> for LiveEntry<'_, R, H> {
    type Error = Error;

    fn read(&self) -> [u64; ENTRY_QWORDS] {
        let mut w = [0u64; ENTRY_QWORDS];
        for (i, v) in w.iter_mut().enumerate() {
            // The location was bounds-checked when it was made; an error reads as 0.
            *v = self.buf.read(self.hal, self.first + i).unwrap_or(0);
        }
        w
    }

    fn write_qword(&mut self, index: usize, value: u64) {
        if let Err(e) = self.buf.store_live(self.hal, self.first + index, value) {
            self.failed.get_or_insert(e.into());
        }
    }

    fn sync(&mut self) -> Result<(), Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut batch = CommandBatch::new(self.cmdq, self.hal, self.regs);
        match self.invalidate {
            Invalidate::Ste(sid) => batch.add(Command::CfgiSte { sid, leaf: true })?,
            Invalidate::Cd { sids, ssid } => {
                for &sid in sids {
                    batch.add(Command::CfgiCd {
                        sid,
                        ssid,
                        leaf: true,
                    })?;
                }
            }
        }
        batch.submit()
    }
}

impl<R: RegisterAccess, H: Hal, S: StreamTable> Smmu<R, H, S> {
    /// Builds the driver state for a probed SMMU: allocates the command queue and, as
    /// configured, the event and PRI queues. Touches no register; [`Smmu::reset`] does.
    ///
    /// On failure everything allocated, `strtab` included, is given back.
    pub fn new(
        regs: R,
        hal: H,
        features: Features,
        strtab: S,
        config: SmmuConfig,
    ) -> Result<Self, Error> {
        let coherent = config.coherent.unwrap_or(features.coherent);
        let mode = SyncMode::select(features.msi, features.sev, coherent);
        let cmdq_log2 = config.cmdq_log2.min(u32::from(features.cmdq_log2_max));
        let cmdq = match CommandQueue::new(&hal, cmdq_log2, mode, coherent, config.budget) {
            Ok(q) => q,
            Err(e) => {
                // SAFETY: no register points at the table yet (this function writes none).
                unsafe { strtab.release(&hal) };
                return Err(e);
            }
        };
        let mut out = [None, None];
        let wanted = [
            (QueueKind::Event, config.evtq_log2),
            (QueueKind::Pri, config.priq_log2.filter(|_| features.pri)),
        ];
        for (slot, (kind, log2)) in out.iter_mut().zip(wanted) {
            let Some(log2) = log2 else { continue };
            let log2 = log2.min(kind.max_log2_entries(&features));
            match OutputQueue::new(&hal, kind, log2, coherent) {
                Ok(q) => *slot = Some(q),
                Err(e) => {
                    // SAFETY: none of these is known to the SMMU yet.
                    unsafe {
                        for q in out.into_iter().flatten() {
                            q.release(&hal);
                        }
                        cmdq.release(&hal);
                        strtab.release(&hal);
                    }
                    return Err(Error::Queue(e));
                }
            }
        }
        let [evtq, priq] = out;
        let e2h = config.e2h && features.hyp;
        let entry_features = EntryFeatures {
            attr_types_ovr: features.attr_types_ovr,
            stalls: features.stall_model == StallModel::Stall,
            e2h,
        };
        let mut masters = Vec::new();
        for _ in 0..MAX_MASTERS {
            let _ = masters.push(None);
        }
        Ok(Self {
            asids: IdAllocator::new(if features.asid16 { 16 } else { 8 }),
            vmids: IdAllocator::new(if features.vmid16 { 16 } else { 8 }),
            regs,
            hal,
            features,
            config,
            coherent,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            cmdq,
            evtq,
            priq,
            strtab,
            masters,
            next_token: 1,
            cr0: 0,
            e2h,
            entry_features,
        })
    }

    /// The probed features.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The register interface.
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// The platform HAL.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// The command queue (for statistics, or to issue commands directly).
    pub fn cmdq(&self) -> &CommandQueue {
        &self.cmdq
    }

    /// The stream table.
    pub fn stream_table(&self) -> &S {
        &self.strtab
    }

    /// The ASID allocator (adoption reserves the crashed kernel's ASIDs here, SPEC K14).
    pub fn asids_mut(&mut self) -> &mut IdAllocator {
        &mut self.asids
    }

    /// The VMID allocator.
    pub fn vmids_mut(&mut self) -> &mut IdAllocator {
        &mut self.vmids
    }

    /// The ASID allocator.
    pub fn asids(&self) -> &IdAllocator {
        &self.asids
    }

    /// The VMID allocator.
    pub fn vmids(&self) -> &IdAllocator {
        &self.vmids
    }

    /// Whether stage-1 TLB invalidations use the EL2 (E2H) forms.
    pub fn e2h(&self) -> bool {
        self.e2h
    }

    // ------------------------------------------------------------------ reset

    /// Runs a reset plan (SPEC D2 for [`ResetPlan::FULL`]). On failure the plan's
    /// [`OnFailure`] action runs before the error is returned.
    pub fn reset(&mut self, plan: &ResetPlan) -> Result<(), Error> {
        report!(debug, "SMMU reset: {:?}", plan.steps);
        for &step in plan.steps {
            if let Err(e) = self.run_step(step) {
                report!(error, "SMMU reset failed at {step:?}: {e}");
                if plan.on_failure == OnFailure::AbortThenDisable {
                    // Best effort: the first error is the one to report.
                    let _ = self.update_gbpa(true);
                    self.cr0 = self.regs.read32(offset::CR0) & !CR0::SMMUEN.mask;
                    self.regs.write32(offset::CR0, self.cr0);
                    let _ = self.wait_cr0_ack();
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn run_step(&mut self, step: ResetStep) -> Result<(), Error> {
        match step {
            ResetStep::GlobalBypassAbort => self.update_gbpa(true),
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

    fn cr1_value(&self) -> u32 {
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

    fn wait_cr0_ack(&self) -> Result<(), Error> {
        let want = self.cr0;
        poll(&self.hal, self.config.budget, || {
            (self.regs.read32(offset::CR0ACK) == want).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::Cr0Ack))
    }

    fn write_cr0(&mut self, value: u32) -> Result<(), Error> {
        self.cr0 = value;
        self.regs.write32(offset::CR0, value);
        self.wait_cr0_ack()
    }

    fn set_cr0_bits(&mut self, bits: u32) -> Result<(), Error> {
        let current = self.regs.read32(offset::CR0);
        self.write_cr0(current | bits)
    }

    fn write_irq_ctrl(&self, value: u32) -> Result<(), Error> {
        self.regs.write32(offset::IRQ_CTRL, value);
        poll(&self.hal, self.config.budget, || {
            (self.regs.read32(offset::IRQ_CTRLACK) == value).then_some(())
        })
        .ok_or(Error::Timeout(WaitFor::IrqCtrlAck))
    }

    /// `GBPA.ABORT` = `abort` through the `Update` handshake (§6.3.14): wait for a previous
    /// update to finish, write with `Update` = 1, wait for `Update` to clear.
    fn update_gbpa(&self, abort: bool) -> Result<(), Error> {
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
        idle().map(|_| ())
    }

    // ------------------------------------------------------------------ masters

    fn master(&self, id: MasterId) -> Result<&Master, Error> {
        self.masters
            .get(usize::from(id.0))
            .and_then(Option::as_ref)
            .ok_or(Error::NoSuchMaster)
    }

    fn master_mut(&mut self, id: MasterId) -> Result<&mut Master, Error> {
        self.masters
            .get_mut(usize::from(id.0))
            .and_then(Option::as_mut)
            .ok_or(Error::NoSuchMaster)
    }

    fn owner_of(&self, sid: u32) -> Option<MasterId> {
        self.masters.iter().enumerate().find_map(|(i, m)| {
            m.as_ref()
                .filter(|m| m.sids.contains(&sid))
                .map(|_| MasterId(i as u16))
        })
    }

    /// Registers a master and makes its STEs addressable (allocating level-2 tables as
    /// needed). Its STEs are not changed: a new master stays blocked (the driver's table
    /// is filled with abort), and an adopted STE stays as the crashed kernel left it until
    /// an explicit attach (SPEC K11).
    pub fn add_master(&mut self, config: &MasterConfig<'_>) -> Result<MasterId, Error> {
        self.config
            .policy
            .check_master(config.protected, config.ats)?;
        if config.ats && !self.features.ats {
            return Err(Error::Unsupported("ATS"));
        }
        if u32::from(config.ssid_bits) > u32::from(self.features.ssid_bits) {
            return Err(Error::SubstreamIdOutOfRange(1 << config.ssid_bits.min(31)));
        }
        let mut sids = Vec::new();
        for &sid in config.sids {
            if u64::from(sid) >> self.strtab.log2_size() != 0 {
                return Err(Error::StreamIdOutOfRange(sid));
            }
            if self.owner_of(sid).is_some() || sids.contains(&sid) {
                return Err(Error::StreamIdInUse(sid));
            }
            sids.push(sid).map_err(|_| Error::CapacityExhausted)?;
        }
        if sids.is_empty() {
            return Err(Error::NoSuchMaster);
        }
        let slot = self
            .masters
            .iter()
            .position(Option::is_none)
            .ok_or(Error::CapacityExhausted)?;
        let fill = make::ste_image(&make::abort_ste());
        for &sid in &sids {
            if self.strtab.prepare(&self.hal, sid, &fill)? == Prepared::NewLevel1Descriptor {
                // The SMMU may have cached the invalid descriptor (§4.3.1, Leaf = 0).
                self.cmdq.issue(
                    &self.hal,
                    &self.regs,
                    &[Command::CfgiSte { sid, leaf: false }],
                    true,
                )?;
            }
        }
        if let Some(m) = self.masters.get_mut(slot) {
            *m = Some(Master {
                sids,
                protected: config.protected,
                ats: config.ats,
                stall: config.stall,
                ssid_bits: config.ssid_bits,
                cd: None,
                attached: Attachment::Initial,
            });
        }
        Ok(MasterId(slot as u16))
    }

    /// What `master` is attached to.
    pub fn attachment(&self, master: MasterId) -> Result<Attachment, Error> {
        Ok(self.master(master)?.attached)
    }

    /// The StreamIDs of `master`.
    pub fn master_sids(&self, master: MasterId) -> Result<&[u32], Error> {
        Ok(&self.master(master)?.sids)
    }

    /// Whether any STE of `master` is still deferred (adopted and not yet replaced).
    pub fn is_deferred(&self, master: MasterId) -> Result<bool, Error> {
        let m = self.master(master)?;
        Ok(m.sids.iter().any(|&s| self.strtab.is_deferred(s)))
    }

    fn caps(&self, m: &Master, paging: bool) -> MasterCaps {
        MasterCaps {
            ats: m.ats && paging,
            stall: m.stall && self.features.stall_model != StallModel::NoStall,
        }
    }

    /// Writes `target` into every STE of `master` with the hitless writer (SPEC D4), then
    /// clears the deferred state of each STE whose write completed (SPEC K11).
    fn install_ste(&mut self, master: MasterId, target: &[u64; ENTRY_QWORDS]) -> Result<(), Error> {
        let sids = self.master(master)?.sids.clone();
        for &sid in &sids {
            self.write_ste(sid, target)?;
            self.strtab.clear_deferred(sid);
        }
        Ok(())
    }

    /// One STE through the hitless writer.
    fn write_ste(&self, sid: u32, target: &[u64; ENTRY_QWORDS]) -> Result<WriteReport, Error> {
        let loc = self.strtab.locate(sid)?;
        if loc.first_word + ENTRY_QWORDS > loc.buf.words() {
            return Err(Error::StreamIdOutOfRange(sid));
        }
        let mut slot = LiveEntry {
            buf: loc.buf,
            first: loc.first_word,
            hal: &self.hal,
            regs: &self.regs,
            cmdq: &self.cmdq,
            invalidate: Invalidate::Ste(sid),
            failed: None,
        };
        write_entry(&SteRules, &mut slot, target).map_err(|e| e.error)
    }

    /// Attaches `master` to the blocked domain: every STE aborts. Always allowed, also for
    /// protected and deferred masters (it is how a deferred master is released, SPEC K12).
    pub fn attach_blocked(&mut self, master: MasterId) -> Result<(), Error> {
        let target = make::ste_image(&make::abort_ste());
        self.install_ste(master, &target)?;
        self.after_attach(master, Attachment::Blocked)
    }

    /// Detaching is attaching to the blocked domain (SPEC D8, D9: a protected master is left
    /// aborting).
    pub fn detach(&mut self, master: MasterId) -> Result<(), Error> {
        self.attach_blocked(master)
    }

    /// Attaches `master` to the identity domain (bypass). Refused for protected masters
    /// (SPEC D9) and while any of its STEs is deferred (SPEC K12).
    pub fn attach_identity(&mut self, master: MasterId) -> Result<(), Error> {
        let m = self.master(master)?;
        self.config
            .policy
            .check_attach(m.protected, DomainKind::Identity, false)?;
        // An inherited STE is only ever replaced by a translating attach or released to
        // abort (SPEC K12): an identity default domain must not widen what it allows.
        if let Some(&sid) = m.sids.iter().find(|&&s| self.strtab.is_deferred(s)) {
            return Err(Error::Deferred(sid));
        }
        let target = make::ste_image(&make::bypass_ste(self.entry_features));
        self.install_ste(master, &target)?;
        self.after_attach(master, Attachment::Identity)
    }

    /// Installs a bypass STE for a reserved-memory (RMR) region's StreamID. Refused for
    /// protected masters (SPEC D9) and for deferred STEs (SPEC K10, K12).
    pub fn install_rmr_bypass(&mut self, master: MasterId) -> Result<(), Error> {
        let m = self.master(master)?;
        if m.protected {
            return Err(Refusal::Bypass.into());
        }
        if let Some(&sid) = m.sids.iter().find(|&&s| self.strtab.is_deferred(s)) {
            return Err(Error::Deferred(sid));
        }
        self.attach_identity(master)
    }

    fn after_attach(&mut self, master: MasterId, now: Attachment) -> Result<(), Error> {
        let m = self.master(master)?;
        let before = m.attached;
        let ats = m.ats;
        let sids = m.sids.clone();
        // A master leaving a paging domain with ATS: its ATC may hold translations of that
        // domain (§3.9.1: invalidate the ATC after the STE change is visible).
        if ats && matches!(before, Attachment::Paging { .. }) && before != now {
            let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
            for sid in sids {
                atc_commands(sid, None, 0, u64::MAX, &mut |c| batch.add(c))?;
            }
            batch.submit()?;
        }
        self.master_mut(master)?.attached = now;
        Ok(())
    }

    // ------------------------------------------------------------------ domains

    /// Creates a paging domain with a fresh ASID (stage 1) or VMID (stage 2). A `protected`
    /// domain only maps memory inside the platform's shared windows (SPEC D9).
    pub fn new_domain<A: TableAllocator>(
        &mut self,
        stage: DomainStage,
        protected: bool,
        alloc: A,
    ) -> Result<Domain<A>, Error> {
        let config = table_config(stage, &self.features)?;
        let table = PageTable::new(config, alloc)?;
        let id = match stage {
            DomainStage::Stage1 => self.asids.alloc()?,
            DomainStage::Stage2 => self.vmids.alloc()?,
        };
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        Ok(Domain {
            token,
            smmu: self.instance,
            stage,
            protected,
            id,
            table,
        })
    }

    fn check_domain<A: TableAllocator>(&self, domain: &Domain<A>) -> Result<(), Error> {
        if domain.smmu == self.instance {
            Ok(())
        } else {
            Err(Error::WrongDomainKind)
        }
    }

    fn attached_to(&self, token: u32) -> impl Iterator<Item = &Master> {
        self.masters.iter().flatten().filter(
            move |m| matches!(m.attached, Attachment::Paging { token: t, .. } if t == token),
        )
    }

    /// Frees a domain: refused while a master is attached. Its TLB entries are invalidated
    /// before the ID goes back to the allocator, so a later domain with the same ID cannot hit
    /// them.
    pub fn free_domain<A: TableAllocator>(
        &mut self,
        domain: Domain<A>,
    ) -> Result<(), (Error, Domain<A>)> {
        if self.check_domain(&domain).is_err() {
            return Err((Error::WrongDomainKind, domain));
        }
        if self.attached_to(domain.token).next().is_some() {
            return Err((Error::DomainBusy, domain));
        }
        let scope = self.scope(domain.stage, domain.id);
        if let Err(e) = self
            .cmdq
            .issue(&self.hal, &self.regs, &[scope.wide_command()], true)
        {
            return Err((e, domain));
        }
        let _ = match domain.stage {
            DomainStage::Stage1 => self.asids.free(domain.id),
            DomainStage::Stage2 => self.vmids.free(domain.id),
        };
        // The page table frees its tables on drop; nothing refers to them any more.
        drop(domain);
        Ok(())
    }

    fn scope(&self, stage: DomainStage, id: u16) -> TlbScope {
        match stage {
            DomainStage::Stage1 if self.e2h => TlbScope::Stage1El2 { asid: id },
            DomainStage::Stage1 => TlbScope::Stage1 { vmid: 0, asid: id },
            DomainStage::Stage2 => TlbScope::Stage2 { vmid: id },
        }
    }

    /// Attaches `master` to a paging domain. Stage 1: the domain's CD is written (hitlessly)
    /// at SubstreamID 0 of the master's CD table, then the STEs point at the table; stage 2:
    /// the STEs hold the domain's table and VMID. Every STE change goes through the hitless
    /// writer (SPEC D4); a deferred STE is replaced here and only then stops being deferred
    /// (SPEC K11).
    pub fn attach<A: TableAllocator>(
        &mut self,
        master: MasterId,
        domain: &Domain<A>,
    ) -> Result<(), Error> {
        self.check_domain(domain)?;
        let m = self.master(master)?;
        self.config
            .policy
            .check_attach(m.protected, domain.kind(), domain.protected)?;
        let caps = self.caps(m, true);
        let target = match domain.stage {
            DomainStage::Stage1 => {
                let cd = stage1_cd(&domain.table, domain.id, caps.stall)?;
                self.write_cd0(master, &make::cd_image(&cd))?;
                let m = self.master(master)?;
                let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?.pointer();
                make::ste_image(&make::cd_table_ste(
                    self.entry_features,
                    caps,
                    table,
                    S1Dss::Substream0,
                ))
            }
            DomainStage::Stage2 => make::ste_image(&make::s2_ste(
                self.entry_features,
                caps,
                stage2_table(&domain.table)?,
                domain.id,
            )),
        };
        self.install_ste(master, &target)?;
        self.after_attach(
            master,
            Attachment::Paging {
                token: domain.token,
                stage: domain.stage,
                id: domain.id,
            },
        )
    }

    /// Writes CD 0 of the master's CD table, creating the table on first use.
    fn write_cd0(&mut self, master: MasterId, cd: &[u64; ENTRY_QWORDS]) -> Result<(), Error> {
        let (ssid_bits, has_cd) = {
            let m = self.master(master)?;
            (m.ssid_bits, m.cd.is_some())
        };
        if !has_cd {
            let table = CdTable::new(
                &self.hal,
                u32::from(ssid_bits),
                self.features.cd2l,
                self.coherent,
            )?;
            self.master_mut(master)?.cd = Some(table);
        }
        let m = self
            .masters
            .get_mut(usize::from(master.0))
            .and_then(Option::as_mut)
            .ok_or(Error::NoSuchMaster)?;
        let table = m.cd.as_mut().ok_or(Error::NoSuchMaster)?;
        let prepared = table.prepare(&self.hal, 0)?;
        let sids = m.sids.clone();
        let m = self.master(master)?;
        let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?;
        if prepared == CdPrepared::NewLevel1Descriptor {
            let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
            for &sid in &sids {
                batch.add(Command::CfgiCd {
                    sid,
                    ssid: 0,
                    leaf: false,
                })?;
            }
            batch.submit()?;
        }
        let (buf, first) = table.locate(0)?;
        if first + ENTRY_QWORDS > buf.words() {
            return Err(Error::SubstreamIdOutOfRange(0));
        }
        let mut slot = LiveEntry {
            buf,
            first,
            hal: &self.hal,
            regs: &self.regs,
            cmdq: &self.cmdq,
            invalidate: Invalidate::Cd {
                sids: &sids,
                ssid: 0,
            },
            failed: None,
        };
        // EL1 and EL2-E2H StreamWorlds both honour EPDx (the only ones this driver uses).
        let rules = CdRules::EL1;
        write_entry(&rules, &mut slot, cd).map_err(|e| e.error)?;
        Ok(())
    }

    /// Maps `[iova, iova + size)` to `pa` in a domain. A protected domain refuses physical
    /// memory outside the platform's shared windows before anything changes (SPEC D9).
    pub fn map<A: TableAllocator>(
        &self,
        domain: &mut Domain<A>,
        iova: Iova,
        pa: PhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), Error> {
        self.check_domain(domain)?;
        self.config
            .policy
            .check_map(domain.protected, self.hal.shared_windows(), pa, size)?;
        domain.table.map(iova, pa, size, prot)?;
        Ok(())
    }

    /// Unmaps `[iova, iova + size)` from a domain and invalidates it (SPEC D6): range TLBIs
    /// (or per-page, or one ASID/VMID-wide TLBI), then ATC invalidations for attached ATS
    /// masters, one `CMD_SYNC` each; tables the unmap emptied are freed only after that.
    /// Returns the bytes unmapped.
    pub fn unmap<A: TableAllocator>(
        &self,
        domain: &mut Domain<A>,
        iova: Iova,
        size: u64,
    ) -> Result<u64, Error> {
        self.check_domain(domain)?;
        let mut gather = Gather::new();
        let unmapped = domain.table.unmap(iova, size, &mut gather);
        // Whatever the unmap did before failing has to be invalidated too.
        self.invalidate(domain, &gather, iova, size)?;
        // SAFETY: the invalidation covering every table in the gather has completed (its
        // CMD_SYNC returned), so the SMMU can no longer walk them.
        unsafe { domain.table.release(&mut gather) }?;
        Ok(unmapped?)
    }

    fn invalidate<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        gather: &Gather,
        iova: Iova,
        size: u64,
    ) -> Result<(), Error> {
        if gather.is_empty() {
            return Ok(());
        }
        let caps = InvalCaps {
            ril: self.features.range_invalidation,
            max_ops: self.config.max_invalidation_ops,
        };
        let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
        tlbi_commands(
            gather.ranges(),
            self.scope(domain.stage, domain.id),
            &caps,
            &mut |c| batch.add(c),
        )?;
        batch.submit()?;
        // ATC invalidation only after the TLB invalidation completed (§3.9.1).
        let mut atc = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
        for m in self.attached_to(domain.token).filter(|m| m.ats) {
            for &sid in &m.sids {
                atc_commands(sid, None, iova.0, size, &mut |c| atc.add(c))?;
            }
        }
        if !atc.is_empty() {
            atc.submit()?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ events

    /// Drains the event queue into `handler` (SPEC D7). Returns the records consumed.
    pub fn handle_events(&mut self, handler: &mut dyn FnMut(EventReport)) -> Result<u32, Error> {
        let handler = &mut |event: EventReport| {
            report!(warn, "SMMU event: {event:?}");
            handler(event);
        };
        match self.evtq.as_mut() {
            Some(q) => Ok(q
                .drain_events(&self.hal, &self.regs, handler)
                .map_err(Error::Drain)?
                .consumed),
            None => Ok(0),
        }
    }

    /// Drains the PRI queue into `handler` (SPEC D7).
    pub fn handle_page_requests(
        &mut self,
        handler: &mut dyn FnMut(PriReport),
    ) -> Result<u32, Error> {
        match self.priq.as_mut() {
            Some(q) => Ok(q
                .drain_page_requests(&self.hal, &self.regs, handler)
                .map_err(Error::Drain)?
                .consumed),
            None => Ok(0),
        }
    }

    /// Handles global errors (SPEC D7): acknowledges what can be acknowledged; service
    /// failure mode is reported every time and never acknowledged away; `CMDQ_ERR` is left
    /// to the command queue's recovery.
    pub fn handle_gerror(&self) -> GerrorReport {
        let report = evtq::acknowledge_global_errors(&self.regs);
        if report.service_failure {
            report!(error, "SMMU in service failure mode: {report:?}");
        } else if !report.active.is_empty() {
            report!(warn, "SMMU global error: {report:?}");
        }
        report
    }

    /// Gives every buffer back, consuming the driver, and returns the register interface
    /// and the HAL (a crash kernel that abandons adoption resets with them).
    ///
    /// # Safety
    /// The SMMU no longer uses any of the driver's structures: it was disabled (`CR0` = 0
    /// acknowledged) or reset, and no domain is attached.
    pub unsafe fn release(self) -> (R, H) {
        let Self {
            regs,
            hal,
            cmdq,
            evtq,
            priq,
            strtab,
            masters,
            ..
        } = self;
        // SAFETY: forwarded from the caller.
        unsafe {
            for m in masters.into_iter().flatten() {
                if let Some(cd) = m.cd {
                    cd.release(&hal);
                }
            }
            for q in [evtq, priq].into_iter().flatten() {
                q.release(&hal);
            }
            cmdq.release(&hal);
            strtab.release(&hal);
        }
        (regs, hal)
    }
}

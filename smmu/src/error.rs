//! The driver core's typed errors (SPEC D10: every failure is one of these, never a panic).

use core::fmt;

use crate::dma::OutOfBounds;
use crate::hal::HalError;

/// What a bounded wait was waiting for when its budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// `SMMU_CR0ACK` to reflect a `SMMU_CR0` write (§6.3.10).
    Cr0Ack,
    /// `SMMU_GBPA.Update` to clear (§6.3.14).
    GbpaUpdate,
    /// `SMMU_IRQ_CTRLACK` to reflect a `SMMU_IRQ_CTRL` write (§6.3.17).
    IrqCtrlAck,
    /// Free space in the command queue (the SMMU is not consuming).
    CmdqSpace,
    /// Completion of a `CMD_SYNC`.
    CmdSync,
    /// Another CPU to finish writing or publishing commands it reserved queue space for
    /// (the lock-free command queue's hand-over; a CPU stalled inside a submission).
    CmdqOwner,
}

/// Why probe refused an SMMU (SPEC D1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeError {
    /// `IDR0.TTF` lacks AArch64 (VMSAv8-64) translation tables.
    NoAarch64Tables,
    /// `IDR0.TTENDIAN` says the SMMU cannot walk tables in this CPU's (little) endianness.
    UnsupportedEndianness,
    /// Neither stage 1 nor stage 2 is implemented.
    NoTranslation,
    /// The command queue cannot hold a full batch plus its `CMD_SYNC` (`IDR1.CMDQS`).
    CmdqTooSmall {
        /// log2 of the largest command queue the SMMU supports.
        log2_entries: u8,
    },
    /// The ID registers report a reserved encoding in a field the driver depends on.
    Reserved {
        /// The field (`"IDR0.ST_LEVEL"`, …).
        field: &'static str,
    },
    /// No translation granule the driver's page tables support (`IDR5.GRAN*`).
    NoGranule,
    /// The register frame reads all-ones (no device, or a bus error).
    NoDevice,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAarch64Tables => f.write_str("the SMMU does not walk AArch64 tables"),
            Self::UnsupportedEndianness => {
                f.write_str("the SMMU does not walk little-endian tables")
            }
            Self::NoTranslation => f.write_str("the SMMU implements neither stage 1 nor stage 2"),
            Self::CmdqTooSmall { log2_entries } => write!(
                f,
                "a command queue of 2^{log2_entries} entries cannot hold a 64-command batch and its sync"
            ),
            Self::Reserved { field } => write!(f, "{field} holds a reserved encoding"),
            Self::NoGranule => f.write_str("no supported translation granule"),
            Self::NoDevice => f.write_str("the register frame reads as all-ones"),
        }
    }
}

impl ProbeError {
    /// A stable kebab-case name for the refusal, for tools and logs that match on it (the
    /// text of [`Display`](fmt::Display) may change; this does not).
    ///
    /// ```
    /// assert_eq!(smmu::ProbeError::NoAarch64Tables.code(), "no-aarch64-tables");
    /// ```
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NoAarch64Tables => "no-aarch64-tables",
            Self::UnsupportedEndianness => "no-little-endian-tables",
            Self::NoTranslation => "no-translation-stage",
            Self::CmdqTooSmall { .. } => "cmdq-too-small",
            Self::Reserved { .. } => "reserved-id-field",
            Self::NoGranule => "no-supported-granule",
            Self::NoDevice => "no-device",
        }
    }
}

impl core::error::Error for ProbeError {}

/// A command the SMMU refused (`CMDQ_CONS.ERR`, §7.1); the queue was recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandFault {
    /// `CMDQ_CONS.ERR`: [`crate::arch::queue::cmdq_error`].
    pub error: u32,
    /// The two words of the offending entry, as the driver wrote them.
    pub words: [u64; 2],
}

/// Everything the driver core can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Probe refused the SMMU.
    Probe(ProbeError),
    /// A bounded wait gave up.
    Timeout(WaitFor),
    /// The platform could not provide memory or a mapping.
    Hal(HalError),
    /// A DMA structure was indexed outside its bounds (a corrupt index; nothing was touched).
    OutOfBounds(OutOfBounds),
    /// The SMMU rejected a command of this submission (`CERROR_ILL`); the command was
    /// replaced by a `CMD_SYNC`, so it had no effect, and the queue runs again.
    CommandRejected(CommandFault),
    /// A command fetch aborted or an ATC invalidation timed out more times than the retry
    /// budget allows.
    CommandRetriesExhausted(CommandFault),
    /// `GERROR.SFM_ERR`: the SMMU is in service failure mode; only a reset helps.
    ServiceFailure,
    /// A StreamID beyond the stream table (or `IDR1.SIDSIZE`).
    StreamIdOutOfRange(u32),
    /// A SubstreamID beyond the CD table (or `IDR1.SSIDSIZE`).
    SubstreamIdOutOfRange(u32),
    /// The feature is not implemented by this SMMU.
    Unsupported(&'static str),
    /// No ASID or VMID left.
    IdsExhausted,
    /// A fixed-capacity driver table (masters, StreamIDs per master) is full.
    CapacityExhausted,
    /// The master is not known to the driver.
    NoSuchMaster,
    /// The StreamID already belongs to another master.
    StreamIdInUse(u32),
    /// The domain is attached to masters and cannot be freed or reconfigured.
    DomainBusy,
    /// The domain is of a kind that cannot do this (mapping into an identity domain, …).
    WrongDomainKind,
    /// A page-table operation failed.
    PageTable(smmu_pagetable::Error),
    /// A protected master was asked to do what SPEC D9 forbids.
    Protected(crate::policy::Refusal),
    /// A guest's half of a nested STE was refused (SPEC D13).
    Nested(crate::nested::NestedError),
    /// A guest's invalidation command was refused (SPEC D13).
    GuestCommand(crate::nested::GuestCommandError),
    /// A nested domain needs a stage-2 domain created as a nesting parent.
    NotNestingParent,
    /// An event or PRI queue could not be created.
    Queue(crate::evtq::QueueError),
    /// An event or PRI queue could not be drained (a hostile `PROD`).
    Drain(crate::evtq::DrainError),
    /// An inherited (adopted) table descriptor covering this StreamID is invalid now: the
    /// device under it is refused, the rest of the table stays adopted (SPEC K3).
    InheritedDescriptorInvalid(u32),
    /// An inherited (adopted) STE, or a CD it points at, changed since adoption's scan: it no
    /// longer validates, or it uses an ASID or VMID that was not reserved then. The device is
    /// refused; the rest of the table stays adopted (SPEC K21).
    InheritedEntryChanged(u32),
    /// The STE is adopted and deferred: nothing may rewrite it before an explicit attach
    /// (SPEC K12).
    Deferred(u32),
    /// `SMMU_GBPA` did not take the value written (`Update` cleared, but the register reads
    /// `read`, not `wrote`; SPEC D11). QEMU 7.2's SMMU, which ignores `GBPA`, gives this.
    GbpaNotTaken {
        /// The value written (without `Update`).
        wrote: u32,
        /// The value read back.
        read: u32,
    },
    /// A reset step failed while `SMMUEN` was set, and its failure action could not confirm
    /// `GBPA.ABORT`, so it left `SMMUEN` set (SPEC K16): DMA is still translated by the
    /// configuration in force rather than bypassing. The step's own error is superseded:
    /// what the caller must act on is that the SMMU is still enabled.
    AbortNotConfirmed {
        /// The step that failed.
        step: crate::reset::ResetStep,
        /// `SMMU_GBPA` as read after the abort attempt.
        gbpa: u32,
    },
    /// The STE lives in a table inherited from the crashed kernel: no RMR bypass is
    /// installed over it (SPEC K10).
    InheritedSte(u32),
    /// A register read back differently from what was written (SPEC D11): the register.
    WriteNotTaken(&'static str),
}

impl From<HalError> for Error {
    fn from(e: HalError) -> Self {
        Error::Hal(e)
    }
}

impl From<ProbeError> for Error {
    fn from(e: ProbeError) -> Self {
        Error::Probe(e)
    }
}

impl From<OutOfBounds> for Error {
    fn from(e: OutOfBounds) -> Self {
        Error::OutOfBounds(e)
    }
}

impl From<smmu_pagetable::Error> for Error {
    fn from(e: smmu_pagetable::Error) -> Self {
        Error::PageTable(e)
    }
}

impl From<crate::policy::RewriteRefusal> for Error {
    fn from(e: crate::policy::RewriteRefusal) -> Self {
        use crate::policy::RewriteRefusal;
        match e {
            RewriteRefusal::Protected(refusal) => refusal.into(),
            RewriteRefusal::Deferred(sid) => Error::Deferred(sid),
            RewriteRefusal::Inherited(sid) => Error::InheritedSte(sid),
        }
    }
}

impl From<crate::policy::Refusal> for Error {
    fn from(e: crate::policy::Refusal) -> Self {
        Error::Protected(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Probe(e) => write!(f, "probe: {e}"),
            Self::Timeout(w) => write!(f, "timed out waiting for {w:?}"),
            Self::Hal(e) => write!(f, "platform: {e}"),
            Self::OutOfBounds(e) => write!(f, "{e}"),
            Self::CommandRejected(c) => write!(
                f,
                "the SMMU rejected command {:#018x}_{:016x} (CERROR {})",
                c.words[1], c.words[0], c.error
            ),
            Self::CommandRetriesExhausted(c) => {
                write!(f, "command queue error {} persisted after retries", c.error)
            }
            Self::ServiceFailure => f.write_str("the SMMU is in service failure mode"),
            Self::StreamIdOutOfRange(s) => write!(f, "StreamID {s:#x} is out of range"),
            Self::SubstreamIdOutOfRange(s) => write!(f, "SubstreamID {s:#x} is out of range"),
            Self::Unsupported(what) => write!(f, "not supported by this SMMU: {what}"),
            Self::IdsExhausted => f.write_str("no free ASID/VMID"),
            Self::CapacityExhausted => f.write_str("a fixed-capacity driver table is full"),
            Self::NoSuchMaster => f.write_str("no such master"),
            Self::StreamIdInUse(s) => write!(f, "StreamID {s:#x} belongs to another master"),
            Self::DomainBusy => f.write_str("the domain is attached"),
            Self::WrongDomainKind => f.write_str("the domain kind does not allow this"),
            Self::PageTable(e) => write!(f, "page table: {e:?}"),
            Self::Protected(r) => write!(f, "protected DMA: {r}"),
            Self::Nested(e) => write!(f, "nested domain: {e}"),
            Self::GuestCommand(e) => write!(f, "guest invalidation: {e}"),
            Self::NotNestingParent => {
                f.write_str("a nested domain needs a stage-2 domain created as a nesting parent")
            }
            Self::Queue(e) => write!(f, "{e}"),
            Self::Drain(e) => write!(f, "{e:?}"),
            Self::InheritedDescriptorInvalid(s) => {
                write!(
                    f,
                    "the inherited descriptor covering StreamID {s:#x} is invalid"
                )
            }
            Self::InheritedEntryChanged(s) => write!(
                f,
                "the inherited STE of StreamID {s:#x} changed since adoption: it no longer \
                 validates or uses an ASID or VMID that was not reserved"
            ),
            Self::Deferred(s) => write!(f, "StreamID {s:#x} is deferred (adopted, not attached)"),
            Self::WriteNotTaken(r) => write!(f, "the SMMU did not take the write to {r}"),
            Self::InheritedSte(s) => write!(
                f,
                "StreamID {s:#x} uses a stream table inherited from the crashed kernel: no bypass is installed there"
            ),
            Self::GbpaNotTaken { wrote, read } => write!(
                f,
                "the SMMU did not take the global bypass setting: wrote {wrote:#x}, reads {read:#x}"
            ),
            Self::AbortNotConfirmed { step, gbpa } => write!(
                f,
                "reset step {step:?} failed and global abort could not be confirmed (GBPA reads \
                 {gbpa:#x}): translation was left enabled rather than fall back to bypass"
            ),
        }
    }
}

impl core::error::Error for Error {}

impl From<crate::nested::NestedError> for Error {
    fn from(e: crate::nested::NestedError) -> Self {
        Self::Nested(e)
    }
}

impl From<crate::nested::GuestCommandError> for Error {
    fn from(e: crate::nested::GuestCommandError) -> Self {
        Self::GuestCommand(e)
    }
}

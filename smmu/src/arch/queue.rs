//! Queue pointer arithmetic and global-error bits (IHI 0070 G.b §3.5, §6.3.19, §6.3.27).
//!
//! A queue of 2^n entries has n index bits and, just above them, a wrap bit; the queue is
//! empty when both agree and full when only the wrap bits differ. Event and PRI queues also
//! carry an overflow flag in bit 31 of PROD (`OVFLG`) and CONS (`OVACKFLG`).

use bitflags::bitflags;

use super::regs::{CMDQ_CONS, EVTQ_PROD, GERROR};

/// Bit 31 of `EVENTQ_PROD`/`PRIQ_PROD` (`OVFLG`) and of their CONS (`OVACKFLG`) (§6.3.95).
pub const OVERFLOW_FLAG: u32 = EVTQ_PROD::OVFLG.mask << EVTQ_PROD::OVFLG.shift;

/// Largest log2 queue size the architecture allows (`IDR1.CMDQS` ≤ 19).
pub const MAX_LOG2_ENTRIES: u32 = 19;

/// A PROD or CONS value of a queue with 2^`log2` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePtr {
    raw: u32,
    log2: u32,
}

impl QueuePtr {
    /// Interprets a register value; `log2` is clamped to [`MAX_LOG2_ENTRIES`].
    pub const fn new(raw: u32, log2: u32) -> Self {
        let log2 = if log2 > MAX_LOG2_ENTRIES {
            MAX_LOG2_ENTRIES
        } else {
            log2
        };
        QueuePtr { raw, log2 }
    }

    /// The index and wrap bits, without the error and overflow fields.
    pub const fn value(&self) -> u32 {
        self.raw & ((2u32 << self.log2) - 1)
    }

    /// The entry index.
    pub const fn index(&self) -> u32 {
        self.raw & ((1u32 << self.log2) - 1)
    }

    /// The wrap bit.
    pub const fn wrap(&self) -> bool {
        (self.raw >> self.log2) & 1 != 0
    }

    /// The overflow flag (event and PRI queues).
    pub const fn overflow(&self) -> bool {
        self.raw & OVERFLOW_FLAG != 0
    }

    /// The `CMDQ_CONS.ERR` field (§6.3.28).
    pub const fn cmdq_error(&self) -> u32 {
        (self.raw >> CMDQ_CONS::ERR.shift) & CMDQ_CONS::ERR.mask
    }

    /// The pointer advanced by `n` entries, wrapping, with the other fields kept.
    pub const fn advance(&self, n: u32) -> Self {
        let span = 2u32 << self.log2;
        let next = (self.value().wrapping_add(n)) & (span - 1);
        QueuePtr {
            raw: (self.raw & !(span - 1)) | next,
            log2: self.log2,
        }
    }

    /// The raw value.
    pub const fn raw(&self) -> u32 {
        self.raw
    }

    /// Entries between `cons` and `prod` (what is queued).
    pub const fn used(prod: QueuePtr, cons: QueuePtr) -> u32 {
        let span = 2u32 << prod.log2;
        prod.value().wrapping_sub(cons.value()) & (span - 1)
    }

    /// Whether a queue with these pointers is full.
    pub const fn is_full(prod: QueuePtr, cons: QueuePtr) -> bool {
        prod.index() == cons.index() && prod.wrap() != cons.wrap()
    }

    /// Whether a queue with these pointers is empty.
    pub const fn is_empty(prod: QueuePtr, cons: QueuePtr) -> bool {
        prod.value() == cons.value()
    }
}

/// `CMDQ_CONS.ERR` encodings (§7.1). They sit with `CMDQ_CONS`'s field layout in
/// [`super::regs`], which decodes them for the register catalogue without importing this
/// module; this path is kept for one release.
pub use super::regs::cmdq_error;

const fn gerror_bit(field: tock_registers::fields::Field<u32, GERROR::Register>) -> u32 {
    field.mask << field.shift
}

bitflags! {
    /// Active global errors: `SMMU_GERROR` XOR `SMMU_GERRORN` (§6.3.19, §6.3.20).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GlobalErrors: u32 {
        /// `CMDQ_ERR`: the command queue stopped on an error (see `CMDQ_CONS.ERR`).
        const CMDQ_ERR = gerror_bit(GERROR::CMDQ_ERR);
        /// `EVENTQ_ABT_ERR`.
        const EVTQ_ABT_ERR = gerror_bit(GERROR::EVTQ_ABT_ERR);
        /// `PRIQ_ABT_ERR`.
        const PRIQ_ABT_ERR = gerror_bit(GERROR::PRIQ_ABT_ERR);
        /// `MSI_CMDQ_ABT_ERR`.
        const MSI_CMDQ_ABT_ERR = gerror_bit(GERROR::MSI_CMDQ_ABT_ERR);
        /// `MSI_EVENTQ_ABT_ERR`.
        const MSI_EVTQ_ABT_ERR = gerror_bit(GERROR::MSI_EVTQ_ABT_ERR);
        /// `MSI_PRIQ_ABT_ERR`.
        const MSI_PRIQ_ABT_ERR = gerror_bit(GERROR::MSI_PRIQ_ABT_ERR);
        /// `MSI_GERROR_ABT_ERR`.
        const MSI_GERROR_ABT_ERR = gerror_bit(GERROR::MSI_GERROR_ABT_ERR);
        /// `SFM_ERR`: the SMMU entered Service Failure Mode.
        const SFM_ERR = gerror_bit(GERROR::SFM_ERR);
        /// `CMDQP_ERR`.
        const CMDQP_ERR = gerror_bit(GERROR::CMDQP_ERR);
        /// `DPT_ERR`.
        const DPT_ERR = gerror_bit(GERROR::DPT_ERR);
    }
}

impl GlobalErrors {
    /// The active errors given `SMMU_GERROR` and `SMMU_GERRORN`.
    pub const fn active(gerror: u32, gerrorn: u32) -> Self {
        GlobalErrors::from_bits_truncate(gerror ^ gerrorn)
    }
}

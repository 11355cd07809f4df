//! Test doubles of the driver's unit tests: a fake SMMU whose command queue can be made to
//! stop completing, and a driver on it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
pub(super) use std::vec::Vec as StdVec;

use super::*;
pub(super) use crate::host::HostHal;
pub(super) use crate::strtab::{Layout, OwnedStreamTable};
pub(super) use crate::testutil::FakeRegs;

/// Drop no `CMDQ_PROD` write.
pub(super) const NEVER: u64 = u64::MAX;

/// A fake SMMU whose command queue consumes everything at each `CMDQ_PROD` write, except
/// the writes from index `drop_from` (counted from 0, reset with it) up to
/// `drop_from + drop_len`: those the "SMMU" never sees, so their `CMD_SYNC` times out.
pub(super) struct Stalls {
    drop_from: Arc<AtomicU64>,
    drop_len: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
}

impl Stalls {
    pub(super) fn set(&self, from: u64, len: u64) {
        self.seen.store(0, Ordering::SeqCst);
        self.drop_len.store(len, Ordering::SeqCst);
        self.drop_from.store(from, Ordering::SeqCst);
    }
}

pub(super) fn fake_smmu_regs() -> (FakeRegs, Stalls) {
    let regs = FakeRegs::new();
    let stalls = Stalls {
        drop_from: Arc::new(AtomicU64::new(NEVER)),
        drop_len: Arc::new(AtomicU64::new(0)),
        seen: Arc::new(AtomicU64::new(0)),
    };
    let (from, len, seen) = (
        stalls.drop_from.clone(),
        stalls.drop_len.clone(),
        stalls.seen.clone(),
    );
    regs.on_write(move |file, w| match w.offset {
        offset::CR0 => file.set32(offset::CR0ACK, w.value as u32),
        offset::IRQ_CTRL => file.set32(offset::IRQ_CTRLACK, w.value as u32),
        offset::CMDQ_PROD => {
            let i = seen.fetch_add(1, Ordering::SeqCst);
            let start = from.load(Ordering::SeqCst);
            let dropped = i >= start && i - start < len.load(Ordering::SeqCst);
            if !dropped {
                file.set32(offset::CMDQ_CONS, w.value as u32);
            }
        }
        _ => {}
    });
    (regs, stalls)
}

pub(super) fn features(msi: bool) -> Features {
    // IDR0: S2P, S1P, AArch64 tables, COHACC, MSI (optional), no stalls. IDR1: CMDQS 8,
    // SIDSIZE 4. IDR5: 4K granule, 48-bit OAS.
    let idr0 = 0b11 | 0b10 << 2 | 1 << 4 | u32::from(msi) << 13 | 0b01 << 24;
    let ids = crate::arch::idr::IdRegs {
        idr: [idr0, 8 << 21 | 4, 0, 0, 0, 1 << 4 | 0b101],
        iidr: 0,
        aidr: 0,
    };
    Features::decode(&ids)
}

pub(super) fn config() -> SmmuConfig {
    SmmuConfig {
        budget: PollBudget(20),
        evtq_log2: None,
        ..SmmuConfig::default()
    }
}

pub(super) type TestSmmu<'a> = Smmu<&'a FakeRegs, &'a HostHal, OwnedStreamTable>;

pub(super) fn new_smmu<'a>(regs: &'a FakeRegs, hal: &'a HostHal, msi: bool) -> TestSmmu<'a> {
    let abort = make::ste_image(&make::abort_ste());
    let table = OwnedStreamTable::new(hal, Layout::Linear, 4, true, &abort).unwrap();
    Smmu::new(regs, hal, features(msi), table, config()).unwrap()
}

pub(super) fn stes(smmu: &TestSmmu<'_>, sids: &[u32]) -> StdVec<[u64; ENTRY_QWORDS]> {
    sids.iter()
        .map(|&s| {
            smmu.with_stream_table(|t| {
                TestSmmu::locate_ste(t, s)
                    .unwrap()
                    .read(smmu.hal())
                    .unwrap()
            })
        })
        .collect()
}

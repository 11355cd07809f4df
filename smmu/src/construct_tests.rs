//! [`Smmu::new_in`]: the driver built in caller-provided memory, without a stack copy of
//! itself (issue 11: `Smmu` overflowed a 64 KiB firmware stack).

use core::mem::{size_of, MaybeUninit};
use std::boxed::Box;

use crate::arch::idr::IdRegs;
use crate::strtab::Layout;
use crate::testutil::{FakeRegs, HeapHal};
use crate::{MasterConfig, OwnedStreamTable, Smmu, SmmuConfig};

type TestSmmu<'a> = Smmu<&'a FakeRegs, &'a HeapHal, OwnedStreamTable>;

/// QEMU-7.2-like `virt` SMMUv3 ID registers: stage 1 only, 2-level
/// stream table, 16-bit ASIDs and VMIDs, SIDSIZE 16, RIL, OAS 44 bits.
fn ids() -> IdRegs {
    IdRegs {
        idr: [0x0D44_101A, 0x0273_0010, 0, 0x1404, 0, 0x74],
        iidr: 0,
        aidr: 1,
    }
}

fn stream_table(hal: &HeapHal) -> OwnedStreamTable {
    let abort = crate::writer::make::ste_image(&crate::writer::make::abort_ste());
    OwnedStreamTable::new(hal, Layout::Linear, 6, true, &abort).expect("stream table")
}

/// The documented size (driver docs and README): about 52 KiB, so that a 64 KiB stack
/// cannot hold it next to anything else.
#[test]
fn smmu_is_as_large_as_documented() {
    let size = size_of::<TestSmmu<'static>>();
    assert!((40 << 10..64 << 10).contains(&size), "Smmu is {size} bytes");
}

/// Runs `f` on a thread whose whole stack is smaller than `Smmu`: a stack temporary of the
/// driver would overflow it (the guard page turns that into a crash of the test binary).
fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    const STACK: usize = 48 << 10;
    assert!(STACK < size_of::<TestSmmu<'static>>());
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(STACK)
            .spawn_scoped(scope, f)
            .expect("spawn")
            .join()
            .expect("the construction thread panicked")
    })
}

#[test]
fn new_in_builds_the_driver_in_place_on_a_small_stack() {
    let hal = HeapHal::new();
    let regs = FakeRegs::with_ack_mirroring();
    let (hal, regs) = (&hal, &regs);
    let slot = on_small_stack(move || {
        let features = crate::probe::check(&ids()).expect("features");
        let mut slot: Box<MaybeUninit<TestSmmu<'_>>> = Box::new_uninit();
        let strtab = stream_table(hal);
        let smmu = Smmu::new_in(
            &mut slot,
            regs,
            hal,
            features,
            strtab,
            SmmuConfig::default(),
        )
        .expect("new_in");
        // The state is that of a fresh driver: empty allocators of the probed widths, no
        // master, GBPA not flagged, and no register written.
        assert_eq!(smmu.asids().capacity(), 1 << 16);
        assert_eq!(smmu.asids().in_use(), 0);
        assert_eq!(smmu.vmids().capacity(), 1 << 16);
        assert!(!smmu.gbpa_ignored());
        assert!(regs.writes().is_empty());
        let id = smmu
            .add_master(&MasterConfig {
                sids: &[3],
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .expect("the master table starts empty");
        assert_eq!(smmu.master_sids(id).expect("master"), &[3]);
        assert_eq!(smmu.asids_mut().alloc(), Ok(1));
        slot
    });
    // Back on a large stack: `release` takes the driver by value.
    // SAFETY: the slot was initialised by `new_in`; no register points at its buffers.
    let smmu = unsafe { slot.assume_init() };
    // SAFETY: as above.
    unsafe { smmu.release() };
    assert_eq!(hal.live_allocations(), 0, "release gives every buffer back");
}

#[test]
fn new_in_failure_gives_everything_back() {
    let hal = HeapHal::new();
    let regs = FakeRegs::new();
    let features = crate::probe::check(&ids()).expect("features");
    let strtab = stream_table(&hal);
    // The command queue is the next allocation: it fails.
    hal.set_alloc_budget(Some(0));
    let mut slot: Box<MaybeUninit<TestSmmu<'_>>> = Box::new_uninit();
    let r = Smmu::new_in(
        &mut slot,
        &regs,
        &hal,
        features,
        strtab,
        SmmuConfig::default(),
    );
    assert!(matches!(r, Err(crate::Error::Hal(_))), "{r:?}");
    assert_eq!(hal.live_allocations(), 0, "the stream table was given back");
}

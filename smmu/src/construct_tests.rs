//! [`Smmu::new_in`]: the driver built in caller-provided memory, without a stack copy of
//! itself (issue 11: `Smmu` overflowed a 64 KiB firmware stack).

use core::mem::{size_of, MaybeUninit};
use std::boxed::Box;

use crate::arch::idr::IdRegs;
use crate::host::HostHal;
use crate::strtab::Layout;
use crate::testutil::FakeRegs;
use crate::{MasterConfig, OwnedStreamTable, Smmu, SmmuConfig};

type TestSmmu<'a> = Smmu<&'a FakeRegs, &'a HostHal, OwnedStreamTable>;

/// QEMU-7.2-like `virt` SMMUv3 ID registers: stage 1 only, 2-level
/// stream table, 16-bit ASIDs and VMIDs, SIDSIZE 16, RIL, OAS 44 bits.
fn ids() -> IdRegs {
    IdRegs {
        idr: [0x0D44_101A, 0x0273_0010, 0, 0x1404, 0, 0x74],
        iidr: 0,
        aidr: 1,
    }
}

fn stream_table(hal: &HostHal) -> OwnedStreamTable {
    let abort = crate::writer::make::ste_image(&crate::writer::make::abort_ste());
    OwnedStreamTable::new(hal, Layout::Linear, 6, true, &abort).expect("stream table")
}

/// The documented size (the crate's "Where `Smmu` lives", `Smmu::new_in_with`, README):
/// 53 376 bytes on a 64-bit target with an `OwnedStreamTable` and the default capacities,
/// 43 904 bytes plus one master slot of 264 + 4 × `MAX_SIDS_PER_MASTER` bytes per
/// `MAX_MASTERS`. When this fails, the figure in those three places changes with it.
#[test]
fn smmu_is_as_large_as_documented() {
    let size = size_of::<TestSmmu<'static>>();
    if cfg!(target_pointer_width = "64") {
        let slot = 264 + 4 * crate::MAX_SIDS_PER_MASTER;
        // The command queue's valid and rejected bitmaps: one bit per entry each.
        let bitmaps = 2 * (1usize << crate::cmdq::MAX_LOG2_ENTRIES) / 8;
        assert_eq!(
            size,
            43_904 - 256 + bitmaps + crate::MAX_MASTERS * slot,
            "Smmu is {size} bytes"
        );
        let default_capacities = crate::MAX_MASTERS == 32
            && crate::MAX_SIDS_PER_MASTER == 8
            && crate::cmdq::MAX_LOG2_ENTRIES == 10;
        assert!(
            !default_capacities || size == 53_376,
            "Smmu is {size} bytes"
        );
    }
    // Larger than a 48 KiB stack (the next test relies on it) at any capacity.
    assert!(size > 48 << 10, "Smmu is {size} bytes");
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
    let hal = HostHal::new();
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
    let hal = HostHal::new();
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

/// The capacities follow the Cargo features (`masters-128`, `masters-512`,
/// `sids-per-master-16`, `sids-per-master-32`; the largest enabled wins), and the driver
/// really holds that many: every slot registers, one more is refused. Not under Miri: it runs
/// no `unsafe` the other tests here do not, and registering every slot takes Miri minutes.
#[test]
#[cfg_attr(miri, ignore)]
fn capacities_follow_the_features_and_bound_registration() {
    let masters = match (cfg!(feature = "masters-512"), cfg!(feature = "masters-128")) {
        (true, _) => 512,
        (false, true) => 128,
        (false, false) => 32,
    };
    let sids = match (
        cfg!(feature = "sids-per-master-32"),
        cfg!(feature = "sids-per-master-16"),
    ) {
        (true, _) => 32,
        (false, true) => 16,
        (false, false) => 8,
    };
    assert_eq!(
        (crate::MAX_MASTERS, crate::MAX_SIDS_PER_MASTER),
        (masters, sids)
    );

    let hal = HostHal::new();
    let regs = FakeRegs::with_ack_mirroring();
    let features = crate::probe::check(&ids()).expect("features");
    // A linear table with room for every master's StreamIDs: registering touches no queue.
    let abort = crate::writer::make::ste_image(&crate::writer::make::abort_ste());
    let used = masters * sids + sids;
    let log2 = (used + sids + 1).next_power_of_two().trailing_zeros();
    let strtab =
        OwnedStreamTable::new(&hal, Layout::Linear, log2, true, &abort).expect("stream table");
    let mut slot: Box<MaybeUninit<TestSmmu<'_>>> = Box::new_uninit();
    let smmu = Smmu::new_in(
        &mut slot,
        &regs,
        &hal,
        features,
        strtab,
        SmmuConfig::default(),
    )
    .expect("new_in");
    // One StreamID more than a master may have is refused before anything changes.
    let too_many: std::vec::Vec<u32> = (used as u32..=(used + sids) as u32).collect();
    assert_eq!(
        smmu.add_master(&MasterConfig::new(&too_many)),
        Err(crate::Error::CapacityExhausted)
    );
    let all: std::vec::Vec<u32> = (0..used as u32).collect();
    let mut chunks = all.chunks(sids);
    for _ in 0..masters {
        let chunk = chunks.next().expect("chunk");
        smmu.add_master(&MasterConfig::new(chunk))
            .expect("a slot for every master");
    }
    let last = chunks.next().expect("chunk");
    assert_eq!(
        smmu.add_master(&MasterConfig::new(last)),
        Err(crate::Error::CapacityExhausted)
    );
    // SAFETY: no register points at the buffers (nothing was reset); not used again.
    unsafe { Smmu::release_in(&mut slot) };
    assert_eq!(hal.live_allocations(), 0);
}

//! The first kernel's platform, as every stage of this firmware starts it: the main carve-out
//! (its last MiB a protected master's shared window), the SMMU's register frame, both placed
//! in `'static` slots, and the `edu` functions on the PCI bus.
//!
//! Each function relies on what every image of this crate sets up before `main`: the initial
//! page table of [`board::idmap`] (RAM Normal, the SMMU frame and the ECAM window Device,
//! identity-mapped).

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use smmu::{Mmio, PhysAddr, PhysRange};

use crate::board;
use crate::carveout::Carveout;
use crate::edu;
use crate::pci::{Ecam, Function};

/// Places the main carve-out and the SMMU's register frame in their slots (each taken from
/// a [`StaticSlot`](smmu::StaticSlot) once).
pub fn bring_up(
    carve_slot: &'static mut MaybeUninit<Carveout>,
    regs_slot: &'static mut MaybeUninit<Mmio>,
) -> (&'static Carveout, &'static Mmio) {
    // SAFETY: the carve-out is RAM above the image (memory.ld), identity-mapped and used by
    // nothing else; the shared window is its last MiB.
    let carve: &'static Carveout = carve_slot.write(unsafe {
        Carveout::new(
            board::CARVEOUT_BASE,
            board::CARVEOUT_SIZE,
            PhysRange {
                start: PhysAddr(board::SHARED_WINDOW_BASE),
                size: board::SHARED_WINDOW_SIZE,
            },
        )
    });
    (carve, regs_slot.write(smmu_registers()))
}

/// The SMMU's register frame.
pub fn smmu_registers() -> Mmio {
    // SMMU_BASE is a non-zero constant.
    let base = NonNull::new(board::SMMU_BASE as *mut u8).unwrap_or(NonNull::dangling());
    // SAFETY: the SMMU frame is mapped as Device memory by the initial page table, 8-aligned,
    // and only the driver uses it.
    unsafe { Mmio::new(base, Mmio::STANDARD_SIZE) }
}

/// QEMU virt's high ECAM window.
pub fn ecam() -> Ecam {
    // SAFETY: the window is mapped as Device memory by the initial page table; only the
    // running stage configures the bus.
    unsafe { Ecam::new(board::ECAM_BASE) }
}

/// The first `N` `edu` functions on the bus, in bus order (StreamID = RID).
pub fn edu_functions<const N: usize>(ecam: &Ecam) -> [Option<Function>; N] {
    let mut found = [None; N];
    for (slot, f) in found.iter_mut().zip(ecam.find(edu::VENDOR, edu::DEVICE)) {
        *slot = Some(f);
    }
    found
}

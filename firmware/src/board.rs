//! QEMU `virt` (7.2) addresses this firmware uses, from QEMU's `hw/arm/virt.c` memory map and
//! the device tree it generates (`-M virt,iommu=smmuv3,dumpdtb=virt.dtb` shows them).
//!
//! Porting to a real board means changing this file (or reading the same facts from the
//! board's device tree) and nothing else in the library.

use aarch64_paging::descriptor::El1Attributes;
use aarch64_rt::InitialPagetable;

/// The first PL011 UART (`/pl011@9000000`).
pub const UART_BASE: usize = 0x0900_0000;
/// The SMMUv3 register frame (`/smmuv3@9050000`, 128 KiB: page 0 and page 1).
pub const SMMU_BASE: usize = 0x0905_0000;
/// PCIe ECAM in high memory (`highmem-ecam`, QEMU's default for `virt` with an AArch64 CPU):
/// 256 buses of 1 MiB each.
pub const ECAM_BASE: usize = 0x40_1000_0000;
/// Size of the ECAM window.
pub const ECAM_SIZE: usize = 0x1000_0000;
/// The 32-bit PCIe MMIO window BARs are assigned from.
pub const PCI_MMIO_BASE: u64 = 0x1000_0000;
/// Size of the 32-bit MMIO window.
pub const PCI_MMIO_SIZE: u64 = 0x2eff_0000;
/// RAM (`-m 128M`).
pub const RAM_BASE: u64 = 0x4000_0000;
/// Size of RAM.
pub const RAM_SIZE: u64 = 128 << 20;
/// The DMA carve-out: SMMU structures, I/O page tables and DMA buffers. Identity-mapped,
/// Normal write-back cacheable (the initial page table maps all of RAM that way), above the
/// image (`memory.ld`).
pub const CARVEOUT_BASE: u64 = 0x4100_0000;
/// Size of the carve-out.
pub const CARVEOUT_SIZE: u64 = 32 << 20;
/// The shared (bounce-buffer) window a protected master may reach (SPEC D9): the last 1 MiB of
/// the carve-out, never handed out by the allocator.
pub const SHARED_WINDOW_BASE: u64 = CARVEOUT_BASE + CARVEOUT_SIZE - SHARED_WINDOW_SIZE;
/// Size of the shared window.
pub const SHARED_WINDOW_SIZE: u64 = 1 << 20;

/// The crash kernel's reservation (Linux's `crashkernel=`): the old stage of the `kdump` binary
/// never allocates here; the crash stage keeps its stack, its state and its own DMA carve-out
/// inside it, and nothing else.
pub const CRASH_BASE: u64 = 0x4400_0000;
/// Size of the crash kernel's reservation.
pub const CRASH_SIZE: u64 = 32 << 20;
/// The crash stage's stack: the first 512 KiB of the reservation (the stack grows down from
/// its end). `smmu_kdump::boot` returns the driver by value, so it is generous.
pub const CRASH_STACK_SIZE: u64 = 512 << 10;
/// The crash stage's state (its carve-out allocator, register handle and driver), after the
/// stack.
pub const CRASH_STATE: u64 = CRASH_BASE + CRASH_STACK_SIZE;
/// Room for the crash stage's state.
pub const CRASH_STATE_SIZE: u64 = 512 << 10;
/// The crash stage's DMA carve-out: the rest of the reservation.
pub const CRASH_CARVEOUT_BASE: u64 = CRASH_STATE + CRASH_STATE_SIZE;
/// Size of the crash stage's carve-out.
pub const CRASH_CARVEOUT_SIZE: u64 = CRASH_BASE + CRASH_SIZE - CRASH_CARVEOUT_BASE;
/// The "crash note" page, between the two carve-outs: the old stage records there what DMA it
/// left in flight, as a crashing Linux leaves its notes for the crash kernel's `vmcore`. Only
/// the crash stage's *checks* read it; its SMMU bring-up uses the registers alone.
pub const CRASH_NOTE: u64 = 0x4300_0000;

const _: () = assert!(CARVEOUT_BASE + CARVEOUT_SIZE <= CRASH_NOTE);
const _: () = assert!(CRASH_NOTE + 4096 <= CRASH_BASE);
const _: () = assert!(CRASH_BASE + CRASH_SIZE <= RAM_BASE + RAM_SIZE);

/// Device memory: attribute index 0 (aarch64-rt's default MAIR: Device-nGnRE).
const DEVICE: usize = El1Attributes::VALID
    .union(El1Attributes::ATTRIBUTE_INDEX_0)
    .union(El1Attributes::ACCESSED)
    .union(El1Attributes::UXN)
    .union(El1Attributes::PXN)
    .bits();
/// Normal memory: attribute index 1 (Normal write-back read/write-allocate), inner shareable.
const NORMAL: usize = El1Attributes::VALID
    .union(El1Attributes::ATTRIBUTE_INDEX_1)
    .union(El1Attributes::INNER_SHAREABLE)
    .union(El1Attributes::ACCESSED)
    .bits();

/// The CPU's identity map, 1 GiB blocks at level 1: the first GiB (UART, SMMU, PCIe MMIO) is
/// Device memory, the second (RAM) Normal cacheable, so the driver's atomics run on Normal
/// memory as they do on real firmware; 256 GiB up is the high PCIe ECAM window. Each binary
/// passes it to aarch64-rt's `initial_pagetable!`.
pub const fn idmap() -> InitialPagetable {
    let mut idmap = [0; 512];
    idmap[0] = DEVICE;
    idmap[1] = NORMAL | 0x4000_0000;
    idmap[256] = DEVICE | 0x40_0000_0000;
    InitialPagetable(idmap)
}

//! QEMU `virt` (7.2) addresses this firmware uses, from QEMU's `hw/arm/virt.c` memory map and
//! the device tree it generates (`-M virt,iommu=smmuv3,dumpdtb=virt.dtb` shows them).
//!
//! Porting to a real board means changing this file (or reading the same facts from the
//! board's device tree) and nothing else in the library.

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

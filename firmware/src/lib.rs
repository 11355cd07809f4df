//! A real platform for the `smmu` driver: bare-metal firmware on QEMU's `virt` board.
//!
//! The library holds what any stage of a firmware needs — the board's addresses
//! ([`board`]), the console ([`console`]), a [`Hal`](smmu::Hal) and
//! [`TableAllocator`](smmu_pagetable::TableAllocator) over a DMA carve-out ([`carveout`]), PCI
//! enumeration through ECAM ([`pci`]), the QEMU `edu` device's DMA engine ([`edu`]), and the
//! verdict ([`verdict`]). Each binary in `src/bin/` is one stage (today: `confine`, the DMA
//! confinement checks); a crash-kernel pair adds binaries over the same library.
#![no_std]
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod board;
pub mod carveout;
pub mod console;
pub mod edu;
pub mod footprint;
pub mod guest;
pub mod pci;
pub mod platform;
pub mod stack;
pub mod stage;
pub mod time;
pub mod verdict;

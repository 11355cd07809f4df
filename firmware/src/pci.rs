//! PCI configuration through ECAM (PCIe §7.2.2): find a function by vendor and device ID on
//! bus 0, give it a 32-bit memory BAR, and enable memory decoding and bus mastering.
//!
//! QEMU's `virt` maps StreamID = RequesterID (`iommu-map = <0 &smmu 0 0x10000>` on the PCIe
//! root), so a function's StreamID is `bus << 8 | device << 3 | function`.

use crate::board::{PCI_MMIO_BASE, PCI_MMIO_SIZE};

/// A PCI function on bus 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Device number (0–31).
    pub device: u8,
    /// Function number (0–7).
    pub function: u8,
    config: usize,
}

const VENDOR_ID: usize = 0x00;
const COMMAND: usize = 0x04;
const BAR0: usize = 0x10;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;

impl Function {
    /// The RequesterID, which QEMU's `virt` uses as the StreamID.
    pub fn rid(&self) -> u32 {
        u32::from(self.device) << 3 | u32::from(self.function)
    }

    /// The address BAR0 holds (a 32-bit memory BAR), as configuration space says: what a
    /// crash kernel finds when it enumerates devices the crashed kernel set up. `None` when
    /// memory decoding is off or BAR0 is not an assigned 32-bit memory BAR.
    pub fn bar0(&self) -> Option<u64> {
        let bar = self.read(BAR0);
        let decoding = self.read(COMMAND) & COMMAND_MEMORY != 0;
        (decoding && bar & 0b111 == 0 && bar & !0xf != 0).then_some(u64::from(bar & !0xf))
    }

    /// Turns bus mastering on or off (`Command.Bus Master Enable`, PCIe §7.5.1.1.3): with it
    /// off the function issues no DMA, which is how a driver quiesces a device it cannot
    /// reset.
    pub fn set_bus_master(&self, on: bool) {
        let cmd = self.read(COMMAND) & 0xffff;
        let cmd = if on {
            cmd | COMMAND_BUS_MASTER
        } else {
            cmd & !COMMAND_BUS_MASTER
        };
        self.write(COMMAND, cmd);
    }

    /// Whether bus mastering is on.
    pub fn bus_master(&self) -> bool {
        self.read(COMMAND) & COMMAND_BUS_MASTER != 0
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `config` is the function's 4 KiB ECAM page, mapped as Device memory by the
        // initial page table; `offset` is a 4-aligned offset below 0x40 (callers in this file).
        unsafe { ((self.config + offset) as *const u32).read_volatile() }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ((self.config + offset) as *mut u32).write_volatile(value) }
    }
}

/// The ECAM window and a bump allocator over the 32-bit MMIO window.
#[derive(Debug)]
pub struct Ecam {
    base: usize,
    next_mmio: u64,
}

impl Ecam {
    /// ECAM at `base` (bus 0 only).
    ///
    /// # Safety
    /// `base` is the ECAM window of a PCIe host bridge, mapped as Device memory, covering at
    /// least bus 0 (1 MiB), and nothing else configures the bus.
    pub unsafe fn new(base: usize) -> Self {
        Self {
            base,
            next_mmio: PCI_MMIO_BASE,
        }
    }

    /// The functions on bus 0 with this vendor and device ID, in slot order.
    pub fn find(&self, vendor: u16, device: u16) -> impl Iterator<Item = Function> + '_ {
        (0..32u8)
            .flat_map(move |d| (0..8u8).map(move |f| (d, f)))
            .filter_map(move |(d, f)| {
                let func = Function {
                    device: d,
                    function: f,
                    config: self.base + (usize::from(d) << 15 | usize::from(f) << 12),
                };
                let id = func.read(VENDOR_ID);
                (id == u32::from(device) << 16 | u32::from(vendor)).then_some(func)
            })
    }

    /// Sizes BAR0 (a 32-bit memory BAR), assigns it from the MMIO window and enables memory
    /// decoding and bus mastering. Returns the BAR's address, or `None` when BAR0 is not a
    /// 32-bit memory BAR or the window is full.
    pub fn enable(&mut self, func: &Function) -> Option<u64> {
        func.write(COMMAND, 0);
        func.write(BAR0, u32::MAX);
        let mask = func.read(BAR0);
        // Bit 0: I/O space; bits 2:1: type (0 = 32-bit).
        if mask & 0b111 != 0 || mask == 0 {
            return None;
        }
        let size = u64::from(!(mask & !0xf)) + 1;
        let addr = self.next_mmio.next_multiple_of(size);
        if addr + size > PCI_MMIO_BASE + PCI_MMIO_SIZE {
            return None;
        }
        self.next_mmio = addr + size;
        func.write(BAR0, addr as u32);
        func.write(COMMAND, COMMAND_MEMORY | COMMAND_BUS_MASTER);
        Some(addr)
    }
}

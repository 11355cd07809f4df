//! The virtio disk Linux left running: found through PCI ECAM, its first virtqueue read through
//! the translation Linux's context descriptor gives it, and its reset through the virtio-pci
//! common configuration (virtio 1.2 §4.1.4.3).

use smmu_firmware::board::ECAM_BASE;

/// virtio's PCI vendor ID.
const VENDOR: u32 = 0x1af4;
/// virtio-blk, modern (virtio 1.2 §4.1.2.1: 0x1040 + device type 2).
const DEVICE_BLK: u32 = 0x1042;
/// Vendor-specific PCI capability: a virtio structure (§4.1.4).
const CAP_VENDOR: u32 = 0x09;
/// `cfg_type` of the common configuration (§4.1.4).
const CFG_COMMON: u32 = 1;
/// Where the crash stage moves the BAR that holds the common configuration: Linux put it in
/// the 64-bit window above 512 GiB, beyond this stage's identity map; 16 MiB into the 32-bit
/// window is above everything Linux assigned there.
const BAR_ADDR: u32 = 0x1100_0000;

// Common configuration offsets (§4.1.4.3).
const DEVICE_STATUS: usize = 0x14;
const QUEUE_SELECT: usize = 0x16;
const QUEUE_SIZE: usize = 0x18;
const QUEUE_ENABLE: usize = 0x1c;
const QUEUE_DESC: usize = 0x20;
const QUEUE_DRIVER: usize = 0x28;
const QUEUE_DEVICE: usize = 0x30;

/// A PCI function on bus 0.
#[derive(Clone, Copy)]
pub struct Function {
    config: usize,
}

impl Function {
    fn read(&self, off: usize) -> u32 {
        // SAFETY: ECAM configuration space of a present function, Device-mapped by the
        // initial page table; aligned 32-bit access.
        unsafe { core::ptr::read_volatile((self.config + (off & !3)) as *const u32) }
    }

    fn write(&self, off: usize, value: u32) {
        // SAFETY: as in `read`; only the BAR this module moves is written.
        unsafe { core::ptr::write_volatile((self.config + (off & !3)) as *mut u32, value) }
    }

    /// The requester ID (bus 0): the StreamID on QEMU virt.
    pub fn rid(&self) -> u32 {
        ((self.config - ECAM_BASE) >> 12) as u32
    }
}

/// The first modern virtio-blk function on bus 0.
pub fn find_blk() -> Option<Function> {
    (0..32usize).find_map(|d| {
        let f = Function {
            config: ECAM_BASE + (d << 15),
        };
        (f.read(0) == DEVICE_BLK << 16 | VENDOR).then_some(f)
    })
}

/// The device's common configuration, mapped where the crash stage can reach it.
pub struct Common {
    base: usize,
}

impl Common {
    /// Finds the common-configuration capability and moves its BAR into the 32-bit window
    /// (memory decoding and bus mastering stay on: the device's DMA must carry on).
    pub fn map(f: &Function) -> Option<Self> {
        let mut cap = (f.read(0x34) & 0xfc) as usize;
        for _ in 0..48 {
            if cap == 0 {
                return None;
            }
            let head = f.read(cap);
            if head & 0xff == CAP_VENDOR && (head >> 24) & 0xff == CFG_COMMON {
                let bar = (f.read(cap + 4) & 0xff) as usize;
                let offset = f.read(cap + 8) as usize;
                let reg = 0x10 + bar * 4;
                if bar > 5 || f.read(reg) & 1 != 0 {
                    return None;
                }
                let is64 = (f.read(reg) >> 1) & 3 == 2;
                f.write(reg, BAR_ADDR);
                if is64 {
                    f.write(reg + 4, 0);
                }
                return Some(Self {
                    base: BAR_ADDR as usize + offset,
                });
            }
            cap = ((head >> 8) & 0xfc) as usize;
        }
        None
    }

    fn r8(&self, off: usize) -> u8 {
        // SAFETY: the common configuration in the BAR `map` placed, Device-mapped.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u8) }
    }

    fn r16(&self, off: usize) -> u16 {
        // SAFETY: as in `r8`.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u16) }
    }

    fn r64(&self, off: usize) -> u64 {
        // SAFETY: as in `r8`; the 64-bit fields are read as two 32-bit halves (§4.1.3.1).
        let (lo, hi) = unsafe {
            (
                core::ptr::read_volatile((self.base + off) as *const u32),
                core::ptr::read_volatile((self.base + off + 4) as *const u32),
            )
        };
        u64::from(hi) << 32 | u64::from(lo)
    }

    /// `device_status`.
    pub fn status(&self) -> u8 {
        self.r8(DEVICE_STATUS)
    }

    /// Queue 0: its size and the IOVAs of its descriptor table, driver (avail) and device
    /// (used) rings, if enabled.
    pub fn queue0(&self) -> Option<Queue> {
        // SAFETY: as in `r8`.
        unsafe { core::ptr::write_volatile((self.base + QUEUE_SELECT) as *mut u16, 0) };
        (self.r16(QUEUE_ENABLE) == 1).then(|| Queue {
            size: self.r16(QUEUE_SIZE),
            desc: self.r64(QUEUE_DESC),
            avail: self.r64(QUEUE_DRIVER),
            used: self.r64(QUEUE_DEVICE),
        })
    }

    /// Resets the device (writes 0 to `device_status`, §4.1.4.3.1) and waits, bounded, for the
    /// reset to complete (the register reads back 0). Returns whether it did.
    pub fn reset(&self) -> bool {
        // SAFETY: as in `r8`.
        unsafe { core::ptr::write_volatile((self.base + DEVICE_STATUS) as *mut u8, 0) };
        (0..1_000_000).any(|_| self.status() == 0)
    }
}

/// A virtqueue as the device sees it (IOVAs).
#[derive(Clone, Copy, Debug)]
pub struct Queue {
    /// Entries.
    pub size: u16,
    /// Descriptor table.
    pub desc: u64,
    /// Driver area (available ring).
    pub avail: u64,
    /// Device area (used ring).
    pub used: u64,
}

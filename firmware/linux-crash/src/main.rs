//! The crash stage Linux hands the machine to: `kexec -p` loads this image into the
//! `crashkernel=` reservation, and Linux's panic path enters it with the MMU off and `x0` =
//! the device tree, the way it enters a crash kernel. QEMU's SMMUv3 is still translating with
//! the stream table Linux's arm-smmu-v3 wrote, and the virtio disk behind it may still be
//! doing DMA.
//!
//! The stage reads Linux's table back (every valid STE and the ASIDs of their context
//! descriptors), runs [`smmu_kdump::boot`] on the live SMMU with a carve-out of its own inside
//! the reservation, and checks that it adopted the table and reserved exactly Linux's ASIDs.
//! One line per check, then the verdict as QEMU's exit status (semihosting): 0 only if every
//! check held.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::ptr::NonNull;

use aarch64_paging::descriptor::El1Attributes;
use aarch64_rt::{entry, exception_handlers, initial_pagetable, ExceptionHandlers};
use aarch64_rt::{InitialPagetable, RegisterStateRef};
mod virtio;

use smmu::arch::cd::{Cd, CdConfig};
use smmu::arch::l1std::{L1Std, STRTAB_SPLIT};
use smmu::arch::ste::{S1Fmt, Ste, Translation};
use smmu::StaticSlot;
use smmu::{
    Attachment, DmaRegion, Domain, DomainStage, Hal, HalError, MapAttr, MasterConfig, Mmio,
    PhysAddr, PhysRange,
};
use smmu_firmware::board::SMMU_BASE;
use smmu_firmware::carveout::Carveout;
use smmu_firmware::verdict::{self, Verdict};
use smmu_firmware::{console, println, stack};
use smmu_kdump::{AdoptOptions, AdoptPlatform, CrashDriver, Format, OldMemory, RegisterSnapshot};

/// The crash kernel's reservation (`crashkernel=64M@0x50000000`, firmware/linux/kexec.sh);
/// this image is linked at its start (linux-crash.ld).
const CRASH_BASE: u64 = 0x5000_0000;
/// Size of the reservation.
const CRASH_SIZE: u64 = 64 << 20;
/// The DMA carve-out: the upper half of the reservation, above this image (at most 32 MiB,
/// linux-crash.ld). kexec-tools put the device tree, purgatory and the ELF core header in the
/// reservation too, above the image; once this stage runs they are no longer needed (the
/// device tree is not read), so the carve-out may reuse their pages.
const CARVEOUT_BASE: u64 = CRASH_BASE + (32 << 20);
/// Size of the carve-out.
const CARVEOUT_SIZE: u64 = CRASH_BASE + CRASH_SIZE - CARVEOUT_BASE;
/// All of Linux's RAM (`-m 512M` at 0x4000_0000): where Linux's SMMU structures are.
const RAM: PhysRange = PhysRange {
    start: PhysAddr(0x4000_0000),
    size: 512 << 20,
};
/// The virtio disk's StreamID: its PCI requester ID, 00:01.0.
const VIRTIO_SID: u32 = 0x8;
/// How many ASIDs the read-back keeps (Linux gives each DMA domain one).
const MAX_ASIDS: usize = 16;

// The image header: the 64 bytes Linux's arm64 boot protocol (Documentation/arch/arm64/
// booting.rst) puts at the start of an Image, which kexec-tools' Image loader checks (the
// magic) and reads (text_offset, image_size). code0 branches to aarch64-rt's entry, which
// sets up the stack, .bss and the initial page table, then calls `main`.
core::arch::global_asm!(
    ".section .head.image, \"ax\"",
    ".global linux_crash_head",
    "linux_crash_head:",
    "b entry",                      // code0
    ".long 0",                      // code1
    ".quad 0", // text_offset: loaded at the 2 MiB-aligned start of the reservation
    ".quad linux_crash_image_size", // image_size, .bss and stacks included (linux-crash.ld)
    // flags: bit 0 = 0 little-endian, bits 2:1 = 1 4 KiB pages, bit 3 = 0 placed 2 MiB
    // aligned near the start of memory.
    ".quad 0x2",
    ".quad 0",             // res2
    ".quad 0",             // res3
    ".quad 0",             // res4
    ".ascii \"ARM\\x64\"", // magic
    ".long 0",             // res5: no PE/COFF header
);

/// Device memory: attribute index 0 (aarch64-rt's default MAIR: Device-nGnRE).
const DEVICE: usize = El1Attributes::VALID
    .union(El1Attributes::ATTRIBUTE_INDEX_0)
    .union(El1Attributes::ACCESSED)
    .union(El1Attributes::UXN)
    .union(El1Attributes::PXN)
    .bits();
/// Normal memory: attribute index 1 (Normal write-back), inner shareable, as Linux mapped it.
const NORMAL: usize = El1Attributes::VALID
    .union(El1Attributes::ATTRIBUTE_INDEX_1)
    .union(El1Attributes::INNER_SHAREABLE)
    .union(El1Attributes::ACCESSED)
    .bits();

// Identity map in 1 GiB blocks: the first GiB (UART, SMMU, the 32-bit PCI window) Device, the
// second (all of RAM, Linux's and this stage's) Normal cacheable, 256 GiB up the high PCIe
// ECAM window Device.
initial_pagetable!({
    let mut idmap = [0; 512];
    idmap[0] = DEVICE;
    idmap[1] = NORMAL | 0x4000_0000;
    idmap[256] = DEVICE | 0x40_0000_0000;
    InitialPagetable(idmap)
});

struct Exceptions;

impl ExceptionHandlers for Exceptions {
    extern "C" fn sync_current(state: RegisterStateRef) {
        let _ = state;
        let esr: u64;
        // SAFETY: reading ESR_EL1 in the exception handler has no side effect.
        unsafe { core::arch::asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack)) };
        if esr >> 26 == 0 {
            // The semihosting trap itself without `-semihosting`: no exit status can be
            // given; halt so the script's timeout reports the failure.
            println!("FAIL exception: undefined instruction (no semihosting?); halting");
            loop {
                core::hint::spin_loop();
            }
        }
        println!("FAIL exception: synchronous exception at EL1, ESR_EL1 {esr:#x}");
        verdict::exit(2)
    }
}

exception_handlers!(Exceptions);

// 64 KiB of boot stack (16 pages): the driver is built in place in `.bss`
// (`smmu_kdump::boot_in` into `DRIVER`), so nothing of its size passes through the stack. The
// stack sits above `.bss` (linux-crash.ld); the footprint line reads back how deep it went.
entry!(main, 16);

/// The stack this stage may use (the whole boot stack; `boot_in` needs at most 16 KiB).
const STACK_BUDGET: usize = 64 << 10;

/// The crash stage's platform: the carve-out for its own allocations, and all of Linux's RAM
/// readable (identity-mapped Normal memory) for the adoption's reads of Linux's tables.
#[derive(Clone, Copy)]
struct CrashHal(&'static Carveout);

// SAFETY: allocation is the carve-out's (see its `Hal`); `map_phys` hands out identity
// mappings of RAM only, which the initial page table maps Normal cacheable; QEMU's SMMU is
// coherent.
unsafe impl Hal for CrashHal {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        self.0.alloc(size, align)
    }

    unsafe fn dma_free(&self, region: DmaRegion) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.dma_free(region) }
    }

    fn map_phys(&self, pa: PhysAddr, size: usize, _attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        if !self.is_ram(pa, size as u64) {
            return Err(HalError::MapRefused);
        }
        NonNull::new(pa.0 as usize as *mut u8).ok_or(HalError::MapRefused)
    }

    unsafe fn unmap_phys(&self, _va: NonNull<u8>, _size: usize) {}

    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        RAM.contains(pa, size)
    }

    fn shared_windows(&self) -> &[PhysRange] {
        &[]
    }
}

static CARVEOUT: StaticSlot<Carveout> = StaticSlot::new();
static REGS: StaticSlot<Mmio> = StaticSlot::new();
/// Where the disk's completions fell, from queue 0's `(avail.idx, used.idx)` read at entry,
/// right after `boot_in` returned, and after the wait for the rest.
struct When {
    at_entry: Option<(u16, u16)>,
    after_boot: Option<(u16, u16)>,
    now: Option<(u16, u16)>,
    boot_micros: u64,
}

impl core::fmt::Display for When {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (Some((a0, u0)), Some((_, u1)), Some((_, u2))) =
            (self.at_entry, self.after_boot, self.now)
        else {
            return f.write_str("the rings could not be read at entry, after the bring-up or now");
        };
        let pending = a0.wrapping_sub(u0);
        if pending == 0 {
            return write!(
                f,
                "nothing was in flight at entry (avail.idx {a0} = used.idx {u0}): every request \
                 completed before the crash stage was entered"
            );
        }
        write!(
            f,
            "{pending} request(s) in flight at entry (avail.idx {a0}, used.idx {u0}); {} \
             completed during the bring-up ({} µs, used.idx {u1} when boot_in returned), {} \
             after the adoption (used.idx {u2})",
            u1.wrapping_sub(u0),
            self.boot_micros,
            u2.wrapping_sub(u1),
        )
    }
}

/// `(avail.idx, used.idx)` in a line.
struct Indices(u16, u16);

impl core::fmt::Display for Indices {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, " (avail.idx {}, used.idx {})", self.0, self.1)
    }
}

/// The crash kernel's driver, built here by `boot_in`.
static DRIVER: StaticSlot<CrashDriver<&'static Mmio, CrashHal>> = StaticSlot::new();

fn main(x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    // First of all, before any deeper frame: the unused boot stack gets a pattern, read back
    // by the footprint line at the end.
    stack::paint();
    console::init();
    println!();
    println!("linux-crash: entered from Linux's panic (kexec -p), device tree at {x0:#x}");
    let mut v = Verdict::new();
    run(&mut v);
    let (used, size) = stack::used();
    v.check(
        "footprint",
        used <= STACK_BUDGET && used < size,
        format_args!(
            "deepest stack write {} KiB below the stack's top (budget {} KiB of a {} KiB stack; \
             the driver lives in .bss, built in place)",
            used >> 10,
            STACK_BUDGET >> 10,
            size >> 10
        ),
    );
    v.exit()
}

/// The ASIDs of Linux's context descriptors, as read from its table.
struct Asids {
    list: [u16; MAX_ASIDS],
    len: usize,
    /// More distinct ASIDs than `list` holds.
    overflow: bool,
}

impl Asids {
    fn insert(&mut self, asid: u16) {
        let known = self.list.get(..self.len).unwrap_or(&[]);
        if known.contains(&asid) {
            return;
        }
        match self.list.get_mut(self.len) {
            Some(slot) => {
                *slot = asid;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }

    fn as_slice(&self) -> &[u16] {
        self.list.get(..self.len).unwrap_or(&[])
    }
}

/// What the read-back of Linux's table found.
struct ReadBack {
    asids: Asids,
    /// Valid STEs.
    valid: u32,
    /// Stage-1 STEs.
    stage1: u32,
    /// The virtio disk's STE is stage 1.
    virtio_stage1: bool,
    /// The virtio disk's context descriptor (SubstreamID 0).
    virtio_cd: Option<CdConfig>,
}

fn words<const N: usize>(mem: &dyn OldMemory, pa: u64) -> Option<[u64; N]> {
    let mut w = [0u64; N];
    mem.read_words(pa, &mut w).ok()?;
    Some(w)
}

/// Walks Linux's two-level stream table on its own, independently of the adoption: every
/// valid L1 descriptor, every valid STE, the CD of every stage-1 STE.
fn read_back(mem: &dyn OldMemory, base: u64, l1_entries: u32) -> Option<ReadBack> {
    let mut rb = ReadBack {
        asids: Asids {
            list: [0; MAX_ASIDS],
            len: 0,
            overflow: false,
        },
        valid: 0,
        stage1: 0,
        virtio_stage1: false,
        virtio_cd: None,
    };
    for i in 0..l1_entries {
        let [desc] = words::<1>(mem, base.checked_add(u64::from(i) * 8)?)?;
        let Ok(Some(l1)) = L1Std::from_words([desc]).decode() else {
            continue;
        };
        for j in 0..l1.num_stes() {
            let sid = (i << STRTAB_SPLIT) | j;
            let pa = l1.l2_ptr.checked_add(u64::from(j) * 64)?;
            let Ok(Some(ste)) = Ste::from_words(words::<8>(mem, pa)?).decode() else {
                continue;
            };
            rb.valid += 1;
            let (Translation::Stage1(s1) | Translation::Nested(s1, _)) = ste.translation else {
                continue;
            };
            rb.stage1 += 1;
            rb.virtio_stage1 |= sid == VIRTIO_SID;
            // One CD per stage-1 STE without SubstreamIDs (Linux without PASID); with
            // S1CDMax > 0 the CDs of a linear CD table. A two-level CD table (PASIDs) is not
            // walked here: the read-back fails rather than miss ASIDs.
            if s1.cd_max > 0 && s1.fmt != S1Fmt::Linear {
                return None;
            }
            for ssid in 0..(1u32 << s1.cd_max.min(8)) {
                let cd_pa = s1.context_ptr.checked_add(u64::from(ssid) * 64)?;
                if let Ok(Some(cd)) = Cd::from_words(words::<8>(mem, cd_pa)?).decode() {
                    rb.asids.insert(cd.asid);
                    if sid == VIRTIO_SID && ssid == 0 {
                        rb.virtio_cd = Some(cd);
                    }
                }
            }
        }
    }
    Some(rb)
}

/// Output address bits of a VMSAv8-64 table, block or page descriptor (4 KiB granule, 48-bit
/// output: bits \[47:12\]).
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Translates `iova` through the stage-1 tables of Linux's context descriptor `cd` (4 KiB
/// granule, TTB0; VMSAv8-64 D8.2): the physical address the SMMU gives the device, or `None`
/// when Linux did not map it.
fn translate(mem: &dyn OldMemory, cd: &CdConfig, iova: u64) -> Option<u64> {
    let ia_bits = 64u32.checked_sub(u32::from(cd.tt0.tsz))?;
    if cd.tt0.epd || !(25..=48).contains(&ia_bits) || iova >> ia_bits != 0 {
        return None;
    }
    // Levels resolve 9 bits each above the 12-bit page offset.
    let levels = (ia_bits - 12).div_ceil(9);
    let mut table = cd.tt0.ttb & OA_MASK;
    for level in (4 - levels)..4 {
        let shift = 12 + 9 * (3 - level);
        let index = (iova >> shift) & 511;
        let [desc] = words::<1>(mem, table.checked_add(index * 8)?)?;
        match (desc & 3, level) {
            (3, 3) => return Some((desc & OA_MASK) | (iova & 0xfff)),
            (3, _) => table = desc & OA_MASK,
            (1, 1 | 2) => {
                let span = 1u64 << shift;
                return Some((desc & OA_MASK & !(span - 1)) | (iova & (span - 1)));
            }
            _ => return None,
        }
    }
    None
}

/// The little-endian 16-bit value at `pa` (2-aligned).
fn read_u16(mem: &dyn OldMemory, pa: u64) -> Option<u16> {
    let [w] = words::<1>(mem, pa & !7)?;
    Some((w >> ((pa & 6) * 8)) as u16)
}

/// The disk's first virtqueue, read through Linux's translation.
struct Rings<'a> {
    mem: &'a dyn OldMemory,
    cd: CdConfig,
    queue: virtio::Queue,
}

impl Rings<'_> {
    /// `avail.idx` and `used.idx` (virtio 1.2 §2.7.6, §2.7.8).
    fn indices(&self) -> Option<(u16, u16)> {
        let avail = translate(self.mem, &self.cd, self.queue.avail.checked_add(2)?)?;
        let used = translate(self.mem, &self.cd, self.queue.used.checked_add(2)?)?;
        Some((read_u16(self.mem, avail)?, read_u16(self.mem, used)?))
    }

    /// The last completed request: the physical address of its status byte (the last
    /// device-writable descriptor of its chain) and the byte, read through Linux's
    /// translation. Linux unmaps a request's buffers when it reaps the completion, so a
    /// status byte still mapped belongs to a request that completed after Linux stopped.
    fn last_status(&self, used_idx: u16) -> Option<(u64, u8)> {
        let size = self.queue.size.max(1);
        let slot = u64::from(used_idx.wrapping_sub(1) % size);
        let elem = translate(
            self.mem,
            &self.cd,
            self.queue.used.checked_add(4 + slot * 8)?,
        )?;
        // A used element is {id: u32, len: u32} at a 4-byte boundary (§2.7.8).
        let [e] = words::<1>(self.mem, elem & !7)?;
        let mut id = u16::try_from((e >> ((elem & 4) * 8)) & 0xffff_ffff).ok()?;
        // The chain starts in the descriptor table; an indirect head (VIRTQ_DESC_F_INDIRECT,
        // which Linux uses for multi-buffer requests) moves it to its own table (§2.7.5.3).
        let mut table = self.queue.desc;
        let mut entries = size;
        let mut status = None;
        let mut steps = 0u32;
        while steps < 2 * u32::from(size) {
            steps += 1;
            if id >= entries {
                return None;
            }
            let d = translate(self.mem, &self.cd, table.checked_add(u64::from(id) * 16)?)?;
            let [addr, rest] = words::<2>(self.mem, d)?;
            let (len, flags, next) = (rest as u32, (rest >> 32) as u16, (rest >> 48) as u16);
            if flags & 4 != 0 {
                table = addr;
                entries = u16::try_from(len / 16).ok()?;
                id = 0;
                continue;
            }
            // VIRTQ_DESC_F_WRITE: a buffer the device writes; the status byte is the last.
            if flags & 2 != 0 && len >= 1 {
                status = Some(translate(
                    self.mem,
                    &self.cd,
                    addr.checked_add(u64::from(len) - 1)?,
                )?);
            }
            // VIRTQ_DESC_F_NEXT.
            if flags & 1 == 0 {
                break;
            }
            id = next;
        }
        let pa = status?;
        let [w] = words::<1>(self.mem, pa & !7)?;
        Some((pa, (w >> ((pa & 7) * 8)) as u8))
    }
}

fn run(v: &mut Verdict) {
    let (Some(carve_slot), Some(regs_slot)) = (CARVEOUT.take(), REGS.take()) else {
        v.check("setup", false, format_args!("statics already taken"));
        return;
    };
    // SAFETY: the carve-out is the upper half of the crash kernel's reservation: RAM Linux
    // never used, identity-mapped, above this image (linux-crash.ld).
    let carve: &'static Carveout = carve_slot.write(unsafe {
        Carveout::new(
            CARVEOUT_BASE,
            CARVEOUT_SIZE,
            PhysRange {
                start: PhysAddr(CARVEOUT_BASE + CARVEOUT_SIZE),
                size: 0,
            },
        )
    });
    let hal = CrashHal(carve);
    let Some(base) = NonNull::new(SMMU_BASE as *mut u8) else {
        return;
    };
    // SAFETY: the SMMU frame is mapped as Device memory by the initial page table, 8-aligned,
    // and only this stage uses it (Linux is gone).
    let regs: &'static Mmio = regs_slot.write(unsafe { Mmio::new(base, Mmio::STANDARD_SIZE) });

    // What Linux left: the registers, then its table read back.
    let snap = RegisterSnapshot::read(regs);
    let features = snap.features();
    v.check(
        "live",
        snap.smmuen(),
        format_args!(
            "SMMUEN={} CR0={:#x} STRTAB_BASE={:#x} STRTAB_BASE_CFG={:#x}",
            u8::from(snap.smmuen()),
            snap.cr0,
            snap.strtab_base,
            snap.strtab_base_cfg
        ),
    );
    let is_ram = |pa: u64, size: u64| RAM.contains(PhysAddr(pa), size);
    let geometry = match smmu_kdump::validate_geometry(&snap, &features, &is_ram) {
        Ok(g) => g,
        Err(e) => {
            v.check("geometry", false, format_args!("{e}"));
            return;
        }
    };
    let mem = smmu_kdump::HalMemory {
        hal: &hal,
        attr: MapAttr::Cacheable,
        coherent: true,
    };
    let rb = match (geometry.format(), geometry.l1_entries()) {
        (Format::TwoLevel, Some(n)) => read_back(&mem, geometry.base(), n),
        _ => None,
    };
    let Some(rb) = rb else {
        v.check(
            "read-back",
            false,
            format_args!(
                "Linux's table is not two-level, uses two-level CD tables, or could not be read"
            ),
        );
        return;
    };
    v.check(
        "read-back",
        rb.virtio_stage1 && !rb.asids.overflow && rb.asids.len > 0,
        format_args!(
            "Linux's table: {} valid STEs, {} stage 1 (virtio disk, StreamID {VIRTIO_SID:#x}: {}), CD ASIDs {:?}",
            rb.valid,
            rb.stage1,
            if rb.virtio_stage1 { "stage 1" } else { "not stage 1" },
            rb.asids.as_slice()
        ),
    );

    // The disk, as Linux left it: its queue 0 through Linux's translation.
    let common = virtio::find_blk().and_then(|f| {
        (f.rid() == VIRTIO_SID).then_some(())?;
        virtio::Common::map(&f)
    });
    let rings = match (&common, rb.virtio_cd) {
        (Some(c), Some(cd)) => c.queue0().map(|queue| Rings {
            mem: &mem,
            cd,
            queue,
        }),
        _ => None,
    };
    let at_entry = rings.as_ref().and_then(Rings::indices);
    match (&common, &rings, at_entry) {
        (Some(c), Some(r), Some((a, u))) => v.check(
            "virtio",
            true,
            format_args!(
                "disk at StreamID {VIRTIO_SID:#x}, status {:#x}, queue 0: {} entries, rings at IOVA {:#x}/{:#x}; at entry avail.idx {a}, used.idx {u} ({} in flight)",
                c.status(),
                r.queue.size,
                r.queue.avail,
                r.queue.used,
                a.wrapping_sub(u)
            ),
        ),
        _ => v.check(
            "virtio",
            false,
            format_args!(
                "the virtio disk or its queue 0 could not be read through Linux's translation"
            ),
        ),
    };

    // The crash kernel's bring-up.
    let platform = AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        ..Default::default()
    };
    let Some(slot) = DRIVER.take() else {
        v.check("setup", false, format_args!("driver slot already taken"));
        return;
    };
    let started = smmu_firmware::time::now();
    let booted = smmu_kdump::boot_in(slot, regs, hal, &platform, &AdoptOptions::default());
    // The rings again, at once: a request that completed between entry and here completed
    // during the bring-up, not after the adoption.
    let after_boot = rings.as_ref().and_then(Rings::indices);
    let boot_micros =
        (smmu_firmware::time::now() - started) * 1_000_000 / smmu_firmware::time::frequency();
    let booted = match booted {
        Ok(b) => b,
        Err(e) => {
            v.check("boot", false, format_args!("bring-up failed: {e}"));
            return;
        }
    };
    let adopted = match booted.verdict {
        smmu_kdump::Verdict::Adopted {
            stats,
            asids,
            vmids,
        } => {
            v.check(
                "verdict",
                true,
                format_args!(
                    "adopt: {} valid STEs kept, {asids} ASIDs and {vmids} VMIDs reserved",
                    stats.stes_valid
                ),
            );
            Some(asids)
        }
        smmu_kdump::Verdict::FullReset(reason) => {
            v.check(
                "verdict",
                false,
                format_args!("full reset: {reason} ({})", reason.code()),
            );
            None
        }
        smmu_kdump::Verdict::Abandoned(e) => {
            v.check(
                "verdict",
                false,
                format_args!("adoption abandoned part-way: {e}"),
            );
            None
        }
    };
    if cfg!(feature = "broken-forget-asids") {
        booted.smmu.asids_mut().clear_reservations();
    }
    if let Some(count) = adopted {
        let reserved = booted.smmu.asids();
        let all = rb.asids.as_slice().iter().all(|&a| reserved.is_reserved(a));
        v.check(
            "asids",
            all && count as usize == rb.asids.len,
            format_args!(
                "the driver reserved {count} ASIDs; Linux's CDs use {:?}, each reserved: {all}",
                rb.asids.as_slice()
            ),
        );
    }
    // The disk keeps translating through the adopted STE: every request Linux made available
    // completes, into the pages Linux mapped.
    if let Some(r) = &rings {
        // Bounded: 2 s of the generic timer (the disk is throttled to 2 requests a second,
        // firmware/linux/kexec.sh, so one is usually still in flight at the crash).
        let now = smmu_firmware::time::poll_for(2000, || r.indices().filter(|(a, u)| a == u))
            .or_else(|| r.indices());
        let done = match now {
            Some((a, u)) if a == u => r.last_status(u),
            _ => None,
        };
        let name = "virtio completed";
        let when = When {
            at_entry,
            after_boot,
            now,
            boot_micros,
        };
        match (now, done) {
            (Some((a, u)), Some((pa, st))) => v.check(
                name,
                st == 0 && RAM.contains(PhysAddr(pa), 1),
                format_args!(
                    "avail.idx {a}, used.idx {u}: {when}; the last request (its buffers still mapped: Linux never reaped it) has status {st} (0 = OK) at {pa:#x}"
                ),
            ),
            (Some((a, u)), None) => v.check(
                name,
                false,
                format_args!(
                    "after the adoption avail.idx {a}, used.idx {u}: requests still pending, or the last one's buffers are unmapped (Linux reaped it: no request was in flight at the crash)"
                ),
            ),
            _ => v.check(
                name,
                false,
                format_args!("the rings could not be read after the adoption"),
            ),
        };
        // The point of the hand-over: a request Linux left in flight. kexec.sh panics with
        // `kexec -p -i` (no checksum pass) and the disk throttled, so one normally is; a run
        // where none was proves nothing about DMA in flight, and fails.
        let pending = at_entry.map_or(0, |(a, u)| a.wrapping_sub(u));
        v.check(
            "in flight at entry",
            pending > 0,
            format_args!(
                "{pending} request(s) pending at crash-stage entry{}",
                match at_entry {
                    Some((a, u)) => Indices(a, u),
                    None => Indices(0, 0),
                }
            ),
        );
    }
    // Quiesce the disk through its own registers, then give it a domain of this stage's.
    if let Some(c) = &common {
        let reset = c.reset();
        v.check(
            "virtio reset",
            reset,
            format_args!("device_status written 0, reads back {:#x}", c.status()),
        );
    }
    if adopted.is_some() {
        let smmu = &*booted.smmu;
        let attached = smmu
            .add_master(&MasterConfig {
                sids: &[VIRTIO_SID],
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .and_then(|m| {
                let deferred = smmu.is_deferred(m)?;
                let domain: Domain<&Carveout> =
                    smmu.new_domain(DomainStage::Stage1, false, carve)?;
                smmu.attach(m, &domain)?;
                let now = smmu.attachment(m)?;
                let asid_fresh = !rb.asids.as_slice().contains(&domain.id());
                // The domain lives as long as the stage (the device now translates through it).
                core::mem::forget(domain);
                Ok((deferred, now, asid_fresh, smmu.is_deferred(m)?))
            });
        match &attached {
            Ok((was, now, fresh, still)) => v.check(
                "re-attach",
                *was && matches!(now, Attachment::Paging { .. }) && *fresh && !*still,
                format_args!(
                    "StreamID {VIRTIO_SID:#x}: deferred (Linux's STE kept) {was}, now {now:?}, new ASID not one of Linux's {fresh}, deferred {still}"
                ),
            ),
            Err(e) => v.check("re-attach", false, format_args!("{e}")),
        };
    }
    let cr0 = RegisterSnapshot::read(regs).cr0;
    v.check(
        "translating",
        cr0 & 1 == 1,
        format_args!("SMMUEN still 1 after the bring-up (CR0 {cr0:#x})"),
    );
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("FAIL panic: {info}");
    verdict::exit(3)
}

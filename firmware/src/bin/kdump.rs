//! Stage pair `kdump`: a crash kernel adopts QEMU's live SMMU while DMA is in flight (SPEC F2).
//!
//! One image, two stages that share nothing but RAM, the SMMU and the devices, like a kernel
//! and the crash kernel `kexec -p` loaded beside it:
//!
//! - The **old stage** (aarch64-rt's entry, its statics, the carve-out at
//!   [`board::CARVEOUT_BASE`]) brings the driver up with a full reset and a 2-level stream
//!   table, gives each `edu` a stage-1 domain, fills each device's buffer through it, starts
//!   one device-to-RAM transfer per device (the device moves the bytes ~100 ms later, from a
//!   timer), writes a crash note saying what it left in flight, and "crashes": masks
//!   interrupts and branches to `crash_entry`.
//! - The **crash stage** sets its own stack inside the crash reservation
//!   ([`board::CRASH_BASE`], which the old stage never touches), keeps its state there, reads
//!   its strategy from the machine's command line and brings the SMMU up from the registers
//!   alone: `smmu_kdump::boot` (`--strategy adopt`) or a full reset (`--strategy abort`).
//!   Then each device's driver probes: it waits for the transfer in flight, checks where the
//!   bytes landed against the crash note, quiesces the device (bus mastering off), attaches a
//!   domain of its own over the adopted or reset STE and runs one more DMA through it.
//!
//! What the crash stage inherits from the CPU is what the old stage left: EL1 with the MMU on
//! over the image's identity map and its exception vectors (a kexec purgatory would turn the
//! MMU off and the crash kernel build its own tables; here both stages run from one image, so
//! the map is the same either way). It takes nothing else: no register carries data across,
//! and no Rust static is used by both stages except the console, which the crash stage takes
//! over ([`console::take_over`]).
//!
//! `--corrupt-l1` makes the old stage overwrite its level-1 stream-table descriptor with
//! garbage before the crash: adoption must refuse with `l1-bad-span` and fall back to the full
//! reset, and the crash stage must still come up.
//!
//! `--stage 1` (the default) gives the devices stage-1 domains in both stages, `--stage 2`
//! stage-2 domains (adoption then reserves their VMIDs); `--stage nested` gives the old
//! stage's first device a nested domain (a guest stage 1, its CD table in guest IPA space, over
//! a nesting parent) and the second a stage-2 domain: adoption reserves both VMIDs and no ASID
//! (the scan never reads a CD table at an IPA), and the crash stage re-attaches both devices to
//! stage-2 domains of its own.
//!
//! Where each transfer in flight went is read from memory, never from the mode: the page the
//! old stage mapped (translated), the bus address itself (bypassed: the IOVAs are RAM nothing
//! else uses, and `qemu-run` widens `edu`'s DMA mask so an untranslated write reaches it),
//! another page of RAM (misdirected), or nowhere while the device reports it finished
//! (aborted).
//!
//! Exit status 0 when the strategy's expectation held (see [`Mode::expect`]).
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::panic::PanicInfo;
use core::ptr::{addr_of, addr_of_mut};

use aarch64_rt::RegisterStateRef;
use aarch64_rt::{entry, exception_handlers, initial_pagetable, ExceptionHandlers};
use smmu::arch::regs::offset;
use smmu::reset::{OnFailure, ResetPlan, ResetStep};
use smmu::strtab::Layout;
use smmu::StaticSlot;
use smmu::{
    Attachment, Domain, DomainStage, Error, GbpaPolicy, MasterConfig, Mmio, OwnedStreamTable,
    PhysAddr, PhysRange, RegisterAccess, Smmu, SmmuConfig,
};
use smmu_firmware::board::{self};
use smmu_firmware::carveout::{Carveout, PAGE};
use smmu_firmware::edu::{self, Edu};
use smmu_firmware::pci::Function;
use smmu_firmware::stage::Stage;
use smmu_firmware::verdict::{self, Verdict};
use smmu_firmware::{console, footprint, platform, println, stack, time};
use smmu_kdump::{AdoptOptions, AdoptPlatform, BootedIn, CrashStreamTable, Refusal};
use smmu_pagetable::{Iova, Prot};

initial_pagetable!(board::idmap());

struct Exceptions;

impl ExceptionHandlers for Exceptions {
    extern "C" fn sync_current(_state: RegisterStateRef) {
        verdict::sync_exception()
    }
}

exception_handlers!(Exceptions);

// The old stage's boot stack (aarch64-rt's); the crash stage has its own.
entry!(old_main, 16);

/// Bytes per transfer in flight.
const LEN: u64 = edu::MAX_TRANSFER;
/// The old stage's source IOVA (fills the device buffer before the crash).
const IOVA_SRC: u64 = 0x10_0000;
/// The old stage's destination IOVA of device `i` is this plus `i` × 64 KiB: RAM that no stage
/// uses (between the crash note and the footprint paint below the crash reservation), so a
/// transfer that bypasses the SMMU writes its bytes here, where [`landing`] sees them.
const IOVA_DST: u64 = 0x4310_0000;
const _: () = assert!(board::CRASH_NOTE + 4096 <= IOVA_DST);
const _: () = assert!(IOVA_DST + DEVICES as u64 * 0x1_0000 <= board::CRASH_BASE - PAINT_BELOW);
/// The crash stage's own IOVA for the DMA after the re-attach.
const IOVA_NEW: u64 = 0x30_0000;
/// The devices (both `edu` functions).
const DEVICES: usize = 2;

// ---------------------------------------------------------------------------------------
// What crosses the crash: memory only.

/// How far below the crash reservation the footprint paint reaches: a stack overflow of the
/// by-value bring-up reached 903 KiB below it.
const PAINT_BELOW: u64 = 8 << 20;

/// The crash note's magic ("SMMUNOTE").
const NOTE_MAGIC: u64 = u64::from_be_bytes(*b"SMMUNOTE");

/// One transfer the old stage left in flight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct NoteTransfer {
    sid: u64,
    iova: u64,
    /// The physical page the old stage's domain maps `iova` to.
    pa: u64,
    len: u64,
    /// Selects the byte pattern the device's buffer holds.
    seed: u64,
}

/// The crash note at [`board::CRASH_NOTE`]: what the crash stage's checks compare against.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Note {
    magic: u64,
    count: u64,
    transfers: [NoteTransfer; DEVICES],
    /// The end of the old stage's carve-out memory ever allocated (its tables, queues and
    /// DMA buffers: `[board::CARVEOUT_BASE, old_end)`), which the dump must keep.
    old_end: u64,
    /// [`old_memory_sum`] of that memory just before the crash.
    old_sum: u64,
}

/// The checksum of the old stage's memory `[board::CARVEOUT_BASE, end)`, without the pages
/// the transfers in flight write (their destinations).
fn old_memory_sum(end: u64, transfers: &[NoteTransfer]) -> u64 {
    footprint::checksum(board::CARVEOUT_BASE, end, |page| {
        transfers.iter().any(|t| page == t.pa & !0xfff)
    })
}

/// Byte `i` of the pattern `seed` selects.
fn pattern(seed: u64, i: usize) -> u8 {
    (i as u8).wrapping_mul(7) ^ (seed as u8)
}

/// Whether the page at `pa` starts with `len` bytes of pattern `seed`.
fn holds_pattern(pa: u64, seed: u64, len: usize) -> bool {
    (0..len).all(|i| {
        // SAFETY: `pa + i` is RAM (callers pass pages inside RAM), identity-mapped; a
        // volatile byte read, which a concurrent DMA write cannot make undefined.
        let b = unsafe { ((pa as usize + i) as *const u8).read_volatile() };
        b == pattern(seed, i)
    })
}

/// The machine's command line: the strategy and the corruption switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `--strategy adopt`.
    Adopt,
    /// `--strategy abort`.
    Abort,
    /// `--strategy adopt --corrupt-l1`.
    AdoptCorruptL1,
    /// `--strategy abort --dma-during-reset`: the full reset waits, with the SMMU disabled,
    /// until the transfers have run, so they meet the window a slow reset opens (bypass or
    /// abort, as `GBPA` has it: the transfer lines say which from memory).
    AbortDmaDuringReset,
}

impl Mode {
    /// The mode and the domains' stage from the machine's command line.
    fn read() -> Result<(Self, Stage), &'static str> {
        let mut buf = [0u8; 256];
        let line = verdict::command_line(&mut buf).unwrap_or("");
        let mut stage = Stage::default();
        let mut strategy = None;
        let mut corrupt = false;
        let mut during = false;
        // QEMU's semihosting command line is the image's path, then `-append`'s text.
        let mut words = line
            .split_ascii_whitespace()
            .skip_while(|w| !w.starts_with("--"));
        while let Some(w) = words.next() {
            match w {
                "--strategy" => strategy = words.next(),
                "--corrupt-l1" => corrupt = true,
                "--dma-during-reset" => during = true,
                "--stage" => stage = Stage::parse(words.next())?,
                _ => {
                    return Err(
                        "unknown argument (expected --strategy adopt [--corrupt-l1] \
                                or --strategy abort [--dma-during-reset], and --stage 1|2|nested)",
                    )
                }
            }
        }
        let mode = match (strategy, corrupt, during) {
            (Some("adopt"), false, false) => Ok(Self::Adopt),
            (Some("adopt"), true, false) => Ok(Self::AdoptCorruptL1),
            (Some("abort"), false, false) => Ok(Self::Abort),
            (Some("abort"), false, true) => Ok(Self::AbortDmaDuringReset),
            (Some("adopt" | "abort"), _, _) => {
                Err("--corrupt-l1 goes with --strategy adopt, --dma-during-reset with abort")
            }
            _ => Err("expected --strategy adopt|abort"),
        }?;
        Ok((mode, stage))
    }

    fn name(self) -> &'static str {
        match self {
            Self::Adopt => "adopt",
            Self::Abort => "abort",
            Self::AdoptCorruptL1 => "adopt, level-1 descriptor corrupted",
            Self::AbortDmaDuringReset => "abort, DMA during the reset",
        }
    }

    /// What the transfers in flight must meet for the run to pass: `adopt` keeps them
    /// translating to the old stage's pages; a full reset (chosen, or the fallback from the
    /// corrupted table) loses them.
    fn expect(self) -> &'static str {
        match self {
            Self::Adopt => "translated to the page the old kernel mapped",
            Self::Abort | Self::AdoptCorruptL1 | Self::AbortDmaDuringReset => "lost or misdirected",
        }
    }
}

// ---------------------------------------------------------------------------------------
// The old stage.

type OldDriver = Smmu<&'static Mmio, &'static Carveout, OwnedStreamTable>;

static CARVEOUT: StaticSlot<Carveout> = StaticSlot::new();
static REGS: StaticSlot<Mmio> = StaticSlot::new();
static DRIVER: StaticSlot<OldDriver> = StaticSlot::new();

fn old_main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    stack::paint();
    console::init();
    let (mode, stage) = match Mode::read() {
        Ok(m) => m,
        Err(e) => {
            println!("FAIL arguments: {e}");
            verdict::exit(2)
        }
    };
    println!(
        "smmu firmware: stage kdump on QEMU virt ({}, {} domains)",
        mode.name(),
        stage.name()
    );
    if let Err(e) = stage.domain_stage() {
        println!("FAIL stage: {e}");
        verdict::exit(1)
    }
    match old_stage(mode, stage) {
        Ok(()) => crash(),
        Err(e) => {
            println!("FAIL old stage: {e}");
            verdict::exit(1)
        }
    }
}

#[inline(never)]
fn build_old(
    regs: &'static Mmio,
    carve: &'static Carveout,
) -> Result<&'static mut OldDriver, Error> {
    let features = smmu::probe::probe(regs)?;
    let slot = DRIVER.take().ok_or(Error::CapacityExhausted)?;
    let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
    let abort = smmu::writer::make::ste_image(&smmu::writer::make::abort_ste());
    let strtab = OwnedStreamTable::new(carve, layout, log2, features.coherent, &abort)?;
    // QEMU 7.2 ignores GBPA (the `confine` stage shows the strict refusal); the old kernel
    // boots with the SMMU disabled, so it accepts that.
    let config = SmmuConfig {
        gbpa: GbpaPolicy::AcceptIgnoredWhileDisabled,
        ..SmmuConfig::default()
    };
    Smmu::new_in(slot, regs, carve, features, strtab, config)
}

#[inline(never)]
fn old_stage(mode: Mode, stage: Stage) -> Result<(), Error> {
    let (Some(carve_slot), Some(regs_slot)) = (CARVEOUT.take(), REGS.take()) else {
        return Err(Error::CapacityExhausted);
    };
    let (carve, regs) = platform::bring_up(carve_slot, regs_slot);

    let mut ecam = platform::ecam();
    let found: [Option<Function>; DEVICES] = platform::edu_functions(&ecam);
    let mut funcs: [Option<(Function, Edu)>; DEVICES] = [None, None];
    for (slot, f) in funcs.iter_mut().zip(found.into_iter().flatten()) {
        let bar = ecam.enable(&f).ok_or(Error::NoSuchMaster)?;
        // SAFETY: BAR just assigned and enabled, inside the Device-mapped first GiB.
        *slot = Some((f, unsafe { Edu::new(bar) }));
    }
    let [Some(d0), Some(d1)] = funcs else {
        println!("old stage: two edu devices expected (-device edu -device edu)");
        return Err(Error::NoSuchMaster);
    };
    let devices = [d0, d1];

    let smmu = build_old(regs, carve)?;
    smmu.reset(&ResetPlan::FULL)?;
    println!(
        "old stage: full reset, 2-level stream table; GBPA ignored {}",
        smmu.gbpa_ignored()
    );

    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    let mut note = Note {
        magic: NOTE_MAGIC,
        count: DEVICES as u64,
        transfers: [NoteTransfer::default(); DEVICES],
        old_end: 0,
        old_sum: 0,
    };
    for (i, (f, dev)) in devices.iter().enumerate() {
        let master = smmu.add_master(&MasterConfig {
            sids: &[f.rid()],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })?;
        let src = carve.alloc(PAGE, PAGE)?;
        let dst = carve.alloc(PAGE, PAGE)?;
        let iova = IOVA_DST + (i as u64) * 0x1_0000;
        // `--stage nested`: the first device on a nested domain, the second on a stage-2 one.
        let kind = if stage == Stage::Nested && i == 0 {
            old_nested(smmu, carve, master, [src.pa.0, dst.pa.0], iova)?;
            "nested"
        } else {
            let domain = new_domain(&mut *smmu, stage, carve)?;
            smmu.map(&domain, Iova(IOVA_SRC), src.pa, PAGE as u64, rw)?;
            smmu.map(&domain, Iova(iova), dst.pa, PAGE as u64, rw)?;
            smmu.attach(master, &domain)?;
            // The domain stays in use by the hardware after the crash: never freed.
            core::mem::forget(domain);
            match stage {
                Stage::One => "stage-1",
                Stage::Two | Stage::Nested => "stage-2",
            }
        };
        let seed = 0x5a + 0x33 * i as u64;
        // SAFETY: `src` is a page of the carve-out allocated above, referenced nowhere else.
        let src_bytes = unsafe { core::slice::from_raw_parts_mut(src.va.as_ptr(), PAGE) };
        for (j, b) in src_bytes.iter_mut().enumerate() {
            *b = pattern(seed, j);
        }
        // RAM -> device buffer through the domain, then the source is wiped: from here on the
        // pattern exists only in the device, and wherever its DMA writes it.
        if let Err(e) = dev.read_from(IOVA_SRC, 0, LEN) {
            println!("old stage: edu DMA {e:?}");
            return Err(Error::NoSuchMaster);
        }
        src_bytes.fill(0);
        note.transfers[i] = NoteTransfer {
            sid: u64::from(f.rid()),
            iova,
            pa: dst.pa.0,
            len: LEN,
            seed,
        };
        println!(
            "old stage: edu StreamID {:#x} on a {kind} domain, IOVA {iova:#x} -> PA {:#x}",
            f.rid(),
            dst.pa.0
        );
    }
    let mut events = 0usize;
    let _ = smmu.handle_events(&mut |_| events += 1);
    let g = smmu.handle_gerror();
    println!("old stage: {events} event(s), global errors {:?}", g.active);

    if mode == Mode::AdoptCorruptL1 {
        corrupt_l1(regs, note.transfers[0].sid);
    }
    // What the dump must keep, as it is at the crash.
    note.old_end = carve.high_water();
    note.old_sum = old_memory_sum(note.old_end, &note.transfers);

    // SAFETY: the note page lies between the carve-outs (board.rs), RAM that nothing else
    // uses; an aligned write of a plain `repr(C)` value.
    unsafe { (board::CRASH_NOTE as usize as *mut Note).write_volatile(note) };

    // Like `kexec -p` loading the crash kernel, the old stage prepares the crash reservation
    // before the crash: here it paints it whole, and the 8 MiB below it, so that the crash
    // stage's footprint can be read back at its end (`check_footprint`) without spending the
    // crash stage's own time on it while the transfers are in flight.
    // SAFETY: the crash reservation and the RAM below it down to `PAINT_BELOW` are used by
    // nothing (board.rs: between the crash note's page and the reservation), identity-mapped.
    unsafe {
        footprint::paint(
            board::CRASH_BASE - PAINT_BELOW,
            board::CRASH_BASE + board::CRASH_SIZE,
        )
    };
    // The bus addresses themselves: zero, so that bytes found there later were put there by
    // a transfer that bypassed the SMMU.
    for t in &note.transfers {
        // SAFETY: `t.iova` is a page of RAM no stage uses (`IOVA_DST`), identity-mapped.
        unsafe { core::ptr::write_bytes(t.iova as usize as *mut u8, 0, PAGE) };
    }
    println!(
        "old stage: starting {DEVICES} transfers of {LEN} bytes (device -> RAM), then crashing"
    );
    for ((_, dev), t) in devices.iter().zip(&note.transfers) {
        if let Err(e) = dev.start_write_to(0, t.iova, LEN) {
            println!("old stage: edu DMA {e:?}");
            return Err(Error::NoSuchMaster);
        }
    }
    Ok(())
}

/// The guest's IPA of the nested device's source and destination pages: above RAM, so an IPA
/// is never mistaken for the PA behind it.
const IPA_BASE: u64 = 0x2_0000_0000;

/// `--stage nested`, old stage: `master` on a nested domain (SPEC D13). The host's nesting
/// parent maps the guest's source and destination IPAs to `src` and `dst` (PAs) and the guest's
/// structures at IPA = PA; the guest's stage 1 maps `IOVA_SRC` and `iova` to those IPAs. Its CD
/// table is at a guest IPA: the crash stage must reserve the parent's VMID without reading it.
fn old_nested(
    smmu: &OldDriver,
    carve: &'static Carveout,
    master: smmu::MasterId,
    [src, dst]: [u64; 2],
    iova: u64,
) -> Result<(), Error> {
    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    let parent = smmu.new_domain_with(smmu::DomainOptions::nesting_parent(), carve)?;
    smmu.map(&parent, Iova(IPA_BASE), PhysAddr(src), PAGE as u64, rw)?;
    smmu.map(
        &parent,
        Iova(IPA_BASE + 0x1000),
        PhysAddr(dst),
        PAGE as u64,
        rw,
    )?;
    let guest = smmu_firmware::guest::build(
        smmu,
        &parent,
        carve,
        5,
        &[(IOVA_SRC, IPA_BASE), (iova, IPA_BASE + 0x1000)],
    )?;
    let nested = smmu.new_nested_domain(&parent, &guest.ste)?;
    smmu.attach_nested(master, &nested)?;
    println!(
        "old stage: nesting parent VMID {} (IPA {IPA_BASE:#x} -> PA {src:#x}, IPA {:#x} -> PA \
         {dst:#x}); guest CD table at IPA {:#x}, ASID 5",
        parent.id(),
        IPA_BASE + 0x1000,
        guest.cd
    );
    // The parent's and the guest's tables stay in use by the hardware after the crash: never
    // freed (the nested domain itself owns no memory).
    core::mem::forget(guest);
    core::mem::forget(parent);
    Ok(())
}

/// Overwrites the level-1 descriptor of `sid` with garbage (a `Span` of 3, which SPEC K3
/// refuses): found from the registers, as the crash stage will find it.
fn corrupt_l1(regs: &Mmio, sid: u64) {
    let base = regs.read64(offset::STRTAB_BASE) & 0x000f_ffff_ffff_ffc0;
    let split = (regs.read32(offset::STRTAB_BASE_CFG) >> 6) & 0x1f;
    let desc = base + (sid >> split) * 8;
    // SAFETY: `desc` is a descriptor of the level-1 table this stage's driver allocated in its
    // carve-out (identity-mapped RAM); an aligned 64-bit store, as the driver makes.
    unsafe { (desc as usize as *mut u64).write_volatile(0xdead_beef_cafe_0003) };
    println!("old stage: level-1 descriptor at PA {desc:#x} overwritten with 0xdeadbeefcafe0003");
}

/// The crash: interrupts masked, then a branch to the crash stage's entry. Nothing is passed.
fn crash() -> ! {
    // SAFETY: `crash_entry` sets its own stack and never returns; nothing of this stage's
    // state is used again.
    unsafe {
        core::arch::asm!(
            "msr daifset, #0xf",
            "isb",
            "b crash_entry",
            options(noreturn),
        )
    }
}

// ---------------------------------------------------------------------------------------
// The crash stage.

const CRASH_STACK_TOP: u64 = board::CRASH_BASE + board::CRASH_STACK_SIZE;
const _: () = assert!(CRASH_STACK_TOP & 0xffff == 0 && CRASH_STACK_TOP >> 32 == 0);

// The crash stage's entry: its own stack (the top of its reservation's stack area), then
// `crash_main`. Like a crash kernel's entry, it assumes nothing about the stage that jumped
// here except that interrupts are masked.
core::arch::global_asm!(
    ".global crash_entry",
    "crash_entry:",
    "msr daifset, #0xf",
    "movz x9, #{hi}, lsl #16",
    "mov sp, x9",
    "mov x29, xzr",
    "mov x30, xzr",
    "b {main}",
    hi = const CRASH_STACK_TOP >> 16,
    main = sym crash_main,
);

type CrashDriver = Smmu<&'static Mmio, &'static Carveout, CrashStreamTable>;

/// The crash stage's state, at [`board::CRASH_STATE`], written by the crash stage itself.
struct CrashState {
    carve: Carveout,
    regs: Mmio,
    driver: MaybeUninit<CrashDriver>,
}

const _: () = assert!(core::mem::size_of::<CrashState>() as u64 <= board::CRASH_STATE_SIZE);

/// The adopted table's fallback, and the `abort` strategy: `smmu_kdump::RESET_DISABLE_FIRST`,
/// the full reset with `SMMUEN` cleared *before* the abort step. On an SMMU whose `GBPA` works,
/// the driver's own full reset (`ResetPlan::FULL`) aborts first; QEMU 7.2 drops the `GBPA`
/// write, so on a live SMMU that order fails (`Error::AbortNotConfirmed`: the driver never
/// turns translation into bypass, SPEC K16) and the crash kernel would not come up. On
/// QEMU 10, whose `GBPA` works, the abort step takes and DMA in that window is aborted
/// instead of bypassed; the transfer lines read which from memory.
const QEMU_FULL_RESET: ResetPlan = smmu_kdump::RESET_DISABLE_FIRST;

/// The first step of the reset that lets the DMA in flight run in its bypass window
/// (`--dma-during-reset`): `SMMUEN` cleared; [`QEMU_FULL_RESET`] follows once the transfers
/// have run.
const DISABLE_ONLY: ResetPlan = ResetPlan {
    steps: &[ResetStep::DisableAll],
    on_failure: OnFailure::Report,
};

/// Where a transfer in flight landed, as memory shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Landing {
    /// On the page the old stage mapped.
    Translated,
    /// At the bus address itself (the IOVA, which is RAM): the SMMU let it through untranslated.
    Bypassed,
    /// On another page of RAM: memory corruption.
    Elsewhere(u64),
    /// Nowhere in RAM: with the device finished, the SMMU terminated it.
    Nowhere,
}

extern "C" fn crash_main() -> ! {
    // SAFETY: one CPU, interrupts masked, the old stage gone: nothing else uses the console.
    unsafe { console::take_over() };

    println!("crash stage: entered, stack at {CRASH_STACK_TOP:#x}");
    let (mode, stage) = match Mode::read() {
        Ok(m) => m,
        Err(e) => {
            println!("FAIL arguments: {e}");
            verdict::exit(2)
        }
    };
    let mut v = Verdict::new();
    if let Err(e) = crash_stage(mode, stage, &mut v) {
        v.check("crash stage", false, format_args!("stopped: {e}"));
    }
    v.exit()
}

#[inline(never)]
fn crash_stage(mode: Mode, stage: Stage, v: &mut Verdict) -> Result<(), Error> {
    let state = board::CRASH_STATE as usize as *mut CrashState;
    // SAFETY: the crash reservation is RAM nobody else uses (board.rs), identity-mapped;
    // `state` is aligned (page aligned) and the state fits (asserted above). The fields are
    // written before any reference to them is made.
    let (carve, regs) = unsafe {
        addr_of_mut!((*state).carve).write(Carveout::new(
            board::CRASH_CARVEOUT_BASE,
            board::CRASH_CARVEOUT_SIZE,
            PhysRange {
                start: PhysAddr(board::CRASH_CARVEOUT_BASE),
                size: 0,
            },
        ));
        addr_of_mut!((*state).regs).write(platform::smmu_registers());
        let carve: &'static Carveout = &*addr_of!((*state).carve);
        let regs: &'static Mmio = &*addr_of!((*state).regs);
        (carve, regs)
    };

    // What a crash kernel sees first: the registers, and the devices' own registers.
    let cr0 = regs.read32(offset::CR0);
    let (prod, cons) = (
        regs.read32(offset::EVTQ_PROD) & 0x000f_ffff,
        regs.read32(offset::EVTQ_CONS) & 0x000f_ffff,
    );
    // The old stage is gone: this stage alone configures the bus now.
    let ecam = platform::ecam();
    let mut found: [Option<(Function, Edu)>; DEVICES] = [None, None];
    for (slot, f) in found.iter_mut().zip(ecam.find(edu::VENDOR, edu::DEVICE)) {
        // The BAR the crashed kernel assigned, as configuration space holds it.
        let Some(bar) = f.bar0() else { continue };
        // SAFETY: an assigned, decoding BAR0 of an edu function, in the Device-mapped first
        // GiB.
        *slot = Some((f, unsafe { Edu::new(bar) }));
    }
    let [Some(d0), Some(d1)] = found else {
        v.check(
            "pci",
            false,
            format_args!("two edu devices with assigned BARs expected"),
        );
        return Ok(());
    };
    let devices = [d0, d1];
    let in_flight_at_entry = devices.each_ref().map(|(_, d)| d.busy());
    println!(
        "crash stage: CR0 {cr0:#x} (SMMUEN {}), old event queue PROD {prod:#x} CONS {cons:#x}, \
         edu transfers running {in_flight_at_entry:?}",
        cr0 & 1
    );

    // Bring-up.
    let platform = AdoptPlatform {
        // The broken variant forgets to say it is a crash kernel: adoption is refused
        // (SPEC K1), the SMMU is reset under the DMA, and the adopt run must fail.
        crash_kernel: !cfg!(feature = "broken-not-crash-kernel"),
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    };
    let options = AdoptOptions {
        fallback: QEMU_FULL_RESET,
        config: SmmuConfig {
            gbpa: GbpaPolicy::AcceptIgnoredWhileDisabled,
            ..SmmuConfig::default()
        },
        ..AdoptOptions::default()
    };
    // The driver lives in the crash state, built there in place: nothing of its size passes
    // through this stage's stack (checked by the footprint line at the end).
    // SAFETY: `driver` is a field of the crash state (above), reached only through this
    // reference from here on.
    let slot: &'static mut MaybeUninit<CrashDriver> =
        unsafe { &mut *addr_of_mut!((*state).driver) };
    if matches!(mode, Mode::Abort | Mode::AbortDmaDuringReset) {
        // The driver's own full reset first. GBPA is read back: an SMMU that implements it
        // (QEMU 10) lets the strict reset go ahead; one that ignores it (QEMU 7.2) must see it
        // refused on the live SMMU, translation still on (SPEC K16). Either answer passes
        // when the driver's behaviour matches it.
        let gbpa_before = regs.read32(offset::GBPA);
        let strict = smmu_kdump::full_reset_in(
            slot,
            regs,
            carve,
            &ResetPlan::FULL,
            options.crash_config(&platform),
        )
        .map(|_| ());
        let smmuen = regs.read32(offset::CR0) & 1;
        let gbpa_abort = regs.read32(offset::GBPA) & (1 << 20) != 0;
        let (ok, e) = match strict {
            Err(e @ Error::AbortNotConfirmed { .. }) => (smmuen == 1 && !gbpa_abort, Some(e)),
            Err(e) => (false, Some(e)),
            Ok(()) => (gbpa_abort, None),
        };
        v.check(
            "strict full reset",
            ok,
            format_args!(
                "the driver's full reset (abort first) on the live SMMU: {}; GBPA {gbpa_before:#x} \
                 before, ABORT {} after; SMMUEN {smmuen}",
                Refused(e),
                if gbpa_abort { "set (the SMMU implements GBPA)" } else { "clear (the write was dropped)" }
            ),
        );
        // Whatever it built is abandoned in the slot (never freed: a refused driver may have
        // left the SMMU pointing at it); the reset below builds over it.
    }
    // What the SMMU was set to while the transfers ran in the disabled window of
    // `--dma-during-reset` (CR0, GBPA), read there.
    let mut window: Option<(u32, u32)> = None;
    let started = time::now();
    let booted: Result<Option<smmu_kdump::Verdict>, Error> = match mode {
        // `boot`'s verdict; `None` for the chosen full reset, which asks nothing.
        Mode::Adopt | Mode::AdoptCorruptL1 if cfg!(feature = "broken-by-value-boot") => {
            // The broken variant: the by-value bring-up (about 100 KiB through the stack).
            smmu_kdump::boot(regs, carve, &platform, &options).map(|b| {
                let verdict = b.verdict;
                slot.write(b.smmu);
                Some(verdict)
            })
        }
        Mode::Adopt | Mode::AdoptCorruptL1 => {
            smmu_kdump::boot_in(slot, regs, carve, &platform, &options)
                .map(|BootedIn { verdict, .. }| Some(verdict))
        }
        Mode::Abort => smmu_kdump::full_reset_in(
            slot,
            regs,
            carve,
            &QEMU_FULL_RESET,
            options.crash_config(&platform),
        )
        .map(|_| None),
        Mode::AbortDmaDuringReset => {
            smmu_kdump::full_reset_in(
                slot,
                regs,
                carve,
                &DISABLE_ONLY,
                options.crash_config(&platform),
            )
            .and_then(|smmu| {
                // The SMMU is disabled: let the transfers run now, then finish the reset. What
                // they met (bypass or abort, by GBPA.ABORT) is read from memory afterwards.
                for (_, d) in &devices {
                    let _ = d.wait(2000);
                }
                window = Some((regs.read32(offset::CR0), regs.read32(offset::GBPA)));
                smmu.reset(&QEMU_FULL_RESET)?;
                Ok(None)
            })
        }
    };
    let in_flight_after_boot = devices.each_ref().map(|(_, d)| d.busy());
    let micros = (time::now() - started) * 1_000_000 / time::frequency();
    let verdict = match booted {
        Ok(v) => v,
        Err(e) => {
            v.check(
                "bring-up",
                false,
                format_args!("the SMMU did not come up: {e}"),
            );
            return Ok(());
        }
    };
    // SAFETY: the bring-up returned `Ok`, so the slot holds the running driver.
    let smmu: &'static mut CrashDriver = unsafe { slot.assume_init_mut() };
    let (verdict_ok, verdict_line) = match (mode, verdict) {
        (Mode::Abort | Mode::AbortDmaDuringReset, None) => (true, Line::Reset),
        (_, None) => (false, Line::Reset),
        (
            Mode::Adopt,
            Some(smmu_kdump::Verdict::Adopted {
                stats,
                asids,
                vmids,
            }),
        ) => (
            // Each device's domain tag is reserved: its ASID (stage 1) or VMID (stage 2).
            match stage {
                Stage::One => asids >= DEVICES as u32,
                Stage::Two => vmids >= DEVICES as u32,
                // The nested STE's VMID and the stage-2 STE's; no ASID: the nested CD table
                // is at a guest IPA, which the scan must not read as a PA.
                Stage::Nested => vmids >= DEVICES as u32 && asids == 0,
            },
            Line::Adopted(stats.stes_valid, asids, vmids),
        ),
        (Mode::AdoptCorruptL1, Some(smmu_kdump::Verdict::FullReset(r))) => {
            (matches!(r, Refusal::L1BadSpan { .. }), Line::Refused(r))
        }
        (_, Some(smmu_kdump::Verdict::FullReset(r))) => (false, Line::Refused(r)),
        (
            _,
            Some(smmu_kdump::Verdict::Adopted {
                stats,
                asids,
                vmids,
            }),
        ) => (false, Line::Adopted(stats.stes_valid, asids, vmids)),
        (_, Some(smmu_kdump::Verdict::Abandoned(e))) => (false, Line::Abandoned(e)),
    };
    v.check(
        "bring-up",
        verdict_ok,
        format_args!(
            "{verdict_line}, in {micros} µs; SMMUEN {}{}; transfers still running after it \
             {in_flight_after_boot:?}",
            regs.read32(offset::CR0) & 1,
            if smmu.gbpa_ignored() {
                "; GBPA write dropped (accepted: the SMMU was disabled)"
            } else {
                ""
            }
        ),
    );

    // Each device's driver probes.
    // SAFETY: the note page was written by the old stage (or holds whatever RAM held); a
    // volatile read of a plain `repr(C)` value of integers, valid for any bits.
    let note = unsafe { (board::CRASH_NOTE as usize as *const Note).read_volatile() };
    if note.magic != NOTE_MAGIC || note.count != DEVICES as u64 {
        v.check(
            "crash note",
            false,
            format_args!("no crash note at {:#x}", board::CRASH_NOTE),
        );
        return Ok(());
    }
    // The old stage's memory after the hand-over: the transfers have run (their pages are
    // left out), nothing else may have changed it — neither the bring-up (adoption writes
    // no old structure, SPEC K5) nor this stage's stack or allocations.
    for (_, d) in &devices {
        let _ = d.wait(2000);
    }
    let old_sum = old_memory_sum(note.old_end, &note.transfers);
    v.check(
        "old memory kept",
        old_sum == note.old_sum,
        format_args!(
            "the old stage's tables, queues and DMA buffers ({} KiB at {:#x}) checksum {old_sum:#018x} \
             after the hand-over, {:#018x} at the crash (the {DEVICES} in-flight transfers' pages left out)",
            (note.old_end.saturating_sub(board::CARVEOUT_BASE)) >> 10,
            board::CARVEOUT_BASE,
            note.old_sum
        ),
    );
    if let Some((cr0, gbpa)) = window {
        println!(
            "crash stage: the transfers finished while CR0 read {cr0:#x} (SMMUEN {}) and GBPA \
             {gbpa:#x} (ABORT {})",
            cr0 & 1,
            gbpa >> 20 & 1
        );
    }
    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    let mut all_expected = true;
    for ((f, dev), after) in devices.iter().zip(in_flight_after_boot) {
        let sid = u64::from(f.rid());
        let Some(t) = note.transfers.iter().find(|t| t.sid == sid) else {
            v.check(
                "crash note",
                false,
                format_args!("no transfer for StreamID {sid:#x}"),
            );
            continue;
        };
        let done = dev.wait(2000);
        let landing = landing(t);
        let expected = match mode {
            Mode::Adopt => landing == Landing::Translated,
            Mode::Abort | Mode::AdoptCorruptL1 => landing != Landing::Translated,
            // It must also have run inside the window, not after the reset.
            Mode::AbortDmaDuringReset => landing != Landing::Translated && !after,
        };
        all_expected &= expected;
        // Where the bytes are says what the SMMU did; whether the device was still running
        // when the bring-up ended says which configuration it met.
        let what = match landing {
            Landing::Translated => "translated: the bytes are on the page the old kernel mapped",
            Landing::Bypassed => {
                "bypassed: the bytes are at the untranslated bus address (RAM), not on the \
                 mapped page"
            }
            Landing::Elsewhere(_) => "misdirected: the bytes are on another page of RAM",
            Landing::Nowhere if done.is_err() => "not moved: the device has not finished",
            Landing::Nowhere => {
                "aborted: the device finished, and the bytes are neither on the mapped page nor \
                 at the bus address nor anywhere else in RAM"
            }
        };
        v.check(
            "transfer in flight",
            expected && done.is_ok(),
            format_args!(
                "StreamID {sid:#x}, {} bytes to IOVA {:#x} (old kernel's PA {:#x}): {what}{}; \
                 device finished {}; still running when the bring-up ended {after}",
                t.len,
                t.iova,
                t.pa,
                match landing {
                    Landing::Elsewhere(pa) => Where(Some(pa)),
                    _ => Where(None),
                },
                done.is_ok()
            ),
        );

        // Quiesce (bus mastering off), attach a domain of this kernel's own, DMA again.
        f.set_bus_master(false);
        let master = smmu.add_master(&MasterConfig {
            sids: &[f.rid()],
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })?;
        let deferred = smmu.is_deferred(master)?;
        let domain = new_domain(&mut *smmu, stage, carve)?;
        let page = carve.alloc(PAGE, PAGE)?;
        smmu.map(&domain, Iova(IOVA_NEW), page.pa, PAGE as u64, rw)?;
        let attach = smmu.attach(master, &domain);
        let attached = matches!(smmu.attachment(master)?, Attachment::Paging { .. });
        f.set_bus_master(true);
        let dma = dev.write_to(0, IOVA_NEW, t.len);
        let copied = holds_pattern(page.pa.0, t.seed, t.len as usize);
        v.check(
            "re-attach",
            attach.is_ok() && attached && dma.is_ok() && copied,
            format_args!(
                "StreamID {sid:#x}: quiesced, {} STE replaced by a new {} domain ({attach:?}); \
                 DMA to IOVA {IOVA_NEW:#x} -> PA {:#x}: bytes there {copied}",
                if deferred {
                    "the crashed kernel's (deferred)"
                } else {
                    "this kernel's"
                },
                match stage {
                    Stage::One => "stage-1",
                    Stage::Two | Stage::Nested => "stage-2",
                },
                page.pa.0
            ),
        );
        core::mem::forget(domain);
    }
    let g = smmu.handle_gerror();
    v.check(
        "no unexpected event",
        g.active.is_empty() && g.reserved == 0 && regs.read32(offset::CR0) & (1 << 2) == 0,
        format_args!(
            "global errors {:?}; the crash kernel has no event queue (SPEC K8), so no event \
             can be logged, and none is expected",
            g.active
        ),
    );
    println!(
        "crash stage: {} in flight: {}",
        mode.expect(),
        if all_expected { "yes" } else { "no" }
    );
    check_footprint(v, carve);
    Ok(())
}

/// The stack this crash stage may use: the driver's bring-up is built in place (`boot_in`
/// needs at most 16 KiB optimised, `kdump/tests/stack.rs`), so the whole stage stays far
/// inside it; a driver moved by value through the stack (about 100 KiB a move) does not.
const STACK_BUDGET: u64 = 64 << 10;

/// The footprint line: what the crash stage wrote outside its memory, read back from the
/// paint the old stage laid before the crash (as a kexec loader prepares the reservation). Its memory is its stack, the crash state and what
/// its carve-out handed out; below the reservation is the crashed kernel's.
fn check_footprint(v: &mut Verdict, carve: &Carveout) {
    let below = board::CRASH_BASE - PAINT_BELOW;
    let lowest = footprint::lowest_write(below, CRASH_STACK_TOP).unwrap_or(CRASH_STACK_TOP);
    let below_written = footprint::changed_words(below, board::CRASH_BASE);
    let state_end = board::CRASH_STATE + core::mem::size_of::<CrashState>() as u64;
    let state_unused =
        footprint::changed_words(state_end.next_multiple_of(8), board::CRASH_CARVEOUT_BASE);
    let carve_unused =
        footprint::changed_words(carve.high_water(), board::CRASH_BASE + board::CRASH_SIZE);
    let depth = CRASH_STACK_TOP - lowest;
    v.check(
        "footprint",
        depth <= STACK_BUDGET && below_written == 0 && state_unused == 0 && carve_unused == 0,
        format_args!(
            "deepest stack write {} KiB below the stack's top (budget {} KiB; lowest at {lowest:#x}, {}); words \
             changed below the reservation: {below_written}; in its unused state area: \
             {state_unused}; in its never-allocated carve-out: {carve_unused}",
            depth >> 10,
            STACK_BUDGET >> 10,
            if lowest < board::CRASH_BASE {
                "outside the crash reservation"
            } else {
                "inside its stack"
            }
        ),
    );
}

/// Where transfer `t` landed: its page, its bus address, another page of RAM holding its
/// pattern, or nowhere.
fn landing(t: &NoteTransfer) -> Landing {
    let len = t.len.min(PAGE as u64) as usize;
    if holds_pattern(t.pa, t.seed, len) {
        return Landing::Translated;
    }
    if holds_pattern(t.iova, t.seed, len) {
        return Landing::Bypassed;
    }
    let mut pa = board::RAM_BASE;
    while pa < board::RAM_BASE + board::RAM_SIZE {
        // The transfers are page aligned; the first 64 bytes pick the candidates.
        if pa != t.pa && holds_pattern(pa, t.seed, 64) && holds_pattern(pa, t.seed, len) {
            return Landing::Elsewhere(pa);
        }
        pa += PAGE as u64;
    }
    Landing::Nowhere
}

/// A domain of the run's stage for the device at `carve`: one arm per stage.
fn new_domain<T: smmu::strtab::StreamTable>(
    smmu: &mut Smmu<&'static Mmio, &'static Carveout, T>,
    stage: Stage,
    carve: &'static Carveout,
) -> Result<Domain<&'static Carveout>, Error> {
    match stage {
        Stage::One => smmu.new_domain(DomainStage::Stage1, false, carve),
        Stage::Two => smmu.new_domain(DomainStage::Stage2, false, carve),
        // The old stage's nested device is set up by `old_nested`; this is its other device's
        // domain, and the crash stage's own for the re-attach (it runs no guest).
        Stage::Nested => smmu.new_domain(DomainStage::Stage2, false, carve),
    }
}

struct Where(Option<u64>);

impl core::fmt::Display for Where {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(pa) => write!(f, " at PA {pa:#x}"),
            None => Ok(()),
        }
    }
}

/// A reset's refusal in words.
struct Refused(Option<Error>);

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(e) => write!(f, "refused ({e})"),
            None => f.write_str("it went ahead"),
        }
    }
}

/// The bring-up's verdict in words.
enum Line {
    Adopted(u64, u32, u32),
    Reset,
    Refused(Refusal),
    Abandoned(Error),
}

impl core::fmt::Display for Line {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Adopted(stes, asids, vmids) => write!(
                f,
                "adopted the live SMMU ({stes} valid STEs, {asids} ASIDs and {vmids} VMIDs reserved)"
            ),
            Self::Reset => f.write_str("full reset (abort strategy), SMMU disabled first"),
            Self::Refused(r) => write!(f, "full reset: {r} ({})", r.code()),
            Self::Abandoned(e) => write!(f, "adoption failed part-way ({e}); the SMMU was reset"),
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("FAIL panic: {info}");
    verdict::exit(101)
}

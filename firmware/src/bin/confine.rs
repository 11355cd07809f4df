//! Stage `confine`: the driver on QEMU's SMMUv3 confines a PCI device's DMA (SPEC F1).
//!
//! One line per check, then the verdict as QEMU's exit status (0 = every check held).
//!
//! `--stage 1` (the default) gives the device stage-1 domains, `--stage 2` stage-2 domains
//! (QEMU 10.0's `virt-9.1` with `-global arm-smmuv3.stage=2`, or its nested-capable `virt`);
//! `--stage nested` gives the device a nested domain: a guest stage 1 over a host nesting
//! parent (QEMU 10.0's `virt`), see [`nested`].
#![no_std]
#![no_main]

use core::panic::PanicInfo;

use aarch64_rt::RegisterStateRef;
use aarch64_rt::{entry, exception_handlers, initial_pagetable, ExceptionHandlers};
use smmu::arch::cmd::{Command, TlbiAddr, TlbiRange};
use smmu::arch::event::Event;
use smmu::evtq::EventReport;
use smmu::strtab::Layout;
use smmu::StaticSlot;
use smmu::{
    Attachment, Domain, DomainOptions, DomainStage, Error, GbpaPolicy, MasterConfig, Mmio,
    OwnedStreamTable, PhysAddr, RegisterAccess, ResetPlan, Smmu, SmmuConfig,
};
use smmu_firmware::board::{self};
use smmu_firmware::carveout::Carveout;
use smmu_firmware::edu::{self, Edu};
use smmu_firmware::pci::Function;
use smmu_firmware::stage::Stage;
use smmu_firmware::verdict::{self, Verdict};
use smmu_firmware::{console, platform, println, stack};
use smmu_pagetable::{Iova, Prot};

initial_pagetable!(board::idmap());

struct Exceptions;

impl ExceptionHandlers for Exceptions {
    extern "C" fn sync_current(_state: RegisterStateRef) {
        verdict::sync_exception()
    }
}

exception_handlers!(Exceptions);

// 16 pages: the 64 KiB stack that `Smmu` used to overflow; it now lives in a static.
entry!(main, 16);

type Driver = Smmu<&'static Mmio, &'static Carveout, OwnedStreamTable>;

static CARVEOUT: StaticSlot<Carveout> = StaticSlot::new();
static REGS: StaticSlot<Mmio> = StaticSlot::new();
/// The driver as the platform first builds it: strict about GBPA.
static STRICT: StaticSlot<Driver> = StaticSlot::new();
/// The driver after the platform accepted an SMMU that ignores GBPA.
static ACCEPTING: StaticSlot<Driver> = StaticSlot::new();

/// Events kept per drain (the rest are counted): the checks look at the first.
const EVENTS: usize = 4;

/// Events drained by one call, kept for inspection.
struct Drained {
    events: [Option<EventReport>; EVENTS],
    count: usize,
}

impl Drained {
    fn first(&self) -> Option<&EventReport> {
        self.events.first().and_then(Option::as_ref)
    }
}

/// One event in a line: its name, StreamID and the fields the checks look at.
struct Show<'a>(Option<&'a EventReport>);

impl core::fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(EventReport::Event(Event::BadStreamId(s))) => {
                write!(f, "C_BAD_STREAMID StreamID {:#x}", s.sid)
            }
            Some(EventReport::Event(Event::Translation(t))) => write!(
                f,
                "F_TRANSLATION StreamID {:#x} IOVA {:#x} {} stage {} CLASS {:?}",
                t.fault.stream.sid,
                t.fault.input_addr,
                if t.fault.read { "read" } else { "write" },
                if t.fault.stage2 { 2 } else { 1 },
                t.fault.class,
            ),
            Some(other) => write!(f, "{other:?}"),
        }
    }
}

#[inline(never)]
fn drain(smmu: &mut Driver) -> Drained {
    let mut d = Drained {
        events: [None; EVENTS],
        count: 0,
    };
    let _ = smmu.handle_events(&mut |r| {
        if let Some(slot) = d.events.get_mut(d.count) {
            *slot = Some(r);
        }
        d.count += 1;
    });
    d
}

fn main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    stack::paint();
    console::init();
    let stage = match read_stage() {
        Ok(s) => s,
        Err(e) => {
            println!("FAIL arguments: {e}");
            verdict::exit(2)
        }
    };
    println!(
        "smmu firmware: stage confine on QEMU virt, {} domains",
        stage.name()
    );
    if let Err(e) = stage.domain_stage() {
        println!("FAIL stage: {e}");
        verdict::exit(1)
    }
    // PSCI through HVC (QEMU virt without EL2/EL3 firmware): the later crash-kernel stages
    // stop and start CPUs with it.
    match smccc::psci::version::<smccc::Hvc>() {
        Ok(ver) => println!("PSCI {ver}"),
        Err(e) => println!("PSCI: {e:?}"),
    }
    let mut v = Verdict::new();
    if let Err(e) = run(&mut v, stage) {
        v.check("run", false, format_args!("stopped: {e}"));
    }
    let (used, size) = stack::used();
    v.check(
        "stack",
        used < size,
        format_args!(
            "{} KiB of the {} KiB boot stack used",
            used.div_ceil(1024),
            size / 1024
        ),
    );
    v.exit()
}

fn bytes(pa: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: every caller passes a page of a DMA buffer allocated from the carve-out for
    // this check and not otherwise referenced; the identity map makes `pa` the CPU address.
    unsafe { core::slice::from_raw_parts_mut(pa as usize as *mut u8, len) }
}

/// Builds a driver in `slot` (a separate frame, so that the stream table's ~10 KiB
/// temporary is on the stack once, not once per call site).
#[inline(never)]
fn build(
    slot: &'static StaticSlot<Driver>,
    regs: &'static Mmio,
    carve: &'static Carveout,
    features: smmu::arch::idr::Features,
    config: SmmuConfig,
) -> Result<&'static mut Driver, Error> {
    let slot = slot.take().ok_or(Error::CapacityExhausted)?;
    let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
    let abort = smmu::writer::make::ste_image(&smmu::writer::make::abort_ste());
    let strtab = OwnedStreamTable::new(carve, layout, log2, features.coherent, &abort)?;
    Smmu::new_in(slot, regs, carve, features, strtab, config)
}

#[inline(never)]
fn run(v: &mut Verdict, stage: Stage) -> Result<(), Error> {
    let (Some(carve_slot), Some(regs_slot)) = (CARVEOUT.take(), REGS.take()) else {
        return Err(Error::CapacityExhausted);
    };
    let (carve, regs) = platform::bring_up(carve_slot, regs_slot);

    // PCI: both edu functions, StreamID = RID.
    let mut ecam = platform::ecam();
    let found: [Option<Function>; 2] = platform::edu_functions(&ecam);
    let [Some(f0), Some(f1)] = found else {
        v.check(
            "pci",
            false,
            format_args!("two edu devices expected (-device edu -device edu)"),
        );
        return Ok(());
    };
    let (Some(bar0), Some(bar1)) = (ecam.enable(&f0), ecam.enable(&f1)) else {
        v.check("pci", false, format_args!("could not assign the edu BARs"));
        return Ok(());
    };
    // SAFETY: BARs just assigned and enabled, inside the Device-mapped first GiB.
    let (dev, gpu) = unsafe { (Edu::new(bar0), Edu::new(bar1)) };
    v.check(
        "pci",
        dev.identification() == 0x010000ed && gpu.identification() == 0x010000ed,
        format_args!(
            "edu at 00:{:02x}.{} (StreamID {:#x}, BAR0 {bar0:#x}) and 00:{:02x}.{} (StreamID {:#x}, BAR0 {bar1:#x})",
            f0.device,
            f0.function,
            f0.rid(),
            f1.device,
            f1.function,
            f1.rid()
        ),
    );

    // Probe.
    let features = smmu::probe::probe(regs)?;
    v.check(
        "probe",
        stage.supported(&features),
        format_args!(
            "{} domains need {}: stage1={} stage2={} ST_LEVEL={} RIL={} OAS={:?} SIDSIZE={} SSIDSIZE={} coherent={} \
             IDR0..5={:#x},{:#x},{:#x},{:#x},{:#x},{:#x} IIDR={:#x} AIDR={:#x}",
            stage.name(),
            if stage.supported(&features) { "present" } else { "missing" },
            features.stage1,
            features.stage2,
            if features.two_level_stream_table {
                "2-level"
            } else {
                "linear"
            },
            features.range_invalidation,
            features.oas,
            features.sid_bits,
            features.ssid_bits,
            features.coherent,
            idr(regs, 0),
            idr(regs, 1),
            idr(regs, 2),
            idr(regs, 3),
            idr(regs, 4),
            idr(regs, 5),
            regs.read32(smmu::arch::regs::offset::IIDR),
            regs.read32(smmu::arch::regs::offset::AIDR),
        ),
    );

    // Full reset, strict about GBPA first (SPEC D11): an SMMU that ignores the abort must
    // be reported, not treated as success.
    let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
    let strict = build(&STRICT, regs, carve, features, SmmuConfig::default())?;
    let first = strict.reset(&ResetPlan::FULL);
    let smmuen = regs.read32(smmu::arch::regs::offset::CR0) & 1 != 0;
    let gbpa = regs.read32(smmu::arch::regs::offset::GBPA);
    let (smmu, reset): (&mut Driver, _) = match first {
        Ok(()) => {
            v.check(
                "GBPA read-back",
                true,
                format_args!("GBPA took ABORT (reads {gbpa:#x} after the reset)"),
            );
            (strict, Ok(()))
        }
        Err(Error::GbpaNotTaken { wrote, read }) if !smmuen => {
            v.check(
                "GBPA read-back",
                true,
                format_args!(
                    "strict full reset refused: GBPA ignored (wrote {wrote:#x}, reads {read:#x}); \
                     SMMU still disabled"
                ),
            );
            // The platform's decision (QEMU 7.2 has no GBPA): accept it while the SMMU is
            // disabled. The strict driver's queues stay allocated (a few KiB of carve-out):
            // releasing it would move it onto the stack.
            let config = SmmuConfig {
                gbpa: GbpaPolicy::AcceptIgnoredWhileDisabled,
                ..SmmuConfig::default()
            };
            let smmu = build(&ACCEPTING, regs, carve, features, config)?;
            let reset = smmu.reset(&ResetPlan::FULL);
            (smmu, reset)
        }
        Err(e) => {
            v.check("GBPA read-back", false, format_args!("full reset: {e}"));
            return Err(e);
        }
    };
    v.check(
        "full reset",
        reset.is_ok(),
        format_args!(
            "{layout:?} stream table of 2^{log2} StreamIDs: {reset:?}{}",
            if smmu.gbpa_ignored() {
                " (GBPA ignored: this SMMU bypasses while SMMUEN is 0; no DMA was started \
                 before SMMUEN was set)"
            } else {
                ""
            }
        ),
    );
    reset?;

    // Buffers: a source page, a destination page and its neighbours.
    let src = carve.alloc(4096, 4096)?;
    let dst = carve.alloc(3 * 4096, 4096)?;
    let dst_pa = dst.pa.0 + 4096;
    for (i, b) in bytes(src.pa.0, 4096).iter_mut().enumerate() {
        *b = (i as u8) ^ 0x5a;
    }
    let sid = f0.rid();

    // Before any attach: the StreamID has no level-2 table, so the SMMU refuses the DMA and
    // records C_BAD_STREAMID.
    let _ = drain(smmu);
    dma_err(dev.read_from(0x10_0000, 0, 64));
    let d = drain(smmu);
    let bad_sid = matches!(
        d.first(),
        Some(EventReport::Event(Event::BadStreamId(s))) if s.sid == sid
    );
    v.check(
        "unattached DMA refused",
        bad_sid,
        format_args!(
            "{} event(s) for 64 bytes, first {}",
            d.count,
            Show(d.first())
        ),
    );

    // Stage-1 domain, attached.
    let edu_master = smmu.add_master(&MasterConfig {
        sids: &[sid],
        protected: false,
        ats: false,
        stall: false,
        ssid_bits: 0,
    })?;
    if stage == Stage::Nested {
        nested(
            v,
            smmu,
            carve,
            [&dev, &gpu],
            (edu_master, sid),
            f1.rid(),
            src,
            dst,
        )?;
        gerror(v, smmu, carve);
        return Ok(());
    }
    let domain = new_domain(smmu, stage, false, carve)?;
    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    const LEN: u64 = edu::MAX_TRANSFER;
    const IOVA_SRC: u64 = 0x10_0000;
    const IOVA_DST: u64 = 0x20_0000;
    const IOVA_UNMAPPED: u64 = 0x30_0000;
    let mapped_dst = if cfg!(feature = "broken-wrong-page") {
        dst_pa + 4096
    } else {
        dst_pa
    };
    smmu.map(&domain, Iova(IOVA_SRC), src.pa, 4096, rw)?;
    smmu.map(&domain, Iova(IOVA_DST), PhysAddr(mapped_dst), 4096, rw)?;
    smmu.attach(edu_master, &domain)?;
    dma_err(dev.read_from(IOVA_SRC, 0, LEN));
    dma_err(dev.write_to(0, IOVA_DST, LEN));
    let out = bytes(dst.pa.0, 3 * 4096);
    let landed = out[4096..4096 + LEN as usize] == *bytes(src.pa.0, LEN as usize);
    let neighbours_clean = out[..4096].iter().chain(&out[8192..]).all(|&b| b == 0);
    let d = drain(smmu);
    v.check(
        match stage {
            Stage::One => "stage-1 DMA translated",
            Stage::Two => "stage-2 DMA translated",
            Stage::Nested => "nested DMA translated",
        },
        landed && neighbours_clean && d.count == 0,
        format_args!(
            "IOVA {IOVA_SRC:#x} -> PA {:#x} copied to IOVA {IOVA_DST:#x} -> PA {dst_pa:#x}: \
             bytes there {landed}, neighbours untouched {neighbours_clean}, {} event(s)",
            src.pa.0, d.count
        ),
    );

    // An unmapped IOVA: F_TRANSLATION with the IOVA and StreamID.
    dma_err(dev.write_to(0, IOVA_UNMAPPED, 8));
    let d = drain(smmu);
    let fault = match d.first() {
        Some(EventReport::Event(Event::Translation(t))) => Some(t.fault),
        _ => None,
    };
    v.check(
        "unmapped IOVA faults",
        fault.is_some_and(|f| {
            f.input_addr == IOVA_UNMAPPED
                && f.stream.sid == sid
                && f.stage2 == stage.faults_in_stage2()
        }),
        format_args!(
            "{} event(s) for an 8-byte write to a {} domain, first {}",
            d.count,
            stage.name(),
            Show(d.first())
        ),
    );

    // Unmap (the driver issues the TLBI and its sync), then DMA to the old IOVA: it must
    // fault, not reach the old page through a stale TLB entry.
    out.fill(0);
    let unmapped = if cfg!(feature = "broken-skip-tlbi") {
        clear_leaf_without_tlbi(&domain, IOVA_DST)
    } else {
        smmu.unmap(&domain, Iova(IOVA_DST), 4096)?
    };
    dma_err(dev.write_to(0, IOVA_DST, 64));
    let d = drain(smmu);
    let untouched = out.iter().all(|&b| b == 0);
    let faulted = matches!(
        d.first(),
        Some(EventReport::Event(Event::Translation(t))) if t.fault.input_addr == IOVA_DST
    );
    v.check(
        "unmap invalidates",
        unmapped == 4096 && untouched && faulted,
        format_args!(
            "unmapped {unmapped:#x} bytes; DMA to the old IOVA: memory untouched {untouched}, \
             {} event(s), first {}",
            d.count,
            Show(d.first())
        ),
    );

    // Detach: abort, silently (an abort STE records no event).
    smmu.map(&domain, Iova(IOVA_DST), PhysAddr(dst_pa), 4096, rw)?;
    smmu.detach(edu_master)?;
    out.fill(0);
    dma_err(dev.write_to(0, IOVA_DST, 64));
    let d = drain(smmu);
    let untouched = out.iter().all(|&b| b == 0);
    v.check(
        "detach leaves abort",
        smmu.attachment(edu_master)? == Attachment::Blocked && untouched && d.count == 0,
        format_args!(
            "attachment {:?}, memory untouched {untouched}, {} event(s)",
            smmu.attachment(edu_master)?,
            d.count
        ),
    );

    // A protected master (SPEC D9): only its shared window.
    let gpu_master = smmu.add_master(&MasterConfig {
        sids: &[f1.rid()],
        protected: true,
        ats: false,
        stall: false,
        ssid_bits: 0,
    })?;
    let identity = smmu.attach_identity(gpu_master);
    let pdomain = new_domain(smmu, stage, true, carve)?;
    let private = smmu.map(&pdomain, Iova(IOVA_SRC), src.pa, 4096, rw);
    let shared = PhysAddr(board::SHARED_WINDOW_BASE);
    smmu.map(&pdomain, Iova(IOVA_DST), shared, 4096, rw)?;
    let unprotected_domain = smmu.attach(gpu_master, &domain);
    smmu.attach(gpu_master, &pdomain)?;
    for (i, b) in bytes(shared.0, 4096).iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(3);
    }
    // Inside the window: device buffer <- first half, then buffer -> second half.
    dma_err(gpu.read_from(IOVA_DST, 0, LEN));
    dma_err(gpu.write_to(0, IOVA_DST + LEN, LEN));
    let window = bytes(shared.0, 2 * LEN as usize);
    let (first, second) = window.split_at(LEN as usize);
    let in_window = first == second;
    let d = drain(smmu);
    let in_window = in_window && d.count == 0;
    // Outside: buffer -> an IOVA mapped nowhere faults.
    dma_err(gpu.write_to(0, IOVA_SRC, 8));
    let d = drain(smmu);
    let reach_fault = matches!(
        d.first(),
        Some(EventReport::Event(Event::Translation(t)))
            if t.fault.input_addr == IOVA_SRC && t.fault.stream.sid == f1.rid()
    );
    v.check(
        "protected master confined",
        identity.is_err() && private.is_err() && unprotected_domain.is_err() && in_window && reach_fault,
        format_args!(
            "identity {identity:?}; private page map {private:?}; unprotected domain {unprotected_domain:?}; \
             DMA inside the window copied {in_window}; \
             DMA outside the window: {} event(s), first {}",
            d.count,
            Show(d.first())
        ),
    );

    gerror(v, smmu, carve);
    Ok(())
}

/// The last line: global errors.
fn gerror(v: &mut Verdict, smmu: &mut Driver, carve: &Carveout) {
    let g = smmu.handle_gerror();
    v.check(
        "GERROR clean",
        g.active.is_empty() && g.reserved == 0,
        format_args!("{g:?}"),
    );
    println!(
        "carve-out in use: {} KiB; Smmu is {} bytes",
        carve.used_bytes() / 1024,
        core::mem::size_of::<Driver>()
    );
}

/// The guest's IPA window (its "physical" addresses): above the 128 MiB of RAM at 1 GiB, so an
/// IPA is never mistaken for the PA behind it.
const IPA_BASE: u64 = 0x2_0000_0000;
/// The guest's ASID (its CD 0).
const GUEST_ASID: u16 = 5;

/// The translated page: `pa` holds `len` bytes of `src` and the pages either side are zero.
fn landed_on(pa: u64, src: u64, len: usize) -> bool {
    bytes(pa, len) == &*bytes(src, len)
}

/// `--stage nested` (SPEC D13): the `edu` device on a nested domain. The "host" part owns a
/// stage-2 nesting parent; the "guest" part builds a stage 1 in its IPA space (a page table
/// and a CD, both at IPA = PA, which the host maps) and hands the host only its STE words.
/// Every check reads what happened: the bytes in memory, and the events with their stage.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn nested(
    v: &mut Verdict,
    smmu: &mut Driver,
    carve: &'static Carveout,
    [dev, gpu]: [&Edu; 2],
    (master, sid): (smmu::MasterId, u32),
    gpu_sid: u32,
    src: smmu::DmaRegion,
    dst: smmu::DmaRegion,
) -> Result<(), Error> {
    use smmu_pagetable::Gather;

    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    const LEN: u64 = edu::MAX_TRANSFER;
    // Guest IOVAs and the IPAs its stage 1 maps them to.
    const IOVA_SRC: u64 = 0x10_0000;
    const IOVA_DST: u64 = 0x20_0000;
    const IOVA_UNMAPPED: u64 = 0x30_0000;
    const IOVA_PARENT: u64 = 0x40_0000;
    const IOVA_S2_HOLE: u64 = 0x50_0000;
    const IPA_SRC: u64 = IPA_BASE;
    const IPA_DST: u64 = IPA_BASE + 0x1000;
    const IPA_PARENT: u64 = IPA_BASE + 0x2000;
    /// Mapped by the guest, never by the host: a stage-2 fault.
    const IPA_HOLE: u64 = IPA_BASE + 0x3000;
    let dst_pa = dst.pa.0 + 4096;
    let mapped_dst = if cfg!(feature = "broken-wrong-page") {
        dst_pa + 4096
    } else {
        dst_pa
    };
    let parent_page = carve.alloc(4096, 4096)?;

    // The host: a nesting parent mapping the guest's buffers at their IPAs.
    let parent = smmu.new_domain_with(DomainOptions::nesting_parent(), carve)?;
    smmu.map(&parent, Iova(IPA_SRC), src.pa, 4096, rw)?;
    smmu.map(&parent, Iova(IPA_DST), PhysAddr(mapped_dst), 4096, rw)?;
    smmu.map(&parent, Iova(IPA_PARENT), parent_page.pa, 4096, rw)?;

    // The guest: its stage 1 (IOVA -> IPA), its tables allocated at IPA = PA, which the
    // parent maps.
    let guest = smmu_firmware::guest::build(
        smmu,
        &parent,
        carve,
        GUEST_ASID,
        &[
            (IOVA_SRC, IPA_SRC),
            (IOVA_DST, IPA_DST),
            (IOVA_PARENT, IPA_PARENT),
            (IOVA_S2_HOLE, IPA_HOLE),
        ],
    )?;
    let ste = guest.ste;
    let nested = smmu.new_nested_domain(&parent, &ste)?;
    smmu.attach_nested(master, &nested)?;
    println!(
        "nested: parent VMID {} maps {} guest structure pages at IPA = PA; guest CD at IPA {:#x} \
            (ASID {GUEST_ASID}, TTB0 IPA {:#x}); attachment {:?}",
        parent.id(),
        guest.structures,
        guest.cd,
        guest.ttb,
        smmu.attachment(master)?
    );

    // Through both stages: IOVA -> IPA (guest) -> PA (host).
    dma_err(dev.read_from(IOVA_SRC, 0, LEN));
    dma_err(dev.write_to(0, IOVA_DST, LEN));
    let out = bytes(dst.pa.0, 3 * 4096);
    let landed = landed_on(dst_pa, src.pa.0, LEN as usize);
    let neighbours_clean = out[..4096].iter().chain(&out[8192..]).all(|&b| b == 0);
    dma_err(dev.write_to(0, IOVA_PARENT, 64));
    let parent_landed = landed_on(parent_page.pa.0, src.pa.0, 64);
    let d = drain(smmu);
    v.check(
        "nested DMA translated",
        landed && neighbours_clean && parent_landed && d.count == 0,
        format_args!(
            "IOVA {IOVA_SRC:#x} -> IPA {IPA_SRC:#x} -> PA {:#x} copied to IOVA {IOVA_DST:#x} -> \
                IPA {IPA_DST:#x} -> PA {dst_pa:#x}: bytes there {landed}, neighbours untouched \
                {neighbours_clean}; IOVA {IOVA_PARENT:#x} -> IPA {IPA_PARENT:#x} -> PA {:#x}: bytes \
                there {parent_landed}; {} event(s)",
            src.pa.0,
            parent_page.pa.0,
            d.count
        ),
    );

    // A stage-1 fault: an IOVA the guest never mapped.
    dma_err(dev.write_to(0, IOVA_UNMAPPED, 8));
    let d = drain(smmu);
    let s1 = matches!(
        d.first(),
        Some(EventReport::Event(Event::Translation(t)))
            if t.fault.input_addr == IOVA_UNMAPPED && t.fault.stream.sid == sid && !t.fault.stage2
    );
    v.check(
        "stage-1 fault",
        s1,
        format_args!(
            "an 8-byte write to IOVA {IOVA_UNMAPPED:#x}, unmapped in the guest's stage 1: {} \
                event(s), first {}",
            d.count,
            Show(d.first())
        ),
    );

    // A stage-2 fault: the guest maps the IOVA to an IPA the host never mapped.
    dma_err(dev.write_to(0, IOVA_S2_HOLE, 8));
    let d = drain(smmu);
    let (s2, ipa) = match d.first() {
        Some(EventReport::Event(Event::Translation(t))) => (
            t.fault.input_addr == IOVA_S2_HOLE
                && t.fault.stream.sid == sid
                && t.fault.stage2
                && t.ipa & !0xfff == IPA_HOLE,
            t.ipa,
        ),
        _ => (false, 0),
    };
    v.check(
        "stage-2 fault",
        s2,
        format_args!(
            "an 8-byte write to IOVA {IOVA_S2_HOLE:#x} -> IPA {IPA_HOLE:#x}, unmapped in the \
                parent: {} event(s), first {} (IPA {ipa:#x})",
            d.count,
            Show(d.first())
        ),
    );

    // The guest unmaps IOVA_DST (its TLB entry is live from the copy above) and asks for
    // TLBI_NH_VA with VMID 0, as a guest does: the host forces the parent's VMID.
    out.fill(0);
    let mut gather = Gather::new();
    let unmapped = guest.table.unmap(Iova(IOVA_DST), 4096, &mut gather)?;
    let tlbi = Command::TlbiNhVa {
        vmid: 0,
        asid: GUEST_ASID,
        va: TlbiAddr {
            addr: IOVA_DST,
            leaf: true,
            range: TlbiRange::SINGLE,
        },
    };
    let how = if cfg!(feature = "broken-skip-tlbi") {
        // The broken variant: no invalidation at all.
        "no invalidation (broken-skip-tlbi)"
    } else if cfg!(feature = "broken-nested-vmid") {
        // The broken variant: the guest's command issued as written, VMID 0.
        smmu.cmdq().issue(smmu.hal(), smmu.regs(), &[tlbi], true)?;
        "TLBI_NH_VA issued raw with VMID 0 (broken-nested-vmid)"
    } else {
        smmu.guest_invalidate(&nested, &[tlbi.encode().to_words()])?;
        "TLBI_NH_VA through guest_invalidate (VMID 0 -> the parent's)"
    };
    dma_err(dev.write_to(0, IOVA_DST, 64));
    let d = drain(smmu);
    let untouched = out.iter().all(|&b| b == 0);
    let faulted = matches!(
        d.first(),
        Some(EventReport::Event(Event::Translation(t)))
            if t.fault.input_addr == IOVA_DST && !t.fault.stage2
    );
    v.check(
        "guest unmap invalidates",
        unmapped == 4096 && untouched && faulted,
        format_args!(
            "guest unmapped {unmapped:#x} bytes at IOVA {IOVA_DST:#x}, {how}; DMA to it: memory \
                untouched {untouched}, {} event(s), first {}",
            d.count,
            Show(d.first())
        ),
    );

    // The host unmaps IPA_PARENT (the combined entry for IOVA_PARENT is live from the write
    // above): Smmu::unmap sends TLBI_S2_IPA and TLBI_NH_ALL(VMID).
    bytes(parent_page.pa.0, 4096).fill(0);
    let before = smmu.cmdq().stats().commands;
    let (unmapped, how) = if cfg!(feature = "broken-parent-no-nh-all") {
        // The broken variant: TLBI_S2_IPA alone, which may leave combined entries (§4.4.3.1).
        let mut gather = Gather::new();
        let n = parent.table().unmap(Iova(IPA_PARENT), 4096, &mut gather)?;
        let s2_ipa = Command::TlbiS2Ipa {
            vmid: parent.id(),
            ipa: TlbiAddr {
                addr: IPA_PARENT,
                leaf: true,
                range: TlbiRange::SINGLE,
            },
        };
        smmu.cmdq()
            .issue(smmu.hal(), smmu.regs(), &[s2_ipa], true)?;
        (n, "TLBI_S2_IPA alone (broken-parent-no-nh-all)")
    } else {
        (
            smmu.unmap(&parent, Iova(IPA_PARENT), 4096)?,
            "Smmu::unmap on the nesting parent",
        )
    };
    let commands = smmu.cmdq().stats().commands - before;
    dma_err(dev.write_to(0, IOVA_PARENT, 64));
    let d = drain(smmu);
    let untouched = bytes(parent_page.pa.0, 4096).iter().all(|&b| b == 0);
    let faulted = matches!(
        d.first(),
        Some(EventReport::Event(Event::Translation(t)))
            if t.fault.input_addr == IOVA_PARENT && t.fault.stage2
    );
    v.check(
        "parent unmap invalidates",
        unmapped == 4096 && untouched && faulted,
        format_args!(
            "parent unmapped {unmapped:#x} bytes at IPA {IPA_PARENT:#x} with {how} ({commands} \
                command(s) with the sync); DMA to IOVA {IOVA_PARENT:#x}: memory untouched \
                {untouched}, {} event(s), first {}",
            d.count,
            Show(d.first())
        ),
    );

    // Detach: abort, silently; then the nested domain can go.
    bytes(src.pa.0, 4096).fill(0);
    smmu.detach(master)?;
    dma_err(dev.write_to(0, IOVA_SRC, 64));
    let d = drain(smmu);
    let untouched = bytes(src.pa.0, 4096).iter().all(|&b| b == 0);
    let attachment = smmu.attachment(master)?;
    let freed = smmu.free_nested_domain(nested).map_err(|(e, _)| e);
    v.check(
        "detach leaves abort",
        attachment == Attachment::Blocked && untouched && d.count == 0 && freed.is_ok(),
        format_args!(
            "attachment {attachment:?}, memory untouched {untouched}, {} event(s); nested domain \
                freed {freed:?}",
            d.count
        ),
    );

    // A protected master (SPEC D9, D13): a nested domain on an unprotected parent is refused.
    let gpu_master = smmu.add_master(&MasterConfig {
        sids: &[gpu_sid],
        protected: true,
        ats: false,
        stall: false,
        ssid_bits: 0,
    })?;
    let nested = smmu.new_nested_domain(&parent, &ste)?;
    let refused = smmu.attach_nested(gpu_master, &nested);
    let attachment = smmu.attachment(gpu_master)?;
    dma_err(gpu.write_to(0, IOVA_SRC, 8));
    let untouched = bytes(src.pa.0, 4096).iter().all(|&b| b == 0);
    v.check(
        "protected master confined",
        matches!(refused, Err(Error::Protected(_)))
            && attachment == Attachment::Initial
            && untouched,
        format_args!(
            "nested domain on an unprotected parent: {refused:?}; attachment {attachment:?}; its \
                DMA to IOVA {IOVA_SRC:#x} reached memory {}",
            !untouched
        ),
    );
    let _ = drain(smmu);
    Ok(())
}

/// The `--stage` argument on the machine's command line (`cargo run -- --stage 2`).
fn read_stage() -> Result<Stage, &'static str> {
    let mut buf = [0u8; 256];
    let line = verdict::command_line(&mut buf).unwrap_or("");
    let mut stage = Stage::default();
    // QEMU's semihosting command line is the image's path, then `-append`'s text.
    let mut words = line
        .split_ascii_whitespace()
        .skip_while(|w| !w.starts_with("--"));
    while let Some(w) = words.next() {
        match w {
            "--stage" => stage = Stage::parse(words.next())?,
            _ => return Err("unknown argument (expected --stage 1|2|nested)"),
        }
    }
    Ok(stage)
}

/// A domain of the run's stage: one arm per stage.
fn new_domain(
    smmu: &mut Driver,
    stage: Stage,
    protected: bool,
    carve: &'static Carveout,
) -> Result<Domain<&'static Carveout>, Error> {
    match stage {
        Stage::One => smmu.new_domain(DomainStage::Stage1, protected, carve),
        Stage::Two => smmu.new_domain(DomainStage::Stage2, protected, carve),
        // TODO(nested domains): a nested domain on a stage-2 nesting parent. Refused in
        // `main` before anything runs.
        Stage::Nested => Err(Error::Unsupported("nested domains")),
    }
}

/// The `broken-skip-tlbi` variant's unmap: clears the leaf descriptor of `iova` behind the
/// driver's back, with no TLB invalidation. The SMMU keeps using its cached translation.
fn clear_leaf_without_tlbi(domain: &Domain<&Carveout>, iova: u64) -> u64 {
    let mut leaf_table = None;
    domain.table().walk(|e| {
        if let smmu_pagetable::WalkEntry::Table {
            iova: t,
            span,
            level: 3,
            table,
            ..
        } = *e
        {
            if (t.0..t.0 + span).contains(&iova) {
                leaf_table = Some((t.0, table.0));
            }
        }
    });
    let Some((base, table)) = leaf_table else {
        return 0;
    };
    let pte = table + ((iova - base) >> 12) * 8;
    // SAFETY: `pte` is the level-3 descriptor of `iova` in a table page of the carve-out
    // (identity-mapped); a single aligned 64-bit store, as the driver's own unmap does.
    unsafe { (pte as usize as *mut u64).write_volatile(0) };
    4096
}

fn dma_err(r: Result<(), edu::EduError>) {
    if let Err(e) = r {
        println!("edu DMA: {e:?}");
    }
}

fn idr(regs: &Mmio, n: usize) -> u32 {
    regs.read32(smmu::arch::regs::offset::IDR0 + 4 * n)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("FAIL panic: {info}");
    verdict::exit(101)
}

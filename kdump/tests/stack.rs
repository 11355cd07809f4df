//! The crash kernel's bring-up fits a crash kernel's stack: [`smmu_kdump::boot_in`] is
//! measured, on the model, in every way it can end (adopted, refused and reset, abandoned),
//! and must stay within the bound its documentation states.
//!
//! What is measured is the driver's own stack: the distance from the caller's frame down to
//! the deepest point at which the driver calls its platform (every register access and every
//! HAL call is sampled). The platform's own frames are the platform's business (on hardware a
//! register access is one load; here it runs the model), and every frame of the driver, with
//! every temporary in it, lies above some platform call, so it is counted. A big value built
//! on the stack and moved into the slot (the bug this guards against: the driver and its
//! adopted table are about 100 KiB) shows up as that many bytes.
//!
//! The bound is checked in whatever profile the test runs in: `cargo test` (opt-level 1 for
//! tests in this workspace) and `cargo test --release` against the optimised bound; CI also
//! runs it at opt-level 0 (`CARGO_PROFILE_TEST_OPT_LEVEL=0 SMMU_STACK_OPT_LEVEL=0`) against
//! the unoptimised one.

use std::cell::Cell;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use smmu::{DmaRegion, Hal, HalError, MapAttr, PhysAddr, PhysRange, RegisterAccess};
use smmu_kdump::{boot_in, AdoptOptions, AdoptPlatform, CrashDriver, Verdict};
use smmu_model_platform::kdump_scenario::{crash, OldKernel};
use smmu_model_platform::platform::{ModelHal, ModelRegs};

/// The documented bounds (`boot_in`'s docs): bytes of stack the bring-up may use, optimised
/// (opt-level 1 and up: the test profile, release) and unoptimised (opt-level 0, where every
/// temporary of every frame keeps its own slot). Measured when they were set: 7.7 KiB in
/// release, 8 KiB at opt-level 1, 29 KiB at opt-level 0 (adopted; the refused-then-reset path
/// uses less), against 110 KiB and 750 KiB for the by-value `boot`.
const BOUND_OPTIMISED: usize = 16 << 10;
const BOUND_UNOPTIMISED: usize = 48 << 10;

thread_local! {
    /// The lowest stack address seen at a platform call since the last `reset`.
    static LOWEST: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Records the current stack depth: the address of a local of this (never inlined) frame.
#[inline(never)]
fn sample() {
    let here = stack_address();
    LOWEST.with(|l| l.set(l.get().min(here)));
}

/// The address of a local of the calling frame (inlined into it): where its stack is now.
#[inline(always)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::ptr::from_ref(black_box(&marker)) as usize
}

/// The model's registers, sampled at every access.
#[derive(Clone)]
struct Probed<T>(T);

impl RegisterAccess for Probed<ModelRegs> {
    fn read32(&self, offset: usize) -> u32 {
        sample();
        self.0.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        sample();
        self.0.write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        sample();
        self.0.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        sample();
        self.0.write64(offset, value);
    }
}

// SAFETY: every call forwards to the model's HAL, whose contract this inherits unchanged.
unsafe impl Hal for Probed<ModelHal> {
    fn dma_alloc(&self, size: usize, align: usize) -> Result<DmaRegion, HalError> {
        sample();
        self.0.dma_alloc(size, align)
    }
    unsafe fn dma_free(&self, region: DmaRegion) {
        sample();
        // SAFETY: forwarded from the caller.
        unsafe { self.0.dma_free(region) }
    }
    fn map_phys(&self, pa: PhysAddr, size: usize, attr: MapAttr) -> Result<NonNull<u8>, HalError> {
        sample();
        self.0.map_phys(pa, size, attr)
    }
    unsafe fn unmap_phys(&self, va: NonNull<u8>, size: usize) {
        sample();
        // SAFETY: forwarded from the caller.
        unsafe { self.0.unmap_phys(va, size) }
    }
    fn is_ram(&self, pa: PhysAddr, size: u64) -> bool {
        sample();
        self.0.is_ram(pa, size)
    }
    fn clean_dcache(&self, va: NonNull<u8>, size: usize) {
        sample();
        self.0.clean_dcache(va, size);
    }
    fn invalidate_dcache(&self, va: NonNull<u8>, size: usize) {
        sample();
        self.0.invalidate_dcache(va, size);
    }
    fn has_cache_maintenance(&self) -> bool {
        self.0.has_cache_maintenance()
    }
    fn shared_windows(&self) -> &[PhysRange] {
        self.0.shared_windows()
    }
    unsafe fn store_entry_qword(&self, va: NonNull<u64>, value: u64) {
        sample();
        // SAFETY: forwarded from the caller.
        unsafe { self.0.store_entry_qword(va, value) }
    }
    fn relax(&self) {
        sample();
        self.0.relax();
    }
}

type Driver = CrashDriver<Probed<ModelRegs>, Probed<ModelHal>>;

/// Bytes of stack `boot_in` used below its caller's frame, and its verdict.
fn measure(regs: ModelRegs, hal: ModelHal, platform: &AdoptPlatform) -> (usize, Verdict) {
    // The driver's memory: a heap slot, as a kernel's would be a static or a page.
    let mut slot: Box<MaybeUninit<Driver>> = Box::new_uninit();
    LOWEST.with(|l| l.set(usize::MAX));
    let top = stack_address();
    let booted = run(&mut slot, regs, hal, platform);
    let lowest = LOWEST.with(Cell::get);
    (top.saturating_sub(lowest), booted)
}

/// The call being measured, in a frame of its own.
#[inline(never)]
fn run(
    slot: &mut MaybeUninit<Driver>,
    regs: ModelRegs,
    hal: ModelHal,
    platform: &AdoptPlatform,
) -> Verdict {
    let booted = boot_in(
        slot,
        Probed(regs),
        Probed(hal),
        platform,
        &AdoptOptions::default(),
    )
    .expect("the crash kernel comes up");
    booted.verdict
}

fn bound() -> usize {
    // CI runs this file at opt-level 0 too and says so (`.ci/run`).
    if option_env!("SMMU_STACK_OPT_LEVEL") == Some("0") {
        BOUND_UNOPTIMISED
    } else {
        BOUND_OPTIMISED
    }
}

fn crash_platform(adopt: bool) -> AdoptPlatform {
    AdoptPlatform {
        // Not a crash kernel: adoption is refused and the full reset runs (SPEC K1).
        crash_kernel: adopt,
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    }
}

// spec: K15
#[test]
fn the_crash_bring_up_adopts_within_its_stack_bound() {
    let crashed = crash(&OldKernel::grace(7)).unwrap();
    let p = &crashed.platform;
    let (used, verdict) = measure(p.regs(), p.hal(), &crash_platform(true));
    assert!(matches!(verdict, Verdict::Adopted { .. }), "{verdict:?}");
    println!(
        "boot_in, adopted: {used} bytes of stack (bound {})",
        bound()
    );
    assert!(used > 0, "the probe saw the driver call its platform");
    assert!(used <= bound(), "{used} bytes of stack, bound {}", bound());
}

// spec: K4, K15
#[test]
fn the_crash_bring_up_resets_within_its_stack_bound() {
    let crashed = crash(&OldKernel::grace(8)).unwrap();
    let p = &crashed.platform;
    let (used, verdict) = measure(p.regs(), p.hal(), &crash_platform(false));
    assert!(matches!(verdict, Verdict::FullReset(_)), "{verdict:?}");
    println!(
        "boot_in, refused then reset: {used} bytes of stack (bound {})",
        bound()
    );
    assert!(used <= bound(), "{used} bytes of stack, bound {}", bound());
}

/// The measurement sees a large value on the stack: the by-value `boot`, which moves the
/// whole driver (about 100 KiB) out of its frame, measures far above the bound. (This is the
/// deliberately broken variant: a crash path that builds the driver by value.)
#[test]
fn a_by_value_bring_up_is_caught_by_the_measurement() {
    let crashed = crash(&OldKernel::grace(9)).unwrap();
    let p = &crashed.platform;
    LOWEST.with(|l| l.set(usize::MAX));
    let top = stack_address();
    let booted = by_value(p.regs(), p.hal());
    let used = top.saturating_sub(LOWEST.with(Cell::get));
    assert!(matches!(booted, Verdict::Adopted { .. }), "{booted:?}");
    println!("boot (by value): {used} bytes of stack");
    assert!(
        used > 4 * bound(),
        "the by-value driver ({} bytes) was not seen: {used} bytes",
        std::mem::size_of::<Driver>()
    );
}

#[inline(never)]
fn by_value(regs: ModelRegs, hal: ModelHal) -> Verdict {
    let booted = smmu_kdump::boot(
        Probed(regs),
        Probed(hal),
        &crash_platform(true),
        &AdoptOptions::default(),
    )
    .expect("boot");
    let verdict = booted.verdict;
    // Keep the driver's buffers (the model may still use them), as a crash kernel would.
    std::mem::forget(booted);
    verdict
}

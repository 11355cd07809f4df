//! Crash-kernel adoption over arbitrary registers and memory (SPEC B1, B2, K2, K3, K14, K15):
//! the validator never panics, reads only the ranges the registers and descriptors describe,
//! and adopts only tables that an independent re-check finds valid. The same entry point runs
//! as a property test in `smmu-kdump`.
//!
//! Built with `--no-trace-compares` and run with ASan's stack-use-after-return detection off
//! (below); `fuzz/README.md` says why.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = smmu_kdump::fuzzing::validate_image(data);
});

/// AddressSanitizer's run-time defaults for this target (`ASAN_OPTIONS` still overrides
/// them): everything on but stack-use-after-return detection, which gives every call of a
/// function with an address-taken local (any `assert_eq!`, any formatted panic) a frame of
/// its own off the stack: a fifth to a third of this target's time. Safe Rust cannot return
/// a pointer into a dead frame, and the unsafe code this target reaches (DMA buffers, tables
/// built in place) hands out no stack addresses and runs under Miri in the crates' tests.
#[no_mangle]
pub extern "C" fn __asan_default_options() -> *const core::ffi::c_char {
    c"detect_stack_use_after_return=0".as_ptr()
}

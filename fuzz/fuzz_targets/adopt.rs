//! Crash-kernel adoption over arbitrary registers and memory (SPEC B1, B2, K2, K3, K14, K15):
//! the validator never panics, reads only the ranges the registers and descriptors describe,
//! and adopts only tables that an independent re-check finds valid. The same entry point runs
//! as a property test in `smmu-kdump`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = smmu_kdump::fuzzing::validate_image(data);
});

//! Fuzz the model's structure fetches: arbitrary L1STD, STE, CD and table bytes (SPEC B1/B2).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = smmu_model::fuzzing::run_fetch(data);
});

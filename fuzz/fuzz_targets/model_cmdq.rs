//! Fuzz the model's command-queue consumption with arbitrary command bytes (SPEC B1/B2).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = smmu_model::fuzzing::run_cmdq(data);
    let _ = smmu_model::fuzzing::run_regs(data);
});

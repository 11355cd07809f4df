//! End-to-end scenarios for smmuv3-rs on the SMMUv3 model.
//!
//! The library part is the platform the scenarios run the driver on: [`ModelPlatform`] builds
//! an [`smmu_model::Model`] whose RAM is a host arena, and hands out the driver's register
//! access ([`ModelRegs`]) and HAL ([`ModelHal`]) while the test keeps the model to step time
//! and check the violation log. A HAL of your own runs on the model wrapped in [`Stepping`],
//! which steps the model in `relax` (the model advances only when stepped).
//!
//! ```
//! use smmu_model::{ModelConfig, Profile};
//! use smmu_model_platform::ModelPlatform;
//!
//! let platform = ModelPlatform::new(ModelConfig::hostile(Profile::qemu_virt(), 1)).unwrap();
//! let (regs, hal, model) = (platform.regs(), platform.hal(), platform.model().clone());
//! # let _ = (regs, hal);
//! assert!(model.with(|m| m.violations().is_empty()));
//! ```

pub mod faults;
pub mod kdump_scenario;
pub mod platform;
pub mod realm;
pub mod realm_oracle;
pub mod realm_scenario;
pub mod rig;
pub mod stepping;
pub mod tables;

pub use platform::{
    CacheEvent, HalStats, Mapping, ModelHal, ModelPlatform, ModelRegs, DEFAULT_RAM_BYTES,
};
pub use stepping::Stepping;

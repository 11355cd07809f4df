//! The end-to-end scenarios of smmuv3-rs, on the SMMUv3 model (`tests/*.rs`): this crate holds
//! tests only. The platform they run the driver on is the crate `smmu-model-platform`,
//! re-exported here under this crate's old paths (`smmu_scenarios::rig`, `::platform`, …) for
//! one release.

pub use smmu_model_platform::*;

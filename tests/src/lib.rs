//! End-to-end scenarios for smmuv3-rs on the SMMUv3 model.

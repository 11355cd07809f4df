//! A bit-accurate, strict Arm SMMUv3 model.

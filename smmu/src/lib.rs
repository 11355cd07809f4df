//! Arm SMMUv3 encodings and driver core.
#![no_std]

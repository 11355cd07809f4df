//! Crash-kernel adoption of a live Arm SMMUv3.
#![no_std]

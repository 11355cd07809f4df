//! Arm SMMUv3 encodings and driver core.
//!
//! `no_std`, no `alloc`. The crate is organised in rooms:
//! - [`arch`]: the architected encodings — registers, ID registers, STE, CD, L1STD, L1CD,
//!   commands, event and PRI records — each with a typed builder and a validating decoder;
//! - [`access`]: the register-access trait and its volatile-MMIO implementation;
//! - [`hal`]: the platform services the driver needs (DMA memory, foreign mappings, cache
//!   maintenance, shared windows for protected DMA).
//!
//! ```
//! use smmu::arch::ste::{SteConfig, Ste};
//!
//! // A bypass STE as it sits in memory, and back.
//! let ste: Ste = SteConfig::BYPASS.encode();
//! assert_eq!(ste.to_words()[0], 0x9); // V = 1, Config = 0b100
//! assert_eq!(ste.decode(), Ok(Some(SteConfig::BYPASS)));
//! ```
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

// The `arbitrary` derive (tests and fuzzing, on the host) names `::std`.
#[cfg(any(test, feature = "arbitrary"))]
extern crate std;

pub mod access;
pub mod arch;
pub mod cdtab;
pub mod cmdq;
#[cfg(test)]
mod construct_tests;
pub mod dma;
pub mod domain;
mod driver;
mod error;
pub mod evtq;
pub mod hal;
pub mod ids;
pub mod inval;
pub mod policy;
pub mod poll;
pub mod probe;
pub mod reset;
pub mod strtab;
#[cfg(test)]
mod testutil;
pub mod writer;

pub use access::{Mmio, RegisterAccess};
pub use domain::{Domain, DomainStage};
pub use driver::{
    Attachment, GbpaPolicy, MasterConfig, MasterId, Smmu, SmmuConfig, MAX_MASTERS,
    MAX_SIDS_PER_MASTER,
};
pub use error::{CommandFault, Error, ProbeError, WaitFor};
pub use hal::{DmaRegion, Hal, HalError, Iova, MapAttr, PhysAddr, PhysRange};
pub use reset::{OnFailure, ResetPlan, ResetStep};
pub use strtab::{OwnedStreamTable, StreamTable};

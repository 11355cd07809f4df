//! The entry writer (SPEC D4): hitless ("used-bits") updates of live STEs and CDs.
//!
//! The SMMU reads an STE or a CD with 64-bit single-copy atomicity per word but in no defined
//! order, and may cache it at any time until a CFGI + CMD_SYNC completes. Software therefore
//! cannot rewrite a live entry word by word and expect the SMMU to see either the old or the
//! new one, unless it orders the stores around what the hardware actually reads:
//!
//! 1. [`ste_used_bits`] / [`cd_used_bits`] say which bits an entry's own configuration makes
//!    the SMMU read; every other bit may hold anything. [`ste_update_safe`] names the few used
//!    bits whose change is harmless in any order.
//! 2. [`plan`] substitutes the target's value into every bit the current entry does not use
//!    and counts the words that still differ in bits the target uses: the *critical* words.
//! 3. [`write_entry`] follows the plan: with one critical word the entry is switched by a single
//!    64-bit store, between a step that fills the bits the old configuration ignores and a step
//!    that clears the bits the new one ignores (the entry never becomes invalid); with two or
//!    more it is invalidated (word 0 zeroed), rewritten, and validated. Every step that stores
//!    something is followed by one [`EntrySlot::sync`].
//!
//! The driver's [`EntrySlot`] stores to the STE or CD in DMA memory and issues CFGI + CMD_SYNC;
//! [`check::CheckedSlot`] stores to an array and checks, at every store and sync, that the SMMU
//! could only have fetched something that behaves like the old or the new entry.
//!
//! ```
//! use smmu::writer::{make, write_entry, check::CheckedSlot, SteRules, WritePath};
//!
//! let features = make::EntryFeatures { attr_types_ovr: true, ..Default::default() };
//! let bypass = make::ste_image(&make::bypass_ste(features));
//! let abort = make::ste_image(&make::abort_ste());
//!
//! let mut slot = CheckedSlot::new(&SteRules, bypass, abort);
//! let report = write_entry(&SteRules, &mut slot, &abort).unwrap();
//! assert_eq!(report.path, WritePath::Hitless { critical: 0 });
//! assert_eq!(report.syncs, 2); // switch Config, then clear SHCFG
//! assert_eq!(slot.image(), abort);
//! assert!(slot.violation.is_none() && !slot.invalid_seen);
//! ```

pub mod check;
pub mod make;
mod used;
mod write;

pub use used::{cd_used_bits, cd_used_bits_with, ste_update_safe, ste_used_bits, ENTRY_QWORDS};
pub use write::{
    behaves_like, plan, write_entry, CdRules, EntryRules, EntrySlot, Plan, SteRules, WriteError,
    WritePath, WriteReport,
};

#[cfg(test)]
mod tests;

//! Architected encodings of the SMMUv3 (IHI 0070 G.b): registers, ID registers, and every
//! in-memory structure the driver writes or reads.
//!
//! One place owns each bit. Register fields are `tock-registers` definitions in [`regs`];
//! structure fields are [`Field`] constants in each structure's `fields` module. Every
//! structure has a typed builder (`encode`) and a validating decoder (`decode`) whose errors
//! name the offending field.

pub mod cd;
pub mod cmd;
mod entry;
pub mod event;
mod field;
pub mod idr;
pub mod l1std;
pub mod pri;
pub mod queue;
pub mod regs;
pub mod ste;

pub use entry::{AddressSize, Cacheability, DecodeError, Granule, Shareability};
pub use field::Field;

#[cfg(test)]
mod tests;

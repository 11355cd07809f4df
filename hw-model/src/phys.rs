//! Physical addresses: the page size and the memory errors every layer above reports.

use core::fmt;

/// Size of a backing page.
pub const PAGE: u64 = 4096;

/// A physical-memory error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemError {
    /// The access touches an address that is not RAM given to the model.
    NotRam {
        /// First faulting physical address.
        pa: u64,
    },
    /// Backing the access would exceed the configured byte limit.
    LimitExceeded {
        /// The limit in bytes.
        limit: u64,
    },
    /// A fault injected by the test (`inject_fetch_fault` / `inject_write_fault`).
    Injected {
        /// First faulting physical address.
        pa: u64,
    },
    /// A Granule Protection Check failed (§3.25): the granule belongs to another PA space.
    GranuleProtection {
        /// First faulting physical address.
        pa: u64,
    },
    /// The DMA pool cannot satisfy an allocation.
    PoolExhausted {
        /// Bytes requested.
        bytes: u64,
    },
    /// An argument is malformed (zero pages, non-power-of-two alignment, address overflow).
    BadArgument,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRam { pa } => {
                write!(f, "physical address {pa:#x} is not RAM given to the model")
            }
            Self::LimitExceeded { limit } => write!(f, "memory limit of {limit} bytes exceeded"),
            Self::Injected { pa } => write!(f, "injected external abort at {pa:#x}"),
            Self::GranuleProtection { pa } => {
                write!(f, "granule protection fault at {pa:#x}")
            }
            Self::PoolExhausted { bytes } => write!(f, "DMA pool cannot allocate {bytes} bytes"),
            Self::BadArgument => write!(f, "bad argument"),
        }
    }
}

impl std::error::Error for MemError {}

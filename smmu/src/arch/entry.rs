//! The little-endian word arrays every in-memory structure is made of, and the typed values
//! several structures share.

use core::fmt;

/// Declares a `#[repr(transparent)]` zerocopy structure of `N` little-endian 64-bit words.
macro_rules! words_struct {
    ($(#[$meta:meta])* $name:ident, $n:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, Default,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable,
        )]
        #[repr(transparent)]
        pub struct $name(pub [zerocopy::little_endian::U64; $n]);

        impl $name {
            /// Number of 64-bit words.
            pub const WORDS: usize = $n;
            /// Size in bytes.
            pub const SIZE: usize = $n * 8;

            /// Builds the structure from native words, lowest-addressed first.
            pub fn from_words(words: [u64; $n]) -> Self {
                Self(words.map(zerocopy::little_endian::U64::new))
            }

            /// The native words, lowest-addressed first.
            pub fn to_words(&self) -> [u64; $n] {
                self.0.map(zerocopy::little_endian::U64::get)
            }

            /// Reads the structure from the start of `bytes` (little-endian, as in memory).
            pub fn read_from_bytes(bytes: &[u8]) -> Result<Self, $crate::arch::DecodeError> {
                <Self as zerocopy::FromBytes>::read_from_prefix(bytes)
                    .map(|(s, _)| s)
                    .map_err(|_| $crate::arch::DecodeError::Truncated {
                        structure: stringify!($name),
                        needed: $n * 8,
                        got: bytes.len(),
                    })
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "["))?;
                for (i, w) in self.to_words().iter().enumerate() {
                    if i != 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{w:#018x}")?;
                }
                f.write_str("]")
            }
        }
    };
}
pub(crate) use words_struct;

/// Why a structure could not be decoded into a typed configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A field holds an encoding the specification reserves.
    Reserved {
        /// The structure (`STE`, `CD`, `L1STD`, `CMD_SYNC`, …).
        structure: &'static str,
        /// The field, by its specification name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A field holds a value this crate does not model (e.g. an AArch32 table format).
    Unsupported {
        /// The structure.
        structure: &'static str,
        /// The field, by its specification name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// Fewer bytes than the structure needs.
    Truncated {
        /// The structure.
        structure: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Reserved {
                structure,
                field,
                value,
            } => {
                write!(f, "{structure}.{field} = {value:#x} is a reserved encoding")
            }
            DecodeError::Unsupported {
                structure,
                field,
                value,
            } => {
                write!(f, "{structure}.{field} = {value:#x} is not supported")
            }
            DecodeError::Truncated {
                structure,
                needed,
                got,
            } => {
                write!(f, "{structure} needs {needed} bytes, got {got}")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// Declares a field-value enum with its encoding, a decoder that names reserved values, and a
/// human description for printers.
macro_rules! encoded_enum {
    (
        $(#[$meta:meta])*
        $name:ident in $structure:literal . $field:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $desc:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in encoding order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The field encoding.
            pub const fn encode(self) -> u64 {
                match self { $($name::$variant => $value),+ }
            }

            /// Decodes the field; a value outside the list is reserved.
            pub const fn decode(value: u64) -> Result<Self, $crate::arch::DecodeError> {
                match value {
                    $($value => Ok($name::$variant),)+
                    _ => Err($crate::arch::DecodeError::Reserved {
                        structure: $structure,
                        field: $field,
                        value,
                    }),
                }
            }

            /// What the encoding means, in the specification's words.
            pub const fn describe(self) -> &'static str {
                match self { $($name::$variant => $desc),+ }
            }
        }
    };
}
pub(crate) use encoded_enum;

encoded_enum! {
    /// Shareability of a walk or access (`SH0`, `S1CSH`, `S2SH0`; IHI 0070 G.b §5.2, §5.4).
    Shareability in "STE/CD" . "SH" {
        /// Non-shareable.
        NonShareable = 0 => "non-shareable",
        /// Outer Shareable.
        Outer = 2 => "outer shareable",
        /// Inner Shareable.
        Inner = 3 => "inner shareable",
    }
}

encoded_enum! {
    /// Cacheability of table walks (`IR0`/`OR0`, `S1CIR`/`S1COR`, `S2IR0`/`S2OR0`; §5.2, §5.4).
    Cacheability in "STE/CD" . "RGN" {
        /// Non-cacheable.
        NonCacheable = 0 => "non-cacheable",
        /// Write-back, read-allocate, write-allocate.
        WriteBackAllocate = 1 => "write-back read/write-allocate",
        /// Write-through, read-allocate.
        WriteThrough = 2 => "write-through read-allocate",
        /// Write-back, read-allocate, no write-allocate.
        WriteBackNoWriteAllocate = 3 => "write-back read-allocate no-write-allocate",
    }
}

encoded_enum! {
    /// Translation granule in the `TG0` / `S2TG` encoding (§5.2, §5.4).
    Granule in "STE/CD" . "TG0" {
        /// 4 KiB.
        Size4K = 0 => "4KB",
        /// 64 KiB.
        Size64K = 1 => "64KB",
        /// 16 KiB.
        Size16K = 2 => "16KB",
    }
}

impl Granule {
    /// log2 of the granule size in bytes.
    pub const fn shift(self) -> u32 {
        match self {
            Granule::Size4K => 12,
            Granule::Size16K => 14,
            Granule::Size64K => 16,
        }
    }
}

encoded_enum! {
    /// Physical or intermediate address size (`IPS`, `S2PS`; the `SMMU_IDR5.OAS` encoding).
    AddressSize in "STE/CD" . "PS" {
        /// 32 bits (4 GiB).
        Bits32 = 0 => "32 bits",
        /// 36 bits (64 GiB).
        Bits36 = 1 => "36 bits",
        /// 40 bits (1 TiB).
        Bits40 = 2 => "40 bits",
        /// 42 bits (4 TiB).
        Bits42 = 3 => "42 bits",
        /// 44 bits (16 TiB).
        Bits44 = 4 => "44 bits",
        /// 48 bits (256 TiB).
        Bits48 = 5 => "48 bits",
        /// 52 bits (4 PiB, SMMUv3.1+).
        Bits52 = 6 => "52 bits",
        /// 56 bits (SMMUv3.4+ with 128-bit descriptors).
        Bits56 = 7 => "56 bits",
    }
}

impl AddressSize {
    /// The size in bits.
    pub const fn bits(self) -> u32 {
        match self {
            AddressSize::Bits32 => 32,
            AddressSize::Bits36 => 36,
            AddressSize::Bits40 => 40,
            AddressSize::Bits42 => 42,
            AddressSize::Bits44 => 44,
            AddressSize::Bits48 => 48,
            AddressSize::Bits52 => 52,
            AddressSize::Bits56 => 56,
        }
    }

    /// The encoding for a size in bits, if it is one of the architected sizes.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        Some(match bits {
            32 => AddressSize::Bits32,
            36 => AddressSize::Bits36,
            40 => AddressSize::Bits40,
            42 => AddressSize::Bits42,
            44 => AddressSize::Bits44,
            48 => AddressSize::Bits48,
            52 => AddressSize::Bits52,
            56 => AddressSize::Bits56,
            _ => return None,
        })
    }
}

//! The register catalogue: every register of pages 0 and 1 with its offset, page, width and
//! fields as IHI 0070 G.b chapter 6 names them, and the meanings of enumerated values, for
//! decoders (`smmuctl decode reg`) and for the check against `smmuv3-fields.json`. The
//! bitfield definitions it describes are in the parent module, the only place that knows
//! where a field sits.

use super::*;

/// Access width of a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegWidth {
    /// A 32-bit register.
    W32,
    /// A 64-bit register.
    W64,
}

/// One field of a register, as the specification names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegFieldInfo {
    /// The field's name in IHI 0070 G.b (e.g. `ST_LEVEL`, `Hyp`, `Update`).
    pub name: &'static str,
    /// Lowest bit of the field.
    pub shift: u32,
    /// Mask of the field after shifting it down to bit 0.
    pub mask: u64,
    /// What the field's value stands for, so that a decoder can say it in words.
    pub kind: RegFieldKind,
}

/// What a register field's value stands for (IHI 0070 G.b §6.3, each field's description).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegFieldKind {
    /// A number, an index or a flag: the value is its own meaning.
    Value,
    /// Bits `[hi:shift]` of an address, held at their own bit positions (`ADDR[55:6]` in bits
    /// \[55:6\]): the address is the field's bits in place, the bits below `shift` zero.
    Address,
    /// An enumeration: each architected value with its meaning; any other value is reserved.
    Enum(&'static [(u64, &'static str)]),
    /// A count given as its log2: the value N stands for 2^N of the unit named here.
    Log2(&'static str),
}

/// What one register field's value means, printable with `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldMeaning {
    /// The specification's words for an enumerated value.
    Text(&'static str),
    /// A value an enumeration does not list.
    Reserved,
    /// An address: the field's bits in place.
    Address(u64),
    /// 2^`log2` of `unit`.
    Pow2 {
        /// The field's value.
        log2: u64,
        /// What is counted (`entries`, `StreamIDs`, …).
        unit: &'static str,
    },
}

impl core::fmt::Display for FieldMeaning {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FieldMeaning::Text(t) => f.write_str(t),
            FieldMeaning::Reserved => f.write_str("reserved"),
            FieldMeaning::Address(a) => write!(f, "address {a:#x}"),
            FieldMeaning::Pow2 { log2, unit } => match 1u64.checked_shl(log2 as u32) {
                Some(n) if log2 < 64 => write!(f, "2^{log2} = {n} {unit}"),
                _ => write!(f, "2^{log2} {unit}"),
            },
        }
    }
}

impl RegFieldInfo {
    /// Highest bit of the field.
    pub const fn hi(&self) -> u32 {
        self.shift + (64 - self.mask.leading_zeros()) - 1
    }

    /// The field's value in a register value.
    pub const fn get(&self, value: u64) -> u64 {
        (value >> self.shift) & self.mask
    }

    /// The field's mask in place within the register.
    pub const fn mask_in_place(&self) -> u64 {
        self.mask << self.shift
    }

    /// For an [`RegFieldKind::Address`] field, the address a register value holds in it.
    pub const fn address(&self, value: u64) -> Option<u64> {
        match self.kind {
            RegFieldKind::Address => Some(value & self.mask_in_place()),
            _ => None,
        }
    }

    /// What the field's value `field_value` (already shifted down) means, if the field is an
    /// address, an enumeration or a log2 count.
    pub fn meaning(&self, field_value: u64) -> Option<FieldMeaning> {
        match self.kind {
            RegFieldKind::Value => None,
            RegFieldKind::Address => Some(FieldMeaning::Address(
                (field_value & self.mask)
                    .checked_shl(self.shift)
                    .unwrap_or(0),
            )),
            RegFieldKind::Enum(list) => Some(
                list.iter()
                    .find(|(v, _)| *v == field_value)
                    .map_or(FieldMeaning::Reserved, |(_, t)| FieldMeaning::Text(t)),
            ),
            RegFieldKind::Log2(unit) => Some(FieldMeaning::Pow2 {
                log2: field_value,
                unit,
            }),
        }
    }
}

/// One register: where it is and what its fields are.
#[derive(Clone, Copy, Debug)]
pub struct RegisterInfo {
    /// Name without the `SMMU_` prefix, as IHI 0070 G.b spells it (e.g. `EVENTQ_PROD`).
    pub name: &'static str,
    /// The other spelling Linux and `smmuv3-fields.json` use, where it differs (`EVTQ_PROD`):
    /// [`RegisterInfo::by_name`] accepts it, so register files written with it still load.
    pub alias: Option<&'static str>,
    /// Offset within its page.
    pub offset: usize,
    /// 0 or 1 (§6.2.2).
    pub page: u8,
    /// Access width.
    pub width: RegWidth,
    /// Section of IHI 0070 G.b that defines the register.
    pub spec: &'static str,
    /// The fields, highest first.
    pub fields: &'static [RegFieldInfo],
}

impl RegisterInfo {
    /// Offset from the SMMU base address, page 1 included.
    pub const fn absolute_offset(&self) -> usize {
        self.offset + self.page as usize * PAGE1_OFFSET
    }

    /// Looks a register up by name (`IDR0`, `SMMU_IDR0`, `EVENTQ_PROD` and its alias
    /// `EVTQ_PROD` all work; case-insensitive).
    pub fn by_name(name: &str) -> Option<&'static RegisterInfo> {
        let bare = strip_prefix_ignore_case(name, "SMMU_");
        REGISTERS.iter().find(|r| {
            r.name.eq_ignore_ascii_case(bare)
                || r.alias.is_some_and(|a| a.eq_ignore_ascii_case(bare))
        })
    }

    /// Bits set in `value` that no field of the register covers: RES0 bits (§6.3, "Reserved,
    /// RES0" in each register's field list), which software must write as zero.
    pub fn res0_bits_set(&self, value: u64) -> u64 {
        let defined = self
            .fields
            .iter()
            .fold(0u64, |acc, f| acc | f.mask_in_place());
        let width_mask = match self.width {
            RegWidth::W32 => u64::from(u32::MAX),
            RegWidth::W64 => u64::MAX,
        };
        value & width_mask & !defined
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> &'a str {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => s.get(prefix.len()..).unwrap_or(s),
        _ => s,
    }
}

macro_rules! rf {
    ($field:expr, $name:literal) => {
        rf!($field, $name, RegFieldKind::Value)
    };
    ($field:expr, $name:literal, $kind:expr) => {
        RegFieldInfo {
            name: $name,
            shift: $field.shift as u32,
            mask: $field.mask as u64,
            kind: $kind,
        }
    };
}

/// The meanings of enumerated register values, in plain words after the field descriptions of
/// IHI 0070 G.b §6.3 (the section of each list is the register's).
mod meaning;

/// Every register of pages 0 and 1, in offset order within each page.
pub const REGISTERS: &[RegisterInfo] = &[
    RegisterInfo {
        name: "IDR0",
        alias: None,
        offset: 0x0,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.1",
        fields: &[
            rf!(IDR0::RME_IMPL, "RME_IMPL"),
            rf!(
                IDR0::ST_LVL,
                "ST_LEVEL",
                RegFieldKind::Enum(meaning::ST_LEVEL)
            ),
            rf!(
                IDR0::TERM_MODEL,
                "TERM_MODEL",
                RegFieldKind::Enum(meaning::TERM_MODEL)
            ),
            rf!(
                IDR0::STALL_MODEL,
                "STALL_MODEL",
                RegFieldKind::Enum(meaning::STALL_MODEL)
            ),
            rf!(IDR0::ATSRECERR, "ATSRECERR"),
            rf!(
                IDR0::TTENDIAN,
                "TTENDIAN",
                RegFieldKind::Enum(meaning::TTENDIAN)
            ),
            rf!(IDR0::VATOS, "VATOS"),
            rf!(IDR0::CD2L, "CD2L"),
            rf!(IDR0::VMID16, "VMID16"),
            rf!(IDR0::VMW, "VMW"),
            rf!(IDR0::PRI, "PRI"),
            rf!(IDR0::ATOS, "ATOS"),
            rf!(IDR0::SEV, "SEV"),
            rf!(IDR0::MSI, "MSI"),
            rf!(IDR0::ASID16, "ASID16"),
            rf!(IDR0::NS1ATS, "NS1ATS"),
            rf!(IDR0::ATS, "ATS"),
            rf!(IDR0::HYP, "Hyp"),
            rf!(IDR0::DORMHINT, "DORMHINT"),
            rf!(IDR0::HTTU, "HTTU", RegFieldKind::Enum(meaning::HTTU)),
            rf!(IDR0::BTM, "BTM"),
            rf!(IDR0::COHACC, "COHACC"),
            rf!(IDR0::TTF, "TTF", RegFieldKind::Enum(meaning::TTF)),
            rf!(IDR0::S1P, "S1P"),
            rf!(IDR0::S2P, "S2P"),
        ],
    },
    RegisterInfo {
        name: "IDR1",
        alias: None,
        offset: 0x4,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.2",
        fields: &[
            rf!(IDR1::ECMDQ, "ECMDQ"),
            rf!(IDR1::TABLES_PRESET, "TABLES_PRESET"),
            rf!(IDR1::QUEUES_PRESET, "QUEUES_PRESET"),
            rf!(IDR1::REL, "REL"),
            rf!(IDR1::ATTR_TYPES_OVR, "ATTR_TYPES_OVR"),
            rf!(IDR1::ATTR_PERMS_OVR, "ATTR_PERMS_OVR"),
            rf!(IDR1::CMDQS, "CMDQS", RegFieldKind::Log2("entries at most")),
            rf!(
                IDR1::EVTQS,
                "EVENTQS",
                RegFieldKind::Log2("entries at most")
            ),
            rf!(IDR1::PRIQS, "PRIQS", RegFieldKind::Log2("entries at most")),
            rf!(
                IDR1::SSIDSIZE,
                "SSIDSIZE",
                RegFieldKind::Log2("SubstreamIDs")
            ),
            rf!(IDR1::SIDSIZE, "SIDSIZE", RegFieldKind::Log2("StreamIDs")),
        ],
    },
    RegisterInfo {
        name: "IDR2",
        alias: None,
        offset: 0x8,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.3",
        fields: &[rf!(IDR2::BA_VATOS, "BA_VATOS")],
    },
    RegisterInfo {
        name: "IDR3",
        alias: None,
        offset: 0xc,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.4",
        fields: &[
            rf!(IDR3::AIE, "AIE"),
            rf!(IDR3::MTEPERM, "MTEPERM"),
            rf!(IDR3::THE, "THE"),
            rf!(IDR3::S2PO, "S2PO"),
            rf!(IDR3::S2PI, "S2PI"),
            rf!(IDR3::S1PI, "S1PI"),
            rf!(IDR3::EPAN, "EPAN"),
            rf!(IDR3::PASIDTT, "PASIDTT"),
            rf!(IDR3::DPT, "DPT"),
            rf!(IDR3::PTWNNC, "PTWNNC"),
            rf!(IDR3::E0PD, "E0PD"),
            rf!(IDR3::BBM, "BBML", RegFieldKind::Enum(meaning::BBML)),
            rf!(IDR3::RIL, "RIL"),
            rf!(IDR3::STT, "STT"),
            rf!(IDR3::FWB, "FWB"),
            rf!(IDR3::MPAM, "MPAM"),
            rf!(IDR3::PPS, "PPS"),
            rf!(IDR3::XNX, "XNX"),
            rf!(IDR3::PBHA, "PBHA"),
            rf!(IDR3::HAD, "HAD"),
        ],
    },
    RegisterInfo {
        name: "IDR4",
        alias: None,
        offset: 0x10,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.5",
        fields: &[rf!(IDR4::IMPLEMENTATION_DEFINED, "IMPLEMENTATION DEFINED")],
    },
    RegisterInfo {
        name: "IDR5",
        alias: None,
        offset: 0x14,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.6",
        fields: &[
            rf!(IDR5::STALL_MAX, "STALL_MAX"),
            rf!(IDR5::VAX, "VAX", RegFieldKind::Enum(meaning::VAX)),
            rf!(IDR5::D128, "D128"),
            rf!(IDR5::DS, "DS"),
            rf!(IDR5::GRAN64K, "GRAN64K"),
            rf!(IDR5::GRAN16K, "GRAN16K"),
            rf!(IDR5::GRAN4K, "GRAN4K"),
            rf!(IDR5::OAS, "OAS", RegFieldKind::Enum(meaning::OAS)),
        ],
    },
    RegisterInfo {
        name: "IIDR",
        alias: None,
        offset: 0x18,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.7",
        fields: &[
            rf!(IIDR::PRODUCTID, "ProductID"),
            rf!(IIDR::VARIANT, "Variant"),
            rf!(IIDR::REVISION, "Revision"),
            rf!(IIDR::IMPLEMENTER, "Implementer"),
        ],
    },
    RegisterInfo {
        name: "AIDR",
        alias: None,
        offset: 0x1c,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.8",
        fields: &[
            rf!(
                AIDR::ARCHMAJORREV,
                "ArchMajorRev",
                RegFieldKind::Enum(meaning::ARCH_MAJOR)
            ),
            rf!(
                AIDR::ARCHMINORREV,
                "ArchMinorRev",
                RegFieldKind::Enum(meaning::ARCH_MINOR)
            ),
        ],
    },
    RegisterInfo {
        name: "CR0",
        alias: None,
        offset: 0x20,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.9",
        fields: &[
            rf!(CR0::DPT_WALK_EN, "DPT_WALK_EN"),
            rf!(CR0::VMW, "VMW", RegFieldKind::Enum(meaning::VMW)),
            rf!(CR0::ATSCHK, "ATSCHK"),
            rf!(CR0::CMDQEN, "CMDQEN"),
            rf!(CR0::EVTQEN, "EVENTQEN"),
            rf!(CR0::PRIQEN, "PRIQEN"),
            rf!(CR0::SMMUEN, "SMMUEN", RegFieldKind::Enum(meaning::SMMUEN)),
        ],
    },
    RegisterInfo {
        name: "CR0ACK",
        alias: None,
        offset: 0x24,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.10",
        fields: &[
            rf!(CR0ACK::DPT_WALK_EN, "DPT_WALK_EN"),
            rf!(CR0ACK::VMW, "VMW", RegFieldKind::Enum(meaning::VMW)),
            rf!(CR0ACK::ATSCHK, "ATSCHK"),
            rf!(CR0ACK::CMDQEN, "CMDQEN"),
            rf!(CR0ACK::EVTQEN, "EVENTQEN"),
            rf!(CR0ACK::PRIQEN, "PRIQEN"),
            rf!(
                CR0ACK::SMMUEN,
                "SMMUEN",
                RegFieldKind::Enum(meaning::SMMUEN)
            ),
        ],
    },
    RegisterInfo {
        name: "CR1",
        alias: None,
        offset: 0x28,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.11",
        fields: &[
            rf!(
                CR1::TABLE_SH,
                "TABLE_SH",
                RegFieldKind::Enum(meaning::SHAREABILITY)
            ),
            rf!(
                CR1::TABLE_OC,
                "TABLE_OC",
                RegFieldKind::Enum(meaning::CACHEABILITY)
            ),
            rf!(
                CR1::TABLE_IC,
                "TABLE_IC",
                RegFieldKind::Enum(meaning::CACHEABILITY)
            ),
            rf!(
                CR1::QUEUE_SH,
                "QUEUE_SH",
                RegFieldKind::Enum(meaning::SHAREABILITY)
            ),
            rf!(
                CR1::QUEUE_OC,
                "QUEUE_OC",
                RegFieldKind::Enum(meaning::CACHEABILITY)
            ),
            rf!(
                CR1::QUEUE_IC,
                "QUEUE_IC",
                RegFieldKind::Enum(meaning::CACHEABILITY)
            ),
        ],
    },
    RegisterInfo {
        name: "CR2",
        alias: None,
        offset: 0x2c,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.12",
        fields: &[
            rf!(CR2::REC_CFG_ATS, "REC_CFG_ATS"),
            rf!(CR2::PTM, "PTM"),
            rf!(CR2::RECINVSID, "RECINVSID"),
            rf!(CR2::E2H, "E2H"),
        ],
    },
    RegisterInfo {
        name: "STATUSR",
        alias: None,
        offset: 0x40,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.13",
        fields: &[rf!(STATUSR::DORMANT, "DORMANT")],
    },
    RegisterInfo {
        name: "GBPA",
        alias: None,
        offset: 0x44,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.14",
        fields: &[
            rf!(GBPA::UPDATE, "Update"),
            rf!(GBPA::ABORT, "ABORT", RegFieldKind::Enum(meaning::ABORT)),
            rf!(
                GBPA::INSTCFG,
                "INSTCFG",
                RegFieldKind::Enum(meaning::INSTCFG)
            ),
            rf!(
                GBPA::PRIVCFG,
                "PRIVCFG",
                RegFieldKind::Enum(meaning::PRIVCFG)
            ),
            rf!(GBPA::SHCFG, "SHCFG", RegFieldKind::Enum(meaning::SHCFG)),
            rf!(GBPA::ALLOCCFG, "ALLOCCFG"),
            rf!(GBPA::MTCFG, "MTCFG", RegFieldKind::Enum(meaning::MTCFG)),
            rf!(GBPA::MEMATTR, "MemAttr"),
        ],
    },
    RegisterInfo {
        name: "AGBPA",
        alias: None,
        offset: 0x48,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.15",
        fields: &[rf!(AGBPA::IMPLEMENTATION_DEFINED, "IMPLEMENTATION DEFINED")],
    },
    RegisterInfo {
        name: "IRQ_CTRL",
        alias: None,
        offset: 0x50,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.16",
        fields: &[
            rf!(IRQ_CTRL::EVTQ_IRQEN, "EVENTQ_IRQEN"),
            rf!(IRQ_CTRL::PRIQ_IRQEN, "PRIQ_IRQEN"),
            rf!(IRQ_CTRL::GERROR_IRQEN, "GERROR_IRQEN"),
        ],
    },
    RegisterInfo {
        name: "IRQ_CTRLACK",
        alias: None,
        offset: 0x54,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.18",
        fields: &[
            rf!(IRQ_CTRLACK::EVTQ_IRQEN, "EVENTQ_IRQEN"),
            rf!(IRQ_CTRLACK::PRIQ_IRQEN, "PRIQ_IRQEN"),
            rf!(IRQ_CTRLACK::GERROR_IRQEN, "GERROR_IRQEN"),
        ],
    },
    RegisterInfo {
        name: "GERROR",
        alias: None,
        offset: 0x60,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.19",
        fields: &[
            rf!(GERROR::DPT_ERR, "DPT_ERR"),
            rf!(GERROR::CMDQP_ERR, "CMDQP_ERR"),
            rf!(GERROR::SFM_ERR, "SFM_ERR"),
            rf!(GERROR::MSI_GERROR_ABT_ERR, "MSI_GERROR_ABT_ERR"),
            rf!(GERROR::MSI_PRIQ_ABT_ERR, "MSI_PRIQ_ABT_ERR"),
            rf!(GERROR::MSI_EVTQ_ABT_ERR, "MSI_EVENTQ_ABT_ERR"),
            rf!(GERROR::MSI_CMDQ_ABT_ERR, "MSI_CMDQ_ABT_ERR"),
            rf!(GERROR::PRIQ_ABT_ERR, "PRIQ_ABT_ERR"),
            rf!(GERROR::EVTQ_ABT_ERR, "EVENTQ_ABT_ERR"),
            rf!(GERROR::CMDQ_ERR, "CMDQ_ERR"),
        ],
    },
    RegisterInfo {
        name: "GERRORN",
        alias: None,
        offset: 0x64,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.20",
        fields: &[
            rf!(GERRORN::DPT_ERR, "DPT_ERR"),
            rf!(GERRORN::CMDQP_ERR, "CMDQP_ERR"),
            rf!(GERRORN::SFM_ERR, "SFM_ERR"),
            rf!(GERRORN::MSI_GERROR_ABT_ERR, "MSI_GERROR_ABT_ERR"),
            rf!(GERRORN::MSI_PRIQ_ABT_ERR, "MSI_PRIQ_ABT_ERR"),
            rf!(GERRORN::MSI_EVTQ_ABT_ERR, "MSI_EVENTQ_ABT_ERR"),
            rf!(GERRORN::MSI_CMDQ_ABT_ERR, "MSI_CMDQ_ABT_ERR"),
            rf!(GERRORN::PRIQ_ABT_ERR, "PRIQ_ABT_ERR"),
            rf!(GERRORN::EVTQ_ABT_ERR, "EVENTQ_ABT_ERR"),
            rf!(GERRORN::CMDQ_ERR, "CMDQ_ERR"),
        ],
    },
    RegisterInfo {
        name: "GERROR_IRQ_CFG0",
        alias: None,
        offset: 0x68,
        page: 0,
        width: RegWidth::W64,
        spec: "6.3.21",
        fields: &[rf!(GERROR_IRQ_CFG0::ADDR, "ADDR", RegFieldKind::Address)],
    },
    RegisterInfo {
        name: "GERROR_IRQ_CFG1",
        alias: None,
        offset: 0x70,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.22",
        fields: &[rf!(GERROR_IRQ_CFG1::DATA, "DATA")],
    },
    RegisterInfo {
        name: "GERROR_IRQ_CFG2",
        alias: None,
        offset: 0x74,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.23",
        fields: &[
            rf!(
                GERROR_IRQ_CFG2::SH,
                "SH",
                RegFieldKind::Enum(meaning::SHAREABILITY)
            ),
            rf!(GERROR_IRQ_CFG2::MEMATTR, "MemAttr"),
        ],
    },
    RegisterInfo {
        name: "STRTAB_BASE",
        alias: None,
        offset: 0x80,
        page: 0,
        width: RegWidth::W64,
        spec: "6.3.24",
        fields: &[
            rf!(STRTAB_BASE::RA, "RA"),
            rf!(STRTAB_BASE::ADDR, "ADDR", RegFieldKind::Address),
        ],
    },
    RegisterInfo {
        name: "STRTAB_BASE_CFG",
        alias: None,
        offset: 0x88,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.25",
        fields: &[
            rf!(
                STRTAB_BASE_CFG::FMT,
                "FMT",
                RegFieldKind::Enum(meaning::FMT)
            ),
            rf!(
                STRTAB_BASE_CFG::SPLIT,
                "SPLIT",
                RegFieldKind::Enum(meaning::SPLIT)
            ),
            rf!(
                STRTAB_BASE_CFG::LOG2SIZE,
                "LOG2SIZE",
                RegFieldKind::Log2("StreamIDs")
            ),
        ],
    },
    RegisterInfo {
        name: "CMDQ_BASE",
        alias: None,
        offset: 0x90,
        page: 0,
        width: RegWidth::W64,
        spec: "6.3.26",
        fields: &[
            rf!(CMDQ_BASE::RA, "RA"),
            rf!(CMDQ_BASE::ADDR, "ADDR", RegFieldKind::Address),
            rf!(
                CMDQ_BASE::LOG2SIZE,
                "LOG2SIZE",
                RegFieldKind::Log2("entries")
            ),
        ],
    },
    RegisterInfo {
        name: "CMDQ_PROD",
        alias: None,
        offset: 0x98,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.27",
        fields: &[rf!(CMDQ_PROD::WR, "WR")],
    },
    RegisterInfo {
        name: "CMDQ_CONS",
        alias: None,
        offset: 0x9c,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.28",
        fields: &[
            rf!(CMDQ_CONS::ERR, "ERR", RegFieldKind::Enum(meaning::CMDQ_ERR)),
            rf!(CMDQ_CONS::RD, "RD"),
        ],
    },
    RegisterInfo {
        name: "EVENTQ_BASE",
        alias: Some("EVTQ_BASE"),
        offset: 0xa0,
        page: 0,
        width: RegWidth::W64,
        spec: "6.3.29",
        fields: &[
            rf!(EVTQ_BASE::WA, "WA"),
            rf!(EVTQ_BASE::ADDR, "ADDR", RegFieldKind::Address),
            rf!(
                EVTQ_BASE::LOG2SIZE,
                "LOG2SIZE",
                RegFieldKind::Log2("entries")
            ),
        ],
    },
    RegisterInfo {
        name: "EVENTQ_PROD",
        alias: Some("EVTQ_PROD"),
        offset: 0xa8,
        page: 1,
        width: RegWidth::W32,
        spec: "6.3.95",
        fields: &[rf!(EVTQ_PROD::OVFLG, "OVFLG"), rf!(EVTQ_PROD::WR, "WR")],
    },
    RegisterInfo {
        name: "EVENTQ_CONS",
        alias: Some("EVTQ_CONS"),
        offset: 0xac,
        page: 1,
        width: RegWidth::W32,
        spec: "6.3.96",
        fields: &[
            rf!(EVTQ_CONS::OVACKFLG, "OVACKFLG"),
            rf!(EVTQ_CONS::RD, "RD"),
        ],
    },
    RegisterInfo {
        name: "EVENTQ_IRQ_CFG0",
        alias: Some("EVTQ_IRQ_CFG0"),
        offset: 0xb0,
        page: 0,
        width: RegWidth::W64,
        spec: "6.3.30",
        fields: &[rf!(EVTQ_IRQ_CFG0::ADDR, "ADDR", RegFieldKind::Address)],
    },
    RegisterInfo {
        name: "EVENTQ_IRQ_CFG1",
        alias: Some("EVTQ_IRQ_CFG1"),
        offset: 0xb8,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.31",
        fields: &[rf!(EVTQ_IRQ_CFG1::DATA, "DATA")],
    },
    RegisterInfo {
        name: "EVENTQ_IRQ_CFG2",
        alias: Some("EVTQ_IRQ_CFG2"),
        offset: 0xbc,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.32",
        fields: &[
            rf!(
                EVTQ_IRQ_CFG2::SH,
                "SH",
                RegFieldKind::Enum(meaning::SHAREABILITY)
            ),
            rf!(EVTQ_IRQ_CFG2::MEMATTR, "MemAttr"),
        ],
    },
    RegisterInfo {
        name: "PRIQ_BASE",
        alias: None,
        offset: 0xc0,
        page: 0,
        width: RegWidth::W64,
        spec: "6.3.33",
        fields: &[
            rf!(PRIQ_BASE::WA, "WA"),
            rf!(PRIQ_BASE::ADDR, "ADDR", RegFieldKind::Address),
            rf!(
                PRIQ_BASE::LOG2SIZE,
                "LOG2SIZE",
                RegFieldKind::Log2("entries")
            ),
        ],
    },
    RegisterInfo {
        name: "PRIQ_PROD",
        alias: None,
        offset: 0xc8,
        page: 1,
        width: RegWidth::W32,
        spec: "6.3.97",
        fields: &[rf!(PRIQ_PROD::OVFLG, "OVFLG"), rf!(PRIQ_PROD::WR, "WR")],
    },
    RegisterInfo {
        name: "PRIQ_CONS",
        alias: None,
        offset: 0xcc,
        page: 1,
        width: RegWidth::W32,
        spec: "6.3.98",
        fields: &[
            rf!(PRIQ_CONS::OVACKFLG, "OVACKFLG"),
            rf!(PRIQ_CONS::RD, "RD"),
        ],
    },
    RegisterInfo {
        name: "PRIQ_IRQ_CFG0",
        alias: None,
        offset: 0xd0,
        page: 0,
        width: RegWidth::W64,
        spec: "6.3.34",
        fields: &[rf!(PRIQ_IRQ_CFG0::ADDR, "ADDR", RegFieldKind::Address)],
    },
    RegisterInfo {
        name: "PRIQ_IRQ_CFG1",
        alias: None,
        offset: 0xd8,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.35",
        fields: &[rf!(PRIQ_IRQ_CFG1::DATA, "DATA")],
    },
    RegisterInfo {
        name: "PRIQ_IRQ_CFG2",
        alias: None,
        offset: 0xdc,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.36",
        fields: &[
            rf!(PRIQ_IRQ_CFG2::LO, "LO"),
            rf!(
                PRIQ_IRQ_CFG2::SH,
                "SH",
                RegFieldKind::Enum(meaning::SHAREABILITY)
            ),
            rf!(PRIQ_IRQ_CFG2::MEMATTR, "MemAttr"),
        ],
    },
    RegisterInfo {
        name: "MPAMIDR",
        alias: None,
        offset: 0x130,
        page: 0,
        width: RegWidth::W32,
        spec: "6.3.41",
        fields: &[
            rf!(MPAMIDR::PMG_MAX, "PMG_MAX"),
            rf!(MPAMIDR::PARTID_MAX, "PARTID_MAX"),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::{FieldMeaning, RegFieldKind, RegWidth, RegisterInfo, REGISTERS};

    fn reg(name: &str) -> &'static RegisterInfo {
        RegisterInfo::by_name(name).expect("a register")
    }

    #[test]
    fn fields_are_disjoint_and_inside_the_register() {
        for r in REGISTERS {
            let width = match r.width {
                RegWidth::W32 => 32,
                RegWidth::W64 => 64,
            };
            let mut seen = 0u64;
            for f in r.fields {
                assert!(f.hi() < width, "{}.{} beyond the register", r.name, f.name);
                assert_eq!(
                    seen & f.mask_in_place(),
                    0,
                    "{}.{} overlaps",
                    r.name,
                    f.name
                );
                seen |= f.mask_in_place();
            }
        }
    }

    #[test]
    fn enumerated_values_fit_their_field_once_each() {
        for r in REGISTERS {
            for f in r.fields {
                if let RegFieldKind::Enum(list) = f.kind {
                    for (i, (v, _)) in list.iter().enumerate() {
                        assert!(*v <= f.mask, "{}.{}: {v} does not fit", r.name, f.name);
                        assert!(
                            list.iter().skip(i + 1).all(|(w, _)| w != v),
                            "{}.{}: {v} listed twice",
                            r.name,
                            f.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn meanings_of_values() {
        let oas = reg("IDR5").fields.iter().find(|f| f.name == "OAS").unwrap();
        assert_eq!(oas.meaning(0b101), Some(FieldMeaning::Text("48 bits")));
        let ttendian = reg("IDR0")
            .fields
            .iter()
            .find(|f| f.name == "TTENDIAN")
            .unwrap();
        assert_eq!(ttendian.meaning(0b01), Some(FieldMeaning::Reserved));
        let cmdqs = reg("IDR1")
            .fields
            .iter()
            .find(|f| f.name == "CMDQS")
            .unwrap();
        let m = cmdqs.meaning(19).unwrap();
        assert_eq!(
            m,
            FieldMeaning::Pow2 {
                log2: 19,
                unit: "entries at most"
            }
        );
        let mut text = heapless::String::<64>::new();
        core::fmt::write(&mut text, format_args!("{m}")).unwrap();
        assert_eq!(text.as_str(), "2^19 = 524288 entries at most");
        // A plain number has no meaning to add.
        let wr = reg("CMDQ_PROD").fields.first().unwrap();
        assert_eq!(wr.meaning(5), None);
    }

    #[test]
    fn address_fields_hold_their_bits_in_place() {
        let base = reg("SMMU_STRTAB_BASE");
        let addr = base.fields.iter().find(|f| f.name == "ADDR").unwrap();
        let value = 0x4000_0000_8000_0000 | 0x3f;
        assert_eq!(addr.address(value), Some(0x8000_0000));
        assert_eq!(
            addr.meaning(addr.get(value)),
            Some(FieldMeaning::Address(0x8000_0000))
        );
        let ra = base.fields.iter().find(|f| f.name == "RA").unwrap();
        assert_eq!(ra.address(value), None);
        // Every queue base and MSI address register has exactly one address field.
        for name in [
            "CMDQ_BASE",
            "EVENTQ_BASE",
            "PRIQ_BASE",
            "GERROR_IRQ_CFG0",
            "EVENTQ_IRQ_CFG0",
            "PRIQ_IRQ_CFG0",
        ] {
            let n = reg(name)
                .fields
                .iter()
                .filter(|f| f.kind == RegFieldKind::Address)
                .count();
            assert_eq!(n, 1, "{name}");
        }
    }

    #[test]
    fn res0_bits_are_the_bits_no_field_covers() {
        // IDR0 bits 31 and 29 are RES0 (§6.3.1).
        assert_eq!(
            reg("IDR0").res0_bits_set(u64::from(u32::MAX)),
            (1 << 31) | (1 << 29)
        );
        // CR0 bit 5 (§6.3.9); bits above a 32-bit register's width are not its bits.
        assert_eq!(reg("CR0").res0_bits_set(0x1_0000_0021), 0x20);
        assert_eq!(reg("CR0").res0_bits_set(0xd), 0);
        // STRTAB_BASE bits [63], [61:56], [5:0] (§6.3.24).
        assert_eq!(
            reg("STRTAB_BASE").res0_bits_set(u64::MAX),
            (1 << 63) | (0x3f << 56) | 0x3f
        );
    }

    #[test]
    fn the_specification_names_and_the_linux_alias() {
        assert_eq!(reg("EVTQ_PROD").name, "EVENTQ_PROD");
        assert_eq!(reg("smmu_eventq_prod").name, "EVENTQ_PROD");
        assert_eq!(reg("EVENTQ_PROD").alias, Some("EVTQ_PROD"));
        assert!(RegisterInfo::by_name("EVTQ").is_none());
        // No two registers answer to the same name.
        for r in REGISTERS {
            for n in core::iter::once(r.name).chain(r.alias) {
                assert_eq!(reg(n).absolute_offset(), r.absolute_offset(), "{n}");
            }
        }
    }
}

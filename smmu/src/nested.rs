//! Nested translation (SPEC D13; IHI 0070 G.b §3.3.2–3.3.4, `STE.Config` = 0b111): what a guest
//! may put in its half of a nested STE, and what it may ask the SMMU to invalidate.
//!
//! In a confidential VM the host owns stage 2 (the *nesting parent*, a stage-2 domain with its
//! VMID) and the guest owns stage 1: it hands the host the stage-1 half of an STE (its CD
//! table, addressed in the guest's IPA space, and how to fetch it) and asks for stage-1
//! invalidations. Both are guest-controlled input. This module decides, as pure functions,
//! what of it the host accepts — the shape iommufd's nested HWPT gives Linux — and the driver
//! only ever writes what comes out:
//!
//! - [`validate_guest_ste`] takes the guest's STE words, refuses every bit outside the guest's
//!   fields (`V`, `Config`, `S1Fmt`, `S1ContextPtr`, `S1CDMax`, `S1DSS`, `S1CIR`, `S1COR`,
//!   `S1CSH`, `S1STALLD`, `EATS`) and every value the SMMU or the master cannot honour, each
//!   with a typed [`NestedError`]. Stage 2, the VMID, the StreamWorld and the attribute
//!   overrides stay the host's.
//! - [`confine_guest_command`] takes one guest command and returns the command the host
//!   issues: stage-1 TLB invalidations and CD invalidations only, always with the parent's
//!   VMID, and a CD invalidation only for one of the guest's own StreamIDs. A guest can never
//!   name another VMID or StreamID ([`GuestCommandError`]).

use crate::arch::cmd::{Cmd, Command};
use crate::arch::idr::{Features, StallModel};
use crate::arch::ste::{fields as f, Eats, S1Fmt, Stage1Ste, Ste, Translation};
use crate::arch::DecodeError;
use crate::arch::Field;
use crate::writer::ENTRY_QWORDS;

/// What the guest's STE asks for, once validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestConfig {
    /// `V` = 0 or `Config` = abort: the master's DMA aborts.
    Abort,
    /// `Config` = bypass: stage 1 is bypassed, the parent's stage 2 still translates (the
    /// guest sees its "physical" addresses, which are IPAs).
    Stage2Only,
    /// Stage 1 over the parent's stage 2: the guest's CD table (an IPA) and its fetch
    /// attributes.
    Stage1(Stage1Ste),
}

/// A guest's stage-1 half of a nested STE, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSte {
    /// The configuration.
    pub config: GuestConfig,
    /// `EATS`: the guest enables ATS for the master (only if the master has ATS).
    pub eats: Eats,
}

/// Why a guest's STE is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NestedError {
    /// Bits outside the guest's fields are set (`qword`, the bits): stage 2, the VMID, the
    /// StreamWorld and the attribute overrides are the host's.
    HostBits {
        /// The 64-bit word of the STE.
        qword: usize,
        /// The offending bits.
        bits: u64,
    },
    /// A field holds a reserved encoding.
    Reserved(DecodeError),
    /// `Config` asks for stage 2 or nesting itself: the guest supplies stage 1 only.
    GuestStage2,
    /// `S1CDMax` exceeds what the SMMU supports (`IDR1.SSIDSIZE`) or the master uses.
    TooManySubstreams {
        /// log2 of the CDs asked for.
        asked: u8,
        /// log2 of the CDs allowed.
        allowed: u8,
    },
    /// A 2-level CD table on an SMMU without `IDR0.CD2L`.
    TwoLevelCdUnsupported,
    /// `S1STALLD` = 1 on an SMMU that cannot stall (the field is then not the guest's to set).
    StallControlUnsupported,
    /// `EATS` ≠ 0 for a master without ATS, or on an SMMU without it.
    AtsNotAllowed,
}

impl core::fmt::Display for NestedError {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::HostBits { qword, bits } => write!(
                fm,
                "the guest's STE sets bits {bits:#x} of word {qword}, which are the host's"
            ),
            Self::Reserved(e) => write!(fm, "the guest's STE holds a reserved value: {e}"),
            Self::GuestStage2 => f_str(fm, "the guest's STE asks for stage 2, which is the host's"),
            Self::TooManySubstreams { asked, allowed } => write!(
                fm,
                "the guest's STE asks for 2^{asked} contexts, at most 2^{allowed} are allowed"
            ),
            Self::TwoLevelCdUnsupported => f_str(
                fm,
                "the guest's STE asks for a 2-level CD table, which the SMMU lacks",
            ),
            Self::StallControlUnsupported => f_str(
                fm,
                "the guest's STE sets S1STALLD on an SMMU that cannot stall",
            ),
            Self::AtsNotAllowed => f_str(fm, "the guest's STE enables ATS, which the master lacks"),
        }
    }
}

fn f_str(fm: &mut core::fmt::Formatter<'_>, s: &str) -> core::fmt::Result {
    fm.write_str(s)
}

impl core::error::Error for NestedError {}

/// The guest's fields of an STE (§3.3.2: the stage-1 half).
const GUEST_FIELDS: [Field; 11] = [
    f::V,
    f::CONFIG,
    f::S1FMT,
    f::S1_CONTEXT_PTR,
    f::S1_CD_MAX,
    f::S1DSS,
    f::S1CIR,
    f::S1COR,
    f::S1CSH,
    f::S1STALLD,
    f::EATS,
];

/// The bits of each STE word a guest may set.
fn guest_mask() -> [u64; ENTRY_QWORDS] {
    let mut mask = [0u64; ENTRY_QWORDS];
    for field in GUEST_FIELDS {
        if let Some(w) = mask.get_mut(field.qword) {
            *w |= field.mask_in_word();
        }
    }
    mask
}

/// Validates the guest's half of a nested STE (SPEC D13) on an SMMU with `features`, for a
/// master that uses `master_ssid_bits` SubstreamID bits and has ATS when `master_ats`.
pub fn validate_guest_ste(
    words: &[u64; ENTRY_QWORDS],
    features: &Features,
    master_ssid_bits: u8,
    master_ats: bool,
) -> Result<GuestSte, NestedError> {
    for (qword, (w, m)) in words.iter().zip(guest_mask()).enumerate() {
        if w & !m != 0 {
            return Err(NestedError::HostBits {
                qword,
                bits: w & !m,
            });
        }
    }
    let decoded = Ste::from_words(*words)
        .decode()
        .map_err(NestedError::Reserved)?;
    let Some(ste) = decoded else {
        return Ok(GuestSte {
            config: GuestConfig::Abort,
            eats: Eats::Abort,
        });
    };
    let config = match ste.translation {
        Translation::Abort => GuestConfig::Abort,
        Translation::Bypass => GuestConfig::Stage2Only,
        Translation::Stage1(s1) => {
            let allowed = features.ssid_bits.min(master_ssid_bits);
            if s1.cd_max > allowed {
                return Err(NestedError::TooManySubstreams {
                    asked: s1.cd_max,
                    allowed,
                });
            }
            if s1.cd_max > 0 && s1.fmt != S1Fmt::Linear && !features.cd2l {
                return Err(NestedError::TwoLevelCdUnsupported);
            }
            if s1.stall_disable && features.stall_model != StallModel::Stall {
                return Err(NestedError::StallControlUnsupported);
            }
            GuestConfig::Stage1(s1)
        }
        Translation::Stage2(_) | Translation::Nested(..) => return Err(NestedError::GuestStage2),
    };
    if ste.eats != Eats::Abort && !(master_ats && features.ats) {
        return Err(NestedError::AtsNotAllowed);
    }
    Ok(GuestSte {
        config,
        eats: ste.eats,
    })
}

/// Why a guest's invalidation command is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestCommandError {
    /// The command does not decode (its opcode or a field is reserved).
    Undecodable(DecodeError),
    /// Not a command a guest may issue (only stage-1 TLB and CD invalidations are): the
    /// opcode.
    NotAllowed(u8),
    /// The command names a VMID other than 0 (the guest has none; the host supplies the
    /// parent's).
    ForeignVmid(u16),
    /// The command names a StreamID that is not one of the guest's masters'.
    ForeignStreamId(u32),
}

impl core::fmt::Display for GuestCommandError {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Undecodable(e) => write!(fm, "the guest's command does not decode: {e}"),
            Self::NotAllowed(op) => write!(
                fm,
                "opcode {op:#04x} is not a stage-1 TLB or CD invalidation, the only commands \
                 a guest may issue"
            ),
            Self::ForeignVmid(v) => write!(fm, "the guest's command names VMID {v}"),
            Self::ForeignStreamId(s) => write!(
                fm,
                "the guest's command names StreamID {s:#x}, which is not one of its masters'"
            ),
        }
    }
}

impl core::error::Error for GuestCommandError {}

/// The command the host issues for one guest command `raw` (SPEC D13): the guest's stage-1
/// TLB invalidations (`TLBI_NH_ALL`, `_ASID`, `_VA`, `_VAA`) with the parent's `vmid`, and its
/// CD invalidations (`CFGI_CD`, `CFGI_CD_ALL`) for a StreamID in `own_sids` only. The guest
/// writes VMID 0 (it has none); any other VMID, any other StreamID and any other command is
/// refused.
pub fn confine_guest_command(
    raw: [u64; 2],
    vmid: u16,
    own_sids: &[u32],
) -> Result<Command, GuestCommandError> {
    let cmd = Cmd::from_words(raw);
    let decoded = cmd.decode().map_err(GuestCommandError::Undecodable)?;
    let guest_vmid = |v: u16| {
        if v == 0 {
            Ok(vmid)
        } else {
            Err(GuestCommandError::ForeignVmid(v))
        }
    };
    let own_sid = |s: u32| {
        if own_sids.contains(&s) {
            Ok(s)
        } else {
            Err(GuestCommandError::ForeignStreamId(s))
        }
    };
    Ok(match decoded {
        Command::TlbiNhAll { vmid: v } => Command::TlbiNhAll {
            vmid: guest_vmid(v)?,
        },
        Command::TlbiNhAsid { vmid: v, asid } => Command::TlbiNhAsid {
            vmid: guest_vmid(v)?,
            asid,
        },
        Command::TlbiNhVa { vmid: v, asid, va } => Command::TlbiNhVa {
            vmid: guest_vmid(v)?,
            asid,
            va,
        },
        Command::TlbiNhVaa { vmid: v, va } => Command::TlbiNhVaa {
            vmid: guest_vmid(v)?,
            va,
        },
        Command::CfgiCd { sid, ssid, leaf } => Command::CfgiCd {
            sid: own_sid(sid)?,
            ssid,
            leaf,
        },
        Command::CfgiCdAll { sid } => Command::CfgiCdAll { sid: own_sid(sid)? },
        _ => return Err(GuestCommandError::NotAllowed(cmd.opcode())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::cmd::{TlbiAddr, TlbiRange};
    use crate::arch::ste::{S1Dss, SteConfig};
    use crate::arch::{Cacheability, Shareability};

    fn features() -> Features {
        // S1P, S2P, AArch64 tables, COHACC, 16-bit VMIDs; QEMU's IDR1 with SSIDSIZE 5; 4K
        // granule, OAS 48.
        crate::probe::check(&crate::arch::idr::IdRegs {
            idr: [
                0b1011 | 1 << 4 | 1 << 18,
                0x0273_0010 | 5 << 6,
                0,
                0,
                0,
                0b101 | 1 << 4,
            ],
            iidr: 0,
            aidr: 0,
        })
        .expect("a valid ID register set")
    }

    fn stage1(cd_max: u8) -> SteConfig {
        SteConfig {
            translation: Translation::Stage1(Stage1Ste {
                context_ptr: 0x8000_0000,
                fmt: S1Fmt::Linear,
                cd_max,
                dss: if cd_max > 0 {
                    S1Dss::Substream0
                } else {
                    S1Dss::Terminate
                },
                cir: Cacheability::WriteBackAllocate,
                cor: Cacheability::WriteBackAllocate,
                csh: Shareability::Inner,
                stall_disable: false,
            }),
            ..SteConfig::ABORT
        }
    }

    // spec: D13
    #[test]
    fn a_guest_stage1_half_is_accepted_and_everything_else_is_the_hosts() {
        let f = features();
        let ste = stage1(0).encode().to_words();
        let g = validate_guest_ste(&ste, &f, 0, false).unwrap();
        assert!(matches!(g.config, GuestConfig::Stage1(s) if s.context_ptr == 0x8000_0000));
        // A VMID in word 2 is the host's.
        let mut vmid = ste;
        f::S2VMID.set(&mut vmid, 7);
        assert!(matches!(
            validate_guest_ste(&vmid, &f, 0, false),
            Err(NestedError::HostBits { qword: 2, .. })
        ));
        // So is the StreamWorld.
        let mut strw = ste;
        f::STRW.set(&mut strw, 2);
        assert!(matches!(
            validate_guest_ste(&strw, &f, 0, false),
            Err(NestedError::HostBits { qword: 1, .. })
        ));
        // And stage 2 itself.
        let mut s2 = ste;
        f::CONFIG.set(&mut s2, 0b110);
        assert_eq!(
            validate_guest_ste(&s2, &f, 0, false),
            Err(NestedError::GuestStage2)
        );
        // V = 0 and bypass.
        assert_eq!(
            validate_guest_ste(&[0; 8], &f, 0, false).unwrap().config,
            GuestConfig::Abort
        );
        let bypass = SteConfig::BYPASS.encode().to_words();
        let masked: [u64; 8] = core::array::from_fn(|i| bypass[i] & guest_mask()[i]);
        assert_eq!(
            validate_guest_ste(&masked, &f, 0, false).unwrap().config,
            GuestConfig::Stage2Only
        );
    }

    // spec: D13
    #[test]
    fn a_guest_asks_only_for_what_the_smmu_and_the_master_have() {
        let f = features();
        let five = stage1(5).encode().to_words();
        assert_eq!(
            validate_guest_ste(&five, &f, 3, false),
            Err(NestedError::TooManySubstreams {
                asked: 5,
                allowed: 3
            })
        );
        assert!(validate_guest_ste(&five, &f, 5, false).is_ok());
        let mut ats = stage1(0).encode().to_words();
        f::EATS.set(&mut ats, 1);
        assert_eq!(
            validate_guest_ste(&ats, &f, 0, true),
            Err(NestedError::AtsNotAllowed),
            "the SMMU has no ATS"
        );
        let mut stalld = stage1(0).encode().to_words();
        f::S1STALLD.set(&mut stalld, 1);
        let no_stall = Features {
            stall_model: StallModel::NoStall,
            ..f
        };
        assert_eq!(
            validate_guest_ste(&stalld, &no_stall, 0, false),
            Err(NestedError::StallControlUnsupported)
        );
    }

    // spec: D13
    #[test]
    fn guest_invalidations_get_the_parents_vmid_and_only_the_guests_stream_ids() {
        let va = TlbiAddr {
            addr: 0x1000,
            leaf: true,
            range: TlbiRange::SINGLE,
        };
        let raw = |c: Command| c.encode().to_words();
        assert_eq!(
            confine_guest_command(
                raw(Command::TlbiNhVa {
                    vmid: 0,
                    asid: 3,
                    va
                }),
                9,
                &[8]
            ),
            Ok(Command::TlbiNhVa {
                vmid: 9,
                asid: 3,
                va
            })
        );
        assert_eq!(
            confine_guest_command(raw(Command::TlbiNhAll { vmid: 0 }), 9, &[8]),
            Ok(Command::TlbiNhAll { vmid: 9 })
        );
        assert_eq!(
            confine_guest_command(raw(Command::TlbiNhAsid { vmid: 4, asid: 1 }), 9, &[8]),
            Err(GuestCommandError::ForeignVmid(4))
        );
        assert_eq!(
            confine_guest_command(raw(Command::CfgiCdAll { sid: 8 }), 9, &[8]),
            Ok(Command::CfgiCdAll { sid: 8 })
        );
        assert_eq!(
            confine_guest_command(raw(Command::CfgiCdAll { sid: 0x10 }), 9, &[8]),
            Err(GuestCommandError::ForeignStreamId(0x10))
        );
        // Stage-2 and configuration commands are the host's.
        assert!(matches!(
            confine_guest_command(raw(Command::CfgiSte { sid: 8, leaf: true }), 9, &[8]),
            Err(GuestCommandError::NotAllowed(_))
        ));
        assert!(matches!(
            confine_guest_command(raw(Command::TlbiNsnhAll), 9, &[8]),
            Err(GuestCommandError::NotAllowed(_))
        ));
    }
}

//! `--stage 1|2|nested`: which translation stage the binaries' domains use.
//!
//! Every place a binary makes a domain goes through [`Stage::domain_stage`], so giving the
//! firmware another kind of domain is one match arm here (and one where the binary attaches
//! it). `--stage nested` gives a device a nested domain (SPEC D13): the guest's stage 1 (its CD
//! and page table in its IPA space) over a stage-2 nesting parent the host owns.

use smmu::arch::idr::Features;
use smmu::DomainStage;

/// The translation stage a run's domains use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// `--stage 1` (the default): stage-1 domains, tagged by ASID.
    #[default]
    One,
    /// `--stage 2`: stage-2 domains, tagged by VMID.
    Two,
    /// `--stage nested`: a nested domain on a stage-2 nesting parent.
    Nested,
}

impl Stage {
    /// The value after `--stage`.
    pub fn parse(word: Option<&str>) -> Result<Self, &'static str> {
        match word {
            Some("1") => Ok(Self::One),
            Some("2") => Ok(Self::Two),
            Some("nested") => Ok(Self::Nested),
            _ => Err("expected --stage 1|2|nested"),
        }
    }

    /// The driver's domain stage (for nested, the nesting parent's), or why the firmware
    /// cannot make this kind of domain.
    pub fn domain_stage(self) -> Result<DomainStage, &'static str> {
        match self {
            Self::One => Ok(DomainStage::Stage1),
            Self::Two | Self::Nested => Ok(DomainStage::Stage2),
        }
    }

    /// Whether the probed SMMU implements what this stage needs.
    pub fn supported(self, f: &Features) -> bool {
        match self {
            Self::One => f.stage1,
            Self::Two => f.stage2,
            Self::Nested => f.stage1 && f.stage2,
        }
    }

    /// The domain's name in a check line: "stage-1", "stage-2" or "nested".
    pub fn name(self) -> &'static str {
        match self {
            Self::One => "stage-1",
            Self::Two => "stage-2",
            Self::Nested => "nested",
        }
    }

    /// Whether a translation fault this stage's domain raises reports stage 2 (`S2` bit).
    pub fn faults_in_stage2(self) -> bool {
        match self {
            Self::One => false,
            Self::Two => true,
            // The guest's stage 1 faults in stage 1, the parent's stage 2 in stage 2.
            Self::Nested => false,
        }
    }
}

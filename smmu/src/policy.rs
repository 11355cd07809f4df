//! The protected-DMA policy (SPEC D9), apart from the encoders and the driver's mechanics.
//!
//! A *protected* master is a confidential-computing device (a GPU in a realm or a TDX-like
//! guest) whose DMA must only reach memory the guest chose to share: bounce buffers in the
//! platform's shared windows. The driver asks this module before every step that could widen
//! what such a master reaches, and every "no" is a [`Refusal`]: there is no path around it.

use core::fmt;

use crate::hal::{PhysAddr, PhysRange};

/// What a domain does with a master's transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainKind {
    /// Every transaction aborts (STE `Config` = abort).
    Blocked,
    /// Transactions bypass translation (STE `Config` = bypass).
    Identity,
    /// Stage-1 translation through a CD and a page table.
    Stage1,
    /// Stage-2 translation through a page table.
    Stage2,
}

impl DomainKind {
    /// Whether the domain translates through a page table.
    pub const fn is_paging(self) -> bool {
        matches!(self, DomainKind::Stage1 | DomainKind::Stage2)
    }
}

/// A request SPEC D9 forbids for a protected master or domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Attaching a protected master to an identity (bypass) domain.
    Identity,
    /// A protected master on a paging domain that is not itself protected (whose mappings
    /// are not limited to the shared windows).
    UnprotectedDomain,
    /// ATS for a protected master on a platform that does not allow it: a translated request
    /// would bypass the SMMU's checks.
    Ats,
    /// A mapping in a protected domain of physical memory outside every shared window.
    OutsideSharedWindows {
        /// First byte.
        pa: PhysAddr,
        /// Length.
        size: u64,
    },
    /// A protected master was asked to take a bypass STE some other way (a reserved-memory
    /// identity region, a global bypass default).
    Bypass,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity => f.write_str("a protected master cannot use an identity domain"),
            Self::UnprotectedDomain => {
                f.write_str("a protected master can only use a protected paging domain")
            }
            Self::Ats => f.write_str("ATS is not allowed for protected masters on this platform"),
            Self::OutsideSharedWindows { pa, size } => write!(
                f,
                "{:#x}+{:#x} is outside the platform's shared windows",
                pa.0, size
            ),
            Self::Bypass => f.write_str("a protected master can never bypass translation"),
        }
    }
}

impl core::error::Error for Refusal {}

/// The platform's rules for protected masters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtectedPolicy {
    /// ATS may be enabled for protected masters (the platform checks translated requests
    /// itself, e.g. with a granule protection table). Default: no.
    pub allow_ats: bool,
}

impl ProtectedPolicy {
    /// May a master with these properties be added?
    pub fn check_master(&self, protected: bool, ats: bool) -> Result<(), Refusal> {
        if protected && ats && !self.allow_ats {
            return Err(Refusal::Ats);
        }
        Ok(())
    }

    /// May a master be attached to a domain of `kind`? `domain_protected` says whether the
    /// domain limits its mappings to the shared windows.
    pub fn check_attach(
        &self,
        master_protected: bool,
        kind: DomainKind,
        domain_protected: bool,
    ) -> Result<(), Refusal> {
        if !master_protected {
            return Ok(());
        }
        match kind {
            DomainKind::Blocked => Ok(()),
            DomainKind::Identity => Err(Refusal::Identity),
            DomainKind::Stage1 | DomainKind::Stage2 if domain_protected => Ok(()),
            DomainKind::Stage1 | DomainKind::Stage2 => Err(Refusal::UnprotectedDomain),
        }
    }

    /// May `[pa, pa + size)` be mapped into a domain? Protected domains only map memory that
    /// lies entirely inside one shared window.
    pub fn check_map(
        &self,
        domain_protected: bool,
        windows: &[PhysRange],
        pa: PhysAddr,
        size: u64,
    ) -> Result<(), Refusal> {
        if !domain_protected || windows.iter().any(|w| w.contains(pa, size)) {
            Ok(())
        } else {
            Err(Refusal::OutsideSharedWindows { pa, size })
        }
    }
}

/// Why an STE would be rewritten outside an attach to a paging or the blocked domain: the
/// requests that would make a master's STEs bypass translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// An attach to the identity domain (a default domain that bypasses).
    Identity,
    /// A bypass STE for a reserved-memory (RMR, IORT) region's StreamID.
    RmrBypass,
}

/// What the stream table says about a master's STEs when a [`Rewrite`] is asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewriteTarget {
    /// The master is protected (SPEC D9).
    pub master_protected: bool,
    /// The first of its StreamIDs whose STE is deferred: adopted from the crashed kernel
    /// and not attached since (SPEC K11, K12).
    pub first_deferred: Option<u32>,
    /// The first of its StreamIDs whose STE lives in a structure inherited from the crashed
    /// kernel, whatever it holds now (SPEC K10).
    pub first_inherited: Option<u32>,
}

/// Why [`check_rewrite`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewriteRefusal {
    /// The master is protected: it never bypasses (SPEC D9).
    Protected(Refusal),
    /// This StreamID's STE is deferred: only a translating attach or a release to abort
    /// replaces it (SPEC K12).
    Deferred(u32),
    /// This StreamID's STE was inherited from the crashed kernel: no RMR bypass goes over it
    /// (SPEC K10).
    Inherited(u32),
}

impl fmt::Display for RewriteRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protected(refusal) => refusal.fmt(f),
            Self::Deferred(sid) => {
                write!(f, "StreamID {sid:#x} is deferred (adopted, not attached)")
            }
            Self::Inherited(sid) => write!(
                f,
                "StreamID {sid:#x} lives in a structure inherited from the crashed kernel"
            ),
        }
    }
}

impl core::error::Error for RewriteRefusal {}

/// May `target`'s STEs be rewritten for `why`? The one place that decides it, in the order
/// the rules outrank each other: protection (SPEC D9) before deferral (SPEC K12) before
/// inheritance, which only an RMR bypass must respect (SPEC K10: an identity attach of a
/// master whose inherited STEs were already replaced is an ordinary attach).
pub fn check_rewrite(why: Rewrite, target: &RewriteTarget) -> Result<(), RewriteRefusal> {
    if target.master_protected {
        return Err(RewriteRefusal::Protected(match why {
            Rewrite::Identity => Refusal::Identity,
            Rewrite::RmrBypass => Refusal::Bypass,
        }));
    }
    if let Some(sid) = target.first_deferred {
        return Err(RewriteRefusal::Deferred(sid));
    }
    match (why, target.first_inherited) {
        (Rewrite::RmrBypass, Some(sid)) => Err(RewriteRefusal::Inherited(sid)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: [PhysRange; 2] = [
        PhysRange {
            start: PhysAddr(0x8000_0000),
            size: 0x10_0000,
        },
        PhysRange {
            start: PhysAddr(0x9000_0000),
            size: 0x1000,
        },
    ];

    // spec: D9
    #[test]
    fn protected_masters_get_only_abort_or_protected_paging() {
        let p = ProtectedPolicy::default();
        assert_eq!(p.check_attach(true, DomainKind::Blocked, false), Ok(()));
        assert_eq!(
            p.check_attach(true, DomainKind::Identity, true),
            Err(Refusal::Identity)
        );
        for kind in [DomainKind::Stage1, DomainKind::Stage2] {
            assert_eq!(p.check_attach(true, kind, true), Ok(()));
            assert_eq!(
                p.check_attach(true, kind, false),
                Err(Refusal::UnprotectedDomain)
            );
            assert_eq!(p.check_attach(false, kind, false), Ok(()));
        }
        assert_eq!(p.check_attach(false, DomainKind::Identity, false), Ok(()));
    }

    // spec: D9
    #[test]
    fn ats_only_where_the_platform_allows_it() {
        assert_eq!(
            ProtectedPolicy::default().check_master(true, true),
            Err(Refusal::Ats)
        );
        assert_eq!(ProtectedPolicy::default().check_master(false, true), Ok(()));
        let allow = ProtectedPolicy { allow_ats: true };
        assert_eq!(allow.check_master(true, true), Ok(()));
    }

    // spec: D9, K10, K12
    #[test]
    fn check_rewrite_refuses_protected_then_deferred_then_inherited_for_rmr() {
        let plain = RewriteTarget::default();
        let protected = RewriteTarget {
            master_protected: true,
            first_deferred: Some(0x10),
            first_inherited: Some(0x10),
        };
        let deferred = RewriteTarget {
            first_deferred: Some(0x11),
            first_inherited: Some(0x12),
            ..plain
        };
        let inherited = RewriteTarget {
            first_inherited: Some(0x12),
            ..plain
        };
        for why in [Rewrite::Identity, Rewrite::RmrBypass] {
            assert_eq!(check_rewrite(why, &plain), Ok(()));
            assert_eq!(
                check_rewrite(why, &deferred),
                Err(RewriteRefusal::Deferred(0x11))
            );
        }
        // D9 outranks the rest, with the refusal its request deserves.
        assert_eq!(
            check_rewrite(Rewrite::Identity, &protected),
            Err(RewriteRefusal::Protected(Refusal::Identity))
        );
        assert_eq!(
            check_rewrite(Rewrite::RmrBypass, &protected),
            Err(RewriteRefusal::Protected(Refusal::Bypass))
        );
        // K10 binds the RMR bypass only.
        assert_eq!(
            check_rewrite(Rewrite::RmrBypass, &inherited),
            Err(RewriteRefusal::Inherited(0x12))
        );
        assert_eq!(check_rewrite(Rewrite::Identity, &inherited), Ok(()));
    }

    // spec: D9
    #[test]
    fn protected_maps_stay_inside_one_window() {
        let p = ProtectedPolicy::default();
        let ok = |pa: u64, size: u64| p.check_map(true, &WINDOWS, PhysAddr(pa), size);
        assert_eq!(ok(0x8000_0000, 0x10_0000), Ok(()));
        assert_eq!(ok(0x9000_0000, 0x1000), Ok(()));
        assert!(ok(0x8000_0000, 0x10_1000).is_err()); // runs past the end
        assert!(ok(0x7fff_f000, 0x2000).is_err()); // starts before
        assert!(ok(0x800f_f000, 0x9000_1000 - 0x800f_f000).is_err()); // spans the gap
        assert!(ok(u64::MAX - 0xfff, 0x1000).is_err());
        assert!(p
            .check_map(true, &[], PhysAddr(0x8000_0000), 0x1000)
            .is_err());
        assert_eq!(
            p.check_map(false, &[], PhysAddr(0x1234_5000), 0x1000),
            Ok(())
        );
    }
}

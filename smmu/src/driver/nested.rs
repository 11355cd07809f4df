//! Nested domains (SPEC D13; IHI 0070 G.b §3.3.2–3.3.4): a guest's stage 1 over a host's
//! nesting parent, the way iommufd's nested HWPT works in Linux.
//!
//! The host creates a stage-2 *nesting parent* ([`DomainOptions::nesting_parent`]) and maps the
//! guest's memory (IPA → PA) in it. A [`NestedDomain`] on that parent carries the guest's
//! stage-1 half of the STE — its CD table, addressed as an IPA, checked field by field by
//! [`crate::nested::validate_guest_ste`] — and attaching a master to it writes an STE with
//! `Config` = nested: the guest's stage 1, the parent's stage 2 and the parent's VMID
//! (everything but the guest's fields is the host's). The guest's invalidations go through
//! [`Smmu::guest_invalidate`], which forces the parent's VMID and the guest's own StreamIDs.
//!
//! A `NestedDomain` borrows its parent, so the parent cannot be freed while it exists; a
//! master attached to it also keeps the parent referenced ([`Smmu::free_domain`] refuses the
//! parent while any master's STE uses it).

use super::*;
use crate::arch::ste::{SteConfig, Translation};
use crate::nested::{confine_guest_command, validate_guest_ste, GuestConfig, GuestSte};

/// A guest's stage 1 over a nesting parent (SPEC D13).
pub struct NestedDomain<'p, A: TableAllocator> {
    token: u32,
    smmu: usize,
    parent: &'p Domain<A>,
    guest: GuestSte,
    words: [u64; ENTRY_QWORDS],
}

impl<A: TableAllocator> core::fmt::Debug for NestedDomain<'_, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NestedDomain")
            .field("token", &self.token)
            .field("parent", &self.parent)
            .field("guest", &self.guest)
            .finish_non_exhaustive()
    }
}

impl<A: TableAllocator> NestedDomain<'_, A> {
    /// The guest's stage-1 half, as validated.
    pub fn guest(&self) -> &GuestSte {
        &self.guest
    }

    /// The parent's VMID, which every TLB entry of this domain is tagged with.
    pub fn vmid(&self) -> u16 {
        self.parent.id
    }

    /// Whether the domain is protected: only on a protected parent, whose mappings are
    /// limited to the platform's shared windows (SPEC D9, D13).
    pub fn is_protected(&self) -> bool {
        self.parent.protected
    }
}

impl<R: RegisterAccess, H: Hal, S: StreamTable> Smmu<R, H, S> {
    /// Creates a nested domain on `parent` from the guest's STE words `guest_ste` (only the
    /// stage-1 fields may be set: see [`crate::nested::validate_guest_ste`], whose refusals
    /// come back as [`Error::Nested`]). `parent` must be a stage-2 domain created with
    /// [`DomainOptions::nesting_parent`] on this SMMU, which must implement both stages.
    pub fn new_nested_domain<'p, A: TableAllocator>(
        &self,
        parent: &'p Domain<A>,
        guest_ste: &[u64; ENTRY_QWORDS],
    ) -> Result<NestedDomain<'p, A>, Error> {
        self.check_domain(parent)?;
        if !(parent.nesting_parent && parent.stage == DomainStage::Stage2) {
            return Err(Error::NotNestingParent);
        }
        if !(self.features.stage1 && self.features.stage2) {
            return Err(Error::Unsupported("nested translation (IDR0.S1P and S2P)"));
        }
        // The master-independent checks now; the master's own limits at attach.
        let guest = validate_guest_ste(guest_ste, &self.features, self.features.ssid_bits, true)?;
        let mut token = self.next_token.fetch_add(1, Ordering::Relaxed);
        if token == 0 {
            token = self.next_token.fetch_add(1, Ordering::Relaxed);
        }
        Ok(NestedDomain {
            token,
            smmu: self.instance,
            parent,
            guest,
            words: *guest_ste,
        })
    }

    /// Attaches `master` to a nested domain: every STE of the master becomes the guest's
    /// stage 1 nested in the parent's stage 2 with the parent's VMID (or, for a guest that
    /// asked for abort or stage-1 bypass, abort or the parent's stage 2 alone), through the
    /// hitless writer (SPEC D4). The guest's STE is checked again against the master's own
    /// SubstreamID bits and ATS. A protected master attaches only to a nested domain on a
    /// protected parent (SPEC D9, D13).
    pub fn attach_nested<A: TableAllocator>(
        &self,
        master: MasterId,
        domain: &NestedDomain<'_, A>,
    ) -> Result<(), Error> {
        if domain.smmu != self.instance {
            return Err(Error::WrongDomainKind);
        }
        let parent = domain.parent;
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        let strtab = self.strtab.read();
        self.config
            .policy
            .check_attach(m.protected, parent.kind(), parent.protected)?;
        let guest = validate_guest_ste(&domain.words, &self.features, m.ssid_bits, m.ats)?;
        let caps = self.caps(m, true);
        let s2 = stage2_table(&parent.table)?;
        let config = match guest.config {
            GuestConfig::Abort => make::abort_ste(),
            GuestConfig::Stage2Only => make::s2_ste(self.entry_features, caps, s2, parent.id),
            GuestConfig::Stage1(s1) => {
                let mut c = make::s2_ste(self.entry_features, caps, s2, parent.id);
                if let Translation::Stage2(s2ste) = c.translation {
                    c.translation = Translation::Nested(s1, s2ste);
                }
                SteConfig {
                    eats: guest.eats,
                    ..c
                }
            }
        };
        let target = AttachTarget {
            ste: make::ste_image(&config),
            cd0: None,
            now: Attachment::Nested {
                token: domain.token,
                parent: parent.token,
                vmid: parent.id,
            },
        };
        self.commit(m, &strtab, &target)
    }

    /// Issues the guest's invalidation commands (raw 16-byte commands as the guest wrote
    /// them) for nested domain `domain`, under one `CMD_SYNC`: each is confined by
    /// [`crate::nested::confine_guest_command`] to the parent's VMID and to the StreamIDs of
    /// the masters attached to `domain`. The first command refused refuses the whole batch
    /// before anything is issued ([`Error::GuestCommand`]).
    pub fn guest_invalidate<A: TableAllocator>(
        &self,
        domain: &NestedDomain<'_, A>,
        commands: &[[u64; 2]],
    ) -> Result<(), Error> {
        if domain.smmu != self.instance {
            return Err(Error::WrongDomainKind);
        }
        let vmid = domain.parent.id;
        let mut own: Vec<u32, 64> = Vec::new();
        for slot in &self.masters {
            if let Some(m) = slot.lock().as_ref() {
                if m.attached.token() == Some(domain.token) {
                    for &sid in &m.sids {
                        own.push(sid).map_err(|_| Error::CapacityExhausted)?;
                    }
                }
            }
        }
        // Confine everything first: a refused command issues nothing.
        for raw in commands {
            confine_guest_command(*raw, vmid, &own)?;
        }
        let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
        for raw in commands {
            batch.add(confine_guest_command(*raw, vmid, &own)?)?;
        }
        batch.submit()
    }

    /// Frees a nested domain: refused ([`Error::DomainBusy`]) while a master's STE may use
    /// it. Its combined TLB entries (tagged with the parent's VMID) are invalidated first, so
    /// a later nested domain on the same parent cannot hit them.
    // The refused domain travels back by value so that the caller keeps it.
    #[allow(clippy::result_large_err)]
    pub fn free_nested_domain<'p, A: TableAllocator>(
        &self,
        domain: NestedDomain<'p, A>,
    ) -> Result<(), (Error, NestedDomain<'p, A>)> {
        if domain.smmu != self.instance {
            return Err((Error::WrongDomainKind, domain));
        }
        if self.any_master(|m| m.refers_to(domain.token)) {
            return Err((Error::DomainBusy, domain));
        }
        let all = Command::TlbiNhAll {
            vmid: domain.parent.id,
        };
        match self.cmdq.issue(&self.hal, &self.regs, &[all], true) {
            Ok(()) => Ok(()),
            Err(e) => Err((e, domain)),
        }
    }
}

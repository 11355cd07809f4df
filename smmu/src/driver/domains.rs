//! Paging domains: creation and freeing with their ASID or VMID, map and unmap, and the
//! invalidation every unmap is followed by (SPEC D6, D8, D9).

use super::*;

impl<R: RegisterAccess, H: Hal, S: StreamTable> Smmu<R, H, S> {
    // ------------------------------------------------------------------ domains

    /// Creates a paging domain with a fresh ASID (stage 1) or VMID (stage 2). A `protected`
    /// domain only maps memory inside the platform's shared windows (SPEC D9).
    ///
    /// The short form of [`Smmu::new_domain_with`]: `new_domain(DomainStage::Stage1, false,
    /// alloc)` is `new_domain_with(DomainOptions::stage1(), alloc)`.
    pub fn new_domain<A: TableAllocator>(
        &self,
        stage: DomainStage,
        protected: bool,
        alloc: A,
    ) -> Result<Domain<A>, Error> {
        let config = table_config(stage, &self.features)?;
        let table = PageTable::new(config, alloc)?;
        let id = match stage {
            DomainStage::Stage1 => self.asids.alloc()?,
            DomainStage::Stage2 => self.vmids.alloc()?,
        };
        // Tokens start at 1; 0 is skipped when the count wraps.
        let mut token = self.next_token.fetch_add(1, Ordering::Relaxed);
        if token == 0 {
            token = self.next_token.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Domain {
            token,
            smmu: self.instance,
            stage,
            protected,
            id,
            nesting_parent: false,
            table: ManuallyDrop::new(table),
        })
    }

    /// Creates a paging domain as `options` describe it, its tables from `alloc`: the
    /// named form of [`Smmu::new_domain`].
    ///
    /// ```
    /// # use smmu::{DomainOptions, MasterConfig, OwnedStreamTable, ResetPlan, Smmu, SmmuConfig};
    /// # use smmu_model::ModelConfig;
    /// # use smmu_model_platform::{tables::ModelTables, ModelPlatform};
    /// # let platform = ModelPlatform::new(ModelConfig::default()).unwrap();
    /// # let (regs, hal) = (platform.regs(), platform.hal());
    /// # let features = smmu::probe::probe(&regs).unwrap();
    /// # let strtab = OwnedStreamTable::for_smmu(&hal, &features, &SmmuConfig::default()).unwrap();
    /// # let mut smmu = Smmu::new(regs, hal.clone(), features, strtab, SmmuConfig::default()).unwrap();
    /// # smmu.reset(&ResetPlan::FULL).unwrap();
    /// let disk = smmu.add_master(&MasterConfig::new(&[0x8]))?;
    /// let domain = smmu.new_domain_with(DomainOptions::stage1(), ModelTables(hal.clone()))?;
    /// smmu.attach(disk, &domain)?;
    /// # Ok::<(), smmu::Error>(())
    /// ```
    pub fn new_domain_with<A: TableAllocator>(
        &self,
        options: DomainOptions,
        alloc: A,
    ) -> Result<Domain<A>, Error> {
        if options.nesting_parent && options.stage != DomainStage::Stage2 {
            return Err(Error::NotNestingParent);
        }
        let mut domain = self.new_domain(options.stage, options.protected, alloc)?;
        domain.nesting_parent = options.nesting_parent;
        Ok(domain)
    }

    pub(super) fn check_domain<A: TableAllocator>(&self, domain: &Domain<A>) -> Result<(), Error> {
        if domain.smmu == self.instance {
            Ok(())
        } else {
            Err(Error::WrongDomainKind)
        }
    }

    /// Frees a domain: refused ([`Error::DomainBusy`]) while any master's STE or CD may still
    /// refer to it: attached, or left referenced by an attach that could not complete or be
    /// undone. Its TLB entries are invalidated before the ID goes back to the allocator, so a
    /// later domain with the same ID cannot hit them.
    // The refused domain travels back by value so that the caller keeps it; boxing it would
    // need an allocator, which this crate does not have.
    #[allow(clippy::result_large_err)]
    pub fn free_domain<A: TableAllocator>(
        &self,
        domain: Domain<A>,
    ) -> Result<(), (Error, Domain<A>)> {
        if self.check_domain(&domain).is_err() {
            return Err((Error::WrongDomainKind, domain));
        }
        // No attach can start meanwhile: it would need to borrow `domain`.
        if self.any_master(|m| m.refers_to(domain.token)) {
            return Err((Error::DomainBusy, domain));
        }
        let scope = self.scope(domain.stage, domain.id);
        if let Err(e) = self
            .cmdq
            .issue(&self.hal, &self.regs, &[scope.wide_command()], true)
        {
            return Err((e, domain));
        }
        let _ = match domain.stage {
            DomainStage::Stage1 => self.asids.free(domain.id),
            DomainStage::Stage2 => self.vmids.free(domain.id),
        };
        // Nothing refers to the tables any more: the page table frees them as it drops.
        drop(domain.into_table());
        Ok(())
    }

    pub(super) fn scope(&self, stage: DomainStage, id: u16) -> TlbScope {
        match stage {
            DomainStage::Stage1 if self.e2h => TlbScope::Stage1El2 { asid: id },
            DomainStage::Stage1 => TlbScope::Stage1 { vmid: 0, asid: id },
            DomainStage::Stage2 => TlbScope::Stage2 { vmid: id },
        }
    }

    /// Attaches `master` to a paging domain. Stage 1: the domain's CD is written (hitlessly)
    /// at SubstreamID 0 of the master's CD table, then the STEs point at the table; stage 2:
    /// the STEs hold the domain's table and VMID. Every STE change goes through the hitless
    /// writer (SPEC D4); the attach completes for every StreamID or leaves every STE as it
    /// was, and a deferred STE stops being deferred only when it completed (SPEC D12, K11).
    pub fn attach<A: TableAllocator>(
        &self,
        master: MasterId,
        domain: &Domain<A>,
    ) -> Result<(), Error> {
        self.check_domain(domain)?;
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        let strtab = self.strtab.read();
        self.config
            .policy
            .check_attach(m.protected, domain.kind(), domain.protected)?;
        let caps = self.caps(m, true);
        let now = Attachment::Paging {
            token: domain.token,
            stage: domain.stage,
            id: domain.id,
        };
        let target = match domain.stage {
            DomainStage::Stage1 => {
                let cd = stage1_cd(&domain.table, domain.id, caps.stall)?;
                // The CD table must exist for the STE to point at it; creating it (empty)
                // changes nothing the SMMU uses.
                self.prepare_cd0(m)?;
                let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?.pointer();
                AttachTarget {
                    ste: make::ste_image(&make::cd_table_ste(
                        self.entry_features,
                        caps,
                        table,
                        S1Dss::Substream0,
                    )),
                    cd0: Some(make::cd_image(&cd)),
                    now,
                }
            }
            DomainStage::Stage2 => AttachTarget {
                ste: make::ste_image(&make::s2_ste(
                    self.entry_features,
                    caps,
                    stage2_table(&domain.table)?,
                    domain.id,
                )),
                cd0: None,
                now,
            },
        };
        self.commit(m, &strtab, &target)
    }

    /// Makes CD 0 of the master's CD table addressable, creating the table on first use, and
    /// returns what it holds now. Nothing the SMMU translates with changes: a new table or
    /// leaf is all-invalid, and a new level-1 descriptor replaces an invalid one.
    pub(super) fn prepare_cd0(&self, m: &mut Master) -> Result<[u64; ENTRY_QWORDS], Error> {
        if m.cd.is_none() {
            let table = CdTable::new(
                &self.hal,
                u32::from(m.ssid_bits),
                self.features.cd2l,
                self.coherent,
            )?;
            m.cd = Some(table);
        }
        let table = m.cd.as_mut().ok_or(Error::NoSuchMaster)?;
        let prepared = table.prepare(&self.hal, 0)?;
        if prepared == CdPrepared::NewLevel1Descriptor {
            let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
            for &sid in &m.sids {
                batch.add(Command::CfgiCd {
                    sid,
                    ssid: 0,
                    leaf: false,
                })?;
            }
            batch.submit()?;
        }
        let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?;
        let (buf, first) = table.locate(0)?;
        let mut image = [0u64; ENTRY_QWORDS];
        for (i, w) in image.iter_mut().enumerate() {
            *w = buf.read(&self.hal, first + i)?;
        }
        Ok(image)
    }

    /// CD 0 of the master's CD table (prepared by [`Smmu::prepare_cd0`]) as the entry
    /// writer sees it.
    pub(super) fn cd0_slot<'a>(&'a self, m: &'a Master) -> Result<LiveEntry<'a, R, H>, Error> {
        let table = m.cd.as_ref().ok_or(Error::NoSuchMaster)?;
        let (buf, first) = table.locate(0)?;
        if first + ENTRY_QWORDS > buf.words() {
            return Err(Error::SubstreamIdOutOfRange(0));
        }
        Ok(LiveEntry {
            buf,
            first,
            hal: &self.hal,
            regs: &self.regs,
            cmdq: &self.cmdq,
            invalidate: Invalidate::Cd {
                sids: &m.sids,
                ssid: 0,
            },
            failed: None,
        })
    }

    /// Writes CD 0 hitlessly. EL1 and EL2-E2H StreamWorlds both honour `EPDx` (the only
    /// ones this driver uses), hence [`CdRules::EL1`].
    pub(super) fn write_cd0(&self, m: &Master, cd: &[u64; ENTRY_QWORDS]) -> Result<(), Error> {
        write_entry(&CdRules::EL1, &mut self.cd0_slot(m)?, cd).map_err(|e| e.error)?;
        Ok(())
    }

    /// Puts CD 0 back to `image` after a failed write, as [`Smmu::restore_ste`] does.
    pub(super) fn restore_cd0(&self, m: &Master, image: &[u64; ENTRY_QWORDS]) -> Result<(), Error> {
        let mut slot = self.cd0_slot(m)?;
        slot.sync()?;
        write_entry(&CdRules::EL1, &mut slot, image).map_err(|e| e.error)?;
        Ok(())
    }

    /// Maps `[iova, iova + size)` to `pa` in a domain. A protected domain refuses physical
    /// memory outside the platform's shared windows before anything changes (SPEC D9).
    ///
    /// Takes the domain by shared reference: several CPUs may map and unmap disjoint ranges of
    /// one domain at once (see [`PageTable`](smmu_pagetable::PageTable) for what overlapping
    /// calls may do).
    pub fn map<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        iova: Iova,
        pa: PhysAddr,
        size: u64,
        prot: Prot,
    ) -> Result<(), Error> {
        self.check_domain(domain)?;
        self.config
            .policy
            .check_map(domain.protected, self.hal.shared_windows(), pa, size)?;
        domain.table.map(iova, pa, size, prot)?;
        Ok(())
    }

    /// Unmaps `[iova, iova + size)` from a domain and invalidates it (SPEC D6): range TLBIs
    /// (or per-page, or one ASID/VMID-wide TLBI), then ATC invalidations for attached ATS
    /// masters, one `CMD_SYNC` each; tables the unmap emptied are released (into the page table's pool) only after that.
    /// Returns the bytes unmapped.
    pub fn unmap<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        iova: Iova,
        size: u64,
    ) -> Result<u64, Error> {
        self.check_domain(domain)?;
        let mut gather = Gather::new();
        let unmapped = domain.table.unmap(iova, size, &mut gather);
        // Whatever the unmap did before failing has to be invalidated too.
        self.invalidate(domain, &gather, iova, size)?;
        // SAFETY: the invalidation covering every table in the gather has completed (its
        // CMD_SYNC returned), so the SMMU can no longer walk them.
        unsafe { domain.table.release(&mut gather) }?;
        Ok(unmapped?)
    }

    pub(super) fn invalidate<A: TableAllocator>(
        &self,
        domain: &Domain<A>,
        gather: &Gather,
        iova: Iova,
        size: u64,
    ) -> Result<(), Error> {
        if gather.is_empty() {
            return Ok(());
        }
        let caps = InvalCaps {
            ril: self.features.range_invalidation,
            max_ops: self.config.max_invalidation_ops,
        };
        let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
        tlbi_commands(
            gather.ranges(),
            self.scope(domain.stage, domain.id),
            &caps,
            &mut |c| batch.add(c),
        )?;
        if domain.nesting_parent {
            // §4.4.3.1: TLBI_S2_IPA need not remove combined stage-1+2 entries of the nested
            // domains on this parent; TLBI_NH_ALL of the VMID does, in the same batch under
            // the one CMD_SYNC (Linux issues it after the range with a sync of its own).
            batch.add(Command::TlbiNhAll { vmid: domain.id })?;
        }
        batch.submit()?;
        // ATC invalidation only after the TLB invalidation completed (§3.9.1).
        if self.ats_masters.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let mut atc = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
        for slot in &self.masters {
            // The StreamIDs are copied out so that no master lock is held while the batch
            // waits for the queue. A master that attaches after the look saw the table
            // already unmapped and invalidated; one that detaches gets a harmless extra
            // invalidation.
            let sids = match slot.lock().as_ref() {
                Some(m) if m.ats && m.refers_to(domain.token) => m.sids.clone(),
                _ => continue,
            };
            for sid in sids {
                atc_commands(sid, None, iova.0, size, &mut |c| atc.add(c))?;
            }
        }
        if !atc.is_empty() {
            atc.submit()?;
        }
        Ok(())
    }
}

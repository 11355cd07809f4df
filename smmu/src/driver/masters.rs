//! Masters: registration, attach and detach, and the hitless commit of their STEs and CD 0
//! (SPEC D4, D8, D9, D12, K11, K12, K22).

use super::*;

impl<R: RegisterAccess, H: Hal, S: StreamTable> Smmu<R, H, S> {
    // ------------------------------------------------------------------ masters

    /// Locks `id`'s slot (which holds a master if `id` came from [`Smmu::add_master`]).
    pub(super) fn lock_master(
        &self,
        id: MasterId,
    ) -> Result<MutexGuard<'_, Option<Master>>, Error> {
        Ok(self
            .masters
            .get(usize::from(id.0))
            .ok_or(Error::NoSuchMaster)?
            .lock())
    }

    /// Whether any master satisfies `f`, each looked at under its own lock.
    pub(super) fn any_master(&self, f: impl Fn(&Master) -> bool) -> bool {
        self.masters
            .iter()
            .any(|m| m.lock().as_ref().is_some_and(&f))
    }

    pub(super) fn owner_of(&self, sid: u32) -> bool {
        self.any_master(|m| m.sids.contains(&sid))
    }

    /// Registers a master and makes its STEs addressable (allocating level-2 tables as
    /// needed). Its STEs are not changed: a new master stays blocked (the driver's table
    /// is filled with abort), and an adopted STE stays as the crashed kernel left it until
    /// an explicit attach (SPEC K11).
    ///
    /// One at a time (see [`Smmu`]'s lock order); it waits for attaches in flight.
    pub fn add_master(&self, config: &MasterConfig<'_>) -> Result<MasterId, Error> {
        self.config
            .policy
            .check_master(config.protected, config.ats)?;
        if config.ats && !self.features.ats {
            return Err(Error::Unsupported("ATS"));
        }
        if u32::from(config.ssid_bits) > u32::from(self.features.ssid_bits) {
            return Err(Error::SubstreamIdOutOfRange(1 << config.ssid_bits.min(31)));
        }
        let _registration = self.registration.lock();
        let log2_size = self.strtab.read().log2_size();
        let mut sids = Vec::new();
        for &sid in config.sids {
            if u64::from(sid) >> log2_size != 0 {
                return Err(Error::StreamIdOutOfRange(sid));
            }
            if self.owner_of(sid) || sids.contains(&sid) {
                return Err(Error::StreamIdInUse(sid));
            }
            sids.push(sid).map_err(|_| Error::CapacityExhausted)?;
        }
        if sids.is_empty() {
            return Err(Error::NoSuchMaster);
        }
        // Slots are filled only under the registration lock, which this holds.
        let slot = self
            .masters
            .iter()
            .position(|m| m.lock().is_none())
            .ok_or(Error::CapacityExhausted)?;
        let fill = make::ste_image(&make::abort_ste());
        for &sid in &sids {
            let prepared = self.strtab.write().prepare(&self.hal, sid, &fill)?;
            if prepared == Prepared::NewLevel1Descriptor {
                // The SMMU may have cached the invalid descriptor (§4.3.1, Leaf = 0).
                self.cmdq.issue(
                    &self.hal,
                    &self.regs,
                    &[Command::CfgiSte { sid, leaf: false }],
                    true,
                )?;
            }
        }
        if config.ats {
            // Before the master can be attached: an unmap that could miss it cannot have
            // reached its ATC.
            self.ats_masters.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(m) = self.masters.get(slot) {
            *m.lock() = Some(Master {
                sids,
                protected: config.protected,
                ats: config.ats,
                stall: config.stall,
                ssid_bits: config.ssid_bits,
                cd: None,
                attached: Attachment::Initial,
                lingering: Vec::new(),
            });
        }
        let id = MasterId(slot as u16);
        if config.protected {
            self.confine_inherited_bypass(id)?;
        }
        Ok(id)
    }

    /// SPEC K22 (D9 outranks K12): a protected master never keeps an STE that lets traffic
    /// bypass translation — one inherited from an adopted table with `Config` = bypass, or a
    /// stage-1-only STE whose `S1DSS` lets transactions without a SubstreamID bypass stage 1
    /// (§5.2: S1DSS is used only with `S1CDMax` ≠ 0, which the decoder honours). Such STEs are
    /// replaced by abort at once, hitlessly, and the report says so; the master is then
    /// [`Attachment::Blocked`] until its driver attaches a paging domain. If the replacement
    /// fails, the registration is undone and the error returned: nothing changed.
    pub(super) fn confine_inherited_bypass(&self, id: MasterId) -> Result<(), Error> {
        let bypassing = {
            let guard = self.lock_master(id)?;
            let m = guard.as_ref().ok_or(Error::NoSuchMaster)?;
            let strtab = self.strtab.read();
            m.sids.iter().copied().find(|&sid| {
                Self::locate_ste(&strtab, sid)
                    .and_then(|loc| loc.read(&self.hal))
                    .is_ok_and(|w| lets_traffic_bypass(&w))
            })
        };
        let Some(sid) = bypassing else {
            return Ok(());
        };
        report!(
            warn,
            "protected master with StreamID {sid:#x}: its inherited STE lets DMA bypass \
             translation; replaced by abort (a protected master never bypasses)"
        );
        if let Err(e) = self.attach_blocked(id) {
            if let Some(m) = self.masters.get(usize::from(id.0)) {
                let ats = m.lock().take().is_some_and(|m| m.ats);
                if ats {
                    self.ats_masters.fetch_sub(1, Ordering::SeqCst);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// What `master` is attached to.
    pub fn attachment(&self, master: MasterId) -> Result<Attachment, Error> {
        let m = self.lock_master(master)?;
        Ok(m.as_ref().ok_or(Error::NoSuchMaster)?.attached)
    }

    /// The StreamIDs of `master`.
    pub fn master_sids(&self, master: MasterId) -> Result<Vec<u32, MAX_SIDS_PER_MASTER>, Error> {
        let m = self.lock_master(master)?;
        Ok(m.as_ref().ok_or(Error::NoSuchMaster)?.sids.clone())
    }

    /// Whether any STE of `master` is still deferred (adopted and not yet replaced).
    pub fn is_deferred(&self, master: MasterId) -> Result<bool, Error> {
        let m = self.lock_master(master)?;
        let m = m.as_ref().ok_or(Error::NoSuchMaster)?;
        let strtab = self.strtab.read();
        Ok(m.sids.iter().any(|&s| strtab.is_deferred(s)))
    }

    pub(super) fn caps(&self, m: &Master, paging: bool) -> MasterCaps {
        MasterCaps {
            ats: m.ats && paging,
            stall: m.stall && self.features.stall_model != StallModel::NoStall,
        }
    }

    /// `sid`'s STE as the entry writer sees it.
    pub(super) fn ste_slot<'a>(
        &'a self,
        strtab: &'a S,
        sid: u32,
    ) -> Result<LiveEntry<'a, R, H>, Error> {
        let loc = Self::locate_ste(strtab, sid)?;
        Ok(LiveEntry {
            buf: loc.buf,
            first: loc.first_word,
            hal: &self.hal,
            regs: &self.regs,
            cmdq: &self.cmdq,
            invalidate: Invalidate::Ste(sid),
            failed: None,
        })
    }

    /// One STE through the hitless writer.
    pub(super) fn write_ste(
        &self,
        strtab: &S,
        sid: u32,
        target: &[u64; ENTRY_QWORDS],
    ) -> Result<WriteReport, Error> {
        write_entry(&SteRules, &mut self.ste_slot(strtab, sid)?, target).map_err(|e| e.error)
    }

    /// Puts `sid`'s STE back to `image` after a failed write. The failed step's sync did not
    /// complete, so the SMMU may hold any image the entry took since its last completed
    /// sync; the writer plans from the entry as it is in memory, so that invalidation is
    /// issued again first and the writer starts from what the SMMU can see (SPEC D4).
    pub(super) fn restore_ste(
        &self,
        strtab: &S,
        sid: u32,
        image: &[u64; ENTRY_QWORDS],
    ) -> Result<(), Error> {
        let mut slot = self.ste_slot(strtab, sid)?;
        slot.sync()?;
        write_entry(&SteRules, &mut slot, image).map_err(|e| e.error)?;
        Ok(())
    }

    /// Where `sid`'s STE is, with its eight words checked to lie in the buffer.
    pub(super) fn locate_ste(
        strtab: &S,
        sid: u32,
    ) -> Result<crate::strtab::SteLocation<'_>, Error> {
        let loc = strtab.locate(sid)?;
        if loc.first_word + ENTRY_QWORDS > loc.buf.words() {
            return Err(Error::StreamIdOutOfRange(sid));
        }
        Ok(loc)
    }

    /// Attaches `master` to the blocked domain: every STE aborts. Always allowed, also for
    /// protected and deferred masters (it is how a deferred master is released, SPEC K12).
    pub fn attach_blocked(&self, master: MasterId) -> Result<(), Error> {
        let target = AttachTarget {
            ste: make::ste_image(&make::abort_ste()),
            cd0: None,
            now: Attachment::Blocked,
        };
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        self.commit(m, &self.strtab.read(), &target)
    }

    /// Detaching is attaching to the blocked domain (SPEC D8, D9: a protected master is left
    /// aborting).
    pub fn detach(&self, master: MasterId) -> Result<(), Error> {
        self.attach_blocked(master)
    }

    /// Attaches `master` to the identity domain (bypass). Refused for protected masters
    /// (SPEC D9) and while any of its STEs is deferred (SPEC K12).
    pub fn attach_identity(&self, master: MasterId) -> Result<(), Error> {
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        self.identity_locked(m, &self.strtab.read(), Rewrite::Identity)
    }

    /// Puts `m` on a bypass STE for `why`, once [`policy::check_rewrite`] allows it: a
    /// deferred STE is only ever replaced by a translating attach or released to abort (SPEC
    /// K12), so an identity default domain must not widen what it allows.
    pub(super) fn identity_locked(
        &self,
        m: &mut Master,
        strtab: &S,
        why: Rewrite,
    ) -> Result<(), Error> {
        let stes = RewriteTarget {
            master_protected: m.protected,
            first_deferred: m.sids.iter().copied().find(|&s| strtab.is_deferred(s)),
            first_inherited: m.sids.iter().copied().find(|&s| strtab.is_inherited(s)),
        };
        policy::check_rewrite(why, &stes)?;
        let target = AttachTarget {
            ste: make::ste_image(&make::bypass_ste(self.entry_features)),
            cd0: None,
            now: Attachment::Identity,
        };
        self.commit(m, strtab, &target)
    }

    /// Installs a bypass STE for a reserved-memory (RMR) region's StreamID. Refused for
    /// protected masters (SPEC D9), for deferred STEs (SPEC K12) and for every STE that lives
    /// in a structure inherited from the crashed kernel, whatever it holds now (SPEC K10):
    /// the stream table knows which those are ([`StreamTable::is_inherited`]).
    pub fn install_rmr_bypass(&self, master: MasterId) -> Result<(), Error> {
        let mut guard = self.lock_master(master)?;
        let m = guard.as_mut().ok_or(Error::NoSuchMaster)?;
        self.identity_locked(m, &self.strtab.read(), Rewrite::RmrBypass)
    }

    /// The one way STEs and CD 0 change (SPEC D4, D12, K11): an attach completes for every
    /// StreamID of the master or leaves every STE (and CD 0) as it was.
    ///
    /// 1. Everything that can fail without a live write is done first: every STE located
    ///    and its current image saved, the CD table allocated and CD 0 made addressable (a
    ///    new leaf is all-invalid, so publishing it changes no translation), CD 0 saved, room
    ///    checked for what a failure would have to record.
    /// 2. The live writes, each through the hitless writer: CD 0 (stage 1: a master already
    ///    on the CD table switches here), then every STE in order.
    /// 3. A write that fails undoes, in reverse order, every write made so far, the failed
    ///    one included, back to the saved image: its invalidation is issued again (the failed
    ///    sync left the SMMU's view unknown), then the hitless writer takes it back. The
    ///    deferred state of the STEs is untouched and the master's attachment is unchanged.
    ///    If undoing fails too, the master is recorded as [`Attachment::Indeterminate`] and
    ///    both domains stay referenced.
    /// 4. Only once every STE holds the target is the deferred state cleared; then CD 0 is
    ///    invalidated when the STEs no longer reach the CD table (so no CD names a domain the
    ///    master left), and the ATC is invalidated when the master had translations.
    ///
    /// The caller holds the master's lock (`m`) and the stream table's read lock (`strtab`).
    pub(super) fn commit(
        &self,
        m: &mut Master,
        strtab: &S,
        target: &AttachTarget,
    ) -> Result<(), Error> {
        // ---- 1. preparation: nothing live changes
        let sids = m.sids.clone();
        let before = m.attached;
        let extra = before
            .tokens()
            .into_iter()
            .chain(target.now.tokens())
            .flatten()
            .filter(|t| !m.lingering.contains(t))
            .count();
        if m.lingering.len() + extra > MAX_LINGERING {
            return Err(Error::CapacityExhausted);
        }
        let mut saved: Vec<[u64; ENTRY_QWORDS], MAX_SIDS_PER_MASTER> = Vec::new();
        for &sid in &sids {
            let image = Self::locate_ste(strtab, sid)?.read(&self.hal)?;
            saved.push(image).map_err(|_| Error::CapacityExhausted)?;
        }
        let saved_cd = match target.cd0 {
            Some(_) => Some(self.prepare_cd0(m)?),
            None => None,
        };

        // ---- 2. live writes
        let mut failure = None;
        if let Some(cd) = &target.cd0 {
            if let Err(e) = self.write_cd0(m, cd) {
                failure = Some((e, 0));
            }
        }
        if failure.is_none() {
            for (i, &sid) in sids.iter().enumerate() {
                if let Err(e) = self.write_ste(strtab, sid, &target.ste) {
                    failure = Some((e, i + 1));
                    break;
                }
            }
        }

        // ---- 3. undo
        if let Some((error, touched)) = failure {
            let mut restored = true;
            for (&sid, image) in sids.iter().zip(&saved).take(touched).rev() {
                restored &= self.restore_ste(strtab, sid, image).is_ok();
            }
            if let Some(image) = &saved_cd {
                restored &= self.restore_cd0(m, image).is_ok();
            }
            if !restored {
                for t in before
                    .tokens()
                    .into_iter()
                    .chain(target.now.tokens())
                    .flatten()
                {
                    if !m.lingering.contains(&t) {
                        // Cannot fail: room was checked in step 1.
                        let _ = m.lingering.push(t);
                    }
                }
                m.attached = Attachment::Indeterminate;
            }
            return Err(error);
        }

        // ---- 4. completed for every StreamID
        for &sid in &sids {
            strtab.clear_deferred(sid);
        }
        let mut cleanup = Ok(());
        if target.cd0.is_none() && m.cd.is_some() {
            // The STEs no longer reach the CD table (their change was synced): CD 0 goes
            // invalid, so it names no domain the master left.
            let invalid = [0u64; ENTRY_QWORDS];
            cleanup = self
                .prepare_cd0(m)
                .and_then(|_| self.write_cd0(m, &invalid));
        }
        let atc_dirty = m.ats
            && (!m.lingering.is_empty()
                || (before != target.now
                    && matches!(
                        before,
                        Attachment::Paging { .. } | Attachment::Indeterminate
                    )));
        if cleanup.is_ok() && atc_dirty {
            // §3.9.1: the ATC is invalidated after the STE change is visible.
            let mut batch = CommandBatch::new(&self.cmdq, &self.hal, &self.regs);
            cleanup = sids
                .iter()
                .try_for_each(|&sid| {
                    atc_commands(sid, None, 0, u64::MAX, &mut |c| batch.add(c)).map(|_| ())
                })
                .and_then(|()| batch.submit());
        }
        m.attached = target.now;
        match cleanup {
            Ok(()) => {
                m.lingering.clear();
                Ok(())
            }
            Err(e) => {
                // Every STE switched, but CD 0 or the ATC may still use the previous domain.
                for t in before.tokens().into_iter().flatten() {
                    if !m.lingering.contains(&t) {
                        // Cannot fail: room was checked in step 1.
                        let _ = m.lingering.push(t);
                    }
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    // spec: D12, K11
    #[test]
    fn an_attach_failing_at_any_submission_leaves_every_ste_as_it_was() {
        let hal = HostHal::new();
        let (regs, stalls) = fake_smmu_regs();
        let smmu = new_smmu(&regs, &hal, false);
        let sids = [1, 2, 3];
        let m = smmu
            .add_master(&MasterConfig {
                sids: &sids,
                protected: false,
                ats: false,
                stall: false,
                ssid_bits: 0,
            })
            .unwrap();
        let before = stes(&smmu, &sids);
        let mut failures = 0;
        for n in 0..32 {
            stalls.set(n, 1);
            let result = smmu.attach_identity(m);
            stalls.set(NEVER, 0);
            if result.is_ok() {
                break;
            }
            failures += 1;
            assert_eq!(result, Err(Error::Timeout(WaitFor::CmdSync)), "n {n}");
            assert_eq!(smmu.attachment(m).unwrap(), Attachment::Initial, "n {n}");
            assert_eq!(stes(&smmu, &sids), before, "n {n}");
        }
        assert!(failures >= sids.len(), "{failures}");
        assert_eq!(smmu.attachment(m).unwrap(), Attachment::Identity);
        let bypass = make::ste_image(&make::bypass_ste(smmu.entry_features));
        assert!(stes(&smmu, &sids).iter().all(|s| *s == bypass));

        // The queue stops for good in the middle: undoing fails too, and the record says so.
        stalls.set(1, u64::MAX);
        assert!(smmu.attach_blocked(m).is_err());
        assert_eq!(smmu.attachment(m).unwrap(), Attachment::Indeterminate);
        stalls.set(NEVER, 0);
        smmu.attach_blocked(m).unwrap();
        assert_eq!(smmu.attachment(m).unwrap(), Attachment::Blocked);
        assert_eq!(stes(&smmu, &sids), before);
        // SAFETY: a fake SMMU; nothing uses the buffers any more.
        unsafe { smmu.release() };
        assert_eq!(hal.live_allocations(), 0);
    }
}

//! PCIe ATS (§3.9.1): Translation Requests, Translated transactions, and the endpoints' ATCs
//! that CMD_ATC_INV reaches (§4.5.1).
//!
//! An ATS endpoint ([`Model::ats_dma`], or a master after [`Model::set_master_ats`]) looks its
//! ATC up; on a miss it sends a Translation Request ([`Model::ats_translate`]) and caches the
//! granted translation; then it issues the access as a Translated transaction
//! ([`Model::dma_translated`]), which the SMMU lets through, checks against STE.EATS
//! (CR0.ATSCHK = 1), or translates at stage 2 (split-stage ATS). CMD_ATC_INV marks the
//! entries it covers; they stay usable until the next CMD_SYNC completes.

use crate::cache::{AtcEntry, ATC_CAPACITY};
use crate::decode::{SteDec, StePlan};
use crate::fields::{evt, reg};
use crate::master::Outcome;
use crate::mem::PAGE;
use crate::model::Model;
use crate::txn::{Cause, Event, Transaction, TxnResult};

/// The completion of an ATS Translation Request (§3.9.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AtsCompletion {
    /// Success for the request's 4 KiB page (the STU): the output address and the permissions
    /// granted. R = W = X = 0 means access denied (a translation, address-size or access fault).
    Success {
        /// Output address of the page (PA; the stage-1 IPA with split-stage ATS is not modelled).
        pa: u64,
        /// Read granted.
        read: bool,
        /// Write granted.
        write: bool,
        /// Execute granted.
        exec: bool,
    },
    /// Unsupported Request: ATS is disabled for the stream (SMMUEN = 0, effective EATS = 0b00,
    /// a bypass or abort STE).
    UnsupportedRequest,
    /// Completer Abort: a configuration error (bad StreamID, STE, CD, substream, walk abort).
    CompleterAbort,
}

fn key(sid: u32, ssid: Option<u32>, iova: u64) -> (u32, u32, u64) {
    (sid, ssid.unwrap_or(u32::MAX), iova >> 12)
}

fn grants(e: &AtcEntry, t: &Transaction) -> bool {
    if t.write {
        e.write
    } else if t.instruction {
        e.exec
    } else {
        e.read
    }
}

impl Model {
    /// Effective STE.EATS (§5.2): 1 Full ATS, 2 split-stage, 0 ATS disabled. Split-stage
    /// behaves as 0b00 without ATSCHK; 0b11 (DPT) behaves as 0b00 without IDR3.DPT.
    fn eats_effective(&self, plan: &StePlan) -> u8 {
        match plan.eats {
            0b01 => 1,
            0b10 if self.cr0ack & reg::CR0_ATSCHK != 0 => 2,
            _ => 0,
        }
    }

    /// The STE of `t.sid` without event records (ATS paths, §7.3.6, §3.9.1.3).
    fn ste_quiet(&mut self, t: &Transaction) -> Result<SteDec, Cause> {
        self.quiet = true;
        let r = self.get_ste(t);
        self.quiet = false;
        r.map_err(|r| match r {
            TxnResult::Abort { cause, .. } => cause,
            _ => Cause::BadSte,
        })
    }

    fn bad_ats_treq(&mut self, t: &Transaction) -> AtsCompletion {
        // §7.3.6: StreamID, SubstreamID and the requested address (the R/W/X/PRIV positions
        // are in an unrendered figure and are not written).
        let mut raw = [0u64; 4];
        evt::ID.set(&mut raw, u64::from(evt::F_BAD_ATS_TREQ));
        evt::SID.set(&mut raw, u64::from(t.sid));
        if let Some(s) = t.ssid {
            evt::SSV.set(&mut raw, 1);
            evt::SSID.set(&mut raw, u64::from(s));
        }
        evt::INPUT_ADDR.set(&mut raw, t.iova);
        self.emit_event(Event { raw });
        AtsCompletion::UnsupportedRequest
    }

    /// Answers an ATS Translation Request for the 4 KiB page of `t.iova` from stream `t.sid`
    /// (§3.9.1.2). `t.write` asks for write permission, `t.instruction` for execute, read is
    /// always asked. Faults are not recorded (the endpoint sees R = W = X = 0); only
    /// F_BAD_ATS_TREQ is. The SMMU's TLB may be filled, as for an ordinary transaction.
    pub fn ats_translate(&mut self, t: &Transaction) -> AtsCompletion {
        if !self.prof.ats() {
            return AtsCompletion::UnsupportedRequest;
        }
        if !self.smmu_on() {
            return self.bad_ats_treq(t);
        }
        let plan = match self.ste_quiet(t) {
            Err(_) | Ok(SteDec::Illegal) => return AtsCompletion::CompleterAbort,
            Ok(SteDec::Abort) => return AtsCompletion::UnsupportedRequest,
            Ok(SteDec::Bypass) => return self.bad_ats_treq(t),
            Ok(SteDec::Xlate(plan)) => plan,
        };
        match self.eats_effective(&plan) {
            0 => return self.bad_ats_treq(t),
            // Split-stage responses (the stage-1 IPA with both stages' permissions, §13.6.3)
            // are not modelled.
            2 => return AtsCompletion::CompleterAbort,
            _ => {}
        }
        let page = t.iova & !(PAGE - 1);
        let base = Transaction {
            iova: page,
            write: false,
            instruction: false,
            ..*t
        };
        let mut asks = vec![(base, 0usize)];
        if t.write {
            asks.push((
                Transaction {
                    write: true,
                    ..base
                },
                1,
            ));
        }
        if t.instruction {
            asks.push((
                Transaction {
                    instruction: true,
                    ..base
                },
                2,
            ));
        }
        let mut granted = [false; 3];
        let mut pa = None;
        self.quiet = true;
        let mut verdict = None;
        for (ask, i) in asks {
            match self.xlate(&ask, &plan) {
                Ok(out) => {
                    granted[i] = true;
                    pa.get_or_insert(out & !(PAGE - 1));
                }
                // The stage that faulted denies this permission only (§13.7).
                Err(f) if f.cause == Cause::Permission && f.class == evt::CLASS_IN => {}
                Err(f) => {
                    verdict = Some(match f.cause {
                        // Translation-related faults, including stage 2 on a CD or table
                        // fetch: Success with R = W = 0.
                        Cause::Translation
                        | Cause::AddrSize
                        | Cause::Access
                        | Cause::Permission => AtsCompletion::Success {
                            pa: 0,
                            read: false,
                            write: false,
                            exec: false,
                        },
                        _ => AtsCompletion::CompleterAbort,
                    });
                    break;
                }
            }
        }
        self.quiet = false;
        if let Some(v) = verdict {
            return v;
        }
        AtsCompletion::Success {
            pa: pa.unwrap_or(0),
            read: granted[0],
            write: granted[1],
            exec: granted[2],
        }
    }

    fn forbidden(&mut self, t: &Transaction) -> TxnResult {
        let e = Self::event(evt::F_TRANSL_FORBIDDEN, t);
        self.emit_event(e);
        TxnResult::Abort {
            cause: Cause::TranslForbidden,
            event: Some(e),
        }
    }

    /// An ATS Translated transaction at `t.iova` (a PA, or an IPA under split-stage ATS), as
    /// the SMMU handles it (§3.9.1.3, §5.2 EATS, §6.3.9 ATSCHK). Passing traffic is reported as
    /// [`TxnResult::Bypass`]. Without PASIDTT the transaction counts as PnU = 0, InD = 0,
    /// SSV = 0.
    fn translated_access(&mut self, t: &Transaction) -> TxnResult {
        let t = Transaction {
            ssid: None,
            privileged: false,
            instruction: false,
            ..*t
        };
        // No ATS in the SMMU: no Translated traffic passes (§5.2 EATS: IGNORED, "nor
        // Translated traffic passed").
        if !self.prof.ats() {
            return TxnResult::Abort {
                cause: Cause::TranslForbidden,
                event: None,
            };
        }
        if !self.smmu_on() {
            return self.forbidden(&t);
        }
        // A PA above the OAS: terminated without an event (the IMPLEMENTATION DEFINED choice of
        // §3.9.1.1 this model makes).
        let pass = |t: &Transaction, oas: u32| {
            if t.iova >> oas != 0 {
                TxnResult::Abort {
                    cause: Cause::AddrSize,
                    event: None,
                }
            } else {
                TxnResult::Bypass { pa: t.iova }
            }
        };
        let oas = self.prof.oas_bits();
        if self.cr0ack & reg::CR0_ATSCHK == 0 {
            // Fast mode: no stream-table or TLB lookup at all.
            return pass(&t, oas);
        }
        // Safe mode. Configuration errors abort without events (no REC_CFG_ATS).
        let plan = match self.ste_quiet(&t) {
            Err(cause) => return TxnResult::Abort { cause, event: None },
            Ok(SteDec::Illegal) => {
                return TxnResult::Abort {
                    cause: Cause::BadSte,
                    event: None,
                }
            }
            Ok(SteDec::Abort) => {
                return TxnResult::Abort {
                    cause: Cause::SteAbort,
                    event: None,
                }
            }
            Ok(SteDec::Bypass) => return self.forbidden(&t),
            Ok(SteDec::Xlate(plan)) => plan,
        };
        match self.eats_effective(&plan) {
            0 => self.forbidden(&t),
            1 => pass(&t, oas),
            _ => {
                // Split-stage: the address is an IPA for stage 2; faults are recorded as for
                // an ordinary transaction, the IAS check first (reported as stage 1).
                let s2only = StePlan { s1: false, ..plan };
                match self.xlate(&t, &s2only) {
                    Ok(pa) => TxnResult::Translated { pa },
                    Err(f) => self.fault_result(f, &t),
                }
            }
        }
    }

    /// Runs one ATS Translated transaction now and records its outcome (see the module docs).
    pub fn dma_translated(&mut self, t: Transaction) -> TxnResult {
        let result = self.translated_access(&t);
        self.record(None, t, result);
        result
    }

    fn record(&mut self, master: Option<usize>, txn: Transaction, result: TxnResult) {
        if self.outcomes.len() < 1 << 20 {
            self.outcomes.push(Outcome {
                master,
                epoch: self.epoch,
                txn,
                result,
            });
        }
    }

    /// An access by an ATS endpoint: its ATC, a Translation Request on a miss, then the
    /// Translated transaction. `Translated { pa }` when the access reached memory.
    pub(crate) fn ats_access(&mut self, t: &Transaction) -> TxnResult {
        let k = key(t.sid, t.ssid, t.iova);
        let hit = self.atc.entries.get(&k).copied().filter(|e| grants(e, t));
        let page = if let Some(e) = hit {
            e.pa
        } else {
            let AtsCompletion::Success {
                pa,
                read,
                write,
                exec,
            } = self.ats_translate(t)
            else {
                return TxnResult::Abort {
                    cause: Cause::AtsDenied,
                    event: None,
                };
            };
            let e = AtcEntry {
                sid: t.sid,
                ssid: t.ssid,
                iova: t.iova & !(PAGE - 1),
                pa,
                read,
                write,
                exec,
                invalidating: false,
            };
            if read || write || exec {
                if self.atc.entries.len() >= ATC_CAPACITY {
                    self.atc.entries.pop_first();
                }
                self.atc.entries.insert(k, e);
            }
            if !grants(&e, t) {
                return TxnResult::Abort {
                    cause: Cause::AtsDenied,
                    event: None,
                };
            }
            pa
        };
        let tt = Transaction {
            iova: page | (t.iova & (PAGE - 1)),
            ..*t
        };
        match self.translated_access(&tt) {
            TxnResult::Bypass { pa } => TxnResult::Translated { pa },
            other => other,
        }
    }

    /// Runs one access of an ATS endpoint now and records its outcome: ATC lookup,
    /// Translation Request on a miss ([`Model::ats_translate`]), then the Translated
    /// transaction ([`Model::dma_translated`]). `Translated { pa }` if it reached memory.
    pub fn ats_dma(&mut self, t: Transaction) -> TxnResult {
        let result = self.ats_access(&t);
        self.record(None, t, result);
        result
    }

    /// Every endpoint's ATC entries, in (StreamID, PASID, address) order.
    pub fn atc_entries(&self) -> Vec<AtcEntry> {
        self.atc.entries.values().copied().collect()
    }

    /// CMD_ATC_INV (§4.5.1): marks the entries of `sid` in the aligned span of 4 KiB << `size`
    /// around `addr` (all of them for `size` ≥ 52); without a PASID every PASID's entries are
    /// covered. They go when the next CMD_SYNC completes.
    pub(crate) fn atc_inv(&mut self, sid: u32, ssid: Option<u32>, addr: u64, size: u8) {
        let (lo, hi) = if size >= 52 {
            (0, u64::MAX)
        } else {
            let span = PAGE << size;
            let lo = addr & !(span - 1);
            (lo, lo.saturating_add(span - 1))
        };
        let mut released = Vec::new();
        for e in self.atc.entries.values_mut() {
            let hit = e.sid == sid
                && ssid.is_none_or(|s| e.ssid == Some(s))
                && e.iova >= lo
                && e.iova <= hi;
            if hit && !e.invalidating {
                e.invalidating = true;
                released.push(e.pa);
            }
        }
        for pa in released {
            if self.unsynced.len() < 4096 {
                self.unsynced
                    .insert(pa, "page released by ATC_INV before CMD_SYNC");
            }
        }
    }

    /// A CMD_SYNC completed: the ATC invalidations before it are done.
    pub(crate) fn atc_complete(&mut self) {
        self.atc.entries.retain(|_, e| !e.invalidating);
    }
}

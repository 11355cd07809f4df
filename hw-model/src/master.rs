//! DMA masters (SPEC M4): scripted or seeded-random transaction streams and their outcomes.

use crate::model::{Event, Model};
use crate::util::Rng;
use crate::xlate::Cause;

/// One DMA transaction presented to the SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (PASID), if any.
    pub ssid: Option<u32>,
    /// Input address.
    pub iova: u64,
    /// Write (true) or read.
    pub write: bool,
    /// Size in bytes (the data access is clamped to the 4 KiB page).
    pub size: u32,
    /// Privileged (PnU = 1) access.
    pub privileged: bool,
    /// Instruction (InD = 1) access.
    pub instruction: bool,
}

impl Transaction {
    /// A privileged data read of 8 bytes.
    pub fn read(sid: u32, iova: u64) -> Self {
        Self {
            sid,
            ssid: None,
            iova,
            write: false,
            size: 8,
            privileged: true,
            instruction: false,
        }
    }
    /// A privileged data write of 8 bytes.
    pub fn write(sid: u32, iova: u64) -> Self {
        Self {
            write: true,
            ..Self::read(sid, iova)
        }
    }
    /// The same transaction with a SubstreamID.
    pub fn with_ssid(mut self, ssid: u32) -> Self {
        self.ssid = Some(ssid);
        self
    }
    /// The same transaction, unprivileged.
    pub fn unprivileged(mut self) -> Self {
        self.privileged = false;
        self
    }
}

/// What happened to a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnResult {
    /// Translated to this physical address.
    Translated {
        /// Output PA.
        pa: u64,
    },
    /// Passed through untranslated (GBPA bypass or STE bypass).
    Bypass {
        /// Output PA (= input address).
        pa: u64,
    },
    /// Terminated, with the event record if one was generated.
    Abort {
        /// Why.
        cause: Cause,
        /// The event generated (whether or not the queue accepted it).
        event: Option<Event>,
    },
}

impl TxnResult {
    /// The output PA if the transaction went through.
    pub fn pa(&self) -> Option<u64> {
        match self {
            Self::Translated { pa } | Self::Bypass { pa } => Some(*pa),
            Self::Abort { .. } => None,
        }
    }
}

/// A recorded transaction outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The master that issued it (`None` for [`Model::dma`]).
    pub master: Option<usize>,
    /// Warm-restart epoch when it ran.
    pub epoch: u32,
    /// The transaction.
    pub txn: Transaction,
    /// Its result.
    pub result: TxnResult,
}

/// How a master chooses transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Replays the list cyclically.
    Script(Vec<Transaction>),
    /// Seeded random: SID from `sids`, IOVA in `[iova_base, iova_base + iova_len)` (8-byte
    /// aligned), write with probability `write_percent`/100.
    Random {
        /// StreamIDs to pick from.
        sids: Vec<u32>,
        /// SubstreamID for every transaction.
        ssid: Option<u32>,
        /// IOVA window base.
        iova_base: u64,
        /// IOVA window length.
        iova_len: u64,
        /// Percentage of writes.
        write_percent: u8,
    },
}

/// A DMA master description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterSpec {
    /// Transaction source.
    pub pattern: Pattern,
    /// Whether translated transactions move data (writes store a pattern, reads load).
    pub data: bool,
}

impl MasterSpec {
    /// A scripted master that does not move data.
    pub fn script(txns: Vec<Transaction>) -> Self {
        Self {
            pattern: Pattern::Script(txns),
            data: false,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Master {
    pub(crate) spec: MasterSpec,
    pub(crate) running: bool,
    /// An ATS endpoint: its accesses go through its ATC ([`Model::set_master_ats`]).
    pub(crate) ats: bool,
    cursor: usize,
    rng: Rng,
    seq: u64,
}

impl Master {
    pub(crate) fn new(spec: MasterSpec, seed: u64) -> Self {
        Self {
            spec,
            running: true,
            ats: false,
            cursor: 0,
            rng: Rng::new(seed),
            seq: 0,
        }
    }

    pub(crate) fn next_txn(&mut self) -> Transaction {
        self.seq += 1;
        match &self.spec.pattern {
            Pattern::Script(v) => {
                if v.is_empty() {
                    return Transaction::read(0, 0);
                }
                let t = v[self.cursor % v.len()];
                self.cursor = self.cursor.wrapping_add(1);
                t
            }
            Pattern::Random {
                sids,
                ssid,
                iova_base,
                iova_len,
                write_percent,
            } => {
                let sid = if sids.is_empty() {
                    0
                } else {
                    sids[self.rng.below(sids.len() as u64) as usize]
                };
                let off = self.rng.below((*iova_len / 8).max(1)) * 8;
                let write = self.rng.below(100) < u64::from(*write_percent);
                Transaction {
                    sid,
                    ssid: *ssid,
                    iova: iova_base.wrapping_add(off),
                    write,
                    size: 8,
                    privileged: true,
                    instruction: false,
                }
            }
        }
    }
}

impl Model {
    pub(crate) fn dma_access(&mut self, t: &Transaction, data: bool) -> TxnResult {
        let r = self.translate(t);
        self.move_data(t, r, data);
        r
    }

    /// Moves the data of a transaction that reached memory (when the master moves data).
    pub(crate) fn move_data(&mut self, t: &Transaction, r: TxnResult, data: bool) {
        if data {
            if let Some(pa) = r.pa() {
                let n = u64::from(t.size).min(4096 - (pa & 0xFFF)).min(64) as usize;
                if t.write {
                    let bytes: Vec<u8> = (0..n)
                        .map(|i| (t.iova as u8).wrapping_add(i as u8))
                        .collect();
                    let _ = self.mem.dev_write(pa, &bytes);
                } else {
                    let mut b = vec![0u8; n];
                    let _ = self.mem.dev_read(pa, &mut b, self.cfg.smmu_encrypted_attr);
                }
            }
        }
    }

    /// Runs one device transaction now (no data movement) and records its outcome.
    pub fn dma(&mut self, t: Transaction) -> TxnResult {
        let result = self.translate(&t);
        if self.outcomes.len() < 1 << 20 {
            self.outcomes.push(Outcome {
                master: None,
                epoch: self.epoch,
                txn: t,
                result,
            });
        }
        result
    }
}

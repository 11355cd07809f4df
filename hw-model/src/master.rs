//! DMA masters (SPEC M4): scripted or seeded-random transaction streams and their outcomes.

use crate::txn::{Transaction, TxnResult};
use crate::util::Rng;

/// A recorded transaction outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The master that issued it (`None` for [`Model::dma`](crate::Model::dma)).
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

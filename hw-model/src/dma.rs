//! Device traffic (SPEC M4): one-off DMA and the data a master's access moves.

use crate::master::Outcome;
use crate::model::Model;
use crate::txn::{Transaction, TxnResult};

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
        self.log_freed_reads();
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

//! A bit-accurate, strict Arm SMMUv3 model (IHI 0070 G.b) for testing drivers.
//!
//! QEMU's SMMUv3 acknowledges instantly, accepts CONSTRAINED UNPREDICTABLE writes, never caches
//! invalid STEs and flushes its TLB at 256 entries, so drivers that forget invalidations pass there.
//! This model is built to catch them: acks take a configurable number of accesses, commands may lag
//! PROD, caches keep whatever they fetched (valid or not) until an exact-scope invalidation, and
//! every CONSTRAINED UNPREDICTABLE or illegal act of software lands in a [violation log](Model::violations).
//!
//! # Wiring a driver test
//!
//! * **Registers**: route the driver's register trait to [`Model::read32`], [`Model::write32`],
//!   [`Model::read64`], [`Model::write64`] (offsets from the SMMU base; page 1 at `0x10000`). Every
//!   access advances model time by one unit, so ack polling loops complete after
//!   [`ModelConfig::ack_latency`] accesses.
//! * **DMA memory**: the HAL's coherent allocator calls [`Model::alloc_pages`]; physical and
//!   "virtual" addresses are the same number. CPU accesses go through [`Model::mem_read`] /
//!   [`Model::mem_write`]; route every 64-bit store of an STE or CD through [`Model::write_u64`]:
//!   that is where the torn-fetch hook fires (S8/S9). Mapping foreign physical memory (kdump) is
//!   just using the same functions on any RAM address.
//! * **Host memory**: a driver that writes its tables through raw pointers gives the model a
//!   [`HostRam`] arena in [`ModelConfig::host_ram`]; RAM is then that arena, so the pointer for
//!   physical address `pa` is `host.byte_ptr(pa - ram_base)`. STE/CD stores should still go
//!   through [`Model::write_u64`] so the torn-fetch hook sees them.
//! * **Time**: [`Model::step`] advances time without a register access (command consumption in
//!   [`CmdMode::Step`], masters with `masters_per_step`).
//! * **Devices**: [`Model::add_master`] + [`Model::run_masters`], or one-off [`Model::dma`];
//!   results in [`Model::outcomes`].
//! * **Checking**: [`Model::violations`] must be empty in a driver test; [`Model::events`] and
//!   [`Model::signals`] show what the SMMU reported.
//! * **ATS**: [`Model::ats_translate`] (Translation Requests), [`Model::dma_translated`]
//!   (Translated transactions), [`Model::ats_dma`] and [`Model::set_master_ats`] (endpoints
//!   with an ATC that CMD_ATC_INV reaches at the next CMD_SYNC).
//! * **Non-coherent SMMU**: [`ModelConfig::cpu_cache`] with IDR0.COHACC = 0 makes the SMMU read
//!   memory as the point of coherency holds it; the HAL's cleans call [`Model::clean_dcache`].
//! * **kexec**: [`Model::warm_restart`] keeps everything, masters keep running.
//! * **`&self` traits**: [`SharedModel`] is a cloneable `Arc<Mutex<Model>>` handle whose methods
//!   take `&self` and `usize` offsets, so a driver's register and HAL traits forward to it in one
//!   line each while the test keeps a clone for stepping and checking.
//!
//! # Example
//!
//! ```
//! use smmu_model::{fields::reg, Model, ModelConfig, Transaction, TxnResult};
//!
//! let mut m = Model::new(ModelConfig::default());
//! // Before SMMUEN, GBPA (reset value: bypass) applies.
//! assert_eq!(m.dma(Transaction::read(3, 0x1234)), TxnResult::Bypass { pa: 0x1234 });
//! // CR0ACK follows CR0 only after the configured latency (2 accesses by default).
//! m.write32(reg::CR0, reg::CR0_CMDQEN);
//! assert_eq!(m.read32(reg::CR0ACK) & reg::CR0_CMDQEN, 0);
//! while m.read32(reg::CR0ACK) & reg::CR0_CMDQEN == 0 {}
//! assert!(m.violations().is_empty());
//! ```
#![forbid(unsafe_code)]

mod ats;
mod cache;
mod cmdq;
mod decode;
mod dma;
pub mod fields;
mod host;
mod master;
mod mem;
mod model;
mod phys;
mod profile;
mod regs;
pub mod rme;
mod shared;
mod txn;
mod util;
mod xlate;

pub use ats::AtsCompletion;
pub use cache::{AtcEntry, CachePolicy, Eviction, PowerOn};
pub use decode::ste_used_bits;
pub use host::{HostRam, HOST_ALIGN_MAX};
pub use master::{MasterSpec, Outcome, Pattern};
pub use model::{
    CmdMode, CuPolicy, Delivery, Model, ModelConfig, ModelError, Signals, TornFetch, Violation,
    ViolationKind,
};
pub use phys::{MemError, PAGE};
pub use profile::Profile;
pub use shared::SharedModel;
pub use txn::{Cause, Event, Transaction, TxnResult};
pub use xlate::TlbView;

/// Entry points shared by the property tests and the fuzz targets (SPEC B1/B2).
pub mod fuzzing {
    use crate::fields::{reg, ste};
    use crate::{CmdMode, Model, ModelConfig, Profile, Transaction};

    const RAM: u64 = 0x4000_0000;
    const RAM_SIZE: u64 = 1 << 24;

    fn model(profile_sel: u8) -> Model {
        let profile = match profile_sel % 3 {
            0 => Profile::qemu_virt(),
            1 => Profile::mmu600(),
            _ => Profile::grace(),
        };
        Model::new(ModelConfig {
            profile,
            ack_latency: 0,
            ram_base: RAM,
            ram_size: RAM_SIZE,
            mem_limit: 4 << 20,
            cmd_mode: CmdMode::Sync,
            ..ModelConfig::default()
        })
    }

    fn le(data: &[u8], i: usize) -> u64 {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = data.get(i * 8 + j).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    }

    /// Treats `data` as a command stream: enables the command queue and consumes every command.
    /// Never panics; all memory the model reads is inside its RAM or aborts. Returns the number
    /// of commands consumed.
    pub fn run_cmdq(data: &[u8]) -> u64 {
        let sel = data.first().copied().unwrap_or(0);
        let mut m = model(sel);
        let q = RAM + 0x10_0000;
        let n = (data.len() / 16).clamp(1, 255) as u32;
        let _ = m.mem_write(q, &data[..data.len().min(255 * 16)]);
        m.write64(reg::CMDQ_BASE, q | 8);
        m.write32(reg::CMDQ_PROD, 0);
        m.write32(reg::CMDQ_CONS, 0);
        m.write32(reg::CR0, reg::CR0_CMDQEN | reg::CR0_SMMUEN);
        m.write32(reg::CMDQ_PROD, n.min(256));
        // Acknowledge errors and retry a few times (restart after CMDQ_ERR).
        for _ in 0..4 {
            let g = m.read32(reg::GERROR);
            m.write32(reg::GERRORN, g);
        }
        let _ = m.dma(Transaction::read(u32::from(sel), le(data, 1)));
        m.signals().commands
    }

    /// Treats `data` as raw register accesses (7 bytes each: offset, page/kind, value). Returns the
    /// number of violations logged.
    pub fn run_regs(data: &[u8]) -> usize {
        let mut m = model(data.first().copied().unwrap_or(0));
        for c in data.chunks(7) {
            if c.len() < 7 {
                break;
            }
            let off = u64::from(u16::from_le_bytes([c[0], c[1]])) & 0x1_FFFF;
            let page = if c[2] & 1 != 0 { reg::PAGE1 } else { 0 };
            let v = u32::from_le_bytes([c[3], c[4], c[5], c[6]]);
            match c[2] >> 1 & 3 {
                0 => m.write32(page | off, v),
                1 => {
                    m.read32(page | off);
                }
                2 => m.write64(page | off, u64::from(v) << 32 | u64::from(v)),
                _ => m.write(page | off, c[2] >> 3, u64::from(v)),
            }
            m.step();
        }
        m.violations().len()
    }

    /// Treats `data` as structure images: an L1STD, an STE, a CD and a few table descriptors,
    /// then translates a few transactions through them. Linear or 2-level per the first byte.
    /// Returns the results of the four transactions.
    pub fn run_fetch(data: &[u8]) -> Vec<crate::TxnResult> {
        let sel = data.first().copied().unwrap_or(0);
        let mut m = model(sel);
        let st = RAM;
        let two_level = sel & 4 != 0;
        let l2 = RAM + 0x8000;
        if two_level {
            // STRTAB_BASE_CFG: FMT 2-level, SPLIT from data, LOG2SIZE 16.
            m.write32(
                reg::STRTAB_BASE_CFG,
                (1 << 16) | (u32::from(data.get(1).copied().unwrap_or(8) % 12) << 6) | 16,
            );
            let l1 = le(data, 1);
            let l1 = if sel & 8 != 0 { l1 } else { (l1 & 0x1F) | l2 };
            let _ = m.write_u64(st, l1);
        } else {
            m.write32(reg::STRTAB_BASE_CFG, 8);
        }
        m.write64(reg::STRTAB_BASE, st);
        let ste_pa = if two_level { l2 } else { st };
        for i in 0..8 {
            let mut w = le(data, 2 + i);
            if i == 0 && sel & 16 != 0 {
                w = ste::V.put(w, 1);
            }
            let _ = m.write_u64(ste_pa + 8 * i as u64, w);
        }
        // CD and a table page at addresses the STE may point at.
        for i in 0..8 {
            let _ = m.write_u64(RAM + 0x4000 + 8 * i as u64, le(data, 10 + i));
        }
        for i in 0..8 {
            let _ = m.write_u64(RAM + 0x2000 + 8 * i as u64, le(data, 18 + i));
        }
        m.write32(reg::CR2, reg::CR2_RECINVSID);
        // ATSCHK from the selector (kept only by profiles with ATS).
        let atschk = if sel & 32 != 0 { reg::CR0_ATSCHK } else { 0 };
        m.write32(reg::CR0, reg::CR0_SMMUEN | atschk);
        for k in 0..4u64 {
            let iova = le(data, 26 + k as usize);
            let mut t = Transaction::read(0, iova);
            if k & 1 == 1 {
                t.write = true;
            }
            if k == 3 {
                t.ssid = Some(le(data, 30) as u32 & 0xF_FFFF);
            }
            let _ = m.dma(t);
        }
        m.check_structures();
        let results = m.outcomes().iter().map(|o| o.result).collect();
        // The same inputs as ATS traffic: a Translation Request, a Translated transaction and
        // an endpoint access through its ATC (not part of the returned results).
        for k in 0..2u64 {
            let t = Transaction {
                write: k == 1,
                ssid: (sel & 64 != 0).then_some(le(data, 31) as u32 & 0xF_FFFF),
                ..Transaction::read(0, le(data, 26 + k as usize))
            };
            let _ = m.ats_translate(&t);
            let _ = m.dma_translated(t);
            let _ = m.ats_dma(t);
        }
        results
    }
}

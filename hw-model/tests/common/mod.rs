//! A miniature driver used by the model's self-tests.
#![allow(dead_code, unreachable_pub, clippy::too_many_arguments)]

use smmu_model::fields::{cd, cmd, pte, reg, ste, Field};
use smmu_model::{Model, ModelConfig, Transaction, TxnResult, ViolationKind};

pub const PT_FLAGS: u64 = pte::VALID | pte::TABLE | pte::AF | pte::NG | (3 << 8);

pub fn f(words: &mut [u64], fld: Field, v: u64) {
    fld.set(words, v);
}

pub struct Rig {
    pub m: Model,
    pub strtab: u64,
    pub cmdq: u64,
    pub evtq: u64,
    pub prod: u32,
    pub log2_cmdq: u32,
    pub log2_evtq: u32,
}

impl Rig {
    pub fn new(cfg: ModelConfig) -> Self {
        let mut m = Model::new(cfg);
        let strtab = m.alloc_pages(4, 16384).unwrap();
        let cmdq = m.alloc_pages(1, 4096).unwrap();
        let evtq = m.alloc_pages(2, 8192).unwrap();
        Self {
            m,
            strtab,
            cmdq,
            evtq,
            prod: 0,
            log2_cmdq: 8,
            log2_evtq: 8,
        }
    }

    pub fn default_cfg() -> ModelConfig {
        ModelConfig::default()
    }

    pub fn poll(&mut self, off: u64, mask: u32, want: u32) {
        for _ in 0..1000 {
            if self.m.read32(off) & mask == want {
                return;
            }
            self.m.step();
        }
        panic!("poll of {off:#x} timed out");
    }

    pub fn set_cr0(&mut self, v: u32) {
        self.m.write32(reg::CR0, v);
        self.poll(reg::CR0ACK, 0x1FF, v);
    }

    /// Programs queues and a linear stream table of 256 entries; enables queues; invalidates
    /// everything; leaves SMMUEN to `enable()`.
    pub fn init(&mut self) {
        self.m
            .write64(reg::CMDQ_BASE, self.cmdq | u64::from(self.log2_cmdq));
        self.m.write32(reg::CMDQ_PROD, 0);
        self.m.write32(reg::CMDQ_CONS, 0);
        self.m
            .write64(reg::EVTQ_BASE, self.evtq | u64::from(self.log2_evtq));
        self.m.write32(reg::EVTQ_PROD, 0);
        self.m.write32(reg::EVTQ_CONS, 0);
        self.m.write32(reg::STRTAB_BASE_CFG, 8);
        self.m.write64(reg::STRTAB_BASE, self.strtab);
        self.m.write32(reg::CR2, reg::CR2_RECINVSID);
        self.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN);
        self.cmd(cfgi_all());
        self.cmd(tlbi_nsnh_all());
        self.sync();
    }

    pub fn enable(&mut self) {
        self.init();
        self.set_cr0(reg::CR0_CMDQEN | reg::CR0_EVTQEN | reg::CR0_SMMUEN);
    }

    pub fn cmd(&mut self, w: [u64; 2]) {
        let size = 1u32 << self.log2_cmdq;
        let idx = self.prod & (size - 1);
        let pa = self.cmdq + 16 * u64::from(idx);
        self.m.write_u64(pa, w[0]).unwrap();
        self.m.write_u64(pa + 8, w[1]).unwrap();
        // A careful driver: cleaned for a non-coherent SMMU (no effect on a coherent one).
        self.m.clean_dcache(pa, 16);
        self.prod = (self.prod + 1) & (2 * size - 1);
        self.m.write32(reg::CMDQ_PROD, self.prod);
    }

    pub fn sync(&mut self) {
        self.cmd(sync_none());
        self.wait_cons();
    }

    pub fn wait_cons(&mut self) {
        for _ in 0..10_000 {
            let c = self.m.read32(reg::CMDQ_CONS) & 0xF_FFFF;
            if c == self.prod {
                return;
            }
            self.m.step();
        }
        panic!("command queue did not drain");
    }

    pub fn ste_pa(&self, sid: u32) -> u64 {
        self.strtab + 64 * u64::from(sid)
    }

    pub fn write_ste(&mut self, sid: u32, w: [u64; 8]) {
        let pa = self.ste_pa(sid);
        for (i, x) in w.iter().enumerate() {
            self.m.write_u64(pa + 8 * i as u64, *x).unwrap();
        }
        self.m.clean_dcache(pa, 64);
    }

    pub fn write_struct(&mut self, pa: u64, w: [u64; 8]) {
        for (i, x) in w.iter().enumerate() {
            self.m.write_u64(pa + 8 * i as u64, *x).unwrap();
        }
        self.m.clean_dcache(pa, 64);
    }

    pub fn cfgi_ste(&mut self, sid: u32) {
        self.cmd(cfgi_ste(sid, true));
        self.sync();
    }

    /// 4-level 4K stage-1 (or stage-2 with `s2`) mapping of one page.
    pub fn map(&mut self, root: u64, va: u64, pa: u64, leaf_flags: u64) {
        let mut table = root;
        for level in 0..3u32 {
            let sh = 39 - 9 * level;
            let idx = (va >> sh) & 511;
            let dpa = table + 8 * idx;
            let d = self.m.read_u64(dpa).unwrap();
            table = if d & 1 == 0 {
                let t = self.m.alloc_pages(1, 4096).unwrap();
                self.m.write_u64(dpa, t | 3).unwrap();
                self.m.clean_dcache(dpa, 8);
                t
            } else {
                d & pte::OA_MASK
            };
        }
        let idx = (va >> 12) & 511;
        self.m.write_u64(table + 8 * idx, pa | leaf_flags).unwrap();
        self.m.clean_dcache(table + 8 * idx, 8);
    }

    /// Maps one leaf of `1 << leaf_shift` bytes with granule `gran` (12/14/16), input size
    /// `ia_bits`; tables are allocated as needed.
    pub fn map_g(
        &mut self,
        root: u64,
        gran: u32,
        ia_bits: u32,
        va: u64,
        pa: u64,
        leaf_level: u8,
        flags: u64,
    ) {
        let s = gran - 3;
        let shift = |l: u8| gran + s * (3 - u32::from(l));
        let mut start = 3u8;
        while start > 0 && shift(start) + s < ia_bits {
            start -= 1;
        }
        let mut table = root;
        let mut level = start;
        loop {
            let sh = shift(level);
            let bits = if level == start { ia_bits - sh } else { s };
            let idx = (va >> sh) & ((1 << bits) - 1);
            let dpa = table + 8 * idx;
            if level == leaf_level {
                let lf = if level == 3 { flags } else { flags & !2 };
                self.m.write_u64(dpa, pa | lf).unwrap();
                return;
            }
            let d = self.m.read_u64(dpa).unwrap();
            table = if d & 1 == 0 {
                let bytes = 1u64 << gran;
                let t = self.m.alloc_pages(bytes / 4096, bytes).unwrap();
                self.m.write_u64(dpa, t | 3).unwrap();
                t
            } else {
                d & pte::OA_MASK
            };
            level += 1;
        }
    }

    pub fn new_root_g(&mut self, gran: u32) -> u64 {
        let bytes = 1u64 << gran;
        self.m.alloc_pages(bytes / 4096, bytes).unwrap()
    }

    pub fn new_root(&mut self) -> u64 {
        self.m.alloc_pages(1, 4096).unwrap()
    }

    /// An S1 STE + CD + root table for `sid` with `asid`; returns (cd pa, root).
    pub fn s1_stream(&mut self, sid: u32, asid: u16) -> (u64, u64) {
        let root = self.new_root();
        let cdpa = self.m.alloc_pages(1, 4096).unwrap();
        self.write_struct(cdpa, cd_s1(asid, root));
        self.write_ste(sid, ste_s1(cdpa));
        (cdpa, root)
    }

    pub fn dma_pa(&mut self, t: Transaction) -> Option<u64> {
        self.m.dma(t).pa()
    }

    pub fn viol(&self, k: ViolationKind) -> bool {
        self.m.has_violation(k)
    }
}

pub fn ste_s1(cdpa: u64) -> [u64; 8] {
    let mut w = [0u64; 8];
    f(&mut w, ste::V, 1);
    f(&mut w, ste::CONFIG, ste::CONFIG_S1);
    f(&mut w, ste::S1CTXPTR, cdpa >> 6);
    w
}

pub fn ste_bypass() -> [u64; 8] {
    let mut w = [0u64; 8];
    f(&mut w, ste::V, 1);
    f(&mut w, ste::CONFIG, ste::CONFIG_BYPASS);
    w
}

pub fn ste_abort() -> [u64; 8] {
    let mut w = [0u64; 8];
    f(&mut w, ste::V, 1);
    w
}

/// Stage-2 fields on top of an STE: 4K granule, 44-bit IPA (T0SZ 20, SL0 = 2 → level 0), PS 44.
pub fn add_s2(w: &mut [u64; 8], vmid: u16, s2ttb: u64) {
    f(w, ste::S2VMID, u64::from(vmid));
    f(w, ste::S2T0SZ, 20);
    f(w, ste::S2SL0, 2);
    f(w, ste::S2TG, 0);
    f(w, ste::S2PS, 4);
    f(w, ste::S2AA64, 1);
    f(w, ste::S2R, 1);
    f(w, ste::S2TTB, s2ttb >> 4);
}

pub fn cd_s1(asid: u16, ttb0: u64) -> [u64; 8] {
    let mut w = [0u64; 8];
    f(&mut w, cd::T0SZ, 16);
    f(&mut w, cd::TG0, 0);
    f(&mut w, cd::EPD1, 1);
    f(&mut w, cd::V, 1);
    f(&mut w, cd::IPS, 4);
    f(&mut w, cd::AA64, 1);
    f(&mut w, cd::R, 1);
    f(&mut w, cd::A, 1);
    f(&mut w, cd::ASID, u64::from(asid));
    f(&mut w, cd::TTB0, ttb0 >> 4);
    w
}

pub fn op(o: u8) -> [u64; 2] {
    [u64::from(o), 0]
}

pub fn cfgi_all() -> [u64; 2] {
    let mut w = op(cmd::CFGI_STE_RANGE);
    cmd::RANGE.set(&mut w, 31);
    w
}

pub fn cfgi_ste(sid: u32, leaf: bool) -> [u64; 2] {
    let mut w = op(cmd::CFGI_STE);
    cmd::SID.set(&mut w, u64::from(sid));
    cmd::LEAF.set(&mut w, u64::from(leaf));
    w
}

pub fn cfgi_cd(sid: u32, ssid: u32) -> [u64; 2] {
    let mut w = op(cmd::CFGI_CD);
    cmd::SID.set(&mut w, u64::from(sid));
    cmd::SSID.set(&mut w, u64::from(ssid));
    cmd::LEAF.set(&mut w, 1);
    w
}

pub fn tlbi_nsnh_all() -> [u64; 2] {
    op(cmd::TLBI_NSNH_ALL)
}

pub fn tlbi_nh_asid(asid: u16) -> [u64; 2] {
    let mut w = op(cmd::TLBI_NH_ASID);
    cmd::ASID.set(&mut w, u64::from(asid));
    w
}

pub fn tlbi_nh_va(asid: u16, va: u64, leaf: bool) -> [u64; 2] {
    let mut w = op(cmd::TLBI_NH_VA);
    cmd::ASID.set(&mut w, u64::from(asid));
    cmd::LEAF.set(&mut w, u64::from(leaf));
    cmd::ADDR.set(&mut w, va >> 12);
    w
}

pub fn tlbi_range(o: u8, asid: u16, va: u64, tg: u64, num: u64, scale: u64, ttl: u64) -> [u64; 2] {
    let mut w = op(o);
    cmd::ASID.set(&mut w, u64::from(asid));
    cmd::ADDR.set(&mut w, va >> 12);
    cmd::TG.set(&mut w, tg);
    cmd::NUM.set(&mut w, num);
    cmd::SCALE.set(&mut w, scale);
    cmd::TTL.set(&mut w, ttl);
    w
}

pub fn sync_none() -> [u64; 2] {
    op(cmd::SYNC)
}

pub fn sync_cs(cs: u64, msi_addr: u64, data: u32) -> [u64; 2] {
    let mut w = op(cmd::SYNC);
    cmd::SYNC_CS.set(&mut w, cs);
    cmd::SYNC_MSIDATA.set(&mut w, u64::from(data));
    cmd::SYNC_MSIADDR.set(&mut w, msi_addr >> 2);
    w
}

pub fn translated(r: TxnResult) -> u64 {
    match r {
        TxnResult::Translated { pa } => pa,
        other => panic!("expected a translation, got {other:?}"),
    }
}

pub fn cons_err(m: &mut Model) -> u32 {
    (m.read32(reg::CMDQ_CONS) >> 24) & 0x7F
}

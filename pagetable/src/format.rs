//! Table formats: stage, granule, address sizes, and the values a driver programs from them.

use core::fmt;

use bitflags::bitflags;

use crate::desc;
use crate::{Error, PhysAddr};

/// Translation granule (page size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4 KiB pages; blocks of 2 MiB (level 2) and 1 GiB (level 1).
    Size4K,
    /// 16 KiB pages; blocks of 32 MiB (level 2).
    Size16K,
    /// 64 KiB pages; blocks of 512 MiB (level 2) and, with a 52-bit OAS, 4 TiB (level 1).
    Size64K,
}

impl Granule {
    /// log2 of the page size.
    #[inline]
    pub const fn shift(self) -> u32 {
        match self {
            Self::Size4K => 12,
            Self::Size16K => 14,
            Self::Size64K => 16,
        }
    }

    /// Page size in bytes.
    #[inline]
    pub const fn size(self) -> u64 {
        1 << self.shift()
    }

    /// IA bits resolved per lookup level (`shift - 3`: one table holds `size / 8` descriptors).
    #[inline]
    pub const fn bits_per_level(self) -> u32 {
        self.shift() - 3
    }
}

impl fmt::Display for Granule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Size4K => "4K",
            Self::Size16K => "16K",
            Self::Size64K => "64K",
        })
    }
}

/// Translation stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Stage 1 (CD.TTB0): AP/UXN/PXN/AttrIndx/nG descriptors.
    Stage1,
    /// Stage 2 (STE.S2TTB): S2AP/XN/MemAttr descriptors, concatenated start tables.
    Stage2,
}

/// What a page table translates. Checked by [`PageTable::new`](crate::PageTable::new).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Stage 1 or stage 2.
    pub stage: Stage,
    /// Page size.
    pub granule: Granule,
    /// Input address size in bits, 32..=48 (52 with [`Granule::Size64K`]).
    pub ias: u32,
    /// Output address size in bits: 32, 36, 40, 42, 44, 48 (52 with [`Granule::Size64K`], which
    /// needs FEAT_LPA in the SMMU).
    pub oas: u32,
}

bitflags! {
    /// Access and attribute request for [`PageTable::map`](crate::PageTable::map).
    ///
    /// Mapping to descriptor bits (the same policy as Linux io-pgtable-arm, except stage-2 XN):
    ///
    /// | flag | stage 1 | stage 2 |
    /// |---|---|---|
    /// | always | AF, nG | AF |
    /// | `READ` | (implied) | S2AP\[0\] |
    /// | `WRITE` | AP\[2\]=0, else AP\[2\]=1 (read-only) | S2AP\[1\] |
    /// | not `PRIV` | AP\[1\]=1 (EL0 accessible) | — |
    /// | `NOEXEC` | UXN and PXN | XN=0b10 |
    /// | `MMIO` | AttrIndx=2 (Device-nGnRE) | MemAttr=0x1 |
    /// | `CACHE` | AttrIndx=1 (WB), SH=IS | MemAttr=0xf, SH=IS |
    /// | neither | AttrIndx=0 (NC), SH=OS | MemAttr=0x5, SH=OS |
    ///
    /// `MMIO` wins over `CACHE` for the memory type. A request with neither `READ` nor `WRITE` is
    /// refused with [`Error::NoAccess`]; stage 1 cannot express write-only, so `WRITE` alone maps
    /// read/write there.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        /// Device reads permitted.
        const READ = 1 << 0;
        /// Device writes permitted.
        const WRITE = 1 << 1;
        /// No instruction fetch.
        const NOEXEC = 1 << 2;
        /// Normal Write-Back cacheable, Inner Shareable (coherent DMA).
        const CACHE = 1 << 3;
        /// Device memory (MMIO, e.g. an MSI doorbell).
        const MMIO = 1 << 4;
        /// Stage 1 only: privileged accesses only (AP\[1\]=0).
        const PRIV = 1 << 5;
    }
}

/// Shareability of table walks (CD.SH0 / STE.S2SH0 value meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shareability {
    /// Non-shareable.
    NonShareable,
    /// Outer Shareable.
    Outer,
    /// Inner Shareable.
    Inner,
}

/// Cacheability of table walks (CD.IRGN0/ORGN0, STE.S2IR0/S2OR0 value meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cacheability {
    /// Non-cacheable.
    NonCacheable,
    /// Write-Back, Read-Allocate, Write-Allocate.
    WriteBackWriteAllocate,
    /// Write-Through, Read-Allocate, no Write-Allocate.
    WriteThrough,
    /// Write-Back, Read-Allocate, no Write-Allocate.
    WriteBackNoWriteAllocate,
}

/// Memory attributes the walker must use to read the tables.
///
/// Coherent walkers ([`TableAllocator::COHERENT`](crate::TableAllocator::COHERENT)): Inner
/// Shareable, Write-Back Write-Allocate. Non-coherent: Outer Shareable, Non-cacheable (the tables
/// are cleaned to the point of coherency after every write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalkAttrs {
    /// Shareability.
    pub sh: Shareability,
    /// Inner cacheability.
    pub irgn: Cacheability,
    /// Outer cacheability.
    pub orgn: Cacheability,
}

impl WalkAttrs {
    pub(crate) const fn for_coherence(coherent: bool) -> Self {
        if coherent {
            Self {
                sh: Shareability::Inner,
                irgn: Cacheability::WriteBackWriteAllocate,
                orgn: Cacheability::WriteBackWriteAllocate,
            }
        } else {
            Self {
                sh: Shareability::Outer,
                irgn: Cacheability::NonCacheable,
                orgn: Cacheability::NonCacheable,
            }
        }
    }
}

/// The 3-bit physical-address-size encoding shared by TCR.IPS, VTCR.PS, CD.IPS and STE.S2PS
/// (IHI 0070 §5.4; DDI 0487 D24.2): 32→0, 36→1, 40→2, 42→3, 44→4, 48→5, 52→6.
pub const fn pa_size_encoding(bits: u32) -> Option<u8> {
    match bits {
        32 => Some(0),
        36 => Some(1),
        40 => Some(2),
        42 => Some(3),
        44 => Some(4),
        48 => Some(5),
        52 => Some(6),
        _ => None,
    }
}

/// Everything the driver needs to program a stage-1 Context Descriptor for this table (the `smmu`
/// crate owns the CD bit layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage1Config {
    /// CD.TTB0: physical address of the start table.
    pub ttb: PhysAddr,
    /// CD.T0SZ: `64 - IAS`.
    pub t0sz: u8,
    /// CD.TG0 (the driver encodes it: 4K→0, 64K→1, 16K→2).
    pub granule: Granule,
    /// Output address size in bits (CD.IPS meaning).
    pub oas: u8,
    /// CD.IPS field value, [`pa_size_encoding`] of `oas`.
    pub ips: u8,
    /// CD.SH0 / IRGN0 / ORGN0.
    pub walk: WalkAttrs,
    /// CD.MAIR0 (low 32 bits) and CD.MAIR1 (high 32 bits): [`desc::MAIR`].
    pub mair: u64,
    /// Level of the start table (derived from IAS and granule; informational for stage 1).
    pub start_level: u8,
}

/// Everything the driver needs to program a stage-2 STE (VTCR-like fields) for this table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage2Config {
    /// STE.S2TTB: physical address of the first (of `concatenated`) start tables.
    pub ttb: PhysAddr,
    /// STE.S2T0SZ: `64 - IAS`.
    pub t0sz: u8,
    /// STE.S2SL0 field value (VTCR_EL2.SL0 encoding, DDI 0487 D8.2, Tables D8-19/D8-29/D8-38):
    /// 4K: level 0→2, 1→1, 2→0; 16K and 64K: `3 - level`.
    pub sl0: u8,
    /// Level of the start table(s).
    pub start_level: u8,
    /// Number of concatenated start tables (1 = none, up to 16). DDI 0487 D8.2.2.
    pub concatenated: u8,
    /// STE.S2TG (the driver encodes it: 4K→0, 64K→1, 16K→2).
    pub granule: Granule,
    /// Output address size in bits (STE.S2PS meaning).
    pub oas: u8,
    /// STE.S2PS field value, [`pa_size_encoding`] of `oas`.
    pub ps: u8,
    /// STE.S2SH0 / S2IR0 / S2OR0.
    pub walk: WalkAttrs,
}

/// Derived geometry of a format. All arithmetic the walkers need, computed once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) stage: Stage,
    pub(crate) granule: Granule,
    pub(crate) ias: u32,
    pub(crate) oas: u32,
    /// Granule shift.
    pub(crate) g: u32,
    /// Bits per level.
    pub(crate) b: u32,
    pub(crate) start_level: u32,
    /// Number of descriptors in the start table(s), concatenation included.
    pub(crate) root_entries: usize,
    /// Number of concatenated start tables (1 if none).
    pub(crate) concat: u32,
    /// Mask of the OA bits a descriptor holds in place (bits [47:g]).
    pub(crate) addr_mask: u64,
    /// 64K granule with a 52-bit OA: OA[51:48] lives in descriptor bits [15:12].
    pub(crate) lpa: bool,
}

/// The deepest level; pages live here.
pub(crate) const LEAF_LEVEL: u32 = 3;

impl Geometry {
    pub(crate) fn new(cfg: Config) -> Result<Self, Error> {
        let granule = cfg.granule;
        let big = matches!(granule, Granule::Size64K);
        let max_ias = if big { 52 } else { 48 };
        if cfg.ias < 32 || cfg.ias > max_ias {
            return Err(Error::UnsupportedInputSize {
                ias: cfg.ias,
                granule,
            });
        }
        if pa_size_encoding(cfg.oas).is_none() || (cfg.oas == 52 && !big) {
            return Err(Error::UnsupportedOutputSize {
                oas: cfg.oas,
                granule,
            });
        }
        let g = granule.shift();
        let b = granule.bits_per_level();
        // Levels needed to resolve IA[ias-1:g], b bits per level.
        let levels = (cfg.ias - g).div_ceil(b);
        let mut start_level = 4 - levels;
        let mut root_bits = cfg.ias - g - (levels - 1) * b;
        let mut concat = 1;
        // Stage 2: a level-0 start table of at most 16 entries is replaced by that many
        // concatenated level-1 tables (DDI 0487 D8.2.2, R HRSBS). This removes a lookup and is
        // mandatory for 16K with a 48-bit IAS (R DXBSH), where level 0 is not a legal start.
        if matches!(cfg.stage, Stage::Stage2) && start_level == 0 && root_bits <= 4 {
            start_level = 1;
            concat = 1 << root_bits;
            root_bits += b;
        }
        let addr_mask = desc::ADDR.mask() & !((1u64 << g) - 1);
        Ok(Self {
            stage: cfg.stage,
            granule,
            ias: cfg.ias,
            oas: cfg.oas,
            g,
            b,
            start_level,
            root_entries: 1 << root_bits,
            concat,
            addr_mask,
            lpa: big && cfg.oas == 52,
        })
    }

    /// log2 of the span of one descriptor at `level`.
    #[inline(always)]
    pub(crate) const fn shift(&self, level: u32) -> u32 {
        self.g + (LEAF_LEVEL - level) * self.b
    }

    /// Number of descriptors in a table at `level`.
    #[inline(always)]
    pub(crate) const fn entries(&self, level: u32) -> usize {
        if level == self.start_level {
            self.root_entries
        } else {
            1 << self.b
        }
    }

    /// Index of `iova`'s descriptor in its table at `level` (always `< entries(level)`).
    #[inline(always)]
    pub(crate) const fn index(&self, iova: u64, level: u32) -> usize {
        ((iova >> self.shift(level)) as usize) & (self.entries(level) - 1)
    }

    /// Whether a Block (or Page) descriptor is legal at `level` (DDI 0487 D8.3.1, Table D8-53
    /// block forms; D8.2 Tables D8-17/D8-27/D8-36).
    #[inline(always)]
    pub(crate) const fn leaf_ok(&self, level: u32) -> bool {
        match level {
            2 | 3 => true,
            1 => match self.granule {
                Granule::Size4K => true,
                Granule::Size16K => false,
                Granule::Size64K => self.lpa,
            },
            _ => false,
        }
    }

    /// Size in bytes of the start table allocation.
    pub(crate) const fn root_bytes(&self) -> usize {
        (self.concat as usize) << self.g
    }

    /// Size in bytes of a non-start table.
    #[inline(always)]
    pub(crate) const fn table_bytes(&self) -> usize {
        1 << self.g
    }

    /// Output-address bits of a descriptor for `pa` (`pa` aligned to the granule).
    #[inline(always)]
    pub(crate) const fn oa_bits(&self, pa: u64) -> u64 {
        if self.lpa {
            (pa & self.addr_mask) | ((pa >> 48) << desc::ADDR_HI_LPA.lo)
        } else {
            pa & self.addr_mask
        }
    }

    /// Output address held by descriptor `d` (granule-aligned; a block's low bits are zero).
    #[inline(always)]
    pub(crate) const fn desc_pa(&self, d: u64) -> u64 {
        if self.lpa {
            (d & self.addr_mask) | (desc::ADDR_HI_LPA.decode(d) << 48)
        } else {
            d & self.addr_mask
        }
    }

    /// Whether `d` (valid) at `level` points to a next-level table.
    #[inline(always)]
    pub(crate) const fn is_table(d: u64, level: u32) -> bool {
        level < LEAF_LEVEL && desc::TYPE.decode(d) == desc::TYPE_TABLE
    }

    /// Adds to `need` (per level) the tables that `times` copies of `[iova, iova + size)`, each
    /// under an entry at `level - 1` with nothing below it yet, need from `level` down: one
    /// table of `level + 1` for every entry of `level` that cannot be a block, and so on.
    pub(crate) fn tables_needed(
        &self,
        level: u32,
        iova: u64,
        pa: u64,
        size: u64,
        times: usize,
        need: &mut crate::table::Need,
    ) {
        if level >= LEAF_LEVEL {
            return;
        }
        let esz = 1u64 << self.shift(level);
        let end = iova + size;
        let (mut cur, mut pa) = (iova, pa);
        while cur < end {
            let next = ((cur | (esz - 1)) + 1).min(end);
            let len = next - cur;
            if !(self.leaf_ok(level) && len == esz && pa & (esz - 1) == 0) {
                crate::table::add_need(need, level + 1, times);
                self.tables_needed(level + 1, cur, pa, len, times, need);
            }
            cur = next;
            pa += len;
        }
    }

    /// Sizes a single leaf can map, as a bitmap (`1 << shift` for every legal leaf level).
    pub(crate) fn pgsize_bitmap(&self) -> u64 {
        let mut m = 0;
        let mut l = self.start_level;
        while l <= LEAF_LEVEL {
            if self.leaf_ok(l) && self.shift(l) < 64 && self.shift(l) < self.ias {
                m |= 1u64 << self.shift(l);
            }
            l += 1;
        }
        m
    }

    /// Leaf attribute bits (everything but TYPE and the OA) for `prot`.
    pub(crate) fn leaf_attrs(&self, prot: Prot) -> Result<u64, Error> {
        if !prot.intersects(Prot::READ | Prot::WRITE) {
            return Err(Error::NoAccess);
        }
        let cache = prot.contains(Prot::CACHE) && !prot.contains(Prot::MMIO);
        let sh = if cache { desc::SH_IS } else { desc::SH_OS };
        let mut a = desc::AF.encode(1) | desc::SH.encode(sh);
        match self.stage {
            Stage::Stage1 => {
                a |= desc::NG.encode(1);
                if !prot.contains(Prot::WRITE) {
                    a |= desc::AP_RDONLY.encode(1);
                }
                if !prot.contains(Prot::PRIV) {
                    a |= desc::AP_UNPRIV.encode(1);
                }
                let idx = if prot.contains(Prot::MMIO) {
                    desc::MAIR_IDX_DEV
                } else if cache {
                    desc::MAIR_IDX_CACHE
                } else {
                    desc::MAIR_IDX_NC
                };
                a |= desc::ATTRINDX.encode(idx);
                if prot.contains(Prot::NOEXEC) {
                    a |= desc::UXN.encode(1) | desc::PXN.encode(1);
                }
            }
            Stage::Stage2 => {
                let mut ap = 0;
                if prot.contains(Prot::READ) {
                    ap |= desc::S2AP_READ;
                }
                if prot.contains(Prot::WRITE) {
                    ap |= desc::S2AP_WRITE;
                }
                a |= desc::S2AP.encode(ap);
                let mem = if prot.contains(Prot::MMIO) {
                    desc::MEMATTR_DEVICE
                } else if cache {
                    desc::MEMATTR_WB
                } else {
                    desc::MEMATTR_NC
                };
                a |= desc::MEMATTR.encode(mem);
                if prot.contains(Prot::NOEXEC) {
                    a |= desc::XN.encode(desc::XN_NONE);
                }
            }
        }
        Ok(a)
    }

    /// VTCR.SL0 / STE.S2SL0 encoding of the start level.
    pub(crate) const fn sl0(&self) -> u8 {
        match self.granule {
            Granule::Size4K => (2 - self.start_level as i32) as u8 & 3,
            Granule::Size16K | Granule::Size64K => (3 - self.start_level) as u8,
        }
    }
}

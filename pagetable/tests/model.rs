//! Property test against a plain reference model (SPEC P2, P3): arbitrary map/unmap sequences
//! give the same answers, the same successes and failures, and never leak or double-free a
//! table (the test allocator panics on a double free and counts live tables).
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TestAlloc;
use proptest::prelude::*;
use smmu_pagetable::*;

/// The reference: a sorted map of leaves plus the set of tables that exist, expressed as IOVA
/// spans rather than descriptors. Placement rule (P2): the largest leaf an aligned piece allows,
/// unless a table already occupies that slot; a table disappears when an unmap covers its span.
struct Model {
    g: u32,
    b: u32,
    ias: u32,
    start: u32,
    granule: Granule,
    big_l1: bool,
    /// iova -> (pa, size, level)
    leaves: BTreeMap<u64, (u64, u64, u8)>,
    /// (first iova, level of its entries)
    tables: BTreeSet<(u64, u32)>,
}

impl Model {
    fn new(cfg: Config, start: u32) -> Self {
        let g = cfg.granule.shift();
        Self {
            g,
            b: g - 3,
            ias: cfg.ias,
            start,
            granule: cfg.granule,
            big_l1: cfg.granule == Granule::Size64K && cfg.oas == 52,
            leaves: BTreeMap::new(),
            tables: BTreeSet::new(),
        }
    }

    fn shift(&self, level: u32) -> u32 {
        self.g + (3 - level) * self.b
    }

    fn leaf_ok(&self, level: u32) -> bool {
        match level {
            2 | 3 => true,
            1 => self.granule == Granule::Size4K || self.big_l1,
            _ => false,
        }
    }

    /// Leaves intersecting [a, e).
    fn hits(&self, a: u64, e: u64) -> Vec<(u64, (u64, u64, u8))> {
        // Leaves are at most 1 << 42 bytes; look back from `a` far enough.
        self.leaves
            .range(a.saturating_sub(1 << 42)..e)
            .filter(|(&s, &(_, sz, _))| s + sz > a)
            .map(|(&s, &v)| (s, v))
            .collect()
    }

    fn lookup(&self, iova: u64) -> Option<u64> {
        self.hits(iova, iova + 1)
            .first()
            .map(|&(s, (pa, _, _))| pa + (iova - s))
    }

    fn check_args(&self, iova: u64, size: u64) -> Result<(), Error> {
        let gm = (1u64 << self.g) - 1;
        if size == 0 {
            return Err(Error::EmptyRange);
        }
        if (iova | size) & gm != 0 {
            return Err(Error::Misaligned);
        }
        if iova.checked_add(size).is_none_or(|e| e > 1 << self.ias) {
            return Err(Error::OutOfRange);
        }
        Ok(())
    }

    fn map(&mut self, iova: u64, pa: u64, size: u64) -> Result<(), Error> {
        self.check_args(iova, size)?;
        if let Some(&(s, _)) = self.hits(iova, iova + size).first() {
            return Err(Error::AlreadyMapped {
                iova: Iova(s.max(iova)),
            });
        }
        self.place(self.start, iova, pa, size);
        Ok(())
    }

    fn place(&mut self, level: u32, iova: u64, pa: u64, size: u64) {
        let esz = 1u64 << self.shift(level);
        let (mut cur, mut pa, end) = (iova, pa, iova + size);
        while cur < end {
            let slot = cur & !(esz - 1);
            let next = (slot + esz).min(end);
            let len = next - cur;
            let whole = len == esz && pa % esz == 0;
            if level == 3
                || (self.leaf_ok(level) && whole && !self.tables.contains(&(slot, level + 1)))
            {
                self.leaves.insert(cur, (pa, len, level as u8));
            } else {
                self.tables.insert((slot, level + 1));
                self.place(level + 1, cur, pa, len);
            }
            cur = next;
            pa += len;
        }
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<u64, Error> {
        self.check_args(iova, size)?;
        let end = iova + size;
        let hits = self.hits(iova, end);
        // The end edge is checked first, then the start edge.
        for &(s, (_, sz, _)) in hits.iter().rev().chain(hits.iter()) {
            if s < iova || s + sz > end {
                return Err(Error::PartialBlock {
                    block: Iova(s),
                    size: sz,
                });
            }
        }
        let mut n = 0;
        for (s, (_, sz, _)) in hits {
            self.leaves.remove(&s);
            n += sz;
        }
        let g = self.g;
        let b = self.b;
        self.tables.retain(|&(s, level)| {
            let span = 1u64 << (g + (3 - (level - 1)) * b);
            !(s >= iova && s + span <= end)
        });
        Ok(n)
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Pages from a window of 4096 granules; `pa_kind` picks aligned or skewed output.
    Map {
        page: u64,
        pages: u64,
        pa_kind: u8,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
    /// Large power-of-two-aligned region (exercises level-1/level-2 blocks and table retirement).
    MapBig {
        slot: u64,
        log2: u32,
    },
    UnmapBig {
        slot: u64,
        log2: u32,
    },
    Release,
}

/// Longest page run per op (smaller under Miri, which interprets every descriptor access).
const MAX_PAGES: u64 = if cfg!(miri) { 48 } else { 900 };

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..4096, 1u64..MAX_PAGES * 2 / 3, 0u8..3).prop_map(|(page, pages, pa_kind)| Op::Map { page, pages, pa_kind }),
        3 => (0u64..4096, 1u64..MAX_PAGES).prop_map(|(page, pages)| Op::Unmap { page, pages }),
        1 => (0u64..8, 0u32..4).prop_map(|(slot, log2)| Op::MapBig { slot, log2 }),
        1 => (0u64..8, 0u32..4).prop_map(|(slot, log2)| Op::UnmapBig { slot, log2 }),
        1 => Just(Op::Release),
    ]
}

fn release<A: TableAllocator>(pt: &PageTable<A>, g: &mut Gather) {
    // SAFETY: no SMMU walks these tables in a test.
    unsafe { pt.release(g) }.unwrap();
}

fn leaves_of(pt: &PageTable<&TestAlloc>) -> BTreeMap<u64, (u64, u64, u8)> {
    let mut m = BTreeMap::new();
    pt.walk(|e| {
        if let WalkEntry::Leaf {
            iova,
            pa,
            size,
            level,
            ..
        } = *e
        {
            m.insert(iova.0, (pa.0, size, level));
        }
    });
    m
}

fn tables_of(pt: &PageTable<&TestAlloc>) -> BTreeSet<(u64, u32)> {
    let mut s = BTreeSet::new();
    pt.walk(|e| {
        if let WalkEntry::Table {
            iova, level, desc, ..
        } = *e
        {
            if desc != 0 {
                s.insert((iova.0, u32::from(level)));
            }
        }
    });
    s
}

// spec: P2, P3, P5
fn check(cfg: Config, ops: &[Op]) -> Result<(), TestCaseError> {
    let alloc = TestAlloc::default();
    {
        let mut pt = PageTable::new(cfg, &alloc).unwrap();
        let mut model = Model::new(cfg, u32::from(pt.start_level()));
        let gsz = cfg.granule.size();
        let mut gather = Gather::new();
        // Windows: small pages near 0; "big" regions of up to 8 × 2^(level-2 block shift + 3).
        let l2 = model.shift(2);
        let big_unit = 1u64 << l2;
        let big_base = 1u64 << (cfg.ias - 1);
        for op in ops {
            let (iova, size) = match *op {
                Op::Map {
                    page,
                    pages,
                    pa_kind,
                } => {
                    let (iova, size) = (page * gsz, pages * gsz);
                    let pa = match pa_kind {
                        0 => iova,
                        1 => iova + gsz,
                        _ => iova + (big_unit << 1),
                    };
                    let want = model.map(iova, pa, size);
                    let got = pt.map(Iova(iova), PhysAddr(pa), size, Prot::READ | Prot::WRITE);
                    prop_assert_eq!(got, want, "{:?}", op);
                    (iova, size)
                }
                Op::Unmap { page, pages } => {
                    let (iova, size) = (page * gsz, pages * gsz);
                    let want = model.unmap(iova, size);
                    let got = pt.unmap(Iova(iova), size, &mut gather);
                    prop_assert_eq!(got, want, "{:?}", op);
                    (iova, size)
                }
                Op::MapBig { slot, log2 } => {
                    let size = big_unit << log2;
                    let iova = big_base + slot * size;
                    let want = model.map(iova, iova, size);
                    let got = pt.map(Iova(iova), PhysAddr(iova), size, Prot::READ);
                    prop_assert_eq!(got, want, "{:?}", op);
                    (iova, size)
                }
                Op::UnmapBig { slot, log2 } => {
                    let size = big_unit << log2;
                    let iova = big_base + slot * size;
                    let want = model.unmap(iova, size);
                    let got = pt.unmap(Iova(iova), size, &mut gather);
                    prop_assert_eq!(got, want, "{:?}", op);
                    (iova, size)
                }
                Op::Release => {
                    release(&pt, &mut gather);
                    (0, gsz)
                }
            };
            // Same translations at the edges of the op and on a sparse grid.
            let probes = [iova, iova + size - 1, iova.saturating_sub(1), iova + size];
            for a in probes
                .into_iter()
                .chain((0..4096 * gsz).step_by(37 * gsz as usize + 8))
            {
                prop_assert_eq!(
                    pt.iova_to_phys(Iova(a)).map(|p| p.0),
                    model.lookup(a),
                    "lookup {:#x} after {:?}",
                    a,
                    op
                );
            }
            // Same structure: leaves (placement) and tables.
            prop_assert_eq!(&leaves_of(&pt), &model.leaves, "leaves after {:?}", op);
            prop_assert_eq!(&tables_of(&pt), &model.tables, "tables after {:?}", op);
            // No leak: every allocation is the start table, a live table, or waits in the gather
            // or in the pool of retired tables.
            prop_assert_eq!(
                alloc.live(),
                1 + model.tables.len() + gather.freed_tables() + pt.pooled_tables()
            );
        }
        release(&pt, &mut gather);
        prop_assert_eq!(alloc.live(), 1 + model.tables.len() + pt.pooled_tables());
        let pooled = pt.pooled_tables();
        prop_assert_eq!(pt.reclaim(), pooled);
        prop_assert_eq!(alloc.live(), 1 + model.tables.len());
    }
    prop_assert_eq!(alloc.live(), 0, "drop leaked tables");
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) {
            2
        } else {
            // PROPTEST_CASES raises (or lowers) the count for a longer soak.
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(96)
        },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..if cfg!(miri) { 6 } else { 40 })
}

proptest! {
    #![proptest_config(config())]

    // spec: P2, P3
    #[test]
    fn model_stage1_4k(ops in ops()) {
        check(Config { stage: Stage::Stage1, granule: Granule::Size4K, ias: 32, oas: 36 }, &ops)?;
    }

    // spec: P1, P2, P3 (concatenated start tables)
    #[test]
    fn model_stage2_4k_concat(ops in ops()) {
        check(Config { stage: Stage::Stage2, granule: Granule::Size4K, ias: 40, oas: 40 }, &ops)?;
    }

    // spec: P2, P3
    #[test]
    #[cfg_attr(miri, ignore)]
    fn model_stage2_16k(ops in ops()) {
        check(Config { stage: Stage::Stage2, granule: Granule::Size16K, ias: 48, oas: 48 }, &ops)?;
    }

    // spec: P2, P3
    #[test]
    #[cfg_attr(miri, ignore)]
    fn model_stage1_64k(ops in ops()) {
        check(Config { stage: Stage::Stage1, granule: Granule::Size64K, ias: 42, oas: 44 }, &ops)?;
    }
}

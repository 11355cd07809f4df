//! spec: D6. Commands written to the command queue to unmap N contiguous 4 KiB pages, ours
//! against Linux's (`reference/linux-kunit-and-hitless.md` §3.6: mainline
//! `__arm_smmu_tlb_inv_range`, stage 1, 4K granule, strict invalidation, one `iommu_unmap()`).
//!
//! Each row maps N pages one 4 KiB page at a time (so no blocks) into a real
//! `smmu_pagetable::PageTable` (stage 1, 4K granule, 48-bit), unmaps them with one `unmap` call
//! into a `Gather`, feeds `gather.ranges()` to `tlbi_commands` and counts its commands plus the
//! one `CMD_SYNC` of the batch, with and without `SMMU_IDR3.RIL`; then releases the gather.
//!
//! Differences from Linux's set-up, stated rather than hidden:
//! * Our page table retires a table inside the same unmap and records its span as one walk
//!   range in the gather; nothing is issued early. Linux issues a separate walk flush with its
//!   own `CMD_SYNC` per freed table, then the leaf gather: hence its 4 / 515 / 1026 / 263169.
//! * Linux's "262144, leaf only" row (a domain restricted to 4K pages, so no table is freed)
//!   cannot come out of our page table: a 1 GiB unmap covers at least 511 whole 2 MiB spans and
//!   retires their tables. That row is fed the gather range Linux's case has (1 GiB, leaf,
//!   level 3) directly; the real unaligned 1 GiB unmap is a separate row with no Linux figure.
//!
//! Run with `--nocapture` to see the table.

use smmu::arch::cmd::{Command, TlbiAddr, TlbiGranule, TlbiRange};
use smmu::host::{HalTables, HostHal};
use smmu::inval::{tlbi_commands, InvalCaps, TlbScope, DEFAULT_MAX_OPS};
use smmu_pagetable::{Config, Gather, Granule, InvalRange, Iova, PageTable, PhysAddr, Prot, Stage};

const PAGE: u64 = 0x1000;
/// 1 GiB-aligned and above 4 GiB, so every row also exercises high IOVA bits.
const BASE: u64 = 0x80_4000_0000;
const SCOPE: TlbScope = TlbScope::Stage1 { vmid: 0, asid: 1 };

/// How the N pages sit, and what Linux's table says (`None`: not a row of Linux's table).
struct Row {
    n: u64,
    iova: u64,
    case: &'static str,
    /// Feed this range instead of a real unmap (the leaf-only row).
    synthetic: Option<InvalRange>,
    linux_ril: Option<u64>,
    linux_no_ril: Option<u64>,
}

const ROWS: &[Row] = &[
    Row {
        n: 1,
        iova: BASE + 0x3000,
        case: "leaf (L3 PTE)",
        synthetic: None,
        linux_ril: Some(2),
        linux_no_ril: Some(2),
    },
    Row {
        n: 16,
        iova: BASE + 0x10_0000,
        case: "leaf",
        synthetic: None,
        linux_ril: Some(2),
        linux_no_ril: Some(17),
    },
    Row {
        n: 512,
        iova: BASE + 0x1000,
        case: "leaf, not a whole aligned 2M",
        synthetic: None,
        linux_ril: Some(2),
        linux_no_ril: Some(513),
    },
    Row {
        n: 512,
        iova: BASE + 0x20_0000,
        case: "2M-aligned: one L3 table freed",
        synthetic: None,
        linux_ril: Some(4),
        linux_no_ril: Some(515),
    },
    Row {
        n: 262144,
        iova: BASE,
        case: "leaf only (synthetic gather range)",
        synthetic: Some(InvalRange {
            iova: Iova(BASE),
            size: 1 << 30,
            granule: Granule::Size4K,
            leaf: true,
            level: Some(3),
        }),
        linux_ril: Some(2),
        linux_no_ril: Some(262145),
    },
    Row {
        n: 262144,
        iova: BASE + 0x1000,
        case: "4K-offset: 511 L3 tables freed",
        synthetic: None,
        linux_ril: None,
        linux_no_ril: None,
    },
    Row {
        n: 262144,
        iova: BASE + 0x20_0000,
        case: "2M-, not 1G-aligned: 512 L3 freed",
        synthetic: None,
        linux_ril: Some(1026),
        linux_no_ril: Some(263169),
    },
    Row {
        n: 262144,
        iova: BASE,
        case: "1G-aligned: one L2 table freed",
        synthetic: None,
        linux_ril: Some(4),
        linux_no_ril: Some(262147),
    },
];

/// Our counts (TLBIs + 1 CMD_SYNC), pinned so that a change either way is noticed.
const OURS: &[(u64, u64)] = &[
    (2, 2),
    (2, 17),
    (2, 513),
    (2, 513),
    (2, 2),
    (2, 2),
    (2, 2),
    (2, 2),
];

/// The commands for `ranges` (TLBIs only).
fn commands(ranges: &[InvalRange], ril: bool) -> Vec<Command> {
    let caps = InvalCaps {
        ril,
        ..InvalCaps::default()
    };
    let mut cmds = Vec::new();
    let n = tlbi_commands(ranges, SCOPE, &caps, &mut |c| {
        cmds.push(c);
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(n as usize, cmds.len());
    cmds
}

/// Every page of `[iova, iova + len)` is invalidated by `cmds` (range semantics of
/// IHI 0070 G.b §4.4.1.1; a by-address command without range hits the entry holding its
/// address).
fn assert_covers(cmds: &[Command], iova: u64, len: u64) {
    if cmds == [SCOPE.wide_command()] {
        return;
    }
    let mut iv: Vec<(u64, u64)> = cmds
        .iter()
        .map(|c| {
            let Command::TlbiNhVa {
                vmid: 0,
                asid: 1,
                va: TlbiAddr { addr, range, .. },
            } = *c
            else {
                panic!("unexpected {c:?}");
            };
            assert_eq!(c.encode().decode(), Ok(*c), "reserved encoding");
            if range == TlbiRange::SINGLE {
                (addr, addr + PAGE)
            } else {
                assert_eq!(range.tg, TlbiGranule::Size4K);
                let pages = u64::from(range.num + 1) << range.scale;
                (addr, addr + pages * PAGE)
            }
        })
        .collect();
    iv.sort_unstable();
    let mut reached = iova;
    for (a, b) in iv {
        if a <= reached {
            reached = reached.max(b);
        }
    }
    assert!(reached >= iova + len, "{iova:#x}+{len:#x} not covered");
}

fn describe(ranges: &[InvalRange], freed: usize) -> String {
    let r: Vec<String> = ranges
        .iter()
        .map(|r| {
            let size = match r.size {
                s if s >= 1 << 30 => format!("{}G", s >> 30),
                s if s >= 1 << 20 => format!("{}M", s >> 20),
                s => format!("{}K", s >> 10),
            };
            format!(
                "{size} {}{}",
                if r.leaf { "leaf" } else { "walk" },
                r.level.map_or(String::new(), |l| format!(" L{l}")),
            )
        })
        .collect();
    format!("{}; {freed} freed", r.join(" + "))
}

#[test]
fn unmap_n_pages_counts() {
    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    let cfg = Config {
        stage: Stage::Stage1,
        granule: Granule::Size4K,
        ias: 48,
        oas: 48,
    };
    let fmt = |v: Option<u64>| v.map_or("–".to_string(), |v| v.to_string());
    println!();
    println!("| N | case | our gather | RIL: ours | RIL: Linux | no RIL: ours | no RIL: Linux |");
    println!("|---:|---|---|---:|---:|---:|---:|");
    for (row, &(want_ril, want_no_ril)) in ROWS.iter().zip(OURS) {
        let alloc = HalTables::<HostHal>::default();
        let pt = PageTable::new(cfg, &alloc).unwrap();
        let mut gather = Gather::new();
        let (ranges, freed) = if let Some(r) = row.synthetic {
            (vec![r], 0)
        } else {
            for i in 0..row.n {
                let a = row.iova + i * PAGE;
                pt.map(Iova(a), PhysAddr(0x1_0000_0000 + i * PAGE), PAGE, rw)
                    .unwrap();
            }
            let len = row.n * PAGE;
            assert_eq!(pt.unmap(Iova(row.iova), len, &mut gather).unwrap(), len);
            (gather.ranges().to_vec(), gather.freed_tables())
        };

        let ril = commands(&ranges, true);
        let no_ril = commands(&ranges, false);
        assert_covers(&ril, row.iova, row.n * PAGE);
        assert_covers(&no_ril, row.iova, row.n * PAGE);
        // SAFETY: no SMMU walks these tables; in a driver this follows the CMD_SYNC's completion.
        unsafe { pt.release(&mut gather) }.unwrap();

        // Each logical invalidation is one batch: the TLBIs, then exactly one CMD_SYNC.
        let (ours_ril, ours_no_ril) = (ril.len() as u64 + 1, no_ril.len() as u64 + 1);
        println!(
            "| {} | {} | {} | {ours_ril} | {} | {ours_no_ril} | {} |",
            row.n,
            row.case,
            describe(&ranges, freed),
            fmt(row.linux_ril),
            fmt(row.linux_no_ril),
        );
        if let Some(l) = row.linux_ril {
            assert!(
                ours_ril <= l,
                "{} {}: RIL {ours_ril} > Linux {l}",
                row.n,
                row.case
            );
        }
        if let Some(l) = row.linux_no_ril {
            assert!(
                ours_no_ril <= l,
                "{} {}: {ours_no_ril} > Linux {l}",
                row.n,
                row.case
            );
        }
        assert!(ours_no_ril <= u64::from(DEFAULT_MAX_OPS) + 1);
        assert_eq!(
            (ours_ril, ours_no_ril),
            (want_ril, want_no_ril),
            "{}",
            row.case
        );
        drop(pt);
        assert_eq!(alloc.hal().leaks(), [], "tables leaked");
    }
}

//! Many CPUs on the model (SPEC D12): threads map, unmap and invalidate through one shared
//! `&Smmu`, each in its own domain, while the lock-free command queue carries every thread's
//! TLBIs and syncs. Checked against a reference map per thread, through the page table and
//! through the model's translation of real DMA (whose TLB would still hit a page whose
//! invalidation had not completed when `unmap` returned).

use std::collections::BTreeMap;

use smmu::SmmuConfig;
use smmu_model::{ModelConfig, Profile, Transaction, TxnResult};
use smmu_model_platform::rig::Rig;
use smmu_pagetable::{Iova, PhysAddr, Prot};

const RW: Prot = Prot::READ.union(Prot::WRITE).union(Prot::CACHE);

// spec: D12, D5, D6
#[test]
fn threads_map_unmap_and_sync_through_one_shared_smmu() {
    const THREADS: u32 = 3;
    const ROUNDS: u64 = 40;
    let mut rig = Rig::new(
        ModelConfig {
            ram_size: 32 << 20,
            ..ModelConfig::hostile(Profile::grace(), 3)
        },
        SmmuConfig::default(),
    )
    .unwrap();
    let mut domains: Vec<_> = (0..THREADS)
        .map(|t| rig.stage1_master(t + 1).unwrap().1)
        .collect();
    let pages: Vec<u64> = (0..THREADS)
        .map(|_| rig.model().alloc_pages(8, 0x1000).unwrap())
        .collect();
    let syncs_before = rig.smmu.cmdq().stats().syncs;
    let rig = &rig;
    let references: Vec<BTreeMap<u64, u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = domains
            .iter_mut()
            .zip(&pages)
            .enumerate()
            .map(|(t, (d, &pa0))| {
                s.spawn(move || {
                    let sid = t as u32 + 1;
                    let mut reference = BTreeMap::new();
                    for r in 0..ROUNDS {
                        // Eight IOVA pages per thread, cycled: from the second lap on, each
                        // page is unmapped (and must fault at once) before it is mapped anew.
                        let iova = 0x4000_0000 + ((r % 8) << 12);
                        if reference.contains_key(&iova) {
                            let n = rig.smmu.unmap(d, Iova(iova), 0x1000).unwrap();
                            assert_eq!(n, 0x1000);
                            reference.remove(&iova);
                            let res = rig.dma(Transaction::read(sid, iova));
                            assert!(
                                matches!(res, TxnResult::Abort { .. }),
                                "thread {t}: {iova:#x} still translates after unmap: {res:?}"
                            );
                        }
                        let pa = pa0 + (((r * 3) % 8) << 12);
                        rig.smmu
                            .map(d, Iova(iova), PhysAddr(pa), 0x1000, RW)
                            .unwrap();
                        reference.insert(iova, pa);
                        assert_eq!(
                            rig.dma(Transaction::read(sid, iova)),
                            TxnResult::Translated { pa }
                        );
                    }
                    reference
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every unmap (all rounds after the first lap) issued at least its own synced TLBI.
    let syncs = rig.smmu.cmdq().stats().syncs - syncs_before;
    assert!(syncs >= u64::from(THREADS) * (ROUNDS - 8), "{syncs} syncs");
    for (t, (d, reference)) in domains.iter().zip(&references).enumerate() {
        for p in 0..8u64 {
            let iova = 0x4000_0000 + (p << 12);
            let want = reference.get(&iova).copied();
            assert_eq!(
                d.table().iova_to_phys(Iova(iova)).map(|pa| pa.0),
                want,
                "thread {t} page {p}"
            );
            let res = rig.dma(Transaction::read(t as u32 + 1, iova));
            match want {
                Some(pa) => assert_eq!(res, TxnResult::Translated { pa }),
                None => assert!(matches!(res, TxnResult::Abort { .. }), "{res:?}"),
            }
        }
    }
    rig.assert_no_violations();
}

/// Threads map and unmap *disjoint pages of one domain* (interleaved, so that they share its
/// leaf table and race to create it) through one `&Smmu` and one `&Domain`, while a device
/// behind the domain reads every page: each thread's pages translate exactly while mapped and
/// fault once unmapped, whatever the other threads do to the same tables.
// spec: D12, P2
#[test]
fn threads_share_one_domain_on_disjoint_ranges() {
    const THREADS: u64 = 3;
    const ROUNDS: u64 = 40;
    const SLOTS: u64 = 4;
    let mut rig = Rig::new(
        ModelConfig {
            ram_size: 32 << 20,
            ..ModelConfig::hostile(Profile::grace(), 5)
        },
        SmmuConfig::default(),
    )
    .unwrap();
    let (_, domain) = rig.stage1_master(1).unwrap();
    let pa0 = rig.model().alloc_pages(8, 0x1000).unwrap();
    let (rig, domain) = (&rig, &domain);
    // Thread t owns pages t, t + THREADS, t + 2 * THREADS, ... of one leaf table at 1 GiB.
    let iova_of = |t: u64, slot: u64| 0x4000_0000 + ((slot * THREADS + t) << 12);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                let mut mapped = [false; SLOTS as usize];
                for r in 0..ROUNDS {
                    let slot = r % SLOTS;
                    let iova = iova_of(t, slot);
                    let was = &mut mapped[slot as usize];
                    if *was {
                        assert_eq!(rig.smmu.unmap(domain, Iova(iova), 0x1000), Ok(0x1000));
                        let res = rig.dma(Transaction::read(1, iova));
                        assert!(
                            matches!(res, TxnResult::Abort { .. }),
                            "thread {t}: {iova:#x} still translates after unmap: {res:?}"
                        );
                    } else {
                        let pa = pa0 + (((t + r) % 8) << 12);
                        rig.smmu
                            .map(domain, Iova(iova), PhysAddr(pa), 0x1000, RW)
                            .unwrap();
                        assert_eq!(
                            rig.dma(Transaction::read(1, iova)),
                            TxnResult::Translated { pa },
                            "thread {t} round {r}"
                        );
                    }
                    *was = !*was;
                }
            });
        }
    });
    // ROUNDS is a multiple of 2 * SLOTS: every page ends unmapped, in the table and for DMA.
    for t in 0..THREADS {
        for slot in 0..SLOTS {
            let iova = iova_of(t, slot);
            assert_eq!(domain.table().iova_to_phys(Iova(iova)), None);
            assert!(matches!(
                rig.dma(Transaction::read(1, iova)),
                TxnResult::Abort { .. }
            ));
        }
    }
    rig.assert_no_violations();
}

/// Two CPUs register masters that both claim one StreamID: exactly one gets it, whoever
/// runs first, and the other is told which StreamID is taken; the winner's other StreamIDs
/// and slot are its own.
// spec: D12
#[test]
fn concurrent_registrations_claiming_one_stream_id_admit_exactly_one() {
    use smmu::{Error, MasterConfig};
    let rig = Rig::new(
        ModelConfig::hostile(Profile::grace(), 9),
        SmmuConfig::default(),
    )
    .unwrap();
    let smmu = &rig.smmu;
    let register = |sids: &[u32]| {
        smmu.add_master(&MasterConfig {
            sids,
            protected: false,
            ats: false,
            stall: false,
            ssid_bits: 0,
        })
    };
    for sid in 0x10..0x20u32 {
        let [a, b] = std::thread::scope(|s| {
            let a = s.spawn(|| register(&[sid, sid + 0x100]));
            let b = s.spawn(|| register(&[sid + 0x200, sid]));
            [a.join().unwrap(), b.join().unwrap()]
        });
        let (winner, winner_sids) = match (a, b) {
            (Ok(m), Err(e)) => {
                assert_eq!(e, Error::StreamIdInUse(sid));
                (m, [sid, sid + 0x100])
            }
            (Err(e), Ok(m)) => {
                assert_eq!(e, Error::StreamIdInUse(sid));
                (m, [sid + 0x200, sid])
            }
            other => panic!("sid {sid:#x}: {other:?}"),
        };
        assert_eq!(smmu.master_sids(winner).unwrap().as_slice(), winner_sids);
    }
}

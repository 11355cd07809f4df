//! Host-RAM backing of the model's memory (M5): a `HostRam` arena shared by raw pointers (the
//! driver's view) and the model's fetches, with every memory feature of the sparse map.
mod common;
use common::*;
use smmu_model::fields::{cmd, evt, pte, reg, ste};
use smmu_model::{
    Cause, HostRam, MemError, Model, ModelConfig, Profile, Transaction, TxnResult, ViolationKind,
    PAGE,
};

const ARENA: u64 = 4 << 20;

fn host_cfg() -> (ModelConfig, HostRam) {
    let host = HostRam::new(ARENA).unwrap();
    (
        ModelConfig {
            host_ram: Some(host.clone()),
            ..ModelConfig::default()
        },
        host,
    )
}

fn host_rig() -> (Rig, HostRam) {
    let (cfg, host) = host_cfg();
    let mut r = Rig::new(cfg);
    r.enable();
    (r, host)
}

/// Arena offset of a physical address.
fn off(r: &Rig, pa: u64) -> u64 {
    pa - r.m.config().ram_base
}

fn event_id(r: TxnResult) -> Option<u8> {
    match r {
        TxnResult::Abort { event, .. } => event.map(|e| e.id()),
        _ => None,
    }
}

#[test]
fn arena_is_the_ram_window_without_limit() {
    // spec: M5
    let host = HostRam::new(ARENA).unwrap();
    let mut m = Model::new(ModelConfig {
        host_ram: Some(host.clone()),
        mem_limit: 8192,
        ..ModelConfig::default()
    });
    let base = m.config().ram_base;
    assert_eq!(m.config().ram_size, ARENA, "ram_size clamped to the arena");
    assert_eq!(m.mem_backed(), ARENA, "the arena is backed whole");
    // mem_limit does not apply: write every 64 KiB of the arena.
    for a in (0..ARENA).step_by(65536) {
        m.write_u64(base + a, a | 1).unwrap();
        assert_eq!(host.load_u64(a), Some(a | 1));
    }
    assert_eq!(
        m.mem_write(base + ARENA - 4, &[0; 8]),
        Err(MemError::NotRam {
            pa: base + ARENA - 4
        })
    );
    assert_eq!(
        m.read_u64(base + ARENA),
        Err(MemError::NotRam { pa: base + ARENA })
    );
    // Unaligned CPU reads and writes span words; partial words keep their neighbours.
    m.mem_write(base + 0x1003, &[0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x11])
        .unwrap();
    assert_eq!(host.load_u64(0x1000), Some(0xEEDD_CCBB_AA00_0000));
    assert_eq!(host.load_u64(0x1008), Some(0x11FF));
    let mut b = [0u8; 4];
    m.mem_read(base + 0x1006, &mut b).unwrap();
    assert_eq!(b, [0xDD, 0xEE, 0xFF, 0x11]);
    m.write_u128(base + 0x2000, 1, 2).unwrap();
    assert_eq!(
        (host.load_u64(0x2000), host.load_u64(0x2008)),
        (Some(1), Some(2))
    );
    // The pool hands out arena pages, zeroed even where something was written before.
    let a = m.alloc_pages(1, 65536).unwrap();
    assert_eq!(a % 65536, 0);
    assert_eq!(m.read_u64(a), Ok(0), "dirty page zeroed by alloc_pages");
    assert!(matches!(
        m.alloc_pages(ARENA / PAGE, 4096),
        Err(MemError::PoolExhausted { .. })
    ));
}

#[test]
fn ste_built_in_the_arena_is_fetched() {
    // spec: M5
    let (mut r, host) = host_rig();
    // Store API: a bypass STE for SID 3.
    let ste3 = off(&r, r.ste_pa(3));
    for (i, w) in ste_bypass().iter().enumerate() {
        assert!(host.store_u64(ste3 + 8 * i as u64, *w));
    }
    r.cfgi_ste(3);
    assert_eq!(
        r.m.dma(Transaction::read(3, 0x5000)),
        TxnResult::Bypass { pa: 0x5000 }
    );
    // Raw pointer: turn it into an abort STE (Config = 0b000) the way a driver's volatile store
    // would, then invalidate.
    let p = host.word_ptr(ste3).unwrap();
    // SAFETY: `p` points at an 8-aligned word inside the arena, which `host` keeps alive; the
    // model is not running on another thread.
    unsafe { p.write_volatile(ste_abort()[0]) };
    r.cfgi_ste(3);
    match r.m.dma(Transaction::read(3, 0x5000)) {
        TxnResult::Abort { cause, .. } => assert_eq!(cause, Cause::SteAbort),
        other => panic!("expected an abort, got {other:?}"),
    }
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
}

#[test]
fn page_table_written_through_a_raw_pointer_translates() {
    // spec: M5
    let (mut r, host) = host_rig();
    let (_, root) = r.s1_stream(1, 5);
    r.cfgi_ste(1);
    let va = 0x7F00_0000_0000u64;
    let target = r.m.alloc_pages(2, 4096).unwrap();
    r.map(root, va, target, PT_FLAGS);
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, va + 0x10))),
        target + 0x10
    );
    // Find the leaf table through arena loads and add the next page's entry by pointer.
    let mut table = root;
    for level in 0..3u32 {
        let d = host
            .load_u64(off(&r, table) + 8 * ((va >> (39 - 9 * level)) & 511))
            .unwrap();
        table = d & pte::OA_MASK;
    }
    let leaf = off(&r, table) + 8 * (((va + 0x1000) >> 12) & 511);
    // The pointer to word 0 may be offset anywhere in the arena, as a driver does with a
    // region's base pointer.
    let p = host.word_ptr(0).unwrap().wrapping_add((leaf / 8) as usize);
    assert_eq!(Some(p), host.word_ptr(leaf));
    // SAFETY: `leaf` is an 8-aligned offset inside the arena (the assertion above), `host`
    // keeps the arena alive and nothing else accesses it concurrently.
    unsafe { p.write_volatile((target + 0x1000) | PT_FLAGS) };
    assert_eq!(
        translated(r.m.dma(Transaction::read(1, va + 0x1008))),
        target + 0x1008
    );
}

#[test]
fn model_writes_are_visible_in_the_arena() {
    // spec: M5
    let (mut r, host) = host_rig();
    r.write_ste(7, [0; 8]); // V = 0: C_BAD_STE
    let res = r.m.dma(Transaction::read(7, 0x1000));
    assert_eq!(event_id(res), Some(evt::C_BAD_STE));
    assert_eq!(r.m.read32(reg::EVTQ_PROD) & 0xFF, 1);
    let (ev, _) = *r.m.events().last().unwrap();
    for i in 0..4 {
        assert_eq!(
            host.load_u64(off(&r, r.evtq) + 8 * i),
            Some(ev.raw[i as usize])
        );
    }
    let rec = host.load_u64(off(&r, r.evtq)).unwrap();
    assert_eq!((rec & 0xFF, rec >> 32), (u64::from(evt::C_BAD_STE), 7));
    // A CMD_SYNC with an MSI completion writes its 32-bit data into the arena too.
    let (mut cfg, host) = host_cfg();
    cfg.profile = Profile::grace();
    let mut r = Rig::new(cfg);
    r.init();
    let slot = r.m.alloc_pages(1, 4096).unwrap();
    assert!(host.store_u64(off(&r, slot), u64::MAX));
    r.cmd(sync_cs(0b01, slot + 4, 0x5A5A_1234));
    assert_eq!(host.load_u64(off(&r, slot)), Some(0x5A5A_1234_FFFF_FFFF));
}

#[test]
fn torn_fetch_hook_fires_on_arena_stores() {
    // spec: M5, S9
    let (mut r, host) = host_rig();
    let (a, b) = (r.new_root(), r.new_root());
    let mut old = ste_bypass();
    ste::CONFIG.set(&mut old, ste::CONFIG_S2);
    add_s2(&mut old, 1, a);
    let mut new = old;
    add_s2(&mut new, 2, b);
    r.write_ste(9, old);
    r.m.dma(Transaction::read(9, 0));
    // A naive word-by-word copy over the live STE through write_u64: torn.
    for (i, w) in new.iter().enumerate() {
        r.m.write_u64(r.ste_pa(9) + 8 * i as u64, *w).unwrap();
    }
    r.cfgi_ste(9);
    assert!(r.viol(ViolationKind::TornStructure));
    for (i, w) in new.iter().enumerate() {
        assert_eq!(host.load_u64(off(&r, r.ste_pa(9)) + 8 * i as u64), Some(*w));
    }
    // A hitless single-word change (S2TTB only) is not.
    r.m.clear_violations();
    r.m.dma(Transaction::read(9, 0));
    let mut ttb = new;
    add_s2(&mut ttb, 2, a);
    r.m.write_u64(r.ste_pa(9) + 24, ttb[3]).unwrap();
    r.cfgi_ste(9);
    assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
}

#[test]
fn fetch_faults_and_encryption_apply_to_the_arena() {
    // spec: M5
    let (mut r, host) = host_rig();
    r.write_ste(5, ste_bypass());
    r.cfgi_ste(5);
    r.m.inject_fetch_fault(r.ste_pa(5), 64);
    r.cmd(cfgi_ste(5, true));
    r.sync();
    let res = r.m.dma(Transaction::read(5, 0));
    assert_eq!(event_id(res), Some(evt::F_STE_FETCH));
    r.m.clear_faults();
    assert!(matches!(
        r.m.dma(Transaction::read(5, 0)),
        TxnResult::Bypass { .. }
    ));
    // A fetch fault on the command queue (the paired 64-bit command read) stops it.
    r.m.inject_fetch_fault(r.cmdq, 4096);
    r.cmd(sync_none());
    assert_eq!(cons_err(&mut r.m), cmd::CERROR_ABT);
    r.m.clear_faults();
    let g = r.m.read32(reg::GERROR);
    r.m.write32(reg::GERRORN, g);
    r.wait_cons();
    // Encrypted region: the CPU's plain view of the arena is intact, the SMMU's is garbage.
    let pa = r.m.alloc_pages(1, 4096).unwrap();
    assert!(host.write_bytes(off(&r, pa), &[0xAA; 64]));
    r.m.mark_encrypted(pa, 4096, 0xC0FFEE);
    let (mut plain, mut enc) = ([0u8; 64], [0u8; 64]);
    r.m.mem_read_attr(pa, &mut plain, false).unwrap();
    r.m.mem_read_attr(pa, &mut enc, true).unwrap();
    assert_ne!(plain, [0xAA; 64]);
    assert_eq!(enc, [0xAA; 64]);
    r.m.mark_encrypted(r.ste_pa(0), 64 * 256, 7);
    r.cmd(cfgi_all());
    r.sync();
    assert!(!matches!(
        r.m.dma(Transaction::read(5, 0)),
        TxnResult::Bypass { .. }
    ));
    // Write faults: the event is lost, the arena untouched.
    let (mut r, host) = host_rig();
    r.m.inject_write_fault(r.evtq, 8192);
    r.write_ste(7, [0; 8]);
    r.m.dma(Transaction::read(7, 0));
    assert_eq!(host.load_u64(off(&r, r.evtq)), Some(0));
}

#[test]
fn sparse_and_host_models_agree_on_a_scenario() {
    // spec: M5
    fn run(cfg: ModelConfig) -> Vec<TxnResult> {
        let mut r = Rig::new(cfg);
        r.enable();
        let (_, root) = r.s1_stream(1, 5);
        r.cfgi_ste(1);
        let data = r.m.alloc_pages(4, 4096).unwrap();
        for i in 0..4 {
            r.map(root, 0x10_0000 + i * 0x1000, data + i * 0x1000, PT_FLAGS);
        }
        r.write_ste(2, ste_bypass());
        r.write_ste(3, [0; 8]);
        r.cfgi_ste(2);
        let mut out = Vec::new();
        for (sid, iova) in [
            (1, 0x10_0008),
            (1, 0x10_3000),
            (1, 0x10_4000),
            (2, 9),
            (3, 0),
        ] {
            out.push(r.m.dma(Transaction::read(sid, iova)));
        }
        assert!(r.m.violations().is_empty(), "{:?}", r.m.violations());
        assert_eq!(translated(out[0]), data + 8);
        out
    }
    let (cfg, _host) = host_cfg();
    assert_eq!(run(ModelConfig::default()), run(cfg));
}

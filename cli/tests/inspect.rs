//! `smmuctl inspect` on dumps built with the crate's own encoders: the adoption validator run
//! offline, the STE walk, the reserved IDs, and the usage errors.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use smmu::arch::cd::TableControls;
use smmu::arch::l1std::L1StdConfig;
use smmu::arch::regs::{IDR0, IDR1, IDR5, STRTAB_BASE_CFG};
use smmu::arch::ste::{S1Dss, S1Fmt, Stage1Ste, SteConfig, Translation};
use smmu::arch::{AddressSize, Cacheability, Granule, Shareability};
use smmu::writer::make;
use smmu_kdump::image::Image;

// ---------------------------------------------------------------------------------------------
// Dump fixtures.

const ST: u64 = 0x8000_0000;
const L2A: u64 = 0x8010_0000;
const L2B: u64 = 0x8010_4000;
const CDT: u64 = 0x8100_0000;

/// A dump directory: a register file and memory files, each placed at a physical address.
/// The memory is built with the crate's one image builder ([`smmu_kdump::image::Image`]).
struct Dump {
    dir: PathBuf,
    regs: serde_json::Map<String, Value>,
    mem: Image,
}

impl Dump {
    fn new(name: &str) -> Dump {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("inspect-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dump {
            dir,
            regs: serde_json::Map::new(),
            mem: Image::new(),
        }
    }

    fn reg(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.regs.insert(name.into(), value.into());
        self
    }

    /// A zeroed region of `bytes` at `base`.
    fn region(&mut self, base: u64, bytes: usize) -> &mut Self {
        self.mem.region(base, bytes as u64);
        self
    }

    /// Stores little-endian words at `pa` (inside a region).
    fn write(&mut self, pa: u64, words: &[u64]) -> &mut Self {
        self.mem.write(pa, words);
        self
    }

    /// Writes the files; returns the `inspect` arguments.
    fn args(&self) -> Vec<String> {
        self.args_for(&self.mem.regions_bytes())
    }

    /// As [`Dump::args`], with the memory files given.
    fn args_for(&self, files: &[(u64, Vec<u8>)]) -> Vec<String> {
        let regs = self.dir.join("regs.json");
        std::fs::write(&regs, Value::Object(self.regs.clone()).to_string()).unwrap();
        let mut args = vec![
            "inspect".to_string(),
            "--regs".into(),
            regs.display().to_string(),
        ];
        for (i, (base, bytes)) in files.iter().enumerate() {
            let file = self.dir.join(format!("mem{i}.bin"));
            std::fs::write(&file, bytes).unwrap();
            args.push("--mem".into());
            // Bases alternate between the 0x and the decimal form.
            if i % 2 == 0 {
                args.push(format!("{base:#x}:{}", file.display()));
            } else {
                args.push(format!("{base}:{}", file.display()));
            }
        }
        args
    }

    /// `--sid N --json`: one STE decoded in full.
    fn json_sid(&self, sid: u32) -> Value {
        let sid = sid.to_string();
        let out = self.run(&["--sid", &sid, "--json"]);
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    }

    fn run(&self, extra: &[&str]) -> Output {
        let mut args = self.args();
        args.extend(extra.iter().map(|s| (*s).to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        smmuctl(&args)
    }

    /// The JSON report; its exit status must be the verdict's (0 adopt, 1 full reset,
    /// 3 dump incomplete, 4 an SMMU the driver cannot run).
    fn json(&self, extra: &[&str]) -> Value {
        let mut extra = extra.to_vec();
        extra.push("--json");
        let out = self.run(&extra);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let want = match v["verdict"].as_str() {
            Some("adopt") => 0,
            Some("full-reset") => 1,
            Some("dump-incomplete") => 3,
            Some("driver-cannot-run") => 4,
            other => panic!("verdict {other:?}"),
        };
        assert_eq!(out.status.code(), Some(want), "{v}");
        v
    }
}

/// IDR0 of a Grace-like SMMU: both stages, AArch64 tables, coherent, Hyp, 16-bit ASIDs and
/// VMIDs, 2-level CD and stream tables.
fn idr0() -> u32 {
    (IDR0::S1P::SET
        + IDR0::S2P::SET
        + IDR0::TTF.val(0b10)
        + IDR0::COHACC::SET
        + IDR0::HYP::SET
        + IDR0::ASID16::SET
        + IDR0::VMID16::SET
        + IDR0::CD2L::SET
        + IDR0::ST_LVL.val(1))
    .value
}

fn strtab_cfg(fmt: u32, split: u32, log2size: u32) -> u32 {
    (STRTAB_BASE_CFG::FMT.val(fmt)
        + STRTAB_BASE_CFG::SPLIT.val(split)
        + STRTAB_BASE_CFG::LOG2SIZE.val(log2size))
    .value
}

/// The registers of a live SMMU (SMMUEN, CMDQEN, EVENTQEN) with its stream table at `base`.
fn registers(d: &mut Dump, cfg: u32, base: u64) {
    d.reg("IDR0", idr0())
        .reg(
            "idr1",
            (IDR1::SIDSIZE.val(24)
                + IDR1::SSIDSIZE.val(20)
                + IDR1::CMDQS.val(19)
                + IDR1::EVTQS.val(19))
            .value,
        )
        .reg("SMMU_IDR2", 0)
        .reg("IDR3", 0)
        .reg("IDR4", 0)
        // 48 bits, the three granules (§6.3.6): S2TG/TG0 must name one the SMMU has.
        .reg(
            "IDR5",
            (IDR5::OAS.val(0b101) + IDR5::GRAN4K::SET + IDR5::GRAN16K::SET + IDR5::GRAN64K::SET)
                .value,
        )
        .reg("IIDR", 0x43b)
        .reg("CR0", 0b1101)
        .reg("CR1", 0)
        .reg("CR2", 0)
        .reg("GBPA", 0)
        .reg("GERROR", 0)
        .reg("GERRORN", 0)
        // A 64-bit value as people paste it.
        .reg("STRTAB_BASE", format!("{base:#x}"))
        .reg("strtab_base_cfg", cfg);
}

fn stage1(ptr: u64, cd_max: u8) -> Translation {
    Translation::Stage1(Stage1Ste {
        context_ptr: ptr,
        fmt: S1Fmt::Linear,
        cd_max,
        dss: S1Dss::Substream0,
        cir: Cacheability::WriteBackAllocate,
        cor: Cacheability::WriteBackAllocate,
        csh: Shareability::Inner,
        stall_disable: false,
    })
}

fn stage2() -> Translation {
    Translation::Stage2(smmu_kdump::image::stage2_ste(0x9000_0000))
}

fn ste(translation: Translation, vmid: u16) -> [u64; 8] {
    SteConfig {
        translation,
        s2vmid: vmid,
        ..SteConfig::ABORT
    }
    .encode()
    .to_words()
}

fn bypass() -> [u64; 8] {
    SteConfig::BYPASS.encode().to_words()
}

fn abort() -> [u64; 8] {
    SteConfig::ABORT.encode().to_words()
}

fn cd(asid: u16) -> [u64; 8] {
    let tt0 = TableControls {
        tsz: 16,
        ir: Cacheability::WriteBackAllocate,
        or: Cacheability::WriteBackAllocate,
        sh: Shareability::Inner,
        epd: false,
        ttb: 0xa000_0000,
    };
    make::stage1_cd(asid, tt0, Granule::Size4K, AddressSize::Bits48, 0xff04)
        .encode()
        .to_words()
}

fn l1std(span: u8, l2: u64) -> u64 {
    L1StdConfig { span, l2_ptr: l2 }.encode().to_words()[0]
}

/// A linear table of 16 STEs: SID 1 bypass, SID 2 stage 2 (VMID 5), SID 3 stage 1 with a
/// one-CD table (ASID 7), SID 4 abort; the rest invalid.
fn linear_dump(name: &str) -> Dump {
    let mut d = Dump::new(name);
    registers(&mut d, strtab_cfg(0, 0, 4), ST);
    d.region(ST, 16 * 64)
        .write(ST + 64, &bypass())
        .write(ST + 2 * 64, &ste(stage2(), 5))
        .write(ST + 3 * 64, &ste(stage1(CDT, 0), 0))
        .write(ST + 4 * 64, &abort())
        .region(CDT, 64)
        .write(CDT, &cd(7));
    d
}

/// A 2-level table for 2^16 StreamIDs (256 L1 descriptors): descriptor 1 → L2A with SID 0x100
/// stage 2 (VMID 9) and SID 0x1ff bypass; descriptor 4 → L2B with SIDs 0x400 and 0x401 stage 1
/// sharing a 2-CD table (ASIDs 3 and 12) and SID 0x402 stage 2 reusing VMID 9.
fn two_level_dump_with(name: &str, span1: u8) -> Dump {
    let mut d = Dump::new(name);
    registers(&mut d, strtab_cfg(1, 8, 16), ST);
    d.region(ST, 256 * 8)
        .write(ST + 8, &[l1std(span1, L2A)])
        .write(ST + 4 * 8, &[l1std(9, L2B)])
        .region(L2A, 2 * (16 << 10))
        .write(L2A, &ste(stage2(), 9))
        .write(L2A + 0xff * 64, &bypass())
        .write(L2B, &ste(stage1(CDT, 1), 0))
        .write(L2B + 64, &ste(stage1(CDT, 1), 0))
        .write(L2B + 2 * 64, &ste(stage2(), 9))
        .region(CDT, 2 * 64)
        .write(CDT, &cd(12))
        .write(CDT + 64, &cd(3));
    d
}

fn sids(v: &Value) -> Vec<u64> {
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sid"].as_u64().unwrap())
        .collect()
}

fn field(v: &Value, sid: u64, key: &str) -> Value {
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sid"] == sid)
        .unwrap_or_else(|| panic!("no stream {sid:#x} in {v}"))[key]
        .clone()
}

fn ids(v: &Value, key: &str) -> Vec<u64> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Adoptable dumps.

// spec: K1, K2, K11, K14
#[test]
fn linear_table_is_adopted_with_its_streams_and_reservations() {
    let v = linear_dump("linear").json(&[]);
    assert_eq!(v["verdict"], "adopt");
    assert_eq!(v["reason"], Value::Null);
    assert_eq!(sids(&v), [1, 2, 3, 4]);
    assert_eq!(field(&v, 1, "kind"), "bypass");
    assert_eq!(field(&v, 2, "kind"), "s2-translate");
    assert_eq!(field(&v, 3, "kind"), "s1-translate");
    assert_eq!(field(&v, 4, "kind"), "abort");
    // K11: V = 1 and Config ≠ abort defers; an abort STE does not.
    for (sid, deferred) in [(1, true), (2, true), (3, true), (4, false)] {
        assert_eq!(field(&v, sid, "deferred"), deferred, "SID {sid}");
    }
    // Addresses as addresses, and the tags each STE puts in the TLB.
    assert_eq!(field(&v, 2, "vmid"), 5);
    assert_eq!(field(&v, 2, "s2ttb"), 0x9000_0000u64);
    assert_eq!(field(&v, 3, "cd_table"), CDT);
    assert_eq!(field(&v, 3, "cd_count"), 1);
    assert_eq!(field(&v, 3, "asid"), 7);
    assert_eq!(field(&v, 3, "ttb0"), 0xa000_0000u64);
    // K14: the stage-2 STE's VMID and the CD's ASID are reserved.
    assert_eq!(ids(&v, "reserved_asids"), [7]);
    assert_eq!(ids(&v, "reserved_vmids"), [5]);
    assert_eq!(v["geometry"]["format"], "linear");
    assert_eq!(v["geometry"]["base"], ST);
    assert_eq!(v["geometry"]["stream_ids"], 16);
    assert_eq!(v["valid_stes"], 4);
    assert_eq!(v["counts"]["bypass"], 1);
    assert_eq!(v["counts"]["abort"], 1);
    assert_eq!(v["notes"], serde_json::json!([]));
    // The full decode is `--sid`'s: `smmuctl decode ste --json`'s object.
    let one = linear_dump("linear-sid").json_sid(2);
    assert_eq!(one["address"], ST + 2 * 64);
    assert_eq!(one["ste"]["kind"], "s2-translate");
    assert_eq!(one["ste"]["Config"], 0b110);
    assert_eq!(one["ste"]["S2VMID"], 5);
    let s1 = linear_dump("linear-sid3").json_sid(3);
    assert_eq!(s1["ste"]["S1ContextPtr"], CDT >> 6);
    assert_eq!(s1["cd0"]["ASID"], 7);
}

// spec: K1, D1
#[test]
fn an_smmu_the_driver_cannot_run_is_neither_adopted_nor_reset() {
    // The linear table that adopts above, on an SMMU whose command queue (IDR1.CMDQS 0) is
    // below the driver's minimum: the crash kernel's `probe::check` refuses it before the
    // adoption or a reset writes anything, so inspect must not say "adopt".
    let mut d = linear_dump("cannot-run");
    d.reg(
        "idr1",
        (IDR1::SIDSIZE.val(24) + IDR1::SSIDSIZE.val(20) + IDR1::EVTQS.val(19)).value,
    );
    let v = d.json(&[]);
    assert_eq!(v["verdict"], "driver-cannot-run", "{v}");
    assert_eq!(v["reason"], "cmdq-too-small");
    // The table is still shown, with nothing deferred or reserved: no crash kernel runs it.
    assert_eq!(sids(&v), [1, 2, 3, 4]);
    for sid in [1, 2, 3, 4] {
        assert_eq!(field(&v, sid, "deferred"), false, "SID {sid}");
    }
    assert_eq!(ids(&v, "reserved_asids"), Vec::<u64>::new());
    assert_eq!(ids(&v, "reserved_vmids"), Vec::<u64>::new());
    let out = d.run(&[]);
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("verdict: driver cannot run this SMMU: a command queue of 2^0 entries"),
        "{text}"
    );
}

// spec: K2, K3, K11, K14
#[test]
fn two_level_table_is_adopted_and_reservations_are_deduplicated() {
    let v = two_level_dump("two-level").json(&[]);
    assert_eq!(v["verdict"], "adopt", "{v}");
    assert_eq!(v["reason"], Value::Null);
    assert_eq!(sids(&v), [0x100, 0x1ff, 0x400, 0x401, 0x402]);
    assert_eq!(field(&v, 0x100, "kind"), "s2-translate");
    assert_eq!(field(&v, 0x1ff, "kind"), "bypass");
    assert_eq!(field(&v, 0x400, "kind"), "s1-translate");
    for sid in [0x100, 0x1ff, 0x400, 0x401, 0x402] {
        assert_eq!(field(&v, sid, "deferred"), true, "SID {sid:#x}");
    }
    // Two STEs share a CD table and two share a VMID: each ID once, sorted.
    assert_eq!(ids(&v, "reserved_asids"), [3, 12]);
    assert_eq!(ids(&v, "reserved_vmids"), [9]);
}

#[test]
fn human_output_names_the_verdict_streams_and_fields() {
    let out = linear_dump("text").run(&[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "verdict: adopt: a crash kernel would keep this SMMU translating",
        "stream table: linear, 16 STEs at 0x80000000",
        "valid STEs: 4 (abort 1, bypass (no translation) 1, stage 1 1, stage 2 1)",
        "StreamID 0x2: stage 2; VMID 5, stage-2 translation table at 0x90000000 — deferred attach",
        "StreamID 0x3: stage 1; CD table at 0x81000000 (linear, 1 CD); substream 0: ASID 7, \
         translation table at 0xa0000000 — deferred attach",
        "StreamID 0x4: abort\n",
        "reserved ASIDs: 7",
        "reserved VMIDs: 5",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // One line per valid StreamID after the summary (6 lines and a blank), nothing more:
    // the output grows with the valid STEs, not with the fields of each.
    assert_eq!(text.lines().count(), 7 + 4, "{text}");
    // Plain words: no rule codes in what a person reads.
    assert!(!text.contains("K11") && !text.contains("SPEC"), "{text}");

    // One StreamID in full.
    let out = linear_dump("text-sid").run(&["--sid", "0b11"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "StreamID 0x3: STE at 0x800000c0",
        "Config",
        "= 0b101",
        "its CD for substream 0:",
        "ASID",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Refused dumps: full reset with the exact reason.

// spec: K3, K4
#[test]
fn l1_descriptor_with_span_5_refuses_adoption() {
    let d = two_level_dump_span("span5", 5);
    let v = d.json(&[]);
    assert_eq!(v["verdict"], "full-reset");
    assert_eq!(v["reason"], "l1-bad-span");
    // K4: a refused adoption reserves nothing.
    assert_eq!(ids(&v, "reserved_asids"), Vec::<u64>::new());
    assert_eq!(ids(&v, "reserved_vmids"), Vec::<u64>::new());
    // The geometry itself is valid: the good descriptor's STEs are still shown, the bad
    // descriptor's are skipped with a note on stderr.
    assert_eq!(sids(&v), [0x400, 0x401, 0x402]);
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("level-1 descriptor 1"),
        "{v}"
    );
    let out = d.run(&[]);
    assert_eq!(out.status.code(), Some(1), "full reset");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("verdict: full reset: a crash kernel would reset this SMMU, because ")
            && text.contains("(reason code l1-bad-span)"),
        "{text}"
    );
    // Under a full reset nothing is deferred: the devices are aborted until reattached.
    assert!(!text.contains("deferred"), "{text}");
    assert!(text.contains("aborted after the full reset"), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("level-1 descriptor 1"), "{err}");
}

// spec: K2, K4
#[test]
fn misaligned_stream_table_base_refuses_adoption() {
    let mut d = linear_dump("misaligned");
    // A 1 KiB linear table must be 1 KiB aligned.
    d.reg("STRTAB_BASE", ST + 0x40);
    let v = d.json(&[]);
    assert_eq!(v["verdict"], "full-reset");
    assert_eq!(v["reason"], "base-misaligned");
    assert_eq!(sids(&v), Vec::<u64>::new(), "no geometry, no walk");
}

// spec: K4, K14
#[test]
fn table_missing_from_the_dump_refuses_adoption() {
    let mut d = linear_dump("no-cd");
    d.mem.remove(CDT); // the CD table is not in the dump
    let v = d.json(&[]);
    // Not a verdict on the table but on the dump: exit status 3, the reason in the JSON.
    assert_eq!(v["verdict"], "dump-incomplete");
    assert_eq!(v["reason"], "memory-unreadable");
    assert!(
        v["reason_text"].as_str().unwrap().contains("0x81000000"),
        "{v}"
    );
    assert_eq!(sids(&v), [1, 2, 3, 4]);
}

/// The registers inspect read, from the crash kernel's line it reports (`registers`).
fn snapshot_of(v: &Value) -> smmu_kdump::RegisterSnapshot {
    let line = v["registers"].as_str().expect("the register line");
    let reg = |name: &str| -> u64 {
        let value = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("SMMU_{name}=0x")))
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        u64::from_str_radix(value, 16).unwrap()
    };
    let r32 = |name: &str| reg(name) as u32;
    smmu_kdump::RegisterSnapshot {
        ids: smmu::arch::idr::IdRegs {
            idr: ["IDR0", "IDR1", "IDR2", "IDR3", "IDR4", "IDR5"].map(r32),
            iidr: r32("IIDR"),
            aidr: r32("AIDR"),
        },
        cr0: r32("CR0"),
        cr1: r32("CR1"),
        cr2: r32("CR2"),
        gbpa: r32("GBPA"),
        gerror: r32("GERROR"),
        gerrorn: r32("GERRORN"),
        strtab_base: reg("STRTAB_BASE"),
        strtab_base_cfg: r32("STRTAB_BASE_CFG"),
    }
}

/// Adoption's view of a dump: `smmu_kdump::check_adoption` (what a crash kernel runs) on the
/// registers inspect read and the dump's memory; the StreamIDs its scan reported deferred
/// (every valid STE but an abort one), and its verdict.
fn adoption_view(d: &Dump, v: &Value) -> (Vec<u64>, Result<(), smmu_kdump::Refusal>) {
    let platform = smmu_kdump::AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        ..Default::default()
    };
    let mut deferred = Vec::new();
    let mut scratch = vec![smmu_kdump::ScratchSlot::default(); smmu_kdump::MAX_SCRATCH_SLOTS];
    let verdict = smmu_kdump::check_adoption(
        &snapshot_of(v),
        &platform,
        &smmu_kdump::any_ram,
        &d.mem,
        &mut scratch,
        &mut |f| {
            if let smmu_kdump::Found::Deferred { sid } = f {
                deferred.push(u64::from(sid));
            }
            Ok(())
        },
    );
    (deferred, verdict.map(|_| ()))
}

// spec: K3, K4, K14
#[test]
fn inspect_and_adoption_see_the_same_stes_on_a_table_with_gaps() {
    // The 2-level dump, with descriptor 2 pointing at a level-2 table the dump lacks.
    const L2C: u64 = 0x8020_0000;
    let mut d = two_level_dump("gap");
    d.write(ST + 2 * 8, &[l1std(9, L2C)]);
    let v = d.json(&[]);
    assert_eq!(v["verdict"], "dump-incomplete");
    assert!(
        v["reason_text"].as_str().unwrap().contains("0x80200000"),
        "{v}"
    );
    // Inspect goes on past the gap: every STE the dump holds, and a note where it lacks one.
    assert_eq!(sids(&v), [0x100, 0x1ff, 0x400, 0x401, 0x402]);
    assert_eq!(
        v["notes"],
        serde_json::json!([
            "the level-2 table of level-1 descriptor 2 (at 0x80200000) is not in the dump \
             from StreamID 0x200 on"
        ])
    );
    // Adoption stops at the gap: up to it, the same STEs.
    let (deferred, verdict) = adoption_view(&d, &v);
    assert_eq!(
        verdict,
        Err(smmu_kdump::Refusal::MemoryUnreadable { pa: L2C, len: 512 })
    );
    let listed_before_gap: Vec<u64> = sids(&v).into_iter().filter(|&s| s < 0x200).collect();
    assert_eq!(deferred, listed_before_gap);

    // The dump completed: the crash kernel would adopt, and both see one set of STEs.
    d.region(L2C, 16 << 10).write(L2C + 5 * 64, &bypass());
    let v = d.json(&[]);
    assert_eq!(v["verdict"], "adopt");
    assert_eq!(v["notes"], serde_json::json!([]));
    assert_eq!(sids(&v), [0x100, 0x1ff, 0x205, 0x400, 0x401, 0x402]);
    let (deferred, verdict) = adoption_view(&d, &v);
    assert_eq!(verdict, Ok(()));
    assert_eq!(deferred, sids(&v));
}

// spec: K1, K17
#[test]
fn the_decision_follows_the_platform_flags_and_the_registers() {
    let d = linear_dump("decision");
    let v = d.json(&["--crash-kernel", "no"]);
    assert_eq!(v["reason"], "not-crash-kernel");
    assert_eq!(sids(&v), [1, 2, 3, 4], "the table is still shown");
    let v = d.json(&["--coherent", "no"]);
    assert_eq!(v["reason"], "not-coherent");
    let v = d.json(&["--coherent", "yes", "--crash-kernel", "yes"]);
    assert_eq!(v["verdict"], "adopt");

    // Without IDR0.COHACC the default is non-coherent; --coherent yes overrides it.
    let mut d = linear_dump("no-cohacc");
    d.reg("IDR0", idr0() & !IDR0::COHACC::SET.value);
    assert_eq!(d.json(&[])["reason"], "not-coherent");
    assert_eq!(d.json(&["--coherent", "yes"])["verdict"], "adopt");

    let mut d = linear_dump("disabled");
    d.reg("CR0", "0xc");
    assert_eq!(d.json(&[])["reason"], "smmu-disabled");
}

// ---------------------------------------------------------------------------------------------
// Malformed calls: one line on stderr, exit status 2.

fn assert_usage_error(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    assert!(err.starts_with("smmuctl: "), "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what}: printed to stdout");
}

#[test]
fn missing_files_exit_2() {
    let d = linear_dump("missing");
    let mut args = d.args();
    let missing = d.dir.join("nope.bin").display().to_string();
    args.push("--mem".into());
    args.push(format!("0x9000_0000:{missing}"));
    let out = smmuctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_usage_error(&out, "missing memory file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.bin"));

    let mut args = d.args();
    args[2] = d.dir.join("nope.json").display().to_string();
    let out = smmuctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_usage_error(&out, "missing register file");
}

#[test]
fn malformed_register_files_exit_2() {
    let d = linear_dump("malformed");
    let args = d.args();
    let regs = d.dir.join("regs.json");
    let good = std::fs::read_to_string(&regs).unwrap();
    for (what, text) in [
        ("not JSON", "{\"IDR0\": ".to_string()),
        ("not an object", "[1, 2]".to_string()),
        ("unknown register", good.replace("\"IDR3\"", "\"IDR9\"")),
        ("missing register", good.replace("\"GERRORN\"", "\"AIDR\"")),
        ("negative value", good.replace("\"IDR3\":0", "\"IDR3\":-1")),
        ("bad string", good.replace("\"0x80000000\"", "\"0xzz\"")),
        (
            "32-bit overflow",
            good.replace("\"IDR3\":0", "\"IDR3\":4294967296"),
        ),
        ("duplicate", good.replacen('{', "{\"smmu_idr0\":1,", 1)),
    ] {
        assert_ne!(text, good, "{what}: the fixture did not change");
        std::fs::write(&regs, &text).unwrap();
        let out = smmuctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_usage_error(&out, what);
    }
}

#[test]
fn bad_memory_arguments_exit_2() {
    let d = linear_dump("bad-base");
    let file = d.dir.join("mem0.bin").display().to_string();
    let regs = d.dir.join("regs.json").display().to_string();
    let _ = d.args();
    for (what, mem) in [
        ("not a number", format!("0xg000:{file}")),
        ("decimal with hex digits", format!("8000000a:{file}")),
        ("no base", format!(":{file}")),
        ("no colon", file.clone()),
        ("unaligned", format!("0x8000_0004:{file}")),
        ("no file", "0x8000_0000:".to_string()),
    ] {
        let out = smmuctl(&["inspect", "--regs", &regs, "--mem", &mem]);
        assert_usage_error(&out, what);
    }
    let out = smmuctl(&[
        "inspect",
        "--regs",
        &regs,
        "--mem",
        &format!("0x8000_0000:{file}"),
        "--mem",
        &format!("0x8000_0200:{file}"),
    ]);
    assert_usage_error(&out, "overlapping regions");
}

// spec: B1 — a region that ends exactly at 2^64 is checked with the others without an
// overflow: overlapping it is one line and exit 2 (a debug build used to panic), and a region
// below it that does not touch it is accepted.
#[test]
fn regions_ending_at_the_top_of_the_address_space_are_compared_without_overflow() {
    let d = linear_dump("top");
    let regs = d.dir.join("regs.json").display().to_string();
    let _ = d.args();
    let top16 = d.dir.join("top16.bin");
    let top8 = d.dir.join("top8.bin");
    std::fs::write(&top16, [0u8; 16]).unwrap();
    std::fs::write(&top8, [0u8; 8]).unwrap();
    let (top16, top8) = (top16.display().to_string(), top8.display().to_string());
    let out = smmuctl(&[
        "inspect",
        "--regs",
        &regs,
        "--mem",
        &format!("0xffff_ffff_ffff_fff0:{top16}"),
        "--mem",
        &format!("0xffff_ffff_ffff_fff8:{top8}"),
    ]);
    assert_usage_error(&out, "overlap at the top of the address space");
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlap"));
    // Adjacent, not overlapping: accepted (the verdict is then the table's, not a usage error).
    let out = smmuctl(&[
        "inspect",
        "--regs",
        &regs,
        "--mem",
        &format!("0xffff_ffff_ffff_ffe8:{top8}"),
        "--mem",
        &format!("0xffff_ffff_ffff_fff0:{top16}"),
    ]);
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(101), "panicked");
}

// ---------------------------------------------------------------------------------------------
// Real dumps: ELF cores, split files, register text, pictures.

/// An ELF64 core (`ET_CORE`, AArch64) with an empty `PT_NOTE` and one `PT_LOAD` per region at
/// its physical address; virtual addresses are a linear map's, so only `p_paddr` is right.
fn elf_core(regions: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let phnum = regions.len() + 1;
    let data_start = 64 + 56 * phnum as u64;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&4u16.to_le_bytes()); // e_type: ET_CORE
    out.extend_from_slice(&183u16.to_le_bytes()); // e_machine: EM_AARCH64
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, phnum as u16, 64, 0, 0] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    let mut phdr = |p_type: u32, offset: u64, paddr: u64, size: u64| {
        out.extend_from_slice(&p_type.to_le_bytes());
        out.extend_from_slice(&6u32.to_le_bytes()); // PF_R | PF_W
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(0xffff_0000_0000_0000 | paddr).to_le_bytes());
        out.extend_from_slice(&paddr.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&0x1000u64.to_le_bytes());
    };
    phdr(4, data_start, 0, 0); // PT_NOTE, empty
    let mut offset = data_start;
    for (base, bytes) in regions {
        phdr(1, offset, *base, bytes.len() as u64);
        offset += bytes.len() as u64;
    }
    for (_, bytes) in regions {
        out.extend_from_slice(bytes);
    }
    out
}

impl Dump {
    /// The same dump as one ELF core; returns the `inspect` arguments.
    fn vmcore_args(&self) -> Vec<String> {
        let mut args = self.args();
        args.truncate(3);
        let core = self.dir.join("vmcore");
        std::fs::write(&core, elf_core(&self.mem.regions_bytes())).unwrap();
        args.push("--vmcore".into());
        args.push(core.display().to_string());
        args
    }
}

fn run_args(args: &[String], extra: &[&str]) -> Output {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    smmuctl(&all)
}

#[test]
fn an_elf_core_is_read_through_its_physical_addresses_like_raw_files() {
    for (d, want) in [
        (linear_dump("vmcore-linear"), "adopt"),
        (two_level_dump("vmcore-2l"), "adopt"),
        (two_level_dump_span("vmcore-span5", 5), "full-reset"),
    ] {
        let raw = d.json(&[]);
        let out = run_args(&d.vmcore_args(), &["--json"]);
        let core: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(core["verdict"], want, "{core}");
        assert_eq!(
            core, raw,
            "the vmcore route must report what the raw route does"
        );
    }
}

fn two_level_dump_span(name: &str, span: u8) -> Dump {
    two_level_dump_with(name, span)
}

fn two_level_dump(name: &str) -> Dump {
    two_level_dump_with(name, 9)
}

#[test]
fn dump_formats_that_are_not_raw_memory_are_refused_with_a_hint() {
    let d = linear_dump("formats");
    let args = d.vmcore_args();
    let core = d.dir.join("vmcore").display().to_string();
    let regs = d.dir.join("regs.json").display().to_string();
    // An ELF core given as raw memory: it would be misread, so it is refused.
    let out = smmuctl(&[
        "inspect",
        "--regs",
        &regs,
        "--mem",
        &format!("0x8000_0000:{core}"),
    ]);
    assert_usage_error(&out, "ELF as raw");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vmcore"));
    // makedumpfile's compressed format: named, with the command that writes an ELF dump.
    let kdump = d.dir.join("dumpfile");
    let mut bytes = b"KDUMP   ".to_vec();
    bytes.resize(4096, 0);
    std::fs::write(&kdump, &bytes).unwrap();
    let kdump = kdump.display().to_string();
    for flag in [
        ["--vmcore", kdump.as_str()],
        ["--mem", &format!("0:{kdump}")],
    ] {
        let out = smmuctl(&["inspect", "--regs", &regs, flag[0], flag[1]]);
        assert_usage_error(&out, "compressed kdump");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("compressed") && err.contains("makedumpfile -E"),
            "{err}"
        );
    }
    // A raw file given as a vmcore.
    let raw = d.dir.join("mem0.bin").display().to_string();
    let out = smmuctl(&["inspect", "--regs", &regs, "--vmcore", &raw]);
    assert_usage_error(&out, "raw as ELF");
    // A truncated core: its segment runs past the end of the file.
    let mut truncated = std::fs::read(&args[4]).unwrap();
    truncated.truncate(truncated.len() - 8);
    std::fs::write(&args[4], truncated).unwrap();
    let out = run_args(&args, &[]);
    assert_usage_error(&out, "truncated core");
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
}

#[test]
fn files_that_touch_read_as_one_memory() {
    // The stream table split in two files in the middle of STE 2: bytes split across files
    // are still one STE.
    let whole = linear_dump("split-whole");
    let d = linear_dump("split");
    let mut files = d.mem.regions_bytes();
    let (base, bytes) = files.remove(0);
    let cut = 2 * 64 + 24;
    files.insert(0, (base + cut as u64, bytes[cut..].to_vec()));
    files.insert(0, (base, bytes[..cut].to_vec()));
    let out = run_args(&d.args_for(&files), &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = whole.json(&[]);
    assert_eq!(v["verdict"], "adopt", "{v}");
    assert_eq!(v["streams"], want["streams"]);
    assert_eq!(
        v["memory"], want["memory"],
        "touching regions are one range"
    );
    assert_eq!(v["memory"][0], serde_json::json!([ST, ST + 16 * 64 - 1]));
}

#[test]
fn registers_as_the_crash_kernels_line_or_devmem_reads() {
    use std::fmt::Write as _;
    let d = linear_dump("regs-text");
    let args = d.args();
    let json_regs = std::fs::read_to_string(d.dir.join("regs.json")).unwrap();
    let want = d.json(&[]);
    // The crash kernel's one-line snapshot (the JSON output carries it too).
    let line = want["registers"].as_str().unwrap().to_string();
    assert!(line.starts_with("SMMU_IDR0=0x"), "{line}");
    let text = d.dir.join("regs.txt");
    std::fs::write(&text, format!("{line}\n")).unwrap();
    let mut a = args.clone();
    a[2] = text.display().to_string();
    let v: Value = serde_json::from_slice(&run_args(&a, &["--json"]).stdout).unwrap();
    assert_eq!(v, want);
    // devmem reads pasted as NAME=VALUE lines, with comments, Linux's and the spec's names.
    let regs: serde_json::Map<String, Value> = serde_json::from_str(&json_regs).unwrap();
    let mut lines = String::from("# devmem reads of the SMMU at 0x09050000\n");
    for (name, value) in &regs {
        let value = match value {
            Value::String(s) => s.clone(),
            other => format!("{:#010x}", other.as_u64().unwrap()),
        };
        writeln!(lines, "{name}={value}   # read with devmem").unwrap();
    }
    std::fs::write(&text, &lines).unwrap();
    let v: Value = serde_json::from_slice(&run_args(&a, &["--json"]).stdout).unwrap();
    assert_eq!(v, want, "{lines}");
    // A token that is not NAME=VALUE is a usage error naming its line.
    std::fs::write(&text, format!("{lines}CR0 0xd\n")).unwrap();
    let out = run_args(&a, &[]);
    assert_usage_error(&out, "not NAME=VALUE");
    assert!(String::from_utf8_lossy(&out.stderr).contains("line"));
}

/// The nodes and edges of a DOT graph as layout-rs's pure-Rust parser reads it: every node
/// named by a node or edge statement, every edge of every chain (`a -> b -> c`), subgraphs
/// included.
fn dot_structure(dot: &str) -> (Vec<String>, Vec<(String, String)>) {
    use layout::gv::parser::ast::{Stmt, StmtList};
    fn visit(list: &StmtList, nodes: &mut Vec<String>, edges: &mut Vec<(String, String)>) {
        for stmt in &list.list {
            match stmt {
                Stmt::Node(n) => nodes.push(n.id.name.clone()),
                Stmt::Edge(e) => {
                    let mut from = &e.from.name;
                    nodes.push(from.clone());
                    for (to, _) in &e.to {
                        nodes.push(to.name.clone());
                        edges.push((from.clone(), to.name.clone()));
                        from = &to.name;
                    }
                }
                Stmt::SubGraph(g) => visit(&g.list, nodes, edges),
                Stmt::Attribute(_) => {}
            }
        }
    }
    let graph = layout::gv::DotParser::new(dot)
        .process()
        .unwrap_or_else(|e| panic!("--dot output does not parse: {e}\n{dot}"));
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    visit(&graph.list, &mut nodes, &mut edges);
    nodes.sort();
    nodes.dedup();
    (nodes, edges)
}

/// What the two-level dump's table graph must show, whoever reads it: level-1 table → two
/// level-2 tables → five STEs; the stage-1 STEs share one CD table, whose CD 0 points at one
/// translation table; the stage-2 STEs share theirs.
fn assert_table_graph_shape<N: AsRef<str>, E: AsRef<str>>(nodes: &[N], edges: &[(E, E)]) {
    let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
    let edges: Vec<(&str, &str)> = edges
        .iter()
        .map(|(a, b)| (a.as_ref(), b.as_ref()))
        .collect();
    for n in [
        "strtab", "l2_1", "l2_4", "sid_256", "sid_511", "sid_1024", "sid_1025", "sid_1026",
    ] {
        assert!(nodes.contains(&n), "node {n} missing: {nodes:?}");
    }
    for e in [
        ("strtab", "l2_1"),
        ("strtab", "l2_4"),
        ("l2_4", "sid_1024"),
        ("sid_1024", "cd_81000000"),
        ("sid_1025", "cd_81000000"),
        ("cd_81000000", "tt_a0000000"),
        ("sid_256", "tt_90000000"),
        ("sid_1026", "tt_90000000"),
    ] {
        assert!(edges.contains(&e), "edge {e:?} missing: {edges:?}");
    }
    assert_eq!(nodes.iter().filter(|n| n.starts_with("cd_")).count(), 1);
}

#[test]
fn the_table_graph_has_the_tables_shape() {
    let out = two_level_dump("dot").run(&["--dot"]);
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    let (nodes, edges) = dot_structure(&dot);
    assert_table_graph_shape(&nodes, &edges);
    // And it lays out: layout-rs draws it as SVG, again without Graphviz.
    let graph = layout::gv::DotParser::new(&dot).process().unwrap();
    let mut builder = layout::gv::GraphBuilder::new();
    builder.visit_graph(&graph);
    let mut svg = layout::backends::svg::SVGWriter::new();
    builder.get().do_it(false, false, false, &mut svg);
    let svg = svg.finalize();
    assert!(svg.starts_with("<svg") || svg.contains("<svg "), "{svg}");
    assert_eq!(
        svg.matches("marker-end").count(),
        edges.len(),
        "one arrow per edge: {svg}"
    );
}

/// Graphviz itself lays the graph out, where it is installed (`.ci/run` installs it); without
/// it the structure is still checked above, in pure Rust.
#[test]
fn the_table_graph_renders_with_graphviz_when_installed() {
    let out = two_level_dump("dot-render").run(&["--dot"]);
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    let render = Command::new("dot")
        .arg("-Tplain")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut render) = render else {
        println!("note: Graphviz's `dot` is not installed: the render through it is skipped");
        return;
    };
    use std::io::Write as _;
    render
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let rendered = render.wait_with_output().unwrap();
    assert!(rendered.status.success(), "dot failed on:\n{dot}");
    let plain = String::from_utf8(rendered.stdout).unwrap();
    let nodes: Vec<&str> = plain
        .lines()
        .filter_map(|l| l.strip_prefix("node "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let edges: Vec<(&str, &str)> = plain
        .lines()
        .filter_map(|l| l.strip_prefix("edge "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?))
        })
        .collect();
    assert_table_graph_shape(&nodes, &edges);
}

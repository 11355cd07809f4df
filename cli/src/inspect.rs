//! `smmuctl inspect`: the adoption validator of `smmu-kdump` (SPEC K1–K3, K11, K13–K15) run
//! offline on a dump: registers from a JSON file, the crashed kernel's memory from raw files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use smmu::arch::idr::IdRegs;
use smmu::arch::regs::{RegWidth, RegisterInfo};
use smmu::arch::ste;
use smmu_kdump::{
    any_ram, check_adoption, ste_pa_in_l2, validate_geometry, AdoptPlatform, Format, Found,
    Geometry, MemFault, OldMemory, Refusal, RegisterSnapshot, ScratchSlot, MAX_SCRATCH_SLOTS,
};

use crate::decode::{decode_ste, Decoded, UsageError};

/// `yes` or `no`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum YesNo {
    Yes,
    No,
}

impl YesNo {
    fn get(self) -> bool {
        self == YesNo::Yes
    }
}

/// The arguments of `smmuctl inspect`.
#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    /// JSON object of register name → value (IDR0–IDR5, CR0, CR2, GERROR, GERRORN,
    /// STRTAB_BASE, STRTAB_BASE_CFG; optionally IIDR, AIDR, CR1, GBPA). Names are
    /// case-insensitive, `SMMU_` optional; values are integers or "0x…" strings. Other SMMU
    /// registers are accepted and ignored.
    #[arg(long, value_name = "REGS.json")]
    regs: PathBuf,
    /// Raw little-endian memory FILE loaded at physical address BASE (hexadecimal, `0x`
    /// optional), e.g. `0x80000000:strtab.bin`. Repeat for each region; regions must not
    /// overlap, and each structure must lie inside one file.
    #[arg(long, value_name = "BASE:FILE", required = true)]
    mem: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Whether the SMMU's table walks are coherent (default: `IDR0.COHACC`).
    #[arg(long, value_enum)]
    coherent: Option<YesNo>,
    /// Whether to decide as a crash kernel would.
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    crash_kernel: YesNo,
}

// ---------------------------------------------------------------------------------------------
// The dump.

/// One file of the crashed kernel's memory.
struct Region {
    base: u64,
    bytes: Vec<u8>,
}

/// The crashed kernel's memory as dumped: reads outside the loaded files fail.
struct Dump {
    /// Sorted by base, non-overlapping.
    regions: Vec<Region>,
}

impl OldMemory for Dump {
    /// Each read must lie inside one file.
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        let len = (out.len() as u64).checked_mul(8).ok_or(MemFault)?;
        let region = self
            .regions
            .iter()
            .find(|r| r.base <= pa && pa - r.base < r.bytes.len() as u64)
            .ok_or(MemFault)?;
        let start = usize::try_from(pa - region.base).map_err(|_| MemFault)?;
        let end = start
            .checked_add(usize::try_from(len).map_err(|_| MemFault)?)
            .ok_or(MemFault)?;
        let bytes = region.bytes.get(start..end).ok_or(MemFault)?;
        for (w, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Ok(())
    }
}

fn parse_base(text: &str) -> Result<u64, UsageError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
        .replace('_', "");
    if digits.is_empty() {
        return Err(UsageError(format!(
            "--mem: '{text}' is not a hexadecimal physical address"
        )));
    }
    let base = u64::from_str_radix(&digits, 16).map_err(|_| {
        UsageError(format!(
            "--mem: '{text}' is not a hexadecimal physical address"
        ))
    })?;
    if base % 8 != 0 {
        return Err(UsageError(format!(
            "--mem: base {base:#x} is not 8-byte aligned"
        )));
    }
    Ok(base)
}

fn load_dump(specs: &[String]) -> Result<Dump, UsageError> {
    let mut regions: Vec<(Region, String)> = Vec::new();
    for spec in specs {
        let Some((base, file)) = spec.split_once(':') else {
            return Err(UsageError(format!(
                "--mem takes BASE:FILE (hexadecimal base, then the file), got '{spec}'"
            )));
        };
        let base = parse_base(base)?;
        if file.is_empty() {
            return Err(UsageError(format!("--mem '{spec}': no file named")));
        }
        let bytes = std::fs::read(file)
            .map_err(|e| UsageError(format!("cannot read memory file '{file}': {e}")))?;
        if bytes.is_empty() {
            return Err(UsageError(format!("memory file '{file}' is empty")));
        }
        if base.checked_add(bytes.len() as u64 - 1).is_none() {
            return Err(UsageError(format!(
                "memory file '{file}' ({} bytes) at {base:#x} runs past the 64-bit address space",
                bytes.len()
            )));
        }
        regions.push((Region { base, bytes }, file.to_string()));
    }
    regions.sort_by_key(|(r, _)| r.base);
    for pair in regions.windows(2) {
        let [(a, fa), (b, fb)] = pair else { continue };
        // Compare last bytes: a region may end at 2^64 exactly (its last byte was checked to
        // fit), where "base + len" would overflow.
        let a_last = a.base.saturating_add(a.bytes.len() as u64 - 1);
        if a_last >= b.base {
            return Err(UsageError(format!(
                "memory files '{fa}' (at {:#x}) and '{fb}' (at {:#x}) overlap",
                a.base, b.base
            )));
        }
    }
    Ok(Dump {
        regions: regions.into_iter().map(|(r, _)| r).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// The registers.

/// Registers the snapshot needs; the others of `RegisterSnapshot` default to 0.
const REQUIRED: &[&str] = &[
    "IDR0",
    "IDR1",
    "IDR2",
    "IDR3",
    "IDR4",
    "IDR5",
    "CR0",
    "CR2",
    "GERROR",
    "GERRORN",
    "STRTAB_BASE",
    "STRTAB_BASE_CFG",
];

fn register_value(path: &Path, name: &str, v: &Value) -> Result<u64, UsageError> {
    let bad = || {
        UsageError(format!(
            "{}: SMMU_{name} must be a non-negative integer or a \"0x…\" string, got {v}",
            path.display()
        ))
    };
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim().replace('_', "");
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).map_err(|_| bad()),
                Some(_) => Err(bad()),
                None => s.parse::<u64>().map_err(|_| bad()),
            }
        }
        _ => Err(bad()),
    }
}

fn load_regs(path: &Path) -> Result<RegisterSnapshot, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UsageError(format!(
            "cannot read register file '{}': {e}",
            path.display()
        ))
    })?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{}: not valid JSON: {e}", path.display())))?;
    let Value::Object(map) = value else {
        return Err(UsageError(format!(
            "{}: expected a JSON object of register name → value",
            path.display()
        )));
    };
    let mut regs: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (key, v) in &map {
        let info = RegisterInfo::by_name(key).ok_or_else(|| {
            UsageError(format!(
                "{}: '{key}' is not an SMMUv3 register",
                path.display()
            ))
        })?;
        let value = register_value(path, info.name, v)?;
        if info.width == RegWidth::W32 && value > u64::from(u32::MAX) {
            return Err(UsageError(format!(
                "{}: SMMU_{} is a 32-bit register, got {value:#x}",
                path.display(),
                info.name
            )));
        }
        if regs.insert(info.name, value).is_some() {
            return Err(UsageError(format!(
                "{}: SMMU_{} is given twice",
                path.display(),
                info.name
            )));
        }
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !regs.contains_key(r))
        .collect();
    if !missing.is_empty() {
        return Err(UsageError(format!(
            "{}: missing register{} {}",
            path.display(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        )));
    }
    // Every 32-bit register was range-checked above; STRTAB_BASE is the only 64-bit one used.
    let r32 = |name: &str| regs.get(name).copied().unwrap_or(0) as u32;
    Ok(RegisterSnapshot {
        ids: IdRegs {
            idr: [
                r32("IDR0"),
                r32("IDR1"),
                r32("IDR2"),
                r32("IDR3"),
                r32("IDR4"),
                r32("IDR5"),
            ],
            iidr: r32("IIDR"),
            aidr: r32("AIDR"),
        },
        cr0: r32("CR0"),
        cr1: r32("CR1"),
        cr2: r32("CR2"),
        gbpa: r32("GBPA"),
        gerror: r32("GERROR"),
        gerrorn: r32("GERRORN"),
        strtab_base: regs.get("STRTAB_BASE").copied().unwrap_or(0),
        strtab_base_cfg: r32("STRTAB_BASE_CFG"),
    })
}

// ---------------------------------------------------------------------------------------------
// The analysis.

/// One valid (`V` = 1) STE of the dumped table.
struct Stream {
    sid: u32,
    ste: Decoded,
    /// `V` = 1 and `Config` ≠ abort: adoption defers the master's attach (SPEC K11).
    deferred: bool,
}

/// What `smmuctl inspect` found.
pub(crate) struct Inspection {
    refusal: Option<Refusal>,
    geometry: Option<Geometry>,
    streams: Vec<Stream>,
    asids: BTreeSet<u16>,
    vmids: BTreeSet<u16>,
    /// Why the STE walk stopped early or skipped part of the table.
    notes: Vec<String>,
}

fn stream_of(sid: u32, words: [u64; 8]) -> Option<Stream> {
    if ste::fields::V.get(&words) == 0 {
        return None;
    }
    Some(Stream {
        sid,
        deferred: ste::fields::CONFIG.get(&words) != 0,
        ste: decode_ste(words),
    })
}

fn read_ste(mem: &Dump, pa: u64) -> Result<[u64; 8], MemFault> {
    let mut w = [0u64; 8];
    mem.read_words(pa, &mut w)?;
    Ok(w)
}

/// Every valid STE of a validated table, through the same memory the validator read: each STE
/// of a linear table, the 256 STEs of each valid level-1 descriptor of a 2-level table. The
/// walk ends at the first part of the table missing from the dump, so it reads no more than
/// the table holds and the files contain.
fn walk(g: &Geometry, mem: &Dump, notes: &mut Vec<String>) -> Vec<Stream> {
    let mut streams = Vec::new();
    match g.format() {
        Format::Linear => {
            let n = g.linear_stes().unwrap_or(0);
            for sid in 0..n {
                let Some(pa) = g.ste_pa(sid) else { break };
                let Ok(w) = read_ste(mem, pa) else {
                    notes.push(format!(
                        "the STEs from SID {sid:#x} (at {pa:#x}) on are not in the dump"
                    ));
                    break;
                };
                streams.extend(stream_of(sid, w));
            }
        }
        Format::TwoLevel => {
            let n = g.l1_entries().unwrap_or(0);
            for index in 0..n {
                let first_sid = index << ste_split();
                let Some(pa) = g.l1_desc_pa(first_sid) else {
                    break;
                };
                let mut desc = [0u64; 1];
                if mem.read_words(pa, &mut desc).is_err() {
                    notes.push(format!(
                        "the level-1 descriptors from {index} (at {pa:#x}) on are not in the dump"
                    ));
                    break;
                }
                let l2 = match g.validate_l1(index, desc[0]) {
                    Ok(Some(l2)) => l2,
                    Ok(None) => continue,
                    Err(r) => {
                        notes.push(format!(
                            "level-1 descriptor {index} ({:#x}) skipped: {r}",
                            desc[0]
                        ));
                        continue;
                    }
                };
                for sid in first_sid..first_sid + (1 << ste_split()) {
                    let Some(pa) = ste_pa_in_l2(l2, sid) else {
                        break;
                    };
                    let Ok(w) = read_ste(mem, pa) else {
                        notes.push(format!(
                            "the level-2 table of level-1 descriptor {index} (at {l2:#x}) \
                             is not in the dump from SID {sid:#x} on"
                        ));
                        break;
                    };
                    streams.extend(stream_of(sid, w));
                }
            }
        }
    }
    streams
}

const fn ste_split() -> u32 {
    smmu::arch::l1std::STRTAB_SPLIT
}

/// Loads the dump and runs the validator and the STE walk.
pub(crate) fn inspect(args: &InspectArgs) -> Result<Inspection, UsageError> {
    let snap = load_regs(&args.regs)?;
    let dump = load_dump(&args.mem)?;
    let features = snap.features();
    let platform = AdoptPlatform {
        crash_kernel: args.crash_kernel.get(),
        coherent: args.coherent.map_or(features.coherent, YesNo::get),
        cache_maintenance: false,
        expect_e2h: None,
    };
    let mut asids = BTreeSet::new();
    let mut vmids = BTreeSet::new();
    let mut scratch = vec![ScratchSlot::default(); MAX_SCRATCH_SLOTS];
    let result = check_adoption(
        &snap,
        &platform,
        &any_ram,
        &dump,
        &mut scratch,
        &mut |found| {
            match found {
                Found::Asid { asid, .. } => {
                    asids.insert(asid);
                }
                Found::Vmid { vmid, .. } => {
                    vmids.insert(vmid);
                }
                Found::Deferred { .. } => {}
            }
            Ok(())
        },
    );
    let (refusal, geometry) = match result {
        Ok(adoption) => (None, Some(adoption.geometry)),
        Err(refusal) => {
            // A refused adoption releases what it reserved (SPEC K4). The table is still shown
            // when its registers pass K2, whatever the refusal was.
            asids.clear();
            vmids.clear();
            (
                Some(refusal),
                validate_geometry(&snap, &features, &any_ram).ok(),
            )
        }
    };
    let mut notes = Vec::new();
    let streams = geometry.map_or_else(Vec::new, |g| walk(&g, &dump, &mut notes));
    Ok(Inspection {
        refusal,
        geometry,
        streams,
        asids,
        vmids,
        notes,
    })
}

fn verdict(i: &Inspection) -> &'static str {
    if i.refusal.is_none() {
        "adopt"
    } else {
        "full-reset"
    }
}

fn id_list(set: &BTreeSet<u16>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Inspection {
    /// Warnings about the walk, for stderr.
    pub(crate) fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The human-readable report.
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!("verdict: {}\n", verdict(self));
        match &self.refusal {
            Some(r) => {
                let _ = writeln!(out, "reason: {}: {r}", r.code());
            }
            None => out.push_str("reason: none (the live stream table can be adopted)\n"),
        }
        match &self.geometry {
            Some(g) => {
                let _ = match g.format() {
                    Format::Linear => writeln!(
                        out,
                        "stream table: linear, {} STEs at {:#x}",
                        g.num_sids(),
                        g.base()
                    ),
                    Format::TwoLevel => writeln!(
                        out,
                        "stream table: 2-level, {} level-1 descriptors at {:#x} ({} StreamIDs)",
                        g.l1_entries().unwrap_or(0),
                        g.base(),
                        g.num_sids()
                    ),
                };
                let _ = writeln!(out, "valid STEs: {}", self.streams.len());
                for s in &self.streams {
                    let _ = writeln!(
                        out,
                        "\nSID {:#x} ({}): {}{}",
                        s.sid,
                        s.sid,
                        s.ste.kind(),
                        if s.deferred {
                            ", attach deferred (K11)"
                        } else {
                            ""
                        }
                    );
                    for line in s.ste.to_text().lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                out.push('\n');
            }
            None => out.push_str("stream table: registers not valid (SPEC K2); no STE read\n"),
        }
        let _ = writeln!(out, "reserved ASIDs: {}", id_list(&self.asids));
        let _ = writeln!(out, "reserved VMIDs: {}", id_list(&self.vmids));
        out
    }

    /// `{"verdict", "reason", "streams": [{"sid", "kind", "deferred", "ste"}],
    /// "reserved_asids", "reserved_vmids"}`.
    pub(crate) fn to_json(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .iter()
            .map(|s| {
                json!({
                    "sid": s.sid,
                    "kind": s.ste.kind(),
                    "deferred": s.deferred,
                    "ste": s.ste.to_json(),
                })
            })
            .collect();
        json!({
            "verdict": verdict(self),
            "reason": self.refusal.as_ref().map(Refusal::code),
            "streams": streams,
            "reserved_asids": self.asids.iter().collect::<Vec<_>>(),
            "reserved_vmids": self.vmids.iter().collect::<Vec<_>>(),
        })
    }
}

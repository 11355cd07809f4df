//! The SMMU registers of a dump: where a person gets them and how `--regs` reads them.
//!
//! A vmcore holds memory, never MMIO, so the registers come separately, in one of two forms,
//! told apart by the first non-blank character:
//! - a JSON object of register name → value (`{"IDR0": "0x…", …}`);
//! - text of `NAME=VALUE` pairs separated by spaces or newlines, `#` starting a comment:
//!   the one line a crash kernel prints from `smmu_kdump::RegisterSnapshot` (its `Display`),
//!   or lines pasted from `devmem` reads of the live SMMU (`CR0=0x0000000d`).
//!
//! Names are case-insensitive with `SMMU_` optional, and both the specification's and Linux's
//! spellings are accepted; values use the one number syntax of every `smmuctl` argument.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use smmu::arch::idr::IdRegs;
use smmu::arch::regs::{RegWidth, RegisterInfo};
use smmu_kdump::RegisterSnapshot;

use crate::decode::UsageError;

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

/// Reads `--regs FILE` in either form.
pub(crate) fn load(path: &Path) -> Result<RegisterSnapshot, UsageError> {
    let where_ = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read register file '{where_}': {e}")))?;
    let pairs = if text.trim_start().starts_with('{') {
        json_pairs(&text).map_err(|e| UsageError(format!("{where_}: {e}")))?
    } else {
        text_pairs(&text).map_err(|e| UsageError(format!("{where_}: {e}")))?
    };
    snapshot(&pairs).map_err(|e| UsageError(format!("{where_}: {e}")))
}

/// `(name as written, value text or number)`.
type Pairs = Vec<(String, String)>;

fn json_pairs(text: &str) -> Result<Pairs, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("expected a JSON object of register name → value".into());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::Number(n) => Ok((k, n.to_string())),
            Value::String(s) => Ok((k, s)),
            other => Err(format!(
                "{k} must be a number or a string like \"0x1f\", got {other}"
            )),
        })
        .collect()
}

fn text_pairs(text: &str) -> Result<Pairs, String> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for token in line.split_whitespace() {
            let Some((name, value)) = token.split_once('=') else {
                return Err(format!(
                    "line {}: '{token}' is not NAME=VALUE (for example CR0=0xd)",
                    n + 1
                ));
            };
            pairs.push((name.to_string(), value.to_string()));
        }
    }
    if pairs.is_empty() {
        return Err("no registers (expected NAME=VALUE pairs or a JSON object)".into());
    }
    Ok(pairs)
}

fn snapshot(pairs: &[(String, String)]) -> Result<RegisterSnapshot, String> {
    let mut regs: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (key, text) in pairs {
        let info = RegisterInfo::by_name(key)
            .ok_or_else(|| format!("'{key}' is not an SMMUv3 register"))?;
        let value = crate::num::parse_u64(text).map_err(|e| format!("SMMU_{}: {e}", info.name))?;
        if info.width == RegWidth::W32 && value > u64::from(u32::MAX) {
            return Err(format!(
                "SMMU_{} is a 32-bit register, got {value:#x}",
                info.name
            ));
        }
        if regs.insert(info.name, value).is_some() {
            return Err(format!("SMMU_{} is given twice", info.name));
        }
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !regs.contains_key(r))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing register{} {}",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        ));
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

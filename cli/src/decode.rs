//! `smmuctl decode`: one structure or register, every field by its specification name.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use smmu::arch::regs::{RegWidth, RegisterInfo};
use smmu::arch::{cd, cmd, event, l1std, pri, ste, Field};

/// What can be decoded, and how many 64-bit words each takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Structure {
    /// Stream Table Entry (8 words).
    Ste,
    /// Context Descriptor (8 words).
    Cd,
    /// Level-1 stream table descriptor (1 word).
    L1std,
    /// Level-1 CD table descriptor (1 word).
    L1cd,
    /// Command queue entry (2 words).
    Cmd,
    /// Event queue record (4 words).
    Event,
    /// PRI queue record (2 words).
    Pri,
    /// A register: `reg <NAME> <value>`.
    Reg,
}

impl Structure {
    fn words(self) -> usize {
        match self {
            Structure::Ste | Structure::Cd => 8,
            Structure::L1std | Structure::L1cd => 1,
            Structure::Cmd | Structure::Pri => 2,
            Structure::Event => 4,
            Structure::Reg => 1,
        }
    }
}

/// One decoded field.
pub(crate) struct FieldValue {
    name: &'static str,
    value: u64,
    width: u32,
    meaning: Option<String>,
    /// For a field that holds an address's upper bits: the address it stands for.
    address: Option<u64>,
}

/// A decoded structure or register, ready to print.
pub(crate) struct Decoded {
    title: String,
    kind: String,
    fields: Vec<FieldValue>,
    error: Option<String>,
    /// Things a person should look at that do not stop the decode (set RES0 bits).
    warnings: Vec<String>,
}

/// The JSON key that carries an address field's address, next to the raw field value.
pub(crate) const ADDRESS_SUFFIX: &str = "_address";

/// Why the arguments could not be decoded (exit status 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

fn parse_word(text: &str) -> Result<u64, UsageError> {
    crate::num::parse_u64(text).map_err(UsageError)
}

fn from_fields<const N: usize>(
    words: &[u64; N],
    list: &[Field],
    describe: impl Fn(&Field, u64) -> Option<&'static str>,
) -> Vec<FieldValue> {
    list.iter()
        .map(|f| {
            let value = f.get(words);
            FieldValue {
                name: f.name,
                value,
                width: f.width(),
                meaning: describe(f, value).map(String::from),
                address: f.address_of(value),
            }
        })
        .collect()
}

fn words<const N: usize>(all: &[u64]) -> [u64; N] {
    let mut out = [0u64; N];
    out.copy_from_slice(&all[..N]);
    out
}

/// Decodes `args` (hex words, or a register name and value) as `what`.
pub(crate) fn decode(what: Structure, args: &[String]) -> Result<Decoded, UsageError> {
    if what == Structure::Reg {
        return decode_register(args);
    }
    let want = what.words();
    if args.len() != want {
        return Err(UsageError(format!(
            "{} takes {want} 64-bit word{} (lowest-addressed first), got {}",
            format!("{what:?}").to_lowercase(),
            if want == 1 { "" } else { "s" },
            args.len()
        )));
    }
    let all = args
        .iter()
        .map(|a| parse_word(a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match what {
        Structure::Ste => decode_ste(words(&all)),
        Structure::Cd => decode_cd(words(&all)),
        Structure::L1std => {
            let w: [u64; 1] = words(&all);
            let (kind, error) = match l1std::L1Std::from_words(w).decode() {
                Ok(Some(_)) => ("valid".to_string(), None),
                Ok(None) => ("invalid".to_string(), None),
                Err(e) => ("illegal".to_string(), Some(e.to_string())),
            };
            Decoded {
                title: "L1STD".into(),
                kind,
                fields: from_fields(&w, l1std::fields::FIELDS, l1std::describe_field),
                error,
                warnings: Vec::new(),
            }
        }
        Structure::L1cd => {
            let w: [u64; 1] = words(&all);
            let kind = if cd::L1Cd::from_words(w).decode().is_some() {
                "valid"
            } else {
                "invalid"
            };
            Decoded {
                title: "L1CD".into(),
                kind: kind.into(),
                fields: from_fields(&w, cd::l1_fields::FIELDS, |f, v| {
                    (f.name == cd::l1_fields::V.name).then_some(if v == 0 {
                        "invalid"
                    } else {
                        "valid"
                    })
                }),
                error: None,
                warnings: Vec::new(),
            }
        }
        Structure::Cmd => {
            let w: [u64; 2] = words(&all);
            let entry = cmd::Cmd::from_words(w);
            let op = entry.opcode();
            let decoded = entry.decode();
            let is_all = matches!(decoded, Ok(cmd::Command::CfgiAll));
            let (kind, error) = match &decoded {
                Ok(c) => (c.name().to_string(), None),
                Err(e) => (
                    cmd::opcode_name(op).unwrap_or("CMD_RESERVED").to_string(),
                    Some(e.to_string()),
                ),
            };
            Decoded {
                title: "command".into(),
                kind,
                fields: from_fields(&w, cmd::fields_of(op, is_all), |f, v| {
                    cmd::describe_field(op, f, v)
                }),
                error,
                warnings: Vec::new(),
            }
        }
        Structure::Event => {
            let w: [u64; 4] = words(&all);
            let rec = event::EventRecord::from_words(w);
            let id = rec.id();
            let (kind, error) = match rec.decode() {
                Ok(e) => (e.name().to_string(), None),
                Err(e) => ("EVENT_RESERVED".to_string(), Some(e.to_string())),
            };
            Decoded {
                title: "event".into(),
                kind,
                fields: from_fields(&w, event::fields_of(id), event::describe_field),
                error,
                warnings: Vec::new(),
            }
        }
        Structure::Pri => {
            let w: [u64; 2] = words(&all);
            let req = pri::PriRecord::from_words(w).decode();
            let kind = if req.is_stop_marker() {
                "stop-marker"
            } else {
                "page-request"
            };
            Decoded {
                title: "PRI record".into(),
                kind: kind.into(),
                fields: from_fields(&w, pri::fields::FIELDS, |_, _| None),
                error: None,
                warnings: Vec::new(),
            }
        }
        Structure::Reg => unreachable!("handled above"),
    })
}

/// Decodes one CD from its eight words: what `smmuctl decode cd` prints, also used by
/// `smmuctl inspect --sid` for a stream's first CD.
pub(crate) fn decode_cd(w: [u64; 8]) -> Decoded {
    let (kind, error) = match cd::Cd::from_words(w).decode() {
        Ok(Some(_)) => ("valid".to_string(), None),
        Ok(None) => ("invalid".to_string(), None),
        Err(e) => ("illegal".to_string(), Some(e.to_string())),
    };
    Decoded {
        title: "CD".into(),
        kind,
        fields: from_fields(&w, cd::fields::FIELDS, cd::describe_field),
        error,
        warnings: Vec::new(),
    }
}

/// Decodes one STE from its eight words: what `smmuctl decode ste` prints, also used by
/// `smmuctl inspect` for every valid STE of a dumped table.
pub(crate) fn decode_ste(w: [u64; 8]) -> Decoded {
    let (kind, error) = match ste::Ste::from_words(w).decode() {
        Ok(c) => (ste::kind_name(c.as_ref()).to_string(), None),
        Err(e) => ("illegal".to_string(), Some(e.to_string())),
    };
    Decoded {
        title: "STE".into(),
        kind,
        fields: from_fields(&w, ste::fields::FIELDS, ste::describe_field),
        error,
        warnings: Vec::new(),
    }
}

fn decode_register(args: &[String]) -> Result<Decoded, UsageError> {
    let [name, value] = args else {
        return Err(UsageError(format!(
            "reg takes a register name and its value, got {} argument(s)",
            args.len()
        )));
    };
    let reg = RegisterInfo::by_name(name)
        .ok_or_else(|| UsageError(format!("unknown register '{name}'")))?;
    let value = parse_word(value)?;
    if reg.width == RegWidth::W32 && value > u64::from(u32::MAX) {
        return Err(UsageError(format!(
            "SMMU_{} is a 32-bit register",
            reg.name
        )));
    }
    let fields = reg
        .fields
        .iter()
        .map(|f| {
            let v = f.get(value);
            let address = f.address(value);
            FieldValue {
                name: f.name,
                value: v,
                width: f.hi() - f.shift + 1,
                // An address is printed as the address; other kinds say what the value means.
                meaning: match address {
                    Some(_) => None,
                    None => f.meaning(v).map(|m| m.to_string()),
                },
                address,
            }
        })
        .collect();
    let mut warnings = Vec::new();
    let res0 = reg.res0_bits_set(value);
    if res0 != 0 {
        warnings.push(format!(
            "reserved bit{} {} set ({res0:#x}): the specification reserves {} as zero (RES0)",
            if res0.is_power_of_two() { "" } else { "s" },
            bit_ranges(res0),
            if res0.is_power_of_two() { "it" } else { "them" },
        ));
    }
    Ok(Decoded {
        title: format!(
            "SMMU_{} (offset {:#x}, IHI 0070 G.b §{})",
            reg.name,
            reg.absolute_offset(),
            reg.spec
        ),
        kind: reg.name.to_string(),
        fields,
        error: None,
        warnings,
    })
}

/// The set bits of `mask` as bit ranges, highest first: `[31:28], [9]`.
fn bit_ranges(mask: u64) -> String {
    let mut ranges = Vec::new();
    let mut bit = 64u32;
    while bit > 0 {
        bit -= 1;
        if mask >> bit & 1 == 0 {
            continue;
        }
        let hi = bit;
        while bit > 0 && mask >> (bit - 1) & 1 == 1 {
            bit -= 1;
        }
        ranges.push(if hi == bit {
            format!("[{hi}]")
        } else {
            format!("[{hi}:{bit}]")
        });
    }
    ranges.join(", ")
}

fn format_value(value: u64, width: u32) -> String {
    if width <= 4 {
        format!("0b{value:0w$b}", w = width as usize)
    } else {
        format!("{value:#x}")
    }
}

impl Decoded {
    /// The human-readable form: a title line, then one line per field.
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!("{} ({})\n", self.title, self.kind);
        if let Some(e) = &self.error {
            let _ = writeln!(out, "  error: {e}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        let pad = self.fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for f in &self.fields {
            // A pointer field reads as the address it holds, not as its shifted-down bits.
            let shown = match f.address {
                Some(a) => format!("{a:#x} (address)"),
                None => format_value(f.value, f.width),
            };
            let _ = write!(out, "  {:pad$} = {shown}", f.name);
            if let Some(m) = &f.meaning {
                let _ = write!(out, " ({m})");
            }
            out.push('\n');
        }
        out
    }

    /// The JSON form: one object of field name → integer (the field's raw value), plus
    /// `"<field>_address"` → the address for each field that holds an address's upper bits,
    /// `"kind"`, `"error"` when the decoder refused an encoding and `"warnings"` (an array of
    /// strings) when there is something to warn about.
    pub(crate) fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("kind".into(), Value::from(self.kind.clone()));
        for f in &self.fields {
            map.insert(f.name.into(), Value::from(f.value));
            if let Some(a) = f.address {
                map.insert(format!("{}{ADDRESS_SUFFIX}", f.name), Value::from(a));
            }
        }
        if let Some(e) = &self.error {
            map.insert("error".into(), Value::from(e.clone()));
        }
        if !self.warnings.is_empty() {
            map.insert("warnings".into(), Value::from(self.warnings.clone()));
        }
        Value::Object(map)
    }
}

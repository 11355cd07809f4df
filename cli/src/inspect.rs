//! `smmuctl inspect`: the crash kernel's adoption check of `smmu-kdump`, run offline on a dump
//! of a crashed machine: the SMMU's registers (`--regs`) and its memory (`--mem` raw files,
//! `--vmcore` an ELF core).
//!
//! The report is streamed: the summary first (verdict, table geometry, counts by kind,
//! reserved ASIDs and VMIDs), then one line per valid StreamID, so its memory does not grow
//! with the table (2^24 StreamIDs print in constant memory, in text and JSON alike). The full
//! decode of one STE (and of its first CD) is `--sid N`; `--dot` draws the table as a graph.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use smmu::arch::{cd, l1std, ste};
use smmu::ProbeError;
use smmu_kdump::{
    any_ram, check_adoption, ste_pa_in_l2, validate_geometry, visit_stes, AdoptPlatform, Format,
    Found, Gap, Geometry, OldMemory, OnGap, Refusal, RegisterSnapshot, ScratchSlot, SteEntry,
    MAX_SCRATCH_SLOTS,
};

use crate::decode::{decode_cd, decode_ste, UsageError};
use crate::dump::Dump;

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

/// `--mem BASE:FILE`.
#[derive(Clone, Debug)]
pub(crate) struct MemArg {
    base: u64,
    file: PathBuf,
}

fn mem_arg(text: &str) -> Result<MemArg, String> {
    let Some((base, file)) = text.split_once(':') else {
        return Err(format!(
            "expected BASE:FILE (the physical address, then the file), got '{text}'"
        ));
    };
    let base = crate::num::parse_u64(base)?;
    if base % 8 != 0 {
        return Err(format!("base {base:#x} is not 8-byte aligned"));
    }
    if file.is_empty() {
        return Err(format!("'{text}' names no file"));
    }
    Ok(MemArg {
        base,
        file: PathBuf::from(file),
    })
}

fn sid_arg(text: &str) -> Result<u32, String> {
    let v = crate::num::parse_u64(text)?;
    u32::try_from(v).map_err(|_| format!("{v:#x} is not a StreamID (at most 32 bits)"))
}

/// The arguments of `smmuctl inspect`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("memory").required(true).multiple(true).args(["mem", "vmcore"])))]
pub(crate) struct InspectArgs {
    /// The SMMU's registers: a JSON object of name → value, or `NAME=VALUE` pairs (the line a
    /// crash kernel prints from `smmu_kdump::RegisterSnapshot`, or `devmem` reads pasted as
    /// `CR0=0x0000000d`). Needed: IDR0–IDR5, CR0, CR2, GERROR, GERRORN, STRTAB_BASE,
    /// STRTAB_BASE_CFG.
    #[arg(long, value_name = "FILE")]
    regs: PathBuf,
    /// Raw little-endian memory FILE holding the physical memory from BASE on, e.g.
    /// `0x80000000:strtab.bin`. Repeat for each region; regions must not overlap, and
    /// touching regions read as one.
    #[arg(long, value_name = "BASE:FILE")]
    mem: Vec<String>,
    /// An ELF crash dump (`/proc/vmcore`, QEMU's `dump-guest-memory`, `makedumpfile -E`),
    /// read through its segments' physical addresses.
    #[arg(long, value_name = "FILE")]
    vmcore: Vec<PathBuf>,
    /// Print JSON instead of text (streamed: one object, its `streams` array last).
    #[arg(long, conflicts_with = "dot")]
    pub(crate) json: bool,
    /// Print the table as a Graphviz graph (level-1 table → level-2 tables → STEs → CD tables
    /// → translation tables); render it with `dot -Tsvg`.
    #[arg(long)]
    dot: bool,
    /// Decode one StreamID's STE in full, with its first context descriptor.
    #[arg(long, value_name = "N")]
    sid: Option<String>,
    /// Whether the SMMU's table walks are coherent (default: what `IDR0.COHACC` says).
    #[arg(long, value_enum)]
    coherent: Option<YesNo>,
    /// Whether to decide as a crash kernel would.
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    crash_kernel: YesNo,
}

// ---------------------------------------------------------------------------------------------
// Exit status.

/// The crash kernel would adopt the table.
const EXIT_ADOPT: u8 = 0;
/// The crash kernel would reset the SMMU.
const EXIT_FULL_RESET: u8 = 1;
// 2: the arguments were wrong (`main`'s usage errors and clap's own).
/// The dump lacks memory the check needs: no verdict can be given.
const EXIT_INCOMPLETE: u8 = 3;
/// The driver cannot run this SMMU at all: a crash kernel neither adopts nor resets it.
const EXIT_UNSUPPORTED: u8 = 4;

// ---------------------------------------------------------------------------------------------
// One valid STE.

/// What a valid STE does, in the words the report uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Abort,
    Bypass,
    Stage1,
    Stage2,
    Nested,
    /// `Config` or another field holds a value the specification makes illegal.
    Illegal,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Abort,
        Kind::Bypass,
        Kind::Stage1,
        Kind::Stage2,
        Kind::Nested,
        Kind::Illegal,
    ];

    /// The stable code, for JSON.
    fn code(self) -> &'static str {
        match self {
            Kind::Abort => "abort",
            Kind::Bypass => "bypass",
            Kind::Stage1 => "s1-translate",
            Kind::Stage2 => "s2-translate",
            Kind::Nested => "nested",
            Kind::Illegal => "illegal",
        }
    }

    /// The words, for people.
    fn words(self) -> &'static str {
        match self {
            Kind::Abort => "abort",
            Kind::Bypass => "bypass (no translation)",
            Kind::Stage1 => "stage 1",
            Kind::Stage2 => "stage 2",
            Kind::Nested => "nested (stage 1 + stage 2)",
            Kind::Illegal => "illegal entry",
        }
    }
}

/// One valid STE, summarised.
struct Stream {
    sid: u32,
    words: [u64; 8],
    kind: Kind,
}

impl Stream {
    /// The STE `words` of `sid`, if valid (§5.2 V).
    fn of(sid: u32, words: [u64; 8]) -> Option<Stream> {
        if ste::fields::V.get(&words) == 0 {
            return None;
        }
        Some(Stream::valid(sid, words))
    }

    /// The STE `words` of `sid`, known to be valid.
    fn valid(sid: u32, words: [u64; 8]) -> Stream {
        let kind = match ste::Ste::from_words(words).decode() {
            Ok(config) => match ste::kind_name(config.as_ref()) {
                "abort" => Kind::Abort,
                "bypass" => Kind::Bypass,
                "s1-translate" => Kind::Stage1,
                "s2-translate" => Kind::Stage2,
                "nested" => Kind::Nested,
                _ => Kind::Illegal,
            },
            Err(_) => Kind::Illegal,
        };
        Stream { sid, words, kind }
    }

    fn stage1(&self) -> bool {
        matches!(self.kind, Kind::Stage1 | Kind::Nested)
    }

    fn stage2(&self) -> bool {
        matches!(self.kind, Kind::Stage2 | Kind::Nested)
    }

    /// The CD table's address (`S1ContextPtr` is PA\[51:6\], IHI 0070 G.b §5.2).
    fn cd_table(&self) -> u64 {
        field_address(&ste::fields::S1_CONTEXT_PTR, &self.words)
    }

    /// `S1CDMax`: the table holds 2^S1CDMax CDs.
    fn cd_max(&self) -> u64 {
        ste::fields::S1_CD_MAX.get(&self.words)
    }

    /// `S1Fmt` 0 is a linear CD table.
    fn cd_linear(&self) -> bool {
        ste::fields::S1FMT.get(&self.words) == 0
    }

    fn vmid(&self) -> u64 {
        ste::fields::S2VMID.get(&self.words)
    }

    /// The stage-2 translation table (`S2TTB` is PA\[51:4\]).
    fn s2ttb(&self) -> u64 {
        field_address(&ste::fields::S2TTB, &self.words)
    }

    /// The CD of substream 0, if the dump holds it: linear tables directly, 2-level ones
    /// through their first L1CD descriptor (IHI 0070 G.b §5.3, §5.4).
    fn cd0(&self, mem: &Dump) -> Option<[u64; 8]> {
        if !self.stage1() {
            return None;
        }
        let cd_pa = if self.cd_linear() || self.cd_max() == 0 {
            self.cd_table()
        } else {
            let mut desc = [0u64; 1];
            mem.read_words(self.cd_table(), &mut desc).ok()?;
            if cd::l1_fields::V.get(&desc) == 0 {
                return None;
            }
            field_address(&cd::l1_fields::L2PTR, &desc)
        };
        let mut words = [0u64; 8];
        mem.read_words(cd_pa, &mut words).ok()?;
        Some(words)
    }
}

/// The address a pointer field means: the field holds the address's bits from its own low
/// bit up (`S1ContextPtr` = PA\[51:6\] sits at bits \[55:6\] of word 0, so the field's value
/// shifted back by 6 is the address).
fn field_address<const N: usize>(field: &smmu::arch::Field, words: &[u64; N]) -> u64 {
    field.get(words) << field.lo
}

// ---------------------------------------------------------------------------------------------
// The walk.

/// A write to the output failed: it ends the walk. (The walk goes on past every gap, so no
/// [`Refusal`] ever ends it; the conversion is the walk's bound.)
struct WriteFailed(io::Error);

impl From<Refusal> for WriteFailed {
    fn from(refusal: Refusal) -> Self {
        WriteFailed(io::Error::other(refusal.to_string()))
    }
}

impl From<io::Error> for WriteFailed {
    fn from(e: io::Error) -> Self {
        WriteFailed(e)
    }
}

/// Calls `visit` for every valid STE of a table whose registers passed the geometry check,
/// through `smmu_kdump`'s walk of the table, the one adoption's scan uses: parts missing
/// from the dump (and level-1 descriptors the scan would refuse) are reported to `gap` and
/// skipped, where the scan stops at the first. The walk reads no more than the table holds.
fn walk_streams(
    g: &Geometry,
    mem: &Dump,
    gap: &mut dyn FnMut(Gap),
    visit: &mut dyn FnMut(&Stream) -> Result<(), WriteFailed>,
) -> io::Result<()> {
    visit_stes(g, mem, OnGap::Skip(gap), &mut |e: &SteEntry| {
        visit(&Stream::valid(e.sid, e.words))
    })
    .map(|_| ())
    .map_err(|WriteFailed(e)| e)
}

/// The note for a part of the table the dump lacks (or a descriptor that was skipped).
fn gap_note(gap: &Gap) -> String {
    match *gap {
        Gap::Stes { sid, pa, .. } => {
            format!("the STEs from StreamID {sid:#x} on (at {pa:#x}) are not in the dump")
        }
        Gap::L1Descriptors { index, pa, .. } => format!(
            "the level-1 descriptors from number {index} on (at {pa:#x}) are not in the dump"
        ),
        Gap::L2Table { index, l2, sid, .. } => format!(
            "the level-2 table of level-1 descriptor {index} (at {l2:#x}) is not in the dump \
             from StreamID {sid:#x} on"
        ),
        Gap::BadL1 {
            index,
            desc,
            refusal,
        } => format!("level-1 descriptor {index} ({desc:#x}) was skipped: {refusal}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The check.

/// The verdict a crash kernel would reach on this dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Adopt,
    FullReset,
    /// The check needed memory the dump does not hold.
    Incomplete,
    /// `smmu::probe::check` refuses the SMMU: the crash kernel's bring-up fails before it
    /// writes a register, whatever the tables hold.
    Unsupported(ProbeError),
}

impl Verdict {
    fn code(self) -> &'static str {
        match self {
            Verdict::Adopt => "adopt",
            Verdict::FullReset => "full-reset",
            Verdict::Incomplete => "dump-incomplete",
            Verdict::Unsupported(_) => "driver-cannot-run",
        }
    }

    fn exit(self) -> u8 {
        match self {
            Verdict::Adopt => EXIT_ADOPT,
            Verdict::FullReset => EXIT_FULL_RESET,
            Verdict::Incomplete => EXIT_INCOMPLETE,
            Verdict::Unsupported(_) => EXIT_UNSUPPORTED,
        }
    }
}

/// Everything the report says before the per-StreamID lines.
struct Summary {
    snap: RegisterSnapshot,
    verdict: Verdict,
    refusal: Option<Refusal>,
    geometry: Option<Geometry>,
    /// Physical ranges the dump holds.
    ranges: Vec<(u64, u64)>,
    counts: [u64; Kind::ALL.len()],
    valid: u64,
    asids: BTreeSet<u16>,
    vmids: BTreeSet<u16>,
    notes: Vec<String>,
}

/// Notes kept; past this the count of further ones is reported (a table full of bad level-1
/// descriptors must not make the report grow without bound).
const MAX_NOTES: usize = 32;

fn open_dump(args: &InspectArgs) -> Result<Dump, UsageError> {
    let mut dump = Dump::new();
    for text in &args.mem {
        let m = mem_arg(text).map_err(|e| UsageError(format!("--mem: {e}")))?;
        dump.add_raw(m.base, &m.file).map_err(|e| UsageError(e.0))?;
    }
    for v in &args.vmcore {
        dump.add_vmcore(v).map_err(|e| UsageError(e.0))?;
    }
    dump.seal().map_err(|e| UsageError(e.0))?;
    Ok(dump)
}

fn check(args: &InspectArgs, snap: RegisterSnapshot, dump: &Dump) -> Summary {
    let features = snap.features();
    let platform = AdoptPlatform {
        crash_kernel: args.crash_kernel.get(),
        coherent: args.coherent.map_or(features.coherent, YesNo::get),
        cache_maintenance: false,
        expect_e2h: None,
    };
    let mut asids = BTreeSet::new();
    let mut vmids = BTreeSet::new();
    // The validator's bookkeeping of the structures it trusts (SPEC K18); enough for any
    // table.
    let mut scratch = vec![ScratchSlot::default(); MAX_SCRATCH_SLOTS];
    // The crash kernel takes the features from `probe::check` (`boot_in`): where it refuses,
    // neither the adoption nor the full reset runs, so the tables are not checked.
    let result = smmu::probe::check(&snap.ids).map(|_| {
        check_adoption(
            &snap,
            &platform,
            &any_ram,
            dump,
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
        )
    });
    let (verdict, refusal, geometry) = match result {
        // The table is still shown.
        Err(e) => (
            Verdict::Unsupported(e),
            None,
            validate_geometry(&snap, &features, &any_ram).ok(),
        ),
        Ok(Ok(adoption)) => (Verdict::Adopt, None, Some(adoption.geometry)),
        Ok(Err(refusal)) => {
            // A refused adoption releases what it reserved (SPEC K4). The table is still
            // shown when its registers describe one, whatever the refusal was.
            asids.clear();
            vmids.clear();
            let verdict = if matches!(refusal, Refusal::MemoryUnreadable { .. }) {
                Verdict::Incomplete
            } else {
                Verdict::FullReset
            };
            (
                verdict,
                Some(refusal),
                validate_geometry(&snap, &features, &any_ram).ok(),
            )
        }
    };
    let mut summary = Summary {
        snap,
        verdict,
        refusal,
        geometry,
        ranges: dump.ranges(),
        counts: [0; Kind::ALL.len()],
        valid: 0,
        asids,
        vmids,
        notes: Vec::new(),
    };
    if let Some(g) = geometry {
        let mut notes = Vec::new();
        let mut dropped = 0usize;
        let mut counts = [0u64; Kind::ALL.len()];
        let mut valid = 0u64;
        let walked = walk_streams(
            &g,
            dump,
            &mut |gap| {
                if notes.len() < MAX_NOTES {
                    notes.push(gap_note(&gap));
                } else {
                    dropped += 1;
                }
            },
            &mut |s| {
                valid += 1;
                if let Some(c) = Kind::ALL
                    .iter()
                    .position(|k| *k == s.kind)
                    .and_then(|i| counts.get_mut(i))
                {
                    *c += 1;
                }
                Ok(())
            },
        );
        // Counting writes nothing and every gap is skipped: the walk cannot stop early.
        // Were it to, the counts would be short, and the note says so.
        if let Err(e) = walked {
            notes.push(format!("the walk of the table stopped early: {e}"));
        }
        if dropped > 0 {
            notes.push(format!("{dropped} more notes like these were left out"));
        }
        summary.counts = counts;
        summary.valid = valid;
        summary.notes = notes;
    }
    summary
}

// ---------------------------------------------------------------------------------------------
// Words.

fn verdict_words(s: &Summary) -> String {
    match (s.verdict, &s.refusal) {
        (Verdict::Adopt, _) => {
            "adopt: a crash kernel would keep this SMMU translating with the live stream table, \
             and each device would keep its old translation until its driver attaches it again"
                .into()
        }
        (Verdict::FullReset, Some(r)) => format!(
            "full reset: a crash kernel would reset this SMMU, because {r} (reason code {})",
            r.code()
        ),
        (Verdict::Incomplete, Some(r)) => format!(
            "dump incomplete: {r} (reason code {}); give the dump that holds it (--mem or \
             --vmcore) to get a verdict",
            r.code()
        ),
        (Verdict::Unsupported(e), _) => format!(
            "driver cannot run this SMMU: {e} (reason code {}); a crash kernel's bring-up \
             fails before it writes a register, so it neither adopts the table nor resets the \
             SMMU, which stays as the crashed kernel left it",
            e.code()
        ),
        (_, None) => "full reset".into(),
    }
}

fn geometry_words(g: &Geometry) -> String {
    match g.format() {
        Format::Linear => format!("linear, {} STEs at {:#x}", g.num_sids(), g.base()),
        Format::TwoLevel => format!(
            "two-level, {} level-1 descriptors at {:#x} ({} StreamIDs, 256 per level-2 table)",
            g.l1_entries().unwrap_or(0),
            g.base(),
            g.num_sids()
        ),
    }
}

fn id_list(set: &BTreeSet<u16>) -> String {
    if set.is_empty() {
        return "none".into();
    }
    // Runs print as ranges, so 60000 ASIDs stay one short line.
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last.wrapping_add(1))) && last != u16::MAX {
            last += 1;
            iter.next();
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    out.join(", ")
}

/// What the line of one StreamID says after its kind.
fn stream_details(s: &Stream, mem: &Dump) -> String {
    let mut parts: Vec<String> = Vec::new();
    if s.stage1() {
        let cds = 1u64.checked_shl(s.cd_max() as u32).unwrap_or(0);
        parts.push(format!(
            "CD table at {:#x} ({}, {} CD{})",
            s.cd_table(),
            if s.cd_linear() || s.cd_max() == 0 {
                "linear"
            } else {
                "two-level"
            },
            cds,
            if cds == 1 { "" } else { "s" }
        ));
        match s.cd0(mem) {
            Some(cd) if cd::fields::V.get(&cd) == 1 => parts.push(format!(
                "substream 0: ASID {}, translation table at {:#x}",
                cd::fields::ASID.get(&cd),
                field_address(&cd::fields::TTB0, &cd)
            )),
            Some(_) => parts.push("substream 0: no valid CD".into()),
            None => parts.push("substream 0: its CD is not in the dump".into()),
        }
    }
    if s.stage2() {
        parts.push(format!(
            "VMID {}, stage-2 translation table at {:#x}",
            s.vmid(),
            s.s2ttb()
        ));
    }
    parts.join("; ")
}

/// What happens to this StreamID's device under the verdict.
fn fate(s: &Stream, verdict: Verdict) -> &'static str {
    match (verdict, s.kind) {
        (Verdict::Adopt, Kind::Abort) => "",
        (Verdict::Adopt, _) => "deferred attach: kept as it is until its driver attaches it",
        (Verdict::FullReset, Kind::Abort) => "",
        (Verdict::FullReset, _) => "aborted after the full reset until its driver attaches it",
        (Verdict::Incomplete | Verdict::Unsupported(_), _) => "",
    }
}

// ---------------------------------------------------------------------------------------------
// Output.

/// Runs `smmuctl inspect`; returns the exit status.
pub(crate) fn run(args: &InspectArgs) -> Result<ExitCode, UsageError> {
    let sid = args
        .sid
        .as_deref()
        .map(sid_arg)
        .transpose()
        .map_err(|e| UsageError(format!("--sid: {e}")))?;
    let snap = crate::regs::load(&args.regs)?;
    let dump = open_dump(args)?;
    let summary = check(args, snap, &dump);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = if args.dot {
        write_dot(&mut out, &summary, &dump)
    } else if let Some(sid) = sid {
        write_sid(&mut out, &summary, &dump, sid, args.json)
    } else if args.json {
        write_json(&mut out, &summary, &dump)
    } else {
        write_text(&mut out, &summary, &dump)
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("smmuctl: cannot write the output: {e}");
            return Ok(ExitCode::from(1));
        }
        _ => {}
    }
    if !args.json {
        for note in &summary.notes {
            eprintln!("smmuctl: note: {note}");
        }
    }
    let incomplete = summary.verdict == Verdict::Incomplete
        || (summary.verdict == Verdict::Adopt && !summary.notes.is_empty());
    Ok(ExitCode::from(if incomplete {
        EXIT_INCOMPLETE
    } else {
        summary.verdict.exit()
    }))
}

fn write_text(out: &mut dyn Write, s: &Summary, dump: &Dump) -> io::Result<()> {
    writeln!(out, "verdict: {}", verdict_words(s))?;
    match &s.geometry {
        Some(g) => writeln!(out, "stream table: {}", geometry_words(g))?,
        None => writeln!(
            out,
            "stream table: the registers describe no table this driver can read \
             (SMMU_STRTAB_BASE {:#x}, SMMU_STRTAB_BASE_CFG {:#x}); no STE was read",
            s.snap.strtab_base, s.snap.strtab_base_cfg
        )?,
    }
    write!(out, "valid STEs: {}", s.valid)?;
    let counts: Vec<String> = Kind::ALL
        .iter()
        .zip(s.counts)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{} {n}", k.words()))
        .collect();
    if counts.is_empty() {
        writeln!(out)?;
    } else {
        writeln!(out, " ({})", counts.join(", "))?;
    }
    writeln!(out, "reserved ASIDs: {}", id_list(&s.asids))?;
    writeln!(out, "reserved VMIDs: {}", id_list(&s.vmids))?;
    let ranges: Vec<String> = s
        .ranges
        .iter()
        .map(|(a, b)| format!("{a:#x}..={b:#x}"))
        .collect();
    writeln!(out, "memory in the dump: {}", ranges.join(", "))?;
    for note in &s.notes {
        writeln!(out, "note: {note}")?;
    }
    if let Some(g) = &s.geometry {
        if s.valid > 0 {
            writeln!(out)?;
        }
        // Consecutive abort STEs print as one line: Linux fills every level-2 table it
        // allocates with them, and 255 lines of "abort" would hide the one device that matters.
        let mut aborts: Option<(u32, u32)> = None;
        let flush = |out: &mut dyn Write, run: &mut Option<(u32, u32)>| -> io::Result<()> {
            match run.take() {
                Some((first, last)) if first == last => {
                    writeln!(out, "StreamID {first:#x}: abort")
                }
                Some((first, last)) => writeln!(out, "StreamIDs {first:#x}-{last:#x}: abort"),
                None => Ok(()),
            }
        };
        walk_streams(g, dump, &mut |_| {}, &mut |st| {
            if st.kind == Kind::Abort {
                aborts = match aborts {
                    Some((first, last)) if last.checked_add(1) == Some(st.sid) => {
                        Some((first, st.sid))
                    }
                    mut run => {
                        flush(out, &mut run)?;
                        Some((st.sid, st.sid))
                    }
                };
                return Ok(());
            }
            flush(out, &mut aborts)?;
            let details = stream_details(st, dump);
            let fate = fate(st, s.verdict);
            let mut line = format!("StreamID {:#x}: {}", st.sid, st.kind.words());
            if !details.is_empty() {
                line.push_str("; ");
                line.push_str(&details);
            }
            if !fate.is_empty() {
                line.push_str(" — ");
                line.push_str(fate);
            }
            writeln!(out, "{line}")?;
            Ok(())
        })?;
        flush(out, &mut aborts)?;
    }
    Ok(())
}

fn summary_json(s: &Summary) -> Value {
    let counts: serde_json::Map<String, Value> = Kind::ALL
        .iter()
        .zip(s.counts)
        .map(|(k, n)| (k.code().to_string(), json!(n)))
        .collect();
    json!({
        "verdict": s.verdict.code(),
        "verdict_text": verdict_words(s),
        "reason": match s.verdict {
            Verdict::Unsupported(e) => Some(e.code()),
            _ => s.refusal.as_ref().map(Refusal::code),
        },
        "reason_text": match s.verdict {
            Verdict::Unsupported(e) => Some(e.to_string()),
            _ => s.refusal.as_ref().map(ToString::to_string),
        },
        "geometry": s.geometry.map(|g| json!({
            "format": match g.format() { Format::Linear => "linear", Format::TwoLevel => "2-level" },
            "base": g.base(),
            "stream_ids": g.num_sids(),
            "l1_entries": g.l1_entries(),
        })),
        "registers": s.snap.to_string(),
        "valid_stes": s.valid,
        "counts": counts,
        "reserved_asids": s.asids.iter().collect::<Vec<_>>(),
        "reserved_vmids": s.vmids.iter().collect::<Vec<_>>(),
        "memory": s.ranges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "notes": s.notes,
    })
}

fn stream_json(st: &Stream, verdict: Verdict, dump: &Dump) -> Value {
    let mut v = json!({
        "sid": st.sid,
        "kind": st.kind.code(),
        "deferred": verdict == Verdict::Adopt && st.kind != Kind::Abort,
    });
    if st.stage1() {
        v["cd_table"] = json!(st.cd_table());
        v["cd_count"] = json!(1u64.checked_shl(st.cd_max() as u32));
        if let Some(cd) = st.cd0(dump).filter(|cd| cd::fields::V.get(cd) == 1) {
            v["asid"] = json!(cd::fields::ASID.get(&cd));
            v["ttb0"] = json!(field_address(&cd::fields::TTB0, &cd));
        }
    }
    if st.stage2() {
        v["vmid"] = json!(st.vmid());
        v["s2ttb"] = json!(st.s2ttb());
    }
    v
}

/// One JSON object whose last member, `streams`, is written one element at a time.
fn write_json(out: &mut dyn Write, s: &Summary, dump: &Dump) -> io::Result<()> {
    let head = summary_json(s).to_string();
    // `head` is an object: drop its closing brace and append the streams array.
    let open = head.strip_suffix('}').unwrap_or(&head);
    write!(out, "{open},\"streams\":[")?;
    if let Some(g) = &s.geometry {
        let mut first = true;
        walk_streams(g, dump, &mut |_| {}, &mut |st| {
            let sep = if first { "" } else { "," };
            first = false;
            write!(out, "{sep}{}", stream_json(st, s.verdict, dump))?;
            Ok(())
        })?;
    }
    writeln!(out, "]}}")
}

fn write_sid(
    out: &mut dyn Write,
    s: &Summary,
    dump: &Dump,
    sid: u32,
    json_out: bool,
) -> io::Result<()> {
    let mut found = None;
    if let Some(g) = &s.geometry {
        if let Some(pa) = ste_address(g, dump, sid) {
            let mut w = [0u64; 8];
            if dump.read_words(pa, &mut w).is_ok() {
                found = Some((pa, w));
            }
        }
    }
    let Some((pa, words)) = found else {
        let why = format!(
            "StreamID {sid:#x} has no STE in this dump (outside the table, under an unused \
             level-1 descriptor, or not in the memory given)"
        );
        if json_out {
            writeln!(out, "{}", json!({"sid": sid, "error": why}))?;
        } else {
            writeln!(out, "{why}")?;
        }
        return Ok(());
    };
    let ste = decode_ste(words);
    let stream = Stream::of(sid, words);
    let cd0 = stream.as_ref().and_then(|st| st.cd0(dump));
    if json_out {
        let mut v = json!({"sid": sid, "address": pa, "ste": ste.to_json()});
        if let Some(st) = &stream {
            v["summary"] = stream_json(st, s.verdict, dump);
        }
        if let Some(cd) = cd0 {
            v["cd0"] = decode_cd(cd).to_json();
        }
        return writeln!(out, "{v}");
    }
    writeln!(out, "StreamID {sid:#x}: STE at {pa:#x}")?;
    match &stream {
        Some(st) => {
            let details = stream_details(st, dump);
            writeln!(
                out,
                "  {}{}{details}",
                st.kind.words(),
                if details.is_empty() { "" } else { "; " }
            )?;
            let fate = fate(st, s.verdict);
            if !fate.is_empty() {
                writeln!(out, "  {fate}")?;
            }
        }
        None => writeln!(out, "  not valid (V = 0): the SMMU aborts this StreamID")?,
    }
    for line in ste.to_text().lines() {
        writeln!(out, "  {line}")?;
    }
    if let Some(cd) = cd0 {
        writeln!(out, "\nits CD for substream 0:")?;
        for line in decode_cd(cd).to_text().lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

/// Where the STE of `sid` is, if the table and the dump say.
fn ste_address(g: &Geometry, dump: &Dump, sid: u32) -> Option<u64> {
    match g.format() {
        Format::Linear => g.ste_pa(sid),
        Format::TwoLevel => {
            if u64::from(sid) >= g.num_sids() {
                return None;
            }
            let index = sid >> l1std::STRTAB_SPLIT;
            let mut desc = [0u64; 1];
            dump.read_words(g.l1_desc_pa(sid)?, &mut desc).ok()?;
            let l2 = g.validate_l1(index, desc[0]).ok()??;
            ste_pa_in_l2(l2, sid)
        }
    }
}

/// STE nodes drawn; a bigger table gets a "… more" node (a graph of 2^24 nodes helps nobody).
const DOT_MAX_STREAMS: u64 = 512;

fn write_dot(out: &mut dyn Write, s: &Summary, dump: &Dump) -> io::Result<()> {
    writeln!(out, "digraph smmu_stream_table {{")?;
    writeln!(
        out,
        "  rankdir=LR; node [shape=box, fontname=\"monospace\"];"
    )?;
    let label = format!("verdict: {}", s.verdict.code());
    writeln!(out, "  verdict [shape=note, label={}];", dot_str(&label))?;
    let Some(g) = &s.geometry else {
        return writeln!(out, "}}");
    };
    writeln!(
        out,
        "  strtab [label={}];",
        dot_str(&format!("stream table\\n{}", geometry_words(g)))
    )?;
    writeln!(out, "  verdict -> strtab [style=invis];")?;
    let mut drawn = 0u64;
    let mut more = 0u64;
    let mut l2_seen = BTreeSet::new();
    let mut cd_seen = BTreeSet::new();
    let mut tt_seen = BTreeSet::new();
    walk_streams(g, dump, &mut |_| {}, &mut |st| {
        if drawn >= DOT_MAX_STREAMS {
            more += 1;
            return Ok(());
        }
        drawn += 1;
        let parent = match g.format() {
            Format::Linear => "strtab".to_string(),
            Format::TwoLevel => {
                let index = st.sid >> l1std::STRTAB_SPLIT;
                let name = format!("l2_{index}");
                if l2_seen.insert(index) {
                    writeln!(
                        out,
                        "  {name} [label={}];\n  strtab -> {name} [label={}];",
                        dot_str(&format!(
                            "level-2 table\\nStreamIDs {:#x}-{:#x}",
                            index << l1std::STRTAB_SPLIT,
                            ((index + 1) << l1std::STRTAB_SPLIT) - 1
                        )),
                        dot_str(&format!("L1 {index}"))
                    )?;
                }
                name
            }
        };
        let deferred = s.verdict == Verdict::Adopt && st.kind != Kind::Abort;
        let style = match (st.kind, deferred) {
            (Kind::Abort, _) => "style=filled, fillcolor=\"#dddddd\"",
            (Kind::Bypass, _) => "style=\"filled,bold\", fillcolor=\"#ffb3b3\"",
            (Kind::Illegal, _) => "style=filled, fillcolor=\"#ff6666\"",
            (_, true) => "style=\"filled,dashed\", fillcolor=\"#cce5ff\"",
            (_, false) => "style=filled, fillcolor=\"#e6f2ff\"",
        };
        let mut label = format!("StreamID {:#x}\\n{}", st.sid, st.kind.words());
        if deferred {
            label.push_str("\\ndeferred attach");
        }
        writeln!(
            out,
            "  sid_{} [label={}, {style}, class=\"{}\"];\n  {parent} -> sid_{};",
            st.sid,
            dot_str(&label),
            st.kind.code(),
            st.sid
        )?;
        if st.stage1() {
            let cdt = st.cd_table();
            if cd_seen.insert(cdt) {
                writeln!(
                    out,
                    "  cd_{cdt:x} [shape=folder, label={}];",
                    dot_str(&format!("CD table\\n{cdt:#x}"))
                )?;
            }
            writeln!(out, "  sid_{} -> cd_{cdt:x};", st.sid)?;
            if let Some(cd) = st.cd0(dump).filter(|cd| cd::fields::V.get(cd) == 1) {
                let tt = field_address(&cd::fields::TTB0, &cd);
                translation_table_node(out, &mut tt_seen, tt)?;
                writeln!(
                    out,
                    "  cd_{cdt:x} -> tt_{tt:x} [label={}];",
                    dot_str(&format!("ASID {}", cd::fields::ASID.get(&cd)))
                )?;
            }
        }
        if st.stage2() {
            let tt = st.s2ttb();
            translation_table_node(out, &mut tt_seen, tt)?;
            writeln!(
                out,
                "  sid_{} -> tt_{tt:x} [label={}];",
                st.sid,
                dot_str(&format!("VMID {}", st.vmid()))
            )?;
        }
        Ok(())
    })?;
    if more > 0 {
        writeln!(
            out,
            "  more [shape=plaintext, label={}];\n  strtab -> more [style=dotted];",
            dot_str(&format!("… {more} more valid STEs"))
        )?;
    }
    writeln!(out, "}}")
}

/// The node of a translation table, drawn once however many STEs or CDs point at it.
fn translation_table_node(
    out: &mut dyn Write,
    seen: &mut BTreeSet<u64>,
    tt: u64,
) -> io::Result<()> {
    if seen.insert(tt) {
        writeln!(
            out,
            "  tt_{tt:x} [shape=cylinder, label={}];",
            dot_str(&format!("translation table\\n{tt:#x}"))
        )?;
    }
    Ok(())
}

/// A DOT string literal (`\n` escapes in `text` are kept as line breaks).
fn dot_str(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\\""))
}

//! The rule book (`docs/rules.md`) against the code, in both directions:
//!
//! - every rule id the repository's Rust files cite (a comment's `SPEC K12`, a test's
//!   `// spec: K12, D4` tag, a model test named `r12_…`) has an entry in the book, so a reader
//!   can always look an id up;
//! - every entry in an enforced section names enforcing functions and tests that exist where
//!   the entry says, so the book cannot drift from the code it describes.
//!
//! The checker works on text handed to it, so its failure modes are tested below on small
//! in-memory books as well as on the real one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One Rust file of the repository: its path from the repository root (with `/`) and text.
struct Source {
    path: String,
    text: String,
}

/// One entry of an enforced section.
#[derive(Debug)]
struct Entry {
    id: String,
    enforcers: Vec<String>,
    tests: Vec<String>,
}

/// The book as the checker reads it.
#[derive(Debug, Default)]
struct Book {
    /// Entries of the enforced sections, in book order.
    enforced: Vec<Entry>,
    /// Ids of the "Specified, not yet enforced" section.
    pending: BTreeSet<String>,
}

/// The heading under which ids need no function or test.
const PENDING_HEADING: &str = "## Specified, not yet enforced";

/// Where each library crate's modules live, by the name a Rust path starts with.
const CRATE_ROOTS: [(&str, &str); 6] = [
    ("smmu", "smmu/src"),
    ("smmu_pagetable", "pagetable/src"),
    ("smmu_kdump", "kdump/src"),
    ("smmu_model", "hw-model/src"),
    ("smmu_model_platform", "model-platform/src"),
    ("smmuctl", "cli/src"),
];

/// Reads the book's tables: a row is `| ID | rule | enforced by | tests |` in an enforced
/// section, `| ID | rule |` in the pending one; items are backticked, comma-separated.
fn parse_book(markdown: &str) -> Result<Book, Vec<String>> {
    let mut book = Book::default();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut in_pending = false;
    for line in markdown.lines() {
        if line.starts_with("## ") {
            in_pending = line.trim() == PENDING_HEADING;
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let id = cells[0];
        if !is_rule_id(id) {
            continue; // the header row and its rule
        }
        if !seen.insert(id.to_string()) {
            problems.push(format!("{id} has two entries"));
        }
        if in_pending {
            book.pending.insert(id.to_string());
            continue;
        }
        let items = |cell: Option<&&str>| -> Vec<String> {
            cell.map_or_else(Vec::new, |c| {
                c.split(',')
                    .map(|s| s.trim().trim_matches('`').to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
        };
        book.enforced.push(Entry {
            id: id.to_string(),
            enforcers: items(cells.get(2)),
            tests: items(cells.get(3)),
        });
    }
    if problems.is_empty() {
        Ok(book)
    } else {
        Err(problems)
    }
}

/// `D9`, `K21`, `R19`: a capital letter and one or two digits.
fn is_rule_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && (2..=3).contains(&s.len())
        && chars.all(|c| c.is_ascii_digit())
}

/// The rule ids `text` cites after `SPEC` or `spec:`, as one id, a list (`D3, D8`,
/// `B1/B2`, `K3 and K4`) or a range (`K1–K17`, every id in it), also across a comment's
/// line break.
fn cited_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for marker in ["SPEC", "spec:"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(marker) {
            let start = from + at;
            from = start + marker.len();
            let before_ok = text[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_');
            let after = &text[from..];
            if before_ok && after.starts_with(char::is_whitespace) {
                id_list(after, &mut ids);
            }
        }
    }
    ids
}

/// Reads the ids at the start of `text` (after a marker) into `ids`.
fn id_list(text: &str, ids: &mut BTreeSet<String>) {
    let mut rest = skip_gap(text);
    let mut range_from: Option<(char, u32)> = None;
    loop {
        let Some((letter, number, tail)) = leading_id(rest) else {
            return;
        };
        match range_from.take() {
            Some((from_letter, from_number)) if from_letter == letter => {
                for n in from_number..=number {
                    ids.insert(format!("{letter}{n}"));
                }
            }
            _ => {
                ids.insert(format!("{letter}{number}"));
            }
        }
        let after = tail.trim_start_matches(' ');
        if let Some(r) = after.strip_prefix(['–', '-']) {
            range_from = Some((letter, number));
            rest = r.trim_start();
        } else if let Some(r) = after.strip_prefix([',', '/']) {
            rest = skip_gap(r);
        } else if let Some(r) = after.strip_prefix("and ").or(after.strip_prefix("or ")) {
            rest = r;
        } else {
            return;
        }
    }
}

/// Whitespace and comment leaders between the marker and the list, or inside the list where
/// a comment wraps.
fn skip_gap(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_whitespace() || c == '/' || c == '!')
}

/// `K12…` → (`K`, 12, `…`), when the id is a whole word.
fn leading_id(s: &str) -> Option<(char, u32, &str)> {
    let letter = s.chars().next().filter(char::is_ascii_uppercase)?;
    let digits = s[1..].len()
        - s[1..]
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    if !(1..=2).contains(&digits) {
        return None;
    }
    let tail = &s[1 + digits..];
    if tail.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((letter, s[1..=digits].parse().ok()?, tail))
}

/// The rows of the model's conformance checklist that a model test names as the start of
/// its function name (`fn r12_log2size_capped_raw_kept`).
fn ids_in_model_test_names(text: &str) -> BTreeSet<String> {
    fn_names(text)
        .filter_map(|(_, name)| {
            let (head, _) = name.split_once('_')?;
            let id = head.to_ascii_uppercase();
            (head.starts_with(['r', 'q', 's', 't', 'x'])
                && is_rule_id(&id)
                && !head[1..].starts_with('0'))
            .then_some(id)
        })
        .collect()
}

/// Every `fn name` in `text`, with its line index.
fn fn_names(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let at = line.find("fn ")?;
        let before = line[..at].trim();
        let is_item = before.is_empty()
            || before.split_whitespace().all(|w| {
                matches!(
                    w,
                    "pub" | "pub(crate)" | "pub(super)" | "const" | "unsafe" | "async"
                )
            });
        if !is_item {
            return None;
        }
        let name = line[at + 3..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()?;
        (!name.is_empty()).then_some((i, name))
    })
}

/// Whether `text` defines `fn name` (or, for an upper-case name, `const NAME`).
fn defines(text: &str, name: &str) -> bool {
    if name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return text.contains(&format!("const {name}:"));
    }
    fn_names(text).any(|(_, n)| n == name)
}

/// Whether `text` defines `fn name` as a test: `#[test]` among the attributes on it, a
/// `proptest!` case (`fn name(x in …)`), or any function of the firmware, whose binaries are
/// check scripts run on QEMU.
fn defines_test(path: &str, text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    fn_names(text).any(|(i, n)| {
        n == name
            && (path.starts_with("firmware/")
                || lines[i].contains(" in ")
                || lines[..i]
                    .iter()
                    .rev()
                    .map(|l| l.trim())
                    .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
                    .any(|l| l.starts_with("#[test]")))
    })
}

/// Where an `enforced by` item points, or why it points nowhere.
fn resolve_enforcer<'s>(
    item: &str,
    files: &'s BTreeMap<&str, &str>,
) -> Result<(&'s str, String), String> {
    if let Some((path, name)) = item.split_once(".rs::") {
        let path = format!("{path}.rs");
        let (&p, &text) = files
            .get_key_value(path.as_str())
            .ok_or(format!("no file {path}"))?;
        if !defines(text, name) {
            return Err(format!("{path} has no fn {name}"));
        }
        return Ok((text, format!("{p}::{name}")));
    }
    let segments: Vec<&str> = item.split("::").collect();
    let (name, path) = segments.split_last().ok_or("empty")?;
    let (krate, rest) = path
        .split_first()
        .ok_or(format!("{item}: not crate::…::fn"))?;
    let root = CRATE_ROOTS
        .iter()
        .find(|(k, _)| k == krate)
        .map(|(_, dir)| *dir)
        .ok_or(format!("{item}: unknown crate {krate}"))?;
    let modules: Vec<&str> = rest
        .iter()
        .copied()
        .take_while(|s| s.starts_with(|c: char| c.is_ascii_lowercase()))
        .collect();
    let types = &rest[modules.len()..];
    // The deepest module that is a file: an inline `mod` lives in its parent's file.
    let file = (0..=modules.len())
        .rev()
        .find_map(|n| {
            let m = modules[..n].join("/");
            let candidates = if n == 0 {
                vec![format!("{root}/lib.rs"), format!("{root}/main.rs")]
            } else {
                vec![format!("{root}/{m}.rs"), format!("{root}/{m}/mod.rs")]
            };
            candidates
                .into_iter()
                .find_map(|c| files.get_key_value(c.as_str()))
        })
        .ok_or(format!("{item}: no module file"))?;
    let (&path, &text) = file;
    if let Some(t) = types.iter().find(|t| !text.contains(**t)) {
        return Err(format!("{item}: {path} never names {t}"));
    }
    if !defines(text, name) {
        // A type's methods may be split over the files of its module's directory
        // (`driver/mod.rs` declares `Smmu`, `driver/masters.rs` holds its attach methods).
        if let Some(dir) = path.strip_suffix("mod.rs") {
            if let Some((&p, &t)) = files.iter().find(|(p, t)| {
                p.starts_with(dir) && types.iter().all(|ty| t.contains(*ty)) && defines(t, name)
            }) {
                return Ok((t, format!("{p}::{name}")));
            }
        }
        return Err(format!("{item}: {path} has no fn {name}"));
    }
    Ok((text, format!("{path}::{name}")))
}

/// Every problem of `book` against `sources`; empty when the book and the code agree.
fn check_book(book: &str, sources: &[Source]) -> Vec<String> {
    let book = match parse_book(book) {
        Ok(b) => b,
        Err(problems) => return problems,
    };
    let files: BTreeMap<&str, &str> = sources
        .iter()
        .map(|s| (s.path.as_str(), s.text.as_str()))
        .collect();
    let mut problems = Vec::new();

    let listed: BTreeSet<&str> = book
        .enforced
        .iter()
        .map(|e| e.id.as_str())
        .chain(book.pending.iter().map(String::as_str))
        .collect();
    let mut cited: BTreeMap<String, &str> = BTreeMap::new();
    for s in sources {
        let mut ids = cited_ids(&s.text);
        if s.path.starts_with("hw-model/tests/") {
            ids.extend(ids_in_model_test_names(&s.text));
        }
        for id in ids {
            cited.entry(id).or_insert(&s.path);
        }
    }
    for (id, first) in &cited {
        if !listed.contains(id.as_str()) {
            problems.push(format!(
                "{id} is cited ({first}) but has no entry in the book"
            ));
        }
    }

    for e in &book.enforced {
        if e.enforcers.is_empty() {
            problems.push(format!("{}: names no enforcing function", e.id));
        }
        for item in &e.enforcers {
            if let Err(why) = resolve_enforcer(item, &files) {
                problems.push(format!("{}: enforced by {why}", e.id));
            }
        }
        if e.tests.is_empty() {
            problems.push(format!("{}: names no test", e.id));
        }
        for t in &e.tests {
            let found = t
                .split_once(".rs::")
                .map(|(p, name)| (format!("{p}.rs"), name))
                .and_then(|(p, name)| {
                    files
                        .get(p.as_str())
                        .map(|text| defines_test(&p, text, name))
                });
            match found {
                Some(true) => {}
                Some(false) => problems.push(format!("{}: {t} is not a test function there", e.id)),
                None => problems.push(format!(
                    "{}: {t} is not path/file.rs::test in the repository",
                    e.id
                )),
            }
        }
    }
    problems
}

/// The repository root: this crate lives in `tests/`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `*.rs` file of the repository (the workspace crates, `fuzz/` and `firmware/`), build
/// output left out. This file is among them: its fixtures cite only ids the book has.
fn repository_sources() -> Vec<Source> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if !name.starts_with('.')
                    && !name.starts_with("target")
                    && name != "corpus"
                    && name != "artifacts"
                {
                    walk(root, &p, out);
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                let path = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(Source {
                    path,
                    text: fs::read_to_string(&p).unwrap(),
                });
            }
        }
    }
    let root = repo_root();
    let mut out = Vec::new();
    for dir in [
        "smmu",
        "pagetable",
        "kdump",
        "hw-model",
        "tests",
        "cli",
        "fuzz",
        "firmware",
    ] {
        walk(&root, &root.join(dir), &mut out);
    }
    out
}

#[test]
fn every_cited_rule_is_in_the_book_and_every_entry_resolves() {
    let book = fs::read_to_string(repo_root().join("docs/rules.md")).unwrap();
    let sources = repository_sources();
    assert!(
        sources.len() > 100,
        "the walk found only {} files",
        sources.len()
    );
    let problems = check_book(&book, &sources);
    assert!(
        problems.is_empty(),
        "docs/rules.md and the code disagree:\n{}",
        problems.join("\n")
    );
}

// ---- the checker itself, on small in-memory repositories

fn source(path: &str, text: &str) -> Source {
    Source {
        path: path.into(),
        text: text.into(),
    }
}

/// A tiny repository: one enforcing function citing D9 and K1–K3, one test tagged D9.
fn tiny_repo() -> Vec<Source> {
    vec![
        source(
            "smmu/src/policy.rs",
            "impl ProtectedPolicy {\n    /// Refused (SPEC D9, K1–K3).\n    pub fn check_attach() {}\n}\n",
        ),
        source(
            "tests/tests/protected.rs",
            "// spec: D9\n#[test]\nfn a_protected_master_cannot_bypass() {}\nfn helper() {}\n",
        ),
    ]
}

const ENTRY_D9: &str =
    "| D9 | Protected masters never bypass. | `smmu::policy::ProtectedPolicy::check_attach` | \
                        `tests/tests/protected.rs::a_protected_master_cannot_bypass` |";

fn book_with(rows: &[&str]) -> String {
    let mut b = String::from(
        "# Book\n\n## Driver\n\n| id | rule | enforced by | tests |\n|---|---|---|---|\n",
    );
    for r in rows {
        b.push_str(r);
        b.push('\n');
    }
    b.push_str("\n## Specified, not yet enforced\n\n| id | rule |\n|---|---|\n| K1 | a |\n| K2 | b |\n| K3 | c |\n");
    b
}

#[test]
fn the_checker_accepts_a_book_that_matches_its_code() {
    assert_eq!(
        check_book(&book_with(&[ENTRY_D9]), &tiny_repo()),
        Vec::<String>::new()
    );
}

#[test]
fn the_checker_fails_when_a_cited_rule_is_removed_from_the_book() {
    let book = book_with(&[ENTRY_D9]).replace("| K2 | b |\n", "");
    let problems = check_book(&book, &tiny_repo());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("K2 is cited (smmu/src/policy.rs)"),
        "{problems:?}"
    );
    let problems = check_book(&book_with(&[]), &tiny_repo());
    assert!(
        problems.iter().any(|p| p.starts_with("D9 is cited")),
        "{problems:?}"
    );
}

#[test]
fn the_checker_fails_on_an_enforcer_or_test_that_does_not_exist() {
    let wrong_fn = ENTRY_D9.replace("::check_attach", "::check_rewrite");
    let wrong_module = ENTRY_D9.replace("smmu::policy::", "smmu::driver::");
    let wrong_type = ENTRY_D9.replace("ProtectedPolicy", "ProtectivePolicy");
    let not_a_test = ENTRY_D9.replace("a_protected_master_cannot_bypass", "helper");
    let no_test = "| D9 | Protected masters never bypass. | `smmu::policy::ProtectedPolicy::check_attach` | |";
    for (row, expected) in [
        (wrong_fn.as_str(), "D9: enforced by smmu::policy::ProtectedPolicy::check_rewrite: smmu/src/policy.rs has no fn check_rewrite"),
        (wrong_module.as_str(), "D9: enforced by smmu::driver::ProtectedPolicy::check_attach: no module file"),
        (wrong_type.as_str(), "D9: enforced by smmu::policy::ProtectivePolicy::check_attach: smmu/src/policy.rs never names ProtectivePolicy"),
        (not_a_test.as_str(), "D9: tests/tests/protected.rs::helper is not a test function there"),
        (no_test, "D9: names no test"),
    ] {
        assert_eq!(check_book(&book_with(&[row]), &tiny_repo()), vec![expected.to_string()], "{row}");
    }
    assert_eq!(
        check_book(&book_with(&[ENTRY_D9, ENTRY_D9]), &tiny_repo()),
        vec!["D9 has two entries".to_string()]
    );
}

#[test]
fn citations_are_read_in_every_form_the_code_uses() {
    let ids = |t: &str| cited_ids(t).into_iter().collect::<Vec<_>>();
    assert_eq!(ids("// spec: D3, D8"), ["D3", "D8"]);
    assert_eq!(ids("(SPEC B1/B2)."), ["B1", "B2"]);
    assert_eq!(ids("(SPEC K1–K3)"), ["K1", "K2", "K3"]);
    assert_eq!(ids("/// what (SPEC\n/// D9) says"), ["D9"]);
    assert_eq!(ids("// spec: T5 (§4.4.1.1 SCALE)"), ["T5"]);
    assert_eq!(ids("// spec: §5.2 EATS"), Vec::<String>::new());
    assert_eq!(
        ids("ERR_MASK_SPEC_G_B, SPEC §0, the SPECS K1"),
        Vec::<String>::new()
    );
    assert_eq!(ids("SPEC D5s"), Vec::<String>::new());
    let rows: Vec<_> =
        ids_in_model_test_names("#[test]\nfn r12_capped() {}\nfn s1_rig() {}\nfn t01_x() {}\n")
            .into_iter()
            .collect();
    assert_eq!(rows, ["R12", "S1"]);
}

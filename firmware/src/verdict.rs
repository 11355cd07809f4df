//! The run's verdict: one line per check, and the exit status QEMU returns (through
//! semihosting) — 0 when every check held.

use crate::println;

/// Collects check results.
#[derive(Debug, Default)]
pub struct Verdict {
    passed: u32,
    failed: u32,
}

impl Verdict {
    /// A verdict with no checks yet.
    pub const fn new() -> Self {
        Self {
            passed: 0,
            failed: 0,
        }
    }

    /// Records one check and prints its line: `PASS name: detail` or `FAIL name: detail`.
    pub fn check(&mut self, name: &str, ok: bool, detail: core::fmt::Arguments<'_>) -> bool {
        if ok {
            self.passed += 1;
            println!("PASS {name}: {detail}");
        } else {
            self.failed += 1;
            println!("FAIL {name}: {detail}");
        }
        ok
    }

    /// Whether every check so far held.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }

    /// Prints the summary and ends the run: exit status 0 if every check held, 1 otherwise.
    pub fn exit(&self) -> ! {
        println!(
            "verdict: {} of {} checks held",
            self.passed,
            self.passed + self.failed
        );
        exit(if self.ok() { 0 } else { 1 })
    }
}

/// Ends the run with `code` as QEMU's exit status (semihosting `SYS_EXIT`, which needs QEMU's
/// `-semihosting`; without it the trap lands in the binary's exception handler, which halts
/// so that the runner's timeout reports a failure).
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

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

/// The body of a binary's synchronous-exception handler: reports the exception and ends the
/// run with status 2.
pub fn sync_exception() -> ! {
    let esr: u64;
    // SAFETY: reading ESR_EL1 in the exception handler has no side effect.
    unsafe { core::arch::asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack)) };
    // EC 0 (an undefined instruction) is the semihosting trap itself when QEMU runs without
    // `-semihosting`: no exit status can be given, so stop here and let the runner's timeout
    // report the failure (a PSCI power-off would exit QEMU with 0).
    if esr >> 26 == 0 {
        println!("FAIL exception: undefined instruction (no semihosting?); halting");
        loop {
            core::hint::spin_loop();
        }
    }
    println!("FAIL exception: synchronous exception at EL1, ESR_EL1 {esr:#x}");
    exit(2)
}

/// The machine's command line (QEMU's `-append`), read through semihosting `SYS_GET_CMDLINE`
/// into `buf`; `None` when there is none or it is not UTF-8.
pub fn command_line(buf: &mut [u8]) -> Option<&str> {
    const SYS_GET_CMDLINE: u64 = 0x15;
    // The parameter block: buffer address and its size; the host writes the length back.
    let mut block: [u64; 2] = [buf.as_mut_ptr() as u64, buf.len() as u64];
    let ret: u64;
    // SAFETY: the semihosting call (`hlt #0xf000`, which needs QEMU's `-semihosting`) writes
    // at most `block[1]` bytes into `buf` and the length into `block[1]`; both live for the
    // call.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_GET_CMDLINE => ret,
            in("x1") block.as_mut_ptr(),
            options(nostack),
        );
    }
    let len = usize::try_from(block[1]).ok()?;
    if ret != 0 || len > buf.len() {
        return None;
    }
    core::str::from_utf8(buf.get(..len)?).ok()
}

//! Bounded waits on the generic timer (`CNTPCT_EL0`, `CNTFRQ_EL0`).

/// The counter's frequency in Hz.
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f.max(1)
}

/// The physical counter.
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: reading CNTPCT_EL0 has no side effect; the ISB orders it after earlier code.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) t, options(nomem, nostack)) };
    t
}

/// Polls `done` until it returns `Some` or `millis` milliseconds have passed.
pub fn poll_for<T>(millis: u64, mut done: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = now().saturating_add(frequency() / 1000 * millis);
    loop {
        if let Some(v) = done() {
            return Some(v);
        }
        if now() > deadline {
            return None;
        }
        core::hint::spin_loop();
    }
}

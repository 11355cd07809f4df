//! Bounded polling: every wait on the SMMU ends, with a typed timeout (SPEC D2, D10).

use crate::hal::Hal;

/// How many [`Hal::relax`] calls a poll may make before it gives up.
///
/// The default is generous for real hardware (a kernel's `relax` typically waits ~1 µs, so
/// the bound is in the order of a second) and still finite for a model or a dead SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollBudget(pub u32);

impl PollBudget {
    /// One million relaxes.
    pub const DEFAULT: PollBudget = PollBudget(1_000_000);
}

impl Default for PollBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Calls `done` until it returns `Some`, relaxing between calls, at most `budget.0 + 1`
/// times. `None` means the budget ran out.
pub fn poll<H: Hal + ?Sized, T>(
    hal: &H,
    budget: PollBudget,
    mut done: impl FnMut() -> Option<T>,
) -> Option<T> {
    for _ in 0..budget.0 {
        if let Some(v) = done() {
            return Some(v);
        }
        hal.relax();
    }
    done()
}

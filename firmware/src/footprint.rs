//! A crash stage's footprint: what it wrote outside the memory it owns.
//!
//! A crash kernel lives in a small reservation; everything else is the crashed kernel's
//! memory, which the dump exists to save and which the adopted SMMU may still be walking for
//! in-flight DMA. So the crash stage paints, at entry, the memory just below its stack (which
//! it must never reach) and every part of its reservation it has not used yet, and reads the
//! paint back at the end: the lowest word its stack wrote, and whether any painted word
//! outside what it legitimately used changed. The old stage's memory is checksummed before
//! the crash and compared after the hand-over.

/// The paint: "FOOTPRNT".
pub const PAINT: u64 = u64::from_be_bytes(*b"FOOTPRNT");

/// Fills `[start, end)` with [`PAINT`], with a loop in assembly that uses no stack, so that
/// it may paint the stack below the caller's frame. `start` and `end` are rounded down to
/// 64 bytes; each iteration stores a whole 64-byte line with four pair stores, which keeps
/// painting tens of MiB short next to the 100 ms the `edu` transfers in flight take (a slow
/// paint would let them land before the bring-up it is meant to watch).
///
/// # Safety
/// `[start, end)` is identity-mapped RAM that nothing uses now and that is not part of the
/// caller's live stack frames.
pub unsafe fn paint(start: u64, end: u64) {
    // SAFETY: the caller guarantees the range is writable and unused; aligned stores only.
    unsafe {
        core::arch::asm!(
            "2:",
            "cmp {cur}, {end}",
            "b.hs 3f",
            "stp {pat}, {pat}, [{cur}]",
            "stp {pat}, {pat}, [{cur}, #16]",
            "stp {pat}, {pat}, [{cur}, #32]",
            "stp {pat}, {pat}, [{cur}, #48]",
            "add {cur}, {cur}, #64",
            "b 2b",
            "3:",
            cur = inout(reg) start & !63 => _,
            end = in(reg) end & !63,
            pat = in(reg) PAINT,
            options(nostack),
        );
    }
}

/// The word at `pa` (identity-mapped RAM), read volatile.
fn word(pa: u64) -> u64 {
    // SAFETY: callers pass 8-aligned addresses of identity-mapped RAM; a volatile read of an
    // integer is valid for any bits, and races with nothing that could make it undefined.
    unsafe { (pa as usize as *const u64).read_volatile() }
}

/// The lowest address in `[start, end)` whose word no longer holds the paint.
pub fn lowest_write(start: u64, end: u64) -> Option<u64> {
    (start..end).step_by(8).find(|&pa| word(pa) != PAINT)
}

/// Words in `[start, end)` that no longer hold the paint.
pub fn changed_words(start: u64, end: u64) -> u64 {
    (start..end)
        .step_by(8)
        .filter(|&pa| word(pa) != PAINT)
        .count() as u64
}

/// A checksum (FNV-1a over 64-bit words) of `[start, end)`, skipping the pages for which
/// `skip` says so (the pages in-flight DMA may still write).
pub fn checksum(start: u64, end: u64, skip: impl Fn(u64) -> bool) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut pa = start;
    while pa < end {
        if !skip(pa & !0xfff) {
            h = (h ^ word(pa)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        pa += 8;
    }
    h
}

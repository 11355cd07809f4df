//! The boot stack's high-water mark: painted at boot, measured at the end, so a run shows how
//! much of the 64 KiB stack it used (a stack overflow would run into `.bss`, where the driver
//! lives, silently).

const PAINT: u64 = 0x5741_434b_5741_434b;
/// Bytes left unpainted below the stack pointer at the time of painting (the caller's
/// frame may still use them).
const MARGIN: usize = 512;

extern "C" {
    // Linker-script symbols of aarch64-rt's `image.ld`: the bounds of the boot stack.
    static boot_stack_begin: u8;
    static boot_stack_end: u8;
}

fn bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (
        core::ptr::addr_of!(boot_stack_begin) as usize,
        core::ptr::addr_of!(boot_stack_end) as usize,
    )
}

/// Fills the unused part of the boot stack with a pattern. Call first thing in `main`.
pub fn paint() {
    let (begin, _) = bounds();
    // The loop is in assembly so that no Rust frame sits in the range being painted.
    // SAFETY: writes only `[begin, sp - MARGIN)`, the part of the boot stack below the
    // current frame, which nothing uses yet (no interrupts are enabled).
    unsafe {
        core::arch::asm!(
            "mov {end}, sp",
            "sub {end}, {end}, #{margin}",
            "2:",
            "cmp {cur}, {end}",
            "b.hs 3f",
            "str {pat}, [{cur}], #8",
            "b 2b",
            "3:",
            cur = inout(reg) begin => _,
            end = out(reg) _,
            pat = in(reg) PAINT,
            margin = const MARGIN,
            options(nostack),
        );
    }
}

/// Bytes of the boot stack used so far (the deepest word no longer holding the pattern),
/// and the stack's size.
pub fn used() -> (usize, usize) {
    let (begin, end) = bounds();
    let mut p = begin;
    while p < end {
        // SAFETY: `p` is an 8-aligned address inside the boot stack, below the current frame
        // while it still reads as paint; reading it races with nothing.
        let v = unsafe { (p as *const u64).read_volatile() };
        if v != PAINT {
            break;
        }
        p += 8;
    }
    (end - p, end - begin)
}

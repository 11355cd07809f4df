//! Links the crash stage with its own layout (`linux-crash.ld`): aarch64-rt's sections behind
//! a 64-byte arm64 Image header, at the crash kernel's reservation.

fn main() {
    println!("cargo::rustc-link-arg-bins=-Tlinux-crash.ld");
    println!("cargo::rerun-if-changed=linux-crash.ld");
}

//! Links the image with aarch64-rt's layout (`image.ld`) and this board's memory (`memory.ld`).

fn main() {
    println!("cargo::rustc-link-arg-bins=-Timage.ld");
    println!("cargo::rustc-link-arg-bins=-Tmemory.ld");
    println!("cargo::rerun-if-changed=memory.ld");
}

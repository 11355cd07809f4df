//! smmuctl: decode SMMUv3 entries, inspect dumped tables, simulate a kdump takeover.

fn main() {}

//! What the CLI tests share: running `smmuctl` as a person does.

#![allow(dead_code)] // each test file uses its own part

use std::process::{Command, Output};

use serde_json::Value;

/// `smmuctl` with `args`.
pub(crate) fn smmuctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smmuctl"))
        .args(args)
        .output()
        .expect("smmuctl runs")
}

/// `smmuctl` with `args`, which must succeed and print one JSON object.
pub(crate) fn json(args: &[&str]) -> Value {
    let out = smmuctl(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

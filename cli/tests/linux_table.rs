//! A stream table Linux's arm-smmu-v3 driver wrote (Linux 6.1 on QEMU 7.2's SMMUv3, captured
//! as `testdata/linux-6.1-qemu-7.2/README.md` says): the adoption check was written from the
//! specification, and this is a table it did not write.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn data(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/linux-6.1-qemu-7.2")
        .join(file)
        .display()
        .to_string()
}

fn inspect(extra: &[&str]) -> std::process::Output {
    let regs = data("regs.txt");
    let l1 = format!("0x4302a000:{}", data("l1.bin"));
    let l2 = format!("0x5b660000:{}", data("l2.bin"));
    let cd = format!("0x4807d000:{}", data("cd.bin"));
    Command::new(env!("CARGO_BIN_EXE_smmuctl"))
        .args([
            "inspect", "--regs", &regs, "--mem", &l1, "--mem", &l2, "--mem", &cd,
        ])
        .args(extra)
        .output()
        .expect("smmuctl runs")
}

// spec: K2, K3, K11, K14, K18, K19
#[test]
fn linux_s_table_is_adopted_with_exactly_its_asid_reserved() {
    let out = inspect(&["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "adopt", "{v}");
    assert_eq!(v["geometry"]["format"], "2-level");
    assert_eq!(v["geometry"]["stream_ids"], 1 << 16);
    // Linux fills the level-2 table it allocated with abort STEs; the disk translates.
    assert_eq!(v["valid_stes"], 256);
    assert_eq!(v["counts"]["abort"], 255);
    assert_eq!(v["counts"]["s1-translate"], 1);
    let disk = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] != "abort")
        .unwrap();
    assert_eq!(disk["sid"], 8, "PCI 00:01.0");
    assert_eq!(disk["deferred"], true);
    assert_eq!(disk["cd_table"], 0x4807_d000u64);
    assert_eq!(disk["asid"], 1);
    assert_eq!(disk["ttb0"], 0x430f_0000u64);
    // The ASIDs reserved are exactly those of Linux's CDs; a stage-1-only SMMU has no VMID.
    assert_eq!(v["reserved_asids"], serde_json::json!([1]));
    assert_eq!(v["reserved_vmids"], serde_json::json!([]));
}

#[test]
fn linux_s_table_reads_as_one_device_among_aborts() {
    let out = inspect(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("StreamIDs 0x0-0x7: abort\n"), "{text}");
    assert!(text.contains("StreamIDs 0x9-0xff: abort\n"), "{text}");
    assert!(
        text.contains(
            "StreamID 0x8: stage 1; CD table at 0x4807d000 (linear, 1 CD); substream 0: ASID 1"
        ),
        "{text}"
    );
}

//! SPEC K15, K18–K20, structurally (no timing): over the images the `adopt` bench measures —
//! 2-level tables of 2^8 … 2^24 StreamIDs with 1, 64 and all level-1 descriptors valid, each
//! to its own level-2 table — adoption reads exactly the level-1 table, 16 KiB per valid
//! descriptor, the one shared CD table once and one STE per shared VMID, checks every
//! structure for overlap, and never asks for more than `READ_CHUNK_WORDS` words at once.
#![allow(missing_docs)]

#[path = "../benches/support/image.rs"]
mod image;

use image::{
    adopt, build, count_kind, expected_bytes, l1_entries, root_rereads, snapshot, tag_compares,
    valid_counts, Kind, Reservations, CDS_PER_TABLE, L2_BYTES, LOG2SIZES, STES_PER_L2, VALID_CDS,
};
use smmu_kdump::{ScanStats, READ_CHUNK_WORDS};

const CHUNK_BYTES: u64 = READ_CHUNK_WORDS as u64 * 8;

fn check(log2size: u32, valid: u64) {
    let what = format!("2^{log2size} StreamIDs, {valid} valid L1");
    let entries = l1_entries(log2size);
    let image = build(log2size, valid);
    let mut sink = Reservations::new();
    let adoption = adopt(&snapshot(log2size), &image, &mut sink).expect(&what);
    let got = image.counters();
    let stats = adoption.stats;

    // Bytes: the L1 table + 16 KiB per valid descriptor + the shared CD table once (K20) +
    // one STE per VMID compared with its first user (K19) + the first user of each tag
    // once more for its start table (K18).
    let l1_bytes = entries * 8;
    let cds = CDS_PER_TABLE;
    let compares = tag_compares(valid);
    let roots = root_rereads(valid);
    assert_eq!(
        got.bytes,
        l1_bytes + valid * L2_BYTES + cds * 64 + compares * 64 + roots * 64,
        "{what}"
    );
    assert_eq!(got.bytes, expected_bytes(log2size, valid), "{what}");
    assert_eq!(stats.bytes_read, got.bytes, "{what}");

    // O(1) working memory: no request larger than one chunk, and every table read in chunks.
    // (A valid level-2 table is 32 whole chunks, so the maximum is reached.)
    assert!(got.max_read_bytes <= CHUNK_BYTES, "{what}: {got:?}");
    assert_eq!(got.max_read_bytes, CHUNK_BYTES, "{what}");
    let chunks = |bytes: u64| bytes.div_ceil(CHUNK_BYTES);
    let reads = chunks(l1_bytes) + valid * chunks(L2_BYTES) + chunks(cds * 64) + compares + roots;
    assert_eq!(got.reads, reads, "{what}");
    assert_eq!(stats.reads, got.reads, "{what}");

    // Time's measure: descriptors, then 256 STEs per valid descriptor, then the CDs.
    let valid_stes = count_kind(|k| k != Kind::Invalid);
    let vmids = count_kind(|k| matches!(k, Kind::Stage2(_)));
    let deferred = count_kind(|k| !matches!(k, Kind::Invalid | Kind::Abort));
    let asids = VALID_CDS.len() as u64;
    assert_eq!(
        stats,
        ScanStats {
            l1_descriptors: entries,
            l1_valid: valid,
            stes_scanned: valid * STES_PER_L2,
            stes_valid: valid * valid_stes,
            cd_tables: 1,
            cds_scanned: cds,
            cds_valid: asids,
            vmids: valid * vmids,
            asids,
            deferred: valid * deferred,
            // The L1 table, each level-2 table, the CD table (K18).
            structures: 1 + valid + 1,
            tag_compares: compares,
            reads: got.reads,
            bytes_read: got.bytes,
        },
        "{what}"
    );
    assert_eq!(sink.deferred, valid * deferred, "{what}");
    assert_eq!(sink.distinct(), (vmids as u32, asids as u32), "{what}");
}

// spec: K15
#[test]
fn k15_reads_follow_valid_descriptors_in_bounded_chunks() {
    for log2size in LOG2SIZES {
        for (valid, _) in valid_counts(log2size) {
            check(log2size, valid);
        }
    }
}

// spec: K15
#[test]
fn k15_image_is_sparse() {
    // A 2^24-StreamID table costs its L1 array (512 KiB) plus one L2 table and one CD table.
    let image = build(24, l1_entries(24));
    assert_eq!(
        image.resident_bytes(),
        (1 << 16) * 8 + L2_BYTES + CDS_PER_TABLE * 64
    );
}

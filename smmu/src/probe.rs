//! Probe: the ID registers as a typed feature set, and the refusals of SPEC D1.

use crate::access::RegisterAccess;
use crate::arch::idr::{Features, IdRegs, StallModel, TableEndianness};
use crate::arch::regs::offset;
use crate::cmdq::MIN_LOG2_ENTRIES;
use crate::error::ProbeError;
use crate::report::report;

/// Reads `SMMU_IDR0`–`IDR5`, `SMMU_IIDR` and `SMMU_AIDR` (§6.3.1–§6.3.7).
pub fn read_id_regs<R: RegisterAccess + ?Sized>(regs: &R) -> IdRegs {
    IdRegs {
        idr: [
            regs.read32(offset::IDR0),
            regs.read32(offset::IDR1),
            regs.read32(offset::IDR2),
            regs.read32(offset::IDR3),
            regs.read32(offset::IDR4),
            regs.read32(offset::IDR5),
        ],
        iidr: regs.read32(offset::IIDR),
        aidr: regs.read32(offset::AIDR),
    }
}

/// Decodes the ID registers and refuses an SMMU the driver cannot run (SPEC D1):
/// - a frame that reads all-ones (no device behind the mapping);
/// - no AArch64 (VMSAv8-64) table format, or no little-endian walks;
/// - neither translation stage;
/// - a command queue too small for a 64-command batch plus its `CMD_SYNC`;
/// - a reserved `STALL_MODEL` or `TTENDIAN`;
/// - no translation granule at all.
pub fn probe<R: RegisterAccess + ?Sized>(regs: &R) -> Result<Features, ProbeError> {
    let ids = read_id_regs(regs);
    let probed = check(&ids);
    match &probed {
        Ok(f) => report!(
            info,
            "SMMUv3 found: stage 1 {}, stage 2 {}, {} stream table, {}-bit StreamIDs, \
             output addresses {:?}, range invalidation {}, coherent walks {}",
            yes_no(f.stage1),
            yes_no(f.stage2),
            if f.two_level_stream_table {
                "two-level"
            } else {
                "linear"
            },
            f.sid_bits,
            f.oas,
            yes_no(f.range_invalidation),
            yes_no(f.coherent),
        ),
        Err(e) => report!(error, "SMMUv3 not usable: {e}"),
    }
    probed
}

/// "yes"/"no" for the probe report.
#[cfg_attr(not(feature = "log"), allow(dead_code))]
fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// [`probe`] on already-read ID registers (a register dump, a test).
pub fn check(ids: &IdRegs) -> Result<Features, ProbeError> {
    if ids.idr[0] == u32::MAX && ids.idr[1] == u32::MAX {
        return Err(ProbeError::NoDevice);
    }
    let f = Features::decode(ids);
    if !f.aarch64_tables {
        return Err(ProbeError::NoAarch64Tables);
    }
    match f.endianness {
        TableEndianness::Mixed | TableEndianness::Little => {}
        TableEndianness::Big => return Err(ProbeError::UnsupportedEndianness),
        TableEndianness::Reserved => {
            return Err(ProbeError::Reserved {
                field: "IDR0.TTENDIAN",
            })
        }
    }
    if f.stall_model == StallModel::Reserved {
        return Err(ProbeError::Reserved {
            field: "IDR0.STALL_MODEL",
        });
    }
    if !f.stage1 && !f.stage2 {
        return Err(ProbeError::NoTranslation);
    }
    if u32::from(f.cmdq_log2_max) < MIN_LOG2_ENTRIES {
        return Err(ProbeError::CmdqTooSmall {
            log2_entries: f.cmdq_log2_max,
        });
    }
    if !(f.granule_4k || f.granule_16k || f.granule_64k) {
        return Err(ProbeError::NoGranule);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: D1
    #[test]
    fn every_probe_refusal_has_its_own_kebab_case_code() {
        let all = [
            ProbeError::NoAarch64Tables,
            ProbeError::UnsupportedEndianness,
            ProbeError::NoTranslation,
            ProbeError::CmdqTooSmall { log2_entries: 0 },
            ProbeError::Reserved {
                field: "IDR0.TTENDIAN",
            },
            ProbeError::NoGranule,
            ProbeError::NoDevice,
        ];
        let mut codes = all.map(|e| e.code());
        for c in &codes {
            assert!(
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{c}"
            );
        }
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] != w[1]), "{codes:?}");
    }

    /// A QEMU-virt-like SMMU: S1+S2, AArch64 tables, little-endian, 2-level stream tables,
    /// CMDQS 19, 4K/64K granules, OAS 44.
    fn good() -> IdRegs {
        IdRegs {
            idr: [
                (1 << 1) | 1 | (0b10 << 2) | (0b10 << 21) | (1 << 27) | (1 << 13),
                (19 << 21) | (19 << 16) | 16,
                0,
                1 << 10,
                0,
                (1 << 4) | (1 << 6) | 0b100,
            ],
            iidr: 0,
            aidr: 0,
        }
    }

    // spec: D1
    #[test]
    fn accepts_a_usual_smmu() {
        let f = check(&good()).unwrap();
        assert!(f.stage1 && f.stage2 && f.aarch64_tables && f.two_level_stream_table);
        assert_eq!(f.cmdq_log2_max, 19);
    }

    // spec: D1
    #[test]
    fn refuses_what_the_driver_cannot_run() {
        let mut ids = good();
        ids.idr[0] &= !(0b11 << 2);
        ids.idr[0] |= 0b01 << 2; // AArch32 tables only
        assert_eq!(check(&ids), Err(ProbeError::NoAarch64Tables));

        let mut ids = good();
        ids.idr[0] |= 0b11 << 21; // big-endian walks only
        assert_eq!(check(&ids), Err(ProbeError::UnsupportedEndianness));

        let mut ids = good();
        ids.idr[0] &= !(0b11 << 21);
        ids.idr[0] |= 0b01 << 21;
        assert_eq!(
            check(&ids),
            Err(ProbeError::Reserved {
                field: "IDR0.TTENDIAN"
            })
        );

        let mut ids = good();
        ids.idr[0] &= !0b11; // no S1P, no S2P
        assert_eq!(check(&ids), Err(ProbeError::NoTranslation));

        let mut ids = good();
        ids.idr[1] = (6 << 21) | 16; // a 64-entry command queue
        assert_eq!(
            check(&ids),
            Err(ProbeError::CmdqTooSmall { log2_entries: 6 })
        );

        let mut ids = good();
        ids.idr[5] &= !((1 << 4) | (1 << 5) | (1 << 6));
        assert_eq!(check(&ids), Err(ProbeError::NoGranule));

        let ids = IdRegs {
            idr: [u32::MAX; 6],
            iidr: u32::MAX,
            aidr: u32::MAX,
        };
        assert_eq!(check(&ids), Err(ProbeError::NoDevice));
    }

    // spec: D1, D10
    #[test]
    fn every_register_value_gives_a_verdict() {
        use proptest::prelude::*;
        let config = ProptestConfig {
            cases: if cfg!(miri) { 8 } else { 2048 },
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(idr in proptest::array::uniform6(any::<u32>()), iidr: u32, aidr: u32)| {
            let ids = IdRegs { idr, iidr, aidr };
            if let Ok(f) = check(&ids) {
                prop_assert!(f.aarch64_tables);
                prop_assert!(u32::from(f.cmdq_log2_max) >= MIN_LOG2_ENTRIES);
            }
        });
    }
}

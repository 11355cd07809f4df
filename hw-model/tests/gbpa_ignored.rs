//! The QEMU-7.2-like `GBPA` knob (`ModelConfig::gbpa_ignored`): the register reads 0 and
//! drops writes, and a disabled SMMU bypasses (QEMU 7.2 `hw/arm/smmuv3.c` implements no GBPA
//! state). Used by the driver's GBPA read-back tests (SPEC D11, K16).

use smmu_model::fields::reg;
use smmu_model::{Model, ModelConfig, Transaction, TxnResult};

fn model(gbpa_ignored: bool) -> Model {
    Model::new(ModelConfig {
        gbpa_ignored,
        ack_latency: 0,
        ..ModelConfig::default()
    })
}

// spec: D11
#[test]
fn ignored_gbpa_reads_zero_and_drops_writes() {
    let mut m = model(true);
    assert_eq!(m.read32(reg::GBPA), 0);
    m.write32(reg::GBPA, reg::GBPA_UPDATE | reg::GBPA_ABORT);
    assert_eq!(m.read32(reg::GBPA), 0, "the write must be dropped");
    // Disabled, and the abort never took: incoming DMA bypasses.
    assert!(matches!(
        m.dma(Transaction::read(3, 0x4000_1000)),
        TxnResult::Bypass { pa: 0x4000_1000 }
    ));
    assert!(m.violations().is_empty(), "{:?}", m.violations());
}

// spec: D11
#[test]
fn implemented_gbpa_takes_the_abort() {
    // The control: the default model implements GBPA.
    let mut m = model(false);
    m.write32(reg::GBPA, reg::GBPA_UPDATE | reg::GBPA_ABORT);
    assert_ne!(m.read32(reg::GBPA) & reg::GBPA_ABORT, 0);
    assert!(m.dma(Transaction::read(3, 0x4000_1000)).pa().is_none());
    assert!(m.violations().is_empty(), "{:?}", m.violations());
}

//! What the crash-kernel scenario tests share.

#![allow(dead_code)] // each test file uses its own part

use smmu::MasterConfig;
use smmu_kdump::AdoptPlatform;

/// A crash kernel on a coherent platform that allows adoption (SPEC K1).
pub(crate) fn platform_ok() -> AdoptPlatform {
    AdoptPlatform {
        crash_kernel: true,
        coherent: true,
        cache_maintenance: false,
        expect_e2h: None,
    }
}

/// A plain master on `sids`, protected or not.
pub(crate) fn master(sids: &'static [u32], protected: bool) -> MasterConfig<'static> {
    let m = MasterConfig::new(sids);
    if protected {
        m.protected()
    } else {
        m
    }
}

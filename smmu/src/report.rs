//! The kernel-log reports of the driver and of adoption (`smmu-kdump`), through the `log`
//! facade when this crate's `log` feature is on.
//!
//! Without the feature the macro expands to nothing that runs (the arguments are still
//! type-checked, so a report cannot rot while the feature is off). Every report uses the
//! target `smmu`, so a kernel's logger can filter these lines.

/// The `log` facade, for [`__smmu_report!`] expanded in other crates.
#[cfg(feature = "log")]
#[doc(hidden)]
pub use log as facade;

/// One report at `$level` (`error`, `warn`, `info`, `debug`, `trace`). Not public API: the
/// companion crates use it so that one feature of this crate turns every report on.
#[cfg(feature = "log")]
#[doc(hidden)]
#[macro_export]
macro_rules! __smmu_report {
    ($level:ident, $($arg:tt)+) => {
        $crate::report::facade::$level!(target: "smmu", $($arg)+)
    };
}

/// One report at `$level`; the `log` feature is off, so nothing is emitted.
#[cfg(not(feature = "log"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __smmu_report {
    ($level:ident, $($arg:tt)+) => {
        if false {
            let _ = ::core::format_args!($($arg)+);
        }
    };
}

pub(crate) use __smmu_report as report;

//! Arbitrary bytes through every decoder of `smmu::arch` (SPEC B1, B2): a configuration or a
//! typed error, never a panic, and what decodes re-encodes to an image that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smmu::arch::cd::{Cd, L1Cd};
use smmu::arch::cmd::Cmd;
use smmu::arch::event::EventRecord;
use smmu::arch::l1std::L1Std;
use smmu::arch::pri::PriRecord;
use smmu::arch::ste::Ste;

fuzz_target!(|data: &[u8]| {
    if let Ok(ste) = Ste::read_from_bytes(data) {
        if let Ok(Some(c)) = ste.decode() {
            assert_eq!(c.encode().decode(), Ok(Some(c)));
        }
    }
    if let Ok(cd) = Cd::read_from_bytes(data) {
        if let Ok(Some(c)) = cd.decode() {
            assert_eq!(c.encode().decode(), Ok(Some(c)));
        }
    }
    if let Ok(d) = L1Std::read_from_bytes(data) {
        if let Ok(Some(c)) = d.decode() {
            assert_eq!(c.encode().decode(), Ok(Some(c)));
        }
    }
    if let Ok(d) = L1Cd::read_from_bytes(data) {
        if let Some(c) = d.decode() {
            assert_eq!(c.encode().decode(), Some(c));
        }
    }
    if let Ok(cmd) = Cmd::read_from_bytes(data) {
        if let Ok(c) = cmd.decode() {
            assert_eq!(c.encode().decode(), Ok(c));
        }
    }
    if let Ok(ev) = EventRecord::read_from_bytes(data) {
        if let Ok(e) = ev.decode() {
            assert_eq!(e.encode().decode(), Ok(e));
        }
    }
    if let Ok(p) = PriRecord::read_from_bytes(data) {
        let req = p.decode();
        assert_eq!(req.encode().decode(), req);
    }
});

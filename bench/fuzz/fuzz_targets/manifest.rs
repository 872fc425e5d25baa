#![no_main]
//! The manifest parser never panics, and whatever it accepts is valid and
//! survives a write and a second parse unchanged.

use diskette::archive::manifest::{Manifest, check_relative};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        for path in m.datas.iter().flatten().chain(m.storages.iter().flatten()) {
            assert!(check_relative(path).is_ok(), "accepted {path:?}");
        }
        let again = Manifest::parse(m.to_json().as_bytes()).expect("own output parses");
        assert_eq!(again, m);
    }
});

#![no_main]
//! The archive reader never panics or hangs on any input, and whatever it
//! writes stays inside its own temporary directory, which is gone afterwards.

use diskette::archive::extract::{Limits, extract};
use diskette::progress::Silent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sandbox = tempfile::tempdir().expect("temp dir");
    let archive = sandbox.path().join("input.tar.gz");
    std::fs::write(&archive, data).expect("write input");
    let parent = sandbox.path().join("dest");
    std::fs::create_dir(&parent).expect("dest");
    let limits = Limits {
        max_unpacked_bytes: 8 * 1024 * 1024,
        max_entries: 1000,
    };
    if let Ok(extracted) = extract(&archive, &parent, &limits, &Silent) {
        let root = extracted.root();
        for entry in walk(&parent) {
            assert!(entry.starts_with(&parent), "{entry:?} escaped");
        }
        drop(extracted);
        assert!(!root.exists());
    }
    // Nothing is left behind, on success (after drop) or on error.
    assert_eq!(std::fs::read_dir(&parent).expect("dest").count(), 0);
});

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

//! Replays every input the fuzzer ever found troublesome (fuzz/regressions/)
//! plus the RFC 4475 corpus through the same entry point the fuzz target
//! uses: none may panic.

use std::path::Path;

fn replay_dir(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        tether::sip::fuzz_entry(&bytes);
        // Every prefix too: truncation is the commonest corruption on the wire.
        for cut in (0..bytes.len()).step_by(7) {
            tether::sip::fuzz_entry(&bytes[..cut]);
        }
        n += 1;
    }
    n
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    replay_dir(&root.join("fuzz/regressions"));
}

#[test]
fn torture_corpus_and_its_prefixes_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(replay_dir(&root.join("tests/fixtures/rfc4475")) >= 49);
}

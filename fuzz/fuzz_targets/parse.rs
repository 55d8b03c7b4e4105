//! Fuzz the SIP parser and every typed accessor: `cargo fuzz run parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tether::sip::fuzz_entry(data);
});

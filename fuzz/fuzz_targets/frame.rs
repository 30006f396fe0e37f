//! Fuzzes the decoding of untrusted frames and handshakes.
//!
//! Run (nightly, not part of CI): `cargo +nightly fuzz run frame` from the repository root.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    distributed_scope::__private::fuzz_decode(bytes);
});

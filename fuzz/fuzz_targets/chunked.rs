//! Checks `ChunkedDecoder::decode` and `decode_in_place` on libFuzzer inputs; see
//! `check_chunked`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_fuzz::{checks, input};

fuzz_target!(|data: &[u8]| {
    let (parameters, bytes) = input::split(data);
    let params = input::chunked_params(&parameters, bytes.len());
    if let Err(violation) = checks::check_chunked(bytes, &params) {
        panic!(
            "{violation}\nparameters: {params:?}\ninput: \"{}\"",
            checks::escaped(bytes)
        );
    }
});

//! Checks `parse_request` and `write_request_head` on libFuzzer inputs; see `check_request`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http::head::RequestHead;
use ringway_fuzz::{checks, input};

fuzz_target!(|data: &[u8]| {
    let (parameters, bytes) = input::split(data);
    let params = input::request_params(&parameters);
    // A leftover head from an earlier parse, as a keep-alive connection reuses it.
    let mut reused = RequestHead::default();
    let _ = ringway::http::head::parse_request(
        b"POST /old HTTP/1.1\r\nHost: old\r\nContent-Length: 3\r\nX-Old: 1\r\n\r\n",
        params.limits,
        &mut reused,
    );
    if let Err(violation) = checks::check_request(bytes, &params, &mut reused) {
        panic!(
            "{violation}\nparameters: {params:?}\ninput: \"{}\"",
            checks::escaped(bytes)
        );
    }
});

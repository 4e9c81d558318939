//! Checks `parse_response` and the response serializers on libFuzzer inputs; see
//! `check_response`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http::head::ResponseHead;
use ringway_fuzz::{checks, input};

fuzz_target!(|data: &[u8]| {
    let (parameters, bytes) = input::split(data);
    let params = input::response_params(&parameters);
    // A leftover head from an earlier parse, as a keep-alive connection reuses it.
    let mut reused = ResponseHead::default();
    let _ = ringway::http::head::parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: x-old\r\n\r\n",
        params.limits,
        false,
        &mut reused,
    );
    if let Err(violation) = checks::check_response(bytes, &params, &mut reused) {
        panic!(
            "{violation}\nparameters: {params:?}\ninput: \"{}\"",
            checks::escaped(bytes)
        );
    }
});

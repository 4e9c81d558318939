//! Turns one libFuzzer input into a parser input and the parameters to check it with.
//!
//! The first `PARAMETER_BYTES` bytes of an input select the parameters, and the rest is the
//! bytes handed to the parser. Zero parameter bytes select ringway's defaults, so an input that
//! starts with `PARAMETER_BYTES` zeros checks its payload under the usual limits. libFuzzer
//! mutates the parameter bytes like any other, which lets it reach the limit paths too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ringway::config::{
    DEFAULT_MAX_HEADER_COUNT, DEFAULT_MAX_REQUEST_HEAD_BYTES, DEFAULT_MAX_RESPONSE_HEAD_BYTES,
};
use ringway::http::body::{ChunkedLimits, DEFAULT_MAX_EXTENSION_BYTES, DEFAULT_MAX_TRAILER_BYTES};
use ringway::http::head::{HeadLimits, MAX_HEADER_COUNT};

use crate::checks::{ChunkedParams, RequestParams, ResponseParams};

/// Bytes at the start of every input that select the parameters.
pub const PARAMETER_BYTES: usize = 8;

/// Client address written into X-Forwarded-For when the parameters pick IPv4 (TEST-NET-1,
/// RFC 5737).
const CLIENT_IPV4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Client address written into X-Forwarded-For when the parameters pick IPv6 (the
/// documentation prefix, RFC 3849).
const CLIENT_IPV6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// Splits `data` into the parameter bytes, padded with zeros when `data` is shorter, and the
/// parser input.
pub fn split(data: &[u8]) -> ([u8; PARAMETER_BYTES], &[u8]) {
    let mut parameters = [0; PARAMETER_BYTES];
    let used = data.len().min(PARAMETER_BYTES);
    parameters[..used].copy_from_slice(&data[..used]);
    (parameters, &data[used..])
}

/// Selects head limits. The byte limit is `default_max_head_bytes`, any 16-bit value, a value
/// below 256 or none. The header count is ringway's default, a value below 200, or one above
/// `MAX_HEADER_COUNT`, which ringway must cap.
pub fn head_limits(
    parameters: &[u8; PARAMETER_BYTES],
    default_max_head_bytes: usize,
) -> HeadLimits {
    let max_head_bytes = match parameters[0] % 4 {
        0 => default_max_head_bytes,
        1 => usize::from(u16::from_le_bytes([parameters[1], parameters[2]])),
        2 => usize::from(parameters[1]),
        _ => usize::MAX,
    };
    let max_header_count = match parameters[3] {
        0 => DEFAULT_MAX_HEADER_COUNT,
        count @ 1..=200 => usize::from(count - 1),
        count => MAX_HEADER_COUNT + usize::from(count - 201),
    };
    HeadLimits {
        max_head_bytes,
        max_header_count,
    }
}

pub fn request_params(parameters: &[u8; PARAMETER_BYTES]) -> RequestParams {
    let forward_limit = match u16::from_le_bytes([parameters[4], parameters[5]]) {
        0 => usize::MAX,
        limit => usize::from(limit),
    };
    RequestParams {
        limits: head_limits(parameters, DEFAULT_MAX_REQUEST_HEAD_BYTES),
        forward_limit,
        prefill: usize::from(parameters[6]),
        client_ip: if parameters[7] & 1 == 0 {
            CLIENT_IPV4
        } else {
            CLIENT_IPV6
        },
    }
}

pub fn response_params(parameters: &[u8; PARAMETER_BYTES]) -> ResponseParams {
    ResponseParams {
        limits: head_limits(parameters, DEFAULT_MAX_RESPONSE_HEAD_BYTES),
        request_was_head: parameters[7] & 2 != 0,
    }
}

/// Selects chunked limits (default or 0 to 254 bytes each), up to three piece boundaries at
/// fractions of the input, two output sizes and two re-encoding chunk sizes.
pub fn chunked_params(parameters: &[u8; PARAMETER_BYTES], input_len: usize) -> ChunkedParams {
    let limit = |byte: u8, default: usize| {
        if byte == 0 {
            default
        } else {
            usize::from(byte - 1)
        }
    };
    let limits = ChunkedLimits {
        max_extension_bytes: limit(parameters[0], DEFAULT_MAX_EXTENSION_BYTES),
        max_trailer_bytes: limit(parameters[1], DEFAULT_MAX_TRAILER_BYTES),
    };
    let piece_ends = parameters[2..5]
        .iter()
        .map(|&fraction| input_len * usize::from(fraction) / 256)
        .collect();
    let out_lens = vec![
        usize::from(parameters[5] & 0x0f) + 1,
        usize::from(parameters[5] >> 4) * 64 + 1,
    ];
    let rechunk_lens = vec![
        usize::from(parameters[6]) + 1,
        usize::from(parameters[7]) + 1,
    ];
    ChunkedParams {
        limits,
        piece_ends,
        out_lens,
        rechunk_lens,
    }
}

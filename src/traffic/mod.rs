//! Traffic control for one worker: load balancing, server health, circuit breaking, rate
//! limiting, retry budgets and address-based access control.
//!
//! Every type here is owned by one worker thread, so none of them locks or uses atomics. Callers
//! pass the current time as an `Instant`, which keeps the state machines deterministic under
//! test. Tables are sized when a type is constructed, so the calls made per request do not
//! allocate (the one exception, a new key in `limiter::KeyedLimiter`, is documented there).
//! The types take plain parameters rather than `config::Config`, so the caller converts the
//! configuration and owns its validation.

pub mod acl;
pub mod balance;
pub mod breaker;
pub mod health;
pub mod limiter;
pub mod probe;
pub mod retry;

pub use crate::routing::Sink;

/// Maximum number of decimal digits of a `u64`.
const U64_DECIMAL_DIGITS: usize = 20;

/// Writes `value` in decimal to `sink` without allocating.
pub(crate) fn put_decimal(sink: &mut impl Sink, value: u64) {
    let mut digits = [0u8; U64_DECIMAL_DIGITS];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    sink.put(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writes_edge_values() {
        for (value, text) in [
            (0u64, "0"),
            (7, "7"),
            (10, "10"),
            (4_294_967_295, "4294967295"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut out = Vec::new();
            put_decimal(&mut out, value);
            assert_eq!(out, text.as_bytes(), "value {value}");
        }
    }
}

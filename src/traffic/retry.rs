//! Retry rules: which failed requests are safe to send again, and a budget that bounds how
//! many retries an upstream receives relative to its traffic.

use std::time::Instant;

/// Seconds of traffic the budget remembers. Deposits older than this expire, so a long calm
/// period does not save up a flood of retries for the next outage.
pub const RETRY_BUDGET_WINDOW_SECS: usize = 10;

/// Fixed-point scale of the budget ratio, so the arithmetic on counts is exact.
const RATIO_SCALE: u64 = 1_000_000;

/// Counts of one second of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Second {
    /// Seconds since the budget's origin that the counts belong to.
    second: u64,
    requests: u64,
    /// Retries paid from the requests' deposits, not from the per-second reserve.
    retries: u64,
}

/// A retry budget in the style of Finagle's: each request deposits `budget_ratio` of a retry,
/// each retry withdraws one, and `min_per_second` retries per second are always allowed on
/// top. Deposits expire after `RETRY_BUDGET_WINDOW_SECS`, so the retries paid from deposits
/// within any window stay at or below `budget_ratio` times the requests within it (the window
/// moves in whole seconds, so its length varies between 9 and 10 seconds).
#[derive(Debug, Clone)]
pub struct RetryBudget {
    /// `budget_ratio` times `RATIO_SCALE`.
    ratio_scaled: u64,
    min_per_second: u32,
    origin: Instant,
    seconds: [Second; RETRY_BUDGET_WINDOW_SECS],
    /// Second of the latest reserve withdrawal, and the withdrawals in it.
    reserve_second: u64,
    reserve_used: u32,
}

impl RetryBudget {
    /// Builds a budget. A negative ratio counts as 0.
    pub fn new(budget_ratio: f64, min_per_second: u32, now: Instant) -> RetryBudget {
        RetryBudget {
            ratio_scaled: (budget_ratio.max(0.0) * RATIO_SCALE as f64).round() as u64,
            min_per_second,
            origin: now,
            seconds: [Second::default(); RETRY_BUDGET_WINDOW_SECS],
            reserve_second: 0,
            reserve_used: 0,
        }
    }

    /// Deposits the share of one client request. Call it once per request, not per attempt.
    pub fn record_request(&mut self, now: Instant) {
        let current = self.current(now);
        current.requests = current.requests.saturating_add(1);
    }

    /// Returns whether one more retry fits the budget, and withdraws it if so.
    pub fn can_retry(&mut self, now: Instant) -> bool {
        let (requests, retries) = self.window_totals(now);
        if requests.saturating_mul(self.ratio_scaled)
            >= retries.saturating_add(1).saturating_mul(RATIO_SCALE)
        {
            let current = self.current(now);
            current.retries = current.retries.saturating_add(1);
            return true;
        }

        let second = self.second_of(now);
        if second != self.reserve_second {
            self.reserve_second = second;
            self.reserve_used = 0;
        }
        if self.reserve_used < self.min_per_second {
            self.reserve_used += 1;
            return true;
        }
        false
    }

    /// Returns the retries that deposits in the window still pay for, without the reserve.
    pub fn balance(&self, now: Instant) -> f64 {
        let (requests, retries) = self.window_totals(now);
        let deposits = requests as f64 * self.ratio_scaled as f64 / RATIO_SCALE as f64;
        (deposits - retries as f64).max(0.0)
    }

    fn second_of(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Returns the counts of the second that contains `now`, clearing a slot left from an
    /// earlier pass over the ring.
    fn current(&mut self, now: Instant) -> &mut Second {
        let second = self.second_of(now);
        let slot = &mut self.seconds[(second % RETRY_BUDGET_WINDOW_SECS as u64) as usize];
        if slot.second != second {
            *slot = Second {
                second,
                requests: 0,
                retries: 0,
            };
        }
        slot
    }

    fn window_totals(&self, now: Instant) -> (u64, u64) {
        let second = self.second_of(now);
        self.seconds
            .iter()
            .filter(|slot| second.wrapping_sub(slot.second) < RETRY_BUDGET_WINDOW_SECS as u64)
            .fold((0, 0), |(requests, retries), slot| {
                (requests + slot.requests, retries + slot.retries)
            })
    }
}

/// How far an attempt got before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureStage {
    /// The connection to the server failed (refused, unreachable).
    ConnectFailed,
    /// The connection to the server timed out.
    ConnectTimeout,
    /// The connection was reset or closed before the whole request head was written, so the
    /// server cannot have acted on the request.
    ResetBeforeRequestWritten,
    /// Part of the request body was sent, so the server may have acted on it, and the body
    /// bytes already read from the client are gone.
    RequestBodyStarted,
    /// The whole request was sent and no response head arrived (reset or timeout).
    RequestWritten,
    /// Part of the response was received.
    ResponseStarted,
}

/// Returns whether a failed attempt may be sent again. A failed connection sent nothing, so any
/// method may go to another server, as nginx and Envoy do. A connection reset before the whole
/// request head was written may still have reached the server, so only idempotent methods (RFC
/// 9110 section 9.2.2) are sent again, and nothing is once the request was written. Methods
/// compare case-sensitively, as RFC 9110 section 9.1 requires.
pub fn retryable(method: &[u8], stage: FailureStage) -> bool {
    let idempotent = crate::http::head::is_idempotent_method(method);
    match stage {
        FailureStage::ConnectFailed | FailureStage::ConnectTimeout => true,
        FailureStage::ResetBeforeRequestWritten => idempotent,
        FailureStage::RequestBodyStarted
        | FailureStage::RequestWritten
        | FailureStage::ResponseStarted => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    /// Counts the retries the budget allows at `now`, up to a bound that proves it stops.
    fn drain(budget: &mut RetryBudget, now: Instant) -> usize {
        (0..10_000).take_while(|_| budget.can_retry(now)).count()
    }

    #[test]
    fn reserve_without_traffic() {
        let start = Instant::now();
        let mut budget = RetryBudget::new(0.2, 3, start);
        assert_eq!(drain(&mut budget, start), 3);
        assert_eq!(drain(&mut budget, at(start, 999)), 0, "same second");
        assert_eq!(drain(&mut budget, at(start, 1000)), 3, "next second");
    }

    #[test]
    fn deposits_add_to_reserve() {
        let cases = [
            (0.2, 3, 100, 23),
            (0.2, 0, 100, 20),
            (0.2, 0, 4, 0),
            (0.2, 0, 5, 1),
            (0.1, 0, 30, 3),
            (0.5, 1, 7, 4),
            (0.0, 2, 1000, 2),
            (1.0, 0, 10, 10),
        ];
        for (ratio, reserve, requests, expected) in cases {
            let start = Instant::now();
            let mut budget = RetryBudget::new(ratio, reserve, start);
            for _ in 0..requests {
                budget.record_request(start);
            }
            assert_eq!(
                drain(&mut budget, start),
                expected,
                "ratio {ratio}, reserve {reserve}, {requests} requests"
            );
        }
    }

    #[test]
    fn deposits_expire_after_window() {
        let start = Instant::now();
        let mut budget = RetryBudget::new(0.5, 0, start);
        for _ in 0..10 {
            budget.record_request(start);
        }
        assert_eq!(budget.balance(at(start, 9_999)), 5.0);
        assert_eq!(budget.balance(at(start, 10_000)), 0.0);
        assert_eq!(drain(&mut budget, at(start, 10_000)), 0);
    }

    #[test]
    fn withdrawals_expire_with_deposits() {
        let start = Instant::now();
        let mut budget = RetryBudget::new(0.5, 0, start);
        for _ in 0..10 {
            budget.record_request(start);
        }
        assert_eq!(drain(&mut budget, start), 5);

        // Five seconds later new traffic pays for new retries; the old withdrawals still
        // count against the old deposits until both expire together.
        let later = at(start, 5_000);
        for _ in 0..4 {
            budget.record_request(later);
        }
        assert_eq!(drain(&mut budget, later), 2);
        let after_expiry = at(start, 10_000);
        assert_eq!(
            budget.balance(after_expiry),
            0.0,
            "4 * 0.5 deposited, 2 withdrawn"
        );
        budget.record_request(after_expiry);
        budget.record_request(after_expiry);
        assert_eq!(drain(&mut budget, after_expiry), 1);
    }

    #[test]
    fn balance_is_bounded_by_window() {
        // A steady 100 requests per second for a minute leaves at most 10 s of deposits.
        let start = Instant::now();
        let mut budget = RetryBudget::new(0.2, 0, start);
        for second in 0..60 {
            for _ in 0..100 {
                budget.record_request(at(start, second * 1000));
            }
        }
        let end = at(start, 59_500);
        assert_eq!(budget.balance(end), 200.0);
        assert_eq!(drain(&mut budget, end), 200);
    }

    #[test]
    fn retryable_table() {
        use FailureStage::*;
        // (stage, retried for idempotent methods, retried for the others)
        let stages = [
            (ConnectFailed, true, true),
            (ConnectTimeout, true, true),
            (ResetBeforeRequestWritten, true, false),
            (RequestBodyStarted, false, false),
            (RequestWritten, false, false),
            (ResponseStarted, false, false),
        ];
        let methods: [(&[u8], bool); 10] = [
            (b"GET", true),
            (b"HEAD", true),
            (b"OPTIONS", true),
            (b"TRACE", true),
            (b"PUT", true),
            (b"DELETE", true),
            (b"POST", false),
            (b"PATCH", false),
            (b"CONNECT", false),
            (b"get", false),
        ];
        for (method, idempotent) in methods {
            for (stage, when_idempotent, otherwise) in stages {
                let expected = if idempotent { when_idempotent } else { otherwise };
                assert_eq!(
                    retryable(method, stage),
                    expected,
                    "{} {stage:?}",
                    String::from_utf8_lossy(method)
                );
            }
        }
    }
}

//! A circuit breaker per upstream server: after too many failures it stops sending requests to
//! the server for a while, then lets a few trial requests through before closing again.

use std::time::{Duration, Instant};

/// Buckets of the rolling window. The window slides one bucket at a time, so outcomes are
/// counted over between 9 and 10 tenths of `BreakerParams::window`.
pub const BREAKER_WINDOW_BUCKETS: usize = 10;

/// Settings of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerParams {
    /// Share of failed requests in the window, from 0.0 to 1.0, that opens the breaker.
    pub failure_ratio: f64,
    /// Length of the rolling window of outcomes.
    pub window: Duration,
    /// Requests in the window needed before the ratio is judged; below it the breaker stays
    /// closed, so a few early failures cannot open it. 0 acts as 1.
    pub min_requests: u32,
    /// Time the breaker stays open before admitting trial requests.
    pub break_duration: Duration,
    /// Trial requests admitted while half-open; all of them must succeed to close. 0 acts as 1.
    pub half_open_requests: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow and their outcomes are counted.
    Closed,
    /// Requests are rejected until the break ends.
    Open,
    /// A limited number of trial requests decide whether to close or open again.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Index of the bucket-width interval since `origin` that the counts belong to.
    epoch: u64,
    requests: u32,
    failures: u32,
}

/// The circuit breaker of one server on one worker.
///
/// The caller asks `allow` before each request and reports each admitted request's outcome
/// with `record`. Outcomes that arrive while open are ignored, because they belong to requests
/// admitted before the breaker opened. An outcome that arrives while half-open counts as a
/// trial even when its request was admitted while closed, which can only happen to requests
/// that outlast the break.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    params: BreakerParams,
    bucket_width: Duration,
    /// Start of epoch 0.
    origin: Instant,
    buckets: [Bucket; BREAKER_WINDOW_BUCKETS],
    state: BreakerState,
    /// When the breaker last opened, or last became half-open.
    since: Instant,
    trials_admitted: u32,
    trials_succeeded: u32,
}

impl CircuitBreaker {
    pub fn new(params: BreakerParams, now: Instant) -> CircuitBreaker {
        let bucket_width =
            (params.window / BREAKER_WINDOW_BUCKETS as u32).max(Duration::from_nanos(1));
        CircuitBreaker {
            params,
            bucket_width,
            origin: now,
            buckets: [Bucket::default(); BREAKER_WINDOW_BUCKETS],
            state: BreakerState::Closed,
            since: now,
            trials_admitted: 0,
            trials_succeeded: 0,
        }
    }

    /// Returns the state as of the latest call; an open breaker turns half-open in `allow`.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Returns whether `allow` would admit a request at `now`, without counting a trial, so
    /// that a balancer can skip open breakers while it compares servers.
    pub fn would_allow(&self, now: Instant) -> bool {
        let break_over = now.saturating_duration_since(self.since) >= self.params.break_duration;
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => break_over,
            BreakerState::HalfOpen => {
                break_over || self.trials_admitted < self.params.half_open_requests.max(1)
            }
        }
    }

    /// Returns whether a request may go to the server now, counting it as a trial when the
    /// breaker is half-open.
    ///
    /// If a trial's outcome is never recorded, for example because its request was dropped,
    /// new trials are admitted once another break duration has passed, so the breaker cannot
    /// stay half-open forever.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if now.saturating_duration_since(self.since) < self.params.break_duration {
                    return false;
                }
                self.enter_half_open(now);
                self.admit_trial()
            }
            BreakerState::HalfOpen => {
                if now.saturating_duration_since(self.since) >= self.params.break_duration {
                    self.enter_half_open(now);
                }
                self.admit_trial()
            }
        }
    }

    /// Records the outcome of a request that `allow` admitted.
    pub fn record(&mut self, ok: bool, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.count(ok, now);
                if self.should_open(now) {
                    self.open(now);
                }
            }
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                if !ok {
                    self.open(now);
                    return;
                }
                self.trials_succeeded += 1;
                if self.trials_succeeded >= self.params.half_open_requests.max(1) {
                    self.state = BreakerState::Closed;
                    self.buckets = [Bucket::default(); BREAKER_WINDOW_BUCKETS];
                }
            }
        }
    }

    fn enter_half_open(&mut self, now: Instant) {
        self.state = BreakerState::HalfOpen;
        self.since = now;
        self.trials_admitted = 0;
        self.trials_succeeded = 0;
    }

    fn admit_trial(&mut self) -> bool {
        if self.trials_admitted >= self.params.half_open_requests.max(1) {
            return false;
        }
        self.trials_admitted += 1;
        true
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.since = now;
    }

    fn epoch(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        (elapsed / self.bucket_width.as_nanos()) as u64
    }

    fn count(&mut self, ok: bool, now: Instant) {
        let epoch = self.epoch(now);
        let bucket = &mut self.buckets[(epoch % BREAKER_WINDOW_BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket {
                epoch,
                requests: 0,
                failures: 0,
            };
        }
        bucket.requests = bucket.requests.saturating_add(1);
        if !ok {
            bucket.failures = bucket.failures.saturating_add(1);
        }
    }

    fn should_open(&self, now: Instant) -> bool {
        let epoch = self.epoch(now);
        let (mut requests, mut failures) = (0u64, 0u64);
        for bucket in &self.buckets {
            let age = epoch.wrapping_sub(bucket.epoch);
            if age < BREAKER_WINDOW_BUCKETS as u64 {
                requests += u64::from(bucket.requests);
                failures += u64::from(bucket.failures);
            }
        }
        requests >= u64::from(self.params.min_requests.max(1))
            && failures as f64 >= self.params.failure_ratio * requests as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: BreakerParams = BreakerParams {
        failure_ratio: 0.5,
        window: Duration::from_secs(10),
        min_requests: 10,
        break_duration: Duration::from_secs(30),
        half_open_requests: 1,
    };

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    /// Records `ok` successes and `failed` failures at `now`.
    fn feed(breaker: &mut CircuitBreaker, ok: u32, failed: u32, now: Instant) {
        for _ in 0..ok {
            assert!(breaker.allow(now));
            breaker.record(true, now);
        }
        for _ in 0..failed {
            assert!(breaker.allow(now));
            breaker.record(false, now);
        }
    }

    fn opened(start: Instant) -> CircuitBreaker {
        let mut breaker = CircuitBreaker::new(PARAMS, start);
        feed(&mut breaker, 0, 10, start);
        assert_eq!(breaker.state(), BreakerState::Open);
        breaker
    }

    #[test]
    fn closed_below_min_requests() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(PARAMS, start);
        feed(&mut breaker, 0, 9, start);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "9 failures, but 10 needed"
        );
        assert!(breaker.allow(start));
    }

    #[test]
    fn opens_at_ratio() {
        let cases = [
            (5u32, 5u32, BreakerState::Open),
            (6, 4, BreakerState::Closed),
            (0, 10, BreakerState::Open),
            (10, 0, BreakerState::Closed),
            (11, 9, BreakerState::Closed),
            (10, 10, BreakerState::Open),
        ];
        for (ok, failed, expected) in cases {
            let start = Instant::now();
            let mut breaker = CircuitBreaker::new(PARAMS, start);
            feed(&mut breaker, ok, failed, start);
            assert_eq!(breaker.state(), expected, "{ok} ok, {failed} failed");
        }
    }

    #[test]
    fn open_rejects_until_break_ends() {
        let start = Instant::now();
        let mut breaker = opened(start);
        assert!(!breaker.allow(at(start, 1)));
        assert!(!breaker.allow(at(start, 29_999)));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.allow(at(start, 30_000)), "first trial");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(!breaker.allow(at(start, 30_001)), "one trial at a time");
    }

    #[test]
    fn half_open_success_closes() {
        let start = Instant::now();
        let mut breaker = opened(start);
        assert!(breaker.allow(at(start, 30_000)));
        breaker.record(true, at(start, 30_010));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.allow(at(start, 30_011)));

        // The failures before the break are forgotten: nine more do not reopen.
        feed(&mut breaker, 0, 9, at(start, 30_020));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_failure_reopens() {
        let start = Instant::now();
        let mut breaker = opened(start);
        assert!(breaker.allow(at(start, 30_000)));
        breaker.record(false, at(start, 30_500));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(
            !breaker.allow(at(start, 60_000)),
            "the new break started at 30.5 s"
        );
        assert!(breaker.allow(at(start, 60_500)));
    }

    #[test]
    fn half_open_needs_all_trials() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(
            BreakerParams {
                half_open_requests: 3,
                ..PARAMS
            },
            start,
        );
        feed(&mut breaker, 0, 10, start);
        let later = at(start, 30_000);
        assert!(breaker.allow(later));
        assert!(breaker.allow(later));
        assert!(breaker.allow(later));
        assert!(!breaker.allow(later), "only three trials");
        breaker.record(true, later);
        breaker.record(true, later);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.record(true, later);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_one_failure_of_many_reopens() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(
            BreakerParams {
                half_open_requests: 3,
                ..PARAMS
            },
            start,
        );
        feed(&mut breaker, 0, 10, start);
        let later = at(start, 30_000);
        assert!(breaker.allow(later));
        assert!(breaker.allow(later));
        breaker.record(true, later);
        breaker.record(false, later);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn lost_trial_readmits_after_break() {
        let start = Instant::now();
        let mut breaker = opened(start);
        assert!(breaker.allow(at(start, 30_000)));
        // The trial's outcome never arrives.
        assert!(!breaker.allow(at(start, 59_999)));
        assert!(breaker.allow(at(start, 60_000)));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn outcomes_while_open_ignored() {
        let start = Instant::now();
        let mut breaker = opened(start);
        for _ in 0..20 {
            breaker.record(true, at(start, 100));
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow(at(start, 200)));
    }

    #[test]
    fn window_forgets_old_outcomes() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(PARAMS, start);
        feed(&mut breaker, 0, 9, start);
        // Ten seconds later the nine failures are outside the window.
        feed(&mut breaker, 1, 1, at(start, 10_000));
        assert_eq!(breaker.state(), BreakerState::Closed);
        feed(&mut breaker, 0, 8, at(start, 10_000));
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "9 of 10 failed within one window"
        );
    }

    #[test]
    fn window_spans_buckets() {
        // Failures spread over 9 seconds all count.
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(PARAMS, start);
        for second in 0..9 {
            feed(&mut breaker, 0, 1, at(start, second * 1000));
            assert_eq!(breaker.state(), BreakerState::Closed, "at {second} s");
        }
        feed(&mut breaker, 0, 1, at(start, 9_500));
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn old_buckets_reused_after_gap() {
        // After a long quiet period the slots hold stale epochs, which must not count.
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(PARAMS, start);
        feed(&mut breaker, 0, 9, start);
        let much_later = at(start, 3_600_000);
        feed(&mut breaker, 5, 4, much_later);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_min_requests_acts_as_one() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(
            BreakerParams {
                min_requests: 0,
                ..PARAMS
            },
            start,
        );
        assert!(breaker.allow(start));
        breaker.record(true, start);
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record(false, start);
        assert_eq!(breaker.state(), BreakerState::Open, "1 of 2 failed");
    }
}

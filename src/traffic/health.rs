//! Server health as tracked by one worker: passive checks that eject a server after failed
//! requests, and active checks that follow the results of periodic probes.
//!
//! A server is available while it is neither ejected nor marked unhealthy by probes. Each worker
//! keeps its own state, so a server ejected on one worker may still receive requests from
//! another until that worker records failures of its own.

use std::time::{Duration, Instant};

use super::probe::ProbeError;

/// Settings of passive checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealthParams {
    /// Failures within `window` that eject the server; 0 turns passive checks off.
    pub max_failures: u32,
    pub window: Duration,
    /// Length of the first ejection; each further ejection without a success in between
    /// doubles it.
    pub ejection: Duration,
    /// Upper bound of the doubled ejection.
    pub max_ejection: Duration,
}

/// Passive health of one server, fed with the outcome of each request to it.
///
/// When an ejection ends the server is on probation: the next outcome decides, so one failure
/// ejects it again for twice as long (up to `max_ejection`), and one success ends probation and
/// resets the ejection length. Outcomes reported while the server is ejected belong to requests
/// sent before the ejection and are ignored.
#[derive(Debug, Clone)]
pub struct PassiveHealth {
    params: PassiveHealthParams,
    /// Times of the latest failures, a ring of `max_failures` entries allocated up front.
    failures: Vec<Instant>,
    /// Slot of `failures` that the next failure overwrites once the ring is full.
    next_slot: usize,
    ejected_until: Option<Instant>,
    /// Ejections since the last success.
    consecutive_ejections: u32,
    on_probation: bool,
}

impl PassiveHealth {
    pub fn new(params: PassiveHealthParams) -> PassiveHealth {
        PassiveHealth {
            params,
            failures: Vec::with_capacity(params.max_failures as usize),
            next_slot: 0,
            ejected_until: None,
            consecutive_ejections: 0,
            on_probation: false,
        }
    }

    /// Returns whether the server is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// Returns the end of the current or last ejection, if any.
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Records a failed request. Returns true when this failure ejects the server, so the
    /// caller can log the ejection once.
    pub fn record_failure(&mut self, now: Instant) -> bool {
        if self.params.max_failures == 0 || self.is_ejected(now) {
            return false;
        }
        if self.on_probation {
            self.eject(now);
            return true;
        }

        let capacity = self.params.max_failures as usize;
        if self.failures.len() < capacity {
            self.failures.push(now);
        } else {
            self.failures[self.next_slot] = now;
            self.next_slot = (self.next_slot + 1) % capacity;
        }
        if self.failures.len() < capacity {
            return false;
        }
        // The ring is full, so the slot written next contains the oldest of the last
        // `max_failures` failures.
        let oldest = self.failures[self.next_slot];
        if now.saturating_duration_since(oldest) <= self.params.window {
            self.eject(now);
            return true;
        }
        false
    }

    /// Records a successful request, which ends probation and resets the ejection length.
    pub fn record_success(&mut self, now: Instant) {
        if self.is_ejected(now) {
            return;
        }
        self.on_probation = false;
        self.consecutive_ejections = 0;
    }

    fn eject(&mut self, now: Instant) {
        let factor = 2u32.saturating_pow(self.consecutive_ejections);
        let length = self
            .params
            .ejection
            .saturating_mul(factor)
            .min(self.params.max_ejection);
        self.ejected_until = Some(now + length);
        self.consecutive_ejections = self.consecutive_ejections.saturating_add(1);
        self.on_probation = true;
        self.failures.clear();
        self.next_slot = 0;
    }
}

/// A change of state reported by `ActiveHealth::record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    BecameHealthy,
    BecameUnhealthy,
}

/// Active health of one server, fed with probe results. It starts healthy, turns unhealthy
/// after `unhealthy_threshold` failed probes in a row, and healthy again after
/// `healthy_threshold` passed probes in a row. A threshold of 0 acts as 1.
#[derive(Debug, Clone)]
pub struct ActiveHealth {
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    healthy: bool,
    /// Probes in a row whose result disagrees with the current state.
    streak: u32,
}

impl ActiveHealth {
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32) -> ActiveHealth {
        ActiveHealth {
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
            healthy: true,
            streak: 0,
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records whether a probe passed, returning the change of state it caused, if any.
    pub fn record(&mut self, passed: bool) -> Option<HealthChange> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if self.healthy {
            self.unhealthy_threshold
        } else {
            self.healthy_threshold
        };
        if self.streak < threshold {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        Some(if passed {
            HealthChange::BecameHealthy
        } else {
            HealthChange::BecameUnhealthy
        })
    }

    /// Records a probe result: it passed when the server responded with one of
    /// `expected_status`.
    pub fn record_probe(
        &mut self,
        result: &Result<u16, ProbeError>,
        expected_status: &[u16],
    ) -> Option<HealthChange> {
        let passed = matches!(result, Ok(status) if expected_status.contains(status));
        self.record(passed)
    }
}

/// Passive and, when configured, active health of one server.
#[derive(Debug, Clone)]
pub struct ServerHealth {
    pub passive: PassiveHealth,
    pub active: Option<ActiveHealth>,
}

impl ServerHealth {
    /// Returns whether requests may go to the server at `now`.
    pub fn is_available(&self, now: Instant) -> bool {
        !self.passive.is_ejected(now) && self.active.as_ref().is_none_or(ActiveHealth::is_healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: PassiveHealthParams = PassiveHealthParams {
        max_failures: 3,
        window: Duration::from_secs(10),
        ejection: Duration::from_secs(30),
        max_ejection: Duration::from_secs(100),
    };

    fn secs(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn passive_ejects_after_failures_in_window() {
        let start = Instant::now();
        let mut health = PassiveHealth::new(PARAMS);
        assert!(!health.record_failure(secs(start, 0)));
        assert!(!health.record_failure(secs(start, 5)));
        assert!(!health.is_ejected(secs(start, 5)));
        assert!(
            health.record_failure(secs(start, 10)),
            "third failure within 10 s"
        );
        assert!(health.is_ejected(secs(start, 10)));
        assert!(health.is_ejected(secs(start, 39)));
        assert!(!health.is_ejected(secs(start, 40)), "ejection lasts 30 s");
    }

    #[test]
    fn passive_failures_spread_out_never_eject() {
        let start = Instant::now();
        let mut health = PassiveHealth::new(PARAMS);
        for second in (0..100).step_by(6) {
            assert!(!health.record_failure(secs(start, second)), "at {second} s");
        }
        assert!(!health.is_ejected(secs(start, 100)));
    }

    #[test]
    fn passive_window_slides() {
        // Failures at 0, 8, 12 and 14: no three within 10 s until 14 (8, 12, 14).
        let start = Instant::now();
        let mut health = PassiveHealth::new(PARAMS);
        assert!(!health.record_failure(secs(start, 0)));
        assert!(!health.record_failure(secs(start, 8)));
        assert!(!health.record_failure(secs(start, 12)));
        assert!(health.record_failure(secs(start, 14)));
    }

    #[test]
    fn passive_success_keeps_failure_count() {
        // The rule counts failures in a window, not failures in a row.
        let start = Instant::now();
        let mut health = PassiveHealth::new(PARAMS);
        health.record_failure(secs(start, 0));
        health.record_success(secs(start, 1));
        health.record_failure(secs(start, 2));
        health.record_success(secs(start, 3));
        assert!(health.record_failure(secs(start, 4)));
    }

    #[test]
    fn passive_backoff_doubles_to_max() {
        let start = Instant::now();
        let mut health = PassiveHealth::new(PARAMS);
        for second in 0..3 {
            health.record_failure(secs(start, second));
        }
        let mut ejected_at = secs(start, 2);
        // Each ejection ends, and the first request on probation fails again.
        for expected in [30, 60, 100, 100] {
            let until = health.ejected_until().unwrap();
            assert_eq!(until - ejected_at, Duration::from_secs(expected));
            assert!(
                !health.record_failure(until - Duration::from_millis(1)),
                "ignored while ejected"
            );
            ejected_at = until;
            assert!(
                health.record_failure(until),
                "one failure on probation ejects again"
            );
        }
    }

    #[test]
    fn passive_success_resets_backoff() {
        let start = Instant::now();
        let mut health = PassiveHealth::new(PARAMS);
        for second in 0..3 {
            health.record_failure(secs(start, second));
        }
        let until = health.ejected_until().unwrap();
        assert!(health.record_failure(until));
        let until = health.ejected_until().unwrap();
        health.record_success(until);
        assert!(!health.is_ejected(until));

        // Out of probation, one failure is not enough and the next ejection is 30 s again.
        assert!(!health.record_failure(until));
        assert!(!health.record_failure(until + Duration::from_secs(1)));
        let third = until + Duration::from_secs(2);
        assert!(health.record_failure(third));
        assert_eq!(
            health.ejected_until().unwrap() - third,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn passive_success_while_ejected_ignored() {
        let start = Instant::now();
        let mut health = PassiveHealth::new(PARAMS);
        for second in 0..3 {
            health.record_failure(secs(start, second));
        }
        health.record_success(secs(start, 5));
        let until = health.ejected_until().unwrap();
        assert!(
            health.record_failure(until),
            "still on probation after the ejection"
        );
        assert_eq!(
            health.ejected_until().unwrap() - until,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn passive_zero_failures_disables() {
        let start = Instant::now();
        let mut health = PassiveHealth::new(PassiveHealthParams {
            max_failures: 0,
            ..PARAMS
        });
        for second in 0..50 {
            assert!(!health.record_failure(secs(start, second)));
        }
        assert!(!health.is_ejected(secs(start, 50)));
    }

    #[test]
    fn passive_single_failure_threshold() {
        let start = Instant::now();
        let mut health = PassiveHealth::new(PassiveHealthParams {
            max_failures: 1,
            ..PARAMS
        });
        assert!(health.record_failure(start));
        assert!(health.is_ejected(start));
    }

    #[test]
    fn active_thresholds() {
        let mut health = ActiveHealth::new(2, 3);
        assert!(health.is_healthy(), "starts healthy");
        let steps: [(bool, Option<HealthChange>, bool); 10] = [
            (false, None, true),
            (false, None, true),
            (true, None, true),
            (false, None, true),
            (false, None, true),
            (false, Some(HealthChange::BecameUnhealthy), false),
            (true, None, false),
            (false, None, false),
            (true, None, false),
            (true, Some(HealthChange::BecameHealthy), true),
        ];
        for (step, (passed, change, healthy)) in steps.into_iter().enumerate() {
            assert_eq!(health.record(passed), change, "step {step}");
            assert_eq!(health.is_healthy(), healthy, "step {step}");
        }
    }

    #[test]
    fn active_zero_threshold_acts_as_one() {
        let mut health = ActiveHealth::new(0, 0);
        assert_eq!(health.record(false), Some(HealthChange::BecameUnhealthy));
        assert_eq!(health.record(true), Some(HealthChange::BecameHealthy));
    }

    #[test]
    fn active_probe_status_checked() {
        let expected = [200, 204];
        let cases: [(Result<u16, ProbeError>, bool); 4] = [
            (Ok(200), true),
            (Ok(204), true),
            (Ok(503), false),
            (Err(ProbeError::TimedOut), false),
        ];
        for (result, passed) in cases {
            let mut health = ActiveHealth::new(1, 1);
            let change = health.record_probe(&result, &expected);
            assert_eq!(health.is_healthy(), passed, "{result:?}");
            assert_eq!(change.is_some(), !passed, "{result:?}");
        }
    }

    #[test]
    fn server_available_needs_both() {
        let start = Instant::now();
        let mut server = ServerHealth {
            passive: PassiveHealth::new(PARAMS),
            active: Some(ActiveHealth::new(1, 1)),
        };
        assert!(server.is_available(start));

        server.active.as_mut().unwrap().record(false);
        assert!(!server.is_available(start), "probes failed");
        server.active.as_mut().unwrap().record(true);
        assert!(server.is_available(start));

        for second in 0..3 {
            server.passive.record_failure(secs(start, second));
        }
        assert!(!server.is_available(secs(start, 3)), "ejected");
        assert!(server.is_available(secs(start, 32)), "ejection over");

        server.active = None;
        assert!(server.is_available(secs(start, 32)));
    }
}

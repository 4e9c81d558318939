//! Logging helpers shared by the workers.

use std::time::{Duration, Instant};

/// Shortest interval between two log lines about the same repeated condition (such as the
/// connection limit); the lines in between are counted and the count is logged with the next.
pub const REPEATED_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Lets one log line through per interval and counts the ones it holds back.
pub struct RateLimitedLog {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> RateLimitedLog {
        RateLimitedLog {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Returns `Some(number of lines held back since the last one)` when a line may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_log_counts_held_lines() {
        let mut log = RateLimitedLog::new(Duration::from_millis(50));
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), None);
        assert_eq!(log.allow(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(log.allow(), Some(2));
        assert_eq!(log.allow(), None);
    }
}

//! Deadlines for I/O operations, with one reusable timer per direction of a connection.
//!
//! `monoio::time::timeout` creates a `Sleep` (640 bytes with 128-byte alignment in monoio
//! 0.2.4) for every operation, inserts it into the worker's timer wheel on its first poll and
//! removes it again when dropped. Every future that contains one grows by that size, and rustc
//! copies it when the future is created and moved. An `IoTimer` keeps one `Sleep` for all the
//! operations of one direction (reading from the client, writing to it, and the same for the
//! upstream), which run one at a time, and moves its wheel entry only when it must.
//!
//! Each operation has its own deadline. The wheel entry is left armed for the earliest deadline
//! since it last fired, so an operation that ends in time does no timer work beyond a clock
//! read (in `limit`) and two comparisons. When the entry fires before the running operation's
//! own deadline, the operation re-arms it for that deadline and waits on. An operation
//! therefore times out when `monoio::time::timeout` with the same deadline would: at the first
//! millisecond tick of the wheel at or after the deadline. The price is an extra wake-up of the
//! connection's task whenever an entry fires before the deadline of the operation it bounds.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::time::Sleep;
use pin_project_lite::pin_project;

pin_project! {
    /// A timer that bounds the operations of one direction of a connection, one at a time.
    ///
    /// Its `Sleep` is created by the first operation, so a direction that is never used costs
    /// nothing in the timer wheel. All operations must run on the task that owns the timer,
    /// because the `Sleep` keeps the first waker it is polled with until it fires.
    #[derive(Default)]
    pub struct IoTimer {
        #[pin]
        sleep: Option<Sleep>,
    }
}

/// The error of an operation that did not finish by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl IoTimer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bounds `op` to `limit` from now.
    pub fn limit<F: Future>(self: Pin<&mut Self>, limit: Duration, op: F) -> Bounded<'_, F> {
        self.until(Instant::now() + limit, op)
    }

    /// Bounds `op` to finish by `deadline`. The returned future yields `Err(TimedOut)` once the
    /// deadline has passed and `op` is still pending, and `op` is then dropped with it.
    pub fn until<F: Future>(self: Pin<&mut Self>, deadline: Instant, op: F) -> Bounded<'_, F> {
        let mut slot = self.project().sleep;
        match slot.as_mut().as_pin_mut() {
            None => slot.set(Some(monoio::time::sleep_until(deadline.into()))),
            // An entry armed for an earlier deadline fires early, and `Bounded` re-arms it then.
            // One armed for a later deadline would fire too late, so it moves now.
            Some(sleep) => {
                if sleep.is_elapsed() || sleep.deadline().into_std() > deadline {
                    sleep.reset(deadline.into());
                }
            }
        }
        let sleep = slot.as_pin_mut().expect("the timer's Sleep was set above");
        Bounded {
            op,
            sleep,
            deadline,
        }
    }

    /// Completes at `deadline`.
    pub async fn sleep_until(self: Pin<&mut Self>, deadline: Instant) {
        let _ = self.until(deadline, std::future::pending::<()>()).await;
    }
}

pin_project! {
    /// An operation bounded by a deadline, from `IoTimer::until` or `IoTimer::limit`.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Bounded<'t, F> {
        #[pin]
        op: F,
        sleep: Pin<&'t mut Sleep>,
        deadline: Instant,
    }
}

impl<F: Future> Future for Bounded<'_, F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.op.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        // The loop ends: the wheel fires an entry only at a tick at or after its deadline, so
        // an entry re-armed for a deadline still in the future is pending when polled again.
        while this.sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= *this.deadline {
                return Poll::Ready(Err(TimedOut));
            }
            this.sleep.as_mut().reset((*this.deadline).into());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;
    use std::pin::pin;

    use super::*;

    /// Slack allowed past a deadline before a test fails, generous for a loaded machine.
    const LATE: Duration = Duration::from_millis(400);

    fn run<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("build a monoio runtime")
            .block_on(future)
    }

    /// Awaits an operation that never finishes under `limit` and returns how long it took to
    /// time out.
    async fn time_out(timer: Pin<&mut IoTimer>, limit: Duration) -> Duration {
        let start = Instant::now();
        let result = timer.limit(limit, pending::<()>()).await;
        assert_eq!(result, Err(TimedOut));
        start.elapsed()
    }

    fn assert_within(elapsed: Duration, limit: Duration) {
        assert!(
            elapsed >= limit,
            "timed out after {elapsed:?}, before {limit:?}"
        );
        assert!(
            elapsed < limit + LATE,
            "timed out after {elapsed:?}, long after {limit:?}"
        );
    }

    #[test]
    fn fires_after_limit_without_progress() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            for limit_ms in [1, 20, 50] {
                let limit = Duration::from_millis(limit_ms);
                assert_within(time_out(timer.as_mut(), limit).await, limit);
            }
        });
    }

    #[test]
    fn finished_operation_returns_output() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            let ready = timer.as_mut().limit(Duration::from_millis(10), async { 7 });
            assert_eq!(ready.await, Ok(7));
            let slow = async {
                monoio::time::sleep(Duration::from_millis(5)).await;
                8
            };
            assert_eq!(timer.limit(Duration::from_millis(200), slow).await, Ok(8));
        });
    }

    #[test]
    fn steady_progress_never_times_out() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            let limit = Duration::from_millis(30);
            let start = Instant::now();
            // Each step takes a third of the limit, and together they take four limits.
            for step in 0..12 {
                let op = monoio::time::sleep(Duration::from_millis(10));
                let result = timer.as_mut().limit(limit, op).await;
                assert_eq!(result, Ok(()), "step {step} timed out");
            }
            assert!(start.elapsed() >= 4 * limit);
        });
    }

    #[test]
    fn early_entry_rearms_for_later_deadline() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            // Arms the entry for 20 ms from now, then finishes before it fires.
            let short = Duration::from_millis(20);
            let op = monoio::time::sleep(Duration::from_millis(2));
            assert_eq!(timer.as_mut().limit(short, op).await, Ok(()));
            // The entry fires at the old deadline, which must not end this operation.
            let long = Duration::from_millis(80);
            assert_within(time_out(timer.as_mut(), long).await, long);
        });
    }

    #[test]
    fn later_entry_moves_to_earlier_deadline() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            let op = monoio::time::sleep(Duration::from_millis(2));
            assert_eq!(
                timer.as_mut().limit(Duration::from_secs(2), op).await,
                Ok(())
            );
            let short = Duration::from_millis(20);
            assert_within(time_out(timer.as_mut(), short).await, short);
        });
    }

    #[test]
    fn entry_fired_while_unused_rearms() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            let op = monoio::time::sleep(Duration::from_millis(2));
            assert_eq!(
                timer.as_mut().limit(Duration::from_millis(10), op).await,
                Ok(())
            );
            // The entry fires while no operation runs.
            monoio::time::sleep(Duration::from_millis(30)).await;
            let limit = Duration::from_millis(20);
            assert_within(time_out(timer.as_mut(), limit).await, limit);
        });
    }

    #[test]
    fn dropped_operation_leaves_timer_usable() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            {
                let mut bounded = pin!(
                    timer
                        .as_mut()
                        .limit(Duration::from_millis(10), pending::<()>())
                );
                let polled =
                    std::future::poll_fn(|cx| Poll::Ready(bounded.as_mut().poll(cx))).await;
                assert!(polled.is_pending());
            }
            let limit = Duration::from_millis(25);
            assert_within(time_out(timer.as_mut(), limit).await, limit);
        });
    }

    #[test]
    fn sleep_until_waits_for_deadline() {
        run(async {
            let mut timer = pin!(IoTimer::new());
            for delay_ms in [0, 15, 40] {
                let delay = Duration::from_millis(delay_ms);
                let start = Instant::now();
                timer.as_mut().sleep_until(start + delay).await;
                assert_within(start.elapsed(), delay);
            }
        });
    }
}

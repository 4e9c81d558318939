//! Heap allocations of the per-request calls of the traffic module, counted per thread by a
//! wrapping global allocator. Each test warms a structure up, then counts the allocations of
//! many calls in steady state, which must be none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ringway::traffic::acl::Acl;
use ringway::traffic::balance::{Balancer, PickRequest, Policy, ServerInfo, find_cookie};
use ringway::traffic::breaker::{BreakerParams, CircuitBreaker};
use ringway::traffic::health::{ActiveHealth, PassiveHealth, PassiveHealthParams, ServerHealth};
use ringway::traffic::limiter::{
    KeyedLimiter, LimitParams, MAX_LIMITER_KEYS, address_key, write_rate_limit_headers,
};
use ringway::traffic::retry::{FailureStage, RetryBudget, retryable};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with` fails only while the thread is being torn down; those allocations do not
    // belong to a measurement.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as for `dealloc`, and `new_size` comes from the caller's valid request.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Calls measured per test.
const MEASURED_CALLS: u64 = 10_000;

/// Returns the allocations `work` makes on this thread.
fn allocations(work: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

fn servers(count: usize) -> Vec<ServerInfo> {
    (0..count)
        .map(|index| ServerInfo {
            weight: index as u32 + 1,
            key: format!("10.0.0.{index}:8080"),
        })
        .collect()
}

#[test]
fn balancer_picks_without_allocating() {
    let policies = [
        Policy::RoundRobin,
        Policy::WeightedRoundRobin,
        Policy::LeastConnections,
        Policy::PowerOfTwo,
        Policy::Hash,
        Policy::StickyCookie,
    ];
    let servers = servers(8);
    for policy in policies {
        let mut balancer = Balancer::new(policy, &servers, 1).unwrap();
        let cookie = balancer.cookie_value(3).to_vec();
        let header = [b"a=1; ringway_sticky=".as_slice(), &cookie].concat();
        let counted = allocations(|| {
            for call in 0..MEASURED_CALLS {
                let sticky = find_cookie(&header, b"ringway_sticky");
                let key = call.to_le_bytes();
                let request = PickRequest {
                    hash_key: Some(&key),
                    sticky,
                };
                let pick = balancer.pick(&request, |server| server != 5).unwrap();
                balancer.started(pick.server);
                balancer.finished(pick.server);
            }
        });
        assert_eq!(counted, 0, "{policy:?}");
    }
}

#[test]
fn limiter_recurring_keys_without_allocating() {
    let start = Instant::now();
    let params = LimitParams::per_worker(100.0, 50, 2);
    let mut limiter = KeyedLimiter::new(params, vec![b"trusted".to_vec().into_boxed_slice()]);
    let keys: Vec<[u8; 16]> = (0..64u8)
        .map(|i| address_key(IpAddr::from([10, 0, 0, i])))
        .collect();
    for key in &keys {
        limiter.check(key, start);
    }
    let mut header_buf = Vec::with_capacity(256);
    let counted = allocations(|| {
        for call in 0..MEASURED_CALLS {
            let now = start + Duration::from_micros(call * 100);
            let decision = limiter.check(&keys[(call % 64) as usize], now);
            header_buf.clear();
            write_rate_limit_headers(&decision, &mut header_buf);
            limiter.check(b"trusted", now);
        }
    });
    assert_eq!(counted, 0);
}

#[test]
fn limiter_full_table_churn_bounded() {
    // New keys may allocate while the table grows; once it is full, replacing keys must not.
    let start = Instant::now();
    let params = LimitParams::per_worker(10.0, 10, 1);
    let mut limiter = KeyedLimiter::new(params, Vec::new());
    let table_keys = MAX_LIMITER_KEYS as u64;
    for key in 0..table_keys * 4 {
        limiter.check(&key.to_le_bytes(), start);
    }
    let counted = allocations(|| {
        for key in table_keys * 4..table_keys * 8 {
            limiter.check(&key.to_le_bytes(), start);
        }
    });
    assert_eq!(counted, 0);
}

#[test]
fn health_breaker_retry_acl_without_allocating() {
    let start = Instant::now();
    let mut health = ServerHealth {
        passive: PassiveHealth::new(PassiveHealthParams {
            max_failures: 5,
            window: Duration::from_secs(10),
            ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }),
        active: Some(ActiveHealth::new(2, 3)),
    };
    let mut breaker = CircuitBreaker::new(
        BreakerParams {
            failure_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
            break_duration: Duration::from_secs(30),
            half_open_requests: 1,
        },
        start,
    );
    let mut budget = RetryBudget::new(0.2, 3, start);
    let acl = Acl::parse(&["10.0.0.0/8", "::1"], &["10.1.0.0/16"]).unwrap();
    let client: IpAddr = "::ffff:10.2.3.4".parse().unwrap();

    let counted = allocations(|| {
        for call in 0..MEASURED_CALLS {
            let now = start + Duration::from_millis(call * 7);
            let ok = call % 3 != 0;
            if health.is_available(now) && breaker.allow(now) && acl.permits(client) {
                budget.record_request(now);
                if ok {
                    health.passive.record_success(now);
                } else {
                    health.passive.record_failure(now);
                    if retryable(b"GET", FailureStage::ConnectFailed) {
                        budget.can_retry(now);
                    }
                }
                breaker.record(ok, now);
            }
            health.active.as_mut().unwrap().record(ok);
        }
    });
    assert_eq!(counted, 0);
}

#[test]
fn counter_sees_allocations() {
    let counted = allocations(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(16));
    });
    assert_eq!(counted, 1);
}

//! Per-worker counters and their Prometheus text rendering.
//!
//! Each worker counts in plain `Cell`s that only its own thread touches, so the request path
//! pays no lock and no atomic. A scrape requests a [`WorkerSnapshot`] from every worker over its
//! control channel (see `control`), and [`render`] sums the snapshots into the Prometheus text
//! exposition format, version 0.0.4.
//!
//! Route and upstream counters are kept by name, not by index, so that they stay monotonic
//! across reloads: a route that keeps its name and upstream keeps its counters.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Upper bounds, in seconds, of the request and upstream latency histogram buckets. They
/// follow the Prometheus client libraries' defaults from 5 ms to 10 s, with 1 ms and 2.5 ms in
/// front because a proxy on a local network completes many requests in less than 5 ms.
pub const LATENCY_BUCKETS_SECONDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `LATENCY_BUCKETS_SECONDS` in microseconds, for comparisons on the request path.
const LATENCY_BUCKETS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Buckets of a latency histogram: one per bound plus `+Inf`.
const BUCKET_COUNT: usize = LATENCY_BUCKETS_MICROS.len() + 1;

/// Status classes counted per route: index 0 is a request that got no response (the client
/// left, or the connection broke before a status line), 1 to 5 are 1xx to 5xx.
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Returns the index in `STATUS_CLASSES` of a status code, 0 for none.
pub fn status_class(status: u16) -> usize {
    match status / 100 {
        class @ 1..=5 => class as usize,
        _ => 0,
    }
}

/// A latency histogram with the fixed `LATENCY_BUCKETS_SECONDS` bounds.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative (Prometheus wants cumulative; `render` sums).
    buckets: [Cell<u64>; BUCKET_COUNT],
    sum_micros: Cell<u64>,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKET_COUNT - 1);
        add(&self.buckets[bucket], 1);
        add(&self.sum_micros, micros);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|index| self.buckets[index].get()),
            sum_micros: self.sum_micros.get(),
        }
    }
}

/// The values of a `Histogram` at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; BUCKET_COUNT],
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn merge(&mut self, other: &HistogramSnapshot) {
        for (total, value) in self.buckets.iter_mut().zip(other.buckets) {
            *total += value;
        }
        self.sum_micros += other.sum_micros;
    }
}

/// Adds `amount` to a counter, wrapping like Prometheus counters never need to in practice.
pub fn add(counter: &Cell<u64>, amount: u64) {
    counter.set(counter.get().wrapping_add(amount));
}

/// Counters of one route, keyed by the route's name and upstream name.
pub struct RouteMetrics {
    pub route: String,
    pub upstream: String,
    /// Requests per `STATUS_CLASSES` entry.
    pub requests: [Cell<u64>; STATUS_CLASSES.len()],
    /// Requests the route's rate limiter rejected.
    pub limiter_rejections: Cell<u64>,
}

/// Counters of one upstream group, keyed by its name.
pub struct UpstreamMetrics {
    pub upstream: String,
    /// From the start of an upstream attempt (taking or opening a connection) to the end of the
    /// final response head.
    pub response_latency: Histogram,
    /// Requests that took an idle pooled connection.
    pub pool_hits: Cell<u64>,
    /// Requests that had to open a new connection.
    pub pool_misses: Cell<u64>,
    /// Attempts sent to another server after a connect failure.
    pub retries: Cell<u64>,
    /// Servers ejected by passive health checks.
    pub ejections: Cell<u64>,
    pub breaker_opens: Cell<u64>,
}

/// Everything one worker counts. Only the worker's own thread touches it.
#[derive(Default)]
pub struct WorkerMetrics {
    /// Route counters by (route, upstream) name; entries are added on reload, never removed,
    /// so the list grows only with names that were ever configured.
    pub routes: RefCell<Vec<RouteMetrics>>,
    /// Upstream counters by name, grown like `routes`.
    pub upstreams: RefCell<Vec<UpstreamMetrics>>,
    /// Requests that matched no route or failed before routing (such as a malformed head).
    pub unrouted: [Cell<u64>; STATUS_CLASSES.len()],
    pub request_latency: Histogram,
    /// Request head and body bytes read from clients.
    pub bytes_received: Cell<u64>,
    /// Response head and body bytes written to clients.
    pub bytes_sent: Cell<u64>,
    /// Upstream connections carrying a request now.
    pub upstream_connections_active: Cell<u64>,
    /// Access log lines dropped because the writer thread lagged behind.
    pub access_log_dropped: Cell<u64>,
}

impl WorkerMetrics {
    /// Returns the index of the counters for (route, upstream), adding them when new.
    pub fn route_index(&self, route: &str, upstream: &str) -> usize {
        let mut routes = self.routes.borrow_mut();
        if let Some(index) = routes
            .iter()
            .position(|entry| entry.route == route && entry.upstream == upstream)
        {
            return index;
        }
        routes.push(RouteMetrics {
            route: route.to_owned(),
            upstream: upstream.to_owned(),
            requests: Default::default(),
            limiter_rejections: Cell::new(0),
        });
        routes.len() - 1
    }

    /// Returns the index of the counters for an upstream group, adding them when new.
    pub fn upstream_index(&self, upstream: &str) -> usize {
        let mut upstreams = self.upstreams.borrow_mut();
        if let Some(index) = upstreams
            .iter()
            .position(|entry| entry.upstream == upstream)
        {
            return index;
        }
        upstreams.push(UpstreamMetrics {
            upstream: upstream.to_owned(),
            response_latency: Histogram::default(),
            pool_hits: Cell::new(0),
            pool_misses: Cell::new(0),
            retries: Cell::new(0),
            ejections: Cell::new(0),
            breaker_opens: Cell::new(0),
        });
        upstreams.len() - 1
    }

    /// Counts one finished request.
    pub fn count_request(&self, route: Option<usize>, status: u16, duration: Duration) {
        let class = status_class(status);
        match route {
            Some(index) => {
                if let Some(entry) = self.routes.borrow().get(index) {
                    add(&entry.requests[class], 1);
                }
            }
            None => add(&self.unrouted[class], 1),
        }
        self.request_latency.observe(duration);
    }

    /// Runs `f` on the counters of upstream `index`, if they exist.
    pub fn with_upstream(&self, index: usize, f: impl FnOnce(&UpstreamMetrics)) {
        if let Some(entry) = self.upstreams.borrow().get(index) {
            f(entry);
        }
    }
}

/// Gauges a worker reads from its other state when it takes a snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerGauges {
    pub client_connections_active: u64,
    pub client_connections_idle: u64,
    pub upstream_connections_idle: u64,
    pub buffers_in_use: u64,
    pub buffers_capacity: u64,
    pub buffer_waits: u64,
}

/// The values of one worker's counters and gauges at one moment, sent to the thread that
/// renders a scrape.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    pub worker: usize,
    pub driver: &'static str,
    pub generation: u64,
    /// (route, upstream, requests per status class, limiter rejections).
    pub routes: Vec<(String, String, [u64; STATUS_CLASSES.len()], u64)>,
    pub upstreams: Vec<UpstreamSnapshot>,
    pub unrouted: [u64; STATUS_CLASSES.len()],
    pub request_latency: HistogramSnapshot,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_connections_active: u64,
    pub access_log_dropped: u64,
    pub gauges: WorkerGauges,
}

/// The values of one `UpstreamMetrics` at one moment.
#[derive(Debug, Clone, Default)]
pub struct UpstreamSnapshot {
    pub upstream: String,
    pub response_latency: HistogramSnapshot,
    pub pool_hits: u64,
    pub pool_misses: u64,
    pub retries: u64,
    pub ejections: u64,
    pub breaker_opens: u64,
}

impl WorkerMetrics {
    /// Copies every counter into a snapshot; the caller adds identity and gauges.
    pub fn snapshot(&self) -> WorkerSnapshot {
        let routes = self
            .routes
            .borrow()
            .iter()
            .map(|entry| {
                (
                    entry.route.clone(),
                    entry.upstream.clone(),
                    std::array::from_fn(|class| entry.requests[class].get()),
                    entry.limiter_rejections.get(),
                )
            })
            .collect();
        let upstreams = self
            .upstreams
            .borrow()
            .iter()
            .map(|entry| UpstreamSnapshot {
                upstream: entry.upstream.clone(),
                response_latency: entry.response_latency.snapshot(),
                pool_hits: entry.pool_hits.get(),
                pool_misses: entry.pool_misses.get(),
                retries: entry.retries.get(),
                ejections: entry.ejections.get(),
                breaker_opens: entry.breaker_opens.get(),
            })
            .collect();
        WorkerSnapshot {
            routes,
            upstreams,
            unrouted: std::array::from_fn(|class| self.unrouted[class].get()),
            request_latency: self.request_latency.snapshot(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            upstream_connections_active: self.upstream_connections_active.get(),
            access_log_dropped: self.access_log_dropped.get(),
            ..WorkerSnapshot::default()
        }
    }
}

/// Process-wide values that the control thread keeps, not the workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessValues {
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub draining: bool,
}

/// Renders the snapshots of every worker as Prometheus text format 0.0.4.
pub fn render(workers: &[WorkerSnapshot], process: ProcessValues) -> String {
    let mut out = String::with_capacity(8192);

    header(
        &mut out,
        "ringway_worker_info",
        "gauge",
        "Worker threads and their I/O driver; the value is always 1.",
    );
    for worker in workers {
        let _ = writeln!(
            out,
            "ringway_worker_info{{worker=\"{}\",driver=\"{}\"}} 1",
            worker.worker, worker.driver
        );
    }
    gauge(
        &mut out,
        "ringway_config_generation",
        "Generation of the running configuration; 1 at start, one more per successful reload.",
        process.generation,
    );
    header(
        &mut out,
        "ringway_config_reloads_total",
        "counter",
        "Configuration reloads by result.",
    );
    let _ = writeln!(
        out,
        "ringway_config_reloads_total{{result=\"ok\"}} {}",
        process.reloads_ok
    );
    let _ = writeln!(
        out,
        "ringway_config_reloads_total{{result=\"failed\"}} {}",
        process.reloads_failed
    );
    gauge(
        &mut out,
        "ringway_draining",
        "1 while ringway drains connections before it exits, else 0.",
        u64::from(process.draining),
    );

    render_requests(&mut out, workers);
    render_request_latency(&mut out, workers);
    render_upstreams(&mut out, workers);

    let sum = |value: fn(&WorkerSnapshot) -> u64| workers.iter().map(value).sum::<u64>();
    counter(
        &mut out,
        "ringway_received_bytes_total",
        "Request head and body bytes read from clients.",
        sum(|w| w.bytes_received),
    );
    counter(
        &mut out,
        "ringway_sent_bytes_total",
        "Response head and body bytes written to clients.",
        sum(|w| w.bytes_sent),
    );
    gauge(
        &mut out,
        "ringway_client_connections_active",
        "Client connections with a request in progress.",
        sum(|w| {
            w.gauges
                .client_connections_active
                .saturating_sub(w.gauges.client_connections_idle)
        }),
    );
    gauge(
        &mut out,
        "ringway_client_connections_idle",
        "Client connections waiting for their next request.",
        sum(|w| w.gauges.client_connections_idle),
    );
    gauge(
        &mut out,
        "ringway_upstream_connections_active",
        "Upstream connections carrying a request.",
        sum(|w| w.upstream_connections_active),
    );
    gauge(
        &mut out,
        "ringway_upstream_connections_idle",
        "Idle keep-alive upstream connections in the pools.",
        sum(|w| w.gauges.upstream_connections_idle),
    );
    gauge(
        &mut out,
        "ringway_buffers_in_use",
        "Pooled I/O buffers leased now.",
        sum(|w| w.gauges.buffers_in_use),
    );
    gauge(
        &mut out,
        "ringway_buffers_capacity",
        "Pooled I/O buffers the workers may lease at most (buffers.per_worker times workers).",
        sum(|w| w.gauges.buffers_capacity),
    );
    counter(
        &mut out,
        "ringway_buffer_waits_total",
        "Times a request waited for a pooled buffer.",
        sum(|w| w.gauges.buffer_waits),
    );
    counter(
        &mut out,
        "ringway_access_log_dropped_lines_total",
        "Access log lines dropped because the writer lagged behind.",
        sum(|w| w.access_log_dropped),
    );
    out
}

fn render_requests(out: &mut String, workers: &[WorkerSnapshot]) {
    let mut requests: BTreeMap<(&str, &str), [u64; STATUS_CLASSES.len()]> = BTreeMap::new();
    let mut rejections: BTreeMap<&str, u64> = BTreeMap::new();
    let unrouted = requests.entry(("", "")).or_default();
    for worker in workers {
        for (total, value) in unrouted.iter_mut().zip(worker.unrouted) {
            *total += value;
        }
    }
    for worker in workers {
        for (route, upstream, counts, rejected) in &worker.routes {
            let entry = requests.entry((route, upstream)).or_default();
            for (total, value) in entry.iter_mut().zip(counts) {
                *total += value;
            }
            *rejections.entry(route).or_default() += rejected;
        }
    }
    header(
        out,
        "ringway_requests_total",
        "counter",
        "Finished requests by route, upstream and status class; empty route and upstream labels are requests that matched no route.",
    );
    for ((route, upstream), counts) in &requests {
        for (class, count) in STATUS_CLASSES.iter().zip(counts) {
            let _ = writeln!(
                out,
                "ringway_requests_total{{route=\"{}\",upstream=\"{}\",status_class=\"{class}\"}} {count}",
                escape_label(route),
                escape_label(upstream)
            );
        }
    }
    header(
        out,
        "ringway_limiter_rejections_total",
        "counter",
        "Requests rejected by a rate limiter, by route.",
    );
    for (route, count) in &rejections {
        let _ = writeln!(
            out,
            "ringway_limiter_rejections_total{{route=\"{}\"}} {count}",
            escape_label(route)
        );
    }
}

fn render_request_latency(out: &mut String, workers: &[WorkerSnapshot]) {
    let mut total = HistogramSnapshot::default();
    for worker in workers {
        total.merge(&worker.request_latency);
    }
    header(
        out,
        "ringway_request_duration_seconds",
        "histogram",
        "Time from a complete request head to the end of the response.",
    );
    histogram(out, "ringway_request_duration_seconds", "", &total);
}

fn render_upstreams(out: &mut String, workers: &[WorkerSnapshot]) {
    let mut upstreams: BTreeMap<&str, UpstreamSnapshot> = BTreeMap::new();
    for worker in workers {
        for entry in &worker.upstreams {
            let total = upstreams.entry(&entry.upstream).or_default();
            total.response_latency.merge(&entry.response_latency);
            total.pool_hits += entry.pool_hits;
            total.pool_misses += entry.pool_misses;
            total.retries += entry.retries;
            total.ejections += entry.ejections;
            total.breaker_opens += entry.breaker_opens;
        }
    }
    header(
        out,
        "ringway_upstream_response_duration_seconds",
        "histogram",
        "Time from the start of an upstream attempt to the end of the response head, by upstream.",
    );
    for (name, entry) in &upstreams {
        let labels = format!("upstream=\"{}\",", escape_label(name));
        histogram(
            out,
            "ringway_upstream_response_duration_seconds",
            &labels,
            &entry.response_latency,
        );
    }
    type Field = fn(&UpstreamSnapshot) -> u64;
    let counters: [(&str, &str, Field); 5] = [
        (
            "ringway_upstream_pool_hits_total",
            "Requests sent on an idle pooled upstream connection.",
            |e| e.pool_hits,
        ),
        (
            "ringway_upstream_pool_misses_total",
            "Requests that opened a new upstream connection.",
            |e| e.pool_misses,
        ),
        (
            "ringway_upstream_retries_total",
            "Requests sent again to an upstream after a failed attempt.",
            |e| e.retries,
        ),
        (
            "ringway_upstream_ejections_total",
            "Upstream servers ejected by health checks.",
            |e| e.ejections,
        ),
        (
            "ringway_upstream_breaker_opens_total",
            "Times an upstream's circuit breaker opened.",
            |e| e.breaker_opens,
        ),
    ];
    for (name, help, value) in counters {
        header(out, name, "counter", help);
        for (upstream, entry) in &upstreams {
            let _ = writeln!(
                out,
                "{name}{{upstream=\"{}\"}} {}",
                escape_label(upstream),
                value(entry)
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Writes the `_bucket`, `_sum` and `_count` lines of one histogram; `labels` is empty or ends
/// with a comma.
fn histogram(out: &mut String, name: &str, labels: &str, values: &HistogramSnapshot) {
    let mut cumulative = 0;
    for (index, count) in values.buckets.iter().enumerate() {
        cumulative += count;
        let bound = match LATENCY_BUCKETS_SECONDS.get(index) {
            Some(bound) => bound.to_string(),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
    }
    let labels = labels.trim_end_matches(',');
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", values.sum_micros as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {}", values.count());
}

/// Escapes a label value as the text format requires: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_match_in_both_units() {
        for (seconds, micros) in LATENCY_BUCKETS_SECONDS.iter().zip(LATENCY_BUCKETS_MICROS) {
            assert_eq!((seconds * 1e6).round() as u64, micros);
        }
    }

    #[test]
    fn status_classes() {
        let cases = [
            (0, "none"),
            (101, "1xx"),
            (200, "2xx"),
            (304, "3xx"),
            (404, "4xx"),
            (503, "5xx"),
            (600, "none"),
        ];
        for (status, class) in cases {
            assert_eq!(
                STATUS_CLASSES[status_class(status)],
                class,
                "status {status}"
            );
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 3);
        let mut out = String::new();
        histogram_text(&mut out, &snapshot);
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    fn histogram_text(out: &mut String, snapshot: &HistogramSnapshot) {
        histogram(out, "x", "", snapshot);
    }

    #[test]
    fn render_sums_workers() {
        let metrics = WorkerMetrics::default();
        let route = metrics.route_index("api", "origin");
        assert_eq!(metrics.route_index("api", "origin"), route);
        metrics.count_request(Some(route), 200, Duration::from_millis(1));
        metrics.count_request(None, 404, Duration::from_millis(1));
        let mut first = metrics.snapshot();
        first.worker = 0;
        let mut second = metrics.snapshot();
        second.worker = 1;
        let text = render(&[first, second], ProcessValues::default());
        assert!(
            text.contains(
                "ringway_requests_total{route=\"api\",upstream=\"origin\",status_class=\"2xx\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ringway_requests_total{route=\"\",upstream=\"\",status_class=\"4xx\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ringway_request_duration_seconds_count 4\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

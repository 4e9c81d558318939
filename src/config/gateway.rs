//! Validation of the gateway keys of routes and upstreams, and of `request_id`.
//!
//! Path templates, rewrite templates, CIDRs and header value templates are checked here only
//! for their type and characters. Their syntax belongs to the routing and traffic parsers.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::{
    ActiveHealth, Balance, Checker, Cidr, CircuitBreaker, ClientKey, HeaderMatch, HeaderRule,
    HeaderRuleKind, Health, Json, Object, PassiveHealth, QueryRules, RateLimit, RequestId, Retries,
    Rewrite, RoutePath, RouteTimeouts, StickyCookie, TIMEOUT_RANGE_MS, has_valid_percent_encoding,
    index_path, is_path_char, is_token_byte, key_path, quote,
};

pub(super) const UPSTREAM_KEYS: &[&str] = &[
    "servers",
    "max_idle_connections_per_server",
    "balance",
    "hash_key",
    "sticky_cookie",
    "health",
    "circuit_breaker",
    "retries",
];
pub(super) const ROUTE_KEYS: &[&str] = &[
    "path_prefix",
    "path",
    "host",
    "methods",
    "upstream",
    "name",
    "headers",
    "priority",
    "case_sensitive",
    "rewrite",
    "query",
    "request_headers",
    "response_headers",
    "timeouts",
    "rate_limit",
    "allow",
    "deny",
    "request_id_header",
];
const SERVER_KEYS: &[&str] = &["address", "weight"];
const STICKY_COOKIE_KEYS: &[&str] = &["name", "max_age_s"];
const HEALTH_KEYS: &[&str] = &["passive", "active"];
const PASSIVE_HEALTH_KEYS: &[&str] = &[
    "max_failures",
    "window_ms",
    "ejection_ms",
    "max_ejection_ms",
];
const ACTIVE_HEALTH_KEYS: &[&str] = &[
    "path",
    "interval_ms",
    "timeout_ms",
    "expected_status",
    "healthy_threshold",
    "unhealthy_threshold",
];
const CIRCUIT_BREAKER_KEYS: &[&str] = &[
    "failure_ratio",
    "window_ms",
    "min_requests",
    "break_ms",
    "half_open_requests",
];
const RETRY_KEYS: &[&str] = &["attempts", "budget_ratio", "min_per_second"];
const REWRITE_KEYS: &[&str] = &["path", "strip_prefix"];
const QUERY_KEYS: &[&str] = &["remove", "set"];
const HEADER_RULE_KEYS: &[&str] = &["set", "add", "remove", "replace", "value", "find", "with"];
const HEADER_RULE_ACTIONS: &[&str] = &["set", "add", "remove", "replace"];
const ROUTE_TIMEOUT_KEYS: &[&str] = &["connect_ms", "upstream_head_ms", "upstream_read_ms"];
const RATE_LIMIT_KEYS: &[&str] = &["requests_per_second", "burst", "key", "whitelist"];
const REQUEST_ID_KEYS: &[&str] = &["header", "generate"];

/// Accepted values of `upstreams.<name>.balance`.
pub const BALANCE_NAMES: [&str; 6] = [
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "power_of_two",
    "hash",
    "sticky_cookie",
];

/// Default weight of a server. Weights are relative, so 1 on every server is an even split.
pub const DEFAULT_SERVER_WEIGHT: u32 = 1;

/// Allowed server weights. Above 1000 to 1 the lighter server would see almost no traffic,
/// which is better written by removing it.
pub const SERVER_WEIGHT_RANGE: RangeInclusive<u32> = 1..=1000;

/// Default cookie name of `sticky_cookie`. The prefix keeps it apart from application cookies.
pub const DEFAULT_STICKY_COOKIE_NAME: &str = "ringway_sticky";

/// Default `sticky_cookie.max_age_s`: one hour, long enough for a session of work, short
/// enough that clients spread again after servers are added.
pub const DEFAULT_STICKY_COOKIE_MAX_AGE_S: u64 = 3600;

/// Allowed `sticky_cookie.max_age_s`. RFC 6265bis caps Max-Age at 400 days (34,560,000 s).
pub const STICKY_COOKIE_MAX_AGE_RANGE_S: RangeInclusive<u64> = 1..=34_560_000;

/// Default `health.passive.max_failures`: failures within the window that eject a server.
/// Five tolerates a few failed requests that a healthy but busy server also produces.
pub const DEFAULT_PASSIVE_MAX_FAILURES: u32 = 5;

/// Allowed `health.passive.max_failures`.
pub const PASSIVE_MAX_FAILURES_RANGE: RangeInclusive<u32> = 1..=10_000;

/// Default `health.passive.window_ms`, the period in which failures are counted.
pub const DEFAULT_PASSIVE_WINDOW_MS: u64 = 10_000;

/// Default `health.passive.ejection_ms`, the first ejection period. Envoy's outlier
/// detection uses 30 s as its base ejection time too.
pub const DEFAULT_PASSIVE_EJECTION_MS: u64 = 30_000;

/// Default `health.passive.max_ejection_ms`, the ceiling of repeated ejections (Envoy's
/// `max_ejection_time` default, 300 s).
pub const DEFAULT_PASSIVE_MAX_EJECTION_MS: u64 = 300_000;

/// Default `health.active.path`.
pub const DEFAULT_ACTIVE_HEALTH_PATH: &str = "/health";

/// Default `health.active.interval_ms`, the time between two probes of one server.
pub const DEFAULT_ACTIVE_INTERVAL_MS: u64 = 5_000;

/// Default `health.active.timeout_ms`, the time a probe may take. It must not exceed the
/// interval, so that probes of one server never overlap.
pub const DEFAULT_ACTIVE_TIMEOUT_MS: u64 = 2_000;

/// Default `health.active.expected_status`.
pub const DEFAULT_ACTIVE_EXPECTED_STATUS: u16 = 200;

/// Allowed status codes in `health.active.expected_status` (RFC 9110 section 15).
pub const STATUS_CODE_RANGE: RangeInclusive<u16> = 100..=599;

/// Default `health.active.healthy_threshold`: two good probes in a row bring a server back,
/// so one lucky probe of a flapping server does not.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;

/// Default `health.active.unhealthy_threshold`: three failed probes in a row eject a server,
/// so one lost probe does not.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;

/// Allowed health thresholds.
pub const HEALTH_THRESHOLD_RANGE: RangeInclusive<u32> = 1..=100;

/// Default `circuit_breaker.failure_ratio`: the breaker opens when half the requests fail.
pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;

/// Default `circuit_breaker.window_ms`, the period whose requests the ratio counts.
pub const DEFAULT_BREAKER_WINDOW_MS: u64 = 10_000;

/// Default `circuit_breaker.min_requests`: a window of fewer than 20 requests is too small a
/// sample to open the breaker.
pub const DEFAULT_BREAKER_MIN_REQUESTS: u32 = 20;

/// Allowed `circuit_breaker.min_requests`.
pub const BREAKER_MIN_REQUESTS_RANGE: RangeInclusive<u32> = 1..=1_000_000;

/// Default `circuit_breaker.break_ms`, how long an open breaker rejects requests.
pub const DEFAULT_BREAK_MS: u64 = 30_000;

/// Default `circuit_breaker.half_open_requests`, trial requests after the break.
pub const DEFAULT_HALF_OPEN_REQUESTS: u32 = 1;

/// Allowed `circuit_breaker.half_open_requests`.
pub const HALF_OPEN_REQUESTS_RANGE: RangeInclusive<u32> = 1..=1000;

/// Default `retries.attempts`: one retry on another server covers a single bad server.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 1;

/// Allowed `retries.attempts`. Each attempt may wait for a full connect timeout, so more
/// than 10 would keep a client waiting far longer than any timeout suggests.
pub const RETRY_ATTEMPTS_RANGE: RangeInclusive<u32> = 0..=10;

/// Default `retries.budget_ratio`: retries may add at most 20% to the requests sent, so that
/// retries cannot multiply the load on struggling upstreams. Linkerd's default is 0.2 too.
pub const DEFAULT_RETRY_BUDGET_RATIO: f64 = 0.2;

/// Default `retries.min_per_second`: retries always allowed, so that a quiet upstream still
/// gets retries. Linkerd's default is 10; 3 is more cautious.
pub const DEFAULT_RETRY_MIN_PER_SECOND: u32 = 3;

/// Allowed `retries.min_per_second`.
pub const RETRY_MIN_PER_SECOND_RANGE: RangeInclusive<u32> = 0..=100_000;

/// Default route priority. Routes of equal priority are tried most specific first.
pub const DEFAULT_ROUTE_PRIORITY: i32 = 0;

/// Default `case_sensitive`: paths are case-sensitive (RFC 3986 section 6.2.2.1).
pub const DEFAULT_CASE_SENSITIVE: bool = true;

/// Maximum length of a route name. Names appear in every log line of a request.
pub const MAX_ROUTE_NAME_BYTES: usize = 64;

/// Maximum `rate_limit.requests_per_second`. A single client above a million requests per
/// second is no longer a rate limit.
pub const MAX_REQUESTS_PER_SECOND: f64 = 1_000_000.0;

/// Allowed `rate_limit.burst`.
pub const RATE_LIMIT_BURST_RANGE: RangeInclusive<u32> = 1..=1_000_000;

/// Default request id header, the name most proxies and frameworks use.
pub const DEFAULT_REQUEST_ID_HEADER: &str = "X-Request-Id";

/// Default `request_id.generate`: requests without an id get one, so every log line of a
/// request can be correlated.
pub const DEFAULT_REQUEST_ID_GENERATE: bool = true;

/// Headers that header rules may not touch, because they carry message framing or
/// connection management that ringway itself writes (RFC 9112 sections 6 and 9.6).
pub const PROTECTED_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The gateway settings of an upstream, checked apart from its servers.
pub(super) struct UpstreamPolicies {
    pub balance: Balance,
    pub health: Health,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub retries: Retries,
}

/// The route settings beyond path, host, methods and upstream.
pub(super) struct RouteExtras {
    pub name: String,
    pub headers: Vec<HeaderMatch>,
    pub priority: i32,
    pub case_sensitive: bool,
    pub rewrite: Option<Rewrite>,
    pub query: QueryRules,
    pub request_headers: Vec<HeaderRule>,
    pub response_headers: Vec<HeaderRule>,
    pub timeouts: RouteTimeouts,
    pub rate_limit: Option<RateLimit>,
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    pub request_id_header: Option<String>,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        PassiveHealth {
            max_failures: DEFAULT_PASSIVE_MAX_FAILURES,
            window: Duration::from_millis(DEFAULT_PASSIVE_WINDOW_MS),
            ejection: Duration::from_millis(DEFAULT_PASSIVE_EJECTION_MS),
            max_ejection: Duration::from_millis(DEFAULT_PASSIVE_MAX_EJECTION_MS),
        }
    }
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            budget_ratio: DEFAULT_RETRY_BUDGET_RATIO,
            min_per_second: DEFAULT_RETRY_MIN_PER_SECOND,
        }
    }
}

/// Returns whether `name` is a field name: a non-empty HTTP token (RFC 9110 section 5.1).
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

/// Returns whether `value` can be sent as a field value: visible ASCII, spaces and tabs
/// (RFC 9110 section 5.5, without obs-text), so no CR or LF can split the header.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Returns whether `c` may appear in a query parameter name or value. `&` separates
/// parameters and `#` starts a fragment, so neither may appear; `=` may not appear in a name.
fn is_query_char(c: char, in_name: bool) -> bool {
    (is_path_char(c) || c == '?') && c != '&' && !(in_name && c == '=')
}

/// Returns whether `text` is an IP address or an address with a prefix length.
fn is_cidr(text: &str) -> bool {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        return false;
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    match prefix {
        None => true,
        Some(prefix) => {
            prefix.bytes().all(|b| b.is_ascii_digit())
                && prefix.parse::<u32>().is_ok_and(|length| length <= max)
        }
    }
}

impl Checker<'_> {
    fn optional<T>(
        &mut self,
        object: &Object<'_>,
        parent: &str,
        key: &str,
        default: T,
        check: impl FnOnce(&mut Self, &str, &Json) -> Option<T>,
    ) -> Option<T> {
        match object.get(key) {
            Some(value) => check(self, &key_path(parent, key), value),
            None => Some(default),
        }
    }

    fn integer_u32(
        &mut self,
        path: &str,
        value: &Json,
        range: &RangeInclusive<u32>,
    ) -> Option<u32> {
        let number = self.integer(path, value, (*range.start()).into(), (*range.end()).into())?;
        u32::try_from(number).ok()
    }

    fn duration_ms(&mut self, path: &str, value: &Json) -> Option<Duration> {
        self.integer_u64(path, value, &TIMEOUT_RANGE_MS)
            .map(Duration::from_millis)
    }

    /// Returns a number above `min` (or equal to it when `min_inclusive`) and at most `max`.
    /// Integers count as numbers here.
    fn number(
        &mut self,
        path: &str,
        value: &Json,
        min: f64,
        min_inclusive: bool,
        max: f64,
    ) -> Option<f64> {
        let lower = if min_inclusive { "from" } else { "above" };
        let fix = format!("use a number {lower} {min} up to {max}");
        let number = match value {
            Json::Integer(number) => *number as f64,
            Json::Float(number) => *number,
            other => {
                self.report_type(path, "a number", other, fix);
                return None;
            }
        };
        let below = if min_inclusive {
            number < min
        } else {
            number <= min
        };
        if below || number > max || !number.is_finite() {
            self.report(path, format!("value {number} is out of range"), fix);
            return None;
        }
        Some(number)
    }

    /// Returns a header name, reporting a value that is not an HTTP token.
    fn header_name(&mut self, path: &str, value: &Json) -> Option<String> {
        let name = self.string(path, value, "write a header name such as \"X-Request-Id\"")?;
        if !is_header_name(name) {
            self.report(
                path,
                format!(
                    "invalid header name {}: a header name is an HTTP token",
                    quote(name)
                ),
                "use letters, digits and !#$%&'*+-.^_`|~ only, for example \"X-Request-Id\"",
            );
            return None;
        }
        Some(name.to_owned())
    }

    fn header_value(&mut self, path: &str, value: &Json) -> Option<String> {
        let text = self.string(path, value, "write the value as a string")?;
        if !is_header_value(text) {
            self.report(
                path,
                format!(
                    "invalid header value {}: it contains a control or non-ASCII character",
                    quote(text)
                ),
                "use visible ASCII characters, spaces and tabs only, and percent-encode other text",
            );
            return None;
        }
        Some(text.to_owned())
    }

    /// Returns a [`ClientKey`] from `"client_address"` or `"header:NAME"`.
    fn client_key(&mut self, path: &str, value: &Json) -> Option<ClientKey> {
        let fix = "use \"client_address\" or \"header:\" followed by a header name, such as \"header:X-Api-Key\"";
        let text = self.string(path, value, fix)?;
        if text == "client_address" {
            return Some(ClientKey::ClientAddress);
        }
        match text.strip_prefix("header:") {
            Some(name) if is_header_name(name) => Some(ClientKey::Header(name.to_owned())),
            _ => {
                self.report(path, format!("invalid client key {}", quote(text)), fix);
                None
            }
        }
    }

    pub(super) fn check_request_id(&mut self, value: Option<&Json>) -> Option<RequestId> {
        const PATH: &str = "request_id";
        let defaults = RequestId::default();
        let Some(value) = value else {
            return Some(defaults);
        };
        let object = self.object(PATH, value, REQUEST_ID_KEYS)?;
        let header = self.optional(&object, PATH, "header", defaults.header, Self::header_name);
        let generate = self.optional(&object, PATH, "generate", defaults.generate, Self::boolean);
        Some(RequestId {
            header: header?,
            generate: generate?,
        })
    }

    /// Returns the address text, weight and address key path of one `servers` entry: a
    /// string or an object with `address` and `weight`.
    pub(super) fn check_server_entry<'a>(
        &mut self,
        path: &str,
        value: &'a Json,
    ) -> Option<(&'a str, u32, String)> {
        let fix = "write host:port, for example \"127.0.0.1:9090\", or {\"address\": \"127.0.0.1:9090\", \"weight\": 2}";
        match value {
            Json::String(text) => Some((text, DEFAULT_SERVER_WEIGHT, path.to_owned())),
            Json::Object(_) => {
                let object = self.object(path, value, SERVER_KEYS)?;
                let address_path = key_path(path, "address");
                let address = self
                    .required(
                        &object,
                        path,
                        "address",
                        "add \"address\": host:port, for example \"127.0.0.1:9090\"",
                    )
                    .and_then(|value| self.string(&address_path, value, fix));
                let weight = self.optional(
                    &object,
                    path,
                    "weight",
                    DEFAULT_SERVER_WEIGHT,
                    |checker, path, value| checker.integer_u32(path, value, &SERVER_WEIGHT_RANGE),
                );
                Some((address?, weight?, address_path))
            }
            other => {
                self.report_type(path, "a server address or object", other, fix);
                None
            }
        }
    }

    /// Reports explicit weights other than 1 on an upstream whose balance ignores them.
    pub(super) fn check_weights_need_weighted_balance(
        &mut self,
        path: &str,
        object: &Object<'_>,
        balance: &Balance,
    ) {
        if *balance == Balance::WeightedRoundRobin {
            return;
        }
        let Some(Json::Array(items)) = object.get("servers") else {
            return;
        };
        for (index, item) in items.iter().enumerate() {
            let Json::Object(entries) = item else {
                continue;
            };
            let weight = entries
                .iter()
                .find(|(key, _)| key == "weight")
                .map(|(_, value)| value);
            if let Some(Json::Integer(weight)) = weight
                && *weight != i128::from(DEFAULT_SERVER_WEIGHT)
                && u32::try_from(*weight).is_ok_and(|weight| SERVER_WEIGHT_RANGE.contains(&weight))
            {
                self.report(
                    &key_path(&index_path(&key_path(path, "servers"), index), "weight"),
                    format!("weight {weight} has no effect, because only balance \"weighted_round_robin\" uses weights"),
                    "set \"balance\": \"weighted_round_robin\" on this upstream, or remove the weight",
                );
            }
        }
    }

    pub(super) fn check_upstream_policies(
        &mut self,
        path: &str,
        object: &Object<'_>,
    ) -> Option<UpstreamPolicies> {
        let balance_name = match object.get("balance") {
            Some(value) => self.balance_name(&key_path(path, "balance"), value),
            None => Some(BALANCE_NAMES[0]),
        };
        let hash_key = self.optional(
            object,
            path,
            "hash_key",
            ClientKey::ClientAddress,
            Self::client_key,
        );
        let sticky_cookie = self.optional(
            object,
            path,
            "sticky_cookie",
            StickyCookie {
                name: DEFAULT_STICKY_COOKIE_NAME.to_owned(),
                max_age: Duration::from_secs(DEFAULT_STICKY_COOKIE_MAX_AGE_S),
            },
            Self::check_sticky_cookie,
        );
        let health = self.optional(
            object,
            path,
            "health",
            Health::default(),
            Self::check_health,
        );
        let circuit_breaker = self.optional(
            object,
            path,
            "circuit_breaker",
            None,
            |checker, path, value| checker.check_circuit_breaker(path, value).map(Some),
        );
        let retries = self.optional(
            object,
            path,
            "retries",
            Retries::default(),
            Self::check_retries,
        );

        let balance_name = balance_name?;
        for (key, owner) in [("hash_key", "hash"), ("sticky_cookie", "sticky_cookie")] {
            if object.get(key).is_some() && balance_name != owner {
                self.report(
                    &key_path(path, key),
                    format!("\"{key}\" applies only with balance \"{owner}\", but balance is \"{balance_name}\""),
                    format!("set \"balance\": \"{owner}\", or remove \"{key}\""),
                );
                return None;
            }
        }
        let balance = match balance_name {
            "round_robin" => Balance::RoundRobin,
            "weighted_round_robin" => Balance::WeightedRoundRobin,
            "least_connections" => Balance::LeastConnections,
            "power_of_two" => Balance::PowerOfTwo,
            "hash" => Balance::Hash(hash_key?),
            _ => Balance::StickyCookie(sticky_cookie?),
        };
        Some(UpstreamPolicies {
            balance,
            health: health?,
            circuit_breaker: circuit_breaker?,
            retries: retries?,
        })
    }

    fn balance_name(&mut self, path: &str, value: &Json) -> Option<&'static str> {
        let fix = format!("use one of {}", BALANCE_NAMES.join(", "));
        let name = self.string(path, value, &fix)?;
        let found = BALANCE_NAMES
            .iter()
            .find(|candidate| **candidate == name)
            .copied();
        if found.is_none() {
            self.report(path, format!("unknown balance {}", quote(name)), fix);
        }
        found
    }

    fn check_sticky_cookie(&mut self, path: &str, value: &Json) -> Option<StickyCookie> {
        let object = self.object(path, value, STICKY_COOKIE_KEYS)?;
        let name = self.optional(&object, path, "name", DEFAULT_STICKY_COOKIE_NAME.to_owned(), |checker, path, value| {
            let fix = "use a cookie name of letters, digits and !#$%&'*+-.^_`|~, such as \"ringway_sticky\"";
            let name = checker.string(path, value, fix)?;
            // A cookie name is a token (RFC 6265 section 4.1.1).
            if !is_header_name(name) {
                checker.report(path, format!("invalid cookie name {}", quote(name)), fix);
                return None;
            }
            Some(name.to_owned())
        });
        let max_age = self.optional(
            &object,
            path,
            "max_age_s",
            Duration::from_secs(DEFAULT_STICKY_COOKIE_MAX_AGE_S),
            |checker, path, value| {
                checker
                    .integer_u64(path, value, &STICKY_COOKIE_MAX_AGE_RANGE_S)
                    .map(Duration::from_secs)
            },
        );
        Some(StickyCookie {
            name: name?,
            max_age: max_age?,
        })
    }

    fn check_health(&mut self, path: &str, value: &Json) -> Option<Health> {
        let object = self.object(path, value, HEALTH_KEYS)?;
        let passive = self.optional(
            &object,
            path,
            "passive",
            PassiveHealth::default(),
            Self::check_passive_health,
        );
        let active = self.optional(&object, path, "active", None, |checker, path, value| {
            checker.check_active_health(path, value).map(Some)
        });
        Some(Health {
            passive: passive?,
            active: active?,
        })
    }

    fn check_passive_health(&mut self, path: &str, value: &Json) -> Option<PassiveHealth> {
        let defaults = PassiveHealth::default();
        let object = self.object(path, value, PASSIVE_HEALTH_KEYS)?;
        let max_failures = self.optional(
            &object,
            path,
            "max_failures",
            defaults.max_failures,
            |checker, path, value| checker.integer_u32(path, value, &PASSIVE_MAX_FAILURES_RANGE),
        );
        let window = self.optional(
            &object,
            path,
            "window_ms",
            defaults.window,
            Self::duration_ms,
        );
        let ejection = self.optional(
            &object,
            path,
            "ejection_ms",
            defaults.ejection,
            Self::duration_ms,
        );
        let max_ejection = self.optional(
            &object,
            path,
            "max_ejection_ms",
            defaults.max_ejection,
            Self::duration_ms,
        );
        let (ejection, max_ejection) = (ejection?, max_ejection?);
        if max_ejection < ejection {
            self.report(
                &key_path(path, "max_ejection_ms"),
                format!(
                    "value {} is below ejection_ms ({}), but it caps the growing ejection period",
                    max_ejection.as_millis(),
                    ejection.as_millis()
                ),
                format!(
                    "raise max_ejection_ms to at least {} or lower ejection_ms",
                    ejection.as_millis()
                ),
            );
            return None;
        }
        Some(PassiveHealth {
            max_failures: max_failures?,
            window: window?,
            ejection,
            max_ejection,
        })
    }

    fn check_active_health(&mut self, path: &str, value: &Json) -> Option<ActiveHealth> {
        let object = self.object(path, value, ACTIVE_HEALTH_KEYS)?;
        let probe_path = self.optional(
            &object,
            path,
            "path",
            DEFAULT_ACTIVE_HEALTH_PATH.to_owned(),
            |checker, path, value| {
                let fix = "write an origin-form target such as \"/health\"";
                let text = checker.string(path, value, fix)?;
                let valid = text.starts_with('/')
                    && text.chars().all(|c| is_path_char(c) || c == '?')
                    && has_valid_percent_encoding(text);
                if !valid {
                    checker.report(
                        path,
                        format!("invalid health check path {}", quote(text)),
                        fix,
                    );
                    return None;
                }
                Some(text.to_owned())
            },
        );
        let interval = self.optional(
            &object,
            path,
            "interval_ms",
            Duration::from_millis(DEFAULT_ACTIVE_INTERVAL_MS),
            Self::duration_ms,
        );
        let timeout = self.optional(
            &object,
            path,
            "timeout_ms",
            Duration::from_millis(DEFAULT_ACTIVE_TIMEOUT_MS),
            Self::duration_ms,
        );
        let expected_status = self.optional(
            &object,
            path,
            "expected_status",
            vec![DEFAULT_ACTIVE_EXPECTED_STATUS],
            Self::check_status_list,
        );
        let healthy_threshold = self.optional(
            &object,
            path,
            "healthy_threshold",
            DEFAULT_HEALTHY_THRESHOLD,
            |checker, path, value| checker.integer_u32(path, value, &HEALTH_THRESHOLD_RANGE),
        );
        let unhealthy_threshold = self.optional(
            &object,
            path,
            "unhealthy_threshold",
            DEFAULT_UNHEALTHY_THRESHOLD,
            |checker, path, value| checker.integer_u32(path, value, &HEALTH_THRESHOLD_RANGE),
        );
        let (interval, timeout) = (interval?, timeout?);
        if timeout > interval {
            self.report(
                &key_path(path, "timeout_ms"),
                format!(
                    "value {} is above interval_ms ({}), so probes of one server would overlap",
                    timeout.as_millis(),
                    interval.as_millis()
                ),
                format!(
                    "lower timeout_ms to at most {} or raise interval_ms",
                    interval.as_millis()
                ),
            );
            return None;
        }
        Some(ActiveHealth {
            path: probe_path?,
            interval,
            timeout,
            expected_status: expected_status?,
            healthy_threshold: healthy_threshold?,
            unhealthy_threshold: unhealthy_threshold?,
        })
    }

    fn check_status_list(&mut self, path: &str, value: &Json) -> Option<Vec<u16>> {
        let items = self.array(
            path,
            value,
            "write a list of status codes such as [200, 204]",
        )?;
        if items.is_empty() {
            self.report(
                path,
                "the list of status codes is empty, so every probe would fail",
                "list at least one status code, such as [200]",
            );
            return None;
        }
        let mut codes: Vec<u16> = Vec::with_capacity(items.len());
        let mut valid = true;
        for (index, item) in items.iter().enumerate() {
            let item_path = index_path(path, index);
            let Some(code) = self
                .integer(
                    &item_path,
                    item,
                    (*STATUS_CODE_RANGE.start()).into(),
                    (*STATUS_CODE_RANGE.end()).into(),
                )
                .and_then(|code| u16::try_from(code).ok())
            else {
                valid = false;
                continue;
            };
            if codes.contains(&code) {
                self.report(
                    &item_path,
                    format!("status {code} is listed twice"),
                    "list each status code once",
                );
                valid = false;
                continue;
            }
            codes.push(code);
        }
        valid.then_some(codes)
    }

    fn check_circuit_breaker(&mut self, path: &str, value: &Json) -> Option<CircuitBreaker> {
        let object = self.object(path, value, CIRCUIT_BREAKER_KEYS)?;
        let failure_ratio = self.optional(
            &object,
            path,
            "failure_ratio",
            DEFAULT_FAILURE_RATIO,
            |checker, path, value| checker.number(path, value, 0.0, false, 1.0),
        );
        let window = self.optional(
            &object,
            path,
            "window_ms",
            Duration::from_millis(DEFAULT_BREAKER_WINDOW_MS),
            Self::duration_ms,
        );
        let min_requests = self.optional(
            &object,
            path,
            "min_requests",
            DEFAULT_BREAKER_MIN_REQUESTS,
            |checker, path, value| checker.integer_u32(path, value, &BREAKER_MIN_REQUESTS_RANGE),
        );
        let break_duration = self.optional(
            &object,
            path,
            "break_ms",
            Duration::from_millis(DEFAULT_BREAK_MS),
            Self::duration_ms,
        );
        let half_open_requests = self.optional(
            &object,
            path,
            "half_open_requests",
            DEFAULT_HALF_OPEN_REQUESTS,
            |checker, path, value| checker.integer_u32(path, value, &HALF_OPEN_REQUESTS_RANGE),
        );
        Some(CircuitBreaker {
            failure_ratio: failure_ratio?,
            window: window?,
            min_requests: min_requests?,
            break_duration: break_duration?,
            half_open_requests: half_open_requests?,
        })
    }

    fn check_retries(&mut self, path: &str, value: &Json) -> Option<Retries> {
        let defaults = Retries::default();
        let object = self.object(path, value, RETRY_KEYS)?;
        let attempts = self.optional(
            &object,
            path,
            "attempts",
            defaults.attempts,
            |checker, path, value| checker.integer_u32(path, value, &RETRY_ATTEMPTS_RANGE),
        );
        let budget_ratio = self.optional(
            &object,
            path,
            "budget_ratio",
            defaults.budget_ratio,
            |checker, path, value| checker.number(path, value, 0.0, true, 1.0),
        );
        let min_per_second = self.optional(
            &object,
            path,
            "min_per_second",
            defaults.min_per_second,
            |checker, path, value| checker.integer_u32(path, value, &RETRY_MIN_PER_SECOND_RANGE),
        );
        Some(Retries {
            attempts: attempts?,
            budget_ratio: budget_ratio?,
            min_per_second: min_per_second?,
        })
    }

    /// Returns the literal prefix and the path of a route, which must have exactly one of
    /// `path_prefix` and `path`.
    pub(super) fn check_route_path(
        &mut self,
        path: &str,
        object: &Object<'_>,
    ) -> Option<(String, RoutePath)> {
        match (object.get("path_prefix"), object.get("path")) {
            (Some(value), None) => {
                let prefix = self.check_path_prefix(&key_path(path, "path_prefix"), value)?;
                Some((prefix.clone(), RoutePath::Prefix(prefix)))
            }
            (None, Some(value)) => {
                let template = self.check_path_template(&key_path(path, "path"), value)?;
                let literal_end = template.find('{').unwrap_or(template.len());
                Some((
                    template[..literal_end].to_owned(),
                    RoutePath::Template(template),
                ))
            }
            (Some(_), Some(_)) => {
                self.report(
                    &key_path(path, "path"),
                    "a route has both \"path_prefix\" and \"path\"",
                    "keep one: \"path_prefix\" matches every path under a prefix, \"path\" matches a template",
                );
                None
            }
            (None, None) => {
                self.report(
                    &key_path(path, "path_prefix"),
                    "missing required key \"path_prefix\" or \"path\"",
                    "add \"path_prefix\", such as \"/\" to match every path, or a \"path\" template such as \"/orders/{id}\"",
                );
                None
            }
        }
    }

    /// Checks the characters of a path or rewrite template; its placeholder syntax is left
    /// to the routing parser.
    fn check_path_template(&mut self, path: &str, value: &Json) -> Option<String> {
        let template = self.string(path, value, "write a template such as \"/orders/{id}\"")?;
        if !template.starts_with('/') {
            self.report(
                path,
                format!("path template {} does not start with '/'", quote(template)),
                format!("write it as \"/{}\"", template.escape_debug()),
            );
            return None;
        }
        if let Some(character) = template
            .chars()
            .find(|&c| !is_path_char(c) && c != '{' && c != '}')
        {
            self.report(
                path,
                format!("path template {} contains {character:?}, which cannot appear in a request path", quote(template)),
                "percent-encode the character, for example \" \" as \"%20\", and leave out any query",
            );
            return None;
        }
        if !has_valid_percent_encoding(template) {
            self.report(
                path,
                format!(
                    "path template {} has a '%' that is not followed by two hex digits",
                    quote(template)
                ),
                "write a literal '%' as \"%25\"",
            );
            return None;
        }
        Some(template.to_owned())
    }

    pub(super) fn check_route_extras(
        &mut self,
        path: &str,
        index: usize,
        object: &Object<'_>,
        route_path: Option<&(String, RoutePath)>,
    ) -> Option<RouteExtras> {
        let name = self.optional(
            object,
            path,
            "name",
            format!("route {index}"),
            Self::check_route_name,
        );
        let headers = self.optional(
            object,
            path,
            "headers",
            Vec::new(),
            Self::check_header_matches,
        );
        let priority = self.optional(
            object,
            path,
            "priority",
            DEFAULT_ROUTE_PRIORITY,
            |checker, path, value| {
                checker
                    .integer(path, value, i32::MIN.into(), i32::MAX.into())
                    .and_then(|number| i32::try_from(number).ok())
            },
        );
        let case_sensitive = self.optional(
            object,
            path,
            "case_sensitive",
            DEFAULT_CASE_SENSITIVE,
            Self::boolean,
        );
        let rewrite = self.optional(object, path, "rewrite", None, |checker, path, value| {
            checker.check_rewrite(path, value).map(Some)
        });
        let query = self.optional(
            object,
            path,
            "query",
            QueryRules::default(),
            Self::check_query,
        );
        let request_headers = self.optional(
            object,
            path,
            "request_headers",
            Vec::new(),
            Self::check_header_rules,
        );
        let response_headers = self.optional(
            object,
            path,
            "response_headers",
            Vec::new(),
            Self::check_header_rules,
        );
        let timeouts = self.optional(
            object,
            path,
            "timeouts",
            RouteTimeouts::default(),
            Self::check_route_timeouts,
        );
        let rate_limit = self.optional(object, path, "rate_limit", None, |checker, path, value| {
            checker.check_rate_limit(path, value).map(Some)
        });
        let allow = self.optional(object, path, "allow", Vec::new(), Self::check_cidrs);
        let deny = self.optional(object, path, "deny", Vec::new(), Self::check_cidrs);
        let request_id_header = self.optional(
            object,
            path,
            "request_id_header",
            None,
            |checker, path, value| checker.header_name(path, value).map(Some),
        );

        if let (
            Some(Some(Rewrite::StripPrefix(strip))),
            Some((literal, route_path)),
            Some(case_sensitive),
        ) = (&rewrite, route_path, case_sensitive)
        {
            self.check_strip_prefix_matches(path, strip, literal, route_path, case_sensitive);
        }

        Some(RouteExtras {
            name: name?,
            headers: headers?,
            priority: priority?,
            case_sensitive: case_sensitive?,
            rewrite: rewrite?,
            query: query?,
            request_headers: request_headers?,
            response_headers: response_headers?,
            timeouts: timeouts?,
            rate_limit: rate_limit?,
            allow: allow?,
            deny: deny?,
            request_id_header: request_id_header?,
        })
    }

    fn check_route_name(&mut self, path: &str, value: &Json) -> Option<String> {
        let fix = format!(
            "use 1 to {MAX_ROUTE_NAME_BYTES} visible ASCII characters or spaces, such as \"orders\""
        );
        let name = self.string(path, value, &fix)?;
        let valid = !name.is_empty()
            && name.len() <= MAX_ROUTE_NAME_BYTES
            && name.bytes().all(|b| (b' '..=b'~').contains(&b));
        if !valid {
            self.report(path, format!("invalid route name {}", quote(name)), fix);
            return None;
        }
        Some(name.to_owned())
    }

    fn check_header_matches(&mut self, path: &str, value: &Json) -> Option<Vec<HeaderMatch>> {
        let entries = self.entries(
            path,
            value,
            "write an object such as {\"X-Tenant\": \"blue\"}",
        )?;
        let mut matches: Vec<HeaderMatch> = Vec::with_capacity(entries.len());
        let mut valid = true;
        for (name, value) in entries {
            let entry_path = key_path(path, name);
            if !is_header_name(name) {
                self.report(
                    &entry_path,
                    format!(
                        "invalid header name {}: a header name is an HTTP token",
                        quote(name)
                    ),
                    "use letters, digits and !#$%&'*+-.^_`|~ only, for example \"X-Tenant\"",
                );
                valid = false;
                continue;
            }
            // Exact duplicates were reported by `entries`; names differing in case are the
            // same header too (RFC 9110 section 5.1).
            if matches
                .iter()
                .any(|earlier| earlier.name.eq_ignore_ascii_case(name) && earlier.name != *name)
            {
                self.report(
                    &entry_path,
                    format!(
                        "header {} is listed twice in different letter case",
                        quote(name)
                    ),
                    "keep one entry, because header names are case-insensitive",
                );
                valid = false;
                continue;
            }
            let Some(value) = self.header_value(&entry_path, value) else {
                valid = false;
                continue;
            };
            matches.push(HeaderMatch {
                name: name.clone(),
                value,
            });
        }
        valid.then_some(matches)
    }

    fn check_rewrite(&mut self, path: &str, value: &Json) -> Option<Rewrite> {
        let object = self.object(path, value, REWRITE_KEYS)?;
        match (object.get("path"), object.get("strip_prefix")) {
            (Some(value), None) => self
                .check_path_template(&key_path(path, "path"), value)
                .map(Rewrite::Path),
            (None, Some(value)) => self
                .check_path_prefix(&key_path(path, "strip_prefix"), value)
                .map(Rewrite::StripPrefix),
            (Some(_), Some(_)) => {
                self.report(
                    &key_path(path, "strip_prefix"),
                    "a rewrite has both \"path\" and \"strip_prefix\"",
                    "keep one: \"path\" builds the whole upstream path, \"strip_prefix\" removes a prefix",
                );
                None
            }
            (None, None) => {
                self.report(
                    path,
                    "the rewrite is empty",
                    "add \"path\" or \"strip_prefix\", or remove \"rewrite\" to forward the path unchanged",
                );
                None
            }
        }
    }

    /// Reports a `strip_prefix` that no path matched by the route can start with.
    fn check_strip_prefix_matches(
        &mut self,
        path: &str,
        strip: &str,
        literal: &str,
        route_path: &RoutePath,
        case_sensitive: bool,
    ) {
        let starts_with = |text: &str, prefix: &str| {
            text.len() >= prefix.len()
                && if case_sensitive {
                    text.as_bytes()[..prefix.len()] == *prefix.as_bytes()
                } else {
                    text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                }
        };
        let possible = match route_path {
            RoutePath::Prefix(_) => starts_with(literal, strip),
            // The text after the literal part comes from placeholders, so only the
            // overlapping part can be compared.
            RoutePath::Template(_) => starts_with(literal, strip) || starts_with(strip, literal),
        };
        if !possible {
            self.report(
                &key_path(&key_path(path, "rewrite"), "strip_prefix"),
                format!(
                    "prefix {} can never match, because the route's paths start with {}",
                    quote(strip),
                    quote(literal)
                ),
                "use a prefix of the route's path, or remove \"strip_prefix\"",
            );
        }
    }

    fn check_query(&mut self, path: &str, value: &Json) -> Option<QueryRules> {
        let object = self.object(path, value, QUERY_KEYS)?;
        let remove = self.optional(
            &object,
            path,
            "remove",
            Vec::new(),
            |checker, path, value| {
                let items = checker.array(
                    path,
                    value,
                    "write a list of parameter names such as [\"debug\"]",
                )?;
                let mut names: Vec<String> = Vec::with_capacity(items.len());
                let mut valid = true;
                for (index, item) in items.iter().enumerate() {
                    let item_path = index_path(path, index);
                    let Some(name) = checker.string(
                        &item_path,
                        item,
                        "write a parameter name such as \"debug\"",
                    ) else {
                        valid = false;
                        continue;
                    };
                    if !checker.check_query_text(&item_path, name, true) {
                        valid = false;
                        continue;
                    }
                    if names.iter().any(|earlier| earlier == name) {
                        checker.report(
                            &item_path,
                            format!("parameter {} is listed twice", quote(name)),
                            "list each parameter once",
                        );
                        valid = false;
                        continue;
                    }
                    names.push(name.to_owned());
                }
                valid.then_some(names)
            },
        );
        let set = self.optional(&object, path, "set", Vec::new(), |checker, path, value| {
            let entries = checker.entries(
                path,
                value,
                "write an object such as {\"source\": \"gateway\"}",
            )?;
            let mut pairs = Vec::with_capacity(entries.len());
            let mut valid = true;
            for (name, value) in entries {
                let entry_path = key_path(path, name);
                let name_ok = checker.check_query_text(&entry_path, name, true);
                let value =
                    checker.string(&entry_path, value, "write the parameter value as a string");
                match value {
                    Some(value)
                        if name_ok && checker.check_query_text(&entry_path, value, false) =>
                    {
                        pairs.push((name.clone(), value.to_owned()));
                    }
                    _ => valid = false,
                }
            }
            valid.then_some(pairs)
        });
        let (remove, set) = (remove?, set?);
        if let Some((name, _)) = set.iter().find(|(name, _)| remove.contains(name)) {
            self.report(
                &key_path(&key_path(path, "set"), name),
                format!("parameter {} is both removed and set", quote(name)),
                "keep it in \"set\" only, because setting replaces every earlier value",
            );
            return None;
        }
        Some(QueryRules { remove, set })
    }

    /// Reports a query parameter name or value that cannot be sent as written.
    fn check_query_text(&mut self, path: &str, text: &str, in_name: bool) -> bool {
        let what = if in_name {
            "parameter name"
        } else {
            "parameter value"
        };
        if in_name && text.is_empty() {
            self.report(
                path,
                "the parameter name is empty",
                "write a name such as \"debug\"",
            );
            return false;
        }
        if let Some(character) = text.chars().find(|&c| !is_query_char(c, in_name)) {
            self.report(
                path,
                format!(
                    "{what} {} contains {character:?}, which must be percent-encoded in a query",
                    quote(text)
                ),
                "percent-encode the character, for example \"&\" as \"%26\" and \" \" as \"%20\"",
            );
            return false;
        }
        if !has_valid_percent_encoding(text) {
            self.report(
                path,
                format!(
                    "{what} {} has a '%' that is not followed by two hex digits",
                    quote(text)
                ),
                "write a literal '%' as \"%25\"",
            );
            return false;
        }
        true
    }

    fn check_header_rules(&mut self, path: &str, value: &Json) -> Option<Vec<HeaderRule>> {
        let items = self.array(
            path,
            value,
            "write a list of rules such as [{\"set\": \"X-Gateway\", \"value\": \"ringway\"}]",
        )?;
        let mut rules = Vec::with_capacity(items.len());
        let mut valid = true;
        for (index, item) in items.iter().enumerate() {
            match self.check_header_rule(&index_path(path, index), item) {
                Some(rule) => rules.push(rule),
                None => valid = false,
            }
        }
        valid.then_some(rules)
    }

    fn check_header_rule(&mut self, path: &str, value: &Json) -> Option<HeaderRule> {
        let object = self.object(path, value, HEADER_RULE_KEYS)?;
        let actions: Vec<&str> = HEADER_RULE_ACTIONS
            .iter()
            .copied()
            .filter(|action| object.get(action).is_some())
            .collect();
        let [action] = actions[..] else {
            self.report(
                path,
                format!("a header rule needs exactly one of set, add, remove, replace, found {}", actions.len()),
                "write one rule per object, such as {\"set\": \"X-Gateway\", \"value\": \"ringway\"} or {\"remove\": \"Server\"}",
            );
            return None;
        };

        let name_path = key_path(path, action);
        let name = object
            .get(action)
            .and_then(|value| self.header_name(&name_path, value));
        if let Some(name) = &name
            && PROTECTED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
        {
            self.report(
                &name_path,
                format!(
                    "header {} cannot be changed by a rule, because ringway manages it",
                    quote(name)
                ),
                "remove this rule, because ringway writes framing and connection headers itself",
            );
            return None;
        }

        let allowed: &[&str] = match action {
            "set" | "add" => &["value"],
            "replace" => &["find", "with"],
            _ => &[],
        };
        for key in ["value", "find", "with"] {
            if object.get(key).is_some() && !allowed.contains(&key) {
                self.report(
                    &key_path(path, key),
                    format!("\"{key}\" does not apply to a \"{action}\" rule"),
                    match action {
                        "remove" => {
                            "remove this key, because \"remove\" takes only the header name"
                                .to_owned()
                        }
                        _ => format!("use {} with \"{action}\"", allowed.join(" and ")),
                    },
                );
                return None;
            }
        }
        let required = |checker: &mut Self, key: &str| {
            checker
                .required(
                    &object,
                    path,
                    key,
                    &format!("add \"{key}\" to the \"{action}\" rule"),
                )
                .and_then(|value| checker.header_value(&key_path(path, key), value))
        };
        let (kind, value) = match action {
            "set" => (HeaderRuleKind::Set, required(self, "value")),
            "add" => (HeaderRuleKind::Add, required(self, "value")),
            "remove" => (HeaderRuleKind::Remove, Some(String::new())),
            _ => {
                let find = required(self, "find");
                let with = required(self, "with");
                if find.as_deref() == Some("") {
                    self.report(
                        &key_path(path, "find"),
                        "the text to find is empty",
                        "write the text to replace, such as \"http://internal:8080\"",
                    );
                    return None;
                }
                (HeaderRuleKind::Replace { find: find? }, with)
            }
        };
        Some(HeaderRule {
            kind,
            name: name?,
            value: value?,
        })
    }

    fn check_route_timeouts(&mut self, path: &str, value: &Json) -> Option<RouteTimeouts> {
        let object = self.object(path, value, ROUTE_TIMEOUT_KEYS)?;
        let mut field = |key: &str| {
            self.optional(&object, path, key, None, |checker, path, value| {
                checker.duration_ms(path, value).map(Some)
            })
        };
        let connect = field("connect_ms");
        let upstream_head = field("upstream_head_ms");
        let upstream_read = field("upstream_read_ms");
        Some(RouteTimeouts {
            connect: connect?,
            upstream_head: upstream_head?,
            upstream_read: upstream_read?,
        })
    }

    fn check_rate_limit(&mut self, path: &str, value: &Json) -> Option<RateLimit> {
        let object = self.object(path, value, RATE_LIMIT_KEYS)?;
        let requests_per_second = self
            .required(
                &object,
                path,
                "requests_per_second",
                "add \"requests_per_second\", such as 10",
            )
            .and_then(|value| {
                self.number(
                    &key_path(path, "requests_per_second"),
                    value,
                    0.0,
                    false,
                    MAX_REQUESTS_PER_SECOND,
                )
            });
        // One second's worth of requests by default, rounded up so that a rate below one
        // request per second still lets one request through.
        let default_burst = requests_per_second.map_or(1, |rate| rate.ceil().max(1.0) as u32);
        let burst = self.optional(
            &object,
            path,
            "burst",
            default_burst,
            |checker, path, value| checker.integer_u32(path, value, &RATE_LIMIT_BURST_RANGE),
        );
        let key = self.optional(
            &object,
            path,
            "key",
            ClientKey::ClientAddress,
            Self::client_key,
        );
        let whitelist = self.optional(
            &object,
            path,
            "whitelist",
            Vec::new(),
            |checker, path, value| {
                let items = checker.array(
                    path,
                    value,
                    "write a list such as [\"10.0.0.1\", \"trusted-key\"]",
                )?;
                let mut entries: Vec<String> = Vec::with_capacity(items.len());
                let mut valid = true;
                for (index, item) in items.iter().enumerate() {
                    let item_path = index_path(path, index);
                    let Some(entry) = checker.header_value(&item_path, item) else {
                        valid = false;
                        continue;
                    };
                    if entry.is_empty() || entries.contains(&entry) {
                        checker.report(
                            &item_path,
                            format!("whitelist entry {} is empty or listed twice", quote(&entry)),
                            "list each client address or key once",
                        );
                        valid = false;
                        continue;
                    }
                    entries.push(entry);
                }
                valid.then_some(entries)
            },
        );
        Some(RateLimit {
            requests_per_second: requests_per_second?,
            burst: burst?,
            key: key?,
            whitelist: whitelist?,
        })
    }

    fn check_cidrs(&mut self, path: &str, value: &Json) -> Option<Vec<Cidr>> {
        let items = self.array(
            path,
            value,
            "write a list such as [\"10.0.0.0/8\", \"::1\"]",
        )?;
        if items.is_empty() {
            self.report(
                path,
                "the list of addresses is empty",
                "list at least one address or CIDR, or remove the key",
            );
            return None;
        }
        let mut cidrs: Vec<Cidr> = Vec::with_capacity(items.len());
        let mut valid = true;
        for (index, item) in items.iter().enumerate() {
            let item_path = index_path(path, index);
            let fix = "write an IP address or a CIDR such as \"10.0.0.0/8\" or \"fd00::/8\"";
            let Some(text) = self.string(&item_path, item, fix) else {
                valid = false;
                continue;
            };
            if !is_cidr(text) {
                self.report(
                    &item_path,
                    format!("invalid address or CIDR {}", quote(text)),
                    fix,
                );
                valid = false;
                continue;
            }
            if cidrs.iter().any(|earlier| earlier == text) {
                self.report(
                    &item_path,
                    format!("{} is listed twice", quote(text)),
                    "list each address once",
                );
                valid = false;
                continue;
            }
            cidrs.push(text.to_owned());
        }
        valid.then_some(cidrs)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::super::tests::{assert_single_error, minimal_with, parse_errors, parse_ok, paths};
    use super::super::*;

    #[test]
    fn every_gateway_key_set_explicitly() {
        let json = minimal_with(&[
            (
                "/upstreams/origin",
                json!({
                    "servers": ["127.0.0.1:9090", { "address": "127.0.0.1:9091", "weight": 3 }],
                    "balance": "weighted_round_robin",
                    "health": {
                        "passive": { "max_failures": 2, "window_ms": 1000, "ejection_ms": 2000, "max_ejection_ms": 4000 },
                        "active": { "path": "/ready?deep=1", "interval_ms": 3000, "timeout_ms": 500,
                                    "expected_status": [200, 204], "healthy_threshold": 1, "unhealthy_threshold": 4 }
                    },
                    "circuit_breaker": { "failure_ratio": 0.25, "window_ms": 5000, "min_requests": 7,
                                         "break_ms": 1500, "half_open_requests": 2 },
                    "retries": { "attempts": 0, "budget_ratio": 1, "min_per_second": 0 }
                }),
            ),
            (
                "/upstreams/hashed",
                json!({ "servers": ["127.0.0.1:9092"], "balance": "hash", "hash_key": "header:X-User" }),
            ),
            (
                "/upstreams/sticky",
                json!({ "servers": ["127.0.0.1:9093"], "balance": "sticky_cookie",
                        "sticky_cookie": { "name": "pin", "max_age_s": 60 } }),
            ),
            (
                "/routes",
                json!([{
                    "path": "/api/{version}/orders/{*rest}",
                    "name": "orders",
                    "host": "*.Example.com",
                    "methods": ["GET"],
                    "headers": { "X-Tenant": "blue" },
                    "priority": -3,
                    "case_sensitive": false,
                    "rewrite": { "path": "/v2/orders/{rest}" },
                    "query": { "remove": ["debug"], "set": { "source": "gw" } },
                    "request_headers": [
                        { "set": "X-Route", "value": "{route} {request_id}" },
                        { "add": "X-Client", "value": "{client_addr}" },
                        { "remove": "Cookie" },
                        { "replace": "Referer", "find": "http://", "with": "https://" }
                    ],
                    "response_headers": [{ "remove": "Server" }],
                    "timeouts": { "connect_ms": 100, "upstream_head_ms": 200, "upstream_read_ms": 300 },
                    "rate_limit": { "requests_per_second": 2.5, "burst": 9, "key": "header:X-Api-Key",
                                    "whitelist": ["10.0.0.1", "key-value"] },
                    "allow": ["10.0.0.0/8", "::1"],
                    "deny": ["10.1.0.0/16"],
                    "request_id_header": "X-Trace",
                    "upstream": "origin"
                }, {
                    "path_prefix": "/static/",
                    "rewrite": { "strip_prefix": "/static" },
                    "upstream": "sticky"
                }]),
            ),
            (
                "/request_id",
                json!({ "header": "X-Correlation-Id", "generate": false }),
            ),
        ]);
        let config = parse_ok(&json);

        let names: Vec<&str> = config
            .upstreams
            .iter()
            .map(|upstream| upstream.name.as_str())
            .collect();
        assert_eq!(names, ["hashed", "origin", "sticky"]);
        let hashed = &config.upstreams[0];
        assert_eq!(
            hashed.balance,
            Balance::Hash(ClientKey::Header("X-User".to_owned()))
        );
        let origin = &config.upstreams[1];
        assert_eq!(origin.balance, Balance::WeightedRoundRobin);
        let weights: Vec<u32> = origin.servers.iter().map(|server| server.weight).collect();
        assert_eq!(weights, [1, 3]);
        assert_eq!(origin.servers[1].authority, "127.0.0.1:9091");
        assert_eq!(
            origin.health.passive,
            PassiveHealth {
                max_failures: 2,
                window: Duration::from_secs(1),
                ejection: Duration::from_secs(2),
                max_ejection: Duration::from_secs(4),
            }
        );
        assert_eq!(
            origin.health.active,
            Some(ActiveHealth {
                path: "/ready?deep=1".to_owned(),
                interval: Duration::from_secs(3),
                timeout: Duration::from_millis(500),
                expected_status: vec![200, 204],
                healthy_threshold: 1,
                unhealthy_threshold: 4,
            })
        );
        assert_eq!(
            origin.circuit_breaker,
            Some(CircuitBreaker {
                failure_ratio: 0.25,
                window: Duration::from_secs(5),
                min_requests: 7,
                break_duration: Duration::from_millis(1500),
                half_open_requests: 2,
            })
        );
        assert_eq!(
            origin.retries,
            Retries {
                attempts: 0,
                budget_ratio: 1.0,
                min_per_second: 0
            }
        );
        assert_eq!(
            config.upstreams[2].balance,
            Balance::StickyCookie(StickyCookie {
                name: "pin".to_owned(),
                max_age: Duration::from_secs(60)
            })
        );

        let route = &config.routes[0];
        assert_eq!(
            route.path,
            RoutePath::Template("/api/{version}/orders/{*rest}".to_owned())
        );
        assert_eq!(route.path_prefix, "/api/");
        assert_eq!(route.name, "orders");
        assert_eq!(route.host.as_deref(), Some("*.example.com"));
        assert_eq!(
            route.headers,
            [HeaderMatch {
                name: "X-Tenant".to_owned(),
                value: "blue".to_owned()
            }]
        );
        assert_eq!(route.priority, -3);
        assert!(!route.case_sensitive);
        assert_eq!(route.upstream, 1);
        assert_eq!(
            route.rewrite,
            Some(Rewrite::Path("/v2/orders/{rest}".to_owned()))
        );
        assert_eq!(
            route.query,
            QueryRules {
                remove: vec!["debug".to_owned()],
                set: vec![("source".to_owned(), "gw".to_owned())]
            }
        );
        let rule = |kind, name: &str, value: &str| HeaderRule {
            kind,
            name: name.to_owned(),
            value: value.to_owned(),
        };
        assert_eq!(
            route.request_headers,
            [
                rule(HeaderRuleKind::Set, "X-Route", "{route} {request_id}"),
                rule(HeaderRuleKind::Add, "X-Client", "{client_addr}"),
                rule(HeaderRuleKind::Remove, "Cookie", ""),
                rule(
                    HeaderRuleKind::Replace {
                        find: "http://".to_owned()
                    },
                    "Referer",
                    "https://"
                ),
            ]
        );
        assert_eq!(
            route.response_headers,
            [rule(HeaderRuleKind::Remove, "Server", "")]
        );
        assert_eq!(
            route.timeouts,
            RouteTimeouts {
                connect: Some(Duration::from_millis(100)),
                upstream_head: Some(Duration::from_millis(200)),
                upstream_read: Some(Duration::from_millis(300)),
            }
        );
        assert_eq!(
            route.rate_limit,
            Some(RateLimit {
                requests_per_second: 2.5,
                burst: 9,
                key: ClientKey::Header("X-Api-Key".to_owned()),
                whitelist: vec!["10.0.0.1".to_owned(), "key-value".to_owned()],
            })
        );
        assert_eq!(route.allow, ["10.0.0.0/8", "::1"]);
        assert_eq!(route.deny, ["10.1.0.0/16"]);
        assert_eq!(route.request_id_header.as_deref(), Some("X-Trace"));

        let second = &config.routes[1];
        assert_eq!(second.name, "route 1");
        assert_eq!(
            second.rewrite,
            Some(Rewrite::StripPrefix("/static".to_owned()))
        );
        assert_eq!(second.upstream, 2);

        assert_eq!(
            config.request_id,
            RequestId {
                header: "X-Correlation-Id".to_owned(),
                generate: false
            }
        );
    }

    #[test]
    fn gateway_defaults_match_documented_values() {
        let config = parse_ok(&minimal_with(&[(
            "/upstreams/origin/health",
            json!({ "active": {} }),
        )]));
        let upstream = &config.upstreams[0];
        assert_eq!(upstream.balance, Balance::RoundRobin);
        assert_eq!(upstream.circuit_breaker, None);
        assert_eq!(upstream.health.passive.max_failures, 5);
        assert_eq!(upstream.health.passive.window, Duration::from_secs(10));
        assert_eq!(upstream.health.passive.ejection, Duration::from_secs(30));
        assert_eq!(
            upstream.health.passive.max_ejection,
            Duration::from_secs(300)
        );
        let active = upstream.health.active.as_ref().unwrap();
        assert_eq!(active.path, "/health");
        assert_eq!(active.interval, Duration::from_secs(5));
        assert_eq!(active.timeout, Duration::from_secs(2));
        assert_eq!(active.expected_status, [200]);
        assert_eq!(
            (active.healthy_threshold, active.unhealthy_threshold),
            (2, 3)
        );
        assert_eq!(upstream.retries.attempts, 1);
        assert_eq!(upstream.retries.budget_ratio, 0.2);
        assert_eq!(upstream.retries.min_per_second, 3);

        let config = parse_ok(&minimal_with(&[
            ("/upstreams/origin/circuit_breaker", json!({})),
            ("/upstreams/origin/balance", json!("sticky_cookie")),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 0.5 }),
            ),
        ]));
        let breaker = config.upstreams[0].circuit_breaker.unwrap();
        assert_eq!(breaker.failure_ratio, 0.5);
        assert_eq!(breaker.window, Duration::from_secs(10));
        assert_eq!(breaker.min_requests, 20);
        assert_eq!(breaker.break_duration, Duration::from_secs(30));
        assert_eq!(breaker.half_open_requests, 1);
        assert_eq!(
            config.upstreams[0].balance,
            Balance::StickyCookie(StickyCookie {
                name: "ringway_sticky".to_owned(),
                max_age: Duration::from_secs(3600)
            })
        );
        let limit = config.routes[0].rate_limit.as_ref().unwrap();
        assert_eq!(limit.burst, 1, "a rate below 1/s rounds the burst up to 1");
        assert_eq!(limit.key, ClientKey::ClientAddress);

        let route = &config.routes[0];
        assert_eq!(route.priority, 0);
        assert!(route.case_sensitive);
        assert_eq!(config.request_id.header, "X-Request-Id");
        assert!(config.request_id.generate);
    }

    #[test]
    fn hash_balance_defaults_to_client_address() {
        let config = parse_ok(&minimal_with(&[(
            "/upstreams/origin/balance",
            json!("hash"),
        )]));
        assert_eq!(
            config.upstreams[0].balance,
            Balance::Hash(ClientKey::ClientAddress)
        );
        for (name, balance) in [
            ("round_robin", Balance::RoundRobin),
            ("least_connections", Balance::LeastConnections),
            ("power_of_two", Balance::PowerOfTwo),
        ] {
            let config = parse_ok(&minimal_with(&[("/upstreams/origin/balance", json!(name))]));
            assert_eq!(config.upstreams[0].balance, balance, "balance {name}");
        }
    }

    #[test]
    fn template_literal_prefix() {
        let cases = [
            ("/orders/{id}", "/orders/"),
            ("/{*rest}", "/"),
            ("/files/{name}.json", "/files/"),
            ("/exact", "/exact"),
        ];
        for (template, prefix) in cases {
            let config = parse_ok(&minimal_with(&[(
                "/routes/0",
                json!({ "path": template, "upstream": "origin" }),
            )]));
            assert_eq!(config.routes[0].path_prefix, prefix, "template {template}");
            assert_eq!(
                config.routes[0].path,
                RoutePath::Template(template.to_owned())
            );
        }
    }

    #[test]
    fn route_names_must_be_unique() {
        let json = minimal_with(&[(
            "/routes",
            json!([
                { "path_prefix": "/a", "upstream": "origin", "name": "route 1" },
                { "path_prefix": "/b", "upstream": "origin" }
            ]),
        )]);
        let error = assert_single_error(&json, "routes[1].name", "\"route 1\"");
        assert!(error.message.contains("routes[0]"), "{error:#?}");
    }

    #[test]
    fn unknown_gateway_keys_rejected() {
        let json = minimal_with(&[
            (
                "/upstreams/origin/health",
                json!({ "passive": { "max_fails": 1 } }),
            ),
            ("/routes/0/rewrite", json!({ "prefix": "/" })),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 1, "per": "ip" }),
            ),
            ("/request_id/name", json!("X-Id")),
        ]);
        let errors = parse_errors(&json);
        let mut found = paths(&errors);
        found.sort_unstable();
        assert_eq!(
            found,
            [
                "request_id.name",
                "routes[0].rate_limit.per",
                "routes[0].rewrite",
                "routes[0].rewrite.prefix",
                "upstreams.origin.health.passive.max_fails",
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn duplicate_gateway_keys_rejected() {
        let json = r#"{ "workers": 1, "listen": "127.0.0.1:8080",
            "upstreams": { "origin": { "servers": ["127.0.0.1:9090"], "retries": { "attempts": 1, "attempts": 2 } } },
            "routes": [ { "path_prefix": "/", "upstream": "origin", "headers": { "A": "1", "A": "2" } } ] }"#;
        let errors = parse_errors(json);
        assert_eq!(
            paths(&errors),
            ["upstreams.origin.retries.attempts", "routes[0].headers.A"]
        );
        for error in &errors {
            assert!(error.message.starts_with("duplicate key"), "{error:#?}");
        }
    }

    #[test]
    fn rejected_gateway_values_name_path_and_value() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("/routes/0/path", json!("/x"), "routes[0].path", "both"),
            ("/routes/0/name", json!(""), "routes[0].name", "\"\""),
            (
                "/routes/0/name",
                json!("a\nb"),
                "routes[0].name",
                "\"a\\nb\"",
            ),
            (
                "/routes/0/headers",
                json!({ "X Bad": "1" }),
                "routes[0].headers[\"X Bad\"]",
                "\"X Bad\"",
            ),
            (
                "/routes/0/headers",
                json!({ "X-A": "1", "x-a": "2" }),
                "routes[0].headers.x-a",
                "\"x-a\"",
            ),
            (
                "/routes/0/headers",
                json!({ "X-A": "a\r\nb" }),
                "routes[0].headers.X-A",
                "\"a\\r\\nb\"",
            ),
            (
                "/routes/0/headers",
                json!({ "X-A": 1 }),
                "routes[0].headers.X-A",
                "1",
            ),
            (
                "/routes/0/priority",
                json!(2_147_483_648_i64),
                "routes[0].priority",
                "2147483648",
            ),
            (
                "/routes/0/priority",
                json!("high"),
                "routes[0].priority",
                "\"high\"",
            ),
            (
                "/routes/0/case_sensitive",
                json!("no"),
                "routes[0].case_sensitive",
                "\"no\"",
            ),
            ("/routes/0/rewrite", json!({}), "routes[0].rewrite", "empty"),
            (
                "/routes/0/rewrite",
                json!({ "path": "/a", "strip_prefix": "/b" }),
                "routes[0].rewrite.strip_prefix",
                "both",
            ),
            (
                "/routes/0/rewrite",
                json!({ "path": "v2" }),
                "routes[0].rewrite.path",
                "\"v2\"",
            ),
            (
                "/routes/0/rewrite",
                json!({ "path": "/a b" }),
                "routes[0].rewrite.path",
                "\"/a b\"",
            ),
            (
                "/routes/0/rewrite",
                json!({ "strip_prefix": "api" }),
                "routes[0].rewrite.strip_prefix",
                "\"api\"",
            ),
            (
                "/routes/0/query",
                json!({ "remove": ["a&b"] }),
                "routes[0].query.remove[0]",
                "\"a&b\"",
            ),
            (
                "/routes/0/query",
                json!({ "remove": [""] }),
                "routes[0].query.remove[0]",
                "empty",
            ),
            (
                "/routes/0/query",
                json!({ "remove": ["a", "a"] }),
                "routes[0].query.remove[1]",
                "\"a\"",
            ),
            (
                "/routes/0/query",
                json!({ "set": { "a=b": "1" } }),
                "routes[0].query.set[\"a=b\"]",
                "\"a=b\"",
            ),
            (
                "/routes/0/query",
                json!({ "set": { "a": "x#y" } }),
                "routes[0].query.set.a",
                "\"x#y\"",
            ),
            (
                "/routes/0/query",
                json!({ "set": { "a": "100%" } }),
                "routes[0].query.set.a",
                "\"100%\"",
            ),
            (
                "/routes/0/query",
                json!({ "remove": ["a"], "set": { "a": "1" } }),
                "routes[0].query.set.a",
                "\"a\"",
            ),
            (
                "/routes/0/request_headers",
                json!({}),
                "routes[0].request_headers",
                "an object",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "value": "1" }]),
                "routes[0].request_headers[0]",
                "found 0",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "set": "A", "add": "B", "value": "1" }]),
                "routes[0].request_headers[0]",
                "found 2",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "set": "X-A" }]),
                "routes[0].request_headers[0].value",
                "\"value\"",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "set": "Bad Name", "value": "1" }]),
                "routes[0].request_headers[0].set",
                "\"Bad Name\"",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "set": "Content-Length", "value": "1" }]),
                "routes[0].request_headers[0].set",
                "\"Content-Length\"",
            ),
            (
                "/routes/0/response_headers",
                json!([{ "remove": "Transfer-Encoding" }]),
                "routes[0].response_headers[0].remove",
                "\"Transfer-Encoding\"",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "remove": "X-A", "value": "1" }]),
                "routes[0].request_headers[0].value",
                "\"remove\"",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "replace": "X-A", "find": "", "with": "b" }]),
                "routes[0].request_headers[0].find",
                "empty",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "replace": "X-A", "value": "b" }]),
                "routes[0].request_headers[0].value",
                "\"replace\"",
            ),
            (
                "/routes/0/request_headers",
                json!([{ "add": "X-A", "value": "é" }]),
                "routes[0].request_headers[0].value",
                "\"é\"",
            ),
            (
                "/routes/0/timeouts",
                json!({ "connect_ms": 0 }),
                "routes[0].timeouts.connect_ms",
                "0",
            ),
            (
                "/routes/0/timeouts",
                json!({ "client_idle_ms": 5 }),
                "routes[0].timeouts.client_idle_ms",
                "\"client_idle_ms\"",
            ),
            (
                "/routes/0/rate_limit",
                json!({}),
                "routes[0].rate_limit.requests_per_second",
                "missing",
            ),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 0 }),
                "routes[0].rate_limit.requests_per_second",
                "0",
            ),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 1_000_001 }),
                "routes[0].rate_limit.requests_per_second",
                "1000001",
            ),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 1, "burst": 0 }),
                "routes[0].rate_limit.burst",
                "0",
            ),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 1, "key": "ip" }),
                "routes[0].rate_limit.key",
                "\"ip\"",
            ),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 1, "key": "header:" }),
                "routes[0].rate_limit.key",
                "\"header:\"",
            ),
            (
                "/routes/0/rate_limit",
                json!({ "requests_per_second": 1, "whitelist": ["a", "a"] }),
                "routes[0].rate_limit.whitelist[1]",
                "\"a\"",
            ),
            ("/routes/0/allow", json!([]), "routes[0].allow", "empty"),
            (
                "/routes/0/allow",
                json!(["10.0.0.0/33"]),
                "routes[0].allow[0]",
                "\"10.0.0.0/33\"",
            ),
            (
                "/routes/0/deny",
                json!(["example.com"]),
                "routes[0].deny[0]",
                "\"example.com\"",
            ),
            (
                "/routes/0/deny",
                json!(["::1", "::1"]),
                "routes[0].deny[1]",
                "\"::1\"",
            ),
            (
                "/routes/0/deny",
                json!(["10.0.0.0/+8"]),
                "routes[0].deny[0]",
                "\"10.0.0.0/+8\"",
            ),
            (
                "/routes/0/request_id_header",
                json!("X Id"),
                "routes[0].request_id_header",
                "\"X Id\"",
            ),
            (
                "/upstreams/origin/balance",
                json!("random"),
                "upstreams.origin.balance",
                "\"random\"",
            ),
            (
                "/upstreams/origin/hash_key",
                json!("client_address"),
                "upstreams.origin.hash_key",
                "\"round_robin\"",
            ),
            (
                "/upstreams/origin/sticky_cookie",
                json!({ "name": "a" }),
                "upstreams.origin.sticky_cookie",
                "\"round_robin\"",
            ),
            (
                "/upstreams/origin/servers",
                json!([{ "address": "127.0.0.1:9090", "weight": 0 }]),
                "upstreams.origin.servers[0].weight",
                "0",
            ),
            (
                "/upstreams/origin/servers",
                json!([{ "address": "127.0.0.1:9090", "weight": 2 }]),
                "upstreams.origin.servers[0].weight",
                "2",
            ),
            (
                "/upstreams/origin/servers",
                json!([{ "weight": 1 }]),
                "upstreams.origin.servers[0].address",
                "missing",
            ),
            (
                "/upstreams/origin/servers",
                json!(["127.0.0.1:9090", { "address": "127.0.0.1:9090" }]),
                "upstreams.origin.servers[1].address",
                "\"127.0.0.1:9090\"",
            ),
            (
                "/upstreams/origin/servers",
                json!([9090]),
                "upstreams.origin.servers[0]",
                "9090",
            ),
            (
                "/upstreams/origin/health",
                json!({ "passive": { "max_failures": 0 } }),
                "upstreams.origin.health.passive.max_failures",
                "0",
            ),
            (
                "/upstreams/origin/health",
                json!({ "passive": { "ejection_ms": 5000, "max_ejection_ms": 4000 } }),
                "upstreams.origin.health.passive.max_ejection_ms",
                "4000",
            ),
            (
                "/upstreams/origin/health",
                json!({ "active": { "interval_ms": 1000, "timeout_ms": 2000 } }),
                "upstreams.origin.health.active.timeout_ms",
                "2000",
            ),
            (
                "/upstreams/origin/health",
                json!({ "active": { "path": "health" } }),
                "upstreams.origin.health.active.path",
                "\"health\"",
            ),
            (
                "/upstreams/origin/health",
                json!({ "active": { "expected_status": [] } }),
                "upstreams.origin.health.active.expected_status",
                "empty",
            ),
            (
                "/upstreams/origin/health",
                json!({ "active": { "expected_status": [200, 600] } }),
                "upstreams.origin.health.active.expected_status[1]",
                "600",
            ),
            (
                "/upstreams/origin/health",
                json!({ "active": { "expected_status": [200, 200] } }),
                "upstreams.origin.health.active.expected_status[1]",
                "200",
            ),
            (
                "/upstreams/origin/health",
                json!({ "active": { "healthy_threshold": 0 } }),
                "upstreams.origin.health.active.healthy_threshold",
                "0",
            ),
            (
                "/upstreams/origin/circuit_breaker",
                json!({ "failure_ratio": 0 }),
                "upstreams.origin.circuit_breaker.failure_ratio",
                "0",
            ),
            (
                "/upstreams/origin/circuit_breaker",
                json!({ "failure_ratio": 1.5 }),
                "upstreams.origin.circuit_breaker.failure_ratio",
                "1.5",
            ),
            (
                "/upstreams/origin/circuit_breaker",
                json!({ "failure_ratio": "half" }),
                "upstreams.origin.circuit_breaker.failure_ratio",
                "\"half\"",
            ),
            (
                "/upstreams/origin/circuit_breaker",
                json!({ "min_requests": 0 }),
                "upstreams.origin.circuit_breaker.min_requests",
                "0",
            ),
            (
                "/upstreams/origin/circuit_breaker",
                json!({ "half_open_requests": 0 }),
                "upstreams.origin.circuit_breaker.half_open_requests",
                "0",
            ),
            (
                "/upstreams/origin/circuit_breaker",
                json!({ "break_ms": 0 }),
                "upstreams.origin.circuit_breaker.break_ms",
                "0",
            ),
            (
                "/upstreams/origin/retries",
                json!({ "attempts": 11 }),
                "upstreams.origin.retries.attempts",
                "11",
            ),
            (
                "/upstreams/origin/retries",
                json!({ "budget_ratio": -0.1 }),
                "upstreams.origin.retries.budget_ratio",
                "-0.1",
            ),
            (
                "/request_id",
                json!({ "header": "" }),
                "request_id.header",
                "\"\"",
            ),
            (
                "/request_id",
                json!({ "generate": 1 }),
                "request_id.generate",
                "1",
            ),
        ];
        for (pointer, value, path, named) in cases {
            let json = minimal_with(&[(pointer, value.clone())]);
            let errors = parse_errors(&json);
            assert_eq!(
                paths(&errors),
                [path],
                "setting {pointer} to {value}: {errors:#?}"
            );
            assert!(
                errors[0].message.contains(named),
                "setting {pointer} to {value}: message does not name {named}: {errors:#?}"
            );
            assert!(
                !errors[0].fix.is_empty(),
                "setting {pointer} to {value}: empty fix"
            );
        }
    }

    #[test]
    fn balance_specific_keys_need_their_balance() {
        let json = minimal_with(&[
            ("/upstreams/origin/balance", json!("hash")),
            ("/upstreams/origin/sticky_cookie", json!({})),
        ]);
        let error = assert_single_error(&json, "upstreams.origin.sticky_cookie", "\"hash\"");
        assert!(
            error.fix.contains("\"balance\": \"sticky_cookie\""),
            "{error:#?}"
        );
    }

    #[test]
    fn strip_prefix_must_fit_route_path() {
        let route = |route: Value| minimal_with(&[("/routes/0", route)]);
        let accepted = [
            json!({ "path_prefix": "/api/v1/", "rewrite": { "strip_prefix": "/api" }, "upstream": "origin" }),
            json!({ "path_prefix": "/API/", "case_sensitive": false, "rewrite": { "strip_prefix": "/api" }, "upstream": "origin" }),
            json!({ "path": "/api/{*rest}", "rewrite": { "strip_prefix": "/api" }, "upstream": "origin" }),
            json!({ "path": "/{tenant}/x", "rewrite": { "strip_prefix": "/blue" }, "upstream": "origin" }),
        ];
        for value in accepted {
            parse_ok(&route(value));
        }
        let rejected = [
            json!({ "path_prefix": "/api/", "rewrite": { "strip_prefix": "/other" }, "upstream": "origin" }),
            json!({ "path_prefix": "/API/", "rewrite": { "strip_prefix": "/api" }, "upstream": "origin" }),
            json!({ "path": "/api/{*rest}", "rewrite": { "strip_prefix": "/web" }, "upstream": "origin" }),
        ];
        for value in rejected {
            assert_single_error(
                &route(value.clone()),
                "routes[0].rewrite.strip_prefix",
                "can never match",
            );
        }
    }
}

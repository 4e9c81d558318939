//! The gateway state of one worker, built from the configuration: the route table, each
//! route's rewrite, header rules, access list and rate limiter, and each upstream's balancer,
//! server health, circuit breakers and retry budget.
//!
//! The same build runs once at load time to validate the parts that `config` stores as text
//! (templates, CIDRs, header rules), so a file that loads always builds on every worker.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{self, Balance, ClientKey, Config, ConfigError, HeaderRuleKind, RoutePath};
use crate::routing::headers::{HeaderRule, HeaderRules, RequestIdGenerator, ValueTemplate};
use crate::routing::rewrite::{PathRewrite, QueryRules, StripPrefix, TargetRewrite, UpstreamPath};
use crate::routing::table::{HostPattern, PathMatch, RouteSpec, RouteTable};
use crate::routing::template::PathTemplate;
use crate::traffic::acl::Acl;
use crate::traffic::balance::{Balancer, Pick, PickRequest, Policy, ServerInfo};
use crate::traffic::breaker::{BreakerParams, BreakerState, CircuitBreaker};
use crate::traffic::health::{ActiveHealth, PassiveHealth, PassiveHealthParams, ServerHealth};
use crate::traffic::limiter::{KeyedLimiter, LimitParams};
use crate::traffic::retry::RetryBudget;

/// The gateway state of one worker. The table and the per-route rules never change after
/// the build, so requests borrow them across awaits. The state that requests update sits in
/// `RefCell`s that are borrowed only between awaits.
pub struct Gateway {
    pub table: RouteTable,
    /// Per route, in file order (the indexes `RouteTable::find` returns).
    pub routes: Vec<RouteRuntime>,
    /// Per route, its rate limiter if it has one.
    pub limiters: RefCell<Vec<Option<RouteLimiter>>>,
    /// Per upstream, in the order of `Config::upstreams`.
    pub upstreams: RefCell<Vec<UpstreamRuntime>>,
    /// Per upstream, the sticky-session cookie name and Max-Age in seconds, outside the
    /// `RefCell` so that a response can borrow them across awaits.
    pub sticky_cookies: Vec<Option<(Box<[u8]>, u64)>>,
    /// Per upstream, when this worker sends its next active health probes.
    pub next_probe: Vec<Cell<Instant>>,
    pub request_ids: RefCell<RequestIdGenerator>,
}

/// The rules a matched route applies to its requests.
pub struct RouteRuntime {
    pub name: Box<[u8]>,
    pub upstream: usize,
    pub target: TargetRewrite,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// `None` when the route has no allow or deny entry.
    pub acl: Option<Acl>,
    /// The global timeouts with the route's overrides applied.
    pub timeouts: config::Timeouts,
    /// The request id header of this route.
    pub request_id_header: Box<[u8]>,
    /// Whether ringway writes an id when the client sent none.
    pub generate_request_id: bool,
}

/// The rate limiter of a route and the request property it counts by.
pub struct RouteLimiter {
    pub key: ClientKey,
    pub limiter: KeyedLimiter,
}

/// Server choice and server state of one upstream on one worker.
pub struct UpstreamRuntime {
    pub balancer: Balancer,
    pub health: Vec<ServerHealth>,
    /// One breaker per server, when `circuit_breaker` is configured.
    pub breakers: Option<Vec<CircuitBreaker>>,
    pub budget: RetryBudget,
    /// Extra attempts a request may make on other servers.
    pub retries: u32,
    /// The request property hashed by `balance: "hash"`.
    pub hash_key: Option<ClientKey>,
    /// Cookie name and Max-Age in seconds, for `balance: "sticky_cookie"`.
    pub sticky: Option<(Box<[u8]>, u64)>,
}

impl UpstreamRuntime {
    /// Picks a server for `request` among the available ones other than `exclude`, counts it as
    /// started, and takes a trial of its circuit breaker if that is half-open. A server is
    /// available when it is neither ejected, nor failing its active checks, nor behind an open
    /// circuit breaker.
    pub fn choose(
        &mut self,
        request: &PickRequest<'_>,
        exclude: Option<usize>,
        now: Instant,
    ) -> Option<Pick> {
        let UpstreamRuntime {
            balancer,
            health,
            breakers,
            ..
        } = self;
        let available = |server: usize| {
            Some(server) != exclude
                && server_available(health, server, now)
                && breakers
                    .as_ref()
                    .is_none_or(|breakers| breakers[server].would_allow(now))
        };
        let pick = balancer.pick(request, available)?;
        if let Some(breakers) = breakers.as_mut() {
            // `would_allow` returned true a moment ago, so this only counts the trial.
            breakers[pick.server].allow(now);
        }
        balancer.started(pick.server);
        Some(pick)
    }

    /// Records the outcome of a request to `server` in its passive health and its breaker.
    pub fn record(&mut self, server: usize, ok: bool, now: Instant) -> Recorded {
        let mut recorded = Recorded::default();
        if let Some(breakers) = self.breakers.as_mut() {
            let was_open = breakers[server].state() == BreakerState::Open;
            breakers[server].record(ok, now);
            recorded.breaker_opened = !was_open && breakers[server].state() == BreakerState::Open;
        }
        let passive = &mut self.health[server].passive;
        if ok {
            passive.record_success(now);
        } else {
            recorded.ejected = passive.record_failure(now);
        }
        recorded
    }
}

/// Returns whether passive and active health let `server` take requests. The only server of
/// an upstream is never ejected by passive checks, as in nginx: with nowhere else to send the
/// request, trying it is better than rejecting it.
fn server_available(health: &[ServerHealth], server: usize, now: Instant) -> bool {
    let state = &health[server];
    let ejected = health.len() > 1 && state.passive.is_ejected(now);
    let active_ok = state.active.as_ref().is_none_or(ActiveHealth::is_healthy);
    !ejected && active_ok
}

/// The changes that recording one outcome made.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recorded {
    /// The failure ejected the server.
    pub ejected: bool,
    /// The failure opened the server's circuit breaker.
    pub breaker_opened: bool,
}

/// Builds the gateway state of worker `worker` (one of `workers`), or returns every problem
/// with the key path of its value.
pub fn build(config: &Config, worker: usize) -> Result<Gateway, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let workers = config.workers.count().max(1);
    let now = Instant::now();

    let mut specs = Vec::with_capacity(config.routes.len());
    let mut routes = Vec::with_capacity(config.routes.len());
    let mut limiters = Vec::with_capacity(config.routes.len());
    for (index, route) in config.routes.iter().enumerate() {
        match build_route(config, route, index, workers) {
            Ok((spec, runtime, limiter)) => {
                specs.push(spec);
                routes.push(runtime);
                limiters.push(limiter);
            }
            Err(mut route_errors) => errors.append(&mut route_errors),
        }
    }

    let mut upstreams = Vec::with_capacity(config.upstreams.len());
    for upstream in &config.upstreams {
        match build_upstream(upstream, worker, now) {
            Ok(runtime) => upstreams.push(runtime),
            Err(error) => errors.push(error),
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let seed = crate::routing::headers::random_seed();
    let sticky_cookies = upstreams
        .iter()
        .map(|upstream: &UpstreamRuntime| upstream.sticky.clone())
        .collect();
    let next_probe = upstreams.iter().map(|_| Cell::new(now)).collect();
    Ok(Gateway {
        sticky_cookies,
        next_probe,
        table: RouteTable::new(specs),
        routes,
        limiters: RefCell::new(limiters),
        upstreams: RefCell::new(upstreams),
        request_ids: RefCell::new(RequestIdGenerator::new(seed, worker as u16)),
    })
}

/// Checks what `build` checks, for configuration loading.
pub fn check(config: &Config) -> Vec<ConfigError> {
    match build(config, 0) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

fn error(path: String, message: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError {
        path,
        message: message.into(),
        fix: fix.into(),
    }
}

fn build_route(
    config: &Config,
    route: &config::Route,
    index: usize,
    workers: usize,
) -> Result<(RouteSpec, RouteRuntime, Option<RouteLimiter>), Vec<ConfigError>> {
    let at = |key: &str| format!("routes[{index}].{key}");
    let mut errors = Vec::new();

    let host = match &route.host {
        None => HostPattern::Any,
        Some(host) => HostPattern::parse(host).unwrap_or_else(|problem| {
            errors.push(error(
                at("host"),
                format!("invalid host pattern {host:?}: {problem}"),
                "write a host name, \"*.example.com\" or an IPv6 literal in brackets",
            ));
            HostPattern::Any
        }),
    };

    let (path, template) = match &route.path {
        RoutePath::Prefix(prefix) => (PathMatch::Prefix(prefix.clone()), None),
        RoutePath::Template(text) => match PathTemplate::parse(text) {
            Ok(template) => (PathMatch::Template(template.clone()), Some(template)),
            Err(problem) => {
                errors.push(error(
                    at("path"),
                    problem.to_string(),
                    "use {name} for one segment and a final {*rest} for the remainder",
                ));
                (PathMatch::Prefix("/".to_owned()), None)
            }
        },
    };

    let path_rewrite = match &route.rewrite {
        None => PathRewrite::Keep,
        Some(config::Rewrite::StripPrefix(prefix)) => {
            match StripPrefix::new(prefix, route.case_sensitive) {
                Ok(strip) => PathRewrite::StripPrefix(strip),
                Err(problem) => {
                    errors.push(error(
                        at("rewrite.strip_prefix"),
                        format!("invalid prefix {prefix:?}: {problem}"),
                        "write a path prefix that starts with '/'",
                    ));
                    PathRewrite::Keep
                }
            }
        }
        Some(config::Rewrite::Path(text)) => match &template {
            Some(template) => match UpstreamPath::parse(text, template) {
                Ok(upstream) => PathRewrite::Template(upstream),
                Err(problem) => {
                    errors.push(error(
                        at("rewrite.path"),
                        problem.to_string(),
                        "use only placeholders that the route's \"path\" captures",
                    ));
                    PathRewrite::Keep
                }
            },
            None => {
                let empty = PathTemplate::parse("/").expect("\"/\" is a valid template");
                match UpstreamPath::parse(text, &empty) {
                    Ok(upstream) => PathRewrite::Template(upstream),
                    Err(problem) => {
                        errors.push(error(
                            at("rewrite.path"),
                            problem.to_string(),
                            "a route with \"path_prefix\" captures nothing; use \"path\" with placeholders, or a literal path",
                        ));
                        PathRewrite::Keep
                    }
                }
            }
        },
    };

    let query = QueryRules::new(route.query.remove.clone(), route.query.set.clone())
        .unwrap_or_else(|problem| {
            errors.push(error(
                at("query"),
                format!("invalid query rules: {problem}"),
                "name each parameter once, in \"remove\" or in \"set\"",
            ));
            QueryRules::default()
        });

    let request_headers = header_rules(&route.request_headers, &at("request_headers"), &mut errors);
    let response_headers =
        header_rules(&route.response_headers, &at("response_headers"), &mut errors);

    let acl = if route.allow.is_empty() && route.deny.is_empty() {
        None
    } else {
        match Acl::parse(&route.allow, &route.deny) {
            Ok(acl) => Some(acl),
            Err(problem) => {
                errors.push(error(
                    at("allow"),
                    format!("invalid entry in \"allow\" or \"deny\": {problem}"),
                    "list CIDR blocks or single addresses",
                ));
                None
            }
        }
    };

    let limiter = route.rate_limit.as_ref().map(|limit| {
        let params = LimitParams::per_worker(limit.requests_per_second, limit.burst, workers);
        let whitelist = limit
            .whitelist
            .iter()
            .map(|entry| whitelist_key(&limit.key, entry))
            .collect();
        RouteLimiter {
            key: limit.key.clone(),
            limiter: KeyedLimiter::new(params, whitelist),
        }
    });

    if !errors.is_empty() {
        return Err(errors);
    }

    let mut timeouts = config.timeouts;
    if let Some(connect) = route.timeouts.connect {
        timeouts.connect = connect;
    }
    if let Some(head) = route.timeouts.upstream_head {
        timeouts.upstream_head = head;
    }
    if let Some(read) = route.timeouts.upstream_read {
        timeouts.upstream_read = read;
    }
    let request_id_header = route
        .request_id_header
        .as_deref()
        .unwrap_or(&config.request_id.header);

    let spec = RouteSpec {
        host,
        path,
        methods: route.methods.clone(),
        headers: route
            .headers
            .iter()
            .map(|header| (header.name.clone(), header.value.clone()))
            .collect(),
        priority: route.priority,
        case_sensitive: route.case_sensitive,
    };
    let runtime = RouteRuntime {
        name: route.name.as_bytes().into(),
        upstream: route.upstream,
        target: TargetRewrite {
            path: path_rewrite,
            query,
        },
        request_headers,
        response_headers,
        acl,
        timeouts,
        request_id_header: request_id_header.as_bytes().into(),
        generate_request_id: config.request_id.generate,
    };
    Ok((spec, runtime, limiter))
}

/// Returns the limiter key of a whitelist entry: an address in the form `limiter::address_key` uses
/// for client addresses, or a header value as written.
fn whitelist_key(key: &ClientKey, entry: &str) -> Box<[u8]> {
    match (key, entry.parse::<IpAddr>()) {
        (ClientKey::ClientAddress, Ok(address)) => {
            crate::traffic::limiter::address_key(address)[..].into()
        }
        _ => entry.as_bytes().into(),
    }
}

fn header_rules(
    rules: &[config::HeaderRule],
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> HeaderRules {
    let mut built = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let name = rule.name.clone();
        let value_template = |value: &str, errors: &mut Vec<ConfigError>| {
            ValueTemplate::parse(value).map_err(|problem| {
                errors.push(error(
                    format!("{path}[{index}].value"),
                    problem.to_string(),
                    "write {{ or }} for a literal brace",
                ));
            })
        };
        let built_rule = match &rule.kind {
            HeaderRuleKind::Set => value_template(&rule.value, errors)
                .ok()
                .map(|value| HeaderRule::Set { name, value }),
            HeaderRuleKind::Add => value_template(&rule.value, errors)
                .ok()
                .map(|value| HeaderRule::Add { name, value }),
            HeaderRuleKind::Remove => Some(HeaderRule::Remove { name }),
            HeaderRuleKind::Replace { find } => Some(HeaderRule::Replace {
                name,
                find: find.clone(),
                with: rule.value.clone(),
            }),
        };
        built.extend(built_rule);
    }
    HeaderRules::new(built).unwrap_or_else(|problem| {
        errors.push(error(
            path.to_owned(),
            format!("invalid rule for header {:?}: {}", problem.name, problem.reason),
            "remove the rule, or merge the rules for that header into one",
        ));
        HeaderRules::default()
    })
}

fn build_upstream(
    upstream: &config::Upstream,
    worker: usize,
    now: Instant,
) -> Result<UpstreamRuntime, ConfigError> {
    let (policy, hash_key, sticky) = match &upstream.balance {
        Balance::RoundRobin => (Policy::RoundRobin, None, None),
        Balance::WeightedRoundRobin => (Policy::WeightedRoundRobin, None, None),
        Balance::LeastConnections => (Policy::LeastConnections, None, None),
        Balance::PowerOfTwo => (Policy::PowerOfTwo, None, None),
        Balance::Hash(key) => (Policy::Hash, Some(key.clone()), None),
        Balance::StickyCookie(cookie) => (
            Policy::StickyCookie,
            None,
            Some((cookie.name.as_bytes().into(), cookie.max_age.as_secs())),
        ),
    };
    let servers: Vec<ServerInfo> = upstream
        .servers
        .iter()
        .map(|server| ServerInfo {
            weight: server.weight,
            // A host name that resolved to several addresses gives several servers with one
            // authority, so the address distinguishes them.
            key: server.addr.to_string(),
        })
        .collect();
    // Each worker starts its random and round-robin choices elsewhere, so that workers do not
    // all send their first requests to the same server.
    let seed = crate::routing::headers::random_seed() ^ (worker as u64);
    let balancer = Balancer::new(policy, &servers, seed).map_err(|problem| {
        error(
            format!("upstreams.{}.servers", upstream.name),
            format!("invalid server list: {problem}"),
            "list at least one server, each with a weight of 1 or more",
        )
    })?;

    let passive = upstream.health.passive;
    let passive = PassiveHealthParams {
        max_failures: passive.max_failures,
        window: passive.window,
        ejection: passive.ejection,
        max_ejection: passive.max_ejection,
    };
    let health = upstream
        .servers
        .iter()
        .map(|_| ServerHealth {
            passive: PassiveHealth::new(passive),
            active: upstream.health.active.as_ref().map(|active| {
                ActiveHealth::new(active.healthy_threshold, active.unhealthy_threshold)
            }),
        })
        .collect();
    let breakers = upstream.circuit_breaker.map(|breaker| {
        let params = BreakerParams {
            failure_ratio: breaker.failure_ratio,
            window: breaker.window,
            min_requests: breaker.min_requests,
            break_duration: breaker.break_duration,
            half_open_requests: breaker.half_open_requests,
        };
        upstream
            .servers
            .iter()
            .map(|_| CircuitBreaker::new(params, now))
            .collect()
    });
    let retries = upstream.retries;
    Ok(UpstreamRuntime {
        balancer,
        health,
        breakers,
        budget: RetryBudget::new(retries.budget_ratio, retries.min_per_second, now),
        retries: retries.attempts,
        hash_key,
        sticky,
    })
}

/// Returns the Retry-After seconds of a 503 for an upstream with no available server: the time
/// until the first ejection ends, rounded up to whole seconds, at least 1 and at most
/// `MAX_RETRY_AFTER`.
pub fn retry_after(upstream: &UpstreamRuntime, now: Instant) -> u64 {
    let soonest = upstream
        .health
        .iter()
        .filter_map(|health| health.passive.ejected_until())
        .filter(|until| *until > now)
        .min()
        .map(|until| until - now);
    let wait = soonest.unwrap_or(Duration::from_secs(1));
    wait.as_secs_f64().ceil().clamp(1.0, MAX_RETRY_AFTER.as_secs_f64()) as u64
}

/// Upper bound on the Retry-After of a 503 for an upstream without available servers, so
/// that clients come back within a minute even when the next server returns later.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

//! Conversion of an Ocelot `ocelot.json` into a ringway configuration.
//!
//! [`convert`] maps every Ocelot setting that ringway can honour to ringway keys and returns a
//! [`Note`] for every other one. A note is an error where running without the setting would
//! expose or break routes, and a warning where behaviour changes in a way an operator should
//! know about. Ocelot
//! reads its JSON through .NET configuration binding, which ignores the case of keys, so keys
//! are matched case-insensitively here too. Key paths in notes use the spelling of the file.
//!
//! The output is JSON for [`crate::config::parse`], which still checks it, so a value that
//! converts but is invalid for ringway (an unresolvable host name, say) is reported there.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value, json};
use crate::config::{self, Config, ConfigError};
use crate::routing::headers::FORWARDING_NAMES;

/// Listen address when the file gives no port: Ocelot's own port comes from the ASP.NET host
/// settings, which are not in ocelot.json.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Ocelot's `ClientIdHeader` default: the request header that names a rate-limited client.
pub const OCELOT_CLIENT_ID_HEADER: &str = "ClientId";

/// Ocelot's default route priority (`FileRoute.Priority`). Ocelot gives a route whose upstream
/// template is only `/{name}` priority 0, so that every other route wins over it.
pub const OCELOT_DEFAULT_PRIORITY: i64 = 1;

/// Polly's default failure ratio of the circuit breaker that Ocelot 23.2 and later builds.
pub const OCELOT_FAILURE_RATIO: f64 = 0.8;

/// Polly's default sampling duration of that circuit breaker, in milliseconds.
pub const OCELOT_SAMPLING_DURATION_MS: u64 = 10_000;

/// Ocelot's break duration, in milliseconds, when `DurationOfBreak` is missing or not positive.
pub const OCELOT_BREAK_DURATION_MS: u64 = 5_000;

/// Status code that Ocelot sends when a client exceeds its rate limit, and ringway as well.
const RATE_LIMIT_STATUS: u64 = 429;

/// Severity of a [`Note`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Running the converted file would expose or break routes, so it must not start.
    Error,
    /// The converted file runs, but behaves differently from Ocelot in the way described.
    Warning,
}

/// One Ocelot setting that the conversion could not carry over exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub severity: Severity,
    /// Ocelot key path, such as `Routes[2].AuthenticationOptions`.
    pub path: String,
    /// Difference in ringway's behaviour.
    pub message: String,
    /// Action to take instead.
    pub instead: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{severity}: {}: {}; instead, {}",
            self.path, self.message, self.instead
        )
    }
}

/// The result of [`convert`].
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The ringway configuration.
    pub config: Value,
    /// Notes in file order.
    pub notes: Vec<Note>,
}

impl Conversion {
    /// Returns whether any note is an error, in which case the configuration must not run.
    pub fn has_errors(&self) -> bool {
        self.notes
            .iter()
            .any(|note| note.severity == Severity::Error)
    }
}

/// Reason a configuration file could not be used.
pub enum LoadFailure {
    /// ringway's validation rejected the file, or the file converted from Ocelot.
    Invalid {
        errors: Vec<ConfigError>,
        converted: bool,
    },
    /// An ocelot.json with settings ringway cannot honour.
    Ocelot(Vec<Note>),
}

impl LoadFailure {
    /// Returns the failure as configuration errors: Ocelot notes keyed by their Ocelot path.
    pub fn into_config_errors(self) -> Vec<ConfigError> {
        match self {
            LoadFailure::Invalid { errors, .. } => errors,
            LoadFailure::Ocelot(notes) => notes
                .into_iter()
                .filter(|note| note.severity == Severity::Error)
                .map(|note| ConfigError {
                    path: note.path,
                    message: note.message,
                    fix: note.instead,
                })
                .collect(),
        }
    }
}

/// Loads `path` as a ringway configuration, converting it first when it is an ocelot.json.
/// Returns the configuration with the warnings of the conversion.
pub fn load(path: &std::path::Path) -> Result<(Config, Vec<Note>), LoadFailure> {
    let root = std::fs::read_to_string(path).ok().and_then(|text| {
        serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}')).ok()
    });
    let Some(root) = root.filter(is_ocelot) else {
        // config::load reports unreadable files and JSON syntax errors with their position.
        return config::load(path)
            .map(|config| (config, Vec::new()))
            .map_err(|errors| LoadFailure::Invalid {
                errors,
                converted: false,
            });
    };
    let conversion = convert(&root);
    if conversion.has_errors() {
        return Err(LoadFailure::Ocelot(conversion.notes));
    }
    match config::parse(&conversion.config.to_string()) {
        Ok(config) => Ok((config, conversion.notes)),
        Err(errors) => Err(LoadFailure::Invalid {
            errors,
            converted: true,
        }),
    }
}

/// Returns whether `root` looks like an ocelot.json: an object with a `ReRoutes` or
/// `GlobalConfiguration` key in any letter case, or a `Routes` key whose routes have Ocelot
/// path templates. ringway's own `routes` key is lower case and contains no such templates.
pub fn is_ocelot(root: &Value) -> bool {
    let Value::Object(map) = root else {
        return false;
    };
    map.iter().any(|(key, value)| {
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "reroutes" | "globalconfiguration" => true,
            "routes" => {
                key != "routes"
                    || value
                        .as_array()
                        .is_some_and(|routes| routes.iter().any(has_ocelot_template))
            }
            _ => false,
        }
    })
}

fn has_ocelot_template(route: &Value) -> bool {
    route.as_object().is_some_and(|route| {
        route.keys().any(|key| {
            key.eq_ignore_ascii_case("UpstreamPathTemplate")
                || key.eq_ignore_ascii_case("DownstreamPathTemplate")
        })
    })
}

/// Converts the parsed ocelot.json `root` into a ringway configuration and notes.
pub fn convert(root: &Value) -> Conversion {
    let mut converter = Converter::default();
    let config = converter.convert_root(root);
    Conversion {
        config,
        notes: converter.notes,
    }
}

/// An Ocelot JSON object whose keys are read case-insensitively, remembering which keys were
/// read so that the others can be reported as unknown.
struct Section<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    read: Vec<String>,
}

impl<'a> Section<'a> {
    fn new(path: &str, value: Option<&'a Value>) -> Section<'a> {
        Section {
            path: path.to_owned(),
            map: value.and_then(Value::as_object),
            read: Vec::new(),
        }
    }

    /// Returns the key as spelled in the file and its value.
    fn entry(&mut self, name: &str) -> Option<(&'a str, &'a Value)> {
        self.read.push(name.to_ascii_lowercase());
        let map = self.map?;
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(key, value)| (key.as_str(), value))
    }

    fn get(&mut self, name: &str) -> Option<&'a Value> {
        self.entry(name)
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }

    /// Returns the key path of `name` with the file's spelling when the key is present.
    fn path_of(&mut self, name: &str) -> String {
        let key = self.entry(name).map_or(name, |(key, _)| key);
        join(&self.path, key)
    }

    fn string(&mut self, name: &str) -> Option<&'a str> {
        self.get(name)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    }

    fn number(&mut self, name: &str) -> Option<f64> {
        self.get(name).and_then(|value| match value {
            Value::Number(number) => number.as_f64(),
            // .NET binding also reads numbers written as strings.
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        })
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        self.get(name).and_then(|value| match value {
            Value::Bool(flag) => Some(*flag),
            Value::String(text) => text.trim().parse::<bool>().ok().or_else(|| {
                match text.trim().to_ascii_lowercase().as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }
            }),
            _ => None,
        })
    }

    /// Returns the keys that were never read, with their values.
    fn unread(&self) -> Vec<(&'a str, &'a Value)> {
        let Some(map) = self.map else {
            return Vec::new();
        };
        map.iter()
            .filter(|(key, _)| !self.read.contains(&key.to_ascii_lowercase()))
            .map(|(key, value)| (key.as_str(), value))
            .collect()
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Returns whether a value carries no setting: null, false, zero, empty, or an object or array
/// of such values. Ocelot samples often list every key with an empty value.
fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.iter().all(is_empty_value),
        Value::Object(map) => map.values().all(is_empty_value),
    }
}

/// An upstream group: the servers and the policies that Ocelot sets per route but ringway
/// sets per upstream.
#[derive(PartialEq)]
struct Group {
    servers: Vec<String>,
    policies: Map<String, Value>,
}

/// Settings from GlobalConfiguration that apply to every route.
#[derive(Default)]
struct Globals {
    base_url: Option<String>,
    scheme: Option<String>,
    client_id_header: Option<String>,
    load_balancer: Option<Value>,
    qos: Option<Value>,
    timeout_s: Option<f64>,
}

#[derive(Default)]
struct Converter {
    notes: Vec<Note>,
    globals: Globals,
    groups: Vec<(String, Group)>,
    route_names: BTreeSet<String>,
}

impl Converter {
    fn note(
        &mut self,
        severity: Severity,
        path: &str,
        message: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.notes.push(Note {
            severity,
            path: path.to_owned(),
            message: message.into(),
            instead: instead.into(),
        });
    }

    fn error(&mut self, path: &str, message: impl Into<String>, instead: impl Into<String>) {
        self.note(Severity::Error, path, message, instead);
    }

    fn warning(&mut self, path: &str, message: impl Into<String>, instead: impl Into<String>) {
        self.note(Severity::Warning, path, message, instead);
    }

    fn warn_unknown(&mut self, section: &Section<'_>) {
        for (key, _) in section.unread() {
            let path = join(&section.path, key);
            self.warning(
                &path,
                format!("unknown Ocelot key {key:?} is ignored"),
                "check its spelling, or configure its effect in the ringway file by hand",
            );
        }
    }

    fn convert_root(&mut self, root: &Value) -> Value {
        let mut top = Section::new("", Some(root));
        if top.map.is_none() {
            self.error(
                "",
                "the file is not a JSON object",
                "convert an ocelot.json whose top level is an object",
            );
            return json!({});
        }
        let global = top
            .entry("GlobalConfiguration")
            .map(|(key, value)| (key.to_owned(), value));
        let (request_id, listen) = match global {
            Some((key, value)) => self.convert_global(&key, value),
            None => (
                None,
                self.listen_address(None, "GlobalConfiguration.BaseUrl"),
            ),
        };

        let mut routes = Vec::new();
        for name in ["Routes", "ReRoutes"] {
            let Some((key, value)) = top.entry(name) else {
                continue;
            };
            let Some(items) = value.as_array() else {
                self.error(
                    key,
                    "expected an array of routes",
                    "write the routes as a JSON array",
                );
                continue;
            };
            for (index, item) in items.iter().enumerate() {
                if let Some(route) = self.convert_route(&format!("{key}[{index}]"), item) {
                    routes.push(route);
                }
            }
        }
        for (name, what) in [
            (
                "Aggregates",
                "aggregates combine the responses of several routes, which ringway does not do",
            ),
            (
                "DynamicRoutes",
                "dynamic routes find services through service discovery, which ringway does not do",
            ),
        ] {
            if let Some((key, value)) = top.entry(name)
                && !is_empty_value(value)
            {
                self.error(
                    key,
                    format!("{what}, so these paths would answer 404"),
                    "serve the combined or discovered endpoints from an upstream service and route to it",
                );
            }
        }
        self.warn_unknown(&top);

        let mut upstreams = Map::new();
        for (name, group) in &self.groups {
            let mut upstream = group.policies.clone();
            upstream.insert("servers".to_owned(), json!(group.servers));
            upstreams.insert(name.clone(), Value::Object(upstream));
        }
        let mut config = json!({
            "workers": "auto",
            "listen": listen,
            "upstreams": upstreams,
            "routes": routes,
        });
        if let Some(header) = request_id {
            config["request_id"] = json!({ "header": header });
        }
        config
    }

    /// Reads GlobalConfiguration and returns the global request id header and the listen address.
    fn convert_global(&mut self, key: &str, value: &Value) -> (Option<String>, String) {
        let mut global = Section::new(key, Some(value));
        self.globals.base_url = global.string("BaseUrl").map(str::to_owned);
        let base_url_path = global.path_of("BaseUrl");
        let listen = self.listen_address(self.globals.base_url.clone().as_deref(), &base_url_path);
        let request_id = global.string("RequestIdKey").map(str::to_owned);
        self.globals.scheme = global.string("DownstreamScheme").map(str::to_owned);
        self.globals.load_balancer = global
            .get("LoadBalancerOptions")
            .filter(|value| !is_empty_value(value))
            .cloned();
        self.globals.qos = global
            .get("QoSOptions")
            .filter(|value| !is_empty_value(value))
            .cloned();
        self.globals.timeout_s = global.number("Timeout").filter(|seconds| *seconds > 0.0);

        let rate_path = global.path_of("RateLimitOptions");
        let mut rate = Section::new(&rate_path, global.get("RateLimitOptions"));
        self.globals.client_id_header = rate.string("ClientIdHeader").map(str::to_owned);
        if let Some(status) = rate.number("HttpStatusCode")
            && status as u64 != RATE_LIMIT_STATUS
        {
            self.warning(
                &rate.path_of("HttpStatusCode"),
                format!("ringway rejects rate-limited requests with status 429, not {status}"),
                "accept 429 in clients, which RFC 6585 defines for this case",
            );
        }
        if rate.string("QuotaExceededMessage").is_some() {
            self.warning(
                &rate.path_of("QuotaExceededMessage"),
                "ringway sends its own response body to rate-limited clients, not this message",
                "let clients rely on the 429 status rather than the body",
            );
        }
        if rate.boolean("DisableRateLimitHeaders") != Some(true) && rate.map.is_some() {
            self.warning(
                &rate_path,
                "ringway does not send Ocelot's X-Rate-Limit-Limit, -Remaining and -Reset headers",
                "let clients back off on status 429 instead of reading these headers",
            );
        }
        rate.entry("RateLimitCounterPrefix");
        self.warn_unknown(&rate);

        if let Some((provider_key, provider)) = global.entry("ServiceDiscoveryProvider")
            && !is_empty_value(provider)
        {
            self.error(
                &join(key, provider_key),
                "ringway does not use service discovery (Consul, Eureka, Kubernetes), so routes that name a ServiceName would have no servers",
                "list each route's servers in DownstreamHostAndPorts, or put a DNS name there, which ringway resolves at start",
            );
        }
        if let Some((auth_key, auth)) = global.entry("AuthenticationOptions")
            && !is_empty_value(auth)
        {
            self.report_authentication(&join(key, auth_key));
        }
        self.report_common_unsupported(&mut global);
        for ignored in ["CacheOptions", "MetadataOptions"] {
            if let Some((ignored_key, value)) = global.entry(ignored)
                && !is_empty_value(value)
            {
                self.warning(
                    &join(key, ignored_key),
                    "ringway has no response cache or route metadata, so this setting is ignored",
                    "cache in the upstream services or in a cache in front of ringway",
                );
            }
        }
        self.warn_unknown(&global);
        (request_id, listen)
    }

    /// Returns the listen address: the BaseUrl's port, on loopback when the BaseUrl names a
    /// loopback host and on every interface otherwise.
    fn listen_address(&mut self, base_url: Option<&str>, path: &str) -> String {
        let Some((host, Some(port))) = base_url.map(split_url_authority) else {
            self.warning(
                path,
                format!(
                    "ocelot.json sets no port to listen on, so ringway listens on {DEFAULT_LISTEN}"
                ),
                "set \"listen\" in the converted file to the address clients connect to",
            );
            return DEFAULT_LISTEN.to_owned();
        };
        let host = host.to_ascii_lowercase();
        let address = if host == "localhost" || host.starts_with("127.") {
            format!("127.0.0.1:{port}")
        } else if host == "[::1]" {
            format!("[::1]:{port}")
        } else {
            format!("0.0.0.0:{port}")
        };
        self.warning(
            path,
            format!("ocelot.json has no listen address, so ringway listens on {address}, the BaseUrl's port"),
            "set \"listen\" in the converted file if Ocelot listened elsewhere (ASPNETCORE_URLS or Kestrel settings)",
        );
        address
    }

    fn convert_route(&mut self, path: &str, value: &Value) -> Option<Value> {
        if !value.is_object() {
            self.error(
                path,
                "expected a route object",
                "write each route as a JSON object",
            );
            return None;
        }
        let mut section = Section::new(path, Some(value));
        let mut route = Map::new();
        let mut valid = true;

        let upstream_template_path = section.path_of("UpstreamPathTemplate");
        let Some(upstream_template) = section.string("UpstreamPathTemplate") else {
            self.error(
                &upstream_template_path,
                "the route has no UpstreamPathTemplate",
                "add the path that clients request, such as \"/api/{everything}\"",
            );
            return None;
        };
        let template =
            self.convert_upstream_template(&upstream_template_path, upstream_template)?;
        route.insert("path".to_owned(), json!(template));
        let upstream_placeholders = placeholder_names(upstream_template);

        if let Some(downstream_template) = section.string("DownstreamPathTemplate") {
            let downstream_path = section.path_of("DownstreamPathTemplate");
            if downstream_template.contains('?') {
                self.error(
                    &downstream_path,
                    "ringway rewrites only the path, so the query in this template would be lost",
                    "move the query parameters into the route's \"query\" \"set\" rules of the converted file",
                );
                valid = false;
            } else if let Some(missing) = placeholder_names(downstream_template)
                .into_iter()
                .find(|name| !upstream_placeholders.contains(name))
            {
                self.error(
                    &downstream_path,
                    format!("placeholder {{{missing}}} does not appear in UpstreamPathTemplate, so it has no value"),
                    "use only placeholders that the upstream template captures",
                );
                valid = false;
            } else if downstream_template != upstream_template {
                route.insert("rewrite".to_owned(), json!({ "path": downstream_template }));
            }
        }

        let scheme_path = section.path_of("DownstreamScheme");
        let scheme = section
            .string("DownstreamScheme")
            .map(str::to_owned)
            .or_else(|| self.globals.scheme.clone())
            .unwrap_or_else(|| "http".to_owned());
        if !scheme.eq_ignore_ascii_case("http") {
            self.error(
                &scheme_path,
                format!("ringway does not speak {scheme:?} to upstreams, only plain HTTP/1.1"),
                "expose the service over plain HTTP on a trusted network, or keep a TLS-speaking proxy next to the service",
            );
            valid = false;
        }

        if let Some(methods) = section.get("UpstreamHttpMethod") {
            let mut upper: Vec<String> = Vec::new();
            let items: Vec<&Value> = match methods {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in items {
                if let Some(method) = item.as_str().map(str::to_ascii_uppercase)
                    && !upper.contains(&method)
                {
                    upper.push(method);
                }
            }
            if !upper.is_empty() {
                route.insert("methods".to_owned(), json!(upper));
            }
        }
        if let Some(host) = section.string("UpstreamHost") {
            route.insert("host".to_owned(), json!(host));
        }
        let priority = if catch_all_only(upstream_template) {
            // The conversion ranks a catch-all template below every other route, as
            // OCELOT_DEFAULT_PRIORITY describes; the key is still read, so that it is reported
            // as overridden rather than unknown.
            let priority_path = section.path_of("Priority");
            if let Some(written) = section.number("Priority").filter(|written| *written != 0.0) {
                self.warning(
                    &priority_path,
                    format!(
                        "a catch-all template is converted with priority 0, below every other route, so Priority {written} is not applied"
                    ),
                    "set \"priority\" in the converted file if this route must win over others",
                );
            }
            0
        } else {
            section
                .number("Priority")
                .map_or(OCELOT_DEFAULT_PRIORITY, |priority| priority as i64)
        };
        if priority != 0 {
            route.insert("priority".to_owned(), json!(priority));
        }
        let case_sensitive = section
            .boolean("RouteIsCaseSensitive")
            .or_else(|| section.boolean("ReRouteIsCaseSensitive"))
            .unwrap_or(false);
        if !case_sensitive {
            route.insert("case_sensitive".to_owned(), json!(false));
        }
        if let Some(key) = section.string("Key")
            && key.len() <= crate::config::MAX_ROUTE_NAME_BYTES
            && key.bytes().all(|b| (b' '..=b'~').contains(&b))
            && self.route_names.insert(key.to_owned())
        {
            route.insert("name".to_owned(), json!(key));
        }
        if let Some(header) = section.string("RequestIdKey") {
            route.insert("request_id_header".to_owned(), json!(header));
        }

        let servers = self.convert_servers(&mut section);
        let policies = self.convert_policies(&mut section, &mut route, servers.as_deref());
        self.convert_rate_limit(&mut section, &mut route);
        let base_urls: Vec<String> = servers
            .iter()
            .flatten()
            .map(|server| format!("http://{server}"))
            .collect();
        for (key, target) in [
            ("UpstreamHeaderTransform", "request_headers"),
            ("DownstreamHeaderTransform", "response_headers"),
        ] {
            let transform_path = section.path_of(key);
            if let Some(Value::Object(transform)) = section.get(key) {
                let rules = self.convert_header_transform(
                    &transform_path,
                    transform,
                    &base_urls,
                    target == "request_headers",
                );
                match rules {
                    Some(rules) if !rules.is_empty() => {
                        route.insert(target.to_owned(), Value::Array(rules));
                    }
                    Some(_) => {}
                    None => valid = false,
                }
            }
        }
        self.convert_header_templates(&mut section, &mut route);
        if !self.convert_security(&mut section, &mut route) {
            valid = false;
        }
        if !self.report_route_unsupported(&mut section) {
            valid = false;
        }
        self.warn_unknown(&section);

        let (Some(servers), Some(policies), true) = (servers, policies, valid) else {
            return None;
        };
        let upstream = self.group_name(Group { servers, policies });
        route.insert("upstream".to_owned(), json!(upstream));
        Some(Value::Object(route))
    }

    /// Converts an Ocelot upstream template to a ringway `path` template. A placeholder that
    /// fills the last segment becomes a `{*name}` catch-all, because Ocelot matches it
    /// across slashes.
    fn convert_upstream_template(&mut self, path: &str, template: &str) -> Option<String> {
        if template.contains('?') {
            self.error(
                path,
                "ringway matches routes on the path only, so the query in this template would be ignored",
                "route on the path, and let the upstream service check the query parameters",
            );
            return None;
        }
        let template = if template.starts_with('/') {
            template.to_owned()
        } else {
            format!("/{template}")
        };
        let last_start = template.rfind('/').map_or(0, |slash| slash + 1);
        let last = &template[last_start..];
        let is_single_placeholder = last.len() > 2
            && last.starts_with('{')
            && last.ends_with('}')
            && !last[1..last.len() - 1].contains(['{', '}']);
        if is_single_placeholder {
            let name = &last[1..last.len() - 1];
            Some(format!("{}{{*{name}}}", &template[..last_start]))
        } else {
            Some(template)
        }
    }

    /// Returns the `host:port` servers of a route, reporting routes without any.
    fn convert_servers(&mut self, section: &mut Section<'_>) -> Option<Vec<String>> {
        let service_path = section.path_of("ServiceName");
        if section.string("ServiceName").is_some() {
            section.entry("ServiceNamespace");
            self.error(
                &service_path,
                "ringway does not use service discovery, so this route would have no servers",
                "list the service's servers in DownstreamHostAndPorts, or a DNS name that ringway resolves at start",
            );
            return None;
        }
        section.entry("ServiceNamespace");
        let hosts_path = section.path_of("DownstreamHostAndPorts");
        let items = section
            .get("DownstreamHostAndPorts")
            .and_then(Value::as_array);
        let mut servers = Vec::new();
        for (index, item) in items.into_iter().flatten().enumerate() {
            let item_path = format!("{hosts_path}[{index}]");
            let mut entry = Section::new(&item_path, Some(item));
            let host = entry.string("Host");
            let port = entry.number("Port");
            self.warn_unknown(&entry);
            let (Some(host), Some(port)) = (host, port) else {
                self.error(
                    &item_path,
                    "the entry needs a Host and a Port",
                    "write {\"Host\": \"10.0.0.5\", \"Port\": 8080}",
                );
                return None;
            };
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            let server = format!("{host}:{port}");
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
        if servers.is_empty() {
            self.error(
                &hosts_path,
                "the route has no downstream servers",
                "list at least one {\"Host\", \"Port\"} entry",
            );
            return None;
        }
        Some(servers)
    }

    /// Converts LoadBalancerOptions and QoSOptions into upstream policies (and route timeouts),
    /// trimming `servers` to the first one for NoLoadBalancer.
    fn convert_policies(
        &mut self,
        section: &mut Section<'_>,
        route: &mut Map<String, Value>,
        servers: Option<&[String]>,
    ) -> Option<Map<String, Value>> {
        let mut policies = Map::new();
        let balancer_path = section.path_of("LoadBalancerOptions");
        let balancer = section
            .get("LoadBalancerOptions")
            .filter(|value| !is_empty_value(value))
            .cloned()
            .or_else(|| self.globals.load_balancer.clone());
        let mut options = Section::new(&balancer_path, balancer.as_ref());
        // Ocelot before version 7 took the balancer name from a "LoadBalancer" string.
        let old_style = section.string("LoadBalancer");
        let kind = options
            .string("Type")
            .or(old_style)
            .unwrap_or("NoLoadBalancer")
            .to_owned();
        let mut valid = true;
        match kind.to_ascii_lowercase().as_str() {
            "roundrobin" => {}
            "leastconnection" => {
                policies.insert("balance".to_owned(), json!("least_connections"));
            }
            "noloadbalancer" => {
                if let Some(servers) = servers
                    && servers.len() > 1
                {
                    self.warning(
                        &balancer_path,
                        format!(
                            "Ocelot's NoLoadBalancer sends every request to the first server, so ringway does too and {} get no requests",
                            servers[1..].join(", ")
                        ),
                        "set LoadBalancerOptions.Type to \"RoundRobin\" or \"LeastConnection\" to spread requests, or list one server",
                    );
                }
            }
            "cookiestickysessions" => {
                let cookie = options.string("Key");
                let expiry_ms = options.number("Expiry").filter(|ms| *ms > 0.0);
                match cookie {
                    Some(cookie) => {
                        // ringway writes its own cookie, so it must not reuse the application's
                        // cookie name (often the session cookie) or it would overwrite it.
                        let own: String = cookie
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
                            .collect();
                        let own = format!("ringway_sticky_{own}");
                        let mut sticky = json!({ "name": own });
                        if let Some(ms) = expiry_ms {
                            sticky["max_age_s"] = json!(((ms / 1000.0).ceil() as u64).max(1));
                        }
                        policies.insert("balance".to_owned(), json!("sticky_cookie"));
                        policies.insert("sticky_cookie".to_owned(), sticky);
                        self.warning(
                            &balancer_path,
                            format!(
                                "Ocelot pins the value of the client's {cookie:?} cookie to a server in memory; ringway sets a cookie of its own, {own:?}, to name the server, so a client stays on one server from its first response on, whether or not it has {cookie:?}"
                            ),
                            "nothing, unless clients must share a server by their session: then hash on a header with \"balance\": \"hash\"".to_owned(),
                        );
                    }
                    None => {
                        self.error(
                            &balancer_path,
                            "CookieStickySessions needs a Key, the cookie name",
                            "add \"Key\": \"ringway_sticky\"",
                        );
                        valid = false;
                    }
                }
            }
            _ => {
                self.error(
                    &balancer_path,
                    format!("ringway has no load balancer named {kind:?}"),
                    "use \"RoundRobin\", \"LeastConnection\", \"NoLoadBalancer\" or \"CookieStickySessions\"",
                );
                valid = false;
            }
        }
        options.entry("Key");
        options.entry("Expiry");
        self.warn_unknown(&options);

        let qos_path = section.path_of("QoSOptions");
        let qos = section
            .get("QoSOptions")
            .filter(|value| !is_empty_value(value))
            .cloned()
            .or_else(|| self.globals.qos.clone());
        let mut qos = Section::new(&qos_path, qos.as_ref());
        let exceptions = qos
            .number("ExceptionsAllowedBeforeBreaking")
            .filter(|count| *count > 0.0);
        let timeout_ms = qos.number("TimeoutValue").filter(|ms| *ms > 0.0);
        let break_ms = qos.number("DurationOfBreak").filter(|ms| *ms > 0.0);
        let ratio = qos
            .number("FailureRatio")
            .filter(|ratio| *ratio > 0.0 && *ratio <= 1.0);
        let sampling_ms = qos.number("SamplingDuration").filter(|ms| *ms > 0.0);
        self.warn_unknown(&qos);
        if let Some(exceptions) = exceptions {
            let breaker = json!({
                "min_requests": exceptions as u64,
                "failure_ratio": ratio.unwrap_or(OCELOT_FAILURE_RATIO),
                "window_ms": sampling_ms.map_or(OCELOT_SAMPLING_DURATION_MS, |ms| ms as u64),
                "break_ms": break_ms.map_or(OCELOT_BREAK_DURATION_MS, |ms| ms as u64),
            });
            policies.insert("circuit_breaker".to_owned(), breaker);
            self.warning(
                &qos_path,
                format!(
                    "ringway's circuit breaker opens when {}% of at least {} requests within the window fail; Ocelot before 23.2 (Polly 7) counted {} failures in a row instead, and ringway's breaker covers the whole upstream, not one route",
                    (ratio.unwrap_or(OCELOT_FAILURE_RATIO) * 100.0).round(),
                    exceptions as u64,
                    exceptions as u64
                ),
                "tune \"circuit_breaker\" of the converted upstream if the upstream is shared or the thresholds differ",
            );
        }
        let timeout_ms = timeout_ms.or_else(|| {
            section
                .number("Timeout")
                .filter(|seconds| *seconds > 0.0)
                .or(self.globals.timeout_s)
                .map(|seconds| seconds * 1000.0)
        });
        if let Some(ms) = timeout_ms {
            let ms = ms as u64;
            route.insert(
                "timeouts".to_owned(),
                json!({ "upstream_head_ms": ms, "upstream_read_ms": ms }),
            );
            self.warning(
                &qos_path,
                format!(
                    "the {ms} ms timeout becomes ringway's upstream_head_ms and upstream_read_ms: the wait for the response head and each gap in its body, not the whole exchange; ringway answers a timeout with 504 Gateway Timeout where Ocelot sends 503"
                ),
                "lower the route's \"timeouts\" if the whole exchange must end in that time, and expect 504 in clients",
            );
        }
        valid.then_some(policies)
    }

    fn convert_rate_limit(&mut self, section: &mut Section<'_>, route: &mut Map<String, Value>) {
        let path = section.path_of("RateLimitOptions");
        let mut options = Section::new(&path, section.get("RateLimitOptions"));
        let enabled = options.boolean("EnableRateLimiting").unwrap_or(false);
        let period = options.string("Period");
        let limit = options.number("Limit");
        let timespan = options.number("PeriodTimespan");
        let whitelist: Vec<Value> = options
            .get("ClientWhitelist")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter(|item| item.as_str().is_some_and(|text| !text.is_empty()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.warn_unknown(&options);
        if !enabled {
            return;
        }

        let seconds = period.and_then(period_seconds);
        let (Some(seconds), Some(limit)) = (seconds, limit.filter(|limit| *limit >= 1.0)) else {
            self.error(
                &path,
                format!("the rate limit needs a Period such as \"1s\", \"5m\", \"1h\" or \"1d\" and a Limit of at least 1, found {period:?} and {limit:?}"),
                "correct Period and Limit, or set EnableRateLimiting to false",
            );
            return;
        };
        let header = self
            .globals
            .client_id_header
            .clone()
            .unwrap_or_else(|| OCELOT_CLIENT_ID_HEADER.to_owned());
        let mut rate_limit = json!({
            "requests_per_second": limit / seconds,
            "burst": limit as u64,
            "key": format!("header:{header}"),
        });
        if !whitelist.is_empty() {
            rate_limit["whitelist"] = Value::Array(whitelist);
        }
        route.insert("rate_limit".to_owned(), rate_limit);
        let lockout = timespan.map_or(String::new(), |seconds| {
            format!(", and it does not lock a client out for PeriodTimespan ({seconds} s)")
        });
        self.warning(
            &path,
            format!(
                "ringway refills each client's bucket continuously at {limit} per {} s, where Ocelot resets a counter every Period{lockout}; clients are told apart by the {header:?} header",
                seconds
            ),
            "check that the continuous rate suits the clients, and raise \"burst\" for bursty ones",
        );
    }

    /// Converts an Upstream- or DownstreamHeaderTransform into ringway header rules.
    /// Returns `None` after reporting a transform that cannot be expressed.
    fn convert_header_transform(
        &mut self,
        path: &str,
        transform: &Map<String, Value>,
        base_urls: &[String],
        request: bool,
    ) -> Option<Vec<Value>> {
        let mut rules = Vec::new();
        let mut valid = true;
        for (name, value) in transform {
            let rule_path = join(path, name);
            let Some(text) = value.as_str() else {
                self.error(
                    &rule_path,
                    "expected a string value",
                    "write the header value or \"find, replace\" as a string",
                );
                valid = false;
                continue;
            };
            if let Some((find, replace)) = text.split_once(',') {
                let (find, replace) = (find.trim(), replace.trim());
                let finds: Vec<String> = if find.contains("{DownstreamBaseUrl}") {
                    base_urls
                        .iter()
                        .map(|url| find.replace("{DownstreamBaseUrl}", url))
                        .collect()
                } else {
                    vec![find.to_owned()]
                };
                let Some(with) = self.substitute(&rule_path, replace, base_urls) else {
                    valid = false;
                    continue;
                };
                for find in finds {
                    let Some(find) = self.substitute(&rule_path, &find, base_urls) else {
                        valid = false;
                        continue;
                    };
                    if find.contains('{') {
                        self.error(
                            &rule_path,
                            format!(
                                "ringway finds literal text only, so {find:?} cannot be matched"
                            ),
                            "write the literal text to find",
                        );
                        valid = false;
                        continue;
                    }
                    rules.push(json!({ "replace": name, "find": find, "with": with }));
                }
                continue;
            }
            if request
                && name.eq_ignore_ascii_case("X-Forwarded-For")
                && text.trim() == "{RemoteIpAddress}"
            {
                self.warning(
                    &rule_path,
                    "Ocelot replaces the X-Forwarded-For chain with the client address; ringway always appends the client address to the chain it received, so the rule is dropped",
                    "trust only the hops your own proxies add when reading X-Forwarded-For in the upstream",
                );
                continue;
            }
            if FORWARDING_NAMES.iter().any(|known| name.eq_ignore_ascii_case(known)) {
                self.warning(
                    &rule_path,
                    format!("ringway writes {name} itself for every request, so this transform is dropped"),
                    "read the header ringway sends: X-Forwarded-For, Forwarded and Via are appended to, X-Forwarded-Proto and X-Forwarded-Host are set",
                );
                continue;
            }
            let Some(value) = self.substitute(&rule_path, text, base_urls) else {
                valid = false;
                continue;
            };
            rules.push(json!({ "set": name, "value": value }));
        }
        valid.then_some(rules)
    }

    /// Replaces Ocelot placeholders with ringway ones or literal text. Returns `None` after
    /// reporting a placeholder that has no equivalent.
    fn substitute(&mut self, path: &str, text: &str, base_urls: &[String]) -> Option<String> {
        let mut result = text
            .replace("{RemoteIpAddress}", "{client_addr}")
            .replace("{UpstreamHost}", "{host}");
        if result.contains("{TraceId}") {
            result = result.replace("{TraceId}", "{request_id}");
            self.warning(
                path,
                "ringway has no tracing id, so {TraceId} becomes the request id {request_id}",
                "read the request id header in the upstream to correlate requests",
            );
        }
        if result.contains("{BaseUrl}") {
            let Some(base_url) = self.globals.base_url.clone() else {
                self.error(
                    path,
                    "{BaseUrl} needs GlobalConfiguration.BaseUrl, which is not set",
                    "set BaseUrl, or write the gateway's URL in place of {BaseUrl}",
                );
                return None;
            };
            result = result.replace("{BaseUrl}", base_url.trim_end_matches('/'));
        }
        if result.contains("{DownstreamBaseUrl}") {
            if base_urls.len() != 1 {
                self.error(
                    path,
                    "{DownstreamBaseUrl} is the URL of the server that handled the request, which ringway cannot insert when the route has several servers",
                    "use {DownstreamBaseUrl} only as the text to find, or write the server's URL",
                );
                return None;
            }
            result = result.replace("{DownstreamBaseUrl}", &base_urls[0]);
        }
        const RINGWAY_PLACEHOLDERS: [&str; 5] = [
            "{client_addr}",
            "{host}",
            "{scheme}",
            "{route}",
            "{request_id}",
        ];
        let mut rest = result.as_str();
        while let Some(start) = rest.find('{') {
            let Some(length) = rest[start..].find('}') else {
                break;
            };
            let placeholder = &rest[start..start + length + 1];
            if !RINGWAY_PLACEHOLDERS.contains(&placeholder) {
                self.error(
                    path,
                    format!("placeholder {placeholder} has no ringway equivalent"),
                    "use {RemoteIpAddress}, {UpstreamHost}, {BaseUrl}, {DownstreamBaseUrl} or literal text",
                );
                return None;
            }
            rest = &rest[start + length + 1..];
        }
        Some(result)
    }

    /// Converts UpstreamHeaderTemplates with literal values into header matches.
    fn convert_header_templates(
        &mut self,
        section: &mut Section<'_>,
        route: &mut Map<String, Value>,
    ) {
        let path = section.path_of("UpstreamHeaderTemplates");
        let Some(Value::Object(templates)) = section.get("UpstreamHeaderTemplates") else {
            return;
        };
        let mut headers = Map::new();
        for (name, value) in templates {
            match value.as_str() {
                Some(text) if !text.contains('{') => {
                    headers.insert(name.clone(), json!(text));
                }
                _ => self.error(
                    &join(&path, name),
                    "ringway matches header values exactly and cannot capture placeholders from them",
                    "match a literal value, and let the upstream read the header",
                ),
            }
        }
        if !headers.is_empty() {
            route.insert("headers".to_owned(), Value::Object(headers));
        }
    }

    /// Converts SecurityOptions into allow and deny lists. Returns false after reporting a
    /// setting that cannot be expressed.
    fn convert_security(
        &mut self,
        section: &mut Section<'_>,
        route: &mut Map<String, Value>,
    ) -> bool {
        let path = section.path_of("SecurityOptions");
        let mut options = Section::new(&path, section.get("SecurityOptions"));
        let mut valid = true;
        for (key, target) in [("IPAllowedList", "allow"), ("IPBlockedList", "deny")] {
            let list_path = options.path_of(key);
            let items: Vec<&str> = options
                .get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if items.is_empty() {
                continue;
            }
            if let Some(range) = items.iter().find(|item| item.contains('-')) {
                self.error(
                    &list_path,
                    format!("ringway takes addresses and CIDRs, not the range {range:?}"),
                    "write the range as CIDRs, such as \"192.168.0.0/24\"",
                );
                valid = false;
                continue;
            }
            route.insert(target.to_owned(), json!(items));
        }
        if options.boolean("ExcludeAllowedFromBlocked") == Some(true) {
            self.error(
                &options.path_of("ExcludeAllowedFromBlocked"),
                "in ringway a deny entry always wins over an allow entry, so allowed addresses inside a blocked range would be rejected",
                "narrow the blocked list so that it leaves out the allowed addresses",
            );
            valid = false;
        }
        self.warn_unknown(&options);
        valid
    }

    fn report_authentication(&mut self, path: &str) {
        self.error(
            path,
            "ringway does not authenticate requests, so this route would be open to anyone",
            "authenticate in the upstream service, or in an authenticating proxy in front of ringway",
        );
    }

    /// Reports route keys that ringway cannot honour. Returns false when one is an error.
    fn report_route_unsupported(&mut self, section: &mut Section<'_>) -> bool {
        let mut valid = true;
        let auth_path = section.path_of("AuthenticationOptions");
        if let Some(auth) = section.get("AuthenticationOptions")
            && !is_empty_value(auth)
        {
            self.report_authentication(&auth_path);
            valid = false;
        }

        let errors: [(&str, &str, &str); 6] = [
            (
                "RouteClaimsRequirement",
                "ringway does not check claims, so requests without them would be let through",
                "check the claims in the upstream service",
            ),
            (
                "AddClaimsToRequest",
                "ringway does not read tokens, so the upstream would not receive these claims",
                "read the claims from the token in the upstream service",
            ),
            (
                "AddHeadersToRequest",
                "ringway does not read claims, so the upstream would not receive these headers",
                "read the claims from the token in the upstream service",
            ),
            (
                "AddQueriesToRequest",
                "ringway does not read claims, so the upstream would not receive these query parameters",
                "read the claims from the token in the upstream service",
            ),
            (
                "ChangeDownstreamPathTemplate",
                "ringway does not build paths from claims, so requests would reach the wrong path",
                "route on paths the client sends, or resolve the path in the upstream service",
            ),
            (
                "DownstreamHttpMethod",
                "ringway forwards the client's method unchanged, so the upstream would receive a different method",
                "accept the client's method in the upstream service",
            ),
        ];
        for (key, message, instead) in errors {
            let path = section.path_of(key);
            if let Some(value) = section.get(key)
                && !is_empty_value(value)
            {
                self.error(&path, message, instead);
                valid = false;
            }
        }

        let path = section.path_of("DelegatingHandlers");
        if let Some(value) = section.get("DelegatingHandlers")
            && !is_empty_value(value)
        {
            self.error(
                &path,
                "ringway cannot run Ocelot's .NET delegating handlers, so whatever they do to requests would stop",
                "move their work into the upstream service, or remove them if they only log",
            );
            valid = false;
        }
        let path = section.path_of("FileCacheOptions");
        if let Some(value) = section.get("FileCacheOptions")
            && !is_empty_value(value)
        {
            self.warning(
                &path,
                "ringway has no response cache, so every request reaches the upstream",
                "cache in the upstream service, or make sure it can take the uncached load",
            );
        }
        let path = section.path_of("Metadata");
        if let Some(value) = section.get("Metadata")
            && !is_empty_value(value)
        {
            self.warning(
                &path,
                "ringway has no route metadata, so this setting is ignored",
                "remove it, or keep the data elsewhere",
            );
        }
        self.report_common_unsupported(section);
        valid
    }

    /// Reports keys that may appear both on routes and in GlobalConfiguration.
    fn report_common_unsupported(&mut self, section: &mut Section<'_>) {
        let handler_path = section.path_of("HttpHandlerOptions");
        if let Some(Value::Object(options)) = section.get("HttpHandlerOptions") {
            let defaults = [
                ("allowautoredirect", Value::Bool(false)),
                ("usecookiecontainer", Value::Bool(false)),
                ("usetracing", Value::Bool(false)),
                ("useproxy", Value::Bool(true)),
            ];
            let changed: Vec<&str> = options
                .iter()
                .filter(|(key, value)| {
                    let lower = key.to_ascii_lowercase();
                    match defaults.iter().find(|(name, _)| *name == lower) {
                        Some((_, default)) => *value != default,
                        // MaxConnectionsPerServer and PooledConnectionLifetimeSeconds tune
                        // .NET's connection pool, which ringway replaces with its own.
                        None => !is_empty_value(value),
                    }
                })
                .map(|(key, _)| key.as_str())
                .collect();
            if !changed.is_empty() {
                self.warning(
                    &handler_path,
                    format!(
                        "ringway ignores {}: it passes redirects and cookies through to the client, has no tracing, no outgoing proxy and its own connection pool",
                        changed.join(", ")
                    ),
                    "set max_idle_connections_per_server and timeouts in the converted file if the pool needs tuning",
                );
            }
        }
        let path = section.path_of("DangerousAcceptAnyServerCertificateValidator");
        if section.boolean("DangerousAcceptAnyServerCertificateValidator") == Some(true) {
            self.warning(&path, "ringway connects to upstreams over plain HTTP, so no certificate is checked at all", "remove this setting");
        }
        for key in ["DownstreamHttpVersion", "DownstreamHttpVersionPolicy"] {
            let path = section.path_of(key);
            let Some(value) = section.string(key) else {
                continue;
            };
            let harmless = ["1.0", "1.1", "RequestVersionOrLower", "RequestVersionExact"];
            if !harmless.contains(&value) {
                self.warning(
                    &path,
                    format!("ringway speaks HTTP/1.1 to upstreams, not {value:?}"),
                    "make sure the upstream accepts HTTP/1.1; gRPC services need an HTTP/2 proxy",
                );
            }
        }
    }

    /// Returns the name of the upstream for `group`, creating it when no route used the same
    /// servers and policies before. Names come from the first server, made unique with a number.
    fn group_name(&mut self, group: Group) -> String {
        if let Some((name, _)) = self.groups.iter().find(|(_, existing)| *existing == group) {
            return name.clone();
        }
        let base: String = group.servers[0]
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .trim_matches('-')
            .to_owned();
        let base = if base.is_empty() {
            "upstream".to_owned()
        } else {
            base
        };
        let mut name = base.clone();
        let mut counter = 2;
        while self.groups.iter().any(|(existing, _)| *existing == name) {
            name = format!("{base}-{counter}");
            counter += 1;
        }
        self.groups.push((name.clone(), group));
        name
    }
}

/// Returns the host and port of an URL such as `http://localhost:5000/path`.
fn split_url_authority(url: &str) -> (&str, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(end) = authority.find(']') {
        let port = authority[end + 1..]
            .strip_prefix(':')
            .and_then(|port| port.parse().ok());
        return (&authority[..=end], port);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (authority, None),
    }
}

/// Returns the placeholder names of an Ocelot template, without braces.
fn placeholder_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else {
            break;
        };
        names.push(
            rest[start + 1..start + length]
                .trim_start_matches('*')
                .to_owned(),
        );
        rest = &rest[start + length + 1..];
    }
    names
}

/// Returns whether an Ocelot template is only `/{name}`, which Ocelot matches against every
/// path with priority 0.
fn catch_all_only(template: &str) -> bool {
    let inner = template
        .strip_prefix("/{")
        .and_then(|rest| rest.strip_suffix('}'));
    inner.is_some_and(|name| !name.is_empty() && !name.contains(['{', '}', '/']))
}

/// Returns the length in seconds of an Ocelot rate limit Period such as `"1s"`, `"5m"`,
/// `"1h"`, `"1d"` or `"500ms"`.
fn period_seconds(period: &str) -> Option<f64> {
    let period = period.trim();
    let (number, unit) = if let Some(number) = period.strip_suffix("ms") {
        (number, 0.001)
    } else {
        let unit = match period.chars().last()? {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            _ => return None,
        };
        (&period[..period.len() - 1], unit)
    };
    let number: f64 = number.trim().parse().ok()?;
    (number > 0.0).then_some(number * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = include_str!("../tests/ocelot/plain.json");
    const GATEWAY: &str = include_str!("../tests/ocelot/gateway.json");
    const REROUTES: &str = include_str!("../tests/ocelot/reroutes.json");
    const REJECTED: &str = include_str!("../tests/ocelot/rejected.json");

    fn convert_text(text: &str) -> Conversion {
        convert(&serde_json::from_str(text).expect("fixture is JSON"))
    }

    fn note_paths(conversion: &Conversion, severity: Severity) -> Vec<&str> {
        conversion
            .notes
            .iter()
            .filter(|note| note.severity == severity)
            .map(|note| note.path.as_str())
            .collect()
    }

    #[test]
    fn fixtures_pass_ringway_validation() {
        for (name, text) in [
            ("plain", PLAIN),
            ("gateway", GATEWAY),
            ("reroutes", REROUTES),
        ] {
            let conversion = convert_text(text);
            assert!(!conversion.has_errors(), "{name}: {:#?}", conversion.notes);
            if let Err(errors) = crate::config::parse(&conversion.config.to_string()) {
                panic!("{name}: converted file is invalid: {errors:#?}");
            }
        }
    }

    #[test]
    fn plain_routes_convert_exactly() {
        let conversion = convert_text(PLAIN);
        assert_eq!(conversion.config["listen"], json!("127.0.0.1:5000"));
        assert_eq!(conversion.config["workers"], json!("auto"));
        assert_eq!(
            conversion.config["routes"],
            json!([
                {
                    "path": "/products/{*id}", "rewrite": { "path": "/api/products/{id}" },
                    "methods": ["GET", "PUT", "DELETE"], "priority": 1, "case_sensitive": false,
                    "upstream": "127.0.0.1-5001"
                },
                {
                    "path": "/products", "rewrite": { "path": "/api/products" },
                    "methods": ["GET", "POST"], "priority": 1, "upstream": "127.0.0.1-5001"
                },
                {
                    "path": "/orders/{*everything}", "rewrite": { "path": "/api/orders/{everything}" },
                    "host": "shop.example.com", "priority": 2, "case_sensitive": false,
                    "upstream": "localhost-5002"
                },
                {
                    "path": "/{*url}", "methods": ["GET"], "case_sensitive": false,
                    "upstream": "127.0.0.1-5003"
                }
            ])
        );
        assert_eq!(
            conversion.config["upstreams"],
            json!({
                "127.0.0.1-5001": { "servers": ["127.0.0.1:5001"] },
                "localhost-5002": { "servers": ["localhost:5002"] },
                "127.0.0.1-5003": { "servers": ["127.0.0.1:5003"] }
            })
        );
        // Empty AuthenticationOptions, RouteClaimsRequirement and FileCacheOptions set nothing.
        assert_eq!(
            note_paths(&conversion, Severity::Warning),
            ["GlobalConfiguration.BaseUrl"]
        );
    }

    #[test]
    fn gateway_policies_convert_exactly() {
        let conversion = convert_text(GATEWAY);
        let config = &conversion.config;
        assert_eq!(
            config["upstreams"]["10.0.0.11-8080"],
            json!({
                "servers": ["10.0.0.11:8080", "10.0.0.12:8080"],
                "balance": "least_connections",
                "circuit_breaker": { "min_requests": 3, "failure_ratio": 0.8, "window_ms": 10000, "break_ms": 10000 }
            })
        );
        assert_eq!(
            config["upstreams"]["10.0.0.21-9000"],
            json!({
                "servers": ["10.0.0.21:9000", "10.0.0.22:9000"],
                "balance": "sticky_cookie",
                "sticky_cookie": { "name": "ringway_sticky_ASP_NET_SessionId", "max_age_s": 1800 }
            })
        );
        let catalog = &config["routes"][0];
        assert_eq!(catalog["name"], json!("catalog"));
        assert_eq!(
            catalog["rate_limit"],
            json!({ "requests_per_second": 2.0, "burst": 120, "key": "header:X-Client-Id", "whitelist": ["internal-batch"] })
        );
        assert_eq!(
            catalog["timeouts"],
            json!({ "upstream_head_ms": 5000, "upstream_read_ms": 5000 })
        );
        assert_eq!(
            catalog["request_headers"],
            json!([
                { "set": "X-Gateway", "value": "ringway" },
                { "set": "X-Original-Host", "value": "{host}" }
            ])
        );
        assert_eq!(
            catalog["response_headers"],
            json!([
                { "replace": "Location", "find": "http://10.0.0.11:8080", "with": "https://api.example.com" },
                { "replace": "Location", "find": "http://10.0.0.12:8080", "with": "https://api.example.com" },
                { "replace": "X-Powered-By", "find": "Ocelot", "with": "ringway" }
            ])
        );
        assert_eq!(catalog["request_id_header"], json!("X-Catalog-Request"));
        assert_eq!(config["routes"][1]["allow"], json!(["10.0.0.0/8"]));
        assert_eq!(config["routes"][1]["deny"], json!(["10.9.0.0/16"]));
        assert_eq!(
            config["routes"][2]["timeouts"],
            json!({ "upstream_head_ms": 30000, "upstream_read_ms": 30000 })
        );
        assert_eq!(
            config["request_id"],
            json!({ "header": "X-Correlation-Id" })
        );

        let warnings = note_paths(&conversion, Severity::Warning);
        for path in [
            "Routes[0].QoSOptions",
            "Routes[0].RateLimitOptions",
            "Routes[0].UpstreamHeaderTransform.X-Forwarded-For",
            "Routes[1].LoadBalancerOptions",
            "GlobalConfiguration.RateLimitOptions.QuotaExceededMessage",
        ] {
            assert!(
                warnings.contains(&path),
                "no warning for {path}: {warnings:?}"
            );
        }
        let timeout_note = conversion
            .notes
            .iter()
            .find(|note| note.path == "Routes[0].QoSOptions" && note.message.contains("timeout"))
            .expect("timeout note");
        assert!(timeout_note.message.contains("504"), "{timeout_note:#?}");
        assert!(timeout_note.message.contains("503"), "{timeout_note:#?}");
    }

    #[test]
    fn reroutes_file_is_recognized() {
        let root: Value = serde_json::from_str(REROUTES).unwrap();
        assert!(is_ocelot(&root));
        let conversion = convert(&root);
        let routes = conversion.config["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1]["methods"], json!(["GET", "DELETE"]));
        assert_eq!(
            conversion.config["request_id"],
            json!({ "header": "OcRequestId" })
        );
        assert_eq!(
            conversion.config["upstreams"]["127.0.0.1-6001-2"]["servers"],
            json!(["127.0.0.1:6001", "127.0.0.1:6002"]),
            "the old LoadBalancer key picks round robin over both servers"
        );
    }

    #[test]
    fn rejected_file_names_every_key() {
        let conversion = convert_text(REJECTED);
        assert!(conversion.has_errors());
        assert_eq!(
            note_paths(&conversion, Severity::Error),
            [
                "GlobalConfiguration.ServiceDiscoveryProvider",
                "Routes[0].AuthenticationOptions",
                "Routes[0].RouteClaimsRequirement",
                "Routes[0].AddHeadersToRequest",
                "Routes[1].DownstreamScheme",
                "Routes[1].ServiceName",
                "Routes[2].AddQueriesToRequest",
                "Aggregates",
            ]
        );
        let warnings = note_paths(&conversion, Severity::Warning);
        assert!(
            warnings.contains(&"Routes[2].FileCacheOptions"),
            "{warnings:?}"
        );
        assert!(
            warnings.contains(&"Routes[2].UnknownSetting"),
            "{warnings:?}"
        );
        assert_eq!(conversion.config["routes"], json!([]));
        assert_eq!(
            conversion.config["upstreams"],
            json!({}),
            "rejected routes leave no upstreams"
        );
    }

    #[test]
    fn keys_match_in_any_case() {
        let conversion = convert(&json!({
            "routes": [{
                "upstreampathtemplate": "/a/{x}",
                "DOWNSTREAMPATHTEMPLATE": "/b/{x}",
                "downstreamHostAndPorts": [{ "host": "127.0.0.1", "PORT": 1 }],
                "upstreamHttpMethod": ["pOsT"]
            }]
        }));
        assert!(
            conversion
                .notes
                .iter()
                .all(|note| note.path.ends_with("BaseUrl")),
            "{:#?}",
            conversion.notes
        );
        assert_eq!(
            conversion.config["routes"][0],
            json!({
                "path": "/a/{*x}", "rewrite": { "path": "/b/{x}" }, "methods": ["POST"],
                "priority": 1, "case_sensitive": false, "upstream": "127.0.0.1-1"
            })
        );
    }

    #[test]
    fn ringway_files_are_not_ocelot() {
        let ringway = json!({ "workers": 1, "listen": "127.0.0.1:8080",
            "upstreams": { "origin": { "servers": ["127.0.0.1:9090"] } },
            "routes": [{ "path_prefix": "/", "upstream": "origin" }] });
        assert!(!is_ocelot(&ringway));
        assert!(!is_ocelot(&json!({ "routes": [] })));
        assert!(is_ocelot(&json!({ "Routes": [] })));
        assert!(is_ocelot(
            &json!({ "routes": [{ "UpstreamPathTemplate": "/" }] })
        ));
        assert!(is_ocelot(&json!({ "globalconfiguration": {} })));
        assert!(!is_ocelot(&json!([1])));
    }

    #[test]
    fn upstream_templates() {
        let cases = [
            ("/{everything}", "/{*everything}"),
            ("/api/{everything}", "/api/{*everything}"),
            ("/api/{id}/items", "/api/{id}/items"),
            ("/files/{name}.json", "/files/{name}.json"),
            ("/", "/"),
            ("api", "/api"),
        ];
        for (ocelot, ringway) in cases {
            let mut converter = Converter::default();
            assert_eq!(
                converter.convert_upstream_template("p", ocelot).as_deref(),
                Some(ringway),
                "{ocelot}"
            );
        }
        let mut converter = Converter::default();
        assert_eq!(converter.convert_upstream_template("p", "/a?b={c}"), None);
        assert_eq!(converter.notes[0].severity, Severity::Error);
    }

    #[test]
    fn rate_limit_periods() {
        let cases = [
            ("1s", Some(1.0)),
            ("5m", Some(300.0)),
            ("1h", Some(3600.0)),
            ("1d", Some(86_400.0)),
            ("500ms", Some(0.5)),
        ];
        for (period, seconds) in cases {
            assert_eq!(period_seconds(period), seconds, "{period}");
        }
        for period in ["", "s", "1w", "-1s", "0s"] {
            assert_eq!(period_seconds(period), None, "{period}");
        }
    }

    #[test]
    fn listen_address_from_base_url() {
        let cases = [
            ("http://localhost:5000", "127.0.0.1:5000"),
            ("http://127.0.0.1:0/", "127.0.0.1:0"),
            ("http://[::1]:7000", "[::1]:7000"),
            ("http://gateway.example.com:8000/base", "0.0.0.0:8000"),
            ("https://api.example.com", DEFAULT_LISTEN),
        ];
        for (base_url, listen) in cases {
            let conversion =
                convert(&json!({ "GlobalConfiguration": { "BaseUrl": base_url }, "Routes": [] }));
            assert_eq!(conversion.config["listen"], json!(listen), "{base_url}");
            assert_eq!(conversion.notes[0].path, "GlobalConfiguration.BaseUrl");
        }
    }

    #[test]
    fn unsupported_route_keys_are_errors() {
        let keys = [
            (
                "AuthenticationOptions",
                json!({ "AuthenticationProviderKey": "Bearer" }),
            ),
            ("RouteClaimsRequirement", json!({ "role": "admin" })),
            (
                "AddClaimsToRequest",
                json!({ "sub": "Claims[sub] > value" }),
            ),
            (
                "AddHeadersToRequest",
                json!({ "X-User": "Claims[sub] > value" }),
            ),
            (
                "AddQueriesToRequest",
                json!({ "user": "Claims[sub] > value" }),
            ),
            (
                "ChangeDownstreamPathTemplate",
                json!({ "tenant": "Claims[tenant] > value" }),
            ),
            ("DownstreamHttpMethod", json!("POST")),
            ("DelegatingHandlers", json!(["AuditHandler"])),
            ("ServiceName", json!("orders")),
            ("DownstreamScheme", json!("wss")),
            ("LoadBalancerOptions", json!({ "Type": "MyBalancer" })),
        ];
        for (key, value) in keys {
            let mut route = json!({
                "UpstreamPathTemplate": "/a", "DownstreamPathTemplate": "/a",
                "DownstreamHostAndPorts": [{ "Host": "127.0.0.1", "Port": 1 }]
            });
            route[key] = value;
            let conversion = convert(&json!({ "Routes": [route] }));
            assert_eq!(
                note_paths(&conversion, Severity::Error),
                [format!("Routes[0].{key}")],
                "{key}"
            );
            assert_eq!(
                conversion.config["routes"],
                json!([]),
                "{key}: the route must not be kept"
            );
        }
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        let conversion = convert(&json!({ "Routes": [{
            "UpstreamPathTemplate": "/a", "DownstreamHostAndPorts": [{ "Host": "127.0.0.1", "Port": 1 }],
            "UpstreamHeaderTransform": { "X-Claim": "{Claims}" }
        }] }));
        assert_eq!(
            note_paths(&conversion, Severity::Error),
            ["Routes[0].UpstreamHeaderTransform.X-Claim"]
        );
    }

    #[test]
    fn note_display_format() {
        let note = Note {
            severity: Severity::Error,
            path: "Routes[2].AuthenticationOptions".to_owned(),
            message: "m".to_owned(),
            instead: "i".to_owned(),
        };
        assert_eq!(
            note.to_string(),
            "error: Routes[2].AuthenticationOptions: m; instead, i"
        );
    }
}

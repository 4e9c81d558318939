//! Choosing a server of an upstream group for each request.
//!
//! A `Balancer` belongs to one worker and counts only that worker's requests, so least
//! connections and power of two compare the active requests of this worker, not of the process.
//! The caller passes an `available` predicate on every pick (health, circuit breaker), and a
//! server for which it returns false is skipped without changing the balancer's tables, so it
//! gets its share back as soon as it is available again.
//!
//! Only weighted round robin reads the weights. The other policies treat all servers alike.

use std::fmt;

use super::{Sink, put_decimal};

/// Points on the hash ring per server. More points spread keys more evenly over the servers
/// but make the ring larger. With 160, each of 5 servers receives between 10% and 30% of
/// 10 000 keys in `hash_spreads_keys`.
pub const VIRTUAL_NODES_PER_SERVER: usize = 160;

/// Length in bytes of a sticky cookie value: a 64-bit hash in lowercase hex.
pub const STICKY_TOKEN_LEN: usize = 16;

/// Offset basis of 64-bit FNV-1a.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// Prime of 64-bit FNV-1a.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Prefix hashed before a server key to derive its sticky cookie value, so cookie values differ
/// from the server's ring points.
const STICKY_TOKEN_DOMAIN: &[u8] = b"ringway-sticky\0";

/// Rule for choosing among the available servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Each server in turn.
    RoundRobin,
    /// Smooth weighted round robin, the scheme of nginx's `ngx_http_upstream_get_peer`: a server
    /// of weight 5 among two of weight 1 is picked 5 times in every 7, spread out
    /// (a a b a c a a) rather than in a run.
    WeightedRoundRobin,
    /// The server with the fewest active requests; ties go round robin.
    LeastConnections,
    /// The less busy of two servers drawn at random.
    PowerOfTwo,
    /// A consistent hash ring over the server keys, so a request key maps to the same server
    /// while it is available and removing one server moves only that server's keys. Requests
    /// without a key go round robin.
    Hash,
    /// The server named by a cookie, else round robin with a new cookie.
    StickyCookie,
}

/// A server of the group, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Relative share under weighted round robin; at least 1.
    pub weight: u32,
    /// Stable identity of the server, its address as written in the configuration. The hash
    /// ring and sticky cookies are derived from it, so it must not depend on the server's
    /// position in the list.
    pub key: String,
}

/// The parts of a request that a policy may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickRequest<'a> {
    /// Key for `Policy::Hash`, such as the client address or a header value.
    pub hash_key: Option<&'a [u8]>,
    /// Value of the sticky cookie, if the request carried one.
    pub sticky: Option<&'a [u8]>,
}

/// The result of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index of the server in the list passed to `Balancer::new`.
    pub server: usize,
    /// The response must set the sticky cookie to `Balancer::cookie_value(server)`, because
    /// the request carried none or one that names an unknown or unavailable server.
    pub set_cookie: bool,
}

/// The reason a balancer cannot be built from a server list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalancerError {
    NoServers,
    ZeroWeight { key: String },
}

impl fmt::Display for BalancerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalancerError::NoServers => write!(f, "upstream has no servers: list at least one"),
            BalancerError::ZeroWeight { key } => write!(
                f,
                "server \"{key}\" has weight 0: use a weight of at least 1, or remove the server"
            ),
        }
    }
}

impl std::error::Error for BalancerError {}

struct ServerState {
    weight: i64,
    /// Running score of smooth weighted round robin.
    current_weight: i64,
    /// Requests of this worker in flight to the server.
    active: u32,
    cookie: [u8; STICKY_TOKEN_LEN],
}

#[derive(Debug, Clone, Copy)]
struct RingPoint {
    hash: u64,
    server: usize,
}

/// Server choice for one upstream group on one worker.
pub struct Balancer {
    policy: Policy,
    servers: Vec<ServerState>,
    /// Index where the next round-robin scan starts.
    next: usize,
    rng: XorShift64,
    /// Ring points sorted by hash, empty unless the policy is `Hash`.
    ring: Vec<RingPoint>,
}

impl Balancer {
    /// Builds a balancer over `servers`. `seed` seeds the random draws of `PowerOfTwo`, so
    /// giving each worker its own seed keeps workers from drawing the same servers in step.
    pub fn new(
        policy: Policy,
        servers: &[ServerInfo],
        seed: u64,
    ) -> Result<Balancer, BalancerError> {
        if servers.is_empty() {
            return Err(BalancerError::NoServers);
        }
        if let Some(server) = servers.iter().find(|server| server.weight == 0) {
            return Err(BalancerError::ZeroWeight {
                key: server.key.clone(),
            });
        }

        let states = servers
            .iter()
            .map(|server| ServerState {
                weight: i64::from(server.weight),
                current_weight: 0,
                active: 0,
                cookie: sticky_token(server.key.as_bytes()),
            })
            .collect();
        let ring = if policy == Policy::Hash {
            build_ring(servers)
        } else {
            Vec::new()
        };
        Ok(Balancer {
            policy,
            servers: states,
            next: 0,
            rng: XorShift64::new(seed),
            ring,
        })
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Returns the number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Returns false: a balancer always has a server, because `new` rejects an empty list.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Chooses a server for `request` among those for which `available` returns true, or
    /// returns None when no server is available.
    pub fn pick(
        &mut self,
        request: &PickRequest<'_>,
        available: impl Fn(usize) -> bool,
    ) -> Option<Pick> {
        let server = match self.policy {
            Policy::RoundRobin => self.round_robin(&available),
            Policy::WeightedRoundRobin => self.smooth_weighted(&available),
            Policy::LeastConnections => self.least_connections(&available),
            Policy::PowerOfTwo => self.power_of_two(&available),
            Policy::Hash => match request.hash_key {
                Some(key) => self.ring_lookup(key, &available),
                None => self.round_robin(&available),
            },
            Policy::StickyCookie => return self.sticky(request.sticky, &available),
        };
        server.map(|server| Pick {
            server,
            set_cookie: false,
        })
    }

    /// Counts a request to `server` as started, for the policies that compare load.
    pub fn started(&mut self, server: usize) {
        let state = &mut self.servers[server];
        state.active = state.active.saturating_add(1);
    }

    /// Counts a request to `server` as finished, whatever its outcome.
    pub fn finished(&mut self, server: usize) {
        let state = &mut self.servers[server];
        state.active = state.active.saturating_sub(1);
    }

    /// Returns the number of this worker's requests in flight to `server`.
    pub fn active(&self, server: usize) -> u32 {
        self.servers[server].active
    }

    /// Returns the sticky cookie value that names `server`. It is derived from the server's
    /// key, so it stays the same across restarts and reordering of the server list. It is a
    /// public hash, not a secret: anyone who can guess a server's address can compute it and
    /// choose that server.
    pub fn cookie_value(&self, server: usize) -> &[u8] {
        &self.servers[server].cookie
    }

    fn round_robin(&mut self, available: &impl Fn(usize) -> bool) -> Option<usize> {
        let count = self.servers.len();
        for offset in 0..count {
            let server = (self.next + offset) % count;
            if available(server) {
                self.next = (server + 1) % count;
                return Some(server);
            }
        }
        None
    }

    /// Adds each available server's weight to its score, picks the highest score (the lowest
    /// index on a tie) and subtracts the total weight from the winner.
    fn smooth_weighted(&mut self, available: &impl Fn(usize) -> bool) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<(usize, i64)> = None;
        for (index, state) in self.servers.iter_mut().enumerate() {
            if !available(index) {
                continue;
            }
            state.current_weight += state.weight;
            total += state.weight;
            if best.is_none_or(|(_, score)| state.current_weight > score) {
                best = Some((index, state.current_weight));
            }
        }
        let (winner, _) = best?;
        self.servers[winner].current_weight -= total;
        Some(winner)
    }

    fn least_connections(&mut self, available: &impl Fn(usize) -> bool) -> Option<usize> {
        let count = self.servers.len();
        let mut best: Option<usize> = None;
        for offset in 0..count {
            let server = (self.next + offset) % count;
            if !available(server) {
                continue;
            }
            if best.is_none_or(|best| self.servers[server].active < self.servers[best].active) {
                best = Some(server);
            }
        }
        let best = best?;
        self.next = (best + 1) % count;
        Some(best)
    }

    /// Draws two different available servers uniformly and keeps the one with fewer active
    /// requests, the first drawn on a tie.
    fn power_of_two(&mut self, available: &impl Fn(usize) -> bool) -> Option<usize> {
        let count = (0..self.servers.len()).filter(|&i| available(i)).count();
        match count {
            0 => None,
            1 => self.nth_available(0, available),
            _ => {
                let first = self.rng.below(count);
                let mut second = self.rng.below(count - 1);
                if second >= first {
                    second += 1;
                }
                let first = self.nth_available(first, available)?;
                let second = self.nth_available(second, available)?;
                if self.servers[second].active < self.servers[first].active {
                    Some(second)
                } else {
                    Some(first)
                }
            }
        }
    }

    fn nth_available(&self, n: usize, available: &impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.servers.len()).filter(|&i| available(i)).nth(n)
    }

    /// Walks the ring clockwise from the key's hash to the first point of an available server.
    fn ring_lookup(&self, key: &[u8], available: &impl Fn(usize) -> bool) -> Option<usize> {
        let hash = stable_hash(key);
        let start = self.ring.partition_point(|point| point.hash < hash);
        let len = self.ring.len();
        (0..len)
            .map(|step| self.ring[(start + step) % len].server)
            .find(|&server| available(server))
    }

    fn sticky(
        &mut self,
        cookie: Option<&[u8]>,
        available: &impl Fn(usize) -> bool,
    ) -> Option<Pick> {
        if let Some(cookie) = cookie {
            let named = self
                .servers
                .iter()
                .enumerate()
                .find(|(index, state)| state.cookie == cookie && available(*index));
            if let Some((server, _)) = named {
                return Some(Pick {
                    server,
                    set_cookie: false,
                });
            }
        }
        self.round_robin(available).map(|server| Pick {
            server,
            set_cookie: true,
        })
    }
}

/// Hashes `bytes` with 64-bit FNV-1a followed by the MurmurHash3 64-bit finalizer, which
/// spreads the similar inputs FNV leaves close together (addresses differing in one digit)
/// over the whole range. Ring positions and sticky cookies depend on the exact output, so
/// changing this function moves hashed keys and invalidates cookies already issued.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    finalize(fnv1a(FNV_OFFSET_BASIS, bytes))
}

fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        state ^= u64::from(byte);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// Mixes the bits of `h` with the 64-bit finalizer ("fmix64") of MurmurHash3.
fn finalize(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

fn build_ring(servers: &[ServerInfo]) -> Vec<RingPoint> {
    let mut ring = Vec::with_capacity(servers.len() * VIRTUAL_NODES_PER_SERVER);
    for (server, info) in servers.iter().enumerate() {
        let key_state = fnv1a(FNV_OFFSET_BASIS, info.key.as_bytes());
        for node in 0..VIRTUAL_NODES_PER_SERVER {
            let hash = finalize(fnv1a(key_state, &(node as u32).to_le_bytes()));
            ring.push(RingPoint { hash, server });
        }
    }
    // Sorting by key as well as hash makes equal hashes, such as those of a server listed
    // twice, resolve the same way whatever the order of the list.
    ring.sort_unstable_by(|a, b| {
        a.hash
            .cmp(&b.hash)
            .then_with(|| servers[a.server].key.cmp(&servers[b.server].key))
    });
    ring
}

fn sticky_token(key: &[u8]) -> [u8; STICKY_TOKEN_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = finalize(fnv1a(fnv1a(FNV_OFFSET_BASIS, STICKY_TOKEN_DOMAIN), key));
    let mut token = [0u8; STICKY_TOKEN_LEN];
    for (index, digit) in token.iter_mut().enumerate() {
        let shift = 60 - 4 * index;
        *digit = HEX[((hash >> shift) & 0xf) as usize];
    }
    token
}

/// Finds the value of cookie `name` in a Cookie header value such as `a=1; ringway_sticky=abc`.
///
/// Names compare case-sensitively. A value in double quotes, which the cookie-value grammar of
/// RFC 6265 section 4.1.1 allows, is returned without them. Pairs without `=` are skipped. The first match wins. A request
/// may carry several Cookie header fields, and the caller searches each one.
pub fn find_cookie<'a>(header_value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header_value.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_whitespace(pair);
        let equals = pair.iter().position(|&b| b == b'=')?;
        if trim_whitespace(&pair[..equals]) != name {
            return None;
        }
        let value = trim_whitespace(&pair[equals + 1..]);
        match value {
            [b'"', inner @ .., b'"'] => Some(inner),
            _ => Some(value),
        }
    })
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |end| end + 1);
    &bytes[start..end]
}

/// Writes the `Set-Cookie` header line, CRLF included, that pins a client to a server.
/// The cookie applies to every path, expires after `max_age_s` seconds and is hidden from
/// scripts.
pub fn write_set_cookie(sink: &mut impl Sink, name: &[u8], value: &[u8], max_age_s: u64) {
    sink.put(b"Set-Cookie: ");
    sink.put(name);
    sink.put(b"=");
    sink.put(value);
    sink.put(b"; Path=/; Max-Age=");
    put_decimal(sink, max_age_s);
    sink.put(b"; HttpOnly\r\n");
}

/// The xorshift64* generator: fast, small and good enough to draw servers, not for secrets.
struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    fn new(seed: u64) -> XorShift64 {
        // A zero state would stay zero forever, and similar seeds would start similar
        // sequences, so the seed is scrambled and zero replaced.
        let state = finalize(seed ^ FNV_OFFSET_BASIS);
        XorShift64 {
            state: if state == 0 { FNV_OFFSET_BASIS } else { state },
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Returns a number in `0..bound` by multiplying instead of dividing (Lemire's method).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(weights: &[u32]) -> Vec<ServerInfo> {
        weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| ServerInfo {
                weight,
                key: format!("10.0.0.{}:8080", index + 1),
            })
            .collect()
    }

    fn keyed(keys: &[&str]) -> Vec<ServerInfo> {
        keys.iter()
            .map(|key| ServerInfo {
                weight: 1,
                key: key.to_string(),
            })
            .collect()
    }

    fn all(_: usize) -> bool {
        true
    }

    fn pick_server(balancer: &mut Balancer, available: impl Fn(usize) -> bool) -> usize {
        balancer
            .pick(&PickRequest::default(), available)
            .expect("a server is available")
            .server
    }

    fn counts(
        balancer: &mut Balancer,
        picks: usize,
        available: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut counts = vec![0; balancer.len()];
        for _ in 0..picks {
            counts[pick_server(balancer, &available)] += 1;
        }
        counts
    }

    #[test]
    fn new_rejects_empty_and_zero_weight() {
        let error = Balancer::new(Policy::RoundRobin, &[], 1).err().unwrap();
        assert_eq!(error, BalancerError::NoServers);
        let error = Balancer::new(Policy::WeightedRoundRobin, &servers(&[1, 0]), 1)
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "server \"10.0.0.2:8080\" has weight 0: use a weight of at least 1, or remove the server"
        );
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let mut balancer = Balancer::new(Policy::RoundRobin, &servers(&[1, 1, 1]), 1).unwrap();
        let picked: Vec<usize> = (0..7).map(|_| pick_server(&mut balancer, all)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn round_robin_skips_unavailable() {
        let mut balancer = Balancer::new(Policy::RoundRobin, &servers(&[1, 1, 1]), 1).unwrap();
        let picked: Vec<usize> = (0..4)
            .map(|_| pick_server(&mut balancer, |i| i != 1))
            .collect();
        assert_eq!(picked, [0, 2, 0, 2]);
        let picked: Vec<usize> = (0..3).map(|_| pick_server(&mut balancer, all)).collect();
        assert_eq!(picked, [0, 1, 2], "server 1 takes its turn again once back");
    }

    #[test]
    fn every_policy_none_when_all_down() {
        let policies = [
            Policy::RoundRobin,
            Policy::WeightedRoundRobin,
            Policy::LeastConnections,
            Policy::PowerOfTwo,
            Policy::Hash,
            Policy::StickyCookie,
        ];
        for policy in policies {
            let mut balancer = Balancer::new(policy, &servers(&[1, 2, 3]), 1).unwrap();
            let request = PickRequest {
                hash_key: Some(b"user-1"),
                sticky: Some(b"0123456789abcdef"),
            };
            assert_eq!(balancer.pick(&request, |_| false), None, "{policy:?}");
        }
    }

    #[test]
    fn smooth_weighted_interleaves_5_1_1() {
        let mut balancer =
            Balancer::new(Policy::WeightedRoundRobin, &servers(&[5, 1, 1]), 1).unwrap();
        let picked: Vec<usize> = (0..7).map(|_| pick_server(&mut balancer, all)).collect();
        assert_eq!(picked, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn smooth_weighted_exact_counts() {
        let cases: [(&[u32], usize, &[usize]); 4] = [
            (&[5, 1, 1], 700, &[500, 100, 100]),
            (&[1, 1, 1], 300, &[100, 100, 100]),
            (&[3, 2], 500, &[300, 200]),
            (&[10, 1], 110, &[100, 10]),
        ];
        for (weights, picks, expected) in cases {
            let mut balancer =
                Balancer::new(Policy::WeightedRoundRobin, &servers(weights), 1).unwrap();
            assert_eq!(
                counts(&mut balancer, picks, all),
                expected,
                "weights {weights:?}"
            );
        }
    }

    #[test]
    fn smooth_weighted_server_leaves_and_returns() {
        let mut balancer =
            Balancer::new(Policy::WeightedRoundRobin, &servers(&[5, 1, 1]), 1).unwrap();
        assert_eq!(counts(&mut balancer, 70, all), [50, 10, 10]);

        // Without server 0 the two light servers alternate.
        assert_eq!(counts(&mut balancer, 100, |i| i != 0), [0, 50, 50]);

        // Once back, server 0 returns to its share. Its score froze while it was away, so the
        // first cycle may be off by one pick, but not more.
        let back = counts(&mut balancer, 700, all);
        for (server, (&got, expected)) in back.iter().zip([500usize, 100, 100]).enumerate() {
            assert!(
                got.abs_diff(expected) <= 1,
                "server {server}: {got} picks, expected {expected}"
            );
        }
    }

    #[test]
    fn least_connections_prefers_idle() {
        let mut balancer =
            Balancer::new(Policy::LeastConnections, &servers(&[1, 1, 1]), 1).unwrap();
        for _ in 0..3 {
            balancer.started(0);
        }
        balancer.started(1);
        assert_eq!(pick_server(&mut balancer, all), 2);
        balancer.started(2);
        balancer.started(2);
        assert_eq!(
            pick_server(&mut balancer, all),
            1,
            "1 and 2 busy, 0 has three"
        );
        balancer.finished(0);
        balancer.finished(0);
        balancer.finished(0);
        assert_eq!(pick_server(&mut balancer, all), 0);
        assert_eq!(balancer.active(0), 0);
        balancer.finished(0);
        assert_eq!(balancer.active(0), 0, "finished never goes below zero");
    }

    #[test]
    fn least_connections_ties_round_robin() {
        let mut balancer =
            Balancer::new(Policy::LeastConnections, &servers(&[1, 1, 1]), 1).unwrap();
        let picked: Vec<usize> = (0..6).map(|_| pick_server(&mut balancer, all)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connections_tracks_load() {
        // Each pick starts a request, and every third pick one request on the busiest server
        // finishes, so the active counts stay within one of each other.
        let mut balancer =
            Balancer::new(Policy::LeastConnections, &servers(&[1, 1, 1, 1]), 1).unwrap();
        for round in 0..400 {
            let server = pick_server(&mut balancer, all);
            balancer.started(server);
            if round % 3 == 2 {
                let busiest = (0..4).max_by_key(|&i| balancer.active(i)).unwrap();
                balancer.finished(busiest);
            }
            let loads: Vec<u32> = (0..4).map(|i| balancer.active(i)).collect();
            let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
            assert!(spread <= 1, "round {round}: loads {loads:?}");
        }
    }

    #[test]
    fn least_connections_skips_unavailable() {
        let mut balancer =
            Balancer::new(Policy::LeastConnections, &servers(&[1, 1, 1]), 1).unwrap();
        balancer.started(1);
        balancer.started(2);
        assert_eq!(pick_server(&mut balancer, |i| i != 0), 1);
    }

    #[test]
    fn power_of_two_avoids_loaded() {
        let mut balancer = Balancer::new(Policy::PowerOfTwo, &servers(&[1, 1, 1]), 7).unwrap();
        for _ in 0..10 {
            balancer.started(0);
        }
        for _ in 0..5 {
            balancer.started(2);
        }
        // Server 0 loses every draw, server 2 wins only against server 0 (one pair in three).
        let picked = counts(&mut balancer, 3000, all);
        assert_eq!(picked[0], 0, "{picked:?}");
        assert!((1800..=2200).contains(&picked[1]), "{picked:?}");
        assert!((800..=1200).contains(&picked[2]), "{picked:?}");
    }

    #[test]
    fn power_of_two_spreads_equal_load() {
        let mut balancer = Balancer::new(Policy::PowerOfTwo, &servers(&[1, 1, 1, 1]), 42).unwrap();
        let picked = counts(&mut balancer, 4000, all);
        for (server, &count) in picked.iter().enumerate() {
            assert!((800..=1200).contains(&count), "server {server}: {picked:?}");
        }
    }

    #[test]
    fn power_of_two_with_one_available() {
        let mut balancer = Balancer::new(Policy::PowerOfTwo, &servers(&[1, 1, 1]), 3).unwrap();
        for _ in 0..20 {
            assert_eq!(pick_server(&mut balancer, |i| i == 2), 2);
        }
        let picked = counts(&mut balancer, 200, |i| i != 1);
        assert_eq!(picked[1], 0);
        assert!(picked[0] > 50, "{picked:?}");
        assert!(picked[2] > 50, "{picked:?}");
    }

    #[test]
    fn power_of_two_seeds_differ() {
        let draw = |seed| {
            let mut balancer = Balancer::new(Policy::PowerOfTwo, &servers(&[1; 8]), seed).unwrap();
            (0..32)
                .map(|_| pick_server(&mut balancer, all))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        assert_ne!(draw(0), draw(1));
    }

    const FIVE: [&str; 5] = [
        "10.0.0.1:8080",
        "10.0.0.2:8080",
        "10.0.0.3:8080",
        "10.0.0.4:8080",
        "10.0.0.5:8080",
    ];

    const KEY_COUNT: usize = 10_000;

    /// Maps each of `KEY_COUNT` user keys to the key of the server it lands on.
    fn placement(keys: &[&str], available: impl Fn(usize) -> bool) -> Vec<String> {
        let mut balancer = Balancer::new(Policy::Hash, &keyed(keys), 1).unwrap();
        (0..KEY_COUNT)
            .map(|user| {
                let key = format!("user-{user}");
                let request = PickRequest {
                    hash_key: Some(key.as_bytes()),
                    sticky: None,
                };
                let server = balancer.pick(&request, &available).unwrap().server;
                keys[server].to_string()
            })
            .collect()
    }

    #[test]
    fn hash_same_key_same_server() {
        let first = placement(&FIVE, all);
        assert_eq!(first, placement(&FIVE, all));
        let mut reversed = FIVE;
        reversed.reverse();
        assert_eq!(
            first,
            placement(&reversed, all),
            "placement follows keys, not positions"
        );
    }

    #[test]
    fn hash_spreads_keys() {
        let first = placement(&FIVE, all);
        for server in FIVE {
            let share = first.iter().filter(|s| *s == server).count();
            assert!(
                (1000..=3000).contains(&share),
                "{server}: {share} of {KEY_COUNT}"
            );
        }
    }

    #[test]
    fn hash_removal_moves_only_its_keys() {
        let before = placement(&FIVE, all);
        let survivors = [FIVE[0], FIVE[1], FIVE[3], FIVE[4]];
        let after = placement(&survivors, all);

        let mut moved = 0;
        for (user, (old, new)) in before.iter().zip(&after).enumerate() {
            if old == FIVE[2] {
                moved += 1;
                assert_ne!(new, FIVE[2]);
            } else {
                assert_eq!(old, new, "user-{user} moved between surviving servers");
            }
        }
        assert!(
            (1200..=2800).contains(&moved),
            "{moved} of {KEY_COUNT} keys moved"
        );
    }

    #[test]
    fn hash_unavailable_server_leaves_and_returns() {
        let before = placement(&FIVE, all);
        let during = placement(&FIVE, |i| i != 2);
        for (user, (old, new)) in before.iter().zip(&during).enumerate() {
            if old == FIVE[2] {
                assert_ne!(new, FIVE[2], "user-{user}");
            } else {
                assert_eq!(old, new, "user-{user} moved between available servers");
            }
        }
        assert_eq!(
            placement(&FIVE, all),
            before,
            "keys return once the server is back"
        );
    }

    #[test]
    fn hash_without_key_goes_round_robin() {
        let mut balancer = Balancer::new(Policy::Hash, &keyed(&FIVE), 1).unwrap();
        let picked: Vec<usize> = (0..6).map(|_| pick_server(&mut balancer, all)).collect();
        assert_eq!(picked, [0, 1, 2, 3, 4, 0]);
    }

    #[test]
    fn stable_hash_is_pinned() {
        // These values are part of the on-the-wire contract: issued cookies and key placement
        // depend on them, so a change here must be deliberate.
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b""), finalize(0xcbf2_9ce4_8422_2325));
        let balancer = Balancer::new(Policy::StickyCookie, &keyed(&["127.0.0.1:9090"]), 1).unwrap();
        assert_eq!(balancer.cookie_value(0), PINNED_COOKIE);
    }

    const PINNED_COOKIE: &[u8] = b"ebf2c520793c7003";

    fn sticky_pick(
        balancer: &mut Balancer,
        cookie: Option<&[u8]>,
        available: impl Fn(usize) -> bool,
    ) -> Pick {
        let request = PickRequest {
            hash_key: None,
            sticky: cookie,
        };
        balancer.pick(&request, available).unwrap()
    }

    #[test]
    fn sticky_cookie_values_are_distinct() {
        let balancer = Balancer::new(Policy::StickyCookie, &keyed(&FIVE), 1).unwrap();
        for a in 0..5 {
            let value = balancer.cookie_value(a);
            assert_eq!(value.len(), STICKY_TOKEN_LEN);
            assert!(
                value
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            for b in 0..a {
                assert_ne!(value, balancer.cookie_value(b), "servers {a} and {b}");
            }
        }
    }

    #[test]
    fn sticky_without_cookie_sets_one() {
        let mut balancer = Balancer::new(Policy::StickyCookie, &keyed(&FIVE), 1).unwrap();
        let pick = sticky_pick(&mut balancer, None, all);
        assert_eq!(
            pick,
            Pick {
                server: 0,
                set_cookie: true
            }
        );
        let pick = sticky_pick(&mut balancer, None, all);
        assert_eq!(
            pick,
            Pick {
                server: 1,
                set_cookie: true
            }
        );
    }

    #[test]
    fn sticky_cookie_selects_server() {
        let mut balancer = Balancer::new(Policy::StickyCookie, &keyed(&FIVE), 1).unwrap();
        let cookie = balancer.cookie_value(3).to_vec();
        for _ in 0..5 {
            let pick = sticky_pick(&mut balancer, Some(&cookie), all);
            assert_eq!(
                pick,
                Pick {
                    server: 3,
                    set_cookie: false
                }
            );
        }
    }

    #[test]
    fn sticky_survives_reorder() {
        let first = Balancer::new(Policy::StickyCookie, &keyed(&FIVE), 1).unwrap();
        let cookie = first.cookie_value(1).to_vec();
        let reordered = [FIVE[4], FIVE[1], FIVE[3], FIVE[0], FIVE[2]];
        let mut second = Balancer::new(Policy::StickyCookie, &keyed(&reordered), 1).unwrap();
        let pick = sticky_pick(&mut second, Some(&cookie), all);
        assert_eq!(reordered[pick.server], FIVE[1]);
        assert!(!pick.set_cookie);

        // A server added in front shifts every index but keeps the cookie meaningful.
        let grown = ["10.0.0.9:8080", FIVE[0], FIVE[1]];
        let mut third = Balancer::new(Policy::StickyCookie, &keyed(&grown), 1).unwrap();
        let pick = sticky_pick(&mut third, Some(&cookie), all);
        assert_eq!(grown[pick.server], FIVE[1]);
    }

    #[test]
    fn sticky_falls_back_on_bad_cookie() {
        let mut balancer = Balancer::new(Policy::StickyCookie, &keyed(&FIVE), 1).unwrap();
        let cookies: [&[u8]; 4] = [b"", b"ffffffffffffffff", b"not-a-token", b"0123"];
        for (index, cookie) in cookies.iter().enumerate() {
            let pick = sticky_pick(&mut balancer, Some(cookie), all);
            assert_eq!(
                pick,
                Pick {
                    server: index,
                    set_cookie: true
                },
                "{cookie:?}"
            );
        }
    }

    #[test]
    fn sticky_server_leaves_and_returns() {
        let mut balancer = Balancer::new(Policy::StickyCookie, &keyed(&FIVE), 1).unwrap();
        let cookie = balancer.cookie_value(2).to_vec();

        let pick = sticky_pick(&mut balancer, Some(&cookie), |i| i != 2);
        assert_ne!(pick.server, 2);
        assert!(pick.set_cookie, "the client must be moved to a new server");

        let pick = sticky_pick(&mut balancer, Some(&cookie), all);
        assert_eq!(
            pick,
            Pick {
                server: 2,
                set_cookie: false
            }
        );
    }

    #[test]
    fn find_cookie_cases() {
        type Case = (&'static [u8], &'static [u8], Option<&'static [u8]>);
        let cases: [Case; 12] = [
            (b"ringway_sticky=abc", b"ringway_sticky", Some(b"abc")),
            (b"a=1; ringway_sticky=abc", b"ringway_sticky", Some(b"abc")),
            (
                b"a=1;ringway_sticky=abc;b=2",
                b"ringway_sticky",
                Some(b"abc"),
            ),
            (
                b"  a=1 ;\tringway_sticky = abc  ",
                b"ringway_sticky",
                Some(b"abc"),
            ),
            (b"ringway_sticky=\"abc\"", b"ringway_sticky", Some(b"abc")),
            (b"ringway_sticky=", b"ringway_sticky", Some(b"")),
            (b"ringway_sticky=a=b", b"ringway_sticky", Some(b"a=b")),
            (b"x_ringway_sticky=abc", b"ringway_sticky", None),
            (b"Ringway_Sticky=abc", b"ringway_sticky", None),
            (b"ringway_sticky; a=1", b"ringway_sticky", None),
            (b"", b"ringway_sticky", None),
            (
                b"ringway_sticky=first; ringway_sticky=second",
                b"ringway_sticky",
                Some(b"first"),
            ),
        ];
        for (header, name, expected) in cases {
            assert_eq!(
                find_cookie(header, name),
                expected,
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn set_cookie_line() {
        let mut out = Vec::new();
        write_set_cookie(&mut out, b"ringway_sticky", b"0123456789abcdef", 3600);
        assert_eq!(
            out,
            b"Set-Cookie: ringway_sticky=0123456789abcdef; Path=/; Max-Age=3600; HttpOnly\r\n"
        );
    }
}

//! Request rate limiting with token buckets, per client key, on one worker.
//!
//! Each worker enforces its own share of a route's limit: `LimitParams::per_worker` divides the
//! rate and the burst by the worker count. A client whose connections all land on one worker
//! gets that worker's share. A client whose connections spread over several workers gets up to
//! the full limit overall but never more. The one exception is a burst smaller than the worker
//! count: each worker's burst is raised to one request, so up to one request per worker is
//! admitted at once.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Instant;

use super::{Sink, put_decimal};

/// Maximum number of client keys one limiter tracks on one worker. When the table is full, the
/// key seen least recently gives up its bucket to the new key. When that bucket has refilled,
/// nothing is lost. Otherwise that client starts over with a full bucket, so a client can
/// exceed its limit when more than this many clients are active at once on one worker and
/// route. A full table takes 384 KiB on 64-bit targets: 40 bytes per key plus an
/// index of `INDEX_SLOTS` 4-byte slots.
pub const MAX_LIMITER_KEYS: usize = 8192;

/// Slots of the open-addressing index: a power of two at least twice `MAX_LIMITER_KEYS`, so
/// the index is at most half full and linear probes stay short.
const INDEX_SLOTS: usize = (2 * MAX_LIMITER_KEYS).next_power_of_two();

/// Marks an empty index slot and the ends of the recency list.
const NO_ENTRY: u32 = u32::MAX;

/// Rate and burst of one worker's token buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitParams {
    /// Tokens added per second, fractions included.
    pub requests_per_second: f64,
    /// Capacity of a bucket, which starts full.
    pub burst: f64,
}

impl LimitParams {
    /// Splits a route's limit over `workers` worker threads. The burst is raised to one token
    /// when the share is smaller, so that every worker can admit a request at all.
    pub fn per_worker(requests_per_second: f64, burst: u32, workers: usize) -> LimitParams {
        let workers = workers.max(1) as f64;
        LimitParams {
            requests_per_second: requests_per_second / workers,
            burst: (f64::from(burst) / workers).max(1.0),
        }
    }
}

/// The outcome of a rate-limit check, with the values of the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The key is on the whitelist, so no limit applies and no headers are sent.
    pub whitelisted: bool,
    /// Requests a full bucket admits at once.
    pub limit: u32,
    /// Requests the bucket admits right now, after this one.
    pub remaining: u32,
    /// Seconds, rounded up, until the bucket is full again.
    pub reset_secs: u32,
    /// Seconds, rounded up, until the next request would be admitted; 0 when allowed.
    pub retry_after_secs: u32,
}

impl Decision {
    fn whitelisted(params: &LimitParams) -> Decision {
        let limit = params.burst as u32;
        Decision {
            allowed: true,
            whitelisted: true,
            limit,
            remaining: limit,
            reset_secs: 0,
            retry_after_secs: 0,
        }
    }
}

/// A token bucket: each request takes one token, and tokens refill continuously at the rate
/// up to the burst. The parameters live with the owner, so many buckets share one copy.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// Returns a full bucket.
    pub fn new(params: &LimitParams, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: params.burst,
            refilled_at: now,
        }
    }

    /// Refills the bucket up to `now` and takes a token if one is there.
    pub fn check(&mut self, params: &LimitParams, now: Instant) -> Decision {
        self.refill(params, now);
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        let rate = params.requests_per_second;
        let retry_after_secs = if allowed {
            0
        } else {
            seconds_ceil((1.0 - self.tokens) / rate)
        };
        Decision {
            allowed,
            whitelisted: false,
            limit: params.burst as u32,
            remaining: self.tokens as u32,
            reset_secs: seconds_ceil((params.burst - self.tokens) / rate),
            retry_after_secs,
        }
    }

    fn refill(&mut self, params: &LimitParams, now: Instant) {
        // A time before the last refill adds nothing rather than removing tokens.
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * params.requests_per_second).min(params.burst);
        if now > self.refilled_at {
            self.refilled_at = now;
        }
    }
}

/// Rounds a number of seconds up to a whole second, clamped to `0..=u32::MAX`. A zero rate
/// makes the division infinite, which saturates to `u32::MAX`.
fn seconds_ceil(seconds: f64) -> u32 {
    // Float casts saturate, and NaN (from 0/0) becomes 0.
    seconds.max(0.0).ceil() as u32
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    digest: u64,
    bucket: TokenBucket,
    /// Neighbors in the recency list, most recent first.
    newer: u32,
    older: u32,
}

/// Token buckets keyed by client address or header value, with a bounded table.
///
/// Keys are stored as 64-bit SipHash digests under a random key, so a client cannot pick
/// values that collide with another client's bucket. The index is allocated at construction,
/// so checking a key already in the table does not allocate, and the entry list grows only
/// when a new key arrives, up to `MAX_LIMITER_KEYS` entries. The whitelist is searched
/// linearly, which suits the few entries a route lists.
pub struct KeyedLimiter {
    params: LimitParams,
    whitelist: Vec<Box<[u8]>>,
    hasher: RandomState,
    /// Open-addressing index from digest to entry, probed linearly from the digest's low bits.
    index: Box<[u32]>,
    entries: Vec<Entry>,
    /// Most and least recently seen entries.
    newest: u32,
    oldest: u32,
}

impl KeyedLimiter {
    /// Builds a limiter. Whitelisted keys are compared byte for byte with the key passed to
    /// `check`, so address entries must be converted with `address_key` first.
    pub fn new(params: LimitParams, whitelist: Vec<Box<[u8]>>) -> KeyedLimiter {
        KeyedLimiter {
            params,
            whitelist,
            hasher: RandomState::new(),
            index: vec![NO_ENTRY; INDEX_SLOTS].into_boxed_slice(),
            entries: Vec::new(),
            newest: NO_ENTRY,
            oldest: NO_ENTRY,
        }
    }

    pub fn params(&self) -> &LimitParams {
        &self.params
    }

    /// Returns the number of keys in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks a request of the client identified by `key` and takes a token if allowed.
    pub fn check(&mut self, key: &[u8], now: Instant) -> Decision {
        if self.whitelist.iter().any(|entry| **entry == *key) {
            return Decision::whitelisted(&self.params);
        }
        let digest = self.hasher.hash_one(key);
        let slot = match self.find(digest) {
            Ok(position) => {
                let slot = self.index[position];
                self.unlink(slot);
                slot
            }
            Err(_) => self.insert(digest, now),
        };
        self.link_newest(slot);
        self.entries[slot as usize].bucket.check(&self.params, now)
    }

    /// Returns a slot for a new key with a full bucket, unlinked from the recency list.
    fn insert(&mut self, digest: u64, now: Instant) -> u32 {
        let entry = Entry {
            digest,
            bucket: TokenBucket::new(&self.params, now),
            newer: NO_ENTRY,
            older: NO_ENTRY,
        };
        let slot = if self.entries.len() < MAX_LIMITER_KEYS {
            self.entries.push(entry);
            (self.entries.len() - 1) as u32
        } else {
            let victim = self.oldest;
            self.unlink(victim);
            if let Ok(position) = self.find(self.entries[victim as usize].digest) {
                self.remove_at(position);
            }
            self.entries[victim as usize] = entry;
            victim
        };
        match self.find(digest) {
            Err(position) => self.index[position] = slot,
            Ok(_) => unreachable!("insert is only called for a digest not in the index"),
        }
        slot
    }

    /// Returns the index position of `digest`, or the empty position where it would go.
    fn find(&self, digest: u64) -> Result<usize, usize> {
        let mask = INDEX_SLOTS - 1;
        let mut position = digest as usize & mask;
        // The index is at most half full, so the probe reaches an empty slot.
        loop {
            match self.index[position] {
                NO_ENTRY => return Err(position),
                slot if self.entries[slot as usize].digest == digest => return Ok(position),
                _ => position = (position + 1) & mask,
            }
        }
    }

    /// Empties an index position, shifting later entries of the same probe run back so that
    /// `find` still reaches them (backward-shift deletion, no tombstones).
    fn remove_at(&mut self, position: usize) {
        let mask = INDEX_SLOTS - 1;
        let mut hole = position;
        let mut next = (position + 1) & mask;
        loop {
            let slot = self.index[next];
            if slot == NO_ENTRY {
                break;
            }
            // The entry may fill the hole unless its home position lies after the hole, in
            // probe order, which would put it before its home.
            let home = self.entries[slot as usize].digest as usize & mask;
            let from_home = next.wrapping_sub(home) & mask;
            let from_hole = next.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                self.index[hole] = slot;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.index[hole] = NO_ENTRY;
    }

    fn unlink(&mut self, slot: u32) {
        let Entry { newer, older, .. } = self.entries[slot as usize];
        match newer {
            NO_ENTRY => self.newest = older,
            _ => self.entries[newer as usize].older = older,
        }
        match older {
            NO_ENTRY => self.oldest = newer,
            _ => self.entries[older as usize].newer = newer,
        }
    }

    fn link_newest(&mut self, slot: u32) {
        let previous = self.newest;
        let entry = &mut self.entries[slot as usize];
        entry.newer = NO_ENTRY;
        entry.older = previous;
        match previous {
            NO_ENTRY => self.oldest = slot,
            _ => self.entries[previous as usize].newer = slot,
        }
        self.newest = slot;
    }
}

/// Returns the limiter key of a client address. IPv4 addresses and their IPv4-mapped IPv6
/// form give the same key, so a dual-stack listener does not split one client in two.
pub fn address_key(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Writes the rate-limit header lines, CRLF included: `RateLimit-Limit`,
/// `RateLimit-Remaining` and `RateLimit-Reset`, plus `Retry-After` when the request was
/// rejected. Writes nothing for a whitelisted key.
pub fn write_rate_limit_headers(decision: &Decision, sink: &mut impl Sink) {
    if decision.whitelisted {
        return;
    }
    let lines = [
        (&b"RateLimit-Limit: "[..], decision.limit),
        (b"RateLimit-Remaining: ", decision.remaining),
        (b"RateLimit-Reset: ", decision.reset_secs),
    ];
    for (name, value) in lines {
        sink.put(name);
        put_decimal(sink, u64::from(value));
        sink.put(b"\r\n");
    }
    if !decision.allowed {
        sink.put(b"Retry-After: ");
        put_decimal(sink, u64::from(decision.retry_after_secs));
        sink.put(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    const TEN_PER_SECOND: LimitParams = LimitParams {
        requests_per_second: 10.0,
        burst: 5.0,
    };

    fn ms(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn bucket_admits_burst_then_rejects() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(&TEN_PER_SECOND, start);
        for remaining in (0..5).rev() {
            let decision = bucket.check(&TEN_PER_SECOND, start);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
            assert_eq!(decision.limit, 5);
            assert_eq!(decision.retry_after_secs, 0);
        }
        let decision = bucket.check(&TEN_PER_SECOND, start);
        assert!(!decision.allowed);
        assert_eq!(decision.remaining, 0);
        assert_eq!(decision.retry_after_secs, 1, "0.1 s rounds up to 1 s");
        assert_eq!(decision.reset_secs, 1, "5 tokens take 0.5 s");
    }

    #[test]
    fn bucket_refills_over_time() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(&TEN_PER_SECOND, start);
        for _ in 0..5 {
            assert!(bucket.check(&TEN_PER_SECOND, start).allowed);
        }
        // One token every 100 ms.
        let steps = [
            (50, false),
            (99, false),
            (100, true),
            (150, false),
            (200, true),
            (200, false),
        ];
        for (millis, allowed) in steps {
            assert_eq!(
                bucket.check(&TEN_PER_SECOND, ms(start, millis)).allowed,
                allowed,
                "at {millis} ms"
            );
        }
    }

    #[test]
    fn bucket_fractional_rate() {
        // One request every 2 s.
        let params = LimitParams {
            requests_per_second: 0.5,
            burst: 1.0,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::new(&params, start);
        assert!(bucket.check(&params, start).allowed);
        let decision = bucket.check(&params, ms(start, 500));
        assert!(!decision.allowed);
        assert_eq!(
            decision.retry_after_secs, 2,
            "0.75 of a token missing at 0.5 per second"
        );
        assert!(!bucket.check(&params, ms(start, 1999)).allowed);
        assert!(bucket.check(&params, ms(start, 2000)).allowed);
    }

    #[test]
    fn bucket_caps_at_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(&TEN_PER_SECOND, start);
        let later = ms(start, 3_600_000);
        let admitted = (0..20)
            .filter(|_| bucket.check(&TEN_PER_SECOND, later).allowed)
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn bucket_ignores_time_going_back() {
        let start = Instant::now();
        let later = ms(start, 1000);
        let mut bucket = TokenBucket::new(&TEN_PER_SECOND, later);
        for _ in 0..5 {
            bucket.check(&TEN_PER_SECOND, later);
        }
        assert!(!bucket.check(&TEN_PER_SECOND, start).allowed);
        assert!(bucket.check(&TEN_PER_SECOND, ms(start, 1100)).allowed);
    }

    #[test]
    fn bucket_reset_counts_to_full() {
        let params = LimitParams {
            requests_per_second: 2.0,
            burst: 10.0,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::new(&params, start);
        let decision = bucket.check(&params, start);
        assert_eq!((decision.remaining, decision.reset_secs), (9, 1));
        for _ in 0..8 {
            bucket.check(&params, start);
        }
        let decision = bucket.check(&params, start);
        assert_eq!((decision.remaining, decision.reset_secs), (0, 5));
    }

    #[test]
    fn per_worker_split() {
        let cases = [
            (100.0, 20, 4, 25.0, 5.0),
            (10.0, 20, 3, 10.0 / 3.0, 20.0 / 3.0),
            (10.0, 2, 4, 2.5, 1.0),
            (10.0, 20, 0, 10.0, 20.0),
        ];
        for (rate, burst, workers, expected_rate, expected_burst) in cases {
            let params = LimitParams::per_worker(rate, burst, workers);
            assert_eq!(
                params.requests_per_second, expected_rate,
                "{rate}/{burst}/{workers}"
            );
            assert_eq!(params.burst, expected_burst, "{rate}/{burst}/{workers}");
        }
    }

    #[test]
    fn per_worker_never_exceeds_total() {
        // Three workers share a burst of 20: a client hitting all of them at once gets 18.
        let params = LimitParams::per_worker(10.0, 20, 3);
        let start = Instant::now();
        let admitted: usize = (0..3)
            .map(|_| {
                let mut bucket = TokenBucket::new(&params, start);
                (0..20)
                    .filter(|_| bucket.check(&params, start).allowed)
                    .count()
            })
            .sum();
        assert_eq!(admitted, 18);
    }

    #[test]
    fn keyed_separates_clients() {
        let start = Instant::now();
        let mut limiter = KeyedLimiter::new(TEN_PER_SECOND, Vec::new());
        for _ in 0..5 {
            assert!(limiter.check(b"alice", start).allowed);
        }
        assert!(!limiter.check(b"alice", start).allowed);
        assert!(
            limiter.check(b"bob", start).allowed,
            "bob has his own bucket"
        );
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn keyed_whitelist_bypasses() {
        let start = Instant::now();
        let whitelist = vec![
            b"trusted-key".to_vec().into_boxed_slice(),
            address_key("10.0.0.1".parse().unwrap())
                .to_vec()
                .into_boxed_slice(),
        ];
        let mut limiter = KeyedLimiter::new(TEN_PER_SECOND, whitelist);
        for _ in 0..50 {
            let decision = limiter.check(b"trusted-key", start);
            assert!(decision.allowed);
            assert!(decision.whitelisted);
        }
        let mapped = address_key("::ffff:10.0.0.1".parse().unwrap());
        for _ in 0..50 {
            assert!(limiter.check(&mapped, start).whitelisted);
        }
        assert!(
            !limiter.check(b"trusted-ke", start).whitelisted,
            "whole value must match"
        );
        assert_eq!(limiter.len(), 1, "whitelisted keys take no slot");
    }

    #[test]
    fn address_key_merges_mapped_form() {
        let v4 = address_key("192.0.2.7".parse().unwrap());
        let mapped = address_key("::ffff:192.0.2.7".parse().unwrap());
        let other = address_key("2001:db8::7".parse().unwrap());
        assert_eq!(v4, mapped);
        assert_ne!(v4, other);
    }

    #[test]
    fn keyed_table_is_bounded() {
        let start = Instant::now();
        let mut limiter = KeyedLimiter::new(TEN_PER_SECOND, Vec::new());
        for client in 0..(MAX_LIMITER_KEYS as u32 * 2) {
            assert!(limiter.check(&client.to_le_bytes(), start).allowed);
        }
        assert_eq!(limiter.len(), MAX_LIMITER_KEYS);
        assert_index_consistent(&limiter);
    }

    #[test]
    fn keyed_evicts_least_recent() {
        let start = Instant::now();
        let mut limiter = KeyedLimiter::new(TEN_PER_SECOND, Vec::new());
        // Key 0 drains its bucket and stays recent; every other key is seen once.
        let drained = 0u32.to_le_bytes();
        for _ in 0..5 {
            limiter.check(&drained, start);
        }
        for client in 1..(MAX_LIMITER_KEYS as u32 * 3) {
            limiter.check(&client.to_le_bytes(), start);
            if client % 1000 == 0 {
                assert!(
                    !limiter.check(&drained, start).allowed,
                    "key 0 evicted by client {client}"
                );
            }
        }
        assert!(!limiter.check(&drained, start).allowed);

        // Client 1 was evicted long ago, so it starts again with a full bucket.
        let decision = limiter.check(&1u32.to_le_bytes(), start);
        assert_eq!(decision.remaining, 4);
    }

    /// Checks that every entry is reachable through `find` and nothing else is indexed.
    fn assert_index_consistent(limiter: &KeyedLimiter) {
        let occupied = limiter
            .index
            .iter()
            .filter(|&&slot| slot != NO_ENTRY)
            .count();
        assert_eq!(occupied, limiter.len());
        for (slot, entry) in limiter.entries.iter().enumerate() {
            let position = limiter.find(entry.digest).expect("entry is indexed");
            assert_eq!(limiter.index[position] as usize, slot);
        }
    }

    #[test]
    fn keyed_index_survives_churn() {
        // Keys of a small set recur between new keys, so removals happen in the middle of
        // probe runs while recurring keys must stay findable with their drained buckets.
        let start = Instant::now();
        let mut limiter = KeyedLimiter::new(TEN_PER_SECOND, Vec::new());
        let recurring: Vec<[u8; 4]> = (0..16u32).map(|i| (u32::MAX - i).to_le_bytes()).collect();
        for key in &recurring {
            for _ in 0..5 {
                limiter.check(key, start);
            }
        }
        for client in 0..(MAX_LIMITER_KEYS as u32 * 4) {
            limiter.check(&client.to_le_bytes(), start);
            let key = &recurring[client as usize % recurring.len()];
            assert!(
                !limiter.check(key, start).allowed,
                "recurring key lost at {client}"
            );
        }
        assert_index_consistent(&limiter);
    }

    #[test]
    fn keyed_recency_list_consistent() {
        let start = Instant::now();
        let mut limiter = KeyedLimiter::new(TEN_PER_SECOND, Vec::new());
        let keys: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
        for round in 0..10 {
            for (index, key) in keys.iter().enumerate() {
                if (round + index) % 3 != 0 {
                    limiter.check(key, start);
                }
            }
            // Walk the list from newest to oldest and back.
            let mut forward = Vec::new();
            let mut slot = limiter.newest;
            while slot != NO_ENTRY {
                forward.push(slot);
                slot = limiter.entries[slot as usize].older;
            }
            let mut backward = Vec::new();
            let mut slot = limiter.oldest;
            while slot != NO_ENTRY {
                backward.push(slot);
                slot = limiter.entries[slot as usize].newer;
            }
            backward.reverse();
            assert_eq!(forward, backward, "round {round}");
            assert_eq!(forward.len(), limiter.len(), "round {round}");
        }
    }

    #[test]
    fn headers_when_allowed() {
        let decision = Decision {
            allowed: true,
            whitelisted: false,
            limit: 20,
            remaining: 19,
            reset_secs: 1,
            retry_after_secs: 0,
        };
        let mut out = Vec::new();
        write_rate_limit_headers(&decision, &mut out);
        assert_eq!(
            out,
            b"RateLimit-Limit: 20\r\nRateLimit-Remaining: 19\r\nRateLimit-Reset: 1\r\n"
        );
    }

    #[test]
    fn headers_when_rejected() {
        let start = Instant::now();
        let params = LimitParams {
            requests_per_second: 1.0,
            burst: 1.0,
        };
        let mut bucket = TokenBucket::new(&params, start);
        bucket.check(&params, start);
        let decision = bucket.check(&params, ms(start, 250));
        let mut out = Vec::new();
        write_rate_limit_headers(&decision, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RateLimit-Limit: 1\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: 1\r\nRetry-After: 1\r\n"
        );
    }

    #[test]
    fn headers_skip_whitelisted() {
        let mut out = Vec::new();
        write_rate_limit_headers(&Decision::whitelisted(&TEN_PER_SECOND), &mut out);
        assert!(out.is_empty());
    }
}

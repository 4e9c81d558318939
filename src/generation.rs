//! A configuration generation: one loaded configuration and the state derived from it.
//!
//! A worker keeps its current generation in an `Rc`. Each request takes the current generation
//! when its head is complete and keeps it to the end, so a reload changes what new requests see
//! while requests in flight finish on the generation they started with. Per-config state that
//! must survive a reload (idle upstream connections, counters) lives outside, keyed by address
//! or name, and a generation only holds indexes into it.

use std::cell::Cell;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::WorkerMetrics;
use crate::upstream::{ServerId, Upstreams};

/// One configuration and its derived per-worker state.
pub struct Generation {
    /// 1 for the configuration ringway started with, one more per successful reload.
    pub number: u64,
    pub config: Arc<Config>,
    /// Round-robin position per upstream group.
    next_server: Vec<Cell<usize>>,
    /// Idle pool index in `Upstreams`, per upstream group and server.
    pools: Vec<Vec<usize>>,
    /// Index into `WorkerMetrics::routes` per route.
    pub route_metrics: Vec<usize>,
    /// Index into `WorkerMetrics::upstreams` per upstream group.
    pub upstream_metrics: Vec<usize>,
    /// Route names for logs and metrics, per route.
    pub route_names: Vec<String>,
}

impl Generation {
    /// Builds generation `number` of `config`. `upstreams` must already be reconfigured for
    /// `config`, so that every server has a pool.
    pub fn new(
        number: u64,
        config: Arc<Config>,
        upstreams: &Upstreams,
        metrics: &WorkerMetrics,
    ) -> Generation {
        let pools = config
            .upstreams
            .iter()
            .map(|upstream| {
                upstream
                    .servers
                    .iter()
                    .map(|server| upstreams.pool_index(server.addr).unwrap_or(usize::MAX))
                    .collect()
            })
            .collect();
        let route_names: Vec<String> = (0..config.routes.len()).map(route_name).collect();
        let route_metrics = config
            .routes
            .iter()
            .zip(&route_names)
            .map(|(route, name)| metrics.route_index(name, &config.upstreams[route.upstream].name))
            .collect();
        let upstream_metrics = config
            .upstreams
            .iter()
            .map(|upstream| metrics.upstream_index(&upstream.name))
            .collect();
        Generation {
            number,
            next_server: config.upstreams.iter().map(|_| Cell::new(0)).collect(),
            pools,
            route_metrics,
            upstream_metrics,
            route_names,
            config,
        }
    }

    /// Picks the next server of a group in round-robin order.
    pub fn pick(&self, group: usize) -> ServerId {
        let next = &self.next_server[group];
        let pools = &self.pools[group];
        let server = next.get() % pools.len();
        next.set(next.get().wrapping_add(1));
        ServerId {
            group,
            server,
            pool: pools[server],
        }
    }
}

/// Returns the name of route `index` in logs and metrics: "route N", counting from 0 in file
/// order.
///
/// TODO: use the route's "name" key once routes have one; until then a reload that inserts a
/// route before others renames those that follow it.
pub fn route_name(index: usize) -> String {
    format!("route {index}")
}

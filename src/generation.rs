//! A configuration generation: one loaded configuration and the state derived from it.
//!
//! A worker keeps its current generation in an `Rc`. Each request takes the current generation
//! when its head is complete and keeps it to the end, so a reload changes what new requests see
//! while requests in flight finish on the generation they started with. Per-config state that
//! must survive a reload (idle upstream connections, counters) lives outside, keyed by address
//! or name, and a generation only holds indexes into it.

use std::sync::Arc;

use crate::config::Config;
use crate::gateway::{self, Gateway};
use crate::metrics::WorkerMetrics;
use crate::upstream::{ServerId, Upstreams};

/// One configuration and its derived per-worker state.
pub struct Generation {
    /// 1 for the configuration ringway started with, one more per successful reload.
    pub number: u64,
    pub config: Arc<Config>,
    /// Idle pool index in `Upstreams`, per upstream group and server.
    pools: Vec<Vec<usize>>,
    /// Index into `WorkerMetrics::routes` per route.
    pub route_metrics: Vec<usize>,
    /// Index into `WorkerMetrics::upstreams` per upstream group.
    pub upstream_metrics: Vec<usize>,
    /// Route names for logs and metrics, per route.
    pub route_names: Vec<String>,
    /// Routing, rewriting, balancing and traffic control for this configuration.
    pub gateway: Gateway,
}

impl Generation {
    /// Builds generation `number` of `config`. `upstreams` must already be reconfigured for
    /// `config`, so that every server has a pool.
    pub fn new(
        number: u64,
        config: Arc<Config>,
        upstreams: &Upstreams,
        metrics: &WorkerMetrics,
        worker: usize,
    ) -> Generation {
        // `config::parse` ran the same build, so a loaded configuration always builds.
        let gateway = match gateway::build(&config, worker) {
            Ok(gateway) => gateway,
            Err(errors) => panic!("a validated configuration failed to build: {errors:?}"),
        };
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
        let route_names: Vec<String> = config
            .routes
            .iter()
            .map(|route| route.name.clone())
            .collect();
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
            pools,
            route_metrics,
            upstream_metrics,
            route_names,
            gateway,
            config,
        }
    }

    /// Returns the id of server `server` of upstream group `group`, with its idle pool.
    pub fn server_id(&self, group: usize, server: usize) -> ServerId {
        ServerId {
            group,
            server,
            pool: self.pools[group][server],
        }
    }
}

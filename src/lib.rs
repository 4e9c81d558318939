//! ringway: a streaming thread-per-core HTTP/1.1 reverse proxy on monoio.
//!
//! The protocol core (`http`, `route`, `error`) does no I/O and is tested on byte slices; the
//! I/O lives in `worker` (threads, runtimes, listeners), `proxy` (the connection loop),
//! `relay` (body streaming) and `upstream` (connections and the keep-alive pool).

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod access_log;
pub mod admin;
pub mod buffer;
pub mod config;
pub mod control;
pub mod error;
pub mod gateway;
pub mod generation;
pub mod handoff;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod ocelot;
pub mod proxy;
pub mod relay;
pub mod routing;
pub mod sys;
pub mod timer;
pub mod traffic;
pub mod tunnel;
pub mod upstream;
pub mod worker;

//! Rampart's request path: config → snapshot → router → access checks → handler → filters → log.
//!
//! Start at [`pipeline`]: it reads top to bottom in the order a request travels.
pub mod access;
pub mod cidr;
pub mod compile;
pub mod control;
pub mod exchange;
pub mod filters;
pub mod handlers;
pub mod log;
pub mod metrics;
pub mod pipeline;
pub mod reqid;
pub mod router;
pub mod snapshot;
mod timefmt;
pub mod waf;

pub use control::{conn_limits, proxy_protocol_addrs, App, Runtime, Shared};

//! Rampart's configuration: one TOML file → a validated [`Config`].
//!
//! This crate knows nothing of sockets or HTTP engines; it turns text into typed settings and
//! reports every mistake with its file:line:column, so `rampart check` and hot reload can refuse a
//! bad file before it touches a running server.

mod error;
mod model;
mod parse;
mod units;
mod validate;

pub use error::{suggest, ConfigError, ConfigErrors, LoadError};
pub use model::*;
pub use parse::{line_col, load_file, parse_str};
pub use units::{parse_duration, parse_size, Dur, Size};
pub use validate::{
    is_grpc_addr, parse_cidr, parse_dns_server, parse_listen, parse_status_ranges,
    parse_upstream_addr, split_proxy_url, PathSeg, UpstreamAddr, Violation,
};

/// The configuration used when no file is given and `./rampart.toml` does not exist:
/// a welcome page on 127.0.0.1:8080 and the admin listener on 127.0.0.1:9901.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

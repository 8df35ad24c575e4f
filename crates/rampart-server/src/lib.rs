//! Rampart's listeners and connections: HTTP/1.1 (our own, `h1/`) and HTTP/2 (h2c prior
//! knowledge, hyper's) on one port,
//! limits, timeouts and graceful drain. It knows nothing about routes or handlers: the
//! application plugs in through [`HttpService`].
mod body;
mod conn;
mod guard;
mod h1;
mod listen;
pub mod proxy_protocol;
mod request_body;
pub mod upgrade;

use std::time::Duration;

pub use body::{Body, BoxStream, FilePart, FileRegions};
pub use conn::{serve_connection, ConnInfo, ConnSettings, HttpService};
pub use h1::body::H1Body;
pub use h1::head::RawHead;
pub use listen::{bind, BindError, Listeners};
pub use request_body::RequestBody;

/// Builds a future and boxes it, in this plain function's frame. Why not `Box::pin(f(…))`
/// inside an `async fn`: rustc reserves room in the calling future for the unboxed temporary
/// too, so boxing a big inner future that way made the outer one as big anyway (the HTTP/1
/// exchange's future was 10.5 KiB, the pipeline's 8 KiB). Not inlined, so no temporary can
/// land back in the caller; and the box is allocated before `make` runs, so the future is
/// built in it rather than built on the stack and copied whole (measured with callgrind:
/// ~900 instructions per proxied request).
#[inline(never)]
pub fn boxed<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// Per-connection limits and timeouts.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Open client connections at most (process-wide).
    pub max_connections: usize,
    /// Bytes of request head.
    pub max_header_size: usize,
    /// Request header fields.
    pub max_headers: usize,
    /// First byte to last byte of a request head (then 408).
    pub header_read_timeout: Duration,
    /// Idle time between requests.
    pub keepalive_timeout: Duration,
    /// Longest wait for the client to take more response bytes (nginx: send_timeout).
    pub send_timeout: Duration,
    /// HTTP/1 requests per connection.
    pub keepalive_requests: u64,
    /// HTTP/2 concurrent streams.
    pub h2_max_concurrent_streams: u32,
    /// Open connections per client address (0 = no limit).
    pub max_connections_per_ip: usize,
}

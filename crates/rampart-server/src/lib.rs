//! Rampart's listeners and connections (HTTP/1.1 and h2c), limits, timeouts and graceful drain.
mod body;
pub use body::{BoxStream, Body};

//! Content handlers: exactly one answers each request.
pub mod forward;
pub mod proxy;
pub mod ret;
pub mod static_files;
pub mod welcome;

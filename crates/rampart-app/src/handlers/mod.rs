//! Content handlers: exactly one answers each request.
pub mod ret;
pub mod static_files;
pub mod welcome;

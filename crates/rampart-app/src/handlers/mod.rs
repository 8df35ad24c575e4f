//! Content handlers: exactly one answers each request.
pub mod static_files;

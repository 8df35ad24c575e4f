//! Response filters: run on every handler's response, in order (headers, then compression).
pub mod compress;
pub mod headers;

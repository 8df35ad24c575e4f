//! On-the-fly response compression (gzip, brotli, zstd) negotiated by `Accept-Encoding`.
//!
//! STUB — being written.

/// A content coding we can produce or serve precompressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `br`
    Br,
    /// `zstd`
    Zstd,
    /// `gzip`
    Gzip,
}

/// Compression settings of a route.
#[derive(Clone, Debug)]
pub struct CompressSettings {
    /// Smallest body worth compressing.
    pub min_size: u64,
    /// Codings in server preference order.
    pub algorithms: Vec<Encoding>,
    /// gzip level 1-9.
    pub gzip_level: u32,
    /// brotli quality 0-11.
    pub brotli_quality: u32,
    /// zstd level 1-19.
    pub zstd_level: i32,
}

/// Compresses `resp` when the client accepts a coding and the response qualifies.
pub fn apply(
    _s: &CompressSettings,
    _req: &http::request::Parts,
    resp: http::Response<rampart_server::Body>,
) -> http::Response<rampart_server::Body> {
    resp
}

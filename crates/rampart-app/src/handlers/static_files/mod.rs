//! Static files (nginx `root`/`alias`): path resolution that never escapes the root, conditional
//! requests, ranges, precompressed sidecars, directory listings and an open-file cache.
//!
//! STUB — being written. Interface fixed here so the pipeline can call it.

use std::path::PathBuf;
use std::sync::Arc;

use http::{Response, StatusCode};
use rampart_server::Body;

use crate::filters::compress::CompressSettings;

/// One `try_files` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryFile {
    /// `$uri`: the request path as a file.
    Uri,
    /// `$uri/`: the request path as a directory (index files / listing).
    UriDir,
    /// A fixed path under the root (e.g. `/index.html`, the SPA fallback).
    Path(String),
    /// `=404`: answer with this status.
    Status(u16),
}

/// Per-route static file settings, compiled from the config.
#[derive(Debug)]
pub struct StaticSettings {
    /// Directory served (canonical path).
    pub root: PathBuf,
    /// For `alias`: the route prefix removed from the request path before joining `root`.
    pub strip_prefix: Option<String>,
    /// Index files tried for directory requests.
    pub index: Vec<String>,
    /// Fallback list; empty = `[$uri, $uri/]` then 404.
    pub try_files: Vec<TryFile>,
    /// Directory listings (HTML, or JSON when `Accept: application/json`).
    pub browse: bool,
    /// Serve dotfiles.
    pub serve_hidden: bool,
    /// Follow symlinks leaving the root.
    pub follow_symlinks_outside_root: bool,
    /// Serve `.br`/`.zst`/`.gz` sidecars.
    pub precompressed: bool,
    /// On-the-fly compression; `None` = off.
    pub compress: Option<Arc<CompressSettings>>,
    /// Shared open-file/metadata cache.
    pub cache: Arc<FileCache>,
}

/// Open-file/metadata cache for hot small files.
#[derive(Debug, Default)]
pub struct FileCache {}

/// Why a static request failed; the pipeline turns it into a status and error page.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Nothing there (or hidden).
    #[error("not found")]
    NotFound,
    /// Exists but may not be served.
    #[error("forbidden")]
    Forbidden,
    /// The path is malformed.
    #[error("bad request path")]
    BadPath,
    /// Only GET and HEAD serve files.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A `try_files` `=CODE`.
    #[error("status {0}")]
    Status(u16),
    /// Reading failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl StaticError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            StaticError::NotFound => StatusCode::NOT_FOUND,
            StaticError::Forbidden => StatusCode::FORBIDDEN,
            StaticError::BadPath => StatusCode::BAD_REQUEST,
            StaticError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            StaticError::Status(s) => {
                StatusCode::from_u16(*s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            StaticError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Serves one request from the file system.
pub async fn serve(
    _s: &StaticSettings,
    _req: &http::request::Parts,
) -> Result<Response<Body>, StaticError> {
    Err(StaticError::NotFound)
}

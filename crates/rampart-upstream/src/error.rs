//! Why a request to a server failed, recorded so the proxy can pick the status (502 or 504),
//! decide whether a retry is allowed, and log the reason.

use std::io;

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be opened (refused, unreachable, reset during connect).
    #[error("connect to {peer} failed: {source}")]
    Connect {
        /// Server address.
        peer: String,
        /// The OS error.
        source: io::Error,
    },
    /// The connection did not open within `connect_timeout`.
    #[error("connect to {peer} timed out")]
    ConnectTimeout {
        /// Server address.
        peer: String,
    },
    /// The connection broke (reset, closed early, bad response) before a response head.
    #[error("{peer} failed before answering: {reason}")]
    Broken {
        /// Server address.
        peer: String,
        /// What broke (hyper's description, or our HTTP/1 client's).
        reason: String,
    },
    /// The server accepted no request bytes within `send_timeout`.
    #[error("{peer} accepted no request bytes within send_timeout")]
    SendTimeout {
        /// Server address.
        peer: String,
    },
    /// No response head within `read_timeout`.
    #[error("{peer} sent no response within read_timeout")]
    ReadTimeout {
        /// Server address.
        peer: String,
    },
    /// The client's request body failed (too large, broken framing, client gone).
    #[error("request body: {0}")]
    ClientBody(String),
}

/// Broad classes, for retry policy and status selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A connection failure (retry when `on_error`), answered with 502.
    Error,
    /// A timeout (retry when `on_timeout`), answered with 504.
    Timeout,
    /// The client's fault: never retried, never counted against the server.
    Client,
}

impl UpstreamError {
    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            UpstreamError::Connect { .. } | UpstreamError::Broken { .. } => ErrorClass::Error,
            UpstreamError::ConnectTimeout { .. }
            | UpstreamError::SendTimeout { .. }
            | UpstreamError::ReadTimeout { .. } => ErrorClass::Timeout,
            UpstreamError::ClientBody(_) => ErrorClass::Client,
        }
    }

    /// True when nothing of the request reached the server, so even a request with a
    /// streamed body may be tried elsewhere.
    pub fn before_send(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }
        )
    }

    /// The status a client gets for this failure.
    pub fn status(&self) -> http::StatusCode {
        match self.class() {
            ErrorClass::Error => http::StatusCode::BAD_GATEWAY,
            ErrorClass::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            ErrorClass::Client => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// Classifies a hyper client error: a stalled write (our `TimedStream`) is a send timeout, a
/// failing request body is the client's, anything else is a broken connection.
pub(crate) fn from_hyper(peer: &str, e: &hyper::Error) -> UpstreamError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return UpstreamError::SendTimeout { peer: peer.into() };
            }
        }
        if let Some(cb) = s.downcast_ref::<crate::body::ClientBodyError>() {
            return UpstreamError::ClientBody(cb.to_string());
        }
        src = s.source();
    }
    if e.is_user() {
        // A body error hyper could not attribute further still came from our request body.
        if e.to_string().contains("body") {
            return UpstreamError::ClientBody(e.to_string());
        }
    }
    UpstreamError::Broken {
        peer: peer.into(),
        reason: e.to_string(),
    }
}

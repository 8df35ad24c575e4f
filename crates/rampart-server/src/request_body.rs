//! The request body every handler receives, whichever protocol carried it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::h1::body::H1Body;

/// A request body: read from the client as the handler polls it.
#[derive(Default)]
pub enum RequestBody {
    /// No body (no `Content-Length`, or zero).
    #[default]
    Empty,
    /// HTTP/1: straight from the connection.
    H1(H1Body),
    /// HTTP/2: a stream's DATA frames, through hyper.
    H2(Incoming),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestBody::Empty => "RequestBody::Empty",
            RequestBody::H1(_) => "RequestBody::H1",
            RequestBody::H2(_) => "RequestBody::H2",
        })
    }
}

impl RequestBody {
    /// The rest of the body when it has all arrived already (nothing to wait for): an
    /// HTTP/1 `Content-Length` body that came with its head, or no body. `None` leaves the
    /// body to be streamed.
    pub fn take_whole(&mut self) -> Option<Bytes> {
        match self {
            RequestBody::Empty => Some(Bytes::new()),
            RequestBody::H1(b) => b.take_whole(),
            RequestBody::H2(_) => None,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::H1(b) => Pin::new(b).poll_frame(cx),
            RequestBody::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(io::Error::other))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::H1(b) => b.is_end_stream(),
            RequestBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::H1(b) => b.size_hint(),
            RequestBody::H2(b) => b.size_hint(),
        }
    }
}

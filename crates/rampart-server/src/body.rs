//! The response body type every handler returns.
//!
//! An enum rather than a boxed trait object: the common cases (empty, one buffer) cost no
//! allocation, and only streams (files, proxied bodies, compressors) pay for a box.

use std::fs::File;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// A boxed body stream that yields `Bytes` or an I/O error.
pub type BoxStream = Pin<Box<dyn http_body::Body<Data = Bytes, Error = std::io::Error> + Send>>;

/// A response body.
#[derive(Default)]
pub enum Body {
    /// No bytes (204, 304, HEAD).
    #[default]
    Empty,
    /// One buffer, taken on first poll.
    Full(Option<Bytes>),
    /// Anything streamed.
    Stream(BoxStream),
    /// Parts of one open file (a static file or its ranges): HTTP/1 sends them with
    /// `sendfile(2)`, without copying through user space; everything else reads them.
    File(FileRegions),
}

/// One piece of a [`FileRegions`] body.
#[derive(Clone, Debug)]
pub enum FilePart {
    /// Literal bytes (multipart range headers).
    Bytes(Bytes),
    /// `len` bytes of the file from `offset`.
    File {
        /// Where the piece starts in the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// A body made of parts of one open file, with a reader for whoever cannot send the file
/// itself (HTTP/2, compression, inspection).
pub struct FileRegions {
    file: Arc<File>,
    parts: Vec<FilePart>,
    len: u64,
    read: BoxStream,
}

impl FileRegions {
    /// `parts` of `file`; `read` yields the same bytes (used when the body is polled).
    pub fn new<B>(file: Arc<File>, parts: Vec<FilePart>, read: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static,
    {
        let len = parts
            .iter()
            .map(|p| match p {
                FilePart::Bytes(b) => b.len() as u64,
                FilePart::File { len, .. } => *len,
            })
            .sum();
        FileRegions {
            file,
            parts,
            len,
            read: Box::pin(read),
        }
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes in all.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// No bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[FilePart] {
        &self.parts
    }
}

impl Body {
    /// A body of one buffer.
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(b))
        }
    }

    /// A streamed body.
    pub fn stream<B>(b: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static,
    {
        Body::Stream(Box::pin(b))
    }

    /// The exact length when known up front.
    pub fn exact_len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(s) => s.size_hint().exact(),
            Body::File(f) => Some(f.len),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.as_ref().map_or(0, |b| b.len())),
            Body::Stream(_) => f.write_str("Body::Stream"),
            Body::File(r) => write!(f, "Body::File({} bytes)", r.len),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(s) => s.as_mut().poll_frame(cx),
            Body::File(r) => r.read.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Stream(s) => s.is_end_stream(),
            Body::File(r) => r.read.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(s) => s.size_hint(),
            Body::File(r) => r.read.size_hint(),
        }
    }
}

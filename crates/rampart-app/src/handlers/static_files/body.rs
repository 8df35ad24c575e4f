//! Streaming file bodies: one chunk in flight at a time, read on the blocking pool with
//! positional reads, so memory stays bounded whatever the file size.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

/// Bytes read per chunk: large enough to amortize the thread hop, small enough to bound memory.
pub const CHUNK: usize = 128 * 1024;

/// One piece of a response body.
#[derive(Debug, Clone)]
pub enum Segment {
    /// Literal bytes (multipart headers, or a cached file).
    Bytes(Bytes),
    /// `len` bytes of the file from `offset`.
    File { offset: u64, len: u64 },
}

/// A body made of segments over one open file.
pub struct FileBody {
    file: Arc<File>,
    segments: std::collections::VecDeque<Segment>,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    remaining: u64,
}

impl FileBody {
    /// A body over `segments` of `file`.
    pub fn new(file: Arc<File>, segments: Vec<Segment>) -> Self {
        let remaining = segments
            .iter()
            .map(|s| match s {
                Segment::Bytes(b) => b.len() as u64,
                Segment::File { len, .. } => *len,
            })
            .sum();
        FileBody {
            file,
            segments: segments.into(),
            pending: None,
            remaining,
        }
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = read_at(file, &mut buf[done..], offset)?;
        if n == 0 {
            // The file shrank under us: fail the body rather than send short content.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file truncated while being sent",
            ));
        }
        done += n;
        offset += n as u64;
    }
    Ok(())
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    file.seek_read(buf, offset)
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(handle) = this.pending.as_mut() {
            let res = match Pin::new(handle).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            this.pending = None;
            return Poll::Ready(Some(match res {
                Ok(Ok(b)) => {
                    this.remaining = this.remaining.saturating_sub(b.len() as u64);
                    Ok(Frame::data(b))
                }
                Ok(Err(e)) => Err(e),
                Err(join) => Err(io::Error::other(join)),
            }));
        }
        loop {
            match this.segments.pop_front() {
                None => return Poll::Ready(None),
                Some(Segment::Bytes(b)) => {
                    if b.is_empty() {
                        continue;
                    }
                    this.remaining = this.remaining.saturating_sub(b.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Some(Segment::File { len: 0, .. }) => continue,
                Some(Segment::File { offset, len }) => {
                    let n = len.min(CHUNK as u64);
                    if len > n {
                        this.segments.push_front(Segment::File {
                            offset: offset + n,
                            len: len - n,
                        });
                    }
                    let file = this.file.clone();
                    // `n` ≤ CHUNK, so the cast cannot truncate.
                    let n = n as usize;
                    this.pending = Some(tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; n];
                        read_exact_at(&file, &mut buf, offset)?;
                        Ok(Bytes::from(buf))
                    }));
                    // Poll the new task once so its waker is registered.
                    return Pin::new(this).poll_frame(cx);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.segments.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

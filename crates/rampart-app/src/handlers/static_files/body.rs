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

/// One piece of a response body (the server's own type: HTTP/1 sends file pieces with
/// `sendfile`, see [`rampart_server::FileRegions`]).
pub use rampart_server::FilePart as Segment;

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

/// Reads up to `n` bytes at `offset` only if that needs no disk I/O (`preadv2` with
/// `RWF_NOWAIT`); `None` when nothing could be read that way (or the kernel lacks the flag).
#[cfg(target_os = "linux")]
fn read_if_cached(file: &File, offset: u64, n: usize) -> Option<Bytes> {
    use rustix::io::{preadv2, ReadWriteFlags};
    let mut buf = vec![0u8; n];
    let mut done = 0;
    while done < n {
        let mut slices = [std::io::IoSliceMut::new(&mut buf[done..])];
        match preadv2(
            file,
            &mut slices,
            offset + done as u64,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break, // EAGAIN (not cached), EOPNOTSUPP…: let the blocking path decide
        }
    }
    if done == 0 {
        return None;
    }
    buf.truncate(done);
    Some(Bytes::from(buf))
}

#[cfg(not(target_os = "linux"))]
fn read_if_cached(_file: &File, _offset: u64, _n: usize) -> Option<Bytes> {
    None
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
                    // `n` ≤ CHUNK, so the cast cannot truncate.
                    let n = n as usize;
                    // Page-cache hit: read right here, no thread hop (nginx reads in its worker
                    // too). Only what would block goes to the blocking pool.
                    if let Some(b) = read_if_cached(&this.file, offset, n) {
                        let got = b.len();
                        if got < n {
                            this.segments.push_front(Segment::File {
                                offset: offset + got as u64,
                                len: (n - got) as u64,
                            });
                        }
                        this.remaining = this.remaining.saturating_sub(got as u64);
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                    let file = this.file.clone();
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

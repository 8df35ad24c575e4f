//! Direct entry points into the HTTP/1 client's parsers for fuzz targets. Not part of the
//! stable API (hidden from the docs); everything here takes arbitrary bytes and must never
//! panic.

use crate::h1::decode::Decoder;
use crate::h1::head::{self, Framing, Parsed};
use bytes::BytesMut;

/// Feeds `data` to the response-head parser as one upstream connection would deliver it:
/// the first byte picks a `HEAD` request and the read size, then the bytes arrive in reads
/// of that size; interim heads are skipped, and after a final head the body decoder consumes
/// the rest (close-delimited bodies end with the input). Returns the body bytes decoded.
pub fn response(data: &[u8]) -> usize {
    let Some((&ctl, rest)) = data.split_first() else {
        return 0;
    };
    let head_request = ctl & 1 == 1;
    let step = usize::from(ctl >> 1).max(1);
    let mut buf = BytesMut::new();
    let mut input = rest.chunks(step);
    // Head.
    let framing = loop {
        match head::parse(&mut buf, 16 << 10, head_request) {
            Ok(Parsed::Partial) => match input.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return 0,
            },
            Ok(Parsed::Interim) => {}
            Ok(Parsed::Final(h)) => break h.framing,
            Err(_) => return 0,
        }
    };
    let mut decoder = match framing {
        Framing::None => Decoder::Done,
        Framing::Length(n) => Decoder::Length(n),
        Framing::Chunked => Decoder::ChunkSize,
        Framing::Close => Decoder::Close,
    };
    // Body.
    let mut total = 0;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(b)) => total += b.len(),
            Ok(None) if decoder.is_done() => return total,
            Ok(None) => match input.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return total,
            },
            Err(_) => return total,
        }
    }
}

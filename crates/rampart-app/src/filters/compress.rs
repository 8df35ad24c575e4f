//! On-the-fly response compression (gzip, brotli, zstd) negotiated by `Accept-Encoding`.
//!
//! `apply` is a response filter: it decides from the request and response heads whether the body
//! may be compressed, rewrites the headers (`Content-Encoding`, `Vary`, weak `ETag`, no
//! `Content-Length`), and wraps the body. One-buffer bodies are compressed at once (so they keep
//! a `Content-Length`); streams are compressed chunk by chunk with bounded memory.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, VARY,
};
use http::{HeaderMap, Method, StatusCode};
use http_body::{Frame, SizeHint};
use rampart_server::Body;

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

impl Encoding {
    /// The token used in `Accept-Encoding` / `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The file-name suffix of a precompressed sidecar (`.br`, `.zst`, `.gz`).
    pub fn sidecar_ext(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zst",
            Encoding::Gzip => "gz",
        }
    }

    /// Small dense index (for per-coding arrays).
    pub fn index(self) -> usize {
        match self {
            Encoding::Br => 0,
            Encoding::Zstd => 1,
            Encoding::Gzip => 2,
        }
    }

    /// A prebuilt `Content-Encoding` value (no allocation per response).
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }

    /// All codings, in the default server preference order (best ratio first).
    pub const ALL: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];
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

impl Default for CompressSettings {
    /// Defaults chosen for on-the-fly use: fast levels, everything offered.
    fn default() -> Self {
        CompressSettings {
            min_size: 256,
            algorithms: Encoding::ALL.to_vec(),
            gzip_level: 6,
            brotli_quality: 4,
            zstd_level: 3,
        }
    }
}

/// Parsed q-values of one `Accept-Encoding` header, in thousandths (`q=0.5` → 500).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptEncoding {
    /// q of `br`, `zstd`, `gzip` (by `Encoding::index`), when listed.
    coded: [Option<u16>; 3],
    /// q of `identity`, when listed.
    identity: Option<u16>,
    /// q of `*`, when listed.
    star: Option<u16>,
}

impl AcceptEncoding {
    /// Parses a header value; malformed members are skipped, never fatal.
    pub fn parse(value: &[u8]) -> Self {
        let mut out = AcceptEncoding::default();
        for member in value.split(|&b| b == b',') {
            let mut parts = member.split(|&b| b == b';');
            let name = trim(parts.next().unwrap_or_default());
            if name.is_empty() {
                continue;
            }
            let mut q = Some(1000u16);
            for param in parts {
                let param = trim(param);
                if param.len() >= 2 && param[0].eq_ignore_ascii_case(&b'q') && param[1] == b'=' {
                    q = parse_qvalue(trim(&param[2..]));
                }
            }
            let Some(q) = q else { continue };
            let slot = if name.eq_ignore_ascii_case(b"br") {
                &mut out.coded[0]
            } else if name.eq_ignore_ascii_case(b"zstd") {
                &mut out.coded[1]
            } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
                &mut out.coded[2]
            } else if name.eq_ignore_ascii_case(b"identity") {
                &mut out.identity
            } else if name == b"*" {
                &mut out.star
            } else {
                continue;
            };
            // A coding listed twice keeps its best q (lenient, like most servers).
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
        out
    }

    /// The q (0-1000) the client gives `enc`: its own entry, else `*`, else 0.
    pub fn q(&self, enc: Encoding) -> u16 {
        self.coded[enc.index()].or(self.star).unwrap_or(0)
    }

    /// The q the client gives the identity coding. Unlisted, it is acceptable but ranks last
    /// (q=0.001): a client that lists `gzip;q=0.5` wants gzip. `*;q=0` refuses it.
    pub fn identity_q(&self) -> u16 {
        match (self.identity, self.star) {
            (Some(q), _) => q,
            (None, Some(0)) => 0,
            (None, _) => 1,
        }
    }

    /// Picks the coding to send among `offered` (server preference order breaks ties), or `None`
    /// for identity. A coding the client ranks below identity is not used.
    pub fn negotiate(&self, offered: impl IntoIterator<Item = Encoding>) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for enc in offered {
            let q = self.q(enc);
            let better = match best {
                Some((_, bq)) => q > bq,
                None => q > 0,
            };
            if better {
                best = Some((enc, q));
            }
        }
        match best {
            Some((enc, q)) if q >= self.identity_q() => Some(enc),
            _ => None,
        }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 qvalue: `0`, `0.x{0,3}`, `1`, `1.0{0,3}`; returns thousandths.
fn parse_qvalue(s: &[u8]) -> Option<u16> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int[0] {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Picks the coding for a request among `offered`, honouring the client's q-values.
pub fn negotiate(headers: &HeaderMap, offered: &[Encoding]) -> Option<Encoding> {
    let value = headers.get(ACCEPT_ENCODING)?;
    AcceptEncoding::parse(value.as_bytes()).negotiate(offered.iter().copied())
}

/// Whether a media type is texty enough that compressing it pays (images, video, archives and
/// fonts in compressed formats do not).
pub fn is_compressible(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .map(trim)
        .unwrap_or_default();
    let lower = |prefix: &[u8]| {
        essence.len() >= prefix.len() && essence[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    let ends = |suffix: &[u8]| {
        essence.len() >= suffix.len()
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    if lower(b"text/") {
        return true;
    }
    const EXACT: &[&[u8]] = &[
        b"application/json",
        b"application/javascript",
        b"application/x-javascript",
        b"application/ecmascript",
        b"application/xml",
        b"application/xhtml+xml",
        b"application/x-ndjson",
        b"application/graphql-response+json",
        b"application/x-www-form-urlencoded",
        b"image/svg+xml",
        b"image/x-icon",
        b"image/vnd.microsoft.icon",
        b"image/bmp",
        b"font/ttf",
        b"font/otf",
        b"application/vnd.ms-fontobject",
    ];
    if EXACT.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        return true;
    }
    lower(b"application/") && (ends(b"+json") || ends(b"+xml"))
}

/// Compresses one buffer in full (used for small bodies and for the static file cache).
pub fn compress_bytes(s: &CompressSettings, enc: Encoding, data: &[u8]) -> io::Result<Bytes> {
    let mut e = Encoder::new(s, enc, Vec::with_capacity(data.len() / 3 + 64))?;
    e.write_all(data)?;
    Ok(Bytes::from(e.finish()?))
}

/// One streaming encoder writing into a `Vec` we drain after each input chunk.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(s: &CompressSettings, enc: Encoding, out: Vec<u8>) -> io::Result<Self> {
        Ok(match enc {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(s.gzip_level.clamp(1, 9)),
            )),
            // lgwin 20 = 1 MiB window: bounded memory per stream, good ratio for web assets.
            Encoding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                out,
                16 * 1024,
                s.brotli_quality.min(11),
                20,
            ))),
            Encoding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                out,
                s.zstd_level.clamp(1, 19),
            )?),
        })
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Takes whatever compressed output is ready.
    fn take(&mut self) -> Bytes {
        let out = self.out();
        if out.is_empty() {
            Bytes::new()
        } else {
            let cap = out.capacity().max(4096);
            Bytes::from(std::mem::replace(
                out,
                Vec::with_capacity(cap.min(64 * 1024)),
            ))
        }
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Br(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Br(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Br(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// A body compressed on the fly: at most one input chunk and its output are held at a time.
struct CompressedBody {
    inner: Body,
    encoder: Option<Encoder>,
    /// Input was written since the last flush; flush before waiting on a slow source so that
    /// streamed responses (e.g. server-sent events) are not held back.
    dirty: bool,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl http_body::Body for CompressedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(t) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let Some(encoder) = this.encoder.as_mut() else {
                this.done = true;
                continue;
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    if this.dirty {
                        this.dirty = false;
                        encoder.flush()?;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        encoder.write_all(&data)?;
                        this.dirty = true;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        return this.finish();
                    }
                },
                Poll::Ready(None) => return this.finish(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl CompressedBody {
    fn finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let tail = match self.encoder.take() {
            Some(e) => e.finish()?,
            None => Vec::new(),
        };
        self.done = true;
        if tail.is_empty() {
            match self.trailers.take() {
                Some(t) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                None => Poll::Ready(None),
            }
        } else {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail)))))
        }
    }
}

/// Adds `Accept-Encoding` to `Vary` unless it is already listed (or `Vary: *`).
pub fn add_vary_accept_encoding(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(trim)
            .any(|t| t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding"))
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// `"x"` → `W/"x"`: the compressed bytes differ, so the validator can only be weak.
pub fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(etag) = headers.get(ETAG) {
        let b = etag.as_bytes();
        if b.first() == Some(&b'"') {
            let mut v = Vec::with_capacity(b.len() + 2);
            v.extend_from_slice(b"W/");
            v.extend_from_slice(b);
            match HeaderValue::from_bytes(&v) {
                Ok(weak) => {
                    headers.insert(ETAG, weak);
                }
                Err(_) => {
                    headers.remove(ETAG);
                }
            }
        }
    }
}

/// Whether the response head allows compression at all, independent of the client.
fn eligible(s: &CompressSettings, resp: &http::Response<Body>) -> bool {
    // Like nginx: 200 plus the error statuses whose pages are worth compressing.
    if !matches!(
        resp.status(),
        StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ) {
        return false;
    }
    let h = resp.headers();
    if h.get(CONTENT_RANGE).is_some() {
        return false;
    }
    if let Some(ce) = h.get(CONTENT_ENCODING) {
        if !ce.as_bytes().eq_ignore_ascii_case(b"identity") {
            return false;
        }
    }
    if h.get_all(CACHE_CONTROL).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(b"no-transform"))
    }) {
        return false;
    }
    match h.get(CONTENT_TYPE) {
        Some(ct) if is_compressible(ct.as_bytes()) => {}
        _ => return false,
    }
    let declared = h
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared.or_else(|| resp.body().exact_len()) {
        Some(len) => len >= s.min_size && len > 0,
        None => true,
    }
}

/// Compresses `resp` when the client accepts a coding and the response qualifies.
pub fn apply(
    s: &CompressSettings,
    req: &http::request::Parts,
    resp: http::Response<rampart_server::Body>,
) -> http::Response<rampart_server::Body> {
    if !eligible(s, &resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // The answer now depends on Accept-Encoding whether or not this client gets a coding.
    add_vary_accept_encoding(&mut parts.headers);
    let Some(enc) = negotiate(&req.headers, &s.algorithms) else {
        return http::Response::from_parts(parts, body);
    };
    let is_head = req.method == Method::HEAD;
    let body = match body {
        // HEAD: same headers as GET, no body to compress.
        _ if is_head => Body::Empty,
        Body::Empty => Body::Empty,
        Body::Full(Some(data)) => match compress_bytes(s, enc, &data) {
            Ok(c) => {
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(c.len()));
                set_encoded_headers(&mut parts.headers, enc, false);
                return http::Response::from_parts(parts, Body::full(c));
            }
            // Could not compress: the original is still correct.
            Err(_) => return http::Response::from_parts(parts, Body::Full(Some(data))),
        },
        Body::Full(None) => Body::Empty,
        body @ (Body::Stream(_) | Body::File(_)) => {
            match Encoder::new(s, enc, Vec::with_capacity(16 * 1024)) {
                Ok(encoder) => Body::stream(CompressedBody {
                    inner: body,
                    encoder: Some(encoder),
                    dirty: false,
                    trailers: None,
                    done: false,
                }),
                Err(_) => return http::Response::from_parts(parts, body),
            }
        }
    };
    set_encoded_headers(&mut parts.headers, enc, true);
    http::Response::from_parts(parts, body)
}

fn set_encoded_headers(h: &mut HeaderMap, enc: Encoding, drop_length: bool) {
    h.insert(CONTENT_ENCODING, enc.header_value());
    if drop_length {
        h.remove(CONTENT_LENGTH);
    }
    // Byte ranges of the compressed form are not offered (like nginx).
    h.remove(ACCEPT_RANGES);
    weaken_etag(h);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ae(s: &str) -> AcceptEncoding {
        AcceptEncoding::parse(s.as_bytes())
    }
    const ALL: [Encoding; 3] = Encoding::ALL;

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue(b"0"), Some(0));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.123"), Some(123));
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1.000"), Some(1000));
        assert_eq!(parse_qvalue(b"1.5"), None);
        assert_eq!(parse_qvalue(b"0.1234"), None);
        assert_eq!(parse_qvalue(b"abc"), None);
        assert_eq!(parse_qvalue(b""), None);
    }

    #[test]
    fn negotiation() {
        assert_eq!(ae("gzip").negotiate(ALL), Some(Encoding::Gzip));
        assert_eq!(ae("gzip, br").negotiate(ALL), Some(Encoding::Br));
        assert_eq!(
            ae("gzip, deflate, br, zstd").negotiate(ALL),
            Some(Encoding::Br)
        );
        assert_eq!(
            ae("gzip;q=1, br;q=0.5").negotiate(ALL),
            Some(Encoding::Gzip)
        );
        assert_eq!(ae("br;q=0, gzip").negotiate(ALL), Some(Encoding::Gzip));
        assert_eq!(ae("*").negotiate(ALL), Some(Encoding::Br));
        assert_eq!(ae("*;q=0.5, br;q=0").negotiate(ALL), Some(Encoding::Zstd));
        assert_eq!(
            ae("gzip;q=0.5, identity").negotiate(ALL),
            None,
            "a listed identity (q=1) beats 0.5"
        );
        assert_eq!(ae("*, br;q=0").negotiate(ALL), Some(Encoding::Zstd));
        assert_eq!(ae("identity").negotiate(ALL), None);
        assert_eq!(ae("").negotiate(ALL), None);
        assert_eq!(
            ae("gzip;q=0.5, identity;q=0.1").negotiate(ALL),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            ae("gzip;q=0.5").negotiate(ALL),
            Some(Encoding::Gzip),
            "unlisted identity ranks last"
        );
        assert_eq!(
            ae("GZIP ; Q=0.8 , x-gzip").negotiate(ALL),
            Some(Encoding::Gzip)
        );
        assert_eq!(ae("br;q=bogus, gzip").negotiate(ALL), Some(Encoding::Gzip));
        assert_eq!(
            ae("zstd, br").negotiate([Encoding::Zstd, Encoding::Br]),
            Some(Encoding::Zstd)
        );
        assert_eq!(ae("br").negotiate([Encoding::Gzip]), None);
        assert_eq!(ae("*;q=0, gzip").negotiate(ALL), Some(Encoding::Gzip));
    }

    #[test]
    fn compressible_types() {
        for t in [
            "text/html; charset=utf-8",
            "application/json",
            "application/javascript",
            "image/svg+xml",
            "application/ld+json",
            "application/atom+xml",
            "TEXT/CSS",
        ] {
            assert!(is_compressible(t.as_bytes()), "{t}");
        }
        for t in [
            "image/png",
            "video/mp4",
            "application/zip",
            "application/octet-stream",
            "application/wasm",
            "font/woff2",
            "",
        ] {
            assert!(!is_compressible(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn etag_weakening_and_vary() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        h.insert(VARY, HeaderValue::from_static("Origin"));
        weaken_etag(&mut h);
        add_vary_accept_encoding(&mut h);
        add_vary_accept_encoding(&mut h);
        assert_eq!(h[ETAG], "W/\"abc\"");
        let vary: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
        weaken_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"abc\"");
    }
}

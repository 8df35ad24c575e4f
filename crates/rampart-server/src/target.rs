//! Request targets as nginx takes them. hyper (through the `http` crate) refuses a few bytes
//! in the request target that nginx and Apache accept and pass on — `"`, `<`, `>` and the
//! backtick — so a request like `GET /?q=<script> HTTP/1.1` would get a bare 400 from the
//! parser instead of reaching the WAF that should judge it. Before hyper parses a request
//! line, those bytes are percent-encoded (`<` → `%3C`), which every server decodes back to
//! the same value. The request line may arrive in pieces (hyper's protocol detection reads
//! the first 24 bytes alone), so this is a small state machine fed read by read.

/// Where in the request line the bytes seen so far end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LineState {
    /// Before or in the method.
    #[default]
    Method,
    /// In the request target.
    Target,
    /// After the target: nothing more to change in this head.
    Done,
    /// The target holds a fragment (`#`), which never belongs in a request: 400.
    Invalid,
}

/// Bytes nginx accepts in a request target but `http::Uri` refuses.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>' | b'`')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Feeds `data` (the next bytes of a request head) through the state machine. Returns the
/// bytes to hand to the parser when they differ from `data`, `None` when they are the same.
pub(crate) fn escape(state: &mut LineState, data: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in data.iter().enumerate() {
        match *state {
            LineState::Done | LineState::Invalid => {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(&data[i..]);
                }
                return out;
            }
            LineState::Method => {
                if b == b' ' {
                    *state = LineState::Target;
                } else if b == b'\n' {
                    *state = LineState::Done;
                }
            }
            LineState::Target => {
                if b == b' ' || b == b'\r' || b == b'\n' {
                    *state = LineState::Done;
                } else if b == b'#' {
                    *state = LineState::Invalid;
                    return None;
                } else if needs_escape(b) {
                    let o = out.get_or_insert_with(|| {
                        let mut v = Vec::with_capacity(data.len() + 16);
                        v.extend_from_slice(&data[..i]);
                        v
                    });
                    o.extend_from_slice(&[
                        b'%',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]);
                    continue;
                }
            }
        }
        if let Some(o) = out.as_mut() {
            o.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]]) -> Vec<u8> {
        let mut st = LineState::default();
        let mut all = Vec::new();
        for p in pieces {
            match escape(&mut st, p) {
                Some(v) => all.extend_from_slice(&v),
                None => all.extend_from_slice(p),
            }
        }
        all
    }

    #[test]
    fn escapes_only_the_target_even_in_pieces() {
        let want = b"GET /a?q=%3Cx%3E%22%60y HTTP/1.1\r\nX: <\r\n\r\n".to_vec();
        assert_eq!(run(&[b"GET /a?q=<x>\"`y HTTP/1.1\r\nX: <\r\n\r\n"]), want);
        assert_eq!(
            run(&[b"GET /a?q=<x", b">\"`y HTTP/1.1\r\nX: <", b"\r\n\r\n"]),
            want
        );
        assert_eq!(
            run(&[b"GE", b"T /a?q=<x>\"`y HTTP/1.1\r\nX: <\r\n\r\n"]),
            want
        );
        let clean: &[u8] = b"GET /plain?x=1 HTTP/1.1\r\n\r\n";
        let mut st = LineState::default();
        assert_eq!(escape(&mut st, clean), None);
        assert_eq!(st, LineState::Done);
        let mut st = LineState::default();
        escape(&mut st, b"GET /#frag HTTP/1.1\r\n");
        assert_eq!(st, LineState::Invalid);
    }
}

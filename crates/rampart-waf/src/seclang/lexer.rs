//! Splits a config file into logical lines (joining `\` continuations, skipping
//! comments) and those into Apache-style tokens, keeping line:col for errors.

/// A directive line after continuation joining.
#[derive(Debug)]
pub(crate) struct LogicalLine {
    pub text: String,
    /// (offset in `text`, physical line, column of that offset), ascending.
    segments: Vec<(usize, usize, usize)>,
}

impl LogicalLine {
    /// Physical line and column of a byte offset in `text`.
    pub fn position(&self, off: usize) -> (usize, usize) {
        let mut best = (1, 1);
        for &(o, line, col) in &self.segments {
            if o <= off {
                best = (line, col + (off - o));
            } else {
                break;
            }
        }
        best
    }
}

/// Joins continuation lines; comment lines (first non-blank char `#`) are dropped when
/// they start a logical line.
pub(crate) fn logical_lines(src: &str) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut cur: Option<LogicalLine> = None;
    for (idx, raw) in src.lines().enumerate() {
        let lineno = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed_start = raw.trim_start();
        let lead = raw.len() - trimmed_start.len();
        if cur.is_none() && (trimmed_start.is_empty() || trimmed_start.starts_with('#')) {
            continue;
        }
        let (body, cont) = match raw.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (raw.trim_end(), false),
        };
        let ll = cur.get_or_insert_with(|| LogicalLine {
            text: String::new(),
            segments: Vec::new(),
        });
        let (piece, col) = if ll.text.is_empty() {
            (&body[lead.min(body.len())..], lead + 1)
        } else {
            (body, 1)
        };
        ll.segments.push((ll.text.len(), lineno, col));
        ll.text.push_str(piece);
        if !cont {
            if let Some(done) = cur.take() {
                if !done.text.trim().is_empty() {
                    out.push(done);
                }
            }
        }
    }
    if let Some(done) = cur.take() {
        if !done.text.trim().is_empty() {
            out.push(done);
        }
    }
    out
}

/// A token and its byte offset in the logical line.
#[derive(Debug)]
pub(crate) struct Token {
    pub text: String,
    pub offset: usize,
}

/// Tokenizes like Apache's `ap_getword_conf`: whitespace separated, `"…"` or `'…'`
/// quoted; inside quotes only `\<quote>` is an escape, other backslashes stay.
pub(crate) fn tokenize(line: &str) -> Result<Vec<Token>, (usize, String)> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        if b[i] == b'"' || b[i] == b'\'' {
            let q = b[i];
            i += 1;
            let mut s: Vec<u8> = Vec::new();
            let mut closed = false;
            while i < b.len() {
                if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == q {
                    s.push(q);
                    i += 2;
                    continue;
                }
                if b[i] == q {
                    closed = true;
                    i += 1;
                    break;
                }
                s.push(b[i]);
                i += 1;
            }
            if !closed {
                return Err((start, "unterminated quoted string".to_string()));
            }
            out.push(Token {
                text: String::from_utf8_lossy(&s).into_owned(),
                offset: start,
            });
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(Token {
                text: line[start..i].to_string(),
                offset: start,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_tokenizes() {
        let src = "# c\nSecRule ARGS \"@rx a\\\"b\" \\\n    \"id:1,\\\n    pass\"\n";
        let l = logical_lines(src);
        assert_eq!(l.len(), 1);
        let t = tokenize(&l[0].text).unwrap_or_default();
        assert_eq!(t.len(), 4);
        assert_eq!(t[2].text, "@rx a\"b");
        assert_eq!(t[3].text, "id:1,    pass");
        assert_eq!(l[0].position(t[3].offset), (3, 5));
    }
}

//! `multipart/form-data` processor following ModSecurity's strict checks: fields go to
//! ARGS_POST, file parts to FILES/FILES_NAMES, every part header line to
//! MULTIPART_PART_HEADERS, and each irregularity sets one MULTIPART_* flag.

/// Irregularities found, one per MULTIPART_* variable.
#[derive(Debug, Default, Clone)]
pub(crate) struct Flags {
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub lf_line: bool,
    pub crlf_lf_lines: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub invalid_header_folding: bool,
    pub file_limit_exceeded: bool,
    pub unmatched_boundary: bool,
}

/// An uploaded file part.
#[derive(Debug, Clone)]
pub(crate) struct FilePart {
    pub name: Vec<u8>,
    pub filename: Vec<u8>,
    pub size: usize,
}

/// Result of parsing.
#[derive(Debug, Default)]
pub(crate) struct Multipart {
    pub fields: super::Pairs,
    pub files: Vec<FilePart>,
    /// (part name, header line)
    pub part_headers: super::Pairs,
    pub flags: Flags,
    /// Fatal error (REQBODY_ERROR / REQBODY_PROCESSOR_ERROR).
    pub error: Option<String>,
}

impl Multipart {
    /// MULTIPART_STRICT_ERROR.
    pub fn strict_error(&self) -> bool {
        let f = &self.flags;
        self.error.is_some()
            || f.boundary_quoted
            || f.boundary_whitespace
            || f.data_before
            || f.data_after
            || f.header_folding
            || f.lf_line
            || f.missing_semicolon
            || f.invalid_quoting
            || f.invalid_part
            || f.invalid_header_folding
            || f.file_limit_exceeded
    }
}

/// Extracts the boundary from a Content-Type value, setting quote/whitespace flags.
pub(crate) fn boundary(content_type: &[u8], flags: &mut Flags) -> Result<Vec<u8>, String> {
    let lower = content_type.to_ascii_lowercase();
    let pos = lower
        .windows(8)
        .position(|w| w == b"boundary")
        .ok_or("Multipart: boundary not found in Content-Type")?;
    let mut i = pos + 8;
    let mut ws = false;
    while i < content_type.len() && (content_type[i] == b' ' || content_type[i] == b'\t') {
        ws = true;
        i += 1;
    }
    if content_type.get(i) != Some(&b'=') {
        return Err("Multipart: invalid boundary in Content-Type".into());
    }
    i += 1;
    while i < content_type.len() && (content_type[i] == b' ' || content_type[i] == b'\t') {
        ws = true;
        i += 1;
    }
    let mut b: Vec<u8> = content_type[i..].to_vec();
    if let Some(p) = b.iter().position(|&c| c == b';' || c == b',') {
        b.truncate(p);
    }
    while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
        b.pop();
        ws = true;
    }
    if b.first() == Some(&b'"') {
        flags.boundary_quoted = true;
        if b.len() < 2 || b.last() != Some(&b'"') {
            return Err("Multipart: invalid boundary quoting".into());
        }
        b = b[1..b.len() - 1].to_vec();
    }
    flags.boundary_whitespace = ws;
    if b.is_empty() || b.len() > 70 {
        return Err("Multipart: invalid boundary length".into());
    }
    if b.iter().any(|&c| !(0x20..=0x7e).contains(&c) || c == b'"') {
        return Err("Multipart: invalid boundary characters".into());
    }
    Ok(b)
}

/// Parses a `name="value"; filename=x` Content-Disposition tail.
/// `(name, filename)` of a part.
type Disposition = (Option<Vec<u8>>, Option<Vec<u8>>);

fn parse_disposition(v: &[u8], flags: &mut Flags) -> Result<Disposition, String> {
    let lower = v.to_ascii_lowercase();
    if !lower.starts_with(b"form-data") {
        return Err("Multipart: Content-Disposition is not form-data".into());
    }
    let mut i = 9;
    let mut name = None;
    let mut filename = None;
    let n = v.len();
    loop {
        while i < n && v[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            break;
        }
        if v[i] == b';' {
            i += 1;
        } else {
            flags.missing_semicolon = true;
        }
        while i < n && v[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            break;
        }
        let ks = i;
        while i < n && v[i] != b'=' && v[i] != b';' && !v[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = v[ks..i].to_ascii_lowercase();
        while i < n && v[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n || v[i] != b'=' {
            return Err("Multipart: invalid Content-Disposition parameter".into());
        }
        i += 1;
        while i < n && v[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut val = Vec::new();
        if i < n && v[i] == b'"' {
            i += 1;
            let mut closed = false;
            while i < n {
                if v[i] == b'\\' && i + 1 < n && (v[i + 1] == b'"' || v[i + 1] == b'\\') {
                    val.push(v[i + 1]);
                    i += 2;
                    continue;
                }
                if v[i] == b'"' {
                    closed = true;
                    i += 1;
                    break;
                }
                val.push(v[i]);
                i += 1;
            }
            if !closed {
                flags.invalid_quoting = true;
                return Err("Multipart: invalid quoting in Content-Disposition".into());
            }
        } else {
            while i < n && v[i] != b';' && !v[i].is_ascii_whitespace() {
                val.push(v[i]);
                i += 1;
            }
            if val.first() == Some(&b'\'') || val.last() == Some(&b'\'') {
                flags.invalid_quoting = true;
            }
        }
        match key.as_slice() {
            b"name" => {
                if name.is_some() {
                    return Err("Multipart: duplicate name parameter".into());
                }
                name = Some(val);
            }
            b"filename" | b"filename*" => {
                if filename.is_some() && key == b"filename" {
                    return Err("Multipart: duplicate filename parameter".into());
                }
                filename = Some(val);
            }
            _ => {}
        }
    }
    Ok((name, filename))
}

/// Parses a multipart body.
pub(crate) fn parse(body: &[u8], content_type: &[u8]) -> Multipart {
    let mut mp = Multipart::default();
    let b = match boundary(content_type, &mut mp.flags) {
        Ok(b) => b,
        Err(e) => {
            mp.error = Some(e);
            return mp;
        }
    };
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&b);

    // Split into lines, remembering CRLF vs LF endings.
    let mut lines: Vec<(&[u8], bool)> = Vec::new();
    let mut start = 0;
    for (i, &c) in body.iter().enumerate() {
        if c == b'\n' {
            let crlf = i > start && body[i - 1] == b'\r';
            let end = if crlf { i - 1 } else { i };
            lines.push((&body[start..end], crlf));
            start = i + 1;
        }
    }
    let tail = &body[start..];
    let has_tail = !tail.is_empty();

    #[derive(PartialEq)]
    enum St {
        Preamble,
        Headers,
        Body,
        Done,
    }
    let mut st = St::Preamble;
    let mut saw_crlf = false;
    let mut saw_lf = false;
    let mut cur_headers: Vec<Vec<u8>> = Vec::new();
    let mut cur_body: Vec<u8> = Vec::new();
    let mut cur_body_started = false;
    let mut cur_name: Option<Vec<u8>> = None;
    let mut cur_filename: Option<Vec<u8>> = None;

    let is_boundary = |l: &[u8]| -> Option<bool> {
        // Some(final?)
        if !l.starts_with(&delim) {
            return None;
        }
        let rest = &l[delim.len()..];
        if rest.iter().all(|c| *c == b' ' || *c == b'\t') {
            return Some(false);
        }
        if let Some(r) = rest.strip_prefix(b"--") {
            if r.iter().all(|c| *c == b' ' || *c == b'\t') {
                return Some(true);
            }
        }
        None
    };

    let finish_part = |mp: &mut Multipart,
                       name: &Option<Vec<u8>>,
                       filename: &Option<Vec<u8>>,
                       headers: &[Vec<u8>],
                       data: &[u8]| {
        let Some(name) = name.clone() else {
            mp.flags.invalid_part = true;
            return;
        };
        for h in headers {
            mp.part_headers.push((name.clone(), h.clone()));
        }
        match filename {
            Some(f) => mp.files.push(FilePart {
                name,
                filename: f.clone(),
                size: data.len(),
            }),
            None => mp.fields.push((name, data.to_vec())),
        }
    };

    for (idx, &(line, crlf)) in lines.iter().enumerate() {
        // Line endings only count on boundary and part-header lines, as in ModSecurity:
        // part data (a text file with LF endings, binary bytes) is not a protocol line.
        let protocol_line = st == St::Headers || (st != St::Done && is_boundary(line).is_some());
        if protocol_line {
            if crlf {
                saw_crlf = true;
            } else {
                saw_lf = true;
            }
        }
        match st {
            St::Preamble => {
                if is_boundary(line).is_some() {
                    st = if is_boundary(line) == Some(true) {
                        St::Done
                    } else {
                        St::Headers
                    };
                } else if !line.is_empty() {
                    mp.flags.data_before = true;
                }
            }
            St::Headers => {
                if line.is_empty() {
                    // end of headers: parse Content-Disposition
                    cur_name = None;
                    cur_filename = None;
                    let mut found_cd = false;
                    for h in &cur_headers {
                        if let Some(p) = h.iter().position(|&c| c == b':') {
                            let hn = h[..p].trim_ascii().to_ascii_lowercase();
                            let hv = h[p + 1..].trim_ascii();
                            if hn == b"content-disposition" {
                                found_cd = true;
                                match parse_disposition(hv, &mut mp.flags) {
                                    Ok((n, f)) => {
                                        cur_name = n;
                                        cur_filename = f;
                                    }
                                    Err(e) => {
                                        mp.error.get_or_insert(e);
                                    }
                                }
                            }
                        }
                    }
                    if !found_cd {
                        mp.error.get_or_insert(
                            "Multipart: part missing Content-Disposition header".into(),
                        );
                    }
                    st = St::Body;
                    cur_body.clear();
                    cur_body_started = false;
                } else if line[0] == b' ' || line[0] == b'\t' {
                    mp.flags.header_folding = true;
                    match cur_headers.last_mut() {
                        Some(h) => h.extend_from_slice(line),
                        None => mp.flags.invalid_header_folding = true,
                    }
                } else if !line.contains(&b':') {
                    mp.error
                        .get_or_insert("Multipart: invalid part header (no colon)".into());
                    mp.flags.invalid_part = true;
                } else {
                    cur_headers.push(line.to_vec());
                }
            }
            St::Body => {
                if let Some(fin) = is_boundary(line) {
                    finish_part(&mut mp, &cur_name, &cur_filename, &cur_headers, &cur_body);
                    cur_headers.clear();
                    st = if fin { St::Done } else { St::Headers };
                } else {
                    if line.starts_with(&delim) {
                        mp.flags.unmatched_boundary = true;
                    }
                    if cur_body_started {
                        // The previous line's terminator belongs to the data, as sent.
                        let prev_crlf = idx > 0 && lines[idx - 1].1;
                        cur_body.extend_from_slice(if prev_crlf { b"\r\n" } else { b"\n" });
                    }
                    cur_body.extend_from_slice(line);
                    cur_body_started = true;
                }
            }
            St::Done => {
                if !line.iter().all(|c| c.is_ascii_whitespace()) {
                    mp.flags.data_after = true;
                }
            }
        }
    }
    if has_tail {
        match st {
            St::Done => {
                if !tail.iter().all(|c| c.is_ascii_whitespace()) {
                    mp.flags.data_after = true;
                }
            }
            St::Body => {
                // final boundary without trailing newline
                if let Some(fin) = is_boundary(tail) {
                    finish_part(&mut mp, &cur_name, &cur_filename, &cur_headers, &cur_body);
                    st = if fin { St::Done } else { St::Headers };
                }
            }
            St::Preamble => {
                if is_boundary(tail) == Some(true) {
                    st = St::Done;
                } else {
                    mp.flags.data_before = true;
                }
            }
            St::Headers => {}
        }
    }
    if saw_lf {
        mp.flags.lf_line = true;
        if saw_crlf {
            mp.flags.crlf_lf_lines = true;
        }
    }
    if st != St::Done {
        mp.error
            .get_or_insert("Multipart: final boundary missing".into());
    }
    mp
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_fields_and_files() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XX--\r\n";
        let mp = super::parse(body, b"multipart/form-data; boundary=XX");
        assert!(mp.error.is_none(), "{:?}", mp.error);
        assert_eq!(mp.fields, vec![(b"a".to_vec(), b"hello".to_vec())]);
        assert_eq!(mp.files.len(), 1);
        assert_eq!(mp.files[0].filename, b"x.php");
        assert_eq!(mp.part_headers.len(), 3);
        assert!(!mp.strict_error());
    }

    #[test]
    fn lf_inside_part_data_is_data_not_a_protocol_line() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nline 1\nline 2\r\nline 3\n\r\n--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\na\nb\r\n--XX--\r\n";
        let mp = super::parse(body, b"multipart/form-data; boundary=XX");
        assert!(mp.error.is_none(), "{:?}", mp.error);
        assert!(!mp.flags.lf_line && !mp.flags.crlf_lf_lines);
        assert!(!mp.strict_error());
        // "line 1\nline 2\r\nline 3\n" plus the CRLF that belongs to the boundary.
        assert_eq!(mp.files[0].size, 22);
        assert_eq!(mp.fields, vec![(b"t".to_vec(), b"a\nb".to_vec())]);
    }

    #[test]
    fn lf_terminated_boundary_and_header_lines_are_flagged() {
        let body = b"--XX\nContent-Disposition: form-data; name=\"a\"\n\nv\n--XX--\n";
        let mp = super::parse(body, b"multipart/form-data; boundary=XX");
        assert!(mp.flags.lf_line && !mp.flags.crlf_lf_lines);
        assert_eq!(mp.fields, vec![(b"a".to_vec(), b"v".to_vec())]);
        assert!(mp.strict_error());
    }
}

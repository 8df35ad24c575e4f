//! JSON bodies, flattened into arguments the way ModSecurity does: `{"a":{"b":1}}`
//! gives `json.a.b=1`; array elements repeat the array's name (`json.a`). A small
//! hand-written parser keeps key order and enforces the depth limit.

pub(crate) struct JsonError(pub String);

struct P<'a> {
    b: &'a [u8],
    i: usize,
    depth_limit: usize,
    out: Vec<(Vec<u8>, Vec<u8>)>,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn err<T>(&self, m: &str) -> Result<T, JsonError> {
        Err(JsonError(format!(
            "JSON parsing error at offset {}: {m}",
            self.i
        )))
    }

    fn string(&mut self) -> Result<Vec<u8>, JsonError> {
        // at opening quote
        self.i += 1;
        let mut s = Vec::new();
        while self.i < self.b.len() {
            let c = self.b[self.i];
            self.i += 1;
            match c {
                b'"' => return Ok(s),
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return self.err("bad escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' => s.push(b'"'),
                        b'\\' => s.push(b'\\'),
                        b'/' => s.push(b'/'),
                        b'b' => s.push(8),
                        b'f' => s.push(12),
                        b'n' => s.push(b'\n'),
                        b'r' => s.push(b'\r'),
                        b't' => s.push(b'\t'),
                        b'u' => {
                            let hex = self
                                .b
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            let Some(cp) = hex.and_then(|h| u32::from_str_radix(h, 16).ok()) else {
                                return self.err("bad \\u escape");
                            };
                            self.i += 4;
                            let mut cp = cp;
                            if (0xd800..0xdc00).contains(&cp)
                                && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                let lo = self
                                    .b
                                    .get(self.i + 2..self.i + 6)
                                    .and_then(|h| std::str::from_utf8(h).ok())
                                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                                if let Some(lo) = lo.filter(|l| (0xdc00..0xe000).contains(l)) {
                                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                    self.i += 6;
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            s.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                _ => s.push(c),
            }
        }
        self.err("unterminated string")
    }

    fn value(&mut self, key: &[u8], depth: usize) -> Result<(), JsonError> {
        if depth > self.depth_limit {
            return self.err("maximum nesting depth exceeded");
        }
        self.ws();
        let Some(&c) = self.b.get(self.i) else {
            return self.err("unexpected end");
        };
        match c {
            b'{' => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected key");
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    let mut nk = key.to_vec();
                    nk.push(b'.');
                    nk.extend_from_slice(&k);
                    self.value(&nk, depth + 1)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    // Array elements keep the array's own name, as in ModSecurity v2.
                    self.value(key, depth + 1)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            b'"' => {
                let s = self.string()?;
                self.out.push((key.to_vec(), s));
                Ok(())
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    self.i += 1;
                }
                let tok = &self.b[start..self.i];
                let ok = matches!(tok, b"true" | b"false" | b"null")
                    || (!tok.is_empty()
                        && tok
                            .iter()
                            .all(|c| c.is_ascii_digit() || b"+-.eE".contains(c)));
                if !ok {
                    return self.err("invalid literal");
                }
                let v = if tok == b"null" {
                    Vec::new()
                } else {
                    tok.to_vec()
                };
                self.out.push((key.to_vec(), v));
                Ok(())
            }
        }
    }
}

/// Flattens a JSON document into `(name, value)` pairs.
pub(crate) fn parse(input: &[u8], depth_limit: usize) -> Result<super::Pairs, JsonError> {
    let mut p = P {
        b: input,
        i: 0,
        depth_limit,
        out: Vec::new(),
    };
    p.value(b"json", 0)?;
    p.ws();
    if p.i != input.len() {
        return p.err("trailing data");
    }
    Ok(p.out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn flattens() {
        let v = super::parse(br#"{"a":{"b":1,"c":["x",true]},"d":null}"#, 10).unwrap_or_default();
        let names: Vec<String> = v
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(names, ["json.a.b", "json.a.c", "json.a.c", "json.d"]);
        assert!(super::parse(b"{\"a\":", 10).is_err());
        assert!(super::parse(b"[[[1]]]", 2).is_err());
    }
}

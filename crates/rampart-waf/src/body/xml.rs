//! Minimal XML body processor: checks well-formedness and extracts what CRS inspects —
//! `XML:/*` (all text content of the document, concatenated, like libxml's node
//! content of the root) and `XML://@*` (every attribute value). No DTDs, no entities
//! beyond the predefined ones, so no XXE.

/// Parsed view of an XML document.
#[derive(Debug, Default)]
pub(crate) struct XmlDoc {
    pub text: Vec<u8>,
    pub attrs: Vec<Vec<u8>>,
}

fn decode_entities(s: &[u8]) -> Vec<u8> {
    crate::transform::Transform::HtmlEntityDecode.apply(s)
}

fn find(h: &[u8], n: &[u8], from: usize) -> Option<usize> {
    h.get(from..)?
        .windows(n.len())
        .position(|w| w == n)
        .map(|p| p + from)
}

fn is_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':') || c >= 0x80
}

/// Parses `input`; `Err` carries the message for REQBODY_ERROR_MSG.
pub(crate) fn parse(input: &[u8]) -> Result<XmlDoc, String> {
    let mut doc = XmlDoc::default();
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut seen_root = false;
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] != b'<' {
            let end = find(input, b"<", i).unwrap_or(n);
            let chunk = &input[i..end];
            if stack.is_empty() {
                if !chunk.iter().all(|c| c.is_ascii_whitespace()) {
                    return Err("XML parsing error: content outside the root element".into());
                }
            } else {
                doc.text.extend_from_slice(&decode_entities(chunk));
            }
            i = end;
            continue;
        }
        let rest = &input[i..];
        if rest.starts_with(b"<?") {
            i = find(input, b"?>", i + 2)
                .ok_or("XML parsing error: unterminated processing instruction")?
                + 2;
        } else if rest.starts_with(b"<!--") {
            i = find(input, b"-->", i + 4).ok_or("XML parsing error: unterminated comment")? + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            let e = find(input, b"]]>", i + 9).ok_or("XML parsing error: unterminated CDATA")?;
            if stack.is_empty() {
                return Err("XML parsing error: CDATA outside the root element".into());
            }
            doc.text.extend_from_slice(&input[i + 9..e]);
            i = e + 3;
        } else if rest.starts_with(b"<!") {
            // DOCTYPE (possibly with an internal subset in brackets)
            let mut depth = 0i32;
            let mut j = i + 2;
            while j < n {
                match input[j] {
                    b'[' => depth += 1,
                    b']' => depth -= 1,
                    b'>' if depth <= 0 => break,
                    _ => {}
                }
                j += 1;
            }
            if j >= n {
                return Err("XML parsing error: unterminated declaration".into());
            }
            i = j + 1;
        } else if rest.starts_with(b"</") {
            let mut j = i + 2;
            while j < n && is_name(input[j]) {
                j += 1;
            }
            let name = input[i + 2..j].to_vec();
            while j < n && input[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= n || input[j] != b'>' {
                return Err("XML parsing error: bad end tag".into());
            }
            match stack.pop() {
                Some(open) if open == name => {}
                _ => return Err("XML parsing error: mismatched end tag".into()),
            }
            i = j + 1;
        } else {
            let mut j = i + 1;
            while j < n && is_name(input[j]) {
                j += 1;
            }
            if j == i + 1 {
                return Err("XML parsing error: bad start tag".into());
            }
            let name = input[i + 1..j].to_vec();
            if stack.is_empty() && seen_root {
                return Err("XML parsing error: extra content at the end of the document".into());
            }
            let mut self_closing = false;
            loop {
                while j < n && input[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j >= n {
                    return Err("XML parsing error: unterminated start tag".into());
                }
                if input[j] == b'>' {
                    j += 1;
                    break;
                }
                if input[j] == b'/' && j + 1 < n && input[j + 1] == b'>' {
                    self_closing = true;
                    j += 2;
                    break;
                }
                let ns = j;
                while j < n && is_name(input[j]) {
                    j += 1;
                }
                if ns == j {
                    return Err("XML parsing error: bad attribute".into());
                }
                while j < n && input[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j >= n || input[j] != b'=' {
                    return Err("XML parsing error: attribute without value".into());
                }
                j += 1;
                while j < n && input[j].is_ascii_whitespace() {
                    j += 1;
                }
                let q = *input
                    .get(j)
                    .ok_or("XML parsing error: unterminated attribute")?;
                if q != b'"' && q != b'\'' {
                    return Err("XML parsing error: unquoted attribute".into());
                }
                let e = input[j + 1..]
                    .iter()
                    .position(|&c| c == q)
                    .ok_or("XML parsing error: unterminated attribute")?
                    + j
                    + 1;
                doc.attrs.push(decode_entities(&input[j + 1..e]));
                j = e + 1;
            }
            seen_root = true;
            if !self_closing {
                stack.push(name);
            }
            i = j;
        }
    }
    if !stack.is_empty() || !seen_root {
        return Err("XML parsing error: premature end of data".into());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn extracts_text_and_attrs() {
        let d = super::parse(b"<?xml version=\"1.0\"?><a x=\"1\"><b>hi</b> <c y='2'/>&lt;t</a>");
        let d = d.unwrap_or_default();
        assert_eq!(d.text, b"hi <t");
        assert_eq!(d.attrs, vec![b"1".to_vec(), b"2".to_vec()]);
        assert!(super::parse(b"<a><b></a>").is_err());
    }
}

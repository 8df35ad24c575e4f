//! `application/x-www-form-urlencoded` (also the query string): `a=1&b=2`, names and
//! values URL-decoded with `+` as space; invalid escapes kept.

use crate::transform::Transform;

/// Parses pairs; a pair without `=` has an empty value.
pub(crate) fn parse(input: &[u8], sep: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for pair in input.split(|&c| c == sep) {
        if pair.is_empty() {
            continue;
        }
        let (n, v) = match pair.iter().position(|&c| c == b'=') {
            Some(p) => (&pair[..p], &pair[p + 1..]),
            None => (pair, &b""[..]),
        };
        out.push((Transform::UrlDecode.apply(n), Transform::UrlDecode.apply(v)));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses() {
        let v = super::parse(b"a=1&b=x+y%21&c&&d=", b'&');
        assert_eq!(v.len(), 4);
        assert_eq!(v[1], (b"b".to_vec(), b"x y!".to_vec()));
        assert_eq!(v[2], (b"c".to_vec(), b"".to_vec()));
    }
}

//! `t:urlEncode`: ModSecurity's encoding: ASCII letters, digits and `*` stay, space becomes
//! `+`, every other byte `%xx` (lower-case hex).

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for &c in input {
        if c.is_ascii_alphanumeric() || c == b'*' {
            out.push(c);
        } else if c == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(format!("%{c:02x}").as_bytes());
        }
    }
    out
}

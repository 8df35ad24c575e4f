//! `t:sqlHexDecode`: `0x414243` literals become their bytes.

use super::hexval;

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] == b'0'
            && i + 3 < n
            && (input[i + 1] | 0x20) == b'x'
            && hexval(input[i + 2]).is_some()
            && hexval(input[i + 3]).is_some()
        {
            let mut j = i + 2;
            while j + 1 < n {
                match (hexval(input[j]), hexval(input[j + 1])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        j += 2;
                    }
                    _ => break,
                }
            }
            i = j;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

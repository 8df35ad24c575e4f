//! `t:sha1`: the raw 20-byte SHA-1 digest (CRS hex-encodes it afterwards).

use sha1::{Digest, Sha1};

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    Sha1::digest(input).to_vec()
}

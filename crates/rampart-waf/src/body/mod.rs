//! Request body processors. Each turns raw bytes into arguments (or XML text) plus error
//! flags; none of them fails hard — malformed input sets REQBODY_ERROR for the rules.

/// `(name, value)` pairs a processor extracts.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) mod json;
pub(crate) mod multipart;
pub(crate) mod urlencoded;
pub(crate) mod xml;

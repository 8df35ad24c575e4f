//! Request body processors. Each turns raw bytes into arguments (or XML text) plus error
//! flags; none of them fails hard — malformed input sets REQBODY_ERROR for the rules.

pub(crate) mod json;
pub(crate) mod multipart;
pub(crate) mod urlencoded;
pub(crate) mod xml;

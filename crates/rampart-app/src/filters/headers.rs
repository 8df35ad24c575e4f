//! Response header edits (STUB).

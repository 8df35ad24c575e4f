//! SecLang front end: lexer (logical lines, tokens), parser (rule building, Include)
//! and directive handling.

pub(crate) mod directive;
pub(crate) mod lexer;
pub(crate) mod parser;

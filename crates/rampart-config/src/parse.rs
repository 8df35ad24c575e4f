//! TOML text → [`Config`], collecting every error with its file:line:column.
//!
//! serde stops at the first error, but an operator wants the whole list. So after an error we
//! record it, blank the offending `key = value` out of a working copy of the text (spaces keep
//! every other offset and line number intact) and parse again, up to a bound.

use std::ops::Range;
use std::path::Path;

use toml_edit::{ImDocument, Item, TableLike};

use crate::error::{suggest, ConfigError, ConfigErrors};
use crate::model::Config;
use crate::validate::{validate, PathSeg};

/// Most errors reported for one file; past that the list stops (the file needs a rewrite).
const MAX_ERRORS: usize = 50;

/// Parses and validates `text` (read from `file`, used in messages).
pub fn parse_str(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let at = |span: Option<Range<usize>>, msg: String, did_you_mean: Option<String>| {
        let (line, col) = span.map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            msg,
            did_you_mean,
        }
    };
    if let Err(e) = ImDocument::parse(text.to_owned()) {
        let msg = e.message().trim().to_string();
        return Err(ConfigErrors(vec![at(e.span(), msg, None)]));
    }
    let mut errors = Vec::new();
    let mut work = text.to_owned();
    let mut parsed = None;
    for _ in 0..MAX_ERRORS {
        match toml::from_str::<Config>(&work) {
            Ok(c) => {
                parsed = Some(c);
                break;
            }
            Err(e) => {
                let (msg, hint) = explain(e.message());
                errors.push(at(e.span(), msg, hint));
                let Some(span) = e.span() else { break };
                match blank_entry(&work, span) {
                    Some(next) => work = next,
                    None => break,
                }
            }
        }
    }
    if let Some(cfg) = &parsed {
        if let Ok(doc) = ImDocument::parse(text.to_owned()) {
            for v in validate(cfg) {
                let span = locate(&doc, &v.path);
                errors.push(at(span, v.msg, v.did_you_mean));
            }
        }
    }
    match parsed {
        Some(cfg) if errors.is_empty() => Ok(cfg),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Reads and parses a config file.
pub fn load_file(path: &Path) -> Result<Config, crate::error::LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::error::LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_str(&text, path)?)
}

/// Turns serde's message into ours plus a "did you mean".
fn explain(message: &str) -> (String, Option<String>) {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            let hint = suggest(field, candidates.iter().copied());
            return (
                format!(
                    "unknown key `{field}` (valid keys: {})",
                    candidates.join(", ")
                ),
                hint,
            );
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((variant, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            let hint = suggest(variant, candidates.iter().copied());
            return (
                format!(
                    "unknown value `{variant}` (valid: {})",
                    candidates.join(", ")
                ),
                hint,
            );
        }
    }
    (message.to_string(), None)
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Returns `text` with the `key = value` entry whose key or value contains `span` replaced by
/// spaces, or `None` when no such entry exists or the result would not parse.
fn blank_entry(text: &str, span: Range<usize>) -> Option<String> {
    let doc = ImDocument::parse(text.to_owned()).ok()?;
    let range = find_entry(doc.as_table(), &span)?;
    let mut bytes = text.as_bytes().to_vec();
    for b in bytes.get_mut(range)? {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    let out = String::from_utf8(bytes).ok()?;
    ImDocument::parse(out.clone()).ok()?;
    Some(out)
}

fn find_entry(table: &dyn TableLike, span: &Range<usize>) -> Option<Range<usize>> {
    for (key, _) in table.iter() {
        let Some((k, item)) = table.get_key_value(key) else {
            continue;
        };
        let kspan = k.span();
        let vspan = item_span(item);
        let contains = |s: &Option<Range<usize>>| {
            s.as_ref()
                .is_some_and(|s| s.start <= span.start && span.end <= s.end.max(s.start + 1))
        };
        if let (Some(ks), Some(vs)) = (&kspan, &vspan) {
            if contains(&kspan) || (contains(&vspan) && !is_container(item)) {
                return Some(ks.start..vs.end);
            }
        }
        if let Some(found) = find_in_item(item, span) {
            return Some(found);
        }
    }
    None
}

fn is_container(item: &Item) -> bool {
    item.is_table_like() || item.is_array_of_tables() || item.as_array().is_some()
}

fn find_in_item(item: &Item, span: &Range<usize>) -> Option<Range<usize>> {
    if let Some(t) = item.as_table_like() {
        return find_entry(t, span);
    }
    if let Some(aot) = item.as_array_of_tables() {
        return aot.iter().find_map(|t| find_entry(t, span));
    }
    if let Some(arr) = item.as_array() {
        return arr
            .iter()
            .filter_map(|v| v.as_inline_table())
            .find_map(|t| find_entry(t, span));
    }
    None
}

fn item_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        _ => None,
    }
}

/// Finds the text span of a config path such as `server[0].route[2].regex`.
fn locate(doc: &ImDocument<String>, path: &[PathSeg]) -> Option<Range<usize>> {
    locate_in_table(doc.as_table(), path, None)
}

fn locate_in_table(
    table: &dyn TableLike,
    rest: &[PathSeg],
    mut best: Option<Range<usize>>,
) -> Option<Range<usize>> {
    let Some((first, tail)) = rest.split_first() else {
        return best;
    };
    let PathSeg::Key(k) = first else { return best };
    let Some((key, item)) = table.get_key_value(k) else {
        return best;
    };
    best = item_span(item).or_else(|| key.span()).or(best);
    match tail.split_first() {
        None => best,
        Some((PathSeg::Index(i), tail2)) => {
            if let Some(aot) = item.as_array_of_tables() {
                match aot.get(*i) {
                    Some(t) => locate_in_table(t, tail2, t.span().or(best)),
                    None => best,
                }
            } else if let Some(arr) = item.as_array() {
                arr.get(*i).and_then(|v| v.span()).or(best)
            } else {
                best
            }
        }
        Some(_) => match item.as_table_like() {
            Some(t) => locate_in_table(t, tail, best),
            None => best,
        },
    }
}

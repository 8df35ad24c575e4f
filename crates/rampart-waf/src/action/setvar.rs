//! `setvar:tx.x=+5`, `setvar:!tx.x`, `setvar:'tx.y=%{MATCHED_VAR}'`.

use crate::collection::{Collection, Entry};
use crate::macros::MacroStr;
use crate::variable::VarKind;
use std::sync::Arc;

/// What setvar does to the variable.
#[derive(Debug, Clone)]
pub(crate) enum SetOp {
    Set(MacroStr),
    Add(MacroStr),
    Sub(MacroStr),
    Delete,
}

/// A parsed setvar.
#[derive(Debug, Clone)]
pub(crate) struct SetVar {
    pub collection: VarKind,
    pub key: MacroStr,
    pub op: SetOp,
    /// For a literal key, its collection entry built once at load time: CRS sets ~100
    /// TX variables per request, and building keys per request was most of that cost.
    pub proto: Option<Entry>,
    /// For `Set` with a literal value, the value built once at load and shared by every
    /// transaction that sets it (CRS initializes ~100 TX variables per request).
    pub value: Option<Arc<[u8]>>,
}

pub(crate) fn parse(arg: &str) -> Result<SetVar, String> {
    let arg = arg.trim();
    let (delete, arg) = match arg.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, arg),
    };
    let (lhs, rhs) = match arg.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (arg, None),
    };
    let (col, key) = lhs
        .split_once('.')
        .ok_or_else(|| format!("setvar needs collection.key: {arg:?}"))?;
    let collection =
        VarKind::parse(col.trim()).ok_or_else(|| format!("setvar: unknown collection {col:?}"))?;
    let key = MacroStr::parse(&key.trim().to_ascii_lowercase());
    let op = if delete {
        SetOp::Delete
    } else {
        match rhs {
            None => SetOp::Set(MacroStr::parse("1")),
            Some(r) => {
                if let Some(v) = r.strip_prefix('+') {
                    SetOp::Add(MacroStr::parse(v))
                } else if let Some(v) = r.strip_prefix('-') {
                    SetOp::Sub(MacroStr::parse(v))
                } else {
                    SetOp::Set(MacroStr::parse(r))
                }
            }
        }
    };
    let proto = key
        .as_static()
        .map(|k| Collection::keyed(String::from_utf8_lossy(k).into()));
    let value = match &op {
        SetOp::Set(v) => v.as_static().map(crate::collection::value_arc),
        _ => None,
    };
    Ok(SetVar {
        collection,
        key,
        op,
        proto,
        value,
    })
}

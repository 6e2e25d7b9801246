//! Parsers of what real producers send, each turning a request body into outcomes:
//! an activity ([`ActivityEvent`], not yet stamped with tenant and cluster), an item that is
//! valid but not activity (counted and dropped), or a rejected item with the reason.
//!
//! - [`k8s_audit`]: the API server's audit webhook (`EventList`, `Event`, v1/v1beta1, AKS and
//!   GKE wrappers);
//! - [`falco`]: Falco `http_output` alerts;
//! - [`tetragon`]: Tetragon JSON export lines (current and legacy schemas).
//!
//! Parsers are pure: no I/O, no clock. Each outcome carries a natural key from which the
//! deterministic event id is derived (an audit id, or the item's own bytes).

pub mod falco;
pub mod k8s_audit;
pub mod tetragon;

use schemas::ActivityEvent;
use serde_json::Value;

/// What became of one input item.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An activity, with the natural key its id derives from.
    Activity(Box<ActivityEvent>, Vec<u8>),
    /// Valid input that is not activity (e.g. an audit event about a ConfigMap).
    NotActivity,
    /// Invalid input: why.
    Rejected(String),
}

/// An item of a body: its raw JSON text (empty if it could not be delimited) and its value.
pub type Item<'a> = (&'a [u8], Result<Value, String>);

/// Splits a body into JSON values: a JSON array's elements, or a stream of values (one
/// pretty-printed document, or JSON lines). A malformed line in JSON lines rejects only itself.
/// Each value comes with its raw text, the natural key of what it describes.
pub fn values(body: &[u8]) -> Result<Vec<Item<'_>>, crate::error::IngestError> {
    let items = crate::native::split_items(body)?;
    Ok(items
        .into_iter()
        .map(|i| match i {
            Ok(raw) => (
                raw,
                serde_json::from_slice::<Value>(raw).map_err(|e| format!("malformed JSON: {e}")),
            ),
            Err(e) => (&[][..], Err(e)),
        })
        .collect())
}

/// Applies `f` to every object of an agent body: each item, or each element of an item that
/// is an array; `f` gets the item's raw text when the object is the whole item.
pub(crate) fn each_object(
    body: &[u8],
    f: impl Fn(Value, Option<&[u8]>) -> Outcome,
) -> Result<Vec<Outcome>, crate::error::IngestError> {
    Ok(values(body)?
        .into_iter()
        .flat_map(|(raw, v)| match v {
            Ok(Value::Array(items)) => items.into_iter().map(|i| f(i, None)).collect(),
            Ok(v) => vec![f(v, Some(raw))],
            Err(e) => vec![Outcome::Rejected(e)],
        })
        .collect())
}

/// The natural key of a value: its raw text when known, else its serialization.
pub(crate) fn natural_key(raw: Option<&[u8]>, v: &Value) -> Vec<u8> {
    match raw {
        Some(r) if !r.is_empty() => r.to_vec(),
        _ => serde_json::to_vec(v).unwrap_or_default(),
    }
}

/// A string field, or `None` when absent/null/empty; numbers are printed.
pub(crate) fn str_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // Some Falco fields are sometimes arrays: take the first element.
        Value::Array(a) => a.first().and_then(|x| str_of(Some(x))),
        _ => None,
    }
}

/// An integer field that may arrive as a number or a numeric string.
pub(crate) fn int_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Array(a) => a.first().and_then(|x| int_of(Some(x))),
        _ => None,
    }
}

/// The last path component of a binary (`/usr/bin/curl` -> `curl`).
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub use schemas::event::is_shell;

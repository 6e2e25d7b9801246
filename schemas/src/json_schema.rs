//! JSON Schemas of the messages on our topics, generated from the Rust types (the documented
//! contract in `docs/analytics/*.schema.json` is checked against these by a test).

use crate::{ActivityEvent, TraceRecord};

/// JSON Schema of an [`ActivityEvent`] (a line of `raw`, `enriched` and `events` messages).
pub fn activity_event() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ActivityEvent)).expect("a schema serializes")
}

/// JSON Schema of a [`TraceRecord`] (a line of `traces` messages).
pub fn trace_record() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(TraceRecord)).expect("a schema serializes")
}

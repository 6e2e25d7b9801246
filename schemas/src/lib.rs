//! Activity Audit's shared contract: the one event model every stage reads and writes
//! ([`ActivityEvent`]), deterministic event ids ([`id`]), the topic names and partition keys
//! ([`topics`]), the message codec used on every internal topic ([`batch`]) and the filter
//! language ([`filter`], evaluated in memory by [`matching`]).
//!
//! This crate is pure: types and codecs only, no async runtime and no network, so every
//! stage, test and tool can depend on it cheaply.

pub mod batch;
pub mod event;
pub mod filter;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod id;
pub mod json;
pub mod json_schema;
pub mod matching;
pub mod time;
pub mod topics;
pub mod trace;

pub use event::{ActivityEvent, ActivityType, Source};
pub use trace::TraceRecord;

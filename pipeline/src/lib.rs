//! Plumbing shared by every stage of Activity Audit.
//!
//! - [`kafka`]: producer (`acks=all`, idempotent) and consumer group whose offsets are stored
//!   only after the next stage acknowledged the data (`enable.auto.offset.store=false`).
//! - [`deadletter`]: messages a stage cannot process go to the dead-letter topic with a reason.
//! - [`stage`]: the consume → transform → produce loop of the enricher and the correlator.
//! - [`config`]: typed config files with environment overrides, validated at start-up.
//! - [`ops`]: `/healthz`, `/readyz` and Prometheus `/metrics`; [`metrics`]: the shared series.
//! - [`shutdown`] and [`telemetry`]: signals and structured logs.

pub mod alloc;
pub mod config;
pub mod deadletter;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod shutdown;
pub mod stage;
pub mod telemetry;

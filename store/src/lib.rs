//! ClickHouse access for Activity Audit.
//!
//! - [`client`]: a small HTTP client (SQL, RowBinary inserts, JSON rows) whose errors know
//!   whether they are retryable;
//! - [`sql`]: escaping of values into SQL literals (the only way values reach SQL);
//! - [`migrations`]: versioned DDL, recorded in `schema_migrations`, adapted to the server
//!   version (ClickHouse 18.16 up to current releases);
//! - [`columns`]: the `events` table's columns and their external attribute names;
//! - [`filter`]: filters (the parsed filter language) compiled to escaped SQL;
//! - [`row`]: events decoded borrowing from JSON and encoded as RowBinary rows;
//! - [`writer`]: the stage that consumes the final topic and inserts batches, committing Kafka
//!   offsets only after ClickHouse accepted the rows;
//! - [`read`]: reads that hide duplicates (`FINAL`), for the query API and tests.

pub mod client;
pub mod columns;
pub mod config;
pub mod error;
pub mod filter;
pub mod metrics;
pub mod migrations;
pub mod read;
pub mod rollup;
pub mod row;
pub mod sql;
pub mod writer;

pub use client::ClickHouse;
pub use config::ClickHouseConfig;
pub use error::StoreError;

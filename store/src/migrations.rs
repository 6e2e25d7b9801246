//! Versioned ClickHouse DDL. Each migration is a list of idempotent statements; applied
//! versions are recorded in `schema_migrations`, so running the migrations again (every
//! service does at start-up, and the stack script does) is safe, including after a crash
//! between a statement and its record.
//!
//! The DDL adapts to the server (brief §5): on ClickHouse >= 20.3 string columns of few values
//! are `LowCardinality(String)` and timestamps get `Delta, ZSTD` codecs; on 18.16 (the local
//! stack) they are plain `String`/`Int64` with the default LZ4 compression.

use crate::client::ClickHouse;
use crate::columns::{COLUMNS, SOURCE_ENUM, TYPE_ENUM};
use crate::error::StoreError;

/// What the server supports, decided at migration time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub low_cardinality: bool,
    pub codecs: bool,
}

impl Features {
    pub fn for_version(major: u32, minor: u32) -> Self {
        let modern = (major, minor) >= (20, 3);
        Features {
            low_cardinality: modern,
            codecs: modern,
        }
    }
}

/// One migration: a version, a name and its statements.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: Vec<String>,
}

fn column_type(ch_type: &str, f: Features) -> String {
    match ch_type {
        "LC" if f.low_cardinality => "LowCardinality(String)".into(),
        "LC" => "String".into(),
        "TYPE" => TYPE_ENUM.into(),
        "SOURCE" => SOURCE_ENUM.into(),
        t => t.into(),
    }
}

/// The events table: one row per activity. `ReplacingMergeTree` on a sort key that ends in the
/// deterministic id collapses replays; readers use `FINAL` so they never see a duplicate
/// before the merge happens.
fn events_table(f: Features) -> String {
    let mut cols = Vec::new();
    for c in COLUMNS {
        let mut def = format!("    {} {}", c.name, column_type(c.ch_type, f));
        if f.codecs && matches!(c.name, "timestamp" | "received_timestamp") {
            def.push_str(" CODEC(Delta, ZSTD(1))");
        }
        cols.push(def);
    }
    cols.push(
        "    deployment String ALIAS if(lower(workload_kind) = 'deployment', workload_name, '')"
            .into(),
    );
    format!(
        "CREATE TABLE IF NOT EXISTS events (\n{}\n) ENGINE = ReplacingMergeTree\n\
         PARTITION BY toYYYYMMDD(toDateTime(intDiv(timestamp, 1000000000)))\n\
         ORDER BY (tenant, type, timestamp, id)",
        cols.join(",\n")
    )
}

/// All migrations, oldest first.
pub fn all(f: Features) -> Vec<Migration> {
    vec![Migration {
        version: 1,
        name: "events",
        statements: vec![events_table(f)],
    }]
}

/// Creates the database if needed and applies every migration not yet recorded.
/// Returns the versions applied by this call.
pub async fn apply(ch: &ClickHouse) -> Result<Vec<u32>, StoreError> {
    let db = ch.database().to_string();
    ch.execute_without_db(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .await?;
    ch.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version UInt32, name String, applied_at DateTime DEFAULT now()) \
         ENGINE = MergeTree ORDER BY version",
    )
    .await?;
    let (major, minor) = ch.server_version().await?;
    let features = Features::for_version(major, minor);
    #[derive(serde::Deserialize)]
    struct Row {
        version: u32,
    }
    let applied: Vec<u32> = ch
        .query_rows::<Row>("SELECT DISTINCT version FROM schema_migrations")
        .await?
        .into_iter()
        .map(|r| r.version)
        .collect();
    let mut done = Vec::new();
    for m in all(features) {
        if applied.contains(&m.version) {
            continue;
        }
        for s in &m.statements {
            ch.execute(s).await?;
        }
        ch.execute(&format!(
            "INSERT INTO schema_migrations (version, name) VALUES ({}, {})",
            m.version,
            crate::sql::quote(m.name)
        ))
        .await?;
        tracing::info!(database = %db, version = m.version, name = m.name, ?features, "migration applied");
        done.push(m.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_adapts_to_server() {
        let old = events_table(Features::for_version(18, 16));
        assert!(!old.contains("LowCardinality") && !old.contains("CODEC"));
        assert!(old.contains("ReplacingMergeTree"));
        let new = events_table(Features::for_version(24, 8));
        assert!(new.contains("comm LowCardinality(String)"));
        assert!(new.contains("CODEC(Delta, ZSTD(1))"));
    }
}

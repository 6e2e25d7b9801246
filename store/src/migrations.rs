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

/// One migration: a version, a name and its steps.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub steps: Vec<Step>,
}

/// One idempotent step of a migration.
#[derive(Debug)]
pub enum Step {
    Sql(String),
    /// Rebuilds `events` with the current DDL when it lacks the `revision` column (tables made
    /// before it existed): the engine's version column cannot be added in place. Rows are
    /// copied into a new table that then takes the old one's name.
    RebuildEventsWithRevision(String),
    /// Adds a column of `events` (from [`COLUMNS`]) unless it exists.
    AddEventsColumn(&'static str),
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

/// The events table: one row per activity. `ReplacingMergeTree(revision)` on a sort key that
/// ends in the deterministic id collapses replays and keeps the correlator's latest revision
/// of each event; readers use `FINAL` so they never see a duplicate before the merge happens.
fn events_table(f: Features) -> String {
    events_table_named("events", f)
}

fn events_table_named(name: &str, f: Features) -> String {
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
        "CREATE TABLE IF NOT EXISTS {name} (\n{}\n) ENGINE = ReplacingMergeTree(revision)\n\
         PARTITION BY toYYYYMMDD(toDateTime(intDiv(timestamp, 1000000000)))\n\
         ORDER BY (tenant, type, timestamp, id)",
        cols.join(",\n")
    )
}

/// The traces table: one row per session (the correlator's latest revision of its record,
/// `schemas::TraceRecord`; the column names are its JSON keys), looked up by trace id.
fn traces_table(f: Features) -> String {
    let lc = column_type("LC", f);
    format!(
        "CREATE TABLE IF NOT EXISTS traces (\n\
         tenant {lc}, traceId String, kind {lc}, originId String, user String,\n\
         groups Array(String), sourceAddresses Array(String), userAgent String,\n\
         cluster {lc}, namespace {lc}, pod String, container {lc}, containerId String,\n\
         hostname {lc}, command String, start Int64, end Int64, commands UInt64,\n\
         connections UInt64, fileaccesses UInt64, ambiguous UInt64, confidence Float32,\n\
         reason String, revision UInt64\n\
         ) ENGINE = ReplacingMergeTree(revision) ORDER BY (tenant, traceId)"
    )
}

/// Where each entry is: `events` is sorted by (tenant, type, timestamp, id), so finding an
/// entry by id alone would scan the tenant. This view, filled on every insert into `events`
/// (and from the rows already there when it is created), turns an id into the sort-key prefix.
const EVENTS_BY_ID: &str = "CREATE MATERIALIZED VIEW IF NOT EXISTS events_by_id \
     ENGINE = ReplacingMergeTree ORDER BY (tenant, id) POPULATE \
     AS SELECT tenant, id, type, timestamp FROM events";

/// All migrations, oldest first.
pub fn all(f: Features) -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "events",
            steps: vec![Step::Sql(events_table(f))],
        },
        Migration {
            version: 2,
            name: "events trace link and revision",
            steps: vec![Step::RebuildEventsWithRevision(events_table_named(
                "events_rebuild",
                f,
            ))],
        },
        Migration {
            version: 3,
            name: "traces",
            steps: vec![Step::Sql(traces_table(f))],
        },
        Migration {
            version: 4,
            name: "events enrichment",
            steps: vec![Step::AddEventsColumn("enrichment")],
        },
        Migration {
            version: 5,
            name: "events by id",
            steps: vec![Step::Sql(EVENTS_BY_ID.into())],
        },
    ]
}

/// Applies one step (each is safe to repeat after a crash part-way).
async fn apply_step(ch: &ClickHouse, step: &Step) -> Result<(), StoreError> {
    match step {
        Step::Sql(sql) => ch.execute(sql).await,
        Step::AddEventsColumn(name) => {
            let exists = ch
                .query_text(&format!(
                    "SELECT count() FROM system.columns WHERE database = currentDatabase() \
                     AND table = 'events' AND name = {}",
                    crate::sql::quote(name)
                ))
                .await?;
            if exists.trim() != "0" {
                return Ok(());
            }
            let c = COLUMNS
                .iter()
                .find(|c| c.name == *name)
                .expect("migrations add columns of COLUMNS");
            let f = features(ch).await?;
            ch.execute(&format!(
                "ALTER TABLE events ADD COLUMN {} {}",
                c.name,
                column_type(c.ch_type, f)
            ))
            .await
        }
        Step::RebuildEventsWithRevision(ddl) => {
            #[derive(serde::Deserialize)]
            struct Col {
                name: String,
            }
            let cols: Vec<String> = ch
                .query_rows::<Col>(
                    "SELECT name FROM system.columns \
                     WHERE database = currentDatabase() AND table = 'events'",
                )
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect();
            if cols.iter().any(|c| c == "revision") {
                // Current layout (or the rebuild finished): only a leftover may remain.
                ch.execute("DROP TABLE IF EXISTS events_rebuild").await?;
                return ch
                    .execute("DROP TABLE IF EXISTS events_before_rebuild")
                    .await;
            }
            ch.execute("DROP TABLE IF EXISTS events_rebuild").await?;
            ch.execute(ddl).await?;
            let copied: Vec<&str> = COLUMNS
                .iter()
                .map(|c| c.name)
                .filter(|n| cols.iter().any(|c| c == n))
                .collect();
            let list = copied.join(", ");
            ch.execute(&format!(
                "INSERT INTO events_rebuild ({list}) SELECT {list} FROM events"
            ))
            .await?;
            ch.execute("RENAME TABLE events TO events_before_rebuild, events_rebuild TO events")
                .await?;
            ch.execute("DROP TABLE IF EXISTS events_before_rebuild")
                .await
        }
    }
}

async fn features(ch: &ClickHouse) -> Result<Features, StoreError> {
    let (major, minor) = ch.server_version().await?;
    Ok(Features::for_version(major, minor))
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
    let features = features(ch).await?;
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
        for step in &m.steps {
            apply_step(ch, step).await?;
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
        assert!(old.contains("ReplacingMergeTree(revision)"));
        assert!(traces_table(Features::for_version(18, 16)).contains("kind String"));
        let new = events_table(Features::for_version(24, 8));
        assert!(new.contains("comm LowCardinality(String)"));
        assert!(new.contains("CODEC(Delta, ZSTD(1))"));
    }
}

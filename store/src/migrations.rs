//! Versioned ClickHouse DDL. Each migration is a list of idempotent statements; applied
//! versions are recorded in `schema_migrations`, so running the migrations again (every
//! service does at start-up, and the stack script does) is safe, including after a crash
//! between a statement and its record.
//!
//! The DDL adapts to the server (brief §5): on ClickHouse >= 20.3 string columns of few values
//! are `LowCardinality(String)`, timestamps get `Delta, ZSTD` codecs and every other column
//! `ZSTD`; on 18.16 (the local stack) they are plain `String`/`Int64`, compressed with what the
//! server's `<compression>` configuration says (ZSTD in `deploy/local/clickhouse/config.xml`:
//! about half the bytes of the default LZ4 on our events).
//!
//! And to the layout ([`Layout`]): on one server the tables are what readers query; on a
//! cluster (`[clickhouse.cluster]`) each is a `<table>_local` on every shard (replicated when
//! configured) behind a `Distributed` table of the usual name, sharded by the key that keeps
//! every revision of a row on one shard (so `ReplacingMergeTree` still collapses them), with
//! the DDL run `ON CLUSTER`.

use crate::client::ClickHouse;
use crate::columns::{COLUMNS, SOURCE_ENUM, TYPE_ENUM};
use crate::config::ClusterConfig;
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

/// Where tables live: one server, or sharded over a cluster.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    pub cluster: Option<&'a ClusterConfig>,
    pub database: &'a str,
}

impl Layout<'_> {
    /// ` ON CLUSTER <name>` when DDL runs on the whole cluster.
    fn on_cluster(&self) -> String {
        match self.cluster {
            Some(c) if c.on_cluster => format!(" ON CLUSTER {}", c.name),
            _ => String::new(),
        }
    }

    /// The table that stores `name`'s rows: `name`, or `name_local` on a cluster.
    fn data(&self, name: &str) -> String {
        match self.cluster {
            Some(_) => format!("{name}_local"),
            None => name.to_string(),
        }
    }

    /// `<Replicated>{kind}MergeTree(args)` for the data table of `name`.
    fn engine(&self, name: &str, kind: &str, args: &str) -> String {
        match self.cluster {
            Some(c) if c.replicated => {
                let path = c
                    .keeper_path
                    .replace("{database}", self.database)
                    .replace("{table}", &self.data(name));
                let sep = if args.is_empty() { "" } else { ", " };
                format!("Replicated{kind}MergeTree('{path}', '{{replica}}'{sep}{args})")
            }
            _ => format!("{kind}MergeTree({args})"),
        }
    }

    /// `CREATE TABLE <name> … ENGINE = Distributed(…)` over the data table, on a cluster.
    fn distributed(&self, name: &str, sharding_key: &str) -> Option<String> {
        let c = self.cluster?;
        Some(format!(
            "CREATE TABLE IF NOT EXISTS {name}{} AS {} ENGINE = Distributed({}, {}, {}, {sharding_key})",
            self.on_cluster(),
            self.data(name),
            c.name,
            self.database,
            self.data(name)
        ))
    }

    /// The data table of `name` and, on a cluster, its Distributed table.
    fn table(&self, name: &str, create: String, sharding_key: &str) -> Vec<Step> {
        let mut steps = vec![Step::Sql(create)];
        steps.extend(self.distributed(name, sharding_key).map(Step::Sql));
        steps
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
fn events_table(f: Features, l: &Layout) -> String {
    events_table_named("events", f, l)
}

fn events_table_named(name: &str, f: Features, l: &Layout) -> String {
    let mut cols = Vec::new();
    for c in COLUMNS {
        let mut def = format!("    {} {}", c.name, column_type(c.ch_type, f));
        if f.codecs {
            def.push_str(match c.name {
                "timestamp" | "received_timestamp" => " CODEC(Delta, ZSTD(1))",
                _ => " CODEC(ZSTD(1))",
            });
        }
        cols.push(def);
    }
    cols.push(
        "    deployment String ALIAS if(lower(workload_kind) = 'deployment', workload_name, '')"
            .into(),
    );
    format!(
        "CREATE TABLE IF NOT EXISTS {}{} (\n{}\n) ENGINE = {}\n\
         PARTITION BY toYYYYMMDD(toDateTime(intDiv(timestamp, 1000000000)))\n\
         ORDER BY (tenant, type, timestamp, id)",
        l.data(name),
        l.on_cluster(),
        cols.join(",\n"),
        l.engine(name, "Replacing", "revision"),
    )
}

/// Sharding keys: every revision of a row lands on the shard of its first one.
const EVENTS_SHARDING: &str = "cityHash64(tenant, id)";
const TRACES_SHARDING: &str = "cityHash64(tenant, traceId)";

/// The traces table: one row per session (the correlator's latest revision of its record,
/// `schemas::TraceRecord`; the column names are its JSON keys), looked up by trace id.
fn traces_table(f: Features, l: &Layout) -> String {
    let lc = column_type("LC", f);
    format!(
        "CREATE TABLE IF NOT EXISTS {}{} (\n\
         tenant {lc}, traceId String, kind {lc}, originId String, user String,\n\
         groups Array(String), sourceAddresses Array(String), userAgent String,\n\
         cluster {lc}, namespace {lc}, pod String, container {lc}, containerId String,\n\
         hostname {lc}, command String, start Int64, end Int64, commands UInt64,\n\
         connections UInt64, fileaccesses UInt64, ambiguous UInt64, confidence Float32,\n\
         reason String, revision UInt64\n\
         ) ENGINE = {} ORDER BY (tenant, traceId)",
        l.data("traces"),
        l.on_cluster(),
        l.engine("traces", "Replacing", "revision"),
    )
}

/// Where each entry is: `events` is sorted by (tenant, type, timestamp, id), so finding an
/// entry by id alone would scan the tenant. This view, filled on every insert into `events`
/// (and from the rows already there when it is created), turns an id into the sort-key prefix.
/// On a cluster the view fills each shard's `events_by_id_local` from its `events_local`.
fn events_by_id(l: &Layout) -> String {
    format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {}{} \
         ENGINE = {} ORDER BY (tenant, id) POPULATE \
         AS SELECT tenant, id, type, timestamp FROM {}",
        l.data("events_by_id"),
        l.on_cluster(),
        l.engine("events_by_id", "Replacing", ""),
        l.data("events"),
    )
}

/// Hourly counts by the rollup's dimensions (`crate::rollup`): one row per tenant, hour and
/// combination, the latest computation (`computed`, the mark it covered) replacing earlier
/// ones; the marks of hours the writer changed; and the mark each hour's computation covered.
fn rollup_tables(f: Features, l: &Layout) -> Vec<Step> {
    let lc = column_type("LC", f);
    let dims: Vec<String> = crate::rollup::DIMENSIONS
        .iter()
        .map(|d| {
            let c = COLUMNS.iter().find(|c| c.name == *d).expect("a column");
            format!("{d} {}", column_type(c.ch_type, f))
        })
        .collect();
    let counts = format!(
        "CREATE TABLE IF NOT EXISTS {}{} (\n\
         tenant {lc}, hour Int64, {}, n UInt64, computed UInt32\n\
         ) ENGINE = {}\n\
         PARTITION BY toYYYYMM(toDateTime(intDiv(hour, 1000000000)))\n\
         ORDER BY (tenant, hour, {})",
        l.data("events_hourly"),
        l.on_cluster(),
        dims.join(", "),
        l.engine("events_hourly", "Replacing", "computed"),
        crate::rollup::DIMENSIONS.join(", "),
    );
    let marks = format!(
        "CREATE TABLE IF NOT EXISTS {}{} (\n\
         tenant {lc}, hour Int64, marked DateTime DEFAULT now()\n\
         ) ENGINE = {} ORDER BY (tenant, hour)",
        l.data("events_hourly_marks"),
        l.on_cluster(),
        l.engine("events_hourly_marks", "Replacing", "marked"),
    );
    let done = format!(
        "CREATE TABLE IF NOT EXISTS {}{} (\n\
         tenant {lc}, hour Int64, covered UInt32\n\
         ) ENGINE = {} ORDER BY (tenant, hour)",
        l.data("events_hourly_done"),
        l.on_cluster(),
        l.engine("events_hourly_done", "Replacing", "covered"),
    );
    let mut steps = l.table("events_hourly", counts, ROLLUP_SHARDING);
    steps.extend(l.table("events_hourly_marks", marks, ROLLUP_SHARDING));
    steps.extend(l.table("events_hourly_done", done, ROLLUP_SHARDING));
    // Hours that hold rows from before this migration are due for their first computation.
    steps.push(Step::Sql(format!(
        "INSERT INTO events_hourly_marks (tenant, hour) \
         SELECT DISTINCT tenant, intDiv(timestamp, {h}) * {h} FROM events",
        h = crate::rollup::HOUR
    )));
    steps
}

/// Every row of an hour's counts, its marks and its computations on one shard.
const ROLLUP_SHARDING: &str = "cityHash64(tenant, hour)";

/// All migrations, oldest first.
pub fn all(f: Features, l: &Layout) -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "events",
            steps: l.table("events", events_table(f, l), EVENTS_SHARDING),
        },
        Migration {
            version: 2,
            name: "events trace link and revision",
            // Tables made before `revision` existed were never on a cluster.
            steps: if l.cluster.is_some() {
                Vec::new()
            } else {
                vec![Step::RebuildEventsWithRevision(events_table_named(
                    "events_rebuild",
                    f,
                    l,
                ))]
            },
        },
        Migration {
            version: 3,
            name: "traces",
            steps: l.table("traces", traces_table(f, l), TRACES_SHARDING),
        },
        Migration {
            version: 4,
            name: "events enrichment",
            steps: vec![Step::AddEventsColumn("enrichment")],
        },
        Migration {
            version: 5,
            name: "events by id",
            steps: l.table("events_by_id", events_by_id(l), EVENTS_SHARDING),
        },
        Migration {
            version: 6,
            name: "events labels",
            steps: vec![
                Step::AddEventsColumn("pod_labels"),
                Step::AddEventsColumn("namespace_labels"),
            ],
        },
        Migration {
            version: 7,
            name: "hourly counts",
            steps: rollup_tables(f, l),
        },
    ]
}

/// Applies one step (each is safe to repeat after a crash part-way).
async fn apply_step(ch: &ClickHouse, step: &Step) -> Result<(), StoreError> {
    match step {
        Step::Sql(sql) => ch.execute(sql).await,
        Step::AddEventsColumn(name) => {
            let l = layout(ch);
            let c = COLUMNS
                .iter()
                .find(|c| c.name == *name)
                .expect("migrations add columns of COLUMNS");
            let f = features(ch).await?;
            // The data table first, then (on a cluster) the Distributed table over it.
            let mut tables = vec![l.data("events")];
            if l.cluster.is_some() {
                tables.push("events".into());
            }
            for table in tables {
                let exists = ch
                    .query_text(&format!(
                        "SELECT count() FROM system.columns WHERE database = currentDatabase() \
                         AND table = {} AND name = {}",
                        crate::sql::quote(&table),
                        crate::sql::quote(name)
                    ))
                    .await?;
                if exists.trim() == "0" {
                    ch.execute(&format!(
                        "ALTER TABLE {table}{} ADD COLUMN {} {}",
                        l.on_cluster(),
                        c.name,
                        column_type(c.ch_type, f)
                    ))
                    .await?;
                }
            }
            Ok(())
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

fn layout(ch: &ClickHouse) -> Layout<'_> {
    Layout {
        cluster: ch.cluster(),
        database: ch.database(),
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
    let l = layout(ch);
    ch.execute_without_db(&format!(
        "CREATE DATABASE IF NOT EXISTS {db}{}",
        l.on_cluster()
    ))
    .await?;
    // On a replicated cluster the record is one table replicated to every node (no shard in
    // its path), so every node knows what was applied.
    let migrations_engine = match l.cluster {
        Some(c) if c.replicated => format!(
            "ReplicatedMergeTree('/clickhouse/activity_audit/{db}/schema_migrations', '{{replica}}')"
        ),
        _ => "MergeTree".into(),
    };
    ch.execute(&format!(
        "CREATE TABLE IF NOT EXISTS schema_migrations{} (\
         version UInt32, name String, applied_at DateTime DEFAULT now()) \
         ENGINE = {migrations_engine} ORDER BY version",
        l.on_cluster()
    ))
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
    for m in all(features, &l) {
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
        tracing::info!(database = %db, version = m.version, name = m.name, ?features, cluster = ?l.cluster.map(|c| &c.name), "migration applied");
        done.push(m.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: Layout = Layout {
        cluster: None,
        database: "aa",
    };

    #[test]
    fn ddl_adapts_to_server() {
        let old = events_table(Features::for_version(18, 16), &ONE);
        assert!(!old.contains("LowCardinality") && !old.contains("CODEC"));
        assert!(old.contains("ReplacingMergeTree(revision)"));
        assert!(traces_table(Features::for_version(18, 16), &ONE).contains("kind String"));
        let new = events_table(Features::for_version(24, 8), &ONE);
        assert!(new.contains("timestamp Int64 CODEC(Delta, ZSTD(1))"));
        assert!(new.contains("cmdline String CODEC(ZSTD(1))"));
        assert!(new.contains("comm LowCardinality(String) CODEC(ZSTD(1))"));
    }

    #[test]
    fn cluster_ddl_is_replicated_distributed_and_on_cluster() {
        let c = ClusterConfig {
            name: "prod".into(),
            ..Default::default()
        };
        let l = Layout {
            cluster: Some(&c),
            database: "aa",
        };
        let f = Features::for_version(24, 8);
        let sql: Vec<String> = all(f, &l)
            .into_iter()
            .flat_map(|m| m.steps)
            .map(|s| match s {
                Step::Sql(s) => s,
                other => format!("{other:?}"),
            })
            .collect();
        let find = |needle: &str| {
            sql.iter()
                .find(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("no statement with {needle:?} in {sql:#?}"))
        };
        let events = find("CREATE TABLE IF NOT EXISTS events_local ON CLUSTER prod (");
        assert!(events.contains(
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/activity_audit/aa/events_local', '{replica}', revision)"
        ));
        assert!(
            find("CREATE TABLE IF NOT EXISTS events ON CLUSTER prod AS events_local")
                .contains("Distributed(prod, aa, events_local, cityHash64(tenant, id))")
        );
        assert!(find("traces_local ON CLUSTER prod").contains("ReplicatedReplacingMergeTree("));
        assert!(
            find("CREATE TABLE IF NOT EXISTS traces ON CLUSTER prod AS traces_local")
                .contains("cityHash64(tenant, traceId)")
        );
        let mv = find("MATERIALIZED VIEW IF NOT EXISTS events_by_id_local ON CLUSTER prod");
        assert!(
            mv.contains("FROM events_local") && mv.contains("'{replica}')"),
            "{mv}"
        );
        assert!(
            find("CREATE TABLE IF NOT EXISTS events_by_id ON CLUSTER prod AS events_by_id_local")
                .contains("Distributed(")
        );
        assert!(
            !sql.iter().any(|s| s.contains("Rebuild")),
            "nothing to rebuild on a cluster"
        );

        // Shards without replication or Keeper: plain engines, no ON CLUSTER.
        let c = ClusterConfig {
            name: "lab".into(),
            replicated: false,
            on_cluster: false,
            ..Default::default()
        };
        let l = Layout {
            cluster: Some(&c),
            database: "aa",
        };
        let e = events_table(f, &l);
        assert!(
            e.contains("TABLE IF NOT EXISTS events_local (")
                && e.contains("= ReplacingMergeTree(revision)")
        );
        assert!(!e.contains("ON CLUSTER"));
    }
}

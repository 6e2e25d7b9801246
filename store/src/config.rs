//! How to reach ClickHouse.

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub user: String,
    /// Never logged (`Debug` redacts it).
    pub password: String,
    pub database: String,
    /// Per-request timeout, seconds.
    pub timeout_secs: u64,
    /// Tables sharded over a ClickHouse cluster (`[clickhouse.cluster]`); absent: one server.
    pub cluster: Option<ClusterConfig>,
}

/// The cluster layout: each table is a local table on every shard (`<table>_local`) behind a
/// `Distributed` table with the table's usual name, so readers and the writer use the same
/// names as on one server. See docs/clickhouse-cluster.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Cluster name in the servers' `remote_servers`.
    pub name: String,
    /// Local tables are `Replicated…MergeTree` (needs ClickHouse Keeper or ZooKeeper and the
    /// `{shard}`/`{replica}` macros); false: plain `…MergeTree` (shards without replicas).
    pub replicated: bool,
    /// DDL runs `ON CLUSTER` (the distributed DDL queue, which needs Keeper); false: on the
    /// server the service talks to only (apply the migrations on every node).
    pub on_cluster: bool,
    /// Keeper path of the replicated tables; `{shard}` and `{table}` are substituted.
    pub keeper_path: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: String::new(),
            replicated: true,
            on_cluster: true,
            keeper_path: "/clickhouse/tables/{shard}/activity_audit/{database}/{table}".into(),
        }
    }
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: String::new(),
            database: "activity_audit".into(),
            timeout_secs: 60,
            cluster: None,
        }
    }
}

impl ClickHouseConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            anyhow::bail!("clickhouse.url must be an http(s) URL, got {:?}", self.url);
        }
        if !crate::sql::is_identifier(&self.database) {
            anyhow::bail!(
                "clickhouse.database {:?} must match [A-Za-z_][A-Za-z0-9_]*",
                self.database
            );
        }
        if let Some(c) = &self.cluster {
            if !crate::sql::is_identifier(&c.name) {
                anyhow::bail!(
                    "clickhouse.cluster.name {:?} must match [A-Za-z_][A-Za-z0-9_]*",
                    c.name
                );
            }
            if c.replicated && !c.keeper_path.contains("{table}") {
                anyhow::bail!("clickhouse.cluster.keeper_path must contain {{table}}");
            }
            if c.keeper_path.contains('\'') {
                anyhow::bail!("clickhouse.cluster.keeper_path must not contain quotes");
            }
        }
        Ok(())
    }
}

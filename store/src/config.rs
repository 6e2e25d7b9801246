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
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
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
        Ok(())
    }
}

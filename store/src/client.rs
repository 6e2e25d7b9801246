//! A small ClickHouse HTTP client: statements, RowBinary inserts and JSON-rows queries.
//! Works with ClickHouse 18.16 (no server-side parameters; values are escaped by [`crate::sql`])
//! and current releases.

use crate::config::ClickHouseConfig;
use crate::error::StoreError;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Statements a client ran, in the order it sent them (benchmarks replay them directly).
pub type StatementLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

#[derive(Clone)]
pub struct ClickHouse {
    http: reqwest::Client,
    cfg: ClickHouseConfig,
    log: Option<StatementLog>,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl ClickHouse {
    pub fn new(cfg: ClickHouseConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .pool_max_idle_per_host(8)
            .build()
            .expect("building the HTTP client");
        ClickHouse {
            http,
            cfg,
            log: None,
        }
    }

    /// This client, also appending every query it runs to `log`.
    pub fn logging_statements(mut self, log: StatementLog) -> Self {
        self.log = Some(log);
        self
    }

    pub fn database(&self) -> &str {
        &self.cfg.database
    }

    /// The cluster layout, if the tables are sharded.
    pub fn cluster(&self) -> Option<&crate::config::ClusterConfig> {
        self.cfg.cluster.as_ref()
    }

    async fn post(
        &self,
        query: Option<&str>,
        body: impl Into<reqwest::Body>,
        use_db: bool,
    ) -> Result<bytes::Bytes, StoreError> {
        let mut params: Vec<(&str, &str)> = vec![
            ("output_format_json_quote_64bit_integers", "0"),
            ("output_format_json_quote_denormals", "0"),
        ];
        if use_db {
            params.push(("database", &self.cfg.database));
        }
        if self.cfg.cluster.is_some() {
            // An insert into a Distributed table returns only once every shard has its rows:
            // the writer commits offsets after that, never after a local spool.
            params.push(("insert_distributed_sync", "1"));
        }
        if let Some(q) = query {
            params.push(("query", q));
        }
        let mut req = self.http.post(&self.cfg.url).query(&params).body(body);
        if !self.cfg.user.is_empty() {
            req = req.basic_auth(&self.cfg.user, Some(&self.cfg.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(without_url(e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(without_url(e)))?;
        if status != 200 {
            return Err(StoreError::from_body(
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        // ClickHouse can fail mid-stream after sending 200: the exception is appended.
        if let Some(pos) = find(&bytes, b"\nCode: ")
            && bytes[pos..].windows(13).any(|w| w == b"DB::Exception")
        {
            return Err(StoreError::from_body(
                500,
                &String::from_utf8_lossy(&bytes[pos + 1..]),
            ));
        }
        Ok(bytes)
    }

    /// Runs a statement (DDL, ALTER, …) against the configured database.
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.post(None, sql.as_bytes().to_vec(), true)
            .await
            .map(|_| ())
    }

    /// Runs a statement without selecting a database (e.g. `CREATE DATABASE`).
    pub async fn execute_without_db(&self, sql: &str) -> Result<(), StoreError> {
        self.post(None, sql.as_bytes().to_vec(), false)
            .await
            .map(|_| ())
    }

    /// Runs a query and returns its raw output.
    pub async fn query_text(&self, sql: &str) -> Result<String, StoreError> {
        let b = self.post(None, sql.as_bytes().to_vec(), true).await?;
        String::from_utf8(b.to_vec()).map_err(|e| StoreError::Decode(e.to_string()))
    }

    /// Runs a query with `FORMAT JSONEachRow` appended and decodes each row.
    pub async fn query_rows<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, StoreError> {
        let sql = format!("{sql} FORMAT JSONEachRow");
        if let Some(log) = &self.log {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sql.clone());
        }
        let b = self.post(None, sql.into_bytes(), true).await?;
        b.split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).map_err(|e| StoreError::Decode(e.to_string())))
            .collect()
    }

    /// Inserts a RowBinary body into `table` (`columns` in body order). `Bytes` so retries and
    /// callers keep the buffer without copying it.
    pub async fn insert_rowbinary(
        &self,
        table: &str,
        columns: &[&str],
        body: bytes::Bytes,
    ) -> Result<(), StoreError> {
        let q = format!(
            "INSERT INTO {table} ({}) FORMAT RowBinary",
            columns.join(", ")
        );
        self.post(Some(&q), body, true).await.map(|_| ())
    }

    /// Inserts JSON lines into `table` (keys are column names).
    pub async fn insert_json_lines(
        &self,
        table: &str,
        body: bytes::Bytes,
    ) -> Result<(), StoreError> {
        let q = format!("INSERT INTO {table} FORMAT JSONEachRow");
        self.post(Some(&q), body, true).await.map(|_| ())
    }

    /// `(major, minor)` of the server.
    pub async fn server_version(&self) -> Result<(u32, u32), StoreError> {
        let v = self.query_text("SELECT version()").await?;
        parse_version(v.trim()).ok_or_else(|| StoreError::Decode(format!("version {v:?}")))
    }

    /// Whether the server answers.
    pub async fn ping(&self) -> bool {
        self.execute_without_db("SELECT 1").await.is_ok()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// reqwest errors print the URL; ours carries no secret, but strip it anyway.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert_eq!(super::parse_version("18.16.1"), Some((18, 16)));
        assert_eq!(super::parse_version("24.8.4.13"), Some((24, 8)));
        assert_eq!(super::parse_version("x"), None);
    }
}

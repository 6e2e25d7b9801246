//! Reads that never show duplicates: every query over `events` uses `FINAL`, which collapses
//! rows with the same sort key (a replayed event has the same tenant, type, timestamp and id).

use crate::client::ClickHouse;
use crate::columns::select_as_attributes;
use crate::error::StoreError;
use crate::sql::quote;
use schemas::ActivityEvent;

/// Number of distinct events of `tenant` as readers see them.
pub async fn count(ch: &ClickHouse, tenant: &str) -> Result<u64, StoreError> {
    let t = ch
        .query_text(&format!(
            "SELECT count() FROM events FINAL WHERE tenant = {}",
            quote(tenant)
        ))
        .await?;
    t.trim()
        .parse()
        .map_err(|_| StoreError::Decode(format!("count {t:?}")))
}

/// All events of `tenant` (tests and tools; not for large tenants).
pub async fn all(ch: &ClickHouse, tenant: &str) -> Result<Vec<ActivityEvent>, StoreError> {
    ch.query_rows(&format!(
        "SELECT {} FROM events FINAL WHERE tenant = {} ORDER BY timestamp, id",
        select_as_attributes(),
        quote(tenant)
    ))
    .await
}

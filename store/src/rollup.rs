//! Hourly counts for the frequency graph. A histogram over days reads every row of the range
//! for a handful of columns; `events_hourly` holds, per tenant and hour, the number of events
//! per data source, cluster, namespace, workload and command name, so a histogram whose filter
//! and scope use only those attributes reads one row per combination and hour instead.
//!
//! Counts are exact, not estimates, and never stale:
//! - An hour's counts are computed from `events FINAL`, so a replay or an earlier revision
//!   of an event is counted once (a materialized view would count every inserted row).
//! - The writer marks every (tenant, hour) it inserted rows into (`events_hourly_marks`,
//!   stamped with the server's clock) after the insert and before it commits the offsets, so
//!   a crash in between replays the batch and marks it again.
//! - [`roll_up`] recomputes each hour whose latest mark is older than the settle time and
//!   newer than its last computation, and records the mark it covered (`events_hourly_done`).
//! - Readers use an hour's counts only when its computation covers its latest mark
//!   ([`clean_hours`]). An hour marked since (late data) is read from `events` until it is
//!   computed again. A computation that ran before rows marked later were visible covers an
//!   older mark: those rows' mark is newer than the computation's start, which is newer than
//!   the mark it covered plus the settle time.

use crate::client::ClickHouse;
use crate::error::StoreError;
use crate::filter::column_of;
use crate::sql::quote;
use schemas::filter::Expr;
use serde::Deserialize;

/// An hour in nanoseconds: the rollup's time step.
pub const HOUR: i64 = 3_600_000_000_000;

/// Columns the counts are kept by (besides tenant and hour). A filter on these alone can be
/// answered from the rollup.
pub const DIMENSIONS: &[&str] = &[
    "type",
    "cluster",
    "namespace",
    "workload_kind",
    "workload_name",
    "comm",
];

/// Whether every condition of `e` is on a column the rollup keeps.
pub fn covers(e: &Expr) -> bool {
    e.conditions()
        .iter()
        .all(|c| column_of(c.attribute.name).is_some_and(|col| DIMENSIONS.contains(&col.name)))
}

/// The (tenant, hour) of every row of a RowBinary `events` body (`row_ends`: each row's end),
/// distinct. Reads the row's leading columns: tenant (string), type (one byte), timestamp.
pub fn touched_hours(body: &[u8], row_ends: &[usize]) -> Vec<(String, i64)> {
    // Batches run in order of arrival, so a row mostly shares the previous row's hour: that
    // check first, the set of those seen (many tenants) second.
    let mut seen: std::collections::HashSet<(&[u8], i64)> = std::collections::HashSet::new();
    let mut last: Option<(&[u8], i64)> = None;
    let mut out: Vec<(String, i64)> = Vec::new();
    let mut start = 0;
    for &end in row_ends {
        let row = &body[start..end];
        start = end;
        let Some((tenant, rest)) = leading_string(row) else {
            continue;
        };
        let Some(ts) = rest.get(1..9) else {
            continue;
        };
        let ts = i64::from_le_bytes(ts.try_into().expect("8 bytes"));
        let hour = ts.div_euclid(HOUR) * HOUR;
        if last == Some((tenant, hour)) {
            continue;
        }
        last = Some((tenant, hour));
        if seen.insert((tenant, hour)) {
            out.push((String::from_utf8_lossy(tenant).into_owned(), hour));
        }
    }
    out
}

/// A RowBinary string (LEB128 length, bytes) at the start of `b`, and what follows it.
fn leading_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut len, mut shift, mut i) = (0usize, 0, 0);
    loop {
        let byte = *b.get(i)?;
        len |= ((byte & 0x7f) as usize) << shift;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = i.checked_add(len)?;
    Some((b.get(i..end)?, &b[end..]))
}

/// Marks `hours` as changed (the server stamps the time).
pub async fn mark(ch: &ClickHouse, hours: &[(String, i64)]) -> Result<(), StoreError> {
    if hours.is_empty() {
        return Ok(());
    }
    let values: Vec<String> = hours
        .iter()
        .map(|(t, h)| format!("({}, {h})", quote(t)))
        .collect();
    ch.execute(&format!(
        "INSERT INTO events_hourly_marks (tenant, hour) VALUES {}",
        values.join(", ")
    ))
    .await
}

#[derive(Deserialize)]
struct Due {
    tenant: String,
    hour: i64,
    m: u32,
}

/// The server's clock, unix seconds: what marks are stamped with.
async fn server_now(ch: &ClickHouse) -> Result<u32, StoreError> {
    let t = ch.query_text("SELECT toUInt32(now())").await?;
    t.trim()
        .parse()
        .map_err(|_| StoreError::Decode(format!("now() {t:?}")))
}

/// Recomputes the counts of every hour marked since its last computation, if its latest
/// mark is at least `settle_s` old; marks older than `since` (unix seconds) are not looked at.
/// Returns the hours computed.
pub async fn roll_up(ch: &ClickHouse, settle_s: u32, since: u32) -> Result<usize, StoreError> {
    let due: Vec<Due> = ch
        .query_rows(&format!(
            "SELECT tenant, hour, m FROM \
             (SELECT tenant, hour, toUInt32(max(marked)) AS m FROM events_hourly_marks \
              WHERE marked >= toDateTime({since}) GROUP BY tenant, hour) \
             ANY LEFT JOIN \
             (SELECT tenant, hour, max(covered) AS c FROM events_hourly_done GROUP BY tenant, hour) \
             USING (tenant, hour) \
             WHERE m > c AND m + {settle_s} <= toUInt32(now()) ORDER BY tenant, hour"
        ))
        .await?;
    let dims = DIMENSIONS.join(", ");
    for d in &due {
        let (tenant, hour, m) = (quote(&d.tenant), d.hour, d.m);
        ch.execute(&format!(
            "INSERT INTO events_hourly (tenant, hour, {dims}, n, computed) \
             SELECT tenant, {hour}, {dims}, count(), {m} FROM events FINAL \
             WHERE tenant = {tenant} AND timestamp >= {hour} AND timestamp < {} \
             GROUP BY tenant, {dims}",
            hour + HOUR
        ))
        .await?;
        ch.execute(&format!(
            "INSERT INTO events_hourly_done (tenant, hour, covered) VALUES ({tenant}, {hour}, {m})"
        ))
        .await?;
    }
    Ok(due.len())
}

/// Rolls up every `interval` until `shutdown` (errors are logged and retried next time).
pub async fn run(
    ch: ClickHouse,
    interval: std::time::Duration,
    settle_s: u32,
    shutdown: pipeline::shutdown::Shutdown,
) {
    // The first pass looks at every mark; later ones at marks since shortly before the last
    // pass began (a mark is due only once it is `settle_s` old).
    // The server's clock, which stamps the marks, decides.
    let mut since = 0u32;
    loop {
        let pass = async {
            let started = server_now(&ch).await?;
            let n = roll_up(&ch, settle_s, since).await?;
            Ok::<_, StoreError>((started, n))
        };
        match pass.await {
            Ok((started, n)) => {
                if n > 0 {
                    tracing::debug!(hours = n, "hourly counts computed");
                }
                since = started.saturating_sub(settle_s + 600);
            }
            Err(e) => tracing::warn!(error = %e, "computing hourly counts failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[derive(Deserialize)]
struct Clean {
    hour: i64,
}

/// The hours in `[from, to)` (multiples of [`HOUR`]) whose counts cover their latest mark.
pub async fn clean_hours(
    ch: &ClickHouse,
    tenant: &str,
    from: i64,
    to: i64,
) -> Result<Vec<i64>, StoreError> {
    let t = quote(tenant);
    let rows: Vec<Clean> = ch
        .query_rows(&format!(
            "SELECT hour FROM \
             (SELECT hour, max(covered) AS c FROM events_hourly_done \
              WHERE tenant = {t} AND hour >= {from} AND hour < {to} GROUP BY hour) \
             ANY LEFT JOIN \
             (SELECT hour, toUInt32(max(marked)) AS m FROM events_hourly_marks \
              WHERE tenant = {t} AND hour >= {from} AND hour < {to} GROUP BY hour) \
             USING hour WHERE c >= m ORDER BY hour"
        ))
        .await?;
    Ok(rows.into_iter().map(|r| r.hour).collect())
}

/// Consecutive hours as `[start, end)` ranges.
pub fn runs(hours: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &h in hours {
        match out.last_mut() {
            Some((_, end)) if *end == h => *end = h + HOUR,
            _ => out.push((h, h + HOUR)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_hours_reads_tenant_and_hour_of_each_row() {
        let mut body = Vec::new();
        let mut ends = Vec::new();
        for (tenant, ts) in [("a", 5), ("a", HOUR - 1), ("b", HOUR + 7), ("a", HOUR)] {
            let e = schemas::ActivityEvent {
                tenant: tenant.into(),
                timestamp: ts,
                ..Default::default()
            };
            crate::row::write_row(&mut body, &e);
            ends.push(body.len());
        }
        assert_eq!(
            touched_hours(&body, &ends),
            [("a".into(), 0), ("b".into(), HOUR), ("a".into(), HOUR)]
        );
    }

    #[test]
    fn filters_on_kept_columns_only_are_covered() {
        let parse = |f: &str| schemas::filter::parse(f).unwrap().unwrap();
        assert!(covers(&parse(
            "kubernetes.namespace.name = shop and comm != ps or type = command"
        )));
        assert!(covers(&parse("kubernetes.deployment.name starts with web")));
        assert!(!covers(&parse(
            "namespace = shop and cmdline contains passwd"
        )));
        assert!(!covers(&parse("kubernetes.pod.name = web-1")));
    }

    #[test]
    fn runs_join_consecutive_hours() {
        assert_eq!(
            runs(&[0, HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR]),
            [(0, 2 * HOUR), (3 * HOUR, 5 * HOUR), (6 * HOUR, 7 * HOUR)]
        );
        assert!(runs(&[]).is_empty());
    }
}

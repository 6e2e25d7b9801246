//! The operations of the query API, independent of the transport (HTTP in [`crate::http`],
//! gRPC in [`crate::grpc`]). Each takes the caller's [`Principal`] and a [`Selection`]; the
//! tenant, the data sources the caller may read and the team scope are and-ed into every
//! statement here, in one place ([`Scoped::conditions`]), so no operation can forget them.
//!
//! Duplicates: a replayed event, or an earlier revision of one the correlator re-linked, is a
//! second row until ClickHouse merges it away. Entries are never shown twice: pages pick their
//! keys with `LIMIT 1 BY (timestamp, id)` and read the latest revision of each
//! (`ORDER BY revision DESC LIMIT 1 BY id`: what a merge keeps, without `FINAL`'s cost on
//! 18.16); page totals count distinct ids (up to [`TOTAL_LIMIT`]). The frequency graph, groups
//! and values count rows without `FINAL` (a merge-time collapse over the whole range costs
//! 3–6x on ClickHouse 18.16), so they may include such a row until ClickHouse merges it; the
//! frequency graph's whole hours served from the hourly counts (`store::rollup`) count each
//! event once.

use crate::auth::{Principal, permission_of};
use crate::error::ApiError;
use base64::Engine;
use schemas::filter::{self, Expr};
use schemas::{ActivityEvent, ActivityType, TraceRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use store::ClickHouse;
use store::rollup::HOUR;
use store::sql::quote;

/// Which entries a request is about.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Time range, ns; `to` exclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Requested data sources; empty means every one the caller may read.
    pub types: Vec<ActivityType>,
    pub filter: Option<Expr>,
    /// The scope the caller picked (on top of the team scope of its token).
    pub scope: Option<Expr>,
}

impl Selection {
    /// Parses the textual parameters shared by every operation.
    pub fn parse(
        from: Option<i64>,
        to: Option<i64>,
        types: &[String],
        filter_text: Option<&str>,
        scope_text: Option<&str>,
    ) -> Result<Selection, ApiError> {
        let mut list = Vec::new();
        for t in types.iter().flat_map(|t| t.split(',')) {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            let parsed = ActivityType::parse(t).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "types: unknown data source {t:?} (command, connection, fileaccess, kubernetes)"
                ))
            })?;
            if !list.contains(&parsed) {
                list.push(parsed);
            }
        }
        list.sort();
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(ApiError::BadRequest(format!(
                "from ({f}) is after to ({t})"
            )));
        }
        let parse = |param: &'static str, text: Option<&str>| {
            filter::parse(text.unwrap_or("")).map_err(|error| ApiError::Filter { param, error })
        };
        Ok(Selection {
            from,
            to,
            types: list,
            filter: parse("filter", filter_text)?,
            scope: parse("scope", scope_text)?,
        })
    }

    /// A digest of everything but the time range: a cursor is valid only for the selection
    /// it was issued for.
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for t in &self.types {
            h.update(t.as_str());
            h.update(",");
        }
        for e in [&self.filter, &self.scope] {
            h.update("|");
            if let Some(e) = e {
                h.update(e.to_string());
            }
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// A principal and a selection: the conditions every statement gets.
struct Scoped<'a> {
    who: &'a Principal,
    sel: &'a Selection,
}

impl Scoped<'_> {
    /// Data sources read: the requested ones, each of which must be granted.
    fn types(&self) -> Result<Vec<ActivityType>, ApiError> {
        if self.sel.types.is_empty() {
            if self.who.grants.is_empty() {
                return Err(ApiError::Forbidden(
                    "the token grants no data source".into(),
                ));
            }
            return Ok(self.who.grants.clone());
        }
        for t in &self.sel.types {
            if !self.who.may_read(*t) {
                return Err(ApiError::Forbidden(format!(
                    "the token may not read {t} entries (needs {})",
                    permission_of(*t)
                )));
            }
        }
        Ok(self.sel.types.clone())
    }

    /// `tenant AND types AND range AND team scope AND scope AND filter`.
    fn conditions(&self) -> Result<String, ApiError> {
        let types: Vec<String> = self.types()?.iter().map(|t| quote(t.as_str())).collect();
        let mut c = vec![
            format!("tenant = {}", quote(&self.who.tenant)),
            format!("type IN ({})", types.join(", ")),
        ];
        if let Some(f) = self.sel.from {
            c.push(format!("timestamp >= {f}"));
        }
        if let Some(t) = self.sel.to {
            c.push(format!("timestamp < {t}"));
        }
        for e in [&self.who.scope, &self.sel.scope, &self.sel.filter]
            .into_iter()
            .flatten()
        {
            c.push(format!("({})", store::filter::compile(e)));
        }
        Ok(c.join(" AND "))
    }
}

/// Rows of `events` matching `conds` (after `prewhere`, a cheap first filter), one per id — its
/// latest revision, as `ReplacingMergeTree(revision)` keeps after a merge — in `order` (which
/// starts with `timestamp`: an id has one timestamp), at most `limit`.
fn latest_sql(prewhere: Option<&str>, conds: &str, order: &str, limit: usize) -> String {
    let prewhere = prewhere.map_or(String::new(), |p| format!("PREWHERE {p} "));
    format!(
        "SELECT {} FROM events {prewhere}WHERE {conds} \
         ORDER BY {order}, revision DESC LIMIT 1 BY id LIMIT {limit}",
        store::columns::select_as_attributes()
    )
}

/// Nanoseconds since the epoch now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

// ---------------------------------------------------------------------------------------------
// Entries and cursors

pub const DEFAULT_LIMIT: u32 = 25;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Direction {
    /// Older entries than the position.
    #[serde(rename = "n")]
    Older,
    /// Newer entries than the position.
    #[serde(rename = "p")]
    Newer,
}

/// What an opaque cursor holds: the range of the first request, the position (exclusive) and
/// the direction, and the digest of the selection it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    #[serde(rename = "f", skip_serializing_if = "Option::is_none")]
    from: Option<i64>,
    #[serde(rename = "t", skip_serializing_if = "Option::is_none")]
    to: Option<i64>,
    #[serde(rename = "ts")]
    timestamp: i64,
    id: String,
    #[serde(rename = "d")]
    direction: Direction,
    #[serde(rename = "s")]
    selection: String,
    /// The range's total when the first page was read: later pages do not count again.
    #[serde(rename = "n", default)]
    total: u64,
    /// Whether `total` is the exact count (else: at least that many).
    #[serde(rename = "x", default)]
    total_exact: bool,
}

impl Cursor {
    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).expect("cursor serializes"))
    }

    fn decode(s: &str) -> Result<Cursor, ApiError> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::BadRequest("cursor: not a cursor this API issued".into()))
    }
}

/// An entries request.
#[derive(Debug, Clone, Default)]
pub struct EntriesRequest {
    pub selection: Selection,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageInfo {
    /// Newer entries (also for polling: entries that arrive later appear there).
    pub prev: Option<String>,
    /// Older entries; absent on the last page.
    pub next: Option<String>,
    /// Entries in the whole range (as of the first page; later pages carry it on), counted up
    /// to [`TOTAL_LIMIT`]: beyond it, `total` is the limit and `totalExact` is false.
    pub total: u64,
    /// `total` is the exact count; false when the range holds more than [`TOTAL_LIMIT`]
    /// entries (the histogram's totals count them all).
    #[serde(rename = "totalExact")]
    pub total_exact: bool,
}

/// Most entries a page's `total` counts. Counting every match of a broad filter over a long
/// range means reading all of it, which a page otherwise never does (its keys come from the
/// newest slice); like search engines' "10,000+ results", a page says "at least" beyond this.
pub const TOTAL_LIMIT: u64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct EntriesPage {
    pub data: Vec<ActivityEvent>,
    pub page: PageInfo,
}

#[derive(Deserialize)]
struct Key {
    timestamp: i64,
    id: String,
}

#[derive(Deserialize)]
struct Count {
    n: u64,
}

/// One page of entries, newest first. Keyset paging on `(timestamp, id)`: a cursor names the
/// last entry seen, so entries inserted meanwhile never shift a page (nothing is skipped or
/// repeated), and a cursor stays valid for as long as the data.
pub async fn entries(
    ch: &ClickHouse,
    who: &Principal,
    req: EntriesRequest,
) -> Result<EntriesPage, ApiError> {
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be within 1..={MAX_LIMIT}, not {limit}"
        )));
    }
    let mut sel = req.selection.clone();
    let cursor = match &req.cursor {
        Some(c) if !c.is_empty() => {
            if sel.from.is_some() || sel.to.is_some() {
                return Err(ApiError::BadRequest(
                    "give either from/to or cursor, not both".into(),
                ));
            }
            let c = Cursor::decode(c)?;
            if c.selection != sel.digest() {
                return Err(ApiError::BadRequest(
                    "cursor: issued for other types, filter or scope".into(),
                ));
            }
            sel.from = c.from;
            sel.to = c.to;
            Some(c)
        }
        _ => None,
    };
    let range = Scoped { who, sel: &sel }.conditions()?;
    let direction = cursor.as_ref().map_or(Direction::Older, |c| c.direction);
    let (position, order) = match &cursor {
        None => (String::new(), "DESC"),
        Some(c) => {
            let (cmp, order) = match c.direction {
                Direction::Older => ("<", "DESC"),
                Direction::Newer => (">", "ASC"),
            };
            let (ts, id) = (c.timestamp, quote(&c.id));
            (
                format!(" AND (timestamp {cmp} {ts} OR (timestamp = {ts} AND id {cmp} {id}))"),
                order,
            )
        }
    };
    // Keys first (two narrow columns), then the full rows of just those keys. Older pages try
    // the newest slices of what is left of the range first (see `key_windows`).
    let windows = match direction {
        Direction::Older => key_windows(
            sel.from,
            cursor.as_ref().map(|c| c.timestamp + 1).or(sel.to),
        ),
        Direction::Newer => vec![None],
    };
    let keys = async {
        for (i, lower) in windows.iter().enumerate() {
            let window = lower.map_or(String::new(), |l| format!(" AND timestamp >= {l}"));
            let keys = ch
                .query_rows::<Key>(&format!(
                    "SELECT timestamp, id FROM events WHERE {range}{position}{window} \
                     ORDER BY timestamp {order}, id {order} LIMIT 1 BY timestamp, id LIMIT {}",
                    limit + 1
                ))
                .await?;
            // a full page from a slice is the page: everything outside it is older
            if keys.len() > limit as usize || i + 1 == windows.len() {
                return Ok::<_, ApiError>(keys);
            }
        }
        unreachable!("the last window is the whole range")
    };
    // Distinct ids (a replay or an earlier revision not merged yet is not counted twice), up
    // to one more than the limit: reading stops there.
    let total_sql = format!(
        "SELECT count() AS n FROM (SELECT id FROM events WHERE {range} \
         LIMIT 1 BY id LIMIT {})",
        TOTAL_LIMIT + 1
    );
    let (mut keys, total, total_exact) = match &cursor {
        Some(c) => (keys.await?, c.total, c.total_exact),
        None => {
            let total = async { Ok::<_, ApiError>(ch.query_rows::<Count>(&total_sql).await?) };
            let (keys, total) = tokio::try_join!(keys, total)?;
            let n = total.first().map_or(0, |c| c.n);
            (keys, n.min(TOTAL_LIMIT), n <= TOTAL_LIMIT)
        }
    };
    let more = keys.len() > limit as usize;
    keys.truncate(limit as usize);
    let mut data = if keys.is_empty() {
        Vec::new()
    } else {
        let lo = keys.iter().map(|k| k.timestamp).min().unwrap();
        let hi = keys.iter().map(|k| k.timestamp).max().unwrap();
        let ids: Vec<String> = keys.iter().map(|k| quote(&k.id)).collect();
        ch.query_rows::<ActivityEvent>(&latest_sql(
            Some(&format!("id IN ({})", ids.join(", "))),
            &format!("{range} AND timestamp >= {lo} AND timestamp <= {hi}"),
            "timestamp DESC, id DESC",
            keys.len(),
        ))
        .await?
    };
    data.dedup_by(|a, b| a.id == b.id);
    let digest = sel.digest();
    let at = |e: &ActivityEvent, direction| {
        Cursor {
            from: sel.from,
            to: sel.to,
            timestamp: e.timestamp,
            id: e.id.clone(),
            direction,
            selection: digest.clone(),
            total,
            total_exact,
        }
        .encode()
    };
    let (newest, oldest) = (data.first(), data.last());
    let next = match direction {
        Direction::Older => more.then(|| at(oldest.unwrap(), Direction::Older)),
        Direction::Newer => oldest.map(|e| at(e, Direction::Older)),
    };
    let prev = match (newest, &cursor) {
        (Some(e), _) => Some(at(e, Direction::Newer)),
        // nothing newer yet: keep polling from the same place
        (None, Some(c)) if c.direction == Direction::Newer => Some(c.encode()),
        (None, _) => None,
    };
    Ok(EntriesPage {
        data,
        page: PageInfo {
            prev,
            next,
            total,
            total_exact,
        },
    })
}

/// Lower bounds of the time slices a page of older entries is looked for in, narrowest first,
/// ending with the whole range (`None`): the newest 1/64, then 1/8, of `[from, to)`. Most
/// filters fill a page from the newest slice, which reads a fraction of the rows; a rare one
/// costs at most the two small slices more. Ranges without both ends, or under ten minutes,
/// are read at once.
fn key_windows(from: Option<i64>, to: Option<i64>) -> Vec<Option<i64>> {
    const MIN_SPAN: i64 = 600 * 1_000_000_000;
    match (from, to) {
        (Some(from), Some(to)) if to - from > MIN_SPAN => {
            let span = to - from;
            vec![Some(to - span / 64), Some(to - span / 8), None]
        }
        _ => vec![None],
    }
}

/// One entry by id, if the caller may see it. `events_by_id` gives its type and timestamp,
/// so the read is a sort-key lookup instead of a scan of the tenant.
pub async fn entry(ch: &ClickHouse, who: &Principal, id: &str) -> Result<ActivityEvent, ApiError> {
    #[derive(Deserialize)]
    struct Location {
        #[serde(rename = "type")]
        kind: String,
        timestamp: i64,
    }
    let not_found = || ApiError::NotFound(format!("no entry {id:?}"));
    let sel = Selection::default();
    let conds = Scoped { who, sel: &sel }.conditions()?;
    let at = ch
        .query_rows::<Location>(&format!(
            "SELECT toString(type) AS type, timestamp FROM events_by_id \
             WHERE tenant = {} AND id = {} LIMIT 1",
            quote(&who.tenant),
            quote(id)
        ))
        .await?
        .pop()
        .ok_or_else(not_found)?;
    ch.query_rows::<ActivityEvent>(&latest_sql(
        Some(&format!("id = {}", quote(id))),
        &format!(
            "{conds} AND type = {} AND timestamp = {}",
            quote(&at.kind),
            at.timestamp
        ),
        "timestamp",
        1,
    ))
    .await?
    .pop()
    .ok_or_else(not_found)
}

// ---------------------------------------------------------------------------------------------
// Histogram

/// Range used when a request gives none: the last hour.
pub const DEFAULT_RANGE_NS: i64 = 3600 * 1_000_000_000;
/// Buckets a histogram aims at when the bucket size is chosen from the range.
const TARGET_BUCKETS: i64 = 120;
/// Most buckets a histogram answers with.
const MAX_BUCKETS: i64 = 5000;

/// A round bucket size giving about [`TARGET_BUCKETS`] buckets over `range` ns.
pub fn bucket_for(range: i64) -> i64 {
    const MS: i64 = 1_000_000;
    const S: i64 = 1000 * MS;
    const STEPS: [i64; 26] = [
        MS,
        2 * MS,
        5 * MS,
        10 * MS,
        20 * MS,
        50 * MS,
        100 * MS,
        200 * MS,
        500 * MS,
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        60 * S,
        120 * S,
        300 * S,
        600 * S,
        900 * S,
        1800 * S,
        3600 * S,
        3 * 3600 * S,
        6 * 3600 * S,
        12 * 3600 * S,
        86400 * S,
    ];
    let ideal = range / TARGET_BUCKETS;
    STEPS
        .iter()
        .copied()
        .find(|s| *s >= ideal)
        .unwrap_or_else(|| (ideal / (86400 * S) + 1) * 86400 * S)
}

#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub from: i64,
    pub to: i64,
    /// Bucket size, ns; bucket `i` starts at `from + i * bucket` (`from` is aligned to it).
    pub bucket: i64,
    /// Bucket start times.
    pub buckets: Vec<i64>,
    /// Per data source read, one count per bucket.
    pub counts: BTreeMap<String, Vec<u64>>,
    /// Per data source read, over the range.
    pub totals: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct BucketRow {
    t: i64,
    #[serde(rename = "type")]
    kind: String,
    n: u64,
}

/// `[start, end)` ranges of `column` as one SQL condition.
fn time_ranges(column: &str, ranges: &[(i64, i64)]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|(a, b)| format!("({column} >= {a} AND {column} < {b})"))
        .collect();
    parts.join(" OR ")
}

/// Counts per data source per time bucket: the frequency graph.
pub async fn histogram(
    ch: &ClickHouse,
    who: &Principal,
    sel: &Selection,
    bucket: Option<i64>,
) -> Result<Histogram, ApiError> {
    let sel = with_default_range(sel);
    let (from, to) = (sel.from.unwrap_or_default(), sel.to.unwrap_or_default());
    let range = (to - from).max(1);
    let bucket = match bucket {
        None | Some(0) => bucket_for(range),
        Some(b) if b < 0 => return Err(ApiError::BadRequest("bucket must be positive".into())),
        Some(b) if range / b > MAX_BUCKETS => {
            return Err(ApiError::BadRequest(format!(
                "bucket {b} ns gives more than {MAX_BUCKETS} buckets over the range"
            )));
        }
        Some(b) => b,
    };
    let scoped = Scoped { who, sel: &sel };
    let types = scoped.types()?;
    let conds = scoped.conditions()?;
    // Whole hours whose hourly counts are current come from the rollup when buckets are whole
    // hours and every filter is on the columns it keeps; the rest of the range from `events`.
    let rolled = bucket % HOUR == 0
        && [&who.scope, &sel.scope, &sel.filter]
            .into_iter()
            .flatten()
            .all(store::rollup::covers);
    // The whole hours in the range: the first hour boundary at or after `from`, the last one
    // at or before `to`.
    let (h0, h1) = (
        (from + HOUR - 1).div_euclid(HOUR) * HOUR,
        to.div_euclid(HOUR) * HOUR,
    );
    let clean = if rolled && h1 > h0 {
        store::rollup::runs(&store::rollup::clean_hours(ch, &who.tenant, h0, h1).await?)
    } else {
        Vec::new()
    };
    let scan = async {
        let mut gaps = Vec::new();
        let mut start = from;
        for &(a, b) in &clean {
            if a > start {
                gaps.push((start, a));
            }
            start = b;
        }
        if start < to {
            gaps.push((start, to));
        }
        if gaps.is_empty() {
            return Ok(Vec::new());
        }
        let within = if clean.is_empty() {
            String::new()
        } else {
            format!(" AND ({})", time_ranges("timestamp", &gaps))
        };
        ch.query_rows::<BucketRow>(&format!(
            "SELECT intDiv(timestamp, {bucket}) * {bucket} AS t, toString(type) AS type, count() AS n \
             FROM events WHERE {conds}{within} GROUP BY t, type ORDER BY t"
        ))
        .await
    };
    // The same conditions without the time range: the counts are bounded by their hours.
    let unbounded = Selection {
        from: None,
        to: None,
        ..sel.clone()
    };
    let hourly_conds = Scoped {
        who,
        sel: &unbounded,
    }
    .conditions()?;
    let rollup = async {
        if clean.is_empty() {
            return Ok(Vec::new());
        }
        let conds = &hourly_conds;
        ch.query_rows::<BucketRow>(&format!(
            "SELECT intDiv(hour, {bucket}) * {bucket} AS t, toString(type) AS type, sum(n) AS n \
             FROM events_hourly FINAL WHERE {conds} AND ({}) GROUP BY t, type ORDER BY t",
            time_ranges("hour", &clean)
        ))
        .await
    };
    let (scanned, rolled_up) = tokio::try_join!(scan, rollup)?;
    let rows = scanned.into_iter().chain(rolled_up);
    let first = from.div_euclid(bucket) * bucket;
    let n = ((to - 1 - first).div_euclid(bucket) + 1).max(1) as usize;
    let buckets: Vec<i64> = (0..n as i64).map(|i| first + i * bucket).collect();
    let mut counts: BTreeMap<String, Vec<u64>> = types
        .iter()
        .map(|t| (t.as_str().to_string(), vec![0; n]))
        .collect();
    let mut totals: BTreeMap<String, u64> =
        types.iter().map(|t| (t.as_str().to_string(), 0)).collect();
    for r in rows {
        let i = (r.t - first).div_euclid(bucket);
        if let (Some(v), true) = (counts.get_mut(&r.kind), (0..n as i64).contains(&i)) {
            v[i as usize] += r.n;
        }
        if let Some(t) = totals.get_mut(&r.kind) {
            *t += r.n;
        }
    }
    Ok(Histogram {
        from: first,
        to,
        bucket,
        buckets,
        counts,
        totals,
    })
}

// ---------------------------------------------------------------------------------------------
// Groups

/// A node of the groups tree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupNode {
    /// `cluster`, `namespace`, `workload`, `pod` or `host`.
    pub level: &'static str,
    pub name: String,
    /// Workload kind (workload level only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<GroupNode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Groups {
    pub clusters: Vec<GroupNode>,
    pub hosts: Vec<GroupNode>,
    /// More distinct pods and hosts than one answer carries.
    pub truncated: bool,
}

#[derive(Deserialize)]
struct GroupRow {
    cluster: String,
    namespace: String,
    workload_kind: String,
    workload_name: String,
    pod: String,
    host: String,
    n: u64,
}

/// Most leaf rows (pods and hosts) a groups answer carries.
const MAX_GROUP_ROWS: usize = 20_000;

/// Counts by cluster → namespace → workload → pod, and by host for activity outside
/// Kubernetes.
pub async fn groups(ch: &ClickHouse, who: &Principal, sel: &Selection) -> Result<Groups, ApiError> {
    let sel = with_default_range(sel);
    let conds = Scoped { who, sel: &sel }.conditions()?;
    let rows = ch
        .query_rows::<GroupRow>(&format!(
            "SELECT cluster, namespace, workload_kind, workload_name, pod, \
             if(cluster = '' AND pod = '', hostname, '') AS host, count() AS n \
             FROM events WHERE {conds} \
             GROUP BY cluster, namespace, workload_kind, workload_name, pod, host \
             ORDER BY n DESC LIMIT {}",
            MAX_GROUP_ROWS + 1
        ))
        .await?;
    let truncated = rows.len() > MAX_GROUP_ROWS;
    Ok(group_tree(rows.into_iter().take(MAX_GROUP_ROWS))).map(|mut g| {
        g.truncated = truncated;
        g
    })
}

fn group_tree(rows: impl Iterator<Item = GroupRow>) -> Groups {
    type Pods = BTreeMap<String, u64>;
    type Workloads = BTreeMap<(String, String), Pods>;
    let mut clusters: BTreeMap<String, BTreeMap<String, Workloads>> = BTreeMap::new();
    let mut hosts: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        if r.cluster.is_empty() && r.pod.is_empty() {
            *hosts.entry(r.host).or_default() += r.n;
        } else {
            *clusters
                .entry(r.cluster)
                .or_default()
                .entry(r.namespace)
                .or_default()
                .entry((r.workload_kind, r.workload_name))
                .or_default()
                .entry(r.pod)
                .or_default() += r.n;
        }
    }
    fn node(
        level: &'static str,
        name: String,
        kind: String,
        children: Vec<GroupNode>,
    ) -> GroupNode {
        let mut children = children;
        children.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        GroupNode {
            level,
            name,
            kind,
            count: children.iter().map(|c| c.count).sum(),
            children,
        }
    }
    let leaf = |level, name, count| GroupNode {
        level,
        name,
        kind: String::new(),
        count,
        children: Vec::new(),
    };
    let clusters = node(
        "",
        String::new(),
        String::new(),
        clusters
            .into_iter()
            .map(|(c, nss)| {
                let nss = nss
                    .into_iter()
                    .map(|(ns, wls)| {
                        let wls = wls
                            .into_iter()
                            .map(|((kind, name), pods)| {
                                let pods =
                                    pods.into_iter().map(|(p, n)| leaf("pod", p, n)).collect();
                                node("workload", name, kind, pods)
                            })
                            .collect();
                        node("namespace", ns, String::new(), wls)
                    })
                    .collect();
                node("cluster", c, String::new(), nss)
            })
            .collect(),
    )
    .children;
    let hosts = node(
        "",
        String::new(),
        String::new(),
        hosts.into_iter().map(|(h, n)| leaf("host", h, n)).collect(),
    )
    .children;
    Groups {
        clusters,
        hosts,
        truncated: false,
    }
}

/// `sel` with its missing range ends filled in: up to now, [`DEFAULT_RANGE_NS`] back.
fn with_default_range(sel: &Selection) -> Selection {
    let to = sel.to.unwrap_or_else(now_ns);
    Selection {
        from: Some(sel.from.unwrap_or(to - DEFAULT_RANGE_NS)),
        to: Some(to),
        ..sel.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Values and supported filters

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

pub const DEFAULT_VALUES: u32 = 20;

/// The most frequent values of `attribute` starting with `prefix`, for autocompletion.
pub async fn values(
    ch: &ClickHouse,
    who: &Principal,
    sel: &Selection,
    attribute: &str,
    prefix: &str,
    limit: Option<u32>,
) -> Result<Vec<ValueCount>, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_VALUES);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be within 1..={MAX_LIMIT}, not {limit}"
        )));
    }
    let attr = filter::attribute(attribute).ok_or_else(|| {
        ApiError::BadRequest(format!("attribute: unknown attribute {attribute:?}"))
    })?;
    let col = store::filter::column_of(attr.name).expect("every attribute has a column");
    let expr = if col.ch_type.starts_with("Array") {
        format!("arrayJoin({})", col.name)
    } else {
        format!("toString({})", col.name)
    };
    let sel = with_default_range(sel);
    let mut conds = Scoped { who, sel: &sel }.conditions()?;
    if attr.name == "kubernetes.deployment.name" {
        conds.push_str(" AND workload_kind = 'Deployment'");
    }
    Ok(ch
        .query_rows::<ValueCount>(&format!(
            "SELECT value, count() AS count FROM (SELECT {expr} AS value FROM events \
             WHERE {conds}) WHERE value != '' AND startsWith(value, {}) \
             GROUP BY value ORDER BY count DESC, value LIMIT {limit}",
            quote(prefix)
        ))
        .await?)
}

/// One attribute as `supported-filters` describes it.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeInfo {
    #[serde(flatten)]
    pub attribute: filter::Attribute,
    pub operators: Vec<&'static str>,
}

/// Every attribute a filter may name, with its type and operators.
pub fn supported_filters() -> Vec<AttributeInfo> {
    filter::ATTRIBUTES
        .iter()
        .map(|a| AttributeInfo {
            attribute: *a,
            operators: a
                .value_type
                .operators()
                .iter()
                .map(|o| o.as_str())
                .collect(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Traces

/// Events of a trace are looked for this far around the record's start and end (the record's
/// end is updated at most every 30 s of event time, late agents lag a little more), ns.
const TRACE_MARGIN_NS: i64 = 5 * 60 * 1_000_000_000;
/// Most entries one trace answer carries.
pub const TRACE_MAX_ENTRIES: usize = 10_000;

/// One entry of a trace, with the entry of the process that started it (the process tree).
#[derive(Debug, Clone, Serialize)]
pub struct TraceEntry {
    #[serde(flatten)]
    pub entry: ActivityEvent,
    #[serde(rename = "parentEntryId", skip_serializing_if = "Option::is_none")]
    pub parent_entry_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub trace: TraceRecord,
    /// The origin's who-and-from-where is withheld: the caller may not see the origin entry.
    #[serde(rename = "originRedacted")]
    pub origin_redacted: bool,
    pub entries: Vec<TraceEntry>,
    pub ambiguous: Vec<ActivityEvent>,
    pub truncated: bool,
}

/// The whole session of an entry the caller may see: the trace record (origin: who, from
/// where, where), every entry of the session the caller may see in time order with its parent
/// in the process tree, and the entries that may belong to it but could not be told apart
/// from another session.
pub async fn trace(ch: &ClickHouse, who: &Principal, id: &str) -> Result<Trace, ApiError> {
    let entry = entry(ch, who, id).await?;
    if entry.trace_id.is_empty() {
        if entry.trace_candidates.is_empty() {
            return Err(ApiError::NotFound(format!(
                "entry {id:?} belongs to no session"
            )));
        }
        return Err(ApiError::Ambiguous {
            message: format!(
                "entry {id:?} may belong to several sessions; ask for one of the candidates"
            ),
            candidates: entry.trace_candidates,
            reason: entry.trace_link,
        });
    }
    let (t, tid) = (quote(&who.tenant), quote(&entry.trace_id));
    let mut record = ch
        .query_rows::<TraceRecord>(&format!(
            "SELECT * FROM traces FINAL WHERE tenant = {t} AND traceId = {tid} LIMIT 1"
        ))
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound(format!("trace {} not stored yet", entry.trace_id)))?;
    let sel = Selection {
        from: Some(record.start.min(entry.timestamp) - TRACE_MARGIN_NS),
        to: Some(record.end.max(entry.timestamp) + TRACE_MARGIN_NS + 1),
        ..Selection::default()
    };
    let range = Scoped { who, sel: &sel }.conditions()?;
    let (order, most) = ("timestamp, id", TRACE_MAX_ENTRIES + 1);
    let members_sql = latest_sql(Some(&format!("trace_id = {tid}")), &range, order, most);
    let ambiguous_sql = latest_sql(
        None,
        &format!("{range} AND has(trace_candidates, {tid})"),
        order,
        most,
    );
    // The origin (a kube exec's audit event, an ssh login) may be outside the caller's scope
    // or data sources: then who started the session is not the caller's to see.
    let origin_visible = async {
        match self::entry(ch, who, &record.origin_id).await {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    };
    let (members, ambiguous, origin_visible) = tokio::try_join!(
        async { Ok::<_, ApiError>(ch.query_rows::<ActivityEvent>(&members_sql).await?) },
        async { Ok::<_, ApiError>(ch.query_rows::<ActivityEvent>(&ambiguous_sql).await?) },
        origin_visible,
    )?;
    let origin_redacted = !origin_visible;
    if origin_redacted {
        record.user.clear();
        record.groups.clear();
        record.source_addresses.clear();
        record.user_agent.clear();
    }
    let truncated = members.len() > TRACE_MAX_ENTRIES;
    let mut command_of: HashMap<&str, &str> = HashMap::new();
    for e in &members {
        if e.kind == ActivityType::Command && !e.exec_id.is_empty() {
            command_of
                .entry(e.exec_id.as_str())
                .or_insert(e.id.as_str());
        }
    }
    let parent = |e: &ActivityEvent| -> Option<String> {
        let key = if e.kind == ActivityType::Command {
            &e.parent_exec_id
        } else {
            &e.exec_id
        };
        command_of
            .get(key.as_str())
            .filter(|p| **p != e.id)
            .map(|s| s.to_string())
    };
    let entries = members
        .iter()
        .take(TRACE_MAX_ENTRIES)
        .map(|e| TraceEntry {
            parent_entry_id: parent(e),
            entry: e.clone(),
        })
        .collect();
    Ok(Trace {
        trace: record,
        origin_redacted,
        entries,
        ambiguous,
        truncated,
    })
}

// ---------------------------------------------------------------------------------------------
// Live updates

/// How far back each poll of the live stream looks (in received time) for entries that
/// became queryable late; an entry already sent is not sent again.
const TAIL_LOOKBACK_NS: i64 = 30 * 1_000_000_000;
/// Event times older than this (relative to received time) are not looked for.
const TAIL_EVENT_AGE_NS: i64 = 3600 * 1_000_000_000;

/// Polls for entries matching the selection that were received after `since`, in received
/// order; keeps what it sent in the window so each entry is sent once.
pub struct Tail {
    who: Principal,
    sel: Selection,
    since: i64,
    start: i64,
    sent: HashMap<String, i64>,
}

impl Tail {
    pub fn new(who: Principal, sel: Selection) -> Result<Tail, ApiError> {
        // fail now, not in the first poll, if the selection is not allowed
        Scoped {
            who: &who,
            sel: &sel,
        }
        .conditions()?;
        let now = now_ns();
        Ok(Tail {
            who,
            sel,
            since: now,
            start: now,
            sent: HashMap::new(),
        })
    }

    /// New entries since the last poll.
    pub async fn poll(&mut self, ch: &ClickHouse) -> Result<Vec<ActivityEvent>, ApiError> {
        let conds = Scoped {
            who: &self.who,
            sel: &self.sel,
        }
        .conditions()?;
        let lo = self.since - TAIL_LOOKBACK_NS;
        // Without FINAL (an hour of data every poll): `sent` keeps each entry to one.
        let rows = ch
            .query_rows::<ActivityEvent>(&format!(
                "SELECT {} FROM events WHERE {conds} AND received_timestamp >= {lo} \
                 AND received_timestamp >= {} AND timestamp >= {} \
                 ORDER BY received_timestamp, id LIMIT {MAX_LIMIT}",
                store::columns::select_as_attributes(),
                self.start,
                lo - TAIL_EVENT_AGE_NS
            ))
            .await?;
        let mut out = Vec::new();
        for e in rows {
            self.since = self.since.max(e.received_timestamp);
            if self
                .sent
                .insert(e.id.clone(), e.received_timestamp)
                .is_none()
            {
                out.push(e);
            }
        }
        let keep_from = self.since - 2 * TAIL_LOOKBACK_NS;
        self.sent.retain(|_, r| *r >= keep_from);
        Ok(out)
    }
}

/// New entries as the tail finds them, polling every `every`.
pub fn live(
    ch: ClickHouse,
    tail: Tail,
    every: std::time::Duration,
) -> impl futures::Stream<Item = Result<ActivityEvent, ApiError>> {
    futures::stream::unfold(
        (ch, tail, std::collections::VecDeque::new()),
        move |(ch, mut tail, mut buf)| async move {
            loop {
                if let Some(e) = buf.pop_front() {
                    return Some((Ok(e), (ch, tail, buf)));
                }
                match tail.poll(&ch).await {
                    Ok(v) if v.is_empty() => tokio::time::sleep(every).await,
                    Ok(v) => buf.extend(v),
                    Err(e) => {
                        tokio::time::sleep(every).await;
                        return Some((Err(e), (ch, tail, buf)));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PERMISSIONS;

    fn who(scope: Option<&str>, grants: &[ActivityType]) -> Principal {
        Principal {
            tenant: "t'1".into(),
            team: "team".into(),
            scope: scope.map(|s| filter::parse(s).unwrap().unwrap()),
            grants: grants.to_vec(),
        }
    }

    #[test]
    fn tenant_types_and_scopes_are_always_anded() {
        let p = who(
            Some("kubernetes.namespace.name = shop"),
            &[ActivityType::Command, ActivityType::Kubernetes],
        );
        let sel = Selection::parse(
            Some(1),
            Some(5),
            &[],
            Some("comm = bash or comm = sh"),
            Some("kubernetes.cluster.name = prod"),
        )
        .unwrap();
        let c = Scoped { who: &p, sel: &sel }.conditions().unwrap();
        assert_eq!(
            c,
            r"tenant = 't\'1' AND type IN ('command', 'kubernetes') AND timestamp >= 1 AND timestamp < 5 AND (namespace = 'shop') AND (cluster = 'prod') AND ((comm = 'bash') OR (comm = 'sh'))"
        );
        // an or in the filter cannot escape the scope: it is parenthesised
        let sel = Selection::parse(None, None, &["connection".into()], None, None).unwrap();
        let e = Scoped { who: &p, sel: &sel }.conditions().unwrap_err();
        assert!(matches!(e, ApiError::Forbidden(ref m) if m.contains("connections.read")));
        let none = who(None, &[]);
        assert!(matches!(
            Scoped {
                who: &none,
                sel: &Selection::default()
            }
            .conditions(),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(PERMISSIONS.len(), ActivityType::ALL.len());
    }

    #[test]
    fn selection_errors_name_the_parameter() {
        let e = Selection::parse(None, None, &["command,bogus".into()], None, None).unwrap_err();
        assert!(e.to_string().contains("bogus"));
        let e = Selection::parse(None, None, &[], Some("comm = "), None).unwrap_err();
        assert!(matches!(
            e,
            ApiError::Filter {
                param: "filter",
                ..
            }
        ));
        let e = Selection::parse(None, None, &[], None, Some("x = 1")).unwrap_err();
        assert!(matches!(e, ApiError::Filter { param: "scope", .. }));
        assert!(Selection::parse(Some(2), Some(1), &[], None, None).is_err());
    }

    #[test]
    fn cursors_round_trip_and_bind_to_their_selection() {
        let c = Cursor {
            from: Some(1),
            to: None,
            timestamp: 42,
            id: "a'b".into(),
            direction: Direction::Newer,
            selection: "abc".into(),
            total: 7,
            total_exact: true,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("not-a-cursor").is_err());
        let a = Selection::parse(None, None, &[], Some("comm = a"), None).unwrap();
        let b = Selection::parse(None, None, &[], Some("comm = b"), None).unwrap();
        let a2 = Selection::parse(Some(1), Some(2), &[], Some("comm   =  \"a\""), None).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_eq!(
            a.digest(),
            a2.digest(),
            "the range and spelling do not matter"
        );
    }

    #[test]
    fn key_windows_narrow_first() {
        const M: i64 = 60 * 1_000_000_000;
        assert_eq!(key_windows(Some(0), Some(5 * M)), vec![None]);
        assert_eq!(key_windows(None, Some(640 * M)), vec![None]);
        assert_eq!(
            key_windows(Some(0), Some(640 * M)),
            vec![Some(630 * M), Some(560 * M), None]
        );
    }

    #[test]
    fn bucket_sizes_are_round() {
        const S: i64 = 1_000_000_000;
        assert_eq!(bucket_for(S), 10_000_000);
        assert_eq!(bucket_for(600 * S), 5 * S);
        assert_eq!(bucket_for(3600 * S), 30 * S);
        assert_eq!(bucket_for(86400 * S), 900 * S);
        assert_eq!(bucket_for(14 * 86400 * S), 3 * 3600 * S);
        assert_eq!(bucket_for(365 * 86400 * S), 4 * 86400 * S);
    }

    #[test]
    fn groups_form_a_tree_with_hosts_apart() {
        let row = |c: &str, ns: &str, k: &str, w: &str, p: &str, h: &str, n| GroupRow {
            cluster: c.into(),
            namespace: ns.into(),
            workload_kind: k.into(),
            workload_name: w.into(),
            pod: p.into(),
            host: h.into(),
            n,
        };
        let g = group_tree(
            vec![
                row("prod", "shop", "Deployment", "web", "web-1", "", 5),
                row("prod", "shop", "Deployment", "web", "web-2", "", 7),
                row("prod", "db", "StatefulSet", "pg", "pg-0", "", 1),
                row("", "", "", "", "", "bastion", 3),
            ]
            .into_iter(),
        );
        assert_eq!(g.clusters.len(), 1);
        assert_eq!(g.clusters[0].count, 13);
        assert_eq!(g.clusters[0].children[0].name, "shop");
        let web = &g.clusters[0].children[0].children[0];
        assert_eq!((web.kind.as_str(), web.count), ("Deployment", 12));
        assert_eq!(web.children[0].name, "web-2");
        assert_eq!(
            g.hosts,
            vec![GroupNode {
                level: "host",
                name: "bastion".into(),
                kind: String::new(),
                count: 3,
                children: vec![],
            }]
        );
    }
}

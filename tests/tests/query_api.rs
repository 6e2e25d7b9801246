//! The query API on the real ClickHouse, over HTTP and gRPC: every endpoint and every filter
//! operator (checked against a reference evaluation of the same filter over the inserted
//! events, which the in-memory `Expr::matches` must agree with too), paging with concurrent
//! inserts, injection attempts, and scope enforcement for two tenants and two teams through
//! every endpoint and the live stream.

use integration_tests::{World, generator};
use query_api::proto;
use schemas::filter::{self, Op, ValueType};
use schemas::{ActivityEvent, ActivityType};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const T0: i64 = 1_764_000_000_000_000_000;

/// Realistic events of `tenant`: a quarter in a second cluster, a tenth on bare hosts.
fn dataset(seed: u64, n: usize, tenant: &str, start: i64) -> Vec<ActivityEvent> {
    let mut events = generator::events(seed, n, start, true);
    for (i, e) in events.iter_mut().enumerate() {
        e.tenant = tenant.into();
        e.received_timestamp = e.timestamp + 1_000_000;
        e.cluster = if i % 4 == 0 { "prod-us" } else { "prod-eu" }.into();
        if i % 10 == 9 && e.kind != ActivityType::Kubernetes {
            for f in [
                &mut e.cluster,
                &mut e.namespace,
                &mut e.pod,
                &mut e.workload_kind,
                &mut e.workload_name,
                &mut e.container_id,
                &mut e.container_name,
                &mut e.container_image,
                &mut e.node,
            ] {
                f.clear();
            }
            e.hostname = format!("bastion-{}", i % 3);
        }
    }
    events
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: std::net::SocketAddr) -> Api {
        Api {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// GET `path` (relative to `/api/v1/activity`, or absolute from `/api`) with query
    /// parameters: (status, JSON body).
    async fn get(&self, token: Option<&str>, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let url = if path.starts_with("/api") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/v1/activity{path}", self.base)
        };
        let mut req = self.http.get(url).query(params);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn ok(&self, token: &str, path: &str, params: &[(&str, &str)]) -> Value {
        let (s, b) = self.get(Some(token), path, params).await;
        assert_eq!(s, 200, "{path} {params:?}: {b}");
        b
    }

    /// Ids of every entry matching `params`, following `next` cursors.
    async fn ids(&self, token: &str, params: &[(&str, &str)]) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut p: Vec<(&str, &str)> = vec![("limit", "1000")];
            match &cursor {
                Some(c) => {
                    p.push(("cursor", c));
                    p.extend(params.iter().filter(|(k, _)| *k != "from" && *k != "to"));
                }
                None => p.extend(params),
            }
            let b = self.ok(token, "/entries", &p).await;
            out.extend(ids_of(&b["data"]));
            match b["page"]["next"].as_str() {
                Some(n) => cursor = Some(n.to_string()),
                None => return out,
            }
        }
    }
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A reference evaluation of a filter over an event's JSON, written independently of the SQL.

const NULLABLE: [&str; 6] = [
    "uid",
    "userLoginUid",
    "tty",
    "loginShellId",
    "loginShellDistance",
    "inInitTree",
];

/// The attribute's value as stored (absent strings are "", absent numbers 0, absent lists []),
/// or None for an absent nullable one.
fn value_of(e: &Value, name: &str) -> Option<Value> {
    let key = match name {
        "name" => "kubernetes.pod.name",
        "namespace" => "kubernetes.namespace.name",
        "kubernetes.deployment.name" => "kubernetes.workload.name",
        n => n,
    };
    let a = filter::attribute(name).unwrap();
    match e.get(key) {
        Some(v) => Some(v.clone()),
        None if NULLABLE.contains(&name) => None,
        None => Some(match a.value_type {
            ValueType::String | ValueType::Ip => Value::from(""),
            ValueType::StringList => Value::Array(vec![]),
            ValueType::Boolean => Value::from(false),
            ValueType::Number | ValueType::Timestamp => Value::from(0),
        }),
    }
}

fn lit(v: &filter::Value) -> Value {
    match v {
        filter::Value::Text(s) => Value::from(s.as_str()),
        filter::Value::Int(i) => Value::from(*i),
        filter::Value::Float(x) => Value::from(*x),
        filter::Value::Bool(b) => Value::from(*b),
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
        .unwrap()
}

fn positive(e: &Value, c: &filter::Condition) -> bool {
    let name = c.attribute.name;
    if name == "kubernetes.deployment.name"
        && e.get("kubernetes.workload.kind") != Some(&Value::from("Deployment"))
    {
        return false;
    }
    let Some(v) = value_of(e, name) else {
        return false;
    };
    let vals: Vec<Value> = c.values.iter().map(lit).collect();
    let items: Vec<Value> = match &v {
        Value::Array(a) => a.clone(),
        v => vec![v.clone()],
    };
    let eq = |a: &Value, b: &Value| match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        _ => num(a) == num(b),
    };
    let text = |a: &Value| a.as_str().unwrap_or_default().to_string();
    match c.op {
        Op::Eq => items.iter().any(|i| eq(i, &vals[0])),
        Op::In => items.iter().any(|i| vals.iter().any(|x| eq(i, x))),
        Op::Lt => num(&v) < num(&vals[0]),
        Op::Le => num(&v) <= num(&vals[0]),
        Op::Gt => num(&v) > num(&vals[0]),
        Op::Ge => num(&v) >= num(&vals[0]),
        Op::Exists => match &v {
            _ if NULLABLE.contains(&name) => true,
            Value::String(s) => name == "type" || name == "source" || !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Bool(_) => true,
            v => num(v) != 0.0,
        },
        Op::StartsWith => items.iter().any(|i| text(i).starts_with(&text(&vals[0]))),
        Op::Contains => items.iter().any(|i| text(i).contains(&text(&vals[0]))),
        op => unreachable!("{op:?}"),
    }
}

fn matches(e: &Value, x: &filter::Expr) -> bool {
    match x {
        filter::Expr::And(v) => v.iter().all(|x| matches(e, x)),
        filter::Expr::Or(v) => v.iter().any(|x| matches(e, x)),
        filter::Expr::Not(x) => !matches(e, x),
        filter::Expr::Cond(c) if c.op.is_negative() => !positive(
            e,
            &filter::Condition {
                op: c.op.negated(),
                ..c.clone()
            },
        ),
        filter::Expr::Cond(c) => positive(e, c),
    }
}

/// Ids of the events `x` matches, evaluated in memory (`Expr::matches`).
fn in_memory(events: &[schemas::ActivityEvent], x: &filter::Expr) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| x.matches(e))
        .map(|e| e.id.clone())
        .collect()
}

/// A value of `attribute` that occurs in the data (or a plausible one).
fn sample(events: &[Value], a: &filter::Attribute) -> String {
    let found = events.iter().find_map(|e| match value_of(e, a.name)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Array(v) if !v.is_empty() => v[0].as_str().map(str::to_string),
        Value::Number(n) if n.as_f64() != Some(0.0) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    });
    match (found, a.value_type) {
        (Some(v), _) => v,
        (None, ValueType::Ip) => "10.0.0.1".into(),
        (None, ValueType::Number | ValueType::Timestamp) => "1".into(),
        (None, ValueType::Boolean) => "true".into(),
        (None, _) => "x".into(),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_paging_operators_and_every_endpoint() {
    let world = World::new(1).await;
    let ch = world.clickhouse();
    let mine = dataset(41, 600, &world.tenant, T0);
    let theirs = dataset(42, 200, "other-tenant", T0);
    integration_tests::insert_events(&ch, &mine).await;
    integration_tests::insert_events(&ch, &mine).await; // a replay: shown once
    integration_tests::insert_events(&ch, &theirs).await;
    let shutdown = pipeline::shutdown::Shutdown::new();
    let bound = world.start_tenant_query_api(shutdown.clone()).await;
    let api = Api::new(bound.http);

    // Authentication on every endpoint.
    for path in [
        "/entries",
        "/entries/x",
        "/entries/x/trace",
        "/histogram",
        "/groups",
        "/supported-filters",
        "/values",
        "/stream",
        "/api/openapi.json",
    ] {
        assert_eq!(api.get(None, path, &[]).await.0, 401, "{path}");
        assert_eq!(api.get(Some("nope"), path, &[]).await.0, 401, "{path}");
    }

    // Entries: newest first, deduplicated, this tenant only, total.
    let b = api.ok("q", "/entries", &[("limit", "1000")]).await;
    let data = b["data"].as_array().unwrap();
    assert_eq!(data.len(), 600);
    assert_eq!(b["page"]["total"], 600);
    assert!(b["page"]["next"].is_null());
    let ts: Vec<i64> = data
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let json: Vec<Value> = mine
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let b = api.ok("q", "/entries", &[]).await;
    assert_eq!(b["data"].as_array().unwrap().len(), 25, "default limit");

    // Bad parameters are named.
    for (params, needle) in [
        (vec![("types", "bogus")], "bogus"),
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "1001")], "limit"),
        (vec![("limit", "x")], "limit"),
        (vec![("from", "yesterday")], "from"),
        (vec![("colour", "red")], "colour"),
        (vec![("cursor", "garbage")], "cursor"),
        (vec![("from", "5"), ("to", "1")], "after"),
    ] {
        let (s, b) = api.get(Some("q"), "/entries", &params).await;
        assert_eq!(s, 400, "{params:?}");
        assert!(
            b["error"].as_str().unwrap().contains(needle),
            "{params:?}: {b}"
        );
    }
    let (s, b) = api
        .get(
            Some("q"),
            "/entries",
            &[("filter", "comm = \"bash\" and comn = x")],
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(b["parameter"], "filter");
    assert_eq!(b["position"], 18);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"comm\""),
        "{b}"
    );

    // Every attribute with every operator it takes, against the reference evaluation.
    let mut checked = 0;
    for a in filter::ATTRIBUTES {
        let v = quoted(&sample(&json, a));
        for op in a.value_type.operators() {
            let text = match op {
                Op::Exists | Op::NotExists => format!("{} {}", a.name, op.as_str()),
                Op::In | Op::NotIn => {
                    let other = match (a.name, a.value_type) {
                        ("type", _) => "kubernetes",
                        ("source", _) => "falco",
                        (_, ValueType::Ip) => "10.9.9.9",
                        (_, ValueType::Number | ValueType::Timestamp) => "-12345",
                        _ => "zz",
                    };
                    format!("{} {} ({v}, {})", a.name, op.as_str(), quoted(other))
                }
                _ => format!("{} {} {v}", a.name, op.as_str()),
            };
            let expr = match filter::parse(&text) {
                Ok(Some(e)) => e,
                // e.g. a partial IP is not an IP for "="
                other => panic!("{text}: {other:?}"),
            };
            let want: BTreeSet<String> = json
                .iter()
                .filter(|e| matches(e, &expr))
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect();
            let got: BTreeSet<String> = api
                .ids("q", &[("filter", &text)])
                .await
                .into_iter()
                .collect();
            assert_eq!(got, want, "{text}");
            // The in-memory evaluation (the export stage's filters) agrees with both.
            assert_eq!(in_memory(&mine, &expr), want, "{text} in memory");
            checked += 1;
        }
    }
    assert!(checked > 400, "{checked}");
    // Composite filters: precedence, juxtaposition, not, parentheses.
    let mid = ts[300].to_string();
    for text in [
        "type = kubernetes or (type = connection and serverPort = 5432)",
        "not (kubernetes.namespace.name = shop or comm = ps) filename exists",
        "comm in (bash, cat) and not cmdline contains \"passwd\" or user.groups = \"system:masters\"",
        &format!("timestamp >= {mid} and kubernetes.cluster.name != \"prod-us\""),
        "kubernetes.deployment.name = frontend hostname starts with \"ip-10-0-1\"",
        "NOT NOT comm = bash",
    ] {
        let expr = filter::parse(text).unwrap().unwrap();
        let want: BTreeSet<String> = json
            .iter()
            .filter(|e| matches(e, &expr))
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !want.is_empty() && want.len() < 600,
            "{text}: a filter that selects"
        );
        let got: BTreeSet<String> = api
            .ids("q", &[("filter", text)])
            .await
            .into_iter()
            .collect();
        assert_eq!(got, want, "{text}");
        assert_eq!(in_memory(&mine, &expr), want, "{text} in memory");
    }

    // Injection attempts are values: a clean empty result or a clean error, and the data is
    // still there.
    for text in [
        r#"comm = "x' OR 1=1 --""#,
        r#"comm = "x\\' OR 1=1 --""#,
        r#"cmdline contains "'; DROP TABLE events; --""#,
        r#"comm in ("a'", "b\\", "c\u0000")"#,
        r#"user.groups starts with "') OR has(user_groups, '""#,
    ] {
        let b = api.ok("q", "/entries", &[("filter", text)]).await;
        assert_eq!(b["data"].as_array().unwrap().len(), 0, "{text}");
    }
    for text in [
        "comm = x) OR (1=1",
        "comm = 'x' OR tenant = 'other-tenant'",
        "1=1",
        "comm = x; DROP TABLE events",
    ] {
        let (s, b) = api.get(Some("q"), "/entries", &[("filter", text)]).await;
        assert_eq!(s, 400, "{text}: {b}");
        assert!(b["position"].is_number(), "{text}: {b}");
    }
    let (s, _) = api.get(Some("q"), "/entries/x'%20OR%201=1%20--", &[]).await;
    assert_eq!(s, 404);
    assert_eq!(store::read::count(&ch, &world.tenant).await.unwrap(), 600);

    // Paging while entries arrive: newer ones, older ones in pages already passed, and ones
    // inside the remaining range. Nothing the first page's range held is skipped or repeated.
    let to = (T0 + 10_000_000_000).to_string();
    let range = [("from", "0"), ("to", to.as_str())];
    let first = api
        .ok("q", "/entries", &[("limit", "50"), range[0], range[1]])
        .await;
    assert_eq!(first["page"]["total"], 600);
    let mut seen = ids_of(&first["data"]);
    let mut next = first["page"]["next"].as_str().unwrap().to_string();
    let prev = first["page"]["prev"].as_str().unwrap().to_string();
    let mut round = 0u64;
    loop {
        round += 1;
        // inserted between pages: newer than everything, and into the middle of the range
        let mut late = dataset(1000 + round, 3, &world.tenant, T0 + 5_000_000_000);
        let mut middle = dataset(2000 + round, 2, &world.tenant, T0 + 1_000_000);
        for e in late.iter_mut().chain(middle.iter_mut()) {
            e.id = format!("late-{round}-{}", e.id);
        }
        integration_tests::insert_events(&ch, &late).await;
        integration_tests::insert_events(&ch, &middle).await;
        let b = api
            .ok("q", "/entries", &[("limit", "50"), ("cursor", &next)])
            .await;
        seen.extend(ids_of(&b["data"]));
        match b["page"]["next"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no entry repeated");
    for e in &mine {
        assert!(unique.contains(&e.id), "{} skipped", e.id);
    }
    // `prev` of the first page gives exactly the entries that arrived newer than it.
    let b = api
        .ok("q", "/entries", &[("limit", "1000"), ("cursor", &prev)])
        .await;
    let newer = ids_of(&b["data"]);
    assert_eq!(newer.len() as u64, round * 3, "{newer:?}");
    assert!(newer.iter().all(|id| id.starts_with("late-")));
    // Over a long range pages look in the newest slices first: entries spread over two hours,
    // paged 30 at a time, come out once each, in order, all of them.
    let mut spread = dataset(43, 240, &world.tenant, T0);
    for (i, e) in spread.iter_mut().enumerate() {
        e.id = format!("late-spread-{i:03}"); // "late-": left out of the counts below
        e.timestamp = T0 - (i as i64 + 1) * 30_000_000_000;
        e.received_timestamp = e.timestamp + 1;
    }
    integration_tests::insert_events(&ch, &spread).await;
    let long = [
        ("from", (T0 - 2 * 3_600_000_000_000).to_string()),
        ("to", (T0 + 10_000_000_000).to_string()),
    ];
    let mut walked: Vec<(i64, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut p: Vec<(&str, &str)> = vec![("limit", "30")];
        match &cursor {
            Some(c) => p.push(("cursor", c)),
            None => p.extend(long.iter().map(|(k, v)| (*k, v.as_str()))),
        }
        let b = api.ok("q", "/entries", &p).await;
        for e in b["data"].as_array().unwrap() {
            walked.push((
                e["timestamp"].as_i64().unwrap(),
                e["id"].as_str().unwrap().to_string(),
            ));
        }
        match b["page"]["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let stored: BTreeSet<String> = ch
        .query_text(&format!(
            "SELECT DISTINCT id FROM events WHERE tenant = '{}' AND timestamp >= {} AND timestamp < {}",
            world.tenant, long[0].1, long[1].1
        ))
        .await
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        walked.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    assert_eq!(
        walked
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<BTreeSet<_>>(),
        stored
    );
    assert_eq!(walked.len(), stored.len());
    assert!(stored.len() >= 600 + 240);

    // A cursor belongs to its selection.
    let (s, b) = api
        .get(
            Some("q"),
            "/entries",
            &[("cursor", &next), ("filter", "comm = bash")],
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = api
        .get(Some("q"), "/entries", &[("cursor", &next), ("from", "1")])
        .await;
    assert_eq!(s, 400);
    // One entry, every attribute.
    let e = &mine
        .iter()
        .find(|e| e.kind == ActivityType::Kubernetes)
        .unwrap();
    let b = api.ok("q", &format!("/entries/{}", e.id), &[]).await;
    assert_eq!(serde_json::from_value::<ActivityEvent>(b).unwrap(), **e);
    assert_eq!(
        api.get(Some("q"), &format!("/entries/{}", theirs[0].id), &[])
            .await
            .0,
        404
    );

    // Histogram: per data source, buckets add up to the totals and to the entries. Counts are
    // of stored rows: exact once ClickHouse merged the replay away (forced here).
    let h_to = (T0 + 600_000_000).to_string();
    let before = api
        .ok(
            "q",
            "/histogram",
            &[
                ("from", &T0.to_string()),
                ("to", &h_to),
                ("filter", "id not starts with late-"),
            ],
        )
        .await;
    ch.execute("OPTIMIZE TABLE events FINAL").await.unwrap();
    let not_late = ("filter", "id not starts with late-");
    let b = api
        .ok(
            "q",
            "/histogram",
            &[("from", &T0.to_string()), ("to", &h_to), not_late],
        )
        .await;
    let sum = |h: &Value| -> u64 {
        h["totals"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    let after = sum(&b);
    assert!(
        sum(&before) >= after,
        "before the merge a replayed row may count twice"
    );
    let bucket = b["bucket"].as_i64().unwrap();
    assert_eq!(bucket, 5_000_000, "600 ms over ~120 buckets");
    let buckets = b["buckets"].as_array().unwrap();
    assert_eq!(buckets[0].as_i64().unwrap(), T0);
    for t in ActivityType::ALL {
        let counts = b["counts"][t.as_str()].as_array().unwrap();
        assert_eq!(counts.len(), buckets.len());
        let sum: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
        assert_eq!(b["totals"][t.as_str()].as_u64().unwrap(), sum);
        let want = mine
            .iter()
            .filter(|e| e.kind == t && e.timestamp < T0 + 600_000_000)
            .count() as u64;
        assert_eq!(sum, want, "{t}");
    }
    let b = api
        .ok(
            "q",
            "/histogram",
            &[
                ("from", "0"),
                ("to", &h_to),
                ("types", "command"),
                ("filter", "comm = bash and id not starts with late-"),
                ("bucket", "1000000000000000000"),
            ],
        )
        .await;
    assert_eq!(b["counts"].as_object().unwrap().len(), 1);
    let bash = mine
        .iter()
        .filter(|e| {
            e.kind == ActivityType::Command && e.comm == "bash" && e.timestamp < T0 + 600_000_000
        })
        .count() as u64;
    assert_eq!(b["totals"]["command"].as_u64().unwrap(), bash);
    assert_eq!(
        api.get(
            Some("q"),
            "/histogram",
            &[("from", "0"), ("to", &h_to), ("bucket", "1")]
        )
        .await
        .0,
        400
    );

    // Groups: cluster → namespace → workload → pod, hosts apart; counts add up.
    let all_range = [
        ("from", "0"),
        ("to", to.as_str()),
        ("filter", "id not starts with late-"),
    ];
    let g = api.ok("q", "/groups", &all_range).await;
    let clusters = g["clusters"].as_array().unwrap();
    let names: BTreeSet<&str> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["prod-eu", "prod-us"]));
    let on_hosts = mine.iter().filter(|e| e.cluster.is_empty()).count() as u64;
    let host_sum: u64 = g["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .sum();
    assert_eq!(host_sum, on_hosts);
    let eu = clusters.iter().find(|c| c["name"] == "prod-eu").unwrap();
    let eu_count = mine.iter().filter(|e| e.cluster == "prod-eu").count() as u64;
    assert_eq!(eu["count"].as_u64().unwrap(), eu_count);
    let shop = eu["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "shop")
        .unwrap();
    let shop_pods: u64 = shop["children"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["children"].as_array().unwrap().iter())
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        shop_pods,
        mine.iter()
            .filter(|e| e.cluster == "prod-eu" && e.namespace == "shop")
            .count() as u64
    );

    // Values for autocompletion: most frequent first, prefix, lists unrolled.
    let v = api
        .ok(
            "q",
            "/values",
            &[
                ("attribute", "comm"),
                ("prefix", "c"),
                ("from", "0"),
                ("to", &to),
                ("filter", "id not starts with late-"),
            ],
        )
        .await;
    let got: Vec<(String, u64)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["value"].as_str().unwrap().to_string(),
                x["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, u64)> = ["cat", "curl"]
        .iter()
        .map(|c| {
            (
                c.to_string(),
                mine.iter().filter(|e| e.comm == *c).count() as u64,
            )
        })
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(got, want);
    let v = api
        .ok(
            "q",
            "/values",
            &[("attribute", "user.groups"), ("from", "0"), ("to", &to)],
        )
        .await;
    let groups: BTreeSet<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["value"].as_str().unwrap())
        .collect();
    assert!(
        groups.contains("system:masters") && groups.contains("devs"),
        "{groups:?}"
    );
    let (s, b) = api
        .get(Some("q"), "/values", &[("attribute", "nope")])
        .await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("nope"));

    // Supported filters and the OpenAPI document.
    let f = api.ok("q", "/supported-filters", &[]).await;
    let attrs = f["data"].as_array().unwrap();
    assert_eq!(attrs.len(), filter::ATTRIBUTES.len());
    let pid = attrs.iter().find(|a| a["name"] == "pid").unwrap();
    assert_eq!(pid["type"], "number");
    assert!(
        pid["operators"]
            .as_array()
            .unwrap()
            .contains(&Value::from(">="))
    );
    let ip = attrs.iter().find(|a| a["name"] == "clientIp").unwrap();
    assert_eq!(ip["type"], "ip");
    let doc = api.ok("q", "/api/openapi.json", &[]).await;
    for path in [
        "/api/v1/activity/entries",
        "/api/v1/activity/entries/{id}",
        "/api/v1/activity/entries/{id}/trace",
        "/api/v1/activity/histogram",
        "/api/v1/activity/groups",
        "/api/v1/activity/supported-filters",
        "/api/v1/activity/values",
        "/api/v1/activity/stream",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }

    // gRPC: the same answers.
    let mut grpc = proto::query_client::QueryClient::connect(format!("http://{}", bound.grpc))
        .await
        .unwrap();
    let sel = proto::Selection {
        from: 0,
        to: T0 + 10_000_000_000,
        filter: "comm = bash and id not starts with late-".into(),
        ..Default::default()
    };
    let r = grpc
        .list_entries(authed(
            "q",
            proto::ListEntriesRequest {
                selection: Some(sel.clone()),
                cursor: String::new(),
                limit: 1000,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let http_ids = api
        .ids(
            "q",
            &[
                ("from", "0"),
                ("to", &to),
                ("filter", "comm = bash and id not starts with late-"),
            ],
        )
        .await;
    assert_eq!(
        r.data.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        http_ids
    );
    assert_eq!(r.page.unwrap().total, http_ids.len() as u64);
    let one = grpc
        .get_entry(authed("q", proto::GetEntryRequest { id: e.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (one.user_username.as_str(), one.user_groups.clone()),
        (e.user_name.as_str(), e.user_groups.clone())
    );
    let h = grpc
        .histogram(authed(
            "q",
            proto::HistogramRequest {
                selection: Some(sel.clone()),
                bucket_ns: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.totals.values().sum::<u64>(), http_ids.len() as u64);
    let g = grpc
        .groups(authed("q", sel.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        g.clusters.iter().map(|c| c.count).sum::<u64>()
            + g.hosts.iter().map(|c| c.count).sum::<u64>(),
        http_ids.len() as u64
    );
    let sf = grpc
        .supported_filters(authed("q", proto::SupportedFiltersRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sf.attributes.len(), filter::ATTRIBUTES.len());
    let bad = grpc
        .list_entries(authed(
            "q",
            proto::ListEntriesRequest {
                selection: Some(proto::Selection {
                    filter: "comm = ".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("position 7"), "{}", bad.message());
    // Requests are counted by route (not by id) and status class.
    let count = |route: &str, class: &str| {
        query_api::metrics::REQUESTS
            .with_label_values(&[route, "http", class])
            .get()
    };
    assert!(count("/api/v1/activity/entries", "2xx") > 400);
    assert!(count("/api/v1/activity/entries", "4xx") >= 10);
    assert!(count("/api/v1/activity/entries/{id}", "4xx") >= 1);
    let unauth = grpc
        .get_entry(tonic::Request::new(proto::GetEntryRequest {
            id: e.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unauth.code(), tonic::Code::Unauthenticated);
    shutdown.cancel();
}

/// A gRPC request carrying `token`.
fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Reads server-sent events from `resp` until `deadline`: the ids of `entry` events.
async fn sse_ids(mut resp: reqwest::Response, want: usize, wait: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    while ids.len() < want {
        let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::trim_start))
            };
            if field("event:") == Some("entry") {
                let data = field("data:").unwrap();
                let v: Value = serde_json::from_str(data).unwrap();
                ids.push(v["id"].as_str().unwrap().to_string());
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_teams_never_see_outside_their_scope() {
    let world = World::new(1).await;
    let ch = world.clickhouse();
    // Tenant A: a kube exec session in namespace shop, one in payments, background activity;
    // tenant B: the same shapes.
    let mut mine = dataset(51, 400, &world.tenant, T0);
    let theirs = dataset(52, 200, "tenant-b", T0);
    let session =
        |ns: &str, tag: &str, tenant: &str| -> (Vec<ActivityEvent>, schemas::TraceRecord) {
            let tid = format!("trace-{tag}");
            let mut v = dataset(60 + tag.len() as u64, 12, tenant, T0 + 2_000_000_000);
            for (i, e) in v.iter_mut().enumerate() {
                e.id = format!("{tag}-{i}");
                e.namespace = ns.into();
                e.cluster = "prod-eu".into();
                e.trace_id = tid.clone();
                e.kind = match i {
                    0 => ActivityType::Kubernetes,
                    1..=6 => ActivityType::Command,
                    7..=9 => ActivityType::Connection,
                    _ => ActivityType::Fileaccess,
                };
                if i == 0 {
                    e.user_name = "alice".into();
                    e.user_groups = vec!["system:masters".into()];
                }
            }
            let rec = schemas::TraceRecord {
                tenant: tenant.into(),
                trace_id: tid,
                kind: "exec".into(),
                origin_id: v[0].id.clone(),
                user: "alice".into(),
                groups: vec!["system:masters".into()],
                source_addresses: vec!["203.0.113.9".into()],
                user_agent: "kubectl".into(),
                cluster: "prod-eu".into(),
                namespace: ns.into(),
                start: v[0].timestamp,
                end: v[11].timestamp,
                commands: 6,
                connections: 3,
                fileaccesses: 2,
                confidence: 1.0,
                revision: 1,
                ..Default::default()
            };
            (v, rec)
        };
    let (shop_session, shop_rec) = session("shop", "shop", &world.tenant);
    let (pay_session, pay_rec) = session("payments", "pay", &world.tenant);
    let (b_session, b_rec) = session("shop", "bshop", "tenant-b");
    mine.extend(shop_session.clone());
    mine.extend(pay_session.clone());
    integration_tests::insert_events(&ch, &mine).await;
    integration_tests::insert_events(&ch, &theirs).await;
    integration_tests::insert_events(&ch, &b_session).await;
    integration_tests::insert_traces(&ch, &[&shop_rec, &pay_rec, &b_rec]).await;

    let tenant = &world.tenant;
    let tokens = format!(
        r#"
[[token]]
token = "admin"
tenant = "{tenant}"
[[token]]
token = "shop"
tenant = "{tenant}"
team = "shop"
scope = 'kubernetes.namespace.name = "shop"'
permissions = ["commands.read", "fileaccesses.read", "kubernetes.read"]
[[token]]
token = "shop-commands"
tenant = "{tenant}"
team = "shop-commands"
scope = 'kubernetes.namespace.name = "shop"'
permissions = ["commands.read"]
[[token]]
token = "b"
tenant = "tenant-b"
"#
    );
    let shutdown = pipeline::shutdown::Shutdown::new();
    let bound = world.start_query_api(&tokens, shutdown.clone()).await;
    let api = Api::new(bound.http);
    let to = (T0 + 10_000_000_000).to_string();
    let range = [("from", "0"), ("to", to.as_str())];

    let visible = |who: &str, e: &ActivityEvent| match who {
        "admin" => e.tenant == *tenant,
        "shop" => {
            e.tenant == *tenant && e.namespace == "shop" && e.kind != ActivityType::Connection
        }
        "shop-commands" => {
            e.tenant == *tenant && e.namespace == "shop" && e.kind == ActivityType::Command
        }
        "b" => e.tenant == "tenant-b",
        _ => unreachable!(),
    };
    let everything: Vec<&ActivityEvent> = mine.iter().chain(&theirs).chain(&b_session).collect();
    for who in ["admin", "shop", "shop-commands", "b"] {
        let want: BTreeSet<String> = everything
            .iter()
            .filter(|e| visible(who, e))
            .map(|e| e.id.clone())
            .collect();
        assert!(!want.is_empty());
        // entries
        let got: BTreeSet<String> = api.ids(who, &range).await.into_iter().collect();
        assert_eq!(got, want, "{who}: entries");
        // a filter with `or` cannot widen the scope
        let got: BTreeSet<String> = api
            .ids(
                who,
                &[
                    range[0],
                    range[1],
                    (
                        "filter",
                        "kubernetes.namespace.name = payments or comm exists or type exists",
                    ),
                ],
            )
            .await
            .into_iter()
            .collect();
        assert!(got.is_subset(&want), "{who}: or-filter");
        // entry by id
        for e in [&pay_session[1], &theirs[0], &shop_session[7]] {
            let (s, _) = api.get(Some(who), &format!("/entries/{}", e.id), &[]).await;
            assert_eq!(s == 200, visible(who, e), "{who}: entry {}", e.id);
        }
        // histogram totals
        let h = api.ok(who, "/histogram", &range).await;
        let total: u64 = h["totals"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, want.len() as u64, "{who}: histogram");
        // groups
        let g = api.ok(who, "/groups", &range).await;
        let gsum: u64 = g["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .chain(g["hosts"].as_array().unwrap())
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        assert_eq!(gsum, want.len() as u64, "{who}: groups");
        // values
        let v = api
            .ok(
                who,
                "/values",
                &[
                    range[0],
                    range[1],
                    ("attribute", "kubernetes.namespace.name"),
                ],
            )
            .await;
        let namespaces: BTreeSet<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["value"].as_str().unwrap().to_string())
            .collect();
        let want_ns: BTreeSet<String> = everything
            .iter()
            .filter(|e| visible(who, e) && !e.namespace.is_empty())
            .map(|e| e.namespace.clone())
            .collect();
        assert_eq!(namespaces, want_ns, "{who}: values");
    }
    // Data sources not granted: 403 naming the permission.
    let (s, b) = api
        .get(Some("shop"), "/entries", &[("types", "connection")])
        .await;
    assert_eq!(s, 403);
    assert!(
        b["error"].as_str().unwrap().contains("connections.read"),
        "{b}"
    );
    for path in ["/histogram", "/groups", "/values", "/stream"] {
        let mut params = vec![("types", "kubernetes")];
        if path == "/values" {
            params.push(("attribute", "comm"));
        }
        let (s, _) = api.get(Some("shop-commands"), path, &params).await;
        assert_eq!(s, 403, "{path}");
    }
    // Traces: the admin sees the whole session and its origin; the shop team sees its own
    // session without the connections; the commands-only team sees the commands and not who
    // started it; nobody reaches the payments session or the other tenant's through it.
    let t = api
        .ok(
            "admin",
            &format!("/entries/{}/trace", shop_session[3].id),
            &[],
        )
        .await;
    assert_eq!(t["entries"].as_array().unwrap().len(), 12);
    assert_eq!(t["trace"]["user"], "alice");
    assert_eq!(t["originRedacted"], false);
    let t = api
        .ok(
            "shop",
            &format!("/entries/{}/trace", shop_session[3].id),
            &[],
        )
        .await;
    let kinds: BTreeSet<&str> = t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["command", "fileaccess", "kubernetes"])
    );
    assert_eq!(t["entries"].as_array().unwrap().len(), 9);
    let t = api
        .ok(
            "shop-commands",
            &format!("/entries/{}/trace", shop_session[3].id),
            &[],
        )
        .await;
    assert_eq!(t["entries"].as_array().unwrap().len(), 6);
    assert_eq!(t["originRedacted"], true);
    assert_eq!(t["trace"]["user"], "");
    assert!(
        t["trace"]
            .get("groups")
            .is_none_or(|g| g.as_array().is_none_or(|a| a.is_empty()))
    );
    for who in ["shop", "shop-commands", "b"] {
        let (s, _) = api
            .get(
                Some(who),
                &format!("/entries/{}/trace", pay_session[3].id),
                &[],
            )
            .await;
        assert_eq!(s, 404, "{who}: payments trace");
    }
    let (s, _) = api
        .get(
            Some("admin"),
            &format!("/entries/{}/trace", b_session[3].id),
            &[],
        )
        .await;
    assert_eq!(s, 404, "the other tenant's trace");
    let t = api
        .ok("b", &format!("/entries/{}/trace", b_session[3].id), &[])
        .await;
    assert_eq!(t["entries"].as_array().unwrap().len(), 12);
    assert!(
        t["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant"] == "tenant-b")
    );

    // The live stream: entries arriving after it opened, in scope only.
    let now = query_api::query::now_ns();
    let mut fresh = Vec::new();
    for (tenant, ns, n) in [
        (world.tenant.as_str(), "shop", 0),
        (world.tenant.as_str(), "payments", 1),
        ("tenant-b", "shop", 2),
    ] {
        let mut v = dataset(70 + n, 20, tenant, now);
        for (i, e) in v.iter_mut().enumerate() {
            e.id = format!("live-{n}-{i}");
            e.namespace = ns.into();
            e.cluster = "prod-eu".into();
            e.received_timestamp = now + 1_000_000_000;
        }
        fresh.extend(v);
    }
    let open = |who: &'static str| {
        api.http
            .get(format!("{}/api/v1/activity/stream", api.base))
            .bearer_auth(who)
            .timeout(Duration::from_secs(60))
            .send()
    };
    let (shop_stream, admin_stream) = (open("shop").await.unwrap(), open("admin").await.unwrap());
    assert_eq!(shop_stream.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    integration_tests::insert_events(&ch, &fresh).await;
    let want_shop: BTreeSet<String> = fresh
        .iter()
        .filter(|e| visible("shop", e))
        .map(|e| e.id.clone())
        .collect();
    let want_admin: BTreeSet<String> = fresh
        .iter()
        .filter(|e| visible("admin", e))
        .map(|e| e.id.clone())
        .collect();
    let (got_shop, got_admin) = tokio::join!(
        sse_ids(shop_stream, want_shop.len() + 1, Duration::from_secs(8)),
        sse_ids(admin_stream, want_admin.len() + 1, Duration::from_secs(8)),
    );
    assert_eq!(got_shop.iter().cloned().collect::<BTreeSet<_>>(), want_shop);
    assert_eq!(got_shop.len(), want_shop.len(), "each entry once");
    assert_eq!(
        got_admin.iter().cloned().collect::<BTreeSet<_>>(),
        want_admin
    );

    // The gRPC tail honours the scope too.
    let mut grpc = proto::query_client::QueryClient::connect(format!("http://{}", bound.grpc))
        .await
        .unwrap();
    let mut req = tonic::Request::new(proto::Selection::default());
    req.metadata_mut()
        .insert("authorization", "Bearer shop-commands".parse().unwrap());
    let mut tail = grpc.tail(req).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = query_api::query::now_ns();
    let mut more = dataset(80, 30, &world.tenant, now);
    for (i, e) in more.iter_mut().enumerate() {
        e.id = format!("tail-{i}");
        e.namespace = if i % 2 == 0 { "shop" } else { "payments" }.into();
        e.received_timestamp = now + 1_000_000_000;
    }
    integration_tests::insert_events(&ch, &more).await;
    let want: BTreeSet<String> = more
        .iter()
        .filter(|e| visible("shop-commands", e))
        .map(|e| e.id.clone())
        .collect();
    let mut got = BTreeSet::new();
    while got.len() < want.len() {
        match tokio::time::timeout(Duration::from_secs(8), tail.message()).await {
            Ok(Ok(Some(e))) => {
                assert!(got.insert(e.id.clone()), "{} twice", e.id);
            }
            other => panic!("tail ended early: {other:?}, got {got:?}"),
        }
    }
    assert_eq!(got, want);
    // gRPC trace and values honour it as well.
    let t = grpc
        .trace(authed(
            "shop-commands",
            proto::GetEntryRequest {
                id: shop_session[3].id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.entries.len(), 6);
    assert_eq!(t.trace.unwrap().user, "", "origin withheld");
    let e = grpc
        .trace(authed(
            "shop",
            proto::GetEntryRequest {
                id: pay_session[3].id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let v = grpc
        .values(authed(
            "shop",
            proto::ValuesRequest {
                selection: Some(proto::Selection {
                    from: 1,
                    to: T0 + 10_000_000_000,
                    ..Default::default()
                }),
                attribute: "kubernetes.namespace.name".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        v.values
            .iter()
            .map(|v| v.value.as_str())
            .collect::<Vec<_>>(),
        ["shop"]
    );
    let mut denied = tonic::Request::new(proto::Selection {
        types: vec![proto::ActivityType::Connection as i32],
        ..Default::default()
    });
    denied
        .metadata_mut()
        .insert("authorization", "Bearer shop".parse().unwrap());
    assert_eq!(
        grpc.tail(denied).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    shutdown.cancel();
}

/// A page's total counts distinct entries up to `TOTAL_LIMIT` and says when there are more; a
/// replay is not counted twice, and later pages carry the first page's total on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_totals_count_up_to_the_limit_and_say_when_there_are_more() {
    let world = World::new(1).await;
    let ch = world.clickhouse();
    let limit = query_api::query::TOTAL_LIMIT as usize;
    let mine = dataset(43, limit + 1, &world.tenant, T0);
    integration_tests::insert_events(&ch, &mine).await;
    // A replay of all but the newest: exactly the limit distinct, were it counted once each.
    integration_tests::insert_events(&ch, &mine[..limit]).await;
    let shutdown = pipeline::shutdown::Shutdown::new();
    let bound = world.start_tenant_query_api(shutdown.clone()).await;
    let api = Api::new(bound.http);
    let newest = mine.iter().map(|e| e.timestamp).max().unwrap();

    // The whole range: one more than the limit.
    let b = api.ok("q", "/entries", &[("limit", "10")]).await;
    assert_eq!(b["page"]["total"], limit as u64);
    assert_eq!(b["page"]["totalExact"], false, "{}", b["page"]);
    let next = b["page"]["next"].as_str().unwrap().to_string();
    let b2 = api
        .ok("q", "/entries", &[("limit", "10"), ("cursor", &next)])
        .await;
    assert_eq!(
        (&b2["page"]["total"], &b2["page"]["totalExact"]),
        (&Value::from(limit as u64), &Value::Bool(false))
    );

    // Without the newest entry: exactly the limit, each replayed once, counted once.
    let to = newest.to_string();
    let b = api
        .ok(
            "q",
            "/entries",
            &[("from", "0"), ("to", &to), ("limit", "10")],
        )
        .await;
    let want = mine.iter().filter(|e| e.timestamp < newest).count() as u64;
    assert_eq!(want, limit as u64, "one newest entry");
    assert_eq!(
        (&b["page"]["total"], &b["page"]["totalExact"]),
        (&Value::from(want), &Value::Bool(true))
    );

    // gRPC says the same.
    let mut grpc = proto::query_client::QueryClient::connect(format!("http://{}", bound.grpc))
        .await
        .unwrap();
    let r = grpc
        .list_entries(authed(
            "q",
            proto::ListEntriesRequest {
                selection: Some(proto::Selection {
                    from: 0,
                    to: newest + 1,
                    ..Default::default()
                }),
                cursor: String::new(),
                limit: 10,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let page = r.page.unwrap();
    assert_eq!((page.total, page.total_exact), (limit as u64, false));
    shutdown.cancel();
}

//! The example queries of `docs/analytics/README.md` run on the real ClickHouse against the
//! real schema and answer what they say: commands per namespace from the hourly counts, exec
//! users per cluster, sessions that touched `/etc/shadow`, outbound connections from exec
//! sessions.

use integration_tests::{World, generator};
use schemas::ActivityType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_queries_answer_what_they_say() {
    let world = World::new(1).await;
    let ch = world.clickhouse();
    let now = query_api::query::now_ns();
    let mut events = generator::events(97, 400, now - 3_600_000_000_000, true);
    for e in &mut events {
        e.tenant.clone_from(&world.tenant);
        e.cluster = "prod-eu".into();
    }
    // One exec session that reads /etc/shadow and connects out.
    let (tid, shadow) = ("trace-doc".to_string(), "/etc/shadow");
    let exec = events
        .iter()
        .position(|e| e.kind == ActivityType::Kubernetes && e.sub_resource == "exec")
        .unwrap();
    let file = events
        .iter()
        .position(|e| e.kind == ActivityType::Fileaccess)
        .unwrap();
    let conn = events
        .iter()
        .position(|e| e.kind == ActivityType::Connection && e.direction == "out")
        .unwrap();
    events[file].filename = shadow.into();
    events[file].directory = "/etc".into();
    events[conn].server_ip = "198.51.100.77".into();
    events[conn].server_port = 4444;
    for i in [exec, file, conn] {
        events[i].trace_id.clone_from(&tid);
    }
    // Other sessions' reads of /etc/shadow are not this query's business: none besides ours.
    for (i, e) in events.iter_mut().enumerate() {
        if i != file && e.filename == shadow {
            e.filename = "/etc/passwd".into();
        }
    }
    integration_tests::insert_events(&ch, &events).await;
    let rec = schemas::TraceRecord {
        tenant: world.tenant.clone(),
        trace_id: tid.clone(),
        kind: "exec".into(),
        origin_id: events[exec].id.clone(),
        user: events[exec].user_name.clone(),
        start: events[exec].timestamp,
        end: events[conn].timestamp,
        revision: 1,
        ..Default::default()
    };
    integration_tests::insert_traces(&ch, &[&rec]).await;

    let doc = include_str!("../../docs/analytics/README.md");
    let queries: Vec<String> = doc
        .split("```sql\n")
        .skip(1)
        .map(|b| b[..b.find("```").unwrap()].replace("'acme'", &format!("'{}'", world.tenant)))
        .collect();
    assert_eq!(queries.len(), 4);
    let run = |sql: String| {
        let ch = ch.clone();
        async move { ch.query_text(&format!("{sql} FORMAT TSV")).await.unwrap() }
    };

    // Commands per namespace per day from the hourly counts, once the writer's pass (here
    // called directly, for the hours these direct inserts touched) computed them.
    let mut body = Vec::new();
    let mut ends = Vec::new();
    for e in &events {
        store::row::write_row(&mut body, e);
        ends.push(body.len());
    }
    store::rollup::mark(&ch, &store::rollup::touched_hours(&body, &ends))
        .await
        .unwrap();
    assert!(store::rollup::roll_up(&ch, 0, 0).await.unwrap() > 0);
    let out = run(queries[0].clone()).await;
    let mut per_ns = std::collections::BTreeMap::<String, usize>::new();
    for l in out.lines() {
        let cols: Vec<&str> = l.split('\t').collect();
        *per_ns.entry(cols[1].to_string()).or_default() += cols[2].parse::<usize>().unwrap();
    }
    let mut want = std::collections::BTreeMap::<String, usize>::new();
    for e in events.iter().filter(|e| e.kind == ActivityType::Command) {
        *want.entry(e.namespace.clone()).or_default() += 1;
    }
    assert_eq!(per_ns, want, "{out}");

    // Exec users per cluster: the users of the kube execs and attaches.
    let out = run(queries[1].clone()).await;
    let execs = events
        .iter()
        .filter(|e| e.kind == ActivityType::Kubernetes)
        .count();
    let counted: usize = out
        .lines()
        .map(|l| l.split('\t').nth(2).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted, execs, "{out}");
    assert!(out.lines().all(|l| l.starts_with("prod-eu\t")));
    // Sessions that touched /etc/shadow: ours, with its user.
    let out = run(queries[2].clone()).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!("{tid}\texec\t{}", rec.user)),
        "{out}"
    );
    // Outbound connections from exec sessions: ours.
    let out = run(queries[3].clone()).await;
    assert_eq!(out.trim(), "198.51.100.77\t4444\t1\t1", "{out}");
}

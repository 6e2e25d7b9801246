//! The `activity-audit` command-line client against the real query API and ClickHouse:
//! query with a filter (table and JSON lines), a filter error pointed at, a trace, and tail.

use integration_tests::{World, bin_dir, generator};
use schemas::ActivityType;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const T0: i64 = 1_764_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_trace_and_tail_from_the_terminal() {
    let world = World::new(1).await;
    let ch = world.clickhouse();
    let mut events = generator::events(91, 300, T0, true);
    for e in &mut events {
        e.tenant.clone_from(&world.tenant);
        e.cluster = "prod-eu".into();
    }
    // a session: a kube exec and two commands in it
    let tid = "trace-cli".to_string();
    let exec = events
        .iter()
        .position(|e| e.kind == ActivityType::Kubernetes)
        .unwrap();
    let cmds: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == ActivityType::Command)
        .map(|(i, _)| i)
        .take(2)
        .collect();
    for i in std::iter::once(exec).chain(cmds.iter().copied()) {
        events[i].trace_id.clone_from(&tid);
    }
    integration_tests::insert_events(&ch, &events).await;
    let rec = schemas::TraceRecord {
        tenant: world.tenant.clone(),
        trace_id: tid.clone(),
        kind: "exec".into(),
        origin_id: events[exec].id.clone(),
        user: "alice@example.com".into(),
        start: T0,
        end: T0 + 400_000_000,
        commands: 2,
        confidence: 1.0,
        revision: 1,
        ..Default::default()
    };
    integration_tests::insert_traces(&ch, &[&rec]).await;
    let shutdown = pipeline::shutdown::Shutdown::new();
    let bound = world
        .start_query_api(
            &format!(
                "[[token]]\ntoken = \"cli\"\ntenant = \"{}\"\n",
                world.tenant
            ),
            shutdown.clone(),
        )
        .await;
    let cli = |args: &[&str]| {
        let mut c = Command::new(bin_dir().join("activity-audit"));
        c.args(args)
            .env("AA_URL", format!("http://{}", bound.http))
            .env("AA_TOKEN", "cli");
        c
    };
    let run = |args: &[&str]| {
        let out = cli(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let to = (T0 + 10_000_000_000).to_string();

    // JSON lines: every bash command, newest first, across pages.
    let (code, out, err) = run(&[
        "query",
        "comm = bash",
        "--from",
        "0",
        "--to",
        &to,
        "-n",
        "100000",
        "-o",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = events.iter().filter(|e| e.comm == "bash").count();
    assert!(want > 10);
    assert_eq!(lines.len(), want);
    assert!(lines.iter().all(|e| e["comm"] == "bash"));
    // A table, limited.
    let (code, out, err) = run(&[
        "query",
        "type = kubernetes",
        "--from",
        "0",
        "--to",
        &to,
        "-n",
        "3",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("prod-eu/") && out.contains(" exec "), "{out}");
    // A filter error is pointed at; exit code 2.
    let (code, _, err) = run(&["query", "comm = bash and comn = x", "--last", "1h"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("did you mean \"comm\""), "{err}");
    assert!(err.contains(&format!("\n  {}^", " ".repeat(16))), "{err}");
    // Without a token: a clear message, exit code 1.
    let out = cli(&["query"]).env_remove("AA_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token"));
    // The trace: who, then the commands in time order.
    let (code, out, err) = run(&["trace", &events[cmds[1]].id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("alice@example.com"), "{out}");
    assert!(out.contains(&events[cmds[0]].cmdline), "{out}");
    let (code, out, _) = run(&["trace", &events[cmds[1]].id, "-o", "json"]);
    assert_eq!(code, Some(0));
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["entries"].as_array().unwrap().len(), 3);

    // Tail: entries that arrive while it runs.
    let mut child = cli(&["tail", "type = command", "-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = query_api::query::now_ns();
    let mut fresh = generator::events(92, 40, now, true);
    for (i, e) in fresh.iter_mut().enumerate() {
        e.tenant.clone_from(&world.tenant);
        e.id = format!("fresh-{i}");
        e.received_timestamp = now + 1_000_000_000;
    }
    integration_tests::insert_events(&ch, &fresh).await;
    let want = fresh
        .iter()
        .filter(|e| e.kind == ActivityType::Command)
        .count();
    let stdout = child.stdout.take().unwrap();
    let got = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(want)
            .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let got = tokio::time::timeout(Duration::from_secs(20), got)
        .await
        .expect("tail printed the new commands")
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.len(), want);
    assert!(
        got.iter()
            .all(|e| e["type"] == "command" && e["id"].as_str().unwrap().starts_with("fresh-"))
    );
    shutdown.cancel();
}

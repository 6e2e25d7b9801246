//! Every fixture under `../shared/fixtures/` (real producers' output) and our own fixtures for
//! what is missing there go through the matching ingest endpoint and the whole pipeline on the
//! real stack; the answers and the stored rows are checked. Also: authentication, identity
//! from the token, body limits and partial batches.

use integration_tests::World;
use schemas::{ActivityEvent, ActivityType};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `../shared/fixtures` beside the repository (`AA_SHARED_FIXTURES` overrides).
fn shared() -> PathBuf {
    std::env::var("AA_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

fn own() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
    let r = http
        .post(url)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn n(v: &Value, k: &str) -> u64 {
    match &v[k] {
        Value::Array(a) => a.len() as u64,
        other => other.as_u64().unwrap_or(0),
    }
}

async fn stored(world: &World, filter: &str) -> Vec<ActivityEvent> {
    world
        .clickhouse()
        .query_rows(&format!(
            "SELECT {} FROM events FINAL WHERE tenant = {} AND {filter} ORDER BY timestamp",
            store::columns::select_as_attributes(),
            store::sql::quote(&world.tenant)
        ))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_through_its_endpoint_and_the_pipeline() {
    let world = World::new(2).await;
    let p = world.spawn_all();
    let http = reqwest::Client::new();
    let base = p.ingest.url();
    let mut expected_rows = 0u64;

    // Kubernetes audit: exec/attach are activity, the rest dropped, the malformed one rejected.
    let mut k8s_files = files(&shared().join("k8s-audit"));
    k8s_files.extend(files(&own().join("k8s-audit")));
    for f in &k8s_files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let (status, body) = post(
            &http,
            &format!("{base}/v1/k8s-audit"),
            &world.token,
            std::fs::read(f).unwrap(),
        )
        .await;
        match name.as_str() {
            "fal_01_003.json" => {
                assert_eq!(status, 400, "{name}: {body}");
                let err = body["rejected"][0]["error"].as_str().unwrap_or_default();
                assert!(
                    err.contains("kind"),
                    "{name}: the message names the field: {body}"
                );
            }
            "exec_pod.json"
            | "attach_pod.json"
            | "exec_websocket_get.json"
            | "aks_wrapped_exec.json"
            | "gke_exec.json" => {
                assert_eq!(
                    (status, n(&body, "accepted"), n(&body, "rejected")),
                    (200, 1, 0),
                    "{name}: {body}"
                );
                expected_rows += 1;
            }
            _ => {
                assert_eq!(status, 200, "{name}: {body}");
                assert_eq!(n(&body, "accepted"), 0, "{name} is not activity: {body}");
                assert!(
                    n(&body, "dropped") >= 1,
                    "{name} is counted as dropped: {body}"
                );
                assert_eq!(n(&body, "rejected"), 0, "{name}: {body}");
            }
        }
    }

    // Tetragon: every event is valid; some are activity. Two documentation files hold the
    // very same event: it is one event, stored once.
    let mut tetragon_files = files(&shared().join("tetragon"));
    tetragon_files.extend(files(&own().join("tetragon")));
    let mut distinct = std::collections::HashSet::new();
    for f in &tetragon_files {
        let bytes = std::fs::read(f).unwrap();
        let (status, body) = post(
            &http,
            &format!("{base}/v1/tetragon"),
            &world.token,
            bytes.clone(),
        )
        .await;
        assert_eq!(status, 200, "{}: {body}", f.display());
        assert_eq!(
            n(&body, "accepted") + n(&body, "dropped"),
            1,
            "{}: {body}",
            f.display()
        );
        if n(&body, "accepted") == 1 {
            distinct.insert(serde_json::from_slice::<Value>(&bytes).unwrap().to_string());
        }
    }
    expected_rows += distinct.len() as u64;

    // Falco: our alerts with the shipped fields.
    for f in files(&own().join("falco")) {
        let (status, body) = post(
            &http,
            &format!("{base}/v1/falco"),
            &world.token,
            std::fs::read(&f).unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{}: {body}", f.display());
        let activity = !f.ends_with("daemon_not_activity.json");
        assert_eq!(
            n(&body, "accepted"),
            activity as u64,
            "{}: {body}",
            f.display()
        );
        expected_rows += n(&body, "accepted");
    }

    let got = world
        .wait_count(expected_rows, Duration::from_secs(120))
        .await;
    assert_eq!(got, expected_rows);

    // The exec of exec_pod.json, with everything the audit event says.
    let execs = stored(&world, "type = 'kubernetes' AND sub_resource = 'exec' AND verb = 'create' AND namespace = 'default'").await;
    let e = execs.first().expect("exec_pod.json stored");
    assert_eq!(e.user_name, "minikube-user");
    assert_eq!(e.user_groups, ["system:masters", "system:authenticated"]);
    assert_eq!(e.source_addresses, ["192.168.99.1"]);
    assert_eq!(e.pod, "nginx-deployment-7998647bdf-phvq7");
    assert_eq!(
        (e.container.as_str(), e.command.as_str(), e.tty),
        ("nginx1", "bash", Some(1))
    );
    assert_eq!(e.cluster, world.cluster, "cluster from the token");
    assert!(e.stages_started > e.timestamp);
    let attach = stored(&world, "type = 'kubernetes' AND sub_resource = 'attach'").await;
    assert_eq!(
        (attach[0].container.as_str(), attach[0].tty),
        ("nginx1", Some(0))
    );
    // WebSocket `get` exec with \u0026-escaped parameters.
    let ws = stored(&world, "type = 'kubernetes' AND verb = 'get'").await;
    assert_eq!(ws[0].command, "sh -c cat /etc/shadow");
    assert_eq!(ws[0].user_name, "johndoe@example.com");
    // Tetragon: an exec with lineage, a file access, a connection (legacy and kprobe).
    let curl = stored(
        &world,
        "type = 'command' AND source = 'tetragon' AND comm = 'curl'",
    )
    .await;
    assert!(
        curl.iter()
            .any(|c| !c.exec_id.is_empty() && !c.parent_exec_id.is_empty() && c.pod == "xwing")
    );
    // The pod labels Tetragon reports, stored sorted as key=value.
    assert!(
        curl.iter().any(|c| c.pod_labels
            == [
                "app.kubernetes.io/name=xwing",
                "class=xwing",
                "org=alliance"
            ]),
        "{:?}",
        curl.iter().map(|c| &c.pod_labels).collect::<Vec<_>>()
    );
    let files_ = stored(&world, "type = 'fileaccess' AND filename = '/etc/passwd'").await;
    assert!(!files_.is_empty());
    let conns = stored(
        &world,
        "type = 'connection' AND source = 'tetragon' AND server_port = 443",
    )
    .await;
    assert!(
        conns.iter().any(|c| c.server_ip == "64.225.45.153"),
        "legacy process_connect"
    );
    assert!(
        conns
            .iter()
            .any(|c| c.server_ip == "93.184.216.34" && c.direction == "out"),
        "tcp_connect kprobe"
    );
    // Falco: the shell exec'd in by runc, its connection and its file access.
    let falco = stored(&world, "source = 'falco'").await;
    assert_eq!(falco.len(), 3);
    let shell = falco
        .iter()
        .find(|e| e.kind == ActivityType::Command)
        .unwrap();
    assert_eq!(
        (shell.comm.as_str(), shell.in_init_tree, shell.uid),
        ("bash", Some(false), Some(0))
    );
    assert!(falco.iter().any(|e| e.kind == ActivityType::Fileaccess
        && e.filename == "/etc/shadow"
        && e.permissions == "r"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_identity_limits_and_partial_batches() {
    let world = World::new(1).await;
    let ingest = world.spawn(integration_tests::Service::Ingest);
    let writer_chain = [
        world.spawn(integration_tests::Service::Enricher),
        world.spawn(integration_tests::Service::Correlator),
        world.spawn(integration_tests::Service::Writer),
    ];
    let http = reqwest::Client::new();
    let url = format!("{}/v1/events", ingest.url());
    let ok = r#"{"type":"command","timestamp":1764000000000000000,"comm":"id","kubernetes.cluster.name":"prod-us","tenant":"someone-else"}"#;

    // No token, a bad token: 401 and nothing stored.
    let r = http.post(&url).body(ok).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let (status, body) = post(&http, &url, "wrong-token", ok.into()).await;
    assert_eq!(status, 401, "{body}");

    // A token for prod-eu writes as prod-eu and as its tenant, whatever the payload says.
    let (status, _) = post(&http, &url, &world.token, ok.into()).await;
    assert_eq!(status, 200);

    // A batch with one bad item stores the others and names the bad one.
    let batch = format!(
        "{ok}\n{{\"type\":\"command\",\"timestamp\":1764000000000000001,\"pid\":\"not a number\"}}\n{}\n",
        ok.replace("\"id\"", "\"whoami\"")
    );
    let (status, body) = post(&http, &url, &world.token, batch.into_bytes()).await;
    assert_eq!((status, n(&body, "accepted")), (200, 2), "{body}");
    assert_eq!(body["rejected"][0]["index"], 1);
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("pid"),
        "{body}"
    );

    // Oversize body: 413 with a message.
    let big = vec![b' '; 33 << 20];
    let (status, body) = post(&http, &url, &world.token, big).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeds")
    );

    // Gzip is accepted.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, ok.replace("\"id\"", "\"uname\"").as_bytes()).unwrap();
    let r = http
        .post(&url)
        .bearer_auth(&world.token)
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // "id" twice (a retry) + whoami + uname = 3 distinct events, all prod-eu.
    assert_eq!(world.wait_count(3, Duration::from_secs(60)).await, 3);
    let rows = stored(&world, "1").await;
    assert!(
        rows.iter()
            .all(|e| e.cluster == "prod-eu" && e.tenant == world.tenant),
        "{rows:?}"
    );
    drop(writer_chain);
}

/// The gRPC `Ingest` service: same authentication, identity from the token, partial batches,
/// size limit, compression and deterministic ids as `POST /v1/events`, and every field
/// round-trips to the stored row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_ingest() {
    use query_api::proto::{self, ingest_client::IngestClient};
    use tonic::Code;
    use tonic::codec::CompressionEncoding;

    let world = World::new(1).await;
    let ingest = world.spawn_with(
        integration_tests::Service::Ingest,
        &[("AA_INGEST__MAX_BODY_BYTES", "1048576")],
    );
    let chain = [
        world.spawn(integration_tests::Service::Enricher),
        world.spawn(integration_tests::Service::Correlator),
        world.spawn(integration_tests::Service::Writer),
    ];
    let mut client = IngestClient::connect(ingest.grpc_url())
        .await
        .unwrap()
        .max_encoding_message_size(8 << 20);
    let request = |token: Option<&str>, events: Vec<proto::ActivityEvent>| {
        let mut r = tonic::Request::new(proto::SendRequest { events });
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    };
    let event = |comm: &str, ts: i64| proto::ActivityEvent {
        r#type: proto::ActivityType::Command as i32,
        timestamp: ts,
        comm: comm.into(),
        cmdline: format!("{comm} -a"),
        pid: 42,
        uid: Some(0),
        tty: Some(34816),
        in_init_tree: Some(false),
        user_groups: vec!["ignored-on-commands".into()],
        // Not the caller's to choose: the token decides.
        cluster: "prod-us".into(),
        tenant: "someone-else".into(),
        ..Default::default()
    };

    // No token, a bad token: UNAUTHENTICATED.
    let e = client
        .send(request(None, vec![event("id", 1)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = client
        .send(request(Some("wrong-token"), vec![event("id", 1)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Two good items and one bad: the good ones are stored, the bad one is named.
    let ts = 1_764_000_000_000_000_000;
    let bad = proto::ActivityEvent {
        r#type: 42,
        ..event("bad", ts)
    };
    let batch = vec![event("id", ts), bad, event("whoami", ts + 1)];
    let r = client
        .send(request(Some(&world.token), batch.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.accepted, r.dropped, r.rejected.len()),
        (2, 0, 1),
        "{r:?}"
    );
    assert_eq!(r.rejected[0].index, 1);
    assert!(r.rejected[0].error.contains("`type`"), "{r:?}");

    // A retry of the same request (gzip-compressed this time) creates no duplicates.
    let r = client
        .clone()
        .send_compressed(CompressionEncoding::Gzip)
        .send(request(Some(&world.token), batch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.accepted, 2);

    // Every item rejected: INVALID_ARGUMENT naming each one.
    let e = client
        .send(request(
            Some(&world.token),
            vec![proto::ActivityEvent {
                r#type: 9,
                ..event("x", ts)
            }],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("item 0: field `type`"), "{e:?}");

    // Over the configured message limit: OUT_OF_RANGE (tonic's decoder limit), nothing stored.
    let huge: Vec<_> = (0..40)
        .map(|i| proto::ActivityEvent {
            cmdline: "x".repeat(50_000),
            ..event("huge", ts + 100 + i)
        })
        .collect();
    let e = client
        .send(request(Some(&world.token), huge))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("too large"), "{e:?}");

    // Stored exactly once each, as the token's tenant and cluster, fields intact.
    assert_eq!(world.wait_count(2, Duration::from_secs(60)).await, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.count().await, 2, "a retry must not add events");
    let rows = stored(&world, "1").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, comm) in rows.iter().zip(["id", "whoami"]) {
        assert_eq!(row.comm, comm);
        assert_eq!(row.cmdline, format!("{comm} -a"));
        assert_eq!(
            (row.cluster.as_str(), row.tenant.as_str()),
            ("prod-eu", world.tenant.as_str())
        );
        assert_eq!((row.pid, row.uid, row.tty), (42, Some(0), Some(34816)));
        assert_eq!(row.in_init_tree, Some(false));
        assert_eq!(row.source, schemas::Source::Native);
    }
    drop(chain);
}

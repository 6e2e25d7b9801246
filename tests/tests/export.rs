//! The export stage: OCSF and ECS records validated against the published schemas (OCSF JSON
//! Schema from PyPI's `ocsf-json-schema`, checked with `jsonschema`; ECS field definitions
//! from npm's `@elastic/ecs`; both installed by `deploy/local/install.sh`), for every fixture,
//! the scenario generator's sessions and the event generator; and end to end on the real
//! broker: events posted to ingest come out on the OCSF and ECS topics with the trace id, a
//! per-tenant export carries only its tenant, a filtered export only what matches, and a
//! SIGKILLed export stage loses nothing.

use export::{Account, Cloud, Format};
use integration_tests::{Service, World, generator, scenarios};
use rdkafka::consumer::{BaseConsumer, Consumer};
use schemas::{ActivityEvent, ActivityType};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn siem_dir() -> PathBuf {
    let cache = std::env::var("AA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/activity-audit")
        });
    cache.join("siem-validators")
}

/// Runs `tests/siem/validate.py` over `records`; panics with the validator's errors.
fn validate(format: Format, records: &[Value]) {
    let dir = siem_dir();
    let python = dir.join("venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run deploy/local/install.sh",
        python.display()
    );
    let file = std::env::temp_dir()
        .join(integration_tests::unique("siem"))
        .with_extension("jsonl");
    let mut body = Vec::new();
    for r in records {
        serde_json::to_writer(&mut body, r).unwrap();
        body.push(b'\n');
    }
    std::fs::write(&file, body).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("siem/validate.py");
    let mut cmd = Command::new(python);
    cmd.arg(script);
    match format {
        Format::Ocsf => cmd.arg("ocsf").arg(&file),
        Format::Ecs => cmd.arg("ecs").arg(&file).arg(dir.join("ecs_flat.json")),
    };
    let out = cmd.output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "validator failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        report["error_count"], 0,
        "{format:?} records do not validate: {report:#}"
    );
    assert_eq!(report["validated"], records.len());
    assert!(out.status.success());
}

fn to_json(format: Format, e: &ActivityEvent, cloud: &Cloud) -> Value {
    let mut buf = Vec::new();
    format.write(e, cloud, &mut buf);
    serde_json::from_slice(&buf).unwrap()
}

/// `../shared/fixtures` beside the repository (`AA_SHARED_FIXTURES` overrides) and ours.
fn fixture_events() -> Vec<ActivityEvent> {
    use ingest::sources::{Outcome, falco, k8s_audit, tetragon};
    let shared = std::env::var("AA_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
        });
    let own = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let who = ingest::auth::Identity {
        tenant: "acme".into(),
        cluster: "prod-eu".into(),
    };
    let mut out = Vec::new();
    let mut stack = vec![shared, own];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let path = p.to_string_lossy();
            let body = std::fs::read(&p).unwrap();
            let (parsed, source) = if path.contains("/k8s-audit/") {
                (k8s_audit::parse(&body), schemas::Source::K8sAudit)
            } else if path.contains("/falco/") {
                (falco::parse(&body, false), schemas::Source::Falco)
            } else if path.contains("/tetragon/") {
                (tetragon::parse(&body, false), schemas::Source::Tetragon)
            } else {
                continue;
            };
            // The malformed fixture is rejected by ingest; it has nothing to export.
            for o in parsed.unwrap_or_default() {
                if let Outcome::Activity(mut e, key) = o {
                    ingest::publish::stamp(&mut e, &who, source, 1_767_000_000_000_000_000, &key);
                    out.push(*e);
                }
            }
        }
    }
    out
}

/// The scenario generator's sessions, correlated by the real engine (so events carry trace
/// ids, confidences and links).
fn scenario_events() -> Vec<ActivityEvent> {
    let suite = scenarios::suite(7, 1, 1_767_000_000_000_000_000);
    let labelled = scenarios::parse(&suite, "acme", "prod-eu");
    let mut parts: BTreeMap<i32, Vec<ActivityEvent>> = BTreeMap::new();
    for l in labelled {
        let p = schemas::topics::partition_for(&schemas::topics::partition_key(&l.event), 4);
        parts.entry(p).or_default().push(l.event);
    }
    let mut out = Vec::new();
    for (_, events) in parts {
        let mut engine = correlator::engine::Engine::new(Default::default());
        for (offset, e) in events.into_iter().enumerate() {
            out.extend(engine.process(offset as u64, vec![e]).events);
        }
        engine.sweep();
    }
    out
}

#[test]
fn siem_records_validate_against_their_schemas() {
    let mut events = fixture_events();
    let from_fixtures = events.len();
    assert!(
        from_fixtures >= 10,
        "fixtures give activities: {from_fixtures}"
    );
    let scenario = scenario_events();
    let linked = scenario.iter().filter(|e| !e.trace_id.is_empty()).count();
    assert!(linked > 100, "the scenarios give linked events: {linked}");
    events.extend(scenario);
    let mut generated = generator::events(11, 2_000, 1_767_000_000_000_000_000, true);
    for e in &mut generated {
        e.tenant = "acme".into();
    }
    events.extend(generated);
    let clouds = [
        Cloud::default(),
        Cloud {
            provider: "AWS".into(),
            region: "eu-west-1".into(),
            account: Some(Account {
                uid: "123456789012".into(),
                name: "prod".into(),
            }),
        },
    ];

    let mut classes: HashMap<u64, usize> = HashMap::new();
    let mut ocsf = Vec::new();
    let mut ecs = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let cloud = &clouds[i % 2];
        let o = to_json(Format::Ocsf, e, cloud);
        *classes.entry(o["class_uid"].as_u64().unwrap()).or_default() += 1;
        // The contract SIEM users rely on, beyond the schema.
        assert_eq!(o["metadata"]["uid"], e.id.as_str());
        assert_eq!(o["metadata"]["tenant_uid"], "acme");
        assert_eq!(o["time"], e.timestamp / 1_000_000);
        assert_eq!(o["cloud"]["provider"], cloud.provider.as_str());
        if e.trace_id.is_empty() {
            assert!(o["metadata"].get("correlation_uid").is_none());
        } else {
            assert_eq!(o["metadata"]["correlation_uid"], e.trace_id.as_str());
        }
        match e.kind {
            ActivityType::Kubernetes => {
                assert_eq!(o["actor"]["user"]["name"], e.user_name.as_str(), "{o}");
                if let Some(ip) = e.source_addresses.first() {
                    assert_eq!(o["src_endpoint"]["ip"], ip.as_str());
                }
                assert_eq!(o["resources"][0]["name"], e.pod.as_str());
                assert_eq!(o["resources"][0]["namespace"], e.namespace.as_str());
            }
            ActivityType::Command => {
                assert_eq!(o["process"]["pid"], e.pid);
                assert_eq!(o["process"]["cmd_line"], e.cmdline.as_str());
            }
            ActivityType::Connection => {
                assert_eq!(o["dst_endpoint"]["ip"], e.server_ip.as_str());
            }
            ActivityType::Fileaccess => {
                assert_eq!(o["file"]["path"], e.filename.as_str());
            }
        }
        if !e.container_id.is_empty() && e.kind != ActivityType::Kubernetes {
            let c = if e.kind == ActivityType::Command {
                &o["process"]["container"]
            } else {
                &o["actor"]["process"]["container"]
            };
            assert_eq!(c["uid"], e.container_id.as_str(), "{o}");
        }
        if !e.cluster.is_empty() {
            assert_eq!(o["unmapped"]["kubernetes.cluster.name"], e.cluster.as_str());
        }
        ocsf.push(o);

        let d = to_json(Format::Ecs, e, cloud);
        assert_eq!(d["event"]["id"], e.id.as_str());
        assert_eq!(d["organization"]["id"], "acme");
        if !e.trace_id.is_empty() {
            assert_eq!(d["trace"]["id"], e.trace_id.as_str());
        }
        if !e.pod.is_empty() {
            assert_eq!(d["orchestrator"]["resource"]["name"], e.pod.as_str());
        }
        ecs.push(d);
    }
    for class in [1007, 4001, 1001, 6003] {
        assert!(
            classes.get(&class).copied().unwrap_or(0) > 0,
            "class {class} covered: {classes:?}"
        );
    }
    validate(Format::Ocsf, &ocsf);
    validate(Format::Ecs, &ecs);

    // The validators do reject what is wrong (they are not rubber stamps).
    let mut bad = ocsf[0].clone();
    bad["activity_id"] = Value::from("launch");
    bad["metadata"].as_object_mut().unwrap().remove("product");
    let r = std::panic::catch_unwind(|| validate(Format::Ocsf, &[bad]));
    assert!(r.is_err(), "a broken OCSF event is rejected");
    let mut bad = ecs[0].clone();
    bad["process"]["pid"] = Value::from("42");
    bad["hostname"] = Value::from("not-ecs");
    let r = std::panic::catch_unwind(|| validate(Format::Ecs, &[bad]));
    assert!(r.is_err(), "a broken ECS document is rejected");
}

/// Every event on `topic` (all partitions, from the beginning): id (the message key, or the
/// event's own id in a JSON-lines message), tenant header, JSON.
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, String, Value)> {
    let cfg = pipeline::config::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    let reader =
        pipeline::kafka::TailReader::new(&cfg, &integration_tests::unique("reader")).unwrap();
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut out = Vec::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        let (lo, hi) = reader.watermarks(topic, p.id()).unwrap();
        // In slices: the local broker can be slow to serve many small batches.
        let mut messages = Vec::new();
        let mut from = lo;
        while from < hi {
            let to = (from + 500).min(hi);
            let part = reader
                .read(topic, p.id(), from, to)
                .unwrap_or_else(|e| panic!("{topic}/{}: {from}..{to}: {e}", p.id()));
            from = part.last().map_or(to, |m| m.offset + 1);
            messages.extend(part);
        }
        for m in messages {
            let header = |k: &str| {
                m.headers
                    .iter()
                    .find(|(h, _)| h == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let tenant = header("aa-tenant");
            let ndjson = header("content-type") == schemas::batch::CONTENT_TYPE;
            // One event per message, or JSON lines (ndjson framing).
            for line in m.payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_slice(line).unwrap();
                let id = if ndjson {
                    v["event"]["id"]
                        .as_str()
                        .or(v["metadata"]["uid"].as_str())
                        .unwrap()
                        .to_string()
                } else {
                    assert!(m.payload.last() != Some(&b'\n'), "one JSON per message");
                    String::from_utf8(m.key.clone()).unwrap()
                };
                out.push((id, tenant.clone(), v));
            }
        }
    }
    out
}

fn high_watermarks(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    md.topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .map(|(_, hi)| hi)
                .unwrap_or(0)
        })
        .sum()
}

/// The latest record of each event id (records of a later revision supersede).
fn latest(records: &[(String, String, Value)]) -> HashMap<String, Value> {
    let rev = |v: &Value| {
        v["unmapped"]["revision"]
            .as_u64()
            .or_else(|| v["activity_audit"]["revision"].as_u64())
            .unwrap_or(0)
    };
    let mut out: HashMap<String, Value> = HashMap::new();
    for (k, _, v) in records {
        match out.get(k) {
            Some(old) if rev(old) >= rev(v) => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_ocsf_and_ecs_topics_per_tenant_without_loss() {
    let world = World::new(2).await;
    // A second tenant, writing through ingest with its own token.
    let other = format!("other-{}", world.name);
    let other_token = format!("tok-other-{}", world.name);
    let mut tokens = std::fs::read_to_string(&world.tokens_file).unwrap();
    tokens.push_str(&format!(
        "[[token]]\ntoken = \"{other_token}\"\ntenant = \"{other}\"\ncluster = \"prod-us\"\n"
    ));
    std::fs::write(&world.tokens_file, tokens).unwrap();
    let t = |s: &str| format!("{}.{s}", world.name);
    let config = world.dir.join("export.toml");
    std::fs::write(
        &config,
        format!(
            r#"
max_in_flight = 1
[topic_setup]
partitions = 2
replication = 1
min_insync_replicas = 1
[[exports]]
name = "ocsf"
format = "ocsf"
topic = "{ocsf}"
[[exports]]
name = "ecs"
format = "ecs"
topic = "{ecs}"
framing = "ndjson"
[[exports]]
name = "ocsf-per-tenant"
format = "ocsf"
topic = "{per_tenant}"
[[exports]]
name = "kube-only"
format = "ecs"
topic = "{kube}"
filter = 'type = kubernetes and user.username = "alice@example.com"'
[clouds."prod-us"]
provider = "GCP"
region = "us-east1"
"#,
            ocsf = t("ocsf"),
            ecs = t("ecs"),
            per_tenant = t("ocsf.{tenant}"),
            kube = t("kube"),
        ),
    )
    .unwrap();

    let ingest = world.spawn(Service::Ingest);
    let _enricher = world.spawn(Service::Enricher);
    let _correlator = world.spawn(Service::Correlator);
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;

    // Tenant A: a kubectl exec session (audit + Falco) and bulk native events; tenant B: bulk.
    let session = scenarios::exec_session(5, now - 120_000_000_000, "alice@example.com");
    let session_ids: HashSet<String> = scenarios::parse(
        std::slice::from_ref(&session),
        &world.tenant,
        &world.cluster,
    )
    .into_iter()
    .map(|l| l.event.id)
    .collect();
    for item in scenarios::arrival_order(std::slice::from_ref(&session)) {
        integration_tests::post_item(&http, &ingest.url(), &world.token, &item.input).await;
    }
    let mine = generator::events(21, 3_000, now - 3_600_000_000_000, false);
    let theirs = generator::events(22, 1_000, now - 3_600_000_000_000, false);
    for chunk in mine.chunks(500) {
        integration_tests::post_events(
            &http,
            &ingest.url(),
            &world.token,
            generator::ndjson(chunk),
        )
        .await;
    }
    for chunk in theirs.chunks(500) {
        integration_tests::post_events(
            &http,
            &ingest.url(),
            &other_token,
            generator::ndjson(chunk),
        )
        .await;
    }
    let expected_a = session_ids.len() + mine.len();
    let expected = expected_a + theirs.len();

    // The export stage starts on the backlog and is SIGKILLed mid-stream, then restarted.
    let cfg = config.to_string_lossy().into_owned();
    let env = [("AA_EXPORT_CONFIG", cfg.as_str())];
    let mut export = world.spawn_with(Service::Export, &env);
    let start = Instant::now();
    let mut at_kill = 0;
    while start.elapsed() < Duration::from_secs(60) {
        at_kill = high_watermarks(&world.brokers, &t("ocsf"));
        if at_kill > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    export.kill9();
    assert!(
        at_kill > 0 && (at_kill as usize) < expected,
        "killed mid-stream: {at_kill} of {expected} records written"
    );
    let _export = world.spawn_with(Service::Export, &env);

    // Everything arrives (the correlator may still re-emit late links: wait for the session's
    // trace to settle on every one of its events).
    let deadline = Instant::now() + Duration::from_secs(180);
    let ocsf = loop {
        // Reading the whole topic is dear: only once it can hold every event.
        if high_watermarks(&world.brokers, &t("ocsf")) < expected as i64 {
            assert!(Instant::now() < deadline, "OCSF topic never filled");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let records = read_topic(&world.brokers, &t("ocsf"));
        let latest = latest(&records);
        let settled = session_ids.iter().all(|id| {
            latest
                .get(id)
                .is_some_and(|v| v["metadata"]["correlation_uid"].is_string())
        });
        if latest.len() >= expected && settled {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "OCSF topic has {} of {expected} events",
            latest.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let by_id = latest(&ocsf);
    assert_eq!(by_id.len(), expected, "every event, none lost, none extra");
    for (key, tenant, v) in &ocsf {
        assert_eq!(v["metadata"]["uid"], key.as_str(), "keyed by event id");
        assert_eq!(
            v["metadata"]["tenant_uid"],
            tenant.as_str(),
            "tenant header"
        );
    }
    // A replayed record is the same record (consumers deduplicate on the key).
    let mut first: HashMap<&str, &Value> = HashMap::new();
    for (k, _, v) in &ocsf {
        if let Some(prev) = first.get(k.as_str()) {
            if prev["unmapped"]["revision"] == v["unmapped"]["revision"] {
                assert_eq!(*prev, v, "a replay of {k} is identical");
            }
        } else {
            first.insert(k, v);
        }
    }

    // The session: one trace id on every event, and the API Activity names the user.
    let traces: HashSet<&str> = session_ids
        .iter()
        .map(|id| by_id[id]["metadata"]["correlation_uid"].as_str().unwrap())
        .collect();
    assert_eq!(traces.len(), 1, "one trace for the session: {traces:?}");
    let api: Vec<&Value> = session_ids
        .iter()
        .map(|id| &by_id[id])
        .filter(|v| v["class_uid"] == 6003)
        .collect();
    assert!(!api.is_empty());
    for v in &api {
        assert_eq!(v["actor"]["user"]["name"], "alice@example.com");
    }
    // Cloud of a configured cluster, default elsewhere.
    for v in by_id.values() {
        let want = if v["metadata"]["tenant_uid"] == other.as_str() {
            "GCP"
        } else {
            "Kubernetes"
        };
        assert_eq!(v["cloud"]["provider"], want);
    }

    // ECS (JSON lines framing): the same events.
    let ecs = latest(&read_topic(&world.brokers, &t("ecs")));
    assert_eq!(ecs.len(), expected);
    for id in &session_ids {
        assert_eq!(
            ecs[id]["trace"]["id"].as_str(),
            traces.iter().next().copied()
        );
    }

    // Per tenant: each tenant's topic has exactly its own events.
    let topic_a = t(&format!("ocsf.{}", world.tenant));
    let topic_b = t(&format!("ocsf.{other}"));
    let a = latest(&read_topic(&world.brokers, &topic_a));
    let b = latest(&read_topic(&world.brokers, &topic_b));
    assert_eq!(a.len(), expected_a);
    assert_eq!(b.len(), theirs.len());
    assert!(
        a.values()
            .all(|v| v["metadata"]["tenant_uid"] == world.tenant.as_str())
    );
    assert!(
        b.values()
            .all(|v| v["metadata"]["tenant_uid"] == other.as_str())
    );

    // The filtered export: only alice's kube activities.
    let kube = latest(&read_topic(&world.brokers, &t("kube")));
    assert_eq!(kube.len(), api.len(), "{:?}", kube.keys());
    assert!(
        kube.values()
            .all(|v| v["user"]["name"] == "alice@example.com"
                && v["activity_audit"]["type"] == "kubernetes")
    );

    // And all of it is valid.
    let sample: Vec<Value> = by_id.values().cloned().collect();
    validate(Format::Ocsf, &sample);
    let sample: Vec<Value> = ecs.values().cloned().collect();
    validate(Format::Ecs, &sample);
}

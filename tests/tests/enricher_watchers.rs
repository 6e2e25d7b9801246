//! The real watcher code (kube's client and watcher, our store) against an in-process HTTP
//! server speaking the Kubernetes API: list + watch, watch restarts and re-lists, updates and
//! deletions, two clusters with the same namespace and pod names, an unreachable cluster,
//! every workload kind (metadata-only watches of controllers and namespaces), labels, and the
//! enrichment transform waiting for late metadata.

use enricher::Enrich;
use enricher::watch::{self, ClusterConfig, Stores};
use integration_tests::fake_kube::{Fake, kubeconfig, labeled, namespace, node, owned, pod};
use pipeline::stage::Transform;
use schemas::ActivityEvent;
use std::time::Duration;

const CID_WEB: &str = "9656db3bb3584bb5c1c67be8b5a3a3e4e2a5c6d7e8f9a0b1c2d3e4f5a6b7c8d9";
const CID_API: &str = "1111111111112222222222223333333333334444444444445555555555556666";

async fn fake_cluster(web_node: &str) -> (Fake, u16) {
    let f = Fake::default();
    f.set(
        "/api/v1/pods",
        vec![web_pod(web_node, CID_WEB, "nginx:1.25")],
    );
    f.set(
        "/api/v1/namespaces",
        vec![
            namespace("shop", &[("team", "payments"), ("env", "prod")]),
            namespace("ops", &[]),
        ],
    );
    f.set(
        "/apis/apps/v1/deployments",
        vec![
            owned("apps/v1", "Deployment", "web", "shop", None),
            owned("apps/v1", "Deployment", "checkout", "shop", None),
        ],
    );
    f.set(
        "/apis/batch/v1/cronjobs",
        vec![owned("batch/v1", "CronJob", "backup", "ops", None)],
    );
    f.set(
        "/apis/apps/v1/statefulsets",
        vec![owned("apps/v1", "StatefulSet", "db", "shop", None)],
    );
    f.set(
        "/apis/apps/v1/daemonsets",
        vec![owned("apps/v1", "DaemonSet", "agent", "ops", None)],
    );
    f.set(
        "/apis/apps/v1/replicasets",
        vec![owned(
            "apps/v1",
            "ReplicaSet",
            "web-7d9f8",
            "shop",
            Some(("Deployment", "web")),
        )],
    );
    f.set(
        "/apis/batch/v1/jobs",
        vec![owned(
            "batch/v1",
            "Job",
            "backup-28861440",
            "ops",
            Some(("CronJob", "backup")),
        )],
    );
    f.set("/api/v1/nodes", vec![node(web_node)]);
    let port = f.clone().serve().await;
    (f, port)
}

/// The web Deployment's pod, labeled (with a per-replica label the enricher drops).
fn web_pod(node: &str, cid: &str, image: &str) -> serde_json::Value {
    labeled(
        pod(
            "web-7d9f8-x2x4q",
            "shop",
            node,
            Some(("ReplicaSet", "web-7d9f8")),
            &[("app", image, Some(cid))],
        ),
        &[
            ("app", "web"),
            ("pod-template-hash", "7d9f8"),
            ("tier", "frontend"),
        ],
    )
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn falco_event(tenant: &str, cluster: &str, short_id: &str) -> ActivityEvent {
    ActivityEvent {
        tenant: tenant.into(),
        cluster: cluster.into(),
        timestamp: 1_767_000_000_000_000_000,
        comm: "cat".into(),
        container_id: short_id.into(),
        hostname: "ip-10-0-0-7".into(),
        ..Default::default()
    }
}

fn dropped() -> Vec<String> {
    enricher::EnricherConfig::default().drop_labels
}

fn enrich_now(stores: &Stores, e: &mut ActivityEvent) -> bool {
    stores
        .get(&e.tenant, &e.cluster)
        .expect("the event's cluster is configured")
        .meta
        .read()
        .unwrap()
        .enrich(e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_follow_lists_watches_restarts_and_deletions_per_cluster() {
    let dir = std::env::temp_dir().join(format!("aa-enricher-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (eu, eu_port) = fake_cluster("node-eu-1").await;
    let (us, us_port) = fake_cluster("node-us-1").await;
    // The same namespace and pod name in the US cluster, but another container.
    us.set(
        "/api/v1/pods",
        vec![web_pod("node-us-1", CID_API, "nginx:1.27")],
    );
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let clusters = vec![
        ClusterConfig {
            tenant: "acme".into(),
            name: "prod-eu".into(),
            kubeconfig: Some(kubeconfig(&dir, "prod-eu", eu_port)),
            context: None,
        },
        ClusterConfig {
            tenant: "acme".into(),
            name: "prod-us".into(),
            kubeconfig: Some(kubeconfig(&dir, "prod-us", us_port)),
            context: Some("prod-us".into()),
        },
        ClusterConfig {
            tenant: "acme".into(),
            name: "gone".into(),
            kubeconfig: Some(kubeconfig(&dir, "gone", dead_port)),
            context: None,
        },
    ];
    let (stores, tasks) = watch::start(&clusters, Duration::from_millis(300), &dropped());
    let s = stores.clone();
    until("both reachable clusters listed", || {
        s.get("acme", "prod-eu").unwrap().synced() && s.get("acme", "prod-us").unwrap().synced()
    })
    .await;
    assert!(
        !stores.get("acme", "gone").unwrap().pods_synced(),
        "the unreachable cluster never lists"
    );
    // Controllers and namespaces are asked for as metadata only; pods and nodes in full.
    for path in [
        "/api/v1/namespaces",
        "/apis/apps/v1/replicasets",
        "/apis/apps/v1/deployments",
        "/apis/apps/v1/statefulsets",
        "/apis/apps/v1/daemonsets",
        "/apis/batch/v1/jobs",
        "/apis/batch/v1/cronjobs",
    ] {
        assert_eq!(eu.metadata_only(path), Some(true), "{path}");
    }
    for path in ["/api/v1/pods", "/api/v1/nodes"] {
        assert_eq!(eu.metadata_only(path), Some(false), "{path}");
    }

    // List: a Falco event with only a short container id gets everything.
    let mut e = falco_event("acme", "prod-eu", &CID_WEB[..12]);
    assert!(enrich_now(&stores, &mut e));
    assert_eq!(
        (
            e.namespace.as_str(),
            e.pod.as_str(),
            e.workload_kind.as_str(),
            e.workload_name.as_str(),
            e.deployment_name()
        ),
        ("shop", "web-7d9f8-x2x4q", "Deployment", "web", "web")
    );
    assert_eq!(
        (
            e.container_name.as_str(),
            e.container_image.as_str(),
            e.container_id.as_str()
        ),
        ("app", "nginx:1.25", CID_WEB)
    );
    assert_eq!(
        (e.node.as_str(), e.enrichment.as_str()),
        ("node-eu-1", "api")
    );
    // Labels: the pod's (sorted, without the per-replica hash) and its namespace's.
    assert_eq!(e.pod_labels, ["app=web", "tier=frontend"]);
    assert_eq!(e.namespace_labels, ["env=prod", "team=payments"]);
    // Same names, other cluster: its own container and node.
    let mut u = falco_event("acme", "prod-us", &CID_API[..12]);
    assert!(enrich_now(&stores, &mut u));
    assert_eq!(
        (u.node.as_str(), u.container_image.as_str()),
        ("node-us-1", "nginx:1.27")
    );
    let mut cross = falco_event("acme", "prod-us", &CID_WEB[..12]);
    assert!(
        !enrich_now(&stores, &mut cross),
        "a container of prod-eu is unknown in prod-us"
    );

    // A kube exec audit event gets its container's id and the node.
    let mut exec = ActivityEvent {
        tenant: "acme".into(),
        cluster: "prod-eu".into(),
        kind: schemas::ActivityType::Kubernetes,
        namespace: "shop".into(),
        pod: "web-7d9f8-x2x4q".into(),
        container: "app".into(),
        verb: "create".into(),
        resource: "pods".into(),
        sub_resource: "exec".into(),
        ..Default::default()
    };
    assert!(enrich_now(&stores, &mut exec));
    assert_eq!(
        (exec.container_id.as_str(), exec.hostname.as_str()),
        (CID_WEB, "node-eu-1.internal")
    );

    // Watch: a new pod of a CronJob's Job, first without, then with its container id.
    until("watches open", || eu.watch_count("/api/v1/pods") > 0).await;
    let cid_job = "abcabcabcabc0000000000000000000000000000000000000000000000000000";
    eu.event(
        "/api/v1/pods",
        "ADDED",
        pod(
            "backup-28861440-zz9k",
            "ops",
            "node-eu-1",
            Some(("Job", "backup-28861440")),
            &[("backup", "restic:0.16", None)],
        ),
    );
    eu.event(
        "/api/v1/pods",
        "MODIFIED",
        pod(
            "backup-28861440-zz9k",
            "ops",
            "node-eu-1",
            Some(("Job", "backup-28861440")),
            &[("backup", "restic:0.16", Some(cid_job))],
        ),
    );
    let mut b = falco_event("acme", "prod-eu", cid_job);
    until("the modified pod", || enrich_now(&stores, &mut b.clone())).await;
    assert!(enrich_now(&stores, &mut b));
    assert_eq!(
        (b.workload_kind.as_str(), b.workload_name.as_str()),
        ("CronJob", "backup")
    );

    // Every workload kind: StatefulSet and DaemonSet pods name their controller directly; a
    // pod whose ReplicaSet or Job is not listed yet (created just before it) still gets its
    // Deployment or CronJob, by name, when that is known.
    let cases = [
        ("db-0", "shop", ("StatefulSet", "db"), ("StatefulSet", "db")),
        (
            "agent-x7k2p",
            "ops",
            ("DaemonSet", "agent"),
            ("DaemonSet", "agent"),
        ),
        (
            "checkout-5c6d7-q8w9e",
            "shop",
            ("ReplicaSet", "checkout-5c6d7"),
            ("Deployment", "checkout"),
        ),
        (
            "backup-28861500-k3j4h",
            "ops",
            ("Job", "backup-28861500"),
            ("CronJob", "backup"),
        ),
        (
            "orphan-5c6d7-a1b2c",
            "shop",
            ("ReplicaSet", "orphan-5c6d7"),
            ("ReplicaSet", "orphan-5c6d7"),
        ),
    ];
    for (i, (name, ns, owner, _)) in cases.iter().enumerate() {
        let cid = format!("{:012x}{}", 0xc0ffee000 + i, "0".repeat(52));
        eu.event(
            "/api/v1/pods",
            "ADDED",
            pod(
                name,
                ns,
                "node-eu-1",
                Some(*owner),
                &[("main", "busybox", Some(&cid))],
            ),
        );
    }
    for (i, (name, _, _, (kind, workload))) in cases.iter().enumerate() {
        let cid = format!("{:012x}", 0xc0ffee000 + i);
        let mut w = falco_event("acme", "prod-eu", &cid);
        until(name, || enrich_now(&stores, &mut w.clone())).await;
        assert!(enrich_now(&stores, &mut w));
        assert_eq!(
            (
                w.pod.as_str(),
                w.workload_kind.as_str(),
                w.workload_name.as_str()
            ),
            (*name, *kind, *workload)
        );
    }
    // A namespace's labels change through its (metadata-only) watch.
    until("namespace watch", || {
        eu.watch_count("/api/v1/namespaces") > 0
    })
    .await;
    eu.event(
        "/api/v1/namespaces",
        "MODIFIED",
        namespace("shop", &[("team", "checkout")]),
    );
    until("new namespace labels", || {
        let mut x = falco_event("acme", "prod-eu", &CID_WEB[..12]);
        enrich_now(&stores, &mut x) && x.namespace_labels == ["team=checkout"]
    })
    .await;

    // Watch restart: the stream ends, the client watches again and sees later changes.
    eu.close_watches("/api/v1/pods");
    until("a new watch", || eu.watch_count("/api/v1/pods") > 0).await;
    let cid_late = "fefefefefefe0000000000000000000000000000000000000000000000000000";
    eu.event(
        "/api/v1/pods",
        "ADDED",
        pod(
            "late-1",
            "shop",
            "node-eu-1",
            None,
            &[("late", "busybox", Some(cid_late))],
        ),
    );
    until("a pod seen after the restart", || {
        enrich_now(&stores, &mut falco_event("acme", "prod-eu", cid_late))
    })
    .await;

    // Deletion: kept for the grace period (late events still enriched), then forgotten.
    eu.event(
        "/api/v1/pods",
        "DELETED",
        pod(
            "late-1",
            "shop",
            "node-eu-1",
            None,
            &[("late", "busybox", Some(cid_late))],
        ),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        enrich_now(&stores, &mut falco_event("acme", "prod-eu", cid_late)),
        "within the grace period"
    );
    // 410 Gone: a re-list that no longer has the backup pod counts as its deletion.
    eu.set(
        "/api/v1/pods",
        vec![pod(
            "web-7d9f8-x2x4q",
            "shop",
            "node-eu-1",
            Some(("ReplicaSet", "web-7d9f8")),
            &[("app", "nginx:1.25", Some(CID_WEB))],
        )],
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    eu.expire("/api/v1/pods");
    // Sweeps run on watch events: keep nudging until both are gone.
    until("deleted pods forgotten after the grace", || {
        eu.event(
            "/apis/apps/v1/replicasets",
            "MODIFIED",
            owned(
                "apps/v1",
                "ReplicaSet",
                "web-7d9f8",
                "shop",
                Some(("Deployment", "web")),
            ),
        );
        let mut x = falco_event("acme", "prod-eu", cid_late);
        let mut y = falco_event("acme", "prod-eu", cid_job);
        !enrich_now(&stores, &mut x) && !enrich_now(&stores, &mut y)
    })
    .await;
    assert!(
        enrich_now(&stores, &mut falco_event("acme", "prod-eu", CID_WEB)),
        "listed pods stay"
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transform_waits_a_bounded_time_for_late_metadata() {
    let dir = std::env::temp_dir().join(format!("aa-enricher-wait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (f, port) = fake_cluster("node-1").await;
    let clusters = vec![ClusterConfig {
        tenant: "t".into(),
        name: "c".into(),
        kubeconfig: Some(kubeconfig(&dir, "c", port)),
        context: None,
    }];
    let (stores, tasks) = watch::start(&clusters, Duration::from_secs(300), &dropped());
    let s = stores.clone();
    until("listed", || s.get("t", "c").unwrap().synced()).await;
    until("watching", || f.watch_count("/api/v1/pods") > 0).await;
    let mut t = Enrich {
        stores: stores.clone(),
        wait: Duration::from_millis(1500),
    };

    // A process exec'd in a container's first moments: its pod shows up while it waits.
    let cid_new = "0123456789ab0000000000000000000000000000000000000000000000000000";
    let mut agent = falco_event("t", "c", cid_new);
    agent.namespace = "shop".into();
    agent.pod = "new-pod".into();
    let pending = t.apply(vec![agent.clone(), falco_event("t", "c", &CID_WEB[..12])]);
    let f2 = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        f2.event(
            "/api/v1/pods",
            "ADDED",
            pod(
                "new-pod",
                "shop",
                "node-1",
                Some(("StatefulSet", "db")),
                &[("db", "postgres:16", Some(cid_new))],
            ),
        );
    });
    let started = std::time::Instant::now();
    let out = pending.await;
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "woken by the watcher, not the deadline"
    );
    assert_eq!(
        (
            out[0].enrichment.as_str(),
            out[0].workload_kind.as_str(),
            out[0].container_image.as_str()
        ),
        ("api", "StatefulSet", "postgres:16")
    );
    assert_eq!(out[1].enrichment, "api");

    // Never known: emitted after the bounded wait with what the agent said, flagged.
    let mut ghost = falco_event("t", "c", "dddddddddddd");
    ghost.namespace = "shop".into();
    ghost.pod = "ghost".into();
    ghost.container_name = "agent-said".into();
    let started = std::time::Instant::now();
    let out = t.apply(vec![ghost]).await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        (
            out[0].enrichment.as_str(),
            out[0].pod.as_str(),
            out[0].container_name.as_str()
        ),
        ("partial", "ghost", "agent-said")
    );

    // An event of a cluster nobody configured passes untouched; a host event of a node gets it.
    let other = falco_event("t", "elsewhere", "abc");
    let out = t.apply(vec![other.clone()]).await;
    assert_eq!(out[0], other);
    let mut host = falco_event("t", "c", "");
    host.hostname = "node-1".into();
    let out = t.apply(vec![host]).await;
    assert_eq!(
        (out[0].node.as_str(), out[0].enrichment.as_str()),
        ("node-1", "")
    );
    for t in tasks {
        t.abort();
    }
}

/// Through the real broker and services: the enricher binary watches a (fake) API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_out_enriched_through_the_pipeline() {
    use integration_tests::{Service, World};
    let world = World::new(4).await;
    let (_f, port) = fake_cluster("node-eu-1").await;
    let kc = kubeconfig(&world.dir, "prod", port);
    let config = world.dir.join("enricher.toml");
    std::fs::write(
        &config,
        format!(
            "wait_ms = 1500\n[[clusters]]\ntenant = \"{}\"\nname = \"{}\"\nkubeconfig = \"{}\"\n",
            world.tenant,
            world.cluster,
            kc.display()
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();
    let ingest = world.spawn(Service::Ingest);
    let _enricher = world.spawn_with(Service::Enricher, &[("AA_ENRICHER_CONFIG", cfg.as_str())]);
    let _correlator = world.spawn(Service::Correlator);
    let _writer = world.spawn(Service::Writer);
    // Let the enricher list the cluster before the first event.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}{path}", ingest.url());
        let token = world.token.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    let alert = |cid: &str, pod: Option<&str>, name: &str| {
        serde_json::json!({"time": "2026-11-26T10:00:00.000000000Z", "rule": "Activity Audit interactive command",
            "priority": "Notice", "source": "syscall", "hostname": "ip-10-0-0-7", "output": "x",
            "output_fields": {"evt.type": "execve", "evt.time": 1_795_600_000_000_000_000i64, "proc.pid": 4242, "proc.ppid": 4200,
                "proc.name": name, "proc.pname": "bash", "proc.cmdline": format!("{name} /etc/passwd"), "proc.tty": 34816,
                "proc.loginshellid": 4200, "proc.pid.ts": 1_795_600_000_000_000_000i64, "container.id": cid,
                "container.name": pod.map(|_| "agent-name"), "k8s.ns.name": pod.map(|_| "shop"), "k8s.pod.name": pod}})
    };
    // Only a container id: everything else comes from the API.
    post("/v1/falco", alert(&CID_WEB[..12], None, "cat")).await;
    // A pod the API never heard of: out after the bounded wait, with what the agent said.
    post("/v1/falco", alert("deadbeefdead", Some("ghost-0"), "ls")).await;
    // A kube exec: resolved to the container's id.
    let audit = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [{
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "e2e-1", "stage": "ResponseStarted",
        "requestURI": "/api/v1/namespaces/shop/pods/web-7d9f8-x2x4q/exec?command=bash&container=app&stdin=true&stdout=true&tty=true",
        "verb": "create", "user": {"username": "alice"}, "sourceIPs": ["203.0.113.7"],
        "objectRef": {"resource": "pods", "namespace": "shop", "name": "web-7d9f8-x2x4q", "apiVersion": "v1", "subresource": "exec"},
        "responseStatus": {"metadata": {}, "code": 101},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000000Z", "stageTimestamp": "2026-11-26T10:00:00.050000Z"}]});
    post("/v1/k8s-audit", audit).await;

    #[derive(serde::Deserialize, Debug)]
    struct Row {
        comm: String,
        r#type: String,
        cluster: String,
        namespace: String,
        workload_kind: String,
        workload_name: String,
        pod: String,
        container_name: String,
        container_id: String,
        container_image: String,
        node: String,
        enrichment: String,
        pod_labels: Vec<String>,
        namespace_labels: Vec<String>,
    }
    let n = world.wait_count(3, Duration::from_secs(60)).await;
    assert_eq!(n, 3);
    let rows: Vec<Row> = world
        .clickhouse()
        .query_rows(&format!(
            "SELECT comm, toString(type) AS type, cluster, namespace, workload_kind, workload_name, pod, container_name, \
             container_id, container_image, node, enrichment, pod_labels, namespace_labels FROM events FINAL WHERE tenant = {} ORDER BY comm",
            store::sql::quote(&world.tenant)
        ))
        .await
        .unwrap();
    let cat = rows.iter().find(|r| r.comm == "cat").unwrap();
    assert_eq!(
        (
            cat.cluster.as_str(),
            cat.namespace.as_str(),
            cat.workload_kind.as_str(),
            cat.workload_name.as_str(),
            cat.pod.as_str()
        ),
        (
            world.cluster.as_str(),
            "shop",
            "Deployment",
            "web",
            "web-7d9f8-x2x4q"
        )
    );
    assert_eq!(
        (
            cat.container_name.as_str(),
            cat.container_image.as_str(),
            cat.container_id.as_str(),
            cat.node.as_str(),
            cat.enrichment.as_str()
        ),
        ("app", "nginx:1.25", CID_WEB, "node-eu-1", "api")
    );
    assert_eq!(cat.pod_labels, ["app=web", "tier=frontend"]);
    assert_eq!(cat.namespace_labels, ["env=prod", "team=payments"]);
    // Labels are searchable with the filter language (list attributes).
    #[derive(serde::Deserialize)]
    struct Comm {
        comm: String,
    }
    let filter = schemas::filter::parse(
        "kubernetes.namespace.labels = \"team=payments\" and kubernetes.pod.labels = \"tier=frontend\"",
    )
    .unwrap()
    .unwrap();
    let hits: Vec<Comm> = world
        .clickhouse()
        .query_rows(&format!(
            "SELECT comm FROM events FINAL WHERE tenant = {} AND {} ORDER BY comm",
            store::sql::quote(&world.tenant),
            store::filter::compile(&filter)
        ))
        .await
        .unwrap();
    let hits: Vec<&str> = hits.iter().map(|c| c.comm.as_str()).collect();
    assert_eq!(
        hits,
        ["", "cat"],
        "the exec (no comm) and the Falco command of the web pod"
    );
    let ghost = rows.iter().find(|r| r.comm == "ls").unwrap();
    assert_eq!(
        (
            ghost.pod.as_str(),
            ghost.container_name.as_str(),
            ghost.enrichment.as_str()
        ),
        ("ghost-0", "agent-name", "partial")
    );
    let exec = rows.iter().find(|r| r.r#type == "kubernetes").unwrap();
    assert_eq!(
        (
            exec.container_id.as_str(),
            exec.node.as_str(),
            exec.enrichment.as_str()
        ),
        (CID_WEB, "node-eu-1", "api")
    );
}

//! Helpers for the end-to-end tests and benchmarks: the real broker and ClickHouse of the local
//! stack (`deploy/local/stack-up.sh`), per-test topics and databases, the real service binaries
//! run as child processes, and a generator of realistic events.

pub mod cpu;
pub mod fake_kube;
pub mod generator;
pub mod scenarios;
pub mod webdriver;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use schemas::topics::Topics;

/// Kafka bootstrap servers of the local stack (`AA_BROKERS` overrides).
pub fn brokers() -> String {
    std::env::var("AA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// ClickHouse HTTP URL of the local stack (`AA_CH_URL` overrides).
pub fn clickhouse_url() -> String {
    std::env::var("AA_CH_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A name unique to this test process and call, usable as topic prefix and database name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!(
        "{prefix}_{}_{t}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free loopback port for a server a test starts.
///
/// Chosen below the kernel's ephemeral range (`ip_local_port_range`), from a start that differs
/// per process and call: a port from `bind(0)` is free only until the next outgoing connection
/// of any process takes it as its local port, which under the full suite happens between
/// choosing a port and a child service binding it.
pub fn free_port() -> u16 {
    static N: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(12_000, 65_535);
    let (first, span) = (10_000u32, low - 10_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(N.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
    (0..span)
        .map(|i| (first + (seed.wrapping_add(i) % span)) as u16)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("no free loopback port below the ephemeral range")
}

pub fn kafka_config() -> pipeline::config::KafkaConfig {
    pipeline::config::KafkaConfig {
        brokers: brokers(),
        ..Default::default()
    }
}

/// The ClickHouse client for database `db`.
pub fn clickhouse(db: &str) -> store::ClickHouse {
    store::ClickHouse::new(store::ClickHouseConfig {
        url: clickhouse_url(),
        database: db.into(),
        ..Default::default()
    })
}

/// Inserts `events` into `events` of `ch` as the writer does (RowBinary), in one batch.
pub async fn insert_events(ch: &store::ClickHouse, events: &[schemas::ActivityEvent]) {
    let mut body = Vec::new();
    for e in events {
        store::row::write_row(&mut body, e);
    }
    ch.insert_rowbinary("events", &store::columns::names(), body.into())
        .await
        .unwrap();
}

/// Inserts trace records into `traces` of `ch` as the writer does (JSON lines), in one batch.
pub async fn insert_traces(ch: &store::ClickHouse, traces: &[&schemas::TraceRecord]) {
    let mut body = Vec::new();
    for t in traces {
        serde_json::to_writer(&mut body, t).unwrap();
        body.push(b'\n');
    }
    ch.insert_json_lines("traces", body.into()).await.unwrap();
}

/// Directory of the workspace's built binaries, built once per process with the profile this
/// test or benchmark was built with.
pub fn bin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test> or target/<profile>/<bench>
            let exe = std::env::current_exe().unwrap();
            let mut dir = exe.parent().unwrap().to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            let profile = match dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => "dev".to_string(),
                Some(p) => p.to_string(),
            };
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            // Build into the target directory this binary came from.
            let target_dir = dir.parent().unwrap().to_path_buf();
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "-q", "--bins", "--profile", &profile])
                .arg("--target-dir")
                .arg(&target_dir)
                .current_dir(&root)
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building the service binaries failed");
            dir
        })
        .clone()
}

/// A world of its own for one test: topics, a ClickHouse database, a tenant and a token.
#[derive(Debug, Clone)]
pub struct World {
    pub name: String,
    /// Kafka bootstrap servers this world's services use.
    pub brokers: String,
    pub topics: Topics,
    pub database: String,
    pub tenant: String,
    pub cluster: String,
    pub token: String,
    pub tokens_file: PathBuf,
    pub dir: PathBuf,
}

impl World {
    /// Creates the topics (`partitions` each) and applies the migrations to a new database.
    pub async fn new(partitions: i32) -> World {
        Self::on_brokers(&brokers(), partitions).await
    }

    /// A world whose services use the broker at `brokers` (e.g. a [`PrivateBroker`]).
    pub async fn on_brokers(brokers: &str, partitions: i32) -> World {
        let name = unique("aat");
        let topics = Topics::with_prefix(&name);
        let kafka = pipeline::config::KafkaConfig {
            brokers: brokers.to_string(),
            ..Default::default()
        };
        pipeline::kafka::ensure_topics(&kafka, &topics.all(), partitions)
            .await
            .expect("creating topics: is the local stack up? (deploy/local/stack-up.sh)");
        let database = name.clone();
        store::migrations::apply(&clickhouse(&database))
            .await
            .expect("migrating ClickHouse: is the local stack up? (deploy/local/stack-up.sh)");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let tenant = format!("tenant-{name}");
        let cluster = "prod-eu".to_string();
        let token = format!("tok-{name}");
        let tokens_file = dir.join("tokens.toml");
        std::fs::write(
            &tokens_file,
            format!(
                "[[token]]\ntoken = \"{token}\"\ntenant = \"{tenant}\"\ncluster = \"{cluster}\"\n\
                 [[token]]\ntoken = \"{token}-b\"\ntenant = \"{tenant}\"\ncluster = \"prod-us\"\n"
            ),
        )
        .unwrap();
        World {
            name,
            brokers: brokers.to_string(),
            topics,
            database,
            tenant,
            cluster,
            token,
            tokens_file,
            dir,
        }
    }

    pub fn clickhouse(&self) -> store::ClickHouse {
        clickhouse(&self.database)
    }

    /// Starts the query API in this process on free ports, reading this world's database with
    /// the token file `tokens` (TOML); stops when `shutdown` is cancelled.
    pub async fn start_query_api(
        &self,
        tokens: &str,
        shutdown: pipeline::shutdown::Shutdown,
    ) -> query_api::Bound {
        let path = self.dir.join(format!("query-tokens-{}.toml", unique("q")));
        std::fs::write(&path, tokens).unwrap();
        let cfg = query_api::QueryConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            grpc_listen: ([127, 0, 0, 1], 0).into(),
            clickhouse: store::ClickHouseConfig {
                url: clickhouse_url(),
                database: self.database.clone(),
                ..Default::default()
            },
            tokens_file: path,
            stream_poll_ms: 200,
            ops: pipeline::config::OpsConfig::on_port(0),
            ..Default::default()
        };
        query_api::start(cfg, Default::default(), shutdown)
            .await
            .unwrap()
            .0
    }

    /// [`World::start_query_api`] with one token, `q`, for this world's tenant (every data
    /// source, no team scope).
    pub async fn start_tenant_query_api(
        &self,
        shutdown: pipeline::shutdown::Shutdown,
    ) -> query_api::Bound {
        let tokens = format!("[[token]]\ntoken = \"q\"\ntenant = \"{}\"\n", self.tenant);
        self.start_query_api(&tokens, shutdown).await
    }

    fn topic_env(&self, prefix: &str, cmd: &mut Command) {
        cmd.env(format!("{prefix}__KAFKA__BROKERS"), &self.brokers)
            .env(format!("{prefix}__TOPICS__RAW"), &self.topics.raw)
            .env(format!("{prefix}__TOPICS__ENRICHED"), &self.topics.enriched)
            .env(format!("{prefix}__TOPICS__EVENTS"), &self.topics.events)
            .env(
                format!("{prefix}__TOPICS__DEADLETTER"),
                &self.topics.deadletter,
            )
            .env(format!("{prefix}__TOPICS__TRACES"), &self.topics.traces)
            .env(
                format!("{prefix}__TOPICS__CORRELATOR_STATE"),
                &self.topics.correlator_state,
            )
            .env(
                format!("{prefix}__KAFKA__INSTANCE_ID"),
                format!("{}-{prefix}", self.name),
            );
    }

    /// Starts one service binary configured for this world.
    pub fn spawn(&self, service: Service) -> Proc {
        self.spawn_with(service, &[])
    }

    /// Starts one service binary configured for this world, plus `extra` environment, and waits
    /// until it listens on its ports (ops, and HTTP and gRPC for ingest). A start that lost a
    /// chosen port to another process is retried on new ports.
    pub fn spawn_with(&self, service: Service, extra: &[(&str, &str)]) -> Proc {
        let log_path = self.dir.join(format!("{}.log", service.binary()));
        for _ in 0..5 {
            let logged = std::fs::metadata(&log_path).map_or(0, |m| m.len());
            let mut proc = self.try_spawn(service, extra, &log_path);
            let ports = [Some(proc.ops_port), proc.port, proc.grpc_port];
            match wait_ports(&mut proc.child, ports.into_iter().flatten()) {
                Ok(()) => return proc,
                Err(status) => {
                    let log = std::fs::read(&log_path).unwrap_or_default();
                    let tail = String::from_utf8_lossy(&log[(logged as usize).min(log.len())..]);
                    assert!(
                        tail.contains("Address already in use"),
                        "{} exited at start ({status}): {tail}",
                        service.binary()
                    );
                }
            }
        }
        panic!("{} found no free port in five tries", service.binary());
    }

    fn try_spawn(&self, service: Service, extra: &[(&str, &str)], log_path: &Path) -> Proc {
        let bin = bin_dir().join(service.binary());
        let mut cmd = Command::new(&bin);
        let prefix = service.env_prefix();
        self.topic_env(prefix, &mut cmd);
        let ops_port = free_port();
        cmd.env(
            format!("{prefix}__OPS__LISTEN"),
            format!("127.0.0.1:{ops_port}"),
        );
        let mut port = None;
        let mut grpc_port = None;
        match service {
            Service::Ingest => {
                let (p, g) = (free_port(), free_port());
                (port, grpc_port) = (Some(p), Some(g));
                cmd.env("AA_INGEST__LISTEN", format!("127.0.0.1:{p}"))
                    .env("AA_INGEST__GRPC_LISTEN", format!("127.0.0.1:{g}"))
                    .env("AA_INGEST__TOKENS_FILE", &self.tokens_file);
            }
            Service::Enricher => {
                cmd.env(
                    format!("{prefix}__GROUP"),
                    format!("{}-{}", self.name, service.binary()),
                );
            }
            Service::Correlator => {
                cmd.env(
                    format!("{prefix}__GROUP"),
                    format!("{}-{}", self.name, service.binary()),
                )
                // Snapshot often, so a crash in a test replays little.
                .env("AA_CORRELATOR__SNAPSHOT_INTERVAL_MS", "1000");
            }
            Service::Export => {
                cmd.env("AA_EXPORT__GROUP", format!("{}-export", self.name));
            }
            Service::Writer => {
                cmd.env("AA_WRITER__GROUP", format!("{}-writer", self.name))
                    .env("AA_WRITER__CLICKHOUSE__URL", clickhouse_url())
                    .env("AA_WRITER__CLICKHOUSE__DATABASE", &self.database);
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        cmd.env("RUST_LOG", "info,rdkafka=warn")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Proc {
            child,
            ops_port,
            port,
            grpc_port,
        }
    }

    /// The whole pipeline: ingest, enricher, correlator, writer.
    pub fn spawn_all(&self) -> Pipeline {
        Pipeline {
            ingest: self.spawn(Service::Ingest),
            enricher: self.spawn(Service::Enricher),
            correlator: self.spawn(Service::Correlator),
            writer: self.spawn(Service::Writer),
        }
    }

    /// Distinct events of the tenant as readers see them.
    pub async fn count(&self) -> u64 {
        store::read::count(&self.clickhouse(), &self.tenant)
            .await
            .unwrap_or(0)
    }

    /// Waits until readers see `n` events (or the timeout); returns the last count.
    pub async fn wait_count(&self, n: u64, timeout: Duration) -> u64 {
        let start = Instant::now();
        loop {
            let c = self.count().await;
            if c >= n || start.elapsed() > timeout {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ingest,
    Enricher,
    Correlator,
    Writer,
    Export,
}

impl Service {
    pub fn binary(self) -> &'static str {
        match self {
            Service::Ingest => "activity-audit-ingest",
            Service::Enricher => "activity-audit-enricher",
            Service::Correlator => "activity-audit-correlator",
            Service::Writer => "activity-audit-writer",
            Service::Export => "activity-audit-export",
        }
    }
    fn env_prefix(self) -> &'static str {
        match self {
            Service::Ingest => "AA_INGEST",
            Service::Enricher => "AA_ENRICHER",
            Service::Correlator => "AA_CORRELATOR",
            Service::Writer => "AA_WRITER",
            Service::Export => "AA_EXPORT",
        }
    }
}

/// A running service process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    /// Port of the ops endpoints (`/healthz`, `/readyz`, `/metrics`).
    pub ops_port: u16,
    /// HTTP port, for services that serve HTTP.
    pub port: Option<u16>,
    /// gRPC port, for services that serve gRPC.
    pub grpc_port: Option<u16>,
}

impl Proc {
    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.port.expect("service has no HTTP port")
        )
    }
    pub fn grpc_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.grpc_port.expect("service has no gRPC port")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Debug)]
pub struct Pipeline {
    pub ingest: Proc,
    pub enricher: Proc,
    pub correlator: Proc,
    pub writer: Proc,
}

/// Waits until `child` listens on every one of `ports`; the child's exit status if it exits
/// first.
fn wait_ports(
    child: &mut Child,
    ports: impl IntoIterator<Item = u16>,
) -> Result<(), std::process::ExitStatus> {
    let start = Instant::now();
    for port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().expect("waiting for a child") {
                return Err(status);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "port {port} did not open"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn wait_port(port: u16, timeout: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < timeout, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts JSON lines to ingest's native endpoint, retrying 503s; panics on other errors.
pub async fn post_events(http: &reqwest::Client, base: &str, token: &str, body: Vec<u8>) {
    let mut backoff = Duration::from_millis(100);
    for _ in 0..100 {
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) if resp.status().as_u16() == 503 => {}
            Ok(resp) => panic!(
                "ingest answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ),
            Err(_) => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    panic!("ingest kept failing");
}

/// A tansu broker of its own (the local stack's binary, its own port and data folder), for
/// tests that stop and restart the broker without disturbing other tests.
#[derive(Debug)]
pub struct PrivateBroker {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateBroker {
    fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("TANSU_BIN") {
            return PathBuf::from(p);
        }
        let cache = std::env::var("AA_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/activity-audit")
            });
        cache.join("tansu-0.6.0/bin/tansu")
    }

    pub fn start() -> PrivateBroker {
        let dir = std::env::temp_dir().join(unique("aat_broker"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = PrivateBroker {
            port: free_port(),
            dir,
            child: None,
        };
        b.launch();
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let child = Command::new(Self::binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting tansu (run deploy/local/install.sh)");
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(30));
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing answers — an unreachable
    /// broker, without losing any of its state.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Thaws a frozen broker (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// Kills the broker (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs a stage binary over the `n` events already on its input topic, until its metrics say
/// it handed them all on; returns its CPU time from when it was ready (not its start-up: the
/// enricher's first list of the clusters) and the wall time (benchmarks).
pub async fn drain_stage(
    world: &World,
    service: Service,
    n: usize,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Duration, Duration)> {
    drain_stage_split(world, service, n, extra)
        .await
        .map(|d| (d.cpu, d.wall))
}

/// What [`drain_stage_split`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    /// CPU time of the whole process from when it said it was ready (`/readyz`, polled every
    /// 10 ms: at most that much of its work is not counted).
    pub cpu: Duration,
    /// CPU time before it was ready (connecting; the enricher's first list of the clusters).
    pub startup: Duration,
    /// Of which librdkafka's own threads (`rdk:…`: broker I/O, which on a slow broker
    /// includes polling while it waits for acknowledgements).
    pub kafka_threads: Duration,
    pub wall: Duration,
}

/// [`drain_stage`], also splitting out the CPU time of librdkafka's threads.
pub async fn drain_stage_split(
    world: &World,
    service: Service,
    n: usize,
    extra: &[(&str, &str)],
) -> anyhow::Result<Drained> {
    bin_dir(); // built before the clock starts
    let t0 = Instant::now();
    let mut proc = world.spawn_with(service, extra);
    let listen = format!("127.0.0.1:{}", proc.ops_port);
    let pid = proc.child.id().to_string();
    let http = reqwest::Client::new();
    let stage = match service {
        Service::Enricher => "enricher",
        Service::Export => "export",
        _ => "correlator",
    };
    let metric = |body: &str, name: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("stage=\"{stage}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let (startup, kafka_startup) = loop {
        let ready = http.get(format!("http://{listen}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break (
                crate::cpu::cpu_time(&pid),
                crate::cpu::threads_cpu_time(&pid, "rdk:"),
            );
        }
        anyhow::ensure!(Instant::now() < deadline, "{stage} never got ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut last_out = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = match http.get(format!("http://{listen}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        let (i, o) = (
            metric(&body, "aa_events_in_total"),
            metric(&body, "aa_events_out_total"),
        );
        if i >= n as u64 && o >= n as u64 && o == last_out {
            break;
        }
        last_out = o;
        anyhow::ensure!(
            Instant::now() < deadline,
            "{stage} did not drain: in {i}, out {o} of {n}"
        );
    }
    let cpu = crate::cpu::cpu_time(&pid).saturating_sub(startup);
    let kafka_threads = crate::cpu::threads_cpu_time(&pid, "rdk:").saturating_sub(kafka_startup);
    let wall = t0.elapsed();
    proc.kill9();
    Ok(Drained {
        cpu,
        startup,
        kafka_threads,
        wall,
    })
}

/// Posts one scenario item to its ingest endpoint (an audit event inside an `EventList`),
/// retrying 503s; panics unless it is accepted.
pub async fn post_item(http: &reqwest::Client, base: &str, token: &str, input: &scenarios::Input) {
    let body = match input {
        scenarios::Input::Audit(v) => {
            serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [v]})
        }
        other => other.value().clone(),
    };
    for _ in 0..100 {
        let r = http
            .post(format!("{base}{}", input.endpoint()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                let v: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(v["accepted"], 1, "{v} for {body}");
                return;
            }
            Ok(resp) if resp.status().as_u16() == 503 => {}
            Ok(resp) => panic!(
                "ingest answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("ingest kept failing");
}

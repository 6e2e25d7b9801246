//! Export: `events` topic → SIEM topics in OCSF ([`ocsf`]) and ECS ([`ecs`]).
//!
//! Each configured export has a format, a topic — one for everyone, or one per tenant with
//! `{tenant}` in its name, so a SaaS tenant's SIEM reads only its own data — an optional filter
//! in the filter language, and optionally a list of tenants. Every event becomes one JSON
//! message per export it matches, keyed by the event id (stable across replays and retries,
//! so consumers deduplicate on it; a later `revision` of an event supersedes the earlier one)
//! and partitioned by the event's asset, so one pod's or host's activity stays in order.
//! Input offsets are stored only once every export record of a message is acknowledged
//! ([`pipeline::stage`]); a crash re-exports from the last commit, under the same keys.

pub mod ecs;
pub mod ocsf;

use pipeline::config::{KafkaConfig, OpsConfig};
use pipeline::kafka::{Bus, Outgoing, TopicSetup, TopicSpec};
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use pipeline::stage::{Emit, Emitted, PassThrough, StageConfig, open_message};
use prometheus::{IntCounterVec, register_int_counter_vec};
use rustc_hash::FxHashMap;
use schemas::ActivityEvent;
use schemas::filter::Expr;
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

pub const STAGE: &str = "export";

static RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_export_records_total",
        "Records (events) handed to the producer per export",
        &["export"]
    )
    .unwrap()
});
static FILTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_export_filtered_total",
        "Events an export's filter or tenant list left out",
        &["export"]
    )
    .unwrap()
});

/// A SIEM format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OCSF 1.8.0 ([`ocsf`]).
    Ocsf,
    /// Elastic Common Schema 8.11 ([`ecs`]).
    Ecs,
}

impl Format {
    /// Writes one event in this format.
    pub fn write(self, e: &ActivityEvent, cloud: &Cloud, out: &mut Vec<u8>) {
        match self {
            Format::Ocsf => ocsf::write(e, cloud, out),
            Format::Ecs => ecs::write(e, cloud, out),
        }
    }

    /// The `aa-format` header of its records.
    pub fn label(self) -> &'static str {
        match self {
            Format::Ocsf => "ocsf-1.8.0",
            Format::Ecs => "ecs-8.11.0",
        }
    }
}

/// How records are framed into Kafka messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// One event per message, keyed by the event id: what Kafka Connect sinks (Splunk,
    /// Elasticsearch, Sentinel connectors) and most SIEM inputs expect.
    #[default]
    Record,
    /// Events as JSON lines, up to ~900 KiB per message, one partition's events in order:
    /// for consumers that split lines (Vector, Logstash `json_lines`, Filebeat `ndjson`,
    /// Cribl) at high volume, where the per-message cost of the broker dominates.
    Ndjson,
}

/// One export (`[[exports]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// Name in metrics and logs.
    pub name: String,
    pub format: Format,
    /// Topic; `{tenant}` in it makes one topic per tenant (created on the tenant's first event).
    pub topic: String,
    /// Only events matching this filter (the query language); empty: all.
    #[serde(default)]
    pub filter: String,
    /// Only these tenants' events; empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub framing: Framing,
}

/// The cloud a cluster runs in, as SIEM schemas describe it (OCSF `cloud`, ECS `cloud.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cloud {
    /// `AWS`, `GCP`, `Azure`, …; `Kubernetes` for self-managed clusters (OCSF requires one).
    pub provider: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
}

impl Default for Cloud {
    fn default() -> Self {
        Cloud {
            provider: "Kubernetes".into(),
            region: String::new(),
            account: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Export stage configuration (`AA_EXPORT__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group: String,
    pub max_in_flight: usize,
    pub exports: Vec<ExportSpec>,
    /// Partitions, replication, retention of the export topics this stage creates.
    pub topic_setup: TopicSetup,
    /// Cloud of each cluster, keyed `tenant/cluster` or `cluster`; others get `default_cloud`.
    pub clouds: BTreeMap<String, Cloud>,
    pub default_cloud: Cloud,
    pub ops: OpsConfig,
}

impl Default for ExportConfig {
    fn default() -> Self {
        let s = StageConfig::named(STAGE, 9469);
        ExportConfig {
            kafka: s.kafka,
            topics: s.topics,
            group: s.group,
            // Each input message (up to ~2 000 events) becomes a record per event and export:
            // a bounded number in flight keeps them within the producer's queue (100 000
            // messages, 256 MiB), where a full queue would stall and retry whole batches.
            max_in_flight: 16,
            exports: vec![
                ExportSpec {
                    name: "ocsf".into(),
                    format: Format::Ocsf,
                    topic: "activity.export.ocsf.v1".into(),
                    filter: String::new(),
                    tenants: Vec::new(),
                    framing: Framing::Record,
                },
                ExportSpec {
                    name: "ecs".into(),
                    format: Format::Ecs,
                    topic: "activity.export.ecs.v1".into(),
                    filter: String::new(),
                    tenants: Vec::new(),
                    framing: Framing::Record,
                },
            ],
            topic_setup: TopicSetup::default(),
            clouds: BTreeMap::new(),
            default_cloud: Cloud::default(),
            ops: s.ops,
        }
    }
}

/// Whether `name` is a legal Kafka topic name.
fn legal_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The part of a per-tenant topic name that names `tenant`: the tenant itself when it is
/// legal in a topic name, else a cleaned-up form plus a hash of the original, so two tenants
/// never share a topic.
pub fn tenant_topic_part(tenant: &str) -> String {
    if legal_topic(tenant) && tenant.len() <= 180 {
        return tenant.to_string();
    }
    let clean: String = tenant
        .chars()
        .take(160)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{clean}-{:016x}",
        xxhash_rust::xxh3::xxh3_64(tenant.as_bytes())
    )
}

/// A compiled export.
#[derive(Debug)]
struct Route {
    spec: ExportSpec,
    filter: Option<Expr>,
    /// `{tenant}` is in the topic name.
    per_tenant: bool,
}

impl Route {
    fn topic(&self, tenant: &str) -> String {
        self.spec
            .topic
            .replace("{tenant}", &tenant_topic_part(tenant))
    }
}

impl ExportConfig {
    fn routes(&self) -> anyhow::Result<Vec<Route>> {
        if self.exports.is_empty() {
            anyhow::bail!("no [[exports]] configured");
        }
        let mut names = std::collections::HashSet::new();
        self.exports
            .iter()
            .map(|spec| {
                if !names.insert(&spec.name) {
                    anyhow::bail!("export {:?} is configured twice", spec.name);
                }
                let sample = spec.topic.replace("{tenant}", "t");
                if !legal_topic(&sample) {
                    anyhow::bail!(
                        "export {:?}: topic {:?} is not a legal Kafka topic name",
                        spec.name,
                        spec.topic
                    );
                }
                let filter = schemas::filter::parse(&spec.filter)
                    .map_err(|e| anyhow::anyhow!("export {:?}: filter: {e}", spec.name))?;
                Ok(Route {
                    spec: spec.clone(),
                    filter,
                    per_tenant: spec.topic.contains("{tenant}"),
                })
            })
            .collect()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        // OCSF requires `cloud.provider`.
        for (name, cloud) in std::iter::once(("default_cloud", &self.default_cloud))
            .chain(self.clouds.iter().map(|(k, c)| (k.as_str(), c)))
        {
            if cloud.provider.trim().is_empty() {
                anyhow::bail!("cloud {name:?}: provider must not be empty");
            }
        }
        self.routes().map(|_| ())
    }
}

/// An image reference (`registry:5000/team/app:1.2@sha256:…`) split into repository, tag and
/// digest; a registry port is not a tag.
pub(crate) fn image_parts(reference: &str) -> (&str, &str, &str) {
    let (name_tag, digest) = reference.split_once('@').unwrap_or((reference, ""));
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[slash..].rfind(':') {
        Some(i) => (&name_tag[..slash + i], &name_tag[slash + i + 1..], digest),
        None => (name_tag, "", digest),
    }
}

/// Milliseconds from nanoseconds (OCSF times).
pub(crate) fn ms(ns: i64) -> i64 {
    ns / 1_000_000
}

/// The last component of a path.
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// One line saying what happened, for SIEM list views. Built by appending (every exported
/// event has one; `format!` was a tenth of the encoder's time).
pub(crate) fn summary(e: &ActivityEvent) -> String {
    use schemas::ActivityType::*;
    let mut s = String::with_capacity(160);
    let mut port = itoa::Buffer::new();
    let mut add = |parts: &[&str]| parts.iter().for_each(|p| s.push_str(p));
    match e.kind {
        Command => {
            let who = if e.username.is_empty() {
                "a user"
            } else {
                &e.username
            };
            let what = if e.cmdline.is_empty() {
                &e.comm
            } else {
                &e.cmdline
            };
            add(&[who, " ran ", what, " on "]);
        }
        Connection => {
            add(&[
                &e.comm,
                " connected ",
                &e.client_ip,
                ":",
                port.format(e.client_port),
            ]);
            add(&[" -> ", &e.server_ip, ":", port.format(e.server_port)]);
            add(&[" (", &e.direction, ") on "]);
        }
        Fileaccess => add(&[
            &e.comm,
            " opened ",
            &e.filename,
            " (",
            &e.permissions,
            ") on ",
        ]),
        Kubernetes => add(&[
            &e.user_name,
            " ",
            &e.verb,
            " ",
            &e.resource,
            "/",
            &e.sub_resource,
            " ",
        ]),
    }
    if e.pod.is_empty() {
        add(&[&e.hostname]);
    } else {
        add(&[&e.namespace, "/", &e.pod]);
    }
    if e.kind == Kubernetes && !e.command.is_empty() {
        add(&[": ", &e.command]);
    }
    s
}

/// Encodes events as export records and makes sure their topics exist.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

struct Inner {
    routes: Vec<Route>,
    bus: Bus,
    kafka: KafkaConfig,
    spec: TopicSpec,
    clouds: BTreeMap<String, Cloud>,
    default_cloud: Cloud,
    /// Export topics created (or found) by this process; their partition counts are in the
    /// bus's cache.
    ensured: Mutex<HashSet<String>>,
}

impl Exporter {
    /// Validates the exports and creates their fixed (not per-tenant) topics.
    pub async fn new(bus: Bus, cfg: &ExportConfig) -> anyhow::Result<Self> {
        let routes = cfg.routes()?;
        let spec = cfg.topic_setup.topic_spec(cfg.topic_setup.retention_hours);
        let this = Exporter {
            inner: Arc::new(Inner {
                routes,
                bus,
                kafka: cfg.kafka.clone(),
                spec,
                clouds: cfg.clouds.clone(),
                default_cloud: cfg.default_cloud.clone(),
                ensured: Mutex::default(),
            }),
        };
        let fixed: Vec<String> = this
            .inner
            .routes
            .iter()
            .filter(|r| !r.per_tenant)
            .map(|r| r.spec.topic.clone())
            .collect();
        this.inner.ensure(&fixed).await?;
        Ok(this)
    }
}

impl Inner {
    fn cloud(&self, e: &ActivityEvent) -> &Cloud {
        if self.clouds.is_empty() {
            return &self.default_cloud;
        }
        self.clouds
            .get(&format!("{}/{}", e.tenant, e.cluster))
            .or_else(|| self.clouds.get(&e.cluster))
            .unwrap_or(&self.default_cloud)
    }

    /// Creates the topics not ensured yet (idempotent: existing ones are left as they are)
    /// and waits until the broker's metadata shows them.
    async fn ensure(&self, topics: &[String]) -> anyhow::Result<()> {
        let missing: Vec<(String, TopicSpec)> = {
            let ensured = self.ensured.lock().unwrap();
            // Two exports may share a topic: each name once.
            let names: std::collections::BTreeSet<&String> =
                topics.iter().filter(|t| !ensured.contains(*t)).collect();
            names
                .into_iter()
                .map(|t| (t.clone(), self.spec.clone()))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        pipeline::kafka::create_topics(&self.kafka, &missing).await?;
        for (t, _) in &missing {
            // A topic just created may take a moment to appear in metadata.
            let mut tries = 0;
            let n = loop {
                match self.bus.partitions(t).await {
                    Ok(n) => break n,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        tracing::debug!(topic = %t, error = %e, "waiting for a new topic");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            tracing::info!(topic = %t, partitions = n, "export topic ready");
            self.ensured.lock().unwrap().insert(t.clone());
        }
        Ok(())
    }
}

/// Which export each event goes to, and where.
struct Plan {
    /// Distinct topics of this message's records.
    topics: Vec<String>,
    /// (event index, export index, topic index), in event order.
    items: Vec<(usize, usize, usize)>,
}

impl Exporter {
    /// Applies each export's tenants and filter and names the topics (one per export, or per
    /// export and tenant).
    fn plan(&self, events: &[ActivityEvent]) -> Plan {
        let routes = &self.inner.routes;
        let mut topics: Vec<String> = Vec::new();
        // Looked up per event and export: a fast hash (the keys are ours, not an attacker's
        // choice: a tenant is stamped by ingest from its token).
        let mut slots: FxHashMap<(usize, &str), usize> = FxHashMap::default();
        let mut items = Vec::with_capacity(events.len() * routes.len());
        let mut filtered = vec![0u64; routes.len()];
        for (ei, e) in events.iter().enumerate() {
            for (ri, r) in routes.iter().enumerate() {
                let admitted = (r.spec.tenants.is_empty() || r.spec.tenants.contains(&e.tenant))
                    && r.filter.as_ref().is_none_or(|f| f.matches(e));
                if !admitted {
                    filtered[ri] += 1;
                    continue;
                }
                let tenant = if r.per_tenant { e.tenant.as_str() } else { "" };
                let ti = *slots.entry((ri, tenant)).or_insert_with(|| {
                    topics.push(r.topic(&e.tenant));
                    topics.len() - 1
                });
                items.push((ei, ri, ti));
            }
        }
        for (ri, n) in filtered.into_iter().enumerate() {
            if n > 0 {
                FILTERED
                    .with_label_values(&[&routes[ri].spec.name])
                    .inc_by(n);
            }
        }
        Plan { topics, items }
    }

    /// Encodes the planned records straight into Kafka messages of their export's framing,
    /// on the partition of each event's partition key.
    /// `out` holds the records of the message's earlier chunks: their open ndjson messages
    /// are filled up first.
    fn encode(
        &self,
        events: &[ActivityEvent],
        plan: &Plan,
        partitions: &[i32],
        mut out: Vec<Outgoing>,
    ) -> Vec<Outgoing> {
        let routes = &self.inner.routes;
        out.reserve(plan.items.len());
        let mut counts = vec![0u64; routes.len()];
        // ndjson: the message being filled per (export, topic, partition).
        let mut open: FxHashMap<(usize, usize, i32), usize> = FxHashMap::default();
        // Items come in event order: the cloud of the current event.
        let mut current: Option<(usize, &Cloud)> = None;
        for &(ei, ri, ti) in &plan.items {
            let e = &events[ei];
            let spec = &routes[ri].spec;
            if current.is_none_or(|c| c.0 != ei) {
                current = Some((ei, self.inner.cloud(e)));
            }
            let cloud = current.expect("set above").1;
            let partition = schemas::topics::partition_of(e, partitions[ti]);
            counts[ri] += 1;
            match spec.framing {
                Framing::Record => {
                    let mut payload = Vec::with_capacity(2048);
                    spec.format.write(e, cloud, &mut payload);
                    out.push(Outgoing {
                        topic: plan.topics[ti].clone(),
                        partition: Some(partition),
                        key: e.id.clone(),
                        payload,
                        headers: vec![
                            ("content-type", "application/json".to_string()),
                            ("aa-format", spec.format.label().to_string()),
                            (schemas::topics::dlq_headers::TENANT, e.tenant.clone()),
                        ],
                    });
                }
                Framing::Ndjson => {
                    let slot = (ri, ti, partition);
                    let i = match open.get(&slot) {
                        Some(&i) => i,
                        None => {
                            // An earlier chunk's message of this slot, else a new one.
                            let next = self.ndjson_message(ri, &plan.topics[ti], partition, e);
                            let i = open_message(&mut out, next);
                            open.insert(slot, i);
                            i
                        }
                    };
                    let buf = &mut out[i].payload;
                    if buf.capacity() == 0 {
                        buf.reserve(schemas::batch::MESSAGE_CAPACITY);
                    }
                    let start = buf.len();
                    spec.format.write(e, cloud, buf);
                    buf.push(b'\n');
                    if buf.len() > schemas::batch::MAX_MESSAGE_BYTES && start > 0 {
                        // Full: this line starts the next message.
                        let line = buf.split_off(start);
                        let mut next = self.ndjson_message(ri, &plan.topics[ti], partition, e);
                        next.payload.reserve(schemas::batch::MESSAGE_CAPACITY);
                        next.payload.extend_from_slice(&line);
                        out.push(next);
                        open.insert(slot, out.len() - 1);
                    }
                }
            }
        }
        for (ri, n) in counts.into_iter().enumerate() {
            if n > 0 {
                RECORDS
                    .with_label_values(&[&routes[ri].spec.name])
                    .inc_by(n);
            }
        }
        out
    }

    fn ndjson_message(
        &self,
        route: usize,
        topic: &str,
        partition: i32,
        e: &ActivityEvent,
    ) -> Outgoing {
        let r = &self.inner.routes[route];
        let mut headers = vec![
            ("content-type", schemas::batch::CONTENT_TYPE.to_string()),
            ("aa-format", r.spec.format.label().to_string()),
        ];
        if r.per_tenant {
            headers.push((schemas::topics::dlq_headers::TENANT, e.tenant.clone()));
        }
        Outgoing {
            topic: topic.to_string(),
            partition: Some(partition),
            key: String::new(),
            payload: Vec::new(),
            headers,
        }
    }
}

impl Emit for Exporter {
    fn emit(&self, events: Vec<ActivityEvent>, out: Vec<Outgoing>) -> Emitted {
        let this = self.clone();
        Box::pin(async move {
            let plan = this.plan(&events);
            let mut backoff = Duration::from_millis(200);
            let partitions = loop {
                let counted = async {
                    this.inner.ensure(&plan.topics).await?;
                    let mut counts = Vec::with_capacity(plan.topics.len());
                    for t in &plan.topics {
                        counts.push(this.inner.bus.partitions(t).await?);
                    }
                    anyhow::Ok(counts)
                };
                match counted.await {
                    Ok(counts) => break counts,
                    Err(e) => {
                        tracing::warn!(error = %e, "creating export topics failed, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            };
            (this.encode(&events, &plan, &partitions, out), events)
        })
    }
}

/// Runs the export stage until `shutdown`.
pub async fn run(cfg: ExportConfig, ready: Readiness, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.validate()?;
    let stage = StageConfig {
        kafka: cfg.kafka.clone(),
        topics: cfg.topics.clone(),
        group: cfg.group.clone(),
        max_in_flight: cfg.max_in_flight,
        ops: cfg.ops.clone(),
    };
    tracing::info!(exports = cfg.exports.len(), "export stage configured");
    let input = cfg.topics.events.clone();
    pipeline::stage::serve(
        &stage,
        STAGE,
        &input,
        |bus| async move { Exporter::new(bus, &cfg).await },
        PassThrough,
        ready,
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_topics_are_legal_and_distinct() {
        assert_eq!(tenant_topic_part("acme-prod"), "acme-prod");
        let a = tenant_topic_part("acme/prod");
        let b = tenant_topic_part("acme_prod");
        assert_ne!(a, b, "cleaning up must not merge tenants");
        assert!(legal_topic(&a), "{a}");
        let long = "x".repeat(400);
        assert!(legal_topic(&tenant_topic_part(&long)));
        assert!(legal_topic(&tenant_topic_part("ünïcode tenant")));
    }

    #[test]
    fn bad_exports_are_named() {
        let mut cfg = ExportConfig::default();
        cfg.exports[0].filter = "comn = bash".into();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("\"ocsf\"") && e.contains("did you mean"), "{e}");
        let mut cfg = ExportConfig::default();
        cfg.exports[1].topic = "siem/{tenant}".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("topic"));
        let mut cfg = ExportConfig::default();
        cfg.exports[1].name = "ocsf".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("twice"));
        assert!(ExportConfig::default().validate().is_ok());
        let mut cfg = ExportConfig::default();
        cfg.clouds.insert(
            "prod-eu".into(),
            Cloud {
                provider: String::new(),
                ..Default::default()
            },
        );
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("prod-eu") && e.contains("provider"), "{e}");
    }

    #[test]
    fn names_and_summaries() {
        assert_eq!(basename("/etc/shadow"), "shadow");
        assert_eq!(
            image_parts("registry:5000/team/app:1.2@sha256:abc"),
            ("registry:5000/team/app", "1.2", "sha256:abc")
        );
        assert_eq!(
            image_parts("registry:5000/app"),
            ("registry:5000/app", "", "")
        );
        assert_eq!(image_parts("nginx:1.25"), ("nginx", "1.25", ""));
        assert_eq!(basename("/usr/bin/"), "bin");
        assert_eq!(ms(1_700_000_000_123_456_789), 1_700_000_000_123);
        let e = ActivityEvent {
            kind: schemas::ActivityType::Kubernetes,
            user_name: "alice".into(),
            verb: "create".into(),
            resource: "pods".into(),
            sub_resource: "exec".into(),
            namespace: "shop".into(),
            pod: "web-1".into(),
            command: "bash".into(),
            ..Default::default()
        };
        assert_eq!(summary(&e), "alice create pods/exec shop/web-1: bash");
        let on_host = |kind| ActivityEvent {
            kind,
            hostname: "node-1".into(),
            comm: "curl".into(),
            ..Default::default()
        };
        let mut c = on_host(schemas::ActivityType::Command);
        assert_eq!(summary(&c), "a user ran curl on node-1");
        (c.username, c.cmdline) = ("root".into(), "curl -s x".into());
        assert_eq!(summary(&c), "root ran curl -s x on node-1");
        let n = ActivityEvent {
            client_ip: "10.0.0.1".into(),
            client_port: 40000,
            server_ip: "1.1.1.1".into(),
            server_port: 443,
            direction: "outbound".into(),
            ..on_host(schemas::ActivityType::Connection)
        };
        assert_eq!(
            summary(&n),
            "curl connected 10.0.0.1:40000 -> 1.1.1.1:443 (outbound) on node-1"
        );
        let f = ActivityEvent {
            filename: "/etc/shadow".into(),
            permissions: "r".into(),
            ..on_host(schemas::ActivityType::Fileaccess)
        };
        assert_eq!(summary(&f), "curl opened /etc/shadow (r) on node-1");
        let kube_get = ActivityEvent {
            command: String::new(),
            verb: "get".into(),
            ..e
        };
        assert_eq!(summary(&kube_get), "alice get pods/exec shop/web-1");
    }
}

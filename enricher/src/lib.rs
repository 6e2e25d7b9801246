//! Enricher: `raw` topic → Kubernetes asset metadata → `enriched` topic.
//!
//! For every event of a configured cluster it fills namespace, workload (Deployment through
//! its ReplicaSet, CronJob through its Job, StatefulSet, DaemonSet, …), pod, container name,
//! id and image, node and hostname from the Kubernetes API ([`watch`] keeps a compact copy
//! per cluster, [`meta`]); API values win over what the agent reported. An event about a pod
//! or container the API does not know yet (a process exec'd in a container's first moments)
//! waits a bounded time for the watchers, without holding back later messages, then goes on
//! with what the agent provided, flagged `enrichment = "partial"`. Pod and namespace labels
//! (`key=value`, without per-replica ones such as `pod-template-hash`) are copied too.
//! Enriched events are re-keyed by pod, so a pod's audit and agent events reach the same
//! correlator partition.

pub mod meta;
pub mod watch;

use pipeline::config::{KafkaConfig, OpsConfig};
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use pipeline::stage::{EventBatches, StageConfig, Transform, Transformed};
use schemas::ActivityEvent;
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use watch::{ClusterConfig, Stores};

pub const STAGE: &str = "enricher";

/// Enricher configuration (`AA_ENRICHER__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnricherConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group: String,
    pub max_in_flight: usize,
    /// Clusters whose API to watch (`[[clusters]]`: tenant, name, kubeconfig, context).
    pub clusters: Vec<ClusterConfig>,
    /// How long an event about an unknown pod/container waits for the API, ms.
    pub wait_ms: u64,
    /// How long deleted objects are kept for late events, ms.
    pub deleted_grace_ms: u64,
    /// How long the stage waits at start for every cluster's first pod list before it reads
    /// events, ms (events read before would go on partially enriched; a cluster still
    /// unreachable then is logged, and its events go on partially enriched until it answers).
    pub list_wait_ms: u64,
    /// Pod and namespace label keys not copied onto events: the ones that differ between
    /// replicas of one workload (hashes, uids, indexes) by default.
    pub drop_labels: Vec<String>,
    pub ops: OpsConfig,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        let s = StageConfig::named(STAGE, 9439);
        EnricherConfig {
            kafka: s.kafka,
            topics: s.topics,
            group: s.group,
            max_in_flight: s.max_in_flight,
            clusters: Vec::new(),
            wait_ms: 2_000,
            deleted_grace_ms: 300_000,
            list_wait_ms: 30_000,
            drop_labels: meta::DEFAULT_DROPPED_LABELS
                .iter()
                .map(|k| k.to_string())
                .collect(),
            ops: s.ops,
        }
    }
}

impl EnricherConfig {
    fn stage(&self) -> StageConfig {
        StageConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            group: self.group.clone(),
            max_in_flight: self.max_in_flight,
            ops: self.ops.clone(),
        }
    }
}

/// The enrichment transform over the clusters' stores.
#[derive(Clone)]
pub struct Enrich {
    pub stores: Stores,
    pub wait: Duration,
}

impl Enrich {
    /// Enriches what the stores know now; returns the indexes still unknown.
    fn pass(&self, events: &mut [ActivityEvent], idx: &[usize]) -> Vec<usize> {
        let mut missing = Vec::new();
        let mut rest = idx;
        while let Some((&first, _)) = rest.split_first() {
            // A run of events of one cluster (a message holds one partition's events: mostly
            // one cluster's) under one look-up and one read lock.
            let (tenant, cluster) = (&events[first].tenant, &events[first].cluster);
            let run = rest
                .iter()
                .position(|&i| events[i].tenant != *tenant || events[i].cluster != *cluster)
                .unwrap_or(rest.len());
            let (this, next) = rest.split_at(run);
            rest = next;
            let Some(store) = self.stores.get(tenant, cluster) else {
                continue;
            };
            let meta = store.meta.read().unwrap_or_else(|p| p.into_inner());
            for &i in this {
                let e = &mut events[i];
                if !meta.enrich(e) {
                    if store.pods_synced() {
                        missing.push(i);
                    } else {
                        // The cluster's API is not (yet) reachable: no point waiting.
                        e.enrichment = "partial".into();
                    }
                }
            }
        }
        missing
    }
}

impl Transform for Enrich {
    fn apply(&mut self, mut events: Vec<ActivityEvent>) -> Transformed {
        let all: Vec<usize> = (0..events.len()).collect();
        let missing = self.pass(&mut events, &all);
        if missing.is_empty() {
            return Box::pin(std::future::ready(events));
        }
        let this = self.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + this.wait;
            let mut missing = missing;
            while !missing.is_empty() {
                // Wake on any change of the clusters involved, or at the deadline.
                let stores: Vec<_> = missing
                    .iter()
                    .filter_map(|&i| {
                        let e = &events[i];
                        this.stores.get(&e.tenant, &e.cluster).cloned()
                    })
                    .collect();
                let changed = futures::future::select_all(
                    stores.iter().map(|s| Box::pin(s.changed.notified())),
                );
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    break;
                }
                missing = this.pass(&mut events, &missing);
            }
            for i in missing {
                events[i].enrichment = "partial".into();
            }
            events
        })
    }
}

/// Waits until every cluster's pods were listed once, at most `limit` (or until shutdown),
/// as a controller waits for its caches: events read before would go on partially enriched.
async fn listed(stores: &Stores, limit: Duration, shutdown: &Shutdown) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let waiting: Vec<String> = stores
            .iter()
            .filter(|(_, _, s)| !s.pods_synced())
            .map(|(tenant, cluster, _)| format!("{tenant}/{cluster}"))
            .collect();
        if waiting.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
            tracing::warn!(
                ?waiting,
                "clusters not listed yet: their events go on partially enriched until they are"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(cfg: EnricherConfig, ready: Readiness, shutdown: Shutdown) -> anyhow::Result<()> {
    let (stores, tasks) = watch::start(
        &cfg.clusters,
        Duration::from_millis(cfg.deleted_grace_ms),
        &cfg.drop_labels,
    );
    tracing::info!(
        clusters = cfg.clusters.len(),
        "enricher clusters configured"
    );
    listed(&stores, Duration::from_millis(cfg.list_wait_ms), &shutdown).await;
    let transform = Enrich {
        stores,
        wait: Duration::from_millis(cfg.wait_ms),
    };
    let stage = cfg.stage();
    let output = stage.topics.enriched.clone();
    let r = pipeline::stage::serve(
        &stage,
        STAGE,
        &stage.topics.raw,
        |bus| async move { EventBatches::new(&bus, &output).await },
        transform,
        ready,
        shutdown,
    )
    .await;
    for t in tasks {
        t.abort();
    }
    r
}

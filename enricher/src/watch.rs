//! Kubernetes API watchers: for every configured cluster, list+watch Pods and Nodes, and the
//! metadata only (`PartialObjectMetadata`: owner and labels, not specs) of Namespaces,
//! ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs and CronJobs, with `kube`'s
//! watcher (re-list on restarts, backoff on errors) into that cluster's [`Store`]. A cluster
//! that is unreachable keeps retrying and never holds up the others; each store says whether
//! its initial lists completed.

use crate::meta::{ClusterMeta, Kind};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A cluster to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Tenant the cluster belongs to (as in the ingest token).
    pub tenant: String,
    /// Cluster name (as in the ingest token: `kubernetes.cluster.name`).
    pub name: String,
    /// Kubeconfig file; absent: in-cluster service account credentials.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the file's current context).
    #[serde(default)]
    pub context: Option<String>,
}

/// One cluster's metadata and who waits for it.
#[derive(Debug, Default)]
pub struct Store {
    pub meta: RwLock<ClusterMeta>,
    /// Woken on every change (events waiting for metadata re-check).
    pub changed: Notify,
    /// Bit per kind whose initial list completed.
    synced: AtomicU16,
}

fn bit(kind: Kind) -> u16 {
    1 << kind as u16
}

impl Store {
    pub fn new(mut meta: ClusterMeta) -> Self {
        meta.refresh();
        Store {
            meta: RwLock::new(meta),
            ..Default::default()
        }
    }
    /// Whether every watcher listed its objects at least once.
    pub fn synced(&self) -> bool {
        let all = Kind::ALL.into_iter().fold(0, |b, k| b | bit(k));
        self.synced.load(Ordering::Acquire) == all
    }
    /// Whether pods were listed at least once (enough to enrich).
    pub fn pods_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire) & bit(Kind::Pod) != 0
    }
}

/// The stores of all configured clusters, by tenant and cluster (looked up per event, without
/// building a key).
#[derive(Clone, Default)]
pub struct Stores(Arc<HashMap<String, HashMap<String, Arc<Store>>>>);

impl Stores {
    pub fn new(stores: impl IntoIterator<Item = ((String, String), Arc<Store>)>) -> Self {
        let mut by_tenant: HashMap<String, HashMap<String, Arc<Store>>> = HashMap::new();
        for ((tenant, cluster), store) in stores {
            by_tenant.entry(tenant).or_default().insert(cluster, store);
        }
        Stores(Arc::new(by_tenant))
    }

    pub fn get(&self, tenant: &str, cluster: &str) -> Option<&Arc<Store>> {
        self.0.get(tenant)?.get(cluster)
    }

    /// Every store, with its tenant and cluster.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Arc<Store>)> {
        self.0.iter().flat_map(|(tenant, clusters)| {
            clusters
                .iter()
                .map(move |(cluster, store)| (tenant.as_str(), cluster.as_str(), store))
        })
    }
}

/// Builds a client for a cluster from its kubeconfig (or in-cluster credentials).
pub async fn client(c: &ClusterConfig) -> anyhow::Result<Client> {
    let config = match &c.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            let opts = kube::config::KubeConfigOptions {
                context: c.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None => kube::Config::incluster()?,
    };
    Ok(Client::try_from(config)?)
}

/// Starts the watchers of every cluster; they run until the returned handles are dropped or
/// aborted. A cluster whose client cannot be built retries with backoff.
pub fn start(
    clusters: &[ClusterConfig],
    grace: Duration,
    dropped_labels: &[String],
) -> (Stores, Vec<tokio::task::JoinHandle<()>>) {
    let mut stores = Vec::new();
    let mut tasks = Vec::new();
    for c in clusters {
        let store = Arc::new(Store::new(ClusterMeta::dropping_labels(dropped_labels)));
        stores.push(((c.tenant.clone(), c.name.clone()), store.clone()));
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            let client = loop {
                match client(&c).await {
                    Ok(cl) => break cl,
                    Err(e) => {
                        tracing::warn!(cluster = %c.name, tenant = %c.tenant, error = %e, "kubernetes client, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            };
            tracing::info!(cluster = %c.name, tenant = %c.tenant, "watching the kubernetes API");
            let (cluster, client, s) = (c.name.as_str(), &client, &store);
            tokio::join!(
                watch(cluster, Api::<Pod>::all(client.clone()), Kind::Pod, s, grace, |m, p| m.apply_pod(p)),
                watch(cluster, Api::<Node>::all(client.clone()), Kind::Node, s, grace, |m, n| m.apply_node(n)),
                watch(cluster, Api::<PartialObjectMeta<Namespace>>::all(client.clone()), Kind::Namespace, s, grace, |m, o| m.apply_namespace(&o.metadata)),
                controllers::<ReplicaSet>(cluster, client, Kind::ReplicaSet, s, grace),
                controllers::<Deployment>(cluster, client, Kind::Deployment, s, grace),
                controllers::<StatefulSet>(cluster, client, Kind::StatefulSet, s, grace),
                controllers::<DaemonSet>(cluster, client, Kind::DaemonSet, s, grace),
                controllers::<Job>(cluster, client, Kind::Job, s, grace),
                controllers::<CronJob>(cluster, client, Kind::CronJob, s, grace),
            );
        }));
    }
    (Stores::new(stores), tasks)
}

/// What kube's watcher needs of an object type.
trait Watchable:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static
{
}

impl<K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static> Watchable
    for K
{
}

/// Watches the metadata of one kind of controller.
async fn controllers<K: Watchable>(
    cluster: &str,
    client: &Client,
    kind: Kind,
    store: &Store,
    grace: Duration,
) {
    let api = Api::<PartialObjectMeta<K>>::all(client.clone());
    watch(cluster, api, kind, store, grace, |m, o| {
        m.apply_controller(kind, &o.metadata)
    })
    .await;
}

/// Runs one kind's watcher into the store, forever. `kind` must name `K` (checked: the
/// store's sync bits and the RBAC check in the tests go by `kind`).
async fn watch<K: Watchable>(
    cluster: &str,
    api: Api<K>,
    kind: Kind,
    store: &Store,
    grace: Duration,
    apply: impl Fn(&mut ClusterMeta, &K),
) {
    assert_eq!(K::kind(&()), kind.name(), "watcher of the wrong kind");
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    consume(cluster, stream, kind, store, grace, apply).await;
}

/// Applies a watcher's events to the store (separate from the client for tests).
pub async fn consume<K, S>(
    cluster: &str,
    stream: S,
    kind: Kind,
    store: &Store,
    grace: Duration,
    apply: impl Fn(&mut ClusterMeta, &K),
) where
    K: Resource + Clone,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut listing: Vec<(String, String)> = Vec::new();
    let mut last_sweep = Instant::now();
    while let Some(ev) = stream.next().await {
        let now = Instant::now();
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(cluster, ?kind, error = %e, "watch failed, retrying with backoff");
                continue;
            }
        };
        // One write lock per watch event: the change, the sweep when due, and the refresh.
        let mut meta = store.meta.write().unwrap_or_else(|p| p.into_inner());
        let mut listed = false;
        match ev {
            Event::Init => listing.clear(),
            Event::InitApply(o) => {
                let m = o.meta();
                listing.push((
                    m.namespace.clone().unwrap_or_default(),
                    m.name.clone().unwrap_or_default(),
                ));
                apply(&mut meta, &o);
            }
            Event::InitDone => {
                meta.relisted(kind, &listing, now);
                listing.clear();
                listed = true;
            }
            Event::Apply(o) => apply(&mut meta, &o),
            Event::Delete(o) => {
                let m = o.meta();
                meta.delete(
                    kind,
                    m.namespace.as_deref(),
                    m.name.as_deref().unwrap_or(""),
                    now,
                );
            }
        }
        if now.duration_since(last_sweep) > Duration::from_secs(10) {
            last_sweep = now;
            meta.sweep(now, grace);
        }
        // Assets are resolved again after each change, and once at the end of a listing.
        if listing.is_empty() {
            meta.refresh();
        }
        drop(meta);
        if listed {
            store.synced.fetch_or(bit(kind), Ordering::AcqRel);
            tracing::info!(cluster, ?kind, "listed");
        }
        store.changed.notify_waiters();
    }
}

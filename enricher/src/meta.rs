//! What the enricher knows of one cluster, kept compact (only the fields events need, not the
//! API objects): pods with their containers, labels, owner and node; the controllers that own
//! pods (ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs: only who controls
//! each, to walk Pod -> ReplicaSet -> Deployment and Pod -> Job -> CronJob); namespaces' labels;
//! nodes' hostnames.
//!
//! Deleted objects stay for a grace period, so late agent events about a pod that just went
//! away are still enriched. A re-list (watch restart) that no longer contains an object counts
//! as its deletion. Names and labels many pods share are interned, and forgotten with the last
//! object that used them: memory follows the live objects.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use schemas::ActivityEvent;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A container of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    /// Runtime id without the `containerd://` scheme (empty until the kubelet reports it).
    pub id: String,
    pub image: String,
    /// `id`'s short form, inline.
    short: ShortId,
}

/// The first 12 bytes of a container id (Docker's short form), zero-padded when shorter: kept
/// inline in the index, so a look-up compares bytes without following a pointer.
type ShortId = [u8; 12];

fn short_id(id: &str) -> ShortId {
    let mut k = [0; 12];
    let n = id.len().min(12);
    k[..n].copy_from_slice(&id.as_bytes()[..n]);
    k
}

/// An object's controlling owner: (kind, name).
type Owner = Option<(Arc<str>, Arc<str>)>;

/// What events need of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodMeta {
    pub namespace: Arc<str>,
    pub name: String,
    pub node: Arc<str>,
    pub owner: Owner,
    /// `key=value`, sorted, without the per-replica labels the config drops.
    pub labels: Vec<Arc<str>>,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone)]
struct Kept<T> {
    value: T,
    deleted: Option<Instant>,
}

impl<T> Kept<T> {
    fn live(value: T) -> Self {
        Kept {
            value,
            deleted: None,
        }
    }
}

/// Labels that differ between replicas of one workload (hashes, uids, indexes): they would
/// only add bytes to every stored event. Configurable (`drop_labels`).
pub const DEFAULT_DROPPED_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/job-completion-index",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
];

/// One cluster's metadata.
#[derive(Debug, Default)]
pub struct ClusterMeta {
    pods: HashMap<(Arc<str>, String), Kept<Arc<PodMeta>>>,
    /// Container id (its short form) -> the pod, shared with `pods`: one look-up per event.
    containers: HashMap<ShortId, Arc<PodMeta>>,
    /// Controllers by (kind, namespace, name) -> their own controlling owner.
    controllers: HashMap<(Kind, Arc<str>, Arc<str>), Kept<Owner>>,
    /// Namespace -> its labels.
    namespaces: HashMap<Arc<str>, Kept<Vec<Arc<str>>>>,
    /// Node name -> hostname.
    nodes: HashMap<String, Kept<String>>,
    /// Interned namespace, node, owner and kind names and labels (many pods share them).
    names: HashSet<Arc<str>>,
    /// Label keys not kept.
    dropped_labels: Arc<HashSet<String>>,
}

fn controller(refs: Option<&Vec<OwnerReference>>) -> Option<(&str, &str)> {
    let refs = refs?;
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
        .map(|r| (r.kind.as_str(), r.name.as_str()))
}

/// `containerd://abc…` -> `abc…`.
fn runtime_id(id: &str) -> &str {
    id.split_once("://").map(|(_, i)| i).unwrap_or(id)
}

/// Which kind of object a watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    Node,
    Namespace,
    ReplicaSet,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Pod,
        Kind::Node,
        Kind::Namespace,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    /// The kind's API type: its kind name (as owner references say it), API group and
    /// resource (what the enricher's RBAC role must allow to list and watch).
    pub fn api(self) -> (&'static str, &'static str, &'static str) {
        fn of<K: k8s_openapi::Resource>() -> (&'static str, &'static str, &'static str) {
            (K::KIND, K::GROUP, K::URL_PATH_SEGMENT)
        }
        match self {
            Kind::Pod => of::<Pod>(),
            Kind::Node => of::<Node>(),
            Kind::Namespace => of::<Namespace>(),
            Kind::ReplicaSet => of::<ReplicaSet>(),
            Kind::Deployment => of::<Deployment>(),
            Kind::StatefulSet => of::<StatefulSet>(),
            Kind::DaemonSet => of::<DaemonSet>(),
            Kind::Job => of::<Job>(),
            Kind::CronJob => of::<CronJob>(),
        }
    }

    /// The Kubernetes kind name (as in owner references).
    pub fn name(self) -> &'static str {
        self.api().0
    }
}

impl ClusterMeta {
    /// Metadata that does not keep labels with these keys.
    pub fn dropping_labels<S: AsRef<str>>(keys: &[S]) -> Self {
        ClusterMeta {
            dropped_labels: Arc::new(keys.iter().map(|k| k.as_ref().to_string()).collect()),
            ..Default::default()
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(a.clone());
        a
    }

    fn labels(&mut self, labels: Option<&BTreeMap<String, String>>) -> Vec<Arc<str>> {
        let Some(labels) = labels else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(labels.len());
        let mut kv = String::new();
        // BTreeMap: already sorted by key.
        for (k, v) in labels {
            if self.dropped_labels.contains(k) {
                continue;
            }
            kv.clear();
            kv.push_str(k);
            kv.push('=');
            kv.push_str(v);
            out.push(self.intern(&kv));
        }
        out
    }

    fn owner(&mut self, meta: &ObjectMeta) -> Owner {
        let (k, n) = controller(meta.owner_references.as_ref())?;
        Some((self.intern(k), self.intern(n)))
    }

    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Estimated heap bytes: every map entry (with the hash table's control bytes and load
    /// factor) plus the strings and vectors it owns; interned names and labels once.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        fn table<K, V>(n: usize) -> usize {
            n * 8 / 7 * (size_of::<K>() + size_of::<V>() + 1)
        }
        let pods = table::<(Arc<str>, String), Kept<Arc<PodMeta>>>(self.pods.len())
            + self
                .pods
                .iter()
                .map(|((_, n), p)| {
                    let v = &p.value;
                    // The shared `Arc<PodMeta>`: two counts and the struct.
                    n.capacity()
                        + 16
                        + size_of::<PodMeta>()
                        + v.name.capacity()
                        + v.labels.capacity() * size_of::<Arc<str>>()
                        + v.containers.capacity() * size_of::<Container>()
                        + v.containers
                            .iter()
                            .map(|c| c.name.capacity() + c.id.capacity() + c.image.capacity())
                            .sum::<usize>()
                })
                .sum::<usize>();
        let containers = table::<ShortId, Arc<PodMeta>>(self.containers.len());
        let controllers = table::<(Kind, Arc<str>, Arc<str>), Kept<Owner>>(self.controllers.len());
        let namespaces = table::<Arc<str>, Kept<Vec<Arc<str>>>>(self.namespaces.len())
            + self
                .namespaces
                .values()
                .map(|l| l.value.capacity() * size_of::<Arc<str>>())
                .sum::<usize>();
        let nodes = table::<String, Kept<String>>(self.nodes.len())
            + self
                .nodes
                .iter()
                .map(|(k, v)| k.capacity() + v.value.capacity())
                .sum::<usize>();
        // An `Arc<str>` allocation: two counts and the bytes.
        let names = table::<Arc<str>, ()>(self.names.len())
            + self.names.iter().map(|k| k.len() + 16).sum::<usize>();
        pods + containers + controllers + namespaces + nodes + names
    }

    pub fn apply_pod(&mut self, pod: &Pod) {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        let ns = self.intern(ns);
        let spec = pod.spec.as_ref();
        let node = self.intern(spec.and_then(|s| s.node_name.as_deref()).unwrap_or(""));
        let owner = self.owner(&pod.metadata);
        let labels = self.labels(pod.metadata.labels.as_ref());
        let mut containers: Vec<Container> = Vec::new();
        if let Some(spec) = spec {
            let specs = spec
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone()))
                .chain(
                    spec.init_containers
                        .iter()
                        .flatten()
                        .map(|c| (c.name.clone(), c.image.clone())),
                )
                .chain(
                    spec.ephemeral_containers
                        .iter()
                        .flatten()
                        .map(|c| (c.name.clone(), c.image.clone())),
                );
            for (name, image) in specs {
                containers.push(Container {
                    name,
                    id: String::new(),
                    image: image.unwrap_or_default(),
                    short: [0; 12],
                });
            }
        }
        if let Some(status) = &pod.status {
            let statuses = status
                .container_statuses
                .iter()
                .flatten()
                .chain(status.init_container_statuses.iter().flatten())
                .chain(status.ephemeral_container_statuses.iter().flatten());
            for st in statuses {
                let id = st.container_id.as_deref().map(runtime_id).unwrap_or("");
                match containers.iter_mut().find(|c| c.name == st.name) {
                    Some(c) => {
                        c.id = id.to_string();
                        c.short = short_id(id);
                    }
                    None => containers.push(Container {
                        name: st.name.clone(),
                        id: id.to_string(),
                        image: st.image.clone(),
                        short: short_id(id),
                    }),
                }
            }
        }
        let meta = Arc::new(PodMeta {
            namespace: ns.clone(),
            name: name.clone(),
            node,
            owner,
            labels,
            containers,
        });
        // Ids the pod no longer has (a restarted container) stay mapped (to the pod as it was)
        // until the pod goes: late events of the old container still find their pod.
        for c in &meta.containers {
            if !c.id.is_empty() {
                self.containers.insert(short_id(&c.id), meta.clone());
            }
        }
        self.pods.insert((ns, name.clone()), Kept::live(meta));
    }

    /// A ReplicaSet, Deployment, StatefulSet, DaemonSet, Job or CronJob (its metadata).
    pub fn apply_controller(&mut self, kind: Kind, meta: &ObjectMeta) {
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
            let key = (kind, self.intern(ns), self.intern(name));
            let owner = self.owner(meta);
            self.controllers.insert(key, Kept::live(owner));
        }
    }

    pub fn apply_namespace(&mut self, meta: &ObjectMeta) {
        if let Some(name) = &meta.name {
            let name = self.intern(name);
            let labels = self.labels(meta.labels.as_ref());
            self.namespaces.insert(name, Kept::live(labels));
        }
    }

    pub fn apply_node(&mut self, node: &Node) {
        let Some(name) = &node.metadata.name else {
            return;
        };
        let hostname = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "Hostname"))
            .map(|a| a.address.clone())
            .unwrap_or_else(|| name.clone());
        self.nodes.insert(name.clone(), Kept::live(hostname));
    }

    /// Marks an object deleted (it stays for the grace period).
    pub fn delete(&mut self, kind: Kind, namespace: Option<&str>, name: &str, now: Instant) {
        let ns: Arc<str> = Arc::from(namespace.unwrap_or(""));
        let deleted = match kind {
            Kind::Pod => self
                .pods
                .get_mut(&(ns, name.to_string()))
                .map(|p| &mut p.deleted),
            Kind::Node => self.nodes.get_mut(name).map(|p| &mut p.deleted),
            Kind::Namespace => self.namespaces.get_mut(name).map(|p| &mut p.deleted),
            _ => self
                .controllers
                .get_mut(&(kind, ns, Arc::from(name)))
                .map(|p| &mut p.deleted),
        };
        if let Some(d) = deleted {
            d.get_or_insert(now);
        }
    }

    /// After a re-list: objects of `kind` not in `listed` (namespace, name) were deleted while
    /// unwatched.
    pub fn relisted(&mut self, kind: Kind, listed: &[(String, String)], now: Instant) {
        let listed: HashSet<(&str, &str)> = listed
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let gone = |ns: &str, n: &str| !listed.contains(&(ns, n));
        let mark = |d: &mut Option<Instant>| {
            d.get_or_insert(now);
        };
        match kind {
            Kind::Pod => self
                .pods
                .iter_mut()
                .filter(|((ns, n), _)| gone(ns, n))
                .for_each(|(_, p)| mark(&mut p.deleted)),
            Kind::Node => self
                .nodes
                .iter_mut()
                .filter(|(n, _)| gone("", n))
                .for_each(|(_, p)| mark(&mut p.deleted)),
            Kind::Namespace => self
                .namespaces
                .iter_mut()
                .filter(|(n, _)| gone("", n))
                .for_each(|(_, p)| mark(&mut p.deleted)),
            _ => self
                .controllers
                .iter_mut()
                .filter(|((k, ns, n), _)| *k == kind && gone(ns, n))
                .for_each(|(_, p)| mark(&mut p.deleted)),
        }
    }

    /// Forgets objects deleted more than `grace` ago, and the names only they used.
    pub fn sweep(&mut self, now: Instant, grace: Duration) {
        let expired = |d: Option<Instant>| d.is_some_and(|d| now.duration_since(d) > grace);
        let before = self.pods.len();
        self.pods.retain(|_, p| !expired(p.deleted));
        if self.pods.len() != before {
            let pods = &self.pods;
            self.containers
                .retain(|_, p| pods.contains_key(&(p.namespace.clone(), p.name.clone())));
        }
        self.controllers.retain(|_, p| !expired(p.deleted));
        self.namespaces.retain(|_, p| !expired(p.deleted));
        self.nodes.retain(|_, p| !expired(p.deleted));
        self.names.retain(|n| Arc::strong_count(n) > 1);
    }

    /// The workload of a pod: up through ReplicaSets and Jobs to the Deployment or CronJob
    /// (or whatever else) controlling them. A ReplicaSet or Job not listed yet (created just
    /// before its pod) is resolved by name when its Deployment or CronJob is known:
    /// `<deployment>-<pod-template-hash>`, `<cronjob>-<scheduled minute>`.
    fn workload(&self, pod: &PodMeta) -> Option<(Arc<str>, Arc<str>)> {
        let (mut kind, mut name) = pod.owner.clone()?;
        for _ in 0..4 {
            let k = match &*kind {
                "ReplicaSet" => Kind::ReplicaSet,
                "Job" => Kind::Job,
                _ => break,
            };
            match self
                .controllers
                .get(&(k, pod.namespace.clone(), name.clone()))
            {
                Some(c) => match &c.value {
                    Some(up) => (kind, name) = up.clone(),
                    None => break,
                },
                None => {
                    if let Some(up) = self.parent_by_name(k, &pod.namespace, &name) {
                        (kind, name) = up;
                    }
                    break;
                }
            }
        }
        Some((kind, name))
    }

    fn parent_by_name(
        &self,
        kind: Kind,
        ns: &Arc<str>,
        name: &str,
    ) -> Option<(Arc<str>, Arc<str>)> {
        let (prefix, suffix) = name.rsplit_once('-')?;
        let parent = match kind {
            Kind::ReplicaSet => Kind::Deployment,
            Kind::Job if suffix.bytes().all(|b| b.is_ascii_digit()) => Kind::CronJob,
            _ => return None,
        };
        let prefix = self.names.get(prefix)?;
        self.controllers
            .contains_key(&(parent, ns.clone(), prefix.clone()))
            .then(|| (Arc::from(parent.name()), prefix.clone()))
    }

    /// The event's pod, and its container when the event's container id names one.
    fn pod_of(&self, e: &ActivityEvent) -> Option<(&PodMeta, Option<&Container>)> {
        let id = e.container_id.as_str();
        if !id.is_empty() {
            let short = short_id(id);
            if let Some(pod) = self.containers.get(&short)
                && let Some(c) = pod
                    .containers
                    .iter()
                    .find(|c| c.short == short && (id.len() <= 12 || c.id.starts_with(id)))
            {
                return Some((pod, Some(c)));
            }
        }
        if !e.pod.is_empty() {
            let key = (Arc::from(e.namespace.as_str()), e.pod.clone());
            let pod = &*self.pods.get(&key)?.value;
            let c = (!id.is_empty())
                .then(|| {
                    pod.containers
                        .iter()
                        .find(|c| !c.id.is_empty() && c.id.starts_with(id))
                })
                .flatten();
            return Some((pod, c));
        }
        None
    }

    /// Whether the event is about a pod or container (so the API should know it).
    pub fn wants_pod(e: &ActivityEvent) -> bool {
        !e.container_id.is_empty() || !e.pod.is_empty()
    }

    /// Fills the event's asset fields from the API (API values win over the agent's).
    /// Returns false when the event is about a pod or container this cluster does not know.
    pub fn enrich(&self, e: &mut ActivityEvent) -> bool {
        if !Self::wants_pod(e) {
            // A host event: name its node when the host is one.
            if !e.hostname.is_empty() && self.nodes.contains_key(&e.hostname) {
                e.node.clone_from(&e.hostname);
            }
            return true;
        }
        let Some((pod, by_id)) = self.pod_of(e) else {
            return false;
        };
        e.namespace = pod.namespace.to_string();
        e.pod.clone_from(&pod.name);
        if !pod.node.is_empty() {
            e.node = pod.node.to_string();
            if e.hostname.is_empty() {
                e.hostname = self
                    .nodes
                    .get(&*pod.node)
                    .map(|h| h.value.clone())
                    .unwrap_or_else(|| pod.node.to_string());
            }
        }
        if let Some((kind, name)) = self.workload(pod) {
            e.workload_kind = kind.to_string();
            e.workload_name = name.to_string();
        }
        e.pod_labels = pod.labels.iter().map(|l| l.to_string()).collect();
        e.namespace_labels = self
            .namespaces
            .get(&*pod.namespace)
            .map(|n| n.value.iter().map(|l| l.to_string()).collect())
            .unwrap_or_default();
        let container = if !e.container_id.is_empty() {
            by_id
        } else {
            // An exec/attach names its container; a pod with one container has no doubt.
            let name = if e.container.is_empty() {
                e.container_name.as_str()
            } else {
                e.container.as_str()
            };
            pod.containers
                .iter()
                .find(|c| c.name == name)
                .or_else(|| (pod.containers.len() == 1).then(|| &pod.containers[0]))
        };
        if let Some(c) = container {
            e.container_name.clone_from(&c.name);
            if !c.image.is_empty() {
                e.container_image.clone_from(&c.image);
            }
            if !c.id.is_empty() {
                e.container_id.clone_from(&c.id);
            }
        }
        e.enrichment = "api".into();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container as Spec, PodSpec};

    fn meta(
        name: &str,
        ns: Option<&str>,
        owner: Option<(&str, &str)>,
        labels: &[(&str, &str)],
    ) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(Into::into),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|(kind, name)| {
                vec![OwnerReference {
                    kind: kind.into(),
                    name: name.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, owner: (&str, &str), labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: meta(name, Some("shop"), Some(owner), labels),
            spec: Some(PodSpec {
                containers: vec![Spec {
                    name: "app".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn enriched(m: &ClusterMeta, pod: &str) -> ActivityEvent {
        let mut e = ActivityEvent {
            namespace: "shop".into(),
            pod: pod.into(),
            ..Default::default()
        };
        assert!(m.enrich(&mut e));
        e
    }

    #[test]
    fn labels_are_sorted_filtered_and_forgotten_with_their_objects() {
        let mut m = ClusterMeta::dropping_labels(DEFAULT_DROPPED_LABELS);
        m.apply_namespace(&meta("shop", None, None, &[("team", "pay")]));
        m.apply_pod(&pod(
            "web-1",
            ("StatefulSet", "web"),
            &[
                ("zone", "a"),
                ("app", "web"),
                ("controller-revision-hash", "web-5d"),
            ],
        ));
        let e = enriched(&m, "web-1");
        assert_eq!(e.pod_labels, ["app=web", "zone=a"]);
        assert_eq!(e.namespace_labels, ["team=pay"]);
        assert_eq!(
            (e.workload_kind.as_str(), e.workload_name.as_str()),
            ("StatefulSet", "web")
        );
        let t0 = Instant::now();
        m.delete(Kind::Pod, Some("shop"), "web-1", t0);
        m.sweep(t0 + Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(m.pods(), 0);
        assert!(
            !m.names.contains("app=web"),
            "a label no live object has is dropped"
        );
        assert!(
            m.names.contains("shop"),
            "the namespace still uses its name"
        );
    }

    #[test]
    fn workloads_resolve_through_controllers_or_by_name() {
        let mut m = ClusterMeta::default();
        m.apply_controller(Kind::Deployment, &meta("api", Some("shop"), None, &[]));
        m.apply_controller(Kind::CronJob, &meta("backup", Some("shop"), None, &[]));
        m.apply_controller(
            Kind::ReplicaSet,
            &meta("web-7d9", Some("shop"), Some(("Deployment", "web")), &[]),
        );
        let cases = [
            (("ReplicaSet", "web-7d9"), ("Deployment", "web")),
            // Not listed yet: the Deployment and CronJob are known by name.
            (("ReplicaSet", "api-5c6d7"), ("Deployment", "api")),
            (("Job", "backup-28861500"), ("CronJob", "backup")),
            // Neither known: the direct owner.
            (("ReplicaSet", "other-5c6d7"), ("ReplicaSet", "other-5c6d7")),
            (("Job", "backup-manual"), ("Job", "backup-manual")),
        ];
        for (i, (owner, want)) in cases.into_iter().enumerate() {
            let name = format!("p{i}");
            m.apply_pod(&pod(&name, owner, &[]));
            let e = enriched(&m, &name);
            assert_eq!(
                (e.workload_kind.as_str(), e.workload_name.as_str()),
                want,
                "{owner:?}"
            );
        }
    }
}

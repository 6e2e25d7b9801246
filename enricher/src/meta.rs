//! What the enricher knows of one cluster, kept compact (only the fields events need, not the
//! API objects): pods with their containers, labels, owner and node; the controllers that own
//! pods (ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs: only who controls
//! each, to walk Pod -> ReplicaSet -> Deployment and Pod -> Job -> CronJob); namespaces' labels;
//! nodes' hostnames.
//!
//! What an event gets from its pod (namespace, pod, node, workload, pod and namespace labels,
//! each container's name, image and id) is resolved ahead into one block of text per pod
//! ([`Assets`]): enriching an event is one look-up and copies from one place. A change of a
//! controller or a namespace marks its namespace for [`ClusterMeta::refresh`]; until then, that
//! namespace's events are resolved on the spot.
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

/// A container of a pod, as listed: name, image and runtime id without the `containerd://`
/// scheme (empty until the kubelet reports it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Container<'a> {
    name: &'a str,
    image: &'a str,
    id: &'a str,
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

/// What resolving a pod's [`Assets`] needs of it besides its containers.
#[derive(Debug, Clone, PartialEq)]
struct PodMeta {
    namespace: Arc<str>,
    name: String,
    node: Arc<str>,
    owner: Owner,
    /// `key=value`, sorted, without the per-replica labels the config drops.
    labels: Vec<Arc<str>>,
}

/// A pod: what it is, and what its events get.
#[derive(Debug)]
struct KnownPod {
    meta: PodMeta,
    assets: Arc<Assets>,
}

/// What an event gets from its pod, resolved ahead: namespace, pod, node, workload kind and
/// name, pod labels, namespace labels, then name, image and id of each container, one after
/// the other in one text (an event's look-up reads one place, not a dozen).
#[derive(Debug, Default, PartialEq)]
pub struct Assets {
    text: String,
    /// Where each part ends in `text`.
    ends: Vec<u32>,
    pod_labels: u32,
    namespace_labels: u32,
    /// Whether the pod has an owner (else the workload parts are empty and not written).
    workload: bool,
}

const NAMESPACE: usize = 0;
const POD: usize = 1;
const NODE: usize = 2;
const WORKLOAD_KIND: usize = 3;
const WORKLOAD_NAME: usize = 4;
const LABELS: usize = 5;

/// `field = value`, in the field's own buffer.
fn set(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

/// `field = values`, in the list's own buffers.
fn set_list<'a>(field: &mut Vec<String>, values: impl ExactSizeIterator<Item = &'a str>) {
    field.truncate(values.len());
    for (i, v) in values.enumerate() {
        match field.get_mut(i) {
            Some(f) => set(f, v),
            None => field.push(v.to_string()),
        }
    }
}

impl Assets {
    fn push(&mut self, part: &str) {
        self.text.push_str(part);
        self.ends.push(self.text.len() as u32);
    }

    fn part(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p] as usize);
        &self.text[start..self.ends[i] as usize]
    }

    fn parts(&self, from: usize, n: u32) -> impl ExactSizeIterator<Item = &str> {
        (from..from + n as usize).map(|i| self.part(i))
    }

    /// Where the containers' parts start.
    fn containers_at(&self) -> usize {
        LABELS + (self.pod_labels + self.namespace_labels) as usize
    }

    fn container(&self, i: usize) -> Container<'_> {
        let at = self.containers_at() + 3 * i;
        Container {
            name: self.part(at),
            image: self.part(at + 1),
            id: self.part(at + 2),
        }
    }

    fn containers(&self) -> impl Iterator<Item = Container<'_>> {
        (0..(self.ends.len() - self.containers_at()) / 3).map(|i| self.container(i))
    }

    fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4
    }

    /// Writes the pod's fields (and its container `container`'s) into the event.
    fn write(&self, e: &mut ActivityEvent, container: Option<usize>) {
        set(&mut e.namespace, self.part(NAMESPACE));
        set(&mut e.pod, self.part(POD));
        let node = self.part(NODE);
        if !node.is_empty() {
            set(&mut e.node, node);
        }
        if self.workload {
            set(&mut e.workload_kind, self.part(WORKLOAD_KIND));
            set(&mut e.workload_name, self.part(WORKLOAD_NAME));
        }
        set_list(&mut e.pod_labels, self.parts(LABELS, self.pod_labels));
        set_list(
            &mut e.namespace_labels,
            self.parts(LABELS + self.pod_labels as usize, self.namespace_labels),
        );
        if let Some(c) = container.map(|i| self.container(i)) {
            set(&mut e.container_name, c.name);
            if !c.image.is_empty() {
                set(&mut e.container_image, c.image);
            }
            if !c.id.is_empty() {
                set(&mut e.container_id, c.id);
            }
        }
        set(&mut e.enrichment, "api");
    }
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
    pods: HashMap<(Arc<str>, String), Kept<KnownPod>>,
    /// Container id (its short form) -> the pod's assets (shared with `pods`) and which of
    /// its containers: one look-up per event.
    containers: HashMap<ShortId, (Arc<Assets>, usize)>,
    /// Namespaces whose pods' assets may be out of date (a controller or the namespace
    /// changed): resolved on the spot until [`ClusterMeta::refresh`].
    dirty: HashSet<Arc<str>>,
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
        let pods = table::<(Arc<str>, String), Kept<KnownPod>>(self.pods.len())
            + self
                .pods
                .iter()
                .map(|((_, n), p)| {
                    let p = &p.value;
                    // The shared `Arc<Assets>`: two counts, the struct and its text.
                    n.capacity()
                        + p.meta.name.capacity()
                        + p.meta.labels.capacity() * size_of::<Arc<str>>()
                        + 16
                        + size_of::<Assets>()
                        + p.assets.heap_bytes()
                })
                .sum::<usize>();
        let containers = table::<ShortId, (Arc<Assets>, usize)>(self.containers.len());
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
                .map(|c| (&c.name, &c.image))
                .chain(
                    spec.init_containers
                        .iter()
                        .flatten()
                        .map(|c| (&c.name, &c.image)),
                )
                .chain(
                    spec.ephemeral_containers
                        .iter()
                        .flatten()
                        .map(|c| (&c.name, &c.image)),
                );
            for (name, image) in specs {
                containers.push(Container {
                    name,
                    image: image.as_deref().unwrap_or(""),
                    id: "",
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
                    Some(c) => c.id = id,
                    None => containers.push(Container {
                        name: &st.name,
                        image: &st.image,
                        id,
                    }),
                }
            }
        }
        let meta = PodMeta {
            namespace: ns.clone(),
            name: name.clone(),
            node,
            owner,
            labels,
        };
        let assets = self.index(Arc::new(self.resolve(&meta, containers)));
        self.pods
            .insert((ns, name.clone()), Kept::live(KnownPod { meta, assets }));
    }

    /// Maps a pod's containers' ids to its assets. Ids the pod no longer has (a restarted
    /// container) stay mapped to the pod as it was until the pod goes: late events of the old
    /// container still find their pod.
    fn index(&mut self, assets: Arc<Assets>) -> Arc<Assets> {
        for (i, c) in assets.containers().enumerate() {
            if !c.id.is_empty() {
                self.containers.insert(short_id(c.id), (assets.clone(), i));
            }
        }
        assets
    }

    /// What events of the pod get, from what is known now.
    fn resolve<'a>(
        &self,
        meta: &PodMeta,
        containers: impl IntoIterator<Item = Container<'a>>,
    ) -> Assets {
        let mut a = Assets::default();
        a.push(&meta.namespace);
        a.push(&meta.name);
        a.push(&meta.node);
        let workload = self.workload(meta);
        a.workload = workload.is_some();
        let (kind, name) = workload.unzip();
        a.push(kind.as_deref().unwrap_or(""));
        a.push(name.as_deref().unwrap_or(""));
        for l in &meta.labels {
            a.push(l);
        }
        a.pod_labels = meta.labels.len() as u32;
        if let Some(ns) = self.namespaces.get(&*meta.namespace) {
            for l in &ns.value {
                a.push(l);
            }
            a.namespace_labels = ns.value.len() as u32;
        }
        for c in containers {
            a.push(c.name);
            a.push(c.image);
            a.push(c.id);
        }
        a.text.shrink_to_fit();
        a.ends.shrink_to_fit();
        a
    }

    /// Resolves again the assets of the pods of the namespaces whose controllers or labels
    /// changed. The watchers call it after every change they apply (not while listing).
    pub fn refresh(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let keys: Vec<_> = self
            .pods
            .keys()
            .filter(|(ns, _)| dirty.contains(ns))
            .cloned()
            .collect();
        for key in keys {
            let pod = &self.pods[&key].value;
            let assets = Arc::new(self.resolve(&pod.meta, pod.assets.containers()));
            let assets = self.index(assets);
            if let Some(p) = self.pods.get_mut(&key) {
                p.value.assets = assets;
            }
        }
    }

    /// A ReplicaSet, Deployment, StatefulSet, DaemonSet, Job or CronJob (its metadata).
    pub fn apply_controller(&mut self, kind: Kind, meta: &ObjectMeta) {
        if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
            let key = (kind, self.intern(ns), self.intern(name));
            let owner = self.owner(meta);
            if self.controllers.get(&key).is_none_or(|c| c.value != owner) {
                self.dirty.insert(key.1.clone());
            }
            self.controllers.insert(key, Kept::live(owner));
        }
    }

    pub fn apply_namespace(&mut self, meta: &ObjectMeta) {
        if let Some(name) = &meta.name {
            let name = self.intern(name);
            let labels = self.labels(meta.labels.as_ref());
            if self.namespaces.get(&name).is_none_or(|n| n.value != labels) {
                self.dirty.insert(name.clone());
            }
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
            self.containers.retain(|_, (a, _)| {
                pods.contains_key(&(Arc::from(a.part(NAMESPACE)), a.part(POD).to_string()))
            });
        }
        let dirty = &mut self.dirty;
        self.controllers.retain(|(_, ns, _), p| {
            let keep = !expired(p.deleted);
            if !keep {
                dirty.insert(ns.clone());
            }
            keep
        });
        self.namespaces.retain(|ns, p| {
            let keep = !expired(p.deleted);
            if !keep {
                dirty.insert(ns.clone());
            }
            keep
        });
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

    /// The event's pod's assets, and its container when the event's container id names one.
    fn pod_of(&self, e: &ActivityEvent) -> Option<(&Arc<Assets>, Option<usize>)> {
        let id = e.container_id.as_str();
        if !id.is_empty()
            && let Some((assets, i)) = self.containers.get(&short_id(id))
            && (id.len() <= 12 || assets.container(*i).id.starts_with(id))
        {
            return Some((assets, Some(*i)));
        }
        if !e.pod.is_empty() {
            let key = (Arc::from(e.namespace.as_str()), e.pod.clone());
            let assets = &self.pods.get(&key)?.value.assets;
            let c = (!id.is_empty())
                .then(|| {
                    assets
                        .containers()
                        .position(|c| !c.id.is_empty() && c.id.starts_with(id))
                })
                .flatten();
            return Some((assets, c));
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
        let Some((assets, by_id)) = self.pod_of(e) else {
            return false;
        };
        let fresh;
        let mut assets = &**assets;
        if !self.dirty.is_empty() && self.dirty.contains(assets.part(NAMESPACE)) {
            // Its namespace changed since the last refresh: resolve it now.
            let key = (
                Arc::from(assets.part(NAMESPACE)),
                assets.part(POD).to_string(),
            );
            if let Some(pod) = self.pods.get(&key) {
                fresh = self.resolve(&pod.value.meta, assets.containers());
                assets = &fresh;
            }
        }
        let container = if !e.container_id.is_empty() {
            by_id
        } else {
            // An exec/attach names its container; a pod with one container has no doubt.
            let name = if e.container.is_empty() {
                e.container_name.as_str()
            } else {
                e.container.as_str()
            };
            let n = assets.containers().count();
            assets
                .containers()
                .position(|c| c.name == name)
                .or((n == 1).then_some(0))
        };
        let node = assets.part(NODE);
        if !node.is_empty() && e.hostname.is_empty() {
            match self.nodes.get(node) {
                Some(h) => set(&mut e.hostname, &h.value),
                None => set(&mut e.hostname, node),
            }
        }
        assets.write(e, container);
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
    fn assets_follow_controllers_and_namespaces_that_change_after_the_pod() {
        let mut m = ClusterMeta::default();
        m.apply_pod(&pod(
            "web-7d9-x1",
            ("ReplicaSet", "web-7d9"),
            &[("app", "web")],
        ));
        m.refresh();
        let before = enriched(&m, "web-7d9-x1");
        assert_eq!(
            (before.workload_kind.as_str(), before.workload_name.as_str()),
            ("ReplicaSet", "web-7d9")
        );
        assert!(before.namespace_labels.is_empty());
        // The Deployment and the namespace's labels arrive after the pod.
        m.apply_controller(Kind::Deployment, &meta("web", Some("shop"), None, &[]));
        m.apply_namespace(&meta("shop", None, None, &[("team", "pay")]));
        // Before the refresh, on the spot; after it, from the assets: the same.
        let spot = enriched(&m, "web-7d9-x1");
        m.refresh();
        assert!(m.dirty.is_empty());
        let ahead = enriched(&m, "web-7d9-x1");
        assert_eq!(spot, ahead);
        assert_eq!(
            (ahead.workload_kind.as_str(), ahead.workload_name.as_str()),
            ("Deployment", "web")
        );
        assert_eq!(ahead.namespace_labels, ["team=pay"]);
        assert_eq!(ahead.pod_labels, ["app=web"]);
        // An unchanged controller seen again (a status update) changes nothing.
        m.apply_controller(Kind::Deployment, &meta("web", Some("shop"), None, &[]));
        assert!(m.dirty.is_empty());
    }

    #[test]
    fn events_keep_their_buffers_and_lists_shrink() {
        let mut m = ClusterMeta::default();
        m.apply_pod(&pod("a", ("StatefulSet", "a"), &[("x", "1")]));
        m.refresh();
        let mut e = ActivityEvent {
            namespace: "shop".into(),
            pod: "a".into(),
            pod_labels: vec!["old=1".into(), "old=2".into(), "old=3".into()],
            ..Default::default()
        };
        assert!(m.enrich(&mut e));
        assert_eq!(e.pod_labels, ["x=1"]);
        assert_eq!(e.container_name, "app", "the pod's only container");
        assert_eq!(e.enrichment, "api");
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

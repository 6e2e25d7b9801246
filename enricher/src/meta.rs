//! What the enricher knows of one cluster, kept compact (only the fields events need, not the
//! API objects): pods with their containers, owners and node; ReplicaSets and Jobs (to walk
//! Pod -> ReplicaSet -> Deployment and Pod -> Job -> CronJob); nodes.
//!
//! Deleted pods stay for a grace period, so late agent events about a pod that just went away
//! are still enriched. A re-list (watch restart) that no longer contains an object counts as
//! its deletion.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use schemas::ActivityEvent;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A container of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    /// Runtime id without the `containerd://` scheme (empty until the kubelet reports it).
    pub id: String,
    pub image: String,
}

/// What events need of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodMeta {
    pub namespace: Arc<str>,
    pub name: String,
    pub node: Arc<str>,
    /// The controlling owner: (kind, name).
    pub owner: Option<(Arc<str>, String)>,
    pub containers: Vec<Container>,
}

/// A namespaced object's controlling owner, and when it was deleted (kept for the grace).
#[derive(Debug, Clone)]
struct Owned {
    owner: Option<(Arc<str>, String)>,
}

#[derive(Debug, Clone)]
struct Kept<T> {
    value: T,
    deleted: Option<Instant>,
}

/// One cluster's metadata.
#[derive(Debug, Default)]
pub struct ClusterMeta {
    pods: HashMap<(Arc<str>, String), Kept<PodMeta>>,
    /// Container id (full, and its 12-character short form) -> (namespace, pod).
    containers: HashMap<String, (Arc<str>, String)>,
    replicasets: HashMap<(Arc<str>, String), Kept<Owned>>,
    jobs: HashMap<(Arc<str>, String), Kept<Owned>>,
    /// Node name -> hostname.
    nodes: HashMap<String, Kept<String>>,
    /// Interned namespace, node and kind names (many pods share them).
    names: HashMap<String, Arc<str>>,
}

fn controller(refs: Option<&Vec<OwnerReference>>) -> Option<(String, String)> {
    let refs = refs?;
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
        .map(|r| (r.kind.clone(), r.name.clone()))
}

/// `containerd://abc…` -> `abc…`.
fn runtime_id(id: &str) -> &str {
    id.split_once("://").map(|(_, i)| i).unwrap_or(id)
}

/// Which kind of object a watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    ReplicaSet,
    Job,
    Node,
}

impl ClusterMeta {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(s.to_string(), a.clone());
        a
    }

    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Estimated heap bytes: every map entry (with the hash table's control bytes and load
    /// factor) plus the strings and vectors it owns; interned names once.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        fn table<K, V>(n: usize) -> usize {
            n * 8 / 7 * (size_of::<K>() + size_of::<V>() + 1)
        }
        let pods = table::<(Arc<str>, String), Kept<PodMeta>>(self.pods.len())
            + self
                .pods
                .iter()
                .map(|((_, n), p)| {
                    let v = &p.value;
                    n.capacity()
                        + v.name.capacity()
                        + v.owner.as_ref().map(|(_, o)| o.capacity()).unwrap_or(0)
                        + v.containers.capacity() * size_of::<Container>()
                        + v.containers
                            .iter()
                            .map(|c| c.name.capacity() + c.id.capacity() + c.image.capacity())
                            .sum::<usize>()
                })
                .sum::<usize>();
        let containers = table::<String, (Arc<str>, String)>(self.containers.len())
            + self
                .containers
                .iter()
                .map(|(k, (_, p))| k.capacity() + p.capacity())
                .sum::<usize>();
        let owned = |m: &HashMap<(Arc<str>, String), Kept<Owned>>| {
            table::<(Arc<str>, String), Kept<Owned>>(m.len())
                + m.iter()
                    .map(|((_, n), o)| {
                        n.capacity()
                            + o.value
                                .owner
                                .as_ref()
                                .map(|(_, x)| x.capacity())
                                .unwrap_or(0)
                    })
                    .sum::<usize>()
        };
        let nodes = table::<String, Kept<String>>(self.nodes.len())
            + self
                .nodes
                .iter()
                .map(|(k, v)| k.capacity() + v.value.capacity())
                .sum::<usize>();
        let names = table::<String, Arc<str>>(self.names.len())
            + self.names.keys().map(|k| 2 * k.len() + 16).sum::<usize>();
        pods + containers + owned(&self.replicasets) + owned(&self.jobs) + nodes + names
    }

    pub fn apply_pod(&mut self, pod: &Pod) {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        let ns = self.intern(ns);
        let spec = pod.spec.as_ref();
        let node = self.intern(spec.and_then(|s| s.node_name.as_deref()).unwrap_or(""));
        let owner = controller(pod.metadata.owner_references.as_ref());
        let owner = owner.map(|(k, n)| (self.intern(&k), n));
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
                    Some(c) => c.id = id.to_string(),
                    None => containers.push(Container {
                        name: st.name.clone(),
                        id: id.to_string(),
                        image: st.image.clone(),
                    }),
                }
            }
        }
        let key = (ns.clone(), name.clone());
        // Ids the pod no longer has (a restarted container) stay mapped until the pod goes:
        // late events of the old container still find their pod.
        for c in &containers {
            if !c.id.is_empty() {
                self.containers.insert(c.id.clone(), key.clone());
                if c.id.len() > 12 {
                    self.containers.insert(c.id[..12].to_string(), key.clone());
                }
            }
        }
        self.pods.insert(
            key,
            Kept {
                value: PodMeta {
                    namespace: ns,
                    name: name.clone(),
                    node,
                    owner,
                    containers,
                },
                deleted: None,
            },
        );
    }

    pub fn apply_replicaset(&mut self, rs: &ReplicaSet) {
        if let (Some(ns), Some(name)) = (&rs.metadata.namespace, &rs.metadata.name) {
            let ns = self.intern(ns);
            let owner = controller(rs.metadata.owner_references.as_ref())
                .map(|(k, n)| (self.intern(&k), n));
            self.replicasets.insert(
                (ns, name.clone()),
                Kept {
                    value: Owned { owner },
                    deleted: None,
                },
            );
        }
    }

    pub fn apply_job(&mut self, job: &Job) {
        if let (Some(ns), Some(name)) = (&job.metadata.namespace, &job.metadata.name) {
            let ns = self.intern(ns);
            let owner = controller(job.metadata.owner_references.as_ref())
                .map(|(k, n)| (self.intern(&k), n));
            self.jobs.insert(
                (ns, name.clone()),
                Kept {
                    value: Owned { owner },
                    deleted: None,
                },
            );
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
        self.nodes.insert(
            name.clone(),
            Kept {
                value: hostname,
                deleted: None,
            },
        );
    }

    /// Marks an object deleted (it stays for the grace period).
    pub fn delete(&mut self, kind: Kind, namespace: Option<&str>, name: &str, now: Instant) {
        let key = |ns: Option<&str>| -> (Arc<str>, String) {
            (Arc::from(ns.unwrap_or("")), name.to_string())
        };
        match kind {
            Kind::Pod => {
                if let Some(p) = self.pods.get_mut(&key(namespace)) {
                    p.deleted.get_or_insert(now);
                }
            }
            Kind::ReplicaSet => {
                if let Some(p) = self.replicasets.get_mut(&key(namespace)) {
                    p.deleted.get_or_insert(now);
                }
            }
            Kind::Job => {
                if let Some(p) = self.jobs.get_mut(&key(namespace)) {
                    p.deleted.get_or_insert(now);
                }
            }
            Kind::Node => {
                if let Some(p) = self.nodes.get_mut(name) {
                    p.deleted.get_or_insert(now);
                }
            }
        }
    }

    /// After a re-list: objects of `kind` not in `listed` were deleted while unwatched.
    pub fn relisted(&mut self, kind: Kind, listed: &[(String, String)], now: Instant) {
        let listed: std::collections::HashSet<(&str, &str)> = listed
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let gone = |ns: &str, n: &str| !listed.contains(&(ns, n));
        match kind {
            Kind::Pod => {
                for ((ns, n), p) in self.pods.iter_mut() {
                    if gone(ns, n) {
                        p.deleted.get_or_insert(now);
                    }
                }
            }
            Kind::ReplicaSet => {
                for ((ns, n), p) in self.replicasets.iter_mut() {
                    if gone(ns, n) {
                        p.deleted.get_or_insert(now);
                    }
                }
            }
            Kind::Job => {
                for ((ns, n), p) in self.jobs.iter_mut() {
                    if gone(ns, n) {
                        p.deleted.get_or_insert(now);
                    }
                }
            }
            Kind::Node => {
                for (n, p) in self.nodes.iter_mut() {
                    if gone("", n) {
                        p.deleted.get_or_insert(now);
                    }
                }
            }
        }
    }

    /// Forgets objects deleted more than `grace` ago.
    pub fn sweep(&mut self, now: Instant, grace: Duration) {
        let expired = |d: Option<Instant>| d.is_some_and(|d| now.duration_since(d) > grace);
        let gone: Vec<(Arc<str>, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| expired(p.deleted))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.pods.remove(k);
        }
        if !gone.is_empty() {
            let pods = &self.pods;
            self.containers.retain(|_, k| pods.contains_key(k));
        }
        self.replicasets.retain(|_, p| !expired(p.deleted));
        self.jobs.retain(|_, p| !expired(p.deleted));
        self.nodes.retain(|_, p| !expired(p.deleted));
    }

    /// The workload of a pod: Deployment through its ReplicaSet, CronJob through its Job.
    fn workload(&self, pod: &PodMeta) -> Option<(String, String)> {
        let (kind, name) = pod.owner.as_ref()?;
        let up = |map: &HashMap<(Arc<str>, String), Kept<Owned>>| {
            map.get(&(pod.namespace.clone(), name.clone()))
                .and_then(|o| o.value.owner.clone())
        };
        let resolved = match &**kind {
            "ReplicaSet" => up(&self.replicasets),
            "Job" => up(&self.jobs),
            _ => None,
        };
        Some(match resolved {
            Some((k, n)) => (k.to_string(), n),
            None => (kind.to_string(), name.clone()),
        })
    }

    fn pod_of(&self, e: &ActivityEvent) -> Option<&PodMeta> {
        if !e.container_id.is_empty()
            && let Some(key) = self.containers.get(e.container_id.as_str())
        {
            return self.pods.get(key).map(|p| &p.value);
        }
        if !e.pod.is_empty() {
            let key = (Arc::from(e.namespace.as_str()), e.pod.clone());
            return self.pods.get(&key).map(|p| &p.value);
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
        let Some(pod) = self.pod_of(e) else {
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
            e.workload_kind = kind;
            e.workload_name = name;
        }
        let container = if !e.container_id.is_empty() {
            pod.containers
                .iter()
                .find(|c| !c.id.is_empty() && c.id.starts_with(e.container_id.as_str()))
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

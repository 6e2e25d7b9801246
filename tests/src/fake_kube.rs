//! An in-process HTTP server speaking the Kubernetes API (list and watch of Pods, Nodes,
//! Namespaces, ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs and CronJobs; as
//! `PartialObjectMetadata` when the client asks for metadata only, as the API server does),
//! for tests of the enricher's real watcher code, and helpers to build the objects and a
//! kubeconfig pointing at it.

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One resource collection of the fake API server.
#[derive(Default)]
struct Collection {
    items: Vec<Value>,
    rv: u64,
    /// Senders of the open watch streams, and whether each asked for metadata only.
    watchers: Vec<(mpsc::UnboundedSender<String>, bool)>,
    /// Whether the last list or watch asked for metadata only.
    last_metadata_only: Option<bool>,
}

#[derive(Clone, Default)]
pub struct Fake {
    collections: Arc<Mutex<HashMap<&'static str, Collection>>>,
}

const PATHS: [(&str, &str, &str); 9] = [
    ("/api/v1/pods", "v1", "Pod"),
    ("/api/v1/nodes", "v1", "Node"),
    ("/api/v1/namespaces", "v1", "Namespace"),
    ("/apis/apps/v1/replicasets", "apps/v1", "ReplicaSet"),
    ("/apis/apps/v1/deployments", "apps/v1", "Deployment"),
    ("/apis/apps/v1/statefulsets", "apps/v1", "StatefulSet"),
    ("/apis/apps/v1/daemonsets", "apps/v1", "DaemonSet"),
    ("/apis/batch/v1/jobs", "batch/v1", "Job"),
    ("/apis/batch/v1/cronjobs", "batch/v1", "CronJob"),
];

/// What a metadata-only client receives of an object.
fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": object["metadata"]})
}

impl Fake {
    pub fn set(&self, path: &'static str, items: Vec<Value>) {
        let mut c = self.collections.lock().unwrap();
        let col = c.entry(path).or_default();
        col.rv += 1;
        col.items = items;
    }
    /// Sends a watch event to every open watch of `path`.
    pub fn event(&self, path: &'static str, kind: &str, object: Value) {
        let mut c = self.collections.lock().unwrap();
        let col = c.entry(path).or_default();
        col.rv += 1;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(col.rv.to_string());
        let name = object["metadata"]["name"].clone();
        match kind {
            "DELETED" => col.items.retain(|i| i["metadata"]["name"] != name),
            _ => {
                col.items.retain(|i| i["metadata"]["name"] != name);
                col.items.push(object.clone());
            }
        }
        let full = json!({"type": kind, "object": object}).to_string() + "\n";
        let meta = json!({"type": kind, "object": metadata_only(&object)}).to_string() + "\n";
        col.watchers.retain(|(w, meta_only)| {
            w.send(if *meta_only {
                meta.clone()
            } else {
                full.clone()
            })
            .is_ok()
        });
    }
    /// Ends every open watch of `path` (the client must re-watch).
    pub fn close_watches(&self, path: &'static str) {
        self.collections
            .lock()
            .unwrap()
            .entry(path)
            .or_default()
            .watchers
            .clear();
    }
    /// Answers open watches with 410 Gone (the client must re-list).
    pub fn expire(&self, path: &'static str) {
        let mut c = self.collections.lock().unwrap();
        let col = c.entry(path).or_default();
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410}})
        .to_string()
            + "\n";
        for (w, _) in col.watchers.drain(..) {
            let _ = w.send(gone.clone());
        }
    }
    /// Whether the last request for `path` asked for metadata only (`None`: no request yet).
    pub fn metadata_only(&self, path: &'static str) -> Option<bool> {
        self.collections
            .lock()
            .unwrap()
            .get(path)
            .and_then(|c| c.last_metadata_only)
    }

    pub fn watch_count(&self, path: &'static str) -> usize {
        self.collections
            .lock()
            .unwrap()
            .get(path)
            .map(|c| c.watchers.len())
            .unwrap_or(0)
    }

    pub async fn serve(self) -> u16 {
        let mut app = Router::new();
        for (path, api, kind) in PATHS {
            let (api, kind) = (api.to_string(), kind.to_string());
            app = app.route(
                path,
                get(
                    move |State(f): State<Fake>,
                          headers: axum::http::HeaderMap,
                          Query(q): Query<HashMap<String, String>>| {
                        let (api, kind) = (api.clone(), kind.clone());
                        // kube asks `application/json;as=PartialObjectMetadata…` for metadata.
                        let meta_only = headers
                            .get("accept")
                            .and_then(|a| a.to_str().ok())
                            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
                        async move { f.answer(path, &api, &kind, &q, meta_only) }
                    },
                ),
            );
        }
        let app = app.with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        port
    }

    fn answer(
        &self,
        path: &'static str,
        api: &str,
        kind: &str,
        q: &HashMap<String, String>,
        meta_only: bool,
    ) -> axum::response::Response {
        let mut c = self.collections.lock().unwrap();
        let col = c.entry(path).or_default();
        col.last_metadata_only = Some(meta_only);
        if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            col.watchers.push((tx, meta_only));
            let stream = futures::stream::poll_fn(move |cx| {
                rx.poll_recv(cx).map(|o| o.map(Ok::<_, std::io::Error>))
            });
            return axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap();
        }
        let list = if meta_only {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": col.rv.to_string()},
                "items": col.items.iter().map(metadata_only).collect::<Vec<_>>()})
        } else {
            json!({"apiVersion": api, "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": col.rv.to_string()}, "items": col.items})
        };
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(list.to_string()))
            .unwrap()
    }
}

pub fn pod(
    name: &str,
    ns: &str,
    node: &str,
    owner: Option<(&str, &str)>,
    containers: &[(&str, &str, Option<&str>)],
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": "1",
            "ownerReferences": owner.map(|(k, n)| vec![json!({"apiVersion": "apps/v1", "kind": k, "name": n, "uid": "o", "controller": true})]).unwrap_or_default()},
        "spec": {"nodeName": node, "containers": containers.iter().map(|(n, i, _)| json!({"name": n, "image": i})).collect::<Vec<_>>()},
        "status": {"phase": "Running", "containerStatuses": containers.iter().filter(|(_, _, id)| id.is_some()).map(|(n, i, id)| json!({
            "name": n, "image": i, "imageID": "", "ready": true, "restartCount": 0,
            "containerID": format!("containerd://{}", id.unwrap())})).collect::<Vec<_>>()}
    })
}

pub fn owned(api: &str, kind: &str, name: &str, ns: &str, owner: Option<(&str, &str)>) -> Value {
    json!({"apiVersion": api, "kind": kind,
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": "1",
            "ownerReferences": owner.map(|(k, n)| vec![json!({"apiVersion": "apps/v1", "kind": k, "name": n, "uid": "o", "controller": true})]).unwrap_or_default()}})
}

/// `object` with these labels.
pub fn labeled(mut object: Value, labels: &[(&str, &str)]) -> Value {
    object["metadata"]["labels"] = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    object
}

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    labeled(
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"}}),
        labels,
    )
}

pub fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}, {"type": "Hostname", "address": format!("{name}.internal")}]}})
}

pub fn kubeconfig(dir: &std::path::Path, name: &str, port: u16) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    let kc = json!({"apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": format!("http://127.0.0.1:{port}")}}],
        "users": [{"name": "enricher", "user": {"token": "secret-token"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "enricher"}}]});
    std::fs::write(&path, kc.to_string()).unwrap();
    path
}

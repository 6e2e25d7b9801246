//! OCSF 1.8.0 (the current 1.x schema): `command` → Process Activity (1007, Launch),
//! `connection` → Network Activity (4001, Open), `fileaccess` → File System Activity (1001,
//! Read/Update/Open), `kubernetes` → API Activity (6003, Create/Read).
//!
//! Every event carries the `host` and `cloud` profiles (and `container` when it ran in one):
//! the node as `device`, the cluster's cloud (provider, region, account from the export's
//! `[clusters]` table) as `cloud`, the container in `process.container`. The trace id is
//! `metadata.correlation_uid`, the event id `metadata.uid`, the tenant `metadata.tenant_uid`.
//! The Kubernetes user of an exec/attach/run is `actor.user` of its API Activity; the
//! processes of that session share its `correlation_uid`. Kubernetes names OCSF has no place
//! for (cluster, namespace, pod, workload) and our correlation details go to `unmapped`,
//! under their Activity Audit attribute names.

use crate::{Cloud, basename, ms};
use schemas::{ActivityEvent, ActivityType};
use serde::Serialize;
use std::borrow::Cow;

pub const VERSION: &str = "1.8.0";
const PRODUCT: Product = Product {
    name: "Activity Audit",
    vendor_name: "Activity Audit",
    version: env!("CARGO_PKG_VERSION"),
};

fn empty(s: &&str) -> bool {
    s.is_empty()
}
fn no_strings(v: &&[String]) -> bool {
    v.is_empty()
}
fn zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: &'static Product,
    uid: &'a str,
    #[serde(skip_serializing_if = "empty")]
    correlation_uid: &'a str,
    #[serde(skip_serializing_if = "empty")]
    tenant_uid: &'a str,
    log_provider: &'static str,
    #[serde(skip_serializing_if = "zero")]
    logged_time: i64,
    #[serde(skip_serializing_if = "empty")]
    original_event_uid: &'a str,
    profiles: &'static [&'static str],
}

#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<Group<'a>>,
}

impl User<'_> {
    fn is_empty(&self) -> bool {
        self.name.is_empty() && self.uid.is_none() && self.groups.is_empty()
    }
}

#[derive(Serialize)]
struct Group<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct File<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "empty")]
    path: &'a str,
    #[serde(skip_serializing_if = "empty")]
    parent_folder: &'a str,
    /// 1: Regular File.
    type_id: u8,
}

#[derive(Serialize)]
struct Image<'a> {
    uid: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "empty")]
    tag: &'a str,
}

#[derive(Serialize)]
struct Container<'a> {
    #[serde(skip_serializing_if = "empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Image<'a>>,
    #[serde(skip_serializing_if = "empty")]
    orchestrator: &'static str,
}

#[derive(Serialize)]
struct Session<'a> {
    #[serde(skip_serializing_if = "empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    terminal: Option<String>,
}

#[derive(Serialize, Default)]
struct Process<'a> {
    #[serde(skip_serializing_if = "zero")]
    pid: i64,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "empty")]
    cmd_line: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<File<'a>>,
    #[serde(skip_serializing_if = "empty")]
    working_directory: &'a str,
    #[serde(skip_serializing_if = "zero")]
    created_time: i64,
    #[serde(skip_serializing_if = "empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Session<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Container<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_process: Option<Box<Process<'a>>>,
}

/// OCSF wants at least one member; `app_name` names the producer when nothing else is known.
#[derive(Serialize)]
struct Actor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    app_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Session<'a>>,
}

impl<'a> Actor<'a> {
    fn new(
        user: Option<User<'a>>,
        process: Option<Process<'a>>,
        session: Option<Session<'a>>,
        producer: &'static str,
    ) -> Self {
        let nothing = user.is_none() && process.is_none() && session.is_none();
        Actor {
            app_name: nothing.then_some(producer),
            user,
            process,
            session,
        }
    }
}

#[derive(Serialize)]
struct Device<'a> {
    /// 1: Server (a node), 0: Unknown.
    type_id: u8,
    #[serde(skip_serializing_if = "empty")]
    hostname: &'a str,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "empty")]
    mac: &'a str,
}

#[derive(Serialize, Default)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "empty")]
    ip: &'a str,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "zero")]
    port: i64,
    #[serde(skip_serializing_if = "no_strings")]
    intermediate_ips: &'a [String],
}

#[derive(Serialize)]
struct ConnectionInfo {
    /// 0 Unknown, 1 Inbound, 2 Outbound.
    direction_id: u8,
    #[serde(skip_serializing_if = "empty")]
    protocol_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol_num: Option<u8>,
}

#[derive(Serialize)]
struct Api<'a> {
    operation: &'a str,
    service: ApiService,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Uid<'a>>,
}

#[derive(Serialize)]
struct ApiService {
    name: &'static str,
}

#[derive(Serialize)]
struct Uid<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "empty")]
    uid: &'a str,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    user_agent: &'a str,
}

#[derive(Serialize)]
struct HttpResponse {
    code: i64,
}

/// Activity Audit attributes OCSF has no place for, under their own names.
#[derive(Serialize)]
struct Unmapped<'a> {
    #[serde(rename = "kubernetes.cluster.name", skip_serializing_if = "empty")]
    cluster: &'a str,
    #[serde(rename = "kubernetes.namespace.name", skip_serializing_if = "empty")]
    namespace: &'a str,
    #[serde(rename = "kubernetes.pod.name", skip_serializing_if = "empty")]
    pod: &'a str,
    #[serde(rename = "kubernetes.workload.kind", skip_serializing_if = "empty")]
    workload_kind: &'a str,
    #[serde(rename = "kubernetes.workload.name", skip_serializing_if = "empty")]
    workload_name: &'a str,
    #[serde(rename = "kubernetes.node.name", skip_serializing_if = "empty")]
    node: &'a str,
    #[serde(rename = "kubernetes.pod.labels", skip_serializing_if = "no_strings")]
    pod_labels: &'a [String],
    #[serde(
        rename = "kubernetes.namespace.labels",
        skip_serializing_if = "no_strings"
    )]
    namespace_labels: &'a [String],
    #[serde(rename = "traceConfidence", skip_serializing_if = "Option::is_none")]
    trace_confidence: Option<f32>,
    #[serde(rename = "traceLink", skip_serializing_if = "empty")]
    trace_link: &'a str,
    #[serde(rename = "traceCandidates", skip_serializing_if = "no_strings")]
    trace_candidates: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "empty")]
    enrichment: &'a str,
    #[serde(rename = "loginShellId", skip_serializing_if = "Option::is_none")]
    login_shell_id: Option<i64>,
    #[serde(rename = "loginShellDistance", skip_serializing_if = "Option::is_none")]
    login_shell_distance: Option<i64>,
    #[serde(rename = "inInitTree", skip_serializing_if = "Option::is_none")]
    in_init_tree: Option<bool>,
    #[serde(skip_serializing_if = "empty")]
    permissions: &'a str,
    #[serde(skip_serializing_if = "empty")]
    pcomm: &'a str,
    #[serde(skip_serializing_if = "empty")]
    command: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stdin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tty: Option<i64>,
}

/// One OCSF event; the class-specific members are set by class.
#[derive(Serialize)]
struct Event<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u8,
    severity: &'static str,
    time: i64,
    #[serde(skip_serializing_if = "zero")]
    start_time: i64,
    #[serde(skip_serializing_if = "zero")]
    end_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<String>,
    message: String,
    metadata: Metadata<'a>,
    cloud: &'a Cloud,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Device<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<File<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_endpoint: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_endpoint: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_info: Option<ConnectionInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<Api<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<Resource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_response: Option<HttpResponse>,
    unmapped: Unmapped<'a>,
}

const WITH_CONTAINER: &[&str] = &["cloud", "container", "host"];
const WITHOUT_CONTAINER: &[&str] = &["cloud", "host"];

/// Splits an image reference into OCSF's image: the digest (or the whole reference) is its
/// uid, the repository its name, the tag its tag.
fn image(reference: &str) -> Option<Image<'_>> {
    if reference.is_empty() {
        return None;
    }
    let (name, tag, digest) = crate::image_parts(reference);
    Some(Image {
        uid: if digest.is_empty() { reference } else { digest },
        name,
        tag,
    })
}

fn container(e: &ActivityEvent) -> Option<Container<'_>> {
    if e.container_id.is_empty() && e.container_name.is_empty() {
        return None;
    }
    Some(Container {
        uid: &e.container_id,
        name: &e.container_name,
        image: image(&e.container_image),
        orchestrator: if e.pod.is_empty() { "" } else { "Kubernetes" },
    })
}

fn os_user(name: &str, uid: Option<i64>) -> Option<User<'_>> {
    let u = User {
        name,
        uid: uid.map(|u| u.to_string()),
        groups: Vec::new(),
    };
    (!u.is_empty()).then_some(u)
}

fn session(e: &ActivityEvent) -> Option<Session<'_>> {
    let terminal = e.tty.filter(|t| *t != 0).map(|t| t.to_string());
    (!e.trace_id.is_empty() || terminal.is_some()).then_some(Session {
        uid: &e.trace_id,
        terminal,
    })
}

/// The process an agent event is about (the launched one for a command, the actor of a
/// connection or file access).
fn process(e: &ActivityEvent) -> Process<'_> {
    // OCSF identifies a process by pid or uid: a parent known only by name stays in
    // `unmapped.pcomm`.
    let parent = (e.ppid != 0 || !e.parent_exec_id.is_empty()).then(|| {
        Box::new(Process {
            pid: e.ppid,
            name: &e.pcomm,
            uid: &e.parent_exec_id,
            ..Default::default()
        })
    });
    Process {
        pid: e.pid,
        name: &e.comm,
        cmd_line: &e.cmdline,
        file: (!e.exe.is_empty()).then(|| File {
            name: basename(&e.exe),
            path: &e.exe,
            parent_folder: "",
            type_id: 1,
        }),
        working_directory: &e.cwd,
        created_time: ms(e.process_start_time),
        uid: &e.exec_id,
        user: os_user(&e.username, e.uid),
        session: session(e),
        container: container(e),
        parent_process: parent,
    }
}

/// `type_name`: "<class_name>: <activity_name>", for the pairs `write` produces.
fn type_name(class: &str, activity: &str) -> &'static str {
    macro_rules! names {
        ($($class:literal: $($activity:literal),+;)+) => {
            match (class, activity) {
                $($(($class, $activity) => concat!($class, ": ", $activity),)+)+
                _ => "Unknown",
            }
        };
    }
    names! {
        "Process Activity": "Launch";
        "Network Activity": "Open";
        "File System Activity": "Read", "Update", "Open";
        "API Activity": "Create", "Read", "Update", "Delete", "Other";
    }
}

/// Writes `e` as one OCSF JSON object into `out`.
pub fn write(e: &ActivityEvent, cloud: &Cloud, out: &mut Vec<u8>) {
    let (class_uid, class_name, category_uid, category_name) = match e.kind {
        ActivityType::Command => (1007, "Process Activity", 1, "System Activity"),
        ActivityType::Connection => (4001, "Network Activity", 4, "Network Activity"),
        ActivityType::Fileaccess => (1001, "File System Activity", 1, "System Activity"),
        ActivityType::Kubernetes => (6003, "API Activity", 6, "Application Activity"),
    };
    let (activity_id, activity_name) = match e.kind {
        ActivityType::Command => (1, "Launch"),
        ActivityType::Connection => (1, "Open"),
        ActivityType::Fileaccess => match e.permissions.as_str() {
            "r" => (2, "Read"),
            "w" => (3, "Update"),
            _ => (14, "Open"),
        },
        ActivityType::Kubernetes => match e.verb.as_str() {
            "create" => (1, "Create"),
            "get" | "list" | "watch" => (2, "Read"),
            "update" | "patch" => (3, "Update"),
            "delete" | "deletecollection" => (4, "Delete"),
            _ => (99, "Other"),
        },
    };
    let is_kube = e.kind == ActivityType::Kubernetes;
    let profiles = if container(e).is_some() {
        WITH_CONTAINER
    } else {
        WITHOUT_CONTAINER
    };
    let device = (!is_kube || !e.hostname.is_empty()).then_some(Device {
        type_id: if e.hostname.is_empty() { 0 } else { 1 },
        hostname: &e.hostname,
        // OCSF needs a name, hostname or address: an agent that sent none is "unknown".
        name: if !e.node.is_empty() {
            &e.node
        } else if e.hostname.is_empty() {
            "unknown"
        } else {
            ""
        },
        mac: &e.host_mac,
    });
    let mut ev = Event {
        class_uid,
        class_name,
        category_uid,
        category_name,
        activity_id,
        activity_name,
        type_uid: class_uid * 100 + activity_id,
        type_name: type_name(class_name, activity_name),
        severity_id: 1,
        severity: "Informational",
        time: ms(e.timestamp),
        start_time: 0,
        end_time: 0,
        status_id: None,
        status_code: None,
        message: crate::summary(e),
        metadata: Metadata {
            version: VERSION,
            product: &PRODUCT,
            uid: &e.id,
            correlation_uid: &e.trace_id,
            tenant_uid: &e.tenant,
            log_provider: e.source.as_str(),
            logged_time: ms(e.received_timestamp),
            original_event_uid: &e.audit_id,
            profiles,
        },
        cloud,
        device,
        actor: None,
        process: None,
        file: None,
        src_endpoint: None,
        dst_endpoint: None,
        connection_info: None,
        api: None,
        resources: Vec::new(),
        http_request: None,
        http_response: None,
        unmapped: Unmapped {
            cluster: &e.cluster,
            namespace: &e.namespace,
            pod: &e.pod,
            workload_kind: &e.workload_kind,
            workload_name: &e.workload_name,
            node: &e.node,
            pod_labels: &e.pod_labels,
            namespace_labels: &e.namespace_labels,
            trace_confidence: (e.trace_confidence != 0.0).then_some(e.trace_confidence),
            trace_link: &e.trace_link,
            trace_candidates: &e.trace_candidates,
            revision: (e.revision != 0).then_some(e.revision),
            enrichment: &e.enrichment,
            login_shell_id: e.login_shell_id,
            login_shell_distance: e.login_shell_distance,
            in_init_tree: e.in_init_tree,
            permissions: &e.permissions,
            pcomm: if e.ppid == 0 && e.parent_exec_id.is_empty() {
                &e.pcomm
            } else {
                ""
            },
            command: "",
            stdin: false,
            tty: None,
        },
    };
    match e.kind {
        ActivityType::Command => {
            let p = process(e);
            // The actor launched the process: its parent, run by the login user.
            ev.actor = Some(Actor::new(
                os_user(&e.user_login_name, e.user_login_uid)
                    .or_else(|| os_user(&e.username, e.uid)),
                p.parent_process.as_deref().map(|pp| Process {
                    pid: pp.pid,
                    name: pp.name,
                    uid: pp.uid,
                    ..Default::default()
                }),
                session(e),
                e.source.as_str(),
            ));
            ev.process = Some(p);
        }
        ActivityType::Connection | ActivityType::Fileaccess => {
            let p = process(e);
            ev.actor = Some(Actor::new(
                os_user(&e.username, e.uid)
                    .or_else(|| os_user(&e.user_login_name, e.user_login_uid)),
                (p.pid != 0 || !p.uid.is_empty()).then_some(p),
                session(e),
                e.source.as_str(),
            ));
            if e.kind == ActivityType::Connection {
                ev.src_endpoint = (!e.client_ip.is_empty()).then_some(Endpoint {
                    ip: &e.client_ip,
                    port: e.client_port,
                    ..Default::default()
                });
                ev.dst_endpoint = (!e.server_ip.is_empty()).then_some(Endpoint {
                    ip: &e.server_ip,
                    port: e.server_port,
                    ..Default::default()
                });
                ev.connection_info = Some(ConnectionInfo {
                    direction_id: match e.direction.as_str() {
                        "in" => 1,
                        "out" => 2,
                        _ => 0,
                    },
                    protocol_name: match e.l4protocol.as_str() {
                        "tcp" => "tcp",
                        "udp" => "udp",
                        _ => "",
                    },
                    protocol_num: match e.l4protocol.as_str() {
                        "tcp" => Some(6),
                        "udp" => Some(17),
                        _ => None,
                    },
                });
            } else {
                ev.file = Some(File {
                    name: basename(&e.filename),
                    path: &e.filename,
                    parent_folder: &e.directory,
                    type_id: 1,
                });
            }
        }
        ActivityType::Kubernetes => {
            ev.actor = Some(Actor::new(
                (!e.user_name.is_empty()).then(|| User {
                    name: &e.user_name,
                    uid: None,
                    groups: e.user_groups.iter().map(|g| Group { name: g }).collect(),
                }),
                None,
                (!e.trace_id.is_empty()).then_some(Session {
                    uid: &e.trace_id,
                    terminal: None,
                }),
                e.source.as_str(),
            ));
            ev.api = Some(Api {
                operation: &e.verb,
                service: ApiService {
                    name: "kube-apiserver",
                },
                request: (!e.audit_id.is_empty()).then_some(Uid { uid: &e.audit_id }),
            });
            let (first, rest) = e
                .source_addresses
                .split_first()
                .map_or(("", &[][..]), |(f, r)| (f.as_str(), r));
            // Required by API Activity; the API server always reports the client address,
            // a hand-made event may not.
            ev.src_endpoint = Some(Endpoint {
                ip: first,
                name: if first.is_empty() { "unknown" } else { "" },
                port: 0,
                intermediate_ips: rest,
            });
            let kind = if e.sub_resource.is_empty() {
                Cow::Borrowed(e.resource.as_str())
            } else {
                Cow::Owned(format!("{}/{}", e.resource, e.sub_resource))
            };
            if !e.pod.is_empty() {
                ev.resources.push(Resource {
                    kind,
                    name: &e.pod,
                    namespace: &e.namespace,
                    uid: "",
                });
            }
            if !e.container.is_empty() {
                ev.resources.push(Resource {
                    kind: Cow::Borrowed("containers"),
                    name: &e.container,
                    namespace: &e.namespace,
                    uid: &e.container_id,
                });
            }
            if !e.user_agent.is_empty() {
                ev.http_request = Some(HttpRequest {
                    user_agent: &e.user_agent,
                });
            }
            if e.response_code != 0 {
                ev.http_response = Some(HttpResponse {
                    code: e.response_code,
                });
                ev.status_id = Some(if e.response_code < 400 { 1 } else { 2 });
                ev.status_code = Some(e.response_code.to_string());
            }
            ev.start_time = ms(e.stages_started);
            ev.end_time = ms(e.stages_completed);
            ev.unmapped.command = &e.command;
            ev.unmapped.stdin = e.stdin;
            ev.unmapped.tty = e.tty;
        }
    }
    schemas::json::write(out, &ev).expect("an OCSF event has only string keys");
}

#[cfg(test)]
mod tests {
    use super::write;
    use crate::Cloud;
    use schemas::{ActivityEvent, ActivityType};

    /// `type_name` is "<class_name>: <activity_name>" for every class and activity written.
    #[test]
    fn type_names_match_class_and_activity() {
        let mut seen = std::collections::HashSet::new();
        let kinds = [
            (ActivityType::Command, ""),
            (ActivityType::Connection, ""),
            (ActivityType::Fileaccess, "r"),
            (ActivityType::Fileaccess, "w"),
            (ActivityType::Fileaccess, "rw"),
            (ActivityType::Kubernetes, "create"),
            (ActivityType::Kubernetes, "get"),
            (ActivityType::Kubernetes, "patch"),
            (ActivityType::Kubernetes, "delete"),
            (ActivityType::Kubernetes, "proxy"),
        ];
        for (kind, how) in kinds {
            let e = ActivityEvent {
                kind,
                permissions: how.into(),
                verb: how.into(),
                ..Default::default()
            };
            let mut out = Vec::new();
            write(&e, &Cloud::default(), &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let want = format!(
                "{}: {}",
                v["class_name"].as_str().unwrap(),
                v["activity_name"].as_str().unwrap()
            );
            assert_eq!(v["type_name"], want.as_str());
            assert_eq!(
                v["type_uid"],
                v["class_uid"].as_i64().unwrap() * 100 + v["activity_id"].as_i64().unwrap()
            );
            seen.insert(want);
        }
        assert_eq!(seen.len(), 10, "{seen:?}");
    }
}

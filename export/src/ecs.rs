//! Elastic Common Schema 8.11 documents, for Elastic and Splunk users.
//!
//! `command` → `event.category: process` (`start`), `connection` → `network` (`connection`,
//! `start`), `fileaccess` → `file` (`access` / `change`), `kubernetes` → `api` + `session`
//! (`start`). Kubernetes metadata goes to `orchestrator.*` and `container.*`, the node to
//! `host.*`, the trace id to `trace.id`, the tenant to `organization.id`, the event id to
//! `event.id` (index with it as `_id` to deduplicate). Activity Audit's own attributes that
//! ECS has no field for are custom fields under `activity_audit.*`, as ECS asks.

use crate::basename;
use schemas::{ActivityEvent, ActivityType};
use serde::Serialize;

pub const VERSION: &str = "8.11.0";

fn empty(s: &&str) -> bool {
    s.is_empty()
}
fn no_strings(v: &&[String]) -> bool {
    v.is_empty()
}
fn zero(n: &i64) -> bool {
    *n == 0
}

/// RFC 3339 with nanoseconds, as `date` fields take it.
fn date(ns: i64) -> Option<String> {
    (ns != 0).then(|| schemas::time::format_rfc3339_ns(ns))
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    message: String,
    ecs: Ecs,
    event: Event<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: Option<Cloud<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<Host<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Container<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orchestrator: Option<Orchestrator<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<File<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<UserAgent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http>,
    related: Related<'a>,
    activity_audit: Custom<'a>,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Id<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Event<'a> {
    id: &'a str,
    kind: &'static str,
    category: &'static [&'static str],
    #[serde(rename = "type")]
    types: &'static [&'static str],
    action: &'static str,
    module: &'static str,
    dataset: &'static str,
    provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingested: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
}

#[derive(Serialize)]
struct Cloud<'a> {
    provider: &'a str,
    #[serde(skip_serializing_if = "empty")]
    region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<Id<'a>>,
}

#[derive(Serialize)]
struct Host<'a> {
    #[serde(skip_serializing_if = "empty")]
    hostname: &'a str,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    mac: &'a [&'a str],
}

#[derive(Serialize)]
struct Container<'a> {
    #[serde(skip_serializing_if = "empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Image<'a>>,
}

#[derive(Serialize)]
struct Image<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    tag: &'a [&'a str],
}

#[derive(Serialize)]
struct Orchestrator<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Name<'a>>,
    #[serde(skip_serializing_if = "empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Resource<'a>>,
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Parent<'a>>,
}

#[derive(Serialize)]
struct Parent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize, Default)]
struct Process<'a> {
    #[serde(skip_serializing_if = "zero")]
    pid: i64,
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "empty")]
    command_line: &'a str,
    #[serde(skip_serializing_if = "empty")]
    executable: &'a str,
    #[serde(skip_serializing_if = "empty")]
    working_directory: &'a str,
    #[serde(skip_serializing_if = "empty")]
    entity_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interactive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Box<Process<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_leader: Option<Box<Process<'a>>>,
}

#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

fn user(name: &str, id: Option<i64>) -> Option<User<'_>> {
    (!name.is_empty() || id.is_some()).then(|| User {
        name,
        id: id.map(|i| i.to_string()),
    })
}

#[derive(Serialize)]
struct Endpoint<'a> {
    ip: &'a str,
    #[serde(skip_serializing_if = "zero")]
    port: i64,
}

#[derive(Serialize)]
struct Network {
    #[serde(skip_serializing_if = "empty")]
    transport: &'static str,
    #[serde(skip_serializing_if = "empty")]
    iana_number: &'static str,
    #[serde(skip_serializing_if = "empty")]
    direction: &'static str,
}

#[derive(Serialize)]
struct File<'a> {
    path: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "empty")]
    directory: &'a str,
}

#[derive(Serialize)]
struct UserAgent<'a> {
    original: &'a str,
}

#[derive(Serialize)]
struct Http {
    response: Response,
}

#[derive(Serialize)]
struct Response {
    status_code: i64,
}

#[derive(Serialize)]
struct Related<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<&'a str>,
}

/// `activity_audit.*`: our attributes without an ECS field.
#[derive(Serialize)]
struct Custom<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "empty")]
    enrichment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<Trace<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<Workload<'a>>,
    /// The pod's and its namespace's labels, `key=value`.
    #[serde(skip_serializing_if = "no_strings")]
    pod_labels: &'a [String],
    #[serde(skip_serializing_if = "no_strings")]
    namespace_labels: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    tty: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    login_shell: Option<LoginShell>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_init_tree: Option<bool>,
    #[serde(skip_serializing_if = "empty")]
    permissions: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes: Option<Kube<'a>>,
}

#[derive(Serialize)]
struct Trace<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f32>,
    #[serde(skip_serializing_if = "empty")]
    link: &'a str,
    #[serde(skip_serializing_if = "no_strings")]
    candidates: &'a [String],
}

#[derive(Serialize)]
struct Workload<'a> {
    kind: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct LoginShell {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<i64>,
}

#[derive(Serialize)]
struct Kube<'a> {
    verb: &'a str,
    resource: &'a str,
    #[serde(skip_serializing_if = "empty")]
    subresource: &'a str,
    #[serde(skip_serializing_if = "empty")]
    command: &'a str,
    #[serde(skip_serializing_if = "empty")]
    container: &'a str,
    stdin: bool,
    #[serde(skip_serializing_if = "no_strings")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "no_strings")]
    source_addresses: &'a [String],
    #[serde(skip_serializing_if = "empty")]
    audit_id: &'a str,
}

fn process(e: &ActivityEvent) -> Process<'_> {
    let parent = (e.ppid != 0 || !e.pcomm.is_empty() || !e.parent_exec_id.is_empty()).then(|| {
        Box::new(Process {
            pid: e.ppid,
            name: &e.pcomm,
            entity_id: &e.parent_exec_id,
            ..Default::default()
        })
    });
    Process {
        pid: e.pid,
        name: &e.comm,
        command_line: &e.cmdline,
        executable: &e.exe,
        working_directory: &e.cwd,
        entity_id: &e.exec_id,
        start: date(e.process_start_time),
        interactive: e.tty.map(|t| t != 0),
        user: user(&e.username, e.uid),
        parent,
        session_leader: e.login_shell_id.filter(|pid| *pid > 0).map(|pid| {
            Box::new(Process {
                pid,
                ..Default::default()
            })
        }),
    }
}

/// Writes `e` as one ECS JSON document into `out`.
pub fn write(e: &ActivityEvent, cloud: &crate::Cloud, out: &mut Vec<u8>) {
    let (category, types, action): (&[&str], &[&str], &str) = match e.kind {
        ActivityType::Command => (&["process"], &["start"], "process-started"),
        ActivityType::Connection => (
            &["network"],
            &["connection", "start"],
            if e.direction == "in" {
                "connection-accepted"
            } else {
                "connection-attempted"
            },
        ),
        ActivityType::Fileaccess => match e.permissions.as_str() {
            "w" => (&["file"], &["change"], "file-opened-for-write"),
            "rw" => (&["file"], &["access", "change"], "file-opened-for-write"),
            _ => (&["file"], &["access"], "file-opened"),
        },
        ActivityType::Kubernetes => (
            &["api", "session"],
            &["start"],
            match e.sub_resource.as_str() {
                "exec" => "exec",
                "attach" => "attach",
                _ => "run",
            },
        ),
    };
    let dataset = match e.kind {
        ActivityType::Command => "activity_audit.command",
        ActivityType::Connection => "activity_audit.connection",
        ActivityType::Fileaccess => "activity_audit.fileaccess",
        ActivityType::Kubernetes => "activity_audit.kubernetes",
    };
    let is_kube = e.kind == ActivityType::Kubernetes;
    let mac = [e.host_mac.as_str()];
    let (image_name, image_tag, _) = crate::image_parts(&e.container_image);
    let tags = [image_tag];
    let mut related = Related {
        ip: Vec::new(),
        user: Vec::new(),
        hosts: Vec::new(),
    };
    for ip in [e.client_ip.as_str(), e.server_ip.as_str()]
        .into_iter()
        .chain(e.source_addresses.iter().map(String::as_str))
    {
        if !ip.is_empty() && !related.ip.contains(&ip) {
            related.ip.push(ip);
        }
    }
    for u in [
        e.user_name.as_str(),
        e.username.as_str(),
        e.user_login_name.as_str(),
    ] {
        if !u.is_empty() && !related.user.contains(&u) {
            related.user.push(u);
        }
    }
    if !e.hostname.is_empty() {
        related.hosts.push(&e.hostname);
    }
    let mut doc = Doc {
        timestamp: schemas::time::format_rfc3339_ns(e.timestamp),
        message: crate::summary(e),
        ecs: Ecs { version: VERSION },
        event: Event {
            id: &e.id,
            kind: "event",
            category,
            types,
            action,
            module: "activity_audit",
            dataset,
            provider: e.source.as_str(),
            ingested: date(e.received_timestamp),
            start: date(e.stages_started),
            end: date(e.stages_completed),
            outcome: (is_kube && e.response_code != 0).then_some(if e.response_code < 400 {
                "success"
            } else {
                "failure"
            }),
        },
        organization: (!e.tenant.is_empty()).then_some(Id { id: &e.tenant }),
        trace: (!e.trace_id.is_empty()).then_some(Id { id: &e.trace_id }),
        cloud: (!cloud.provider.is_empty()).then(|| Cloud {
            provider: &cloud.provider,
            region: &cloud.region,
            account: cloud.account.as_ref().map(|a| Id { id: &a.uid }),
        }),
        host: (!e.hostname.is_empty() || !e.node.is_empty()).then_some(Host {
            hostname: &e.hostname,
            name: if e.node.is_empty() {
                &e.hostname
            } else {
                &e.node
            },
            mac: if e.host_mac.is_empty() { &[] } else { &mac },
        }),
        container: (!e.container_id.is_empty() || !e.container_name.is_empty()).then(|| {
            Container {
                id: &e.container_id,
                name: &e.container_name,
                image: (!e.container_image.is_empty()).then_some(Image {
                    name: image_name,
                    tag: if image_tag.is_empty() { &[] } else { &tags },
                }),
            }
        }),
        orchestrator: (!e.cluster.is_empty() || !e.pod.is_empty()).then(|| Orchestrator {
            kind: "kubernetes",
            cluster: (!e.cluster.is_empty()).then_some(Name { name: &e.cluster }),
            namespace: &e.namespace,
            resource: (!e.pod.is_empty()).then(|| Resource {
                kind: "pod",
                name: &e.pod,
                parent: (!e.workload_kind.is_empty()).then_some(Parent {
                    kind: &e.workload_kind,
                }),
            }),
        }),
        process: None,
        user: None,
        source: None,
        destination: None,
        network: None,
        file: None,
        user_agent: None,
        http: None,
        related,
        activity_audit: Custom {
            kind: e.kind.as_str(),
            source: e.source.as_str(),
            revision: (e.revision != 0).then_some(e.revision),
            enrichment: &e.enrichment,
            trace: (e.trace_confidence != 0.0
                || !e.trace_link.is_empty()
                || !e.trace_candidates.is_empty())
            .then_some(Trace {
                confidence: (e.trace_confidence != 0.0).then_some(e.trace_confidence),
                link: &e.trace_link,
                candidates: &e.trace_candidates,
            }),
            workload: (!e.workload_name.is_empty()).then_some(Workload {
                kind: &e.workload_kind,
                name: &e.workload_name,
            }),
            pod_labels: &e.pod_labels,
            namespace_labels: &e.namespace_labels,
            tty: e.tty,
            login_shell: (e.login_shell_id.is_some() || e.login_shell_distance.is_some())
                .then_some(LoginShell {
                    pid: e.login_shell_id,
                    distance: e.login_shell_distance,
                }),
            in_init_tree: e.in_init_tree,
            permissions: &e.permissions,
            kubernetes: None,
        },
    };
    match e.kind {
        ActivityType::Command | ActivityType::Connection | ActivityType::Fileaccess => {
            doc.process = Some(process(e));
            doc.user =
                user(&e.user_login_name, e.user_login_uid).or_else(|| user(&e.username, e.uid));
        }
        ActivityType::Kubernetes => {
            doc.user = user(&e.user_name, None);
            if let Some(ip) = e.source_addresses.first() {
                doc.source = Some(Endpoint { ip, port: 0 });
            }
            if !e.user_agent.is_empty() {
                doc.user_agent = Some(UserAgent {
                    original: &e.user_agent,
                });
            }
            if e.response_code != 0 {
                doc.http = Some(Http {
                    response: Response {
                        status_code: e.response_code,
                    },
                });
            }
            doc.activity_audit.kubernetes = Some(Kube {
                verb: &e.verb,
                resource: &e.resource,
                subresource: &e.sub_resource,
                command: &e.command,
                container: &e.container,
                stdin: e.stdin,
                groups: &e.user_groups,
                source_addresses: &e.source_addresses,
                audit_id: &e.audit_id,
            });
        }
    }
    if e.kind == ActivityType::Connection {
        if !e.client_ip.is_empty() {
            doc.source = Some(Endpoint {
                ip: &e.client_ip,
                port: e.client_port,
            });
        }
        if !e.server_ip.is_empty() {
            doc.destination = Some(Endpoint {
                ip: &e.server_ip,
                port: e.server_port,
            });
        }
        doc.network = Some(Network {
            transport: match e.l4protocol.as_str() {
                "tcp" => "tcp",
                "udp" => "udp",
                _ => "",
            },
            iana_number: match e.l4protocol.as_str() {
                "tcp" => "6",
                "udp" => "17",
                _ => "",
            },
            direction: match e.direction.as_str() {
                "in" => "ingress",
                "out" => "egress",
                _ => "unknown",
            },
        });
    }
    if e.kind == ActivityType::Fileaccess {
        doc.file = Some(File {
            path: &e.filename,
            name: basename(&e.filename),
            directory: &e.directory,
        });
    }
    schemas::json::write(out, &doc).expect("an ECS document has only string keys");
}

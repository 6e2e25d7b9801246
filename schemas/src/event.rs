//! The `ActivityEvent`: one record of who ran what, where, and what it touched.
//!
//! Every stage reads and writes this type; its serde form (flat JSON whose keys are the external
//! attribute names of the brief, e.g. `kubernetes.pod.name`) is both the native ingest format
//! and the format of every internal topic. Empty strings, empty lists and absent numbers are
//! omitted on output and default on input, so producers send only what they know.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The four data sources of Activity Audit.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ActivityType {
    /// An interactive command (a process with a tty, under a login shell, or exec'd in).
    #[default]
    Command,
    /// A TCP/UDP connection opened or accepted by an interactive process.
    Connection,
    /// A file opened for read or write by an interactive process.
    Fileaccess,
    /// A `kubectl exec` / `attach` / `run` request from the API server audit log.
    Kubernetes,
}

impl ActivityType {
    pub const ALL: [ActivityType; 4] = [
        ActivityType::Command,
        ActivityType::Connection,
        ActivityType::Fileaccess,
        ActivityType::Kubernetes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityType::Command => "command",
            ActivityType::Connection => "connection",
            ActivityType::Fileaccess => "fileaccess",
            ActivityType::Kubernetes => "kubernetes",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for ActivityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which producer an event came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Source {
    #[serde(rename = "k8s-audit")]
    K8sAudit,
    #[serde(rename = "falco")]
    Falco,
    #[serde(rename = "tetragon")]
    Tetragon,
    #[default]
    #[serde(rename = "native")]
    Native,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::K8sAudit => "k8s-audit",
            Source::Falco => "falco",
            Source::Tetragon => "tetragon",
            Source::Native => "native",
        }
    }
}

/// Whether a command name is a shell as brief §4 defines it (`*sh`), excluding `ssh`.
pub fn is_shell(comm: &str) -> bool {
    comm.ends_with("sh") && comm != "ssh" && !comm.ends_with("-ssh")
}

/// A flag: `true`/`false`, or `1`/`0` as databases and some agents print it.
pub fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    opt_flag(d).map(|b| b.unwrap_or(false))
}

pub fn opt_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match Option::<Flag>::deserialize(d)? {
        None => None,
        Some(Flag::Bool(b)) => Some(b),
        Some(Flag::Int(0)) => Some(false),
        Some(Flag::Int(1)) => Some(true),
        Some(Flag::Int(n)) => {
            return Err(serde::de::Error::custom(format!(
                "expected a boolean or 0/1, got {n}"
            )));
        }
    })
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn is_zero_f32(n: &f32) -> bool {
    *n == 0.0
}

/// One activity record. Field names on the wire are the external attribute names (brief §2).
///
/// Numbers that are meaningful at zero (uid 0 is root, tty 0 is "no tty") are `Option`s so
/// "unknown" stays distinguishable from zero; pids, ports and times use 0 for unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActivityEvent {
    // ---- identity -------------------------------------------------------------------------
    /// Deterministic id: the same source event always gets the same id (see [`crate::id`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub source: Source,
    /// When the activity happened, ns since epoch.
    pub timestamp: i64,
    /// When ingest accepted it, ns since epoch.
    #[serde(rename = "receivedTimestamp", skip_serializing_if = "is_zero")]
    pub received_timestamp: i64,
    /// Tenant that owns the event; stamped by ingest from the caller's token, never trusted
    /// from the payload.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// The session (trace) this activity belongs to; empty outside any session.
    #[serde(rename = "traceId", skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    /// How sure the correlator is of `traceId` (0..=1); for an ambiguous link, 1 / candidates.
    #[serde(rename = "traceConfidence", skip_serializing_if = "is_zero_f32")]
    pub trace_confidence: f32,
    /// Why the event has its trace (or why it is ambiguous), e.g. `exec-root: argv0+tty+time`.
    #[serde(rename = "traceLink", skip_serializing_if = "String::is_empty")]
    pub trace_link: String,
    /// Traces an ambiguous event may belong to (then `traceId` is empty): never a guess.
    #[serde(rename = "traceCandidates", skip_serializing_if = "Vec::is_empty")]
    pub trace_candidates: Vec<String>,
    /// Correlation revision: the correlator re-emits an event when a late origin changes its
    /// trace; the store keeps the row with the highest revision.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub revision: u64,

    // ---- assets ---------------------------------------------------------------------------
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(rename = "host.mac", skip_serializing_if = "String::is_empty")]
    pub host_mac: String,
    #[serde(rename = "containerId", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(rename = "container.name", skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    #[serde(rename = "container.image", skip_serializing_if = "String::is_empty")]
    pub container_image: String,
    /// Stamped by ingest from the caller's token.
    #[serde(
        rename = "kubernetes.cluster.name",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster: String,
    #[serde(
        rename = "kubernetes.namespace.name",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    #[serde(
        rename = "kubernetes.workload.kind",
        skip_serializing_if = "String::is_empty"
    )]
    pub workload_kind: String,
    #[serde(
        rename = "kubernetes.workload.name",
        skip_serializing_if = "String::is_empty"
    )]
    pub workload_name: String,
    #[serde(
        rename = "kubernetes.pod.name",
        skip_serializing_if = "String::is_empty"
    )]
    pub pod: String,
    #[serde(
        rename = "kubernetes.node.name",
        skip_serializing_if = "String::is_empty"
    )]
    pub node: String,
    /// The pod's labels, `key=value`, sorted (from the Kubernetes API, via the enricher).
    #[serde(
        rename = "kubernetes.pod.labels",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pod_labels: Vec<String>,
    /// The pod's namespace's labels, `key=value`, sorted.
    #[serde(
        rename = "kubernetes.namespace.labels",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub namespace_labels: Vec<String>,
    /// Where the asset fields come from: `api` (the Kubernetes API, via the enricher) or
    /// `partial` (the API did not know the container or pod in time: only what the agent
    /// itself reported). Empty outside Kubernetes or without a configured cluster.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub enrichment: String,

    // ---- process (command, connection, fileaccess) ----------------------------------------
    #[serde(skip_serializing_if = "String::is_empty")]
    pub comm: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cmdline: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub exe: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cwd: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub pid: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub ppid: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pcomm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(rename = "userLoginUid", skip_serializing_if = "Option::is_none")]
    pub user_login_uid: Option<i64>,
    #[serde(rename = "userLoginName", skip_serializing_if = "String::is_empty")]
    pub user_login_name: String,
    /// Terminal device number (0: none). For `kubernetes` events, 1 when a tty was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<i64>,
    #[serde(rename = "loginShellId", skip_serializing_if = "Option::is_none")]
    pub login_shell_id: Option<i64>,
    #[serde(rename = "loginShellDistance", skip_serializing_if = "Option::is_none")]
    pub login_shell_distance: Option<i64>,
    /// Process start time, ns since epoch; with host and pid it keys a process (pids reuse).
    #[serde(rename = "processStartTime", skip_serializing_if = "is_zero")]
    pub process_start_time: i64,
    /// Agent-provided process lineage (Tetragon `exec_id`, or synthesised from Falco fields).
    #[serde(rename = "execId", skip_serializing_if = "String::is_empty")]
    pub exec_id: String,
    #[serde(rename = "parentExecId", skip_serializing_if = "String::is_empty")]
    pub parent_exec_id: String,
    /// Whether the process descends from the container's init process (false: exec'd in).
    #[serde(
        rename = "inInitTree",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flag"
    )]
    #[schemars(with = "Option<bool>")]
    pub in_init_tree: Option<bool>,

    // ---- connection -----------------------------------------------------------------------
    /// `in` or `out`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub direction: String,
    /// `tcp` or `udp`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub l4protocol: String,
    #[serde(rename = "clientIp", skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    #[serde(rename = "clientPort", skip_serializing_if = "is_zero")]
    pub client_port: i64,
    #[serde(rename = "serverIp", skip_serializing_if = "String::is_empty")]
    pub server_ip: String,
    #[serde(rename = "serverPort", skip_serializing_if = "is_zero")]
    pub server_port: i64,

    // ---- fileaccess -----------------------------------------------------------------------
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filename: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub directory: String,
    /// `r`, `w` or `rw`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub permissions: String,

    // ---- kubernetes -----------------------------------------------------------------------
    #[serde(skip_serializing_if = "String::is_empty")]
    pub verb: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(rename = "subResource", skip_serializing_if = "String::is_empty")]
    pub sub_resource: String,
    /// The command of an exec, argv joined by spaces.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// The container name of an exec/attach (resolved to `containerId` by the enricher).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container: String,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "flag")]
    #[schemars(with = "bool")]
    pub stdin: bool,
    #[serde(rename = "user.username", skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    #[serde(rename = "user.groups", skip_serializing_if = "Vec::is_empty")]
    pub user_groups: Vec<String>,
    #[serde(rename = "userAgent", skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(rename = "sourceAddresses", skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
    #[serde(rename = "auditId", skip_serializing_if = "String::is_empty")]
    pub audit_id: String,
    #[serde(rename = "responseCode", skip_serializing_if = "is_zero")]
    pub response_code: i64,
    #[serde(rename = "stages.started", skip_serializing_if = "is_zero")]
    pub stages_started: i64,
    #[serde(rename = "stages.completed", skip_serializing_if = "is_zero")]
    pub stages_completed: i64,
}

/// Why an event is not acceptable; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct InvalidEvent {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidEvent {
    InvalidEvent {
        field,
        problem: problem.into(),
    }
}

/// Earliest and latest timestamps we accept: 2000-01-01 and 2200-01-01, in ns. Anything else
/// is almost certainly seconds or milliseconds sent where nanoseconds were expected.
pub const MIN_TIMESTAMP_NS: i64 = 946_684_800_000_000_000;
pub const MAX_TIMESTAMP_NS: i64 = 7_258_118_400_000_000_000;

/// Longest string we store in one field; longer command lines are an attack on the store.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

impl ActivityEvent {
    /// Checks what every stage relies on; the error names the field.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        if !(MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS).contains(&self.timestamp) {
            return Err(invalid(
                "timestamp",
                format!(
                    "{} is not nanoseconds since epoch between 2000 and 2200",
                    self.timestamp
                ),
            ));
        }
        match self.kind {
            ActivityType::Command => {
                if self.comm.is_empty() && self.cmdline.is_empty() && self.exe.is_empty() {
                    return Err(invalid(
                        "comm",
                        "a command needs at least one of comm, cmdline or exe",
                    ));
                }
            }
            ActivityType::Connection => {
                if self.client_ip.is_empty() && self.server_ip.is_empty() {
                    return Err(invalid(
                        "serverIp",
                        "a connection needs clientIp or serverIp",
                    ));
                }
                if !matches!(self.direction.as_str(), "" | "in" | "out") {
                    return Err(invalid("direction", "must be \"in\" or \"out\""));
                }
                if !matches!(self.l4protocol.as_str(), "" | "tcp" | "udp") {
                    return Err(invalid("l4protocol", "must be \"tcp\" or \"udp\""));
                }
                for (field, port) in [
                    ("clientPort", self.client_port),
                    ("serverPort", self.server_port),
                ] {
                    if !(0..=65535).contains(&port) {
                        return Err(invalid(field, format!("{port} is not a port")));
                    }
                }
            }
            ActivityType::Fileaccess => {
                if self.filename.is_empty() {
                    return Err(invalid("filename", "a file access needs a filename"));
                }
                if !matches!(self.permissions.as_str(), "" | "r" | "w" | "rw") {
                    return Err(invalid("permissions", "must be \"r\", \"w\" or \"rw\""));
                }
            }
            ActivityType::Kubernetes => {
                if self.verb.is_empty() {
                    return Err(invalid("verb", "a kubernetes activity needs a verb"));
                }
                if self.resource.is_empty() {
                    return Err(invalid(
                        "resource",
                        "a kubernetes activity needs a resource",
                    ));
                }
            }
        }
        for (field, value) in self.long_strings() {
            if value.len() > MAX_FIELD_BYTES {
                return Err(invalid(
                    field,
                    format!(
                        "{} bytes exceeds the {MAX_FIELD_BYTES}-byte limit",
                        value.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn long_strings(&self) -> [(&'static str, &str); 4] {
        [
            ("cmdline", &self.cmdline),
            ("command", &self.command),
            ("filename", &self.filename),
            ("userAgent", &self.user_agent),
        ]
    }

    /// Fills fields derivable from others (file directory from its path). Idempotent.
    pub fn normalize(&mut self) {
        if self.kind == ActivityType::Fileaccess
            && self.directory.is_empty()
            && let Some(pos) = self.filename.rfind('/')
        {
            self.directory = if pos == 0 {
                "/".to_string()
            } else {
                self.filename[..pos].to_string()
            };
        }
    }

    /// `kubernetes.deployment.name`: the workload name when the workload is a Deployment.
    pub fn deployment_name(&self) -> &str {
        if self.workload_kind.eq_ignore_ascii_case("deployment") {
            &self.workload_name
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> ActivityEvent {
        ActivityEvent {
            kind: ActivityType::Command,
            timestamp: 1_700_000_000_000_000_000,
            comm: "bash".into(),
            uid: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn json_uses_external_names_and_omits_unknowns() {
        let mut e = command();
        e.cluster = "prod".into();
        e.pod = "web-1".into();
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains("\"kubernetes.cluster.name\":\"prod\""),
            "{json}"
        );
        assert!(json.contains("\"kubernetes.pod.name\":\"web-1\""), "{json}");
        assert!(json.contains("\"uid\":0"), "root must stay visible: {json}");
        assert!(!json.contains("userLoginUid"), "{json}");
        assert!(!json.contains("pid"), "{json}");
        let back: ActivityEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = serde_json::from_str::<ActivityEvent>(
            r#"{"type":"command","timestamp":1700000000000000000,"comm":"sh","bogus":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut e = command();
        e.timestamp = 1_700_000_000; // seconds, not ns
        assert_eq!(e.validate().unwrap_err().field, "timestamp");
        let mut f = command();
        f.kind = ActivityType::Fileaccess;
        assert_eq!(f.validate().unwrap_err().field, "filename");
        let mut c = command();
        c.kind = ActivityType::Connection;
        c.server_ip = "10.0.0.1".into();
        c.server_port = 70000;
        assert_eq!(c.validate().unwrap_err().field, "serverPort");
        assert!(command().validate().is_ok());
    }

    #[test]
    fn normalize_derives_directory() {
        let mut e = command();
        e.kind = ActivityType::Fileaccess;
        e.filename = "/etc/shadow".into();
        e.normalize();
        assert_eq!(e.directory, "/etc");
        e.filename = "/x".into();
        e.directory.clear();
        e.normalize();
        assert_eq!(e.directory, "/");
    }
}

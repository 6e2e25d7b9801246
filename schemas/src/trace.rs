//! Trace records: one per session, written by the correlator to the `traces` topic and stored
//! in the `traces` table (the JSON keys are the column names). A record is re-emitted with a
//! higher `revision` whenever the session grows or a late event changes it; the store keeps
//! the highest revision.

use serde::{Deserialize, Serialize};

/// How a session started.
pub mod kind {
    pub const EXEC: &str = "exec";
    pub const ATTACH: &str = "attach";
    pub const RUN: &str = "run";
    pub const SSH: &str = "ssh";
    pub const DROPBEAR: &str = "dropbear";
    pub const SHELL: &str = "shell";
}

/// One session: where and by whom it started, how long it lasted, what it did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TraceRecord {
    pub tenant: String,
    #[serde(rename = "traceId")]
    pub trace_id: String,
    /// One of [`kind`].
    pub kind: String,
    /// Id of the event that started the session (the audit event, or the login shell).
    #[serde(rename = "originId")]
    pub origin_id: String,
    /// Kubernetes user, or the login user of an ssh/shell session.
    pub user: String,
    pub groups: Vec<String>,
    /// Client addresses (audit `sourceIPs`, or the ssh client).
    #[serde(rename = "sourceAddresses")]
    pub source_addresses: Vec<String>,
    #[serde(rename = "userAgent")]
    pub user_agent: String,
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    /// Container name, and its id once a process of the session revealed it.
    pub container: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    pub hostname: String,
    /// The exec'd command, or the login shell's command line.
    pub command: String,
    /// First and last activity of the session, ns since epoch.
    pub start: i64,
    pub end: i64,
    pub commands: u64,
    pub connections: u64,
    pub fileaccesses: u64,
    /// Events that may belong to this session or another one (not counted above).
    pub ambiguous: u64,
    /// Lowest confidence of the session's links, and why.
    pub confidence: f32,
    pub reason: String,
    pub revision: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The correlator writes records with [`crate::json::write`]: serde_json's bytes.
    #[test]
    fn records_are_written_as_serde_json_writes_them() {
        let r = TraceRecord {
            tenant: "t".into(),
            trace_id: "0123abcd".into(),
            kind: kind::EXEC.into(),
            origin_id: "o".into(),
            user: "alice \"admin\"".into(),
            groups: vec!["system:masters".into(), "dev\tops".into()],
            source_addresses: vec!["10.0.0.1".into()],
            user_agent: "kubectl/v1.31.0 (linux/amd64)".into(),
            cluster: "prod".into(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            container: "app".into(),
            container_id: "abc".into(),
            hostname: "node-1".into(),
            command: "sh -c 'echo \\\\ok'".into(),
            start: 1_700_000_000_000_000_000,
            end: 1_700_000_001_000_000_000,
            commands: 3,
            connections: 2,
            fileaccesses: 1,
            ambiguous: 1,
            confidence: 0.85,
            reason: "exec-root: argv0+tty+time".into(),
            revision: 7 << 20,
        };
        for r in [r, TraceRecord::default()] {
            let mut ours = Vec::new();
            crate::json::write(&mut ours, &r).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }
    }
}

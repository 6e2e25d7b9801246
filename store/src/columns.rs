//! The `events` table's columns: name, ClickHouse type, the external attribute name users
//! filter on, and the RowBinary encoding of an [`ActivityEvent`] in exactly this order.
//! [`COLUMNS`] is the single source for the DDL, the insert and the reads.

/// Kind of value a column holds (the filter language's types are in `schemas::filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    Ip,
    Timestamp,
    TextList,
    Bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name in ClickHouse.
    pub name: &'static str,
    /// ClickHouse type; `LC` is replaced by `LowCardinality(String)` where the server has it.
    pub ch_type: &'static str,
    /// External attribute name (brief §2).
    pub attribute: &'static str,
    pub kind: Kind,
}

const fn col(
    name: &'static str,
    ch_type: &'static str,
    attribute: &'static str,
    kind: Kind,
) -> Column {
    Column {
        name,
        ch_type,
        attribute,
        kind,
    }
}

pub const TYPE_ENUM: &str =
    "Enum8('command' = 1, 'connection' = 2, 'fileaccess' = 3, 'kubernetes' = 4)";
pub const SOURCE_ENUM: &str = "Enum8('k8s-audit' = 1, 'falco' = 2, 'tetragon' = 3, 'native' = 4)";

use Kind::*;

/// Columns of `events`, in insert order.
pub const COLUMNS: &[Column] = &[
    col("tenant", "LC", "tenant", Text),
    col("type", "TYPE", "type", Text),
    col("timestamp", "Int64", "timestamp", Timestamp),
    col("id", "String", "id", Text),
    col("source", "SOURCE", "source", Text),
    col(
        "received_timestamp",
        "Int64",
        "receivedTimestamp",
        Timestamp,
    ),
    col("trace_id", "String", "traceId", Text),
    col("hostname", "LC", "hostname", Text),
    col("host_mac", "LC", "host.mac", Text),
    col("container_id", "String", "containerId", Text),
    col("container_name", "LC", "container.name", Text),
    col("container_image", "LC", "container.image", Text),
    col("cluster", "LC", "kubernetes.cluster.name", Text),
    col("namespace", "LC", "kubernetes.namespace.name", Text),
    col("workload_kind", "LC", "kubernetes.workload.kind", Text),
    col("workload_name", "LC", "kubernetes.workload.name", Text),
    col("pod", "String", "kubernetes.pod.name", Text),
    col("node", "LC", "kubernetes.node.name", Text),
    col("comm", "LC", "comm", Text),
    col("cmdline", "String", "cmdline", Text),
    col("exe", "LC", "exe", Text),
    col("cwd", "LC", "cwd", Text),
    col("pid", "Int64", "pid", Number),
    col("ppid", "Int64", "ppid", Number),
    col("pcomm", "LC", "pcomm", Text),
    col("uid", "Nullable(Int64)", "uid", Number),
    col("username", "LC", "username", Text),
    col("user_login_uid", "Nullable(Int64)", "userLoginUid", Number),
    col("user_login_name", "LC", "userLoginName", Text),
    col("tty", "Nullable(Int64)", "tty", Number),
    col("login_shell_id", "Nullable(Int64)", "loginShellId", Number),
    col(
        "login_shell_distance",
        "Nullable(Int64)",
        "loginShellDistance",
        Number,
    ),
    col("process_start_time", "Int64", "processStartTime", Timestamp),
    col("exec_id", "String", "execId", Text),
    col("parent_exec_id", "String", "parentExecId", Text),
    col("in_init_tree", "Nullable(UInt8)", "inInitTree", Bool),
    col("direction", "LC", "direction", Text),
    col("l4protocol", "LC", "l4protocol", Text),
    col("client_ip", "String", "clientIp", Ip),
    col("client_port", "UInt16", "clientPort", Number),
    col("server_ip", "String", "serverIp", Ip),
    col("server_port", "UInt16", "serverPort", Number),
    col("filename", "String", "filename", Text),
    col("directory", "String", "directory", Text),
    col("permissions", "LC", "permissions", Text),
    col("verb", "LC", "verb", Text),
    col("resource", "LC", "resource", Text),
    col("sub_resource", "LC", "subResource", Text),
    col("command", "String", "command", Text),
    col("container", "LC", "container", Text),
    col("stdin", "UInt8", "stdin", Bool),
    col("user_name", "LC", "user.username", Text),
    col("user_groups", "Array(String)", "user.groups", TextList),
    col("user_agent", "String", "userAgent", Text),
    col(
        "source_addresses",
        "Array(String)",
        "sourceAddresses",
        TextList,
    ),
    col("audit_id", "String", "auditId", Text),
    col("response_code", "Int64", "responseCode", Number),
    col("stages_started", "Int64", "stages.started", Timestamp),
    col("stages_completed", "Int64", "stages.completed", Timestamp),
    col("trace_confidence", "Float32", "traceConfidence", Number),
    col("trace_link", "LC", "traceLink", Text),
    col(
        "trace_candidates",
        "Array(String)",
        "traceCandidates",
        TextList,
    ),
    col("revision", "UInt64", "revision", Number),
    col("enrichment", "LC", "enrichment", Text),
    col(
        "pod_labels",
        "Array(String)",
        "kubernetes.pod.labels",
        TextList,
    ),
    col(
        "namespace_labels",
        "Array(String)",
        "kubernetes.namespace.labels",
        TextList,
    ),
];

/// Column names in insert order.
pub fn names() -> Vec<&'static str> {
    COLUMNS.iter().map(|c| c.name).collect()
}

/// `name AS \`attribute\`, …`: a select list whose JSON rows decode as `ActivityEvent`s.
pub fn select_as_attributes() -> String {
    COLUMNS
        .iter()
        .map(|c| format!("{} AS `{}`", c.name, c.attribute))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::ActivityEvent;

    #[test]
    fn every_serialized_attribute_has_a_column() {
        // An event with every field set must only produce keys that are column attributes.
        let e = ActivityEvent {
            id: "x".into(),
            timestamp: 1,
            received_timestamp: 1,
            tenant: "t".into(),
            trace_id: "t".into(),
            hostname: "h".into(),
            host_mac: "m".into(),
            container_id: "c".into(),
            container_name: "c".into(),
            container_image: "i".into(),
            cluster: "c".into(),
            namespace: "n".into(),
            workload_kind: "k".into(),
            workload_name: "w".into(),
            pod: "p".into(),
            node: "n".into(),
            comm: "c".into(),
            cmdline: "c".into(),
            exe: "e".into(),
            cwd: "c".into(),
            pid: 1,
            ppid: 1,
            pcomm: "p".into(),
            uid: Some(0),
            username: "u".into(),
            user_login_uid: Some(0),
            user_login_name: "u".into(),
            tty: Some(0),
            login_shell_id: Some(1),
            login_shell_distance: Some(0),
            process_start_time: 1,
            exec_id: "e".into(),
            parent_exec_id: "p".into(),
            in_init_tree: Some(false),
            direction: "in".into(),
            l4protocol: "tcp".into(),
            client_ip: "1".into(),
            client_port: 1,
            server_ip: "1".into(),
            server_port: 1,
            filename: "f".into(),
            directory: "d".into(),
            permissions: "r".into(),
            verb: "v".into(),
            resource: "r".into(),
            sub_resource: "s".into(),
            command: "c".into(),
            container: "c".into(),
            stdin: true,
            user_name: "u".into(),
            user_groups: vec!["g".into()],
            user_agent: "a".into(),
            source_addresses: vec!["s".into()],
            audit_id: "a".into(),
            response_code: 1,
            stages_started: 1,
            stages_completed: 1,
            trace_confidence: 0.5,
            trace_link: "l".into(),
            trace_candidates: vec!["t".into()],
            revision: 1,
            enrichment: "api".into(),
            pod_labels: vec!["app=web".into()],
            namespace_labels: vec!["team=a".into()],
            ..Default::default()
        };
        let v = serde_json::to_value(&e).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        for k in &keys {
            assert!(
                COLUMNS.iter().any(|c| c.attribute == k),
                "attribute {k} has no column"
            );
        }
        assert_eq!(keys.len(), COLUMNS.len(), "every column is an attribute");
    }
}

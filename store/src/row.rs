//! The writer's hot path: one JSON line to one RowBinary row in [`crate::columns::COLUMNS`]
//! order. [`transcode`] writes the columns straight from where each value is in the line
//! (`schemas::json::RawEvent`); lines in any other form go through [`EventView`], an event
//! decoded *borrowing* from its line (no allocation for strings without escapes), and
//! [`write_view`]. [`write_row`] encodes an owned [`ActivityEvent`] through the same view;
//! `EventView` mirrors `ActivityEvent` field for field (`schemas::impl_fields!` does not
//! compile otherwise, and a test keeps the serde names equal), and tests keep [`transcode`]
//! byte for byte equal to the view.

use schemas::json::{Field, FromValue, Raw, RawEvent};
use schemas::{ActivityEvent, ActivityType, Source};
use serde::Deserialize;
use std::borrow::Cow;

/// A borrowed `ActivityEvent`, with the same wire names and the same strictness.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventView<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub source: Source,
    pub timestamp: i64,
    #[serde(rename = "receivedTimestamp")]
    pub received_timestamp: i64,
    #[serde(borrow)]
    pub tenant: Cow<'a, str>,
    #[serde(rename = "traceId", borrow)]
    pub trace_id: Cow<'a, str>,
    #[serde(borrow)]
    pub hostname: Cow<'a, str>,
    #[serde(rename = "host.mac", borrow)]
    pub host_mac: Cow<'a, str>,
    #[serde(rename = "containerId", borrow)]
    pub container_id: Cow<'a, str>,
    #[serde(rename = "container.name", borrow)]
    pub container_name: Cow<'a, str>,
    #[serde(rename = "container.image", borrow)]
    pub container_image: Cow<'a, str>,
    #[serde(rename = "kubernetes.cluster.name", borrow)]
    pub cluster: Cow<'a, str>,
    #[serde(rename = "kubernetes.namespace.name", borrow)]
    pub namespace: Cow<'a, str>,
    #[serde(rename = "kubernetes.workload.kind", borrow)]
    pub workload_kind: Cow<'a, str>,
    #[serde(rename = "kubernetes.workload.name", borrow)]
    pub workload_name: Cow<'a, str>,
    #[serde(rename = "kubernetes.pod.name", borrow)]
    pub pod: Cow<'a, str>,
    #[serde(rename = "kubernetes.node.name", borrow)]
    pub node: Cow<'a, str>,
    #[serde(borrow)]
    pub comm: Cow<'a, str>,
    #[serde(borrow)]
    pub cmdline: Cow<'a, str>,
    #[serde(borrow)]
    pub exe: Cow<'a, str>,
    #[serde(borrow)]
    pub cwd: Cow<'a, str>,
    pub pid: i64,
    pub ppid: i64,
    #[serde(borrow)]
    pub pcomm: Cow<'a, str>,
    pub uid: Option<i64>,
    #[serde(borrow)]
    pub username: Cow<'a, str>,
    #[serde(rename = "userLoginUid")]
    pub user_login_uid: Option<i64>,
    #[serde(rename = "userLoginName", borrow)]
    pub user_login_name: Cow<'a, str>,
    pub tty: Option<i64>,
    #[serde(rename = "loginShellId")]
    pub login_shell_id: Option<i64>,
    #[serde(rename = "loginShellDistance")]
    pub login_shell_distance: Option<i64>,
    #[serde(rename = "processStartTime")]
    pub process_start_time: i64,
    #[serde(rename = "execId", borrow)]
    pub exec_id: Cow<'a, str>,
    #[serde(rename = "parentExecId", borrow)]
    pub parent_exec_id: Cow<'a, str>,
    #[serde(rename = "inInitTree", deserialize_with = "schemas::event::opt_flag")]
    pub in_init_tree: Option<bool>,
    #[serde(borrow)]
    pub direction: Cow<'a, str>,
    #[serde(borrow)]
    pub l4protocol: Cow<'a, str>,
    #[serde(rename = "clientIp", borrow)]
    pub client_ip: Cow<'a, str>,
    #[serde(rename = "clientPort")]
    pub client_port: i64,
    #[serde(rename = "serverIp", borrow)]
    pub server_ip: Cow<'a, str>,
    #[serde(rename = "serverPort")]
    pub server_port: i64,
    #[serde(borrow)]
    pub filename: Cow<'a, str>,
    #[serde(borrow)]
    pub directory: Cow<'a, str>,
    #[serde(borrow)]
    pub permissions: Cow<'a, str>,
    #[serde(borrow)]
    pub verb: Cow<'a, str>,
    #[serde(borrow)]
    pub resource: Cow<'a, str>,
    #[serde(rename = "subResource", borrow)]
    pub sub_resource: Cow<'a, str>,
    #[serde(borrow)]
    pub command: Cow<'a, str>,
    #[serde(borrow)]
    pub container: Cow<'a, str>,
    #[serde(deserialize_with = "schemas::event::flag")]
    pub stdin: bool,
    #[serde(rename = "user.username", borrow)]
    pub user_name: Cow<'a, str>,
    #[serde(rename = "user.groups", borrow)]
    pub user_groups: Vec<Cow<'a, str>>,
    #[serde(rename = "userAgent", borrow)]
    pub user_agent: Cow<'a, str>,
    #[serde(rename = "sourceAddresses", borrow)]
    pub source_addresses: Vec<Cow<'a, str>>,
    #[serde(rename = "auditId", borrow)]
    pub audit_id: Cow<'a, str>,
    #[serde(rename = "responseCode")]
    pub response_code: i64,
    #[serde(rename = "stages.started")]
    pub stages_started: i64,
    #[serde(rename = "stages.completed")]
    pub stages_completed: i64,
    #[serde(rename = "traceConfidence")]
    pub trace_confidence: f32,
    #[serde(rename = "traceLink", borrow)]
    pub trace_link: Cow<'a, str>,
    #[serde(rename = "traceCandidates", borrow)]
    pub trace_candidates: Vec<Cow<'a, str>>,
    pub revision: u64,
    #[serde(borrow)]
    pub enrichment: Cow<'a, str>,
    #[serde(rename = "kubernetes.pod.labels", borrow)]
    pub pod_labels: Vec<Cow<'a, str>>,
    #[serde(rename = "kubernetes.namespace.labels", borrow)]
    pub namespace_labels: Vec<Cow<'a, str>>,
}

impl<'a> From<&'a ActivityEvent> for EventView<'a> {
    fn from(e: &'a ActivityEvent) -> Self {
        EventView {
            id: Cow::Borrowed(&e.id),
            kind: e.kind,
            source: e.source,
            timestamp: e.timestamp,
            received_timestamp: e.received_timestamp,
            tenant: Cow::Borrowed(&e.tenant),
            trace_id: Cow::Borrowed(&e.trace_id),
            hostname: Cow::Borrowed(&e.hostname),
            host_mac: Cow::Borrowed(&e.host_mac),
            container_id: Cow::Borrowed(&e.container_id),
            container_name: Cow::Borrowed(&e.container_name),
            container_image: Cow::Borrowed(&e.container_image),
            cluster: Cow::Borrowed(&e.cluster),
            namespace: Cow::Borrowed(&e.namespace),
            workload_kind: Cow::Borrowed(&e.workload_kind),
            workload_name: Cow::Borrowed(&e.workload_name),
            pod: Cow::Borrowed(&e.pod),
            node: Cow::Borrowed(&e.node),
            comm: Cow::Borrowed(&e.comm),
            cmdline: Cow::Borrowed(&e.cmdline),
            exe: Cow::Borrowed(&e.exe),
            cwd: Cow::Borrowed(&e.cwd),
            pid: e.pid,
            ppid: e.ppid,
            pcomm: Cow::Borrowed(&e.pcomm),
            uid: e.uid,
            username: Cow::Borrowed(&e.username),
            user_login_uid: e.user_login_uid,
            user_login_name: Cow::Borrowed(&e.user_login_name),
            tty: e.tty,
            login_shell_id: e.login_shell_id,
            login_shell_distance: e.login_shell_distance,
            process_start_time: e.process_start_time,
            exec_id: Cow::Borrowed(&e.exec_id),
            parent_exec_id: Cow::Borrowed(&e.parent_exec_id),
            in_init_tree: e.in_init_tree,
            direction: Cow::Borrowed(&e.direction),
            l4protocol: Cow::Borrowed(&e.l4protocol),
            client_ip: Cow::Borrowed(&e.client_ip),
            client_port: e.client_port,
            server_ip: Cow::Borrowed(&e.server_ip),
            server_port: e.server_port,
            filename: Cow::Borrowed(&e.filename),
            directory: Cow::Borrowed(&e.directory),
            permissions: Cow::Borrowed(&e.permissions),
            verb: Cow::Borrowed(&e.verb),
            resource: Cow::Borrowed(&e.resource),
            sub_resource: Cow::Borrowed(&e.sub_resource),
            command: Cow::Borrowed(&e.command),
            container: Cow::Borrowed(&e.container),
            stdin: e.stdin,
            user_name: Cow::Borrowed(&e.user_name),
            user_groups: borrowed(&e.user_groups),
            user_agent: Cow::Borrowed(&e.user_agent),
            source_addresses: borrowed(&e.source_addresses),
            audit_id: Cow::Borrowed(&e.audit_id),
            response_code: e.response_code,
            stages_started: e.stages_started,
            stages_completed: e.stages_completed,
            trace_confidence: e.trace_confidence,
            trace_link: Cow::Borrowed(&e.trace_link),
            trace_candidates: borrowed(&e.trace_candidates),
            revision: e.revision,
            enrichment: Cow::Borrowed(&e.enrichment),
            pod_labels: borrowed(&e.pod_labels),
            namespace_labels: borrowed(&e.namespace_labels),
        }
    }
}

fn borrowed(v: &[String]) -> Vec<Cow<'_, str>> {
    v.iter().map(|s| Cow::Borrowed(s.as_str())).collect()
}

fn varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn string(buf: &mut Vec<u8>, s: &str) {
    varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn i64le(buf: &mut Vec<u8>, n: i64) {
    buf.extend_from_slice(&n.to_le_bytes());
}

fn opt_i64(buf: &mut Vec<u8>, n: Option<i64>) {
    match n {
        Some(n) => {
            buf.push(0);
            i64le(buf, n);
        }
        None => buf.push(1),
    }
}

fn opt_bool(buf: &mut Vec<u8>, b: Option<bool>) {
    match b {
        Some(b) => {
            buf.push(0);
            buf.push(b as u8);
        }
        None => buf.push(1),
    }
}

fn strings(buf: &mut Vec<u8>, v: &[Cow<'_, str>]) {
    varint(buf, v.len() as u64);
    for s in v {
        string(buf, s);
    }
}

fn port(buf: &mut Vec<u8>, p: i64) {
    buf.extend_from_slice(&(p.clamp(0, 65535) as u16).to_le_bytes());
}

fn type_code(t: ActivityType) -> u8 {
    match t {
        ActivityType::Command => 1,
        ActivityType::Connection => 2,
        ActivityType::Fileaccess => 3,
        ActivityType::Kubernetes => 4,
    }
}

fn source_code(s: Source) -> u8 {
    match s {
        Source::K8sAudit => 1,
        Source::Falco => 2,
        Source::Tetragon => 3,
        Source::Native => 4,
    }
}

/// Appends `e` as one RowBinary row in [`crate::columns::COLUMNS`] order.
pub fn write_view(buf: &mut Vec<u8>, e: &EventView<'_>) {
    string(buf, &e.tenant);
    buf.push(type_code(e.kind));
    i64le(buf, e.timestamp);
    string(buf, &e.id);
    buf.push(source_code(e.source));
    i64le(buf, e.received_timestamp);
    string(buf, &e.trace_id);
    string(buf, &e.hostname);
    string(buf, &e.host_mac);
    string(buf, &e.container_id);
    string(buf, &e.container_name);
    string(buf, &e.container_image);
    string(buf, &e.cluster);
    string(buf, &e.namespace);
    string(buf, &e.workload_kind);
    string(buf, &e.workload_name);
    string(buf, &e.pod);
    string(buf, &e.node);
    string(buf, &e.comm);
    string(buf, &e.cmdline);
    string(buf, &e.exe);
    string(buf, &e.cwd);
    i64le(buf, e.pid);
    i64le(buf, e.ppid);
    string(buf, &e.pcomm);
    opt_i64(buf, e.uid);
    string(buf, &e.username);
    opt_i64(buf, e.user_login_uid);
    string(buf, &e.user_login_name);
    opt_i64(buf, e.tty);
    opt_i64(buf, e.login_shell_id);
    opt_i64(buf, e.login_shell_distance);
    i64le(buf, e.process_start_time);
    string(buf, &e.exec_id);
    string(buf, &e.parent_exec_id);
    opt_bool(buf, e.in_init_tree);
    string(buf, &e.direction);
    string(buf, &e.l4protocol);
    string(buf, &e.client_ip);
    port(buf, e.client_port);
    string(buf, &e.server_ip);
    port(buf, e.server_port);
    string(buf, &e.filename);
    string(buf, &e.directory);
    string(buf, &e.permissions);
    string(buf, &e.verb);
    string(buf, &e.resource);
    string(buf, &e.sub_resource);
    string(buf, &e.command);
    string(buf, &e.container);
    buf.push(e.stdin as u8);
    string(buf, &e.user_name);
    strings(buf, &e.user_groups);
    string(buf, &e.user_agent);
    strings(buf, &e.source_addresses);
    string(buf, &e.audit_id);
    i64le(buf, e.response_code);
    i64le(buf, e.stages_started);
    i64le(buf, e.stages_completed);
    buf.extend_from_slice(&e.trace_confidence.to_le_bytes());
    string(buf, &e.trace_link);
    strings(buf, &e.trace_candidates);
    buf.extend_from_slice(&e.revision.to_le_bytes());
    string(buf, &e.enrichment);
    strings(buf, &e.pod_labels);
    strings(buf, &e.namespace_labels);
}

/// Appends one JSON line of the final topic as one RowBinary row: the writer's hot path.
/// Lines in the encoder's form go straight from where each value is ([`RawEvent`], reused
/// from line to line) to their columns; any other line, or a value the fast path does not
/// take, goes through [`decode_view`] and [`write_view`], which decide and say what is wrong.
/// Both give the same bytes for every line (`tests::transcoding_agrees_with_the_view`).
pub fn transcode<'a>(
    buf: &mut Vec<u8>,
    raw: &mut RawEvent<'a>,
    line: &'a [u8],
) -> Result<(), String> {
    let start = buf.len();
    if raw.read(line).is_some() && write_raw(buf, raw).is_some() {
        return Ok(());
    }
    buf.truncate(start);
    write_view(buf, &decode_view(line)?);
    Ok(())
}

/// A field converted as [`EventView`] takes it: its default when absent.
fn field<'a, T: FromValue<'a> + Default>(e: &RawEvent<'a>, f: Field) -> Option<T> {
    match e.value(f) {
        None => Some(T::default()),
        Some(v) => T::from_value(v),
    }
}

/// A string column, straight from the line unless it has escapes.
fn raw_string(buf: &mut Vec<u8>, e: &RawEvent<'_>, f: Field) -> Option<()> {
    match e.get(f) {
        None => buf.push(0),
        Some(Raw::Str(a, b)) => string(buf, e.text(a, b)),
        Some(Raw::Escaped(_)) => string(buf, &field::<Cow<str>>(e, f)?),
        Some(_) => return None,
    }
    Some(())
}

/// An `Array(String)` column, straight from the line.
fn raw_strings(buf: &mut Vec<u8>, e: &RawEvent<'_>, f: Field) -> Option<()> {
    match e.get(f) {
        None => buf.push(0),
        Some(Raw::List { start, n }) => {
            varint(buf, n as u64);
            e.strings(start, |s| string(buf, &s))?;
        }
        Some(_) => return None,
    }
    Some(())
}

/// [`write_view`] from a [`RawEvent`]: the same columns, the same conversions; `None` (with
/// part of a row written) where a value is not what the view takes.
fn write_raw(buf: &mut Vec<u8>, e: &RawEvent<'_>) -> Option<()> {
    use Field as F;
    let s = |buf: &mut Vec<u8>, f| raw_string(buf, e, f);
    let l = |buf: &mut Vec<u8>, f| raw_strings(buf, e, f);
    let i = |buf: &mut Vec<u8>, f| field::<i64>(e, f).map(|n| i64le(buf, n));
    let oi = |buf: &mut Vec<u8>, f| field::<Option<i64>>(e, f).map(|n| opt_i64(buf, n));
    s(buf, F::tenant)?;
    buf.push(type_code(field(e, F::kind)?));
    i(buf, F::timestamp)?;
    s(buf, F::id)?;
    buf.push(source_code(field(e, F::source)?));
    i(buf, F::received_timestamp)?;
    for f in [
        F::trace_id,
        F::hostname,
        F::host_mac,
        F::container_id,
        F::container_name,
        F::container_image,
        F::cluster,
        F::namespace,
        F::workload_kind,
        F::workload_name,
        F::pod,
        F::node,
        F::comm,
        F::cmdline,
        F::exe,
        F::cwd,
    ] {
        s(buf, f)?;
    }
    i(buf, F::pid)?;
    i(buf, F::ppid)?;
    s(buf, F::pcomm)?;
    oi(buf, F::uid)?;
    s(buf, F::username)?;
    oi(buf, F::user_login_uid)?;
    s(buf, F::user_login_name)?;
    oi(buf, F::tty)?;
    oi(buf, F::login_shell_id)?;
    oi(buf, F::login_shell_distance)?;
    i(buf, F::process_start_time)?;
    s(buf, F::exec_id)?;
    s(buf, F::parent_exec_id)?;
    opt_bool(buf, field(e, F::in_init_tree)?);
    s(buf, F::direction)?;
    s(buf, F::l4protocol)?;
    s(buf, F::client_ip)?;
    port(buf, field(e, F::client_port)?);
    s(buf, F::server_ip)?;
    port(buf, field(e, F::server_port)?);
    for f in [
        F::filename,
        F::directory,
        F::permissions,
        F::verb,
        F::resource,
        F::sub_resource,
        F::command,
        F::container,
    ] {
        s(buf, f)?;
    }
    buf.push(field::<bool>(e, F::stdin)? as u8);
    s(buf, F::user_name)?;
    l(buf, F::user_groups)?;
    s(buf, F::user_agent)?;
    l(buf, F::source_addresses)?;
    s(buf, F::audit_id)?;
    i(buf, F::response_code)?;
    i(buf, F::stages_started)?;
    i(buf, F::stages_completed)?;
    buf.extend_from_slice(&field::<f32>(e, F::trace_confidence)?.to_le_bytes());
    s(buf, F::trace_link)?;
    l(buf, F::trace_candidates)?;
    buf.extend_from_slice(&field::<u64>(e, F::revision)?.to_le_bytes());
    s(buf, F::enrichment)?;
    l(buf, F::pod_labels)?;
    l(buf, F::namespace_labels)
}

/// Appends an owned event as one row (through its borrowed view: one encoder).
pub fn write_row(buf: &mut Vec<u8>, e: &ActivityEvent) {
    write_view(buf, &EventView::from(e));
}

/// Decodes one JSON line borrowing from it.
pub fn decode_view(line: &[u8]) -> Result<EventView<'_>, String> {
    schemas::json::decode(line)
}

schemas::impl_fields!('a, EventView<'a>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }

    fn full_event() -> ActivityEvent {
        let mut e: ActivityEvent = serde_json::from_str(
            r#"{
            "id": "x", "type": "connection", "source": "falco", "timestamp": 1700000000000000000,
            "receivedTimestamp": 2, "tenant": "t", "traceId": "tr", "hostname": "h", "host.mac": "m",
            "containerId": "c", "container.name": "cn", "container.image": "ci",
            "kubernetes.cluster.name": "k", "kubernetes.namespace.name": "n",
            "kubernetes.workload.kind": "Deployment", "kubernetes.workload.name": "w",
            "kubernetes.pod.name": "p", "kubernetes.node.name": "no", "comm": "c\"q", "cmdline": "a\nb",
            "exe": "e", "cwd": "/", "pid": 3, "ppid": 2, "pcomm": "pc", "uid": 0, "username": "u",
            "userLoginUid": -1, "userLoginName": "l", "tty": 34816, "loginShellId": 9,
            "loginShellDistance": 0, "processStartTime": 5, "execId": "ex", "parentExecId": "pe",
            "inInitTree": false, "direction": "out", "l4protocol": "tcp", "clientIp": "1.2.3.4",
            "clientPort": 1234, "serverIp": "5.6.7.8", "serverPort": 443, "filename": "/etc/x",
            "directory": "/etc", "permissions": "rw", "verb": "get", "resource": "pods",
            "subResource": "exec", "command": "bash -il", "container": "app", "stdin": true,
            "user.username": "alice", "user.groups": ["a", "b&c"], "userAgent": "kubectl",
            "sourceAddresses": ["9.9.9.9"], "auditId": "au", "responseCode": 101,
            "stages.started": 7, "stages.completed": 8, "traceConfidence": 0.5,
            "traceLink": "ambiguous", "traceCandidates": ["t1", "t2"], "revision": 9, "enrichment": "api"
        }"#,
        )
        .unwrap();
        e.normalize();
        e
    }

    #[test]
    fn the_view_mirrors_the_event_field_for_field() {
        let e = full_event();
        let json = serde_json::to_vec(&e).unwrap();
        let view = decode_view(&json).unwrap();
        // The fast path reads it, as serde does.
        let serde: EventView = sonic_rs::from_slice(&json).unwrap();
        assert_eq!(
            schemas::json::read_event::<EventView>(&json).as_ref(),
            Some(&serde)
        );
        assert_eq!(
            view,
            EventView::from(&e),
            "decoding the view loses or adds nothing"
        );
        // Every field is set, so a field missing from the view would fail the line above
        // (deny_unknown_fields) or leave a default that differs.
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_view(&mut a, &view);
        write_row(&mut b, &e);
        assert_eq!(a, b);
    }

    /// The writer's path: `transcode`, with one `RawEvent` reused across lines.
    fn transcoded(lines: &[&[u8]]) -> Vec<Result<Vec<u8>, String>> {
        let mut raw = RawEvent::default();
        lines
            .iter()
            .map(|line| {
                let mut buf = b"prefix".to_vec();
                transcode(&mut buf, &mut raw, line).map(|()| buf[6..].to_vec())
            })
            .collect()
    }

    /// The reference: decode the whole view, then write it.
    fn through_view(line: &[u8]) -> Result<Vec<u8>, String> {
        let view = decode_view(line)?;
        let mut buf = Vec::new();
        write_view(&mut buf, &view);
        Ok(buf)
    }

    fn line_of(e: &ActivityEvent) -> Vec<u8> {
        let mut line = Vec::new();
        schemas::json::write_event(&mut line, e);
        line
    }

    #[test]
    fn transcoding_agrees_with_the_view() {
        let full = full_event();
        let mut sparse = ActivityEvent {
            kind: ActivityType::Command,
            comm: "sh".into(),
            pid: 7,
            ..Default::default()
        };
        sparse.normalize();
        let mut lines = vec![line_of(&full), line_of(&sparse)];
        // Other forms: any key order, whitespace, nulls and flags as numbers, escapes in
        // lists, bad values, unknown keys, not JSON.
        for other in [
            r#"{"pid":3,"comm":"sh","type":"command","id":"x","user.groups":["a\"b","c"]}"#,
            r#"{ "type": "command", "pid": 3 }"#,
            r#"{"type":"connection","uid":null,"inInitTree":1,"stdin":0,"traceConfidence":1}"#,
            r#"{"revision":18446744073709551615,"tty":34816,"sourceAddresses":[]}"#,
            r#"{"type":"command","pid":"3"}"#,
            r#"{"type":"command","comm":7}"#,
            r#"{"type":"command","user.groups":"a"}"#,
            r#"{"type":"command","bogus":1}"#,
            r#"{"type":"command","pid":1,"pid":2}"#,
            r#"{"type":"nope"}"#,
            "not json",
        ] {
            lines.push(other.as_bytes().to_vec());
        }
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
        let got = transcoded(&refs);
        for (line, got) in refs.iter().zip(&got) {
            let want = through_view(line);
            assert_eq!(
                got.as_ref().ok(),
                want.as_ref().ok(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // The good ones were good, the bad ones bad (the comparison above is not vacuous).
        let ok: Vec<bool> = got.iter().map(Result::is_ok).collect();
        assert_eq!(ok[..6], [true; 6]);
        assert_eq!(ok[6..], [false; 7]);
        let mut row = Vec::new();
        write_row(&mut row, &full);
        assert_eq!(got[0].as_ref().unwrap(), &row);
        // The encoder's lines take the fast path, not the fallback.
        for line in &refs[..2] {
            let mut raw = RawEvent::default();
            assert!(raw.read(line).is_some());
            assert!(write_raw(&mut Vec::new(), &raw).is_some());
        }
    }

    proptest::proptest! {
        /// Mutations of a real line, each transcoded after the intact line with the same
        /// `RawEvent` (so nothing of a previous line leaks into the next): the same row as
        /// through the view, or an error where the view has one.
        #[test]
        fn transcoding_mutated_lines_agrees_with_the_view(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), 0..3u8), 1..4),
        ) {
            let intact = line_of(&full_event());
            let mut line = intact.clone();
            schemas::json::mutate(&mut line, &edits);
            let got = transcoded(&[&intact, &line]);
            proptest::prop_assert!(got[0].is_ok());
            let want = through_view(&line);
            proptest::prop_assert_eq!(got[1].as_ref().ok(), want.as_ref().ok());
        }
    }

    #[test]
    fn the_view_is_as_strict_as_the_event() {
        assert!(decode_view(br#"{"type":"command","bogus":1}"#).is_err());
        assert!(decode_view(br#"{"type":"command","pid":"x"}"#).is_err());
        assert!(decode_view(br#"{"type":"nope"}"#).is_err());
    }
}

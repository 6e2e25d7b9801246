//! Tetragon JSON export: one event object per line (`process_exec`, `process_exit`,
//! `process_kprobe`, and the retired `process_connect`/`process_close`/`process_listen` of
//! the legacy schema), with `node_name` and `time`.
//!
//! - `process_exec` is a command when it is interactive by brief §1 as far as Tetragon can
//!   tell (it has no tty): exec'd into a container from outside its init tree
//!   (`in_init_tree: false`), a shell (`*sh`), or the child of a shell, `sshd`, `dropbear`,
//!   `login`, `su` or `sudo`.
//! - `process_kprobe` `tcp_connect` (out) / `inet_csk_accept` (in) with a `sock_arg` are
//!   connections; `security_file_permission`, `fd_install` and the `sys_read`/`sys_write`
//!   probes with a `file_arg` are file accesses. Legacy `process_connect` is a connection.
//! - Everything else (exits, closes, other probes) is valid but not activity.
//!
//! `exec_id`, `parent_exec_id` and `in_init_tree` are kept: the correlator builds lineage on
//! them.

use super::{Outcome, basename, int_of, is_shell, str_of};
use crate::error::IngestError;
use schemas::time::parse_rfc3339_ns;
use schemas::{ActivityEvent, ActivityType, Source};
use serde_json::Value;

const LOGIN_PARENTS: &[&str] = &["sshd", "dropbear", "login", "su", "sudo", "telnetd"];

/// Parses Tetragon export lines (or one pretty-printed event, or an array).
pub fn parse(body: &[u8], interactive_only: bool) -> Result<Vec<Outcome>, IngestError> {
    super::each_object(body, |v, raw| event(v, raw, interactive_only))
}

fn event(v: Value, raw: Option<&[u8]>, interactive_only: bool) -> Outcome {
    let Value::Object(top) = &v else {
        return Outcome::Rejected("expected a Tetragon event object".into());
    };
    let Some((kind, body)) = top
        .iter()
        .find(|(k, val)| k.starts_with("process_") && val.is_object())
    else {
        return Outcome::Rejected(
            "no event: expected one of process_exec, process_exit, process_kprobe, …".into(),
        );
    };
    if !matches!(
        kind.as_str(),
        "process_exec" | "process_kprobe" | "process_connect"
    ) {
        // Exits, closes, listens, throttling, …: valid, not activity.
        return Outcome::NotActivity;
    }
    let Some(ts) = top
        .get("time")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339_ns)
    else {
        return Outcome::Rejected("field `time`: missing or not an RFC 3339 time".into());
    };
    let Some(process) = body.get("process").filter(|p| p.is_object()) else {
        return Outcome::Rejected(format!("field `{kind}.process`: missing"));
    };
    let node = str_of(top.get("node_name")).unwrap_or_default();
    let parent = body.get("parent");
    let mut e = process_fields(process, parent, &node, ts);
    let activity = match kind.as_str() {
        "process_exec" => {
            e.kind = ActivityType::Command;
            let shell_parent = parent
                .and_then(|p| str_of(p.get("binary")))
                .map(|b| {
                    let c = basename(&b).to_string();
                    is_shell(&c) || LOGIN_PARENTS.contains(&c.as_str())
                })
                .unwrap_or(false);
            e.in_init_tree == Some(false) || is_shell(&e.comm) || shell_parent
        }
        "process_kprobe" => match kprobe(body, &mut e) {
            Some(()) => true,
            None => return Outcome::NotActivity,
        },
        "process_connect" => {
            e.kind = ActivityType::Connection;
            e.direction = "out".into();
            e.l4protocol = str_of(body.get("protocol"))
                .map(|p| p.to_lowercase())
                .unwrap_or_default();
            e.client_ip = str_of(body.get("source_ip")).unwrap_or_default();
            e.client_port = int_of(body.get("source_port")).unwrap_or(0);
            e.server_ip = str_of(body.get("destination_ip")).unwrap_or_default();
            e.server_port = int_of(body.get("destination_port")).unwrap_or(0);
            true
        }
        _ => return Outcome::NotActivity,
    };
    if interactive_only && !activity {
        return Outcome::NotActivity;
    }
    if !matches!(e.l4protocol.as_str(), "" | "tcp" | "udp") {
        e.l4protocol.clear();
    }
    e.normalize();
    let key = super::natural_key(raw, &v);
    Outcome::Activity(Box::new(e), key)
}

/// Fields every event's `process` carries.
fn process_fields(p: &Value, parent: Option<&Value>, node: &str, ts: i64) -> ActivityEvent {
    let binary = str_of(p.get("binary")).unwrap_or_default();
    let comm = basename(&binary).to_string();
    let args = str_of(p.get("arguments")).unwrap_or_default();
    let auid = int_of(p.get("auid"));
    let pod = p.get("pod");
    let container = pod.and_then(|p| p.get("container"));
    let container_id = container
        .and_then(|c| str_of(c.get("id")))
        .map(|id| {
            id.split_once("://")
                .map(|(_, i)| i.to_string())
                .unwrap_or(id)
        })
        .unwrap_or_default();
    ActivityEvent {
        source: Source::Tetragon,
        timestamp: ts,
        hostname: node.to_string(),
        node: node.to_string(),
        exe: binary.clone(),
        cmdline: if args.is_empty() {
            comm.clone()
        } else {
            format!("{comm} {args}")
        },
        comm,
        cwd: str_of(p.get("cwd")).unwrap_or_default(),
        pid: int_of(p.get("pid")).unwrap_or(0),
        uid: int_of(p.get("uid")),
        // 4294967295 is "unset" (-1 as unsigned).
        user_login_uid: auid.map(|a| if a == 4_294_967_295 { -1 } else { a }),
        process_start_time: p
            .get("start_time")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339_ns)
            .unwrap_or(0),
        exec_id: str_of(p.get("exec_id")).unwrap_or_default(),
        parent_exec_id: str_of(p.get("parent_exec_id")).unwrap_or_default(),
        in_init_tree: p.get("in_init_tree").and_then(Value::as_bool),
        ppid: parent.and_then(|q| int_of(q.get("pid"))).unwrap_or(0),
        pcomm: parent
            .and_then(|q| str_of(q.get("binary")))
            .map(|b| basename(&b).to_string())
            .unwrap_or_default(),
        namespace: pod
            .and_then(|p| str_of(p.get("namespace")))
            .unwrap_or_default(),
        pod: pod.and_then(|p| str_of(p.get("name"))).unwrap_or_default(),
        workload_name: pod
            .and_then(|p| str_of(p.get("workload")))
            .unwrap_or_default(),
        workload_kind: pod
            .and_then(|p| str_of(p.get("workload_kind")))
            .unwrap_or_default(),
        pod_labels: pod.map(|p| labels(p.get("pod_labels"))).unwrap_or_default(),
        container_id,
        container_name: container
            .and_then(|c| str_of(c.get("name")))
            .unwrap_or_default(),
        container_image: container
            .and_then(|c| str_of(c.pointer("/image/name")))
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// Fills a connection or file access from a kprobe; `None` if the probe is not one of ours.
fn kprobe(body: &Value, e: &mut ActivityEvent) -> Option<()> {
    let function = body.get("function_name")?.as_str()?;
    let args = body.get("args")?.as_array()?;
    let arg = |key: &str| args.iter().find_map(|a| a.get(key));
    match function {
        "tcp_connect" | "inet_csk_accept" => {
            let sock = arg("sock_arg")?;
            e.kind = ActivityType::Connection;
            e.l4protocol = match str_of(sock.get("protocol")).as_deref() {
                Some("IPPROTO_UDP") => "udp",
                _ => "tcp",
            }
            .into();
            let (saddr, sport) = (
                str_of(sock.get("saddr"))?,
                int_of(sock.get("sport")).unwrap_or(0),
            );
            let (daddr, dport) = (
                str_of(sock.get("daddr"))?,
                int_of(sock.get("dport")).unwrap_or(0),
            );
            if function == "tcp_connect" {
                e.direction = "out".into();
                (e.client_ip, e.client_port, e.server_ip, e.server_port) =
                    (saddr, sport, daddr, dport);
            } else {
                // The accepted socket: its source is our (server) side.
                e.direction = "in".into();
                (e.server_ip, e.server_port, e.client_ip, e.client_port) =
                    (saddr, sport, daddr, dport);
            }
            Some(())
        }
        "security_file_permission"
        | "fd_install"
        | "security_file_open"
        | "__x64_sys_read"
        | "__x64_sys_write"
        | "sys_read"
        | "sys_write" => {
            let file = arg("file_arg")?;
            let mut path = str_of(file.get("path"))?;
            if !path.starts_with('/') {
                // Older Tetragon printed paths without the leading slash.
                path.insert(0, '/');
            }
            e.kind = ActivityType::Fileaccess;
            e.filename = path;
            e.permissions = match function {
                "__x64_sys_write" | "sys_write" => "w",
                "security_file_permission" => {
                    // Second argument: the MAY_* mask (MAY_WRITE = 2, MAY_READ = 4).
                    let mask = args
                        .get(1)
                        .and_then(|a| int_of(a.get("int_arg")))
                        .unwrap_or(4);
                    match (mask & 4 != 0, mask & 2 != 0) {
                        (true, true) => "rw",
                        (false, true) => "w",
                        _ => "r",
                    }
                }
                _ => "r",
            }
            .into();
            Some(())
        }
        _ => None,
    }
}

/// Tetragon's `pod_labels` object as sorted `key=value` strings.
fn labels(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = v
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_connect_kprobe() {
        let line = r#"{"process_kprobe":{"process":{"exec_id":"bm9kZToxMjM6NDU2","pid":456,"uid":0,"binary":"/usr/bin/curl","arguments":"http://example.com","start_time":"2024-04-14T02:18:02Z","in_init_tree":false,"pod":{"namespace":"shop","name":"web-1","container":{"id":"containerd://abc123","name":"app","image":{"name":"nginx:1.25"}},"workload":"web","workload_kind":"Deployment"},"parent_exec_id":"bm9kZToxMDA6NDAw"},"parent":{"pid":400,"binary":"/bin/bash"},"function_name":"tcp_connect","args":[{"sock_arg":{"family":"AF_INET","type":"SOCK_STREAM","protocol":"IPPROTO_TCP","saddr":"10.0.0.5","daddr":"93.184.216.34","sport":40512,"dport":80,"cookie":"1","state":"TCP_SYN_SENT"}}],"action":"KPROBE_ACTION_POST","policy_name":"activity-audit"},"node_name":"node-1","time":"2024-04-14T02:18:03Z"}"#;
        let out = parse(line.as_bytes(), true).unwrap();
        let Outcome::Activity(e, _) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(e.kind, ActivityType::Connection);
        assert_eq!(
            (e.server_ip.as_str(), e.server_port, e.direction.as_str()),
            ("93.184.216.34", 80, "out")
        );
        assert_eq!(
            (e.container_id.as_str(), e.workload_kind.as_str()),
            ("abc123", "Deployment")
        );
        assert_eq!(e.in_init_tree, Some(false));
        e.validate().unwrap();
    }

    #[test]
    fn exits_and_foreign_probes_are_not_activity() {
        let exit = r#"{"process_exit":{"process":{"pid":1,"binary":"/bin/true"}},"node_name":"n","time":"2024-04-14T02:18:03Z"}"#;
        assert_eq!(
            parse(exit.as_bytes(), true).unwrap(),
            vec![Outcome::NotActivity]
        );
        let bad = r#"{"node_name":"n","time":"2024-04-14T02:18:03Z"}"#;
        assert!(matches!(
            &parse(bad.as_bytes(), true).unwrap()[0],
            Outcome::Rejected(_)
        ));
    }
}

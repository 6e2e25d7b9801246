//! Falco `http_output` alerts: `{time, rule, priority, source, hostname, output, tags,
//! output_fields}`, one per request (arrays and JSON lines are accepted too).
//!
//! The data source follows `evt.type`: `execve`/`execveat` are commands, `connect`/`accept*`
//! connections, `open*`/`creat` file accesses. Activity (brief §1) is what interactive
//! processes do: a process with a tty, under a login shell (`proc.loginshellid`), or exec'd into
//! a container from outside its init tree (parent is the container runtime), plus connections
//! of `sshd`/`telnetd`. Other alerts are counted and dropped; `interactive_only = false` in the
//! `[activity]` config keeps them all. Quirks handled: a number where a time string is expected,
//! `null` values, fields that are sometimes arrays, keys with brackets (`proc.aname[2]`).

use super::{Outcome, basename, bool_of, int_of, str_of};
use crate::error::IngestError;
use schemas::time::parse_rfc3339_ns;
use schemas::{ActivityEvent, ActivityType, Source};
use serde_json::{Map, Value};

/// Container runtimes whose children are exec'd into a container from outside its init tree.
const RUNTIMES: &[&str] = &[
    "runc",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "conmon",
    "crio",
    "docker-runc",
];

/// Parses a body of Falco alerts.
pub fn parse(body: &[u8], interactive_only: bool) -> Result<Vec<Outcome>, IngestError> {
    super::each_object(body, |v, raw| alert(v, raw, interactive_only))
}

fn alert(v: Value, raw: Option<&[u8]>, interactive_only: bool) -> Outcome {
    let Value::Object(top) = &v else {
        return Outcome::Rejected("expected a Falco alert object".into());
    };
    let Some(Value::Object(f)) = top.get("output_fields") else {
        return Outcome::Rejected("field `output_fields`: missing or not an object".into());
    };
    if let Some(src) = top.get("source").and_then(Value::as_str)
        && src != "syscall"
    {
        // Alerts of Falco's plugins (k8saudit, cloudtrail…) are not node activity.
        return Outcome::NotActivity;
    }
    let get = |k: &str| f.get(k).filter(|v| !v.is_null());
    let timestamp = match time_of(f, top) {
        Ok(t) => t,
        Err(e) => return Outcome::Rejected(e),
    };
    let evt_type = str_of(get("evt.type")).unwrap_or_default();
    let kind = match evt_type.as_str() {
        "execve" | "execveat" => ActivityType::Command,
        "connect" | "accept" | "accept4" => ActivityType::Connection,
        "open" | "openat" | "openat2" | "creat" => ActivityType::Fileaccess,
        "" if get("fd.sip").is_some() => ActivityType::Connection,
        "" if get("fd.name").is_some()
            && get("proc.cmdline").is_some()
            && get("evt.is_open_write").is_some() =>
        {
            ActivityType::Fileaccess
        }
        "" if get("proc.cmdline").is_some() || get("proc.name").is_some() => ActivityType::Command,
        _ => return Outcome::NotActivity,
    };
    let comm = str_of(get("proc.name")).unwrap_or_default();
    let pcomm = str_of(get("proc.pname")).unwrap_or_default();
    let tty = int_of(get("proc.tty"));
    let login_shell = int_of(get("proc.loginshellid"));
    let container_id = str_of(get("container.id"))
        .filter(|c| c != "host")
        .unwrap_or_default();
    // The container's init (vpid 1) is also a child of the runtime; an exec root is not init.
    let is_init = int_of(get("proc.vpid")) == Some(1);
    let exec_root = !container_id.is_empty() && RUNTIMES.contains(&pcomm.as_str()) && !is_init;
    let ssh_like = matches!(comm.as_str(), "sshd" | "telnetd" | "dropbear");
    let interactive = tty.is_some_and(|t| t != 0)
        || login_shell.is_some_and(|s| s != 0)
        || exec_root
        || (kind == ActivityType::Connection && ssh_like);
    if interactive_only && !interactive {
        return Outcome::NotActivity;
    }
    let image = match (
        str_of(get("container.image.repository")),
        str_of(get("container.image.tag")),
    ) {
        (Some(r), Some(t)) => format!("{r}:{t}"),
        (Some(r), None) => r,
        _ => str_of(get("container.image")).unwrap_or_default(),
    };
    let pid = int_of(get("proc.pid")).unwrap_or(0);
    let hostname = str_of(top.get("hostname")).unwrap_or_default();
    let start = int_of(get("proc.pid.ts")).unwrap_or(0);
    let mut e = ActivityEvent {
        kind,
        source: Source::Falco,
        timestamp,
        hostname: hostname.clone(),
        container_id,
        container_name: str_of(get("container.name")).unwrap_or_default(),
        container_image: image,
        namespace: str_of(get("k8s.ns.name")).unwrap_or_default(),
        pod: str_of(get("k8s.pod.name")).unwrap_or_default(),
        comm: comm.clone(),
        cmdline: str_of(get("proc.cmdline")).unwrap_or_default(),
        pid,
        ppid: int_of(get("proc.ppid")).unwrap_or(0),
        tty,
        ..Default::default()
    };
    if !e.container_id.is_empty() && e.container_name == "host" {
        e.container_name.clear();
    }
    if pid != 0 && start != 0 {
        // Falco has no exec id: (host, pid, start time) keys a process (pids are reused).
        e.process_start_time = start;
        e.exec_id = format!("{hostname}:{pid}:{start}");
    }
    match kind {
        ActivityType::Command => {
            e.exe = str_of(get("proc.exepath"))
                .or_else(|| str_of(get("proc.exe")))
                .unwrap_or_default();
            e.cwd = str_of(get("proc.cwd")).unwrap_or_default();
            e.pcomm = pcomm;
            e.uid = int_of(get("user.uid"));
            e.username = str_of(get("user.name")).unwrap_or_default();
            e.user_login_uid = int_of(get("user.loginuid"));
            e.user_login_name = str_of(get("user.loginname")).unwrap_or_default();
            e.login_shell_id = login_shell;
            if e.container_id.is_empty() {
                e.in_init_tree = None;
            } else if exec_root {
                e.in_init_tree = Some(false);
            } else if is_init {
                e.in_init_tree = Some(true);
            }
            // With the parent's start time the parent is keyed exactly like this process.
            if let Some(pts) = int_of(get("proc.ppid.ts")).filter(|t| *t != 0)
                && e.ppid != 0
            {
                e.parent_exec_id = format!("{hostname}:{}:{pts}", e.ppid);
            }
            if e.comm.is_empty() && e.cmdline.is_empty() {
                e.comm = basename(&e.exe).to_string();
            }
        }
        ActivityType::Connection => {
            e.direction = if evt_type.starts_with("accept") {
                "in"
            } else {
                "out"
            }
            .into();
            e.l4protocol = str_of(get("fd.l4proto"))
                .map(|p| p.to_lowercase())
                .unwrap_or_default();
            if !matches!(e.l4protocol.as_str(), "tcp" | "udp") {
                e.l4protocol.clear();
            }
            e.client_ip = str_of(get("fd.cip")).unwrap_or_default();
            e.client_port = int_of(get("fd.cport")).unwrap_or(0);
            e.server_ip = str_of(get("fd.sip")).unwrap_or_default();
            e.server_port = int_of(get("fd.sport")).unwrap_or(0);
        }
        ActivityType::Fileaccess => {
            e.filename = str_of(get("fd.name")).unwrap_or_default();
            let w = bool_of(get("evt.is_open_write")).unwrap_or(false);
            let r = bool_of(get("evt.is_open_read")).unwrap_or(!w);
            e.permissions = match (r, w) {
                (true, true) => "rw",
                (false, true) => "w",
                _ => "r",
            }
            .into();
            e.normalize();
        }
        ActivityType::Kubernetes => {}
    }
    let key = super::natural_key(raw, &v);
    Outcome::Activity(Box::new(e), key)
}

/// The event time: `evt.time` (ns, a number or numeric string), `evt.time.iso8601` (which is
/// sometimes a number), else the alert's `time`.
fn time_of(f: &Map<String, Value>, top: &Map<String, Value>) -> Result<i64, String> {
    for k in ["evt.rawtime", "evt.time", "evt.time.iso8601"] {
        match f.get(k) {
            Some(Value::Number(n)) => {
                if let Some(t) = n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)) {
                    return Ok(t);
                }
            }
            Some(Value::String(s)) => {
                if let Ok(t) = s.parse::<i64>() {
                    return Ok(t);
                }
                if let Some(t) = parse_rfc3339_ns(s) {
                    return Ok(t);
                }
            }
            _ => {}
        }
    }
    match top.get("time").and_then(Value::as_str) {
        Some(s) => parse_rfc3339_ns(s)
            .ok_or_else(|| format!("field `time`: {s:?} is not an RFC 3339 time")),
        None => Err("field `time`: missing (and no evt.time in output_fields)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert_json(fields: Value) -> String {
        serde_json::json!({
            "time": "2024-05-07T18:54:19.341081180Z", "rule": "Activity Audit: command",
            "priority": "Notice", "source": "syscall", "hostname": "node-1",
            "output": "...", "tags": ["activity_audit"], "output_fields": fields
        })
        .to_string()
    }

    fn one(body: &str) -> Outcome {
        parse(body.as_bytes(), true).unwrap().remove(0)
    }

    #[test]
    fn interactive_command_with_quirks() {
        let body = alert_json(serde_json::json!({
            "evt.type": "execve", "evt.time.iso8601": 1715108059341081180i64,
            "proc.pid": 4242, "proc.ppid": 4200, "proc.name": "cat", "proc.pname": "bash",
            "proc.exepath": "/bin/cat", "proc.cmdline": "cat /etc/shadow", "proc.cwd": "/root",
            "proc.tty": 34816, "proc.loginshellid": 4200, "proc.pid.ts": 1715108059000000000i64,
            "user.uid": 0, "user.name": "root", "user.loginuid": -1, "user.loginname": null,
            "container.id": "9656db3bb358", "container.name": "web",
            "container.image.repository": "nginx", "container.image.tag": ["1.25", "latest"],
            "k8s.ns.name": "shop", "k8s.pod.name": "web-1", "proc.aname[2]": "sshd"
        }));
        let Outcome::Activity(e, _) = one(&body) else {
            panic!()
        };
        assert_eq!(e.kind, ActivityType::Command);
        assert_eq!(e.timestamp, 1_715_108_059_341_081_180);
        assert_eq!(
            (e.pid, e.ppid, e.uid, e.tty),
            (4242, 4200, Some(0), Some(34816))
        );
        assert_eq!(e.container_image, "nginx:1.25");
        assert_eq!(e.exec_id, "node-1:4242:1715108059000000000");
        assert_eq!(e.user_login_name, "");
        e.validate().unwrap();
    }

    #[test]
    fn connections_files_and_non_activity() {
        let conn = alert_json(serde_json::json!({
            "evt.type": "connect", "proc.name": "curl", "proc.pid": 5, "proc.tty": 34816,
            "fd.l4proto": "tcp", "fd.cip": "10.0.0.5", "fd.cport": 40000, "fd.sip": "1.2.3.4", "fd.sport": 443
        }));
        let Outcome::Activity(c, _) = one(&conn) else {
            panic!()
        };
        assert_eq!((c.direction.as_str(), c.server_port), ("out", 443));
        let file = alert_json(serde_json::json!({
            "evt.type": "openat", "proc.name": "vi", "proc.tty": 34816,
            "fd.name": "/etc/passwd", "evt.is_open_write": true
        }));
        let Outcome::Activity(f, _) = one(&file) else {
            panic!()
        };
        assert_eq!(
            (f.directory.as_str(), f.permissions.as_str()),
            ("/etc", "w")
        );
        let daemon = alert_json(
            serde_json::json!({"evt.type": "execve", "proc.name": "nginx", "proc.tty": 0, "proc.pname": "nginx"}),
        );
        assert_eq!(one(&daemon), Outcome::NotActivity);
        assert!(matches!(
            parse(daemon.as_bytes(), false).unwrap()[0],
            Outcome::Activity(..)
        ));
        let exec_in = alert_json(
            serde_json::json!({"evt.type": "execve", "proc.name": "ls", "proc.tty": 0, "proc.pname": "runc", "container.id": "abc"}),
        );
        let Outcome::Activity(x, _) = one(&exec_in) else {
            panic!()
        };
        assert_eq!(x.in_init_tree, Some(false));
    }

    #[test]
    fn rejections_name_the_field() {
        assert!(
            matches!(one(r#"{"time":"x","output_fields":{"proc.name":"sh","proc.tty":1}}"#), Outcome::Rejected(m) if m.contains("time"))
        );
        assert!(
            matches!(one(r#"{"time":"2024-05-07T18:54:19Z"}"#), Outcome::Rejected(m) if m.contains("output_fields"))
        );
    }
}

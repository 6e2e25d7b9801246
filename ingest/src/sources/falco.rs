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

use super::{Outcome, basename};
use crate::error::IngestError;
use schemas::time::parse_rfc3339_ns;
use schemas::{ActivityEvent, ActivityType, Source};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Container runtimes whose children are exec'd into a container from outside its init tree.
const RUNTIMES: &[&str] = &[
    "runc",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "conmon",
    "crio",
    "docker-runc",
];

/// Parses a body of Falco alerts: one alert, an array of alerts, or JSON lines (a line may
/// itself be an array). Each alert's natural key is its own text.
pub fn parse(body: &[u8], interactive_only: bool) -> Result<Vec<Outcome>, IngestError> {
    let mut out = Vec::new();
    for item in crate::native::split_items(body)? {
        match item {
            Ok(raw) if raw.first() == Some(&b'[') => {
                match serde_json::from_slice::<Vec<&RawValue>>(raw) {
                    Ok(alerts) => out.extend(
                        alerts
                            .into_iter()
                            .map(|a| alert(a.get().as_bytes(), interactive_only)),
                    ),
                    Err(e) => out.push(Outcome::Rejected(format!("malformed JSON: {e}"))),
                }
            }
            Ok(raw) => out.push(alert(raw, interactive_only)),
            Err(e) => out.push(Outcome::Rejected(e)),
        }
    }
    Ok(out)
}

/// A field value as Falco sends it: a string, a number, a boolean, null, or (for some fields)
/// an array, of which the first element counts. Strings are borrowed from the body unless
/// they contain escapes.
#[derive(Debug, Clone, Default, PartialEq)]
enum F<'a> {
    #[default]
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    /// An object: no field we read is one.
    Other,
}

impl<'a> F<'a> {
    /// A string, or `None` when absent/null/empty; numbers and booleans are printed.
    fn text(&self) -> Option<String> {
        match self {
            F::Str(s) if !s.is_empty() => Some(s.to_string()),
            F::Int(n) => Some(n.to_string()),
            F::Uint(n) => Some(n.to_string()),
            F::Float(n) => Some(serde_json::Number::from_f64(*n)?.to_string()),
            F::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn is_some(&self) -> bool {
        *self != F::Null
    }

    /// An integer that may arrive as a number or a numeric string.
    fn int(&self) -> Option<i64> {
        match self {
            F::Int(n) => Some(*n),
            F::Uint(n) => Some(*n as i64),
            F::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A boolean that may arrive as `true`, `"true"` or `1`.
    fn boolean(&self) -> Option<bool> {
        match self {
            F::Bool(b) => Some(*b),
            F::Str(s) => match s.as_ref() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            F::Int(n) => Some(*n != 0),
            F::Uint(n) => Some(*n != 0),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for F<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = F<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Falco field value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<F<'de>, E> {
                Ok(F::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<F<'de>, E> {
                Ok(F::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<F<'de>, E> {
                Ok(F::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<F<'de>, E> {
                Ok(F::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<F<'de>, E> {
                Ok(F::Uint(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<F<'de>, E> {
                Ok(F::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<F<'de>, E> {
                Ok(F::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<F<'de>, E> {
                Ok(F::Null)
            }
            fn visit_none<E>(self) -> Result<F<'de>, E> {
                Ok(F::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<F<'de>, A::Error> {
                let first = seq.next_element::<F<'de>>()?.unwrap_or_default();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(first)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<F<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(F::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `output_fields` this parser reads (Falco field names); the others are skipped unread.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Fields<'a> {
    #[serde(borrow, rename = "evt.type")]
    evt_type: F<'a>,
    #[serde(borrow, rename = "evt.rawtime")]
    evt_rawtime: F<'a>,
    #[serde(borrow, rename = "evt.time")]
    evt_time: F<'a>,
    #[serde(borrow, rename = "evt.time.iso8601")]
    evt_time_iso8601: F<'a>,
    #[serde(borrow, rename = "evt.is_open_read")]
    is_open_read: F<'a>,
    #[serde(borrow, rename = "evt.is_open_write")]
    is_open_write: F<'a>,
    #[serde(borrow, rename = "proc.name")]
    proc_name: F<'a>,
    #[serde(borrow, rename = "proc.pname")]
    proc_pname: F<'a>,
    #[serde(borrow, rename = "proc.cmdline")]
    proc_cmdline: F<'a>,
    #[serde(borrow, rename = "proc.exepath")]
    proc_exepath: F<'a>,
    #[serde(borrow, rename = "proc.exe")]
    proc_exe: F<'a>,
    #[serde(borrow, rename = "proc.cwd")]
    proc_cwd: F<'a>,
    #[serde(borrow, rename = "proc.pid")]
    proc_pid: F<'a>,
    #[serde(borrow, rename = "proc.ppid")]
    proc_ppid: F<'a>,
    #[serde(borrow, rename = "proc.vpid")]
    proc_vpid: F<'a>,
    #[serde(borrow, rename = "proc.pid.ts")]
    proc_pid_ts: F<'a>,
    #[serde(borrow, rename = "proc.ppid.ts")]
    proc_ppid_ts: F<'a>,
    #[serde(borrow, rename = "proc.tty")]
    proc_tty: F<'a>,
    #[serde(borrow, rename = "proc.loginshellid")]
    proc_loginshellid: F<'a>,
    #[serde(borrow, rename = "user.uid")]
    user_uid: F<'a>,
    #[serde(borrow, rename = "user.name")]
    user_name: F<'a>,
    #[serde(borrow, rename = "user.loginuid")]
    user_loginuid: F<'a>,
    #[serde(borrow, rename = "user.loginname")]
    user_loginname: F<'a>,
    #[serde(borrow, rename = "container.id")]
    container_id: F<'a>,
    #[serde(borrow, rename = "container.name")]
    container_name: F<'a>,
    #[serde(borrow, rename = "container.image")]
    container_image: F<'a>,
    #[serde(borrow, rename = "container.image.repository")]
    image_repository: F<'a>,
    #[serde(borrow, rename = "container.image.tag")]
    image_tag: F<'a>,
    #[serde(borrow, rename = "k8s.ns.name")]
    k8s_ns_name: F<'a>,
    #[serde(borrow, rename = "k8s.pod.name")]
    k8s_pod_name: F<'a>,
    #[serde(borrow, rename = "fd.name")]
    fd_name: F<'a>,
    #[serde(borrow, rename = "fd.l4proto")]
    fd_l4proto: F<'a>,
    #[serde(borrow, rename = "fd.cip")]
    fd_cip: F<'a>,
    #[serde(borrow, rename = "fd.cport")]
    fd_cport: F<'a>,
    #[serde(borrow, rename = "fd.sip")]
    fd_sip: F<'a>,
    #[serde(borrow, rename = "fd.sport")]
    fd_sport: F<'a>,
}

/// `output_fields`, which must be an object.
#[derive(Debug, Default)]
enum OutputFields<'a> {
    #[default]
    Missing,
    NotObject,
    Fields(Box<Fields<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for OutputFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutputFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of Falco fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let fields = Fields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(OutputFields::Fields(Box::new(fields)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(OutputFields::NotObject)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(OutputFields::Missing)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(OutputFields::NotObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(OutputFields::NotObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(OutputFields::NotObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(OutputFields::NotObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(OutputFields::NotObject)
            }
        }
        d.deserialize_any(V)
    }
}

/// A Falco `http_output` alert; `rule`, `priority`, `output` and `tags` are not read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Alert<'a> {
    #[serde(borrow)]
    time: F<'a>,
    #[serde(borrow)]
    source: F<'a>,
    #[serde(borrow)]
    hostname: F<'a>,
    #[serde(borrow)]
    output_fields: OutputFields<'a>,
}

fn alert(raw: &[u8], interactive_only: bool) -> Outcome {
    if raw.trim_ascii_start().first() != Some(&b'{') {
        return Outcome::Rejected("expected a Falco alert object".into());
    }
    let top: Alert = match serde_json::from_slice(raw) {
        Ok(a) => a,
        Err(e) => return Outcome::Rejected(format!("malformed Falco alert: {e}")),
    };
    let OutputFields::Fields(f) = &top.output_fields else {
        return Outcome::Rejected("field `output_fields`: missing or not an object".into());
    };
    if let F::Str(src) = &top.source
        && src != "syscall"
    {
        // Alerts of Falco's plugins (k8saudit, cloudtrail…) are not node activity.
        return Outcome::NotActivity;
    }
    let timestamp = match time_of(f, &top) {
        Ok(t) => t,
        Err(e) => return Outcome::Rejected(e),
    };
    let evt_type = f.evt_type.text().unwrap_or_default();
    let kind = match evt_type.as_str() {
        "execve" | "execveat" => ActivityType::Command,
        "connect" | "accept" | "accept4" => ActivityType::Connection,
        "open" | "openat" | "openat2" | "creat" => ActivityType::Fileaccess,
        "" if f.fd_sip.is_some() => ActivityType::Connection,
        "" if f.fd_name.is_some() && f.proc_cmdline.is_some() && f.is_open_write.is_some() => {
            ActivityType::Fileaccess
        }
        "" if f.proc_cmdline.is_some() || f.proc_name.is_some() => ActivityType::Command,
        _ => return Outcome::NotActivity,
    };
    let comm = f.proc_name.text().unwrap_or_default();
    let pcomm = f.proc_pname.text().unwrap_or_default();
    let tty = f.proc_tty.int();
    let login_shell = f.proc_loginshellid.int();
    let container_id = f
        .container_id
        .text()
        .filter(|c| c != "host")
        .unwrap_or_default();
    // The container's init (vpid 1) is also a child of the runtime; an exec root is not init.
    let is_init = f.proc_vpid.int() == Some(1);
    let exec_root = !container_id.is_empty() && RUNTIMES.contains(&pcomm.as_str()) && !is_init;
    let ssh_like = matches!(comm.as_str(), "sshd" | "telnetd" | "dropbear");
    let interactive = tty.is_some_and(|t| t != 0)
        || login_shell.is_some_and(|s| s != 0)
        || exec_root
        || (kind == ActivityType::Connection && ssh_like);
    if interactive_only && !interactive {
        return Outcome::NotActivity;
    }
    let image = match (f.image_repository.text(), f.image_tag.text()) {
        (Some(r), Some(t)) => format!("{r}:{t}"),
        (Some(r), None) => r,
        _ => f.container_image.text().unwrap_or_default(),
    };
    let pid = f.proc_pid.int().unwrap_or(0);
    let hostname = top.hostname.text().unwrap_or_default();
    let start = f.proc_pid_ts.int().unwrap_or(0);
    let mut e = ActivityEvent {
        kind,
        source: Source::Falco,
        timestamp,
        hostname: hostname.clone(),
        container_id,
        container_name: f.container_name.text().unwrap_or_default(),
        container_image: image,
        namespace: f.k8s_ns_name.text().unwrap_or_default(),
        pod: f.k8s_pod_name.text().unwrap_or_default(),
        comm: comm.clone(),
        cmdline: f.proc_cmdline.text().unwrap_or_default(),
        pid,
        ppid: f.proc_ppid.int().unwrap_or(0),
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
            e.exe = f
                .proc_exepath
                .text()
                .or_else(|| f.proc_exe.text())
                .unwrap_or_default();
            e.cwd = f.proc_cwd.text().unwrap_or_default();
            e.pcomm = pcomm;
            e.uid = f.user_uid.int();
            e.username = f.user_name.text().unwrap_or_default();
            e.user_login_uid = f.user_loginuid.int();
            e.user_login_name = f.user_loginname.text().unwrap_or_default();
            e.login_shell_id = login_shell;
            if e.container_id.is_empty() {
                e.in_init_tree = None;
            } else if exec_root {
                e.in_init_tree = Some(false);
            } else if is_init {
                e.in_init_tree = Some(true);
            }
            // With the parent's start time the parent is keyed exactly like this process.
            if let Some(pts) = f.proc_ppid_ts.int().filter(|t| *t != 0)
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
            e.l4protocol = f
                .fd_l4proto
                .text()
                .map(|p| p.to_lowercase())
                .unwrap_or_default();
            if !matches!(e.l4protocol.as_str(), "tcp" | "udp") {
                e.l4protocol.clear();
            }
            e.client_ip = f.fd_cip.text().unwrap_or_default();
            e.client_port = f.fd_cport.int().unwrap_or(0);
            e.server_ip = f.fd_sip.text().unwrap_or_default();
            e.server_port = f.fd_sport.int().unwrap_or(0);
        }
        ActivityType::Fileaccess => {
            e.filename = f.fd_name.text().unwrap_or_default();
            let w = f.is_open_write.boolean().unwrap_or(false);
            let r = f.is_open_read.boolean().unwrap_or(!w);
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
    Outcome::Activity(Box::new(e), raw.to_vec())
}

/// The event time: `evt.rawtime` or `evt.time` (ns, a number or numeric string),
/// `evt.time.iso8601` (which is sometimes a number), else the alert's `time`.
fn time_of(f: &Fields, top: &Alert) -> Result<i64, String> {
    for v in [&f.evt_rawtime, &f.evt_time, &f.evt_time_iso8601] {
        match v {
            F::Int(n) => return Ok(*n),
            F::Uint(n) => return Ok(*n as i64),
            F::Str(s) => {
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
    match &top.time {
        F::Str(s) => parse_rfc3339_ns(s)
            .ok_or_else(|| format!("field `time`: {s:?} is not an RFC 3339 time")),
        _ => Err("field `time`: missing (and no evt.time in output_fields)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert_json(fields: serde_json::Value) -> String {
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

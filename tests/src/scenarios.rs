//! Session scenarios with ground truth, in the formats real producers send: Falco `http_output`
//! alerts, Tetragon JSON export lines and API-server audit events (brief §3), each item with
//! the time it reaches ingest and the session it truly belongs to.
//!
//! Covered: kube exec with a shell (verbs `create` and `get`), exec of a single non-tty
//! command, `sh -c` wrappers, attach, `kubectl run -it`, ssh and dropbear logins with nested
//! shells and sudo, an app whose entrypoint is a shell script (not a session), two users'
//! concurrent execs into one pod (ambiguous), an audit batch 45 s late, agent events before
//! their origin, pid reuse, and a refused exec (403).

use crate::generator::Rng;
use schemas::time::format_rfc3339_ns as rfc3339;
use serde_json::{Value, json};

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

/// What an item is, as its producer sends it.
#[derive(Debug, Clone)]
pub enum Input {
    Falco(Value),
    Tetragon(Value),
    /// One audit `Event` (posted inside an `EventList`).
    Audit(Value),
}

impl Input {
    /// The ingest endpoint this input is posted to.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Input::Falco(_) => "/v1/falco",
            Input::Tetragon(_) => "/v1/tetragon",
            Input::Audit(_) => "/v1/k8s-audit",
        }
    }
    pub fn value(&self) -> &Value {
        match self {
            Input::Falco(v) | Input::Tetragon(v) | Input::Audit(v) => v,
        }
    }
}

/// The session an item truly belongs to (a label unique in the suite), or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    None,
    Session(String),
}

#[derive(Debug, Clone)]
pub struct Item {
    /// When the item reaches ingest, ns.
    pub arrival: i64,
    pub input: Input,
    pub truth: Truth,
    /// Whether the item starts its session (its event carries the trace by definition).
    pub origin: bool,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub items: Vec<Item>,
    /// Sessions here cannot be told apart: their events must be ambiguous, never misattributed.
    pub ambiguous: bool,
}

/// Where processes run.
#[derive(Debug, Clone)]
struct Place {
    node: String,
    ns: String,
    pod: String,
    container: String,
    container_id: String,
    image: String,
    workload: String,
}

impl Place {
    fn host(node: &str) -> Place {
        Place {
            node: node.into(),
            ns: String::new(),
            pod: String::new(),
            container: String::new(),
            container_id: String::new(),
            image: String::new(),
            workload: String::new(),
        }
    }
    fn pod(node: &str, ns: &str, pod: &str, container: &str, image: &str, rng: &mut Rng) -> Place {
        Place {
            node: node.into(),
            ns: ns.into(),
            pod: pod.into(),
            container: container.into(),
            container_id: format!(
                "{:016x}{:016x}{:016x}{:016x}",
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64()
            ),
            image: image.into(),
            workload: pod
                .rsplit_once('-')
                .map(|(w, _)| w.to_string())
                .unwrap_or_default(),
        }
    }
}

/// A process as agents see it.
#[derive(Debug, Clone)]
struct P {
    pid: i64,
    vpid: i64,
    start: i64,
    exe: String,
    args: String,
    tty: i64,
    ppid: i64,
    pvpid: i64,
    pstart: i64,
    pexe: String,
    login_shell: i64,
    uid: i64,
    user: String,
    login_name: String,
    in_init: Option<bool>,
    exec_id: String,
    parent_exec_id: String,
}

impl P {
    fn comm(&self) -> &str {
        self.exe.rsplit('/').next().unwrap_or(&self.exe)
    }
    fn pcomm(&self) -> &str {
        self.pexe.rsplit('/').next().unwrap_or(&self.pexe)
    }
    fn cmdline(&self) -> String {
        if self.args.is_empty() {
            self.comm().to_string()
        } else {
            format!("{} {}", self.comm(), self.args)
        }
    }
}

fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Builds scenarios: per node pid counters, one clock, one random source.
pub struct Sim {
    rng: Rng,
    pids: std::collections::HashMap<String, i64>,
    audit_seq: u64,
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        Sim {
            rng: Rng::new(seed),
            pids: Default::default(),
            audit_seq: 0,
        }
    }

    fn pid(&mut self, node: &str) -> i64 {
        let n = self.pids.entry(node.to_string()).or_insert(3000);
        *n += 1 + self.rng.below(7) as i64;
        *n
    }

    /// A process started at `start` by `parent` (or by `pexe` outside what agents report).
    #[allow(clippy::too_many_arguments)]
    fn proc(
        &mut self,
        place: &Place,
        parent: Option<&P>,
        pexe: &str,
        start: i64,
        exe: &str,
        args: &str,
        tty: i64,
        user: &str,
    ) -> P {
        let pid = self.pid(&place.node);
        let (ppid, pvpid, pstart, login_shell, login_name) = match parent {
            Some(p) => (p.pid, p.vpid, p.start, p.login_shell, p.login_name.clone()),
            None => (self.pid(&place.node), 0, start - 5 * S, 0, String::new()),
        };
        let comm = exe.rsplit('/').next().unwrap_or(exe);
        let is_shell = comm.ends_with("sh") && comm != "ssh";
        let mut p = P {
            pid,
            vpid: if place.pod.is_empty() {
                pid
            } else {
                pid % 1000 + 2
            },
            start,
            exe: exe.into(),
            args: args.into(),
            tty,
            ppid,
            pvpid,
            pstart,
            pexe: parent
                .map(|p| p.exe.clone())
                .unwrap_or_else(|| pexe.to_string()),
            login_shell: if login_shell == 0 && is_shell {
                pid
            } else {
                login_shell
            },
            uid: if user == "root" { 0 } else { 1000 },
            user: user.into(),
            login_name,
            in_init: parent.and_then(|p| p.in_init),
            exec_id: String::new(),
            parent_exec_id: String::new(),
        };
        p.exec_id = b64(&format!("{}:{}:{}", place.node, start / 1000, pid));
        p.parent_exec_id = match parent {
            Some(q) => q.exec_id.clone(),
            None => b64(&format!("{}:{}:{}", place.node, pstart / 1000, ppid)),
        };
        p
    }

    // ---- Falco ---------------------------------------------------------------------------

    fn falco(&self, place: &Place, p: &P, ts: i64, rule: &str, evt: &str, extra: Value) -> Value {
        let cid = if place.container_id.is_empty() {
            "host".to_string()
        } else {
            place.container_id[..12].to_string()
        };
        let (repo, tag) = place
            .image
            .split_once(':')
            .unwrap_or((&place.image, "latest"));
        let mut f = json!({
            "evt.time": ts, "evt.type": evt, "proc.pid": p.pid, "proc.ppid": p.ppid,
            "proc.vpid": p.vpid, "proc.pvpid": p.pvpid, "proc.sid": p.login_shell,
            "proc.vpgid": p.vpid, "proc.loginshellid": p.login_shell, "proc.tty": p.tty,
            "proc.name": p.comm(), "proc.pname": p.pcomm(), "proc.exepath": p.exe,
            "proc.cmdline": p.cmdline(), "proc.cwd": "/root/", "proc.pid.ts": p.start,
            "proc.ppid.ts": p.pstart, "user.uid": p.uid, "user.name": p.user,
            "user.loginuid": if p.login_name.is_empty() { -1 } else { 1000 },
            "user.loginname": if p.login_name.is_empty() { Value::Null } else { json!(p.login_name) },
            "container.id": cid,
            "container.name": if place.container.is_empty() { json!("host") } else { json!(place.container) },
            "container.image.repository": if repo.is_empty() { Value::Null } else { json!(repo) },
            "container.image.tag": if repo.is_empty() { Value::Null } else { json!(tag) },
            "k8s.ns.name": if place.ns.is_empty() { Value::Null } else { json!(place.ns) },
            "k8s.pod.name": if place.pod.is_empty() { Value::Null } else { json!(place.pod) },
        });
        if let (Some(m), Value::Object(x)) = (f.as_object_mut(), extra) {
            m.extend(x);
        }
        json!({
            "time": rfc3339(ts), "rule": rule, "priority": "Notice", "source": "syscall",
            "hostname": place.node, "output": format!("aa {evt} {}", p.cmdline()),
            "tags": ["activity_audit"], "output_fields": f
        })
    }

    fn falco_exec(&self, place: &Place, p: &P) -> Value {
        self.falco(
            place,
            p,
            p.start + 40_000,
            "Activity Audit interactive command",
            "execve",
            json!({}),
        )
    }

    fn falco_connect(&self, place: &Place, p: &P, ts: i64, dst: &str, port: i64) -> Value {
        self.falco(
            place,
            p,
            ts,
            "Activity Audit interactive connection",
            "connect",
            json!({
                "fd.name": format!("10.0.3.7:41234->{dst}:{port}"), "fd.l4proto": "tcp",
                "fd.cip": "10.0.3.7", "fd.cport": 41234, "fd.sip": dst, "fd.sport": port
            }),
        )
    }

    fn falco_accept(&self, place: &Place, p: &P, ts: i64, client: &str) -> Value {
        self.falco(
            place,
            p,
            ts,
            "Activity Audit interactive connection",
            "accept4",
            json!({
                "fd.name": format!("{client}:52144->10.0.0.4:22"), "fd.l4proto": "tcp",
                "fd.cip": client, "fd.cport": 52144, "fd.sip": "10.0.0.4", "fd.sport": 22
            }),
        )
    }

    fn falco_open(&self, place: &Place, p: &P, ts: i64, path: &str, write: bool) -> Value {
        self.falco(
            place,
            p,
            ts,
            "Activity Audit interactive file access",
            "openat",
            json!({
                "fd.name": path, "evt.is_open_read": !write, "evt.is_open_write": write
            }),
        )
    }

    // ---- Tetragon ------------------------------------------------------------------------

    fn tetragon_process(&self, place: &Place, p: &P) -> Value {
        let mut v = json!({
            "exec_id": p.exec_id, "pid": p.pid, "uid": p.uid, "cwd": "/",
            "binary": p.exe, "arguments": p.args, "flags": "execve clone",
            "start_time": rfc3339(p.start), "auid": if p.login_name.is_empty() { 4294967295i64 } else { 1000 },
            "parent_exec_id": p.parent_exec_id, "tid": p.pid,
        });
        if !place.pod.is_empty() {
            v["pod"] = json!({
                "namespace": place.ns, "name": place.pod,
                "container": {"id": format!("containerd://{}", place.container_id), "name": place.container,
                              "image": {"id": format!("docker.io/library/{}@sha256:abc", place.image), "name": place.image},
                              "start_time": rfc3339(p.start - 3600 * S), "pid": p.vpid},
                "workload": place.workload, "workload_kind": "Deployment"
            });
            v["docker"] = json!(&place.container_id[..31]);
            v["in_init_tree"] = json!(p.in_init.unwrap_or(true));
        }
        v
    }

    fn tetragon_parent(&self, p: &P) -> Value {
        json!({"exec_id": p.parent_exec_id, "pid": p.ppid, "binary": p.pexe, "start_time": rfc3339(p.pstart)})
    }

    fn tetragon_exec(&self, place: &Place, p: &P) -> Value {
        json!({"process_exec": {"process": self.tetragon_process(place, p), "parent": self.tetragon_parent(p)},
               "node_name": place.node, "time": rfc3339(p.start + 30_000)})
    }

    fn tetragon_kprobe(&self, place: &Place, p: &P, ts: i64, function: &str, args: Value) -> Value {
        json!({"process_kprobe": {"process": self.tetragon_process(place, p), "parent": self.tetragon_parent(p),
               "function_name": function, "args": args, "action": "KPROBE_ACTION_POST",
               "policy_name": "activity-audit"},
               "node_name": place.node, "time": rfc3339(ts)})
    }

    fn tetragon_connect(&self, place: &Place, p: &P, ts: i64, dst: &str, port: i64) -> Value {
        self.tetragon_kprobe(
            place,
            p,
            ts,
            "tcp_connect",
            json!([{"sock_arg": {
            "family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
            "saddr": "10.0.3.9", "daddr": dst, "sport": 40512, "dport": port, "cookie": "1",
            "state": "TCP_SYN_SENT"}}]),
        )
    }

    fn tetragon_accept(&self, place: &Place, p: &P, ts: i64, client: &str) -> Value {
        self.tetragon_kprobe(
            place,
            p,
            ts,
            "inet_csk_accept",
            json!([{"sock_arg": {
            "family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
            "saddr": "10.0.0.5", "daddr": client, "sport": 22, "dport": 50022, "cookie": "2",
            "state": "TCP_ESTABLISHED"}}]),
        )
    }

    fn tetragon_open(&self, place: &Place, p: &P, ts: i64, path: &str, write: bool) -> Value {
        self.tetragon_kprobe(
            place,
            p,
            ts,
            "security_file_permission",
            json!([
            {"file_arg": {"path": path, "permission": "-rw-r--r--"}},
            {"int_arg": if write { 2 } else { 4 }}]),
        )
    }

    // ---- audit ---------------------------------------------------------------------------

    /// The audit events of one exec/attach (ResponseStarted, ResponseComplete) or run.
    #[allow(clippy::too_many_arguments)]
    fn audit(
        &mut self,
        sub: &str,
        verb: &str,
        place: &Place,
        argv: &[&str],
        tty: bool,
        user: &str,
        received: i64,
        end: i64,
        code: i64,
    ) -> Vec<(i64, Value)> {
        self.audit_seq += 1;
        // The API server's clock is not the node's: up to 1.5 s apart either way.
        let received = received + (self.rng.below(3000) as i64 - 1500) * MS;
        let end = end.max(received + 100 * MS);
        let id = format!(
            "{:08x}-5c1e-4b1a-9d3e-{:012x}",
            self.rng.next_u64() as u32,
            self.audit_seq
        );
        let ua = if verb == "get" {
            "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
        } else {
            "kubectl/v1.29.3 (darwin/arm64) kubernetes/6813625"
        };
        let user_json = json!({"username": user, "groups": ["developers", "system:authenticated"]});
        let ips = json!(["203.0.113.24", "10.0.0.2"]);
        if sub == "run" {
            let ev = json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
                "auditID": id, "stage": "ResponseComplete",
                "requestURI": format!("/api/v1/namespaces/{}/pods?fieldManager=kubectl-run", place.ns),
                "verb": "create", "user": user_json, "sourceIPs": ips, "userAgent": ua,
                "objectRef": {"resource": "pods", "namespace": place.ns, "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 201},
                "requestObject": {"kind": "Pod", "apiVersion": "v1",
                    "metadata": {"name": place.pod, "namespace": place.ns, "labels": {"run": place.pod}},
                    "spec": {"containers": [{"name": place.container, "image": place.image,
                        "args": argv, "stdin": true, "tty": tty, "stdinOnce": true}],
                        "restartPolicy": "Never"}},
                "requestReceivedTimestamp": rfc3339(received),
                "stageTimestamp": rfc3339(received + 40 * MS)
            });
            return vec![(received + 40 * MS, ev)];
        }
        let mut q: Vec<String> = argv
            .iter()
            .map(|a| format!("command={}", urlencode(a)))
            .collect();
        q.push(format!("container={}", place.container));
        if sub == "exec" && self.rng.below(2) == 0 {
            // kubectl sends the container twice sometimes.
            q.push(format!("container={}", place.container));
        }
        q.push("stdin=true".into());
        q.push("stdout=true".into());
        if !tty {
            q.push("stderr=true".into());
        }
        q.push(format!("tty={tty}"));
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{}/{sub}?{}",
            place.ns,
            place.pod,
            q.join("&")
        );
        let stage = |stage: &str, at: i64, code: i64| {
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": id, "stage": stage, "requestURI": uri, "verb": verb,
                "user": user_json, "sourceIPs": ips, "userAgent": ua,
                "objectRef": {"resource": "pods", "namespace": place.ns, "name": place.pod,
                              "apiVersion": "v1", "subresource": sub},
                "responseStatus": {"metadata": {}, "code": code},
                "requestReceivedTimestamp": rfc3339(received), "stageTimestamp": rfc3339(at)
            })
        };
        if code >= 400 {
            return vec![(
                received + 5 * MS,
                stage("ResponseComplete", received + 5 * MS, code),
            )];
        }
        vec![
            (
                received + 50 * MS,
                stage("ResponseStarted", received + 50 * MS, 101),
            ),
            (end, stage("ResponseComplete", end, 101)),
        ]
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Collects a scenario's items.
struct Build {
    items: Vec<Item>,
    /// Per-item delivery jitter: agents batch, so a child may arrive before its parent.
    jitter: Rng,
    /// Agent delivery delay, ns.
    agent_delay: i64,
    /// Audit batch delay, ns.
    audit_delay: i64,
}

impl Build {
    fn new(agent_delay: i64, audit_delay: i64) -> Build {
        Build {
            items: Vec::new(),
            jitter: Rng::new(agent_delay as u64 ^ audit_delay as u64),
            agent_delay,
            audit_delay,
        }
    }
    fn agent(&mut self, ts: i64, input: Input, truth: &Truth) {
        let jitter = self.jitter.below(250) as i64 * MS;
        self.items.push(Item {
            arrival: ts + self.agent_delay + jitter,
            input,
            truth: truth.clone(),
            origin: false,
        });
    }
    fn origin_agent(&mut self, ts: i64, input: Input, truth: &Truth) {
        self.items.push(Item {
            arrival: ts + self.agent_delay,
            input,
            truth: truth.clone(),
            origin: true,
        });
    }
    fn audits(&mut self, events: Vec<(i64, Value)>, truth: &Truth) {
        for (at, v) in events {
            self.items.push(Item {
                arrival: at + self.audit_delay,
                input: Input::Audit(v),
                truth: truth.clone(),
                origin: true,
            });
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fmt {
    Falco,
    Tetragon,
}

impl Sim {
    fn exec_input(&self, fmt: Fmt, place: &Place, p: &P) -> Input {
        match fmt {
            Fmt::Falco => Input::Falco(self.falco_exec(place, p)),
            Fmt::Tetragon => Input::Tetragon(self.tetragon_exec(place, p)),
        }
    }
    fn connect_input(
        &self,
        fmt: Fmt,
        place: &Place,
        p: &P,
        ts: i64,
        dst: &str,
        port: i64,
    ) -> Input {
        match fmt {
            Fmt::Falco => Input::Falco(self.falco_connect(place, p, ts, dst, port)),
            Fmt::Tetragon => Input::Tetragon(self.tetragon_connect(place, p, ts, dst, port)),
        }
    }
    fn open_input(
        &self,
        fmt: Fmt,
        place: &Place,
        p: &P,
        ts: i64,
        path: &str,
        write: bool,
    ) -> Input {
        match fmt {
            Fmt::Falco => Input::Falco(self.falco_open(place, p, ts, path, write)),
            Fmt::Tetragon => Input::Tetragon(self.tetragon_open(place, p, ts, path, write)),
        }
    }
    fn accept_input(&self, fmt: Fmt, place: &Place, p: &P, ts: i64, client: &str) -> Input {
        match fmt {
            Fmt::Falco => Input::Falco(self.falco_accept(place, p, ts, client)),
            Fmt::Tetragon => Input::Tetragon(self.tetragon_accept(place, p, ts, client)),
        }
    }

    /// An interactive shell's typical work under `shell`: commands, a nested `sh -c`, a file
    /// read, a file write, an outbound connection.
    fn shell_work(
        &mut self,
        b: &mut Build,
        fmt: Fmt,
        place: &Place,
        shell: &P,
        t: i64,
        truth: &Truth,
    ) -> i64 {
        let user = shell.user.clone();
        let mut t = t;
        let ls = self.proc(
            place,
            Some(shell),
            "",
            t,
            "/bin/ls",
            "-la /var/run/secrets",
            shell.tty,
            &user,
        );
        b.agent(ls.start, self.exec_input(fmt, place, &ls), truth);
        t += 2 * S + self.rng.below(2000) as i64 * MS;
        let cat = self.proc(
            place,
            Some(shell),
            "",
            t,
            "/bin/cat",
            "/etc/passwd",
            shell.tty,
            &user,
        );
        b.agent(cat.start, self.exec_input(fmt, place, &cat), truth);
        b.agent(
            cat.start + MS,
            self.open_input(fmt, place, &cat, cat.start + MS, "/etc/passwd", false),
            truth,
        );
        t += 3 * S;
        let curl = self.proc(
            place,
            Some(shell),
            "",
            t,
            "/usr/bin/curl",
            "-s http://10.96.0.10:8080/metrics",
            shell.tty,
            &user,
        );
        b.agent(curl.start, self.exec_input(fmt, place, &curl), truth);
        b.agent(
            curl.start + 2 * MS,
            self.connect_input(fmt, place, &curl, curl.start + 2 * MS, "10.96.0.10", 8080),
            truth,
        );
        t += 4 * S;
        let sh = self.proc(
            place,
            Some(shell),
            "",
            t,
            "/bin/sh",
            "-c id; hostname",
            shell.tty,
            &user,
        );
        b.agent(sh.start, self.exec_input(fmt, place, &sh), truth);
        let id = self.proc(
            place,
            Some(&sh),
            "",
            t + 3 * MS,
            "/usr/bin/id",
            "",
            shell.tty,
            &user,
        );
        b.agent(id.start, self.exec_input(fmt, place, &id), truth);
        t += 5 * S;
        let vi = self.proc(
            place,
            Some(shell),
            "",
            t,
            "/usr/bin/vi",
            "/tmp/notes",
            shell.tty,
            &user,
        );
        b.agent(vi.start, self.exec_input(fmt, place, &vi), truth);
        b.agent(
            vi.start + 900 * MS,
            self.open_input(fmt, place, &vi, vi.start + 900 * MS, "/tmp/notes", true),
            truth,
        );
        t + 2 * S
    }

    /// `kubectl exec -it pod -- bash` with its shell's work.
    #[allow(clippy::too_many_arguments)]
    fn exec_shell(
        &mut self,
        name: &'static str,
        fmt: Fmt,
        verb: &str,
        place: &Place,
        user: &str,
        t0: i64,
        audit_delay: i64,
    ) -> Scenario {
        let truth = Truth::Session(format!("{name}/{}/{}", place.pod, t0));
        let mut b = Build::new(300 * MS + self.rng.below(700) as i64 * MS, audit_delay);
        let tty = if fmt == Fmt::Falco { 34816 } else { 0 };
        let start = t0 + 150 * MS + self.rng.below(300) as i64 * MS;
        let mut root = self.proc(
            place,
            None,
            "/usr/bin/runc",
            start,
            "/bin/bash",
            "",
            tty,
            "root",
        );
        root.in_init = Some(false);
        root.login_shell = root.pid;
        b.agent(root.start, self.exec_input(fmt, place, &root), &truth);
        let end = self.shell_work(&mut b, fmt, place, &root, root.start + 2 * S, &truth);
        let audits = self.audit("exec", verb, place, &["bash"], true, user, t0, end + S, 101);
        b.audits(audits, &truth);
        Scenario {
            name,
            items: b.items,
            ambiguous: false,
        }
    }

    /// `kubectl exec pod -- cmd…`: no tty, no shell, the exec root is the command itself
    /// (or `sh -c` running more).
    fn exec_command(
        &mut self,
        name: &'static str,
        fmt: Fmt,
        place: &Place,
        user: &str,
        t0: i64,
        wrapper: bool,
    ) -> Scenario {
        let truth = Truth::Session(format!("{name}/{}/{}", place.pod, t0));
        let mut b = Build::new(400 * MS, 3 * S + self.rng.below(5000) as i64 * MS);
        let start = t0 + 200 * MS + self.rng.below(200) as i64 * MS;
        let argv: Vec<&str> = if wrapper {
            vec![
                "sh",
                "-c",
                "cat /etc/hosts; curl -s http://payments.svc:8080/",
            ]
        } else {
            vec!["cat", "/etc/shadow"]
        };
        let end;
        if wrapper {
            let mut sh = self.proc(
                place,
                None,
                "/usr/bin/runc",
                start,
                "/bin/sh",
                "-c cat /etc/hosts; curl -s http://payments.svc:8080/",
                0,
                "root",
            );
            sh.in_init = Some(false);
            sh.login_shell = sh.pid;
            b.agent(sh.start, self.exec_input(fmt, place, &sh), &truth);
            let cat = self.proc(
                place,
                Some(&sh),
                "",
                start + 5 * MS,
                "/bin/cat",
                "/etc/hosts",
                0,
                "root",
            );
            b.agent(cat.start, self.exec_input(fmt, place, &cat), &truth);
            b.agent(
                cat.start + MS,
                self.open_input(fmt, place, &cat, cat.start + MS, "/etc/hosts", false),
                &truth,
            );
            let curl = self.proc(
                place,
                Some(&sh),
                "",
                start + 20 * MS,
                "/usr/bin/curl",
                "-s http://payments.svc:8080/",
                0,
                "root",
            );
            b.agent(curl.start, self.exec_input(fmt, place, &curl), &truth);
            b.agent(
                curl.start + 3 * MS,
                self.connect_input(fmt, place, &curl, curl.start + 3 * MS, "10.96.4.4", 8080),
                &truth,
            );
            end = start + 200 * MS;
        } else {
            let mut cat = self.proc(
                place,
                None,
                "/usr/bin/runc",
                start,
                "/bin/cat",
                "/etc/shadow",
                0,
                "root",
            );
            cat.in_init = Some(false);
            b.agent(cat.start, self.exec_input(fmt, place, &cat), &truth);
            b.agent(
                cat.start + MS,
                self.open_input(fmt, place, &cat, cat.start + MS, "/etc/shadow", false),
                &truth,
            );
            end = start + 50 * MS;
        }
        let audits = self.audit("exec", "create", place, &argv, false, user, t0, end, 101);
        b.audits(audits, &truth);
        Scenario {
            name,
            items: b.items,
            ambiguous: false,
        }
    }

    /// `kubectl attach -it`: commands typed into the container's pid 1 shell.
    fn attach(&mut self, place: &Place, user: &str, t0: i64) -> Scenario {
        let truth = Truth::Session(format!("attach/{}/{}", place.pod, t0));
        let mut b = Build::new(500 * MS, 4 * S);
        // pid 1 started an hour ago; agents never reported it.
        let mut init = self.proc(
            place,
            None,
            "/usr/bin/containerd-shim-runc-v2",
            t0 - 3600 * S,
            "/bin/sh",
            "",
            34817,
            "root",
        );
        init.vpid = 1;
        init.in_init = Some(true);
        init.login_shell = init.pid;
        let mut t = t0 + 3 * S;
        for (exe, args) in [
            ("/bin/ps", "aux"),
            ("/bin/cat", "/app/config.yaml"),
            ("/usr/bin/env", ""),
        ] {
            let p = self.proc(place, Some(&init), "", t, exe, args, 34817, "root");
            b.agent(p.start, Input::Falco(self.falco_exec(place, &p)), &truth);
            if exe == "/bin/cat" {
                b.agent(
                    p.start + MS,
                    Input::Falco(self.falco_open(
                        place,
                        &p,
                        p.start + MS,
                        "/app/config.yaml",
                        false,
                    )),
                    &truth,
                );
            }
            t += 4 * S;
        }
        let audits = self.audit(
            "attach",
            "create",
            place,
            &[],
            true,
            user,
            t0,
            t + 2 * S,
            101,
        );
        b.audits(audits, &truth);
        Scenario {
            name: "attach",
            items: b.items,
            ambiguous: false,
        }
    }

    /// `kubectl run -it debug --image=busybox -- sh`.
    fn run_it(&mut self, place: &Place, user: &str, t0: i64) -> Scenario {
        let truth = Truth::Session(format!("run/{}/{}", place.pod, t0));
        let mut b = Build::new(500 * MS, 2 * S);
        let mut init = self.proc(
            place,
            None,
            "/usr/bin/containerd-shim-runc-v2",
            t0 + 2500 * MS,
            "/bin/sh",
            "",
            34816,
            "root",
        );
        init.vpid = 1;
        init.in_init = Some(true);
        init.login_shell = init.pid;
        b.agent(
            init.start,
            Input::Falco(self.falco_exec(place, &init)),
            &truth,
        );
        let mut t = init.start + 2 * S;
        for (exe, args, dst) in [
            ("/bin/nslookup", "payments.svc", Some("10.96.0.10")),
            (
                "/bin/wget",
                "-qO- http://payments.svc:8080/",
                Some("10.96.4.4"),
            ),
            ("/bin/ls", "/", None),
        ] {
            let p = self.proc(place, Some(&init), "", t, exe, args, 34816, "root");
            b.agent(p.start, Input::Falco(self.falco_exec(place, &p)), &truth);
            if let Some(d) = dst {
                b.agent(
                    p.start + 2 * MS,
                    Input::Falco(self.falco_connect(place, &p, p.start + 2 * MS, d, 53)),
                    &truth,
                );
            }
            t += 3 * S;
        }
        let audits = self.audit("run", "create", place, &["sh"], true, user, t0, t, 201);
        b.audits(audits, &truth);
        Scenario {
            name: "run -it",
            items: b.items,
            ambiguous: false,
        }
    }

    /// An ssh (Falco) or dropbear (Tetragon) login on a host: the accept, the login shell,
    /// sudo into a root shell, a nested shell.
    fn login(&mut self, fmt: Fmt, place: &Place, user: &str, t0: i64) -> Scenario {
        let (name, daemon) = match fmt {
            Fmt::Falco => ("ssh login", "/usr/sbin/sshd"),
            Fmt::Tetragon => ("dropbear login", "/usr/sbin/dropbear"),
        };
        let truth = Truth::Session(format!("{name}/{}/{}", place.node, t0));
        let mut b = Build::new(300 * MS, 0);
        // The listening daemon accepts; a forked child spawns the login shell.
        let listener = self.proc(
            place,
            None,
            "/sbin/init",
            t0 - 86_400 * S,
            daemon,
            "-D",
            0,
            "root",
        );
        b.agent(
            t0,
            self.accept_input(fmt, place, &listener, t0, "198.51.100.77"),
            &truth,
        );
        let child = self.proc(
            place,
            Some(&listener),
            "",
            t0 + 20 * MS,
            daemon,
            "-D -R",
            0,
            "root",
        );
        let tty = if fmt == Fmt::Falco { 34817 } else { 0 };
        let shell_exe = if fmt == Fmt::Falco {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        let mut shell = self.proc(
            place,
            Some(&child),
            "",
            t0 + 400 * MS,
            shell_exe,
            "-l",
            tty,
            user,
        );
        shell.login_name = user.into();
        shell.login_shell = shell.pid;
        b.origin_agent(shell.start, self.exec_input(fmt, place, &shell), &truth);
        let t = self.shell_work(&mut b, fmt, place, &shell, shell.start + 2 * S, &truth);
        let sudo = self.proc(
            place,
            Some(&shell),
            "",
            t,
            "/usr/bin/sudo",
            "-i",
            tty,
            "root",
        );
        b.agent(sudo.start, self.exec_input(fmt, place, &sudo), &truth);
        let root = self.proc(
            place,
            Some(&sudo),
            "",
            t + 800 * MS,
            "/bin/bash",
            "",
            tty,
            "root",
        );
        b.agent(root.start, self.exec_input(fmt, place, &root), &truth);
        let shadow = self.proc(
            place,
            Some(&root),
            "",
            t + 3 * S,
            "/bin/cat",
            "/etc/shadow",
            tty,
            "root",
        );
        b.agent(shadow.start, self.exec_input(fmt, place, &shadow), &truth);
        b.agent(
            shadow.start + MS,
            self.open_input(fmt, place, &shadow, shadow.start + MS, "/etc/shadow", false),
            &truth,
        );
        let nested = self.proc(
            place,
            Some(&root),
            "",
            t + 5 * S,
            "/bin/bash",
            "",
            tty,
            "root",
        );
        b.agent(nested.start, self.exec_input(fmt, place, &nested), &truth);
        let ls = self.proc(
            place,
            Some(&nested),
            "",
            t + 6 * S,
            "/bin/ls",
            "/root",
            tty,
            "root",
        );
        b.agent(ls.start, self.exec_input(fmt, place, &ls), &truth);
        Scenario {
            name,
            items: b.items,
            ambiguous: false,
        }
    }

    /// An app whose entrypoint is a shell script: shell descendants, no tty, never a session.
    fn entrypoint_app(&mut self, place: &Place, t0: i64) -> Scenario {
        let mut b = Build::new(400 * MS, 0);
        let mut init = self.proc(
            place,
            None,
            "/usr/bin/containerd-shim-runc-v2",
            t0,
            "/bin/sh",
            "/docker-entrypoint.sh",
            0,
            "root",
        );
        init.vpid = 1;
        init.in_init = Some(true);
        init.login_shell = init.pid;
        b.agent(
            init.start,
            Input::Falco(self.falco_exec(place, &init)),
            &Truth::None,
        );
        let app = self.proc(
            place,
            Some(&init),
            "",
            t0 + S,
            "/usr/bin/python3",
            "/app/server.py",
            0,
            "app",
        );
        b.agent(
            app.start,
            Input::Falco(self.falco_exec(place, &app)),
            &Truth::None,
        );
        for k in 0..4 {
            let t = t0 + (10 + 15 * k) * S;
            let probe = self.proc(
                place,
                Some(&init),
                "",
                t,
                "/usr/bin/curl",
                "-fs http://127.0.0.1:8080/healthz",
                0,
                "app",
            );
            b.agent(
                probe.start,
                Input::Falco(self.falco_exec(place, &probe)),
                &Truth::None,
            );
            b.agent(
                probe.start + MS,
                Input::Falco(self.falco_connect(
                    place,
                    &probe,
                    probe.start + MS,
                    "127.0.0.1",
                    8080,
                )),
                &Truth::None,
            );
        }
        Scenario {
            name: "entrypoint script app",
            items: b.items,
            ambiguous: false,
        }
    }

    /// Alice and Bob exec a shell into the same pod half a second apart.
    fn concurrent(&mut self, place: &Place, t0: i64) -> Scenario {
        let mut items = Vec::new();
        for (i, user) in ["alice", "bob"].into_iter().enumerate() {
            let t = t0 + i as i64 * 600 * MS;
            let truth = Truth::Session(format!("concurrent/{}/{user}/{t0}", place.pod));
            let mut b = Build::new(400 * MS, 5 * S);
            let mut root = self.proc(
                place,
                None,
                "/usr/bin/runc",
                t + 150 * MS,
                "/bin/bash",
                "",
                34816 + i as i64,
                "root",
            );
            root.in_init = Some(false);
            root.login_shell = root.pid;
            b.agent(
                root.start,
                Input::Falco(self.falco_exec(place, &root)),
                &truth,
            );
            let end = self.shell_work(&mut b, Fmt::Falco, place, &root, root.start + 2 * S, &truth);
            let audits = self.audit(
                "exec",
                "create",
                place,
                &["bash"],
                true,
                user,
                t,
                end + S,
                101,
            );
            b.audits(audits, &truth);
            items.extend(b.items);
        }
        Scenario {
            name: "concurrent execs in one pod",
            items,
            ambiguous: true,
        }
    }

    /// A login session on a host ends; later a cron job's shell gets the same pid.
    fn pid_reuse(&mut self, place: &Place, t0: i64) -> Scenario {
        let mut s = self.login(Fmt::Falco, place, "carol", t0);
        let shell_pid = s
            .items
            .iter()
            .find(|i| i.origin)
            .and_then(|i| {
                i.input
                    .value()
                    .pointer("/output_fields/proc.pid")
                    .and_then(Value::as_i64)
            })
            .expect("login shell");
        let mut b = Build::new(300 * MS, 0);
        let t = t0 + 120 * S;
        let cron = self.proc(
            place,
            None,
            "/usr/sbin/cron",
            t - S,
            "/usr/sbin/cron",
            "-f",
            0,
            "root",
        );
        let mut sh = self.proc(
            place,
            Some(&cron),
            "",
            t,
            "/bin/sh",
            "-c /usr/local/bin/backup.sh",
            0,
            "root",
        );
        sh.pid = shell_pid; // reused
        sh.login_shell = shell_pid;
        b.agent(
            sh.start,
            Input::Falco(self.falco_exec(place, &sh)),
            &Truth::None,
        );
        let tar = self.proc(
            place,
            Some(&sh),
            "",
            t + 50 * MS,
            "/bin/tar",
            "czf /backup/etc.tgz /etc",
            0,
            "root",
        );
        b.agent(
            tar.start,
            Input::Falco(self.falco_exec(place, &tar)),
            &Truth::None,
        );
        b.agent(
            tar.start + MS,
            Input::Falco(self.falco_open(place, &tar, tar.start + MS, "/etc/shadow", false)),
            &Truth::None,
        );
        s.items.extend(b.items);
        s.name = "pid reuse";
        s
    }

    /// An exec the API server refused (403): no session, and the pod's app is no session.
    fn forbidden(&mut self, place: &Place, t0: i64) -> Scenario {
        let mut s = self.entrypoint_app(place, t0 - 5 * S);
        let audits = self.audit(
            "exec",
            "create",
            place,
            &["sh"],
            true,
            "mallory",
            t0,
            t0,
            403,
        );
        for (at, v) in audits {
            s.items.push(Item {
                arrival: at + 2 * S,
                input: Input::Audit(v),
                truth: Truth::None,
                origin: true,
            });
        }
        s.name = "refused exec";
        s
    }
}

/// The whole suite, `reps` times over with different pods, hosts, pids and timing.
pub fn suite(seed: u64, reps: usize, base: i64) -> Vec<Scenario> {
    let mut sim = Sim::new(seed);
    let mut out = Vec::new();
    for r in 0..reps {
        let t = base + r as i64 * 600 * S;
        let node = format!("node-{}", r % 3);
        let rng = &mut sim.rng;
        let web = Place::pod(
            &node,
            "shop",
            &format!("web-{r}-7d9f8"),
            "app",
            "nginx:1.25",
            rng,
        );
        let api = Place::pod(
            &node,
            "shop",
            &format!("api-{r}-5c4b2"),
            "api",
            "shop/api:2.3",
            rng,
        );
        let pay = Place::pod(
            &node,
            "payments",
            &format!("pay-{r}-9x2kq"),
            "pay",
            "pay:1.0",
            rng,
        );
        let db = Place::pod(
            &node,
            "payments",
            &format!("db-{r}-0"),
            "postgres",
            "postgres:16",
            rng,
        );
        let shared = Place::pod(
            &node,
            "shop",
            &format!("cart-{r}-6h2jd"),
            "cart",
            "cart:3.1",
            rng,
        );
        let app = Place::pod(
            &node,
            "shop",
            &format!("worker-{r}-1a2b3"),
            "worker",
            "worker:1.0",
            rng,
        );
        let app2 = Place::pod(
            &node,
            "ops",
            &format!("batch-{r}-4f5g6"),
            "batch",
            "batch:1.0",
            rng,
        );
        let late = Place::pod(
            &node,
            "shop",
            &format!("search-{r}-8k1m2"),
            "search",
            "search:5",
            rng,
        );
        let debug = Place::pod(
            &node,
            "default",
            &format!("debug-{r}"),
            &format!("debug-{r}"),
            "busybox:1.36",
            rng,
        );
        let attach = Place::pod(
            &node,
            "ops",
            &format!("toolbox-{r}-2n4p6"),
            "toolbox",
            "alpine:3.20",
            rng,
        );
        let host = Place::host(&format!("bastion-{}", r % 2));
        let host2 = Place::host(&format!("edge-{}", r % 2));
        let host3 = Place::host(&format!("db-host-{r}"));
        out.push(sim.exec_shell(
            "exec shell (create)",
            Fmt::Falco,
            "create",
            &web,
            "alice",
            t + 10 * S,
            2 * S + (r as i64 % 8) * S,
        ));
        out.push(sim.exec_shell(
            "exec shell (get)",
            Fmt::Tetragon,
            "get",
            &api,
            "bob",
            t + 30 * S,
            3 * S,
        ));
        out.push(sim.exec_command(
            "exec single command",
            Fmt::Falco,
            &pay,
            "ci-bot",
            t + 50 * S,
            false,
        ));
        out.push(sim.exec_command(
            "exec sh -c wrapper",
            Fmt::Tetragon,
            &db,
            "dave",
            t + 70 * S,
            true,
        ));
        out.push(sim.attach(&attach, "erin", t + 90 * S));
        out.push(sim.run_it(&debug, "frank", t + 110 * S));
        out.push(sim.login(Fmt::Falco, &host, "grace", t + 130 * S));
        out.push(sim.login(Fmt::Tetragon, &host2, "heidi", t + 150 * S));
        out.push(sim.entrypoint_app(&app, t + 5 * S));
        out.push(sim.concurrent(&shared, t + 170 * S));
        out.push(sim.exec_shell(
            "audit 45 s late",
            Fmt::Falco,
            "get",
            &late,
            "ivan",
            t + 200 * S,
            45 * S,
        ));
        out.push(sim.exec_shell(
            "agent events before origin",
            Fmt::Tetragon,
            "create",
            &web,
            "judy",
            t + 260 * S,
            12 * S,
        ));
        out.push(sim.pid_reuse(&host3, t + 300 * S));
        out.push(sim.forbidden(&app2, t + 320 * S));
    }
    out
}

/// One `kubectl exec -it … -- bash` session by `user` (Falco agent events and the audit
/// events), starting at `base`.
pub fn exec_session(seed: u64, base: i64, user: &str) -> Scenario {
    let mut sim = Sim::new(seed);
    let place = Place::pod(
        "node-1",
        "shop",
        "web-7d9f8-x2x4q",
        "app",
        "nginx:1.25",
        &mut sim.rng,
    );
    sim.exec_shell(
        "exec shell (create)",
        Fmt::Falco,
        "create",
        &place,
        user,
        base,
        3 * S,
    )
}

/// All items of `scenarios` in arrival order (stable for equal times).
pub fn arrival_order(scenarios: &[Scenario]) -> Vec<&Item> {
    let mut items: Vec<&Item> = scenarios.iter().flat_map(|s| s.items.iter()).collect();
    items.sort_by_key(|i| i.arrival);
    items
}

/// An item parsed by ingest's own parsers and stamped as ingest stamps it.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub event: schemas::ActivityEvent,
    pub truth: Truth,
    pub origin: bool,
    pub scenario: &'static str,
}

/// Parses every item (in arrival order) into its event, exactly as the ingest service does.
/// Panics if an item is not activity: the generator and the parsers must agree.
pub fn parse(scenarios: &[Scenario], tenant: &str, cluster: &str) -> Vec<Labelled> {
    use ingest::sources::{Outcome, falco, k8s_audit, tetragon};
    use schemas::Source;
    let who = ingest::auth::Identity {
        tenant: tenant.into(),
        cluster: cluster.into(),
    };
    let mut items: Vec<(&Item, &'static str)> = scenarios
        .iter()
        .flat_map(|s| s.items.iter().map(move |i| (i, s.name)))
        .collect();
    items.sort_by_key(|(i, _)| i.arrival);
    let mut out = Vec::new();
    for (item, scenario) in items {
        let body = serde_json::to_vec(item.input.value()).expect("json");
        let (outcomes, source) = match &item.input {
            Input::Falco(_) => (falco::parse(&body, true), Source::Falco),
            Input::Tetragon(_) => (tetragon::parse(&body, true), Source::Tetragon),
            Input::Audit(v) => {
                let list = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [v]});
                (
                    k8s_audit::parse(&serde_json::to_vec(&list).expect("json")),
                    Source::K8sAudit,
                )
            }
        };
        for o in outcomes.expect("parsable body") {
            match o {
                Outcome::Activity(mut e, key) => {
                    ingest::publish::stamp(&mut e, &who, source, item.arrival, &key);
                    e.validate().expect("valid event");
                    out.push(Labelled {
                        event: *e,
                        truth: item.truth.clone(),
                        origin: item.origin,
                        scenario,
                    });
                }
                other => panic!(
                    "{scenario}: item is not activity ({other:?}): {}",
                    item.input.value()
                ),
            }
        }
    }
    out
}

/// Precision and recall of trace assignment against the ground truth.
#[derive(Debug, Default, Clone)]
pub struct Score {
    pub correct: u64,
    /// Linked to the wrong session (or a session where there is none).
    pub wrong: u64,
    /// Belongs to a session, linked to none.
    pub missed: u64,
    /// Marked ambiguous (counted as neither right nor wrong).
    pub ambiguous: u64,
    pub true_negative: u64,
    pub per_scenario: std::collections::BTreeMap<&'static str, [u64; 5]>,
}

impl Score {
    pub fn precision(&self) -> f64 {
        let d = self.correct + self.wrong;
        if d == 0 {
            1.0
        } else {
            self.correct as f64 / d as f64
        }
    }
    pub fn recall(&self) -> f64 {
        let d = self.correct + self.wrong + self.missed;
        if d == 0 {
            1.0
        } else {
            self.correct as f64 / d as f64
        }
    }
    pub fn report(&self) -> String {
        let mut s = format!(
            "precision {:.2}% recall {:.2}% (correct {}, wrong {}, missed {}, ambiguous {}, true negatives {})\n",
            100.0 * self.precision(),
            100.0 * self.recall(),
            self.correct,
            self.wrong,
            self.missed,
            self.ambiguous,
            self.true_negative
        );
        s.push_str("  scenario                       correct wrong missed ambiguous none\n");
        for (name, c) in &self.per_scenario {
            s.push_str(&format!(
                "  {name:<30} {:>7} {:>5} {:>6} {:>9} {:>4}\n",
                c[0], c[1], c[2], c[3], c[4]
            ));
        }
        s
    }
}

/// Scores the final version of each event (`finals`: id -> event with its last revision).
pub fn score(
    labelled: &[Labelled],
    finals: &std::collections::HashMap<String, schemas::ActivityEvent>,
) -> Score {
    use std::collections::HashMap;
    let mut session_trace: HashMap<&str, &str> = HashMap::new();
    for l in labelled.iter().filter(|l| l.origin) {
        if let (Truth::Session(label), Some(f)) = (&l.truth, finals.get(&l.event.id))
            && !f.trace_id.is_empty()
        {
            session_trace.insert(label, &f.trace_id);
        }
    }
    let mut s = Score::default();
    let mut seen = std::collections::HashSet::new();
    for l in labelled {
        if l.origin || !seen.insert(&l.event.id) {
            continue;
        }
        let f = finals
            .get(&l.event.id)
            .unwrap_or_else(|| panic!("event {} never came out", l.event.id));
        let slot = match &l.truth {
            Truth::Session(label) => {
                let want = session_trace.get(label.as_str()).copied();
                if !f.trace_candidates.is_empty() {
                    if want.is_some_and(|w| f.trace_candidates.iter().any(|c| c == w)) {
                        s.ambiguous += 1;
                        3
                    } else {
                        s.wrong += 1;
                        1
                    }
                } else if f.trace_id.is_empty() {
                    s.missed += 1;
                    2
                } else if Some(f.trace_id.as_str()) == want {
                    s.correct += 1;
                    0
                } else {
                    s.wrong += 1;
                    1
                }
            }
            Truth::None => {
                if f.trace_id.is_empty() && f.trace_candidates.is_empty() {
                    s.true_negative += 1;
                    4
                } else {
                    s.wrong += 1;
                    1
                }
            }
        };
        s.per_scenario.entry(l.scenario).or_default()[slot] += 1;
    }
    s
}

/// What a correlator run produced: the last revision of every event and of every trace record.
#[derive(Debug, Default)]
pub struct Correlated {
    pub events: std::collections::HashMap<String, schemas::ActivityEvent>,
    pub traces: std::collections::HashMap<String, schemas::TraceRecord>,
    /// Input messages replayed after a simulated crash.
    pub replayed: usize,
}

impl Correlated {
    fn keep(&mut self, out: correlator::engine::Output) {
        self.keep_traces(out.traces);
        for e in out.events {
            match self.events.get(&e.id) {
                Some(old) if old.revision >= e.revision => {}
                _ => {
                    self.events.insert(e.id.clone(), e);
                }
            }
        }
    }

    fn keep_traces(&mut self, traces: Vec<schemas::TraceRecord>) {
        for t in traces {
            match self.traces.get(&t.trace_id) {
                Some(old) if old.revision >= t.revision => {}
                _ => {
                    self.traces.insert(t.trace_id.clone(), t);
                }
            }
        }
    }
}

/// Runs the correlation engine over `events` (arrival order) as the service does: events
/// routed to `partitions` partitions by their partition key, messages of up to `batch`
/// events, one engine per partition. With `crash_at` (a fraction of each partition's
/// messages), each engine is snapshotted a third of the way before that point, then
/// "crashes" at it: a new engine is restored from the snapshot (through the snapshot codec)
/// and the input is replayed from the snapshot's offset, re-emitting what was already emitted.
pub fn correlate(
    events: &[schemas::ActivityEvent],
    partitions: i32,
    batch: usize,
    crash_at: Option<f64>,
) -> Correlated {
    use correlator::engine::{Engine, EngineConfig};
    let mut per: Vec<Vec<schemas::ActivityEvent>> = vec![Vec::new(); partitions as usize];
    for e in events {
        let p = schemas::topics::partition_for(&schemas::topics::partition_key(e), partitions);
        per[p as usize].push(e.clone());
    }
    let mut result = Correlated::default();
    for input in per {
        let messages: Vec<Vec<schemas::ActivityEvent>> =
            input.chunks(batch.max(1)).map(|c| c.to_vec()).collect();
        let cfg = EngineConfig::default();
        let mut engine = Engine::new(cfg.clone());
        let crash = crash_at.map(|f| ((messages.len() as f64) * f) as usize);
        let snap_at = crash.map(|c| c * 2 / 3);
        let mut snapshot: Option<(Vec<Vec<u8>>, usize)> = None;
        let mut crashed = false;
        let mut offset = 0;
        while offset < messages.len() {
            if Some(offset) == snap_at && !crashed && snapshot.is_none() {
                let recs = correlator::snapshot::encode(&engine, offset as i64, "state", 0)
                    .expect("snapshot");
                snapshot = Some((recs.into_iter().map(|r| r.payload).collect(), offset));
            }
            if Some(offset) == crash
                && !crashed
                && let Some((chunks, from)) = snapshot.take()
            {
                crashed = true;
                engine = correlator::snapshot::decode(&chunks, &cfg).expect("restore");
                result.replayed += offset - from;
                offset = from;
                continue;
            }
            let out = engine.process(offset as u64, messages[offset].clone());
            result.keep(out);
            offset += 1;
        }
        // The partition goes idle: the service then emits the trace records held back.
        result.keep_traces(engine.take_traces(true));
    }
    result
}

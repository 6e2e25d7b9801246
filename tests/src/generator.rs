//! A deterministic generator of realistic activity: interactive commands, their connections
//! and file accesses, and kube exec/attach requests, across clusters, namespaces and pods,
//! with every attribute of their data source set.

use schemas::{ActivityEvent, ActivityType, Source};

/// SplitMix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const NAMESPACES: &[&str] = &["shop", "payments", "kube-system", "monitoring", "default"];
const WORKLOADS: &[(&str, &str)] = &[
    ("Deployment", "frontend"),
    ("Deployment", "checkout"),
    ("StatefulSet", "postgres"),
    ("DaemonSet", "node-exporter"),
    ("Job", "migrate-db"),
];
const COMMANDS: &[(&str, &str, &str)] = &[
    ("bash", "bash", "/bin/bash"),
    ("ps", "ps aux", "/bin/ps"),
    (
        "curl",
        "curl -s http://checkout.shop.svc:8080/healthz",
        "/usr/bin/curl",
    ),
    ("cat", "cat /etc/passwd", "/bin/cat"),
    ("psql", "psql -U admin -h postgres orders", "/usr/bin/psql"),
    (
        "ls",
        "ls -la /var/run/secrets/kubernetes.io/serviceaccount",
        "/bin/ls",
    ),
    (
        "apt-get",
        "apt-get install -y apache2-utils",
        "/usr/bin/apt-get",
    ),
    (
        "ab",
        "ab -n 100000 -c 50 http://frontend.shop.svc/",
        "/usr/bin/ab",
    ),
];
const FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/root/.bash_history",
    "/tmp/payload.sh",
];
const USERS: &[(&str, &[&str])] = &[
    ("johndoe@example.com", &["devs", "system:authenticated"]),
    ("alice", &["system:masters", "system:authenticated"]),
    (
        "system:serviceaccount:ci:deployer",
        &["system:serviceaccounts"],
    ),
];

/// Generates `n` events starting at `start_ns`, spaced about 1 ms apart. With `with_ids`
/// each event carries a client id (`gen-<seed>-<i>`), otherwise ingest derives one.
pub fn events(seed: u64, n: usize, start_ns: i64, with_ids: bool) -> Vec<ActivityEvent> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|i| {
            let jitter = r.below(1_000_000) as i64;
            let mut e = event(&mut r, start_ns + i as i64 * 1_000_000 + jitter);
            if with_ids {
                e.id = format!("gen-{seed}-{i}");
            }
            e
        })
        .collect()
}

/// One realistic event.
pub fn event(r: &mut Rng, ts: i64) -> ActivityEvent {
    let ns = *r.pick(NAMESPACES);
    let (wk, wn) = *r.pick(WORKLOADS);
    let pod_n = r.below(4);
    let node_n = r.below(8);
    let pid = 1000 + r.below(60_000) as i64;
    let (comm, cmdline, exe) = *r.pick(COMMANDS);
    let mut e = ActivityEvent {
        timestamp: ts,
        source: Source::Native,
        hostname: format!("ip-10-0-{node_n}-17"),
        host_mac: format!("02:42:ac:11:00:{node_n:02x}"),
        container_id: format!("{:012x}", r.next_u64() & 0xffff_ffff_ffff),
        container_name: wn.to_string(),
        container_image: format!("registry.example.com/{ns}/{wn}:1.{}", pod_n),
        namespace: ns.to_string(),
        workload_kind: wk.to_string(),
        workload_name: wn.to_string(),
        pod: format!("{wn}-7998647bdf-{pod_n}x{node_n}q"),
        node: format!("ip-10-0-{node_n}-17.eu-west-1.compute.internal"),
        ..Default::default()
    };
    let kind = match r.below(100) {
        0..=54 => ActivityType::Command,
        55..=79 => ActivityType::Connection,
        80..=94 => ActivityType::Fileaccess,
        _ => ActivityType::Kubernetes,
    };
    e.kind = kind;
    match kind {
        ActivityType::Kubernetes => {
            let (user, groups) = *r.pick(USERS);
            let attach = r.below(5) == 0;
            e.verb = if r.below(2) == 0 { "create" } else { "get" }.into();
            e.resource = "pods".into();
            e.sub_resource = if attach { "attach" } else { "exec" }.into();
            e.command = if attach { String::new() } else { "bash".into() };
            e.container = wn.to_string();
            e.tty = Some(1);
            e.stdin = true;
            e.user_name = user.to_string();
            e.user_groups = groups.iter().map(|g| g.to_string()).collect();
            e.user_agent = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46".into();
            e.source_addresses = vec![format!("203.0.113.{}", r.below(250))];
            e.audit_id = format!(
                "{:08x}-9f1c-4c1a-8d1e-{:012x}",
                r.next_u64() as u32,
                r.next_u64() & 0xffff_ffff_ffff
            );
            e.response_code = 101;
            e.stages_started = ts;
            e.stages_completed = ts + 30_000_000_000 + r.below(1_000_000_000) as i64;
        }
        _ => {
            e.comm = comm.to_string();
            e.cmdline = cmdline.to_string();
            e.pid = pid;
            e.tty = Some(34816);
            if kind == ActivityType::Command {
                e.exe = exe.to_string();
                e.cwd = "/root".into();
                e.ppid = pid - 1 - r.below(5) as i64;
                e.pcomm = "bash".into();
                e.uid = Some(0);
                e.username = "root".into();
                e.user_login_uid = Some(-1);
                e.user_login_name = "<NA>".into();
                e.login_shell_id = Some(pid - 3);
                e.login_shell_distance = Some(r.below(3) as i64 + 1);
                e.process_start_time = ts - 1_000;
                e.exec_id = format!("node-{node_n}:{}:{pid}", ts - 1_000);
                e.parent_exec_id = format!("node-{node_n}:{}:{}", ts - 5_000_000, pid - 1);
                e.in_init_tree = Some(false);
            }
            if kind == ActivityType::Connection {
                e.direction = if r.below(4) == 0 { "in" } else { "out" }.into();
                e.l4protocol = if r.below(10) == 0 { "udp" } else { "tcp" }.into();
                e.client_ip = format!("10.1.{}.{}", r.below(255), r.below(255));
                e.client_port = 32768 + r.below(28000) as i64;
                e.server_ip = format!("10.2.{}.{}", r.below(255), r.below(255));
                e.server_port = *r.pick(&[80i64, 443, 5432, 8080, 53]);
            }
            if kind == ActivityType::Fileaccess {
                e.filename = r.pick(FILES).to_string();
                e.permissions = r.pick(&["r", "w", "rw"]).to_string();
                e.normalize();
            }
        }
    }
    e
}

/// Encodes events as JSON lines.
pub fn ndjson(events: &[ActivityEvent]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(events.len() * 700);
    for e in events {
        schemas::batch::push(&mut buf, e);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_are_valid_and_varied() {
        let evs = events(7, 2000, 1_700_000_000_000_000_000, true);
        for e in &evs {
            e.validate().unwrap();
        }
        for t in ActivityType::ALL {
            assert!(evs.iter().any(|e| e.kind == t), "no {t}");
        }
        assert_eq!(evs, events(7, 2000, 1_700_000_000_000_000_000, true));
    }
}

//! The correlation engine: a pure, deterministic state machine over one input partition.
//!
//! It sees every event of the partition in order and emits each one (at once, never held back)
//! with its trace link: `traceId`, a confidence and the reason, or the candidate traces when it
//! cannot tell sessions apart. When a later event changes what an earlier one belongs to (an
//! audit event 45 s late, a parent seen after its child), the earlier event is emitted again
//! with a higher `revision`; the store keeps the highest. The engine's output depends only on
//! its input sequence (time is the events' own, never the wall clock), so a replay after a
//! restart produces the same ids, traces and revisions.
//!
//! What it keeps (all bounded, all serializable for snapshots):
//! - processes, keyed by Tetragon `exec_id` or (host, pid, start time), with their parent and
//!   what anchors a session on them (an exec root, a login shell);
//! - per pod: the kube exec/attach/run origins and the exec roots still inside the hold window,
//!   and the resulting root -> origin links;
//! - per pod or host: events whose link may still change (emitted, kept for re-emission until
//!   the hold window passes);
//! - per trace: the trace record (origin, start/end, counts, confidence).

use rustc_hash::FxHashMap;
use schemas::event::is_shell;
use schemas::id::Gather;
use schemas::trace::kind;
use schemas::{ActivityEvent, ActivityType, TraceRecord};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasher;

const MS: i64 = 1_000_000;

/// Tuning of the engine (`[engine]` in the correlator's config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How long unmatched origins, exec roots and re-linkable events are held, ms. Audit
    /// batches arrive up to 30 s late, plus clock skew: at least 60 s.
    pub hold_ms: i64,
    /// How much earlier than its audit event an exec'd process may appear to start (clock
    /// skew between API server and node), ms.
    pub skew_ms: i64,
    /// How much later than its audit event an exec'd process may start, ms.
    pub exec_latency_ms: i64,
    /// Shells and session anchors (which may start more commands) and traces with no activity
    /// for this long are forgotten, ms.
    pub idle_ms: i64,
    /// Other processes (agents do not report exits) are forgotten after this long without
    /// activity of their own or of a descendant, ms.
    pub leaf_idle_ms: i64,
    /// How long before a login shell an sshd/dropbear accept may be, to name its client, ms.
    pub login_accept_ms: i64,
    /// A session's trace record is re-emitted at most this often (event time) while its
    /// counts and end grow, ms; a new session, a merged origin or an idle partition emit at
    /// once.
    pub trace_update_ms: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            hold_ms: 90_000,
            skew_ms: 2_000,
            exec_latency_ms: 5_000,
            idle_ms: 6 * 3600 * 1000,
            leaf_idle_ms: 2 * 60 * 1000,
            login_accept_ms: 10_000,
            trace_update_ms: 30_000,
        }
    }
}

impl EngineConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.hold_ms < 60_000 {
            anyhow::bail!(
                "engine.hold_ms must be at least 60000 (audit events are up to 30 s late, plus skew)"
            );
        }
        if self.skew_ms < 0 || self.exec_latency_ms <= 0 || self.login_accept_ms < 0 {
            anyhow::bail!("engine.skew_ms, exec_latency_ms and login_accept_ms must be positive");
        }
        if self.idle_ms < self.hold_ms || self.leaf_idle_ms < self.hold_ms {
            anyhow::bail!("engine.idle_ms and leaf_idle_ms must be at least hold_ms");
        }
        Ok(())
    }
}

/// What an event belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Link {
    /// Outside any session.
    #[default]
    None,
    Trace {
        id: String,
        confidence: f32,
        reason: String,
    },
    /// One of several sessions that cannot be told apart: never a guess.
    Ambiguous {
        candidates: Vec<String>,
        reason: String,
    },
}

impl Link {
    fn trace(id: &str, confidence: f32, reason: &str) -> Link {
        Link::Trace {
            id: id.to_string(),
            confidence,
            reason: reason.to_string(),
        }
    }

    /// Writes the link into the event's trace fields.
    pub fn apply(&self, e: &mut ActivityEvent) {
        match self {
            // Outside any session we know of: what the producer sent (a native client may
            // correlate on its own) stays.
            Link::None => {}
            Link::Trace {
                id,
                confidence,
                reason,
            } => {
                e.trace_id.clone_from(id);
                e.trace_confidence = *confidence;
                e.trace_link.clone_from(reason);
                e.trace_candidates.clear();
            }
            Link::Ambiguous { candidates, reason } => {
                e.trace_id.clear();
                e.trace_confidence = 1.0 / candidates.len().max(1) as f32;
                e.trace_link.clone_from(reason);
                e.trace_candidates.clone_from(candidates);
            }
        }
    }
}

/// 64-bit key of length-prefixed parts.
fn key(parts: &[&[u8]]) -> u64 {
    schemas::id::parts(parts).xxh3_64()
}

/// Deterministic trace id: the same origin always names the same trace.
pub fn trace_id(tenant: &str, cluster: &str, origin_kind: &str, origin: &str) -> String {
    schemas::id::hash_id(&[
        b"trace",
        tenant.as_bytes(),
        cluster.as_bytes(),
        origin_kind.as_bytes(),
        origin.as_bytes(),
    ])
}

const LOGIN_PARENTS: &[&str] = &["sshd", "dropbear", "login", "telnetd"];

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Linux truncates `comm` to 15 bytes; compare names the way the kernel stores them.
fn same_program(comm: &str, argv0: &str) -> bool {
    let a = basename(argv0);
    let trunc = |s: &str| s.get(..15).unwrap_or(s).to_string();
    !a.is_empty() && trunc(comm) == trunc(a)
}

/// What a process anchors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Anchor {
    None,
    /// Exec'd into a container from outside its init tree, parent not (yet) known: its link
    /// comes from the pod's root -> origin matching.
    ExecRoot,
    /// Starts a session of its own (ssh/dropbear/console login shell).
    Session(String),
    /// The link of an exec root or unanchored top, final once the hold window passed.
    Frozen(Link),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Proc {
    /// Made from a connection/file event before the process's exec event was seen.
    stub: bool,
    /// Parent process key when known.
    parent: Option<u64>,
    /// Parent key from the agent's parent exec id (waiting for the parent to show up).
    parent_ref: Option<u64>,
    ppid: i64,
    host: u64,
    pod: u64,
    pid: i64,
    start: i64,
    comm: String,
    container: String,
    tty: Option<i64>,
    in_init: Option<bool>,
    login_shell: Option<i64>,
    anchor: Anchor,
    first_seen: i64,
    last_seen: i64,
}

/// A kube exec/attach/run request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Origin {
    trace: String,
    kind: String,
    ts: i64,
    /// `stages.completed` when known.
    end: i64,
    argv0: String,
    tty: bool,
    container: String,
    /// The merged audit event (both stages), re-emitted when a stage arrives.
    event: ActivityEvent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Root {
    proc: u64,
    start: i64,
    comm: String,
    tty: Option<i64>,
    container: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pod {
    origins: Vec<Origin>,
    roots: Vec<Root>,
    /// Link of every root in `roots`.
    links: FxHashMap<u64, Link>,
}

/// An emitted event whose link may still change.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    /// Boxed: a queue of events moves pointers when it grows, not kilobyte-sized structs.
    event: Box<ActivityEvent>,
    proc: u64,
    link: Link,
    /// Linked by something other than its process's lineage (an ssh accept claimed by the
    /// login it opened): not re-resolved.
    pinned: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Accept {
    ts: i64,
    client_ip: String,
    event_id: String,
    claimed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TraceState {
    record: TraceRecord,
    last_update: i64,
    /// Event time of the last emission (0: never emitted).
    last_emit: i64,
}

impl TraceState {
    /// When the record is due for emission once dirty: at once if it was never emitted (or
    /// has news that must go at once), else `every` after its last emission.
    fn due(&self, every: i64) -> i64 {
        if self.last_emit == 0 {
            i64::MIN
        } else {
            self.last_emit + every
        }
    }
}

/// Dirty traces by when they are due: (event time, trace id), earliest first.
type DueQueue = BinaryHeap<Reverse<(i64, String)>>;

/// Queues trace `id` as due `at` (unless the queue is to be rebuilt from `dirty` anyway).
fn schedule(queue: &mut Option<DueQueue>, at: i64, id: &str) {
    if let Some(q) = queue {
        q.push(Reverse((at, id.to_string())));
    }
}

/// The engine's whole state for one partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Engine {
    #[serde(skip)]
    cfg: EngineConfig,
    /// Stream time: the latest event time seen.
    now: i64,
    procs: FxHashMap<u64, Proc>,
    /// (host, pid) -> processes that had that pid, oldest first (pids are reused).
    by_pid: FxHashMap<u64, Vec<(i64, u64)>>,
    /// parent key -> children waiting for it.
    waiting: FxHashMap<u64, Vec<u64>>,
    pods: FxHashMap<u64, Pod>,
    /// Scope (pod or host) -> events whose link may change, oldest first.
    held: FxHashMap<u64, VecDeque<Held>>,
    /// Host -> recent sshd/dropbear accepts.
    accepts: FxHashMap<u64, VecDeque<Accept>>,
    traces: FxHashMap<String, TraceState>,
    /// Traces changed since their last emission (ordered: emission order is deterministic).
    dirty: std::collections::BTreeSet<String>,
    /// The dirty traces by due time, so that `take_traces` (every chunk, with thousands of
    /// sessions dirty) looks only at the due ones. An entry is pushed whenever a trace becomes
    /// dirty or due sooner; one whose trace was emitted since, or is due later now, is dropped
    /// when it comes up. Not in snapshots: rebuilt from `dirty` on first use (`None`).
    #[serde(skip)]
    due: Option<DueQueue>,
    /// Revision of the next emission.
    revision: u64,
    /// Events seen since the last sweep.
    since_sweep: u64,
}

/// What one input message produced: events (each id once, its last revision) and updated
/// trace records.
#[derive(Debug, Default)]
pub struct Output {
    pub events: Vec<ActivityEvent>,
    /// Positions in `events` by event id (hashed from the events themselves, not copied).
    index: hashbrown::HashTable<usize>,
    pub traces: Vec<TraceRecord>,
}

impl Output {
    /// Adds `e`, replacing an earlier output of the same event (a re-emission).
    fn push(&mut self, e: ActivityEvent) {
        let hash = |id: &str| rustc_hash::FxBuildHasher.hash_one(id);
        let h = hash(&e.id);
        let events = &self.events;
        match self.index.find(h, |&i| events[i].id == e.id) {
            Some(&i) => self.events[i] = e,
            None => {
                self.events.push(e);
                let events = &self.events;
                self.index
                    .insert_unique(h, events.len() - 1, |&i| hash(&events[i].id));
            }
        }
    }
}

/// Counters a benchmark or test can read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub processes: usize,
    pub pods: usize,
    pub held_events: usize,
    pub traces: usize,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            ..Default::default()
        }
    }

    /// Restores a snapshot (its config is the running one).
    pub fn with_config(mut self, cfg: EngineConfig) -> Self {
        self.cfg = cfg;
        self
    }

    pub fn sizes(&self) -> Sizes {
        Sizes {
            processes: self.procs.len(),
            pods: self.pods.len(),
            held_events: self.held.values().map(VecDeque::len).sum(),
            traces: self.traces.len(),
        }
    }

    /// Estimated heap bytes of the state: entries of every map (with the hash table's control
    /// bytes and load factor) plus the strings and vectors they own.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        fn table<K, V>(n: usize) -> usize {
            // hashbrown: 7/8 load, one control byte per bucket.
            n * 8 / 7 * (size_of::<K>() + size_of::<V>() + 1)
        }
        fn link(l: &Link) -> usize {
            match l {
                Link::None => 0,
                Link::Trace { id, reason, .. } => id.capacity() + reason.capacity(),
                Link::Ambiguous { candidates, reason } => {
                    candidates.iter().map(|c| c.capacity() + 24).sum::<usize>() + reason.capacity()
                }
            }
        }
        fn event(e: &ActivityEvent) -> usize {
            // Every string field's heap: its JSON form is a close upper bound.
            size_of::<ActivityEvent>() + serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0)
        }
        let procs = table::<u64, Proc>(self.procs.len())
            + self
                .procs
                .values()
                .map(|p| {
                    p.comm.capacity()
                        + p.container.capacity()
                        + match &p.anchor {
                            Anchor::Session(t) => t.capacity(),
                            Anchor::Frozen(l) => link(l),
                            _ => 0,
                        }
                })
                .sum::<usize>();
        let by_pid = table::<u64, Vec<(i64, u64)>>(self.by_pid.len())
            + self
                .by_pid
                .values()
                .map(|v| v.capacity() * 16)
                .sum::<usize>();
        let waiting = table::<u64, Vec<u64>>(self.waiting.len())
            + self
                .waiting
                .values()
                .map(|v| v.capacity() * 8)
                .sum::<usize>();
        let held = self
            .held
            .values()
            .flat_map(|q| q.iter())
            .map(|h| {
                size_of::<Held>() + size_of::<ActivityEvent>() + event(&h.event) + link(&h.link)
            })
            .sum::<usize>();
        let pods = table::<u64, Pod>(self.pods.len())
            + self
                .pods
                .values()
                .map(|p| {
                    p.origins
                        .iter()
                        .map(|o| {
                            size_of::<Origin>()
                                + event(&o.event)
                                + o.trace.capacity()
                                + o.argv0.capacity()
                                + o.container.capacity()
                        })
                        .sum::<usize>()
                        + p.roots
                            .iter()
                            .map(|r| size_of::<Root>() + r.comm.capacity() + r.container.capacity())
                            .sum::<usize>()
                        + table::<u64, Link>(p.links.len())
                        + p.links.values().map(link).sum::<usize>()
                })
                .sum::<usize>();
        let traces = table::<String, TraceState>(self.traces.len())
            + self
                .traces
                .iter()
                .map(|(k, t)| {
                    let r = &t.record;
                    k.capacity() + serde_json::to_vec(r).map(|v| v.len()).unwrap_or(0)
                })
                .sum::<usize>()
            + self.dirty.iter().map(|d| d.capacity() + 32).sum::<usize>()
            + self
                .due
                .iter()
                .flatten()
                .map(|Reverse((_, id))| id.capacity() + 32)
                .sum::<usize>();
        procs + by_pid + waiting + held + pods + traces
    }

    /// Processes one input message's events; `position` orders messages (the input offset)
    /// and makes revisions grow with it.
    pub fn process(&mut self, position: u64, events: Vec<ActivityEvent>) -> Output {
        self.revision = self.revision.max((position + 1) << 20);
        let mut out = Output::default();
        out.events.reserve(events.len());
        for e in events {
            self.since_sweep += 1;
            self.now = self.now.max(e.timestamp);
            if e.kind == ActivityType::Kubernetes {
                self.origin(e, &mut out);
            } else {
                self.activity(e, &mut out);
            }
        }
        // A sweep walks the whole state: at most once per half its size in events, so its
        // cost per event stays constant as the state grows (and the state at most 1.5x).
        if self.since_sweep >= 4096.max(self.procs.len() as u64 / 2) {
            self.sweep();
        }
        out.traces = self.take_traces(false);
        out
    }

    /// Trace records due for emission (all changed ones with `all`, e.g. when the partition
    /// is idle), in trace id order.
    pub fn take_traces(&mut self, all: bool) -> Vec<TraceRecord> {
        let every = self.cfg.trace_update_ms * MS;
        let now = self.now;
        let (dirty, traces) = (&self.dirty, &self.traces);
        let queue = self.due.get_or_insert_with(|| {
            dirty
                .iter()
                .map(|id| {
                    let at = traces.get(id).map_or(i64::MIN, |t| t.due(every));
                    Reverse((at, id.clone()))
                })
                .collect()
        });
        // The traces to emit, taken out of `dirty`, in id order.
        let ready: Vec<String> = if all {
            queue.clear();
            std::mem::take(&mut self.dirty).into_iter().collect()
        } else {
            let mut ready = Vec::new();
            while queue.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                let Reverse((_, id)) = queue.pop().expect("peeked");
                // An entry of a trace emitted since, or due later now (changed again after
                // its emission: that change queued its own entry), is dropped.
                let due = self.traces.get(&id).map_or(i64::MIN, |t| t.due(every));
                if due <= now && self.dirty.remove(&id) {
                    ready.push(id);
                }
            }
            ready.sort_unstable();
            ready
        };
        // Sized once: records are large, and growing the vector would copy them (and fault
        // in fresh pages each time it doubles).
        let mut out = Vec::with_capacity(ready.len());
        for id in ready {
            // A trace swept away while dirty has nothing left to emit.
            if let Some(t) = self.traces.get_mut(&id) {
                self.revision += 1;
                t.record.revision = self.revision;
                t.last_emit = now.max(1);
                out.push(t.record.clone());
            }
        }
        out
    }

    /// Whether trace records wait for emission.
    pub fn has_pending_traces(&self) -> bool {
        !self.dirty.is_empty()
    }

    fn emit(&mut self, mut e: ActivityEvent, link: &Link, out: &mut Output) {
        link.apply(&mut e);
        self.revision += 1;
        e.revision = self.revision;
        out.push(e);
    }

    // ---- kube origins ----------------------------------------------------------------------

    fn origin(&mut self, e: ActivityEvent, out: &mut Output) {
        let origin_kind = match (e.sub_resource.as_str(), e.verb.as_str()) {
            ("exec", _) => kind::EXEC,
            ("attach", _) => kind::ATTACH,
            ("", "create") if e.resource == "pods" => kind::RUN,
            _ => return self.emit(e, &Link::None, out),
        };
        // A refused request (403, 404, …) started nothing.
        if e.response_code >= 400 || e.pod.is_empty() {
            return self.emit(e, &Link::None, out);
        }
        let trace = trace_id(&e.tenant, &e.cluster, "kube", &e.id);
        let pod_key = pod_key(&e);
        let link = Link::trace(&trace, 1.0, "origin");
        let pod = self.pods.entry(pod_key).or_default();
        if let Some(o) = pod.origins.iter_mut().find(|o| o.trace == trace) {
            // Another stage of the same request: merge what each stage knows.
            let m = &mut o.event;
            m.stages_started = m.stages_started.max(e.stages_started);
            m.stages_completed = m.stages_completed.max(e.stages_completed);
            if m.response_code == 0 {
                m.response_code = e.response_code;
            }
            if origin_kind != kind::RUN {
                o.end = m.stages_completed;
            }
            let merged = m.clone();
            if let Some(t) = self.traces.get_mut(&trace) {
                t.record.end = t.record.end.max(merged.stages_completed);
                // A merged origin is news: emit at once.
                t.last_emit = 0;
                self.dirty.insert(trace.clone());
                schedule(&mut self.due, i64::MIN, &trace);
            }
            self.emit(merged, &link, out);
            if origin_kind != kind::EXEC {
                self.relink(pod_key, out);
            }
            return;
        }
        let argv0 = e
            .command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        pod.origins.push(Origin {
            trace: trace.clone(),
            kind: origin_kind.to_string(),
            ts: e.timestamp,
            // A run -it session lasts as long as its pod, not its create request.
            end: if origin_kind == kind::RUN {
                0
            } else {
                e.stages_completed
            },
            argv0,
            tty: e.tty.unwrap_or(0) != 0,
            container: e.container.clone(),
            event: e.clone(),
        });
        let record = TraceRecord {
            tenant: e.tenant.clone(),
            trace_id: trace.clone(),
            kind: origin_kind.to_string(),
            origin_id: e.id.clone(),
            user: e.user_name.clone(),
            groups: e.user_groups.clone(),
            source_addresses: e.source_addresses.clone(),
            user_agent: e.user_agent.clone(),
            cluster: e.cluster.clone(),
            namespace: e.namespace.clone(),
            pod: e.pod.clone(),
            container: e.container.clone(),
            container_id: e.container_id.clone(),
            hostname: e.hostname.clone(),
            command: e.command.clone(),
            start: e.timestamp,
            end: e.stages_completed.max(e.timestamp),
            confidence: 1.0,
            reason: "origin".into(),
            ..Default::default()
        };
        self.open_trace(record);
        self.emit(e, &link, out);
        self.rematch(pod_key);
        self.relink(pod_key, out);
    }

    /// Starts tracking a session's record (emitted with the next message).
    fn open_trace(&mut self, record: TraceRecord) {
        let id = record.trace_id.clone();
        self.traces.insert(
            id.clone(),
            TraceState {
                record,
                last_update: self.now,
                last_emit: 0,
            },
        );
        schedule(&mut self.due, i64::MIN, &id);
        self.dirty.insert(id);
    }

    /// Recomputes the root -> origin links of a pod's exec roots.
    fn rematch(&mut self, pod_key: u64) {
        let Some(pod) = self.pods.get_mut(&pod_key) else {
            return;
        };
        let (skew, latency) = (self.cfg.skew_ms * MS, self.cfg.exec_latency_ms * MS);
        let execs: Vec<&Origin> = pod
            .origins
            .iter()
            .filter(|o| o.kind == kind::EXEC)
            .collect();
        // Candidates of each root: exec origins whose time window, container, argv[0] and tty
        // are compatible with it.
        let mut cands: Vec<Vec<usize>> = pod
            .roots
            .iter()
            .map(|r| {
                execs
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| {
                        r.start >= o.ts - skew
                            && r.start <= o.ts + latency
                            && (o.container.is_empty()
                                || r.container.is_empty()
                                || o.container == r.container)
                            && (o.argv0.is_empty() || same_program(&r.comm, &o.argv0))
                            && r.tty.is_none_or(|t| (t != 0) == o.tty)
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        // Each exec starts exactly one root and each root has one exec: a root and an origin
        // that are each other's only candidate are linked, and taken out of the other roots'
        // candidates; what remains can't be told apart.
        let mut matched: Vec<Option<usize>> = vec![None; cands.len()];
        loop {
            let mut progress = false;
            for r in 0..cands.len() {
                if matched[r].is_some() || cands[r].len() != 1 {
                    continue;
                }
                let o = cands[r][0];
                let rivals = (0..cands.len())
                    .filter(|&q| q != r && cands[q].contains(&o))
                    .count();
                if rivals == 0 {
                    matched[r] = Some(o);
                    progress = true;
                    for (q, c) in cands.iter_mut().enumerate() {
                        if q != r {
                            c.retain(|&i| i != o);
                        }
                    }
                }
            }
            if !progress {
                break;
            }
        }
        pod.links.clear();
        for ((r, c), m) in pod.roots.iter().zip(&cands).zip(&matched) {
            let link = match (m, c.as_slice()) {
                (None, []) => Link::None,
                (Some(i), _) => {
                    let o = execs[*i];
                    let confidence = if r.tty.is_some() { 0.99 } else { 0.95 };
                    let reason = if r.tty.is_some() {
                        "exec root: container, argv0, tty and time match"
                    } else {
                        "exec root: container, argv0 and time match (agent reports no tty)"
                    };
                    Link::trace(&o.trace, confidence, reason)
                }
                (None, many) => Link::Ambiguous {
                    candidates: many.iter().map(|i| execs[*i].trace.clone()).collect(),
                    reason: format!(
                        "ambiguous: concurrent execs in the pod; {} candidate sessions",
                        many.len()
                    ),
                },
            };
            pod.links.insert(r.proc, link);
        }
    }

    /// Re-resolves the events held for a scope and re-emits those whose link changed.
    fn relink(&mut self, scope: u64, out: &mut Output) {
        let Some(mut held) = self.held.remove(&scope) else {
            return;
        };
        for h in held.iter_mut().filter(|h| !h.pinned) {
            let (link, _) = self.resolve(h.proc, &h.event);
            if link != h.link {
                self.count(&h.event, &h.link, -1);
                self.count(&h.event, &link, 1);
                h.link = link.clone();
                let mut e = (*h.event).clone();
                self.fill_login_shell(h.proc, &mut e);
                self.emit(e, &link, out);
            }
        }
        self.held.insert(scope, held);
    }

    // ---- agent activity --------------------------------------------------------------------

    fn activity(&mut self, mut e: ActivityEvent, out: &mut Output) {
        let host = key(&[
            e.tenant.as_bytes(),
            e.cluster.as_bytes(),
            e.hostname.as_bytes(),
        ]);
        let pod = if e.pod.is_empty() { 0 } else { pod_key(&e) };
        let scope = if pod != 0 { pod } else { host };
        if e.kind == ActivityType::Connection
            && e.direction == "in"
            && LOGIN_PARENTS.contains(&e.comm.as_str())
        {
            // Held (below) so the session it opens can claim it.
            self.accepts.entry(host).or_default().push_back(Accept {
                ts: e.timestamp,
                client_ip: e.client_ip.clone(),
                event_id: e.id.clone(),
                claimed: false,
            });
        }
        let is_accept = e.kind == ActivityType::Connection
            && e.direction == "in"
            && LOGIN_PARENTS.contains(&e.comm.as_str());
        let Some(pk) = proc_key(&e) else {
            // A process we cannot key (no pid): only its own fields can tell.
            return self.emit(e, &Link::None, out);
        };
        let is_new = self.upsert(pk, &e, host, pod, scope, out);
        let (link, final_) = self.resolve(pk, &e);
        self.count(&e, &link, 1);
        if !final_ || is_accept {
            self.held.entry(scope).or_default().push_back(Held {
                event: Box::new(e.clone()),
                proc: pk,
                link: link.clone(),
                pinned: false,
            });
        }
        let session_start = is_new
            && matches!(
                self.procs.get(&pk).map(|p| &p.anchor),
                Some(Anchor::Session(_))
            );
        self.fill_login_shell(pk, &mut e);
        self.emit(e, &link, out);
        if session_start {
            self.claim_accept(pk, host, scope, out);
        }
    }

    /// Adds or refreshes a process. Returns whether it is new.
    fn upsert(
        &mut self,
        pk: u64,
        e: &ActivityEvent,
        host: u64,
        pod: u64,
        scope: u64,
        out: &mut Output,
    ) -> bool {
        let now = self.now;
        let mut first_seen = now;
        if let Some(p) = self.procs.get_mut(&pk) {
            p.last_seen = now;
            if !(p.stub && e.kind == ActivityType::Command) {
                return false;
            }
            // A stub made from a connection/file event that arrived before the process's own
            // exec event: replace it with the full process.
            first_seen = p.first_seen;
            let hp = key(&[&p.host.to_le_bytes(), &p.pid.to_le_bytes()]);
            self.procs.remove(&pk);
            if let Some(l) = self.by_pid.get_mut(&hp) {
                l.retain(|(_, k)| *k != pk);
            }
        }
        let start = if e.process_start_time != 0 {
            e.process_start_time
        } else {
            e.timestamp
        };
        let parent_ref = (!e.parent_exec_id.is_empty()).then(|| {
            key(&[
                e.tenant.as_bytes(),
                e.cluster.as_bytes(),
                e.hostname.as_bytes(),
                e.parent_exec_id.as_bytes(),
            ])
        });
        let stub = e.kind != ActivityType::Command;
        let mut p = Proc {
            stub,
            parent: None,
            parent_ref,
            ppid: e.ppid,
            host,
            pod,
            pid: e.pid,
            start,
            comm: e.comm.clone(),
            container: e.container_name.clone(),
            tty: e.tty,
            in_init: e.in_init_tree,
            login_shell: e.login_shell_id,
            anchor: Anchor::None,
            first_seen,
            last_seen: now,
        };
        p.parent = self.find_parent(&p);
        if p.parent.is_none() {
            // Wait for the parent by its exec id, or else by its pid on this host.
            let w = parent_ref.or((p.ppid != 0).then(|| pid_wait_key(host, p.ppid)));
            if let Some(w) = w {
                self.waiting.entry(w).or_default().push(pk);
            }
        }
        let hp = key(&[&host.to_le_bytes(), &e.pid.to_le_bytes()]);
        let list = self.by_pid.entry(hp).or_default();
        let at = list.partition_point(|(s, _)| *s <= start);
        list.insert(at, (start, pk));
        // Anchors.
        let exec_root = pod != 0
            && e.in_init_tree == Some(false)
            && e.kind == ActivityType::Command
            && p.parent
                .is_none_or(|pp| self.procs.get(&pp).is_none_or(|q| q.in_init != Some(false)));
        self.procs.insert(pk, p);
        if exec_root {
            self.procs.get_mut(&pk).expect("inserted").anchor = Anchor::ExecRoot;
            let podst = self.pods.entry(pod).or_default();
            podst.roots.push(Root {
                proc: pk,
                start,
                comm: e.comm.clone(),
                tty: e.tty,
                container: e.container_name.clone(),
            });
            self.rematch(pod);
        } else if e.kind == ActivityType::Command && is_shell(&e.comm) {
            self.maybe_login_session(pk, e);
        }
        // Children that were waiting for this process now have their parent: by exec id, or by
        // pid when they started after it (an older child of that pid belongs to its
        // predecessor).
        let mut children = self.waiting.remove(&pk).unwrap_or_default();
        if let Some(by_pid) = self.waiting.remove(&pid_wait_key(host, e.pid)) {
            let (mine, others): (Vec<u64>, Vec<u64>) = by_pid
                .into_iter()
                .partition(|c| self.procs.get(c).is_some_and(|cp| cp.start >= start));
            children.extend(mine);
            if !others.is_empty() {
                self.waiting.insert(pid_wait_key(host, e.pid), others);
            }
        }
        if !children.is_empty() {
            let in_exec = self
                .procs
                .get(&pk)
                .is_some_and(|p| p.in_init == Some(false));
            let mut demoted = Vec::new();
            for c in children {
                if let Some(cp) = self.procs.get_mut(&c) {
                    cp.parent = Some(pk);
                    if cp.anchor == Anchor::ExecRoot && in_exec {
                        // It looked like an exec root only because its parent was unseen.
                        cp.anchor = Anchor::None;
                        demoted.push((cp.pod, c));
                    }
                }
            }
            for (pod, c) in demoted {
                if let Some(ps) = self.pods.get_mut(&pod) {
                    ps.roots.retain(|r| r.proc != c);
                }
                self.rematch(pod);
            }
            self.relink(scope, out);
        } else if exec_root || first_seen != now {
            // A new root, or a stub completed.
            self.relink(scope, out);
        }
        true
    }

    /// The parent by exec id, or by (host, ppid): the latest process with that pid started no
    /// later than the child (pids are reused).
    fn find_parent(&self, p: &Proc) -> Option<u64> {
        if let Some(r) = p.parent_ref {
            return self.procs.contains_key(&r).then_some(r);
        }
        if p.ppid == 0 {
            return None;
        }
        let hp = key(&[&p.host.to_le_bytes(), &p.ppid.to_le_bytes()]);
        let list = self.by_pid.get(&hp)?;
        let at = list.partition_point(|(s, _)| *s <= p.start);
        at.checked_sub(1).map(|i| list[i].1)
    }

    /// A shell that starts a session of its own: under sshd/dropbear/login, or a tty shell on a
    /// host whose parent is in no session and is not a shell itself. An entrypoint script (no
    /// tty, in the container's init tree) never qualifies.
    fn maybe_login_session(&mut self, pk: u64, e: &ActivityEvent) {
        let login_parent = LOGIN_PARENTS.contains(&e.pcomm.as_str());
        let tty_shell =
            e.tty.is_some_and(|t| t != 0) && e.pod.is_empty() && e.container_id.is_empty();
        if !login_parent && !tty_shell {
            return;
        }
        let parent = self.procs.get(&pk).and_then(|p| p.parent);
        if !login_parent {
            if is_shell(&e.pcomm) {
                return;
            }
            if let Some(pp) = parent
                && self.resolve_proc(pp).0 != Link::None
            {
                return;
            }
        }
        let origin_kind = match e.pcomm.as_str() {
            "sshd" => kind::SSH,
            "dropbear" => kind::DROPBEAR,
            _ => kind::SHELL,
        };
        let id = exec_key(e).map_or_else(String::new, |id| {
            String::from_utf8_lossy(id.bytes()).into_owned()
        });
        let trace = trace_id(&e.tenant, &e.cluster, "login", &id);
        if let Some(p) = self.procs.get_mut(&pk) {
            p.anchor = Anchor::Session(trace.clone());
        }
        // The login user by name when the agent knows it, else by (login) uid.
        let user = if !e.user_login_name.is_empty() {
            e.user_login_name.clone()
        } else if !e.username.is_empty() {
            e.username.clone()
        } else if let Some(uid) = e.user_login_uid.filter(|u| *u >= 0).or(e.uid) {
            format!("uid={uid}")
        } else {
            String::new()
        };
        let record = TraceRecord {
            tenant: e.tenant.clone(),
            trace_id: trace.clone(),
            kind: origin_kind.to_string(),
            origin_id: e.id.clone(),
            user,
            cluster: e.cluster.clone(),
            namespace: e.namespace.clone(),
            pod: e.pod.clone(),
            container: e.container_name.clone(),
            container_id: e.container_id.clone(),
            hostname: e.hostname.clone(),
            command: if e.cmdline.is_empty() {
                e.comm.clone()
            } else {
                e.cmdline.clone()
            },
            start: e.timestamp,
            end: e.timestamp,
            confidence: 1.0,
            reason: format!("login shell under {}", e.pcomm),
            ..Default::default()
        };
        self.open_trace(record);
    }

    /// Names an ssh/dropbear session's client: the one unclaimed accept shortly before the
    /// login shell on that host (none when several could be it).
    fn claim_accept(&mut self, pk: u64, host: u64, scope: u64, out: &mut Output) {
        let Some(Anchor::Session(trace)) = self.procs.get(&pk).map(|p| p.anchor.clone()) else {
            return;
        };
        let Some(start) = self.procs.get(&pk).map(|p| p.start) else {
            return;
        };
        let window = self.cfg.login_accept_ms * MS;
        let Some(accepts) = self.accepts.get_mut(&host) else {
            return;
        };
        let cands: Vec<usize> = accepts
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.claimed && a.ts <= start && a.ts >= start - window)
            .map(|(i, _)| i)
            .collect();
        let [i] = cands.as_slice() else {
            return;
        };
        accepts[*i].claimed = true;
        let (ip, id) = (accepts[*i].client_ip.clone(), accepts[*i].event_id.clone());
        if let Some(t) = self.traces.get_mut(&trace) {
            if !ip.is_empty() {
                t.record.source_addresses = vec![ip];
            }
            t.last_emit = 0;
            self.dirty.insert(trace.clone());
            schedule(&mut self.due, i64::MIN, &trace);
        }
        // The accept itself belongs to the session it opened.
        let link = Link::trace(&trace, 0.9, "ssh accept just before the login shell");
        let Some(held) = self.held.get_mut(&scope) else {
            return;
        };
        if let Some(h) = held.iter_mut().find(|h| h.event.id == id) {
            let old = std::mem::replace(&mut h.link, link.clone());
            h.pinned = true;
            let e = (*h.event).clone();
            self.count(&e, &old, -1);
            self.count(&e, &link, 1);
            self.emit(e, &link, out);
        }
    }

    /// The link of a process (and whether it can no longer change), walking up its ancestors
    /// to what anchors a session.
    fn resolve_proc(&mut self, pk: u64) -> (Link, bool) {
        let hold = self.cfg.hold_ms * MS;
        let now = self.now;
        let mut cur = pk;
        let mut first = true;
        for _ in 0..64 {
            let Some(p) = self.procs.get_mut(&cur) else {
                break;
            };
            p.last_seen = now;
            let p = &self.procs[&cur];
            match &p.anchor {
                Anchor::Session(t) => {
                    let reason = if first {
                        "login shell"
                    } else {
                        "descendant of the session's login shell"
                    };
                    return (Link::trace(t, 1.0, reason), true);
                }
                Anchor::Frozen(l) => return (descendant(l.clone(), first), true),
                Anchor::ExecRoot => {
                    let link = self
                        .pods
                        .get(&p.pod)
                        .and_then(|pod| pod.links.get(&cur))
                        .cloned()
                        .unwrap_or_default();
                    let final_ = p.start + hold < now;
                    return (descendant(link, first), final_);
                }
                Anchor::None => {}
            }
            match p.parent {
                Some(pp) if self.procs.contains_key(&pp) => {
                    cur = pp;
                    first = false;
                }
                _ => break,
            }
        }
        // The top of the known lineage anchors nothing: an attach / run -it session of its
        // container, or no session.
        let top = &self.procs[&cur];
        // Only a late parent or a late attach/run origin can still place it: hold it only
        // while one of those may come (noise without tty in a pod is final at once).
        let young = top.first_seen + hold >= now;
        let waiting_parent = top.parent.is_none() && (top.parent_ref.is_some() || top.ppid != 0);
        let attach_candidate =
            top.pod != 0 && top.in_init != Some(false) && top.tty.is_none_or(|t| t != 0);
        let final_ = !young || !(waiting_parent || attach_candidate);
        let link = self.attach_link(cur);
        (
            descendant(link, first),
            final_ && !self.has_open_attach(top.pod),
        )
    }

    /// The link of an event of process `pk`; an event whose process lineage knows nothing may
    /// still be placed by its agent-reported login shell.
    fn resolve(&mut self, pk: u64, e: &ActivityEvent) -> (Link, bool) {
        let (link, final_) = self.resolve_proc(pk);
        if link != Link::None {
            return (link, final_);
        }
        if let Some(ls) = e.login_shell_id.filter(|l| *l != 0 && *l != e.pid) {
            let host = self.procs.get(&pk).map(|p| p.host).unwrap_or(0);
            let start = self.procs.get(&pk).map(|p| p.start).unwrap_or(e.timestamp);
            let hp = key(&[&host.to_le_bytes(), &ls.to_le_bytes()]);
            let shell = self.by_pid.get(&hp).and_then(|l| {
                let at = l.partition_point(|(s, _)| *s <= start);
                at.checked_sub(1).map(|i| l[i].1)
            });
            if let Some(s) = shell
                && s != pk
            {
                let (l, f) = self.resolve_proc(s);
                if let Link::Trace { id, confidence, .. } = l {
                    return (
                        Link::trace(
                            &id,
                            confidence.min(0.9),
                            "under the session's login shell (agent loginShellId)",
                        ),
                        f && final_,
                    );
                }
            }
        }
        (Link::None, final_)
    }

    /// Attach / run -it: a process of the container's init tree started while the request
    /// was open belongs to it.
    fn attach_link(&self, top: u64) -> Link {
        let p = &self.procs[&top];
        if p.pod == 0 || p.in_init == Some(false) {
            return Link::None;
        }
        let Some(pod) = self.pods.get(&p.pod) else {
            return Link::None;
        };
        let skew = self.cfg.skew_ms * MS;
        let cands: Vec<&Origin> = pod
            .origins
            .iter()
            .filter(|o| o.kind != kind::EXEC)
            .filter(|o| {
                p.start >= o.ts - skew
                    && (o.end == 0 || p.start <= o.end + skew)
                    && (o.container.is_empty()
                        || p.container.is_empty()
                        || o.container == p.container)
                    && p.tty.is_none_or(|t| (t != 0) == o.tty)
            })
            .collect();
        match cands.as_slice() {
            [] => Link::None,
            [o] => Link::trace(
                &o.trace,
                if p.tty.is_some() { 0.9 } else { 0.8 },
                "container init tree during the attach / run",
            ),
            many => Link::Ambiguous {
                candidates: many.iter().map(|o| o.trace.clone()).collect(),
                reason: format!("ambiguous: {} concurrent attach sessions", many.len()),
            },
        }
    }

    fn has_open_attach(&self, pod: u64) -> bool {
        let hold = self.cfg.hold_ms * MS;
        self.pods.get(&pod).is_some_and(|p| {
            p.origins
                .iter()
                .any(|o| o.kind != kind::EXEC && (o.end == 0 || o.end + hold > self.now))
        })
    }

    /// Fills the login shell fields the agent did not send.
    fn fill_login_shell(&self, pk: u64, e: &mut ActivityEvent) {
        if e.login_shell_id.is_none()
            && let Some((id, distance)) = self.login_shell(pk)
        {
            e.login_shell_id = Some(id);
            e.login_shell_distance = Some(distance);
        }
    }

    /// `loginShellId`/`loginShellDistance` from the lineage (brief §4): the oldest ancestor
    /// whose comm is a shell, and how many generations up it is.
    fn login_shell(&self, pk: u64) -> Option<(i64, i64)> {
        let mut cur = pk;
        let mut depth = 0;
        let mut found = None;
        for _ in 0..64 {
            let p = self.procs.get(&cur)?;
            if is_shell(&p.comm) {
                found = Some((p.pid, depth));
            }
            match p.parent {
                Some(pp) if self.procs.contains_key(&pp) => {
                    cur = pp;
                    depth += 1;
                }
                _ => break,
            }
        }
        found
    }

    fn count(&mut self, e: &ActivityEvent, link: &Link, delta: i64) {
        let now = self.now;
        let every = self.cfg.trace_update_ms * MS;
        match link {
            Link::None => {}
            Link::Trace { id, confidence, .. } => {
                if let Some(t) = self.traces.get_mut(id) {
                    let r = &mut t.record;
                    let n = match e.kind {
                        ActivityType::Command => &mut r.commands,
                        ActivityType::Connection => &mut r.connections,
                        ActivityType::Fileaccess => &mut r.fileaccesses,
                        ActivityType::Kubernetes => return,
                    };
                    *n = n.saturating_add_signed(delta);
                    if delta > 0 {
                        r.start = r.start.min(e.timestamp);
                        r.end = r.end.max(e.timestamp);
                        if *confidence < r.confidence {
                            r.confidence = *confidence;
                        }
                        if r.container_id.is_empty() && !e.container_id.is_empty() {
                            r.container_id.clone_from(&e.container_id);
                        }
                        if r.hostname.is_empty() && !e.hostname.is_empty() {
                            r.hostname.clone_from(&e.hostname);
                        }
                    }
                    t.last_update = now;
                    if !self.dirty.contains(id) {
                        self.dirty.insert(id.clone());
                        schedule(&mut self.due, t.due(every), id);
                    }
                }
            }
            Link::Ambiguous { candidates, .. } => {
                for c in candidates {
                    if let Some(t) = self.traces.get_mut(c) {
                        t.record.ambiguous = t.record.ambiguous.saturating_add_signed(delta);
                        t.last_update = now;
                        if self.dirty.insert(c.clone()) {
                            schedule(&mut self.due, t.due(every), c);
                        }
                    }
                }
            }
        }
    }

    /// Drops what the hold window and the idle limit no longer need: held events, matched
    /// roots (their link frozen into the process), old origins, idle processes and traces.
    pub fn sweep(&mut self) {
        self.since_sweep = 0;
        let now = self.now;
        let hold = self.cfg.hold_ms * MS;
        let idle = self.cfg.idle_ms * MS;
        let leaf_idle = self.cfg.leaf_idle_ms * MS;
        for q in self.held.values_mut() {
            while q.front().is_some_and(|h| h.event.timestamp + hold < now) {
                q.pop_front();
            }
        }
        self.held.retain(|_, q| !q.is_empty());
        let mut frozen = Vec::new();
        for pod in self.pods.values_mut() {
            pod.roots.retain(|r| {
                if r.start + hold < now {
                    frozen.push((r.proc, pod.links.get(&r.proc).cloned().unwrap_or_default()));
                    false
                } else {
                    true
                }
            });
            for (p, _) in &frozen {
                pod.links.remove(p);
            }
            pod.origins.retain(|o| {
                let open = o.kind != kind::EXEC && o.end == 0 && o.ts + idle > now;
                open || o.ts.max(o.end) + hold > now
            });
        }
        for (pk, link) in frozen {
            if let Some(p) = self.procs.get_mut(&pk) {
                p.anchor = Anchor::Frozen(link);
            }
        }
        self.pods
            .retain(|_, p| !p.origins.is_empty() || !p.roots.is_empty());
        let gone: Vec<u64> = self
            .procs
            .iter()
            .filter(|(_, p)| {
                let keep_long = is_shell(&p.comm) || !matches!(p.anchor, Anchor::None);
                p.last_seen + if keep_long { idle } else { leaf_idle } < now
            })
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.procs.remove(k);
        }
        if !gone.is_empty() {
            for list in self.by_pid.values_mut() {
                list.retain(|(_, k)| self.procs.contains_key(k));
            }
            self.by_pid.retain(|_, l| !l.is_empty());
            for children in self.waiting.values_mut() {
                children.retain(|k| self.procs.contains_key(k));
            }
        }
        self.waiting.retain(|_, c| !c.is_empty());
        for q in self.accepts.values_mut() {
            while q.front().is_some_and(|a| a.ts + hold < now) {
                q.pop_front();
            }
        }
        self.accepts.retain(|_, q| !q.is_empty());
        let dirty = &self.dirty;
        self.traces
            .retain(|id, t| dirty.contains(id) || t.last_update + idle > now);
    }
}

/// A link seen from a descendant of the process that holds it.
fn descendant(link: Link, first: bool) -> Link {
    if first {
        return link;
    }
    match link {
        Link::Trace {
            id,
            confidence,
            reason,
        } if !reason.starts_with("descendant") => Link::Trace {
            id,
            confidence,
            reason: format!("descendant of {reason}"),
        },
        l => l,
    }
}

/// Key under which children wait for a parent known only by its pid on a host.
fn pid_wait_key(host: u64, pid: i64) -> u64 {
    key(&[b"pid", &host.to_le_bytes(), &pid.to_le_bytes()])
}

fn pod_key(e: &ActivityEvent) -> u64 {
    key(&[
        e.tenant.as_bytes(),
        e.cluster.as_bytes(),
        e.namespace.as_bytes(),
        e.pod.as_bytes(),
    ])
}

/// The key of an event's process: its exec id, else (host, pid, start time).
fn proc_key(e: &ActivityEvent) -> Option<u64> {
    let id = exec_key(e)?;
    Some(key(&[
        e.tenant.as_bytes(),
        e.cluster.as_bytes(),
        e.hostname.as_bytes(),
        id.bytes(),
    ]))
}

/// The process's exec id as the agent names it; for an agent without one, the same
/// `host:pid:start` form ingest gives Falco processes. Gathered on the stack: it is keyed
/// for every event.
fn exec_key(e: &ActivityEvent) -> Option<Gather> {
    let mut id = Gather::default();
    if !e.exec_id.is_empty() {
        id.push(e.exec_id.as_bytes());
    } else if e.pid != 0 && e.process_start_time != 0 {
        id.push(e.hostname.as_bytes())
            .push(b":")
            .decimal(e.pid)
            .push(b":")
            .decimal(e.process_start_time);
    } else {
        return None;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_keys_hash_the_exec_key() {
        let mut e = ActivityEvent {
            tenant: "t".into(),
            cluster: "c".into(),
            hostname: "node-1".into(),
            pid: 4242,
            process_start_time: 1_767_000_000_123_456_789,
            ..Default::default()
        };
        let by_parts = |id: &str| key(&[b"t", b"c", b"node-1", id.as_bytes()]);
        // Ingest's form of a Falco process's exec id.
        assert_eq!(
            proc_key(&e),
            Some(by_parts("node-1:4242:1767000000123456789"))
        );
        e.exec_id = "bm9kZS0xOjQyNDI6MTIz".into();
        assert_eq!(proc_key(&e), Some(by_parts("bm9kZS0xOjQyNDI6MTIz")));
        e.exec_id.clear();
        e.pid = 0;
        assert_eq!(proc_key(&e), None);
    }

    /// Trace records go out at once when new, then at most every `trace_update_ms` of event
    /// time while they change, in trace id order; a snapshot-restored engine (no due queue)
    /// and `take_traces(true)` see the same dirty traces.
    #[test]
    fn trace_records_go_out_when_due_and_only_then() {
        const S: i64 = 1_000_000_000;
        let mut en = Engine::new(EngineConfig {
            trace_update_ms: 30_000,
            ..Default::default()
        });
        let command = |ts: i64| ActivityEvent {
            kind: ActivityType::Command,
            timestamp: ts,
            ..Default::default()
        };
        let ids = |records: Vec<TraceRecord>| -> Vec<(String, u64)> {
            records
                .into_iter()
                .map(|r| (r.trace_id, r.commands))
                .collect()
        };
        en.now = 100 * S;
        for id in ["b", "a", "c"] {
            en.open_trace(TraceRecord {
                trace_id: id.into(),
                ..Default::default()
            });
        }
        let opened = ids(en.take_traces(false));
        assert_eq!(opened, [("a".into(), 0), ("b".into(), 0), ("c".into(), 0)]);
        assert!(en.take_traces(false).is_empty(), "nothing changed");

        // "a" changes at once, "c" later: each is due 30 s after its last emission.
        en.count(&command(en.now), &Link::trace("a", 1.0, "t"), 1);
        en.now = 110 * S;
        en.count(&command(en.now), &Link::trace("c", 1.0, "t"), 1);
        en.count(&command(en.now), &Link::trace("a", 1.0, "t"), 1);
        en.now = 129 * S;
        assert!(en.take_traces(false).is_empty(), "not due before 130 s");
        en.now = 130 * S;
        assert_eq!(
            ids(en.take_traces(false)),
            [("a".into(), 2), ("c".into(), 1)]
        );

        // A new trace goes out at once, and with it one changed since it was due.
        en.count(&command(en.now), &Link::trace("b", 1.0, "t"), 1);
        en.now = 131 * S;
        en.open_trace(TraceRecord {
            trace_id: "d".into(),
            ..Default::default()
        });
        assert_eq!(
            ids(en.take_traces(false)),
            [("b".into(), 1), ("d".into(), 0)]
        );
        // "b" changes again (due at 161 s), "a" too (due at 160 s).
        en.now = 140 * S;
        en.count(&command(en.now), &Link::trace("b", 1.0, "t"), 1);
        en.now = 160 * S;
        en.count(&command(en.now), &Link::trace("a", 1.0, "t"), 1);

        // Restored from a snapshot: the queue is rebuilt from the dirty set.
        let mut restored: Engine =
            serde_json::from_slice(&serde_json::to_vec(&en).unwrap()).unwrap();
        restored.cfg = en.cfg.clone();
        assert!(restored.due.is_none());
        assert_eq!(ids(restored.take_traces(false)), [("a".into(), 3)]);
        assert_eq!(ids(en.take_traces(false)), [("a".into(), 3)]);
        en.now = 161 * S;
        assert_eq!(ids(en.take_traces(false)), [("b".into(), 2)]);

        en.count(&command(en.now), &Link::trace("a", 1.0, "t"), 1);
        assert!(en.take_traces(false).is_empty(), "a is due at 190 s");
        assert_eq!(ids(en.take_traces(true)), [("a".into(), 4)]);
        assert!(en.dirty.is_empty());
        en.now = 400 * S;
        assert!(
            en.take_traces(false).is_empty(),
            "every entry left is stale"
        );

        // News (as a merged origin brings) goes out at once; the entry its earlier change
        // queued is then stale and must not emit the next change before that one is due.
        en.open_trace(TraceRecord {
            trace_id: "e".into(),
            ..Default::default()
        });
        assert_eq!(ids(en.take_traces(false)), [("e".into(), 0)]);
        en.now = 405 * S;
        en.count(&command(en.now), &Link::trace("e", 1.0, "t"), 1);
        en.now = 410 * S;
        en.traces.get_mut("e").unwrap().last_emit = 0;
        schedule(&mut en.due, i64::MIN, "e");
        assert_eq!(ids(en.take_traces(false)), [("e".into(), 1)]);
        en.now = 415 * S;
        en.count(&command(en.now), &Link::trace("e", 1.0, "t"), 1);
        en.now = 430 * S;
        assert!(en.take_traces(false).is_empty(), "e is due at 440 s");
        en.now = 440 * S;
        assert_eq!(ids(en.take_traces(false)), [("e".into(), 2)]);
    }
}

//! The topic contract: which topics exist, what flows on each, and how messages are keyed.
//!
//! ```text
//! ingest --raw--> enricher --enriched--> correlator --events--> writer (ClickHouse)
//!    \                \                       |  \--traces----> writer (ClickHouse)
//!     \                \                      \--correlator-state (its own snapshots)
//!      \________________\_______________________\_____________--> deadletter
//! ```
//! Every message on `raw`, `enriched` and `events` is an event batch ([`crate::batch`]) whose
//! events share one partition: [`partition_for`] of their [`partition_key`]. A pod's audit and
//! agent events meet on one partition, host events on their host's partition; one message per
//! partition and request keeps the broker's per-message cost off the hot path.

use crate::ActivityEvent;
use serde::{Deserialize, Serialize};

/// Topic names. Defaults are the production names; tests give each run its own prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Normalised events from ingest.
    pub raw: String,
    /// Events with Kubernetes metadata, from the enricher.
    pub enriched: String,
    /// Final events with trace ids, from the correlator; the writer's input.
    pub events: String,
    /// Messages a stage could not process, with the reason in headers.
    pub deadletter: String,
    /// Trace records ([`crate::trace::TraceRecord`]) from the correlator; the writer's second
    /// input.
    pub traces: String,
    /// Correlator state snapshots, one partition per `enriched` partition.
    pub correlator_state: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self::with_prefix("activity")
    }
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Topics {
            raw: format!("{prefix}.raw.v1"),
            enriched: format!("{prefix}.enriched.v1"),
            events: format!("{prefix}.events.v1"),
            deadletter: format!("{prefix}.deadletter.v1"),
            traces: format!("{prefix}.traces.v1"),
            correlator_state: format!("{prefix}.correlator-state.v1"),
        }
    }

    pub fn all(&self) -> [&str; 6] {
        [
            &self.raw,
            &self.enriched,
            &self.events,
            &self.deadletter,
            &self.traces,
            &self.correlator_state,
        ]
    }
}

/// Headers carried by dead-lettered messages.
pub mod dlq_headers {
    pub const STAGE: &str = "aa-dlq-stage";
    pub const REASON: &str = "aa-dlq-reason";
    pub const SOURCE_TOPIC: &str = "aa-dlq-topic";
    pub const SOURCE_PARTITION: &str = "aa-dlq-partition";
    pub const SOURCE_OFFSET: &str = "aa-dlq-offset";
    pub const TENANT: &str = "aa-tenant";
}

/// The partition of `key` among `partitions`: every stage uses this, so one pod's events stay
/// on one partition number across topics with the same partition count.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let n = partitions.max(1) as u64;
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % n) as i32
}

/// Partition key of an event: `tenant/cluster/pod/<namespace>/<pod>` when the pod is known,
/// else `tenant/cluster/ctr/<container id>`, else `tenant/cluster/host/<hostname>`.
pub fn partition_key(e: &ActivityEvent) -> String {
    if !e.pod.is_empty() {
        format!("{}/{}/pod/{}/{}", e.tenant, e.cluster, e.namespace, e.pod)
    } else if !e.container_id.is_empty() {
        format!("{}/{}/ctr/{}", e.tenant, e.cluster, e.container_id)
    } else {
        format!("{}/{}/host/{}", e.tenant, e.cluster, e.hostname)
    }
}

/// `partition_for(&partition_key(e), partitions)` without building the key (the stages do
/// this for every event): the same bytes, gathered on the stack.
pub fn partition_of(e: &ActivityEvent, partitions: i32) -> i32 {
    let mut g = crate::id::Gather::default();
    g.push(e.tenant.as_bytes())
        .push(b"/")
        .push(e.cluster.as_bytes());
    if !e.pod.is_empty() {
        g.push(b"/pod/")
            .push(e.namespace.as_bytes())
            .push(b"/")
            .push(e.pod.as_bytes());
    } else if !e.container_id.is_empty() {
        g.push(b"/ctr/").push(e.container_id.as_bytes());
    } else {
        g.push(b"/host/").push(e.hostname.as_bytes());
    }
    (g.xxh3_64() % partitions.max(1) as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_a_pod_and_split_hosts() {
        let mut audit = ActivityEvent {
            tenant: "t".into(),
            cluster: "c".into(),
            namespace: "shop".into(),
            pod: "web-1".into(),
            ..Default::default()
        };
        let mut agent = audit.clone();
        agent.container_id = "abc".into();
        assert_eq!(partition_key(&audit), partition_key(&agent));
        audit.pod.clear();
        audit.hostname = "node-1".into();
        assert_eq!(partition_key(&audit), "t/c/host/node-1");
        let ctr = ActivityEvent {
            tenant: "t".into(),
            container_id: "c".repeat(64),
            ..Default::default()
        };
        let long_host = ActivityEvent {
            hostname: "h".repeat(300),
            ..ctr.clone()
        };
        let long_host = ActivityEvent {
            container_id: String::new(),
            ..long_host
        };
        for e in [&audit, &agent, &ctr, &long_host] {
            for n in [1, 4, 12, 64] {
                assert_eq!(partition_of(e, n), partition_for(&partition_key(e), n));
            }
        }
        assert_eq!(Topics::with_prefix("x").events, "x.events.v1");
        let p = partition_for("t/c/pod/ns/a", 8);
        assert!((0..8).contains(&p));
        assert_eq!(p, partition_for("t/c/pod/ns/a", 8));
        assert_eq!(partition_for("x", 1), 0);
    }
}

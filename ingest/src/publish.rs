//! Turning accepted events into durable Kafka messages: stamp the caller's tenant and cluster
//! (never trusted from the payload), give each event its deterministic id, group by partition
//! key and produce to the `raw` topic with `acks=all`.

use crate::auth::Identity;
use pipeline::kafka::{Bus, Outgoing, ProduceError};
use schemas::{ActivityEvent, Source};

/// Stamps identity and receive time, and assigns the deterministic id if the event has none,
/// from the producer's natural `key` (an audit id, or the item's own bytes): a producer's retry
/// of the same event gets the same id.
pub fn stamp(e: &mut ActivityEvent, who: &Identity, source: Source, received_ns: i64, key: &[u8]) {
    e.tenant.clone_from(&who.tenant);
    e.cluster.clone_from(&who.cluster);
    e.source = source;
    e.received_timestamp = received_ns;
    if e.id.is_empty() {
        e.id = schemas::id::event_id(&who.tenant, &who.cluster, source.as_str(), key);
    }
}

/// Produces `events` to `topic` and waits for every acknowledgement.
pub async fn publish(
    bus: &Bus,
    topic: &str,
    events: &[Box<ActivityEvent>],
) -> Result<(), ProduceError> {
    if events.is_empty() {
        return Ok(());
    }
    let partitions = bus
        .partitions(topic)
        .await
        .map_err(ProduceError::NotAcknowledged)?;
    let records: Vec<Outgoing> =
        pipeline::stage::encode_by_partition(events.iter().map(|e| &**e), topic, partitions);
    bus.send_all(&records).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_comes_from_the_token_and_ids_are_stable() {
        let who = Identity {
            tenant: "acme".into(),
            cluster: "a".into(),
        };
        let mut e = ActivityEvent {
            timestamp: 1_700_000_000_000_000_000,
            comm: "sh".into(),
            cluster: "b".into(),
            tenant: "evil".into(),
            ..Default::default()
        };
        let mut again = e.clone();
        stamp(&mut e, &who, Source::Native, 5, b"item bytes");
        stamp(&mut again, &who, Source::Native, 9, b"item bytes");
        assert_eq!(e.cluster, "a");
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.id, again.id, "a retry must get the same id");
        assert_eq!(e.received_timestamp, 5);
        let mut other = e.clone();
        other.id.clear();
        stamp(&mut other, &who, Source::Native, 5, b"other item bytes");
        assert_ne!(other.id, e.id);
        let mut given = e.clone();
        given.id = "client-id-1".into();
        stamp(&mut given, &who, Source::Native, 5, b"item bytes");
        assert_eq!(given.id, "client-id-1", "a client's own id is kept");
    }
}

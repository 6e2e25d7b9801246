//! The message codec of every internal topic: one Kafka message carries a batch of events that
//! share a partition key, as JSON lines (one `ActivityEvent` per line, `\n`-terminated).
//!
//! Batching amortises the per-message cost of the broker and the client; JSON lines keep each
//! message readable by any consumer (`jq`, analytics jobs) without our code.

use crate::ActivityEvent;

/// Content type header value of batch messages.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// Largest message we produce: well under the brokers' common 1 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 900 * 1024;

/// Appends one event as a JSON line.
pub fn push(buf: &mut Vec<u8>, event: &ActivityEvent) {
    serde_json::to_writer(&mut *buf, event).expect("serialising an ActivityEvent cannot fail");
    buf.push(b'\n');
}

/// Encodes events into messages of at most `max_bytes` each (an event larger than that gets a
/// message of its own).
pub fn encode<'a>(
    events: impl IntoIterator<Item = &'a ActivityEvent>,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line = Vec::with_capacity(1024);
    for e in events {
        line.clear();
        push(&mut line, e);
        if !buf.is_empty() && buf.len() + line.len() > max_bytes {
            out.push(std::mem::take(&mut buf));
        }
        if buf.is_empty() {
            // One allocation per message instead of a doubling series of copies.
            buf.reserve(max_bytes.min(line.len() * 1024).max(line.len()));
        }
        buf.extend_from_slice(&line);
    }
    if !buf.is_empty() {
        out.push(buf);
    }
    out
}

/// A line of a batch that is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct BadLine {
    /// 1-based line number within the message.
    pub line: usize,
    pub message: String,
}

/// Decodes one JSON line into an event (SIMD-accelerated; the hot path of every stage).
pub fn decode_line(line: &[u8]) -> Result<ActivityEvent, String> {
    sonic_rs::from_slice::<ActivityEvent>(line).map_err(|e| e.to_string())
}

/// Decodes a batch message; blank lines are skipped, bad lines reported with their number.
pub fn decode(payload: &[u8]) -> impl Iterator<Item = Result<ActivityEvent, BadLine>> + '_ {
    lines(payload).map(|(i, l)| decode_line(l).map_err(|message| BadLine { line: i, message }))
}

/// The non-blank lines of a batch message with their 1-based numbers.
pub fn lines(payload: &[u8]) -> impl Iterator<Item = (usize, &[u8])> + '_ {
    payload
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| (i + 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityType;
    use proptest::prelude::*;

    fn ev(i: i64) -> ActivityEvent {
        ActivityEvent {
            id: format!("id-{i}"),
            kind: ActivityType::Command,
            timestamp: 1_700_000_000_000_000_000 + i,
            comm: "bash".into(),
            cmdline: format!("bash -c 'echo {i}\n'"),
            ..Default::default()
        }
    }

    #[test]
    fn roundtrip_and_split() {
        let events: Vec<_> = (0..100).map(ev).collect();
        let msgs = encode(&events, 2_000);
        assert!(msgs.len() > 1);
        assert!(msgs.iter().all(|m| m.len() <= 2_000));
        let back: Vec<_> = msgs
            .iter()
            .flat_map(|m| decode(m))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn bad_lines_are_numbered() {
        let mut msg = Vec::new();
        push(&mut msg, &ev(1));
        msg.extend_from_slice(b"{not json}\n\n");
        push(&mut msg, &ev(2));
        let r: Vec<_> = decode(&msg).collect();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[2].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().line, 2);
    }

    proptest! {
        #[test]
        fn any_strings_roundtrip(cmd in ".*", comm in "\\PC*", pid in any::<i64>()) {
            let mut e = ev(0);
            e.cmdline = cmd;
            e.comm = comm;
            e.pid = pid;
            let msgs = encode([&e], MAX_MESSAGE_BYTES);
            let back: Vec<_> = decode(&msgs[0]).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(back, vec![e]);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes).count();
        }
    }
}

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

/// Room to reserve for a message filled in several steps: a full message and the line that
/// overflows it, so it is never moved while it fills.
pub const MESSAGE_CAPACITY: usize = MAX_MESSAGE_BYTES + 64 * 1024;

/// Appends one event as a JSON line.
pub fn push(buf: &mut Vec<u8>, event: &ActivityEvent) {
    crate::json::write_event(buf, event);
    buf.push(b'\n');
}

/// Encodes events into messages of at most `max_bytes` each (an event larger than that gets a
/// message of its own).
pub fn encode<'a>(
    events: impl IntoIterator<Item = &'a ActivityEvent>,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut first = Vec::new();
    let mut out = append(&mut first, events, max_bytes);
    if !first.is_empty() {
        out.insert(0, first);
    }
    out
}

/// Appends events to the message `buf` while it stays within `max_bytes`; returns the
/// messages the rest fill (lines are `\n`-terminated, so a message continues where it ended).
pub fn append<'a>(
    buf: &mut Vec<u8>,
    events: impl IntoIterator<Item = &'a ActivityEvent>,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut full: Vec<Vec<u8>> = Vec::new();
    let mut events = events.into_iter();
    let mut line_estimate: usize = 1024;
    while let Some(e) = events.next() {
        // The message being filled: `buf`, then each one started after it.
        let open = match full.last_mut() {
            Some(m) => m,
            None => &mut *buf,
        };
        if open.capacity() - open.len() < line_estimate {
            // Room for the events to come at once, instead of a doubling series of copies.
            let remaining = events.size_hint().0 + 1;
            let room = max_bytes.saturating_sub(open.len());
            open.reserve(room.min(line_estimate.saturating_mul(remaining)) + line_estimate);
        }
        // Encoded in place; moved to the next message only if it overflows this one.
        let start = open.len();
        push(open, e);
        line_estimate = line_estimate.max(open.len() - start);
        if start > 0 && open.len() > max_bytes {
            let mut next = Vec::with_capacity(
                max_bytes.min(line_estimate * (events.size_hint().0 + 1)) + line_estimate,
            );
            next.extend_from_slice(&open[start..]);
            open.truncate(start);
            full.push(next);
        }
    }
    full
}

/// A line of a batch that is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct BadLine {
    /// 1-based line number within the message.
    pub line: usize,
    pub message: String,
}

/// Decodes one JSON line into an event ([`crate::json::decode`]; the hot path of every stage).
pub fn decode_line(line: &[u8]) -> Result<ActivityEvent, String> {
    crate::json::decode(line)
}

/// [`decode_line`] into `out`, a default event (a slot of the caller's vector: an event is
/// over a kilobyte, and moving it costs), or one made equal to it by
/// [`ActivityEvent::clear`], whose string buffers it then fills. On an error `out` holds a
/// partly decoded event.
pub fn decode_line_into(line: &[u8], out: &mut ActivityEvent) -> Result<(), String> {
    crate::json::decode_into(line, out)
}

/// Decodes a batch message; blank lines are skipped, bad lines reported with their number.
pub fn decode(payload: &[u8]) -> impl Iterator<Item = Result<ActivityEvent, BadLine>> + '_ {
    lines(payload).map(|(i, l)| decode_line(l).map_err(|message| BadLine { line: i, message }))
}

/// The lines of `payload` (what `payload.split(|b| *b == b'\n')` yields), found with SIMD.
pub fn split_lines(payload: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', payload);
    std::iter::from_fn(move || {
        if start > payload.len() {
            return None;
        }
        let end = ends.next().unwrap_or(payload.len());
        let line = &payload[start..end];
        start = end + 1;
        Some(line)
    })
}

/// The non-blank lines of a batch message with their 1-based numbers.
pub fn lines(payload: &[u8]) -> impl Iterator<Item = (usize, &[u8])> + '_ {
    split_lines(payload)
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| (i + 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityType;
    use proptest::prelude::*;

    #[test]
    fn split_lines_is_split_on_newlines() {
        for payload in [
            &b""[..],
            b"\n",
            b"a",
            b"a\n",
            b"\na\n\nbc\n",
            b"{\"x\":1}\n{\"y\":2}",
        ] {
            let ours: Vec<&[u8]> = split_lines(payload).collect();
            let std: Vec<&[u8]> = payload.split(|b| *b == b'\n').collect();
            assert_eq!(ours, std, "{:?}", String::from_utf8_lossy(payload));
        }
    }

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
    fn appending_in_pieces_makes_the_same_messages() {
        let events: Vec<_> = (0..100).map(ev).collect();
        let whole = encode(&events, 2_000);
        for piece in [1, 7, 33, 100] {
            let mut msgs: Vec<Vec<u8>> = Vec::new();
            for chunk in events.chunks(piece) {
                match msgs.last_mut() {
                    Some(open) => {
                        let more = append(open, chunk, 2_000);
                        msgs.extend(more);
                    }
                    None => msgs = encode(chunk, 2_000),
                }
            }
            assert_eq!(msgs, whole, "pieces of {piece}");
        }
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

    /// An event with each field set (or left default) at random from `seed` and `texts`.
    fn random_event(seed: u64, texts: Vec<String>, conf: f32) -> ActivityEvent {
        use crate::{ActivityType, Source};
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = texts.into_iter();
        let mut s = |next: &mut dyn FnMut() -> u64| {
            let v = t.next().unwrap_or_default();
            if next().is_multiple_of(4) {
                String::new()
            } else {
                v
            }
        };
        let n = |next: &mut dyn FnMut() -> u64| match next() % 4 {
            0 => 0,
            1 => (next() as i64) >> (next() % 60),
            2 => -((next() % 1000) as i64),
            _ => i64::MIN + (next() % 3) as i64,
        };
        let o = |next: &mut dyn FnMut() -> u64| (!next().is_multiple_of(3)).then(|| n(next));
        macro_rules! rand_event {
            (strings: $($s:ident),*; ints: $($i:ident),*; opts: $($o:ident),*; lists: $($l:ident),*) => {
                ActivityEvent {
                    kind: ActivityType::ALL[(next() % 4) as usize],
                    source: [Source::K8sAudit, Source::Falco, Source::Tetragon, Source::Native][(next() % 4) as usize],
                    trace_confidence: if next().is_multiple_of(3) { 0.0 } else { conf },
                    revision: if next().is_multiple_of(2) { 0 } else { next() },
                    in_init_tree: [None, Some(true), Some(false)][(next() % 3) as usize],
                    stdin: next().is_multiple_of(2),
                    $($s: s(&mut next),)*
                    $($i: n(&mut next),)*
                    $($o: o(&mut next),)*
                    $($l: (0..next() % 3).map(|_| s(&mut next)).collect(),)*
                }
            };
        }
        rand_event!(
            strings: id, tenant, trace_id, trace_link, hostname, host_mac, container_id,
                container_name, container_image, cluster, namespace, workload_kind, workload_name,
                pod, node, enrichment, comm, cmdline, exe, cwd, pcomm, username, user_login_name,
                exec_id, parent_exec_id, direction, l4protocol, client_ip, server_ip, filename,
                directory, permissions, verb, resource, sub_resource, command, container,
                user_name, user_agent, audit_id;
            ints: timestamp, received_timestamp, pid, ppid, process_start_time, client_port,
                server_port, response_code, stages_started, stages_completed;
            opts: uid, user_login_uid, tty, login_shell_id, login_shell_distance;
            lists: trace_candidates, user_groups, source_addresses, pod_labels, namespace_labels
        )
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
            prop_assert_eq!(&back, &vec![e.clone()]);
        }

        /// The topic format is serde_json's JSON of the model, byte for byte (`json` writes it
        /// by hand for speed; readers and the documented schema know serde_json's): every
        /// field set or not at random, strings with quotes, controls and non-ASCII.
        #[test]
        fn encoding_is_serde_json(
            seed in any::<u64>(),
            texts in proptest::collection::vec(
                proptest::collection::vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect::<String>()),
                80,
            ),
            conf in any::<f32>(),
        ) {
            let e = random_event(seed, texts, conf);
            let mut ours = Vec::new();
            push(&mut ours, &e);
            let mut theirs = serde_json::to_vec(&e).unwrap();
            theirs.push(b'\n');
            if conf.is_finite() {
                // And the fast path reads every field back.
                prop_assert_eq!(crate::json::read_event(&ours[..ours.len() - 1]), Some(e));
            }
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes).count();
        }
    }
}

//! The topic encoding of an [`ActivityEvent`]: exactly the JSON serde derives for it (same
//! keys, order and omitted defaults), written directly. Every stage encodes every event, and
//! the generic serializer spent most of its time re-escaping the constant keys and checking
//! each of the ~60 fields through `Serialize` calls; here keys are pre-quoted literals and
//! only values are escaped. `batch::tests::encoding_is_serde_json` checks the output is
//! serde_json's, byte for byte, over randomised events with every field set.

use crate::ActivityEvent;

mod read;
mod ser;
pub use read::{
    Field, Fields, FromValue, Raw, RawEvent, Value, decode, decode_into, mutate, read_event,
};
pub use ser::{Error, write};

/// Bytes that JSON strings must escape: `"`, `\` and the control characters.
static ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The position of the first byte JSON strings must escape (a control character, `"` or `\\`)
/// in `b` at or after `from`, eight bytes at a time (most values are short and have none).
/// The encoder uses it to skip escaping, the reader to find a string's end.
fn find_special(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // "Has a byte below n" (n <= 128; Bit Twiddling Hacks): its lowest flagged byte is exact,
    // bytes above it may be false positives, so only the lowest is used.
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * n as u64) & !v & HIGH;
    let special = |v: u64| {
        below(v, 0x20) | below(v ^ (ONES * b'"' as u64), 1) | below(v ^ (ONES * b'\\' as u64), 1)
    };
    let first = |at: usize, m: u64| (m != 0).then(|| at + (m.trailing_zeros() / 8) as usize);
    let mut at = from;
    while at + 8 <= b.len() {
        let word = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if let Some(i) = first(at, special(word)) {
            return Some(i);
        }
        at += 8;
    }
    // The tail (under eight bytes). Copying it into a padded buffer and loading that as a word
    // stalls on store forwarding, and every short value ends here: instead, the string's last
    // eight bytes as one word, with the ones already checked (or before `from`) replaced by
    // spaces, which are not special and cannot make their neighbours look special. Strings
    // shorter than that are checked a byte at a time.
    if at >= b.len() {
        return None;
    }
    if b.len() < 8 {
        return b[at..]
            .iter()
            .position(|&c| ESCAPE[c as usize])
            .map(|i| at + i);
    }
    let start = b.len() - 8;
    let word = u64::from_le_bytes(b[start..].try_into().expect("8 bytes"));
    let checked = (1u64 << ((at - start) * 8)) - 1;
    let spaces = ONES * b' ' as u64;
    first(start, special((word & !checked) | (spaces & checked)))
}

/// Whether `bytes` has anything to escape.
fn needs_escape(bytes: &[u8]) -> bool {
    find_special(bytes, 0).is_some()
}

/// Appends `s` as a JSON string, escaped as serde_json does.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn strings(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// Appends the JSON object of `e` (no newline).
pub fn write_event(out: &mut Vec<u8>, e: &ActivityEvent) {
    // `"key":` with the separator before it; the first field (`type`) is always present.
    macro_rules! key {
        ($k:literal) => {
            out.extend_from_slice(concat!(",\"", $k, "\":").as_bytes())
        };
    }
    macro_rules! s {
        ($k:literal, $v:expr) => {
            if !$v.is_empty() {
                key!($k);
                string(out, &$v);
            }
        };
    }
    macro_rules! n {
        ($k:literal, $v:expr) => {
            if $v != 0 {
                key!($k);
                int(out, $v);
            }
        };
    }
    macro_rules! opt {
        ($k:literal, $v:expr) => {
            if let Some(v) = $v {
                key!($k);
                int(out, v);
            }
        };
    }
    macro_rules! list {
        ($k:literal, $v:expr) => {
            if !$v.is_empty() {
                key!($k);
                strings(out, &$v);
            }
        };
    }
    out.push(b'{');
    if !e.id.is_empty() {
        out.extend_from_slice(b"\"id\":");
        string(out, &e.id);
        out.push(b',');
    }
    out.extend_from_slice(b"\"type\":\"");
    out.extend_from_slice(e.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"source\":\"");
    out.extend_from_slice(e.source.as_str().as_bytes());
    out.extend_from_slice(b"\",\"timestamp\":");
    int(out, e.timestamp);
    n!("receivedTimestamp", e.received_timestamp);
    s!("tenant", e.tenant);
    s!("traceId", e.trace_id);
    if e.trace_confidence != 0.0 {
        key!("traceConfidence");
        // serde_json's own float format (exponents, non-finite as null); a rare field.
        serde_json::to_writer(&mut *out, &e.trace_confidence).expect("writing to a Vec");
    }
    s!("traceLink", e.trace_link);
    list!("traceCandidates", e.trace_candidates);
    n!("revision", e.revision);
    s!("hostname", e.hostname);
    s!("host.mac", e.host_mac);
    s!("containerId", e.container_id);
    s!("container.name", e.container_name);
    s!("container.image", e.container_image);
    s!("kubernetes.cluster.name", e.cluster);
    s!("kubernetes.namespace.name", e.namespace);
    s!("kubernetes.workload.kind", e.workload_kind);
    s!("kubernetes.workload.name", e.workload_name);
    s!("kubernetes.pod.name", e.pod);
    s!("kubernetes.node.name", e.node);
    list!("kubernetes.pod.labels", e.pod_labels);
    list!("kubernetes.namespace.labels", e.namespace_labels);
    s!("enrichment", e.enrichment);
    s!("comm", e.comm);
    s!("cmdline", e.cmdline);
    s!("exe", e.exe);
    s!("cwd", e.cwd);
    n!("pid", e.pid);
    n!("ppid", e.ppid);
    s!("pcomm", e.pcomm);
    opt!("uid", e.uid);
    s!("username", e.username);
    opt!("userLoginUid", e.user_login_uid);
    s!("userLoginName", e.user_login_name);
    opt!("tty", e.tty);
    opt!("loginShellId", e.login_shell_id);
    opt!("loginShellDistance", e.login_shell_distance);
    n!("processStartTime", e.process_start_time);
    s!("execId", e.exec_id);
    s!("parentExecId", e.parent_exec_id);
    if let Some(b) = e.in_init_tree {
        key!("inInitTree");
        out.extend_from_slice(if b { b"true" } else { b"false" });
    }
    s!("direction", e.direction);
    s!("l4protocol", e.l4protocol);
    s!("clientIp", e.client_ip);
    n!("clientPort", e.client_port);
    s!("serverIp", e.server_ip);
    n!("serverPort", e.server_port);
    s!("filename", e.filename);
    s!("directory", e.directory);
    s!("permissions", e.permissions);
    s!("verb", e.verb);
    s!("resource", e.resource);
    s!("subResource", e.sub_resource);
    s!("command", e.command);
    s!("container", e.container);
    if e.stdin {
        key!("stdin");
        out.extend_from_slice(b"true");
    }
    s!("user.username", e.user_name);
    list!("user.groups", e.user_groups);
    s!("userAgent", e.user_agent);
    list!("sourceAddresses", e.source_addresses);
    s!("auditId", e.audit_id);
    n!("responseCode", e.response_code);
    n!("stages.started", e.stages_started);
    n!("stages.completed", e.stages_completed);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::{find_special, needs_escape};

    #[test]
    fn needs_escape_finds_every_special_byte_anywhere() {
        let naive = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        for len in 0..20 {
            for pos in 0..len {
                for byte in 0..=255u8 {
                    // Around the byte: plain ASCII, and UTF-8 continuation bytes.
                    for fill in [b'a', 0xa9] {
                        let mut s = vec![fill; len];
                        s[pos] = byte;
                        assert_eq!(needs_escape(&s), naive(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn find_special_finds_the_first() {
        for len in 0..20 {
            for pos in 0..len {
                for byte in [
                    0u8, 0x1f, b'"', b'\\', b' ', b'!', b'#', b'[', b']', 0x7f, 0xa9,
                ] {
                    // Around the byte: plain ASCII, the bytes one above each special one
                    // (where a borrow from a special byte below would wrongly flag them),
                    // and UTF-8 continuation bytes.
                    for fill in [b'a', b' ', b'#', b']', 0xa9] {
                        let mut s = vec![fill; len];
                        s[pos] = byte;
                        let special = |c: &u8| *c < 0x20 || *c == b'"' || *c == b'\\';
                        for from in 0..=len {
                            let want = s[from..].iter().position(special).map(|i| from + i);
                            assert_eq!(find_special(&s, from), want, "{s:?} from {from}");
                        }
                    }
                }
            }
        }
    }
}

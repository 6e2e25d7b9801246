//! Deterministic ids. The same source event always gets the same id, so a producer's retry,
//! a stage's replay after a crash or a rebalance produce rows that readers see once.
//!
//! Ids are 128-bit XXH3 hashes over length-prefixed parts, printed as 32 lowercase hex digits.
//! Parts are length-prefixed so `("ab","c")` and `("a","bc")` never collide by construction.

use xxhash_rust::xxh3::Xxh3;

/// Hashes `parts` into a 32-hex-digit id.
pub fn hash_id(parts: &[&[u8]]) -> String {
    let mut h = Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("{:032x}", h.digest128())
}

/// Id of an event from its tenant, cluster, source and the producer's natural key for it
/// (an audit id, an agent's event bytes, …).
pub fn event_id(tenant: &str, cluster: &str, source: &str, natural_key: &[u8]) -> String {
    hash_id(&[
        b"event",
        tenant.as_bytes(),
        cluster.as_bytes(),
        source.as_bytes(),
        natural_key,
    ])
}

/// Checks that a client-supplied id is usable as a key: 1..=128 printable ASCII characters.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_separated() {
        let a = event_id("t1", "c1", "native", b"x");
        assert_eq!(a, event_id("t1", "c1", "native", b"x"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, event_id("t2", "c1", "native", b"x"));
        assert_ne!(hash_id(&[b"ab", b"c"]), hash_id(&[b"a", b"bc"]));
    }

    #[test]
    fn client_ids() {
        assert!(valid_client_id("abc-123"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"x".repeat(129)));
    }
}

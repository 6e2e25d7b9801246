//! Deterministic ids. The same source event always gets the same id, so a producer's retry,
//! a stage's replay after a crash or a rebalance produce rows that readers see once.
//!
//! Ids are 128-bit XXH3 hashes over length-prefixed parts, printed as 32 lowercase hex digits.
//! Parts are length-prefixed so `("ab","c")` and `("a","bc")` never collide by construction.

/// Bytes gathered for one hash, on the stack unless they are long. XXH3 of the concatenation
/// is what its streaming form computes over the same parts, but the one-shot form costs a
/// fraction of the streaming state's set-up and buffering for the short keys hashed per event.
pub struct Gather {
    inline: [u8; Gather::INLINE],
    len: usize,
    spilled: Vec<u8>,
}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            inline: [0; Gather::INLINE],
            len: 0,
            spilled: Vec::new(),
        }
    }
}

impl Gather {
    const INLINE: usize = 256;

    /// Appends `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.len + bytes.len();
        if self.spilled.is_empty() && end <= Self::INLINE {
            self.inline[self.len..end].copy_from_slice(bytes);
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.extend_from_slice(bytes);
        }
        self.len = end;
        self
    }

    /// Appends `bytes` after its length (8 bytes, little endian), so that `("ab", "c")` and
    /// `("a", "bc")` differ.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.push(&(bytes.len() as u64).to_le_bytes()).push(bytes)
    }

    /// Appends `n` in decimal.
    pub fn decimal(&mut self, n: i64) -> &mut Self {
        self.push(itoa::Buffer::new().format(n).as_bytes())
    }

    /// What was gathered.
    pub fn bytes(&self) -> &[u8] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    pub fn xxh3_64(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.bytes())
    }

    pub fn xxh3_128(&self) -> u128 {
        xxhash_rust::xxh3::xxh3_128(self.bytes())
    }
}

/// Length-prefixed `parts` gathered for hashing.
pub fn parts(parts: &[&[u8]]) -> Gather {
    let mut g = Gather::default();
    for p in parts {
        g.part(p);
    }
    g
}

/// Hashes `parts` into a 32-hex-digit id.
pub fn hash_id(parts: &[&[u8]]) -> String {
    hex128(self::parts(parts).xxh3_128())
}

/// `format!("{:032x}", v)` without the formatting machinery.
fn hex128(v: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, d) in out.iter_mut().enumerate() {
        *d = DIGITS[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    out.iter().map(|&b| b as char).collect()
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
    fn gathered_hashes_equal_streaming_xxh3() {
        use xxhash_rust::xxh3::Xxh3;
        let streaming = |parts: &[&[u8]]| {
            let mut h = Xxh3::new();
            for p in parts {
                h.update(&(p.len() as u64).to_le_bytes());
                h.update(p);
            }
            (h.digest(), h.digest128())
        };
        let long = vec![b'x'; 1000];
        let cases: [&[&[u8]]; 5] = [
            &[],
            &[b""],
            &[b"event", b"tenant", b"cluster", b"falco", b"key"],
            &[b"a", &long, b"b"],
            &[&long[..250], b"0123456789"],
        ];
        for parts in cases {
            let g = self::parts(parts);
            assert_eq!((g.xxh3_64(), g.xxh3_128()), streaming(parts));
            assert_eq!(hash_id(parts), format!("{:032x}", streaming(parts).1));
        }
        let mut g = Gather::default();
        g.push(b"h:").decimal(-42).push(b":").decimal(i64::MAX);
        assert_eq!(g.bytes(), format!("h:{}:{}", -42, i64::MAX).as_bytes());
    }

    #[test]
    fn client_ids() {
        assert!(valid_client_id("abc-123"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"x".repeat(129)));
    }
}

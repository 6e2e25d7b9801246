//! Turning values into SQL. Every value that reaches a ClickHouse statement goes through
//! [`quote`] (string literal with escapes) or is a number formatted by Rust; identifiers come
//! only from our own column table or pass [`is_identifier`].

/// A ClickHouse string literal for `s`: single-quoted, backslash and quote escaped, control
/// bytes as `\xNN`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Whether `s` is a plain identifier safe to splice into SQL unquoted.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_everything_dangerous() {
        assert_eq!(quote("a'b"), r"'a\'b'");
        assert_eq!(quote(r"a\'b"), r"'a\\\'b'");
        assert_eq!(quote("x\n\0"), r"'x\n\0'");
        assert_eq!(quote("\u{1}"), r"'\x01'");
        assert!(is_identifier("activity_audit_t1"));
        assert!(!is_identifier("a;drop"));
        assert!(!is_identifier("1a"));
    }
}

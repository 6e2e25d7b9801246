//! RFC 3339 timestamps (as Kubernetes, Falco and Tetragon print them) to nanoseconds since
//! the epoch. Accepts any number of fractional digits (extra digits beyond ns are dropped),
//! `Z` or a `±HH:MM` offset, and `t`/space as the date-time separator.

/// Parses `s`; `None` if it is not an RFC 3339 date-time.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let sign = if c == b'+' { 1 } else { -1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_producers_print() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2018-10-26T13:38:34.867116Z"),
            Some(1_540_561_114_867_116_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2023-10-06T22:03:57.700327580Z"),
            Some(1_696_629_837_700_327_580)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-05-07T18:54:19.341081180123Z"),
            Some(1_715_108_059_341_081_180)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-05-07T20:54:19+02:00"),
            parse_rfc3339_ns("2024-05-07T18:54:19Z")
        );
        assert_eq!(
            parse_rfc3339_ns("2018-10-26T13:38:34Z"),
            Some(1_540_561_114_000_000_000)
        );
        for bad in [
            "",
            "2018-10-26",
            "2018-13-26T00:00:00Z",
            "2018-10-26T00:00:00",
            "x018-10-26T00:00:00Z",
            "2018-10-26T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }
}

/// Formats ns since epoch as RFC 3339 UTC with nanoseconds (`2024-09-01T10:00:00.000000001Z`).
pub fn format_rfc3339_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod format_tests {
    #[test]
    fn formats_and_parses_back() {
        for ns in [
            0i64,
            1_725_184_800_050_000_001,
            951_782_400_000_000_000,
            4_102_444_799_999_999_999,
        ] {
            let s = super::format_rfc3339_ns(ns);
            assert_eq!(super::parse_rfc3339_ns(&s), Some(ns), "{s}");
        }
        assert_eq!(
            super::format_rfc3339_ns(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}

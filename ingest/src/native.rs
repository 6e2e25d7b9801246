//! The native format: `ActivityEvent`s as a JSON array, as JSON lines, or one object.
//! Each item is decoded and validated on its own, so one bad item never sinks the others;
//! a rejection names the item's index and the field at fault.

use schemas::ActivityEvent;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::IngestError;

/// An item that was not accepted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// 0-based position of the item in the request.
    pub index: usize,
    pub error: String,
}

/// Splits a body into its items' raw JSON text: a JSON array, or a stream of JSON values
/// (JSON lines or one object). Returns `MalformedJson` (with line and column) only when the
/// overall structure cannot be read; for JSON lines a malformed line becomes one bad item.
pub fn split_items(body: &[u8]) -> Result<Vec<Result<&[u8], String>>, IngestError> {
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(IngestError::Empty);
    }
    if trimmed[0] == b'[' {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(malformed)?;
        return Ok(items.into_iter().map(|r| Ok(r.get().as_bytes())).collect());
    }
    // JSON lines (the common case, fast path): each line is one complete value.
    let first = schemas::batch::split_lines(body)
        .map(<[u8]>::trim_ascii)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if first.first() == Some(&b'{') && first.last() == Some(&b'}') {
        return Ok(schemas::batch::split_lines(body)
            .map(<[u8]>::trim_ascii)
            .filter(|l| !l.is_empty())
            .map(Ok)
            .collect());
    }
    // A stream of values: a single (possibly pretty-printed) object, or values back to back.
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>();
    let mut items = Vec::new();
    loop {
        match stream.next() {
            None => return Ok(items),
            Some(Ok(r)) => items.push(Ok(r.get().as_bytes())),
            Some(Err(_)) => break,
        }
    }
    // Not a clean stream: fall back to one item per line so good lines still get through.
    Ok(schemas::batch::split_lines(body)
        .filter(|l| !l.trim_ascii().is_empty())
        .map(|l| {
            serde_json::from_slice::<&RawValue>(l)
                .map(|r| r.get().as_bytes())
                .map_err(|e| format!("malformed JSON: {e}"))
        })
        .collect())
}

fn malformed(e: serde_json::Error) -> IngestError {
    IngestError::MalformedJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Parses a native body into outcomes. An item's natural key is its own bytes: a retry sends
/// the same bytes, so it gets the same id.
pub fn parse(
    body: &[u8],
    max_event_bytes: usize,
) -> Result<Vec<crate::sources::Outcome>, IngestError> {
    use crate::sources::Outcome;
    Ok(split_items(body)?
        .into_iter()
        .map(|item| match item {
            Ok(raw) => match decode_event(raw, max_event_bytes) {
                Ok(e) => Outcome::Activity(Box::new(e), raw.to_vec()),
                Err(e) => Outcome::Rejected(e),
            },
            Err(e) => Outcome::Rejected(e),
        })
        .collect())
}

/// Decodes and validates one native item; the error names the field at fault.
pub fn decode_event(raw: &[u8], max_event_bytes: usize) -> Result<ActivityEvent, String> {
    if raw.len() > max_event_bytes {
        return Err(format!(
            "event is {} bytes, more than the {max_event_bytes}-byte limit",
            raw.len()
        ));
    }
    // Fast path; on failure, decode again with path tracking to name the field at fault.
    let mut e: ActivityEvent = match schemas::batch::decode_line(raw) {
        Ok(e) => e,
        Err(_) => {
            let de = &mut serde_json::Deserializer::from_slice(raw);
            serde_path_to_error::deserialize::<_, ActivityEvent>(de).map_err(|err| {
                let path = err.path().to_string();
                if path == "." || path.is_empty() {
                    err.inner().to_string()
                } else {
                    format!("field `{path}`: {}", err.inner())
                }
            })?
        }
    };
    check_client_id(&e)?;
    e.normalize();
    e.validate().map_err(|v| v.to_string())?;
    Ok(e)
}

/// A client may name its events (`id`), within limits; an empty id gets the deterministic one.
pub fn check_client_id(e: &ActivityEvent) -> Result<(), String> {
    if !e.id.is_empty() && !schemas::id::valid_client_id(&e.id) {
        return Err("field `id`: must be 1..=128 printable ASCII characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"type":"command","timestamp":1700000000000000000,"comm":"bash"}"#;

    #[test]
    fn arrays_lines_and_single_objects() {
        let arr = format!("[{OK},{OK}]");
        assert_eq!(split_items(arr.as_bytes()).unwrap().len(), 2);
        let lines = format!("{OK}\n{OK}\n\n{OK}\n");
        assert_eq!(split_items(lines.as_bytes()).unwrap().len(), 3);
        let pretty = "{\n  \"type\": \"command\",\n  \"comm\": \"sh\"\n}";
        assert_eq!(split_items(pretty.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn a_bad_line_is_one_bad_item() {
        use crate::sources::Outcome;
        let lines = format!("{OK}\n{{broken\n{OK}\n");
        let items = parse(lines.as_bytes(), 1 << 20).unwrap();
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0], Outcome::Activity(..)));
        assert!(matches!(&items[1], Outcome::Rejected(m) if !m.is_empty()));
        assert!(matches!(items[2], Outcome::Activity(..)));
        // Not JSON lines at all: a stream with a broken value still keeps the good ones.
        let stream = format!("{OK} {{broken\n{OK}\n");
        assert!(
            split_items(stream.as_bytes())
                .unwrap()
                .iter()
                .any(Result::is_err)
        );
    }

    #[test]
    fn a_broken_array_names_the_position() {
        let err = split_items(b"[{\"a\":1},\n{\"b\":]").unwrap_err();
        assert!(
            matches!(err, IngestError::MalformedJson { line: 2, .. }),
            "{err}"
        );
        assert!(matches!(
            split_items(b"  ").unwrap_err(),
            IngestError::Empty
        ));
    }

    #[test]
    fn decode_errors_name_the_field() {
        let e = decode_event(
            br#"{"type":"command","timestamp":1700000000000000000,"pid":"x"}"#,
            1 << 20,
        )
        .unwrap_err();
        assert!(e.contains("field `pid`"), "{e}");
        let e = decode_event(br#"{"type":"command","timestamp":1}"#, 1 << 20).unwrap_err();
        assert!(e.contains("timestamp"), "{e}");
        let e = decode_event(OK.as_bytes(), 10).unwrap_err();
        assert!(e.contains("limit"), "{e}");
        assert!(decode_event(OK.as_bytes(), 1 << 20).is_ok());
    }
}

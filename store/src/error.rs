//! Store errors. Each knows whether retrying can help: a server that is down or overloaded
//! is retried with backoff; data the server rejects as malformed is not (it is dead-lettered).

/// ClickHouse error codes meaning "this data is bad", never fixed by retrying.
const DATA_ERROR_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse unreachable: {0}")]
    Unavailable(String),
    #[error("clickhouse error {code}: {message}")]
    Server { code: u32, message: String },
    #[error("clickhouse answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("unexpected clickhouse response: {0}")]
    Decode(String),
}

impl StoreError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Server { code, .. } => !DATA_ERROR_CODES.contains(code),
            StoreError::Http { status, .. } => *status >= 500 || *status == 429,
            StoreError::Decode(_) => false,
        }
    }

    /// Whether the server rejected the data itself (so splitting the batch can isolate it).
    pub fn is_bad_data(&self) -> bool {
        matches!(self, StoreError::Server { code, .. } if DATA_ERROR_CODES.contains(code))
    }

    /// Parses a ClickHouse error body (`Code: 27, e.displayText() = DB::Exception: …`).
    pub fn from_body(status: u16, body: &str) -> Self {
        let body = body.trim();
        if let Some(rest) = body.strip_prefix("Code: ") {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(code) = digits.parse() {
                let mut message = body.to_string();
                message.truncate(2048);
                return StoreError::Server { code, message };
            }
        }
        let mut message = body.to_string();
        message.truncate(2048);
        StoreError::Http { status, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_errors() {
        let e = StoreError::from_body(
            500,
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input",
        );
        assert!(matches!(e, StoreError::Server { code: 27, .. }));
        assert!(e.is_bad_data() && !e.is_retryable());
        let e = StoreError::from_body(
            500,
            "Code: 252, e.displayText() = DB::Exception: Too many parts",
        );
        assert!(e.is_retryable() && !e.is_bad_data());
        let e = StoreError::from_body(404, "Code: 60, Table default.x doesn't exist");
        assert!(
            e.is_retryable(),
            "a missing table is an operator problem: keep the data"
        );
        assert!(StoreError::from_body(502, "bad gateway").is_retryable());
    }
}

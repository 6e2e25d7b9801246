//! Ingest errors and the HTTP answers they map to. Every answer names the problem.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("missing or malformed Authorization header: expected `Bearer <token>`")]
    MissingToken,
    #[error("unknown token")]
    UnknownToken,
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("unsupported Content-Encoding {0:?}: use gzip, zstd or identity")]
    UnsupportedEncoding(String),
    #[error("body is not valid {encoding}: {message}")]
    BadEncoding {
        encoding: &'static str,
        message: String,
    },
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    MalformedJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("no events in the request body")]
    Empty,
    #[error("every event was rejected")]
    AllRejected,
    #[error("kafka unavailable, nothing from this request is confirmed; retry later: {0}")]
    Unavailable(String),
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::MissingToken | IngestError::UnknownToken => StatusCode::UNAUTHORIZED,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BadEncoding { .. }
            | IngestError::MalformedJson { .. }
            | IngestError::Empty
            | IngestError::AllRejected => StatusCode::BAD_REQUEST,
            IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the client should retry the same request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, IngestError::Unavailable(_))
    }
}

/// An error with optional per-item details and a retry hint.
#[derive(Debug)]
pub struct ErrorResponse {
    pub error: IngestError,
    pub rejected: Vec<crate::native::Rejected>,
    pub retry_after_secs: u32,
}

impl From<IngestError> for ErrorResponse {
    fn from(error: IngestError) -> Self {
        ErrorResponse {
            error,
            rejected: Vec::new(),
            retry_after_secs: 5,
        }
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let body = serde_json::json!({
            "error": self.error.to_string(),
            "retryable": self.error.is_retryable(),
            "rejected": self.rejected,
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(self.retry_after_secs));
        }
        resp
    }
}

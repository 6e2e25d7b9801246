//! Errors of the query API. Each knows its HTTP status and gRPC code, and carries a message
//! safe to show the caller (storage details stay in the logs).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemas::filter::FilterError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials, but not for this data.
    #[error("{0}")]
    Forbidden(String),
    /// A parameter is wrong; the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// A filter or scope does not parse.
    #[error("{param}: {error}")]
    Filter {
        param: &'static str,
        error: FilterError,
    },
    #[error("{0}")]
    NotFound(String),
    /// The entry belongs to no single session: these are the candidates.
    #[error("{message}")]
    Ambiguous {
        message: String,
        candidates: Vec<String>,
        reason: String,
    },
    /// ClickHouse failed or is unreachable; retryable.
    #[error("storage unavailable")]
    Storage(#[from] store::StoreError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) | ApiError::Filter { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Ambiguous { .. } => StatusCode::CONFLICT,
            ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether asking again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, ApiError::Storage(_))
    }

    /// The JSON body of the HTTP answer.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.to_string() });
        match self {
            ApiError::Filter { param, error } => {
                body["parameter"] = (*param).into();
                body["position"] = error.position.into();
                body["message"] = error.message.clone().into();
            }
            ApiError::Ambiguous {
                candidates, reason, ..
            } => {
                body["candidates"] = candidates.clone().into();
                body["reason"] = reason.clone().into();
            }
            _ => {}
        }
        body
    }

    fn log(&self) {
        if let ApiError::Storage(e) = self {
            tracing::error!(error = %e, "query failed");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        (self.status(), axum::Json(self.body())).into_response()
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        e.log();
        let msg = e.to_string();
        match e {
            ApiError::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            ApiError::Forbidden(_) => tonic::Status::permission_denied(msg),
            ApiError::BadRequest(_) | ApiError::Filter { .. } => {
                tonic::Status::invalid_argument(msg)
            }
            ApiError::NotFound(_) => tonic::Status::not_found(msg),
            ApiError::Ambiguous { candidates, .. } => tonic::Status::failed_precondition(format!(
                "{msg} (candidates: {})",
                candidates.join(", ")
            )),
            ApiError::Storage(_) => tonic::Status::unavailable(msg),
        }
    }
}

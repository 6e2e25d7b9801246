//! The gRPC `Ingest` service on 9411 (`schemas/proto/activity_audit.proto`): native event
//! batches as protobuf, with the same guarantees as `POST /v1/events`. The bearer token in
//! the `authorization` metadata decides tenant and cluster; the answer comes only after Kafka
//! acknowledged every accepted event; rejected items are listed (and dead-lettered), never
//! silently dropped. Each item's id, when the client gave none, derives from its own protobuf
//! encoding, so a retried request gets the same ids.
//!
//! | HTTP answer | gRPC status |
//! |---|---|
//! | 401 | `UNAUTHENTICATED` |
//! | 413 (message over `max_body_bytes`) | `OUT_OF_RANGE` (tonic's decoder limit, naming both sizes) |
//! | 400, every item rejected | `INVALID_ARGUMENT`, naming each item |
//! | 503 | `UNAVAILABLE`, with `retry-after` metadata |

use crate::accept::{AppState, accept};
use crate::error::{ErrorResponse, IngestError};
use crate::metrics::BYTES;
use crate::native::check_client_id;
use crate::sources::Outcome;
use prost::Message;
use schemas::Source;
use schemas::grpc::{authorization, from_proto, proto};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

pub struct IngestService {
    pub state: AppState,
}

impl IngestService {
    /// The tonic server for this service, with the body limit and compression of HTTP ingest.
    pub fn server(state: AppState) -> proto::ingest_server::IngestServer<Self> {
        let limit = state.config().max_body_bytes;
        proto::ingest_server::IngestServer::new(IngestService { state })
            .max_decoding_message_size(limit)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
    }
}

/// One protobuf item: its natural key (its own encoding) and the event, or why not.
fn outcome(item: proto::ActivityEvent, max_event_bytes: usize) -> Outcome {
    let key = item.encode_to_vec();
    if key.len() > max_event_bytes {
        return Outcome::Rejected(format!(
            "event is {} bytes, more than the {max_event_bytes}-byte limit",
            key.len()
        ));
    }
    match from_proto(item).and_then(|e| check_client_id(&e).map(|()| e)) {
        Ok(e) => Outcome::Activity(Box::new(e), key),
        Err(why) => Outcome::Rejected(why),
    }
}

fn status(e: ErrorResponse) -> Status {
    let msg = if e.rejected.is_empty() {
        e.error.to_string()
    } else {
        let items: Vec<String> = e
            .rejected
            .iter()
            .map(|r| format!("item {}: {}", r.index, r.error))
            .collect();
        format!("{}: {}", e.error, items.join("; "))
    };
    match e.error {
        IngestError::MissingToken | IngestError::UnknownToken => Status::unauthenticated(msg),
        IngestError::TooLarge { .. } => Status::out_of_range(msg),
        IngestError::Unavailable(_) => {
            let mut s = Status::unavailable(msg);
            if let Ok(v) = e.retry_after_secs.to_string().parse() {
                s.metadata_mut().insert("retry-after", v);
            }
            s
        }
        _ => Status::invalid_argument(msg),
    }
}

#[tonic::async_trait]
impl proto::ingest_server::Ingest for IngestService {
    async fn send(
        &self,
        req: Request<proto::SendRequest>,
    ) -> Result<Response<proto::SendResponse>, Status> {
        let st = &self.state;
        let who = st
            .authenticate(authorization(&req))
            .map_err(|e| status(e.into()))?;
        let body = req.into_inner();
        if body.events.is_empty() {
            return Err(status(IngestError::Empty.into()));
        }
        let raw = body.encode_to_vec();
        BYTES
            .with_label_values(&[Source::Native.as_str(), &who.tenant])
            .inc_by(raw.len() as u64);
        let max = st.config().max_event_bytes;
        let outcomes = body.events.into_iter().map(|i| outcome(i, max)).collect();
        let done = accept(st, &who, Source::Native, "grpc", outcomes, &raw)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::SendResponse {
            accepted: done.accepted as u32,
            dropped: done.dropped as u32,
            rejected: done
                .rejected
                .into_iter()
                .map(|r| proto::Rejected {
                    index: r.index as u32,
                    error: r.error,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_keyed_by_their_encoding_and_checked() {
        let item = proto::ActivityEvent {
            r#type: proto::ActivityType::Command as i32,
            timestamp: 1_700_000_000_000_000_000,
            comm: "bash".into(),
            ..Default::default()
        };
        let Outcome::Activity(e, key) = outcome(item.clone(), 1024) else {
            panic!("a valid item is accepted")
        };
        assert_eq!(e.comm, "bash");
        assert_eq!(key, item.encode_to_vec(), "the same item, the same key");
        let big = proto::ActivityEvent {
            cmdline: "x".repeat(2000),
            ..item.clone()
        };
        assert!(matches!(outcome(big, 1024), Outcome::Rejected(m) if m.contains("limit")));
        let bad_type = proto::ActivityEvent {
            r#type: 42,
            ..item.clone()
        };
        assert!(matches!(outcome(bad_type, 1024), Outcome::Rejected(m) if m.contains("`type`")));
        let bad_id = proto::ActivityEvent {
            id: "\u{1}".into(),
            ..item
        };
        assert!(matches!(outcome(bad_id, 1024), Outcome::Rejected(m) if m.contains("`id`")));
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        let unauth = status(IngestError::UnknownToken.into());
        assert_eq!(unauth.code(), tonic::Code::Unauthenticated);
        let down = status(ErrorResponse {
            error: IngestError::Unavailable("broker down".into()),
            rejected: vec![],
            retry_after_secs: 7,
        });
        assert_eq!(down.code(), tonic::Code::Unavailable);
        assert_eq!(down.metadata().get("retry-after").unwrap(), "7");
        let all = status(ErrorResponse {
            error: IngestError::AllRejected,
            rejected: vec![crate::native::Rejected {
                index: 3,
                error: "field `timestamp`: required".into(),
            }],
            retry_after_secs: 5,
        });
        assert_eq!(all.code(), tonic::Code::InvalidArgument);
        assert!(all.message().contains("item 3: field `timestamp`"));
    }
}

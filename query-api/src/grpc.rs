//! The gRPC `Query` service on 9421: the operations of [`crate::query`] with protobuf
//! messages (`schemas/proto/activity_audit.proto`). Authorization is the same bearer token, in
//! the `authorization` metadata; errors map to gRPC codes in [`crate::error`].

use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::AppState;
use crate::query::{self, EntriesRequest, Selection};
use futures::{Stream, StreamExt};
use schemas::grpc::{activity_type, authorization, proto, to_proto};
use schemas::{ActivityType, TraceRecord};
use std::pin::Pin;
use tonic::{Request, Response, Status};

pub struct QueryService {
    pub state: AppState,
}

impl QueryService {
    fn principal<T>(&self, req: &Request<T>) -> Result<Principal, ApiError> {
        self.state.auth.authenticate(authorization(req))
    }
}

fn selection(s: Option<proto::Selection>) -> Result<Selection, ApiError> {
    let s = s.unwrap_or_default();
    let mut types = Vec::new();
    for t in &s.types {
        let t = proto::ActivityType::try_from(*t)
            .ok()
            .and_then(|t| {
                ActivityType::ALL
                    .into_iter()
                    .find(|x| activity_type(*x) == t)
            })
            .ok_or_else(|| ApiError::BadRequest(format!("types: unknown data source {t}")))?;
        types.push(t.as_str().to_string());
    }
    let nonzero = |v: i64| (v != 0).then_some(v);
    let text = |v: &str| (!v.is_empty()).then(|| v.to_string());
    Selection::parse(
        nonzero(s.from),
        nonzero(s.to),
        &types,
        text(&s.filter).as_deref(),
        text(&s.scope).as_deref(),
    )
}

fn trace_record(r: TraceRecord) -> proto::TraceRecord {
    proto::TraceRecord {
        trace_id: r.trace_id,
        kind: r.kind,
        origin_id: r.origin_id,
        user: r.user,
        groups: r.groups,
        source_addresses: r.source_addresses,
        user_agent: r.user_agent,
        cluster: r.cluster,
        namespace: r.namespace,
        pod: r.pod,
        container: r.container,
        container_id: r.container_id,
        hostname: r.hostname,
        command: r.command,
        start: r.start,
        end: r.end,
        commands: r.commands,
        connections: r.connections,
        fileaccesses: r.fileaccesses,
        ambiguous: r.ambiguous,
        confidence: r.confidence,
        reason: r.reason,
        revision: r.revision,
    }
}

fn group_node(g: query::GroupNode) -> proto::GroupNode {
    proto::GroupNode {
        level: g.level.into(),
        name: g.name,
        kind: g.kind,
        count: g.count,
        children: g.children.into_iter().map(group_node).collect(),
    }
}

type TailStream = Pin<Box<dyn Stream<Item = Result<proto::ActivityEvent, Status>> + Send>>;

#[tonic::async_trait]
impl proto::query_server::Query for QueryService {
    async fn list_entries(
        &self,
        req: Request<proto::ListEntriesRequest>,
    ) -> Result<Response<proto::ListEntriesResponse>, Status> {
        let who = self.principal(&req)?;
        let r = req.into_inner();
        let page = query::entries(
            &self.state.ch,
            &who,
            EntriesRequest {
                selection: selection(r.selection)?,
                cursor: (!r.cursor.is_empty()).then_some(r.cursor),
                limit: (r.limit != 0).then_some(r.limit),
            },
        )
        .await?;
        Ok(Response::new(proto::ListEntriesResponse {
            data: page.data.iter().map(to_proto).collect(),
            page: Some(proto::Page {
                prev: page.page.prev.unwrap_or_default(),
                next: page.page.next.unwrap_or_default(),
                total: page.page.total,
                total_exact: page.page.total_exact,
            }),
        }))
    }

    async fn get_entry(
        &self,
        req: Request<proto::GetEntryRequest>,
    ) -> Result<Response<proto::ActivityEvent>, Status> {
        let who = self.principal(&req)?;
        let e = query::entry(&self.state.ch, &who, &req.get_ref().id).await?;
        Ok(Response::new(to_proto(&e)))
    }

    async fn histogram(
        &self,
        req: Request<proto::HistogramRequest>,
    ) -> Result<Response<proto::HistogramResponse>, Status> {
        let who = self.principal(&req)?;
        let r = req.into_inner();
        let bucket = (r.bucket_ns != 0).then_some(r.bucket_ns);
        let h = query::histogram(&self.state.ch, &who, &selection(r.selection)?, bucket).await?;
        let buckets = h
            .buckets
            .iter()
            .enumerate()
            .map(|(i, start)| proto::HistogramBucket {
                start: *start,
                counts: h.counts.iter().map(|(t, v)| (t.clone(), v[i])).collect(),
            })
            .collect();
        Ok(Response::new(proto::HistogramResponse {
            from: h.from,
            to: h.to,
            bucket_ns: h.bucket,
            buckets,
            totals: h.totals.into_iter().collect(),
        }))
    }

    async fn trace(
        &self,
        req: Request<proto::GetEntryRequest>,
    ) -> Result<Response<proto::TraceResponse>, Status> {
        let who = self.principal(&req)?;
        let t = query::trace(&self.state.ch, &who, &req.get_ref().id).await?;
        Ok(Response::new(proto::TraceResponse {
            trace: Some(trace_record(t.trace)),
            entries: t
                .entries
                .iter()
                .map(|e| proto::TraceEntry {
                    entry: Some(to_proto(&e.entry)),
                    parent_entry_id: e.parent_entry_id.clone().unwrap_or_default(),
                })
                .collect(),
            ambiguous: t.ambiguous.iter().map(to_proto).collect(),
            truncated: t.truncated,
        }))
    }

    async fn groups(
        &self,
        req: Request<proto::Selection>,
    ) -> Result<Response<proto::GroupsResponse>, Status> {
        let who = self.principal(&req)?;
        let g = query::groups(&self.state.ch, &who, &selection(Some(req.into_inner()))?).await?;
        Ok(Response::new(proto::GroupsResponse {
            clusters: g.clusters.into_iter().map(group_node).collect(),
            hosts: g.hosts.into_iter().map(group_node).collect(),
        }))
    }

    async fn values(
        &self,
        req: Request<proto::ValuesRequest>,
    ) -> Result<Response<proto::ValuesResponse>, Status> {
        let who = self.principal(&req)?;
        let r = req.into_inner();
        let v = query::values(
            &self.state.ch,
            &who,
            &selection(r.selection)?,
            &r.attribute,
            &r.prefix,
            (r.limit != 0).then_some(r.limit),
        )
        .await?;
        Ok(Response::new(proto::ValuesResponse {
            values: v
                .into_iter()
                .map(|v| proto::ValueCount {
                    value: v.value,
                    count: v.count,
                })
                .collect(),
        }))
    }

    async fn supported_filters(
        &self,
        req: Request<proto::SupportedFiltersRequest>,
    ) -> Result<Response<proto::SupportedFiltersResponse>, Status> {
        self.principal(&req)?;
        let attributes = query::supported_filters()
            .into_iter()
            .map(|a| proto::AttributeInfo {
                name: a.attribute.name.into(),
                r#type: a.attribute.value_type.as_str().into(),
                operators: a.operators.iter().map(|o| o.to_string()).collect(),
                types: a
                    .attribute
                    .applies_to
                    .iter()
                    .map(|t| t.as_str().to_string())
                    .collect(),
                description: a.attribute.description.into(),
            })
            .collect();
        Ok(Response::new(proto::SupportedFiltersResponse {
            attributes,
        }))
    }

    type TailStream = TailStream;

    async fn tail(&self, req: Request<proto::Selection>) -> Result<Response<TailStream>, Status> {
        let who = self.principal(&req)?;
        let tail = query::Tail::new(who, selection(Some(req.into_inner()))?)?;
        let stop = self.state.shutdown.clone().cancelled_owned();
        let s = query::live(self.state.ch.clone(), tail, self.state.stream_poll)
            .map(|r| r.map(|e| to_proto(&e)).map_err(Status::from))
            .take_until(stop);
        Ok(Response::new(Box::pin(s)))
    }
}

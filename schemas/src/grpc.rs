//! The gRPC API (`proto/activity_audit.proto`, feature `grpc`): the generated messages and
//! services, and the one mapping between [`ActivityEvent`] and its protobuf form, used by
//! ingest's `Ingest` service (protobuf → model) and the query API's `Query` service
//! (model → protobuf). Every model field has a protobuf field of the same meaning
//! (`tests/proto_matches_model.rs`); the two conversions list them once, below.

use crate::{ActivityEvent, ActivityType, Source};

/// Generated code of package `activity_audit.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("activity_audit.v1");
}

/// The protobuf enum value of a data source.
pub fn activity_type(t: ActivityType) -> proto::ActivityType {
    match t {
        ActivityType::Command => proto::ActivityType::Command,
        ActivityType::Connection => proto::ActivityType::Connection,
        ActivityType::Fileaccess => proto::ActivityType::Fileaccess,
        ActivityType::Kubernetes => proto::ActivityType::Kubernetes,
    }
}

/// The data source of a protobuf enum value; `UNSPECIFIED` is the model's default, as a
/// missing `type` is in JSON. `None` for a number the schema does not define.
fn activity_type_from(n: i32) -> Option<ActivityType> {
    Some(match proto::ActivityType::try_from(n).ok()? {
        proto::ActivityType::Unspecified => ActivityType::default(),
        proto::ActivityType::Command => ActivityType::Command,
        proto::ActivityType::Connection => ActivityType::Connection,
        proto::ActivityType::Fileaccess => ActivityType::Fileaccess,
        proto::ActivityType::Kubernetes => ActivityType::Kubernetes,
    })
}

/// The `authorization` metadata of a gRPC request (`Bearer <token>`), as the services read it.
pub fn authorization<T>(req: &tonic::Request<T>) -> Option<&str> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

fn source(s: Source) -> proto::Source {
    match s {
        Source::K8sAudit => proto::Source::K8sAudit,
        Source::Falco => proto::Source::Falco,
        Source::Tetragon => proto::Source::Tetragon,
        Source::Native => proto::Source::Native,
    }
}

fn source_from(n: i32) -> Option<Source> {
    Some(match proto::Source::try_from(n).ok()? {
        proto::Source::Unspecified | proto::Source::Native => Source::Native,
        proto::Source::K8sAudit => Source::K8sAudit,
        proto::Source::Falco => Source::Falco,
        proto::Source::Tetragon => Source::Tetragon,
    })
}

/// Both conversions over the fields that have the same name and type on both sides.
macro_rules! same_fields {
    ($($f:ident),* $(,)?) => {
        /// The protobuf form of an event (every attribute).
        pub fn to_proto(e: &ActivityEvent) -> proto::ActivityEvent {
            proto::ActivityEvent {
                r#type: activity_type(e.kind) as i32,
                source: source(e.source) as i32,
                user_username: e.user_name.clone(),
                $($f: e.$f.clone(),)*
            }
        }

        /// The model form of a protobuf event; the error names the field at fault (an enum
        /// number the schema does not define).
        pub fn from_proto(p: proto::ActivityEvent) -> Result<ActivityEvent, String> {
            let kind = activity_type_from(p.r#type)
                .ok_or_else(|| format!("field `type`: {} is not a data source", p.r#type))?;
            let source = source_from(p.source)
                .ok_or_else(|| format!("field `source`: {} is not a source", p.source))?;
            Ok(ActivityEvent {
                kind,
                source,
                user_name: p.user_username,
                $($f: p.$f,)*
            })
        }
    };
}

same_fields!(
    id,
    timestamp,
    received_timestamp,
    tenant,
    trace_id,
    hostname,
    host_mac,
    container_id,
    container_name,
    container_image,
    cluster,
    namespace,
    workload_kind,
    workload_name,
    pod,
    node,
    comm,
    cmdline,
    exe,
    cwd,
    pid,
    ppid,
    pcomm,
    uid,
    username,
    user_login_uid,
    user_login_name,
    tty,
    login_shell_id,
    login_shell_distance,
    process_start_time,
    exec_id,
    parent_exec_id,
    in_init_tree,
    direction,
    l4protocol,
    client_ip,
    client_port,
    server_ip,
    server_port,
    filename,
    directory,
    permissions,
    verb,
    resource,
    sub_resource,
    command,
    container,
    stdin,
    user_groups,
    user_agent,
    source_addresses,
    audit_id,
    response_code,
    stages_started,
    stages_completed,
    trace_confidence,
    trace_link,
    trace_candidates,
    revision,
    enrichment,
    pod_labels,
    namespace_labels,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_protobuf() {
        let e = ActivityEvent {
            id: "x".into(),
            kind: ActivityType::Kubernetes,
            source: Source::K8sAudit,
            timestamp: 7,
            user_name: "alice".into(),
            user_groups: vec!["dev".into()],
            uid: Some(0),
            in_init_tree: Some(false),
            trace_confidence: 0.5,
            revision: 3,
            ..Default::default()
        };
        assert_eq!(from_proto(to_proto(&e)).unwrap(), e);
        let bad = proto::ActivityEvent {
            r#type: 99,
            ..Default::default()
        };
        assert!(from_proto(bad).unwrap_err().contains("`type`"));
        let unspecified = proto::ActivityEvent::default();
        assert_eq!(from_proto(unspecified).unwrap().kind, ActivityType::Command);
    }
}

//! Kubernetes API-server audit events, as the webhook backend and log shippers send them.
//!
//! Accepted shapes: `EventList` (`audit.k8s.io/v1`, `v1beta1`), a bare `Event`, events with no
//! `apiVersion`, arrays and JSON lines of those, AKS diagnostic records (the event as a JSON
//! string in `properties.log`, alone or in `records[]`) and GKE Cloud Audit Log entries
//! (`protoPayload`).
//!
//! Activity: `pods/exec` and `pods/attach` (verb `create`, or `get` for kubectl >= 1.30 over
//! WebSocket) and `kubectl run` (`create pods` with `fieldManager=kubectl-run`). Every other
//! event is valid but not activity. The stages of one request (`ResponseStarted`,
//! `ResponseComplete`) share the event id (derived from `auditID`) and its timestamp (the
//! request's receive time), so they are one entry downstream; each carries the stage time it
//! knows (`stages.started` or `stages.completed`).

use super::{Outcome, int_of, str_of, values};
use crate::error::IngestError;
use schemas::time::parse_rfc3339_ns;
use schemas::{ActivityEvent, ActivityType, Source};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UserInfo {
    username: Option<String>,
    groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ObjectRef {
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Status {
    code: Option<i64>,
}

/// The fields of `audit.k8s.io` `Event` we read (v1 and v1beta1 agree on them).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditEvent {
    kind: Option<String>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(rename = "auditID")]
    audit_id: Option<String>,
    stage: Option<String>,
    #[serde(rename = "requestURI")]
    request_uri: Option<String>,
    verb: Option<String>,
    user: Option<UserInfo>,
    #[serde(rename = "sourceIPs")]
    source_ips: Option<Vec<String>>,
    #[serde(rename = "userAgent")]
    user_agent: Option<String>,
    #[serde(rename = "objectRef")]
    object_ref: Option<ObjectRef>,
    #[serde(rename = "responseStatus")]
    response_status: Option<Status>,
    #[serde(rename = "requestObject")]
    request_object: Option<Value>,
    #[serde(rename = "responseObject")]
    response_object: Option<Value>,
    #[serde(rename = "requestReceivedTimestamp")]
    request_received_timestamp: Option<String>,
    #[serde(rename = "stageTimestamp")]
    stage_timestamp: Option<String>,
    timestamp: Option<String>,
}

/// Parses a webhook body into one outcome per audit event.
pub fn parse(body: &[u8]) -> Result<Vec<Outcome>, IngestError> {
    let mut out = Vec::new();
    for (_, v) in values(body)? {
        match v {
            Ok(v) => unwrap_value(v, &mut out),
            Err(e) => out.push(Outcome::Rejected(e)),
        }
    }
    Ok(out)
}

/// Unwraps lists and cloud wrappers down to events.
fn unwrap_value(v: Value, out: &mut Vec<Outcome>) {
    let mut m = match v {
        Value::Array(items) => return items.into_iter().for_each(|i| unwrap_value(i, out)),
        Value::Object(m) => m,
        other => return out.push(event(other)),
    };
    if m.get("kind").and_then(Value::as_str) == Some("EventList") {
        match m.remove("items") {
            Some(Value::Array(items)) => items.into_iter().for_each(|i| unwrap_value(i, out)),
            Some(Value::Null) | None => {}
            Some(_) => out.push(Outcome::Rejected(
                "field `items`: an EventList's items must be an array".into(),
            )),
        }
    } else if m.get("records").is_some_and(Value::is_array) {
        if let Some(Value::Array(records)) = m.remove("records") {
            records.into_iter().for_each(|r| unwrap_value(r, out));
        }
    } else if m.contains_key("properties") && !m.contains_key("kind") {
        // AKS: {"category":"kube-audit","properties":{"log":"<Event JSON>"}}
        match m
            .remove("properties")
            .and_then(|mut p| p.get_mut("log").map(Value::take))
        {
            Some(Value::String(log)) => match serde_json::from_str::<Value>(&log) {
                Ok(inner) => unwrap_value(inner, out),
                Err(e) => out.push(Outcome::Rejected(format!(
                    "field `properties.log`: not an audit event: {e}"
                ))),
            },
            Some(inner @ Value::Object(_)) => unwrap_value(inner, out),
            _ => out.push(Outcome::Rejected(
                "field `properties.log`: missing (AKS record without an audit event)".into(),
            )),
        }
    } else if m.contains_key("protoPayload") {
        out.push(gke(&Value::Object(m)));
    } else {
        out.push(event(Value::Object(m)));
    }
}

fn event(v: Value) -> Outcome {
    if !v.is_object() {
        return Outcome::Rejected(format!(
            "expected an audit Event object, got {}",
            kind_of(&v)
        ));
    }
    let e: AuditEvent = match serde_path_to_error::deserialize(&v) {
        Ok(e) => e,
        Err(err) => {
            return Outcome::Rejected(format!("field `{}`: {}", err.path(), err.inner()));
        }
    };
    if let Some(k) = &e.kind
        && k != "Event"
    {
        return Outcome::Rejected(format!("field `kind`: expected \"Event\", got {k:?}"));
    }
    if let Some(api) = &e.api_version
        && !api.starts_with("audit.k8s.io/")
    {
        return Outcome::Rejected(format!(
            "field `apiVersion`: expected audit.k8s.io/v1 or v1beta1, got {api:?}"
        ));
    }
    let Some(verb) = e.verb.clone() else {
        return Outcome::Rejected("field `verb`: missing".into());
    };
    let obj = e.object_ref.as_ref();
    let resource = obj.and_then(|o| o.resource.as_deref()).unwrap_or_default();
    let sub = obj
        .and_then(|o| o.subresource.as_deref())
        .unwrap_or_default();
    let uri = e.request_uri.clone().unwrap_or_default();
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let exec_like = resource == "pods"
        && matches!(sub, "exec" | "attach")
        && matches!(verb.as_str(), "create" | "get");
    let kubectl_run = resource == "pods"
        && sub.is_empty()
        && verb == "create"
        && param("fieldManager") == Some("kubectl-run");
    if !exec_like && !kubectl_run {
        return Outcome::NotActivity;
    }
    let Some(received) = e
        .request_received_timestamp
        .as_deref()
        .or(e.stage_timestamp.as_deref())
        .or(e.timestamp.as_deref())
    else {
        return Outcome::Rejected("field `requestReceivedTimestamp`: missing".into());
    };
    let Some(ts) = parse_rfc3339_ns(received) else {
        return Outcome::Rejected(format!(
            "field `requestReceivedTimestamp`: {received:?} is not an RFC 3339 time"
        ));
    };
    let stage_ts = e
        .stage_timestamp
        .as_deref()
        .and_then(parse_rfc3339_ns)
        .unwrap_or(0);
    let mut a = ActivityEvent {
        kind: ActivityType::Kubernetes,
        source: Source::K8sAudit,
        timestamp: ts,
        verb,
        resource: resource.to_string(),
        sub_resource: sub.to_string(),
        namespace: obj.and_then(|o| o.namespace.clone()).unwrap_or_default(),
        pod: obj.and_then(|o| o.name.clone()).unwrap_or_default(),
        user_name: e
            .user
            .as_ref()
            .and_then(|u| u.username.clone())
            .unwrap_or_default(),
        user_groups: e
            .user
            .as_ref()
            .and_then(|u| u.groups.clone())
            .unwrap_or_default(),
        user_agent: e.user_agent.clone().unwrap_or_default(),
        source_addresses: e.source_ips.clone().unwrap_or_default(),
        audit_id: e.audit_id.clone().unwrap_or_default(),
        response_code: e.response_status.as_ref().and_then(|s| s.code).unwrap_or(0),
        ..Default::default()
    };
    match e.stage.as_deref() {
        Some("ResponseStarted") => a.stages_started = stage_ts,
        Some("ResponseComplete") | Some("Panic") => a.stages_completed = stage_ts,
        _ => {}
    }
    if exec_like {
        // `command` repeats once per argv element; `container` may appear twice.
        let argv: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.as_str())
            .collect();
        a.command = argv.join(" ");
        a.container = param("container").unwrap_or_default().to_string();
        a.tty = Some(i64::from(param("tty").is_some_and(truthy)));
        a.stdin = param("stdin").is_some_and(truthy);
        if a.pod.is_empty() {
            a.pod = pod_from_uri(&uri).unwrap_or_default();
        }
    } else {
        // kubectl run: what runs is in the pod spec of the request (or response) object.
        let pod = e.request_object.as_ref().or(e.response_object.as_ref());
        if a.pod.is_empty() {
            a.pod = pod
                .and_then(|p| str_of(p.pointer("/metadata/name")))
                .unwrap_or_default();
        }
        if a.namespace.is_empty() {
            a.namespace = pod
                .and_then(|p| str_of(p.pointer("/metadata/namespace")))
                .unwrap_or_default();
        }
        if let Some(c) = pod.and_then(|p| p.pointer("/spec/containers/0")) {
            a.container = str_of(c.get("name")).unwrap_or_default();
            let mut argv: Vec<String> = Vec::new();
            for key in ["command", "args"] {
                if let Some(Value::Array(items)) = c.get(key) {
                    argv.extend(items.iter().filter_map(|i| str_of(Some(i))));
                }
            }
            if argv.is_empty() {
                argv.extend(str_of(c.get("image")));
            }
            a.command = argv.join(" ");
            a.tty = Some(i64::from(
                c.get("tty").and_then(Value::as_bool).unwrap_or(false),
            ));
            a.stdin = c.get("stdin").and_then(Value::as_bool).unwrap_or(false);
        }
    }
    let key = if a.audit_id.is_empty() {
        serde_json::to_vec(&v).unwrap_or_default()
    } else {
        a.audit_id.clone().into_bytes()
    };
    Outcome::Activity(Box::new(a), key)
}

/// GKE Cloud Audit Log entry (`protoPayload` of type AuditLog). Exec entries carry no command.
fn gke(v: &Value) -> Outcome {
    let p = &v["protoPayload"];
    let method = p["methodName"].as_str().unwrap_or_default();
    // io.k8s.core.v1.pods.exec.create / .get, io.k8s.core.v1.pods.attach.create
    let parts: Vec<&str> = method.split('.').collect();
    let n = parts.len();
    if n < 3 || parts[n - 3] != "pods" || !matches!(parts[n - 2], "exec" | "attach") {
        return Outcome::NotActivity;
    }
    let verb = parts[n - 1];
    if !matches!(verb, "create" | "get") {
        return Outcome::NotActivity;
    }
    let resource_name = p["resourceName"].as_str().unwrap_or_default();
    let segs: Vec<&str> = resource_name.split('/').collect();
    let find = |k: &str| {
        segs.iter()
            .position(|s| *s == k)
            .and_then(|i| segs.get(i + 1))
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    let Some(ts) = v["timestamp"].as_str().and_then(parse_rfc3339_ns) else {
        return Outcome::Rejected("field `timestamp`: missing or not an RFC 3339 time".into());
    };
    let audit_id = str_of(v.get("insertId")).unwrap_or_default();
    let a = ActivityEvent {
        kind: ActivityType::Kubernetes,
        source: Source::K8sAudit,
        timestamp: ts,
        verb: verb.to_string(),
        resource: "pods".into(),
        sub_resource: parts[n - 2].to_string(),
        namespace: find("namespaces"),
        pod: find("pods"),
        user_name: str_of(p.pointer("/authenticationInfo/principalEmail")).unwrap_or_default(),
        user_agent: str_of(p.pointer("/requestMetadata/callerSuppliedUserAgent"))
            .unwrap_or_default(),
        source_addresses: str_of(p.pointer("/requestMetadata/callerIp"))
            .into_iter()
            .collect(),
        response_code: int_of(p.pointer("/status/code")).unwrap_or(0),
        audit_id: audit_id.clone(),
        ..Default::default()
    };
    let key = if audit_id.is_empty() {
        serde_json::to_vec(v).unwrap_or_default()
    } else {
        audit_id.into_bytes()
    };
    Outcome::Activity(Box::new(a), key)
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

/// `/api/v1/namespaces/<ns>/pods/<pod>/exec` -> `<pod>`.
fn pod_from_uri(uri: &str) -> Option<String> {
    let path = uri.split('?').next()?;
    let segs: Vec<&str> = path.split('/').collect();
    let i = segs.iter().position(|s| *s == "pods")?;
    segs.get(i + 1).map(|s| s.to_string())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(o: &Outcome) -> &ActivityEvent {
        match o {
            Outcome::Activity(a, _) => a,
            other => panic!("expected an activity, got {other:?}"),
        }
    }

    const WS_GET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"7f0a","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/shop/pods/web-1/exec?command=sh\u0026command=-c\u0026command=cat%20%2Fetc%2Fshadow\u0026container=app\u0026container=app\u0026stdin=true\u0026stdout=true\u0026tty=false","verb":"get","user":{"username":"alice","groups":["devs","system:authenticated"]},"sourceIPs":["203.0.113.7","10.0.0.2"],"userAgent":"kubectl/v1.31.0 (linux/amd64) kubernetes/9edcffc","objectRef":{"resource":"pods","namespace":"shop","name":"web-1","apiVersion":"v1","subresource":"exec"},"responseStatus":{"metadata":{},"code":101},"requestReceivedTimestamp":"2024-09-01T10:00:00.000001Z","stageTimestamp":"2024-09-01T10:00:00.050000Z"}"#;

    #[test]
    fn websocket_get_exec_with_escaped_ampersands() {
        let out = parse(WS_GET.as_bytes()).unwrap();
        let a = activity(&out[0]);
        assert_eq!(a.verb, "get");
        assert_eq!(a.command, "sh -c cat /etc/shadow");
        assert_eq!(a.container, "app");
        assert_eq!(a.tty, Some(0));
        assert!(a.stdin);
        assert_eq!(a.user_name, "alice");
        assert_eq!(a.source_addresses, ["203.0.113.7", "10.0.0.2"]);
        assert_eq!(a.stages_started, 1_725_184_800_050_000_000);
        assert_eq!(a.timestamp, 1_725_184_800_000_001_000);
    }

    #[test]
    fn stages_of_one_request_share_their_key() {
        let complete = WS_GET
            .replace("ResponseStarted", "ResponseComplete")
            .replace("10:00:00.050000Z", "10:05:00Z");
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{WS_GET},{complete}]}}"#
        );
        let out = parse(list.as_bytes()).unwrap();
        let (Outcome::Activity(a, ka), Outcome::Activity(b, kb)) = (&out[0], &out[1]) else {
            panic!("{out:?}");
        };
        assert_eq!(ka, kb);
        assert_eq!(a.timestamp, b.timestamp);
        assert!(a.stages_started > 0 && b.stages_completed > a.stages_started);
    }

    #[test]
    fn aks_and_gke_wrappers() {
        let aks = serde_json::json!({"records": [{"category": "kube-audit", "properties": {"log": WS_GET}}]});
        let out = parse(aks.to_string().as_bytes()).unwrap();
        assert_eq!(activity(&out[0]).pod, "web-1");
        let gke = r#"{"insertId":"abc123","protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"bob@example.com"},"methodName":"io.k8s.core.v1.pods.exec.create","resourceName":"core/v1/namespaces/shop/pods/web-2/exec","requestMetadata":{"callerIp":"198.51.100.9","callerSuppliedUserAgent":"kubectl/v1.29.1"}},"timestamp":"2024-09-01T10:00:00Z"}"#;
        let out = parse(gke.as_bytes()).unwrap();
        let a = activity(&out[0]);
        assert_eq!(
            (a.namespace.as_str(), a.pod.as_str(), a.user_name.as_str()),
            ("shop", "web-2", "bob@example.com")
        );
        assert_eq!(a.source_addresses, ["198.51.100.9"]);
    }

    #[test]
    fn kubectl_run_reads_the_pod_spec() {
        let run = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"r1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-run","verb":"create","user":{"username":"carol"},"sourceIPs":["192.0.2.1"],"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"code":201},"requestObject":{"kind":"Pod","metadata":{"name":"debug","labels":{"run":"debug"}},"spec":{"containers":[{"name":"debug","image":"busybox","args":["sh"],"stdin":true,"tty":true}]}},"requestReceivedTimestamp":"2024-09-01T10:00:00Z","stageTimestamp":"2024-09-01T10:00:01Z"}"#;
        let out = parse(run.as_bytes()).unwrap();
        let a = activity(&out[0]);
        assert_eq!(
            (a.pod.as_str(), a.command.as_str(), a.tty),
            ("debug", "sh", Some(1))
        );
        assert!(a.stdin && a.sub_resource.is_empty());
    }

    #[test]
    fn malformed_and_unrelated_events() {
        let out = parse(br#"{"kind": 0}"#).unwrap();
        assert!(
            matches!(&out[0], Outcome::Rejected(m) if m.contains("kind")),
            "{out:?}"
        );
        let out =
            parse(br#"{"kind":"Event","verb":"create","objectRef":{"resource":"configmaps"}}"#)
                .unwrap();
        assert_eq!(out, vec![Outcome::NotActivity]);
        assert!(
            parse(b"[1, {\"kind\":\"Event\"}]")
                .unwrap()
                .iter()
                .all(|o| matches!(o, Outcome::Rejected(_)))
        );
    }
}

//! The protobuf `ActivityEvent` carries every field of the Rust model (so the gRPC APIs cannot
//! silently drop an attribute): each serialized attribute, mapped to snake_case, is a field.

use schemas::ActivityEvent;

fn proto_fields() -> Vec<String> {
    let proto = include_str!("../proto/activity_audit.proto");
    let start = proto.find("message ActivityEvent {").unwrap();
    let body = &proto[start..proto[start..].find("\n}").unwrap() + start];
    body.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("optional ")
                .or(l.strip_prefix("repeated "))
                .unwrap_or(l);
            let mut it = l.split_whitespace();
            let (_ty, name, eq) = (it.next()?, it.next()?, it.next()?);
            (eq == "=").then(|| name.to_string())
        })
        .collect()
}

fn snake(attr: &str) -> String {
    let mut out = String::new();
    for (i, c) in attr.replace('.', "_").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn every_model_field_is_in_the_proto() {
    let fields = proto_fields();
    let json = r#"{"id":"x","type":"kubernetes","source":"native","timestamp":1,"receivedTimestamp":1,"tenant":"t","traceId":"t","hostname":"h","host.mac":"m","containerId":"c","container.name":"c","container.image":"i","kubernetes.cluster.name":"c","kubernetes.namespace.name":"n","kubernetes.workload.kind":"k","kubernetes.workload.name":"w","kubernetes.pod.name":"p","kubernetes.node.name":"n","comm":"c","cmdline":"c","exe":"e","cwd":"c","pid":1,"ppid":1,"pcomm":"p","uid":0,"username":"u","userLoginUid":0,"userLoginName":"u","tty":0,"loginShellId":1,"loginShellDistance":0,"processStartTime":1,"execId":"e","parentExecId":"p","inInitTree":false,"direction":"in","l4protocol":"tcp","clientIp":"1","clientPort":1,"serverIp":"1","serverPort":1,"filename":"f","directory":"d","permissions":"r","verb":"v","resource":"r","subResource":"s","command":"c","container":"c","stdin":true,"user.username":"u","user.groups":["g"],"userAgent":"a","sourceAddresses":["s"],"auditId":"a","responseCode":1,"stages.started":1,"stages.completed":1,"traceConfidence":1.0,"traceLink":"l","traceCandidates":["a"],"revision":1,"enrichment":"api"}"#;
    let e: ActivityEvent = serde_json::from_str(json).unwrap();
    let v = serde_json::to_value(&e).unwrap();
    let renames = [
        ("kubernetes_cluster_name", "cluster"),
        ("kubernetes_namespace_name", "namespace"),
        ("kubernetes_workload_kind", "workload_kind"),
        ("kubernetes_workload_name", "workload_name"),
        ("kubernetes_pod_name", "pod"),
        ("kubernetes_node_name", "node"),
        ("container_id", "container_id"),
        ("user_username", "user_username"),
    ];
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 64, "the sample sets every field");
    for k in keys {
        let s = snake(k);
        let s = renames
            .iter()
            .find(|(a, _)| *a == s)
            .map(|(_, b)| b.to_string())
            .unwrap_or(s);
        assert!(
            fields.contains(&s),
            "attribute {k} ({s}) missing from activity_audit.proto"
        );
    }
}

//! A filter evaluated on one event in memory, for stages that route events by filter (the
//! export stage's per-export filters). Same meaning as the SQL the store compiles from the
//! same [`Expr`]: absent strings are `""`, absent counters `0`, absent nullable numbers
//! (`uid`, `tty`, …) match no comparison; `=` on a list means "has the element"; negative
//! operators are the negation of their positive twin, so `!=` matches events without the
//! attribute. The query API's tests check both against one reference evaluation.

use crate::ActivityEvent;
use crate::filter::{Condition, Expr, Op, Value};
use std::borrow::Cow;

/// An attribute's value on an event.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    /// A string; `""` when absent.
    Str(&'a str),
    /// An enum (`type`, `source`): always present.
    Enum(&'static str),
    /// A number whose 0 means unknown (pids, ports, times).
    Num(f64),
    /// A number where 0 is meaningful (uid 0 is root): `None` when unknown.
    Opt(Option<f64>),
    List(&'a [String]),
    /// A flag that is always known.
    Bool(bool),
    OptBool(Option<bool>),
}

fn opt(n: Option<i64>) -> Field<'static> {
    Field::Opt(n.map(|n| n as f64))
}

/// The value of the attribute called `name` (a catalogue name, aliases included).
fn field<'a>(e: &'a ActivityEvent, name: &str) -> Option<Field<'a>> {
    use Field::*;
    Some(match name {
        "id" => Str(&e.id),
        "type" => Enum(e.kind.as_str()),
        "source" => Enum(e.source.as_str()),
        "timestamp" => Num(e.timestamp as f64),
        "receivedTimestamp" => Num(e.received_timestamp as f64),
        "traceId" => Str(&e.trace_id),
        "traceConfidence" => Num(f64::from(e.trace_confidence)),
        "traceLink" => Str(&e.trace_link),
        "traceCandidates" => List(&e.trace_candidates),
        "enrichment" => Str(&e.enrichment),
        "hostname" => Str(&e.hostname),
        "host.mac" => Str(&e.host_mac),
        "containerId" => Str(&e.container_id),
        "container.name" => Str(&e.container_name),
        "container.image" => Str(&e.container_image),
        "kubernetes.cluster.name" => Str(&e.cluster),
        "kubernetes.namespace.name" | "namespace" => Str(&e.namespace),
        "kubernetes.workload.kind" => Str(&e.workload_kind),
        "kubernetes.workload.name" => Str(&e.workload_name),
        "kubernetes.deployment.name" => Str(if e.workload_kind == "Deployment" {
            &e.workload_name
        } else {
            ""
        }),
        "kubernetes.pod.name" | "name" => Str(&e.pod),
        "kubernetes.node.name" => Str(&e.node),
        "comm" => Str(&e.comm),
        "cmdline" => Str(&e.cmdline),
        "exe" => Str(&e.exe),
        "cwd" => Str(&e.cwd),
        "pid" => Num(e.pid as f64),
        "ppid" => Num(e.ppid as f64),
        "pcomm" => Str(&e.pcomm),
        "uid" => opt(e.uid),
        "username" => Str(&e.username),
        "userLoginUid" => opt(e.user_login_uid),
        "userLoginName" => Str(&e.user_login_name),
        "tty" => opt(e.tty),
        "loginShellId" => opt(e.login_shell_id),
        "loginShellDistance" => opt(e.login_shell_distance),
        "processStartTime" => Num(e.process_start_time as f64),
        "execId" => Str(&e.exec_id),
        "parentExecId" => Str(&e.parent_exec_id),
        "inInitTree" => OptBool(e.in_init_tree),
        "direction" => Str(&e.direction),
        "l4protocol" => Str(&e.l4protocol),
        "clientIp" => Str(&e.client_ip),
        "clientPort" => Num(e.client_port as f64),
        "serverIp" => Str(&e.server_ip),
        "serverPort" => Num(e.server_port as f64),
        "filename" => Str(&e.filename),
        "directory" => Str(&e.directory),
        "permissions" => Str(&e.permissions),
        "verb" => Str(&e.verb),
        "resource" => Str(&e.resource),
        "subResource" => Str(&e.sub_resource),
        "command" => Str(&e.command),
        "container" => Str(&e.container),
        "stdin" => Bool(e.stdin),
        "user.username" => Str(&e.user_name),
        "user.groups" => List(&e.user_groups),
        "kubernetes.pod.labels" => List(&e.pod_labels),
        "kubernetes.namespace.labels" => List(&e.namespace_labels),
        "userAgent" => Str(&e.user_agent),
        "sourceAddresses" => List(&e.source_addresses),
        "auditId" => Str(&e.audit_id),
        "responseCode" => Num(e.response_code as f64),
        "stages.started" => Num(e.stages_started as f64),
        "stages.completed" => Num(e.stages_completed as f64),
        // The parser only produces catalogue names; the test below checks each has a field.
        _ => return None,
    })
}

fn text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::Text(s) => Cow::Borrowed(s),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Float(x) => Cow::Owned(x.to_string()),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(x) => Some(*x),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Text(s) => s.parse().ok(),
    }
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Int(0) => Some(false),
        Value::Int(1) => Some(true),
        Value::Text(s) => s.parse().ok(),
        _ => None,
    }
}

fn equals(f: Field<'_>, v: &Value) -> bool {
    match f {
        Field::Str(s) => s == text(v),
        Field::Enum(s) => s == text(v),
        Field::List(items) => items.iter().any(|i| *i == text(v)),
        Field::Num(x) => number(v) == Some(x),
        Field::Opt(x) => x.is_some() && number(v) == x,
        Field::Bool(b) => boolean(v) == Some(b),
        Field::OptBool(b) => b.is_some() && boolean(v) == b,
    }
}

fn compare(f: Field<'_>, v: &Value, ok: fn(std::cmp::Ordering) -> bool) -> bool {
    let x = match f {
        Field::Num(x) | Field::Opt(Some(x)) => x,
        Field::Bool(b) | Field::OptBool(Some(b)) => f64::from(u8::from(b)),
        _ => return false,
    };
    number(v).and_then(|y| x.partial_cmp(&y)).is_some_and(ok)
}

fn texts<'a>(f: Field<'a>, pred: impl Fn(&str) -> bool) -> bool {
    match f {
        Field::Str(s) => pred(s),
        Field::Enum(s) => pred(s),
        Field::List(items) => items.iter().any(|i| pred(i)),
        _ => false,
    }
}

fn positive(e: &ActivityEvent, c: &Condition) -> bool {
    let f = field(e, c.attribute.name).unwrap_or(Field::Str(""));
    let first = c.values.first();
    match c.op {
        Op::Eq | Op::In => c.values.iter().any(|v| equals(f, v)),
        Op::Lt => first.is_some_and(|v| compare(f, v, |o| o.is_lt())),
        Op::Le => first.is_some_and(|v| compare(f, v, |o| o.is_le())),
        Op::Gt => first.is_some_and(|v| compare(f, v, |o| o.is_gt())),
        Op::Ge => first.is_some_and(|v| compare(f, v, |o| o.is_ge())),
        Op::Exists => match f {
            Field::Str(s) => !s.is_empty(),
            Field::Enum(_) | Field::Bool(_) => true,
            Field::Num(x) => x != 0.0,
            Field::Opt(x) => x.is_some(),
            Field::List(items) => !items.is_empty(),
            Field::OptBool(b) => b.is_some(),
        },
        Op::StartsWith => first.is_some_and(|v| texts(f, |s| s.starts_with(&*text(v)))),
        Op::Contains => first.is_some_and(|v| texts(f, |s| s.contains(&*text(v)))),
        // Negative operators are handled by `matches` as the negation of their twin.
        Op::Ne | Op::NotIn | Op::NotExists | Op::NotStartsWith | Op::NotContains => !positive(
            e,
            &Condition {
                op: c.op.negated(),
                ..c.clone()
            },
        ),
    }
}

impl Expr {
    /// Whether `event` matches this filter.
    pub fn matches(&self, event: &ActivityEvent) -> bool {
        match self {
            Expr::And(v) => v.iter().all(|x| x.matches(event)),
            Expr::Or(v) => v.iter().any(|x| x.matches(event)),
            Expr::Not(x) => !x.matches(event),
            Expr::Cond(c) => positive(event, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{ATTRIBUTES, parse};

    fn m(filter: &str, e: &ActivityEvent) -> bool {
        parse(filter).unwrap().unwrap().matches(e)
    }

    #[test]
    fn every_catalogue_attribute_has_a_field() {
        for a in ATTRIBUTES {
            assert!(
                field(&ActivityEvent::default(), a.name).is_some(),
                "{} has no field",
                a.name
            );
        }
    }

    #[test]
    fn semantics_follow_the_store() {
        let e = ActivityEvent {
            kind: crate::ActivityType::Command,
            comm: "bash".into(),
            pod: "web-1".into(),
            workload_kind: "StatefulSet".into(),
            workload_name: "db".into(),
            uid: Some(0),
            pid: 42,
            user_groups: vec!["system:masters".into(), "dev".into()],
            ..Default::default()
        };
        assert!(m(r#"comm = "bash" and name starts with "web""#, &e));
        assert!(m(r#"comm in (sh, bash) type = command"#, &e));
        assert!(!m(r#"comm != bash"#, &e));
        assert!(m(r#"uid = 0 and uid exists and tty not exists"#, &e));
        assert!(!m(r#"tty = 0 or tty < 5 or tty >= 0"#, &e), "unknown tty");
        assert!(m(r#"tty != 0"#, &e), "negation of no match");
        assert!(m(r#"pid > 41 and pid <= 42 and ppid not exists"#, &e));
        assert!(m(
            r#"user.groups = dev and user.groups contains masters"#,
            &e
        ));
        assert!(!m(r#"kubernetes.deployment.name = db"#, &e));
        assert!(m(r#"kubernetes.workload.name = db"#, &e));
        assert!(m(r#"not (comm = sh or source = falco)"#, &e));
        assert!(m(
            r#"stdin = false and stdin exists and inInitTree not exists"#,
            &e
        ));
    }
}

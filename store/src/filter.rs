//! Compiles a parsed filter ([`schemas::filter::Expr`]) to a ClickHouse `WHERE` expression
//! over the `events` table. Attributes map to columns through [`crate::columns::COLUMNS`];
//! every value goes through [`quote`] or is a number Rust formatted, so no filter text ever
//! reaches SQL as such.
//!
//! Semantics: a negative operator (`!=`, `not in`, `not …`) is exactly `not` of its positive
//! one, so `uid != 0` includes entries without a uid; `=` on a list (`user.groups`) means the
//! list holds the value; `exists` means the attribute has a value (not empty, not null, not 0).

use crate::columns::{COLUMNS, Column};
use crate::sql::quote;
use schemas::filter::{Condition, Expr, Op, Value, ValueType};

/// The SQL boolean expression for `e`.
pub fn compile(e: &Expr) -> String {
    match e {
        Expr::And(v) => join(v, " AND "),
        Expr::Or(v) => join(v, " OR "),
        Expr::Not(e) => format!("NOT ({})", compile(e)),
        Expr::Cond(c) => condition(c),
    }
}

fn join(v: &[Expr], sep: &str) -> String {
    let parts: Vec<String> = v.iter().map(|e| format!("({})", compile(e))).collect();
    parts.join(sep)
}

/// The column an attribute is stored in (aliases resolved).
pub fn column_of(attribute: &str) -> Option<&'static Column> {
    let stored_as = match attribute {
        "name" => "kubernetes.pod.name",
        "namespace" => "kubernetes.namespace.name",
        "kubernetes.deployment.name" => "kubernetes.workload.name",
        other => other,
    };
    COLUMNS.iter().find(|c| c.attribute == stored_as)
}

fn literal(v: &Value) -> String {
    match v {
        Value::Text(s) => quote(s),
        Value::Int(i) => i.to_string(),
        // finite by construction (the parser rejects NaN and infinities)
        Value::Float(x) => format!("{x:?}"),
        Value::Bool(b) => u8::from(*b).to_string(),
    }
}

fn condition(c: &Condition) -> String {
    if c.op.is_negative() {
        return format!(
            "NOT ({})",
            condition(&Condition {
                op: c.op.negated(),
                ..c.clone()
            })
        );
    }
    let col = column_of(c.attribute.name)
        .unwrap_or_else(|| panic!("attribute {} has no column", c.attribute.name));
    let positive = positive(col, c);
    let positive = if c.attribute.name == "kubernetes.deployment.name" {
        format!("workload_kind = 'Deployment' AND {positive}")
    } else {
        positive
    };
    if col.ch_type.starts_with("Nullable") {
        // NULL compares as NULL: "has no value" is "does not match".
        format!("ifNull({positive}, 0)")
    } else {
        positive
    }
}

fn positive(col: &Column, c: &Condition) -> String {
    let name = col.name;
    // Enum columns compare as text for the string functions.
    let text = if matches!(col.name, "type" | "source") {
        format!("toString({name})")
    } else {
        name.to_string()
    };
    let list: Vec<String> = c.values.iter().map(literal).collect();
    let first = list.first().cloned().unwrap_or_default();
    if c.attribute.value_type == ValueType::StringList {
        return match c.op {
            Op::Eq => format!("has({name}, {first})"),
            Op::In => format!("hasAny({name}, [{}])", list.join(", ")),
            Op::Exists => format!("notEmpty({name})"),
            Op::StartsWith => format!("arrayExists(x -> startsWith(x, {first}), {name})"),
            Op::Contains => format!("arrayExists(x -> position(x, {first}) > 0, {name})"),
            op => unreachable!("{op:?} on a list"),
        };
    }
    match c.op {
        Op::Eq => format!("{name} = {first}"),
        Op::Lt => format!("{name} < {first}"),
        Op::Le => format!("{name} <= {first}"),
        Op::Gt => format!("{name} > {first}"),
        Op::Ge => format!("{name} >= {first}"),
        Op::In => format!("{name} IN ({})", list.join(", ")),
        Op::Exists => match c.attribute.value_type {
            _ if col.ch_type.starts_with("Nullable") => format!("isNotNull({name})"),
            ValueType::String | ValueType::Ip if !matches!(name, "type" | "source") => {
                format!("{name} != ''")
            }
            ValueType::Number | ValueType::Timestamp => format!("{name} != 0"),
            _ => "1".into(),
        },
        Op::StartsWith => format!("startsWith({text}, {first})"),
        Op::Contains => format!("position({text}, {first}) > 0"),
        op => unreachable!("negative {op:?} is compiled as NOT of its positive"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::filter::{ATTRIBUTES, parse};

    fn sql(f: &str) -> String {
        compile(&parse(f).unwrap().unwrap())
    }

    #[test]
    fn every_attribute_has_a_column_of_its_type() {
        for a in ATTRIBUTES {
            let c = column_of(a.name).unwrap_or_else(|| panic!("{} has no column", a.name));
            let list = c.ch_type.starts_with("Array");
            assert_eq!(list, a.value_type == ValueType::StringList, "{}", a.name);
            // every operator of the type compiles
            for op in a.value_type.operators() {
                let _ = condition(&Condition {
                    attribute: a,
                    op: *op,
                    values: vec![Value::Text("x".into())],
                });
            }
        }
    }

    #[test]
    fn conditions_compile_to_escaped_sql() {
        assert_eq!(sql("comm = \"bash\""), "comm = 'bash'");
        assert_eq!(sql("comm != bash"), "NOT (comm = 'bash')");
        assert_eq!(sql("comm in (a, \"b'c\")"), r"comm IN ('a', 'b\'c')");
        assert_eq!(sql("uid = 0"), "ifNull(uid = 0, 0)");
        assert_eq!(sql("uid != 0"), "NOT (ifNull(uid = 0, 0))");
        assert_eq!(sql("uid exists"), "ifNull(isNotNull(uid), 0)");
        assert_eq!(sql("pid exists"), "pid != 0");
        assert_eq!(sql("hostname not exists"), "NOT (hostname != '')");
        assert_eq!(
            sql("user.groups = \"system:masters\""),
            "has(user_groups, 'system:masters')"
        );
        assert_eq!(
            sql("sourceAddresses starts with \"10.\""),
            "arrayExists(x -> startsWith(x, '10.'), source_addresses)"
        );
        assert_eq!(
            sql("type starts with com"),
            "startsWith(toString(type), 'com')"
        );
        assert_eq!(
            sql("cmdline contains \"\\\\'; DROP\""),
            r"position(cmdline, '\\\'; DROP') > 0"
        );
        assert_eq!(sql("name = web-0"), "pod = 'web-0'");
        assert_eq!(sql("namespace = shop"), "namespace = 'shop'");
        assert_eq!(
            sql("kubernetes.deployment.name = web"),
            "workload_kind = 'Deployment' AND workload_name = 'web'"
        );
        assert_eq!(sql("stdin = true"), "stdin = 1");
        assert_eq!(sql("traceConfidence >= 0.5"), "trace_confidence >= 0.5");
        assert_eq!(
            sql("comm = a pid = 1 or not tty exists"),
            "((comm = 'a') AND (pid = 1)) OR (NOT (ifNull(isNotNull(tty), 0)))"
        );
    }
}

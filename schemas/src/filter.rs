//! The filter language users type (brief §5): `comm = "bash" and not kubernetes.pod.name
//! starts with "debug-"`. Text flows in, is parsed once into an [`Expr`] whose every
//! condition names a known [`Attribute`] and carries values already checked against its type;
//! the store compiles that tree to SQL with every value escaped. Errors name what is wrong and
//! where (a character position), so editors can point at it.
//!
//! Grammar (keywords are case-insensitive, juxtaposition means `and`, `not` binds tightest,
//! then `and`, then `or`):
//!
//! ```text
//! expr      := and ("or" and)*
//! and       := unary (["and"] unary)*
//! unary     := "not" unary | "(" expr ")" | condition
//! condition := ATTR ("=" | "!=" | "<" | "<=" | ">" | ">=") value
//!            | ATTR ["not"] "in" "(" value ("," value)* ")"
//!            | ATTR ["not"] "exists"
//!            | ATTR ["not"] "starts" "with" value
//!            | ATTR ["not"] "contains" value
//! value     := "quoted \"string\"" | 'quoted' | number | bare-word
//! ```

use crate::ActivityType;
use std::fmt;

/// Value type of an attribute as users see it; decides the operators it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Number,
    Ip,
    Timestamp,
    /// A list of strings (`user.groups`): `=` means "contains this element".
    #[serde(rename = "string[]")]
    StringList,
    Boolean,
}

/// Operators of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Exists,
    NotExists,
    StartsWith,
    NotStartsWith,
    Contains,
    NotContains,
}

impl Op {
    pub const ALL: [Op; 14] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::In,
        Op::NotIn,
        Op::Exists,
        Op::NotExists,
        Op::StartsWith,
        Op::NotStartsWith,
        Op::Contains,
        Op::NotContains,
    ];

    /// How the operator is written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Exists => "exists",
            Op::NotExists => "not exists",
            Op::StartsWith => "starts with",
            Op::NotStartsWith => "not starts with",
            Op::Contains => "contains",
            Op::NotContains => "not contains",
        }
    }

    /// The operator with the opposite meaning (`=` ↔ `!=`, `in` ↔ `not in`, …), for the
    /// comparisons: `<` ↔ `>=`.
    pub fn negated(self) -> Op {
        match self {
            Op::Eq => Op::Ne,
            Op::Ne => Op::Eq,
            Op::Lt => Op::Ge,
            Op::Ge => Op::Lt,
            Op::Gt => Op::Le,
            Op::Le => Op::Gt,
            Op::In => Op::NotIn,
            Op::NotIn => Op::In,
            Op::Exists => Op::NotExists,
            Op::NotExists => Op::Exists,
            Op::StartsWith => Op::NotStartsWith,
            Op::NotStartsWith => Op::StartsWith,
            Op::Contains => Op::NotContains,
            Op::NotContains => Op::Contains,
        }
    }

    /// Whether the operator is the negation of a positive one (`!=`, `not …`).
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            Op::Ne | Op::NotIn | Op::NotExists | Op::NotStartsWith | Op::NotContains
        )
    }

    /// Number of values the operator takes: `None` for a list.
    fn arity(self) -> Option<usize> {
        match self {
            Op::Exists | Op::NotExists => Some(0),
            Op::In | Op::NotIn => None,
            _ => Some(1),
        }
    }
}

impl ValueType {
    /// The type's name, as `supported-filters` and errors give it (= its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Number => "number",
            ValueType::Ip => "ip",
            ValueType::Timestamp => "timestamp",
            ValueType::StringList => "string[]",
            ValueType::Boolean => "boolean",
        }
    }

    /// Operators an attribute of this type accepts.
    pub fn operators(self) -> &'static [Op] {
        use Op::*;
        match self {
            ValueType::String | ValueType::StringList => &[
                Eq,
                Ne,
                In,
                NotIn,
                Exists,
                NotExists,
                StartsWith,
                NotStartsWith,
                Contains,
                NotContains,
            ],
            ValueType::Ip => &[
                Eq,
                Ne,
                In,
                NotIn,
                Exists,
                NotExists,
                StartsWith,
                NotStartsWith,
            ],
            ValueType::Number | ValueType::Timestamp => {
                &[Eq, Ne, Lt, Le, Gt, Ge, In, NotIn, Exists, NotExists]
            }
            ValueType::Boolean => &[Eq, Ne, Exists, NotExists],
        }
    }
}

/// A filterable attribute: its external name (brief §2), type, and the data sources that
/// carry it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Attribute {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(rename = "types")]
    pub applies_to: &'static [ActivityType],
    pub description: &'static str,
}

const ALL: &[ActivityType] = &ActivityType::ALL;
const CMD: &[ActivityType] = &[ActivityType::Command];
const PROC: &[ActivityType] = &[
    ActivityType::Command,
    ActivityType::Connection,
    ActivityType::Fileaccess,
];
const CONN: &[ActivityType] = &[ActivityType::Connection];
const FILE: &[ActivityType] = &[ActivityType::Fileaccess];
const KUBE: &[ActivityType] = &[ActivityType::Kubernetes];
const TTY: &[ActivityType] = &[
    ActivityType::Command,
    ActivityType::Connection,
    ActivityType::Kubernetes,
];

const fn attr(
    name: &'static str,
    value_type: ValueType,
    applies_to: &'static [ActivityType],
    description: &'static str,
) -> Attribute {
    Attribute {
        name,
        value_type,
        applies_to,
        description,
    }
}

use ValueType as T;

/// Every attribute a filter may name. The tenant is not among them: it comes from the caller's
/// credentials, never from a filter.
pub const ATTRIBUTES: &[Attribute] = &[
    attr("id", T::String, ALL, "entry id"),
    attr(
        "type",
        T::String,
        ALL,
        "data source: command, connection, fileaccess, kubernetes",
    ),
    attr("timestamp", T::Timestamp, ALL, "when it happened (ns)"),
    attr(
        "receivedTimestamp",
        T::Timestamp,
        ALL,
        "when ingest received it (ns)",
    ),
    attr(
        "source",
        T::String,
        ALL,
        "producer: k8s-audit, falco, tetragon, native",
    ),
    attr("traceId", T::String, ALL, "session the entry belongs to"),
    attr(
        "traceConfidence",
        T::Number,
        ALL,
        "how sure the session link is (0..1)",
    ),
    attr("traceLink", T::String, ALL, "why the entry has its session"),
    attr(
        "traceCandidates",
        T::StringList,
        ALL,
        "sessions an ambiguous entry may belong to",
    ),
    attr(
        "enrichment",
        T::String,
        ALL,
        "api, or partial when cluster metadata was missing",
    ),
    attr("hostname", T::String, ALL, "host name"),
    attr("host.mac", T::String, ALL, "host MAC address"),
    attr("containerId", T::String, ALL, "container id"),
    attr("container.name", T::String, ALL, "container name"),
    attr("container.image", T::String, ALL, "container image"),
    attr("kubernetes.cluster.name", T::String, ALL, "cluster"),
    attr("kubernetes.namespace.name", T::String, ALL, "namespace"),
    attr(
        "kubernetes.namespace.labels",
        T::StringList,
        ALL,
        "the namespace's labels, key=value",
    ),
    attr(
        "kubernetes.workload.kind",
        T::String,
        ALL,
        "Deployment, StatefulSet, DaemonSet, Job, CronJob, …",
    ),
    attr("kubernetes.workload.name", T::String, ALL, "workload name"),
    attr(
        "kubernetes.deployment.name",
        T::String,
        ALL,
        "workload name when the workload is a Deployment",
    ),
    attr("kubernetes.pod.name", T::String, ALL, "pod"),
    attr(
        "kubernetes.pod.labels",
        T::StringList,
        ALL,
        "the pod's labels, key=value",
    ),
    attr("kubernetes.node.name", T::String, ALL, "node"),
    attr("comm", T::String, PROC, "process name"),
    attr("cmdline", T::String, PROC, "command line"),
    attr("exe", T::String, CMD, "executable path"),
    attr("cwd", T::String, CMD, "working directory"),
    attr("pid", T::Number, PROC, "process id"),
    attr("ppid", T::Number, CMD, "parent process id"),
    attr("pcomm", T::String, CMD, "parent process name"),
    attr("uid", T::Number, CMD, "user id"),
    attr("username", T::String, CMD, "user name"),
    attr("userLoginUid", T::Number, CMD, "login user id"),
    attr("userLoginName", T::String, CMD, "login user name"),
    attr(
        "tty",
        T::Number,
        TTY,
        "terminal (commands), 1/0 (kubernetes)",
    ),
    attr("loginShellId", T::Number, CMD, "pid of the login shell"),
    attr(
        "loginShellDistance",
        T::Number,
        CMD,
        "generations below the login shell",
    ),
    attr(
        "processStartTime",
        T::Timestamp,
        PROC,
        "process start time (ns)",
    ),
    attr("execId", T::String, PROC, "agent process id"),
    attr("parentExecId", T::String, PROC, "agent parent process id"),
    attr(
        "inInitTree",
        T::Boolean,
        PROC,
        "process descends from the container's init",
    ),
    attr("direction", T::String, CONN, "in or out"),
    attr("l4protocol", T::String, CONN, "tcp or udp"),
    attr("clientIp", T::Ip, CONN, "client address"),
    attr("clientPort", T::Number, CONN, "client port"),
    attr("serverIp", T::Ip, CONN, "server address"),
    attr("serverPort", T::Number, CONN, "server port"),
    attr("filename", T::String, FILE, "file name"),
    attr("directory", T::String, FILE, "directory"),
    attr("permissions", T::String, FILE, "r, w or rw"),
    attr("verb", T::String, KUBE, "create or get"),
    attr("resource", T::String, KUBE, "pods"),
    attr("subResource", T::String, KUBE, "exec or attach"),
    attr("name", T::String, KUBE, "pod the request targets"),
    attr(
        "namespace",
        T::String,
        KUBE,
        "namespace the request targets",
    ),
    attr("command", T::String, KUBE, "command requested"),
    attr("container", T::String, KUBE, "container requested"),
    attr("stdin", T::Boolean, KUBE, "stdin attached"),
    attr("user.username", T::String, KUBE, "Kubernetes user"),
    attr("user.groups", T::StringList, KUBE, "Kubernetes groups"),
    attr("userAgent", T::String, KUBE, "client user agent"),
    attr(
        "sourceAddresses",
        T::StringList,
        KUBE,
        "client source addresses",
    ),
    attr("auditId", T::String, KUBE, "audit id"),
    attr("responseCode", T::Number, KUBE, "HTTP status"),
    attr("stages.started", T::Timestamp, KUBE, "request started (ns)"),
    attr(
        "stages.completed",
        T::Timestamp,
        KUBE,
        "request completed (ns)",
    ),
];

/// The attribute called `name`.
pub fn attribute(name: &str) -> Option<&'static Attribute> {
    ATTRIBUTES.iter().find(|a| a.name == name)
}

/// A literal value of a condition, already checked against its attribute's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write_quoted(f, s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// One condition: attribute, operator, values (none for `exists`).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub attribute: &'static Attribute,
    pub op: Op,
    pub values: Vec<Value>,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cond(Condition),
}

impl Expr {
    /// `a and b`, flattening nested ands.
    pub fn and(self, other: Expr) -> Expr {
        let mut parts = Vec::new();
        for e in [self, other] {
            match e {
                Expr::And(v) => parts.extend(v),
                e => parts.push(e),
            }
        }
        Expr::And(parts)
    }

    /// Every condition in the tree.
    pub fn conditions(&self) -> Vec<&Condition> {
        let mut out = Vec::new();
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a Condition>) {
            match e {
                Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| walk(e, out)),
                Expr::Not(e) => walk(e, out),
                Expr::Cond(c) => out.push(c),
            }
        }
        walk(self, &mut out);
        out
    }
}

impl fmt::Display for Expr {
    /// Canonical text: parses back to the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(v) | Expr::Or(v) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    if matches!(e, Expr::And(_) | Expr::Or(_)) {
                        write!(f, "({e})")?;
                    } else {
                        write!(f, "{e}")?;
                    }
                }
                Ok(())
            }
            Expr::Not(e) => match **e {
                Expr::Cond(_) | Expr::Not(_) => write!(f, "not {e}"),
                _ => write!(f, "not ({e})"),
            },
            Expr::Cond(c) => {
                write!(f, "{} {}", c.attribute.name, c.op.as_str())?;
                match c.op.arity() {
                    Some(0) => Ok(()),
                    Some(_) => write!(f, " {}", c.values[0]),
                    None => {
                        f.write_str(" (")?;
                        for (i, v) in c.values.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write!(f, "{v}")?;
                        }
                        f.write_str(")")
                    }
                }
            }
        }
    }
}

/// What is wrong with a filter, and where (character offset into the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

/// Longest filter accepted, in characters.
pub const MAX_LEN: usize = 16 * 1024;
/// Deepest nesting of parentheses and `not`s accepted.
pub const MAX_DEPTH: usize = 64;

/// Parses `text`; `Ok(None)` when it is empty (no filtering).
pub fn parse(text: &str) -> Result<Option<Expr>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > MAX_LEN {
        return Err(FilterError {
            position: MAX_LEN,
            message: format!("filter is longer than {MAX_LEN} characters"),
        });
    }
    let tokens = lex(&chars)?;
    let mut p = Parser {
        tokens,
        at: 0,
        end: chars.len(),
        depth: 0,
    };
    if p.tokens.is_empty() {
        return Ok(None);
    }
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return Err(p.error_at(t.pos, format!("unexpected {}", t.describe())));
    }
    Ok(Some(e))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: attribute, keyword, number or unquoted value.
    Word(String),
    Quoted(String),
    Sym(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("{w:?}"),
            Tok::Quoted(s) => format!("string {s:?}"),
            Tok::Sym(s) => format!("\"{s}\""),
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// Values of the `source` attribute.
const SOURCES: [&str; 4] = ["k8s-audit", "falco", "tetragon", "native"];

const KEYWORDS: [&str; 7] = ["and", "or", "not", "in", "exists", "starts", "contains"];

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '(' | ')' | ',' | '=' | '!' | '<' | '>' | '"' | '\''))
}

fn lex(chars: &[char]) -> Result<Vec<Token>, FilterError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = match two.as_str() {
            "!=" => Some("!="),
            "<=" => Some("<="),
            ">=" => Some(">="),
            "==" => Some("=="),
            _ => None,
        };
        if let Some(s) = sym {
            out.push(Token {
                tok: Tok::Sym(if s == "==" { "=" } else { s }),
                pos,
            });
            i += 2;
            continue;
        }
        let one = match c {
            '(' => Some("("),
            ')' => Some(")"),
            ',' => Some(","),
            '=' => Some("="),
            '<' => Some("<"),
            '>' => Some(">"),
            _ => None,
        };
        if let Some(s) = one {
            out.push(Token {
                tok: Tok::Sym(s),
                pos,
            });
            i += 1;
            continue;
        }
        if c == '!' {
            return Err(FilterError {
                position: pos,
                message: "\"!\" must be followed by \"=\"".into(),
            });
        }
        if c == '"' || c == '\'' {
            let (s, next) = lex_quoted(chars, i)?;
            out.push(Token {
                tok: Tok::Quoted(s),
                pos,
            });
            i = next;
            continue;
        }
        let start = i;
        while i < chars.len() && is_word_char(chars[i]) {
            i += 1;
        }
        out.push(Token {
            tok: Tok::Word(chars[start..i].iter().collect()),
            pos,
        });
    }
    Ok(out)
}

/// A quoted string starting at `chars[start]`; returns its value and the index after it.
fn lex_quoted(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(FilterError {
                position: start,
                message: "unterminated string".into(),
            });
        };
        i += 1;
        if c == quote {
            return Ok((s, i));
        }
        if c != '\\' {
            s.push(c);
            continue;
        }
        let esc_pos = i - 1;
        let bad = |message: String| FilterError {
            position: esc_pos,
            message,
        };
        let Some(&e) = chars.get(i) else {
            return Err(bad("unterminated string".into()));
        };
        i += 1;
        match e {
            '"' | '\'' | '\\' | '/' => s.push(e),
            'n' => s.push('\n'),
            't' => s.push('\t'),
            'r' => s.push('\r'),
            'u' => {
                // \u{1F600} or \u00e9
                let (hex, next): (String, usize) = if chars.get(i) == Some(&'{') {
                    let close = chars[i..].iter().position(|&c| c == '}');
                    match close {
                        Some(n) if (2..=7).contains(&n) => {
                            (chars[i + 1..i + n].iter().collect(), i + n + 1)
                        }
                        _ => return Err(bad("bad \\u{…} escape".into())),
                    }
                } else if i + 4 <= chars.len() {
                    (chars[i..i + 4].iter().collect(), i + 4)
                } else {
                    return Err(bad("\\u needs four hex digits".into()));
                };
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.chars().all(|c| c.is_ascii_hexdigit()))
                    .and_then(char::from_u32)
                    .ok_or_else(|| bad(format!("bad \\u escape {hex:?}")))?;
                s.push(ch);
                i = next;
            }
            other => return Err(bad(format!("unknown escape \\{other}"))),
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn error_at(&self, position: usize, message: String) -> FilterError {
        FilterError { position, message }
    }

    fn pos(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.keyword(kw))
    }

    fn expect_sym(&mut self, sym: &str, what: &str) -> Result<(), FilterError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Sym(s), ..
            }) if *s == sym => {
                self.at += 1;
                Ok(())
            }
            Some(t) => {
                Err(self.error_at(t.pos, format!("expected {what}, found {}", t.describe())))
            }
            None => Err(self.error_at(self.end, format!("expected {what}, found the end"))),
        }
    }

    fn descend(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                self.pos(),
                format!("filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and()?];
        while self.peek_keyword("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    /// Whether the next token can start a condition, a `not` or a group (juxtaposition).
    fn starts_unary(&self) -> bool {
        match self.peek() {
            Some(Token {
                tok: Tok::Sym("("), ..
            }) => true,
            Some(
                t @ Token {
                    tok: Tok::Word(_), ..
                },
            ) => !t.keyword("or"),
            _ => false,
        }
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.unary()?];
        loop {
            if self.peek_keyword("and") {
                self.at += 1;
            } else if !self.starts_unary() {
                break;
            }
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        self.descend()?;
        let e = match self.peek() {
            None => Err(self.error_at(self.end, "expected a condition, found the end".into())),
            Some(t) if t.keyword("not") => {
                self.at += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Token {
                tok: Tok::Sym("("), ..
            }) => {
                self.at += 1;
                let e = self.or()?;
                self.expect_sym(")", "\")\"")?;
                Ok(e)
            }
            Some(_) => self.condition().map(Expr::Cond),
        };
        self.depth -= 1;
        e
    }

    fn condition(&mut self) -> Result<Condition, FilterError> {
        let t = self.next().expect("peeked");
        let name = match &t.tok {
            Tok::Word(w) if !KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => w.clone(),
            _ => {
                return Err(self.error_at(
                    t.pos,
                    format!("expected an attribute name, found {}", t.describe()),
                ));
            }
        };
        let Some(attribute) = attribute(&name) else {
            let hint = suggest(&name)
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            return Err(self.error_at(t.pos, format!("unknown attribute {name:?}{hint}")));
        };
        let op_pos = self.pos();
        let op = self.operator()?;
        if !attribute.value_type.operators().contains(&op) {
            return Err(self.error_at(
                op_pos,
                format!(
                    "operator \"{}\" does not apply to {} ({})",
                    op.as_str(),
                    attribute.name,
                    attribute.value_type.as_str()
                ),
            ));
        }
        let values = match op.arity() {
            Some(0) => Vec::new(),
            Some(_) => vec![self.value(attribute, op)?],
            None => {
                self.expect_sym("(", "\"(\" after in")?;
                let mut v = vec![self.value(attribute, op)?];
                while let Some(Token {
                    tok: Tok::Sym(","), ..
                }) = self.peek()
                {
                    self.at += 1;
                    v.push(self.value(attribute, op)?);
                }
                self.expect_sym(")", "\",\" or \")\"")?;
                v
            }
        };
        Ok(Condition {
            attribute,
            op,
            values,
        })
    }

    fn operator(&mut self) -> Result<Op, FilterError> {
        let Some(t) = self.next() else {
            return Err(self.error_at(self.end, "expected an operator, found the end".into()));
        };
        let negated = t.keyword("not");
        let t = if negated {
            match self.next() {
                Some(t) => t,
                None => {
                    return Err(self.error_at(
                        self.end,
                        "expected in, exists, starts with or contains after not".into(),
                    ));
                }
            }
        } else {
            t
        };
        let op = match &t.tok {
            Tok::Sym("=") if !negated => Op::Eq,
            Tok::Sym("!=") if !negated => Op::Ne,
            Tok::Sym("<") if !negated => Op::Lt,
            Tok::Sym("<=") if !negated => Op::Le,
            Tok::Sym(">") if !negated => Op::Gt,
            Tok::Sym(">=") if !negated => Op::Ge,
            _ if t.keyword("in") => Op::In,
            _ if t.keyword("exists") => Op::Exists,
            _ if t.keyword("contains") => Op::Contains,
            _ if t.keyword("starts") => {
                if !self.peek_keyword("with") {
                    return Err(self.error_at(self.pos(), "expected \"with\" after starts".into()));
                }
                self.at += 1;
                Op::StartsWith
            }
            _ => {
                return Err(self.error_at(
                    t.pos,
                    format!(
                        "expected an operator (=, !=, in, not in, exists, not exists, starts with, contains), found {}",
                        t.describe()
                    ),
                ));
            }
        };
        Ok(if negated { op.negated() } else { op })
    }

    fn value(&mut self, attribute: &Attribute, op: Op) -> Result<Value, FilterError> {
        let Some(t) = self.next() else {
            return Err(self.error_at(self.end, "expected a value, found the end".into()));
        };
        let text = match &t.tok {
            Tok::Quoted(s) => s.clone(),
            Tok::Word(w) if !KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => w.clone(),
            _ => {
                return Err(
                    self.error_at(t.pos, format!("expected a value, found {}", t.describe()))
                );
            }
        };
        let bad = |what: &str| FilterError {
            position: t.pos,
            message: format!("{} takes {what}, not {text:?}", attribute.name),
        };
        let partial = matches!(
            op,
            Op::StartsWith | Op::NotStartsWith | Op::Contains | Op::NotContains
        );
        Ok(match attribute.value_type {
            ValueType::String | ValueType::StringList => {
                // enumerations: only their values can match
                if attribute.name == "type" && !partial && ActivityType::parse(&text).is_none() {
                    return Err(bad("command, connection, fileaccess or kubernetes"));
                }
                if attribute.name == "source" && !partial && !SOURCES.contains(&text.as_str()) {
                    return Err(bad("k8s-audit, falco, tetragon or native"));
                }
                Value::Text(text)
            }
            ValueType::Ip => {
                if !partial && text.parse::<std::net::IpAddr>().is_err() {
                    return Err(bad("an IP address"));
                }
                Value::Text(text)
            }
            ValueType::Number => {
                if let Ok(i) = text.parse::<i64>() {
                    Value::Int(i)
                } else {
                    match text.parse::<f64>() {
                        Ok(x) if x.is_finite() => Value::Float(x),
                        _ => return Err(bad("a number")),
                    }
                }
            }
            ValueType::Timestamp => match text.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => match crate::time::parse_rfc3339_ns(&text) {
                    Some(ns) => Value::Int(ns),
                    None => return Err(bad("nanoseconds or an RFC 3339 time")),
                },
            },
            ValueType::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(bad("true or false")),
            },
        })
    }
}

/// The known attribute closest to `name`, if it is close enough to be a typo.
fn suggest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    ATTRIBUTES
        .iter()
        .map(|a| (edit_distance(&lower, &a.name.to_ascii_lowercase()), a.name))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Expr {
        parse(s).unwrap().unwrap()
    }

    fn cond(e: &Expr) -> &Condition {
        match e {
            Expr::Cond(c) => c,
            other => panic!("not a condition: {other:?}"),
        }
    }

    #[test]
    fn every_operator_parses() {
        let cases = [
            ("comm = \"bash\"", Op::Eq),
            ("comm != 'ps'", Op::Ne),
            ("pid < 10", Op::Lt),
            ("pid <= 10", Op::Le),
            ("pid > 10", Op::Gt),
            ("pid >= 10", Op::Ge),
            ("comm in (\"a\", b)", Op::In),
            ("comm NOT IN (\"a\")", Op::NotIn),
            ("uid exists", Op::Exists),
            ("uid not exists", Op::NotExists),
            ("cmdline starts with \"/bin\"", Op::StartsWith),
            ("cmdline not starts with \"/bin\"", Op::NotStartsWith),
            ("cmdline contains \"passwd\"", Op::Contains),
            ("cmdline not contains \"x\"", Op::NotContains),
        ];
        for (text, op) in cases {
            assert_eq!(cond(&p(text)).op, op, "{text}");
        }
        assert_eq!(
            cond(&p("comm in (\"a\", b)")).values,
            vec![Value::Text("a".into()), Value::Text("b".into())]
        );
    }

    #[test]
    fn precedence_and_juxtaposition() {
        // not > and (juxtaposition too) > or
        let e = p("comm = a pid = 1 or not uid = 0 and tty exists");
        let Expr::Or(parts) = &e else { panic!("{e:?}") };
        assert_eq!(parts.len(), 2);
        assert!(matches!(&parts[0], Expr::And(v) if v.len() == 2));
        let Expr::And(right) = &parts[1] else {
            panic!()
        };
        assert!(matches!(&right[0], Expr::Not(_)));
        let e = p("(comm = a or comm = b) and pid = 1");
        assert!(matches!(&e, Expr::And(v) if matches!(v[0], Expr::Or(_))));
    }

    #[test]
    fn values_are_checked_against_the_type() {
        assert_eq!(cond(&p("pid = 42")).values, vec![Value::Int(42)]);
        assert_eq!(
            cond(&p("traceConfidence >= 0.5")).values,
            vec![Value::Float(0.5)]
        );
        assert_eq!(
            cond(&p("timestamp >= \"2026-01-01T00:00:00Z\"")).values,
            vec![Value::Int(1_767_225_600_000_000_000)]
        );
        assert_eq!(cond(&p("stdin = true")).values, vec![Value::Bool(true)]);
        let e = parse("pid = abc").unwrap_err();
        assert_eq!(e.position, 6);
        assert!(e.message.contains("number"), "{e}");
        assert!(parse("clientIp = \"10.0.0\"").is_err());
        assert!(parse("clientIp starts with \"10.0.\"").is_ok());
        assert!(
            parse("type = process")
                .unwrap_err()
                .message
                .contains("command")
        );
        assert!(
            parse("source in (falco, falko)")
                .unwrap_err()
                .message
                .contains("tetragon")
        );
        assert!(parse("source starts with fal").is_ok());
        let e = parse("pid contains 1").unwrap_err();
        assert_eq!(e.position, 4);
        assert!(e.message.contains("does not apply"), "{e}");
    }

    #[test]
    fn errors_name_what_and_where() {
        let e = parse("comn = \"bash\"").unwrap_err();
        assert_eq!(e.position, 0);
        assert!(e.message.contains("unknown attribute \"comn\""), "{e}");
        assert!(e.message.contains("did you mean \"comm\""), "{e}");
        let e = parse("comm = \"bash").unwrap_err();
        assert_eq!((e.position, e.message.as_str()), (7, "unterminated string"));
        let e = parse("comm = ").unwrap_err();
        assert_eq!(e.position, 7);
        let e = parse("(comm = a").unwrap_err();
        assert!(e.message.contains("expected \")\""), "{e}");
        let e = parse("comm = a)").unwrap_err();
        assert_eq!(e.position, 8);
        let e = parse("comm = \"a\\q\"").unwrap_err();
        assert_eq!(e.position, 9);
        let e = parse("comm ! a").unwrap_err();
        assert_eq!(e.position, 5);
        let e = parse("comm starts a").unwrap_err();
        assert!(e.message.contains("with"), "{e}");
        let deep = "(".repeat(100) + "comm = a" + &")".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        assert!(parse(&"not ".repeat(100)).is_err());
        // position counts characters, not bytes
        let e = parse("comm = \"é\" bogus = 1").unwrap_err();
        assert_eq!(e.position, 11);
    }

    #[test]
    fn escapes_and_empty() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   ").unwrap(), None);
        let c = p(r#"cmdline = "a\"b\\c\n\u00e9\u{1F600}'""#);
        assert_eq!(
            c,
            Expr::Cond(Condition {
                attribute: attribute("cmdline").unwrap(),
                op: Op::Eq,
                values: vec![Value::Text("a\"b\\c\né😀'".into())],
            })
        );
    }

    #[test]
    fn every_attribute_is_unique_and_typed_operators_exist() {
        for (i, a) in ATTRIBUTES.iter().enumerate() {
            assert!(
                ATTRIBUTES[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            assert!(!a.value_type.operators().is_empty());
        }
        for op in Op::ALL {
            assert_eq!(op.negated().negated(), op);
        }
        for a in ATTRIBUTES {
            let serde = serde_json::to_value(a.value_type).unwrap();
            assert_eq!(serde, a.value_type.as_str(), "{}", a.name);
        }
    }

    fn arb_value(t: ValueType) -> BoxedStrategy<Value> {
        match t {
            ValueType::String | ValueType::StringList => {
                any::<String>().prop_map(Value::Text).boxed()
            }
            ValueType::Ip => prop_oneof![
                any::<std::net::Ipv4Addr>().prop_map(|a| Value::Text(a.to_string())),
                any::<std::net::Ipv6Addr>().prop_map(|a| Value::Text(a.to_string())),
            ]
            .boxed(),
            ValueType::Number => prop_oneof![
                any::<i64>().prop_map(Value::Int),
                (-1e6f64..1e6).prop_map(|x| Value::Float(x + 0.5)),
            ]
            .boxed(),
            ValueType::Timestamp => any::<i64>().prop_map(Value::Int).boxed(),
            ValueType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        }
    }

    fn arb_cond() -> impl Strategy<Value = Expr> {
        (0..ATTRIBUTES.len(), any::<prop::sample::Index>())
            .prop_flat_map(|(ai, oi)| {
                let a = &ATTRIBUTES[ai];
                let ops = a.value_type.operators();
                let op = ops[oi.index(ops.len())];
                let n = match op.arity() {
                    Some(n) => n..n + 1,
                    None => 1..4,
                };
                let values = prop::collection::vec(arb_value(a.value_type), n);
                (Just(a), Just(op), values)
            })
            .prop_filter("enumerations take their values", |(a, op, v)| {
                let valid = |s: &str| match a.name {
                    "type" => ActivityType::parse(s).is_some(),
                    "source" => SOURCES.contains(&s),
                    _ => true,
                };
                op.arity() == Some(0) || v.iter().all(|v| matches!(v, Value::Text(s) if valid(s)))
            })
            .prop_map(|(attribute, op, values)| {
                Expr::Cond(Condition {
                    attribute,
                    op,
                    values,
                })
            })
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        arb_cond().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn canonical_text_parses_back_to_the_same_tree(e in arb_expr()) {
            let text = e.to_string();
            let back = parse(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
            // Nested ands and ors are written in parentheses, so they come back as they were.
            prop_assert_eq!(back, Some(e), "{}", text);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
            if let Err(e) = parse(&s) {
                prop_assert!(e.position <= s.chars().count());
            }
        }

        #[test]
        fn filter_like_text_never_panics(
            parts in prop::collection::vec(prop_oneof![
                Just("comm"), Just("pid"), Just("="), Just("!="), Just("("), Just(")"),
                Just("and"), Just("or"), Just("not"), Just("in"), Just(","), Just("\""),
                Just("'"), Just("\\"), Just("exists"), Just("starts"), Just("with"),
                Just("1"), Just("x"), Just("contains"), Just(" "), Just("<"), Just(">="),
            ], 0..30)
        ) {
            let s: String = parts.join(" ");
            match parse(&s) {
                Err(e) => prop_assert!(e.position <= s.chars().count()),
                Ok(None) => {}
                Ok(Some(e)) => prop_assert_eq!(parse(&e.to_string()).unwrap(), Some(e)),
            }
        }
    }
}

//! `activity-audit`: the query API from a terminal.
//!
//! ```text
//! activity-audit query 'comm="bash" and kubernetes.namespace.name="shop"' --last 1h
//! activity-audit trace ENTRY_ID
//! activity-audit tail 'type = kubernetes'
//! ```
//!
//! Output is a table, or JSON lines with `--output json`. The server and token come from
//! `--url`/`AA_URL` and `--token`/`AA_TOKEN`. Exit codes: 0 ok, 1 failure, 2 the request was
//! refused (bad filter, no permission).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "activity-audit",
    about = "Search Activity Audit from the terminal"
)]
struct Cli {
    /// Query API base URL.
    #[arg(
        long,
        env = "AA_URL",
        default_value = "http://127.0.0.1:9420",
        global = true
    )]
    url: String,
    /// Bearer token.
    #[arg(long, env = "AA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(clap::Args)]
struct Select {
    /// Filter, e.g. 'comm="bash" and kubernetes.namespace.name="shop"'.
    #[arg(default_value = "")]
    filter: String,
    /// Data sources (command, connection, fileaccess, kubernetes); repeatable.
    #[arg(long, short = 't', value_delimiter = ',')]
    types: Vec<String>,
    /// Scope (filter language), and-ed with the filter.
    #[arg(long)]
    scope: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Entries matching a filter, newest first.
    Query {
        #[command(flatten)]
        select: Select,
        /// How far back: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h", conflicts_with = "from")]
        last: String,
        /// Start: ns since epoch or RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// End: ns since epoch or RFC 3339 (default now).
        #[arg(long)]
        to: Option<String>,
        /// Most entries to print.
        #[arg(long, short = 'n', default_value_t = 100)]
        limit: u64,
    },
    /// The session an entry belongs to: who started it, then everything it did.
    Trace { id: String },
    /// One entry with every attribute.
    Get { id: String },
    /// New entries as they arrive.
    Tail {
        #[command(flatten)]
        select: Select,
    },
}

/// A refusal by the server (4xx): printed, exit code 2.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().with_context(|| format!("duration {s:?}"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => bail!("duration {s:?}: use s, m, h, d or w"),
    };
    Ok(n * secs * 1_000_000_000)
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| schemas::time::parse_rfc3339_ns(s))
        .with_context(|| format!("time {s:?}: give ns since epoch or RFC 3339"))
}

struct Client {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let r = self
            .http
            .get(format!(
                "{}/api/v1/activity{path}",
                self.url.trim_end_matches('/')
            ))
            .bearer_auth(&self.token)
            .query(params)
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let mut msg = format!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("no message")
        );
        // point at a filter error
        if let (Some(pos), Some(param)) = (body["position"].as_u64(), body["parameter"].as_str())
            && let Some((_, text)) = params.iter().find(|(k, _)| *k == param)
        {
            msg.push_str(&format!("\n  {text}\n  {}^", " ".repeat(pos as usize)));
        }
        if status.is_client_error() {
            return Err(Refused(msg).into());
        }
        bail!(msg)
    }

    async fn json(&self, path: &str, params: &[(&str, String)]) -> anyhow::Result<Value> {
        Ok(self.get(path, params).await?.json().await?)
    }
}

fn select_params(s: &Select) -> Vec<(&'static str, String)> {
    let mut p = vec![("filter", s.filter.clone())];
    p.extend(s.types.iter().map(|t| ("types", t.clone())));
    if let Some(sc) = &s.scope {
        p.push(("scope", sc.clone()));
    }
    p
}

fn text(e: &Value, key: &str) -> String {
    match &e[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// Where an entry happened: cluster/namespace/pod, or the host.
fn location(e: &Value) -> String {
    let pod = text(e, "kubernetes.pod.name");
    if pod.is_empty() {
        return text(e, "hostname");
    }
    format!(
        "{}/{}/{pod}",
        text(e, "kubernetes.cluster.name"),
        text(e, "kubernetes.namespace.name")
    )
}

/// What happened, in one line.
fn summary(e: &Value) -> String {
    match e["type"].as_str().unwrap_or_default() {
        "command" => format!("{} ({})", text(e, "cmdline"), text(e, "username")),
        "connection" => format!(
            "{} {} {}:{} -> {}:{}",
            text(e, "comm"),
            text(e, "direction"),
            text(e, "clientIp"),
            text(e, "clientPort"),
            text(e, "serverIp"),
            text(e, "serverPort")
        ),
        "fileaccess" => format!(
            "{} {} {}",
            text(e, "comm"),
            text(e, "permissions"),
            text(e, "filename")
        ),
        "kubernetes" => format!(
            "{} {} {} {}",
            text(e, "user.username"),
            text(e, "subResource"),
            text(e, "container"),
            text(e, "command")
        ),
        _ => String::new(),
    }
}

fn time(e: &Value) -> String {
    schemas::time::format_rfc3339_ns(e["timestamp"].as_i64().unwrap_or(0))
}

fn print_entry(out: &mut impl Write, o: Output, e: &Value, indent: usize) -> std::io::Result<()> {
    match o {
        Output::Json => writeln!(out, "{e}"),
        Output::Table => writeln!(
            out,
            "{}  {:<10}  {:<40}  {}{}",
            time(e),
            text(e, "type"),
            location(e),
            "  ".repeat(indent),
            summary(e)
        ),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let token = cli
        .token
        .clone()
        .context("no token: give --token or set AA_TOKEN")?;
    let client = Client {
        url: cli.url.clone(),
        token,
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Query {
            select,
            last,
            from,
            to,
            limit,
        } => {
            let to = match to {
                Some(t) => parse_time(&t)?,
                None => query_api::query::now_ns() + 1,
            };
            let from = match from {
                Some(f) => parse_time(&f)?,
                None => to - parse_duration(&last)?,
            };
            let base = select_params(&select);
            let mut printed = 0;
            let mut cursor: Option<String> = None;
            while printed < limit {
                let mut p = base.clone();
                p.push(("limit", (limit - printed).min(1000).to_string()));
                match &cursor {
                    Some(c) => p.push(("cursor", c.clone())),
                    None => {
                        p.push(("from", from.to_string()));
                        p.push(("to", to.to_string()));
                    }
                }
                let page = client.json("/entries", &p).await?;
                if cursor.is_none() && cli.output == Output::Table {
                    let more = if page["page"]["totalExact"] == false {
                        "more than "
                    } else {
                        ""
                    };
                    eprintln!("{more}{} entries in range", page["page"]["total"]);
                }
                for e in page["data"].as_array().into_iter().flatten() {
                    print_entry(&mut out, cli.output, e, 0)?;
                    printed += 1;
                }
                match page["page"]["next"].as_str() {
                    Some(n) => cursor = Some(n.to_string()),
                    None => break,
                }
            }
        }
        Command::Get { id } => {
            let e = client.json(&format!("/entries/{id}"), &[]).await?;
            match cli.output {
                Output::Json => writeln!(out, "{e}")?,
                Output::Table => {
                    for k in e.as_object().into_iter().flat_map(|o| o.keys()) {
                        writeln!(out, "{k:<28} {}", text(&e, k).replace('\n', " "))?;
                    }
                }
            }
        }
        Command::Trace { id } => {
            let t = client.json(&format!("/entries/{id}/trace"), &[]).await?;
            if cli.output == Output::Json {
                writeln!(out, "{t}")?;
                return Ok(());
            }
            let r = &t["trace"];
            let who = if t["originRedacted"] == true {
                "(not visible to you)".to_string()
            } else {
                format!(
                    "{} groups={} from={} agent={}",
                    text(r, "user"),
                    r["groups"],
                    r["sourceAddresses"],
                    text(r, "userAgent")
                )
            };
            writeln!(out, "trace      {}", text(r, "traceId"))?;
            writeln!(out, "session    {} {}", text(r, "kind"), text(r, "command"))?;
            writeln!(out, "who        {who}")?;
            let place = if text(r, "pod").is_empty() {
                text(r, "hostname")
            } else {
                format!(
                    "{}/{}/{} container {}",
                    text(r, "cluster"),
                    text(r, "namespace"),
                    text(r, "pod"),
                    text(r, "container")
                )
            };
            writeln!(out, "where      {place}")?;
            writeln!(out, "confidence {} {}", r["confidence"], text(r, "reason"))?;
            writeln!(
                out,
                "activity   {} commands, {} connections, {} file accesses\n",
                r["commands"], r["connections"], r["fileaccesses"]
            )?;
            // indent by depth in the process tree
            let entries = t["entries"].as_array().cloned().unwrap_or_default();
            let parent: std::collections::HashMap<String, String> = entries
                .iter()
                .filter_map(|e| Some((text(e, "id"), e["parentEntryId"].as_str()?.to_string())))
                .collect();
            for e in &entries {
                let mut depth = 0;
                let mut at = text(e, "id");
                while let Some(p) = parent.get(&at) {
                    depth += 1;
                    at = p.clone();
                    if depth > 64 {
                        break;
                    }
                }
                print_entry(&mut out, Output::Table, e, depth)?;
            }
            let ambiguous = t["ambiguous"].as_array().map_or(0, |a| a.len());
            if ambiguous > 0 {
                writeln!(
                    out,
                    "\n{ambiguous} entries may belong to this session or another one"
                )?;
            }
        }
        Command::Tail { select } => {
            let mut resp = client.get("/stream", &select_params(&select)).await?;
            let mut buf = String::new();
            while let Some(chunk) = resp.chunk().await? {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    let field = |name: &str| {
                        event
                            .lines()
                            .find_map(|l| l.strip_prefix(name).map(str::trim_start))
                    };
                    match (field("event:"), field("data:")) {
                        (Some("entry"), Some(data)) => {
                            let e: Value = serde_json::from_str(data)?;
                            print_entry(&mut out, cli.output, &e, 0)?;
                            out.flush()?;
                        }
                        (Some("error"), Some(data)) => eprintln!("server: {data}"),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("activity-audit: {e:#}");
        let refused = e.downcast_ref::<Refused>().is_some();
        std::process::exit(if refused { 2 } else { 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("90s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000_000_000);
        assert!(parse_duration("2y").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_time("5").unwrap(), 5);
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}

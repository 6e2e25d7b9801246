//! Ingest configuration (`AA_INGEST__…` environment overrides).

use pipeline::config::{KafkaConfig, OpsConfig};
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// gRPC (`Ingest` service) listen address.
    pub grpc_listen: SocketAddr,
    pub kafka: KafkaConfig,
    pub topics: Topics,
    /// Token file (TOML, see `auth`); re-read when it changes.
    pub tokens_file: PathBuf,
    /// Largest request body accepted, after decompression, in bytes (413 beyond; for gRPC,
    /// the largest message).
    pub max_body_bytes: usize,
    /// Largest single event, in bytes of JSON (rejected item beyond).
    pub max_event_bytes: usize,
    /// `Retry-After` seconds sent with 503.
    pub retry_after_secs: u32,
    pub activity: ActivityConfig,
    pub ops: OpsConfig,
}

/// Which agent events are activity (brief §1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    /// Keep only what interactive processes do (a tty, a login shell, exec'd into a container,
    /// ssh/telnet connections). `false` keeps every Falco and Tetragon event of the supported
    /// kinds (much more data).
    pub interactive_only: bool,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            interactive_only: true,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9410)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 9411)),
            kafka: KafkaConfig {
                produce_timeout_ms: 10_000,
                ..KafkaConfig::default()
            },
            topics: Topics::default(),
            tokens_file: PathBuf::from("deploy/local/tokens.toml"),
            max_body_bytes: 32 << 20,
            max_event_bytes: 256 << 10,
            retry_after_secs: 5,
            activity: ActivityConfig::default(),
            ops: OpsConfig::on_port(9419),
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        if self.max_body_bytes < 1024 || self.max_event_bytes < 1024 {
            anyhow::bail!("max_body_bytes and max_event_bytes must be at least 1024");
        }
        if self.max_event_bytes > self.max_body_bytes {
            anyhow::bail!("max_event_bytes must not exceed max_body_bytes");
        }
        Ok(())
    }
}

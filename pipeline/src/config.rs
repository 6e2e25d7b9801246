//! Typed configuration: a TOML file overridden by environment variables, e.g.
//! `AA_INGEST__KAFKA__BROKERS=host:9092` sets `kafka.brokers` of the ingest service.
//! Structs use `deny_unknown_fields`, so a typo in a file fails start-up with its name.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// Loads `T` from its defaults, then `path` (if any), then `<env_prefix>__…` variables.
pub fn load<T>(path: Option<&Path>, env_prefix: &str) -> anyhow::Result<T>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(p) = path {
        if !p.exists() {
            anyhow::bail!("config file {} does not exist", p.display());
        }
        fig = fig.merge(Toml::file(p));
    }
    fig = fig.merge(Env::prefixed(&format!("{env_prefix}__")).split("__"));
    fig.extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

/// How to reach Kafka. `options` are passed to librdkafka verbatim (e.g. TLS/SASL settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated.
    pub brokers: String,
    /// Extra librdkafka properties.
    pub options: BTreeMap<String, String>,
    /// How long a produce may wait for the broker's acknowledgement, in milliseconds.
    pub produce_timeout_ms: u64,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// takes its partitions back at once instead of waiting out the dead member's session.
    /// Use a stable name per replica (e.g. the StatefulSet pod name); empty disables it.
    pub instance_id: String,
    /// Consumer group session timeout, milliseconds.
    pub session_timeout_ms: u64,
    /// Idempotent producer (default on). Brokers without KIP-360 epoch bumps (tansu 0.6) fail
    /// after a delivery timeout with it on; off, a librdkafka retry may write a message twice,
    /// which the deterministic event ids make invisible to readers.
    pub idempotence: bool,
    /// How long the producer waits to fill a batch, ms (`linger.ms`): more batches fewer
    /// requests and less client CPU; each hop adds at most this much latency.
    pub linger_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            options: BTreeMap::new(),
            produce_timeout_ms: 30_000,
            instance_id: String::new(),
            session_timeout_ms: 45_000,
            idempotence: true,
            linger_ms: 5,
        }
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.brokers.trim().is_empty() {
            anyhow::bail!("kafka.brokers must not be empty");
        }
        if self.produce_timeout_ms == 0 {
            anyhow::bail!("kafka.produce_timeout_ms must be positive");
        }
        Ok(())
    }
}

/// Where the ops endpoints (`/healthz`, `/readyz`, `/metrics`) listen.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    pub listen: SocketAddr,
}

impl OpsConfig {
    pub fn on_port(port: u16) -> Self {
        OpsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self::on_port(0)
    }
}

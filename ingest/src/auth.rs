//! Bearer tokens. Each token is bound to exactly one tenant and one cluster; the events it
//! sends are stamped with those, whatever the payload says. The token file is TOML:
//!
//! ```toml
//! [[token]]
//! sha256 = "9f86d0…"         # hex SHA-256 of the token (preferred), or:
//! # token = "plain-text"     # for local development only
//! tenant = "acme"
//! cluster = "prod-eu"
//! ```
//! Lookups hash the presented token and compare digests, so the token itself is never kept
//! in memory tables or logged. The file is re-read when its modification time changes.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Who is calling: stamped on every event it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant: String,
    pub cluster: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    sha256: Option<String>,
    token: Option<String>,
    tenant: String,
    cluster: String,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token table, shared and hot-reloadable.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<RwLock<HashMap<[u8; 32], Identity>>>);

impl Tokens {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let t = Tokens::default();
        t.reload(path)?;
        Ok(t)
    }

    pub fn parse(text: &str) -> anyhow::Result<HashMap<[u8; 32], Identity>> {
        let file: TokenFile = toml::from_str(text)?;
        let mut map = HashMap::new();
        for (i, e) in file.token.into_iter().enumerate() {
            let key = match (e.sha256, e.token) {
                (Some(h), None) => {
                    let bytes = hex::decode(h.trim())
                        .map_err(|_| anyhow::anyhow!("token #{}: sha256 is not hex", i + 1))?;
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| anyhow::anyhow!("token #{}: sha256 must be 32 bytes", i + 1))?
                }
                (None, Some(t)) if !t.is_empty() => digest(&t),
                _ => anyhow::bail!("token #{}: give exactly one of sha256 or token", i + 1),
            };
            if e.tenant.is_empty() || e.cluster.is_empty() {
                anyhow::bail!("token #{}: tenant and cluster must not be empty", i + 1);
            }
            map.insert(
                key,
                Identity {
                    tenant: e.tenant,
                    cluster: e.cluster,
                },
            );
        }
        Ok(map)
    }

    pub fn reload(&self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
        let map = Self::parse(&text)
            .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?;
        let n = map.len();
        *self.0.write().unwrap() = map;
        tracing::info!(tokens = n, file = %path.display(), "token file loaded");
        Ok(())
    }

    /// Identity of the bearer of `token`, if any.
    pub fn identify(&self, token: &str) -> Option<Identity> {
        self.0.read().unwrap().get(&digest(token)).cloned()
    }

    /// Re-reads the file when it changes; a broken file keeps the previous table.
    pub fn watch(self, path: PathBuf, shutdown: pipeline::shutdown::Shutdown) {
        tokio::spawn(async move {
            let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let mut last: Option<SystemTime> = mtime(&path);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                let now = mtime(&path);
                if now != last {
                    last = now;
                    if let Err(e) = self.reload(&path) {
                        tracing::error!(error = %e, "token file not reloaded; keeping the previous tokens");
                    }
                }
            }
        });
    }
}

/// Extracts the bearer token from an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, rest) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_identities() {
        let hashed = hex::encode(digest("s3cret"));
        let text = format!(
            "[[token]]\nsha256 = \"{hashed}\"\ntenant = \"acme\"\ncluster = \"prod\"\n\
             [[token]]\ntoken = \"dev\"\ntenant = \"acme\"\ncluster = \"dev\"\n"
        );
        let t = Tokens::default();
        *t.0.write().unwrap() = Tokens::parse(&text).unwrap();
        assert_eq!(t.identify("s3cret").unwrap().cluster, "prod");
        assert_eq!(t.identify("dev").unwrap().cluster, "dev");
        assert!(t.identify("nope").is_none());
        assert!(Tokens::parse("[[token]]\ntenant=\"a\"\ncluster=\"b\"\n").is_err());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}

//! Who is asking: a bearer token becomes a [`Principal`] — the tenant whose data it reads, the
//! team's scope (a filter and-ed into every query) and the data sources it may read.
//!
//! Two kinds of token: opaque tokens listed in a token file (the local stack; only their
//! SHA-256 needs to be stored), and JWTs signed by the install's identity provider (claims
//! `tenant`, `scope`, `permissions`; HS256, RS256 or ES256, with issuer and audience checks).
//! Tokens never reach the logs.

use crate::error::ApiError;
use schemas::ActivityType;
use schemas::filter::{self, Expr};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Permission names and the data source each grants.
pub const PERMISSIONS: [(&str, ActivityType); 4] = [
    ("commands.read", ActivityType::Command),
    ("connections.read", ActivityType::Connection),
    ("fileaccesses.read", ActivityType::Fileaccess),
    ("kubernetes.read", ActivityType::Kubernetes),
];

/// The permission that grants reading `t`.
pub fn permission_of(t: ActivityType) -> &'static str {
    PERMISSIONS.iter().find(|(_, x)| *x == t).unwrap().0
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    /// Team or subject name, for logs.
    pub team: String,
    /// The team's scope, and-ed into everything it reads.
    pub scope: Option<Expr>,
    /// Data sources the caller may read, in [`ActivityType::ALL`] order.
    pub grants: Vec<ActivityType>,
}

impl Principal {
    pub fn may_read(&self, t: ActivityType) -> bool {
        self.grants.contains(&t)
    }
}

/// JWT verification settings (`[jwt]` in the config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: String,
    /// The HMAC secret (HS256) or the PEM public key (RS256, ES256).
    pub key_file: PathBuf,
    /// Required `iss`, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// One `[[token]]` of the token file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: Option<String>,
    sha256: Option<String>,
    tenant: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    /// Default: every data source.
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Claims {
    tenant: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

/// Turns bearer tokens into principals.
pub struct Authenticator {
    tokens: HashMap<[u8; 32], Principal>,
    jwt: Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Authenticator({} tokens, jwt: {})",
            self.tokens.len(),
            self.jwt.is_some()
        )
    }
}

fn grants(permissions: &[String]) -> Result<Vec<ActivityType>, String> {
    for p in permissions {
        if !PERMISSIONS.iter().any(|(name, _)| name == p) {
            return Err(format!(
                "unknown permission {p:?} (known: commands.read, connections.read, fileaccesses.read, kubernetes.read)"
            ));
        }
    }
    Ok(PERMISSIONS
        .iter()
        .filter(|(name, _)| permissions.iter().any(|p| p == name))
        .map(|(_, t)| *t)
        .collect())
}

fn scope(text: Option<&str>) -> Result<Option<Expr>, String> {
    match text {
        None => Ok(None),
        Some(s) => filter::parse(s).map_err(|e| format!("scope: {e}")),
    }
}

impl Authenticator {
    /// Loads the token file and the JWT key; every token's scope and permissions are checked
    /// here, so a bad one stops start-up instead of failing requests.
    pub fn load(tokens_file: &Path, jwt: Option<&JwtConfig>) -> anyhow::Result<Authenticator> {
        let text = std::fs::read_to_string(tokens_file)
            .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", tokens_file.display()))?;
        let file: TokenFile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("token file {}: {e}", tokens_file.display()))?;
        let mut tokens = HashMap::new();
        for (i, e) in file.token.into_iter().enumerate() {
            let at = |m: String| anyhow::anyhow!("token file, token #{}: {m}", i + 1);
            let key: [u8; 32] = match (&e.token, &e.sha256) {
                (Some(t), None) => Sha256::digest(t.as_bytes()).into(),
                (None, Some(h)) => hex::decode(h)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| at("sha256 must be 64 hex digits".into()))?,
                _ => return Err(at("give exactly one of token or sha256".into())),
            };
            let all: Vec<String> = PERMISSIONS.iter().map(|(p, _)| p.to_string()).collect();
            let principal = Principal {
                team: e.team.clone().unwrap_or_else(|| e.tenant.clone()),
                tenant: e.tenant,
                scope: scope(e.scope.as_deref()).map_err(at)?,
                grants: grants(e.permissions.as_ref().unwrap_or(&all)).map_err(at)?,
            };
            tokens.insert(key, principal);
        }
        let jwt = jwt.map(load_jwt).transpose()?;
        Ok(Authenticator { tokens, jwt })
    }

    /// The principal of an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Unauthenticated("missing bearer token".into()))?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(p) = self.tokens.get(&key) {
            return Ok(p.clone());
        }
        match &self.jwt {
            Some((key, validation)) if token.matches('.').count() == 2 => {
                let data = jsonwebtoken::decode::<Claims>(token, key, validation)
                    .map_err(|e| ApiError::Unauthenticated(format!("invalid token: {e}")))?;
                let c = data.claims;
                let bad = |m: String| ApiError::Unauthenticated(format!("invalid token: {m}"));
                Ok(Principal {
                    team: c.sub.unwrap_or_else(|| c.tenant.clone()),
                    scope: scope(c.scope.as_deref()).map_err(bad)?,
                    grants: grants(&c.permissions).map_err(bad)?,
                    tenant: c.tenant,
                })
            }
            _ => Err(ApiError::Unauthenticated("unknown token".into())),
        }
    }
}

fn load_jwt(
    cfg: &JwtConfig,
) -> anyhow::Result<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let key = std::fs::read(&cfg.key_file)
        .map_err(|e| anyhow::anyhow!("reading JWT key {}: {e}", cfg.key_file.display()))?;
    let (alg, key) = match cfg.algorithm.as_str() {
        "HS256" => (Algorithm::HS256, DecodingKey::from_secret(&key)),
        "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(&key)?),
        "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(&key)?),
        other => anyhow::bail!("jwt.algorithm {other:?}: use HS256, RS256 or ES256"),
    };
    let mut v = Validation::new(alg);
    v.set_required_spec_claims(&["exp"]);
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
    }
    match &cfg.audience {
        Some(aud) => v.set_audience(&[aud]),
        None => v.validate_aud = false,
    }
    Ok((key, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("aa-auth-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn token_file_scopes_and_permissions() {
        let d = dir();
        let f = write(
            &d,
            "t1.toml",
            r#"
[[token]]
token = "all"
tenant = "a"
[[token]]
sha256 = "2304fcda2bf82779c69d1100357cc0d7af66ee39d6fc1e1ae7a77cb7477f4943"
tenant = "a"
team = "shop"
scope = 'kubernetes.namespace.name = "shop"'
permissions = ["commands.read", "kubernetes.read"]
"#,
        );
        let auth = Authenticator::load(&f, None).unwrap();
        let all = auth.authenticate(Some("Bearer all")).unwrap();
        assert_eq!(all.grants, ActivityType::ALL.to_vec());
        assert!(all.scope.is_none());
        // the second entry is stored as sha256("team-token")
        let team = auth.authenticate(Some("Bearer team-token")).unwrap();
        assert_eq!(team.team, "shop");
        assert_eq!(
            team.grants,
            vec![ActivityType::Command, ActivityType::Kubernetes]
        );
        assert_eq!(
            team.scope.unwrap().to_string(),
            "kubernetes.namespace.name = \"shop\""
        );
        assert!(auth.authenticate(Some("Bearer foo")).is_err());
        assert!(matches!(
            auth.authenticate(None),
            Err(ApiError::Unauthenticated(_))
        ));
        assert!(auth.authenticate(Some("Basic all")).is_err());
        let bad = write(
            &d,
            "t2.toml",
            "[[token]]\ntoken = \"x\"\ntenant = \"a\"\nscope = \"comn = 1\"\n",
        );
        let e = Authenticator::load(&bad, None).unwrap_err().to_string();
        assert!(e.contains("token #1") && e.contains("comn"), "{e}");
        let bad = write(
            &d,
            "t3.toml",
            "[[token]]\ntoken = \"x\"\ntenant = \"a\"\npermissions = [\"all\"]\n",
        );
        assert!(
            Authenticator::load(&bad, None)
                .unwrap_err()
                .to_string()
                .contains("unknown permission")
        );
    }

    #[test]
    fn jwt_claims_become_a_principal() {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let d = dir();
        let tokens = write(&d, "none.toml", "");
        let key = write(&d, "secret", "s3cret");
        let cfg = JwtConfig {
            algorithm: "HS256".into(),
            key_file: key,
            issuer: Some("idp".into()),
            audience: None,
        };
        let auth = Authenticator::load(&tokens, Some(&cfg)).unwrap();
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let sign = |claims: serde_json::Value, secret: &str| {
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let good = sign(
            serde_json::json!({"tenant": "t", "sub": "team-a", "iss": "idp", "exp": exp,
                "scope": "kubernetes.cluster.name = prod", "permissions": ["commands.read"]}),
            "s3cret",
        );
        let p = auth.authenticate(Some(&format!("Bearer {good}"))).unwrap();
        assert_eq!((p.tenant.as_str(), p.team.as_str()), ("t", "team-a"));
        assert_eq!(p.grants, vec![ActivityType::Command]);
        assert!(p.scope.is_some());
        for bad in [
            sign(
                serde_json::json!({"tenant": "t", "iss": "idp", "exp": exp}),
                "wrong",
            ),
            sign(
                serde_json::json!({"tenant": "t", "iss": "other", "exp": exp}),
                "s3cret",
            ),
            sign(
                serde_json::json!({"tenant": "t", "iss": "idp", "exp": 1}),
                "s3cret",
            ),
            sign(serde_json::json!({"tenant": "t", "iss": "idp"}), "s3cret"),
            sign(
                serde_json::json!({"tenant": "t", "iss": "idp", "exp": exp, "scope": "(("}),
                "s3cret",
            ),
        ] {
            assert!(
                matches!(
                    auth.authenticate(Some(&format!("Bearer {bad}"))),
                    Err(ApiError::Unauthenticated(_))
                ),
                "{bad}"
            );
        }
    }
}

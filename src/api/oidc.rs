//! JWT bearer tokens from an OAuth2/OIDC issuer, verified against its JWKS.
//!
//! The JWKS address comes from the issuer's discovery document (`/.well-known/openid-configuration`,
//! or RFC 8414's `/.well-known/oauth-authorization-server`, which FlyteAdmin's own authorization
//! server serves). The key set is cached; a token whose `kid` is not in it makes us fetch it again,
//! at most once per `refetchInterval`, so that a key rotation at the issuer is picked up without a
//! restart, and made-up key ids cannot turn us into a flood against the issuer.
//!
//! Only asymmetric algorithms are accepted: with HS* the "key" would be the public JWKS, and
//! `none` is no signature at all. `exp`, `nbf`, `iss` and `aud` are checked, with `leeway`.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::authz::Identity;
use crate::config::OidcConfig;

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Discovery and JWKS answers larger than this are refused: a key set is a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<JwkSet>,
    /// The discovery document as last read: the console's login needs its endpoints.
    discovery: RwLock<Option<Value>>,
    /// When we last fetched (or tried to), for the refetch rate limit; None before the first.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Why a token was refused: said to the caller (UNAUTHENTICATED) and logged. Never the token.
pub type Refusal = String;

/// The issuer's endpoints for a browser's login.
#[derive(Debug, Clone)]
pub struct LoginEndpoints {
    pub authorization: String,
    pub token: String,
}

impl Oidc {
    /// Fetches discovery and the key set once; when the issuer cannot be reached now, the service
    /// starts anyway (so that an issuer outage does not keep static tokens from working) and
    /// tries again on the first JWT.
    pub async fn start(config: OidcConfig) -> Arc<Oidc> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .expect("a reqwest client with rustls builds");
        let oidc = Arc::new(Oidc {
            config,
            http,
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            discovery: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        });
        match oidc.refetch(true).await {
            Ok(count) => tracing::info!(
                issuer = %oidc.config.issuer,
                keys = count,
                "OIDC bearer tokens are accepted"
            ),
            Err(e) => tracing::error!(
                issuer = %oidc.config.issuer,
                error = %e,
                "cannot read the OIDC issuer's keys yet; JWTs are refused until it answers"
            ),
        }
        oidc
    }

    fn issuer(&self) -> &str {
        self.config.issuer.trim_end_matches('/')
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url}: more than {MAX_DOCUMENT_BYTES} bytes"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// The issuer's discovery document: OIDC's first, then RFC 8414's. Kept for `endpoints`.
    async fn discover(&self) -> Result<Value, String> {
        let mut errors = Vec::new();
        for well_known in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            match self
                .get_json(&format!("{}{well_known}", self.issuer()))
                .await
            {
                Ok(doc) => {
                    // The document must be the issuer's own (OIDC Discovery 4.3).
                    let named = doc["issuer"].as_str().unwrap_or("").trim_end_matches('/');
                    if named != self.issuer() {
                        errors.push(format!(
                            "{well_known} names issuer {named:?}, not {:?}",
                            self.issuer()
                        ));
                        continue;
                    }
                    if doc["jwks_uri"].as_str().is_none() {
                        errors.push(format!("{well_known} has no jwks_uri"));
                        continue;
                    }
                    *self.discovery.write().expect("discovery lock poisoned") = Some(doc.clone());
                    return Ok(doc);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// Fetches the key set unless one was fetched within the interval (unless `force`); returns
    /// how many keys there are now.
    async fn refetch(&self, force: bool) -> Result<usize, String> {
        let mut last = self.last_fetch.lock().await;
        if !force
            && let Some(at) = *last
            && at.elapsed() < self.config.refetch_interval
        {
            return Err("fetched within refetchInterval; not again yet".into());
        }
        *last = Some(Instant::now());
        let doc = self.discover().await?;
        let uri = doc["jwks_uri"].as_str().unwrap_or_default().to_string();
        let set: JwkSet = serde_json::from_value(self.get_json(&uri).await?)
            .map_err(|e| format!("{uri}: not a JWK set: {e}"))?;
        let count = set.keys.len();
        *self.keys.write().expect("JWKS lock poisoned") = set;
        Ok(count)
    }

    /// Where a browser logs in (authorization code with PKCE) and where the code is exchanged,
    /// from the discovery document; read again if the issuer has not answered yet.
    pub async fn endpoints(&self) -> Result<LoginEndpoints, String> {
        let known = self
            .discovery
            .read()
            .expect("discovery lock poisoned")
            .clone();
        let doc = match known {
            Some(doc) => doc,
            None => self.discover().await?,
        };
        let field = |name: &str| {
            doc[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("the issuer's discovery document has no {name}"))
        };
        Ok(LoginEndpoints {
            authorization: field("authorization_endpoint")?,
            token: field("token_endpoint")?,
        })
    }

    /// The HTTP client the verifier uses (timeouts, size-checked reads): the console's code
    /// exchange goes to the same issuer.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        let keys = self.keys.read().expect("JWKS lock poisoned");
        match kid {
            Some(kid) => keys.find(kid).cloned(),
            // Without a kid, only an issuer with a single key is unambiguous.
            None if keys.keys.len() == 1 => keys.keys.first().cloned(),
            None => None,
        }
    }

    /// Whether this looks like a JWT at all (three dot-separated parts), so that the auth layer
    /// tells it from a static token without trying to verify every static token as one.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// The identity a valid token names, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "the bearer token is not a JWT signed with an accepted algorithm (RS*, PS*, ES256, ES384, EdDSA)".to_string())?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(format!(
                "JWT algorithm {:?} is not accepted; only asymmetric ones are",
                header.alg
            ));
        }
        let kid = header.kid.as_deref();
        let jwk = match self.find(kid) {
            Some(jwk) => jwk,
            None => {
                // A key we do not know: perhaps the issuer rotated. Ask again (rate-limited).
                if let Err(e) = self.refetch(false).await {
                    tracing::debug!(error = %e, "JWKS not refetched");
                }
                self.find(kid).ok_or_else(|| {
                    format!(
                        "the JWT's key {} is not in the issuer's key set",
                        kid.map(|k| format!("{k:?}")).unwrap_or("(no kid)".into())
                    )
                })?
            }
        };
        if let Some(key_alg) = jwk.common.key_algorithm
            && key_alg.to_string() != format!("{:?}", header.alg)
        {
            return Err(format!(
                "the JWT says {:?}, but its key is for {key_alg}",
                header.alg
            ));
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| format!("the issuer's key {kid:?} cannot be used: {e}"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| format!("the JWT is not valid here: {}", describe(&e)))?;
        Ok(identity(&data.claims, &self.config.groups_claim))
    }
}

/// The error in words, never the token (jsonwebtoken's messages do not include it).
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "it has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "it is from another issuer (iss)".into(),
        ErrorKind::InvalidAudience => "it is for another audience (aud)".into(),
        ErrorKind::InvalidSignature => "its signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("it has no {c} claim"),
        other => format!("{other:?}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The claims rules match on. `client_id` is RFC 9068's, `azp` OIDC's (Okta, Keycloak, Azure AD
/// put the client there); `scope` is a space-separated string, `scp` a list (Okta, Azure AD).
fn identity(claims: &Value, groups_claim: &str) -> Identity {
    let client_id = claims["client_id"]
        .as_str()
        .or_else(|| claims["azp"].as_str())
        .map(str::to_string);
    let mut scopes = strings(&claims["scope"]);
    scopes.extend(strings(&claims["scp"]));
    Identity::Jwt {
        subject: claims["sub"].as_str().unwrap_or("").to_string(),
        client_id,
        groups: strings(&claims[groups_claim]),
        scopes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_give_client_groups_and_scopes_in_either_spelling() {
        let claims = serde_json::json!({
            "sub": "svc", "azp": "flytepropeller", "groups": ["oncall"],
            "scope": "all offline", "scp": ["notify"]
        });
        assert_eq!(
            identity(&claims, "groups"),
            Identity::Jwt {
                subject: "svc".into(),
                client_id: Some("flytepropeller".into()),
                groups: vec!["oncall".into()],
                scopes: vec!["all".into(), "offline".into(), "notify".into()],
            }
        );
    }
}

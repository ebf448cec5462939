//! Bearer-token authentication for every call, as a tower layer in front of all services: a call
//! without `authorization: Bearer <token>` is UNAUTHENTICATED, one with a token not on the list is
//! PERMISSION_DENIED. Health checks and reflection can be left open by config (load balancers and
//! grpcurl's `list` rarely carry tokens).
//!
//! Tokens come from a file (one per line, `#` comments) and/or an environment variable (comma
//! separated); either may name a token as `name: token`, and permission rules then refer to it
//! by that name. The file is re-read when it changes, so tokens rotate without a restart. Only
//! SHA-256 digests of the tokens are kept in memory, and no token is ever logged or echoed.
//!
//! With `flyteNotify.auth.oidc`, a bearer token that is not a static one and looks like a JWT is
//! verified against the issuer (see `oidc`); a JWT that fails is UNAUTHENTICATED with the reason.
//! Either way the caller's identity (never the token) goes into the request's extensions as an
//! `authz::Caller`, for the permission checks behind this layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tonic::Status;

use super::oidc::Oidc;
use crate::authz::{Caller, Identity, Permissions};
use crate::config::AuthConfig;

/// Token digests, each with its name ("" when the token has none).
type Digests = HashMap<[u8; 32], String>;

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `name: token` names a token; a plain line is an unnamed one, as before names existed. Only a
/// colon followed by a space separates, and the name must be a simple word, so that a token with
/// a colon in it (`abc:def`) stays one token.
fn split_name(entry: &str) -> (&str, &str) {
    if let Some((name, token)) = entry.split_once(": ")
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !token.trim().is_empty()
    {
        return (name, token.trim());
    }
    ("", entry)
}

fn parse_tokens(text: &str, separator: char) -> impl Iterator<Item = (&str, &str)> {
    text.split(separator)
        .flat_map(|line| line.split('\n'))
        .map(|t| t.split('#').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
        .map(split_name)
}

fn digests<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> Digests {
    entries
        .map(|(name, token)| (digest(token), name.to_string()))
        .collect()
}

/// The accepted tokens, and where they come from.
pub struct Tokens {
    digests: RwLock<Digests>,
    file: Option<PathBuf>,
    from_env: Digests,
}

impl Tokens {
    /// Reads the configured sources; an unreadable file or an empty list is an error, so that
    /// auth never silently lets nobody (or everybody) in.
    pub fn load(config: &AuthConfig) -> anyhow::Result<Arc<Tokens>> {
        let from_env: Digests = match &config.tokens_env_var {
            Some(name) => {
                let value = std::env::var(name).map_err(|_| {
                    anyhow::anyhow!("flyteNotify.auth.tokensEnvVar: {name} is not set")
                })?;
                digests(parse_tokens(&value, ','))
            }
            None => Digests::new(),
        };
        let tokens = Tokens {
            digests: RwLock::new(Digests::new()),
            file: config.tokens_file.clone(),
            from_env,
        };
        let count = tokens.reload()?;
        if count == 0 && (config.tokens_file.is_some() || config.tokens_env_var.is_some()) {
            anyhow::bail!(
                "flyteNotify.auth: no tokens in tokensFile or tokensEnvVar; every call would be refused"
            );
        }
        tracing::info!(tokens = count, "bearer-token authentication is on");
        Ok(Arc::new(tokens))
    }

    fn read_file(path: &Path) -> anyhow::Result<Digests> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("flyteNotify.auth.tokensFile {}: {e}", path.display()))?;
        Ok(digests(parse_tokens(&text, '\n')))
    }

    /// Re-reads the file; returns how many tokens are accepted now.
    fn reload(&self) -> anyhow::Result<usize> {
        let mut digests = self.from_env.clone();
        if let Some(path) = &self.file {
            digests.extend(Self::read_file(path)?);
        }
        let count = digests.len();
        *self.digests.write().expect("token lock poisoned") = digests;
        Ok(count)
    }

    /// The token's name when it is one of ours.
    fn name_of(&self, token: &str) -> Option<String> {
        self.digests
            .read()
            .expect("token lock poisoned")
            .get(&digest(token))
            .cloned()
    }

    /// Whether `token` is one of the accepted static tokens: the web console's login check.
    pub fn accepts(&self, token: &str) -> bool {
        self.name_of(token).is_some()
    }

    /// Re-reads the tokens file whenever its modification time changes, checking every `every`.
    /// A file that cannot be read keeps the tokens accepted until then, and says so.
    pub fn watch(self: Arc<Self>, every: Duration) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        tokio::spawn(async move {
            let mut seen: Option<SystemTime> = modified(&path);
            loop {
                tokio::time::sleep(every).await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match self.reload() {
                    Ok(count) => tracing::info!(tokens = count, "reloaded the tokens file"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "cannot reload the tokens file; the tokens read before stay accepted"
                    ),
                }
            }
        });
    }
}

/// Who a bearer token says is calling: a static token by its name, or a JWT verified against
/// the issuer; with the permission rules that apply to them. One for every face that takes
/// tokens (the gRPC port and the web console), so that none checks them differently.
pub struct Authenticator {
    tokens: Arc<Tokens>,
    oidc: Option<Arc<Oidc>>,
    permissions: Option<Arc<Permissions>>,
}

/// What a token is, as far as can be told without waiting.
enum Known {
    Caller(Identity),
    /// A JWT to verify (asynchronously: it may need the issuer's keys).
    Jwt,
    Refused(Status),
}

impl Authenticator {
    pub fn new(
        tokens: Arc<Tokens>,
        oidc: Option<Arc<Oidc>>,
        permissions: Option<Arc<Permissions>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tokens,
            oidc,
            permissions,
        })
    }

    fn known(&self, token: &str) -> Known {
        match self.tokens.name_of(token) {
            Some(name) => Known::Caller(Identity::Token { name }),
            None if self.oidc.is_some() && Oidc::looks_like_jwt(token) => Known::Jwt,
            None => Known::Refused(Status::permission_denied(
                "the bearer token is not one this service accepts",
            )),
        }
    }

    fn caller(&self, identity: Identity) -> Caller {
        Caller {
            identity,
            permissions: self.permissions.clone(),
        }
    }

    /// The caller `token` names, or the refusal to answer with: PERMISSION_DENIED for a token
    /// that is not ours, UNAUTHENTICATED with the reason for a JWT that does not verify.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, Status> {
        match self.known(token) {
            Known::Caller(identity) => Ok(self.caller(identity)),
            Known::Refused(status) => Err(status),
            Known::Jwt => {
                let oidc = self.oidc.as_ref().expect("a Jwt verdict only with oidc");
                match oidc.verify(token).await {
                    Ok(identity) => Ok(self.caller(identity)),
                    Err(reason) => {
                        tracing::info!(%reason, "refused a JWT bearer token");
                        Err(Status::unauthenticated(reason))
                    }
                }
            }
        }
    }

    /// The issuer's verifier, when JWTs are accepted: the console's login through the issuer
    /// needs its discovery document.
    pub fn oidc(&self) -> Option<&Arc<Oidc>> {
        self.oidc.as_ref()
    }
}

/// Which calls need a token, and who the token says is calling.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
    open_health: bool,
    open_reflection: bool,
}

/// What the layer makes of a request before it goes on.
enum Verdict {
    /// Open path: no token needed, no caller attached.
    Open,
    Caller(Identity),
    /// A JWT to verify (asynchronously: it may need the issuer's keys).
    Jwt(String),
    Refused(Status),
}

impl AuthLayer {
    pub fn new(authenticator: Arc<Authenticator>, config: &AuthConfig) -> Self {
        Self {
            authenticator,
            open_health: config.open_health,
            open_reflection: config.open_reflection,
        }
    }

    fn check<B>(&self, request: &http::Request<B>) -> Verdict {
        let path = request.uri().path();
        if (self.open_health && path.starts_with("/grpc.health.v1.Health/"))
            || (self.open_reflection && path.starts_with("/grpc.reflection."))
        {
            return Verdict::Open;
        }
        let header = request.headers().get(http::header::AUTHORIZATION);
        let token = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        match token {
            None if header.is_none() => Verdict::Refused(Status::unauthenticated(
                "this service needs a bearer token: send the metadata `authorization: Bearer <token>`",
            )),
            None => Verdict::Refused(Status::unauthenticated(
                "the authorization metadata is not of the form `Bearer <token>`",
            )),
            // Static tokens are answered without a task switch; only JWTs wait.
            Some(token) => match self.authenticator.known(token) {
                Known::Caller(identity) => Verdict::Caller(identity),
                Known::Jwt => Verdict::Jwt(token.to_string()),
                Known::Refused(status) => Verdict::Refused(status),
            },
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

fn refuse(refused: Status) -> http::Response<tonic::body::Body> {
    metrics::counter!(crate::telemetry::AUTH_REFUSED, "code" => format!("{:?}", refused.code()))
        .increment(1);
    refused.into_http()
}

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.layer.check(&request) {
            Verdict::Refused(refused) => Box::pin(async move { Ok(refuse(refused)) }),
            Verdict::Open => Box::pin(self.inner.call(request)),
            Verdict::Caller(identity) => {
                let caller = self.layer.authenticator.caller(identity);
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Verdict::Jwt(token) => {
                // The service polled ready is the one that must take the call; a clone stays.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let authenticator = self.layer.authenticator.clone();
                Box::pin(async move {
                    match authenticator.authenticate(&token).await {
                        Ok(caller) => {
                            request.extensions_mut().insert(caller);
                            inner.call(request).await
                        }
                        Err(refused) => Ok(refuse(refused)),
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_one_per_line_with_comments() {
        let t: Vec<_> = parse_tokens("a\n# ops team\n  b  # rotated 2026-11\n\n", '\n').collect();
        assert_eq!(t, vec![("", "a"), ("", "b")]);
        let t: Vec<_> = parse_tokens("x, y ,", ',').collect();
        assert_eq!(t, vec![("", "x"), ("", "y")]);
    }

    #[test]
    fn tokens_may_be_named_and_a_colon_inside_a_token_is_not_a_name() {
        let t: Vec<_> = parse_tokens("ci: s3cret\nabc:def\nweird name: x\n", '\n').collect();
        assert_eq!(
            t,
            vec![("ci", "s3cret"), ("", "abc:def"), ("", "weird name: x")]
        );
    }
}

//! Bearer-token authentication for every call, as a tower layer in front of all services: a call
//! without `authorization: Bearer <token>` is UNAUTHENTICATED, one with a token not on the list is
//! PERMISSION_DENIED. Health checks and reflection can be left open by config (load balancers and
//! grpcurl's `list` rarely carry tokens).
//!
//! Tokens come from a file (one per line, `#` comments) and/or an environment variable (comma
//! separated). The file is re-read when it changes, so tokens rotate without a restart. Only
//! SHA-256 digests of the tokens are kept in memory, and no token is ever logged or echoed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tonic::Status;

use crate::config::AuthConfig;

type Digests = HashSet<[u8; 32]>;

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_tokens(text: &str, separator: char) -> impl Iterator<Item = &str> {
    text.split(separator)
        .flat_map(|line| line.split('\n'))
        .map(|t| t.split('#').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
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
                parse_tokens(&value, ',').map(digest).collect()
            }
            None => Digests::new(),
        };
        let tokens = Tokens {
            digests: RwLock::new(Digests::new()),
            file: config.tokens_file.clone(),
            from_env,
        };
        let count = tokens.reload()?;
        if count == 0 {
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
        Ok(parse_tokens(&text, '\n').map(digest).collect())
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

    /// Whether `token` is one of the accepted ones: the one check of both gRPC calls and the
    /// web console's login.
    pub fn accepts(&self, token: &str) -> bool {
        self.digests
            .read()
            .expect("token lock poisoned")
            .contains(&digest(token))
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

/// Which calls need a token.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
    open_health: bool,
    open_reflection: bool,
}

impl AuthLayer {
    pub fn new(tokens: Arc<Tokens>, config: &AuthConfig) -> Self {
        Self {
            tokens,
            open_health: config.open_health,
            open_reflection: config.open_reflection,
        }
    }

    /// None when the call may go on; the status to answer with otherwise.
    fn check<B>(&self, request: &http::Request<B>) -> Option<Status> {
        let path = request.uri().path();
        if (self.open_health && path.starts_with("/grpc.health.v1.Health/"))
            || (self.open_reflection && path.starts_with("/grpc.reflection."))
        {
            return None;
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
            None if header.is_none() => Some(Status::unauthenticated(
                "this service needs a bearer token: send the metadata `authorization: Bearer <token>`",
            )),
            None => Some(Status::unauthenticated(
                "the authorization metadata is not of the form `Bearer <token>`",
            )),
            Some(token) if self.tokens.accepts(token) => None,
            Some(_) => Some(Status::permission_denied(
                "the bearer token is not one this service accepts",
            )),
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

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.layer.check(&request) {
            Some(refused) => {
                metrics::counter!(crate::telemetry::AUTH_REFUSED, "code" => format!("{:?}", refused.code()))
                    .increment(1);
                Box::pin(async move { Ok(refused.into_http()) })
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_one_per_line_with_comments() {
        let t: Vec<&str> =
            parse_tokens("a\n# ops team\n  b  # rotated 2026-11\n\n", '\n').collect();
        assert_eq!(t, vec!["a", "b"]);
        let t: Vec<&str> = parse_tokens("x, y ,", ',').collect();
        assert_eq!(t, vec!["x", "y"]);
    }
}

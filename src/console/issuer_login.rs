//! Logging in to the console through the OIDC issuer: OAuth2's authorization code flow with PKCE
//! (RFC 7636, S256), the console being a public client (or a confidential one, with a secret).
//!
//! The browser is sent to the issuer's authorization endpoint with a fresh `state` and the hash
//! of a fresh verifier; both, with the page to return to, are kept in a short-lived cookie that
//! only `/login` paths receive. The issuer sends the browser back to `/login/callback` with a
//! code; the state must match the cookie's (so no other site can start a login in someone's
//! browser and land it there), and the code is exchanged, with the verifier, for an access token.
//! That token is then what a pasted token would be: it must verify against the issuer's keys with
//! `flyteNotify.auth.oidc.audience`, and is checked again on every request, `exp` included.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::oidc::Oidc;
use crate::config::ConsoleLoginConfig;

/// The cookie that carries state, verifier and the page to return to through the issuer's pages.
pub const LOGIN_COOKIE: &str = "flyte_notify_login";
/// How long a login may take at the issuer.
pub const LOGIN_COOKIE_SECONDS: u64 = 600;
/// The largest token response read: an access token, an id token and some fields.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// The console as an OAuth2 client of the issuer.
pub struct IssuerLogin {
    config: ConsoleLoginConfig,
    client_secret: Option<String>,
    oidc: Arc<Oidc>,
}

/// A login on its way to the issuer: where to send the browser, and the cookie to set.
pub struct Started {
    pub authorize_url: String,
    pub cookie: String,
}

fn random_url_safe(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// RFC 7636's S256: the challenge is BASE64URL(SHA256(verifier)).
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Compared without an early exit: the state is a secret of the browser's until it returns.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl IssuerLogin {
    /// `client_secret` read from `clientSecretEnvVar` (config validation checked it is set).
    pub fn new(config: ConsoleLoginConfig, oidc: Arc<Oidc>) -> IssuerLogin {
        let client_secret = config
            .client_secret_env_var
            .as_ref()
            .and_then(|var| std::env::var(var).ok());
        IssuerLogin {
            config,
            client_secret,
            oidc,
        }
    }

    /// Whether the console is reached over https, as the issuer sends browsers back to it.
    pub fn over_https(&self) -> bool {
        self.config.redirect_url.starts_with("https://")
    }

    /// A new login: the issuer's authorization URL for it and the cookie keeping its secrets.
    /// `next` is a console path (already checked by the caller).
    pub async fn start(&self, next: &str) -> Result<Started, String> {
        let endpoints = self.oidc.endpoints().await?;
        let state = random_url_safe(16);
        let verifier = random_url_safe(32);
        let mut url = url::Url::parse(&endpoints.authorization)
            .map_err(|e| format!("the issuer's authorization_endpoint is not a URL: {e}"))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(Started {
            authorize_url: url.into(),
            // Three URL-safe base64 parts: nothing the cookie syntax forbids.
            cookie: format!("{state}.{verifier}.{}", URL_SAFE_NO_PAD.encode(next)),
        })
    }

    /// The access token for the code the issuer sent back, and the page to return to; the error
    /// says what went wrong, in words for the login page (never a token).
    pub async fn finish(
        &self,
        cookie: Option<&str>,
        state: &str,
        code: &str,
    ) -> Result<(String, String), String> {
        let Some(cookie) = cookie else {
            return Err(
                "this login was not started here, or took longer than 10 minutes; \
                        start again"
                    .into(),
            );
        };
        let mut parts = cookie.splitn(3, '.');
        let (Some(expected), Some(verifier), Some(next)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("the login cookie is damaged; start again".into());
        };
        if !same(expected, state) {
            return Err(
                "the issuer's answer does not belong to the login started in this \
                        browser; start again"
                    .into(),
            );
        }
        let next = URL_SAFE_NO_PAD
            .decode(next)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| "/".into());
        let endpoints = self.oidc.endpoints().await?;
        // Built in a block: the serializer may hold a non-Send encoder and must not live across
        // the await below.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.config.redirect_url)
                .append_pair("client_id", &self.config.client_id)
                .append_pair("code_verifier", verifier);
            if let Some(secret) = &self.client_secret {
                form.append_pair("client_secret", secret);
            }
            form.finish()
        };
        let response = self
            .oidc
            .http()
            .post(&endpoints.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the issuer's token endpoint cannot be reached: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("the issuer's token answer could not be read: {e}"))?;
        if body.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err("the issuer's token answer is too large".into());
        }
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            // RFC 6749 5.2: `error` and `error_description` say why; they hold no secret.
            let why = [doc["error"].as_str(), doc["error_description"].as_str()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return Err(format!(
                "the issuer refused the code (HTTP {status}{}{why})",
                if why.is_empty() { "" } else { ", " }
            ));
        }
        match doc["access_token"].as_str() {
            Some(token) if !token.is_empty() => Ok((token.to_string(), next)),
            _ => Err("the issuer's token answer has no access_token".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn states_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}

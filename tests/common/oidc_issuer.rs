//! A local OAuth2/OIDC issuer for the auth tests: a real HTTP server on 127.0.0.1 serving a
//! discovery document and a JWKS that the test can change while it runs (a key rotation), with
//! keys generated at test time by the `openssl` command and tokens signed with jsonwebtoken.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A private key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    pub jwk: Value,
}

/// `openssl` with these args, its stdout (DER).
fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

impl SigningKey {
    fn from_key(kid: &str, alg: Algorithm, key: EncodingKey) -> SigningKey {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        SigningKey {
            kid: kid.into(),
            alg,
            key,
            jwk,
        }
    }

    /// A fresh RSA 2048 key for RS256 (PKCS#1 DER, as jsonwebtoken's RSA signer takes).
    pub fn rsa(kid: &str) -> SigningKey {
        let pem = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        );
        let der = openssl(&["rsa", "-traditional", "-outform", "DER"], Some(&pem));
        Self::from_key(kid, Algorithm::RS256, EncodingKey::from_rsa_der(&der))
    }

    /// A fresh P-256 key for ES256 (PKCS#8 DER).
    pub fn ec(kid: &str) -> SigningKey {
        let pem = openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            None,
        );
        let der = openssl(
            &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"],
            Some(&pem),
        );
        Self::from_key(kid, Algorithm::ES256, EncodingKey::from_ec_der(&der))
    }

    /// A JWT of `claims`, signed with this key, naming it by kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// The running issuer; stops with the test's runtime.
pub struct Issuer {
    pub url: String,
    jwks: Arc<Mutex<Value>>,
    /// How many times the JWKS was fetched.
    pub jwks_fetches: Arc<AtomicUsize>,
}

impl Issuer {
    /// Starts serving discovery and an empty JWKS; needs a multi-threaded runtime, so that it
    /// answers while the test blocks on starting the server.
    pub async fn start() -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let jwks = Arc::new(Mutex::new(json!({ "keys": [] })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (issuer, keys, count) = (url.clone(), jwks.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (issuer, keys, count) = (issuer.clone(), keys.clone(), count.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (issuer, keys, count) =
                                (issuer.clone(), keys.clone(), count.clone());
                            async move {
                                let (status, body) = match request.uri().path() {
                                    "/.well-known/openid-configuration" => (
                                        200,
                                        json!({
                                            "issuer": issuer,
                                            "jwks_uri": format!("{issuer}/keys"),
                                            "token_endpoint": format!("{issuer}/token"),
                                        }),
                                    ),
                                    "/keys" => {
                                        count.fetch_add(1, Ordering::SeqCst);
                                        (200, keys.lock().unwrap().clone())
                                    }
                                    _ => (404, json!({ "error": "not found" })),
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body.to_string())))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Issuer {
            url,
            jwks,
            jwks_fetches: fetches,
        }
    }

    /// Serves exactly these keys from now on.
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().unwrap() =
            json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    }

    /// Claims valid for five minutes from this issuer, for `audience`, with `extra` merged in.
    pub fn claims(&self, audience: &str, extra: Value) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = json!({
            "iss": self.url, "aud": audience, "sub": "task-runner",
            "iat": now, "nbf": now, "exp": now + 300,
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        claims
    }
}

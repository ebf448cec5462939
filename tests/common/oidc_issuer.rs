//! A local OAuth2/OIDC issuer for the auth tests: a real HTTP server on 127.0.0.1 serving a
//! discovery document and a JWKS that the test can change while it runs (a key rotation), with
//! keys generated at test time by the `openssl` command and tokens signed with jsonwebtoken.

use std::collections::HashMap;
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
    login: Arc<Mutex<Login>>,
}

/// The authorization code flow, for the console's login: the client it knows, the access token
/// it hands out, and the codes it has issued with their PKCE challenges.
#[derive(Default)]
struct Login {
    client_id: Option<String>,
    access_token: String,
    /// code -> (code_challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    issued: usize,
    /// Every refusal, in words, for the test to show.
    refusals: Vec<String>,
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `/authorize`: a user who approves at once. Checks what RFC 6749 and 7636 ask of the client and
/// sends the browser back to `redirect_uri` with a single-use code.
fn authorize(login: &Mutex<Login>, uri: &hyper::Uri) -> hyper::Response<Full<Bytes>> {
    let q = query(uri);
    let mut login = login.lock().unwrap();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let refused = if login.client_id.as_deref() != Some(get("client_id").as_str()) {
        Some("unknown client_id")
    } else if get("response_type") != "code" {
        Some("response_type must be code")
    } else if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
        Some("PKCE with S256 is required")
    } else if get("state").is_empty() {
        Some("no state")
    } else {
        None
    };
    if let Some(why) = refused {
        login.refusals.push(format!("authorize: {why}"));
        return hyper::Response::builder()
            .status(400)
            .body(Full::new(Bytes::from(why)))
            .unwrap();
    }
    login.issued += 1;
    let code = format!("code-{}", login.issued);
    let redirect = get("redirect_uri");
    login
        .codes
        .insert(code.clone(), (get("code_challenge"), redirect.clone()));
    let mut back = url::Url::parse(&redirect).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    hyper::Response::builder()
        .status(302)
        .header("location", back.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// `/token`: the code exchanged for the access token, once, when the verifier hashes to the
/// challenge and the client and redirect URI are the ones the code was issued to.
fn token(login: &Mutex<Login>, body: &[u8]) -> (u16, Value) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let mut login = login.lock().unwrap();
    let issued = login.codes.remove(&get("code"));
    let refused = match &issued {
        _ if get("grant_type") != "authorization_code" => Some("grant_type"),
        None => Some("unknown or used code"),
        Some(_) if login.client_id.as_deref() != Some(get("client_id").as_str()) => {
            Some("client_id")
        }
        Some((_, redirect)) if *redirect != get("redirect_uri") => Some("redirect_uri"),
        Some((challenge, _)) => {
            use base64::Engine as _;
            use sha2::Digest as _;
            let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
            (hashed != *challenge).then_some("code_verifier does not match the challenge")
        }
    };
    if let Some(why) = refused {
        login.refusals.push(format!("token: {why}"));
        return (
            400,
            json!({ "error": "invalid_grant", "error_description": why }),
        );
    }
    (
        200,
        json!({ "access_token": login.access_token, "token_type": "Bearer", "expires_in": 300 }),
    )
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
        let login = Arc::new(Mutex::new(Login::default()));
        let (issuer, keys, count, codes) =
            (url.clone(), jwks.clone(), fetches.clone(), login.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (issuer, keys, count, codes) =
                    (issuer.clone(), keys.clone(), count.clone(), codes.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (issuer, keys, count, codes) =
                                (issuer.clone(), keys.clone(), count.clone(), codes.clone());
                            async move {
                                let (status, body) = match request.uri().path() {
                                    "/.well-known/openid-configuration" => (
                                        200,
                                        json!({
                                            "issuer": issuer,
                                            "jwks_uri": format!("{issuer}/keys"),
                                            "authorization_endpoint": format!("{issuer}/authorize"),
                                            "token_endpoint": format!("{issuer}/token"),
                                            "code_challenge_methods_supported": ["S256"],
                                        }),
                                    ),
                                    "/keys" => {
                                        count.fetch_add(1, Ordering::SeqCst);
                                        (200, keys.lock().unwrap().clone())
                                    }
                                    "/authorize" => {
                                        return Ok(authorize(&codes, request.uri()));
                                    }
                                    "/token" if request.method() == hyper::Method::POST => {
                                        use http_body_util::BodyExt as _;
                                        let body = request
                                            .into_body()
                                            .collect()
                                            .await
                                            .map(|b| b.to_bytes())
                                            .unwrap_or_default();
                                        token(&codes, &body)
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
            login,
        }
    }

    /// Lets `client_id` log in by the authorization code flow with PKCE; every user is approved at
    /// once and gets `access_token`.
    pub fn allow_login(&self, client_id: &str, access_token: &str) {
        let mut login = self.login.lock().unwrap();
        login.client_id = Some(client_id.into());
        login.access_token = access_token.into();
    }

    /// What the login endpoints refused, and how many codes they issued.
    pub fn login_log(&self) -> (Vec<String>, usize) {
        let login = self.login.lock().unwrap();
        (login.refusals.clone(), login.issued)
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

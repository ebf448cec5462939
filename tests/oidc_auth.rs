//! JWT bearer tokens from an OIDC issuer, against the real binary and a real local issuer
//! (tests/common/oidc_issuer.rs): RS256 and ES256 accepted; expired, wrong audience, wrong issuer,
//! unknown key, `alg: none` and HS256 refused with UNAUTHENTICATED; a key rotation picked up
//! without a restart; unknown key ids do not make the server hammer the issuer; no token text in
//! the log, the metrics or the answers.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use common::oidc_issuer::{Issuer, SigningKey};
use common::*;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;
use serde_json::json;

const AUDIENCE: &str = "flyte-notify";

fn with_token(token: &str, id: &str) -> tonic::Request<EnqueueRequest> {
    let mut request = tonic::Request::new(failed_email_request(id));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn b64(value: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_tokens_are_verified_and_a_rotation_is_picked_up_without_a_restart() {
    let issuer = Issuer::start().await;
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    issuer.publish(&[&rsa, &ec]);

    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let config = format!(
        "flyteNotify:\n  metricsListen: 127.0.0.1:{metrics_port}\n  auth:\n    oidc:\n      \
         issuer: {}\n      audience: {AUDIENCE}\n      refetchInterval: 1s\n",
        issuer.url
    );
    let server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;
    let mut shown = Vec::new();

    let good_rsa = rsa.sign(&issuer.claims(AUDIENCE, json!({})));
    let good_ec = ec.sign(&issuer.claims(AUDIENCE, json!({})));
    for (token, id) in [(&good_rsa, "rs256"), (&good_ec, "es256")] {
        client
            .enqueue(with_token(token, id))
            .await
            .unwrap_or_else(|e| panic!("{id} refused: {e:?}\n{}", server.log()));
        shown.push(token.clone());
    }

    let now = jsonwebtoken::get_current_timestamp();
    let stranger = SigningKey::rsa("not-published");
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &header,
            &issuer.claims(AUDIENCE, json!({})),
            // The "key" an attacker has: the issuer's public RSA modulus.
            &jsonwebtoken::EncodingKey::from_secret(rsa.jwk["n"].as_str().unwrap().as_bytes()),
        )
        .unwrap()
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": "rsa-1" })),
        b64(&issuer.claims(AUDIENCE, json!({})))
    );
    let refused = [
        (
            "expired",
            rsa.sign(&issuer.claims(AUDIENCE, json!({ "exp": now - 600, "nbf": now - 900 }))),
            "expired",
        ),
        (
            "not yet valid",
            rsa.sign(&issuer.claims(AUDIENCE, json!({ "nbf": now + 600 }))),
            "not valid yet",
        ),
        (
            "wrong audience",
            rsa.sign(&issuer.claims("someone-else", json!({}))),
            "audience",
        ),
        (
            "wrong issuer",
            rsa.sign(&issuer.claims(AUDIENCE, json!({ "iss": "https://evil.example.com" }))),
            "issuer",
        ),
        (
            "unknown key",
            stranger.sign(&issuer.claims(AUDIENCE, json!({}))),
            "not-published",
        ),
        ("alg none", none, "not a JWT signed with an accepted"),
        ("HS256", hs256, "HS256"),
    ];
    for (what, token, says) in &refused {
        let e = client
            .enqueue(with_token(token, what))
            .await
            .expect_err(what);
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{what}: {e:?}");
        assert!(e.message().contains(says), "{what}: {e:?}");
        assert!(!e.message().contains(token.as_str()), "{what} echoed");
        shown.push(token.clone());
    }

    // Made-up key ids, many at once: at most one JWKS fetch per refetchInterval.
    let before = issuer.jwks_fetches.load(Ordering::SeqCst);
    for i in 0..10 {
        let e = client
            .enqueue(with_token(
                &stranger.sign(&issuer.claims(AUDIENCE, json!({}))),
                &format!("flood-{i}"),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
    let flood = issuer.jwks_fetches.load(Ordering::SeqCst) - before;
    assert!(
        flood <= 1,
        "{flood} JWKS fetches for 10 unknown keys in well under 1s"
    );

    // The issuer rotates: a new key replaces the old one. After the refetch interval, a token
    // with the new key is accepted by the same process.
    let rotated = SigningKey::ec("ec-2");
    issuer.publish(&[&rotated]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let new_token = rotated.sign(&issuer.claims(AUDIENCE, json!({ "sub": "after-rotation" })));
    client
        .enqueue(with_token(&new_token, "rotated"))
        .await
        .unwrap_or_else(|e| panic!("the rotated key was not picked up: {e:?}\n{}", server.log()));
    shown.push(new_token);

    // A static-token-less setup still refuses a call without any token.
    let e = client
        .enqueue(tonic::Request::new(failed_email_request("anonymous")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    let metrics = scrape_metrics(metrics_port).await;
    assert!(
        metrics.contains("flyte_notify_auth_refused_total"),
        "{metrics}"
    );
    let log = server.log();
    for token in &shown {
        // The signature part is what makes a token a credential; no part of it may leak.
        let signature = token.rsplit('.').next().unwrap();
        for (place, text) in [("log", &log), ("metrics", &metrics)] {
            assert!(!text.contains(token.as_str()), "a token in the {place}");
            if !signature.is_empty() {
                assert!(
                    !text.contains(signature),
                    "a token signature in the {place}"
                );
            }
        }
    }
}

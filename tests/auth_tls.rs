//! Authentication and TLS against the real server: no token, a bad one, a good one, a token file
//! rotated while running; health and reflection open or closed by config; TLS, and mTLS with and
//! without a client certificate.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flytenotify::v1::EnqueueRequest;
use flyte_notify::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn enqueue_with(token: Option<&str>, id: &str) -> tonic::Request<EnqueueRequest> {
    let mut request = tonic::Request::new(EnqueueRequest {
        request_id: id.into(),
        execution: Some(failed_execution(id)),
        notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
        webhooks: Vec::new(),
        deadline: None,
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

#[tokio::test]
async fn bearer_tokens_are_required_checked_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# the ops team\nfirst-token-abc\n").unwrap();
    let config = format!(
        "flyteNotify:\n  auth: {{ tokensFile: {} }}\n",
        tokens.display()
    );
    let server = Server::start(dir.path(), Some(&config));
    let mut client = server.client().await;

    let none = client.enqueue(enqueue_with(None, "a")).await.unwrap_err();
    assert_eq!(none.code(), tonic::Code::Unauthenticated, "{none:?}");
    assert!(none.message().contains("authorization: Bearer"), "{none:?}");
    let bad = client
        .enqueue(enqueue_with(Some("guessed-token"), "b"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::PermissionDenied, "{bad:?}");
    assert!(!bad.message().contains("guessed-token"));
    client
        .enqueue(enqueue_with(Some("first-token-abc"), "c"))
        .await
        .expect("the listed token is accepted");

    // Health is open by default; reflection is not.
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(health_status(channel).await.unwrap(), 1);
    let (ok, _, err) = grpcurl(&["-plaintext", &server.addr, "list"]);
    assert!(!ok && err.contains("Unauthenticated"), "{err}");
    let (ok, out, err) = grpcurl(&[
        "-plaintext",
        "-H",
        "authorization: Bearer first-token-abc",
        &server.addr,
        "list",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("flytenotify.v1.NotificationService"), "{out}");

    // Rotated without a restart: the new token works, the old one no longer does.
    std::fs::write(&tokens, "second-token-xyz\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if client
            .enqueue(enqueue_with(Some("second-token-xyz"), "d"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reloaded; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = client
        .enqueue(enqueue_with(Some("first-token-abc"), "e"))
        .await
        .unwrap_err();
    assert_eq!(old.code(), tonic::Code::PermissionDenied);
    let log = server.log();
    assert!(log.contains("reloaded the tokens file"), "{log}");
    for secret in ["first-token-abc", "second-token-xyz", "guessed-token"] {
        assert!(!log.contains(secret), "a token reached the log:\n{log}");
    }
}

#[tokio::test]
async fn health_and_reflection_follow_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = "flyteNotify:\n  auth: { tokensEnvVar: FLYTE_NOTIFY_TEST_TOKENS, openHealth: false, openReflection: true }\n";
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let server = Server::spawn_env(
        dir.path().join("data"),
        Some(dir.path().join("config.yaml")),
        &[("FLYTE_NOTIFY_TEST_TOKENS", "env-token-1, env-token-2")],
    );
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let closed = health_status(channel.clone()).await.unwrap_err();
    assert_eq!(closed.code(), tonic::Code::Unauthenticated);
    let (ok, out, err) = grpcurl(&["-plaintext", &server.addr, "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("grpc.health.v1.Health"), "{out}");
    let mut client = NotificationServiceClient::new(channel);
    client
        .enqueue(enqueue_with(Some("env-token-2"), "f"))
        .await
        .expect("a token from the environment variable is accepted");
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, made with openssl.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={who}"),
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &format!("{who}.pem"),
            "-extfile",
            &format!("{who}.ext"),
        ]);
    }
}

async fn tls_channel(server: &Server, dir: &Path, with_identity: bool) -> Result<Channel, String> {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .domain_name("localhost");
    if with_identity {
        tls = tls.identity(Identity::from_pem(read("client.pem"), read("client.key")));
    }
    Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let d = dir.path().display();

    // TLS: an encrypted client is served; a plaintext one is not.
    let config =
        format!("flyteNotify:\n  tls: {{ certFile: {d}/server.pem, keyFile: {d}/server.key }}\n");
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    let server = Server::start(&dir.path().join("tls"), Some(&config));
    let channel = tls_channel(&server, dir.path(), false).await.unwrap();
    NotificationServiceClient::new(channel.clone())
        .enqueue(enqueue_with(None, "tls"))
        .await
        .expect("Enqueue over TLS");
    assert_eq!(health_status(channel).await.unwrap(), 1);
    let plaintext = Channel::from_shared(server.url()).unwrap().connect().await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => health_status(channel).await.is_err(),
    };
    assert!(refused, "a plaintext client was served by a TLS server");
    drop(server);

    // mTLS: without a client certificate the handshake fails; with one signed by the CA it works.
    let config = format!(
        "flyteNotify:\n  tls: {{ certFile: {d}/server.pem, keyFile: {d}/server.key, clientCaFile: {d}/ca.pem }}\n"
    );
    std::fs::create_dir_all(dir.path().join("mtls")).unwrap();
    let server = Server::start(&dir.path().join("mtls"), Some(&config));
    let anonymous = match tls_channel(&server, dir.path(), false).await {
        Err(_) => true,
        Ok(channel) => health_status(channel).await.is_err(),
    };
    assert!(
        anonymous,
        "a client without a certificate was served under mTLS"
    );
    let channel = tls_channel(&server, dir.path(), true).await.unwrap();
    NotificationServiceClient::new(channel)
        .enqueue(enqueue_with(None, "mtls"))
        .await
        .expect("Enqueue with a client certificate");
}

//! Per-project permissions against the real binary: named static tokens and an OIDC client id
//! mapped to actions on project/domain patterns. A caller allowed `read` on `flytesnacks/*` sees
//! only flytesnacks deliveries (in ListPending, paged, and GetDelivery) and cannot redrive
//! anything; an operator of flytesnacks redrives only flytesnacks; every refusal is
//! PERMISSION_DENIED naming the action and the project; decisions are logged and counted, and no
//! token text appears in the log or the metrics.

mod common;

use std::time::{Duration, Instant};

use common::oidc_issuer::{Issuer, SigningKey};
use common::*;
use flyte_notify::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;
use flyte_notify::proto::flytenotify::v1::{
    Delivery, DeliveryState, DiscardRequest, GetDeliveryRequest, ListPendingRequest, RedriveRequest,
};
use serde_json::json;
use tonic::transport::Channel;

const TOKENS: &[(&str, &str)] = &[
    ("writer", "writer-token-5f2a9c"),
    ("reader", "reader-token-8d1e77"),
    ("fsops", "fsops-token-41bb03"),
    ("ops", "ops-token-c09e6d"),
];

fn token(name: &str) -> &'static str {
    TOKENS.iter().find(|(n, _)| *n == name).unwrap().1
}

fn config(smtp_port: u16, tokens_file: &std::path::Path, issuer: &str, metrics: u16) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: {smtp_port}
flyteNotify:
  metricsListen: 127.0.0.1:{metrics}
  retry: {{ baseDelay: 100ms, maxDelay: 1s, maxAttempts: 1 }}
  auth:
    tokensFile: {}
    oidc: {{ issuer: "{issuer}", audience: flyte-notify }}
    permissions:
      - {{ token: writer, actions: [enqueue], projects: ["*"] }}
      - {{ token: reader, actions: [read], projects: ["flytesnacks/*"] }}
      - {{ token: fsops, actions: [read, operate], projects: ["flytesnacks/*"] }}
      - {{ token: ops, actions: [admin], projects: ["*"] }}
      - {{ clientId: ci-app, actions: [read], projects: ["flytesnacks/*"] }}
"#,
        tokens_file.display()
    )
}

async fn list(
    client: &mut NotificationServiceClient<Channel>,
    bearer: &str,
    filters: &str,
    limit: u32,
) -> Result<Vec<Vec<Delivery>>, tonic::Status> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_pending(authed(
                bearer,
                ListPendingRequest {
                    limit,
                    token: page_token.clone(),
                    filters: filters.into(),
                },
            ))
            .await?
            .into_inner();
        pages.push(page.deliveries);
        if page.token.is_empty() {
            return Ok(pages);
        }
        page_token = page.token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_flytesnacks_sees_and_touches_nothing_else() {
    let issuer = Issuer::start().await;
    let key = SigningKey::ec("ec-1");
    issuer.publish(&[&key]);
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens");
    let lines: String = TOKENS.iter().map(|(n, t)| format!("{n}: {t}\n")).collect();
    std::fs::write(&tokens_file, format!("# named tokens\n{lines}")).unwrap();
    let metrics_port = free_port();
    let server = Server::start(
        dir.path(),
        Some(&config(
            free_port(),
            &tokens_file,
            &issuer.url,
            metrics_port,
        )),
    );
    let mut client = server.client().await;

    // Interleaved, so that a page filtered after the fact would come back short or empty.
    let mut ids = std::collections::HashMap::new();
    for (project, name) in [
        ("flytesnacks", "fs-1"),
        ("other", "ot-1"),
        ("flytesnacks", "fs-2"),
        ("other", "ot-2"),
    ] {
        let answer = client
            .enqueue(authed(token("writer"), in_project(project, name)))
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", server.log()))
            .into_inner();
        ids.insert(name, answer.delivery_ids[0].clone());
    }
    let denied = client
        .enqueue(authed(
            token("reader"),
            in_project("flytesnacks", "by-reader"),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("enqueue")
            && denied.message().contains("flytesnacks/development"),
        "{denied:?}"
    );

    // All four die (SMTP is not listening, one attempt each).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<Delivery> = list(&mut client, token("ops"), "eq(state,dead)", 100)
            .await
            .unwrap()
            .concat();
        if all.len() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{all:?}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The reader: only flytesnacks, one per page of one, never an empty or short page.
    let pages = list(&mut client, token("reader"), "", 1).await.unwrap();
    let listed: Vec<&Delivery> = pages.iter().flatten().collect();
    assert_eq!(listed.len(), 2, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() == 1), "{pages:?}");
    assert!(
        listed
            .iter()
            .all(|d| d.execution_id.as_ref().unwrap().project == "flytesnacks"),
        "{listed:?}"
    );
    let asked_for_other = list(&mut client, token("reader"), "eq(project,other)", 10)
        .await
        .unwrap();
    assert!(asked_for_other.concat().is_empty(), "{asked_for_other:?}");
    // The same through an OIDC client id with the same rule.
    let jwt = key.sign(&issuer.claims("flyte-notify", json!({ "client_id": "ci-app" })));
    let by_jwt = list(&mut client, &jwt, "", 10).await.unwrap().concat();
    assert_eq!(by_jwt.len(), 2, "{by_jwt:?}");
    assert!(
        by_jwt
            .iter()
            .all(|d| d.execution_id.as_ref().unwrap().project == "flytesnacks")
    );

    // GetDelivery of another project's delivery: NOT_FOUND, as if it did not exist.
    let get = |bearer: &str, id: &str| {
        authed(
            bearer,
            GetDeliveryRequest {
                delivery_id: id.into(),
            },
        )
    };
    let hidden = client
        .get_delivery(get(token("reader"), &ids["ot-1"]))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound, "{hidden:?}");
    assert!(!hidden.message().contains("other"), "{hidden:?}");
    client
        .get_delivery(get(token("reader"), &ids["fs-1"]))
        .await
        .expect("its own project's delivery");

    // The reader may not redrive, by id or by filter; the refusal names action and project.
    let by_ids = |bearer: &str, ids: Vec<String>| {
        authed(
            bearer,
            RedriveRequest {
                delivery_ids: ids,
                ..Default::default()
            },
        )
    };
    let e = client
        .redrive(by_ids(token("reader"), vec![ids["fs-1"].clone()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("operate") && e.message().contains("flytesnacks/development"),
        "{e:?}"
    );
    let e = client
        .redrive(authed(
            token("reader"),
            RedriveRequest {
                filters: "eq(project,other)".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("operate"), "{e:?}");

    // The flytesnacks operator: another project's id is "not found" and stays dead; a filter
    // over everything redrives flytesnacks only.
    let answer = client
        .redrive(by_ids(token("fsops"), vec![ids["ot-1"].clone()]))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.delivery_ids.is_empty(), "{answer:?}");
    assert_eq!(answer.skipped.len(), 1, "{answer:?}");
    assert_eq!(answer.skipped[0].reason, "not found");
    let answer = client
        .redrive(authed(
            token("fsops"),
            RedriveRequest {
                filters: "eq(state,dead)".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut changed = answer.delivery_ids.clone();
    changed.sort();
    let mut expected = vec![ids["fs-1"].clone(), ids["fs-2"].clone()];
    expected.sort();
    assert_eq!(changed, expected, "{answer:?}");
    // Discard follows the same rules: another project's id is "not found" and left alone.
    let answer = client
        .discard(authed(
            token("fsops"),
            DiscardRequest {
                delivery_ids: vec![ids["ot-2"].clone()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.delivery_ids.is_empty(), "{answer:?}");
    assert_eq!(answer.skipped[0].reason, "not found", "{answer:?}");
    for other in ["ot-1", "ot-2"] {
        let d = client
            .get_delivery(get(token("ops"), &ids[other]))
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap();
        assert_eq!(d.state(), DeliveryState::Dead, "{other} was touched: {d:?}");
    }

    // The same rules over HTTP/JSON: the reader lists only flytesnacks, another project's
    // delivery does not exist for it, and it may not redrive.
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let listed: serde_json::Value = http
        .get(format!("{base}/api/v1/deliveries?limit=100"))
        .bearer_auth(token("reader"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let projects: Vec<&str> = listed["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|d| d["executionId"]["project"].as_str().unwrap())
        .collect();
    assert!(!projects.is_empty(), "{listed}");
    assert!(projects.iter().all(|p| *p == "flytesnacks"), "{listed}");
    let hidden = http
        .get(format!("{base}/api/v1/deliveries/{}", ids["ot-1"]))
        .bearer_auth(token("reader"))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), reqwest::StatusCode::NOT_FOUND);
    let refused = http
        .post(format!("{base}/api/v1/deliveries:redrive"))
        .bearer_auth(token("reader"))
        .json(&json!({ "filters": "eq(project,other)" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "PERMISSION_DENIED", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("operate"),
        "{body}"
    );

    // The same rules in the web console, served at `/` of the same port: the reader lists only
    // flytesnacks, another project's delivery page does not exist for it, and it can neither
    // redrive that one (not found, left dead) nor its own (not allowed); no action is offered.
    console_applies_the_same_rules(&base, &ids).await;

    // Decisions are logged with the identity and counted; no token text anywhere.
    let log = server.log();
    assert!(log.contains("token reader"), "{log}");
    assert!(log.contains("deny"), "{log}");
    let metrics = scrape_metrics(metrics_port).await;
    assert!(
        metrics
            .contains("flyte_notify_authz_decisions_total{action=\"operate\",decision=\"deny\"}"),
        "{metrics}"
    );
    for (_, secret) in TOKENS {
        assert!(!log.contains(secret), "a token in the log");
        assert!(!metrics.contains(secret), "a token in the metrics");
    }
    assert!(
        !log.contains(jwt.rsplit('.').next().unwrap()),
        "a JWT in the log"
    );
}

/// A GET of a console page with `token` in the login cookie: status and body.
async fn console_get(base: &str, token: &str, path: &str) -> (reqwest::StatusCode, String) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}{path}"))
        .header("cookie", format!("flyte_notify_token={token}"))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A console action's POST, with a CSRF token the browser holds; its status.
async fn console_act(base: &str, token: &str, id: &str, action: &str) -> reqwest::StatusCode {
    let csrf = "c".repeat(64);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/deliveries/{id}/{action}"))
        .header(
            "cookie",
            format!("flyte_notify_token={token}; flyte_notify_csrf={csrf}"),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&note=from+the+test"))
        .send()
        .await
        .unwrap()
        .status()
}

async fn console_applies_the_same_rules(base: &str, ids: &std::collections::HashMap<&str, String>) {
    use reqwest::StatusCode;
    let reader = token("reader");
    for path in [
        "/",
        "/?filters=eq(state,dead)",
        "/?filters=eq(project,other)",
    ] {
        let (status, page) = console_get(base, reader, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(page.contains("token reader"), "who is logged in: {page}");
        assert!(
            !page.contains("ot-1") && !page.contains("ot-2") && !page.contains("other/"),
            "{path} shows another project:\n{page}"
        );
        assert!(!page.contains(reader), "the token is in the page");
        // The chart counts every project: not for a reader of one.
        assert!(!page.contains("<svg"), "{path}: {page}");
    }
    let (_, all) = console_get(base, reader, "/").await;
    assert!(all.contains("flytesnacks/development/fs-"), "{all}");
    let (_, everything) = console_get(base, token("ops"), "/").await;
    assert!(
        everything.contains("other/development/ot-1"),
        "{everything}"
    );
    assert!(everything.contains("<svg"), "{everything}");

    let (status, page) = console_get(base, reader, &format!("/deliveries/{}", ids["ot-1"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    assert!(!page.contains("other"), "{page}");
    let (status, _) = console_get(
        base,
        reader,
        &format!("/deliveries/{}/redrive", ids["ot-1"]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = console_get(base, reader, &format!("/deliveries/{}", ids["fs-1"])).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        !page.contains("/redrive\"") && !page.contains("/discard\""),
        "a reader is offered an action:\n{page}"
    );

    assert_eq!(
        console_act(base, reader, &ids["ot-1"], "redrive").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        console_act(base, reader, &ids["fs-1"], "redrive").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        console_act(base, reader, &ids["fs-1"], "send-test").await,
        StatusCode::FORBIDDEN
    );
    // The flytesnacks operator cannot reach another project's delivery either.
    assert_eq!(
        console_act(base, token("fsops"), &ids["ot-2"], "discard").await,
        StatusCode::NOT_FOUND
    );
    for other in ["ot-1", "ot-2"] {
        let (_, page) =
            console_get(base, token("ops"), &format!("/deliveries/{}", ids[other])).await;
        assert!(
            page.contains(r#"<h1><span class="state dead">dead</span>"#),
            "{other} was touched from the console:\n{page}"
        );
    }
}

/// `check-config` on `auth` (a YAML flow mapping under flyteNotify.auth): exit code and stderr.
fn check_auth(auth: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ci: a-token\n").unwrap();
    let path = dir.path().join("config.yaml");
    let auth = auth.replace("TOKENS", &tokens.display().to_string());
    std::fs::write(&path, format!("flyteNotify:\n  auth: {auth}\n")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_refuses_bad_auth_settings_naming_the_key() {
    let ok = "{ tokensFile: TOKENS, oidc: { issuer: 'https://flyte.example.com', audience: x }, \
              permissions: [ { token: ci, actions: [read, operate], projects: ['flytesnacks/*', '*/production'] } ] }";
    let (code, stderr) = check_auth(ok);
    assert_eq!(code, 0, "{stderr}");
    for (auth, key, says) in [
        (
            "{ tokensFile: TOKENS, permissions: [ { token: ci, actions: [read], projects: [flytesnacks] } ] }",
            "flyteNotify.auth.permissions[0].projects[0]",
            "project/domain",
        ),
        (
            "{ tokensFile: TOKENS, permissions: [ { token: ci, subject: s, actions: [read], projects: ['*'] } ] }",
            "flyteNotify.auth.permissions[0]",
            "exactly one",
        ),
        (
            "{ tokensFile: TOKENS, permissions: [ { token: ci, actions: [], projects: ['*'] } ] }",
            "flyteNotify.auth.permissions[0].actions",
            "empty",
        ),
        (
            "{ tokensFile: TOKENS, permissions: [ { token: ci, actions: [delete], projects: ['*'] } ] }",
            "flyteNotify.auth.permissions",
            "delete",
        ),
        (
            "{ permissions: [ { token: ci, actions: [read], projects: ['*'] } ] }",
            "flyteNotify.auth.permissions",
            "needs tokensFile, tokensEnvVar or oidc",
        ),
        (
            "{ oidc: { issuer: 'ftp://issuer', audience: x } }",
            "flyteNotify.auth.oidc.issuer",
            "http",
        ),
        (
            "{ oidc: { issuer: 'https://issuer.example.com', audience: '' } }",
            "flyteNotify.auth.oidc.audience",
            "required",
        ),
        (
            "{ oidc: { issuer: 'https://issuer.example.com', audience: x, leeway: 1h } }",
            "flyteNotify.auth.oidc.leeway",
            "at most",
        ),
    ] {
        let (code, stderr) = check_auth(auth);
        assert_eq!(code, 2, "{auth}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{auth}: {stderr}"
        );
    }
}

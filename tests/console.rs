//! The web console against the real binary: the browser test (headless Chromium through
//! Playwright: filter, open a dead delivery, redrive it, see it delivered, with a screenshot per
//! step), and its routes through a plain HTTP client: escaping, CSRF, login.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use flyte_notify::proto::flytenotify::v1::{DeliveryState, GetDeliveryRequest};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// SMTP on `smtp` (nothing listening yet: each send dies at its one attempt), the console on
/// `console`, and the Flyte console's address for the execution links; `extra` goes under
/// flyteNotify.
fn config(smtp: u16, console: u16, extra: &str) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: {smtp}
flyteNotify:
  consoleUrl: https://flyte.example.com/console
  console:
    listen: 127.0.0.1:{console}
  retry: {{ baseDelay: 100ms, maxDelay: 1s, maxAttempts: 1 }}
{extra}
"#
    )
}

/// Enqueues a failed execution `name` emailed to on-call and waits until its delivery is dead.
async fn dead_delivery(server: &Server, name: &str) -> String {
    let mut client = server.client().await;
    let id = client
        .enqueue(failed_email_request(name))
        .await
        .unwrap()
        .into_inner()
        .delivery_ids[0]
        .clone();
    wait_for_pending(server, "eq(state,dead)", Duration::from_secs(30), |d| {
        d.iter().any(|d| d.id == id)
    })
    .await;
    id
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The value the response sets for cookie `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

/// Where screenshots are kept after the test's temporary directory is gone.
fn kept_screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is under the target dir")
        .join("console-screenshots")
}

/// Runs tests/console/browser.py with `args` against the console at `url`; asserts it passed
/// and took `shots` screenshots, which are kept under the target dir as `prefix-*.png`.
fn run_browser(server: &Server, dir: &Path, url: &str, args: &[&str], prefix: &str, shots: usize) {
    let out_dir = dir.join("screenshots");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser.py"))
        .args(["--url", url])
        .args(args)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run python3 (pip install playwright==1.49.1; apt-get install chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Kept whatever the outcome: a failing step is easiest read from its picture.
    let kept = kept_screenshots();
    std::fs::create_dir_all(&kept).unwrap();
    for entry in std::fs::read_dir(&out_dir).into_iter().flatten().flatten() {
        let name = format!("{prefix}-{}", entry.file_name().to_string_lossy());
        std::fs::copy(entry.path(), kept.join(name)).unwrap();
    }
    println!("screenshots in {}", kept.display());
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    let taken: Vec<_> = stdout
        .lines()
        .filter(|l| l.starts_with("screenshot "))
        .collect();
    assert_eq!(taken.len(), shots, "{stdout}");
}

#[tokio::test]
async fn in_a_browser_a_dead_delivery_is_found_opened_redriven_and_seen_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let server = Server::start(dir.path(), Some(&config(smtp, console, "")));
    let name = "nightly-train-42";
    let id = dead_delivery(&server, name).await;
    let sink_dir = dir.path().join("sink");
    let _sink = SmtpSink::start(smtp, &sink_dir);
    run_browser(
        &server,
        dir.path(),
        &format!("http://127.0.0.1:{console}"),
        &["--name", name],
        "open",
        7,
    );

    // What the page said is what happened: the ledger has it delivered, and the mail arrived.
    let got = server
        .client()
        .await
        .get_delivery(GetDeliveryRequest { delivery_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.delivery.unwrap().state, DeliveryState::Delivered as i32);
    let mails = wait_for_messages(&sink_dir, 1, Duration::from_secs(5));
    assert_eq!(mails.len(), 1);
    assert!(parse_mail(&mails[0]).subject.contains(name));
}

#[tokio::test]
async fn a_hostile_execution_name_shows_as_text_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let server = Server::start(dir.path(), Some(&config(smtp, console, "")));
    let hostile = r#"<script>alert("pwned")</script><img src=x onerror=alert(1)>"#;
    let id = dead_delivery(&server, hostile).await;
    let base = format!("http://127.0.0.1:{console}");
    let client = http();
    let encoded = "%3Cscript%3E";
    for path in [
        "/".to_string(),
        "/?filters=eq(state,dead)".to_string(),
        format!("/deliveries/{id}"),
        format!("/deliveries/{id}/redrive"),
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("<script"),
            "{path} carries markup from the name:\n{body}"
        );
        assert!(!body.contains("<img src=x"), "{path}:\n{body}");
        assert!(
            body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"),
            "{path} does not show the name as text:\n{body}"
        );
    }
    // The execution link encodes the name as one path segment of the Flyte console's URL.
    let page = client
        .get(format!("{base}/deliveries/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            "https://flyte.example.com/console/projects/flytesnacks/domains/development/executions/{encoded}"
        )),
        "{page}"
    );
    // A filter that the core refuses is shown in its words, escaped too.
    let refused = client
        .get(format!("{base}/?filters=eq(<b>,x)"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body = refused.text().await.unwrap();
    assert!(body.contains("filters: "), "{body}");
    assert!(!body.contains("<b>"), "{body}");
}

#[tokio::test]
async fn an_action_without_the_browsers_csrf_token_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let server = Server::start(dir.path(), Some(&config(smtp, console, "")));
    let id = dead_delivery(&server, "csrf-target").await;
    let base = format!("http://127.0.0.1:{console}");
    let client = http();
    let confirm = client
        .get(format!("{base}/deliveries/{id}/discard"))
        .send()
        .await
        .unwrap();
    let csrf = set_cookie(&confirm, "flyte_notify_csrf").expect("the page sets a CSRF cookie");
    let cookie_line = confirm
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("flyte_notify_csrf="))
        .unwrap();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    let form = confirm.text().await.unwrap();
    assert!(
        form.contains(&format!(r#"name="csrf" value="{csrf}""#)),
        "{form}"
    );

    let post = |cookie: Option<String>, field: &str| {
        let mut request = client
            .post(format!("{base}/deliveries/{id}/discard"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={field}&note=cleanup"));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send()
    };
    // No cookie (another site's form), a field that does not match, no field at all.
    for (cookie, field) in [
        (None, csrf.clone()),
        (Some(format!("flyte_notify_csrf={csrf}")), "0".repeat(64)),
        (Some(format!("flyte_notify_csrf={csrf}")), String::new()),
    ] {
        let response = post(cookie.clone(), &field).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{cookie:?} {field:?}"
        );
        assert!(response.text().await.unwrap().contains("security token"));
    }
    let mut grpc = server.client().await;
    let state = |grpc: &mut flyte_notify::proto::flytenotify::v1::notification_service_client::NotificationServiceClient<_>| {
        let id = id.clone();
        let mut grpc = grpc.clone();
        async move {
            grpc.get_delivery(GetDeliveryRequest { delivery_id: id })
                .await
                .unwrap()
                .into_inner()
                .delivery
                .unwrap()
                .state
        }
    };
    assert_eq!(state(&mut grpc).await, DeliveryState::Dead as i32);

    // The same form with the browser's own token goes through.
    let done = post(Some(format!("flyte_notify_csrf={csrf}")), &csrf)
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()[LOCATION],
        format!("/deliveries/{id}?done=discarded").as_str()
    );
    assert_eq!(state(&mut grpc).await, DeliveryState::Discarded as i32);
}

#[tokio::test]
async fn with_auth_on_the_console_asks_for_an_accepted_token_and_keeps_it_in_a_strict_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let auth = "  auth: { tokensEnvVar: CONSOLE_TEST_TOKENS }";
    let server = Server::start_env(
        dir.path(),
        &config(smtp, console, auth),
        &[("CONSOLE_TEST_TOKENS", "right-token,other-token")],
    );
    let base = format!("http://127.0.0.1:{console}");
    let client = http();

    // Every page and action sends a browser without the cookie to the login form, or refuses it.
    let home = client
        .get(format!("{base}/?filters=eq(state,dead)"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        home.headers()[LOCATION],
        "/login?next=%2F%3Ffilters%3Deq%28state%2Cdead%29"
    );
    let page = client
        .get(format!("{base}/deliveries/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    let action = client
        .post(format!("{base}/deliveries/x/redrive"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(action.status(), StatusCode::UNAUTHORIZED);

    let form = client
        .get(format!("{base}/login?next=/deliveries/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let csrf = set_cookie(&form, "flyte_notify_csrf").unwrap();
    let login = |token: &str, next: &str| {
        client
            .post(format!("{base}/login"))
            .header(COOKIE, format!("flyte_notify_csrf={csrf}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&token={token}&next={next}"))
            .send()
    };
    let wrong = login("wrong-token", "/").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "flyte_notify_token").is_none());
    let body = wrong.text().await.unwrap();
    assert!(body.contains("not one this service accepts"), "{body}");
    assert!(
        !body.contains("wrong-token"),
        "the token is echoed:\n{body}"
    );

    // A next page elsewhere is not followed.
    let right = login("right-token", "https%3A%2F%2Fevil.example%2F")
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[LOCATION], "/");
    let line = right
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("flyte_notify_token="))
        .expect("the login sets the token cookie");
    assert!(line.contains("HttpOnly"), "{line}");
    assert!(line.contains("SameSite=Strict"), "{line}");

    let with = |cookie: &str| {
        client
            .get(format!("{base}/"))
            .header(COOKIE, format!("flyte_notify_token={cookie}"))
            .send()
    };
    let seen = with("right-token").await.unwrap();
    assert_eq!(seen.status(), StatusCode::OK);
    assert!(seen.text().await.unwrap().contains("Log out"));
    assert_eq!(with("other-token").await.unwrap().status(), StatusCode::OK);
    // A cookie forged with a token not on the list is no login.
    assert_eq!(
        with("forged").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert!(
        !server.log().contains("right-token"),
        "a token reached the log"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let _server = Server::start(dir.path(), Some(&config(smtp, console, "")));
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", console))
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Meanwhile the console answers others.
    let page = http()
        .get(format!("http://127.0.0.1:{console}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was still open after 20 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn silenced_and_flyte2_deliveries_show_and_the_list_pages_with_the_listpending_token() {
    use flyte_notify::proto::flyteidl2::common::{ActionPhase, RunIdentifier};
    use flyte_notify::proto::flytenotify::v1::{
        CreateSilenceRequest, EnqueueRunEventRequest, Flyte2Rules, Silence, flyte2_rules::Rules,
    };
    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let flyte2 = r#"
  flyte2:
    runUrl: "https://flyte.example.com/v2/{project}/{domain}/{name}"
  deliveryConfigs:
    - name: oncall
      email:
        to: [v2-oncall@example.com]
        subject: "v2 {{.Run.Name}} {{.Phase}}"
        text: "Run {{.Run.Name}} ended {{.Phase}}: {{.Error}}"
  rules:
    - name: alerts
      rules:
        - onPhases: [FAILED]
          deliveryConfig: oncall
"#;
    let server = Server::start(dir.path(), Some(&config(smtp, console, flyte2)));
    let mut grpc = server.client().await;
    let v1 = dead_delivery(&server, "v1-run").await;
    let v2 = grpc
        .enqueue_run_event(EnqueueRunEventRequest {
            request_id: "v2-run".into(),
            run: Some(RunIdentifier {
                org: String::new(),
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: "v2-run".into(),
            }),
            phase: ActionPhase::Failed as i32,
            error: "OOMKilled".into(),
            rules: Some(Flyte2Rules {
                rules: Some(Rules::NotificationRuleName("alerts".into())),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .delivery_ids[0]
        .clone();
    wait_for_pending(&server, "eq(state,dead)", Duration::from_secs(30), |d| {
        d.iter().any(|d| d.id == v2)
    })
    .await;
    grpc.create_silence(CreateSilenceRequest {
        silence: Some(Silence {
            matcher: "eq(project,frozen)".into(),
            ends_at: Some((std::time::SystemTime::now() + Duration::from_secs(3600)).into()),
            created_by: "oncall@example.com".into(),
            comment: "release freeze".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let mut frozen = failed_email_request("held-run");
    let id = frozen
        .execution
        .as_mut()
        .unwrap()
        .execution_id
        .as_mut()
        .unwrap();
    id.project = "frozen".into();
    grpc.enqueue(frozen).await.unwrap();
    wait_for_pending(
        &server,
        "eq(state,silenced)",
        Duration::from_secs(30),
        |d| !d.is_empty(),
    )
    .await;

    let base = format!("http://127.0.0.1:{console}");
    let client = http();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{}", path.replace("&amp;", "&"));
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.unwrap()
        }
    };
    let silenced = get("/?filters=eq(state,silenced)".into()).await;
    assert!(
        silenced.contains("frozen/development/held-run"),
        "{silenced}"
    );
    assert!(!silenced.contains("v1-run"), "{silenced}");

    // One row a page: the first page links to the next with ListPending's token, and that page
    // back to the first; the two pages hold the two dead deliveries, oldest first.
    let first = get("/?filters=eq(state,dead)&limit=1".into()).await;
    assert!(first.contains("flytesnacks/development/v1-run"), "{first}");
    assert!(!first.contains("v2-run"), "{first}");
    assert!(!first.contains("First page"));
    let next = first
        .split(r#"<a href=""#)
        .find(|a| a.contains(r#"rel="next""#))
        .and_then(|a| a.split('"').next())
        .expect("a link to the next page")
        .to_string();
    assert!(
        next.contains("token=") && next.contains("limit=1"),
        "{next}"
    );
    let second = get(next).await;
    assert!(
        second.contains("flytesnacks/development/v2-run"),
        "{second}"
    );
    assert!(!second.contains("v1-run"), "{second}");
    assert!(second.contains("First page"));
    assert!(!second.contains(r#"rel="next""#), "{second}");

    // The Flyte 2 delivery: its run's own URL, and its message as the rule renders it.
    let page = get(format!("/deliveries/{v2}")).await;
    assert!(
        page.contains(r#"href="https://flyte.example.com/v2/flytesnacks/development/v2-run""#),
        "{page}"
    );
    assert!(page.contains("v2 v2-run FAILED"), "{page}");
    assert!(
        page.contains("Run v2-run ended FAILED: OOMKilled"),
        "{page}"
    );
    let page = get(format!("/deliveries/{v1}")).await;
    assert!(page.contains("oncall@example.com"), "{page}");
}

/// Enqueues failed execution `name` of `project` with `bearer`, and waits until its delivery is
/// in `state`.
async fn delivery_as(
    server: &Server,
    bearer: &str,
    project: &str,
    name: &str,
    state: DeliveryState,
) -> String {
    let mut client = server.client().await;
    let id = client
        .enqueue(authed(bearer, in_project(project, name)))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", server.log()))
        .into_inner()
        .delivery_ids[0]
        .clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = client
            .get_delivery(authed(
                bearer,
                GetDeliveryRequest {
                    delivery_id: id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap();
        if d.state == state as i32 {
            return id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{d:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// On-call logs in through the identity provider (authorization code with PKCE, in the browser),
/// is shown as the JWT's subject, sees only the project its rules give it, and redrives there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_on_call_logs_in_through_the_issuer_and_sees_only_its_projects() {
    use common::oidc_issuer::{Issuer, SigningKey};
    let issuer = Issuer::start().await;
    let key = SigningKey::rsa("console-rsa");
    issuer.publish(&[&key]);
    let now = jsonwebtoken::get_current_timestamp();
    let access = key.sign(&issuer.claims(
        "flyte-notify",
        serde_json::json!({ "sub": "alice@example.com", "exp": now + 3600 }),
    ));
    issuer.allow_login("flyte-notify-console", &access);

    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let auth = format!(
        r#"  auth:
    tokensEnvVar: CONSOLE_TEST_TOKENS
    oidc: {{ issuer: "{}", audience: flyte-notify }}
    permissions:
      - {{ token: ops, actions: [admin], projects: ["*"] }}
      - {{ subject: alice@example.com, actions: [read, operate], projects: ["flytesnacks/*"] }}
"#,
        issuer.url
    );
    let login = format!(
        "  console:\n    listen: 127.0.0.1:{console}\n    login:\n      clientId: \
         flyte-notify-console\n      redirectUrl: http://127.0.0.1:{console}/login/callback\n"
    );
    let yaml = config(smtp, console, &auth).replace(
        &format!("  console:\n    listen: 127.0.0.1:{console}\n"),
        &login,
    );
    let ops = "ops-token-7c1d";
    let server = Server::start_env(
        dir.path(),
        &yaml,
        &[("CONSOLE_TEST_TOKENS", &format!("ops: {ops}"))],
    );
    let name = "nightly-train-42";
    let id = delivery_as(&server, ops, "flytesnacks", name, DeliveryState::Dead).await;
    let hidden_id = delivery_as(&server, ops, "payroll", "salaries-run", DeliveryState::Dead).await;
    let sink_dir = dir.path().join("sink");
    let _sink = SmtpSink::start(smtp, &sink_dir);
    // Another project's delivery that goes out: it must not show on the viewer's delivered tab.
    delivery_as(
        &server,
        ops,
        "payroll",
        "payroll-report",
        DeliveryState::Delivered,
    )
    .await;
    run_browser(
        &server,
        dir.path(),
        &format!("http://127.0.0.1:{console}"),
        &[
            "--hidden-delivered",
            "payroll-report",
            "--name",
            name,
            "--issuer-login",
            "jwt sub=alice@example.com",
            "--hidden",
            "salaries-run",
            "--hidden-id",
            &hidden_id,
        ],
        "issuer",
        9,
    );
    let (refusals, issued) = issuer.login_log();
    assert!(refusals.is_empty(), "the issuer refused: {refusals:?}");
    assert_eq!(issued, 1, "one login, one code");

    let client = server.client().await;
    let state = |id: String| {
        let mut client = client.clone();
        async move {
            client
                .get_delivery(authed(ops, GetDeliveryRequest { delivery_id: id }))
                .await
                .unwrap()
                .into_inner()
                .delivery
                .unwrap()
                .state
        }
    };
    assert_eq!(state(id).await, DeliveryState::Delivered as i32);
    assert_eq!(state(hidden_id).await, DeliveryState::Dead as i32);
    let log = server.log();
    assert!(
        log.contains("logged in to the console through the issuer")
            && log.contains("alice@example.com"),
        "{log}"
    );
    for secret in [ops, access.as_str(), access.rsplit('.').next().unwrap()] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}

/// A login through the issuer that did not start in this browser, or whose code the issuer
/// refuses, ends on the login page with the reason; no token cookie is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_login_with_a_forged_state_or_a_refused_code_sets_no_token() {
    use common::oidc_issuer::{Issuer, SigningKey};
    let issuer = Issuer::start().await;
    let key = SigningKey::ec("console-ec");
    issuer.publish(&[&key]);
    // The issuer hands out a token for another audience: it must not be accepted.
    let wrong_audience = key.sign(&issuer.claims("someone-else", serde_json::json!({})));
    issuer.allow_login("console", &wrong_audience);
    let dir = tempfile::tempdir().unwrap();
    let (smtp, console) = (free_port(), free_port());
    let yaml = format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: {smtp} }}
flyteNotify:
  auth:
    oidc: {{ issuer: "{}", audience: flyte-notify }}
  console:
    listen: 127.0.0.1:{console}
    login: {{ clientId: console, redirectUrl: "http://127.0.0.1:{console}/login/callback" }}
"#,
        issuer.url
    );
    let server = Server::start(dir.path(), Some(&yaml));
    let base = format!("http://127.0.0.1:{console}");
    let client = http();

    let start = client
        .get(format!("{base}/login/issuer?next=/deliveries/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let to = start.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        to.starts_with(&format!("{}/authorize?", issuer.url)),
        "{to}"
    );
    for part in [
        "response_type=code",
        "client_id=console",
        "code_challenge_method=S256",
        "redirect_uri=http%3A%2F%2F127.0.0.1",
    ] {
        assert!(to.contains(part), "{part} missing from {to}");
    }
    let login_cookie = set_cookie(&start, "flyte_notify_login").expect("the login cookie");
    let line = start
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("flyte_notify_login="))
        .unwrap();
    assert!(
        line.contains("Path=/login") && line.contains("SameSite=Lax") && line.contains("HttpOnly"),
        "{line}"
    );
    // The verifier stays in the browser: only its hash goes to the issuer.
    let verifier = login_cookie.split('.').nth(1).unwrap();
    assert!(!to.contains(verifier), "{to}");

    // The issuer approves and sends the browser back with a code.
    let back = client.get(&to).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::FOUND);
    let callback = back.headers()[LOCATION].to_str().unwrap().to_string();
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    let finish = |query: String, cookie: Option<String>| {
        let mut request = client.get(format!("{base}/login/callback?{query}"));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, format!("flyte_notify_login={cookie}"));
        }
        request.send()
    };
    // A state that is not this browser's: refused before the code is spent.
    let forged = finish(
        format!("code={code}&state=forged"),
        Some(login_cookie.clone()),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&forged, "flyte_notify_token").is_none());
    assert!(forged.text().await.unwrap().contains("does not belong"));
    // No login cookie at all: a login started elsewhere.
    let state = login_cookie.split('.').next().unwrap().to_string();
    let orphan = finish(format!("code={code}&state={state}"), None)
        .await
        .unwrap();
    assert_eq!(orphan.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&orphan, "flyte_notify_token").is_none());
    // The right state: the code is exchanged, but the token is for another audience.
    let wrong = finish(
        format!("code={code}&state={state}"),
        Some(login_cookie.clone()),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "flyte_notify_token").is_none());
    let body = wrong.text().await.unwrap();
    assert!(body.contains("not accepted here"), "{body}");
    assert!(!body.contains(&wrong_audience), "the token is in the page");
    let (refusals, issued) = issuer.login_log();
    assert!(refusals.is_empty(), "{refusals:?}");
    assert_eq!(issued, 1);
    // The issuer's own refusal, passed on in words.
    let denied = finish(
        "error=access_denied&error_description=the+user+said+no".into(),
        Some(login_cookie),
    )
    .await
    .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert!(denied.text().await.unwrap().contains("the user said no"));
    assert!(!server.log().contains(&wrong_audience));
}

/// With nothing configured the console is at `/` of the gRPC port, beside gRPC and HTTP/JSON;
/// `console.enabled: false` turns it off there.
#[tokio::test]
async fn the_console_is_at_the_root_of_the_grpc_port_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let id = server
        .client()
        .await
        .enqueue(failed_email_request("on-the-port"))
        .await
        .unwrap()
        .into_inner()
        .delivery_ids[0]
        .clone();
    let base = format!("http://{}", server.addr);
    let client = http();
    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await.unwrap().contains("<h1>Deliveries</h1>"));
    let page = client
        .get(format!("{base}/deliveries/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("on-the-port"));
    let css = client
        .get(format!("{base}/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    // HTTP/JSON on the same port is unchanged.
    let json: serde_json::Value = client
        .get(format!("{base}/api/v1/deliveries/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["delivery"]["id"], id.as_str(), "{json}");

    let off_dir = tempfile::tempdir().unwrap();
    let off = Server::start(
        off_dir.path(),
        Some("flyteNotify:\n  console:\n    enabled: false\n"),
    );
    let home = client
        .get(format!("http://{}/", off.addr))
        .send()
        .await
        .unwrap();
    let status = home.status();
    let body = home.text().await.unwrap();
    assert!(!body.contains("Deliveries"), "{status} {body}");
    off.client()
        .await
        .enqueue(failed_email_request("still-grpc"))
        .await
        .expect("gRPC still answers");
}

#[test]
fn check_config_refuses_an_issuer_login_without_an_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    for (yaml, key, says) in [
        (
            "flyteNotify:\n  console:\n    login: { clientId: c, redirectUrl: 'http://x/login/callback' }\n",
            "flyteNotify.console.login",
            "flyteNotify.auth.oidc",
        ),
        (
            "flyteNotify:\n  auth: { oidc: { issuer: 'https://i.example.com', audience: a } }\n  console:\n    login: { clientId: c, redirectUrl: 'http://x/elsewhere' }\n",
            "flyteNotify.console.login.redirectUrl",
            "/login/callback",
        ),
    ] {
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{yaml}: {stderr}"
        );
    }
}

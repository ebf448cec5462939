//! Silences against the real binary and a real SMTP server: what a silence matches when it is due
//! is recorded silenced (listed with eq(state,silenced), its history naming the silence) and never
//! reaches the sink, everything else arrives; after the silence ends new deliveries go out again,
//! and a deliver_after silence sends what it held when it ends.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use flyte_notify::proto::flytenotify::v1::delivery_event::Kind;
use flyte_notify::proto::flytenotify::v1::{
    CreateSilenceRequest, DeliveryState, ExpireSilenceRequest, GetDeliveryRequest,
    ListSilencesRequest, Silence, silence,
};

fn config(port: u16) -> String {
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: {port}
flyteNotify:
  retry: {{ baseDelay: 100ms, maxDelay: 1s, maxAttempts: 3 }}
  limits: {{ maxSilences: 3 }}
"#
    )
}

fn in_secs(secs: i64) -> prost_types::Timestamp {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    prost_types::Timestamp {
        seconds: now + secs,
        nanos: 0,
    }
}

fn silence(matcher: &str, ends_in: i64, deliver_after: bool) -> CreateSilenceRequest {
    CreateSilenceRequest {
        silence: Some(Silence {
            matcher: matcher.into(),
            ends_at: Some(in_secs(ends_in)),
            created_by: "oncall@example.com".into(),
            comment: "warehouse maintenance".into(),
            deliver_after,
            ..Default::default()
        }),
    }
}

fn request_in(project: &str, name: &str) -> flyte_notify::proto::flytenotify::v1::EnqueueRequest {
    let mut r = failed_email_request(name);
    let exec = r.execution.as_mut().unwrap().execution_id.as_mut().unwrap();
    exec.project = project.into();
    r
}

fn texts(sink: &std::path::Path) -> Vec<String> {
    maildir_messages(sink)
        .iter()
        .map(|p| parse_mail(p).text)
        .collect()
}

#[tokio::test]
async fn a_silence_holds_back_what_it_matches_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let _smtp = SmtpSink::start(port, &sink);
    let server = Server::start(dir.path(), Some(&config(port)));
    let mut client = server.client().await;

    let created = client
        .create_silence(silence("eq(project,flytesnacks)", 6, false))
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    assert_eq!(created.state, silence::State::Active as i32);
    assert!(!created.id.is_empty());

    let silenced_id = client
        .enqueue(request_in("flytesnacks", "quiet-1"))
        .await
        .unwrap()
        .into_inner()
        .delivery_ids[0]
        .clone();
    client.enqueue(request_in("other", "loud-1")).await.unwrap();

    let mails = wait_for_messages(&sink, 1, Duration::from_secs(20));
    assert_eq!(mails.len(), 1, "{}", server.log());
    let listed = wait_for_pending(
        &server,
        "eq(state,silenced)",
        Duration::from_secs(10),
        |l| l.iter().any(|d| d.id == silenced_id),
    )
    .await;
    assert_eq!(listed[0].state, DeliveryState::Silenced as i32);
    assert!(listed[0].last_error.contains(&created.id), "{listed:?}");
    // The default view lists what waits to be sent or for an operator; this waits for nobody.
    // The sink has loud-1 before the worker records it delivered: wait for the record too.
    wait_for_pending(&server, "", Duration::from_secs(10), |l| l.is_empty()).await;
    let got = client
        .get_delivery(GetDeliveryRequest {
            delivery_id: silenced_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let event = got.history.last().unwrap();
    assert_eq!(event.kind, Kind::Silenced as i32);
    assert_eq!(event.detail, created.id);

    // It ends by itself; what comes afterwards goes out, what it held stays silenced.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let open = client
            .list_silences(ListSilencesRequest {
                include_expired: false,
            })
            .await
            .unwrap()
            .into_inner()
            .silences;
        if open.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{open:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .enqueue(request_in("flytesnacks", "after-1"))
        .await
        .unwrap();
    let mails = wait_for_messages(&sink, 2, Duration::from_secs(20));
    assert_eq!(mails.len(), 2, "{}", server.log());
    let texts = texts(&sink);
    assert!(texts.iter().any(|t| t.contains("loud-1")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("after-1")), "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("quiet-1")), "{texts:?}");
    let still = list_all(&mut client, "eq(state,silenced)").await;
    assert_eq!(still.len(), 1, "{still:?}");
    let kept = client
        .list_silences(ListSilencesRequest {
            include_expired: true,
        })
        .await
        .unwrap()
        .into_inner()
        .silences;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].state, silence::State::Expired as i32);
    assert_eq!(kept[0].comment, "warehouse maintenance");
}

#[tokio::test]
async fn a_deliver_after_silence_sends_what_it_held_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let _smtp = SmtpSink::start(port, &sink);
    let server = Server::start(dir.path(), Some(&config(port)));
    let mut client = server.client().await;

    let ends = client
        .create_silence(silence("eq(name,held-1)", 4, true))
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    let expired_early = client
        .create_silence(silence("eq(name,held-2)", 600, true))
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    let mut ids = Vec::new();
    for name in ["held-1", "held-2"] {
        ids.push(
            client
                .enqueue(request_in("flytesnacks", name))
                .await
                .unwrap()
                .into_inner()
                .delivery_ids[0]
                .clone(),
        );
    }
    wait_for_pending(
        &server,
        "eq(state,silenced)",
        Duration::from_secs(10),
        |l| l.len() == 2,
    )
    .await;
    assert!(maildir_messages(&sink).is_empty());

    // One is ended by an operator, the other by its clock: both send what they held.
    client
        .expire_silence(ExpireSilenceRequest {
            silence_id: expired_early.id.clone(),
        })
        .await
        .unwrap();
    let mails = wait_for_messages(&sink, 1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1, "{}", server.log());
    assert!(parse_mail(&mails[0]).text.contains("held-2"));
    let mails = wait_for_messages(&sink, 2, Duration::from_secs(20));
    assert_eq!(mails.len(), 2, "{}", server.log());
    for (id, silence_id) in ids.iter().zip([&ends.id, &expired_early.id]) {
        // The sink has the message a moment before the worker records it delivered.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let history = loop {
            let history = client
                .get_delivery(GetDeliveryRequest {
                    delivery_id: id.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .history;
            if history.len() >= 3 || std::time::Instant::now() > deadline {
                break history;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let kinds: Vec<i32> = history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Silenced as i32,
                Kind::Unsilenced as i32,
                Kind::Delivered as i32
            ],
            "{history:?}"
        );
        assert_eq!(&history[0].detail, silence_id);
    }
}

#[tokio::test]
async fn bad_silences_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(&config(free_port())));
    let mut client = server.client().await;
    let mut cases: Vec<(CreateSilenceRequest, &str)> = vec![
        (CreateSilenceRequest { silence: None }, "silence"),
        (silence("", 60, false), "silence.matcher"),
        (silence("eq(project", 60, false), "silence.matcher"),
        (silence("eq(state,dead)", 60, false), "silence.matcher"),
        (silence("eq(owner,x)", 60, false), "silence.matcher"),
        (silence("eq(project,x)", -60, false), "silence.ends_at"),
    ];
    let mut before_start = silence("eq(project,x)", 60, false);
    before_start.silence.as_mut().unwrap().starts_at = Some(in_secs(120));
    cases.push((before_start, "silence.ends_at"));
    let mut no_comment = silence("eq(project,x)", 60, false);
    no_comment.silence.as_mut().unwrap().comment = String::new();
    cases.push((no_comment, "silence.comment"));
    let mut long_comment = silence("eq(project,x)", 60, false);
    long_comment.silence.as_mut().unwrap().comment = "x".repeat(1025);
    cases.push((long_comment, "silence.comment"));
    for (request, field) in cases {
        let status = client.create_silence(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{request:?}");
        assert!(
            status.message().contains(&format!("{field}:")),
            "{request:?}: {}",
            status.message()
        );
    }
    // maxSilences: 3 in this config.
    for _ in 0..3 {
        client
            .create_silence(silence("eq(project,x)", 60, false))
            .await
            .unwrap();
    }
    let status = client
        .create_silence(silence("eq(project,x)", 60, false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("maxSilences"), "{status:?}");
    let status = client
        .expire_silence(ExpireSilenceRequest {
            silence_id: "no-such-silence".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = client
        .expire_silence(ExpireSilenceRequest {
            silence_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("silence_id"));
}

fn cli(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .args(["--server", &server.url()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_silence_commands_add_list_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(&config(free_port())));
    let (ok, out, err) = cli(
        &server,
        &[
            "silence",
            "add",
            "--matcher",
            "eq(project,flytesnacks)+eq(domain,production)",
            "--for",
            "2h",
            "--comment",
            "warehouse maintenance",
            "--created-by",
            "oncall@example.com",
            "--deliver-after",
        ],
    );
    assert!(ok, "{err}");
    let id = out.split_whitespace().next().unwrap().to_string();
    assert!(out.contains("  active  "), "{out}");
    assert!(out.contains("deliver-after"), "{out}");
    assert!(
        out.contains("by oncall@example.com: warehouse maintenance"),
        "{out}"
    );
    let (ok, out, err) = cli(
        &server,
        &[
            "silence",
            "add",
            "--matcher",
            "eq(project,x)",
            "--starts",
            "2099-01-01T00:00:00Z",
            "--until",
            "2099-01-02T00:00:00Z",
            "--comment",
            "later",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("  pending  "), "{out}");
    let (ok, _, err) = cli(
        &server,
        &[
            "silence",
            "add",
            "--matcher",
            "eq(state,dead)",
            "--for",
            "1h",
            "--comment",
            "x",
        ],
    );
    assert!(!ok);
    assert!(err.contains("silence.matcher"), "{err}");

    let (ok, out, err) = cli(&server, &["silence", "list"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| !l.starts_with(' ')).count(),
        2,
        "{out}"
    );
    let (ok, out, err) = cli(&server, &["silence", "expire", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("  expired  "), "{out}");
    let (_, out, _) = cli(&server, &["silence", "list"]);
    assert!(!out.contains(&id), "{out}");
    let (_, out, _) = cli(&server, &["silence", "list", "--all"]);
    assert!(out.contains(&id), "{out}");
}

/// Two replicas on one PostgreSQL ledger: a silence created on one holds back deliveries that
/// either replica leases, and expiring it on the other sends what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_created_on_one_replica_applies_on_the_other() {
    let database = common::postgres::TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let _smtp = SmtpSink::start(port, &sink);
    let config = common::replicas::smtp_replica_config(port, Some(&database.dsn()));
    let replicas: Vec<Server> = (0..2)
        .map(|i| {
            let home = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start_env(&home, &config, &[])
        })
        .collect();
    let mut a = replicas[0].client().await;
    let mut b = replicas[1].client().await;
    let created = a
        .create_silence(silence("contains(name,quiet)", 600, true))
        .await
        .unwrap()
        .into_inner()
        .silence
        .unwrap();
    // The other replica reloads silences every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut held = Vec::new();
    for i in 0..6 {
        let client = if i % 2 == 0 { &mut a } else { &mut b };
        held.push(
            client
                .enqueue(request_in("flytesnacks", &format!("quiet-{i}")))
                .await
                .unwrap()
                .into_inner()
                .delivery_ids[0]
                .clone(),
        );
    }
    b.enqueue(request_in("flytesnacks", "loud-1"))
        .await
        .unwrap();
    let mails = wait_for_messages(&sink, 1, Duration::from_secs(20));
    assert_eq!(mails.len(), 1);
    let silenced = wait_for_pending(
        &replicas[1],
        "eq(state,silenced)",
        Duration::from_secs(20),
        |l| l.len() == 6,
    )
    .await;
    assert!(silenced.iter().all(|d| held.contains(&d.id)));
    assert_eq!(maildir_messages(&sink).len(), 1);
    assert!(parse_mail(&mails[0]).subject.contains("loud-1"));

    b.expire_silence(ExpireSilenceRequest {
        silence_id: created.id.clone(),
    })
    .await
    .unwrap();
    let mails = wait_for_messages(&sink, 7, Duration::from_secs(30));
    assert_eq!(
        mails.len(),
        7,
        "{}\n{}",
        replicas[0].log(),
        replicas[1].log()
    );
    let subjects: Vec<String> = mails.iter().map(|m| parse_mail(m).subject).collect();
    for i in 0..6 {
        assert!(
            subjects.iter().any(|s| s.contains(&format!("quiet-{i} "))),
            "{subjects:?}"
        );
    }
    assert!(list_all(&mut a, "eq(state,silenced)").await.is_empty());
}

/// Keys a delivery has only in its execution and recipients: a silence on the launch plan and
/// the phase holds back that launch plan's failures and nothing else; one on a destination holds
/// back what goes to that recipient.
#[tokio::test]
async fn a_silence_can_name_the_launch_plan_phase_and_destination() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = dir.path().join("sink");
    let _smtp = SmtpSink::start(port, &sink);
    let server = Server::start(dir.path(), Some(&config(port)));
    let mut client = server.client().await;
    client
        .create_silence(silence(
            "eq(launch_plan,flytesnacks/development/lp.daily)+eq(phase,FAILED)",
            60,
            false,
        ))
        .await
        .unwrap();
    client
        .create_silence(silence("eq(destination,muted@example.com)", 60, false))
        .await
        .unwrap();
    // failed_execution runs lp.daily: held back.
    let held = client
        .enqueue(request_in("flytesnacks", "lp-daily-failed"))
        .await
        .unwrap()
        .into_inner()
        .delivery_ids[0]
        .clone();
    // Another launch plan: sent.
    let mut other = request_in("flytesnacks", "lp-other-failed");
    other
        .execution
        .as_mut()
        .unwrap()
        .launch_plan
        .as_mut()
        .unwrap()
        .name = "lp.hourly".into();
    let mut muted = request_in("other", "to-muted");
    muted.notifications = vec![email(
        &[flyte_notify::proto::flyteidl::core::workflow_execution::Phase::Failed],
        &["muted@example.com"],
        "",
    )];
    client.enqueue(other).await.unwrap();
    let muted_id = client
        .enqueue(muted)
        .await
        .unwrap()
        .into_inner()
        .delivery_ids[0]
        .clone();

    let mails = wait_for_messages(&sink, 1, Duration::from_secs(20));
    let listed = wait_for_pending(
        &server,
        "eq(state,silenced)",
        Duration::from_secs(10),
        |l| l.len() == 2,
    )
    .await;
    let mut ids: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    let mut want = vec![held.as_str(), muted_id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails_now = maildir_messages(&sink);
    assert_eq!(mails_now.len(), 1, "{mails:?}");
    assert!(
        parse_mail(&mails_now[0])
            .subject
            .contains("lp-other-failed")
    );

    // ListPending itself has no launch plan column: the key is refused there, by name.
    let refused = client
        .list_pending(flyte_notify::proto::flytenotify::v1::ListPendingRequest {
            filters: "eq(launch_plan,x/y/z)".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("launch_plan is a silence matcher key")
            || format!("{refused:?}").contains("launch_plan is a silence matcher key"),
        "{refused:?}"
    );
}

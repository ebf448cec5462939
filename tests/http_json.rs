//! Every RPC over HTTP/JSON against the real binary, each compared with the same call over gRPC:
//! the gRPC answer (or status) is turned into proto3 JSON through the descriptors and must equal
//! what the HTTP face answered, errors included.

mod common;

use std::time::Duration;

use flyte_notify::proto::flytenotify::v1 as pb;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::{Value, json};

use common::*;

fn pool() -> DescriptorPool {
    let mut pool = DescriptorPool::global();
    pool.decode_file_descriptor_set(flyte_notify::proto::FILE_DESCRIPTOR_SET)
        .unwrap();
    pool
}

fn message(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(&format!("flytenotify.v1.{name}"))
        .unwrap_or_else(|| panic!("no message {name}"))
}

/// A prost message from proto3 JSON, for the gRPC side of a comparison.
fn proto_of<M: Message + Default>(json: &Value, name: &str) -> M {
    let dynamic = DynamicMessage::deserialize(message(name), json.clone()).unwrap();
    M::decode(dynamic.encode_to_vec().as_slice()).unwrap()
}

/// A prost message as proto3 JSON.
fn json_of<M: Message>(value: &M, name: &str) -> Value {
    let dynamic = DynamicMessage::decode(message(name), value.encode_to_vec().as_slice()).unwrap();
    serde_json::to_value(&dynamic).unwrap()
}

/// What the HTTP face must answer for a gRPC status.
fn error_json(status: &tonic::Status) -> (u16, Value) {
    let http = match status.code() {
        tonic::Code::InvalidArgument => 400,
        tonic::Code::Unauthenticated => 401,
        tonic::Code::PermissionDenied => 403,
        tonic::Code::NotFound => 404,
        tonic::Code::AlreadyExists => 409,
        other => panic!("no expectation for {other:?}"),
    };
    let code = match status.code() {
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::NotFound => "NOT_FOUND",
        _ => "ALREADY_EXISTS",
    };
    let mut body = json!({"code": code, "message": status.message()});
    let details: Vec<Value> = field_violations(status)
        .into_iter()
        .map(|(field, description)| json!({"field": field, "description": description}))
        .collect();
    if !details.is_empty() {
        body["details"] = Value::Array(details);
    }
    (http, body)
}

struct Http {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Http {
    fn new(server: &Server) -> Http {
        Http {
            base: server.url(),
            client: reqwest::Client::new(),
            token: None,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("HTTP call");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        (status, value)
    }

    async fn raw(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let response = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.base),
            )
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("HTTP call");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// Calls `$rpc` over gRPC with `$json` as its request and the HTTP path with the same request
/// (as the body of a POST, or as the query string the path already holds for a GET), asserts both
/// answered alike, and returns the HTTP answer.
macro_rules! same {
    ($http:expr, $grpc:expr, $rpc:ident, $req:ident, $resp:ident, $method:literal, $path:expr, $json:expr) => {{
        let json: Value = $json;
        let grpc = $grpc
            .$rpc(proto_of::<pb::$req>(&json, stringify!($req)))
            .await;
        let body = ($method == "POST").then_some(&json);
        let (status, answer) = $http.call($method, &$path, body).await;
        let expected = match &grpc {
            Ok(response) => (200, json_of(response.get_ref(), stringify!($resp))),
            Err(status) => error_json(status),
        };
        assert_eq!(
            (status, &answer),
            (expected.0, &expected.1),
            "{} {}",
            $method,
            $path
        );
        answer
    }};
}

fn failed_enqueue(request_id: &str) -> Value {
    json!({
        "request_id": request_id,
        "execution": {
            "execution_id": {"project": "flytesnacks", "domain": "development", "name": request_id},
            "phase": "FAILED",
            "error": {"message": "learning rate must be positive"}
        },
        "notifications": [{"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}]
    })
}

fn run_event(name: &str) -> Value {
    json!({
        "request_id": format!("{name}-FAILED"),
        "run": {"project": "flytesnacks", "domain": "development", "name": name},
        "phase": "ACTION_PHASE_FAILED",
        "error": "ValueError: learning rate must be positive",
        "rules": {"notification_rules": {"rules": [{
            "on_phases": ["ACTION_PHASE_FAILED"],
            "delivery_template": {"email": {
                "to": [{"address": "oncall@example.com"}],
                "inline": {"subject": "Run {{.Run.Name}} {{.Phase}}", "text_template": "{{.Error}}"}}}}]}}
    })
}

#[tokio::test]
async fn every_rpc_answers_over_http_as_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    // Something for each List RPC to show: Durations and Timestamps in the expectation, and the
    // Flyte 2 names.
    let config = r#"
flyteNotify:
  expectations:
    - launchPlan: flytesnacks/development/lp.daily
      every: 24h
      grace: 90m
      notify: { email: [oncall@example.com] }
  deliveryConfigs:
    - name: oncall
      email:
        to: [oncall@example.com]
        subject: "{{.Run.Name}} {{.Phase}}"
        text: "{{.Error}}"
  rules:
    - name: oncall-alerts
      project: flytesnacks
      rules:
        - onPhases: [FAILED]
          deliveryConfig: oncall
"#;
    let server = Server::start(dir.path(), Some(config));
    let mut grpc = server.client().await;
    let http = Http::new(&server);

    // Enqueue: once over gRPC; then the same request again both ways gets the same answer (the
    // ids of the first, as a duplicate).
    grpc.enqueue(proto_of::<pb::EnqueueRequest>(
        &failed_enqueue("h1"),
        "EnqueueRequest",
    ))
    .await
    .unwrap();
    let enqueued = same!(
        http,
        grpc,
        enqueue,
        EnqueueRequest,
        EnqueueResponse,
        "POST",
        "/api/v1/enqueue",
        failed_enqueue("h1")
    );
    let ids = enqueued["deliveryIds"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{enqueued}");
    assert_eq!(enqueued["requestId"], "h1");
    assert_eq!(enqueued["duplicate"], true);
    let id = ids[0].as_str().unwrap().to_string();
    wait_for_messages(&server.maildir(), 1, Duration::from_secs(10));

    // Delivered now: GetDelivery is stable, with enums by name and timestamps as RFC 3339.
    let delivery = loop {
        let got = same!(
            http,
            grpc,
            get_delivery,
            GetDeliveryRequest,
            GetDeliveryResponse,
            "GET",
            format!("/api/v1/deliveries/{id}"),
            json!({"delivery_id": id})
        );
        if got["delivery"]["state"] == "DELIVERY_STATE_DELIVERED" {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["delivery"]["phase"], "FAILED", "{delivery}");
    let created = delivery["delivery"]["createdAt"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    same!(
        http,
        grpc,
        get_delivery,
        GetDeliveryRequest,
        GetDeliveryResponse,
        "GET",
        "/api/v1/deliveries/no-such-id",
        json!({"delivery_id": "no-such-id"})
    );

    // ListPending, with its query string, on a delivery that stays put: a silence holds it.
    grpc.create_silence(proto_of::<pb::CreateSilenceRequest>(
        &json!({"silence": {"matcher": "eq(project,held)", "ends_at": "2099-01-01T00:00:00Z",
                            "created_by": "test", "comment": "holds h2"}}),
        "CreateSilenceRequest",
    ))
    .await
    .unwrap();
    let mut held = failed_enqueue("h2");
    held["execution"]["execution_id"]["project"] = json!("held");
    grpc.enqueue(proto_of::<pb::EnqueueRequest>(&held, "EnqueueRequest"))
        .await
        .unwrap();
    // The worker sets it aside as silenced.
    wait_for_pending(
        &server,
        "eq(state,silenced)+eq(project,held)",
        Duration::from_secs(10),
        |listed| !listed.is_empty(),
    )
    .await;
    let pending = same!(
        http,
        grpc,
        list_pending,
        ListPendingRequest,
        ListPendingResponse,
        "GET",
        "/api/v1/deliveries?filters=eq(state%2Csilenced)%2Beq(project%2Cheld)&limit=50",
        json!({"filters": "eq(state,silenced)+eq(project,held)", "limit": 50})
    );
    assert_eq!(pending["deliveries"][0]["requestId"], "h2", "{pending}");
    assert_eq!(
        pending["deliveries"][0]["state"], "DELIVERY_STATE_SILENCED",
        "{pending}"
    );
    // ... and one with a filter that does not parse.
    let bad = same!(
        http,
        grpc,
        list_pending,
        ListPendingRequest,
        ListPendingResponse,
        "GET",
        "/api/v1/deliveries?filters=eq(colour%2Cred)",
        json!({"filters": "eq(colour,red)"})
    );
    assert_eq!(bad["code"], "INVALID_ARGUMENT");

    // Operator actions on nothing dead: the same (empty) answers, and the same refusals.
    same!(
        http,
        grpc,
        redrive,
        RedriveRequest,
        RedriveResponse,
        "POST",
        "/api/v1/deliveries:redrive",
        json!({"filters": "eq(project,flytesnacks)", "note": "relay fixed"})
    );
    same!(
        http,
        grpc,
        discard,
        DiscardRequest,
        DiscardResponse,
        "POST",
        "/api/v1/deliveries:discard",
        json!({"delivery_ids": [id], "note": "x"})
    );
    same!(
        http,
        grpc,
        redrive,
        RedriveRequest,
        RedriveResponse,
        "POST",
        "/api/v1/deliveries:redrive",
        json!({})
    );

    // Rendering without sending.
    let preview = same!(
        http,
        grpc,
        preview,
        PreviewRequest,
        PreviewResponse,
        "POST",
        "/api/v1/preview",
        json!({
            "execution": failed_enqueue("p1")["execution"].clone(),
            "notifications": [{"phases": ["FAILED"], "slack": {"recipients_email": ["a@example.slack.com"], "template": "{{ name }} {{ phase }}"}}]
        })
    );
    assert_eq!(preview["messages"][0]["textBody"], "p1 failed", "{preview}");
    same!(
        http,
        grpc,
        preview_digest,
        PreviewDigestRequest,
        PreviewDigestResponse,
        "POST",
        "/api/v1/preview-digest",
        json!({
            "executions": [failed_enqueue("a1")["execution"].clone(), failed_enqueue("b2")["execution"].clone()],
            "notification": {"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}
        })
    );

    // Silences: create over HTTP, list both ways, expire by path, list again.
    let created = http
        .call(
            "POST",
            "/api/v1/silences",
            Some(&json!({"silence": {
            "matcher": "eq(project,other)", "ends_at": "2099-01-01T00:00:00Z",
            "created_by": "oncall@example.com", "comment": "maintenance"}})),
        )
        .await;
    assert_eq!(created.0, 200, "{created:?}");
    let silence_id = created.1["silence"]["id"].as_str().unwrap().to_string();
    assert_eq!(created.1["silence"]["endsAt"], "2099-01-01T00:00:00Z");
    same!(
        http,
        grpc,
        create_silence,
        CreateSilenceRequest,
        CreateSilenceResponse,
        "POST",
        "/api/v1/silences",
        json!({"silence": {"matcher": "eq(nonsense"}})
    );
    same!(
        http,
        grpc,
        list_silences,
        ListSilencesRequest,
        ListSilencesResponse,
        "GET",
        "/api/v1/silences",
        json!({})
    );
    let (status, expired) = http
        .call(
            "POST",
            &format!("/api/v1/silences/{silence_id}:expire"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{expired}");
    let listed = same!(
        http,
        grpc,
        list_silences,
        ListSilencesRequest,
        ListSilencesResponse,
        "GET",
        "/api/v1/silences?includeExpired=true",
        json!({"include_expired": true})
    );
    let expired = listed["silences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == silence_id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(expired["comment"], "maintenance", "{listed}");
    same!(
        http,
        grpc,
        expire_silence,
        ExpireSilenceRequest,
        ExpireSilenceResponse,
        "POST",
        "/api/v1/silences/no-such-silence:expire",
        json!({"silence_id": "no-such-silence"})
    );

    let expectations = same!(
        http,
        grpc,
        list_expectations,
        ListExpectationsRequest,
        ListExpectationsResponse,
        "GET",
        "/api/v1/expectations",
        json!({})
    );
    let expectation = &expectations["expectations"][0];
    assert_eq!(expectation["every"], "86400s", "{expectations}");
    assert_eq!(expectation["grace"], "5400s", "{expectations}");
    assert!(
        expectation["watchedSince"].as_str().unwrap().ends_with('Z'),
        "{expectations}"
    );
    assert_eq!(expectation["state"], "STATE_OK", "{expectations}");

    // Flyte 2: a run event once over gRPC, then again both ways (a duplicate).
    grpc.enqueue_run_event(proto_of::<pb::EnqueueRunEventRequest>(
        &run_event("r1"),
        "EnqueueRunEventRequest",
    ))
    .await
    .unwrap();
    let run = same!(
        http,
        grpc,
        enqueue_run_event,
        EnqueueRunEventRequest,
        EnqueueResponse,
        "POST",
        "/api/v1/run-events",
        run_event("r1")
    );
    assert_eq!(run["deliveryIds"].as_array().unwrap().len(), 1, "{run}");
    same!(
        http,
        grpc,
        enqueue_action_paused,
        EnqueueActionPausedRequest,
        EnqueueResponse,
        "POST",
        "/api/v1/action-paused",
        json!({"request_id": "p1", "action": {"run": {"project": "flytesnacks", "domain": "development", "name": "r2"}, "name": "approve"}, "prompt": "Deploy?"})
    );
    let configs = same!(
        http,
        grpc,
        list_delivery_configs,
        ListDeliveryConfigsRequest,
        ListDeliveryConfigsResponse,
        "GET",
        "/api/v1/delivery-configs?project=flytesnacks",
        json!({"project": "flytesnacks"})
    );
    let rules = same!(
        http,
        grpc,
        list_rules,
        ListRulesRequest,
        ListRulesResponse,
        "GET",
        "/api/v1/rules?project=flytesnacks&domain=development",
        json!({"project": "flytesnacks", "domain": "development"})
    );
    assert!(configs.to_string().contains("\"oncall\""), "{configs}");
    assert!(rules.to_string().contains("\"oncall-alerts\""), "{rules}");

    // SendTest makes a new delivery each time: the same shape, and a mail for each.
    let mails = maildir_messages(&server.maildir()).len();
    let sent = http
        .call(
            "POST",
            "/api/v1/send-test",
            Some(&json!({"notification": {"email": {"recipients_email": ["oncall@example.com"]}}})),
        )
        .await;
    assert_eq!(sent.0, 200, "{sent:?}");
    assert!(
        sent.1["deliveryId"].as_str().is_some_and(|s| !s.is_empty()),
        "{sent:?}"
    );
    wait_for_messages(&server.maildir(), mails + 1, Duration::from_secs(10));
    same!(
        http,
        grpc,
        send_test,
        SendTestRequest,
        SendTestResponse,
        "POST",
        "/api/v1/send-test",
        json!({})
    );

    // gRPC's own path with a JSON body is the same RPC.
    let (status, by_grpc_path) = http
        .call(
            "POST",
            "/flytenotify.v1.NotificationService/Enqueue",
            Some(&failed_enqueue("h1")),
        )
        .await;
    assert_eq!((status, &by_grpc_path), (200, &enqueued));
}

#[tokio::test]
async fn an_invalid_enqueue_is_refused_alike_with_every_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let mut grpc = server.client().await;
    let http = Http::new(&server);
    let answer = same!(
        http,
        grpc,
        enqueue,
        EnqueueRequest,
        EnqueueResponse,
        "POST",
        "/api/v1/enqueue",
        json!({
            "execution": {"execution_id": {"project": "flytesnacks", "domain": "development", "name": "x"}, "phase": "RUNNING"},
            "notifications": [{"phases": ["FAILED"], "email": {"recipients_email": ["oncall at example.com"]}}]
        })
    );
    let fields: Vec<&str> = answer["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"execution.phase"), "{answer}");
    assert!(
        fields.contains(&"notifications[0].email.recipients_email[0]"),
        "{answer}"
    );
}

#[tokio::test]
async fn malformed_bodies_unknown_fields_and_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        Some("flyteNotify:\n  limits:\n    maxRequestBytes: 2000\n"),
    );
    let http = Http::new(&server);

    let (status, v) = http
        .raw("POST", "/api/v1/enqueue", "{\"requestId\": ")
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "INVALID_ARGUMENT");
    assert_eq!(v["details"][0]["field"], "body", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );

    let (status, v) = http
        .raw(
            "POST",
            "/api/v1/enqueue",
            r#"{"requestId": "a", "colour": "red"}"#,
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{v}"
    );
    assert!(
        v["details"][0]["description"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{v}"
    );

    let (status, v) = http.call("GET", "/api/v1/deliveries?limt=5", None).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["details"][0]["field"], "limt", "{v}");

    let (status, v) = http
        .call("GET", "/api/v1/deliveries?limit=many", None)
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("limit"), "{v}");

    // limits.maxRequestBytes holds for the JSON body too.
    let big = json!({"request_id": "x".repeat(3000)});
    let (status, v) = http.call("POST", "/api/v1/enqueue", Some(&big)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["details"][0]["field"], "request", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("maxRequestBytes"),
        "{v}"
    );

    let (status, v) = http.call("GET", "/api/v1/nothing-here", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{v}"
    );
    let (status, v) = http.call("GET", "/api/v1/enqueue", None).await;
    assert_eq!(status, 405, "{v}");
    assert!(v["message"].as_str().unwrap().contains("takes POST"), "{v}");
}

#[tokio::test]
async fn http_calls_need_the_same_bearer_token_and_never_echo_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token-for-http-test";
    let config =
        "flyteNotify:\n  metricsListen: 127.0.0.1:0\n  auth:\n    tokensEnvVar: NOTIFY_TOKENS\n";
    let server = Server::start_env(dir.path(), config, &[("NOTIFY_TOKENS", token)]);
    let mut http = Http::new(&server);

    // No token: what gRPC says, as 401.
    let mut grpc = server.client().await;
    let refused = grpc
        .list_rules(pb::ListRulesRequest::default())
        .await
        .unwrap_err();
    let (status, v) = http.call("GET", "/api/v1/rules", None).await;
    assert_eq!((status, v.clone()), error_json(&refused));
    assert_eq!(status, 401);

    http.token = Some("not-the-token".into());
    let (status, v) = http.call("GET", "/api/v1/rules", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{v}"
    );
    assert!(!v.to_string().contains("not-the-token"), "{v}");

    http.token = Some(token.into());
    let (status, v) = http
        .call("POST", "/api/v1/enqueue", Some(&failed_enqueue("t1")))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(!server.log().contains(token), "the log holds the token");
    assert!(
        !server.log().contains("not-the-token"),
        "the log holds a token"
    );
}

#[tokio::test]
async fn http_calls_are_counted_by_method_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!("flyteNotify:\n  metricsListen: 127.0.0.1:{port}\n");
    let server = Server::start(dir.path(), Some(&config));
    let http = Http::new(&server);
    let (status, _) = http
        .call("POST", "/api/v1/enqueue", Some(&failed_enqueue("m1")))
        .await;
    assert_eq!(status, 200);
    let (status, _) = http.call("POST", "/api/v1/enqueue", Some(&json!({}))).await;
    assert_eq!(status, 400);
    // A body that never becomes a gRPC call counts too, under its RPC.
    let (status, _) = http.raw("POST", "/api/v1/enqueue", "{").await;
    assert_eq!(status, 400);
    let metrics = scrape_metrics(port).await;
    let count = |code: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("flyte_notify_grpc_server_handling_seconds_count")
                    && l.contains("grpc_method=\"Enqueue\"")
                    && l.contains(&format!("grpc_code=\"{code}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(count("OK").as_deref(), Some("1"), "{metrics}");
    assert_eq!(count("InvalidArgument").as_deref(), Some("2"), "{metrics}");
}

#[tokio::test]
async fn http_json_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        Some("flyteNotify:\n  http:\n    enabled: false\n"),
    );
    let http = Http::new(&server);
    // HTTP/1.1 is not spoken at all then; gRPC still is.
    let refused = http
        .client
        .get(format!("{}/api/v1/rules", http.base))
        .send()
        .await;
    assert!(refused.is_err(), "HTTP/1.1 answered: {refused:?}");
    let mut grpc = server.client().await;
    grpc.list_rules(pb::ListRulesRequest::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let wrong = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg({
            let p = dir.path().join("c.yaml");
            std::fs::write(&p, "flyteNotify:\n  http:\n    enable: false\n").unwrap();
            p
        })
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("enable"), "{err}");
}

#[tokio::test]
async fn http_json_is_served_over_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg("subjectAltName=DNS:localhost,IP:127.0.0.1")
        .arg("-keyout")
        .arg(d.join("server.key"))
        .arg("-out")
        .arg(d.join("server.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let config = format!(
        "flyteNotify:\n  tls: {{ certFile: {0}/server.pem, keyFile: {0}/server.key }}\n",
        d.display()
    );
    std::fs::create_dir_all(d.join("srv")).unwrap();
    let server = Server::start(&d.join("srv"), Some(&config));
    let body = serde_json::to_string(&failed_enqueue("tls1")).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(d.join("server.pem"))
        .args(["-w", "\n%{http_version}", "-d", &body])
        .arg(format!("https://{}/api/v1/enqueue", server.addr))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, version) = out.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "{out}");
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["requestId"], "tls1", "{out}");
    wait_for_messages(&server.maildir(), 1, Duration::from_secs(10));
}

#[tokio::test]
async fn a_call_past_the_request_timeout_is_a_json_deadline_exceeded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        Some("flyteNotify:\n  transport:\n    requestTimeout: 500ms\n"),
    );
    // A body announced and never finished: the call runs into transport.requestTimeout.
    let mut socket = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/enqueue HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"requestId\": ",
        server.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}") {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains(r#""code":"DEADLINE_EXCEEDED""#), "{text}");
    assert!(text.contains("transport.requestTimeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

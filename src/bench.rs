//! `flyte-notify bench`: starts this binary as a server (a child process, so that its RSS is its
//! own) and measures, in one run, each figure beside the no-op baseline (gRPC health Check) on the
//! same server:
//!
//! 1. health Check and durable Enqueue at each concurrency, delivering to a local webhook sink (no
//!    fsync of ours but the ledger's) and, separately, into the Maildir;
//! 2. enqueue-to-delivered latency at a fixed offered load, to a local webhook sink and to a local
//!    SMTP responder;
//! 3. Preview and ListPending;
//! 4. scale: Enqueue and ListPending pages with 0 and with `--pending` deliveries pending, and the
//!    time from start to SERVING with them;
//! 5. RSS at idle, after peak load, and with `--pending` pending;
//! 6. the Enqueue figures with `store: postgres` (`--postgres`);
//! 7. Alertmanager, when installed, on the same sink: ingest throughput and ingest-to-webhook
//!    latency.
//!
//! `--target ADDR --count N` only sends N Enqueues to a running server (scripts/callgrind-enqueue.sh).

mod bare;
mod latency;
mod peer;
mod replicas;
mod sink;

pub use bare::{BareArgs, serve as serve_bare};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

use crate::proto::flyteidl::admin::{EmailNotification, Notification, notification};
use crate::proto::flyteidl::core::workflow_execution::Phase;
use crate::proto::flyteidl::core::{
    ExecutionError, Identifier, ResourceType, WorkflowExecutionIdentifier,
};
use crate::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;
use crate::proto::flytenotify::v1::{
    EnqueueRequest, ExecutionContext, ListPendingRequest, PreviewRequest, WebhookNotification,
};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// How long each (rpc, concurrency) cell runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Concurrent callers, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    pub concurrency: Vec<usize>,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Data dir for the server; a fresh temporary one by default.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Config for the server (e.g. to measure with SMTP instead of the Maildir); used by the
    /// throughput section only.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The flyte-notify binary to run as the server; this one by default. Measuring an older
    /// build with the same load generator compares releases on one machine in one sitting.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Offered load for the delivery-latency section, in Enqueues per second.
    #[arg(long, default_value_t = 1000)]
    pub latency_rate: u32,
    /// How long the delivery-latency section offers that load, per sink; 0s skips it.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub latency_duration: Duration,
    /// How long the pace runs (Enqueue as fast as accepted, is delivery keeping up?) last; 0s
    /// skips them.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub pace_duration: Duration,
    /// Deliveries pending for the scale section; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: u64,
    /// PostgreSQL server for the `store: postgres` section (a database is created for the run
    /// and dropped after); "off" skips it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    /// The Alertmanager binary to compare with; skipped when it cannot be found.
    #[arg(long, default_value = "prometheus-alertmanager")]
    pub alertmanager: String,
    /// Sections to run, comma separated: throughput, latency, reads, scale, pace, postgres,
    /// replicas, peer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,latency,reads,scale,pace,postgres,replicas,peer"
    )]
    pub sections: Vec<String>,
    /// Only send `--count` Enqueues (Maildir email) to the server at this address, at the first
    /// `--concurrency`, and exit: for profiling a server run by someone else.
    #[arg(long)]
    pub target: Option<String>,
    /// With `--target`: how many Enqueues.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// `flyteNotify.worker.concurrency` for the servers the bench configures (the server's
    /// default when unset): how many sends the worker keeps in flight.
    #[arg(long)]
    pub worker_concurrency: Option<usize>,
}

/// Where an Enqueue's one delivery goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Sink {
    /// Email: the Maildir, or the server's SMTP server.
    Email,
    /// The configured webhook destination `sink`.
    Webhook,
}

#[derive(Clone, Debug, PartialEq)]
enum Rpc {
    Health,
    Enqueue(Sink),
    /// The built-in email for a failed execution: a response of a few KB.
    Preview,
    /// One page of 100 undelivered deliveries; a call counts as an error unless it lists at
    /// least `min_rows`.
    ListPending {
        token: String,
        filters: String,
        min_rows: usize,
    },
}

impl Rpc {
    fn list(min_rows: usize) -> Self {
        Rpc::ListPending {
            token: String::new(),
            filters: String::new(),
            min_rows,
        }
    }
}

fn preview_request() -> PreviewRequest {
    let id = |kind: ResourceType, name: &str| Identifier {
        resource_type: kind as i32,
        project: "flytesnacks".into(),
        domain: "development".into(),
        name: name.into(),
        version: "v3".into(),
        org: String::new(),
    };
    let mut execution = enqueue_request(0, 0, Sink::Email).execution.expect("set");
    execution.workflow = Some(id(ResourceType::Workflow, "wf.train"));
    execution.launch_plan = Some(id(ResourceType::LaunchPlan, "lp.daily"));
    execution.error = Some(ExecutionError {
        code: "USER:ValueError".into(),
        message: "learning rate must be positive".into(),
        ..Default::default()
    });
    PreviewRequest {
        execution: Some(execution),
        notifications: enqueue_request(0, 0, Sink::Email).notifications,
        webhooks: Vec::new(),
        run_event: None,
        action_paused: None,
    }
}

struct Cell {
    calls: u64,
    errors: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
}

pub(crate) fn execution(caller: usize, n: u64) -> ExecutionContext {
    ExecutionContext {
        execution_id: Some(WorkflowExecutionIdentifier {
            project: "flytesnacks".into(),
            domain: "development".into(),
            name: format!("bench{caller}x{n}"),
            org: String::new(),
        }),
        phase: Phase::Failed as i32,
        ..Default::default()
    }
}

pub(crate) fn enqueue_request(caller: usize, n: u64, sink: Sink) -> EnqueueRequest {
    let (notifications, webhooks) = match sink {
        Sink::Email => (
            vec![Notification {
                phases: vec![Phase::Failed as i32],
                r#type: Some(notification::Type::Email(EmailNotification {
                    recipients_email: vec!["oncall@example.com".into()],
                    template: String::new(),
                })),
            }],
            Vec::new(),
        ),
        Sink::Webhook => (
            Vec::new(),
            vec![WebhookNotification {
                phases: vec![Phase::Failed as i32],
                destination: "sink".into(),
                ..Default::default()
            }],
        ),
    };
    EnqueueRequest {
        request_id: format!("bench-{caller}-{n}-{}", uuid::Uuid::new_v4()),
        execution: Some(execution(caller, n)),
        notifications,
        webhooks,
        deadline: None,
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds")
}

async fn run_cell(channels: &[Channel], rpc: &Rpc, concurrency: usize, duration: Duration) -> Cell {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for caller in 0..concurrency {
        let channel = channels[caller % channels.len()].clone();
        let rpc = rpc.clone();
        tasks.push(tokio::spawn(async move {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let mut notify = NotificationServiceClient::new(channel);
            let mut hist = new_histogram();
            let (mut calls, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match &rpc {
                    Rpc::Health => health
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok(),
                    Rpc::Enqueue(sink) => notify
                        .enqueue(enqueue_request(caller, calls, *sink))
                        .await
                        .is_ok(),
                    Rpc::Preview => notify.preview(preview_request()).await.is_ok(),
                    Rpc::ListPending {
                        token,
                        filters,
                        min_rows,
                    } => notify
                        .list_pending(ListPendingRequest {
                            limit: 100,
                            token: token.clone(),
                            filters: filters.clone(),
                        })
                        .await
                        .is_ok_and(|r| r.into_inner().deliveries.len() >= *min_rows),
                };
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                calls += 1;
                if !ok {
                    errors += 1;
                }
            }
            (calls, errors, hist)
        }));
    }
    let mut histogram = new_histogram();
    let (mut calls, mut errors) = (0, 0);
    for t in tasks {
        let (c, e, h) = t.await.expect("bench caller panicked");
        calls += c;
        errors += e;
        histogram.add(h).expect("same bounds");
    }
    Cell {
        calls,
        errors,
        elapsed: start.elapsed(),
        histogram,
    }
}

/// The server's CPU time so far (user + system), from /proc: per call, a steadier figure than
/// calls per second on a machine whose other core is busy with the load generator.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture it supports.
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU time so far of every PostgreSQL server process on this machine (the postmaster's
/// backends and its background writers): per call, what the database spent on it. None when no
/// such process runs here (a remote database).
fn postgres_cpu_time() -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let is_postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if let (true, Some(cpu)) = (is_postgres, cpu_time(pid)) {
            total += cpu;
            found = true;
        }
    }
    found.then_some(total)
}

/// RSS now, its peak, and the anonymous part now (heap, stacks), in KiB. The rest of RSS is the
/// binary's own pages, clean and file-backed: shared with other processes running it, and what
/// the kernel drops first under memory pressure.
fn rss_kib(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?, field("RssAnon:")?))
}

fn print_rss(what: &str, pid: u32) {
    if let Some((rss, peak, anon)) = rss_kib(pid) {
        println!(
            "server RSS {what}: {:.1} MiB now ({:.1} MiB anonymous), {:.1} MiB peak so far",
            rss as f64 / 1024.0,
            anon as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
}

/// A server child process: killed when dropped.
struct ServerChild {
    child: tokio::process::Child,
    pid: u32,
    addr: String,
    /// From spawning the process to its "listening" line.
    started_in: Duration,
}

impl ServerChild {
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn start_server(
    exe: &Path,
    data_dir: &Path,
    config: Option<&Path>,
    env: &[(&str, String)],
) -> anyhow::Result<ServerChild> {
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    start_listening(command).await
}

/// The bare group-commit insert (bare.rs) into `store` ("sqlite" under `data_dir`, or
/// "postgres" at `postgres_dsn`), as a child process like the server. Always this binary's own,
/// also when `--server-bin` measures another build: the ceiling stays the same.
async fn start_bare(
    store: &str,
    data_dir: &Path,
    postgres_dsn: &str,
) -> anyhow::Result<ServerChild> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["bench-bare", "--store", store, "--postgres", postgres_dsn])
        .arg("--data-dir")
        .arg(data_dir);
    start_listening(command).await
}

/// Spawns `command` and waits for its "listening on ADDR" line.
async fn start_listening(mut command: tokio::process::Command) -> anyhow::Result<ServerChild> {
    let spawned = Instant::now();
    let mut child = command
        .env(
            "RUST_LOG",
            // The "listening on" line is info; it must get through whatever else is asked for.
            format!(
                "warn,flyte_notify=info,{}",
                std::env::var("FLYTE_NOTIFY_BENCH_LOG").unwrap_or_default()
            ),
        )
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the server")?;
    let pid = child.id().context("server has no pid")?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut last = String::new();
    let addr = loop {
        let Some(line) = lines.next_line().await? else {
            bail!("the server exited before listening; its last line: {last}");
        };
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        last = line;
    };
    let started_in = spawned.elapsed();
    // Keep draining the server's log so it never blocks on a full pipe.
    let echo = std::env::var_os("FLYTE_NOTIFY_BENCH_LOG").is_some();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("{line}");
            }
        }
    });
    Ok(ServerChild {
        child,
        pid,
        addr,
        started_in,
    })
}

async fn connect(addr: &str, connections: usize) -> anyhow::Result<Arc<Vec<Channel>>> {
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await
                .with_context(|| format!("cannot connect to {addr}"))?,
        );
    }
    Ok(Arc::new(channels))
}

fn print_header() {
    println!(
        "{:<24} {:>11} {:>10} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "rpc",
        "concurrency",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs health",
        "server µs",
        "pg µs"
    );
}

/// Runs `rpcs` at each concurrency, health first as the baseline, and prints a row per cell.
/// Returns the calls per second of each cell, in order.
async fn measure(
    channels: &[Channel],
    pid: u32,
    rpcs: &[(&str, Rpc)],
    concurrencies: &[usize],
    duration: Duration,
) -> Vec<f64> {
    let mut rates = Vec::new();
    for &concurrency in concurrencies {
        let mut baseline = None;
        for (label, rpc) in rpcs {
            let cpu_before = cpu_time(pid);
            let pg_before = postgres_cpu_time();
            let cell = run_cell(channels, rpc, concurrency, duration).await;
            // CPU per call in every local PostgreSQL process: other databases' work counts too,
            // so on a quiet server only.
            let pg_per_call = match (pg_before, postgres_cpu_time()) {
                (Some(a), Some(b)) if cell.calls > 0 && b > a => {
                    format!("{:.0}", (b - a).as_micros() as f64 / cell.calls as f64)
                }
                _ => "-".into(),
            };
            // For Enqueue this includes the worker delivering meanwhile.
            let cpu_per_call = match (cpu_before, cpu_time(pid)) {
                (Some(a), Some(b)) if cell.calls > 0 => {
                    format!("{:.0}", (b - a).as_micros() as f64 / cell.calls as f64)
                }
                _ => "-".into(),
            };
            let rate = cell.calls as f64 / cell.elapsed.as_secs_f64();
            if *rpc == Rpc::Health {
                baseline = Some(rate);
            }
            rates.push(rate);
            println!(
                "{:<24} {:>11} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>9} {:>9} {:>9}",
                label,
                concurrency,
                rate,
                cell.histogram.value_at_quantile(0.5) as f64 / 1000.0,
                cell.histogram.value_at_quantile(0.99) as f64 / 1000.0,
                cell.errors,
                baseline.map_or("-".to_string(), |b| format!("{:.0}%", 100.0 * rate / b)),
                cpu_per_call,
                pg_per_call,
            );
        }
    }
    rates
}

/// A server config: email to the Maildir, or over SMTP to `smtp_port`; the webhook destination
/// `sink` at `webhook_url`; retries an hour apart when `hold`, so that failed deliveries stay
/// listed; the ledger on PostgreSQL at `postgres_dsn`; `worker.concurrency`.
pub(crate) fn server_config(
    smtp_port: Option<u16>,
    webhook_url_file: Option<&Path>,
    hold: bool,
    postgres_dsn: Option<&str>,
    worker_concurrency: Option<usize>,
) -> String {
    let mut yaml = String::new();
    if let Some(port) = smtp_port {
        yaml += &format!(
            "notifications:\n  emailer:\n    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: \"{port}\" }}\n"
        );
    }
    yaml += "flyteNotify:\n  smtp: { tls: none }\n";
    if let Some(n) = worker_concurrency {
        yaml += &format!("  worker: {{ concurrency: {n} }}\n");
    }
    if hold {
        yaml += "  retry: { baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }\n";
    }
    if let Some(file) = webhook_url_file {
        yaml += &format!(
            "  webhooks:\n    allowedHosts: [\"127.0.0.1\"]\n    rateLimit: 1000000/s\n    destinations: [{{ name: sink, urlFile: \"{}\" }}]\n",
            file.display()
        );
    }
    if let Some(dsn) = postgres_dsn {
        yaml += &format!("  store: postgres\n  postgres: {{ dsn: \"{dsn}\" }}\n");
    }
    yaml
}

/// What the whole run shares: where to put files, which binary to run, the sinks.
pub(crate) struct Bench {
    args: BenchArgs,
    exe: PathBuf,
    scratch: PathBuf,
    webhook_receipts: Arc<sink::Receipts>,
    webhook_url_file: PathBuf,
    webhook_port: u16,
    /// One line per target the run measured, printed together at the end.
    targets: std::sync::Mutex<Vec<String>>,
}

impl Bench {
    /// The ceiling: the bare group-commit insert into `store` (its data dir `scratch/dir`, or the
    /// database `postgres_dsn`), warmed up, then measured at each concurrency like Enqueue.
    pub(crate) async fn bare_rates(
        &self,
        store: &str,
        dir: &str,
        postgres_dsn: &str,
    ) -> anyhow::Result<Vec<f64>> {
        let bare = start_bare(store, &self.scratch.join(dir), postgres_dsn).await?;
        let bare_channels = connect(&bare.addr, self.args.connections).await?;
        run_cell(
            &bare_channels,
            &Rpc::Enqueue(Sink::Webhook),
            4,
            Duration::from_millis(300),
        )
        .await;
        let rates = measure(
            &bare_channels,
            bare.pid,
            &[("bare group-commit insert", Rpc::Enqueue(Sink::Webhook))],
            &self.args.concurrency,
            self.args.duration,
        )
        .await;
        bare.stop().await;
        Ok(rates)
    }

    /// Notes what a target came to, for the summary at the end of the run.
    fn target(&self, target: &str, measured: &str, met: bool) {
        let verdict = if met { "met" } else { "NOT met" };
        self.targets
            .lock()
            .expect("targets lock poisoned")
            .push(format!("{target}: {measured}: {verdict}"));
    }

    fn wants(&self, section: &str) -> bool {
        self.args.sections.iter().any(|s| s == section)
    }

    fn write_config(&self, name: &str, yaml: &str) -> anyhow::Result<PathBuf> {
        let path = self.scratch.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    /// Health and Enqueue to the webhook sink and into the Maildir, at each concurrency; RSS at
    /// idle and after.
    async fn throughput(&self, name: &str, postgres_dsn: Option<&str>) -> anyhow::Result<()> {
        let config = match (&self.args.config, postgres_dsn) {
            (Some(config), None) => config.clone(),
            _ => self.write_config(
                name,
                &server_config(
                    None,
                    Some(&self.webhook_url_file),
                    false,
                    postgres_dsn,
                    self.args.worker_concurrency,
                ),
            )?,
        };
        let data_dir = match &self.args.data_dir {
            Some(dir) if postgres_dsn.is_none() => dir.clone(),
            _ => self.scratch.join(name),
        };
        let server = start_server(&self.exe, &data_dir, Some(&config), &[]).await?;
        let channels = connect(&server.addr, self.args.connections).await?;
        // Idle: started, connected, nothing asked yet.
        tokio::time::sleep(Duration::from_millis(500)).await;
        print_rss("at idle", server.pid);
        // Warm up every path (connections, caches) before measuring.
        for rpc in [
            Rpc::Health,
            Rpc::Enqueue(Sink::Webhook),
            Rpc::Enqueue(Sink::Email),
        ] {
            run_cell(&channels, &rpc, 4, Duration::from_millis(300)).await;
        }
        print_header();
        let rates = measure(
            &channels,
            server.pid,
            &[
                ("health", Rpc::Health),
                ("enqueue → webhook sink", Rpc::Enqueue(Sink::Webhook)),
                ("enqueue → Maildir", Rpc::Enqueue(Sink::Email)),
            ],
            &self.args.concurrency,
            self.args.duration,
        )
        .await;
        print_rss("after peak load", server.pid);
        server.stop().await;
        // The ceiling, right after and on the same store: the same calls as a bare insert.
        let store = if postgres_dsn.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        let bare_rates = self
            .bare_rates(
                store,
                &format!("{name}-bare"),
                postgres_dsn.unwrap_or(&self.args.postgres),
            )
            .await?;
        let target = if store == "postgres" { 70.0 } else { 90.0 };
        for (i, concurrency) in self.args.concurrency.iter().enumerate() {
            let (enqueue, bare) = (rates[3 * i + 1], bare_rates[i]);
            let ratio = 100.0 * enqueue / bare;
            println!(
                "enqueue → webhook sink / bare insert ({store}), concurrency {concurrency}: {enqueue:.0}/s against {bare:.0}/s = {ratio:.0}%"
            );
            if *concurrency == 64 {
                self.target(
                    &format!(
                        "{store} Enqueue at 64 >= {target:.0}% of the bare group-commit insert"
                    ),
                    &format!("{ratio:.0}% ({enqueue:.0}/s against {bare:.0}/s)"),
                    ratio >= target,
                );
            }
        }
        Ok(())
    }

    /// Preview and ListPending, on a server whose mail server never answers so that deliveries
    /// stay listed.
    async fn reads(&self) -> anyhow::Result<()> {
        let hole = sink::blackhole().await?;
        let config =
            self.write_config("reads", &server_config(Some(hole), None, true, None, None))?;
        let server =
            start_server(&self.exe, &self.scratch.join("reads"), Some(&config), &[]).await?;
        let channels = connect(&server.addr, self.args.connections).await?;
        let mut client = NotificationServiceClient::new(channels[0].clone());
        for n in 0..150 {
            client
                .enqueue(enqueue_request(usize::MAX, n, Sink::Email))
                .await?;
        }
        println!("reads (a server holding 150 undelivered deliveries):");
        print_header();
        measure(
            &channels,
            server.pid,
            &[
                ("health", Rpc::Health),
                ("preview", Rpc::Preview),
                ("list_pending, 100 rows", Rpc::list(100)),
            ],
            &self.args.concurrency,
            self.args.duration,
        )
        .await;
        server.stop().await;
        Ok(())
    }
}

/// Sends `--count` Enqueues to `--target` and prints how long they took.
async fn drive(args: &BenchArgs, target: &str) -> anyhow::Result<()> {
    let channels = connect(target, args.connections).await?;
    let concurrency = args.concurrency.first().copied().unwrap_or(1).max(1);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..concurrency {
        let mut client = NotificationServiceClient::new(channels[caller % channels.len()].clone());
        let (next, count) = (next.clone(), args.count);
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= count {
                    return errors;
                }
                if client
                    .enqueue(enqueue_request(caller, n, Sink::Email))
                    .await
                    .is_err()
                {
                    errors += 1;
                }
            }
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await?;
    }
    println!(
        "{} enqueues in {:.2?} at concurrency {concurrency}, {errors} errors",
        args.count,
        start.elapsed()
    );
    Ok(())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(target) = &args.target {
        return drive(&args, target).await;
    }
    let scratch = std::env::temp_dir().join(format!("flyte-notify-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch)?;
    let exe = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this binary")?,
    };
    let webhook_receipts = Arc::new(sink::Receipts::default());
    let webhook_port = sink::http_sink(webhook_receipts.clone()).await?;
    let webhook_url_file = scratch.join("webhook-url");
    std::fs::write(
        &webhook_url_file,
        format!("http://127.0.0.1:{webhook_port}/hook"),
    )?;
    let bench = Bench {
        args,
        exe,
        scratch: scratch.clone(),
        webhook_receipts,
        webhook_url_file,
        webhook_port,
        targets: Default::default(),
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "flyte-notify bench: {} per cell, {} connections, {cores} cores, load average at start {}",
        humantime::format_duration(bench.args.duration),
        bench.args.connections,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let result = async {
        if bench.wants("throughput") {
            println!("\n== throughput (SQLite ledger) ==");
            bench.throughput("throughput", None).await?;
        }
        if bench.wants("latency") && !bench.args.latency_duration.is_zero() {
            println!("\n== delivery latency ==");
            latency::run(&bench).await?;
        }
        if bench.wants("reads") {
            println!("\n== reads ==");
            bench.reads().await?;
        }
        if bench.wants("scale") && bench.args.pending > 0 {
            println!("\n== scale ==");
            latency::scale(&bench).await?;
        }
        if bench.wants("pace") && !bench.args.pace_duration.is_zero() {
            println!("\n== pace (SQLite ledger) ==");
            replicas::pace(&bench).await?;
        }
        if bench.wants("postgres") && bench.args.postgres != "off" {
            println!("\n== throughput (PostgreSQL ledger) ==");
            peer::postgres(&bench).await?;
        }
        if bench.wants("replicas") && bench.args.postgres != "off" {
            println!("\n== replicas (3 on one PostgreSQL) ==");
            replicas::run(&bench).await?;
        }
        if bench.wants("peer") {
            println!("\n== peer: Alertmanager ==");
            peer::alertmanager(&bench).await?;
        }
        anyhow::Ok(())
    }
    .await;
    let targets = bench.targets.lock().expect("targets lock poisoned");
    if !targets.is_empty() {
        println!("\n== targets ==");
        for line in targets.iter() {
            println!("{line}");
        }
    }
    drop(targets);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average at end {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_configs_parse() {
        let file = Path::new("/tmp/url");
        for yaml in [
            server_config(None, Some(file), false, None, Some(64)),
            server_config(Some(2525), None, true, None, None),
            server_config(None, Some(file), false, Some("postgres://u@h/db"), None),
        ] {
            crate::config::Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        }
    }
}

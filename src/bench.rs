//! `flyte-notify bench`: starts this binary as a server on a fresh data dir and measures durable
//! Enqueue against a no-op RPC (gRPC health Check) on the same server, at several concurrencies.
//! The server runs as a child process so that its RSS is its own.

use std::path::PathBuf;
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
    EnqueueRequest, ExecutionContext, ListPendingRequest, PreviewRequest,
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
    /// Config for the server (e.g. to measure with SMTP instead of the Maildir).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The flyte-notify binary to run as the server; this one by default. Measuring an older
    /// build with the same load generator compares releases on one machine in one sitting.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rpc {
    Health,
    Enqueue,
    /// The built-in email for a failed execution: a response of a few KB.
    Preview,
    /// One page of 100 undelivered deliveries.
    ListPending,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::Health => "health",
            Rpc::Enqueue => "enqueue",
            Rpc::Preview => "preview",
            Rpc::ListPending => "list_pending",
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
    let mut execution = enqueue_request(0, 0).execution.expect("set");
    execution.workflow = Some(id(ResourceType::Workflow, "wf.train"));
    execution.launch_plan = Some(id(ResourceType::LaunchPlan, "lp.daily"));
    execution.error = Some(ExecutionError {
        code: "USER:ValueError".into(),
        message: "learning rate must be positive".into(),
        ..Default::default()
    });
    PreviewRequest {
        execution: Some(execution),
        notifications: enqueue_request(0, 0).notifications,
        webhooks: Vec::new(),
    }
}

struct Cell {
    rpc: Rpc,
    concurrency: usize,
    calls: u64,
    errors: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
}

fn enqueue_request(caller: usize, n: u64) -> EnqueueRequest {
    EnqueueRequest {
        request_id: format!("bench-{caller}-{n}-{}", uuid::Uuid::new_v4()),
        execution: Some(ExecutionContext {
            execution_id: Some(WorkflowExecutionIdentifier {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: format!("bench{caller}x{n}"),
                org: String::new(),
            }),
            phase: Phase::Failed as i32,
            ..Default::default()
        }),
        notifications: vec![Notification {
            phases: vec![Phase::Failed as i32],
            r#type: Some(notification::Type::Email(EmailNotification {
                recipients_email: vec!["oncall@example.com".into()],
                template: String::new(),
            })),
        }],
        webhooks: Vec::new(),
    }
}

async fn run_cell(channels: &[Channel], rpc: Rpc, concurrency: usize, duration: Duration) -> Cell {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for caller in 0..concurrency {
        let channel = channels[caller % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let mut notify = NotificationServiceClient::new(channel);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let (mut calls, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match rpc {
                    Rpc::Health => health
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok(),
                    Rpc::Enqueue => notify.enqueue(enqueue_request(caller, calls)).await.is_ok(),
                    Rpc::Preview => notify.preview(preview_request()).await.is_ok(),
                    Rpc::ListPending => notify
                        .list_pending(ListPendingRequest {
                            limit: 100,
                            ..Default::default()
                        })
                        .await
                        .is_ok_and(|r| r.into_inner().deliveries.len() == 100),
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
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut calls, mut errors) = (0, 0);
    for t in tasks {
        let (c, e, h) = t.await.expect("bench caller panicked");
        calls += c;
        errors += e;
        histogram.add(h).expect("same bounds");
    }
    Cell {
        rpc,
        concurrency,
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

fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A server child process: killed when dropped.
struct ServerChild {
    child: tokio::process::Child,
    pid: u32,
    addr: String,
}

async fn start_server(
    exe: &std::path::Path,
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ServerChild> {
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
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
    let addr = loop {
        let Some(line) = lines.next_line().await? else {
            bail!("the server exited before listening");
        };
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    // Keep draining the server's log so it never blocks on a full pipe.
    let echo = std::env::var_os("FLYTE_NOTIFY_BENCH_LOG").is_some();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("{line}");
            }
        }
    });
    Ok(ServerChild { child, pid, addr })
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
        "{:<12} {:>11} {:>12} {:>9} {:>9} {:>8} {:>10} {:>13}",
        "rpc",
        "concurrency",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs health",
        "server µs/call"
    );
}

/// Runs `rpcs` at each concurrency, health first as the baseline, and prints a row per cell.
async fn measure(
    channels: &[Channel],
    pid: u32,
    rpcs: &[Rpc],
    concurrencies: &[usize],
    duration: Duration,
) {
    for &concurrency in concurrencies {
        let mut baseline = 0.0;
        for &rpc in rpcs {
            let cpu_before = cpu_time(pid);
            let cell = run_cell(channels, rpc, concurrency, duration).await;
            // For Enqueue this includes the worker delivering meanwhile.
            let cpu_per_call = match (cpu_before, cpu_time(pid)) {
                (Some(a), Some(b)) if cell.calls > 0 => {
                    format!("{:.0}", (b - a).as_micros() as f64 / cell.calls as f64)
                }
                _ => "-".into(),
            };
            let rate = cell.calls as f64 / cell.elapsed.as_secs_f64();
            if cell.rpc == Rpc::Health {
                baseline = rate;
            }
            println!(
                "{:<12} {:>11} {:>12.0} {:>9.2} {:>9.2} {:>8} {:>9.0}% {:>13}",
                cell.rpc.name(),
                cell.concurrency,
                rate,
                cell.histogram.value_at_quantile(0.5) as f64 / 1000.0,
                cell.histogram.value_at_quantile(0.99) as f64 / 1000.0,
                cell.errors,
                100.0 * rate / baseline.max(1e-9),
                cpu_per_call,
            );
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("flyte-notify-bench-{}", uuid::Uuid::new_v4()));
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| scratch.join("data"));
    let exe = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this binary")?,
    };
    let mut server = start_server(&exe, &data_dir, args.config.as_deref()).await?;
    let channels = connect(&server.addr, args.connections).await?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "flyte-notify bench: server pid {} on {}, {} per cell, {} connections, {cores} cores",
        server.pid,
        server.addr,
        humantime::format_duration(args.duration),
        channels.len()
    );
    // Warm up both paths (connections, SQLite caches) before measuring.
    run_cell(&channels, Rpc::Health, 4, Duration::from_millis(300)).await;
    run_cell(&channels, Rpc::Enqueue, 4, Duration::from_millis(300)).await;
    print_header();
    measure(
        &channels,
        server.pid,
        &[Rpc::Health, Rpc::Enqueue],
        &args.concurrency,
        args.duration,
    )
    .await;
    if let Some((rss, peak)) = rss_kib(server.pid) {
        println!(
            "server RSS: {:.1} MiB now, {:.1} MiB peak",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    let _ = server.child.start_kill();
    let _ = server.child.wait().await;

    // Reads of a few KB: a second server whose mail server never answers, so that deliveries
    // stay listed for ListPending to page through.
    std::fs::create_dir_all(&scratch)?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let closed_port = closed.local_addr()?.port();
    drop(closed);
    let config = scratch.join("reads.yaml");
    std::fs::write(
        &config,
        format!(
            "notifications:\n  emailer:\n    emailServerConfig: {{ serviceName: smtp, smtpServer: 127.0.0.1, smtpPort: \"{closed_port}\" }}\nflyteNotify:\n  retry: {{ baseDelay: 1h, maxDelay: 2h, maxAttempts: 5 }}\n"
        ),
    )?;
    let mut reads = start_server(&exe, &scratch.join("reads"), Some(&config)).await?;
    let channels = connect(&reads.addr, args.connections).await?;
    let mut client = NotificationServiceClient::new(channels[0].clone());
    for n in 0..150 {
        client.enqueue(enqueue_request(usize::MAX, n)).await?;
    }
    println!(
        "reads ({} on a second server holding 150 undelivered deliveries):",
        humantime::format_duration(args.duration)
    );
    print_header();
    measure(
        &channels,
        reads.pid,
        &[Rpc::Health, Rpc::Preview, Rpc::ListPending],
        &args.concurrency,
        args.duration,
    )
    .await;
    let _ = reads.child.start_kill();
    let _ = reads.child.wait().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

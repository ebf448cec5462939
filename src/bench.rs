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
use crate::proto::flyteidl::core::WorkflowExecutionIdentifier;
use crate::proto::flyteidl::core::workflow_execution::Phase;
use crate::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;
use crate::proto::flytenotify::v1::{EnqueueRequest, ExecutionContext};

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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("flyte-notify-bench-{}", uuid::Uuid::new_v4()))
    });
    let exe = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this binary")?,
    };
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir);
    if let Some(config) = &args.config {
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

    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await
                .with_context(|| format!("cannot connect to {addr}"))?,
        );
    }
    let channels = Arc::new(channels);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "flyte-notify bench: server pid {pid} on {addr}, {} per cell, {} connections, {cores} cores",
        humantime::format_duration(args.duration),
        channels.len()
    );
    // Warm up both paths (connections, SQLite caches) before measuring.
    run_cell(&channels, Rpc::Health, 4, Duration::from_millis(300)).await;
    run_cell(&channels, Rpc::Enqueue, 4, Duration::from_millis(300)).await;

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
    for &concurrency in &args.concurrency {
        let mut baseline = 0.0;
        for rpc in [Rpc::Health, Rpc::Enqueue] {
            let cpu_before = cpu_time(pid);
            let cell = run_cell(&channels, rpc, concurrency, args.duration).await;
            // For Enqueue this includes the worker delivering to the Maildir meanwhile.
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
                match cell.rpc {
                    Rpc::Health => "health",
                    Rpc::Enqueue => "enqueue",
                },
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
    if let Some((rss, peak)) = rss_kib(pid) {
        println!(
            "server RSS: {:.1} MiB now, {:.1} MiB peak",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}

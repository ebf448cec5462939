//! Several replicas on one PostgreSQL, and whether delivery keeps pace with accept.
//!
//! - Enqueue at each concurrency spread over 3 replicas, beside the bare group-commit insert into
//!   the same database;
//! - enqueue-to-delivered at `--latency-rate`, spread over the 3;
//! - a destination limited to 10/s, fed by all 3 at once: what the sink receives per second;
//! - pace: Enqueue as fast as the 3 accept for `--pace-duration`, and how the backlog (accepted,
//!   not yet received by the sink) moves meanwhile. The same runs for one SQLite server in
//!   `pace()`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::latency::{paced, report};
use super::peer::with_database;
use super::{
    Bench, Rpc, ServerChild, Sink, connect, enqueue_request, measure, print_header, run_cell,
    server_config, start_server,
};
use crate::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;

const REPLICAS: usize = 3;

/// The limit of the rate-limited run, and how many deliveries it sends through it.
const LIMIT_PER_SECOND: u32 = 10;
const LIMITED_DELIVERIES: u64 = 200;

pub(crate) async fn run(bench: &Bench) -> anyhow::Result<()> {
    // The rate-limited run gets a database of its own: the backlog the runs before it may leave
    // would otherwise go out first, at the limit.
    let Some(result) = with_database(bench, "replicas", |dsn| async move {
        measure_replicas(bench, &dsn).await
    })
    .await?
    else {
        return Ok(());
    };
    result?;
    with_database(bench, "limited", |dsn| async move {
        rate_limited(bench, &dsn).await
    })
    .await?
    .unwrap_or(Ok(()))
}

/// Starts `REPLICAS` servers on one database with `yaml` as config; the first one alone first,
/// so that the migrations run once.
async fn start_replicas(
    bench: &Bench,
    name: &str,
    yaml: &str,
) -> anyhow::Result<(Vec<ServerChild>, Vec<Channel>)> {
    let config = bench.write_config(name, yaml)?;
    let mut servers = Vec::new();
    let mut channels = Vec::new();
    for i in 0..REPLICAS {
        let server = start_server(
            &bench.exe,
            &bench.scratch.join(format!("{name}-{i}")),
            Some(&config),
            &[],
        )
        .await?;
        channels.extend(
            connect(&server.addr, bench.args.connections.div_ceil(REPLICAS))
                .await?
                .iter()
                .cloned(),
        );
        servers.push(server);
    }
    Ok((servers, channels))
}

/// A replica's config: the ledger on `dsn`, webhooks to the bench's sink.
fn replica_config(bench: &Bench, dsn: &str) -> String {
    server_config(
        None,
        Some(&bench.webhook_url_file),
        false,
        Some(dsn),
        bench.args.worker_concurrency,
    )
}

async fn stop_all(servers: Vec<ServerChild>) {
    for server in servers {
        server.stop().await;
    }
}

async fn measure_replicas(bench: &Bench, dsn: &str) -> anyhow::Result<()> {
    let yaml = replica_config(bench, dsn);
    let (servers, channels) = start_replicas(bench, "replicas", &yaml).await?;
    run_cell(
        &channels,
        &Rpc::Enqueue(Sink::Webhook),
        4,
        Duration::from_millis(300),
    )
    .await;
    if !bench.args.latency_duration.is_zero() {
        let rate = bench.args.latency_rate;
        let paced = paced(rate, bench.args.latency_duration, |n| {
            let mut client =
                NotificationServiceClient::new(channels[n as usize % channels.len()].clone());
            async move {
                let response = client
                    .enqueue(enqueue_request(usize::MAX - 2, n, Sink::Webhook))
                    .await
                    .ok()?;
                response.into_inner().delivery_ids.into_iter().next()
            }
        })
        .await;
        let delivered = report(
            &format!("{REPLICAS} replicas → webhook sink"),
            paced,
            &bench.webhook_receipts,
            rate,
        )
        .await;
        bench.target(
            &format!("{REPLICAS} replicas: enqueue-to-delivered p99 <= 50 ms at {rate}/s"),
            &format!(
                "p99 {:.1} ms, {} not delivered",
                delivered.p99_ms, delivered.missing
            ),
            delivered.p99_ms <= 50.0 && delivered.missing == 0,
        );
    }

    if !bench.args.pace_duration.is_zero() {
        pace_over(
            bench,
            &format!("{REPLICAS} replicas on PostgreSQL"),
            &channels,
        )
        .await;
    }
    // Last: Enqueue as fast as it goes leaves a backlog that would delay what follows it.
    println!("Enqueue spread over {REPLICAS} replicas (callers take the replicas in turn):");
    print_header();
    // No health row: there are three servers, and the bare insert is the baseline here.
    let rates = measure(
        &channels,
        servers[0].pid,
        &[("enqueue → webhook sink", Rpc::Enqueue(Sink::Webhook))],
        &bench.args.concurrency,
        bench.args.duration,
    )
    .await;

    stop_all(servers).await;

    // The ceiling: the bare insert into the same database.
    let bare_rates = bench.bare_rates("postgres", "bare", dsn).await?;
    for (i, concurrency) in bench.args.concurrency.iter().enumerate() {
        println!(
            "{REPLICAS} replicas' Enqueue / bare insert, concurrency {concurrency}: {:.0}/s against {:.0}/s = {:.0}%",
            rates[i],
            bare_rates[i],
            100.0 * rates[i] / bare_rates[i]
        );
    }

    Ok(())
}

/// 3 replicas, one destination limited to `LIMIT_PER_SECOND`: `LIMITED_DELIVERIES` enqueued at
/// once, spread over the replicas; how many the sink receives in any one second and overall.
async fn rate_limited(bench: &Bench, dsn: &str) -> anyhow::Result<()> {
    let yaml = replica_config(bench, dsn).replace(
        "rateLimit: 1000000/s",
        &format!("rateLimit: {LIMIT_PER_SECOND}/s"),
    );
    anyhow::ensure!(yaml.contains(&format!("rateLimit: {LIMIT_PER_SECOND}/s")));
    let (servers, channels) = start_replicas(bench, "replicas-limited", &yaml).await?;
    let mut ids = Vec::new();
    let mut calls = Vec::new();
    for n in 0..LIMITED_DELIVERIES {
        let mut client =
            NotificationServiceClient::new(channels[n as usize % channels.len()].clone());
        calls.push(tokio::spawn(async move {
            client
                .enqueue(enqueue_request(usize::MAX - 3, n, Sink::Webhook))
                .await
        }));
    }
    for call in calls {
        ids.extend(call.await??.into_inner().delivery_ids);
    }
    let expected = Duration::from_secs(LIMITED_DELIVERIES / u64::from(LIMIT_PER_SECOND));
    let deadline = Instant::now() + expected * 2 + Duration::from_secs(30);
    while Instant::now() < deadline
        && ids
            .iter()
            .any(|id| bench.webhook_receipts.get(id).is_none())
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_all(servers).await;
    let mut times: Vec<Instant> = ids
        .iter()
        .filter_map(|id| bench.webhook_receipts.get(id))
        .collect();
    times.sort();
    let received = times.len();
    let most_in = |window: Duration| {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    let (in_1s, in_10s) = (
        most_in(Duration::from_secs(1)),
        most_in(Duration::from_secs(10)),
    );
    let overall = match (times.first(), times.last()) {
        (Some(first), Some(last)) if received > 1 => {
            (received - 1) as f64 / (*last - *first).as_secs_f64()
        }
        _ => 0.0,
    };
    println!(
        "{REPLICAS} replicas, one destination at rateLimit {LIMIT_PER_SECOND}/s, {LIMITED_DELIVERIES} enqueued at once: {received} received; at most {in_1s} in any 1 s, {in_10s} in any 10 s; {overall:.2}/s from first to last"
    );
    bench.target(
        &format!(
            "{REPLICAS} replicas: a destination limited to {LIMIT_PER_SECOND}/s receives at most {LIMIT_PER_SECOND}/s in total"
        ),
        &format!(
            "{overall:.2}/s overall, at most {in_10s} in any 10 s and {in_1s} in any 1 s (the limit's burst), {received} of {LIMITED_DELIVERIES} received"
        ),
        overall <= f64::from(LIMIT_PER_SECOND) * 1.05
            && in_10s as u32 <= LIMIT_PER_SECOND * 10 + LIMIT_PER_SECOND
            && received as u64 == LIMITED_DELIVERIES,
    );
    Ok(())
}

/// Pace on one SQLite server delivering to the webhook sink.
pub(crate) async fn pace(bench: &Bench) -> anyhow::Result<()> {
    let yaml = server_config(
        None,
        Some(&bench.webhook_url_file),
        false,
        None,
        bench.args.worker_concurrency,
    );
    let config = bench.write_config("pace", &yaml)?;
    let server = start_server(&bench.exe, &bench.scratch.join("pace"), Some(&config), &[]).await?;
    let channels = connect(&server.addr, bench.args.connections).await?;
    pace_over(bench, "one server on SQLite", &channels).await;
    server.stop().await;
    Ok(())
}

/// Enqueue at concurrency 64, closed loop (as fast as accept goes), for `--pace-duration`; every
/// 5 s the backlog (accepted and not yet received by the sink); then how long the rest takes.
async fn pace_over(bench: &Bench, label: &str, channels: &[Channel]) {
    const CALLERS: usize = 64;
    let duration = bench.args.pace_duration;
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let mut client = NotificationServiceClient::new(channels[caller % channels.len()].clone());
        let accepted = accepted.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                if let Ok(r) = client
                    .enqueue(enqueue_request(usize::MAX - 4 - caller, n, Sink::Webhook))
                    .await
                {
                    let ids = r.into_inner().delivery_ids;
                    accepted.lock().expect("accepted lock poisoned").extend(ids);
                }
            }
        }));
    }
    let receipts = &bench.webhook_receipts;
    let mut samples = Vec::new();
    let mut checked = 0usize;
    let mut waiting: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(5).min(deadline - Instant::now())).await;
        // Only the ids not yet seen delivered need looking at again.
        let fresh: Vec<String> = {
            let all = accepted.lock().expect("accepted lock poisoned");
            let fresh = all[checked..].to_vec();
            checked = all.len();
            fresh
        };
        waiting.extend(fresh);
        waiting.retain(|id| receipts.get(id).is_none());
        samples.push((start.elapsed(), checked, waiting.len()));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let all = accepted.lock().expect("accepted lock poisoned").len();
    let accept_rate = all as f64 / elapsed.as_secs_f64();
    waiting.extend(
        accepted.lock().expect("accepted lock poisoned")[checked..]
            .iter()
            .cloned(),
    );
    waiting.retain(|id| receipts.get(id).is_none());
    let end_backlog = waiting.len();
    let drain_started = Instant::now();
    while !waiting.is_empty() && drain_started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting.retain(|id| receipts.get(id).is_none());
    }
    let drained_in = drain_started.elapsed();
    let left = waiting.len();
    println!(
        "pace, {label}: {all} accepted in {} ({accept_rate:.0}/s, {CALLERS} callers); backlog (accepted, not yet received) every 5 s: {}",
        humantime::format_duration(duration),
        samples
            .iter()
            .map(|(at, _, waiting)| format!("{:.0}s {waiting}", at.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "pace, {label}: {end_backlog} left at the end of the load, drained in {:.2} s ({left} still missing after that)",
        drained_in.as_secs_f64()
    );
    // Keeping pace: the backlog at the end is no bigger than what the first sample held, give or
    // take a second's accepts, so it did not grow over the run.
    let first = samples.first().map_or(0, |s| s.2);
    let grew = end_backlog.saturating_sub(first) as f64;
    // Whether delivery keeps up depends first of all on how many sends may be in flight, so the
    // figure names it.
    let sends = match bench.args.worker_concurrency {
        Some(n) => format!("worker.concurrency {n}"),
        None => format!(
            "worker.concurrency {} (the default)",
            crate::config::WorkerConfig::default().concurrency
        ),
    };
    bench.target(
        &format!(
            "{label}: delivery keeps pace with accept for {}, {sends}",
            humantime::format_duration(duration)
        ),
        &if samples.len() < 2 {
            format!("a run of 5 s or less has one backlog sample, nothing to compare it with ({end_backlog} at the end)")
        } else {
            format!(
                "at {accept_rate:.0}/s the backlog went from {first} (first 5 s) to {end_backlog} (end)"
            )
        },
        // One sample is the end itself: it cannot show growth, so it shows nothing.
        samples.len() >= 2 && left == 0 && grew <= accept_rate,
    );
}

//! Delivery latency at a fixed offered load, and the scale section (a ledger holding many pending
//! deliveries).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::Semaphore;

use super::sink::{self, Receipts};
use super::{
    Bench, Rpc, Sink, connect, enqueue_request, execution, measure, new_histogram, print_header,
    print_rss, server_config, start_server,
};
use crate::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;

/// Calls in flight at most while offering a fixed load; a call past it is counted as skipped
/// rather than queued, so that a slow server cannot hide behind the generator.
const MAX_IN_FLIGHT: usize = 4096;

/// How long to wait after the load for the last deliveries to arrive.
const DRAIN: Duration = Duration::from_secs(60);

pub(crate) struct Paced {
    /// The key each successful call returned, when the call was issued, and how long its answer
    /// took.
    sent: Vec<(String, Instant, Duration)>,
    offered: u64,
    errors: u64,
    skipped: u64,
}

/// Issues `send(n)` at `rate` per second for `duration`, open loop.
pub(crate) async fn paced<F, Fut>(rate: u32, duration: Duration, send: F) -> Paced
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    let sent = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (mut issued, mut skipped) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = due_by(rate, elapsed);
        while issued < due {
            issued += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                skipped += 1;
                continue;
            };
            let call = send(issued);
            let (sent, errors) = (sent.clone(), errors.clone());
            let at = Instant::now();
            tokio::spawn(async move {
                match call.await {
                    Some(key) => {
                        let answered = at.elapsed();
                        sent.lock()
                            .expect("sent lock poisoned")
                            .push((key, at, answered));
                    }
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(permit);
            });
        }
    }
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    let sent = std::mem::take(&mut *sent.lock().expect("sent lock poisoned"));
    Paced {
        sent,
        offered: issued,
        errors: errors.load(Ordering::Relaxed),
        skipped,
    }
}

/// How many calls an open-loop generator at `rate` per second has issued after `elapsed`.
fn due_by(rate: u32, elapsed: Duration) -> u64 {
    (u128::from(rate) * elapsed.as_micros() / 1_000_000) as u64
}

/// What `report` found.
pub(crate) struct Delivered {
    pub p99_ms: f64,
    /// Calls answered whose delivery did not arrive within DRAIN.
    pub missing: usize,
}

/// Waits for every key to arrive, then prints issue-to-receipt percentiles.
pub(crate) async fn report(label: &str, paced: Paced, receipts: &Receipts, rate: u32) -> Delivered {
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline
        && paced
            .sent
            .iter()
            .any(|(key, _, _)| receipts.get(key).is_none())
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut histogram = new_histogram();
    let mut answers = new_histogram();
    let mut missing = 0;
    for (key, at, answered) in &paced.sent {
        let _ = answers.record(answered.as_micros().max(1) as u64);
        match receipts.get(key) {
            Some(got) => {
                let _ =
                    histogram.record(got.saturating_duration_since(*at).as_micros().max(1) as u64);
            }
            None => missing += 1,
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let answer_ms = |q: f64| answers.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{label:<28} offered {rate}/s: {} issued, {} skipped (over {MAX_IN_FLIGHT} in flight), {} errors, {} delivered, {missing} not within {}; answered p50 {:.2} ms, p99 {:.2} ms; to delivered p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        paced.offered,
        paced.skipped,
        paced.errors,
        histogram.len(),
        humantime::format_duration(DRAIN),
        answer_ms(0.5),
        answer_ms(0.99),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0,
    );
    Delivered {
        p99_ms: ms(0.99),
        missing,
    }
}

/// Enqueue-to-delivered at `--latency-rate` for `--latency-duration`, to the webhook sink and to
/// the SMTP sink, each on a fresh server.
pub(crate) async fn run(bench: &Bench) -> anyhow::Result<()> {
    let rate = bench.args.latency_rate;
    let duration = bench.args.latency_duration;
    let smtp_receipts = Arc::new(Receipts::default());
    let smtp_port = sink::smtp_sink(smtp_receipts.clone()).await?;
    for (name, sink, receipts, config) in [
        (
            "webhook sink",
            Sink::Webhook,
            bench.webhook_receipts.clone(),
            server_config(
                None,
                Some(&bench.webhook_url_file),
                false,
                None,
                bench.args.worker_concurrency,
            ),
        ),
        (
            "SMTP sink",
            Sink::Email,
            smtp_receipts.clone(),
            server_config(
                Some(smtp_port),
                None,
                false,
                None,
                bench.args.worker_concurrency,
            ),
        ),
    ] {
        let key = name.replace(' ', "-");
        let config = bench.write_config(&key, &config)?;
        let server =
            start_server(&bench.exe, &bench.scratch.join(&key), Some(&config), &[]).await?;
        let channels = connect(&server.addr, bench.args.connections).await?;
        let paced = paced(rate, duration, |n| {
            let mut client =
                NotificationServiceClient::new(channels[n as usize % channels.len()].clone());
            async move {
                let response = client
                    .enqueue(enqueue_request(usize::MAX - 1, n, sink))
                    .await
                    .ok()?;
                response.into_inner().delivery_ids.into_iter().next()
            }
        })
        .await;
        report(&format!("flyte-notify → {name}"), paced, &receipts, rate).await;
        print_rss("after the latency run", server.pid);
        server.stop().await;
    }
    Ok(())
}

/// Records `n` deliveries through the ledger API (SqliteLedger::accept, many calls in flight so
/// that the writer commits them in large batches), as Enqueue would: one email delivery per
/// request; one in a thousand in domain "production".
async fn fill(path: &std::path::Path, n: u64) -> anyhow::Result<()> {
    use crate::delivery::{Channel, Content, Payload};
    use crate::ledger::sqlite::SqliteLedger;
    use crate::ledger::{ExecutionKey, Ledger, NewDelivery, NewRequest};
    let ledger = Arc::new(SqliteLedger::open(path).await?);
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let ledger = ledger.clone();
            async move {
                let mut context = execution(0, i);
                let domain = if i % 1000 == 0 {
                    "production"
                } else {
                    "development"
                };
                let id = context.execution_id.as_mut().expect("set");
                id.domain = domain.into();
                let key = ExecutionKey {
                    project: id.project.clone(),
                    domain: id.domain.clone(),
                    name: id.name.clone(),
                    org: String::new(),
                };
                ledger
                    .accept(NewRequest {
                        request_id: format!("fill-{i}"),
                        fingerprint: "bench-fill".into(),
                        unmatched: 0,
                        execution_key: key,
                        execution: context.encode_to_vec(),
                        deliveries: vec![NewDelivery {
                            group: None,
                            id: uuid::Uuid::now_v7().to_string(),
                            notification_index: 0,
                            phase: context.phase,
                            payload: Payload {
                                channel: Channel::Email,
                                recipients: vec!["oncall@example.com".into()],
                                content: Content::Template(String::new()),
                            },
                        }],
                        due_in: std::time::Duration::ZERO,
                        disarms_deadlines: false,
                    })
                    .await
            }
        })
        .buffer_unordered(4096)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await?;
    ledger.close().await;
    let elapsed = start.elapsed();
    println!(
        "filled {n} pending deliveries through the ledger API (SqliteLedger::accept, 4096 in flight) in {:.1} s: {:.0}/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Waits for health Check to answer SERVING.
async fn serving(addr: &str) -> anyhow::Result<()> {
    let channel = connect(addr, 1).await?[0].clone();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.ok()
            == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Enqueue and ListPending pages with 0 and with `--pending` deliveries pending; time to
/// SERVING; RSS. The server's mail server accepts connections and never answers, so at most
/// `worker.concurrency` deliveries are in a send at a time and the rest stay pending.
pub(crate) async fn scale(bench: &Bench) -> anyhow::Result<()> {
    let pending = bench.args.pending;
    let hole = sink::blackhole().await?;
    // With /metrics on, to time a scrape: it counts the open deliveries in the ledger.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = bench.write_config(
        "scale",
        &(server_config(Some(hole), None, true, None, None)
            + &format!("  metricsListen: 127.0.0.1:{metrics_port}\n")),
    )?;
    for (label, with) in [("0 pending", 0), (&*format!("{pending} pending"), pending)] {
        let data_dir = bench.scratch.join(format!("scale-{with}"));
        if with > 0 {
            fill(&data_dir.join("ledger.sqlite"), with).await?;
        }
        let started = Instant::now();
        let server = start_server(&bench.exe, &data_dir, Some(&config), &[]).await?;
        serving(&server.addr).await?;
        println!(
            "{label}: start to listening {:.0} ms, to SERVING {:.0} ms",
            server.started_in.as_secs_f64() * 1000.0,
            started.elapsed().as_secs_f64() * 1000.0
        );
        print_rss(&format!("with {label}, at start"), server.pid);
        // Scrapes within a second share one reading of the ledger: space them out.
        let mut scrapes = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let body = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
                .await?
                .error_for_status()?
                .text()
                .await?;
            scrapes.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                body.contains("flyte_notify_pending_deliveries"),
                "/metrics lacks the pending gauge"
            );
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        println!(
            "{label}: a /metrics scrape (counting the ledger's open deliveries) {}",
            scrapes
                .iter()
                .map(|ms| format!("{ms:.1} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let channels = connect(&server.addr, bench.args.connections).await?;
        let deep = crate::ledger::PageToken::After {
            seq: (with / 2) as i64,
        }
        .encode();
        print_header();
        let page = |token: &str, filters: &str| Rpc::ListPending {
            token: token.into(),
            filters: filters.into(),
            min_rows: 0,
        };
        measure(
            &channels,
            server.pid,
            &[
                ("health", Rpc::Health),
                ("list_pending first page", page("", "")),
                ("list_pending deep page", page(&deep, "")),
                ("list_pending eq(domain)", page("", "eq(domain,production)")),
            ],
            &[1],
            bench.args.duration,
        )
        .await;
        measure(
            &channels,
            server.pid,
            &[
                ("health", Rpc::Health),
                ("enqueue (SMTP, held)", Rpc::Enqueue(Sink::Email)),
            ],
            &[64],
            bench.args.duration,
        )
        .await;
        print_rss(&format!("with {label}, after"), server.pid);
        server.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_loop_generator_is_due_rate_times_elapsed() {
        assert_eq!(due_by(1000, Duration::ZERO), 0);
        assert_eq!(due_by(1000, Duration::from_micros(999)), 0);
        assert_eq!(due_by(1000, Duration::from_millis(1)), 1);
        assert_eq!(due_by(1000, Duration::from_secs(60)), 60_000);
        assert_eq!(due_by(3, Duration::from_millis(500)), 1);
    }
}

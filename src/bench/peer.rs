//! The PostgreSQL ledger's figures, and Alertmanager beside ours on the same webhook sink.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection};

use super::latency::{paced, report};
use super::{Bench, new_histogram};

/// The Enqueue figures with `store: postgres`, on a database created for the run and dropped
/// after.
pub(crate) async fn postgres(bench: &Bench) -> anyhow::Result<()> {
    with_database(bench, "postgres", |dsn| async move {
        bench.throughput("postgres", Some(&dsn)).await
    })
    .await?
    .unwrap_or(Ok(()))
}

/// Runs `work` with the DSN of a database `flyte_notify_bench_<part>_<pid>` created on
/// `--postgres` for it and dropped after (also when `work` failed). None, after saying so, when
/// that server cannot be reached.
pub(crate) async fn with_database<F, Fut, T>(
    bench: &Bench,
    part: &str,
    work: F,
) -> anyhow::Result<Option<anyhow::Result<T>>>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut admin = match sqlx::PgConnection::connect(&bench.args.postgres).await {
        Ok(conn) => conn,
        Err(e) => {
            println!("skipped: cannot connect to {} ({e})", bench.args.postgres);
            return Ok(None);
        }
    };
    let db = format!("flyte_notify_bench_{part}_{}", std::process::id());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await?;
    let mut dsn = url::Url::parse(&bench.args.postgres)?;
    dsn.set_path(&db);
    let result = work(dsn.to_string()).await;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(Some(result))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn alert(id: &str) -> String {
    format!(
        r#"[{{"labels":{{"alertname":"FlyteBench","bench_id":"{id}"}},"annotations":{{"summary":"workflow failed"}}}}]"#
    )
}

/// Alertmanager on the same machine, one group per alert (`group_by: ['...']`), `group_wait: 0s`,
/// its webhook receiver on our sink: `POST /api/v2/alerts` throughput beside its own no-op
/// (`GET /-/healthy`), and ingest-to-webhook latency at the same offered load as ours.
pub(crate) async fn alertmanager(bench: &Bench) -> anyhow::Result<()> {
    let version = std::process::Command::new(&bench.args.alertmanager)
        .arg("--version")
        .output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .next()
            .unwrap_or_default()
            .to_string(),
        _ => {
            println!(
                "skipped: {} not found (apt-get install prometheus-alertmanager)",
                bench.args.alertmanager
            );
            return Ok(());
        }
    };
    println!("{version}");
    let dir = bench.scratch.join("alertmanager");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sink\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 24h\nreceivers:\n  - name: sink\n    webhook_configs:\n      - url: http://127.0.0.1:{}/alertmanager\n        send_resolved: false\n",
            bench.webhook_port
        ),
    )?;
    let port = free_port()?;
    let mut child = tokio::process::Command::new(&bench.args.alertmanager)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = Instant::now();
    while client
        .get(format!("{base}/-/ready"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        if ready.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("alertmanager did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    super::print_rss("(alertmanager) at idle", pid);
    println!(
        "{:<24} {:>11} {:>10} {:>9} {:>9} {:>7} {:>9}",
        "http", "concurrency", "calls/s", "p50 ms", "p99 ms", "errors", "vs healthy"
    );
    for &concurrency in &bench.args.concurrency {
        let mut baseline = 1.0;
        for post in [false, true] {
            let deadline = Instant::now() + bench.args.duration;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for caller in 0..concurrency {
                let (client, base) = (client.clone(), base.clone());
                tasks.push(tokio::spawn(async move {
                    let mut hist = new_histogram();
                    let (mut calls, mut errors) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let sent = if post {
                            client
                                .post(format!("{base}/api/v2/alerts"))
                                .header("content-type", "application/json")
                                .body(alert(&format!(
                                    "tp-{caller}-{calls}-{}",
                                    uuid::Uuid::new_v4()
                                )))
                                .send()
                                .await
                        } else {
                            client.get(format!("{base}/-/healthy")).send().await
                        };
                        let ok = sent.is_ok_and(|r| r.status().is_success());
                        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                        calls += 1;
                        errors += u64::from(!ok);
                    }
                    (calls, errors, hist)
                }));
            }
            let mut histogram = new_histogram();
            let (mut calls, mut errors) = (0, 0);
            for t in tasks {
                let (c, e, h) = t.await?;
                calls += c;
                errors += e;
                histogram.add(h)?;
            }
            let rate = calls as f64 / start.elapsed().as_secs_f64();
            if !post {
                baseline = rate;
            }
            println!(
                "{:<24} {:>11} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>8.0}%",
                if post {
                    "POST /api/v2/alerts"
                } else {
                    "GET /-/healthy"
                },
                concurrency,
                rate,
                histogram.value_at_quantile(0.5) as f64 / 1000.0,
                histogram.value_at_quantile(0.99) as f64 / 1000.0,
                errors,
                100.0 * rate / baseline
            );
        }
    }
    super::print_rss("(alertmanager) after peak load", pid);
    if !bench.args.latency_duration.is_zero() {
        let rate = bench.args.latency_rate;
        let run = uuid::Uuid::new_v4();
        let paced = paced(rate, bench.args.latency_duration, |n| {
            let (client, url) = (client.clone(), format!("{base}/api/v2/alerts"));
            let id = format!("lat-{run}-{n}");
            async move {
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(alert(&id))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(id)
            }
        })
        .await;
        report(
            "alertmanager → webhook sink",
            paced,
            &Arc::clone(&bench.webhook_receipts),
            rate,
        )
        .await;
        super::print_rss("(alertmanager) after the latency run", pid);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(())
}

//! flyte-notify: delivers Flyte workflow notifications reliably. See README.md.

pub mod api;
pub mod authz;
pub mod bench;
pub mod channels;
pub mod config;
pub mod console;
pub mod delivery;
pub mod error;
pub mod ledger;
mod native_channels;
pub mod notify;
pub mod operator_cli;
pub mod proto;
pub mod queue;
pub mod telemetry;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::channels::email::maildir::MaildirSender;
use crate::channels::email::sendgrid::{SendgridSender, read_api_key};
use crate::channels::email::ses::SesSender;
use crate::channels::email::smtp::{SmtpSender, SmtpTls, smtp_password};
use crate::channels::{Router, Sender};
use crate::config::{Config, EmailService, QueueType, SmtpTlsMode, Store};
use crate::ledger::Ledger;
use crate::ledger::postgres::{PostgresLedger, PostgresOptions};
use crate::ledger::sqlite::SqliteLedger;
use crate::notify::Notifier;
use crate::notify::render::Renderer;
use crate::queue::Queue;
use crate::queue::broker::Broker;
use crate::queue::cloud::CloudQueue;
use crate::queue::embedded::EmbeddedQueue;
use crate::queue::processor::Processor;
use crate::queue::pubsub::{PubSubBroker, PubSubSettings};
use crate::queue::sqs::{SqsBroker, SqsSettings};

/// The email sender the config selects, ready to use. Secrets are read here, once.
pub async fn email_sender(config: &Config) -> anyhow::Result<Arc<dyn Sender>> {
    let svc = &config.flyte_notify;
    let server = &config.notifications.emailer.email_server_config;
    Ok(match config.email_service() {
        EmailService::Maildir => {
            let root = svc.data_dir.join("maildir");
            let sender = MaildirSender::open(&root)
                .with_context(|| format!("cannot create the Maildir at {}", root.display()))?;
            tracing::info!(maildir = %root.display(), "email goes to the local Maildir");
            Arc::new(sender)
        }
        EmailService::Smtp => {
            let credentials = if server.smtp_username.is_empty() {
                None
            } else {
                let password = smtp_password(
                    &server.smtp_password_secret_name,
                    svc.smtp.password_file.as_deref(),
                    &svc.secrets_dir,
                )
                .map_err(anyhow::Error::msg)?;
                Some((server.smtp_username.clone(), password))
            };
            let port = config.smtp_port()?;
            let tls = match svc.smtp.tls {
                SmtpTlsMode::Auto => SmtpTls::Auto,
                SmtpTlsMode::Implicit => SmtpTls::Implicit,
                SmtpTlsMode::StartTls => SmtpTls::StartTls,
                SmtpTlsMode::None => SmtpTls::None,
            };
            tracing::info!(server = %server.smtp_server, port, %tls, "email goes out over SMTP");
            Arc::new(
                SmtpSender::new(
                    server.smtp_server.clone(),
                    port,
                    server.smtp_skip_tls_verify,
                    credentials,
                    svc.worker.send_timeout,
                )
                .with_tls(tls),
            )
        }
        EmailService::Sendgrid => {
            let key = read_api_key(&server.api_key_env_var, &server.api_key_file_path)
                .map_err(anyhow::Error::msg)?;
            let sender = SendgridSender::new(&svc.sendgrid.base_url, key, svc.worker.send_timeout)
                .map_err(anyhow::Error::msg)?;
            tracing::info!(url = %sender.url(), "email goes out through SendGrid");
            Arc::new(sender)
        }
        EmailService::Ses => {
            let (sender, region) = SesSender::from_environment(
                config.aws_region(),
                svc.aws.endpoint_url.as_deref(),
                svc.worker.send_timeout,
            )
            .await
            .map_err(anyhow::Error::msg)?;
            tracing::info!(%region, "email goes out through Amazon SES (v2 API)");
            Arc::new(sender)
        }
    })
}

/// Fails when a secret the config names cannot be read; check-config calls this so that a
/// missing secret shows before deployment rather than at the first send.
pub fn check_secrets(config: &Config) -> anyhow::Result<()> {
    let server = &config.notifications.emailer.email_server_config;
    match config.email_service() {
        EmailService::Smtp => {
            smtp_password(
                &server.smtp_password_secret_name,
                config.flyte_notify.smtp.password_file.as_deref(),
                &config.flyte_notify.secrets_dir,
            )
            .map_err(anyhow::Error::msg)?;
        }
        EmailService::Sendgrid => {
            read_api_key(&server.api_key_env_var, &server.api_key_file_path)
                .map_err(anyhow::Error::msg)?;
        }
        _ => {}
    }
    // Slack, PagerDuty and webhook secrets, and the webhook allow-list.
    let native = native_channels::build(config)?;
    let expectations = notify::expectations::Expectations::new(&config.flyte_notify.expectations);
    expectations_ok(
        &expectations,
        &config.flyte_notify.limits,
        &native.routes,
        &native.webhook_targets,
    )
}

/// The expectations' recipients, checked as a notification's are: a start, or check-config,
/// stops on the first that Enqueue would refuse, naming its key.
fn expectations_ok(
    expectations: &notify::expectations::Expectations,
    limits: &config::Limits,
    routes: &notify::routes::Routes,
    targets: &notify::webhooks::WebhookTargets,
) -> anyhow::Result<()> {
    match expectations.check(limits, routes, targets).first() {
        Some(v) => Err(anyhow::anyhow!("{}: {}", v.field, v.description)),
        None => Ok(()),
    }
}

/// The ledger the config selects, open and migrated.
pub async fn open_ledger(config: &Config) -> anyhow::Result<Arc<dyn Ledger>> {
    let svc = &config.flyte_notify;
    Ok(match svc.store {
        Store::Sqlite => {
            let path = svc.data_dir.join("ledger.sqlite");
            Arc::new(
                SqliteLedger::open(&path)
                    .await
                    .with_context(|| format!("cannot open the ledger {}", path.display()))?,
            )
        }
        Store::Postgres => {
            let options = PostgresOptions {
                max_connections: svc.postgres.max_connections,
                ..PostgresOptions::default()
            };
            let ledger = PostgresLedger::connect(&config.postgres_dsn()?, options)
                .await
                .context("cannot open the ledger on PostgreSQL")?;
            tracing::info!("the ledger is on PostgreSQL; replicas on the same database share it");
            Arc::new(ledger)
        }
    })
}

/// Where the worker keeps its per-destination rate limits: in the process with the embedded store
/// (one process sends everything), in the database on PostgreSQL, so that the replicas together
/// keep to each destination's limit.
fn rate_limiter(config: &Config) -> anyhow::Result<Arc<dyn channels::rate_limit::RateLimiter>> {
    Ok(match config.flyte_notify.store {
        Store::Sqlite => Arc::new(channels::rate_limit::LocalRateLimiter::default()),
        Store::Postgres => Arc::new(
            channels::rate_limit::PostgresRateLimiter::new(&config.postgres_dsn()?)
                .map_err(anyhow::Error::msg)?,
        ),
    })
}

/// The queue the config selects; for a cloud queue, the processor that records what arrives on it
/// in the ledger; and what wakes the worker to look at the ledger now.
pub async fn queue(
    config: &Config,
    ledger: Arc<dyn Ledger>,
) -> anyhow::Result<(Arc<dyn Queue>, Option<Processor>, ledger::wakeups::Wake)> {
    // Longer than any send may take, so that a live lease never runs out.
    // A webhook may ask for up to a minute per attempt, over sendTimeout.
    let longest_send = config
        .flyte_notify
        .worker
        .send_timeout
        .max(notify::webhook_body::MAX_TIMEOUT);
    let lease_for = longest_send + Duration::from_secs(30);
    let ledger_queue = Arc::new(EmbeddedQueue::new(ledger.clone(), lease_for));
    let wake: ledger::wakeups::Wake = {
        let queue = ledger_queue.clone();
        Arc::new(move || queue.wake())
    };
    let broker: Arc<dyn Broker> = match config.notifications.queue_type {
        QueueType::Embedded => return Ok((ledger_queue, None, wake)),
        QueueType::Aws => {
            let n = &config.notifications;
            let settings = || SqsSettings {
                region: config.aws_region().map(str::to_string),
                endpoint_url: config.flyte_notify.aws.endpoint_url.clone(),
                topic_arn: n.publisher.topic_name.clone(),
                queue_name: n.processor.queue_name.clone(),
                account_id: n.processor.account_id.clone(),
            };
            let broker = connect(config, "SQS", || SqsBroker::connect(settings())).await?;
            tracing::info!(
                topic = %n.publisher.topic_name,
                queue = %n.processor.queue_name,
                "publishing to SNS; processing the SQS queue"
            );
            Arc::new(broker)
        }
        QueueType::Gcp => {
            let n = &config.notifications;
            let settings = || PubSubSettings {
                project_id: n.gcp.project_id.clone(),
                topic: n.publisher.topic_name.clone(),
                subscription: n.processor.queue_name.clone(),
                endpoint: None,
            };
            let broker = connect(config, "Pub/Sub", || PubSubBroker::connect(settings())).await?;
            tracing::info!(
                project = %n.gcp.project_id,
                topic = %n.publisher.topic_name,
                subscription = %n.processor.queue_name,
                "publishing to Pub/Sub; processing the subscription"
            );
            Arc::new(broker)
        }
    };
    let processor = Processor {
        broker: broker.clone(),
        ledger,
        wake: wake.clone(),
        trouble: Arc::new(watch::channel(None).0),
    };
    let queue = Arc::new(CloudQueue {
        ledger_queue,
        broker,
    });
    Ok((queue, Some(processor), wake))
}

/// Why the processing side cannot do its job, None while it can: the cloud queue cannot be read
/// (when there is one) or a sender keeps failing. Either one is news to an operator whose API
/// still answers.
fn processing_health(
    queue: Option<watch::Receiver<Option<String>>>,
    mut senders: watch::Receiver<Option<String>>,
) -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let (mut queue, has_queue) = match queue {
            Some(q) => (q, true),
            None => (watch::channel(None).1, false),
        };
        loop {
            let why: Vec<String> = [
                queue.borrow_and_update().clone(),
                senders.borrow_and_update().clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            tx.send_replace((!why.is_empty()).then(|| why.join("; ")));
            tokio::select! {
                r = queue.changed(), if has_queue => if r.is_err() { return },
                r = senders.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// Connects to a broker at start, `reconnectAttempts` more times after a failure with
/// `reconnectDelaySeconds` between, as FlyteAdmin does; then gives up, naming the cause.
async fn connect<B, F, Fut>(config: &Config, what: &str, mut attempt: F) -> anyhow::Result<B>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<B, queue::QueueError>>,
{
    let retries = config.notifications.reconnect_attempts.max(0) as u64;
    let delay = Duration::from_secs(config.notifications.reconnect_delay_seconds.max(0) as u64);
    let mut tried = 0;
    loop {
        match attempt().await {
            Ok(broker) => return Ok(broker),
            Err(e) if tried < retries => {
                tried += 1;
                tracing::warn!(
                    "cannot reach {what} ({e}); attempt {tried} of {retries} again in {delay:?} \
                     (notifications.reconnectAttempts, reconnectDelaySeconds)"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot reach {what} after {} attempts: {e}",
                    tried + 1
                ));
            }
        }
    }
}

/// Runs the service on `listener` until `shutdown` completes: serves gRPC, delivers in the
/// background, then drains within the configured deadline.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let svc = &config.flyte_notify;
    // tonic builds its server TLS config from the process default; an error means one is
    // installed already (by an embedding program or an earlier run), which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Bound before anything else starts, so that a port already taken stops start-up at once.
    let metrics = svc.metrics_listen.map(telemetry::install).transpose()?;
    let console_listener = match svc.console.listen.filter(|_| svc.console.enabled) {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("flyteNotify.console.listen: cannot listen on {addr}"))?,
        ),
        None => None,
    };
    for warning in notify::template_warnings(&config.notifications.emailer) {
        tracing::warn!("{warning}");
    }
    for note in config.notes() {
        tracing::info!("{note}");
    }
    std::fs::create_dir_all(&svc.data_dir)
        .with_context(|| format!("cannot create the data dir {}", svc.data_dir.display()))?;
    let ledger = open_ledger(&config).await?;
    if let Some(metrics) = metrics {
        metrics.serve(ledger.clone())?;
    }
    let pending = ledger
        .list_pending(ledger::PendingQuery {
            limit: 1,
            after: None,
            filters: vec![ledger::Filter {
                field: ledger::FilterField::State,
                op: ledger::FilterOp::ValueIn,
                values: vec!["pending".into(), "retrying".into()],
            }],
        })
        .await?;
    if !pending.deliveries.is_empty() {
        tracing::info!("the ledger holds undelivered notifications; delivering them now");
    }

    let native = native_channels::build(&config)?;
    let router = native
        .senders
        .into_iter()
        .fold(Router::new(email_sender(&config).await?), Router::with);
    let (queue, processor, wake) = queue(&config, ledger.clone()).await?;
    let renderer = Arc::new(Renderer {
        subject: config.notifications.emailer.subject.clone(),
        body: config.notifications.emailer.body.clone(),
        sender: config.notifications.emailer.sender.clone(),
        console_url: svc.console_url.clone(),
        max_rendered_bytes: svc.limits.max_rendered_bytes,
    });
    let expectations = Arc::new(notify::expectations::Expectations::new(&svc.expectations));
    expectations_ok(
        &expectations,
        &svc.limits,
        &native.routes,
        &native.webhook_targets,
    )?;
    let notifier = Arc::new(
        Notifier::new(
            ledger.clone(),
            queue.clone(),
            renderer.clone(),
            svc.limits.clone(),
        )
        .with_routes(native.routes, native.webhook_targets)
        .with_expectations(expectations.clone())
        .with_flyte2(notify::flyte2::Flyte2Setup {
            catalog: notify::flyte2::rules::Catalog {
                delivery_configs: svc.delivery_configs.clone(),
                rule_sets: svc.rules.clone(),
                flavor_of: {
                    let webhooks = svc.webhooks.clone();
                    let destinations = native.destination_flavors.clone();
                    Box::new(move |target| match target {
                        delivery::WebhookTarget::Url(url) => {
                            channels::webhook::flavor_of(url, &webhooks)
                        }
                        delivery::WebhookTarget::Destination(name) => {
                            destinations.get(name).copied().unwrap_or_default()
                        }
                    })
                },
                max_template_bytes: svc.limits.max_template_bytes,
                emailer: format!("{:?}", config.email_service()).to_ascii_lowercase(),
                provider_templates: matches!(
                    config.email_service(),
                    EmailService::Ses | EmailService::Sendgrid
                ),
            },
            run_url: svc.flyte2.run_url.clone(),
        }),
    );

    let (stopping_tx, stopping) = watch::channel(false);
    let sender_health = Arc::new(channels::health::SenderHealth::default());
    let worker = worker::Worker {
        queue,
        renderer,
        ledger: ledger.clone(),
        router,
        retry: svc.retry.clone(),
        concurrency: svc.worker.concurrency,
        send_timeout: svc.worker.send_timeout,
        poll_interval: svc.worker.poll_interval,
        sender_health: sender_health.clone(),
        rate_limiter: rate_limiter(&config)?,
        silences: notifier.silences(),
    };
    // Loaded before the first lease, so that a restart does not send what a silence holds.
    if let Err(e) = notifier.silences().refresh(ledger.as_ref()).await {
        tracing::warn!(error = %e, "cannot read silences yet; they apply once they can be read");
    }
    tokio::spawn(notifier.silences().run(ledger.clone(), stopping.clone()));
    tokio::spawn(expectations.run(notifier.clone(), stopping.clone()));
    // Sends in flight run on through the drain delay (the API still answers then) and the grace.
    let grace = svc.shutdown_grace;
    let worker_task = if svc.worker.enabled {
        // Before the port opens, so that a replica that answers calls hears the others' new work.
        if svc.store == Store::Postgres {
            ledger::wakeups::listen(&config.postgres_dsn()?, wake, stopping.clone()).await?;
        }
        Some(tokio::spawn(
            worker.run(stopping.clone(), svc.shutdown_drain_delay + grace),
        ))
    } else {
        tracing::info!(
            "flyteNotify.worker.enabled is false: this replica accepts notifications and leaves \
             sending them to the other replicas"
        );
        None
    };
    let queue_trouble = processor.map(|p| {
        let trouble = p.trouble.subscribe();
        tokio::spawn(p.run(stopping.clone()));
        trouble
    });
    let processing = processing_health(queue_trouble, sender_health.subscribe());

    let serving = store_health(ledger.clone(), stopping.clone());
    let tokens = if svc.auth.enabled() {
        let tokens = api::auth::Tokens::load(&svc.auth)?;
        tokens.clone().watch(Duration::from_secs(2));
        Some(tokens)
    } else {
        tracing::warn!(
            "no authentication: anyone who can reach the port can enqueue (flyteNotify.auth)"
        );
        None
    };
    let authenticator = match &tokens {
        Some(tokens) => {
            let oidc = match &svc.auth.oidc {
                Some(config) => Some(api::oidc::Oidc::start(config.clone()).await),
                None => None,
            };
            // check-config refused bad rules already; this cannot fail on a loaded config.
            let permissions = authz::Permissions::compile(&svc.auth.permissions)
                .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?
                .map(Arc::new);
            if permissions.is_none() {
                tracing::info!(
                    "no flyteNotify.auth.permissions: every valid token may do everything"
                );
            }
            Some(api::auth::Authenticator::new(
                tokens.clone(),
                oidc,
                permissions,
            ))
        }
        None => None,
    };
    let auth = authenticator
        .clone()
        .map(|a| api::auth::AuthLayer::new(a, &svc.auth));
    let tls = tls_config(&svc.tls)?;
    let console_options = |over_tls: bool| {
        let login = match (&svc.console.login, &authenticator) {
            (Some(login), Some(a)) => a
                .oidc()
                .map(|oidc| Arc::new(console::IssuerLogin::new(login.clone(), oidc.clone()))),
            _ => None,
        };
        console::ConsoleOptions {
            auth: authenticator.clone(),
            secure_cookies: over_tls || login.as_ref().is_some_and(|l| l.over_https()),
            login,
        }
    };
    // The console at `/` of the gRPC port (browsers speak HTTP/1.1 there only with http.enabled),
    // or on its own listener.
    let console_on_port = match (&console_listener, svc.console.enabled, svc.http.enabled) {
        (None, true, true) => Some(console::router(
            notifier.clone(),
            console_options(tls.is_some()),
        )),
        (None, true, false) => {
            tracing::info!(
                "the web console is off: on the gRPC port it needs flyteNotify.http.enabled \
                 (browsers speak HTTP/1.1), or give it flyteNotify.console.listen"
            );
            None
        }
        _ => None,
    };
    if let Some(listener) = console_listener {
        let mut stopping = stopping.clone();
        tokio::spawn(console::serve(
            listener,
            notifier.clone(),
            console_options(false),
            async move {
                let _ = stopping.wait_for(|s| *s).await;
            },
        ));
    }

    let local = listener.local_addr()?;
    tracing::info!(data_dir = %svc.data_dir.display(), "flyte-notify listening on {local}");
    let mut server = tokio::spawn(api::serve(
        notifier,
        listener,
        async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        },
        serving,
        api::ServeOptions {
            transport: svc.transport.clone(),
            max_request_bytes: svc.limits.max_request_bytes,
            auth,
            tls,
            processing: Some(processing),
            time_calls: svc.metrics_listen.is_some(),
            drain_delay: svc.shutdown_drain_delay,
            http_json: svc.http.enabled,
            console: console_on_port,
        },
    ));
    let mut stopping_rx = stopping;
    let served = tokio::select! {
        r = &mut server => r,
        _ = stopping_rx.wait_for(|s| *s) => {
            // Calls in flight get the grace to finish, after the drain delay; a client that keeps
            // its connection open past it must not hold the process hostage.
            match tokio::time::timeout(svc.shutdown_drain_delay + grace, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("connections still open at the end of shutdownGrace; closing them");
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    tracing::info!("stopped accepting calls");
    if let Some(task) = worker_task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "worker task failed");
    }
    ledger.close().await;
    tracing::info!("shut down cleanly");
    match served {
        Ok(r) => r.context("gRPC server failed"),
        Err(e) => Err(anyhow::anyhow!("gRPC server task failed: {e}")),
    }
}

/// The server's TLS settings, with the PEM files read now so that a missing file stops start-up.
fn tls_config(
    tls: &config::TlsConfig,
) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Ok(None);
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .with_context(|| format!("flyteNotify.tls.{key}: cannot read {}", path.display()))
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read("certFile", cert)?,
        read("keyFile", key)?,
    ));
    if let Some(ca) = &tls.client_ca_file {
        config = config.client_ca_root(Certificate::from_pem(read("clientCaFile", ca)?));
        tracing::info!("TLS on; clients must present a certificate (mTLS)");
    } else {
        tracing::info!("TLS on");
    }
    Ok(Some(config))
}

/// Whether the ledger can write, checked every second until `stopping`: what gRPC health reports.
fn store_health(
    ledger: Arc<dyn Ledger>,
    mut stopping: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(ledger.trouble().is_none());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            tx.send_if_modified(|up| {
                let now = ledger.trouble().is_none();
                std::mem::replace(up, now) != now
            });
        }
    });
    rx
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        _ = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

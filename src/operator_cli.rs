//! `flyte-notify redrive | discard | show | send-test | silence`: the operator's commands, as a gRPC client of a running
//! service (the ledger belongs to that process, and a replica's peers must see the change too).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::proto::flyteidl::admin::{
    EmailNotification, Notification, PagerDutyNotification, SlackNotification, notification,
};
use crate::proto::flytenotify::v1::{
    CreateSilenceRequest, ExpireSilenceRequest, ListSilencesRequest, Silence, silence,
};
use crate::proto::flytenotify::v1::{
    DeliveryState, DiscardRequest, GetDeliveryRequest, RedriveRequest, SendTestRequest,
    SkippedDelivery, WebhookNotification, delivery_event::Kind,
    notification_service_client::NotificationServiceClient, send_test_request::Target,
};

/// Where the service is and how to reach it.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The service's address.
    #[arg(
        long,
        env = "FLYTE_NOTIFY_SERVER",
        default_value = "http://127.0.0.1:8091"
    )]
    pub server: String,
    /// A bearer token, when the service requires one (flyteNotify.auth).
    #[arg(long, env = "FLYTE_NOTIFY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate that signed the server's certificate, for an https:// server.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

/// Which dead deliveries: by id, or by a filter in ListPending's syntax.
#[derive(Args, Debug, Clone)]
pub struct ActArgs {
    /// Delivery ids (as Enqueue or ListPending gave them).
    #[arg(required_unless_present = "filter", conflicts_with = "filter")]
    pub ids: Vec<String>,
    /// Select dead deliveries with a filter, e.g. 'eq(project,flytesnacks)+eq(channel,email)'.
    #[arg(long)]
    pub filter: Option<String>,
    /// With --filter: how many at most (the service's default is 1000).
    #[arg(long, requires = "filter")]
    pub limit: Option<u32>,
    /// Kept in each delivery's history, e.g. "relay fixed, INC-1234".
    #[arg(long, default_value = "")]
    pub note: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    /// The delivery id.
    pub id: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Where a test message goes: exactly one of these.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct TestTarget {
    /// Email recipients (repeat the flag for several).
    #[arg(long)]
    pub email: Vec<String>,
    /// A Slack recipient with a route in flyteNotify.slack.routes, e.g. '#ml-alerts' (a recipient
    /// with none is emailed, as FlyteAdmin does).
    #[arg(long)]
    pub slack: Vec<String>,
    /// A PagerDuty recipient with a route in flyteNotify.pagerduty.routes.
    #[arg(long)]
    pub pagerduty: Vec<String>,
    /// A destination in flyteNotify.webhooks.destinations.
    #[arg(long)]
    pub webhook_destination: Option<String>,
    /// A webhook URL the allow-list admits.
    #[arg(long)]
    pub webhook_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SendTestArgs {
    #[command(flatten)]
    pub target: TestTarget,
    /// Print the delivery id and return at once instead of waiting for the outcome.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the outcome.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum SilenceCommand {
    /// Hold back the deliveries a matcher selects, from now (or --starts) for --for or --until.
    Add(SilenceAddArgs),
    /// The silences that have not ended; with --all also those ended within the last 7 days.
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// End a silence now (a deliver_after one sends what it held).
    Expire {
        /// The silence id, as `silence add` or `silence list` printed it.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Args, Debug, Clone)]
pub struct SilenceAddArgs {
    /// ListPending's filter syntax (keys project, domain, name, channel), e.g.
    /// 'eq(project,flytesnacks)+eq(domain,production)'.
    #[arg(long)]
    pub matcher: String,
    /// How long it lasts from its start, e.g. 2h or 30m.
    #[arg(long = "for", value_parser = humantime::parse_duration, required_unless_present = "until", conflicts_with = "until")]
    pub duration: Option<std::time::Duration>,
    /// When it ends, RFC 3339, e.g. 2026-12-03T18:00:00Z.
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// When it starts, RFC 3339; now when left out.
    #[arg(long, value_parser = rfc3339)]
    pub starts: Option<chrono::DateTime<chrono::Utc>>,
    /// Why, e.g. "warehouse maintenance, INC-1234".
    #[arg(long)]
    pub comment: String,
    /// Who, e.g. an email address; $USER when left out.
    #[arg(long)]
    pub created_by: Option<String>,
    /// When it ends, send what it held instead of dropping it.
    #[arg(long)]
    pub deliver_after: bool,
    #[command(flatten)]
    pub connection: Connection,
}

fn rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2026-12-03T18:00:00Z: {e}"))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn print_silence(s: &Silence) {
    let state = silence::State::try_from(s.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| s.state.to_string());
    println!(
        "{}  {state}  {}  {} .. {}{}",
        s.id,
        s.matcher,
        when(s.starts_at.as_ref()),
        when(s.ends_at.as_ref()),
        if s.deliver_after {
            "  deliver-after"
        } else {
            ""
        }
    );
    println!("    by {}: {}", s.created_by, s.comment);
}

pub async fn silence(command: SilenceCommand) -> anyhow::Result<()> {
    match command {
        SilenceCommand::Add(args) => {
            let starts = args.starts.unwrap_or_else(chrono::Utc::now);
            let ends = match (args.until, args.duration) {
                (Some(until), _) => until,
                (None, Some(d)) => {
                    starts + chrono::Duration::from_std(d).context("--for is too long")?
                }
                (None, None) => anyhow::bail!("say how long: --for 2h or --until RFC3339"),
            };
            let created_by = args
                .created_by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_default();
            let mut client = connect(&args.connection).await?;
            let r = client
                .create_silence(CreateSilenceRequest {
                    silence: Some(Silence {
                        matcher: args.matcher,
                        starts_at: args.starts.map(timestamp),
                        ends_at: Some(timestamp(ends)),
                        created_by,
                        comment: args.comment,
                        deliver_after: args.deliver_after,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(failed)?
                .into_inner();
            let s = r
                .silence
                .context("the service answered without the silence")?;
            print_silence(&s);
        }
        SilenceCommand::List { all, connection } => {
            let mut client = connect(&connection).await?;
            let r = client
                .list_silences(ListSilencesRequest {
                    include_expired: all,
                })
                .await
                .map_err(failed)?
                .into_inner();
            if r.silences.is_empty() {
                println!("no silences");
            }
            for s in &r.silences {
                print_silence(s);
            }
        }
        SilenceCommand::Expire { id, connection } => {
            let mut client = connect(&connection).await?;
            let r = client
                .expire_silence(ExpireSilenceRequest { silence_id: id })
                .await
                .map_err(failed)?
                .into_inner();
            let s = r
                .silence
                .context("the service answered without the silence")?;
            print_silence(&s);
        }
    }
    Ok(())
}

async fn connect(
    c: &Connection,
) -> anyhow::Result<
    NotificationServiceClient<
        tonic::service::interceptor::InterceptedService<
            Channel,
            impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + use<>,
        >,
    >,
> {
    let mut endpoint = Endpoint::from_shared(c.server.clone())
        .with_context(|| format!("--server {:?} is not a URL", c.server))?;
    if c.server.starts_with("https://") {
        let ca = c.ca_cert.as_ref().context(
            "an https:// server needs --ca-cert: the PEM CA certificate that signed its certificate",
        )?;
        let pem = std::fs::read(ca).with_context(|| format!("--ca-cert {}", ca.display()))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach flyte-notify at {}", c.server))?;
    let header = match &c.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse::<tonic::metadata::MetadataValue<_>>()
                .context("the token is not a valid header value")?,
        ),
        None => None,
    };
    Ok(NotificationServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            if let Some(header) = &header {
                request
                    .metadata_mut()
                    .insert("authorization", header.clone());
            }
            Ok(request)
        },
    ))
}

fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

fn print_result(verb: &str, ids: &[String], skipped: &[SkippedDelivery], more: bool) {
    println!(
        "{verb} {} dead deliver{}",
        ids.len(),
        if ids.len() == 1 { "y" } else { "ies" }
    );
    for id in ids {
        println!("  {id}");
    }
    if !skipped.is_empty() {
        println!("left alone: {}", skipped.len());
        for s in skipped {
            println!("  {}: {}", s.delivery_id, s.reason);
        }
    }
    if more {
        println!("more dead deliveries match; run the same command again for the next ones");
    }
}

pub async fn redrive(args: ActArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.connection).await?;
    let r = client
        .redrive(RedriveRequest {
            delivery_ids: args.ids,
            filters: args.filter.unwrap_or_default(),
            limit: args.limit.unwrap_or(0),
            note: args.note,
        })
        .await
        .map_err(failed)?
        .into_inner();
    print_result("redrove", &r.delivery_ids, &r.skipped, r.more);
    Ok(())
}

pub async fn discard(args: ActArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.connection).await?;
    let r = client
        .discard(DiscardRequest {
            delivery_ids: args.ids,
            filters: args.filter.unwrap_or_default(),
            limit: args.limit.unwrap_or(0),
            note: args.note,
        })
        .await
        .map_err(failed)?
        .into_inner();
    print_result("discarded", &r.delivery_ids, &r.skipped, r.more);
    Ok(())
}

fn when(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

pub async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.connection).await?;
    let r = client
        .get_delivery(GetDeliveryRequest {
            delivery_id: args.id,
        })
        .await
        .map_err(failed)?
        .into_inner();
    let d = r
        .delivery
        .context("the service answered without the delivery")?;
    let execution = d
        .execution_id
        .map(|e| format!("{}/{}/{}", e.project, e.domain, e.name))
        .unwrap_or_default();
    let state = DeliveryState::try_from(d.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("DELIVERY_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| d.state.to_string());
    println!("delivery   {}", d.id);
    println!("execution  {execution}");
    println!("channel    {} to {}", d.channel, d.recipients.join(", "));
    println!("state      {state} (attempts: {})", d.attempts);
    if !d.digest_id.is_empty() {
        println!("digest     {}", d.digest_id);
    }
    println!("accepted   {}", when(d.created_at.as_ref()));
    if d.next_attempt_at.is_some() {
        println!("next try   {}", when(d.next_attempt_at.as_ref()));
    }
    if !d.last_error.is_empty() {
        println!("last error {}", d.last_error);
    }
    println!("history");
    if r.history.is_empty() {
        println!("  (no attempt recorded yet)");
    }
    for e in r.history {
        let kind = Kind::try_from(e.kind).unwrap_or(Kind::Unspecified);
        let name = kind
            .as_str_name()
            .trim_start_matches("KIND_")
            .to_ascii_lowercase();
        let attempts = e.attempts;
        // An outcome belongs to one attempt; an operator's action comes after some number of them.
        let what = match kind {
            Kind::Redriven | Kind::Discarded | Kind::Disarmed => format!(
                "{name} after {attempts} attempt{}",
                if attempts == 1 { "" } else { "s" }
            ),
            _ => format!("{name} at attempt {attempts}"),
        };
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", e.detail)
        };
        println!("  {}  {what}{detail}", when(e.at.as_ref()));
    }
    Ok(())
}

fn test_target(t: TestTarget) -> Target {
    let notification = |kind| {
        Target::Notification(Notification {
            phases: Vec::new(),
            r#type: Some(kind),
        })
    };
    if let Some(destination) = t.webhook_destination {
        return Target::Webhook(WebhookNotification {
            destination,
            ..Default::default()
        });
    }
    if let Some(url) = t.webhook_url {
        return Target::Webhook(WebhookNotification {
            url,
            ..Default::default()
        });
    }
    if !t.slack.is_empty() {
        return notification(notification::Type::Slack(SlackNotification {
            recipients_email: t.slack,
            template: String::new(),
        }));
    }
    if !t.pagerduty.is_empty() {
        return notification(notification::Type::PagerDuty(PagerDutyNotification {
            recipients_email: t.pagerduty,
            template: String::new(),
        }));
    }
    notification(notification::Type::Email(EmailNotification {
        recipients_email: t.email,
        template: String::new(),
    }))
}

/// Sends a test message and, unless told not to, waits for it to be delivered or to fail for
/// good, so that the command's exit status says whether the route works.
pub async fn send_test(args: SendTestArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.connection).await?;
    let r = client
        .send_test(SendTestRequest {
            target: Some(test_target(args.target)),
            run: None,
        })
        .await
        .map_err(failed)?
        .into_inner();
    println!("test delivery {}", r.delivery_id);
    if args.no_wait {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + args.timeout;
    let mut said = String::new();
    loop {
        let d = client
            .get_delivery(GetDeliveryRequest {
                delivery_id: r.delivery_id.clone(),
            })
            .await
            .map_err(failed)?
            .into_inner()
            .delivery
            .context("the service answered without the delivery")?;
        let state = DeliveryState::try_from(d.state).unwrap_or(DeliveryState::Unspecified);
        match state {
            DeliveryState::Delivered => {
                println!("delivered to {} by {}", d.recipients.join(", "), d.channel);
                return Ok(());
            }
            DeliveryState::Dead | DeliveryState::Discarded | DeliveryState::Disarmed => {
                anyhow::bail!("the test message failed: {}", d.last_error);
            }
            _ => {
                if !d.last_error.is_empty() && d.last_error != said {
                    println!("attempt failed, retrying: {}", d.last_error);
                    said = d.last_error.clone();
                }
            }
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "not delivered within {}; `flyte-notify show {}` follows it",
                humantime::format_duration(args.timeout),
                r.delivery_id
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

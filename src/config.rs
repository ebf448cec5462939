//! Configuration: FlyteAdmin's `notifications:` section read exactly as FlyteAdmin defines it, plus
//! our own `flyteNotify:` section. Everything is validated when loaded so that a typo fails at
//! start-up with the key's path rather than as a missing email hours later.

pub mod channels;
pub mod flyte2;
pub mod grouping;
pub mod permissions;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole file. Any other top-level section (a full FlyteAdmin config has many) is ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Config {
    #[serde(default)]
    pub notifications: FlyteAdminNotifications,
    #[serde(default, rename = "flyteNotify")]
    pub flyte_notify: ServiceConfig,
}

/// FlyteAdmin's `notifications:` block, key for key.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlyteAdminNotifications {
    /// aws | gcp | sandbox | local.
    #[serde(rename = "type", default)]
    pub queue_type: QueueType,
    /// Deprecated in FlyteAdmin in favour of aws.region; read as its fallback.
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(default)]
    pub gcp: GcpConfig,
    #[serde(default)]
    pub publisher: PublisherConfig,
    #[serde(default)]
    pub processor: ProcessorConfig,
    #[serde(default)]
    pub emailer: EmailerConfig,
    #[serde(default)]
    pub reconnect_attempts: i64,
    #[serde(default)]
    pub reconnect_delay_seconds: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsConfig {
    #[serde(default)]
    pub region: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpConfig {
    #[serde(default)]
    pub project_id: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublisherConfig {
    #[serde(default)]
    pub topic_name: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessorConfig {
    #[serde(default)]
    pub queue_name: String,
    #[serde(default)]
    pub account_id: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailerConfig {
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub email_server_config: EmailServerConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailServerConfig {
    /// Empty (or absent) leaves the choice to the queue type, as in FlyteAdmin: see
    /// `Config::email_service`.
    #[serde(
        default,
        deserialize_with = "service_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_name: Option<EmailService>,
    #[serde(default)]
    pub api_key_env_var: String,
    #[serde(default)]
    pub api_key_file_path: String,
    #[serde(default)]
    pub smtp_server: String,
    /// A string in FlyteAdmin; we accept a number too.
    #[serde(default, deserialize_with = "string_or_number")]
    pub smtp_port: String,
    #[serde(default, rename = "smtpSkipTLSVerify", alias = "smtpSkipTlsVerify")]
    pub smtp_skip_tls_verify: bool,
    #[serde(default)]
    pub smtp_username: String,
    #[serde(default)]
    pub smtp_password_secret_name: String,
}

/// `notifications.type`: which queue carries work to the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum QueueType {
    /// The ledger's own rows: `local`, `sandbox`, or absent. FlyteAdmin's sandbox queue is
    /// in-process and lost on restart; ours is durable.
    #[default]
    Embedded,
    /// `aws`: Enqueue publishes to the SNS topic `publisher.topicName`; the processor reads the
    /// SQS queue `processor.queueName` subscribed to it, FlyteAdmin's messages included.
    Aws,
    /// `gcp`: Enqueue publishes to the Pub/Sub topic `publisher.topicName`; the processor reads
    /// the subscription `processor.queueName`, both in `gcp.projectId`.
    Gcp,
}

impl TryFrom<String> for QueueType {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        // FlyteAdmin's own values are lower case; an operator's `Local` means the same thing.
        match value.to_ascii_lowercase().as_str() {
            "" | "local" | "sandbox" => Ok(QueueType::Embedded),
            "aws" => Ok(QueueType::Aws),
            "gcp" => Ok(QueueType::Gcp),
            _ => Err(unknown_value(&value, &["local", "sandbox", "aws", "gcp"])),
        }
    }
}

impl From<QueueType> for String {
    fn from(value: QueueType) -> String {
        match value {
            QueueType::Embedded => "local".into(),
            QueueType::Aws => "aws".into(),
            QueueType::Gcp => "gcp".into(),
        }
    }
}

/// `notifications.emailer.emailServerConfig.serviceName`: how email goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EmailService {
    /// Files in a local Maildir under the data dir: `maildir`, or an empty serviceName with the
    /// embedded queue.
    Maildir,
    Smtp,
    /// SendGrid's v3 mail send API.
    Sendgrid,
    /// Amazon SES (v2 API). FlyteAdmin picks SES with `type: aws` and no serviceName; `ses` is
    /// ours, so that SES works with the embedded queue.
    Ses,
}

impl TryFrom<String> for EmailService {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "maildir" => Ok(EmailService::Maildir),
            "smtp" => Ok(EmailService::Smtp),
            "sendgrid" => Ok(EmailService::Sendgrid),
            "ses" => Ok(EmailService::Ses),
            // Read as FlyteAdmin's way of asking for SES, which is the queue type, not this key.
            "aws" => Err(format!(
                "{value:?} is not a serviceName; FlyteAdmin sends by SES when type is aws and \
                 serviceName is empty, and flyte-notify sends by SES with serviceName: ses"
            )),
            _ => Err(unknown_value(
                &value,
                &["smtp", "sendgrid", "ses", "maildir"],
            )),
        }
    }
}

impl From<EmailService> for String {
    fn from(value: EmailService) -> String {
        match value {
            EmailService::Maildir => "maildir".into(),
            EmailService::Smtp => "smtp".into(),
            EmailService::Sendgrid => "sendgrid".into(),
            EmailService::Ses => "ses".into(),
        }
    }
}

/// An empty or absent serviceName is "not chosen" (FlyteAdmin's Go zero value), not an error.
fn service_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<EmailService>, D::Error> {
    let value = Option::<String>::deserialize(d)?.unwrap_or_default();
    if value.is_empty() {
        return Ok(None);
    }
    EmailService::try_from(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `flyteNotify.store`: where the ledger lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Store {
    /// One SQLite file in the data dir; one process.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`flyteNotify.postgres`), shared by any number of replicas.
    Postgres,
}

impl TryFrom<String> for Store {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Store::Sqlite),
            "postgres" | "postgresql" => Ok(Store::Postgres),
            _ => Err(unknown_value(&value, &["sqlite", "postgres"])),
        }
    }
}

impl From<Store> for String {
    fn from(value: Store) -> String {
        match value {
            Store::Sqlite => "sqlite".into(),
            Store::Postgres => "postgres".into(),
        }
    }
}

/// "unknown value", with the accepted ones and the nearest of them when it is a likely typo.
fn unknown_value(value: &str, accepted: &[&str]) -> String {
    let mut message = format!(
        "unknown value {value:?}; expected one of {}",
        accepted.join(", ")
    );
    if let Some(near) = nearest(value, accepted) {
        message.push_str(&format!(" (did you mean {near}?)"));
    }
    message
}

/// The candidate `word` is most likely a typo of, if any: the same letters ignoring case and
/// `_`/`-`, or at most two edits away (for words long enough that two edits are a typo, not
/// another word). Also suggests Flyte 2 template variables (`notify::flyte2::template`).
pub(crate) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let folded = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let word = folded(word);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&word, &folded(c)), *c))
        .filter(|(distance, c)| *distance <= 2.min(c.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Our own section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where the ledger lives: `sqlite` (the default, single-process).
    #[serde(default)]
    pub store: Store,
    /// gRPC listen address.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Where the ledger (SQLite) and the Maildir live.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// Where to serve Prometheus metrics (GET /metrics), e.g. 0.0.0.0:9100. Off when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The web console for the people on call (README "Console").
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Flyte console base URL, e.g. https://flyte.example.com/console. Adds a link to default emails.
    #[serde(default)]
    pub console_url: String,
    /// After SIGTERM (and `shutdownDrainDelay`): how long calls and sends in flight may run
    /// before the process releases what is left to other replicas (or its next start) and exits.
    /// Below Kubernetes' default 30 s termination grace, so that the pod exits on its own.
    /// `shutdownDeadline` is its earlier name.
    #[serde(
        default = "defaults::shutdown_grace",
        alias = "shutdownDeadline",
        with = "humantime_serde"
    )]
    pub shutdown_grace: Duration,
    /// After SIGTERM: how long health reports NOT_SERVING while the service still answers, so that
    /// a Kubernetes Service or load balancer stops sending new calls here before the port closes.
    /// 0 (the default) outside Kubernetes; the Helm chart sets a few seconds.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_drain_delay: Duration,
    /// Where FlyteAdmin's secret convention looks when FLYTE_SECRET_<name> is unset.
    #[serde(default = "defaults::secrets_dir")]
    pub secrets_dir: PathBuf,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub transport: TransportConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub sendgrid: SendgridConfig,
    #[serde(default)]
    pub aws: AwsEndpoint,
    #[serde(default)]
    pub smtp: SmtpSettings,
    #[serde(default)]
    pub postgres: PostgresConfig,
    #[serde(default)]
    pub slack: channels::SlackConfig,
    #[serde(default)]
    pub pagerduty: channels::PagerDutyConfig,
    #[serde(default)]
    pub webhooks: channels::WebhooksConfig,
    #[serde(default)]
    pub teams: channels::TeamsConfig,
    /// Launch plans that must succeed every so often: an alert when one does not, and another
    /// when it succeeds again (missed schedules).
    #[serde(default)]
    pub expectations: Vec<ExpectationConfig>,
    #[serde(default)]
    pub grouping: GroupingSection,
    /// Flyte 2: what `flyte.notify.NamedDelivery(name)` sends.
    #[serde(default)]
    pub delivery_configs: Vec<flyte2::DeliveryConfigEntry>,
    /// Flyte 2: what `flyte.notify.NamedRule(name)` applies.
    #[serde(default)]
    pub rules: Vec<flyte2::RuleSetEntry>,
    #[serde(default)]
    pub flyte2: flyte2::Flyte2Settings,
}

/// Digests for the channels that are not configured per route (PagerDuty routes have their own
/// `grouping`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupingSection {
    /// Every email delivery (its recipients without a native route).
    #[serde(default)]
    pub email: grouping::GroupingConfig,
}

/// A launch plan that must succeed every so often (`flyteNotify.expectations[]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectationConfig {
    /// `project/domain/name` of the launch plan.
    pub launch_plan: String,
    /// How often it runs: a success is expected at least this often.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// How late a success may be before the alert goes out.
    #[serde(default, with = "humantime_serde")]
    pub grace: Duration,
    pub notify: ExpectationNotify,
}

/// Whom a missed schedule is told, as a Flyte notification names them: email addresses, Slack and
/// PagerDuty recipients (a native route in flyteNotify.slack or .pagerduty sends those natively,
/// as for any notification; otherwise they get email), and webhook destinations by name.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectationNotify {
    #[serde(default)]
    pub email: Vec<String>,
    #[serde(default)]
    pub slack: Vec<String>,
    #[serde(default)]
    pub pager_duty: Vec<String>,
    /// Names of webhook destinations (flyteNotify.webhooks.destinations).
    #[serde(default)]
    pub webhooks: Vec<String>,
}

impl ExpectationConfig {
    /// The launch plan's (project, domain, name).
    pub fn launch_plan_parts(&self) -> Option<(&str, &str, &str)> {
        let mut parts = self.launch_plan.split('/');
        let (p, d, n) = (parts.next()?, parts.next()?, parts.next()?);
        (parts.next().is_none() && [p, d, n].iter().all(|s| !s.trim().is_empty()))
            .then_some((p, d, n))
    }
}

/// At most this many expectations: each is checked every second on every replica.
pub const MAX_EXPECTATIONS: usize = 1000;
/// The bounds of an expectation's `every` and `grace`.
pub const MIN_EXPECTATION_EVERY: Duration = Duration::from_secs(1);
pub const MAX_EXPECTATION_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);
pub const MAX_EXPECTATION_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where the AWS services (SNS, SQS, SES) are, when not at AWS itself: LocalStack, moto, a VPC
/// endpoint. The SDK's own `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` work as well;
/// this setting, when present, wins over them for every service.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsEndpoint {
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// Where the PostgreSQL ledger is (`store: postgres`). The environment variable
/// `FLYTE_NOTIFY_POSTGRES_DSN`, when set, wins over `dsn`, so that a DSN with a password can stay
/// out of the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresConfig {
    /// e.g. `postgres://flyte-notify@db.internal:5432/flyte_notify?sslmode=require`.
    #[serde(default)]
    pub dsn: String,
    /// Connections per replica.
    #[serde(default = "defaults::postgres_pool")]
    pub max_connections: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            dsn: String::new(),
            max_connections: defaults::postgres_pool(),
        }
    }
}

/// The environment variable that holds the PostgreSQL DSN, winning over `postgres.dsn`.
pub const POSTGRES_DSN_ENV: &str = "FLYTE_NOTIFY_POSTGRES_DSN";

impl Config {
    /// The PostgreSQL DSN: `FLYTE_NOTIFY_POSTGRES_DSN` when set, else `flyteNotify.postgres.dsn`.
    pub fn postgres_dsn(&self) -> Result<String, ConfigError> {
        match std::env::var(POSTGRES_DSN_ENV) {
            Ok(dsn) if !dsn.trim().is_empty() => Ok(dsn.trim().to_string()),
            _ if !self.flyte_notify.postgres.dsn.trim().is_empty() => {
                Ok(self.flyte_notify.postgres.dsn.trim().to_string())
            }
            _ => Err(ConfigError::Invalid {
                key: "flyteNotify.postgres.dsn".into(),
                message: format!(
                    "store: postgres needs a DSN, here or in the environment variable \
                     {POSTGRES_DSN_ENV}"
                ),
            }),
        }
    }
}

/// SMTP settings FlyteAdmin's section has no key for.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpSettings {
    /// `auto` (implicit TLS on port 465, else STARTTLS when offered: FlyteAdmin's behaviour),
    /// `implicit`, `starttls` (required: never send in clear) or `none`.
    #[serde(default)]
    pub tls: SmtpTlsMode,
    /// The password from a file, instead of `smtpPasswordSecretName`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum SmtpTlsMode {
    #[default]
    Auto,
    Implicit,
    StartTls,
    None,
}

impl TryFrom<String> for SmtpTlsMode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(SmtpTlsMode::Auto),
            "implicit" => Ok(SmtpTlsMode::Implicit),
            "starttls" => Ok(SmtpTlsMode::StartTls),
            "none" => Ok(SmtpTlsMode::None),
            _ => Err(unknown_value(
                &value,
                &["auto", "implicit", "starttls", "none"],
            )),
        }
    }
}

impl From<SmtpTlsMode> for String {
    fn from(value: SmtpTlsMode) -> String {
        match value {
            SmtpTlsMode::Auto => "auto",
            SmtpTlsMode::Implicit => "implicit",
            SmtpTlsMode::StartTls => "starttls",
            SmtpTlsMode::None => "none",
        }
        .into()
    }
}

/// Settings of the SendGrid sender that FlyteAdmin's section has no key for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendgridConfig {
    /// Where the v3 API lives: `https://api.eu.sendgrid.com` for EU subusers, or a local stand-in
    /// in tests. `/v3/mail/send` is appended.
    #[serde(default = "defaults::sendgrid_base_url")]
    pub base_url: String,
}

impl Default for SendgridConfig {
    fn default() -> Self {
        Self {
            base_url: defaults::sendgrid_base_url(),
        }
    }
}

/// The HTTP/JSON face of the API, on the gRPC port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    /// Every RPC also as HTTP/JSON (`/api/v1/...`), with the same auth, limits and metrics.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `flyteNotify.console`: the web console. At `/` of the gRPC port (beside HTTP/JSON) unless
/// turned off, or on a listener of its own, so that it can be kept off the network the gRPC
/// port faces.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve it at all. On the gRPC port it needs `http.enabled` (HTTP/1.1 for browsers).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Serve it here instead of on the gRPC port, e.g. 127.0.0.1:8092.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Log in through `flyteNotify.auth.oidc`'s issuer (authorization code with PKCE), beside
    /// pasting a token.
    #[serde(default)]
    pub login: Option<ConsoleLoginConfig>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            login: None,
        }
    }
}

/// `flyteNotify.console.login`: the console as an OAuth2 client of the issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsoleLoginConfig {
    /// The client registered at the issuer for the console (a public client: PKCE, no secret).
    pub client_id: String,
    /// An environment variable holding the client's secret, for issuers that register the
    /// console as a confidential client.
    #[serde(default)]
    pub client_secret_env_var: Option<String>,
    /// Where the issuer sends the browser back: the console's own `/login/callback`, as the
    /// browser reaches it (e.g. https://notify.example.com/login/callback), registered at the
    /// issuer.
    pub redirect_url: String,
    /// The scopes asked for; the access token must still carry `flyteNotify.auth.oidc.audience`.
    #[serde(default = "defaults::console_scopes")]
    pub scopes: Vec<String>,
}

impl ConsoleConfig {
    /// The errors name their key.
    fn validate(&self, auth: &AuthConfig) -> Result<(), (String, String)> {
        let Some(login) = &self.login else {
            return Ok(());
        };
        let key = |k: &str| format!("flyteNotify.console.login.{k}");
        if auth.oidc.is_none() {
            return Err((
                "flyteNotify.console.login".into(),
                "logging in through an issuer needs flyteNotify.auth.oidc (the issuer and the \
                 audience its tokens carry)"
                    .into(),
            ));
        }
        if login.client_id.trim().is_empty() {
            return Err((key("clientId"), "must not be empty".into()));
        }
        let url = url::Url::parse(&login.redirect_url)
            .map_err(|e| (key("redirectUrl"), format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/login/callback" {
            return Err((
                key("redirectUrl"),
                "must be the console's own http(s)://HOST/login/callback, as the browser \
                 reaches it"
                    .into(),
            ));
        }
        if let Some(var) = &login.client_secret_env_var
            && std::env::var(var).is_err()
        {
            return Err((key("clientSecretEnvVar"), format!("{var} is not set")));
        }
        Ok(())
    }
}

/// Bearer tokens. Off unless a source is named; then every call needs one of the tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// A file of tokens, one per line (`#` starts a comment); re-read when it changes.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// An environment variable holding comma-separated tokens (read at start).
    #[serde(default)]
    pub tokens_env_var: Option<String>,
    /// Health checks need no token (load balancers and kubelets send none).
    #[serde(default = "defaults::yes")]
    pub open_health: bool,
    /// Server reflection (what grpcurl `list` and `describe` use) needs no token.
    #[serde(default)]
    pub open_reflection: bool,
    /// JWT bearer tokens from an OAuth2/OIDC issuer (FlyteAdmin's own authorization server, or
    /// an external one), besides or instead of the static tokens.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// Who may do what, where. Empty: every valid token may do everything.
    #[serde(default)]
    pub permissions: Vec<permissions::PermissionRule>,
}

/// `flyteNotify.auth.oidc`: where JWTs come from and whom they must be for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL, exactly as the tokens' `iss`; `/.well-known/openid-configuration` under it
    /// names the JWKS.
    pub issuer: String,
    /// The `aud` the tokens must carry (FlyteAdmin's default is its own public URL).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "defaults::oidc_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// The claim holding the caller's groups, for `group:` rules.
    #[serde(default = "defaults::oidc_groups_claim")]
    pub groups_claim: String,
    /// The shortest time between two JWKS fetches prompted by an unknown `kid`, so that tokens
    /// with made-up key ids cannot make us hammer the issuer.
    #[serde(default = "defaults::oidc_refetch_interval", with = "humantime_serde")]
    pub refetch_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens_file: None,
            tokens_env_var: None,
            open_health: true,
            open_reflection: false,
            oidc: None,
            permissions: Vec::new(),
        }
    }
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.tokens_env_var.is_some() || self.oidc.is_some()
    }

    /// Whether static tokens are configured (OIDC alone needs no tokens file).
    pub fn has_static_tokens(&self) -> bool {
        self.tokens_file.is_some() || self.tokens_env_var.is_some()
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if let Some(oidc) = &self.oidc {
            check_base_url(oidc.issuer.trim_end_matches('/'))
                .map_err(|m| ("flyteNotify.auth.oidc.issuer".to_string(), m))?;
            if oidc.audience.trim().is_empty() {
                return Err((
                    "flyteNotify.auth.oidc.audience".into(),
                    "required: the aud the tokens are issued for".into(),
                ));
            }
            if oidc.leeway > Duration::from_secs(300) {
                return Err((
                    "flyteNotify.auth.oidc.leeway".into(),
                    "at most 5m; more would accept long-expired tokens".into(),
                ));
            }
            if oidc.groups_claim.trim().is_empty() {
                return Err((
                    "flyteNotify.auth.oidc.groupsClaim".into(),
                    "empty; give the claim name, e.g. groups".into(),
                ));
            }
        }
        if !self.permissions.is_empty() && !self.enabled() {
            return Err((
                "flyteNotify.auth.permissions".into(),
                "needs tokensFile, tokensEnvVar or oidc: without authentication there is no \
                 caller to check"
                    .into(),
            ));
        }
        permissions::validate(&self.permissions)
    }
}

/// TLS for the gRPC server (rustls). Off unless a certificate is named.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the server.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate signed by one (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// How the gRPC server treats connections: bounds that keep one client's connections from
/// holding memory or slots that others need.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransportConfig {
    /// Connections open at once; more are closed as they arrive. Lowered at start, with a
    /// warning, to what the open-file limit can hold.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// How soon a new connection must send the HTTP/2 preface before it is closed.
    #[serde(default = "defaults::handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once (advertised to the client).
    #[serde(default = "defaults::max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Calls in flight on one connection; more are refused at once with RESOURCE_EXHAUSTED.
    #[serde(default = "defaults::max_in_flight_per_connection")]
    pub max_in_flight_per_connection: usize,
    /// The longest one call may take, reading its request included.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often an idle connection is pinged (HTTP/2) and probed (TCP keepalive).
    #[serde(default = "defaults::keepalive_interval", with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[serde(default = "defaults::keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_connections: defaults::max_connections(),
            handshake_timeout: defaults::handshake_timeout(),
            max_concurrent_streams: defaults::max_concurrent_streams(),
            max_in_flight_per_connection: defaults::max_in_flight_per_connection(),
            request_timeout: defaults::request_timeout(),
            keepalive_interval: defaults::keepalive_interval(),
            keepalive_timeout: defaults::keepalive_timeout(),
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            store: Store::default(),
            listen: defaults::listen(),
            data_dir: defaults::data_dir(),
            metrics_listen: None,
            console: ConsoleConfig::default(),
            console_url: String::new(),
            shutdown_grace: defaults::shutdown_grace(),
            shutdown_drain_delay: Duration::ZERO,
            secrets_dir: defaults::secrets_dir(),
            retry: RetryPolicy::default(),
            worker: WorkerConfig::default(),
            limits: Limits::default(),
            transport: TransportConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            sendgrid: SendgridConfig::default(),
            aws: AwsEndpoint::default(),
            smtp: SmtpSettings::default(),
            postgres: PostgresConfig::default(),
            slack: Default::default(),
            pagerduty: Default::default(),
            webhooks: Default::default(),
            teams: Default::default(),
            expectations: Vec::new(),
            grouping: Default::default(),
            delivery_configs: Vec::new(),
            rules: Vec::new(),
            flyte2: Default::default(),
        }
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in
/// [base * 2^(n-1) / 2, base * 2^(n-1)], capped at `max_delay`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "defaults::base_delay", with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(default = "defaults::max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
    /// Attempts in all, the first one included. Then the delivery is dead.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: defaults::base_delay(),
            max_delay: defaults::max_delay(),
            max_attempts: defaults::max_attempts(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerConfig {
    /// Sends in flight at once.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// How long one send may take before it counts as a retryable failure.
    #[serde(default = "defaults::send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
    /// How often the worker looks for due work when nothing wakes it.
    #[serde(default = "defaults::poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Send at all. Off, the replica only accepts and answers calls, and other replicas on the
    /// same PostgreSQL ledger send what it accepted (so it needs `store: postgres`).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: defaults::concurrency(),
            send_timeout: defaults::send_timeout(),
            poll_interval: defaults::poll_interval(),
            enabled: true,
        }
    }
}

/// Bounds on one request, so that one caller cannot make the service send a million emails.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "defaults::max_recipients")]
    pub max_recipients: usize,
    #[serde(default = "defaults::max_notifications")]
    pub max_notifications: usize,
    #[serde(default = "defaults::max_template_bytes")]
    pub max_template_bytes: usize,
    #[serde(default = "defaults::max_request_bytes")]
    pub max_request_bytes: usize,
    /// The largest subject, HTML body or text body a notification may render to. Enqueue and
    /// Preview refuse a notification over it; a stored one over it is recorded dead.
    #[serde(default = "defaults::max_rendered_bytes")]
    pub max_rendered_bytes: usize,
    /// Silences that may exist at once, not counting those that ended (CreateSilence refuses
    /// more).
    #[serde(default = "defaults::max_silences")]
    pub max_silences: usize,
    /// The longest comment a silence may carry, in bytes.
    #[serde(default = "defaults::max_silence_comment_bytes")]
    pub max_silence_comment_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_recipients: defaults::max_recipients(),
            max_notifications: defaults::max_notifications(),
            max_template_bytes: defaults::max_template_bytes(),
            max_request_bytes: defaults::max_request_bytes(),
            max_rendered_bytes: defaults::max_rendered_bytes(),
            max_silences: defaults::max_silences(),
            max_silence_comment_bytes: defaults::max_silence_comment_bytes(),
        }
    }
}

mod defaults {
    use super::*;
    pub fn max_silences() -> usize {
        1000
    }
    pub fn max_silence_comment_bytes() -> usize {
        1024
    }
    pub fn listen() -> SocketAddr {
        "127.0.0.1:8091".parse().expect("valid default address")
    }
    pub fn data_dir() -> PathBuf {
        PathBuf::from("flyte-notify-data")
    }
    pub fn secrets_dir() -> PathBuf {
        PathBuf::from("/etc/secrets")
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(20)
    }
    pub fn base_delay() -> Duration {
        Duration::from_secs(2)
    }
    pub fn max_delay() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_attempts() -> u32 {
        12
    }
    pub fn postgres_pool() -> u32 {
        10
    }
    pub fn concurrency() -> usize {
        16
    }
    pub fn send_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn poll_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn max_recipients() -> usize {
        100
    }
    pub fn max_notifications() -> usize {
        100
    }
    pub fn max_template_bytes() -> usize {
        64 * 1024
    }
    pub fn max_request_bytes() -> usize {
        1024 * 1024
    }
    pub fn max_rendered_bytes() -> usize {
        1024 * 1024
    }
    pub fn yes() -> bool {
        true
    }
    pub fn console_scopes() -> Vec<String> {
        vec!["openid".into()]
    }
    pub fn oidc_leeway() -> Duration {
        Duration::from_secs(30)
    }
    pub fn oidc_groups_claim() -> String {
        "groups".into()
    }
    pub fn oidc_refetch_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_connections() -> usize {
        512
    }
    pub fn handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_concurrent_streams() -> u32 {
        100
    }
    pub fn max_in_flight_per_connection() -> usize {
        64
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn keepalive_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn sendgrid_base_url() -> String {
        "https://api.sendgrid.com".into()
    }
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(u64),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::N(n) => n.to_string(),
    })
}

/// What is wrong with a config file. The file's own path is not in these messages: whoever read
/// the file says it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// Not YAML at all: where the parser stopped.
    #[error("not valid YAML at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// YAML, but a key or value flyte-notify does not accept.
    #[error("{key}: {message}{}", at.map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default())]
    Parse {
        key: String,
        message: String,
        at: Option<(usize, usize)>,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// The top-level sections flyte-notify reads; any other one belongs to FlyteAdmin or is ignored.
const SECTIONS: [&str; 2] = ["notifications", "flyteNotify"];

impl Config {
    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(ConfigError::Read)?;
        Self::from_yaml(&text)
    }

    /// Parses YAML text; errors name the offending key by its path in the file, and its line.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        // Syntax first, on its own: a typed parse would report a syntax error at whatever key it
        // had reached, which misleads.
        let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                line,
                column,
                message: bare_message(&e),
            }
        })?;
        // An empty file (or one of comments only) is the all-defaults config, on purpose.
        if document.is_null() || document.as_mapping().is_some_and(|m| m.is_empty()) {
            return Ok(Self::default());
        }
        check_sections(&document, text)?;
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Parse {
                key: if key == "." { "config".into() } else { key },
                message: bare_message(&inner),
                at: inner.location().map(|l| (l.line(), l.column())),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The shape of each expectation; its recipients are checked like a notification's when the
    /// service starts (and by check-config), where the routes are known.
    fn validate_expectations(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        let expectations = &self.flyte_notify.expectations;
        if expectations.len() > MAX_EXPECTATIONS {
            return Err(invalid(
                "flyteNotify.expectations",
                format!(
                    "{} expectations; at most {MAX_EXPECTATIONS}",
                    expectations.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, e) in expectations.iter().enumerate() {
            let key = |field: &str| format!("flyteNotify.expectations[{i}].{field}");
            if e.launch_plan_parts().is_none() {
                return Err(invalid(
                    &key("launchPlan"),
                    format!("must be project/domain/name; got {:?}", e.launch_plan),
                ));
            }
            if !seen.insert(e.launch_plan.as_str()) {
                return Err(invalid(
                    &key("launchPlan"),
                    format!("{} has another expectation already", e.launch_plan),
                ));
            }
            if !(MIN_EXPECTATION_EVERY..=MAX_EXPECTATION_EVERY).contains(&e.every) {
                return Err(invalid(&key("every"), "must be from 1s to 366 days".into()));
            }
            if e.grace > MAX_EXPECTATION_GRACE {
                return Err(invalid(&key("grace"), "must be at most 30 days".into()));
            }
            let n = &e.notify;
            if n.email.is_empty()
                && n.slack.is_empty()
                && n.pager_duty.is_empty()
                && n.webhooks.is_empty()
            {
                return Err(invalid(
                    &key("notify"),
                    "name at least one recipient: email, slack, pagerDuty or webhooks".into(),
                ));
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if self.notifications.queue_type == QueueType::Gcp
            && self.notifications.gcp.project_id.trim().is_empty()
        {
            return Err(invalid(
                "notifications.gcp.projectId",
                "required when type is gcp".into(),
            ));
        }
        if matches!(
            self.notifications.queue_type,
            QueueType::Aws | QueueType::Gcp
        ) {
            for (key, value) in [
                (
                    "notifications.publisher.topicName",
                    &self.notifications.publisher.topic_name,
                ),
                (
                    "notifications.processor.queueName",
                    &self.notifications.processor.queue_name,
                ),
            ] {
                if value.trim().is_empty() {
                    return Err(invalid(key, "required when type is aws or gcp".into()));
                }
            }
        }
        let server = &self.notifications.emailer.email_server_config;
        match self.email_service() {
            EmailService::Smtp => {
                if server.smtp_server.is_empty() {
                    return Err(invalid(
                        "notifications.emailer.emailServerConfig.smtpServer",
                        "required when serviceName is smtp".into(),
                    ));
                }
                self.smtp_port()?;
            }
            EmailService::Sendgrid => {
                if server.api_key_env_var.is_empty() && server.api_key_file_path.is_empty() {
                    return Err(invalid(
                        "notifications.emailer.emailServerConfig.apiKeyEnvVar",
                        "serviceName sendgrid needs its API key: set apiKeyEnvVar to the name of \
                         an environment variable holding it, or apiKeyFilePath to a file"
                            .into(),
                    ));
                }
            }
            EmailService::Maildir | EmailService::Ses => {}
        }
        check_base_url(&self.flyte_notify.sendgrid.base_url)
            .map_err(|message| invalid("flyteNotify.sendgrid.baseUrl", message))?;
        let svc = &self.flyte_notify;
        svc.auth
            .validate()
            .map_err(|(key, message)| invalid(&key, message))?;
        channels::validate(&svc.slack, &svc.pagerduty, &svc.webhooks)
            .map_err(|(key, message)| invalid(&key, message))?;
        svc.grouping
            .email
            .validate("flyteNotify.grouping.email")
            .map_err(|(key, message)| invalid(&key, message))?;
        svc.console
            .validate(&svc.auth)
            .map_err(|(key, message)| invalid(&key, message))?;
        let destinations: Vec<&str> = svc
            .webhooks
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        flyte2::validate(
            &svc.delivery_configs,
            &svc.rules,
            &svc.flyte2,
            &destinations,
        )
        .map_err(|(key, message)| invalid(&key, message))?;
        check_base_url(&svc.slack.api_base_url)
            .map_err(|message| invalid("flyteNotify.slack.apiBaseUrl", message))?;
        check_base_url(&svc.pagerduty.events_url)
            .map_err(|message| invalid("flyteNotify.pagerduty.eventsUrl", message))?;
        if !self.notifications.emailer.sender.is_empty()
            && self
                .notifications
                .emailer
                .sender
                .parse::<lettre::message::Mailbox>()
                .is_err()
        {
            return Err(invalid(
                "notifications.emailer.sender",
                format!(
                    "{:?} is not an email address",
                    self.notifications.emailer.sender
                ),
            ));
        }
        let svc = &self.flyte_notify;
        if let Some(url) = &svc.aws.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "flyteNotify.aws.endpointUrl",
                "must start with http:// or https://".into(),
            ));
        }
        let url = &svc.console_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "flyteNotify.consoleUrl",
                "must start with http:// or https://".into(),
            ));
        }
        if svc.retry.max_attempts == 0 {
            return Err(invalid(
                "flyteNotify.retry.maxAttempts",
                "must be at least 1".into(),
            ));
        }
        if svc.retry.base_delay.is_zero() || svc.retry.base_delay > svc.retry.max_delay {
            return Err(invalid(
                "flyteNotify.retry.baseDelay",
                "must be greater than zero and at most maxDelay".into(),
            ));
        }
        if svc.worker.concurrency == 0 {
            return Err(invalid(
                "flyteNotify.worker.concurrency",
                "must be at least 1".into(),
            ));
        }
        if !svc.worker.enabled && svc.store != Store::Postgres {
            return Err(invalid(
                "flyteNotify.worker.enabled",
                "false needs store: postgres, where other replicas send what this one accepts; \
                 with the embedded store nothing would ever be sent"
                    .into(),
            ));
        }
        self.validate_expectations()?;
        let tls = &svc.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "flyteNotify.tls",
                "certFile and keyFile go together".into(),
            ));
        }
        if tls.client_ca_file.is_some() && tls.cert_file.is_none() {
            return Err(invalid(
                "flyteNotify.tls.clientCaFile",
                "client certificates need TLS: set certFile and keyFile too".into(),
            ));
        }
        // Zero would spin a core (pollInterval), fail every send at once (sendTimeout), or cut
        // every drain short (shutdownGrace).
        for (key, value) in [
            ("flyteNotify.worker.pollInterval", svc.worker.poll_interval),
            ("flyteNotify.worker.sendTimeout", svc.worker.send_timeout),
            ("flyteNotify.shutdownGrace", svc.shutdown_grace),
            ("flyteNotify.retry.maxDelay", svc.retry.max_delay),
            (
                "flyteNotify.transport.requestTimeout",
                svc.transport.request_timeout,
            ),
            (
                "flyteNotify.transport.keepaliveInterval",
                svc.transport.keepalive_interval,
            ),
            (
                "flyteNotify.transport.keepaliveTimeout",
                svc.transport.keepalive_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than zero".into()));
            }
        }
        let limits = &svc.limits;
        for (key, value, least) in [
            ("flyteNotify.limits.maxRecipients", limits.max_recipients, 1),
            (
                "flyteNotify.limits.maxNotifications",
                limits.max_notifications,
                1,
            ),
            (
                "flyteNotify.limits.maxTemplateBytes",
                limits.max_template_bytes,
                1,
            ),
            (
                "flyteNotify.limits.maxRequestBytes",
                limits.max_request_bytes,
                1024,
            ),
            (
                "flyteNotify.limits.maxRenderedBytes",
                limits.max_rendered_bytes,
                1024,
            ),
            ("flyteNotify.limits.maxSilences", limits.max_silences, 1),
            (
                "flyteNotify.limits.maxSilenceCommentBytes",
                limits.max_silence_comment_bytes,
                1,
            ),
        ] {
            if value < least {
                return Err(invalid(key, format!("must be at least {least}")));
            }
        }
        for (key, value) in [
            (
                "notifications.reconnectAttempts",
                self.notifications.reconnect_attempts,
            ),
            (
                "notifications.reconnectDelaySeconds",
                self.notifications.reconnect_delay_seconds,
            ),
        ] {
            if value < 0 {
                return Err(invalid(key, "must not be negative".into()));
            }
        }
        Ok(())
    }

    /// Things that are valid but that an operator may not expect, for the start-up log and
    /// check-config.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.flyte_notify.console_url.is_empty() && self.notifications.emailer.body.is_empty() {
            notes.push(
                "flyteNotify.consoleUrl is not set, so the built-in email carries no link to the \
                 execution; set it to the Flyte console's address, e.g. \
                 https://flyte.example.com/console"
                    .to_string(),
            );
        }
        notes
    }

    /// How email leaves: `serviceName` when set, else what FlyteAdmin picks for the queue type
    /// (with `type: aws`, SES: that arm comes with the AWS queue).
    pub fn email_service(&self) -> EmailService {
        match (
            self.notifications.emailer.email_server_config.service_name,
            self.notifications.queue_type,
        ) {
            (Some(service), _) => service,
            (None, QueueType::Embedded) => EmailService::Maildir,
            // FlyteAdmin's choice: on AWS with no serviceName, SES.
            (None, QueueType::Aws) => EmailService::Ses,
            // FlyteAdmin on GCP sends by SendGrid; its key is then required.
            (None, QueueType::Gcp) => EmailService::Sendgrid,
        }
    }

    /// `aws.region`, else FlyteAdmin's deprecated top-level `region`; None leaves the region to
    /// the AWS SDK's own chain (AWS_REGION, the profile, instance metadata).
    pub fn aws_region(&self) -> Option<&str> {
        [&self.notifications.aws.region, &self.notifications.region]
            .into_iter()
            .map(|r| r.trim())
            .find(|r| !r.is_empty())
    }

    pub fn smtp_port(&self) -> Result<u16, ConfigError> {
        let port = &self.notifications.emailer.email_server_config.smtp_port;
        if port.is_empty() {
            return Ok(25);
        }
        port.parse().map_err(|_| ConfigError::Invalid {
            key: "notifications.emailer.emailServerConfig.smtpPort".into(),
            message: format!("{port:?} is not a port number"),
        })
    }

    /// The effective config as YAML, with every secret replaced.
    pub fn redacted_yaml(&self) -> String {
        let mut shown = self.clone();
        let server = &mut shown.notifications.emailer.email_server_config;
        // Names of env vars and secret files are not secret; their contents never enter Config.
        // The username is harmless but often an API key for SMTP relays (SendGrid uses "apikey").
        if !server.smtp_username.is_empty() {
            server.smtp_username = "<redacted>".into();
        }
        let dsn = &mut shown.flyte_notify.postgres.dsn;
        if !dsn.is_empty() {
            *dsn = redact_dsn(dsn);
        }
        serde_yaml_ng::to_string(&shown)
            .unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// A PostgreSQL DSN with its password (in the user info or a `password=` parameter) replaced.
fn redact_dsn(dsn: &str) -> String {
    let Ok(mut url) = url::Url::parse(dsn) else {
        return "<redacted: not a URL>".into();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("password") {
                "redacted".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if pairs
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// An http(s) URL with a host and nothing after the path, to which an API path can be appended.
fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = http::Uri::try_from(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if parsed.query().is_some() || url.contains('#') {
        return Err(format!(
            "{url:?}: no query or fragment; the API's path is appended to it"
        ));
    }
    Ok(())
}

/// serde_yaml's message without the key path and position it appends: we print those ourselves,
/// once.
fn bare_message(error: &serde_yaml_ng::Error) -> String {
    let mut text = error.to_string();
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    // "notifications.emailer: unknown field ..." -> "unknown field ...". A path has no spaces.
    if let Some((head, rest)) = text.split_once(": ")
        && !head.contains(' ')
        && !head.is_empty()
    {
        return rest.to_string();
    }
    text
}

/// A file that has neither section configures nothing for flyte-notify: it would run on defaults
/// while the operator believes otherwise. A top-level key one typo away from a section is the
/// likely cause, so it is named.
fn check_sections(document: &serde_yaml_ng::Value, text: &str) -> Result<(), ConfigError> {
    let Some(mapping) = document.as_mapping() else {
        return Err(ConfigError::Parse {
            key: "config".into(),
            message: "expected a mapping of sections such as `notifications:`".into(),
            at: Some((1, 1)),
        });
    };
    let keys: Vec<&str> = mapping.keys().filter_map(|k| k.as_str()).collect();
    for key in &keys {
        if SECTIONS.contains(key) {
            continue;
        }
        if let Some(meant) = nearest(key, &SECTIONS) {
            return Err(ConfigError::Parse {
                key: (*key).to_string(),
                message: format!(
                    "not a section flyte-notify reads; did you mean `{meant}`? (as written it \
                     would be ignored and every {meant} setting left at its default)"
                ),
                at: top_level_line(text, key).map(|line| (line, 1)),
            });
        }
    }
    if !keys.iter().any(|k| SECTIONS.contains(k)) {
        return Err(ConfigError::Parse {
            key: "config".into(),
            message: "has neither a `notifications:` nor a `flyteNotify:` section, so nothing in \
                      it applies to flyte-notify; an empty file runs on the defaults"
                .into(),
            at: None,
        });
    }
    Ok(())
}

/// The line of a top-level key, for the error message (block style: the key starts a line).
fn top_level_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
                || line
                    .strip_prefix(&format!("\"{key}\""))
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.flyte_notify.listen, defaults::listen());
        assert_eq!(
            c.notifications.emailer.email_server_config.service_name,
            None
        );
        assert_eq!(c.email_service(), EmailService::Maildir);
        assert_eq!(c.notifications.queue_type, QueueType::Embedded);
        assert_eq!(c.flyte_notify.store, Store::Sqlite);
    }

    #[test]
    fn reads_a_whole_flyteadmin_config_and_ignores_other_sections() {
        let c = Config::from_yaml(
            r#"
server:
  httpPort: 8088
database:
  postgres: { host: db }
notifications:
  type: sandbox
  emailer:
    subject: "Notice: Execution \"{{ name }}\" has {{ phase }} in \"{{ domain }}\"."
    sender: "flyte-notifications@example.com"
    body: "Execution {{ name }} has {{ phase }}.{{ error }}"
    emailServerConfig:
      serviceName: smtp
      smtpServer: mail.example.com
      smtpPort: "587"
      smtpSkipTLSVerify: true
      smtpUsername: user
      smtpPasswordSecretName: smtp_password
flyteNotify:
  retry: { baseDelay: 100ms, maxDelay: 1s, maxAttempts: 3 }
"#,
        )
        .unwrap();
        assert_eq!(c.smtp_port().unwrap(), 587);
        assert!(
            c.notifications
                .emailer
                .email_server_config
                .smtp_skip_tls_verify
        );
        assert_eq!(c.flyte_notify.retry.max_attempts, 3);
        assert_eq!(c.flyte_notify.retry.base_delay, Duration::from_millis(100));
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = Config::from_yaml("notifications:\n  emailer:\n    subjekt: x\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("notifications.emailer"), "{text}");
        assert!(text.contains("subjekt"), "{text}");
        let err = Config::from_yaml("flyteNotify:\n  retry:\n    attempts: 3\n").unwrap_err();
        assert!(err.to_string().contains("flyteNotify.retry"), "{err}");
        assert!(err.to_string().contains("attempts"), "{err}");
    }

    #[test]
    fn smtp_needs_a_server_and_a_numeric_port() {
        let err = Config::from_yaml(
            "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: smtp\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("smtpServer"), "{err}");
        let err = Config::from_yaml(
            "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: smtp\n      smtpServer: h\n      smtpPort: abc\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("smtpPort"), "{err}");
    }

    #[test]
    fn a_replica_that_does_not_send_needs_others_on_postgres_to_send_for_it() {
        let err = Config::from_yaml("flyteNotify:\n  worker: { enabled: false }\n").unwrap_err();
        assert!(
            err.to_string().contains("flyteNotify.worker.enabled"),
            "{err}"
        );
        let c =
            Config::from_yaml("flyteNotify:\n  store: postgres\n  worker: { enabled: false }\n")
                .unwrap();
        assert!(!c.flyte_notify.worker.enabled);
        assert!(Config::from_yaml("").unwrap().flyte_notify.worker.enabled);
    }

    #[test]
    fn zero_durations_and_counts_are_refused_with_their_key() {
        for (yaml, key) in [
            (
                "flyteNotify:\n  worker: { pollInterval: 0s }\n",
                "pollInterval",
            ),
            (
                "flyteNotify:\n  worker: { sendTimeout: 0ms }\n",
                "sendTimeout",
            ),
            ("flyteNotify:\n  shutdownGrace: 0s\n", "shutdownGrace"),
            // The earlier name still works, and is refused under the name it is known by now.
            ("flyteNotify:\n  shutdownDeadline: 0s\n", "shutdownGrace"),
            (
                "flyteNotify:\n  limits: { maxRecipients: 0 }\n",
                "maxRecipients",
            ),
            (
                "flyteNotify:\n  limits: { maxRenderedBytes: 10 }\n",
                "maxRenderedBytes",
            ),
            (
                "notifications:\n  reconnectAttempts: -1\n",
                "reconnectAttempts",
            ),
        ] {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn likely_typos_of_a_section_or_value_are_found_and_other_words_are_not() {
        for typo in [
            "notification",
            "Notifications",
            "notifcations",
            "notificatons",
        ] {
            assert_eq!(nearest(typo, &SECTIONS), Some("notifications"), "{typo}");
        }
        for typo in ["flytenotify", "flyte_notify", "flyte-notify", "flyteNotfy"] {
            assert_eq!(nearest(typo, &SECTIONS), Some("flyteNotify"), "{typo}");
        }
        // The rest of a FlyteAdmin config is not mistaken for ours.
        for other in [
            "server",
            "database",
            "flyteadmin",
            "externalEvents",
            "cloudEvents",
        ] {
            assert_eq!(nearest(other, &SECTIONS), None, "{other}");
        }
        assert_eq!(nearest("smpt", &["smtp", "maildir"]), Some("smtp"));
        // Two edits turn a short word into another word; not a suggestion.
        assert_eq!(nearest("sns", &["local", "sandbox", "aws", "gcp"]), None);
        assert_eq!(nearest("kafka", &["local", "sandbox", "aws", "gcp"]), None);
    }

    #[test]
    fn a_file_of_comments_or_an_empty_mapping_is_all_defaults() {
        for text in ["# nothing yet\n", "{}\n", "---\n"] {
            let c = Config::from_yaml(text).unwrap();
            assert_eq!(c.flyte_notify.listen, defaults::listen(), "{text:?}");
        }
    }

    #[test]
    fn service_names_take_any_case_and_an_empty_one_follows_the_queue_type() {
        let service = |name: &str| {
            Config::from_yaml(&format!(
                "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: \"{name}\"\n      apiKeyEnvVar: K\n      smtpServer: h\n"
            ))
            .map(|c| c.email_service())
        };
        assert_eq!(service("SendGrid").unwrap(), EmailService::Sendgrid);
        assert_eq!(service("ses").unwrap(), EmailService::Ses);
        assert_eq!(service("SMTP").unwrap(), EmailService::Smtp);
        assert_eq!(service("Maildir").unwrap(), EmailService::Maildir);
        assert_eq!(service("").unwrap(), EmailService::Maildir);
        let e = service("sendgird").unwrap_err().to_string();
        assert!(e.contains("did you mean sendgrid?"), "{e}");
        assert!(e.contains("serviceName"), "{e}");
        let e = service("sse").unwrap_err().to_string();
        assert!(e.contains("did you mean ses?"), "{e}");
        let e = service("aws").unwrap_err().to_string();
        assert!(e.contains("serviceName: ses"), "{e}");
        let c = Config::from_yaml(
            "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName:\n",
        )
        .unwrap();
        assert_eq!(c.email_service(), EmailService::Maildir);
    }

    #[test]
    fn sendgrid_needs_a_key_source_and_a_usable_base_url() {
        let sendgrid =
            "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: sendgrid\n";
        let e = Config::from_yaml(sendgrid).unwrap_err().to_string();
        assert!(
            e.contains("apiKeyEnvVar") && e.contains("apiKeyFilePath"),
            "{e}"
        );
        let c = Config::from_yaml(&format!("{sendgrid}      apiKeyFilePath: /k\n")).unwrap();
        assert_eq!(c.flyte_notify.sendgrid.base_url, "https://api.sendgrid.com");
        for (url, ok) in [
            ("https://api.eu.sendgrid.com", true),
            ("http://127.0.0.1:8025/", true),
            ("api.sendgrid.com", false),
            ("ftp://api.sendgrid.com", false),
            ("https://", false),
            ("https://h/?x=1", false),
            ("not a url", false),
        ] {
            let yaml = format!("flyteNotify:\n  sendgrid: {{ baseUrl: \"{url}\" }}\n");
            let result = Config::from_yaml(&yaml);
            assert_eq!(result.is_ok(), ok, "{url}: {:?}", result.err());
            if let Err(e) = result {
                assert!(
                    e.to_string().contains("flyteNotify.sendgrid.baseUrl"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn the_aws_region_falls_back_to_flyteadmins_deprecated_key() {
        let region = |yaml: &str| {
            Config::from_yaml(yaml)
                .unwrap()
                .aws_region()
                .map(String::from)
        };
        assert_eq!(
            region("notifications:\n  region: eu-west-1\n  aws: { region: us-east-2 }\n"),
            Some("us-east-2".into())
        );
        assert_eq!(
            region("notifications:\n  region: eu-west-1\n"),
            Some("eu-west-1".into())
        );
        assert_eq!(region("notifications:\n  type: local\n"), None);
    }

    #[test]
    fn redaction_hides_the_postgres_password() {
        let c = Config::from_yaml(
            "flyteNotify:\n  store: postgres\n  postgres: { dsn: \"postgres://u:hunter2@db:5432/fn?sslmode=require&password=x2\" }\n",
        )
        .unwrap();
        let shown = c.redacted_yaml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("x2"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://u:redacted@db:5432/fn"),
            "{shown}"
        );
    }

    #[test]
    fn redaction_hides_the_smtp_username() {
        let c = Config::from_yaml(
            "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: smtp\n      smtpServer: h\n      smtpUsername: secret-user\n",
        )
        .unwrap();
        let y = c.redacted_yaml();
        assert!(!y.contains("secret-user"), "{y}");
        assert!(y.contains("<redacted>"), "{y}");
    }
}

//! Several `flyte-notify serve` replicas on one PostgreSQL database (issue #11): their config, a
//! caller that fails over from a replica that is down to another one, and what a mail sink
//! received, counted by delivery (every attempt of a delivery carries the same Message-ID,
//! `<delivery-id.flyte-notify@domain>`, so a second receipt is a duplicate send).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use flyte_notify::proto::flytenotify::v1::notification_service_client::NotificationServiceClient;
use flyte_notify::proto::flytenotify::v1::{EnqueueRequest, EnqueueResponse};
use tonic::transport::{Channel, Endpoint};

/// A replica that sends by SMTP to 127.0.0.1:`smtp_port`, with its ledger on PostgreSQL: at `dsn`
/// when given, else wherever FLYTE_NOTIFY_POSTGRES_DSN in its environment says. Retries are
/// quick and many, so that nothing dies of the test's own disturbances (a lease that dies with a
/// replica counts as an attempt).
pub fn smtp_replica_config(smtp_port: u16, dsn: Option<&str>) -> String {
    let postgres = match dsn {
        Some(dsn) => format!("\n  postgres: {{ dsn: \"{dsn}\" }}"),
        None => String::new(),
    };
    format!(
        r#"
notifications:
  emailer:
    sender: flyte@example.com
    subject: "{{{{ name }}}} {{{{ phase }}}}"
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: "{smtp_port}"
flyteNotify:
  store: postgres{postgres}
  retry: {{ baseDelay: 200ms, maxDelay: 2s, maxAttempts: 100 }}
"#
    )
}

/// The delivery id in an email's Message-ID, `<delivery-id.flyte-notify@domain>`.
pub fn delivery_id_of(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let headers = text.split("\r\n\r\n").next()?.split("\n\n").next()?;
    let value = headers.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("message-id")
            .then(|| value.trim().to_string())
    })?;
    let id = value.strip_prefix('<')?.split(".flyte-notify@").next()?;
    (!id.is_empty() && id.len() < value.len()).then(|| id.to_string())
}

/// What arrived in a Maildir (aiosmtpd's, one file per message received), by delivery id; read
/// incrementally, as ten thousand files are too many to parse on every poll.
pub struct Receipts {
    maildir: PathBuf,
    read: HashSet<OsString>,
    pub by_delivery: HashMap<String, usize>,
    /// Messages without a Message-ID of ours.
    pub foreign: Vec<PathBuf>,
}

impl Receipts {
    pub fn new(maildir: &Path) -> Self {
        Self {
            maildir: maildir.to_owned(),
            read: HashSet::new(),
            by_delivery: HashMap::new(),
            foreign: Vec::new(),
        }
    }

    /// Reads what arrived since the last call.
    pub fn refresh(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if self.read.contains(&name) {
                continue;
            }
            // aiosmtpd writes into tmp/ and renames into new/: what is here is complete.
            let raw = std::fs::read(entry.path()).expect("read a received message");
            match delivery_id_of(&raw) {
                Some(id) => *self.by_delivery.entry(id).or_insert(0) += 1,
                None => self.foreign.push(entry.path()),
            }
            self.read.insert(name);
        }
    }

    /// Messages received in all.
    pub fn messages(&self) -> usize {
        self.read.len()
    }

    /// Of `ids`, those not received yet.
    pub fn missing<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        ids.into_iter()
            .filter(|id| !self.by_delivery.contains_key(*id))
            .cloned()
            .collect()
    }

    /// Deliveries received more than once, with how many times.
    pub fn duplicates(&self) -> Vec<(String, usize)> {
        let mut dups: Vec<(String, usize)> = self
            .by_delivery
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (id.clone(), *n))
            .collect();
        dups.sort();
        dups
    }
}

/// The replicas as a caller sees them: a channel to each one that is up, None while it is down.
/// Callers go to the replica they are given and, when it does not answer, to the next.
pub struct Endpoints {
    channels: RwLock<Vec<Option<Channel>>>,
}

/// How one Enqueue went, through failures.
#[derive(Debug, Default, Clone)]
pub struct Placed {
    pub response: EnqueueResponse,
    /// The codes of the calls that failed before one answered (a replica down, or killed
    /// mid-call).
    pub failures: Vec<tonic::Code>,
    /// The last of those failures.
    pub last_error: Option<String>,
}

/// How long a call may take before the caller gives up on that replica and asks another. Far
/// above what an Enqueue takes, so it only ends calls to a replica that stopped answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

impl Endpoints {
    pub fn new(count: usize) -> Self {
        Self {
            channels: RwLock::new(vec![None; count]),
        }
    }

    pub fn len(&self) -> usize {
        self.channels.read().unwrap().len()
    }

    /// Replica `index` is up at `url`; None: it is down.
    pub fn set(&self, index: usize, url: Option<String>) {
        let channel = url.map(|url| {
            Endpoint::from_shared(url)
                .unwrap()
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy()
        });
        self.channels.write().unwrap()[index] = channel;
    }

    pub fn client(&self, index: usize) -> Option<NotificationServiceClient<Channel>> {
        self.channels.read().unwrap()[index]
            .clone()
            .map(NotificationServiceClient::new)
    }

    /// Enqueues `request` on replica `first`, or on the next one that answers, again and again
    /// with the same request_id until one accepts it (the ledger makes the retries idempotent).
    /// An answer that the request itself is wrong ends it; so does `give_up` passing without one.
    pub async fn enqueue(
        &self,
        request: EnqueueRequest,
        first: usize,
        give_up: Duration,
    ) -> Result<Placed, String> {
        let deadline = Instant::now() + give_up;
        let mut placed = Placed::default();
        let count = self.len();
        for turn in 0.. {
            let index = (first + turn) % count;
            if turn > 0 && index == first {
                // Every replica was tried: give the ones restarting a moment.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not accepted within {give_up:?}: {} failed calls, the last: {:?}",
                    request.request_id,
                    placed.failures.len(),
                    placed.last_error
                ));
            }
            let Some(mut client) = self.client(index) else {
                continue;
            };
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(CALL_TIMEOUT);
            match client.enqueue(call).await {
                Ok(response) => {
                    placed.response = response.into_inner();
                    return Ok(placed);
                }
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::AlreadyExists
                            | tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                    ) =>
                {
                    return Err(format!("{} refused: {status:?}", request.request_id));
                }
                Err(status) => {
                    placed.failures.push(status.code());
                    placed.last_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
        unreachable!()
    }
}

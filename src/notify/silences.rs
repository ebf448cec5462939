//! Silences: an operator's matcher (ListPending's filter syntax) and time window during which
//! matching deliveries are not sent. They live in the ledger, so every replica applies them; each
//! replica keeps the ones not yet ended in memory ([`ActiveSilences`]), refreshed from the ledger
//! every second and at once after a create or expire on this replica, so that the worker decides
//! without a query per delivery. The ledger checks again, by its own clock, when it records a
//! delivery silenced.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::{Notifier, timestamp};
use crate::error::{Error, FieldViolation};
use crate::ledger::filters::{self, Filter, Subject};
use crate::ledger::{CreatedSilence, Ledger, Millis, NewSilence, Silence, SilenceState};
use crate::proto::flytenotify::v1 as api;

/// How long ended silences stay listed (ListSilences with include_expired) before they are removed.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often each replica reloads the silences and settles the ended ones.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Bytes of a silence's creator.
pub const MAX_CREATED_BY_BYTES: usize = 256;
/// Silence ids are UUIDs; anything much longer is not one.
const MAX_ID_BYTES: usize = 128;

struct Cached {
    id: String,
    starts_at: Millis,
    ends_at: Millis,
    filters: Vec<Filter>,
}

/// This replica's copy of the silences that have not ended.
#[derive(Default)]
pub struct ActiveSilences {
    silences: RwLock<Arc<Vec<Cached>>>,
}

fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

impl ActiveSilences {
    /// Reloads from the ledger. A matcher that no longer parses (stored by another version) is
    /// left out and logged, and the others apply.
    pub async fn refresh(&self, ledger: &dyn Ledger) -> Result<(), crate::ledger::LedgerError> {
        let silences = ledger.list_silences(false).await?;
        let cached = silences
            .into_iter()
            .filter_map(|s| match filters::parse_matcher(&s.matcher) {
                Ok(filters) => Some(Cached {
                    id: s.id,
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    filters,
                }),
                Err(e) => {
                    tracing::error!(silence = %s.id, error = %e, "a stored silence's matcher cannot be read; it does not apply");
                    None
                }
            })
            .collect();
        *self.silences.write().expect("silences lock poisoned") = Arc::new(cached);
        Ok(())
    }

    /// Whether any silence is kept (the worker looks no further when none is).
    pub fn is_empty(&self) -> bool {
        self.silences
            .read()
            .expect("silences lock poisoned")
            .is_empty()
    }

    /// The id of an active silence that matches, if any.
    pub fn matching(&self, subject: &Subject<'_>) -> Option<String> {
        let silences = self
            .silences
            .read()
            .expect("silences lock poisoned")
            .clone();
        let now = now_millis();
        silences
            .iter()
            .find(|s| {
                s.starts_at <= now && now < s.ends_at && filters::matches(&s.filters, subject)
            })
            .map(|s| s.id.clone())
    }

    /// Every `REFRESH` until `shutdown`: settles the silences that ended (any replica may; the
    /// ledger makes it happen once) and reloads.
    pub async fn run(
        self: Arc<Self>,
        ledger: Arc<dyn Ledger>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failing = false;
        loop {
            let result = async {
                let settled = ledger.settle_silences(RETENTION).await?;
                if settled.released > 0 {
                    tracing::info!(
                        released = settled.released,
                        "deliver_after silences ended; the deliveries they held are pending again"
                    );
                }
                self.refresh(ledger.as_ref()).await
            }
            .await;
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("silences are read from the ledger again");
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read silences from the ledger; the last ones read apply meanwhile");
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn millis_of(t: &prost_types::Timestamp) -> Millis {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos.clamp(0, 999_999_999)) / 1_000_000)
}

fn to_api_silence(s: Silence) -> api::Silence {
    api::Silence {
        id: s.id,
        matcher: s.matcher,
        starts_at: Some(timestamp(s.starts_at)),
        ends_at: Some(timestamp(s.ends_at)),
        created_by: s.created_by,
        comment: s.comment,
        deliver_after: s.deliver_after,
        state: match s.state {
            SilenceState::Pending => api::silence::State::Pending,
            SilenceState::Active => api::silence::State::Active,
            SilenceState::Expired => api::silence::State::Expired,
        } as i32,
        created_at: Some(timestamp(s.created_at)),
    }
}

impl Notifier {
    pub async fn create_silence(
        &self,
        r: api::CreateSilenceRequest,
    ) -> Result<api::CreateSilenceResponse, Error> {
        let Some(s) = r.silence else {
            return Err(Error::InvalidArgument(vec![FieldViolation::new(
                "silence",
                "is required",
            )]));
        };
        let now = now_millis();
        let mut bad = Vec::new();
        if let Err(e) = filters::parse_matcher(&s.matcher) {
            bad.push(FieldViolation::new("silence.matcher", e));
        }
        let max_comment = self.limits.max_silence_comment_bytes;
        if s.comment.trim().is_empty() {
            bad.push(FieldViolation::new(
                "silence.comment",
                "is required: say why, e.g. \"maintenance window, INC-1234\"",
            ));
        } else if s.comment.len() > max_comment {
            bad.push(FieldViolation::new(
                "silence.comment",
                format!(
                    "{} bytes; at most {max_comment} (flyteNotify.limits.maxSilenceCommentBytes)",
                    s.comment.len()
                ),
            ));
        }
        if s.created_by.len() > MAX_CREATED_BY_BYTES {
            bad.push(FieldViolation::new(
                "silence.created_by",
                format!(
                    "{} bytes; at most {MAX_CREATED_BY_BYTES}",
                    s.created_by.len()
                ),
            ));
        }
        let starts_at = s.starts_at.as_ref().map(millis_of).unwrap_or(now);
        match s.ends_at.as_ref().map(millis_of) {
            None => bad.push(FieldViolation::new("silence.ends_at", "is required")),
            Some(ends_at) if ends_at <= starts_at => bad.push(FieldViolation::new(
                "silence.ends_at",
                "must be after starts_at",
            )),
            Some(ends_at) if ends_at <= now => {
                bad.push(FieldViolation::new("silence.ends_at", "is in the past"))
            }
            Some(_) => {}
        }
        if !bad.is_empty() {
            return Err(Error::InvalidArgument(bad));
        }
        let new = NewSilence {
            id: uuid::Uuid::now_v7().to_string(),
            matcher: s.matcher.trim().to_string(),
            starts_at,
            ends_at: s.ends_at.as_ref().map(millis_of).unwrap_or(now),
            created_by: s.created_by,
            comment: s.comment,
            deliver_after: s.deliver_after,
        };
        let max = u32::try_from(self.limits.max_silences).unwrap_or(u32::MAX);
        match self.ledger.create_silence(new, max).await? {
            CreatedSilence::Created(silence) => {
                self.refresh_silences().await;
                tracing::info!(silence = %silence.id, matcher = %silence.matcher, "silence created");
                Ok(api::CreateSilenceResponse {
                    silence: Some(to_api_silence(silence)),
                })
            }
            CreatedSilence::TooMany(open) => {
                Err(Error::InvalidArgument(vec![FieldViolation::new(
                    "silence",
                    format!(
                        "{open} silences have not ended yet; at most {max} \
                     (flyteNotify.limits.maxSilences): expire some first"
                    ),
                )]))
            }
        }
    }

    pub async fn list_silences(
        &self,
        r: api::ListSilencesRequest,
    ) -> Result<api::ListSilencesResponse, Error> {
        let silences = self.ledger.list_silences(r.include_expired).await?;
        Ok(api::ListSilencesResponse {
            silences: silences.into_iter().map(to_api_silence).collect(),
        })
    }

    pub async fn expire_silence(
        &self,
        r: api::ExpireSilenceRequest,
    ) -> Result<api::ExpireSilenceResponse, Error> {
        let id = r.silence_id.trim();
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(Error::InvalidArgument(vec![FieldViolation::new(
                "silence_id",
                "is required: a silence id from ListSilences",
            )]));
        }
        let Some(silence) = self.ledger.expire_silence(id).await? else {
            return Err(Error::NotFound(format!("no silence {id:?}")));
        };
        self.refresh_silences().await;
        tracing::info!(silence = %silence.id, "silence expired");
        Ok(api::ExpireSilenceResponse {
            silence: Some(to_api_silence(silence)),
        })
    }

    /// This replica applies its own change at once; the others within `REFRESH`.
    async fn refresh_silences(&self) {
        if let Err(e) = self.silences.refresh(self.ledger.as_ref()).await {
            tracing::warn!(error = %e, "cannot reload silences; they apply within a second");
        }
    }
}

//! Deliveries that went out recently, newest first, within the caller's permissions: what the
//! console shows beside ListPending, which lists only the deliveries still open.

use std::time::Duration;

use super::{Notifier, timestamp, to_api_delivery};
use crate::error::{Error, FieldViolation};
use crate::ledger::{self, DeliveredCursor, FilterField, MAX_RECENT, RecentQuery};
use crate::proto::flytenotify::v1 as api;

/// Rows when `RecentRequest::limit` is 0; at most `ledger::MAX_RECENT`.
pub const DEFAULT_RECENT: u32 = 50;
/// How far back when `RecentRequest::within` is zero.
pub const DEFAULT_RECENT_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// The ledger reads every event in the window when the filters match few rows, so the window,
/// not the ledger's size, bounds one call's work.
pub const MAX_RECENT_WITHIN: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Default)]
pub struct RecentRequest {
    /// 0 means `DEFAULT_RECENT`; at most `ledger::MAX_RECENT`.
    pub limit: u32,
    /// Deliveries delivered within this long before now; zero means `DEFAULT_RECENT_WITHIN`, at
    /// most `MAX_RECENT_WITHIN`.
    pub within: Duration,
    /// ListPending's filter syntax on project, domain, name and channel.
    pub filters: String,
    /// The previous answer's `token`; empty for the newest page.
    pub token: String,
}

/// A delivery that went out, as ListPending shows a delivery, and when it went out.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub delivery: api::Delivery,
    pub delivered_at: prost_types::Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentDeliveries {
    /// Newest first; a delivery that went out more than once appears once, at its last time.
    pub deliveries: Vec<Delivered>,
    /// Pass as `RecentRequest::token` for older ones; empty on the last page.
    pub token: String,
}

impl Notifier {
    /// Deliveries delivered within `request.within`, newest first. Only those within `scope`
    /// are listed, by a term of the ledger query itself, as in `list_pending`, so that pages
    /// stay full and tokens stay valid.
    pub async fn recently_delivered(
        &self,
        request: RecentRequest,
        scope: &crate::authz::Scope,
    ) -> Result<RecentDeliveries, Error> {
        let mut violations = Vec::new();
        let limit = match request.limit {
            0 => DEFAULT_RECENT,
            n if n > MAX_RECENT => {
                violations.push(FieldViolation::new(
                    "limit",
                    format!("at most {MAX_RECENT}"),
                ));
                n
            }
            n => n,
        };
        let within = match request.within {
            Duration::ZERO => DEFAULT_RECENT_WITHIN,
            w if w > MAX_RECENT_WITHIN => {
                violations.push(FieldViolation::new(
                    "within",
                    format!("at most {} hours", MAX_RECENT_WITHIN.as_secs() / 3600),
                ));
                w
            }
            w => w,
        };
        let before = if request.token.is_empty() {
            None
        } else {
            match DeliveredCursor::decode(&request.token) {
                Ok(cursor) => Some(cursor),
                Err(message) => {
                    violations.push(FieldViolation::new("token", message));
                    None
                }
            }
        };
        let filters = match ledger::filters::parse(&request.filters) {
            // Every row here is delivered, a state ListPending's filters cannot name: a state
            // term would only ever list nothing.
            Ok(f) if f.iter().any(|f| f.field == FilterField::State) => {
                violations.push(FieldViolation::new(
                    "filters",
                    "these are all delivered; filter by project, domain, name or channel",
                ));
                Vec::new()
            }
            Ok(mut f) => {
                f.extend(scope.filter());
                f
            }
            Err(message) => {
                violations.push(FieldViolation::new("filters", message));
                Vec::new()
            }
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        // This process's clock: `within` is the viewer's "last N hours", and a replica's skew
        // only moves the window's far edge, never which rows are delivered.
        let now = chrono::Utc::now().timestamp_millis();
        let since = now.saturating_sub(i64::try_from(within.as_millis()).unwrap_or(i64::MAX));
        let page = self
            .ledger
            .recently_delivered(RecentQuery {
                limit,
                since,
                before,
                filters,
            })
            .await?;
        Ok(RecentDeliveries {
            deliveries: page
                .deliveries
                .into_iter()
                .map(|row| Delivered {
                    delivered_at: timestamp(row.delivered_at),
                    delivery: to_api_delivery(row.delivery),
                })
                .collect(),
            token: page.next.map(|c| c.encode()).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::authz::Scope;
    use crate::delivery::{Channel, Content, Outcome, Payload};
    use crate::ledger::sqlite::SqliteLedger;
    use crate::ledger::{ExecutionKey, Ledger, NewDelivery, NewRequest};
    use crate::notify::render::Renderer;
    use crate::queue::embedded::EmbeddedQueue;

    async fn delivered(ledger: &dyn Ledger, project: &str, id: &str) {
        ledger
            .accept(NewRequest {
                request_id: format!("r-{id}"),
                fingerprint: "fp".into(),
                unmatched: 0,
                execution_key: ExecutionKey {
                    project: project.into(),
                    domain: "development".into(),
                    name: format!("e-{id}"),
                    org: String::new(),
                },
                execution: Vec::new(),
                deliveries: vec![NewDelivery {
                    id: id.into(),
                    notification_index: 0,
                    phase: 6,
                    payload: Payload {
                        channel: Channel::Email,
                        recipients: vec!["a@example.com".into()],
                        content: Content::Template("t".into()),
                    },
                    group: None,
                }],
                due_in: Duration::ZERO,
                disarms_deadlines: false,
            })
            .await
            .unwrap();
        let leased = ledger.lease_due(1, Duration::from_secs(60)).await.unwrap();
        ledger
            .record(vec![(leased[0].delivery.clone(), Outcome::Delivered)])
            .await
            .unwrap();
        // The next one goes out at a later millisecond.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    fn violated(result: Result<RecentDeliveries, Error>) -> Vec<String> {
        match result {
            Err(Error::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn lists_within_the_scope_pages_by_token_and_names_what_it_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let ledger: Arc<dyn Ledger> = Arc::new(
            SqliteLedger::open(&dir.path().join("ledger.sqlite"))
                .await
                .unwrap(),
        );
        let queue = Arc::new(EmbeddedQueue::new(ledger.clone(), Duration::from_secs(60)));
        let renderer = Arc::new(Renderer {
            subject: String::new(),
            body: String::new(),
            sender: String::new(),
            console_url: String::new(),
            max_rendered_bytes: 1 << 20,
        });
        let notifier = Notifier::new(ledger.clone(), queue, renderer, Default::default());
        delivered(&*ledger, "alpha", "a1").await;
        delivered(&*ledger, "beta", "b1").await;
        delivered(&*ledger, "alpha", "a2").await;

        let ids = |r: &RecentDeliveries| {
            r.deliveries
                .iter()
                .map(|d| d.delivery.id.clone())
                .collect::<Vec<_>>()
        };
        let all = notifier
            .recently_delivered(RecentRequest::default(), &Scope::All)
            .await
            .unwrap();
        assert_eq!(ids(&all), ["a2", "b1", "a1"]);
        assert!(all.token.is_empty());
        let first = &all.deliveries[0];
        assert_eq!(first.delivery.state, api::DeliveryState::Delivered as i32);
        assert_eq!(first.delivery.recipients, ["a@example.com"]);
        let at = |d: &Delivered| (d.delivered_at.seconds, d.delivered_at.nanos);
        assert!(at(first) >= at(&all.deliveries[1]));

        let alpha = Scope::Within(vec![(Some("alpha".into()), None)]);
        let mut request = RecentRequest {
            limit: 1,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = notifier
                .recently_delivered(request.clone(), &alpha)
                .await
                .unwrap();
            seen.extend(ids(&page));
            if page.token.is_empty() {
                break;
            }
            request.token = page.token;
        }
        assert_eq!(seen, ["a2", "a1"]);
        let filtered = RecentRequest {
            filters: "eq(project,beta)".into(),
            ..Default::default()
        };
        assert!(
            notifier
                .recently_delivered(filtered.clone(), &alpha)
                .await
                .unwrap()
                .deliveries
                .is_empty()
        );
        assert_eq!(
            ids(&notifier
                .recently_delivered(filtered, &Scope::All)
                .await
                .unwrap()),
            ["b1"]
        );

        let refused = notifier
            .recently_delivered(
                RecentRequest {
                    limit: MAX_RECENT + 1,
                    within: MAX_RECENT_WITHIN + Duration::from_secs(1),
                    filters: "eq(state,dead)".into(),
                    token: "nope".into(),
                },
                &Scope::All,
            )
            .await;
        assert_eq!(violated(refused), ["limit", "within", "token", "filters"]);
        // A ListPending token is not one of these.
        let pending_token = ledger::PageToken::After { seq: 1 }.encode();
        let refused = notifier
            .recently_delivered(
                RecentRequest {
                    token: pending_token,
                    ..Default::default()
                },
                &Scope::All,
            )
            .await;
        assert_eq!(violated(refused), ["token"]);
        ledger.close().await;
    }
}

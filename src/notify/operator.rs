//! What an operator does about deliveries that died: look at one and its history, put dead ones
//! back to pending once the cause is fixed, or set them aside for good.

use super::{Notifier, timestamp, to_api_delivery};
use crate::authz::Scope;
use crate::error::{Error, FieldViolation};
use crate::ledger::{self, Acted, EventKind, OperatorAction, Selection, Skip};
use crate::proto::flytenotify::v1 as api;
use crate::queue::Announcement;

/// Ids one call may name.
pub const MAX_IDS: usize = 1000;
/// Deliveries one filtered call changes when it names no limit, and the most it may name.
pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 10_000;
/// Bytes of the note kept in every selected delivery's history.
pub const MAX_NOTE_BYTES: usize = 1024;
/// Delivery ids are UUIDs; anything much longer is not one.
const MAX_ID_BYTES: usize = 128;

/// Redrive's and Discard's shared request shape.
struct ActRequest {
    delivery_ids: Vec<String>,
    filters: String,
    limit: u32,
    note: String,
}

/// Where the caller may act (`operate`) and look (`read`): a delivery outside `operate` is not
/// changed; one the caller cannot even read is reported as not found, so that its existence and
/// project stay hidden.
pub struct ActScope<'a> {
    pub operate: &'a Scope,
    pub read: &'a Scope,
}

impl Notifier {
    pub async fn redrive(
        &self,
        r: api::RedriveRequest,
        scope: ActScope<'_>,
    ) -> Result<api::RedriveResponse, Error> {
        let request = ActRequest {
            delivery_ids: r.delivery_ids,
            filters: r.filters,
            limit: r.limit,
            note: r.note,
        };
        let acted = self.act(OperatorAction::Redrive, request, scope).await?;
        // The embedded queue polls anyway; a broker-backed one learns of the work only this way.
        if !acted.changed.is_empty()
            && let Err(e) = self
                .queue
                .publish(
                    &acted
                        .changed
                        .iter()
                        .map(Announcement::id)
                        .collect::<Vec<_>>(),
                )
                .await
        {
            tracing::warn!(
                "redriven deliveries are pending, but the queue was not told: {e}; they go out \
                 when it next looks"
            );
        }
        Ok(api::RedriveResponse {
            skipped: skipped(&acted),
            more: acted.more,
            delivery_ids: acted.changed,
        })
    }

    pub async fn discard(
        &self,
        r: api::DiscardRequest,
        scope: ActScope<'_>,
    ) -> Result<api::DiscardResponse, Error> {
        let request = ActRequest {
            delivery_ids: r.delivery_ids,
            filters: r.filters,
            limit: r.limit,
            note: r.note,
        };
        let acted = self.act(OperatorAction::Discard, request, scope).await?;
        Ok(api::DiscardResponse {
            skipped: skipped(&acted),
            more: acted.more,
            delivery_ids: acted.changed,
        })
    }

    /// A delivery outside `read` is NOT_FOUND, with the same message as one that does not exist:
    /// PERMISSION_DENIED would tell a caller that the id exists, and in which project.
    pub async fn get_delivery(
        &self,
        r: api::GetDeliveryRequest,
        read: &Scope,
    ) -> Result<api::GetDeliveryResponse, Error> {
        if r.delivery_id.is_empty() || r.delivery_id.len() > MAX_ID_BYTES {
            return Err(Error::InvalidArgument(vec![FieldViolation::new(
                "delivery_id",
                "required: the id Enqueue or ListPending gave",
            )]));
        }
        let found = self
            .ledger
            .get(&r.delivery_id)
            .await?
            .filter(|(d, _)| read.allows(&d.execution.project, &d.execution.domain));
        let Some((delivery, history)) = found else {
            return Err(Error::NotFound(format!(
                "no delivery {:?} in this ledger",
                r.delivery_id
            )));
        };
        Ok(api::GetDeliveryResponse {
            delivery: Some(to_api_delivery(delivery)),
            history: history
                .into_iter()
                .map(|e| api::DeliveryEvent {
                    at: Some(timestamp(e.at)),
                    kind: event_kind(e.kind) as i32,
                    attempts: e.attempts,
                    detail: e.detail,
                })
                .collect(),
        })
    }

    async fn act(
        &self,
        action: OperatorAction,
        r: ActRequest,
        scope: ActScope<'_>,
    ) -> Result<Acted, Error> {
        let (selection, hidden) = match selection(&r)? {
            Selection::Filter { mut filters, limit } => {
                // In the query, so that `limit` and `more` count only what the caller may change.
                filters.extend(scope.operate.filter());
                (Selection::Filter { filters, limit }, Vec::new())
            }
            Selection::Ids(ids) => self.ids_in_scope(ids, &scope).await?,
        };
        let mut acted = self.ledger.act(action, selection, r.note.clone()).await?;
        acted
            .skipped
            .extend(hidden.into_iter().map(|id| (id, Skip::NotFound)));
        let verb = match action {
            OperatorAction::Redrive => "redrove",
            OperatorAction::Discard => "discarded",
        };
        if !acted.changed.is_empty() {
            tracing::info!(
                count = acted.changed.len(),
                note = %crate::telemetry::log_safe(&[&r.note]),
                "{verb} dead deliveries"
            );
        }
        Ok(acted)
    }
}

impl Notifier {
    /// The ids the caller may operate on, and those it cannot even read (reported as not found).
    /// One it can read but not operate on refuses the call, naming its project.
    async fn ids_in_scope(
        &self,
        ids: Vec<String>,
        scope: &ActScope<'_>,
    ) -> Result<(Selection, Vec<String>), Error> {
        if *scope.operate == Scope::All {
            return Ok((Selection::Ids(ids), Vec::new()));
        }
        let (mut allowed, mut hidden) = (Vec::new(), Vec::new());
        for id in ids {
            let Some((d, _)) = self.ledger.get(&id).await? else {
                // Not there at all: the ledger reports it, in its place in the order.
                allowed.push(id);
                continue;
            };
            let (project, domain) = (&d.execution.project, &d.execution.domain);
            if scope.operate.allows(project, domain) {
                allowed.push(id);
            } else if scope.read.allows(project, domain) {
                return Err(Error::PermissionDenied(format!(
                    "the caller may not operate in {project}/{domain} (delivery {id:?})"
                )));
            } else {
                hidden.push(id);
            }
        }
        Ok((Selection::Ids(allowed), hidden))
    }
}

/// The selection a request names, or every problem with it.
fn selection(r: &ActRequest) -> Result<Selection, Error> {
    let mut violations = Vec::new();
    let by_ids = !r.delivery_ids.is_empty();
    let by_filter = !r.filters.trim().is_empty();
    match (by_ids, by_filter) {
        (false, false) => violations.push(FieldViolation::new(
            "delivery_ids",
            "name the deliveries by id, or select dead ones with filters",
        )),
        (true, true) => violations.push(FieldViolation::new(
            "filters",
            "give delivery_ids or filters, not both",
        )),
        _ => {}
    }
    if r.delivery_ids.len() > MAX_IDS {
        violations.push(FieldViolation::new(
            "delivery_ids",
            format!("at most {MAX_IDS} ids per call"),
        ));
    } else {
        for (i, id) in r.delivery_ids.iter().enumerate() {
            if id.is_empty() || id.len() > MAX_ID_BYTES {
                violations.push(FieldViolation::new(
                    format!("delivery_ids[{i}]"),
                    "not a delivery id",
                ));
            }
        }
    }
    if by_ids && r.limit != 0 {
        violations.push(FieldViolation::new(
            "limit",
            "applies to filters; ids name their own count",
        ));
    }
    if r.limit > MAX_LIMIT {
        violations.push(FieldViolation::new("limit", format!("at most {MAX_LIMIT}")));
    }
    if r.note.len() > MAX_NOTE_BYTES {
        violations.push(FieldViolation::new(
            "note",
            format!("at most {MAX_NOTE_BYTES} bytes"),
        ));
    }
    let filters = match ledger::filters::parse(&r.filters) {
        Ok(filters) => filters,
        Err(message) => {
            violations.push(FieldViolation::new("filters", message));
            Vec::new()
        }
    };
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    Ok(if by_ids {
        Selection::Ids(r.delivery_ids.clone())
    } else {
        Selection::Filter {
            filters,
            limit: if r.limit == 0 { DEFAULT_LIMIT } else { r.limit },
        }
    })
}

/// The reason a skipped delivery gives when it does not exist or the caller may not see it: the
/// console tells that case apart by it.
pub const SKIPPED_NOT_FOUND: &str = "not found";

fn skipped(acted: &Acted) -> Vec<api::SkippedDelivery> {
    acted
        .skipped
        .iter()
        .map(|(id, why)| api::SkippedDelivery {
            delivery_id: id.clone(),
            reason: match why {
                Skip::NotFound => SKIPPED_NOT_FOUND.to_string(),
                Skip::NotDead(state) => format!("not dead: it is {}", state.as_str()),
            },
        })
        .collect()
}

fn event_kind(kind: EventKind) -> api::delivery_event::Kind {
    use api::delivery_event::Kind;
    match kind {
        EventKind::Failed => Kind::Failed,
        EventKind::Dead => Kind::Dead,
        EventKind::Delivered => Kind::Delivered,
        EventKind::Redriven => Kind::Redriven,
        EventKind::Discarded => Kind::Discarded,
        EventKind::Silenced => Kind::Silenced,
        EventKind::Unsilenced => Kind::Unsilenced,
        EventKind::Disarmed => Kind::Disarmed,
    }
}

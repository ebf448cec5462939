//! The core: validate, expand, render, record. It knows the request and response messages but no
//! transport: the gRPC adapter in `api` and the benchmark call it the same way.

pub mod render;
pub mod template;
pub mod validate;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::error::{Error, FieldViolation};
use crate::ledger::{
    self, AcceptOutcome, Channel, ExecutionKey, Ledger, NewDelivery, NewRequest, PendingQuery,
    State, StoredDelivery,
};
use crate::proto::flyteidl::admin::{Notification, notification::Type};
use crate::proto::flytenotify::v1 as api;
use crate::queue::Queue;
use render::{Expanded, Renderer};

/// Page size when ListPendingRequest.limit is 0, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

pub struct Notifier {
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    renderer: Arc<Renderer>,
    limits: Limits,
}

fn channel_of(notification: &Notification) -> Channel {
    match notification.r#type {
        Some(Type::PagerDuty(_)) => Channel::Pagerduty,
        Some(Type::Slack(_)) => Channel::Slack,
        _ => Channel::Email,
    }
}

/// The notifications whose phases contain the execution's phase, and how many did not match.
fn expand<'a>(
    execution: &api::ExecutionContext,
    notifications: &'a [Notification],
) -> (Vec<Expanded<'a>>, u32) {
    let mut matched = Vec::new();
    let mut unmatched = 0;
    for (i, n) in notifications.iter().enumerate() {
        let target = validate::target(n).expect("validated: every notification has a type");
        if n.phases.contains(&execution.phase) {
            matched.push(Expanded {
                index: i as u32,
                channel: channel_of(n),
                recipients: target.recipients,
                template: target.template,
            });
        } else {
            unmatched += 1;
        }
    }
    (matched, unmatched)
}

impl Notifier {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        renderer: Arc<Renderer>,
        limits: Limits,
    ) -> Self {
        Self {
            ledger,
            queue,
            renderer,
            limits,
        }
    }

    fn check(
        &self,
        size: usize,
        execution: Option<&api::ExecutionContext>,
        notifications: &[Notification],
        mut violations: Vec<FieldViolation>,
    ) -> Result<(), Error> {
        validate::request_size(size, &self.limits, &mut violations);
        if violations.is_empty() {
            validate::execution(execution, &mut violations);
            validate::notifications(notifications, &self.limits, &mut violations);
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(violations))
        }
    }

    pub async fn enqueue(
        &self,
        request: api::EnqueueRequest,
    ) -> Result<api::EnqueueResponse, Error> {
        let mut violations = Vec::new();
        validate::request_id(&request.request_id, &mut violations);
        self.check(
            request.encoded_len(),
            request.execution.as_ref(),
            &request.notifications,
            violations,
        )?;
        let execution = request.execution.as_ref().expect("validated");
        let id = execution.execution_id.as_ref().expect("validated");
        let (matched, unmatched) = expand(execution, &request.notifications);

        let request_id = if request.request_id.is_empty() {
            format!("server-{}", uuid::Uuid::now_v7())
        } else {
            request.request_id.clone()
        };
        let fingerprint = content_fingerprint(&request);
        let key = ExecutionKey {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: id.name.clone(),
            org: id.org.clone(),
        };
        let deliveries = matched
            .iter()
            .map(|m| NewDelivery {
                id: uuid::Uuid::now_v7().to_string(),
                notification_index: m.index,
                execution: key.clone(),
                phase: execution.phase,
                payload: stored_payload(execution, m),
            })
            .collect();
        let outcome = self
            .ledger
            .accept(NewRequest {
                request_id: request_id.clone(),
                fingerprint,
                unmatched,
                deliveries,
                created_at: ledger::now_millis(),
            })
            .await?;
        match outcome {
            AcceptOutcome::Accepted { delivery_ids } => {
                for m in &matched {
                    metrics::counter!(crate::telemetry::ACCEPTED, "channel" => m.channel.as_str())
                        .increment(1);
                }
                if !delivery_ids.is_empty()
                    && let Err(e) = self.queue.publish(&delivery_ids).await
                {
                    // Recorded is what counts: the worker finds the rows at its next poll anyway.
                    tracing::warn!(error = %e, %request_id, "could not announce new deliveries");
                }
                tracing::info!(
                    %request_id,
                    execution = %format!("{}/{}/{}", key.project, key.domain, key.name),
                    deliveries = delivery_ids.len(),
                    unmatched,
                    "accepted"
                );
                Ok(api::EnqueueResponse {
                    delivery_ids,
                    unmatched_notifications: unmatched,
                    request_id,
                    duplicate: false,
                })
            }
            AcceptOutcome::Duplicate {
                delivery_ids,
                unmatched,
            } => Ok(api::EnqueueResponse {
                delivery_ids,
                unmatched_notifications: unmatched,
                request_id,
                duplicate: true,
            }),
            AcceptOutcome::Conflict => Err(Error::Conflict(format!(
                "request_id {request_id:?} was already used for a different request; \
                 use a new request_id for new content"
            ))),
        }
    }

    /// Renders exactly what Enqueue would record for the same input. Touches nothing.
    pub fn preview(&self, request: api::PreviewRequest) -> Result<api::PreviewResponse, Error> {
        self.check(
            request.encoded_len(),
            request.execution.as_ref(),
            &request.notifications,
            Vec::new(),
        )?;
        let execution = request.execution.as_ref().expect("validated");
        let (matched, unmatched) = expand(execution, &request.notifications);
        let messages = matched
            .iter()
            .map(|m| {
                let msg = self.renderer.render(execution, m);
                api::RenderedMessage {
                    channel: msg.channel.as_str().to_string(),
                    recipients: msg.recipients,
                    sender: msg.sender,
                    subject: msg.subject,
                    html_body: msg.html_body,
                    text_body: msg.text_body,
                    notification_index: m.index,
                }
            })
            .collect();
        Ok(api::PreviewResponse {
            messages,
            unmatched_notifications: unmatched,
        })
    }

    pub async fn list_pending(
        &self,
        request: api::ListPendingRequest,
    ) -> Result<api::ListPendingResponse, Error> {
        let mut violations = Vec::new();
        let limit = match request.limit {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                violations.push(FieldViolation::new(
                    "limit",
                    format!("at most {MAX_PAGE_SIZE}"),
                ));
                n
            }
            n => n,
        };
        let after_seq = if request.token.is_empty() {
            None
        } else {
            match request.token.parse::<i64>() {
                Ok(seq) if seq >= 0 => Some(seq),
                _ => {
                    violations.push(FieldViolation::new(
                        "token",
                        "not a token this service returned; pass ListPendingResponse.token as it is",
                    ));
                    None
                }
            }
        };
        let filters = match ledger::filters::parse(&request.filters) {
            Ok(f) => f,
            Err(message) => {
                violations.push(FieldViolation::new("filters", message));
                Vec::new()
            }
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let page = self
            .ledger
            .list_pending(PendingQuery {
                limit,
                after_seq,
                filters,
            })
            .await?;
        Ok(api::ListPendingResponse {
            deliveries: page.deliveries.into_iter().map(to_api_delivery).collect(),
            token: page
                .next_after_seq
                .map(|s| s.to_string())
                .unwrap_or_default(),
        })
    }
}

/// What the ledger keeps of one matching notification.
fn stored_payload(execution: &api::ExecutionContext, m: &Expanded<'_>) -> ledger::Payload {
    ledger::Payload::V1 {
        channel: m.channel,
        recipients: m.recipients.to_vec(),
        template: m.template.to_string(),
        execution: BASE64.encode(execution.encode_to_vec()),
    }
}

/// Renders a stored delivery for sending, as Preview rendered it when it was accepted (the same
/// inputs and, unless the config changed since, the same templates).
pub fn render_stored(
    renderer: &Renderer,
    payload: &ledger::Payload,
) -> Result<ledger::Message, String> {
    let ledger::Payload::V1 {
        channel,
        recipients,
        template,
        execution,
    } = payload;
    let bytes = BASE64
        .decode(execution)
        .map_err(|e| format!("stored execution is not base64: {e}"))?;
    let execution = api::ExecutionContext::decode(bytes.as_slice())
        .map_err(|e| format!("stored execution does not decode: {e}"))?;
    Ok(renderer.render(
        &execution,
        &Expanded {
            index: 0,
            channel: *channel,
            recipients,
            template,
        },
    ))
}

fn timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn to_api_delivery(d: StoredDelivery) -> api::Delivery {
    let state = match d.state {
        State::Pending => api::DeliveryState::Pending,
        State::Retrying => api::DeliveryState::Retrying,
        State::Dead => api::DeliveryState::Dead,
        State::Delivered => api::DeliveryState::Unspecified,
    };
    // An unreadable payload (see StoredDelivery::payload) shows no channel or recipients, and
    // says why until an attempt records its own error.
    let (channel, recipients, last_error) = match &d.payload {
        Ok(p) => (
            p.channel().as_str().to_string(),
            p.recipients().to_vec(),
            d.last_error,
        ),
        Err(e) if d.last_error.is_empty() => (String::new(), Vec::new(), e.clone()),
        Err(_) => (String::new(), Vec::new(), d.last_error),
    };
    api::Delivery {
        id: d.id,
        execution_id: Some(crate::proto::flyteidl::core::WorkflowExecutionIdentifier {
            project: d.execution.project,
            domain: d.execution.domain,
            name: d.execution.name,
            org: d.execution.org,
        }),
        channel,
        recipients,
        phase: d.phase,
        state: state as i32,
        attempts: d.attempts,
        next_attempt_at: d
            .next_attempt_at
            .filter(|_| d.state != State::Dead)
            .map(timestamp),
        last_error,
        created_at: Some(timestamp(d.created_at)),
        request_id: d.request_id,
    }
}

/// A digest of everything in the request but its request_id: the same bytes as encoding the
/// request with request_id cleared (fields are encoded in tag order), without copying it.
fn content_fingerprint(request: &api::EnqueueRequest) -> String {
    let mut content = Vec::with_capacity(request.encoded_len());
    if let Some(execution) = &request.execution {
        prost::encoding::message::encode(2, execution, &mut content);
    }
    for notification in &request.notifications {
        prost::encoding::message::encode(3, notification, &mut content);
    }
    hex(&Sha256::digest(&content))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_only_the_request_id() {
        let request = api::EnqueueRequest {
            request_id: "a".into(),
            execution: Some(api::ExecutionContext {
                phase: 6,
                ..Default::default()
            }),
            notifications: vec![Notification::default(), Notification::default()],
        };
        let mut cleared = request.clone();
        cleared.request_id.clear();
        assert_eq!(
            content_fingerprint(&request),
            hex(&Sha256::digest(cleared.encode_to_vec()))
        );
        let mut other = request.clone();
        other.notifications.pop();
        assert_ne!(content_fingerprint(&request), content_fingerprint(&other));
    }
}

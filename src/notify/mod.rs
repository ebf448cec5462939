//! The core: validate, expand, render, record. It knows the request and response messages but no
//! transport: the gRPC adapter in `api` and the benchmark call it the same way.

pub mod digest;
pub mod expectations;
pub mod flyte2;
pub mod html_text;
pub mod inspect;
pub mod native;
pub mod operator;
pub use operator::ActScope;
mod recent;
pub use recent::{
    DEFAULT_RECENT, DEFAULT_RECENT_WITHIN, Delivered, MAX_RECENT_WITHIN, RecentDeliveries,
    RecentRequest,
};
pub mod render;
pub mod routes;
mod send_test;
pub mod silences;
pub mod template;
pub mod validate;
pub mod webhook_body;
pub mod webhooks;

use std::borrow::Cow;
use std::sync::Arc;

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::config::{EmailerConfig, Limits};
use crate::delivery::{Channel, Content, Payload, Rendered, WebhookSpec, WebhookTarget};
use crate::error::{Error, FieldViolation};
use crate::ledger::{
    self, AcceptOutcome, ExecutionKey, Ledger, NewDelivery, NewRequest, PageToken, PendingQuery,
    State, StoredDelivery,
};
use crate::proto::flyteidl::admin::Notification;
use crate::proto::flyteidl::core::WorkflowExecutionIdentifier;
use crate::proto::flytenotify::v1 as api;
use crate::queue::{Announcement, Queue};
use render::{Expanded, Renderer};
use routes::Routes;
use validate::Target;
use webhooks::WebhookTargets;

/// Page size when ListPendingRequest.limit is 0, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The most one Preview answers with: each message is bounded by `limits.maxRenderedBytes`, and
/// this bounds their sum, so a small request cannot ask for a huge answer.
pub const MAX_PREVIEW_BYTES: usize = 8 * 1024 * 1024;

pub struct Notifier {
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    renderer: Arc<Renderer>,
    limits: Limits,
    routes: Routes,
    webhook_targets: WebhookTargets,
    silences: Arc<silences::ActiveSilences>,
    expectations: Arc<expectations::Expectations>,
    flyte2: Arc<flyte2::Flyte2Setup>,
}

/// A request that passed validation, and what validation found in it.
struct Valid<'a> {
    execution: &'a api::ExecutionContext,
    execution_id: &'a WorkflowExecutionIdentifier,
    targets: Vec<Target<'a>>,
    /// One per webhook, in order.
    webhooks: Vec<WebhookSpec>,
}

/// The deliveries the notifications ask for at the execution's phase, and how many notifications
/// asked for none. A notification names the phases it fires in; recipients with a native route
/// become deliveries of their own, one per route (see `routes`).
fn expand<'a>(
    execution: &api::ExecutionContext,
    targets: &[Target<'a>],
    routes: &Routes,
) -> (Vec<Expanded<'a>>, u32) {
    let mut matched = Vec::new();
    let mut unmatched = 0;
    // A deadline's alert goes to every notification, whatever phases it names.
    let arming = validate::arms_deadline(execution.phase);
    for (i, t) in targets.iter().enumerate() {
        let named = arming || t.phases.contains(&execution.phase);
        let before = matched.len();
        for group in routes.split(t.channel, t.recipients) {
            let wanted = if arming {
                true
            } else if group.routed {
                routes.routed_wants(t.channel, execution.phase, named)
            } else {
                named
            };
            if !wanted {
                continue;
            }
            // The common case, one group of all recipients, borrows them.
            let recipients = if group.recipients.len() == t.recipients.len() {
                Cow::Borrowed(t.recipients)
            } else {
                Cow::Owned(group.recipients)
            };
            matched.push(Expanded {
                index: i as u32,
                channel: t.channel,
                recipients,
                template: t.template,
                native: group.routed,
                route: group.route,
            });
        }
        if matched.len() == before {
            unmatched += 1;
        }
    }
    (matched, unmatched)
}

/// The group a delivery of `channel` to `recipients` (a route's, the notification's own, or a
/// webhook destination's name, as they compare) joins under `config`: the same channel and
/// recipients and the same values of the groupBy labels make one digest.
fn group_of(
    execution: &api::ExecutionContext,
    channel: Channel,
    mut recipients: Vec<String>,
    config: &crate::config::grouping::GroupingConfig,
) -> ledger::Grouping {
    let id = execution.execution_id.clone().unwrap_or_default();
    let identifier = |i: &Option<crate::proto::flyteidl::core::Identifier>| {
        i.as_ref()
            .map(|i| format!("{}/{}/{}", i.project, i.domain, i.name))
            .unwrap_or_default()
    };
    recipients.sort();
    recipients.dedup();
    // The recipients are hashed so that the key stays short, whatever their number.
    let mut key = format!(
        "{}/{}",
        channel,
        hex(&Sha256::digest(recipients.join("\n").as_bytes())[..12])
    );
    for label in &config.group_by {
        let value = match label.as_str() {
            "project" => id.project.clone(),
            "domain" => id.domain.clone(),
            "launch_plan" => identifier(&execution.launch_plan),
            "workflow" => identifier(&execution.workflow),
            "phase" => render::phase_name(execution.phase),
            _ => continue,
        };
        key.push_str(&format!("|{label}={value}"));
    }
    ledger::Grouping {
        key,
        wait: config.group_wait,
        interval: config.group_interval,
        max_members: config.max_group_size,
    }
}

/// The webhooks whose phases contain the execution's phase (with what is stored for each), and
/// how many did not match.
fn expand_webhooks<'a>(
    execution: &api::ExecutionContext,
    webhooks: &[api::WebhookNotification],
    specs: &'a [WebhookSpec],
) -> (Vec<(u32, &'a WebhookSpec)>, u32) {
    let matched: Vec<(u32, &WebhookSpec)> = webhooks
        .iter()
        .zip(specs)
        .enumerate()
        .filter(|(_, (w, _))| {
            validate::arms_deadline(execution.phase) || w.phases.contains(&execution.phase)
        })
        .map(|(i, (_, spec))| (i as u32, spec))
        .collect();
    let unmatched = (webhooks.len() - matched.len()) as u32;
    (matched, unmatched)
}

/// `execution` with `occurred_at` set: the API promises the server's clock when the caller sends
/// none, and the email shows when the phase was reached. Only what is stored and rendered gets
/// it; the idempotency fingerprint is taken from the request as received, so a retry that also
/// leaves it unset is still the same request.
fn with_server_time(execution: &api::ExecutionContext) -> Cow<'_, api::ExecutionContext> {
    if execution.occurred_at.is_some() {
        return Cow::Borrowed(execution);
    }
    let mut filled = execution.clone();
    filled.occurred_at = Some(prost_types::Timestamp::from(std::time::SystemTime::now()));
    Cow::Owned(filled)
}

/// Template variables in the configured subject and body that FlyteAdmin would leave verbatim:
/// unknown names and known names with other spacing. Logged at start-up and by check-config.
pub fn template_warnings(emailer: &EmailerConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    for (key, text) in [
        ("notifications.emailer.subject", &emailer.subject),
        ("notifications.emailer.body", &emailer.body),
    ] {
        for problem in template::problems(text) {
            warnings.push(format!("{key}: {problem}; it will be sent verbatim"));
        }
    }
    warnings
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
            routes: Routes::default(),
            webhook_targets: WebhookTargets::default(),
            silences: Arc::default(),
            expectations: Arc::default(),
            flyte2: Arc::default(),
        }
    }

    /// Flyte 2's named delivery configs and rule sets, and how a run's link is made.
    pub fn with_flyte2(mut self, setup: flyte2::Flyte2Setup) -> Self {
        self.flyte2 = Arc::new(setup);
        self
    }

    /// The launch plans that must succeed every so often (flyteNotify.expectations).
    pub fn with_expectations(mut self, expectations: Arc<expectations::Expectations>) -> Self {
        self.expectations = expectations;
        self
    }

    pub fn expectations(&self) -> Arc<expectations::Expectations> {
        self.expectations.clone()
    }

    /// ListExpectations.
    pub async fn list_expectations(&self) -> Result<api::ListExpectationsResponse, Error> {
        self.expectations.list(self).await
    }

    /// Records a missed-schedule alert or its recovery: an Enqueue of the server's own, whose
    /// messages say what the expectation is.
    pub(crate) async fn enqueue_alert(
        &self,
        (request, alert): (api::EnqueueRequest, api::ExpectationAlert),
    ) -> Result<(), Error> {
        self.accept(request, false, Some(alert)).await.map(|_| ())
    }

    /// The silences this replica applies: the worker consults them, `ActiveSilences::run`
    /// keeps them fresh.
    pub fn silences(&self) -> Arc<silences::ActiveSilences> {
        self.silences.clone()
    }

    /// Native routes for Slack and PagerDuty recipients, and the webhook targets Enqueue accepts.
    pub fn with_routes(mut self, routes: Routes, webhook_targets: WebhookTargets) -> Self {
        self.routes = routes;
        self.webhook_targets = webhook_targets;
        self
    }

    fn check<'a>(
        &self,
        size: usize,
        execution: Option<&'a api::ExecutionContext>,
        deadline: Option<std::time::Duration>,
        notifications: &'a [Notification],
        webhooks: &[api::WebhookNotification],
        mut violations: Vec<FieldViolation>,
    ) -> Result<Valid<'a>, Error> {
        validate::request_size(size, &self.limits, &mut violations);
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let execution = validate::execution(execution, deadline, &mut violations);
        let targets = validate::notifications(
            notifications,
            webhooks.len(),
            &self.limits,
            &self.routes,
            &mut violations,
        );
        let webhooks = validate::webhooks(
            webhooks,
            notifications.len(),
            &self.limits,
            &self.webhook_targets,
            &mut violations,
        );
        match execution {
            Some((execution, execution_id)) if violations.is_empty() => Ok(Valid {
                execution,
                execution_id,
                targets,
                webhooks,
            }),
            _ => Err(Error::InvalidArgument(violations)),
        }
    }

    /// What the queue is told about newly accepted deliveries: their ids and, when the queue
    /// publishes FlyteAdmin's format, each email as FlyteAdmin would publish it.
    fn announcements(
        &self,
        execution: &api::ExecutionContext,
        matched: &[Expanded<'_>],
        delivery_ids: &[String],
    ) -> Vec<Announcement> {
        let wants_emails = self.queue.wants_emails();
        // Webhook deliveries follow the notifications' and are announced by id alone.
        let webhooks = delivery_ids
            .iter()
            .skip(matched.len())
            .map(Announcement::id);
        matched
            .iter()
            .zip(delivery_ids)
            .map(|(m, id)| Announcement {
                delivery_id: id.clone(),
                // The check before accepting made sure this renders.
                email: (wants_emails && m.channel == Channel::Email && !m.native)
                    .then(|| self.renderer.render(execution, m).ok())
                    .flatten()
                    .map(|e| crate::proto::flyteidl::admin::EmailMessage {
                        recipients_email: e.recipients,
                        sender_email: e.sender,
                        subject_line: e.subject,
                        body: e.html_body,
                    }),
            })
            .chain(webhooks)
            .collect()
    }

    pub async fn enqueue(
        &self,
        request: api::EnqueueRequest,
    ) -> Result<api::EnqueueResponse, Error> {
        self.accept(request, true, None).await
    }

    /// Enqueue; `grouping` false sends every delivery on its own (a send-test, a missed-schedule
    /// alert must not wait in a group); `alert` marks the server's own missed-schedule alert
    /// (callers cannot set it).
    async fn accept(
        &self,
        request: api::EnqueueRequest,
        grouping: bool,
        alert: Option<api::ExpectationAlert>,
    ) -> Result<api::EnqueueResponse, Error> {
        let mut violations = Vec::new();
        validate::request_id(&request.request_id, &mut violations);
        // A deadline out of bounds is reported as such, not also as missing.
        let deadline = request
            .deadline
            .as_ref()
            .map(|d| validate::deadline(d, &mut violations).unwrap_or_default());
        let valid = self.check(
            request.encoded_len(),
            request.execution.as_ref(),
            deadline,
            &request.notifications,
            &request.webhooks,
            violations,
        )?;
        // A webhook host that resolves to an address the guard refuses is refused now; the
        // sender checks again when it connects, so a later DNS answer cannot slip past either.
        let unresolvable: Vec<FieldViolation> = self
            .webhook_targets
            .check_resolved(&valid.webhooks)
            .await
            .into_iter()
            .map(|(i, problem)| FieldViolation::new(format!("webhooks[{i}].url"), problem))
            .collect();
        if !unresolvable.is_empty() {
            return Err(Error::InvalidArgument(unresolvable));
        }
        let mut filled = with_server_time(valid.execution);
        // A deadline's alerts say how long the execution had been running when they went out.
        if let Some(deadline) = deadline {
            filled.to_mut().still_running_after = prost_types::Duration::try_from(deadline).ok();
        }
        if alert.is_some() {
            filled.to_mut().expectation = alert;
        }
        let execution: &api::ExecutionContext = &filled;
        let id = valid.execution_id;
        let (matched, unmatched) = expand(execution, &valid.targets, &self.routes);
        let (webhooks, unmatched_webhooks) =
            expand_webhooks(execution, &request.webhooks, &valid.webhooks);
        let unmatched = unmatched + unmatched_webhooks;
        // What would render too large is refused now, not found dead at send time.
        let mut too_large: Vec<FieldViolation> = self
            .renderer
            .check_all(execution, &matched)
            .into_iter()
            .map(|(index, e)| FieldViolation::new(format!("notifications[{index}]"), e.to_string()))
            .collect();
        for (index, spec) in &webhooks {
            let rendered = webhook_body::webhook_request(
                execution,
                spec,
                &[],
                None,
                self.renderer.max_rendered_bytes,
            );
            if let Err(e) = rendered {
                too_large.push(FieldViolation::new(format!("webhooks[{index}]"), e));
            }
        }
        if !too_large.is_empty() {
            return Err(Error::InvalidArgument(too_large));
        }

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
        let first_webhook_index = request.notifications.len() as u32;
        // A deadline's alert is never grouped: it is due later, on its own. The notifications'
        // groups, then the webhooks', as their deliveries are ordered.
        let grouping = grouping && deadline.is_none();
        let groups: Vec<Option<ledger::Grouping>> = matched
            .iter()
            .map(|m| {
                let config = self.routes.grouping(m.channel, m.route, execution.phase)?;
                let recipients = m
                    .recipients
                    .iter()
                    .map(|r| crate::config::channels::normalize_recipient(r))
                    .collect();
                grouping.then(|| group_of(execution, m.channel, recipients, config))
            })
            .chain(webhooks.iter().map(|(_, spec)| {
                let WebhookTarget::Destination(name) = &spec.target else {
                    return None;
                };
                let config = self.routes.webhook_grouping(name)?;
                // Destination names are compared exactly, as the sender looks them up.
                grouping.then(|| group_of(execution, Channel::Webhook, vec![name.clone()], config))
            }))
            .collect();
        let (notification_groups, webhook_groups) = groups.split_at(matched.len());
        let deliveries = matched
            .iter()
            .zip(notification_groups)
            .map(|(m, group)| NewDelivery {
                id: uuid::Uuid::now_v7().to_string(),
                notification_index: m.index,
                phase: execution.phase,
                payload: Payload {
                    channel: m.channel,
                    recipients: m.recipients.to_vec(),
                    content: Content::Template(m.template.to_string()),
                },
                group: group.clone(),
            })
            .chain(
                webhooks
                    .iter()
                    .zip(webhook_groups)
                    .map(|((index, spec), group)| {
                        let spec = (*spec).clone();
                        NewDelivery {
                            id: uuid::Uuid::now_v7().to_string(),
                            // After the notifications', so that ids come back in the documented order.
                            notification_index: first_webhook_index + index,
                            phase: execution.phase,
                            payload: Payload {
                                channel: Channel::Webhook,
                                recipients: vec![webhooks::shown_as(&spec.target)],
                                content: Content::Webhook(spec),
                            },
                            group: group.clone(),
                        }
                    }),
            )
            .collect();
        let outcome = self
            .ledger
            .accept(NewRequest {
                request_id: request_id.clone(),
                fingerprint,
                unmatched,
                execution_key: key.clone(),
                execution: execution.encode_to_vec(),
                deliveries,
                due_in: deadline.unwrap_or_default(),
                disarms_deadlines: validate::is_terminal(execution.phase),
            })
            .await?;
        if !matches!(outcome, AcceptOutcome::Conflict) {
            self.expectations.saw(self, execution).await;
        }
        match outcome {
            AcceptOutcome::Accepted { delivery_ids } => {
                for m in &matched {
                    metrics::counter!(crate::telemetry::ACCEPTED, "channel" => m.channel.as_str())
                        .increment(1);
                }
                metrics::counter!(crate::telemetry::ACCEPTED, "channel" => Channel::Webhook.as_str())
                    .increment(webhooks.len() as u64);
                if deadline.is_some() {
                    for m in &matched {
                        metrics::counter!(crate::telemetry::DEADLINES_ARMED, "channel" => m.channel.as_str())
                            .increment(1);
                    }
                    metrics::counter!(crate::telemetry::DEADLINES_ARMED, "channel" => Channel::Webhook.as_str())
                        .increment(webhooks.len() as u64);
                }
                for group in groups.iter().flatten() {
                    tracing::debug!(key = %group.key, "joined a group");
                }
                // A group member waits for its digest, which the ledger hands out when due; a
                // member announced on its own would wake a replica for nothing, or hand a copy
                // of it to FlyteAdmin-format consumers.
                let mut announced = self.announcements(execution, &matched, &delivery_ids);
                let mut members = groups.iter().map(Option::is_some);
                announced.retain(|_| !members.next().unwrap_or(false));
                if !announced.is_empty()
                    && let Err(e) = self.queue.publish(&announced).await
                {
                    // Recorded is what counts: the worker finds the rows at its next poll anyway.
                    tracing::warn!(error = %e, %request_id, "could not announce new deliveries");
                }
                tracing::info!(
                    %request_id,
                    execution = %crate::telemetry::log_safe(&[&key.project, &key.domain, &key.name]),
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
            repeated => answer_repeated(repeated, request_id),
        }
    }

    /// Renders exactly what Enqueue would record for the same input (with no `occurred_at`, both
    /// take the server's clock at the call). Touches nothing.
    pub fn preview(&self, request: api::PreviewRequest) -> Result<api::PreviewResponse, Error> {
        if request.run_event.is_some() || request.action_paused.is_some() {
            if request.execution.is_some()
                || !request.notifications.is_empty()
                || !request.webhooks.is_empty()
            {
                return Err(Error::InvalidArgument(vec![FieldViolation::new(
                    "run_event",
                    "a Flyte 2 event (run_event or action_paused) goes without execution, \
                     notifications and webhooks",
                )]));
            }
            return self.preview_flyte2(&request);
        }
        let valid = self.check(
            request.encoded_len(),
            request.execution.as_ref(),
            None,
            &request.notifications,
            &request.webhooks,
            Vec::new(),
        )?;
        let filled = with_server_time(valid.execution);
        let execution: &api::ExecutionContext = &filled;
        let (matched, unmatched) = expand(execution, &valid.targets, &self.routes);
        let (webhooks, unmatched_webhooks) =
            expand_webhooks(execution, &request.webhooks, &valid.webhooks);
        // Each goes through the very function the worker renders with, from the payload Enqueue
        // would store, so that Preview cannot drift from what is sent.
        let items = matched
            .iter()
            .map(|m| {
                let wire = if m.native { m.channel } else { Channel::Email };
                let payload = Payload {
                    channel: m.channel,
                    recipients: m.recipients.to_vec(),
                    content: Content::Template(m.template.to_string()),
                };
                (
                    format!("notifications[{}]", m.index),
                    m.index,
                    wire,
                    payload,
                )
            })
            .chain(webhooks.iter().map(|(index, spec)| {
                let spec = (*spec).clone();
                let payload = Payload {
                    channel: Channel::Webhook,
                    recipients: vec![webhooks::shown_as(&spec.target)],
                    content: Content::Webhook(spec),
                };
                (
                    format!("webhooks[{index}]"),
                    *index,
                    Channel::Webhook,
                    payload,
                )
            }));
        let mut messages = Vec::with_capacity(matched.len() + webhooks.len());
        let mut violations = Vec::new();
        let mut total = 0;
        for (field, index, wire, payload) in items {
            match render_payload(&self.renderer, wire, &payload, execution) {
                Ok(rendered) => {
                    let message = preview_message(payload.channel, index, rendered);
                    total += message.subject.len()
                        + message.html_body.len()
                        + message.text_body.len()
                        + message.body.len();
                    messages.push(message);
                }
                Err(e) => violations.push(FieldViolation::new(field, e)),
            }
            if total > MAX_PREVIEW_BYTES {
                violations.push(FieldViolation::new(
                    "notifications",
                    format!(
                        "the preview would be over {MAX_PREVIEW_BYTES} bytes; preview fewer \
                         notifications at a time"
                    ),
                ));
                break;
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok(api::PreviewResponse {
            messages,
            unmatched_notifications: unmatched + unmatched_webhooks,
        })
    }

    /// The digest(s) `request.notification` or `request.webhook` would send for
    /// `request.executions`, rendered by the worker's own `digest::render_digest`.
    pub fn preview_digest(
        &self,
        request: api::PreviewDigestRequest,
    ) -> Result<api::PreviewDigestResponse, Error> {
        let mut violations = Vec::new();
        validate::request_size(request.encoded_len(), &self.limits, &mut violations);
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let max = crate::config::grouping::MAX_GROUP_SIZE as usize;
        match request.executions.len() {
            0 => violations.push(FieldViolation::new(
                "executions",
                "required: the members of one digest, at least one",
            )),
            n if n > max => violations.push(FieldViolation::new(
                "executions",
                format!("{n} executions; a digest holds at most {max} (maxGroupSize)"),
            )),
            _ => {}
        }
        // Each execution checked as Enqueue checks one, its paths under executions[i].
        let mut filled = Vec::with_capacity(request.executions.len());
        for (i, execution) in request.executions.iter().enumerate().take(max) {
            let mut own = Vec::new();
            if let Some((execution, _)) = validate::execution(Some(execution), None, &mut own) {
                filled.push(with_server_time(execution).into_owned());
            }
            violations.extend(own.into_iter().map(|v| {
                let rest = v.field.strip_prefix("execution").unwrap_or(&v.field);
                FieldViolation::new(format!("executions[{i}]{rest}"), v.description)
            }));
        }
        let notifications = Vec::from_iter(request.notification.clone());
        let webhooks = Vec::from_iter(request.webhook.clone());
        if notifications.len() + webhooks.len() != 1 {
            violations.push(FieldViolation::new(
                "notification",
                "set exactly one target: notification or webhook",
            ));
            return Err(Error::InvalidArgument(violations));
        }
        // The target checked as Enqueue checks it, its paths as this request names them.
        let mut own = Vec::new();
        let targets = validate::notifications(
            &notifications,
            webhooks.len(),
            &self.limits,
            &self.routes,
            &mut own,
        );
        let specs = validate::webhooks(&webhooks, 0, &self.limits, &self.webhook_targets, &mut own);
        if let Some(WebhookSpec {
            target: WebhookTarget::Url(_),
            ..
        }) = specs.first()
        {
            own.push(FieldViolation::new(
                "webhooks[0].url",
                "a webhook to a URL is never grouped; name a configured destination",
            ));
        }
        violations.extend(own.into_iter().map(|v| {
            let field = v
                .field
                .replacen("notifications[0]", "notification", 1)
                .replacen("webhooks[0]", "webhook", 1);
            FieldViolation::new(field, v.description)
        }));
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let members: Vec<ledger::DigestMember> = filled
            .iter()
            .enumerate()
            .map(|(i, execution)| {
                let id = execution.execution_id.clone().unwrap_or_default();
                ledger::DigestMember {
                    id: format!("preview-{i}"),
                    execution: ExecutionKey {
                        project: id.project,
                        domain: id.domain,
                        name: id.name,
                        org: id.org,
                    },
                    phase: execution.phase,
                    context: Ok(Arc::from(execution.encode_to_vec())),
                }
            })
            .collect();
        // The digests Enqueue would make: one per route of the notification, and one of its
        // recipients without a route (emailed); or the destination's.
        let mut digests: Vec<(Channel, Payload)> = Vec::new();
        for t in &targets {
            for group in self.routes.split(t.channel, t.recipients) {
                let wire = if group.routed {
                    t.channel
                } else {
                    Channel::Email
                };
                let payload = Payload {
                    channel: t.channel,
                    recipients: group.recipients,
                    content: Content::Digest,
                };
                digests.push((wire, payload));
            }
        }
        for spec in &specs {
            let payload = Payload {
                channel: Channel::Webhook,
                recipients: vec![webhooks::shown_as(&spec.target)],
                content: Content::Digest,
            };
            digests.push((Channel::Webhook, payload));
        }
        let mut messages = Vec::with_capacity(digests.len());
        for (wire, payload) in digests {
            let rendered =
                digest::render_digest(&self.renderer, wire, &payload, "preview", &members)
                    .map_err(|e| {
                        let field = if webhooks.is_empty() {
                            "notification"
                        } else {
                            "webhook"
                        };
                        Error::InvalidArgument(vec![FieldViolation::new(field, e)])
                    })?;
            messages.push(preview_message(payload.channel, 0, rendered));
        }
        Ok(api::PreviewDigestResponse { messages })
    }

    /// Only deliveries within `scope` (where the caller may read) are listed: the scope is a
    /// term of the ledger query itself, so pages stay full and tokens stay valid.
    pub async fn list_pending(
        &self,
        request: api::ListPendingRequest,
        scope: &crate::authz::Scope,
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
        let after = if request.token.is_empty() {
            None
        } else {
            match PageToken::decode(&request.token) {
                Ok(token) => Some(token),
                Err(message) => {
                    violations.push(FieldViolation::new("token", message));
                    None
                }
            }
        };
        let filters = match ledger::filters::parse(&request.filters) {
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
        let page = self
            .ledger
            .list_pending(PendingQuery {
                limit,
                after,
                filters,
            })
            .await?;
        Ok(api::ListPendingResponse {
            deliveries: page.deliveries.into_iter().map(to_api_delivery).collect(),
            token: page.next.map(|t| t.encode()).unwrap_or_default(),
        })
    }
}

/// The execution context a stored delivery renders with: decoded from its request's bytes for
/// our own content; content from a queue carries no execution of ours. The worker decodes it
/// once per send, for the silences, the rendering and its metrics.
pub fn stored_context(
    payload: &Payload,
    execution: &[u8],
) -> Result<api::ExecutionContext, String> {
    if let Content::Template(_) | Content::Webhook(_) | Content::Flyte2(_) = payload.content {
        api::ExecutionContext::decode(execution)
            .map_err(|e| format!("the stored execution context does not decode: {e}"))
    } else {
        Ok(api::ExecutionContext::default())
    }
}

/// What the worker sends for a stored `payload` by a `wire` sender, given its context.
pub fn render_stored(
    renderer: &Renderer,
    wire: Channel,
    payload: &Payload,
    execution: &api::ExecutionContext,
) -> Result<Rendered, String> {
    render_payload(renderer, wire, payload, execution)
}

/// What goes on the wire for `payload` when sent by a `wire` sender: the one rendering path of
/// both the worker and Preview.
fn render_payload(
    renderer: &Renderer,
    wire: Channel,
    payload: &Payload,
    execution: &api::ExecutionContext,
) -> Result<Rendered, String> {
    let template = match &payload.content {
        Content::Template(template) => template,
        Content::Rendered(email) => {
            return match wire {
                Channel::Email => renderer
                    .as_sent(email, &payload.recipients)
                    .map(Rendered::Email)
                    .map_err(|e| format!("the message cannot be sent: {e}")),
                other => Err(format!(
                    "a rendered email cannot go as a native {other} message"
                )),
            };
        }
        Content::Unreadable { error, .. } => {
            return Err(format!("the queue message cannot be read: {error}"));
        }
        Content::Digest => return Err("a digest is rendered from its members".into()),
        Content::Flyte2(spec) => {
            return flyte2::render::render(renderer, wire, spec, &payload.recipients);
        }
        Content::Webhook(spec) => {
            return match wire {
                // A Teams delivery is a webhook request too, sent by the Teams sender.
                Channel::Webhook | Channel::Teams => webhook_body::webhook_request(
                    execution,
                    spec,
                    &payload.recipients,
                    renderer.console_link_for(execution),
                    renderer.max_rendered_bytes,
                )
                .map(Rendered::Webhook),
                other => Err(format!("a webhook cannot go as {other}")),
            };
        }
    };
    let expanded = Expanded {
        index: 0,
        channel: payload.channel,
        recipients: Cow::Borrowed(&payload.recipients),
        template,
        native: wire != Channel::Email,
        route: None,
    };
    match wire {
        Channel::Email => renderer
            .render(execution, &expanded)
            .map(Rendered::Email)
            .map_err(|e| format!("the message cannot be sent: {e}")),
        Channel::Slack => Ok(Rendered::Slack(native::slack_message(
            renderer,
            execution,
            &payload.recipients,
        ))),
        Channel::Pagerduty => Ok(Rendered::PagerDuty(native::pagerduty_event(
            renderer,
            execution,
            &payload.recipients,
        ))),
        Channel::Webhook => Err("a webhook delivery has no webhook to send".into()),
        Channel::Teams => Err("a Teams delivery has no webhook to send".into()),
    }
}

/// A rendered message as Preview shows it: secrets (routing keys, signatures) are the senders' to
/// add and so are never in it.
fn preview_message(channel: Channel, index: u32, rendered: Rendered) -> api::RenderedMessage {
    let mut message = api::RenderedMessage {
        channel: channel.as_str().to_string(),
        notification_index: index,
        ..Default::default()
    };
    match rendered {
        Rendered::Email(e) => {
            message.recipients = e.recipients;
            message.sender = e.sender;
            message.subject = e.subject;
            message.html_body = e.html_body;
            message.text_body = e.text_body;
            message.destination = "email".into();
        }
        Rendered::Slack(s) => {
            message.destination = s.recipients.first().cloned().unwrap_or_default();
            message.recipients = s.recipients;
            message.text_body = s.text.clone();
            message.body = serde_json::json!({ "text": s.text, "blocks": s.blocks }).to_string();
        }
        Rendered::PagerDuty(p) => {
            message.destination = p.recipients.first().cloned().unwrap_or_default();
            message.recipients = p.recipients.clone();
            message.subject = p.summary.clone();
            message.body = pagerduty_preview(&p).to_string();
        }
        Rendered::Webhook(w) => {
            message.destination = w.recipients.first().cloned().unwrap_or_default();
            message.recipients = w.recipients;
            message.method = w.method;
            message.headers = w.headers.into_iter().collect();
            message.body = w.body;
        }
    }
    message
}

/// The Events API v2 body less its routing key.
fn pagerduty_preview(p: &crate::delivery::PagerDutyEvent) -> serde_json::Value {
    let action = match p.action {
        crate::delivery::PagerDutyAction::Trigger => "trigger",
        crate::delivery::PagerDutyAction::Resolve => "resolve",
    };
    serde_json::json!({
        "event_action": action,
        "dedup_key": p.dedup_key,
        "payload": {
            "summary": p.summary,
            "severity": p.severity,
            "source": p.source,
            "custom_details": p.custom_details,
        },
        "links": p.links.iter().map(|(href, text)| serde_json::json!({"href": href, "text": text})).collect::<Vec<_>>(),
    })
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
        State::Delivered => api::DeliveryState::Delivered,
        State::Discarded => api::DeliveryState::Discarded,
        State::Silenced => api::DeliveryState::Silenced,
        State::Disarmed => api::DeliveryState::Disarmed,
        State::Grouped => api::DeliveryState::Grouped,
    };
    // An unreadable payload (see StoredDelivery::payload) shows no channel or recipients, and
    // says why until an attempt records its own error.
    let (channel, recipients, last_error) = match &d.payload {
        Ok(p) => (
            p.channel.as_str().to_string(),
            p.recipients.clone(),
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
            .filter(|_| matches!(d.state, State::Pending | State::Retrying))
            .map(timestamp),
        last_error,
        created_at: Some(timestamp(d.created_at)),
        request_id: d.request_id,
        digest_id: d.digest_id.unwrap_or_default(),
    }
}

/// A digest of everything in the request but its request_id: the same bytes as encoding the
/// request with request_id cleared (fields are encoded in tag order), without copying it.
/// The answer to a request_id the ledger had seen: the same delivery ids again, or a conflict
/// when the content differs. (An accepted outcome is the caller's to answer.)
fn answer_repeated(
    outcome: AcceptOutcome,
    request_id: String,
) -> Result<api::EnqueueResponse, Error> {
    match outcome {
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
        AcceptOutcome::Accepted { delivery_ids } => Ok(api::EnqueueResponse {
            delivery_ids,
            unmatched_notifications: 0,
            request_id,
            duplicate: false,
        }),
    }
}

fn content_fingerprint(request: &api::EnqueueRequest) -> String {
    let mut content = Vec::with_capacity(request.encoded_len());
    if let Some(execution) = &request.execution {
        prost::encoding::message::encode(2, execution, &mut content);
    }
    for notification in &request.notifications {
        prost::encoding::message::encode(3, notification, &mut content);
    }
    for webhook in &request.webhooks {
        prost::encoding::message::encode(4, webhook, &mut content);
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
    fn warns_about_template_names_flyteadmin_would_leave_verbatim() {
        let c = crate::config::Config::from_yaml(
            "notifications:\n  emailer:\n    subject: \"{{ project }} {{  name }} {{ nope }}\"\n",
        )
        .unwrap();
        let w = template_warnings(&c.notifications.emailer);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("{{  name }}"), "{w:?}");
        assert!(w[1].contains("nope"), "{w:?}");
        // Spelled as FlyteAdmin documents them, nothing is said.
        let c = crate::config::Config::from_yaml(
            "notifications:\n  emailer:\n    subject: \"Notice: Execution \\\"{{ name }}\\\" has {{ phase }} in \\\"{{ domain }}\\\".\"\n    body: \"Execution {{ name }} has {{ phase }}.{{ error }}\"\n",
        )
        .unwrap();
        assert!(template_warnings(&c.notifications.emailer).is_empty());
    }

    #[test]
    fn the_fingerprint_ignores_only_the_request_id() {
        let request = api::EnqueueRequest {
            request_id: "a".into(),
            execution: Some(api::ExecutionContext {
                phase: 6,
                ..Default::default()
            }),
            notifications: vec![Notification::default(), Notification::default()],
            webhooks: vec![api::WebhookNotification {
                url: "https://hooks.example.com/x".into(),
                ..Default::default()
            }],
            deadline: None,
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
        let mut other = request.clone();
        other.webhooks[0].url.push('y');
        assert_ne!(content_fingerprint(&request), content_fingerprint(&other));
    }
}

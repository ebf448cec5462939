//! Flyte 2 runs: the `flyte.notify` rules a run carries (flyteidl2), resolved against the named
//! delivery configs and rule sets of the config, become deliveries like Flyte 1 notifications,
//! with the same ledger, retries, silences and history.
//!
//! A Flyte 2 delivery is stored with its event and its unrendered templates (`Content::Flyte2`);
//! the request's execution context is the run's in Flyte 1 terms (`event::execution_context`), so
//! ListPending, filters, silences and GetDelivery treat both generations alike.

pub mod event;
pub mod render;
pub mod rules;
pub mod template;

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::config::flyte2::{self as config};
use crate::delivery::{
    Channel, Content, Flyte2Event, Flyte2Message, Flyte2Spec, Payload, WebhookSpec, WebhookTarget,
};
use crate::error::{Error, FieldViolation};
use crate::ledger::{AcceptOutcome, ExecutionKey, NewDelivery, NewRequest};
use crate::proto::flyteidl2::common::RunIdentifier;
use crate::proto::flyteidl2::task::{InlineRule, inline_rule::Delivery};
use crate::proto::flytenotify::v1 as api;
use crate::queue::Announcement;

use super::{Notifier, validate};
use rules::{Catalog, Known, Resolved};

/// What the server knows of Flyte 2 beyond the routes Flyte 1 shares: the named configs and
/// rule sets, and how a run's link is made.
#[derive(Default)]
pub struct Flyte2Setup {
    pub catalog: Catalog,
    /// flyteNotify.flyte2.runUrl.
    pub run_url: String,
}

/// A Flyte 2 event, checked, with the rules that matched it.
struct Accepted {
    request_id: String,
    fingerprint: String,
    event: Flyte2Event,
    matched: Vec<Resolved>,
    unmatched: u32,
    deadline: Option<std::time::Duration>,
}

fn fingerprint(kind: &str, mut request_bytes_without_id: Vec<u8>) -> String {
    request_bytes_without_id.extend_from_slice(kind.as_bytes());
    super::hex(&Sha256::digest(&request_bytes_without_id))
}

impl Notifier {
    fn known(&self) -> Known<'_> {
        Known {
            catalog: &self.flyte2.catalog,
            webhook_targets: &self.webhook_targets,
        }
    }

    /// The rules of `event` that fire at its phase, checked and rendered once (what renders
    /// too large, or names what does not exist, is refused now, not found dead later), and the
    /// webhook URLs among them for the DNS half of the guard, by field.
    #[allow(clippy::type_complexity)]
    fn check_flyte2_now(
        &self,
        request_id: &str,
        size: usize,
        mut event: Flyte2Event,
        rules: Option<&api::Flyte2Rules>,
        deadline: Option<std::time::Duration>,
        mut out: Vec<FieldViolation>,
    ) -> Result<(Flyte2Event, Vec<Resolved>, u32, Vec<(String, WebhookSpec)>), Error> {
        validate::request_id(request_id, &mut out);
        validate::request_size(size, &self.limits, &mut out);
        let resolved = rules::resolve(rules, &event, &self.known(), &mut out);
        if !out.is_empty() {
            return Err(Error::InvalidArgument(out));
        }
        event::fill_run_url(&mut event, &self.flyte2.run_url);
        // A deadline's alert goes to every rule, whatever phases it names (as in Flyte 1).
        event.still_running_after_ms = deadline.map(|d| d.as_millis() as u64);
        let total = resolved.len() as u32;
        let matched: Vec<Resolved> = resolved
            .into_iter()
            .filter(|r| deadline.is_some() || r.on_phases.contains(&event.phase))
            .collect();
        let mut problems = Vec::new();
        let mut urls = Vec::new();
        for r in &matched {
            let spec = Flyte2Spec {
                event: event.clone(),
                message: r.message.clone(),
            };
            if let Err(e) = render::render(&self.renderer, r.channel, &spec, &r.recipients) {
                problems.push(FieldViolation::new(r.field.clone(), e));
            }
            if let Flyte2Message::Webhook { target, .. } = &r.message {
                urls.push((
                    r.field.clone(),
                    WebhookSpec {
                        target: target.clone(),
                        method: String::new(),
                        headers: Vec::new(),
                        body_template: String::new(),
                        timeout_ms: None,
                    },
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::InvalidArgument(problems));
        }
        let unmatched = total - matched.len() as u32;
        Ok((event, matched, unmatched, urls))
    }

    /// `check_flyte2_now`, then the webhook URLs' DNS answers through the guard.
    async fn check_flyte2(
        &self,
        request_id: &str,
        size: usize,
        event: Flyte2Event,
        rules: Option<&api::Flyte2Rules>,
        deadline: Option<std::time::Duration>,
        out: Vec<FieldViolation>,
    ) -> Result<(Flyte2Event, Vec<Resolved>, u32), Error> {
        let (event, matched, unmatched, urls) =
            self.check_flyte2_now(request_id, size, event, rules, deadline, out)?;
        let specs: Vec<WebhookSpec> = urls.iter().map(|(_, s)| s.clone()).collect();
        let problems: Vec<FieldViolation> = self
            .webhook_targets
            .check_resolved(&specs)
            .await
            .into_iter()
            .map(|(i, problem)| FieldViolation::new(format!("{}.url", urls[i].0), problem))
            .collect();
        if !problems.is_empty() {
            return Err(Error::InvalidArgument(problems));
        }
        Ok((event, matched, unmatched))
    }

    pub async fn enqueue_run_event(
        &self,
        request: api::EnqueueRunEventRequest,
    ) -> Result<api::EnqueueResponse, Error> {
        let mut out = Vec::new();
        let event = event::run_event(&request, &mut out);
        let deadline = request
            .deadline
            .as_ref()
            .and_then(|d| validate::deadline(d, &mut out));
        let mut unkeyed = request.clone();
        unkeyed.request_id.clear();
        let checked = self
            .check_flyte2(
                &request.request_id,
                request.encoded_len(),
                event,
                request.rules.as_ref(),
                deadline,
                out,
            )
            .await?;
        self.accept_flyte2(
            request.request_id,
            ("run", unkeyed.encode_to_vec()),
            checked,
            deadline,
        )
        .await
    }

    pub async fn enqueue_action_paused(
        &self,
        request: api::EnqueueActionPausedRequest,
    ) -> Result<api::EnqueueResponse, Error> {
        let mut out = Vec::new();
        let event = event::paused_event(&request, &mut out);
        let mut unkeyed = request.clone();
        unkeyed.request_id.clear();
        let checked = self
            .check_flyte2(
                &request.request_id,
                request.encoded_len(),
                event,
                request.rules.as_ref(),
                None,
                out,
            )
            .await?;
        self.accept_flyte2(
            request.request_id,
            ("paused", unkeyed.encode_to_vec()),
            checked,
            None,
        )
        .await
    }

    /// The group a Flyte 2 delivery joins, as Flyte 1's do: email by the configured email
    /// grouping, webhooks to a configured destination by its own. A digest lists its members'
    /// runs (it is rendered from their execution contexts), so a grouped rule's own template
    /// and its cc and bcc are not in it; a deadline's alert is never grouped.
    fn flyte2_group(
        &self,
        execution: &api::ExecutionContext,
        r: &Resolved,
        deadline: bool,
    ) -> Option<crate::ledger::Grouping> {
        if deadline {
            return None;
        }
        match (&r.message, r.channel) {
            (Flyte2Message::Email { to, .. }, Channel::Email) => {
                let config = self
                    .routes
                    .grouping(Channel::Email, None, execution.phase)?;
                let recipients = to
                    .iter()
                    .map(|a| crate::config::channels::normalize_recipient(a))
                    .collect();
                Some(super::group_of(
                    execution,
                    Channel::Email,
                    recipients,
                    config,
                ))
            }
            (
                Flyte2Message::Webhook {
                    target: WebhookTarget::Destination(name),
                    ..
                },
                Channel::Webhook,
            ) => {
                let config = self.routes.webhook_grouping(name)?;
                Some(super::group_of(
                    execution,
                    Channel::Webhook,
                    vec![name.clone()],
                    config,
                ))
            }
            _ => None,
        }
    }

    /// Records a checked event under `request_id`; `content` (its kind and the request's bytes
    /// without the id) is what a repeated request_id must match. occurred_at left unset takes
    /// the server's clock, so a retry that also leaves it unset is the same request.
    async fn accept_flyte2(
        &self,
        request_id: String,
        content: (&str, Vec<u8>),
        (event, matched, unmatched): (Flyte2Event, Vec<Resolved>, u32),
        deadline: Option<std::time::Duration>,
    ) -> Result<api::EnqueueResponse, Error> {
        let a = Accepted {
            request_id,
            fingerprint: fingerprint(content.0, content.1),
            event,
            matched,
            unmatched,
            deadline,
        };
        let request_id = if a.request_id.is_empty() {
            format!("server-{}", uuid::Uuid::now_v7())
        } else {
            a.request_id
        };
        let execution = event::execution_context(&a.event);
        let phase = execution.phase;
        let deliveries: Vec<NewDelivery> = a
            .matched
            .iter()
            .map(|r| NewDelivery {
                id: uuid::Uuid::now_v7().to_string(),
                notification_index: r.index,
                phase,
                payload: Payload {
                    channel: r.channel,
                    recipients: r.recipients.clone(),
                    content: Content::Flyte2(Box::new(Flyte2Spec {
                        event: a.event.clone(),
                        message: r.message.clone(),
                    })),
                },
                group: self.flyte2_group(&execution, r, a.deadline.is_some()),
            })
            .collect();
        let groups: Vec<bool> = deliveries.iter().map(|d| d.group.is_some()).collect();
        let key = ExecutionKey {
            project: a.event.project.clone(),
            domain: a.event.domain.clone(),
            name: a.event.name.clone(),
            org: a.event.org.clone(),
        };
        let outcome = self
            .ledger
            .accept(NewRequest {
                request_id: request_id.clone(),
                fingerprint: a.fingerprint,
                unmatched: a.unmatched,
                execution_key: key.clone(),
                execution: execution.encode_to_vec(),
                deliveries,
                due_in: a.deadline.unwrap_or_default(),
                // The end of the run disarms what a deadline armed for it (of either generation:
                // the ledger keys both by project, domain, name and org).
                disarms_deadlines: event::is_terminal(a.event.phase),
            })
            .await?;
        match outcome {
            AcceptOutcome::Accepted { delivery_ids } => {
                for r in &a.matched {
                    metrics::counter!(crate::telemetry::ACCEPTED, "channel" => r.channel.as_str())
                        .increment(1);
                }
                // A group member waits for its digest, which the ledger hands out when due.
                let announced: Vec<Announcement> = delivery_ids
                    .iter()
                    .zip(&groups)
                    .filter(|(_, grouped)| !**grouped)
                    .map(|(id, _)| Announcement::id(id))
                    .collect();
                if !announced.is_empty()
                    && let Err(e) = self.queue.publish(&announced).await
                {
                    tracing::warn!(error = %e, %request_id, "could not announce new deliveries");
                }
                tracing::info!(
                    %request_id,
                    run = %crate::telemetry::log_safe(&[&key.project, &key.domain, &key.name]),
                    phase = event::phase_name(a.event.phase),
                    deliveries = delivery_ids.len(),
                    unmatched = a.unmatched,
                    "accepted a Flyte 2 event"
                );
                Ok(api::EnqueueResponse {
                    delivery_ids,
                    unmatched_notifications: a.unmatched,
                    request_id,
                    duplicate: false,
                })
            }
            repeated => super::answer_repeated(repeated, request_id),
        }
    }

    /// Preview of a Flyte 2 event: what its deliveries would send, through the worker's renderer.
    pub(super) fn preview_flyte2(
        &self,
        request: &api::PreviewRequest,
    ) -> Result<api::PreviewResponse, Error> {
        let mut out = Vec::new();
        let (event, rules, size) = match (&request.run_event, &request.action_paused) {
            (Some(r), None) => (
                event::run_event(r, &mut out),
                r.rules.as_ref(),
                r.encoded_len(),
            ),
            (None, Some(p)) => (
                event::paused_event(p, &mut out),
                p.rules.as_ref(),
                p.encoded_len(),
            ),
            _ => {
                return Err(Error::InvalidArgument(vec![FieldViolation::new(
                    "run_event",
                    "set run_event or action_paused, not both",
                )]));
            }
        };
        let prefix = if request.run_event.is_some() {
            "run_event"
        } else {
            "action_paused"
        };
        let deadline = request
            .run_event
            .as_ref()
            .and_then(|r| r.deadline.as_ref())
            .and_then(|d| validate::deadline(d, &mut out));
        let (event, matched, unmatched, _) = self
            .check_flyte2_now("", size, event, rules, deadline, out)
            .map_err(|e| match e {
                Error::InvalidArgument(v) => Error::InvalidArgument(
                    v.into_iter()
                        .map(|f| {
                            FieldViolation::new(format!("{prefix}.{}", f.field), f.description)
                        })
                        .collect(),
                ),
                other => other,
            })?;
        let mut messages = Vec::new();
        for r in &matched {
            let spec = Flyte2Spec {
                event: event.clone(),
                message: r.message.clone(),
            };
            let rendered = render::render(&self.renderer, r.channel, &spec, &r.recipients)
                .map_err(|e| {
                    Error::InvalidArgument(vec![FieldViolation::new(r.field.clone(), e)])
                })?;
            messages.push(super::preview_message(r.channel, r.index, rendered));
        }
        Ok(api::PreviewResponse {
            messages,
            unmatched_notifications: unmatched,
        })
    }

    /// SendTest of one Flyte 2 rule: an event of a made-up failed run (in `run`'s project and
    /// domain, which decide what a delivery config name resolves to).
    pub(super) async fn send_test_rule(
        &self,
        rule: InlineRule,
        run: Option<RunIdentifier>,
    ) -> Result<api::SendTestResponse, Error> {
        use crate::proto::flyteidl2::common::ActionPhase;
        let name = format!("send-test-{}", uuid::Uuid::now_v7().simple());
        let mut run = run.unwrap_or_else(|| RunIdentifier {
            project: "flyte-notify".into(),
            domain: "test".into(),
            ..Default::default()
        });
        run.name = name.clone();
        let rule = InlineRule {
            on_phases: vec![ActionPhase::Failed as i32],
            ..rule
        };
        let request = api::EnqueueRunEventRequest {
            request_id: name.clone(),
            run: Some(run),
            phase: ActionPhase::Failed as i32,
            error: "This is a test message from flyte-notify: nothing failed.".into(),
            rules: Some(api::Flyte2Rules {
                rules: Some(api::flyte2_rules::Rules::NotificationRules(
                    crate::proto::flyteidl2::task::InlineRuleList { rules: vec![rule] },
                )),
            }),
            ..Default::default()
        };
        let accepted = self.enqueue_run_event(request).await.map_err(|e| match e {
            Error::InvalidArgument(v) => Error::InvalidArgument(
                v.into_iter()
                    .map(|f| {
                        FieldViolation::new(
                            f.field.replace("rules.notification_rules.rules[0]", "rule"),
                            f.description,
                        )
                    })
                    .collect(),
            ),
            other => other,
        })?;
        Ok(api::SendTestResponse {
            delivery_id: accepted.delivery_ids.into_iter().next().unwrap_or_default(),
            request_id: accepted.request_id,
        })
    }

    pub fn list_delivery_configs(
        &self,
        request: api::ListDeliveryConfigsRequest,
    ) -> Result<api::ListDeliveryConfigsResponse, Error> {
        let catalog = &self.flyte2.catalog;
        let delivery_configs = catalog
            .delivery_configs
            .iter()
            .filter(|e| scoped_to(*e, &request.project, &request.domain))
            .map(|e| {
                let (channel, destinations) = match (&e.email, &e.webhook) {
                    (Some(m), _) => (
                        "email".to_string(),
                        m.to.iter().chain(&m.cc).chain(&m.bcc).cloned().collect(),
                    ),
                    (None, Some(w)) => {
                        let target =
                            crate::delivery::WebhookTarget::Destination(w.destination.clone());
                        (
                            match (catalog.flavor_of)(&target) {
                                crate::delivery::WebhookFlavor::Teams => "teams",
                                crate::delivery::WebhookFlavor::Slack => "slack",
                                crate::delivery::WebhookFlavor::Generic => "webhook",
                            }
                            .to_string(),
                            vec![w.destination.clone()],
                        )
                    }
                    (None, None) => (String::new(), Vec::new()),
                };
                api::DeliveryConfig {
                    name: e.name.clone(),
                    project: e.project.clone(),
                    domain: e.domain.clone(),
                    channel,
                    destinations,
                }
            })
            .collect();
        Ok(api::ListDeliveryConfigsResponse { delivery_configs })
    }

    pub fn list_rules(
        &self,
        request: api::ListRulesRequest,
    ) -> Result<api::ListRulesResponse, Error> {
        let rules = self
            .flyte2
            .catalog
            .rule_sets
            .iter()
            .filter(|e| scoped_to(*e, &request.project, &request.domain))
            .map(|set| api::NamedRuleSet {
                name: set.name.clone(),
                project: set.project.clone(),
                domain: set.domain.clone(),
                rules: set
                    .rules
                    .iter()
                    .map(|r| InlineRule {
                        on_phases: r
                            .on_phases
                            .iter()
                            .filter_map(|p| config::parse_phase(p))
                            .collect(),
                        delivery: Some(Delivery::DeliveryConfigName(r.delivery_config.clone())),
                    })
                    .collect(),
            })
            .collect();
        Ok(api::ListRulesResponse { rules })
    }
}

/// ListDeliveryConfigs' and ListRules' filter: everything when no project is given, else what
/// that project (and domain, when given) can use.
fn scoped_to(entry: &impl config::Scoped, project: &str, domain: &str) -> bool {
    if project.is_empty() && domain.is_empty() {
        return true;
    }
    (project.is_empty() || entry.project().is_empty() || entry.project() == project)
        && (domain.is_empty() || entry.domain().is_empty() || entry.domain() == domain)
}

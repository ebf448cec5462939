//! Missed schedules (`flyteNotify.expectations`): a launch plan that must succeed every so often.
//! When no SUCCEEDED event of it has been enqueued within `every + grace` of the last one (or of
//! when watching began), one alert goes to its recipients; when it succeeds again, one recovery.
//!
//! The state lives in the ledger (one row per launch plan), so that it is shared by replicas and
//! survives restarts. Every replica looks once a second; each alert is an ordinary Enqueue whose
//! request_id names the miss (the launch plan and the miss's deadline), so that two replicas, or
//! one that crashed between recording the alert and moving the state on, record it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{Notifier, timestamp, validate};
use crate::config::{ExpectationConfig, Limits};
use crate::error::{Error, FieldViolation};
use crate::ledger::{ExpectationRow, ExpectationState, ExpectationWrite, Millis};
use crate::notify::routes::Routes;
use crate::notify::webhooks::WebhookTargets;
use crate::proto::flyteidl::admin::{
    EmailNotification, Notification, PagerDutyNotification, SlackNotification, notification,
};
use crate::proto::flyteidl::core::workflow_execution::Phase;
use crate::proto::flyteidl::core::{Identifier, ResourceType, WorkflowExecutionIdentifier};
use crate::proto::flytenotify::v1 as api;

/// How often each replica looks for misses and recoveries.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One configured expectation, with its recipients as the notifications its alerts carry.
struct Watched {
    config: ExpectationConfig,
    notifications: Vec<Notification>,
    webhooks: Vec<api::WebhookNotification>,
}

/// The configured expectations.
#[derive(Default)]
pub struct Expectations {
    watched: Vec<Watched>,
    /// `project/domain/name` by its parts: every accepted Enqueue asks whether its launch plan
    /// is watched, so the answer is one lookup, not a walk of the list.
    by_parts: HashMap<(String, String, String), String>,
}

fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// The notifications of `notify`: one per kind, named for both phases an alert can have.
fn notifications_of(config: &ExpectationConfig) -> Vec<Notification> {
    let phases = vec![Phase::Failed as i32, Phase::Succeeded as i32];
    let n = &config.notify;
    let mut out = Vec::new();
    let mut push = |r#type| {
        out.push(Notification {
            phases: phases.clone(),
            r#type: Some(r#type),
        })
    };
    if !n.email.is_empty() {
        push(notification::Type::Email(EmailNotification {
            recipients_email: n.email.clone(),
            template: String::new(),
        }));
    }
    if !n.slack.is_empty() {
        push(notification::Type::Slack(SlackNotification {
            recipients_email: n.slack.clone(),
            template: String::new(),
        }));
    }
    if !n.pager_duty.is_empty() {
        push(notification::Type::PagerDuty(PagerDutyNotification {
            recipients_email: n.pager_duty.clone(),
            template: String::new(),
        }));
    }
    out
}

impl Expectations {
    pub fn new(configs: &[ExpectationConfig]) -> Self {
        let by_parts = configs
            .iter()
            .filter_map(|c| {
                let (p, d, n) = c.launch_plan_parts()?;
                Some(((p.into(), d.into(), n.into()), c.launch_plan.clone()))
            })
            .collect();
        Self {
            by_parts,
            watched: configs
                .iter()
                .map(|config| Watched {
                    notifications: notifications_of(config),
                    webhooks: config
                        .notify
                        .webhooks
                        .iter()
                        .map(|destination| api::WebhookNotification {
                            destination: destination.clone(),
                            phases: vec![Phase::Failed as i32, Phase::Succeeded as i32],
                            ..Default::default()
                        })
                        .collect(),
                    config: config.clone(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// The recipients, checked as a notification's would be: what Enqueue would refuse, named by
    /// its config key. The service refuses to start with any, and check-config reports them.
    pub fn check(
        &self,
        limits: &Limits,
        routes: &Routes,
        targets: &WebhookTargets,
    ) -> Vec<FieldViolation> {
        let mut problems = Vec::new();
        for (i, w) in self.watched.iter().enumerate() {
            let mut found = Vec::new();
            if !w.notifications.is_empty() {
                validate::notifications(
                    &w.notifications,
                    w.webhooks.len(),
                    limits,
                    routes,
                    &mut found,
                );
            }
            let mut hooks = Vec::new();
            validate::webhooks(
                &w.webhooks,
                w.notifications.len(),
                limits,
                targets,
                &mut hooks,
            );
            for v in hooks {
                // webhooks[j].destination -> notify.webhooks[j]
                let field = v
                    .field
                    .split_once('.')
                    .map_or(v.field.clone(), |(head, _)| head.to_string());
                problems.push(FieldViolation::new(
                    format!("flyteNotify.expectations[{i}].notify.{field}"),
                    v.description,
                ));
            }
            for v in found {
                // notifications[k].email.recipients_email[j] -> notify.email[j]
                let field = v
                    .field
                    .split_once('.')
                    .map(|(_, rest)| {
                        rest.replace("email.recipients_email", "email")
                            .replace("slack.recipients_email", "slack")
                            .replace("pager_duty.recipients_email", "pagerDuty")
                    })
                    .unwrap_or_default();
                problems.push(FieldViolation::new(
                    format!("flyteNotify.expectations[{i}].notify.{field}"),
                    v.description,
                ));
            }
        }
        problems
    }

    /// The watched launch plan `execution` ran, if any: `project/domain/name`.
    fn watched_key(&self, execution: &api::ExecutionContext) -> Option<&str> {
        if self.by_parts.is_empty() {
            return None;
        }
        let lp = execution.launch_plan.as_ref()?;
        self.by_parts
            .get(&(lp.project.clone(), lp.domain.clone(), lp.name.clone()))
            .map(String::as_str)
    }

    /// Called for every accepted Enqueue: a SUCCEEDED execution of a watched launch plan is the
    /// success its expectation waits for.
    pub(super) async fn saw(&self, notifier: &Notifier, execution: &api::ExecutionContext) {
        if execution.phase != Phase::Succeeded as i32 || execution.expectation.is_some() {
            return;
        }
        let Some(key) = self.watched_key(execution) else {
            return;
        };
        if let Err(e) = notifier
            .ledger
            .write_expectation(ExpectationWrite::Success(key.to_string()))
            .await
        {
            // The Enqueue itself is recorded; the next success records the schedule instead.
            tracing::warn!(launch_plan = key, error = %e, "cannot record a success for its expectation");
        }
    }

    /// Watches the configured launch plans, then looks for misses and recoveries every second
    /// until `stopping`.
    pub async fn run(
        self: Arc<Self>,
        notifier: Arc<Notifier>,
        mut stopping: watch::Receiver<bool>,
    ) {
        if self.is_empty() {
            return;
        }
        let mut watching = false;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            if !watching {
                let keys = self
                    .watched
                    .iter()
                    .map(|w| w.config.launch_plan.clone())
                    .collect();
                match notifier
                    .ledger
                    .write_expectation(ExpectationWrite::Watch(keys))
                    .await
                {
                    Ok(_) => watching = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot record the expectations yet; trying again");
                        continue;
                    }
                }
            }
            if let Err(e) = self.look(&notifier).await {
                tracing::warn!(error = %e, "cannot check the expectations; trying again");
            }
        }
    }

    /// One look: each watched launch plan past its deadline gets its alert, each recovered one
    /// its recovery.
    async fn look(&self, notifier: &Notifier) -> Result<(), Error> {
        let rows = rows_by_launch_plan(notifier).await?;
        let now = now_millis();
        for w in &self.watched {
            let Some(row) = rows.get(&w.config.launch_plan) else {
                continue;
            };
            let (from, to, miss) = match row.state {
                ExpectationState::Ok => {
                    let deadline = due_at(&w.config, row);
                    if now < deadline {
                        continue;
                    }
                    (ExpectationState::Ok, ExpectationState::Missed, deadline)
                }
                ExpectationState::Recovering => (
                    ExpectationState::Recovering,
                    ExpectationState::Ok,
                    row.missed_deadline.unwrap_or(0),
                ),
                ExpectationState::Missed => continue,
            };
            let recovered = from == ExpectationState::Recovering;
            // Recorded first, under a request_id that names the miss: a second try (this replica
            // after a crash, or another one) is a duplicate and records nothing new.
            notifier
                .enqueue_alert(alert_request(w, row, miss, recovered))
                .await?;
            let moved = notifier
                .ledger
                .write_expectation(ExpectationWrite::Transition {
                    launch_plan: w.config.launch_plan.clone(),
                    from,
                    to,
                    missed_deadline: (!recovered).then_some(miss),
                })
                .await?;
            if moved {
                let kind = if recovered { "recovered" } else { "missed" };
                metrics::counter!(crate::telemetry::EXPECTATION_ALERTS, "kind" => kind)
                    .increment(1);
                tracing::warn!(
                    launch_plan = %w.config.launch_plan,
                    "{}",
                    if recovered {
                        "launch plan succeeded again after a missed schedule"
                    } else {
                        "launch plan missed its schedule: no success within every + grace"
                    }
                );
            }
        }
        Ok(())
    }

    /// What ListExpectations shows, in config order.
    pub async fn list(&self, notifier: &Notifier) -> Result<api::ListExpectationsResponse, Error> {
        let rows = rows_by_launch_plan(notifier).await?;
        let expectations = self
            .watched
            .iter()
            .map(|w| {
                let row = rows.get(&w.config.launch_plan);
                let state = match row.map(|r| r.state) {
                    Some(ExpectationState::Missed) => api::expectation::State::Missed,
                    _ => api::expectation::State::Ok,
                };
                let n = &w.config.notify;
                api::Expectation {
                    launch_plan: w.config.launch_plan.clone(),
                    every: prost_types::Duration::try_from(w.config.every).ok(),
                    grace: prost_types::Duration::try_from(w.config.grace).ok(),
                    last_success_at: row.and_then(|r| r.last_success_at).map(timestamp),
                    watched_since: row.map(|r| timestamp(r.watched_since)),
                    next_due_at: row
                        .filter(|_| state == api::expectation::State::Ok)
                        .map(|r| timestamp(due_at(&w.config, r))),
                    state: state as i32,
                    recipients: n
                        .email
                        .iter()
                        .chain(&n.slack)
                        .chain(&n.pager_duty)
                        .cloned()
                        .collect(),
                }
            })
            .collect();
        Ok(api::ListExpectationsResponse { expectations })
    }
}

/// The ledger's rows, by launch plan.
async fn rows_by_launch_plan(
    notifier: &Notifier,
) -> Result<HashMap<String, ExpectationRow>, Error> {
    Ok(notifier
        .ledger
        .expectations()
        .await?
        .into_iter()
        .map(|r| (r.launch_plan.clone(), r))
        .collect())
}

/// When the alert goes out if no success comes first.
fn due_at(config: &ExpectationConfig, row: &ExpectationRow) -> Millis {
    row.last_success_at
        .unwrap_or(row.watched_since)
        .saturating_add(millis(config.every))
        .saturating_add(millis(config.grace))
}

/// The Enqueue of an alert (FAILED) or a recovery (SUCCEEDED) about `w`'s launch plan; `miss`
/// (the miss's deadline) names it.
fn alert_request(
    w: &Watched,
    row: &ExpectationRow,
    miss: Millis,
    recovered: bool,
) -> (api::EnqueueRequest, api::ExpectationAlert) {
    let (project, domain, name) = w
        .config
        .launch_plan_parts()
        .expect("config validation checked the launch plan");
    // Bounded whatever the launch plan's length: request ids are at most 128 characters.
    let digest = Sha256::digest(w.config.launch_plan.as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let kind = if recovered { "recovered" } else { "missed" };
    let request = api::EnqueueRequest {
        request_id: format!("expectation-{short}-{kind}-{miss}"),
        execution: Some(api::ExecutionContext {
            execution_id: Some(WorkflowExecutionIdentifier {
                project: project.into(),
                domain: domain.into(),
                name: name.into(),
                org: String::new(),
            }),
            launch_plan: Some(Identifier {
                resource_type: ResourceType::LaunchPlan as i32,
                project: project.into(),
                domain: domain.into(),
                name: name.into(),
                ..Default::default()
            }),
            phase: if recovered {
                Phase::Succeeded as i32
            } else {
                Phase::Failed as i32
            },
            ..Default::default()
        }),
        notifications: w.notifications.clone(),
        webhooks: w.webhooks.clone(),
        deadline: None,
    };
    let alert = api::ExpectationAlert {
        launch_plan: w.config.launch_plan.clone(),
        every: prost_types::Duration::try_from(w.config.every).ok(),
        grace: prost_types::Duration::try_from(w.config.grace).ok(),
        last_success_at: row.last_success_at.map(timestamp),
        watched_since: Some(timestamp(row.watched_since)),
        recovered,
    };
    (request, alert)
}

//! SendTest: one message, marked as a test, through exactly the path a real failure takes
//! (validation, routes, the ledger, the worker, the sender), so that a route, a webhook or SMTP
//! credentials are known to work before the first real failure needs them.

use super::Notifier;
use crate::error::{Error, FieldViolation};
use crate::proto::flyteidl::core::{
    ExecutionError, Identifier, WorkflowExecutionIdentifier, execution_error::ErrorKind,
    workflow_execution::Phase,
};
use crate::proto::flytenotify::v1 as api;
use api::send_test_request::Target;

/// The execution a test message is about: named so that every channel's message says "test" where
/// a reader looks first (the name, the error excerpt).
pub const TEST_PROJECT: &str = "flyte-notify";
pub const TEST_DOMAIN: &str = "test";
pub const TEST_MESSAGE: &str =
    "This is a test message from flyte-notify send-test. No workflow failed.";

pub fn test_execution(name: &str) -> api::ExecutionContext {
    api::ExecutionContext {
        execution_id: Some(WorkflowExecutionIdentifier {
            project: TEST_PROJECT.into(),
            domain: TEST_DOMAIN.into(),
            name: name.into(),
            org: String::new(),
        }),
        launch_plan: Some(Identifier {
            project: TEST_PROJECT.into(),
            domain: TEST_DOMAIN.into(),
            name: "send-test".into(),
            ..Default::default()
        }),
        workflow: Some(Identifier {
            project: TEST_PROJECT.into(),
            domain: TEST_DOMAIN.into(),
            name: "send-test".into(),
            ..Default::default()
        }),
        // FAILED, so that a PagerDuty route triggers and a Slack message shows its error block.
        phase: Phase::Failed as i32,
        error: Some(ExecutionError {
            code: "TEST".into(),
            message: TEST_MESSAGE.into(),
            kind: ErrorKind::User as i32,
            ..Default::default()
        }),
        occurred_at: None,
        still_running_after: None,
        expectation: None,
    }
}

impl Notifier {
    pub async fn send_test(
        &self,
        request: api::SendTestRequest,
    ) -> Result<api::SendTestResponse, Error> {
        let name = format!("send-test-{}", uuid::Uuid::now_v7().simple());
        let mut enqueue = api::EnqueueRequest {
            request_id: name.clone(),
            execution: Some(test_execution(&name)),
            notifications: Vec::new(),
            webhooks: Vec::new(),
            deadline: None,
        };
        // The target's own phases do not matter: a test is always sent.
        match request.target {
            None => {
                return Err(Error::InvalidArgument(vec![FieldViolation::new(
                    "target",
                    "required: a notification or a webhook",
                )]));
            }
            Some(Target::Notification(mut n)) => {
                n.phases = vec![Phase::Failed as i32];
                enqueue.notifications.push(n);
            }
            Some(Target::Webhook(mut w)) => {
                w.phases = vec![Phase::Failed as i32];
                enqueue.webhooks.push(w);
            }
            Some(Target::Rule(rule)) => {
                return self.send_test_rule(rule, request.run).await;
            }
        }
        let accepted = self
            .accept(enqueue, false, None)
            .await
            .map_err(|e| match e {
                // The paths name the synthesized request's fields; say them as SendTest's.
                Error::InvalidArgument(v) => Error::InvalidArgument(
                    v.into_iter()
                        .map(|f| {
                            let field = f
                                .field
                                .replace("notifications[0]", "notification")
                                .replace("webhooks[0]", "webhook");
                            FieldViolation::new(field, f.description)
                        })
                        .collect(),
                ),
                other => other,
            })?;
        let delivery_id = accepted.delivery_ids.into_iter().next().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("a test notification produced no delivery"))
        })?;
        Ok(api::SendTestResponse {
            delivery_id,
            request_id: accepted.request_id,
        })
    }
}

//! Flyte 2 runs: the `flyte.notify` rules a run carries (flyteidl2), resolved against the named
//! delivery configs and rule sets of the config, become deliveries like Flyte 1 notifications,
//! with the same ledger, retries, silences and history.

pub mod template;

use crate::error::Error;
use crate::proto::flytenotify::v1 as api;

use super::Notifier;

impl Notifier {
    pub async fn enqueue_run_event(
        &self,
        _request: api::EnqueueRunEventRequest,
    ) -> Result<api::EnqueueResponse, Error> {
        Err(Error::Internal(anyhow::anyhow!(
            "EnqueueRunEvent: in progress"
        )))
    }

    pub async fn enqueue_action_paused(
        &self,
        _request: api::EnqueueActionPausedRequest,
    ) -> Result<api::EnqueueResponse, Error> {
        Err(Error::Internal(anyhow::anyhow!(
            "EnqueueActionPaused: in progress"
        )))
    }

    pub(super) async fn send_test_rule(
        &self,
        _rule: crate::proto::flyteidl2::task::InlineRule,
        _run: Option<crate::proto::flyteidl2::common::RunIdentifier>,
    ) -> Result<api::SendTestResponse, Error> {
        Err(Error::Internal(anyhow::anyhow!(
            "SendTest of a rule: in progress"
        )))
    }

    pub fn list_delivery_configs(
        &self,
        _request: api::ListDeliveryConfigsRequest,
    ) -> Result<api::ListDeliveryConfigsResponse, Error> {
        Ok(api::ListDeliveryConfigsResponse::default())
    }

    pub fn list_rules(
        &self,
        _request: api::ListRulesRequest,
    ) -> Result<api::ListRulesResponse, Error> {
        Ok(api::ListRulesResponse::default())
    }
}

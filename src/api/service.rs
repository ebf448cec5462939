//! The gRPC adapter: unwrap the request, check the caller's permissions (`authz`, with the
//! `Caller` the auth layer attached), call the core, map the error. Nothing else lives here.
//!
//! Single-project calls are checked here against the project the request names; calls over many
//! deliveries hand the caller's `Scope` to the core, which restricts its ledger queries with it.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::authz::{self, Action, Caller, Scope, Target};
use crate::notify::{ActScope, Notifier};
use crate::proto::flytenotify::v1::{
    CreateSilenceRequest, CreateSilenceResponse, DiscardRequest, DiscardResponse,
    EnqueueActionPausedRequest, EnqueueRequest, EnqueueResponse, EnqueueRunEventRequest,
    ExpireSilenceRequest, ExpireSilenceResponse, GetDeliveryRequest, GetDeliveryResponse,
    ListDeliveryConfigsRequest, ListDeliveryConfigsResponse, ListExpectationsRequest,
    ListExpectationsResponse, ListPendingRequest, ListPendingResponse, ListRulesRequest,
    ListRulesResponse, ListSilencesRequest, ListSilencesResponse, PreviewDigestRequest,
    PreviewDigestResponse, PreviewRequest, PreviewResponse, RedriveRequest, RedriveResponse,
    SendTestRequest, SendTestResponse, notification_service_server::NotificationService,
};

pub struct GrpcNotificationService {
    notifier: Arc<Notifier>,
}

impl GrpcNotificationService {
    pub fn new(notifier: Arc<Notifier>) -> Self {
        Self { notifier }
    }
}

fn caller<T>(request: &Request<T>) -> Option<&Caller> {
    request.extensions().get::<Caller>()
}

/// `action` in the named project, when the request names one; a request that names none is
/// refused by the core's validation, which names the missing field.
fn check_in<T>(
    request: &Request<T>,
    action: Action,
    project: Option<(&str, &str)>,
) -> Result<(), Status> {
    match project {
        Some((project, domain)) => {
            authz::check(caller(request), action, Target::Project { project, domain })
        }
        None => Ok(()),
    }
    .map_err(to_status)
}

/// `action` in every project: calls about shared state (silences, expectations, test sends).
fn check_everywhere<T>(request: &Request<T>, action: Action) -> Result<(), Status> {
    authz::check(caller(request), action, Target::Everywhere).map_err(to_status)
}

fn scope_of<T>(request: &Request<T>, action: Action) -> Result<Scope, Status> {
    authz::scope(caller(request), action).map_err(to_status)
}

#[tonic::async_trait]
impl NotificationService for GrpcNotificationService {
    async fn enqueue(
        &self,
        request: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let id = request
            .get_ref()
            .execution
            .as_ref()
            .and_then(|e| e.execution_id.as_ref());
        check_in(
            &request,
            Action::Enqueue,
            id.map(|id| (id.project.as_str(), id.domain.as_str())),
        )?;
        self.notifier
            .enqueue(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_pending(
        &self,
        request: Request<ListPendingRequest>,
    ) -> Result<Response<ListPendingResponse>, Status> {
        let scope = scope_of(&request, Action::Read)?;
        self.notifier
            .list_pending(request.into_inner(), &scope)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        // Renders what the request carries, not stored deliveries: reading somewhere suffices.
        scope_of(&request, Action::Read)?;
        // Rendering is bounded, but up to megabytes of it would still hold an async worker
        // thread; a blocking thread keeps health checks and other calls moving meanwhile.
        let notifier = self.notifier.clone();
        tokio::task::spawn_blocking(move || notifier.preview(request.into_inner()))
            .await
            .map_err(|e| to_status(crate::error::Error::Internal(anyhow::anyhow!(e))))?
            .map(Response::new)
            .map_err(to_status)
    }

    async fn preview_digest(
        &self,
        request: Request<PreviewDigestRequest>,
    ) -> Result<Response<PreviewDigestResponse>, Status> {
        scope_of(&request, Action::Read)?;
        // Up to 500 executions rendered: off the async workers, as Preview is.
        let notifier = self.notifier.clone();
        tokio::task::spawn_blocking(move || notifier.preview_digest(request.into_inner()))
            .await
            .map_err(|e| to_status(crate::error::Error::Internal(anyhow::anyhow!(e))))?
            .map(Response::new)
            .map_err(to_status)
    }

    async fn redrive(
        &self,
        request: Request<RedriveRequest>,
    ) -> Result<Response<RedriveResponse>, Status> {
        let by_ids = !request.get_ref().delivery_ids.is_empty();
        let (operate, read) = act_scopes(&request, by_ids)?;
        let who = caller(&request).cloned();
        self.notifier
            .redrive(
                request.into_inner(),
                ActScope {
                    operate: &operate,
                    read: &read,
                },
            )
            .await
            .map(Response::new)
            .map_err(|e| {
                authz::record_refusal(who.as_ref(), Action::Operate, &e);
                to_status(e)
            })
    }

    async fn discard(
        &self,
        request: Request<DiscardRequest>,
    ) -> Result<Response<DiscardResponse>, Status> {
        let by_ids = !request.get_ref().delivery_ids.is_empty();
        let (operate, read) = act_scopes(&request, by_ids)?;
        let who = caller(&request).cloned();
        self.notifier
            .discard(
                request.into_inner(),
                ActScope {
                    operate: &operate,
                    read: &read,
                },
            )
            .await
            .map(Response::new)
            .map_err(|e| {
                authz::record_refusal(who.as_ref(), Action::Operate, &e);
                to_status(e)
            })
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<GetDeliveryResponse>, Status> {
        let scope = scope_of(&request, Action::Read)?;
        self.notifier
            .get_delivery(request.into_inner(), &scope)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn create_silence(
        &self,
        request: Request<CreateSilenceRequest>,
    ) -> Result<Response<CreateSilenceResponse>, Status> {
        // A silence's matcher may span projects: only for whoever operates everywhere.
        check_everywhere(&request, Action::Operate)?;
        self.notifier
            .create_silence(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_silences(
        &self,
        request: Request<ListSilencesRequest>,
    ) -> Result<Response<ListSilencesResponse>, Status> {
        check_everywhere(&request, Action::Read)?;
        self.notifier
            .list_silences(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn expire_silence(
        &self,
        request: Request<ExpireSilenceRequest>,
    ) -> Result<Response<ExpireSilenceResponse>, Status> {
        check_everywhere(&request, Action::Operate)?;
        self.notifier
            .expire_silence(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_expectations(
        &self,
        request: Request<ListExpectationsRequest>,
    ) -> Result<Response<ListExpectationsResponse>, Status> {
        // Expectations name launch plans of every project.
        check_everywhere(&request, Action::Read)?;
        self.notifier
            .list_expectations()
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn send_test(
        &self,
        request: Request<SendTestRequest>,
    ) -> Result<Response<SendTestResponse>, Status> {
        // A test send goes to any destination the caller names, in no project.
        check_everywhere(&request, Action::Operate)?;
        self.notifier
            .send_test(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn enqueue_run_event(
        &self,
        request: Request<EnqueueRunEventRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let run = request.get_ref().run.as_ref();
        check_in(
            &request,
            Action::Enqueue,
            run.map(|r| (r.project.as_str(), r.domain.as_str())),
        )?;
        self.notifier
            .enqueue_run_event(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn enqueue_action_paused(
        &self,
        request: Request<EnqueueActionPausedRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let run = request
            .get_ref()
            .action
            .as_ref()
            .and_then(|a| a.run.as_ref());
        check_in(
            &request,
            Action::Enqueue,
            run.map(|r| (r.project.as_str(), r.domain.as_str())),
        )?;
        self.notifier
            .enqueue_action_paused(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_delivery_configs(
        &self,
        request: Request<ListDeliveryConfigsRequest>,
    ) -> Result<Response<ListDeliveryConfigsResponse>, Status> {
        config_view_allowed(
            &request,
            &request.get_ref().project,
            &request.get_ref().domain,
        )?;
        self.notifier
            .list_delivery_configs(request.into_inner())
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_rules(
        &self,
        request: Request<ListRulesRequest>,
    ) -> Result<Response<ListRulesResponse>, Status> {
        config_view_allowed(
            &request,
            &request.get_ref().project,
            &request.get_ref().domain,
        )?;
        self.notifier
            .list_rules(request.into_inner())
            .map(Response::new)
            .map_err(to_status)
    }
}

/// Where Redrive and Discard may change deliveries (operate) and where the caller may see them
/// (read: outside it a delivery is reported not found rather than refused by project).
/// By ids, a caller who may operate nowhere still gets the core's answer, which names the
/// project of the first id it can see; by filter there is nothing to name but the action.
fn act_scopes<T>(request: &Request<T>, by_ids: bool) -> Result<(Scope, Scope), Status> {
    let operate = match authz::scope(caller(request), Action::Operate) {
        Err(_) if by_ids => Scope::Within(Vec::new()),
        other => other.map_err(to_status)?,
    };
    let read = match &operate {
        Scope::All => Scope::All,
        // Operating implies seeing; the rest of what it may read, as configured.
        Scope::Within(_) => {
            authz::scope(caller(request), Action::Read).unwrap_or_else(|_| operate.clone())
        }
    };
    Ok((operate, read))
}

/// Configs as seen from a project: reading in it (in every domain when none is named); the ones
/// for every project: reading somewhere.
fn config_view_allowed<T>(request: &Request<T>, project: &str, domain: &str) -> Result<(), Status> {
    if project.is_empty() {
        return scope_of(request, Action::Read).map(|_| ());
    }
    if !domain.is_empty() {
        return check_in(request, Action::Read, Some((project, domain)));
    }
    let covered = match scope_of(request, Action::Read)? {
        Scope::All => true,
        Scope::Within(pairs) => pairs
            .iter()
            .any(|(p, d)| p.as_deref().is_none_or(|p| p == project) && d.is_none()),
    };
    if covered {
        Ok(())
    } else {
        Err(to_status(crate::error::Error::PermissionDenied(format!(
            "the caller may not read in {project}/* (every domain)"
        ))))
    }
}

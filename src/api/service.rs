//! The gRPC adapter: unwrap the request, call the core, map the error. Nothing else lives here.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::notify::Notifier;
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

#[tonic::async_trait]
impl NotificationService for GrpcNotificationService {
    async fn enqueue(
        &self,
        request: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
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
        self.notifier
            .list_pending(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
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
        self.notifier
            .redrive(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn discard(
        &self,
        request: Request<DiscardRequest>,
    ) -> Result<Response<DiscardResponse>, Status> {
        self.notifier
            .discard(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<GetDeliveryResponse>, Status> {
        self.notifier
            .get_delivery(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn create_silence(
        &self,
        request: Request<CreateSilenceRequest>,
    ) -> Result<Response<CreateSilenceResponse>, Status> {
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
        self.notifier
            .expire_silence(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_expectations(
        &self,
        _request: Request<ListExpectationsRequest>,
    ) -> Result<Response<ListExpectationsResponse>, Status> {
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
        self.notifier
            .list_delivery_configs(request.into_inner())
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_rules(
        &self,
        request: Request<ListRulesRequest>,
    ) -> Result<Response<ListRulesResponse>, Status> {
        self.notifier
            .list_rules(request.into_inner())
            .map(Response::new)
            .map_err(to_status)
    }
}

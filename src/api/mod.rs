//! The gRPC server: our service, gRPC health, and server reflection (v1 and v1alpha, because
//! grpcurl 1.8.6 only speaks v1alpha).

pub mod codec;
mod service;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::notify::Notifier;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::flytenotify::v1::notification_service_server::{
    NotificationServiceServer, SERVICE_NAME,
};
pub use service::GrpcNotificationService;

/// Bound on decoded request size at the transport. The core's own, lower limit
/// (`limits.maxRequestBytes`) answers with InvalidArgument naming the problem; this one only
/// guards memory against absurd requests.
const TRANSPORT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Serves until `shutdown` completes, then stops accepting, reports NOT_SERVING, and waits for
/// calls in flight. gRPC health follows `serving` meanwhile (false while the ledger cannot write).
pub async fn serve(
    notifier: Arc<Notifier>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut serving: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let status = |up: bool| {
        if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    let up = *serving.borrow_and_update();
    reporter.set_service_status("", status(up)).await;
    reporter.set_service_status(SERVICE_NAME, status(up)).await;
    let follower = reporter.clone();
    let follow = tokio::spawn(async move {
        while serving.changed().await.is_ok() {
            let up = *serving.borrow_and_update();
            follower.set_service_status("", status(up)).await;
            follower.set_service_status(SERVICE_NAME, status(up)).await;
        }
    });

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set is valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor set is valid");

    let service = NotificationServiceServer::new(GrpcNotificationService::new(notifier))
        .max_decoding_message_size(TRANSPORT_MAX_MESSAGE);

    let shutdown = async move {
        shutdown.await;
        follow.abort();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
    };
    Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

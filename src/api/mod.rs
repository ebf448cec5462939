//! The gRPC server: our service, gRPC health, and server reflection (v1 and v1alpha, because
//! grpcurl 1.8.6 only speaks v1alpha).

pub mod auth;
mod call_metrics;
pub mod codec;
mod connections;
pub mod http_json;
pub mod oidc;
mod service;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;

use crate::config::TransportConfig;
use tonic_health::ServingStatus;

use crate::notify::Notifier;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::flytenotify::v1::notification_service_server::{
    NotificationServiceServer, SERVICE_NAME,
};
pub use service::GrpcNotificationService;

/// How the server treats connections and callers.
pub struct ServeOptions {
    pub transport: TransportConfig,
    /// `limits.maxRequestBytes`: the decoding limit.
    pub max_request_bytes: usize,
    /// Bearer-token checks; None when auth is off.
    pub auth: Option<auth::AuthLayer>,
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Why the processing side cannot do its job (None while it can): a cloud queue that cannot
    /// be read, a sender that keeps failing. Health reports it as the service
    /// `flytenotify.v1.Processor`, so that a probe can tell it from the API, which keeps serving.
    pub processing: Option<watch::Receiver<Option<String>>>,
    /// Whether to time calls for the Prometheus endpoint: only when it is on, since the labels
    /// cost allocations on every call.
    pub time_calls: bool,
    /// `shutdownDrainDelay`: how long health reports NOT_SERVING, with calls still answered,
    /// before the port closes.
    pub drain_delay: std::time::Duration,
    /// `http.enabled`: serve every RPC as HTTP/JSON (HTTP/1.1 and HTTP/2) on this port too.
    pub http_json: bool,
    /// The web console's routes, served at `/` beside HTTP/JSON (needs `http_json`).
    pub console: Option<axum::Router>,
}

/// The health service name of the processing side: the cloud queue's consumer and the senders.
pub const PROCESSOR_HEALTH: &str = "flytenotify.v1.Processor";

/// Serves until `shutdown` completes; then reports NOT_SERVING at once, goes on answering for
/// `drain_delay` (so that a Service routes new calls elsewhere first), stops accepting, and waits
/// for calls in flight. gRPC health follows `serving` meanwhile (false while the ledger cannot write).
pub async fn serve(
    notifier: Arc<Notifier>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut serving: watch::Receiver<bool>,
    options: ServeOptions,
) -> Result<(), tonic::transport::Error> {
    let ServeOptions {
        transport,
        max_request_bytes,
        auth,
        tls,
        processing,
        time_calls,
        drain_delay,
        http_json,
        console,
    } = options;
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

    let processor_follow = processing.map(|mut processing| {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            loop {
                let up = processing.borrow_and_update().is_none();
                reporter
                    .set_service_status(PROCESSOR_HEALTH, status(up))
                    .await;
                if processing.changed().await.is_err() {
                    return;
                }
            }
        })
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

    // A request over the limit is refused from its 5-byte length prefix, before it is buffered.
    let service = NotificationServiceServer::new(GrpcNotificationService::new(notifier))
        .max_decoding_message_size(max_request_bytes);

    let shutdown = async move {
        shutdown.await;
        follow.abort();
        if let Some(f) = processor_follow {
            f.abort();
        }
        for name in ["", SERVICE_NAME, PROCESSOR_HEALTH] {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        if !drain_delay.is_zero() {
            tracing::info!(
                "health reports NOT_SERVING; still answering for {} (shutdownDrainDelay)",
                humantime::format_duration(drain_delay)
            );
            tokio::time::sleep(drain_delay).await;
        }
    };
    // Without TCP_NODELAY (set on each accepted socket) every answer over about a kilobyte waits
    // ~40 ms for Nagle's algorithm and the peer's delayed ACK: every Preview, every ListPending
    // page.
    let incoming = connections::incoming(listener, &transport);
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .tcp_nodelay(true)
        // HTTP/1.1 for curl and browsers; gRPC clients still speak HTTP/2 on the same port.
        .accept_http1(http_json)
        .max_concurrent_streams(transport.max_concurrent_streams)
        // Beyond this many calls in flight on one connection, more are refused at once with
        // RESOURCE_EXHAUSTED rather than queued without bound.
        .concurrency_limit_per_connection(transport.max_in_flight_per_connection)
        .load_shed(true)
        // The whole call, the request body included: a half-sent message is cut off here.
        .timeout(transport.request_timeout)
        // A peer that stops answering pings (gone, or half-open) is closed.
        .http2_keepalive_interval(Some(transport.keepalive_interval))
        .http2_keepalive_timeout(Some(transport.keepalive_timeout))
        // Outermost: HTTP/JSON calls become gRPC calls here, so that everything below (metrics,
        // the size limit, auth, the service) handles both faces alike.
        .layer(tower::util::option_layer(http_json.then(|| {
            http_json::HttpJsonLayer::new(max_request_bytes, transport.request_timeout, time_calls)
                .with_console(console)
        })))
        // Then: sees every call's final status, refusals by the layers below included.
        .layer(tower::util::option_layer(
            time_calls.then(call_metrics::layer),
        ))
        .layer(tower::util::MapResponseLayer::new(too_large_is_invalid(
            max_request_bytes,
        )))
        .layer(tower::util::option_layer(auth))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// tonic refuses a request over the decoding limit with OUT_OF_RANGE before our code sees it;
/// callers get what every other invalid request gets instead: INVALID_ARGUMENT, with the
/// `request` field and the limit named in BadRequest details.
fn too_large_is_invalid(
    max_request_bytes: usize,
) -> impl Fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> + Clone {
    move |response| {
        let Some(status) = tonic::Status::from_header_map(response.headers()) else {
            return response;
        };
        if status.code() != tonic::Code::OutOfRange
            || !status.message().contains("message length too large")
        {
            return response;
        }
        let size = status
            .message()
            .split("found ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("more than");
        let refused = status::to_status(crate::error::Error::InvalidArgument(vec![
            crate::error::FieldViolation::new(
                "request",
                format!(
                    "the request is {size} bytes; at most {max_request_bytes} are accepted \
                     (limits.maxRequestBytes)"
                ),
            ),
        ]));
        refused.into_http()
    }
}

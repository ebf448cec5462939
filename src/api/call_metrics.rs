//! gRPC calls by service, method and status code, with how long each took to answer: a tower
//! layer outside everything else, so that calls refused by auth or the size limit count too.
//!
//! The code is read from the response's headers: tonic answers every failed unary call
//! "trailers-only", with grpc-status in the headers, and a call without one there succeeded. For
//! a streaming call (health Watch, reflection) the time is until its headers, not its end.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prost::Message;
use tower::{Layer, Service};

use crate::telemetry::GRPC_HANDLING;

/// The label values every unknown path is folded into: a caller choosing paths must not be able
/// to mint a new time series per request.
const UNKNOWN: &str = "unknown";

/// "/package.Service/Method" of every method this server has.
static KNOWN: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut known = HashSet::new();
    for encoded in [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    known.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    for version in ["v1", "v1alpha"] {
        known.insert(format!(
            "/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
        ));
    }
    known
});

/// The service and method labels for a request path.
fn labels(path: &str) -> (String, String) {
    if KNOWN.contains(path)
        && let Some((service, method)) = path.trim_start_matches('/').split_once('/')
    {
        return (service.to_owned(), method.to_owned());
    }
    (UNKNOWN.to_owned(), UNKNOWN.to_owned())
}

/// The status code's name as gRPC's own tools print it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CallMetricsLayer;

impl<S> Layer<S> for CallMetricsLayer {
    type Service = CallMetrics<S>;

    fn layer(&self, inner: S) -> CallMetrics<S> {
        CallMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CallMetrics<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for CallMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = labels(request.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(response) => tonic::Status::from_header_map(response.headers())
                    .map_or(tonic::Code::Ok, |status| status.code()),
                // The layers inside answer every failure as a status; an error here never
                // reached the client as one, so it counts as gRPC's catch-all.
                Err(_) => tonic::Code::Unknown,
            };
            record(service, method, code, started);
            result
        })
    }
}

/// One call of `service`/`method` that ended with `code`, timed from `started`. Also for calls
/// answered before they reach this layer (an HTTP/JSON body that does not transcode).
pub fn record(service: String, method: String, code: tonic::Code, started: Instant) {
    metrics::histogram!(
        GRPC_HANDLING,
        "grpc_service" => service,
        "grpc_method" => method,
        "grpc_code" => code_name(code),
    )
    .record(started.elapsed().as_secs_f64());
}

/// The layer, with the known methods read from the descriptors now rather than on the first call.
pub fn layer() -> CallMetricsLayer {
    LazyLock::force(&KNOWN);
    CallMetricsLayer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_labelled_and_others_folded() {
        assert_eq!(
            labels("/flytenotify.v1.NotificationService/Enqueue"),
            (
                "flytenotify.v1.NotificationService".into(),
                "Enqueue".into()
            )
        );
        assert_eq!(
            labels("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health".into(), "Check".into())
        );
        assert_eq!(
            labels("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo").1,
            "ServerReflectionInfo"
        );
        for hostile in [
            "/flytenotify.v1.NotificationService/Enqueue2",
            "/x/y",
            "/",
            "",
        ] {
            assert_eq!(
                labels(hostile),
                (UNKNOWN.into(), UNKNOWN.into()),
                "{hostile}"
            );
        }
    }
}

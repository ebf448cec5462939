//! Every `flytenotify.v1.NotificationService` RPC as HTTP/JSON, on the gRPC port.
//!
//! This is a tower layer outside all the others. It turns an HTTP/JSON call into the gRPC call it
//! stands for (same path the gRPC client would use, the body transcoded to protobuf and framed,
//! the caller's headers kept, `authorization` included) and sends that down the same stack as
//! any gRPC call: call metrics, the size limit, auth and the service see a gRPC call and treat it
//! exactly so. The gRPC answer is turned back into JSON. Doing it here rather than beside the
//! service means no check can be applied to one face and forgotten on the other.
//!
//! The web console, when it is served on this port, is routed here too: any request that is
//! neither gRPC nor an API path is a browser's. It logs its viewers in itself (cookies, not the
//! `authorization` header), with the same `Authenticator` and permission rules.

mod reply;
mod routes;
mod transcode;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
use tonic::Status;
use tonic::body::Body;

use crate::error::{Error, FieldViolation};
use routes::{Resolved, Route};

const GRPC_PREFIX: &str = "/flytenotify.v1.NotificationService/";

/// Time kept back from `transport.requestTimeout` for the JSON answer. tonic's own timeout sits
/// outside every layer and answers in gRPC's form (an empty HTTP 200 with a grpc-status header),
/// which an HTTP client would take for success; ending the call here first answers
/// DEADLINE_EXCEEDED (504) in JSON instead.
const ANSWER_MARGIN: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct HttpJsonLayer {
    max_request_bytes: usize,
    deadline: Duration,
    /// Whether call metrics are on: a request refused here, before the call-metrics layer sees
    /// it, is counted here instead.
    time_calls: bool,
    /// The web console's routes, for what is neither gRPC nor HTTP/JSON.
    console: Option<axum::Router>,
}

impl HttpJsonLayer {
    /// `max_request_bytes` bounds the JSON body as sent; `request_timeout` is the per-call timeout.
    pub fn new(max_request_bytes: usize, request_timeout: Duration, time_calls: bool) -> Self {
        Self {
            max_request_bytes,
            deadline: request_timeout.saturating_sub(ANSWER_MARGIN),
            time_calls,
            console: None,
        }
    }

    /// Serve the web console at `/` too.
    pub fn with_console(mut self, console: Option<axum::Router>) -> Self {
        self.console = console;
        self
    }
}

impl<S> tower::Layer<S> for HttpJsonLayer {
    type Service = HttpJson<S>;

    fn layer(&self, inner: S) -> HttpJson<S> {
        HttpJson {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct HttpJson<S> {
    inner: S,
    layer: HttpJsonLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a request is: HTTP/JSON for one of our RPCs, HTTP/JSON for no RPC, a page of the web
/// console, or gRPC (passed on).
enum Kind {
    Rpc(Route),
    Refused(Status, Option<Vec<Method>>),
    Console,
    Grpc,
}

fn is_grpc(request: &http::Request<Body>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn is_json(request: &http::Request<Body>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn classify(request: &http::Request<Body>, console: bool) -> Kind {
    let path = request.uri().path();
    if let Some(rpc) = path.strip_prefix(GRPC_PREFIX)
        && is_json(request)
    {
        // gRPC's own path with a JSON body: `POST /flytenotify.v1.NotificationService/Enqueue`.
        return match routes::rpc_names().find(|name| *name == rpc) {
            Some(rpc) if request.method() == Method::POST => Kind::Rpc(Route {
                rpc,
                method: Method::POST,
                path_field: None,
            }),
            Some(_) => Kind::Refused(
                Status::unimplemented(format!("{path} takes POST with a JSON body")),
                Some(vec![Method::POST]),
            ),
            None => Kind::Refused(Status::unimplemented(format!("no RPC {path}")), None),
        };
    }
    if !path.starts_with(routes::API_PREFIX) {
        return if console && !is_grpc(request) && !path.starts_with(GRPC_PREFIX) {
            Kind::Console
        } else {
            Kind::Grpc
        };
    }
    match routes::resolve(request.method(), path) {
        Resolved::Found(route) => Kind::Rpc(route),
        Resolved::WrongMethod(allowed) => {
            let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            Kind::Refused(
                Status::unimplemented(format!(
                    "{} {path} is not served; {path} takes {}",
                    request.method(),
                    names.join(", ")
                )),
                Some(allowed),
            )
        }
        Resolved::NotFound => Kind::Refused(
            Status::not_found(format!(
                "no such path: {path} (the README's HTTP/JSON table lists them)"
            )),
            None,
        ),
    }
}

fn invalid(violation: FieldViolation) -> Status {
    super::status::to_status(Error::InvalidArgument(vec![violation]))
}

impl<S> tower::Service<http::Request<Body>> for HttpJson<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let route = match classify(&request, self.layer.console.is_some()) {
            Kind::Grpc => return Box::pin(self.inner.call(request)),
            Kind::Console => {
                let mut console = self.layer.console.clone().expect("Console only with one");
                // A Router is always ready, and never fails: its errors are responses.
                let answer = tower::Service::<http::Request<Body>>::call(&mut console, request);
                return Box::pin(async move {
                    match answer.await {
                        Ok(response) => Ok(response.map(Body::new)),
                        Err(never) => match never {},
                    }
                });
            }
            Kind::Refused(status, allowed) => {
                let mut response = reply::error(&status);
                if let Some(allowed) = allowed {
                    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
                        response.headers_mut().insert(http::header::ALLOW, v);
                    }
                }
                return Box::pin(async move { Ok(response) });
            }
            Kind::Rpc(route) => route,
        };
        // The inner service was made ready for this call; the clone waits for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let deadline = layer.deadline;
            match tokio::time::timeout(deadline, call(inner, request, route, &layer)).await {
                Ok(Ok(Ok(response))) => Ok(response),
                Ok(Ok(Err(status))) => Ok(reply::error(&status)),
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(reply::error(&Status::deadline_exceeded(format!(
                    "no answer within {} (transport.requestTimeout)",
                    humantime::format_duration(deadline + ANSWER_MARGIN)
                )))),
            }
        })
    }
}

/// The HTTP/JSON call as a gRPC call down `inner`, and its answer as JSON. The outer Result is
/// the inner service's own failure; the inner one, the status to answer with.
async fn call<S>(
    mut inner: S,
    request: http::Request<Body>,
    route: Route,
    layer: &HttpJsonLayer,
) -> Result<Result<http::Response<Body>, Status>, S::Error>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    let method = transcode::method(route.rpc);
    let (mut parts, body) = request.into_parts();

    let started = std::time::Instant::now();
    let message = match read_request(&method, &parts, body, &route, layer).await {
        Ok(message) => message,
        Err(status) => {
            if layer.time_calls {
                let service = method.parent_service().full_name().to_string();
                let code = status.code();
                super::call_metrics::record(service, route.rpc.to_string(), code, started);
            }
            return Ok(Err(status));
        }
    };

    // The gRPC call: the caller's headers (authorization among them) with gRPC's own.
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    parts.method = Method::POST;
    parts.uri = format!("{GRPC_PREFIX}{}", route.rpc)
        .parse()
        .expect("an RPC name makes a valid path");
    let headers = &mut parts.headers;
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.remove(http::header::ACCEPT_ENCODING);
    headers.remove("grpc-encoding");
    headers.remove("grpc-accept-encoding");
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    let grpc = http::Request::from_parts(parts, Body::new(Full::new(framed.freeze())));

    let response = inner.call(grpc).await?;
    Ok(read_response(&method, response).await)
}

/// The request message's bytes, from the body, the query string and the path.
async fn read_request(
    method: &prost_reflect::MethodDescriptor,
    parts: &http::request::Parts,
    body: Body,
    route: &Route,
    layer: &HttpJsonLayer,
) -> Result<Vec<u8>, Status> {
    let body = match Limited::new(body, layer.max_request_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(invalid(FieldViolation::new(
                "request",
                format!(
                    "the body is more than {} bytes (limits.maxRequestBytes)",
                    layer.max_request_bytes
                ),
            )));
        }
        Err(e) => {
            return Err(Status::cancelled(format!(
                "the request body could not be read: {e}"
            )));
        }
    };
    if route.method == Method::GET && !body.is_empty() {
        return Err(invalid(FieldViolation::new(
            "body",
            format!(
                "GET takes its fields from the query string; send {} no body",
                parts.uri.path()
            ),
        )));
    }
    let mut extra = if route.method == Method::GET {
        transcode::query_fields(method, parts.uri.query()).map_err(invalid)?
    } else {
        Map::new()
    };
    if let Some((field, value)) = &route.path_field {
        extra.insert(field.to_string(), Value::String(value.clone()));
    }
    transcode::request(method, &body, extra).map_err(invalid)
}

/// The gRPC answer as JSON: the message on success, the status otherwise.
async fn read_response(
    method: &prost_reflect::MethodDescriptor,
    response: http::Response<Body>,
) -> Result<http::Response<Body>, Status> {
    // A refusal before the service (auth, the size limit) is "trailers-only": all in the headers.
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(status);
    }
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Status::internal(format!("the answer could not be read: {e}")))?;
    if let Some(status) = collected.trailers().and_then(Status::from_header_map)
        && status.code() != tonic::Code::Ok
    {
        return Err(status);
    }
    let mut data: Bytes = collected.to_bytes();
    if data.len() < 5 || data[0] != 0 {
        return Err(internal(
            "the service's answer is not one uncompressed message",
        ));
    }
    data.advance(1);
    let len = data.get_u32() as usize;
    if data.len() != len {
        return Err(internal("the service's answer is not one whole message"));
    }
    let json = transcode::response(method, &data).map_err(|e| internal(&format!("{e:#}")))?;
    Ok(reply::json(StatusCode::OK, json))
}

fn internal(what: &str) -> Status {
    super::status::to_status(Error::Internal(anyhow::anyhow!("HTTP/JSON answer: {what}")))
}

//! The console's URL table and handlers. Each handler reads its request, calls the core and
//! picks a view; the pages themselves are in templates/console/.
//!
//! GET  /                             deliveries: state tabs, filters, paging, the chart
//! GET  /deliveries/{id}              one delivery: fields, message, history, actions
//! GET  /deliveries/{id}/{action}     the confirmation of redrive, discard or send-test
//! POST /deliveries/{id}/{action}     the action itself (CSRF-checked)
//! GET  /login, POST /login, POST /logout   only when flyteNotify.auth is on
//! GET  /console.css

/// The console shows and acts everywhere: config refuses it beside per-project permissions
/// (flyteNotify.auth.permissions), which it does not apply yet.
const ALL: crate::authz::Scope = crate::authz::Scope::All;
const OPERATE_ALL: crate::notify::ActScope<'static> = crate::notify::ActScope {
    operate: &crate::authz::Scope::All,
    read: &crate::authz::Scope::All,
};

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::ConsoleOptions;
use super::chart::chart;
use super::session::{self, CSRF_COOKIE, TOKEN_COOKIE};
use super::views::{
    Actions, ConfirmPage, DeliveriesPage, DeliveryPage, Event, Example, Layout, LoginPage, Message,
    ProblemPage, Row, Tab,
};
use crate::error::Error;
use crate::notify::Notifier;
use crate::proto::flyteidl::admin::{
    EmailNotification, Notification, PagerDutyNotification, SlackNotification, notification,
};
use crate::proto::flytenotify::v1 as api;

/// Rows per page of the deliveries list, unless `?limit=` asks for another count up to
/// MAX_PAGE_SIZE.
const PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;
/// The chart's span, in hours.
const CHART_HOURS: u32 = 24;

/// What stays unencoded in one path segment or query value of our own URLs: the unreserved
/// characters, so that ids read as themselves in the address bar.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encoded(s: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(s, UNRESERVED)
}

const STYLESHEET: &str = include_str!("../../templates/console/console.css");

/// The tabs, in the order on-call looks at them.
const STATES: [&str; 5] = ["pending", "retrying", "dead", "silenced", "grouped"];

const EXAMPLES: [(&str, &str); 4] = [
    ("eq(state,dead)", "everything that gave up"),
    (
        "eq(project,flytesnacks)+eq(state,dead)",
        "dead deliveries of one project",
    ),
    ("eq(channel,slack)", "open Slack deliveries"),
    (
        "value_in(state,pending;retrying)",
        "what is still being tried",
    ),
];

#[derive(Clone)]
struct Console {
    notifier: Arc<Notifier>,
    options: ConsoleOptions,
}

/// The console's routes over `notifier`, to serve on a listener of its own (`console::serve`)
/// or to mount beside other routes.
pub fn router(notifier: Arc<Notifier>, options: ConsoleOptions) -> Router {
    let console = Console { notifier, options };
    Router::new()
        .route("/", get(deliveries))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/{action}", get(confirm).post(act))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            require_login,
        ))
        .route("/login", get(login_form).post(login))
        .route("/console.css", get(stylesheet))
        .with_state(console)
}

/// Sends a browser without an accepted token to the login form (a GET) or refuses the request.
async fn require_login(State(c): State<Console>, request: Request, next: Next) -> Response {
    if session::logged_in(&c.options, request.headers()) {
        return next.run(request).await;
    }
    if request.method() == axum::http::Method::GET {
        let next = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let target = format!("/login?next={}", encoded(next));
        return Redirect::to(&target).into_response();
    }
    problem(
        request.headers(),
        &c.options,
        StatusCode::UNAUTHORIZED,
        "Log in first: this service asks for a bearer token.".into(),
    )
}

/// The frame's data for this request, and the CSRF cookie to set when the browser has none.
fn layout(
    headers: &HeaderMap,
    options: &ConsoleOptions,
    title: impl Into<String>,
) -> (Layout, Option<HeaderValue>) {
    let (csrf, new) = session::csrf_value(headers);
    let cookie = new.then(|| session::set_cookie(CSRF_COOKIE, &csrf, None));
    let layout = Layout {
        title: title.into(),
        csrf,
        logout: options.tokens.is_some(),
    };
    (layout, cookie)
}

/// A rendered page with its status and, when new, the CSRF cookie.
fn page(
    status: StatusCode,
    body: Result<String, askama::Error>,
    cookie: Option<HeaderValue>,
) -> Response {
    let mut response = match body {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render; the log says why",
            )
                .into_response()
        }
    };
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    // The pages show operator data: no caching, no framing by other sites.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"),
    );
    response
}

fn problem(
    headers: &HeaderMap,
    options: &ConsoleOptions,
    status: StatusCode,
    message: String,
) -> Response {
    let title = status.canonical_reason().unwrap_or("Problem").to_string();
    let (layout, cookie) = layout(headers, options, title);
    let view = ProblemPage {
        layout,
        status: status.as_u16(),
        message,
    };
    page(status, view.render(), cookie)
}

/// The core's error as a page: what was wrong in the request, or that the service is in trouble.
fn core_problem(headers: &HeaderMap, options: &ConsoleOptions, e: Error) -> Response {
    let (status, message) = match &e {
        Error::InvalidArgument(violations) => (
            StatusCode::BAD_REQUEST,
            violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Error::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
        other => (StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    };
    problem(headers, options, status, message)
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    filters: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    limit: Option<u32>,
}

async fn deliveries(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let filters = q.filters.trim().to_string();
    let limit = q.limit.unwrap_or(PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
    let listed = c
        .notifier
        .list_pending(
            api::ListPendingRequest {
                filters: filters.clone(),
                limit,
                token: q.token.clone(),
            },
            &ALL,
        )
        .await;
    let now = now_millis();
    let (rows, next, problem, status) = match listed {
        Ok(page) => (
            page.deliveries.iter().map(|d| Row::of(d, now)).collect(),
            page.token,
            None,
            StatusCode::OK,
        ),
        // A filter typed wrong is the common case: the page stays, with the core's words.
        Err(Error::InvalidArgument(violations)) => (
            Vec::new(),
            String::new(),
            Some(
                violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            StatusCode::BAD_REQUEST,
        ),
        Err(e) => return core_problem(&headers, &c.options, e),
    };
    let hour = Duration::from_secs(3600);
    let buckets = match c.notifier.activity(hour * CHART_HOURS, hour).await {
        Ok(b) => b,
        Err(e) => return core_problem(&headers, &c.options, e),
    };
    let tabs = STATES
        .iter()
        .map(|state| {
            let tab = format!("eq(state,{state})");
            Tab {
                label: state,
                active: filters == tab,
                filters: tab,
            }
        })
        .collect();
    let (layout, cookie) = layout(&headers, &c.options, "Deliveries");
    let view = DeliveriesPage {
        layout,
        tabs,
        examples: EXAMPLES
            .iter()
            .map(|(filters, what)| Example { filters, what })
            .collect(),
        rows,
        next,
        paged: !q.token.is_empty(),
        // Kept across pages only when asked for, so that the usual links stay short.
        limit_param: q
            .limit
            .map(|_| format!("&limit={limit}"))
            .unwrap_or_default(),
        problem,
        chart: chart(&buckets),
        hours: CHART_HOURS,
        filters,
    };
    page(status, view.render(), cookie)
}

#[derive(Deserialize, Default)]
struct DeliveryQuery {
    #[serde(default)]
    done: String,
}

/// What an action did, in words, for the page the browser lands on after it.
fn notice(done: &str) -> Option<String> {
    Some(
        match done {
            "redriven" => {
                "Redriven: it went back to pending, to be sent again; its state is below."
            }
            "discarded" => "Discarded: it stays in the ledger and will not be sent.",
            "test" => "This is the test message just enqueued; it goes out like any delivery.",
            "skipped" => "Nothing changed: only dead deliveries can be redriven or discarded.",
            _ => return None,
        }
        .to_string(),
    )
}

async fn delivery(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> Response {
    let got = c
        .notifier
        .get_delivery(
            api::GetDeliveryRequest {
                delivery_id: id.clone(),
            },
            &ALL,
        )
        .await;
    let got = match got {
        Ok(got) => got,
        Err(e) => return core_problem(&headers, &c.options, e),
    };
    let inspected = match c.notifier.inspect(&id).await {
        Ok(Some(inspected)) => inspected,
        Ok(None) => {
            return core_problem(
                &headers,
                &c.options,
                Error::NotFound(format!("no delivery {id:?}")),
            );
        }
        Err(e) => return core_problem(&headers, &c.options, e),
    };
    let now = now_millis();
    let d = got.delivery.unwrap_or_default();
    let org = d
        .execution_id
        .as_ref()
        .map(|e| e.org.clone())
        .unwrap_or_default();
    let row = Row::of(&d, now);
    let dead = row.state == "dead";
    let (message, message_problem) = match inspected.message {
        Ok(m) => (Some(Message::of(m)), None),
        Err(why) => (None, Some(format!("The message cannot be shown: {why}"))),
    };
    let (layout, cookie) = layout(
        &headers,
        &c.options,
        format!("{}/{}", row.project, row.name),
    );
    let view = DeliveryPage {
        layout,
        actions: Actions {
            redrive: dead,
            discard: dead,
            send_test: test_target(&d).is_some(),
        },
        org,
        execution_link: inspected.execution_link,
        message,
        message_problem,
        history: got.history.iter().map(|e| Event::of(e, now)).collect(),
        notice: notice(&q.done),
        d: row,
    };
    page(StatusCode::OK, view.render(), cookie)
}

/// The test a delivery's page can send: to the same recipients by the same channel. Webhooks and
/// Flyte 2 rules are left to `flyte-notify send-test`, which names their whole target.
fn test_target(d: &api::Delivery) -> Option<api::send_test_request::Target> {
    let recipients_email = d.recipients.clone();
    if recipients_email.is_empty() {
        return None;
    }
    let kind = match d.channel.as_str() {
        "email" => notification::Type::Email(EmailNotification {
            recipients_email,
            template: String::new(),
        }),
        "slack" => notification::Type::Slack(SlackNotification {
            recipients_email,
            template: String::new(),
        }),
        "pagerduty" => notification::Type::PagerDuty(PagerDutyNotification {
            recipients_email,
            template: String::new(),
        }),
        _ => return None,
    };
    Some(api::send_test_request::Target::Notification(Notification {
        phases: Vec::new(),
        r#type: Some(kind),
    }))
}

/// An action's name in the URL, its verb, and what confirming it does.
fn action(name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match name {
        "redrive" => (
            "redrive",
            "Redrive",
            "It goes back to pending and is sent again, with a fresh count of attempts.",
        ),
        "discard" => (
            "discard",
            "Discard",
            "It is set aside for good: it stays in the ledger, with this note, and is never sent.",
        ),
        "send-test" => (
            "send-test",
            "Send a test",
            "A test message goes to the same recipients by the same channel, as a new delivery; \
             this one is left as it is.",
        ),
        _ => return None,
    })
}

async fn confirm(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let Some((action, verb, consequence)) = action(&name) else {
        return problem(
            &headers,
            &c.options,
            StatusCode::NOT_FOUND,
            format!("no action {name:?}"),
        );
    };
    let got = match c
        .notifier
        .get_delivery(api::GetDeliveryRequest { delivery_id: id }, &ALL)
        .await
    {
        Ok(got) => got,
        Err(e) => return core_problem(&headers, &c.options, e),
    };
    let (layout, cookie) = layout(&headers, &c.options, verb);
    let view = ConfirmPage {
        layout,
        d: Row::of(&got.delivery.unwrap_or_default(), now_millis()),
        action,
        verb,
        consequence,
    };
    page(StatusCode::OK, view.render(), cookie)
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

async fn act(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    Form(form): Form<ActForm>,
) -> Response {
    if !session::csrf_ok(&headers, &form.csrf) {
        return csrf_refused(&headers, &c.options);
    }
    let note = if form.note.trim().is_empty() {
        "from the web console".to_string()
    } else {
        form.note.trim().to_string()
    };
    let here = |done: &str| {
        Redirect::to(&format!("/deliveries/{}?done={done}", encoded(&id))).into_response()
    };
    match name.as_str() {
        "redrive" => match c
            .notifier
            .redrive(
                api::RedriveRequest {
                    delivery_ids: vec![id.clone()],
                    note,
                    ..Default::default()
                },
                OPERATE_ALL,
            )
            .await
        {
            Ok(r) if r.delivery_ids.is_empty() => here("skipped"),
            Ok(_) => here("redriven"),
            Err(e) => core_problem(&headers, &c.options, e),
        },
        "discard" => match c
            .notifier
            .discard(
                api::DiscardRequest {
                    delivery_ids: vec![id.clone()],
                    note,
                    ..Default::default()
                },
                OPERATE_ALL,
            )
            .await
        {
            Ok(r) if r.delivery_ids.is_empty() => here("skipped"),
            Ok(_) => here("discarded"),
            Err(e) => core_problem(&headers, &c.options, e),
        },
        "send-test" => {
            let got = match c
                .notifier
                .get_delivery(
                    api::GetDeliveryRequest {
                        delivery_id: id.clone(),
                    },
                    &ALL,
                )
                .await
            {
                Ok(got) => got,
                Err(e) => return core_problem(&headers, &c.options, e),
            };
            let Some(target) = test_target(&got.delivery.unwrap_or_default()) else {
                return problem(
                    &headers,
                    &c.options,
                    StatusCode::BAD_REQUEST,
                    "this delivery's channel has no test from the console; use \
                     `flyte-notify send-test`"
                        .into(),
                );
            };
            match c
                .notifier
                .send_test(api::SendTestRequest {
                    target: Some(target),
                    run: None,
                })
                .await
            {
                Ok(r) => Redirect::to(&format!(
                    "/deliveries/{}?done=test",
                    encoded(&r.delivery_id)
                ))
                .into_response(),
                Err(e) => core_problem(&headers, &c.options, e),
            }
        }
        other => problem(
            &headers,
            &c.options,
            StatusCode::NOT_FOUND,
            format!("no action {other:?}"),
        ),
    }
}

fn csrf_refused(headers: &HeaderMap, options: &ConsoleOptions) -> Response {
    problem(
        headers,
        options,
        StatusCode::FORBIDDEN,
        "The form's security token does not match this browser's (an old tab, or a form sent \
         from another site). Go back, reload the page and try again."
            .into(),
    )
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// Only console paths to go back to after logging in, so that the form cannot be used to send
/// someone elsewhere.
fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_string()
    } else {
        "/".to_string()
    }
}

async fn login_form(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if c.options.tokens.is_none() {
        return Redirect::to("/").into_response();
    }
    let (layout, cookie) = layout(&headers, &c.options, "Log in");
    let view = LoginPage {
        layout,
        next: safe_next(&q.next),
        problem: None,
    };
    page(StatusCode::OK, view.render(), cookie)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(tokens) = &c.options.tokens else {
        return Redirect::to("/").into_response();
    };
    if !session::csrf_ok(&headers, &form.csrf) {
        return csrf_refused(&headers, &c.options);
    }
    let token = form.token.trim();
    if session::cookie_safe(token) && tokens.accepts(token) {
        let mut response = Redirect::to(&safe_next(&form.next)).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(TOKEN_COOKIE, token, None),
        );
        return response;
    }
    // Never echo the token back, not even into the form.
    let (layout, cookie) = layout(&headers, &c.options, "Log in");
    let view = LoginPage {
        layout,
        next: safe_next(&form.next),
        problem: Some("That token is not one this service accepts."),
    };
    page(StatusCode::UNAUTHORIZED, view.render(), cookie)
}

async fn logout(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ActForm>,
) -> Response {
    if !session::csrf_ok(&headers, &form.csrf) {
        return csrf_refused(&headers, &c.options);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(TOKEN_COOKIE, "", Some(0)),
    );
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_login() {
        assert_eq!(
            safe_next("/deliveries/abc?done=x"),
            "/deliveries/abc?done=x"
        );
        for away in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "",
        ] {
            assert_eq!(safe_next(away), "/", "{away:?}");
        }
    }

    #[test]
    fn notices_come_from_a_fixed_list() {
        assert!(notice("redriven").unwrap().starts_with("Redriven"));
        assert_eq!(notice("<script>"), None);
    }

    #[test]
    fn tests_go_to_the_same_recipients_by_the_same_channel_and_never_to_webhooks() {
        let d = api::Delivery {
            channel: "slack".into(),
            recipients: vec!["#oncall".into()],
            ..Default::default()
        };
        let Some(api::send_test_request::Target::Notification(n)) = test_target(&d) else {
            panic!("a Slack delivery has a test");
        };
        assert!(
            matches!(n.r#type, Some(notification::Type::Slack(s)) if s.recipients_email == ["#oncall"])
        );
        let webhook = api::Delivery {
            channel: "webhook".into(),
            ..d
        };
        assert!(test_target(&webhook).is_none());
    }
}

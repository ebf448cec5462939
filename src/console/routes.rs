//! The console's URL table and handlers. Each handler reads its request, calls the core and
//! picks a view; the pages themselves are in templates/console/.
//!
//! GET  /                             deliveries: state tabs, filters, paging, the chart
//! GET  /deliveries/{id}              one delivery: fields, message, history, actions
//! GET  /deliveries/{id}/{action}     the confirmation of redrive, discard or send-test
//! POST /deliveries/{id}/{action}     the action itself (CSRF-checked)
//! GET  /login, POST /login, POST /logout   only when flyteNotify.auth is on
//! GET  /login/issuer, GET /login/callback  only with flyteNotify.console.login
//! GET  /console.css
//!
//! Every page and action is the logged-in viewer's: what it lists, opens and changes is what the
//! permission rules give that caller on the gRPC port (`Viewer`), checked by the same code.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::ConsoleOptions;
use super::chart::chart;
use super::issuer_login::{LOGIN_COOKIE, LOGIN_COOKIE_SECONDS};
use super::session::{self, CSRF_COOKIE, TOKEN_COOKIE, Viewer};
use super::views::{
    Actions, ConfirmPage, DeliveriesPage, DeliveryPage, Event, Example, Layout, LoggedInPage,
    LoginPage, Message, ProblemPage, Row, Tab,
};
use crate::authz::{self, Action, Scope};
use crate::error::Error;
use crate::notify::{ActScope, Notifier, RecentRequest, operator};
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
/// How far back the "delivered" tab looks.
const RECENT_HOURS: u32 = 24;

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
const STATES: [&str; 6] = [
    "pending",
    "retrying",
    "dead",
    "silenced",
    "grouped",
    "delivered",
];

/// The filter term that asks for what went out rather than what is open.
const DELIVERED: &str = "eq(state,delivered)";

/// With `eq(state,delivered)` among the filters: the other terms, for the recently delivered
/// list (ListPending lists only open deliveries and refuses that state).
fn delivered_terms(filters: &str) -> Option<String> {
    let terms: Vec<&str> = filters.split('+').map(str::trim).collect();
    terms.contains(&DELIVERED).then(|| {
        terms
            .into_iter()
            .filter(|t| *t != DELIVERED)
            .collect::<Vec<_>>()
            .join("+")
    })
}

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
        .route("/login/issuer", get(issuer_login))
        .route("/login/callback", get(issuer_callback))
        .route("/console.css", get(stylesheet))
        .with_state(console)
}

/// Names the viewer of each request (the caller its token cookie stands for); sends a browser
/// without an accepted token to the login form (a GET) or refuses the request.
async fn require_login(State(c): State<Console>, mut request: Request, next: Next) -> Response {
    if let Some(viewer) = session::viewer(&c.options, request.headers()).await {
        request.extensions_mut().insert(viewer);
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
    let cookie = new.then(|| session::set_cookie(options, CSRF_COOKIE, &csrf, None));
    let layout = Layout {
        title: title.into(),
        csrf,
        // Only a page that knows its viewer offers to log out (not the login form itself).
        logout: false,
        who: None,
    };
    (layout, cookie)
}

/// The frame for a logged-in viewer: as `layout`, naming who is logged in.
fn layout_for(
    headers: &HeaderMap,
    options: &ConsoleOptions,
    viewer: &Viewer,
    title: impl Into<String>,
) -> (Layout, Option<HeaderValue>) {
    let (mut layout, cookie) = layout(headers, options, title);
    layout.logout = options.auth.is_some();
    layout.who = viewer.name();
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
        Error::PermissionDenied(m) => (StatusCode::FORBIDDEN, format!("Not allowed: {m}.")),
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
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let scope = match viewer.read() {
        Ok(scope) => scope,
        Err(e) => return core_problem(&headers, &c.options, e),
    };
    let filters = q.filters.trim().to_string();
    let limit = q.limit.unwrap_or(PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
    let now = now_millis();
    let listed = match delivered_terms(&filters) {
        Some(rest) => c
            .notifier
            .recently_delivered(
                RecentRequest {
                    limit,
                    within: Duration::from_secs(3600) * RECENT_HOURS,
                    filters: rest,
                    token: q.token.clone(),
                },
                &scope,
            )
            .await
            .map(|page| {
                let rows = page
                    .deliveries
                    .iter()
                    .map(|d| Row::of(&d.delivery, now).delivered_at(&d.delivered_at, now))
                    .collect::<Vec<_>>();
                (rows, page.token)
            }),
        None => c
            .notifier
            .list_pending(
                api::ListPendingRequest {
                    filters: filters.clone(),
                    limit,
                    token: q.token.clone(),
                },
                &scope,
            )
            .await
            .map(|page| {
                let rows = page.deliveries.iter().map(|d| Row::of(d, now)).collect();
                (rows, page.token)
            }),
    };
    let (rows, next, problem, status) = match listed {
        Ok((rows, next)) => (rows, next, None, StatusCode::OK),
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
    // The ledger's history counts every project: shown only to whoever may read them all.
    let chart = match scope {
        Scope::All => match c.notifier.activity(hour * CHART_HOURS, hour).await {
            Ok(buckets) => Some(chart(&buckets)),
            Err(e) => return core_problem(&headers, &c.options, e),
        },
        Scope::Within(_) => None,
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
    let (layout, cookie) = layout_for(&headers, &c.options, &viewer, "Deliveries");
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
        chart,
        hours: CHART_HOURS,
        recent_hours: RECENT_HOURS,
        delivered_tab: delivered_terms(&filters).is_some(),
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

/// The delivery `id` if the viewer may read its project; "not found" otherwise, as on the gRPC
/// port, so that the page tells nothing of other projects' deliveries.
async fn readable(
    c: &Console,
    viewer: &Viewer,
    id: &str,
) -> Result<api::GetDeliveryResponse, Error> {
    let scope = viewer.read()?;
    c.notifier
        .get_delivery(
            api::GetDeliveryRequest {
                delivery_id: id.to_string(),
            },
            &scope,
        )
        .await
}

async fn delivery(
    State(c): State<Console>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> Response {
    let got = readable(&c, &viewer, &id).await;
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
    let dead = row.state == "dead" && viewer.may_operate_in(&row.project, &row.domain);
    let (message, message_problem) = match inspected.message {
        Ok(m) => (Some(Message::of(m)), None),
        Err(why) => (None, Some(format!("The message cannot be shown: {why}"))),
    };
    let (layout, cookie) = layout_for(
        &headers,
        &c.options,
        &viewer,
        format!("{}/{}", row.project, row.name),
    );
    let view = DeliveryPage {
        layout,
        actions: Actions {
            redrive: dead,
            discard: dead,
            send_test: test_target(&d).is_some() && viewer.may_operate_everywhere(),
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
    Extension(viewer): Extension<Viewer>,
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
    let got = match readable(&c, &viewer, &id).await {
        Ok(got) => got,
        Err(e) => return core_problem(&headers, &c.options, e),
    };
    let (layout, cookie) = layout_for(&headers, &c.options, &viewer, verb);
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
    Extension(viewer): Extension<Viewer>,
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
    let (operate, read) = viewer.operate_by_ids();
    let scope = ActScope {
        operate: &operate,
        read: &read,
    };
    let refused = |e: Error| {
        authz::record_refusal(viewer.caller.as_ref(), Action::Operate, &e);
        core_problem(&headers, &c.options, e)
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
                scope,
            )
            .await
        {
            Ok(r) if r.delivery_ids.is_empty() => skipped_or_unseen(&r.skipped, &id, &here),
            Ok(_) => here("redriven"),
            Err(e) => refused(e),
        },
        "discard" => match c
            .notifier
            .discard(
                api::DiscardRequest {
                    delivery_ids: vec![id.clone()],
                    note,
                    ..Default::default()
                },
                scope,
            )
            .await
        {
            Ok(r) if r.delivery_ids.is_empty() => skipped_or_unseen(&r.skipped, &id, &here),
            Ok(_) => here("discarded"),
            Err(e) => refused(e),
        },
        "send-test" => {
            let got = match readable(&c, &viewer, &id).await {
                Ok(got) => got,
                Err(e) => return core_problem(&headers, &c.options, e),
            };
            if let Err(e) = viewer.send_test() {
                return core_problem(&headers, &c.options, e);
            }
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

/// After a redrive or discard that changed nothing: "not found" when the delivery is gone or
/// outside what the viewer may see (the same page as for an id that never existed), otherwise
/// back to it with the notice that only dead ones can be acted on.
fn skipped_or_unseen(
    skipped: &[api::SkippedDelivery],
    id: &str,
    here: &dyn Fn(&str) -> Response,
) -> Response {
    if skipped
        .iter()
        .any(|s| s.delivery_id == id && s.reason == operator::SKIPPED_NOT_FOUND)
    {
        return (
            StatusCode::NOT_FOUND,
            format!("no delivery {id:?} in this ledger"),
        )
            .into_response();
    }
    here("skipped")
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
    if c.options.auth.is_none() {
        return Redirect::to("/").into_response();
    }
    login_page(&headers, &c.options, &q.next, None, StatusCode::OK)
}

/// The login form, with the issuer's button when the console can log in through it.
fn login_page(
    headers: &HeaderMap,
    options: &ConsoleOptions,
    next: &str,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
    let (layout, cookie) = layout(headers, options, "Log in");
    let next = safe_next(next);
    let view = LoginPage {
        layout,
        issuer: options
            .login
            .as_ref()
            .map(|_| format!("/login/issuer?next={}", encoded(&next))),
        next,
        problem,
    };
    page(status, view.render(), cookie)
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
    let Some(auth) = &c.options.auth else {
        return Redirect::to("/").into_response();
    };
    if !session::csrf_ok(&headers, &form.csrf) {
        return csrf_refused(&headers, &c.options);
    }
    let token = form.token.trim();
    let accepted = session::cookie_safe(token) && auth.authenticate(token).await.is_ok();
    if accepted {
        let mut response = Redirect::to(&safe_next(&form.next)).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(&c.options, TOKEN_COOKIE, token, None),
        );
        return response;
    }
    // Never echo the token back, not even into the form.
    login_page(
        &headers,
        &c.options,
        &form.next,
        Some("That token is not one this service accepts.".into()),
        StatusCode::UNAUTHORIZED,
    )
}

/// Starts a login through the issuer: to its authorization page, with PKCE's challenge and a
/// state kept, with the verifier, in a cookie only the `/login` paths receive. SameSite=Lax, as
/// the issuer's redirect back is a navigation from its site.
async fn issuer_login(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let Some(login) = &c.options.login else {
        return Redirect::to("/login").into_response();
    };
    match login.start(&safe_next(&q.next)).await {
        Ok(started) => {
            let mut response = Redirect::to(&started.authorize_url).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                session::cookie_header(
                    &c.options,
                    LOGIN_COOKIE,
                    &started.cookie,
                    "/login",
                    "Lax",
                    Some(LOGIN_COOKIE_SECONDS),
                ),
            );
            response
        }
        Err(why) => {
            tracing::warn!(error = %why, "the console cannot start a login through the issuer");
            login_page(
                &headers,
                &c.options,
                &q.next,
                Some(format!("The identity provider cannot be reached: {why}")),
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    }
}

#[derive(Deserialize, Default)]
struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Where the issuer sends the browser back: the code is exchanged for an access token, which must
/// verify like any bearer token; it then goes in the token cookie. The answer is a page that moves
/// on by itself rather than a redirect: a SameSite=Strict cookie set while the browser is on its
/// way back from another site is not sent on the redirect that follows.
async fn issuer_callback(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let (Some(login), Some(auth)) = (&c.options.login, &c.options.auth) else {
        return Redirect::to("/login").into_response();
    };
    let failed = |why: String| {
        let mut response = login_page(
            &headers,
            &c.options,
            "/",
            Some(why),
            StatusCode::UNAUTHORIZED,
        );
        response.headers_mut().append(
            header::SET_COOKIE,
            session::cookie_header(&c.options, LOGIN_COOKIE, "", "/login", "Lax", Some(0)),
        );
        response
    };
    if !q.error.is_empty() {
        let detail = if q.error_description.is_empty() {
            String::new()
        } else {
            format!(": {}", q.error_description)
        };
        return failed(format!(
            "The identity provider did not log you in ({}{detail}).",
            q.error
        ));
    }
    let cookie = session::cookie(&headers, LOGIN_COOKIE);
    let (token, next) = match login.finish(cookie, &q.state, &q.code).await {
        Ok(done) => done,
        Err(why) => return failed(format!("The login did not go through: {why}.")),
    };
    if !session::cookie_safe(&token) {
        return failed("The identity provider's token cannot be kept in a cookie.".into());
    }
    let caller = match auth.authenticate(&token).await {
        Ok(caller) => caller,
        Err(refused) => {
            return failed(format!(
                "The identity provider's token is not accepted here: {} (its audience must be \
                 flyteNotify.auth.oidc.audience).",
                refused.message()
            ));
        }
    };
    tracing::info!(identity = %caller.identity, "logged in to the console through the issuer");
    let next = safe_next(&next);
    let (layout, cookie) = layout(&headers, &c.options, "Logged in");
    let view = LoggedInPage {
        layout,
        who: caller.identity.to_string(),
        next,
    };
    let mut response = page(StatusCode::OK, view.render(), cookie);
    let set = response.headers_mut();
    set.append(
        header::SET_COOKIE,
        session::set_cookie(&c.options, TOKEN_COOKIE, &token, None),
    );
    set.append(
        header::SET_COOKIE,
        session::cookie_header(&c.options, LOGIN_COOKIE, "", "/login", "Lax", Some(0)),
    );
    response
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
        session::set_cookie(&c.options, TOKEN_COOKIE, "", Some(0)),
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
    fn the_delivered_state_picks_the_recent_list_and_keeps_the_other_terms() {
        assert_eq!(delivered_terms("eq(state,dead)"), None);
        assert_eq!(delivered_terms(""), None);
        assert_eq!(delivered_terms("eq(state,delivered)").as_deref(), Some(""));
        assert_eq!(
            delivered_terms("eq(project,flytesnacks)+eq(state,delivered)+eq(channel,slack)")
                .as_deref(),
            Some("eq(project,flytesnacks)+eq(channel,slack)")
        );
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

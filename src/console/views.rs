//! What each page shows, as the askama templates under templates/console/ read it: plain data
//! built from the core's answers. Askama escapes every value for HTML (and the templates never
//! turn that off), so a hostile execution name or error text shows as text.

use askama::Template;

use super::chart::Chart;
use super::words;
use crate::notify::render::phase_name;
use crate::proto::flytenotify::v1 as api;

/// What every page's frame needs.
pub struct Layout {
    pub title: String,
    /// The CSRF value every form carries (see session.rs).
    pub csrf: String,
    /// Logged in with a token: the frame offers to log out.
    pub logout: bool,
    /// Who is logged in (the identity the permission rules see, never the token).
    pub who: Option<String>,
}

/// A tab over the deliveries: a state, as the filter it stands for.
pub struct Tab {
    pub label: &'static str,
    pub filters: String,
    pub active: bool,
}

/// A filter to click, with what it shows.
pub struct Example {
    pub filters: &'static str,
    pub what: &'static str,
}

/// A time shown as "3 min ago" with the exact one on hover.
pub struct When {
    pub relative: String,
    pub exact: String,
}

impl When {
    pub fn of(ts: Option<&prost_types::Timestamp>, now: i64) -> Option<When> {
        let ts = ts?;
        let at = ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000;
        Some(When {
            relative: words::relative(at, now),
            exact: words::exact(at),
        })
    }
}

/// One delivery as a row of the list, and the head of its own page.
pub struct Row {
    pub id: String,
    pub project: String,
    pub domain: String,
    pub name: String,
    pub channel: String,
    pub recipients: String,
    pub state: String,
    pub phase: String,
    pub attempts: u32,
    pub created: Option<When>,
    pub next_attempt: Option<When>,
    pub last_error: String,
    pub explanation: Option<&'static str>,
    pub request_id: String,
    pub digest_id: String,
    /// When it went out, on the "delivered" tab.
    pub delivered: Option<When>,
}

impl Row {
    pub fn of(d: &api::Delivery, now: i64) -> Row {
        let id = d.execution_id.clone().unwrap_or_default();
        Row {
            id: d.id.clone(),
            project: id.project,
            domain: id.domain,
            name: id.name,
            channel: if d.channel.is_empty() {
                "unknown".into()
            } else {
                d.channel.clone()
            },
            recipients: d.recipients.join(", "),
            state: state_name(d.state),
            phase: phase_name(d.phase),
            attempts: d.attempts,
            created: When::of(d.created_at.as_ref(), now),
            next_attempt: When::of(d.next_attempt_at.as_ref(), now),
            explanation: words::explain(&d.last_error),
            last_error: d.last_error.clone(),
            request_id: d.request_id.clone(),
            digest_id: d.digest_id.clone(),
            delivered: None,
        }
    }

    /// The row with the time it went out.
    pub fn delivered_at(mut self, at: &prost_types::Timestamp, now: i64) -> Row {
        self.delivered = When::of(Some(at), now);
        self
    }
}

/// The state as the filters spell it: `dead`, not `DELIVERY_STATE_DEAD`.
pub fn state_name(state: i32) -> String {
    api::DeliveryState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("DELIVERY_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("state {state}"))
}

#[derive(Template)]
#[template(path = "console/deliveries.html")]
pub struct DeliveriesPage {
    pub layout: Layout,
    pub filters: String,
    pub tabs: Vec<Tab>,
    pub examples: Vec<Example>,
    pub rows: Vec<Row>,
    /// The ListPending token of the next page; empty on the last one.
    pub next: String,
    /// Whether this is a later page (a link back to the first is shown).
    pub paged: bool,
    /// `&limit=N` when the address asked for a page size, carried into the paging links.
    pub limit_param: String,
    /// Why the filters were refused, in the core's words.
    pub problem: Option<String>,
    /// None when the viewer may not read every project: the ledger's history is not by project.
    pub chart: Option<Chart>,
    pub hours: u32,
    /// How far back the "delivered" tab looks, and whether this is it.
    pub recent_hours: u32,
    pub delivered_tab: bool,
}

/// One entry of a delivery's history.
pub struct Event {
    pub kind: String,
    pub at: Option<When>,
    pub attempts: u32,
    pub detail: String,
    pub explanation: Option<&'static str>,
}

impl Event {
    pub fn of(e: &api::DeliveryEvent, now: i64) -> Event {
        let kind = api::delivery_event::Kind::try_from(e.kind)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("KIND_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| format!("event {}", e.kind));
        let failed = kind == "failed" || kind == "dead";
        Event {
            at: When::of(e.at.as_ref(), now),
            attempts: e.attempts,
            explanation: if failed {
                words::explain(&e.detail)
            } else {
                None
            },
            detail: e.detail.clone(),
            kind,
        }
    }
}

/// The rendered message, the parts the channel has.
pub struct Message {
    pub channel: String,
    pub destination: String,
    pub sender: String,
    pub recipients: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Message {
    pub fn of(m: api::RenderedMessage) -> Message {
        let mut headers: Vec<_> = m.headers.into_iter().collect();
        headers.sort();
        Message {
            channel: m.channel,
            destination: m.destination,
            sender: m.sender,
            recipients: m.recipients.join(", "),
            subject: m.subject,
            text_body: m.text_body,
            html_body: m.html_body,
            method: m.method,
            headers,
            body: m.body,
        }
    }
}

/// What can be done about a delivery from its page.
pub struct Actions {
    pub redrive: bool,
    pub discard: bool,
    pub send_test: bool,
}

#[derive(Template)]
#[template(path = "console/delivery.html")]
pub struct DeliveryPage {
    pub layout: Layout,
    pub d: Row,
    pub org: String,
    pub execution_link: Option<String>,
    pub message: Option<Message>,
    pub message_problem: Option<String>,
    pub history: Vec<Event>,
    pub actions: Actions,
    /// What the last action did, in words.
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub d: Row,
    /// The path segment: redrive, discard or send-test.
    pub action: &'static str,
    pub verb: &'static str,
    pub consequence: &'static str,
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub next: String,
    /// The link that starts a login through the issuer, when `console.login` is set.
    pub issuer: Option<String>,
    pub problem: Option<String>,
}

/// After the issuer's login: moves on to `next` by itself (see `issuer_callback`).
#[derive(Template)]
#[template(path = "console/logged_in.html")]
pub struct LoggedInPage {
    pub layout: Layout,
    pub who: String,
    pub next: String,
}

#[derive(Template)]
#[template(path = "console/problem.html")]
pub struct ProblemPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
}

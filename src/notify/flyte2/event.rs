//! A Flyte 2 event (a run reaching a phase, an action waiting for a person): checked, turned into
//! the `Flyte2Event` its deliveries store, and into the execution context the ledger keys,
//! lists and silences by. Its template variables live here too.

use std::borrow::Cow;

use crate::delivery::{Flyte2Event, Flyte2Paused};
use crate::error::FieldViolation;
use crate::proto::flyteidl::core::workflow_execution::Phase as Flyte1Phase;
use crate::proto::flyteidl::core::{ExecutionError, WorkflowExecutionIdentifier};
use crate::proto::flyteidl2::common::{ActionPhase, RunIdentifier};
use crate::proto::flytenotify::v1 as api;

use super::super::validate::{MAX_ERROR_MESSAGE_BYTES, MAX_ID_FIELD_BYTES};

/// What a prompt and its description may hold: a page of text, not a document.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
pub const MAX_URL_BYTES: usize = 4096;

/// The variables of a run's notification, as the SDK documents them (`{{.Run.Name}}`, ...) and
/// as its local sender knows them (duration, timestamp, URL, task name).
pub const RUN_VARIABLES: &[&str] = &[
    "Run.Org",
    "Run.Project",
    "Run.Domain",
    "Run.Name",
    "Run.URL",
    "Run.Duration",
    "Run.Timestamp",
    "Phase",
    "Error",
    "Task.Name",
    "Deadline",
];

/// A paused action's: the run's, its own (the names of ActionPausedNotificationTemplateData's
/// fields, as Go would render that message), and the prompt.
pub const PAUSED_VARIABLES: &[&str] = &[
    "Run.Org",
    "Run.Project",
    "Run.Domain",
    "Run.Name",
    "Run.URL",
    "Run.Timestamp",
    "Phase",
    "Task.Name",
    "Action.Name",
    "Action.Run.Org",
    "Action.Run.Project",
    "Action.Run.Domain",
    "Action.Run.Name",
    "Prompt",
    "Description",
    "PromptType",
];

/// Every variable some event has: what a configured template may use.
pub fn any_variable() -> Vec<&'static str> {
    let mut all: Vec<&str> = RUN_VARIABLES
        .iter()
        .chain(PAUSED_VARIABLES)
        .copied()
        .collect();
    all.sort();
    all.dedup();
    all
}

impl VariablesOf for Flyte2Event {
    fn variables(&self) -> &'static [&'static str] {
        if self.paused.is_some() {
            PAUSED_VARIABLES
        } else {
            RUN_VARIABLES
        }
    }

    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        if !self.variables().contains(&name) {
            return None;
        }
        let paused = self.paused.as_ref();
        Some(match name {
            "Run.Org" | "Action.Run.Org" => Cow::Borrowed(self.org.as_str()),
            "Run.Project" | "Action.Run.Project" => Cow::Borrowed(self.project.as_str()),
            "Run.Domain" | "Action.Run.Domain" => Cow::Borrowed(self.domain.as_str()),
            "Run.Name" | "Action.Run.Name" => Cow::Borrowed(self.name.as_str()),
            "Run.URL" => Cow::Borrowed(self.run_url.as_str()),
            "Run.Duration" => Cow::Owned(
                self.duration_ms
                    .map(|ms| {
                        // Whole seconds read better in a message; sub-second runs keep their ms.
                        let ms = if ms >= 1000 { ms - ms % 1000 } else { ms };
                        humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
                    })
                    .unwrap_or_default(),
            ),
            "Run.Timestamp" => Cow::Owned(timestamp(self.occurred_at_ms)),
            "Phase" => Cow::Borrowed(phase_name(self.phase)),
            "Error" => Cow::Borrowed(self.error.as_str()),
            "Task.Name" => Cow::Borrowed(self.task_name.as_str()),
            "Deadline" => Cow::Owned(self.deadline_text()),
            "Action.Name" => Cow::Borrowed(paused?.action.as_str()),
            "Prompt" => Cow::Borrowed(paused?.prompt.as_str()),
            "Description" => Cow::Borrowed(paused?.description.as_str()),
            "PromptType" => Cow::Borrowed(paused?.prompt_type.as_str()),
            _ => return None,
        })
    }
}

impl Flyte2EventExt for Flyte2Event {
    fn deadline_text(&self) -> String {
        self.still_running_after_ms
            .map(|ms| {
                humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
            })
            .unwrap_or_default()
    }
}

/// What a message says of an event beyond its variables.
pub trait Flyte2EventExt {
    /// "1h 30m" on a deadline's alert, else empty.
    fn deadline_text(&self) -> String;
}

/// The variables an event offers, and their values.
pub trait VariablesOf {
    fn variables(&self) -> &'static [&'static str];
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// The phase as a message says it: SUCCEEDED, TIMED_OUT, PAUSED.
pub fn phase_name(phase: i32) -> &'static str {
    ActionPhase::try_from(phase)
        .map(|p| p.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("ACTION_PHASE_")
}

fn timestamp(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// SUCCEEDED, FAILED, ABORTED, TIMED_OUT, RECOVERED: the run is over.
pub fn is_terminal(phase: i32) -> bool {
    matches!(
        ActionPhase::try_from(phase),
        Ok(ActionPhase::Succeeded
            | ActionPhase::Failed
            | ActionPhase::Aborted
            | ActionPhase::TimedOut
            | ActionPhase::Recovered)
    )
}

/// The Flyte 1 phase the ledger records and lists a Flyte 2 delivery under: a terminal phase
/// keeps its meaning (RECOVERED is a success); a deadline's alert is RUNNING or QUEUED, which the
/// ledger disarms when the run ends; anything else (a pause, a rule on RUNNING) is UNDEFINED, so
/// that the end of the run never disarms it.
pub fn ledger_phase(phase: i32, arms_deadline: bool) -> i32 {
    let mapped =
        match ActionPhase::try_from(phase) {
            Ok(ActionPhase::Succeeded | ActionPhase::Recovered) => Flyte1Phase::Succeeded,
            Ok(ActionPhase::Failed) => Flyte1Phase::Failed,
            Ok(ActionPhase::Aborted) => Flyte1Phase::Aborted,
            Ok(ActionPhase::TimedOut) => Flyte1Phase::TimedOut,
            Ok(ActionPhase::Running) if arms_deadline => Flyte1Phase::Running,
            Ok(
                ActionPhase::Queued | ActionPhase::WaitingForResources | ActionPhase::Initializing,
            ) if arms_deadline => Flyte1Phase::Queued,
            _ => Flyte1Phase::Undefined,
        };
    mapped as i32
}

/// The execution context stored with the request: what ListPending, silences and GetDelivery
/// see of a Flyte 2 run (its id, the phase in Flyte 1 terms, the error).
pub fn execution_context(event: &Flyte2Event) -> api::ExecutionContext {
    api::ExecutionContext {
        execution_id: Some(WorkflowExecutionIdentifier {
            project: event.project.clone(),
            domain: event.domain.clone(),
            name: event.name.clone(),
            org: event.org.clone(),
        }),
        phase: ledger_phase(event.phase, event.still_running_after_ms.is_some()),
        error: (!event.error.is_empty()).then(|| ExecutionError {
            message: event.error.clone(),
            ..Default::default()
        }),
        occurred_at: Some(prost_types::Timestamp {
            seconds: event.occurred_at_ms.div_euclid(1000),
            nanos: (event.occurred_at_ms.rem_euclid(1000) * 1_000_000) as i32,
        }),
        ..Default::default()
    }
}

fn at_most(field: &str, value: &str, max: usize, out: &mut Vec<FieldViolation>) {
    if value.len() > max {
        out.push(FieldViolation::new(
            field,
            format!("{} bytes; at most {max}", value.len()),
        ));
    }
}

fn run_id(
    field: &str,
    run: Option<&RunIdentifier>,
    out: &mut Vec<FieldViolation>,
) -> RunIdentifier {
    let Some(run) = run else {
        out.push(FieldViolation::new(field, "required"));
        return RunIdentifier::default();
    };
    for (name, value) in [
        ("project", &run.project),
        ("domain", &run.domain),
        ("name", &run.name),
    ] {
        if value.trim().is_empty() {
            out.push(FieldViolation::new(
                format!("{field}.{name}"),
                "must not be empty",
            ));
        }
    }
    for (name, value) in [
        ("org", &run.org),
        ("project", &run.project),
        ("domain", &run.domain),
        ("name", &run.name),
    ] {
        at_most(&format!("{field}.{name}"), value, MAX_ID_FIELD_BYTES, out);
    }
    run.clone()
}

fn url(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    at_most(field, value, MAX_URL_BYTES, out);
    if !(value.is_empty() || value.starts_with("https://") || value.starts_with("http://")) {
        out.push(FieldViolation::new(
            field,
            "must start with http:// or https://",
        ));
    }
}

fn millis(t: Option<&prost_types::Timestamp>) -> i64 {
    match t {
        Some(t) => t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000),
        None => chrono::Utc::now().timestamp_millis(),
    }
}

/// EnqueueRunEventRequest's event; its problems go to `out`.
pub fn run_event(
    request: &api::EnqueueRunEventRequest,
    out: &mut Vec<FieldViolation>,
) -> Flyte2Event {
    let run = run_id("run", request.run.as_ref(), out);
    match ActionPhase::try_from(request.phase) {
        Ok(ActionPhase::Unspecified) => out.push(FieldViolation::new(
            "phase",
            "required: the phase the run reached, e.g. ACTION_PHASE_FAILED",
        )),
        Ok(ActionPhase::Paused) => out.push(FieldViolation::new(
            "phase",
            "a paused action is EnqueueActionPaused's, with its prompt",
        )),
        Ok(_) => {}
        Err(_) => out.push(FieldViolation::new(
            "phase",
            format!("unknown ActionPhase {}", request.phase),
        )),
    }
    at_most("error", &request.error, MAX_ERROR_MESSAGE_BYTES, out);
    if request.deadline.is_some() && is_terminal(request.phase) {
        out.push(FieldViolation::new(
            "deadline",
            format!(
                "only a phase that is not terminal (QUEUED, WAITING_FOR_RESOURCES, INITIALIZING, \
                 RUNNING) arms a deadline; phase is {}",
                phase_name(request.phase)
            ),
        ));
    }
    url("run_url", &request.run_url, out);
    at_most("task_name", &request.task_name, MAX_ID_FIELD_BYTES, out);
    let duration_ms = match &request.duration {
        None => None,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            out.push(FieldViolation::new("duration", "must not be negative"));
            None
        }
        Some(d) => Some(
            (d.seconds as u64)
                .saturating_mul(1000)
                .saturating_add(d.nanos as u64 / 1_000_000),
        ),
    };
    Flyte2Event {
        org: run.org,
        project: run.project,
        domain: run.domain,
        name: run.name,
        phase: request.phase,
        error: request.error.clone(),
        run_url: request.run_url.clone(),
        duration_ms,
        occurred_at_ms: millis(request.occurred_at.as_ref()),
        task_name: request.task_name.clone(),
        paused: None,
        still_running_after_ms: None,
    }
}

/// EnqueueActionPausedRequest's event; its problems go to `out`.
pub fn paused_event(
    request: &api::EnqueueActionPausedRequest,
    out: &mut Vec<FieldViolation>,
) -> Flyte2Event {
    let (run, action) = match &request.action {
        None => {
            out.push(FieldViolation::new("action", "required"));
            (RunIdentifier::default(), String::new())
        }
        Some(action) => {
            let run = run_id("action.run", action.run.as_ref(), out);
            if action.name.trim().is_empty() {
                out.push(FieldViolation::new("action.name", "must not be empty"));
            }
            at_most("action.name", &action.name, MAX_ID_FIELD_BYTES, out);
            (run, action.name.clone())
        }
    };
    if request.prompt.trim().is_empty() {
        out.push(FieldViolation::new(
            "prompt",
            "required: what the person is asked",
        ));
    }
    at_most("prompt", &request.prompt, MAX_PROMPT_BYTES, out);
    at_most("description", &request.description, MAX_PROMPT_BYTES, out);
    at_most("prompt_type", &request.prompt_type, MAX_ID_FIELD_BYTES, out);
    url("run_url", &request.run_url, out);
    at_most("task_name", &request.task_name, MAX_ID_FIELD_BYTES, out);
    Flyte2Event {
        org: run.org,
        project: run.project,
        domain: run.domain,
        name: run.name,
        phase: ActionPhase::Paused as i32,
        error: String::new(),
        run_url: request.run_url.clone(),
        duration_ms: None,
        occurred_at_ms: millis(request.occurred_at.as_ref()),
        task_name: request.task_name.clone(),
        paused: Some(Flyte2Paused {
            action,
            prompt: request.prompt.clone(),
            description: request.description.clone(),
            prompt_type: request.prompt_type.clone(),
        }),
        still_running_after_ms: None,
    }
}

/// The run's link from `flyteNotify.flyte2.runUrl` when the caller sent none.
pub fn fill_run_url(event: &mut Flyte2Event, pattern: &str) {
    if !event.run_url.is_empty() || pattern.is_empty() {
        return;
    }
    // Each part is one path segment (or query value): everything but RFC 3986's unreserved
    // characters is percent-encoded.
    const PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, PART).to_string();
    event.run_url = pattern
        .replace("{org}", &enc(&event.org))
        .replace("{project}", &enc(&event.project))
        .replace("{domain}", &enc(&event.domain))
        .replace("{name}", &enc(&event.name));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Flyte2Event {
        Flyte2Event {
            project: "flytesnacks".into(),
            domain: "development".into(),
            name: "r-1".into(),
            phase: ActionPhase::TimedOut as i32,
            duration_ms: Some(90_500),
            occurred_at_ms: 1_700_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn every_run_variable_has_a_value_and_paused_ones_only_on_a_paused_event() {
        let e = event();
        for name in RUN_VARIABLES {
            assert!(e.lookup(name).is_some(), "{name}");
        }
        assert_eq!(e.lookup("Phase").unwrap(), "TIMED_OUT");
        assert_eq!(e.lookup("Run.Duration").unwrap(), "1m 30s");
        assert_eq!(e.lookup("Deadline").unwrap(), "");
        assert_eq!(e.lookup("Deadline").unwrap(), "");
        assert_eq!(e.lookup("Run.Timestamp").unwrap(), "2023-11-14T22:13:20Z");
        assert!(e.lookup("Prompt").is_none());
        let mut p = e.clone();
        p.paused = Some(Flyte2Paused {
            action: "approve".into(),
            prompt: "Ship it?".into(),
            ..Default::default()
        });
        for name in PAUSED_VARIABLES {
            assert!(p.lookup(name).is_some(), "{name}");
        }
        assert_eq!(p.lookup("Action.Name").unwrap(), "approve");
        assert!(p.lookup("Run.Duration").is_none());
    }

    #[test]
    fn terminal_phases_keep_their_meaning_in_the_ledger() {
        let p = |phase: ActionPhase, armed| ledger_phase(phase as i32, armed);
        assert_eq!(
            p(ActionPhase::Recovered, false),
            Flyte1Phase::Succeeded as i32
        );
        assert_eq!(
            p(ActionPhase::TimedOut, false),
            Flyte1Phase::TimedOut as i32
        );
        // Only a deadline's alert is in a phase the end of the run disarms.
        assert_eq!(p(ActionPhase::Running, true), Flyte1Phase::Running as i32);
        assert_eq!(
            p(ActionPhase::Running, false),
            Flyte1Phase::Undefined as i32
        );
        assert_eq!(p(ActionPhase::Paused, false), Flyte1Phase::Undefined as i32);
    }

    #[test]
    fn the_configured_run_url_is_filled_with_encoded_parts() {
        let mut e = event();
        e.name = "a b".into();
        fill_run_url(
            &mut e,
            "https://flyte.example.com/v2/{project}/{domain}/{name}",
        );
        assert_eq!(
            e.run_url,
            "https://flyte.example.com/v2/flytesnacks/development/a%20b"
        );
    }
}

//! ListPending filters in FlyteAdmin's list syntax: `eq(project,flytesnacks)+eq(state,retrying)`.
//! Parsed here into a typed form so that stores build SQL from an allow-list, never from text.

use super::{Channel, State};
use crate::proto::flyteidl::core::workflow_execution::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    Project,
    Domain,
    Name,
    Channel,
    State,
    // Silence matchers only (not ListPending filters: the ledger has no column for them). The
    // worker knows them when a delivery is due.
    /// The launch plan, `project/domain/name`.
    LaunchPlan,
    /// The workflow, `project/domain/name`.
    Workflow,
    /// The execution's phase, e.g. FAILED.
    Phase,
    /// A recipient: an email address, a Slack or PagerDuty recipient, a webhook destination.
    Destination,
}

impl FilterField {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "project" => FilterField::Project,
            "domain" => FilterField::Domain,
            "name" => FilterField::Name,
            "channel" => FilterField::Channel,
            "state" => FilterField::State,
            "launch_plan" => FilterField::LaunchPlan,
            "workflow" => FilterField::Workflow,
            "phase" => FilterField::Phase,
            "destination" => FilterField::Destination,
            _ => return None,
        })
    }

    /// Its name in the filter syntax.
    pub fn key(self) -> &'static str {
        match self {
            FilterField::LaunchPlan => "launch_plan",
            FilterField::Workflow => "workflow",
            FilterField::Phase => "phase",
            FilterField::Destination => "destination",
            other => other.column(),
        }
    }

    /// Whether ListPending can filter by it (the ledger has a column for it).
    pub fn listable(self) -> bool {
        !matches!(
            self,
            FilterField::LaunchPlan
                | FilterField::Workflow
                | FilterField::Phase
                | FilterField::Destination
        )
    }

    /// The column that holds this field in every store.
    pub fn column(self) -> &'static str {
        match self {
            FilterField::Project => "project",
            FilterField::Domain => "domain",
            FilterField::Name => "name",
            FilterField::Channel => "channel",
            FilterField::State => "state",
            // `parse` refuses these for ListPending, so no query is built from them.
            FilterField::LaunchPlan
            | FilterField::Workflow
            | FilterField::Phase
            | FilterField::Destination => {
                unreachable!("a silence-only key in a ListPending filter")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Contains,
    ValueIn,
    /// Never parsed from a request: the caller's permitted projects, added by the core so that a
    /// store restricts the query itself (filtering a page afterwards would break paging). Each
    /// value is `project/domain` with `*` for any; the term holds when one of them matches.
    /// Only on the Project field; see [`in_scope`].
    InScope,
}

/// The term that keeps a query within these `project/domain` pairs (`*` for any part). An empty
/// list matches nothing.
pub fn in_scope(pairs: Vec<(String, String)>) -> Filter {
    Filter {
        field: FilterField::Project,
        op: FilterOp::InScope,
        values: pairs.into_iter().map(|(p, d)| format!("{p}/{d}")).collect(),
    }
}

fn any(s: &str) -> Option<&str> {
    if s == "*" { None } else { Some(s) }
}

/// The (project, domain) of each value of an InScope term; None for `*`.
pub fn scope_pairs(filter: &Filter) -> impl Iterator<Item = (Option<&str>, Option<&str>)> {
    filter.values.iter().map(|v| {
        let (p, d) = v.split_once('/').unwrap_or((v.as_str(), "*"));
        (any(p), any(d))
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: FilterField,
    pub op: FilterOp,
    /// One value, or several for `value_in`.
    pub values: Vec<String>,
}

/// Bounds on one filter expression: every term and value becomes SQL, and a store has limits of
/// its own (SQLite's expression depth, bound parameters) that must not surface as INTERNAL.
pub const MAX_FILTER_BYTES: usize = 4096;
pub const MAX_TERMS: usize = 16;
pub const MAX_VALUES: usize = 100;

/// Parses `filters`; the error says which part is wrong and what is accepted.
pub fn parse(filters: &str) -> Result<Vec<Filter>, String> {
    let parsed = parse_terms(filters)?;
    if let Some(f) = parsed.iter().find(|f| !f.field.listable()) {
        return Err(format!(
            "{} is a silence matcher key; ListPending filters by project, domain, name, channel \
             or state",
            f.field.key()
        ));
    }
    Ok(parsed)
}

fn parse_terms(filters: &str) -> Result<Vec<Filter>, String> {
    let filters = filters.trim();
    if filters.is_empty() {
        return Ok(Vec::new());
    }
    if filters.len() > MAX_FILTER_BYTES {
        return Err(format!(
            "{} bytes; at most {MAX_FILTER_BYTES}",
            filters.len()
        ));
    }
    let terms = filters.split('+').count();
    if terms > MAX_TERMS {
        return Err(format!("{terms} terms; at most {MAX_TERMS}, joined by +"));
    }
    filters.split('+').map(parse_one).collect()
}

fn parse_one(expr: &str) -> Result<Filter, String> {
    let expr = expr.trim();
    let malformed =
        || format!("{expr:?} is not of the form function(key,value), e.g. eq(project,flytesnacks)");
    let (func, rest) = expr.split_once('(').ok_or_else(malformed)?;
    let args = rest.strip_suffix(')').ok_or_else(malformed)?;
    let (key, value) = args.split_once(',').ok_or_else(malformed)?;
    let op = match func.trim() {
        "eq" => FilterOp::Eq,
        "ne" => FilterOp::Ne,
        "contains" => FilterOp::Contains,
        "value_in" => FilterOp::ValueIn,
        other => {
            return Err(format!(
                "unsupported filter function {other:?}; use eq, ne, contains or value_in"
            ));
        }
    };
    let key = key.trim();
    let field = FilterField::parse(key).ok_or_else(|| {
        format!(
            "unknown filter key {key:?}; use project, domain, name, channel or state (and, in a \
             silence, launch_plan, workflow, phase or destination)"
        )
    })?;
    if op == FilterOp::Contains && matches!(field, FilterField::State | FilterField::Channel) {
        return Err(format!(
            "contains does not apply to {key}; use eq or value_in"
        ));
    }
    let values: Vec<String> = if op == FilterOp::ValueIn {
        value.split(';').map(|v| v.trim().to_string()).collect()
    } else {
        vec![value.trim().to_string()]
    };
    if values.len() > MAX_VALUES {
        return Err(format!(
            "value_in({key},…) has {} values; at most {MAX_VALUES}",
            values.len()
        ));
    }
    if values.iter().any(String::is_empty) {
        return Err(format!("{expr:?} has an empty value"));
    }
    for v in &values {
        let known = match field {
            FilterField::State => matches!(
                State::parse(v),
                Some(
                    State::Pending
                        | State::Retrying
                        | State::Grouped
                        | State::Dead
                        | State::Silenced
                )
            ),
            FilterField::Channel => Channel::parse(v).is_some(),
            FilterField::Phase => Phase::from_str_name(v).is_some(),
            _ => true,
        };
        if !known {
            let expected = match field {
                FilterField::State => "pending, retrying, grouped, dead or silenced",
                FilterField::Phase => {
                    "a phase name: SUCCEEDED, FAILED, ABORTED, TIMED_OUT, RUNNING, ..."
                }
                _ => "email, slack or pagerduty",
            };
            return Err(format!("unknown {key} {v:?}; use {expected}"));
        }
    }
    Ok(Filter { field, op, values })
}

/// True when the filters ask for silenced deliveries by name, which ListPending leaves out
/// otherwise: they wait for nobody (or for their silence to end).
pub fn wants_silenced(filters: &[Filter]) -> bool {
    filters.iter().any(|f| {
        f.field == FilterField::State
            && matches!(f.op, FilterOp::Eq | FilterOp::ValueIn)
            && f.values.iter().any(|v| v == State::Silenced.as_str())
    })
}

/// True when the filters ask for silenced deliveries only (`eq(state,silenced)`): a store can
/// then page through its index of those alone.
pub fn only_silenced(filters: &[Filter]) -> bool {
    filters.iter().any(|f| {
        f.field == FilterField::State
            && f.op == FilterOp::Eq
            && f.values[0] == State::Silenced.as_str()
    })
}

/// What a silence matcher is matched against: a delivery's fields as the worker has them.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub project: &'a str,
    pub domain: &'a str,
    pub name: &'a str,
    pub channel: Channel,
    /// `project/domain/name`, empty when the execution names none.
    pub launch_plan: &'a str,
    pub workflow: &'a str,
    /// The phase name, e.g. FAILED.
    pub phase: &'a str,
    /// Its recipients; a destination term matches when one of them does.
    pub destinations: &'a [String],
}

/// Parses a silence's matcher: the filter syntax, not empty, and only fields a delivery has
/// before it is sent (not `state`).
pub fn parse_matcher(matcher: &str) -> Result<Vec<Filter>, String> {
    let filters = parse_terms(matcher)?;
    if filters.is_empty() {
        return Err(
            "is empty; a silence needs at least one term, e.g. eq(project,flytesnacks)".into(),
        );
    }
    if filters.iter().any(|f| f.field == FilterField::State) {
        return Err(
            "state does not apply to a silence; use project, domain, name, channel, launch_plan, \
             workflow, phase or destination"
                .into(),
        );
    }
    Ok(filters)
}

/// True when every term matches (terms are joined by AND, as in ListPending).
pub fn matches(filters: &[Filter], subject: &Subject<'_>) -> bool {
    let term = |f: &Filter, value: &str| match f.op {
        FilterOp::Eq => value == f.values[0],
        FilterOp::Ne => value != f.values[0],
        FilterOp::Contains => value.contains(f.values[0].as_str()),
        FilterOp::ValueIn => f.values.iter().any(|v| v == value),
        FilterOp::InScope => unreachable!("scope terms are matched whole, below"),
    };
    filters.iter().all(|f| {
        if f.op == FilterOp::InScope {
            return scope_pairs(f).any(|(p, d)| {
                p.is_none_or(|p| p == subject.project) && d.is_none_or(|d| d == subject.domain)
            });
        }
        let value = match f.field {
            FilterField::Project => subject.project,
            FilterField::Domain => subject.domain,
            FilterField::Name => subject.name,
            FilterField::Channel => subject.channel.as_str(),
            FilterField::LaunchPlan => subject.launch_plan,
            FilterField::Workflow => subject.workflow,
            FilterField::Phase => subject.phase,
            FilterField::Destination => {
                // ne: none of them is it; the others: one of them is.
                return match f.op {
                    FilterOp::Ne => subject.destinations.iter().all(|d| term(f, d)),
                    _ => subject.destinations.iter().any(|d| term(f, d)),
                };
            }
            FilterField::State => return false,
        };
        term(f, value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flyteadmin_syntax() {
        let f = parse("eq(project,flytesnacks)+eq(state,retrying)").unwrap();
        assert_eq!(
            f,
            vec![
                Filter {
                    field: FilterField::Project,
                    op: FilterOp::Eq,
                    values: vec!["flytesnacks".into()]
                },
                Filter {
                    field: FilterField::State,
                    op: FilterOp::Eq,
                    values: vec!["retrying".into()]
                },
            ]
        );
        let f = parse("value_in(state,pending;dead)+contains(name,abc)").unwrap();
        assert_eq!(f[0].values, vec!["pending", "dead"]);
        assert_eq!(f[1].op, FilterOp::Contains);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_what_it_cannot_apply() {
        for (bad, says) in [
            ("eq(project)", "form"),
            ("eq project,x", "form"),
            ("gt(project,x)", "unsupported filter function"),
            ("eq(owner,x)", "unknown filter key"),
            ("eq(state,delivered)", "unknown state"),
            ("eq(state,silent)", "dead or silenced"),
            ("eq(channel,fax)", "unknown channel"),
            ("eq(project,)", "empty value"),
            ("contains(state,re)", "contains does not apply"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // Bounded, so that a store's own limits never surface as an internal error.
        let many_terms = vec!["eq(project,a)"; 17].join("+");
        let many_values = format!("value_in(name,{})", vec!["a"; 101].join(";"));
        let long = format!("eq(name,{})", "a".repeat(5000));
        for (bad, says) in [
            (many_terms.as_str(), "at most 16"),
            (many_values.as_str(), "at most 100"),
            (long.as_str(), "at most 4096"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        assert_eq!(
            parse(&vec!["eq(project,a)"; 16].join("+")).unwrap().len(),
            16
        );
    }

    #[test]
    fn silence_matchers_match_what_list_pending_would() {
        let m = parse_matcher("eq(project,flytesnacks)+ne(domain,prod)").unwrap();
        let subject = |project, domain| Subject {
            project,
            domain,
            name: "abc",
            channel: Channel::Email,
            launch_plan: "",
            workflow: "",
            phase: "FAILED",
            destinations: &[],
        };
        assert!(matches(&m, &subject("flytesnacks", "dev")));
        assert!(!matches(&m, &subject("flytesnacks", "prod")));
        assert!(!matches(&m, &subject("other", "dev")));
        let m = parse_matcher("value_in(channel,slack;email)+contains(name,ab)").unwrap();
        assert!(matches(&m, &subject("x", "y")));
        // A permission scope, matched in memory as the stores match it in SQL.
        let scope = [in_scope(vec![
            ("flytesnacks".into(), "*".into()),
            ("*".into(), "prod".into()),
        ])];
        assert!(matches(&scope, &subject("flytesnacks", "dev")));
        assert!(matches(&scope, &subject("other", "prod")));
        assert!(!matches(&scope, &subject("other", "dev")));
        assert!(!matches(&[in_scope(Vec::new())], &subject("x", "y")));
        // A term can never come from a request: `in_scope` is not in the syntax.
        assert!(parse("in_scope(project,x)").is_err());
        assert!(parse_matcher("").unwrap_err().contains("empty"));
        assert!(
            parse_matcher("eq(state,dead)")
                .unwrap_err()
                .contains("state")
        );
        assert!(parse_matcher("eq(project").is_err());
        assert!(wants_silenced(&parse("eq(state,silenced)").unwrap()));
        assert!(!wants_silenced(&parse("eq(project,silenced)").unwrap()));
        assert!(only_silenced(&parse("eq(state,silenced)").unwrap()));
        assert!(!only_silenced(
            &parse("value_in(state,dead;silenced)").unwrap()
        ));
        assert!(wants_silenced(
            &parse("value_in(state,dead;silenced)").unwrap()
        ));
    }

    #[test]
    fn silence_only_keys_match_the_execution_and_recipients_and_list_pending_refuses_them() {
        let m = parse_matcher(
            "eq(launch_plan,flytesnacks/development/lp.daily)+value_in(phase,FAILED;TIMED_OUT)",
        )
        .unwrap();
        let recipients = ["a@example.com".to_string(), "#ml-alerts".to_string()];
        let subject = |launch_plan, phase| Subject {
            project: "flytesnacks",
            domain: "development",
            name: "x",
            channel: Channel::Slack,
            launch_plan,
            workflow: "flytesnacks/development/wf.train",
            phase,
            destinations: &recipients,
        };
        assert!(matches(
            &m,
            &subject("flytesnacks/development/lp.daily", "FAILED")
        ));
        assert!(!matches(
            &m,
            &subject("flytesnacks/development/lp.daily", "SUCCEEDED")
        ));
        assert!(!matches(
            &m,
            &subject("flytesnacks/development/other", "FAILED")
        ));
        let to = |matcher: &str| matches(&parse_matcher(matcher).unwrap(), &subject("", "FAILED"));
        assert!(to("eq(destination,#ml-alerts)"));
        assert!(!to("eq(destination,#other)"));
        assert!(!to("ne(destination,#ml-alerts)"));
        assert!(to("ne(destination,#other)"));
        assert!(to("contains(workflow,wf.train)"));
        assert!(
            parse_matcher("eq(phase,BROKEN)")
                .unwrap_err()
                .contains("phase name")
        );
        let refused = parse("eq(launch_plan,a/b/c)").unwrap_err();
        assert!(
            refused.contains("launch_plan is a silence matcher key"),
            "{refused}"
        );
    }
}

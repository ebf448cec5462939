//! ListPending filters in FlyteAdmin's list syntax: `eq(project,flytesnacks)+eq(state,retrying)`.
//! Parsed here into a typed form so that stores build SQL from an allow-list, never from text.

use super::{Channel, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    Project,
    Domain,
    Name,
    Channel,
    State,
}

impl FilterField {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "project" => FilterField::Project,
            "domain" => FilterField::Domain,
            "name" => FilterField::Name,
            "channel" => FilterField::Channel,
            "state" => FilterField::State,
            _ => return None,
        })
    }

    /// The column that holds this field in every store.
    pub fn column(self) -> &'static str {
        match self {
            FilterField::Project => "project",
            FilterField::Domain => "domain",
            FilterField::Name => "name",
            FilterField::Channel => "channel",
            FilterField::State => "state",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Contains,
    ValueIn,
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
        format!("unknown filter key {key:?}; use project, domain, name, channel or state")
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
            _ => true,
        };
        if !known {
            let expected = if field == FilterField::State {
                "pending, retrying, grouped, dead or silenced"
            } else {
                "email, slack or pagerduty"
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
}

/// Parses a silence's matcher: the filter syntax, not empty, and only fields a delivery has
/// before it is sent (not `state`).
pub fn parse_matcher(matcher: &str) -> Result<Vec<Filter>, String> {
    let filters = parse(matcher)?;
    if filters.is_empty() {
        return Err(
            "is empty; a silence needs at least one term, e.g. eq(project,flytesnacks)".into(),
        );
    }
    if filters.iter().any(|f| f.field == FilterField::State) {
        return Err(
            "state does not apply to a silence; use project, domain, name or channel".into(),
        );
    }
    Ok(filters)
}

/// True when every term matches (terms are joined by AND, as in ListPending).
pub fn matches(filters: &[Filter], subject: &Subject<'_>) -> bool {
    filters.iter().all(|f| {
        let value = match f.field {
            FilterField::Project => subject.project,
            FilterField::Domain => subject.domain,
            FilterField::Name => subject.name,
            FilterField::Channel => subject.channel.as_str(),
            FilterField::State => return false,
        };
        match f.op {
            FilterOp::Eq => value == f.values[0],
            FilterOp::Ne => value != f.values[0],
            FilterOp::Contains => value.contains(f.values[0].as_str()),
            FilterOp::ValueIn => f.values.iter().any(|v| v == value),
        }
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
        };
        assert!(matches(&m, &subject("flytesnacks", "dev")));
        assert!(!matches(&m, &subject("flytesnacks", "prod")));
        assert!(!matches(&m, &subject("other", "dev")));
        let m = parse_matcher("value_in(channel,slack;email)+contains(name,ab)").unwrap();
        assert!(matches(&m, &subject("x", "y")));
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
}

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
                Some(State::Pending | State::Retrying | State::Dead)
            ),
            FilterField::Channel => Channel::parse(v).is_some(),
            _ => true,
        };
        if !known {
            let expected = if field == FilterField::State {
                "pending, retrying or dead"
            } else {
                "email, slack or pagerduty"
            };
            return Err(format!("unknown {key} {v:?}; use {expected}"));
        }
    }
    Ok(Filter { field, op, values })
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
}

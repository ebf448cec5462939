//! Who may do what, where: permission rules from `flyteNotify.auth.permissions`, matched against
//! the caller's identity (a named static token, or a JWT's claims). Transport-free: the gRPC and
//! HTTP faces both call [`check`] and [`scope`] with the [`Caller`] the auth layer attached, and pass the resulting
//! [`Scope`] into the core, which restricts its ledger queries with it.
//!
//! Without any rules nothing is decided here and every authenticated caller may do everything,
//! as before permissions existed.

use std::fmt;
use std::sync::Arc;

use crate::config::permissions::Pattern;
pub use crate::config::permissions::{Action, PermissionRule};
use crate::error::Error;
use crate::ledger::{self, Filter};

/// Who is calling, as the auth layer established it. Never holds the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A static token, by the name the tokens file gives it (unnamed tokens are "").
    Token { name: String },
    /// A verified JWT's claims.
    Jwt {
        subject: String,
        client_id: Option<String>,
        groups: Vec<String>,
        scopes: Vec<String>,
    },
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Token { name } if name.is_empty() => write!(f, "token (unnamed)"),
            Identity::Token { name } => write!(f, "token {name}"),
            Identity::Jwt {
                subject, client_id, ..
            } => match client_id {
                Some(c) => write!(f, "jwt sub={subject} client={c}"),
                None => write!(f, "jwt sub={subject}"),
            },
        }
    }
}

#[derive(Debug, Clone)]
enum Who {
    Token(String),
    Subject(String),
    ClientId(String),
    Group(String),
    Scope(String),
}

impl Who {
    fn matches(&self, identity: &Identity) -> bool {
        match (self, identity) {
            (Who::Token(n), Identity::Token { name }) => n == name,
            (Who::Subject(s), Identity::Jwt { subject, .. }) => s == subject,
            (Who::ClientId(c), Identity::Jwt { client_id, .. }) => client_id.as_ref() == Some(c),
            (Who::Group(g), Identity::Jwt { groups, .. }) => groups.contains(g),
            (Who::Scope(s), Identity::Jwt { scopes, .. }) => scopes.contains(s),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    who: Who,
    actions: Vec<Action>,
    patterns: Vec<Pattern>,
}

/// The compiled rules.
#[derive(Debug, Clone)]
pub struct Permissions {
    rules: Vec<Rule>,
}

/// Where a caller may do one action: everywhere, or within these patterns (none: nowhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Within(Vec<(Option<String>, Option<String>)>),
}

impl Scope {
    pub fn allows(&self, project: &str, domain: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Within(pairs) => pairs.iter().any(|(p, d)| {
                p.as_deref().is_none_or(|p| p == project)
                    && d.as_deref().is_none_or(|d| d == domain)
            }),
        }
    }

    /// The ledger term that keeps a query within this scope; None when it needs none.
    pub fn filter(&self) -> Option<Filter> {
        match self {
            Scope::All => None,
            Scope::Within(pairs) => {
                let star = |s: &Option<String>| s.clone().unwrap_or_else(|| "*".into());
                Some(ledger::filters::in_scope(
                    pairs.iter().map(|(p, d)| (star(p), star(d))).collect(),
                ))
            }
        }
    }
}

impl Permissions {
    /// Compiles the configured rules; the error names the rule's key. None when there are none:
    /// then every authenticated caller may do everything.
    pub fn compile(rules: &[PermissionRule]) -> Result<Option<Permissions>, (String, String)> {
        if rules.is_empty() {
            return Ok(None);
        }
        crate::config::permissions::validate(rules)?;
        let mut compiled = Vec::new();
        for r in rules {
            let who = [
                r.token.clone().map(Who::Token),
                r.subject.clone().map(Who::Subject),
                r.client_id.clone().map(Who::ClientId),
                r.group.clone().map(Who::Group),
                r.scope.clone().map(Who::Scope),
            ]
            .into_iter()
            .flatten()
            .next()
            .expect("validate: exactly one identity key");
            let patterns = r
                .projects
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<_, _>>()
                .expect("validate: every pattern parses");
            compiled.push(Rule {
                who,
                actions: r.actions.clone(),
                patterns,
            });
        }
        Ok(Some(Permissions { rules: compiled }))
    }

    fn grants(rule: &Rule, action: Action) -> bool {
        rule.actions.contains(&action) || rule.actions.contains(&Action::Admin)
    }

    /// Where `identity` may do `action`.
    pub fn scope(&self, identity: &Identity, action: Action) -> Scope {
        let mut pairs = Vec::new();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.who.matches(identity) && Self::grants(r, action))
        {
            for p in &rule.patterns {
                if p.project.is_none() && p.domain.is_none() {
                    return Scope::All;
                }
                pairs.push((p.project.clone(), p.domain.clone()));
            }
        }
        Scope::Within(pairs)
    }
}

/// Where a decision applies: one project and domain, or every project (calls not about one).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Project { project: &'a str, domain: &'a str },
    Everywhere,
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Project { project, domain } => write!(f, "{project}/{domain}"),
            Target::Everywhere => write!(f, "every project (*)"),
        }
    }
}

/// Who is calling and the rules that apply, as the auth layer attaches it to each request's
/// extensions. A request without one (auth off) may do everything.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    /// None when no rules are configured: every authenticated caller may do everything.
    pub permissions: Option<Arc<Permissions>>,
}

/// The one check both faces call: may `caller` do `action` at `target`? PERMISSION_DENIED
/// naming the action and the project otherwise. Logged and counted when rules apply.
pub fn check(caller: Option<&Caller>, action: Action, target: Target<'_>) -> Result<(), Error> {
    let Some((identity, permissions)) = applicable(caller) else {
        return Ok(());
    };
    let scope = permissions.scope(identity, action);
    let allowed = match target {
        Target::Project { project, domain } => scope.allows(project, domain),
        Target::Everywhere => scope == Scope::All,
    };
    record(identity, action, &target.to_string(), allowed);
    if allowed {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{identity} may not {} in {target}",
            action.as_str()
        )))
    }
}

/// Where `caller` may do `action`, for calls that list or select many deliveries: the core
/// restricts its queries to it. PERMISSION_DENIED when the caller may do it nowhere.
pub fn scope(caller: Option<&Caller>, action: Action) -> Result<Scope, Error> {
    let Some((identity, permissions)) = applicable(caller) else {
        return Ok(Scope::All);
    };
    let scope = permissions.scope(identity, action);
    let nowhere = scope == Scope::Within(Vec::new());
    record(identity, action, "the projects it may", !nowhere);
    if nowhere {
        return Err(Error::PermissionDenied(format!(
            "{identity} may not {} in any project",
            action.as_str()
        )));
    }
    Ok(scope)
}

/// Whether `caller` may do `action` at `target`, without logging or counting it: for what a page
/// offers, not for what it does (that is checked again, with [`check`] or [`scope`]).
pub fn allowed_quietly(caller: Option<&Caller>, action: Action, target: Target<'_>) -> bool {
    match applicable(caller) {
        None => true,
        Some((identity, permissions)) => {
            let scope = permissions.scope(identity, action);
            match target {
                Target::Project { project, domain } => scope.allows(project, domain),
                Target::Everywhere => scope == Scope::All,
            }
        }
    }
}

/// Logs and counts a refusal the core made on the caller's scope (a Redrive or Discard by id of a
/// delivery the caller may see but not change): the decision was the scope's, the refusal the
/// core's, and like every decision it must be in the log and the counter.
pub fn record_refusal(caller: Option<&Caller>, action: Action, error: &Error) {
    if let (Error::PermissionDenied(why), Some((identity, _))) = (error, applicable(caller)) {
        record(identity, action, why, false);
    }
}

fn applicable(caller: Option<&Caller>) -> Option<(&Identity, &Permissions)> {
    let caller = caller?;
    Some((&caller.identity, caller.permissions.as_deref()?))
}

/// Every decision in the log, with the identity (never a token), and in the
/// `flyte_notify_authz_decisions_total` counter.
pub fn record(identity: &Identity, action: Action, target: &str, allowed: bool) {
    let outcome = if allowed { "allow" } else { "deny" };
    metrics::counter!(
        crate::telemetry::AUTHZ_DECISIONS,
        "action" => action.as_str(),
        "decision" => outcome
    )
    .increment(1);
    if allowed {
        tracing::info!(identity = %identity, action = action.as_str(), target, decision = outcome, "authorization");
    } else {
        tracing::warn!(identity = %identity, action = action.as_str(), target, decision = outcome, "authorization");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(token: &str, actions: &[Action], projects: &[&str]) -> PermissionRule {
        PermissionRule {
            token: Some(token.into()),
            subject: None,
            client_id: None,
            group: None,
            scope: None,
            actions: actions.to_vec(),
            projects: projects.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn patterns_grant_only_their_projects_and_admin_grants_every_action() {
        let p = Permissions::compile(&[
            rule(
                "reader",
                &[Action::Read],
                &["flytesnacks/*", "*/production"],
            ),
            rule("boss", &[Action::Admin], &["*"]),
        ])
        .unwrap()
        .unwrap();
        let reader = Identity::Token {
            name: "reader".into(),
        };
        let read = p.scope(&reader, Action::Read);
        assert!(read.allows("flytesnacks", "development"));
        assert!(read.allows("other", "production"));
        assert!(!read.allows("other", "development"));
        assert_eq!(p.scope(&reader, Action::Operate), Scope::Within(Vec::new()));
        let boss = Identity::Token {
            name: "boss".into(),
        };
        assert_eq!(p.scope(&boss, Action::Operate), Scope::All);
        let caller = Caller {
            identity: reader,
            permissions: Some(Arc::new(p)),
        };
        let denied = check(
            Some(&caller),
            Action::Operate,
            Target::Project {
                project: "flytesnacks",
                domain: "development",
            },
        )
        .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "token reader may not operate in flytesnacks/development"
        );
        assert!(check(None, Action::Admin, Target::Everywhere).is_ok());
    }

    #[test]
    fn bad_rules_name_their_key() {
        let mut r = rule("x", &[Action::Read], &["flytesnacks"]);
        let e = Permissions::compile(std::slice::from_ref(&r)).unwrap_err();
        assert_eq!(e.0, "flyteNotify.auth.permissions[0].projects[0]");
        r.projects = vec!["fly*/x".into()];
        assert!(Permissions::compile(std::slice::from_ref(&r)).is_err());
        r.projects = vec!["*".into()];
        r.subject = Some("s".into());
        let e = Permissions::compile(&[r]).unwrap_err();
        assert_eq!(e.0, "flyteNotify.auth.permissions[0]");
    }
}

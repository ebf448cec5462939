//! `flyteNotify.auth.permissions`: who may do what, where, as configured. The rules are checked
//! here (each error names its key); `authz` compiles and applies them.

use serde::{Deserialize, Serialize};

/// What a call does, as the rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Enqueue,
    Read,
    /// Redrive, discard, send-test and silences.
    Operate,
    /// Everything the others allow.
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Enqueue => "enqueue",
            Action::Read => "read",
            Action::Operate => "operate",
            Action::Admin => "admin",
        }
    }
}

/// One rule as configured: exactly one of the identity keys, the actions, the projects.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionRule {
    /// A static token's name (`name: token` in the tokens file).
    #[serde(default)]
    pub token: Option<String>,
    /// A JWT's `sub`.
    #[serde(default)]
    pub subject: Option<String>,
    /// A JWT's `client_id` (or `azp`): FlyteAdmin's client-credentials apps.
    #[serde(default)]
    pub client_id: Option<String>,
    /// One value of the JWT's groups claim (`flyteNotify.auth.oidc.groupsClaim`).
    #[serde(default)]
    pub group: Option<String>,
    /// One of the JWT's scopes (`scope`, space separated, or `scp`).
    #[serde(default)]
    pub scope: Option<String>,
    pub actions: Vec<Action>,
    /// `project/domain` patterns: `flytesnacks/*`, `*/production`, `flytesnacks/development`, `*`.
    pub projects: Vec<String>,
}

/// A project/domain pattern; None is `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub project: Option<String>,
    pub domain: Option<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let any = |s: &str| -> Result<Option<String>, String> {
            match s.trim() {
                "*" => Ok(None),
                "" => Err(format!("{text:?} has an empty part; use * for any")),
                s if s.contains('*') => Err(format!(
                    "{text:?}: * stands for a whole project or domain, not part of one"
                )),
                s => Ok(Some(s.to_string())),
            }
        };
        match text.trim() {
            "*" => Ok(Pattern {
                project: None,
                domain: None,
            }),
            t => {
                let (p, d) = t.split_once('/').ok_or_else(|| {
                    format!("{text:?} is not project/domain, e.g. flytesnacks/* or */production")
                })?;
                Ok(Pattern {
                    project: any(p)?,
                    domain: any(d)?,
                })
            }
        }
    }
}

/// Every problem a rule can have, as (key, message): exactly one identity key, some actions,
/// some projects, each a valid pattern.
pub fn validate(rules: &[PermissionRule]) -> Result<(), (String, String)> {
    for (i, r) in rules.iter().enumerate() {
        let key = |k: &str| format!("flyteNotify.auth.permissions[{i}]{k}");
        let named = [
            r.token.is_some(),
            r.subject.is_some(),
            r.client_id.is_some(),
            r.group.is_some(),
            r.scope.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if named != 1 {
            return Err((
                key(""),
                "name exactly one of token, subject, clientId, group or scope".into(),
            ));
        }
        if r.actions.is_empty() {
            return Err((
                key(".actions"),
                "empty; give enqueue, read, operate or admin".into(),
            ));
        }
        if r.projects.is_empty() {
            return Err((
                key(".projects"),
                "empty; give project/domain patterns such as flytesnacks/* or *".into(),
            ));
        }
        for (j, p) in r.projects.iter().enumerate() {
            Pattern::parse(p).map_err(|e| (key(&format!(".projects[{j}]")), e))?;
        }
    }
    Ok(())
}

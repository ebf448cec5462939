//! Secrets a sender holds (webhook URLs, bot tokens, routing keys, signing secrets): read once
//! from the environment variable or file the config names, and never shown. `Debug` and
//! `Display` print a placeholder, so a secret cannot reach a log line, a metric or an error by
//! way of formatting; senders also scrub `expose()`'s text from anything a peer echoes back.

use std::fmt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// For tests and for values that arrive from a secret store already.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The environment variable `env_var` when it is set (it wins), else the trimmed contents of
    /// `file`. `key` is the config key that names them, for the error; the error never holds the
    /// value.
    pub fn load(key: &str, env_var: &str, file: &str) -> Result<Secret, String> {
        let value = if !env_var.is_empty() {
            std::env::var(env_var)
                .map_err(|_| format!("{key}: the environment variable {env_var} is not set"))?
        } else if !file.is_empty() {
            std::fs::read_to_string(Path::new(file))
                .map_err(|e| format!("{key}: cannot read {file}: {e}"))?
        } else {
            return Err(format!(
                "{key}: name an environment variable or a file that holds it"
            ));
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{key}: the secret it names is empty"));
        }
        Ok(Secret(value.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced: for errors built from a peer's answer,
    /// which may quote the request back.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "[secret]")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value_and_scrub_removes_it() {
        let s = Secret::new("xoxb-123");
        assert!(!format!("{s:?} {s}").contains("xoxb"));
        assert_eq!(s.scrub("token xoxb-123 refused"), "token [secret] refused");
    }

    #[test]
    fn load_names_the_key_and_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "  routing-key-1\n").unwrap();
        let s = Secret::load("k", "", file.to_str().unwrap()).unwrap();
        assert_eq!(s.expose(), "routing-key-1");
        let e = Secret::load(
            "flyteNotify.x.routingKeyEnvVar",
            "FLYTE_NOTIFY_UNSET_FOR_TEST",
            "",
        )
        .unwrap_err();
        assert!(e.contains("flyteNotify.x.routingKeyEnvVar"), "{e}");
        assert!(Secret::load("k", "", "").is_err());
    }
}

//! How deliveries are grouped into digests: which labels make a group, how long the first member
//! waits for company, how soon the next digest of a group may go, and how many members one digest
//! holds. The same settings serve `flyteNotify.grouping.email`, each Slack and PagerDuty route,
//! and each webhook destination.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The labels a group may be keyed by.
pub const GROUP_LABELS: [&str; 5] = ["project", "domain", "launch_plan", "workflow", "phase"];

/// The longest `groupWait`: a group that waits longer is an alert that came too late.
pub const MAX_GROUP_WAIT: Duration = Duration::from_secs(3600);
/// The longest `groupInterval`.
pub const MAX_GROUP_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The most members one digest may be set to hold: each is a row of the rendered message.
pub const MAX_GROUP_SIZE: u32 = 500;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupingConfig {
    /// Members share a group when these labels are equal (and they go to the same recipients).
    /// Empty: everything to the same recipients is one group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// How long the first member of a group waits for others; 0 sends each delivery on its own.
    #[serde(default, with = "humantime_serde")]
    pub group_wait: Duration,
    /// The least time between two digests of one group.
    #[serde(default = "group_interval", with = "humantime_serde")]
    pub group_interval: Duration,
    /// Members per digest; those beyond go to the next digest.
    #[serde(default = "max_group_size")]
    pub max_group_size: u32,
}

fn group_interval() -> Duration {
    Duration::from_secs(60)
}
fn max_group_size() -> u32 {
    100
}

impl Default for GroupingConfig {
    fn default() -> Self {
        Self {
            group_by: Vec::new(),
            group_wait: Duration::ZERO,
            group_interval: group_interval(),
            max_group_size: max_group_size(),
        }
    }
}

impl GroupingConfig {
    /// Whether deliveries are grouped at all.
    pub fn enabled(&self) -> bool {
        !self.group_wait.is_zero()
    }

    /// Checks every bound; the error names the key under `key`.
    pub fn validate(&self, key: &str) -> Result<(), (String, String)> {
        let mut seen = Vec::new();
        for (i, label) in self.group_by.iter().enumerate() {
            if !GROUP_LABELS.contains(&label.as_str()) {
                return Err((
                    format!("{key}.groupBy[{i}]"),
                    format!(
                        "{label:?} is not a group label; use any of {}",
                        GROUP_LABELS.join(", ")
                    ),
                ));
            }
            if seen.contains(&label) {
                return Err((
                    format!("{key}.groupBy[{i}]"),
                    format!("{label:?} is named twice"),
                ));
            }
            seen.push(label);
        }
        if self.group_wait > MAX_GROUP_WAIT {
            return Err((
                format!("{key}.groupWait"),
                format!(
                    "at most {} (0 sends each delivery on its own)",
                    humantime::format_duration(MAX_GROUP_WAIT)
                ),
            ));
        }
        if self.group_interval > MAX_GROUP_INTERVAL {
            return Err((
                format!("{key}.groupInterval"),
                format!("at most {}", humantime::format_duration(MAX_GROUP_INTERVAL)),
            ));
        }
        if self.max_group_size < 2 || self.max_group_size > MAX_GROUP_SIZE {
            return Err((
                format!("{key}.maxGroupSize"),
                format!("from 2 to {MAX_GROUP_SIZE}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_refused_naming_the_key() {
        let ok = GroupingConfig {
            group_by: vec!["project".into(), "domain".into()],
            group_wait: Duration::from_secs(5),
            ..Default::default()
        };
        assert!(ok.validate("k").is_ok());
        for (bad, key) in [
            (
                GroupingConfig {
                    group_by: vec!["owner".into()],
                    ..ok.clone()
                },
                "k.groupBy[0]",
            ),
            (
                GroupingConfig {
                    group_by: vec!["phase".into(), "phase".into()],
                    ..ok.clone()
                },
                "k.groupBy[1]",
            ),
            (
                GroupingConfig {
                    group_wait: Duration::from_secs(3601),
                    ..ok.clone()
                },
                "k.groupWait",
            ),
            (
                GroupingConfig {
                    group_interval: Duration::from_secs(90_000),
                    ..ok.clone()
                },
                "k.groupInterval",
            ),
            (
                GroupingConfig {
                    max_group_size: 501,
                    ..ok.clone()
                },
                "k.maxGroupSize",
            ),
        ] {
            assert_eq!(bad.validate("k").unwrap_err().0, key);
        }
    }
}

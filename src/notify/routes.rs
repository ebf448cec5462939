//! Which Slack and PagerDuty recipients have native routes, and when PagerDuty is told. The core
//! splits a notification's recipients by route at Enqueue, so that each delivery goes to one
//! destination and is retried, rate-limited and listed on its own; recipients without a route
//! stay together in one delivery and are emailed, as FlyteAdmin does.

use std::collections::HashMap;

use crate::config::channels::normalize_recipient;
use crate::config::grouping::GroupingConfig;
use crate::delivery::Channel;
use crate::proto::flyteidl::core::workflow_execution::Phase;

#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Normalized recipient → its route's index, per channel.
    slack: HashMap<String, usize>,
    pagerduty: HashMap<String, usize>,
    /// Phases in which a routed PagerDuty recipient gets a trigger.
    pub pagerduty_trigger_on: Vec<i32>,
    /// Send `resolve` to routed PagerDuty recipients when an execution SUCCEEDS.
    pub pagerduty_resolve_on_success: bool,
    /// Digests of email deliveries; None sends each on its own.
    email_grouping: Option<GroupingConfig>,
    /// Digests of each Slack route's messages, by route index.
    slack_grouping: Vec<Option<GroupingConfig>>,
    /// Digests of each PagerDuty route's triggers, by route index.
    pagerduty_grouping: Vec<Option<GroupingConfig>>,
    /// Digests of the webhooks to each destination that groups, by its name.
    webhook_grouping: HashMap<String, GroupingConfig>,
}

/// One group of a notification's recipients: all on one route, or all without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The route's index, for routed recipients.
    pub route: Option<usize>,
    pub routed: bool,
    pub recipients: Vec<String>,
}

impl Routes {
    pub fn new(
        slack: &[Vec<String>],
        pagerduty: &[Vec<String>],
        trigger_on: Vec<i32>,
        resolve_on_success: bool,
    ) -> Self {
        let table = |routes: &[Vec<String>]| {
            let mut map = HashMap::new();
            for (i, recipients) in routes.iter().enumerate() {
                for r in recipients {
                    map.insert(normalize_recipient(r), i);
                }
            }
            map
        };
        Self {
            slack: table(slack),
            pagerduty: table(pagerduty),
            pagerduty_trigger_on: trigger_on,
            pagerduty_resolve_on_success: resolve_on_success,
            email_grouping: None,
            slack_grouping: Vec::new(),
            pagerduty_grouping: Vec::new(),
            webhook_grouping: HashMap::new(),
        }
    }

    /// Which deliveries are grouped into digests: email ones by `email`, each Slack and PagerDuty
    /// route's by its own (in route order). A config with no groupWait groups nothing.
    pub fn with_grouping(
        mut self,
        email: &GroupingConfig,
        slack: &[GroupingConfig],
        pagerduty: &[GroupingConfig],
    ) -> Self {
        fn enabled(g: &GroupingConfig) -> Option<GroupingConfig> {
            g.enabled().then(|| g.clone())
        }
        self.email_grouping = enabled(email);
        self.slack_grouping = slack.iter().map(enabled).collect();
        self.pagerduty_grouping = pagerduty.iter().map(enabled).collect();
        self
    }

    /// Which webhook destinations group their webhooks into digests: `(name, grouping)`.
    pub fn with_webhook_grouping(
        mut self,
        destinations: impl IntoIterator<Item = (String, GroupingConfig)>,
    ) -> Self {
        self.webhook_grouping = destinations
            .into_iter()
            .filter(|(_, g)| g.enabled())
            .collect();
        self
    }

    /// The grouping the webhooks to destination `name` follow, if any. Webhooks to a URL are
    /// never grouped: a digest goes to a destination, by name.
    pub fn webhook_grouping(&self, name: &str) -> Option<&GroupingConfig> {
        self.webhook_grouping.get(name)
    }

    /// The grouping a delivery of `channel` to `group`'s recipients at `phase` follows, if any.
    /// A PagerDuty resolve is never grouped: it closes its launch plan's own incident.
    pub fn grouping(
        &self,
        channel: Channel,
        route: Option<usize>,
        phase: i32,
    ) -> Option<&GroupingConfig> {
        match (channel, route) {
            (Channel::Email, None) => self.email_grouping.as_ref(),
            (Channel::Slack, Some(route)) => self.slack_grouping.get(route)?.as_ref(),
            (Channel::Pagerduty, Some(route)) if self.pagerduty_trigger_on.contains(&phase) => {
                self.pagerduty_grouping.get(route)?.as_ref()
            }
            _ => None,
        }
    }

    fn table(&self, channel: Channel) -> Option<&HashMap<String, usize>> {
        match channel {
            Channel::Slack => Some(&self.slack),
            Channel::Pagerduty => Some(&self.pagerduty),
            Channel::Email | Channel::Webhook | Channel::Teams => None,
        }
    }

    pub fn is_routed(&self, channel: Channel, recipient: &str) -> bool {
        self.table(channel)
            .is_some_and(|t| t.contains_key(&normalize_recipient(recipient)))
    }

    /// `recipients` grouped by route, routes in the order their first recipient appears, the
    /// unrouted ones last. Duplicates (by route comparison) are kept once.
    pub fn split(&self, channel: Channel, recipients: &[String]) -> Vec<Group> {
        let Some(table) = self.table(channel) else {
            return vec![Group {
                route: None,
                routed: false,
                recipients: recipients.to_vec(),
            }];
        };
        let mut order: Vec<usize> = Vec::new();
        let mut by_route: HashMap<usize, Vec<String>> = HashMap::new();
        let mut unrouted = Vec::new();
        for r in recipients {
            match table.get(&normalize_recipient(r)) {
                Some(&route) => {
                    let group = by_route.entry(route).or_insert_with(|| {
                        order.push(route);
                        Vec::new()
                    });
                    group.push(r.clone());
                }
                None => unrouted.push(r.clone()),
            }
        }
        let mut groups: Vec<Group> = order
            .into_iter()
            .map(|route| Group {
                route: Some(route),
                routed: true,
                recipients: by_route.remove(&route).unwrap_or_default(),
            })
            .collect();
        if !unrouted.is_empty() {
            groups.push(Group {
                route: None,
                routed: false,
                recipients: unrouted,
            });
        }
        groups
    }

    /// Whether a routed group of `channel` gets a delivery when an execution reaches `phase`,
    /// given whether the notification names that phase. PagerDuty triggers only in its trigger
    /// phases, and resolves on success when configured even though the notification (written for
    /// failures) does not name SUCCEEDED.
    pub fn routed_wants(&self, channel: Channel, phase: i32, named: bool) -> bool {
        match channel {
            Channel::Pagerduty => {
                (named && self.pagerduty_trigger_on.contains(&phase))
                    || (phase == Phase::Succeeded as i32 && self.pagerduty_resolve_on_success)
            }
            _ => named,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::new(
            &[
                vec!["ml-alerts@acme.slack.com".into(), "#ml-alerts".into()],
                vec!["#infra".into()],
            ],
            &[vec!["oncall@acme.pagerduty.com".into()]],
            vec![Phase::Failed as i32],
            true,
        )
    }

    #[test]
    fn recipients_split_by_route_and_the_rest_stay_together() {
        let r = routes();
        let list: Vec<String> = [
            "a@x.com",
            "#ML-Alerts",
            "#infra",
            "b@x.com",
            " ml-alerts@acme.slack.com",
        ]
        .map(String::from)
        .to_vec();
        let groups = r.split(Channel::Slack, &list);
        assert_eq!(
            groups,
            vec![
                Group {
                    route: Some(0),
                    routed: true,
                    recipients: vec!["#ML-Alerts".into(), " ml-alerts@acme.slack.com".into()]
                },
                Group {
                    route: Some(1),
                    routed: true,
                    recipients: vec!["#infra".into()]
                },
                Group {
                    route: None,
                    routed: false,
                    recipients: vec!["a@x.com".into(), "b@x.com".into()]
                },
            ]
        );
        // Routes are per channel: a Slack route does not route a PagerDuty recipient.
        assert!(!r.is_routed(Channel::Pagerduty, "#infra"));
        assert_eq!(r.split(Channel::Email, &list).len(), 1);
    }

    #[test]
    fn pagerduty_triggers_in_its_phases_and_resolves_on_success() {
        let r = routes();
        assert!(r.routed_wants(Channel::Pagerduty, Phase::Failed as i32, true));
        assert!(!r.routed_wants(Channel::Pagerduty, Phase::Failed as i32, false));
        assert!(!r.routed_wants(Channel::Pagerduty, Phase::Aborted as i32, true));
        assert!(r.routed_wants(Channel::Pagerduty, Phase::Succeeded as i32, false));
        assert!(r.routed_wants(Channel::Slack, Phase::Succeeded as i32, true));
    }
}

//! Which configured route a native sender (Slack, PagerDuty) uses for a delivery's recipients.
//!
//! The core splits a notification's recipients by route before it stores deliveries
//! (`notify::routes`), comparing them the same way as here: trimmed, in any case. So all of a
//! delivery's recipients share one route. A sender still checks: a delivery that mixed routes
//! would otherwise reach the first one only, and say it was delivered.

use std::collections::HashMap;

/// Routes of type `T`, each for a list of recipients.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<T>,
    by_recipient: HashMap<String, usize>,
    /// "slack", "pagerduty": for errors.
    channel: &'static str,
}

/// How a recipient is compared with the routes: what `config::channels::normalize_recipient`
/// does for the core (a test holds the two together).
fn normalize(recipient: &str) -> String {
    recipient.trim().to_lowercase()
}

impl<T> RouteTable<T> {
    /// Each route with its recipients. Refused when a route names no recipient or an empty one,
    /// or two routes name the same recipient (which would make the route depend on the order).
    pub fn new(channel: &'static str, routes: Vec<(Vec<String>, T)>) -> Result<Self, String> {
        let mut by_recipient = HashMap::new();
        let mut table = Vec::with_capacity(routes.len());
        for (i, (recipients, route)) in routes.into_iter().enumerate() {
            if recipients.is_empty() {
                return Err(format!("{channel} route {i} names no recipients"));
            }
            for r in &recipients {
                let key = normalize(r);
                if key.is_empty() {
                    return Err(format!("{channel} route {i} names an empty recipient"));
                }
                if let Some(other) = by_recipient.insert(key, i) {
                    return Err(format!(
                        "{channel} routes {other} and {i} both name the recipient {r:?}"
                    ));
                }
            }
            table.push(route);
        }
        Ok(Self {
            routes: table,
            by_recipient,
            channel,
        })
    }

    fn index(&self, recipient: &str) -> Option<usize> {
        self.by_recipient.get(&normalize(recipient)).copied()
    }

    /// Whether the first recipient has a route: the router's question (`Sender::handles`).
    pub fn handles(&self, recipients: &[String]) -> bool {
        recipients.first().is_some_and(|r| self.index(r).is_some())
    }

    /// The one route of all of `recipients`, or why there is none; the reason names the
    /// recipients (never a secret: routes hold those).
    pub fn route(&self, recipients: &[String]) -> Result<&T, String> {
        let channel = self.channel;
        let first = recipients
            .first()
            .ok_or_else(|| "a message with no recipients has nowhere to go".to_string())?;
        let index = self.index(first).ok_or_else(|| {
            format!("no route names the recipient {first:?} (flyteNotify.{channel}.routes)")
        })?;
        for r in &recipients[1..] {
            match self.index(r) {
                Some(i) if i == index => {}
                Some(_) => {
                    return Err(format!(
                        "the recipients {first:?} and {r:?} are on different routes, and one \
                         delivery goes to one route"
                    ));
                }
                None => {
                    return Err(format!(
                        "no route names the recipient {r:?}, which shares a delivery with \
                         {first:?} (flyteNotify.{channel}.routes)"
                    ));
                }
            }
        }
        Ok(&self.routes[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable<&'static str> {
        RouteTable::new(
            "slack",
            vec![
                (
                    vec!["ml-alerts@acme.slack.com".into(), "#ml-alerts".into()],
                    "ml",
                ),
                (vec!["#infra".into()], "infra"),
            ],
        )
        .unwrap()
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recipients_match_in_any_case_as_addresses_or_names() {
        let t = table();
        assert_eq!(t.route(&list(&["ML-Alerts@Acme.Slack.com"])), Ok(&"ml"));
        assert_eq!(
            t.route(&list(&[" #ml-alerts ", "ml-alerts@acme.slack.com"])),
            Ok(&"ml")
        );
        assert_eq!(t.route(&list(&["#INFRA"])), Ok(&"infra"));
        assert!(t.handles(&list(&["#infra", "someone@example.com"])));
        assert!(!t.handles(&list(&["someone@example.com", "#infra"])));
        assert!(!t.handles(&[]));
    }

    #[test]
    fn a_delivery_without_one_route_is_refused_with_the_recipients_named() {
        let t = table();
        let e = t.route(&list(&["oncall@example.com"])).unwrap_err();
        assert!(e.contains("\"oncall@example.com\""), "{e}");
        let e = t.route(&list(&["#ml-alerts", "#infra"])).unwrap_err();
        assert!(e.contains("different routes"), "{e}");
        let e = t
            .route(&list(&["#ml-alerts", "x@example.com"]))
            .unwrap_err();
        assert!(e.contains("\"x@example.com\""), "{e}");
        assert!(t.route(&[]).is_err());
    }

    #[test]
    fn routes_are_checked() {
        let e = RouteTable::new("pagerduty", vec![(vec![], 1)]).unwrap_err();
        assert!(e.contains("pagerduty route 0 names no recipients"), "{e}");
        let e =
            RouteTable::new("slack", vec![(list(&["#a"]), 1), (list(&[" #A"]), 2)]).unwrap_err();
        assert!(e.contains("routes 0 and 1"), "{e}");
        assert!(RouteTable::new("slack", vec![(list(&["  "]), 1)]).is_err());
    }

    #[test]
    fn recipients_compare_as_the_core_compares_them() {
        for r in ["#ML-Alerts", " ml@Acme.slack.com\t", "ÉQUIPE@example.com"] {
            assert_eq!(
                normalize(r),
                crate::config::channels::normalize_recipient(r),
                "{r}"
            );
        }
    }
}

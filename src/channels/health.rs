//! Whether the senders can deliver: the emailer (or a native channel) that keeps failing with
//! retryable errors is down as far as an operator is concerned, even while the API and the queue
//! are fine. Health reports it on the processing side (`flytenotify.v1.Processor`).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::SendError;

/// Consecutive retryable failures of one sender before it counts as down. One failure is a
/// blip (a greylisting server, one 503); several in a row with no success between is an outage.
pub const DOWN_AFTER: u32 = 3;

pub struct SenderHealth {
    /// Per sender: consecutive retryable failures, and the last one's text.
    failing: Mutex<HashMap<&'static str, (u32, String)>>,
    trouble: watch::Sender<Option<String>>,
}

impl Default for SenderHealth {
    fn default() -> Self {
        Self {
            failing: Mutex::new(HashMap::new()),
            trouble: watch::channel(None).0,
        }
    }
}

impl SenderHealth {
    /// Why sending is down (None while it is not), as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.trouble.subscribe()
    }

    /// Counts one send's result. A permanent failure says nothing about the sender's reach (the
    /// peer answered, about that one message), so it neither counts nor clears.
    pub fn record(&self, sender: &'static str, result: &Result<(), SendError>) {
        let mut failing = self.failing.lock().expect("sender health lock poisoned");
        match result {
            Ok(()) => {
                if failing.remove(sender).is_some_and(|(n, _)| n >= DOWN_AFTER) {
                    tracing::warn!(sender, "sending works again");
                }
            }
            Err(SendError::Retryable { message, .. }) => {
                let entry = failing.entry(sender).or_insert((0, String::new()));
                entry.0 += 1;
                entry.1 = message.clone();
                if entry.0 == DOWN_AFTER {
                    tracing::error!(
                        sender,
                        "{DOWN_AFTER} sends in a row failed; reporting the processing side as \
                         NOT_SERVING until one succeeds"
                    );
                }
            }
            Err(SendError::Permanent { .. } | SendError::Deferred { .. }) => return,
        }
        let mut down: Vec<String> = failing
            .iter()
            .filter(|(_, (n, _))| *n >= DOWN_AFTER)
            .map(|(name, (n, last))| {
                format!("{name}: {n} sends in a row failed, the last with: {last}")
            })
            .collect();
        down.sort();
        let now = (!down.is_empty()).then(|| down.join("; "));
        self.trouble.send_if_modified(|was| {
            // Only a change between up and down is news; the text changes with every failure.
            let changed = was.is_some() != now.is_some();
            *was = now;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_consecutive_retryable_failures_and_up_after_one_success() {
        let health = SenderHealth::default();
        let rx = health.subscribe();
        let fail = Err(SendError::retryable("connection refused"));
        for _ in 1..DOWN_AFTER {
            health.record("smtp", &fail);
        }
        assert_eq!(*rx.borrow(), None);
        health.record("smtp", &Err(SendError::permanent("550 no such user")));
        assert_eq!(*rx.borrow(), None, "a permanent failure is not an outage");
        health.record("smtp", &fail);
        let why = rx.borrow().clone().unwrap();
        assert!(
            why.contains("smtp") && why.contains("connection refused"),
            "{why}"
        );
        health.record("sendgrid", &Ok(()));
        assert!(
            rx.borrow().is_some(),
            "another sender's success says nothing"
        );
        health.record("smtp", &Ok(()));
        assert_eq!(*rx.borrow(), None);
    }
}

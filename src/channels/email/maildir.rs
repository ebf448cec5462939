//! Delivers email into a local Maildir (new/cur/tmp): the embedded default needs no mail server,
//! and any mail client (mutt -f, Thunderbird, Python's mailbox) can read what was sent.
//!
//! Maildir's own protocol makes a delivery atomic: write the file in tmp/, fsync it, then rename it
//! into new/. A reader never sees half a message, and a crash leaves at most a stray file in tmp/.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{BccHeader, build_email, email_of, refuse_provider_template};
use crate::channels::{SendError, Sender};
use crate::delivery::{Channel, DeliveryRef, Rendered};

pub struct MaildirSender {
    root: PathBuf,
    hostname: String,
    counter: AtomicU64,
}

impl MaildirSender {
    /// Creates the Maildir's three folders if they are missing.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // '/' and ':' would break Maildir file names.
        let hostname = gethostname::gethostname()
            .to_string_lossy()
            .replace(['/', ':'], "_");
        Ok(Self {
            root: root.to_owned(),
            hostname,
            counter: AtomicU64::new(0),
        })
    }

    fn unique_name(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed),
            self.hostname
        )
    }
}

#[async_trait]
impl Sender for MaildirSender {
    fn name(&self) -> &'static str {
        "maildir"
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, delivery: &DeliveryRef, message: &Rendered) -> Result<(), SendError> {
        let email = email_of(self.name(), message)?;
        refuse_provider_template(self.name(), email)?;
        // The Maildir is the sender's own copy of the message, not a recipient's: like a Sent
        // folder it keeps the Bcc line, the only record of who else was sent it.
        let bytes = build_email(delivery, email, BccHeader::Keep)?.formatted();
        let name = self.unique_name();
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        let dir = self.root.join("new");
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let written = (|| {
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &new)
            })();
            if written.is_err() {
                // A half-written file in tmp/ is nobody's; the retry writes a new one.
                let _ = std::fs::remove_file(&tmp);
            }
            written?;
            // The rename is only durable once the directory itself is synced.
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| SendError::retryable(format!("maildir write task failed: {e}")))?
        .map_err(|e| SendError::retryable(format!("maildir {}: {e}", self.root.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{EmailMessage, LeaseToken};

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_in_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = MaildirSender::open(dir.path()).unwrap();
        // new/ replaced by a file: the rename into it fails after tmp/ was written.
        std::fs::remove_dir(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new"), "").unwrap();
        let delivery = DeliveryRef {
            id: "d".into(),
            request_id: "r".into(),
            attempt: 1,
            lease: LeaseToken(1),
        };
        let email = Rendered::Email(EmailMessage {
            recipients: vec!["a@example.com".into()],
            cc: Vec::new(),
            bcc: Vec::new(),
            provider_template: None,
            sender: "f@example.com".into(),
            subject: "s".into(),
            html_body: "h".into(),
            text_body: "t".into(),
        });
        assert!(maildir.send(&delivery, &email).await.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}

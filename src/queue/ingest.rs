//! A message received from a cloud queue becomes ledger state before the message is deleted or
//! acknowledged: then a crash, a redelivery or a second processor can neither lose nor repeat it.
//!
//! FlyteAdmin's processor sends straight from the message and acknowledges it whatever the send
//! came to, so a failed notification is gone. Here a FlyteAdmin email is first recorded as a
//! delivery of its own, keyed by the broker's message id (a redelivered message is a duplicate of
//! itself), and the worker sends and retries it like any other: the ledger's retry schedule, not
//! the broker's visibility timeout, decides when (see `Ingested`).

use sha2::{Digest, Sha256};

use super::wire::Inbound;
use crate::delivery::{Channel, Content, Payload, RenderedEmail};
use crate::ledger::{AcceptOutcome, ExecutionKey, Ledger, LedgerError, NewDelivery, NewRequest};

/// What a received message came to. Every variant means the ledger holds what the message
/// carried, so the message may be deleted: retries run from the ledger's schedule, which survives
/// restarts, shows in ListPending and has no 12-hour (SQS) or 10-minute (Pub/Sub) ceiling on how
/// long a delivery may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Our own announcement: the delivery was in the ledger before the message was published.
    Announced { delivery_id: String },
    /// A new delivery, recorded now.
    Recorded { delivery_id: String },
    /// The same message was recorded before (a redelivery, or another processor got it first).
    AlreadyRecorded { delivery_id: String },
}

/// The request id a broker message is recorded under: its queue and its message id.
pub fn request_id(queue: &str, message_id: &str) -> String {
    format!("{queue}:{message_id}")
}

/// Records what `inbound` carries. `queue` names the broker ("sqs", "pubsub") so that message ids
/// of different brokers can never collide.
pub async fn ingest(
    ledger: &dyn Ledger,
    queue: &str,
    message_id: &str,
    inbound: Inbound,
) -> Result<Ingested, LedgerError> {
    let (recipients, content, digest_of) = match inbound {
        Inbound::Announced { delivery_id } => return Ok(Ingested::Announced { delivery_id }),
        Inbound::FlyteAdminEmail(m) => {
            let digest = prost::Message::encode_to_vec(&m);
            let email = RenderedEmail {
                sender: m.sender_email,
                subject: m.subject_line,
                body: m.body,
            };
            (m.recipients_email, Content::Rendered(email), digest)
        }
        Inbound::Poison { error, raw } => {
            let digest = raw.clone();
            (Vec::new(), Content::Unreadable { raw, error }, digest)
        }
    };
    let request = NewRequest {
        request_id: request_id(queue, message_id),
        fingerprint: hex(&Sha256::digest(&digest_of)),
        unmatched: 0,
        // FlyteAdmin's message names no execution: its subject and body are all there is.
        execution_key: ExecutionKey::default(),
        execution: Vec::new(),
        deliveries: vec![NewDelivery {
            group: None,
            id: uuid::Uuid::now_v7().to_string(),
            notification_index: 0,
            phase: 0,
            payload: Payload {
                channel: Channel::Email,
                recipients,
                content,
            },
        }],
        due_in: std::time::Duration::ZERO,
        disarms_deadlines: false,
    };
    match ledger.accept(request).await? {
        AcceptOutcome::Accepted { delivery_ids } => Ok(Ingested::Recorded {
            delivery_id: delivery_ids.into_iter().next().unwrap_or_default(),
        }),
        // A broker's message id names one message; the same id with other content is still that
        // message (a publisher retried with a new body), and what was recorded first stands.
        AcceptOutcome::Duplicate { delivery_ids, .. } => Ok(Ingested::AlreadyRecorded {
            delivery_id: delivery_ids.into_iter().next().unwrap_or_default(),
        }),
        AcceptOutcome::Conflict => Ok(Ingested::AlreadyRecorded {
            delivery_id: String::new(),
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

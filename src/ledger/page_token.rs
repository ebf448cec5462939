//! ListPending's page token: opaque to callers and versioned, so that a store can change what it
//! needs to resume (PostgreSQL may want more than a sequence number) without breaking a caller
//! that holds a token across an upgrade.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageToken {
    /// Version 1: after the row with this sequence number.
    After { seq: i64 },
}

const V1: &str = "v1.";

impl PageToken {
    pub fn encode(&self) -> String {
        match self {
            PageToken::After { seq } => URL_SAFE_NO_PAD.encode(format!("{V1}{seq}")),
        }
    }

    /// Reads a token this service returned; anything else is refused.
    pub fn decode(token: &str) -> Result<Self, String> {
        let invalid = || {
            "not a token this service returned; pass ListPendingResponse.token as it is".to_string()
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let seq = text.strip_prefix(V1).ok_or_else(invalid)?;
        match seq.parse::<i64>() {
            Ok(seq) if seq >= 0 => Ok(PageToken::After { seq }),
            _ => Err(invalid()),
        }
    }
}

/// One page of ListPending from rows fetched oldest first with one more than `limit` (each with
/// its sequence number): the extra row only says that another page exists, after the last one
/// shown.
pub fn page(mut rows: Vec<(i64, super::StoredDelivery)>, limit: u32) -> super::PendingPage {
    let limit = limit.max(1) as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(seq, _)| PageToken::After { seq: *seq })
    } else {
        None
    };
    super::PendingPage {
        deliveries: rows.into_iter().map(|(_, d)| d).collect(),
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_anything_else() {
        for seq in [0, 1, 42, i64::MAX] {
            let token = PageToken::After { seq };
            assert_eq!(PageToken::decode(&token.encode()).unwrap(), token);
        }
        let v2 = URL_SAFE_NO_PAD.encode("v2.1");
        let negative = URL_SAFE_NO_PAD.encode("v1.-3");
        for bad in ["", "42", "not-a-token", v2.as_str(), negative.as_str()] {
            assert!(PageToken::decode(bad).is_err(), "{bad}");
        }
    }
}

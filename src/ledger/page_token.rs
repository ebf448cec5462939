//! Page tokens of ListPending and of `recently_delivered`: opaque to callers and versioned, so
//! that a store can change what it needs to resume (PostgreSQL may want more than a sequence
//! number) without breaking a caller that holds a token across an upgrade.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageToken {
    /// Version 1: after the row with this sequence number (SQLite, whose seq is commit order).
    After { seq: i64 },
    /// Version 2: after the row accepted by transaction `xid` with sequence number `seq`
    /// (PostgreSQL, which pages by the accepting transaction's id; see its list_pending).
    AfterAccept { xid: i64, seq: i64 },
}

const V1: &str = "v1.";
const V2: &str = "v2.";

impl PageToken {
    pub fn encode(&self) -> String {
        match self {
            PageToken::After { seq } => URL_SAFE_NO_PAD.encode(format!("{V1}{seq}")),
            PageToken::AfterAccept { xid, seq } => {
                URL_SAFE_NO_PAD.encode(format!("{V2}{xid}.{seq}"))
            }
        }
    }

    /// The sequence number of the last row shown, whatever the version.
    pub fn seq(&self) -> i64 {
        match self {
            PageToken::After { seq } | PageToken::AfterAccept { seq, .. } => *seq,
        }
    }

    /// Reads a token this service returned; anything else is refused.
    pub fn decode(token: &str) -> Result<Self, String> {
        let invalid = || {
            "not a token this service returned; pass ListPendingResponse.token as it is".to_string()
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let number = |s: &str| {
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(invalid)
        };
        if let Some(seq) = text.strip_prefix(V1) {
            return Ok(PageToken::After { seq: number(seq)? });
        }
        let (xid, seq) = text
            .strip_prefix(V2)
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(invalid)?;
        Ok(PageToken::AfterAccept {
            xid: number(xid)?,
            seq: number(seq)?,
        })
    }
}

/// One page of ListPending from rows fetched in page order with one more than `limit` (each with
/// the token that resumes after it): the extra row only says that another page exists, after the
/// last one shown.
pub fn page(mut rows: Vec<(PageToken, super::StoredDelivery)>, limit: u32) -> super::PendingPage {
    let limit = limit.max(1) as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(token, _)| *token)
    } else {
        None
    };
    super::PendingPage {
        deliveries: rows.into_iter().map(|(_, d)| d).collect(),
        next,
    }
}

/// Where the next page of `recently_delivered` starts: before the delivered event at `at` with
/// sequence number `seq` (the last row shown). Pages are newest first, by the event's time, so
/// the time leads; the event's seq breaks ties between events of the same millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveredCursor {
    pub at: super::Millis,
    pub seq: i64,
}

/// Its own prefix, so that a ListPending token is never taken for one of these or the reverse.
const DELIVERED_V1: &str = "d1.";

impl DeliveredCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{DELIVERED_V1}{}.{}", self.at, self.seq))
    }

    /// Reads a cursor this service returned; anything else is refused.
    pub fn decode(token: &str) -> Result<Self, String> {
        let invalid = || "not a token this service returned; pass the token as it is".to_string();
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let (at, seq) = text
            .strip_prefix(DELIVERED_V1)
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(invalid)?;
        match (at.parse::<i64>(), seq.parse::<i64>()) {
            (Ok(at), Ok(seq)) if seq >= 0 => Ok(DeliveredCursor { at, seq }),
            _ => Err(invalid()),
        }
    }
}

/// One page of `recently_delivered` from rows fetched newest first with one more than `limit`
/// (each with its event's cursor), as `page` does for ListPending.
pub fn recent_page(
    mut rows: Vec<(DeliveredCursor, super::StoredDelivery)>,
    limit: u32,
) -> super::RecentPage {
    let limit = limit.max(1) as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(cursor, _)| *cursor)
    } else {
        None
    };
    super::RecentPage {
        deliveries: rows
            .into_iter()
            .map(|(cursor, delivery)| super::DeliveredRow {
                delivery,
                delivered_at: cursor.at,
            })
            .collect(),
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
            let token = PageToken::AfterAccept {
                xid: 7_000_000,
                seq,
            };
            assert_eq!(PageToken::decode(&token.encode()).unwrap(), token);
            assert_eq!(token.seq(), seq);
        }
        let v2_short = URL_SAFE_NO_PAD.encode("v2.1");
        let v3 = URL_SAFE_NO_PAD.encode("v3.1.2");
        let negative = URL_SAFE_NO_PAD.encode("v1.-3");
        let negative_xid = URL_SAFE_NO_PAD.encode("v2.-1.3");
        let extra = URL_SAFE_NO_PAD.encode("v2.1.2.3");
        for bad in [
            "",
            "42",
            "not-a-token",
            v2_short.as_str(),
            v3.as_str(),
            negative.as_str(),
            negative_xid.as_str(),
            extra.as_str(),
        ] {
            assert!(PageToken::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn delivered_cursors_round_trip_and_are_not_list_pending_tokens() {
        for cursor in [
            DeliveredCursor { at: 0, seq: 0 },
            DeliveredCursor {
                at: 1_765_000_000_000,
                seq: 42,
            },
            DeliveredCursor {
                at: i64::MAX,
                seq: i64::MAX,
            },
        ] {
            assert_eq!(DeliveredCursor::decode(&cursor.encode()).unwrap(), cursor);
        }
        let list_pending = PageToken::After { seq: 7 }.encode();
        assert!(DeliveredCursor::decode(&list_pending).is_err());
        assert!(PageToken::decode(&DeliveredCursor { at: 1, seq: 7 }.encode()).is_err());
        let negative = URL_SAFE_NO_PAD.encode("d1.5.-1");
        let short = URL_SAFE_NO_PAD.encode("d1.5");
        for bad in ["", "x", negative.as_str(), short.as_str()] {
            assert!(DeliveredCursor::decode(bad).is_err(), "{bad}");
        }
    }
}

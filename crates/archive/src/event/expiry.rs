//! When an event's media URLs expire (CONTRACT.md section 1, "URL expiry").

use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use url::Url;

use super::{Received, ReportEvent};

/// When the event's URLs expire by the event alone: `ttl` after `issued_at`, else after
/// the AMQP timestamp, else after receipt (CONTRACT.md section 1).
///
/// A start later than the receipt is clamped to the receipt: the vendor cannot have issued
/// the URLs after we received them, so an `issued_at` (or a timestamp) in the future is a
/// wrong clock or a forged event, and trusting it would let fetches run past the URLs' real
/// lifetime (a year-2100 `issued_at` would keep retrying a dead URL for a century).
pub fn event_expiry(event: &ReportEvent, received: &Received, ttl: std::time::Duration) -> OffsetDateTime {
    let start = event
        .issued_at
        .or(plausible_timestamp(received.amqp_timestamp, received.received_at))
        .unwrap_or(received.received_at)
        .min(received.received_at);
    start.saturating_add(Duration::try_from(ttl).unwrap_or(Duration::MAX))
}

/// How far from the receipt an AMQP `timestamp` may be and still be trusted.
const PLAUSIBLE_TIMESTAMP_SPAN: Duration = Duration::days(30);

/// The AMQP `timestamp` when it is plausible, else `None` (as if absent): 0 (a client's
/// default, the epoch) or more than 30 days from the receipt is a broken clock, not when
/// the URLs were issued, and would otherwise expire the event at once or never.
pub fn plausible_timestamp(timestamp: Option<OffsetDateTime>, received_at: OffsetDateTime) -> Option<OffsetDateTime> {
    timestamp.filter(|at| at.unix_timestamp() != 0 && (*at - received_at).abs() <= PLAUSIBLE_TIMESTAMP_SPAN)
}

/// The expiry a URL carries itself: `X-Amz-Date` plus `X-Amz-Expires` (S3 presigned),
/// or a unix `Expires=` (CloudFront, GCS). The earliest wins when both are present.
pub fn url_own_expiry(url: &Url) -> Option<OffsetDateTime> {
    let mut amz_date = None;
    let mut amz_expires = None;
    let mut unix_expires = None;
    for (name, value) in url.query_pairs() {
        if name.eq_ignore_ascii_case("X-Amz-Date") {
            amz_date = parse_amz_date(&value);
        } else if name.eq_ignore_ascii_case("X-Amz-Expires") {
            amz_expires = value.parse::<i64>().ok().filter(|secs| *secs >= 0);
        } else if name == "Expires" {
            unix_expires = value
                .parse::<i64>()
                .ok()
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok());
        }
    }
    let presigned = match (amz_date, amz_expires) {
        (Some(date), Some(secs)) => Some(date.saturating_add(Duration::seconds(secs))),
        _ => None,
    };
    [presigned, unix_expires].into_iter().flatten().min()
}

/// `20261125T100000Z`, the basic ISO 8601 form SigV4 uses.
fn parse_amz_date(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(text, format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// The expiry of one media URL: the earlier of the event's expiry and the URL's own.
pub fn media_expiry(event_expiry: OffsetDateTime, url: &Url) -> OffsetDateTime {
    url_own_expiry(url).map_or(event_expiry, |own| own.min(event_expiry))
}

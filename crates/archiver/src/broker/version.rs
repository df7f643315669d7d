//! Which RabbitMQ the worker talks to, read from the `version` server property of the
//! broker's `connection.start` (lapin does not expose it, so a short handshake of our own
//! reads it: protocol header out, one frame in, connection closed).
//!
//! The version decides one thing, the dead-letter queue's shape: RabbitMQ 4.0 and later
//! read `x-delivery-limit: -1` as "unlimited" (and give quorum queues a default limit of 20
//! otherwise), while 3.x reads any negative limit as "drop after one delivery".

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the version handshake may take; past it the version is unknown.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A `connection.start` frame is a few hundred bytes; anything far larger is not one.
const MAX_START_FRAME: usize = 64 * 1024;

/// A RabbitMQ version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl BrokerVersion {
    /// `4.0.5`, `3.10.8`, `4.1.0-rc.1` (what follows the numbers is ignored).
    pub fn parse(text: &str) -> Option<BrokerVersion> {
        let mut numbers = text.split(['.', '-', '+']).map(|part| part.parse::<u32>().ok());
        Some(BrokerVersion {
            major: numbers.next()??,
            minor: numbers.next().flatten().unwrap_or(0),
            patch: numbers.next().flatten().unwrap_or(0),
        })
    }

    /// Whether a quorum queue's `x-delivery-limit: -1` means "no limit" (RabbitMQ 4.0 and
    /// later); on 3.x a negative limit drops a message after its first delivery.
    pub fn negative_delivery_limit_is_unlimited(self) -> bool {
        self.major >= 4
    }
}

impl std::fmt::Display for BrokerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version of the broker this process last connected to (set by [`super::connect`]).
/// A process talks to one broker (or one cluster), so one value serves every declaration.
static LAST_SEEN: Mutex<Option<BrokerVersion>> = Mutex::new(None);

/// The version of the broker this process connected to last, if it could be read.
pub fn last_seen() -> Option<BrokerVersion> {
    LAST_SEEN.lock().ok().and_then(|seen| *seen)
}

impl BrokerVersion {
    /// The version of the broker this process connected to last, if it could be read.
    pub fn last_seen() -> Option<BrokerVersion> {
        last_seen()
    }
}

/// Reads the broker's version before a connection and remembers it for [`last_seen`].
/// Over `amqps://` the version stays unknown (the handshake would need a TLS client of
/// its own); the topology then picks the shape that is safe on every version.
pub async fn remember(amqp_url: &str) {
    if last_seen().is_some() {
        return;
    }
    let version = read(amqp_url).await;
    match version {
        Some(version) => tracing::debug!(%version, "broker version"),
        None => tracing::debug!("broker version unknown"),
    }
    if let (Ok(mut seen), Some(version)) = (LAST_SEEN.lock(), version) {
        *seen = Some(version);
    }
}

/// The `version` server property of the broker at `amqp_url` (plain `amqp://` only; of
/// the first node that answers when the URL names the nodes of a cluster, comma-separated).
pub async fn read(amqp_url: &str) -> Option<BrokerVersion> {
    for node in amqp_url.split(',') {
        if let Some(version) = read_node(node.trim()).await {
            return Some(version);
        }
    }
    None
}

async fn read_node(amqp_url: &str) -> Option<BrokerVersion> {
    let url = url::Url::parse(amqp_url).ok()?;
    if url.scheme() != "amqp" {
        return None;
    }
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port().unwrap_or(5672);
    let handshake = async {
        let mut stream = TcpStream::connect((host.as_str(), port)).await.ok()?;
        stream.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
        let mut header = [0u8; 7];
        stream.read_exact(&mut header).await.ok()?;
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        // A method frame (type 1) on channel 0, of a sane size.
        if header[0] != 1 || size > MAX_START_FRAME {
            return None;
        }
        let mut payload = vec![0u8; size];
        stream.read_exact(&mut payload).await.ok()?;
        let _ = stream.shutdown().await;
        version_of_start(&payload)
    };
    tokio::time::timeout(PROBE_TIMEOUT, handshake).await.ok().flatten()
}

/// The `version` long string of a `connection.start` payload (class 10, method 10).
fn version_of_start(payload: &[u8]) -> Option<BrokerVersion> {
    if payload.get(..4)? != [0, 10, 0, 10] {
        return None;
    }
    // The server properties table holds `version` as a short-string key and a long string
    // ('S'); the nested capabilities table has no key of that name.
    let key = b"\x07versionS";
    let at = payload.windows(key.len()).position(|window| window == key)? + key.len();
    let length = u32::from_be_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
    let text = std::str::from_utf8(payload.get(at + 4..at + 4 + length)?).ok()?;
    BrokerVersion::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let cases = [
            ("4.0.5", Some((4, 0, 5)), true),
            ("3.10.8", Some((3, 10, 8)), false),
            ("4.3.0-rc.1", Some((4, 3, 0)), true),
            ("3.13", Some((3, 13, 0)), false),
            ("rabbit", None, false),
        ];
        for (text, expected, unlimited) in cases {
            let parsed = BrokerVersion::parse(text);
            assert_eq!(parsed.map(|v| (v.major, v.minor, v.patch)), expected, "{text}");
            assert_eq!(
                parsed.is_some_and(BrokerVersion::negative_delivery_limit_is_unlimited),
                unlimited,
                "{text}"
            );
        }
    }

    #[test]
    fn the_version_of_a_start_frame() {
        let mut payload = vec![0, 10, 0, 10, 0, 9];
        let mut table = Vec::new();
        table.extend_from_slice(b"\x07productS");
        table.extend_from_slice(&8u32.to_be_bytes());
        table.extend_from_slice(b"RabbitMQ");
        table.extend_from_slice(b"\x07versionS");
        table.extend_from_slice(&5u32.to_be_bytes());
        table.extend_from_slice(b"4.0.5");
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        assert_eq!(version_of_start(&payload), BrokerVersion::parse("4.0.5"));
        assert_eq!(version_of_start(&payload[..payload.len() - 2]), None);
        assert_eq!(version_of_start(b"\x00\x0a\x00\x0b"), None);
    }
}

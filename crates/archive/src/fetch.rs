//! Media downloads over HTTPS: one reqwest client with deadlines, no proxy, no
//! decompression, an optional extra CA, the host policy at every hop, and a typed error
//! that knows whether retrying can help.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::time::Instant;
use url::Url;

use crate::config::FetchConfig;
use crate::hosts::{CheckedResolver, HostNotAllowed, HostPolicy};

/// Redirect hops followed, each checked against the host policy like the first URL.
const MAX_REDIRECTS: usize = 3;

/// Why a download failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The URL or a redirect is not https.
    #[error("url is not https (scheme {0})")]
    NotHttps(String),
    /// The URL or a redirect carries user info (it would become credentials sent to the host).
    #[error("url carries user info")]
    UserInfo,
    /// The host policy refused the host.
    #[error(transparent)]
    HostNotAllowed(#[from] HostNotAllowed),
    /// The source answered with a status that is not success.
    #[error("source answered {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    /// More redirects than allowed, or a redirect without a usable `Location`.
    #[error("{0}")]
    Redirect(String),
    /// The media is larger than `ARCHIVER_MAX_MEDIA_BYTES`.
    #[error("media is larger than the cap of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The attempt did not finish within its deadline.
    #[error("download timed out ({0})")]
    Timeout(&'static str),
    /// Connecting failed, or the connection broke while reading.
    #[error("{0}")]
    Connection(String),
}

impl FetchError {
    /// Whether another attempt could succeed: connection trouble, timeouts, 408, 429 and
    /// 5xx. Everything else (400, 401, 403, 404, 410, too large, not allowed) is final.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => matches!(status, 408 | 425 | 429) || (500..600).contains(status),
            FetchError::Timeout(_) | FetchError::Connection(_) => true,
            FetchError::NotHttps(_)
            | FetchError::UserInfo
            | FetchError::HostNotAllowed(_)
            | FetchError::Redirect(_)
            | FetchError::TooLarge { .. } => false,
        }
    }

    /// The wait the source asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The HTTPS client for media hosts.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<HostPolicy>,
    config: Arc<FetchConfig>,
}

/// An open response whose body is read chunk by chunk within the attempt's deadline.
pub struct Download {
    response: reqwest::Response,
    declared: Option<u64>,
    deadline: Instant,
    limit: u64,
    read: u64,
    /// The low-speed window, as curl's `--speed-limit`/`--speed-time`: fewer than
    /// `min_rate` bytes a second over a window of `window` ends the attempt, whatever came
    /// before (an average would let a burst buy a trickle minutes of a worker's slot).
    window_started: Instant,
    window_bytes: u64,
    min_rate: u64,
    window: Duration,
}

impl Fetcher {
    pub fn new(config: &FetchConfig) -> Result<Fetcher, String> {
        let policy = Arc::new(HostPolicy::new(config.allowed_hosts.clone()));
        let resolver = CheckedResolver {
            policy: policy.clone(),
            timeout: config.connect_timeout,
        };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .https_only(true)
            // Redirects are followed by hand so each hop meets the host policy.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(Arc::new(resolver))
            .user_agent(concat!("archiver/", env!("CARGO_PKG_VERSION")));
        let mut extra = Vec::new();
        for pem in &config.extra_ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|err| format!("source CA is not PEM: {err}"))?;
            extra.extend(certs);
        }
        if !extra.is_empty() {
            builder = builder.tls_certs_merge(extra);
        }
        let client = builder
            .build()
            .map_err(|err| format!("cannot build the media client: {err}"))?;
        Ok(Fetcher {
            client,
            policy,
            config: Arc::new(config.clone()),
        })
    }

    /// Sends the request (following up to three checked redirects) and checks status and
    /// `Content-Length`; the body is left to [`Download::chunk`].
    pub async fn open(&self, url: &Url) -> Result<Download, FetchError> {
        let deadline = Instant::now() + self.config.attempt_timeout;
        let limit = self.config.max_media_bytes;
        let mut url = url.clone();
        for hop in 0..=MAX_REDIRECTS {
            if url.scheme() != "https" {
                return Err(FetchError::NotHttps(url.scheme().to_string()));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(FetchError::UserInfo);
            }
            self.policy.check_url(&url)?;
            let sent = tokio::time::timeout_at(deadline, self.client.get(url.clone()).send()).await;
            let response = match sent {
                Err(_) => return Err(FetchError::Timeout("no response")),
                Ok(Err(err)) => return Err(classify(&err)),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status.is_redirection() {
                if hop == MAX_REDIRECTS {
                    return Err(FetchError::Redirect(format!("more than {MAX_REDIRECTS} redirects")));
                }
                let location = response.headers().get(LOCATION).and_then(|value| value.to_str().ok());
                let next = location.and_then(|location| url.join(location).ok());
                let Some(next) = next else {
                    return Err(FetchError::Redirect(format!(
                        "source answered {} without a usable location",
                        status.as_u16()
                    )));
                };
                tracing::info!(from = %redacted(&url), to = %redacted(&next), "following redirect");
                url = next;
                continue;
            }
            if status != StatusCode::OK {
                let retry_after = retry_after(response.headers());
                return Err(FetchError::Status {
                    status: status.as_u16(),
                    retry_after,
                });
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit) {
                return Err(FetchError::TooLarge { limit });
            }
            return Ok(Download {
                response,
                declared,
                deadline,
                limit,
                read: 0,
                window_started: Instant::now(),
                window_bytes: 0,
                min_rate: self.config.min_transfer_rate,
                window: self.config.transfer_rate_grace,
            });
        }
        unreachable!("the loop returns on its last hop")
    }
}

impl Download {
    /// The length the source declared (`Content-Length`), already checked against the cap.
    pub fn declared_length(&self) -> Option<u64> {
        self.declared
    }

    /// The next chunk of the body, `None` at its end. The bytes are counted as they arrive,
    /// so a lying or missing `Content-Length` cannot take the media past the cap.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        loop {
            // Wake at the end of the low-speed window even when no chunk comes.
            let window_end = self.window_started + self.window;
            let waited = tokio::time::timeout_at(self.deadline.min(window_end), self.response.chunk()).await;
            let chunk = match waited {
                Err(_) if Instant::now() >= self.deadline => {
                    return Err(FetchError::Timeout("body not received within the attempt deadline"))
                }
                Err(_) => {
                    self.check_window()?;
                    continue;
                }
                Ok(Err(err)) => return Err(classify(&err)),
                Ok(Ok(chunk)) => chunk,
            };
            if let Some(bytes) = &chunk {
                self.read += bytes.len() as u64;
                if self.read > self.limit {
                    return Err(FetchError::TooLarge { limit: self.limit });
                }
                self.window_bytes += bytes.len() as u64;
                if Instant::now() >= window_end {
                    self.check_window()?;
                }
            }
            return Ok(chunk);
        }
    }

    /// At the end of a window: too few bytes in it end the attempt; else a new one starts.
    fn check_window(&mut self) -> Result<(), FetchError> {
        let elapsed = self.window_started.elapsed().as_secs_f64();
        if (self.window_bytes as f64) < self.min_rate as f64 * elapsed {
            return Err(FetchError::Timeout(
                "source sent less than the minimum transfer rate over the low-speed window",
            ));
        }
        self.window_started = Instant::now();
        self.window_bytes = 0;
        Ok(())
    }
}

/// Maps a reqwest error to what it means for retrying. The resolver's refusal travels
/// inside reqwest's connect error, so the source chain is searched for it.
fn classify(err: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<HostNotAllowed>() {
            return FetchError::HostNotAllowed(refused.clone());
        }
        source = current.source();
    }
    if err.is_timeout() {
        return FetchError::Timeout("no data within the read deadline");
    }
    // reqwest's Display includes the URL: strip it, the query string is a credential.
    let mut text = without_url(err);
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    if err.is_connect() {
        FetchError::Connection(format!("cannot connect to source: {text}"))
    } else {
        FetchError::Connection(format!("connection to source broke: {text}"))
    }
}

/// reqwest's message with the URL's query removed.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), &redacted(url));
    }
    text
}

/// The wait a `Retry-After` header asks for (media hosts and the vendor API alike).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after)
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc2822).ok()?;
    let wait = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// A URL as it may be logged: scheme, host and path, never the query (a credential).
pub fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let transient = [408, 429, 500, 502, 503, 504];
        let permanent = [400, 401, 403, 404, 410, 418];
        for status in transient {
            assert!(
                FetchError::Status {
                    status,
                    retry_after: None
                }
                .is_transient(),
                "{status}"
            );
        }
        for status in permanent {
            assert!(
                !FetchError::Status {
                    status,
                    retry_after: None
                }
                .is_transient(),
                "{status}"
            );
        }
        assert!(!FetchError::TooLarge { limit: 1 }.is_transient());
    }

    #[test]
    fn retry_after_is_read_both_ways() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn redaction_drops_the_query() {
        let url = Url::parse("https://media.example:8443/a/b.jpg?X-Amz-Signature=secret").unwrap();
        assert_eq!(redacted(&url), "https://media.example:8443/a/b.jpg");
    }
}

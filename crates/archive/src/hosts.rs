//! The media host policy (CONTRACT.md section 7, `ARCHIVER_ALLOWED_HOSTS`): a listed host
//! is allowed on any address; any other host only when every address it resolves to is public.
//!
//! The check happens where the addresses are decided: a DNS resolver handed to reqwest
//! that returns only checked addresses (so a name cannot resolve to one address for the
//! check and another for the connection), plus a check of each URL before its request for
//! what never reaches a resolver (IP literals) and for listed names on unlisted ports.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use crate::address;
use crate::config::AllowedHost;

/// A host the policy refuses; carried through reqwest's error chain by the resolver.
#[derive(Debug, Clone, thiserror::Error)]
#[error("host not allowed: {host} {why}")]
pub struct HostNotAllowed {
    pub host: String,
    pub why: String,
}

/// The allow-list, shared by the URL check and the resolver.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    allowed: Vec<AllowedHost>,
}

impl HostPolicy {
    pub fn new(allowed: Vec<AllowedHost>) -> Self {
        HostPolicy { allowed }
    }

    fn listed(&self, host: &str, port: u16) -> bool {
        self.allowed
            .iter()
            .any(|entry| entry.host == host && entry.port.is_none_or(|p| p == port))
    }

    fn name_listed(&self, host: &str) -> bool {
        self.allowed.iter().any(|entry| entry.host == host)
    }

    /// Checks one URL before a request to it (the first and every redirect hop).
    pub fn check_url(&self, url: &Url) -> Result<(), HostNotAllowed> {
        let refuse = |host: &str, why: String| {
            Err(HostNotAllowed {
                host: host.to_string(),
                why,
            })
        };
        let Some(host) = url.host() else {
            return refuse("(none)", "has no host".to_string());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let name = match &host {
            Host::Domain(name) => name.to_ascii_lowercase(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        if self.listed(&name, port) {
            return Ok(());
        }
        match host {
            Host::Ipv4(ip) => check_addresses(&name, &[IpAddr::V4(ip)]),
            Host::Ipv6(ip) => check_addresses(&name, &[IpAddr::V6(ip)]),
            // The resolver lets a listed name through on any address and cannot see the
            // port, so a listed name on an unlisted port is refused here: checking its
            // addresses now would leave a window for DNS rebinding before the resolver's
            // own, unchecked, lookup.
            Host::Domain(_) if self.name_listed(&name) => refuse(
                &format!("{name}:{port}"),
                format!("is listed in ARCHIVER_ALLOWED_HOSTS only with other ports; list {name}:{port} to allow it"),
            ),
            Host::Domain(_) => Ok(()),
        }
    }
}

fn check_addresses(host: &str, ips: &[IpAddr]) -> Result<(), HostNotAllowed> {
    for ip in ips {
        if let Some(reason) = address::non_public_reason(*ip) {
            return Err(HostNotAllowed {
                host: host.to_string(),
                why: format!("resolves to {ip}, {reason}; list it in ARCHIVER_ALLOWED_HOSTS to allow it"),
            });
        }
    }
    Ok(())
}

async fn lookup(name: &str, timeout: Duration) -> Result<Vec<SocketAddr>, HostNotAllowed> {
    let failed = |why: String| HostNotAllowed {
        host: name.to_string(),
        why,
    };
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| failed("did not resolve in time".to_string()))?
        .map_err(|err| failed(format!("does not resolve: {err}")))?;
    let addresses: Vec<SocketAddr> = found.collect();
    if addresses.is_empty() {
        return Err(failed("resolves to no address".to_string()));
    }
    Ok(addresses)
}

/// The resolver reqwest connects through: listed names resolve freely, others only to
/// public addresses.
pub struct CheckedResolver {
    pub policy: Arc<HostPolicy>,
    pub timeout: Duration,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let timeout = self.timeout;
        let name = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let addresses = lookup(&name, timeout).await?;
            if !policy.name_listed(&name) {
                let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
                check_addresses(&name, &ips)?;
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_against_the_list() {
        let policy = HostPolicy::new(vec!["localhost:8443".parse().unwrap(), "127.0.0.2".parse().unwrap()]);
        let cases = [
            ("https://localhost:8443/a.jpg", true),
            ("https://LOCALHOST:8443/a.jpg", true),
            // A listed name on another port: refused without a lookup (no rebinding window).
            ("https://localhost:9443/a.jpg", false),
            ("https://[::ffff:127.0.0.2]:1234/a.jpg", false),
            ("https://[::ffff:8.8.8.8]/a.jpg", true),
            ("https://127.0.0.1:8443/a.jpg", false),
            ("https://127.0.0.2:1234/a.jpg", true),
            ("https://[::1]:8443/a.jpg", false),
            ("https://10.0.0.1/a.jpg", false),
            ("https://8.8.8.8/a.jpg", true),
            // Unlisted names are left to the resolver, which checks what they resolve to.
            ("https://media.vendor.example/a.jpg", true),
        ];
        for (url, allowed) in cases {
            let result = policy.check_url(&Url::parse(url).unwrap());
            assert_eq!(result.is_ok(), allowed, "{url}: {result:?}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_unlisted_loopback_names() {
        use reqwest::dns::Resolve;
        let open = CheckedResolver {
            policy: Arc::new(HostPolicy::new(vec![])),
            timeout: Duration::from_secs(5),
        };
        let err = open.resolve("localhost".parse().unwrap()).await.err().unwrap();
        assert!(
            err.to_string().contains("host not allowed: localhost resolves to"),
            "{err}"
        );
        let listed = CheckedResolver {
            policy: Arc::new(HostPolicy::new(vec!["localhost:8443".parse().unwrap()])),
            timeout: Duration::from_secs(5),
        };
        let addresses: Vec<_> = listed
            .resolve("localhost".parse().unwrap())
            .await
            .ok()
            .unwrap()
            .collect();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()) && !addresses.is_empty());
    }
}

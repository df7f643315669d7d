//! The media host policy (CONTRACT.md section 7, `ARCHIVER_ALLOWED_HOSTS`). With an empty
//! list, any host is allowed whose every address is public. With a list, **only** the listed
//! hosts are allowed, on any address they resolve to (a listed host may be loopback or
//! private); every other host is refused before any DNS lookup or connection.
//!
//! The check happens twice. Each URL (the first and every redirect hop) is checked before
//! its request: this refuses unlisted hosts when a list is set, IP literals (which never
//! reach a resolver) and listed names on unlisted ports, all without a lookup. And the DNS
//! resolver handed to reqwest returns only checked addresses, so that with an empty list a
//! name cannot resolve to one address for the check and another for the connection.

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

/// The allow-list, shared by the URL check and the resolver. Empty: public hosts only.
/// Not empty: the listed hosts only.
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
        if !self.allowed.is_empty() {
            // The resolver cannot see the port, so a listed name on an unlisted port is
            // refused here; a name the list does not hold never reaches a lookup.
            let authority = match host {
                Host::Ipv6(_) => format!("[{name}]:{port}"),
                _ => format!("{name}:{port}"),
            };
            let why = if self.name_listed(&name) {
                format!("is listed in ARCHIVER_ALLOWED_HOSTS only with other ports; list {authority} to allow it")
            } else {
                "is not in ARCHIVER_ALLOWED_HOSTS, which when set is the only list of media hosts".to_string()
            };
            return refuse(&authority, why);
        }
        match host {
            Host::Ipv4(ip) => check_addresses(&name, &[IpAddr::V4(ip)]),
            Host::Ipv6(ip) => check_addresses(&name, &[IpAddr::V6(ip)]),
            // Names are checked by the resolver, on the addresses it hands to the connection.
            Host::Domain(_) => Ok(()),
        }
    }

    /// Whether a name may be resolved at all, and whether its addresses must be public.
    fn resolution(&self, name: &str) -> Resolution {
        if self.allowed.is_empty() {
            Resolution::PublicOnly
        } else if self.name_listed(name) {
            Resolution::AnyAddress
        } else {
            Resolution::Refused
        }
    }
}

/// What the resolver does with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    /// No list: resolve, and refuse the name unless every address is public.
    PublicOnly,
    /// A listed name: any address it resolves to.
    AnyAddress,
    /// A list is set and does not hold the name: no lookup at all.
    Refused,
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

/// The resolver reqwest connects through: with a list, only listed names resolve (to any
/// address); without, names resolve only to public addresses. [`HostPolicy::check_url`]
/// has already refused unlisted names; refusing them here too keeps the rule in the one
/// place every connection goes through.
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
            let resolution = policy.resolution(&name);
            if resolution == Resolution::Refused {
                return Err(HostNotAllowed {
                    host: name,
                    why: "is not in ARCHIVER_ALLOWED_HOSTS, which when set is the only list of media hosts".to_string(),
                }
                .into());
            }
            let addresses = lookup(&name, timeout).await?;
            if resolution == Resolution::PublicOnly {
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

    /// Regression (issue 13): a set list still let any public host through; it is the
    /// only list. Each case: the list, the URL, whether `check_url` lets it through to the
    /// request. No lookup happens here: unlisted names are refused on the URL alone.
    #[test]
    fn urls_are_checked_against_the_list() {
        let listed = "localhost:8443,127.0.0.2,cdn.vendor.example,[::1]:9443";
        let cases = [
            // A set list: the listed hosts only, on any address, each on its listed port.
            (listed, "https://localhost:8443/a.jpg", true),
            (listed, "https://LOCALHOST:8443/a.jpg", true),
            (listed, "https://localhost:9443/a.jpg", false),
            (listed, "https://localhost/a.jpg", false),
            (listed, "https://127.0.0.2:1234/a.jpg", true),
            (listed, "https://127.0.0.2/a.jpg", true),
            (listed, "https://[::ffff:127.0.0.2]:1234/a.jpg", false),
            (listed, "https://[::1]:9443/a.jpg", true),
            (listed, "https://[::1]:8443/a.jpg", false),
            (listed, "https://cdn.vendor.example/a.jpg", true),
            (listed, "https://cdn.vendor.example:8443/a.jpg", true),
            (listed, "https://CDN.Vendor.Example/a.jpg", true),
            (listed, "https://127.0.0.1:8443/a.jpg", false),
            (listed, "https://10.0.0.1/a.jpg", false),
            // Public hosts are refused too when a list is set: it is the only list.
            (listed, "https://8.8.8.8/a.jpg", false),
            (listed, "https://[::ffff:8.8.8.8]/a.jpg", false),
            (listed, "https://[2606:4700::1111]/a.jpg", false),
            (listed, "https://media.vendor.example/a.jpg", false),
            (listed, "https://vendor.example/a.jpg", false),
            (listed, "https://x.cdn.vendor.example/a.jpg", false),
            (listed, "https://cdn.vendor.example.evil.example/a.jpg", false),
            (listed, "https://cdn.vendor.example./a.jpg", false),
            // No list: public IP literals pass, non-public ones are refused without a
            // lookup, and names are left to the resolver (which checks their addresses).
            ("", "https://8.8.8.8/a.jpg", true),
            ("", "https://[::ffff:8.8.8.8]/a.jpg", true),
            ("", "https://[2606:4700::1111]/a.jpg", true),
            ("", "https://127.0.0.1/a.jpg", false),
            ("", "https://[::1]/a.jpg", false),
            ("", "https://10.0.0.1/a.jpg", false),
            ("", "https://169.254.169.254/a.jpg", false),
            ("", "https://media.vendor.example/a.jpg", true),
        ];
        for (list, url, allowed) in cases {
            let result = policy(list).check_url(&Url::parse(url).unwrap());
            assert_eq!(result.is_ok(), allowed, "list {list:?}, {url}: {result:?}");
            if let Err(refused) = result {
                assert!(refused.to_string().starts_with("host not allowed: "), "{refused}");
            }
        }
    }

    fn policy(list: &str) -> HostPolicy {
        HostPolicy::new(
            list.split(',')
                .filter(|entry| !entry.is_empty())
                .map(|entry| entry.parse().unwrap())
                .collect(),
        )
    }

    /// An unlisted public host is refused by name, with a reason that says why.
    #[test]
    fn an_unlisted_host_is_refused_with_the_reason() {
        let err = policy("cdn.vendor.example")
            .check_url(&Url::parse("https://media.other.example/a.jpg?X-Amz-Signature=s").unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "host not allowed: media.other.example:443 is not in ARCHIVER_ALLOWED_HOSTS, \
             which when set is the only list of media hosts"
        );
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

        // With a list, an unlisted name is refused before any lookup: a name under the
        // reserved `.invalid` (RFC 6761) would fail the lookup with another message.
        for name in ["localhost.localdomain", "no-such-host.invalid"] {
            let err = listed.resolve(name.parse().unwrap()).await.err().unwrap().to_string();
            assert_eq!(
                err,
                format!(
                    "host not allowed: {name} is not in ARCHIVER_ALLOWED_HOSTS, which when set is the only list \
                     of media hosts"
                )
            );
        }
    }
}

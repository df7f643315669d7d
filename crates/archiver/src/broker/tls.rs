//! TLS for `amqps://` brokers: an extra CA to trust (`ARCHIVER_AMQP_CA_FILE`) and a client
//! certificate (`ARCHIVER_AMQP_CLIENT_CERT_FILE`, `ARCHIVER_AMQP_CLIENT_KEY_FILE`), handed to
//! lapin at every connect.
//!
//! Over `amqps://` lapin (rustls, with rustls-platform-verifier) checks the broker's
//! certificate against the system's roots plus the extra CA, and its name against the URL's
//! host; the scheme alone decides whether TLS is used, so nothing here can turn it off. The
//! files are read and checked once, in `config.rs`, before anything connects.

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use zeroize::Zeroizing;

/// What the broker connections need beyond the URL: both parts are optional, and the
/// default (neither) is the system's roots and no client certificate.
#[derive(Clone, Default)]
pub struct BrokerTls {
    /// PEM certificates trusted besides the system's roots.
    extra_ca_pem: Option<String>,
    /// The certificate chain and private key presented to the broker when it asks for one.
    client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM, already checked to match.
#[derive(Clone)]
struct ClientIdentity {
    chain_pem: Vec<u8>,
    /// Wiped on drop; the copies lapin makes at each connect are not ours to wipe.
    key_pem: Zeroizing<Vec<u8>>,
}

impl BrokerTls {
    /// The TLS settings as `config.rs` validated them: `extra_ca_pem` holds at least one
    /// certificate, and the client key matches the chain's first certificate.
    pub fn new(extra_ca_pem: Option<String>, client: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>) -> BrokerTls {
        BrokerTls {
            extra_ca_pem,
            client: client.map(|(chain_pem, key_pem)| ClientIdentity { chain_pem, key_pem }),
        }
    }

    /// The configuration lapin takes for one connection (ignored over plain `amqp://`).
    pub(super) fn lapin_config(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self.client.as_ref().map(|client| OwnedIdentity::PKCS8 {
                pem: client.chain_pem.clone(),
                key: client.key_pem.to_vec(),
            }),
            cert_chain: self.extra_ca_pem.clone(),
        }
    }
}

/// Written by hand so that the private key can never reach a log through `{:?}`.
impl std::fmt::Debug for BrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTls")
            .field("extra_ca", &self.extra_ca_pem.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_key_and_the_config_carries_both_parts() {
        let key = Zeroizing::new(b"-----BEGIN PRIVATE KEY-----\nSECRETKEY\n".to_vec());
        let tls = BrokerTls::new(Some("CA".to_string()), Some((b"CHAIN".to_vec(), key)));
        let shown = format!("{tls:?}");
        assert!(!shown.contains("SECRETKEY"), "{shown}");
        assert_eq!(shown, "BrokerTls { extra_ca: true, client_certificate: true }");
        let config = tls.lapin_config();
        assert_eq!(config.cert_chain.as_deref(), Some("CA"));
        assert!(matches!(config.identity, Some(OwnedIdentity::PKCS8 { ref pem, .. }) if pem == b"CHAIN"));
        let none = BrokerTls::default().lapin_config();
        assert!(none.identity.is_none() && none.cert_chain.is_none());
    }
}

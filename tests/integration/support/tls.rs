//! Test certificates: a CA made with rcgen and server certificates for `localhost` and
//! 127.0.0.1, so the tests' HTTPS media servers are trusted only through an explicit CA file
//! (`ARCHIVER_SOURCE_CA_FILE`), exactly as a real deployment trusts an extra CA.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority for tests, with its certificate in a PEM file.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_file: PathBuf,
    /// Keeps a per-CA temporary file alive (and removes it on drop); `None` for the shared CA.
    _temp: Option<tempfile::TempPath>,
}

impl TestCa {
    /// The CA every media server uses unless a test asks for another one. It is kept in
    /// the target directory and reused by every test process, so that the tests do not
    /// leave one file per process behind.
    pub fn shared() -> &'static TestCa {
        static SHARED: OnceLock<TestCa> = OnceLock::new();
        SHARED.get_or_init(load_or_create_shared)
    }

    /// A fresh CA that nothing trusts yet: for tests about untrusted certificates.
    pub fn generate() -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let cert = ca_params().self_signed(&key).expect("self-sign test CA");
        let ca_pem = cert.pem();
        let mut file = tempfile::Builder::new()
            .prefix("archiver-test-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("create CA temp file");
        file.write_all(ca_pem.as_bytes()).expect("write CA temp file");
        let temp = file.into_temp_path();
        TestCa {
            issuer: Issuer::new(ca_params(), key),
            ca_pem,
            ca_file: temp.to_path_buf(),
            _temp: Some(temp),
        }
    }

    /// The PEM file holding the CA certificate (give it to `ARCHIVER_SOURCE_CA_FILE`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A rustls server configuration with a fresh certificate for `localhost` and
    /// 127.0.0.1 signed by this CA, speaking HTTP/1.1 only.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("generate server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("sign server cert");
        let chain = vec![cert.der().clone()];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .expect("server tls config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A rustls client configuration that trusts this CA and nothing else.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add test CA to roots");
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA PEM holds one certificate")
    }
}

/// The crypto provider, chosen explicitly: with several providers compiled in, rustls
/// cannot pick a process default by itself.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The CA's parameters. They must be the same every time: an issuer rebuilt from them and
/// the saved key signs certificates that chain to the saved CA certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, "archiver integration-test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn load_or_create_shared() -> TestCa {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("archiver-test-ca");
    fs::create_dir_all(&dir).expect("create test CA directory");
    let bundle = dir.join("ca-and-key.pem");
    let ca_file = dir.join("ca.pem");
    if !bundle.exists() {
        let key = KeyPair::generate().expect("generate CA key");
        let cert = ca_params().self_signed(&key).expect("self-sign test CA");
        let mut temp = tempfile::NamedTempFile::new_in(&dir).expect("CA temp file");
        write!(temp, "{}{}", cert.pem(), key.serialize_pem()).expect("write CA temp file");
        // Publishing with a hard link fails if another test process won the race; then
        // its CA is the one everybody uses.
        let _ = fs::hard_link(temp.path(), &bundle);
    }
    let text = fs::read_to_string(&bundle).expect("read shared test CA");
    let split = text
        .find("-----BEGIN PRIVATE KEY-----")
        .expect("shared test CA file holds a key");
    let (ca_pem, key_pem) = text.split_at(split);
    let key = KeyPair::from_pem(key_pem).expect("parse shared test CA key");
    if fs::read_to_string(&ca_file).ok().as_deref() != Some(ca_pem) {
        let mut temp = tempfile::NamedTempFile::new_in(&dir).expect("CA temp file");
        temp.write_all(ca_pem.as_bytes()).expect("write CA file");
        temp.persist(&ca_file).expect("publish CA file");
    }
    TestCa {
        issuer: Issuer::new(ca_params(), key),
        ca_pem: ca_pem.to_string(),
        ca_file,
        _temp: None,
    }
}

//! `amqps://` to the broker (issue 13): the broker's certificate is checked against
//! `ARCHIVER_AMQP_CA_FILE`, a client certificate (`ARCHIVER_AMQP_CLIENT_CERT_FILE`,
//! `ARCHIVER_AMQP_CLIENT_KEY_FILE`) is presented when the broker asks for one, and bad TLS
//! settings are a configuration error found before anything connects.
//!
//! The stack's broker has no TLS listener, so a TLS terminator of the test's own stands in
//! front of it (tokio-rustls, on 127.0.0.1, with a server certificate and a client-certificate
//! requirement from a CA made for the test), passing the bytes through to the stack's real
//! RabbitMQ: what `archiver topology` declares there went through TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support::{archiver, run_with_timeout, unique_name, Amqp, Stack};

/// A TLS terminator requiring client certificates, in front of the stack's broker.
struct TlsBroker {
    port: u16,
    files: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        let files = tempfile::tempdir().expect("temp dir");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "broker-tls test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        std::fs::write(files.path().join("ca.pem"), ca_cert.pem()).expect("write CA");
        let issuer = Issuer::new(ca_params, ca_key);

        // The broker's certificate, for localhost and 127.0.0.1.
        let server_key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &issuer).expect("sign server cert");

        // Two client certificates' worth of files: a good pair, and a key of another pair.
        for name in ["client", "other"] {
            let key = KeyPair::generate().expect("client key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
            params.distinguished_name.push(DnType::CommonName, "archiver");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, &issuer).expect("sign client cert");
            std::fs::write(files.path().join(format!("{name}.pem")), cert.pem()).expect("write client cert");
            std::fs::write(files.path().join(format!("{name}.key")), key.serialize_pem()).expect("write client key");
        }

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("CA as root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(server_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let upstream = url::Url::parse(Stack::load().amqp_url()).expect("the stack's broker URL");
        let upstream = (
            upstream.host_str().expect("broker host").to_string(),
            upstream.port().unwrap_or(5672),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the TLS terminator");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let accepted = tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((tcp, _)) = accepted else { continue };
                    let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                    tokio::spawn(async move {
                        // A refused handshake (no or a wrong client certificate) just ends here.
                        let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                        else {
                            return;
                        };
                        let Ok(mut broker) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    });
                }
            });
        });
        TlsBroker {
            port,
            files,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The stack's broker URL with `amqps://` and this terminator's address (`host`:port).
    fn url(&self, host: &str) -> String {
        let mut url = url::Url::parse(Stack::load().amqp_url()).expect("the stack's broker URL");
        url.set_scheme("amqps").expect("amqps scheme");
        url.set_host(Some(host)).expect("host");
        url.set_port(Some(self.port)).expect("port");
        url.to_string()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `archiver topology` with `url` and the given TLS files.
fn topology(queue: &str, url: &str, tls: &[(&str, &Path)]) -> std::process::Output {
    let mut command = archiver();
    command
        .arg("topology")
        .env("ARCHIVER_QUEUE", queue)
        .env("ARCHIVER_AMQP_URL", url);
    for (variable, path) in tls {
        command.env(variable, path);
    }
    run_with_timeout(command, None, Duration::from_secs(60))
}

/// One case: its name, the broker URL, the TLS settings, the exit code and what stderr says.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a Path)>, i32, &'a str);

#[test]
fn amqps_checks_the_broker_and_presents_the_client_certificate() {
    let broker = TlsBroker::start();
    let queue = unique_name("broker-tls");
    let (ca, cert, key, other_key) = (
        broker.file("ca.pem"),
        broker.file("client.pem"),
        broker.file("client.key"),
        broker.file("other.key"),
    );
    let password = url::Url::parse(Stack::load().amqp_url())
        .ok()
        .and_then(|url| url.password().map(str::to_string))
        .unwrap_or_default();
    let ca_var = "ARCHIVER_AMQP_CA_FILE";
    let (cert_var, key_var) = ("ARCHIVER_AMQP_CLIENT_CERT_FILE", "ARCHIVER_AMQP_CLIENT_KEY_FILE");
    let by_name = broker.url("localhost");
    let by_address = broker.url("127.0.0.1");
    let plaintext = Stack::load().amqp_url().to_string();
    let missing = broker.file("missing.pem");

    let cases: Vec<Case> = vec![
        (
            "CA and client certificate",
            &by_name,
            vec![(ca_var, &ca), (cert_var, &cert), (key_var, &key)],
            0,
            "",
        ),
        (
            "the same by address",
            &by_address,
            vec![(ca_var, &ca), (cert_var, &cert), (key_var, &key)],
            0,
            "",
        ),
        (
            "no CA: the broker is not trusted",
            &by_name,
            vec![(cert_var, &cert), (key_var, &key)],
            1,
            "UnknownIssuer",
        ),
        (
            "no client certificate: the broker refuses",
            &by_name,
            vec![(ca_var, &ca)],
            1,
            "CertificateRequired",
        ),
        (
            "a key that is not the certificate's",
            &by_name,
            vec![(ca_var, &ca), (cert_var, &cert), (key_var, &other_key)],
            2,
            "is not the private key of the certificate",
        ),
        (
            "a certificate without its key",
            &by_name,
            vec![(ca_var, &ca), (cert_var, &cert)],
            2,
            "needs ARCHIVER_AMQP_CLIENT_KEY_FILE",
        ),
        (
            "a key given as the CA",
            &by_name,
            vec![(ca_var, &key)],
            2,
            "holds no PEM certificate",
        ),
        (
            "an unreadable file",
            &by_name,
            vec![(ca_var, &missing)],
            2,
            "cannot read",
        ),
        (
            "TLS files with a plaintext URL",
            &plaintext,
            vec![(ca_var, &ca), (cert_var, &cert), (key_var, &key)],
            2,
            "apply to amqps:// only",
        ),
    ];
    for (case, url, tls, code, says) in cases {
        let output = topology(&queue, url, &tls);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{case}: {stderr}");
        assert!(stderr.contains(says), "{case}: expected {says:?} in {stderr}");
        if code == 0 {
            let declared: serde_json::Value = serde_json::from_slice(&output.stdout).expect("topology prints JSON");
            assert_eq!(declared["queue"], queue.as_str(), "{case}");
        }
        if code == 2 {
            // A configuration error: one line, found before connecting, no secret in it.
            assert_eq!(stderr.trim().lines().count(), 1, "{case}: {stderr}");
        }
        assert!(
            password.is_empty() || !stderr.contains(&password),
            "{case}: the broker password in {stderr}"
        );
    }

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let amqp = Amqp::connect().await;
        amqp.delete_queue(&queue).await;
        amqp.delete_queue(&format!("{queue}.dlq")).await;
    });
}

//! An S3 fault proxy: a TLS server on 127.0.0.1 with a CA of its own that forwards every
//! request to the stack's S3 endpoint, records it (method, path, query, headers, status),
//! and can be told at run time to answer chosen requests itself with an S3 error instead:
//! 503 `SlowDown`, 403 `AccessDenied`, 412 `PreconditionFailed` or 404 `NoSuchKey`.
//!
//! The `Host` header is forwarded unchanged: SigV4 signs it, and the stack's nginx passes
//! `Host $http_host` on to Garage, so signatures made for the proxy's address still verify.
//! Bodies stream both ways. Garage ignores `If-None-Match`/`If-Match` on PUT and has no
//! Object Lock, so the recorded headers are how tests check what the archiver *sends*.
//! Faults can be changed while an archiver runs (a worker through an outage and back).
//!
//! ```ignore
//! let proxy = S3Proxy::start(); // passes everything through
//! let mut command = archiver();
//! command.envs(proxy.env()); // ARCHIVER_S3_ENDPOINT and ARCHIVER_S3_CA_FILE
//! proxy.fail(S3Fault::SlowDown, Rule::every_request()); // an outage
//! proxy.fail(S3Fault::AccessDenied, Rule::writes()); // reads pass, writes are refused
//! proxy.fail(S3Fault::SlowDown, Rule::operation("UploadPart").times(1)); // once only
//! proxy.fail(S3Fault::PreconditionFailed, Rule::operation_on("PutObject", key));
//! proxy.add_response_headers(Rule::operation("HeadObject"), &[("x-amz-object-lock-legal-hold", "ON")]);
//! proxy.pass_through(); // the outage is over (and no header is added any more)
//! assert!(proxy.requests().iter().filter(|r| r.operation() == "PutObject")
//!     .all(|r| r.header("x-amz-checksum-sha256").is_some()));
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{combinators::BoxBody, BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use super::stack::Stack;
use super::tls::TestCa;

/// An error the proxy answers in the store's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Fault {
    /// 503 `SlowDown`: the store is overloaded (an outage).
    SlowDown,
    /// 403 `AccessDenied`: the store refuses (a configuration problem).
    AccessDenied,
    /// 412 `PreconditionFailed`: a conditional write lost to another writer.
    PreconditionFailed,
    /// 404 `NoSuchKey`: nothing there (yet), as the store saw it a moment earlier.
    NoSuchKey,
}

impl S3Fault {
    fn status(self) -> u16 {
        match self {
            S3Fault::SlowDown => 503,
            S3Fault::AccessDenied => 403,
            S3Fault::PreconditionFailed => 412,
            S3Fault::NoSuchKey => 404,
        }
    }

    fn code(self) -> &'static str {
        match self {
            S3Fault::SlowDown => "SlowDown",
            S3Fault::AccessDenied => "AccessDenied",
            S3Fault::PreconditionFailed => "PreconditionFailed",
            S3Fault::NoSuchKey => "NoSuchKey",
        }
    }

    fn message(self) -> &'static str {
        match self {
            S3Fault::SlowDown => "Please reduce your request rate.",
            S3Fault::AccessDenied => "Access Denied",
            S3Fault::PreconditionFailed => "At least one of the pre-conditions you specified did not hold",
            S3Fault::NoSuchKey => "The specified key does not exist.",
        }
    }
}

/// Which requests a fault applies to, and how many times (unbounded unless `times`).
pub struct Rule {
    matches: Box<dyn Fn(&S3Request) -> bool + Send + Sync>,
    times: Option<usize>,
}

impl Rule {
    pub fn every_request() -> Rule {
        Rule::when(|_| true)
    }

    /// Requests of one S3 operation (see [`S3Request::operation`]).
    pub fn operation(name: &'static str) -> Rule {
        Rule::when(move |request| request.operation() == name)
    }

    /// Requests of one S3 operation on one object key.
    pub fn operation_on(name: &'static str, key: impl Into<String>) -> Rule {
        let key = key.into();
        Rule::when(move |request| request.operation() == name && request.is_for_key(&key))
    }

    /// Requests that write (PUT, POST, DELETE): reads still reach the store.
    pub fn writes() -> Rule {
        Rule::when(|request| request.method != "GET" && request.method != "HEAD")
    }

    pub fn when(predicate: impl Fn(&S3Request) -> bool + Send + Sync + 'static) -> Rule {
        Rule {
            matches: Box::new(predicate),
            times: None,
        }
    }

    /// Applies to the first `times` matching requests only, then they pass through.
    pub fn times(mut self, times: usize) -> Rule {
        self.times = Some(times);
        self
    }
}

/// One request as the proxy received it, and what became of it.
#[derive(Clone, Debug)]
pub struct S3Request {
    pub method: String,
    /// The path as sent (path style: `/{bucket}/{key}`).
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The status the client got (the store's, or the injected fault's); 0 when the
    /// store could not be reached.
    pub status: u16,
    /// Whether the proxy answered with a fault instead of forwarding.
    pub faulted: bool,
}

impl S3Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    fn has_param(&self, name: &str) -> bool {
        self.query.split('&').any(|pair| pair.split('=').next() == Some(name))
    }

    /// The S3 operation, from the method and the query (for the object operations the
    /// archiver uses; anything else is `METHOD`).
    pub fn operation(&self) -> &'static str {
        match self.method.as_str() {
            "HEAD" => "HeadObject",
            "GET" if self.has_param("list-type") || self.has_param("uploads") => "List",
            "GET" => "GetObject",
            "PUT" if self.has_param("partNumber") => "UploadPart",
            "PUT" => "PutObject",
            "POST" if self.has_param("uploads") => "CreateMultipartUpload",
            "POST" if self.has_param("uploadId") => "CompleteMultipartUpload",
            "DELETE" if self.has_param("uploadId") => "AbortMultipartUpload",
            "DELETE" => "DeleteObject",
            _ => "other",
        }
    }

    /// Whether the request is about the object `key` (path style, any bucket).
    pub fn is_for_key(&self, key: &str) -> bool {
        let object = self.path.strip_prefix('/').and_then(|rest| rest.split_once('/'));
        object.map(|(_, object)| object) == Some(key)
    }
}

#[derive(Default)]
struct State {
    faults: Vec<(S3Fault, Rule)>,
    /// Headers added to the store's answers to the requests a rule matches.
    added_headers: Vec<(Rule, Vec<(String, String)>)>,
    requests: Vec<S3Request>,
}

impl State {
    /// The fault for `request`, counting it against its rule's budget.
    fn fault_for(&mut self, request: &S3Request) -> Option<S3Fault> {
        for (fault, rule) in &mut self.faults {
            if rule.times == Some(0) || !(rule.matches)(request) {
                continue;
            }
            if let Some(times) = rule.times.as_mut() {
                *times -= 1;
            }
            return Some(*fault);
        }
        None
    }
}

/// A running proxy; stops when dropped.
pub struct S3Proxy {
    port: u16,
    ca: TestCa,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

impl S3Proxy {
    /// Starts a proxy in front of the stack's S3 endpoint, passing everything through.
    pub fn start() -> S3Proxy {
        let stack = Stack::load();
        let upstream = stack.var("ARCHIVER_S3_ENDPOINT").trim_end_matches('/').to_string();
        let upstream_ca = std::fs::read(stack.var("ARCHIVER_S3_CA_FILE")).expect("read the stack CA file");
        let client = reqwest::Client::builder()
            .tls_certs_merge([reqwest::Certificate::from_pem(&upstream_ca).expect("stack CA is PEM")])
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(5))
            .read_timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("proxy client");
        let ca = TestCa::generate();
        let acceptor = TlsAcceptor::from(ca.server_config());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind s3 proxy");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("s3 proxy address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("s3-proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("s3 proxy runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut stop => break,
                            accepted = listener.accept() => {
                                let Ok((tcp, _)) = accepted else { continue };
                                let (acceptor, state, client, upstream) =
                                    (acceptor.clone(), thread_state.clone(), client.clone(), upstream.clone());
                                tokio::spawn(async move {
                                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                                    let service = hyper::service::service_fn(move |request| {
                                        forward(request, state.clone(), client.clone(), upstream.clone())
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(tls), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
                // Dropping the runtime cancels the connections still open.
            })
            .expect("spawn s3 proxy thread");
        S3Proxy {
            port,
            ca,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `https://localhost:PORT`, for `ARCHIVER_S3_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The proxy's CA, for `ARCHIVER_S3_CA_FILE`.
    pub fn ca_file(&self) -> &Path {
        self.ca.ca_file()
    }

    /// The settings that point an archiver at the proxy.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("ARCHIVER_S3_ENDPOINT", self.endpoint()),
            ("ARCHIVER_S3_CA_FILE", self.ca_file().display().to_string()),
        ]
    }

    /// Answers the requests `rule` matches with `fault` (rules are tried in the order added).
    pub fn fail(&self, fault: S3Fault, rule: Rule) {
        self.state.lock().unwrap().faults.push((fault, rule));
    }

    /// Adds `headers` to the store's answers to the requests `rule` matches: what a store
    /// with features Garage lacks would report (an Object Lock's retain-until date on a HEAD).
    pub fn add_response_headers(&self, rule: Rule, headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().added_headers.push((rule, headers));
    }

    /// Forgets every fault and added header: everything passes through again.
    pub fn pass_through(&self) {
        let mut state = self.state.lock().unwrap();
        state.faults.clear();
        state.added_headers.clear();
    }

    /// Every request so far, in the order received.
    pub fn requests(&self) -> Vec<S3Request> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Headers that belong to one hop, never forwarded.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "proxy-connection"
    )
}

async fn forward(
    request: hyper::Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    upstream: String,
) -> Result<hyper::Response<ProxyBody>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let mut record = S3Request {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        status: 0,
        faulted: false,
    };
    let fault = state.lock().unwrap().fault_for(&record);
    if let Some(fault) = fault {
        // Read the body first, so that the client sees the answer rather than a broken pipe.
        let _ = body.collect().await;
        record.status = fault.status();
        record.faulted = true;
        state.lock().unwrap().requests.push(record);
        return Ok(fault_response(fault, parts.method == hyper::Method::HEAD));
    }
    let path_and_query = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let mut outgoing = client.request(parts.method.clone(), format!("{upstream}{path_and_query}"));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name.as_str()) {
            outgoing = outgoing.header(name, value);
        }
    }
    let chunks = BodyStream::new(body).filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(err) => Some(Err(err)),
        }
    });
    let answered = outgoing.body(reqwest::Body::wrap_stream(chunks)).send().await;
    let response = match answered {
        Ok(response) => response,
        Err(err) => {
            state.lock().unwrap().requests.push(record);
            let body = Full::new(Bytes::from(format!("s3 proxy: upstream failed: {err}\n")))
                .map_err(|never| match never {})
                .boxed();
            let mut response = hyper::Response::new(body);
            *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            return Ok(response);
        }
    };
    record.status = response.status().as_u16();
    let added: Vec<(String, String)> = {
        let state = state.lock().unwrap();
        state
            .added_headers
            .iter()
            .filter(|(rule, _)| (rule.matches)(&record))
            .flat_map(|(_, headers)| headers.clone())
            .collect()
    };
    state.lock().unwrap().requests.push(record);
    let mut builder = hyper::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        if !hop_by_hop(name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    for (name, value) in added {
        builder = builder.header(name, value);
    }
    let stream = response.bytes_stream().map(|chunk| {
        chunk
            .map(Frame::data)
            .map_err(|err| Box::new(err) as Box<dyn std::error::Error + Send + Sync>)
    });
    Ok(builder
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("a response from valid parts"))
}

fn fault_response(fault: S3Fault, head: bool) -> hyper::Response<ProxyBody> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <RequestId>s3-proxy</RequestId></Error>",
        fault.code(),
        fault.message()
    );
    let body = if head { Bytes::new() } else { Bytes::from(xml) };
    hyper::Response::builder()
        .status(fault.status())
        .header("content-type", "application/xml")
        .header("x-amz-request-id", "s3-proxy")
        .body(Full::new(body).map_err(|never| match never {}).boxed())
        .expect("a fault response")
}

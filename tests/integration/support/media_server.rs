//! A real HTTPS media server on 127.0.0.1 that tests script request by request: the
//! vendor's media host, with its faults (errors, resets, slow or lying responses, expiry).
//!
//! HTTP/1.1 is written by hand over tokio-rustls on purpose: a server library would not
//! let a test send a wrong Content-Length, reset a connection mid-body, or trickle bytes.
//! The server runs on its own thread and tokio runtime, so it serves sync and async tests
//! alike, and stops when dropped.
//!
//! ```ignore
//! let server = MediaServer::start();
//! server.route("/source.jpg", Behaviour::Sequence(vec![Behaviour::Status(503), Behaviour::ok(jpeg)]));
//! let url = server.url("/source.jpg"); // https://localhost:PORT/source.jpg?X-Amz-...
//! // ... run the archiver with ARCHIVER_SOURCE_CA_FILE = server.ca_file() ...
//! assert_eq!(server.hits("/source.jpg"), 2);
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::tls::TestCa;

/// The marker in every URL's credential parameter: no output, log, manifest or S3 key may
/// ever contain it (media URLs' query strings are credentials).
pub const SECRET_QUERY_MARKER: &str = "SECRETCRED";
/// The fake signature in every URL's query string; as secret as the credential.
pub const SECRET_SIGNATURE: &str = "deadbeefcafe0123456789abcdef0123456789abcdef0123456789abcdef0123";

/// The body of every 403: what S3 says for an expired presigned URL.
pub const EXPIRED_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";

/// What the server does with one request to a route.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 with this body and a correct Content-Length. Honours `Range: bytes=a-b`/`a-`
    /// with a 206, so a client may resume.
    Ok(Bytes),
    /// This status with a short text body.
    Status(u16),
    /// This status with `Retry-After: secs`.
    StatusWithRetryAfter(u16, u64),
    /// One behaviour per request, in order; the last one repeats.
    Sequence(Vec<Behaviour>),
    /// Declares the whole body, sends `after_bytes` of it, then resets the TCP
    /// connection (no TLS close_notify).
    ResetAfter { body: Bytes, after_bytes: usize },
    /// Sends the whole body at about `bytes_per_sec`; 0 sends the headers and then nothing
    /// until the client gives up.
    Trickle { body: Bytes, bytes_per_sec: usize },
    /// The first `burst` bytes at once, then the rest at `bytes_per_sec` (a source that
    /// buys time with a burst, then holds the connection with a trickle).
    BurstThenTrickle {
        body: Bytes,
        burst: usize,
        bytes_per_sec: usize,
    },
    /// Declares `declared` bytes in Content-Length but sends `body`, then closes.
    ContentLengthLie { body: Bytes, declared: u64 },
    /// No Content-Length: the body ends when the connection closes (cleanly).
    NoContentLength(Bytes),
    /// `Transfer-Encoding: chunked`, in chunks of at most 16 KiB.
    Chunked(Bytes),
    /// 302 to this location (a full URL, or a path on this server).
    Redirect(String),
    /// 200 with the body until `at`, then 403 like an expired presigned S3 URL.
    ExpiresAt { body: Bytes, at: SystemTime },
}

impl Behaviour {
    /// `Behaviour::Ok` from anything that becomes bytes (a `Vec<u8>`, a `&'static [u8]`).
    pub fn ok(body: impl Into<Bytes>) -> Behaviour {
        Behaviour::Ok(body.into())
    }
}

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Behaviour>,
    hits: HashMap<String, usize>,
    connections: usize,
    requests: Vec<RecordedRequest>,
}

/// A running HTTPS server; stops when dropped.
pub struct MediaServer {
    port: u16,
    state: Arc<Mutex<State>>,
    ca_file: std::path::PathBuf,
    // Owns a CA made for this server only (see `start_with_ca`).
    _ca: Option<TestCa>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MediaServer {
    /// Starts a server with a certificate from the shared test CA.
    pub fn start() -> MediaServer {
        let ca = TestCa::shared();
        Self::spawn(ca.server_config(), ca.ca_file().to_path_buf(), None)
    }

    /// Starts a server with a certificate from `ca` (e.g. `TestCa::generate()`, a CA the
    /// archiver is not told to trust).
    pub fn start_with_ca(ca: TestCa) -> MediaServer {
        let config = ca.server_config();
        let file = ca.ca_file().to_path_buf();
        Self::spawn(config, file, Some(ca))
    }

    fn spawn(config: Arc<rustls::ServerConfig>, ca_file: std::path::PathBuf, ca: Option<TestCa>) -> MediaServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind media server");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("media server address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let acceptor = TlsAcceptor::from(config);
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("media-server-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("media server runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut stop => break,
                            accepted = listener.accept() => {
                                let Ok((tcp, _)) = accepted else { continue };
                                thread_state.lock().unwrap().connections += 1;
                                tokio::spawn(serve_connection(tcp, acceptor.clone(), thread_state.clone()));
                            }
                        }
                    }
                });
                // Dropping the runtime here cancels the connections still open.
            })
            .expect("spawn media server thread");
        MediaServer {
            port,
            state,
            ca_file,
            _ca: ca,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `localhost:PORT`, the form `ARCHIVER_ALLOWED_HOSTS` takes.
    pub fn authority(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The CA file that makes this server's certificate trusted.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A presigned-looking URL for `path`, valid for an hour from now by its own
    /// `X-Amz-Date`/`X-Amz-Expires`, whose query carries the secret markers.
    pub fn url(&self, path: &str) -> String {
        self.url_signed_at(path, SystemTime::now(), 3600)
    }

    /// Like `url`, but signed at `signed_at` and valid `expires_secs` from then.
    pub fn url_signed_at(&self, path: &str, signed_at: SystemTime, expires_secs: u64) -> String {
        let at = time::OffsetDateTime::from(signed_at);
        let date = at
            .format(time::macros::format_description!("[year][month][day]"))
            .expect("format date");
        let stamp = at
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .expect("format timestamp");
        self.url_with_query(
            path,
            &format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={SECRET_QUERY_MARKER}%2F{date}%2Feu-west-1%2Fs3%2Faws4_request\
                 &X-Amz-Date={stamp}&X-Amz-Expires={expires_secs}&X-Amz-SignedHeaders=host&X-Amz-Signature={SECRET_SIGNATURE}"
            ),
        )
    }

    /// `https://localhost:PORT{path}?{query}` (no `?` when the query is empty).
    pub fn url_with_query(&self, path: &str, query: &str) -> String {
        let base = format!("https://localhost:{}{}", self.port, path);
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// Sets (or replaces) what `path` does. Unknown paths answer 404.
    pub fn route(&self, path: &str, behaviour: Behaviour) -> &Self {
        self.state.lock().unwrap().routes.insert(path.to_string(), behaviour);
        self
    }

    /// Requests received for `path` (any method, any query).
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }

    /// TCP connections accepted (including those whose TLS handshake failed).
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Deadlines that keep a stuck client from holding a server task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD_BYTES: usize = 64 * 1024;

async fn serve_connection(tcp: TcpStream, acceptor: TlsAcceptor, state: Arc<Mutex<State>>) {
    let _ = tcp.set_nodelay(true);
    let Ok(Ok(mut stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    let mut buffer = Vec::new();
    loop {
        let request = match tokio::time::timeout(IDLE_TIMEOUT, read_request(&mut stream, &mut buffer)).await {
            Ok(Ok(Some(request))) => request,
            _ => return,
        };
        let behaviour = {
            let mut state = state.lock().unwrap();
            let earlier = state.hits.get(&request.path).copied().unwrap_or(0);
            *state.hits.entry(request.path.clone()).or_default() += 1;
            state.requests.push(request.clone());
            state
                .routes
                .get(&request.path)
                .map(|behaviour| resolve(behaviour, earlier))
        };
        let after = match behaviour {
            Some(behaviour) => respond(&mut stream, &request, behaviour).await,
            None => After::from_sent(send_status(&mut stream, &request, 404, &[]).await),
        };
        let client_closes = request
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        match after {
            After::KeepAlive if !client_closes => continue,
            After::KeepAlive | After::Close => {
                let _ = stream.shutdown().await;
                return;
            }
            // Dropped without close_notify or FIN: the socket's zero linger sends a RST.
            After::Abort => return,
        }
    }
}

/// Picks the behaviour for the `earlier`-th previous request (sequences, expiry).
fn resolve(behaviour: &Behaviour, earlier: usize) -> Behaviour {
    match behaviour {
        Behaviour::Sequence(steps) if !steps.is_empty() => resolve(&steps[earlier.min(steps.len() - 1)], earlier),
        Behaviour::Sequence(_) => Behaviour::Status(500),
        Behaviour::ExpiresAt { body, at } => {
            if SystemTime::now() < *at {
                Behaviour::Ok(body.clone())
            } else {
                Behaviour::Status(403)
            }
        }
        other => other.clone(),
    }
}

/// Reads one request head (and discards any body). `None` when the client closed.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<RecordedRequest>> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(std::io::Error::other("request head too large"));
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target.to_string(), None),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let request = RecordedRequest {
        method,
        path,
        query,
        headers,
    };
    // Media clients send no bodies; a declared one is read and dropped to keep framing.
    let declared: usize = request
        .header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < declared {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    buffer.drain(..declared);
    Ok(Some(request))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// What happens to a connection after a response.
enum After {
    /// It may serve another request.
    KeepAlive,
    /// It is closed cleanly (TLS close_notify, then FIN).
    Close,
    /// It is dropped abruptly (RST), or writing failed.
    Abort,
}

impl After {
    fn from_sent(sent: bool) -> After {
        if sent {
            After::KeepAlive
        } else {
            After::Abort
        }
    }
}

/// Writes the response and says what to do with the connection next.
async fn respond(stream: &mut TlsStream<TcpStream>, request: &RecordedRequest, behaviour: Behaviour) -> After {
    let head_only = request.method.eq_ignore_ascii_case("HEAD");
    let result: std::io::Result<After> = async {
        match behaviour {
            Behaviour::Ok(body) => {
                if let Some((start, end)) = requested_range(request, body.len()) {
                    let range = format!("bytes {start}-{}/{}", end - 1, body.len());
                    write_head(stream, 206, &[("Content-Range", range)], Some(end - start)).await?;
                    if !head_only {
                        stream.write_all(&body[start..end]).await?;
                    }
                } else {
                    write_head(stream, 200, &[], Some(body.len())).await?;
                    if !head_only {
                        stream.write_all(&body).await?;
                    }
                }
                Ok(After::KeepAlive)
            }
            Behaviour::Status(code) => Ok(After::from_sent(send_status(stream, request, code, &[]).await)),
            Behaviour::StatusWithRetryAfter(code, secs) => {
                let extra = [("Retry-After", secs.to_string())];
                Ok(After::from_sent(send_status(stream, request, code, &extra).await))
            }
            Behaviour::Redirect(location) => {
                write_head(stream, 302, &[("Location", location)], Some(0)).await?;
                Ok(After::KeepAlive)
            }
            Behaviour::ResetAfter { body, after_bytes } => {
                write_head(stream, 200, &[], Some(body.len())).await?;
                stream.write_all(&body[..after_bytes.min(body.len())]).await?;
                stream.flush().await?;
                // SO_LINGER 0 makes the close below send a TCP RST instead of a FIN.
                stream.get_ref().0.set_zero_linger()?;
                Ok(After::Abort)
            }
            Behaviour::Trickle { body, bytes_per_sec } => {
                write_head(stream, 200, &[], Some(body.len())).await?;
                stream.flush().await?;
                if bytes_per_sec == 0 {
                    // Hold the connection until the client gives up and closes it.
                    let mut byte = [0u8; 1];
                    let _ = stream.read(&mut byte).await;
                    return Ok(After::Close);
                }
                let chunk = (bytes_per_sec / 10).max(1);
                let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec as f64);
                for piece in body.chunks(chunk) {
                    stream.write_all(piece).await?;
                    stream.flush().await?;
                    tokio::time::sleep(pause).await;
                }
                Ok(After::KeepAlive)
            }
            Behaviour::BurstThenTrickle {
                body,
                burst,
                bytes_per_sec,
            } => {
                write_head(stream, 200, &[], Some(body.len())).await?;
                let (head, rest) = body.split_at(burst.min(body.len()));
                stream.write_all(head).await?;
                stream.flush().await?;
                let chunk = (bytes_per_sec / 10).max(1);
                let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec.max(1) as f64);
                for piece in rest.chunks(chunk) {
                    stream.write_all(piece).await?;
                    stream.flush().await?;
                    tokio::time::sleep(pause).await;
                }
                Ok(After::KeepAlive)
            }
            Behaviour::ContentLengthLie { body, declared } => {
                write_head(stream, 200, &[("Content-Length", declared.to_string())], None).await?;
                stream.write_all(&body).await?;
                Ok(After::Close)
            }
            Behaviour::NoContentLength(body) => {
                write_head(stream, 200, &[("Connection", "close".to_string())], None).await?;
                stream.write_all(&body).await?;
                Ok(After::Close)
            }
            Behaviour::Chunked(body) => {
                write_head(stream, 200, &[("Transfer-Encoding", "chunked".to_string())], None).await?;
                for piece in body.chunks(16 * 1024) {
                    stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await?;
                    stream.write_all(piece).await?;
                    stream.write_all(b"\r\n").await?;
                }
                stream.write_all(b"0\r\n\r\n").await?;
                Ok(After::KeepAlive)
            }
            Behaviour::Sequence(_) | Behaviour::ExpiresAt { .. } => {
                unreachable!("resolved before responding")
            }
        }
    }
    .await;
    match result {
        Ok(after) => {
            if stream.flush().await.is_err() {
                return After::Abort;
            }
            after
        }
        Err(_) => After::Abort,
    }
}

async fn send_status<S: AsyncWrite + Unpin>(
    stream: &mut S,
    request: &RecordedRequest,
    code: u16,
    extra: &[(&str, String)],
) -> bool {
    let body = if code == 403 {
        EXPIRED_BODY.to_string()
    } else {
        format!("status {code}\n")
    };
    let mut written = write_head(stream, code, extra, Some(body.len())).await;
    if written.is_ok() && !request.method.eq_ignore_ascii_case("HEAD") {
        written = stream.write_all(body.as_bytes()).await;
    }
    written.is_ok()
}

async fn write_head<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: u16,
    extra: &[(&str, String)],
    content_length: Option<usize>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {code} {}\r\n", reason(code));
    head.push_str("Server: archiver-test-media\r\n");
    head.push_str("Content-Type: application/octet-stream\r\n");
    if let Some(length) = content_length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// The byte range `[start, end)` a `Range: bytes=a-b` or `bytes=a-` header asks for, if
/// it is a single satisfiable range.
fn requested_range(request: &RecordedRequest, len: usize) -> Option<(usize, usize)> {
    let spec = request.header("range")?.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => len,
        last => last.parse::<usize>().ok()?.saturating_add(1).min(len),
    };
    (start < end).then_some((start, end))
}

//! What the worker tests share: a queue, tenant and media server of their own (so tests
//! run in parallel), `archiver worker` processes, sample events, and views of what the
//! worker left behind (result events, dead letters, queue depth, objects in S3).

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Value};

use crate::support::archive_kit::{event_json, Urls};
pub use crate::support::eventually;
use crate::support::{archiver, run, unique_name, Amqp, ArchiverEnv, Behaviour, MediaServer, Running, Stack};

/// Small media, so that hundreds of events stay fast.
pub const SOURCE: &[u8] = include_bytes!("../../fixtures/media/source-1080x1920.jpg");
pub const TARGET: &[u8] = include_bytes!("../../fixtures/media/target-720x1280.jpg");
pub const VIDEO: &[u8] = include_bytes!("../../fixtures/media/video-10s-moov-first.mp4");

/// The S3 key prefix the stack's archiver writes under (ARCHIVER_S3_PREFIX's default).
const PREFIX: &str = "face-reports/";

/// One test's corner of the broker, bucket and media host.
pub struct WorkerTest {
    pub queue: String,
    pub tenant: String,
    pub media: MediaServer,
    pub amqp: Amqp,
    /// The broker the worker and this test talk to (the stack's, or a private one).
    pub amqp_url: String,
    results: String,
    published: AtomicUsize,
}

impl WorkerTest {
    /// Sets up on the stack's broker.
    pub async fn new(label: &str) -> WorkerTest {
        WorkerTest::on_broker(label, Stack::load().amqp_url()).await
    }

    /// Sets up on the broker at `amqp_url`: media routes for the three good media, the
    /// topology (`archiver topology`), and a queue collecting result events.
    pub async fn on_broker(label: &str, amqp_url: &str) -> WorkerTest {
        let name = unique_name(label);
        let media = MediaServer::start();
        media
            .route("/source.jpg", Behaviour::ok(SOURCE))
            .route("/target.jpg", Behaviour::ok(TARGET))
            .route("/video.mp4", Behaviour::ok(VIDEO));
        let test = WorkerTest {
            queue: name.clone(),
            tenant: name.clone(),
            media,
            amqp: Amqp::connect_to(amqp_url).await,
            amqp_url: amqp_url.to_owned(),
            results: format!("{name}.results"),
            published: AtomicUsize::new(0),
        };
        let topology = test.command("topology");
        let output = tokio::task::spawn_blocking(move || run(topology, None))
            .await
            .expect("archiver topology");
        assert!(
            output.status.success(),
            "archiver topology failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The results queue expires on its own ten minutes after its last use.
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(600_000));
        test.amqp.declare_queue(&test.results, arguments).await;
        test.amqp.bind(&test.results, "archiver.results", "#").await;
        test
    }

    /// An `archiver SUBCOMMAND` with this test's queue, broker and media server.
    pub fn command(&self, subcommand: &str) -> Command {
        let mut command = archiver();
        command
            .arg(subcommand)
            .media_server(&self.media)
            .env("ARCHIVER_QUEUE", &self.queue)
            .env("ARCHIVER_AMQP_URL", &self.amqp_url)
            .env("ARCHIVER_METRICS_ADDR", "127.0.0.1:0")
            .env("ARCHIVER_LOG_FORMAT", "json")
            .env("ARCHIVER_DELIVERY_LIMIT", "3")
            .env("ARCHIVER_FETCH_ATTEMPTS", "2");
        command
    }

    /// Starts `archiver worker` (see `command`), plus `extra` settings.
    pub fn start_worker(&self, extra: &[(&str, &str)]) -> Running {
        let mut command = self.command("worker");
        command.envs(extra.iter().copied());
        Running::spawn(command, None)
    }

    /// A valid report event for `session_id` whose media are `paths` on the media server
    /// (`None`: the vendor has no such media).
    pub fn event(&self, session_id: &str, paths: [Option<&str>; 3]) -> Value {
        let url = |path: Option<&str>| path.map(|path| self.media.url(path));
        let urls = Urls {
            source: url(paths[0]),
            target: url(paths[1]),
            video: url(paths[2]),
        };
        // The same event as the archive tests' (with an unknown vendor field, which is ignored).
        serde_json::from_slice(&event_json(session_id, &self.tenant, None, &urls)).expect("event JSON")
    }

    /// A valid event with the three good media.
    pub fn good_event(&self, session_id: &str) -> Value {
        self.event(
            session_id,
            [Some("/source.jpg"), Some("/target.jpg"), Some("/video.mp4")],
        )
    }

    /// Publishes an event (persistent, confirmed); returns its message id.
    pub async fn publish(&self, event: &Value) -> String {
        self.publish_bytes(&serde_json::to_vec(event).expect("encode event"))
            .await
    }

    /// Publishes a body as `application/json`; returns its message id.
    pub async fn publish_bytes(&self, body: &[u8]) -> String {
        let properties = BasicProperties::default().with_content_type("application/json".into());
        self.publish_with(body, properties).await
    }

    /// Publishes with `properties` (a message id and persistence are added).
    pub async fn publish_with(&self, body: &[u8], properties: BasicProperties) -> String {
        let message_id = format!("{}-{}", self.queue, self.published.fetch_add(1, Ordering::Relaxed));
        let properties = properties
            .with_message_id(message_id.as_str().into())
            .with_delivery_mode(2);
        self.amqp.publish("", &self.queue, body, properties).await;
        message_id
    }

    /// Result events of this test's events, with the publish's message id as
    /// `"message_id"` and the routing key as `"routing_key"`, until `count` arrived.
    pub async fn results(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut results = Vec::new();
        while results.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.amqp.get(&self.results, left).await else {
                panic!(
                    "{} of {count} result events within {timeout:?}: {results:#?}",
                    results.len()
                );
            };
            let correlation = message
                .delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|id| id.to_string());
            let Some(message_id) = correlation.filter(|id| id.starts_with(&format!("{}-", self.queue))) else {
                continue;
            };
            let mut result: Value = serde_json::from_slice(&message.delivery.data).expect("result event is JSON");
            result["message_id"] = json!(message_id);
            result["routing_key"] = json!(message.delivery.routing_key.as_str());
            results.push(result);
        }
        results
    }

    /// Collects result events until `count` different sessions were archived (a session
    /// may be reported twice: delivery is at least once). Returns the archived sessions.
    pub async fn archived_sessions(&self, count: usize, timeout: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + timeout;
        let mut sessions = BTreeSet::new();
        while sessions.len() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} sessions archived within {timeout:?}",
                sessions.len()
            );
            let left = deadline.saturating_duration_since(Instant::now());
            for result in self.results(1, left).await {
                assert_eq!(result["outcome"], "archived", "{result}");
                sessions.insert(result["session_id"].as_str().unwrap_or_default().to_owned());
            }
        }
        sessions
    }

    /// Takes `count` messages from the dead-letter queue: (message id, body, x-archiver-reason).
    pub async fn dead_letters(&self, count: usize, timeout: Duration) -> Vec<(String, Vec<u8>, String)> {
        let deadline = Instant::now() + timeout;
        let mut letters = Vec::new();
        while letters.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let dlq = format!("{}.dlq", self.queue);
            let Some(message) = self.amqp.get(&dlq, left).await else {
                panic!(
                    "{} of {count} dead letters within {timeout:?}: {letters:?}",
                    letters.len()
                );
            };
            let properties = &message.delivery.properties;
            let message_id = properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default();
            let reason = match properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-archiver-reason"))
            {
                Some(AMQPValue::LongString(reason)) => String::from_utf8_lossy(reason.as_bytes()).into_owned(),
                other => panic!("dead letter {message_id} without a text x-archiver-reason: {other:?}"),
            };
            letters.push((message_id, message.delivery.data.clone(), reason));
        }
        letters
    }

    /// Messages ready in the queue.
    pub async fn queue_depth(&self) -> u32 {
        self.amqp.message_count(&self.queue).await.expect("the queue exists")
    }

    /// Messages ready in the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> u32 {
        self.amqp
            .message_count(&format!("{}.dlq", self.queue))
            .await
            .expect("the dead-letter queue exists")
    }

    /// The S3 key of `name` in `session_id`'s folder.
    pub fn key(&self, session_id: &str, name: &str) -> String {
        format!("{PREFIX}{}/{session_id}/{name}", self.tenant)
    }

    /// Every key this test's tenant has in S3.
    pub async fn keys(&self) -> Vec<String> {
        Stack::load().s3().list_keys(&format!("{PREFIX}{}/", self.tenant)).await
    }

    /// A session's manifest, decrypted and parsed.
    pub async fn manifest(&self, session_id: &str) -> Value {
        let body = Stack::load()
            .s3()
            .get_object_sse_c(&self.key(session_id, "manifest.json"))
            .await
            .unwrap_or_else(|err| panic!("manifest of {session_id}: {err:?}"));
        serde_json::from_slice(&body).expect("manifest is JSON")
    }

    /// Asserts the session's three media are in S3 with exactly the served bytes.
    pub async fn assert_media_stored(&self, session_id: &str) {
        let s3 = Stack::load().s3();
        for (name, expected) in [("source.jpg", SOURCE), ("target.jpg", TARGET), ("video.mp4", VIDEO)] {
            let stored = s3
                .get_object_sse_c(&self.key(session_id, name))
                .await
                .expect("stored object");
            assert!(
                stored == expected,
                "{session_id}/{name}: stored bytes differ from the served ones"
            );
        }
    }

    /// Removes what the test left in S3 and on the broker.
    pub async fn clean_up(&self) {
        Stack::load()
            .s3()
            .delete_prefix(&format!("{PREFIX}{}/", self.tenant))
            .await;
        for queue in [self.queue.clone(), format!("{}.dlq", self.queue), self.results.clone()] {
            self.amqp.delete_queue(&queue).await;
        }
    }
}

/// Session `n` of a test (sessions live under the test's own tenant).
pub fn session_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// SIGTERM, then the exit within `timeout`; returns what the worker printed.
pub fn stop(mut worker: Running, timeout: Duration) -> Output {
    worker.terminate();
    match worker.wait_timeout(timeout) {
        Some(output) => output,
        None => {
            let output = worker.kill();
            panic!(
                "the worker did not stop within {timeout:?} of SIGTERM\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Asserts a worker exited 0, showing its log otherwise.
pub fn assert_exit_0(output: &Output) {
    assert!(
        output.status.success(),
        "worker exit {:?}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

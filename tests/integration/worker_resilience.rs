//! The worker under trouble: a broker restarted mid-run, a worker killed mid-upload, and
//! three workers sharing one queue.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Amqp, Behaviour, Stack};
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest, VIDEO};

/// A RabbitMQ node of this test's own, so that restarting it cannot disturb the tests
/// running in parallel on the stack's broker. It runs the same RabbitMQ as the stack (the
/// Debian 13 root or the host's package), started, controlled and stopped through
/// `scripts/stack/rabbitmq.sh`, which also removes its data. Stopped when dropped.
pub(crate) struct PrivateBroker {
    node: String,
    port: u16,
    dist_port: u16,
}

impl PrivateBroker {
    pub(crate) fn start() -> PrivateBroker {
        let (port, dist_port) = (free_port(), free_port());
        let node = format!("archiver-test-{}-{port}@localhost", std::process::id());
        let broker = PrivateBroker { node, port, dist_port };
        // The script waits (bounded) until the node takes connections.
        let output = broker.script(&["start"]);
        assert!(
            output.status.success(),
            "scripts/stack/rabbitmq.sh start (a private node) failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        broker
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Runs `rabbitmqctl` on this node; whether it succeeded.
    pub(crate) fn ctl(&self, args: &[&str]) -> bool {
        let args: Vec<&str> = ["ctl"].into_iter().chain(args.iter().copied()).collect();
        self.script(&args).status.success()
    }

    /// Runs `scripts/stack/rabbitmq.sh` for this node, bounded by a deadline.
    fn script(&self, args: &[&str]) -> std::process::Output {
        let (port, dist_port) = (self.port.to_string(), self.dist_port.to_string());
        Command::new("timeout")
            .arg("180")
            .arg("bash")
            .arg(crate::support::repo_root().join("scripts/stack/rabbitmq.sh"))
            .args(["--node", &self.node, "--port", &port, "--dist-port", &dist_port])
            .args(args)
            .output()
            .expect("run scripts/stack/rabbitmq.sh")
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.script(&["stop"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_archived_across_a_broker_restart() {
    let broker = tokio::task::spawn_blocking(PrivateBroker::start)
        .await
        .expect("private broker");
    let mut test = WorkerTest::on_broker("worker-restart", &broker.url()).await;
    // Slow enough that the restart lands while events are in flight.
    test.media.route(
        "/video.mp4",
        Behaviour::Trickle {
            body: VIDEO.into(),
            bytes_per_sec: 150_000,
        },
    );
    let worker = test.start_worker(&[("ARCHIVER_CONCURRENCY", "4")]);
    let events = 16;
    for n in 0..events {
        test.publish(&test.good_event(&session_id(n))).await;
    }
    let before = test.archived_sessions(2, Duration::from_secs(60)).await;

    let restart = tokio::task::spawn_blocking(move || {
        assert!(broker.ctl(&["stop_app"]), "rabbitmqctl stop_app");
        assert!(broker.ctl(&["start_app"]), "rabbitmqctl start_app");
        broker
    });
    let broker = restart.await.expect("restart");
    test.amqp = Amqp::connect_to(&broker.url()).await;

    let after = test
        .archived_sessions(events - before.len(), Duration::from_secs(120))
        .await;
    let all: std::collections::BTreeSet<_> = before.union(&after).cloned().collect();
    assert_eq!(all.len(), events, "every event archived");
    for n in 0..events {
        test.assert_media_stored(&session_id(n)).await;
    }
    eventually("an empty queue", Duration::from_secs(30), || async {
        test.queue_depth().await == 0
    })
    .await;
    assert_eq!(test.dead_letter_depth().await, 0);
    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("reconnecting"),
        "the worker saw the broker go"
    );
    test.clean_up().await;
    drop(broker);
}

/// A valid MP4 followed by a `free` box: big enough for a multipart upload (parts of 5 MiB).
fn big_video() -> Vec<u8> {
    let padding = 9 * 1024 * 1024;
    let mut video = VIDEO.to_vec();
    video.extend_from_slice(&((padding + 8) as u32).to_be_bytes());
    video.extend_from_slice(b"free");
    video.resize(video.len() + padding, 0);
    video
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_loses_nothing() {
    let test = WorkerTest::new("worker-sigkill").await;
    let video = big_video();
    test.media.route(
        "/big.mp4",
        Behaviour::Trickle {
            body: video.clone().into(),
            bytes_per_sec: 3_000_000,
        },
    );
    let session = session_id(7);
    let mut first = test.start_worker(&[]);
    test.publish(&test.event(&session, [Some("/source.jpg"), Some("/target.jpg"), Some("/big.mp4")]))
        .await;

    let s3 = Stack::load().s3();
    let uploads = |s3: &crate::support::S3| {
        let request = s3
            .client()
            .list_multipart_uploads()
            .bucket(s3.bucket())
            .prefix(test.key(&session, ""));
        async move {
            let listed = request.send().await.expect("list multipart uploads");
            listed
                .uploads()
                .iter()
                .filter_map(|u| u.upload_id().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    eventually("a multipart upload under way", Duration::from_secs(60), || async {
        !uploads(&s3).await.is_empty()
    })
    .await;
    let killed_upload = uploads(&s3).await;
    first.kill();

    test.media.route("/big.mp4", Behaviour::ok(video.clone()));
    let second = test.start_worker(&[]);
    let result = &test.results(1, Duration::from_secs(60)).await[0];
    assert_eq!(result["outcome"], "archived", "{result}");
    let stored = s3
        .get_object_sse_c(&test.key(&session, "video.mp4"))
        .await
        .expect("video stored");
    assert!(stored == video, "the stored video is the served one");
    eventually("an empty queue", Duration::from_secs(30), || async {
        test.queue_depth().await == 0
    })
    .await;
    assert_exit_0(&stop(second, Duration::from_secs(30)));

    // The second worker left no upload behind. What the killed one began may still be
    // incomplete: on AWS it stays until the bucket lifecycle rule aborts it
    // (deploy/aws/lifecycle.json); Garage drops it when a newer version of the key
    // completes. Either way it is aborted here as the rule would, and nothing remains.
    let left = uploads(&s3).await;
    assert!(
        left.iter().all(|id| killed_upload.contains(id)),
        "uploads left: {left:?}, killed: {killed_upload:?}"
    );
    for upload_id in &left {
        s3.client()
            .abort_multipart_upload()
            .bucket(s3.bucket())
            .key(test.key(&session, "video.mp4"))
            .upload_id(upload_id)
            .send()
            .await
            .expect("abort the incomplete upload");
    }
    assert!(uploads(&s3).await.is_empty());
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_archive_300_events_exactly_once() {
    let test = WorkerTest::new("worker-scale").await;
    let workers: Vec<_> = (0..3)
        .map(|_| test.start_worker(&[("ARCHIVER_CONCURRENCY", "8")]))
        .collect();
    let events = 300;
    for n in 0..events {
        test.publish(&test.good_event(&session_id(n))).await;
    }
    let started = Instant::now();
    let sessions = test.archived_sessions(events, Duration::from_secs(240)).await;
    let took = started.elapsed();
    assert_eq!(sessions.len(), events);

    let mut expected: Vec<String> = (0..events)
        .flat_map(|n| {
            ["manifest.json", "source.jpg", "target.jpg", "video.mp4"].map(|name| test.key(&session_id(n), name))
        })
        .collect();
    expected.sort();
    assert_eq!(test.keys().await, expected, "each event's objects, once");
    eventually("an empty queue", Duration::from_secs(30), || async {
        test.queue_depth().await == 0
    })
    .await;
    assert_eq!(test.dead_letter_depth().await, 0);
    for worker in workers {
        let output = stop(worker, Duration::from_secs(30));
        assert_exit_0(&output);
        let settled = String::from_utf8_lossy(&output.stderr).matches("event settled").count();
        assert!(settled > 0, "every worker took a share of the events");
    }
    eprintln!("300 events archived by three workers in {took:?}");
    test.clean_up().await;
}

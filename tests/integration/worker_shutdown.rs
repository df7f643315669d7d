//! The worker's stop and its subscription: SIGTERM returns the events it holds through an
//! outage at once, an upload cut short by the shutdown is aborted, and a subscription the
//! broker cancels (its queue deleted) is taken up again.

use std::time::{Duration, Instant};

use crate::support::s3_proxy::{Rule, S3Fault, S3Proxy};
use crate::support::{Behaviour, Stack};
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest, VIDEO};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_returns_events_held_through_an_outage_at_once() {
    let proxy = tokio::task::spawn_blocking(S3Proxy::start).await.unwrap();
    proxy.fail(S3Fault::SlowDown, Rule::every_request());
    let test = WorkerTest::new("worker-sigterm-held").await;
    let env = proxy.env();
    let mut settings: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    settings.extend([("ARCHIVER_CONCURRENCY", "4"), ("ARCHIVER_DRAIN_SECS", "20")]);
    let worker = test.start_worker(&settings);
    let events = 3;
    for n in 0..events {
        test.publish(&test.good_event(&session_id(n))).await;
    }
    // All three taken by the worker (none ready in the queue) and held: the store is out.
    eventually("every event held by the worker", WAIT, || async {
        test.queue_depth().await == 0
    })
    .await;
    eventually("the store asked", WAIT, || async { !proxy.requests().is_empty() }).await;

    let signalled = Instant::now();
    let output = stop(worker, Duration::from_secs(40));
    assert_exit_0(&output);
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "held events wait for no drain, yet the stop took {took:?}"
    );
    eventually("the held events back in the queue", WAIT, || async {
        test.queue_depth().await == events as u32
    })
    .await;
    assert_eq!(test.dead_letter_depth().await, 0);
    test.clean_up().await;
    drop(proxy);
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
async fn an_upload_cut_short_by_the_shutdown_is_aborted() {
    let test = WorkerTest::new("worker-sigterm-abort").await;
    test.media.route(
        "/big.mp4",
        // The first part at once (the multipart upload begins), then a trickle that no drain
        // of 1 s can wait out.
        Behaviour::BurstThenTrickle {
            body: big_video().into(),
            burst: 8 * 1024 * 1024 + 512 * 1024,
            bytes_per_sec: 10_000,
        },
    );
    let session = session_id(1);
    let worker = test.start_worker(&[("ARCHIVER_DRAIN_SECS", "1")]);
    test.publish(&test.event(&session, [Some("/source.jpg"), Some("/target.jpg"), Some("/big.mp4")]))
        .await;
    let s3 = Stack::load().s3();
    let uploads = || {
        let request = s3
            .client()
            .list_multipart_uploads()
            .bucket(s3.bucket())
            .prefix(test.key(&session, ""));
        async move {
            let listed = request.send().await.expect("list multipart uploads");
            listed.uploads().len()
        }
    };
    eventually("a multipart upload under way", WAIT, || async { uploads().await > 0 }).await;

    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    // Aborted by the worker itself, not left to the bucket's lifecycle rule.
    assert_eq!(uploads().await, 0, "an incomplete upload was left behind");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    eventually(&format!("the event back in the queue; log:\n{log}"), WAIT, || async {
        test.queue_depth().await == 1
    })
    .await;
    assert!(test.keys().await.iter().all(|key| !key.ends_with("/video.mp4")));
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_broker_cancels_is_taken_up_again() {
    let test = WorkerTest::new("worker-cancelled").await;
    let worker = test.start_worker(&[]);
    test.publish(&test.good_event(&session_id(1))).await;
    test.archived_sessions(1, WAIT).await;

    // Deleting the queue cancels the subscription (basic.cancel from the broker).
    test.amqp.delete_queue(&test.queue).await;
    eventually("the queue declared again by the worker", WAIT, || async {
        test.amqp.message_count(&test.queue).await.is_some()
    })
    .await;
    test.publish(&test.good_event(&session_id(2))).await;
    let sessions = test.archived_sessions(1, WAIT).await;
    assert!(sessions.contains(&session_id(2)), "{sessions:?}");
    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the broker cancelled the subscription"),
        "the cancel is logged"
    );
    test.clean_up().await;
}

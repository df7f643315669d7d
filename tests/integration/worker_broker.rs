//! The worker against RabbitMQ 4's semantics (docs/contract.md section 4): a dead-letter
//! queue that keeps what it holds (no per-message TTL, no delivery limit that drops), one
//! declared by an earlier version kept as it was, and result events nobody takes counted.

use std::process::Output;
use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use crate::support::archive_kit::printed;
use crate::support::{run_with_timeout, stdout_json, Behaviour, Stack};
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest};

const WAIT: Duration = Duration::from_secs(60);

/// Runs `archiver SUBCOMMAND ARGS` with the test's settings, bounded.
async fn archiver_command(test: &WorkerTest, subcommand: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = test.command(subcommand);
    command.args(args).envs(envs.iter().copied()).env("NO_COLOR", "1");
    tokio::task::spawn_blocking(move || run_with_timeout(command, None, Duration::from_secs(60)))
        .await
        .expect("run archiver")
}

/// The dead-letter queue's shape `archiver topology` reports for the stack's broker:
/// `unlimited` on RabbitMQ 4, `parking` on 3.x (the smoke run on Debian 12's broker).
fn expected_shape(declared: &serde_json::Value) -> &'static str {
    let major = declared["broker_version"]
        .as_str()
        .and_then(|version| version.split('.').next())
        .and_then(|major| major.parse::<u32>().ok());
    if major.is_some_and(|major| major >= 4) {
        "unlimited"
    } else {
        "parking"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_queue_keeps_a_message_past_its_ttl_and_25_replays() {
    let test = WorkerTest::new("dlq-keeps").await;
    let declared = stdout_json(&archiver_command(&test, "topology", &[], &[]).await);
    assert_eq!(
        declared["dead_letter_queue_shape"],
        expected_shape(&declared),
        "{declared}"
    );

    // A producer's short per-message TTL (natural for URLs that live an hour): the
    // dead-letter copy must not inherit it.
    let worker = test.start_worker(&[]);
    let session = session_id(1);
    let event = test.event(&session, [Some("/gone.jpg"), None, None]);
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_expiration("3000".into());
    let published = Instant::now();
    let message_id = test
        .publish_with(&serde_json::to_vec(&event).unwrap(), properties)
        .await;
    eventually("the event in the dead-letter queue", WAIT, || async {
        test.dead_letter_depth().await == 1
    })
    .await;
    // Watched until well past the producer's TTL: it stays.
    while published.elapsed() < Duration::from_millis(4500) {
        assert_eq!(
            test.dead_letter_depth().await,
            1,
            "the dead-letter copy expired after {:?}",
            published.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_exit_0(&stop(worker, Duration::from_secs(30)));

    // Each dry run takes the message and returns it: 25 returns, more than RabbitMQ 4's
    // default delivery limit of 20.
    // The fake vendor API of the refetch tests: the session's fresh report.
    let mut answer = test.good_event(&session);
    let face = answer["face"].take();
    test.media.route(
        &format!("/v3/session/{session}/decision/"),
        Behaviour::ok(serde_json::to_vec(&serde_json::json!({ "session_id": session, "face": face })).unwrap()),
    );
    let vendor = [
        (
            "ARCHIVER_PROVIDER_API_URL",
            format!("https://localhost:{}", test.media.port()),
        ),
        ("ARCHIVER_PROVIDER_API_KEY", "vendor-test-key".to_owned()),
    ];
    let vendor: Vec<(&str, &str)> = vendor.iter().map(|(name, value)| (*name, value.as_str())).collect();
    for run in 1..=25 {
        let output = archiver_command(&test, "refetch", &["--from-dlq", "--dry-run"], &vendor).await;
        assert!(
            output.status.code().is_some_and(|code| code <= 1),
            "dry run {run}: {}",
            printed(&output)
        );
        // The process's connection closed: the broker puts back what it held.
        eventually(&format!("the message back after dry run {run}"), WAIT, || async {
            test.dead_letter_depth().await == 1
        })
        .await;
    }
    let letters = test.dead_letters(1, WAIT).await;
    assert_eq!(letters[0].0, message_id);
    assert!(letters[0].2.contains("404"), "reason: {}", letters[0].2);
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_declared_with_other_arguments_is_kept_and_the_worker_runs() {
    let test = WorkerTest::new("dlq-kept").await;
    // As an earlier version declared it: a quorum queue without a delivery limit.
    let dlq = format!("{}.dlq", test.queue);
    test.amqp.delete_queue(&dlq).await;
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    test.amqp.declare_queue(&dlq, arguments).await;
    test.amqp.bind(&dlq, &format!("{}.dlx", test.queue), &test.queue).await;

    let output = archiver_command(&test, "topology", &[], &[]).await;
    assert_exit_0(&output);
    let declared = stdout_json(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if expected_shape(&declared) == "unlimited" {
        assert_eq!(declared["dead_letter_queue_shape"], "kept", "{declared}");
        assert!(
            stderr.contains("set_policy") && stderr.contains("delivery-limit"),
            "the operator step is logged: {stderr}"
        );
    }

    // The worker keeps running with it: a bad event still reaches it.
    let worker = test.start_worker(&[]);
    let message_id = test.publish_bytes(b"{not json").await;
    let letters = test.dead_letters(1, WAIT).await;
    assert_eq!(letters[0].0, message_id);
    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    test.clean_up().await;
}

/// A virtual host of the stack's broker for one test, so that no other test's queue is
/// bound to its `archiver.results`; deleted when dropped.
struct Vhost {
    name: String,
}

impl Vhost {
    fn create(label: &str) -> Vhost {
        let vhost = Vhost {
            name: crate::support::unique_name(label),
        };
        vhost.ctl(&["add_vhost", &vhost.name]);
        vhost.ctl(&["set_permissions", "-p", &vhost.name, "guest", ".*", ".*", ".*"]);
        vhost
    }

    fn ctl(&self, args: &[&str]) {
        let rabbitmqctl = Stack::load().var("ARCHIVER_RABBITMQCTL").to_owned();
        let output = std::process::Command::new("timeout")
            .arg("60")
            .arg(&rabbitmqctl)
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The stack's broker URL, in this virtual host.
    fn url(&self) -> String {
        let base = Stack::load().amqp_url();
        let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
        format!("{root}/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let rabbitmqctl = Stack::load().var("ARCHIVER_RABBITMQCTL").to_owned();
        let _ = std::process::Command::new("timeout")
            .arg("60")
            .arg(rabbitmqctl)
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// The value of a counter without labels in a `/metrics` text, 0 when absent.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_no_queue_takes_are_counted_and_the_event_is_still_archived() {
    let vhost = tokio::task::spawn_blocking(|| Vhost::create("results-unroutable"))
        .await
        .unwrap();
    let test = WorkerTest::on_broker("results-unroutable", &vhost.url()).await;
    // Nothing is bound to archiver.results in this virtual host.
    test.amqp.delete_queue(&format!("{}.results", test.queue)).await;
    let metrics_addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap()
    );
    let worker = test.start_worker(&[("ARCHIVER_METRICS_ADDR", &metrics_addr)]);
    let session = session_id(2);
    test.publish(&test.good_event(&session)).await;
    let metrics = || async {
        reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    eventually("one unroutable result counted", WAIT, || async {
        metrics()
            .await
            .is_some_and(|text| counter(&text, "archiver_results_unroutable_total") == 1.0)
    })
    .await;
    test.assert_media_stored(&session).await;
    eventually("an empty queue", WAIT, || async { test.queue_depth().await == 0 }).await;
    assert_eq!(test.dead_letter_depth().await, 0);
    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no queue took the result event"),
        "the unroutable result is logged"
    );
    test.clean_up().await;
    drop(vhost);
}

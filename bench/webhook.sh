#!/usr/bin/env bash
# Benchmark of the webhook ingress (issue 14). Not a test: it prints figures.
#
# REQUESTS (default 20000) signed decided webhooks sent by a vendor stand-in
# (crates/archiver/examples/bench_webhook.rs), CONCURRENCY (default 16) at a time, to one
# `archiver webhook` (release build) on the stack's broker: confirmed events per second
# (each answered 200 only after the broker's publisher confirm) and p50/p99 from send to
# answer, against the worker's rate measured by bench/worker.sh (WORKER_EVENTS_PER_SEC,
# default the README's figure). Nothing is archived: the events stay in a queue of this run,
# deleted at the end. Loopback only; bounded by BENCH_TIMEOUT seconds.
#
#   bench/webhook.sh
#   REQUESTS=5000 CONCURRENCY=32 bench/webhook.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${ARCHIVER_STACK_DIR:-$ROOT/.stack}
REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-16}
TIMEOUT=${BENCH_TIMEOUT:-600}
WORKER_EVENTS_PER_SEC=${WORKER_EVENTS_PER_SEC:-18.7}
PROFILE=${BENCH_PROFILE:-release}
WORK=${BENCH_DIR:-$ROOT/target/bench-webhook}

die() { echo "bench: $*" >&2; exit 2; }
[[ -s $STACK_DIR/env ]] || die "no stack settings at $STACK_DIR/env: run scripts/stack/up.sh first"
((REQUESTS >= 1 && REQUESTS <= 100000 && CONCURRENCY >= 1 && CONCURRENCY <= 256)) || die "REQUESTS or CONCURRENCY out of range"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy ALL_PROXY all_proxy

profile_flag=--release
[[ $PROFILE == debug ]] && profile_flag=
# shellcheck disable=SC2086
(cd "$ROOT" && cargo build $profile_flag -q -p archiver --bin archiver --example bench_webhook) || die "cannot build"
archiver=$ROOT/target/$PROFILE/archiver
driver=$ROOT/target/$PROFILE/examples/bench_webhook

mkdir -p "$WORK"
secret=bench-webhook-secret-$$
printf '[tenants.bench]\nwebhook_secret = "%s"\n' "$secret" >"$WORK/tenants.toml"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ARCHIVER_QUEUE=bench-webhook-$$ ARCHIVER_TENANTS_FILE=$WORK/tenants.toml RUST_LOG=warn
export ARCHIVER_WEBHOOK_ADDR=127.0.0.1:$port ARCHIVER_METRICS_ADDR=127.0.0.1:0
webhook_pid=""
cleanup() {
	if [[ -n $webhook_pid ]]; then kill "$webhook_pid" 2>/dev/null || true; fi
	"$ARCHIVER_RABBITMQCTL" delete_queue "$ARCHIVER_QUEUE" >/dev/null 2>&1 || true
	"$ARCHIVER_RABBITMQCTL" delete_queue "$ARCHIVER_QUEUE.dlq" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$archiver" topology >"$WORK/topology.log" 2>&1 || die "archiver topology failed (log: $WORK/topology.log)"
"$archiver" webhook 2>"$WORK/webhook.log" &
webhook_pid=$!
for _ in $(seq 100); do
	curl -s -o /dev/null "http://127.0.0.1:$port/" && break
	sleep 0.1
done

echo "== $REQUESTS signed webhooks, $CONCURRENCY at a time, $PROFILE build"
result=$(timeout "$TIMEOUT" "$driver" --url "http://127.0.0.1:$port/webhooks/bench" --secret "$secret" \
	--requests "$REQUESTS" --concurrency "$CONCURRENCY")
echo "$result"
python3 -c 'import json, sys
rate = json.loads(sys.argv[1])["webhooks_per_sec"]; worker = float(sys.argv[2])
print(f"confirmed events/s: {rate}; one worker archives {worker} events/s (bench/worker.sh): ratio {rate / worker:.1f}")' \
	"$result" "$WORKER_EVENTS_PER_SEC"

kill -TERM "$webhook_pid"
wait "$webhook_pid" || die "the webhook did not exit 0 (log: $WORK/webhook.log)"
webhook_pid=""

#!/usr/bin/env bash
# The whole product in one command, on a fresh machine:
#
#   bash scripts/demo.sh
#
# 1. starts the local stack (RabbitMQ, Garage S3 behind TLS: scripts/stack/up.sh);
# 2. builds the archiver (debug: on 2 cores it builds several minutes faster than
#    release, and the demo's media are small);
# 3. serves the sample media over HTTPS from a local server (the stand-in for the
#    vendor's media host), trusted through ARCHIVER_SOURCE_CA_FILE;
# 4. declares the topology (`archiver topology`) and starts `archiver worker`;
# 5. publishes the sample events of fixtures/events/ (good ones and bad ones), waits
#    (at most DEMO_TIMEOUT seconds, default 120) for each one's result, and prints each
#    outcome, its S3 keys and, for a dead-lettered event, the dead-letter queue and reason;
# 6. starts `archiver webhook` and sends it a signed vendor webhook (archived by the worker)
#    and one with a wrong signature (401), then stops it with SIGTERM (exit 0);
# 7. stops the worker with SIGTERM (it drains and exits 0) and the media server.
#
# The stack is left running for the tests and for a look around (queues:
# `source .stack/env; rabbitmqctl list_queues`, the stack's wrapper around the broker's
# rabbitmqctl; objects: `archiver get KEY`); stop it with
# `bash scripts/stack/down.sh`. The demo uses its own queue, face-reports-demo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)
timeout_secs=${DEMO_TIMEOUT:-120}
queue=face-reports-demo
step() { printf '\n==> %s\n' "$*"; }

step "starting the local stack"
bash scripts/stack/up.sh
# shellcheck disable=SC1091
source "${ARCHIVER_STACK_DIR:-$repo_root/.stack}/env"
stack_dir=$ARCHIVER_STACK_DIR

step "building the archiver and the demo client"
cargo build -p archiver --bin archiver --example demo_client
archiver=$repo_root/target/debug/archiver
demo_client=$repo_root/target/debug/examples/demo_client

work=$(mktemp -d)
media_pid="" worker_pid="" webhook_pid=""
cleanup() {
	[[ -n $webhook_pid ]] && kill "$webhook_pid" 2>/dev/null || true
	[[ -n $worker_pid ]] && kill "$worker_pid" 2>/dev/null || true
	[[ -n $media_pid ]] && kill "$media_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

step "preparing the sample media"
media=$work/media
mkdir -p "$media"
fixture_media=(source-600x800.jpg target-1280x720.jpg video-10s-moov-last.mp4 target-1280x719.jpg)
if (cd fixtures/media 2>/dev/null && ls "${fixture_media[@]}" >/dev/null 2>&1); then
	cp fixtures/media/source-600x800.jpg "$media/source.jpg"
	cp fixtures/media/target-1280x720.jpg "$media/target.jpg"
	cp fixtures/media/video-10s-moov-last.mp4 "$media/video.mp4"
	# One pixel below the 720-pixel minimum for the live frame: rejected, not stored.
	cp fixtures/media/target-1280x719.jpg "$media/target-too-small.jpg"
else
	# Without fixtures/media (fixtures/make-fixtures.sh regenerates it), make stand-ins.
	convert -size 600x800 plasma:fractal -quality 85 "$media/source.jpg"
	convert -size 1280x720 gradient:navy-orange -quality 85 "$media/target.jpg"
	ffmpeg -loglevel error -f lavfi -i testsrc=duration=3:size=320x240:rate=15 -pix_fmt yuv420p "$media/video.mp4"
	convert -size 1280x719 gradient:gray-white -quality 85 "$media/target-too-small.jpg"
fi
ls -l "$media" | tail -n +2

step "starting the HTTPS media server"
python3 scripts/demo/media_server.py "$media" "$stack_dir/tls/server.pem" "$stack_dir/tls/server.key" "$work/port" \
	>"$work/media.log" 2>&1 &
media_pid=$!
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.1; done
[[ -s $work/port ]] || { cat "$work/media.log"; echo "the media server did not start" >&2; exit 1; }
media_url=https://localhost:$(cat "$work/port")
echo "serving $media at $media_url"

export ARCHIVER_QUEUE=$queue
export ARCHIVER_SOURCE_CA_FILE=$stack_dir/tls/ca.pem
export ARCHIVER_ALLOWED_HOSTS=localhost:$(cat "$work/port")
export ARCHIVER_CONCURRENCY=4

step "declaring the topology (archiver topology)"
"$archiver" topology

step "starting the worker (log: $work/worker.log, printed at the end)"
NO_COLOR=1 "$archiver" worker >"$work/worker.log" 2>&1 &
worker_pid=$!

step "publishing the sample events"
status=0
"$demo_client" --queue "$queue" --media "$media_url" --timeout "$timeout_secs" fixtures/events/*.json || status=$?

step "the webhook path: a signed vendor webhook in, archived by the worker; a wrong signature refused"
webhook_secret=demo-webhook-secret
printf '[tenants.demo]\nwebhook_secret = "%s"\n' "$webhook_secret" >"$work/tenants.toml"
ARCHIVER_TENANTS_FILE=$work/tenants.toml ARCHIVER_WEBHOOK_ADDR=127.0.0.1:18080 ARCHIVER_METRICS_ADDR=127.0.0.1:19090 \
	NO_COLOR=1 "$archiver" webhook >"$work/webhook.log" 2>&1 &
webhook_pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:19090/readyz >/dev/null 2>&1 && break; sleep 0.1; done
webhook_session=0a1b2c3d-0100-4000-8000-000000000100
# What the vendor sends: the session's decision, signed with HMAC-SHA256 of the raw body.
post_webhook() { # SECRET -> prints the HTTP status and the answer
	python3 - "$1" "$webhook_session" "$media_url" <<'PY'
import hashlib, hmac, json, sys, time, urllib.error, urllib.request
secret, session, media = sys.argv[1:]
face = {"status": "Approved", "face_match_status": "Approved", "liveness_status": "Approved",
        "face_match_similarity": 97.1, "liveness_confidence": 98.4, "source_image": f"{media}/source.jpg",
        "target_image": f"{media}/target.jpg", "video_url": f"{media}/video.mp4"}
body = json.dumps({"session_id": session, "status": "Approved", "webhook_type": "status.updated",
                   "decision": {"face": face}}).encode()
signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
request = urllib.request.Request("http://127.0.0.1:18080/webhooks/demo", data=body, method="POST", headers={
    "content-type": "application/json", "x-timestamp": str(int(time.time())), "x-signature": signature})
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        print(answer.status, answer.read().decode())
except urllib.error.HTTPError as answer:
    print(answer.code, answer.read().decode())
PY
}
echo "signed with the tenant's secret:  $(post_webhook "$webhook_secret")"
echo "signed with another secret:       $(post_webhook not-the-secret)"
manifest_key=face-reports/demo/$webhook_session/manifest.json
for _ in $(seq $((timeout_secs * 10))); do
	"$archiver" get "$manifest_key" -o "$work/webhook-manifest.json" >/dev/null 2>&1 && break
	sleep 0.1
done
if [[ -s $work/webhook-manifest.json ]]; then
	echo "archived: $manifest_key"
	python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print({k: v["status"] for k, v in m["media"].items()})' \
		"$work/webhook-manifest.json"
else
	echo "the webhook's session was not archived within ${timeout_secs}s" >&2
	status=1
fi
kill -TERM "$webhook_pid"
webhook_status=0
wait "$webhook_pid" || webhook_status=$?
webhook_pid=""
echo "webhook exit code: $webhook_status (log: one line per request)"
grep "webhook answered" "$work/webhook.log" | cut -c1-220 || true
((webhook_status == 0)) || status=1

step "stopping the worker (SIGTERM: it drains, then exits 0)"
if ! kill -0 "$worker_pid" 2>/dev/null; then
	echo "the worker is not running any more; its log:" >&2
	tail -n 40 "$work/worker.log" >&2
	exit 1
fi
kill -TERM "$worker_pid"
worker_status=0
for _ in $(seq 300); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.1; done
wait "$worker_pid" || worker_status=$?
worker_pid=""
echo "worker exit code: $worker_status"
echo "--- worker log: settlements and shutdown ---"
grep -E "event settled|returning|shutting down|draining|stopped" "$work/worker.log" | cut -c1-220 || true

step "reading one archived object back, decrypted (archiver get)"
key=face-reports/demo/0a1b2c3d-0001-4000-8000-000000000001/source.jpg
if "$archiver" get "$key" --reason "demo: compare with the served file" -o "$work/source.jpg"; then
	echo "$key: $(sha256sum <"$work/source.jpg" | cut -c1-16)... (sha256), served: $(sha256sum <"$media/source.jpg" | cut -c1-16)..."
	cmp -s "$work/source.jpg" "$media/source.jpg" && echo "identical bytes: the archive is the evidence as fetched"
fi

echo
echo "The stack is still running: scripts/stack/down.sh stops it."
exit $((status != 0 || worker_status != 0))

#!/usr/bin/env bash
# Benchmark of the queue worker (issue 4). Not a test: it prints figures.
#
#   1. EVENTS events (default 200), each a ~150 KB source JPEG, a ~430 KB target JPEG and a
#      ~2.3 MB MP4 (about 2.9 MB per event, the pipeline benchmark's media), published all
#      at once to one `archiver worker` (release build) at CONCURRENCY (default 8): events/s,
#      MB/s, and p50/p99 from publish to result event (sent after the manifest is written).
#   2. The same number of events published at half the events/s measured in step 1:
#      p99 publish-to-manifest under a sustainable load (target: under 2 s).
#   3. Reference: `rclone copyurl` of the same URLs into the same bucket with SSE-C, eight
#      at a time (what an operator might script instead; target: the worker 3x faster).
#
# The media host is scripts/demo/media_server.py (Python, TLS, the stack's certificate);
# it shares the 2 cores with the worker and Garage. The storage ceiling (rclone copy of the
# same files) is measured by bench/run.sh. Needs the stack (scripts/stack/up.sh) and ffmpeg.
# Loopback only; bounded (BENCH_TIMEOUT seconds per step); the objects are deleted at the end.
#
#   bench/worker.sh
#   EVENTS=200 CONCURRENCY=8 bench/worker.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${ARCHIVER_STACK_DIR:-$ROOT/.stack}
EVENTS=${EVENTS:-200}
CONCURRENCY=${CONCURRENCY:-8}
TIMEOUT=${BENCH_TIMEOUT:-600}
WORK=${BENCH_DIR:-$ROOT/target/bench-worker}

die() { echo "bench: $*" >&2; exit 2; }
[[ -s $STACK_DIR/env ]] || die "no stack settings at $STACK_DIR/env: run scripts/stack/up.sh first"
((EVENTS >= 1 && EVENTS <= 10000 && CONCURRENCY >= 1 && CONCURRENCY <= 256)) || die "EVENTS or CONCURRENCY out of range"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
export BENCH_RCLONE_SECS=$TIMEOUT
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy ALL_PROXY all_proxy

mkdir -p "$WORK/media"
make_media "$WORK/media/source.jpg" -f lavfi -i "$(noise 480x640)" -frames:v 1 -q:v 8
make_media "$WORK/media/target.jpg" -f lavfi -i "$(noise 1280x720)" -frames:v 1 -q:v 8
make_media "$WORK/media/video.mp4" -f lavfi -i "$(noise 320x240 25)" -t 1 -c:v mpeg4 -q:v 2 -pix_fmt yuv420p
bytes=$(cat "$WORK/media/source.jpg" "$WORK/media/target.jpg" "$WORK/media/video.mp4" | wc -c)

(cd "$ROOT" && cargo build --release -q -p archiver --bin archiver --example bench_worker) || die "cannot build"
archiver=$ROOT/target/release/archiver
driver=$ROOT/target/release/examples/bench_worker

media_pid="" worker_pid=""
cleanup() {
	[[ -n $worker_pid ]] && kill "$worker_pid" 2>/dev/null || true
	[[ -n $media_pid ]] && kill "$media_pid" 2>/dev/null || true
}
trap cleanup EXIT
rm -f "$WORK/port"
python3 "$ROOT/scripts/demo/media_server.py" "$WORK/media" "$STACK_DIR/tls/server.pem" "$STACK_DIR/tls/server.key" "$WORK/port" &
media_pid=$!
for _ in $(seq 100); do [[ -s $WORK/port ]] && break; sleep 0.1; done
[[ -s $WORK/port ]] || die "the media server did not start"
port=$(cat "$WORK/port")

export ARCHIVER_QUEUE=bench-worker-$$ ARCHIVER_CONCURRENCY=$CONCURRENCY ARCHIVER_METRICS_ADDR=127.0.0.1:0
export ARCHIVER_SOURCE_CA_FILE=$STACK_DIR/tls/ca.pem ARCHIVER_ALLOWED_HOSTS=localhost:$port
export ARCHIVER_S3_PREFIX=bench-worker/ RUST_LOG=warn
"$archiver" topology >/dev/null
"$archiver" worker 2>"$WORK/worker.log" &
worker_pid=$!

echo "== $EVENTS events of $((bytes / 1000)) kB, published at once, concurrency $CONCURRENCY"
full=$(timeout "$TIMEOUT" "$driver" --queue "$ARCHIVER_QUEUE" --media "https://localhost:$port" --events "$EVENTS" \
	--bytes-per-event "$bytes" --timeout "$TIMEOUT")
echo "$full"
half=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["events_per_sec"] / 2, 2))' "$full")
echo "== $EVENTS events at $half events/s (half the maximum)"
timeout "$TIMEOUT" "$driver" --queue "$ARCHIVER_QUEUE" --media "https://localhost:$port" --events "$EVENTS" \
	--bytes-per-event "$bytes" --rate "$half" --timeout "$TIMEOUT"

kill -TERM "$worker_pid"
wait "$worker_pid" || die "the worker did not exit 0 (log: $WORK/worker.log)"
worker_pid=""

# The rclone calls run in xargs' shells.
export -f rclone_s3
if command -v rclone >/dev/null; then
	echo "== reference: rclone copyurl of the same $((EVENTS * 3)) URLs, 8 at a time, SSE-C"
	start=$(date +%s.%N)
	for n in $(seq "$EVENTS"); do
		for file in source.jpg target.jpg video.mp4; do
			echo "https://localhost:$port/$file garage:$ARCHIVER_S3_BUCKET/bench-worker/copyurl/$n/$file"
		done
	done | xargs -P 8 -n 2 bash -c 'rclone_s3 copyurl "$0" "$1" --s3-sse-customer-algorithm AES256 \
		--s3-sse-customer-key-base64 "$ARCHIVER_SSE_C_KEY"' || die "rclone copyurl failed"
	end=$(date +%s.%N)
	awk -v n="$EVENTS" -v b="$bytes" -v s="$start" -v e="$end" \
		'BEGIN {printf "{\"events\": %d, \"wall_secs\": %.2f, \"events_per_sec\": %.2f, \"mb_per_sec\": %.1f}\n", n, e - s, n / (e - s), n * b / 1e6 / (e - s)}'
	rclone_s3 purge "garage:$ARCHIVER_S3_BUCKET/bench-worker" >/dev/null 2>&1 || true
else
	echo "(rclone not found: no copyurl reference, and the objects stay under bench-worker/)"
fi

#!/usr/bin/env bash
# Peak memory of one worker when sources declare no length (issue 13). Not a test: it
# prints figures, to be compared with the target (96 MiB at concurrency 8) and the pod's
# memory limit (deploy/kubernetes/base/deployment.yaml).
#
# One `archiver worker` (release build) at CONCURRENCY (8) per phase, a fresh process each,
# its peak RSS read from /proc/PID/status (VmHWM) before it is stopped:
#   1. idle: the worker connected and consuming, nothing published (read in every phase);
#   2. baseline: EVENTS (16) events whose video is ~0.9 MB, every body served chunked;
#   3. the case: one hostile JSON message as large as the broker accepts (HOSTILE_BYTES,
#      4 MiB less 4 KiB under the stack's max_message_size of 4 MiB), then EVENTS events
#      whose ~11 MB videos come chunked, without Content-Length.
# The media host is bench/chunked_media_server.py (TLS, the stack's certificate); the
# events are published by crates/archiver/examples/bench_worker.rs, which waits for every
# result event. Needs the stack (scripts/stack/up.sh) and ffmpeg. Loopback only; each step
# is bounded (BENCH_TIMEOUT seconds); the queues and objects are deleted at the end.
#
#   bench/memory.sh
#   EVENTS=16 CONCURRENCY=8 bench/memory.sh
#   BENCH_PROFILE=debug bench/memory.sh      # the debug build, to try the script quickly
#   BENCH_MALLOC_ARENA_MAX=unset bench/memory.sh   # glibc's default arenas, not the image's 2
#   BENCH_BUILD=0 bench/memory.sh            # the binaries already built, as they are
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${ARCHIVER_STACK_DIR:-$ROOT/.stack}
EVENTS=${EVENTS:-16}
CONCURRENCY=${CONCURRENCY:-8}
HOSTILE_BYTES=${HOSTILE_BYTES:-$((4 * 1024 * 1024 - 4096))}
TIMEOUT=${BENCH_TIMEOUT:-600}
PROFILE=${BENCH_PROFILE:-release}
WORK=${BENCH_DIR:-$ROOT/target/bench-memory}

die() { echo "bench: $*" >&2; exit 2; }
[[ -s $STACK_DIR/env ]] || die "no stack settings at $STACK_DIR/env: run scripts/stack/up.sh first"
((EVENTS >= 1 && EVENTS <= 1000 && CONCURRENCY >= 1 && CONCURRENCY <= 256)) || die "EVENTS or CONCURRENCY out of range"
[[ $PROFILE == release || $PROFILE == debug ]] || die "BENCH_PROFILE must be release or debug"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy ALL_PROXY all_proxy
rabbitmqctl=${ARCHIVER_RABBITMQCTL:?the stack names its rabbitmqctl in ARCHIVER_RABBITMQCTL}

mkdir -p "$WORK/media"
make_media "$WORK/media/source.jpg" -f lavfi -i "$(noise 480x640)" -frames:v 1 -q:v 8
make_media "$WORK/media/target.jpg" -f lavfi -i "$(noise 1280x720)" -frames:v 1 -q:v 8
make_media "$WORK/media/small.mp4" -f lavfi -i "$(noise 320x240 25)" -t 0.4 -c:v mpeg4 -q:v 2 -pix_fmt yuv420p
make_media "$WORK/media/large.mp4" -f lavfi -i "$(noise 320x240 25)" -t 4.8 -c:v mpeg4 -q:v 2 -pix_fmt yuv420p
size() { wc -c <"$WORK/media/$1"; }

flag=--release
[[ $PROFILE == debug ]] && flag=""
if [[ ${BENCH_BUILD:-1} != 0 ]]; then
	# shellcheck disable=SC2086
	(cd "$ROOT" && cargo build $flag -q -p archiver --bin archiver --example bench_worker) || die "cannot build"
fi
archiver=$ROOT/target/$PROFILE/archiver
driver=$ROOT/target/$PROFILE/examples/bench_worker

media_pid="" worker_pid="" queues=()
cleanup() {
	if [[ -n $worker_pid ]]; then kill "$worker_pid" 2>/dev/null || true; fi
	if [[ -n $media_pid ]]; then kill "$media_pid" 2>/dev/null || true; fi
	for queue in "${queues[@]}"; do
		timeout 60 "$rabbitmqctl" delete_queue "$queue" >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT
rm -f "$WORK/port"
python3 "$ROOT/bench/chunked_media_server.py" "$WORK/media" "$STACK_DIR/tls/server.pem" "$STACK_DIR/tls/server.key" "$WORK/port" &
media_pid=$!
for _ in $(seq 100); do [[ -s $WORK/port ]] && break; sleep 0.1; done
[[ -s $WORK/port ]] || die "the media server did not start"
port=$(cat "$WORK/port")
if curl -sS --cacert "$STACK_DIR/tls/ca.pem" -D - -o /dev/null "https://localhost:$port/large.mp4" | grep -qi '^content-length'; then
	die "the media server declares a Content-Length"
fi

export ARCHIVER_CONCURRENCY=$CONCURRENCY ARCHIVER_METRICS_ADDR=127.0.0.1:0
export ARCHIVER_SOURCE_CA_FILE=$STACK_DIR/tls/ca.pem ARCHIVER_ALLOWED_HOSTS=localhost:$port
export ARCHIVER_S3_PREFIX=bench-memory/ RUST_LOG=warn
# As the image runs it (deploy/Dockerfile): fewer glibc arenas, less memory held per thread.
ARENAS=${BENCH_MALLOC_ARENA_MAX:-2}
if [[ $ARENAS == unset ]]; then unset MALLOC_ARENA_MAX; else export MALLOC_ARENA_MAX=$ARENAS; fi
# The image's fixed mmap threshold (deploy/Dockerfile); BENCH_MALLOC_MMAP_THRESHOLD=unset
# measures glibc's dynamic default instead.
MMAP_THRESHOLD=${BENCH_MALLOC_MMAP_THRESHOLD:-1048576}
if [[ $MMAP_THRESHOLD == unset ]]; then unset MALLOC_MMAP_THRESHOLD_; else export MALLOC_MMAP_THRESHOLD_=$MMAP_THRESHOLD; fi

# mib PID: the process's peak resident set so far, in MiB.
mib() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# phase NAME VIDEO HOSTILE_BYTES: one fresh worker, EVENTS events; sets idle, peak and
# result (run in this shell, not a subshell, so that cleanup sees the worker and queues).
phase() {
	local name=$1 video=$2 hostile=$3
	export ARCHIVER_QUEUE=bench-memory-$$-$name
	queues+=("$ARCHIVER_QUEUE" "$ARCHIVER_QUEUE.dlq")
	"$archiver" topology >/dev/null 2>"$WORK/topology-$name.log"
	"$archiver" worker 2>"$WORK/worker-$name.log" &
	worker_pid=$!
	# Consuming once the queue has a consumer (polled with a deadline).
	local consumers=0
	for _ in $(seq 60); do
		consumers=$(timeout 30 "$rabbitmqctl" -q list_queues name consumers 2>/dev/null |
			awk -v q="$ARCHIVER_QUEUE" '$1 == q {print $2}')
		[[ ${consumers:-0} -ge 1 ]] && break
		sleep 0.5
	done
	[[ ${consumers:-0} -ge 1 ]] || die "the worker did not start consuming (log: $WORK/worker-$name.log)"
	idle=$(mib "$worker_pid")
	result=$(timeout "$TIMEOUT" "$driver" --queue "$ARCHIVER_QUEUE" --media "https://localhost:$port" \
		--events "$EVENTS" --video "$video" --hostile-bytes "$hostile" --timeout "$TIMEOUT" \
		--bytes-per-event "$(cat "$WORK/media/source.jpg" "$WORK/media/target.jpg" "$WORK/media/$video" | wc -c)") ||
		die "the driver failed in phase $name"
	peak=$(mib "$worker_pid")
	# The hostile message must have been refused unparsed, i.e. dead-lettered (from the
	# worker's own log: the broker's queue statistics lag by seconds).
	dead=$(grep -c 'outcome="dead-lettered"' "$WORK/worker-$name.log" || true)
	kill -TERM "$worker_pid"
	wait "$worker_pid" || die "the worker did not exit 0 (log: $WORK/worker-$name.log)"
	worker_pid=""
}

phase small small.mp4 0
idle_small=$idle peak_small=$peak result_small=$result
phase large large.mp4 "$HOSTILE_BYTES"
idle_large=$idle peak_large=$peak result_large=$result dead_large=${dead:-0}

{
	echo "worker peak memory without Content-Length, $(date -u +%FT%TZ), $(nproc) cores, concurrency $CONCURRENCY, $PROFILE build, MALLOC_ARENA_MAX=$ARENAS, MALLOC_MMAP_THRESHOLD_=$MMAP_THRESHOLD"
	printf '  idle (connected, nothing published):              %6s MiB  (%s MiB in the second phase)\n' "$idle_small" "$idle_large"
	printf '  baseline: %d events, %4.1f MB videos, chunked:      %6s MiB  %s\n' "$EVENTS" "$(echo "$(size small.mp4) / 1000000" | bc -l)" "$peak_small" "$result_small"
	printf '  %d events, %4.1f MB videos, chunked, + one %d-byte hostile message: %s MiB  %s\n' \
		"$EVENTS" "$(echo "$(size large.mp4) / 1000000" | bc -l)" "$HOSTILE_BYTES" "$peak_large" "$result_large"
	echo "  dead-lettered in the second phase (the hostile message): $dead_large"
} | tee "$WORK/summary.txt"

if command -v rclone >/dev/null; then
	rclone_s3 purge "garage:$ARCHIVER_S3_BUCKET/bench-memory" >/dev/null 2>&1 || true
else
	echo "(rclone not found: the objects stay under bench-memory/)"
fi

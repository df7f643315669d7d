#!/usr/bin/env bash
# Benchmark of the archive pipeline (issue 3). Not a test: it prints figures.
#
#   1. EVENTS events (default 100), each a ~150 KB source JPEG, a ~430 KB target JPEG and a
#      ~2.3 MB MP4, archived CONCURRENCY (default 8) at a time from a local HTTPS server
#      (nginx, the stack's certificate) into Garage with SSE-C, by the real pipeline
#      (crates/archive/examples/bench.rs); wall time -> MB/s; peak RSS by /usr/bin/time -v.
#   2. The same files copied from disk into the same bucket with the same SSE-C key by
#      `rclone copy` with CONCURRENCY*3 transfers (the objects in flight when CONCURRENCY
#      events fetch their three media at once): this machine's storage ceiling.
#   3. BIG_EVENTS (default 16) events whose video is ~60 MB, at CONCURRENCY: peak RSS,
#      to compare with step 1 (memory must not grow with the video's size).
#
# Needs the stack (scripts/stack/up.sh), ffmpeg, nginx, rclone. Loopback only. Every run is
# bounded in count and time (each step is killed after BENCH_STEP_TIMEOUT seconds), and the
# objects it wrote are deleted at the end.
#
#   bench/run.sh                 # defaults
#   EVENTS=200 CONCURRENCY=8 bench/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${ARCHIVER_STACK_DIR:-$ROOT/.stack}
EVENTS=${EVENTS:-100}
BIG_EVENTS=${BIG_EVENTS:-16}
CONCURRENCY=${CONCURRENCY:-8}
# The machine is shared (builds, other tests): steps 1 and 2 alternate ROUNDS times and the
# medians are reported.
ROUNDS=${ROUNDS:-3}
PORT=${BENCH_PORT:-18444}
STEP_TIMEOUT=${BENCH_STEP_TIMEOUT:-900}
WORK=${BENCH_DIR:-$ROOT/target/bench}

die() { echo "bench: $*" >&2; exit 2; }
[[ -s $STACK_DIR/env ]] || die "no stack settings at $STACK_DIR/env: run scripts/stack/up.sh first"
for tool in ffmpeg nginx rclone /usr/bin/time curl; do
	command -v "$tool" >/dev/null || die "$tool is needed (apt-get install ffmpeg nginx rclone time curl)"
done
((EVENTS >= 1 && EVENTS <= 10000 && BIG_EVENTS <= 1000 && CONCURRENCY >= 1 && CONCURRENCY <= 256 && ROUNDS >= 1 && ROUNDS <= 9)) ||
	die "EVENTS (1..10000), BIG_EVENTS (..1000), CONCURRENCY (1..256) or ROUNDS (1..9) out of range"
# shellcheck disable=SC1091
source "$STACK_DIR/env"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
export BENCH_RCLONE_SECS=$STEP_TIMEOUT
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy ALL_PROXY all_proxy

mkdir -p "$WORK/media" "$WORK/nginx/tmp" "$WORK/logs"
RUN=run-$(date +%Y%m%d-%H%M%S)

# --- media, made once --------------------------------------------------------------------
make_media "$WORK/media/source.jpg" -f lavfi -i "$(noise 480x640)" -frames:v 1 -q:v 8
make_media "$WORK/media/target.jpg" -f lavfi -i "$(noise 1280x720)" -frames:v 1 -q:v 8
make_media "$WORK/media/video-2mb.mp4" -f lavfi -i "$(noise 320x240 25)" -t 1 -c:v mpeg4 -q:v 2 -pix_fmt yuv420p
make_media "$WORK/media/video-60mb.mp4" -f lavfi -i "$(noise 640x480 25)" -t 6.6 -c:v mpeg4 -q:v 2 -pix_fmt yuv420p

# --- the media host: nginx over TLS with the stack's certificate -------------------------
NGINX=$WORK/nginx
cat >"$NGINX/nginx.conf" <<EOF
$([[ $(id -u) == 0 ]] && echo "user root;")
worker_processes 1;
daemon on;
pid $NGINX/nginx.pid;
error_log $WORK/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 10000;
    client_body_temp_path $NGINX/tmp/body;
    proxy_temp_path $NGINX/tmp/proxy;
    fastcgi_temp_path $NGINX/tmp/fastcgi;
    uwsgi_temp_path $NGINX/tmp/uwsgi;
    scgi_temp_path $NGINX/tmp/scgi;
    server {
        listen 127.0.0.1:$PORT ssl;
        server_name localhost;
        ssl_certificate $STACK_DIR/tls/server.pem;
        ssl_certificate_key $STACK_DIR/tls/server.key;
        root $WORK/media;
    }
}
EOF
stop_nginx() {
	if [[ -s $NGINX/nginx.pid ]]; then
		nginx -c "$NGINX/nginx.conf" -p "$NGINX" -e "$WORK/logs/nginx-error.log" -s stop 2>/dev/null || true
	fi
}
trap stop_nginx EXIT
stop_nginx
nginx -c "$NGINX/nginx.conf" -p "$NGINX" -e "$WORK/logs/nginx-error.log" || die "nginx did not start (see $WORK/logs/)"
for _ in $(seq 1 50); do
	curl -sf --noproxy '*' --max-time 2 --cacert "$STACK_DIR/tls/ca.pem" -o /dev/null "https://localhost:$PORT/source.jpg" && break
	sleep 0.1
done
curl -sf --noproxy '*' --max-time 2 --cacert "$STACK_DIR/tls/ca.pem" -o /dev/null "https://localhost:$PORT/source.jpg" ||
	die "the media host https://localhost:$PORT does not answer"

# --- the pipeline driver, built with optimisations ---------------------------------------
(cd "$ROOT" && cargo build --release -q -p archive --example bench) || die "cannot build the bench driver"
BIN=$ROOT/target/release/examples/bench
export ARCHIVER_ALLOWED_HOSTS=localhost:$PORT ARCHIVER_SOURCE_CA_FILE=$STACK_DIR/tls/ca.pem RUST_LOG=${RUST_LOG:-warn}

# Prints "MB/s peak_RSS_KiB" of one archiver run.
run_archiver() {
	local label=$1 events=$2 video=$3
	timeout "$STEP_TIMEOUT" /usr/bin/time -v -o "$WORK/logs/$label.time" \
		"$BIN" "https://localhost:$PORT" "$events" "$CONCURRENCY" "$RUN-$label" "$video" \
		>"$WORK/logs/$label.json" 2>"$WORK/logs/$label.err" || die "the $label run failed (see $WORK/logs/$label.err)"
	local done
	done=$(sed -n 's/.*"done":\([0-9]*\).*/\1/p' "$WORK/logs/$label.json")
	[[ $done == "$events" ]] || die "the $label run archived $done of $events events (see $WORK/logs/$label.err)"
	echo "$(sed -n 's/.*"mb_per_s":\([0-9.]*\).*/\1/p' "$WORK/logs/$label.json")" \
		"$(awk '/Maximum resident set size/ {print $6}' "$WORK/logs/$label.time")"
}

# --- 1 and 2: the pipeline with 2 MB videos, and the ceiling: rclone copy from disk -----
SRC=$WORK/rclone-src
rm -rf "$SRC"
for i in $(seq 1 "$EVENTS"); do
	mkdir -p "$SRC/e$i"
	ln "$WORK/media/source.jpg" "$SRC/e$i/source.jpg"
	ln "$WORK/media/target.jpg" "$SRC/e$i/target.jpg"
	ln "$WORK/media/video-2mb.mp4" "$SRC/e$i/video.mp4"
done
bytes=$(find "$SRC" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
archiver_runs=() rclone_runs=() small_rss=0
for round in $(seq 1 "$ROUNDS"); do
	echo "bench: round $round/$ROUNDS: archiving $EVENTS events at concurrency $CONCURRENCY (2.3 MB videos)..."
	read -r mbps rss < <(run_archiver "small-$round" "$EVENTS" /video-2mb.mp4)
	[[ -n ${rss:-} ]] || die "the archiver run of round $round failed"
	archiver_runs+=("$(printf "%.1f" "$mbps")")
	((rss > small_rss)) && small_rss=$rss
	echo "bench: round $round/$ROUNDS: rclone copy of the same $EVENTS x 3 files with $((CONCURRENCY * 3)) transfers..."
	start=$(date +%s.%N)
	rclone_s3 copy "$SRC" "garage:$ARCHIVER_S3_BUCKET/bench/$RUN-rclone-$round" --transfers $((CONCURRENCY * 3)) \
		--s3-sse-customer-algorithm AES256 --s3-sse-customer-key-base64 "$ARCHIVER_SSE_C_KEY" \
		>"$WORK/logs/rclone.log" 2>&1 || die "rclone copy failed (see $WORK/logs/rclone.log)"
	end=$(date +%s.%N)
	rclone_runs+=("$(awk -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN {printf "%.1f", b / 1e6 / (e - s)}')")
	echo "bench: round $round/$ROUNDS: archiver ${archiver_runs[-1]} MB/s, rclone ${rclone_runs[-1]} MB/s"
done
archiver_mbps=$(printf '%s\n' "${archiver_runs[@]}" | median)
rclone_mbps=$(printf '%s\n' "${rclone_runs[@]}" | median)

# --- 3. peak memory with 60 MB videos ----------------------------------------------------
echo "bench: archiving $BIG_EVENTS events at concurrency $CONCURRENCY (60 MB videos)..."
read -r big_mbps big_rss < <(run_archiver big "$BIG_EVENTS" /video-60mb.mp4)
[[ -n ${big_rss:-} ]] || die "the 60 MB archiver run failed"

# --- clean up the objects written --------------------------------------------------------
rclone_s3 purge "garage:$ARCHIVER_S3_BUCKET/bench/" >>"$WORK/logs/rclone.log" 2>&1 || echo "bench: could not delete bench/ objects" >&2
rm -rf "$SRC"

ratio=$(awk -v a="$archiver_mbps" -v r="$rclone_mbps" 'BEGIN {printf "%.2f", a / r}')
rss_ratio=$(awk -v s="$small_rss" -v b="$big_rss" 'BEGIN {printf "%.2f", b / s}')
{
	echo "archive pipeline benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, concurrency $CONCURRENCY"
	printf '  archiver  %4d events (150 KB + 430 KB + 2.3 MB): %7.1f MB/s  peak RSS %6.1f MiB  (median of %s: %s)\n' "$EVENTS" "$archiver_mbps" "$(awk -v k="$small_rss" 'BEGIN {print k / 1024}')" "$ROUNDS" "${archiver_runs[*]}"
	printf '  rclone    same files from disk, %d transfers:     %7.1f MB/s                    (median of %s: %s)\n' $((CONCURRENCY * 3)) "$rclone_mbps" "$ROUNDS" "${rclone_runs[*]}"
	printf '  ratio archiver / rclone: %s\n' "$ratio"
	printf '  archiver  %4d events with 60 MB videos:           %7.1f MB/s  peak RSS %6.1f MiB (x%s of the 2 MB run)\n' "$BIG_EVENTS" "$big_mbps" "$(awk -v k="$big_rss" 'BEGIN {print k / 1024}')" "$rss_ratio"
} | tee "$WORK/summary.txt"

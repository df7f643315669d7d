#!/usr/bin/env bash
# The chaos test of issue 16, run before each release (not in CI: it needs the three-node
# cluster, root for its chroot, and a few minutes). On the local cluster of
# scripts/stack/cluster.sh (started here if it is not running):
#
#   1. a backlog of EVENTS report events (default 600; each a ~150 KB source JPEG, a ~430 KB
#      target JPEG and a ~2.3 MB MP4 from a local HTTPS media server) is published to a
#      quorum queue of its own (chaos-RUN, replicas on the three broker nodes);
#   2. three workers (release build) drain it, with ARCHIVER_AMQP_URL listing the three nodes;
#   3. while they do, by progress (manifests written): at 10 % the broker node leading the
#      queue is SIGKILLed and then restarted; at 35 % a Garage node is SIGKILLed (restarted
#      at 75 %); at 55 % a worker is SIGKILLed and a replacement started;
#   4. at the end: one manifest per session, every media stored and finished, the SHA-256
#      of every media in every manifest equal to the source's, the bytes of a sample of
#      sessions (SAMPLE, default 20) read back through the S3 front equal to the sources,
#      the queue and its dead-letter queue empty.
#
# It prints events/s with three workers and, per fault, the seconds from the fault to the
# next manifest written and the longest pause in manifest writes after it (until the
# next fault, at most 30 s)
# (the manifests' times come from the S3 front's access log). Exit 0 if every check
# passed, 1 if one failed, 2 if the run could not be made.
#
#   bash scripts/chaos.sh
#   EVENTS=600 CONCURRENCY=4 SAMPLE=20 bash scripts/chaos.sh
#
# Loopback only; every wait bounded (CHAOS_TIMEOUT seconds for the drain, default 900).
# Work files: target/chaos/RUN/ (the summary in summary.json). The run's objects are
# deleted at the end unless CHAOS_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVENTS=${EVENTS:-600}
CONCURRENCY=${CONCURRENCY:-4}
SAMPLE=${SAMPLE:-20}
TIMEOUT=${CHAOS_TIMEOUT:-900}
CLUSTER=$ROOT/scripts/stack/cluster.sh
RUN=$(date -u +%Y%m%dT%H%M%S)-$$
WORK=${CHAOS_DIR:-$ROOT/target/chaos}/$RUN

say() { printf '[chaos %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() {
	printf '[chaos] ERROR: %s\n' "$*" >&2
	exit 2
}
((EVENTS >= 200 && EVENTS <= 5000)) || die "EVENTS must be between 200 and 5000"
((CONCURRENCY >= 1 && CONCURRENCY <= 64)) || die "CONCURRENCY out of range"

bash "$CLUSTER" up >"$ROOT/target/chaos-cluster-up.log" 2>&1 || {
	tail -20 "$ROOT/target/chaos-cluster-up.log" >&2
	die "the cluster did not come up (scripts/stack/cluster.sh up)"
}
CLUSTER_DIR=${ARCHIVER_CLUSTER_DIR:-$ROOT/.stack-cluster}
[[ $CLUSTER_DIR == /* ]] || CLUSTER_DIR=$ROOT/$CLUSTER_DIR
# shellcheck disable=SC1091
source "$CLUSTER_DIR/env"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy ALL_PROXY all_proxy
TLS_DIR=$(dirname "$ARCHIVER_S3_CA_FILE")
ACCESS_LOG=$CLUSTER_DIR/logs/nginx-access.log

mkdir -p "$WORK" "$ROOT/target/chaos/media"
MEDIA=$ROOT/target/chaos/media
make_media "$MEDIA/source.jpg" -f lavfi -i "$(noise 480x640)" -frames:v 1 -q:v 8
make_media "$MEDIA/target.jpg" -f lavfi -i "$(noise 1280x720)" -frames:v 1 -q:v 8
make_media "$MEDIA/video.mp4" -f lavfi -i "$(noise 320x240 25)" -t 1 -c:v mpeg4 -q:v 2 -pix_fmt yuv420p

say "building the release archiver"
if ! (cd "$ROOT" && cargo build --release -q -p archiver --bin archiver --example bench_worker) >"$WORK/build.log" 2>&1; then
	# Other work in progress in the tree may not build; the last release build will do.
	[[ -x $ROOT/target/release/archiver && -x $ROOT/target/release/examples/bench_worker ]] ||
		die "cannot build (see $WORK/build.log)"
	say "WARNING: the build failed (see $WORK/build.log); using the last release build"
fi
# Copies: a rebuild in the same tree during the run must not change what runs.
cp "$ROOT/target/release/archiver" "$WORK/archiver"
cp "$ROOT/target/release/examples/bench_worker" "$WORK/bench_worker"
archiver=$WORK/archiver

media_pid="" worker_pids=()
# shellcheck disable=SC2317,SC2015 # (run by the trap)
cleanup() {
	local pid
	for pid in "${worker_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	[[ -n $media_pid ]] && kill "$media_pid" 2>/dev/null || true
	rm -f "$WORK/archiver" "$WORK/bench_worker"
	if [[ -n ${ARCHIVER_QUEUE:-} ]]; then
		bash "$CLUSTER" ctl 1 delete_queue "$ARCHIVER_QUEUE" >/dev/null 2>&1 || true
		bash "$CLUSTER" ctl 1 delete_queue "$ARCHIVER_QUEUE.dlq" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

python3 "$ROOT/scripts/demo/media_server.py" "$MEDIA" "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$WORK/port" \
	2>"$WORK/media.log" &
media_pid=$!
for _ in $(seq 100); do [[ -s $WORK/port ]] && break; sleep 0.1; done
[[ -s $WORK/port ]] || die "the media server did not start"
port=$(cat "$WORK/port")

export ARCHIVER_QUEUE=chaos-$RUN ARCHIVER_CONCURRENCY=$CONCURRENCY
export ARCHIVER_SOURCE_CA_FILE=$ARCHIVER_S3_CA_FILE ARCHIVER_ALLOWED_HOSTS=localhost:$port
export ARCHIVER_S3_PREFIX=chaos/$RUN/ RUST_LOG=${RUST_LOG:-warn}
"$archiver" topology >"$WORK/topology.json" 2>"$WORK/topology.log" || die "archiver topology failed (see $WORK/topology.log)"

# The queue's replicas: one on each node, or the test is not the one it claims to be.
members=$(bash "$CLUSTER" ctl 1 list_queues -q name members | awk -v q="$ARCHIVER_QUEUE" '$1 == q')
for n in 1 2 3; do
	[[ $members == *"rabbit-c$n@localhost"* ]] || die "queue $ARCHIVER_QUEUE has no replica on rabbit-c$n: $members"
done
say "queue $ARCHIVER_QUEUE: replicas on the three nodes"

say "publishing $EVENTS events (the backlog)"
# The driver speaks to one node; it only publishes here (its result count is not used).
ARCHIVER_AMQP_URL=${ARCHIVER_AMQP_URL%%,*} timeout 300 "$WORK/bench_worker" --queue "$ARCHIVER_QUEUE" \
	--media "https://localhost:$port" --events "$EVENTS" --timeout 1 >"$WORK/publish.json" ||
	die "publishing failed"
# The broker's message count is refreshed every few seconds.
for _ in $(seq 30); do
	ready=$(bash "$CLUSTER" ctl 1 list_queues -q name messages | awk -v q="$ARCHIVER_QUEUE" '$1 == q {print $2}')
	[[ $ready == "$EVENTS" ]] && break
	sleep 1
done
[[ $ready == "$EVENTS" ]] || die "the queue holds ${ready:-?} messages, not $EVENTS"

start_worker() {
	local n=$1
	ARCHIVER_METRICS_ADDR=127.0.0.1:$((19300 + n)) "$archiver" worker 2>"$WORK/worker$n.log" &
	worker_pids[n]=$!
}
# manifests: sessions of this run with a manifest written (2xx PUT at the S3 front).
manifests() {
	awk -v p="/$ARCHIVER_S3_BUCKET/chaos/$RUN/" '$2 == "PUT" && index($3, p) == 1 && $3 ~ /manifest\.json$/ && $4 ~ /^2/ {print $3}' \
		"$ACCESS_LOG" | sort -u | wc -l
}
now() { date +%s.%N; }
faults=$WORK/faults
: >"$faults"
fault() { printf '%s %s\n' "$(now)" "$1" >>"$faults"; }

say "starting three workers (concurrency $CONCURRENCY each)"
started=$(now)
for n in 1 2 3; do start_worker "$n"; done

# Faults by progress, then the drain, all within TIMEOUT.
step=0 deadline=$((SECONDS + TIMEOUT)) done_count=0
while ((SECONDS < deadline)); do
	done_count=$(manifests)
	pct=$((100 * done_count / EVENTS))
	case $step in
	0) if ((pct >= 10)); then
		leader=$(bash "$CLUSTER" ctl 1 list_queues -q name leader 2>/dev/null | awk -v q="$ARCHIVER_QUEUE" '$1 == q {print $2}')
		[[ $leader =~ ^rabbit-c([123])@localhost$ ]] || die "no leader found for $ARCHIVER_QUEUE (got '$leader')"
		n=${BASH_REMATCH[1]}
		pid=$(bash "$CLUSTER" pid rabbit "$n") || die "no pid for $leader"
		say "fault 1: SIGKILL of the queue's leader $leader (pid $pid) at $done_count/$EVENTS"
		kill -KILL "$pid"
		fault "broker-leader-kill $leader"
		# Restarted 5 s later, while the run goes on (the restart takes about 10 s).
		(
			sleep 5
			if bash "$CLUSTER" start-node rabbit "$n" >"$WORK/rabbit-restart.log" 2>&1; then
				fault "broker-node-back $leader"
			else
				echo failed >"$WORK/rabbit-restart.failed"
			fi
		) &
		restart_pid=$!
		step=1
	fi ;;
	1) if ((pct >= 35)); then
		pid=$(bash "$CLUSTER" pid garage 3) || die "no pid for garage 3"
		say "fault 2: SIGKILL of Garage node 3 (pid $pid) at $done_count/$EVENTS"
		kill -KILL "$pid"
		fault "garage-node-kill 3"
		step=2
	fi ;;
	2) if ((pct >= 55)); then
		say "fault 3: SIGKILL of worker 1 (pid ${worker_pids[1]}) at $done_count/$EVENTS; starting worker 4"
		kill -KILL "${worker_pids[1]}"
		wait "${worker_pids[1]}" 2>/dev/null || true
		unset 'worker_pids[1]'
		fault "worker-kill 1"
		start_worker 4
		step=3
	fi ;;
	3) if ((pct >= 75)); then
		say "restarting Garage node 3 at $done_count/$EVENTS"
		bash "$CLUSTER" start-node garage 3 >"$WORK/garage-restart.log" 2>&1 || die "garage 3 did not restart"
		fault "garage-node-back 3"
		step=4
	fi ;;
	esac
	if ((done_count >= EVENTS)); then
		break
	fi
	sleep 0.5
done
finished=$(now)
if [[ -n ${restart_pid:-} ]]; then
	wait "$restart_pid" || true
	[[ ! -e $WORK/rabbit-restart.failed ]] || die "the killed broker node did not restart (see $WORK/rabbit-restart.log)"
	say "the restarted node is back; queue leader now: $(bash "$CLUSTER" ctl 1 list_queues -q name leader 2>/dev/null | awk -v q="$ARCHIVER_QUEUE" '$1 == q {print $2}')"
fi
((step == 4)) || say "WARNING: the run ended before every fault was made (step $step)"
# The queue must also be empty (nothing in flight left to redeliver).
queue_depth() {
	bash "$CLUSTER" ctl 1 list_queues -q name messages 2>/dev/null |
		awk -v q="$ARCHIVER_QUEUE" -v d="$ARCHIVER_QUEUE.dlq" '$1 == q {m = $2} $1 == d {l = $2} END {print m + 0, l + 0}'
}
for _ in $(seq 60); do
	read -r in_queue in_dlq < <(queue_depth)
	((in_queue == 0)) && break
	sleep 1
done
say "stopping the workers (SIGTERM)"
for pid in "${worker_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
worker_exit=0
for pid in "${worker_pids[@]}"; do wait "$pid" || worker_exit=$?; done
worker_pids=()
read -r in_queue in_dlq < <(queue_depth)

# ---------------------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------------------
say "checking: manifests, SHA-256 against the sources, bytes of $SAMPLE sessions, queues"
"$archiver" list --tenant bench >"$WORK/list.jsonl" 2>"$WORK/list.err" || true
sse=(--s3-sse-customer-algorithm AES256 --s3-sse-customer-key-base64 "$ARCHIVER_SSE_C_KEY" --transfers 8)
# Every manifest of the run, and every media of SAMPLE sessions, read back through the front.
get_failures=0 sample_failures=0 sampled=0
rclone_s3 copy "garage:$ARCHIVER_S3_BUCKET/chaos/$RUN/bench" "$WORK/manifests" --include '*/manifest.json' "${sse[@]}" \
	>"$WORK/rclone.log" 2>&1 || get_failures=1
# awk, not head: head would close the pipe early and pipefail end the script.
find "$WORK/manifests" -name manifest.json | sort | awk -v n="$SAMPLE" 'NR <= n' | while read -r manifest; do
	session=$(basename "$(dirname "$manifest")")
	printf '%s/%s\n' "$session" source.jpg "$session" target.jpg "$session" video.mp4
done >"$WORK/sample.list"
sampled=$(($(wc -l <"$WORK/sample.list") / 3))
rclone_s3 copy "garage:$ARCHIVER_S3_BUCKET/chaos/$RUN/bench" "$WORK/sample" --files-from "$WORK/sample.list" "${sse[@]}" \
	>>"$WORK/rclone.log" 2>&1 || sample_failures=$((sample_failures + 1))
while read -r object; do
	cmp -s "$MEDIA/$(basename "$object")" "$WORK/sample/$object" || sample_failures=$((sample_failures + 1))
done <"$WORK/sample.list"
rm -rf "$WORK/sample"

status=0
python3 - "$WORK" "$EVENTS" "$ACCESS_LOG" "/$ARCHIVER_S3_BUCKET/chaos/$RUN/" "$started" "$finished" \
	"$in_queue" "$in_dlq" "$get_failures" "$sampled" "$sample_failures" "$worker_exit" "$step" "$MEDIA" <<'EOF' || status=$?
import hashlib, json, os, sys
(work, events, log, prefix, started, finished, in_queue, in_dlq, get_failures, sampled,
 sample_failures, worker_exit, step, media) = sys.argv[1:15]
events, started, finished = int(events), float(started), float(finished)
sha = {name: hashlib.sha256(open(os.path.join(media, f), "rb").read()).hexdigest()
       for name, f in (("source_image", "source.jpg"), ("target_image", "target.jpg"), ("video", "video.mp4"))}
listed = [json.loads(l) for l in open(os.path.join(work, "list.jsonl"))]
problems = []
if len(listed) != events:
    problems.append(f"{len(listed)} sessions with a manifest, expected {events}")
unfinished = [s["session_id"] for s in listed if not s.get("finished")]
if unfinished:
    problems.append(f"{len(unfinished)} sessions not finished, e.g. {unfinished[:3]}")
bad_sha = 0
mdir = os.path.join(work, "manifests")
found = [os.path.join(d, "manifest.json") for d, _, files in os.walk(mdir) if "manifest.json" in files]
for f in found:
    m = json.load(open(f))
    for name, digest in sha.items():
        entry = m.get("media", {}).get(name, {})
        if entry.get("status") != "stored" or entry.get("sha256") != digest:
            bad_sha += 1
if len(found) != events:
    problems.append(f"{len(found)} manifests read back, expected {events}")
if bad_sha:
    problems.append(f"{bad_sha} media entries not stored with the source's SHA-256")
if int(get_failures):
    problems.append("the manifests could not all be read back (rclone.log)")
if int(sample_failures):
    problems.append(f"{sample_failures} sampled objects differ from their sources")
if int(in_queue) or int(in_dlq):
    problems.append(f"{in_queue} messages left in the queue, {in_dlq} in the dead-letter queue")
if int(worker_exit):
    problems.append(f"a worker exited {worker_exit} after SIGTERM")
if int(step) != 4:
    problems.append("not every fault was made (the backlog drained first: raise EVENTS)")
# Manifest writes (2xx PUT at the front) of this run, by time.
writes = []
for line in open(log):
    p = line.split()
    if len(p) >= 4 and p[1] == "PUT" and p[2].startswith(prefix) and p[2].endswith("/manifest.json") and p[3].startswith("2"):
        writes.append((float(p[0]), p[2]))
writes.sort()
per_session = {}
for _, uri in writes:
    per_session[uri] = per_session.get(uri, 0) + 1
rewritten = sum(1 for c in per_session.values() if c > 1)
times = [t for t, _ in writes]
faults = []
made = sorted((float(at), what.strip()) for at, what in (l.split(" ", 1) for l in open(os.path.join(work, "faults"))))
for i, (at, what) in enumerate(made):
    # The pause is looked for up to the next fault (at most 30 s), so that one pause is
    # charged to the fault it followed, not to every fault whose window holds it.
    end = min(at + 30, made[i + 1][0] if i + 1 < len(made) else at + 30)
    after = [t for t in times if t > at]
    window = [at] + [t for t in after if t <= end]
    longest = max((b - a for a, b in zip(window, window[1:])), default=None)
    faults.append({"fault": what, "secs_to_next_manifest": round(after[0] - at, 2) if after else None,
                   "longest_pause_before_next_fault": round(longest, 2) if longest is not None else None,
                   "window_secs": round(end - at, 1)})
last = times[-1] if times else finished
wall = last - started
gaps = sorted(b - a for a, b in zip(times, times[1:]))
# What the workers saw (their logs): broker connections lost, and events whose delivery was
# lost while handled or whose ack could not be sent (the broker redelivers both).
reconnects = lost = 0
for f in os.listdir(work):
    if f.startswith("worker") and f.endswith(".log"):
        for line in open(os.path.join(work, f), errors="replace"):
            reconnects += "lost the broker; reconnecting" in line
            lost += "the delivery was lost while it was handled" in line or "could not acknowledge" in line
summary = {
    "events": events, "workers": 3, "sessions_listed": len(listed), "wall_secs": round(wall, 1),
    "events_per_sec": round(events / wall, 2) if wall > 0 else None,
    "events_per_sec_per_worker": round(events / wall / 3, 2) if wall > 0 else None,
    "median_gap_between_manifests": round(gaps[len(gaps) // 2], 3) if gaps else None,
    "manifest_writes": len(writes), "sessions_with_manifest_rewritten": rewritten,
    "broker_reconnects": reconnects, "deliveries_lost_and_redelivered": lost,
    "sampled_sessions": int(sampled), "queue_left": int(in_queue), "dlq": int(in_dlq),
    "faults": faults, "passed": not problems, "problems": problems,
}
if rewritten:
    # One manifest object per session still holds (the key is fixed), but an event was
    # handled twice: a worker whose delivery was lost went on writing while another one
    # handled the redelivery. Reported, not failed: the objects are the same bytes.
    summary["warning"] = (f"{rewritten} sessions had their manifest written more than once "
                          "(an event handled by two workers after a lost delivery)")
json.dump(summary, open(os.path.join(work, "summary.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
sys.exit(0 if not problems else 1)
EOF
# The run's objects (1.7 GB, three replicas on this one disk) go unless CHAOS_KEEP=1.
if [[ ${CHAOS_KEEP:-0} != 1 ]]; then
	rclone_s3 purge "garage:$ARCHIVER_S3_BUCKET/chaos/$RUN" --transfers 16 >>"$WORK/rclone.log" 2>&1 ||
		say "WARNING: could not delete the run's objects under chaos/$RUN/ (see $WORK/rclone.log)"
fi
if ((status == 0)); then say "PASSED (summary: $WORK/summary.json)"; else say "FAILED (summary: $WORK/summary.json)"; fi
exit "$status"

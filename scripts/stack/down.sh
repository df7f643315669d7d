#!/usr/bin/env bash
# Stop what scripts/stack/up.sh started: nginx and Garage through their pid files, and
# RabbitMQ (scripts/stack/rabbitmq.sh stop) only if up.sh started it (a broker it reused
# is left alone). Keeps the state directory (data, credentials, CA, the Debian 13 root),
# so the next up.sh finds the same stack. Idempotent.
set -euo pipefail

# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -d $STACK_DIR ]]; then
	say "nothing to stop: $STACK_DIR does not exist"
	exit 0
fi
STACK_DIR=$(cd "$STACK_DIR" && pwd)

# stop_pid NAME PIDFILE: SIGTERM, wait (bounded), then SIGKILL.
stop_pid() {
	local name=$1 pidfile=$2
	if ! pid_alive "$pidfile"; then
		say "$name: not running"
		rm -f "$pidfile"
		return 0
	fi
	local pid
	pid=$(cat "$pidfile")
	say "$name: stopping (pid $pid)"
	kill "$pid" 2>/dev/null || true
	if ! wait_for 30 "$name: stopped" bash -c "! kill -0 $pid 2>/dev/null"; then
		warn "$name did not stop within 30 s; killing it"
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

stop_pid nginx "$STACK_DIR/nginx/nginx.pid"
stop_pid garage "$STACK_DIR/garage.pid"

# The broker only if up.sh started it; in the Debian 13 root, also that root's epmd and
# its proc mount.
bash "$STACK_REPO_ROOT/scripts/stack/rabbitmq.sh" stop
say "stopped (state kept in $STACK_DIR; remove it to start from scratch)"

# shellcheck shell=bash disable=SC2034 # (the settings here are used by the scripts that source it)
# Shared helpers for scripts/stack/*.sh: paths, ports, logging, bounded waits, apt.
# Sourced, not executed.

# The repository root, whatever the caller's working directory.
STACK_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Where everything the stack writes lives (configuration, data, logs, secrets).
# A relative ARCHIVER_STACK_DIR is taken from the repository root, as the tests do.
STACK_DIR=${ARCHIVER_STACK_DIR:-.stack}
[[ $STACK_DIR == /* ]] || STACK_DIR=$STACK_REPO_ROOT/$STACK_DIR

# Fixed loopback ports: the S3 API of Garage, its RPC and admin ports, the TLS front.
GARAGE_S3_PORT=3900
GARAGE_RPC_PORT=3901
GARAGE_ADMIN_PORT=3903
TLS_PORT=3443
AMQP_PORT=5672
# The node name we give a broker we start ourselves: "localhost" always resolves to
# loopback, unlike the machine's hostname on some CI hosts.
OUR_RABBITMQ_NODENAME=rabbit@localhost
# Its Erlang distribution port (RabbitMQ's default, AMQP + 20000, made explicit).
OUR_RABBITMQ_DIST_PORT=25672
# The epmd port of the Debian 13 root's nodes: not the usual 4369, so that they never
# meet an epmd (and Erlang nodes) of the host's own. The cluster (scripts/stack/cluster.sh)
# runs its own root with its own epmd, on ARCHIVER_STACK_EPMD_PORT.
ROOT_EPMD_PORT=${ARCHIVER_STACK_EPMD_PORT:-4371}
# The minimal Debian 13 root RabbitMQ 4 runs in on hosts that are not Debian 13
# (scripts/stack/rabbitmq.sh makes it).
RABBITMQ_ROOT=$STACK_DIR/rabbitmq-root

say() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() {
	printf '[stack] ERROR: %s\n' "$*" >&2
	printf '[stack] logs: %s/logs/ (RabbitMQ: %s/var/log/rabbitmq/, or /var/log/rabbitmq/ on the host)\n' \
		"$STACK_DIR" "$RABBITMQ_ROOT" >&2
	exit 1
}

# wait_for SECONDS WHAT COMMAND...: run COMMAND every half second until it succeeds
# (then say "WHAT (after Ns)") or SECONDS have passed (then fail). Every wait in these
# scripts is bounded.
wait_for() {
	local limit=$1 what=$2
	shift 2
	local start=$SECONDS
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - start >= limit)); then
			return 1
		fi
		sleep 0.5
	done
	say "$what (after $((SECONDS - start)) s)"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# pid_alive FILE: FILE names a running process.
pid_alive() {
	[[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# apt_install PACKAGE...: install Debian packages (as root) without letting their install
# scripts start system services (nginx on port 80 of every interface, a second broker):
# the stack starts what it needs itself. apt-get update runs first, once per call.
apt_install() {
	[[ $(id -u) == 0 ]] || die "missing packages ($*); run this script as root, or: sudo apt-get install $*"
	say "installing: $*"
	local made_policy=false status=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=true
	fi
	mkdir -p "$STACK_DIR/logs"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$STACK_DIR/logs/apt.log" 2>&1 &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
			>>"$STACK_DIR/logs/apt.log" 2>&1 || status=$?
	if $made_policy; then rm -f /usr/sbin/policy-rc.d; fi
	((status == 0)) || die "apt-get install $* failed (see $STACK_DIR/logs/apt.log)"
}

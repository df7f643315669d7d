# Shared helpers for scripts/stack/*.sh: paths, logging and bounded waits.
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

say() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() {
	printf '[stack] ERROR: %s\n' "$*" >&2
	printf '[stack] logs: %s/logs/ (and /var/log/rabbitmq/ for RabbitMQ)\n' "$STACK_DIR" >&2
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

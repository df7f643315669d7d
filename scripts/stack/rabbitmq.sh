#!/usr/bin/env bash
# RabbitMQ for the local stack, and the one way to control it: scripts/stack/up.sh and
# down.sh call this, and so do tests that need a broker of their own to restart.
#
#   scripts/stack/rabbitmq.sh start          start the stack's broker unless it runs
#   scripts/stack/rabbitmq.sh stop           stop it (only if this stack started it)
#   scripts/stack/rabbitmq.sh ctl ARGS...    rabbitmqctl ARGS against it
#   scripts/stack/rabbitmq.sh install        only make sure the broker's software is there
#   scripts/stack/rabbitmq.sh version        the version of the broker answering on its port
#   scripts/stack/rabbitmq.sh release        after stop: end whatever still runs in the Debian 13
#                                            root (SIGTERM, then SIGKILL) and unmount its proc,
#                                            so that the folder is a plain tree again (CI)
#
#   scripts/stack/rabbitmq.sh --node NAME --port PORT --dist-port PORT start|stop|ctl ...
#       the same for a scratch node (a test's own broker): it runs the same software as
#       the stack's broker, keeps its data in /var/lib/rabbitmq/archiver-scratch/NAME (in
#       the root, see below) and `stop` removes that data.
#
# Which RabbitMQ runs is chosen by ARCHIVER_STACK_RABBITMQ:
#   debian13 (default)  Debian 13's rabbitmq-server (RabbitMQ 4.0). On a Debian 13 host
#                       the host's own package; elsewhere a minimal Debian 13 root,
#                       $STACK_DIR/rabbitmq-root, made once with `debootstrap --variant=minbase`
#                       from the host's own Debian mirror (its apt sources), run with chroot.
#   host                the host's package as it is (RabbitMQ 3.10 on Debian 12): a second
#                       broker for a smoke run, as the stack used before.
# `start` of the stack's broker records the choice in $STACK_DIR/rabbitmq.mode, and the
# other commands (ctl, stop, scratch nodes) follow that record.
#
# Everything listens on 127.0.0.1 only: AMQP, Erlang distribution, epmd (in the root on
# port 4371, apart from any epmd of the host) and rabbitmqctl's own distribution port.
# `start` writes $STACK_DIR/bin/rabbitmqctl, a rabbitmqctl bound to the stack's node;
# up.sh puts it on PATH and in ARCHIVER_RABBITMQCTL.
set -euo pipefail

# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

NODE=$OUR_RABBITMQ_NODENAME
PORT=$AMQP_PORT
DIST_PORT=$OUR_RABBITMQ_DIST_PORT
scratch=false
while (($#)); do
	case $1 in
	--node) NODE=${2:?--node needs a name} scratch=true && shift 2 ;;
	--port) PORT=${2:?--port needs a port} && shift 2 ;;
	--dist-port) DIST_PORT=${2:?--dist-port needs a port} && shift 2 ;;
	-h | --help) usage ;;
	*) break ;;
	esac
done
(($#)) || usage
command=$1
shift
[[ $NODE =~ ^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$ ]] || die "not a node name: $NODE"
[[ $PORT =~ ^[0-9]+$ && $DIST_PORT =~ ^[0-9]+$ ]] || die "ports must be numbers"
if $scratch && [[ $NODE == "$OUR_RABBITMQ_NODENAME" || $PORT == "$AMQP_PORT" ]]; then
	die "a scratch node needs its own name and port (not $OUR_RABBITMQ_NODENAME, $AMQP_PORT)"
fi

mkdir -p "$STACK_DIR/logs"
STACK_DIR=$(cd "$STACK_DIR" && pwd)
RABBITMQ_ROOT=$STACK_DIR/rabbitmq-root
MODE_FILE=$STACK_DIR/rabbitmq.mode
RABBIT_MARK=$STACK_DIR/rabbitmq.started-by-stack
WRAPPER=$STACK_DIR/bin/rabbitmqctl

# The mode the stack's broker was last started in. A mark without a mode file was left by
# an up.sh from before the modes, which ran the host's package.
recorded_mode() {
	if [[ -s $MODE_FILE ]]; then
		cat "$MODE_FILE"
	elif [[ -e $RABBIT_MARK ]]; then
		echo host
	else
		echo debian13
	fi
}
if $scratch || [[ $command != start ]]; then
	MODE=${ARCHIVER_STACK_RABBITMQ:-$(recorded_mode)}
else
	MODE=${ARCHIVER_STACK_RABBITMQ:-debian13}
fi
case $MODE in
debian13 | host) ;;
*) die "ARCHIVER_STACK_RABBITMQ must be debian13 (the default) or host, not '$MODE'" ;;
esac

host_is_debian13() {
	(
		# shellcheck disable=SC1091
		. /etc/os-release 2>/dev/null && [[ ${ID:-} == debian && ${VERSION_CODENAME:-} == trixie ]]
	)
}

# uses_root MODE: whether MODE runs RabbitMQ in the Debian 13 root (rather than the host's package).
uses_root() {
	[[ $1 == debian13 ]] && ! host_is_debian13
}

# broker_command MODE PROGRAM ARGS...: sets BROKER_CMD to run PROGRAM (rabbitmq-server,
# rabbitmqctl) for this script's node with every setting that keeps it on loopback.
broker_command() {
	local mode=$1
	shift
	local -a vars=(
		RABBITMQ_NODENAME="$NODE"
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
		RABBITMQ_NODE_PORT="$PORT"
		RABBITMQ_DIST_PORT="$DIST_PORT"
		ERL_EPMD_ADDRESS=127.0.0.1
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
		# rabbitmqctl is an Erlang node too, with a distribution port of its own.
		"RABBITMQ_CTL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
	)
	[[ $mode == debian13 ]] && vars+=(ERL_EPMD_PORT="$ROOT_EPMD_PORT")
	if $scratch; then
		local dir=/var/lib/rabbitmq/archiver-scratch/$NODE
		vars+=(
			RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log"
			RABBITMQ_PID_FILE="$dir/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
			RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
		)
	fi
	if uses_root "$mode"; then
		# env -i: nothing of the caller's environment (a RABBITMQ_NODENAME, a proxy) leaks
		# in; HOME is where the Erlang cookie of the root's rabbitmq user lives.
		BROKER_CMD=(chroot "$RABBITMQ_ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin
			HOME=/var/lib/rabbitmq LANG=C.UTF-8 "${vars[@]}" "$@")
	else
		# By its full path: $STACK_DIR/bin/rabbitmqctl (this stack's wrapper) may come
		# first on the caller's PATH.
		local program
		program=$(system_program "$1") || die "$1 is not installed"
		shift
		BROKER_CMD=(env "${vars[@]}" "$program" "$@")
	fi
}

# system_program NAME: NAME as the host's packages install it (never our wrapper).
system_program() {
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$1"
}

# ctl_in MODE ARGS...: rabbitmqctl ARGS against this script's node.
ctl_in() {
	local mode=$1
	shift
	broker_command "$mode" rabbitmqctl -n "$NODE" "$@"
	"${BROKER_CMD[@]}"
}

# ctl_within SECONDS MODE ARGS...: the same, killed after SECONDS (for the scripts' own
# calls: every wait here is bounded).
ctl_within() {
	local seconds=$1 mode=$2
	shift 2
	broker_command "$mode" rabbitmqctl -n "$NODE" "$@"
	timeout "$seconds" "${BROKER_CMD[@]}"
}

# The directory of a scratch node as seen from the host.
scratch_dir() {
	local prefix=""
	uses_root "$MODE" && prefix=$RABBITMQ_ROOT
	echo "$prefix/var/lib/rabbitmq/archiver-scratch/$NODE"
}

# amqp_version: the version the broker on 127.0.0.1:$PORT announces in its AMQP greeting
# (connection.start's server properties: ... "version" 'S' length "4.0.5" ...); empty when
# nothing answers AMQP there. Works for any broker, whoever started it.
amqp_version() {
	# shellcheck disable=SC2016 # $1 is the inner shell's
	timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "AMQP\0\0\11\1" >&3
		dd bs=65536 count=1 status=none <&3
	' _ "$PORT" 2>/dev/null | LC_ALL=C tr -cs '[:print:]' '\n' | sed -n '/^versionS$/{n;p;q;}'
}

# ---------------------------------------------------------------------------------------
# Installing: the host's package, or the Debian 13 root.
# ---------------------------------------------------------------------------------------

# debian_mirror: the Debian mirror the host's apt uses (deb822 debian.sources, else the
# one-line sources.list), so that the root comes from wherever this host may fetch.
debian_mirror() {
	local uri=""
	if [[ -n ${ARCHIVER_STACK_DEBIAN_MIRROR:-} ]]; then
		uri=$ARCHIVER_STACK_DEBIAN_MIRROR
	fi
	if [[ -z $uri && -r /etc/apt/sources.list.d/debian.sources ]]; then
		uri=$(awk 'tolower($1) == "uris:" {
			for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit }
		}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [[ -z $uri && -r /etc/apt/sources.list ]]; then
		# deb [option=value ...] URI SUITE COMPONENTS
		uri=$(awk '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
			if ($i !~ /security/) { print $i; exit }
		}' /etc/apt/sources.list)
	fi
	[[ -n $uri ]] || return 1
	echo "${uri%/}"
}

# unmount_under DIR: unmount everything mounted at or below DIR, deepest first.
unmount_under() {
	local dir mount
	dir=$(cd "$1" 2>/dev/null && pwd -P) || return 0
	awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
		while read -r mount; do
			umount "$mount" 2>/dev/null || umount -l "$mount"
		done
}

# remove_tree DIR: a root that may still have mounts (an interrupted debootstrap mounts
# proc and sys in it): unmount first, and never cross into another file system.
remove_tree() {
	[[ -e $1 ]] || return 0
	unmount_under "$1"
	rm -rf --one-file-system "$1"
}

make_root() {
	if [[ -x $RABBITMQ_ROOT/usr/sbin/rabbitmq-server ]]; then
		return 0
	fi
	[[ $(id -u) == 0 ]] || die "making the Debian 13 root for RabbitMQ 4 needs root (debootstrap, chroot)"
	command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
	local mirror
	mirror=$(debian_mirror) ||
		die "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; set ARCHIVER_STACK_DEBIAN_MIRROR"
	# Built under a temporary name and renamed when complete: an interrupted run leaves
	# only the temporary directory, which the next run removes and redoes.
	local building=$RABBITMQ_ROOT.tmp
	if [[ -e $building ]]; then
		say "rabbitmq: removing an unfinished Debian 13 root"
		remove_tree "$building"
	fi
	remove_tree "$RABBITMQ_ROOT"
	say "rabbitmq: making a minimal Debian 13 root with rabbitmq-server from $mirror (about a minute)"
	say "rabbitmq: debootstrap log: $STACK_DIR/logs/debootstrap.log"
	if ! debootstrap --variant=minbase --include=rabbitmq-server trixie "$building" "$mirror" \
		>"$STACK_DIR/logs/debootstrap.log" 2>&1; then
		unmount_under "$building"
		die "debootstrap of Debian 13 failed (see $STACK_DIR/logs/debootstrap.log)"
	fi
	unmount_under "$building"
	[[ -x $building/usr/sbin/rabbitmq-server ]] ||
		die "debootstrap finished without rabbitmq-server in $building (see $STACK_DIR/logs/debootstrap.log)"
	mv "$building" "$RABBITMQ_ROOT"
}

# prepare_root: what the root needs before anything runs in it, on every start (cheap).
prepare_root() {
	make_root
	mountpoint -q "$RABBITMQ_ROOT/proc" || mount -t proc proc "$RABBITMQ_ROOT/proc" ||
		die "could not mount proc in $RABBITMQ_ROOT"
	# "localhost" in the node name must resolve as it does on the host.
	cp /etc/hosts "$RABBITMQ_ROOT/etc/hosts"
	if ! $scratch; then
		write_config "$RABBITMQ_ROOT/etc/rabbitmq/rabbitmq.conf"
	fi
}

# install MODE: the software for MODE is there (and, in the root, ready to run).
install() {
	if uses_root "$1"; then
		prepare_root
	elif ! command -v rabbitmq-server >/dev/null 2>&1; then
		[[ $(id -u) == 0 ]] || die "rabbitmq-server is not installed; run as root, or: sudo apt-get install rabbitmq-server"
		apt_install rabbitmq-server
	fi
}

# write_config FILE: the broker's configuration; defaults except for these lines.
write_config() {
	cat >"$1.tmp" <<EOF
# Written by scripts/stack/rabbitmq.sh: the local stack's broker, on loopback only.
listeners.tcp.default = 127.0.0.1:$PORT
# A worker holds up to its prefetch count of message bodies in memory at once, so the
# broker refuses anything far above the archiver's own event limit (1 MiB) instead of the
# default 16 MiB. 4 MiB, not 1 MiB: an event somewhat over the limit must still reach the
# worker, which dead-letters it with its own reason (the integration tests send 2 MiB).
max_message_size = 4194304
EOF
	chmod 644 "$1.tmp"
	mv "$1.tmp" "$1"
}

# ---------------------------------------------------------------------------------------
# Starting and stopping.
# ---------------------------------------------------------------------------------------

# launch MODE LOG: rabbitmq-server -detached for this script's node, then wait (bounded)
# until it takes AMQP connections.
launch() {
	local mode=$1 log=$2
	broker_command "$mode" rabbitmq-server -detached
	"${BROKER_CMD[@]}" >"$log" 2>&1 </dev/null ||
		die "rabbitmq-server -detached ($NODE) failed (see $log)"
	# await_startup fails at once while the node is not yet registered with epmd, so it
	# is retried until the deadline.
	wait_for 120 "rabbitmq: $NODE started" ctl_within 20 "$mode" await_startup --timeout 15 ||
		die "rabbitmq node $NODE did not start within 120 s (see $log and the node's log directory)"
	wait_for 60 "rabbitmq: answering on 127.0.0.1:$PORT" port_open "$PORT" ||
		die "rabbitmq node $NODE started but does not answer on 127.0.0.1:$PORT"
}

# halt MODE: stop this script's node and wait (bounded) until its process has exited:
# the port closes a few seconds before that, and the root must not be in use afterwards.
halt() {
	local mode=$1 pid
	pid=$(ctl_within 30 "$mode" eval 'list_to_integer(os:getpid()).' 2>/dev/null) || pid=""
	ctl_within 90 "$mode" stop >/dev/null 2>&1 || warn "rabbitmqctl stop ($NODE) failed"
	if [[ $pid =~ ^[0-9]+$ ]]; then
		wait_for 60 "rabbitmq: $NODE stopped" bash -c "! kill -0 $pid 2>/dev/null" ||
			die "rabbitmq node $NODE (pid $pid) is still running 60 s after rabbitmqctl stop"
	else
		wait_for 60 "rabbitmq: $NODE stopped" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null" ||
			die "rabbitmq node $NODE still answers on 127.0.0.1:$PORT after rabbitmqctl stop"
	fi
}

# roots_processes: the pids of the processes whose root is the Debian 13 root.
roots_processes() {
	local root pid
	root=$(cd "$RABBITMQ_ROOT" && pwd -P)
	for pid in /proc/[0-9]*; do
		[[ $(readlink "$pid/root" 2>/dev/null) == "$root" ]] && echo "${pid#/proc/}"
	done
	return 0
}

no_roots_processes() { [[ -z $(roots_processes) ]]; }

# release_root: once no node runs in the root, stop its epmd and unmount its proc.
release_root() {
	[[ -d $RABBITMQ_ROOT/proc ]] || return 0
	if mountpoint -q "$RABBITMQ_ROOT/proc"; then
		broker_command debian13 epmd -kill
		# epmd refuses to exit while nodes are registered with it.
		"${BROKER_CMD[@]}" >/dev/null 2>&1 || true
		local busy
		busy=$(roots_processes | tr '\n' ' ')
		if [[ -n $busy ]]; then
			say "rabbitmq: processes still run in $RABBITMQ_ROOT (pids ${busy% }); proc stays mounted there"
			return 0
		fi
		umount "$RABBITMQ_ROOT/proc" || warn "could not unmount $RABBITMQ_ROOT/proc"
	fi
}

# force_release: what release_root does, whatever still runs in the root: for a run that
# must leave no mount behind (a node caught half started or half stopped, a stuck epmd).
force_release() {
	[[ -d $RABBITMQ_ROOT ]] || return 0
	local signal pids
	for signal in TERM KILL; do
		mapfile -t pids < <(roots_processes)
		((${#pids[@]} > 0)) || break
		say "rabbitmq: ending ${#pids[@]} processes still running in $RABBITMQ_ROOT (SIG$signal)"
		kill -"$signal" "${pids[@]}" 2>/dev/null || true
		wait_for 15 "rabbitmq: the root's processes ended" no_roots_processes || true
	done
	unmount_under "$RABBITMQ_ROOT"
	if grep -q " $(cd "$RABBITMQ_ROOT" && pwd -P)[/ ]" /proc/self/mounts; then
		warn "something is still mounted under $RABBITMQ_ROOT"
		return 1
	fi
	return 0
}

write_wrapper() {
	mkdir -p "$STACK_DIR/bin"
	{
		echo '#!/usr/bin/env bash'
		echo "# Written by scripts/stack/rabbitmq.sh: rabbitmqctl for the local stack's broker."
		if [[ $# -gt 0 ]]; then
			echo "# $*"
			local program
			if program=$(system_program rabbitmqctl); then
				printf 'exec %q "$@"\n' "$program"
			else
				echo 'echo "rabbitmqctl is not installed on this host" >&2; exit 1'
			fi
		else
			echo "# Node $NODE, $(describe "$MODE")."
			broker_command "$MODE" rabbitmqctl -n "$NODE"
			# One word a line, so that a person can read what runs.
			printf 'exec'
			printf ' \\\n\t%q' "${BROKER_CMD[@]}"
			printf ' \\\n\t"$@"\n'
		fi
	} >"$WRAPPER.tmp"
	chmod 755 "$WRAPPER.tmp"
	mv "$WRAPPER.tmp" "$WRAPPER"
}

describe() {
	if uses_root "$1"; then
		echo "Debian 13's rabbitmq-server in $RABBITMQ_ROOT"
	elif [[ $1 == debian13 ]]; then
		echo "the host's (Debian 13) rabbitmq-server"
	else
		echo "the host's rabbitmq-server"
	fi
}

start_stack_broker() {
	local running_mode version
	running_mode=$(recorded_mode)
	if [[ $MODE == host ]] && ! port_open "$PORT" && pgrep -u rabbitmq beam >/dev/null 2>&1; then
		# A broker that is still booting (e.g. started by the package's install script)
		# gets a minute to open its port before we decide to start our own.
		say "rabbitmq: a broker process is running; waiting for it to answer"
		wait_for 60 "rabbitmq: answering on 127.0.0.1:$PORT" port_open "$PORT" || true
	fi
	if port_open "$PORT"; then
		version=$(amqp_version)
		if [[ -e $RABBIT_MARK ]]; then
			if [[ $running_mode == "$MODE" ]] && { [[ $MODE == host ]] || [[ ${version%%.*} -ge 4 ]]; }; then
				say "rabbitmq: running (RabbitMQ ${version:-?}, $(describe "$MODE"), started by this stack)"
				install "$MODE"
				write_wrapper
				return 0
			fi
			say "rabbitmq: stopping the RabbitMQ ${version:-?} broker this stack started ($(describe "$running_mode")), to run $(describe "$MODE")"
			halt "$running_mode"
			rm -f "$RABBIT_MARK"
			uses_root "$running_mode" && release_root
		elif [[ -z $version ]]; then
			die "127.0.0.1:$PORT is taken by a program that does not answer AMQP; stop it and rerun"
		elif [[ $MODE == debian13 && ${version%%.*} -lt 4 ]]; then
			die "127.0.0.1:$PORT is taken by a RabbitMQ $version broker this stack did not start, and the stack needs RabbitMQ 4: stop that broker (e.g. systemctl stop rabbitmq-server) and rerun, or run the stack on it with ARCHIVER_STACK_RABBITMQ=host"
		else
			say "rabbitmq: reusing the RabbitMQ $version broker already answering on 127.0.0.1:$PORT (not started by this stack)"
			rm -f "$MODE_FILE"
			write_wrapper "a broker this stack did not start: the host's rabbitmqctl, with its own defaults"
			return 0
		fi
	fi
	rm -f "$RABBIT_MARK"
	install "$MODE"
	say "rabbitmq: starting $NODE ($(describe "$MODE"))"
	launch "$MODE" "$STACK_DIR/logs/rabbitmq-start.log"
	echo "$NODE" >"$RABBIT_MARK"
	echo "$MODE" >"$MODE_FILE"
	write_wrapper
	say "rabbitmq: RabbitMQ $(amqp_version) on amqp://127.0.0.1:$PORT; rabbitmqctl: $WRAPPER"
}

stop_stack_broker() {
	if [[ ! -e $RABBIT_MARK ]]; then
		say "rabbitmq: not started by this stack (or already stopped); left alone"
	else
		if port_open "$PORT"; then
			say "rabbitmq: stopping $NODE"
			halt "$MODE"
		else
			say "rabbitmq: not running"
		fi
		rm -f "$RABBIT_MARK"
	fi
	uses_root "$MODE" && release_root
	return 0
}

start_scratch_node() {
	if ctl_within 30 "$MODE" status >/dev/null 2>&1; then
		say "rabbitmq: $NODE is running"
		return 0
	fi
	install "$MODE"
	local dir
	dir=$(scratch_dir)
	mkdir -p "$dir"
	write_config "$dir/rabbitmq.conf"
	echo "[]." >"$dir/enabled_plugins"
	if uses_root "$MODE"; then
		chroot "$RABBITMQ_ROOT" chown -R rabbitmq:rabbitmq "/var/lib/rabbitmq/archiver-scratch/$NODE"
	else
		chown -R rabbitmq:rabbitmq "$dir"
	fi
	say "rabbitmq: starting scratch node $NODE on 127.0.0.1:$PORT ($(describe "$MODE"))"
	launch "$MODE" "$dir/start.log"
}

stop_scratch_node() {
	if ctl_within 30 "$MODE" status >/dev/null 2>&1; then
		halt "$MODE"
	fi
	remove_tree "$(scratch_dir)"
}

case $command in
start) if $scratch; then start_scratch_node; else start_stack_broker; fi ;;
stop) if $scratch; then stop_scratch_node; else stop_stack_broker; fi ;;
ctl) ctl_in "$MODE" "$@" ;;
install) install "$MODE" ;;
version) amqp_version ;;
release) force_release ;;
*) usage ;;
esac

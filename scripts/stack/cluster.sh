#!/usr/bin/env bash
# The cluster mode of the local stack (issue 16): three RabbitMQ 4 nodes clustered on
# loopback and a three-node Garage with replication factor 3 behind an nginx TLS front.
# A sibling of up.sh/down.sh that never touches the single-node stack: its own state
# directory, its own ports, its own Debian 13 root and epmd.
#
#   scripts/stack/cluster.sh up              start (or re-verify) the cluster; idempotent
#   scripts/stack/cluster.sh down            stop everything it started (RabbitMQ node data
#                                            is removed, Garage data and secrets are kept)
#   scripts/stack/cluster.sh status          what runs, the broker's cluster status, Garage's
#   scripts/stack/cluster.sh ctl N ARGS...   rabbitmqctl ARGS against broker node N (1-3)
#   scripts/stack/cluster.sh pid rabbit|garage N
#                                            the process id of broker or Garage node N
#   scripts/stack/cluster.sh start-node rabbit|garage N
#                                            start one node again (after a kill); the
#                                            others must be up
#
# State: $ARCHIVER_CLUSTER_DIR (default .stack-cluster in the repository root); settings
# for `source`: $ARCHIVER_CLUSTER_DIR/env, with ARCHIVER_AMQP_URL listing the three nodes.
# The TLS front reuses the single-node stack's CA and certificate (.stack/tls, read only;
# run scripts/stack/up.sh once first, or point ARCHIVER_CLUSTER_TLS_DIR at a directory
# holding ca.pem, server.pem and server.key for localhost).
#
# Ports (all on 127.0.0.1):
#   RabbitMQ  node N = rabbit-cN@localhost: AMQP 570N, distribution 2570N, epmd 4381
#   Garage    node N: S3 39N0, RPC 39N1, admin 39N3 (N = 1..3)
#   nginx     TLS front https://localhost:3643, upstream the three S3 ports
#
# Quorum queue replication: nothing is set, on purpose. RabbitMQ places a new quorum queue
# on min(quorum_cluster_size, cluster size) nodes, and quorum_cluster_size is 3 by
# default: on this three-node cluster every quorum queue the worker declares (the queue
# and its dead-letter queue) has a replica on each node, which `status` shows. Not an
# `x-quorum-initial-group-size` argument, because a queue's arguments are fixed when it
# is declared (changing them later fails with PRECONDITION_FAILED on every existing
# queue) and the worker's declaration must stay the same for one node and for a cluster;
# not a policy either, because only one policy applies to a queue and operators already
# put `archiver-dlq` on the dead-letter queue (docs/operations.md). A cluster of more
# than three nodes keeps three replicas unless quorum_cluster_size is raised.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ARCHIVER_STACK_DIR=${ARCHIVER_CLUSTER_DIR:-$REPO/.stack-cluster}
[[ $ARCHIVER_STACK_DIR == /* ]] || ARCHIVER_STACK_DIR=$REPO/$ARCHIVER_STACK_DIR
# The cluster's Debian 13 root has its own epmd, apart from the single-node stack's (4371).
export ARCHIVER_STACK_EPMD_PORT=4381
# rabbitmq.sh follows the mode recorded in the state directory; the cluster is debian13.
export ARCHIVER_STACK_RABBITMQ=debian13

# shellcheck source=scripts/stack/lib.sh
source "$REPO/scripts/stack/lib.sh"
say() { printf '[cluster] %s\n' "$*"; }
die() {
	printf '[cluster] ERROR: %s\n' "$*" >&2
	printf '[cluster] logs: %s/logs/\n' "$STACK_DIR" >&2
	exit 1
}

NODES=(1 2 3)
TLS_FRONT_PORT=3643
SINGLE_STACK_TLS=${ARCHIVER_CLUSTER_TLS_DIR:-$REPO/.stack/tls}
rabbit_node() { echo "rabbit-c$1@localhost"; }
amqp_port() { echo $((5700 + $1)); }
dist_port() { echo $((25700 + $1)); }
garage_s3_port() { echo $((3900 + 10 * $1)); }
garage_rpc_port() { echo $((3901 + 10 * $1)); }
garage_admin_port() { echo $((3903 + 10 * $1)); }

export PATH=$HOME/.cargo/bin:$PATH

# rmq N ARGS...: scripts/stack/rabbitmq.sh for broker node N.
rmq() {
	local n=$1
	shift
	bash "$REPO/scripts/stack/rabbitmq.sh" --node "$(rabbit_node "$n")" --port "$(amqp_port "$n")" \
		--dist-port "$(dist_port "$n")" "$@"
}
# ctl N ARGS...: rabbitmqctl against node N, bounded.
ctl() {
	local n=$1
	shift
	timeout 90 bash "$REPO/scripts/stack/rabbitmq.sh" --node "$(rabbit_node "$n")" --port "$(amqp_port "$n")" \
		--dist-port "$(dist_port "$n")" ctl "$@"
}
rabbit_pid() {
	local file
	file=$STACK_DIR/rabbitmq-root/var/lib/rabbitmq/archiver-scratch/$(rabbit_node "$1")/pid
	[[ -s $file ]] && kill -0 "$(cat "$file")" 2>/dev/null && cat "$file"
}

gdir() { echo "$STACK_DIR/garage$1"; }
gtoml() { echo "$(gdir "$1")/garage.toml"; }
gcli() {
	local n=$1
	shift
	timeout 60 garage -c "$(gtoml "$n")" "$@"
}
garage_healthy() {
	# /health answers 200 once the node sees the cluster as able to serve; any answer
	# says the process runs.
	curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
		"http://127.0.0.1:$(garage_admin_port "$1")/health" | grep -qv '^000$'
}
garage_pid() { pid_alive "$(gdir "$1")/garage.pid" && cat "$(gdir "$1")/garage.pid"; }

load_secrets() {
	SECRETS=$STACK_DIR/secrets
	if [[ ! -s $SECRETS ]]; then
		say "generating credentials and the SSE-C key"
		umask 077
		{
			echo "GARAGE_KEY_ID=GK$(openssl rand -hex 12)"
			echo "GARAGE_SECRET=$(openssl rand -hex 32)"
			echo "GARAGE_RPC_SECRET=$(openssl rand -hex 32)"
			echo "GARAGE_ADMIN_TOKEN=$(openssl rand -hex 32)"
			echo "BUCKET=archiver"
			echo "SSE_C_KEY=$(openssl rand -base64 32)"
		} >"$SECRETS.tmp"
		mv "$SECRETS.tmp" "$SECRETS"
		umask 022
	fi
	# shellcheck disable=SC1090
	source "$SECRETS"
}

write_garage_config() {
	local n=$1 dir
	dir=$(gdir "$n")
	mkdir -p "$dir/meta" "$dir/data"
	cat >"$(gtoml "$n").tmp" <<EOF
# Written by scripts/stack/cluster.sh: Garage node $n of 3, on loopback only.
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$(garage_rpc_port "$n")"
rpc_public_addr = "127.0.0.1:$(garage_rpc_port "$n")"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$(garage_s3_port "$n")"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$(garage_admin_port "$n")"
admin_token = "$GARAGE_ADMIN_TOKEN"
EOF
	chmod 600 "$(gtoml "$n").tmp"
	mv "$(gtoml "$n").tmp" "$(gtoml "$n")"
}

start_garage() {
	local n=$1 dir
	dir=$(gdir "$n")
	write_garage_config "$n"
	if garage_pid "$n" >/dev/null && garage_healthy "$n"; then
		say "garage $n: running (pid $(cat "$dir/garage.pid"))"
		return 0
	fi
	local port
	for port in $(garage_s3_port "$n") $(garage_rpc_port "$n") $(garage_admin_port "$n"); do
		port_open "$port" && die "port 127.0.0.1:$port is taken by another program"
	done
	say "garage $n: starting (log: $STACK_DIR/logs/garage$n.log)"
	# shellcheck disable=SC2016 # $$ and $1 are the inner shell's
	RUST_LOG=${GARAGE_LOG:-garage=warn} setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/garage.pid" \
		garage -c "$(gtoml "$n")" server >>"$STACK_DIR/logs/garage$n.log" 2>&1 </dev/null &
	wait_for 60 "garage $n: answering" garage_healthy "$n" ||
		die "garage $n did not answer within 60 s (see $STACK_DIR/logs/garage$n.log)"
}

setup_garage_cluster() {
	local n ids=() id
	for n in "${NODES[@]}"; do
		id=$(gcli "$n" node id -q 2>/dev/null | tail -1) || die "garage $n: no node id"
		ids+=("$id")
	done
	for n in 2 3; do
		gcli 1 node connect "${ids[n - 1]}" >/dev/null 2>&1 || die "garage 1 could not connect to node $n (${ids[n - 1]})"
	done
	if gcli 1 layout show 2>/dev/null | grep -q "Current cluster layout version: 0"; then
		say "garage: assigning the three nodes (zone dc1, 1 GB each) and applying layout version 1"
		for id in "${ids[@]}"; do
			gcli 1 layout assign -z dc1 -c 1G "${id%@*}" >/dev/null || die "garage layout assign ${id%@*} failed"
		done
		gcli 1 layout apply --version 1 >/dev/null || die "garage layout apply failed"
	fi
	healthy() { curl -sf --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:$(garage_admin_port 1)/health"; }
	wait_for 60 "garage: cluster healthy" healthy || die "the Garage cluster is not healthy after 60 s"
	if ! gcli 1 key info archiver-key >/dev/null 2>&1; then
		gcli 1 key import --yes -n archiver-key "$GARAGE_KEY_ID" "$GARAGE_SECRET" >/dev/null ||
			die "garage key import failed"
	fi
	if ! gcli 1 bucket info "$BUCKET" >/dev/null 2>&1; then
		gcli 1 bucket create "$BUCKET" >/dev/null || die "garage bucket create failed"
	fi
	gcli 1 bucket allow --read --write --owner "$BUCKET" --key archiver-key >/dev/null ||
		die "garage bucket allow failed"
}

nginx_up() {
	local NGINX=$STACK_DIR/nginx conf nginx_user="" changed
	conf=$NGINX/nginx.conf
	mkdir -p "$NGINX/tmp"
	[[ $(id -u) == 0 ]] && nginx_user="user root;"
	cat >"$conf.tmp" <<EOF
# Written by scripts/stack/cluster.sh: TLS in front of the three Garage nodes. A node that
# refuses connections is skipped for 5 s (passive health checks); a request that has not
# sent its body yet goes to the next node.
$nginx_user
worker_processes 1;
daemon on;
pid $NGINX/nginx.pid;
error_log $STACK_DIR/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
    log_format s3 '\$msec \$request_method \$uri \$status \$upstream_addr';
    access_log $STACK_DIR/logs/nginx-access.log s3;
    client_body_temp_path $NGINX/tmp/body;
    proxy_temp_path $NGINX/tmp/proxy;
    fastcgi_temp_path $NGINX/tmp/fastcgi;
    uwsgi_temp_path $NGINX/tmp/uwsgi;
    scgi_temp_path $NGINX/tmp/scgi;
    upstream garage {
        server 127.0.0.1:$(garage_s3_port 1) max_fails=1 fail_timeout=5s;
        server 127.0.0.1:$(garage_s3_port 2) max_fails=1 fail_timeout=5s;
        server 127.0.0.1:$(garage_s3_port 3) max_fails=1 fail_timeout=5s;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$TLS_FRONT_PORT ssl;
        server_name localhost;
        ssl_certificate $SINGLE_STACK_TLS/server.pem;
        ssl_certificate_key $SINGLE_STACK_TLS/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://garage;
            proxy_http_version 1.1;
            proxy_set_header Host \$http_host;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            client_max_body_size 0;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_send_timeout 600s;
            proxy_read_timeout 600s;
        }
    }
}
EOF
	if [[ -s $conf ]] && cmp -s "$conf" "$conf.tmp"; then
		rm "$conf.tmp"
		changed=false
	else
		mv "$conf.tmp" "$conf"
		changed=true
	fi
	nginx -t -q -e "$STACK_DIR/logs/nginx-error.log" -c "$conf" -p "$NGINX" >"$STACK_DIR/logs/nginx-start.log" 2>&1 ||
		die "nginx rejects $conf (see $STACK_DIR/logs/nginx-start.log)"
	if pid_alive "$NGINX/nginx.pid"; then
		if $changed; then
			say "nginx: configuration changed; reloading"
			nginx -e "$STACK_DIR/logs/nginx-error.log" -c "$conf" -p "$NGINX" -s reload
		else
			say "nginx: running (pid $(cat "$NGINX/nginx.pid"))"
		fi
	else
		port_open "$TLS_FRONT_PORT" && die "port 127.0.0.1:$TLS_FRONT_PORT is taken by another program"
		say "nginx: starting the TLS front on https://localhost:$TLS_FRONT_PORT"
		nginx -e "$STACK_DIR/logs/nginx-error.log" -c "$conf" -p "$NGINX" >>"$STACK_DIR/logs/nginx-start.log" 2>&1 </dev/null ||
			die "nginx failed to start (see $STACK_DIR/logs/nginx-start.log)"
	fi
}

write_env() {
	local urls="" n env=$STACK_DIR/env
	for n in "${NODES[@]}"; do
		urls+="${urls:+,}amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/%2f"
	done
	{
		echo "# Written by scripts/stack/cluster.sh; source it: . $env"
		echo "export ARCHIVER_CLUSTER_DIR='$STACK_DIR'"
		echo "export AWS_ACCESS_KEY_ID='$GARAGE_KEY_ID'"
		echo "export AWS_SECRET_ACCESS_KEY='$GARAGE_SECRET'"
		echo "export AWS_REGION='garage'"
		echo "export AWS_EC2_METADATA_DISABLED='true'"
		echo "export ARCHIVER_S3_ENDPOINT='https://localhost:$TLS_FRONT_PORT'"
		echo "export ARCHIVER_S3_REGION='garage'"
		echo "export ARCHIVER_S3_PATH_STYLE='true'"
		echo "export ARCHIVER_S3_BUCKET='$BUCKET'"
		echo "export ARCHIVER_S3_CA_FILE='$SINGLE_STACK_TLS/ca.pem'"
		echo "export ARCHIVER_SSE='sse-c'"
		echo "export ARCHIVER_SSE_C_KEY='$SSE_C_KEY'"
		echo "export ARCHIVER_SSE_KEY_ID='k1'"
		echo "export ARCHIVER_AMQP_URL='$urls'"
		echo "export NO_PROXY='localhost,127.0.0.1,::1'"
		echo "export no_proxy='localhost,127.0.0.1,::1'"
	} >"$env.tmp"
	chmod 600 "$env.tmp"
	mv "$env.tmp" "$env"
}

# The members of the RabbitMQ cluster node 1 knows, one a line.
members() {
	ctl 1 cluster_status --formatter json 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print("\n".join(d.get("disk_nodes", [])))'
}

cluster_up() {
	[[ $(id -u) == 0 ]] || die "the cluster runs RabbitMQ in a chroot: run as root"
	for f in ca.pem server.pem server.key; do
		[[ -s $SINGLE_STACK_TLS/$f ]] || die "no $SINGLE_STACK_TLS/$f: run scripts/stack/up.sh once (the cluster reuses its CA), or set ARCHIVER_CLUSTER_TLS_DIR"
	done
	mkdir -p "$STACK_DIR/logs"
	chmod 700 "$STACK_DIR"
	say "state directory: $STACK_DIR"
	load_secrets

	# RabbitMQ: three nodes in one Debian 13 root (one Erlang cookie, the root's), then
	# nodes 2 and 3 join node 1.
	local n
	for n in "${NODES[@]}"; do
		rmq "$n" start
	done
	for n in 2 3; do
		if members | grep -qx "$(rabbit_node "$n")"; then
			say "rabbitmq: $(rabbit_node "$n") is a member"
		else
			say "rabbitmq: $(rabbit_node "$n") joins $(rabbit_node 1)"
			ctl "$n" stop_app >/dev/null
			ctl "$n" reset >/dev/null
			ctl "$n" join_cluster "$(rabbit_node 1)" >/dev/null || die "join_cluster of $(rabbit_node "$n") failed"
			ctl "$n" start_app >/dev/null
		fi
	done
	[[ $(members | grep -c .) == 3 ]] || die "the RabbitMQ cluster does not have three members: $(members | tr '\n' ' ')"
	say "rabbitmq: cluster of $(members | tr '\n' ' ')"

	# Garage: three nodes, replication factor 3.
	command -v garage >/dev/null 2>&1 || die "garage is not on PATH (scripts/stack/up.sh builds it)"
	for n in "${NODES[@]}"; do
		start_garage "$n"
	done
	setup_garage_cluster
	nginx_up
	write_env

	# End to end: an SSE-C object goes in through the front and comes back.
	local probe=$STACK_DIR/probe s3=(curl -s --noproxy '*' --max-time 20 --cacert "$SINGLE_STACK_TLS/ca.pem"
		--aws-sigv4 "aws:amz:garage:s3" -u "$GARAGE_KEY_ID:$GARAGE_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
	head -c 4096 /dev/urandom >"$probe"
	ok() {
		[[ $("${s3[@]}" -o /dev/null -w '%{http_code}' -T "$probe" "https://localhost:$TLS_FRONT_PORT/$BUCKET/_stack-check/probe") == 200 ]] &&
			"${s3[@]}" -o "$probe.back" "https://localhost:$TLS_FRONT_PORT/$BUCKET/_stack-check/probe" && cmp -s "$probe" "$probe.back"
	}
	wait_for 30 "s3: a PUT and GET through https://localhost:$TLS_FRONT_PORT" ok ||
		die "could not write and read back an object through https://localhost:$TLS_FRONT_PORT"
	rm -f "$probe" "$probe.back"
	say "ready: ARCHIVER_AMQP_URL lists amqp://127.0.0.1:5701,5702,5703; S3 https://localhost:$TLS_FRONT_PORT bucket '$BUCKET' (3 Garage nodes, replication 3)"
	say "settings: source $STACK_DIR/env"
}

stop_pidfile() {
	local name=$1 file=$2 pid
	if ! pid_alive "$file"; then
		rm -f "$file"
		return 0
	fi
	pid=$(cat "$file")
	say "$name: stopping (pid $pid)"
	kill "$pid" 2>/dev/null || true
	if ! wait_for 30 "$name: stopped" bash -c "! kill -0 $pid 2>/dev/null"; then
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$file"
}

cluster_down() {
	[[ -d $STACK_DIR ]] || {
		say "nothing to stop: $STACK_DIR does not exist"
		return 0
	}
	stop_pidfile nginx "$STACK_DIR/nginx/nginx.pid"
	local n
	for n in "${NODES[@]}"; do
		stop_pidfile "garage $n" "$(gdir "$n")/garage.pid"
	done
	if [[ -x $STACK_DIR/rabbitmq-root/usr/sbin/rabbitmq-server ]]; then
		for n in 3 2 1; do
			if rabbit_pid "$n" >/dev/null || port_open "$(amqp_port "$n")"; then
				say "rabbitmq: stopping $(rabbit_node "$n")"
				rmq "$n" stop || warn "could not stop $(rabbit_node "$n")"
			fi
		done
		# The root's epmd, then its proc mount, once nothing runs in the root.
		local root=$STACK_DIR/rabbitmq-root pid busy=""
		if mountpoint -q "$root/proc"; then
			timeout 10 chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin ERL_EPMD_PORT=$ARCHIVER_STACK_EPMD_PORT \
				epmd -kill >/dev/null 2>&1 || true
			sleep 0.5
			local real
			real=$(cd "$root" && pwd -P)
			for pid in /proc/[0-9]*; do
				[[ $(readlink "$pid/root" 2>/dev/null) == "$real" ]] && busy+=" ${pid#/proc/}"
			done
			if [[ -n $busy ]]; then
				warn "processes still run in $root (pids$busy); proc stays mounted"
			else
				umount "$root/proc" || warn "could not unmount $root/proc"
			fi
		fi
	fi
	say "stopped (Garage data and secrets kept in $STACK_DIR)"
}

cluster_status() {
	local n
	for n in "${NODES[@]}"; do
		printf 'rabbitmq %s: %s\n' "$(rabbit_node "$n")" "$(rabbit_pid "$n" >/dev/null && echo "pid $(rabbit_pid "$n"), amqp 127.0.0.1:$(amqp_port "$n")" || echo down)"
	done
	for n in "${NODES[@]}"; do
		printf 'garage %s: %s\n' "$n" "$(garage_pid "$n" >/dev/null && echo "pid $(garage_pid "$n"), s3 127.0.0.1:$(garage_s3_port "$n")" || echo down)"
	done
	printf 'nginx: %s\n' "$(pid_alive "$STACK_DIR/nginx/nginx.pid" && echo "https://localhost:$TLS_FRONT_PORT" || echo down)"
	for n in "${NODES[@]}"; do
		if rabbit_pid "$n" >/dev/null; then
			echo "--- quorum queues (name, leader, members) from $(rabbit_node "$n")"
			ctl "$n" list_queues -q name type leader members 2>/dev/null | awk '$2 == "quorum"' || true
			break
		fi
	done
	for n in "${NODES[@]}"; do
		if garage_pid "$n" >/dev/null; then
			echo "--- garage status from node $n"
			gcli "$n" status 2>/dev/null || true
			break
		fi
	done
}

(($#)) || {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}
command=$1
shift
case $command in
up) cluster_up ;;
down) cluster_down ;;
status) cluster_status ;;
ctl)
	[[ ${1:-} =~ ^[123]$ ]] || die "ctl needs a node number (1-3)"
	ctl "$@"
	;;
pid)
	case ${1:-}:${2:-} in
	rabbit:[123]) rabbit_pid "$2" ;;
	garage:[123]) garage_pid "$2" ;;
	*) die "pid rabbit|garage 1-3" ;;
	esac
	;;
start-node)
	case ${1:-}:${2:-} in
	rabbit:[123]) rmq "$2" start ;;
	garage:[123]) load_secrets && start_garage "$2" ;;
	*) die "start-node rabbit|garage 1-3" ;;
	esac
	;;
*) die "unknown command '$command' (up, down, status, ctl, pid, start-node)" ;;
esac

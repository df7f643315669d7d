#!/usr/bin/env bash
# Start the local stack the tests, the demo and a developer use: RabbitMQ, Garage (S3)
# and an nginx TLS front for Garage with a CA made here. Installs what is missing on a
# Debian machine (run as root there), is idempotent (a second run only re-verifies),
# and writes the settings to $STACK_DIR/env for `source`.
#
# RabbitMQ (scripts/stack/rabbitmq.sh does that part, and can be run alone):
#   scripts/stack/up.sh                                Debian 13's RabbitMQ 4.0: the host's
#       package on a Debian 13 host, else in a minimal Debian 13 root made once with
#       debootstrap in $STACK_DIR/rabbitmq-root (about a minute) and run with chroot;
#   ARCHIVER_STACK_RABBITMQ=host scripts/stack/up.sh   the host's own rabbitmq-server
#       (RabbitMQ 3.10 on Debian 12), for a smoke run against the older broker.
# Switching stops the broker the stack started before. A broker this stack did not start
# is reused if it is RabbitMQ 4 (any version in host mode), and refused otherwise.
# `rabbitmqctl` for the stack's broker: $STACK_DIR/bin/rabbitmqctl (on PATH and in
# ARCHIVER_RABBITMQCTL once the env file is sourced).
#
# Only loopback addresses are used: every listener binds 127.0.0.1.
set -euo pipefail

# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$STACK_DIR"
STACK_DIR=$(cd "$STACK_DIR" && pwd)
mkdir -p "$STACK_DIR/logs" "$STACK_DIR/bin" "$STACK_DIR/tls" "$STACK_DIR/garage/meta" "$STACK_DIR/garage/data" \
	"$STACK_DIR/nginx/tmp" "$STACK_DIR/check"
chmod 700 "$STACK_DIR"
say "state directory: $STACK_DIR"

# ---------------------------------------------------------------------------------------
# Packages. apt-get update runs only when something is missing.
# ---------------------------------------------------------------------------------------
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_cmd openssl openssl
need_cmd curl curl
need_cmd nginx nginx
need_cmd rclone rclone
# RabbitMQ is not in this list: scripts/stack/rabbitmq.sh installs what its mode needs
# (the host's package only in host mode or on a Debian 13 host, else debootstrap).
# Not the stack itself, but what runs against it: the integration tests and the demo
# make media with ffmpeg; the demo's media server is Python.
need_cmd ffmpeg ffmpeg
need_cmd python3 python3
[[ -e /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if ! command -v garage >/dev/null 2>&1 && [[ ! -x $HOME/.cargo/bin/garage ]]; then
	# Building Garage needs a C toolchain (bundled sqlite, zstd, libsodium).
	need_cmd cc build-essential
	need_cmd make build-essential
fi
if ((${#missing[@]})); then
	apt_install "${missing[@]}"
fi

# ---------------------------------------------------------------------------------------
# Secrets: generated once, then kept, so that reruns and restarts see the same stack.
# ---------------------------------------------------------------------------------------
SECRETS=$STACK_DIR/secrets
if [[ ! -s $SECRETS ]]; then
	say "generating credentials and the SSE-C key"
	# Garage data made with other credentials would refuse the new key: start afresh.
	if pid_alive "$STACK_DIR/garage.pid"; then
		die "$SECRETS is missing while Garage runs; run scripts/stack/down.sh first"
	fi
	rm -rf "$STACK_DIR/garage/meta" "$STACK_DIR/garage/data"
	mkdir -p "$STACK_DIR/garage/meta" "$STACK_DIR/garage/data"
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

# ---------------------------------------------------------------------------------------
# TLS: a CA and a server certificate for localhost / 127.0.0.1, made once.
# ---------------------------------------------------------------------------------------
TLS=$STACK_DIR/tls
if [[ ! -s $TLS/ca.pem || ! -s $TLS/server.pem || ! -s $TLS/server.key ]]; then
	say "generating the stack's CA and the certificate for localhost"
	(
		umask 077
		cd "$TLS"
		openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
			-keyout ca.key -out ca.pem -days 3650 -subj "/CN=archiver local stack CA" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
		openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
			-keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
		printf '%s\n' \
			"basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=serverAuth" \
			"subjectAltName=DNS:localhost,IP:127.0.0.1" >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out server.pem -days 825 -extfile server.ext 2>/dev/null
		rm -f server.csr server.ext
		chmod 644 ca.pem server.pem
	) || die "could not generate TLS certificates with openssl"
fi

# ---------------------------------------------------------------------------------------
# RabbitMQ: Debian 13's (RabbitMQ 4), or the host's in host mode; see rabbitmq.sh.
# ---------------------------------------------------------------------------------------
bash "$STACK_REPO_ROOT/scripts/stack/rabbitmq.sh" start
RABBIT_MARK=$STACK_DIR/rabbitmq.started-by-stack

# ---------------------------------------------------------------------------------------
# Garage: install (cargo) if missing, configure a single node, start it.
# ---------------------------------------------------------------------------------------
export PATH=$HOME/.cargo/bin:$PATH
if ! command -v garage >/dev/null 2>&1; then
	if pgrep -f "cargo install garage" >/dev/null 2>&1; then
		say "garage: a 'cargo install garage' is already running; waiting for it (up to 60 min)"
		build_over() { command -v garage || ! pgrep -f "cargo install garage"; }
		wait_for 3600 "garage: the running build has finished" build_over ||
			die "garage is still not installed after waiting 60 minutes for the running build"
		command -v garage >/dev/null 2>&1 ||
			die "the 'cargo install garage' that was running ended without installing garage; rerun this script to build it"
	else
		command -v cargo >/dev/null 2>&1 ||
			die "cargo is needed to build Garage: install Rust first (https://rustup.rs), then rerun"
		say "garage: building with 'cargo install garage --locked' (about 10-15 minutes on 2 cores)"
		say "garage: build log: $STACK_DIR/logs/garage-build.log"
		cargo install garage --locked >"$STACK_DIR/logs/garage-build.log" 2>&1 &
		build_pid=$!
		# A line a minute, so that CI (and a person) sees the long build is alive.
		while kill -0 "$build_pid" 2>/dev/null; do
			for _ in $(seq 60); do
				kill -0 "$build_pid" 2>/dev/null || break
				sleep 1
			done
			if kill -0 "$build_pid" 2>/dev/null; then
				say "garage: still building ($(grep -c '^ *Compiling' "$STACK_DIR/logs/garage-build.log" || true) crates compiled)"
			fi
		done
		wait "$build_pid" || die "cargo install garage failed (see $STACK_DIR/logs/garage-build.log)"
	fi
fi
garage server --help 2>&1 | grep -q -- "--default-bucket" ||
	die "this garage ($(garage --version 2>&1 | head -1)) has no 'server --default-bucket'; Garage >= 2.0 is needed"

GARAGE_TOML=$STACK_DIR/garage/garage.toml
cat >"$GARAGE_TOML.tmp" <<EOF
# Written by scripts/stack/up.sh: a single-node Garage for tests, on loopback only.
metadata_dir = "$STACK_DIR/garage/meta"
data_dir = "$STACK_DIR/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_public_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$GARAGE_S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN_PORT"
admin_token = "$GARAGE_ADMIN_TOKEN"
EOF
chmod 600 "$GARAGE_TOML.tmp"
mv "$GARAGE_TOML.tmp" "$GARAGE_TOML"

garage_healthy() {
	curl -sf --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:$GARAGE_ADMIN_PORT/health"
}
GARAGE_PID=$STACK_DIR/garage.pid
if pid_alive "$GARAGE_PID" && garage_healthy; then
	say "garage: running (pid $(cat "$GARAGE_PID"))"
else
	if pid_alive "$GARAGE_PID"; then
		say "garage: process $(cat "$GARAGE_PID") is not healthy; restarting it"
		kill "$(cat "$GARAGE_PID")" 2>/dev/null || true
		wait_for 20 "garage: old process stopped" bash -c "! kill -0 $(cat "$GARAGE_PID") 2>/dev/null" || true
	fi
	for port in $GARAGE_S3_PORT $GARAGE_RPC_PORT $GARAGE_ADMIN_PORT; do
		if port_open "$port"; then
			die "port 127.0.0.1:$port is taken by another program (another checkout's stack? run its scripts/stack/down.sh, or point ARCHIVER_STACK_DIR at its .stack)"
		fi
	done
	say "garage: starting (log: $STACK_DIR/logs/garage.log)"
	# setsid: the server outlives this script and a Ctrl-C in the caller's terminal.
	# shellcheck disable=SC2016 # $$ and $1 are the inner shell's
	GARAGE_DEFAULT_ACCESS_KEY=$GARAGE_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$GARAGE_SECRET \
		GARAGE_DEFAULT_BUCKET=$BUCKET RUST_LOG=${GARAGE_LOG:-garage=info} \
		setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$GARAGE_PID" \
		garage -c "$GARAGE_TOML" server --single-node --default-bucket \
		>>"$STACK_DIR/logs/garage.log" 2>&1 </dev/null &
	wait_for 60 "garage: healthy" garage_healthy ||
		die "garage did not become healthy within 60 s (see $STACK_DIR/logs/garage.log)"
fi

# ---------------------------------------------------------------------------------------
# nginx: the TLS front on 127.0.0.1:3443, streaming both ways to Garage.
# ---------------------------------------------------------------------------------------
NGINX=$STACK_DIR/nginx
NGINX_CONF=$NGINX/nginx.conf
# As root, workers would drop to "nobody" and could not use the temp dirs below.
nginx_user=""
[[ $(id -u) == 0 ]] && nginx_user="user root;"
cat >"$NGINX_CONF.tmp" <<EOF
# Written by scripts/stack/up.sh: TLS in front of Garage, because S3 clients refuse to
# send SSE-C keys over plain http.
$nginx_user
worker_processes 1;
daemon on;
pid $NGINX/nginx.pid;
error_log $STACK_DIR/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log $STACK_DIR/logs/nginx-access.log;
    client_body_temp_path $NGINX/tmp/body;
    proxy_temp_path $NGINX/tmp/proxy;
    fastcgi_temp_path $NGINX/tmp/fastcgi;
    uwsgi_temp_path $NGINX/tmp/uwsgi;
    scgi_temp_path $NGINX/tmp/scgi;
    server {
        listen 127.0.0.1:$TLS_PORT ssl;
        server_name localhost;
        ssl_certificate $TLS/server.pem;
        ssl_certificate_key $TLS/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://127.0.0.1:$GARAGE_S3_PORT;
            proxy_http_version 1.1;
            proxy_set_header Host \$http_host;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            client_max_body_size 0;
            proxy_connect_timeout 10s;
            proxy_send_timeout 600s;
            proxy_read_timeout 600s;
        }
    }
}
EOF
if [[ -s $NGINX_CONF ]] && cmp -s "$NGINX_CONF" "$NGINX_CONF.tmp"; then
	rm "$NGINX_CONF.tmp"
	nginx_conf_changed=false
else
	mv "$NGINX_CONF.tmp" "$NGINX_CONF"
	nginx_conf_changed=true
fi
nginx -t -q -e "$STACK_DIR/logs/nginx-error.log" -c "$NGINX_CONF" -p "$NGINX" \
	>"$STACK_DIR/logs/nginx-start.log" 2>&1 ||
	die "nginx rejects $NGINX_CONF (see $STACK_DIR/logs/nginx-start.log)"
if pid_alive "$NGINX/nginx.pid"; then
	if $nginx_conf_changed; then
		say "nginx: configuration changed; reloading"
		nginx -e "$STACK_DIR/logs/nginx-error.log" -c "$NGINX_CONF" -p "$NGINX" -s reload
	else
		say "nginx: running (pid $(cat "$NGINX/nginx.pid"))"
	fi
else
	if port_open "$TLS_PORT"; then
		die "port 127.0.0.1:$TLS_PORT is taken by another program (another checkout's stack? run its scripts/stack/down.sh, or point ARCHIVER_STACK_DIR at its .stack)"
	fi
	say "nginx: starting the TLS front on https://localhost:$TLS_PORT"
	nginx -e "$STACK_DIR/logs/nginx-error.log" -c "$NGINX_CONF" -p "$NGINX" \
		>>"$STACK_DIR/logs/nginx-start.log" 2>&1 </dev/null ||
		die "nginx failed to start (see $STACK_DIR/logs/nginx-start.log and nginx-error.log)"
fi
# Any HTTP answer over verified TLS will do (Garage answers 403 to an anonymous GET).
tls_answers() {
	curl -s --noproxy '*' --max-time 3 --cacert "$TLS/ca.pem" -o /dev/null \
		-w '%{http_code}' "https://localhost:$TLS_PORT/" | grep -qv '^000$'
}
wait_for 30 "nginx: answering TLS with a certificate from the stack CA" tls_answers ||
	die "https://localhost:$TLS_PORT does not answer with a certificate from $TLS/ca.pem (see $STACK_DIR/logs/nginx-error.log)"

# ---------------------------------------------------------------------------------------
# The env file: rewritten identically on every run.
# ---------------------------------------------------------------------------------------
ENV_FILE=$STACK_DIR/env
{
	echo "# Written by scripts/stack/up.sh; source it: . $ENV_FILE"
	echo "export ARCHIVER_STACK_DIR='$STACK_DIR'"
	echo "export AWS_ACCESS_KEY_ID='$GARAGE_KEY_ID'"
	echo "export AWS_SECRET_ACCESS_KEY='$GARAGE_SECRET'"
	echo "export AWS_REGION='garage'"
	echo "export AWS_EC2_METADATA_DISABLED='true'"
	echo "export ARCHIVER_S3_ENDPOINT='https://localhost:$TLS_PORT'"
	echo "export ARCHIVER_S3_REGION='garage'"
	echo "export ARCHIVER_S3_PATH_STYLE='true'"
	echo "export ARCHIVER_S3_BUCKET='$BUCKET'"
	echo "export ARCHIVER_S3_CA_FILE='$TLS/ca.pem'"
	echo "export ARCHIVER_SSE='sse-c'"
	echo "export ARCHIVER_SSE_C_KEY='$SSE_C_KEY'"
	echo "export ARCHIVER_SSE_KEY_ID='k1'"
	echo "export ARCHIVER_AMQP_URL='amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f'"
	# Everything here is on loopback: a proxy from the caller's environment must not
	# be asked for it.
	echo "export NO_PROXY='localhost,127.0.0.1,::1'"
	echo "export no_proxy='localhost,127.0.0.1,::1'"
	# rabbitmqctl for the stack's broker, wherever it runs (the Debian 13 root, the host).
	echo "export ARCHIVER_RABBITMQCTL='$STACK_DIR/bin/rabbitmqctl'"
	# ... and first on PATH. Through a file, because the tests hand every NAME=value line
	# of this file to the archiver, and PATH must stay the caller's there.
	echo ". '$STACK_DIR/bin/path.sh'"
} >"$ENV_FILE.tmp"
printf '%s\n' "# Written by scripts/stack/up.sh: puts the stack's rabbitmqctl first on PATH (once)." \
	"case \":\$PATH:\" in *':$STACK_DIR/bin:'*) ;; *) PATH='$STACK_DIR/bin':\$PATH ;; esac" \
	>"$STACK_DIR/bin/path.sh"
chmod 600 "$ENV_FILE.tmp"
mv "$ENV_FILE.tmp" "$ENV_FILE"

# ---------------------------------------------------------------------------------------
# End-to-end check: an SSE-C object goes in and comes back through TLS; without the key
# the store refuses it.
# ---------------------------------------------------------------------------------------
rclone_s3() {
	# AWS_CA_BUNDLE (set on some machines to the system bundle) makes rclone's AWS SDK
	# fail; --ca-cert says what to trust.
	env -u HTTPS_PROXY -u HTTP_PROXY -u https_proxy -u http_proxy -u AWS_CA_BUNDLE \
		RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other \
		RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$GARAGE_KEY_ID" \
		RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$GARAGE_SECRET" \
		RCLONE_CONFIG_GARAGE_ENDPOINT="https://localhost:$TLS_PORT" \
		RCLONE_CONFIG_GARAGE_REGION=garage RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true \
		timeout 60 rclone --config /dev/null --ca-cert "$TLS/ca.pem" --s3-no-check-bucket \
		--retries 1 --low-level-retries 1 --contimeout 5s --timeout 30s "$@"
}
probe_key=_stack-check/probe
probe_file=$STACK_DIR/check/probe
head -c 4096 /dev/urandom >"$probe_file"
rclone_s3 --s3-sse-customer-algorithm AES256 --s3-sse-customer-key-base64 "$SSE_C_KEY" \
	copyto "$probe_file" "garage:$BUCKET/$probe_key" >"$STACK_DIR/logs/check.log" 2>&1 ||
	die "could not put an SSE-C object through https://localhost:$TLS_PORT (see $STACK_DIR/logs/check.log)"
rclone_s3 --s3-sse-customer-algorithm AES256 --s3-sse-customer-key-base64 "$SSE_C_KEY" \
	cat "garage:$BUCKET/$probe_key" >"$probe_file.back" 2>>"$STACK_DIR/logs/check.log" ||
	die "could not read the SSE-C object back (see $STACK_DIR/logs/check.log)"
cmp -s "$probe_file" "$probe_file.back" || die "the SSE-C object read back differs from what was written"
# rclone takes a refused HEAD for "no such file", so the keyless GET is made with curl.
keyless=$(curl -s --noproxy '*' --max-time 10 --cacert "$TLS/ca.pem" --aws-sigv4 "aws:amz:garage:s3" \
	-u "$GARAGE_KEY_ID:$GARAGE_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
	-w ' HTTP %{http_code}' "https://localhost:$TLS_PORT/$BUCKET/$probe_key" || true)
if [[ $keyless != *"Object is encrypted"*" HTTP 400" ]]; then
	echo "keyless GET answered: $keyless" >>"$STACK_DIR/logs/check.log"
	die "a GET without the SSE-C key was not refused as expected (see $STACK_DIR/logs/check.log)"
fi
rm -f "$probe_file" "$probe_file.back"

rabbit_note="reused"
[[ -e $RABBIT_MARK ]] && rabbit_note="ours"
rabbit_version=$(bash "$STACK_REPO_ROOT/scripts/stack/rabbitmq.sh" version)
say "ready: amqp://127.0.0.1:$AMQP_PORT (RabbitMQ $rabbit_version, $rabbit_note), S3 https://localhost:$TLS_PORT bucket '$BUCKET' (garage), SSE-C round trip ok"
say "settings: source $ENV_FILE"

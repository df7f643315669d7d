# Shared by bench/run.sh and bench/worker.sh (sourced, not run): media made once with
# ffmpeg, and rclone pointed at the stack's Garage.

# A lavfi source of random noise (incompressible, so sizes are honest): noise WxH [FPS].
noise() { echo "nullsrc=s=$1${2:+:r=$2},geq=random(1)*255:128:128"; }

# make_media OUT FFMPEG_ARGS...: makes OUT once; later runs reuse it.
make_media() {
	local out=$1
	shift
	[[ -s $out ]] || ffmpeg -v error -y "$@" "$out" || die "ffmpeg could not make $out"
}

# rclone with a remote `garage:` built from the stack's settings, bounded by BENCH_RCLONE_SECS
# (not RCLONE_*: rclone reads every RCLONE_* variable as one of its flags).
rclone_s3() {
	# rclone cannot combine AWS_CA_BUNDLE with --ca-cert ("unsupported transport"); the
	# stack's CA signs the S3 front (and the media servers' certificates).
	env -u AWS_CA_BUNDLE RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other \
		RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
		RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
		RCLONE_CONFIG_GARAGE_ENDPOINT="$ARCHIVER_S3_ENDPOINT" \
		RCLONE_CONFIG_GARAGE_REGION="$ARCHIVER_S3_REGION" RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true \
		timeout "${BENCH_RCLONE_SECS:-600}" rclone --config /dev/null --ca-cert "$ARCHIVER_S3_CA_FILE" --s3-no-check-bucket "$@"
}

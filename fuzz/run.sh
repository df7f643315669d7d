#!/usr/bin/env bash
# Fuzzes one media scanner for a while, seeded with the committed fixtures.
#
#   bash fuzz/run.sh mp4 60     # target (event, jpeg, mp4 or mp4_tables), seconds
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz wants a nightly toolchain;
# on a stable one, RUSTC_BOOTSTRAP=1 lets it use the nightly-only sanitizer flags.
# Crashes land in fuzz/artifacts/TARGET/; each one found becomes a regression test in
# crates/media/tests/media/regressions.rs.
set -euo pipefail
target=${1:?usage: fuzz/run.sh event|jpeg|mp4|mp4_tables [seconds]}
seconds=${2:-60}
cd "$(dirname "$0")"
corpus="corpus/$target"
mkdir -p "$corpus"
if [ "$target" = event ]; then
    # Events are fed as they are (no chunk-size byte): the committed example events.
    cp ../fixtures/events/*.json "$corpus/"
    RUSTC_BOOTSTRAP=1 exec cargo fuzz run event "$corpus" -- -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048
fi
if [ "$target" = mp4_tables ]; then
    # The input is read as figures for a movie built around them (fuzz/src/movie.rs):
    # no file makes a useful seed, the fuzzer starts from nothing.
    RUSTC_BOOTSTRAP=1 exec cargo fuzz run mp4_tables "$corpus" -- -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048
fi
# The first input byte is the chunk-size seed: prefix each fixture with one.
case $target in
jpeg) pattern='*.jpg' ;;
mp4) pattern='*.mp4' ;;
*) echo "unknown target $target (event, jpeg, mp4 or mp4_tables)" >&2 && exit 2 ;;
esac
for file in ../fixtures/media/$pattern; do
    size=$(stat -c %s "$file")
    if [ "$size" -gt 0 ] && [ "$size" -lt 300000 ]; then
        { printf '\x06'; cat "$file"; } >"$corpus/seed-$(basename "$file")"
    fi
done
RUSTC_BOOTSTRAP=1 exec cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -max_len=400000 -rss_limit_mb=2048

#!/usr/bin/env bash
# The test-suite command (what .ci/run calls): checks formatting and the dependency policy
# (deny.toml), starts the local stack, builds, lints with clippy, runs the whole suite
# against the stack, then the extra checks in scripts/checks/. Exits non-zero if anything
# failed, after running everything (so one report shows every failure).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -E 'test(smoke)'   # extra arguments go to cargo nextest run
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)
started=$SECONDS
step() { printf '\n==> %s (%ds)\n' "$*" "$((SECONDS - started))"; }

status=0
# A committed Cargo.lock is honoured exactly (CI builds what was tested).
locked=()
[[ -f Cargo.lock ]] && locked=(--locked)

# One line per part, repeated at the end so the outcome is the last thing printed.
results=()
record() { # record NAME STATUS [DETAIL]
	if (($2 == 0)); then results+=("ok      $1${3:+: $3}"); else results+=("FAILED  $1${3:+: $3}"); status=1; fi
}
suite_log=$(mktemp)

# Under CI (CI=true) the stack is stopped at the end, also after a failure: the broker's
# Debian 13 root has /proc mounted inside the clone while RabbitMQ runs (scripts/stack/
# rabbitmq.sh), and a clone must end as a plain tree that its runner can remove. Elsewhere
# the stack stays up for the next run (ARCHIVER_STACK_STOP=1 or 0 overrides).
stop_stack=${ARCHIVER_STACK_STOP:-$([[ ${CI:-} == true ]] && echo 1 || echo 0)}
stack_started=0
stop_stack_now() {
	if ((stop_stack == 1 && stack_started == 1)); then
		stack_started=0
		bash scripts/stack/down.sh || echo "stopping the stack failed (scripts/stack/down.sh)" >&2
		# Whatever down.sh could not stop (a node caught half started) is ended, and the
		# root's /proc unmounted.
		bash scripts/stack/rabbitmq.sh release || echo "the broker's root is still in use (scripts/stack/rabbitmq.sh release)" >&2
	fi
}
trap 'rm -f "$suite_log"; stop_stack_now' EXIT

# The cheap checks first: they need neither the stack nor a build.
step "checking formatting (cargo fmt --all -- --check)"
fmt=0
cargo fmt --all -- --check || fmt=$?
record "formatting (cargo fmt --check)" "$fmt"

step "checking the dependency policy (cargo deny check bans licenses sources; deny.toml)"
# Advisories are left out: their database is fetched from GitHub, which CI cannot reach
# (README, "Checks"). The other three need only the crates' manifests, so the crates are
# fetched first (from crates.io, like the build does), then cargo-deny runs with
# --offline, and in a network namespace without network when `unshare` allows it, so
# nothing in it can fetch.
deny=0
offline=()
unshare --net true 2>/dev/null && offline=(unshare --net)
if bash scripts/install-cargo-deny.sh && cargo fetch "${locked[@]}"; then
	"${offline[@]}" cargo deny --offline "${locked[@]}" check bans licenses sources || deny=$?
else
	deny=$?
fi
record "dependency policy (cargo deny: bans, licenses, sources)" "$deny"

step "starting the local stack (scripts/stack/up.sh)"
stack_started=1
bash scripts/stack/up.sh
# shellcheck disable=SC1091
source "${ARCHIVER_STACK_DIR:-$repo_root/.stack}/env"

step "building the workspace and its tests"
cargo build --workspace --all-targets "${locked[@]}"

step "linting (cargo clippy --workspace --all-targets -- -D warnings)"
clippy=0
cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings || clippy=$?
record "lints (cargo clippy -D warnings)" "$clippy"

step "running the test suite"
if cargo nextest --version >/dev/null 2>&1; then
	# nextest runs each test in its own process, with the per-test deadlines of
	# .config/nextest.toml; it does not run doctests, hence the second command.
	set +e
	cargo nextest run --workspace --all-targets "${locked[@]}" --no-fail-fast "$@" 2>&1 | tee "$suite_log"
	suite=${PIPESTATUS[0]}
	set -e
	record "tests (cargo nextest)" "$suite" "$(grep -E '^ +Summary ' "$suite_log" | tail -1 | sed 's/^ *//')"
else
	echo "(cargo-nextest not found: using cargo test; 'cargo install cargo-nextest --locked' adds per-test deadlines)"
	suite=0
	cargo test --workspace --all-targets "${locked[@]}" --no-fail-fast "$@" || suite=$?
	record "tests (cargo test)" "$suite"
fi
step "running the doc tests"
doc=0
cargo test --workspace --doc "${locked[@]}" || doc=$?
record "doc tests" "$doc"

# Extra checks (deploy manifests, fuzz smoke runs, ...): every executable
# scripts/checks/*.sh, run from the repository root with the stack's settings.
shopt -s nullglob
for check in scripts/checks/*.sh; do
	[[ -x $check ]] || continue
	step "check: $check"
	check_status=0
	"$check" || check_status=$?
	record "check $check" "$check_status"
done

if ((stop_stack == 1)); then
	step "stopping the local stack (scripts/stack/down.sh)"
	stop_stack_now
fi

step "summary"
printf '  %s\n' "${results[@]}"
if ((status == 0)); then
	echo "test suite: PASSED in $((SECONDS - started)) s"
else
	echo "test suite: FAILED in $((SECONDS - started)) s (details above)"
fi
exit "$status"

#!/usr/bin/env bash
# The test-suite command (what .ci/run calls): starts the local stack, runs the whole
# suite against it, then the extra checks in scripts/checks/. Exits non-zero if anything
# failed, after running everything (so one report shows every failure).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -E 'test(smoke)'   # extra arguments go to cargo nextest run
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)
started=$SECONDS
step() { printf '\n==> %s (%ds)\n' "$*" "$((SECONDS - started))"; }

step "starting the local stack (scripts/stack/up.sh)"
bash scripts/stack/up.sh
# shellcheck disable=SC1091
source "${ARCHIVER_STACK_DIR:-$repo_root/.stack}/env"

status=0
# A committed Cargo.lock is honoured exactly (CI builds what was tested).
locked=()
[[ -f Cargo.lock ]] && locked=(--locked)

step "building the workspace and its tests"
cargo build --workspace --all-targets "${locked[@]}"

step "running the test suite"
if cargo nextest --version >/dev/null 2>&1; then
	# nextest runs each test in its own process, with the per-test deadlines of
	# .config/nextest.toml; it does not run doctests, hence the second command.
	cargo nextest run --workspace --all-targets "${locked[@]}" --no-fail-fast "$@" || status=1
	cargo test --workspace --doc "${locked[@]}" || status=1
else
	echo "(cargo-nextest not found: using cargo test; 'cargo install cargo-nextest --locked' adds per-test deadlines)"
	cargo test --workspace --all-targets "${locked[@]}" --no-fail-fast "$@" || status=1
	cargo test --workspace --doc "${locked[@]}" || status=1
fi

# Extra checks (deploy manifests, fuzz smoke runs, ...): every executable
# scripts/checks/*.sh, run from the repository root with the stack's settings.
shopt -s nullglob
checks_failed=()
for check in scripts/checks/*.sh; do
	[[ -x $check ]] || continue
	step "check: $check"
	if ! "$check"; then
		checks_failed+=("$check")
		status=1
	fi
done

step "done"
if ((${#checks_failed[@]})); then
	echo "failed checks: ${checks_failed[*]}"
fi
if ((status == 0)); then
	echo "test suite: PASSED in $((SECONDS - started)) s"
else
	echo "test suite: FAILED in $((SECONDS - started)) s (see the summaries above)"
fi
exit "$status"

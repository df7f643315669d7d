#!/usr/bin/env bash
# Makes `cargo deny` available for scripts/test.sh's dependency check (policy in deny.toml):
# does nothing when it is already installed, otherwise installs it from crates.io.
#
#   bash scripts/install-cargo-deny.sh
#
# The version is pinned (override with CARGO_DENY_VERSION) because deny.toml's format is
# cargo-deny's and changes between its releases; an unpinned install would let a new
# release break CI with no change of ours. --locked builds it with the dependency versions
# it was released with.
#
# Measured here: installing cargo-deny 0.20.2 took 5 min 47 s of wall-clock time on
# 2 cores with another `cargo install` compiling alongside (275 s of CPU time, so about
# 2.5 minutes on an otherwise idle 2-core machine). Later runs reuse ~/.cargo/bin.
set -euo pipefail

version=${CARGO_DENY_VERSION:-0.20.2}

if installed=$(cargo deny --version 2>/dev/null); then
	echo "cargo-deny: using the installed $installed"
	exit 0
fi
echo "cargo-deny: not installed; installing $version from crates.io" \
	"(cargo install cargo-deny --version $version --locked, a few minutes)"
started=$SECONDS
cargo install cargo-deny --version "$version" --locked
echo "cargo-deny: installed $(cargo deny --version) in $((SECONDS - started)) s"

#!/usr/bin/env bash
# The project's test command (README): formatting, lints, and every test of the workspace.
# Root-only tests (network namespaces, TAP, AF_PACKET) run when this is run as root; with CI=true a
# root-only test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Unused dependencies (this workspace and fuzz/). --with-metadata resolves through `cargo metadata`,
# which also catches unused dev-dependencies (the plain scan misses them).
cargo machete --with-metadata
# Release mode: the end-to-end tests push real traffic and the benches' test mode builds big tables.
# One test at a time keeps namespace tests from competing for the 2 cores of the CI machine
# (an env var rather than --test-threads: criterion's bench harness, run in test mode, rejects it).
RUST_TEST_THREADS=1 cargo test --release --workspace --all-targets --locked --no-fail-fast
# --all-targets leaves out doctests: they run on their own.
RUST_TEST_THREADS=1 cargo test --release --workspace --doc --locked

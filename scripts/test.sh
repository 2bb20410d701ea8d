#!/usr/bin/env bash
# Set up everything the tests need (scripts/install-readers.sh, cached) and run the whole suite:
# formatting, clippy, unit tests, and the integration tests against the real readers.
# Needs root: the tests mount bootstraps with the kernel and with nydusd (FUSE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NYDUS_BIN_DIR="$(bash scripts/install-readers.sh)"
export NYDUS_BIN_DIR

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked

#!/usr/bin/env bash
# Set up everything the tests need (scripts/install-readers.sh, cached) and run the whole suite:
# formatting, clippy, unit tests, and the integration tests against the real readers.
# Needs root: the tests mount bootstraps with the kernel and with nydusd (FUSE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NYDUS_BIN_DIR="$(bash scripts/install-readers.sh)"
export NYDUS_BIN_DIR
bash scripts/build-corpus.sh debian-minbase debian-python

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The fuzz targets must keep compiling (README: Fuzzing); running them long is not CI's job.
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
(cd fuzz && cargo +nightly fuzz build)
# Doc tests are skipped (there are none): their empty run would be the last line printed.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked --tests 2>&1 | tee "$log"
# One closing line with the totals of every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

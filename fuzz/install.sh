#!/usr/bin/env bash
# Installs the pinned cargo-fuzz into the repository (.cache/tools, not committed) once, and
# prints its path. It drives libFuzzer on the stable toolchain with `-s none` (no sanitizer:
# the sanitizers need the nightly-only -Zsanitizer; opsflow's parsers are safe Rust).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2
bin=$PWD/.cache/tools/bin/cargo-fuzz
if ! "$bin" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION"; then
    cargo install --quiet --root "$PWD/.cache/tools" cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked >&2
fi
echo "$bin"

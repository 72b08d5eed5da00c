#!/usr/bin/env bash
# The demo: runs examples/volume-resize.asl.json on the local Step Functions engine, once
# on the happy path and once on a path that never finishes, showing every event live with
# its (virtual) time, then the result.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/opsflow"
DEF=examples/volume-resize.asl.json
MOCK=examples/volume-resize.mock.json
INPUT='{"volumeId":"vol-0abc","sizeGiB":32}'

for case in HappyPath NeverFinishes; do
  echo
  echo "=== $DEF, test case $case (virtual clock: waits and retry delays take no real time) ==="
  start=$(date +%s%N)
  set +e
  out=$("$BIN" sfn run --definition "$DEF" --input "$INPUT" --mock-config "$MOCK" --test-case "$case" --trace)
  code=$?
  set -e
  end=$(date +%s%N)
  echo "--- result (exit code $code, wall time $(( (end - start) / 1000000 )) ms):"
  echo "$out"
done

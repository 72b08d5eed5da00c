#!/usr/bin/env bash
# Runs every fuzz target (or those named) with libFuzzer through cargo-fuzz, one after the other,
# and prints a table: executions, corpus size, coverage (libFuzzer's cov and ft) and findings.
#
#   fuzz/run.sh [TARGET...]          FUZZ_RUNS=1000000 (per target) or FUZZ_SECONDS=60 (per target)
#
# The corpus of a target is fuzz/corpus/<target> (made by fuzz/seeds.py from the repository's
# fixtures, grown by the runs, not committed) plus fuzz/seeds/<target> (curated seeds and every
# regression input, committed; replayed first on every run). A crash, timeout or out-of-memory
# input lands in fuzz/artifacts/<target>/; the exit status is non-zero when any target found one.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_RUNS=${FUZZ_RUNS:-}
FUZZ_SECONDS=${FUZZ_SECONDS:-}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}       # seconds one input may take: longer is a finding (a hang)
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}       # memory one run may take: more is a finding
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-16384}    # longest input (libFuzzer's default, 4096, hides size limits)
export CARGO_TARGET_DIR=${CARGO_FUZZ_TARGET_DIR:-$HOME/.cache/opsflow/target-fuzz}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
CARGO_FUZZ=$("$ROOT/fuzz/install.sh") || exit 1

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^opsflow-fuzz$')
fi
limits=()
[ -n "$FUZZ_RUNS" ] && limits+=("-runs=$FUZZ_RUNS")
[ -n "$FUZZ_SECONDS" ] && limits+=("-max_total_time=$FUZZ_SECONDS")
[ ${#limits[@]} -eq 0 ] && limits+=("-max_total_time=10")

python3 fuzz/seeds.py 2>/dev/null
# Build once (every target) before the clock of the first one starts.
"$CARGO_FUZZ" build -s none --fuzz-dir fuzz >/dev/null || exit 1

logs=$(mktemp -d)
status=0
failed=0
printf '%-16s %12s %8s %8s %8s %9s %7s\n' target executions corpus cov ft findings seconds
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    start=$(date +%s)
    nice -n 10 "$CARGO_FUZZ" run -s none --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        "${limits[@]}" -timeout="$FUZZ_TIMEOUT" -max_len="$FUZZ_MAX_LEN" -rss_limit_mb="$FUZZ_RSS_MB" -malloc_limit_mb="$FUZZ_RSS_MB" \
        -dict=fuzz/json.dict -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$logs/$t.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    findings=$(( $(find "fuzz/artifacts/$t" -type f | wc -l) - before ))
    printf '%-16s %12s %8s %8s %8s %9s %7s\n' "$t" "${execs:-?}" "$corpus" "${cov:-?}" "${ft:-?}" "$findings" "$secs"
    if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
        status=1
        failed=$((failed + 1))
        echo "  $t failed (exit $rc); its log:" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|timeout|out-of-memory' "$logs/$t.log" | head -8 | sed 's/^/    /' >&2
    fi
done
echo "logs: $logs"
echo "fuzz: $(( ${#targets[@]} - failed )) passed, $failed failed"
exit $status

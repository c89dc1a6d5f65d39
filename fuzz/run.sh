#!/usr/bin/env bash
# Runs every fuzz target for RUNS inputs (default 10 million), one after the other,
# and prints one line per target: runs, seconds, corpus size, crashes.
# Usage: fuzz/run.sh [RUNS] [TARGET...]   (needs cargo-fuzz: cargo install cargo-fuzz)
# On a stable toolchain RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its flags; no
# sanitizer is used (the code under test has no unsafe of its own), so what is
# caught is panics, aborts, timeouts and memory blow-ups.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(xml_items import records_frames openpgp xep0082 jid invite_code xep0174_stream control)
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none "${targets[@]/#/}" >/dev/null 2>&1 || cargo fuzz build -s none
mkdir -p logs
for t in "${targets[@]}"; do
    start=$(date +%s)
    status=0
    cargo fuzz run -s none "$t" -- -runs="$runs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"logs/$t.log" 2>&1 || status=$?
    secs=$(( $(date +%s) - start ))
    done_runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    corpus=$(ls "corpus/$t" | wc -l)
    crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
    echo "$t: $done_runs runs in ${secs}s, corpus $corpus, crashes $crashes, exit $status"
done

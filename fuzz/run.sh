#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer's coverage instrumentation (what
# `cargo fuzz build` does, minus the address sanitizer, so it works on the
# stable toolchain too) and runs each for SECONDS (default 20), every
# target unless some are named. Each starts from a copy of its committed
# seed corpus, fuzz/corpus/TARGET/ (written by `cargo run --release
# --example seeds`), in a temporary directory, so the tree stays clean.
# Exit status non-zero if a target crashes; the crashing input is left in
# fuzz/artifacts/TARGET/.
#   fuzz/run.sh [SECONDS] [TARGET...]
# With nightly and cargo-fuzz installed, `cargo +nightly fuzz run TARGET`
# adds AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(parse_frame sync_datagram sync_auth rules election_wire cluster_wire console_request config config_mutate)
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
# --target keeps build scripts uninstrumented.
cargo build --release --locked --target "$triple" --target-dir target/cov --bins
for t in "${targets[@]}"; do
    corpus=$(mktemp -d)
    if [ -d "corpus/$t" ]; then
        cp -R "corpus/$t/." "$corpus/"
    fi
    mkdir -p "artifacts/$t"
    echo "== fuzz $t for ${secs}s"
    log=$(mktemp)
    status=0
    "target/cov/$triple/release/$t" -max_total_time="$secs" -artifact_prefix="artifacts/$t/" \
        "$corpus" >"$log" 2>&1 || status=$?
    grep -E '^(Done|==[0-9]+==|SUMMARY|ERROR|thread .* panicked)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log"
    fi
    rm -rf "$corpus" "$log"
    if [ "$status" -ne 0 ]; then
        echo "fuzz target $t failed (exit $status); input in fuzz/artifacts/$t/"
        exit 1
    fi
done

#!/usr/bin/env bash
# Runs every fuzz target for a bounded time; exits non-zero on the first crash.
# FUZZ_SECONDS (default 20) is the time per target. Only the stable toolchain is
# assumed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# New inputs go to a scratch corpus; the committed seeds stay untouched.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

targets=$(cargo fuzz list --fuzz-dir fuzz)
for target in $targets; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "$scratch/$target"
    # A crash makes cargo fuzz exit non-zero (set -e); the input lands in fuzz/artifacts/.
    cargo fuzz run --fuzz-dir fuzz "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=16384 -print_final_stats=1
done
echo "== no crashes in:" $targets

#!/usr/bin/env bash
# Builds the Lambda functions the way `sam build` does (cargo-lambda, x86_64,
# provided.al2023) and checks that each produced its `bootstrap`.
#
#   .ci/lambda-build.sh                      # zig toolchain (cargo-lambda's default)
#   CARGO_LAMBDA_COMPILER=cargo .ci/lambda-build.sh   # plain cargo, x86_64 Linux hosts only
#
# cargo-lambda ships from PyPI with ziglang as a dependency, so no Docker and no system
# cross toolchain are needed. The zig backend links against an old glibc baseline, which is
# what makes the binary run on Lambda's Amazon Linux 2023 whatever the build host's glibc.
# With CARGO_LAMBDA_COMPILER=cargo the host's own linker and glibc are used: fine on an
# x86_64 Linux host whose glibc is not newer than AL2023's (2.34), otherwise the binary may
# refuse to start on Lambda ("GLIBC_2.xx not found").
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never

# Each function and its size target in MB (10^6 bytes) of its `bootstrap`. Each is built in
# its own cargo invocation: built together, cargo unifies autopilot-core's features and every
# binary would link what any of them needs.
FUNCTIONS=(authorizer mailer kktix-poller discord-interactions receiver alarm-notifier)
declare -A TARGET_MB=(
    [authorizer]=5
    [mailer]=6
    [kktix-poller]=10
    [discord-interactions]=10
    [receiver]=6
    [alarm-notifier]=5
)

echo "== what each function links (cargo tree): none carries code it does not use"
# Crates that mark a capability: a function listed against one must not link it.
declare -A FORBIDDEN=(
    [authorizer]="rusqlite gcp-bigquery-client plotters ed25519-dalek minijinja lettre multer"
    [receiver]="rusqlite gcp-bigquery-client plotters ed25519-dalek minijinja lettre multer"
    [alarm-notifier]="rusqlite gcp-bigquery-client plotters ed25519-dalek minijinja lettre multer"
    [mailer]="rusqlite gcp-bigquery-client plotters ed25519-dalek multer"
    [kktix-poller]="plotters ed25519-dalek minijinja lettre"
    [discord-interactions]="minijinja lettre multer"
)
linked_wrongly=0
for name in "${FUNCTIONS[@]}"; do
    tree=$(cargo tree --locked -p "$name" -e normal --prefix none)
    for crate in ${FORBIDDEN[$name]}; do
        if grep -q "^$crate v" <<<"$tree"; then
            echo "error: $name links $crate" >&2
            linked_wrongly=1
        fi
    done
done
if [[ $linked_wrongly -ne 0 ]]; then
    exit 1
fi
echo "ok: no function links a store, BigQuery, the chart, Discord or mail providers it does not use"

echo "== pip install cargo-lambda"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore cargo-lambda
cargo lambda --version

declare -A SECONDS_TAKEN=()
start=$(date +%s)
for name in "${FUNCTIONS[@]}"; do
    echo "== cargo lambda build --release --x86-64 --locked -p $name"
    began=$(date +%s)
    cargo lambda build --release --x86-64 --locked -p "$name"
    SECONDS_TAKEN[$name]=$(( $(date +%s) - began ))
done
elapsed=$(( $(date +%s) - start ))

echo "== bootstrap binaries (target/lambda/<name>/bootstrap)"
failed=0
printf '%-22s %10s %10s %8s\n' function "size MB" "target MB" "build s"
for name in "${FUNCTIONS[@]}"; do
    binary="target/lambda/$name/bootstrap"
    target=${TARGET_MB[$name]}
    if [[ -x "$binary" ]]; then
        bytes=$(stat -c %s "$binary")
        verdict=""
        if (( bytes > target * 1000000 )); then
            verdict="  OVER TARGET"
            failed=1
        fi
        printf '%-22s %10s %10s %8s%s\n' "$name" \
            "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1000000 }')" "$target" \
            "${SECONDS_TAKEN[$name]}" "$verdict"
    else
        printf '%-22s %10s %10s %8s\n' "$name" MISSING "$target" "${SECONDS_TAKEN[$name]}"
        failed=1
    fi
done
echo "build took ${elapsed}s"
if [[ $failed -ne 0 ]]; then
    echo "error: a bootstrap binary is missing or over its size target" >&2
    exit 1
fi

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

FUNCTIONS=(kktix-poller authorizer mailer discord-interactions receiver alarm-notifier)

echo "== pip install cargo-lambda"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore cargo-lambda
cargo lambda --version

args=()
for name in "${FUNCTIONS[@]}"; do
    args+=(-p "$name")
done

echo "== cargo lambda build --release --x86-64 ${args[*]}"
start=$(date +%s)
cargo lambda build --release --x86-64 --locked "${args[@]}"
elapsed=$(( $(date +%s) - start ))

echo "== bootstrap binaries (target/lambda/<name>/bootstrap)"
missing=0
printf '%-22s %10s\n' function "size MB"
for name in "${FUNCTIONS[@]}"; do
    binary="target/lambda/$name/bootstrap"
    if [[ -x "$binary" ]]; then
        bytes=$(stat -c %s "$binary")
        printf '%-22s %10s\n' "$name" "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1000000 }')"
    else
        printf '%-22s %10s\n' "$name" MISSING
        missing=1
    fi
done
echo "build took ${elapsed}s"
if [[ $missing -ne 0 ]]; then
    echo "error: a bootstrap binary is missing" >&2
    exit 1
fi

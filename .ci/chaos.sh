#!/usr/bin/env bash
# Reduced, seeded, time-bounded chaos suite (docs/RELIABILITY.md): upstream fault storm
# against the in-process loop, then SIGKILL of the real `autopilot poll --once`.
# Knobs can be overridden from the environment; defaults finish in ~3 minutes on 2 cores
# (debug build). The full suite is documented in docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
export CHAOS_RUNS="${CHAOS_RUNS:-30}"
export CHAOS_SEEDS="${CHAOS_SEEDS:-2}"
export CHAOS_SEED_BASE="${CHAOS_SEED_BASE:-1}"
export CHAOS_P="${CHAOS_P:-0.15}"
export CHAOS_KILLS="${CHAOS_KILLS:-6}"
LIMIT="${CHAOS_TIME_LIMIT:-300}"

echo "== chaos: fault storm (CHAOS_RUNS=$CHAOS_RUNS CHAOS_SEEDS=$CHAOS_SEEDS CHAOS_P=$CHAOS_P)"
timeout "$LIMIT" cargo test --locked -p autopilot-core --test chaos -- --nocapture

echo "== chaos: SIGKILL of autopilot poll --once (CHAOS_KILLS=$CHAOS_KILLS)"
timeout "$LIMIT" cargo test --locked -p autopilot-cli --test chaos_crash -- --nocapture

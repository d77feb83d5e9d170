#!/usr/bin/env bash
# The BigQuery backend against the bqemulator package from PyPI (a local BigQuery REST
# emulator on DuckDB). scripts/bqemulator-launch.py starts it without the spatial-extension
# download it would otherwise attempt. numpy is an undeclared dependency of the package.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check bqemulator numpy
BIGQUERY_EMULATOR_PYTHON="$venv/bin/python" \
  cargo test --locked -p autopilot-core --test bigquery_emulator -- --nocapture

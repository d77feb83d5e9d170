#!/usr/bin/env bash
# `sam build` of one function, as the team deploys: proves the template's CodeUri (the
# function's own directory) builds that package alone — autopilot-core with only its features —
# and that SAM finds the bootstrap where cargo puts it. The authorizer is the quickest and the
# one whose size shows a mistake at once (everything linked in is ~10 MB, not ~4).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== pip install aws-sam-cli"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore aws-sam-cli
sam --version

echo "== sam build AuthorizerFunction (infra/template.yaml, rust-cargolambda)"
start=$(date +%s)
(cd infra && SAM_CLI_TELEMETRY=0 sam build AuthorizerFunction --beta-features)
bootstrap=infra/.aws-sam/build/AuthorizerFunction/bootstrap
bytes=$(stat -c %s "$bootstrap")
echo "sam build took $(( $(date +%s) - start ))s; $bootstrap is $bytes bytes"
if (( bytes > 5000000 )); then
    echo "error: the authorizer SAM built is over 5 MB: did the build select more than its package?" >&2
    exit 1
fi

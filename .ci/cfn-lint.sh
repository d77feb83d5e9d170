#!/usr/bin/env bash
# Lints the AWS SAM template offline: cfn-lint expands the SAM transform locally (it bundles
# aws-sam-translator) and checks resource schemas, references, circular dependencies and
# best practices. No AWS account or credentials are needed; a region is only used to pick
# the resource specification. Zero errors and zero warnings required: no rule is ignored.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== pip install cfn-lint"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore cfn-lint
cfn-lint --version

echo "== cfn-lint infra/template.yaml"
# cfn-lint exits non-zero on any error (2), warning (4) or informational finding (8).
cfn-lint --regions ap-northeast-1 us-east-1 --include-checks I -- infra/template.yaml
echo "cfn-lint: no findings"

echo "== infra/samconfig.toml.example against the template's parameters"
# Every override names a parameter, satisfies its AllowedPattern / AllowedValues / bounds, and
# every parameter without a Default is given (ApiBaseUrl is empty on the first deploy).
python3 - <<'PY'
import re
import sys
import tomllib

from cfnlint.decode import decode

template, errors = decode("infra/template.yaml")
if errors:
    sys.exit(f"cannot read the template: {errors}")
parameters = template["Parameters"]
with open("infra/samconfig.toml.example", "rb") as f:
    config = tomllib.load(f)
overrides = config["default"]["deploy"]["parameters"]["parameter_overrides"]
values = dict(item.split("=", 1) for item in overrides)
problems = []
for name, value in values.items():
    spec = parameters.get(name)
    if spec is None:
        problems.append(f"{name}: no such parameter")
        continue
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        problems.append(f"{name}={value!r} does not match {pattern}")
    allowed = spec.get("AllowedValues")
    if allowed and value not in [str(v) for v in allowed]:
        problems.append(f"{name}={value!r} not in {allowed}")
    if spec.get("Type") == "Number":
        number = float(value)
        if "MinValue" in spec and number < float(spec["MinValue"]):
            problems.append(f"{name}={value} below {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            problems.append(f"{name}={value} above {spec['MaxValue']}")
for name, spec in parameters.items():
    if "Default" not in spec and name not in values:
        problems.append(f"{name}: required (no Default) but not given")
if problems:
    sys.exit("\n".join(problems))
print(f"{len(values)} overrides valid; {len(parameters)} parameters in the template")
PY

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

echo "== the template's routes and secrets against openapi.yaml and the code"
# Every route openapi.yaml documents (checked against the code's route table by
# crates/core/tests/openapi.rs) is served by the gateway, HEAD /healthz too; no function's
# environment holds a resolved secret; each *_SECRET variable is one the code reads, and the
# function's role may read that secret and no other.
python3 - <<'PY'
import re
import sys

import yaml
from cfnlint.decode import decode

template, errors = decode("infra/template.yaml")
if errors:
    sys.exit(f"cannot read the template: {errors}")
text = open("infra/template.yaml").read()
problems = []
if "{{resolve:secretsmanager" in text:
    problems.append("a {{resolve:secretsmanager:...}} reference leaves a plaintext secret in a function's configuration")

with open("openapi.yaml") as f:
    spec = yaml.safe_load(f)
documented = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops if m in ("get", "post", "put", "delete", "patch", "head")}
documented.add(("HEAD", "/healthz"))
resources = template["Resources"]
served = set()
for name, res in resources.items():
    if res.get("Type") != "AWS::Serverless::Function":
        continue
    for event in (res["Properties"].get("Events") or {}).values():
        if event.get("Type") == "HttpApi":
            served.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
for route in sorted(documented - served):
    problems.append(f"{route[0]} {route[1]} is documented but no function serves it")
for route in sorted(served - documented):
    problems.append(f"{route[0]} {route[1]} is served but not in openapi.yaml")

code = open("crates/core/src/aws/secrets.rs").read()
known = set(re.findall(r'"([A-Z_]+_SECRET)"', code))
def refs(node):
    """Parameter names a node refers to."""
    found = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            found |= refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= refs(v)
    return found
for name, res in resources.items():
    if res.get("Type") != "AWS::Serverless::Function":
        continue
    variables = res["Properties"].get("Environment", {}).get("Variables", {})
    wanted = set()
    for var, value in variables.items():
        if var.endswith("_SECRET"):
            if var not in known:
                problems.append(f"{name}: {var} is not a variable the code reads")
            wanted |= {r for r in refs(value) if r.endswith("Secret")}
    role = res["Properties"]["Role"]["Fn::GetAtt"][0]
    granted = set()
    for policy in resources[role]["Properties"]["Policies"]:
        if "secretsmanager:GetSecretValue" in str(policy):
            granted |= {r for r in refs(policy) if r.endswith("Secret")}
    if wanted != granted:
        problems.append(f"{name}: reads secrets {sorted(wanted)} but its role grants {sorted(granted)}")
if problems:
    sys.exit("\n".join(problems))
print(f"{len(served)} routes served and documented; every function reads only its own secrets")
PY

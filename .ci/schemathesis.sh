#!/usr/bin/env bash
# Property-based tests of openapi.yaml against the local server (`autopilot dev --sandbox`):
# no 5xx, only documented status codes and content types, responses matching their schemas.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

python3 -m pip install --quiet --disable-pip-version-check schemathesis >/dev/null 2>&1 \
  || python3 -m pip install --quiet --disable-pip-version-check schemathesis

binary="$root/target/debug/autopilot"
[ -x "$binary" ] || cargo build --locked -p autopilot-cli

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token="schemathesis-$(date +%s)"
# CONTACT_KEY and KKTIX_WEBHOOK_TOKEN make POST /import reach the file checks (422) and the
# webhook route answer its 404 for every other token.
# RFC 8032 test vector 1's public key: a valid key nobody signs with here, so the Discord
# route is served and every generated interaction must be refused with 401.
(
  cd "$work"
  OPS_TOKEN="$token" \
  CONTACT_KEY=0707070707070707070707070707070707070707070707070707070707070707 \
  KKTIX_WEBHOOK_TOKEN="webhook-$token" \
  DISCORD_PUBLIC_KEY=d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a \
  DISCORD_APPLICATION_ID=1300000000000000000 \
  exec "$binary" dev --sandbox --addr "127.0.0.1:$port" --every 1h
) > "$work/dev.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/healthz" | grep -q '"last_successful_run":{' && break
  sleep 0.2
done

schemathesis run openapi.yaml \
  --url "http://127.0.0.1:$port" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --generation-deterministic \
  --request-timeout 20

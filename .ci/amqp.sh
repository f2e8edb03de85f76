#!/usr/bin/env bash
# Turn on RabbitMQ's AMQP 1.0 plugin, which the Service Bus adapter's wire
# tests use as a real AMQP 1.0 peer (docs/adapters/servicebus.md says why there
# is no Service Bus emulator here), and wait until port 5672 speaks AMQP 1.0.
# Idempotent: an already enabled plugin is left alone. .ci/run calls it after
# making sure RabbitMQ itself is up.
#
# It also sets a policy that deletes the tests' queues a minute after their
# last use: AMQP 1.0 on RabbitMQ 3.x declares a queue when a link attaches to
# it but has no way to delete one, so every test run would leave its queues
# behind. That is herald.sb.* (the wire tests) and $cbs, where the real Service
# Bus client leaves its claims-based-auth request, which RabbitMQ never answers.
set -euo pipefail

host=127.0.0.1
port=5672

# speaks_amqp10: true when the broker answers the AMQP 1.0 SASL protocol header
# with the same header. Without the plugin RabbitMQ answers with its 0-9-1
# header ("AMQP" 0 0 9 1) and closes, so reading the reply tells the two apart.
speaks_amqp10() {
  local reply
  reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port && printf 'AMQP\x03\x01\x00\x00' >&3 && head -c 8 <&3 | od -An -tx1 | tr -d ' \\n'" 2>/dev/null) || return 1
  [ "$reply" = "414d515003010000" ]
}

expire_test_queues() {
  # set_policy replaces a policy of the same name, so re-running is harmless.
  rabbitmqctl -q set_policy --apply-to queues herald-sb-test-expiry '^(herald\.sb\.|[$]cbs$)' '{"expires":60000}' >/dev/null
}

if ! command -v rabbitmq-plugins >/dev/null || ! command -v rabbitmqctl >/dev/null; then
  echo "amqp: rabbitmq-plugins/rabbitmqctl not found; is RabbitMQ installed?" >&2
  exit 1
fi

if speaks_amqp10; then
  expire_test_queues
  echo "amqp: RabbitMQ already speaks AMQP 1.0 on $host:$port"
  exit 0
fi

# --online applies the change to the running node at once (no restart); it
# fails if the node is down, which is then the real problem to report.
echo "amqp: enabling rabbitmq_amqp1_0"
rabbitmq-plugins enable --online rabbitmq_amqp1_0

for _ in $(seq 1 30); do
  if speaks_amqp10; then
    expire_test_queues
    echo "amqp: RabbitMQ speaks AMQP 1.0 on $host:$port"
    exit 0
  fi
  sleep 1
done
echo "amqp: RabbitMQ on $host:$port still does not answer the AMQP 1.0 header" >&2
exit 1

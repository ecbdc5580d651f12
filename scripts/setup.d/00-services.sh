#!/usr/bin/env bash
# RabbitMQ and Redis: the tests need both on their standard loopback ports. They are
# system services, not something the test bed starts per test, so this only checks them,
# starts them when they are installed but stopped, and otherwise says what to do.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done
  return 1
}

if ! port_open 6379; then
  if command -v redis-server >/dev/null; then
    echo "Redis is not running on 127.0.0.1:6379: starting it"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    wait_port 6379 || { echo "Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
  else
    echo "Redis is required on 127.0.0.1:6379: install it (apt-get install redis-server) and start it" >&2
    exit 1
  fi
fi
echo "Redis: 127.0.0.1:6379 is up"

if ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null; then
    echo "RabbitMQ is not running on 127.0.0.1:5672: starting it"
    rabbitmq-server -detached
    wait_port 5672 || { echo "RabbitMQ did not start on 127.0.0.1:5672" >&2; exit 1; }
  else
    echo "RabbitMQ is required on 127.0.0.1:5672 (guest/guest): install it (apt-get install rabbitmq-server) and start it" >&2
    exit 1
  fi
fi
echo "RabbitMQ: 127.0.0.1:5672 is up"

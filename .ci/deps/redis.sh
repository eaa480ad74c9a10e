#!/usr/bin/env bash
# Installs Debian's redis-server and redis-tools (redis-cli), which
# store/redis/redistest uses to start one server, a Redis Cluster (joined
# with redis-cli --cluster create) or Sentinels (redis-server --sentinel)
# on loopback ports with throwaway directories. Exits at once when present.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y redis-server redis-tools

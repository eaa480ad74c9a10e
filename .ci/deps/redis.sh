#!/usr/bin/env bash
# Installs Debian's redis-server, which store/redis and the e2e replica tests
# start on a loopback port with a throwaway directory. Exits at once when present.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y redis-server

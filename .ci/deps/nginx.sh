#!/usr/bin/env bash
# Installs Debian's nginx (built with auth_request), which the e2e auth_request tests
# (e2e/proxy_test.go) start on loopback ports with a throwaway prefix.
# Only the binary is used: the package's own service is stopped and disabled.
# Exits at once when present.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y nginx
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now nginx >/dev/null 2>&1 || true
fi
service nginx stop >/dev/null 2>&1 || true

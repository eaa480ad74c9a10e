#!/usr/bin/env bash
# Installs Caddy, pinned, for the e2e forward_auth tests (e2e/proxy_test.go),
# which look for it in <repo>/.cache/bin. It is built from source through the
# Go module proxy (about two minutes cold) into a per-machine cache outside
# the checkout, so a fresh clone on the same machine only links it. Exits at
# once when present.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=v2.11.9
bin="$PWD/.cache/bin"
machine="${XDG_CACHE_HOME:-$HOME/.cache}/quotagate-tools/caddy-$version"
if [ -x "$bin/caddy" ]; then
	exit 0
fi
if [ ! -x "$machine/caddy" ]; then
	echo "deps: building caddy $version (about two minutes, once per machine)"
	mkdir -p "$machine"
	GOBIN="$machine" GOFLAGS="${GOFLAGS:-} -mod=mod" go install "github.com/caddyserver/caddy/v2/cmd/caddy@$version"
fi
mkdir -p "$bin"
ln -sf "$machine/caddy" "$bin/caddy"

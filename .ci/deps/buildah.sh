#!/usr/bin/env bash
# Installs Debian's buildah, which `make image` (deploy/build-image.sh) and
# deploy's TestImage use to build the FROM scratch image without a daemon
# and without pulling anything, and to save it as an OCI layout. Exits at
# once when buildah or podman is present.
set -euo pipefail
if command -v buildah >/dev/null || command -v podman >/dev/null; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends buildah ca-certificates

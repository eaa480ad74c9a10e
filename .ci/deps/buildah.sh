#!/usr/bin/env bash
# Installs Debian's buildah (and skopeo, to save an image as an OCI
# layout), which `make image` and the image test in deploy/ use to build
# the FROM scratch image without a daemon and without pulling anything.
# Exits at once when both are present.
set -euo pipefail
if command -v buildah >/dev/null && command -v skopeo >/dev/null; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends buildah skopeo ca-certificates

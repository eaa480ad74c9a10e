#!/usr/bin/env bash
# Builds quotagate's container image from deploy/Containerfile without
# pulling anything: the static binary is built on the host (CGO_ENABLED=0),
# and the CA bundle comes from Debian's ca-certificates package.
#
#   deploy/build-image.sh [TAG]        (default quotagate:dev; make image)
#
# IMAGE_BUILDER picks buildah or podman (default: whichever is installed,
# buildah first). GO is the Go command. VERSION goes into the binary and the
# OCI labels.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-quotagate:dev}"
go="${GO:-go}"
version="${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}"
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
builder="${IMAGE_BUILDER:-}"
if [ -z "$builder" ]; then
	for b in buildah podman; do
		if command -v "$b" >/dev/null; then builder=$b; break; fi
	done
fi
if [ -z "$builder" ]; then
	echo "build-image: neither buildah nor podman is installed; run bash .ci/deps/buildah.sh (or apt-get install buildah)" >&2
	exit 1
fi
ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
	echo "build-image: $ca is missing; install Debian's ca-certificates package" >&2
	exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/etc/ssl/certs" "$ctx/var/lib/quotagate" "$ctx/tmp"
cp "$ca" "$ctx/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nquotagate:x:65532:65532:quotagate:/var/lib/quotagate:/sbin/nologin\n' >"$ctx/etc/passwd"
printf 'root:x:0:\nquotagate:x:65532:\n' >"$ctx/etc/group"
(cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w -X main.version=$version" -o "$ctx/quotagate" ./cmd/quotagate)

build=("$builder" build)
if [ "$builder" = buildah ]; then build=(buildah bud); fi
"${build[@]}" --quiet --format oci --isolation chroot \
	--build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
	-f "$root/deploy/Containerfile" -t "$tag" "$ctx" >/dev/null
echo "build-image: built $tag ($version) with $builder"

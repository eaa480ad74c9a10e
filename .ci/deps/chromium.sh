#!/usr/bin/env bash
# Installs Debian's chromium, which the admin dashboard test drives headless
# through chromedp at /usr/bin/chromium. Exits at once when present.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium

#!/usr/bin/env bash
# Installs the PostgreSQL server binaries (initdb, pg_ctl) that the ledger's
# PostgreSQL tests start on a loopback port. Exits at once when present.
set -euo pipefail
for d in /usr/lib/postgresql/*/bin; do
	if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
		exit 0
	fi
done
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y postgresql

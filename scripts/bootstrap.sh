#!/usr/bin/env bash
# Brings a fresh Debian 12 checkout to a runnable state: host packages (as root), npm
# dependencies when package-lock.json changed, and the TypeScript build. Cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  bash scripts/setup-host.sh >/dev/null
elif ! command -v qemu-system-x86_64 >/dev/null; then
  echo "bootstrap: QEMU is not installed; run 'sudo bash scripts/setup-host.sh' once" >&2
  exit 1
fi

lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.kvmigrate-lock ] || [ "$(cat node_modules/.kvmigrate-lock)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.kvmigrate-lock
fi
npx tsc -p tsconfig.json

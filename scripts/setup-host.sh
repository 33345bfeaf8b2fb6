#!/usr/bin/env bash
# Installs what kvmigrate's lab needs on a Debian 12 host: QEMU 10 from bookworm-backports
# (bookworm's own 7.2 loses dirty pages in TCG migrations), libvirt 11 from bookworm-backports (the
# libvirt driver's lab pair; bookworm's own 9.0 predates QEMU 10), busybox-static, iproute2, a C
# toolchain, Chromium for the report test, and PostgreSQL 15 (server and pgbench) and memcached,
# which the lab's app guest carries (src/lab/app-image.ts; their services stay unused on the host).
# Idempotent: safe to run on every CI run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" != 0 ]; then
  echo "setup-host: must run as root (it installs apt packages)" >&2
  exit 1
fi

# Backports from the same registry and keyring as the machine's existing bookworm entry.
backports=/etc/apt/sources.list.d/kvmigrate-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "setup-host: cannot find the machine's Debian bookworm apt source" >&2; exit 1; }
  cat > "$backports" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

need_install=0
qemu_major=$(qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p' || true)
[ "${qemu_major:-0}" -ge 8 ] || need_install=1
for bin in busybox ip tc gcc chromium; do command -v "$bin" >/dev/null || need_install=1; done
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need_install=1
libvirt_major=$(libvirtd --version 2>/dev/null | sed -n 's/^libvirtd (libvirt) \([0-9]*\).*/\1/p' || true)
[ "${libvirt_major:-0}" -ge 10 ] || need_install=1
command -v virsh >/dev/null || need_install=1
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] || need_install=1
[ -x /usr/lib/postgresql/15/bin/postgres ] && [ -x /usr/lib/postgresql/15/bin/pgbench ] || need_install=1
[ -x /usr/bin/memcached ] || need_install=1

if [ "$need_install" = 1 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
  # The lab's libvirt pair runs its own libvirtd processes; the packages' systemd units stay unused.
  apt-get install -y -qq --no-install-recommends -t bookworm-backports \
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients >/dev/null
  apt-get install -y -qq --no-install-recommends busybox-static iproute2 gcc libc6-dev >/dev/null
  # Headless Chromium renders the benchmark's HTML report in the tests (no browser download).
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  # The app guest's PostgreSQL and memcached (binaries and libraries copied into its initramfs).
  apt-get install -y -qq --no-install-recommends postgresql-15 memcached >/dev/null
fi
qemu-system-x86_64 --version | head -1
libvirtd --version

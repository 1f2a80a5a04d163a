#!/usr/bin/env bash
# Installs the QEMU tools the tests and the demo drive, when they are missing.
# Debian packages: qemu-utils (qemu-img, qemu-io), qemu-system-common (qemu-storage-daemon).
set -euo pipefail
missing=()
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
command -v qemu-io >/dev/null 2>&1 || missing+=(qemu-utils)
command -v qemu-storage-daemon >/dev/null 2>&1 || missing+=(qemu-system-common)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "nbd-tunnel: missing tools; install the Debian packages: $pkgs" >&2
  exit 1
fi
echo "nbd-tunnel: installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >&2

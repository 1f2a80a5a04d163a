#!/usr/bin/env bash
# The QEMU tools the tests and the demo drive: qemu-utils (qemu-img, qemu-io, qemu-nbd) and
# qemu-system-common (qemu-storage-daemon), libnbd-bin (nbdinfo, a second NBD client), plus openssl
# for the throwaway certificates.
set -euo pipefail
exec bash "$(dirname "$0")/ensure-packages.sh" nbd-tunnel \
  qemu-img=qemu-utils qemu-io=qemu-utils qemu-nbd=qemu-utils qemu-storage-daemon=qemu-system-common nbdinfo=libnbd-bin openssl=openssl

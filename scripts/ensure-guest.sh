#!/usr/bin/env bash
# What the live-migration suite's tiny guest is built from and runs on: qemu-system-x86_64, a
# Debian kernel with its modules (virtio_blk and friends), and a static busybox for /init
# (busybox-static itself: Debian's busybox package has the same /bin/busybox, dynamically linked).
# The kernel package depends on some initramfs generator. initramfs-tools would pull in udev
# and systemd (replacing the container's init) and spend half a minute building an initramfs
# nobody boots; tiny-initramfs satisfies the same dependency in a second, with no services.
# A machine that already has a generator keeps it (they conflict with each other).
set -euo pipefail
extra=tiny-initramfs
if dpkg-query -W -f='${Status}\n' initramfs-tools dracut tiny-initramfs 2>/dev/null | grep -q 'install ok installed'; then
  extra=
fi
ENSURE_PACKAGES_EXTRA=$extra exec bash "$(dirname "$0")/ensure-packages.sh" nbd-tunnel \
  qemu-system-x86_64=qemu-system-x86 '/boot/vmlinuz-*=linux-image-amd64' '/lib/modules/*/modules.dep=linux-image-amd64' \
  dpkg:busybox-static=busybox-static

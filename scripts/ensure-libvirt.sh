#!/usr/bin/env bash
# libvirt, for the live-migration test that has real libvirtd instances migrate the guest
# through nbd-tunnel (`virsh migrate --copy-storage-all`): the daemon, its QEMU driver, virsh.
# libvirtd resolves its built-in QEMU user (libvirt-qemu) before it reads qemu.conf, and that
# user comes with libvirt-daemon-system, which would also bring polkit, firewalld or iptables
# and init scripts that the tests do not want: the user is made here instead.
set -euo pipefail
bash "$(dirname "$0")/ensure-packages.sh" nbd-tunnel \
  libvirtd=libvirt-daemon virsh=libvirt-clients dpkg:libvirt-daemon-driver-qemu=libvirt-daemon-driver-qemu
if ! getent passwd libvirt-qemu >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "nbd-tunnel: libvirtd needs the system user libvirt-qemu (from libvirt-daemon-system)" >&2
    exit 1
  fi
  useradd --system --user-group --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
fi

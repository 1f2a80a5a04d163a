#!/usr/bin/env bash
# The benchmark's needs beyond the project's own (npm packages, QEMU tools): the programs of
# the paths it compares with. Debian packages, installed with apt-get when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
missing=()
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v stunnel >/dev/null 2>&1 || missing+=(stunnel4)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "nbd-tunnel bench: missing tools; install the Debian packages: $pkgs" >&2
  exit 1
fi
echo "nbd-tunnel bench: installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# Installing openssh-server would start Debian's own sshd (port 22, every address); a
# policy-rc.d that exits 101 forbids service starts during the install. The benchmark runs
# an sshd of its own, on 127.0.0.1 only.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >&2

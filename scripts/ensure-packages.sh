#!/usr/bin/env bash
# usage: ensure-packages.sh WHO CHECK=PACKAGE...
# Installs the Debian PACKAGE of every CHECK that fails (CHECK: a command name, an absolute
# path or glob that must match something: /usr/sbin/sshd, /boot/vmlinuz-*, or dpkg:NAME for a
# package that must be installed, when a file is not enough to tell it), with apt-get when
# run as root; otherwise names the packages. Service starts are forbidden during the install
# (openssh-server would start a system sshd). Extra apt-get install arguments (a package that
# must be chosen among alternatives) come from ENSURE_PACKAGES_EXTRA.
set -euo pipefail
who=$1
shift
missing=()
for pair in "$@"; do
  check=${pair%%=*}
  if [ "${check#dpkg:}" != "$check" ]; then
    dpkg-query -W -f='${Status}' "${check#dpkg:}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${pair#*=}")
  elif [ "${check#/}" != "$check" ]; then compgen -G "$check" >/dev/null || missing+=("${pair#*=}")
  else command -v "$check" >/dev/null 2>&1 || missing+=("${pair#*=}"); fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$who: missing tools; install the Debian packages: $pkgs" >&2
  exit 1
fi
echo "$who: installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# Other sessions on the machine may be installing too: wait for dpkg's lock instead of failing.
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 $pkgs ${ENSURE_PACKAGES_EXTRA:-} >&2

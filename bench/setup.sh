#!/usr/bin/env bash
# The benchmark's needs beyond the project's own (npm packages, QEMU tools): the programs of
# the paths it compares with, from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bash scripts/ensure-packages.sh "nbd-tunnel bench" \
  socat=socat stunnel=stunnel4 /usr/sbin/sshd=openssh-server ssh=openssh-client ssh-keygen=openssh-client

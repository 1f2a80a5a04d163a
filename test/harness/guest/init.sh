#!/bin/sh
# /init of the live-migration test guest: busybox ash as PID 1, everything in RAM.
# It writes numbered 4 KiB blocks to /dev/vda round-robin over a region, forever, and on a
# line "verify" on its console checks every block it wrote. The counter is a shell variable,
# so guest RAM: a live-migrated guest goes on counting where it stopped, while a rebooted one
# would start again at 0, with a new boot id.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys

for m in $(cat /etc/modules); do insmod "/lib/modules/$m" || echo "nbdt: insmod $m failed"; done

blocks=1024 every=32 offset=0
for arg in $(cat /proc/cmdline); do
  case $arg in
    nbdt.blocks=*) blocks=${arg#*=} ;;
    nbdt.every=*) every=${arg#*=} ;;
    nbdt.offset=*) offset=${arg#*=} ;;
  esac
done
read -r boot < /proc/sys/kernel/random/boot_id
boot=${boot%%-*}

tries=0
while [ ! -b /dev/vda ]; do
  tries=$((tries + 1))
  if [ $tries -gt 200 ]; then echo "nbdt: no /dev/vda"; poweroff -f; fi
  sleep 0.05
done

# Block B's content at generation G: 64 distinct lines of 64 bytes, so that a misplaced or
# stale 512-byte sector is caught as well as a stale block.
block() {
  local line=0
  while [ $line -lt 64 ]; do
    printf '%-63s\n' "nbdt block $1 gen $2 line $line boot $boot"
    line=$((line + 1))
  done
}

n=0
# Write number n goes to block n mod blocks, generation n / blocks. O_DIRECT: the write has
# reached the virtual disk when dd returns, so the destination must have it after migration.
write_next() {
  local b=$((n % blocks))
  block $b $((n / blocks)) | dd of=/dev/vda bs=4096 seek=$((offset + b)) count=1 iflag=fullblock oflag=direct conv=notrunc 2>/dev/null ||
    echo "nbdt: write FAILED block $b"
  n=$((n + 1))
}

# Every block written so far must hold its last write: block b's was write number
# b + blocks * ((n - 1 - b) / blocks), whose generation is (n - 1 - b) / blocks.
verify() {
  local written=$n b=0 diff char
  [ $written -gt $blocks ] && written=$blocks
  while [ $b -lt $written ]; do
    block $b $(((n - 1 - b) / blocks))
    b=$((b + 1))
  done > /tmp/expected
  dd if=/dev/vda of=/tmp/actual bs=4096 skip=$offset count=$written iflag=direct 2>/dev/null
  diff=$(cmp /tmp/expected /tmp/actual 2>&1)
  if [ -z "$diff" ]; then
    echo "verify ok $n blocks $written boot $boot"
  else
    char=${diff#*char }
    char=${char%%,*}
    case $char in
      '' | *[!0-9]*) echo "verify FAILED at $n: $diff" ;;
      *) echo "verify FAILED block $(((char - 1) / 4096)) at $n: $diff" ;;
    esac
  fi
  rm -f /tmp/expected /tmp/actual
}

# Console input is read in the background and turned into a request the writer sees between
# two writes, so a verification never races a write.
stty -echo < /dev/console
while read -r cmd; do
  case $cmd in verify) : > /tmp/verify-request ;; esac
done < /dev/console &

echo "nbdt: up boot $boot blocks $blocks offset $offset"
while :; do
  if [ -e /tmp/verify-request ]; then
    rm -f /tmp/verify-request
    verify
  fi
  write_next
  [ $((n % every)) -eq 0 ] && echo "wrote $n boot $boot"
done

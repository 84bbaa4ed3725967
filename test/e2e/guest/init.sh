#!/bin/busybox sh
# Guest /init for the kernel-initiator e2e test (runs as PID 1 in a QEMU VM).
#
# It loads Debian's own aoe driver, finds the targets the host exports over
# the VM's only NIC, runs every check in one boot and reports on the serial
# console with lines the host parses:
#   KVE:RESULT <name> PASS|FAIL <detail>   one per check
#   KVE:INFO <key>=<value>                 facts the host checks itself (md5s, sizes)
#   KVE:REQ <action>                       asks the host to act, then waits for
#                                          a line "go-<action>" on the console
#   KVE:DONE                               all checks ran; the VM powers off next
# Parameters come from /e2e/params (written by the host into the initramfs).

/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
. /e2e/params

say() { echo "KVE:$*"; }
result() { say "RESULT $1 $2 ${3:-}"; }
pass() { result "$1" PASS "${2:-}"; }
fail() { result "$1" FAIL "${2:-}"; }
check_eq() { # name got want
  if [ "$2" = "$3" ]; then pass "$1" "$2"; else fail "$1" "got=$2 want=$3"; fi
}
finish() {
  say "DMESG-BEGIN"
  dmesg | grep -iE 'aoe|etherd|ext4|EXT4|error' | tail -n 40
  say "DMESG-END"
  say "DONE"
  sync
  poweroff -f
  sleep 5
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
md5() { md5sum | cut -d' ' -f1; }
# request ACTION: ask the host to do ACTION, wait (at most $2 s) for its go-ACTION.
request() {
  say "REQ $1"
  local line deadline=$(( $(date +%s) + ${2:-120} ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if read -t 5 line < /dev/console; then
      case "$line" in *"go-$1"*) return 0 ;; esac
    fi
  done
  return 1
}
# Wait until a command succeeds, at most $1 seconds; prints the seconds waited.
wait_for() {
  local max=$1 i=0; shift
  while ! "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -ge "$max" ] && { echo "$i"; return 1; }
    sleep 1
  done
  echo "$i"
}

say "BOOTED $(uname -r)"
for m in $(cat /lib/modules/order); do
  [ "$m" = aoe ] && continue
  insmod /lib/modules/$m.ko || say "INFO insmod-failed=$m"
done
if ! wait_for 20 test -e /sys/class/net/eth0 >/dev/null; then
  fail boot "no eth0"; finish
fi
ip link set lo up
ip link set eth0 mtu "$KVE_MTU" || fail guest-mtu "cannot set eth0 mtu $KVE_MTU"
ip link set eth0 up
wait_for 20 grep -q 1 /sys/class/net/eth0/carrier >/dev/null
say "INFO guest-mtu=$(cat /sys/class/net/eth0/mtu)"
insmod /lib/modules/aoe.ko aoe_iflist=eth0 aoe_deadsecs="$KVE_DEADSECS" || { fail boot "insmod aoe"; finish; }

E0=/dev/etherd/e9.0
E1=/dev/etherd/e9.1
S0='/sys/block/etherd!e9.0'
S1='/sys/block/etherd!e9.1'

both_present() { [ -b $E0 ] && [ -b $E1 ]; }
discover() { echo > /dev/etherd/discover; both_present; }
n=$(wait_for "$KVE_DISCOVER_SECS" discover)
if both_present; then
  pass discover "e9.0 and e9.1 after ${n}s"
else
  fail discover "after ${n}s: $(ls /dev/etherd 2>&1 | tr '\n' ' ')"
  finish
fi

# Size, and what the driver negotiated per frame.
check_eq size-e9.0 "$(cat $S0/size)" "$KVE_SECTORS0"
check_eq size-e9.1 "$(cat $S1/size)" "$KVE_SECTORS1"
check_eq bytes-e9.0 "$(blockdev --getsize64 $E0)" "$((KVE_SECTORS0 * 512))"
check_eq payload-e9.0 "$(cat $S0/payload 2>/dev/null | tr -dc 0-9)" "$KVE_PAYLOAD"
check_eq payload-e9.1 "$(cat $S1/payload 2>/dev/null | tr -dc 0-9)" "$KVE_PAYLOAD"
say "INFO state-e9.0=$(cat $S0/state) netif=$(cat $S0/netif) fwver=$(cat $S0/firmware-version 2>/dev/null) mac=$(cat $S0/mac)"

# What the host wrote into the backing files before export (each target its own).
drop_caches
check_eq host-data-e9.0 "$(dd if=$E0 bs=65536 count=$((KVE_PRE_LEN / 65536)) 2>/dev/null | md5)" "$KVE_PRE0_MD5"
check_eq host-data-e9.1 "$(dd if=$E1 bs=65536 count=$((KVE_PRE_LEN / 65536)) 2>/dev/null | md5)" "$KVE_PRE1_MD5"
# The tail sectors too (the last sector of e9.0 was written by the host as well).
check_eq host-tail-e9.0 "$(dd if=$E0 bs=512 skip=$((KVE_SECTORS0 - 1)) count=1 2>/dev/null | md5)" "$KVE_TAIL0_MD5"

# Random data at an unaligned byte offset: write, drop caches, read back.
WANT=$(md5 < /e2e/rand.bin)
if dd if=/e2e/rand.bin of=$E0 bs=65536 oflag=seek_bytes seek="$KVE_WOFF" conv=notrunc,fsync 2>/tmp/dd.err; then
  drop_caches
  GOT=$(dd if=$E0 bs=65536 iflag=skip_bytes,count_bytes skip="$KVE_WOFF" count="$KVE_WLEN" 2>/dev/null | md5)
  check_eq write-readback "$GOT" "$WANT"
  say "INFO guest-write-md5=$GOT"
  # O_DIRECT, sector-aligned, straight from the target: covers the whole written range.
  A=$((KVE_WOFF / 512)) B=$(((KVE_WOFF + KVE_WLEN + 511) / 512))
  GOTD=$(dd if=$E0 bs=512 iflag=direct skip=$A count=$((B - A)) 2>/dev/null | dd bs=65536 iflag=skip_bytes,count_bytes skip=$((KVE_WOFF - A * 512)) count="$KVE_WLEN" 2>/dev/null | md5)
  check_eq write-readback-direct "$GOTD" "$WANT"
  # The bytes just before and after the written range are still the host's (zeros).
  check_eq write-boundaries "$(dd if=$E0 bs=1 iflag=skip_bytes skip=$((KVE_WOFF - 7)) count=7 2>/dev/null | md5)$(dd if=$E0 bs=1 iflag=skip_bytes skip=$((KVE_WOFF + KVE_WLEN)) count=9 2>/dev/null | md5)" "$(dd if=/dev/zero bs=1 count=7 2>/dev/null | md5)$(dd if=/dev/zero bs=1 count=9 2>/dev/null | md5)"
else
  fail write-readback "dd: $(cat /tmp/dd.err | tr '\n' ' ')"
fi

# A file system on e9.1: make, fill, unmount, drop caches, mount again, compare.
fs_check() {
  mke2fs -q -b 4096 $E1 >/tmp/fs.err 2>&1 || { echo "mke2fs: $(cat /tmp/fs.err)"; return 1; }
  mount -t ext4 $E1 /mnt 2>/tmp/fs.err || { echo "mount: $(cat /tmp/fs.err)"; return 1; }
  mkdir /mnt/d /tmp/src
  cp /e2e/rand.bin /mnt/rand.bin
  cp /bin/busybox /mnt/busybox
  i=0
  while [ $i -lt 64 ]; do
    dd if=/dev/urandom of=/tmp/src/f$i bs=$((i * 977 + 13)) count=1 2>/dev/null
    cp /tmp/src/f$i /mnt/d/f$i
    i=$((i + 1))
  done
  (cd /mnt && find . -type f | sort | xargs md5sum) > /tmp/before
  umount /mnt || { echo "umount failed"; return 1; }
  drop_caches
  mount -t ext4 -o ro $E1 /mnt || { echo "remount failed"; return 1; }
  (cd /mnt && find . -type f | sort | xargs md5sum) > /tmp/after
  cmp -s /e2e/rand.bin /mnt/rand.bin || { echo "rand.bin differs"; return 1; }
  cmp -s /bin/busybox /mnt/busybox || { echo "busybox differs"; return 1; }
  for f in /tmp/src/*; do cmp -s "$f" /mnt/d/"${f##*/}" || { echo "$f differs"; return 1; }; done
  cmp -s /tmp/before /tmp/after || { echo "md5 lists differ"; return 1; }
  umount /mnt || { echo "final umount failed"; return 1; }
  echo "$(wc -l < /tmp/after) files equal"
}
if out=$(fs_check 2>&1); then pass filesystem "$out"; else fail filesystem "$out"; umount /mnt 2>/dev/null; fi

direct_read_ok() { # md5 of the written range via O_DIRECT equals WANT
  A=$((KVE_WOFF / 512)) B=$(((KVE_WOFF + KVE_WLEN + 511) / 512))
  [ "$(dd if=$E0 bs=512 iflag=direct skip=$A count=$((B - A)) 2>/dev/null | dd bs=65536 iflag=skip_bytes,count_bytes skip=$((KVE_WOFF - A * 512)) count="$KVE_WLEN" 2>/dev/null | md5)" = "$WANT" ]
}
direct_read_fails() { ! dd if=$E0 of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; }

# Target restart while idle: the driver retransmits; I/O just resumes.
if [ "$KVE_RESTART" = 1 ]; then
  if request restart 120; then
    if n=$(wait_for 60 direct_read_ok); then pass restart "data intact, reads resumed after ${n}s"; else fail restart "reads did not resume in ${n}s"; fi
  else
    fail restart "host did not answer"
  fi
fi

# Target removed while the device is open: I/O errors after aoe_deadsecs; re-add + revalidate revives it.
if [ "$KVE_REMOVE" = 1 ]; then
  exec 3< $E0
  if request remove 120; then
    T0=$(date +%s)
    if n=$(wait_for $((KVE_DEADSECS + 60)) direct_read_fails); then
      pass remove-io-error "I/O error after $(( $(date +%s) - T0 ))s, state=$(cat $S0/state)"
    else
      fail remove-io-error "reads still succeed after ${n}s, state=$(cat $S0/state)"
    fi
    if request readd 120; then
      revive() { echo > /dev/etherd/discover; echo e9.0 > /dev/etherd/revalidate; sleep 1; direct_read_ok; }
      if n=$(wait_for 60 revive); then
        pass readd "e9.0 works again (open fd kept) after ${n}s, state=$(cat $S0/state)"
      else
        exec 3<&-
        if n=$(wait_for 30 revive); then
          pass readd "e9.0 works again only after closing it, ${n}s, state=$(cat $S0/state)"
        else
          fail readd "e9.0 still failing, state=$(cat $S0/state)"
        fi
      fi
    else
      fail readd "host did not answer"
    fi
    check_eq other-target-after-readd "$(dd if=$E1 bs=4096 count=1 iflag=direct 2>/dev/null | wc -c)" 4096
  else
    fail remove-io-error "host did not answer"
  fi
  exec 3<&- 2>/dev/null
fi

finish
